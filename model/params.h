/* params.h: the parameter table. One row per tensor: name, shape, weight-decay flag, init rule.
 * It drives the sizes, the single allocation with named views (llm.c's ParameterTensors), the
 * parameter-count print, the checkpoint order, the optimizer's decay mask and the tests' names.
 *
 * The first 16 tensors are llm.c's GPT-2, in llm.c's order; tensors a config does not use have
 * size 0 (wpe unless learned; the PaTH and gate tensors unless that attention type uses them).
 * Layer-stacked tensors lead with L; matrices are (out, in), row-major, as nn.Linear.
 *   wte (Vp,C)  wpe (maxT,C)  ln1w ln1b (L,C)  qkvw (L,3C,C)  qkvb (L,3C)  attprojw (L,C,C)
 *   attprojb (L,C)  ln2w ln2b (L,C)  fcw (L,4C,C)  fcb (L,4C)  fcprojw (L,C,4C)  fcprojb (L,C)
 *   lnfw lnfb (C)
 *   PaTH (path, path-fox): wdown (L,R,C)  wup (L,C,R)  wconv (L,C,K)  betaw (L,NH,C)  betab (L,NH)
 *   gate (path-fox, fox):  gatew (L,NH,C)  gateb (L,NH)
 * Init: matrices N(0, 0.02); the residual projections attprojw, fcprojw N(0, 0.02/sqrt(2L)) (GPT-2's
 * rule, as llm.c); layernorm weights 1; biases 0 (so beta = 2 sigmoid(0) = 1, g = log 0.5 at init).
 * Weight decay on matrices, embeddings and conv taps; none on layernorms and biases. */
#ifndef PATHGPT_MODEL_PARAMS_H
#define PATHGPT_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NUM_PARAM_TENSORS 23

typedef enum { INIT_NORMAL, INIT_NORMAL_RESIDUAL, INIT_ONES, INIT_ZEROS } ParamInit;

typedef struct {
    const char *name;
    int ndim;
    int shape[3];
    size_t n_elems; /* 0 when the config does not use the tensor */
    int decay;      /* 1: AdamW weight decay applies */
    ParamInit init;
    int layered;    /* 1: stacked by layer, shape (L, ...): layer l's slice is the l-th n_elems / L elements */
} ParamSpec;

/* Named views into one contiguous buffer, in table order (pointers to unused tensors point at
 * the position they would have, with 0 elements). */
typedef struct {
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b;
    float *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;
    float *wdown, *wup, *wconv, *betaw, *betab, *gatew, *gateb;
} ParameterTensors;

/* Fills specs[NUM_PARAM_TENSORS] for cfg; returns the total element count. */
size_t param_specs(const ModelConfig *cfg, ParamSpec specs[NUM_PARAM_TENSORS]);

/* Points every view of t into buf (which holds the total count of param_specs) in table order. */
void param_point(const ParamSpec specs[NUM_PARAM_TENSORS], float *buf, ParameterTensors *t);

/* The view of tensor i (same order as the table). */
float **param_view(ParameterTensors *t, int i);

/* Layer l's tensors of t (parameters or gradients: the same layout); NULL for the tensors the
 * attention type does not use. */
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
    float *wdown, *wup, *wconv, *betaw, *betab, *gatew, *gateb;
} LayerParams;

LayerParams layer_params(const ParameterTensors *t, const ModelConfig *cfg, int l);

/* A flat element range [begin, end) of the parameter buffer. */
typedef struct {
    size_t begin, end;
} ParamRange;

/* Layer l's slices of the layer-stacked tensors (0 <= l < L), or (l = -1) the tensors that are not stacked
 * (wte, wpe, lnfw, lnfb), in table order, unused tensors left out, adjacent ranges joined into one: what
 * backward finishes together (gpt.h, gpt_set_grad_ready). Fills out; returns the count. */
int param_layer_ranges(const ParamSpec specs[NUM_PARAM_TENSORS], int n_layer, int l, ParamRange out[NUM_PARAM_TENSORS]);

/* Fills buf by the init rules, drawing normals from a generator seeded with seed, tensor by tensor
 * in table order (deterministic, independent of the backend). */
void param_init(const ModelConfig *cfg, const ParamSpec specs[NUM_PARAM_TENSORS], float *buf, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
