/* notify.c -- hooks' outbound notifications: one HTTP POST per notify{},
 * on the host's event base, never waited for.
 *
 * Owns the POSTs in flight. Each gets its own connection (notifications
 * are few and go to many places, so there is nothing worth keeping
 * alive) and one timer, which is first the deadline of the whole
 * exchange -- name lookup, connect, send, reply -- and then, once evhttp
 * has called back, the moment the POST is cleaned up: a connection must
 * not be freed from inside its own callback. Outcomes (the status, a
 * timeout, no connection) go to the engine's log and counters; nothing is
 * retried, and a failure never reaches the transition that caused it.
 *
 * http:// only (no TLS). Addresses are used as they are; a host name is
 * resolved with evdns on the same base, because getaddrinfo would block
 * the host's loop. Log lines name the scheme, host and port, never the
 * path or query: webhook URLs often carry their secret there. */
#include "notify.h"
#include "../core/mem.h"
#include "../core/buf.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#define MAX_IN_FLIGHT                                                                    \
    256           /* a hook flooding a dead endpoint
                                       must not pile up sockets */
#define MAX_REPLY_BODY (64 * 1024)  /* we never read it; don't hoard it */
#define MAX_REPLY_HEADERS (16 * 1024)

typedef struct pending pending;

struct lf_notifier {
    struct event_base *base;
    struct evdns_base *dns;         /* made for the first host name */
    lf_notify_sink sink;
    pending *head;                  /* in flight */
    size_t n;
};

struct pending {
    lf_notifier *nt;
    pending *prev, *next;
    struct evhttp_connection *conn;
    struct event *timer;            /* deadline, then cleanup */
    bool answered;                  /* evhttp called back: cleanup is due */
    bool lookup;                    /* the host is a name (evdns) */
    int status;                     /* HTTP status; 0: no reply */
    int error;                      /* evhttp's error, or -1 */
    int dns_error;                  /* the lookup's EVUTIL_EAI_*, or 0 */
    int timeout_ms;
    char *hook;
    char where[320];                /* "http://HOST:PORT", for the log */
};

/* ---- reporting ---------------------------------------------------------- */

static void report(lf_notifier *nt, lf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(lf_notifier *nt, lf_log_level level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (*nt->sink.log)(level, msg, *nt->sink.log_ud);
}

static const char *evhttp_error_name(int error) {
    switch (error) {
    case EVREQ_HTTP_TIMEOUT: return "timed out";
    case EVREQ_HTTP_EOF: return "connection closed before a reply";
    case EVREQ_HTTP_INVALID_HEADER: return "malformed reply";
    case EVREQ_HTTP_BUFFER_ERROR: return "I/O error";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "reply too large";
    default: return "no reply";
    }
}

/* Why there was no reply. evhttp calls back with a request but neither
 * status nor error only when it could not connect; errno is no help by
 * then (closing the socket has overwritten it). */
static void no_reply(const pending *p, char *out, size_t len) {
    if (p->dns_error)
        snprintf(out, len, "the name did not resolve: %s",
                 evutil_gai_strerror(p->dns_error));
    else if (p->error >= 0) snprintf(out, len, "%s", evhttp_error_name(p->error));
    else if (p->lookup)
        snprintf(out, len,
                 "no connection (refused, unreachable, or the name did not resolve)");
    else snprintf(out, len, "no connection (refused or unreachable)");
}

/* ---- one POST ----------------------------------------------------------- */

static void pending_unlink(pending *p) {
    lf_notifier *nt = p->nt;
    if (p->prev) p->prev->next = p->next;
    else nt->head = p->next;
    if (p->next) p->next->prev = p->prev;
    nt->n--;
}

/* Frees the POST; evhttp frees a request still on the connection without
 * calling back. */
static void pending_free(pending *p) {
    if (p->conn) evhttp_connection_free(p->conn);
    if (p->timer) event_free(p->timer);
    free(p->hook);
    free(p);
}

/* Reports the outcome and lets the POST go. `cancelled`: the engine is
 * being freed. The log comes last, with everything already let go, so
 * the log callback sees a consistent engine whatever it does. */
static void finish(pending *p, bool cancelled) {
    lf_notifier *nt = p->nt;
    char why[160], line[600];
    bool ok = p->answered && p->status >= 200 && p->status < 300;
    if (ok)
        snprintf(line, sizeof line, "hook %s: notify %s: HTTP %d", p->hook, p->where,
                 p->status);
    else {
        if (p->answered && p->status) snprintf(why, sizeof why, "HTTP %d", p->status);
        else if (p->answered) no_reply(p, why, sizeof why);
        else if (cancelled) snprintf(why, sizeof why, "cancelled: the engine was freed");
        else snprintf(why, sizeof why, "no reply within %d ms", p->timeout_ms);
        snprintf(line, sizeof line, "hook %s: notify %s failed: %s", p->hook, p->where,
                 why);
    }
    pending_unlink(p);
    pending_free(p);
    if (ok) nt->sink.stats->notify_sent++;
    else nt->sink.stats->notify_failed++;
    report(nt, ok ? LF_LOG_INFO : LF_LOG_WARN, "%s", line);
}

/* The deadline, or the cleanup evhttp's callback asked for. */
static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    finish(arg, false);
}

