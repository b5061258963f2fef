/* test_comm.c: the communication layer (comm/comm.h) with buffers in host memory (comm_host.c), in
 * several processes on this machine.
 *   collectives  world 3 over tcp and over file (forked processes), and under mpirun -np 3 (this
 *                program started again by mpirun as a worker, when there is Open MPI's mpirun and the
 *                build has MPI): rank, world, local rank (= rank on one machine); comm_sum_host,
 *                comm_allreduce_sum over more than the hub's 4 MB chunk, comm_reduce_scatter_sum,
 *                comm_allgather, comm_allgather_host, comm_broadcast_host (1 MB), comm_barrier: exact
 *                values on every rank (small integers and halves: every fp32 sum is exact)
 *   sum order    tcp: x = (1, 1e8, -1e8) and (1e8, 1, -1e8) on ranks 0, 1, 2 both sum to 0 in fp32 on
 *                every rank, as the hub adds in rank order: (x0 + x1) + x2 (x0 + (x1 + x2) would give 1
 *                for the first, the reverse order (x0 + x2) + x1 1 for the second)
 *   world 1      without a rendezvous the collectives leave every buffer as it is
 *   errors       comm_init's reasons: unknown rendezvous, tcp without a port, port out of range, file
 *                without a path, rank outside the world, world 2 without a rendezvous (and mpi in a
 *                build without MPI); the exit message of the rank concerned: a rank missing at the
 *                deadline (rank 0 names it, the others say rank 0 gave up), nobody listening, no
 *                rendezvous file, world mismatch (both sides), two processes as one rank, a rank that
 *                exits before a collective (the other names it and the call); tcp_lost_peer, with which
 *                the NCCL backend watches the hub while it waits, reports no rank while all run, then
 *                the one that exited
 * Bars: exact everywhere: the collectives' values make every fp32 sum exact in any order; the sum-order
 * values make it depend on the order. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../comm/comm_internal.h"
#include "../common/util.h"
#include "check.h"

#define WORLD 3
#define N_SUM ((size_t)1500000)    /* floats: more than one 4 MB chunk of the hub */
#define N_PART ((size_t)1001)      /* per rank in reduce-scatter and all-gather */
#define N_BCAST ((size_t)1 << 20)  /* bytes */
#define CHILD_TIMEOUT_S 60
static int wait_child(pid_t pid) { return check_wait_child(pid, CHILD_TIMEOUT_S); }

static char tmp_dir[] = "/tmp/test_comm.XXXXXX";

/* ---------------------------------------------------------------------------------------------
 * the worker: every collective, checked on this rank; mismatches to stderr, their count returned */

static int bad(int rank, const char *what, size_t i, double got, double want) {
    fprintf(stderr, "rank %d: %s: element %zu is %.9g, want %.9g\n", rank, what, i, got, want);
    return 1;
}

static int check_collectives(Comm *c, int hub_order) {
    int r = comm_rank(c), W = comm_world(c), errors = 0;
    if (comm_local_rank(c) != r) errors += bad(r, "local rank (one machine)", 0, comm_local_rank(c), r);

    double x[3] = {r + 1.0, 2.0 * (r + 1), r == W - 1 ? 0.5 : 0.0};
    comm_sum_host(c, x, 3);
    double tri = W * (W + 1) / 2.0;
    if (x[0] != tri || x[1] != 2 * tri || x[2] != 0.5) errors += bad(r, "comm_sum_host", 0, x[0], tri);

    float *buf = mallocCheck(sizeof(float) * N_SUM);
    for (size_t i = 0; i < N_SUM; i++) buf[i] = (float)(i % 1000) + (float)r;
    comm_allreduce_sum(c, buf, N_SUM, NULL);
    for (size_t i = 0; i < N_SUM && errors < 5; i++) {
        double want = (double)W * (i % 1000) + W * (W - 1) / 2.0;
        if (buf[i] != want) errors += bad(r, "comm_allreduce_sum", i, buf[i], want);
    }

    for (size_t i = 0; i < W * N_PART; i++) buf[i] = (float)(r * 10 + i % 7);
    comm_reduce_scatter_sum(c, buf, N_PART, NULL);
    for (size_t j = 0; j < N_PART && errors < 5; j++) {
        size_t i = (size_t)r * N_PART + j;
        double want = 10.0 * W * (W - 1) / 2 + (double)W * (i % 7);
        if (buf[i] != want) errors += bad(r, "comm_reduce_scatter_sum (own part)", i, buf[i], want);
    }

    for (int host = 0; host < 2; host++) {
        for (size_t i = 0; i < W * N_PART; i++) buf[i] = i / N_PART == (size_t)r ? (float)r + 0.5f * (float)(i % 100) : -1.0f;
        if (host) comm_allgather_host(c, buf, N_PART);
        else comm_allgather(c, buf, N_PART, NULL);
        for (size_t i = 0; i < W * N_PART && errors < 5; i++) {
            double want = (double)(i / N_PART) + 0.5 * (double)(i % 100);
            if (buf[i] != want) errors += bad(r, host ? "comm_allgather_host" : "comm_allgather", i, buf[i], want);
        }
    }

    unsigned char *bytes = mallocCheck(N_BCAST);
    for (size_t i = 0; i < N_BCAST; i++) bytes[i] = r == 0 ? (unsigned char)(i * 7 + 3) : 0;
    comm_broadcast_host(c, bytes, N_BCAST);
    for (size_t i = 0; i < N_BCAST && errors < 5; i++)
        if (bytes[i] != (unsigned char)(i * 7 + 3)) errors += bad(r, "comm_broadcast_host", i, bytes[i], (unsigned char)(i * 7 + 3));
    comm_barrier(c);

    if (hub_order) { /* ranks 0, 1, 2 hold (1, 1e8), (1e8, 1), (-1e8, -1e8) */
        float y[2] = {r == 0 ? 1.0f : r == 1 ? 1e8f : -1e8f, r == 0 ? 1e8f : r == 1 ? 1.0f : -1e8f};
        comm_allreduce_sum(c, y, 2, NULL);
        if (y[0] != 0.0f) errors += bad(r, "hub sum order (1 + 1e8) - 1e8", 0, y[0], 0.0);
        if (y[1] != 0.0f) errors += bad(r, "hub sum order (1e8 + 1) - 1e8", 1, y[1], 0.0);
    }
    free(buf);
    free(bytes);
    return errors;
}

