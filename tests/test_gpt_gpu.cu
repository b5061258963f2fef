/* test_gpt_gpu.cu: the GPU model (model/gpt_gpu.c) against the CPU model (model/gpt_cpu.c, the fp32
 * oracle, linked in as cpu_gpt_*: tests/gpt_cpu_twin.h) from the same parameters and batch, for every
 * attention type on small configs (head dims 32, 64, 128; T not a multiple of 64; documents at odd
 * offsets, one of them a single token at a row's end). Per case:
 *   1. init: gpt_create's parameters equal the CPU model's (the same param_init, on the host)
 *   2. forward: logits (relative RMS overall and of the worst row), loss, n_valid; n_correct against the
 *      argmax of the GPU's own logits (bf16 logits tie more often than the CPU's f32 ones)
 *   3. backward: every parameter gradient by tensor name (relative RMS) and the gradient norm; a second
 *      forward and backward without zeroing doubles the gradients (accumulation, repeatability)
 *   4. AdamW: one update from the same state (parameters, m, v, gradients), the GPU's in two shards
 *      [0, k), [k, n) with grad_mult 0.5: each tensor's change, m, v. ZeRO-1: a second GPU model with the
 *      moments of a shard [b, e) strictly inside the buffer (gpt_shard_optimizer, padded buffers): its
 *      update from the same state equals the unsharded GPU update on [b, e) bit for bit and leaves the rest
 *      alone, its moments take 4 (e - b) bytes each and copy out into [b, e) only, its gradient padding is
 *      0, its sum of squares over [b, e) is the CPU model's; the start written over the update through
 *      gpt_param_buffer and gpt_params_written gives the loss it gives through gpt_copy_in, bit for bit
 *   4b. overlap (gpt_set_grad_ready): two micro-batches, the callback set for the second only (train.c's use);
 *      it copies each range on the stream it is given into a buffer of its own: afterwards the copies equal
 *      the gradients bit for bit (the side stream waited for each layer: a copy made early would hold the
 *      first micro-batch's half), every parameter was handed over exactly once, always with a stream
 *   5. training: STEPS AdamW steps on the batch from the same start: the losses, their decrease, each
 *      tensor's change, the moments
 *   6. greedy decoding through gpt_decode_* (the key cache): its logits against the full forward's at the
 *      same positions, and every chosen token the argmax of the full forward (near-ties excepted); after
 *      warm-up runs that leave stale state in the cache (and grow it), keeping the batch's doc_tokens so
 *      documents start inside the generated text and the rows' documents differ in length
 *   7. the same after a prompt through gpt_decode_prefill (one forward pass; documents start inside it): its
 *      logits and every following step's against the forward's, greedy choices, and its cached keys against
 *      those of decoding steps over the same prompt
 * and, GPU only, a realistic shape (width 768, 12 heads, T 1024, GPT-2's vocabulary, documents): the loss
 * at param_init near ln V, finite gradients, the loss falling over a few steps, and the step time; then
 * decoding the rows' first 256 tokens against the forward, and its time per step and the prefill's.
 * Parameters are drawn as dev/gpt_ref.py draws them (large enough that attention and every branch
 * matter). A failing tensor gets a detail line: both RMS, the ratio <gpu,cpu>/<cpu,cpu> (a wrong factor
 * shows as a ratio away from 1), and the worst element with its index in the tensor's shape.
 * Usage: test_gpt_gpu [SUBSTRING]  runs the cases whose name contains it. Without a CUDA device it
 * prints a skip line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../kernels/gpu.h"
#include "../model/gpt_gpu.h"
#include "check.h"
#include "gpt_cpu_twin.h"

#define VOCAB 300    /* padded to 384: the padded columns are exercised */
#define DOC_TOKEN 1
#define STEPS 10     /* the loss trajectory: GPU and CPU models, the same start and batch, STEPS AdamW steps */
#define PROMPT 6     /* given tokens per row before greedy decoding */
#define PREFILL_PROMPT 33 /* given tokens per row through gpt_decode_prefill: not a multiple of 64; with documents,
                             row 0's last in it starts at 13 (20 tokens cached), row 1's at 31 (2 tokens: less
                             than the conv's window of 3) */
#define LR_ADAMW 1e-2f /* the single update: large enough that every change stands well above f32 rounding */
#define LR_TRAIN 3e-3f /* the training steps: the CPU model's loss falls from ~6 to 0.07-1.05 (by case) over
                          STEPS steps on one batch */

/* Bars. The GPU keeps activations in bf16 (8 bits of mantissa, 2^-9 = 2e-3 relative per rounding) and
 * matmul weights in bf16; the CPU model is f32 throughout, so these measure the GPU's rounding. */
#define INIT_BAR 0.0         /* max abs: the same param_init on the host, copied bit for bit */
#define LOGITS_BAR 2e-2      /* rel_rms: a dozen bf16 roundings in sequence through 2 layers, ~5e-3; a wrong
                                conv tap, rope sign or document boundary moves whole rows by 1e-1 and more */
#define LOGITS_ROW_BAR 3e-2  /* rel_rms of the worst (row, position), ~1e-2 expected: a bug confined to a few
                                positions (a conv tap across a document start: 3.3e-2) shows here when the
                                overall figure hides it */
#define LOSS_BAR 2e-2        /* abs, loss ~6: bf16 logits (ulp 1.6e-2 at 3) average out over the tokens */
#define GRAD_BAR 5e-2        /* rel_rms per tensor: bf16 activations and gradients, ~1e-2 expected; a missing
                                term or a wrong factor is O(1) */
#define NORM_BAR 2e-2        /* relative: the global norm, dominated by the large gradients */
#define ACCUM_BAR 1e-4       /* rel_rms of (second accumulation) vs 2 x (first): the same arithmetic twice, up to
                                the attention backward's f32 atomics (order-dependent in the last bits) */
#define ADAMW_DELTA_BAR 1e-4 /* rel_rms of one update's change per tensor, from identical state: f32 rounding of
                                p - lr u is ~ulp(p) ~ 5e-7 against changes of ~LR_ADAMW */
#define ADAMW_MOMENT_BAR 1e-6 /* rel_rms of m, v after one update: one or two f32 roundings (FMA contraction) */
#define ZERO_SHARD_BAR 0.0   /* max abs: a shard's update runs the same per-element arithmetic (adamw_one) */
#define ZERO_SUMSQ_BAR 1e-12 /* relative: the sum of squares in double, in the GPU's order and the CPU's */
#define ZERO_PAD 5           /* padding of the sharded model's buffers */
#define ZERO_SENTINEL (-7.0f) /* what gpt_copy_out must leave outside the shard */
#define STEPS_LOSS_BAR 5e-2  /* max abs over the STEPS losses (each step's loss within it): LOSS_BAR plus the
                                trajectories drifting apart */
#define STEPS_DROP_BAR 0.2   /* relative error of the loss decrease over the steps, ~1e-3 expected: a stale bf16
                                weight copy (only the f32 norms and embeddings learn) gives ~0.8 */
#define STEPS_DELTA_BAR 0.3  /* rel_rms per tensor of the change after STEPS steps: Adam normalises each element,
                                so elements whose gradient is near 0 move by ~lr with a sign set by rounding
                                (bias gradients, sums over tokens that mostly cancel, show it most) */
#define STEPS_MOMENT_BAR 0.1 /* rel_rms of m, v after the steps: gradient-level error, accumulated */
#define DECODE_BAR 2e-2      /* rel_rms of decoding's logits against the full forward's: the same GEMMs on other
                                batch shapes, where cuBLASLt may pick other algorithms (bf16 outputs), and the
                                key cache's f32 attention against the forward's 16-bit tiles (about the forward's
                                own error against the CPU, ~5e-3); a Householder factor in the wrong place, a
                                missing gate or a stale conv tap changes the attention output by O(1) */
#define PREFILL_KEYS_BAR 1e-3 /* rel_rms of layer 0's cached keys, prefill against decoding steps over the same
                                prompt: the same f32 math (~1e-6 apart: another order of roundings) on inputs from
                                the same bf16 GEMMs, which other batch shapes may round the other way in the rare
                                elements whose f32 sums sit at a rounding boundary (~1e-4 of them, 4e-3 each);
                                deeper layers inherit the attention's rounding, as decoding's logits do, and get
                                DECODE_BAR. A Householder factor missing, extra or out of order moves the keys by
                                ~beta/sqrt(d) ~ 1e-1 */
#define TIE_GAP 0.1          /* a greedy choice may differ from the forward's argmax only if their logits are
                                this close (a few bf16 ulps of a logit ~3: 1.6e-2 each) */
#define SCALE_LOSS_BAR 0.5   /* |loss - ln V| at param_init (std 0.02): near-uniform logits, ln V + var/2 ~ +0.15 */

typedef struct {
    const char *name;
    AttnType attn;
    int L, NH, C, B, T;
    int docs; /* doc_token at odd offsets inside the rows */
} Case;

typedef struct { /* one case's two models and data */
    const Case *c;
    ModelConfig cfg;
    Gpt *cpu, *gpu; /* both typed Gpt here: see gpt_cpu_twin.h */
    size_t P;
    int N, V, Vp;
    int *inputs, *targets; /* (B,T) */
    float *start;          /* (P) the test's parameters */
    AdamWConfig opt;
} Twin;

static float *fbuf(size_t n) { return (float *)mallocCheck(sizeof(float) * (n ? n : 1)); }

static void label(char *buf, size_t len, const Twin *w, const char *what) {
    snprintf(buf, len, "%s %s", w->c->name, what);
}

/* "[i, j, k]" of flat index e in spec's shape */
static void shape_index(char *buf, size_t len, const ParamSpec *spec, size_t e) {
    size_t idx[3] = {0, 0, 0};
    for (int i = spec->ndim - 1; i >= 0; i--) {
        idx[i] = e % spec->shape[i];
        e /= spec->shape[i];
    }
    if (spec->ndim == 1) snprintf(buf, len, "[%zu]", idx[0]);
    else if (spec->ndim == 2) snprintf(buf, len, "[%zu, %zu]", idx[0], idx[1]);
    else snprintf(buf, len, "[%zu, %zu, %zu]", idx[0], idx[1], idx[2]);
}

static void detail(const float *gpu, const float *cpu, size_t n, const ParamSpec *spec) {
    double gg = 0.0, cc = 0.0, gc = 0.0, worst = -1.0;
    size_t at = 0, nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double g = gpu[i], c = cpu[i], e = fabs(g - c);
        if (!isfinite(g)) nonfinite++;
        gg += g * g;
        cc += c * c;
        gc += g * c;
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    char where[64];
    if (spec) shape_index(where, sizeof where, spec, at);
    else snprintf(where, sizeof where, "[%zu]", at);
    printf("    detail: rms gpu %.4e cpu %.4e | <gpu,cpu>/<cpu,cpu> %.5f | non-finite %zu | worst |diff| %.3e at %s: "
           "gpu %.6g cpu %.6g\n",
           sqrt(gg / n), sqrt(cc / n), cc > 0 ? gc / cc : 0.0, nonfinite, worst, where, gpu[at], cpu[at]);
}

/* one relative-RMS check line, and the detail line when it fails */
static void compare(const Twin *w, const char *what, const float *gpu, const float *cpu, size_t n,
                    const ParamSpec *spec, double bar) {
    char name[160];
    label(name, sizeof name, w, what);
    if (!check_value(name, "rel_rms", rel_rms_f(gpu, cpu, n), bar)) detail(gpu, cpu, n, spec);
}

/* every tensor of the flat buffers, named "<prefix> <tensor>" */
static void compare_tensors(const Twin *w, const char *prefix, const float *gpu, const float *cpu, double bar) {
    const ParamSpec *specs = w->cpu->specs;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = specs[i].n_elems;
        if (n == 0) continue;
        char what[96];
        snprintf(what, sizeof what, "%s %s", prefix, specs[i].name);
        compare(w, what, gpu + off, cpu + off, n, &specs[i], bar);
        off += n;
    }
}

