/* matmul.h: the model's linear layers on the GPU: bf16 GEMMs with f32 accumulation through cuBLASLt,
 * and the bias gradient. Row-major throughout; weights (OC,C) as nn.Linear (doc/DESIGN.md section 3).
 *   forward:          out (N,OC)  = inp (N,C) weight^T [+ bias (OC)] [+ add (N,OC)]
 *   backward_input:   dinp (N,C)  (=, or += with accumulate) dout (N,OC) weight
 *   backward_weight:  dweight (OC,C) f32 += dout^T inp
 *   backward_bias:    dbias (OC) f32 += sum_n dout[n, :]
 * dtypes: inp, weight, dout, bias, add bf16; out and dinp bf16 or f32 (MatmulType); f32 accumulation.
 * bias uses cuBLASLt's bias epilogue and add its C operand (out = A B + 1.0 add: the residual connection
 * in the same pass); the bias must be 16-byte aligned. dinp += runs as the GEMM's beta = 1.
 * Each distinct shape (with operand alignments) is planned once: cuBLASLt's first heuristic algorithm
 * for the actual alignments of the operands; the plan cache is cleared when it fills up.
 * Workspace 32 MiB. backward_bias goes through the column sums of colsum.h (scratch:
 * colsum_scratch_floats(N, OC)). Calls are asynchronous on ctx->stream; failures exit with the shape.
 * Checked by tests/test_gpt_gpu.cu (every weight and bias gradient against the CPU model). */
#ifndef PATHGPT_KERNELS_MATMUL_H
#define PATHGPT_KERNELS_MATMUL_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MATMUL_BF16, MATMUL_F32 } MatmulType;

typedef struct Matmul Matmul;

Matmul *matmul_create(const GpuCtx *ctx);
void matmul_free(Matmul *mm);

void matmul_forward(Matmul *mm, void *out, MatmulType out_type, const void *inp, const void *weight, const void *bias,
                    const void *add, int N, int C, int OC);

void matmul_backward_input(Matmul *mm, void *dinp, MatmulType dinp_type, int accumulate, const void *dout,
                           const void *weight, int N, int C, int OC);

void matmul_backward_weight(Matmul *mm, float *dweight, const void *dout, const void *inp, int N, int C, int OC);

void matmul_backward_bias(Matmul *mm, float *dbias, const void *dout, int N, int OC, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
