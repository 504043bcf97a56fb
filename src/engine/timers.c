/* timers.c -- durable timers (workflow `timers`, core/workflow.h): a
 * record that stays in a state for the declared time moves on by itself.
 *
 * A timer is not stored apart from the record: it is due at the time the
 * record entered its state (its last history entry) plus the declared
 * duration, so it survives every restart and store by construction, is
 * cancelled by leaving the state, and a deadline that passed during
 * downtime is simply due at the next tick. Firing is an ordinary request
 * (guards, audit) with actor "timer:<state>" and the record's version as
 * the expected one: of several daemons ticking at once exactly one moves
 * the record, the others get a conflict and write nothing. The caller
 * says what time it is (lf_engine_tick), so tests move a clock instead of
 * sleeping.
 *
 * Retries (a workflow's `retries`) are timers too: a record in a failure
 * state is moved back to try again after a backoff that grows with the
 * attempts its history shows (initial x factor^n, at most max), and when
 * the budget is spent it is moved to the escalation state at once,
 * trigger "retry.exhausted" -- counted from the log, so across restarts. */
#include "engine_internal.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/mem.h"
#include "../core/record.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records per list call: a store pages as it can (Redis by 1,000), the
 * embedded ones answer in one pass, which a tick over 100,000 pending
 * timers needs (a page costs them a pass over every record). */
#define PAGE 100000

typedef struct pending {
    char id[LF_ID_LEN + 1];
    uint64_t version;
    char *state, *to, *trigger;
    int64_t due;
} pending;

typedef struct tick_ctx {
    lf_engine *e;
    int64_t now;
    bool fire;
    lf_text_cb *cb;
    void *arg;
    char **states;              /* timed state names, once each */
    size_t nstates, si;
    char *cursor;
    pending *p;
    size_t np, fi;
    lf_buf fired;
    lf_jw list;
} tick_ctx;

static void tick_free(tick_ctx *t) {
    for (size_t i = 0; i < t->nstates; i++) free(t->states[i]);
    free(t->states);
    for (size_t i = 0; i < t->np; i++) {
        free(t->p[i].state);
        free(t->p[i].to);
        free(t->p[i].trigger);
    }
    free(t->p);
    free(t->cursor);
    lf_buf_free(&t->fired);
    free(t);
}

static int by_due(const void *a, const void *b) {
    const pending *x = a, *y = b;
    return x->due < y->due ? -1 : x->due > y->due;
}

static void ts_of(int64_t us, char out[LF_TS_LEN + 1]) { lf_ts_format(us, out); }

static void reply(tick_ctx *t) {
    lf_buf b = LF_BUF_INIT;
    char ts[LF_TS_LEN + 1];
    ts_of(t->now, ts);
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_str(&o, "now", ts);
    lf_jw_key(&o, "timers");
    lf_jw list = lf_jw_open(&b, '[');
    for (size_t i = 0; i < t->np; i++) {
        const pending *p = &t->p[i];
        lf_jw_next(&list);
        lf_jw x = lf_jw_open(&b, '{');
        lf_jw_str(&x, "record_id", p->id);
        lf_jw_str(&x, "state", p->state);
        lf_jw_str(&x, "to", p->to);
        lf_jw_str(&x, "trigger", p->trigger);
        ts_of(p->due, ts);
        lf_jw_str(&x, "due", ts);
        lf_jw_bool(&x, "due_now", p->due <= t->now);
        lf_jw_close(&x, '}');
    }
    lf_jw_close(&list, ']');
    lf_jw_close(&t->list, ']');
    lf_jw_raw(&o, "fired", t->fired.p, "[]");
    lf_jw_close(&o, '}');
    t->cb(LF_OK, NULL, b.p, t->arg);
    lf_buf_free(&b);
    tick_free(t);
}

static void fire_next(tick_ctx *t);

static void fired(const lf_result *r, void *arg) {
    tick_ctx *t = arg;
    const pending *p = &t->p[t->fi - 1];
    lf_jw_next(&t->list);
    lf_jw x = lf_jw_open(&t->fired, '{');
    lf_jw_str(&x, "record_id", p->id);
    lf_jw_str(&x, "from", p->state);
    lf_jw_str(&x, "to", p->to);
    lf_jw_str(&x, "code", lf_code_name(r->code));
    lf_jw_str(&x, "error", r->success ? NULL : r->error);
    lf_jw_close(&x, '}');
    fire_next(t);
}

