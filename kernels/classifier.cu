/* classifier.cu: see classifier.h (math, shapes, launch shapes). */
#include <float.h>

#include "classifier.h"
#include "common.cuh"

#define CLS_THREADS 256

/* (value, index) of the larger value, the lower index among equal ones */
__device__ __forceinline__ void max_pair(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

static __global__ void classifier_forward_kernel(float *loss, float *lse, int *correct, const bf16 *logits,
                                                 const int *targets, int V, int Vp) {
    __shared__ float s_val[CLS_THREADS / 32];
    __shared__ int s_idx[CLS_THREADS / 32];
    int n = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const bf16 *z = logits + (size_t)n * Vp;
    float best = -FLT_MAX;
    int arg = V;
    for (int v = tid; v < V; v += CLS_THREADS) max_pair(best, arg, __bfloat162float(z[v]), v);
    for (int o = 16; o > 0; o >>= 1)
        max_pair(best, arg, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, arg, o));
    if (lane == 0) {
        s_val[warp] = best;
        s_idx[warp] = arg;
    }
    __syncthreads();
    best = s_val[0];
    arg = s_idx[0];
    for (int w = 1; w < CLS_THREADS / 32; w++) max_pair(best, arg, s_val[w], s_idx[w]);
    __syncthreads(); /* s_val is reused below */
    float sum = 0.0f;
    for (int v = tid; v < V; v += CLS_THREADS) sum += expf(__bfloat162float(z[v]) - best);
    sum = warp_sum(sum);
    if (lane == 0) s_val[warp] = sum;
    __syncthreads();
    if (tid != 0) return;
    sum = 0.0f;
    for (int w = 0; w < CLS_THREADS / 32; w++) sum += s_val[w];
    float l = best + logf(sum);
    int t = targets[n];
    lse[n] = l;
    loss[n] = t >= 0 ? l - __bfloat162float(z[t]) : 0.0f;
    correct[n] = t >= 0 && arg == t;
}

static __global__ void classifier_backward_kernel(bf16 *logits, const float *lse, const int *targets, float scale,
                                                  int N, int V, int Vp) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * Vp) return;
    int n = (int)(i / Vp), v = (int)(i % Vp), t = targets[n];
    float d = 0.0f;
    if (t >= 0 && v < V) d = scale * (expf(__bfloat162float(logits[i]) - lse[n]) - (v == t ? 1.0f : 0.0f));
    logits[i] = __float2bfloat16_rn(d);
}

void classifier_forward(const GpuCtx *ctx, float *loss, float *lse, int *correct, const void *logits,
                        const int *targets, int N, int V, int Vp) {
    classifier_forward_kernel<<<N, CLS_THREADS, 0, ctx->stream>>>(loss, lse, correct, (const bf16 *)logits, targets,
                                                                   V, Vp);
    LAUNCH_CHECK(ctx, "classifier_forward_kernel");
}

void classifier_backward(const GpuCtx *ctx, void *logits, const float *lse, const int *targets, float scale, int N,
                         int V, int Vp) {
    classifier_backward_kernel<<<grid_for((size_t)N * Vp, 256), 256, 0, ctx->stream>>>((bf16 *)logits, lse, targets,
                                                                                       scale, N, V, Vp);
    LAUNCH_CHECK(ctx, "classifier_backward_kernel");
}
