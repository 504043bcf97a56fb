/* cli.c -- the helpers every loopforge command shares (see cli.h): exit
 * codes, error reporting, opening the engine on a private event loop,
 * waiting for a request, and small argument and JSON utilities. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include "cli.h"
#include "../core/buf.h"
#include "../core/mem.h"
#include "../core/entry.h"

int lf_cli_exit_code(lf_code code) {
    switch (code) {
    case LF_OK: return LF_EXIT_OK;
    case LF_NOT_FOUND: return LF_EXIT_NOT_FOUND;
    case LF_INVALID_TRANSITION: return LF_EXIT_INVALID_TRANSITION;
    case LF_DENIED: return LF_EXIT_DENIED;
    case LF_CONFLICT:
    case LF_DUPLICATE_REF:
    case LF_IDEMPOTENCY_MISMATCH: return LF_EXIT_CONFLICT;
    case LF_UNAVAILABLE: return LF_EXIT_UNAVAILABLE;
    case LF_INVALID_REQUEST:
    default: return LF_EXIT_USAGE;
    }
}

int lf_cli_usage(const lf_cli *c, const char *fmt, ...) {
    const char *name = c->cmd ? c->cmd->name : NULL;
    va_list ap;
    if (name) fprintf(stderr, "loopforge %s: ", name);
    else fputs("loopforge: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (name) fprintf(stderr, "\nTry 'loopforge %s --help'.\n", name);
    else fputs("\nTry 'loopforge --help'.\n", stderr);
    return LF_EXIT_USAGE;
}

int lf_cli_fail(const lf_cli *c, lf_code code, const char *msg) {
    fprintf(stderr, "%s\n", msg);
    if (c->json) {
        /* The same shape as a request's result, so a script reading
         * --json output needs one parser for every failure. */
        lf_result res = {.success = false, .code = code, .error = msg, .decisions = "[]"};
        lf_cli_puts_free(lf_result_json(&res));
    }
    return lf_cli_exit_code(code);
}

int lf_cli_npos(const lf_cli *c, size_t min, size_t max, const char *what) {
    if (c->args.npos < min) return lf_cli_usage(c, "missing %s", what);
    if (c->args.npos > max)
        return lf_cli_usage(c, "unexpected argument '%s'", c->args.pos[max]);
    return 0;
}

struct event_base *lf_cli_base_new(void) {
    struct event_config *cfg = event_config_new();
    if (!cfg) return NULL;
    /* epoll's changes batched per turn of the loop: a connection's or
     * Redis's write interest set and cleared in one turn costs no
     * epoll_ctl (it was ~9% of serve's time). Safe because no descriptor
     * libevent watches here is a dup() of another, the one case Linux
     * gets wrong with it. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

lf_engine *lf_cli_open(lf_cli *c, lf_code *code, char *err, size_t errlen) {
    if (c->engine) return c->engine;
    if (!c->base && !(c->base = lf_cli_base_new())) {
        *code = LF_UNAVAILABLE;
        snprintf(err, errlen, "cannot create an event loop");
        return NULL;
    }
    lf_engine_config cfg = {.store = c->store,
                            .policies = c->policies,
                            .base = c->base,
                            .signing_key = c->signing_key,
                            .reader = c->cmd && c->cmd->reader && !c->writes};
    *code = LF_UNAVAILABLE;
    err[0] = '\0';
    c->engine = lf_engine_new(&cfg, err, errlen, code);
    if (!c->engine) {
        if (*code == LF_OK) *code = LF_UNAVAILABLE;
        if (!err[0]) snprintf(err, errlen, "cannot open the engine");
    }
    return c->engine;
}

lf_engine *lf_cli_engine(lf_cli *c, int *rc) {
    char err[1024];
    lf_code code;
    lf_engine *e = lf_cli_open(c, &code, err, sizeof(err));
    if (!e) *rc = lf_cli_fail(c, code, err);
    return e;
}

int lf_cli_wait(lf_cli *c, const bool *done) {
    /* EVLOOP_ONCE returns 1 when nothing is pending: then the request can
     * never complete, and looping again would spin. */
    while (!*done && event_base_loop(c->base, EVLOOP_ONCE) == 0)
        ;
    if (*done) return 0;
    return lf_cli_fail(c, LF_UNAVAILABLE, "the store did not answer");
}

void lf_cli_result_cb(const lf_result *res, void *arg) {
    lf_reply *r = arg;
    r->done = true;
    if (res->success) {
        r->rc = LF_EXIT_OK;
        r->print(r->c, res);
        return;
    }
    r->rc = lf_cli_exit_code(res->code);
    fprintf(stderr, "%s\n", res->error ? res->error : lf_code_name(res->code));
    if (r->c->json) lf_cli_puts_free(lf_result_json(res));
}

