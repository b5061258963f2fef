/* adamw.cu: see adamw.h (math, shapes, launch shape). */
#include "adamw.h"
#include "common.cuh"

static __global__ void adamw_kernel(AdamWStep s, float *p, float *m, float *v, const float *grad, bf16 *p_bf16,
                                    size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = s.grad_mult * grad[i];
    float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
    float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
    float mhat = mi / s.bc1, vhat = vi / s.bc2;
    float pi = p[i] - s.lr * (mhat / (sqrtf(vhat) + s.eps) + s.weight_decay * p[i]);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    p_bf16[i] = __float2bfloat16_rn(pi);
}

void adamw_update(const GpuCtx *ctx, const AdamWStep *s, float *p, float *m, float *v, const float *grad,
                  void *p_bf16, size_t n) {
    if (n == 0) return;
    adamw_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(*s, p, m, v, grad, (bf16 *)p_bf16, n);
    LAUNCH_CHECK(ctx, "adamw_kernel");
}
