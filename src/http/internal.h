/* internal.h -- what the modules of the HTTP server share: the server
 * state, the per-request context, replies, the route table, tokens,
 * metrics and the JSON log.
 *
 *   server.c   routes, listening, dispatch, auth checks, reload, shutdown
 *   conn.c     the connection cap; knowing when a connection is gone
 *   request.c  a request's life: body, query, replies, streams, access log
 *   api.c      /v1 records, transitions, policies, reload, health
 *   audit.c    NDJSON audit streams (chunked, with backpressure)
 *   webhook.c  GitHub intake: signature, dedupe, routes -> engine
 *   auth.c     tokens file and bearer checks
 *   metrics.c  counters and the Prometheus text
 *   log.c      one-line JSON logs on stderr */
#ifndef LF_HTTP_INTERNAL_H
#define LF_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include "http.h"
#include "../core/buf.h"
#include "../core/text.h"
#include "../core/mem.h"
#include "../core/entry.h"
#include "../core/map.h"

typedef struct lf_server lf_server;
typedef struct lf_req lf_req;

/* An open connection (conn.c): whether a request of it is being
 * answered, and since when it has been reading one (or idle). */
typedef struct lf_conn {
    struct bufferevent *bev;
    int64_t since_ns;           /* accepted, or its last answer finished */
    int busy;                   /* requests of it being answered */
    bool nodelay;               /* TCP_NODELAY is set on its socket */
} lf_conn;
typedef struct lf_tokens lf_tokens;

/* ---- routes ----------------------------------------------------------- */

typedef void lf_handler(lf_req *r);

typedef struct lf_route_def {
    enum evhttp_cmd_type method;
    const char *pattern;        /* "/v1/records/{id}/transitions" */
    lf_role role;               /* LF_ROLE_NONE: no bearer token needed */
    bool webhook;               /* webhook body limit, HMAC not bearer */
    lf_handler *fn;
} lf_route_def;

enum {
    LF_RT_HEALTHZ,
    LF_RT_READYZ,
    LF_RT_METRICS,
    LF_RT_CREATE,
    LF_RT_LIST,
    LF_RT_GET,
    LF_RT_TRANSITION,
    LF_RT_RECORD_AUDIT,
    LF_RT_AUDIT,
    LF_RT_POLICIES,
    LF_RT_RELOAD,
    LF_RT_GITHUB,
    LF_RT_DELETE,
    LF_RT_ATTESTATIONS,
    LF_RT_IMPORT,
    LF_RT_TIMERS,
    LF_RT_EXPLAIN,
    LF_RT_ACK,
    LF_RT_UI_ROOT,
    LF_RT_UI_INDEX,
    LF_RT_UI_FILE,
    LF_RT_WORKFLOWS,
    LF_RT_WORKFLOW_SVG,
    LF_RT_EVENTS,
    LF_RT_CHECKPOINT,
    LF_RT__COUNT,
    LF_RT_UNMATCHED = LF_RT__COUNT  /* metrics row for unknown paths */
};
extern const lf_route_def lf_routes[LF_RT__COUNT];

/* ---- metrics ---------------------------------------------------------- */

enum {
    LF_OP_CREATE,
    LF_OP_TRANSITION,
    LF_OP_GET,
    LF_OP_FIND,
    LF_OP_LIST,
    LF_OP_AUDIT,
    LF_OP_RELOAD,
    LF_OP_DELETE,
    LF_OP__COUNT
};
#define LF_HIST_BUCKETS 15

typedef struct lf_timing {
    uint64_t counts[LF_HIST_BUCKETS];   /* by upper bound, last = +Inf */
    uint64_t n;
    double sum;                         /* seconds */
} lf_timing;

enum {
    LF_WH_OK,
    LF_WH_DUPLICATE,
    LF_WH_IGNORED,
    LF_WH_PING,
    LF_WH_UNAUTHORIZED,
    LF_WH_INVALID,
    LF_WH_ERROR,
    LF_WH_LATE,
    LF_WH_UNCHANGED,            /* matched a record, taught it nothing */
    LF_WH_STALE,                /* older than what the record knew */
    LF_WH__COUNT
};
#define LF_WH_EVENTS 11                 /* the known events, then "other" */

