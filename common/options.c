/* options.c: see options.h. */
#include "options.h"

#include <float.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The index of s in the '|'-separated list choices, or -1. */
static int choice_index(const char *choices, const char *s) {
    size_t len = strlen(s);
    int index = 0;
    for (const char *p = choices;; index++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, s, n) == 0) return index;
        if (!bar) return -1;
        p = bar + 1;
    }
}

/* Choice index of choices into buf (empty if out of range). */
static void choice_name(const char *choices, int index, char *buf, size_t len) {
    const char *p = choices;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    size_t n = p ? strcspn(p, "|") : 0;
    snprintf(buf, len, "%.*s", (int)n, p ? p : "");
}

/* Parses text into o's value; what says where it came from ("--lr", "environment variable LR"). */
static int set_value(const Option *o, const char *text, const char *what, char *why, size_t why_len) {
    switch (o->type) {
    case OPT_INT: {
        long v;
        if (parse_long(text, LONG_MIN, LONG_MAX, &v)) {
            snprintf(why, why_len, "%s '%s' is not an integer", what, text);
            return -1;
        }
        if (v < o->lo || v > o->hi) {
            snprintf(why, why_len, "%s %ld is out of range [%.15g, %.15g]", what, v, o->lo, o->hi);
            return -1;
        }
        *(int *)o->value = (int)v;
        return 0;
    }
    case OPT_DOUBLE: {
        double v;
        if (parse_double(text, -DBL_MAX, DBL_MAX, &v)) {
            snprintf(why, why_len, "%s '%s' is not a finite number", what, text);
            return -1;
        }
        if (v < o->lo || v > o->hi) {
            snprintf(why, why_len, "%s %s is out of range [%g, %g]", what, text, o->lo, o->hi);
            return -1;
        }
        *(double *)o->value = v;
        return 0;
    }
    case OPT_STRING:
        *(const char **)o->value = text;
        return 0;
    case OPT_CHOICE: {
        int index = choice_index(o->choices, text);
        if (index < 0) {
            snprintf(why, why_len, "%s '%s' is not one of %s", what, text, o->choices);
            return -1;
        }
        *(int *)o->value = index;
        return 0;
    }
    }
    snprintf(why, why_len, "%s has an unknown option type", what);
    return -1;
}

static int find_index(const Option *opts, int n, const char *name, size_t name_len) {
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == name_len && strncmp(opts[i].name, name, name_len) == 0) return i;
    return -1;
}

const Option *options_find(const Option *opts, int n, const char *name) {
    int i = find_index(opts, n, name, strlen(name));
    return i < 0 ? NULL : &opts[i];
}

static int set_defaults(Option *opts, int n, char *why, size_t why_len) {
    char what[128];
    for (int i = 0; i < n; i++) {
        Option *o = &opts[i];
        snprintf(what, sizeof what, "the default of %s", o->name);
        if (set_value(o, o->def, what, why, why_len)) return -1;
        o->source = OPT_FROM_DEFAULT;
        const char *env = o->env ? getenv(o->env) : NULL;
        if (!env) continue;
        snprintf(what, sizeof what, "environment variable %s (for %s)", o->env, o->name);
        if (set_value(o, env, what, why, why_len)) return -1;
        o->source = OPT_FROM_ENV;
    }
    return 0;
}

int options_parse(Option *opts, int n, int argc, char **argv, char *why, size_t why_len) {
    why[0] = '\0';
    for (int a = 1; a < argc; a++)
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) return 1;
    if (set_defaults(opts, n, why, why_len)) return -1;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(why, why_len, "unexpected argument '%s' (options are --name value; see --help)", arg);
            return -1;
        }
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        int i = find_index(opts, n, arg, name_len);
        if (i < 0) {
            snprintf(why, why_len, "unknown option '%.*s' (see --help)", (int)name_len, arg);
            return -1;
        }
        Option *o = &opts[i];
        if (o->source == OPT_FROM_FLAG) {
            snprintf(why, why_len, "%s is given twice", o->name);
            return -1;
        }
        const char *text = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!text) {
            snprintf(why, why_len, "%s needs a value", o->name);
            return -1;
        }
        if (set_value(o, text, o->name, why, why_len)) return -1;
        o->source = OPT_FROM_FLAG;
    }
    return 0;
}

void options_format(const Option *o, char *buf, size_t len) {
    switch (o->type) {
    case OPT_INT: snprintf(buf, len, "%d", *(const int *)o->value); return;
    case OPT_DOUBLE: snprintf(buf, len, "%g", *(const double *)o->value); return;
    case OPT_STRING: snprintf(buf, len, "%s", *(const char *const *)o->value); return;
    case OPT_CHOICE: choice_name(o->choices, *(const int *)o->value, buf, len); return;
    }
    snprintf(buf, len, "?");
}

const char *options_source_name(OptSource s) {
    return s == OPT_FROM_FLAG ? "flag" : s == OPT_FROM_ENV ? "env" : "default";
}

static const char *kind_name(const Option *o) {
    switch (o->type) {
    case OPT_INT: return "INT";
    case OPT_DOUBLE: return "NUM";
    case OPT_STRING: return "STR";
    case OPT_CHOICE: return o->choices;
    }
    return "?";
}

void options_help(FILE *fp, const char *usage, const Option *opts, int n) {
    fprintf(fp, "%s\n", usage);
    for (int i = 0; i < n; i++) {
        const Option *o = &opts[i];
        char head[160];
        snprintf(head, sizeof head, "%s %s", o->name, kind_name(o));
        fprintf(fp, "  %-26s %s (default: %s%s", head, o->help, o->def[0] ? o->def : "\"\"",
                o->env ? "; environment: " : "");
        fprintf(fp, "%s)\n", o->env ? o->env : "");
    }
}
