/* test_embed.c -- the engine embedded in a host's event loop, the way
 * docs/embedding.md describes it:
 *
 *   - the host's own 1 ms timer keeps its schedule while transitions, a
 *     reload and a Redis outage (kill, fail, restart, recover) happen;
 *   - lf_engine_free with requests in flight on Redis completes each of
 *     them exactly once, with LF_UNAVAILABLE, and leaks nothing;
 *   - a hook's notify{} reaches an HTTP server on the same loop, and
 *     notifications nobody answers are logged as failed without stalling
 *     it; without a loop they are skipped, with a warning;
 *   - notify{} itself: what it accepts, what it refuses, what the engine
 *     is handed.
 *
 * Every phase starts from a host event (event_base_once), as a real
 * host's handlers would, and callbacks only record what they saw:
 * assertions run after the loop. Redis is private, on a unix socket
 * (tests/redis_helpers.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "store_helpers.h"
#include "redis_helpers.h"
#include "../src/loopforge.h"
#include "../src/core/buf.h"
#include "../src/core/record.h"
#include "../src/rules/rules.h"

/* The one place a time bound is the point: the largest gap between two
 * ticks of the host's 1 ms timer. Generous for a loaded machine under
 * ASan; a blocking Redis round trip, connect or HTTP exchange on the
 * loop would still show (the silent notify below waits 400 ms). */
#define MAX_GAP_MS 250

/* ---- the host ----------------------------------------------------------- */

typedef struct host {
    struct event_base *base;
    struct event *tick, *dog;
    long ticks;
    int64_t last_us, max_gap_us;
    bool timed_out;
} host;

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    host *h = arg;
    int64_t now = mono_us();
    (void)fd;
    (void)what;
    if (now - h->last_us > h->max_gap_us) h->max_gap_us = now - h->last_us;
    h->last_us = now;
    h->ticks++;
}

static void on_dog(evutil_socket_t fd, short what, void *arg) {
    host *h = arg;
    (void)fd;
    (void)what;
    h->timed_out = true;
    event_base_loopbreak(h->base);
}

static void host_start(host *h) {
    static const struct timeval ms = {0, 1000}, limit = {60, 0};
    memset(h, 0, sizeof *h);
    assert_non_null(h->base = event_base_new());
    h->tick = event_new(h->base, -1, EV_PERSIST, on_tick, h);
    h->dog = evtimer_new(h->base, on_dog, h);
    assert_int_equal(event_add(h->tick, &ms), 0);
    assert_int_equal(evtimer_add(h->dog, &limit), 0);
    h->last_us = mono_us();
}

/* Runs the host's loop until done(arg) says so (or the watchdog). */
static void host_run(host *h, bool (*done)(void *), void *arg) {
    while (!done(arg) && !h->timed_out) event_base_loop(h->base, EVLOOP_ONCE);
    if (!done(arg)) fail_msg("the host's loop ran for 60 s without finishing");
}

/* The test itself just blocked (starting or killing redis-server): that
 * is not the engine's doing, so it does not count as a gap. */
static void host_skip(host *h) { h->last_us = mono_us(); }

static void host_check_gaps(const host *h) {
    if (h->max_gap_us > MAX_GAP_MS * 1000)
        fail_msg("the host's 1 ms timer stalled for %lld ms (bound %d ms)",
                 (long long)(h->max_gap_us / 1000), MAX_GAP_MS);
    assert_true(h->ticks > 20);
}

static void host_stop(host *h) {
    event_free(h->tick);
    event_free(h->dog);
    event_base_free(h->base);
}

/* The next phase, from a host event a little later: the host's timer
 * gets to tick between phases too, and the run lasts long enough for
 * its schedule to mean something. */
static void soon(host *h, event_callback_fn fn, void *arg) {
    static const struct timeval later = {0, 50000};
    assert_int_equal(event_base_once(h->base, -1, EV_TIMEOUT, fn, arg, &later), 0);
}

/* ---- the engine's log --------------------------------------------------- */

static void keep_log(lf_log_level level, const char *msg, void *ud) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    lf_buf_printf(ud, "%s: %s\n", names[level], msg);
}

static size_t count_of(const char *text, const char *needle) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void expect_log(const lf_buf *log, const char *line) {
    if (!strstr(lf_buf_str(log), line))
        fail_msg("the log lacks \"%s\"; it has:\n%s", line, lf_buf_str(log));
}

