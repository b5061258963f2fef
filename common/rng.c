/* rng.c: xorshift64* (Vigna 2016): x ^= x >> 12; x ^= x << 25; x ^= x >> 27; out = x * 2685821657736338717.
 * Seeds go through splitmix64 so nearby seeds give unrelated streams. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_init(Rng *r, uint64_t seed) {
    r->state = splitmix64(seed);
    if (r->state == 0) r->state = 0x9e3779b97f4a7c15ULL;
}

static uint64_t next64(Rng *r) {
    uint64_t x = r->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->state = x;
    return x * 2685821657736338717ULL;
}

uint32_t rng_u32(Rng *r) { return (uint32_t)(next64(r) >> 32); }

double rng_uniform(Rng *r) { return (double)(next64(r) >> 11) * (1.0 / 9007199254740992.0); }

double rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint32_t rng_below(Rng *r, uint32_t n) {
    uint32_t limit = UINT32_MAX - UINT32_MAX % n; /* reject the partial top bucket */
    uint32_t x;
    do { x = rng_u32(r); } while (x >= limit);
    return x % n;
}
