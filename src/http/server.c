/* server.c -- the HTTP server itself: the route table, listening,
 * dispatch to handlers (routing, body limits, bearer auth), reloads,
 * signals (SIGHUP reloads; SIGTERM/SIGINT drain and stop), setup and
 * teardown. Connections are conn.c's, a request's life request.c's.
 *
 * One evhttp on the engine's event_base; everything runs on that loop.
 * A request is an lf_req from dispatch until its reply is queued; handlers
 * answer at once or from an engine callback, whichever store is in use.
 * The server keeps every unanswered lf_req on a list, so a shutdown knows
 * what it still owes and can cut loose what the deadline leaves behind. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>
#include "internal.h"

#define MAX_HEADERS_SIZE (32 * 1024)
#define DRAIN_TICK_MS 10
#define LINGER_MS 1000          /* keep-alive clients' last chance at a 503 */

const lf_route_def lf_routes[LF_RT__COUNT] = {
    [LF_RT_HEALTHZ] = {EVHTTP_REQ_GET, "/healthz", LF_ROLE_NONE, false, lf_api_healthz},
    [LF_RT_READYZ] = {EVHTTP_REQ_GET, "/readyz", LF_ROLE_NONE, false, lf_api_readyz},
    [LF_RT_METRICS] = {EVHTTP_REQ_GET, "/metrics", LF_ROLE_READ, false, lf_api_metrics},
    [LF_RT_CREATE] = {EVHTTP_REQ_POST, "/v1/records", LF_ROLE_WRITE, false,
                      lf_api_create},
    [LF_RT_LIST] = {EVHTTP_REQ_GET, "/v1/records", LF_ROLE_READ, false, lf_api_list},
    [LF_RT_GET] = {EVHTTP_REQ_GET, "/v1/records/{id}", LF_ROLE_READ, false, lf_api_get},
    [LF_RT_TRANSITION] = {EVHTTP_REQ_POST, "/v1/records/{id}/transitions", LF_ROLE_WRITE,
                          false, lf_api_transition},
    [LF_RT_RECORD_AUDIT] = {EVHTTP_REQ_GET, "/v1/records/{id}/audit", LF_ROLE_READ, false,
                            lf_audit_record},
    [LF_RT_AUDIT] = {EVHTTP_REQ_GET, "/v1/audit", LF_ROLE_READ, false, lf_audit_all},
    [LF_RT_POLICIES] = {EVHTTP_REQ_GET, "/v1/policies", LF_ROLE_READ, false,
                        lf_api_policies},
    [LF_RT_RELOAD] = {EVHTTP_REQ_POST, "/v1/admin/reload", LF_ROLE_ADMIN, false,
                      lf_api_reload},
    [LF_RT_GITHUB] = {EVHTTP_REQ_POST, "/v1/webhooks/github", LF_ROLE_NONE, true,
                      lf_webhook_github},
    [LF_RT_DELETE] = {EVHTTP_REQ_DELETE, "/v1/records/{id}", LF_ROLE_WRITE, false,
                      lf_api_delete},
    [LF_RT_ATTESTATIONS] = {EVHTTP_REQ_GET, "/v1/records/{id}/attestations", LF_ROLE_READ,
                            false, lf_api_attestations},
    [LF_RT_IMPORT] = {EVHTTP_REQ_POST, "/v1/import", LF_ROLE_ADMIN, false, lf_api_import},
    [LF_RT_TIMERS] = {EVHTTP_REQ_GET, "/v1/timers", LF_ROLE_READ, false, lf_api_timers},
    [LF_RT_EXPLAIN] = {EVHTTP_REQ_GET, "/v1/records/{id}/explain", LF_ROLE_READ, false,
                       lf_api_explain},
    [LF_RT_ACK] = {EVHTTP_REQ_POST, "/v1/records/{id}/acknowledgements", LF_ROLE_WRITE,
                   false, lf_api_ack},
    [LF_RT_UI_ROOT] = {EVHTTP_REQ_GET, "/", LF_ROLE_NONE, false, lf_console_root},
    [LF_RT_UI_INDEX] = {EVHTTP_REQ_GET, "/ui", LF_ROLE_NONE, false, lf_console_file},
    [LF_RT_UI_FILE] = {EVHTTP_REQ_GET, "/ui/{id}", LF_ROLE_NONE, false, lf_console_file},
    [LF_RT_WORKFLOWS] = {EVHTTP_REQ_GET, "/v1/workflows", LF_ROLE_READ, false,
                         lf_api_workflows},
    [LF_RT_WORKFLOW_SVG] = {EVHTTP_REQ_GET, "/v1/workflows/{id}/graph.svg", LF_ROLE_READ,
                            false, lf_api_workflow_svg},
    [LF_RT_EVENTS] = {EVHTTP_REQ_GET, "/v1/events", LF_ROLE_READ, false, lf_api_events},
    [LF_RT_CHECKPOINT] = {EVHTTP_REQ_GET, "/v1/checkpoints/latest", LF_ROLE_READ, false,
                          lf_api_checkpoint_latest},
};

