/* encoder.h: the token (and learned position) embedding on the GPU (doc/DESIGN.md section 3).
 *   forward:  out[n, :] = wte[tokens[n], :] + wpe[pos[n], :]          (wpe NULL: no position term)
 *   backward: dtable[key, :] += sum of dout[n, :] over the rows n whose key (token or position) it is
 * in : tokens, pos (N) int32 device; wte (Vp,C), wpe (maxT,C) f32 (the master weights)
 * out: out (N,C) bf16;  dtable (keys,C) f32, accumulated (+=)
 * Backward takes the rows grouped by key (EncoderGroups, built on the host, which knows the batch):
 * one block per key adds its rows in order, so no two threads write one element and the sum is
 * deterministic (no atomics). One launch for wte (keys = tokens), one for wpe (keys = positions).
 * Launch: forward one thread per element; backward grid (keys present, ceil(C/256)), 256 threads.
 * Checked by tests/test_gpt_gpu.cu (grads wte, wpe against the CPU model). */
#ifndef PATHGPT_KERNELS_ENCODER_H
#define PATHGPT_KERNELS_ENCODER_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {  /* the N rows grouped by key; device memory */
    int n_groups;      /* keys present */
    const int *keys;   /* (n_groups) the key of each group */
    const int *offset; /* (n_groups + 1) group u holds rows[offset[u] .. offset[u+1]) */
    const int *rows;   /* (N) row indices, increasing inside a group */
} EncoderGroups;

void encoder_forward(const GpuCtx *ctx, void *out, const int *tokens, const int *pos, const float *wte,
                     const float *wpe, int N, int C);

void encoder_backward(const GpuCtx *ctx, float *dtable, const void *dout, const EncoderGroups *groups, int C);

#ifdef __cplusplus
}
#endif
#endif
