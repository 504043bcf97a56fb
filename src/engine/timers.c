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
 * trigger "retry.exhausted" -- counted from the log, so across restarts.
 *
 * A retry state without a backoff (the retries are the caller's: a CI
 * re-run) holds records that may wait there for days, none of them due
 * but a spent one, and a budget is spent when the record enters the
 * state: the transition that entered it escalates it at once, and serve's
 * tick (fire_due) looks only at the records that entered since its last
 * tick (WINDOW_SLACK_US earlier, for a commit stamped before that tick but
 * landed after it) and at those it could not move, and at every one at
 * its first tick, after a reload and every FULL_EVERY_US -- where it
 * listed every record of the state each second (20,000 records waiting
 * in ci_failed: 22 % of a core in serve and 35 % in Redis, idle). */
#include "engine_internal.h"
#include "window.h"
#include "../core/arena.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/mem.h"
#include "../core/record.h"
#include "../core/map.h"
#include <cjson/cJSON.h>
#include <event2/event.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records per list call: Redis pages by 1,000 (in script calls of 100),
 * and the embedded stores, which answer at once, by as many, so a tick
 * holds the event loop for a page at a time (list_state). */
#define PAGE 1000
/* Timers found a block (tick_ctx.p) */
#define CHUNK 1024
/* About what a timer takes in the reply, with short state names */
#define TIMER_BYTES 136

#define WINDOW_SLACK_US (10 * 1000000LL)
#define FULL_EVERY_US (600 * 1000000LL)

/* Later than any time a record holds: no bound */
#define FAR (INT64_MAX / 4)
/* A page larger than this is listed in one look at every timer */
#define PAGED_LIMIT_MAX 100000

typedef struct tick_ctx tick_ctx;

/* A record asked for by id: a job of the gets' window (its place in
 * tick_ctx.jobs is its number) */
typedef struct get_job {
    tick_ctx *t;
    char *id;
} get_job;

typedef struct pending {
    char id[LF_ID_LEN + 1];
    uint64_t version;
    const char *state, *to, *trigger;   /* in the tick's arena */
    int64_t due;
    bool fired;                 /* moved (not held, not failed) */
    /* what firing it came to (fire_start), for the reply */
    tick_ctx *t;
    size_t job;                 /* its place in the firing window */
    lf_code code;
    char *error;
    bool held;
} pending;

/* One listing of a timed state: the records that entered it at or before
 * now - before; a window (a retry state without a backoff, fire_due):
 * those that entered after the tick's `since` instead. A record of the
 * state is due between `before` and `most` after it entered it (or
 * earlier, by a timer of its own, which the timed pass finds). */
typedef struct scan {
    char *state;
    int64_t before;             /* INT64_MAX: none but the window */
    int64_t most;               /* FAR: no bound */
    bool window;
} scan;

struct tick_ctx {
    lf_engine *e;
    int64_t now;
    bool fire;
    lf_text_cb *cb;
    void *arg;
    scan *scans;                /* the timed states' listings, in turn */
    bool due_only;              /* look only at records that can be due */
    int64_t since;              /* (due_only) the windows' start; 0: none */
    size_t nscans, si;
    char *cursor;
    /* the timers found, in blocks of CHUNK that never move: grown by
     * doubling, their copy held the loop 41 ms at a million */
    pending **p;
    size_t np, capp;
    /* p's order by due, made as it is needed, not by sorting them all at
     * once (100,000 timers: ~10 ms of the loop): a min-heap of the
     * indexes not yet taken, and those taken, in order */
    uint32_t *heap, *ord;
    size_t nheap, nord;
    lf_window *w;               /* getting jobs, then firing the due ones (window.h) */
    lf_buf fired;
    lf_jw list;
    /* the reply, written a page of timers at a time (reply_page) */
    bool writing, closing;
    size_t written;
    lf_buf out;
    lf_jw doc, timers;
    bool timed_pass;            /* listing the records with timers of their own */
    /* a listing's part (lf_engine_timers): due by (0: any), at most
     * `limit` (0: all) after the cursor (after_id NULL: none), or only
     * the records of jobs (nids of them, got many at once in window w) */
    int64_t due_by, after_due;
    size_t limit;
    char *after_id;
    get_job *jobs;
    size_t nids;
    /* A page (a limit, no ids) reads about a page: every store lists a
     * state's records oldest first, and the records with timers of their
     * own earliest due first, when asked, and each listing stops once
     * what follows cannot be in the page (page_ends). best: the dues of
     * the limit + 1 earliest timers found, a max-heap (nbest), whose top
     * bounds the page. */
    bool paged;
    int64_t *best;
    size_t nbest;
    lf_map seen;                /* ids already pending (keys in strs) */
    lf_arena strs;              /* the timers' strings: freed at once */
    /* listing (list_state): a page answered inside the list call sets
     * `more`, and a failed one `code` and `error`; with an event base,
     * the next page waits for `resume`, a turn of the loop later */
    bool in_call, more;
    lf_code code;
    char *error;
    struct event *resume;
};

