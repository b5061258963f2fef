/* path_attn_bwd_fine.cu: PaTH attention backward over fine pairs (earlier blocks of the query's
 * own superblock), kernel B2 of doc/PATH_ALGORITHM.md section 4. One CTA per (query block I,
 * query head), after B1 (it needs the complete dQleft_I):
 *   recompute  X_{I-1} = Q^_I = Q - tril(Q W_I^T) U_I;  X_{J-1} = X_J - (X_J W_J^T) U_J, J = I-1 .. J0
 *              (the states X_J, fp16, in global scratch)
 *   adjoint    Gd = dQleft_I; for J = J0 .. I-1:
 *                A1 = X_J W_J^T;  dU_J -= A1^T Gd;  dA1 = -Gd U_J^T;  dW_J += dA1^T X_J;  Gd += dA1 W_J
 *                Z = scale X_J Khat_J^T + gate;  P, dZ;  dV_J += P^T dO;  dKhat_J += scale dZ^T X_J
 *                dG_j -= gscale colsum dZ;  Gd += scale dZ Khat_J
 *              dQhat_I = Gd
 * The adds into dU, dW, dKhat, dV, dG of block J are fp32 atomics (the superblock's query blocks and
 * the group's query heads add to the same tiles). Gradient operands are bf16, never fp16.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "path_attn_internal.cuh"

static long bwd_fine_smem_bytes(int d) {
    return 2 * tile32_bytes(PATH_C, d) + 6 * tile16_bytes(PATH_C, d) + 2 * tile32_bytes(PATH_C, PATH_C) + 5 * PATH_C * 4;
}

/* X <- X - (X W^T) U for the block whose W, U tiles are loaded; tril keeps the diagonal block's
 * own causal part (Q^ from Q) */
static __device__ void move_queries(float *X, const __half *Wt, const __half *Ut, float *S, int d, bool tril) {
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(X, lw), mat(Wt, lh, true), S, lc);
    if (tril) tril_tile(S, lc, true);
    cta_gemm<PREC_F16, STORE_ADD>(PATH_C, d, PATH_C, -1.f, mat(S, lc), mat(Ut, lh), X, lw);
}

static __device__ void load_wu(const PathParams &p, const SeqGeo &sq, int J, int h, __half *Wt, __half *Ut) {
    int d = p.d;
    long tcd = ((long)(sq.block_base + J) * p.H + h) * PATH_C * d;
    if (p.has_w) load_rows(Wt, ld16(d), p.w + (long)h * d, (long)p.H * d, sq.bos + J * PATH_C, sq.eos, d);
    else for (int i = threadIdx.x; i < PATH_C * ld16(d); i += blockDim.x) Wt[i] = __float2half(0.f);
    load_tile(Ut, ld16(d), p.U + tcd, PATH_C, d);
}

