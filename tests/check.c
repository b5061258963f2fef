/* check.c: see check.h. */
#include "check.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"

static int n_passed, n_failed, n_skipped;

int check_value(const char *name, const char *metric, double value, double bar) {
    int ok = value <= bar && !isnan(value);
    printf("%-44s %-10s %9.3e  bar %8.2e  %s\n", name, metric, value, bar, ok ? "ok" : "FAIL");
    fflush(stdout);
    if (ok) n_passed++; else n_failed++;
    return ok;
}

int check_true(const char *name, int cond, const char *detail) {
    printf("%-44s %-32s %s\n", name, detail, cond ? "ok" : "FAIL");
    fflush(stdout);
    if (cond) n_passed++; else n_failed++;
    return cond;
}

void check_skip(const char *name, const char *why) {
    printf("skip %s: %s\n", name, why);
    fflush(stdout);
    n_skipped++;
}

int check_finish(void) {
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}

double rel_rms(const double *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double rel_rms_f(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double max_abs_diff(const double *a, const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (!(e <= m)) m = e; /* NaN propagates */
    }
    return m;
}

double max_abs_diff_f(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) m = e;
    }
    return m;
}

int check_wait_child(int pid, int timeout_s) {
    int status;
    for (int waited_ms = 0;; waited_ms += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (waited_ms >= timeout_s * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 124;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

char *check_read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return strdup("");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = mallocCheck((size_t)n + 1);
    s[fread(s, 1, (size_t)n, fp)] = '\0';
    fclose(fp);
    return s;
}

int check_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    socklen_t len = sizeof a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
        die("no free TCP port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}
