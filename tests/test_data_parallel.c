/* test_data_parallel.c: data-parallel training end to end: runs ./train_cpu (built by `make test`) as
 * separate processes, over each transport of comm/comm.h, and compares the checkpoints they write
 * (model/checkpoint.h: parameters, AdamW m and v, data position).
 *   doubled batch  2 ranks x B rows = 1 process x 2B rows after K = 4 steps (gradient accumulation 2,
 *                  clipping active), on the flip-flop task and on shards: parameters, m and v within
 *                  DOUBLED_BAR (relative RMS), under mpirun -np 2 and over tcp
 *   transports     2 processes over tcp:127.0.0.1:PORT, over file:PATH and under mpirun -np 2: the
 *                  same file byte for byte (2 ranks: x0 + x1 in every transport), so also repeatable
 *   overlap        the default --overlap 1 (each layer's gradients summed as backward finishes them,
 *                  gpt_set_grad_ready) = --overlap 0 (the whole buffer after backward), byte for byte: the
 *                  same sums of the same numbers; over tcp and under mpirun
 *   ZeRO-1         --zero 1 = --zero 0, byte for byte with clipping off (--clip 0): AdamW is elementwise
 *                  and the moments are gathered before each checkpoint; with clipping on, within
 *                  ZERO_CLIP_BAR, as ZeRO-1's norm adds the shards' sums of squares (another order than
 *                  one sum over all) and may differ in its last bits, and so may the clip factor; over
 *                  tcp and under mpirun. Memory: rank 0's --log reports AdamW moments of 2 x 4 S bytes
 *                  with --zero 1 (S = shard_size(n): train.c's), 2 x 4 n without
 *   resume         2 steps + --resume + 2 steps = 4 steps in 2 processes, byte for byte, with and
 *                  without ZeRO-1; resuming a world-2 checkpoint in one process is refused naming the
 *                  worlds
 *   errors         --world 2 with no rendezvous; --world 3 under mpirun -np 2
 * Bars: ZERO_CLIP_BAR = 1e-6 (relative RMS): a clip factor one ulp (1.2e-7) off scales one step's
 * gradients, which AdamW mostly divides out (m / sqrt(v)) (measured 0: the norms agreed); a norm from one
 * rank's shard alone gives 5e-3 to 2e-2 in the parameters. DOUBLED_BAR = 1e-5. Two ranks add their
 * halves of the batch separately and then add the two sums; one process adds all rows in one order:
 * fp32 sums of the same terms in another order, relative
 * differences ~1e-7 per gradient element, which AdamW passes on to the few steps' updates (measured
 * 4e-8 to 3e-7 relative RMS; a wrong gradient scale, a missing or doubled rank gives 1e-2 and more).
 * Everything else is exact. Without mpirun (Open MPI's, whose flags this test passes) or a build with
 * MPI, the mpirun cases skip with the reason; in CI (CI set) that is a failure, as .ci/run installs
 * Open MPI. Every child is killed after CHILD_TIMEOUT_S. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../data/shard.h"
#include "check.h"
#include "runs.h"

#define TRAIN "./train_cpu"
#define DOUBLED_BAR 1e-5
#define ZERO_CLIP_BAR 1e-6
#define CHILD_TIMEOUT_S 120
static int wait_child(pid_t pid) { return check_wait_child(pid, CHILD_TIMEOUT_S); }

/* ---------------------------------------------------------------------------------------------
 * child processes (tests/runs.h: the temporary directory, spawning, logs, checkpoint checks) */

typedef enum { VIA_ONE, VIA_MPI, VIA_TCP, VIA_FILE } Via;

static int have_mpirun; /* Open MPI's mpirun, and a train_cpu built with MPI */

/* train_cpu with flags base + extra, as one process or two; 1 if every process exited as wanted
 * (want_zero: with status 0, else not 0); the output goes to runs_log(name) (and runs_log("<name>.1"): rank 1). */
