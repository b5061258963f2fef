/* path_attn_prep.cu: the query-independent factors of PaTH attention (doc/PATH_ALGORITHM.md
 * sections 2-3, kernels F1-F3) and the block form of the gate.
 *
 *   gate  Gl[J, r] = g summed over rows 0..r of block J (fp32), Go[J] = g summed over the blocks
 *         before J (fp64), so G_i - G_j = (Gl_i - Gl_j) + (Go_I - Go_J) without a long fp32 cumsum
 *   F1    per block J, kv head: A = (I + SL(diag(b) W W^T))^-1 (blocked substitution, fp32),
 *         U = A diag(b) W, E = SL(W K^T), Bm = A diag(b) E, Khat = K - Bm^T W
 *         (so H_first..H_last = I - U^T W, and Khat = keys moved to the block's right edge)
 *   F2    per superblock, kv head, blocks right to left with R = I:
 *         R_J = R; Ktil_J = Khat_J R; R <- R - U_J^T (W_J R); finally Pm = R^T
 *   F3    per frame a = m+1: Pi[a-1, a] = I; Pi[b, a] = Pi[b+1, a] Pm_{b+1} for b = a-2 .. 0
 * All products here use 3-pass bf16 splits (PREC_BF16X3, ~fp32 accuracy): U and the d x d chains
 * feed every coarse pair. Tiles: 64 rows, 4 warps; shared memory up to ~205 KB at d = 128.
 * Checked by tests/test_path_attn_gpu.cu (end to end against model/attn_ref.c). */
#include "path_attn_internal.cuh"

/* ---------------------------------------------------------------------------------------------
 * gate: block-local cumsum and fp64 block offsets */

static __global__ void gate_local_kernel(PathParams p) {
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int hq = blockIdx.y, gb = sq.block_base + item.y, t0 = sq.bos + item.y * PATH_C;
    if (threadIdx.x == 0) {
        float acc = 0.f;
        float *gl = p.Gl + ((long)gb * p.Hq + hq) * PATH_C;
        for (int r = 0; r < PATH_C; r++) {
            if (t0 + r < sq.eos) acc += p.g[(long)(t0 + r) * p.Hq + hq];
            gl[r] = acc;
        }
    }
}

static __global__ void gate_offsets_kernel(PathParams p) {
    SeqGeo sq = p.seqs[blockIdx.x];
    int hq = threadIdx.x;
    if (hq >= p.Hq) return;
    double acc = 0.0;
    for (int J = 0; J < sq.nblk; J++) {
        long e = (long)(sq.block_base + J) * p.Hq + hq;
        p.Go[e] = acc;
        acc += (double)p.Gl[e * PATH_C + PATH_C - 1];
    }
}

void path_gate_prep(const GpuCtx *ctx, const PathParams &p, int n_blocks, int n_seqs) {
    gate_local_kernel<<<dim3(n_blocks, p.Hq), 32, 0, ctx->stream>>>(p);
    LAUNCH_CHECK(ctx, "gate_local_kernel");
    gate_offsets_kernel<<<n_seqs, (p.Hq + 31) / 32 * 32, 0, ctx->stream>>>(p);
    LAUNCH_CHECK(ctx, "gate_offsets_kernel");
}

/* ---------------------------------------------------------------------------------------------
 * F1 block prep */

/* A = (I + L)^-1 for strictly lower L (64 x 64), blocked in 16 x 16 tiles:
 *   diagonal tiles, one per warp, by forward substitution down each column (a lane owns a column:
 *     A[r, t] = -sum_{u = t}^{r-1} L[r, u] A[u, t], no barrier inside);
 *   then off-diagonal tiles level by level (i - j = 1, 2, 3):
 *     A_ij = -A_ii sum_{k = j}^{i-1} L_ik A_kj,   T (scratch, 3 tiles) holds the sums.
 * fp32 throughout (doc/PATH_ALGORITHM.md section 7). */
