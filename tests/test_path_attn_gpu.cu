/* test_path_attn_gpu.cu: the CUDA PaTH attention (kernels/path_attn.h) against the double-precision
 * oracle (model/attn_ref.c) on the same inputs: relative RMS error of o and of every gradient.
 * Bars are FLA's own (doc/DESIGN.md section 6): o 0.005; dq, dk, dv 0.008; dw 0.015; dbeta, dg 0.02.
 * Inputs are drawn, rounded to the kernel's input types (q, k, v, dO bf16; w, beta, g fp32) and the
 * rounded values given to the oracle, so only the kernels' own arithmetic is measured.
 * Cases cover T in {1, 63, 64, 65, 1000, 4096}, d in {32, 64, 128}, gate on and off, beta in (0, 2)
 * and (1.5, 2), document boundaries at odd offsets, grouped heads, FoX and plain softmax, strong
 * gates (logsigmoid of N(0, 1), as a model's at init), and a tiny upstream gradient (dO x 1e-6:
 * fp16 gradient operands would flush it). The forward keeps its factors for the backward (as a model
 * does); a second backward from recomputed factors must agree (KEPT_BAR). Without w (softmax, FoX) the
 * backward must repeat bit for bit (those kernels use no atomics).
 * Without a CUDA device it prints a skip line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "../common/rng.h"
#include "../kernels/path_attn.h"
#include "../model/attn_ref.h"
#include "check.h"

/* Kept factors against recomputed ones: the same factors (F1-F3 are deterministic), so only the order of
 * the backward's fp32 atomic adds differs: a last-bit flip of a bf16 output is 2^-8 relative, so even 5% of
 * the elements flipping gives a relative RMS of 9e-4; factors of another call or a stale one give O(1). */
#define KEPT_BAR 2e-3

#define BAR_O 0.005
#define BAR_QKV 0.008
#define BAR_W 0.015
#define BAR_BG 0.02

typedef struct {
    const char *name;
    int cu[9];      /* sequence starts, then the total; n_seqs entries + 1 */
    int n_seqs;
    int Hq, H, d;
    int path, gate; /* w/beta given; gate given (path-fox when path, FoX otherwise) */
    double beta_lo, beta_hi;
    double do_scale;
    int strong_gate; /* g = logsigmoid(N(0, 1)) (a model's gate at init) instead of log U(0.95, 1) */
} Case;

static double bf16_round(double x) { return (double)__bfloat162float(__float2bfloat16_rn((float)x)); }

/* n values of N(0, sd) rounded to bf16: as double for the oracle, bf16 for the device */
static void draw_bf16(Rng *r, size_t n, double sd, double *x, __nv_bfloat16 *xb) {
    for (size_t i = 0; i < n; i++) {
        x[i] = bf16_round(sd * rng_normal(r));
        xb[i] = __float2bfloat16_rn((float)x[i]);
    }
}

static void *to_device(const void *host, size_t bytes) {
    void *dev;
    CUDA_CHECK(cudaMalloc(&dev, bytes ? bytes : 1));
    CUDA_CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
    return dev;
}

