/* test_train_gpu.c: the GPU trainer end to end: runs ./train (make train: train.c with model/gpt_gpu.c)
 * as child processes and compares the checkpoints they write (model/checkpoint.h: parameters, AdamW m
 * and v, data position).
 *   resume        every attention type, on the flip-flop task (width 64, 2 heads: head dim 32, T 100, not
 *                 a multiple of the kernels' 64-token blocks) and on a shard written here (width 128: head
 *                 dim 64, T 64); 2 layers, 2 rows, gradient accumulation 2, clipping active, evaluation
 *                 and sampling every 2 steps: 4 steps straight = 2 steps + --resume + 2 steps
 *   mid-run save  the same 4 steps with --ckpt-every 2 and without end in the same step-4 checkpoint
 *                 Both byte for byte where the attention has no Householder factors (learned, rope, nope,
 *                 fox: kernels/path_attn_flash.cu's backward adds without atomics, and so does every other
 *                 kernel); with them (path, path-fox) the attention backward adds with f32 atomics, so runs
 *                 agree up to summation order: parameters, m and v within ATOMIC_BAR, and the headers (step,
 *                 data position, config) identical.
 *   errors        a non-zero exit, a message naming the problem and nothing left in --ckpt-dir, for: a batch
 *                 that does not fit in GPU memory (the message names --batch and --seq-len), resuming a
 *                 checkpoint of another width, a --train-data glob that matches no file, and head dim 24
 *                 (the GPU kernels take 32, 64 or 128)
 * Bars: ATOMIC_BAR = 1e-3 (relative RMS). The resumed run repeats steps 3 and 4 from the same bits (the run
 * without a mid-run save: all 4 steps); only the order of the attention backward's atomic adds differs, so
 * the gradients differ by f32 rounding of those sums (tests/test_gpt_gpu.cu holds a repeated backward to
 * 1e-4, ACCUM_BAR), which AdamW passes on about one for one to m, v and the updates. A resume that trains
 * steps 3 and 4 on the wrong data moves the parameters by 6e-3, m by 1e-1 and v by 9e-2 (measured with
 * train_cpu on the flip-flop case's flags); the step and the data position are compared exactly.
 * Everything else is exact.
 * Skips: without ./train (make train needs nvcc) or without a CUDA device (a one-step run of ./train
 * says "no CUDA device") it prints a skip line. Every child is killed after CHILD_TIMEOUT_S. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/rng.h"
#include "../common/util.h"
#include "../data/shard.h"
#include "../model/config.h"
#include "check.h"
#include "runs.h"

#define TRAIN "./train"
#define ATOMIC_BAR 1e-3
#define CHILD_TIMEOUT_S 120

/* ./train with flags base + extra + more (each NULL-terminated, or NULL); its exit status; the output goes
 * to runs_log(name) */
static int train_status(const char *name, const char *const *base, const char *const *extra, const char *const *more) {
    RunArgs a = {.n = 0};
    runs_add(&a, (const char *const[]){TRAIN, NULL});
    runs_add(&a, base);
    runs_add(&a, extra);
    runs_add(&a, more);
    return check_wait_child(runs_spawn(&a, runs_log(name)), CHILD_TIMEOUT_S);
}

/* ./train with flags base + extra: 1 if it exited as wanted (want_zero: with status 0, else not 0), else 0
 * after printing its log */
static int train(const char *name, const char *const *base, const char *const *extra, int want_zero) {
    return runs_expect_status(runs_log(name), train_status(name, base, extra, NULL), want_zero);
}

/* ---------------------------------------------------------------------------------------------
 * resume and mid-run saves */

/* the flags shared by the flip-flop runs, but for --attn, --width and the checkpoint flags (main has the
 * shards' twin) */
static const char *const flipflop[] = {
    "--layers", "2", "--heads", "2", "--seq-len", "100", "--batch", "2", "--grad-accum", "2", "--steps", "4",
    "--warmup", "1", "--lr", "1e-2", "--min-lr", "1e-3", "--clip", "0.5", "--eval-every", "2", "--sample-every",
    "2", "--ff-eval-id", "2", "--ff-eval-sparse", "2", "--ff-eval-dense", "2", NULL};

/* straight (4 steps, checkpoints at 2 and 4), resumed (from straight's step 2), nosave (4 steps, one
 * checkpoint at the end): the step-4 files must agree */
static void case_resume(const char *tag, const char *const *base, const char *width, AttnType attn) {
    const char *name = attn_type_name(attn);
    int exact = !attn_uses_path(attn);
    char straight[64], resumed[64], nosave[64], title[128];
    snprintf(straight, sizeof straight, "%s_%s_straight", tag, name);
    snprintf(resumed, sizeof resumed, "%s_%s_resumed", tag, name);
    snprintf(nosave, sizeof nosave, "%s_%s_nosave", tag, name);
    int ok = train(straight, base, (const char *const[]){"--attn", name, "--width", width, "--ckpt-every", "2",
                                                         "--ckpt-dir", runs_path(straight), NULL}, 1);
    ok &= train(resumed, base, (const char *const[]){"--attn", name, "--width", width, "--ckpt-every", "2",
                                                     "--ckpt-dir", runs_path(resumed), "--resume",
                                                     runs_ckpt(straight, 2), NULL}, 1);
    ok &= train(nosave, base, (const char *const[]){"--attn", name, "--width", width, "--ckpt-dir", runs_path(nosave),
                                                    NULL}, 1);
    snprintf(title, sizeof title, "%s %s: straight, resumed, no mid-run save", tag, name);
    check_true(title, ok, "every run exits 0");
    for (int k = 0; k < 2; k++) {
        const char *other = k ? nosave : resumed;
        snprintf(title, sizeof title, "%s %s: %s", tag, name, k ? "a mid-run save changes nothing" : "2 + resume + 2 = 4 steps");
        if (exact) {
            runs_check_same_file(title, runs_ckpt(other, 4), runs_ckpt(straight, 4));
            continue;
        }
        runs_check_same_header(title, runs_ckpt(other, 4), runs_ckpt(straight, 4));
        runs_check_close_state(title, runs_ckpt(other, 4), runs_ckpt(straight, 4), ATOMIC_BAR);
    }
}

