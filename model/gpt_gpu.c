/* gpt_gpu.c: the model of gpt.h on one CUDA GPU. Host code only: it orchestrates the kernels of kernels/
 * through their C headers and launches nothing itself. The architecture is model/gpt_cpu.c's exactly
 * (read its top comment); what differs is where the numbers live and how precise they are.
 *
 * Precision (doc/DESIGN.md section 3): f32 master parameters, gradients and AdamW moments, flat in table
 * order (gpt.h's buffers); a bf16 copy of every tensor for the matmuls (each tensor 256-byte aligned),
 * rewritten by AdamW and gpt_copy_in; bf16 activations as llm.c; f32 for layernorm statistics, the
 * softmax and cross-entropy, PaTH's w, beta, g (the attention kernels keep the UT solve in f32), and
 * for the gradient of a layernorm output (dln), which collects several GEMM terms. Matmuls accumulate
 * in f32. The residual-stream gradient is bf16 (llm.c).
 * Forward of a layer, N = B T rows, x its input (bf16):
 *   ln1 = layernorm(x);  q, k, v = ln1 W^T + b, one GEMM per row block of qkvw (no split kernel)
 *   rope: q, k rotated in place.  PaTH: w_low = ln1 wdown^T; w_up = w_low wup^T; w = conv, silu, norm
 *   (path_layer.h); beta = 2 sigmoid(ln1 betaw^T + betab).  gated: g = logsigmoid(ln1 gatew^T + gateb)
 *   atty = path_attn(q, k, v, w, beta, g) over the documents (lse and qleft kept for backward)
 *   residual2 = atty attprojw^T + attprojb + x (one GEMM);  ln2;  fch = ln2 fcw^T + fcb;  gelu
 *   residual3 = fch_gelu fcprojw^T + fcprojb + residual2 (one GEMM)
 * then lnf, logits = lnf wte^T (bf16, all Vp columns) and the classifier (per row: loss, lse, argmax hit;
 * summed on the host in row order). Backward: the same steps in reverse; dlogits overwrite the logits in
 * place, so each gpt_forward allows one gpt_backward. The model's own kernels use no atomics (column sums by
 * slabs, the embedding backward by token groups built on the host); the attention backward adds with f32
 * atomics (kernels/path_attn.h), so gradients repeat only up to its last-bit rounding.
 * Streams: everything runs on ctx.stream, except what gpt_set_grad_ready's callback queues (the gradient
 * all-reduce overlapped with backward) on a side stream: after each layer's backward an event makes the
 * side stream wait for it, and gpt_backward ends with ctx.stream waiting for the side stream.
 * Documents (doc_token) as the CPU model: doc_start and positions per row, packed sequences for the
 * attention, computed on the host from the batch.
 * Memory: two device allocations made by gpt_create: the f32 state (parameters, gradients, AdamW moments;
 * gpt_shard_optimizer makes it again with the moments of a shard and buffers padded for the collectives,
 * through a host copy, so the old and the new never coexist), and one for B x T (the bf16 copies,
 * activations, one layer's activation gradients, scratch); the attention's scratch, each layer's kept PaTH
 * factors (the forward leaves them for the backward: kernels/path_attn.h, PathFactors) and cuBLASLt's
 * workspace are their own (kernels/path_attn.h, kernels/matmul.h).
 * Decoding (doc/DESIGN.md section 1, "Decoding with a key cache"): a step takes one new token for each of
 * n sequences through the forward's kernels and GEMMs as n rows (rope and wpe at each sequence's position
 * in its document), and attention through kernels/path_decode.h over a cache per layer, sequence and head:
 * keys in f32 (for PaTH already multiplied by every later Householder factor: updated in place as tokens
 * arrive), values in bf16, gate sums in f32, and for PaTH the last conv_size rows of w_up (the conv's
 * window). A doc_token puts its sequence back at position 0, which is all the kernels need to read nothing
 * earlier. O(len) per token. The prefill (gpt_decode_prefill) runs a prompt through the forward as a batch
 * of n rows and fills each layer's cache from that layer's activations (kernels/path_prefill.h: O(T d^2) per
 * sequence and head, no decoding steps). The cache is a second device allocation, made by the first
 * gpt_decode_begin for its n sequences of up to T tokens (about L n T C 6 bytes), made again by a later call
 * for more, freed by gpt_free; decoding steps leave the training state (activations, logits, gradients)
 * alone, the prefill replaces the activations and logits (as a gpt_forward without targets) but not the
 * gradients.
 * The current device (comm_init makes it the rank's GPU; device 0 for one process). Checked by
 * tests/test_gpt_gpu.cu against model/gpt_cpu.c. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../kernels/adamw.h"
#include "../kernels/cast.h"
#include "../kernels/classifier.h"
#include "../kernels/colsum.h"
#include "../kernels/encoder.h"
#include "../kernels/gelu.h"
#include "../kernels/gpu.h"
#include "../kernels/layernorm.h"
#include "../kernels/matmul.h"
#include "../kernels/norm.h"
#include "../kernels/path_attn.h"
#include "../kernels/path_decode.h"
#include "../kernels/path_layer.h"
#include "../kernels/path_prefill.h"
#include "../kernels/rope.h"
#include "adamw.h"
#include "documents.h"
#include "gpt_gpu.h"

#define BF16 2        /* bytes per bf16 element */
#define ALIGN 256     /* every device buffer and every parameter tensor's bf16 copy starts here */

/* ---------------------------------------------------------------------------------------------
 * state */

typedef struct { /* one layer's activations kept for backward: bf16 unless f32/f16 said; NULL if unused */
    void *ln1;                   /* (N,C) */
    float *ln1_mean, *ln1_rstd;  /* (N) */
    void *q, *k, *v;             /* (N,C) q, k rotated for rope */
    void *w_low, *w_up;          /* (N,R), (N,C) PaTH */
    float *w;                    /* (N,C) PaTH: unit rows per head */
    float *beta, *gate;          /* (N,NH) PaTH, gated */
    void *atty;                  /* (N,C) attention output */
    float *lse;                  /* (N,NH) */
    void *qleft;                 /* (N,C) f16, the attention's own state for its backward */
    void *residual2, *ln2;       /* (N,C) */
    float *ln2_mean, *ln2_rstd;  /* (N) */
    void *fch, *fch_gelu;        /* (N,4C) */
    void *residual3;             /* (N,C) the layer's output */
} LayerActs;

typedef struct { /* gradients of one layer's activations, reused layer by layer */
    void *dresidual;         /* (N,C) bf16: the residual stream, carried down the layers */
    float *dln;              /* (N,C) f32: of a layernorm output (lnf, ln2, ln1) */
    void *datty;             /* (N,C) bf16 */
    void *dq, *dk, *dv;      /* (N,C) bf16 */
    void *dfch;              /* (N,4C) bf16: of fch_gelu, then (in place) of fch */
    float *dw;               /* (N,C) f32 PaTH: of w, then (in place) of its conv output */
    void *dw_up, *dw_low;    /* (N,C), (N,R) bf16 PaTH */
    float *dbeta, *dgate;    /* (N,NH) f32 */
    void *dpre;              /* (N,NH) bf16: of beta's or the gate's pre-activation */
} GradActs;

/* Per-batch int tables, laid out alike in host staging and device memory (one copy per batch). */
enum { TAB_TOKENS, TAB_TARGETS, TAB_POS, TAB_DOC_START, TAB_TOK_KEYS, TAB_TOK_OFFSET, TAB_TOK_ROWS, TAB_POS_KEYS,
       TAB_POS_OFFSET, TAB_POS_ROWS, TAB_COUNT };

