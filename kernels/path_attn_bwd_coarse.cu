/* path_attn_bwd_coarse.cu: PaTH attention backward over coarse pairs (key block J and query
 * blocks of later superblocks), kernel B1 of doc/PATH_ALGORITHM.md section 4. Key-major: one CTA
 * per (key block J in superblock b, kv head), looping over the group's query heads:
 *   for a = b+1 .. M-1:   Ka = Ktil_J Pi[b, a]^T            (keys moved up to frame a)
 *     for query blocks I of superblock a:
 *       Z = scale Qleft_I Ka^T + gate;  P = min(exp(Z - lse), 1);  dZ = P (dO_I V_J^T - D_I)
 *       dV_J += P^T dO_I;  dKa += scale dZ^T Qleft_I;  dG_j -= gscale colsum dZ;  dG_i += gscale rowsum dZ
 *       dQleft_I += scale dZ Ka                               (fp32 atomics: other key blocks add too)
 *     dKtil_J += dKa Pi[b, a];   dPi[b, a] += dKa^T Ktil_J    (atomics: the superblock's blocks add)
 * Accumulators dV, dKtil of block J are owned by the CTA (zeroed before the backward); dG takes
 * atomics: a block of a middle superblock is a key block here and a query block of other CTAs.
 * Operands: fp16 for Qleft Ka^T, bf16 for every gradient product; Pi products 3-pass.
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "mma_frag.cuh"
#include "path_attn_internal.cuh"

/* FlashAttention-2's backward layout. Each warp owns 16 keys of block J and keeps in
 * registers their dV, their dKa (per a) and the key-major score tiles S^T, dP^T of one query block;
 * dS^T goes through shared memory once for dQleft += dS Ka (split by query rows, fp32 atomics).
 * Per query tile: S^T = Ka Qleft^T (fp16), dP^T = V dO^T, dV += P^T.. dO, dKa += scale dZ^T Qleft
 * (bf16, Qleft converted once per tile), dQleft += scale dZ Ka. Per (J, a): Ka = Ktil Pi^T
 * (Pi as fp16 hi + lo), dKtil += dKa Pi and dPi += dKa^T Ktil (Pi and Ktil as bf16 hi + lo). */

template <int D>
struct CoarseSmem { /* ~100 KB at d = 64: two CTAs per SM; 219 KB at d = 128: one */
    static constexpr int LD = D + 8, LDC = PATH_C + 8;
    __half Kt[PATH_C * LD];                 /* Ktil_J, fp16 */
    bf16 V[PATH_C * LD];
    bf16 Kab[PATH_C * LD];                  /* Ka bf16; at the end of each a, dKa */
    __half Pih[D * LD], Pil[D * LD];        /* Pi hi + lo: fp16 for Ka, then bf16 for dKtil */
    __half Ql[2][PATH_C * LD];              /* at the end of each a: Ktil_J as bf16 hi + lo (exact) */
    bf16 Qlb[PATH_C * LD], dO[2][PATH_C * LD];
    bf16 dST[PATH_C * LDC];                 /* scale dZ^T: keys x queries */
    float lse[2][PATH_C], Dv[2][PATH_C], glq[2][PATH_C], glk[2][PATH_C]; /* glk: block J's gate sums, head hq */
};

/* Pi[b, a] (fp32, global) -> hi + lo tiles of type T */
template <typename T, int D>
__device__ __forceinline__ void load_pi_split(T *hi, T *lo, const float *Pi) {
    for (int i = threadIdx.x; i < D * D; i += blockDim.x) {
        float x = Pi[i];
        T h = from_f32<T>(x);
        hi[(i / D) * (D + 8) + i % D] = h;
        lo[(i / D) * (D + 8) + i % D] = from_f32<T>(x - to_f32(h));
    }
}

