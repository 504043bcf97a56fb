/* bench_timers.c -- what durable timers cost (engine/timers.c), as part of
 * `loopforge bench`, each figure beside a reference measured in the same
 * run:
 *
 *   - arming and cancelling: the happy-path rate of a workflow with a
 *     timer on every state, against the same workflow without timers
 *     (runs interleaved, best of R each). A timer is derived from the
 *     record's last transition, so entering a state arms it and leaving
 *     cancels it at no cost of its own: the ratio shows that;
 *   - memory per pending timer: the heap growth of P records parked in a
 *     timed state, against P parked in an untimed one;
 *   - lateness: with P timers pending (none due) and D due, how long one
 *     tick takes to find and fire them -- a due timer fires at the first
 *     tick after its deadline (serve ticks every second), so its lateness
 *     is at most the tick interval plus its place in that tick; reported
 *     as the p99 of the D firings' completion times within the tick;
 *   - waiting: P records in a retry state without a backoff (nothing due
 *     but a spent budget's escalation), serve's tick after its first
 *     against that first, which looks at every one of them. */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "cli.h"
#include "bench_util.h"
#include "bench_timers.h"
#include "bench_redis.h"
#include "../core/clock.h"
#include "../core/mem.h"

#define NSTEPS 6

/* Two workflows of the same shape, seven states in a line; `timed` has a
 * 48h timer on every state but the last, and s2 a 1s one (the due ones). */
static const char WORKFLOWS[] =
    "local function wf(name, timed)\n"
    "  local t = nil\n"
    "  if timed then\n"
    "    t = {}\n"
    "    for i = 0, 5 do t['s' .. i] = { { '48h', to = 's' .. (i + 1), trigger = 'late' } } end\n"
    "    t.s2 = { { '1s', to = 's3', trigger = 'late' } }\n"
    "  end\n"
    "  local e = {}\n"
    "  for i = 0, 5 do e[#e + 1] = { 's' .. i, 's' .. (i + 1) } end\n"
    "  return workflow { name = name, states = { 's0', 's1', 's2', 's3', 's4', 's5', 's6' },\n"
    "    initial = 's0', terminal = { 's6' }, edges = e, timers = t }\n"
    "end\n"
    "return { wf('loopforge', false), wf('timed', true), wf('own', false),\n"
    "  workflow { name = 'retry', states = { 's0', 's1', 'failed', 'given_up' },\n"
    "    initial = 's0', terminal = { 'given_up' }, edges = { { 's0', 's1' },\n"
    "    { 's1', 'failed' }, { 'failed', 's1' }, { 'failed', 'given_up' } },\n"
    "    retries = { failed = { to = 's1', trigger = 'again', max = 3,\n"
    "                           escalate_to = 'given_up' } } } }\n";

/* A hook that gives every record of `own` entering s1 a timer of its own. */
static const char HOOK[] =
    "return hook { name = 'own-timer', on = { to = 's1', workflow = 'own' },\n"
    "  run = function(e)\n"
    "    return schedule{ after = '48h', to = 's2', trigger = 'late' }\n"
    "  end }\n";

static const char *const STATES[] = {"s1", "s2", "s3", "s4", "s5", "s6"};

/* A page of the listing, as GET /v1/timers gives by default */
#define PAGE_OF 1000

/* A request's answer: at once on memory:, from the loop on Redis. */
static bool answered(lf_cli *c, const lf_bench_call *call) {
    return (call->done || lf_cli_wait(c, &call->done) == 0) && call->ok;
}

/* Creates a record of `wf` and walks it `steps` states on. */
static bool record(lf_cli *c, lf_engine *e, const char *wf, size_t i, int steps) {
    char ref[64];
    snprintf(ref, sizeof ref, "bench-timers-%s-%zu", wf, i);
    lf_bench_call cr = {0};
    lf_create_req req = {.ref = ref, .workflow = wf, .actor = "bench"};
    lf_engine_create(e, &req, lf_bench_on_result, &cr);
    bool ok = answered(c, &cr);
    /* (the retry workflow's second state is its own: state names are
     * shared across workflows, and `timed` has a timer on s2) */
    for (int s = 0; ok && s < steps; s++) {
        lf_bench_call ct = {0};
        lf_transition_req t = {.id = cr.id,
                               .to = s == 1 && !strcmp(wf, "retry") ? "failed" : STATES[s],
                               .trigger = "go",
                               .actor = "bench"};
        lf_engine_transition(e, &t, lf_bench_on_result, &ct);
        ok = answered(c, &ct);
    }
    return ok;
}

