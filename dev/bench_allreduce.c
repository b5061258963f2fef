/* bench_allreduce.c: all-reduce bandwidth of comm/comm.h as train.c uses it with --overlap 0:
 * comm_allreduce_sum on one fp32 buffer with the NULL stream (blocking), for sizes from --min-mb to
 * --max-mb, doubling (--overlap 1 makes one such call per tensor slice of a layer).
 * Built twice (Makefile, "Multiple processes"): bench_allreduce_cpu (host buffers, comm_host.c: MPI or
 * the TCP hub) and bench_allreduce (device buffers, comm_nccl.c; PATHGPT_BENCH_DEVICE). Ranks join as
 * train does: under mpirun, or RANK / WORLD_SIZE / LOCAL_RANK and PATHGPT_RENDEZVOUS.
 * Timing: 5 warm-up calls, then --iters calls, each timed alone between barriers; the median.
 * One line per size, rank 0, the fields of the kernel benchmarks (doc/STYLE.md, Benchmarks):
 *   allreduce | 256 MB fp32 world 8 | 2.91 ms | algbw 92.3 GB/s, busbw 161.5 GB/s | <how the ranks
 *   joined, where the buffers are> | <GPU, or host> | <commit>
 * algbw = bytes / time; busbw = algbw 2 (W - 1) / W, the bytes each rank's link carries in a ring
 * all-reduce (nccl-tests' convention), comparable across world sizes.
 * checked by: nothing automatic; its sums are not checked (tests/test_comm.c checks the values). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PATHGPT_BENCH_DEVICE
#include "../kernels/gpu.h"
#endif

#include "../comm/comm.h"
#include "../common/options.h"
#include "../common/util.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the GPU's name, or "host"; then the commit (git rev-parse --short HEAD), or "unknown" */
static void machine(char *out, size_t len) {
    char commit[64] = "unknown";
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (p && fgets(commit, sizeof commit, p)) commit[strcspn(commit, "\n")] = '\0';
    if (p) pclose(p);
#ifdef PATHGPT_BENCH_DEVICE
    int dev;
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    snprintf(out, len, "%s | %s", prop.name, commit);
#else
    snprintf(out, len, "host | %s", commit);
#endif
}

static float *buffer(size_t n) {
#ifdef PATHGPT_BENCH_DEVICE
    float *p;
    CUDA_CHECK(cudaMalloc((void **)&p, sizeof(float) * n));
    CUDA_CHECK(cudaMemset(p, 0, sizeof(float) * n));
    return p;
#else
    return callocCheck(n, sizeof(float));
#endif
}

static void release(float *p) {
#ifdef PATHGPT_BENCH_DEVICE
    CUDA_CHECK(cudaFree(p));
#else
    free(p);
#endif
}

int main(int argc, char **argv) {
    util_set_progname("bench_allreduce");
    int rank, world, local_rank, iters;
    double min_mb, max_mb;
    const char *rendezvous;
    Option opts[] = {
        OPTION("--min-mb", OPT_DOUBLE, &min_mb, "1", 1e-3, 1e6, NULL, NULL, "smallest buffer, MB"),
        OPTION("--max-mb", OPT_DOUBLE, &max_mb, "256", 1e-3, 1e6, NULL, NULL, "largest buffer, MB"),
        OPTION("--iters", OPT_INT, &iters, "20", 1, 100000, NULL, NULL, "timed calls per size"),
        OPTION("--rank", OPT_INT, &rank, "0", 0, 65535, NULL, "RANK", "this process's rank (under mpirun: MPI's)"),
        OPTION("--world", OPT_INT, &world, "1", 1, 65536, NULL, "WORLD_SIZE", "number of processes (under mpirun: MPI's)"),
        OPTION("--local-rank", OPT_INT, &local_rank, "-1", -1, 65535, NULL, "LOCAL_RANK", "index on this machine; -1: MPI's, else rank"),
        OPTION("--rendezvous", OPT_STRING, &rendezvous, "", 0, 0, NULL, "PATHGPT_RENDEZVOUS", "mpi, tcp:HOST:PORT, file:PATH"),
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char why[1024];
    int rc = options_parse(opts, n_opts, argc, argv, why, sizeof why);
    if (rc == 1) {
        options_help(stdout, "usage: bench_allreduce [--option value ...]\nTimes comm_allreduce_sum. Options:", opts, n_opts);
        return 0;
    }
    if (rc < 0) die("%s", why);
    CommConfig cc = {rendezvous, rank, world, local_rank, 300.0};
    Comm *c;
    if (comm_init(&c, &cc, why, sizeof why)) die("%s", why);
    world = comm_world(c);
    char where[512];
    machine(where, sizeof where);
    double *t = mallocCheck(sizeof(double) * (size_t)iters);
    for (double mb = min_mb; mb <= max_mb * (1 + 1e-9); mb *= 2) {
        size_t n = (size_t)(mb * (1 << 20) / sizeof(float));
        float *buf = buffer(n);
        for (int i = 0; i < 5; i++) comm_allreduce_sum(c, buf, n, NULL);
        for (int i = 0; i < iters; i++) {
            comm_barrier(c);
            double t0 = now_s();
            comm_allreduce_sum(c, buf, n, NULL);
            t[i] = now_s() - t0;
        }
        qsort(t, (size_t)iters, sizeof(double), by_value);
        double sec = t[iters / 2], algbw = sizeof(float) * (double)n / sec / 1e9;
        if (comm_rank(c) == 0)
            printf("allreduce | %g MB fp32 world %d | %.3f ms | algbw %.2f GB/s, busbw %.2f GB/s | %s | %s\n", mb, world,
                   1e3 * sec, algbw, algbw * 2.0 * (world - 1) / world, comm_describe(c), where);
        fflush(stdout);
        release(buf);
    }
    free(t);
    comm_free(c);
    return 0;
}
