/* gelu.cu: see gelu.h (math, shapes, launch shape). */
#include "common.cuh"
#include "gelu.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_THREADS 256

__device__ __forceinline__ float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
}

/* d gelu / dx */
__device__ __forceinline__ float gelu_grad(float x) {
    float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
    float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

/* thread i: elements [8 i, 8 i + 8), one 16-byte load per array; the last one any n % 8 left, one at a time */
static __global__ void gelu_forward_kernel(bf16 *out, const bf16 *x, size_t n) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i + 8 <= n) {
        float v[8];
        bf16x8_unpack(*reinterpret_cast<const uint4 *>(x + i), v);
        for (int k = 0; k < 8; k++) v[k] = gelu(v[k]);
        *reinterpret_cast<uint4 *>(out + i) = bf16x8_pack(v);
    } else
        for (; i < n; i++) out[i] = __float2bfloat16_rn(gelu(__bfloat162float(x[i])));
}

static __global__ void gelu_backward_kernel(bf16 *d, const bf16 *x, size_t n) {
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i + 8 <= n) {
        float v[8], g[8];
        bf16x8_unpack(*reinterpret_cast<const uint4 *>(x + i), v);
        bf16x8_unpack(*reinterpret_cast<const uint4 *>(d + i), g);
        for (int k = 0; k < 8; k++) g[k] *= gelu_grad(v[k]);
        *reinterpret_cast<uint4 *>(d + i) = bf16x8_pack(g);
    } else
        for (; i < n; i++) d[i] = __float2bfloat16_rn(__bfloat162float(d[i]) * gelu_grad(__bfloat162float(x[i])));
}

void gelu_forward(const GpuCtx *ctx, void *out, const void *x, size_t n) {
    require_aligned16("gelu_forward", "out", out);
    require_aligned16("gelu_forward", "x", x);
    gelu_forward_kernel<<<grid_for((n + 7) / 8, GELU_THREADS), GELU_THREADS, 0, ctx->stream>>>((bf16 *)out,
                                                                                             (const bf16 *)x, n);
    LAUNCH_CHECK(ctx, "gelu_forward_kernel");
}

void gelu_backward(const GpuCtx *ctx, void *d, const void *x, size_t n) {
    require_aligned16("gelu_backward", "d", d);
    require_aligned16("gelu_backward", "x", x);
    gelu_backward_kernel<<<grid_for((n + 7) / 8, GELU_THREADS), GELU_THREADS, 0, ctx->stream>>>((bf16 *)d,
                                                                                              (const bf16 *)x, n);
    LAUNCH_CHECK(ctx, "gelu_backward_kernel");
}