/* ---------------------------------------------------------------------------------------------
 * user errors */

/* entries of a directory other than . and ..; 0 if it does not exist */
static int dir_entries(const char *path) {
    DIR *d = opendir(path);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* run name with flags base + extra + --ckpt-dir runs_path(name): a non-zero exit, a message with part
 * (and with part2 unless NULL), and no file in the checkpoint directory */
static void case_error(const char *what, const char *name, const char *const *base, const char *const *extra,
                       const char *part, const char *part2) {
    char title[128], detail[64];
    const char *dir = runs_path(name);
    int status = train_status(name, base, extra, (const char *const[]){"--ckpt-dir", dir, NULL});
    snprintf(title, sizeof title, "error: %s", what);
    check_true(title, runs_expect_status(runs_log(name), status, 0), "exit status not 0");
    snprintf(title, sizeof title, "error: %s: the message", what);
    runs_check_log_has(title, name, part);
    if (part2) runs_check_log_has(title, name, part2);
    int n = dir_entries(dir);
    snprintf(title, sizeof title, "error: %s: --ckpt-dir", what);
    snprintf(detail, sizeof detail, "no file left (%d)", n);
    check_true(title, n == 0, detail);
}

static void case_errors(void) {
    /* 16.8M tokens: one bf16 activation of width 512 takes 17 GB, and a layer keeps over a dozen */
    static const char *const huge[] = {"--attn", "learned", "--layers", "2", "--width", "512", "--heads", "8",
                                       "--batch", "4096", "--seq-len", "4096", "--steps", "1", NULL};
    case_error("batch too large for GPU memory", "err_memory", huge, NULL, "out of GPU memory",
               "lower --batch or --seq-len");
    case_error("resume a checkpoint of another width", "err_resume", flipflop,
               (const char *const[]){"--attn", "learned", "--width", "128", "--resume",
                                     runs_ckpt("flipflop_learned_straight", 2), NULL},
               "checkpoint has n_embd 64, this run has 128", NULL);
    case_error("--train-data matches no file", "err_shards", NULL,
               (const char *const[]){"--train-data", runs_path("missing_*.bin"), "--vocab", "50", "--attn", "learned",
                                     "--seq-len", "64", NULL}, "no files match", NULL);
    case_error("head dim 24 (width 48, 2 heads)", "err_head_dim", flipflop,
               (const char *const[]){"--attn", "learned", "--width", "48", NULL}, "head dim 24",
               "(32, 64 or 128)");
}

/* ---------------------------------------------------------------------------------------------
 * main */

/* 1 if ./train trains one step here; else 0 after a skip line (no ./train, no CUDA device) or a failed check */
static int gpu_available(void) {
    if (access(TRAIN, X_OK) != 0) {
        check_skip("test_train_gpu", "./train is missing (make train; it needs nvcc, the CUDA compiler)");
        return 0;
    }
    static const char *const one_step[] = {"--attn", "learned", "--steps", "1", "--seq-len", "64", "--batch", "1",
                                           "--eval-every", "0", "--sample-every", "0", "--ff-eval-id", "1",
                                           "--ff-eval-sparse", "1", "--ff-eval-dense", "1", NULL};
    int status = train_status("probe", one_step, NULL, NULL);
    char *text = check_read_text(runs_log("probe")), *no_device = strstr(text, "no CUDA device");
    if (status != 0 && no_device) {
        char why[256];
        snprintf(why, sizeof why, "%.*s", (int)strcspn(no_device, ":\n"), no_device);
        check_skip("test_train_gpu", why);
    } else {
        check_true("./train: one step on the GPU", status == 0, "exit status 0");
        if (status != 0) printf("    exit status %d; %s:\n%s\n", status, runs_log("probe"), text);
    }
    free(text);
    return status == 0;
}

int main(void) {
    runs_init("test_train_gpu");
    if (gpu_available()) {
        enum { N_TOKENS = 4000, VOCAB = 50 };
        uint16_t tokens[N_TOKENS];
        Rng r;
        rng_init(&r, 7);
        for (int i = 0; i < N_TOKENS; i++) tokens[i] = (uint16_t)rng_below(&r, VOCAB);
        if (shard_write(runs_path("tokens_000.bin"), tokens, N_TOKENS) != 0) die("test_train_gpu: cannot write a shard");
        char pattern[600];
        snprintf(pattern, sizeof pattern, "%s", runs_path("tokens_*.bin"));
        const char *const shards[] = {
            "--train-data", pattern, "--val-data", pattern, "--val-batches", "2", "--vocab", "50", "--layers", "2",
            "--heads", "2", "--seq-len", "64", "--batch", "2", "--grad-accum", "2", "--steps", "4", "--warmup", "1",
            "--lr", "1e-2", "--min-lr", "1e-3", "--clip", "0.5", "--eval-every", "2", "--sample-every", "2", NULL};
        for (int a = 0; a < ATTN_COUNT; a++) case_resume("flipflop", flipflop, "64", (AttnType)a);
        for (int a = 0; a < ATTN_COUNT; a++) case_resume("shards", shards, "128", (AttnType)a);
        case_errors();
    }
    runs_cleanup();
    return check_finish();
}