static lf_engine *engine_on(lf_cli *c, const char *policies, const char *store) {
    lf_engine_config cfg = {.store = store, .policies = policies, .base = c->base};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) fprintf(stderr, "bench: timers: %s\n", err);
    else lf_engine_set_log(e, lf_bench_log, NULL);
    return e;
}

static lf_engine *engine(lf_cli *c, const char *policies) {
    return engine_on(c, policies, "memory:");
}

/* n records of wf through the whole line; seconds, or -1. */
static double walk(lf_cli *c, const char *policies, const char *wf, size_t n) {
    lf_engine *e = engine(c, policies);
    if (!e) return -1;
    uint64_t t0 = lf_mono_ns();
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) ok = record(c, e, wf, i, NSTEPS);
    double s = (double)(lf_mono_ns() - t0) / 1e9;
    lf_engine_free(e);
    return ok ? s : -1;
}

static long heap(void) {
    struct mallinfo2 mi = mallinfo2();
    return (long)(mi.uordblks + mi.hblkhd);
}

/* p records parked at s1 of wf (pending 48h timers when timed): heap
 * growth in bytes, or -1. The engine is left in *out. */
static long park(lf_cli *c, const char *policies, const char *wf, size_t p,
                 lf_engine **out) {
    lf_engine *e = engine(c, policies);
    if (!e) return -1;
    long m0 = heap();
    bool ok = true;
    for (size_t i = 0; i < p && ok; i++) ok = record(c, e, wf, i, 1);
    long grown = heap() - m0;
    *out = e;
    return ok ? grown : -1;
}

typedef struct tick_call {
    bool done;
    lf_code code;
    size_t fired;
} tick_call;

static void on_tick(lf_code code, const char *error, const char *text, void *arg) {
    tick_call *t = arg;
    (void)error;
    t->done = true;
    t->code = code;
    for (const char *p = text; p && (p = strstr(p, "\"code\":\"ok\"")); p++) t->fired++;
}

/* The longest the event loop went without a turn: an event due at once,
 * added again each time it runs (the same as a request arriving). */
typedef struct held {
    struct event *ev;
    uint64_t last, longest;
} held;

static const struct timeval at_once = {0, 0};

static void held_turn(held *h) {
    uint64_t now = lf_mono_ns();
    if (now - h->last > h->longest) h->longest = now - h->last;
    h->last = now;
}

static void on_turn(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    held_turn(arg);
    evtimer_add(((held *)arg)->ev, &at_once);
}

/* One tick at `at` run to its end: serve's (fire_due), or with q a
 * listing (lf_engine_timers; {.now_us = at}: every timer, as `loopforge
 * tick` lists them). *ms how long it took, *held_ms (if not NULL) the
 * longest the loop waited meanwhile. False if it could not be measured. */
static bool tick_held(lf_cli *c, lf_engine *e, int64_t at, const lf_timers_query *q,
                      tick_call *t, double *ms, double *held_ms) {
    held h = {.ev = evtimer_new(c->base, on_turn, &h)};
    if (!h.ev || evtimer_add(h.ev, &at_once)) {
        if (h.ev) event_free(h.ev);
        return false;
    }
    uint64_t t0 = h.last = lf_mono_ns();
    if (q) lf_engine_timers(e, q, on_tick, t);
    else lf_engine_fire_due(e, at, on_tick, t);
    if (!t->done) lf_cli_wait(c, &t->done);
    held_turn(&h);
    event_free(h.ev);
    *ms = (double)(h.last - t0) / 1e6;
    if (held_ms) *held_ms = (double)h.longest / 1e6;
    return t->done;
}

