/* test_gpt2pathattn.c: end-to-end test of the CPU reference model (model/gpt_cpu.c), llm.c's
 * test_gpt2 scheme. For every reference state of dev/gpt_ref.py (the same model in PyTorch, float64;
 * `make test` writes them to build/ref; format below and at the top of gpt_ref.py):
 *   1. logits, loss, every parameter gradient by tensor name, and the gradient norm against the twin;
 *   2. ten AdamW steps on the batch: the loss at each step, and the parameters after them; a step in two
 *      shards with grad_mult 0.5 equals one whole step on halved gradients, bit for bit; a model with
 *      ZeRO-1's sharded optimizer (gpt_shard_optimizer) updates its shard as the whole update does, bit
 *      for bit, and holds shard-sized moments; backward hands every gradient, final, in exactly one range
 *      to gpt_set_grad_ready's callback;
 *   3. finite differences: for every parameter tensor, the directional derivative of the loss along a
 *      random unit direction, central differences, against the analytic gradient;
 *   4. decoding with the key cache, token by token, equals the forward's logits;
 *   5. documents (one case per attention type): with doc_token set, the tokens from a document start
 *      on give the logits of that document run alone;
 *   6. user errors (bad config, batch or token, T past max_seq_len, decoding past T, backward without
 *      targets) exit 1 with one line "test_gpt2pathattn: error: ...".
 * The cases with doc_token inside rows (*-docs) check boundaries against the twin as well (1-4).
 * Bars are named constants below, each with its reason. Exit status 1 if any check fails.
 *
 * Reference state file (little-endian):
 *   int32 header[256]: 0 magic 20251125, 1 version 1, 2 AttnType, 3 max_seq_len, 4 V, 5 Vp, 6 L, 7 NH,
 *     8 C, 9 R, 10 K, 11 doc_token, 12 B, 13 T, 14 n_steps, 15 n_params; 16..21 float32 bits of
 *     rope_theta, lr, beta1, beta2, eps, weight_decay
 *   float32 params[n_params] (table order); int32 inputs[B*T], targets[B*T]; float32 logits[B*T*Vp],
 *   loss, grads[n_params], losses[n_steps], params_after[n_params]
 * Usage: test_gpt2pathattn [REFDIR]   (default build/ref) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rng.h"
#include "common/util.h"
#include "model/gpt_cpu.h"
#include "tests/check.h"

#define REF_MAGIC 20251125
#define REF_VERSION 1
#define REF_HEADER_INTS 256

/* Bars (the twin is float64, so each measures the fp32 model's rounding; worst seen in brackets) */
#define LOGITS_BAR 2e-5   /* max abs: logits of size ~3 after two fp32 layers carry ~1e-6 [1.4e-6] */
#define LOSS_BAR 1e-5     /* abs: a few fp32 ulps of a loss ~3 [2.4e-7] */
#define GRAD_BAR 1e-4     /* rel_rms per tensor: fp32 backward sums of ~100 terms [1.2e-6] */
#define NORM_BAR 1e-5     /* relative: the global gradient norm, sums in double of the fp32 gradients */
#define STEPS_BAR 1e-4    /* max abs of the 10 losses: rounding compounds over the steps [1.2e-6]; a wrong
                             decay mask or bias correction moves them by ~1e-3 at lr 1e-2 */
#define AFTER_BAR 2e-4    /* rel_rms per tensor after the steps: Adam divides by sqrt(v), so elements with
                             tiny gradients carry more of the rounding [8e-6]; decay on a norm: ~1e-2 */
#define SHARD_BAR 0.0     /* max abs: a shard runs the very same per-element arithmetic as the whole update */
#define FD_EPS 1e-2       /* step along a unit direction: fp32 noise ~1e-7 / eps against truncation ~eps^2 */
#define FD_BAR 2e-2       /* error / (|g| / sqrt(n)): ~5e-6 of fp32 noise in the difference quotient is up to
                             ~2e-3 of the smallest gradients (gate biases) [2.1e-3]; a wrong or missing
                             term is O(0.1) and more. The twin checks the same gradients to 1e-4. */
