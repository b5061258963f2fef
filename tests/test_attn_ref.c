/* test_attn_ref.c: checks the double-precision attention oracle (model/attn_ref.c).
 *  1. forward against the definition with explicit d x d products
 *     P = H_i H_{i-1} ... H_{j+1}, s_ij = q_i^T P k_j, and a dense softmax (a second, independent
 *     implementation of doc/DESIGN.md section 1);
 *  2. backward against central finite differences of L = sum(o * R) for every element of every
 *     input (q, k, v, w, beta, g), on packed sequences with grouped heads;
 * for PaTH, PaTH-FoX (gate scaled), FoX (no w, gate unscaled) and plain softmax attention.
 * Bars: the forward agrees to rounding (1e-12 relative); central differences with eps 1e-5 have
 * truncation error ~eps^2 and rounding ~1e-16/eps, so 1e-7 relative separates a correct gradient
 * from a wrong one by many orders of magnitude. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../model/attn_ref.h"
#include "check.h"

#define FORWARD_BAR 1e-12
#define FD_BAR 1e-7
#define FD_EPS 1e-5

typedef struct {
    const char *name;
    int use_w, use_g;
    double beta_lo, beta_hi;
    int gate_scaled; /* 1: gate_scale = scale (PaTH-FoX); 0: gate_scale = 1 (FoX) */
} Case;

typedef struct {
    AttnDims dims;
    double *q, *k, *v, *w, *beta, *g, *R;
} Problem;

static double *randn(Rng *r, size_t n, double sd) {
    double *x = mallocCheck(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = sd * rng_normal(r);
    return x;
}

static void make_problem(Problem *p, const Case *c, const int *cu, int n_seqs, int Hq, int H, int d, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    int N = cu[n_seqs];
    p->dims = (AttnDims){N, n_seqs, cu, Hq, H, d, (float)(1.0 / sqrt(d)), 1.0f};
    p->dims.gate_scale = c->gate_scaled ? p->dims.scale : 1.0f;
    p->q = randn(&r, (size_t)N * Hq * d, 1.0);
    p->k = randn(&r, (size_t)N * H * d, 1.0);
    p->v = randn(&r, (size_t)N * H * d, 1.0);
    p->R = randn(&r, (size_t)N * Hq * d, 1.0);
    p->w = p->beta = p->g = NULL;
    if (c->use_w) {
        p->w = randn(&r, (size_t)N * H * d, 1.0);
        for (int t = 0; t < N * H; t++) {
            double nrm = 0.0;
            for (int e = 0; e < d; e++) nrm += p->w[t * d + e] * p->w[t * d + e];
            for (int e = 0; e < d; e++) p->w[t * d + e] /= sqrt(nrm);
        }
        p->beta = mallocCheck(sizeof(double) * N * H);
        for (int t = 0; t < N * H; t++) p->beta[t] = c->beta_lo + (c->beta_hi - c->beta_lo) * rng_uniform(&r);
    }
    if (c->use_g) {
        p->g = mallocCheck(sizeof(double) * N * Hq);
        for (int t = 0; t < N * Hq; t++) p->g[t] = log(0.5 + 0.5 * rng_uniform(&r)); /* strong enough to matter */
    }
}

static void free_problem(Problem *p) {
    free(p->q); free(p->k); free(p->v); free(p->w); free(p->beta); free(p->g); free(p->R);
}

/* o by the definition: explicit products of d x d matrices, dense softmax per row. */
static void definition_forward(const Problem *p, double *o) {
    const AttnDims *dm = &p->dims;
    int d = dm->d, Hq = dm->Hq, H = dm->H;
    double *P = mallocCheck(sizeof(double) * d * d), *Pn = mallocCheck(sizeof(double) * d * d);
    double *z = mallocCheck(sizeof(double) * (dm->n_tokens + 1));
    for (int s = 0; s < dm->n_seqs; s++) {
        int bos = dm->cu_seqlens[s], eos = dm->cu_seqlens[s + 1];
        for (int hq = 0; hq < Hq; hq++) {
            int h = hq / (Hq / H);
            for (int i = bos; i < eos; i++) {
                double zmax = -INFINITY;
                for (int j = bos; j <= i; j++) {
                    /* P = H_i H_{i-1} ... H_{j+1} */
                    for (int a = 0; a < d; a++)
                        for (int b = 0; b < d; b++) P[a * d + b] = a == b;
                    for (int t = i; t > j && p->w; t--) {
                        const double *wt = p->w + ((size_t)t * H + h) * d;
                        double bt = p->beta[t * H + h];
                        for (int a = 0; a < d; a++)       /* Pn = P (I - b w w^T) */
                            for (int b = 0; b < d; b++) {
                                double pw = 0.0;
                                for (int e = 0; e < d; e++) pw += P[a * d + e] * wt[e];
                                Pn[a * d + b] = P[a * d + b] - bt * pw * wt[b];
                            }
                        memcpy(P, Pn, sizeof(double) * d * d);
                    }
                    double sij = 0.0;
                    for (int a = 0; a < d; a++)
                        for (int b = 0; b < d; b++)
                            sij += p->q[((size_t)i * Hq + hq) * d + a] * P[a * d + b] * p->k[((size_t)j * H + h) * d + b];
                    double Gij = 0.0;
                    for (int t = j + 1; t <= i && p->g; t++) Gij += p->g[t * Hq + hq];
                    z[j - bos] = dm->scale * sij + dm->gate_scale * Gij;
                    if (z[j - bos] > zmax) zmax = z[j - bos];
                }
                double sum = 0.0;
                for (int j = bos; j <= i; j++) sum += exp(z[j - bos] - zmax);
                for (int e = 0; e < d; e++) {
                    double acc = 0.0;
                    for (int j = bos; j <= i; j++) acc += exp(z[j - bos] - zmax) / sum * p->v[((size_t)j * H + h) * d + e];
                    o[((size_t)i * Hq + hq) * d + e] = acc;
                }
            }
        }
    }
    free(P); free(Pn); free(z);
}

static double loss(const Problem *p, double *o, double *lse) {
    attn_ref_forward(&p->dims, p->q, p->k, p->v, p->w, p->beta, p->g, o, lse);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)p->dims.n_tokens * p->dims.Hq * p->dims.d; i++) L += o[i] * p->R[i];
    return L;
}