static __device__ void unit_lower_inverse(const float *L, int ld, float *A, float *T) {
    constexpr int NB = PATH_C / 16;
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) A[(i / PATH_C) * ld + i % PATH_C] = (i / PATH_C == i % PATH_C);
    __syncthreads();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp < NB && lane < 16) {
        int o = 16 * warp, t = o + lane;
        for (int r = t + 1; r < o + 16; r++) {
            float acc = 0.f;
            for (int u = t; u < r; u++) acc += L[r * ld + u] * A[u * ld + t];
            A[r * ld + t] = -acc;
        }
    }
    __syncthreads();
    for (int lev = 1; lev < NB; lev++) {
        int n_tiles = NB - lev;
        for (int e = threadIdx.x; e < n_tiles * 256; e += blockDim.x) { /* T_j = sum_k L_ik A_kj, i = j + lev */
            int j = e / 256, r = e % 256 / 16, c = e % 16, i = j + lev;
            float acc = 0.f;
            for (int k = j; k < i; k++)
                for (int u = 0; u < 16; u++) acc += L[(16 * i + r) * ld + 16 * k + u] * A[(16 * k + u) * ld + 16 * j + c];
            T[e] = acc;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < n_tiles * 256; e += blockDim.x) { /* A_ij = -A_ii T_j */
            int j = e / 256, r = e % 256 / 16, c = e % 16, i = j + lev;
            float acc = 0.f;
            for (int u = 0; u <= r; u++) acc += A[(16 * i + r) * ld + 16 * i + u] * T[j * 256 + u * 16 + c];
            A[(16 * i + r) * ld + 16 * j + c] = -acc;
        }
        __syncthreads();
    }
}

/* Tiles of one block: W, K (fp32, zero past eos), beta. */
static __device__ void load_block_wkb(const PathParams &p, const SeqGeo &sq, int J, int h, float *W, float *K, float *b) {
    int d = p.d, t0 = sq.bos + J * PATH_C;
    if (p.has_w) {
        load_rows(W, ld32(d), p.w + (long)h * d, (long)p.H * d, t0, sq.eos, d);
        load_vec(b, p.beta, p.H, h, t0, sq.eos);
    } else {
        for (int i = threadIdx.x; i < PATH_C * ld32(d); i += blockDim.x) W[i] = 0.f;
        for (int i = threadIdx.x; i < PATH_C; i += blockDim.x) b[i] = 0.f;
    }
    if (K) load_rows(K, ld32(d), p.k + (long)h * d, (long)p.H * d, t0, sq.eos, d);
    __syncthreads();
}

static __global__ void block_prep_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int h = blockIdx.y, d = p.d, gb = sq.block_base + item.y;
    const int lw = ld32(d), lc = ld32(PATH_C);
    SmemCarver sc{smem};
    float *W = sc.take<float>(PATH_C * lw), *K = sc.take<float>(PATH_C * lw), *U = sc.take<float>(PATH_C * lw);
    float *L = sc.take<float>(PATH_C * lc), *A = sc.take<float>(PATH_C * lc), *Bm = sc.take<float>(PATH_C * lc);
    float *b = sc.take<float>(PATH_C);
    float *E = L; /* L is dead once A is formed */
    load_block_wkb(p, sq, item.y, h, W, K, b);

    /* L = SL(diag(b) W W^T), A = (I + L)^-1 (Bm's tile is the inverse's scratch) */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(W, lw), mat(W, lw, true), L, lc);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) {
        int r = i / PATH_C, t = i % PATH_C;
        L[r * lc + t] = t < r ? b[r] * L[r * lc + t] : 0.f;
    }
    __syncthreads();
    unit_lower_inverse(L, lc, A, Bm);
    /* U = (A diag(b)) W, with A diag(b) formed in E */
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) E[(i / PATH_C) * lc + i % PATH_C] = A[(i / PATH_C) * lc + i % PATH_C] * b[i % PATH_C];
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, d, PATH_C, 1.f, mat(E, lc), mat(W, lw), U, lw);
    /* E = diag(b) SL(W K^T), Bm = A E, Khat = K - Bm^T W */
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(W, lw), mat(K, lw, true), E, lc);
    for (int i = threadIdx.x; i < PATH_C * PATH_C; i += blockDim.x) {
        int r = i / PATH_C, t = i % PATH_C;
        E[r * lc + t] = t < r ? b[r] * E[r * lc + t] : 0.f;
    }
    cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, PATH_C, PATH_C, 1.f, mat(A, lc), mat(E, lc), Bm, lc);
    cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(Bm, lc, true), mat(W, lw), K, lw);

    long tcd = ((long)gb * p.H + h) * PATH_C * d, tcc = ((long)gb * p.H + h) * PATH_C * PATH_C;
    store_tile(p.U + tcd, U, lw, PATH_C, d);
    store_tile(p.Bm + tcc, Bm, lc, PATH_C, PATH_C);
    store_tile16(p.U16 + tcd, U, lw, PATH_C, d);
    store_tile16(p.W16 + tcd, W, lw, PATH_C, d);
    store_tile16(p.Khat16 + tcd, K, lw, PATH_C, d);
    store_tile16(p.Bm16 + tcc, Bm, lc, PATH_C, PATH_C);
    if (p.store_backward_factors) store_tile(p.A + tcc, A, lc, PATH_C, PATH_C);
}