#define DECODE_BAR 1e-5   /* max abs: decoding changes only the order of the float64 attention sums, which
                             fp32 rounding of its output nearly always hides [0] */
#define DOC_BAR 0.0       /* max abs: a document alone runs the very same arithmetic as inside its row */

typedef struct {
    char name[64];
    ModelConfig cfg;
    int B, T, n_steps;
    size_t n_params;
    float lr;
    AdamWConfig opt;
    float *params, *logits, *grads, *losses, *params_after; /* (n_params), (B*T*Vp), ... */
    int *inputs, *targets;                                   /* (B*T) */
    float loss;
} RefState;

static float header_float(const int32_t *h, int i) {
    float f;
    memcpy(&f, &h[i], sizeof f);
    return f;
}

/* 0, or -1 after a FAIL line saying what is wrong with dir/name.bin. */
static int ref_load(const char *dir, const char *name, RefState *r) {
    char path[512], what[128];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    snprintf(what, sizeof what, "%s reference state", name);
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    FILE *fp = fopen(path, "rb");
    if (!fp) return check_true(what, 0, "missing: `make test` writes it"), -1;
    int32_t h[REF_HEADER_INTS];
    if (fread(h, sizeof(int32_t), REF_HEADER_INTS, fp) != REF_HEADER_INTS || h[0] != REF_MAGIC || h[1] != REF_VERSION ||
        h[2] < 0 || h[2] >= ATTN_COUNT) {
        fclose(fp);
        return check_true(what, 0, "bad header (magic, version, type)"), -1;
    }
    r->cfg = model_config_make((AttnType)h[2], h[6], h[7], h[8], h[4], h[3]);
    r->cfg.padded_vocab_size = h[5];
    r->cfg.w_rank = h[9];
    r->cfg.conv_size = h[10];
    r->cfg.doc_token = h[11];
    r->cfg.rope_theta = header_float(h, 16);
    r->B = h[12];
    r->T = h[13];
    r->n_steps = h[14];
    r->n_params = (size_t)h[15];
    r->lr = header_float(h, 17);
    r->opt = (AdamWConfig){header_float(h, 18), header_float(h, 19), header_float(h, 20), header_float(h, 21)};
    char why[256];
    ParamSpec specs[NUM_PARAM_TENSORS];
    if (model_config_check(&r->cfg, why, sizeof why) != 0 || param_specs(&r->cfg, specs) != r->n_params) {
        fclose(fp);
        return check_true(what, 0, "config or parameter count differs from params.h"), -1;
    }
    size_t BT = (size_t)r->B * r->T, P = r->n_params;
    r->params = mallocCheck(sizeof(float) * P);
    r->inputs = mallocCheck(sizeof(int) * BT);
    r->targets = mallocCheck(sizeof(int) * BT);
    r->logits = mallocCheck(sizeof(float) * BT * r->cfg.padded_vocab_size);
    r->grads = mallocCheck(sizeof(float) * P);
    r->losses = mallocCheck(sizeof(float) * r->n_steps);
    r->params_after = mallocCheck(sizeof(float) * P);
    freadCheck(r->params, sizeof(float), P, fp);
    freadCheck(r->inputs, sizeof(int), BT, fp);
    freadCheck(r->targets, sizeof(int), BT, fp);
    freadCheck(r->logits, sizeof(float), BT * r->cfg.padded_vocab_size, fp);
    freadCheck(&r->loss, sizeof(float), 1, fp);
    freadCheck(r->grads, sizeof(float), P, fp);
    freadCheck(r->losses, sizeof(float), r->n_steps, fp);
    freadCheck(r->params_after, sizeof(float), P, fp);
    int extra = fgetc(fp) != EOF;
    fclose(fp);
    if (extra) return check_true(what, 0, "file longer than its header says"), -1;
    return 0;
}