/* ---------------------------------------------------------------------------------------------
 * child processes */

typedef enum { JOIN_AND_CHECK, JOIN_AND_EXIT, JOIN_AND_SUM, JOIN_AND_WATCH, JOIN_AND_LEAVE } Job;

typedef struct {
    const char *rendezvous;
    int rank, world;
    double timeout_s;
    Job job;
} Child;

static void run_child(const Child *ch) {
    CommConfig cc = {ch->rendezvous, ch->rank, ch->world, -1, ch->timeout_s};
    Comm *c;
    char why[1024];
    if (comm_init(&c, &cc, why, sizeof why)) die("%s", why);
    int errors = 0;
    if (ch->job == JOIN_AND_EXIT) exit(0); /* without comm_free: as a crash would */
    if (ch->job == JOIN_AND_CHECK) errors = check_collectives(c, ch->rendezvous[0] && strcmp(ch->rendezvous, "mpi"));
    if (ch->job == JOIN_AND_SUM) {
        float y = 1.0f;
        comm_allreduce_sum(c, &y, 1, NULL);
    }
    if (ch->job == JOIN_AND_LEAVE) { /* two barriers, then gone without comm_free */
        comm_barrier(c);
        comm_barrier(c);
        exit(0);
    }
    if (ch->job == JOIN_AND_WATCH) { /* as the NCCL backend while it waits: rank 1 alive, then gone */
        comm_barrier(c);
        int alive = tcp_lost_peer(&c->tcp) == -1;
        comm_barrier(c);
        for (int ms = 0; ms < 5000 && tcp_lost_peer(&c->tcp) != 1; ms += 10) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (!alive) fprintf(stderr, "rank 0: tcp_lost_peer reported a rank that is alive\n");
        exit(alive && tcp_lost_peer(&c->tcp) == 1 ? 0 : 1);
    }
    comm_free(c);
    exit(errors ? 1 : 0);
}

static const char *log_path(const char *name, int rank) {
    static char buf[8][600];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 600, "%s/%s.%d.log", tmp_dir, name, rank);
    return p;
}

static pid_t start(const char *name, const Child *ch) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("test_comm: fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log_path(name, ch->rank), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        run_child(ch);
    }
    return pid;
}

/* Runs n children at once; 1 if each exited with status 0 (want_ok) or not 0, printing the logs otherwise. */
static int run_group(const char *name, const Child *ch, int n, int want_ok) {
    pid_t pid[8];
    int ok = 1;
    for (int i = 0; i < n; i++) pid[i] = start(name, &ch[i]);
    for (int i = 0; i < n; i++) {
        int status = wait_child(pid[i]);
        if ((status == 0) != want_ok) {
            char *text = check_read_text(log_path(name, ch[i].rank));
            printf("    rank %d exit status %d:\n%s\n", ch[i].rank, status, text);
            free(text);
            ok = 0;
        }
    }
    return ok;
}

