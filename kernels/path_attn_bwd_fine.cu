/* path_attn_bwd_fine.cu: PaTH attention backward over fine pairs (earlier blocks of the query's
 * own superblock), kernel B2 of doc/PATH_ALGORITHM.md section 4. One CTA per (query block I,
 * query head), after B1 (it needs the complete dQleft_I):
 *   recompute  X_{I-1} = Q^_I = Q - tril(Q W_I^T) U_I;  X_{J-1} = X_J - (X_J W_J^T) U_J, J = I-1 .. J0
 *              (the states X_J, fp16, in global scratch)
 *   adjoint    Gd = dQleft_I; for J = J0 .. I-1:
 *                A1 = X_J W_J^T;  dU_J -= A1^T Gd;  dA1 = -Gd U_J^T;  dW_J += dA1^T X_J;  Gd += dA1 W_J
 *                Z = scale X_J Khat_J^T + gate;  P, dZ;  dV_J += P^T dO;  dKhat_J += scale dZ^T X_J
 *                dG_j -= gscale colsum dZ;  dG_i += gscale rowsum dZ;  Gd += scale dZ Khat_J
 *              dQhat_I = Gd
 * The adds into dU, dW, dKhat, dV, dG of block J are fp32 atomics (the superblock's query blocks and
 * the group's query heads add to the same tiles). Gradient operands are bf16, never fp16.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "mma_frag.cuh"
#include "path_attn_internal.cuh"

/* Each warp owns 16 query rows and keeps their state X (recompute) and adjoint Gd in registers; the
 * sums over query rows (dU, dW, dV, dKhat) go through shared memory as bf16 tiles and are split by
 * output rows between the warps, then added with fp32 atomics. Shared memory 224 KB at d = 128 (one
 * CTA per SM; registers spill ~1 KB there, still 5.8x faster than the CTA-product kernel it replaced). */

template <int D>
struct FineSmem {
    static constexpr int LD = D + 8, LDC = PATH_C + 8;
    __half X16[PATH_C * LD], W16[PATH_C * LD], U16[PATH_C * LD], K16[PATH_C * LD];
    bf16 Xb[PATH_C * LD], Wb[PATH_C * LD], Ub[PATH_C * LD], Kb[PATH_C * LD], V[PATH_C * LD], dO[PATH_C * LD];
    bf16 Gds[PATH_C * LD];
    bf16 A1s[PATH_C * LDC], dA1s[PATH_C * LDC], Ps[PATH_C * LDC], dZs[PATH_C * LDC]; /* [query][key] */
    float lse[PATH_C], Dv[PATH_C], glq[PATH_C], glk[PATH_C];
};

/* X <- X - (X W^T) U for the warp's rows (W16, U16 in shared memory); tril for the own block */
template <int D>
__device__ __forceinline__ void move_rows(float X[D / 8][4], const __half *W16, const __half *U16, int row0, bool tril) {
    constexpr int KSD = D / 16, NTD = D / 8;
    int t = threadIdx.x % 4;
    uint32_t xa[KSD][4];
    acc_to_a<KSD, false>(X, xa);
    float T[8][4];
    zero_acc<8>(T);
    mma_nk<KSD, 8, false>(T, xa, W16, D + 8);
    if (tril)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (8 * j + 2 * t + (e & 1) > row0 + 8 * (e >> 1)) T[j][e] = 0.f;
    uint32_t ta[4][4];
    acc_to_a<4, false>(T, ta, -1.f);
    mma_kn<4, NTD, false>(X, ta, U16, D + 8);
}

