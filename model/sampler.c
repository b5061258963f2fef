/* sampler.c: see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "../common/util.h"

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The k-th largest value of x[0, n), 1 <= k <= n; reorders x (quickselect, descending). */
static float kth_largest(float *x, int n, int k) {
    int lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) { /* afterwards x[lo..j] >= pivot >= x[i..hi], and x(j..i) == pivot */
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                float t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else return x[target];
    }
    return x[target];
}

int sampler_pick(const float *logits, int V, const SamplerConfig *sc, Rng *rng, float *scratch) {
    if (sc->temperature <= 0.0) return argmax(logits, V);
    float cut = -INFINITY; /* logits below cut are out */
    if (sc->top_k > 0 && sc->top_k < V) {
        for (int i = 0; i < V; i++) scratch[i] = logits[i];
        cut = kth_largest(scratch, V, sc->top_k);
    }
    float top = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++)
        if (logits[i] >= cut) sum += exp((logits[i] - top) / sc->temperature);
    double u = rng_uniform(rng) * sum, run = 0.0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (logits[i] < cut) continue;
        run += exp((logits[i] - top) / sc->temperature);
        last = i;
        if (run > u) return i;
    }
    return last; /* u * sum rounded up to the full sum */
}

/* 1 if token t of every row is given */
static int all_given(const unsigned char *given, int n, int len, int t) {
    for (int b = 0; b < n; b++)
        if (!given[(size_t)b * len + t]) return 0;
    return 1;
}

void sampler_generate(Gpt *g, const SamplerConfig *sc, Rng *rng, int n, int len, int *tokens,
                      const unsigned char *given) {
    const ModelConfig *cfg = gpt_config(g);
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size;
    for (int b = 0; b < n; b++)
        if (!given[(size_t)b * len]) die("sampler_generate: row %d has no first token", b);
    int P = 1; /* the prompt: the prefix given in every row, at most len - 1 tokens (or the 1 of len 1) */
    while (P + 1 < len && all_given(given, n, len, P)) P++;
    float *logits = mallocCheck(sizeof(float) * (size_t)n * Vp);
    float *scratch = mallocCheck(sizeof(float) * (size_t)V);
    int *step = mallocCheck(sizeof(int) * (size_t)n * P); /* the prompt (n, P), then one token per row */
    for (int b = 0; b < n; b++)
        for (int t = 0; t < P; t++) step[(size_t)b * P + t] = tokens[(size_t)b * len + t];
    gpt_decode_prefill(g, step, n, P, logits);
    for (int t = P - 1; t + 1 < len; t++) { /* the logits after token t choose token t + 1 */
        if (t >= P) {
            for (int b = 0; b < n; b++) step[b] = tokens[(size_t)b * len + t];
            gpt_decode_step(g, step, logits);
        }
        for (int b = 0; b < n; b++) {
            size_t next = (size_t)b * len + t + 1;
            if (!given[next]) tokens[next] = sampler_pick(logits + (size_t)b * Vp, V, sc, rng, scratch);
        }
    }
    free(logits);
    free(scratch);
    free(step);
}
