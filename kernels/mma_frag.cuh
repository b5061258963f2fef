/* mma_frag.cuh: warp-level tensor-core building blocks in the FlashAttention-2 style: each warp
 * owns 16 rows of a 64-row tile and keeps its accumulators in registers; operand tiles of 16-bit
 * elements sit in shared memory and are read with ldmatrix; tiles arrive by cp.async.
 *
 * Register layouts of mma.sync.m16n8k16 (g = lane / 4, t = lane % 4):
 *   accumulator C (16 x 8 per n-tile j): c[j][0..1] = row g, cols 8j + 2t, +1; c[j][2..3] = row g + 8
 *   operand A (16 x 16 per k-step kk):   a[kk][0] = row g, cols 16kk + 2t, +1; a[kk][1] = row g + 8;
 *                                        a[kk][2], a[kk][3]: the same at cols + 8
 * so an accumulator of n-tiles 2kk, 2kk+1 is, converted, the A operand of k-step kk
 * (FlashAttention-2's P stays in registers between S = Q K^T and O += P V).
 * Shared tiles are row-major with a row stride of (cols + 8) halves: 16-byte aligned rows, and
 * ldmatrix's 8 row addresses fall in distinct bank groups.
 *   B operand "nk" (B = X^T for a tile X stored [n][k], e.g. K for S = Q K^T): ldmatrix
 *   B operand "kn" (B stored [k][n], e.g. V for O += P V):                    ldmatrix.trans */
#ifndef PATHGPT_KERNELS_MMA_FRAG_CUH
#define PATHGPT_KERNELS_MMA_FRAG_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "tile_mma.cuh" /* pack_f16, pack_bf16, mma_f16, mma_bf16 */

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}

/* 16 bytes global -> shared, asynchronously; zeros instead when !valid (src not read) */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
/* 4 bytes global -> shared, asynchronously; zero instead when !valid (src not read) */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* rows x cols 16-bit tile into shared (stride cols + 8) from global rows (stride in elements),
 * rows at or past n_valid zero-filled. The CTA's THREADS threads (every caller's CTA is 128) share
 * the 16-byte chunks; the thread count is a constant so that the loop unrolls and each thread's
 * offsets fold into immediates (measured: the softmax forward 96 -> 81 us, PaTH's B1 2.40 -> 2.32 ms). */
template <int ROWS, int COLS, int THREADS = 128>
__device__ __forceinline__ void load_tile_async(void *dst, const void *src, long stride, int n_valid) {
    constexpr int CH = COLS / 8;
    static_assert(ROWS * CH % THREADS == 0, "whole chunks per thread");
    const uint16_t *s = (const uint16_t *)src;
    uint16_t *d = (uint16_t *)dst;
#pragma unroll
    for (int k = 0; k < ROWS * CH / THREADS; k++) {
        int i = threadIdx.x + k * THREADS, r = i / CH, c = i % CH;
        bool ok = r < n_valid;
        cp_async16(d + r * (COLS + 8) + c * 8, ok ? s + (long)r * stride + c * 8 : s, ok);
    }
}

/* N floats into shared, dst[r] = src[r stride] for r < n_valid, else 0, asynchronously (part of the
 * next commit group): per-row vectors (lse, D, gate sums) travel with their tiles instead of stalling
 * the threads that load them until the load returns. src must be a valid address. */
template <int N>
__device__ __forceinline__ void load_vec_async(float *dst, const float *src, long stride, int n_valid) {
    for (int r = threadIdx.x; r < N; r += blockDim.x) {
        bool ok = r < n_valid;
        cp_async4(dst + r, ok ? src + r * stride : src, ok);
    }
}

template <int NT>
__device__ __forceinline__ void zero_acc(float c[NT][4]) {
#pragma unroll
    for (int j = 0; j < NT; j++) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.f;
}

/* accumulator (16 x 16 KS) -> A operand, fp16 or bf16, times mult */
template <int KS, bool BF>
__device__ __forceinline__ void acc_to_a(const float c[2 * KS][4], uint32_t a[KS][4], float mult = 1.f) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float *x = c[2 * kk + h];
            a[kk][2 * h] = BF ? pack_bf16(mult * x[0], mult * x[1]) : pack_f16(mult * x[0], mult * x[1]);
            a[kk][2 * h + 1] = BF ? pack_bf16(mult * x[2], mult * x[3]) : pack_f16(mult * x[2], mult * x[3]);
        }
    }
}

template <bool BF>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    if (BF) mma_bf16(c, a, b);
    else mma_f16(c, a, b);
}

/* C (16 x 8 NT) += A (16 x 16 KS, registers) B, B = X^T for the shared tile X stored [n][k]
 * (rows n0 .. n0 + 8 NT - 1, cols k0 .. k0 + 16 KS - 1), stride ld halves. NT even. Each k-step
 * reads all its B fragments before its products, so their ldmatrix latencies overlap (measured:
 * flash_dkdv 229 -> 218 us against a load before each pair of products). */
