/* path_attn_bwd_superblock.cu: the backward of the d x d maps, kernels B3 and B4 of
 * doc/PATH_ALGORITHM.md section 4 (the reverse of F3 and F2).
 *   B3  per row b: for a = M-1 down to b+2, with Pi[b, a] = Pm_{a-1} Pi[b, a-1]:
 *         dPm_{a-1} += dPi[b, a] Pi[b, a-1]^T        (fp32 atomics: every row b adds)
 *         dPi[b, a-1] += Pm_{a-1}^T dPi[b, a]
 *   B4  per superblock m, blocks left to right with dR = dPm_m^T (R_{J-1} = P_J^T R_J, Ktil_J = Khat_J R_J):
 *         dP_J = R_J dR^T;  dU_J -= W_J dP_J;  dW_J -= U_J dP_J^T;  dKhat_J += dKtil_J R_J^T
 *         dR <- dR - W_J^T (U_J dR) + Khat_J^T dKtil_J
 * All products 3-pass (PREC_BF16X3): these chains would otherwise compound rounding.
 * R_J come from F2 run in the backward with store_backward_factors set.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "path_attn_internal.cuh"

static __global__ void bwd_coarse_maps_kernel(PathParams p) {
    int2 item = p.sblocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, h = blockIdx.y, b = item.y;
    long dd = (long)d * d;
    for (int a = sq.M - 1; a >= b + 2; a--) {
        const float *dPi_a = p.dPi + (pi_entry(sq.pi_base, b, a) * p.H + h) * dd;
        const float *Pi_prev = p.Pi + (pi_entry(sq.pi_base, b, a - 1) * p.H + h) * dd;
        const float *Pm = p.Pm + ((long)(sq.sb_base + a - 1) * p.H + h) * dd;
        cta_gemm<PREC_BF16X3, STORE_ATOMIC>(d, d, d, 1.f, mat(dPi_a, d), mat(Pi_prev, d, true),
                                            p.dPm + ((long)(sq.sb_base + a - 1) * p.H + h) * dd, d);
        cta_gemm<PREC_BF16X3, STORE_ADD>(d, d, d, 1.f, mat(Pm, d, true), mat(dPi_a, d),
                                         p.dPi + (pi_entry(sq.pi_base, b, a - 1) * p.H + h) * dd, d);
    }
}

void path_bwd_coarse_maps(const GpuCtx *ctx, const PathParams &p, int n_sblocks) {
    launch_smem(ctx, "bwd_coarse_maps_kernel", bwd_coarse_maps_kernel, dim3(n_sblocks, p.H), 0, p);
}

static __global__ void bwd_superblock_kernel(PathParams p) {
    extern __shared__ __align__(16) char smem[];
    int2 item = p.sblocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int d = p.d, h = blockIdx.y, m = item.y;
    long dd = (long)d * d, cd = (long)PATH_C * d;
    const int lw = ld32(d);
    SmemCarver sc{smem};
    float *dR = sc.take<float>((long)d * lw), *dP = sc.take<float>((long)d * lw);
    float *W = sc.take<float>(PATH_C * lw), *T = sc.take<float>(PATH_C * lw);
    const float *dPm = p.dPm + ((long)(sq.sb_base + m) * p.H + h) * dd;
    for (int i = threadIdx.x; i < d * d; i += blockDim.x) dR[(i / d) * lw + i % d] = dPm[(i % d) * d + i / d];
    for (int J = m * p.s; J < min(m * p.s + p.s, sq.nblk); J++) {
        long gb = sq.block_base + J, tcd = (gb * p.H + h) * cd;
        const float *R = p.R + (gb * p.H + h) * dd, *U = p.U + tcd, *dKt = p.dKtil + tcd;
        const __half *Kh = p.Khat16 + tcd;
        if (p.has_w) load_rows(W, lw, p.w + (long)h * d, (long)p.H * d, sq.bos + J * PATH_C, sq.eos, d);
        else for (int i = threadIdx.x; i < PATH_C * lw; i += blockDim.x) W[i] = 0.f;
        cta_gemm<PREC_BF16X3, STORE_SET>(d, d, d, 1.f, mat(R, d), mat(dR, lw, true), dP, lw);
        cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, d, -1.f, mat(W, lw), mat(dP, lw), p.dU + tcd, d);
        cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, d, -1.f, mat(U, d), mat(dP, lw, true), p.dW + tcd, d);
        cta_gemm<PREC_BF16X3, STORE_ADD>(PATH_C, d, d, 1.f, mat(dKt, d), mat(R, d, true), p.dKhat + tcd, d);
        cta_gemm<PREC_BF16X3, STORE_SET>(PATH_C, d, d, 1.f, mat(U, d), mat(dR, lw), T, lw);
        cta_gemm<PREC_BF16X3, STORE_ADD>(d, d, PATH_C, -1.f, mat(W, lw, true), mat(T, lw), dR, lw);
        cta_gemm<PREC_BF16X3, STORE_ADD>(d, d, PATH_C, 1.f, mat(Kh, d, true), mat(dKt, d), dR, lw);
    }
}

void path_bwd_superblock(const GpuCtx *ctx, const PathParams &p, int n_sblocks) {
    long smem = 2 * tile32_bytes(p.d, p.d) + 2 * tile32_bytes(PATH_C, p.d);
    launch_smem(ctx, "bwd_superblock_kernel", bwd_superblock_kernel, dim3(n_sblocks, p.H), smem, p);
}
