/* comm_nccl.c: comm.h's model collectives for a model whose buffers are in device memory (the GPU model,
 * train): NCCL, one GPU per rank.
 * init: a local rank at or above the machine's GPU count is an error naming both; cudaSetDevice(local
 * rank), so that this process's later CUDA work lands on that GPU; rank 0's ncclGetUniqueId reaches the
 * others by comm_broadcast_host (MPI or the TCP hub); ncclCommInitRank; a non-blocking stream of our own.
 * Collectives (fp32 sums, NCCL's in-place forms):
 *   ncclAllReduce(buf, buf, n);  ncclReduceScatter(buf, buf + rank n, n);  ncclAllGather(buf + rank n, buf, n)
 * Every call first checks that buf is device memory on this rank's GPU (cudaPointerGetAttributes).
 * stream NULL: cudaDeviceSynchronize (the model's work on every stream is done), the collective on our
 * stream, then a wait that polls ncclCommGetAsyncError and (over the TCP hub) the hub's connections, so
 * a network failure or a rank that died ends this process naming the rank and the call (after
 * ncclCommAbort) instead of hanging; under mpirun, mpirun ends the job when a rank dies. A stream given:
 * the collective is queued on it and the call returns; comm_wait on that stream waits with the same
 * watch (errors also surface at the next NULL-stream call).
 * Failures: NCCL_CHECK prints the rank, the call, file:line, ncclGetErrorString and ncclGetLastError.
 * checked by: tests/test_comm_gpu.cu (a group of one on one GPU); several GPUs: README,
 * "Multiple processes and GPUs". */
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/gpu.h"
#include "../common/util.h"
#include "comm_internal.h"

typedef struct {
    ncclComm_t nccl;
    cudaStream_t stream; /* NULL-stream collectives run here */
} Nccl;

static void nccl_fail(const Comm *c, ncclResult_t r, ncclComm_t comm, const char *call, const char *file, int line) {
    const char *last = ncclGetLastError(comm);
    die("rank %d: %s failed at %s:%d: %s%s%s", c->rank, call, file, line, ncclGetErrorString(r),
        last && last[0] ? "; " : "", last ? last : "");
}

