/* path_attn_flash.cu: attention without Householder factors (w = NULL: the softmax baselines and
 * FoX), FlashAttention-2 style, for path_attn.h. With H_i = I the logits are
 *   z_ij = scale q_i.k_j + gscale (G_i - G_j),  P = softmax_j(z),  o_i = sum_j P_ij v_j
 * and the backward is, with D_i = do_i.o_i (B0) and dZ = P (dO V^T - D):
 *   dq_i = scale sum_j dZ_ij k_j,  dk_j = scale sum_i dZ_ij q_i,  dv_j = sum_i P_ij do_i,
 *   dG_i = gscale (sum_j dZ_ij - sum_k dZ_ki), then dg = reverse cumsum of dG (B6).
 * Kernels (64-token blocks of kernels/path_attn_internal.cuh, 4 warps, each warp 16 rows of a tile
 * with its accumulators in registers; K/V or Q/dO tiles, and their per-row vectors, double-buffered
 * by cp.async; templated on the gate, and the diagonal tile's causal mask peeled off the loop, so
 * that neither costs instructions where it is absent):
 *   flash_fwd    per (query block, query head): key blocks I .. 0, online softmax; writes o, lse
 *   flash_dq     per (query block, query head): key blocks I .. 0; writes dq and the query side of
 *                dG (set)
 *   flash_dkdv   per (key block, kv head): the group's query heads, query blocks J .. last; dk, dv
 *                in registers, the key side of dG (subtracted after flash_dq, same stream)
 * Recomputing S and dO V^T in flash_dq costs two more products than FlashAttention-2's atomic dq,
 * and buys a backward without atomics: its results repeat bit for bit. Operands bf16 (q, k, v, do
 * are bf16; P and dZ rounded to bf16 as in FlashAttention), accumulation fp32. The gate comes as
 * the block sums Gl, Go of path_gate_prep (F4's form). Nothing of PaTH's scratch is used.
 * Checked by tests/test_path_attn_gpu.cu (softmax and FoX cases) against model/attn_ref.c. */
#include "path_attn_internal.cuh"

template <int D>
struct FlashSmem {
    static constexpr int LD = D + 8;
    bf16 A[PATH_C * LD], B[PATH_C * LD];              /* the tiles held: Q, dO (query-major) or K, V (key-major) */
    bf16 X[2][PATH_C * LD], Y[2][PATH_C * LD];        /* the tiles streamed: K, V or Q, dO */
    float lse[2][PATH_C], Dv[2][PATH_C], gl[2][PATH_C]; /* per streamed row: lse, D, gate (or per key: gate) */
    float own_lse[PATH_C], own_Dv[PATH_C], own_gl[PATH_C];
};

/* token-layout rows of head `head` (heads per token: n_heads) starting at token t0 */
template <int D>
__device__ __forceinline__ const bf16 *rows_at(const bf16 *base, int t0, int n_heads, int head) {
    return base + ((long)t0 * n_heads + head) * D;
}

/* per-row vectors of a block (64 rows from t0, zero past eos), async: x[r] = src[(t0 + r) heads + head] */
__device__ __forceinline__ void load_row_vec(float *dst, const float *src, int t0, int eos, int heads, int head) {
    load_vec_async<PATH_C>(dst, src + (long)t0 * heads + head, heads, eos - t0);
}

/* the gate sums of block gb for query head hq (async), or zeros without a gate */
__device__ __forceinline__ void load_gate_vec(float *dst, const PathParams &p, long gb, int hq) {
    if (p.has_g) load_vec_async<PATH_C>(dst, p.Gl + (gb * p.Hq + hq) * PATH_C, 1, PATH_C);
    else
        for (int r = threadIdx.x; r < PATH_C; r += blockDim.x) dst[r] = 0.f;
}

/* key block J of kv head h into buffer buf (K in X, V in Y), the gate sums of query head hq at its keys; commits */
template <int D>
__device__ __forceinline__ void load_key_block(FlashSmem<D> &sm, int buf, const PathParams &p, const SeqGeo &sq, int J, int h,
                                               int hq) {
    int tJ = sq.bos + J * PATH_C;
    load_tile_async<PATH_C, D>(sm.X[buf], rows_at<D>(p.k, tJ, p.H, h), (long)p.H * D, sq.eos - tJ);
    load_tile_async<PATH_C, D>(sm.Y[buf], rows_at<D>(p.v, tJ, p.H, h), (long)p.H * D, sq.eos - tJ);
    load_gate_vec(sm.gl[buf], p, sq.block_base + J, hq);
    cp_async_commit();
}