/* evhttp calls back once per request, from inside the connection's own
 * event handling, and frees the request after we return: note what
 * happened and clean up from the loop. */
static void answered(pending *p) {
    static const struct timeval now = {0, 0};
    p->answered = true;
    evtimer_del(p->timer);
    evtimer_add(p->timer, &now);
}

/* A lookup that failed shows up as a connection error: ask the
 * connection's bufferevent, while it is still there, what really went
 * wrong. */
static void note_dns_error(pending *p) {
    struct bufferevent *bev =
        p->lookup ? evhttp_connection_get_bufferevent(p->conn) : NULL;
    if (bev && !p->dns_error) p->dns_error = bufferevent_socket_get_dns_error(bev);
}

static void on_error(enum evhttp_request_error error, void *arg) {
    pending *p = arg;
    p->error = (int)error;
    note_dns_error(p);
}

static void on_reply(struct evhttp_request *req, void *arg) {
    pending *p = arg;
    if (p->answered) return;
    p->status = req ? evhttp_request_get_response_code(req) : 0;
    if (!p->status) note_dns_error(p);
    answered(p);
}

/* The host part of a URL as a connection wants it (no brackets around an
 * IPv6 address); false if it does not fit. */
static bool bare_host(const char *host, char *out, size_t len) {
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= len) return false;
    memcpy(out, host, n);
    out[n] = '\0';
    return true;
}

static bool is_address(const char *host) {
    struct in6_addr a;
    return evutil_inet_pton(AF_INET, host, &a) == 1 ||
           evutil_inet_pton(AF_INET6, host, &a) == 1;
}

/* Headers and body of the POST; false if a header value is refused (a
 * content type with a line break in it, say). */
static bool fill_request(struct evhttp_request *req, const struct evhttp_uri *u,
                         const lf_notification *n) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300];
    int port = evhttp_uri_get_port(u);
    if (port > 0 && port != 80)
        snprintf(host, sizeof host, "%s:%d", evhttp_uri_get_host(u), port);
    else snprintf(host, sizeof host, "%s", evhttp_uri_get_host(u));
    return evhttp_add_header(h, "Host", host) == 0 &&
           evhttp_add_header(h, "Content-Type", n->content_type) == 0 &&
           evhttp_add_header(h, "User-Agent", "loopforge/" LF_VERSION_STRING) == 0 &&
           evhttp_add_header(h, "Connection", "close") == 0 &&
           evbuffer_add(evhttp_request_get_output_buffer(req), n->body, n->body_len) == 0;
}

/* Logs a notification that never got going, and counts it. */
static void refuse(lf_notifier *nt, const lf_notification *n, const char *why) {
    nt->sink.stats->notify_failed++;
    report(nt, LF_LOG_WARN, "hook %s: notify failed: %s", n->hook, why);
}

/* Sets up the connection and the request; returns what went wrong, or
 * NULL. On success the request belongs to the connection. */
