/* path_attn_internal.cuh: what the PaTH attention kernels share (CUDA C++, included by the
 * path_attn_*.cu files only): the block geometry of packed sequences, the parameter struct every
 * kernel receives, scratch layouts, shared-memory tile loaders and the softmax tile helpers.
 *
 * Geometry (doc/PATH_ALGORITHM.md sections 3 and 5): each sequence [bos, eos) is cut into
 * N = ceil((eos-bos)/c) blocks of c = 64 tokens (the last one partial) and M = ceil(N/s)
 * superblocks of s blocks. Block J of a sequence has the global index gb = block_base + J, its
 * superblock the global index sb_base + J/s. Rows of a block past eos belong to the next sequence
 * (or lie past the tensor's end): loaders give zeros there (w = k = beta = 0, so H = I), and every
 * backward tile sets P = 0 on query rows past eos.
 *
 * Scratch layouts (fp32 unless said; kv head h of H, query head hq of Hq):
 *   per block and kv head, c x d:  U, dU, dW, dKhat, dKtil, dV; fp16: U16, W16 (w, zero past eos),
 *                                  Khat16, Ktil16                             at ((gb H + h) c d)
 *   per block and kv head, c x c:  A, Bm; fp16 Bm16                           at ((gb H + h) c c)
 *   per block and kv head, d x d:  R (backward only)                          at ((gb H + h) d d)
 *   per superblock and kv head, d x d: Pm, dPm                                at ((sb H + h) d d)
 *   Pi, dPi: per sequence M(M+1)/2 maps, entry pi_index(b, a) = a(a-1)/2 + b, at ((pi_base + e) H + h) d d
 *   per block and query head: dQleft, dQhat (c x d); Gl, dG (c); Go (double)  at (gb Hq + hq)
 *   fine states (backward): (gb Hq + hq) (s-1) c d, fp16 */
#ifndef PATHGPT_KERNELS_PATH_ATTN_INTERNAL_CUH
#define PATHGPT_KERNELS_PATH_ATTN_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "gpu.h"
#include "mma_frag.cuh"
#include "tile_mma.cuh"

typedef __nv_bfloat16 bf16;

#define LOG2E_F 1.4426950408889634f

#define PATH_C 64        /* block size c: the UT unit and the attention tile */
#define PATH_THREADS 128 /* 4 warps per CTA */

struct SeqGeo {
    int bos, eos;    /* tokens [bos, eos) of the packed tensors */
    int nblk, M;     /* blocks and superblocks of this sequence */
    int block_base;  /* global index of its block 0 */
    int sb_base;     /* global index of its superblock 0 */
    long pi_base;    /* first Pi entry of this sequence */
};

/* Everything a kernel needs, passed by value. Pointers are device memory. */
struct PathParams {
    int n_tokens;                     /* N: rows of the token-layout tensors */
    int Hq, H, d, s;
    float scale, gscale;              /* logits: scale q.k + gscale (G_i - G_j) */
    int has_w, has_g;
    int store_backward_factors;       /* F1 stores A, F2 stores R (the backward's recompute) */
    const SeqGeo *seqs;
    const int2 *blocks;               /* (seq, J) per block work item, most F4 work first */
    const int2 *keyblocks;            /* the same blocks, most B1 (coarse key) work first */
    const int2 *sblocks;              /* (seq, m) per superblock work item */
    const int2 *flash_q, *flash_k;    /* softmax kernels: blocks by key blocks / query blocks to visit, most first */
    /* inputs (token layout) */
    const bf16 *q, *k, *v, *dout;
    const float *w, *beta, *g;
    const bf16 *o;
    const float *lse;
    __half *qleft;                    /* (N, Hq, d), written by the forward, read by the backward */
    /* outputs */
    bf16 *out;
    float *lse_out;
    bf16 *dq, *dk, *dv;
    float *dw, *dbeta, *dg;
    /* scratch */
    float *U, *A, *Bm, *R, *Pm, *Pi;  /* fp32 factors (the d x d chains and the backward) */
    __half *U16, *W16, *Bm16, *Khat16, *Ktil16; /* fp16 operand copies for the attention loops */
    float *Gl;
    double *Go;
    float *D, *dQleft, *dQhat, *dU, *dW, *dKhat, *dKtil, *dV, *dPi, *dPm, *dG;
    __half *states;
};

__device__ __forceinline__ long pi_entry(long pi_base, int b, int a) { return pi_base + (long)a * (a - 1) / 2 + b; }

/* ---- shared memory: tiles carved one after another, 16-byte aligned ---- */
struct SmemCarver {
    char *p;
    template <typename T>
    __device__ T *take(long n_elems) {
        T *r = reinterpret_cast<T *>(p);
        p += (n_elems * (long)sizeof(T) + 15) / 16 * 16;
        return r;
    }
};

