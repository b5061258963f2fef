/* gpu.h: the GPU context handed down from the program to every kernel launcher (no globals):
 * device, stream, device limits; and the CUDA_CHECK macro for every CUDA runtime call.
 * Plain C (the CUDA runtime API is C). */
#ifndef PATHGPT_KERNELS_GPU_H
#define PATHGPT_KERNELS_GPU_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int device;              /* CUDA device ordinal */
    cudaStream_t stream;     /* all work of this context is ordered on it */
    int sm_count;            /* multiprocessors */
    size_t smem_optin;       /* largest dynamic shared memory a block may opt into, bytes */
    int sync_each_launch;    /* DEBUG builds: synchronise after each launch so faults name their kernel */
} GpuCtx;

/* 0 and a filled ctx, or -1 with a reason (no device, driver too old, ...) in why. */
int gpu_ctx_init(GpuCtx *ctx, int device, char *why, size_t why_len);
void gpu_ctx_free(GpuCtx *ctx);

void cuda_check_fail(cudaError_t err, const char *call, const char *file, int line);
#define CUDA_CHECK(call)                                                          \
    do {                                                                          \
        cudaError_t err_ = (call);                                                \
        if (err_ != cudaSuccess) cuda_check_fail(err_, #call, __FILE__, __LINE__); \
    } while (0)

/* After a launch: the launch error, and in DEBUG mode the kernel's own error. */
void gpu_launch_check(const GpuCtx *ctx, const char *kernel, const char *file, int line);
#define LAUNCH_CHECK(ctx, name) gpu_launch_check(ctx, name, __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif
#endif