typedef struct lf_metrics {
    uint64_t requests[LF_RT__COUNT + 1][600];   /* by route, status */
    lf_timing request_seconds;
    lf_timing store_seconds[LF_OP__COUNT];
    uint64_t webhooks[LF_WH_EVENTS + 1][LF_WH__COUNT];
    uint64_t token_reloads_ok, token_reloads_failed;
    uint64_t log_lines_dropped;
    uint64_t connections_slow;      /* cut: no whole request within --timeout */
    uint64_t connections_evicted;   /* cut at the cap to make room */
} lf_metrics;

void lf_timing_observe(lf_timing *h, double seconds);
void lf_metrics_webhook(lf_metrics *m, const char *event, int result);
/* The Prometheus text exposition of everything (server + engine). */
void lf_metrics_render(lf_server *s, lf_buf *out);

/* ---- the server ------------------------------------------------------- */

struct lf_server {
    lf_http_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    lf_engine *engine;
    lf_tokens *tokens;          /* NULL: open (loopback only) */
    unsigned char *secret;      /* webhook HMAC key, or NULL */
    size_t secret_len;
    lf_metrics metrics;
    /* Connections: each one's bufferevent, held by an extra reference so
     * we can tell when evhttp has let go of it, and its clock (conn.c). */
    lf_conn *conns;
    size_t nconns, conns_cap;
    bool accept_paused;
    struct event *sweep_ev;
    /* Requests we still owe an answer (a doubly linked list). */
    lf_req *live;
    size_t inflight;
    bool draining;
    int stop_signal;
    struct event *sig_term, *sig_int, *sig_hup, *drain_ev;
    uint64_t started_ns, drain_started_ns;
    uint64_t next_id;
    unsigned boot;              /* random prefix of request ids */
    char listen_addr[80];       /* what we print and log */
    /* Signed checkpoints (checkpoints.c). */
    struct event *cp_ev;
    uint64_t cp_appended;       /* stats.appended at the last one */
    uint64_t cp_ns;             /* when it was started */
    bool cp_busy;
    /* The web console (console.c). */
    char *ui_dir;               /* its files, or NULL: none found */
    lf_req **events;            /* GET /v1/events streams */
    size_t nevents, capevents;
    struct event *events_ping;
    char svg_gen[LF_HASH_LEN + 1];  /* the generation the SVGs are of */
    char gen_seen[LF_HASH_LEN + 1]; /* the generation serving, and since */
    char gen_since[LF_TS_LEN + 1];
    char *cp_last;              /* the last signed checkpoint's document */
    lf_map svg;                 /* workflow name (owned) -> SVG text */
};

/* ---- the web console (console.c) --------------------------------------- */

void lf_console_start(lf_server *s);
/* Notes when the serving policy generation changed (called every second
 * and at each /v1/policies): its `loaded_at`. */
void lf_console_policies_seen(lf_server *s);
void lf_api_checkpoint_latest(lf_req *r);
/* Ends the event streams (a draining server owes them nothing more). */
void lf_console_drain(lf_server *s);
void lf_console_free(lf_server *s);
void lf_console_file(lf_req *r);
void lf_console_root(lf_req *r);
void lf_api_workflows(lf_req *r);
void lf_api_workflow_svg(lf_req *r);
void lf_api_events(lf_req *r);

/* ---- signed checkpoints (checkpoints.c) --------------------------------- */

/* Starts the once-a-second tick: due timers, and the checkpoint check. */
void lf_checkpoints_start(lf_server *s);
/* With a signing key, a checkpoint once cfg.checkpoint_every entries are
 * uncovered, or any are and the last is cfg.checkpoint_seconds old: after
 * every entry this server appends (the console's watch passes it on),
 * and at each tick. */
void lf_checkpoints_appended(lf_server *s);
/* At shutdown, before the engine goes: one more, if anything was
 * appended since the last; waits for it on the loop. */
void lf_checkpoints_final(lf_server *s);

/* ---- a request -------------------------------------------------------- */

