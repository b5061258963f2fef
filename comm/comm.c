/* comm.c: comm.h's joining (the rendezvous string, MPI, the TCP hub of comm_tcp.c) and its host
 * collectives; the model collectives go to the backend linked into the program (comm_model_backend).
 * MPI (built with PATHGPT_HAVE_MPI, found by the build's probe): MPI_Init_thread(FUNNELED: OpenMP
 * threads never call MPI), errors returned rather than fatal so that MPI_CHECK names the rank and the
 * call; MPI counts are int, so sums and broadcasts go in pieces of MPI_PIECE elements, and a reduce-
 * scatter or all-gather part above INT_MAX elements is refused. MPI_Reduce_scatter_block in place
 * leaves the result at the start of the buffer; it is moved to the rank's part.
 * checked by: tests/test_comm.c (world 1, tcp, file, and mpi under mpirun). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PATHGPT_HAVE_MPI
#include <mpi.h>
#endif

#include "../common/util.h"
#include "comm_internal.h"

/* The environment variable by which an MPI launcher announces itself, or NULL: Open MPI's mpirun,
 * and the PMI / PMIx process managers (MPICH's Hydra, Slurm's srun --mpi=..., Open MPI 5). */
static const char *mpi_launcher(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return vars[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * MPI */

#ifdef PATHGPT_HAVE_MPI
#define MPI_PIECE ((size_t)1 << 30) /* elements per call: MPI counts are int */

static void mpi_fail(const Comm *c, int err, const char *call, const char *file, int line) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, text, &len);
    die("rank %d: %s failed at %s:%d: %s", c->rank, call, file, line, text);
}

#define MPI_CHECK(c, call)                                               \
    do {                                                                 \
        int err_ = (call);                                               \
        if (err_ != MPI_SUCCESS) mpi_fail(c, err_, #call, __FILE__, __LINE__); \
    } while (0)

static int join_mpi(Comm *c) {
    int ready = 0, provided, local;
    MPI_Initialized(&ready);
    if (!ready) MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(c, MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    MPI_CHECK(c, MPI_Comm_size(MPI_COMM_WORLD, &c->world));
    MPI_Comm node;
    MPI_CHECK(c, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
    MPI_CHECK(c, MPI_Comm_rank(node, &local));
    MPI_CHECK(c, MPI_Comm_free(&node));
    if (c->local_rank < 0) c->local_rank = local;
    c->transport = TRANSPORT_MPI;
    return 0;
}

static void mpi_sum(Comm *c, void *buf, size_t n, size_t elem_bytes) {
    MPI_Datatype type = elem_bytes == sizeof(double) ? MPI_DOUBLE : MPI_FLOAT;
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        int k = (int)(n - off < MPI_PIECE ? n - off : MPI_PIECE);
        MPI_CHECK(c, MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem_bytes, k, type, MPI_SUM, MPI_COMM_WORLD));
    }
}

static void mpi_part_fits(const Comm *c, size_t n_per_rank, const char *call) {
    if (n_per_rank > INT_MAX) die("rank %d: %s: %zu elements per rank exceed MPI's int counts", c->rank, call, n_per_rank);
}
#endif

/* ---------------------------------------------------------------------------------------------
 * joining */

static int join(Comm *c, const CommConfig *cfg, const char *rv, char *why, size_t len) {
    if (strcmp(rv, "mpi") == 0) {
#ifdef PATHGPT_HAVE_MPI
        return join_mpi(c);
#else
        const char *launcher = mpi_launcher();
        if (launcher)
            snprintf(why, len, "started by an MPI launcher (%s is set), but this build has no MPI (see make's MPI "
                     "line); rebuild with MPI, or start the ranks yourself with tcp:HOST:PORT or file:PATH", launcher);
        else
            snprintf(why, len, "rendezvous mpi: this build has no MPI (see make's MPI line); use tcp:HOST:PORT or file:PATH");
        return -1;
#endif
    }
    int tcp = strncmp(rv, "tcp:", 4) == 0, file = strncmp(rv, "file:", 5) == 0;
    if (rv[0] && !tcp && !file) {
        snprintf(why, len, "rendezvous '%s' is none of mpi, tcp:HOST:PORT, file:PATH", rv);
        return -1;
    }
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world) {
        snprintf(why, len, "rank %d is not in [0, world %d)", cfg->rank, cfg->world);
        return -1;
    }
    if (!rv[0] && cfg->world > 1) {
        snprintf(why, len, "world %d needs a rendezvous: mpi (start with mpirun), tcp:HOST:PORT or file:PATH", cfg->world);
        return -1;
    }
    if (file && !rv[5]) {
        snprintf(why, len, "rendezvous file: needs a path, file:PATH");
        return -1;
    }
    c->rank = cfg->rank;
    c->world = cfg->world;
    if (!rv[0]) return 0;
    if (tcp_join(&c->tcp, c->rank, c->world, file, rv + (file ? 5 : 4), cfg->timeout_s, why, len)) return -1;
    c->transport = TRANSPORT_TCP;
    return 0;
}

/* leaves the transport at once (comm_free waits for the other ranks first) */
static void comm_close(Comm *c) {
    if (c->model) comm_model_backend.free(c);
#ifdef PATHGPT_HAVE_MPI
    if (c->transport == TRANSPORT_MPI) MPI_Finalize();
#endif
    if (c->transport == TRANSPORT_TCP) tcp_leave(&c->tcp);
    free(c);
}

