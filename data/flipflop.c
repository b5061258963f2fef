/* flipflop.c: FFL(T, p_i) sequences and their read-bit targets; see flipflop.h. */
#include "flipflop.h"

#include <assert.h>
#include <stdio.h>

int flipflop_check(double p_i, int T, char *why, size_t why_len) {
    why[0] = '\0';
    if (T < 4 || T % 2 != 0)
        snprintf(why, why_len, "flip-flop sequence length %d must be even and at least 4 (pairs w b ... r b)", T);
    else if (!(p_i >= 0.0 && p_i <= 1.0))
        snprintf(why, why_len, "flip-flop p(ignore) %g must be in [0, 1]", p_i);
    return why[0] ? -1 : 0;
}

static int draw_instruction(Rng *rng, double p_i) {
    double u = rng_uniform(rng);
    if (u < p_i) return FLIPFLOP_I;
    return u < p_i + 0.5 * (1.0 - p_i) ? FLIPFLOP_W : FLIPFLOP_R;
}

/* one sequence of T tokens and its targets */
static void flipflop_sequence(Rng *rng, double p_i, int T, int *x, int *y) {
    int n_pairs = T / 2;
    int reg = FLIPFLOP_BIT0; /* overwritten by the first pair, always a w */
    for (int k = 0; k < n_pairs; k++) {
        int instr = k == 0 ? FLIPFLOP_W : k == n_pairs - 1 ? FLIPFLOP_R : draw_instruction(rng, p_i);
        int bit = instr == FLIPFLOP_R ? reg : FLIPFLOP_BIT0 + (int)(rng_u32(rng) >> 31);
        if (instr == FLIPFLOP_W) reg = bit;
        x[2 * k] = instr;
        x[2 * k + 1] = bit;
        y[2 * k] = instr == FLIPFLOP_R ? bit : -1; /* position 2k predicts token 2k + 1 */
        y[2 * k + 1] = -1;                         /* the next instruction is random */
    }
}

void flipflop_batch(Rng *rng, double p_i, int B, int T, int *inputs, int *targets) {
    assert(T >= 4 && T % 2 == 0 && p_i >= 0.0 && p_i <= 1.0); /* flipflop_check at the boundary */
    for (int b = 0; b < B; b++) flipflop_sequence(rng, p_i, T, inputs + (size_t)b * T, targets + (size_t)b * T);
}

void flipflop_decode(const int *tokens, int n, char *out) {
    static const char symbol[FLIPFLOP_VOCAB] = {'w', 'r', 'i', '0', '1'};
    char *p = out;
    for (int t = 0; t < n; t++) {
        int id = tokens[t];
        int known = id >= 0 && id < FLIPFLOP_VOCAB;
        if (t > 0 && known && id < FLIPFLOP_BIT0) *p++ = ' ';
        *p++ = known ? symbol[id] : '?';
    }
    *p = '\0';
}