struct lf_req {
    lf_server *srv;
    struct evhttp_request *req; /* NULL once the connection is gone */
    struct bufferevent *bev;    /* its connection's (compared, never used) */
    lf_req *prev, *next;        /* in srv->live */
    int route;                  /* LF_RT_*, or LF_RT_UNMATCHED */
    enum evhttp_cmd_type method;
    const char *query;          /* the raw query string, or NULL */
    struct evkeyvalq qs;        /* the query, parsed on first use */
    bool qs_parsed, qs_bad;
    lf_role role;
    uint64_t start_ns;
    uint64_t op_start_ns;       /* around one engine call */
    bool streaming;             /* a chunked reply has started */
    void (*gone)(lf_req *);     /* stream: the client went away */
    void (*flushed)(lf_req *);  /* stream: the pending chunk went out */
    int status;                 /* once answered */
    size_t history;             /* ?history=N, or 0: --max-history */
    void *data;                 /* the handler's own state */
    /* The strings last: lf_req_new zeroes what is above and empties
     * these (zeroing the whole ~1 KB was ~2 % of a request). */
    char param[160];            /* the {id} in the path */
    char path[256];
    char id[48];                /* request id, echoed as X-Request-Id */
    char actor[80];             /* token name, or "anonymous" */
    char roles[LF_ROLES_MAX];   /* the token's roles, or "" */
    char actor_kind[16];        /* the token's kind=, or "" */
    char principal[65];         /* the token's principal=, or "" */
};

#include "../core/clock.h"     /* lf_mono_ns */

/* The request body as one contiguous block (not NUL-terminated). */
const char *lf_req_body(lf_req *r, size_t *len);
/* A query parameter (decoded), or NULL. The string lives as long as r. */
const char *lf_req_query(lf_req *r, const char *name);
/* Replies 400 (and returns false) for a malformed query string or a
 * parameter not in `allowed` (NULL-terminated): a typo'd filter must not
 * silently list everything. */
bool lf_query_check(lf_req *r, const char *const *allowed);
/* An optional integer parameter within [min, max]; 400 otherwise. */
bool lf_query_u64(lf_req *r, const char *name, uint64_t min, uint64_t max, uint64_t *out);
/* ?history=N on a route that answers with records: each carries its
 * last N transitions (from 1; past the server's --max-history, that);
 * 400 otherwise. */
bool lf_query_history(lf_req *r);
/* The transitions a record in r's reply carries. */
size_t lf_req_history(const lf_req *r);
const char *lf_req_header(lf_req *r, const char *name);

/* Measures one engine call for the store latency histogram. */
static inline void lf_op_begin(lf_req *r) { r->op_start_ns = lf_mono_ns(); }
void lf_op_end(lf_req *r, int op);

/* Replies. Each answers the request and frees r: do not touch r after. */
void lf_reply(lf_req *r, int status, const char *content_type, const char *body,
              size_t len);
/* The same, taking ownership of a malloc'd body (no copy). */
void lf_reply_take(lf_req *r, int status, const char *content_type, char *body,
                   size_t len);
