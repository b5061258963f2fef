/* gpu.c: see gpu.h. */
#include "gpu.h"

#include <stdio.h>
#include <stdlib.h>

int gpu_ctx_init(GpuCtx *ctx, int device, char *why, size_t why_len) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        snprintf(why, why_len, "no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        return -1;
    }
    if (device < 0 || device >= count) {
        snprintf(why, why_len, "CUDA device %d requested, %d present", device, count);
        return -1;
    }
    CUDA_CHECK(cudaSetDevice(device));
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    ctx->device = device;
    ctx->sm_count = prop.multiProcessorCount;
    ctx->smem_optin = prop.sharedMemPerBlockOptin;
    ctx->sync_each_launch = 0;
#ifdef PATHGPT_DEBUG
    ctx->sync_each_launch = 1;
#endif
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    return 0;
}

void gpu_ctx_free(GpuCtx *ctx) { CUDA_CHECK(cudaStreamDestroy(ctx->stream)); }

void cuda_check_fail(cudaError_t err, const char *call, const char *file, int line) {
    fprintf(stderr, "error: CUDA call %s failed at %s:%d: %s\n", call, file, line, cudaGetErrorString(err));
    exit(EXIT_FAILURE);
}

void gpu_launch_check(const GpuCtx *ctx, const char *kernel, const char *file, int line) {
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess && ctx->sync_each_launch) err = cudaStreamSynchronize(ctx->stream);
    if (err != cudaSuccess) {
        fprintf(stderr, "error: kernel %s failed at %s:%d: %s\n", kernel, file, line, cudaGetErrorString(err));
        exit(EXIT_FAILURE);
    }
}