/* ---------------------------------------------------------------------------------------------
 * setup */

/* dev/gpt_ref.py's draw from x ~ N(0, 1): matrices N(0, 1/fan_in), residual projections half that std,
 * norms 1 + N(0, 0.1^2), biases N(0, 0.2^2), betab N(0, 1) (beta over (0, 2)), gateb N(2, 0.5^2) */
static double draw_value(const ParamSpec *s, double x) {
    if (s->init == INIT_ONES) return 1.0 + 0.1 * x;
    if (strcmp(s->name, "betab") == 0) return x;
    if (strcmp(s->name, "gateb") == 0) return 2.0 + 0.5 * x;
    if (s->init == INIT_ZEROS) return 0.2 * x;
    return x / sqrt((double)s->shape[s->ndim - 1]) * (s->init == INIT_NORMAL_RESIDUAL ? 0.5 : 1.0);
}

static void draw_params(const ParamSpec *specs, float *p, Rng *r) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++)
        for (size_t e = 0; e < specs[i].n_elems; e++) *p++ = (float)draw_value(&specs[i], rng_normal(r));
}

/* random tokens; with docs, DOC_TOKEN only at odd offsets (a 1-token document at row 0's end); targets
 * random, every 5th (from 3) ignored */
static void draw_batch(const Twin *w, Rng *r) {
    int B = w->c->B, T = w->c->T;
    for (int n = 0; n < B * T; n++) {
        int tok = (int)rng_below(r, VOCAB);
        if (w->c->docs && tok == DOC_TOKEN) tok = DOC_TOKEN + 1;
        w->inputs[n] = tok;
        w->targets[n] = n % 5 == 3 ? -1 : (int)rng_below(r, VOCAB);
    }
    if (!w->c->docs) return;
    const int row0[] = {13, 50, T - 1}, row1[] = {1, 31};
    for (int i = 0; i < 3; i++) w->inputs[row0[i]] = DOC_TOKEN;
    for (int i = 0; i < 2 && B > 1; i++) w->inputs[T + row1[i]] = DOC_TOKEN;
}

