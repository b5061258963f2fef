/* encoder.cu: see encoder.h (math, shapes, launch shapes). */
#include "common.cuh"
#include "encoder.h"

static __global__ void encoder_forward_kernel(bf16 *out, const int *tokens, const int *pos, const float *wte,
                                              const float *wpe, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    float x = wte[(size_t)tokens[n] * C + c];
    if (wpe) x += wpe[(size_t)pos[n] * C + c];
    out[i] = __float2bfloat16_rn(x);
}

static __global__ void encoder_backward_kernel(float *dtable, const bf16 *dout, const int *keys, const int *offset,
                                               const int *rows, int C) {
    int u = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int i = offset[u]; i < offset[u + 1]; i++) s += __bfloat162float(dout[(size_t)rows[i] * C + c]);
    dtable[(size_t)keys[u] * C + c] += s;
}

void encoder_forward(const GpuCtx *ctx, void *out, const int *tokens, const int *pos, const float *wte,
                     const float *wpe, int N, int C) {
    encoder_forward_kernel<<<grid_for((size_t)N * C, 256), 256, 0, ctx->stream>>>((bf16 *)out, tokens, pos, wte,
                                                                                  wpe, N, C);
    LAUNCH_CHECK(ctx, "encoder_forward_kernel");
}

void encoder_backward(const GpuCtx *ctx, float *dtable, const void *dout, const EncoderGroups *groups, int C) {
    if (groups->n_groups == 0) return;
    dim3 grid(groups->n_groups, grid_for(C, 256));
    encoder_backward_kernel<<<grid, 256, 0, ctx->stream>>>(dtable, (const bf16 *)dout, groups->keys, groups->offset,
                                                           groups->rows, C);
    LAUNCH_CHECK(ctx, "encoder_backward_kernel");
}