static const char *connect_post(lf_notifier *nt, pending *p, const struct evhttp_uri *u,
                                const char *host, const lf_notification *n) {
    int port = evhttp_uri_get_port(u);
    if (port <= 0) port = 80;
    if (p->lookup && !nt->dns &&
        !(nt->dns = evdns_base_new(nt->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                 EVDNS_BASE_DISABLE_WHEN_INACTIVE)))
        return "no resolver for host names";
    p->conn = lf_xptr(evhttp_connection_base_new(nt->base, p->lookup ? nt->dns : NULL,
                                                 host, (ev_uint16_t)port));
    struct evhttp_request *req = lf_xptr(evhttp_request_new(on_reply, p));
    evhttp_request_set_error_cb(req, on_error);
    if (!fill_request(req, u, n)) {
        evhttp_request_free(req);
        return "content_type or body refused by the HTTP library";
    }
    evhttp_connection_set_max_body_size(p->conn, MAX_REPLY_BODY);
    evhttp_connection_set_max_headers_size(p->conn, MAX_REPLY_HEADERS);
    lf_buf path = LF_BUF_INIT;
    const char *pa = evhttp_uri_get_path(u), *q = evhttp_uri_get_query(u);
    lf_buf_puts(&path, pa && *pa ? pa : "/");
    if (q) lf_buf_printf(&path, "?%s", q);
    /* The request is the connection's from here on, even on failure
     * (evhttp frees it then). */
    int rc = evhttp_make_request(p->conn, req, EVHTTP_REQ_POST, lf_buf_str(&path));
    lf_buf_free(&path);
    if (rc != 0 && !p->answered) {
        p->error = -1;
        answered(p);
    }
    return NULL;
}

static void start(lf_notifier *nt, const lf_notification *n) {
    char host[256], why[128];
    if (nt->n >= MAX_IN_FLIGHT) {
        snprintf(why, sizeof why, "dropped, %d notifications already in flight",
                 MAX_IN_FLIGHT);
        refuse(nt, n, why);
        return;
    }
    struct evhttp_uri *u = evhttp_uri_parse(n->url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    if (!scheme || evutil_ascii_strcasecmp(scheme, "http") != 0 ||
        !evhttp_uri_get_host(u) ||
        !bare_host(evhttp_uri_get_host(u), host, sizeof host)) {
        if (u) evhttp_uri_free(u);
        refuse(nt, n, "not an http://HOST[:PORT]/PATH URL");
        return;
    }
    pending *p = lf_xcalloc(1, sizeof *p);
    p->hook = lf_xstrdup(n->hook);
    p->timer = lf_xptr(evtimer_new(nt->base, on_timer, p));
    p->nt = nt;
    p->error = -1;
    p->timeout_ms = n->timeout_ms > 0 ? n->timeout_ms : LF_NOTIFY_TIMEOUT_MS;
    p->lookup = !is_address(host);
    int port = evhttp_uri_get_port(u);
    snprintf(p->where, sizeof p->where,
             strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host,
             port > 0 ? port : 80);
    /* In the list and on the clock before evhttp can call back. */
    p->next = nt->head;
    if (nt->head) nt->head->prev = p;
    nt->head = p;
    nt->n++;
    struct timeval tv = {p->timeout_ms / 1000, (p->timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    const char *err = connect_post(nt, p, u, host, n);
    evhttp_uri_free(u);
    if (err) {
        pending_unlink(p);
        pending_free(p);
        refuse(nt, n, err);
    }
}

/* ---- the engine's side -------------------------------------------------- */

void lf_notify_send(lf_notifier **np, struct event_base *base, const lf_notify_sink *sink,
                    const lf_notification *ns, size_t n) {
    if (!n) return;
    if (!base) {
        /* Sending would mean blocking the caller: a host without a loop
         * (the CLI, a Lua script) gets a line per notification instead. */
        for (size_t i = 0; i < n; i++) {
            char line[300];
            snprintf(line, sizeof line,
                     "hook %s: notify skipped: no event loop (the "
                     "engine was created without an event base)",
                     ns[i].hook);
            sink->stats->notify_failed++;
            (*sink->log)(LF_LOG_WARN, line, *sink->log_ud);
        }
        return;
    }
    if (!*np) {
        lf_notifier *nt = lf_xcalloc(1, sizeof *nt);
        nt->base = base;
        nt->sink = *sink;
        *np = nt;
        /* evhttp writes with writev(2): a server that hangs up early would
         * kill the host with SIGPIPE instead of failing one POST. As the
         * Redis store does, only a disposition nobody chose is changed. */
        struct sigaction sa;
        if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
            signal(SIGPIPE, SIG_IGN);
    }
    for (size_t i = 0; i < n; i++) start(*np, &ns[i]);
}

void lf_notify_free(lf_notifier *nt) {
    if (!nt) return;
    while (nt->head) finish(nt->head, !nt->head->answered);
    /* Lookups cancelled just now, and any the resolver still holds, end
     * in callbacks libevent runs on the base's next turn (failing them
     * here makes sure none of those reads the resolver): a host that
     * frees its base without one more turn leaks what they hold. */
    if (nt->dns) evdns_base_free(nt->dns, 1);
    free(nt);
}
