/* adamw.c: see adamw.h. */
#include "adamw.h"

#include <math.h>

int adamw_segments(const ParamSpec specs[NUM_PARAM_TENSORS], size_t begin, size_t end,
                   AdamWSegment seg[NUM_PARAM_TENSORS]) {
    int count = 0;
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t lo = offset > begin ? offset : begin;
        size_t hi = offset + specs[i].n_elems < end ? offset + specs[i].n_elems : end;
        if (lo < hi) seg[count++] = (AdamWSegment){lo, hi, specs[i].decay};
        offset += specs[i].n_elems;
    }
    return count;
}

void adamw_step(const AdamWConfig *opt, float lr, float grad_mult, int t, int decay, float *p,
                const float *grad, float *m, float *v, size_t n) {
    float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    float wd = decay ? opt->weight_decay : 0.0f;
    float bc1 = (float)(1.0 - pow(b1, t)), bc2 = (float)(1.0 - pow(b2, t)); /* bias corrections */
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float gi = grad_mult * grad[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
}