/* ---- the listen address ------------------------------------------------ */

int lf_http_parse_listen(const char *spec, char *addr, size_t addrlen, int *port,
                         bool *loopback, char *err, size_t errlen) {
    const char *colon, *host = spec;
    size_t hlen;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') goto bad;
        host = spec + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        if (!(colon = strrchr(spec, ':'))) goto bad;
        hlen = (size_t)(colon - spec);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || p < 0 || p > 65535 || hlen == 0 || hlen >= addrlen)
        goto bad;
    memcpy(addr, host, hlen);
    addr[hlen] = '\0';
    if (strcmp(addr, "localhost") == 0) snprintf(addr, addrlen, "127.0.0.1");
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1) *loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, addr, &a6) == 1) *loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    else {
        snprintf(err, errlen,
                 "--listen %s: the address must be numeric "
                 "(127.0.0.1, [::1], 0.0.0.0) or localhost",
                 spec);
        return -1;
    }
    *port = (int)p;
    return 0;
bad:
    snprintf(err, errlen, "--listen %s: expected ADDR:PORT, e.g. 127.0.0.1:8080", spec);
    return -1;
}

/* ---- dispatch ---------------------------------------------------------- */

/* Does path match pattern? "{id}" matches one non-empty segment, which
 * goes to param. */
static bool match(const char *pat, const char *path, char *param, size_t n) {
    while (*pat && *path) {
        if (*pat == '{' && strncmp(pat, "{id}", 4) == 0) {
            size_t len = strcspn(path, "/");
            if (len == 0 || len >= n) return false;
            memcpy(param, path, len);
            param[len] = '\0';
            pat += 4;
            path += len;
            continue;
        }
        if (*pat++ != *path++) return false;
    }
    return *pat == '\0' && *path == '\0';
}

static void allow_header(lf_req *r, unsigned methods) {
    char allow[64] = "";
    if (methods & EVHTTP_REQ_GET) strcat(allow, "GET");
    if (methods & EVHTTP_REQ_POST) strcat(allow, allow[0] ? ", POST" : "POST");
    if (methods & EVHTTP_REQ_DELETE) strcat(allow, allow[0] ? ", DELETE" : "DELETE");
    lf_add_header(r, "Allow", allow);
}

static bool authorize(lf_req *r, const lf_route_def *rt) {
    lf_server *s = r->srv;
    if (rt->role == LF_ROLE_NONE || !s->tokens) {
        r->role = LF_ROLE_ADMIN;
        return true;
    }
    lf_role role;
    const char *roles = NULL, *kind = NULL, *principal = NULL;
    const char *name = lf_tokens_check(s->tokens, lf_req_header(r, "Authorization"),
                                       &role, &roles, &kind, &principal);
    if (!name) {
        lf_add_header(r, "WWW-Authenticate", "Bearer realm=\"loopforge\"");
        lf_reply_error(r, 401, "unauthorized",
                       lf_req_header(r, "Authorization")
                           ? "unknown or malformed bearer token"
                           : "missing bearer token (Authorization: Bearer TOKEN)");
        return false;
    }
    lf_req_str(r->actor, sizeof r->actor, name);
    lf_req_str(r->roles, sizeof r->roles, roles);
    lf_req_str(r->actor_kind, sizeof r->actor_kind, kind ? kind : "");
    lf_req_str(r->principal, sizeof r->principal, principal ? principal : "");
    r->role = role;
    if (role < rt->role) {
        lf_reply_error(r, 403, "forbidden", "token '%s' has role %s; %s %s needs %s",
                       name, lf_role_name(role), lf_method_name(rt->method), rt->pattern,
                       lf_role_name(rt->role));
        return false;
    }
    return true;
}

