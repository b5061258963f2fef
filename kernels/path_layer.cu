/* path_layer.cu: see path_layer.h (math, shapes, launch shapes). */
#include "common.cuh"
#include "path_layer.h"

#define WARPS_PER_BLOCK 8
#define PER_LANE (PATH_LAYER_MAX_HEAD_DIM / 32) /* channels of one head per lane */

/* x[n, c]: the conv of u at row n (token t of a row starting at u_row0), taps from the document start on */
__device__ __forceinline__ float conv_at(const bf16 *u, const float *wconv, size_t u_row0, int t, int start, int c,
                                         int C, int K) {
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        int s = t - (K - 1) + k;
        if (s >= start) acc += wconv[(size_t)c * K + k] * __bfloat162float(u[u_row0 + (size_t)s * C + c]);
    }
    return acc;
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static __global__ void w_forward_kernel(float *w, const bf16 *u, const float *wconv, const int *doc_start, int N,
                                        int T, int C, int NH, int K) {
    int unit = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (unit >= N * NH) return;
    int n = unit / NH, h = unit % NH, d = C / NH, t = n % T;
    size_t u_row0 = (size_t)(n - t) * C;
    float y[PER_LANE], ss = 0.0f;
    for (int j = 0; j < PER_LANE; j++) {
        int e = lane + 32 * j;
        y[j] = 0.0f;
        if (e >= d) continue;
        float x = conv_at(u, wconv, u_row0, t, doc_start[n], h * d + e, C, K);
        y[j] = x * sigmoid(x);
        ss += y[j] * y[j];
    }
    float r = 1.0f / sqrtf(warp_sum(ss) + 1e-6f);
    for (int j = 0; j < PER_LANE; j++) {
        int e = lane + 32 * j;
        if (e < d) w[(size_t)n * C + h * d + e] = y[j] * r;
    }
}

static __global__ void wnorm_backward_kernel(float *dw, const float *w, const bf16 *u, const float *wconv,
                                             const int *doc_start, int N, int T, int C, int NH, int K) {
    int unit = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (unit >= N * NH) return;
    int n = unit / NH, h = unit % NH, d = C / NH, t = n % T;
    size_t u_row0 = (size_t)(n - t) * C, o = (size_t)n * C + h * d;
    float x[PER_LANE], ss = 0.0f, dot = 0.0f;
    for (int j = 0; j < PER_LANE; j++) {
        int e = lane + 32 * j;
        x[j] = 0.0f;
        if (e >= d) continue;
        x[j] = conv_at(u, wconv, u_row0, t, doc_start[n], h * d + e, C, K);
        float y = x[j] * sigmoid(x[j]);
        ss += y * y;
        dot += dw[o + e] * w[o + e];
    }
    float r = 1.0f / sqrtf(warp_sum(ss) + 1e-6f);
    dot = warp_sum(dot);
    for (int j = 0; j < PER_LANE; j++) {
        int e = lane + 32 * j;
        if (e >= d) continue;
        float s = sigmoid(x[j]);
        dw[o + e] = r * (dw[o + e] - dot * w[o + e]) * s * (1.0f + x[j] * (1.0f - s));
    }
}

/* du[n, c] from dx (in dw): the outputs t = s + (K-1) - k whose tap k reads row n (token s) */
static __global__ void conv_backward_kernel(bf16 *du, const float *dx, const float *wconv, const int *doc_start,
                                            int N, int T, int C, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    int n = (int)(i / C), c = (int)(i % C), s = n % T;
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        int t = s + (K - 1) - k, m = n + (K - 1) - k; /* m: row of token t */
        if (t < T && s >= doc_start[m]) acc += wconv[(size_t)c * K + k] * dx[(size_t)m * C + c];
    }
    du[i] = __float2bfloat16_rn(acc);
}

namespace {
struct ConvTapGrad { /* column c K + k: dx[n, c] u[row of tap k, c] */
    static constexpr int WIDTH = 1;
    const float *dx;
    const bf16 *u;
    const int *doc_start;
    int T, C, K;
    __device__ void operator()(int n, int col, float *v) const {
        int c = col / K, k = col % K, t = n % T, s = t - (K - 1) + k;
        v[0] = s < doc_start[n] ? 0.0f : dx[(size_t)n * C + c] * __bfloat162float(u[(size_t)(n - t + s) * C + c]);
    }
};
}  // namespace

static __global__ void act_forward_kernel(PathAct act, float *a, const float *bias, int N, int NH) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * NH) return;
    float x = a[i] + bias[i % NH];
    a[i] = act == PATH_ACT_BETA ? 2.0f * sigmoid(x) : fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

static __global__ void act_backward_kernel(PathAct act, bf16 *da, const float *d, const float *y, int N, int NH) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * NH) return;
    float slope = act == PATH_ACT_BETA ? y[i] * (1.0f - 0.5f * y[i]) : -expm1f(y[i]);
    da[i] = __float2bfloat16_rn(d[i] * slope);
}

void path_layer_w_forward(const GpuCtx *ctx, float *w, const void *w_up, const float *wconv, const int *doc_start,
                          int N, int T, int C, int NH, int K) {
    w_forward_kernel<<<grid_for((size_t)N * NH, WARPS_PER_BLOCK), 32 * WARPS_PER_BLOCK, 0, ctx->stream>>>(
        w, (const bf16 *)w_up, wconv, doc_start, N, T, C, NH, K);
    LAUNCH_CHECK(ctx, "w_forward_kernel");
}

void path_layer_w_backward(const GpuCtx *ctx, float *dw, void *du, float *dwconv, const float *w, const void *w_up,
                           const float *wconv, const int *doc_start, int N, int T, int C, int NH, int K,
                           float *scratch) {
    const bf16 *u = (const bf16 *)w_up;
    wnorm_backward_kernel<<<grid_for((size_t)N * NH, WARPS_PER_BLOCK), 32 * WARPS_PER_BLOCK, 0, ctx->stream>>>(
        dw, w, u, wconv, doc_start, N, T, C, NH, K);
    LAUNCH_CHECK(ctx, "wnorm_backward_kernel");
    conv_backward_kernel<<<grid_for((size_t)N * C, 256), 256, 0, ctx->stream>>>((bf16 *)du, dw, wconv, doc_start, N,
                                                                              T, C, K);
    LAUNCH_CHECK(ctx, "conv_backward_kernel");
    ConvTapGrad f = {dw, u, doc_start, T, C, K};
    colsum_partials(ctx, f, N, C * K, scratch, "colsum_partials_kernel<ConvTapGrad>");
    colsum_add(ctx, scratch, N, C * K, C * K, dwconv);
}

void path_layer_act_forward(const GpuCtx *ctx, PathAct act, float *a, const float *bias, int N, int NH) {
    act_forward_kernel<<<grid_for((size_t)N * NH, 256), 256, 0, ctx->stream>>>(act, a, bias, N, NH);
    LAUNCH_CHECK(ctx, "act_forward_kernel");
}

void path_layer_act_backward(const GpuCtx *ctx, PathAct act, void *da, const float *d, const float *y, int N, int NH) {
    act_backward_kernel<<<grid_for((size_t)N * NH, 256), 256, 0, ctx->stream>>>(act, (bf16 *)da, d, y, N, NH);
    LAUNCH_CHECK(ctx, "act_backward_kernel");
}
