/* common.cuh: device helpers shared by the model's kernels (CUDA C++, included by .cu files only):
 * the bf16 type, a grid-size helper, warp reductions, and the deterministic column sums of colsum.h.
 *
 * Column sums: dst[c] += sum_{n < N} f(n, c) for c < M, f a functor evaluated on the device.
 *   colsum_partials: grid (slabs, ceil(M/32)), block (32, 8); thread (x, y) adds rows y, y + 8, ... of
 *                    its slab for column 32 blockIdx.y + x; the 8 sums of a column meet in shared memory
 *                    in a fixed order and one partial per (slab, column) goes to scratch (slabs, ld).
 *   colsum_add:      one thread per column adds the slab partials in slab order into dst (+=).
 * Functor types must be local to their .cu file (anonymous namespace), so that template instances of
 * different files never share a name. */
#ifndef PATHGPT_KERNELS_COMMON_CUH
#define PATHGPT_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <stddef.h>

#include "colsum.h"
#include "gpu.h"

typedef __nv_bfloat16 bf16;

/* blocks of `threads` covering n items */
static inline unsigned grid_for(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

#define COLSUM_ROW_THREADS 8

template <typename F>
static __global__ void colsum_partials_kernel(F f, int N, int M, int ld, float *partial) {
    __shared__ float acc[COLSUM_ROW_THREADS][33]; /* +1: no bank conflicts on the column read */
    int c = blockIdx.y * 32 + threadIdx.x;
    int r0 = blockIdx.x * COLSUM_SLAB_ROWS, r1 = min(N, r0 + COLSUM_SLAB_ROWS);
    float s = 0.0f;
    if (c < M)
        for (int n = r0 + threadIdx.y; n < r1; n += COLSUM_ROW_THREADS) s += f(n, c);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || c >= M) return;
    float t = 0.0f;
    for (int y = 0; y < COLSUM_ROW_THREADS; y++) t += acc[y][threadIdx.x];
    partial[(size_t)blockIdx.x * ld + c] = t;
}

static __global__ void colsum_add_kernel(const float *partial, int slabs, int M, int ld, float *dst) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= M) return;
    float s = 0.0f;
    for (int i = 0; i < slabs; i++) s += partial[(size_t)i * ld + c];
    dst[c] += s;
}

static inline int colsum_slabs(int N) { return (N + COLSUM_SLAB_ROWS - 1) / COLSUM_SLAB_ROWS; }

/* partial (slabs, ld) = per-slab sums of f over N rows, columns [0, M); ld >= M */
template <typename F>
static void colsum_partials(const GpuCtx *ctx, F f, int N, int M, int ld, float *partial, const char *name) {
    dim3 grid(colsum_slabs(N), (M + 31) / 32), block(32, COLSUM_ROW_THREADS);
    colsum_partials_kernel<<<grid, block, 0, ctx->stream>>>(f, N, M, ld, partial);
    LAUNCH_CHECK(ctx, name);
}

/* dst (M) += the slab partials of columns [0, M) of partial (slabs of N rows, leading dim ld) */
static inline void colsum_add(const GpuCtx *ctx, const float *partial, int N, int M, int ld, float *dst) {
    colsum_add_kernel<<<grid_for(M, 256), 256, 0, ctx->stream>>>(partial, colsum_slabs(N), M, ld, dst);
    LAUNCH_CHECK(ctx, "colsum_add_kernel");
}

#endif
