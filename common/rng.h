/* rng.h: a small deterministic random number generator (xorshift64*), the same on every
 * platform, so data order, init and sampling replay exactly. Its whole state is one u64,
 * saved in checkpoints for bit-exact resume. */
#ifndef PATHGPT_COMMON_RNG_H
#define PATHGPT_COMMON_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t state; /* never 0 */
} Rng;

void rng_init(Rng *r, uint64_t seed);
uint32_t rng_u32(Rng *r);
double rng_uniform(Rng *r);                /* [0, 1), 53 bits */
double rng_normal(Rng *r);                 /* N(0, 1), Box-Muller on two uniforms */
uint32_t rng_below(Rng *r, uint32_t n);    /* uniform in [0, n), n > 0, unbiased */

#ifdef __cplusplus
}
#endif
#endif
