/* gpt.h: the model as train.c sees it. Two implementations share this interface and the
 * parameter table (params.h): gpt_cpu.c, the plain-C fp32 reference (the oracle), and gpt_gpu.c,
 * the CUDA model. A program links exactly one of them (train_cpu / train).
 *
 * One training step, for each micro-batch: gpt_forward (loss) -> gpt_backward (adds gradients);
 * then, once per optimizer step: [all-reduce of gpt_grad_buffer across ranks] -> gpt_grad_norm
 * -> gpt_update (AdamW, with the clip factor) -> gpt_zero_grad.
 * Targets < 0 are ignored (masked positions of synthetic tasks); the loss is the mean
 * cross-entropy over the valid targets of the micro-batch. */
#ifndef PATHGPT_MODEL_GPT_H
#define PATHGPT_MODEL_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Gpt Gpt;

typedef struct {
    float loss;    /* mean cross-entropy over valid targets (0 when none) */
    int n_valid;   /* targets >= 0 */
    int n_correct; /* valid targets equal to the argmax of the logits over the real vocab */
} GptLoss;

typedef struct {
    float beta1, beta2, eps, weight_decay; /* decay applies only to tensors with decay = 1 */
} AdamWConfig;

/* A model for batches of up to B rows of up to T tokens (T <= cfg->max_seq_len), parameters
 * initialised by param_init(seed). Exits with a message if memory runs out. */
Gpt *gpt_create(const ModelConfig *cfg, int B, int T, uint64_t seed);
void gpt_free(Gpt *g);
const ModelConfig *gpt_config(const Gpt *g);
size_t gpt_num_params(const Gpt *g);
/* 1 for the GPU model, 0 for the CPU reference (train.c shows MFU on the GPU by default). */
int gpt_on_gpu(void);

/* The model's fp32 state arrays, in this order (checkpoints hold the first three). */
enum { GPT_PARAMS, GPT_ADAM_M, GPT_ADAM_V, GPT_GRADS };

/* One state array (which: GPT_PARAMS .. GPT_GRADS) as an fp32 host array of gpt_num_params()
 * elements, in table order (checkpoints, tests). */
void gpt_copy_out(Gpt *g, int which, float *host);
void gpt_copy_in(Gpt *g, int which, const float *host);

/* inputs, targets (B, T) host int arrays, B, T at most the sizes given to gpt_create; targets
 * may be NULL (loss fields 0). Keeps the activations for gpt_backward. */
GptLoss gpt_forward(Gpt *g, const int *inputs, const int *targets, int B, int T);

/* Adds grad_scale * d(sum of the valid cross-entropies)/d(params) to the gradients, for the
 * batch of the last gpt_forward (which must have had targets). grad_scale = 1/(valid targets
 * over all micro-batches and ranks) gives the mean. */
void gpt_backward(Gpt *g, float grad_scale);
void gpt_zero_grad(Gpt *g);

/* The gradient buffer (gpt_num_params() fp32, host memory for the CPU model, device memory for
 * the GPU model), for the data-parallel all-reduce. */
float *gpt_grad_buffer(Gpt *g);

/* Global L2 norm of the gradients. */
float gpt_grad_norm(Gpt *g);

/* AdamW step t (1-based) on parameters [begin, end) of the flat buffer (the whole buffer, or
 * this rank's shard under ZeRO-1), gradients multiplied by grad_mult first (clipping). */
void gpt_update(Gpt *g, const AdamWConfig *opt, float lr, float grad_mult, int t, size_t begin, size_t end);

/* Generation with the key cache: gpt_decode_begin resets the cache for n sequences (n <= B);
 * each gpt_decode_step appends one token per sequence and writes the next-token logits
 * (n, Vp) to host memory. Equal to gpt_forward's logits at the same positions. */
void gpt_decode_begin(Gpt *g, int n);
void gpt_decode_step(Gpt *g, const int *tokens, float *logits);

#ifdef __cplusplus
}
#endif
#endif
