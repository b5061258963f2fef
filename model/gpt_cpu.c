/* gpt_cpu.c: the model of gpt.h in plain C, fp32, in the style of llm.c's train_gpt2.c: the oracle.
 *
 * Forward (doc/DESIGN.md section 3), N = B*T rows, per row:
 *   x = wte[token] (+ wpe[pos] for learned)                                       (C)
 *   per layer:  h = ln1(x);  q | k | v = h qkvw^T + qkvb                            (3C)
 *     PaTH:   w_up = (h wdown^T) wup^T                                              (R), (C)
 *             w_conv[t,c] = sum_k wconv[c,k] w_up[t-(K-1)+k, c]  (taps before the document start read 0)
 *             w = y / sqrt(sum_head y^2 + 1e-6),  y = silu(w_conv)                  (C)
 *             beta = 2 sigmoid(h betaw^T + betab)                                   (NH)
 *     gated:  g = logsigmoid(h gatew^T + gateb)                                     (NH)
 *     rope:   q, k rotated per head, pairs (i, i + d/2), angle pos theta^(-2i/d)
 *     atty = attn_ref(q, k, v, w, beta, g) per document, scale 1/sqrt(d), gate_scale attn_gate_scale
 *     x = x + atty attprojw^T + attprojb;   x = x + fcproj(gelu_tanh(fc(ln2(x))))
 *   logits = lnf(x) wte^T (all Vp columns); loss = mean cross-entropy over the first V columns at
 *   targets >= 0 (padded columns ignored, as llm.c). Layernorm eps 1e-5.
 * Documents: position t of a row starts one if t == 0 or its token is doc_token (doc_token >= 0);
 * positions count from the start; attention, the conv and the gate sums never cross a start.
 * Backward: every step by hand, in reverse. Parameter gradients accumulate (+=) until gpt_zero_grad;
 * activation gradients use one layer's scratch (gpt_cpu.h). Each layer's finished parameter gradients,
 * then the embeddings' and lnf's, go to gpt_set_grad_ready's callback, if one is set.
 * Decoding: a key cache, one token per sequence per step (section "decoding" below); the prefill is those
 * steps over the prompt.
 * Parallel: OpenMP over rows or over output channels, never two threads on one element, so results
 * do not depend on the thread count.
 * Checked by test_gpt2pathattn.c: against dev/gpt_ref.py (PyTorch, float64), by finite differences,
 * decoding against the forward, a document against the same tokens alone. */
#include "gpt_cpu.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "adamw.h"
#include "attn_ref.h"
#include "documents.h"

/* ---------------------------------------------------------------------------------------------
 * layers: N rows; backward functions add (+=) into every gradient they are given */

/* out (N,C) = wte[inp] + wpe[pos]; wpe NULL: no position embedding */
static void encoder_forward(float *out, const int *inp, const int *pos, const float *wte, const float *wpe,
                            int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *te = wte + (size_t)inp[n] * C;
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = te[c] + (wpe ? wpe[(size_t)pos[n] * C + c] : 0.0f);
    }
}

/* dwte, dwpe (NULL: none) += dout (N,C) scattered by token and position; serial: rows share tokens */
static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, const int *pos,
                             int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            dwte[(size_t)inp[n] * C + c] += d[c];
            if (dwpe) dwpe[(size_t)pos[n] * C + c] += d[c];
        }
    }
}

/* out (N,C) = (x - mean) rstd weight + bias per row, rstd = 1/sqrt(var + 1e-5) (biased variance);
 * mean, rstd (N) kept for backward */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f, var = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        var /= C;
        float s = 1.0f / sqrtf(var + 1e-5f);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

/* dinp (N,C), dweight, dbias (C) += from dout (N,C). With xhat = (x - mean) rstd, dxhat = weight dout:
 * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float dxhat_mean = 0.0f, dxhat_xhat_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mean[n]) * rstd[n];
            dxhat_mean += weight[c] * d[c];
            dxhat_xhat_mean += weight[c] * d[c] * xhat;
        }
        dxhat_mean /= C;
        dxhat_xhat_mean /= C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mean[n]) * rstd[n];
            dx[c] += rstd[n] * (weight[c] * d[c] - dxhat_mean - xhat * dxhat_xhat_mean);
        }
    }
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float dw = 0.0f, db = 0.0f;
        for (int n = 0; n < N; n++) {
            float d = dout[(size_t)n * C + c];
            dw += (inp[(size_t)n * C + c] - mean[n]) * rstd[n] * d;
            db += d;
        }
        dweight[c] += dw;
        dbias[c] += db;
    }
}

/* out (N,OC) = inp (N,C) weight^T + bias; weight (OC,C) as nn.Linear; bias (OC) or NULL */
static void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                           int OC) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float *wrow = weight + (size_t)o * C;
            float val = bias ? bias[o] : 0.0f;
#pragma omp simd reduction(+ : val)
            for (int i = 0; i < C; i++) val += x[i] * wrow[i];
            out[(size_t)n * OC + o] = val;
        }
    }
}

/* dinp (N,C) += dout weight;  dweight (OC,C) += dout^T inp;  dbias (OC) += column sums of dout
 * (NULL: no bias) */
static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float *dx = dinp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            float d = dout[(size_t)n * OC + o];
            const float *wrow = weight + (size_t)o * C;
            for (int i = 0; i < C; i++) dx[i] += d * wrow[i];
        }
    }
#pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        float *dw = dweight + (size_t)o * C;
        float db = 0.0f;
        for (int n = 0; n < N; n++) {
            float d = dout[(size_t)n * OC + o];
            const float *x = inp + (size_t)n * C;
            for (int i = 0; i < C; i++) dw[i] += d * x[i];
            db += d;
        }
        if (dbias) dbias[o] += db;
    }
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), n elements */
static void gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x); /* d(tanh argument)/dx */
        dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
    }
}

/* out += inp, n elements (the residual connection; its backward is the identity) */
static void residual_add(float *out, const float *inp, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] += inp[i];
}

/* probs (N,Vp) = softmax of logits over the first V columns, 0 in the padded ones; losses (N) =
 * logsumexp - logit[target] where target >= 0, else 0. Returns the mean loss over valid targets
 * and how many argmaxes (over the real vocab) hit them. */
