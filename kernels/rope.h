/* rope.h: rotary position embedding on q or k, in place (attention type rope; doc/DESIGN.md section 3).
 * Per head, pairs (i, i + d/2) for i < d/2, angle a = pos theta^(-2i/d):
 *   sign +1 (forward):  x_i' = x_i cos a - x_{i+d/2} sin a,   x_{i+d/2}' = x_i sin a + x_{i+d/2} cos a
 *   sign -1: the inverse (transposed) rotation, which carries dq, dk back (backward)
 * in/out: x (N,H,d) bf16, rotated in place; pos (N) int32 device, each < the table's rows
 *         table (rows, d/2, 2) f32 device: cos a, sin a (rope_table fills it on the host, in double)
 * Launch: one thread per pair, 256 per block. Checked by tests/test_gpt_gpu.cu (rope cases). */
#ifndef PATHGPT_KERNELS_ROPE_H
#define PATHGPT_KERNELS_ROPE_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* host: table (rows, d/2, 2) of cos, sin for positions 0 .. rows-1 */
void rope_table(float *table, int rows, int d, double theta);

void rope_apply(const GpuCtx *ctx, void *x, const int *pos, const float *table, int N, int H, int d, int sign);

#ifdef __cplusplus
}
#endif
#endif