static pending *pend(const tick_ctx *t, size_t i) { return &t->p[i / CHUNK][i % CHUNK]; }

static void tick_free(tick_ctx *t) {
    for (size_t i = 0; i < t->nscans; i++) free(t->scans[i].state);
    free(t->scans);
    for (size_t i = 0; i < t->np; i++) free(pend(t, i)->error);
    for (size_t i = 0; i < t->capp / CHUNK; i++) free(t->p[i]);
    free(t->p);
    free(t->heap);
    free(t->ord);
    lf_buf_free(&t->out);
    free(t->cursor);
    free(t->error);
    if (t->resume) event_free(t->resume);
    if (lf_engine_tick_memo(t->e)->parked == t) lf_engine_tick_memo(t->e)->parked = NULL;
    lf_buf_free(&t->fired);
    lf_map_free(&t->seen);
    lf_arena_free(&t->strs);
    free(t->after_id);
    free(t->best);
    for (size_t i = 0; i < t->nids; i++) free(t->jobs[i].id);
    free(t->jobs);
    free(t);
}

/* ---- p by due: a heap of indexes ------------------------------------ */

/* Earlier due first, then by record id (one timer a record): the order
 * a listing's cursor resumes in. */
static bool later(int64_t da, const char *ida, int64_t db, const char *idb) {
    return da > db || (da == db && strcmp(ida, idb) > 0);
}

static bool before(const tick_ctx *t, uint32_t a, uint32_t b) {
    const pending *pa = pend(t, a), *pb = pend(t, b);
    return later(pb->due, pb->id, pa->due, pa->id);
}

static void heap_push(tick_ctx *t, uint32_t k) {
    size_t i = t->nheap++;
    for (; i && before(t, k, t->heap[(i - 1) / 2]); i = (i - 1) / 2)
        t->heap[i] = t->heap[(i - 1) / 2];
    t->heap[i] = k;
}

/* The earliest not taken (t->nheap > 0) onto ord; returns it. */
static uint32_t take(tick_ctx *t) {
    uint32_t top = t->heap[0], last = t->heap[--t->nheap];
    size_t i = 0, n = t->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(t, t->heap[c + 1], t->heap[c])) c++;
        if (!before(t, t->heap[c], last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = last;
    t->ord[t->nord++] = top;
    return top;
}

/* ---- a page's bound: the dues of the limit + 1 earliest found ------ */

static void best_add(tick_ctx *t, int64_t due) {
    size_t cap = t->limit + 1, i = 0;
    if (t->nbest < cap) {
        for (i = t->nbest++; i && t->best[(i - 1) / 2] < due; i = (i - 1) / 2)
            t->best[i] = t->best[(i - 1) / 2];
        t->best[i] = due;
        return;
    }
    if (due >= t->best[0]) return;     /* full: an earlier one replaces the top */
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= cap) break;
        if (c + 1 < cap && t->best[c + 1] > t->best[c]) c++;
        if (t->best[c] <= due) break;
        t->best[i] = t->best[c];
        i = c;
    }
    t->best[i] = due;
}

/* Whether more than a page of the timers found (best full: its top
 * bounds the page) is due before `at`: then none due at `at` or later is
 * in the page, nor the first after it. */
static bool page_before(const tick_ctx *t, int64_t at) {
    return t->nbest == t->limit + 1 && t->best[0] < at;
}

static void ts_of(int64_t us, char out[LF_TS_LEN + 1]) { lf_ts_format(us, out); }

/* After a fire_due tick: the next one's window starts WINDOW_SLACK_US
 * before this one, or before the earliest spent budget this one found
 * and could not escalate (a guard held it: it is tried at every tick). */
static void remember(tick_ctx *t) {
    lf_tick_memo *m = lf_engine_tick_memo(t->e);
    int64_t since = t->now - WINDOW_SLACK_US;
    for (size_t i = 0; i < t->np; i++) {
        const pending *p = pend(t, i);
        if (p->due <= t->now && !p->fired && strcmp(p->trigger, LF_RETRY_EXHAUSTED) == 0 &&
            p->due - 1 < since)
            since = p->due - 1;
    }
    if (!t->since) m->full_at = t->now + FULL_EVERY_US;
    m->since = since > 0 ? since : 1;
}

static void list_state(tick_ctx *t);

/* Whether a page's listing may stop at `last`: what follows a state's
 * records listed oldest first entered no earlier than it, so is due no
 * earlier than that plus the state's shortest timer; what follows the
 * records with timers of their own listed by due, no earlier than its
 * earliest one. True when more than a page is due before that. */
