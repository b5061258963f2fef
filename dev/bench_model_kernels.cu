/* bench_model_kernels.cu: times the GPU model's non-attention kernels, launcher by launcher, at one
 * training shape (default GPT-2 124M: N = B T = 16 x 1024 rows, width C 768, vocab 50257 padded to
 * 50304, the parameter count of param_specs for a learned-position 12-layer model):
 *   layernorm_forward, layernorm_backward (accumulating, with its dweight/dbias column sums),
 *   classifier_forward, classifier_backward, gelu_forward, gelu_backward (N x 4C),
 *   matmul_backward_bias (OC = C and 4C: the partial column sums and their add), adamw_update.
 * Timing: inputs drawn once on the device; per call the in-place inputs are restored (classifier and
 * gelu backward), L2 flushed (a memset of twice its size, which also keeps the GPU busy while the host
 * enqueues the call, so launch latency is not timed), then CUDA events around the launcher call:
 * --warmup calls, then the median of --iters.
 * One line per launcher, the fields of doc/STYLE.md's benchmarks (the figures here only show the format):
 *   layernorm_backward | N16384 C768 += | 0.061 ms | 126.2 MB | 2069 GB/s | 1.62x floor | <GPU> | <commit>
 * MB: the bytes a call must move through DRAM at least (each input read once, each output written once,
 * the column-sum partials written and read back); GB/s = MB / time; "x floor": the time over MB / the
 * GPU's peak DRAM bandwidth (2 x memory clock x bus width, from the device attributes).
 * checked by: nothing here; tests/test_gpt_gpu.cu checks these kernels' results through the whole model. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "../common/options.h"
#include "../common/util.h"
#include "../kernels/adamw.h"
#include "../kernels/classifier.h"
#include "../kernels/colsum.h"
#include "../kernels/gelu.h"
#include "../kernels/layernorm.h"
#include "../kernels/matmul.h"
#include "../model/params.h"

typedef __nv_bfloat16 bf16;

/* x[i] = lo + (hi - lo) u_i, u_i uniform in [0, 1) from a hash of (i, seed); bf16 or f32 */
template <typename T>
static __global__ void fill_kernel(T *x, size_t n, float lo, float hi, uint32_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)(i >> 32) ^ seed * 0x9e3779b9u;
        h ^= h >> 16, h *= 0x85ebca6bu, h ^= h >> 13, h *= 0xc2b2ae35u, h ^= h >> 16;
        x[i] = (T)(lo + (hi - lo) * (h >> 8) * (1.0f / 16777216.0f));
    }
}

template <typename T>
static T *device_fill(size_t n, float lo, float hi, uint32_t seed) {
    T *p;
    CUDA_CHECK(cudaMalloc((void **)&p, sizeof(T) * n));
    fill_kernel<<<1024, 256>>>(p, n, lo, hi, seed);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize()); /* the legacy stream; the launchers run on ctx's non-blocking one */
    return p;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const GpuCtx *ctx;
    void *flush;       /* twice the L2 */
    size_t flush_bytes;
    int warmup, iters;
    double peak_gbs;   /* the GPU's DRAM bandwidth */
    const char *where; /* "<GPU> | <commit>" */
    cudaEvent_t start, stop;
} Bench;

/* one line for the launcher call run(), after reset() and an L2 flush before each call */
template <typename Run, typename Reset>
static void bench(Bench *b, const char *name, const char *shape, double bytes, Run run, Reset reset) {
    double *ms = (double *)mallocCheck(sizeof(double) * b->iters);
    for (int i = -b->warmup; i < b->iters; i++) {
        reset();
        CUDA_CHECK(cudaMemsetAsync(b->flush, i & 0xff, b->flush_bytes, b->ctx->stream));
        CUDA_CHECK(cudaEventRecord(b->start, b->ctx->stream));
        run();
        CUDA_CHECK(cudaEventRecord(b->stop, b->ctx->stream));
        CUDA_CHECK(cudaEventSynchronize(b->stop));
        float t;
        CUDA_CHECK(cudaEventElapsedTime(&t, b->start, b->stop));
        if (i >= 0) ms[i] = t;
    }
    qsort(ms, b->iters, sizeof(double), by_value);
    double med = ms[b->iters / 2], gbs = bytes / (med * 1e-3) / 1e9;
    printf("%s | %s | %.4f ms | %.1f MB | %.0f GB/s | %.2fx floor | %s\n", name, shape, med, bytes / 1e6, gbs,
           b->peak_gbs / gbs, b->where);
    fflush(stdout);
    free(ms);
}

template <typename Run>
static void bench(Bench *b, const char *name, const char *shape, double bytes, Run run) {
    bench(b, name, shape, bytes, run, [] {});
}

