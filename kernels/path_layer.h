/* path_layer.h: the PaTH layer's pieces around the attention call (doc/DESIGN.md section 3), after
 * FLA's PaTHAttention: the Householder directions w and the per-head scalars beta (PaTH) and g (gate).
 *
 * w, per row n = (b, t) of a batch of rows of T tokens, channel c of C = NH heads x d:
 *   x[n,c] = sum_k wconv[c,k] u[b, t-(K-1)+k, c]     causal depthwise conv of u = w_up; taps before
 *                                                    the document start doc_start[n] (a t) read 0
 *   y = silu(x) = x sigmoid(x);   w = y / sqrt(sum_head y^2 + 1e-6)      (per head of d channels)
 * backward (from dw, the attention's gradient of w), with r = 1/sqrt(sum_head y^2 + 1e-6):
 *   dx = r (dw - (dw . w) w) sigmoid(x) (1 + x (1 - sigmoid(x)))
 *   du[b,s,c] = sum_k wconv[c,k] dx[b, s+(K-1)-k, c]  (over the outputs whose tap k reads s)
 *   dwconv[c,k] += sum_n dx[n,c] u[b, t-(K-1)+k, c]
 * Scalars, per row and head, the pre-activation a = h W^T (from matmul.h, f32) plus bias:
 *   PATH_ACT_BETA: beta = 2 sigmoid(a),   da = dbeta beta (1 - beta/2)
 *   PATH_ACT_GATE: g = logsigmoid(a) = min(a, 0) - log1p(exp(-|a|)),   da = dg (1 - exp(g))
 * dtypes: u = w_up (N,C) bf16; wconv (C,K) f32 (master weights); w, dw (N,C) f32; doc_start (N) int32
 *   device; du (N,C) bf16; scalars (N,NH) f32 in place, bias (NH) f32; da (N,NH) bf16 (a GEMM operand).
 * w is kept for the attention backward; x is recomputed there from u (nothing else is stored).
 * Launch: w kernels one warp per (row, head), 8 per block; du one thread per element; dwconv the
 * column sums of colsum.h (scratch: colsum_scratch_floats(N, C K)); scalars one thread per element.
 * Limits: head dim d <= 128. Checked by tests/test_gpt_gpu.cu (path, path-fox, fox against the CPU
 * model: logits, and the wdown, wup, wconv, betaw, betab, gatew, gateb gradients). */
#ifndef PATHGPT_KERNELS_PATH_LAYER_H
#define PATHGPT_KERNELS_PATH_LAYER_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PATH_LAYER_MAX_HEAD_DIM 128

typedef enum { PATH_ACT_BETA, PATH_ACT_GATE } PathAct;

void path_layer_w_forward(const GpuCtx *ctx, float *w, const void *w_up, const float *wconv, const int *doc_start,
                          int N, int T, int C, int NH, int K);

/* dw: the gradient of w on entry, overwritten with that of x; du (=) and dwconv (+=) from it */
void path_layer_w_backward(const GpuCtx *ctx, float *dw, void *du, float *dwconv, const float *w, const void *w_up,
                           const float *wconv, const int *doc_start, int N, int T, int C, int NH, int K,
                           float *scratch);

/* a (N,NH) f32: the pre-activation without bias on entry, the activation (beta or g) on return */
void path_layer_act_forward(const GpuCtx *ctx, PathAct act, float *a, const float *bias, int N, int NH);

/* da (N,NH) bf16 = d(activation) (N,NH) f32 times the activation's derivative, from its value y */
void path_layer_act_backward(const GpuCtx *ctx, PathAct act, void *da, const float *d, const float *y, int N, int NH);

#ifdef __cplusplus
}
#endif
#endif