static void set_state(const Twin *w, int which, const float *x) {
    cpu_gpt_copy_in(w->cpu, which, x);
    gpt_copy_in(w->gpu, which, x);
}

/* ---------------------------------------------------------------------------------------------
 * checks */

/* 1 */
static void check_init(const Twin *w) {
    float *a = fbuf(w->P), *b = fbuf(w->P);
    gpt_copy_out(w->gpu, GPT_PARAMS, a);
    cpu_gpt_copy_out(w->cpu, GPT_PARAMS, b);
    char name[160];
    label(name, sizeof name, w, "init params equal");
    check_value(name, "max_abs", max_abs_diff_f(a, b, w->P), INIT_BAR);
    free(a);
    free(b);
}

static int argmax(const float *z, int n) {
    int best = 0;
    for (int v = 1; v < n; v++)
        if (z[v] > z[best]) best = v;
    return best;
}

/* 2 and 3; leaves the CPU's gradients in grads */
static void check_forward_backward(const Twin *w, float *grads) {
    char name[160];
    size_t NV = (size_t)w->N * w->Vp;
    cpu_gpt_zero_grad(w->cpu);
    gpt_zero_grad(w->gpu);
    GptLoss lc = cpu_gpt_forward(w->cpu, w->inputs, w->targets, w->c->B, w->c->T);
    GptLoss lg = gpt_forward(w->gpu, w->inputs, w->targets, w->c->B, w->c->T);
    float *logits = fbuf(NV);
    gpt_gpu_logits(w->gpu, logits);
    const float *ref = w->cpu->acts.logits;
    compare(w, "logits", logits, ref, NV, NULL, LOGITS_BAR);
    double worst = 0.0;
    int worst_n = 0, hits = 0;
    for (int n = 0; n < w->N; n++) {
        double e = rel_rms_f(logits + (size_t)n * w->Vp, ref + (size_t)n * w->Vp, w->Vp);
        if (!(e <= worst)) {
            worst = e;
            worst_n = n;
        }
        hits += w->targets[n] >= 0 && argmax(logits + (size_t)n * w->Vp, w->V) == w->targets[n];
    }
    label(name, sizeof name, w, "logits worst row");
    if (!check_value(name, "rel_rms", worst, LOGITS_ROW_BAR))
        printf("    detail: row %d, position %d, token %d\n", worst_n / w->c->T, worst_n % w->c->T,
               w->inputs[worst_n]);
    label(name, sizeof name, w, "loss");
    if (!check_value(name, "abs", fabs((double)lg.loss - lc.loss), LOSS_BAR))
        printf("    detail: gpu %.6f cpu %.6f\n", lg.loss, lc.loss);
    char detail_str[96];
    snprintf(detail_str, sizeof detail_str, "gpu %d cpu %d", lg.n_valid, lc.n_valid);
    label(name, sizeof name, w, "n_valid");
    check_true(name, lg.n_valid == lc.n_valid, detail_str);
    snprintf(detail_str, sizeof detail_str, "gpu %d, argmax of its logits %d (cpu %d)", lg.n_correct, hits,
             lc.n_correct);
    label(name, sizeof name, w, "n_correct");
    check_true(name, lg.n_correct == hits, detail_str);

    cpu_gpt_backward(w->cpu, 1.0f / lc.n_valid);
    gpt_backward(w->gpu, 1.0f / lg.n_valid);
    float *gg = fbuf(w->P);
    gpt_copy_out(w->gpu, GPT_GRADS, gg);
    cpu_gpt_copy_out(w->cpu, GPT_GRADS, grads);
    compare_tensors(w, "grad", gg, grads, GRAD_BAR);
    double norm_c = cpu_gpt_grad_norm(w->cpu), norm_g = gpt_grad_norm(w->gpu);
    label(name, sizeof name, w, "grad norm");
    if (!check_value(name, "rel", fabs(norm_g - norm_c) / norm_c, NORM_BAR))
        printf("    detail: gpu %.6g cpu %.6g\n", norm_g, norm_c);

    gpt_forward(w->gpu, w->inputs, w->targets, w->c->B, w->c->T);
    gpt_backward(w->gpu, 1.0f / lg.n_valid);
    float *twice = fbuf(w->P);
    gpt_copy_out(w->gpu, GPT_GRADS, twice);
    for (size_t i = 0; i < w->P; i++) gg[i] *= 2.0f;
    compare(w, "grads accumulate (2 x)", twice, gg, w->P, NULL, ACCUM_BAR);
    free(logits);
    free(gg);
    free(twice);
}

