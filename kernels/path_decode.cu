/* path_decode.cu: see path_decode.h (math, shapes, precision, launch shapes).
 * Layout: the window kernel, the attend kernel (per chunk of keys: PaTH update, append, scores, partial
 * softmax), the combine kernel, then the launchers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"
#include "path_decode.h"

#define CHUNK 64 /* keys per attend block: 16 per warp; at T = 1024, 16 chunks per (sequence, head) fill the GPU */
#define WARPS 4
#define THREADS (32 * WARPS)

static __global__ void window_kernel(bf16 *window, const bf16 *w_up, const int *pos, int n, int C, int K) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * C) return;
    int b = (int)(i / C), c = (int)(i % C), t = pos[b];
    bf16 *win = window + (size_t)b * K * C + c; /* (K) rows of channel c, the oldest first */
    for (int k = 0; k + 1 < K; k++) /* row k + 1 is read before it is overwritten */
        win[(size_t)k * C] = t - (K - 1) + k >= 0 ? win[(size_t)(k + 1) * C] : __float2bfloat16_rn(0.0f);
    win[(size_t)(K - 1) * C] = w_up[i];
}

/* Block (sequence b, head h; chunk y): keys j in [64 y, min(64 y + 64, t + 1)). Writes the chunk's
 * (max z, sum exp(z - max), sum exp(z - max) v) to partial (n, H, chunks, d + 2). */
template <int D>
static __global__ void attend_kernel(PathDecodeDims dims, const int *pos, float *k_cache, bf16 *v_cache,
                                     float *G_cache, const bf16 *q, const bf16 *k, const bf16 *v, const float *w,
                                     size_t w_stride, const float *beta, const float *g, float *partial) {
    constexpr int PL = D / 32;         /* elements of a head per lane */
    constexpr int PARTS = THREADS / D; /* threads per value element in the weighted sum */
    __shared__ float score[CHUNK], prob[CHUNK], part_sum[PARTS][D];
    int head = blockIdx.x, b = head / dims.H, h = head % dims.H; /* head: (b, h) row of the (n, H) arrays */
    int t = pos[b], j0 = blockIdx.y * CHUNK;
    if (j0 > t) return; /* a shorter sequence than the grid's longest */
    int cnt = min(CHUNK, t + 1 - j0), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    size_t first = (size_t)head * dims.cap; /* cache entry of the document's token 0 */
    float *kc = k_cache + first * D;
    bf16 *vc = v_cache + first * D;
    float *Gc = G_cache ? G_cache + first : NULL;
    float qr[PL], wr[PL];
    for (int i = 0; i < PL; i++) {
        int e = lane + 32 * i;
        qr[i] = __bfloat162float(q[(size_t)head * D + e]);
        wr[i] = w ? w[(size_t)b * w_stride + (size_t)h * D + e] : 0.0f;
    }
    float bt = w ? beta[head] : 0.0f;
    float Gt = g ? (t > 0 ? Gc[t - 1] : 0.0f) + g[head] : 0.0f;
    for (int jj = warp; jj < cnt; jj += WARPS) { /* one key per warp: (D) over the lanes */
        int j = j0 + jj;
        float kr[PL], *kj = kc + (size_t)j * D;
        if (j == t) { /* the new token: appended as it is */
            for (int i = 0; i < PL; i++) {
                int e = lane + 32 * i;
                kr[i] = __bfloat162float(k[(size_t)head * D + e]);
                kj[e] = kr[i];
                vc[(size_t)j * D + e] = v[(size_t)head * D + e];
            }
            if (Gc && lane == 0) Gc[j] = Gt;
        } else {
            for (int i = 0; i < PL; i++) kr[i] = kj[lane + 32 * i];
            if (w) { /* k_j <- k_j - beta_t (w_t . k_j) w_t */
                float wk = 0.0f;
                for (int i = 0; i < PL; i++) wk += wr[i] * kr[i];
                wk = warp_sum(wk) * bt;
                for (int i = 0; i < PL; i++) {
                    kr[i] -= wk * wr[i];
                    kj[lane + 32 * i] = kr[i];
                }
            }
        }
        float s = 0.0f;
        for (int i = 0; i < PL; i++) s += qr[i] * kr[i];
        s = warp_sum(s) * dims.scale;
        if (g) s += dims.gate_scale * (Gt - (j == t ? Gt : Gc[j]));
        if (lane == 0) score[jj] = s;
    }
    __syncthreads(); /* scores, and v_t in the cache, visible to the block */
    float m = -INFINITY;
    for (int jj = 0; jj < cnt; jj++) m = fmaxf(m, score[jj]);
    for (int jj = threadIdx.x; jj < cnt; jj += THREADS) prob[jj] = expf(score[jj] - m);
    __syncthreads();
    int e = threadIdx.x % D, part = threadIdx.x / D;
    float acc = 0.0f;
    for (int jj = part; jj < cnt; jj += PARTS) acc += prob[jj] * __bfloat162float(vc[(size_t)(j0 + jj) * D + e]);
    part_sum[part][e] = acc;
    __syncthreads();
    float *out = partial + ((size_t)head * gridDim.y + blockIdx.y) * (D + 2); /* (d + 2): max, sum, values */
    if (part == 0) {
        for (int p = 1; p < PARTS; p++) acc += part_sum[p][e];
        out[2 + e] = acc;
    }
    if (threadIdx.x == 0) {
        float l = 0.0f;
        for (int jj = 0; jj < cnt; jj++) l += prob[jj];
        out[0] = m;
        out[1] = l;
    }
}