typedef struct { /* generation with the key cache (top comment; "decoding" below); T = gpt_create's */
    int n, seqs;         /* sequences being decoded; sequences S the cache holds (0: no cache yet) */
    int *len;            /* (S) host: tokens of each sequence's current document so far */
    int *h_steps;        /* (2 S) host staging of steps, pos */
    void *memory;        /* the cache's one device allocation; everything below points into it */
    int *steps, *pos;    /* (S) this step's tokens, and their positions in their documents (= len) */
    int *zeros;          /* (S K) PaTH: the conv windows' doc_start (path_decode.h) */
    void *encoded;       /* (S,C) bf16 */
    LayerActs a;         /* one layer's activations for S rows, reused by every layer; w: S K rows, the
                            conv over the windows (row K-1 of each is the new token's) */
    void *lnf;           /* (S,C) bf16 */
    float *lnf_mean, *lnf_rstd; /* (S) */
    void *logits;        /* (S,Vp) bf16 */
    float *k;            /* (L,S,NH,T,d) f32 cached keys */
    void *v;             /* (L,S,NH,T,d) bf16 cached values */
    float *G;            /* (L,S,NH,T) f32 gated: gate sums from the document start */
    void *window;        /* (L,S,K,C) bf16 PaTH: each document's last K rows of w_up */
    float *scratch;      /* path_decode_scratch_floats(S, NH, d, T) */
} DecodeCache;

struct Gpt {
    ModelConfig cfg;
    int B, T;                               /* largest batch, given to gpt_create */
    ParamSpec specs[NUM_PARAM_TENSORS];
    size_t num_params;
    GpuCtx ctx;
    Matmul *mm;
    PathAttn *pa;
    PathFactors **factors;                  /* (L) what each layer's attention forward keeps for its backward */
    void *state;                            /* the f32 state's device allocation: params, grads, m, v */
    float *params, *grads;                  /* (buffer_elems) f32 each, table order; zeros past num_params */
    float *m, *v;                           /* (moment_end - moment_begin) f32 AdamW moments of those parameters */
    size_t buffer_elems, moment_begin, moment_end; /* num_params, 0, num_params unless gpt_shard_optimizer */
    ParameterTensors p, gr;                 /* named views of params, grads */
    void *memory;                           /* the other device allocation; everything below points into it */
    void *params_bf16;                      /* bf16 copies: tensor i at bf16_offset[i] elements */
    size_t bf16_offset[NUM_PARAM_TENSORS], bf16_bytes;
    void *encoded;                          /* (N,C) bf16 */
    LayerActs *layers;                      /* (L) host array of device views */
    void *lnf;                              /* (N,C) bf16 */
    float *lnf_mean, *lnf_rstd;             /* (N) */
    void *logits;                           /* (N,Vp) bf16; dlogits in place after gpt_backward */
    float *losses, *lse;                    /* (N) */
    int *correct;                           /* (N) */
    GradActs d;
    float *colsum_scratch;                  /* column sums (colsum.h) */
    double *norm_scratch;                   /* (NORM_BLOCKS) */
    float *rope;                            /* (T, d/2, 2) rope: cos, sin */
    int *tab_dev[TAB_COUNT], *tab_host[TAB_COUNT]; /* per-batch tables; tab_host[0] owns the host block */
    size_t tab_ints;                        /* ints of all tables */
    /* host side of the last batch */
    int batch_B, batch_T;                   /* its shape; 0 before the first gpt_forward */
    int grad_ready;                         /* it had targets and no gpt_backward took its gradient yet */
    int logits_valid;                       /* g->logits holds its logits (not yet their gradient) */
    int *cu_seqlens, n_seqs;                /* (N+1) its documents as packed sequences */
    int *counts;                            /* (max(Vp, T) + 1) counting-sort scratch */
    GptGradReady ready_fn;                  /* gpt_set_grad_ready's callback, or NULL */
    void *ready_ctx;
    cudaStream_t side;                      /* its stream; made by the first gpt_set_grad_ready, else NULL */
    cudaEvent_t grads_final, side_done;     /* ctx.stream -> side: a layer's gradients; side -> ctx.stream */
    int n_tok_groups, n_pos_groups;
    float *h_losses;                        /* (N) */
    int *h_correct;                         /* (N) */
    DecodeCache dec;
};

/* ---------------------------------------------------------------------------------------------
 * device memory: one allocation carved into ALIGN-aligned slots (llm.c's malloc_and_point) */

typedef struct {
    void **ptr;
    size_t bytes;
} Slot;

typedef struct {
    Slot *slot;
    int n, cap;
} SlotList;

static void slot_add(SlotList *s, void *ptr, size_t bytes) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        Slot *grown = mallocCheck(sizeof(Slot) * s->cap);
        if (s->n) memcpy(grown, s->slot, sizeof(Slot) * s->n);
        free(s->slot);
        s->slot = grown;
    }
    s->slot[s->n++] = (Slot){(void **)ptr, bytes};
}

static size_t align_up(size_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* One cudaMalloc for every slot, returned; slots of 0 bytes get NULL. Out of memory is the user's error:
 * the message names what the memory is for and which setting to lower (hint). */
static void *slots_allocate(SlotList *s, const char *what, const char *hint) {
    size_t total = 0;
    for (int i = 0; i < s->n; i++) total += align_up(s->slot[i].bytes);
    void *memory = NULL;
    cudaError_t err = cudaMalloc(&memory, total);
    if (err == cudaErrorMemoryAllocation) {
        size_t free_b = 0, all_b = 0;
        cudaGetLastError(); /* clear it */
        CUDA_CHECK(cudaMemGetInfo(&free_b, &all_b));
        die("out of GPU memory for %s: %s (it needs %.2f GiB, the GPU has %.2f GiB free of %.2f)", what, hint,
            total / 1073741824.0, free_b / 1073741824.0, all_b / 1073741824.0);
    }
    CUDA_CHECK(err);
    char *p = memory;
    for (int i = 0; i < s->n; i++) {
        *s->slot[i].ptr = s->slot[i].bytes ? p : NULL;
        p += align_up(s->slot[i].bytes);
    }
    free(s->slot);
    return memory;
}

/* N rows of one layer; decoding: w has conv_size rows per sequence (the conv over its window) and nothing is
 * kept for the attention's backward */
static void layer_slots(SlotList *s, LayerActs *a, const ModelConfig *cfg, size_t N, int decoding) {
    size_t C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank;
    size_t path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn), kept = !decoding;
    size_t w_rows = decoding ? N * cfg->conv_size : N;
    slot_add(s, &a->ln1, N * C * BF16);
    slot_add(s, &a->ln1_mean, N * 4);
    slot_add(s, &a->ln1_rstd, N * 4);
    slot_add(s, &a->q, N * C * BF16);
    slot_add(s, &a->k, N * C * BF16);
    slot_add(s, &a->v, N * C * BF16);
    slot_add(s, &a->w_low, path * N * R * BF16);
    slot_add(s, &a->w_up, path * N * C * BF16);
    slot_add(s, &a->w, path * w_rows * C * 4);
    slot_add(s, &a->beta, path * N * NH * 4);
    slot_add(s, &a->gate, gated * N * NH * 4);
    slot_add(s, &a->atty, N * C * BF16);
    slot_add(s, &a->lse, kept * N * NH * 4);
    slot_add(s, &a->qleft, kept * N * C * 2);
    slot_add(s, &a->residual2, N * C * BF16);
    slot_add(s, &a->ln2, N * C * BF16);
    slot_add(s, &a->ln2_mean, N * 4);
    slot_add(s, &a->ln2_rstd, N * 4);
    slot_add(s, &a->fch, N * 4 * C * BF16);
    slot_add(s, &a->fch_gelu, N * 4 * C * BF16);
    slot_add(s, &a->residual3, N * C * BF16);
}

