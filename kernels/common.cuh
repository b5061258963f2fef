/* common.cuh: device helpers shared by the model's kernels (CUDA C++, included by .cu files only):
 * the bf16 type, a grid-size helper, a host alignment check, warp reductions, 16-byte vectors of bf16,
 * and the deterministic column sums of colsum.h.
 *
 * 16-byte vectors: a uint4 holds 8 bf16 (one ld/st.global.v4); bf16x8_unpack widens them to f32,
 * bf16x8_pack rounds 8 floats to nearest-even (as __float2bfloat16_rn). Callers load and store the
 * uint4 themselves, so each picks its cache hint; addresses must be 16-byte aligned.
 *
 * Column sums: dst[c] += sum_{n < N} f(n, c) for c < M, f a device functor: f(n, c, v) sets v[0, WIDTH) to
 * the values of columns c .. c + WIDTH - 1 of row n (F::WIDTH 8 for a 16-byte load, or 1; M a multiple).
 *   colsum_partials: grid (slabs, ceil(M / (32 WIDTH))), block (32, 8); thread (x, y) adds rows y, y + 8, ...
 *                    of its slab for the WIDTH columns from WIDTH (32 blockIdx.y + x); the 8 sums of a
 *                    column meet in shared memory in the order y = 0..7, one partial per (slab, column) goes
 *                    to scratch (slabs, M).
 *   colsum_add:      block (32, 32) per 32 columns; thread (x, y) adds slabs y, y + 32, ... of its column,
 *                    the 32 sums meet in order y = 0..31 and go into dst (+=).
 * A kernel may also write the (slabs, ld) partials itself (layernorm_backward does, fused with its pass
 * over the rows: slab s is rows [s COLSUM_SLAB_ROWS, (s + 1) COLSUM_SLAB_ROWS)) and finish with colsum_add.
 * Functor types must be local to their .cu file (anonymous namespace), so that template instances of
 * different files never share a name. */
#ifndef PATHGPT_KERNELS_COMMON_CUH
#define PATHGPT_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "colsum.h"
#include "gpu.h"

typedef __nv_bfloat16 bf16;

/* blocks of `threads` covering n items */
static inline unsigned grid_for(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

/* exits with a message naming the launcher unless p is 16-byte aligned (what the vector loads need) */
static inline void require_aligned16(const char *who, const char *what, const void *p) {
    if ((uintptr_t)p % 16 == 0) return;
    fprintf(stderr, "error: %s: %s %p is not 16-byte aligned (its kernel loads 8 bf16 at a time)\n", who, what, p);
    exit(EXIT_FAILURE);
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ void bf16x8_unpack(uint4 raw, float f[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ uint4 bf16x8_pack(const float f[8]) {
    uint4 raw;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return raw;
}

/* f[0..8) = p[0..8), p 16-byte aligned f32 */
__device__ __forceinline__ void f32x8_load(const float *p, float f[8]) {
    float4 a = *reinterpret_cast<const float4 *>(p), b = *reinterpret_cast<const float4 *>(p + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

#define COLSUM_ROW_THREADS 8
#define COLSUM_ADD_THREADS 32 /* 256 slabs (N = 16384): 8 loads per thread */

template <typename F>
static __global__ void colsum_partials_kernel(F f, int N, int M, float *partial) {
    constexpr int W = F::WIDTH;
    __shared__ float acc[COLSUM_ROW_THREADS][32 * W];
    int c = (blockIdx.y * 32 + threadIdx.x) * W, r0 = blockIdx.x * COLSUM_SLAB_ROWS;
    float s[W] = {};
    if (c < M) {
#pragma unroll
        for (int i = 0; i < COLSUM_SLAB_ROWS / COLSUM_ROW_THREADS; i++) {
            int n = r0 + threadIdx.y + COLSUM_ROW_THREADS * i;
            float v[W];
            f(min(n, N - 1), c, v); /* unconditional, so all loads of the slab are in flight at once */
#pragma unroll
            for (int w = 0; w < W; w++) s[w] += n < N ? v[w] : 0.0f;
        }
    }
#pragma unroll
    for (int w = 0; w < W; w++) acc[threadIdx.y][threadIdx.x * W + w] = s[w];
    __syncthreads();
    for (int j = threadIdx.y * 32 + threadIdx.x; j < 32 * W; j += 32 * COLSUM_ROW_THREADS) {
        int col = blockIdx.y * 32 * W + j;
        if (col >= M) break;
        float t = 0.0f;
        for (int y = 0; y < COLSUM_ROW_THREADS; y++) t += acc[y][j];
        partial[(size_t)blockIdx.x * M + col] = t;
    }
}

static __global__ void colsum_add_kernel(const float *partial, int slabs, int M, int ld, float *dst) {
    __shared__ float acc[COLSUM_ADD_THREADS][33]; /* +1: no bank conflicts on the column read */
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < M)
        for (int i = threadIdx.y; i < slabs; i += COLSUM_ADD_THREADS) s += partial[(size_t)i * ld + c];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || c >= M) return;
    float t = 0.0f;
    for (int y = 0; y < COLSUM_ADD_THREADS; y++) t += acc[y][threadIdx.x];
    dst[c] += t;
}

static inline int colsum_slabs(int N) { return (N + COLSUM_SLAB_ROWS - 1) / COLSUM_SLAB_ROWS; }

/* partial (slabs, M) = per-slab sums of f over N rows, columns [0, M); M a multiple of F::WIDTH */
template <typename F>
static void colsum_partials(const GpuCtx *ctx, F f, int N, int M, float *partial, const char *name) {
    dim3 grid(colsum_slabs(N), grid_for(M, 32 * F::WIDTH)), block(32, COLSUM_ROW_THREADS);
    colsum_partials_kernel<<<grid, block, 0, ctx->stream>>>(f, N, M, partial);
    LAUNCH_CHECK(ctx, name);
}

/* dst (M) += the slab partials of columns [0, M) of partial (slabs of N rows, leading dim ld) */
static inline void colsum_add(const GpuCtx *ctx, const float *partial, int N, int M, int ld, float *dst) {
    dim3 block(32, COLSUM_ADD_THREADS);
    colsum_add_kernel<<<grid_for(M, 32), block, 0, ctx->stream>>>(partial, colsum_slabs(N), M, ld, dst);
    LAUNCH_CHECK(ctx, "colsum_add_kernel");
}

#endif
