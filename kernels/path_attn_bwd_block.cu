/* path_attn_bwd_block.cu: the per-block parts of the PaTH attention backward, kernels B0, B5 and
 * B6 of doc/PATH_ALGORITHM.md section 4.
 *   B0  D_i = do_i . o_i per query row and head
 *   B5  per block J and kv head, after B1, B2, B4 (dKhat, dU, dW, dV, dG hold their adds):
 *       key transform first: dB = -W dKhat^T, dW -= Bm dKhat
 *       per query head:  QW = tril(Q W^T), S = tril(Q K^T - QW Bm), P and dZ on the diagonal tile,
 *         dS = scale dZ, dQW = tril(-dS Bm^T - dQhat U^T);
 *         dq = dQhat + dS K + dQW W;  dK += dS^T Q;  dB -= QW^T dS;  dU -= QW^T dQhat;
 *         dW += dQW^T Q;  dV += P^T dO;  dG_j -= gscale colsum dZ;  dG_i += gscale rowsum dZ
 *       then, with E = SL(W K^T), F = diag(b) E:  dA = dB F^T;  dF = A^T dB;  db = rowsum(dF o E);
 *         dE = SL(diag(b) dF);  dk = dK + dKhat + dE^T W;  dW += dE K
 *       UT solve (U = A diag(b) W, A = (I + SL(diag(b) W W^T))^-1):
 *         dA += dU (diag(b) W)^T;  dWb = A^T dU;  dL = SL(-A^T dA A^T);
 *         db += rowsum(dWb o W) + rowsum(dL o W W^T);  dW += diag(b) dWb + (diag(b) dL) W + (diag(b) dL)^T W
 *       and writes dq, dk, dv (bf16), dw, dbeta (f32) of the block's rows.
 *   B6  dg = reverse cumulative sum of dG within each sequence (dG holds the key-side column sums
 *       and the query-side row sums of dZ: see add_rowsum in path_attn_internal.cuh for why both).
 * B5's diagonal-tile products use the forward's operand types (fp16 scores, bf16 gradients); for
 * d <= 64 they run at warp level (diagonal_backward_mma), at d = 128 still as CTA tile products. The
 * key-transform and UT products are 3-pass. Shared memory ~221 KB at d = 128.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "mma_frag.cuh"
#include "path_attn_internal.cuh"

/* ---------------------------------------------------------------------------------------------
 * B0 */

static __global__ void bwd_prep_kernel(PathParams p, long n_rows) {
    long row = (long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= n_rows) return;
    float s = 0.f;
    for (int e = threadIdx.x % 32; e < p.d; e += 32)
        s += __bfloat162float(p.dout[row * p.d + e]) * __bfloat162float(p.o[row * p.d + e]);
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (threadIdx.x % 32 == 0) p.D[row] = s;
}

void path_bwd_prep(const GpuCtx *ctx, const PathParams &p, long n_tokens) {
    long rows = n_tokens * p.Hq;
    if (rows == 0) return;
    bwd_prep_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, ctx->stream>>>(p, rows);
    LAUNCH_CHECK(ctx, "bwd_prep_kernel");
}

/* ---------------------------------------------------------------------------------------------
 * B5 */

struct BlockTiles {
    float *W;                          /* c x d, fp32 (zero past eos) */
    bf16 *Q, *K, *dO, *V;              /* c x d raw inputs (bf16: exact) */
    float *QW, *S, *dP, *dQW, *dB, *X1, *X2; /* c x c; X1 and X2 adjacent, also one c x d tile */
    float *b, *lse, *Dv, *gl, *db;
};

static long bwd_block_smem_bytes(int d) {
    return tile32_bytes(PATH_C, d) + 4 * tile16_bytes(PATH_C, d) + 7 * tile32_bytes(PATH_C, PATH_C) + 5 * PATH_C * 4;
}

