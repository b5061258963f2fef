/* schedule.c: see schedule.h. */
#include "schedule.h"

#include <math.h>
#include <stdio.h>

static int decay_steps(const Schedule *sch) { return (int)lround(sch->decay_frac * sch->total); }

int schedule_check(const Schedule *sch, char *why, size_t why_len) {
    why[0] = '\0';
    if (sch->total < 1) snprintf(why, why_len, "the run has %d steps; it needs at least 1", sch->total);
    else if (!(sch->lr >= 0.0)) snprintf(why, why_len, "learning rate %g must not be negative", sch->lr);
    else if (!(sch->min_lr >= 0.0 && sch->min_lr <= sch->lr))
        snprintf(why, why_len, "min learning rate %g must be in [0, lr %g]", sch->min_lr, sch->lr);
    else if (sch->warmup < 0) snprintf(why, why_len, "warmup %d must not be negative", sch->warmup);
    else if (!(sch->decay_frac >= 0.0 && sch->decay_frac <= 1.0))
        snprintf(why, why_len, "decay fraction %g must be in [0, 1]", sch->decay_frac);
    else if (sch->type == SCHEDULE_WSD && sch->warmup + decay_steps(sch) > sch->total)
        snprintf(why, why_len, "wsd: %d warmup steps and %d decay steps (decay fraction %g) exceed the %d steps",
                 sch->warmup, decay_steps(sch), sch->decay_frac, sch->total);
    return why[0] ? -1 : 0;
}

double schedule_lr(const Schedule *sch, int s) {
    int W = sch->warmup, S = sch->total;
    if (s < W) return sch->lr * (s + 1) / W;
    double span = sch->lr - sch->min_lr;
    if (sch->type == SCHEDULE_WSD) {
        int D = decay_steps(sch);
        if (s < S - D) return sch->lr;
        double q = (double)(s - (S - D) + 1) / D;
        return sch->lr - span * (q < 1.0 ? q : 1.0);
    }
    double p = S - 1 > W ? (double)(s - W) / (S - 1 - W) : 1.0;
    if (p > 1.0) p = 1.0;
    if (sch->type == SCHEDULE_LINEAR) return sch->lr - span * p;
    return sch->min_lr + span * 0.5 * (1.0 + cos(M_PI * p));
}
