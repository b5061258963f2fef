/* options.h: command-line options from one table (doc/STYLE.md: "one option table generates both
 * the parser and --help"). A program fills an array of Option rows, one per flag:
 *   name     "--lr" (the leading dashes included)
 *   type     OPT_INT (int), OPT_DOUBLE (double), OPT_STRING (const char *), OPT_CHOICE (int: the
 *            index of the value in choices, a '|'-separated list such as "cosine|linear|wsd")
 *   value    where the parsed value goes
 *   def      the default, as text: parsed by the same code as a flag's value, so --help and the
 *            settings print show exactly what the program uses
 *   lo, hi   OPT_INT and OPT_DOUBLE: the accepted range, inclusive
 *   env      an environment variable that may set the value instead of the flag, or NULL
 *   help     one line
 * The same rows drive the parser (options_parse), --help (options_help) and the print of every
 * effective setting (options_format, with where each value came from).
 * Precedence: flag > environment > default. Flags are "--name value" or "--name=value"; "--help"
 * and "-h" ask for help. Errors are one line each: an unknown flag, a positional argument, a flag
 * given twice or without a value, a value that is not a number or not one of the choices, a
 * number outside its range (ranges are never clamped).
 * checked by: tests/test_train.c "options". */
#ifndef PATHGPT_COMMON_OPTIONS_H
#define PATHGPT_COMMON_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { OPT_INT, OPT_DOUBLE, OPT_STRING, OPT_CHOICE } OptType;
typedef enum { OPT_FROM_DEFAULT, OPT_FROM_ENV, OPT_FROM_FLAG } OptSource;

typedef struct {
    const char *name;
    OptType type;
    void *value;
    const char *def;
    double lo, hi;
    const char *choices;
    const char *env;
    const char *help;
    OptSource source; /* set by options_parse */
} Option;

/* A table row: OPTION(name, type, value, def, lo, hi, choices, env, help). */
#define OPTION(...) {__VA_ARGS__, OPT_FROM_DEFAULT}

/* Sets every value from its default, then the environment, then argv[1..argc). Returns 0, 1 when
 * help was asked for (nothing else is reported), or -1 with a one-line reason in why. */
int options_parse(Option *opts, int n, int argc, char **argv, char *why, size_t why_len);

/* The help text: usage line, then one line per option (name, value kind, help, default, env). */
void options_help(FILE *fp, const char *usage, const Option *opts, int n);

/* The current value of o as text (as a flag would give it) into buf. */
void options_format(const Option *o, char *buf, size_t len);

const char *options_source_name(OptSource s); /* "default", "env", "flag" */

/* The row named name ("--lr"), or NULL. */
const Option *options_find(const Option *opts, int n, const char *name);

#ifdef __cplusplus
}
#endif
#endif