static void grad_slots(SlotList *s, GradActs *d, const ModelConfig *cfg, size_t N) {
    size_t C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank;
    size_t path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn);
    slot_add(s, &d->dresidual, N * C * BF16);
    slot_add(s, &d->dln, N * C * 4);
    slot_add(s, &d->datty, N * C * BF16);
    slot_add(s, &d->dq, N * C * BF16);
    slot_add(s, &d->dk, N * C * BF16);
    slot_add(s, &d->dv, N * C * BF16);
    slot_add(s, &d->dfch, N * 4 * C * BF16);
    slot_add(s, &d->dw, path * N * C * 4);
    slot_add(s, &d->dw_up, path * N * C * BF16);
    slot_add(s, &d->dw_low, path * N * R * BF16);
    slot_add(s, &d->dbeta, path * N * NH * 4);
    slot_add(s, &d->dgate, gated * N * NH * 4);
    slot_add(s, &d->dpre, (path || gated) * N * NH * BF16);
}

/* Slots of the per-batch int tables, and their host twin. */
static void table_slots(SlotList *s, Gpt *g, size_t N) {
    size_t n[TAB_COUNT] = {N, N, N, N, N, N + 1, N, (size_t)g->T, (size_t)g->T + 1, N};
    size_t total = 0;
    for (int i = 0; i < TAB_COUNT; i++) total += n[i];
    g->tab_ints = total;
    int *h = mallocCheck(sizeof(int) * total);
    for (int i = 0; i < TAB_COUNT; i++) {
        g->tab_host[i] = h;
        h += n[i];
    }
    slot_add(s, &g->tab_dev[0], sizeof(int) * total);
}

/* bf16 copy offsets: each tensor starts on an ALIGN boundary; returns the copy's bytes */
static size_t bf16_layout(Gpt *g) {
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        g->bf16_offset[i] = off;
        off += align_up(g->specs[i].n_elems * BF16) / BF16;
    }
    return off * BF16;
}

/* The f32 state in its own allocation, all zeros: parameters and gradients of n_buffer elements, AdamW
 * moments of parameters [begin, end). */
static void state_allocate(Gpt *g, size_t n_buffer, size_t begin, size_t end) {
    SlotList s = {0};
    slot_add(&s, &g->params, n_buffer * 4);
    slot_add(&s, &g->grads, n_buffer * 4);
    slot_add(&s, &g->m, (end - begin) * 4);
    slot_add(&s, &g->v, (end - begin) * 4);
    g->state = slots_allocate(&s, "the parameters, gradients and AdamW moments",
                              "a smaller model, or ZeRO-1 over several GPUs (--zero 1)");
    float *zeroed[4] = {g->params, g->grads, g->m, g->v};
    size_t n[4] = {n_buffer, n_buffer, end - begin, end - begin};
    for (int i = 0; i < 4; i++)
        if (n[i]) CUDA_CHECK(cudaMemsetAsync(zeroed[i], 0, n[i] * 4, g->ctx.stream));
    g->buffer_elems = n_buffer;
    g->moment_begin = begin;
    g->moment_end = end;
    param_point(g->specs, g->params, &g->p);
    param_point(g->specs, g->grads, &g->gr);
}

static void allocate(Gpt *g) {
    const ModelConfig *cfg = &g->cfg;
    size_t N = (size_t)g->B * g->T, C = cfg->n_embd, L = cfg->n_layer, P = g->num_params;
    size_t Vp = cfg->padded_vocab_size, d = C / cfg->n_head, K = cfg->conv_size;
    size_t widest = 4 * C > C * K ? 4 * C : C * K; /* of the column sums: fcb, or the conv taps */
    SlotList s = {0};
    g->bf16_bytes = bf16_layout(g);
    slot_add(&s, &g->params_bf16, g->bf16_bytes);
    slot_add(&s, &g->encoded, N * C * BF16);
    g->layers = callocCheck(L, sizeof(LayerActs));
    for (size_t l = 0; l < L; l++) layer_slots(&s, &g->layers[l], cfg, N, 0);
    slot_add(&s, &g->lnf, N * C * BF16);
    slot_add(&s, &g->lnf_mean, N * 4);
    slot_add(&s, &g->lnf_rstd, N * 4);
    slot_add(&s, &g->logits, N * Vp * BF16);
    slot_add(&s, &g->losses, N * 4);
    slot_add(&s, &g->lse, N * 4);
    slot_add(&s, &g->correct, N * 4);
    grad_slots(&s, &g->d, cfg, N);
    slot_add(&s, &g->colsum_scratch, colsum_scratch_floats((int)N, (int)widest) * 4);
    slot_add(&s, &g->norm_scratch, NORM_BLOCKS * sizeof(double));
    slot_add(&s, &g->rope, cfg->attn == ATTN_ROPE ? (size_t)g->T * d * 4 : 0); /* T rows of d/2 (cos, sin) */
    table_slots(&s, g, N);
    char what[64];
    snprintf(what, sizeof what, "batch %d x %d", g->B, g->T);
    g->memory = slots_allocate(&s, what, "lower --batch or --seq-len");
    for (int i = 1; i < TAB_COUNT; i++) g->tab_dev[i] = g->tab_dev[0] + (g->tab_host[i] - g->tab_host[0]);
    state_allocate(g, P, 0, P);
}

static void decode_free(Gpt *g) {
    DecodeCache *dc = &g->dec;
    if (dc->memory) {
        CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
        CUDA_CHECK(cudaFree(dc->memory));
    }
    free(dc->len);
    free(dc->h_steps);
    memset(dc, 0, sizeof *dc);
}

/* The decoding cache for S sequences of up to T tokens (top comment), in place of a smaller one. */
static void decode_allocate(Gpt *g, int S) {
    const ModelConfig *cfg = &g->cfg;
    DecodeCache *dc = &g->dec;
    size_t n = S, T = g->T, L = cfg->n_layer, C = cfg->n_embd, NH = cfg->n_head, K = cfg->conv_size;
    size_t path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn);
    decode_free(g);
    SlotList s = {0};
    slot_add(&s, &dc->steps, 2 * n * sizeof(int));
    slot_add(&s, &dc->zeros, path * n * K * sizeof(int));
    slot_add(&s, &dc->encoded, n * C * BF16);
    layer_slots(&s, &dc->a, cfg, n, 1);
    slot_add(&s, &dc->lnf, n * C * BF16);
    slot_add(&s, &dc->lnf_mean, n * 4);
    slot_add(&s, &dc->lnf_rstd, n * 4);
    slot_add(&s, &dc->logits, n * cfg->padded_vocab_size * BF16);
    slot_add(&s, &dc->k, L * n * T * C * 4);
    slot_add(&s, &dc->v, L * n * T * C * BF16);
    slot_add(&s, &dc->G, gated * L * n * NH * T * 4);
    slot_add(&s, &dc->window, path * L * n * K * C * BF16);
    slot_add(&s, &dc->scratch, path_decode_scratch_floats(S, (int)NH, (int)(C / NH), (int)T) * 4);
    char what[96];
    snprintf(what, sizeof what, "the decoding cache of %d sequences of up to %d tokens", S, g->T);
    dc->memory = slots_allocate(&s, what,
                                "decode fewer sequences at once, or lower --seq-len (the cache keeps T tokens of every "
                                "sequence and layer) or --batch (the training memory stays allocated)");
    dc->pos = dc->steps + n;
    if (dc->zeros) CUDA_CHECK(cudaMemsetAsync(dc->zeros, 0, n * K * sizeof(int), g->ctx.stream));
    dc->seqs = S;
    dc->len = callocCheck(n, sizeof(int));
    dc->h_steps = callocCheck(2 * n, sizeof(int));
}

