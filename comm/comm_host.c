/* comm_host.c: comm.h's model collectives for a model whose buffers are in host memory (the CPU model:
 * train_cpu, and the tests): the transport's host collectives (MPI, or the TCP hub with its fixed sum
 * order). Streams do not exist here: giving one is a bug in the caller.
 * checked by: tests/test_comm.c, tests/test_data_parallel.c. */
#include "../common/util.h"
#include "comm_internal.h"

static int host_init(Comm *c, char *why, size_t why_len) {
    (void)c, (void)why, (void)why_len;
    return 0;
}

static void no_stream(const Comm *c, const void *stream, const char *call) {
    if (stream) die("rank %d: %s: a stream was given, but the model buffers are in host memory", c->rank, call);
}

static void host_allreduce_sum(Comm *c, float *buf, size_t n, void *stream) {
    no_stream(c, stream, "comm_allreduce_sum");
    comm_host_sum_f32(c, buf, n, "comm_allreduce_sum");
}

static void host_reduce_scatter_sum(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    no_stream(c, stream, "comm_reduce_scatter_sum");
    comm_host_reduce_scatter_f32(c, buf, n_per_rank, "comm_reduce_scatter_sum");
}

static void host_allgather(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    no_stream(c, stream, "comm_allgather");
    comm_host_allgather_f32(c, buf, n_per_rank, "comm_allgather");
}

static void host_wait(Comm *c, void *stream) { no_stream(c, stream, "comm_wait"); } /* the calls are done */

const CommModelBackend comm_model_backend = {"host memory", host_init, host_allreduce_sum, host_reduce_scatter_sum,
                                             host_allgather, host_wait, NULL};