static void dispatch(lf_req *r) {
    lf_server *s = r->srv;
    unsigned other_methods = 0;
    const lf_route_def *rt = NULL;
    for (int i = 0; i < LF_RT__COUNT; i++) {
        if (!match(lf_routes[i].pattern, r->path, r->param, sizeof r->param)) continue;
        if (lf_routes[i].method == r->method) {
            rt = &lf_routes[i];
            r->route = i;
            break;
        }
        other_methods |= lf_routes[i].method;
    }
    if (!rt && other_methods) {
        allow_header(r, other_methods);
        lf_reply_error(r, 405, "method_not_allowed", "%s is not allowed on %s",
                       lf_method_name(r->method), r->path);
        return;
    }
    if (!rt) {
        lf_reply_error(r, 404, "not_found", "no such route: %s %s",
                       lf_method_name(r->method), r->path);
        return;
    }
    size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(r->req));
    size_t limit = rt->webhook ? s->cfg.max_webhook_body : s->cfg.max_body;
    if (len > limit) {
        lf_reply_error(r, 413, "payload_too_large",
                       "the body is %zu bytes; the limit "
                       "here is %zu",
                       len, limit);
        return;
    }
    if (authorize(r, rt)) rt->fn(r);
}

static void on_request(struct evhttp_request *req, void *arg) {
    lf_server *s = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon) evhttp_connection_set_closecb(evcon, lf_conn_closed, s);
    lf_req *r = lf_req_new(s, req);
    if (s->draining) {
        lf_reply_error(r, 503, "unavailable", "shutting down");
        return;
    }
    dispatch(r);
}

/* `serve --ceiling`: the same server with nothing behind it, so a bench
 * can tell what the HTTP layer alone costs. */
static void on_ceiling(struct evhttp_request *req, void *arg) {
    static const char body[] = "{\"success\":true}\n";
    (void)arg;
    lf_add_date(evhttp_request_get_output_headers(req));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, sizeof body - 1);
    evhttp_send_reply(req, 200, NULL, NULL);
}

/* ---- reload ------------------------------------------------------------ */

static void reload_tokens(lf_server *s) {
    if (!s->cfg.tokens_file) return;
    char err[512];
    lf_tokens *t = lf_tokens_load(s->cfg.tokens_file, err, sizeof err);
    if (!t) {
        s->metrics.token_reloads_failed++;
        lf_logf(LF_LOG_ERROR, "tokens not reloaded, the old ones stay: %s", err);
        return;
    }
    lf_tokens_free(s->tokens);
    s->tokens = t;
    s->metrics.token_reloads_ok++;
    lf_logf(LF_LOG_INFO, "tokens reloaded: %zu", lf_tokens_count(t));
}

void lf_server_reload(lf_server *s, const char *actor, lf_reload_cb *cb, void *arg) {
    reload_tokens(s);
    lf_engine_reload(s->engine, actor, cb, arg);
}

static void sighup_reloaded(lf_code code, const char *error, const char *old_gen,
                            const char *new_gen, void *arg) {
    (void)arg;
    if (code == LF_OK)
        lf_logf(LF_LOG_INFO, "policies reloaded (SIGHUP): %s -> %s", old_gen, new_gen);
    else
        lf_logf(LF_LOG_ERROR, "policies not reloaded (SIGHUP), %s keeps serving: %s",
                old_gen, error ? error : lf_code_name(code));
}

/* ---- signals and shutdown ---------------------------------------------- */

