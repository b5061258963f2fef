/* comm.h: the processes of one data-parallel run and the collectives between them (README, "Multiple
 * processes and GPUs"; doc/DESIGN.md section 4, the all-reduce arrow). One interface: the transport is
 * chosen when the run starts, the memory the gradient collectives work on when the program is linked.
 *
 * A run is `world` processes; each has a rank in [0, world) and a local rank, its index among the ranks
 * on its machine (the GPU trainer uses GPU <local rank>). comm_init joins them, by rendezvous:
 *   ""             world 1: nothing to join (no transport, every collective returns at once); but a
 *                  process started by mpirun (Open MPI, or a PMI/PMIx launcher such as MPICH's or Slurm's
 *                  srun --mpi: OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK set) is treated as "mpi"
 *   "mpi"          MPI_Init; rank and world are MPI_COMM_WORLD's, the local rank is the rank within
 *                  MPI_Comm_split_type(MPI_COMM_TYPE_SHARED); needs a build with MPI
 *   "tcp:HOST:PORT" rank 0 listens on PORT (every interface); the others connect to HOST:PORT
 *   "file:PATH"    rank 0 listens on a free port and writes "HOST PORT" (its host name) to PATH, which
 *                  every rank can read (a shared file system for several machines); the others poll
 *                  PATH and connect; rank 0 deletes it once all have joined
 * tcp and file take rank and world from the caller (flags, RANK / WORLD_SIZE); the local rank is the
 * caller's, or the rank when the caller gives -1 (all ranks on one machine). Ranks that have not all
 * joined within timeout_s give an error naming the missing ones.
 * Over tcp and file, rank 0 is a hub: a sum gathers every rank's buffer at rank 0, adds in rank order
 * ((x0 + x1) + x2 ...) and sends the result back, so it is repeatable and the same on every rank;
 * its bandwidth is rank 0's link (fine for CPU runs and small messages, not for many GPUs' gradients).
 *
 * Two kinds of collective:
 *   host   comm_sum_host, comm_broadcast_host, comm_allgather_host, comm_barrier: host memory, over MPI
 *          or TCP. Token counts and losses every step; checkpoint and resume traffic.
 *   model  comm_allreduce_sum, comm_reduce_scatter_sum, comm_allgather: fp32 buffers in the memory of the
 *          model's gradient buffer (model/gpt.h, gpt_grad_buffer). Backends, one linked per program:
 *            comm_host.c  host memory (train_cpu): the host collectives
 *            comm_nccl.c  device memory (train): NCCL on GPU <local rank>, its unique id sent from rank 0
 *                         over MPI or TCP
 *            comm_none.c  device memory without NCCL in the build: a transport is refused
 *          stream: NULL, or a cudaStream_t (the NCCL backend). NULL: the call waits for all work on the
 *          device (cudaDeviceSynchronize), runs the collective on the backend's own stream and returns
 *          when it is done, watching for NCCL errors. A stream: the collective is queued on it and the
 *          call returns at once; the caller orders it with events, and comm_wait waits for that stream
 *          with the same watch. The host backend takes no stream.
 *   In place: comm_reduce_scatter_sum takes world * n_per_rank elements and leaves at buf + rank *
 *   n_per_rank the sum over the ranks of that part (the rest of buf is undefined afterwards);
 *   comm_allgather takes each rank's part at buf + rank * n_per_rank and leaves all parts on every rank.
 *   Every rank must make the same collective calls in the same order with the same sizes.
 *
 * How train.c uses them, once per optimizer step (model/gpt.h; the GPU model runs on the device comm_init
 * made current). --overlap 1 (the default with several ranks): during the last micro-batch's backward,
 * once layer l's parameter gradients are final on the compute stream, the GPU model records an event
 * there and makes its side stream wait for it (gpt_set_grad_ready), and train.c's callback queues
 * comm_allreduce_sum(c, grads + begin, end - begin, side) for each of layer l's slices (params.h is
 * tensor-major: one contiguous slice per layered tensor, e.g. qkvw + l 3C C), then the embeddings' and
 * lnf's, in the same order on every rank; gpt_backward ends with the compute stream waiting for the side
 * stream, and train.c calls comm_wait(c, side) before the norm. (The CPU model makes the same calls
 * synchronously, stream NULL.) --overlap 0: comm_allreduce_sum(c, gpt_grad_buffer, n, NULL) after
 * backward. ZeRO-1 (rank r owns the shard [r S, (r+1) S) of the n parameters; the model's buffers are
 * padded to world S elements): comm_reduce_scatter_sum(c, gpt_grad_buffer, S, NULL) after backward,
 * AdamW on the shard, then comm_allgather(c, gpt_param_buffer, S, NULL).
 *
 * Errors: comm_init returns -1 with a one-line reason for what a user can fix (a bad rendezvous, ranks
 * that do not all join in time, world or rank that disagree, more ranks on a machine than GPUs, MPI or
 * NCCL missing from the build). A failure during a collective (a rank exited, a socket, MPI or NCCL
 * error) ends the process via die(): "rank R: <call>: <reason>".
 * checked by: tests/test_comm.c (tcp, file and mpi in several processes: every collective, the sum
 * order, the errors), tests/test_comm_gpu.cu (NCCL in a group of one on one GPU),
 * tests/test_data_parallel.c (train_cpu under mpirun and over tcp/file against one process). */
#ifndef PATHGPT_COMM_COMM_H
#define PATHGPT_COMM_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Comm Comm;

typedef struct {
    const char *rendezvous; /* "", "mpi", "tcp:HOST:PORT" or "file:PATH" */
    int rank, world;        /* tcp, file, "": this process's; mpi: not read (MPI's are used) */
    int local_rank;         /* -1: MPI's (mpi), else the rank */
    double timeout_s;       /* joining */
} CommConfig;

/* Joins the run. 0 and *out, or -1 with a one-line reason in why (nothing to free). */
int comm_init(Comm **out, const CommConfig *cfg, char *why, size_t why_len);
void comm_free(Comm *c);

int comm_rank(const Comm *c);
int comm_world(const Comm *c);
int comm_local_rank(const Comm *c);
/* How the ranks joined and where the model collectives run, e.g. "joined by mpi; model buffers reduced in
 * host memory", or "one process, no transport". */
const char *comm_describe(const Comm *c);

/* host memory */
void comm_sum_host(Comm *c, double *x, size_t n);                 /* x <- sum over ranks */
void comm_broadcast_host(Comm *c, void *bytes, size_t n_bytes);   /* rank 0's bytes to every rank */
void comm_allgather_host(Comm *c, float *buf, size_t n_per_rank); /* in place, as comm_allgather */
void comm_barrier(Comm *c);

/* model memory (where gpt_grad_buffer lives) */
void comm_allreduce_sum(Comm *c, float *buf, size_t n, void *stream);
void comm_reduce_scatter_sum(Comm *c, float *buf, size_t n_per_rank, void *stream);
void comm_allgather(Comm *c, float *buf, size_t n_per_rank, void *stream);
/* Returns once the collectives queued on stream are done, watching for a failed rank as the NULL-stream
 * calls do (NULL: at once) */
void comm_wait(Comm *c, void *stream);

#ifdef __cplusplus
}
#endif
#endif