static void upload(Gpt *g, void *dev, const void *host, size_t bytes) {
    /* pageable host memory: the call returns once the data is staged, so host may change afterwards */
    CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, g->ctx.stream));
}

static void download(Gpt *g, void *host, const void *dev, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, g->ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---------------------------------------------------------------------------------------------
 * parameter views */

/* The bf16 copy of the parameter element at p (a device pointer into g->params). */
static void *bf16_of(const Gpt *g, const float *p) {
    size_t off = (size_t)(p - g->params), start = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = g->specs[i].n_elems;
        if (off < start + n) return (char *)g->params_bf16 + BF16 * (g->bf16_offset[i] + off - start);
        start += n;
    }
    die("gpt_gpu: internal error: parameter offset %zu outside the %zu parameters", off, g->num_params);
}

/* The bf16 copies of every tensor from the f32 parameters. */
static void refresh_bf16(Gpt *g) {
    size_t start = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = g->specs[i].n_elems;
        if (n) cast_f32_to_bf16(&g->ctx, bf16_of(g, g->params + start), g->params + start, n);
        start += n;
    }
}


/* ---------------------------------------------------------------------------------------------
 * the batch: documents, positions, embedding groups (host), then one upload */

/* Rows grouped by key in [0, n_keys) (counting sort; rows increasing inside a group): keys (groups),
 * offset (groups + 1), rows (N). Returns the number of groups. */
static int group_rows(const int *key, int N, int n_keys, int *counts, int *keys, int *offset, int *rows) {
    memset(counts, 0, sizeof(int) * (n_keys + 1));
    for (int n = 0; n < N; n++) counts[key[n] + 1]++;
    for (int k = 0; k < n_keys; k++) counts[k + 1] += counts[k]; /* counts[k]: first slot of key k */
    int groups = 0;
    for (int k = 0; k < n_keys; k++)
        if (counts[k + 1] > counts[k]) {
            keys[groups] = k;
            offset[groups++] = counts[k];
        }
    offset[groups] = N;
    for (int n = 0; n < N; n++) rows[counts[key[n]]++] = n;
    return groups;
}

/* Tables of the batch (B rows of T) and its documents (as gpt_cpu.c), uploaded in one copy. */
static void load_batch(Gpt *g, const int *inputs, const int *targets, int B, int T) {
    int N = B * T;
    int **h = g->tab_host;
    memcpy(h[TAB_TOKENS], inputs, sizeof(int) * N);
    for (int n = 0; n < N; n++) h[TAB_TARGETS][n] = targets ? targets[n] : -1;
    g->n_seqs = batch_documents(&g->cfg, inputs, B, T, h[TAB_DOC_START], h[TAB_POS], g->cu_seqlens);
    g->n_tok_groups = group_rows(inputs, N, g->cfg.padded_vocab_size, g->counts, h[TAB_TOK_KEYS],
                                 h[TAB_TOK_OFFSET], h[TAB_TOK_ROWS]);
    g->n_pos_groups = g->cfg.attn == ATTN_LEARNED ? group_rows(h[TAB_POS], N, T, g->counts, h[TAB_POS_KEYS],
                                                               h[TAB_POS_OFFSET], h[TAB_POS_ROWS])
                                                  : 0;
    upload(g, g->tab_dev[0], h[0], sizeof(int) * g->tab_ints);
    g->batch_B = B;
    g->batch_T = T;
}