/* Lateness: D records at s2 (a 1s timer) beside the `pending` parked in
 * e, and three ticks: serve's first (on memory it indexes when each
 * record entered its state, on Redis it lists the whole states and fills
 * their entered indexes; nothing is due yet), one listing every timer
 * (`loopforge tick`), and serve's next, which fires the due ones. */
static int lateness(lf_cli *c, lf_engine *e, size_t pending, const char *label) {
    size_t due = pending / 100 ? pending / 100 : 1;
    bool ok = true;
    /* The first two ticks at a time none is due by, however long making
     * the due ones and the first tick take (seconds at 100,000 on Redis) */
    int64_t before = lf_now_us();
    for (size_t i = 0; i < due && ok; i++) ok = record(c, e, "timed", pending + i, 2);
    int64_t later = lf_now_us() + 2 * 1000000;  /* past the 1s, long before 48h */
    tick_call first = {0}, idle = {0}, scan = {0}, page = {0}, fire = {0};
    double first_ms = 0, first_held = 0, idle_ms = 0, scan_ms = 0, page_ms = 0, tick_ms = 0;
    ok = ok && tick_held(c, e, before, NULL, &first, &first_ms, &first_held) &&
         tick_held(c, e, before, NULL, &idle, &idle_ms, NULL) &&
         tick_held(c, e, later, &(lf_timers_query){.now_us = later}, &scan, &scan_ms, NULL) &&
         tick_held(c, e, later, &(lf_timers_query){.now_us = later, .limit = PAGE_OF},
                   &page, &page_ms, NULL) &&
         tick_held(c, e, later, NULL, &fire, &tick_ms, NULL);
    if (!ok || first.code != LF_OK || idle.code != LF_OK || scan.code != LF_OK ||
        page.code != LF_OK || fire.code != LF_OK || first.fired || idle.fired ||
        fire.fired != due) {
        fprintf(stderr, "bench: timers: %sa tick fired %zu of %zu due timers\n", label,
                fire.fired, due);
        return LF_EXIT_FAILURE;
    }
    /* serve's tick looks only at what can be due, then fires in due
     * order: the 99th percentile completes within about its whole time. */
    printf("  %s%zu pending + %zu due: a tick listing every timer %.1f ms, the first "
           "page of %d (GET /v1/timers) %.2f ms; serve's tick "
           "(what can be due, fired) %.1f ms, with nothing due %.1f ms, its first %.1f ms "
           "(%s), which held the event loop %.2f ms at most; "
           "lateness p99 <= 1 s tick interval + %.1f ms\n",
           label, pending, due, scan_ms, PAGE_OF, page_ms, tick_ms, idle_ms, first_ms,
           /* Redis keeps the entered indexes as it commits (a store an
            * older version began is indexed at its first tick, once) */
           label[0] ? "the store keeps the timed states indexed"
                    : "it indexes the timed states",
           first_held, tick_ms);
    return LF_EXIT_OK;
}

/* Waiting: n records parked in the retry workflow's `failed`, then serve's
 * tick at a time past its last full look (every ten minutes) and the
 * one after, which looks only at the records that entered since. The
 * full look pages through them, the loop turning between pages: the
 * longest it was held is beside the whole look's time. */
static int waiting(lf_cli *c, lf_engine *e, size_t n, const char *label) {
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) ok = record(c, e, "retry", i, 2);
    int64_t at = lf_now_us() + 1000 * 1000000LL;
    tick_call full = {0}, next = {0};
    double full_ms = 0, held_ms = 0, next_ms = 0;
    ok = ok && tick_held(c, e, at, NULL, &full, &full_ms, &held_ms) &&
         tick_held(c, e, at + 20 * 1000000LL, NULL, &next, &next_ms, NULL);
    if (!ok || full.code != LF_OK || next.code != LF_OK || full.fired || next.fired) {
        fprintf(stderr, "bench: timers: %srecords waiting in a retry state\n", label);
        return LF_EXIT_FAILURE;
    }
    printf("  %s%zu records waiting in a retry state without a backoff: serve's tick %.2f ms "
           "vs %.1f ms for its look at every one (its first, after a reload, every 10 "
           "min), which held the event loop %.2f ms at most\n",
           label, n, next_ms, full_ms, held_ms);
    return LF_EXIT_OK;
}