void path_block_prep(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    long smem = 3 * tile32_bytes(PATH_C, p.d) + 3 * tile32_bytes(PATH_C, PATH_C) + PATH_C * 4;
    launch_smem(ctx, "block_prep_kernel", block_prep_kernel, dim3(n_blocks, p.H), smem, p);
}

/* ---------------------------------------------------------------------------------------------
 * F2 superblock prep */

static __global__ void superblock_prep_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.sblocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int h = blockIdx.y, d = p.d, m = item.y;
    const int lw = ld32(d);
    SmemCarver sc{smem};
    float *R = sc.take<float>((long)d * lw), *T1 = sc.take<float>(PATH_C * lw), *W = sc.take<float>(PATH_C * lw);
    float *U = sc.take<float>(PATH_C * lw), *Kh = sc.take<float>(PATH_C * lw), *b = sc.take<float>(PATH_C);
    for (int i = threadIdx.x; i < d * d; i += blockDim.x) R[(i / d) * lw + i % d] = (i / d == i % d);
    int J0 = m * p.s, J1 = min(J0 + p.s, sq.nblk) - 1;
    for (int J = J1; J >= J0; J--) {
        long gb = sq.block_base + J, tcd = (gb * p.H + h) * PATH_C * d;
        load_block_wkb(p, sq, J, h, W, nullptr, b);
        load_tile(U, lw, p.U + tcd, PATH_C, d);
        load_tile(Kh, lw, p.Khat16 + tcd, PATH_C, d);
        __syncthreads();
        if (p.store_backward_factors) store_tile(p.R + (gb * p.H + h) * d * d, R, lw, d, d);
        cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, d, d, 1.f, mat(Kh, lw), mat(R, lw), T1, lw);
        store_tile16(p.Ktil16 + tcd, T1, lw, PATH_C, d);
        cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, d, d, 1.f, mat(W, lw), mat(R, lw), T1, lw);
        cta_gemm<PREC_BF16X3, STORE_ADD>(d, d, PATH_C, -1.f, mat(U, lw, true), mat(T1, lw), R, lw);
    }
    float *Pm = p.Pm + ((long)(sq.sb_base + m) * p.H + h) * d * d;
    for (int i = threadIdx.x; i < d * d; i += blockDim.x) Pm[i] = R[(i % d) * lw + i / d]; /* Pm = R^T */
}

void path_superblock_prep(const GpuCtx *ctx, const PathParams &p, int n_sblocks) {
    long smem = tile32_bytes(p.d, p.d) + 4 * tile32_bytes(PATH_C, p.d) + PATH_C * 4;
    launch_smem(ctx, "superblock_prep_kernel", superblock_prep_kernel, dim3(n_sblocks, p.H), smem, p);
}

/* ---------------------------------------------------------------------------------------------
 * F3 coarse maps */

static __global__ void coarse_maps_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.sblocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int h = blockIdx.y, d = p.d, a = item.y + 1;
    const int lw = ld32(d);
    SmemCarver sc{smem};
    float *cur = sc.take<float>((long)d * lw), *nxt = sc.take<float>((long)d * lw), *P = sc.take<float>((long)d * lw);
    for (int i = threadIdx.x; i < d * d; i += blockDim.x) cur[(i / d) * lw + i % d] = (i / d == i % d);
    __syncthreads();
    store_tile(p.Pi + (pi_entry(sq.pi_base, a - 1, a) * p.H + h) * d * d, cur, lw, d, d);
    for (int b = a - 2; b >= 0; b--) {
        load_tile(P, lw, p.Pm + ((long)(sq.sb_base + b + 1) * p.H + h) * d * d, d, d);
        cta_gemm<PREC_BF16X3, STORE_SET>(d, d, d, 1.f, mat(cur, lw), mat(P, lw), nxt, lw);
        store_tile(p.Pi + (pi_entry(sq.pi_base, b, a) * p.H + h) * d * d, nxt, lw, d, d);
        float *t = cur; cur = nxt; nxt = t;
    }
}

void path_coarse_maps(const GpuCtx *ctx, const PathParams &p, int n_sblocks) {
    long smem = 3 * tile32_bytes(p.d, p.d);
    launch_smem(ctx, "coarse_maps_kernel", coarse_maps_kernel, dim3(n_sblocks, p.H), smem, p);
}