template <int D>
__global__ void __launch_bounds__(PATH_THREADS, 1) bwd_fine_mma_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8, LDC = PATH_C + 8;
    extern __shared__ __align__(16) char smem_raw[];
    FineSmem<D> &sm = *reinterpret_cast<FineSmem<D> *>(smem_raw);
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y, J0 = I / p.s * p.s;
    int t0 = sq.bos + I * PATH_C, nv = sq.eos - t0;
    long gbI = sq.block_base + I, cd = (long)PATH_C * D;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int row0 = 16 * warp + g;
    const float *dQleft = p.dQleft + (gbI * p.Hq + hq) * cd;
    float *dQhat = p.dQhat + (gbI * p.Hq + hq) * cd;
    if (I == J0) { /* no fine pairs: Qleft_I = Q^_I */
        for (long i = threadIdx.x; i < cd; i += blockDim.x) dQhat[i] = dQleft[i];
        return;
    }
    __half *states = p.states + (gbI * p.Hq + hq) * (p.s - 1) * cd;
    auto tile = [&](const __half *base, int J) { return base + ((long)(sq.block_base + J) * p.H + h) * cd; };

    /* recompute the query states X_J, J = I-1 .. J0, exactly as the forward did */
    float X[NTD][4];
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = row0 + 8 * h2;
            float2 x = make_float2(0.f, 0.f);
            if (r < nv) x = __bfloat1622float2(*(const __nv_bfloat162 *)(p.q + ((long)(t0 + r) * p.Hq + hq) * D + 8 * j + 2 * t));
            X[j][2 * h2] = x.x;
            X[j][2 * h2 + 1] = x.y;
        }
    for (int J = I; J >= J0; J--) {
        if (J < I) { /* X is now X_J: keep it */
#pragma unroll
            for (int j = 0; j < NTD; j++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++)
                    *(__half2 *)(states + (long)(I - 1 - J) * cd + (row0 + 8 * h2) * D + 8 * j + 2 * t) =
                        __floats2half2_rn(X[j][2 * h2], X[j][2 * h2 + 1]);
        }
        if (J == J0) break;
        __syncthreads();
        load_tile_async<PATH_C, D>(sm.W16, tile(p.W16, J), D, PATH_C);
        load_tile_async<PATH_C, D>(sm.U16, tile(p.U16, J), D, PATH_C);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        move_rows<D>(X, sm.W16, sm.U16, row0, J == I);
    }

    /* adjoint, left to right */
    float Gd[NTD][4];
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float2 x = *(const float2 *)(dQleft + (row0 + 8 * h2) * D + 8 * j + 2 * t);
            Gd[j][2 * h2] = x.x;
            Gd[j][2 * h2 + 1] = x.y;
        }
    load_tile_async<PATH_C, D>(sm.dO, p.dout + ((long)t0 * p.Hq + hq) * D, (long)p.Hq * D, nv);
    load_vec_async<PATH_C>(sm.lse, p.lse + (long)t0 * p.Hq + hq, p.Hq, nv); /* with the first key block's group */
    load_vec_async<PATH_C>(sm.Dv, p.D + (long)t0 * p.Hq + hq, p.Hq, nv);
    if (p.has_g) load_vec_async<PATH_C>(sm.glq, p.Gl + (gbI * p.Hq + hq) * PATH_C, 1, PATH_C);
    else
        for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) sm.glq[r] = 0.f;
    for (int J = J0; J < I; J++) {
        long gbJ = sq.block_base + J, tcd = (gbJ * p.H + h) * cd;
        __syncthreads();
        load_tile_async<PATH_C, D>(sm.X16, states + (long)(I - 1 - J) * cd, D, PATH_C);
        load_tile_async<PATH_C, D>(sm.W16, tile(p.W16, J), D, PATH_C);
        load_tile_async<PATH_C, D>(sm.U16, tile(p.U16, J), D, PATH_C);
        load_tile_async<PATH_C, D>(sm.K16, tile(p.Khat16, J), D, PATH_C);
        load_tile_async<PATH_C, D>(sm.V, p.v + (long)(sq.bos + J * PATH_C) * p.H * D + (long)h * D, (long)p.H * D, PATH_C);
        if (p.has_g) load_vec_async<PATH_C>(sm.glk, p.Gl + (gbJ * p.Hq + hq) * PATH_C, 1, PATH_C);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        to_bf16<D>(sm.Xb, sm.X16);
        to_bf16<D>(sm.Wb, sm.W16);
        to_bf16<D>(sm.Ub, sm.U16);
        to_bf16<D>(sm.Kb, sm.K16);
        __syncthreads();
        float goff = gate_offset(p, gbI, gbJ, hq);
        uint32_t xa[KSD][4], gda[KSD][4];
        load_a<KSD>(xa, sm.X16, LD, 16 * warp);
        /* through the transition X_{J-1} = X_J - (X_J W_J^T) U_J */
        float A1[8][4], dA1[8][4];
        zero_acc<8>(A1);
        mma_nk<KSD, 8, false>(A1, xa, sm.W16, LD);
        acc_to_a<KSD, true>(Gd, gda, -1.f);
        zero_acc<8>(dA1);
        mma_nk<KSD, 8, true>(dA1, gda, sm.Ub, LD);
        stage_acc<8>(sm.A1s, LDC, A1, row0);
        stage_acc<NTD>(sm.Gds, LD, Gd, row0);
        stage_acc<8>(sm.dA1s, LDC, dA1, row0);
        uint32_t da[4][4];
        acc_to_a<4, true>(dA1, da);
        mma_kn<4, NTD, true>(Gd, da, sm.Wb, LD);
        /* through the scores of key block J */
        uint32_t doa[KSD][4];
        load_a<KSD>(doa, sm.dO, LD, 16 * warp);
        float S[8][4], dP[8][4];
        zero_acc<8>(S);
        zero_acc<8>(dP);
        mma_nk<KSD, 8, false>(S, xa, sm.K16, LD);
        mma_nk<KSD, 8, true>(dP, doa, sm.V, LD);
        float *dG = p.dG + (long)hq * PATH_C;
        grad_tile_rows(p, S, dP, row0, nv, false, sm.lse, sm.Dv, sm.glq, sm.glk, goff, dG + gbI * p.Hq * PATH_C,
                       dG + gbJ * p.Hq * PATH_C);
        stage_acc<8>(sm.Ps, LDC, S, row0);
        stage_acc<8>(sm.dZs, LDC, dP, row0, p.scale);
        uint32_t dza[4][4];
        acc_to_a<4, true>(dP, dza, p.scale);
        mma_kn<4, NTD, true>(Gd, dza, sm.Kb, LD);
        __syncthreads();
        add_st_product<D, true>(p.dU + tcd, D, sm.A1s, sm.Gds, LD, -1.f);
        add_st_product<D, true>(p.dW + tcd, D, sm.dA1s, sm.Xb, LD, 1.f);
        add_st_product<D, true>(p.dV + tcd, D, sm.Ps, sm.dO, LD, 1.f);
        add_st_product<D, true>(p.dKhat + tcd, D, sm.dZs, sm.Xb, LD, 1.f);
    }
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++)
            *(float2 *)(dQhat + (row0 + 8 * h2) * D + 8 * j + 2 * t) = make_float2(Gd[j][2 * h2], Gd[j][2 * h2 + 1]);
}

void path_bwd_fine(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    with_head_dim(p.d, [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        launch_smem(ctx, "bwd_fine_mma_kernel", bwd_fine_mma_kernel<D>, dim3(n_blocks, p.Hq), (long)sizeof(FineSmem<D>), p);
    });
}
