/* path_attn.cu: host side of PaTH attention: the block geometry of a packed batch, scratch,
 * and the launch order of doc/PATH_ALGORITHM.md sections 3-4.
 *   without w (softmax, FoX): gate blocks, then path_attn_flash.cu's kernels (B0 and B6 around its
 *             backward); nothing below
 *   forward:  gate blocks, F1 block prep, F2 superblock prep, F3 coarse maps, F4 attention
 *   backward: the same prep (F1 keeps A, F2 keeps R) unless the forward kept its factors (PathFactors),
 *             B0 D = rowsum(dO o O), zero the accumulators, B1 coarse, B2 fine, B3 dPi -> dPm,
 *             B4 superblocks, B5 blocks, B6 gate cumsum
 * Superblocks hold s = 4 blocks when no sequence is longer than 2048 tokens, else 8 (section 5).
 * Checked by tests/test_path_attn_gpu.cu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "path_attn.h"
#include "path_attn_internal.cuh"

struct PathAttn {
    GpuCtx ctx;
    /* geometry of the last call */
    std::vector<int> cu;
    int Hq = 0, H = 0, d = 0, s = 0;
    int n_blocks = 0, n_sblocks = 0;
    long n_pi = 0;
    SeqGeo *seqs = nullptr;
    int2 *blocks = nullptr, *keyblocks = nullptr, *sblocks = nullptr;
    int2 *flash_q = nullptr, *flash_k = nullptr; /* softmax kernels: query / key blocks, most work first */
    size_t table_bytes = 0;
    /* scratch arena */
    char *arena = nullptr;
    size_t arena_bytes = 0;
};

/* Out of memory here is the caller's batch being too large: say so, and what it asked for. */
static void grow(void **ptr, size_t *have, size_t need) {
    if (need <= *have) return;
    if (*ptr) CUDA_CHECK(cudaFree(*ptr));
    *ptr = nullptr;
    *have = 0;
    cudaError_t err = cudaMalloc(ptr, need);
    if (err == cudaErrorMemoryAllocation) {
        size_t free_b = 0, all_b = 0;
        cudaGetLastError(); /* clear it */
        CUDA_CHECK(cudaMemGetInfo(&free_b, &all_b));
        fprintf(stderr,
                "error: out of GPU memory for the attention's scratch (%.2f GiB; %.2f GiB free of %.2f): lower the batch or "
                "the sequence length (train: --batch, --seq-len)\n",
                need / 1073741824.0, free_b / 1073741824.0, all_b / 1073741824.0);
        exit(EXIT_FAILURE);
    }
    CUDA_CHECK(err);
    *have = need;
}

PathAttn *path_attn_create(const GpuCtx *ctx) {
    PathAttn *pa = new PathAttn();
    pa->ctx = *ctx;
    return pa;
}

void path_attn_free(PathAttn *pa) {
    if (!pa) return;
    cudaFree(pa->seqs);
    cudaFree(pa->arena);
    delete pa;
}

size_t path_attn_scratch_bytes(const PathAttn *pa) { return pa->arena_bytes + pa->table_bytes; }

int path_attn_check(const AttnDims *dims, char *why, size_t why_len) {
    const char *bad;
    if (attn_dims_check(dims, &bad)) {
        snprintf(why, why_len, "path attention: %s", bad);
        return -1;
    }
    if (dims->d != 32 && dims->d != 64 && dims->d != 128) {
        snprintf(why, why_len, "path attention: head dim %d not supported by the GPU kernels (32, 64 or 128)", dims->d);
        return -1;
    }
    return 0;
}

static std::vector<int2> heaviest_first(const std::vector<int2> &items, const std::vector<int> &work) {
    std::vector<int> order(items.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = (int)i;
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return work[x] > work[y]; });
    std::vector<int2> sorted(items.size());
    for (size_t i = 0; i < order.size(); i++) sorted[i] = items[order[i]];
    return sorted;
}

