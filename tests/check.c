/* check.c: see check.h. */
#include "check.h"

#include <math.h>
#include <stdio.h>

static int n_passed, n_failed, n_skipped;

int check_value(const char *name, const char *metric, double value, double bar) {
    int ok = value <= bar && !isnan(value);
    printf("%-44s %-10s %9.3e  bar %8.2e  %s\n", name, metric, value, bar, ok ? "ok" : "FAIL");
    fflush(stdout);
    if (ok) n_passed++; else n_failed++;
    return ok;
}

int check_true(const char *name, int cond, const char *detail) {
    printf("%-44s %-32s %s\n", name, detail, cond ? "ok" : "FAIL");
    fflush(stdout);
    if (cond) n_passed++; else n_failed++;
    return cond;
}

void check_skip(const char *name, const char *why) {
    printf("skip %s: %s\n", name, why);
    fflush(stdout);
    n_skipped++;
}

int check_finish(void) {
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}

double rel_rms(const double *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double rel_rms_f(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double max_abs_diff(const double *a, const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (!(e <= m)) m = e; /* NaN propagates */
    }
    return m;
}

double max_abs_diff_f(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) m = e;
    }
    return m;
}