static GptLoss softmax_crossentropy_forward(float *probs, float *losses, const float *logits, const int *targets,
                                            int N, int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * Vp;
        float *p = probs + (size_t)n * Vp;
        float zmax = -INFINITY;
        for (int v = 0; v < V; v++) zmax = fmaxf(zmax, z[v]);
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)z[v] - zmax);
        for (int v = 0; v < V; v++) p[v] = (float)(exp((double)z[v] - zmax) / sum);
        for (int v = V; v < Vp; v++) p[v] = 0.0f;
        losses[n] = targets[n] >= 0 ? (float)(zmax + log(sum) - z[targets[n]]) : 0.0f;
    }
    GptLoss r = {0.0f, 0, 0};
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const float *z = logits + (size_t)n * Vp;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best]) best = v;
        total += losses[n];
        r.n_valid++;
        r.n_correct += best == targets[n];
    }
    r.loss = r.n_valid ? (float)(total / r.n_valid) : 0.0f;
    return r;
}

/* dlogits (N,Vp) = grad_scale (probs - onehot(target)) over the first V columns of rows with a
 * target >= 0; 0 elsewhere (overwrites) */
static void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets,
                                          float grad_scale, int N, int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float *d = dlogits + (size_t)n * Vp;
        const float *p = probs + (size_t)n * Vp;
        memset(d, 0, sizeof(float) * Vp);
        if (targets[n] < 0) continue;
        for (int v = 0; v < V; v++) d[v] = grad_scale * (p[v] - (v == targets[n] ? 1.0f : 0.0f));
    }
}

/* ---------------------------------------------------------------------------------------------
 * PaTH's w and beta, the forget gate */

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* out (B,T,C): causal depthwise conv over time inside documents (PyTorch Conv1d convention),
 *   out[b,t,c] = sum_k wc[c,k] inp[b, t-(K-1)+k, c];  taps before doc_start[b,t] read 0 */
static void wconv_forward(float *out, const float *inp, const float *wc, const int *doc_start, int B, int T,
                          int C, int K) {
#pragma omp parallel for
    for (int n = 0; n < B * T; n++) {
        int b = n / T, t = n % T;
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                int s = t - (K - 1) + k;
                if (s >= doc_start[n]) acc += wc[(size_t)c * K + k] * inp[((size_t)b * T + s) * C + c];
            }
            out[(size_t)n * C + c] = acc;
        }
    }
}

/* dinp (B,T,C), dwc (C,K) += from dout (B,T,C): each source row s gathers from the outputs
 * t = s + (K-1) - k whose tap k reads it */
static void wconv_backward(float *dinp, float *dwc, const float *dout, const float *inp, const float *wc,
                           const int *doc_start, int B, int T, int C, int K) {
#pragma omp parallel for
    for (int n = 0; n < B * T; n++) {
        int b = n / T, s = n % T;
        for (int k = 0; k < K; k++) {
            int t = s + (K - 1) - k;
            if (t >= T || s < doc_start[(size_t)b * T + t]) continue;
            const float *d = dout + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) dinp[(size_t)n * C + c] += wc[(size_t)c * K + k] * d[c];
        }
    }
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        for (int k = 0; k < K; k++) {
            float acc = 0.0f;
            for (int n = 0; n < B * T; n++) {
                int b = n / T, s = n % T - (K - 1) + k;
                if (s >= doc_start[n]) acc += dout[(size_t)n * C + c] * inp[((size_t)b * T + s) * C + c];
            }
            dwc[(size_t)c * K + k] += acc;
        }
    }
}

/* w (N,NH,d) = y / sqrt(sum_head y^2 + 1e-6), y = silu(x) = x sigmoid(x), x (N,NH,d) */
static void wnorm_forward(float *w, const float *x, int N, int NH, int d) {
#pragma omp parallel for
    for (int u = 0; u < N * NH; u++) { /* u: one (row, head) */
        const float *xh = x + (size_t)u * d;
        float *wh = w + (size_t)u * d;
        float ss = 0.0f;
        for (int e = 0; e < d; e++) {
            wh[e] = xh[e] * sigmoidf(xh[e]);
            ss += wh[e] * wh[e];
        }
        float r = 1.0f / sqrtf(ss + 1e-6f);
        for (int e = 0; e < d; e++) wh[e] *= r;
    }
}

/* In place, dw (N,NH,d) of w becomes the gradient of x (overwrites):
 *   dy = r (dw - (dw.w) w),  r = 1/sqrt(sum_head y^2 + 1e-6);   dx = dy sigmoid(x) (1 + x (1 - sigmoid(x))) */
static void wnorm_backward(float *dw, const float *w, const float *x, int N, int NH, int d) {
#pragma omp parallel for
    for (int u = 0; u < N * NH; u++) {
        const float *xh = x + (size_t)u * d, *wh = w + (size_t)u * d;
        float *dh = dw + (size_t)u * d;
        float ss = 0.0f, dot = 0.0f;
        for (int e = 0; e < d; e++) {
            float y = xh[e] * sigmoidf(xh[e]);
            ss += y * y;
            dot += dh[e] * wh[e];
        }
        float r = 1.0f / sqrtf(ss + 1e-6f);
        for (int e = 0; e < d; e++) {
            float s = sigmoidf(xh[e]);
            dh[e] = r * (dh[e] - dot * wh[e]) * s * (1.0f + xh[e] * (1.0f - s));
        }
    }
}

/* in place: a -> beta = 2 sigmoid(a) */
static void beta_forward(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = 2.0f * sigmoidf(a[i]);
}

/* in place: dbeta -> dbeta dbeta/da = dbeta beta (1 - beta/2) */
static void beta_backward(float *dbeta, const float *beta, size_t n) {
    for (size_t i = 0; i < n; i++) dbeta[i] *= beta[i] * (1.0f - 0.5f * beta[i]);
}

/* in place: a -> g = logsigmoid(a) = min(a, 0) - log1p(exp(-|a|)) */
static void gate_forward(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = fminf(a[i], 0.0f) - log1pf(expf(-fabsf(a[i])));
}

/* in place: dg -> dg dg/da = dg sigmoid(-a) = dg (1 - exp(g)) */
static void gate_backward(float *dg, const float *g, size_t n) {
    for (size_t i = 0; i < n; i++) dg[i] *= -expm1f(g[i]);
}

/* ---------------------------------------------------------------------------------------------
 * views: one allocation per family of tensors, and layer l's slice of the stacked ones */

