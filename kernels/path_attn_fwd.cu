/* path_attn_fwd.cu: PaTH attention forward, kernel F4 of doc/PATH_ALGORITHM.md section 3.
 *   s_ij = q_i^T H_i .. H_{j+1} k_j,  z_ij = scale s_ij + gscale (G_i - G_j),
 *   o_i = sum_j softmax_j(z_i.) v_j,  lse_i = log sum_j exp z_ij
 * One CTA per (query block I, query head); each of its 4 warps owns 16 query rows and keeps, in
 * registers, the query state X (fp32), the output accumulator and the softmax statistics
 * (FlashAttention-2): rows never interact, so no barrier guards anything but the shared tiles.
 *   prologue  QW = tril(Q W_I^T); S = Q K_I^T - QW Bm_I (causal); X = Q - QW U_I   (= Q^)
 *   fine      J = I-1 .. J0 (same superblock): S = X Khat_J^T; X <- X - (X W_J^T) U_J
 *   store     Qleft_I = X (fp16, saved for the backward)
 *   coarse    b = a-1 .. 0: Xb = Qleft_I Pi[b, a] (Pi as fp16 hi + lo); S = Xb Ktil_J^T, J in b
 *   epilogue  o = acc / l, lse = m + log l
 * in : q (N,Hq,d) bf16, v (N,H,d) bf16, raw k for the diagonal tile, and from F1-F3 (block layout,
 *      16-bit): W16, U16, Bm16, Khat16, Ktil16; Pi (f32); the gate blocks Gl, Go
 * out: o (N,Hq,d) bf16, lse (N,Hq) f32, qleft (N,Hq,d) f16
 * Operands: Q K^T in bf16 (q, k are bf16: exact); X, W, U, Bm, Khat, Ktil in fp16; P V in bf16.
 * Tiles arrive by cp.async, the next key block's while the current one is used. Shared memory at
 * d = 128: two K/V/W/U buffer sets (140 KB), Bm, Pi hi/lo (70 KB).
 * Checked by tests/test_path_attn_gpu.cu against model/attn_ref.c. */
#include "mma_frag.cuh"
#include "path_attn_internal.cuh"

template <int D>
struct FwdSmem {
    static constexpr int LD = D + 8, LDC = PATH_C + 8;
    __half K[2][PATH_C * LD], V[2][PATH_C * LD], W[2][PATH_C * LD], U[2][PATH_C * LD];
    __half Bm[PATH_C * LDC];
    __half Pih[D * LD], Pil[D * LD];
    float glk[2][PATH_C];
};

/* loads of one key block into buffer set k: K (from kp, token or block layout), V, and when w/u
 * are given W16, U16; the gate column sums of the block */
template <int D>
__device__ __forceinline__ void load_keys(FwdSmem<D> &sm, int k, const PathParams &p, const void *kp, long kstride,
                                          int kvalid, const bf16 *vp, int vvalid, const __half *w16,
                                          const __half *u16, long gb, int hq) {
    load_tile_async<PATH_C, D>(sm.K[k], kp, kstride, kvalid);
    load_tile_async<PATH_C, D>(sm.V[k], vp, (long)p.H * D, vvalid);
    if (w16) load_tile_async<PATH_C, D>(sm.W[k], w16, D, PATH_C);
    if (u16) load_tile_async<PATH_C, D>(sm.U[k], u16, D, PATH_C);
    if (p.has_g) load_vec_async<PATH_C>(sm.glk[k], p.Gl + (gb * p.Hq + hq) * PATH_C, 1, PATH_C);
    cp_async_commit();
}

