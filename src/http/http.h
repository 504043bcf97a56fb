/* http.h -- loopforge's HTTP server as the CLI sees it: a configuration
 * and one call that serves until SIGTERM/SIGINT, plus the token helpers
 * behind `loopforge token`.
 *
 * The server is a front-end like the CLI: it translates HTTP requests and
 * GitHub webhooks into engine requests, and results back into JSON. It runs
 * on the event_base the engine was created with. */
#ifndef LF_HTTP_H
#define LF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include "../loopforge.h"

struct event_base;

typedef struct lf_http_config {
    const char *listen;             /* "ADDR:PORT"; port 0 = ephemeral */
    const char *tokens_file;        /* NULL: no auth, loopback only */
    const char *webhook_secret_file;/* NULL: webhook intake is off */
    int timeout_s;                  /* read/write/idle inactivity; 0 = 10 */
    int shutdown_timeout_s;         /* drain limit on SIGTERM; 0 = 10 */
    int webhook_deadline_ms;        /* answer GitHub by then; 0 = 8000 */
    size_t max_connections;         /* 0 = 1024 */
    size_t max_history;             /* transitions per record in a reply; 0 = 100 */
    size_t max_body;                /* API bodies; 0 = 1 MiB */
    size_t max_webhook_body;        /* 0 = 25 MiB (GitHub's cap) */
    lf_log_level log_level;         /* lines below it are dropped */
    bool ceiling;                   /* bench: a fixed 200, no engine */
    int checkpoint_every;           /* entries between signed checkpoints;
                                       0 = 1000 (only with a signing key) */
    int checkpoint_seconds;         /* at most this long between them when
                                       anything was appended; 0 = 300 */
} lf_http_config;

/* Parses "ADDR:PORT" ("[::1]:8080" for IPv6; "localhost" is 127.0.0.1).
 * Returns 0, or -1 with a message in err. */
int lf_http_parse_listen(const char *spec, char *addr, size_t addrlen, int *port,
                         bool *loopback, char *err, size_t errlen);

/* Serves until SIGTERM or SIGINT, then drains in-flight requests and frees
 * the engine (it takes ownership; NULL in ceiling mode). The first line on
 * stdout is "listening on ADDR:PORT". Returns a CLI exit code: 0 after a
 * clean stop, 2 for a bad configuration, 7 when it cannot listen. */
int lf_http_serve(const lf_http_config *cfg, struct event_base *base, lf_engine *engine);

/* ---- tokens (auth.c) ------------------------------------------------ */

/* Roles, ordered: a role may do everything the ones below it may. */
typedef enum lf_role {
    LF_ROLE_NONE = 0,
    LF_ROLE_READ,
    LF_ROLE_WRITE,
    LF_ROLE_ADMIN
} lf_role;

#define LF_ROLES_MAX 256
#define LF_TOKEN_LINE (64 + LF_ROLES_MAX + 2 * 32 + 3)
#define LF_ROLE_HELP                                                                     \
    "ROLE must be read, write or admin, optionally with other roles after a comma "      \
    "(write,maintainer,breakglass)"

const char *lf_role_name(lf_role r);
/* A tokens-file ROLE field: one access role (read, write or admin) and
 * any other roles, comma separated ("write,maintainer"): those reach the
 * workflow's role gates and guards (t.actor_roles). Returns 0 with the
 * access role in *out, or -1. */
int lf_role_parse(const char *s, lf_role *out);
/* Token names are [A-Za-z0-9._-]{1,64}: they become the actor. */
bool lf_token_name_valid(const char *name);

/* A fresh random bearer token ("lf_" + 48 hex) and its tokens-file line
 * "NAME ROLES SHA256HEX" (no newline; roles as lf_role_parse takes them).
 * Returns 0, or -1 without entropy. */
int lf_token_new(const char *name, const char *roles, char token[64],
                 char line[LF_TOKEN_LINE]);

#endif
