/* checkpoints.c -- what the server does by itself: once a second, fire
 * the durable timers that are due (lf_engine_tick); with a signing key,
 * append a signed checkpoint (docs/audit.md) as soon as --checkpoint-every
 * entries were appended since the last (the engine signs off the loop,
 * so this costs the loop next to nothing), or at the tick after
 * --checkpoint-seconds when anything was, and one at shutdown, so the log
 * a server leaves behind is covered to its end. The work is the
 * engine's, one of each at a time. */
#include "internal.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct cp_wait {
    lf_server *s;
    bool done;
} cp_wait;

/* The one in flight (cp_busy): static, because a store that never
 * answers calls back when the engine is freed, after we stopped waiting. */
static cp_wait pending;

static void on_checkpoint(lf_code code, const char *error, const char *doc, void *arg) {
    cp_wait *w = arg;
    w->s->cp_busy = false;
    w->done = true;
    if (code == LF_OK) {
        lf_logf(LF_LOG_INFO, "checkpoint: %s", doc);
        free(w->s->cp_last);            /* GET /v1/checkpoints/latest */
        w->s->cp_last = lf_xstrdup(doc);
    }
    else lf_logf(LF_LOG_WARN, "checkpoint failed: %s", error);
}

/* Starts one; w lives until on_checkpoint. */
static void checkpoint(lf_server *s) {
    lf_stats st;
    lf_engine_stats(s->engine, &st);
    s->cp_busy = true;
    s->cp_appended = st.appended;
    s->cp_ns = lf_mono_ns();
    pending.s = s;
    pending.done = false;
    lf_engine_checkpoint(s->engine, "serve", on_checkpoint, &pending);
}

static bool ticking;            /* a timer tick in flight */

static void on_timers(lf_code code, const char *error, const char *doc, void *arg) {
    (void)arg;
    ticking = false;
    if (code != LF_OK) lf_logf(LF_LOG_WARN, "timers: %s", error);
    else if (!strstr(doc, "\"fired\":[]")) lf_logf(LF_LOG_INFO, "timers: %s", doc);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    lf_server *s = arg;
    (void)fd, (void)what;
    if (s->draining) return;
    lf_console_policies_seen(s);
    if (!ticking) {
        ticking = true;
        lf_engine_fire_due(s->engine, 0, on_timers, NULL);
    }
    /* Also the N entries that came while one was in flight. */
    lf_checkpoints_appended(s);
}

void lf_checkpoints_appended(lf_server *s) {
    /* Not before start nor after final (cp_ev), nor while draining. */
    if (!s->cp_ev || s->cp_busy || s->draining || !lf_engine_can_sign(s->engine)) return;
    lf_stats st;
    lf_engine_stats(s->engine, &st);
    uint64_t fresh = st.appended - s->cp_appended;
    uint64_t age_s = (lf_mono_ns() - s->cp_ns) / 1000000000u;
    if (fresh >= (uint64_t)s->cfg.checkpoint_every ||
        (fresh && age_s >= (uint64_t)s->cfg.checkpoint_seconds))
        checkpoint(s);
}

void lf_checkpoints_start(lf_server *s) {
    if (!s->engine) return;
    s->cp_ns = lf_mono_ns();
    struct timeval one = {1, 0};
    s->cp_ev = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (s->cp_ev) event_add(s->cp_ev, &one);
}

void lf_checkpoints_final(lf_server *s) {
    if (s->cp_ev) {
        event_free(s->cp_ev);
        s->cp_ev = NULL;
    }
    if (!s->engine || !lf_engine_can_sign(s->engine)) return;
    /* Checkpoints are signed off the loop and answer on it: the one in
     * flight first, then one of whatever came after it. */
    uint64_t until = lf_mono_ns() + 5000000000u;
    for (int round = 0; round < 2; round++) {
        lf_stats st;
        lf_engine_stats(s->engine, &st);
        if (!s->cp_busy && st.appended == s->cp_appended) return;
        if (!s->cp_busy) checkpoint(s);
        while (!pending.done && lf_mono_ns() < until &&
               event_base_loop(s->base, EVLOOP_ONCE) == 0)
            ;
        if (!pending.done) {
            lf_logf(LF_LOG_WARN, "checkpoint at shutdown: no answer from the store");
            return;
        }
    }
}