/* per-tensor changes (after - before) of both models, compared */
static void compare_deltas(const Twin *w, const char *prefix, const float *before, double bar, int drop_key_bias) {
    float *dg = fbuf(w->P), *dc = fbuf(w->P);
    gpt_copy_out(w->gpu, GPT_PARAMS, dg);
    cpu_gpt_copy_out(w->cpu, GPT_PARAMS, dc);
    for (size_t i = 0; i < w->P; i++) {
        dg[i] -= before[i];
        dc[i] -= before[i];
    }
    if (drop_key_bias) { /* the GPU's key bias change is taken as the CPU's: see check_training */
        size_t C = w->cfg.n_embd, qkvb = (size_t)(w->cpu->params.qkvb - w->cpu->params_memory);
        for (int l = 0; l < w->cfg.n_layer; l++) {
            size_t key_bias = qkvb + (size_t)l * 3 * C + C;
            memcpy(dg + key_bias, dc + key_bias, sizeof(float) * C);
        }
    }
    compare_tensors(w, prefix, dg, dc, bar);
    free(dg);
    free(dc);
}

/* the moments m and v of both models */
static void compare_moments(const Twin *w, const char *prefix, double bar) {
    float *a = fbuf(w->P), *b = fbuf(w->P);
    for (int which = GPT_ADAM_M; which <= GPT_ADAM_V; which++) {
        char what[96];
        gpt_copy_out(w->gpu, which, a);
        cpu_gpt_copy_out(w->cpu, which, b);
        snprintf(what, sizeof what, "%s %s", prefix, which == GPT_ADAM_M ? "m" : "v");
        compare(w, what, a, b, w->P, NULL, bar);
    }
    free(a);
    free(b);
}

/* the moments of check_adamw's state, from the gradients */
static void draw_moments(const Twin *w, const float *grads, float *m, float *v) {
    Rng r;
    rng_init(&r, 99);
    for (size_t i = 0; i < w->P; i++) {
        m[i] = (float)(grads[i] * (1.0 + 0.5 * rng_normal(&r)));
        v[i] = (float)((double)grads[i] * grads[i] * (0.5 + rng_uniform(&r)) + 1e-12);
    }
}

/* 4: grads are the CPU's gradients at the start */
static void check_adamw(const Twin *w, const float *grads) {
    float *m = fbuf(w->P), *v = fbuf(w->P);
    draw_moments(w, grads, m, v);
    set_state(w, GPT_PARAMS, w->start);
    set_state(w, GPT_ADAM_M, m);
    set_state(w, GPT_ADAM_V, v);
    set_state(w, GPT_GRADS, grads);
    size_t k = w->P / 2 + 7; /* inside a tensor */
    cpu_gpt_update(w->cpu, &w->opt, LR_ADAMW, 0.5f, 3, 0, w->P);
    gpt_update(w->gpu, &w->opt, LR_ADAMW, 0.5f, 3, 0, k);
    gpt_update(w->gpu, &w->opt, LR_ADAMW, 0.5f, 3, k, w->P);
    compare_deltas(w, "adamw step change", w->start, ADAMW_DELTA_BAR, 0);
    compare_moments(w, "adamw step", ADAMW_MOMENT_BAR);
    free(m);
    free(v);
}