static void check_tokens(const char *who, const char *what, const int *tokens, int rows, int cols, int V) {
    for (int i = 0; i < rows * cols; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            die("%s: %s %d at row %d, position %d is outside the vocabulary [0, %d)", who, what, tokens[i],
                i / cols, i % cols, V);
}

/* ---------------------------------------------------------------------------------------------
 * forward */

static float attn_scale(const ModelConfig *cfg) { return (float)(1.0 / sqrt((double)(cfg->n_embd / cfg->n_head))); }

static AttnDims attn_dims(const Gpt *g) {
    const ModelConfig *cfg = &g->cfg;
    int d = cfg->n_embd / cfg->n_head;
    float scale = attn_scale(cfg);
    AttnDims dims = {g->batch_B * g->batch_T, g->n_seqs, g->cu_seqlens, cfg->n_head, cfg->n_head, d,
                     scale, attn_gate_scale(cfg->attn, scale)};
    return dims;
}

/* ln1, q, k, v (rotated at positions pos (N) for rope), and PaTH's w_up, beta and the gate from the block
 * input x (N rows). w itself is the caller's: its conv reads earlier rows (the batch, or the decoding windows). */
static void attn_inputs(Gpt *g, const LayerParams *lp, LayerActs *a, const void *x, int N, const int *pos) {
    const ModelConfig *cfg = &g->cfg;
    int C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank;
    layernorm_forward(&g->ctx, a->ln1, a->ln1_mean, a->ln1_rstd, x, lp->ln1w, lp->ln1b, N, C);
    void *qkv[3] = {a->q, a->k, a->v};
    for (int j = 0; j < 3; j++)
        matmul_forward(g->mm, qkv[j], MATMUL_BF16, a->ln1, bf16_of(g, lp->qkvw + (size_t)j * C * C),
                       bf16_of(g, lp->qkvb + (size_t)j * C), NULL, N, C, C);
    if (cfg->attn == ATTN_ROPE)
        for (int j = 0; j < 2; j++)
            rope_apply(&g->ctx, qkv[j], pos, g->rope, N, NH, C / NH, 1);
    if (a->w) {
        matmul_forward(g->mm, a->w_low, MATMUL_BF16, a->ln1, bf16_of(g, lp->wdown), NULL, NULL, N, C, R);
        matmul_forward(g->mm, a->w_up, MATMUL_BF16, a->w_low, bf16_of(g, lp->wup), NULL, NULL, N, R, C);
        matmul_forward(g->mm, a->beta, MATMUL_F32, a->ln1, bf16_of(g, lp->betaw), NULL, NULL, N, C, NH);
        path_layer_act_forward(&g->ctx, PATH_ACT_BETA, a->beta, lp->betab, N, NH);
    }
    if (a->gate) {
        matmul_forward(g->mm, a->gate, MATMUL_F32, a->ln1, bf16_of(g, lp->gatew), NULL, NULL, N, C, NH);
        path_layer_act_forward(&g->ctx, PATH_ACT_GATE, a->gate, lp->gateb, N, NH);
    }
}

/* residual2 = x + atty attproj;  residual3 = residual2 + mlp(ln2(residual2)): the layer after its attention,
 * N rows. x is read before residual3 is written, so x may be residual3 itself (decoding). */
static void block_finish(Gpt *g, const LayerParams *lp, LayerActs *a, const void *x, int N) {
    int C = g->cfg.n_embd;
    matmul_forward(g->mm, a->residual2, MATMUL_BF16, a->atty, bf16_of(g, lp->attprojw), bf16_of(g, lp->attprojb), x,
                   N, C, C);
    layernorm_forward(&g->ctx, a->ln2, a->ln2_mean, a->ln2_rstd, a->residual2, lp->ln2w, lp->ln2b, N, C);
    matmul_forward(g->mm, a->fch, MATMUL_BF16, a->ln2, bf16_of(g, lp->fcw), bf16_of(g, lp->fcb), NULL, N, C, 4 * C);
    gelu_forward(&g->ctx, a->fch_gelu, a->fch, (size_t)N * 4 * C);
    matmul_forward(g->mm, a->residual3, MATMUL_BF16, a->fch_gelu, bf16_of(g, lp->fcprojw), bf16_of(g, lp->fcprojb),
                   a->residual2, N, 4 * C, C);
}

static void layer_forward(Gpt *g, int l, const void *x) {
    const ModelConfig *cfg = &g->cfg;
    int N = g->batch_B * g->batch_T;
    LayerParams lp = layer_params(&g->p, cfg, l);
    LayerActs *a = &g->layers[l];
    attn_inputs(g, &lp, a, x, N, g->tab_dev[TAB_POS]);
    if (a->w)
        path_layer_w_forward(&g->ctx, a->w, a->w_up, lp.wconv, g->tab_dev[TAB_DOC_START], N, g->batch_T, cfg->n_embd,
                             cfg->n_head, cfg->conv_size);
    AttnDims dims = attn_dims(g);
    path_attn_forward(g->pa, &dims, a->q, a->k, a->v, a->w, a->beta, a->gate, a->atty, a->lse, a->qleft,
                      g->factors[l]);
    block_finish(g, &lp, a, x, N);
}

/* the block input of layer l */
static const void *layer_input(const Gpt *g, int l) { return l == 0 ? g->encoded : g->layers[l - 1].residual3; }

/* logits of the batch in the tables (load_batch) */
static void run_forward(Gpt *g) {
    const ModelConfig *cfg = &g->cfg;
    int N = g->batch_B * g->batch_T, C = cfg->n_embd, L = cfg->n_layer;
    encoder_forward(&g->ctx, g->encoded, g->tab_dev[TAB_TOKENS], g->tab_dev[TAB_POS], g->p.wte,
                    cfg->attn == ATTN_LEARNED ? g->p.wpe : NULL, N, C);
    for (int l = 0; l < L; l++) layer_forward(g, l, layer_input(g, l));
    layernorm_forward(&g->ctx, g->lnf, g->lnf_mean, g->lnf_rstd, layer_input(g, L), g->p.lnfw, g->p.lnfb, N, C);
    matmul_forward(g->mm, g->logits, MATMUL_BF16, g->lnf, bf16_of(g, g->p.wte), NULL, NULL, N, C,
                   cfg->padded_vocab_size);
}

/* ---------------------------------------------------------------------------------------------
 * backward */

/* dln += (or =) da W and dW += da^T ln1 (+ db) of one input projection of ln1 */
static void input_proj_backward(Gpt *g, const void *da, const float *w, float *dw, float *db, int accumulate,
                                const LayerActs *a, int OC) {
    int N = g->batch_B * g->batch_T, C = g->cfg.n_embd;
    matmul_backward_input(g->mm, g->d.dln, MATMUL_F32, accumulate, da, bf16_of(g, w), N, C, OC);
    matmul_backward_weight(g->mm, dw, da, a->ln1, N, C, OC);
    if (db) matmul_backward_bias(g->mm, db, da, N, OC, g->colsum_scratch);
}

/* From dq, dk, dv, dw, dbeta, dgate: dln (of ln1) and the projections' parameter gradients */
static void attn_inputs_backward(Gpt *g, const LayerParams *lp, const LayerParams *gp, const LayerActs *a) {
    const ModelConfig *cfg = &g->cfg;
    GradActs *d = &g->d;
    int N = g->batch_B * g->batch_T, C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank;
    void *dqkv[3] = {d->dq, d->dk, d->dv};
    if (cfg->attn == ATTN_ROPE)
        for (int j = 0; j < 2; j++)
            rope_apply(&g->ctx, dqkv[j], g->tab_dev[TAB_POS], g->rope, N, NH, C / NH, -1);
    for (int j = 0; j < 3; j++)
        input_proj_backward(g, dqkv[j], lp->qkvw + (size_t)j * C * C, gp->qkvw + (size_t)j * C * C,
                            gp->qkvb + (size_t)j * C, j > 0, a, C);
    if (a->w) {
        path_layer_w_backward(&g->ctx, d->dw, d->dw_up, gp->wconv, a->w, a->w_up, lp->wconv,
                              g->tab_dev[TAB_DOC_START], N, g->batch_T, C, NH, cfg->conv_size, g->colsum_scratch);
        matmul_backward_input(g->mm, d->dw_low, MATMUL_BF16, 0, d->dw_up, bf16_of(g, lp->wup), N, R, C);
        matmul_backward_weight(g->mm, gp->wup, d->dw_up, a->w_low, N, R, C);
        input_proj_backward(g, d->dw_low, lp->wdown, gp->wdown, NULL, 1, a, R);
        path_layer_act_backward(&g->ctx, PATH_ACT_BETA, d->dpre, d->dbeta, a->beta, N, NH);
        input_proj_backward(g, d->dpre, lp->betaw, gp->betaw, gp->betab, 1, a, NH);
    }
    if (a->gate) {
        path_layer_act_backward(&g->ctx, PATH_ACT_GATE, d->dpre, d->dgate, a->gate, N, NH);
        input_proj_backward(g, d->dpre, lp->gatew, gp->gatew, gp->gateb, 1, a, NH);
    }
}

/* d.dresidual: the gradient of the layer's output on entry, of its input x on return */
static void layer_backward(Gpt *g, int l, const void *x) {
    const ModelConfig *cfg = &g->cfg;
    GradActs *d = &g->d;
    int N = g->batch_B * g->batch_T, C = cfg->n_embd;
    LayerParams lp = layer_params(&g->p, cfg, l), gp = layer_params(&g->gr, cfg, l);
    LayerActs *a = &g->layers[l];
    float *scratch = g->colsum_scratch;
    matmul_backward_input(g->mm, d->dfch, MATMUL_BF16, 0, d->dresidual, bf16_of(g, lp.fcprojw), N, 4 * C, C);
    matmul_backward_weight(g->mm, gp.fcprojw, d->dresidual, a->fch_gelu, N, 4 * C, C);
    matmul_backward_bias(g->mm, gp.fcprojb, d->dresidual, N, C, scratch);
    gelu_backward(&g->ctx, d->dfch, a->fch, (size_t)N * 4 * C);
    matmul_backward_input(g->mm, d->dln, MATMUL_F32, 0, d->dfch, bf16_of(g, lp.fcw), N, C, 4 * C);
    matmul_backward_weight(g->mm, gp.fcw, d->dfch, a->ln2, N, C, 4 * C);
    matmul_backward_bias(g->mm, gp.fcb, d->dfch, N, 4 * C, scratch);
    layernorm_backward(&g->ctx, d->dresidual, 1, gp.ln2w, gp.ln2b, d->dln, a->residual2, lp.ln2w, a->ln2_mean,
                       a->ln2_rstd, N, C, scratch);
    matmul_backward_input(g->mm, d->datty, MATMUL_BF16, 0, d->dresidual, bf16_of(g, lp.attprojw), N, C, C);
    matmul_backward_weight(g->mm, gp.attprojw, d->dresidual, a->atty, N, C, C);
    matmul_backward_bias(g->mm, gp.attprojb, d->dresidual, N, C, scratch);
    AttnDims dims = attn_dims(g);
    path_attn_backward(g->pa, &dims, a->q, a->k, a->v, a->w, a->beta, a->gate, a->atty, a->lse, a->qleft, d->datty,
                       d->dq, d->dk, d->dv, a->w ? d->dw : NULL, a->beta ? d->dbeta : NULL, a->gate ? d->dgate : NULL,
                       g->factors[l]);
    attn_inputs_backward(g, &lp, &gp, a);
    layernorm_backward(&g->ctx, d->dresidual, 1, gp.ln1w, gp.ln1b, d->dln, x, lp.ln1w, a->ln1_mean, a->ln1_rstd, N,
                       C, scratch);
}

/* ---------------------------------------------------------------------------------------------
 * the model: gpt.h */

Gpt *gpt_create(const ModelConfig *cfg, int B, int T, uint64_t seed) {
    char why[256];
    if (model_config_check(cfg, why, sizeof why) != 0) die("gpt_create: bad model config: %s", why);
    if (B < 1 || T < 1) die("gpt_create: batch %d x %d must have at least one row and one token", B, T);
    if (T > cfg->max_seq_len) die("gpt_create: T = %d is longer than max_seq_len = %d", T, cfg->max_seq_len);
    if ((long long)B * T > INT_MAX / 4) die("gpt_create: batch %d x %d has too many tokens", B, T);
    int d = cfg->n_embd / cfg->n_head;
    AttnDims probe = {1, 1, (const int[]){0, 1}, cfg->n_head, cfg->n_head, d, 1.0f, 0.0f};
    if (path_attn_check(&probe, why, sizeof why) != 0)
        die("gpt_create: the GPU model cannot run n_embd %d with %d heads: %s", cfg->n_embd, cfg->n_head, why);
    if (layernorm_check(cfg->n_embd, why, sizeof why) != 0) die("gpt_create: the GPU model cannot run %s", why);
    Gpt *g = callocCheck(1, sizeof(Gpt));
    g->cfg = *cfg;
    g->B = B;
    g->T = T;
    g->num_params = param_specs(cfg, g->specs);
    int device = 0; /* the current device: comm_init picked this rank's GPU (0 on one process) */
    if (cudaGetDevice(&device) != cudaSuccess) device = 0;
    if (gpu_ctx_init(&g->ctx, device, why, sizeof why) != 0)
        die("%s: this is the GPU trainer; without a GPU use the CPU one: make train_cpu && ./train_cpu", why);
    g->mm = matmul_create(&g->ctx);
    g->pa = path_attn_create(&g->ctx);
    g->factors = callocCheck(cfg->n_layer, sizeof(PathFactors *));
    for (int l = 0; l < cfg->n_layer; l++) g->factors[l] = path_factors_create();
    allocate(g);
    size_t N = (size_t)B * T, Vp = cfg->padded_vocab_size;
    g->cu_seqlens = mallocCheck(sizeof(int) * (N + 1));
    g->counts = mallocCheck(sizeof(int) * ((Vp > (size_t)T ? Vp : (size_t)T) + 1));
    g->h_losses = mallocCheck(sizeof(float) * N);
    g->h_correct = mallocCheck(sizeof(int) * N);
    float *host = mallocCheck(sizeof(float) * g->num_params);
    param_init(cfg, g->specs, host, seed);
    gpt_copy_in(g, GPT_PARAMS, host); /* gradients and moments: zeros from allocate */
    free(host);
    if (g->rope) {
        float *table = mallocCheck(sizeof(float) * T * d);
        rope_table(table, T, d, cfg->rope_theta);
        upload(g, g->rope, table, sizeof(float) * T * d);
        free(table);
    }
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
    return g;
}

void gpt_free(Gpt *g) {
    if (!g) return;
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
    decode_free(g);
    path_attn_free(g->pa);
    for (int l = 0; l < g->cfg.n_layer; l++) path_factors_free(g->factors[l]);
    free(g->factors);
    matmul_free(g->mm);
    CUDA_CHECK(cudaFree(g->memory));
    CUDA_CHECK(cudaFree(g->state));
    if (g->side) {
        CUDA_CHECK(cudaStreamDestroy(g->side));
        CUDA_CHECK(cudaEventDestroy(g->grads_final));
        CUDA_CHECK(cudaEventDestroy(g->side_done));
    }
    gpu_ctx_free(&g->ctx);
    free(g->layers);
    free(g->tab_host[0]);
    free(g->cu_seqlens);
    free(g->counts);
    free(g->h_losses);
    free(g->h_correct);
    free(g);
}

const ModelConfig *gpt_config(const Gpt *g) { return &g->cfg; }
size_t gpt_num_params(const Gpt *g) { return g->num_params; }

/* State array which: its device memory, which holds the flat parameters [*begin, *end) from its start */
static float *state_buffer(const Gpt *g, int which, size_t *begin, size_t *end, const char *who) {
    int moment = which == GPT_ADAM_M || which == GPT_ADAM_V;
    *begin = moment ? g->moment_begin : 0;
    *end = moment ? g->moment_end : g->num_params;
    switch (which) {
    case GPT_PARAMS: return g->params;
    case GPT_ADAM_M: return g->m;
    case GPT_ADAM_V: return g->v;
    case GPT_GRADS: return g->grads;
    }
    die("%s: which = %d; use GPT_PARAMS (0), GPT_ADAM_M (1), GPT_ADAM_V (2) or GPT_GRADS (3)", who, which);
}

void gpt_copy_out(Gpt *g, int which, float *host) {
    size_t begin, end;
    const float *buf = state_buffer(g, which, &begin, &end, "gpt_copy_out");
    download(g, host + begin, buf, sizeof(float) * (end - begin));
}

void gpt_copy_in(Gpt *g, int which, const float *host) {
    size_t begin, end;
    float *buf = state_buffer(g, which, &begin, &end, "gpt_copy_in");
    upload(g, buf, host + begin, sizeof(float) * (end - begin));
    if (which == GPT_PARAMS) refresh_bf16(g);
}

size_t gpt_state_bytes(const Gpt *g, int which) {
    size_t begin, end;
    state_buffer(g, which, &begin, &end, "gpt_state_bytes");
    if (which == GPT_ADAM_M || which == GPT_ADAM_V) return sizeof(float) * (end - begin);
    return sizeof(float) * g->buffer_elems + (which == GPT_PARAMS ? g->bf16_bytes : 0);
}

void gpt_shard_optimizer(Gpt *g, size_t begin, size_t end, size_t n_padded) {
    if (begin > end || begin < g->moment_begin || end > g->moment_end || n_padded < g->buffer_elems)
        die("gpt_shard_optimizer: shard [%zu, %zu), buffers of %zu: the shard must lie inside the moments the model "
            "holds, [%zu, %zu), and the buffers cannot shrink below %zu", begin, end, n_padded, g->moment_begin,
            g->moment_end, g->buffer_elems);
    size_t n = g->buffer_elems, k = end - begin, from = begin - g->moment_begin;
    float *host = mallocCheck(sizeof(float) * 2 * (n + k)); /* params, grads (n), m, v (k) */
    download(g, host, g->params, sizeof(float) * n);
    download(g, host + n, g->grads, sizeof(float) * n);
    download(g, host + 2 * n, g->m + from, sizeof(float) * k);
    download(g, host + 2 * n + k, g->v + from, sizeof(float) * k);
    CUDA_CHECK(cudaFree(g->state));
    state_allocate(g, n_padded, begin, end);
    upload(g, g->params, host, sizeof(float) * n);
    upload(g, g->grads, host + n, sizeof(float) * n);
    upload(g, g->m, host + 2 * n, sizeof(float) * k);
    upload(g, g->v, host + 2 * n + k, sizeof(float) * k);
    free(host); /* upload returns once the bytes are staged */
}

/* gpt_forward's checks (messages name who), the batch tables, the forward; no loss */
static void forward_tokens(Gpt *g, const char *who, const int *inputs, const int *targets, int B, int T) {
    int V = g->cfg.vocab_size;
    if (B < 1 || T < 1 || B > g->B || T > g->T)
        die("%s: batch %d x %d does not fit the %d x %d given to gpt_create", who, B, T, g->B, g->T);
    check_tokens(who, "input token", inputs, B, T, V);
    for (int n = 0; targets && n < B * T; n++)
        if (targets[n] >= V)
            die("%s: target %d at row %d, position %d is not below the vocabulary size %d (use a negative target "
                "to ignore a position)", who, targets[n], n / T, n % T, V);
    load_batch(g, inputs, targets, B, T);
    run_forward(g);
    g->grad_ready = targets != NULL;
    g->logits_valid = 1;
}

GptLoss gpt_forward(Gpt *g, const int *inputs, const int *targets, int B, int T) {
    forward_tokens(g, "gpt_forward", inputs, targets, B, T);
    GptLoss r = {0.0f, 0, 0};
    if (!targets) return r;
    const ModelConfig *cfg = &g->cfg;
    int N = B * T;
    classifier_forward(&g->ctx, g->losses, g->lse, g->correct, g->logits, g->tab_dev[TAB_TARGETS], N,
                       cfg->vocab_size, cfg->padded_vocab_size);
    CUDA_CHECK(cudaMemcpyAsync(g->h_correct, g->correct, sizeof(int) * N, cudaMemcpyDeviceToHost, g->ctx.stream));
    download(g, g->h_losses, g->losses, sizeof(float) * N);
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        total += g->h_losses[n];
        r.n_valid++;
        r.n_correct += g->h_correct[n];
    }
    r.loss = r.n_valid ? (float)(total / r.n_valid) : 0.0f;
    return r;
}