/* Due timers in due order, one request each. */
static void fire_next(tick_ctx *t) {
    while (t->fi < t->np && t->p[t->fi].due > t->now) t->fi++;
    if (!t->fire || t->fi == t->np) {
        reply(t);
        return;
    }
    const pending *p = &t->p[t->fi++];
    char actor[128];
    snprintf(actor, sizeof actor, "timer:%s", p->state);
    lf_transition_req req = {.id = p->id, .to = p->to, .trigger = p->trigger, .actor = actor,
                             .expected_version = p->version};
    lf_engine_transition_internal(t->e, &req, fired, t);
}

static void list_state(tick_ctx *t);

bool lf_record_timer(const lf_workflow *wf, const lf_record *rec, int64_t *due_out,
                     int *to_out, const char **trigger_out) {
    int s = lf_workflow_state(wf, rec->state);
    int64_t entered;
    if (s < 0 || !rec->nhist || lf_ts_parse(rec->hist[rec->nhist - 1].timestamp, &entered))
        return false;
    /* The earliest of the state's timers and its retry. */
    int64_t due = INT64_MAX;
    int to = -1;
    const char *trigger = NULL;
    for (int k = 0; k < wf->ntimers; k++) {
        const lf_timer_def *d = &wf->timers[k];
        if (d->state == s && entered + d->after_us < due)
            due = entered + d->after_us, to = d->to, trigger = d->trigger;
    }
    const lf_retry_def *r = lf_workflow_retry(wf, s);
    if (r) {
        int attempts = (int)lf_record_count(rec, wf->states[r->state], wf->states[r->to]);
        /* Without a backoff the retries are the caller's: only the
         * escalation is ours. */
        bool retry = attempts < r->max;
        int64_t at = retry ? entered + lf_retry_backoff(r, attempts) : entered;
        if ((!retry || r->initial_us) && at < due) {
            due = at;
            to = retry ? r->to : r->escalate;
            trigger = retry ? r->trigger : "retry.exhausted";
        }
    }
    if (to < 0) return false;
    *due_out = due;
    *to_out = to;
    *trigger_out = trigger;
    return true;
}

/* The records of one timed state, page by page: each gets the earliest
 * of its workflow's timers for that state. */
static void listed(lf_code code, const char *error, const lf_record *const *recs, size_t n,
                   const char *next, void *arg) {
    tick_ctx *t = arg;
    if (code != LF_OK) {
        t->cb(code, error, NULL, t->arg);
        tick_free(t);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const lf_record *rec = recs[i];
        const lf_workflow *wf = lf_engine_workflow(t->e, rec->workflow);
        int64_t due;
        int to;
        const char *trigger;
        if (!wf || !lf_record_timer(wf, rec, &due, &to, &trigger)) continue;
        t->p = lf_xrealloc(t->p, (t->np + 1) * sizeof *t->p);
        pending *p = &t->p[t->np++];
        snprintf(p->id, sizeof p->id, "%s", rec->id);
        p->version = rec->version;
        p->state = lf_xstrdup(rec->state);
        p->to = lf_xstrdup(wf->states[to]);
        p->trigger = lf_xstrdup(trigger);
        p->due = due;
    }
    free(t->cursor);
    t->cursor = next ? lf_xstrdup(next) : NULL;
    if (!next) t->si++;
    list_state(t);
}

static void list_state(tick_ctx *t) {
    if (t->si == t->nstates) {
        if (t->np) qsort(t->p, t->np, sizeof *t->p, by_due);
        fire_next(t);
        return;
    }
    lf_list_query q = {.state = t->states[t->si], .limit = PAGE, .cursor = t->cursor};
    lf_engine_list(t->e, &q, listed, t);
}

void lf_engine_tick(lf_engine *e, int64_t now_us, bool fire, lf_text_cb *cb, void *arg) {
    tick_ctx *t = lf_xcalloc(1, sizeof *t);
    t->e = e;
    t->now = now_us ? now_us : lf_now_us();
    t->fire = fire;
    t->cb = cb;
    t->arg = arg;
    t->list = lf_jw_open(&t->fired, '[');
    for (int w = 0; w < lf_engine_nworkflows(e); w++) {
        const lf_workflow *wf = lf_engine_workflow_at(e, w);
        for (int k = 0; k < wf->ntimers + wf->nretries; k++) {
            const char *name = wf->states[k < wf->ntimers ? wf->timers[k].state
                                                          : wf->retries[k - wf->ntimers].state];
            bool seen = false;
            for (size_t i = 0; i < t->nstates; i++) seen |= strcmp(t->states[i], name) == 0;
            if (seen) continue;
            t->states = lf_xrealloc(t->states, (t->nstates + 1) * sizeof *t->states);
            t->states[t->nstates++] = lf_xstrdup(name);
        }
    }
    list_state(t);
}