typedef struct {
    float **view;
    size_t n;
} FloatView;

/* One allocation for the views in order (llm.c's malloc_and_point); views of 0 elements get NULL. */
static float *point_views(FloatView *v, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += v[i].n;
    float *mem = mallocCheck(sizeof(float) * total), *p = mem;
    for (int i = 0; i < count; i++) {
        *v[i].view = v[i].n ? p : NULL;
        p += v[i].n;
    }
    return mem;
}

/* Activations for L layers of N rows (N = B*T for gpt_forward, B for decoding). */
static void acts_alloc(ActivationTensors *a, const ModelConfig *cfg, size_t N) {
    size_t C = cfg->n_embd, L = cfg->n_layer, NH = cfg->n_head, R = cfg->w_rank, Vp = cfg->padded_vocab_size;
    size_t path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn);
    FloatView v[] = {
        {&a->encoded, N * C}, {&a->ln1, L * N * C}, {&a->ln1_mean, L * N}, {&a->ln1_rstd, L * N},
        {&a->qkv, L * N * 3 * C}, {&a->w_low, path * L * N * R}, {&a->w_up, path * L * N * C},
        {&a->w_conv, path * L * N * C}, {&a->w, path * L * N * C}, {&a->beta, path * L * N * NH},
        {&a->gate, gated * L * N * NH}, {&a->atty, L * N * C}, {&a->residual2, L * N * C},
        {&a->ln2, L * N * C}, {&a->ln2_mean, L * N}, {&a->ln2_rstd, L * N}, {&a->fch, L * N * 4 * C},
        {&a->fch_gelu, L * N * 4 * C}, {&a->residual3, L * N * C}, {&a->lnf, N * C}, {&a->lnf_mean, N},
        {&a->lnf_rstd, N}, {&a->logits, N * Vp}, {&a->probs, N * Vp}, {&a->losses, N},
    };
    a->memory = point_views(v, (int)(sizeof v / sizeof v[0]));
}

static void dacts_alloc(ActivationGrads *d, const ModelConfig *cfg, size_t N) {
    size_t C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank, Vp = cfg->padded_vocab_size;
    size_t path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn);
    FloatView v[] = {
        {&d->dresidual, N * C}, {&d->dln, N * C}, {&d->datty, N * C}, {&d->dqkv, N * 3 * C},
        {&d->dfch, N * 4 * C}, {&d->dfch_gelu, N * 4 * C}, {&d->dw, path * N * C}, {&d->dw_up, path * N * C},
        {&d->dw_low, path * N * R}, {&d->dbeta, path * N * NH}, {&d->dgate, gated * N * NH},
        {&d->dlogits, N * Vp},
    };
    d->memory = point_views(v, (int)(sizeof v / sizeof v[0]));
}

static void attn_alloc(AttnBuffers *ab, size_t N, size_t C, size_t NH) {
    double **rows[] = {&ab->q, &ab->k, &ab->v, &ab->w, &ab->o, &ab->dout, &ab->dq, &ab->dk, &ab->dv, &ab->dw};
    double **heads[] = {&ab->beta, &ab->gate, &ab->lse, &ab->dbeta, &ab->dgate};
    int nr = (int)(sizeof rows / sizeof rows[0]), nh = (int)(sizeof heads / sizeof heads[0]);
    double *p = ab->memory = mallocCheck(sizeof(double) * N * (nr * C + nh * NH));
    for (int i = 0; i < nr; i++, p += N * C) *rows[i] = p;
    for (int i = 0; i < nh; i++, p += N * NH) *heads[i] = p;
}


typedef struct { /* layer l's slice of ActivationTensors; NULL where the type has none */
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *w_low, *w_up, *w_conv, *w, *beta, *gate;
    float *atty, *residual2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *residual3;
} LayerActs;

static float *slice(float *base, size_t offset) { return base ? base + offset : NULL; }

/* N: the row capacity the activations were allocated for */
static LayerActs layer_acts(const ActivationTensors *a, const ModelConfig *cfg, int l, size_t N) {
    size_t C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank, r = (size_t)l * N;
    LayerActs la = {
        .ln1 = slice(a->ln1, r * C), .ln1_mean = slice(a->ln1_mean, r), .ln1_rstd = slice(a->ln1_rstd, r),
        .qkv = slice(a->qkv, r * 3 * C), .w_low = slice(a->w_low, r * R), .w_up = slice(a->w_up, r * C),
        .w_conv = slice(a->w_conv, r * C), .w = slice(a->w, r * C), .beta = slice(a->beta, r * NH),
        .gate = slice(a->gate, r * NH), .atty = slice(a->atty, r * C), .residual2 = slice(a->residual2, r * C),
        .ln2 = slice(a->ln2, r * C), .ln2_mean = slice(a->ln2_mean, r), .ln2_rstd = slice(a->ln2_rstd, r),
        .fch = slice(a->fch, r * 4 * C), .fch_gelu = slice(a->fch_gelu, r * 4 * C),
        .residual3 = slice(a->residual3, r * C),
    };
    return la;
}

/* ---------------------------------------------------------------------------------------------
 * attention: float64 through model/attn_ref.c */

/* x (d) rotated by position pos: pairs (i, i + d/2), angle pos theta^(-2i/d). sign -1 applies the
 * inverse (transposed) rotation, which carries gradients back. */
static void rope_rotate(double *x, int d, int pos, double theta, int sign) {
    int half = d / 2;
    for (int i = 0; i < half; i++) {
        double a = pos * pow(theta, -2.0 * i / d), c = cos(a), s = sign * sin(a);
        double x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c - x2 * s;
        x[i + half] = x1 * s + x2 * c;
    }
}

/* attn_ref's inputs for N rows of layer activations a: q, k (rotated at positions pos for rope),
 * v from qkv; w and beta (PaTH); the gate (gated types). */
