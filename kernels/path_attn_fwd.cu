/* path_attn_fwd.cu: PaTH attention forward, kernel F4 of doc/PATH_ALGORITHM.md section 3.
 *   s_ij = q_i^T H_i .. H_{j+1} k_j,  z_ij = scale s_ij + gscale (G_i - G_j),
 *   o_i = sum_j softmax_j(z_i.) v_j,  lse_i = log sum_j exp z_ij
 * One CTA per (query block I, query head), FlashAttention-2's online softmax in fp32:
 *   prologue  QW = tril(Q W_I^T); S = Q K_I^T - QW Bm_I (causal); X = Q - QW U_I   (= Q^)
 *   fine      J = I-1 .. J0 (same superblock): S = X Khat_J^T; X <- X - (X W_J^T) U_J
 *   store     Qleft_I = X (fp16, saved for the backward)
 *   coarse    b = a-1 .. 0: Xb = Qleft_I Pi[b, a] (Pi split hi + lo); S = Xb Ktil_J^T for J in b
 *   epilogue  o = acc / l, lse = m + log l
 * in : q (N,Hq,d) bf16, v (N,H,d) bf16, k through Khat/Ktil/Bm/U of F1-F3 (and raw k for the
 *      diagonal), w (N,H,d) f32, Gl/Go gate blocks
 * out: o (N,Hq,d) bf16, lse (N,Hq) f32, qleft (N,Hq,d) f16
 * Operands: fp16 for Q, X, K, W, U (contractions bound them), bf16 for P V (section 7).
 * Shared memory ~150 KB at d = 128 (fp32 X and O, 16-bit operand tiles, three c x c tiles).
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "path_attn_internal.cuh"

struct FwdTiles {
    float *X, *O, *S, *T, *Bt, *Xb; /* fp32: queries, accumulator, scores, QW / X W^T, Bm, coarse queries */
    __half *Kt, *Wt, *Ut;          /* fp16 operand tiles */
    bf16 *Vt;
    float *m, *l, *alpha, *glq, *glk;
};

static long fwd_smem_bytes(int d) {
    return 2 * tile32_bytes(PATH_C, d) + 3 * tile32_bytes(PATH_C, PATH_C) + 2 * tile16_bytes(PATH_C, d) +
           2 * tile16_bytes(PATH_C, d) + 5 * PATH_C * 4;
}

static __device__ FwdTiles carve_fwd(char *smem, int d) {
    SmemCarver sc{smem};
    FwdTiles t;
    t.X = sc.take<float>(PATH_C * ld32(d));
    t.O = sc.take<float>(PATH_C * ld32(d));
    t.S = sc.take<float>(PATH_C * ld32(PATH_C));
    t.T = sc.take<float>(PATH_C * ld32(PATH_C));
    t.Bt = sc.take<float>(PATH_C * ld32(PATH_C));
    t.Kt = sc.take<__half>(PATH_C * ld16(d));
    t.Vt = sc.take<bf16>(PATH_C * ld16(d));
    /* W and U (fine phase) share their space with Xb (coarse phase): 2 c (d+8) halves >= c (d+4) floats */
    t.Wt = sc.take<__half>(PATH_C * ld16(d));
    t.Ut = sc.take<__half>(PATH_C * ld16(d));
    t.Xb = reinterpret_cast<float *>(t.Wt);
    t.m = sc.take<float>(PATH_C);
    t.l = sc.take<float>(PATH_C);
    t.alpha = sc.take<float>(PATH_C);
    t.glq = sc.take<float>(PATH_C);
    t.glk = sc.take<float>(PATH_C);
    return t;
}

/* scores in t.S (raw) -> online softmax update with values t.Vt */
static __device__ void attend(const PathParams &p, FwdTiles &t, float goff, bool causal) {
    int d = p.d;
    softmax_tile_update(p, t.S, ld32(PATH_C), t.m, t.l, t.alpha, t.glq, t.glk, goff, causal);
    rescale_rows(t.O, ld32(d), t.alpha, d);
    cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(t.S, ld32(PATH_C)), mat(t.Vt, ld16(d)), t.O, ld32(d));
}

static __device__ void load_gate_block(const PathParams &p, float *gl, long gb, int hq) {
    if (!p.has_g) return;
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) gl[r] = p.Gl[(gb * p.Hq + hq) * PATH_C + r];
}

static __device__ float gate_offset(const PathParams &p, long gbI, long gbJ, int hq) {
    return p.has_g ? (float)(p.Go[gbI * p.Hq + hq] - p.Go[gbJ * p.Hq + hq]) : 0.f;
}

