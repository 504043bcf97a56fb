/* args.c -- argv parsing for the loopforge CLI (see args.h).
 *
 * Hand-rolled rather than getopt_long: getopt wants one option table for
 * the whole command line, while ours is the global table plus the table
 * of a command we only know once its word has been found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "../core/mem.h"

static const lf_optspec *spec_find(const lf_optspec *t, const char *name, size_t len) {
    for (; t && t->name; t++)
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0) return t;
    return NULL;
}

static void push_opt(lf_args *a, const char *name, const char *value) {
    a->opts = lf_xrealloc(a->opts, (a->nopts + 1) * sizeof *a->opts);
    a->opts[a->nopts].name = name;
    a->opts[a->nopts].value = value;
    a->nopts++;
}

static void push_pos(lf_args *a, const char *s) {
    a->pos = lf_xrealloc(a->pos, (a->npos + 1) * sizeof *a->pos);
    a->pos[a->npos++] = s;
}

/* "-" alone is a positional (the conventional name of stdin). */
static int is_option(const char *s) { return s[0] == '-' && s[1] != '\0'; }

int lf_args_find_command(int argc, char **argv, const lf_optspec *global) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) return i + 1 < argc ? i + 1 : 0;
        if (!is_option(s)) return i;
        if (s[1] == '-' && !strchr(s, '=')) {
            const lf_optspec *o = spec_find(global, s + 2, strlen(s + 2));
            if (o && o->value) i++;     /* skip its value */
        }
    }
    return 0;
}

int lf_args_parse(int argc, char **argv, int skip, const lf_optspec *global,
                  const lf_optspec *local, lf_args *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (i == skip) continue;
        if (only_pos || !is_option(s)) {
            push_pos(out, s);
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(s, "-h") == 0) s = "--help";
        if (s[1] != '-') {
            snprintf(err, errlen, "unknown option '%s'", s);
            return -1;
        }
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const lf_optspec *o = spec_find(local, name, len);
        if (!o) o = spec_find(global, name, len);
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s'", (int)len, name);
            return -1;
        }
        if (!o->value) {
            if (eq) {
                snprintf(err, errlen, "option '--%s' takes no value", o->name);
                return -1;
            }
            push_opt(out, o->name, NULL);
            continue;
        }
        /* A value is taken even if it starts with '-': `--limit -1`
         * should be refused as a bad limit, not as an unknown option. */
        if (eq) push_opt(out, o->name, eq + 1);
        else if (i + 1 < argc && i + 1 != skip) push_opt(out, o->name, argv[++i]);
        else {
            snprintf(err, errlen, "option '--%s' needs a value", o->name);
            return -1;
        }
    }
    return 0;
}

void lf_args_free(lf_args *a) {
    free(a->opts);
    free(a->pos);
    memset(a, 0, sizeof(*a));
}

bool lf_args_has(const lf_args *a, const char *name) {
    for (size_t i = 0; i < a->nopts; i++)
        if (strcmp(a->opts[i].name, name) == 0) return true;
    return false;
}

const char *lf_args_get(const lf_args *a, const char *name) {
    for (size_t i = a->nopts; i > 0; i--)
        if (strcmp(a->opts[i - 1].name, name) == 0) return a->opts[i - 1].value;
    return NULL;
}

const char *lf_args_nth(const lf_args *a, const char *name, size_t n) {
    for (size_t i = 0; i < a->nopts; i++)
        if (strcmp(a->opts[i].name, name) == 0 && n-- == 0) return a->opts[i].value;
    return NULL;
}
