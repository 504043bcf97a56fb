/* request.c -- one request's life: the lf_req from dispatch to reply,
 * its access log line and metrics, reading its body and query, answering
 * it (whole, or as a chunked stream with backpressure).
 *
 * A reply queues the answer and frees the lf_req at once; a request whose
 * client has gone is still answered (evhttp then frees it) and counted,
 * logged "client_gone". Streams are told when their client leaves through
 * the connection's close callback. */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include "internal.h"

static bool id_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '_' || c == '.';
}

/* The caller's X-Request-Id if it is sane, else ours. */
static void request_id(lf_server *s, struct evhttp_request *req, char *out, size_t n) {
    const char *given =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (given) {
        size_t len = strlen(given), i = 0;
        while (i < len && id_char(given[i])) i++;
        if (len && len < n && i == len) {
            memcpy(out, given, len + 1);
            return;
        }
    }
    /* ours: the boot prefix (8 hex digits), '-', a counter in hex -- by
     * hand, not snprintf: it is made for every request */
    static const char hex[] = "0123456789abcdef";
    char id[32], *w = id + sizeof id;
    uint64_t v = ++s->next_id;
    *--w = '\0';
    do *--w = hex[v & 15]; while (v >>= 4);
    *--w = '-';
    for (unsigned b = s->boot, i = 0; i < 8; i++, b >>= 4) *--w = hex[b & 15];
    size_t len = (size_t)(id + sizeof id - 1 - w);
    if (len >= n) len = n - 1;
    memcpy(out, w, len);
    out[len] = '\0';
}

