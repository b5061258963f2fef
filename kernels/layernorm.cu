/* layernorm.cu: see layernorm.h (math, shapes, launch shapes).
 * A row lives in registers: lane l of its warp holds the 8-column chunks l, l + 32, ..., l + 32 (K - 1)
 * (16-byte loads), K = ceil(C / 256) a template parameter (1..LN_MAX_CHUNKS); chunks past C / 8 are empty.
 * layout: the row helpers, forward kernel, backward kernel, the per-K kernel tables, the launchers. */
#include "common.cuh"
#include "layernorm.h"

#define LN_WARPS 8 /* warps per block */
#define LN_MAX_CHUNKS (LAYERNORM_MAX_C / 256) /* chunks of 8 columns per lane */

/* K chunks of 8 bf16 of row x (C columns) into lane's registers; absent chunks are left unset */
template <int K>
__device__ __forceinline__ void load_row(uint4 (&raw)[K], const bf16 *x, int lane, int C) {
#pragma unroll
    for (int k = 0; k < K; k++)
        if (8 * (lane + 32 * k) < C) raw[k] = *reinterpret_cast<const uint4 *>(x + 8 * (lane + 32 * k));
}

/* one warp per row, LN_WARPS rows per block */
template <int K>
static __global__ void __launch_bounds__(32 * LN_WARPS) layernorm_forward_kernel(bf16 *out, float *mean, float *rstd,
                                                                               const bf16 *inp, const float *weight,
                                                                               const float *bias, int N, int C) {
    int n = blockIdx.x * LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (n >= N) return;
    uint4 raw[K];
    load_row<K>(raw, inp + (size_t)n * C, lane, C);
    float x[K][8], s = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++) {
        bool here = 8 * (lane + 32 * k) < C;
        bf16x8_unpack(here ? raw[k] : make_uint4(0, 0, 0, 0), x[k]);
        for (int i = 0; i < 8; i++) s += x[k][i];
    }
    float m = warp_sum(s) / C, v = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++)
        if (8 * (lane + 32 * k) < C)
            for (int i = 0; i < 8; i++) v += (x[k][i] - m) * (x[k][i] - m);
    float r = 1.0f / sqrtf(warp_sum(v) / C + 1e-5f);
#pragma unroll
    for (int k = 0; k < K; k++) {
        int c = 8 * (lane + 32 * k);
        if (c >= C) continue;
        float w[8], b[8], y[8];
        f32x8_load(weight + c, w);
        f32x8_load(bias + c, b);
        for (int i = 0; i < 8; i++) y[i] = (x[k][i] - m) * r * w[i] + b[i];
        *reinterpret_cast<uint4 *>(out + (size_t)n * C + c) = bf16x8_pack(y);
    }
    if (lane == 0) {
        mean[n] = m;
        rstd[n] = r;
    }
}

/* Block b: the rows of slab b (COLSUM_SLAB_ROWS), warp w taking rows w, w + LN_WARPS, ... of it. Each lane
 * keeps its columns' sums of xhat dout and dout over its rows; the warps add theirs in the order
 * w = 0..LN_WARPS-1 through shared memory, and the block writes them as partial[b] = (dweight | dbias).
 * Two blocks per SM (<= 128 registers) up to K = 3, C <= 768; more columns need more registers. */
template <int K>
static __global__ void __launch_bounds__(32 * LN_WARPS, K <= 3 ? 2 : 1)
    layernorm_backward_kernel(bf16 *dinp, int accumulate, float *partial, const float *dout, const bf16 *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C) {
    __shared__ float acc[2 * 256 * K]; /* the slab's (dweight | dbias) sums, C columns each */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float dw_sum[K][8] = {}, db_sum[K][8] = {};
    for (int j = 0; j < COLSUM_SLAB_ROWS / LN_WARPS; j++) {
        int n = blockIdx.x * COLSUM_SLAB_ROWS + warp + LN_WARPS * j;
        if (n >= N) break;
        uint4 raw[K], old_raw[K];
        load_row<K>(raw, inp + (size_t)n * C, lane, C);
        if (accumulate) load_row<K>(old_raw, dinp + (size_t)n * C, lane, C);
        float d[K][8], m = mean[n], r = rstd[n], a = 0.0f, b = 0.0f;
#pragma unroll
        for (int k = 0; k < K; k++) {
            int c = 8 * (lane + 32 * k);
            if (c >= C) continue;
            float x[8], w[8];
            f32x8_load(dout + (size_t)n * C + c, d[k]);
            f32x8_load(weight + c, w);
            bf16x8_unpack(raw[k], x);
            for (int i = 0; i < 8; i++) {
                float dxhat = w[i] * d[k][i];
                a += dxhat;
                b += dxhat * (x[i] - m) * r;
            }
        }
        a = warp_sum(a) / C;
        b = warp_sum(b) / C;
#pragma unroll
        for (int k = 0; k < K; k++) {
            int c = 8 * (lane + 32 * k);
            if (c >= C) continue;
            bf16 *dx = dinp + (size_t)n * C + c;
            float x[8], w[8], old[8], g[8];
            bf16x8_unpack(raw[k], x);
            f32x8_load(weight + c, w);
            if (accumulate) bf16x8_unpack(old_raw[k], old);
            for (int i = 0; i < 8; i++) {
                float xhat = (x[i] - m) * r;
                g[i] = r * (w[i] * d[k][i] - a - xhat * b);
                if (accumulate) g[i] += old[i];
                dw_sum[k][i] += xhat * d[k][i];
                db_sum[k][i] += d[k][i];
            }
            *reinterpret_cast<uint4 *>(dx) = bf16x8_pack(g);
        }
    }
    for (int w = 0; w < LN_WARPS; w++) {
        if (warp == w)
#pragma unroll
            for (int k = 0; k < K; k++) {
                int c = 8 * (lane + 32 * k);
                if (c >= C) continue;
                for (int i = 0; i < 8; i++) {
                    acc[c + i] = (w ? acc[c + i] : 0.0f) + dw_sum[k][i];
                    acc[C + c + i] = (w ? acc[C + c + i] : 0.0f) + db_sum[k][i];
                }
            }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) partial[(size_t)blockIdx.x * 2 * C + c] = acc[c];
}