template <int D>
__global__ void __launch_bounds__(PATH_THREADS, D == 128 ? 1 : 2) bwd_coarse_mma_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8, LDC = PATH_C + 8;
    extern __shared__ __align__(16) char smem_raw[];
    CoarseSmem<D> &sm = *reinterpret_cast<CoarseSmem<D> *>(smem_raw);
    int2 item = p.keyblocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int h = blockIdx.y, grp = p.Hq / p.H, J = item.y, b = J / p.s;
    if (b + 1 >= sq.M) return; /* the last superblock has no coarse pairs */
    long gbJ = sq.block_base + J, tcdJ = (gbJ * p.H + h) * PATH_C * D;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int kr0 = 16 * warp + g; /* this thread's keys: kr0, kr0 + 8 */
    const float sl = p.scale * LOG2E_F, gl = p.gscale * LOG2E_F;

    load_tile_async<PATH_C, D>(sm.Kt, p.Ktil16 + tcdJ, D, PATH_C);
    load_tile_async<PATH_C, D>(sm.V, p.v + (long)(sq.bos + J * PATH_C) * p.H * D + (long)h * D, (long)p.H * D, PATH_C);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float dV[NTD][4]; /* V's and Ktil's A fragments are read from shared memory at each use (registers) */
    zero_acc<NTD>(dV);

    for (int a = b + 1; a < sq.M; a++) {
        const float *Pi = p.Pi + (pi_entry(sq.pi_base, b, a) * p.H + h) * D * D;
        __syncthreads();
        load_pi_split<__half, D>(sm.Pih, sm.Pil, Pi);
        __syncthreads();
        /* Ka = Ktil Pi^T, this warp's 16 keys */
        float Ka[NTD][4];
        zero_acc<NTD>(Ka);
        uint32_t kta[KSD][4];
        load_a<KSD>(kta, sm.Kt, LD, 16 * warp);
        mma_nk<KSD, NTD, false>(Ka, kta, sm.Pih, LD);
        mma_nk<KSD, NTD, false>(Ka, kta, sm.Pil, LD);
        uint32_t kaa[KSD][4];
        acc_to_a<KSD, false>(Ka, kaa);
#pragma unroll
        for (int j = 0; j < NTD; j++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                int r = kr0 + 8 * h2, c = 8 * j + 2 * t;
                *(__nv_bfloat162 *)&sm.Kab[r * LD + c] = __floats2bfloat162_rn(Ka[j][2 * h2], Ka[j][2 * h2 + 1]);
            }
        float dKa[NTD][4];
        zero_acc<NTD>(dKa);
        int I0 = a * p.s, I1 = min(I0 + p.s, sq.nblk);
        int n_tiles = grp * (I1 - I0);
        auto load_q = [&](int tile, int k) {
            int hq = h * grp + tile / (I1 - I0), I = I0 + tile % (I1 - I0);
            int t0 = sq.bos + I * PATH_C, nv = sq.eos - t0;
            long gbI = sq.block_base + I;
            load_tile_async<PATH_C, D>(sm.Ql[k], p.qleft + ((long)t0 * p.Hq + hq) * D, (long)p.Hq * D, nv);
            load_tile_async<PATH_C, D>(sm.dO[k], p.dout + ((long)t0 * p.Hq + hq) * D, (long)p.Hq * D, nv);
            load_vec_async<PATH_C>(sm.lse[k], p.lse + (long)t0 * p.Hq + hq, p.Hq, nv);
            load_vec_async<PATH_C>(sm.Dv[k], p.D + (long)t0 * p.Hq + hq, p.Hq, nv);
            if (p.has_g) {
                load_vec_async<PATH_C>(sm.glq[k], p.Gl + (gbI * p.Hq + hq) * PATH_C, 1, PATH_C);
                load_vec_async<PATH_C>(sm.glk[k], p.Gl + (gbJ * p.Hq + hq) * PATH_C, 1, PATH_C);
            }
            cp_async_commit();
        };
        load_q(0, 0);
        for (int tile = 0; tile < n_tiles; tile++) {
            int k = tile & 1;
            int hq = h * grp + tile / (I1 - I0), I = I0 + tile % (I1 - I0);
            int t0 = sq.bos + I * PATH_C, nv = sq.eos - t0;
            long gbI = sq.block_base + I;
            if (tile + 1 < n_tiles) {
                load_q(tile + 1, k ^ 1);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            for (int i = threadIdx.x; i < PATH_C * D; i += blockDim.x)
                sm.Qlb[(i / D) * LD + i % D] = __float2bfloat16_rn(__half2float(sm.Ql[k][(i / D) * LD + i % D]));
            float gk[2] = {0.f, 0.f}, goff = gate_offset(p, gbI, gbJ, hq);
            if (p.has_g)
                for (int h2 = 0; h2 < 2; h2++) gk[h2] = sm.glk[k][kr0 + 8 * h2];
            __syncthreads();
            /* S^T = Ka Qleft^T, dP^T = V dO^T: keys x queries */
            float ST[8][4], dPT[8][4];
            zero_acc<8>(ST);
            zero_acc<8>(dPT);
            mma_nk<KSD, 8, false>(ST, kaa, sm.Ql[k], LD);
            uint32_t va[KSD][4];
            load_a<KSD>(va, sm.V, LD, 16 * warp);
            mma_nk<KSD, 8, true>(dPT, va, sm.dO[k], LD);
            float dgk[2] = {0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int qc = 8 * j + 2 * t + (e & 1), h2 = e >> 1;
                    float pr = 0.f;
                    if (qc < nv) {
                        float z = sl * ST[j][e];
                        if (p.has_g) z += gl * (sm.glq[k][qc] - gk[h2] + goff);
                        pr = fminf(exp2f(z - sm.lse[k][qc] * LOG2E_F), 1.f);
                    }
                    float dz = pr * (dPT[j][e] - sm.Dv[k][qc]);
                    ST[j][e] = pr;
                    dPT[j][e] = dz;
                    dgk[h2] += dz;
                }
            if (p.has_g) {
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) { /* key side: sum over the queries */
                    dgk[h2] += __shfl_xor_sync(0xffffffffu, dgk[h2], 1);
                    dgk[h2] += __shfl_xor_sync(0xffffffffu, dgk[h2], 2);
                    if (t == 0) atomicAdd(p.dG + (gbJ * p.Hq + hq) * PATH_C + kr0 + 8 * h2, -p.gscale * dgk[h2]);
                }
                /* query side (see add_rowsum): over this warp's keys */
                add_tile_col_sums(p.dG + (gbI * p.Hq + hq) * PATH_C, dPT, p.gscale);
            }
            uint32_t pa[4][4], dza[4][4];
            acc_to_a<4, true>(ST, pa);
            acc_to_a<4, true>(dPT, dza, p.scale);
            mma_kn<4, NTD, true>(dV, pa, sm.dO[k], LD);
            mma_kn<4, NTD, true>(dKa, dza, sm.Qlb, LD);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++)
                    *(__nv_bfloat162 *)&sm.dST[(kr0 + 8 * h2) * LDC + 8 * j + 2 * t] =
                        __floats2bfloat162_rn(p.scale * dPT[j][2 * h2], p.scale * dPT[j][2 * h2 + 1]);
            __syncthreads();
            /* dQleft (this warp's 16 queries) += dS Ka */
            uint32_t dsa[4][4];
            load_a_t<4>(dsa, sm.dST, LDC, 16 * warp);
            float dQ[NTD][4];
            zero_acc<NTD>(dQ);
            mma_kn<4, NTD, true>(dQ, dsa, sm.Kab, LD);
            float *dq = p.dQleft + (gbI * p.Hq + hq) * PATH_C * D;
#pragma unroll
            for (int j = 0; j < NTD; j++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    int r = 16 * warp + g + 8 * h2;
                    if (r < nv) {
                        atomicAdd(dq + r * D + 8 * j + 2 * t, dQ[j][2 * h2]);
                        atomicAdd(dq + r * D + 8 * j + 2 * t + 1, dQ[j][2 * h2 + 1]);
                    }
                }
            __syncthreads(); /* buffers of this tile are reused two tiles on */
        }
        /* dKtil_J += dKa Pi (Pi bf16 hi + lo); dPi[b, a] += dKa^T Ktil */
        load_pi_split<bf16, D>((bf16 *)sm.Pih, (bf16 *)sm.Pil, Pi);
        bf16 *dKa_s = sm.Kab, *Kth = (bf16 *)sm.Ql[0], *Ktl = (bf16 *)sm.Ql[1];
        for (int i = threadIdx.x; i < PATH_C * D; i += blockDim.x) {
            int o = (i / D) * LD + i % D;
            float x = __half2float(sm.Kt[o]);
            bf16 hi = __float2bfloat16_rn(x);
            Kth[o] = hi;
            Ktl[o] = __float2bfloat16_rn(x - __bfloat162float(hi));
        }