static void ref_free(RefState *r) {
    free(r->params); free(r->inputs); free(r->targets); free(r->logits); free(r->grads); free(r->losses);
    free(r->params_after);
}

static int n_valid(const RefState *r) {
    int n = 0;
    for (int i = 0; i < r->B * r->T; i++) n += r->targets[i] >= 0;
    return n;
}

/* A model holding the state's parameters (AdamW moments start at 0). */
static Gpt *model_from(const RefState *r, const ModelConfig *cfg, int B, int T) {
    Gpt *g = gpt_create(cfg, B, T, 0);
    gpt_copy_in(g, GPT_PARAMS, r->params);
    return g;
}

/* Gradient of the mean loss at the current parameters (forward + backward). */
static void gradient(Gpt *g, const RefState *r) {
    gpt_zero_grad(g);
    gpt_forward(g, r->inputs, r->targets, r->B, r->T);
    gpt_backward(g, 1.0f / n_valid(r));
}

/* 1. logits, loss and gradients */
static void check_against_twin(Gpt *g, const RefState *r) {
    char name[128];
    size_t Vp = r->cfg.padded_vocab_size;
    gpt_zero_grad(g);
    GptLoss l = gpt_forward(g, r->inputs, r->targets, r->B, r->T);
    gpt_backward(g, 1.0f / l.n_valid);
    snprintf(name, sizeof name, "%s logits", r->name);
    check_value(name, "max_abs", max_abs_diff_f(g->acts.logits, r->logits, (size_t)r->B * r->T * Vp), LOGITS_BAR);
    snprintf(name, sizeof name, "%s loss", r->name);
    check_value(name, "abs", fabs((double)l.loss - r->loss), LOSS_BAR);
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = g->specs[i].n_elems;
        if (n == 0) continue;
        snprintf(name, sizeof name, "%s grad %s", r->name, g->specs[i].name);
        check_value(name, "rel_rms", rel_rms_f(g->grads_memory + offset, r->grads + offset, n), GRAD_BAR);
        offset += n;
    }
    double norm = 0.0;
    for (size_t i = 0; i < r->n_params; i++) norm += (double)r->grads[i] * r->grads[i];
    snprintf(name, sizeof name, "%s grad norm", r->name);
    check_value(name, "rel", fabs(gpt_grad_norm(g) - sqrt(norm)) / sqrt(norm), NORM_BAR);
}

/* Whether the key slice of qkvb is a no-op: without positions in the keys (nope, fox, learned), a key
 * bias adds q_i.b to every logit of query i, which softmax ignores; its gradient is exactly 0, the fp32
 * model's ~1e-9 of rounding becomes Adam steps of ~lr (Adam normalises), and the loss cannot see it. */
static int key_bias_invariant(AttnType a) { return a == ATTN_NOPE || a == ATTN_FOX || a == ATTN_LEARNED; }

/* 2. ten AdamW steps on the batch: the losses, then each parameter tensor */
static void check_steps(Gpt *g, const RefState *r) {
    char name[128];
    double worst = 0.0;
    for (int step = 1; step <= r->n_steps; step++) {
        gpt_zero_grad(g);
        GptLoss l = gpt_forward(g, r->inputs, r->targets, r->B, r->T);
        gpt_backward(g, 1.0f / l.n_valid);
        gpt_update(g, &r->opt, r->lr, 1.0f, step, 0, g->num_params);
        double e = fabs((double)l.loss - r->losses[step - 1]);
        if (!(e <= worst)) worst = e;
    }
    snprintf(name, sizeof name, "%s %d-step losses", r->name, r->n_steps);
    check_value(name, "max_abs", worst, STEPS_BAR);
    float *after = mallocCheck(sizeof(float) * g->num_params);
    gpt_copy_out(g, GPT_PARAMS, after);
    size_t offset = 0, C = r->cfg.n_embd;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = g->specs[i].n_elems;
        if (n == 0) continue;
        const char *note = "";
        if (strcmp(g->specs[i].name, "qkvb") == 0 && key_bias_invariant(r->cfg.attn)) {
            for (int l = 0; l < r->cfg.n_layer; l++) /* take the twin's key bias: see key_bias_invariant */
                memcpy(after + offset + l * 3 * C + C, r->params_after + offset + l * 3 * C + C, sizeof(float) * C);
            note = " (q, v)";
        }
        snprintf(name, sizeof name, "%s after %d steps %s%s", r->name, r->n_steps, g->specs[i].name, note);
        check_value(name, "rel_rms", rel_rms_f(after + offset, r->params_after + offset, n), AFTER_BAR);
        offset += n;
    }
    free(after);
}

