/* attn_ref.c: the attention oracle, straight from the definition, in double precision.
 *
 * Per packed sequence (tokens bos..eos-1) and query head hq reading kv head h (doc/DESIGN.md 1):
 *   H_t  = I - beta_t w_t w_t^T                 (identity when w is NULL: softmax attention)
 *   G_t  = sum_{bos<=u<=t} g_u                   (0 when g is NULL)
 *   s_ij = q_i^T H_i H_{i-1} ... H_{j+1} k_j     (j <= i; empty product for j = i)
 *   z_ij = scale s_ij + gate_scale (G_i - G_j)
 *   o_i  = sum_j softmax_j(z_i.) v_j,   lse_i = log sum_j exp z_ij
 *
 * Forward, per query i: x = q_i; for j = i down to bos: s_ij = x.k_j; x <- x - beta_j (w_j.x) w_j.
 * (At step j, x = H_{j+1}..H_i q_i, and x.k_j = s_ij because every H is symmetric.)
 *
 * Backward, per query i, with this query's chain of states x_j kept (O(T d) scratch):
 *   p_ij = softmax,  D_i = do_i.o_i,  dz_ij = p_ij (do_i.v_j - D_i),  ds_ij = scale dz_ij
 *   dv_j += p_ij do_i;   dG_i += gate_scale dz_ij;   dG_j -= gate_scale dz_ij
 *   a = 0;  for j = bos .. i (the forward loop reversed; a is the adjoint of the state x_{j-1}):
 *       dbeta_j -= (w_j.x_j)(w_j.a);  dw_j -= beta_j [(w_j.a) x_j + (w_j.x_j) a];  a <- H_j a
 *       dk_j += ds_ij x_j;  a += ds_ij k_j
 *   dq_i = a;   dg = reverse cumulative sum of dG within each sequence.
 *
 * O(T^2 d) per head: clarity over speed. Work is split over (sequence, kv head) pairs, each owning
 * its gradients, so threads never write the same element. The sequence index runs fastest, so that
 * threads working side by side hold different sequences: the heads of one token share cache lines
 * (beta, g and their gradients are (N, H)), and writing them from two threads cost 1.4x in backward.
 * Checked by tests/test_attn_ref.c: finite differences of every input element, and the explicit
 * d x d product of the definition. */
#include "attn_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"

typedef struct {
    const AttnDims *dims;
    const double *q, *k, *v, *w, *beta, *g;
} AttnInputs;

static double dot(const double *a, const double *b, int d) {
    double s = 0.0;
    for (int e = 0; e < d; e++) s += a[e] * b[e];
    return s;
}

static void axpy(double alpha, const double *x, double *y, int d) {
    for (int e = 0; e < d; e++) y[e] += alpha * x[e];
}

/* x <- H_j x = x - beta_j (w_j . x) w_j */
static void apply_householder(const double *wj, double bj, double *x, int d) {
    axpy(-bj * dot(wj, x, d), wj, x, d);
}

/* G (n, Hq) = per-sequence cumulative sum of g for tokens bos..eos-1 (zeros without a gate). */
static void gate_cumsum(const AttnInputs *in, int bos, int eos, double *G) {
    int Hq = in->dims->Hq;
    memset(G, 0, sizeof(double) * (size_t)(eos - bos) * Hq);
    if (!in->g) return;
    for (int t = bos; t < eos; t++)
        for (int hq = 0; hq < Hq; hq++)
            G[(size_t)(t - bos) * Hq + hq] = in->g[(size_t)t * Hq + hq] + (t > bos ? G[(size_t)(t - bos - 1) * Hq + hq] : 0.0);
}

/* For query i of head hq: fills X[j-bos] with the state x_j met by key j (if X is not NULL) and
 * z[j-bos] with the logit z_ij, for j = bos..i. Returns lse_i. */