/* 4, ZeRO-1: after check_adamw, whose GPU model holds the unsharded update of the same state */
static void check_zero_shard(const Twin *w, const float *grads) {
    size_t P = w->P, b = P / 3 + 5, e = 2 * P / 3 + 3; /* b odd: moments aligned unlike the parameters */
    float *state[3] = {w->start, fbuf(P), fbuf(P)}, *want = fbuf(P), *got = fbuf(P);
    draw_moments(w, grads, state[1], state[2]);
    Gpt *z = gpt_create(&w->cfg, w->c->B, w->c->T, 1);
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) gpt_copy_in(z, which, state[which]);
    gpt_copy_in(z, GPT_GRADS, grads);
    gpt_shard_optimizer(z, b, e, P + ZERO_PAD);
    char name[160], detail[160];
    size_t grad_bytes = gpt_state_bytes(z, GPT_GRADS), m_bytes = gpt_state_bytes(z, GPT_ADAM_M);
    size_t v_bytes = gpt_state_bytes(z, GPT_ADAM_V);
    snprintf(detail, sizeof detail, "bytes: grads %zu m %zu v %zu; want %zu, %zu, %zu", grad_bytes, m_bytes, v_bytes,
             4 * (P + ZERO_PAD), 4 * (e - b), 4 * (e - b));
    label(name, sizeof name, w, "ZeRO-1 moments shard-sized");
    check_true(name, grad_bytes == 4 * (P + ZERO_PAD) && m_bytes == 4 * (e - b) && v_bytes == 4 * (e - b), detail);
    gpt_update(z, &w->opt, LR_ADAMW, 0.5f, 3, b, e);
    static const char *what[3] = {"ZeRO-1 shard update params", "ZeRO-1 shard update m", "ZeRO-1 shard update v"};
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) {
        gpt_copy_out(w->gpu, which, want); /* the unsharded update inside [b, e); outside: the start, or untouched */
        for (size_t i = 0; i < P; i++) {
            if (i < b || i >= e) want[i] = which == GPT_PARAMS ? state[which][i] : ZERO_SENTINEL;
            got[i] = ZERO_SENTINEL;
        }
        gpt_copy_out(z, which, got);
        label(name, sizeof name, w, what[which]);
        check_value(name, "max_abs", max_abs_diff_f(got, want, P), ZERO_SHARD_BAR);
    }
    double ss_g = gpt_grad_sum_squares(z, b, e), ss_c = cpu_gpt_grad_sum_squares(w->cpu, b, e);
    label(name, sizeof name, w, "ZeRO-1 shard sum of squares");
    check_value(name, "rel", fabs(ss_g - ss_c) / ss_c, ZERO_SUMSQ_BAR);
    float pad[ZERO_PAD], zeros[ZERO_PAD] = {0};
    CUDA_CHECK(cudaMemcpy(pad, gpt_grad_buffer(z) + P, sizeof pad, cudaMemcpyDeviceToHost));
    label(name, sizeof name, w, "ZeRO-1 gradient padding");
    check_value(name, "max_abs", max_abs_diff_f(pad, zeros, ZERO_PAD), 0.0);
    /* the start written into the parameter buffer (as comm_allgather does) over the updated shard */
    CUDA_CHECK(cudaMemcpy(gpt_param_buffer(z), w->start, sizeof(float) * P, cudaMemcpyHostToDevice));
    gpt_params_written(z);
    GptLoss written = gpt_forward(z, w->inputs, w->targets, w->c->B, w->c->T);
    gpt_copy_in(z, GPT_PARAMS, w->start);
    GptLoss copied = gpt_forward(z, w->inputs, w->targets, w->c->B, w->c->T);
    snprintf(detail, sizeof detail, "loss %.9g, through gpt_copy_in %.9g", written.loss, copied.loss);
    label(name, sizeof name, w, "ZeRO-1 gpt_params_written refreshes the bf16 copies");
    check_true(name, written.loss == copied.loss, detail);
    gpt_free(z);
    free(state[1]);
    free(state[2]);
    free(want);
    free(got);
}

/* 4b: what gpt_set_grad_ready's callback saw */
typedef struct {
    float *copy;  /* (P) device: the ranges, copied on the stream given */
    int *count;   /* (P) host: how often each parameter was handed over */
    int calls, null_streams;
} ReadyLog;

static void copy_range(void *ctx, float *grads, size_t begin, size_t end, void *stream) {
    ReadyLog *log = (ReadyLog *)ctx;
    CUDA_CHECK(cudaMemcpyAsync(log->copy + begin, grads + begin, sizeof(float) * (end - begin), cudaMemcpyDeviceToDevice,
                               (cudaStream_t)stream));
    for (size_t i = begin; i < end; i++) log->count[i]++;
    log->calls++;
    log->null_streams += stream == NULL;
}

static void check_grad_ready(const Twin *w) {
    size_t P = w->P, once = 0;
    ReadyLog log = {NULL, (int *)callocCheck(P, sizeof(int)), 0, 0};
    CUDA_CHECK(cudaMalloc(&log.copy, sizeof(float) * P));
    set_state(w, GPT_PARAMS, w->start);
    gpt_zero_grad(w->gpu);
    GptLoss l = gpt_forward(w->gpu, w->inputs, w->targets, w->c->B, w->c->T);
    gpt_backward(w->gpu, 1.0f / l.n_valid);
    gpt_forward(w->gpu, w->inputs, w->targets, w->c->B, w->c->T);
    gpt_set_grad_ready(w->gpu, copy_range, &log);
    gpt_backward(w->gpu, 1.0f / l.n_valid);
    gpt_set_grad_ready(w->gpu, NULL, NULL);
    float *grads = fbuf(P), *copy = fbuf(P);
    gpt_copy_out(w->gpu, GPT_GRADS, grads); /* on the model's stream, which waited for the side stream */
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(copy, log.copy, sizeof(float) * P, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < P; i++) once += log.count[i] == 1;
    char name[160], detail[160];
    snprintf(detail, sizeof detail, "%d calls, %zu of %zu parameters once, %d without a stream", log.calls, once, P,
             log.null_streams);
    label(name, sizeof name, w, "grad_ready covers each parameter once");
    check_true(name, once == P && log.null_streams == 0, detail);
    label(name, sizeof name, w, "grad_ready copies on its stream = final gradients");
    check_value(name, "max_abs", max_abs_diff_f(copy, grads, P), 0.0);
    CUDA_CHECK(cudaFree(log.copy));
    free(log.count);
    free(grads);
    free(copy);
}

/* The key bias gets a near-zero gradient in every type: without positions in the keys (nope, fox, learned)
 * it adds q_i.b to every logit of query i, which softmax ignores (exactly 0), and with rope only the fast
 * rotating pairs see it. Adam turns such gradients into steps of ~lr whose signs rounding decides, so the
 * training check takes the GPU's key-bias change as the CPU's (its gradient is checked in 3, its update
 * in 4); test_gpt2pathattn.c does the same for the exactly invariant types. */