template <int KS, int NT, bool BF>
__device__ __forceinline__ void mma_nk(float c[NT][4], const uint32_t a[KS][4], const void *X, int ld, int n0 = 0, int k0 = 0) {
    const uint16_t *base = (const uint16_t *)X;
    int lane = threadIdx.x % 32, mi = lane / 8;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t b[NT / 2][4]; /* n-tile 2jp: b[jp][0], b[jp][1]; n-tile 2jp+1: b[jp][2], b[jp][3] */
#pragma unroll
        for (int jp = 0; jp < NT / 2; jp++)
            ldsm_x4(b[jp], base + (n0 + 16 * jp + (mi / 2) * 8 + lane % 8) * ld + k0 + 16 * kk + (mi % 2) * 8);
#pragma unroll
        for (int jp = 0; jp < NT / 2; jp++) {
            mma16816<BF>(c[2 * jp], a[kk], b[jp]);
            mma16816<BF>(c[2 * jp + 1], a[kk], b[jp] + 2);
        }
    }
}

/* C (16 x 8 NT) += A (16 x 16 KS, registers) B for the shared tile B stored [k][n] (as mma_nk) */
template <int KS, int NT, bool BF>
__device__ __forceinline__ void mma_kn(float c[NT][4], const uint32_t a[KS][4], const void *B, int ld, int k0 = 0, int n0 = 0) {
    const uint16_t *base = (const uint16_t *)B;
    int lane = threadIdx.x % 32, mi = lane / 8;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t b[NT / 2][4];
#pragma unroll
        for (int jp = 0; jp < NT / 2; jp++)
            ldsm_x4_t(b[jp], base + (k0 + 16 * kk + (mi % 2) * 8 + lane % 8) * ld + n0 + 16 * jp + (mi / 2) * 8);
#pragma unroll
        for (int jp = 0; jp < NT / 2; jp++) {
            mma16816<BF>(c[2 * jp], a[kk], b[jp]);
            mma16816<BF>(c[2 * jp + 1], a[kk], b[jp] + 2);
        }
    }
}

/* A operand (16 x 16 KS) read from a shared tile stored [m][k] (this warp's 16 rows from m0) */
template <int KS>
__device__ __forceinline__ void load_a(uint32_t a[KS][4], const void *A, int ld, int m0, int k0 = 0) {
    const uint16_t *base = (const uint16_t *)A;
    int lane = threadIdx.x % 32, mi = lane / 8;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) /* matrices: rows 0-7 / 8-15 x cols 0-7 / 8-15, in a[] order */
        ldsm_x4(a[kk], base + (m0 + (mi % 2) * 8 + lane % 8) * ld + k0 + 16 * kk + (mi / 2) * 8);
}

/* A operand (16 x 16 KS) = transpose of a shared tile stored [k][m] */
template <int KS>
__device__ __forceinline__ void load_a_t(uint32_t a[KS][4], const void *A, int ld, int m0, int k0 = 0) {
    const uint16_t *base = (const uint16_t *)A;
    int lane = threadIdx.x % 32, mi = lane / 8;
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
        ldsm_x4_t(a[kk], base + (k0 + 16 * kk + (mi / 2) * 8 + lane % 8) * ld + m0 + (mi % 2) * 8);
}

/* Staging for sums over the rows of a tile: a warp writes its 16 rows of an accumulator as bf16
 * (times mult) into a shared tile [row][col]. */
template <int NT>
__device__ __forceinline__ void stage_acc(__nv_bfloat16 *dst, int ld, const float c[NT][4], int row0, float mult = 1.f) {
    int t = threadIdx.x % 4;
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++)
            *(__nv_bfloat162 *)&dst[(row0 + 8 * h2) * ld + 8 * j + 2 * t] =
                __floats2bfloat162_rn(mult * c[j][2 * h2], mult * c[j][2 * h2 + 1]);
}

/* out (64 x N fp32, row stride ldo) += mult S^T B, with S staged [row][i] (64 x 64, bf16) and
 * B [row][n] (64 x N, bf16, stride ldb): the sum over the 64 staged rows. Warp w writes output rows
 * 16w .. 16w + 15, with fp32 atomics when other CTAs add to the same tile. */
template <int N, bool ATOMIC>
__device__ __forceinline__ void add_st_product(float *out, int ldo, const __nv_bfloat16 *S, const __nv_bfloat16 *B,
                                               int ldb, float mult) {
    constexpr int NT = N / 8;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    uint32_t at[4][4];
    load_a_t<4>(at, S, 64 + 8, 16 * warp);
    float c[NT][4];
    zero_acc<NT>(c);
    mma_kn<4, NT, true>(c, at, B, ldb);
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float *o = out + (16 * warp + g + 8 * h2) * ldo + 8 * j + 2 * t;
            if (ATOMIC) {
                atomicAdd(o, mult * c[j][2 * h2]);
                atomicAdd(o + 1, mult * c[j][2 * h2 + 1]);
            } else {
                o[0] += mult * c[j][2 * h2];
                o[1] += mult * c[j][2 * h2 + 1];
            }
        }
}

/* bf16 copy of a 16-bit tile of 64 rows x D (stride D + 8), the source fp16 */
template <int D>
__device__ __forceinline__ void to_bf16(__nv_bfloat16 *dst, const __half *src) {
    for (int i = threadIdx.x; i < 64 * D; i += blockDim.x) {
        int o = (i / D) * (D + 8) + i % D;
        dst[o] = __float2bfloat16_rn(__half2float(src[o]));
    }
}

/* A operand registers: bf16 pairs -> fp16 pairs (for bf16 inputs in an fp16 product) */
template <int KS>
__device__ __forceinline__ void a_bf16_to_f16(const uint32_t in[KS][4], uint32_t out[KS][4]) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t x = in[kk][i];
            float2 f = __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&x));
            out[kk][i] = pack_f16(f.x, f.y);
        }
}

#endif