static __device__ BlockTiles carve_block(char *smem, int d) {
    SmemCarver sc{smem};
    BlockTiles t;
    t.W = sc.take<float>(PATH_C * ld32(d));
    t.Q = sc.take<bf16>(PATH_C * ld16(d));
    t.K = sc.take<bf16>(PATH_C * ld16(d));
    t.dO = sc.take<bf16>(PATH_C * ld16(d));
    t.V = sc.take<bf16>(PATH_C * ld16(d));
    float **cc[7] = {&t.QW, &t.S, &t.dP, &t.dQW, &t.dB, &t.X1, &t.X2};
    for (int i = 0; i < 7; i++) *cc[i] = sc.take<float>(PATH_C * ld32(PATH_C));
    t.b = sc.take<float>(PATH_C);
    t.lse = sc.take<float>(PATH_C);
    t.Dv = sc.take<float>(PATH_C);
    t.gl = sc.take<float>(PATH_C);
    t.db = sc.take<float>(PATH_C);
    return t;
}

/* The diagonal tile of one query head: adds to dB (smem), dK (in dKhat), dU, dW, dV, dG; writes dq. */
static __device__ void diagonal_backward(const PathParams &p, BlockTiles &t, const SeqGeo &sq, int J, int h, int hq) {
    int d = p.d, t0 = sq.bos + J * PATH_C;
    long gb = sq.block_base + J, cd = (long)PATH_C * d, tcd = (gb * p.H + h) * cd;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    const long q_stride = (long)p.Hq * d;
    float *dQhat = p.dQhat + (gb * p.Hq + hq) * cd;
    const float *Bm = p.Bm + (gb * p.H + h) * PATH_C * PATH_C, *U = p.U + tcd;
    load_rows(t.Q, lh, p.q + (long)hq * d, q_stride, t0, sq.eos, d);
    load_rows(t.dO, lh, p.dout + (long)hq * d, q_stride, t0, sq.eos, d);
    load_vec(t.lse, p.lse, p.Hq, hq, t0, sq.eos);
    load_vec(t.Dv, p.D, p.Hq, hq, t0, sq.eos);
    if (p.has_g)
        for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) t.gl[r] = p.Gl[(gb * p.Hq + hq) * PATH_C + r];
    /* recompute the tile as the forward did */
    cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.Q, lh), mat(t.W, lw, true), t.QW, lc);
    tril_tile(t.QW, lc, true);
    cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.Q, lh), mat(t.K, lh, true), t.S, lc);
    cta_gemm<PREC_F16, STORE_ADD>(PATH_C, PATH_C, PATH_C, -1.f, mat(t.QW, lc), mat(Bm, PATH_C), t.S, lc);
    cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.dO, lh), mat(t.V, lh, true), t.dP, lc);
    softmax_grad_tile(p, t.S, t.dP, lc, t.lse, t.Dv, t.gl, t.gl, 0.f, true, sq.eos - t0);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.S, lc, true), mat(t.dO, lh), p.dV + tcd, d);
    if (p.has_g) {
        add_colsum(p.dG + (gb * p.Hq + hq) * PATH_C, t.dP, lc, p.gscale);
        add_rowsum(p.dG + (gb * p.Hq + hq) * PATH_C, t.dP, lc, p.gscale);
    }
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) t.dP[(i / PATH_C) * lc + i % PATH_C] *= p.scale;
    /* dQW = tril(-dS Bm^T - dQhat U^T) */
    cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, PATH_C, -1.f, mat(t.dP, lc), mat(Bm, PATH_C, true), t.dQW, lc);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, PATH_C, d, -1.f, mat(dQhat, d), mat(U, d, true), t.dQW, lc);
    tril_tile(t.dQW, lc, true);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(t.QW, lc, true), mat(dQhat, d), p.dU + tcd, d);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.dQW, lc, true), mat(t.Q, lh), p.dW + tcd, d);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.dP, lc, true), mat(t.Q, lh), p.dKhat + tcd, d);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, PATH_C, PATH_C, -1.f, mat(t.QW, lc, true), mat(t.dP, lc), t.dB, lc);
    /* dq = dQhat + dS K + dQW W, accumulated in the dQhat scratch tile */
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.dP, lc), mat(t.K, lh), dQhat, d);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.dQW, lc), mat(t.W, lw), dQhat, d);
    for (int i = threadIdx.x; i < PATH_C * d; i += blockDim.x) {
        int r = i / d, e = i % d;
        if (t0 + r < sq.eos) p.dq[((long)(t0 + r) * p.Hq + hq) * d + e] = __float2bfloat16_rn(dQhat[i]);
    }
    __syncthreads();
}