static bool page_ends(const tick_ctx *t, const lf_record *last) {
    int64_t at = last->timers_due;
    if (!t->paged) return false;
    if (t->si < t->nscans) {
        if (!lf_record_entered(last, &at)) return false;
        at += t->scans[t->si].before;
    }
    return page_before(t, at);
}

/* Where a state's listing for a page after a cursor starts: no record
 * that entered earlier than the cursor's due less the state's longest
 * timer can follow it (0: from the first). */
static int64_t listed_after(const tick_ctx *t, const scan *sc) {
    if (!t->after_id || sc->most >= FAR || t->after_due - sc->most - 1 <= 0) return 0;
    return t->after_due - sc->most - 1;
}

/* How many of the timers found the reply holds: a page of them (limit). */
static size_t shown(const tick_ctx *t) {
    return t->limit && t->limit < t->np ? t->limit : t->np;
}

/* The reply: {"now","timers":[...],"fired":[...]}, the timers by due. It
 * is written a page at a time (reply_page, from list_state), the loop
 * turning between pages, as the listing did. */
static void reply(tick_ctx *t) {
    if (t->due_only) remember(t);
    /* Room for them all up front: grown by doubling, the buffer was
     * copied whole into fresh pages, 47 ms of the loop at a million. */
    lf_buf_reserve(&t->out, shown(t) * TIMER_BYTES);
    char ts[LF_TS_LEN + 1];
    ts_of(t->now, ts);
    t->doc = lf_jw_open(&t->out, '{');
    lf_jw_str(&t->doc, "now", ts);
    lf_jw_key(&t->doc, "timers");
    t->timers = lf_jw_open(&t->out, '[');
    t->writing = true;
    list_state(t);
}

/* The next PAGE timers of the reply, in due order (those fired first,
 * then the heap's); true when it is whole and handed over (t is freed). */
static bool reply_page(tick_ctx *t) {
    char ts[LF_TS_LEN + 1];
    size_t all = shown(t);
    for (size_t n = 0; n < PAGE && t->written < all; n++) {
        const pending *p = pend(t, t->written < t->nord ? t->ord[t->written] : take(t));
        t->written++;
        lf_jw_next(&t->timers);
        lf_jw x = lf_jw_open(&t->out, '{');
        lf_jw_str(&x, "record_id", p->id);
        lf_jw_str(&x, "state", p->state);
        lf_jw_str(&x, "to", p->to);
        lf_jw_str(&x, "trigger", p->trigger);
        ts_of(p->due, ts);
        lf_jw_str(&x, "due", ts);
        lf_jw_bool(&x, "due_now", p->due <= t->now);
        lf_jw_close(&x, '}');
    }
    if (t->written < all) return false;
    lf_jw_close(&t->timers, ']');
    lf_jw_close(&t->list, ']');
    lf_jw_raw(&t->doc, "fired", t->fired.p, "[]");
    if (!t->fire) {     /* a listing: where the next page starts */
        char next[32 + LF_ID_LEN + 1] = "";
        if (all < t->np) {
            const pending *p = pend(t, t->ord[all - 1]);
            snprintf(next, sizeof next, "%lld:%s", (long long)p->due, p->id);
        }
        lf_jw_str(&t->doc, "next_cursor", next[0] ? next : NULL);
    }
    lf_jw_close(&t->doc, '}');
    t->cb(LF_OK, NULL, t->out.p, t->arg);
    tick_free(t);
    return true;
}

static lf_transition_req fire_req(const pending *p, char *actor, size_t cap, bool dry) {
    snprintf(actor, cap, "timer:%s", p->state);
    return (lf_transition_req){.id = p->id,
                               .to = p->to,
                               .trigger = p->trigger,
                               .actor = actor,
                               .expected_version = p->version,
                               .dry_run = dry};
}

/* What firing a timer came to; `held` when the rules refused it in the
 * dry run and nothing was written. */
static void report(pending *p, const lf_result *r, bool held) {
    p->fired = r->success && !held;
    p->code = r->code;
    p->error = !r->success && r->error ? lf_xstrdup(r->error) : NULL;
    p->held = held;
    lf_window_finish(p->t->w, p->job);
}

static void fired(const lf_result *r, void *arg) { report(arg, r, false); }

/* A timer the rules refuse (a guard, a gate) is not written down again at
 * every tick: it stays due and the tick reports it until it passes. */
static void checked(const lf_result *r, void *arg) {
    pending *p = arg;
    if (!r->success) {
        report(p, r, true);
        return;
    }
    char actor[128];
    lf_transition_req req = fire_req(p, actor, sizeof actor, false);
    lf_engine_transition_internal(p->t->e, &req, fired, p);
}

/* Due timers in due order (taken from the heap: job i is ord[i]), many at
 * once (window.h): each one's record is its own, moved at the version
 * listed. */