static void attn_load(Gpt *g, const LayerActs *a, const int *pos, int N) {
    const ModelConfig *cfg = &g->cfg;
    AttnBuffers *ab = &g->attn;
    int C = cfg->n_embd, NH = cfg->n_head, d = C / NH, rope = cfg->attn == ATTN_ROPE;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *row = a->qkv + (size_t)n * 3 * C;
        size_t o = (size_t)n * C;
        for (int c = 0; c < C; c++) {
            ab->q[o + c] = row[c];
            ab->k[o + c] = row[C + c];
            ab->v[o + c] = row[2 * C + c];
            if (a->w) ab->w[o + c] = a->w[o + c];
        }
        for (int h = 0; h < NH && rope; h++) {
            rope_rotate(ab->q + o + (size_t)h * d, d, pos[n], cfg->rope_theta, 1);
            rope_rotate(ab->k + o + (size_t)h * d, d, pos[n], cfg->rope_theta, 1);
        }
        for (int h = 0; h < NH; h++) {
            if (a->beta) ab->beta[(size_t)n * NH + h] = a->beta[(size_t)n * NH + h];
            if (a->gate) ab->gate[(size_t)n * NH + h] = a->gate[(size_t)n * NH + h];
        }
    }
}

static float attn_scale(const ModelConfig *cfg) { return (float)(1.0 / sqrt((double)(cfg->n_embd / cfg->n_head))); }

/* The documents of the last gpt_forward as attn_ref's packed sequences. */
static AttnDims attn_dims(const Gpt *g, int N) {
    const ModelConfig *cfg = &g->cfg;
    float scale = attn_scale(cfg);
    AttnDims dims = {N, g->n_seqs, g->cu_seqlens, cfg->n_head, cfg->n_head, cfg->n_embd / cfg->n_head,
                     scale, attn_gate_scale(cfg->attn, scale)};
    return dims;
}

/* atty (N,C) of layer activations a */
static void attention_forward(Gpt *g, const LayerActs *a, int N) {
    AttnBuffers *ab = &g->attn;
    attn_load(g, a, g->pos, N);
    AttnDims dims = attn_dims(g, N);
    attn_ref_forward(&dims, ab->q, ab->k, ab->v, a->w ? ab->w : NULL, a->beta ? ab->beta : NULL,
                     a->gate ? ab->gate : NULL, ab->o, ab->lse);
    for (size_t i = 0; i < (size_t)N * g->cfg.n_embd; i++) a->atty[i] = (float)ab->o[i];
}

/* From datty: dqkv, and dw, dbeta (PaTH), dgate (gated), all overwritten. */
static void attention_backward(Gpt *g, const LayerActs *a, int N) {
    const ModelConfig *cfg = &g->cfg;
    AttnBuffers *ab = &g->attn;
    ActivationGrads *da = &g->dacts;
    int C = cfg->n_embd, NH = cfg->n_head, d = C / NH, rope = cfg->attn == ATTN_ROPE;
    attn_load(g, a, g->pos, N);
    for (size_t i = 0; i < (size_t)N * C; i++) ab->dout[i] = da->datty[i];
    AttnDims dims = attn_dims(g, N);
    attn_ref_backward(&dims, ab->q, ab->k, ab->v, a->w ? ab->w : NULL, a->beta ? ab->beta : NULL,
                      a->gate ? ab->gate : NULL, ab->dout, ab->dq, ab->dk, ab->dv, a->w ? ab->dw : NULL,
                      a->beta ? ab->dbeta : NULL, a->gate ? ab->dgate : NULL);
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        for (int h = 0; h < NH && rope; h++) {
            rope_rotate(ab->dq + o + (size_t)h * d, d, g->pos[n], cfg->rope_theta, -1);
            rope_rotate(ab->dk + o + (size_t)h * d, d, g->pos[n], cfg->rope_theta, -1);
        }
        float *dqkv = da->dqkv + (size_t)n * 3 * C;
        for (int c = 0; c < C; c++) {
            dqkv[c] = (float)ab->dq[o + c];
            dqkv[C + c] = (float)ab->dk[o + c];
            dqkv[2 * C + c] = (float)ab->dv[o + c];
            if (a->w) da->dw[o + c] = (float)ab->dw[o + c];
        }
        for (int h = 0; h < NH; h++) {
            if (a->beta) da->dbeta[(size_t)n * NH + h] = (float)ab->dbeta[(size_t)n * NH + h];
            if (a->gate) da->dgate[(size_t)n * NH + h] = (float)ab->dgate[(size_t)n * NH + h];
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * the transformer block, in the pieces that forward and decoding share */

/* ln1, qkv, and the projections feeding w (up to w_up), beta and the gate; x (N,C) the block input */
static void attn_project(const Gpt *g, const LayerParams *lp, const LayerActs *a, const float *x, int N) {
    int C = g->cfg.n_embd, NH = g->cfg.n_head, R = g->cfg.w_rank;
    layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, lp->ln1w, lp->ln1b, N, C);
    matmul_forward(a->qkv, a->ln1, lp->qkvw, lp->qkvb, N, C, 3 * C);
    if (a->w) {
        matmul_forward(a->w_low, a->ln1, lp->wdown, NULL, N, C, R);
        matmul_forward(a->w_up, a->w_low, lp->wup, NULL, N, R, C);
        matmul_forward(a->beta, a->ln1, lp->betaw, lp->betab, N, C, NH);
        beta_forward(a->beta, (size_t)N * NH);
    }
    if (a->gate) {
        matmul_forward(a->gate, a->ln1, lp->gatew, lp->gateb, N, C, NH);
        gate_forward(a->gate, (size_t)N * NH);
    }
}

/* From dqkv, dw (of w), dbeta, dgate: dln1 and the parameter gradients, then dresidual += ln1's
 * backward. x (N,C) the block input. */
static void attn_project_backward(Gpt *g, const LayerParams *lp, const LayerParams *gp, const LayerActs *a,
                                  const float *x, int N) {
    const ModelConfig *cfg = &g->cfg;
    ActivationGrads *da = &g->dacts;
    int C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank;
    memset(da->dln, 0, sizeof(float) * N * C);
    matmul_backward(da->dln, gp->qkvw, gp->qkvb, da->dqkv, a->ln1, lp->qkvw, N, C, 3 * C);
    if (a->w) {
        wnorm_backward(da->dw, a->w, a->w_conv, N, NH, C / NH);
        memset(da->dw_up, 0, sizeof(float) * N * C);
        memset(da->dw_low, 0, sizeof(float) * N * R);
        wconv_backward(da->dw_up, gp->wconv, da->dw, a->w_up, lp->wconv, g->doc_start, g->batch_B, g->batch_T,
                       C, cfg->conv_size);
        matmul_backward(da->dw_low, gp->wup, NULL, da->dw_up, a->w_low, lp->wup, N, R, C);
        matmul_backward(da->dln, gp->wdown, NULL, da->dw_low, a->ln1, lp->wdown, N, C, R);
        beta_backward(da->dbeta, a->beta, (size_t)N * NH);
        matmul_backward(da->dln, gp->betaw, gp->betab, da->dbeta, a->ln1, lp->betaw, N, C, NH);
    }
    if (a->gate) {
        gate_backward(da->dgate, a->gate, (size_t)N * NH);
        matmul_backward(da->dln, gp->gatew, gp->gateb, da->dgate, a->ln1, lp->gatew, N, C, NH);
    }
    layernorm_backward(da->dresidual, gp->ln1w, gp->ln1b, da->dln, x, lp->ln1w, a->ln1_mean, a->ln1_rstd, N, C);
}

/* residual2 = x + atty attprojw^T + attprojb;  residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))) */
static void block_finish(const Gpt *g, const LayerParams *lp, const LayerActs *a, const float *x, int N) {
    int C = g->cfg.n_embd;
    matmul_forward(a->residual2, a->atty, lp->attprojw, lp->attprojb, N, C, C);
    residual_add(a->residual2, x, (size_t)N * C);
    layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->residual2, lp->ln2w, lp->ln2b, N, C);
    matmul_forward(a->fch, a->ln2, lp->fcw, lp->fcb, N, C, 4 * C);
    gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C);
    matmul_forward(a->residual3, a->fch_gelu, lp->fcprojw, lp->fcprojb, N, 4 * C, C);
    residual_add(a->residual3, a->residual2, (size_t)N * C);
}