/* padded leading dimensions: 4 floats / 8 halves past the row, against bank conflicts */
__host__ __device__ __forceinline__ int ld32(int cols) { return cols + 4; }
__host__ __device__ __forceinline__ int ld16(int cols) { return cols + 8; }
__host__ __device__ __forceinline__ long tile32_bytes(int rows, int cols) { return ((long)rows * ld32(cols) * 4 + 15) / 16 * 16; }
__host__ __device__ __forceinline__ long tile16_bytes(int rows, int cols) { return ((long)rows * ld16(cols) * 2 + 15) / 16 * 16; }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(fminf(fmaxf(x, -65504.f), 65504.f)); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

/* dst (c x cols, leading dim ldd) <- rows t0 .. t0+c-1 of a token-layout array (row stride in
 * elements), zero for rows at or past eos. */
template <typename TS, typename TD>
__device__ void load_rows(TD *dst, int ldd, const TS *src, long stride, int t0, int eos, int cols) {
    for (int i = threadIdx.x; i < PATH_C * cols; i += blockDim.x) {
        int r = i / cols, e = i % cols;
        int t = t0 + r;
        dst[r * ldd + e] = from_f32<TD>(t < eos ? to_f32(src[(long)t * stride + e]) : 0.f);
    }
}

/* dst (rows x cols) <- a dense scratch tile (row-major, leading dim cols) */
template <typename TS, typename TD>
__device__ void load_tile(TD *dst, int ldd, const TS *src, int rows, int cols) {
    for (int i = threadIdx.x; i < rows * cols; i += blockDim.x)
        dst[(i / cols) * ldd + i % cols] = from_f32<TD>(to_f32(src[i]));
}

/* dense scratch tile (leading dim cols) <- src (rows x cols, leading dim lds) */
__device__ __forceinline__ void store_tile(float *dst, const float *src, int lds, int rows, int cols) {
    for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) dst[i] = src[(i / cols) * lds + i % cols];
}

/* dense fp16 scratch tile <- src (rows x cols fp32, leading dim lds) */
__device__ __forceinline__ void store_tile16(__half *dst, const float *src, int lds, int rows, int cols) {
    for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) dst[i] = from_f32<__half>(src[(i / cols) * lds + i % cols]);
}

/* a per-token vector (N, heads) column h, rows t0..t0+c-1, zero past eos */
__device__ __forceinline__ void load_vec(float *dst, const float *src, int heads, int h, int t0, int eos) {
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) dst[r] = (t0 + r < eos) ? src[(long)(t0 + r) * heads + h] : 0.f;
}

/* Go_I - Go_J for query block gbI and key block gbJ (global indices) of query head hq; 0 without a gate */
__device__ __forceinline__ float gate_offset(const PathParams &p, long gbI, long gbJ, int hq) {
    return p.has_g ? (float)(p.Go[gbI * p.Hq + hq] - p.Go[gbJ * p.Hq + hq]) : 0.f;
}

/* Logit of score s at (query row r, key col j) of tile (I, J): scale s + gscale (G_i - G_j), with
 * G_i - G_j = (Gl_i - Gl_j) + (Go_I - Go_J) formed from the block-local gate sums. */
__device__ __forceinline__ float tile_logit(const PathParams &p, float s, const float *glq, const float *glk,
                                            float goff, int r, int j) {
    float z = p.scale * s;
    if (p.has_g) z += p.gscale * (glq[r] - glk[j] + goff);
    return z;
}

/* Backward tile: S (raw scores) -> P = min(exp(z - lse), 1), 0 on rows past eos and masked keys;
 * dP (= dO V^T) -> dZ = P (dP - D). One thread per row. */
static __device__ void softmax_grad_tile(const PathParams &p, float *S, float *dP, int lds, const float *lse, const float *Dv,
                                  const float *glq, const float *glk, float goff, bool causal, int rows_valid) {
    __syncthreads();
    int r = threadIdx.x;
    if (r < PATH_C) {
        float *srow = S + r * lds, *drow = dP + r * lds;
        for (int j = 0; j < PATH_C; j++) {
            float pr = 0.f;
            if (r < rows_valid && !(causal && j > r))
                pr = fminf(__expf(tile_logit(p, srow[j], glq, glk, goff, r, j) - lse[r]), 1.f);
            srow[j] = pr;
            drow[j] = pr * (drow[j] - Dv[r]);
        }
    }
    __syncthreads();
}