/* The ids of a page of up to BY_ID records (the console's ask). */
#define BY_ID 500
typedef struct ids_call {
    bool done;
    size_t n;
    char ids[BY_ID][LF_ID_LEN + 1];
    const char *ptr[BY_ID];
} ids_call;

static void on_ids(lf_code code, const char *error, const lf_record *const *recs, size_t n,
                   const char *next, void *arg) {
    ids_call *l = arg;
    (void)error, (void)next;
    for (size_t i = 0; code == LF_OK && i < n && l->n < BY_ID; i++, l->n++) {
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s", recs[i]->id);
        l->ptr[l->n] = l->ids[l->n];
    }
    l->done = true;
}

/* Own: n records with a timer of their own (a hook's schedule{}, none
 * due), serve's tick after its first against `loopforge tick`, which
 * lists every one of them, and the listings in parts: the timers of
 * BY_ID records by id (the console's board asks so), and those due
 * within the hour (none: only what can be due is read). */
static int own(lf_cli *c, lf_engine *e, size_t n, const char *label) {
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) ok = record(c, e, "own", i, 1);
    ids_call l = {0};
    lf_engine_list(e, &(lf_list_query){.limit = BY_ID}, on_ids, &l);
    ok = ok && (l.done || !lf_cli_wait(c, &l.done)) && l.n;
    tick_call first = {0}, idle = {0}, scan = {0}, page = {0}, some = {0}, soon = {0};
    double first_ms = 0, idle_ms = 0, scan_ms = 0, held_ms = 0, page_ms = 0, some_ms = 0,
           soon_ms = 0;
    int64_t now = lf_now_us();
    ok = ok && tick_held(c, e, now, NULL, &first, &first_ms, NULL) &&
         tick_held(c, e, now, NULL, &idle, &idle_ms, NULL) &&
         tick_held(c, e, now, &(lf_timers_query){.now_us = now}, &scan, &scan_ms, &held_ms) &&
         tick_held(c, e, now, &(lf_timers_query){.now_us = now, .limit = PAGE_OF}, &page,
                   &page_ms, NULL) &&
         tick_held(c, e, now, &(lf_timers_query){.now_us = now, .ids = l.ptr, .nids = l.n},
                   &some, &some_ms, NULL) &&
         tick_held(c, e, now,
                   &(lf_timers_query){.now_us = now, .due_by_us = now + 3600 * 1000000LL},
                   &soon, &soon_ms, NULL);
    if (!ok || idle.code != LF_OK || scan.code != LF_OK || page.code != LF_OK ||
        some.code != LF_OK ||
        soon.code != LF_OK || first.fired || idle.fired) {
        fprintf(stderr, "bench: timers: %srecords with a timer of their own\n", label);
        return LF_EXIT_FAILURE;
    }
    printf("  %s%zu records with a timer of their own (a hook's schedule{}, none due): "
           "serve's tick %.2f ms vs %.1f ms listing every one (loopforge timers), "
           "which held the event loop %.2f ms at most; the first page of %d "
           "(GET /v1/timers) %.2f ms; the timers of %zu of them by id "
           "(the console's ask) %.2f ms, of those due within the hour %.2f ms\n",
           label, n, idle_ms, scan_ms, held_ms, PAGE_OF, page_ms, l.n, some_ms, soon_ms);
    return LF_EXIT_OK;
}

