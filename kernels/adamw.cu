/* adamw.cu: see adamw.h (math, shapes, launch shape). */
#include "adamw.h"
#include "common.cuh"

#define ADAMW_THREADS 256

/* the update of one element (adamw.h); returns the new parameter. Every operation rounded on its own
 * (the _rn intrinsics are never fused into FMAs), as the CPU model's plain C does, so the result does
 * not depend on where the compiler would contract: the vector and the one-element paths, and so a
 * ZeRO-1 shard at any offset, update bit for bit alike. */
__device__ __forceinline__ float adamw_one(const AdamWStep &s, float &p, float &m, float &v, float grad) {
    float g = __fmul_rn(s.grad_mult, grad);
    m = __fadd_rn(__fmul_rn(s.beta1, m), __fmul_rn(1.0f - s.beta1, g));
    v = __fadd_rn(__fmul_rn(s.beta2, v), __fmul_rn(__fmul_rn(1.0f - s.beta2, g), g));
    float mhat = __fdiv_rn(m, s.bc1), vhat = __fdiv_rn(v, s.bc2);
    float step = __fadd_rn(__fdiv_rn(mhat, __fadd_rn(__fsqrt_rn(vhat), s.eps)), __fmul_rn(s.weight_decay, p));
    p = __fsub_rn(p, __fmul_rn(s.lr, step));
    return p;
}

/* Threads [0, quads): elements head + 4 t .. + 3, 16-byte loads and stores of p, m, v, grad (and one
 * 8-byte store of the bf16 copy where it is 8-byte aligned). The threads after them: one element each of
 * the head [0, head), then of the rest after the quads. */
static __global__ void adamw_kernel(AdamWStep s, float *p, float *m, float *v, const float *grad, bf16 *p_bf16,
                                    size_t n, size_t head) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, quads = (n - head) / 4;
    if (t < quads) {
        size_t i = head + 4 * t;
        float4 pp = *reinterpret_cast<float4 *>(p + i), mm = *reinterpret_cast<float4 *>(m + i);
        float4 vv = *reinterpret_cast<float4 *>(v + i), gg = *reinterpret_cast<const float4 *>(grad + i);
        float q0 = adamw_one(s, pp.x, mm.x, vv.x, gg.x), q1 = adamw_one(s, pp.y, mm.y, vv.y, gg.y);
        float q2 = adamw_one(s, pp.z, mm.z, vv.z, gg.z), q3 = adamw_one(s, pp.w, mm.w, vv.w, gg.w);
        __nv_bfloat162 lo = __floats2bfloat162_rn(q0, q1), hi = __floats2bfloat162_rn(q2, q3);
        *reinterpret_cast<float4 *>(p + i) = pp;
        *reinterpret_cast<float4 *>(m + i) = mm;
        *reinterpret_cast<float4 *>(v + i) = vv;
        if ((uintptr_t)(p_bf16 + i) % 8 == 0) {
            uint2 packed;
            *reinterpret_cast<__nv_bfloat162 *>(&packed.x) = lo;
            *reinterpret_cast<__nv_bfloat162 *>(&packed.y) = hi;
            *reinterpret_cast<uint2 *>(p_bf16 + i) = packed;
        } else {
            p_bf16[i] = lo.x, p_bf16[i + 1] = lo.y, p_bf16[i + 2] = hi.x, p_bf16[i + 3] = hi.y;
        }
        return;
    }
    size_t e = t - quads; /* of the head, then of the rest */
    if (e >= n - 4 * quads) return;
    size_t i = e < head ? e : 4 * quads + e;
    p_bf16[i] = __float2bfloat16_rn(adamw_one(s, p[i], m[i], v[i], grad[i]));
}

void adamw_update(const GpuCtx *ctx, const AdamWStep *s, float *p, float *m, float *v, const float *grad,
                  void *p_bf16, size_t n) {
    if (n == 0) return;
    /* head: the elements before p's first 16-byte boundary; all of them if m, v or grad are aligned otherwise */
    size_t head = (16 - (uintptr_t)p % 16) % 16 / sizeof(float);
    uintptr_t mis = (uintptr_t)p % 16;
    if ((uintptr_t)m % 16 != mis || (uintptr_t)v % 16 != mis || (uintptr_t)grad % 16 != mis || head > n) head = n;
    size_t threads = (n - head) / 4 + (n - head) % 4 + head;
    adamw_kernel<<<grid_for(threads, ADAMW_THREADS), ADAMW_THREADS, 0, ctx->stream>>>(*s, p, m, v, grad,
                                                                                      (bf16 *)p_bf16, n, head);
    LAUNCH_CHECK(ctx, "adamw_kernel");
}
