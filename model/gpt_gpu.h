/* gpt_gpu.h: what the GPU model (model/gpt_gpu.c) offers beyond model/gpt.h, for tests and tools.
 * Checked by tests/test_gpt_gpu.cu. */
#ifndef PATHGPT_MODEL_GPT_GPU_H
#define PATHGPT_MODEL_GPT_GPU_H

#include "gpt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The logits of the last gpt_forward, (B*T, Vp) as f32 in host memory (they are bf16 on the device).
 * Only until gpt_backward, which turns them into their gradient in place (exits with a message then). */
void gpt_gpu_logits(Gpt *g, float *host);

#ifdef __cplusplus
}
#endif
#endif
