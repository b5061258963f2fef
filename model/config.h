/* config.h: the model's hyperparameters and the attention types (doc/DESIGN.md section 3).
 *
 * GPT-2 layout: token embedding (tied with the LM head, vocab padded to a multiple of 128),
 * L pre-norm blocks x += attn(ln1(x)); x += mlp(ln2(x)) with MLP 4C and GELU (tanh form), final
 * layernorm. Attention per block, by type:
 *   path      PaTH: logits scale q_i^T H_i..H_{j+1} k_j; w and beta projections per layer
 *   path-fox  PaTH + forget gate, logits scale (s_ij + G_i - G_j)
 *   fox       Forgetting Transformer: logits scale q.k + (G_i - G_j) (gate not scaled)
 *   rope      rotary embedding on q, k (half-split pairs (i, i + d/2), theta = rope_theta)
 *   nope      no position information
 *   learned   GPT-2's learned position embedding wpe (llm.c's GPT-2 exactly, with doc_token = -1)
 * Positions (rope, learned) count from each document start; documents start at t = 0 of every
 * batch row and at every token equal to doc_token (if doc_token >= 0): attention, the PaTH
 * products, the gate sums and the w convolution never cross a document start. */
#ifndef PATHGPT_MODEL_CONFIG_H
#define PATHGPT_MODEL_CONFIG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ATTN_PATH, ATTN_PATH_FOX, ATTN_FOX, ATTN_ROPE, ATTN_NOPE, ATTN_LEARNED, ATTN_COUNT } AttnType;

typedef struct {
    int max_seq_len;       /* T_max: longest sequence the model accepts (wpe rows for learned) */
    int vocab_size;        /* V: real tokens */
    int padded_vocab_size; /* Vp: V rounded up to a multiple of 128 */
    int n_layer;           /* L */
    int n_head;            /* NH; head dim C / NH */
    int n_embd;            /* C */
    int w_rank;            /* R: rank of PaTH's w projection (C -> R -> C), 32 */
    int conv_size;         /* K: taps of the causal depthwise conv on w, 3 */
    AttnType attn;
    int doc_token;         /* token that starts a document, or -1 for none */
    float rope_theta;      /* rotary base, 10000 */
} ModelConfig;

/* A config with the given shape and type; the other fields at their defaults (R 32, K 3,
 * no doc token, theta 1e4, Vp = V rounded up to 128). */
ModelConfig model_config_make(AttnType attn, int n_layer, int n_head, int n_embd, int vocab_size, int max_seq_len);

/* 0 if usable; otherwise -1 with a one-line reason in why (naming the field). */
int model_config_check(const ModelConfig *cfg, char *why, size_t why_len);

const char *attn_type_name(AttnType a);            /* "path", "path-fox", ... */
int attn_type_parse(const char *name, AttnType *out); /* 0 or -1 */
int attn_uses_path(AttnType a);                    /* w, beta projections and Householder factors */
int attn_uses_gate(AttnType a);                    /* forget gate g */
float attn_gate_scale(AttnType a, float scale);    /* scale for path-fox, 1 for fox, 0 without gate */

/* Training FLOPs per token (forward + backward) of sequences of T tokens, the numerator of MFU
 * (train.c's step line, dev/bench_gpt.py):
 *     6 N_mm + 6 L C T
 * N_mm: the weights applied to every token by a matmul (or the depthwise conv), 2 FLOPs each forward
 * and 4 backward: per layer qkvw 3C^2, attprojw C^2, fcw 4C^2, fcprojw 4C^2; PaTH (path, path-fox)
 * wdown R C, wup C R, wconv C K, betaw NH C; gated (path-fox, fox) gatew NH C; once, the tied LM head
 * Vp C over the padded vocab. Not counted: the embedding lookups, layernorms, biases, elementwise work.
 * Attention: q k^T and att v cost 2 T C FLOPs each per token and layer over the full T x T square;
 * causal halves that, and forward + backward triple it: 3 x (4 T C / 2) = 6 T C per layer. PaTH's
 * Householder products and the gate are counted as plain attention (no extra FLOPs), so every
 * attention type is measured against the same yardstick. llm.c's 6 N + 6 L C T counts all N
 * parameters instead (about 0.7% more at the GPT-2 124M shape). */
double model_config_flops_per_token(const ModelConfig *cfg, int T);

#ifdef __cplusplus
}
#endif
#endif
