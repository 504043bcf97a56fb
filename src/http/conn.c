/* conn.c -- the server's connections: a cap on how many are open, a bound
 * on how long one may take to send a request, and knowing when one is
 * gone.
 *
 * libevent 2.1 has no connection cap, nor a hook for a server connection
 * going away. So we create each connection's bufferevent ourselves (the
 * evhttp bevcb) and hold one extra reference on it: evhttp's
 * bufferevent_free then clears its callbacks but cannot destroy it, and a
 * sweep that finds a bufferevent without an event callback knows evhttp
 * let go of it, drops our reference (which closes the socket) and frees a
 * slot. Sweeps run when evhttp closes a connection it served (close
 * callback) and every 200 ms while any is open.
 *
 * evhttp's --timeout only closes a connection that goes quiet, so a client
 * trickling one header byte a second would hold its slot for ever. Each
 * connection therefore has a clock, started when it is accepted and again
 * when an answer of it finishes; one that is not being answered and has
 * not delivered a whole request (headers and body) within --timeout is
 * shut down, and evhttp, reading EOF, frees it. At the cap, the oldest
 * such connection (idle keep-alive or slow) makes room for the new one;
 * only when every connection is being answered does the listener pause
 * (new clients then wait in the kernel's backlog). */
#include <stdint.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include "internal.h"

#define SWEEP_MS 200

static struct evconnlistener *listener_of(lf_server *s) {
    return s->bound ? evhttp_bound_socket_get_listener(s->bound) : NULL;
}

static bool served(const lf_conn *c) {
    bufferevent_event_cb ev = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ev, NULL);
    return ev != NULL;
}

/* Ends a connection evhttp still holds: its reads see EOF and evhttp frees
 * it (then a sweep frees the slot). Used for slow and idle ones only, so
 * no answer is cut short. */
static void cut(lf_conn *c) {
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    c->since_ns = INT64_MAX;            /* cut once */
}

void lf_conn_sweep(lf_server *s) {
    int64_t now = (int64_t)lf_mono_ns(), limit = (int64_t)s->cfg.timeout_s * 1000000000;
    for (size_t i = 0; i < s->nconns;) {
        lf_conn *c = &s->conns[i];
        if (served(c)) {
            if (!c->busy && c->since_ns != INT64_MAX && now - c->since_ns > limit) {
                cut(c);
                s->metrics.connections_slow++;
            }
            i++;
            continue;
        }
        bufferevent_decref(c->bev);
        *c = s->conns[--s->nconns];
    }
    if (s->accept_paused && s->nconns < s->cfg.max_connections && !s->draining) {
        s->accept_paused = false;
        if (listener_of(s)) evconnlistener_enable(listener_of(s));
    }
}

static void arm_sweep(lf_server *s) {
    struct timeval tv = {0, SWEEP_MS * 1000};
    if (!evtimer_pending(s->sweep_ev, NULL)) evtimer_add(s->sweep_ev, &tv);
}

void lf_conn_on_sweep(evutil_socket_t fd, short what, void *arg) {
    lf_server *s = arg;
    (void)fd;
    (void)what;
    lf_conn_sweep(s);
    if (s->nconns) arm_sweep(s);
}

/* evhttp is about to free a connection: sweep once it is done. */
void lf_conn_closed(struct evhttp_connection *evcon, void *arg) {
    lf_server *s = arg;
    (void)evcon;
    event_active(s->sweep_ev, EV_TIMEOUT, 0);
}

void lf_conn_busy(lf_server *s, struct bufferevent *bev, bool busy) {
    if (!bev) return;
    for (size_t i = 0; i < s->nconns; i++) {
        lf_conn *c = &s->conns[i];
        if (c->bev != bev) continue;
        if (busy && !c->nodelay) {
            /* Replies are written whole: Nagle would hold a reply's last
             * segment for the client's delayed ACK (tens of ms on
             * keep-alive). The socket only exists by the first request. */
            int one = 1;
            evutil_socket_t fd = bufferevent_getfd(bev);
            if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->nodelay = true;
        }
        if (busy) c->busy++;
        else if (c->busy > 0 && --c->busy == 0 && c->since_ns != INT64_MAX)
            c->since_ns = (int64_t)lf_mono_ns();
        return;
    }
}

/* The connection, other than the newest, that has waited longest without
 * being answered; NULL if every other one is being answered. */
static lf_conn *oldest_idle(lf_server *s) {
    lf_conn *oldest = NULL;
    for (size_t i = 0; i + 1 < s->nconns; i++) {
        lf_conn *c = &s->conns[i];
        if (c->busy || c->since_ns == INT64_MAX || !served(c)) continue;
        if (!oldest || c->since_ns < oldest->since_ns) oldest = c;
    }
    return oldest;
}

struct bufferevent *lf_conn_new(struct event_base *base, void *arg) {
    lf_server *s = arg;
    struct bufferevent *bev =
        lf_xptr(bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE));
    if (s->nconns == s->conns_cap) {
        s->conns_cap = s->conns_cap ? 2 * s->conns_cap : 64;
        s->conns = lf_xrealloc(s->conns, s->conns_cap * sizeof *s->conns);
    }
    /* No read watermark here: evhttp 2.1 stalls on bodies larger than
     * one (it waits for data a suspended bufferevent never reads). */
    bufferevent_incref(bev);
    s->conns[s->nconns++] = (lf_conn){bev, (int64_t)lf_mono_ns(), 0, false};
    lf_conn *idle = s->nconns >= s->cfg.max_connections ? oldest_idle(s) : NULL;
    if (idle && s->nconns > s->cfg.max_connections) {
        cut(idle);          /* one over the cap until the sweep: room made */
        s->metrics.connections_evicted++;
    } else if (s->nconns >= s->cfg.max_connections && !idle && !s->accept_paused &&
               listener_of(s)) {
        s->accept_paused = true;
        evconnlistener_disable(listener_of(s));
        lf_logf(LF_LOG_WARN,
                "connection cap reached (%zu), every one busy: new clients wait",
                s->cfg.max_connections);
    }
    arm_sweep(s);
    return bev;
}

bool lf_conns_flushed(lf_server *s) {
    for (size_t i = 0; i < s->nconns; i++)
        if (served(&s->conns[i]) &&
            evbuffer_get_length(bufferevent_get_output(s->conns[i].bev)))
            return false;
    return true;
}

void lf_conns_release(lf_server *s) {
    for (size_t i = 0; i < s->nconns; i++) bufferevent_decref(s->conns[i].bev);
    free(s->conns);
    s->conns = NULL;
    s->nconns = s->conns_cap = 0;
}