int lf_cli_reply_wait(lf_reply *r) {
    int rc = lf_cli_wait(r->c, &r->done);
    return rc ? rc : r->rc;
}

const char *lf_cli_actor(lf_cli *c) {
    const char *a = lf_args_get(&c->args, "actor");
    if (a) return a;
    if ((a = getenv("LOOPFORGE_ACTOR")) && *a) return a;
    const char *user = getenv("USER");
    snprintf(c->actor, sizeof(c->actor), "cli:%s", user && *user ? user : "unknown");
    return c->actor;
}

/* Is the key of opts[i] given again later? Then the later one wins. */
static bool kv_overridden(const lf_args *a, size_t i, const char *name,
                          const char *json_name, size_t klen) {
    for (size_t j = i + 1; j < a->nopts; j++) {
        const lf_opt *o = &a->opts[j];
        if (strcmp(o->name, name) != 0 && !(json_name && strcmp(o->name, json_name) == 0))
            continue;
        if (strncmp(o->value, a->opts[i].value, klen) == 0 && o->value[klen] == '=')
            return true;
    }
    return false;
}

int lf_cli_kv_object(const lf_cli *c, const char *name, const char *json_name,
                     char **out) {
    const lf_args *a = &c->args;
    lf_buf b = LF_BUF_INIT;
    char err[256];
    int n = 0;
    *out = NULL;
    lf_buf_putc(&b, '{');
    for (size_t i = 0; i < a->nopts; i++) {
        const lf_opt *o = &a->opts[i];
        bool typed = json_name && strcmp(o->name, json_name) == 0;
        if (!typed && strcmp(o->name, name) != 0) continue;
        const char *eq = strchr(o->value, '=');
        if (!eq || eq == o->value) {
            lf_buf_free(&b);
            return lf_cli_usage(c, "--%s wants KEY=VALUE, got '%s'", o->name, o->value);
        }
        size_t klen = (size_t)(eq - o->value);
        if (kv_overridden(a, i, name, json_name, klen)) continue;
        if (n++) lf_buf_putc(&b, ',');
        char *key = lf_xstrndup(o->value, klen);
        lf_buf_json_str(&b, key);
        free(key);
        lf_buf_putc(&b, ':');
        if (!typed) {
            lf_buf_json_str(&b, eq + 1);
            continue;
        }
        /* Validate the value alone, so the message names the option. */
        lf_buf one = LF_BUF_INIT;
        lf_buf_printf(&one, "{\"v\":%s}", eq + 1);
        char *norm = lf_json_object_normalize(lf_buf_str(&one), err, sizeof(err));
        lf_buf_free(&one);
        if (!norm) {
            lf_buf_free(&b);
            return lf_cli_usage(c, "--%s %.*s: not a JSON value: %s", o->name, (int)klen,
                                o->value, eq + 1);
        }
        /* norm is {"v":VALUE}: keep VALUE, compact. */
        lf_buf_add(&b, norm + 5, strlen(norm) - 6);
        free(norm);
    }
    lf_buf_putc(&b, '}');
    if (n) *out = lf_buf_steal(&b);
    lf_buf_free(&b);
    return 0;
}

int lf_cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int lf_cli_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9'))) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s) return -1;
    *out = v;
    return 0;
}

/* Points past the JSON string starting at s (which is '"'). */
static const char *skip_string(const char *s) {
    for (s++; *s && *s != '"'; s++)
        if (*s == '\\' && s[1]) s++;
    return *s ? s + 1 : s;
}

/* Points past the container starting at s ('{' or '['). */
static const char *skip_container(const char *s) {
    int depth = 0;
    while (*s) {
        if (*s == '"') {
            s = skip_string(s);
            continue;
        }
        if (*s == '{' || *s == '[') depth++;
        else if ((*s == '}' || *s == ']') && --depth == 0) return s + 1;
        s++;
    }
    return s;
}

static void newline(FILE *f, int depth) {
    fputc('\n', f);
    for (int i = 0; i < depth; i++) fputs("  ", f);
}

void lf_cli_print_pretty(FILE *f, const char *json, int maxdepth) {
    int depth = 0;
    const char *p = json;
    while (*p) {
        const char *q;
        switch (*p) {
        case '"':
            q = skip_string(p);
            fwrite(p, 1, (size_t)(q - p), f);
            p = q;
            break;
        case '{':
        case '[':
            if (p[1] == '}' || p[1] == ']' || depth >= maxdepth) {
                q = skip_container(p);   /* empty, or deep: one line */
                fwrite(p, 1, (size_t)(q - p), f);
                p = q;
                break;
            }
            fputc(*p++, f);
            newline(f, ++depth);
            break;
        case '}':
        case ']':
            newline(f, --depth);
            fputc(*p++, f);
            break;
        case ',':
            fputc(*p++, f);
            newline(f, depth);
            break;
        case ':':
            fputs(": ", f);
            p++;
            break;
        default: fputc(*p++, f);
        }
    }
    fputc('\n', f);
}