/* dG_j -= gscale colsum(dZ) into dst[j] (the CTA owns dst) */
__device__ __forceinline__ void add_colsum(float *dst, const float *dZ, int lds, float gscale) {
    __syncthreads();
    for (int j = threadIdx.x; j < PATH_C; j += blockDim.x) {
        float s = 0.f;
        for (int r = 0; r < PATH_C; r++) s += dZ[r * lds + j];
        dst[j] -= gscale * s;
    }
    __syncthreads();
}

/* dG_i += gscale rowsum(dZ) into dst[i]: the query side of the gate gradient. Zero in exact
 * arithmetic (softmax rows), but dZ's row sums carry the errors of D = rowsum(dO o O) (bf16 o) and
 * of the recomputed P; keeping them makes the reverse cumsum dg_t the sum over the pairs that
 * straddle t alone, instead of also accumulating those errors over the whole sequence (measured:
 * dg relative RMS 2.9e-2 with strong gates without them). */
__device__ __forceinline__ void add_rowsum(float *dst, const float *dZ, int lds, float gscale) {
    __syncthreads();
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) {
        float s = 0.f;
        for (int j = 0; j < PATH_C; j++) s += dZ[r * lds + j];
        dst[r] += gscale * s;
    }
    __syncthreads();
}

/* Online softmax of one 16 x 64 score tile per warp (rows g, g+8 of the warp): S becomes P,
 * m (log2 domain) and the thread's partial row sums l update, O rescales. */
template <int NTD>
__device__ __forceinline__ void softmax_update(const PathParams &p, float S[8][4], float O[NTD][4], float m[2], float l[2],
                                               const float gq[2], const float *glk, float goff, int row0, bool causal) {
    const float sl = p.scale * LOG2E_F, gl = p.gscale * LOG2E_F;
    int t = threadIdx.x % 4;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int col = 8 * j + 2 * t + e;
                float z = sl * S[j][2 * h + e];
                if (p.has_g) z += gl * (gq[h] - glk[col] + goff);
                if (causal && col > row0 + 8 * h) z = -INFINITY;
                S[j][2 * h + e] = z;
                mx = fmaxf(mx, z);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float mnew = fmaxf(m[h], mx);
        float alpha = exp2f(m[h] - mnew);
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float pr = exp2f(S[j][2 * h + e] - mnew);
                S[j][2 * h + e] = pr;
                sum += pr;
            }
        l[h] = alpha * l[h] + sum;
        m[h] = mnew;
#pragma unroll
        for (int j = 0; j < NTD; j++) {
            O[j][2 * h] *= alpha;
            O[j][2 * h + 1] *= alpha;
        }
    }
}

/* O += P V for the warp's 16 rows: P from the score registers (bf16), V from shared */
template <int D>
__device__ __forceinline__ void add_pv(float S[8][4], float O[D / 8][4], const void *V) {
    uint32_t pa[4][4];
    acc_to_a<4, true>(S, pa);
    mma_kn<4, D / 8, true>(O, pa, V, D + 8);
}

/* Backward of a score tile in registers (a warp's 16 rows x 64 columns; this thread's rows row0,
 * row0 + 8): S (raw scores) becomes P = min(exp(z - lse), 1) and dP (= dO V^T) becomes
 * dZ = P (dP - D), both 0 for queries >= nv and, when causal, for keys after their query. Rows are
 * queries and columns keys, or with KEY_ROWS the transpose (S = K Q^T, dP = V dO^T). lse, Dv, glq
 * are per query, glk per key (smem), goff = Go_I - Go_J. */
template <bool KEY_ROWS>
__device__ __forceinline__ void grad_tile(const PathParams &p, float S[8][4], float dP[8][4], int row0, int nv, bool causal,
                                          const float *lse, const float *Dv, const float *glq, const float *glk, float goff) {
    const float sl = p.scale * LOG2E_F, gl = p.gscale * LOG2E_F;
    int t = threadIdx.x % 4;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = row0 + 8 * (e >> 1), c = 8 * j + 2 * t + (e & 1);
            int qi = KEY_ROWS ? c : r, kj = KEY_ROWS ? r : c;
            float pr = 0.f;
            if (qi < nv && !(causal && kj > qi)) {
                float z = sl * S[j][e];
                if (p.has_g) z += gl * (glq[qi] - glk[kj] + goff);
                pr = fminf(exp2f(z - lse[qi] * LOG2E_F), 1.f);
            }
            S[j][e] = pr;
            dP[j][e] = pr * (dP[j][e] - Dv[qi]);
        }
}

/* The warp's row sums of a tile (rows row0, row0 + 8), complete in every lane of the row's quad. */
__device__ __forceinline__ void tile_row_sums(const float X[8][4], float rs[2]) {
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) s += X[j][2 * h2] + X[j][2 * h2 + 1];
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        rs[h2] = s;
    }
}

