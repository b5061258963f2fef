/* cast.h: f32 -> bf16 copy on the GPU (round to nearest even): the bf16 copies of the parameters that
 * the matmuls read, refreshed whenever the f32 master weights change outside AdamW.
 * in: src (n) f32; out: dst (n) bf16. Launch: one thread per element, 256 per block.
 * Checked by tests/test_gpt_gpu.cu (every forward after gpt_copy_in). */
#ifndef PATHGPT_KERNELS_CAST_H
#define PATHGPT_KERNELS_CAST_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

void cast_f32_to_bf16(const GpuCtx *ctx, void *dst, const float *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
