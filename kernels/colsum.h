/* colsum.h: the scratch size of the deterministic column sums that every parameter gradient summed
 * over tokens goes through (bias gradients in matmul.h, layernorm weights in layernorm.h, conv taps in
 * path_layer.h; the kernels are in common.cuh). Plain C, no CUDA types.
 *
 * A sum over N rows of M columns runs in two launches: slabs of COLSUM_SLAB_ROWS rows each write one
 * partial sum per column to scratch (slabs, M), then the partials of each column are added in a fixed
 * order. No atomics, so a gradient depends only on its inputs and shape (bit-exact resume), never on
 * scheduling or on the GPU model. */
#ifndef PATHGPT_KERNELS_COLSUM_H
#define PATHGPT_KERNELS_COLSUM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COLSUM_SLAB_ROWS 64 /* N = 16384: 256 slabs, enough blocks to fill an H100; partials ~3% of the reads */

/* floats of scratch a column sum over N rows of M columns needs */
static inline size_t colsum_scratch_floats(int N, int M) {
    return (size_t)((N + COLSUM_SLAB_ROWS - 1) / COLSUM_SLAB_ROWS) * (size_t)M;
}

#ifdef __cplusplus
}
#endif
#endif