static void bf16_to_double(const __nv_bfloat16 *dev, size_t n, double *out) {
    __nv_bfloat16 *h = (__nv_bfloat16 *)malloc(n * sizeof *h + 1);
    CUDA_CHECK(cudaMemcpy(h, dev, n * sizeof *h, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) out[i] = __bfloat162float(h[i]);
    free(h);
}

static void f32_to_double(const float *dev, size_t n, double *out) {
    float *h = (float *)malloc(n * sizeof *h + 1);
    CUDA_CHECK(cudaMemcpy(h, dev, n * sizeof *h, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) out[i] = h[i];
    free(h);
}

static void report(const Case *c, const char *what, const double *got, const double *ref, size_t n, double bar) {
    char name[128];
    snprintf(name, sizeof name, "path_attn_gpu %s %s", c->name, what);
    check_value(name, "rel_rms", rel_rms(got, ref, n), bar);
}

static void run_case(const GpuCtx *ctx, PathAttn *pa, PathFactors *kept, const Case *c, uint64_t seed) {
    int N = c->cu[c->n_seqs], Hq = c->Hq, H = c->H, d = c->d;
    size_t nq = (size_t)N * Hq * d, nk = (size_t)N * H * d;
    AttnDims dims = {N, c->n_seqs, c->cu, Hq, H, d, (float)(1.0 / sqrt(d)), 0.f};
    dims.gate_scale = c->gate ? (c->path ? dims.scale : 1.0f) : 0.f;
    char why[256];
    if (path_attn_check(&dims, why, sizeof why)) {
        check_true(c->name, 0, why);
        return;
    }
    Rng r;
    rng_init(&r, seed);
    double *q = (double *)malloc(nq * 8), *k = (double *)malloc(nk * 8), *v = (double *)malloc(nk * 8);
    double *dout = (double *)malloc(nq * 8), *w = (double *)malloc(nk * 8), *beta = (double *)malloc(N * H * 8 + 8);
    double *g = (double *)malloc(N * Hq * 8 + 8);
    __nv_bfloat16 *qb = (__nv_bfloat16 *)malloc(nq * 2), *kb = (__nv_bfloat16 *)malloc(nk * 2);
    __nv_bfloat16 *vb = (__nv_bfloat16 *)malloc(nk * 2), *dob = (__nv_bfloat16 *)malloc(nq * 2);
    float *wf = (float *)malloc(nk * 4), *bf = (float *)malloc(N * H * 4 + 4), *gf = (float *)malloc(N * Hq * 4 + 4);
    draw_bf16(&r, nq, 1.0, q, qb);
    draw_bf16(&r, nk, 1.0, k, kb);
    draw_bf16(&r, nk, 1.0, v, vb);
    draw_bf16(&r, nq, c->do_scale, dout, dob);
    for (int t = 0; t < N * H; t++) {
        double nrm = 0.0;
        for (int e = 0; e < d; e++) { w[t * d + e] = rng_normal(&r); nrm += w[t * d + e] * w[t * d + e]; }
        for (int e = 0; e < d; e++) { wf[t * d + e] = (float)(w[t * d + e] / sqrt(nrm)); w[t * d + e] = wf[t * d + e]; }
        bf[t] = (float)(c->beta_lo + (c->beta_hi - c->beta_lo) * rng_uniform(&r));
        beta[t] = bf[t];
    }
    for (int t = 0; t < N * Hq; t++) {
        double x = rng_normal(&r);
        gf[t] = (float)(c->strong_gate ? -log1p(exp(-x)) : log(0.95 + 0.05 * rng_uniform(&r)));
        g[t] = gf[t];
    }

    /* oracle */
    double *o_ref = (double *)malloc(nq * 8), *lse_ref = (double *)malloc(N * Hq * 8 + 8);
    double *dq_ref = (double *)malloc(nq * 8), *dk_ref = (double *)malloc(nk * 8), *dv_ref = (double *)malloc(nk * 8);
    double *dw_ref = (double *)malloc(nk * 8), *db_ref = (double *)malloc(N * H * 8 + 8), *dg_ref = (double *)malloc(N * Hq * 8 + 8);
    const double *wr = c->path ? w : NULL, *br = c->path ? beta : NULL, *gr = c->gate ? g : NULL;
    attn_ref_forward(&dims, q, k, v, wr, br, gr, o_ref, lse_ref);
    attn_ref_backward(&dims, q, k, v, wr, br, gr, dout, dq_ref, dk_ref, dv_ref, c->path ? dw_ref : NULL,
                      c->path ? db_ref : NULL, c->gate ? dg_ref : NULL);

    /* device */
    void *dq_in = to_device(qb, nq * 2), *dk_in = to_device(kb, nk * 2), *dv_in = to_device(vb, nk * 2);
    void *ddo = to_device(dob, nq * 2);
    float *dw_in = (float *)to_device(wf, nk * 4), *db_in = (float *)to_device(bf, N * H * 4), *dg_in = (float *)to_device(gf, N * Hq * 4);
    void *d_o, *d_ql, *d_dq, *d_dk, *d_dv;
    float *d_lse, *d_dw, *d_db, *d_dg;
    CUDA_CHECK(cudaMalloc(&d_o, nq * 2 + 2));
    CUDA_CHECK(cudaMalloc(&d_ql, nq * 2 + 2));
    CUDA_CHECK(cudaMalloc(&d_dq, nq * 2 + 2));
    CUDA_CHECK(cudaMalloc(&d_dk, nk * 2 + 2));
    CUDA_CHECK(cudaMalloc(&d_dv, nk * 2 + 2));
    CUDA_CHECK(cudaMalloc((void **)&d_lse, N * Hq * 4 + 4));
    CUDA_CHECK(cudaMalloc((void **)&d_dw, nk * 4 + 4));
    CUDA_CHECK(cudaMalloc((void **)&d_db, N * H * 4 + 4));
    CUDA_CHECK(cudaMalloc((void **)&d_dg, N * Hq * 4 + 4));
    /* poison outputs: every element must be written */
    CUDA_CHECK(cudaMemset(d_o, 0xff, nq * 2));
    CUDA_CHECK(cudaMemset(d_dq, 0xff, nq * 2));
    CUDA_CHECK(cudaMemset(d_dk, 0xff, nk * 2));
    CUDA_CHECK(cudaMemset(d_dv, 0xff, nk * 2));
    CUDA_CHECK(cudaMemset(d_dw, 0xff, nk * 4));
    CUDA_CHECK(cudaMemset(d_db, 0xff, N * H * 4));
    CUDA_CHECK(cudaMemset(d_dg, 0xff, N * Hq * 4));
    const float *pw = c->path ? dw_in : NULL, *pb = c->path ? db_in : NULL, *pg = c->gate ? dg_in : NULL;
    /* as a model trains: the forward keeps its factors for the backward */
    path_attn_forward(pa, &dims, dq_in, dk_in, dv_in, pw, pb, pg, d_o, d_lse, d_ql, kept);
    path_attn_backward(pa, &dims, dq_in, dk_in, dv_in, pw, pb, pg, d_o, d_lse, d_ql, ddo, d_dq, d_dk, d_dv,
                       c->path ? d_dw : NULL, c->path ? d_db : NULL, c->gate ? d_dg : NULL, kept);
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    CUDA_CHECK(cudaGetLastError());

    double *got = (double *)malloc((nq > nk ? nq : nk) * 8 + 8);
    bf16_to_double((const __nv_bfloat16 *)d_o, nq, got);
    report(c, "o", got, o_ref, nq, BAR_O);
    f32_to_double(d_lse, (size_t)N * Hq, got);
    report(c, "lse", got, lse_ref, (size_t)N * Hq, BAR_O);
    bf16_to_double((const __nv_bfloat16 *)d_dq, nq, got);
    report(c, "dq", got, dq_ref, nq, BAR_QKV);
    bf16_to_double((const __nv_bfloat16 *)d_dk, nk, got);
    report(c, "dk", got, dk_ref, nk, BAR_QKV);
    bf16_to_double((const __nv_bfloat16 *)d_dv, nk, got);
    report(c, "dv", got, dv_ref, nk, BAR_QKV);
    if (c->path) {
        f32_to_double(d_dw, nk, got);
        report(c, "dw", got, dw_ref, nk, BAR_W);
        f32_to_double(d_db, (size_t)N * H, got);
        report(c, "dbeta", got, db_ref, (size_t)N * H, BAR_BG);
    }
    if (c->gate) {
        f32_to_double(d_dg, (size_t)N * Hq, got);
        report(c, "dg", got, dg_ref, (size_t)N * Hq, BAR_BG);
    }
    /* A second backward into fresh buffers: without w it must repeat the first bit for bit (those kernels use
     * no atomics); with w, from recomputed factors instead of the kept ones, it must agree up to the order
     * of the fp32 atomic adds (KEPT_BAR). */
    {
        const void *first[] = {d_dq, d_dk, d_dv, d_dw, d_db, d_dg};
        size_t bytes[] = {nq * 2, nk * 2, nk * 2, c->path ? nk * 4 : 0, c->path ? (size_t)N * H * 4 : 0,
                          c->gate ? (size_t)N * Hq * 4 : 0};
        const char *names[] = {"dq", "dk", "dv", "dw", "dbeta", "dg"};
        void *again[6];
        for (int i = 0; i < 6; i++) CUDA_CHECK(cudaMalloc(&again[i], bytes[i] + 4));
        path_attn_backward(pa, &dims, dq_in, dk_in, dv_in, pw, pb, pg, d_o, d_lse, d_ql, ddo, again[0], again[1],
                           again[2], c->path ? (float *)again[3] : NULL, c->path ? (float *)again[4] : NULL,
                           c->gate ? (float *)again[5] : NULL, NULL);
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        char name[160];
        if (!c->path) {
            int same = 1;
            for (int i = 0; i < 6; i++) {
                char *x = (char *)malloc(bytes[i] + 1), *y = (char *)malloc(bytes[i] + 1);
                CUDA_CHECK(cudaMemcpy(x, first[i], bytes[i], cudaMemcpyDeviceToHost));
                CUDA_CHECK(cudaMemcpy(y, again[i], bytes[i], cudaMemcpyDeviceToHost));
                same &= memcmp(x, y, bytes[i]) == 0;
                free(x);
                free(y);
            }
            snprintf(name, sizeof name, "path_attn_gpu %s backward repeats bit for bit", c->name);
            check_true(name, same, "dq, dk, dv or dg differ between two identical calls");
        } else {
            double *x = (double *)malloc((nq > nk ? nq : nk) * 8 + 8), *y = (double *)malloc((nq > nk ? nq : nk) * 8 + 8);
            for (int i = 0; i < 6; i++) {
                if (!bytes[i]) continue;
                size_t n = i < 3 ? bytes[i] / 2 : bytes[i] / 4;
                if (i < 3) {
                    bf16_to_double((const __nv_bfloat16 *)first[i], n, x);
                    bf16_to_double((const __nv_bfloat16 *)again[i], n, y);
                } else {
                    f32_to_double((const float *)first[i], n, x);
                    f32_to_double((const float *)again[i], n, y);
                }
                snprintf(name, sizeof name, "path_attn_gpu %s %s kept factors = recomputed", c->name, names[i]);
                check_value(name, "rel_rms", rel_rms(x, y, n), KEPT_BAR);
            }
            free(x);
            free(y);
        }
        for (int i = 0; i < 6; i++) CUDA_CHECK(cudaFree(again[i]));
    }
    void *devs[] = {dq_in, dk_in, dv_in, ddo, dw_in, db_in, dg_in, d_o, d_ql, d_dq, d_dk, d_dv, d_lse, d_dw, d_db, d_dg};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) CUDA_CHECK(cudaFree(devs[i]));
    void *hosts[] = {q, k, v, dout, w, beta, g, qb, kb, vb, dob, wf, bf, gf, o_ref, lse_ref, dq_ref, dk_ref, dv_ref,
                     dw_ref, db_ref, dg_ref, got};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) free(hosts[i]);
}