/* ---- policy directories ------------------------------------------------- */

static void put(const char *dir, const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A fresh directory with the shipped workflow and, if given, one hook. */
static char *policy_dir(const char *hook) {
    char *dir = t_tmpdir(), text[16384];
    FILE *f = fopen("policies/workflows/loopforge.lua", "rb");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    put(dir, "workflows/loopforge.lua", text);
    if (hook) put(dir, "hooks/hook.lua", hook);
    return dir;
}

static lf_engine *engine(const char *store, const char *policies, struct event_base *base,
                         lf_buf *log) {
    char err[1024];
    lf_code code;
    lf_engine_config cfg = {.store = store, .policies = policies, .base = base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, &code);
    if (!e) fail_msg("lf_engine_new(%s): %s", store, err);
    lf_engine_set_log(e, keep_log, log);
    return e;
}

/* ---- what callbacks saw ------------------------------------------------- */

typedef struct slot {
    void *owner;
    int i;                      /* which record */
    int fired;
    lf_code code;
    bool during_free;           /* fired inside lf_engine_free */
} slot;

static void hit(slot *s, lf_code code) {
    s->fired++;
    s->code = code;
}

static void expect_slots(const slot *s, size_t n, lf_code code, const char *what) {
    for (size_t i = 0; i < n; i++) {
        if (s[i].fired != 1)
            fail_msg("%s %zu: its callback fired %d times", what, i, s[i].fired);
        if (s[i].code != code)
            fail_msg("%s %zu: %s, expected %s", what, i, lf_code_name(s[i].code),
                     lf_code_name(code));
    }
}

/* ---- (a) the host keeps its schedule through an outage ------------------ */

#define NREC 12                 /* records walked at once */
#define NOUT 6                  /* requests caught by the outage */

static const char *const walk[3][2] = {
    {"task_queued", "worker.picked_up"},
    {"pr_created", "pr.opened"},
    {"ci_pending", "ci.started"},
};

typedef struct scen {
    host *h;
    lf_engine *e;
    t_redis *srv;
    char ids[NREC][LF_ID_LEN + 1];
    int steps[NREC];
    slot created[NREC], walked[NREC][3], down[2 * NOUT], refused[NOUT], back;
    int reloads;
    lf_code reload_code;
    int left;                   /* callbacks (or chains) the phase awaits */
    bool done;
} scen;

static void phase_walk(evutil_socket_t, short, void *);
static void phase_outage(evutil_socket_t, short, void *);
static void phase_refused(evutil_socket_t, short, void *);
static void phase_back(evutil_socket_t, short, void *);

static void on_created(const lf_result *r, void *arg) {
    slot *s = arg;
    scen *sc = s->owner;
    hit(s, r->code);
    if (r->success)
        snprintf(sc->ids[s->i], sizeof sc->ids[0], "%s", lf_record_id(r->record));
    if (--sc->left == 0) soon(sc->h, phase_walk, sc);
}

static void phase_create(evutil_socket_t fd, short what, void *arg) {
    scen *sc = arg;
    (void)fd;
    (void)what;
    sc->left = NREC;
    for (int i = 0; i < NREC; i++) {
        char ref[80];
        snprintf(ref, sizeof ref, "https://github.com/o/r/issues/%d", i + 1);
        lf_create_req q = {.ref = ref, .repo = "o/r", .actor = "host"};
        sc->created[i] = (slot){.owner = sc, .i = i};
        lf_engine_create(sc->e, &q, on_created, &sc->created[i]);
    }
}

static void walk_step(scen *sc, int i);

/* Each record walks its three steps as a chain, the next submitted from
 * the callback of the one before; `left` counts chains. */
static void on_walked(const lf_result *r, void *arg) {
    slot *s = arg;
    scen *sc = s->owner;
    hit(s, r->code);
    if (r->success && ++sc->steps[s->i] < 3) {
        walk_step(sc, s->i);
        return;
    }
    if (--sc->left == 0) soon(sc->h, phase_outage, sc);
}

static void walk_step(scen *sc, int i) {
    int k = sc->steps[i];
    lf_transition_req q = {
        .id = sc->ids[i], .to = walk[k][0], .trigger = walk[k][1], .actor = "worker"};
    sc->walked[i][k] = (slot){.owner = sc, .i = i};
    lf_engine_transition(sc->e, &q, on_walked, &sc->walked[i][k]);
}

static void on_reloaded(lf_code code, const char *err, const char *old, const char *new_,
                        void *arg) {
    scen *sc = arg;
    (void)err;
    (void)old;
    (void)new_;
    sc->reloads++;
    sc->reload_code = code;
    if (--sc->left == 0) soon(sc->h, phase_outage, sc);
}

/* Transitions pipelined on every record, and a reload in the middle. */
static void phase_walk(evutil_socket_t fd, short what, void *arg) {
    scen *sc = arg;
    (void)fd;
    (void)what;
    sc->left = NREC + 1;
    for (int i = 0; i < NREC; i++) {
        walk_step(sc, i);
        if (i == NREC / 2) lf_engine_reload(sc->e, "host", on_reloaded, sc);
    }
}

static void on_down(const lf_result *r, void *arg) {
    slot *s = arg;
    scen *sc = s->owner;
    hit(s, r->code);
    if (--sc->left == 0) soon(sc->h, phase_refused, sc);
}

/* Requests are queued, and the server dies before the loop runs again:
 * none of them reached it, so every one must fail, once. */
static void phase_outage(evutil_socket_t fd, short what, void *arg) {
    scen *sc = arg;
    (void)fd;
    (void)what;
    sc->left = 2 * NOUT;
    for (int i = 0; i < NOUT; i++) {
        lf_transition_req q = {.id = sc->ids[i],
                               .to = "ci_passed",
                               .trigger = "ci.completed",
                               .actor = "ci"};
        sc->down[i] = (slot){.owner = sc, .i = i};
        sc->down[NOUT + i] = (slot){.owner = sc, .i = i};
        lf_engine_transition(sc->e, &q, on_down, &sc->down[i]);
        lf_engine_get(sc->e, sc->ids[i], on_down, &sc->down[NOUT + i]);
    }
    t_redis_stop(sc->srv, SIGKILL);
    host_skip(sc->h);
}

static void on_refused(const lf_result *r, void *arg) {
    slot *s = arg;
    scen *sc = s->owner;
    hit(s, r->code);
    if (--sc->left == 0) soon(sc->h, phase_back, sc);
}

/* The server is known to be gone: new requests fail too (no hang). */
static void phase_refused(evutil_socket_t fd, short what, void *arg) {
    scen *sc = arg;
    (void)fd;
    (void)what;
    sc->left = NOUT;
    for (int i = 0; i < NOUT; i++) {
        sc->refused[i] = (slot){.owner = sc, .i = i};
        lf_engine_get(sc->e, sc->ids[i], on_refused, &sc->refused[i]);
    }
}

static void on_back(const lf_result *r, void *arg) {
    slot *s = arg;
    scen *sc = s->owner;
    hit(s, r->code);
    sc->done = true;
}

/* The server is back (with its append-only file): the next request
 * reconnects and succeeds. */
static void phase_back(evutil_socket_t fd, short what, void *arg) {
    scen *sc = arg;
    (void)fd;
    (void)what;
    t_redis_start(sc->srv);
    host_skip(sc->h);
    lf_transition_req q = {
        .id = sc->ids[0], .to = "ci_failed", .trigger = "ci.failed", .actor = "ci"};
    sc->back = (slot){.owner = sc};
    lf_engine_transition(sc->e, &q, on_back, &sc->back);
}

static bool scen_done(void *arg) { return ((scen *)arg)->done; }

/* A private redis-server per test; the teardown stops it even when the
 * test failed half-way. */
static t_redis srv;

static int redis_up(void **state) {
    (void)state;
    memset(&srv, 0, sizeof srv);
    t_redis_start(&srv);
    return 0;
}

/* With an fsync'ed append-only file, so a kill loses nothing acknowledged. */
static int redis_up_persist(void **state) {
    (void)state;
    memset(&srv, 0, sizeof srv);
    srv.persist = true;
    t_redis_start(&srv);
    return 0;
}

static int redis_down(void **state) {
    (void)state;
    t_redis_free(&srv);
    return 0;
}

static void test_host_timer_through_outage(void **state) {
    (void)state;
    host h;
    host_start(&h);
    lf_buf log = LF_BUF_INIT;
    scen *sc = calloc(1, sizeof *sc);
    assert_non_null(sc);
    sc->h = &h;
    sc->srv = &srv;
    sc->e = engine(srv.url, "policies", h.base, &log);
    host_skip(&h);
    soon(&h, phase_create, sc);
    host_run(&h, scen_done, sc);

    expect_slots(sc->created, NREC, LF_OK, "create");
    expect_slots(&sc->walked[0][0], 3 * NREC, LF_OK, "transition");
    assert_int_equal(sc->reloads, 1);
    assert_int_equal(sc->reload_code, LF_OK);
    expect_slots(sc->down, 2 * NOUT, LF_UNAVAILABLE, "request during the outage");
    expect_slots(sc->refused, NOUT, LF_UNAVAILABLE, "request after the outage");
    expect_slots(&sc->back, 1, LF_OK, "request after the restart");
    host_check_gaps(&h);
    lf_stats st;
    lf_engine_stats(sc->e, &st);
    assert_int_equal(st.reloads_ok, 1);
    assert_int_equal(st.transitions[LF_UNAVAILABLE], NOUT);

    lf_engine_free(sc->e);
    /* Nothing fires late, or twice. */
    for (int i = 0; i < 3; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
    expect_slots(sc->down, 2 * NOUT, LF_UNAVAILABLE, "request during the outage");
    expect_slots(&sc->back, 1, LF_OK, "request after the restart");
    free(sc);
    lf_buf_free(&log);
    host_stop(&h);
}

/* ---- (b) freeing the engine with requests in flight --------------------- */

#define NFLY 14

typedef struct flight {
    lf_engine *e;
    slot s[NFLY];
    slot last;                  /* submitted just before the free */
    slot late;                  /* asked for from last's callback */
    bool freeing;
    char id[LF_ID_LEN + 1];
} flight;

static void fly_result(const lf_result *r, void *arg) {
    slot *s = arg;
    flight *f = s->owner;
    hit(s, r->code);
    s->during_free = f->freeing;
    if (r->success && s->i == -1)
        snprintf(f->id, sizeof f->id, "%s", lf_record_id(r->record));
    /* A host reacting to a failure by trying again, while the engine is
     * going away: answered at once, never lost. */
    if (s == &f->last) {
        f->late = (slot){.owner = f};
        lf_engine_get(f->e, f->id, fly_result, &f->late);
    }
}

static void fly_reload(lf_code code, const char *err, const char *o, const char *n,
                       void *arg) {
    slot *s = arg;
    (void)err;
    (void)o;
    (void)n;
    hit(s, code);
    s->during_free = ((flight *)s->owner)->freeing;
}

static void fly_list(lf_code code, const char *err, const lf_record *const *r, size_t n,
                     const char *cursor, void *arg) {
    slot *s = arg;
    (void)err;
    (void)r;
    (void)n;
    (void)cursor;
    hit(s, code);
    s->during_free = ((flight *)s->owner)->freeing;
}

static void fly_audit(lf_code code, const char *err, const char *const *lines,
                      const size_t *lens, size_t n, uint64_t last, void *arg) {
    slot *s = arg;
    (void)err;
    (void)lines;
    (void)lens;
    (void)n;
    (void)last;
    hit(s, code);
    s->during_free = ((flight *)s->owner)->freeing;
}

static bool slot_fired(void *arg) { return ((slot *)arg)->fired > 0; }

/* Every kind of request, all at once. */
static void submit_all(flight *f, int round) {
    lf_engine *e = f->e;
    int k = 0;
    for (int i = 0; i < 3; i++) {
        char ref[80];
        snprintf(ref, sizeof ref, "https://github.com/o/r/issues/%d%d", round, i + 100);
        lf_create_req q = {.ref = ref};
        lf_engine_create(e, &q, fly_result, &f->s[k++]);
    }
    lf_transition_req q = {
        .id = f->id, .to = "task_queued", .trigger = "worker.picked_up"};
    lf_engine_transition(e, &q, fly_result, &f->s[k++]);
    q.dry_run = true;
    lf_engine_transition(e, &q, fly_result, &f->s[k++]);
    q = (lf_transition_req){
        .id = f->id, .to = "pr_created", .trigger = "pr.opened", .idempotency_key = "k1"};
    lf_engine_transition(e, &q, fly_result, &f->s[k++]);
    lf_engine_get(e, f->id, fly_result, &f->s[k++]);
    lf_engine_get(e, "loop-0000000000000000", fly_result, &f->s[k++]);
    lf_engine_find_by_ref(e, "https://github.com/o/r/issues/0", fly_result, &f->s[k++]);
    lf_engine_reload(e, "host", fly_reload, &f->s[k++]);
    lf_engine_list(e, &(lf_list_query){0}, fly_list, &f->s[k++]);
    lf_engine_audit(e, NULL, 0, 0, fly_audit, &f->s[k++]);
    lf_engine_audit(e, f->id, 0, 0, fly_audit, &f->s[k++]);
    lf_engine_delete(e, f->id, "host", fly_result, &f->s[k++]);
    assert_int_equal(k, NFLY);
}

/* Round 0 frees before the loop ever runs again (everything queued);
 * round 1 lets the loop turn a few times first, so some requests are on
 * the wire, some answered, some halfway through their pipeline. */
static void test_free_in_flight(void **state) {
    (void)state;
    for (int round = 0; round < 2; round++) {
        host h;
        host_start(&h);
        lf_buf log = LF_BUF_INIT;
        flight *f = calloc(1, sizeof *f);
        assert_non_null(f);
        f->e = engine(srv.url, "policies", h.base, &log);
        /* A record to aim at, made the way a host would. */
        slot made = {.owner = f, .i = -1};
        char ref[64];
        snprintf(ref, sizeof ref, "https://github.com/o/r/issues/%d", round);
        lf_engine_create(f->e, &(lf_create_req){.ref = ref}, fly_result, &made);
        host_run(&h, slot_fired, &made);
        assert_int_equal(made.code, LF_OK);
        for (int i = 0; i < NFLY; i++) f->s[i] = (slot){.owner = f, .i = i};
        submit_all(f, round);
        if (round == 1)
            for (int i = 0; i < 4; i++)
                event_base_loop(h.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        int before = 0;
        for (int i = 0; i < NFLY; i++) before += f->s[i].fired;
        if (round == 0) assert_int_equal(before, 0);
        f->last = (slot){.owner = f};
        lf_engine_get(f->e, f->id, fly_result, &f->last);
        f->freeing = true;
        lf_engine_free(f->e);
        f->freeing = false;
        for (int i = 0; i < 3; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
        for (int i = 0; i < NFLY; i++) {
            if (f->s[i].fired != 1)
                fail_msg("round %d, request %d: its callback fired %d times", round, i,
                         f->s[i].fired);
            if (f->s[i].during_free && f->s[i].code != LF_UNAVAILABLE)
                fail_msg("round %d, request %d: %s during the free", round, i,
                         lf_code_name(f->s[i].code));
        }
        assert_true(f->last.during_free);
        expect_slots(&f->last, 1, LF_UNAVAILABLE, "request made just before the free");
        expect_slots(&f->late, 1, LF_UNAVAILABLE, "request made during the free");
        free(f);
        lf_buf_free(&log);
        host_stop(&h);
    }
}

/* ---- (c) notify{} on the host's loop ------------------------------------ */

typedef struct catcher {
    struct evhttp *http;
    int port;
    int hits, fails;
    char uri[256], type[128], fail_type[128];
    char *body, *fail_body;
} catcher;

static char *body_of(struct evhttp_request *req) {
    struct evbuffer *b = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

static void on_http(struct evhttp_request *req, void *arg) {
    catcher *c = arg;
    const char *type =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_reply(req, 405, "Method Not Allowed", NULL);
        return;
    }
    if (strcmp(evhttp_request_get_uri(req), "/fail") == 0) {
        c->fails++;
        snprintf(c->fail_type, sizeof c->fail_type, "%s", type ? type : "");
        free(c->fail_body);
        c->fail_body = body_of(req);
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }
    c->hits++;
    snprintf(c->uri, sizeof c->uri, "%s", evhttp_request_get_uri(req));
    snprintf(c->type, sizeof c->type, "%s", type ? type : "");
    free(c->body);
    c->body = body_of(req);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static int port_of(evutil_socket_t fd) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A loopback socket on a port of the kernel's choosing; listening or not. */
static int loopback_socket(bool listening) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    if (listening) assert_int_equal(listen(fd, 8), 0);
    return fd;
}

typedef struct notify_wait {
    lf_engine *e;
    uint64_t want;
} notify_wait;

static bool notified(void *arg) {
    notify_wait *w = arg;
    lf_stats st;
    lf_engine_stats(w->e, &st);
    return st.notify_sent + st.notify_failed >= w->want;
}

typedef struct sync_res {
    int fired;
    lf_code code;
    char id[LF_ID_LEN + 1];
    char state[32];
} sync_res;

static void keep_res(const lf_result *r, void *arg) {
    sync_res *o = arg;
    o->fired++;
    o->code = r->code;
    if (r->record) {
        snprintf(o->id, sizeof o->id, "%s", lf_record_id(r->record));
        snprintf(o->state, sizeof o->state, "%s", lf_record_state(r->record));
    }
}

/* create + transition to task_queued on an inline store: both done when
 * the calls return. */
static void queue_task(lf_engine *e, const char *ref, sync_res *out) {
    sync_res c = {0};
    lf_engine_create(e, &(lf_create_req){.ref = ref}, keep_res, &c);
    assert_int_equal(c.fired, 1);
    assert_int_equal(c.code, LF_OK);
    *out = (sync_res){0};
    lf_transition_req q = {
        .id = c.id, .to = "task_queued", .trigger = "worker.picked_up"};
    lf_engine_transition(e, &q, keep_res, out);
    assert_int_equal(out->fired, 1);
    assert_int_equal(out->code, LF_OK);
}

#define NOTIFY_HOOK                                                                                    \
    "return hook { name = 'tell', on = { to = 'task_queued' }, run = function(e)\n"                    \
    "  return {\n"                                                                                     \
    "    notify { url = 'http://127.0.0.1:%d/hook?x=1',\n"                                             \
    "             body = { id = e.record.record_id, state = e.state, n = 1 } },\n"                     \
    "    request('pr_created', 'pr.opened'),\n"                                                        \
    "    notify { url = 'http://127.0.0.1:%d/fail', body = 'plain', content_type = 'text/x-test' },\n" \
    "    notify { url = 'http://127.0.0.1:%d/refused', body = 'x' },\n"                                \
    "    notify { url = 'http://127.0.0.1:%d/silent', body = 'x', timeout_ms = 400 },\n"               \
    "  }\n"                                                                                            \
    "end }\n"

static void test_notify_on_the_loop(void **state) {
    (void)state;
    host h;
    host_start(&h);
    catcher c = {0};
    assert_non_null(c.http = evhttp_new(h.base));
    evhttp_set_gencb(c.http, on_http, &c);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(c.http, "127.0.0.1", 0);
    assert_non_null(bs);
    c.port = port_of(evhttp_bound_socket_get_fd(bs));
    int dead = loopback_socket(false), dead_port = port_of(dead);
    close(dead);                /* nobody listens there now */
    int silent = loopback_socket(true), silent_port = port_of(silent);

    char hook[2048];
    snprintf(hook, sizeof hook, NOTIFY_HOOK, c.port, c.port, dead_port, silent_port);
    char *dir = policy_dir(hook);
    lf_buf log = LF_BUF_INIT;
    lf_engine *e = engine("memory:", dir, h.base, &log);

    sync_res moved;
    queue_task(e, "https://github.com/o/r/issues/1", &moved);
    /* The hook's follow-up ran (inline store); the POSTs are under way. */
    sync_res now = {0};
    lf_engine_get(e, moved.id, keep_res, &now);
    if (strcmp(now.state, "pr_created") != 0)
        fail_msg("the follow-up did not run: %s; log:\n%s", now.state, lf_buf_str(&log));
    host_skip(&h);
    notify_wait w = {e, 4};
    host_run(&h, notified, &w);

    lf_stats st;
    lf_engine_stats(e, &st);
    assert_int_equal(st.notify_sent, 1);
    assert_int_equal(st.notify_failed, 3);
    assert_int_equal(c.hits, 1);
    assert_string_equal(c.uri, "/hook?x=1");
    assert_string_equal(c.type, "application/json");
    cJSON *b = cJSON_Parse(c.body);
    assert_true(cJSON_IsObject(b));
    assert_string_equal(cJSON_GetObjectItem(b, "id")->valuestring, moved.id);
    assert_string_equal(cJSON_GetObjectItem(b, "state")->valuestring, "task_queued");
    assert_int_equal(cJSON_GetObjectItem(b, "n")->valueint, 1);
    cJSON_Delete(b);
    assert_int_equal(c.fails, 1);
    assert_string_equal(c.fail_type, "text/x-test");
    assert_string_equal(c.fail_body, "plain");

    char line[256];
    snprintf(line, sizeof line, "info: hook tell: notify http://127.0.0.1:%d: HTTP 200\n",
             c.port);
    expect_log(&log, line);
    snprintf(line, sizeof line,
             "warn: hook tell: notify http://127.0.0.1:%d failed: HTTP 500\n", c.port);
    expect_log(&log, line);
    snprintf(line, sizeof line,
             "warn: hook tell: notify http://127.0.0.1:%d failed: "
             "no connection (refused or unreachable)\n",
             dead_port);
    expect_log(&log, line);
    snprintf(line, sizeof line,
             "warn: hook tell: notify http://127.0.0.1:%d failed: "
             "no reply within 400 ms\n",
             silent_port);
    expect_log(&log, line);
    /* Paths and queries (where webhook secrets live) stay out of the log. */
    assert_null(strstr(lf_buf_str(&log), "/hook"));
    assert_null(strstr(lf_buf_str(&log), "x=1"));
    host_check_gaps(&h);

    /* Freed with POSTs in flight: each is cancelled, with a line. */
    queue_task(e, "https://github.com/o/r/issues/2", &moved);
    lf_engine_free(e);
    assert_int_equal(count_of(lf_buf_str(&log), "cancelled: the engine was freed"), 4);
    for (int i = 0; i < 5; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
    assert_int_equal(c.hits, 1);

    evhttp_free(c.http);
    close(silent);
    free(c.body);
    free(c.fail_body);
    lf_buf_free(&log);
    t_rmtree(dir);
    free(dir);
    host_stop(&h);
}

/* Without an event base there is no loop to send on: the CLI, a Lua
 * script. The transition is unaffected. */
static void test_notify_without_loop(void **state) {
    (void)state;
    char *dir = policy_dir(
        "return hook { name = 'tell', on = { to = 'task_queued' }, run = function(e)\n"
        "  return notify { url = 'http://127.0.0.1:9/x', body = 'hi' } end }\n");
    lf_buf log = LF_BUF_INIT;
    lf_engine *e = engine("memory:", dir, NULL, &log);
    sync_res moved;
    queue_task(e, "https://github.com/o/r/issues/1", &moved);
    expect_log(&log, "warn: hook tell: notify skipped: no event loop");
    lf_stats st;
    lf_engine_stats(e, &st);
    assert_int_equal(st.notify_failed, 1);
    assert_int_equal(st.notify_sent, 0);
    lf_engine_free(e);
    lf_buf_free(&log);
    t_rmtree(dir);
    free(dir);
}

/* A notification to a host name is cancelled while its name is being
 * looked up: one more turn of the host's loop releases everything (the
 * run under ASan checks that nothing leaks or is read after a free). */
static void test_notify_lookup_cancelled(void **state) {
    (void)state;
    host h;
    host_start(&h);
    char *dir = policy_dir(
        "return hook { name = 'tell', on = { to = 'task_queued' }, run = function(e)\n"
        "  return { notify { url = 'http://lookup.invalid:8080/x', body = 'a' },\n"
        "           notify { url = 'http://lookup.invalid:8080/y', body = 'b' } } end }\n");
    lf_buf log = LF_BUF_INIT;
    lf_engine *e = engine("memory:", dir, h.base, &log);
    sync_res moved;
    queue_task(e, "https://github.com/o/r/issues/1", &moved);
    event_base_loop(h.base, EVLOOP_NONBLOCK);
    lf_engine_free(e);
    assert_int_equal(count_of(lf_buf_str(&log),
                              "notify http://lookup.invalid:8080 failed: "
                              "cancelled: the engine was freed"),
                     2);
    event_base_loop(h.base, EVLOOP_NONBLOCK);
    lf_buf_free(&log);
    t_rmtree(dir);
    free(dir);
    host_stop(&h);
}

/* ---- (d) notify{} in the rules ------------------------------------------ */

static void keep_record(const lf_result *r, void *arg) {
    *(lf_record **)arg = r->record ? lf_record_dup(r->record) : NULL;
}

static void test_notify_rules(void **state) {
    (void)state;
    char *dir = policy_dir(NULL);
    put(dir, "hooks/a.lua",
        "return hook { name = 'a', run = function()\n"
        "  return notify { url = 'http://relay.internal:8080/x', body = 'hi' } end }\n");
    put(dir, "hooks/b.lua",
        "return hook { name = 'b', run = function()\n"
        "  return { request('x', 'y'),\n"
        "           notify { url = 'HTTP://10.0.0.1/', body = { k = { 1, 2 } }, timeout_ms = 250 } }\n"
        "end }\n");
    put(dir, "hooks/c.lua",
        "return hook { name = 'c', run = function()\n"
        "  return notify { url = 'https://example.com/' } end }\n");
    put(dir, "hooks/d.lua",
        "return hook { name = 'd', run = function()\n"
        "  return notify { url = 'http://h/', tiemout_ms = 5 } end }\n");
    put(dir, "hooks/e.lua",
        "return hook { name = 'e', run = function()\n"
        "  return notify { url = 'http://h/', timeout_ms = 0 } end }\n");
    put(dir, "hooks/f.lua",
        "return hook { name = 'f', run = function()\n"
        "  return { request('p', 'q'), notify { url = 'http://h/', body = { f = print } } } end }\n");
    put(dir, "hooks/g.lua",
        "return hook { name = 'g', run = function()\n"
        "  return notify { url = 'http://h:1/p', content_type = 'application/x-ndjson' } end }\n");
    put(dir, "hooks/h.lua",
        "return hook { name = 'h', run = function()\n"
        "  return notify { url = 'http://h/', body = 5 } end }\n");
    put(dir, "hooks/i.lua",
        "return hook { name = 'i', run = function()\n"
        "  return { notify { url = 'http://h/' }, 7 } end }\n");
    lf_buf errs = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(dir, &errs);
    if (!r) fail_msg("load: %s", lf_buf_str(&errs));

    lf_buf log = LF_BUF_INIT;
    lf_engine *e = engine("memory:", dir, NULL, &log);
    lf_record *rec = NULL;
    lf_engine_create(e, &(lf_create_req){.ref = "r1"}, keep_record, &rec);
    assert_non_null(rec);
    lf_engine_free(e);
    lf_buf_free(&log);

    lf_hook_event ev = {
        .record = rec, .previous = "issue_created", .state = "task_queued",
        .trigger = "t", .actor = "me", .decisions = "[]"};
    lf_hook_report rep;
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.ran, 9);
    assert_int_equal(rep.errors, 6);
    assert_int_equal(rep.nfollowups, 1);
    assert_string_equal(rep.followups[0].hook, "b");
    assert_int_equal(rep.nnotifications, 3);
    lf_notification *n = rep.notifications;
    assert_string_equal(n[0].hook, "a");
    assert_string_equal(n[0].url, "http://relay.internal:8080/x");
    assert_string_equal(n[0].body, "hi");
    assert_int_equal(n[0].body_len, 2);
    assert_string_equal(n[0].content_type, "text/plain; charset=utf-8");
    assert_int_equal(n[0].timeout_ms, LF_NOTIFY_TIMEOUT_MS);
    assert_string_equal(n[1].hook, "b");
    assert_string_equal(n[1].body, "{\"k\":[1,2]}");
    assert_string_equal(n[1].content_type, "application/json");
    assert_int_equal(n[1].timeout_ms, 250);
    assert_string_equal(n[2].hook, "g");
    assert_string_equal(n[2].body, "");
    assert_int_equal(n[2].body_len, 0);
    assert_string_equal(n[2].content_type, "application/x-ndjson");
    const char *m = rep.messages;
    assert_non_null(strstr(m, "hook c: "));
    assert_non_null(
        strstr(m, "c.lua:2: notify: url must be an http://HOST[:PORT]/PATH string "
                  "(https is not supported)\n"));
    assert_non_null(strstr(m, "d.lua:2: notify: unknown field 'tiemout_ms'"));
    assert_non_null(strstr(
        m, "e.lua:2: notify: timeout_ms must be a whole number from 1 to 60000\n"));
    assert_non_null(
        strstr(m, "hook f: notify body.f: cannot encode a function as JSON\n"));
    assert_non_null(
        strstr(m, "h.lua:2: notify: body must be a string or a table, not a number\n"));
    assert_non_null(strstr(m, "hook i: item 2 of the returned list is not a request or a "
                              "notification\n"));
    lf_hook_report_free(&rep);
    lf_record_free(rec);
    lf_rules_free(r);
    lf_buf_free(&errs);
    t_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_rules),
        cmocka_unit_test(test_notify_without_loop),
        cmocka_unit_test(test_notify_on_the_loop),
        cmocka_unit_test(test_notify_lookup_cancelled),
        cmocka_unit_test_setup_teardown(test_free_in_flight, redis_up, redis_down),
        cmocka_unit_test_setup_teardown(test_host_timer_through_outage, redis_up_persist,
                                        redis_down),
    };
    return cmocka_run_group_tests_name("embed", tests, NULL, NULL);
}
