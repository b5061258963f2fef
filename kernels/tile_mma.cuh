/* tile_mma.cuh: CTA-level products of small matrices held in shared (or global) memory, on the
 * tensor cores with mma.sync.m16n8k16 and fp32 accumulation. The PaTH kernels are written as
 * sequences of these products, step for step like the float64 reference (dev/path_reference.py).
 *
 *   cta_gemm<P, S>(M, N, K, alpha, A, B, C, ldc):   C (=|+=|atomic+=) alpha op(A) op(B)
 *   op(A) is M x K, op(B) is K x N; an operand is (pointer, leading dim, transposed?) of float,
 *   __half or __nv_bfloat16 elements, converted on load to the MMA type of the precision P:
 *     PREC_F16       fp16 operands (derived quantities bounded by contractions)
 *     PREC_BF16      bf16 operands (gradients, probabilities, values: fp16 would under/overflow)
 *     PREC_F16_SPLITB  A fp16, B = hi + lo in fp16 (two MMAs; maps with |entries| <= 1)
 *     PREC_BF16X3    both split hi + lo in bf16, three MMAs (hi.hi + hi.lo + lo.hi): ~16 bits,
 *                    fp32's exponent range; for the d x d chains and the per-block solves
 *   (doc/PATH_ALGORITHM.md section 7 gives which product uses which.)
 * M and K must be multiples of 16, N a multiple of 32. Every warp of the CTA takes 16 x 32 output
 * tiles in turn. The call begins and ends with __syncthreads(): operands written before it are
 * visible, and C is complete after it. C must not overlap A or B. */
#ifndef PATHGPT_KERNELS_TILE_MMA_CUH
#define PATHGPT_KERNELS_TILE_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

enum Prec { PREC_F16, PREC_BF16, PREC_F16_SPLITB, PREC_BF16X3 };
enum Store { STORE_SET, STORE_ADD, STORE_ATOMIC };

template <typename T>
struct Mat {
    const T *p;
    long ld;
    bool trans;
    /* element (r, c) of the operand as used: trans ? p[c ld + r] : p[r ld + c] */
    __device__ __forceinline__ float at(int r, int c) const;
    /* elements (r, c), (r, c + 1): one paired load when they are adjacent in memory (!trans;
     * c even, ld even and an aligned base, true of every tile here) */
    __device__ __forceinline__ void row_pair(int r, int c, float &x, float &y) const;
    /* elements (r, c), (r + 1, c): adjacent when trans */
    __device__ __forceinline__ void col_pair(int r, int c, float &x, float &y) const;
};

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ float Mat<T>::at(int r, int c) const {
    return to_f32(trans ? p[(long)c * ld + r] : p[(long)r * ld + c]);
}

__device__ __forceinline__ float2 load_pair(const float *q) { return *reinterpret_cast<const float2 *>(q); }
__device__ __forceinline__ float2 load_pair(const __half *q) { return __half22float2(*reinterpret_cast<const __half2 *>(q)); }
__device__ __forceinline__ float2 load_pair(const __nv_bfloat16 *q) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(q));
}

template <typename T>
__device__ __forceinline__ void Mat<T>::row_pair(int r, int c, float &x, float &y) const {
    if (!trans) {
        float2 v = load_pair(p + (long)r * ld + c);
        x = v.x;
        y = v.y;
    } else {
        x = at(r, c);
        y = at(r, c + 1);
    }
}

template <typename T>
__device__ __forceinline__ void Mat<T>::col_pair(int r, int c, float &x, float &y) const {
    if (trans) {
        float2 v = load_pair(p + (long)c * ld + r);
        x = v.x;
        y = v.y;
    } else {
        x = at(r, c);
        y = at(r + 1, c);
    }
}

template <typename T>
__device__ __forceinline__ Mat<T> mat(const T *p, long ld, bool trans = false) {
    return Mat<T>{p, ld, trans};
}

/* fp16 saturates instead of overflowing to Inf (a bf16 value above 65504 must not become Inf). */
__device__ __forceinline__ uint32_t pack_f16(float a, float b) {
    a = fminf(fmaxf(a, -65504.f), 65504.f);
    b = fminf(fmaxf(b, -65504.f), 65504.f);
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}
/* low-order parts: x - round(x) */
__device__ __forceinline__ float rest_f16(float x) { return x - __half2float(__float2half_rn(fminf(fmaxf(x, -65504.f), 65504.f))); }
__device__ __forceinline__ float rest_bf16(float x) { return x - __bfloat162float(__float2bfloat16_rn(x)); }