int comm_init(Comm **out, const CommConfig *cfg, char *why, size_t why_len) {
    const char *rv = cfg->rendezvous ? cfg->rendezvous : "";
    if (!rv[0] && mpi_launcher()) rv = "mpi";
    Comm *c = callocCheck(1, sizeof(Comm));
    c->local_rank = cfg->local_rank;
    if (join(c, cfg, rv, why, why_len)) {
        free(c);
        return -1;
    }
    if (c->local_rank < 0) c->local_rank = c->rank;
    if (c->transport != TRANSPORT_NONE && comm_model_backend.init(c, why, why_len)) {
        comm_close(c);
        return -1;
    }
    if (c->transport == TRANSPORT_NONE) snprintf(c->describe, sizeof c->describe, "one process, no transport");
    else snprintf(c->describe, sizeof c->describe, "joined by %s; model buffers reduced in %s", rv, comm_model_backend.memory);
    *out = c;
    return 0;
}

void comm_free(Comm *c) {
    if (c->transport == TRANSPORT_TCP) comm_barrier(c); /* no rank leaves while another may wait for it */
    comm_close(c);
}

int comm_rank(const Comm *c) { return c->rank; }
int comm_world(const Comm *c) { return c->world; }
int comm_local_rank(const Comm *c) { return c->local_rank; }
const char *comm_describe(const Comm *c) { return c->describe; }

/* ---------------------------------------------------------------------------------------------
 * host collectives: nothing without a transport; MPI; the TCP hub */

static void host_sum(Comm *c, void *buf, size_t n, size_t elem_bytes, const char *call) {
#ifdef PATHGPT_HAVE_MPI
    if (c->transport == TRANSPORT_MPI) mpi_sum(c, buf, n, elem_bytes);
#endif
    if (c->transport == TRANSPORT_TCP) tcp_sum(&c->tcp, buf, n, elem_bytes, call);
}

void comm_sum_host(Comm *c, double *x, size_t n) { host_sum(c, x, n, sizeof(double), "comm_sum_host"); }

void comm_host_sum_f32(Comm *c, float *buf, size_t n, const char *call) { host_sum(c, buf, n, sizeof(float), call); }

void comm_broadcast_host(Comm *c, void *bytes, size_t n_bytes) {
#ifdef PATHGPT_HAVE_MPI
    for (size_t off = 0; c->transport == TRANSPORT_MPI && off < n_bytes; off += MPI_PIECE) {
        int k = (int)(n_bytes - off < MPI_PIECE ? n_bytes - off : MPI_PIECE);
        MPI_CHECK(c, MPI_Bcast((char *)bytes + off, k, MPI_BYTE, 0, MPI_COMM_WORLD));
    }
#endif
    if (c->transport == TRANSPORT_TCP) tcp_broadcast(&c->tcp, bytes, n_bytes, "comm_broadcast_host");
}

void comm_host_allgather_f32(Comm *c, float *buf, size_t n_per_rank, const char *call) {
#ifdef PATHGPT_HAVE_MPI
    if (c->transport == TRANSPORT_MPI) {
        mpi_part_fits(c, n_per_rank, call);
        MPI_CHECK(c, MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n_per_rank, MPI_FLOAT, MPI_COMM_WORLD));
    }
#endif
    if (c->transport == TRANSPORT_TCP) tcp_allgather(&c->tcp, buf, n_per_rank * sizeof(float), call);
}

void comm_allgather_host(Comm *c, float *buf, size_t n_per_rank) {
    comm_host_allgather_f32(c, buf, n_per_rank, "comm_allgather_host");
}

/* The hub sums the whole buffer (every part is the sum afterwards); MPI computes only this rank's part. */
void comm_host_reduce_scatter_f32(Comm *c, float *buf, size_t n_per_rank, const char *call) {
#ifdef PATHGPT_HAVE_MPI
    if (c->transport == TRANSPORT_MPI) {
        mpi_part_fits(c, n_per_rank, call);
        MPI_CHECK(c, MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, (int)n_per_rank, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        memmove(buf + (size_t)c->rank * n_per_rank, buf, sizeof(float) * n_per_rank);
    }
#endif
    if (c->transport == TRANSPORT_TCP) tcp_sum(&c->tcp, buf, n_per_rank * (size_t)c->world, sizeof(float), call);
}

void comm_barrier(Comm *c) {
#ifdef PATHGPT_HAVE_MPI
    if (c->transport == TRANSPORT_MPI) MPI_CHECK(c, MPI_Barrier(MPI_COMM_WORLD));
#endif
    double token = 0.0;
    if (c->transport == TRANSPORT_TCP) tcp_sum(&c->tcp, &token, 1, sizeof token, "comm_barrier");
}

/* ---------------------------------------------------------------------------------------------
 * model collectives */

void comm_allreduce_sum(Comm *c, float *buf, size_t n, void *stream) {
    if (c->transport != TRANSPORT_NONE) comm_model_backend.allreduce_sum(c, buf, n, stream);
}

void comm_reduce_scatter_sum(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    if (c->transport != TRANSPORT_NONE) comm_model_backend.reduce_scatter_sum(c, buf, n_per_rank, stream);
}

void comm_allgather(Comm *c, float *buf, size_t n_per_rank, void *stream) {
    if (c->transport != TRANSPORT_NONE) comm_model_backend.allgather(c, buf, n_per_rank, stream);
}

void comm_wait(Comm *c, void *stream) {
    if (c->transport != TRANSPORT_NONE) comm_model_backend.wait(c, stream);
}
