/* adamw.h: the AdamW step (doc/DESIGN.md section 3, Training) over a flat range of fp32 parameters,
 * shared by the CPU model (gpt_cpu.c), the GPU model and the trainer (ZeRO-1 shards).
 *
 * Step t (1-based), per element, gradient first multiplied by grad_mult (clipping):
 *   g' = grad_mult g;   m <- b1 m + (1 - b1) g';   v <- b2 v + (1 - b2) g'^2
 *   mhat = m / (1 - b1^t);   vhat = v / (1 - b2^t)
 *   p  <- p - lr (mhat / (sqrt(vhat) + eps) + wd p)       wd = weight_decay where decay = 1, else 0
 * Decoupled weight decay, the same update as llm.c and torch.optim.AdamW (which scales p by
 * 1 - lr wd before the Adam step: the same number).
 *
 * The decay mask comes from the parameter table (params.h): adamw_segments cuts a flat range
 * [begin, end) into the pieces that lie in one table tensor each, with that tensor's decay flag;
 * adamw_step updates one piece. Checked by test_gpt2pathattn.c (parameters after 10 steps against
 * torch.optim.AdamW in dev/gpt_ref.py). */
#ifndef PATHGPT_MODEL_ADAMW_H
#define PATHGPT_MODEL_ADAMW_H

#include <stddef.h>

#include "gpt.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    size_t begin, end; /* flat element range, inside one table tensor */
    int decay;         /* that tensor's weight-decay flag */
} AdamWSegment;

/* Fills seg with the non-empty pieces of [begin, end) in table order; returns their count
 * (at most NUM_PARAM_TENSORS). */
int adamw_segments(const ParamSpec specs[NUM_PARAM_TENSORS], size_t begin, size_t end,
                   AdamWSegment seg[NUM_PARAM_TENSORS]);

/* One AdamW step t on n elements that share the decay flag: updates p, m, v in place. */
void adamw_step(const AdamWConfig *opt, float lr, float grad_mult, int t, int decay, float *p,
                const float *grad, float *m, float *v, size_t n);

#ifdef __cplusplus
}
#endif
#endif
