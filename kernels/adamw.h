/* adamw.h: the AdamW step on the GPU over one flat range of fp32 parameters that share a weight-decay
 * flag (model/adamw.h has the math and cuts a range into such pieces; doc/DESIGN.md section 3):
 *   g' = grad_mult g;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay p);   p_bf16 = bf16(p)
 * bc1 = 1 - b1^t, bc2 = 1 - b2^t come from the caller (the CPU model's rounding: f32 of the double).
 * in/out: p, m, v (n) f32 master state, updated in place; grad (n) f32; p_bf16 (n) bf16, the copy
 * the matmuls read, rewritten. weight_decay is 0 for tensors without decay.
 * Launch: one thread per 4 elements (16-byte loads and stores of p, m, v, grad) from p's first 16-byte
 * boundary; the elements before it and after the last 4 one thread each (all of them, if m, v and grad
 * do not share p's alignment); 256 per block. Memory-bound: 30 bytes per element.
 * Checked by tests/test_gpt_gpu.cu (one step from the same state as the CPU model, in two shards, and
 * several training steps). */
#ifndef PATHGPT_KERNELS_ADAMW_H
#define PATHGPT_KERNELS_ADAMW_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_mult, bc1, bc2;
} AdamWStep;

void adamw_update(const GpuCtx *ctx, const AdamWStep *s, float *p, float *m, float *v, const float *grad,
                  void *p_bf16, size_t n);

#ifdef __cplusplus
}
#endif
#endif