template <int D>
__global__ void __launch_bounds__(PATH_THREADS, 1) attn_fwd_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8;
    extern __shared__ __align__(16) char smem_raw[];
    FwdSmem<D> &sm = *reinterpret_cast<FwdSmem<D> *>(smem_raw);
    int2 item = p.blocks[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y, a = I / p.s, J0 = a * p.s;
    int t0 = sq.bos + I * PATH_C, n_tok_left = p.n_tokens - t0;
    long gbI = sq.block_base + I;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int row0 = 16 * warp + g; /* this thread's rows: row0, row0 + 8 */
    const long cd = (long)PATH_C * D;
    auto kvtile = [&](const void *base, long gb) { return (const __half *)base + (gb * p.H + h) * cd; };

    /* prologue tiles: raw K and V of block I, W16, U16, Bm16 */
    load_keys<D>(sm, 0, p, p.k + (long)t0 * p.H * D + (long)h * D, (long)p.H * D, n_tok_left,
                 p.v + (long)t0 * p.H * D + (long)h * D, n_tok_left, kvtile(p.W16, gbI), kvtile(p.U16, gbI), gbI, hq);
    load_tile_async<PATH_C, PATH_C>(sm.Bm, p.Bm16 + (gbI * p.H + h) * PATH_C * PATH_C, PATH_C, PATH_C);
    cp_async_commit();

    float X[NTD][4], O[NTD][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, gq[2] = {0.f, 0.f};
    zero_acc<NTD>(O);
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = row0 + 8 * h2;
            float2 x = make_float2(0.f, 0.f);
            if (t0 + r < sq.eos)
                x = __bfloat1622float2(*(const __nv_bfloat162 *)(p.q + ((long)(t0 + r) * p.Hq + hq) * D + 8 * j + 2 * t));
            X[j][2 * h2] = x.x;
            X[j][2 * h2 + 1] = x.y;
        }
    if (p.has_g)
        for (int h2 = 0; h2 < 2; h2++) gq[h2] = p.Gl[(gbI * p.Hq + hq) * PATH_C + row0 + 8 * h2];
    cp_async_wait<0>();
    __syncthreads();

    /* prologue: diagonal tile and Q^ */
    {
        uint32_t xa[KSD][4], qa[KSD][4];
        acc_to_a<KSD, false>(X, xa);
        acc_to_a<KSD, true>(X, qa);
        float QW[8][4], S[8][4];
        zero_acc<8>(QW);
        mma_nk<KSD, 8, false>(QW, xa, sm.W[0], LD);
#pragma unroll
        for (int j = 0; j < 8; j++) /* tril, diagonal included */
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (8 * j + 2 * t + (e & 1) > row0 + 8 * (e >> 1)) QW[j][e] = 0.f;
        uint32_t qwa[4][4];
        acc_to_a<4, false>(QW, qwa, -1.f);
        zero_acc<8>(S);
        mma_nk<KSD, 8, true>(S, qa, sm.K[0], LD);
        mma_kn<4, 8, false>(S, qwa, sm.Bm, PATH_C + 8);
        softmax_update<NTD>(p, S, O, m, l, gq, sm.glk[0], 0.f, row0, true);
        add_pv<D>(S, O, sm.V[0]);
        mma_kn<4, NTD, false>(X, qwa, sm.U[0], LD);
    }

    /* fine pairs: J = I-1 .. J0, the query state carried block by block */
    int buf = 0;
    auto load_fine = [&](int J, int k) {
        long gbJ = sq.block_base + J;
        load_keys<D>(sm, k, p, kvtile(p.Khat16, gbJ), D, PATH_C, p.v + (long)(sq.bos + J * PATH_C) * p.H * D + (long)h * D,
                     PATH_C, kvtile(p.W16, gbJ), kvtile(p.U16, gbJ), gbJ, hq);
    };
    __syncthreads();
    if (I - 1 >= J0) load_fine(I - 1, 0);
    for (int J = I - 1; J >= J0; J--) {
        if (J - 1 >= J0) {
            load_fine(J - 1, buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        long gbJ = sq.block_base + J;
        float goff = gate_offset(p, gbI, gbJ, hq);
        uint32_t xa[KSD][4];
        acc_to_a<KSD, false>(X, xa);
        float S[8][4], T[8][4];
        zero_acc<8>(S);
        mma_nk<KSD, 8, false>(S, xa, sm.K[buf], LD);
        softmax_update<NTD>(p, S, O, m, l, gq, sm.glk[buf], goff, row0, false);
        add_pv<D>(S, O, sm.V[buf]);
        zero_acc<8>(T);
        mma_nk<KSD, 8, false>(T, xa, sm.W[buf], LD);
        uint32_t ta[4][4];
        acc_to_a<4, false>(T, ta, -1.f);
        mma_kn<4, NTD, false>(X, ta, sm.U[buf], LD);
        __syncthreads(); /* buffer buf is refilled next */
        buf ^= 1;
    }

    /* Qleft_I = X, fp16 */
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = row0 + 8 * h2;
            if (t0 + r < sq.eos)
                *(__half2 *)(p.qleft + ((long)(t0 + r) * p.Hq + hq) * D + 8 * j + 2 * t) =
                    __floats2half2_rn(X[j][2 * h2], X[j][2 * h2 + 1]);
        }

    /* coarse pairs: key blocks of earlier superblocks b, through Pi[b, a] */
    if (a > 0) {
        uint32_t qla[KSD][4];
        acc_to_a<KSD, false>(X, qla);
        uint32_t xba[KSD][4];
        int n_keys = a * p.s; /* key blocks 0 .. a s - 1, visited from the last down */
        auto load_coarse = [&](int J, int k) {
            long gbJ = sq.block_base + J;
            load_keys<D>(sm, k, p, kvtile(p.Ktil16, gbJ), D, PATH_C,
                         p.v + (long)(sq.bos + J * PATH_C) * p.H * D + (long)h * D, PATH_C, nullptr, nullptr, gbJ, hq);
        };
        load_coarse(n_keys - 1, buf);
        for (int J = n_keys - 1; J >= 0; J--) {
            int b = J / p.s;
            if (J % p.s == p.s - 1) { /* entering superblock b: Xb = Qleft Pi[b, a] */
                const float *Pi = p.Pi + (pi_entry(sq.pi_base, b, a) * p.H + h) * D * D;
                for (int i = threadIdx.x; i < D * D; i += blockDim.x) {
                    float x = Pi[i];
                    __half hi = __float2half_rn(x);
                    sm.Pih[(i / D) * LD + i % D] = hi;
                    sm.Pil[(i / D) * LD + i % D] = __float2half_rn(x - __half2float(hi));
                }
                __syncthreads();
                float Xb[NTD][4];
                zero_acc<NTD>(Xb);
                mma_kn<KSD, NTD, false>(Xb, qla, sm.Pih, LD);
                mma_kn<KSD, NTD, false>(Xb, qla, sm.Pil, LD);
                acc_to_a<KSD, false>(Xb, xba);
            }
            if (J > 0) {
                load_coarse(J - 1, buf ^ 1);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            long gbJ = sq.block_base + J;
            float goff = gate_offset(p, gbI, gbJ, hq);
            float S[8][4];
            zero_acc<8>(S);
            mma_nk<KSD, 8, false>(S, xba, sm.K[buf], LD);
            softmax_update<NTD>(p, S, O, m, l, gq, sm.glk[buf], goff, row0, false);
            add_pv<D>(S, O, sm.V[buf]);
            __syncthreads();
            buf ^= 1;
        }
    }

    /* epilogue: full row sums, o = O / l, lse = (m + log2 l) ln 2 */
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 1);
        l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 2);
        int r = row0 + 8 * h2;
        if (t0 + r >= sq.eos) continue;
        float inv = 1.f / l[h2];
#pragma unroll
        for (int j = 0; j < NTD; j++)
            *(__nv_bfloat162 *)(p.out + ((long)(t0 + r) * p.Hq + hq) * D + 8 * j + 2 * t) =
                __floats2bfloat162_rn(O[j][2 * h2] * inv, O[j][2 * h2 + 1] * inv);
        if (t == 0) p.lse_out[(long)(t0 + r) * p.Hq + hq] = (m[h2] + log2f(l[h2])) / LOG2E_F;
    }
}

void path_attn_fwd_launch(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    with_head_dim(p.d, [&](auto dim) {
        constexpr int D = decltype(dim)::value;
        launch_smem(ctx, "attn_fwd_kernel", attn_fwd_kernel<D>, dim3(n_blocks, p.Hq), (long)sizeof(FwdSmem<D>), p);
    });
}