static double query_logits(const AttnInputs *in, int bos, int i, int hq, const double *G, double *x,
                           double *X, double *z) {
    const AttnDims *dm = in->dims;
    int d = dm->d, H = dm->H, Hq = dm->Hq, h = hq / (Hq / H);
    memcpy(x, in->q + ((size_t)i * Hq + hq) * d, sizeof(double) * d);
    double zmax = -INFINITY;
    for (int j = i; j >= bos; j--) {
        size_t kj = ((size_t)j * H + h) * d;
        if (X) memcpy(X + (size_t)(j - bos) * d, x, sizeof(double) * d);
        double zz = dm->scale * dot(x, in->k + kj, d);
        if (in->g) zz += dm->gate_scale * (G[(size_t)(i - bos) * Hq + hq] - G[(size_t)(j - bos) * Hq + hq]);
        z[j - bos] = zz;
        if (zz > zmax) zmax = zz;
        if (in->w) apply_householder(in->w + kj, in->beta[(size_t)j * H + h], x, d);
    }
    double sum = 0.0;
    for (int j = bos; j <= i; j++) sum += exp(z[j - bos] - zmax);
    return zmax + log(sum);
}

static void forward_unit(const AttnInputs *in, int bos, int eos, int h, double *o, double *lse) {
    const AttnDims *dm = in->dims;
    int d = dm->d, H = dm->H, Hq = dm->Hq, grp = Hq / H, n = eos - bos;
    double *G = mallocCheck(sizeof(double) * (size_t)n * Hq);
    double *z = mallocCheck(sizeof(double) * (size_t)n);
    double *x = mallocCheck(sizeof(double) * (size_t)d);
    gate_cumsum(in, bos, eos, G);
    for (int hq = h * grp; hq < (h + 1) * grp; hq++) {
        for (int i = bos; i < eos; i++) {
            double l = query_logits(in, bos, i, hq, G, x, NULL, z);
            double *oi = o + ((size_t)i * Hq + hq) * d;
            memset(oi, 0, sizeof(double) * d);
            for (int j = bos; j <= i; j++) axpy(exp(z[j - bos] - l), in->v + ((size_t)j * H + h) * d, oi, d);
            lse[(size_t)i * Hq + hq] = l;
        }
    }
    free(G); free(z); free(x);
}

void attn_ref_forward(const AttnDims *dims, const double *q, const double *k, const double *v,
                      const double *w, const double *beta, const double *g, double *o, double *lse) {
    AttnInputs in = {dims, q, k, v, w, beta, g};
    int units = dims->n_seqs * dims->H;
#pragma omp parallel for schedule(dynamic)
    for (int u = 0; u < units; u++) {
        int s = u % dims->n_seqs, h = u / dims->n_seqs;
        forward_unit(&in, dims->cu_seqlens[s], dims->cu_seqlens[s + 1], h, o, lse);
    }
}

typedef struct {
    double *dq, *dk, *dv, *dw, *dbeta, *dg;
} AttnGrads;

/* Adds query i's contributions (head hq) to the gradients of keys/values/w/beta/gate bos..i
 * and writes dq_i. X (n, d) and z, p (n) are scratch. */