#pragma unroll
        for (int j = 0; j < NTD; j++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++)
                *(__nv_bfloat162 *)&dKa_s[(kr0 + 8 * h2) * LD + 8 * j + 2 * t] =
                    __floats2bfloat162_rn(dKa[j][2 * h2], dKa[j][2 * h2 + 1]);
        __syncthreads();
        uint32_t dkaa[KSD][4];
        acc_to_a<KSD, true>(dKa, dkaa);
        float dKt[NTD][4];
        zero_acc<NTD>(dKt);
        mma_kn<KSD, NTD, true>(dKt, dkaa, sm.Pih, LD);
        mma_kn<KSD, NTD, true>(dKt, dkaa, sm.Pil, LD);
        float *dkt = p.dKtil + tcdJ;
#pragma unroll
        for (int j = 0; j < NTD; j++)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                int r = kr0 + 8 * h2, c = 8 * j + 2 * t;
                dkt[r * D + c] += dKt[j][2 * h2];
                dkt[r * D + c + 1] += dKt[j][2 * h2 + 1];
            }
        float *dpi = p.dPi + (pi_entry(sq.pi_base, b, a) * p.H + h) * D * D;
        for (int m0 = 16 * warp; m0 < D; m0 += 16 * (PATH_THREADS / 32)) {
            uint32_t at[4][4];
            load_a_t<4>(at, dKa_s, LD, m0);
            float dP[NTD][4];
            zero_acc<NTD>(dP);
            mma_kn<4, NTD, true>(dP, at, Kth, LD);
            mma_kn<4, NTD, true>(dP, at, Ktl, LD);
#pragma unroll
            for (int j = 0; j < NTD; j++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    int r = m0 + g + 8 * h2, c = 8 * j + 2 * t;
                    atomicAdd(dpi + r * D + c, dP[j][2 * h2]);
                    atomicAdd(dpi + r * D + c + 1, dP[j][2 * h2 + 1]);
                }
        }
    }
    float *dv = p.dV + tcdJ;
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = kr0 + 8 * h2, c = 8 * j + 2 * t;
            dv[r * D + c] += dV[j][2 * h2];
            dv[r * D + c + 1] += dV[j][2 * h2 + 1];
        }
}

void path_bwd_coarse(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    with_head_dim(p.d, [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        launch_smem(ctx, "bwd_coarse_mma_kernel", bwd_coarse_mma_kernel<D>, dim3(n_blocks, p.H), (long)sizeof(CoarseSmem<D>),
                    p);
    });
}