static bool fire_start(void *arg, size_t i) {
    tick_ctx *t = arg;
    if (!t->fire || !t->nheap || pend(t, t->heap[0])->due > t->now) return false;
    pending *p = pend(t, take(t));
    p->t = t;
    p->job = i;
    char actor[128];
    lf_transition_req req = fire_req(p, actor, sizeof actor, true);
    lf_engine_transition_internal(t->e, &req, checked, p);
    return true;
}

static void fire_deliver(void *arg, size_t i) {
    tick_ctx *t = arg;
    const pending *p = pend(t, t->ord[i]);
    lf_jw_next(&t->list);
    lf_jw x = lf_jw_open(&t->fired, '{');
    lf_jw_str(&x, "record_id", p->id);
    lf_jw_str(&x, "from", p->state);
    lf_jw_str(&x, "to", p->to);
    lf_jw_str(&x, "code", lf_code_name(p->code));
    lf_jw_str(&x, "error", p->error);
    if (p->held) lf_jw_bool(&x, "held", true);
    lf_jw_close(&x, '}');
}

static void fire_done(void *arg) { reply(arg); }

static const lf_window_ops fire_ops = {fire_start, fire_deliver, fire_done};

bool lf_record_timer(const lf_workflow *wf, const lf_record *rec, int64_t *due_out,
                     int *to_out, char *trigger_out, size_t cap) {
    int s = lf_workflow_state(wf, rec->state);
    int64_t entered;
    /* A closed record (in a terminal state) never moves again: nothing of
     * it is due (and the stores' entered indexes leave it out). */
    if (s < 0 || !rec->nhist || rec->closed_at[0] ||
        lf_ts_parse(rec->hist[rec->nhist - 1].timestamp, &entered))
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
        int64_t at = retry ? entered + lf_retry_backoff(r, attempts, rec->id) : entered;
        if ((!retry || r->initial_us) && at < due) {
            due = at;
            to = retry ? r->to : r->escalate;
            trigger = retry ? r->trigger : LF_RETRY_EXHAUSTED;
        }
    }
    /* The record's own timers: a hook's schedule{} (bound to the state it
     * was set in), an override's review (bound to none). */
    cJSON *own = rec->timers ? cJSON_Parse(rec->timers) : NULL, *x;
    cJSON_ArrayForEach(x, own) {
        const char *st =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "state"));
        const char *ds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "due"));
        const char *tn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "to"));
        const char *tr =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "trigger"));
        int64_t at;
        int ts = tn ? lf_workflow_state(wf, tn) : -1;
        if ((st && strcmp(st, rec->state) != 0) || !ds || lf_ts_parse(ds, &at) ||
            ts < 0 || ts == s || !tr || !lf_workflow_has_edge(wf, s, ts) || at >= due)
            continue;
        due = at, to = ts, trigger = NULL;
        snprintf(trigger_out, cap, "%s", tr);
    }
    cJSON_Delete(own);
    if (to < 0) return false;
    *due_out = due;
    *to_out = to;
    if (trigger) snprintf(trigger_out, cap, "%s", trigger);
    return true;
}

/* A record's timer (the earliest of its workflow's and its own) among
 * those found, unless the listing's part leaves it out or it is found. */
static void add(tick_ctx *t, const lf_record *rec) {
    const lf_workflow *wf = lf_engine_workflow(t->e, rec->workflow);
    int64_t due;
    int to;
    char trigger[128];
    if (!wf || lf_map_get(&t->seen, rec->id) ||
        !lf_record_timer(wf, rec, &due, &to, trigger, sizeof trigger) ||
        (t->due_by && due > t->due_by) ||
        (t->after_id && !later(due, rec->id, t->after_due, t->after_id)))
        return;
    char *key = lf_arena_strdup(&t->strs, rec->id);
    lf_map_put(&t->seen, key, key);
    if (t->np == t->capp) {     /* a block more; the indexes double */
        size_t k = t->capp / CHUNK;
        if (t->capp + CHUNK > UINT32_MAX) lf_oom(SIZE_MAX);
        if (!(k & (k - 1))) {   /* 0, 1, 2, 4...: full */
            size_t room = k ? 2 * k : 1;
            t->p = lf_xrealloc(t->p, room * sizeof *t->p);
            t->heap = lf_xrealloc(t->heap, room * CHUNK * sizeof *t->heap);
            t->ord = lf_xrealloc(t->ord, room * CHUNK * sizeof *t->ord);
        }
        t->p[k] = lf_xmalloc(CHUNK * sizeof **t->p);
        t->capp += CHUNK;
    }
    if (t->paged) best_add(t, due);
    pending *p = pend(t, t->np++);
    *p = (pending){.version = rec->version, .due = due};
    snprintf(p->id, sizeof p->id, "%s", rec->id);
    p->state = lf_arena_strdup(&t->strs, rec->state);
    p->to = lf_arena_strdup(&t->strs, wf->states[to]);
    p->trigger = lf_arena_strdup(&t->strs, trigger);
    heap_push(t, (uint32_t)(t->np - 1));
}