/* 2b. ZeRO-1 shards and clipping: gpt_update on [0, k) then [k, n) with grad_mult 0.5 against one
 * update of the whole buffer on gradients halved beforehand (exact in fp32), from the same state. */
static void check_shards(Gpt *g, const RefState *r) {
    char name[128];
    size_t n = g->num_params, k = n / 2 + 7; /* k falls inside a tensor */
    float *grad = mallocCheck(sizeof(float) * n), *zeros = callocCheck(n, sizeof(float));
    float *whole = mallocCheck(sizeof(float) * n), *sharded = mallocCheck(sizeof(float) * n);
    for (int pass = 0; pass < 2; pass++) {
        gpt_copy_in(g, GPT_PARAMS, r->params);
        gpt_copy_in(g, GPT_ADAM_M, zeros);
        gpt_copy_in(g, GPT_ADAM_V, zeros);
        for (size_t i = 0; i < n; i++) grad[i] = pass == 0 ? 0.5f * r->grads[i] : r->grads[i];
        gpt_copy_in(g, GPT_GRADS, grad);
        if (pass == 0) {
            gpt_update(g, &r->opt, r->lr, 1.0f, 1, 0, n);
            gpt_copy_out(g, GPT_PARAMS, whole);
        } else {
            gpt_update(g, &r->opt, r->lr, 0.5f, 1, 0, k);
            gpt_update(g, &r->opt, r->lr, 0.5f, 1, k, n);
            gpt_copy_out(g, GPT_PARAMS, sharded);
        }
    }
    snprintf(name, sizeof name, "%s update in shards, grad_mult", r->name);
    check_value(name, "max_abs", max_abs_diff_f(sharded, whole, n), SHARD_BAR);
    free(grad); free(zeros); free(whole); free(sharded);
}

/* 2c. ZeRO-1's sharded optimizer: a second model keeps the moments of [b, e) only (gpt_shard_optimizer; a
 * range strictly inside the buffer, odd ends) and pads its buffers by ZERO_PAD. From the same state as the
 * first (random moments, grad_mult 0.5) its update of [b, e) equals the whole update there and leaves the
 * other parameters alone; its moments take 4 (e - b) bytes each and copy out into [b, e) of the host array
 * only; the padding of its gradient buffer is 0; the sum of squares of [b, e) is the serial double sum. */
