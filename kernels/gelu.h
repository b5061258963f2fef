/* gelu.h: GELU, tanh form (GPT-2's MLP; doc/DESIGN.md section 3), elementwise on the GPU.
 *   forward:  out = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   backward: dx = dout (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2)),
 *             in place: d holds dout on entry and dx on return
 * in/out: x, out, d (n) bf16, 16-byte aligned (the launchers exit with a message otherwise); arithmetic
 * in f32. Launch: one thread per 8 elements (16-byte loads and stores; when 8 does not divide n, the
 * last thread takes the n % 8 left over one at a time), 256 per block.
 * Checked by tests/test_gpt_gpu.cu (fcw, fcb gradients against the CPU model). */
#ifndef PATHGPT_KERNELS_GELU_H
#define PATHGPT_KERNELS_GELU_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

void gelu_forward(const GpuCtx *ctx, void *out, const void *x, size_t n);
void gelu_backward(const GpuCtx *ctx, void *d, const void *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
