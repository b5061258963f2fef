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

/* Layer l's cached keys of decoded sequence b (kernels/path_decode.h: for PaTH already multiplied by every
 * later Householder factor), (NH, len, d) f32 in host memory, len = the tokens of the sequence's current
 * document so far, returned (host holds NH len d floats). For comparing the prefill with decoding steps. */
int gpt_gpu_decode_keys(Gpt *g, int l, int b, float *host);

#ifdef __cplusplus
}
#endif
#endif