#define NCCL_CHECK(c, comm, call)                                                    \
    do {                                                                             \
        ncclResult_t r_ = (call);                                                    \
        if (r_ != ncclSuccess) nccl_fail(c, r_, comm, #call, __FILE__, __LINE__);     \
    } while (0)

/* 0 if GPU <local rank> exists, else -1 with the reason */
static int gpu_for_rank(const Comm *c, char *why, size_t why_len) {
    int n_dev = 0;
    cudaError_t err = cudaGetDeviceCount(&n_dev);
    if (err != cudaSuccess || n_dev == 0) {
        snprintf(why, why_len, "rank %d: no CUDA device (%s)", c->rank, err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        return -1;
    }
    if (c->local_rank >= n_dev) {
        snprintf(why, why_len, "rank %d: local rank %d needs GPU %d, but this machine has %d (one GPU per rank: start at "
                 "most %d ranks per machine, each with its index on the machine as local rank)", c->rank, c->local_rank,
                 c->local_rank, n_dev, n_dev);
        return -1;
    }
    return 0;
}

static int nccl_init(Comm *c, char *why, size_t why_len) {
    double failed = gpu_for_rank(c, why, why_len) ? 1.0 : 0.0, mine = failed;
    comm_sum_host(c, &failed, 1); /* all ranks give up together, or none waits in NCCL for one that did */
    if (mine) return -1;
    if (failed) {
        snprintf(why, why_len, "rank %d: %g other rank%s cannot use a GPU (see %s messages)", c->rank, failed,
                 failed > 1 ? "s" : "", failed > 1 ? "their" : "its");
        return -1;
    }
    CUDA_CHECK(cudaSetDevice(c->local_rank));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0) NCCL_CHECK(c, NULL, ncclGetUniqueId(&id));
    comm_broadcast_host(c, &id, sizeof id);
    Nccl *s = callocCheck(1, sizeof(Nccl));
    NCCL_CHECK(c, NULL, ncclCommInitRank(&s->nccl, c->world, id, c->rank));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    c->model = s;
    return 0;
}

/* the stream a collective on buf runs on; NULL: after everything already on the device. buf must be
 * device memory of this rank's GPU (a model on another GPU is the caller's bug, named here). */
static cudaStream_t start(Comm *c, const float *buf, void *stream, const char *call) {
    struct cudaPointerAttributes attr;
    CUDA_CHECK(cudaPointerGetAttributes(&attr, buf));
    if (attr.type != cudaMemoryTypeDevice)
        die("rank %d: %s: the buffer is not device memory (cudaMemoryType %d)", c->rank, call, (int)attr.type);
    if (attr.device != c->local_rank)
        die("rank %d: %s: the buffer is on GPU %d, but this rank's NCCL communicator is on GPU %d (the model must "
            "use the GPU comm_init made current: comm/comm.h)", c->rank, call, attr.device, c->local_rank);
    if (stream) return (cudaStream_t)stream;
    CUDA_CHECK(cudaDeviceSynchronize());
    return ((Nccl *)c->model)->stream;
}

/* Waits for stream st, watching for NCCL's asynchronous errors and, over the TCP hub, for a rank that is
 * gone (NCCL alone may wait for it forever) */
static void wait_stream(Comm *c, cudaStream_t st, const char *call) {
    Nccl *s = c->model;
    for (unsigned spins = 0;; spins++) {
        cudaError_t err = cudaStreamQuery(st);
        if (err == cudaSuccess) return;
        if (err != cudaErrorNotReady) CUDA_CHECK(err);
        ncclResult_t async;
        NCCL_CHECK(c, s->nccl, ncclCommGetAsyncError(s->nccl, &async));
        int lost = async == ncclSuccess && c->transport == TRANSPORT_TCP && spins % 1024 == 1023 ? tcp_lost_peer(&c->tcp) : -1;
        if (async != ncclSuccess || lost >= 0) {
            char last[512];
            snprintf(last, sizeof last, "%s", async != ncclSuccess ? ncclGetLastError(s->nccl) : "");
            ncclCommAbort(s->nccl);
            if (lost >= 0) die("rank %d: %s: rank %d closed its connection (did it exit? see its messages)", c->rank, call, lost);
            die("rank %d: %s: NCCL reports %s%s%s (another rank may have failed: see its messages)", c->rank, call,
                ncclGetErrorString(async), last[0] ? "; " : "", last);
        }
        sched_yield();
    }
}

/* NULL stream: the collective is done on our stream when the call returns */
static void finish(Comm *c, void *stream, const char *call) {
    if (!stream) wait_stream(c, ((Nccl *)c->model)->stream, call);
}

static void nccl_wait(Comm *c, void *stream) {
    if (stream) wait_stream(c, (cudaStream_t)stream, "comm_wait");
}

static void nccl_allreduce_sum(Comm *c, float *buf, size_t n, void *stream) {
    Nccl *s = c->model;
    NCCL_CHECK(c, s->nccl, ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, s->nccl, start(c, buf, stream, "ncclAllReduce")));
    finish(c, stream, "ncclAllReduce");
}

static void nccl_reduce_scatter_sum(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    Nccl *s = c->model;
    NCCL_CHECK(c, s->nccl, ncclReduceScatter(buf, buf + (size_t)c->rank * n_per_rank, n_per_rank, ncclFloat, ncclSum,
                                             s->nccl, start(c, buf, stream, "ncclReduceScatter")));
    finish(c, stream, "ncclReduceScatter");
}

static void nccl_allgather(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    Nccl *s = c->model;
    NCCL_CHECK(c, s->nccl, ncclAllGather(buf + (size_t)c->rank * n_per_rank, buf, n_per_rank, ncclFloat, s->nccl,
                                         start(c, buf, stream, "ncclAllGather")));
    finish(c, stream, "ncclAllGather");
}

static void nccl_free(Comm *c) {
    Nccl *s = c->model;
    CUDA_CHECK(cudaStreamSynchronize(s->stream));
    NCCL_CHECK(c, s->nccl, ncclCommDestroy(s->nccl));
    CUDA_CHECK(cudaStreamDestroy(s->stream));
    free(s);
    c->model = NULL;
}

const CommModelBackend comm_model_backend = {"device memory (NCCL)", nccl_init, nccl_allreduce_sum,
                                             nccl_reduce_scatter_sum, nccl_allgather, nccl_wait, nccl_free};