/* From dresidual (of residual3): dresidual becomes the gradient of residual2, datty is set. */
static void block_finish_backward(Gpt *g, const LayerParams *lp, const LayerParams *gp, const LayerActs *a, int N) {
    ActivationGrads *da = &g->dacts;
    int C = g->cfg.n_embd;
    memset(da->dfch_gelu, 0, sizeof(float) * N * 4 * C);
    memset(da->dfch, 0, sizeof(float) * N * 4 * C);
    memset(da->dln, 0, sizeof(float) * N * C);
    memset(da->datty, 0, sizeof(float) * N * C);
    matmul_backward(da->dfch_gelu, gp->fcprojw, gp->fcprojb, da->dresidual, a->fch_gelu, lp->fcprojw, N, 4 * C, C);
    gelu_backward(da->dfch, a->fch, da->dfch_gelu, (size_t)N * 4 * C);
    matmul_backward(da->dln, gp->fcw, gp->fcb, da->dfch, a->ln2, lp->fcw, N, C, 4 * C);
    layernorm_backward(da->dresidual, gp->ln2w, gp->ln2b, da->dln, a->residual2, lp->ln2w, a->ln2_mean,
                       a->ln2_rstd, N, C);
    matmul_backward(da->datty, gp->attprojw, gp->attprojb, da->dresidual, a->atty, lp->attprojw, N, C, C);
}

/* lnf and logits (N,Vp) of the last block's output x (N,C) */
static void lm_head(const Gpt *g, ActivationTensors *acts, const float *x, int N) {
    const ModelConfig *cfg = &g->cfg;
    layernorm_forward(acts->lnf, acts->lnf_mean, acts->lnf_rstd, x, g->params.lnfw, g->params.lnfb, N, cfg->n_embd);
    matmul_forward(acts->logits, acts->lnf, g->params.wte, NULL, N, cfg->n_embd, cfg->padded_vocab_size);
}

/* ---------------------------------------------------------------------------------------------
 * the model: gpt.h */

Gpt *gpt_create(const ModelConfig *cfg, int B, int T, uint64_t seed) {
    char why[256];
    if (model_config_check(cfg, why, sizeof why) != 0) die("gpt_create: bad model config: %s", why);
    if (B < 1 || T < 1) die("gpt_create: batch %d x %d must have at least one row and one token", B, T);
    if (T > cfg->max_seq_len) die("gpt_create: T = %d is longer than max_seq_len = %d", T, cfg->max_seq_len);
    if ((long long)B * T > INT_MAX / 4) die("gpt_create: batch %d x %d has too many tokens", B, T);
    Gpt *g = callocCheck(1, sizeof(Gpt));
    g->cfg = *cfg;
    g->B = B;
    g->T = T;
    g->num_params = param_specs(cfg, g->specs);
    g->buffer_elems = g->moment_end = g->num_params;
    g->params_memory = mallocCheck(sizeof(float) * g->num_params);
    g->grads_memory = callocCheck(g->num_params, sizeof(float));
    g->m_memory = callocCheck(g->num_params, sizeof(float));
    g->v_memory = callocCheck(g->num_params, sizeof(float));
    param_init(cfg, g->specs, g->params_memory, seed);
    param_point(g->specs, g->params_memory, &g->params);
    param_point(g->specs, g->grads_memory, &g->grads);
    size_t N = (size_t)B * T;
    acts_alloc(&g->acts, cfg, N);
    dacts_alloc(&g->dacts, cfg, N);
    attn_alloc(&g->attn, N, cfg->n_embd, cfg->n_head);
    g->inputs = mallocCheck(sizeof(int) * N);
    g->targets = mallocCheck(sizeof(int) * N);
    g->doc_start = mallocCheck(sizeof(int) * N);
    g->pos = mallocCheck(sizeof(int) * N);
    g->cu_seqlens = mallocCheck(sizeof(int) * (N + 1));
    return g; /* the decoding cache comes with the first gpt_decode_begin */
}

void gpt_free(Gpt *g) {
    if (!g) return;
    free(g->params_memory); free(g->grads_memory); free(g->m_memory); free(g->v_memory);
    free(g->acts.memory); free(g->dacts.memory); free(g->attn.memory);
    free(g->inputs); free(g->targets); free(g->doc_start); free(g->pos); free(g->cu_seqlens);
    free(g->cache.len); free(g->cache.memory); free(g->cache.hist); free(g->cache.acts.memory);
    free(g);
}

const ModelConfig *gpt_config(const Gpt *g) { return &g->cfg; }
size_t gpt_num_params(const Gpt *g) { return g->num_params; }