void lf_req_str(char *dst, size_t n, const char *src) {
    size_t len = strlen(src);
    if (len >= n) len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

lf_req *lf_req_new(lf_server *s, struct evhttp_request *req) {
    lf_req *r = lf_xmalloc(sizeof *r);
    memset(r, 0, offsetof(lf_req, param));
    r->param[0] = r->path[0] = r->id[0] = r->actor[0] = r->roles[0] = r->actor_kind[0] =
        r->principal[0] = '\0';
    r->srv = s;
    r->req = req;
    r->start_ns = lf_mono_ns();
    r->route = LF_RT_UNMATCHED;
    r->method = evhttp_request_get_command(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    r->bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    lf_conn_busy(s, r->bev, true);
    lf_req_str(r->actor, sizeof r->actor, "anonymous");
    request_id(s, req, r->id, sizeof r->id);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    lf_req_str(r->path, sizeof r->path, path && *path ? path : "/");
    size_t len = strlen(r->path);
    if (len > 1 && r->path[len - 1] == '/') r->path[len - 1] = '\0';
    r->query = u ? evhttp_uri_get_query(u) : NULL;
    TAILQ_INIT(&r->qs);
    r->next = s->live;
    if (s->live) s->live->prev = r;
    s->live = r;
    s->inflight++;
    return r;
}

const char *lf_method_name(enum evhttp_cmd_type m) {
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static void access_log(const lf_req *r, double seconds, bool gone) {
    if (!lf_log_enabled(LF_LOG_INFO)) return;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_log_begin(&b, r->status >= 500 ? LF_LOG_WARN : LF_LOG_INFO);
    lf_jw_str(&o, "msg", "request");
    lf_jw_str(&o, "request_id", r->id);
    lf_jw_str(&o, "method", lf_method_name(r->method));
    lf_jw_str(&o, "route",
              r->route < LF_RT__COUNT ? lf_routes[r->route].pattern : "unmatched");
    lf_jw_str(&o, "path", r->path);
    lf_jw_int(&o, "status", r->status);
    lf_jw_key(&o, "duration_ms");       /* ms, to the microsecond */
    uint64_t us = (uint64_t)(seconds * 1e6 + 0.5);
    char ms[LF_INT_CHARS];
    lf_buf_add(&b, ms, lf_fmt_int((int64_t)(us / 1000), ms));
    lf_buf_putc(&b, '.');
    lf_buf_putc(&b, (char)('0' + us / 100 % 10));
    lf_buf_putc(&b, (char)('0' + us / 10 % 10));
    lf_buf_putc(&b, (char)('0' + us % 10));
    lf_jw_str(&o, "actor", r->actor);
    if (gone) lf_jw_bool(&o, "client_gone", true);
    lf_log_end(&b);
}

/* The request is answered (or abandoned): count it, log it, let it go. */
static void req_finish(lf_req *r, bool gone) {
    lf_server *s = r->srv;
    double secs = (double)(lf_mono_ns() - r->start_ns) / 1e9;
    int st = r->status > 0 && r->status < 600 ? r->status : 0;
    s->metrics.requests[r->route][st]++;
    lf_timing_observe(&s->metrics.request_seconds, secs);
    access_log(r, secs, gone);
    if (r->prev) r->prev->next = r->next;
    else s->live = r->next;
    if (r->next) r->next->prev = r->prev;
    evhttp_clear_headers(&r->qs);
    lf_conn_busy(s, r->bev, false);
    free(r);
    s->inflight--;
    if (s->draining) lf_drain_check(s);
}

void lf_req_drop(lf_req *r) {
    if (r->req) {
        /* Nobody will answer it: free it whether or not it still has a
         * connection (a request without one is ours to free). */
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
        if (evcon) evhttp_connection_free(evcon);
        else evhttp_request_free(r->req);
        r->req = NULL;
    }
    if (!r->status) r->status = 499;    /* nginx's "client closed request" */
    req_finish(r, true);
}

const char *lf_req_body(lf_req *r, size_t *len) {
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    *len = evbuffer_get_length(in);
    return *len ? (const char *)evbuffer_pullup(in, -1) : "";
}

static void parse_query(lf_req *r) {
    if (r->qs_parsed) return;
    r->qs_parsed = true;
    if (r->query && evhttp_parse_query_str(r->query, &r->qs) != 0) {
        evhttp_clear_headers(&r->qs);
        r->qs_bad = true;
    }
}

const char *lf_req_query(lf_req *r, const char *name) {
    parse_query(r);
    return evhttp_find_header(&r->qs, name);
}

bool lf_query_check(lf_req *r, const char *const *allowed) {
    parse_query(r);
    if (r->qs_bad) {
        lf_reply_error(r, 400, "invalid_request", "malformed query string");
        return false;
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &r->qs, next) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, kv->key) != 0) a++;
        if (!*a) {
            lf_reply_error(r, 400, "invalid_request", "unknown query parameter '%s'",
                           kv->key);
            return false;
        }
    }
    return true;
}

bool lf_query_u64(lf_req *r, const char *name, uint64_t min, uint64_t max,
                  uint64_t *out) {
    const char *v = lf_req_query(r, name);
    if (!v) return true;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno || n < min || n > max) {
        if (max == UINT64_MAX)
            lf_reply_error(r, 400, "invalid_request",
                           "query parameter '%s' must be a "
                           "non-negative integer, got '%s'",
                           name, v);
        else
            lf_reply_error(r, 400, "invalid_request",
                           "query parameter '%s' must be an "
                           "integer from %llu to %llu, got '%s'",
                           name, (unsigned long long)min, (unsigned long long)max, v);
        return false;
    }
    *out = n;
    return true;
}

bool lf_query_history(lf_req *r) {
    uint64_t n = 0;
    if (!lf_query_u64(r, "history", 1, 1000000, &n)) return false;
    r->history = (size_t)n;
    return true;
}

size_t lf_req_history(const lf_req *r) {
    size_t max = r->srv->cfg.max_history;
    return r->history && r->history < max ? r->history : max;
}

const char *lf_req_header(lf_req *r, const char *name) {
    return r->req ? evhttp_find_header(evhttp_request_get_input_headers(r->req), name)
                  : NULL;
}

