/* norm.h: the sum of squares of a long f32 vector on the GPU (the global gradient norm, doc/DESIGN.md
 * section 3), deterministic: NORM_BLOCKS blocks (a fixed count, not the device's) each add a fixed
 * stride of elements in double and reduce in a fixed order; the host adds the NORM_BLOCKS partials
 * in order. Blocks until the result is on the host. scratch: NORM_BLOCKS doubles of device memory.
 * Checked by tests/test_gpt_gpu.cu (grad norm against the CPU model's). */
#ifndef PATHGPT_KERNELS_NORM_H
#define PATHGPT_KERNELS_NORM_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NORM_BLOCKS 264 /* two waves' worth on an H100 (132 SMs); fixed so results do not depend on the GPU */

double norm_sum_squares(const GpuCtx *ctx, const float *x, size_t n, double *scratch);

#ifdef __cplusplus
}
#endif
#endif