/* State array which: its memory, which holds the flat parameters [*begin, *end) from its start */
static float *state_buffer(const Gpt *g, int which, size_t *begin, size_t *end, const char *who) {
    int moment = which == GPT_ADAM_M || which == GPT_ADAM_V;
    *begin = moment ? g->moment_begin : 0;
    *end = moment ? g->moment_end : g->num_params;
    switch (which) {
    case GPT_PARAMS: return g->params_memory;
    case GPT_ADAM_M: return g->m_memory;
    case GPT_ADAM_V: return g->v_memory;
    case GPT_GRADS: return g->grads_memory;
    }
    die("%s: which = %d; use GPT_PARAMS (0), GPT_ADAM_M (1), GPT_ADAM_V (2) or GPT_GRADS (3)", who, which);
}

void gpt_copy_out(Gpt *g, int which, float *host) {
    size_t begin, end;
    const float *buf = state_buffer(g, which, &begin, &end, "gpt_copy_out");
    memcpy(host + begin, buf, sizeof(float) * (end - begin));
}

void gpt_copy_in(Gpt *g, int which, const float *host) {
    size_t begin, end;
    float *buf = state_buffer(g, which, &begin, &end, "gpt_copy_in");
    memcpy(buf, host + begin, sizeof(float) * (end - begin));
}

size_t gpt_state_bytes(const Gpt *g, int which) {
    size_t begin, end;
    state_buffer(g, which, &begin, &end, "gpt_state_bytes");
    return sizeof(float) * (which == GPT_ADAM_M || which == GPT_ADAM_V ? end - begin : g->buffer_elems);
}

/* n_new floats (zeros) holding the n_keep of old from its element first; frees old */
static float *moved(float *old, size_t first, size_t n_keep, size_t n_new) {
    float *buf = callocCheck(n_new, sizeof(float));
    memcpy(buf, old + first, sizeof(float) * n_keep);
    free(old);
    return buf;
}

void gpt_shard_optimizer(Gpt *g, size_t begin, size_t end, size_t n_padded) {
    if (begin > end || begin < g->moment_begin || end > g->moment_end || n_padded < g->buffer_elems)
        die("gpt_shard_optimizer: shard [%zu, %zu), buffers of %zu: the shard must lie inside the moments the model "
            "holds, [%zu, %zu), and the buffers cannot shrink below %zu", begin, end, n_padded, g->moment_begin,
            g->moment_end, g->buffer_elems);
    g->m_memory = moved(g->m_memory, begin - g->moment_begin, end - begin, end - begin);
    g->v_memory = moved(g->v_memory, begin - g->moment_begin, end - begin, end - begin);
    g->params_memory = moved(g->params_memory, 0, g->buffer_elems, n_padded);
    g->grads_memory = moved(g->grads_memory, 0, g->buffer_elems, n_padded);
    param_point(g->specs, g->params_memory, &g->params);
    param_point(g->specs, g->grads_memory, &g->grads);
    g->moment_begin = begin;
    g->moment_end = end;
    g->buffer_elems = n_padded;
}

