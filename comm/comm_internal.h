/* comm_internal.h: what the files of the communication layer share (comm.h is the interface):
 * the Comm struct, the TCP hub transport (comm_tcp.c), and the table a model-memory backend fills
 * (comm_host.c, comm_nccl.c, comm_none.c). Library failures (MPI_CHECK in comm.c, NCCL_CHECK in
 * comm_nccl.c) print "rank R: <call> failed at file:line: <the library's reason>" and exit 1.
 * checked by: tests/test_comm.c. */
#ifndef PATHGPT_COMM_COMM_INTERNAL_H
#define PATHGPT_COMM_COMM_INTERNAL_H

#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * TCP hub (comm_tcp.c): rank 0 holds one connection to every other rank */

typedef struct {
    int rank, world;
    int *fd; /* (world) rank 0: fd[r] is rank r's connection, fd[0] = -1; others: fd[0] is rank 0's */
} TcpGroup;

/* Joins over "tcp:HOST:PORT" (file = 0, address "HOST:PORT") or "file:PATH" (file = 1, address PATH).
 * 0, or -1 with a reason (bad address, not all joined in time, disagreeing world or rank). */
int tcp_join(TcpGroup *g, int rank, int world, int file, const char *address, double timeout_s, char *why,
             size_t why_len);
void tcp_leave(TcpGroup *g);

/* The hub collectives; call names the public function for messages. elem_bytes: 4 (float) or 8 (double). */
void tcp_sum(TcpGroup *g, void *buf, size_t n, size_t elem_bytes, const char *call);
void tcp_broadcast(TcpGroup *g, void *bytes, size_t n_bytes, const char *call);
void tcp_allgather(TcpGroup *g, void *buf, size_t bytes_per_rank, const char *call);
/* A peer whose connection is closed (it exited or crashed), or -1; does not wait or read. */
int tcp_lost_peer(const TcpGroup *g);

/* ---------------------------------------------------------------------------------------------
 * the communicator */

typedef enum { TRANSPORT_NONE, TRANSPORT_MPI, TRANSPORT_TCP } Transport;

struct Comm {
    int rank, world, local_rank;
    Transport transport;
    TcpGroup tcp;           /* TRANSPORT_TCP */
    void *model;            /* the model-memory backend's state */
    char describe[256];
};

/* host collectives on fp32, for the host backend (comm.c) */
void comm_host_sum_f32(Comm *c, float *buf, size_t n, const char *call);
void comm_host_allgather_f32(Comm *c, float *buf, size_t n_per_rank, const char *call);
void comm_host_reduce_scatter_f32(Comm *c, float *buf, size_t n_per_rank, const char *call);

/* A model-memory backend: exactly one file defines comm_model_backend. comm_init calls init once a
 * transport exists, on every rank (0, or -1 with a reason, leaving c->model NULL; the ranks must agree,
 * so that none waits for one that gave up); the collectives are called only after a successful init;
 * comm_free calls free when init set c->model (the backend's state). */
typedef struct {
    const char *memory; /* "host memory", "device memory (NCCL)", ... for comm_describe */
    int (*init)(Comm *c, char *why, size_t why_len);
    void (*allreduce_sum)(Comm *c, float *buf, size_t n, void *stream);
    void (*reduce_scatter_sum)(Comm *c, float *buf, size_t n_per_rank, void *stream);
    void (*allgather)(Comm *c, float *buf, size_t n_per_rank, void *stream);
    void (*wait)(Comm *c, void *stream);
    void (*free)(Comm *c);
} CommModelBackend;

extern const CommModelBackend comm_model_backend;

#ifdef __cplusplus
}
#endif
#endif