/* A warp's 16 rows of an accumulator (16 x D) as bf16 into token-layout rows (valid rows only) */
template <int D>
__device__ __forceinline__ void store_rows_bf16(bf16 *dst, int t0, int nv, int n_heads, int head, const float acc[D / 8][4],
                                                int row0, float mult) {
    int t = threadIdx.x % 4;
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        int r = row0 + 8 * h2;
        if (r >= nv) continue;
        bf16 *out = dst + ((long)(t0 + r) * n_heads + head) * D;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *(__nv_bfloat162 *)(out + 8 * j + 2 * t) = __floats2bfloat162_rn(mult * acc[j][2 * h2], mult * acc[j][2 * h2 + 1]);
    }
}

/* The loop of a query block's kernels over key blocks I .. 0, double-buffered: block I is loaded
 * (buffer 0, committed) before; load(J, buf) queues block J's loads into buffer buf and commits;
 * tile(J, buf, causal) works on a loaded block, causal a std::true_type for the diagonal block I. */
template <typename Load, typename Tile>
__device__ __forceinline__ void over_key_blocks(int I, Load load, Tile tile) {
    int buf = 0;
    for (int J = I; J >= 0; J--) {
        if (J > 0) {
            load(J - 1, buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (J == I) tile(J, buf, std::true_type());
        else tile(J, buf, std::false_type());
        __syncthreads(); /* buffer buf is refilled next */
        buf ^= 1;
    }
}

/* f(std::true_type()) with a gate, f(std::false_type()) without: kernels templated on the gate */
template <typename F>
void with_gate(bool has_g, F f) {
    if (has_g) f(std::true_type());
    else f(std::false_type());
}

/* ---------------------------------------------------------------------------------------------
 * forward */

template <int D, bool G>
__global__ void __launch_bounds__(PATH_THREADS, 2) flash_fwd_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8;
    p.has_g = G; /* a constant in everything inlined below */
    extern __shared__ __align__(16) char smem_raw[];
    FlashSmem<D> &sm = *reinterpret_cast<FlashSmem<D> *>(smem_raw);
    int2 item = p.flash_q[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y;
    int t0 = sq.bos + I * PATH_C, nv = sq.eos - t0;
    long gbI = sq.block_base + I;
    int warp = threadIdx.x / 32, row0 = 16 * warp + threadIdx.x % 32 / 4;
    auto load_kv = [&](int J, int buf) { load_key_block<D>(sm, buf, p, sq, J, h, hq); };
    load_tile_async<PATH_C, D>(sm.A, rows_at<D>(p.q, t0, p.Hq, hq), (long)p.Hq * D, nv);
    load_gate_vec(sm.own_gl, p, gbI, hq);
    load_kv(I, 0);
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qa[KSD][4];
    load_a<KSD>(qa, sm.A, LD, 16 * warp);
    float gq[2] = {sm.own_gl[row0], sm.own_gl[row0 + 8]};
    float O[NTD][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    zero_acc<NTD>(O);
    auto tile = [&](int J, int buf, auto causal) {
        float S[8][4];
        zero_acc<8>(S);
        mma_nk<KSD, 8, true>(S, qa, sm.X[buf], LD);
        softmax_update<NTD>(p, S, O, m, l, gq, sm.gl[buf], gate_offset(p, gbI, sq.block_base + J, hq), row0, causal.value);
        add_pv<D>(S, O, sm.Y[buf]);
    };
    over_key_blocks(I, load_kv, tile);
    int t = threadIdx.x % 4;
#pragma unroll
    for (int h2 = 0; h2 < 2; h2++) {
        l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 1);
        l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 2);
        int r = row0 + 8 * h2;
        if (r < nv && t == 0) p.lse_out[(long)(t0 + r) * p.Hq + hq] = (m[h2] + log2f(l[h2])) / LOG2E_F;
    }
#pragma unroll
    for (int j = 0; j < NTD; j++)
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            float inv = 1.f / l[h2];
            O[j][2 * h2] *= inv;
            O[j][2 * h2 + 1] *= inv;
        }
    store_rows_bf16<D>(p.out, t0, nv, p.Hq, hq, O, row0, 1.f);
}

/* ---------------------------------------------------------------------------------------------
 * backward, query side: dq and sum_j dZ_ij */