static void failed(tick_ctx *t, lf_code code, const char *error) {
    t->code = code;
    t->error = lf_xstrdup(error ? error : lf_code_name(code));
}

/* The records of one timed state, page by page: each gets the earliest
 * of its workflow's timers for that state. */
static void listed(lf_code code, const char *error, const lf_record *const *recs,
                   size_t n, const char *next, void *arg) {
    tick_ctx *t = arg;
    if (code != LF_OK) failed(t, code, error);
    for (size_t i = 0; code == LF_OK && i < n; i++) add(t, recs[i]);
    lf_engine_tick_memo(t->e)->listed += code == LF_OK ? n : 0;
    if (code == LF_OK && next && n && page_ends(t, recs[n - 1])) next = NULL;
    free(t->cursor);
    t->cursor = next ? lf_xstrdup(next) : NULL;
    if (code == LF_OK && !next && t->si < t->nscans) t->si++;
    else if (code == LF_OK && !next) t->timed_pass = true;
    if (t->in_call) t->more = true;     /* list_state goes on */
    else list_state(t);
}

/* The records asked for by id, many at once (window.h): a record not
 * found has no timer; then fire (nothing) and reply. */
static void got(const lf_result *res, void *arg) {
    get_job *j = arg;
    tick_ctx *t = j->t;
    if (res->success) add(t, res->record);
    else if (res->code != LF_NOT_FOUND && t->code == LF_OK) failed(t, res->code, res->error);
    lf_window_finish(t->w, (size_t)(j - t->jobs));
}

static bool get_start(void *arg, size_t i) {
    tick_ctx *t = arg;
    if (i == t->nids) return false;
    lf_engine_get(t->e, t->jobs[i].id, got, &t->jobs[i]);
    return true;
}

static void get_deliver(void *arg, size_t i) { (void)arg, (void)i; }

static void get_done(void *arg) {
    tick_ctx *t = arg;
    t->timed_pass = true;
    list_state(t);
}

static const lf_window_ops get_ops = {get_start, get_deliver, get_done};

static void resumed(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    tick_ctx *t = arg;
    lf_engine_tick_memo(t->e)->parked = NULL;
    list_state(t);
}

/* Waits for a turn of the event loop before the next page; false when
 * there is no loop to wait for. */
static bool park(tick_ctx *t) {
    struct event_base *base = lf_engine_base(t->e);
    if (!base) return false;
    if (!t->resume && !(t->resume = evtimer_new(base, resumed, t))) return false;
    static const struct timeval now = {0, 0};
    if (evtimer_add(t->resume, &now)) return false;
    lf_engine_tick_memo(t->e)->parked = t;
    return true;
}

/* The timed states one by one, then the records with timers of their
 * own (an index on every store), then fire, then the reply. A page the
 * store answers inside the list call (the embedded stores) is followed by
 * the next one here, not in a nested call, after a turn of the event
 * loop, and so is each page of the reply: a tick over a million records
 * waiting in a state never holds the loop for more than a page. */
static void list_state(tick_ctx *t) {
    for (;;) {
        if (t->writing) {
            /* an engine closing lets the reply be written at once */
            if (reply_page(t) || (!t->closing && park(t))) return;
            continue;
        }
        if (t->code != LF_OK) {
            t->cb(t->code, t->error, NULL, t->arg);
            tick_free(t);
            return;
        }
        if (t->si == t->nscans && t->timed_pass) {
            t->w = lf_window_new(&fire_ops, t);
            lf_window_go(t->w);         /* may free t */
            return;
        }
        if (t->jobs) {      /* instead of the states (got) */
            t->w = lf_window_new(&get_ops, t);
            lf_window_go(t->w);     /* may free t */
            return;
        }
        t->in_call = true;
        t->more = false;
        /* A record that entered later than `by` cannot be due by then
         * (a page without due_by: no bound) */
        int64_t by = t->due_only ? t->now : t->due_by;
        if (t->paged && !by) by = FAR;
        lf_list_query q = {.limit = PAGE, .cursor = t->cursor};
        /* a listing a page's records may stop (page_ends): two more than
         * the page, so that one read, without ties, does */
        if (t->paged && t->limit <= PAGE) q.limit = t->limit + 2;
        if (t->si < t->nscans) {
            const scan *sc = &t->scans[t->si];
            q.state = sc->state;
            if (by) q.entered_by = by - (sc->window ? 0 : sc->before);
            if (sc->window) q.entered_after = t->since;
            if (t->paged) {
                q.entered_after = listed_after(t, sc);
                q.oldest_first = true;
            }
        } else {
            q.timed = true;
            q.due_by = by;
            /* A page's: earliest first, by the page's bound once the
             * states found more than a page, from the cursor's due (a
             * record whose earliest timer of its own is one that no
             * longer applies -- its edge gone in a reload -- may be left
             * out of a page after the cursor; serve's tick, by due_by,
             * is not) */
            if (t->paged) {
                q.oldest_first = true;
                if (page_before(t, by)) q.due_by = t->best[0];
                if (t->after_id) q.due_after = t->after_due;
            }
        }
        lf_engine_list(t->e, &q, listed, t);
        t->in_call = false;
        /* Answered later (from the loop: listed goes on), or now. */
        if (!t->more || (t->code == LF_OK && park(t))) return;
    }
}