/* Work tables for the sequences of dims (rebuilt only when the shape changes). */
static void build_geometry(PathAttn *pa, const AttnDims *dims) {
    std::vector<int> cu(dims->cu_seqlens, dims->cu_seqlens + dims->n_seqs + 1);
    if (cu == pa->cu && pa->Hq == dims->Hq && pa->H == dims->H && pa->d == dims->d) return;
    int max_len = 0;
    for (int i = 0; i < dims->n_seqs; i++) max_len = std::max(max_len, cu[i + 1] - cu[i]);
    int s = max_len > 2048 ? 8 : 4;
    std::vector<SeqGeo> seqs;
    std::vector<int2> blocks, sblocks;
    std::vector<int> work, key_work, q_len, k_len;
    int nb = 0, nsb = 0;
    long npi = 0;
    for (int i = 0; i < dims->n_seqs; i++) {
        int len = cu[i + 1] - cu[i];
        SeqGeo g;
        g.bos = cu[i];
        g.eos = cu[i + 1];
        g.nblk = (len + PATH_C - 1) / PATH_C;
        g.M = (g.nblk + s - 1) / s;
        g.block_base = nb;
        g.sb_base = nsb;
        g.pi_base = npi;
        for (int J = 0; J < g.nblk; J++) {
            blocks.push_back(make_int2((int)seqs.size(), J));
            work.push_back(J / s * s + 2 * (J % s) + 2); /* F4's tiles: coarse + 2 fine + 2 */
            key_work.push_back(std::max(0, g.nblk - (J / s + 1) * s)); /* B1's query blocks */
            q_len.push_back(J + 1);         /* softmax: key blocks of query block J */
            k_len.push_back(g.nblk - J);    /* softmax: query blocks of key block J */
        }
        for (int m = 0; m < g.M; m++) sblocks.push_back(make_int2((int)seqs.size(), m));
        nb += g.nblk;
        nsb += g.M;
        npi += (long)g.M * (g.M + 1) / 2;
        seqs.push_back(g);
    }
    /* heaviest blocks first, so that long work items do not finish last: F4's query blocks
     * (coarse + 2 fine + 2 tiles) and B1's key blocks (query blocks of later superblocks) */
    std::vector<int2> by_query = heaviest_first(blocks, work), by_key = heaviest_first(blocks, key_work);
    std::vector<int2> by_q_len = heaviest_first(blocks, q_len), by_k_len = heaviest_first(blocks, k_len);
    size_t n2 = blocks.size();
    size_t bytes = seqs.size() * sizeof(SeqGeo) + (4 * n2 + sblocks.size()) * sizeof(int2) + 64;
    grow((void **)&pa->seqs, &pa->table_bytes, bytes);
    char *base = (char *)pa->seqs;
    size_t off_blocks = (seqs.size() * sizeof(SeqGeo) + 15) / 16 * 16;
    pa->blocks = (int2 *)(base + off_blocks);
    pa->keyblocks = pa->blocks + n2;
    pa->flash_q = pa->keyblocks + n2;
    pa->flash_k = pa->flash_q + n2;
    pa->sblocks = pa->flash_k + n2;
    CUDA_CHECK(cudaMemcpyAsync(pa->seqs, seqs.data(), seqs.size() * sizeof(SeqGeo), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(pa->blocks, by_query.data(), n2 * sizeof(int2), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(pa->keyblocks, by_key.data(), n2 * sizeof(int2), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(pa->flash_q, by_q_len.data(), n2 * sizeof(int2), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(pa->flash_k, by_k_len.data(), n2 * sizeof(int2), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(pa->sblocks, sblocks.data(), sblocks.size() * sizeof(int2), cudaMemcpyHostToDevice, pa->ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(pa->ctx.stream)); /* the host vectors go out of scope */
    pa->cu = cu;
    pa->Hq = dims->Hq;
    pa->H = dims->H;
    pa->d = dims->d;
    pa->s = s;
    pa->n_blocks = nb;
    pa->n_sblocks = nsb;
    pa->n_pi = npi;
}

struct ScratchItem {
    void **ptr;
    long bytes;
};

static size_t items_bytes(const std::vector<ScratchItem> &items) {
    size_t total = 0;
    for (auto &it : items) total += (it.bytes + 255) / 256 * 256;
    return total;
}

/* Points the items one after another into buf (256-byte aligned). */
static void point_into(char *buf, const std::vector<ScratchItem> &items) {
    size_t off = 0;
    for (auto &it : items) {
        *it.ptr = buf + off;
        off += (it.bytes + 255) / 256 * 256;
    }
}

/* point_into the device buffer *buf, grown first if needed (work in flight on the stream may still
 * use the old one, so growing waits for it). */
static void carve_into(cudaStream_t stream, char **buf, size_t *have, const std::vector<ScratchItem> &items) {
    size_t total = items_bytes(items);
    if (total > *have) CUDA_CHECK(cudaStreamSynchronize(stream));
    grow((void **)buf, have, total);
    point_into(*buf, items);
}

static void carve(PathAttn *pa, const std::vector<ScratchItem> &items) {
    carve_into(pa->ctx.stream, &pa->arena, &pa->arena_bytes, items);
}

/* Without w (path_attn_flash.cu): the gate blocks, and for the backward D and dG. */
static void carve_flash_scratch(PathAttn *pa, PathParams &p, long n_tokens, bool backward) {
    long nb = pa->n_blocks, Hq = p.Hq, c = PATH_C;
    std::vector<ScratchItem> items = {{(void **)&p.Gl, p.has_g * nb * Hq * c * 4}, {(void **)&p.Go, p.has_g * nb * Hq * 8}};
    if (backward) {
        items.push_back({(void **)&p.D, n_tokens * Hq * 4});
        items.push_back({(void **)&p.dG, p.has_g * nb * Hq * c * 4});
    }
    carve(pa, items);
}

/* PaTH's factors: F1-F3's and the gate blocks; A and R (F1, F2 keep them) when a backward will read them. */
static std::vector<ScratchItem> factor_items(const PathAttn *pa, PathParams &p, bool backward_factors) {
    long nb = pa->n_blocks, nsb = pa->n_sblocks, npi = pa->n_pi, H = p.H, Hq = p.Hq, d = p.d, c = PATH_C, ab = backward_factors;
    return {
        {(void **)&p.U, nb * H * c * d * 4},      {(void **)&p.U16, nb * H * c * d * 2},
        {(void **)&p.W16, nb * H * c * d * 2},    {(void **)&p.Khat16, nb * H * c * d * 2},
        {(void **)&p.Ktil16, nb * H * c * d * 2}, {(void **)&p.Bm, nb * H * c * c * 4},
        {(void **)&p.Bm16, nb * H * c * c * 2},   {(void **)&p.Pm, nsb * H * d * d * 4},
        {(void **)&p.Pi, npi * H * d * d * 4},    {(void **)&p.Gl, nb * Hq * c * 4},
        {(void **)&p.Go, nb * Hq * 8},            {(void **)&p.A, ab * nb * H * c * c * 4},
        {(void **)&p.R, ab * nb * H * d * d * 4},
    };
}

/* The backward's own scratch: D, then the accumulators dQleft .. dG contiguous in this order, the states. */
static std::vector<ScratchItem> backward_items(const PathAttn *pa, PathParams &p, long n_tokens) {
    long nb = pa->n_blocks, nsb = pa->n_sblocks, npi = pa->n_pi, H = p.H, Hq = p.Hq, d = p.d, c = PATH_C;
    return {
        {(void **)&p.D, n_tokens * Hq * 4},       {(void **)&p.dQleft, nb * Hq * c * d * 4},
        {(void **)&p.dQhat, nb * Hq * c * d * 4}, {(void **)&p.dU, nb * H * c * d * 4},
        {(void **)&p.dW, nb * H * c * d * 4},     {(void **)&p.dKhat, nb * H * c * d * 4},
        {(void **)&p.dKtil, nb * H * c * d * 4},  {(void **)&p.dV, nb * H * c * d * 4},
        {(void **)&p.dPi, npi * H * d * d * 4},   {(void **)&p.dPm, nsb * H * d * d * 4},
        {(void **)&p.dG, nb * Hq * c * 4},        {(void **)&p.states, nb * Hq * (p.s - 1) * c * d * 2},
    };
}

/* factors kept by a forward for its backward */
struct PathFactors {
    char *buf = nullptr;
    size_t bytes = 0;
    std::vector<int> cu; /* the geometry of the call whose factors buf holds; empty: none */
    int Hq = 0, H = 0, d = 0;
};

PathFactors *path_factors_create(void) { return new PathFactors(); }

void path_factors_free(PathFactors *f) {
    if (!f) return;
    cudaFree(f->buf);
    delete f;
}

size_t path_factors_bytes(const PathFactors *f) { return f->bytes; }

static bool factors_match(const PathFactors *f, const PathAttn *pa) {
    return !f->cu.empty() && f->cu == pa->cu && f->Hq == pa->Hq && f->H == pa->H && f->d == pa->d;
}

static PathParams make_params(PathAttn *pa, const AttnDims *dims, const void *q, const void *k, const void *v,
                              const float *w, const float *beta, const float *g) {
    build_geometry(pa, dims);
    PathParams p;
    memset(&p, 0, sizeof p);
    p.n_tokens = dims->n_tokens;
    p.Hq = dims->Hq;
    p.H = dims->H;
    p.d = dims->d;
    p.s = pa->s;
    p.scale = dims->scale;
    p.gscale = dims->gate_scale;
    p.has_w = w != nullptr;
    p.has_g = g != nullptr;
    p.seqs = pa->seqs;
    p.blocks = pa->blocks;
    p.keyblocks = pa->keyblocks;
    p.sblocks = pa->sblocks;
    p.flash_q = pa->flash_q;
    p.flash_k = pa->flash_k;
    p.q = (const bf16 *)q;
    p.k = (const bf16 *)k;
    p.v = (const bf16 *)v;
    p.w = w;
    p.beta = beta;
    p.g = g;
    return p;
}

/* gate blocks, F1, F2, F3 */
static void run_prep(PathAttn *pa, const PathParams &p, int n_seqs) {
    const GpuCtx *ctx = &pa->ctx;
    if (p.has_g) path_gate_prep(ctx, p, pa->n_blocks, n_seqs);
    path_block_prep(ctx, p, pa->n_blocks);
    path_superblock_prep(ctx, p, pa->n_sblocks);
    path_coarse_maps(ctx, p, pa->n_sblocks);
}

void path_attn_forward(PathAttn *pa, const AttnDims *dims, const void *q, const void *k, const void *v,
                       const float *w, const float *beta, const float *g, void *o, float *lse, void *qleft,
                       PathFactors *keep) {
    if (keep) keep->cu.clear();
    if (dims->n_tokens == 0) return;
    PathParams p = make_params(pa, dims, q, k, v, w, beta, g);
    p.out = (bf16 *)o;
    p.lse_out = lse;
    if (!p.has_w) {
        carve_flash_scratch(pa, p, dims->n_tokens, false);
        if (p.has_g) path_gate_prep(&pa->ctx, p, pa->n_blocks, dims->n_seqs);
        path_flash_forward(&pa->ctx, p, pa->n_blocks);
        return;
    }
    if (keep) {
        carve_into(pa->ctx.stream, &keep->buf, &keep->bytes, factor_items(pa, p, true));
        p.store_backward_factors = 1;
        keep->cu = pa->cu;
        keep->Hq = pa->Hq;
        keep->H = pa->H;
        keep->d = pa->d;
    } else {
        carve(pa, factor_items(pa, p, false));
    }
    p.qleft = (__half *)qleft;
    run_prep(pa, p, dims->n_seqs);
    path_attn_fwd_launch(&pa->ctx, p, pa->n_blocks);
}

void path_attn_backward(PathAttn *pa, const AttnDims *dims, const void *q, const void *k, const void *v,
                        const float *w, const float *beta, const float *g, const void *o, const float *lse,
                        const void *qleft, const void *dout, void *dq, void *dk, void *dv, float *dw,
                        float *dbeta, float *dg, const PathFactors *kept) {
    if (dims->n_tokens == 0) return;
    const GpuCtx *ctx = &pa->ctx;
    PathParams p = make_params(pa, dims, q, k, v, w, beta, g);
    p.o = (const bf16 *)o;
    p.lse = lse;
    p.dout = (const bf16 *)dout;
    p.dq = (bf16 *)dq;
    p.dk = (bf16 *)dk;
    p.dv = (bf16 *)dv;
    p.dg = dg;
    if (!p.has_w) {
        carve_flash_scratch(pa, p, dims->n_tokens, true);
        if (p.has_g) path_gate_prep(ctx, p, pa->n_blocks, dims->n_seqs);
        path_bwd_prep(ctx, p, dims->n_tokens);
        path_flash_backward(ctx, p, pa->n_blocks);
        if (p.has_g) path_bwd_gate(ctx, p, dims->n_seqs);
        return;
    }
    p.store_backward_factors = 1;
    p.qleft = (__half *)qleft;
    p.dw = dw;
    p.dbeta = dbeta;
    std::vector<ScratchItem> factors = factor_items(pa, p, true), work = backward_items(pa, p, dims->n_tokens);
    if (kept) {
        if (!factors_match(kept, pa)) {
            fprintf(stderr, "error: path_attn_backward: the kept factors are not those of this call's forward\n");
            exit(EXIT_FAILURE);
        }
        point_into(kept->buf, factors); /* the same geometry as the forward that sized it */
        carve(pa, work);
    } else {
        factors.insert(factors.end(), work.begin(), work.end());
        carve(pa, factors);
        run_prep(pa, p, dims->n_seqs);
    }
    path_bwd_prep(ctx, p, dims->n_tokens);
    /* the accumulators dQleft .. dG are contiguous (backward_items' order) */
    char *first = (char *)p.dQleft, *last = (char *)p.dG + (size_t)pa->n_blocks * p.Hq * PATH_C * 4;
    CUDA_CHECK(cudaMemsetAsync(first, 0, last - first, ctx->stream));
    path_bwd_coarse(ctx, p, pa->n_blocks);
    path_bwd_fine(ctx, p, pa->n_blocks);
    path_bwd_coarse_maps(ctx, p, pa->n_sblocks);
    path_bwd_superblock(ctx, p, pa->n_sblocks);
    path_bwd_block(ctx, p, pa->n_blocks);
    if (p.has_g) path_bwd_gate(ctx, p, dims->n_seqs);
}