static void backward_query(const AttnInputs *in, const double *dout, const AttnGrads *gr, int bos, int i,
                           int hq, const double *G, double *dG, double *X, double *z, double *x, double *a) {
    const AttnDims *dm = in->dims;
    int d = dm->d, H = dm->H, Hq = dm->Hq, h = hq / (Hq / H);
    double l = query_logits(in, bos, i, hq, G, x, X, z);
    const double *doi = dout + ((size_t)i * Hq + hq) * d;
    /* o_i again, then D_i = do_i . o_i; z becomes p */
    memset(x, 0, sizeof(double) * d);
    for (int j = bos; j <= i; j++) {
        z[j - bos] = exp(z[j - bos] - l);
        axpy(z[j - bos], in->v + ((size_t)j * H + h) * d, x, d);
    }
    double D = dot(doi, x, d);
    memset(a, 0, sizeof(double) * d);
    for (int j = bos; j <= i; j++) {
        size_t kj = ((size_t)j * H + h) * d;
        double p = z[j - bos];
        double dz = p * (dot(doi, in->v + kj, d) - D);
        double ds = dm->scale * dz;
        axpy(p, doi, gr->dv + kj, d);
        if (in->g) {
            dG[(size_t)(i - bos) * Hq + hq] += dm->gate_scale * dz;
            dG[(size_t)(j - bos) * Hq + hq] -= dm->gate_scale * dz;
        }
        const double *xj = X + (size_t)(j - bos) * d;
        if (in->w) {
            const double *wj = in->w + kj;
            double bj = in->beta[(size_t)j * H + h];
            double wa = dot(wj, a, d), wx = dot(wj, xj, d);
            gr->dbeta[(size_t)j * H + h] -= wx * wa;
            axpy(-bj * wa, xj, gr->dw + kj, d);
            axpy(-bj * wx, a, gr->dw + kj, d);
            axpy(-bj * wa, wj, a, d);
        }
        axpy(ds, xj, gr->dk + kj, d);
        axpy(ds, in->k + kj, a, d);
    }
    memcpy(gr->dq + ((size_t)i * Hq + hq) * d, a, sizeof(double) * d);
}

static void backward_unit(const AttnInputs *in, const double *dout, const AttnGrads *gr, int bos, int eos, int h) {
    const AttnDims *dm = in->dims;
    int d = dm->d, H = dm->H, Hq = dm->Hq, grp = Hq / H, n = eos - bos;
    double *G = mallocCheck(sizeof(double) * (size_t)n * Hq);
    double *dG = callocCheck((size_t)n * Hq, sizeof(double));
    double *X = mallocCheck(sizeof(double) * (size_t)n * d);
    double *z = mallocCheck(sizeof(double) * (size_t)n);
    double *x = mallocCheck(sizeof(double) * (size_t)d);
    double *a = mallocCheck(sizeof(double) * (size_t)d);
    gate_cumsum(in, bos, eos, G);
    for (int hq = h * grp; hq < (h + 1) * grp; hq++)
        for (int i = bos; i < eos; i++) backward_query(in, dout, gr, bos, i, hq, G, dG, X, z, x, a);
    if (in->g) { /* dg = reverse cumsum of dG; only this unit's query heads */
        for (int hq = h * grp; hq < (h + 1) * grp; hq++) {
            double acc = 0.0;
            for (int t = eos - 1; t >= bos; t--) {
                acc += dG[(size_t)(t - bos) * Hq + hq];
                gr->dg[(size_t)t * Hq + hq] = acc;
            }
        }
    }
    free(G); free(dG); free(X); free(z); free(x); free(a);
}

void attn_ref_backward(const AttnDims *dims, const double *q, const double *k, const double *v,
                       const double *w, const double *beta, const double *g, const double *dout,
                       double *dq, double *dk, double *dv, double *dw, double *dbeta, double *dg) {
    AttnInputs in = {dims, q, k, v, w, beta, g};
    AttnGrads gr = {dq, dk, dv, dw, dbeta, dg};
    size_t N = (size_t)dims->n_tokens;
    memset(dk, 0, sizeof(double) * N * dims->H * dims->d);
    memset(dv, 0, sizeof(double) * N * dims->H * dims->d);
    if (w) {
        memset(dw, 0, sizeof(double) * N * dims->H * dims->d);
        memset(dbeta, 0, sizeof(double) * N * dims->H);
    }
    int units = dims->n_seqs * dims->H;
#pragma omp parallel for schedule(dynamic)
    for (int u = 0; u < units; u++) {
        int s = u % dims->n_seqs, h = u / dims->n_seqs;
        backward_unit(&in, dout, &gr, dims->cu_seqlens[s], dims->cu_seqlens[s + 1], h);
    }
}