/* gpt_set_grad_ready: the ranges backward has finished on the model's stream, layer l's or (l = -1) the
 * unstacked tensors', to the callback on the side stream once that has waited for them; after the last ones
 * the model's stream waits for the side stream */
static void grads_ready(Gpt *g, int l) {
    if (!g->ready_fn) return;
    ParamRange r[NUM_PARAM_TENSORS];
    int n = param_layer_ranges(g->specs, g->cfg.n_layer, l, r);
    CUDA_CHECK(cudaEventRecord(g->grads_final, g->ctx.stream));
    CUDA_CHECK(cudaStreamWaitEvent(g->side, g->grads_final, 0));
    for (int i = 0; i < n; i++) g->ready_fn(g->ready_ctx, g->grads, r[i].begin, r[i].end, g->side);
    if (l >= 0) return;
    CUDA_CHECK(cudaEventRecord(g->side_done, g->side));
    CUDA_CHECK(cudaStreamWaitEvent(g->ctx.stream, g->side_done, 0));
}

void gpt_set_grad_ready(Gpt *g, GptGradReady fn, void *ctx) {
    if (fn && !g->side) {
        CUDA_CHECK(cudaStreamCreateWithFlags(&g->side, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&g->grads_final, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&g->side_done, cudaEventDisableTiming));
    }
    g->ready_fn = fn;
    g->ready_ctx = ctx;
}