void lf_op_end(lf_req *r, int op) {
    lf_timing_observe(&r->srv->metrics.store_seconds[op],
                      (double)(lf_mono_ns() - r->op_start_ns) / 1e9);
}

/* ---- replies ----------------------------------------------------------- */

void lf_add_header(lf_req *r, const char *name, const char *value) {
    if (r->req) evhttp_add_header(evhttp_request_get_output_headers(r->req), name, value);
}

void lf_add_date(struct evkeyvalq *headers) {
    /* One server, one loop thread: the cache needs no lock. */
    static time_t last = -1;
    static char date[48];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        /* RFC 9110's IMF-fixdate; the names are English because nothing
         * in loopforge calls setlocale (the C locale). */
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    evhttp_add_header(headers, "Date", date);
}

static void common_headers(lf_req *r, const char *content_type) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    lf_add_date(h);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "X-Request-Id", r->id);
    /* Draining: every answer closes its connection, so keep-alive
     * clients move to another server instead of waiting on this one. */
    if (r->srv->draining) evhttp_add_header(h, "Connection", "close");
}

static void free_body(const void *data, size_t len, void *arg) {
    (void)data;
    (void)len;
    free(arg);
}

/* Answers with body; `owned` (malloc'd) is handed to the output buffer
 * as is, so a large reply is not copied once more on its way out. */
static void send_reply(lf_req *r, int status, const char *content_type, const char *body,
                       size_t len, char *owned) {
    bool gone = true;
    r->status = status;
    if (r->req) {
        gone = evhttp_request_get_connection(r->req) == NULL;
        common_headers(r, content_type);
        struct evbuffer *out = evhttp_request_get_output_buffer(r->req);
        if (!owned || evbuffer_add_reference(out, owned, len, free_body, owned) != 0) {
            evbuffer_add(out, body, len);
            free(owned);
        }
        owned = NULL;
        /* Without a connection evhttp frees the request here. */
        evhttp_send_reply(r->req, status, NULL, NULL);
        r->req = NULL;
    }
    free(owned);
    req_finish(r, gone);
}

void lf_reply(lf_req *r, int status, const char *content_type, const char *body,
              size_t len) {
    send_reply(r, status, content_type, body, len, NULL);
}

void lf_reply_take(lf_req *r, int status, const char *content_type, char *body,
                   size_t len) {
    send_reply(r, status, content_type, body, len, body);
}

void lf_reply_json(lf_req *r, int status, const char *json) {
    lf_reply(r, status, "application/json", json, strlen(json));
}

void lf_reply_error(lf_req *r, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_bool(&o, "success", false);
    lf_jw_str(&o, "code", code);
    lf_jw_str(&o, "error", msg);
    lf_jw_close(&o, '}');
    lf_reply(r, status, "application/json", b.p, b.len);
    lf_buf_free(&b);
}

int lf_status_of(lf_code code) {
    switch (code) {
    case LF_OK: return 200;
    case LF_NOT_FOUND: return 404;
    case LF_INVALID_TRANSITION: return 409;
    case LF_DENIED: return 403;
    case LF_CONFLICT: return 409;
    case LF_INVALID_REQUEST: return 400;
    case LF_UNAVAILABLE: return 503;
    case LF_DUPLICATE_REF: return 409;
    case LF_IDEMPOTENCY_MISMATCH: return 409;
    default: return 500;
    }
}

void lf_reply_result(lf_req *r, const lf_result *res, int ok_status) {
    char *json = lf_result_json_tail(res, lf_req_history(r));
    lf_reply_take(r, res->success ? ok_status : lf_status_of(res->code),
                  "application/json", json, strlen(json));
}

/* ---- chunked streams --------------------------------------------------- */

/* The client went away mid-stream. By now evhttp has either detached our
 * request from the dying connection (a failure: the request is ours to
 * free) or is about to free it along with the connection (evhttp_free). */