void lf_engine_tick_close(lf_engine *e) {
    tick_ctx *t = lf_engine_tick_memo(e)->parked;
    if (!t) return;
    event_del(t->resume);
    t->closing = true;      /* a listing fails; a reply is written whole */
    resumed(-1, 0, t);
}

/* State `name` listed from `before` (see scan), or in a window. */
static void scan_add(tick_ctx *t, const char *name, int64_t before, int64_t most,
                     bool window) {
    size_t i = 0;
    while (i < t->nscans && (t->scans[i].window || strcmp(t->scans[i].state, name) != 0)) i++;
    if (window) {       /* its own listing, unless one from 0 covers it */
        for (size_t k = 0; k < t->nscans; k++)
            if (!strcmp(t->scans[k].state, name) && (t->scans[k].window || !t->scans[k].before))
                return;
    } else if (i < t->nscans) {
        if (before < t->scans[i].before) t->scans[i].before = before;
        if (most > t->scans[i].most) t->scans[i].most = most;
        return;
    }
    t->scans = lf_xrealloc(t->scans, (t->nscans + 1) * sizeof *t->scans);
    t->scans[t->nscans++] =
        (scan){.state = lf_xstrdup(name), .before = window ? INT64_MAX : before,
               .most = most, .window = window};
}

/* The longest a retry waits: lf_retry_backoff is at most the larger of
 * its first backoff and its cap, moved by the jitter. */
static int64_t retry_most(const lf_retry_def *r) {
    double us = (double)(r->initial_us > r->max_us ? r->initial_us : r->max_us) *
                    (1.0 + (r->jitter > 0 ? r->jitter : 0)) + 1;
    return us < (double)FAR ? (int64_t)us : FAR;
}

static tick_ctx *tick_new(lf_engine *e, int64_t now_us, bool fire, lf_text_cb *cb,
                          void *arg) {
    tick_ctx *t = lf_xcalloc(1, sizeof *t);
    t->e = e;
    t->now = now_us ? now_us : lf_now_us();
    t->fire = fire;
    t->cb = cb;
    t->arg = arg;
    t->list = lf_jw_open(&t->fired, '[');
    return t;
}

/* Lists t's timed states (or gets t->jobs), then fires or replies. */
static void tick_start(tick_ctx *t) {
    lf_engine *e = t->e;
    const lf_tick_memo *m = lf_engine_tick_memo(e);
    if (t->due_only && m->since && t->now < m->full_at) t->since = m->since;
    /* The timers' states first, then the windows (scan_add: one that a
     * listing from 0 covers is not made). */
    for (int pass = 0; pass < 2 && !t->jobs; pass++) {
        for (int w = 0; w < lf_engine_nworkflows(e); w++) {
            const lf_workflow *wf = lf_engine_workflow_at(e, w);
            for (int k = 0; k < wf->ntimers + wf->nretries; k++) {
                bool timer = k < wf->ntimers;
                const lf_retry_def *r = timer ? NULL : &wf->retries[k - wf->ntimers];
                bool window = r && !r->initial_us && t->since;
                if (window != (pass == 1)) continue;
                scan_add(t, wf->states[timer ? wf->timers[k].state : r->state],
                         timer ? wf->timers[k].after_us : 0,
                         timer ? wf->timers[k].after_us : retry_most(r), window);
            }
        }
    }
    list_state(t);
}

void lf_engine_tick(lf_engine *e, int64_t now_us, bool fire, lf_text_cb *cb, void *arg) {
    tick_start(tick_new(e, now_us, fire, cb, arg));
}

void lf_engine_fire_due(lf_engine *e, int64_t now_us, lf_text_cb *cb, void *arg) {
    tick_ctx *t = tick_new(e, now_us, true, cb, arg);
    t->due_only = true;
    tick_start(t);
}

/* A cursor: "<due in us>:<record id>", as reply_page writes it. */
static bool cursor_parse(const char *c, int64_t *due, const char **id) {
    char *end;
    errno = 0;
    long long v = strtoll(c, &end, 10);
    if (errno || end == c || *end != ':' || !end[1] || strlen(end + 1) > LF_ID_LEN) return false;
    *due = v;
    *id = end + 1;
    return true;
}