static __global__ void attn_fwd_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y, a = I / p.s, J0 = a * p.s;
    int t0 = sq.bos + I * PATH_C;
    long gbI = sq.block_base + I;
    const long kv_stride = (long)p.H * d, q_stride = (long)p.Hq * d;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    FwdTiles t = carve_fwd(smem, d);

    load_rows(t.X, lw, p.q + (long)hq * d, q_stride, t0, sq.eos, d);
    for (int i = threadIdx.x; i < PATH_C * lw; i += blockDim.x) t.O[i] = 0.f;
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) { t.m[r] = -INFINITY; t.l[r] = 0.f; }
    load_gate_block(p, t.glq, gbI, hq);

    /* prologue: the diagonal tile and Q^ */
    long tcdI = (gbI * p.H + h) * PATH_C * d;
    if (p.has_w) load_rows(t.Wt, lh, p.w + (long)h * d, kv_stride, t0, sq.eos, d);
    else for (int i = threadIdx.x; i < PATH_C * lh; i += blockDim.x) t.Wt[i] = __float2half(0.f);
    load_tile(t.Ut, lh, p.U + tcdI, PATH_C, d);
    load_rows(t.Kt, lh, p.k + (long)h * d, kv_stride, t0, sq.eos, d);
    load_rows(t.Vt, lh, p.v + (long)h * d, kv_stride, t0, sq.eos, d);
    load_tile(t.Bt, lc, p.Bm + (gbI * p.H + h) * PATH_C * PATH_C, PATH_C, PATH_C);
    cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.X, lw), mat(t.Wt, lh, true), t.T, lc);
    tril_tile(t.T, lc, true);
    cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.X, lw), mat(t.Kt, lh, true), t.S, lc);
    cta_gemm<PREC_F16, STORE_ADD>(PATH_C, PATH_C, PATH_C, -1.f, mat(t.T, lc), mat(t.Bt, lc), t.S, lc);
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) t.glk[r] = t.glq[r];
    attend(p, t, 0.f, true);
    cta_gemm<PREC_F16, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(t.T, lc), mat(t.Ut, lh), t.X, lw);

    /* fine pairs: earlier blocks of the same superblock, the query state carried block by block */
    for (int J = I - 1; J >= J0; J--) {
        long gbJ = sq.block_base + J, tcd = (gbJ * p.H + h) * PATH_C * d;
        int tJ = sq.bos + J * PATH_C;
        load_tile(t.Kt, lh, p.Khat + tcd, PATH_C, d);
        load_rows(t.Vt, lh, p.v + (long)h * d, kv_stride, tJ, sq.eos, d);
        if (p.has_w) load_rows(t.Wt, lh, p.w + (long)h * d, kv_stride, tJ, sq.eos, d);
        load_tile(t.Ut, lh, p.U + tcd, PATH_C, d);
        load_gate_block(p, t.glk, gbJ, hq);
        cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.X, lw), mat(t.Kt, lh, true), t.S, lc);
        attend(p, t, gate_offset(p, gbI, gbJ, hq), false);
        cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.X, lw), mat(t.Wt, lh, true), t.T, lc);
        cta_gemm<PREC_F16, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(t.T, lc), mat(t.Ut, lh), t.X, lw);
    }
    store_rows(p.qleft + (long)hq * d, q_stride, t0, sq.eos, t.X, lw, d);

    /* coarse pairs: whole earlier superblocks, through the map Pi[b, a] */
    for (int b = a - 1; b >= 0; b--) {
        const float *Pi = p.Pi + (pi_entry(sq.pi_base, b, a) * p.H + h) * d * d;
        cta_gemm<PREC_F16_SPLITB, STORE_SET>(PATH_C, d, d, 1.f, mat(t.X, lw), mat(Pi, d), t.Xb, lw);
        for (int J = b * p.s; J < b * p.s + p.s; J++) {
            long gbJ = sq.block_base + J, tcd = (gbJ * p.H + h) * PATH_C * d;
            load_tile(t.Kt, lh, p.Ktil + tcd, PATH_C, d);
            load_rows(t.Vt, lh, p.v + (long)h * d, kv_stride, sq.bos + J * PATH_C, sq.eos, d);
            load_gate_block(p, t.glk, gbJ, hq);
            cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(t.Xb, lw), mat(t.Kt, lh, true), t.S, lc);
            attend(p, t, gate_offset(p, gbI, gbJ, hq), false);
        }
    }

    /* epilogue */
    for (int i = threadIdx.x; i < PATH_C * d; i += blockDim.x) {
        int r = i / d, e = i % d;
        if (t0 + r < sq.eos) p.out[((long)(t0 + r) * p.Hq + hq) * d + e] = __float2bfloat16_rn(t.O[r * lw + e] / t.l[r]);
    }
    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x)
        if (t0 + r < sq.eos) p.lse_out[(long)(t0 + r) * p.Hq + hq] = t.m[r] + logf(t.l[r]);
}

void path_attn_fwd_launch(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    launch_smem(ctx, "attn_fwd_kernel", attn_fwd_kernel, dim3(n_blocks, p.Hq), fwd_smem_bytes(p.d), p);
}