static void on_stream_closed(struct evhttp_connection *evcon, void *arg) {
    lf_req *r = arg;
    if (r->req && !evhttp_request_get_connection(r->req)) evhttp_request_free(r->req);
    r->req = NULL;
    lf_conn_closed(evcon, r->srv);
    r->gone(r);
}

void lf_stream_detach(lf_req *r) {
    struct evhttp_connection *evcon =
        r->req ? evhttp_request_get_connection(r->req) : NULL;
    if (evcon) evhttp_connection_set_closecb(evcon, lf_conn_closed, r->srv);
}

void lf_stream_start(lf_req *r, int status, const char *content_type,
                     lf_stream_cb *gone) {
    r->status = status;
    r->gone = gone;
    r->streaming = true;
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
    common_headers(r, content_type);
    if (!evcon) return;         /* the first chunk reports it gone */
    evhttp_connection_set_closecb(evcon, on_stream_closed, r);
    evhttp_send_reply_start(r->req, status, NULL);
}

static void on_chunk_flushed(struct evhttp_connection *evcon, void *arg) {
    lf_req *r = arg;
    (void)evcon;
    lf_stream_cb *cb = r->flushed;
    r->flushed = NULL;
    cb(r);
}

void lf_stream_chunk(lf_req *r, struct evbuffer *data, lf_stream_cb *flushed) {
    if (!r->req || !evhttp_request_get_connection(r->req)) {
        if (r->req) evhttp_request_free(r->req);
        r->req = NULL;
        r->gone(r);
        return;
    }
    r->flushed = flushed;
    evhttp_send_reply_chunk_with_cb(r->req, data, on_chunk_flushed, r);
}

void lf_stream_end(lf_req *r) {
    bool gone = r->req == NULL;
    if (r->req) {
        lf_stream_detach(r);
        evhttp_send_reply_end(r->req);  /* frees a detached request too */
        r->req = NULL;
    }
    req_finish(r, gone);
}

void lf_stream_abort(lf_req *r) {
    lf_stream_detach(r);
    if (r->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
        /* No final chunk: the client sees a truncated body, not a short
         * but seemingly complete log. Freeing the connection frees the
         * request with it. */
        if (evcon) evhttp_connection_free(evcon);
        else evhttp_request_free(r->req);
        r->req = NULL;
    }
    req_finish(r, false);
}

/* ---- request bodies ---------------------------------------------------- */

void lf_json_error(const char *body, size_t len, const char *end, char *msg, size_t n) {
    size_t off = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
    int line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (body[i] == '\n') {
            line++;
            col = 1;
        } else col++;
    }
    snprintf(msg, n, "malformed JSON at offset %zu (line %d, column %d)", off, line, col);
}

cJSON *lf_parse_body(lf_req *r) {
    cJSON *j = lf_parse_body_any(r);
    if (!j) return NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        lf_reply_error(r, 400, "invalid_request", "the body must be a JSON object");
        return NULL;
    }
    /* A field given twice is ambiguous (which one counts?): refused. */
    for (const cJSON *a = j->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0) {
                lf_reply_error(r, 400, "invalid_request", "field '%s' appears twice",
                               a->string);
                cJSON_Delete(j);
                return NULL;
            }
    return j;
}

cJSON *lf_parse_body_any(lf_req *r) {
    size_t len;
    const char *body = lf_req_body(r, &len);
    if (len == 0) {
        lf_reply_error(r, 400, "invalid_request", "a JSON object body is required");
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (j) {
        while (end < body + len &&
               (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
            end++;
        if (end < body + len) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (!j) {
        char msg[128];
        lf_json_error(body, len, end, msg, sizeof msg);
        lf_reply_error(r, 400, "invalid_request", "%s", msg);
        return NULL;
    }
    char why[256];
    if (lf_json_text_check(body, len, NULL, why, sizeof why)) {
        cJSON_Delete(j);
        lf_reply_error(r, 400, "invalid_request", "%s", why);
        return NULL;
    }
    return j;
}