/* Every token of tokens (rows x cols) must be a real vocabulary id. */
static void check_tokens(const char *who, const char *what, const int *tokens, int rows, int cols, int V) {
    for (int i = 0; i < rows * cols; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            die("%s: %s %d at row %d, position %d is outside the vocabulary [0, %d)", who, what, tokens[i],
                i / cols, i % cols, V);
}

/* doc_start, pos and the packed sequences of the batch in g->inputs (B rows of T). */
static void documents(Gpt *g, int B, int T) {
    g->n_seqs = batch_documents(&g->cfg, g->inputs, B, T, g->doc_start, g->pos, g->cu_seqlens);
}

GptLoss gpt_forward(Gpt *g, const int *inputs, const int *targets, int B, int T) {
    const ModelConfig *cfg = &g->cfg;
    int C = cfg->n_embd, NH = cfg->n_head, V = cfg->vocab_size, N = B * T;
    if (B < 1 || T < 1 || B > g->B || T > g->T)
        die("gpt_forward: batch %d x %d does not fit the %d x %d given to gpt_create", B, T, g->B, g->T);
    check_tokens("gpt_forward", "input token", inputs, B, T, V);
    for (int n = 0; targets && n < N; n++)
        if (targets[n] >= V)
            die("gpt_forward: target %d at row %d, position %d is not below the vocabulary size %d (use a "
                "negative target to ignore a position)", targets[n], n / T, n % T, V);
    memcpy(g->inputs, inputs, sizeof(int) * N);
    for (int n = 0; n < N; n++) g->targets[n] = targets ? targets[n] : -1;
    g->batch_B = B;
    g->batch_T = T;
    g->has_targets = targets != NULL;
    documents(g, B, T);

    size_t cap = (size_t)g->B * g->T;
    encoder_forward(g->acts.encoded, g->inputs, g->pos, g->params.wte, cfg->attn == ATTN_LEARNED ? g->params.wpe : NULL,
                    N, C);
    const float *x = g->acts.encoded;
    for (int l = 0; l < cfg->n_layer; l++) {
        LayerParams lp = layer_params(&g->params, cfg, l);
        LayerActs a = layer_acts(&g->acts, cfg, l, cap);
        attn_project(g, &lp, &a, x, N);
        if (a.w) {
            wconv_forward(a.w_conv, a.w_up, lp.wconv, g->doc_start, B, T, C, cfg->conv_size);
            wnorm_forward(a.w, a.w_conv, N, NH, C / NH);
        }
        attention_forward(g, &a, N);
        block_finish(g, &lp, &a, x, N);
        x = a.residual3;
    }
    lm_head(g, &g->acts, x, N);
    GptLoss none = {0.0f, 0, 0};
    if (!targets) return none;
    return softmax_crossentropy_forward(g->acts.probs, g->acts.losses, g->acts.logits, g->targets, N, V,
                                        cfg->padded_vocab_size);
}

/* gpt_set_grad_ready: the ranges backward has finished, layer l's or (l = -1) the unstacked tensors' */
static void grads_ready(Gpt *g, int l) {
    ParamRange r[NUM_PARAM_TENSORS];
    int n = g->ready_fn ? param_layer_ranges(g->specs, g->cfg.n_layer, l, r) : 0;
    for (int i = 0; i < n; i++) g->ready_fn(g->ready_ctx, g->grads_memory, r[i].begin, r[i].end, NULL);
}

void gpt_set_grad_ready(Gpt *g, GptGradReady fn, void *ctx) {
    g->ready_fn = fn;
    g->ready_ctx = ctx;
}

void gpt_backward(Gpt *g, float grad_scale) {
    const ModelConfig *cfg = &g->cfg;
    if (!g->has_targets) die("gpt_backward: the last gpt_forward had no targets (or there was none)");
    int C = cfg->n_embd, L = cfg->n_layer, N = g->batch_B * g->batch_T;
    size_t cap = (size_t)g->B * g->T;
    ActivationTensors *acts = &g->acts;
    ActivationGrads *da = &g->dacts;
    crossentropy_softmax_backward(da->dlogits, acts->probs, g->targets, grad_scale, N, cfg->vocab_size,
                                  cfg->padded_vocab_size);
    memset(da->dln, 0, sizeof(float) * N * C);
    memset(da->dresidual, 0, sizeof(float) * N * C);
    matmul_backward(da->dln, g->grads.wte, NULL, da->dlogits, acts->lnf, g->params.wte, N, C, cfg->padded_vocab_size);
    LayerActs top = layer_acts(acts, cfg, L - 1, cap);
    layernorm_backward(da->dresidual, g->grads.lnfw, g->grads.lnfb, da->dln, top.residual3, g->params.lnfw,
                       acts->lnf_mean, acts->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        LayerParams lp = layer_params(&g->params, cfg, l), gp = layer_params(&g->grads, cfg, l);
        LayerActs a = layer_acts(acts, cfg, l, cap);
        const float *x = l == 0 ? acts->encoded : layer_acts(acts, cfg, l - 1, cap).residual3;
        block_finish_backward(g, &lp, &gp, &a, N);
        attention_backward(g, &a, N);
        attn_project_backward(g, &lp, &gp, &a, x, N);
        grads_ready(g, l);
    }
    encoder_backward(g->grads.wte, cfg->attn == ATTN_LEARNED ? g->grads.wpe : NULL, da->dresidual, g->inputs,
                     g->pos, N, C);
    grads_ready(g, -1);
}

void gpt_zero_grad(Gpt *g) { memset(g->grads_memory, 0, sizeof(float) * g->buffer_elems); }

float *gpt_grad_buffer(Gpt *g) { return g->grads_memory; }
float *gpt_param_buffer(Gpt *g) { return g->params_memory; }
void gpt_params_written(Gpt *g) { (void)g; /* the matmuls read params_memory itself */ }

double gpt_grad_sum_squares(Gpt *g, size_t begin, size_t end) {
    if (begin > end || end > g->num_params)
        die("gpt_grad_sum_squares: range [%zu, %zu) is not inside the %zu parameters", begin, end, g->num_params);
    double sum = 0.0; /* serial: the same sum whatever the thread count */
    for (size_t i = begin; i < end; i++) sum += (double)g->grads_memory[i] * g->grads_memory[i];
    return sum;
}

float gpt_grad_norm(Gpt *g) { return (float)sqrt(gpt_grad_sum_squares(g, 0, g->num_params)); }

void gpt_update(Gpt *g, const AdamWConfig *opt, float lr, float grad_mult, int t, size_t begin, size_t end) {
    if (t < 1) die("gpt_update: step t = %d must be at least 1", t);
    if (begin > end || begin < g->moment_begin || end > g->moment_end)
        die("gpt_update: range [%zu, %zu) is not inside [%zu, %zu), the parameters whose AdamW moments the model "
            "holds", begin, end, g->moment_begin, g->moment_end);
    AdamWSegment seg[NUM_PARAM_TENSORS];
    int count = adamw_segments(g->specs, begin, end, seg);
    for (int i = 0; i < count; i++) {
        size_t o = seg[i].begin, mo = o - g->moment_begin;
        adamw_step(opt, lr, grad_mult, t, seg[i].decay, g->params_memory + o, g->grads_memory + o, g->m_memory + mo,
                   g->v_memory + mo, seg[i].end - seg[i].begin);
    }
}

/* ---------------------------------------------------------------------------------------------
 * decoding with a key cache (doc/DESIGN.md section 1, "Decoding with a key cache")
 *
 * Per sequence b, layer, head, the cache holds its current document's tokens j < len: keys k_j, for
 * PaTH already multiplied by every later H (k_j <- H_t k_j as each token t arrives, so the cached key
 * is H_{t}...H_{j+1} k_j and q_t . k_j = s_tj), values v_j and gate sums G_j. A new token t:
 *   PaTH: every cached k_j <- k_j - beta_t (w_t . k_j) w_t;   then append k_t (unmodified), v_t,
 *   G_t = G_{t-1} + g_t;   z_j = scale q_t . k_j + gate_scale (G_t - G_j);   o_t = softmax(z) v.
 * The conv on w reads the last K-1 w_up rows of the document (hist). A doc_token resets the
 * sequence's cache first, as gpt_forward starts a document there. Float64, as attn_ref; allocated by
 * the first gpt_decode_begin (L*B*NH*T*(2d+1) doubles). */

static void cache_alloc(DecodeCache *dc, const ModelConfig *cfg, int B, int T) {
    size_t L = cfg->n_layer, NH = cfg->n_head, C = cfg->n_embd, d = C / NH, K = cfg->conv_size;
    size_t entries = L * B * NH * T;
    dc->n = 0;
    dc->len = callocCheck(B, sizeof(int));
    double *p = dc->memory = mallocCheck(sizeof(double) * (entries * (2 * d + 1) + (size_t)B * NH * T));
    dc->k = p;
    dc->v = p + entries * d;
    dc->G = p + 2 * entries * d;
    dc->z = p + entries * (2 * d + 1);
    dc->hist = attn_uses_path(cfg->attn) && K > 1 ? callocCheck(L * B * (K - 1) * C, sizeof(float)) : NULL;
    acts_alloc(&dc->acts, cfg, (size_t)B);
}

/* Forgets sequence b's document: its next token starts a new one. */
static void decode_reset(Gpt *g, int b) {
    DecodeCache *dc = &g->cache;
    size_t rows = (size_t)(g->cfg.conv_size - 1) * g->cfg.n_embd;
    dc->len[b] = 0;
    for (int l = 0; l < g->cfg.n_layer && dc->hist; l++)
        memset(dc->hist + ((size_t)l * g->B + b) * rows, 0, sizeof(float) * rows);
}

void gpt_decode_begin(Gpt *g, int n) {
    if (n < 1 || n > g->B) die("gpt_decode_begin: %d sequences; the model was created for 1 to %d", n, g->B);
    if (!g->cache.memory) cache_alloc(&g->cache, &g->cfg, g->B, g->T);
    g->cache.n = n;
    for (int b = 0; b < n; b++) decode_reset(g, b);
}

/* w_conv (n,C) of layer l for each sequence's new token: the forward's conv at the document's last
 * position, its earlier taps read from hist; then hist moves on by one row. */
static void wconv_step(Gpt *g, int l, const float *wc, const LayerActs *a, int n) {
    int C = g->cfg.n_embd, K = g->cfg.conv_size;
    for (int b = 0; b < n; b++) {
        float *hist = g->cache.hist ? g->cache.hist + ((size_t)l * g->B + b) * (K - 1) * C : NULL;
        const float *u = a->w_up + (size_t)b * C;
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int k = 0; k < K - 1; k++) acc += wc[(size_t)c * K + k] * hist[(size_t)k * C + c];
            a->w_conv[(size_t)b * C + c] = acc + wc[(size_t)c * K + K - 1] * u[c];
        }
        if (!hist) continue;
        memmove(hist, hist + C, sizeof(float) * (K - 2) * C);
        memcpy(hist + (size_t)(K - 2) * C, u, sizeof(float) * C);
    }
}