/* Central differences for every element of x (n elements) against the analytic gradient. */
static double fd_error(Problem *p, double *x, const double *grad, size_t n, double *o, double *lse) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_EPS;
        double lp = loss(p, o, lse);
        x[i] = x0 - FD_EPS;
        double lm = loss(p, o, lse);
        x[i] = x0;
        double fd = (lp - lm) / (2 * FD_EPS);
        num += (fd - grad[i]) * (fd - grad[i]);
        den += grad[i] * grad[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_case(const Case *c) {
    static const int cu[] = {0, 1, 8, 13}; /* a 1-token sequence, then 7 and 5 tokens */
    int n_seqs = 3, Hq = 4, H = 2, d = 5;
    Problem p;
    make_problem(&p, c, cu, n_seqs, Hq, H, d, 1234);
    int N = p.dims.n_tokens;
    size_t nq = (size_t)N * Hq * d, nk = (size_t)N * H * d;
    double *o = mallocCheck(sizeof(double) * nq), *lse = mallocCheck(sizeof(double) * N * Hq);
    double *oref = mallocCheck(sizeof(double) * nq);
    char name[96];

    attn_ref_forward(&p.dims, p.q, p.k, p.v, p.w, p.beta, p.g, o, lse);
    definition_forward(&p, oref);
    snprintf(name, sizeof name, "attn_ref %s forward vs definition", c->name);
    check_value(name, "rel_rms", rel_rms(o, oref, nq), FORWARD_BAR);

    double *dq = mallocCheck(sizeof(double) * nq), *dk = mallocCheck(sizeof(double) * nk);
    double *dv = mallocCheck(sizeof(double) * nk), *dw = mallocCheck(sizeof(double) * nk);
    double *db = mallocCheck(sizeof(double) * N * H), *dg = mallocCheck(sizeof(double) * N * Hq);
    attn_ref_backward(&p.dims, p.q, p.k, p.v, p.w, p.beta, p.g, p.R, dq, dk, dv, c->use_w ? dw : NULL,
                      c->use_w ? db : NULL, c->use_g ? dg : NULL);
    struct { const char *n; double *x, *g; size_t len; int on; } ts[] = {
        {"dq", p.q, dq, nq, 1}, {"dk", p.k, dk, nk, 1}, {"dv", p.v, dv, nk, 1},
        {"dw", p.w, dw, nk, c->use_w}, {"dbeta", p.beta, db, (size_t)N * H, c->use_w},
        {"dg", p.g, dg, (size_t)N * Hq, c->use_g},
    };
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        if (!ts[t].on) continue;
        snprintf(name, sizeof name, "attn_ref %s %s vs finite diff", c->name, ts[t].n);
        check_value(name, "rel_rms", fd_error(&p, ts[t].x, ts[t].g, ts[t].len, o, lse), FD_BAR);
    }
    free(o); free(lse); free(oref); free(dq); free(dk); free(dv); free(dw); free(db); free(dg);
    free_problem(&p);
}

int main(void) {
    util_set_progname("test_attn_ref");
    static const Case cases[] = {
        {"path", 1, 0, 0.0, 2.0, 1},
        {"path beta(1.5,2)", 1, 0, 1.5, 2.0, 1},
        {"path-fox", 1, 1, 0.0, 2.0, 1},
        {"fox", 0, 1, 0.0, 0.0, 0},
        {"softmax", 0, 0, 0.0, 0.0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    return check_finish();
}
