/* serve.c -- `loopforge serve` (the HTTP daemon: options and environment
 * into an lf_http_config, then src/http takes over) and `loopforge token`
 * (a new bearer token and its tokens-file line). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include "cli.h"
#include "../http/http.h"

/* ---- serve ------------------------------------------------------------ */

/* --NAME, else $ENV (non-empty), else NULL. */
static const char *opt_env(lf_cli *c, const char *name, const char *env) {
    const char *v = lf_args_get(&c->args, name);
    if (v) return v;
    v = getenv(env);
    return v && *v ? v : NULL;
}

static int int_opt(lf_cli *c, const char *name, uint64_t min, uint64_t max, int *out) {
    const char *v = lf_args_get(&c->args, name);
    uint64_t n;
    if (!v) return 0;
    if (lf_cli_parse_u64(v, min, max, &n))
        return lf_cli_usage(c, "--%s must be an integer from %llu to %llu, got '%s'",
                            name, (unsigned long long)min, (unsigned long long)max, v);
    *out = (int)n;
    return 0;
}

static int log_level(lf_cli *c, lf_log_level *out) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *v = lf_args_get(&c->args, "log-level");
    *out = LF_LOG_INFO;
    if (!v) return 0;
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = (lf_log_level)i;
            return 0;
        }
    return lf_cli_usage(c, "--log-level must be debug, info, warn or error, got '%s'", v);
}

static int run_serve(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, ""), conns = 0, hist = 0;
    if (rc) return rc;
    lf_http_config cfg = {0};
    cfg.listen = opt_env(c, "listen", "LOOPFORGE_LISTEN");
    cfg.tokens_file = opt_env(c, "tokens", "LOOPFORGE_TOKENS");
    cfg.webhook_secret_file =
        opt_env(c, "webhook-secret-file", "LOOPFORGE_WEBHOOK_SECRET_FILE");
    cfg.ceiling = lf_args_has(&c->args, "ceiling");
    if ((rc = int_opt(c, "timeout", 1, 3600, &cfg.timeout_s)) ||
        (rc = int_opt(c, "shutdown-timeout", 1, 3600, &cfg.shutdown_timeout_s)) ||
        (rc = int_opt(c, "webhook-deadline", 1, 60000, &cfg.webhook_deadline_ms)) ||
        (rc = int_opt(c, "max-connections", 1, 1000000, &conns)) ||
        (rc = int_opt(c, "max-history", 1, 1000000, &hist)) ||
        (rc = int_opt(c, "checkpoint-every", 1, 100000000, &cfg.checkpoint_every)) ||
        (rc =
             int_opt(c, "checkpoint-seconds", 1, 86400 * 366, &cfg.checkpoint_seconds)) ||
        (rc = log_level(c, &cfg.log_level)))
        return rc;
    cfg.max_connections = (size_t)conns;
    cfg.max_history = (size_t)hist;
    if (cfg.listen && !*cfg.listen) return lf_cli_usage(c, "--listen must not be empty");
    lf_engine *e = NULL;
    if (cfg.ceiling) {
        if (!(c->base = lf_cli_base_new()))
            return lf_cli_fail(c, LF_UNAVAILABLE, "cannot create an event loop");
    } else if (!(e = lf_cli_engine(c, &rc))) {
        return rc;
    }
    /* The server owns the engine from here: it frees it (flushing the
     * store) before it returns. */
    c->engine = NULL;
    return lf_http_serve(&cfg, c->base, e);
}

static const lf_optspec serve_opts[] = {{"listen", true},
                                        {"tokens", true},
                                        {"webhook-secret-file", true},
                                        {"timeout", true},
                                        {"shutdown-timeout", true},
                                        {"webhook-deadline", true},
                                        {"max-connections", true},
                                        {"max-history", true},
                                        {"log-level", true},
                                        {"checkpoint-every", true},
                                        {"checkpoint-seconds", true},
                                        {"ceiling", false},
                                        {NULL, false}};

const lf_command lf_cmd_serve = {
    "serve",
    "run the HTTP API and GitHub webhook intake",
    "Usage: loopforge serve [--listen ADDR:PORT] [--tokens FILE]\n"
    "                       [--webhook-secret-file FILE] [OPTIONS]\n\n"
    "Serves the JSON API, GitHub webhooks and Prometheus metrics on one\n"
    "event loop (docs/http.md lists every route). The first line on stdout\n"
    "is \"listening on ADDR:PORT\" (the real port when --listen asks for 0).\n"
    "Logs are one JSON object per line on stderr. SIGHUP reloads the\n"
    "policies and the tokens file; SIGTERM or SIGINT stops accepting,\n"
    "finishes the requests in flight, flushes the store and exits 0.\n\n"
    "  --listen ADDR:PORT         where to listen (default: $LOOPFORGE_LISTEN,\n"
    "                             else 127.0.0.1:8080; port 0 = any free port)\n"
    "  --tokens FILE              bearer tokens, one \"NAME ROLE SHA256HEX\" per\n"
    "                             line (default: $LOOPFORGE_TOKENS); without\n"
    "                             it only a loopback address is accepted and\n"
    "                             every caller is an admin named \"anonymous\"\n"
    "  --webhook-secret-file FILE the GitHub webhook secret (default:\n"
    "                             $LOOPFORGE_WEBHOOK_SECRET_FILE); without it\n"
    "                             POST /v1/webhooks/github answers 404\n"
    "  --timeout S                close a connection idle, or stalled in a\n"
    "                             request or reply, for S seconds, or that has\n"
    "                             not sent a whole request in S seconds\n"
    "                             (default 10)\n"
    "  --shutdown-timeout S       on SIGTERM wait at most S seconds for the\n"
    "                             requests in flight (default 10)\n"
    "  --webhook-deadline MS      answer a slow delivery 202 after MS ms and\n"
    "                             finish it in the background (default 8000;\n"
    "                             GitHub waits 10 s)\n"
    "  --max-connections N        at N open connections a new one closes the\n"
    "                             oldest idle or slow one; if every one is\n"
    "                             busy, it waits in the backlog (default 1024)\n"
    "  --max-history N            transitions per record in a reply, the last\n"
    "                             N (default 100; all are in the audit log)\n"
    "  --checkpoint-every N       with --signing-key: a signed checkpoint every\n"
    "                             N entries (default 1000) ...\n"
    "  --checkpoint-seconds S     ... or S seconds when anything was appended\n"
    "                             (default 300), and one at shutdown\n"
    "                             (docs/audit.md)\n"
    "  --log-level L              debug, info (default; one line per request),\n"
    "                             warn or error\n"
    "  --ceiling                  benchmarks: answer every request 200 with a\n"
    "                             fixed body, no engine behind it\n\n"
    "Create a token with 'loopforge token NAME ROLE'.\n",
    serve_opts,
    run_serve,
    false};

