/* path_attn_bwd_coarse.cu: PaTH attention backward over coarse pairs (key block J and query
 * blocks of later superblocks), kernel B1 of doc/PATH_ALGORITHM.md section 4. Key-major: one CTA
 * per (key block J in superblock b, kv head), looping over the group's query heads:
 *   for a = b+1 .. M-1:   Ka = Ktil_J Pi[b, a]^T            (keys moved up to frame a)
 *     for query blocks I of superblock a:
 *       Z = scale Qleft_I Ka^T + gate;  P = min(exp(Z - lse), 1);  dZ = P (dO_I V_J^T - D_I)
 *       dV_J += P^T dO_I;  dKa += scale dZ^T Qleft_I;  dG_j -= gscale colsum dZ
 *       dQleft_I += scale dZ Ka                               (fp32 atomics: other key blocks add too)
 *     dKtil_J += dKa Pi[b, a];   dPi[b, a] += dKa^T Ktil_J    (atomics: the superblock's blocks add)
 * Accumulators dV, dKtil, dG of block J are owned by the CTA (zeroed before the backward).
 * Operands: fp16 for Qleft Ka^T, bf16 for every gradient product; Pi products 3-pass.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "path_attn_internal.cuh"

static long bwd_coarse_smem_bytes(int d) {
    return 3 * tile32_bytes(PATH_C, d) + 3 * tile16_bytes(PATH_C, d) + 2 * tile32_bytes(PATH_C, PATH_C) + 4 * PATH_C * 4;
}

static __global__ void bwd_coarse_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, h = blockIdx.y, grp = p.Hq / p.H, J = item.y, b = J / p.s;
    if (b + 1 >= sq.M) return; /* the last superblock has no coarse pairs */
    long gbJ = sq.block_base + J, tcdJ = (gbJ * p.H + h) * PATH_C * d;
    const long kv_stride = (long)p.H * d, q_stride = (long)p.Hq * d;
    const int lw = ld32(d), lc = ld32(PATH_C), lh = ld16(d);
    SmemCarver sc{smem};
    float *Kt = sc.take<float>(PATH_C * lw), *Ka = sc.take<float>(PATH_C * lw), *dKa = sc.take<float>(PATH_C * lw);
    bf16 *Vt = sc.take<bf16>(PATH_C * lh), *dOt = sc.take<bf16>(PATH_C * lh);
    __half *Ql = sc.take<__half>(PATH_C * lh);
    float *S = sc.take<float>(PATH_C * lc), *dP = sc.take<float>(PATH_C * lc);
    float *lse = sc.take<float>(PATH_C), *Dv = sc.take<float>(PATH_C), *glq = sc.take<float>(PATH_C);
    float *glk = sc.take<float>(PATH_C);

    load_tile(Kt, lw, p.Ktil16 + tcdJ, PATH_C, d);
    load_rows(Vt, lh, p.v + (long)h * d, kv_stride, sq.bos + J * PATH_C, sq.eos, d);
    for (int a = b + 1; a < sq.M; a++) {
        const float *Pi = p.Pi + (pi_entry(sq.pi_base, b, a) * p.H + h) * d * d;
        cta_gemm<PREC_F16_SPLITB, STORE_SET>(PATH_C, d, d, 1.f, mat(Kt, lw), mat(Pi, d, true), Ka, lw);
        for (int i = threadIdx.x; i < PATH_C * lw; i += blockDim.x) dKa[i] = 0.f;
        for (int hq = h * grp; hq < (h + 1) * grp; hq++) {
            if (p.has_g)
                for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) glk[r] = p.Gl[(gbJ * p.Hq + hq) * PATH_C + r];
            for (int I = a * p.s; I < min(a * p.s + p.s, sq.nblk); I++) {
                long gbI = sq.block_base + I;
                int t0 = sq.bos + I * PATH_C;
                load_rows(Ql, lh, p.qleft + (long)hq * d, q_stride, t0, sq.eos, d);
                load_rows(dOt, lh, p.dout + (long)hq * d, q_stride, t0, sq.eos, d);
                load_vec(lse, p.lse, p.Hq, hq, t0, sq.eos);
                load_vec(Dv, p.D, p.Hq, hq, t0, sq.eos);
                if (p.has_g)
                    for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) glq[r] = p.Gl[(gbI * p.Hq + hq) * PATH_C + r];
                float goff = p.has_g ? (float)(p.Go[gbI * p.Hq + hq] - p.Go[gbJ * p.Hq + hq]) : 0.f;
                cta_gemm<PREC_F16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(Ql, lh), mat(Ka, lw, true), S, lc);
                cta_gemm<PREC_BF16, STORE_SET>(PATH_C, PATH_C, d, 1.f, mat(dOt, lh), mat(Vt, lh, true), dP, lc);
                softmax_grad_tile(p, S, dP, lc, lse, Dv, glq, glk, goff, false, sq.eos - t0);
                cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, 1.f, mat(S, lc, true), mat(dOt, lh), p.dV + tcdJ, d);
                cta_gemm<PREC_BF16, STORE_ADD>(PATH_C, d, PATH_C, p.scale, mat(dP, lc, true), mat(Ql, lh), dKa, lw);
                cta_gemm<PREC_BF16, STORE_ATOMIC>(PATH_C, d, PATH_C, p.scale, mat(dP, lc), mat(Ka, lw),
                                                  p.dQleft + (gbI * p.Hq + hq) * PATH_C * d, d);
                if (p.has_g) add_colsum(p.dG + (gbJ * p.Hq + hq) * PATH_C, dP, lc, p.gscale, false);
            }
        }
        cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, d, 1.f, mat(dKa, lw), mat(Pi, d), p.dKtil + tcdJ, d);
        cta_gemm<PREC_BF16X3, STORE_ATOMIC>(d, d, PATH_C, 1.f, mat(dKa, lw, true), mat(Kt, lw),
                                            p.dPi + (pi_entry(sq.pi_base, b, a) * p.H + h) * d * d, d);
    }
}

void path_bwd_coarse(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    launch_smem(ctx, "bwd_coarse_kernel", bwd_coarse_kernel, dim3(n_blocks, p.H), bwd_coarse_smem_bytes(p.d), p);
}