/* 5 */
static void check_training(const Twin *w) {
    float *zeros = fbuf(w->P);
    memset(zeros, 0, sizeof(float) * w->P);
    set_state(w, GPT_PARAMS, w->start);
    set_state(w, GPT_ADAM_M, zeros);
    set_state(w, GPT_ADAM_V, zeros);
    double lc[STEPS], lg[STEPS], worst = 0.0;
    for (int s = 0; s < STEPS; s++) {
        cpu_gpt_zero_grad(w->cpu);
        gpt_zero_grad(w->gpu);
        GptLoss a = cpu_gpt_forward(w->cpu, w->inputs, w->targets, w->c->B, w->c->T);
        GptLoss b = gpt_forward(w->gpu, w->inputs, w->targets, w->c->B, w->c->T);
        cpu_gpt_backward(w->cpu, 1.0f / a.n_valid);
        gpt_backward(w->gpu, 1.0f / b.n_valid);
        cpu_gpt_update(w->cpu, &w->opt, LR_TRAIN, 1.0f, s + 1, 0, w->P);
        gpt_update(w->gpu, &w->opt, LR_TRAIN, 1.0f, s + 1, 0, w->P);
        lc[s] = a.loss;
        lg[s] = b.loss;
        if (!(fabs(lg[s] - lc[s]) <= worst)) worst = fabs(lg[s] - lc[s]);
    }
    char name[160];
    label(name, sizeof name, w, "training losses");
    int ok = check_value(name, "max_abs", worst, STEPS_LOSS_BAR);
    double drop_c = lc[0] - lc[STEPS - 1], drop_g = lg[0] - lg[STEPS - 1];
    label(name, sizeof name, w, "training loss decrease");
    ok &= check_value(name, "rel", fabs(drop_g - drop_c) / fabs(drop_c), STEPS_DROP_BAR);
    if (!ok)
        for (int s = 0; s < STEPS; s++) printf("    detail: step %d loss gpu %.6f cpu %.6f\n", s + 1, lg[s], lc[s]);
    compare_deltas(w, "training change", w->start, STEPS_DELTA_BAR, 1);
    compare_moments(w, "training", STEPS_MOMENT_BAR);
    free(zeros);
}

/* token i of the batch is a doc_token that decoding keeps instead of its greedy choice */
static int forced_doc(const Twin *w, int i) { return w->c->docs && w->inputs[i] == DOC_TOKEN; }

/* every cached key of layer l, the decoded sequences one after another (B, NH, len_b, d): returns the floats */
static size_t layer_keys(const Twin *w, int l, float *host) {
    size_t total = 0;
    for (int b = 0; b < w->c->B; b++)
        total += (size_t)gpt_gpu_decode_keys(w->gpu, l, b, host + total) * w->cfg.n_embd;
    return total;
}

/* 7, keys: the prompt (the first P tokens of every row of tokens (B,T)) through decoding steps, then through
 * gpt_decode_prefill: each layer's cached keys of the two. Leaves the prefill's cache, and its logits in out. */
static void check_prefill_keys(const Twin *w, const int *tokens, int P, float *out) {
    int B = w->c->B, T = w->c->T, L = w->cfg.n_layer;
    size_t per_layer = (size_t)B * T * w->cfg.n_embd; /* the most a layer holds: (B, NH, T, d) */
    int *prompt = (int *)mallocCheck(sizeof(int) * B * P), *step = (int *)mallocCheck(sizeof(int) * B);
    float *by_steps = fbuf(L * per_layer), *by_prefill = fbuf(per_layer);
    size_t *n_steps = (size_t *)mallocCheck(sizeof(size_t) * L);
    gpt_decode_begin(w->gpu, B);
    for (int t = 0; t < P; t++) {
        for (int b = 0; b < B; b++) step[b] = tokens[b * T + t];
        gpt_decode_step(w->gpu, step, out);
    }
    for (int l = 0; l < L; l++) n_steps[l] = layer_keys(w, l, by_steps + l * per_layer);
    for (int b = 0; b < B; b++) memcpy(prompt + b * P, tokens + b * T, sizeof(int) * P);
    gpt_decode_prefill(w->gpu, prompt, B, P, out);
    for (int l = 0; l < L; l++) {
        char what[96], name[160], lens[96];
        size_t n = layer_keys(w, l, by_prefill);
        snprintf(what, sizeof what, "prefill cache keys layer %d vs decode steps", l);
        if (n != n_steps[l]) {
            label(name, sizeof name, w, what);
            snprintf(lens, sizeof lens, "%zu keys cached, decoding steps %zu", n, n_steps[l]);
            check_true(name, 0, lens);
            continue;
        }
        compare(w, what, by_prefill, by_steps + l * per_layer, n, NULL, l == 0 ? PREFILL_KEYS_BAR : DECODE_BAR);
    }
    free(prompt);
    free(step);
    free(by_steps);
    free(by_prefill);
    free(n_steps);
}

/* positions [first, T) of every row of x (B,T,Vp), moved to the front of x: returns their floats */
static size_t from_position(float *x, int B, int T, int Vp, int first) {
    size_t row = (size_t)(T - first) * Vp;
    for (int b = 0; b < B; b++) memmove(x + b * row, x + ((size_t)b * T + first) * Vp, sizeof(float) * row);
    return (size_t)B * row;
}

/* 6 (prefill 0): first runs of random tokens that leave stale state in the cache (one sequence, then all B:
 * the cache grows; then one of the B) and that gpt_decode_begin must forget; then greedy decoding after a
 * prompt of PROMPT tokens, one decoding step each, keeping the batch's doc_tokens, so documents start inside
 * the generated text at other positions in each row and the sequences of one step have documents of
 * different lengths.
 * 7 (prefill 1): the same after a prompt of PREFILL_PROMPT tokens through gpt_decode_prefill (documents start
 * inside it, so the cache keeps each row's last one), its keys checked first (check_prefill_keys); its logits
 * and every following step's against the forward's. */