int main(int argc, char **argv) {
    GpuCtx ctx;
    char why[256];
    if (gpu_ctx_init(&ctx, 0, why, sizeof why)) {
        check_skip("test_path_attn_gpu", why);
        return check_finish();
    }
    static const Case cases[] = {
        {"T1 d64 path", {0, 1}, 1, 2, 2, 64, 1, 0, 0.0, 2.0, 1.0},
        {"T63 d64 path-fox", {0, 63}, 1, 2, 2, 64, 1, 1, 0.0, 2.0, 1.0},
        {"T64 d32 path b(1.5,2)", {0, 64}, 1, 2, 2, 32, 1, 0, 1.5, 2.0, 1.0},
        {"T65 d128 path-fox", {0, 65}, 1, 2, 2, 128, 1, 1, 0.0, 2.0, 1.0},
        {"T1000 d64 gqa4:2 path-fox b(1.5,2)", {0, 1000}, 1, 4, 2, 64, 1, 1, 1.5, 2.0, 1.0},
        {"T4096 d64 H4 path", {0, 4096}, 1, 4, 4, 64, 1, 0, 0.0, 2.0, 1.0},
        {"docs d64 gqa path-fox", {0, 15, 69, 211, 300, 1200, 2000}, 6, 4, 2, 64, 1, 1, 0.0, 2.0, 1.0},
        {"docs d128 path b(1.5,2)", {0, 15, 69, 211, 300, 700}, 5, 2, 2, 128, 1, 0, 1.5, 2.0, 1.0},
        {"docs d32 path-fox", {0, 512, 1024, 1100}, 3, 2, 2, 32, 1, 1, 0.0, 2.0, 1.0},
        {"T1000 d64 fox", {0, 1000}, 1, 2, 2, 64, 0, 1, 0.0, 0.0, 1.0},
        {"T300 d128 softmax", {0, 300}, 1, 2, 2, 128, 0, 0, 0.0, 0.0, 1.0},
        {"T1 d32 softmax", {0, 1}, 1, 2, 2, 32, 0, 0, 0.0, 0.0, 1.0},
        {"T65 d64 gqa4:2 fox", {0, 65}, 1, 4, 2, 64, 0, 1, 0.0, 0.0, 1.0},
        {"T4096 d64 H4 softmax", {0, 4096}, 1, 4, 4, 64, 0, 0, 0.0, 0.0, 1.0},
        {"docs d32 gqa4:1 softmax", {0, 15, 69, 211, 300, 1200}, 5, 4, 1, 32, 0, 0, 0.0, 0.0, 1.0},
        {"docs d128 gqa fox strong gate", {0, 15, 69, 211, 300, 700}, 5, 4, 2, 128, 0, 1, 0.0, 0.0, 1.0, 1},
        {"T500 d64 path tiny dO", {0, 500}, 1, 2, 2, 64, 1, 0, 0.0, 2.0, 1e-6},
        {"docs d64 fox strong gate", {0, 15, 69, 211, 300, 700}, 5, 2, 2, 64, 0, 1, 0.0, 0.0, 1.0, 1},
        {"docs d64 path-fox strong gate", {0, 15, 69, 211, 300, 700}, 5, 2, 2, 64, 1, 1, 0.0, 2.0, 1.0, 1},
    };
    const char *only = argc > 1 ? argv[1] : NULL; /* optional: run the cases whose name contains this */
    PathAttn *pa = path_attn_create(&ctx);
    PathFactors *kept = path_factors_create();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) run_case(&ctx, pa, kept, &cases[i], 1000 + i);
    path_factors_free(kept);
    path_attn_free(pa);
    gpu_ctx_free(&ctx);
    return check_finish();
}