/* d <= 64: the same diagonal tile with warp-level products (each warp owns 16 query rows); the
 * sums over query rows (dK, dB, dU, dW, dV) staged as bf16 tiles in the space of the key side's
 * fp32 c x c tiles, which are free until the head loop ends. */
template <int D>
struct DiagTiles {
    static constexpr int LD = D + 8, LDC = PATH_C + 8;
    __half *W16, *Bm16;
    bf16 *Wb, *Bmb, *Ub, *QWs, *dSs, *dQWs, *Ps, *dQhs;
};

template <int D>
static __device__ DiagTiles<D> carve_diag(BlockTiles &t) {
    static_assert(D <= PATH_C, "a 16-bit c x d tile must fit the space of a 16-bit c x c tile");
    DiagTiles<D> s;
    const long n = (long)PATH_C * (PATH_C + 8); /* one 16-bit tile, both for c x d (d <= 64) and c x c */
    char *a = (char *)t.QW; /* QW, S, dP, dQW: four fp32 c x c tiles in a row */
    s.W16 = (__half *)a;
    s.Bm16 = (__half *)(a + 2 * n);
    s.Wb = (bf16 *)(a + 4 * n);
    s.Bmb = (bf16 *)(a + 6 * n);
    s.Ub = (bf16 *)(a + 8 * n);
    s.QWs = (bf16 *)(a + 10 * n);
    s.dSs = (bf16 *)(a + 12 * n);
    char *x = (char *)t.X1; /* X1, X2 */
    s.dQWs = (bf16 *)x;
    s.Ps = (bf16 *)(x + 2 * n);
    s.dQhs = (bf16 *)(x + 4 * n);
    return s;
}

/* the kv head's tiles of the block, once before the head loop: W, Bm (fp16 and bf16), U (bf16) */
template <int D>
static __device__ void load_diag_factors(const PathParams &p, DiagTiles<D> &s, long gb, int h) {
    long tcd = (gb * p.H + h) * PATH_C * D, tcc = (gb * p.H + h) * PATH_C * PATH_C;
    load_tile_async<PATH_C, D>(s.W16, p.W16 + tcd, D, PATH_C);
    load_tile_async<PATH_C, PATH_C>(s.Bm16, p.Bm16 + tcc, PATH_C, PATH_C);
    load_tile_async<PATH_C, D>(s.Ub, p.U16 + tcd, D, PATH_C); /* fp16 for now, converted below */
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    to_bf16<D>(s.Wb, s.W16);
    to_bf16<PATH_C>(s.Bmb, s.Bm16);
    for (int i = threadIdx.x; i < PATH_C * D; i += blockDim.x) { /* in place: U fp16 -> bf16 */
        int o = (i / D) * (D + 8) + i % D;
        s.Ub[o] = __float2bfloat16_rn(__half2float(((const __half *)s.Ub)[o]));
    }
    __syncthreads();
}