template <int D, bool G>
__global__ void __launch_bounds__(PATH_THREADS, 3) flash_dq_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8;
    p.has_g = G;
    extern __shared__ __align__(16) char smem_raw[];
    FlashSmem<D> &sm = *reinterpret_cast<FlashSmem<D> *>(smem_raw);
    int2 item = p.flash_q[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int hq = blockIdx.y, h = hq / (p.Hq / p.H), I = item.y;
    int t0 = sq.bos + I * PATH_C, nv = sq.eos - t0;
    long gbI = sq.block_base + I;
    int warp = threadIdx.x / 32, row0 = 16 * warp + threadIdx.x % 32 / 4;
    auto load_kv = [&](int J, int buf) { load_key_block<D>(sm, buf, p, sq, J, h, hq); };
    load_tile_async<PATH_C, D>(sm.A, rows_at<D>(p.q, t0, p.Hq, hq), (long)p.Hq * D, nv);
    load_tile_async<PATH_C, D>(sm.B, rows_at<D>(p.dout, t0, p.Hq, hq), (long)p.Hq * D, nv);
    load_row_vec(sm.own_lse, p.lse, t0, sq.eos, p.Hq, hq);
    load_row_vec(sm.own_Dv, p.D, t0, sq.eos, p.Hq, hq);
    load_gate_vec(sm.own_gl, p, gbI, hq);
    load_kv(I, 0);
    cp_async_wait<0>();
    __syncthreads();
    float dQ[NTD][4], rs[2] = {0.f, 0.f};
    zero_acc<NTD>(dQ);
    auto tile = [&](int J, int buf, auto causal) {
        uint32_t qa[KSD][4], doa[KSD][4]; /* from shared memory at each use: 168 registers, 3 CTAs per SM */
        load_a<KSD>(qa, sm.A, LD, 16 * warp);
        load_a<KSD>(doa, sm.B, LD, 16 * warp);
        float S[8][4], dP[8][4];
        zero_acc<8>(S);
        zero_acc<8>(dP);
        mma_nk<KSD, 8, true>(S, qa, sm.X[buf], LD);
        mma_nk<KSD, 8, true>(dP, doa, sm.Y[buf], LD);
        grad_tile<false>(p, S, dP, row0, nv, causal.value, sm.own_lse, sm.own_Dv, sm.own_gl, sm.gl[buf],
                         gate_offset(p, gbI, sq.block_base + J, hq));
        if (G) {
            float r2[2];
            tile_row_sums(dP, r2);
            rs[0] += r2[0];
            rs[1] += r2[1];
        }
        uint32_t dza[4][4];
        acc_to_a<4, true>(dP, dza);
        mma_kn<4, NTD, true>(dQ, dza, sm.X[buf], LD);
    };
    over_key_blocks(I, load_kv, tile);
    store_rows_bf16<D>(p.dq, t0, nv, p.Hq, hq, dQ, row0, p.scale);
    if (G && threadIdx.x % 4 == 0)
        for (int h2 = 0; h2 < 2; h2++) p.dG[(gbI * p.Hq + hq) * PATH_C + row0 + 8 * h2] = p.gscale * rs[h2];
}

/* ---------------------------------------------------------------------------------------------
 * backward, key side: dk, dv and sum_i dZ_ij, per kv head over its group of query heads */