void lf_engine_timers(lf_engine *e, const lf_timers_query *q, lf_text_cb *cb, void *arg) {
    int64_t after_due = 0;
    const char *after_id = NULL;
    if (q->cursor && !cursor_parse(q->cursor, &after_due, &after_id)) {
        cb(LF_INVALID_REQUEST, "cursor: not one a listing of the timers gave", NULL, arg);
        return;
    }
    if (q->nids > LF_TIMERS_IDS_MAX) {
        char why[64];
        snprintf(why, sizeof why, "at most %d records a listing", LF_TIMERS_IDS_MAX);
        cb(LF_INVALID_REQUEST, why, NULL, arg);
        return;
    }
    tick_ctx *t = tick_new(e, q->now_us, false, cb, arg);
    t->due_by = q->due_by_us;
    t->limit = q->limit;
    t->after_due = after_due;
    t->after_id = after_id ? lf_xstrdup(after_id) : NULL;
    t->paged = q->limit && q->limit <= PAGED_LIMIT_MAX && !q->ids;
    if (t->paged) t->best = lf_xmalloc((q->limit + 1) * sizeof *t->best);
    if (q->ids) {
        t->jobs = lf_xcalloc(q->nids ? q->nids : 1, sizeof *t->jobs);
        for (size_t i = 0; i < q->nids; i++) t->jobs[i] = (get_job){t, lf_xstrdup(q->ids[i])};
        t->nids = q->nids;
    }
    tick_start(t);
}

/* ---- the record's own timers: schedule{} and acknowledgements --------- */

/* A `noted` entry that changes a record's own timers (never its state):
 * loaded fresh, edited, committed at the next version; retried when
 * another writer got there first. */
typedef struct note_ctx {
    lf_engine *e;
    bool ack;                   /* else a schedule */
    char *id, *actor, *reason;
    char *state, *to, *trigger, *meta;  /* schedule: bound to state */
    int64_t after_us;
    int attempts;
    lf_result_cb *cb;
    void *arg;
} note_ctx;

static void note_free(note_ctx *n) {
    lf_engine_busy(n->e, -1);
    free(n->id);
    free(n->actor);
    free(n->reason);
    free(n->state);
    free(n->to);
    free(n->trigger);
    free(n->meta);
    free(n);
}

static void note_reply(note_ctx *n, lf_code code, const char *error,
                       const lf_record *rec) {
    if (n->cb)
        n->cb(&(lf_result){.success = code == LF_OK,
                           .code = code,
                           .error = error,
                           .previous_state = rec ? rec->state : NULL,
                           .record = rec},
              n->arg);
    note_free(n);
}

static void note_load(note_ctx *n);

static void note_committed(lf_code code, const char *err, const lf_record *rec,
                           const lf_entry *en, void *arg) {
    note_ctx *n = arg;
    (void)en;
    if (code == LF_CONFLICT && ++n->attempts < 8) {
        note_load(n);
        return;
    }
    note_reply(n, code, err, rec);
}

/* The record's timers edited for the request: the new array (or NULL for
 * none left), or a refusal in *code / msg. */