template <int D>
static __device__ void diagonal_backward_mma(const PathParams &p, BlockTiles &t, DiagTiles<D> &s, const SeqGeo &sq,
                                             int J, int h, int hq) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8, LDC = PATH_C + 8;
    int t0 = sq.bos + J * PATH_C, nv = sq.eos - t0;
    long gb = sq.block_base + J, cd = (long)PATH_C * D, tcd = (gb * p.H + h) * cd;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    int row0 = 16 * warp + g;
    float *dQhat = p.dQhat + (gb * p.Hq + hq) * cd;
    load_tile_async<PATH_C, D>(t.Q, p.q + ((long)t0 * p.Hq + hq) * D, (long)p.Hq * D, nv);
    load_tile_async<PATH_C, D>(t.dO, p.dout + ((long)t0 * p.Hq + hq) * D, (long)p.Hq * D, nv);
    cp_async_commit();
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) {
        bool ok = r < nv;
        t.lse[r] = ok ? p.lse[(long)(t0 + r) * p.Hq + hq] : 0.f;
        t.Dv[r] = ok ? p.D[(long)(t0 + r) * p.Hq + hq] : 0.f;
        t.gl[r] = p.has_g ? p.Gl[(gb * p.Hq + hq) * PATH_C + r] : 0.f;
    }
    float dq[NTD][4]; /* starts as dQhat, this warp's rows */
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float2 x = *(const float2 *)(dQhat + (row0 + 8 * h2) * D + 8 * j + 2 * tq);
            dq[j][2 * h2] = x.x;
            dq[j][2 * h2 + 1] = x.y;
        }
    stage_acc<NTD>(s.dQhs, LD, dq, row0);
    cp_async_wait<0>();
    __syncthreads();
    /* the tile as the forward computed it: QW = tril(Q W^T) (fp16), S = Q K^T (bf16) - QW Bm (fp16) */
    uint32_t qb[KSD][4], qh[KSD][4], doa[KSD][4];
    load_a<KSD>(qb, t.Q, LD, 16 * warp);
    a_bf16_to_f16<KSD>(qb, qh);
    load_a<KSD>(doa, t.dO, LD, 16 * warp);
    float QW[8][4], S[8][4], dP[8][4];
    zero_acc<8>(QW);
    mma_nk<KSD, 8, false>(QW, qh, s.W16, LD);
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (8 * j + 2 * tq + (e & 1) > row0 + 8 * (e >> 1)) QW[j][e] = 0.f;
    uint32_t qwa[4][4];
    acc_to_a<4, false>(QW, qwa, -1.f);
    zero_acc<8>(S);
    mma_nk<KSD, 8, true>(S, qb, t.K, LD);
    mma_kn<4, 8, false>(S, qwa, s.Bm16, LDC);
    zero_acc<8>(dP);
    mma_nk<KSD, 8, true>(dP, doa, t.V, LD);
    float *dG = p.dG + (gb * p.Hq + hq) * PATH_C;
    grad_tile_rows(p, S, dP, row0, nv, true, t.lse, t.Dv, t.gl, t.gl, 0.f, dG, dG);
    stage_acc<8>(s.Ps, LDC, S, row0);
    stage_acc<8>(s.QWs, LDC, QW, row0);
    stage_acc<8>(s.dSs, LDC, dP, row0, p.scale);
    /* dQW = tril(-dS Bm^T - dQhat U^T) */
    uint32_t dsa[4][4], dqh[KSD][4];
    acc_to_a<4, true>(dP, dsa, p.scale);
    acc_to_a<KSD, true>(dq, dqh, -1.f);
    uint32_t dsn[4][4];
    acc_to_a<4, true>(dP, dsn, -p.scale);
    float dQW[8][4];
    zero_acc<8>(dQW);
    mma_nk<4, 8, true>(dQW, dsn, s.Bmb, LDC);
    mma_nk<KSD, 8, true>(dQW, dqh, s.Ub, LD);
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (8 * j + 2 * tq + (e & 1) > row0 + 8 * (e >> 1)) dQW[j][e] = 0.f;
    stage_acc<8>(s.dQWs, LDC, dQW, row0);
    /* dq = dQhat + dS K + dQW W */
    uint32_t dqwa[4][4];
    acc_to_a<4, true>(dQW, dqwa);
    mma_kn<4, NTD, true>(dq, dsa, t.K, LD);
    mma_kn<4, NTD, true>(dq, dqwa, s.Wb, LD);
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = row0 + 8 * h2;
            if (r < nv)
                *(__nv_bfloat162 *)(p.dq + ((long)(t0 + r) * p.Hq + hq) * D + 8 * j + 2 * tq) =
                    __floats2bfloat162_rn(dq[j][2 * h2], dq[j][2 * h2 + 1]);
        }
    __syncthreads();
    /* sums over the query rows */
    add_st_product<D, false>(p.dKhat + tcd, D, s.dSs, t.Q, LD, 1.f);
    add_st_product<PATH_C, false>(t.dB, ld32(PATH_C), s.QWs, s.dSs, LDC, -1.f);
    add_st_product<D, false>(p.dU + tcd, D, s.QWs, s.dQhs, LD, -1.f);
    add_st_product<D, false>(p.dW + tcd, D, s.dQWs, t.Q, LD, 1.f);
    add_st_product<D, false>(p.dV + tcd, D, s.Ps, t.dO, LD, 1.f);
    __syncthreads();
}

/* db[r] += sum_t X[r, t] Y[r, t] over c x c tiles (rowsum of a Hadamard product) */
static __device__ void add_rowsum_prod(float *db, const float *X, const float *Y, int ld, int cols, int ldy) {
    __syncthreads();
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) {
        float s = 0.f;
        for (int j = 0; j < cols; j++) s += X[r * ld + j] * Y[r * ldy + j];
        db[r] += s;
    }
    __syncthreads();
}

