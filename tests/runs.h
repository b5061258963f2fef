/* runs.h: for the tests that run a trainer (./train_cpu, ./train) as child processes and judge what the
 * runs leave behind: a temporary directory for their logs and checkpoints, argument lists, starting a
 * program with its output in a log, and check lines (check.h) on checkpoint files (model/checkpoint.h)
 * and on log text.
 * Names: a run called NAME writes its output to runs_log(NAME) = DIR/NAME.log and, given
 * --ckpt-dir runs_path(NAME), its checkpoints to runs_ckpt(NAME, step) = DIR/NAME/ckpt_<step>.bin, so a
 * case refers to its runs by name. The path functions return one of 16 rotating buffers: a caller holds
 * at most 16 of their results at once.
 * used by: tests/test_data_parallel.c (./train_cpu in several processes), tests/test_train_gpu.c (./train). */
#ifndef PATHGPT_TESTS_RUNS_H
#define PATHGPT_TESTS_RUNS_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* an argument vector, NULL-terminated */
typedef struct {
    const char *v[128];
    int n;
} RunArgs;

/* Creates DIR = /tmp/<test>.XXXXXX; test also names the program in its error messages. Exits on failure. */
void runs_init(const char *test);
/* Removes DIR and everything in it (a warning if that fails). */
void runs_cleanup(void);

const char *runs_path(const char *name);          /* DIR/name */
const char *runs_log(const char *run);            /* DIR/run.log */
const char *runs_ckpt(const char *run, int step); /* DIR/run/ckpt_<step, 8 digits>.bin, as train.c names them */

/* appends the NULL-terminated list (may be NULL) to a */
void runs_add(RunArgs *a, const char *const *list);
/* starts a->v[0] (looked up on the PATH) with stdout and stderr into log; its pid */
pid_t runs_spawn(const RunArgs *a, const char *log);
/* whether status is the one wanted (want_zero: 0, else not 0); if not, prints it and the log's text */
int runs_expect_status(const char *log, int status, int want_zero);

/* the whole file (malloc'd, *n bytes), or NULL if it cannot be read */
unsigned char *runs_read_bytes(const char *path, size_t *n);

/* check lines on checkpoint files a and b */
/* byte for byte */
void runs_check_same_file(const char *name, const char *a, const char *b);
/* the headers equal but for the checksum slot (which covers the body): config, training shape, step,
 * data position */
void runs_check_same_header(const char *name, const char *a, const char *b);
/* parameters, AdamW m and AdamW v within bar (relative RMS, one line each), after a line requiring both
 * files, the same parameter count and the same step; the headers may differ otherwise (batch, world) */
void runs_check_close_state(const char *name, const char *a, const char *b, double bar);

/* check line: the log of run contains part */
void runs_check_log_has(const char *name, const char *run, const char *part);

#ifdef __cplusplus
}
#endif
#endif
