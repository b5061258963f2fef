/* sampler.h: choosing tokens from the model's logits, and generation through its key cache
 * (model/gpt.h: gpt_decode_prefill / gpt_decode_step, doc/DESIGN.md section 1 "Decoding").
 *
 * Choice from the logits l (Vp,) over the real vocabulary [0, V) (padded columns are never chosen):
 *   temperature 0   greedy: argmax, the lowest id on ties;
 *   temperature t   keep the top_k largest logits (top_k 0: all V; ties with the k-th largest are
 *                   kept too), p_i = exp((l_i - max l) / t) / sum, and return the first i whose
 *                   running sum of p exceeds u ~ U[0, 1) drawn from rng (one draw per choice).
 * Generation: tokens (n, len) ids and given (n, len) flags; row b's token t is kept where given,
 * else chosen from the logits after tokens 0..t-1 of that row. Token 0 of every row must be given.
 * So a prompt is a given prefix, and a task with fixed inputs (flip-flop) can leave only the
 * positions the model should fill. n <= the model's B, len <= its T.
 * checked by: tests/test_train.c "sampler" (greedy, top-k 1, top-k support, frequencies, generation
 * equal to the argmax of gpt_forward's logits). */
#ifndef PATHGPT_MODEL_SAMPLER_H
#define PATHGPT_MODEL_SAMPLER_H

#include "../common/rng.h"
#include "gpt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double temperature; /* 0: greedy */
    int top_k;          /* 0: no cut */
} SamplerConfig;

/* One choice from logits (at least V floats); scratch holds V floats (top-k selection). */
int sampler_pick(const float *logits, int V, const SamplerConfig *sc, Rng *rng, float *scratch);

/* Fills the tokens that are not given, row by row in lockstep: the prefix given in every row through
 * gpt_decode_prefill (one forward pass on the GPU), then one gpt_decode_step per position. */
void sampler_generate(Gpt *g, const SamplerConfig *sc, Rng *rng, int n, int len, int *tokens,
                      const unsigned char *given);

#ifdef __cplusplus
}
#endif
#endif
