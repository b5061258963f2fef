/* gpt_cpu_twin.h: the CPU model (model/gpt_cpu.c) under other names, for a test that links it beside the
 * GPU model. Both implement model/gpt.h with the same function names; the Makefile renames the CPU
 * object's gpt_* functions to cpu_gpt_* (objcopy), and this header declares the ones the test calls,
 * with gpt.h's signatures. Gpt is the CPU model's struct (gpt_cpu.h): the GPU model's pointers share the
 * type name here but are only ever handed back to gpt_* functions, never dereferenced. */
#ifndef PATHGPT_TESTS_GPT_CPU_TWIN_H
#define PATHGPT_TESTS_GPT_CPU_TWIN_H

#include "../model/gpt_cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

Gpt *cpu_gpt_create(const ModelConfig *cfg, int B, int T, uint64_t seed);
void cpu_gpt_free(Gpt *g);
void cpu_gpt_copy_out(Gpt *g, int which, float *host);
void cpu_gpt_copy_in(Gpt *g, int which, const float *host);
GptLoss cpu_gpt_forward(Gpt *g, const int *inputs, const int *targets, int B, int T);
void cpu_gpt_backward(Gpt *g, float grad_scale);
void cpu_gpt_zero_grad(Gpt *g);
float cpu_gpt_grad_norm(Gpt *g);
double cpu_gpt_grad_sum_squares(Gpt *g, size_t begin, size_t end);
void cpu_gpt_update(Gpt *g, const AdamWConfig *opt, float lr, float grad_mult, int t, size_t begin, size_t end);

#ifdef __cplusplus
}
#endif
#endif
