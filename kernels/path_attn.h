/* path_attn.h: PaTH attention on the GPU, forward and backward (doc/DESIGN.md sections 1-2,
 * doc/PATH_ALGORITHM.md). Also serves plain softmax attention (w = beta = NULL) and the
 * Forgetting Transformer (gate with gate_scale = 1): the Householder work then vanishes, and
 * FlashAttention-2-style kernels without atomics run instead (path_attn_flash.cu; qleft unused).
 *
 *   z_ij = scale q_i^T H_i .. H_{j+1} k_j + gate_scale (G_i - G_j),  o_i = sum_j softmax_j(z_i.) v_j
 *
 * Layout and shapes: kernels/attn_dims.h (packed sequences, cu_seqlens in host memory).
 *   q (N,Hq,d) bf16   k, v (N,H,d) bf16   w (N,H,d) f32 unit rows   beta (N,H) f32 in (0,2)
 *   g (N,Hq) f32 log forget gate <= 0, or NULL        o (N,Hq,d) bf16   lse (N,Hq) f32 (natural log)
 *   qleft (N,Hq,d) f16: saved by the forward for the backward (each query moved to the left edge of
 *   its superblock); with o and lse the only per-token state kept: 4d + 4 bytes per token and
 *   query head at bf16 activations (FLA keeps 2d + 260).
 * Gradients: dq, dk, dv bf16 (same shapes as q, k, v), dw (N,H,d), dbeta (N,H), dg (N,Hq) f32.
 * Limits: d in {32, 64, 128}; any sequence lengths (64-bit indexing throughout).
 * Scratch lives in the PathAttn object and grows on demand; calls are asynchronous on ctx->stream.
 * Checked by tests/test_path_attn_gpu.cu against the double-precision oracle model/attn_ref.c. */
#ifndef PATHGPT_KERNELS_PATH_ATTN_H
#define PATHGPT_KERNELS_PATH_ATTN_H

#include <stddef.h>

#include "attn_dims.h"
#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PathAttn PathAttn;

PathAttn *path_attn_create(const GpuCtx *ctx);
void path_attn_free(PathAttn *pa);

/* F1-F3's factors (doc/PATH_ALGORITHM.md section 3) kept by a forward for the backward of the same
 * inputs, which then skips recomputing them. They cost, per kv head and token, 12d + 10c + 4d^2/c bytes
 * (c = 64 the block; d = 64: 1.6 KB), plus 4 d^2 bytes per superblock and per pair of superblocks (the
 * coarse maps) and the gate sums. One per layer in a model; the device buffer grows on demand. */
typedef struct PathFactors PathFactors;
PathFactors *path_factors_create(void);
void path_factors_free(PathFactors *f);
size_t path_factors_bytes(const PathFactors *f); /* device memory held */

/* 0 if the GPU kernels support dims (attn_dims_check plus the head-dim limits); otherwise -1 and
 * a one-line reason in why. The calls below assume this passed. */
int path_attn_check(const AttnDims *dims, char *why, size_t why_len);

/* keep: NULL, or where to leave the factors for path_attn_backward (nothing is kept without w). */
void path_attn_forward(PathAttn *pa, const AttnDims *dims, const void *q, const void *k, const void *v,
                       const float *w, const float *beta, const float *g, void *o, float *lse, void *qleft,
                       PathFactors *keep);

/* kept: NULL (recompute the factors), or what the forward of these same inputs kept. */
void path_attn_backward(PathAttn *pa, const AttnDims *dims, const void *q, const void *k, const void *v,
                        const float *w, const float *beta, const float *g, const void *o, const float *lse,
                        const void *qleft, const void *dout, void *dq, void *dk, void *dv, float *dw,
                        float *dbeta, float *dg, const PathFactors *kept);

/* Device scratch currently held, bytes. */
size_t path_attn_scratch_bytes(const PathAttn *pa);

#ifdef __cplusplus
}
#endif
#endif
