/* check_vectors.c: milestone M0 of doc/PATH_ALGORITHM.md. Runs the C attention oracle
 * (model/attn_ref.c) on every PATHVEC1 file written by `python3 dev/path_reference.py --vectors DIR`
 * and compares o, lse and every gradient with the float64 NumPy reference (relative RMS).
 * A development check (the vectors are ~55 MB, made on demand), not part of `make test`:
 *   make check_vectors && python3 dev/path_reference.py --vectors /tmp/vec && ./check_vectors /tmp/vec/NAME.bin
 * File format (little-endian): "PATHVEC1", u32 n_arrays, then per array: u32 name length, name,
 * u32 ndim, ndim x u64 dims, prod(dims) float64 values. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../model/attn_ref.h"
#include "../tests/check.h"

#define BAR 1e-10 /* two float64 implementations of the same loops */
#define MAX_ARRAYS 128

typedef struct {
    char name[64];
    int ndim;
    uint64_t dims[8];
    size_t n;
    double *x;
} Array;

static int read_vectors(const char *path, Array *arr) {
    FILE *fp = fopenCheck(path, "rb");
    char magic[8];
    uint32_t count;
    freadCheck(magic, 1, 8, fp);
    if (memcmp(magic, "PATHVEC1", 8) != 0) die("%s: not a PATHVEC1 file", path);
    freadCheck(&count, 4, 1, fp);
    if (count > MAX_ARRAYS) die("%s: %u arrays, at most %d supported", path, count, MAX_ARRAYS);
    for (uint32_t a = 0; a < count; a++) {
        uint32_t len, ndim;
        freadCheck(&len, 4, 1, fp);
        if (len >= sizeof arr[a].name) die("%s: array name too long", path);
        freadCheck(arr[a].name, 1, len, fp);
        arr[a].name[len] = '\0';
        freadCheck(&ndim, 4, 1, fp);
        if (ndim > 8) die("%s: array %s has %u dims", path, arr[a].name, ndim);
        arr[a].ndim = (int)ndim;
        arr[a].n = 1;
        for (uint32_t i = 0; i < ndim; i++) {
            freadCheck(&arr[a].dims[i], 8, 1, fp);
            arr[a].n *= arr[a].dims[i];
        }
        arr[a].x = mallocCheck(sizeof(double) * arr[a].n);
        freadCheck(arr[a].x, sizeof(double), arr[a].n, fp);
    }
    fcloseCheck(fp);
    return (int)count;
}

static Array *find(Array *arr, int n, const char *name) {
    for (int a = 0; a < n; a++)
        if (strcmp(arr[a].name, name) == 0) return &arr[a];
    return NULL;
}

static void check_file(const char *path) {
    static Array arr[MAX_ARRAYS];
    int n = read_vectors(path, arr);
    Array *q = find(arr, n, "q"), *k = find(arr, n, "k"), *v = find(arr, n, "v"), *w = find(arr, n, "w");
    Array *beta = find(arr, n, "beta"), *g = find(arr, n, "g"), *cu = find(arr, n, "cu_seqlens");
    Array *scale = find(arr, n, "scale"), *dout = find(arr, n, "do");
    if (!q || !k || !v || !w || !beta || !cu || !scale || !dout) die("%s: missing an input array", path);
    if (v->dims[2] != q->dims[2]) {
        check_skip(path, "value dim differs from head dim; the oracle assumes dv = d");
        return;
    }
    int n_seqs = (int)cu->n - 1;
    int *cui = mallocCheck(sizeof(int) * cu->n);
    for (size_t i = 0; i < cu->n; i++) cui[i] = (int)cu->x[i];
    AttnDims dims = {(int)q->dims[0], n_seqs, cui, (int)q->dims[1], (int)k->dims[1], (int)q->dims[2],
                     (float)scale->x[0], (float)scale->x[0]};
    const char *why;
    if (attn_dims_check(&dims, &why)) die("%s: %s", path, why);
    if ((double)dims.scale != scale->x[0]) { /* the oracle's AttnDims keeps scale as float */
        check_skip(path, "scale is not a float value");
        free(cui);
        return;
    }
    size_t N = (size_t)dims.n_tokens, nq = N * dims.Hq * dims.d, nk = N * dims.H * dims.d;
    double *o = mallocCheck(sizeof(double) * nq), *lse = mallocCheck(sizeof(double) * N * dims.Hq);
    double *dq = mallocCheck(sizeof(double) * nq), *dk = mallocCheck(sizeof(double) * nk);
    double *dv = mallocCheck(sizeof(double) * nk), *dw = mallocCheck(sizeof(double) * nk);
    double *db = mallocCheck(sizeof(double) * N * dims.H), *dg = mallocCheck(sizeof(double) * N * dims.Hq);
    const double *gx = g ? g->x : NULL;
    attn_ref_forward(&dims, q->x, k->x, v->x, w->x, beta->x, gx, o, lse);
    attn_ref_backward(&dims, q->x, k->x, v->x, w->x, beta->x, gx, dout->x, dq, dk, dv, dw, db, g ? dg : NULL);
    struct { const char *n; double *mine; } outs[] = {
        {"o", o}, {"lse", lse}, {"dq", dq}, {"dk", dk}, {"dv", dv}, {"dw", dw}, {"dbeta", db}, {"dg", dg}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        Array *ref = find(arr, n, outs[i].n);
        if (!ref) continue;
        char name[160];
        const char *base = strrchr(path, '/');
        snprintf(name, sizeof name, "%s %s", base ? base + 1 : path, outs[i].n);
        check_value(name, "rel_rms", rel_rms(outs[i].mine, ref->x, ref->n), BAR);
    }
    free(o); free(lse); free(dq); free(dk); free(dv); free(dw); free(db); free(dg); free(cui);
    for (int a = 0; a < n; a++) free(arr[a].x);
}

int main(int argc, char **argv) {
    util_set_progname("check_vectors");
    if (argc < 2) die("usage: check_vectors FILE.bin...  (files from dev/path_reference.py --vectors DIR)");
    for (int i = 1; i < argc; i++) check_file(argv[i]);
    return check_finish();
}
