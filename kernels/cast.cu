/* cast.cu: see cast.h. */
#include "cast.h"
#include "common.cuh"

static __global__ void cast_kernel(bf16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

void cast_f32_to_bf16(const GpuCtx *ctx, void *dst, const float *src, size_t n) {
    if (n == 0) return;
    cast_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((bf16 *)dst, src, n);
    LAUNCH_CHECK(ctx, "cast_kernel");
}