static void check_decoding(const Twin *w, int prefill) {
    int B = w->c->B, T = w->c->T, Vp = w->Vp, P = prefill ? PREFILL_PROMPT : PROMPT;
    int first = prefill ? P - 1 : 0; /* the first position whose logits decoding gives (the prefill's last) */
    size_t NV = (size_t)B * T * Vp;
    int *tokens = (int *)mallocCheck(sizeof(int) * B * T), *step = (int *)mallocCheck(sizeof(int) * B);
    float *dec = fbuf(NV), *fwd = fbuf(NV), *out = fbuf((size_t)B * Vp);
    set_state(w, GPT_PARAMS, w->start);
    Rng r;
    rng_init(&r, 5);
    const int warmup[3][2] = {{1, 3}, {B, 5}, {1, 4}}; /* (sequences, steps) */
    for (int i = 0; i < 3; i++) {
        gpt_decode_begin(w->gpu, warmup[i][0]);
        for (int s = 0; s < warmup[i][1]; s++) {
            for (int b = 0; b < warmup[i][0]; b++) step[b] = (int)rng_below(&r, VOCAB);
            gpt_decode_step(w->gpu, step, out);
        }
    }
    memcpy(tokens, w->inputs, sizeof(int) * B * T);
    if (prefill) check_prefill_keys(w, tokens, P, out);
    else gpt_decode_begin(w->gpu, B);
    for (int t = first; t < T; t++) {
        if (!prefill || t >= P) { /* else out holds the prefill's logits */
            for (int b = 0; b < B; b++) step[b] = tokens[b * T + t];
            gpt_decode_step(w->gpu, step, out);
        }
        for (int b = 0; b < B; b++) {
            memcpy(dec + ((size_t)b * T + t) * Vp, out + (size_t)b * Vp, sizeof(float) * Vp);
            if (t + 1 < T && t + 1 >= P && !forced_doc(w, b * T + t + 1))
                tokens[b * T + t + 1] = argmax(out + (size_t)b * Vp, w->V);
        }
    }
    gpt_forward(w->gpu, tokens, NULL, B, T);
    gpt_gpu_logits(w->gpu, fwd);
    int mismatches = 0, at = -1;
    for (int b = 0; b < B; b++)
        for (int t = P - 1; t + 1 < T; t++) {
            if (forced_doc(w, b * T + t + 1)) continue;
            const float *z = fwd + ((size_t)b * T + t) * Vp;
            int chosen = tokens[b * T + t + 1], best = argmax(z, w->V);
            if (chosen != best && z[best] - z[chosen] > TIE_GAP) {
                mismatches++;
                if (at < 0) at = b * T + t;
            }
        }
    char name[160];
    label(name, sizeof name, w, prefill ? "greedy after prefill = forward argmax" : "greedy decode = forward argmax");
    if (!check_value(name, "mismatch", mismatches, 0.0))
        printf("    detail: first at row %d, position %d\n", at / T, at % T);
    size_t n = from_position(dec, B, T, Vp, first);
    from_position(fwd, B, T, Vp, first);
    compare(w, prefill ? "prefill+decode logits vs forward" : "decode logits vs forward", dec, fwd, n, NULL,
            DECODE_BAR);
    free(tokens);
    free(step);
    free(dec);
    free(fwd);
    free(out);
}