void lf_cli_json_str(FILE *f, const char *s) {
    lf_buf b = LF_BUF_INIT;
    lf_buf_json_str(&b, s);
    fputs(lf_buf_str(&b), f);
    lf_buf_free(&b);
}

void lf_cli_puts_free(char *s) {
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
    }
    free(s);
}

void lf_cli_text_cb(lf_code code, const char *error, const char *text, void *arg) {
    lf_text_call *t = arg;
    t->done = true;
    t->code = code;
    t->text = text ? lf_xstrdup(text) : NULL;
    t->error = error ? lf_xstrdup(error) : NULL;
}

int lf_cli_text_finish(lf_cli *c, lf_text_call *t) {
    int rc = lf_cli_wait(c, &t->done);
    if (!rc && t->code != LF_OK) rc = lf_cli_fail(c, t->code, t->error);
    if (!rc) puts(t->text);
    free(t->text);
    free(t->error);
    t->text = t->error = NULL;
    return rc;
}

/* ---- reading the whole log ------------------------------------------------ */

#define PAGE 1000

/* Called with each stored line in seq order; returns 0 to go on. */

typedef struct page_call {
    lf_cli *c;
    bool done;              /* this page answered */
    bool end;               /* no more pages */
    int rc;
    uint64_t after;         /* seq of the last line seen */
    lf_line_fn *fn;         /* NULL: print the lines */
    void *arg;
} page_call;

static void on_page(lf_code code, const char *error, const char *const *lines,
                    const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    page_call *a = arg;
    a->done = true;
    if (code != LF_OK) {
        a->rc = lf_cli_fail(a->c, code, error ? error : lf_code_name(code));
        a->end = true;
        return;
    }
    if (n == 0) {
        a->end = true;
        return;
    }
    if (last_seq <= a->after) {
        /* Paging on would loop forever on the same page. */
        a->rc = lf_cli_fail(a->c, LF_UNAVAILABLE,
                            "audit: the store returned "
                            "a page that does not advance");
        a->end = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!a->fn) {
            fwrite(lines[i], 1, lens[i], stdout);
            fputc('\n', stdout);
        } else if (a->fn(lines[i], lens[i], a->arg) != 0) {
            a->end = true;      /* the callee has what it needs */
            return;
        }
    }
    a->after = last_seq;
}

/* Runs pages until the end, an error or a stop. */
static int page_through(lf_cli *c, lf_engine *e, const char *id, page_call *a) {
    while (!a->end) {
        a->done = false;
        lf_engine_audit(e, id, a->after, PAGE, on_page, a);
        int rc = lf_cli_wait(c, &a->done);
        if (rc) return rc;
    }
    return a->rc;
}

/* The journal path the store URL names, or NULL for another kind of
 * store; resolved by the engine, as lf_engine_new does. */
static const char *journal_path(const lf_cli *c) {
    lf_engine_config cfg = {.store = c->store};
    const char *url = lf_engine_store_url(&cfg);
    if (strncmp(url, "file:", 5) != 0 || !url[5]) return NULL;
    url += 5;
    return strncmp(url, "//", 2) == 0 ? url + 2 : url;
}

/* Every line of the log in order: a journal's bytes as they are (opened
 * read-only; memory bounded by the longest line), else through the
 * engine. *torn gets the length of an unfinished last line (a writer that
 * died mid-line): not part of the log, and left where it is. */
int lf_cli_each_line(lf_cli *c, lf_line_fn *fn, void *arg, size_t *torn) {
    const char *path = journal_path(c);
    *torn = 0;
    if (path) {
        FILE *f = fopen(path, "r");
        if (!f && errno == ENOENT) return 0;    /* no journal yet: no entries */
        if (!f) {
            char msg[600];
            snprintf(msg, sizeof msg, "journal %s: %s", path, strerror(errno));
            return lf_cli_fail(c, LF_UNAVAILABLE, msg);
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0) {
            size_t len = (size_t)n;
            if (line[len - 1] != '\n') {
                *torn = len;
                break;
            }
            if (fn(line, len - 1, arg) != 0) break;
        }
        free(line);
        fclose(f);
        return 0;
    }
    int rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    page_call a = {.c = c, .fn = fn, .arg = arg};
    return page_through(c, e, NULL, &a);
}

int lf_cli_print_log(lf_cli *c, const char *id, uint64_t after) {
    int rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    page_call a = {.c = c, .after = after};
    return page_through(c, e, id, &a);
}
