/* conn.c -- the server's connections: a cap on how many are open, and
 * knowing when one is gone.
 *
 * libevent 2.1 has no connection cap, nor a hook for a server connection
 * going away. So we create each connection's bufferevent ourselves (the
 * evhttp bevcb) and hold one extra reference on it: evhttp's
 * bufferevent_free then clears its callbacks but cannot destroy it, and a
 * sweep that finds a bufferevent without an event callback knows evhttp
 * let go of it, drops our reference (which closes the socket) and frees a
 * slot. Sweeps run when evhttp closes a connection it served (close
 * callback) and every 200 ms while any is open (those that never sent a
 * request). At the cap the listener pauses: new clients wait in the
 * kernel's backlog rather than being refused. */
#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include "internal.h"

#define SWEEP_MS 200

static struct evconnlistener *listener_of(lf_server *s) {
    return s->bound ? evhttp_bound_socket_get_listener(s->bound) : NULL;
}

void lf_conn_sweep(lf_server *s) {
    for (size_t i = 0; i < s->nconns;) {
        bufferevent_event_cb ev = NULL;
        bufferevent_getcb(s->conns[i], NULL, NULL, &ev, NULL);
        if (ev) { i++; continue; }
        bufferevent_decref(s->conns[i]);
        s->conns[i] = s->conns[--s->nconns];
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
    (void)fd; (void)what;
    lf_conn_sweep(s);
    if (s->nconns) arm_sweep(s);
}

/* evhttp is about to free a connection: sweep once it is done. */
void lf_conn_closed(struct evhttp_connection *evcon, void *arg) {
    lf_server *s = arg;
    (void)evcon;
    event_active(s->sweep_ev, EV_TIMEOUT, 0);
}

struct bufferevent *lf_conn_new(struct event_base *base, void *arg) {
    lf_server *s = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return NULL;
    if (s->nconns == s->conns_cap) {
        size_t cap = s->conns_cap ? 2 * s->conns_cap : 64;
        struct bufferevent **v = realloc(s->conns, cap * sizeof *v);
        if (!v) return bev;     /* served, just not counted */
        s->conns = v;
        s->conns_cap = cap;
    }
    /* No read watermark here: evhttp 2.1 stalls on bodies larger than
     * one (it waits for data a suspended bufferevent never reads). */
    bufferevent_incref(bev);
    s->conns[s->nconns++] = bev;
    if (s->nconns >= s->cfg.max_connections && !s->accept_paused && listener_of(s)) {
        s->accept_paused = true;
        evconnlistener_disable(listener_of(s));
        lf_logf(LF_LOG_WARN, "connection cap reached (%zu): new clients wait",
                s->cfg.max_connections);
    }
    arm_sweep(s);
    return bev;
}

bool lf_conns_flushed(lf_server *s) {
    for (size_t i = 0; i < s->nconns; i++) {
        bufferevent_event_cb ev = NULL;
        bufferevent_getcb(s->conns[i], NULL, NULL, &ev, NULL);
        if (ev && evbuffer_get_length(bufferevent_get_output(s->conns[i])))
            return false;
    }
    return true;
}

void lf_conns_release(lf_server *s) {
    for (size_t i = 0; i < s->nconns; i++) bufferevent_decref(s->conns[i]);
    free(s->conns);
    s->conns = NULL;
    s->nconns = s->conns_cap = 0;
}
