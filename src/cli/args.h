/* args.h -- argv parsing for the loopforge CLI.
 *
 * GNU-style long options ("--name value" or "--name=value") that may come
 * before or after the command and its positional arguments, so that
 * `loopforge --json show ID` and `loopforge show ID --json` mean the same.
 * Every occurrence is kept, in order: repeatable options (--label, --meta,
 * bench's --store) are read with lf_args_nth, the others with lf_args_get
 * (the last one wins). "--" ends the options. */
#ifndef LF_CLI_ARGS_H
#define LF_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

/* One accepted option; tables end with a {NULL} entry. */
typedef struct lf_optspec {
    const char *name;           /* without the leading "--" */
    bool value;                 /* takes a value */
} lf_optspec;

typedef struct lf_opt {
    const char *name;           /* the spec's name (static) */
    const char *value;          /* points into argv; NULL for a flag */
} lf_opt;

typedef struct lf_args {
    lf_opt *opts;
    size_t nopts;
    const char **pos;           /* positional arguments, in order */
    size_t npos;
} lf_args;

/* Parses argv[1..argc-1] except argv[skip] (the command word, or 0 for
 * none) against two option tables (either may be NULL). "-h" is read as
 * "--help". Returns 0, or -1 with a one-line message in err. */
int lf_args_parse(int argc, char **argv, int skip, const lf_optspec *global,
                  const lf_optspec *local, lf_args *out, char *err, size_t errlen);
void lf_args_free(lf_args *a);

/* Index in argv of the command word: the first argument that is neither
 * an option nor the value of a global option that takes one. 0 if none. */
int lf_args_find_command(int argc, char **argv, const lf_optspec *global);

bool lf_args_has(const lf_args *a, const char *name);
/* The last value given for name, or NULL. */
const char *lf_args_get(const lf_args *a, const char *name);
/* The i-th value given for name (in argv order), or NULL past the end. */
const char *lf_args_nth(const lf_args *a, const char *name, size_t i);

#endif
