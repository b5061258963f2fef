/* layernorm.h: layernorm over the last dim on the GPU (GPT-2's ln1, ln2, lnf; doc/DESIGN.md section 3).
 *   forward:  mean = sum_c x / C,  rstd = 1 / sqrt(sum_c (x - mean)^2 / C + 1e-5)
 *             out = (x - mean) rstd weight + bias
 *   backward: xhat = (x - mean) rstd, dxhat = weight dout
 *             dinp  (=, or += with accumulate) rstd (dxhat - mean_c(dxhat) - xhat mean_c(dxhat xhat))
 *             dweight += sum_n xhat dout,   dbias += sum_n dout
 * in : inp (N,C) bf16; weight, bias (C) f32 (the master weights); dout (N,C) f32
 * out: out (N,C) bf16, mean, rstd (N) f32 kept for backward; dinp (N,C) bf16; dweight, dbias (C) f32
 * Statistics and all arithmetic in f32. Launch: one warp per row with the row in registers (16-byte
 * loads and stores), 8 warps per block. Forward: 8 rows per block. Backward: one block per slab of
 * COLSUM_SLAB_ROWS rows, each warp 8 rows; the same pass sums xhat dout and dout over the slab (per-lane
 * registers, then the 8 warps in a fixed order) into scratch (slabs, 2C), which two colsum_add launches
 * (colsum.h) add into dweight and dbias: no atomics, no second pass over dout.
 * Limits (layernorm_check): C a multiple of 8 up to LAYERNORM_MAX_C; row arrays, weight and bias 16-byte
 * aligned (the launchers exit with a message otherwise). Scratch: colsum_scratch_floats(N, 2C).
 * Checked by tests/test_gpt_gpu.cu (logits and the ln1w .. lnfb gradients against the CPU model). */
#ifndef PATHGPT_KERNELS_LAYERNORM_H
#define PATHGPT_KERNELS_LAYERNORM_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LAYERNORM_MAX_C 2048

/* 0 if the kernels support rows of C columns; else -1 and a reason in why */
int layernorm_check(int C, char *why, size_t why_len);

void layernorm_forward(const GpuCtx *ctx, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                       const float *bias, int N, int C);

void layernorm_backward(const GpuCtx *ctx, void *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                        const void *inp, const float *weight, const float *mean, const float *rstd, int N, int C,
                        float *scratch);

#ifdef __cplusplus
}
#endif
#endif
