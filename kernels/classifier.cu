/* classifier.cu: see classifier.h (math, shapes, launch shapes).
 * Exponentials of z - max <= 0 (forward) and z - lse (backward) by __expf, 2^(x log2 e) on the special
 * function unit: a few ulp in f32, far below the bf16 logits' rounding, where expf's range reduction
 * would cost ~8 instructions per logit (0.8 G logits per step at GPT-2's shape). The logits are read and
 * written with streaming hints (__ldcs, __stcs): 1.6 GB, used once. */
#include <float.h>

#include "classifier.h"
#include "common.cuh"

#define CLS_THREADS 512
#define CLS_LOADS 4 /* 16-byte loads in flight per thread: 32 KB per 512-thread block */

/* softmax statistics of some logits: their max m, its lowest index arg, and s = sum exp(z - m) */
struct SoftmaxStats {
    float m, s;
    int arg;
};

/* a and b together: the larger max (the lower index among equal ones), the sums rescaled to it */
__device__ __forceinline__ SoftmaxStats stats_merge(SoftmaxStats a, SoftmaxStats b) {
    SoftmaxStats r;
    r.m = fmaxf(a.m, b.m);
    r.s = a.s * __expf(a.m - r.m) + b.s * __expf(b.m - r.m);
    r.arg = b.m > a.m || (b.m == a.m && b.arg < a.arg) ? b.arg : a.arg;
    return r;
}

/* st += the 8 logits z[v0 .. v0 + 8), visited in increasing index (so the first of equal maxima stays) */
__device__ __forceinline__ void stats_add8(SoftmaxStats &st, const float z[8], int v0) {
    float cm = z[0];
#pragma unroll
    for (int i = 1; i < 8; i++) cm = fmaxf(cm, z[i]);
    if (cm > st.m) {
        int at = 7;
#pragma unroll
        for (int i = 6; i >= 0; i--)
            if (z[i] == cm) at = i;
        st.s *= __expf(st.m - cm);
        st.m = cm;
        st.arg = v0 + at;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) st.s += __expf(z[i] - st.m);
}

/* f(j, chunk j) for the chunks j = tid, tid + CLS_THREADS, ... below `chunks` of a row, CLS_LOADS loads in
 * flight per thread (issued before any use) */
template <typename F>
__device__ __forceinline__ void for_each_chunk(const uint4 *row, int chunks, F f) {
    for (int j0 = threadIdx.x; j0 < chunks; j0 += CLS_LOADS * CLS_THREADS) {
        uint4 raw[CLS_LOADS];
#pragma unroll
        for (int u = 0; u < CLS_LOADS; u++)
            if (j0 + u * CLS_THREADS < chunks) raw[u] = __ldcs(row + j0 + u * CLS_THREADS);
#pragma unroll
        for (int u = 0; u < CLS_LOADS; u++)
            if (j0 + u * CLS_THREADS < chunks) f(j0 + u * CLS_THREADS, raw[u]);
    }
}

/* one block per row: each thread folds its chunks of 8 logits into running statistics (one pass over the
 * row), then the warps' and the block's statistics merge in a fixed order */