/* "<GPU> | <commit>" and the peak DRAM bandwidth in GB/s */
static double machine(char *out, size_t len, int device) {
    char commit[64] = "unknown";
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (p && fgets(commit, sizeof commit, p)) commit[strcspn(commit, "\n")] = '\0';
    if (p) pclose(p);
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    snprintf(out, len, "%s | %s", prop.name, commit);
    int clock_khz = 0, bus_bits = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
    return 2.0 * clock_khz * 1e3 * (bus_bits / 8) / 1e9;
}

int main(int argc, char **argv) {
    util_set_progname("bench_model_kernels");
    int N, C, V, L;
    Bench b;
    Option opts[] = {
        OPTION("--rows", OPT_INT, &N, "16384", 1, 1 << 24, NULL, NULL, "rows N = batch x sequence length"),
        OPTION("--channels", OPT_INT, &C, "768", 8, LAYERNORM_MAX_C, NULL, NULL, "width C (a multiple of 8)"),
        OPTION("--vocab", OPT_INT, &V, "50257", 2, 1 << 20, NULL, NULL, "vocabulary, padded to a multiple of 128"),
        OPTION("--layers", OPT_INT, &L, "12", 1, 1000, NULL, NULL, "layers (for AdamW's parameter count)"),
        OPTION("--warmup", OPT_INT, &b.warmup, "3", 0, 1000, NULL, NULL, "untimed calls per launcher"),
        OPTION("--iters", OPT_INT, &b.iters, "20", 1, 100000, NULL, NULL, "timed calls per launcher (median)"),
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char why[1024];
    int rc = options_parse(opts, n_opts, argc, argv, why, sizeof why);
    if (rc == 1) {
        options_help(stdout, "usage: bench_model_kernels [--option value ...]\nTimes the model's non-attention "
                             "kernels. Options:", opts, n_opts);
        return 0;
    }
    if (rc < 0) die("%s", why);
    if (layernorm_check(C, why, sizeof why) != 0) die("--channels: %s", why);
    GpuCtx ctx;
    if (gpu_ctx_init(&ctx, 0, why, sizeof why) != 0) die("%s", why);
    char where[320];
    b.ctx = &ctx;
    b.peak_gbs = machine(where, sizeof where, ctx.device);
    b.where = where;
    int l2 = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, ctx.device));
    b.flush_bytes = 2 * (size_t)l2;
    CUDA_CHECK(cudaMalloc(&b.flush, b.flush_bytes));
    CUDA_CHECK(cudaEventCreate(&b.start));
    CUDA_CHECK(cudaEventCreate(&b.stop));

    ModelConfig cfg = model_config_make(ATTN_LEARNED, L, C / 64 > 0 ? C / 64 : 1, C, V, 1024);
    int Vp = cfg.padded_vocab_size, slabs = (N + COLSUM_SLAB_ROWS - 1) / COLSUM_SLAB_ROWS;
    ParamSpec specs[NUM_PARAM_TENSORS];
    size_t P = param_specs(&cfg, specs), NC = (size_t)N * C, NV = (size_t)N * Vp, N4C = 4 * NC;
    char shape[96];
    printf("bench_model_kernels: N %d, C %d, V %d (%d), %zu parameters; DRAM peak %.0f GB/s\n", N, C, V, Vp, P,
           b.peak_gbs);

    /* layernorm: inp (N,C) bf16, out, mean, rstd; backward += into dinp, dout f32 */
    bf16 *ln_in = device_fill<bf16>(NC, -2.0f, 2.0f, 1), *ln_out = device_fill<bf16>(NC, 0, 0, 0);
    bf16 *ln_dinp = device_fill<bf16>(NC, -0.01f, 0.01f, 2);
    float *ln_w = device_fill<float>(C, 0.5f, 1.5f, 3), *ln_b = device_fill<float>(C, -0.1f, 0.1f, 4);
    float *ln_dout = device_fill<float>(NC, -0.01f, 0.01f, 5), *ln_stats = device_fill<float>(2 * (size_t)N, 0, 0, 0);
    float *ln_dparams = device_fill<float>(2 * (size_t)C, 0, 0, 0);
    float *scratch = device_fill<float>(colsum_scratch_floats(N, 4 * C), 0, 0, 0);
    float *mean = ln_stats, *rstd = ln_stats + N;
    snprintf(shape, sizeof shape, "N%d C%d", N, C);
    bench(&b, "layernorm_forward", shape, NC * 2 * 2 + 8.0 * N + 8.0 * C,
          [&] { layernorm_forward(&ctx, ln_out, mean, rstd, ln_in, ln_w, ln_b, N, C); });
    snprintf(shape, sizeof shape, "N%d C%d +=", N, C);
    bench(&b, "layernorm_backward", shape, NC * (4 + 2 + 2 + 2) + 8.0 * N + 4.0 * C + 2 * 8.0 * slabs * C + 16.0 * C,
          [&] { layernorm_backward(&ctx, ln_dinp, 1, ln_dparams, ln_dparams + C, ln_dout, ln_in, ln_w, mean, rstd, N,
                                   C, scratch); });

    /* classifier: logits (N,Vp) bf16, every row with a target; backward in place from a kept copy */
    bf16 *logits = device_fill<bf16>(NV, -4.0f, 4.0f, 6), *logits_copy;
    CUDA_CHECK(cudaMalloc((void **)&logits_copy, NV * 2));
    CUDA_CHECK(cudaMemcpy(logits_copy, logits, NV * 2, cudaMemcpyDeviceToDevice));
    int *targets;
    CUDA_CHECK(cudaMalloc((void **)&targets, sizeof(int) * N));
    int *h_targets = (int *)mallocCheck(sizeof(int) * N);
    for (int n = 0; n < N; n++) h_targets[n] = (int)((n * 7919u + 13u) % (unsigned)V);
    CUDA_CHECK(cudaMemcpy(targets, h_targets, sizeof(int) * N, cudaMemcpyHostToDevice));
    float *losses = device_fill<float>(2 * (size_t)N, 0, 0, 0), *lse = losses + N;
    int *correct;
    CUDA_CHECK(cudaMalloc((void **)&correct, sizeof(int) * N));
    snprintf(shape, sizeof shape, "N%d V%d Vp%d", N, V, Vp);
    bench(&b, "classifier_forward", shape, (double)N * V * 2 + 16.0 * N,
          [&] { classifier_forward(&ctx, losses, lse, correct, logits, targets, N, V, Vp); });
    bench(&b, "classifier_backward", shape, (double)N * V * 2 + (double)NV * 2 + 8.0 * N,
          [&] { classifier_backward(&ctx, logits, lse, targets, 1.0f / N, N, V, Vp); },
          [&] { CUDA_CHECK(cudaMemcpyAsync(logits, logits_copy, NV * 2, cudaMemcpyDeviceToDevice, ctx.stream)); });
    CUDA_CHECK(cudaFree(logits));
    CUDA_CHECK(cudaFree(logits_copy));

    /* gelu over (N,4C); backward in place from a kept copy of dout */
    bf16 *fch = device_fill<bf16>(N4C, -3.0f, 3.0f, 7), *fch_gelu = device_fill<bf16>(N4C, 0, 0, 0);
    bf16 *dfch = device_fill<bf16>(N4C, -0.01f, 0.01f, 8), *dfch_copy;
    CUDA_CHECK(cudaMalloc((void **)&dfch_copy, N4C * 2));
    CUDA_CHECK(cudaMemcpy(dfch_copy, dfch, N4C * 2, cudaMemcpyDeviceToDevice));
    snprintf(shape, sizeof shape, "N%d 4C%d", N, 4 * C);
    bench(&b, "gelu_forward", shape, N4C * 2.0 * 2, [&] { gelu_forward(&ctx, fch_gelu, fch, N4C); });
    bench(&b, "gelu_backward", shape, N4C * 2.0 * 3, [&] { gelu_backward(&ctx, dfch, fch, N4C); },
          [&] { CUDA_CHECK(cudaMemcpyAsync(dfch, dfch_copy, N4C * 2, cudaMemcpyDeviceToDevice, ctx.stream)); });

    /* bias gradients: column sums of dout (N,OC) bf16 */
    Matmul *mm = matmul_create(&ctx);
    float *dbias = device_fill<float>(4 * (size_t)C, 0, 0, 0);
    for (int OC = C; OC <= 4 * C; OC += 3 * C) {
        snprintf(shape, sizeof shape, "N%d OC%d", N, OC);
        bench(&b, "matmul_backward_bias", shape, (double)N * OC * 2 + 2 * 4.0 * slabs * OC + 8.0 * OC,
              [&] { matmul_backward_bias(mm, dbias, dfch, N, OC, scratch); });
    }
    matmul_free(mm);
    CUDA_CHECK(cudaFree(fch));
    CUDA_CHECK(cudaFree(fch_gelu));
    CUDA_CHECK(cudaFree(dfch));
    CUDA_CHECK(cudaFree(dfch_copy));

    /* AdamW over every parameter as one range: p, m, v, grad f32, the bf16 copy */
    float *p = device_fill<float>(P, -0.1f, 0.1f, 9), *m = device_fill<float>(P, -1e-3f, 1e-3f, 10);
    float *v = device_fill<float>(P, 0.0f, 1e-6f, 11), *grad = device_fill<float>(P, -1e-3f, 1e-3f, 12);
    bf16 *p_bf16 = device_fill<bf16>(P, 0, 0, 0);
    AdamWStep step = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0.5f, 0.3f};
    snprintf(shape, sizeof shape, "%zu params", P);
    bench(&b, "adamw_update", shape, 30.0 * P, [&] { adamw_update(&ctx, &step, p, m, v, grad, p_bf16, P); });

    CUDA_CHECK(cudaDeviceSynchronize());
    gpu_ctx_free(&ctx);
    return 0;
}