/* Draining ends when nothing is owed, every reply has left its buffer
 * and the keep-alive connections are gone or had LINGER_MS to send one
 * more request (answered 503 with Connection: close, as docs/http.md
 * says, rather than met by a closed socket), or at the deadline. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg) {
    lf_server *s = arg;
    (void)fd;
    (void)what;
    double waited = (double)(lf_mono_ns() - s->drain_started_ns) / 1e9;
    lf_conn_sweep(s);
    bool lingered = s->nconns == 0 || waited * 1000 >= LINGER_MS;
    if (s->inflight == 0 && lf_conns_flushed(s) && lingered) {
        event_base_loopbreak(s->base);
        return;
    }
    if (waited >= s->cfg.shutdown_timeout_s) {
        lf_logf(LF_LOG_WARN, "shutdown deadline (%ds): cutting %zu request(s) loose",
                s->cfg.shutdown_timeout_s, s->inflight);
        event_base_loopbreak(s->base);
        return;
    }
    struct timeval tv = {0, DRAIN_TICK_MS * 1000};
    evtimer_add(s->drain_ev, &tv);
}

void lf_drain_check(lf_server *s) {
    if (s->inflight == 0 && !evtimer_pending(s->drain_ev, NULL))
        event_active(s->drain_ev, EV_TIMEOUT, 0);
}

static void begin_shutdown(lf_server *s, int sig) {
    if (s->draining) return;
    s->draining = true;
    s->stop_signal = sig;
    s->drain_started_ns = lf_mono_ns();
    /* Stop accepting: close the listening socket, so a restarted server
     * can bind at once and clients get "connection refused", not a
     * backlog nobody will read. */
    if (s->bound) {
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
    }
    lf_console_drain(s);
    lf_logf(LF_LOG_INFO, "%s: draining %zu in-flight request(s)",
            sig == SIGINT ? "SIGINT" : "SIGTERM", s->inflight);
    struct timeval tv = {0, 0};
    evtimer_add(s->drain_ev, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    lf_server *s = arg;
    (void)what;
    if (sig == SIGHUP) {
        if (s->engine && !s->draining)
            lf_server_reload(s, "signal:SIGHUP", sighup_reloaded, NULL);
        return;
    }
    begin_shutdown(s, (int)sig);
}

/* ---- setup and teardown ------------------------------------------------ */

static int bind_listener(lf_server *s) {
    char addr[64], err[256];
    int port;
    bool loopback;
    if (lf_http_parse_listen(s->cfg.listen, addr, sizeof addr, &port, &loopback, err,
                             sizeof err)) {
        fprintf(stderr, "loopforge serve: %s\n", err);
        return 2;
    }
    if (!loopback && !s->tokens && !s->cfg.ceiling) {
        fprintf(stderr,
                "loopforge serve: refusing to listen on %s without --tokens: "
                "anyone who can reach it could change records. Give a tokens file "
                "(see 'loopforge token'), or listen on 127.0.0.1.\n",
                s->cfg.listen);
        return 2;
    }
    s->bound = evhttp_bind_socket_with_handle(s->http, addr, (ev_uint16_t)port);
    if (!s->bound) {
        fprintf(stderr, "loopforge serve: cannot listen on %s: %s\n", s->cfg.listen,
                strerror(errno));
        return 7;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int fd = evhttp_bound_socket_get_fd(s->bound);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            snprintf(s->listen_addr, sizeof s->listen_addr, "[%s]:%u", host,
                     ntohs(a->sin6_port));
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            snprintf(s->listen_addr, sizeof s->listen_addr, "%s:%u", host,
                     ntohs(a->sin_port));
        }
    }
    return 0;
}

static void defaults(lf_http_config *c) {
    if (!c->listen) c->listen = "127.0.0.1:8080";
    if (c->timeout_s <= 0) c->timeout_s = 10;
    if (c->shutdown_timeout_s <= 0) c->shutdown_timeout_s = 10;
    if (c->webhook_deadline_ms <= 0) c->webhook_deadline_ms = 8000;
    if (!c->max_connections) c->max_connections = 1024;
    if (!c->max_history) c->max_history = 100;
    if (!c->max_body) c->max_body = 1 << 20;
    if (!c->max_webhook_body) c->max_webhook_body = 25u << 20;
    if (c->checkpoint_every <= 0) c->checkpoint_every = 1000;
    if (c->checkpoint_seconds <= 0) c->checkpoint_seconds = 300;
}

static int load_credentials(lf_server *s) {
    char err[512];
    if (s->cfg.tokens_file &&
        !(s->tokens = lf_tokens_load(s->cfg.tokens_file, err, sizeof err))) {
        fprintf(stderr, "loopforge serve: %s\n", err);
        return 2;
    }
    if (s->cfg.webhook_secret_file &&
        !(s->secret = lf_secret_load(s->cfg.webhook_secret_file, &s->secret_len, err,
                                     sizeof err))) {
        fprintf(stderr, "loopforge serve: %s\n", err);
        return 2;
    }
    return 0;
}