#define ZERO_PAD 5
#define ZERO_SENTINEL (-7.0f) /* what gpt_copy_out must leave outside the shard */
static void check_zero_shard(Gpt *g, const RefState *r) {
    char name[160];
    size_t n = g->num_params, b = n / 3 + 5, e = 2 * n / 3 + 3;
    float *state[3] = {r->params, mallocCheck(sizeof(float) * n), mallocCheck(sizeof(float) * n)}; /* p, m, v */
    float *want = mallocCheck(sizeof(float) * n), *got = mallocCheck(sizeof(float) * n);
    Rng rng;
    rng_init(&rng, 5);
    for (size_t i = 0; i < n; i++) {
        state[1][i] = r->grads[i] * (float)rng_normal(&rng);
        state[2][i] = r->grads[i] * r->grads[i] * (0.5f + (float)rng_uniform(&rng)) + 1e-12f;
    }
    Gpt *z = model_from(r, &r->cfg, r->B, r->T), *both[2] = {g, z};
    for (int k = 0; k < 2; k++) {
        for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) gpt_copy_in(both[k], which, state[which]);
        gpt_copy_in(both[k], GPT_GRADS, r->grads);
    }
    gpt_shard_optimizer(z, b, e, n + ZERO_PAD);
    size_t bytes[4];
    for (int which = GPT_PARAMS; which <= GPT_GRADS; which++) bytes[which] = gpt_state_bytes(z, which);
    char detail[160];
    snprintf(detail, sizeof detail, "bytes: params %zu grads %zu m %zu v %zu; want %zu, %zu, %zu, %zu", bytes[0],
             bytes[3], bytes[1], bytes[2], 4 * (n + ZERO_PAD), 4 * (n + ZERO_PAD), 4 * (e - b), 4 * (e - b));
    snprintf(name, sizeof name, "%s ZeRO-1 moments shard-sized", r->name);
    check_true(name, bytes[GPT_PARAMS] == 4 * (n + ZERO_PAD) && bytes[GPT_GRADS] == 4 * (n + ZERO_PAD) &&
                     bytes[GPT_ADAM_M] == 4 * (e - b) && bytes[GPT_ADAM_V] == 4 * (e - b), detail);
    gpt_update(g, &r->opt, r->lr, 0.5f, 3, 0, n);
    gpt_update(z, &r->opt, r->lr, 0.5f, 3, b, e);
    static const char *what[3] = {"params", "m", "v"};
    for (int which = GPT_PARAMS; which <= GPT_ADAM_V; which++) {
        gpt_copy_out(g, which, want); /* the whole update inside [b, e); outside: the start, or the sentinel */
        for (size_t i = 0; i < n; i++) {
            if (i < b || i >= e) want[i] = which == GPT_PARAMS ? state[which][i] : ZERO_SENTINEL;
            got[i] = ZERO_SENTINEL;
        }
        gpt_copy_out(z, which, got);
        snprintf(name, sizeof name, "%s ZeRO-1 shard update %s", r->name, what[which]);
        check_value(name, "max_abs", max_abs_diff_f(got, want, n), SHARD_BAR);
    }
    double sum = 0.0, pad = 0.0;
    for (size_t i = b; i < e; i++) sum += (double)r->grads[i] * r->grads[i];
    for (size_t i = n; i < n + ZERO_PAD; i++) pad += fabs(gpt_grad_buffer(z)[i]);
    snprintf(name, sizeof name, "%s ZeRO-1 shard sum of squares", r->name);
    check_value(name, "abs", fabs(gpt_grad_sum_squares(z, b, e) - sum), 0.0);
    snprintf(name, sizeof name, "%s ZeRO-1 gradient padding", r->name);
    check_value(name, "max_abs", pad, 0.0);
    gpt_free(z);
    free(state[1]); free(state[2]); free(want); free(got);
}

/* 2d. gpt_set_grad_ready: over two micro-batches with the callback set for the second only (as train.c
 * does), backward hands over every parameter in exactly one range, stream NULL, each range final when handed
 * over: a copy taken then equals the gradient after backward (a range handed over too early would hold the
 * first micro-batch's half of it). */
typedef struct {
    float *copy;  /* (n) the ranges as handed over */
    int *count;   /* (n) how often each parameter was */
    int calls, streams;
} ReadyLog;

static void log_range(void *ctx, float *grads, size_t begin, size_t end, void *stream) {
    ReadyLog *log = ctx;
    memcpy(log->copy + begin, grads + begin, sizeof(float) * (end - begin));
    for (size_t i = begin; i < end; i++) log->count[i]++;
    log->calls++;
    log->streams += stream != NULL;
}

