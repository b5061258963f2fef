/* norm.cu: see norm.h (math, launch shape). */
#include "common.cuh"
#include "norm.h"

#define NORM_THREADS 512

static __global__ void sum_squares_kernel(const float *x, size_t n, double *partial) {
    __shared__ double s[NORM_THREADS];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * NORM_THREADS + threadIdx.x; i < n; i += (size_t)NORM_BLOCKS * NORM_THREADS)
        acc += (double)x[i] * x[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int half = NORM_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

double norm_sum_squares(const GpuCtx *ctx, const float *x, size_t n, double *scratch) {
    double host[NORM_BLOCKS];
    sum_squares_kernel<<<NORM_BLOCKS, NORM_THREADS, 0, ctx->stream>>>(x, n, scratch);
    LAUNCH_CHECK(ctx, "sum_squares_kernel");
    CUDA_CHECK(cudaMemcpyAsync(host, scratch, sizeof host, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    double sum = 0.0;
    for (int i = 0; i < NORM_BLOCKS; i++) sum += host[i];
    return sum;
}