/* Block per (sequence, head): o = sum_c exp(m_c - M) o_c / sum_c exp(m_c - M) l_c over the chunks c of the
 * sequence's keys, M = max_c m_c. chunks: the attend grid's y extent (partial's row stride). */
static __global__ void combine_kernel(bf16 *o, const float *partial, const int *pos, int H, int d, int chunks) {
    int head = blockIdx.x, used = pos[head / H] / CHUNK + 1;
    const float *p = partial + (size_t)head * chunks * (d + 2);
    float M = -INFINITY, L = 0.0f;
    for (int c = 0; c < used; c++) M = fmaxf(M, p[(size_t)c * (d + 2)]);
    for (int c = 0; c < used; c++) L += p[(size_t)c * (d + 2) + 1] * expf(p[(size_t)c * (d + 2)] - M);
    for (int e = threadIdx.x; e < d; e += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < used; c++) acc += p[(size_t)c * (d + 2) + 2 + e] * expf(p[(size_t)c * (d + 2)] - M);
        o[(size_t)head * d + e] = __float2bfloat16_rn(acc / L);
    }
}

static int chunks_for(int len) { return (len + CHUNK - 1) / CHUNK; }

size_t path_decode_scratch_floats(int n, int H, int d, int cap) {
    return (size_t)n * H * chunks_for(cap) * (d + 2);
}

void path_decode_window(const GpuCtx *ctx, void *window, const void *w_up, const int *pos, int n, int C, int K) {
    window_kernel<<<grid_for((size_t)n * C, 256), 256, 0, ctx->stream>>>((bf16 *)window, (const bf16 *)w_up, pos, n,
                                                                        C, K);
    LAUNCH_CHECK(ctx, "window_kernel");
}

void path_decode_attend(const GpuCtx *ctx, const PathDecodeDims *dims, const int *pos, float *k_cache,
                        void *v_cache, float *G_cache, const void *q, const void *k, const void *v, const float *w,
                        size_t w_stride, const float *beta, const float *g, float *scratch, void *o) {
    int chunks = chunks_for(dims->max_len);
    dim3 grid(dims->n * dims->H, chunks);
#define ATTEND(D)                                                                                                 \
    attend_kernel<D><<<grid, THREADS, 0, ctx->stream>>>(*dims, pos, k_cache, (bf16 *)v_cache, G_cache,           \
                                                        (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, w,     \
                                                        w_stride, beta, g, scratch)
    switch (dims->d) {
    case 32: ATTEND(32); break;
    case 64: ATTEND(64); break;
    case 128: ATTEND(128); break;
    default:
        fprintf(stderr, "error: path_decode_attend: head dim %d; the kernels support 32, 64 and 128\n", dims->d);
        exit(EXIT_FAILURE);
    }
#undef ATTEND
    LAUNCH_CHECK(ctx, "attend_kernel");
    combine_kernel<<<dims->n * dims->H, dims->d, 0, ctx->stream>>>((bf16 *)o, scratch, pos, dims->H, dims->d, chunks);
    LAUNCH_CHECK(ctx, "combine_kernel");
}