static __global__ void __launch_bounds__(CLS_THREADS) classifier_forward_kernel(float *loss, float *lse, int *correct,
                                                                              const bf16 *logits, const int *targets,
                                                                              int V, int Vp) {
    __shared__ SoftmaxStats s_warp[CLS_THREADS / 32];
    int n = blockIdx.x, tid = threadIdx.x, full = V / 8; /* chunks [0, full) lie below V */
    const bf16 *z = logits + (size_t)n * Vp;
    const uint4 *row = reinterpret_cast<const uint4 *>(z);
    SoftmaxStats st = {-FLT_MAX, 0.0f, V};
    for_each_chunk(row, full, [&](int j, uint4 raw) {
        float x[8];
        bf16x8_unpack(raw, x);
        stats_add8(st, x, 8 * j);
    });
    if (tid == 0 && V % 8 != 0) { /* the chunk across V, after thread 0's lower chunks: padding does not count */
        float x[8];
        bf16x8_unpack(__ldcs(row + full), x);
        for (int i = V % 8; i < 8; i++) x[i] = -FLT_MAX;
        stats_add8(st, x, 8 * full);
    }
    for (int o = 16; o > 0; o >>= 1) {
        SoftmaxStats other = {__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o),
                              __shfl_xor_sync(0xffffffffu, st.arg, o)};
        st = stats_merge(st, other);
    }
    if (tid % 32 == 0) s_warp[tid / 32] = st;
    __syncthreads();
    if (tid != 0) return;
    st = s_warp[0];
    for (int w = 1; w < CLS_THREADS / 32; w++) st = stats_merge(st, s_warp[w]);
    float l = st.m + logf(st.s);
    int t = targets[n];
    lse[n] = l;
    loss[n] = t >= 0 ? l - __bfloat162float(z[t]) : 0.0f;
    correct[n] = t >= 0 && st.arg == t;
}

/* dz of logit z: scale (softmax - [it is the target]) */
__device__ __forceinline__ float dlogit(float z, float lse, float scale, bool target) {
    return scale * (__expf(z - lse) - (target ? 1.0f : 0.0f));
}

/* one block per row, chunks of 8 logits; rows without a target are only written (zeros) */
static __global__ void __launch_bounds__(CLS_THREADS) classifier_backward_kernel(bf16 *logits, const float *lse,
                                                                               const int *targets, float scale,
                                                                               int V, int Vp) {
    int n = blockIdx.x, t = targets[n], full = t >= 0 ? V / 8 : 0; /* chunks [0, full): all below V */
    uint4 *row = reinterpret_cast<uint4 *>(logits + (size_t)n * Vp);
    float l = t >= 0 ? lse[n] : 0.0f;
    for_each_chunk(row, full, [&](int j, uint4 raw) {
        float z[8];
        bf16x8_unpack(raw, z);
        for (int i = 0; i < 8; i++) z[i] = dlogit(z[i], l, scale, 8 * j + i == t);
        __stcs(row + j, bf16x8_pack(z));
    });
    for (int j = full + threadIdx.x; j < Vp / 8; j += CLS_THREADS) { /* the chunk across V, the padding */
        float d[8] = {};
        if (t >= 0 && 8 * j < V) {
            float z[8];
            bf16x8_unpack(__ldcs(row + j), z);
            for (int i = 0; i < 8; i++)
                if (8 * j + i < V) d[i] = dlogit(z[i], l, scale, 8 * j + i == t);
        }
        __stcs(row + j, bf16x8_pack(d));
    }
}

/* the rows of the logits must be 16-byte aligned: Vp a multiple of 8 and the array aligned */
static void check_rows(const char *who, const void *logits, int V, int Vp) {
    if (Vp % 8 != 0 || Vp < V) {
        fprintf(stderr, "error: %s: padded vocabulary %d must be a multiple of 8 and at least V = %d\n", who, Vp, V);
        exit(EXIT_FAILURE);
    }
    require_aligned16(who, "logits", logits);
}

void classifier_forward(const GpuCtx *ctx, float *loss, float *lse, int *correct, const void *logits,
                        const int *targets, int N, int V, int Vp) {
    check_rows("classifier_forward", logits, V, Vp);
    classifier_forward_kernel<<<N, CLS_THREADS, 0, ctx->stream>>>(loss, lse, correct, (const bf16 *)logits, targets,
                                                                   V, Vp);
    LAUNCH_CHECK(ctx, "classifier_forward_kernel");
}

void classifier_backward(const GpuCtx *ctx, void *logits, const float *lse, const int *targets, float scale, int N,
                         int V, int Vp) {
    check_rows("classifier_backward", logits, V, Vp);
    classifier_backward_kernel<<<N, CLS_THREADS, 0, ctx->stream>>>((bf16 *)logits, lse, targets, scale, V, Vp);
    LAUNCH_CHECK(ctx, "classifier_backward_kernel");
}