/* dst[c] += mult x (column c of X summed over the warp's 16 rows) for the tile's 64 columns: one fp32
 * atomic per column and warp */
__device__ __forceinline__ void add_tile_col_sums(float *dst, const float X[8][4], float mult) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float c = X[j][e] + X[j][2 + e];
            c += __shfl_xor_sync(0xffffffffu, c, 4);
            c += __shfl_xor_sync(0xffffffffu, c, 8);
            c += __shfl_xor_sync(0xffffffffu, c, 16);
            if (g == 0) atomicAdd(dst + 8 * j + 2 * t + e, mult * c);
        }
}

/* grad_tile of a query-major tile, then with a gate the key side dGk[j] -= gscale colsum dZ and the
 * query side dGq[i] += gscale rowsum dZ (add_rowsum says why), as fp32 atomics. */
static __device__ __forceinline__ void grad_tile_rows(const PathParams &p, float S[8][4], float dP[8][4], int row0, int nv,
                                                      bool causal, const float *lse, const float *Dv, const float *glq,
                                                      const float *glk, float goff, float *dGq, float *dGk) {
    grad_tile<false>(p, S, dP, row0, nv, causal, lse, Dv, glq, glk, goff);
    if (!p.has_g) return;
    add_tile_col_sums(dGk, dP, -p.gscale); /* key side: over the warp's rows */
    float rs[2];
    tile_row_sums(dP, rs); /* query side: the warp holds whole rows */
    if (threadIdx.x % 4 == 0)
        for (int h2 = 0; h2 < 2; h2++) atomicAdd(dGq + row0 + 8 * h2, p.gscale * rs[h2]);
}

/* keep the lower triangle (diagonal included when incl) of a c x c tile, zero the rest */
__device__ __forceinline__ void tril_tile(float *S, int lds, bool incl) {
    __syncthreads();
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) {
        int r = i / PATH_C, j = i % PATH_C;
        if (j > r || (!incl && j == r)) S[r * lds + j] = 0.f;
    }
    __syncthreads();
}

/* ---- launchers (one per kernel file), all on ctx->stream ---- */
void path_gate_prep(const GpuCtx *ctx, const PathParams &p, int n_blocks, int n_seqs);
void path_block_prep(const GpuCtx *ctx, const PathParams &p, int n_blocks);            /* F1 */
void path_superblock_prep(const GpuCtx *ctx, const PathParams &p, int n_sblocks);      /* F2 */
void path_coarse_maps(const GpuCtx *ctx, const PathParams &p, int n_sblocks);          /* F3 */
void path_attn_fwd_launch(const GpuCtx *ctx, const PathParams &p, int n_blocks);       /* F4 */
void path_bwd_prep(const GpuCtx *ctx, const PathParams &p, long n_tokens);             /* B0 */
void path_bwd_coarse(const GpuCtx *ctx, const PathParams &p, int n_blocks);            /* B1 */
void path_bwd_fine(const GpuCtx *ctx, const PathParams &p, int n_blocks);              /* B2 */
void path_bwd_coarse_maps(const GpuCtx *ctx, const PathParams &p, int n_sblocks);      /* B3 */
void path_bwd_superblock(const GpuCtx *ctx, const PathParams &p, int n_sblocks);       /* B4 */
void path_bwd_block(const GpuCtx *ctx, const PathParams &p, int n_blocks);             /* B5 */
void path_bwd_gate(const GpuCtx *ctx, const PathParams &p, int n_seqs);                /* B6 */
void path_flash_forward(const GpuCtx *ctx, const PathParams &p, int n_blocks);         /* without w */
void path_flash_backward(const GpuCtx *ctx, const PathParams &p, int n_blocks);        /* without w, after B0 */

/* f(std::integral_constant<int, d>()) for the head dim d of the warp-level kernels (32, 64 or 128;
 * path_attn_check admits no other), so a launcher names each templated kernel once. */
template <typename F>
void with_head_dim(int d, F f) {
    if (d == 32) f(std::integral_constant<int, 32>());
    else if (d == 64) f(std::integral_constant<int, 64>());
    else f(std::integral_constant<int, 128>());
}

/* Sets the dynamic shared-memory limit of a kernel and launches it. */
template <typename... Args>
void launch_smem(const GpuCtx *ctx, const char *name, void (*kernel)(Args...), dim3 grid, long smem, Args... args) {
    if (smem > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    kernel<<<grid, PATH_THREADS, smem, ctx->stream>>>(args...);
    LAUNCH_CHECK(ctx, name);
}

#endif
