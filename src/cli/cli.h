/* cli.h -- what the loopforge commands share: the invocation (parsed
 * arguments and global options), the private event loop that drives the
 * engine, exit codes, and the output helpers.
 *
 * The CLI is a front-end: it only translates argv into engine requests
 * and results into text. Each command lives in a module that exports an
 * lf_command; main.c dispatches on the command word. */
#ifndef LF_CLI_H
#define LF_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "../loopforge.h"
#include "args.h"

/* Exit codes, stable: scripts branch on them. */
enum {
    LF_EXIT_OK = 0,
    LF_EXIT_FAILURE = 1,            /* a self-check failed (bench) */
    LF_EXIT_USAGE = 2,              /* usage error or invalid request */
    LF_EXIT_NOT_FOUND = 3,
    LF_EXIT_INVALID_TRANSITION = 4,
    LF_EXIT_DENIED = 5,
    LF_EXIT_CONFLICT = 6,           /* also duplicate_ref */
    LF_EXIT_UNAVAILABLE = 7,
    LF_EXIT_AUDIT = 8               /* audit --verify found a broken chain */
};

typedef struct lf_cli lf_cli;

typedef struct lf_command {
    const char *name;
    const char *summary;            /* one line for `loopforge --help` */
    const char *help;               /* the whole `loopforge CMD --help` */
    const lf_optspec *opts;         /* the command's own options */
    int (*run)(lf_cli *c);          /* returns the exit code */
    bool reader;                    /* only reads: the store read-only, and a
                                       broken policy directory is no obstacle */
} lf_command;

struct lf_cli {
    const lf_command *cmd;
    lf_args args;                   /* options and positionals after parsing */
    const char *store;              /* --store, or NULL for the engine default */
    const char *policies;           /* resolved policies directory */
    bool json;                      /* --json */
    struct event_base *base;        /* created with the engine */
    lf_engine *engine;              /* opened on first use */
    const char *signing_key;        /* --signing-key, or NULL */
    bool writes;                    /* a reader command that writes after all */
    char actor[256];
};

extern const lf_command lf_cmd_create, lf_cmd_transition, lf_cmd_show, lf_cmd_list,
    lf_cmd_delete, lf_cmd_audit, lf_cmd_lint, lf_cmd_graph, lf_cmd_bench, lf_cmd_policies,
    lf_cmd_serve, lf_cmd_token, lf_cmd_keygen, lf_cmd_attest, lf_cmd_evidence,
    lf_cmd_import, lf_cmd_timers, lf_cmd_tick, lf_cmd_explain, lf_cmd_replay, lf_cmd_ack;

/* The global options, shared by every command (main.c). */
#define LF_GLOBAL_HELP                                                                   \
    "Global options (before or after the command):\n"                                    \
    "  --store URL      memory:, file:PATH, redis://[:PASSWORD@]HOST:PORT/DB or\n"       \
    "                   unix:///PATH/redis.sock?db=N (default: $LOOPFORGE_STORE,\n"      \
    "                   else file:./var/loopforge.journal)\n"                            \
    "  --policies DIR   policy directory (default: $LOOPFORGE_POLICIES, else\n"          \
    "                   ./policies, else the installed policies)\n"                      \
    "  --signing-key FILE  the Ed25519 private key that signs checkpoints\n"             \
    "                   (loopforge keygen; default: $LOOPFORGE_SIGNING_KEY)\n"           \
    "  --json           machine-readable output\n"                                       \
    "  -h, --help       this help\n"

int lf_cli_exit_code(lf_code code);

/* Prints "loopforge CMD: message" and a hint at --help to stderr.
 * Returns LF_EXIT_USAGE. */