static void check_grad_ready(Gpt *g, const RefState *r) {
    size_t n = g->num_params, once = 0;
    ReadyLog log = {callocCheck(n, sizeof(float)), callocCheck(n, sizeof(int)), 0, 0};
    gpt_copy_in(g, GPT_PARAMS, r->params);
    gradient(g, r);
    gpt_forward(g, r->inputs, r->targets, r->B, r->T);
    gpt_set_grad_ready(g, log_range, &log);
    gpt_backward(g, 1.0f / n_valid(r));
    gpt_set_grad_ready(g, NULL, NULL);
    for (size_t i = 0; i < n; i++) once += log.count[i] == 1;
    char name[128], detail[128];
    snprintf(detail, sizeof detail, "%d calls, %zu of %zu parameters once, %d with a stream", log.calls, once, n,
             log.streams);
    snprintf(name, sizeof name, "%s grad_ready covers each parameter once", r->name);
    check_true(name, once == n && log.streams == 0, detail);
    snprintf(name, sizeof name, "%s grad_ready ranges final when handed over", r->name);
    check_value(name, "max_abs", max_abs_diff_f(log.copy, g->grads_memory, n), 0.0);
    free(log.copy);
    free(log.count);
}

/* The mean loss in double from the fp32 logits (the returned fp32 loss would round away ~1e-7). */
static double loss_double(Gpt *g, const RefState *r) {
    gpt_forward(g, r->inputs, r->targets, r->B, r->T);
    int V = r->cfg.vocab_size, Vp = r->cfg.padded_vocab_size, n = 0;
    double total = 0.0;
    for (int i = 0; i < r->B * r->T; i++) {
        if (r->targets[i] < 0) continue;
        const float *z = g->acts.logits + (size_t)i * Vp;
        double zmax = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) zmax = fmax(zmax, z[v]);
        for (int v = 0; v < V; v++) sum += exp(z[v] - zmax);
        total += zmax + log(sum) - z[r->targets[i]];
        n++;
    }
    return total / n;
}

/* 3. directional derivatives by central differences. For a random unit direction u, g.u has size
 * |g|/sqrt(n) on average, so |fd - g.u| / (|g|/sqrt(n)) estimates the relative error of the gradient
 * (dividing by |g.u| itself blows up when u happens to be nearly orthogonal to g). */
static void check_finite_differences(Gpt *g, const RefState *r) {
    char name[128];
    gpt_copy_in(g, GPT_PARAMS, r->params);
    gradient(g, r);
    float *grad = mallocCheck(sizeof(float) * g->num_params);
    gpt_copy_out(g, GPT_GRADS, grad);
    Rng rng;
    rng_init(&rng, 7);
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = g->specs[i].n_elems;
        if (n == 0) continue;
        double *u = mallocCheck(sizeof(double) * n), unorm = 0.0, gnorm = 0.0, analytic = 0.0;
        for (size_t e = 0; e < n; e++) {
            u[e] = rng_normal(&rng);
            unorm += u[e] * u[e];
            gnorm += (double)grad[offset + e] * grad[offset + e];
        }
        for (size_t e = 0; e < n; e++) {
            u[e] /= sqrt(unorm);
            analytic += grad[offset + e] * u[e];
        }
        float *p = g->params_memory + offset;
        for (size_t e = 0; e < n; e++) p[e] = r->params[offset + e] + (float)(FD_EPS * u[e]);
        double lp = loss_double(g, r);
        for (size_t e = 0; e < n; e++) p[e] = r->params[offset + e] - (float)(FD_EPS * u[e]);
        double lm = loss_double(g, r);
        memcpy(p, r->params + offset, sizeof(float) * n);
        double fd = (lp - lm) / (2.0 * FD_EPS);
        snprintf(name, sizeof name, "%s finite diff %s", r->name, g->specs[i].name);
        check_value(name, "rel", fabs(fd - analytic) / (sqrt(gnorm / n)), FD_BAR);
        free(u);
        offset += n;
    }
    free(grad);
}