void lf_reply_json(lf_req *r, int status, const char *json);
/* {"success":false,"code":CODE,"error":MESSAGE} */
void lf_reply_error(lf_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An engine result: ok_status on success, else the code's status; the
 * body is lf_result_json. */
void lf_reply_result(lf_req *r, const lf_result *res, int ok_status);
int lf_status_of(lf_code code);
void lf_add_header(lf_req *r, const char *name, const char *value);
/* The Date header every answer carries, formatted once a second (evhttp
 * would format it for each answer). */
void lf_add_date(struct evkeyvalq *headers);

/* Chunked replies (audit streams). start sends the status line and
 * headers; each chunk calls `flushed` once it has reached the socket
 * (backpressure); end completes the reply and frees r; abort cuts the
 * connection so the client sees a truncated body, and frees r. `gone` is
 * called if the client goes away while a chunk is pending: r is then
 * freed by the server right after it returns. */
typedef void lf_stream_cb(lf_req *r);
void lf_stream_start(lf_req *r, int status, const char *content_type, lf_stream_cb *gone);
void lf_stream_chunk(lf_req *r, struct evbuffer *data, lf_stream_cb *flushed);
void lf_stream_end(lf_req *r);
void lf_stream_abort(lf_req *r);
/* Frees a request whose connection is gone (r->req == NULL). */
void lf_req_drop(lf_req *r);

/* ---- request.c, conn.c, server.c internals ---------------------------- */

lf_req *lf_req_new(lf_server *s, struct evhttp_request *req);
/* src into one of a request's strings (dst, n bytes), cut to fit: by a
 * copy, not snprintf -- it is done for every request. */
void lf_req_str(char *dst, size_t n, const char *src);
const char *lf_method_name(enum evhttp_cmd_type m);
/* A stream's connection goes back to the plain close callback. */
void lf_stream_detach(lf_req *r);
/* The evhttp bevcb: a counted bufferevent for a new connection. */
struct bufferevent *lf_conn_new(struct event_base *base, void *arg);
/* evhttp close callback (arg: the server): sweep soon. */
void lf_conn_closed(struct evhttp_connection *evcon, void *arg);
void lf_conn_sweep(lf_server *s);
/* A request of the connection with this bufferevent is being answered /
 * has been answered (its read clock starts again). */
void lf_conn_busy(lf_server *s, struct bufferevent *bev, bool busy);
void lf_conn_on_sweep(evutil_socket_t fd, short what, void *arg);
/* Every open connection's replies have left its buffer. */
bool lf_conns_flushed(lf_server *s);
/* Drops our references (evhttp has freed the connections). */
void lf_conns_release(lf_server *s);
/* Draining: stop once nothing is owed (called as requests finish). */
void lf_drain_check(lf_server *s);

/* ---- handlers --------------------------------------------------------- */

void lf_api_healthz(lf_req *r);
void lf_api_readyz(lf_req *r);
void lf_api_metrics(lf_req *r);
void lf_api_create(lf_req *r);
void lf_api_list(lf_req *r);
void lf_api_get(lf_req *r);
void lf_api_transition(lf_req *r);
void lf_api_delete(lf_req *r);
void lf_api_attestations(lf_req *r);
void lf_api_explain(lf_req *r);
void lf_api_ack(lf_req *r);
void lf_api_import(lf_req *r);
void lf_api_timers(lf_req *r);
void lf_api_policies(lf_req *r);
void lf_api_reload(lf_req *r);
void lf_audit_all(lf_req *r);
void lf_audit_record(lf_req *r);
void lf_webhook_github(lf_req *r);

/* Reloads the policies (and the tokens file) for SIGHUP and the admin
 * endpoint; cb gets the engine's reload outcome. */
void lf_server_reload(lf_server *s, const char *actor, lf_reload_cb *cb, void *arg);

/* Parses a JSON request body that must be an object. NULL after replying
 * 400 with the parse position (r is then freed). */
struct cJSON;
struct cJSON *lf_parse_body(lf_req *r);
/* Any JSON value (text checked), or NULL after a 400. */
struct cJSON *lf_parse_body_any(lf_req *r);
/* "malformed JSON at offset N (line L, column C)" for a parse that
 * stopped at `end`. */
void lf_json_error(const char *body, size_t len, const char *end, char *msg, size_t n);

/* ---- auth.c ----------------------------------------------------------- */

/* NULL with "FILE:LINE: message" in err. */
lf_tokens *lf_tokens_load(const char *path, char *err, size_t errlen);
void lf_tokens_free(lf_tokens *t);
size_t lf_tokens_count(const lf_tokens *t);
/* The token's name and role for an Authorization header value, or NULL
 * when it is missing, malformed or unknown. */
/* The name of the token `authorization` ("Bearer TOKEN") presents, with
 * its access role and its whole roles field (*roles may be NULL), or NULL. */
const char *lf_tokens_check(const lf_tokens *t, const char *authorization, lf_role *role,
                            const char **roles, const char **kind,
                            const char **principal);
/* The webhook secret: the file's bytes without trailing CR/LF. */
unsigned char *lf_secret_load(const char *path, size_t *len, char *err, size_t errlen);

/* ---- log.c ------------------------------------------------------------ */

void lf_log_set_level(lf_log_level min);
bool lf_log_enabled(lf_log_level level);
/* Starts a line {"time":…,"level":…; add fields through the returned
 * writer, then lf_log_end closes the line and writes it in one write. */
lf_jw lf_log_begin(lf_buf *b, lf_log_level level);
void lf_log_end(lf_buf *b);
/* Batch the lines of each turn of the loop into one write (attach), or
 * write each at once again after flushing what is pending (detach). */
void lf_log_attach(struct event_base *base);
void lf_log_detach(void);
/* A line with a message and no other fields. */
void lf_logf(lf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The engine's log, in the same format (lf_engine_set_log). */
void lf_log_engine(lf_log_level level, const char *msg, void *ud);

#endif