template <int D, bool G>
__global__ void __launch_bounds__(PATH_THREADS, D == 128 ? 2 : 3) flash_dkdv_kernel(PathParams p) {
    constexpr int NTD = D / 8, KSD = D / 16, LD = D + 8;
    p.has_g = G;
    extern __shared__ __align__(16) char smem_raw[];
    FlashSmem<D> &sm = *reinterpret_cast<FlashSmem<D> *>(smem_raw);
    int2 item = p.flash_k[blockIdx.x];
    SeqGeo sq = p.seqs[item.x];
    int h = blockIdx.y, group = p.Hq / p.H, J = item.y;
    int tJ = sq.bos + J * PATH_C, nvk = sq.eos - tJ;
    long gbJ = sq.block_base + J;
    int warp = threadIdx.x / 32, row0 = 16 * warp + threadIdx.x % 32 / 4;
    load_tile_async<PATH_C, D>(sm.A, rows_at<D>(p.k, tJ, p.H, h), (long)p.H * D, nvk);
    load_tile_async<PATH_C, D>(sm.B, rows_at<D>(p.v, tJ, p.H, h), (long)p.H * D, nvk);
    cp_async_commit();
    float dK[NTD][4], dV[NTD][4];
    zero_acc<NTD>(dK);
    zero_acc<NTD>(dV);
    int n_items = group * (sq.nblk - J), buf = 0; /* (query head, query block) pairs, heads outer */
    auto load_q = [&](int it, int buf) {
        int hq = h * group + it / (sq.nblk - J), tI = sq.bos + (J + it % (sq.nblk - J)) * PATH_C;
        load_tile_async<PATH_C, D>(sm.X[buf], rows_at<D>(p.q, tI, p.Hq, hq), (long)p.Hq * D, sq.eos - tI);
        load_tile_async<PATH_C, D>(sm.Y[buf], rows_at<D>(p.dout, tI, p.Hq, hq), (long)p.Hq * D, sq.eos - tI);
        load_row_vec(sm.lse[buf], p.lse, tI, sq.eos, p.Hq, hq);
        load_row_vec(sm.Dv[buf], p.D, tI, sq.eos, p.Hq, hq);
        load_gate_vec(sm.gl[buf], p, (tI - sq.bos) / PATH_C + sq.block_base, hq);
        cp_async_commit();
    };
    float cs[2] = {0.f, 0.f};
    auto tile = [&](int hq, int I, int buf, auto causal) {
        uint32_t ka[KSD][4], va[KSD][4];
        load_a<KSD>(ka, sm.A, LD, 16 * warp);
        load_a<KSD>(va, sm.B, LD, 16 * warp);
        float S[8][4], dP[8][4];
        zero_acc<8>(S);
        zero_acc<8>(dP);
        mma_nk<KSD, 8, true>(S, ka, sm.X[buf], LD);
        mma_nk<KSD, 8, true>(dP, va, sm.Y[buf], LD);
        long gbI = sq.block_base + I;
        grad_tile<true>(p, S, dP, row0, sq.eos - (sq.bos + I * PATH_C), causal.value, sm.lse[buf], sm.Dv[buf], sm.gl[buf],
                        sm.own_gl, gate_offset(p, gbI, gbJ, hq));
        uint32_t pa[4][4], dza[4][4];
        acc_to_a<4, true>(S, pa);
        mma_kn<4, NTD, true>(dV, pa, sm.Y[buf], LD);
        acc_to_a<4, true>(dP, dza);
        mma_kn<4, NTD, true>(dK, dza, sm.X[buf], LD);
        if (G) {
            float r2[2];
            tile_row_sums(dP, r2);
            cs[0] += r2[0];
            cs[1] += r2[1];
            if (I == sq.nblk - 1) { /* the last query block of head hq: its key-side sums are complete */
                if (threadIdx.x % 4 == 0)
                    for (int h2 = 0; h2 < 2; h2++) p.dG[(gbJ * p.Hq + hq) * PATH_C + row0 + 8 * h2] -= p.gscale * cs[h2];
                cs[0] = cs[1] = 0.f;
            }
        }
    };
    load_q(0, 0);
    for (int it = 0; it < n_items; it++) {
        int hq = h * group + it / (sq.nblk - J), I = J + it % (sq.nblk - J);
        if (G && I == J) { /* the key block's own gate sums for head hq: a group of its own, complete at the wait below */
            load_gate_vec(sm.own_gl, p, gbJ, hq);
            cp_async_commit();
        }
        if (it + 1 < n_items) {
            load_q(it + 1, buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (I == J) tile(hq, I, buf, std::true_type());
        else tile(hq, I, buf, std::false_type());
        __syncthreads();
        buf ^= 1;
    }
    store_rows_bf16<D>(p.dk, tJ, nvk, p.H, h, dK, row0, p.scale);
    store_rows_bf16<D>(p.dv, tJ, nvk, p.H, h, dV, row0, 1.f);
}

/* ---------------------------------------------------------------------------------------------
 * launchers */

void path_flash_forward(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    with_head_dim(p.d, [&](auto dim) {
        with_gate(p.has_g, [&](auto gate) {
            constexpr int D = decltype(dim)::value;
            constexpr bool G = decltype(gate)::value;
            launch_smem(ctx, "flash_fwd_kernel", flash_fwd_kernel<D, G>, dim3(n_blocks, p.Hq), (long)sizeof(FlashSmem<D>), p);
        });
    });
}

void path_flash_backward(const GpuCtx *ctx, const PathParams &p, int n_blocks) {
    with_head_dim(p.d, [&](auto dim) {
        with_gate(p.has_g, [&](auto gate) {
            constexpr int D = decltype(dim)::value;
            constexpr bool G = decltype(gate)::value;
            launch_smem(ctx, "flash_dq_kernel", flash_dq_kernel<D, G>, dim3(n_blocks, p.Hq), (long)sizeof(FlashSmem<D>), p);
            launch_smem(ctx, "flash_dkdv_kernel", flash_dkdv_kernel<D, G>, dim3(n_blocks, p.H), (long)sizeof(FlashSmem<D>), p);
        });
    });
}