/* 4. key-cache decoding, all rows at once, against the forward's logits */
static void check_decoding(Gpt *g, const RefState *r) {
    char name[128];
    int B = r->B, T = r->T, Vp = r->cfg.padded_vocab_size;
    gpt_copy_in(g, GPT_PARAMS, r->params);
    gpt_forward(g, r->inputs, NULL, B, T);
    float *step = mallocCheck(sizeof(float) * B * Vp);
    int *tokens = mallocCheck(sizeof(int) * B);
    double worst = 0.0;
    gpt_decode_begin(g, B);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) tokens[b] = r->inputs[b * T + t];
        gpt_decode_step(g, tokens, step);
        for (int b = 0; b < B; b++) {
            double e = max_abs_diff_f(step + (size_t)b * Vp, g->acts.logits + ((size_t)b * T + t) * Vp, Vp);
            if (!(e <= worst)) worst = e;
        }
    }
    snprintf(name, sizeof name, "%s decode vs forward", r->name);
    check_value(name, "max_abs", worst, DECODE_BAR);
    free(step);
    free(tokens);
}

/* 5. One row with documents starting at 4 and 9 (doc_token 1): logits from each start on equal
 * those of the document run alone as a row of its own. */
static void check_documents(const RefState *r) {
    static const int starts[] = {4, 9};
    enum { DOC = 1 };
    char name[128];
    ModelConfig cfg = r->cfg;
    cfg.doc_token = DOC;
    int T = r->T, Vp = cfg.padded_vocab_size;
    snprintf(name, sizeof name, "%s documents vs alone", r->name);
    if (T <= starts[1] || cfg.vocab_size < 3) {
        check_true(name, 0, "needs T > 9 and V > 2");
        return;
    }
    int *row = mallocCheck(sizeof(int) * T);
    for (int t = 0; t < T; t++) row[t] = 2 + (7 * t + 3) % (cfg.vocab_size - 2); /* tokens other than 0, DOC */
    for (int i = 0; i < 2; i++) row[starts[i]] = DOC;
    Gpt *whole = model_from(r, &cfg, 1, T), *alone = model_from(r, &cfg, 1, T);
    gpt_forward(whole, row, NULL, 1, T);
    double worst = 0.0;
    for (int i = 0; i < 2; i++) {
        int s = starts[i], len = (i + 1 < 2 ? starts[i + 1] : T) - s;
        gpt_forward(alone, row + s, NULL, 1, len);
        double e = max_abs_diff_f(alone->acts.logits, whole->acts.logits + (size_t)s * Vp, (size_t)len * Vp);
        if (!(e <= worst)) worst = e;
    }
    check_value(name, "max_abs", worst, DOC_BAR);
    gpt_free(whole);
    gpt_free(alone);
    free(row);
}

/* 6. user errors: fn runs in a child process, which must exit 1 with one stderr line
 * "test_gpt2pathattn: error: <who>: ..." (the checks come before any parallel region, so the
 * child never needs OpenMP threads). */
typedef struct {
    const RefState *r;
    Gpt *g;
} ErrorCtx;

static void check_user_error(const char *name, const char *who, void (*fn)(ErrorCtx *), ErrorCtx *ctx) {
    int fd[2];
    char buf[1024] = {0}, prefix[128], detail[160];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fd) != 0) die("pipe failed");
    pid_t pid = fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn(ctx);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t k;
    while (got < sizeof buf - 1 && (k = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)k;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    snprintf(prefix, sizeof prefix, "test_gpt2pathattn: error: %s: ", who);
    char *nl = strchr(buf, '\n');
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 && strncmp(buf, prefix, strlen(prefix)) == 0 && nl &&
             nl[1] == '\0';
    if (nl) *nl = '\0';
    snprintf(detail, sizeof detail, "exit %d: \"%.100s\"", WIFEXITED(status) ? WEXITSTATUS(status) : -1, buf);
    check_true(name, ok, detail);
}