static cJSON *edit_timers(note_ctx *n, const lf_record *rec, int64_t now, lf_code *code,
                          char *msg, size_t cap) {
    cJSON *a = rec->timers ? cJSON_Parse(rec->timers) : cJSON_CreateArray();
    if (!n->ack) {
        char due[LF_TS_LEN + 1];
        lf_ts_format(now + n->after_us, due);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "due", due);
        cJSON_AddStringToObject(x, "state", n->state);
        cJSON_AddStringToObject(x, "to", n->to);
        cJSON_AddStringToObject(x, "trigger", n->trigger);
        cJSON_AddStringToObject(x, "kind", "scheduled");
        cJSON_AddStringToObject(x, "by", n->actor);
        cJSON_AddItemToArray(a, x);
        return a;
    }
    /* An acknowledgement ends every override review another person set. */
    int found = 0, own = 0;
    for (cJSON *t = a->child, *next; t; t = next) {
        next = t->next;
        const char *kind =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "kind"));
        const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "by"));
        if (!kind || strcmp(kind, "override_review") != 0) continue;
        found++;
        if (by && strcmp(by, n->actor) == 0) own++;
        else cJSON_Delete(cJSON_DetachItemViaPointer(a, t));
    }
    if (!found || own) {
        *code = found ? LF_DENIED : LF_INVALID_REQUEST;
        if (found)
            snprintf(msg, cap,
                     "%s overrode on record %s and cannot also acknowledge it: "
                     "someone else must",
                     n->actor, rec->id);
        else snprintf(msg, cap, "Record %s has no override waiting for review", rec->id);
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static void note_loaded(const lf_result *res, void *arg) {
    note_ctx *n = arg;
    if (!res->success) {
        note_reply(n, res->code, res->error, NULL);
        return;
    }
    const lf_record *rec = res->record;
    const lf_workflow *wf = lf_engine_workflow(n->e, rec->workflow);
    char msg[300];
    lf_code code = LF_OK;
    if (!n->ack) {
        int s = wf ? lf_workflow_state(wf, rec->state) : -1,
            to = wf ? lf_workflow_state(wf, n->to) : -1;
        /* The record moved on before the schedule landed: it is moot. */
        if (n->state && strcmp(n->state, rec->state) != 0) {
            snprintf(msg, sizeof msg, "Record %s left %s before the timer was set",
                     rec->id, n->state);
            note_reply(n, LF_CONFLICT, msg, rec);
            return;
        }
        if (s < 0 || to < 0 || !lf_workflow_has_edge(wf, s, to) ||
            lf_workflow_engine_edge(wf, s, to)) {
            snprintf(msg, sizeof msg, "schedule: no edge %s -> %s in workflow %s",
                     rec->state, n->to, rec->workflow);
            note_reply(n, LF_INVALID_TRANSITION, msg, rec);
            return;
        }
        free(n->state);
        n->state = lf_xstrdup(rec->state);
    }
    int64_t now = lf_now_us(), floor = 0;
    if (!lf_ts_parse(rec->updated_at, &floor) && now < floor) now = floor;
    cJSON *timers = edit_timers(n, rec, now, &code, msg, sizeof msg);
    if (!timers) {
        note_reply(n, code, msg, rec);
        return;
    }
    lf_buf changes = LF_BUF_INIT, meta = LF_BUF_INIT;
    char *list =
        cJSON_GetArraySize(timers) ? lf_xptr(cJSON_PrintUnformatted(timers)) : NULL;
    cJSON_Delete(timers);
    lf_jw c = lf_jw_open(&changes, '{');
    lf_jw_raw(&c, "timers", list, "null");
    lf_jw_close(&c, '}');
    free(list);
    lf_jw m = lf_jw_open(&meta, '{');
    if (n->ack) lf_jw_str(&m, "reason", n->reason);
    else {
        lf_jw_int(&m, "after_s", n->after_us / 1000000);
        lf_jw_str(&m, "to", n->to);
        lf_jw_str(&m, "trigger", n->trigger);
        if (n->meta) lf_jw_raw(&m, "metadata", n->meta, NULL);
    }
    lf_jw_close(&m, '}');
    lf_entry en = {.record_id = n->id,
                   .kind = LF_ENTRY_NOTED,
                   .version = rec->version + 1,
                   .from_state = rec->state,
                   .to_state = rec->state,
                   .trigger = n->ack ? "override.acknowledged" : "timer.scheduled",
                   .actor = n->actor,
                   .metadata = meta.p,
                   .changes = changes.p,
                   .policy_set = lf_engine_generation(n->e)};
    lf_ts_format(now, en.timestamp);
    /* The entry's strings outlive the call: the store copies what it keeps. */
    lf_engine_commit_entry(n->e, &en, note_committed, n);
    lf_buf_free(&changes);
    lf_buf_free(&meta);
}

static void note_load(note_ctx *n) { lf_engine_get(n->e, n->id, note_loaded, n); }

void lf_engine_schedule(lf_engine *e, const char *id, const char *state, int64_t after_us,
                        const char *to, const char *trigger, const char *metadata,
                        const char *actor, lf_result_cb *cb, void *arg) {
    note_ctx *n = lf_xcalloc(1, sizeof *n);
    n->e = e;
    lf_engine_busy(e, 1);
    n->id = lf_xstrdup(id);
    n->actor = lf_xstrdup(actor);
    n->state = state ? lf_xstrdup(state) : NULL;
    n->to = lf_xstrdup(to);
    n->trigger = lf_xstrdup(trigger);
    n->meta = metadata ? lf_xstrdup(metadata) : NULL;
    n->after_us = after_us;
    n->cb = cb;
    n->arg = arg;
    note_load(n);
}

void lf_engine_acknowledge(lf_engine *e, const char *id, const char *actor,
                           const char *reason, lf_result_cb *cb, void *arg) {
    if (!id || !*id || !reason || !*reason) {
        cb(&(lf_result){.code = LF_INVALID_REQUEST,
                        .error = !id || !*id ? "record id is required"
                                             : "an acknowledgement needs a reason"},
           arg);
        return;
    }
    note_ctx *n = lf_xcalloc(1, sizeof *n);
    n->e = e;
    lf_engine_busy(e, 1);
    n->ack = true;
    n->id = lf_xstrdup(id);
    n->actor = lf_xstrdup(actor ? actor : "anonymous");
    n->reason = lf_xstrdup(reason);
    n->cb = cb;
    n->arg = arg;
    note_load(n);
}
