/* runs.c: see runs.h. */
#include "runs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/util.h"
#include "../model/checkpoint.h"
#include "check.h"

#define CHECKSUM_SLOT 2 /* model/checkpoint.h: magic, version, checksum, n_params, step, ... */

static const char *test_name = "runs";
static char dir[512];

void runs_init(const char *test) {
    test_name = test;
    snprintf(dir, sizeof dir, "/tmp/%s.XXXXXX", test);
    if (!mkdtemp(dir)) die("%s: cannot create a temporary directory: %s", test, strerror(errno));
}

void runs_cleanup(void) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) warn("could not remove %s", dir);
}

static char *next_buffer(void) {
    static char buf[16][600];
    static int next;
    return buf[next++ % 16];
}

const char *runs_path(const char *name) {
    char *p = next_buffer();
    snprintf(p, 600, "%s/%s", dir, name);
    return p;
}

const char *runs_log(const char *run) {
    char *p = next_buffer();
    snprintf(p, 600, "%s/%s.log", dir, run);
    return p;
}

const char *runs_ckpt(const char *run, int step) {
    char *p = next_buffer();
    snprintf(p, 600, "%s/%s/ckpt_%08d.bin", dir, run, step);
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * child processes */

void runs_add(RunArgs *a, const char *const *list) {
    for (int i = 0; list && list[i]; i++) a->v[a->n++] = list[i];
    a->v[a->n] = NULL;
}

pid_t runs_spawn(const RunArgs *a, const char *log) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("%s: fork: %s", test_name, strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execvp(a->v[0], (char *const *)a->v);
        fprintf(stderr, "cannot run %s: %s\n", a->v[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int runs_expect_status(const char *log, int status, int want_zero) {
    int ok = want_zero ? status == 0 : status != 0;
    if (!ok) {
        char *text = check_read_text(log);
        printf("    exit status %d; %s:\n%s\n", status, log, text);
        free(text);
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * checkpoints and logs */

unsigned char *runs_read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = mallocCheck(*n ? *n : 1);
    size_t got = fread(b, 1, *n, fp);
    fclose(fp);
    if (got != *n) {
        free(b);
        return NULL;
    }
    return b;
}

void runs_check_same_file(const char *name, const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = runs_read_bytes(a, &na), *y = runs_read_bytes(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    check_true(name, same, x && y ? "checkpoints byte-identical" : "both checkpoints exist");
    if (!x || !y) printf("    missing: %s\n", !x ? a : b);
    free(x);
    free(y);
}

void runs_check_same_header(const char *name, const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = runs_read_bytes(a, &na), *y = runs_read_bytes(b, &nb);
    int whole = x && y && na >= CHECKPOINT_SLOTS * 8 && nb >= CHECKPOINT_SLOTS * 8, first = -1;
    for (int s = 0; whole && s < CHECKPOINT_SLOTS && first < 0; s++)
        if (s != CHECKSUM_SLOT && memcmp(x + 8 * s, y + 8 * s, 8) != 0) first = s;
    check_true(name, whole && first < 0, whole ? "headers equal but the checksum" : "both checkpoints exist");
    if (!whole) printf("    missing or shorter than a header: %s\n", !x || na < CHECKPOINT_SLOTS * 8 ? a : b);
    if (first >= 0) printf("    first different slot: %d (model/checkpoint.h's order)\n", first);
    free(x);
    free(y);
}

void runs_check_close_state(const char *name, const char *a, const char *b, double bar) {
    static const char *what[3] = {"parameters", "AdamW m", "AdamW v"};
    CheckpointHeader ha, hb;
    char why[1024];
    size_t na = 0, nb = 0;
    unsigned char *x = runs_read_bytes(a, &na), *y = runs_read_bytes(b, &nb);
    int ok = x && y && !checkpoint_read_header(a, &ha, why, sizeof why) && !checkpoint_read_header(b, &hb, why, sizeof why) &&
             ha.n_params == hb.n_params && ha.step == hb.step;
    if (!check_true(name, ok, "both checkpoints, same size and step")) {
        free(x);
        free(y);
        return;
    }
    size_t n = ha.n_params;
    for (int k = 0; k < 3; k++) {
        char full[128];
        float *fa = mallocCheck(sizeof(float) * n), *fb = mallocCheck(sizeof(float) * n);
        memcpy(fa, x + CHECKPOINT_SLOTS * 8 + k * n * sizeof(float), sizeof(float) * n);
        memcpy(fb, y + CHECKPOINT_SLOTS * 8 + k * n * sizeof(float), sizeof(float) * n);
        snprintf(full, sizeof full, "%s: %s", name, what[k]);
        check_value(full, "rel_rms", rel_rms_f(fa, fb, n), bar);
        free(fa);
        free(fb);
    }
    free(x);
    free(y);
}

void runs_check_log_has(const char *name, const char *run, const char *part) {
    const char *path = runs_log(run);
    char *text = check_read_text(path);
    char detail[96];
    snprintf(detail, sizeof detail, "message has '%.60s'", part);
    if (!check_true(name, strstr(text, part) != NULL, detail)) printf("    %s:\n%s\n", path, text);
    free(text);
}