static __global__ void bwd_fine_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y, J0 = I / p.s * p.s;
    int t0 = sq.bos + I * PATH_C;
    long gbI = sq.block_base + I, cd = (long)PATH_C * d;
    const long kv_stride = (long)p.H * d, q_stride = (long)p.Hq * d;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    const float *dQleft = p.dQleft + (gbI * p.Hq + hq) * cd;
    float *dQhat = p.dQhat + (gbI * p.Hq + hq) * cd;
    if (I == J0) { /* no fine pairs: Qleft_I = Q^_I */
        for (long i = threadIdx.x; i < cd; i += blockDim.x) dQhat[i] = dQleft[i];
        return;
    }
    SmemCarver sc{smem};
    float *X = sc.take<float>(PATH_C * lw), *Gd = sc.take<float>(PATH_C * lw);
    __half *Wt = sc.take<__half>(PATH_C * lh), *Ut = sc.take<__half>(PATH_C * lh), *Kh = sc.take<__half>(PATH_C * lh);
    __half *XJ = sc.take<__half>(PATH_C * lh);
    bf16 *Vt = sc.take<bf16>(PATH_C * lh), *dOt = sc.take<bf16>(PATH_C * lh);
    float *S = sc.take<float>(PATH_C * lc), *dP = sc.take<float>(PATH_C * lc);
    float *lse = sc.take<float>(PATH_C), *Dv = sc.take<float>(PATH_C), *glq = sc.take<float>(PATH_C);
    float *glk = sc.take<float>(PATH_C);
    __half *states = p.states + (gbI * p.Hq + hq) * (p.s - 1) * cd;

    /* recompute the query states of the fine chain */
    load_rows(X, lw, p.q + (long)hq * d, q_stride, t0, sq.eos, d);
    load_wu(p, sq, I, h, Wt, Ut);
    move_queries(X, Wt, Ut, S, d, true);
    for (int J = I - 1; J >= J0; J--) {
        __half *st = states + (long)(I - 1 - J) * cd;
        for (long i = threadIdx.x; i < cd; i += blockDim.x) st[i] = from_f32<__half>(X[(i / d) * lw + i % d]);
        load_wu(p, sq, J, h, Wt, Ut);
        move_queries(X, Wt, Ut, S, d, false);
    }

    /* adjoint, left to right */
    load_tile(Gd, lw, dQleft, PATH_C, d);
    load_rows(dOt, lh, p.dout + (long)hq * d, q_stride, t0, sq.eos, d);
    load_vec(lse, p.lse, p.Hq, hq, t0, sq.eos);
    load_vec(Dv, p.D, p.Hq, hq, t0, sq.eos);
    if (p.has_g)
        for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) glq[r] = p.Gl[(gbI * p.Hq + hq) * PATH_C + r];
    for (int J = J0; J < I; J++) {
        long gbJ = sq.block_base + J, tcd = (gbJ * p.H + h) * cd;
        __syncthreads();
        load_tile(XJ, lh, states + (long)(I - 1 - J) * cd, PATH_C, d);
        load_wu(p, sq, J, h, Wt, Ut);
        load_tile(Kh, lh, p.Khat16 + tcd, PATH_C, d);
        load_rows(Vt, lh, p.v + (long)h * d, kv_stride, sq.bos + J * PATH_C, sq.eos, d);
        if (p.has_g)
            for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) glk[r] = p.Gl[(gbJ * p.Hq + hq) * PATH_C + r];
        float goff = p.has_g ? (float)(p.Go[gbI * p.Hq + hq] - p.Go[gbJ * p.Hq + hq]) : 0.f;
        /* through the transition X_{J-1} = X_J - (X_J W_J^T) U_J */
        cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(XJ, lh), mat(Wt, lh, true), S, lc);
        cta_gemm<PREC_BF16, STORE_ATOMIC>(PATH_C, d, PATH_C, -1.f, mat(S, lc, true), mat(Gd, lw), p.dU + tcd, d);
        cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, d, -1.f, mat(Gd, lw), mat(Ut, lh, true), dP, lc);
        cta_gemm<PREC_BF16, STORE_ATOMIC>(PATH_C, d, PATH_C, 1.f, mat(dP, lc, true), mat(XJ, lh), p.dW + tcd, d);
        cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(dP, lc), mat(Wt, lh), Gd, lw);
        /* through the scores of key block J */
        cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(XJ, lh), mat(Kh, lh, true), S, lc);
        cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(dOt, lh), mat(Vt, lh, true), dP, lc);
        softmax_grad_tile(p, S, dP, lc, lse, Dv, glq, glk, goff, false, sq.eos - t0);
        cta_gemm<PREC_BF16, STORE_ATOMIC>(PATH_C, d, PATH_C, 1.f, mat(S, lc, true), mat(dOt, lh), p.dV + tcd, d);
        cta_gemm<PREC_BF16, STORE_ATOMIC>(PATH_C, d, PATH_C, p.scale, mat(dP, lc, true), mat(XJ, lh), p.dKhat + tcd, d);
        if (p.has_g) add_colsum(p.dG + (gbJ * p.Hq + hq) * PATH_C, dP, lc, p.gscale, true);
        cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, p.scale, mat(dP, lc), mat(Kh, lh), Gd, lw);
    }
    store_tile(dQhat, Gd, lw, PATH_C, d);
}

void path_bwd_fine(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    launch_smem(ctx, "bwd_fine_kernel", bwd_fine_kernel, dim3(n_blocks, p.Hq), bwd_fine_smem_bytes(p.d), p);
}