static void check_message(const char *name, const char *test, int rank, const char *part) {
    char *text = check_read_text(log_path(test, rank)), detail[96];
    snprintf(detail, sizeof detail, "rank %d says '%.50s'", rank, part);
    if (!check_true(name, strstr(text, part) != NULL, detail)) printf("    its log: %s\n", text);
    free(text);
}

static const char *tcp_address(void) {
    static char buf[4][64];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 64, "tcp:127.0.0.1:%d", check_free_port());
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * cases */

static void test_world1(void) {
    CommConfig cc = {"", 0, 1, -1, 1.0};
    Comm *c;
    char why[1024];
    int ok = comm_init(&c, &cc, why, sizeof why) == 0;
    if (!check_true("world 1: joins with no rendezvous", ok, ok ? "rank 0 of 1" : why)) return;
    float buf[4] = {1, 2, 3, 4};
    double x = 5.0;
    comm_allreduce_sum(c, buf, 4, NULL);
    comm_reduce_scatter_sum(c, buf, 4, NULL);
    comm_allgather(c, buf, 4, NULL);
    comm_allgather_host(c, buf, 4);
    comm_sum_host(c, &x, 1);
    comm_broadcast_host(c, &x, sizeof x);
    comm_barrier(c);
    check_true("world 1: collectives leave buffers alone", buf[0] == 1 && buf[1] == 2 && buf[2] == 3 && buf[3] == 4 && x == 5.0,
               "values unchanged");
    check_true("world 1: rank, world, local rank", comm_rank(c) == 0 && comm_world(c) == 1 && comm_local_rank(c) == 0, "0, 1, 0");
    comm_free(c);
}

static void test_config_errors(void) {
    static const struct {
        const char *name, *rendezvous;
        int rank, world;
        const char *part;
    } cases[] = {
        {"error: unknown rendezvous", "udp:x:1", 0, 2, "rendezvous 'udp:x:1' is none of mpi, tcp:HOST:PORT, file:PATH"},
        {"error: tcp without a port", "tcp:localhost", 0, 2, "give tcp:HOST:PORT with PORT in [1, 65535]"},
        {"error: tcp port out of range", "tcp:localhost:70000", 1, 2, "give tcp:HOST:PORT with PORT in [1, 65535]"},
        {"error: file without a path", "file:", 0, 2, "file:PATH"},
        {"error: rank outside the world", "tcp:localhost:1234", 2, 2, "rank 2 is not in [0, world 2)"},
        {"error: world 2 without a rendezvous", "", 0, 2, "world 2 needs a rendezvous"},
#ifndef PATHGPT_HAVE_MPI
        {"error: mpi in a build without MPI", "mpi", 0, 2, "this build has no MPI"},
#endif
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CommConfig cc = {cases[i].rendezvous, cases[i].rank, cases[i].world, -1, 0.2};
        Comm *c;
        char why[1024] = "", detail[96];
        int rc = comm_init(&c, &cc, why, sizeof why);
        snprintf(detail, sizeof detail, "-1, reason has '%.40s'", cases[i].part);
        if (!check_true(cases[i].name, rc == -1 && strstr(why, cases[i].part), detail)) printf("    reason: %s\n", why);
    }
}

static void test_collectives(void) {
    Child ch[WORLD];
    char file_rv[600];
    snprintf(file_rv, sizeof file_rv, "file:%s/rendezvous", tmp_dir);
    const char *rvs[2] = {tcp_address(), file_rv}, *names[2] = {"tcp", "file"};
    for (int k = 0; k < 2; k++) {
        for (int r = 0; r < WORLD; r++) ch[r] = (Child){rvs[k], r, WORLD, 20.0, JOIN_AND_CHECK};
        char title[96];
        snprintf(title, sizeof title, "%s world %d: collectives exact, rank order", names[k], WORLD);
        check_true(title, run_group(names[k], ch, WORLD, 1), "all ranks exit 0");
    }
}

