/* path_prefill.cu: see path_prefill.h (math, shapes, precision, launch shapes).
 * Layout: the cache kernel (values and plain keys, the gate scan, the PaTH walk), the window kernel, then
 * the launchers. */
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"
#include "path_prefill.h"

#define TPR 4    /* threads per row of M: 4 d threads, each with d/4 entries of M in registers */
#define STAGE 32 /* tokens of w, k and beta in shared memory at a time: 32 KB at d = 128 */

/* Warp 0 (all 32 lanes): G[j] = g[row0] + .. + g[row0 + j] for j < len, of head h (g at row r: g[r H + h]). */
static __device__ void gate_scan(float *G, const float *g, size_t row0, int H, int h, int len) {
    int lane = threadIdx.x % 32;
    float carry = 0.0f; /* G at the last of the previous 32 tokens */
    for (int j0 = 0; j0 < len; j0 += 32) {
        int j = j0 + lane;
        float x = j < len ? g[(row0 + j) * H + h] : 0.0f;
        for (int o = 1; o < 32; o *= 2) { /* inclusive scan over the lanes */
            float y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (j < len) G[j] = carry + x;
        carry += __shfl_sync(0xffffffffu, x, 31);
    }
}

/* Block (sequence b, head h): cache entries j < len of the head from the activation rows row0 + j. */
template <int D>
static __global__ void __launch_bounds__(TPR * D)
    cache_kernel(PathPrefillDims dims, const int *len_of, float *k_cache, bf16 *v_cache, float *G_cache,
                 const bf16 *k, const bf16 *v, const float *w, const float *beta, const float *g) {
    constexpr int EPT = D / TPR;     /* entries of a row of M per thread: 8, 16, 32 */
    constexpr int THREADS = TPR * D; /* blockDim.x: 128, 256, 512 */
    __shared__ float w_s[STAGE][D], k_s[STAGE][D], beta_s[STAGE];
    int head = blockIdx.x, b = head / dims.H, h = head % dims.H, len = len_of[b];
    size_t C = (size_t)dims.H * D;
    size_t row0 = (size_t)b * dims.T + dims.T - len; /* activation row of document position 0 */
    size_t first = (size_t)head * dims.cap;          /* cache entry of document position 0 */
    float *kc = k_cache + first * D;
    bf16 *vc = v_cache + first * D;
    for (size_t x = threadIdx.x; x < (size_t)len * D; x += THREADS) { /* (len, D): entry j, element e */
        size_t j = x / D, src = (row0 + j) * C + (size_t)h * D + x % D;
        vc[x] = v[src];
        if (!w) kc[x] = __bfloat162float(k[src]);
    }
    if (G_cache && threadIdx.x < 32) gate_scan(G_cache + first, g, row0, dims.H, h, len);
    if (!w) return;
    int i = threadIdx.x / TPR, p = threadIdx.x % TPR; /* row i of M, entries e = p + TPR m */
    float M[EPT];
#pragma unroll
    for (int m = 0; m < EPT; m++) M[m] = p + TPR * m == i ? 1.0f : 0.0f;
    for (int hi = len; hi > 0; hi -= STAGE) { /* positions [lo, hi), walked down */
        int lo = max(hi - STAGE, 0);
        __syncthreads(); /* the previous stage is used up */
        for (int x = threadIdx.x; x < (hi - lo) * D; x += THREADS) {
            int s = x / D, e = x % D;
            size_t src = (row0 + lo + s) * C + (size_t)h * D + e;
            w_s[s][e] = w[src];
            k_s[s][e] = __bfloat162float(k[src]);
        }
        for (int s = threadIdx.x; s < hi - lo; s += THREADS) beta_s[s] = beta[(row0 + lo + s) * dims.H + h];
        __syncthreads();
        for (int s = hi - lo - 1; s >= 0; s--) { /* M = H_{len-1} .. H_{lo+s+1} */
            float mw = 0.0f, mk = 0.0f;          /* (M w_j)_i, (M k_j)_i, j = lo + s */
#pragma unroll
            for (int m = 0; m < EPT; m++) {
                mw += M[m] * w_s[s][p + TPR * m];
                mk += M[m] * k_s[s][p + TPR * m];
            }
#pragma unroll
            for (int o = TPR / 2; o > 0; o /= 2) { /* over the TPR lanes of row i */
                mw += __shfl_xor_sync(0xffffffffu, mw, o);
                mk += __shfl_xor_sync(0xffffffffu, mk, o);
            }
            if (p == 0) kc[(size_t)(lo + s) * D + i] = mk;
            mw *= beta_s[s];
#pragma unroll
            for (int m = 0; m < EPT; m++) M[m] -= mw * w_s[s][p + TPR * m]; /* M <- M H_j */
        }
    }
}

/* Thread per (sequence b, window row k, channel c) of window (n,K,C). */
static __global__ void window_kernel(bf16 *window, const bf16 *w_up, const int *len_of, int n, int T, int C, int K) {
    size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= (size_t)n * K * C) return;
    int c = (int)(x % C), k = (int)(x / C % K), b = (int)(x / ((size_t)K * C));
    bool in_doc = len_of[b] - K + k >= 0;   /* document position len - K + k */
    size_t row = (size_t)b * T + T - K + k; /* its activation row, when in_doc */
    window[x] = in_doc ? w_up[row * C + c] : __float2bfloat16_rn(0.0f);
}

void path_prefill_cache(const GpuCtx *ctx, const PathPrefillDims *dims, const int *len, float *k_cache,
                        void *v_cache, float *G_cache, const void *k, const void *v, const float *w,
                        const float *beta, const float *g) {
#define CACHE(D)                                                                                                  \
    cache_kernel<D><<<dims->n * dims->H, TPR * D, 0, ctx->stream>>>(                                          \
        *dims, len, k_cache, (bf16 *)v_cache, G_cache, (const bf16 *)k, (const bf16 *)v, w, beta, g)
    switch (dims->d) {
    case 32: CACHE(32); break;
    case 64: CACHE(64); break;
    case 128: CACHE(128); break;
    default:
        fprintf(stderr, "error: path_prefill_cache: head dim %d; the kernels support 32, 64 and 128\n", dims->d);
        exit(EXIT_FAILURE);
    }
#undef CACHE
    LAUNCH_CHECK(ctx, "cache_kernel");
}

void path_prefill_window(const GpuCtx *ctx, const PathPrefillDims *dims, void *window, const void *w_up,
                         const int *len, int K) {
    int C = dims->H * dims->d;
    window_kernel<<<grid_for((size_t)dims->n * K * C, 256), 256, 0, ctx->stream>>>(
        (bf16 *)window, (const bf16 *)w_up, len, dims->n, dims->T, C, K);
    LAUNCH_CHECK(ctx, "window_kernel");
}
