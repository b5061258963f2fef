/* flipflop.h: flip-flop language modelling (FFLM), the trainer's built-in dataset (doc/DESIGN.md
 * section 7; Liu et al. 2023, "Exposing Attention Glitches with Flip-Flop Language Modeling",
 * section 3.1 and appendix B.2).
 *
 * A sequence of T tokens (T even) is T/2 pairs (instruction, bit) over {w, r, i} x {0, 1}:
 *   w b   write b to a one-bit register;   i b   ignore (b is noise);
 *   r b   read: b equals the bit of the most recent w.
 * FFL(T, p): the first instruction is always w and the last always r; the others are i.i.d.
 * with p(i) = p_i, p(w) = p(r) = (1 - p_i)/2; the bits after w and i are i.i.d. uniform.
 * Paper setup: T = 512 (256 pairs); train on FFL(0.8); evaluate in distribution (0.8), sparse
 * (0.98) and dense (0.1) on held-out sets of 1e3, 1e5 and 3000 sequences, fixed across runs.
 *
 * Token ids (those of the paper's data release, hf.co/datasets/synthseq/flipflop):
 *   w = 0, r = 1, i = 2, bit 0 = 3, bit 1 = 4;  vocabulary 5.
 *
 * Targets: the paper trains and reports the deterministic ("clean") mode, in which only the
 * bit after each r is predicted (its footnote 5: the generative mode, all tokens, behaves alike;
 * the bits after w and i are coin flips, irrelevant to the memory task). So training and
 * evaluation targets are the same: targets[t] = inputs[t+1] where inputs[t] = r, else -1 (the
 * model skips targets < 0; the last position has no next token). FFLM accuracy = accuracy over
 * targets >= 0; error = 1 - accuracy.
 * checked by: tests/test_data.c "flipflop" (validity, frequencies, targets, determinism, text). */
#ifndef PATHGPT_DATA_FLIPFLOP_H
#define PATHGPT_DATA_FLIPFLOP_H

#include <stddef.h>

#include "../common/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { FLIPFLOP_W = 0, FLIPFLOP_R = 1, FLIPFLOP_I = 2, FLIPFLOP_BIT0 = 3, FLIPFLOP_BIT1 = 4, FLIPFLOP_VOCAB = 5 };

#define FLIPFLOP_T 512           /* paper's sequence length in tokens (256 pairs) */
#define FLIPFLOP_P_TRAIN 0.8     /* p(i) of training and in-distribution test */
#define FLIPFLOP_P_SPARSE 0.98   /* sparse tail test: long gaps between w and r */
#define FLIPFLOP_P_DENSE 0.1     /* dense tail test: many w and r */
#define FLIPFLOP_EVAL_SEQS_ID 1000
#define FLIPFLOP_EVAL_SEQS_SPARSE 100000
#define FLIPFLOP_EVAL_SEQS_DENSE 3000

/* 0 if FFL(T, p_i) is defined: T even and >= 4, 0 <= p_i <= 1; otherwise -1 with a one-line
 * reason in why. Call once where T and p_i enter (flags); flipflop_batch assumes valid input. */
int flipflop_check(double p_i, int T, char *why, size_t why_len);

/* B sequences from FFL(T, p_i), drawn from rng (deterministic given its state):
 * inputs (B, T) int ids as above; targets (B, T) int: the read bits, -1 elsewhere. */
void flipflop_batch(Rng *rng, double p_i, int B, int T, int *inputs, int *targets);

/* Writes n tokens as text, pairs separated by spaces ("w1 i0 r1"): w r i 0 1 for the five ids,
 * '?' for any other id (a model with a padded vocabulary may sample one); a space goes before
 * every instruction but the first, so malformed sampled sequences still print readably.
 * out must hold 2n + 1 chars; it is NUL-terminated. */
void flipflop_decode(const int *tokens, int n, char *out);

#ifdef __cplusplus
}
#endif
#endif