/* Gradients through Khat = K - Bm^T W, Bm = A diag(b) SL(W K^T), and the UT solve. */
static __device__ void key_and_ut_backward(const PathParams &p, BlockTiles &t, long gb, int h) {
    int d = p.d;
    long cd = (long)PATH_C * d, tcd = (gb * p.H + h) * cd;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    const float *A = p.A + (gb * p.H + h) * PATH_C * PATH_C;
    float *dW = p.dW + tcd, *dU = p.dU + tcd, *dK = p.dKhat + tcd;
    float *E = t.QW, *F = t.S, *dA = t.dP, *dF = t.dQW, *Tcd = t.X1;
    /* E = SL(W K^T), F = diag(b) E */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.W, lw), mat(t.K, lh, true), E, lc);
    tril_tile(E, lc, false);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) {
        int r = i / PATH_C, j = i % PATH_C;
        F[r * lc + j] = t.b[r] * E[r * lc + j];
    }
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, PATH_C, 1.f, mat(t.dB, lc), mat(F, lc, true), dA, lc);
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, PATH_C, 1.f, mat(A, PATH_C, true), mat(t.dB, lc), dF, lc);
    add_rowsum_prod(t.db, dF, E, lc, PATH_C, lc);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) { /* dE = SL(diag(b) dF) */
        int r = i / PATH_C, j = i % PATH_C;
        dF[r * lc + j] = j < r ? t.b[r] * dF[r * lc + j] : 0.f;
    }
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(dF, lc, true), mat(t.W, lw), dK, d);
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(dF, lc), mat(t.K, lh), dW, d);
    /* UT: dA += dU (diag(b) W)^T = (dU W^T) diag(b) */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(dU, d), mat(t.W, lw, true), t.X1, lc);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) {
        int r = i / PATH_C, j = i % PATH_C;
        dA[r * lc + j] += t.b[j] * t.X1[r * lc + j];
    }
    /* dWb = A^T dU: dW += diag(b) dWb, db += rowsum(dWb o W) */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, d, PATH_C, 1.f, mat(A, PATH_C, true), mat(dU, d), Tcd, lw);
    add_rowsum_prod(t.db, Tcd, t.W, lw, d, lw);
    for (int i = threadIdx.x; i < PATH_C * d; i += blockDim.x) dW[i] += t.b[i / d] * Tcd[(i / d) * lw + i % d];
    /* dL = SL(-A^T dA A^T); db += rowsum(dL o W W^T); dW += (diag(b) dL) W + (diag(b) dL)^T W */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, PATH_C, 1.f, mat(A, PATH_C, true), mat(dA, lc), E, lc);
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, PATH_C, -1.f, mat(E, lc), mat(A, PATH_C, true), F, lc);
    tril_tile(F, lc, false);
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.W, lw), mat(t.W, lw, true), t.X1, lc);
    add_rowsum_prod(t.db, F, t.X1, lc, PATH_C, lc);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) F[(i / PATH_C) * lc + i % PATH_C] *= t.b[i / PATH_C];
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(F, lc), mat(t.W, lw), dW, d);
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(F, lc, true), mat(t.W, lw), dW, d);
}