static double dot_d(const double *a, const double *b, int d) {
    double s = 0.0;
    for (int e = 0; e < d; e++) s += a[e] * b[e];
    return s;
}

/* atty (n,C) of layer l: each sequence's new token attends over its cached document */
static void decode_attention(Gpt *g, int l, const LayerActs *a, int n) {
    const ModelConfig *cfg = &g->cfg;
    DecodeCache *dc = &g->cache;
    AttnBuffers *ab = &g->attn;
    int NH = cfg->n_head, C = cfg->n_embd, d = C / NH, T = g->T;
    float scale = attn_scale(cfg), gate_scale = attn_gate_scale(cfg->attn, scale);
    attn_load(g, a, dc->len, n);
#pragma omp parallel for
    for (int u = 0; u < n * NH; u++) {
        int b = u / NH, h = u % NH, len = dc->len[b];
        size_t first = (((size_t)l * g->B + b) * NH + h) * T; /* cache entry of the document's token 0 */
        double *kc = dc->k + first * d, *vc = dc->v + first * d, *G = dc->G + first, *z = dc->z + (size_t)u * T;
        size_t o = (size_t)b * C + (size_t)h * d;
        const double *q = ab->q + o;
        if (a->w) {
            const double *w = ab->w + o;
            double beta = ab->beta[(size_t)b * NH + h];
            for (int j = 0; j < len; j++) {
                double wk = dot_d(w, kc + (size_t)j * d, d);
                for (int e = 0; e < d; e++) kc[(size_t)j * d + e] -= beta * wk * w[e];
            }
        }
        memcpy(kc + (size_t)len * d, ab->k + o, sizeof(double) * d);
        memcpy(vc + (size_t)len * d, ab->v + o, sizeof(double) * d);
        G[len] = (len > 0 ? G[len - 1] : 0.0) + (a->gate ? ab->gate[(size_t)b * NH + h] : 0.0);
        double zmax = -INFINITY, sum = 0.0;
        for (int j = 0; j <= len; j++) {
            z[j] = scale * dot_d(q, kc + (size_t)j * d, d) + gate_scale * (G[len] - G[j]);
            zmax = fmax(zmax, z[j]);
        }
        for (int j = 0; j <= len; j++) sum += z[j] = exp(z[j] - zmax);
        for (int e = 0; e < d; e++) {
            double acc = 0.0;
            for (int j = 0; j <= len; j++) acc += z[j] * vc[(size_t)j * d + e];
            a->atty[o + e] = (float)(acc / sum);
        }
    }
}

void gpt_decode_step(Gpt *g, const int *tokens, float *logits) {
    const ModelConfig *cfg = &g->cfg;
    DecodeCache *dc = &g->cache;
    int n = dc->n, C = cfg->n_embd, NH = cfg->n_head;
    if (n == 0) die("gpt_decode_step: call gpt_decode_begin first");
    check_tokens("gpt_decode_step", "token", tokens, n, 1, cfg->vocab_size);
    for (int b = 0; b < n; b++) {
        if (cfg->doc_token >= 0 && tokens[b] == cfg->doc_token) decode_reset(g, b);
        if (dc->len[b] >= g->T)
            die("gpt_decode_step: sequence %d would grow past %d tokens, the T given to gpt_create", b, g->T);
    }
    ActivationTensors *acts = &dc->acts;
    encoder_forward(acts->encoded, tokens, dc->len, g->params.wte, cfg->attn == ATTN_LEARNED ? g->params.wpe : NULL,
                    n, C);
    const float *x = acts->encoded;
    for (int l = 0; l < cfg->n_layer; l++) {
        LayerParams lp = layer_params(&g->params, cfg, l);
        LayerActs a = layer_acts(acts, cfg, l, (size_t)g->B);
        attn_project(g, &lp, &a, x, n);
        if (a.w) {
            wconv_step(g, l, lp.wconv, &a, n);
            wnorm_forward(a.w, a.w_conv, n, NH, C / NH);
        }
        decode_attention(g, l, &a, n);
        block_finish(g, &lp, &a, x, n);
        x = a.residual3;
    }
    lm_head(g, acts, x, n);
    memcpy(logits, acts->logits, sizeof(float) * n * cfg->padded_vocab_size);
    for (int b = 0; b < n; b++) dc->len[b]++;
}

/* The oracle's prefill: the prompt token by token through gpt_decode_step (O(T^2) per sequence, and
 * plainly the same cache as decoding); the GPU model fills the cache from one forward pass instead. */
void gpt_decode_prefill(Gpt *g, const int *tokens, int n, int T, float *logits) {
    if (T < 1 || T > g->T) die("gpt_decode_prefill: a prompt of %d tokens; the model was created for 1 to %d", T, g->T);
    gpt_decode_begin(g, n);
    int *step = mallocCheck(sizeof(int) * n);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < n; b++) step[b] = tokens[(size_t)b * T + t];
        gpt_decode_step(g, step, logits);
    }
    free(step);
}

int gpt_on_gpu(void) { return 0; }
