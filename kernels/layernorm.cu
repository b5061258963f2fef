/* layernorm.cu: see layernorm.h (math, shapes, launch shapes). */
#include "common.cuh"
#include "layernorm.h"

#define LN_ROWS_PER_BLOCK 8 /* one warp per row */

static __global__ void layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp,
                                                const float *weight, const float *bias, int N, int C) {
    int n = blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const bf16 *x = inp + (size_t)n * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += __bfloat162float(x[c]);
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float e = __bfloat162float(x[c]) - m;
        v += e * e;
    }
    float r = 1.0f / sqrtf(warp_sum(v) / C + 1e-5f);
    for (int c = lane; c < C; c += 32)
        out[(size_t)n * C + c] = __float2bfloat16_rn((__bfloat162float(x[c]) - m) * r * weight[c] + bias[c]);
    if (lane == 0) {
        mean[n] = m;
        rstd[n] = r;
    }
}

static __global__ void layernorm_backward_kernel(bf16 *dinp, int accumulate, const float *dout, const bf16 *inp,
                                                 const float *weight, const float *mean, const float *rstd, int N,
                                                 int C) {
    int n = blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    const bf16 *x = inp + (size_t)n * C;
    const float *d = dout + (size_t)n * C;
    float m = mean[n], r = rstd[n], a = 0.0f, b = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dxhat = weight[c] * d[c];
        a += dxhat;
        b += dxhat * (__bfloat162float(x[c]) - m) * r;
    }
    a = warp_sum(a) / C;
    b = warp_sum(b) / C;
    bf16 *dx = dinp + (size_t)n * C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (__bfloat162float(x[c]) - m) * r;
        float g = r * (weight[c] * d[c] - a - xhat * b);
        if (accumulate) g += __bfloat162float(dx[c]);
        dx[c] = __float2bfloat16_rn(g);
    }
}

namespace {
struct LayernormParamGrad { /* columns [0, C): xhat dout (weight); [C, 2C): dout (bias) */
    const float *dout;
    const bf16 *inp;
    const float *mean, *rstd;
    int C;
    __device__ float operator()(int n, int col) const {
        int c = col < C ? col : col - C;
        float d = dout[(size_t)n * C + c];
        if (col >= C) return d;
        return (__bfloat162float(inp[(size_t)n * C + c]) - mean[n]) * rstd[n] * d;
    }
};
}  // namespace

void layernorm_forward(const GpuCtx *ctx, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                       const float *bias, int N, int C) {
    layernorm_forward_kernel<<<grid_for(N, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, ctx->stream>>>(
        (bf16 *)out, mean, rstd, (const bf16 *)inp, weight, bias, N, C);
    LAUNCH_CHECK(ctx, "layernorm_forward_kernel");
}

void layernorm_backward(const GpuCtx *ctx, void *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                        const void *inp, const float *weight, const float *mean, const float *rstd, int N, int C,
                        float *scratch) {
    layernorm_backward_kernel<<<grid_for(N, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, ctx->stream>>>(
        (bf16 *)dinp, accumulate, dout, (const bf16 *)inp, weight, mean, rstd, N, C);
    LAUNCH_CHECK(ctx, "layernorm_backward_kernel");
    LayernormParamGrad f = {dout, (const bf16 *)inp, mean, rstd, C};
    colsum_partials(ctx, f, N, 2 * C, 2 * C, scratch, "colsum_partials_kernel<LayernormParamGrad>");
    colsum_add(ctx, scratch, N, C, 2 * C, dweight);
    colsum_add(ctx, scratch + C, N, C, 2 * C, dbias);
}