typedef void (*ForwardKernel)(bf16 *, float *, float *, const bf16 *, const float *, const float *, int, int);
typedef void (*BackwardKernel)(bf16 *, int, float *, const float *, const bf16 *, const float *, const float *,
                               const float *, int, int);
static const ForwardKernel forward_kernels[LN_MAX_CHUNKS] = {
    layernorm_forward_kernel<1>, layernorm_forward_kernel<2>, layernorm_forward_kernel<3>,
    layernorm_forward_kernel<4>, layernorm_forward_kernel<5>, layernorm_forward_kernel<6>,
    layernorm_forward_kernel<7>, layernorm_forward_kernel<8>};
static const BackwardKernel backward_kernels[LN_MAX_CHUNKS] = {
    layernorm_backward_kernel<1>, layernorm_backward_kernel<2>, layernorm_backward_kernel<3>,
    layernorm_backward_kernel<4>, layernorm_backward_kernel<5>, layernorm_backward_kernel<6>,
    layernorm_backward_kernel<7>, layernorm_backward_kernel<8>};

int layernorm_check(int C, char *why, size_t why_len) {
    if (C >= 8 && C % 8 == 0 && C <= LAYERNORM_MAX_C) return 0;
    snprintf(why, why_len, "layernorm: C = %d must be a multiple of 8 from 8 to %d (a row is kept in registers, "
             "8 columns per 16-byte load)", C, LAYERNORM_MAX_C);
    return -1;
}

/* chunks per lane for C, after checking C and the alignment of the row arrays */
static int chunks_per_lane(const char *who, int C, const void *a, const void *b, const void *c) {
    char why[160];
    if (layernorm_check(C, why, sizeof why) != 0) {
        fprintf(stderr, "error: %s: %s\n", who, why);
        exit(EXIT_FAILURE);
    }
    require_aligned16(who, "a row array", a);
    require_aligned16(who, "a row array", b);
    require_aligned16(who, "a row array", c);
    return (C + 255) / 256;
}

void layernorm_forward(const GpuCtx *ctx, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                       const float *bias, int N, int C) {
    int K = chunks_per_lane("layernorm_forward", C, out, inp, weight);
    require_aligned16("layernorm_forward", "bias", bias);
    forward_kernels[K - 1]<<<grid_for(N, LN_WARPS), 32 * LN_WARPS, 0, ctx->stream>>>(
        (bf16 *)out, mean, rstd, (const bf16 *)inp, weight, bias, N, C);
    LAUNCH_CHECK(ctx, "layernorm_forward_kernel");
}

void layernorm_backward(const GpuCtx *ctx, void *dinp, int accumulate, float *dweight, float *dbias, const float *dout,
                        const void *inp, const float *weight, const float *mean, const float *rstd, int N, int C,
                        float *scratch) {
    int K = chunks_per_lane("layernorm_backward", C, dinp, dout, inp);
    require_aligned16("layernorm_backward", "weight", weight);
    backward_kernels[K - 1]<<<colsum_slabs(N), 32 * LN_WARPS, 0, ctx->stream>>>(
        (bf16 *)dinp, accumulate, scratch, dout, (const bf16 *)inp, weight, mean, rstd, N, C);
    LAUNCH_CHECK(ctx, "layernorm_backward_kernel");
    colsum_add(ctx, scratch, N, C, 2 * C, dweight);
    colsum_add(ctx, scratch + C, N, C, 2 * C, dbias);
}