void gpt_backward(Gpt *g, float grad_scale) {
    const ModelConfig *cfg = &g->cfg;
    if (!g->grad_ready)
        die("gpt_backward: the last gpt_forward had no targets, or its gradient was taken already (the GPU model "
            "turns the logits into their gradient in place: one gpt_backward per gpt_forward)");
    g->grad_ready = 0;
    g->logits_valid = 0;
    int N = g->batch_B * g->batch_T, C = cfg->n_embd, L = cfg->n_layer, Vp = cfg->padded_vocab_size;
    GradActs *d = &g->d;
    classifier_backward(&g->ctx, g->logits, g->lse, g->tab_dev[TAB_TARGETS], grad_scale, N, cfg->vocab_size, Vp);
    matmul_backward_input(g->mm, d->dln, MATMUL_F32, 0, g->logits, bf16_of(g, g->p.wte), N, C, Vp);
    matmul_backward_weight(g->mm, g->gr.wte, g->logits, g->lnf, N, C, Vp);
    layernorm_backward(&g->ctx, d->dresidual, 0, g->gr.lnfw, g->gr.lnfb, d->dln, layer_input(g, L), g->p.lnfw,
                       g->lnf_mean, g->lnf_rstd, N, C, g->colsum_scratch);
    for (int l = L - 1; l >= 0; l--) {
        layer_backward(g, l, layer_input(g, l));
        grads_ready(g, l);
    }
    int **t = g->tab_dev;
    EncoderGroups tok = {g->n_tok_groups, t[TAB_TOK_KEYS], t[TAB_TOK_OFFSET], t[TAB_TOK_ROWS]};
    encoder_backward(&g->ctx, g->gr.wte, d->dresidual, &tok, C);
    if (cfg->attn == ATTN_LEARNED) {
        EncoderGroups pos = {g->n_pos_groups, t[TAB_POS_KEYS], t[TAB_POS_OFFSET], t[TAB_POS_ROWS]};
        encoder_backward(&g->ctx, g->gr.wpe, d->dresidual, &pos, C);
    }
    grads_ready(g, -1);
}

void gpt_zero_grad(Gpt *g) {
    CUDA_CHECK(cudaMemsetAsync(g->grads, 0, sizeof(float) * g->buffer_elems, g->ctx.stream));
}

float *gpt_grad_buffer(Gpt *g) { return g->grads; }
float *gpt_param_buffer(Gpt *g) { return g->params; }
void gpt_params_written(Gpt *g) { refresh_bf16(g); }

double gpt_grad_sum_squares(Gpt *g, size_t begin, size_t end) {
    if (begin > end || end > g->num_params)
        die("gpt_grad_sum_squares: range [%zu, %zu) is not inside the %zu parameters", begin, end, g->num_params);
    return norm_sum_squares(&g->ctx, g->grads + begin, end - begin, g->norm_scratch);
}

float gpt_grad_norm(Gpt *g) { return (float)sqrt(gpt_grad_sum_squares(g, 0, g->num_params)); }

void gpt_update(Gpt *g, const AdamWConfig *opt, float lr, float grad_mult, int t, size_t begin, size_t end) {
    if (t < 1) die("gpt_update: step t = %d must be at least 1", t);
    if (begin > end || begin < g->moment_begin || end > g->moment_end)
        die("gpt_update: range [%zu, %zu) is not inside [%zu, %zu), the parameters whose AdamW moments the model "
            "holds", begin, end, g->moment_begin, g->moment_end);
    AdamWSegment seg[NUM_PARAM_TENSORS];
    int count = adamw_segments(g->specs, begin, end, seg);
    AdamWStep s = {lr, opt->beta1, opt->beta2, opt->eps, 0.0f, grad_mult, (float)(1.0 - pow(opt->beta1, t)),
                   (float)(1.0 - pow(opt->beta2, t))};
    for (int i = 0; i < count; i++) {
        size_t o = seg[i].begin, mo = o - g->moment_begin;
        s.weight_decay = seg[i].decay ? opt->weight_decay : 0.0f;
        adamw_update(&g->ctx, &s, g->params + o, g->m + mo, g->v + mo, g->grads + o, bf16_of(g, g->params + o),
                     seg[i].end - seg[i].begin);
    }
}