static __global__ void bwd_block_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, h = blockIdx.y, grp = p.Hq / p.H, J = item.y, t0 = sq.bos + J * PATH_C;
    long gb = sq.block_base + J, cd = (long)PATH_C * d, tcd = (gb * p.H + h) * cd;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    const long kv_stride = (long)p.H * d;
    BlockTiles t = carve_block(smem, d);
    if (p.has_w) {
        load_rows(t.W, lw, p.w + (long)h * d, kv_stride, t0, sq.eos, d);
        load_vec(t.b, p.beta, p.H, h, t0, sq.eos);
    } else {
        for (int i = threadIdx.x; i < PATH_C * lw; i += blockDim.x) t.W[i] = 0.f;
        for (int i = threadIdx.x; i < PATH_C; i += blockDim.x) t.b[i] = 0.f;
    }
    for (int i = threadIdx.x; i < PATH_C; i += blockDim.x) t.db[i] = 0.f;
    load_rows(t.K, lh, p.k + (long)h * d, kv_stride, t0, sq.eos, d);
    load_rows(t.V, lh, p.v + (long)h * d, kv_stride, t0, sq.eos, d);
    /* key transform, the part that needs dKhat alone: dB = -W dKhat^T, dW -= Bm dKhat */
    const float *Bm = p.Bm + (gb * p.H + h) * PATH_C * PATH_C;
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, -1.f, mat(t.W, lw), mat(p.dKhat + tcd, d, true), t.dB, lc);
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(Bm, PATH_C), mat(p.dKhat + tcd, d), p.dW + tcd, d);
    if (d == 32 || d == 64) {
        if (d == 32) {
            DiagTiles<32> s = carve_diag<32>(t);
            load_diag_factors<32>(p, s, gb, h);
            for (int hq = h * grp; hq < (h + 1) * grp; hq++) diagonal_backward_mma<32>(p, t, s, sq, J, h, hq);
        } else {
            DiagTiles<64> s = carve_diag<64>(t);
            load_diag_factors<64>(p, s, gb, h);
            for (int hq = h * grp; hq < (h + 1) * grp; hq++) diagonal_backward_mma<64>(p, t, s, sq, J, h, hq);
        }
    } else {
        for (int hq = h * grp; hq < (h + 1) * grp; hq++) diagonal_backward(p, t, sq, J, h, hq);
    }
    key_and_ut_backward(p, t, gb, h);
    __syncthreads();
    for (int i = threadIdx.x; i < PATH_C * d; i += blockDim.x) {
        int r = i / d, e = i % d;
        if (t0 + r >= sq.eos) continue;
        long o = ((long)(t0 + r) * p.H + h) * d + e;
        p.dk[o] = __float2bfloat16_rn(p.dKhat[tcd + i]);
        p.dv[o] = __float2bfloat16_rn(p.dV[tcd + i]);
        if (p.has_w) p.dw[o] = p.dW[tcd + i];
    }
    if (p.has_w)
        for (int r = threadIdx.x; r < PATH_C; r += blockDim.x)
            if (t0 + r < sq.eos) p.dbeta[(long)(t0 + r) * p.H + h] = t.db[r];
}

void path_bwd_block(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    launch_smem(ctx, "bwd_block_kernel", bwd_block_kernel, dim3(n_blocks, p.H), bwd_block_smem_bytes(p.d), p);
}

/* ---------------------------------------------------------------------------------------------
 * B6 */

#define GATE_THREADS 256

/* dG of token t of a sequence (block layout) */
static __device__ __forceinline__ float &dG_at(const PathParams &p, const SeqGeo &sq, int hq, int t) {
    int J = (t - sq.bos) / PATH_C;
    return p.dG[((long)(sq.block_base + J) * p.Hq + hq) * PATH_C + (t - sq.bos) % PATH_C];
}

/* One CTA per (sequence, query head): each thread reverse-sums a contiguous chunk, a scan of the
 * chunk totals in shared memory gives each chunk the sum of the chunks after it. */
static __global__ void bwd_gate_kernel(PathParams p) {
    __shared__ float tot[GATE_THREADS];
    SeqGeo sq = p.seqs[blockIdx.x];
    int hq = blockIdx.y, len = sq.eos - sq.bos, chunk = (len + GATE_THREADS - 1) / GATE_THREADS;
    int lo = sq.bos + threadIdx.x * chunk, hi = min(lo + chunk, sq.eos);
    float s = 0.f;
    for (int t = lo; t < hi; t++) s += dG_at(p, sq, hq, t);
    tot[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) { /* tot[i] <- sum of the totals of chunks after i */
        float acc = 0.f;
        for (int i = GATE_THREADS - 1; i >= 0; i--) {
            float x = tot[i];
            tot[i] = acc;
            acc += x;
        }
    }
    __syncthreads();
    float acc = tot[threadIdx.x];
    for (int t = hi - 1; t >= lo; t--) {
        acc += dG_at(p, sq, hq, t);
        p.dg[(long)t * p.Hq + hq] = acc;
    }
}

void path_bwd_gate(const GpuCtx *ctx, const PathParams &p, int n_seqs) {
    bwd_gate_kernel<<<dim3(n_seqs, p.Hq), GATE_THREADS, 0, ctx->stream>>>(p);
    LAUNCH_CHECK(ctx, "bwd_gate_kernel");
}
