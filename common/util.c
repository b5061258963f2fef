/* util.c: see util.h. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "pathgpt";

void util_set_progname(const char *name) { progname = name; }
const char *util_progname(void) { return progname; }

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(EXIT_FAILURE);
}

void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: warning: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void fail(const char *what, const char *detail, const char *file, int line) {
    fprintf(stderr, "%s: error: %s failed at %s:%d: %s\n", progname, what, file, line, detail);
    exit(EXIT_FAILURE);
}

FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *fp = fopen(path, mode);
    if (!fp) {
        fprintf(stderr, "%s: error: cannot open '%s' (mode %s) at %s:%d: %s\n", progname, path, mode, file,
                line, strerror(errno));
        exit(EXIT_FAILURE);
    }
    return fp;
}

void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line) {
    size_t got = fread(ptr, size, nmemb, fp);
    if (got != nmemb) fail("fread", feof(fp) ? "unexpected end of file (truncated?)" : strerror(errno), file, line);
}

void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line) {
    if (fwrite(ptr, size, nmemb, fp) != nmemb) fail("fwrite", strerror(errno), file, line);
}

void fclose_check(FILE *fp, const char *file, int line) {
    if (fclose(fp) != 0) fail("fclose", strerror(errno), file, line);
}

void *malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) fail("malloc", "out of memory", file, line);
    return p;
}

void *calloc_check(size_t nmemb, size_t size, const char *file, int line) {
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p) fail("calloc", "out of memory", file, line);
    return p;
}

int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
