/* gelu.cu: see gelu.h (math, shapes, launch shape). */
#include "common.cuh"
#include "gelu.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

static __global__ void gelu_forward_kernel(bf16 *out, const bf16 *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = __bfloat162float(x[i]);
    out[i] = __float2bfloat16_rn(0.5f * v * (1.0f + tanhf(GELU_SCALE * (v + 0.044715f * v * v * v))));
}

static __global__ void gelu_backward_kernel(bf16 *d, const bf16 *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = __bfloat162float(x[i]);
    float th = tanhf(GELU_SCALE * (v + 0.044715f * v * v * v));
    float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * v * v);
    float grad = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * du;
    d[i] = __float2bfloat16_rn(__bfloat162float(d[i]) * grad);
}

void gelu_forward(const GpuCtx *ctx, void *out, const void *x, size_t n) {
    gelu_forward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((bf16 *)out, (const bf16 *)x, n);
    LAUNCH_CHECK(ctx, "gelu_forward_kernel");
}

void gelu_backward(const GpuCtx *ctx, void *d, const void *x, size_t n) {
    gelu_backward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((bf16 *)d, (const bf16 *)x, n);
    LAUNCH_CHECK(ctx, "gelu_backward_kernel");
}
