/* util.h: checked wrappers for the C library (llm.c's fopenCheck style) and user-error exits.
 * A failing call prints what failed, where (file:line) and why (errno text), then exits 1.
 * die() is for user errors: one line "<prog>: error: ..." on stderr, exit 1. */
#ifndef PATHGPT_COMMON_UTIL_H
#define PATHGPT_COMMON_UTIL_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Program name used in error messages ("train", "test_data", ...); set once by main. */
void util_set_progname(const char *name);
const char *util_progname(void);

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

FILE *fopen_check(const char *path, const char *mode, const char *file, int line);
void fread_check(void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line);
void fwrite_check(const void *ptr, size_t size, size_t nmemb, FILE *fp, const char *file, int line);
void fclose_check(FILE *fp, const char *file, int line);
void *malloc_check(size_t size, const char *file, int line);
void *calloc_check(size_t nmemb, size_t size, const char *file, int line);

#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)
#define freadCheck(ptr, size, nmemb, fp) fread_check(ptr, size, nmemb, fp, __FILE__, __LINE__)
#define fwriteCheck(ptr, size, nmemb, fp) fwrite_check(ptr, size, nmemb, fp, __FILE__, __LINE__)
#define fcloseCheck(fp) fclose_check(fp, __FILE__, __LINE__)
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)
#define callocCheck(nmemb, size) calloc_check(nmemb, size, __FILE__, __LINE__)

/* Parse a whole string as a number in [lo, hi]; 0 on success, -1 if it is not one or out of range. */
int parse_long(const char *s, long lo, long hi, long *out);
int parse_double(const char *s, double lo, double hi, double *out);

#ifdef __cplusplus
}
#endif
#endif
