/* classifier.h: softmax cross-entropy over the first V of Vp logit columns on the GPU (llm.c's
 * convention: the padded columns Vp - V are ignored), targets < 0 ignored.
 *   forward:  lse[n] = log sum_{v<V} exp z[n,v];   loss[n] = lse[n] - z[n, target[n]]  (0 if target < 0)
 *             correct[n] = (argmax_{v<V} z[n,v] == target[n]), the lowest index among equal maxima
 *   backward: in place, z becomes dz = scale (softmax(z)[v] - [v == target]) for v < V of rows with a
 *             target, 0 elsewhere (padded columns, ignored rows)
 * in : z (N,Vp) bf16 (the logits; the backward overwrites them with their gradient); targets (N) int32
 * out: loss, lse (N) f32; correct (N) int32 (0 where target < 0); statistics in f32.
 * Launch: one 512-thread block per row, 16-byte loads (8 logits), 4 in flight per thread. Forward: one
 * pass, each thread keeping a running max, its index and the sum of exp(z - max) (rescaled when the max
 * grows), merged over the block in a fixed order. Backward: reads only rows with a target; writes all.
 * Limits: Vp a multiple of 8 and logits 16-byte aligned (the launchers exit with a message otherwise).
 * Checked by tests/test_gpt_gpu.cu (loss, n_correct against the GPU logits, every gradient through
 * dlogits). */
#ifndef PATHGPT_KERNELS_CLASSIFIER_H
#define PATHGPT_KERNELS_CLASSIFIER_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

void classifier_forward(const GpuCtx *ctx, float *loss, float *lse, int *correct, const void *logits,
                        const int *targets, int N, int V, int Vp);

void classifier_backward(const GpuCtx *ctx, void *logits, const float *lse, const int *targets, float scale, int N,
                         int V, int Vp);

#ifdef __cplusplus
}
#endif
#endif
