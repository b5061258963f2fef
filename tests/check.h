/* check.h: the test harness every test program uses. One line per comparison:
 *   <name>  <metric> <value>  bar <bar>  ok|FAIL
 * and a last line "N passed, N failed" (skips are printed, counted as neither). The exit
 * status is the verdict: check_finish() returns 1 if anything failed. tests/run.sh adds up
 * the last lines of all test programs for `make test`. */
#ifndef PATHGPT_TESTS_CHECK_H
#define PATHGPT_TESTS_CHECK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ok when value <= bar and value is not NaN */
int check_value(const char *name, const char *metric, double value, double bar);
/* ok when cond is true; detail says what was compared */
int check_true(const char *name, int cond, const char *detail);
void check_skip(const char *name, const char *why);
int check_finish(void);

/* For the tests that run several processes (POSIX):
 * the exit status of child pid (128 + signal if killed by one); after timeout_s it is killed and the
 * result is 124 */
int check_wait_child(int pid, int timeout_s);
/* the whole file as a NUL-terminated string (malloc'd; "" if it cannot be opened) */
char *check_read_text(const char *path);
/* a TCP port on the loopback interface that was free a moment ago */
int check_free_port(void);

/* ||a - b|| / ||b|| (absolute ||a - b|| when b is all zero); NaN anywhere gives NaN */
double rel_rms(const double *a, const double *b, size_t n);
double rel_rms_f(const float *a, const float *b, size_t n);
double max_abs_diff(const double *a, const double *b, size_t n);
double max_abs_diff_f(const float *a, const float *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