static int train(const char *name, Via via, const char *const *base, const char *const *extra, int want_zero) {
    static const char *const mpirun[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                                         "-np", "2", NULL};
    char name1[128], rendezvous_file[128], rv[700], rank[2][8] = {"0", "1"};
    snprintf(name1, sizeof name1, "%s.1", name);
    snprintf(rendezvous_file, sizeof rendezvous_file, "%s.rendezvous", name);
    const char *log = runs_log(name), *log1 = runs_log(name1);
    if (via == VIA_TCP) snprintf(rv, sizeof rv, "tcp:127.0.0.1:%d", check_free_port());
    if (via == VIA_FILE) snprintf(rv, sizeof rv, "file:%s", runs_path(rendezvous_file));
    int n_procs = via == VIA_TCP || via == VIA_FILE ? 2 : 1, ok = 1;
    pid_t pid[2];
    for (int p = 0; p < n_procs; p++) {
        RunArgs a = {.n = 0};
        if (via == VIA_MPI) runs_add(&a, mpirun);
        runs_add(&a, (const char *const[]){TRAIN, NULL});
        runs_add(&a, base);
        runs_add(&a, extra);
        if (n_procs == 2) runs_add(&a, (const char *const[]){"--world", "2", "--rank", rank[p], "--rendezvous", rv,
                                                             "--join-timeout", "30", NULL});
        pid[p] = runs_spawn(&a, p ? log1 : log);
    }
    for (int p = 0; p < n_procs; p++) ok &= runs_expect_status(p ? log1 : log, wait_child(pid[p]), want_zero);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * cases */

/* base with "--clip" "0" in place of its --clip value, in out (at most 64 entries) */
static const char *const *clip_off(const char *const *base, const char *out[64]) {
    int n = 0;
    for (; base[n]; n++) out[n] = n > 0 && strcmp(base[n - 1], "--clip") == 0 ? "0" : base[n];
    out[n] = NULL;
    return out;
}

/* the number after " key=" in the file at path (its first occurrence), or -1 */
static long long log_number(const char *path, const char *key) {
    char *text = check_read_text(path), pattern[64];
    snprintf(pattern, sizeof pattern, " %s=", key);
    const char *at = strstr(text, pattern);
    long long value = at ? strtoll(at + strlen(pattern), NULL, 10) : -1;
    free(text);
    return value;
}

/* ZeRO-1's parameters per rank for n parameters and 2 ranks: train.c's shard_size */
static long long shard_of_two(long long n) { return ((n + 1) / 2 + 63) / 64 * 64; }

/* the AdamW moment bytes rank 0's --log file at log reports, against 2 x 4 x the parameters it holds
 * them for: all n, or (zero) the shard */
static void check_moment_bytes(const char *title, const char *log, int zero) {
    long long n = log_number(log, "n_params"), bytes = log_number(log, "moment_bytes");
    long long want = 8 * (zero ? shard_of_two(n) : n);
    char detail[128];
    snprintf(detail, sizeof detail, "moment_bytes %lld, want %lld (n_params %lld)", bytes, want, n);
    check_true(title, n > 0 && bytes == want, detail);
}

/* The runs over one transport (2 processes x 2 rows): plain, --overlap 0, ZeRO-1 with clipping off and
 * on (and plain with it off), against one process x 4 rows (run `one`) and each other; same_as: the
 * plain tcp run, which this one must equal byte for byte (NULL: none). The plain run's name goes to
 * plain (unless NULL). */
static void transport_cases(const char *tag, Via via, const char *how, const char *const *base, const char *one,
                            const char *same_as, char plain[64]) {
    char name[5][64], title[128], kv[64], log[2][600]; /* --log files of the runs without and with ZeRO-1 */
    for (int i = 0; i < 5; i++) snprintf(name[i], sizeof name[i], "%s_%s_%d", tag, how, i);
    for (int zero = 0; zero < 2; zero++) {
        snprintf(kv, sizeof kv, "%s_%s_zero%d.kv", tag, how, zero);
        snprintf(log[zero], sizeof log[zero], "%s", runs_path(kv));
    }
    const char *noclip[64];
    clip_off(base, noclip);
    int ok = train(name[0], via, base,
                   (const char *const[]){"--batch", "2", "--ckpt-dir", runs_path(name[0]), "--log", log[0], NULL}, 1);
    snprintf(title, sizeof title, "%s: %s, 2 x 2 rows runs", tag, how);
    check_true(title, ok, "both ranks exit 0");
    snprintf(title, sizeof title, "%s: %s 2 x 2 rows = 1 x 4 rows", tag, how);
    runs_check_close_state(title, runs_ckpt(name[0], 4), runs_ckpt(one, 4), DOUBLED_BAR);
    if (same_as) {
        snprintf(title, sizeof title, "%s: %s = tcp", tag, how);
        runs_check_same_file(title, runs_ckpt(name[0], 4), runs_ckpt(same_as, 4));
    }
    train(name[1], via, base, (const char *const[]){"--batch", "2", "--overlap", "0", "--ckpt-dir", runs_path(name[1]), NULL},
          1);
    snprintf(title, sizeof title, "%s: %s --overlap 1 = --overlap 0", tag, how);
    runs_check_same_file(title, runs_ckpt(name[0], 4), runs_ckpt(name[1], 4));
    /* ZeRO-1 against ZeRO off: byte for byte without clipping; with clipping the norm's last bits may differ */
    train(name[2], via, noclip, (const char *const[]){"--batch", "2", "--ckpt-dir", runs_path(name[2]), NULL}, 1);
    train(name[3], via, noclip, (const char *const[]){"--batch", "2", "--zero", "1", "--ckpt-dir", runs_path(name[3]), NULL},
          1);
    snprintf(title, sizeof title, "%s: %s ZeRO-1 = ZeRO off, --clip 0", tag, how);
    runs_check_same_file(title, runs_ckpt(name[3], 4), runs_ckpt(name[2], 4));
    train(name[4], via, base,
          (const char *const[]){"--batch", "2", "--zero", "1", "--ckpt-dir", runs_path(name[4]), "--log", log[1], NULL}, 1);
    snprintf(title, sizeof title, "%s: %s ZeRO-1 ~ ZeRO off, clipping", tag, how);
    runs_check_close_state(title, runs_ckpt(name[4], 4), runs_ckpt(name[0], 4), ZERO_CLIP_BAR);
    snprintf(title, sizeof title, "%s: %s ZeRO-1 moments per rank 1/2", tag, how);
    check_moment_bytes(title, log[1], 1);
    snprintf(title, sizeof title, "%s: %s ZeRO off moments per rank all", tag, how);
    check_moment_bytes(title, log[0], 0);
    if (plain) snprintf(plain, 64, "%s", name[0]);
}

/* one family of runs (flip-flop or shards): one process x 4 rows, then each transport */
static void case_family(const char *tag, const char *const *base) {
    char one[64], file[64], title[128], tcp_plain[64];
    snprintf(one, sizeof one, "%s_one", tag);
    snprintf(file, sizeof file, "%s_file", tag);
    train(one, VIA_ONE, base, (const char *const[]){"--batch", "4", "--ckpt-dir", runs_path(one), NULL}, 1);
    transport_cases(tag, VIA_TCP, "tcp", base, one, NULL, tcp_plain);
    train(file, VIA_FILE, base, (const char *const[]){"--batch", "2", "--ckpt-dir", runs_path(file), NULL}, 1);
    snprintf(title, sizeof title, "%s: file rendezvous = tcp", tag);
    runs_check_same_file(title, runs_ckpt(file, 4), runs_ckpt(tcp_plain, 4));
    snprintf(title, sizeof title, "%s: mpirun -np 2", tag);
    if (!have_mpirun) {
        check_skip(title, "no Open MPI mpirun, or train_cpu built without MPI");
        return;
    }
    transport_cases(tag, VIA_MPI, "mpirun", base, one, tcp_plain, NULL);
}

static const char *const flipflop[] = {
    "--seq-len", "16", "--width", "16", "--grad-accum", "2", "--steps", "4", "--warmup", "1", "--lr", "1e-2", "--clip",
    "0.5", "--eval-every", "0", "--sample-every", "0", "--ff-eval-id", "2", "--ff-eval-sparse", "2", "--ff-eval-dense",
    "2", "--ckpt-every", "2", NULL};

/* 2 steps, resume, 2 steps = 4 steps, in two processes (mpirun, else tcp), with and without ZeRO-1 */
static void case_resume(void) {
    Via via = have_mpirun ? VIA_MPI : VIA_TCP;
    const char *how = have_mpirun ? "mpirun" : "tcp";
    char title[128];
    for (int zero = 0; zero < 2; zero++) {
        const char *straight = zero ? "resume_z_a" : "resume_a", *resumed = zero ? "resume_z_b" : "resume_b";
        const char *z = zero ? "1" : "0";
        train(straight, via, flipflop, (const char *const[]){"--batch", "2", "--zero", z, "--ckpt-dir", runs_path(straight), NULL}, 1);
        train(resumed, via, flipflop, (const char *const[]){"--batch", "2", "--zero", z, "--ckpt-dir", runs_path(resumed),
                                                            "--resume", runs_ckpt(straight, 2), NULL}, 1);
        snprintf(title, sizeof title, "resume %s%s: 2 + load + 2 = 4 steps", how, zero ? " ZeRO-1" : "");
        runs_check_same_file(title, runs_ckpt(resumed, 4), runs_ckpt(straight, 4));
    }
    int refused = train("resume_world1", VIA_ONE, flipflop, (const char *const[]){"--batch", "2", "--resume",
                                                                                  runs_ckpt("resume_a", 2), NULL}, 0);
    check_true("resume: world 2 checkpoint in one process refused", refused, "exit status not 0");
    runs_check_log_has("resume: the message names both worlds", "resume_world1", "run of world 2 (processes), this run has world 1");
}

static void case_errors(void) {
    int refused = train("no_rendezvous", VIA_ONE, flipflop, (const char *const[]){"--world", "2", NULL}, 0);
    check_true("error: --world 2 without a rendezvous", refused, "exit status not 0");
    runs_check_log_has("error: the message says what to give", "no_rendezvous", "world 2 needs a rendezvous");
    if (!have_mpirun) {
        check_skip("error: --world 3 under mpirun -np 2", "no Open MPI mpirun, or train_cpu built without MPI");
        return;
    }
    refused = train("mpi_world", VIA_MPI, flipflop, (const char *const[]){"--world", "3", NULL}, 0);
    check_true("error: --world 3 under mpirun -np 2", refused, "exit status not 0");
    runs_check_log_has("error: the message names MPI's world", "mpi_world", "MPI made this rank");
}

/* Open MPI's mpirun on the PATH and a train_cpu built with MPI; else why not in why */
static int find_mpirun(char *why, size_t len) {
#ifndef PATHGPT_HAVE_MPI
    snprintf(why, len, "this build has no MPI (see make's MPI line)");
    return 0;
#else
    FILE *p = popen("mpirun --version 2>&1", "r");
    char out[512] = "";
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    if (status != 0) snprintf(why, len, "no mpirun on the PATH");
    else if (!strstr(out, "Open MPI")) snprintf(why, len, "mpirun is not Open MPI's (this test passes Open MPI's flags)");
    return status == 0 && strstr(out, "Open MPI") != NULL;
#endif
}

int main(void) {
    runs_init("test_data_parallel");
    if (access(TRAIN, X_OK) != 0) die("test_data_parallel: %s is missing (make train_cpu; run from the repository root)", TRAIN);
    setenv("OMP_NUM_THREADS", "1", 1); /* two ranks on a small machine: no oversubscribed thread teams */
    /* containers often forbid the cross-memory attach (ptrace) that Open MPI's shared-memory transport
     * uses for large messages; copying through shared memory works everywhere */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    char why[256] = "";
    have_mpirun = find_mpirun(why, sizeof why);
    if (!have_mpirun && getenv("CI")) check_true("mpirun in CI (.ci/run installs Open MPI)", 0, why);
    else if (!have_mpirun) printf("note: mpirun cases skip: %s\n", why);

    case_family("flipflop", flipflop);
    enum { N_TOKENS = 4000, VOCAB = 50 };
    uint16_t tokens[N_TOKENS];
    Rng r;
    rng_init(&r, 7);
    for (int i = 0; i < N_TOKENS; i++) tokens[i] = (uint16_t)rng_below(&r, VOCAB);
    if (shard_write(runs_path("tokens_000.bin"), tokens, N_TOKENS) != 0) die("test_data_parallel: cannot write a shard");
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s", runs_path("tokens_*.bin"));
    const char *const shards[] = {
        "--train-data", pattern, "--vocab", "50", "--attn", "path-fox", "--seq-len", "16", "--width", "16",
        "--grad-accum", "2", "--steps", "4", "--warmup", "1", "--lr", "1e-2", "--clip", "0.5", "--eval-every", "0",
        "--sample-every", "0", NULL};
    case_family("shards", shards);
    case_resume();
    case_errors();
    runs_cleanup();
    return check_finish();
}
