/* params.c: the parameter table of params.h. */
#include "params.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "../common/rng.h"

_Static_assert(sizeof(ParameterTensors) == NUM_PARAM_TENSORS * sizeof(float *),
               "ParameterTensors must hold exactly one pointer per table row");

/* the tensors that are not stacked by layer: the embeddings and the final layernorm */
static int unstacked(const char *name) {
    return !strcmp(name, "wte") || !strcmp(name, "wpe") || !strcmp(name, "lnfw") || !strcmp(name, "lnfb");
}

static ParamSpec spec(const char *name, int used, int ndim, int a, int b, int c, int decay, ParamInit init) {
    ParamSpec s = {name, ndim, {a, b, c}, 0, decay, init, !unstacked(name)};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)s.shape[i];
    s.n_elems = used ? n : 0;
    return s;
}

size_t param_specs(const ModelConfig *cfg, ParamSpec s[NUM_PARAM_TENSORS]) {
    int Vp = cfg->padded_vocab_size, C = cfg->n_embd, L = cfg->n_layer, NH = cfg->n_head;
    int R = cfg->w_rank, K = cfg->conv_size, maxT = cfg->max_seq_len;
    int learned = cfg->attn == ATTN_LEARNED, path = attn_uses_path(cfg->attn), gate = attn_uses_gate(cfg->attn);
    int i = 0;
    s[i++] = spec("wte", 1, 2, Vp, C, 0, 1, INIT_NORMAL);
    s[i++] = spec("wpe", learned, 2, maxT, C, 0, 1, INIT_NORMAL);
    s[i++] = spec("ln1w", 1, 2, L, C, 0, 0, INIT_ONES);
    s[i++] = spec("ln1b", 1, 2, L, C, 0, 0, INIT_ZEROS);
    s[i++] = spec("qkvw", 1, 3, L, 3 * C, C, 1, INIT_NORMAL);
    s[i++] = spec("qkvb", 1, 2, L, 3 * C, 0, 0, INIT_ZEROS);
    s[i++] = spec("attprojw", 1, 3, L, C, C, 1, INIT_NORMAL_RESIDUAL);
    s[i++] = spec("attprojb", 1, 2, L, C, 0, 0, INIT_ZEROS);
    s[i++] = spec("ln2w", 1, 2, L, C, 0, 0, INIT_ONES);
    s[i++] = spec("ln2b", 1, 2, L, C, 0, 0, INIT_ZEROS);
    s[i++] = spec("fcw", 1, 3, L, 4 * C, C, 1, INIT_NORMAL);
    s[i++] = spec("fcb", 1, 2, L, 4 * C, 0, 0, INIT_ZEROS);
    s[i++] = spec("fcprojw", 1, 3, L, C, 4 * C, 1, INIT_NORMAL_RESIDUAL);
    s[i++] = spec("fcprojb", 1, 2, L, C, 0, 0, INIT_ZEROS);
    s[i++] = spec("lnfw", 1, 1, C, 0, 0, 0, INIT_ONES);
    s[i++] = spec("lnfb", 1, 1, C, 0, 0, 0, INIT_ZEROS);
    s[i++] = spec("wdown", path, 3, L, R, C, 1, INIT_NORMAL);
    s[i++] = spec("wup", path, 3, L, C, R, 1, INIT_NORMAL);
    s[i++] = spec("wconv", path, 3, L, C, K, 1, INIT_NORMAL);
    s[i++] = spec("betaw", path, 3, L, NH, C, 1, INIT_NORMAL);
    s[i++] = spec("betab", path, 2, L, NH, 0, 0, INIT_ZEROS);
    s[i++] = spec("gatew", gate, 3, L, NH, C, 1, INIT_NORMAL);
    s[i++] = spec("gateb", gate, 2, L, NH, 0, 0, INIT_ZEROS);
    assert(i == NUM_PARAM_TENSORS);
    size_t total = 0;
    for (i = 0; i < NUM_PARAM_TENSORS; i++) total += s[i].n_elems;
    return total;
}

float **param_view(ParameterTensors *t, int i) { return &((float **)t)[i]; }

void param_point(const ParamSpec s[NUM_PARAM_TENSORS], float *buf, ParameterTensors *t) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        *param_view(t, i) = buf;
        buf += s[i].n_elems;
    }
}

void param_init(const ModelConfig *cfg, const ParamSpec s[NUM_PARAM_TENSORS], float *buf, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    float residual_std = 0.02f / sqrtf(2.0f * cfg->n_layer);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        for (size_t e = 0; e < s[i].n_elems; e++) {
            switch (s[i].init) {
            case INIT_NORMAL: buf[e] = 0.02f * (float)rng_normal(&r); break;
            case INIT_NORMAL_RESIDUAL: buf[e] = residual_std * (float)rng_normal(&r); break;
            case INIT_ONES: buf[e] = 1.0f; break;
            case INIT_ZEROS: buf[e] = 0.0f; break;
            }
        }
        buf += s[i].n_elems;
    }
}

int param_layer_ranges(const ParamSpec s[NUM_PARAM_TENSORS], int n_layer, int l, ParamRange out[NUM_PARAM_TENSORS]) {
    int count = 0;
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; offset += s[i].n_elems, i++) {
        size_t slice = s[i].layered ? s[i].n_elems / (size_t)n_layer : s[i].n_elems;
        if (!slice || s[i].layered != (l >= 0)) continue;
        ParamRange r = {offset + (s[i].layered ? (size_t)l * slice : 0), 0};
        r.end = r.begin + slice;
        if (count && out[count - 1].end == r.begin) out[count - 1].end = r.end; /* adjacent: one range */
        else out[count++] = r;
    }
    return count;
}

LayerParams layer_params(const ParameterTensors *p, const ModelConfig *cfg, int l) {
    size_t C = cfg->n_embd, NH = cfg->n_head, R = cfg->w_rank, K = cfg->conv_size;
    int path = attn_uses_path(cfg->attn), gated = attn_uses_gate(cfg->attn);
    LayerParams lp = {
        .ln1w = p->ln1w + l * C, .ln1b = p->ln1b + l * C, .qkvw = p->qkvw + l * 3 * C * C,
        .qkvb = p->qkvb + l * 3 * C, .attprojw = p->attprojw + l * C * C, .attprojb = p->attprojb + l * C,
        .ln2w = p->ln2w + l * C, .ln2b = p->ln2b + l * C, .fcw = p->fcw + l * 4 * C * C,
        .fcb = p->fcb + l * 4 * C, .fcprojw = p->fcprojw + l * C * 4 * C, .fcprojb = p->fcprojb + l * C,
        .wdown = path ? p->wdown + l * R * C : NULL, .wup = path ? p->wup + l * C * R : NULL,
        .wconv = path ? p->wconv + l * C * K : NULL, .betaw = path ? p->betaw + l * NH * C : NULL,
        .betab = path ? p->betab + l * NH : NULL, .gatew = gated ? p->gatew + l * NH * C : NULL,
        .gateb = gated ? p->gateb + l * NH : NULL,
    };
    return lp;
}