/* ---- token ------------------------------------------------------------ */

/* Appends the line to the tokens file (created 0600), refusing a name
 * that is already there or a file that does not parse. */
static int append_line(lf_cli *c, const char *path, const char *name, const char *line) {
    FILE *f = fopen(path, "r");
    if (f) {
        char *buf = NULL;
        size_t cap = 0;
        size_t nlen = strlen(name);
        bool taken = false;
        while (!taken && getline(&buf, &cap, f) >= 0)
            taken =
                strncmp(buf, name, nlen) == 0 && (buf[nlen] == ' ' || buf[nlen] == '\t');
        free(buf);
        fclose(f);
        if (taken) {
            fprintf(stderr, "loopforge token: %s already has a token named '%s'\n", path,
                    name);
            return LF_EXIT_CONFLICT;
        }
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) {
        fprintf(stderr, "loopforge token: %s: %s\n", path, strerror(errno));
        return LF_EXIT_UNAVAILABLE;
    }
    char out[200];
    int n = snprintf(out, sizeof out, "%s\n", line);
    bool ok = write(fd, out, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "loopforge token: %s: %s\n", path, strerror(errno));
        return LF_EXIT_UNAVAILABLE;
    }
    (void)c;
    return LF_EXIT_OK;
}

static int run_token(lf_cli *c) {
    int rc = lf_cli_npos(c, 2, 2, "NAME and ROLE");
    if (rc) return rc;
    const char *name = c->args.pos[0], *rname = c->args.pos[1];
    lf_role role;
    if (!lf_token_name_valid(name))
        return lf_cli_usage(c, "NAME must be 1-64 of [A-Za-z0-9._-], got '%s'", name);
    if (lf_role_parse(rname, &role))
        return lf_cli_usage(c, LF_ROLE_HELP ", got '%s'", rname);
    char token[64], line[LF_TOKEN_LINE + 128];
    const char *kind = lf_args_get(&c->args, "kind"),
               *principal = lf_args_get(&c->args, "principal");
    if (kind && strcmp(kind, "human") && strcmp(kind, "agent") && strcmp(kind, "app"))
        return lf_cli_usage(c, "--kind must be human, agent or app, got '%s'", kind);
    if (principal && !lf_token_name_valid(principal))
        return lf_cli_usage(c, "--principal must be a name of [A-Za-z0-9._-], got '%s'",
                            principal);
    if (lf_token_new(name, rname, token, line))
        return lf_cli_fail(c, LF_UNAVAILABLE, "no randomness for a token");
    size_t used = strlen(line);
    if (kind) used += (size_t)snprintf(line + used, sizeof line - used, " kind=%s", kind);
    if (principal) snprintf(line + used, sizeof line - used, " principal=%s", principal);
    const char *file = lf_args_get(&c->args, "tokens");
    if (file && (rc = append_line(c, file, name, line))) return rc;
    if (c->json) {
        printf("{\"name\":\"%s\",\"role\":\"%s\",\"roles\":\"%s\",\"token\":\"%s\","
               "\"line\":\"%s\"}\n",
               name, lf_role_name(role), rname, token, line);
    } else {
        printf("%s\n", token);
        if (!file) printf("%s\n", line);
    }
    if (file)
        fprintf(stderr, "added '%s' (%s) to %s; a running server picks it up on SIGHUP\n",
                name, lf_role_name(role), file);
    return LF_EXIT_OK;
}

static const lf_optspec token_opts[] = {
    {"tokens", true}, {"kind", true}, {"principal", true}, {NULL, false}};

const lf_command lf_cmd_token = {
    "token",
    "make a bearer token for serve",
    "Usage: loopforge token NAME ROLE [--tokens FILE] [--kind K] [--principal P]\n\n"
    "Prints a new random bearer token, then the line that admits it to a\n"
    "tokens file: \"NAME ROLE SHA256HEX\". Only the digest goes into the\n"
    "file; the token itself is shown once, here. ROLE is read (GET routes),\n"
    "write (also create and transition) or admin (also reload). NAME is the\n"
    "actor recorded for the token's changes.\n\n"
    "  --tokens FILE   append the line to FILE (created mode 0600) and print\n"
    "                  only the token; a running server reloads on SIGHUP\n"
    "  --kind K        human, agent or app: what the token's holder is\n"
    "  --principal P   for an agent: the human it acts for (guards see both as\n"
    "                  t.identity; the audit entry records them)\n",
    token_opts,
    run_token,
    false};