static void err_bad_config(ErrorCtx *c) {
    ModelConfig cfg = c->r->cfg;
    cfg.n_head = 3; /* does not divide n_embd 16 */
    gpt_create(&cfg, 1, 4, 0);
}
static void err_long_T(ErrorCtx *c) { gpt_create(&c->r->cfg, 1, c->r->cfg.max_seq_len + 1, 0); }
static void err_big_B(ErrorCtx *c) { gpt_forward(c->g, c->r->inputs, NULL, c->r->B + 1, c->r->T); }
static void err_big_T(ErrorCtx *c) { gpt_forward(c->g, c->r->inputs, NULL, 1, c->r->T + 1); }
static void err_token(ErrorCtx *c) {
    int row[2] = {0, c->r->cfg.vocab_size};
    gpt_forward(c->g, row, NULL, 1, 2);
}
static void err_target(ErrorCtx *c) {
    int row[2] = {0, 1}, targets[2] = {-1, c->r->cfg.vocab_size};
    gpt_forward(c->g, row, targets, 1, 2);
}
static void err_backward(ErrorCtx *c) { gpt_backward(c->g, 1.0f); } /* after a forward without targets */
static void err_decode_past_T(ErrorCtx *c) {
    int token = 0;
    gpt_decode_step(c->g, &token, c->g->acts.logits); /* after T steps */
}

static void check_user_errors(const RefState *r) {
    Gpt *g = model_from(r, &r->cfg, r->B, r->T);
    ErrorCtx c = {r, g};
    check_user_error("error: n_head not dividing n_embd", "gpt_create", err_bad_config, &c);
    check_user_error("error: T past max_seq_len", "gpt_create", err_long_T, &c);
    check_user_error("error: B larger than created", "gpt_forward", err_big_B, &c);
    check_user_error("error: T larger than created", "gpt_forward", err_big_T, &c);
    check_user_error("error: token outside the vocabulary", "gpt_forward", err_token, &c);
    check_user_error("error: target outside the vocabulary", "gpt_forward", err_target, &c);
    gpt_forward(g, r->inputs, NULL, r->B, r->T);
    check_user_error("error: backward without targets", "gpt_backward", err_backward, &c);
    int *tokens = callocCheck(r->B, sizeof(int));
    float *logits = mallocCheck(sizeof(float) * r->B * r->cfg.padded_vocab_size);
    gpt_decode_begin(g, 1);
    for (int t = 0; t < r->T; t++) gpt_decode_step(g, tokens, logits);
    check_user_error("error: decoding past T", "gpt_decode_step", err_decode_past_T, &c);
    free(tokens);
    free(logits);
    gpt_free(g);
}

/* Checks 1-5 on one reference state (5 where the twin's batch has no documents of its own);
 * the user errors (6) with the first. */
static void run_case(const char *dir, const char *case_name, int with_user_errors) {
    RefState r;
    if (ref_load(dir, case_name, &r) != 0) return;
    Gpt *g = model_from(&r, &r.cfg, r.B, r.T);
    check_against_twin(g, &r);
    check_steps(g, &r);
    check_shards(g, &r);
    check_zero_shard(g, &r);
    check_grad_ready(g, &r);
    check_finite_differences(g, &r);
    check_decoding(g, &r);
    gpt_free(g);
    if (r.cfg.doc_token < 0) check_documents(&r);
    if (with_user_errors) check_user_errors(&r);
    ref_free(&r);
}

int main(int argc, char **argv) {
    util_set_progname("test_gpt2pathattn");
    const char *dir = argc > 1 ? argv[1] : "build/ref";
    static const char *cases[] = {"path", "path-fox", "fox", "rope", "nope", "learned",
                                  "path-fox-docs", "rope-docs", "learned-docs"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(dir, cases[i], i == 0);
    return check_finish();
}
