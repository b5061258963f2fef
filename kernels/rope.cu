/* rope.cu: see rope.h (math, shapes, launch shape). */
#include <math.h>

#include "common.cuh"
#include "rope.h"

static __global__ void rope_kernel(bf16 *x, const int *pos, const float2 *table, int N, int H, int d, float sign) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int half = d / 2;
    if (i >= (size_t)N * H * half) return;
    size_t u = i / half; /* (token, head) */
    int e = (int)(i % half), n = (int)(u / H);
    float2 cs = table[(size_t)pos[n] * half + e];
    float s = sign * cs.y;
    bf16 *h = x + u * d;
    float x1 = __bfloat162float(h[e]), x2 = __bfloat162float(h[e + half]);
    h[e] = __float2bfloat16_rn(x1 * cs.x - x2 * s);
    h[e + half] = __float2bfloat16_rn(x1 * s + x2 * cs.x);
}

void rope_table(float *table, int rows, int d, double theta) {
    int half = d / 2;
    for (int p = 0; p < rows; p++)
        for (int e = 0; e < half; e++) {
            double a = p * pow(theta, -2.0 * e / d);
            table[((size_t)p * half + e) * 2] = (float)cos(a);
            table[((size_t)p * half + e) * 2 + 1] = (float)sin(a);
        }
}

void rope_apply(const GpuCtx *ctx, void *x, const int *pos, const float *table, int N, int H, int d, int sign) {
    size_t n = (size_t)N * H * (d / 2);
    rope_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((bf16 *)x, pos, (const float2 *)table, N, H, d,
                                                          (float)sign);
    LAUNCH_CHECK(ctx, "rope_kernel");
}