/* The same on a private redis-server (skipped without one). */
static int lateness_redis(lf_cli *c, const char *pol, size_t pending) {
    lf_bench_redis_server sv = {0};
    char why[256];
    int srv = lf_bench_redis_server_start(&sv, why, sizeof why);
    if (srv != 0) {
        printf("  redis: %s: no redis timers leg\n", why);
        return srv > 0 ? LF_EXIT_OK : LF_EXIT_FAILURE;
    }
    lf_engine *e = engine_on(c, pol, sv.url);
    bool ok = e != NULL;
    for (size_t i = 0; i < pending && ok; i++) ok = record(c, e, "timed", i, 1);
    int rc = ok ? lateness(c, e, pending, "redis, ") : LF_EXIT_FAILURE;
    if (rc == LF_EXIT_OK) rc = waiting(c, e, pending, "redis, ");
    if (e) lf_engine_free(e);
    if (rc == LF_EXIT_OK) {     /* in a database of their own (lf_bench_timers) */
        char url[sizeof sv.url + 8];
        snprintf(url, sizeof url, "%s?db=1", sv.url);
        e = engine_on(c, pol, url);
        rc = e ? own(c, e, pending, "redis, ") : LF_EXIT_FAILURE;
        lf_engine_free(e);
    }
    lf_bench_redis_server_stop(&sv);
    return rc;
}

int lf_bench_timers(lf_cli *c, const char *dir, size_t records, size_t pending,
                    unsigned runs) {
    char pol[2300], wfdir[2400], file[2500], hooks[2400], hook[2500];
    snprintf(pol, sizeof pol, "%s/timers", dir);
    snprintf(wfdir, sizeof wfdir, "%s/workflows", pol);
    snprintf(file, sizeof file, "%s/timed.lua", wfdir);
    snprintf(hooks, sizeof hooks, "%s/hooks", pol);
    snprintf(hook, sizeof hook, "%s/own.lua", hooks);
    FILE *f = NULL, *h = NULL;
    if (mkdir(pol, 0700) || mkdir(wfdir, 0700) || mkdir(hooks, 0700) ||
        !(f = fopen(file, "w")) || fputs(WORKFLOWS, f) < 0 || fclose(f) ||
        !(h = fopen(hook, "w")) || fputs(HOOK, h) < 0 || fclose(h)) {
        fprintf(stderr, "bench: timers: cannot write %s\n", f ? hook : file);
        return LF_EXIT_UNAVAILABLE;
    }

    /* Arming and cancelling: interleaved, best of runs each. */
    double plain = 0, timed = 0;
    for (unsigned r = 0; r < runs; r++) {
        double a = walk(c, pol, "loopforge", records), b = walk(c, pol, "timed", records);
        if (a < 0 || b < 0) return LF_EXIT_FAILURE;
        if (!plain || a < plain) plain = a;
        if (!timed || b < timed) timed = b;
    }
    double tr = (double)(records * (NSTEPS + 1));
    printf("timers: happy path with a timer on every state %.0f entries/s vs without "
           "%.0f/s (%.1f%%; target >= 80%%)\n",
           tr / timed, tr / plain, 100.0 * plain / timed);

    /* Memory per pending timer: parked with and without timers. */
    lf_engine *e_plain = NULL, *e = NULL;
    long m_plain = park(c, pol, "loopforge", pending, &e_plain);
    if (e_plain) lf_engine_free(e_plain);
    long m_timed = park(c, pol, "timed", pending, &e);
    if (m_plain < 0 || m_timed < 0) {
        if (e) lf_engine_free(e);
        return LF_EXIT_FAILURE;
    }
    printf("  %zu pending timers: %.0f bytes per record parked with a timer vs %.0f "
           "without (%+.0f bytes per timer)\n",
           pending, (double)m_timed / (double)pending, (double)m_plain / (double)pending,
           (double)(m_timed - m_plain) / (double)pending);

    int rc = lateness(c, e, pending, "");
    if (rc == LF_EXIT_OK) rc = waiting(c, e, pending, "");
    lf_engine_free(e);
    /* On an engine of their own: the retry records above entered within
     * the tick's window, which it would list. */
    if (rc == LF_EXIT_OK) {
        rc = (e = engine(c, pol)) ? own(c, e, pending, "") : LF_EXIT_FAILURE;
        lf_engine_free(e);
    }
    if (rc == LF_EXIT_OK) rc = lateness_redis(c, pol, pending / 10);
    fflush(stdout);
    return rc;
}
