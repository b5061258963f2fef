/* gpt.h: the model as train.c sees it. Two implementations share this interface and the
 * parameter table (params.h): gpt_cpu.c, the plain-C fp32 reference (the oracle), and gpt_gpu.c,
 * the CUDA model. A program links exactly one of them (train_cpu / train).
 *
 * One training step, for each micro-batch: gpt_forward (loss) -> gpt_backward (adds gradients);
 * then, once per optimizer step: [gradients summed across ranks] -> gpt_grad_norm
 * -> gpt_update (AdamW, with the clip factor) -> gpt_zero_grad.
 * Several ranks (train.c, comm/comm.h): the sum is comm_allreduce_sum on gpt_grad_buffer, after backward
 * or, overlapped, range by range during the last micro-batch's gpt_backward (gpt_set_grad_ready). ZeRO-1
 * (gpt_shard_optimizer: each rank keeps AdamW's moments for its shard of the flat parameters):
 * comm_reduce_scatter_sum on gpt_grad_buffer -> gpt_grad_sum_squares of the shard, summed over the ranks:
 * the norm -> gpt_update on the shard -> comm_allgather on gpt_param_buffer -> gpt_params_written.
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
 * elements, in table order (checkpoints, tests). After gpt_shard_optimizer(g, begin, end, ...) the
 * moments (GPT_ADAM_M, GPT_ADAM_V) exist for [begin, end) only: their copies move elements
 * [begin, end) of host and neither read nor write the rest of it. */
void gpt_copy_out(Gpt *g, int which, float *host);
void gpt_copy_in(Gpt *g, int which, const float *host);

/* Bytes of memory (host for the CPU model, device for the GPU model) the model holds for state array
 * which: 4 per element of its buffer (padding included, moments only for the shard after
 * gpt_shard_optimizer); the GPU model's GPT_PARAMS add its bf16 copies. train.c prints them per rank. */
size_t gpt_state_bytes(const Gpt *g, int which);

/* ZeRO-1 (README, "Multiple processes and GPUs"): from this call on the model keeps AdamW's moments for
 * parameters [begin, end) only, this rank's shard (their values kept, the others freed), and its
 * parameter and gradient buffers hold n_padded >= gpt_num_params() elements, those past the parameters 0,
 * so that world x shard elements take part in comm_reduce_scatter_sum and comm_allgather. gpt_update
 * then takes ranges inside [begin, end) only. [begin, end) must lie inside the moments the model holds
 * (all of them until the first call). gpt_create allocates the whole moments, so the peak memory of the
 * start is the unsharded model's. */
void gpt_shard_optimizer(Gpt *g, size_t begin, size_t end, size_t n_padded);

/* inputs, targets (B, T) host int arrays, B, T at most the sizes given to gpt_create; targets
 * may be NULL (loss fields 0). Keeps the activations for gpt_backward. */
GptLoss gpt_forward(Gpt *g, const int *inputs, const int *targets, int B, int T);

/* Adds grad_scale * d(sum of the valid cross-entropies)/d(params) to the gradients, for the
 * batch of the last gpt_forward (which must have had targets). grad_scale = 1/(valid targets
 * over all micro-batches and ranks) gives the mean. */
void gpt_backward(Gpt *g, float grad_scale);
void gpt_zero_grad(Gpt *g);

/* The gradient sum overlapped with backward (comm/comm.h). While fn is set, gpt_backward calls
 * fn(ctx, gpt_grad_buffer(g), begin, end, stream) for each range [begin, end) of the gradients as soon
 * as it is final: layer by layer from the last, the layer's slices of the layer-stacked tensors, then the
 * tensors that are not stacked (wte, wpe, lnfw, lnfb): params.h's param_layer_ranges. Every parameter is
 * in exactly one range, and the calls come in the same order on every rank. CPU model: synchronously,
 * stream NULL. GPU model: stream is the model's side stream (a cudaStream_t) after it waited for the
 * range's gradients; fn queues work on it (comm_allreduce_sum(c, grads + begin, end - begin, stream)) and
 * returns, and gpt_backward ends with the model's own stream waiting for the side stream, so all later
 * work sees what fn did. Set it for the last micro-batch of a step only (the earlier ones' gradients are
 * not final); fn NULL: no calls. */
typedef void (*GptGradReady)(void *ctx, float *grads, size_t begin, size_t end, void *stream);
void gpt_set_grad_ready(Gpt *g, GptGradReady fn, void *ctx);

/* The flat fp32 gradient and parameter buffers (table order; gpt_num_params() elements, n_padded after
 * gpt_shard_optimizer; host memory for the CPU model, device memory for the GPU model), for the
 * collectives of comm/comm.h. After writing the parameter buffer (ZeRO-1's all-gather) call
 * gpt_params_written: the GPU model recomputes the bf16 copies its matmuls read; the CPU model has none. */
float *gpt_grad_buffer(Gpt *g);
float *gpt_param_buffer(Gpt *g);
void gpt_params_written(Gpt *g);

/* Global L2 norm of the gradients; the sum of squares of gradients [begin, end) (ZeRO-1: of this
 * rank's shard; the caller sums over the ranks). Each adds in a fixed order, so results repeat; the
 * norm from shard sums may differ from gpt_grad_norm in the last bits (another order of the sum). */
float gpt_grad_norm(Gpt *g);
double gpt_grad_sum_squares(Gpt *g, size_t begin, size_t end);

/* AdamW step t (1-based) on parameters [begin, end) of the flat buffer (the whole buffer, or
 * this rank's shard under ZeRO-1: inside gpt_shard_optimizer's range), gradients multiplied by
 * grad_mult first (clipping). */
void gpt_update(Gpt *g, const AdamWConfig *opt, float lr, float grad_mult, int t, size_t begin, size_t end);

/* Generation with the key cache: gpt_decode_begin resets the cache for n sequences (n <= B);
 * each gpt_decode_step appends one token per sequence and writes the next-token logits
 * (n, Vp) to host memory. Equal to gpt_forward's logits at the same positions.
 * gpt_decode_prefill is gpt_decode_begin(g, n) followed by a prompt of T tokens per sequence, tokens (n, T)
 * host ints, T <= the T given to gpt_create (documents split at doc_token as gpt_forward does): it writes
 * the logits (n, Vp) after each row's last token, and gpt_decode_step continues from there. The GPU
 * model runs the prompt through one forward pass (linear in T per sequence; it replaces the activations of
 * the last gpt_forward, so take gpt_backward before it); the CPU model takes one decode step per token. */
void gpt_decode_begin(Gpt *g, int n);
void gpt_decode_step(Gpt *g, const int *tokens, float *logits);
void gpt_decode_prefill(Gpt *g, const int *tokens, int n, int T, float *logits);

#ifdef __cplusplus
}
#endif
#endif