static int setup(lf_server *s) {
    int rc = load_credentials(s);
    if (rc) return rc;
    if (!(s->http = evhttp_new(s->base)) ||
        !(s->sweep_ev = evtimer_new(s->base, lf_conn_on_sweep, s)) ||
        !(s->drain_ev = evtimer_new(s->base, on_drain_tick, s)) ||
        !(s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s)) ||
        !(s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s)) ||
        !(s->sig_hup = evsignal_new(s->base, SIGHUP, on_signal, s)) ||
        evsignal_add(s->sig_term, NULL) || evsignal_add(s->sig_int, NULL) ||
        evsignal_add(s->sig_hup, NULL)) {
        fprintf(stderr, "loopforge serve: cannot set up the event loop\n");
        return 7;
    }
    struct timeval tv = {s->cfg.timeout_s, 0};
    evhttp_set_timeout_tv(s->http, &tv);
    evhttp_set_max_headers_size(s->http, MAX_HEADERS_SIZE);
    /* One limit per server in libevent 2.1: the larger one here, the API's
     * own in dispatch. */
    evhttp_set_max_body_size(s->http,
                             (ev_ssize_t)(s->cfg.max_body > s->cfg.max_webhook_body
                                              ? s->cfg.max_body
                                              : s->cfg.max_webhook_body));
    evhttp_set_allowed_methods(
        s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                     EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_bevcb(s->http, lf_conn_new, s);
    evhttp_set_gencb(s->http, s->cfg.ceiling ? on_ceiling : on_request, s);
    if (s->engine) lf_engine_set_log(s->engine, lf_log_engine, NULL);
    return bind_listener(s);
}

/* After the loop: nothing runs any more, so whatever is still owed is cut
 * loose (the deadline passed), then everything goes in dependency order. */
static void teardown(lf_server *s) {
    for (lf_req *r = s->live; r; r = r->next) {
        lf_stream_detach(r);
        r->req = NULL;          /* evhttp_free frees the requests */
    }
    if (s->http) evhttp_free(s->http);
    lf_conns_release(s);
    lf_checkpoints_final(s);
    lf_console_free(s);
    /* The engine may still complete requests (their replies go nowhere),
     * and the store flushes. */
    if (s->engine) lf_engine_free(s->engine);
    while (s->live) lf_req_drop(s->live);
    if (s->sweep_ev) event_free(s->sweep_ev);
    if (s->drain_ev) event_free(s->drain_ev);
    if (s->sig_term) event_free(s->sig_term);
    if (s->sig_int) event_free(s->sig_int);
    if (s->sig_hup) event_free(s->sig_hup);
    lf_tokens_free(s->tokens);
    if (s->secret) OPENSSL_cleanse(s->secret, s->secret_len);
    free(s->secret);
}

int lf_http_serve(const lf_http_config *cfg, struct event_base *base, lf_engine *engine) {
    lf_server *s = lf_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    defaults(&s->cfg);
    s->base = base;
    s->engine = engine;
    s->started_ns = lf_mono_ns();
    if (RAND_bytes((unsigned char *)&s->boot, sizeof s->boot) != 1)
        s->boot = (unsigned)getpid();
    lf_log_set_level(cfg->log_level);
    /* A client that hangs up mid-reply must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    int rc = setup(s);
    if (rc == 0) {
        printf("listening on %s\n", s->listen_addr);
        fflush(stdout);
        lf_logf(LF_LOG_INFO, "listening on %s (%s, policies %s, %s, webhooks %s)",
                s->listen_addr, s->cfg.ceiling ? "ceiling mode" : "engine",
                engine ? lf_engine_generation(engine) : "-",
                s->tokens ? "tokens" : "no auth (loopback)", s->secret ? "on" : "off");
        lf_log_attach(base);
        lf_checkpoints_start(s);
        lf_console_start(s);
        event_base_dispatch(base);
        lf_log_detach();
    }
    int sig = s->stop_signal;
    teardown(s);
    if (rc == 0)
        lf_logf(LF_LOG_INFO, "stopped (%s): engine freed, store flushed",
                sig == SIGINT    ? "SIGINT"
                : sig == SIGTERM ? "SIGTERM"
                                 : "no more events");
    free(s);
    return rc;
}