static void test_join_errors(void) {
    Child ch[3];
    const char *rv = tcp_address();
    ch[0] = (Child){rv, 0, 3, 1.0, JOIN_AND_CHECK};
    ch[1] = (Child){rv, 1, 3, 1.0, JOIN_AND_CHECK};
    check_true("error: a rank missing at the deadline", run_group("missing", ch, 2, 0), "ranks 0 and 1 exit 1");
    check_message("error: rank 0 names the missing rank", "missing", 0, "only 2 of 3 ranks joined");
    check_message("error: rank 0 names the missing rank", "missing", 0, "missing rank 2");
    check_message("error: the others say rank 0 gave up", "missing", 1, "gave up before the run started");

    rv = tcp_address();
    ch[0] = (Child){rv, 1, 2, 0.5, JOIN_AND_CHECK};
    check_true("error: nobody listening", run_group("unreachable", ch, 1, 0), "rank 1 exits 1");
    check_message("error: nobody listening: the reason", "unreachable", 1, "could not join rank 0");
    check_message("error: nobody listening: the reason", "unreachable", 1, "Connection refused");

    char missing_file[600];
    snprintf(missing_file, sizeof missing_file, "file:%s/never_written", tmp_dir);
    ch[0] = (Child){missing_file, 1, 2, 0.5, JOIN_AND_CHECK};
    check_true("error: no rendezvous file", run_group("no_file", ch, 1, 0), "rank 1 exits 1");
    check_message("error: no rendezvous file: the reason", "no_file", 1, "No such file or directory");

    rv = tcp_address();
    ch[0] = (Child){rv, 0, 2, 5.0, JOIN_AND_CHECK};
    ch[1] = (Child){rv, 1, 3, 5.0, JOIN_AND_CHECK};
    check_true("error: world mismatch", run_group("world", ch, 2, 0), "both exit 1");
    check_message("error: world mismatch: rank 0", "world", 0, "rank 1 joined with world 3, this rank has world 2");
    check_message("error: world mismatch: rank 1", "world", 1, "rank 0 has world 2, this rank has world 3");

    rv = tcp_address();
    ch[0] = (Child){rv, 0, 3, 5.0, JOIN_AND_CHECK};
    ch[1] = (Child){rv, 1, 3, 5.0, JOIN_AND_CHECK};
    ch[2] = (Child){rv, 1, 3, 5.0, JOIN_AND_CHECK};
    run_group("twice", ch, 3, 0);
    check_message("error: two processes as one rank", "twice", 0, "two processes joined as rank 1");

    rv = tcp_address();
    ch[0] = (Child){rv, 0, 2, 5.0, JOIN_AND_SUM};
    ch[1] = (Child){rv, 1, 2, 5.0, JOIN_AND_EXIT};
    pid_t p0 = start("lost", &ch[0]), p1 = start("lost", &ch[1]);
    int s0 = wait_child(p0), s1 = wait_child(p1);
    check_true("error: a rank exits before a collective", s0 != 0 && s1 == 0, "rank 0 exits 1, rank 1 0");
    check_message("error: the survivor names the rank and call", "lost", 0,
                  "rank 0: comm_allreduce_sum: rank 1 closed its connection");

    rv = tcp_address();
    ch[0] = (Child){rv, 0, 2, 5.0, JOIN_AND_WATCH};
    ch[1] = (Child){rv, 1, 2, 5.0, JOIN_AND_LEAVE};
    check_true("tcp_lost_peer: alive, then gone", run_group("watch", ch, 2, 1), "-1 while rank 1 runs, then 1");
}

/* ---------------------------------------------------------------------------------------------
 * MPI: this program again, under mpirun, as WORLD workers */

static void test_mpi(void) {
#ifndef PATHGPT_HAVE_MPI
    check_skip("mpi world 3", "this build has no MPI (see make's MPI line)");
#else
    FILE *p = popen("mpirun --version 2>&1", "r");
    char out[512] = "", self[512], cmd[2048];
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    if (status != 0 || !strstr(out, "Open MPI")) {
        if (getenv("CI")) check_true("mpirun in CI (.ci/run installs Open MPI)", 0, "no Open MPI mpirun");
        else check_skip("mpi world 3", status ? "no mpirun on the PATH" : "mpirun is not Open MPI's (this test passes its flags)");
        return;
    }
    /* containers often forbid the cross-memory attach (ptrace) that Open MPI's shared-memory transport
     * uses for large messages; copying through shared memory works everywhere */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) die("test_comm: cannot find its own executable: %s", strerror(errno));
    self[len] = '\0';
    snprintf(cmd, sizeof cmd, "mpirun --allow-run-as-root --oversubscribe --bind-to none -np %d '%s' --mpi-worker > '%s/mpi.log' 2>&1",
             WORLD, self, tmp_dir);
    int rc = system(cmd);
    char path[600];
    snprintf(path, sizeof path, "%s/mpi.log", tmp_dir);
    if (!check_true("mpi world 3: every collective exact", rc == 0, "mpirun -np 3 exits 0")) {
        char *text = check_read_text(path);
        printf("    %s:\n%s\n", path, text);
        free(text);
    }
#endif
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--mpi-worker") == 0) {
        util_set_progname("test_comm");
        Child ch = {"", 0, 1, 20.0, JOIN_AND_CHECK}; /* under mpirun "" means mpi; rank and world are MPI's */
        run_child(&ch);
    }
    util_set_progname("test_comm");
    if (!mkdtemp(tmp_dir)) die("test_comm: cannot create a temporary directory: %s", strerror(errno));
    test_world1();
    test_config_errors();
    test_collectives();
    test_join_errors();
    test_mpi();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) warn("could not remove %s", tmp_dir);
    return check_finish();
}
