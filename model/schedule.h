/* schedule.h: the learning-rate schedule (doc/DESIGN.md section 3, Training), lr(step) for the
 * update of 0-based step s out of S, with peak lr, floor min_lr and W warmup steps:
 *   warmup   s < W:  lr (s + 1) / W                         (linear from lr/W up to lr)
 *   then, with p = (s - W) / (S - 1 - W) in [0, 1] (p = 1 when S - 1 <= W):
 *   cosine   min_lr + (lr - min_lr) (1 + cos(pi p)) / 2
 *   linear   lr + (min_lr - lr) p                           (the flip-flop papers' recipe)
 *   wsd      warmup-stable-decay: lr until the last D = round(decay_frac S) steps, then linear
 *            down to min_lr: lr + (min_lr - lr) (s - (S - D) + 1) / D for s >= S - D
 * Cosine and linear start their decay at the peak (s = W) and reach min_lr exactly at s = S - 1;
 * wsd's decay steps all lie below the peak and its last step is min_lr.
 * checked by: tests/test_train.c "schedule" (values at known points). */
#ifndef PATHGPT_MODEL_SCHEDULE_H
#define PATHGPT_MODEL_SCHEDULE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_WSD } ScheduleType;
#define SCHEDULE_NAMES "cosine|linear|wsd" /* in ScheduleType order (option choices) */

typedef struct {
    ScheduleType type;
    double lr, min_lr; /* peak and floor */
    int warmup;        /* W */
    int total;         /* S: steps of the whole run */
    double decay_frac; /* wsd: fraction of the S steps spent decaying */
} Schedule;

/* 0 if usable; else -1 with a one-line reason in why (naming the flag's quantity). */
int schedule_check(const Schedule *s, char *why, size_t why_len);

/* The learning rate of 0-based step s. */
double schedule_lr(const Schedule *sch, int s);

#ifdef __cplusplus
}
#endif
#endif