__device__ __forceinline__ void mma_f16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Fragment values of op(A) at (m0, k0) and op(B) at (k0, n0), in the m16n8k16 register order:
 * g = lane / 4, t = lane % 4; A rows g, g+8 and columns 2t, 2t+1, 2t+8, 2t+9; B rows 2t, 2t+1,
 * 2t+8, 2t+9 of column g. */
template <typename T>
__device__ __forceinline__ void frag_a(const Mat<T> &A, int m0, int k0, float v[8]) {
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    A.row_pair(m0 + g, k0 + 2 * t, v[0], v[1]);
    A.row_pair(m0 + g + 8, k0 + 2 * t, v[2], v[3]);
    A.row_pair(m0 + g, k0 + 2 * t + 8, v[4], v[5]);
    A.row_pair(m0 + g + 8, k0 + 2 * t + 8, v[6], v[7]);
}
template <typename T>
__device__ __forceinline__ void frag_b(const Mat<T> &B, int k0, int n0, float v[4]) {
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    B.col_pair(k0 + 2 * t, n0 + g, v[0], v[1]);
    B.col_pair(k0 + 2 * t + 8, n0 + g, v[2], v[3]);
}

template <int P>
__device__ __forceinline__ void mma_prec(float c[4], const float a[8], const float b[4]) {
    uint32_t ra[4], rb[2];
    if (P == PREC_F16 || P == PREC_F16_SPLITB) {
        for (int i = 0; i < 4; i++) ra[i] = pack_f16(a[2 * i], a[2 * i + 1]);
        for (int i = 0; i < 2; i++) rb[i] = pack_f16(b[2 * i], b[2 * i + 1]);
        mma_f16(c, ra, rb);
        if (P == PREC_F16_SPLITB) {
            for (int i = 0; i < 2; i++) rb[i] = pack_f16(rest_f16(b[2 * i]), rest_f16(b[2 * i + 1]));
            mma_f16(c, ra, rb);
        }
    } else {
        for (int i = 0; i < 4; i++) ra[i] = pack_bf16(a[2 * i], a[2 * i + 1]);
        for (int i = 0; i < 2; i++) rb[i] = pack_bf16(b[2 * i], b[2 * i + 1]);
        mma_bf16(c, ra, rb);
        if (P == PREC_BF16X3) {
            uint32_t la[4], lb[2];
            for (int i = 0; i < 4; i++) la[i] = pack_bf16(rest_bf16(a[2 * i]), rest_bf16(a[2 * i + 1]));
            for (int i = 0; i < 2; i++) lb[i] = pack_bf16(rest_bf16(b[2 * i]), rest_bf16(b[2 * i + 1]));
            mma_bf16(c, ra, lb);
            mma_bf16(c, la, rb);
        }
    }
}

template <int S>
__device__ __forceinline__ void store_c(float *C, long ldc, int r, int c, float v) {
    float *p = C + (long)r * ldc + c;
    if (S == STORE_SET) *p = v;
    else if (S == STORE_ADD) *p += v;
    else atomicAdd(p, v);
}

template <int P, int S, typename TA, typename TB>
__device__ void cta_gemm(int M, int N, int K, float alpha, Mat<TA> A, Mat<TB> B, float *C, long ldc) {
    constexpr int NT = 4; /* 8-column MMA tiles per warp tile: 16 x 32 outputs */
    __syncthreads();
    int warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    int tiles_n = N / (8 * NT), tiles = (M / 16) * tiles_n;
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    for (int tile = warp; tile < tiles; tile += n_warps) {
        int m0 = tile / tiles_n * 16, n0 = tile % tiles_n * 8 * NT;
        float acc[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
        for (int k0 = 0; k0 < K; k0 += 16) {
            float a[8];
            frag_a(A, m0, k0, a);
#pragma unroll
            for (int j = 0; j < NT; j++) {
                float b[4];
                frag_b(B, k0, n0 + 8 * j, b);
                mma_prec<P>(acc[j], a, b);
            }
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            int c0 = n0 + 8 * j + 2 * t;
            store_c<S>(C, ldc, m0 + g, c0, alpha * acc[j][0]);
            store_c<S>(C, ldc, m0 + g, c0 + 1, alpha * acc[j][1]);
            store_c<S>(C, ldc, m0 + g + 8, c0, alpha * acc[j][2]);
            store_c<S>(C, ldc, m0 + g + 8, c0 + 1, alpha * acc[j][3]);
        }
    }
    __syncthreads();
}

#endif