int lf_cli_usage(const lf_cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports a failure that has no engine result of its own (store open,
 * list, audit): the message to stderr and, with --json, a result object
 * {success:false, code, error, ...} to stdout. Returns the exit code. */
int lf_cli_fail(const lf_cli *c, lf_code code, const char *msg);

/* Checks the number of positional arguments; on a mismatch prints a usage
 * error and returns LF_EXIT_USAGE, else 0. */
int lf_cli_npos(const lf_cli *c, size_t min, size_t max, const char *what);

/* The event base every command runs on (epoll's changes batched); NULL
 * when none can be made. */
struct event_base *lf_cli_base_new(void);
/* Opens the engine (store + policies) on first use. NULL with the code
 * and message set, reporting nothing. */
lf_engine *lf_cli_open(lf_cli *c, lf_code *code, char *err, size_t errlen);
/* The same, reporting a failure. NULL after reporting
 * the error; *rc is then the exit code. */
lf_engine *lf_cli_engine(lf_cli *c, int *rc);

/* Runs the private event loop until *done. memory: and file: complete
 * inline, so this normally returns at once; an asynchronous store (Redis)
 * completes here. Returns 0, or the exit code after reporting a request
 * that can never complete. */
int lf_cli_wait(lf_cli *c, const bool *done);

/* A text answer from the engine (lf_text_cb): lf_cli_text_cb keeps it;
 * lf_cli_text_finish waits for it, prints the text or reports the error,
 * frees both and returns the exit code. */
typedef struct lf_text_call {
    bool done;
    lf_code code;
    char *text, *error;
} lf_text_call;
void lf_cli_text_cb(lf_code code, const char *error, const char *text, void *arg);
int lf_cli_text_finish(lf_cli *c, lf_text_call *t);

/* Called with each stored line in seq order; returns 0 to go on. */
typedef int lf_line_fn(const char *line, size_t len, void *arg);
/* Every line of the log in order: a journal's bytes as they are (opened
 * read-only; memory bounded by the longest line), else through the
 * engine. *torn gets the length of an unfinished last line (a writer that
 * died mid-line): not part of the log, and left where it is. Returns 0 or
 * an exit code (the failure reported). */
int lf_cli_each_line(lf_cli *c, lf_line_fn *fn, void *arg, size_t *torn);
/* Prints the log (or record id's entries) after seq `after` as NDJSON. */
int lf_cli_print_log(lf_cli *c, const char *id, uint64_t after);

/* A request answered by an lf_result (create, transition, get, delete):
 * pass lf_cli_result_cb with a reply; `print` writes the success output.
 * Failures print the engine's message (and --json the result object). */
typedef struct lf_reply {
    lf_cli *c;
    void (*print)(lf_cli *c, const lf_result *res);
    bool done;
    int rc;
} lf_reply;
void lf_cli_result_cb(const lf_result *res, void *arg);
/* Waits for the reply and returns its exit code. */
int lf_cli_reply_wait(lf_reply *r);

/* --actor, else $LOOPFORGE_ACTOR, else cli:$USER (cli:unknown). */
const char *lf_cli_actor(lf_cli *c);

/* A JSON object from the repeatable `--NAME k=v` options (string values)
 * and, when json_name is not NULL, `--JSON_NAME k=JSON` (any JSON value),
 * in command-line order; a key given twice keeps its last value. *out is
 * NULL when none was given. Returns 0, or LF_EXIT_USAGE after reporting. */
int lf_cli_kv_object(const lf_cli *c, const char *name, const char *json_name,
                     char **out);

/* Strict unsigned parse of a whole decimal string within [min, max]. */
int lf_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int lf_cli_parse_i64(const char *s, int64_t *out);

/* Writes compact JSON indented for reading, then a newline. Containers
 * nested deeper than `depth` stay on one line. */
void lf_cli_print_pretty(FILE *f, const char *json, int depth);

/* Writes s as a quoted, escaped JSON string (null for NULL). */
void lf_cli_json_str(FILE *f, const char *s);

/* Writes a string followed by a newline and frees it. */
void lf_cli_puts_free(char *s);

#endif