/* n bf16 values at src (device) as f32 in out (host) */
static void download_bf16(Gpt *g, float *out, const void *src, size_t n) {
    uint16_t *raw = mallocCheck(sizeof(uint16_t) * n);
    download(g, raw, src, n * BF16);
    for (size_t i = 0; i < n; i++) out[i] = bf16_to_float(raw[i]);
    free(raw);
}

void gpt_gpu_logits(Gpt *g, float *host) {
    if (!g->logits_valid) die("gpt_gpu_logits: no logits (none since gpt_backward turned them into their gradient)");
    download_bf16(g, host, g->logits, (size_t)g->batch_B * g->batch_T * g->cfg.padded_vocab_size);
}

/* ---------------------------------------------------------------------------------------------
 * decoding with the key cache (top comment; the kernels' math in kernels/path_decode.h) */

void gpt_decode_begin(Gpt *g, int n) {
    if (n < 1 || n > g->B) die("gpt_decode_begin: %d sequences; the model was created for 1 to %d", n, g->B);
    if (n > g->dec.seqs) decode_allocate(g, n);
    g->dec.n = n;
    memset(g->dec.len, 0, sizeof(int) * n); /* position 0: the kernels read nothing cached before it */
}

void gpt_decode_step(Gpt *g, const int *tokens, float *logits) {
    const ModelConfig *cfg = &g->cfg;
    DecodeCache *dc = &g->dec;
    LayerActs *a = &dc->a;
    int n = dc->n, S = dc->seqs, T = g->T, C = cfg->n_embd, NH = cfg->n_head, K = cfg->conv_size;
    int Vp = cfg->padded_vocab_size, max_len = 0;
    if (n == 0) die("gpt_decode_step: call gpt_decode_begin first");
    check_tokens("gpt_decode_step", "token", tokens, n, 1, cfg->vocab_size);
    for (int b = 0; b < n; b++) {
        if (cfg->doc_token >= 0 && tokens[b] == cfg->doc_token) dc->len[b] = 0; /* starts a document */
        if (dc->len[b] >= T)
            die("gpt_decode_step: sequence %d would grow past %d tokens, the T given to gpt_create", b, T);
        dc->h_steps[b] = tokens[b];
        dc->h_steps[S + b] = dc->len[b];
        if (dc->len[b] + 1 > max_len) max_len = dc->len[b] + 1;
    }
    upload(g, dc->steps, dc->h_steps, sizeof(int) * 2 * S);
    encoder_forward(&g->ctx, dc->encoded, dc->steps, dc->pos, g->p.wte, cfg->attn == ATTN_LEARNED ? g->p.wpe : NULL,
                    n, C);
    float scale = attn_scale(cfg);
    PathDecodeDims dims = {n, NH, C / NH, T, max_len, scale, attn_gate_scale(cfg->attn, scale)};
    size_t layer_keys = (size_t)S * T * C; /* cache elements of one layer: (S,NH,T,d) */
    const void *x = dc->encoded;
    for (int l = 0; l < cfg->n_layer; l++) {
        LayerParams lp = layer_params(&g->p, cfg, l);
        attn_inputs(g, &lp, a, x, n, dc->pos);
        if (a->w) {
            void *window = (char *)dc->window + (size_t)l * S * K * C * BF16;
            path_decode_window(&g->ctx, window, a->w_up, dc->pos, n, C, K);
            path_layer_w_forward(&g->ctx, a->w, window, lp.wconv, dc->zeros, n * K, K, C, NH, K);
        }
        path_decode_attend(&g->ctx, &dims, dc->pos, dc->k + l * layer_keys, (char *)dc->v + l * layer_keys * BF16,
                           dc->G ? dc->G + (size_t)l * S * NH * T : NULL, a->q, a->k, a->v,
                           a->w ? a->w + (size_t)(K - 1) * C : NULL, (size_t)K * C, a->beta, a->gate, dc->scratch,
                           a->atty);
        block_finish(g, &lp, a, x, n);
        x = a->residual3;
    }
    layernorm_forward(&g->ctx, dc->lnf, dc->lnf_mean, dc->lnf_rstd, x, g->p.lnfw, g->p.lnfb, n, C);
    matmul_forward(g->mm, dc->logits, MATMUL_BF16, dc->lnf, bf16_of(g, g->p.wte), NULL, NULL, n, C, Vp);
    download_bf16(g, logits, dc->logits, (size_t)n * Vp);
    for (int b = 0; b < n; b++) dc->len[b]++;
}

/* The prompt through gpt_forward's pass, then each layer's cache from that layer's activations
 * (kernels/path_prefill.h): the last document of each row, as len decoding steps would leave it. */
void gpt_decode_prefill(Gpt *g, const int *tokens, int n, int T, float *logits) {
    const ModelConfig *cfg = &g->cfg;
    DecodeCache *dc = &g->dec;
    int C = cfg->n_embd, NH = cfg->n_head, K = cfg->conv_size, Vp = cfg->padded_vocab_size;
    if (T < 1 || T > g->T) die("gpt_decode_prefill: a prompt of %d tokens; the model was created for 1 to %d", T, g->T);
    gpt_decode_begin(g, n);
    forward_tokens(g, "gpt_decode_prefill", tokens, NULL, n, T);
    int S = dc->seqs;
    for (int b = 0; b < n; b++) { /* tokens of the row's last document: its last position + 1 */
        dc->len[b] = g->tab_host[TAB_POS][(size_t)b * T + T - 1] + 1;
        dc->h_steps[S + b] = dc->len[b];
    }
    upload(g, dc->pos, dc->h_steps + S, sizeof(int) * n);
    PathPrefillDims dims = {n, T, NH, C / NH, g->T};
    size_t layer_keys = (size_t)S * g->T * C; /* cache elements of one layer: (S,NH,T,d) */
    for (int l = 0; l < cfg->n_layer; l++) {
        const LayerActs *a = &g->layers[l];
        path_prefill_cache(&g->ctx, &dims, dc->pos, dc->k + l * layer_keys, (char *)dc->v + l * layer_keys * BF16,
                           dc->G ? dc->G + (size_t)l * S * NH * g->T : NULL, a->k, a->v, a->w, a->beta, a->gate);
        if (a->w)
            path_prefill_window(&g->ctx, &dims, (char *)dc->window + (size_t)l * S * K * C * BF16, a->w_up, dc->pos,
                                K);
    }
    for (int b = 0; b < n; b++) /* the logits of row b's last token */
        download_bf16(g, logits + (size_t)b * Vp, (char *)g->logits + ((size_t)b * T + T - 1) * Vp * BF16, Vp);
}

int gpt_gpu_decode_keys(Gpt *g, int l, int b, float *host) {
    const DecodeCache *dc = &g->dec;
    int NH = g->cfg.n_head, d = g->cfg.n_embd / NH;
    if (l < 0 || l >= g->cfg.n_layer || b < 0 || b >= dc->n)
        die("gpt_gpu_decode_keys: layer %d of %d, sequence %d of the %d decoded", l, g->cfg.n_layer, b, dc->n);
    int len = dc->len[b];
    for (int h = 0; h < NH; h++) {
        size_t first = (((size_t)l * dc->seqs + b) * NH + h) * g->T; /* cache entry of the document's token 0 */
        download(g, host + (size_t)h * len * d, dc->k + first * d, sizeof(float) * len * d);
    }
    return len;
}

int gpt_on_gpu(void) { return 1; }