static void run_case(const Case *c, uint64_t seed) {
    Twin w;
    memset(&w, 0, sizeof w);
    w.c = c;
    w.cfg = model_config_make(c->attn, c->L, c->NH, c->C, VOCAB, c->T);
    w.cfg.doc_token = c->docs ? DOC_TOKEN : -1;
    w.N = c->B * c->T;
    w.V = w.cfg.vocab_size;
    w.Vp = w.cfg.padded_vocab_size;
    w.opt.beta1 = 0.9f;
    w.opt.beta2 = 0.95f;
    w.opt.eps = 1e-8f;
    w.opt.weight_decay = 0.1f;
    printf("== %s: %s, %d layers, %d heads, width %d (head dim %d), batch %d x %d, vocab %d (%d), doc_token %d\n",
           c->name, attn_type_name(c->attn), c->L, c->NH, c->C, c->C / c->NH, c->B, c->T, w.V, w.Vp,
           w.cfg.doc_token);
    w.cpu = cpu_gpt_create(&w.cfg, c->B, c->T, seed);
    w.gpu = gpt_create(&w.cfg, c->B, c->T, seed);
    w.P = gpt_num_params(w.gpu);
    w.inputs = (int *)mallocCheck(sizeof(int) * w.N);
    w.targets = (int *)mallocCheck(sizeof(int) * w.N);
    w.start = fbuf(w.P);
    check_init(&w);
    Rng r;
    rng_init(&r, seed);
    draw_params(w.cpu->specs, w.start, &r);
    draw_batch(&w, &r);
    set_state(&w, GPT_PARAMS, w.start);
    float *grads = fbuf(w.P);
    check_forward_backward(&w, grads);
    check_adamw(&w, grads);
    check_zero_shard(&w, grads);
    check_grad_ready(&w);
    check_training(&w);
    check_decoding(&w, 0);
    check_decoding(&w, 1);
    cpu_gpt_free(w.cpu);
    gpt_free(w.gpu);
    free(w.inputs);
    free(w.targets);
    free(w.start);
    free(grads);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* GPU only, at a realistic shape (the CPU model would take minutes): what only large shapes exercise
 * (grid limits, 64-bit offsets, cuBLASLt's choices at real sizes, the attention's long sequences) */
#define SCALE_NAME "scale path-fox C768 T1024"
#define SCALE_DECODE_T 256 /* tokens decoded per row at the scale shape: several key chunks per head, a document
                              start in row 1 (position 53), and the logits of both passes fit in ~0.4 GB of host
                              memory */

/* the first SCALE_DECODE_T tokens of each row of inputs (B, T) through the key cache, one step per position:
 * the logits against the forward's on the same rows, and the time per step (logits copied to the host) */
static void check_scale_decoding(Gpt *g, const int *inputs, int B, int T) {
    enum { TD = SCALE_DECODE_T };
    size_t Vp = gpt_config(g)->padded_vocab_size, NV = (size_t)B * TD * Vp;
    int *rows = (int *)mallocCheck(sizeof(int) * B * TD), *step = (int *)mallocCheck(sizeof(int) * B);
    float *dec = fbuf(NV), *fwd = fbuf(NV), *out = fbuf((size_t)B * Vp);
    for (int b = 0; b < B; b++) memcpy(rows + (size_t)b * TD, inputs + (size_t)b * T, sizeof(int) * TD);
    gpt_decode_begin(g, B);
    double t0 = 0.0;
    for (int t = 0; t < TD; t++) {
        if (t == 1) t0 = now_s(); /* the first step allocates the cache and plans the GEMMs */
        for (int b = 0; b < B; b++) step[b] = rows[(size_t)b * TD + t];
        gpt_decode_step(g, step, out);
        for (int b = 0; b < B; b++)
            memcpy(dec + ((size_t)b * TD + t) * Vp, out + (size_t)b * Vp, sizeof(float) * Vp);
    }
    double ms = 1e3 * (now_s() - t0) / (TD - 1);
    gpt_forward(g, rows, NULL, B, TD);
    gpt_gpu_logits(g, fwd);
    double prefill_ms = 0.0;
    for (int i = 0; i < 2; i++) { /* the second is timed: the first loads the prefill's kernels */
        t0 = now_s();
        gpt_decode_prefill(g, rows, B, TD, out);
        prefill_ms = 1e3 * (now_s() - t0);
    }
    char label_s[160];
    snprintf(label_s, sizeof label_s, "%s decode %d logits vs forward", SCALE_NAME, TD);
    check_value(label_s, "rel_rms", rel_rms_f(dec, fwd, NV), DECODE_BAR);
    printf("    info: decoding %d sequences: %.2f ms per step (logits to the host included), %.0f tokens/s\n", B, ms,
           B / (ms * 1e-3));
    printf("    info: prefill of %d sequences x %d tokens: %.2f ms, the time of %.1f decoding steps\n", B, TD,
           prefill_ms, prefill_ms / ms);
    free(rows);
    free(step);
    free(dec);
    free(fwd);
    free(out);
}

static void check_scale(void) {
    const char *name = SCALE_NAME;
    enum { B = 4, T = 1024, V = 50257, STEPS_SCALE = 3 };
    ModelConfig cfg = model_config_make(ATTN_PATH_FOX, 2, 12, 768, V, T);
    cfg.doc_token = 50256; /* GPT-2's <|endoftext|> */
    printf("== %s: path-fox, 2 layers, 12 heads, width 768, batch %d x %d, vocab %d (%d), doc_token %d\n", name, B,
           T, V, cfg.padded_vocab_size, cfg.doc_token);
    Gpt *g = gpt_create(&cfg, B, T, 7);
    int *inputs = (int *)mallocCheck(sizeof(int) * B * T), *targets = (int *)mallocCheck(sizeof(int) * B * T);
    Rng r;
    rng_init(&r, 7);
    for (int n = 0; n < B * T; n++) {
        inputs[n] = (int)rng_below(&r, V - 1);
        targets[n] = (int)rng_below(&r, V);
    }
    for (int n = 300; n < B * T; n += 777) inputs[n] = cfg.doc_token; /* documents at odd offsets */
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f};
    double loss[STEPS_SCALE], norm = 0.0, t0 = 0.0;
    for (int s = 0; s < STEPS_SCALE; s++) {
        if (s == 1) t0 = now_s(); /* the first step plans the GEMMs and grows the attention's scratch */
        gpt_zero_grad(g);
        GptLoss l = gpt_forward(g, inputs, targets, B, T);
        gpt_backward(g, 1.0f / l.n_valid);
        norm = gpt_grad_norm(g);
        gpt_update(g, &opt, 1e-3f, 1.0f, s + 1, 0, gpt_num_params(g));
        loss[s] = l.loss;
    }
    double ms = 1e3 * (now_s() - t0) / (STEPS_SCALE - 1);
    char label_s[160], detail_s[160];
    snprintf(label_s, sizeof label_s, "%s loss at init - ln V", name);
    check_value(label_s, "abs", fabs(loss[0] - log((double)V)), SCALE_LOSS_BAR);
    snprintf(label_s, sizeof label_s, "%s gradients finite", name);
    snprintf(detail_s, sizeof detail_s, "last norm %.4g", norm);
    check_true(label_s, isfinite(norm) && norm > 0.0, detail_s);
    snprintf(label_s, sizeof label_s, "%s loss falls", name);
    snprintf(detail_s, sizeof detail_s, "%.4f -> %.4f", loss[0], loss[STEPS_SCALE - 1]);
    check_true(label_s, loss[STEPS_SCALE - 1] < loss[0], detail_s);
    printf("    info: %.1f ms per step (forward, backward, norm, AdamW), %.0f tokens/s\n", ms, B * T / (ms * 1e-3));
    check_scale_decoding(g, inputs, B, T);
    gpt_free(g);
    free(inputs);
    free(targets);
}

int main(int argc, char **argv) {
    util_set_progname("test_gpt_gpu");
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        char why[160];
        snprintf(why, sizeof why, "no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        check_skip("test_gpt_gpu", why);
        return check_finish();
    }
    static const Case cases[] = {
        {"path d32 docs", ATTN_PATH, 2, 4, 128, 2, 96, 1},
        {"path d64", ATTN_PATH, 2, 2, 128, 2, 128, 0},
        {"path d128 T100", ATTN_PATH, 1, 2, 256, 1, 100, 0},
        {"path-fox d32 docs", ATTN_PATH_FOX, 2, 4, 128, 2, 80, 1},
        {"path-fox d64", ATTN_PATH_FOX, 2, 2, 128, 2, 128, 0},
        {"fox d64 docs", ATTN_FOX, 2, 2, 128, 2, 96, 1},
        {"rope d32 docs", ATTN_ROPE, 2, 4, 128, 2, 96, 1},
        {"nope d64", ATTN_NOPE, 2, 2, 128, 2, 64, 0},
        {"learned d32 docs", ATTN_LEARNED, 2, 4, 128, 2, 100, 1},
    };
    const char *only = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) run_case(&cases[i], 2000 + i);
    if (!only || strstr(SCALE_NAME, only)) check_scale();
    return check_finish();
}
