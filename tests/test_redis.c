/* test_redis.c -- what only the redis store has: URLs and opening, many
 * commits in flight on one connection, several processes racing for the
 * head of one log, NOSCRIPT, outages and restarts, cursors across ties,
 * corrupted values, tampering, and closing with requests in flight.
 *
 * The store conformance suite (test_store.c) covers the behavior every
 * store shares. These tests run on a private redis-server on a unix
 * socket, flushed before each test; the restart test starts its own
 * server with an fsync'ed append-only file, so it can kill it and find
 * every acknowledged write after the restart. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <zstd.h>
#include <cjson/cJSON.h>

#include "store_helpers.h"
#include "redis_helpers.h"
#include "policy_dir.h"
#include "timers_pages.h"
#include "../src/loopforge.h"
#include "../src/store/redis.h"

static t_redis server;

/* The v-th move of a record that goes back and forth between
 * issue_created and task_queued (version v + 1). */
static void t_flip(lf_entry *e, const char *id, unsigned v) {
    t_entry(e, LF_ENTRY_TRANSITION, id, v + 1, v % 2 ? "issue_created" : "task_queued",
            v % 2 ? "task_queued" : "issue_created", "test.moved");
}

typedef struct fixture {
    struct event_base *base;
    lf_store *s;
} fixture;

static int group_setup(void **state) {
    (void)state;
    t_redis_start(&server);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    t_redis_free(&server);
    return 0;
}

static lf_store *open_url(const char *url, struct event_base *base) {
    char err[512];
    lf_code code;
    lf_store *s = lf_store_open(url, base, &code, err, sizeof err);
    if (!s) fail_msg("open %s: %s", url, err);
    assert_int_equal(code, LF_OK);
    return s;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    t_redis_ok(&server, "FLUSHALL");
    assert_non_null(t_base = f->base = event_base_new());
    f->s = open_url(server.url, f->base);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->s) lf_store_free(f->s);
    event_base_free(f->base);
    t_base = NULL;
    free(f);
    return 0;
}

#define F(state) ((fixture *)*(state))

/* ---- entries built without waiting ----------------------------------- */

typedef struct created_buf {
    char rec[512], meta[256];
} created_buf;

static void build_created(lf_entry *e, created_buf *b, const char *id, const char *ref,
                          const char *repo) {
    snprintf(b->rec, sizeof b->rec,
             "{\"ref\":\"%s\",\"ref_number\":1,\"repo\":\"%s\",\"auto_merge\":false,"
             "\"labels\":{},\"metadata\":{},\"workflow\":\"loopforge\"}",
             ref, repo);
    snprintf(b->meta, sizeof b->meta, "{\"ref\":\"%s\",\"repo\":\"%s\"}", ref, repo);
    t_created(e, id, b->rec, b->meta);
}

/* Sends a create and returns at once: the entry is ours to reuse as soon
 * as commit returns, which is part of what this checks. */
static void create_async(lf_store *s, unsigned n, const char *ref, t_got *g) {
    char id[LF_ID_LEN + 1];
    created_buf b;
    lf_entry e;
    t_id(id, n);
    build_created(&e, &b, id, ref, "acme/app");
    t_got_reset(g);
    lf_store_commit(s, &e, t_store_cb, g);
    memset(&b, 'x', sizeof b);          /* borrowed strings die here */
}

static void settle_all(t_got *g, size_t n) {
    for (size_t i = 0; i < n; i++) t_settle(&g[i].calls);
    for (size_t i = 0; i < n; i++) assert_int_equal(g[i].calls, 1);
}

/* ---- opening ---------------------------------------------------------- */

static void expect_open_error(const char *url, struct event_base *base, lf_code want,
                              const char *needle) {
    char err[512] = "";
    lf_code code = LF_OK;
    lf_store *s = lf_store_open(url, base, &code, err, sizeof err);
    if (s) {
        lf_store_free(s);
        fail_msg("%s opened", url);
    }
    assert_int_equal(code, want);
    if (needle && !strstr(err, needle))
        fail_msg("open %s: '%s' does not mention '%s'", url, err, needle);
}

static void bad_urls_are_usage_errors(void **state) {
    struct event_base *base = F(state)->base;
    const char *bad[] = {
        "redis://",
        "redis://:pw@",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:12ab",
        "redis://host/x",
        "redis://[::1",
        "unix:",
        "unix:relative.sock",
        "unix://relative.sock",
        "redis://h?bogus=1",
        "redis://h?timeout_ms=0",
        "redis://h?connect_timeout_ms=x",
        "redis://h?prefix=a{b}",
        "redis://h/1?db=2",
        "redis://h?db",
        "redis://h%zz",
        "redis:/h",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_open_error(bad[i], base, LF_INVALID_REQUEST, NULL);
    /* What is wrong is named; a password never is. */
    expect_open_error("redis://:s3cret@host:99999", base, LF_INVALID_REQUEST, "port");
    char err[512];
    lf_code code;
    assert_null(
        lf_store_open("redis://:s3cret@host:99999", base, &code, err, sizeof err));
    assert_null(strstr(err, "s3cret"));
    /* An asynchronous store without a loop to run on. */
    expect_open_error(server.url, NULL, LF_INVALID_REQUEST, "event loop");
}

static void unreachable_is_unavailable(void **state) {
    struct event_base *base = F(state)->base;
    char url[4300], *dir = t_tmpdir();

    /* No socket there: the path is in the message. */
    snprintf(url, sizeof url, "unix://%s/nobody.sock", dir);
    expect_open_error(url, base, LF_UNAVAILABLE, "nobody.sock");
    t_rmtree(dir);
    free(dir);

    /* A closed TCP port. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);                          /* bound once, now nobody listens */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", ntohs(a.sin_port));
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    expect_open_error(url, base, LF_UNAVAILABLE, addr);

    /* A listener that never answers: bounded by the timeouts, no hang. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 0), 0);
    len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(url, sizeof url,
             "redis://127.0.0.1:%d/0?connect_timeout_ms=200"
             "&timeout_ms=200",
             ntohs(a.sin_port));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    int64_t t0 = t_mono_ms();
    expect_open_error(url, base, LF_UNAVAILABLE, addr);
    assert_true(t_mono_ms() - t0 < 10000);
    close(fd);
}

static void auth_and_db_errors(void **state) {
    struct event_base *base = F(state)->base;
    char url[4300];
    /* This server has no password, so any AUTH is refused. */
    snprintf(url, sizeof url, "unix://:wrong@%s", server.sock);
    expect_open_error(url, base, LF_UNAVAILABLE, "AUTH");
    snprintf(url, sizeof url, "%s?db=9999", server.url);
    expect_open_error(url, base, LF_UNAVAILABLE, "SELECT 9999");
}

/* Two prefixes in one db, and a second db: three stores that share
 * nothing. */
static void prefix_and_db_separate_stores(void **state) {
    struct event_base *base = F(state)->base;
    char u1[4300], u2[4300];
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    snprintf(u1, sizeof u1, "%s?prefix=app1:", server.url);
    snprintf(u2, sizeof u2, "%s?db=3&prefix=app2%%3A", server.url);
    lf_store *a = open_url(u1, base), *b = open_url(u2, base);
    t_id(id, 1);
    assert_int_equal(t_create(a, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_get(b, id, &g), LF_NOT_FOUND);
    assert_int_equal(t_get(F(state)->s, id, &g), LF_NOT_FOUND);
    assert_int_equal(t_create(b, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(g.seq, 1);         /* b's log is its own */

    redisReply *r = t_redis_cmd(&server, "EXISTS app1:rec:{%s}", id);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    r = t_redis_cmd(&server, "EXISTS app2:rec:{%s}", id);
    assert_int_equal(r->integer, 0);    /* db 0 */
    freeReplyObject(r);
    lf_store_free(a);
    lf_store_free(b);
    t_got_reset(&g);
}

/* ---- pipelining ------------------------------------------------------- */

/* Hundreds of commits in flight on one connection, each sealed on the one
 * before it: all land, in a contiguous chain. */
static void pipelined_commits(void **state) {
    lf_store *s = F(state)->s;
    enum { N = 400 };
    t_got *g = calloc(N, sizeof *g);
    char ref[32];
    for (unsigned i = 0; i < N; i++) {
        snprintf(ref, sizeof ref, "p%u", i);
        create_async(s, i + 1, ref, &g[i]);
    }
    settle_all(g, N);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(g[i].code, LF_OK);
        assert_int_equal(g[i].seq, i + 1);  /* sent in order, sealed in order */
    }
    assert_int_equal(t_verify_chain(s, NULL, 0), N);
    for (unsigned i = 0; i < N; i++) t_got_reset(&g[i]);
    free(g);
}

/* Refusals in the middle of a pipeline: everything sent after one was
 * chained on an entry that never made it, and must be re-sealed, in order,
 * without a gap in the log. */
static void pipeline_survives_refusals(void **state) {
    lf_store *s = F(state)->s;
    enum { N = 60 };
    t_got g[N];
    char ref[32];
    memset(g, 0, sizeof g);
    for (unsigned i = 0; i < N; i++) {
        /* every 7th reuses the ref of the first: a duplicate */
        if (i % 7 == 3) snprintf(ref, sizeof ref, "p0");
        else snprintf(ref, sizeof ref, "p%u", i);
        create_async(s, i % 11 == 5 ? 1 : i + 1, ref, &g[i]);  /* and id 1 again */
    }
    settle_all(g, N);
    unsigned ok = 0, dup = 0, conflict = 0;
    uint64_t last = 0;
    for (unsigned i = 0; i < N; i++) {
        if (g[i].code == LF_OK) {
            ok++;
            assert_true(g[i].seq > last);   /* order kept */
            last = g[i].seq;
        } else if (g[i].code == LF_DUPLICATE_REF) {
            dup++;
        } else {
            assert_int_equal(g[i].code, LF_CONFLICT);
            conflict++;
        }
    }
    assert_true(dup > 0 && conflict > 0);
    assert_int_equal(ok + dup + conflict, N);
    assert_int_equal(last, ok);
    assert_int_equal(t_verify_chain(s, NULL, 0), (long)ok);
    for (unsigned i = 0; i < N; i++) t_got_reset(&g[i]);
}

/* A record's own commits, pipelined one after the other: each is folded
 * on what the one before it left, read after it on the same wire. */
static void pipelined_transitions_of_one_record(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0}, m[10];
    char id[LF_ID_LEN + 1];
    memset(m, 0, sizeof m);
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (unsigned v = 1; v <= 10; v++) {
        lf_entry e;
        t_flip(&e, id, v);
        lf_store_commit(s, &e, t_store_cb, &m[v - 1]);
    }
    settle_all(m, 10);
    for (unsigned v = 1; v <= 10; v++) {
        assert_int_equal(m[v - 1].code, LF_OK);
        assert_int_equal(m[v - 1].version, v + 1);
    }
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_int_equal(g.version, 11);
    assert_int_equal(g.nhist, 11);
    for (unsigned i = 0; i < 10; i++) t_got_reset(&m[i]);
    t_got_reset(&g);
}

/* ---- processes racing ------------------------------------------------- */

enum { KID_CREATES = 150, TARGET_VERSION = 60 };

typedef struct kid_report {
    int creates_ok, contested_ok, contested_dup, moves_ok, conflicts, errors;
    char err[600];
} kid_report;

static bool kid_wait(struct event_base *b, const int *calls) {
    int64_t deadline = t_mono_ms() + 60000;
    while (!*calls && t_mono_ms() < deadline)
        if (event_base_loop(b, EVLOOP_ONCE) != 0) return false;
    return *calls != 0;
}

static void kid_error(kid_report *r, const char *what, const t_got *g) {
    if (!r->errors++)
        snprintf(r->err, sizeof r->err, "%s: %s %s", what, lf_code_name(g->code), g->err);
}

/* A child: its own event base and store (its own connection), no cmocka.
 * Waits for the go byte, then races the other child. */
static void kid_main(int k, int go, int out, const char *shared) {
    kid_report r = {0};
    char err[512], id[LF_ID_LEN + 1], ref[32], c;
    lf_code code;
    struct event_base *b = event_base_new();
    lf_store *s = b ? lf_store_open(server.url, b, &code, err, sizeof err) : NULL;
    t_got *g = calloc(KID_CREATES, sizeof *g), one = {0};

    if (!s || !g || read(go, &c, 1) != 1) _exit(2);
    /* 1. Many creates in flight, interleaving with the other's. */
    for (unsigned i = 0; i < KID_CREATES; i++) {
        created_buf cb;
        lf_entry e;
        t_id(id, 1000u * (unsigned)(k + 1) + i);
        snprintf(ref, sizeof ref, "kid%d-%u", k, i);
        build_created(&e, &cb, id, ref, "acme/app");
        lf_store_commit(s, &e, t_store_cb, &g[i]);
    }
    for (unsigned i = 0; i < KID_CREATES; i++) {
        if (!kid_wait(b, &g[i].calls) || g[i].code != LF_OK)
            kid_error(&r, "create", &g[i]);
        else r.creates_ok++;
        t_got_reset(&g[i]);
    }
    /* 2. One ref, two creates: one record. */
    {
        created_buf cb;
        lf_entry e;
        t_id(id, 9000u + (unsigned)k);
        build_created(&e, &cb, id, "contested", "acme/app");
        lf_store_commit(s, &e, t_store_cb, &one);
        if (!kid_wait(b, &one.calls)) kid_error(&r, "contested", &one);
        else if (one.code == LF_OK) r.contested_ok++;
        else if (one.code == LF_DUPLICATE_REF) r.contested_dup++;
        else kid_error(&r, "contested", &one);
        t_got_reset(&one);
    }
    /* 3. One record, both moving it: read, then write on what was read. */
    for (;;) {
        lf_store_get(s, shared, t_store_cb, &one);
        if (!kid_wait(b, &one.calls) || one.code != LF_OK) {
            kid_error(&r, "get", &one);
            break;
        }
        uint64_t v = one.version;
        if (v >= TARGET_VERSION) break;
        bool in_first = strcmp(one.state, "issue_created") == 0;
        lf_entry e = {0};
        e.record_id = shared;
        e.kind = LF_ENTRY_TRANSITION;
        e.version = v + 1;
        e.from_state = in_first ? "issue_created" : "task_queued";
        e.to_state = in_first ? "task_queued" : "issue_created";
        e.trigger = k ? "kid.one" : "kid.zero";
        e.actor = k ? "kid1" : "kid0";
        t_stamp(e.timestamp);
        t_got_reset(&one);
        lf_store_commit(s, &e, t_store_cb, &one);
        if (!kid_wait(b, &one.calls)) {
            kid_error(&r, "move", &one);
            break;
        }
        if (one.code == LF_OK) r.moves_ok++;
        else if (one.code == LF_CONFLICT) r.conflicts++;
        else {
            kid_error(&r, "move", &one);
            break;
        }
        t_got_reset(&one);
    }
    t_got_reset(&one);
    ssize_t n = write(out, &r, sizeof r);
    lf_store_free(s);
    event_base_free(b);
    free(g);
    _exit(n == (ssize_t)sizeof r ? 0 : 3);
}

static void processes_race_for_the_log(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0};
    char shared[LF_ID_LEN + 1];
    int go[2], out[2];
    pid_t kids[2];
    kid_report rep[2];

    t_id(shared, 1);
    assert_int_equal(t_create(s, shared, "shared", "acme/app", &g), LF_OK);
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            close(out[0]);
            kid_main(k, go[0], out[1], shared);
        }
    }
    close(go[0]);
    close(out[1]);
    assert_int_equal(write(go[1], "gg", 2), 2);     /* both start at once */
    close(go[1]);
    for (int k = 0; k < 2; k++) {
        int st;
        assert_int_equal(read(out[0], &rep[k], sizeof rep[k]), (ssize_t)sizeof rep[k]);
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    close(out[0]);
    for (int k = 0; k < 2; k++) {
        if (rep[k].errors)
            fail_msg("kid %d: %d errors, first: %s", k, rep[k].errors, rep[k].err);
        assert_int_equal(rep[k].creates_ok, KID_CREATES);
    }
    /* One ref, one record. */
    assert_int_equal(rep[0].contested_ok + rep[1].contested_ok, 1);
    assert_int_equal(rep[0].contested_dup + rep[1].contested_dup, 1);
    /* Exactly one commit per version of the shared record. */
    assert_int_equal(rep[0].moves_ok + rep[1].moves_ok, TARGET_VERSION - 1);
    assert_int_equal(t_get(s, shared, &g), LF_OK);
    assert_int_equal(g.version, TARGET_VERSION);
    t_audit_page(s, shared, 0, 0, &a);
    assert_int_equal(a.n, TARGET_VERSION);
    for (size_t i = 0; i < a.n; i++) {
        cJSON *o = cJSON_Parse(a.lines[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "version");
        assert_int_equal((uint64_t)v->valuedouble, i + 1);
        cJSON_Delete(o);
    }
    t_audit_reset(&a);
    /* And one chain through all of it, seq 1, 2, 3 ... */
    assert_int_equal(t_verify_chain(s, NULL, 0),
                     1 + 2 * KID_CREATES + 1 + (TARGET_VERSION - 1));
    t_got_reset(&g);
}

/* ---- NOSCRIPT ---------------------------------------------------------- */

static void noscript_recovery(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_page p = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    /* Every script gone, behind the store's back. */
    t_redis_ok(&server, "SCRIPT FLUSH");
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g), LF_OK);
    t_redis_ok(&server, "SCRIPT FLUSH");
    t_list(s, "task_queued", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 1);
    t_redis_ok(&server, "SCRIPT FLUSH");
    assert_int_equal(t_verify_chain(s, NULL, 0), 2);

    /* ... and in the middle of a pipeline. */
    enum { N = 80 };
    t_got *m = calloc(N, sizeof *m);
    char ref[32];
    for (unsigned i = 0; i < N / 2; i++) {
        snprintf(ref, sizeof ref, "n%u", i);
        create_async(s, 100 + i, ref, &m[i]);
    }
    while (!m[5].calls) event_base_loop(t_base, EVLOOP_ONCE);
    t_redis_ok(&server, "SCRIPT FLUSH");
    for (unsigned i = N / 2; i < N; i++) {
        snprintf(ref, sizeof ref, "n%u", i);
        create_async(s, 100 + i, ref, &m[i]);
    }
    settle_all(m, N);
    for (unsigned i = 0; i < N; i++) {
        if (m[i].code != LF_OK) fail_msg("create %u: %s", i, m[i].err);
        t_got_reset(&m[i]);
    }
    free(m);
    assert_int_equal(t_verify_chain(s, NULL, 0), 2 + N);
    t_page_reset(&p);
    t_got_reset(&g);
}

/* ---- outages ------------------------------------------------------------ */

static void restart_in_the_middle(void **state) {
    struct event_base *base = F(state)->base;
    t_redis own = {.persist = true};
    t_got g = {0};
    char id[LF_ID_LEN + 1], ref[32];
    enum { N = 60 };
    t_got m[N];

    t_redis_start(&own);
    lf_store *s = open_url(own.url, base);
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g), LF_OK);

    /* Commits in flight when the server dies. */
    memset(m, 0, sizeof m);
    for (unsigned i = 0; i < N; i++) {
        snprintf(ref, sizeof ref, "x%u", i);
        create_async(s, 100 + i, ref, &m[i]);
    }
    while (!m[3].calls) event_base_loop(base, EVLOOP_ONCE);
    t_redis_stop(&own, SIGKILL);
    settle_all(m, N);               /* each exactly once */
    unsigned ok = 0, down = 0;
    for (unsigned i = 0; i < N; i++) {
        if (m[i].code == LF_OK) {
            ok++;
            continue;
        }
        assert_int_equal(m[i].code, LF_UNAVAILABLE);
        assert_non_null(strstr(m[i].err, own.sock));
        down++;
    }
    assert_true(ok >= 4 && down > 0);

    /* While it is down: unavailable, once, naming the address. */
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, own.sock));
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g),
                     LF_UNAVAILABLE);

    /* Back on the same socket: the next request goes through. */
    t_redis_start(&own);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_int_equal(g.version, 2);
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g), LF_OK);
    /* Every acknowledged create survived; nothing half-written. */
    for (unsigned i = 0; i < N; i++) {
        char mid[LF_ID_LEN + 1];
        t_id(mid, 100 + i);
        lf_code c = t_get(s, mid, &g);
        if (m[i].code == LF_OK) assert_int_equal(c, LF_OK);
        else assert_true(c == LF_OK || c == LF_NOT_FOUND);  /* unknown outcome */
    }
    long n = t_verify_chain(s, NULL, 0);
    assert_true(n >= 3 + (long)ok);
    for (unsigned i = 0; i < N; i++) t_got_reset(&m[i]);
    lf_store_free(s);
    t_redis_free(&own);
    t_got_reset(&g);
}

/* No reply within timeout_ms: the connection is dropped, the request
 * fails; once the server answers again, so do we. */
static void command_timeout(void **state) {
    struct event_base *base = F(state)->base;
    char url[4300], id[LF_ID_LEN + 1];
    t_got g = {0};

    snprintf(url, sizeof url, "%s?timeout_ms=150", server.url);
    lf_store *s = open_url(url, base);
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    t_redis_ok(&server, "CLIENT PAUSE 1000 ALL");
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "no reply within 150 ms"));
    int64_t deadline = t_mono_ms() + 20000;
    while (t_get(s, id, &g) != LF_OK) {
        assert_int_equal(g.code, LF_UNAVAILABLE);
        assert_true(t_mono_ms() < deadline);
    }
    assert_int_equal(g.version, 1);
    lf_store_free(s);
    t_got_reset(&g);
}

/* Closing the store answers everything still in flight, once. */
static void free_with_requests_in_flight(void **state) {
    fixture *f = F(state);
    t_got m[20];
    char ref[32];
    memset(m, 0, sizeof m);
    for (unsigned i = 0; i < 20; i++) {
        snprintf(ref, sizeof ref, "f%u", i);
        create_async(f->s, i + 1, ref, &m[i]);
    }
    lf_store_free(f->s);
    f->s = NULL;
    for (unsigned i = 0; i < 20; i++) {
        assert_int_equal(m[i].calls, 1);
        assert_int_equal(m[i].code, LF_UNAVAILABLE);
        t_got_reset(&m[i]);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* ... also when a callback is the one closing it. */
typedef struct closer {
    lf_store **s;
    int calls;
    lf_code code;
} closer;

static void close_in_callback(lf_code code, const char *err, const lf_record *rec,
                              const lf_entry *e, void *arg) {
    closer *c = arg;
    (void)err;
    (void)rec;
    (void)e;
    c->calls++;
    c->code = code;
    if (*c->s) {
        lf_store_free(*c->s);
        *c->s = NULL;
    }
}

static void free_from_a_callback(void **state) {
    fixture *f = F(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];
    closer c[10];
    t_id(id, 1);
    assert_int_equal(t_create(f->s, id, "r1", "acme/app", &g), LF_OK);
    for (int i = 0; i < 10; i++) {
        c[i] = (closer){&f->s, 0, LF_OK};
        lf_store_get(f->s, id, close_in_callback, &c[i]);
    }
    t_settle(&c[0].calls);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_null(f->s);
    assert_int_equal(c[0].code, LF_OK);
    for (int i = 0; i < 10; i++) assert_int_equal(c[i].calls, 1);
    for (int i = 1; i < 10; i++) assert_int_equal(c[i].code, LF_UNAVAILABLE);
    t_got_reset(&g);
}

/* ---- two stores, one Redis --------------------------------------------- */

static void another_process_moved_it(void **state) {
    fixture *f = F(state);
    lf_store *other = open_url(server.url, f->base);
    t_got g = {0};
    char id[LF_ID_LEN + 1];
    t_id(id, 1);
    assert_int_equal(t_create(f->s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_find_ref(other, "r1", &g), LF_OK);
    assert_string_equal(g.id, id);
    assert_int_equal(t_transition(other, id, "issue_created", "task_queued", 1, &g),
                     LF_OK);
    /* f->s still holds version 1 from its create: the script says no. */
    assert_int_equal(t_transition(f->s, id, "issue_created", "task_queued", 1, &g),
                     LF_CONFLICT);
    assert_int_equal(t_get(f->s, id, &g), LF_OK);
    assert_string_equal(g.state, "task_queued");
    assert_int_equal(t_transition(f->s, id, "task_queued", "pr_created", 2, &g), LF_OK);
    assert_int_equal(t_verify_chain(other, NULL, 0), 3);
    lf_store_free(other);
    t_got_reset(&g);
}

/* ---- lists -------------------------------------------------------------- */

/* Records sharing one updated_at, pages cutting through the ties: the
 * order (newest first, then id descending) and the pages are exactly
 * memory:'s -- also pages that Redis gathers over several calls of the
 * list script (at most 100 records per call: redis.c's LIST_CALL). */
static void pages_through_ties_like_memory(void **state) {
    lf_store *r = F(state)->s, *m = lf_memory_open();
    lf_store *both[2] = {r, m};
    t_got g = {0};
    char id[LF_ID_LEN + 1], ref[32];
    enum { N = 250 };
    const size_t limits[] = {1, 3, 5, 99, 100, 101, 201, 1000};

    for (unsigned i = 0; i < N; i++) {
        created_buf b;
        lf_entry e;
        t_id(id, (i * 7919u) % 1000u);      /* ids not in creation order */
        snprintf(ref, sizeof ref, "t%u", i);
        build_created(&e, &b, id, ref, i % 3 ? "acme/app" : "acme/other");
        if (i % 4) t_clock_us -= 1000000;   /* groups of one timestamp */
        for (int k = 0; k < 2; k++) assert_int_equal(t_commit(both[k], &e, &g), LF_OK);
    }
    const char *filters[][2] = {{NULL, NULL},
                                {"issue_created", NULL},
                                {NULL, "acme/app"},
                                {"issue_created", "acme/other"}};
    for (size_t fi = 0; fi < 4; fi++) {
        for (size_t li = 0; li < sizeof limits / sizeof *limits; li++) {
            size_t limit = limits[li];
            char *cur[2] = {NULL, NULL};
            size_t seen = 0;
            do {
                t_page p[2] = {{0}};
                for (int k = 0; k < 2; k++)
                    t_list(both[k], filters[fi][0], filters[fi][1], limit, cur[k], &p[k]);
                assert_int_equal(p[0].n, p[1].n);
                for (size_t i = 0; i < p[0].n; i++)
                    assert_string_equal(p[0].ids[i], p[1].ids[i]);
                seen += p[0].n;
                assert_true((p[0].cursor == NULL) == (p[1].cursor == NULL));
                for (int k = 0; k < 2; k++) {
                    free(cur[k]);
                    cur[k] = p[k].cursor ? strdup(p[k].cursor) : NULL;
                    t_page_reset(&p[k]);
                }
            } while (cur[0]);
            assert_true(seen > 0 && seen <= N);
            if (!filters[fi][0] && !filters[fi][1]) assert_int_equal(seen, N);
        }
    }
    t_page p = {0};
    lf_list_query q = {.cursor = "not a cursor"};
    lf_store_list(r, &q, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_INVALID_REQUEST);
    t_page_reset(&p);
    lf_store_free(m);
    t_got_reset(&g);
}

/* The records with timers of their own are scored by the earliest due of
 * them, so the tick's ask (due_by) reads just the due ones, in pages; one
 * an older version scored by its updated_at (put back by hand here) is
 * answered too, never missed, until its next write scores it by its due. */
static void timed_scored_by_due(void **state) {
    lf_store *s = F(state)->s;
    enum { N = 120 };
    t_got g = {0};
    char id[N + 1][LF_ID_LEN + 1], seen[N][LF_ID_LEN + 1], timer[256], arr[300];
    int64_t base = t_clock_us + 1000 * 1000000LL, sec = 1000000;
    for (unsigned i = 1; i <= N; i++) {
        t_id(id[i], i);
        assert_int_equal(t_create(s, id[i], id[i], "acme/app", &g), LF_OK);
        t_timer(base + i * sec, timer, sizeof timer);
        snprintf(arr, sizeof arr, "[%s]", timer);
        assert_int_equal(t_set_timers(s, id[i], 2, arr, &g), LF_OK);
        redisReply *r = t_redis_cmd(&server, "ZSCORE lf:timed %s", id[i]);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal((int64_t)strtod(r->str, NULL), base + i * sec);
        freeReplyObject(r);
    }
    for (int round = 0; round < 4; round++) {
        if (round == 1)             /* as an older version scored it */
            t_redis_ok(&server, "ZADD lf:timed %lld %s",
                       (long long)(t_clock_us - 5 * sec), id[100]);
        if (round == 3) {           /* written again: by its due */
            t_timer(base + 100 * sec, timer, sizeof timer);
            snprintf(arr, sizeof arr, "[%s]", timer);
            assert_int_equal(t_set_timers(s, id[100], 3, arr, &g), LF_OK);
        }
        lf_list_query q = {.timed = true, .due_by = base + 50 * sec, .limit = 7};
        size_t n = t_list_all(s, q, seen, N);
        assert_int_equal(n, round == 1 ? 51 : 50);
        for (unsigned i = 1; i <= 50; i++) {
            bool found = false;
            for (size_t k = 0; k < n; k++) found |= !strcmp(seen[k], id[i]);
            assert_true(found);
        }
        /* the listing that found it scored it by its due, at the version
         * it read: the next does not answer it (run after it, in order) */
        if (round == 2) {
            redisReply *r = t_redis_cmd(&server, "ZSCORE lf:timed %s", id[100]);
            assert_int_equal((int64_t)strtod(r->str, NULL), base + 100 * sec);
            freeReplyObject(r);
        }
    }

    /* The due ones this handle read join its cache (the tick moves them
     * next, reading nothing again); another handle's were not in it. */
    lf_store *other = open_url(server.url, F(state)->base);
    lf_list_query q = {.timed = true, .due_by = base + 50 * sec, .limit = 1000};
    assert_null(lf_redis_cache_get((lf_redis *)other, id[1]));
    assert_int_equal(t_list_all(other, q, seen, N), 50);
    for (unsigned i = 1; i <= 50; i++)
        assert_non_null(lf_redis_cache_get((lf_redis *)other, id[i]));
    assert_null(lf_redis_cache_get((lf_redis *)other, id[51]));
    lf_store_free(other);

    /* Earliest first (a page of the timers' listing, which stops on the
     * order): on a store an older version began (no "timed" in P indexed,
     * which a store begun now has from its first entry) the first such ask
     * scores all of P timed by due and marks it so, so the one an older
     * version scored by its updated_at -- before the start, +30 s --
     * comes at its due; pages of 7, each once, in order. One an older
     * process scores below its due after that is scored by it when met,
     * and met again there. */
    redisReply *had = t_redis_cmd(&server, "SISMEMBER lf:indexed timed");
    assert_int_equal(had->integer, 1);
    freeReplyObject(had);
    t_redis_ok(&server, "SREM lf:indexed timed");
    t_redis_ok(&server, "ZADD lf:timed %lld %s", (long long)(t_clock_us - 5 * sec), id[100]);
    other = open_url(server.url, F(state)->base);
    q = (lf_list_query){.timed = true, .due_by = base + 200 * sec, .limit = 7,
                        .oldest_first = true, .due_after = base + 30 * sec};
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            t_redis_ok(&server, "ZADD lf:timed %lld %s", (long long)(base + 35 * sec), id[100]);
        assert_int_equal(t_list_all(other, q, seen, N), N - 29);
        for (unsigned i = 30; i <= N; i++) assert_string_equal(seen[i - 30], id[i]);
        redisReply *r = t_redis_cmd(&server, "ZSCORE lf:timed %s", id[100]);
        assert_int_equal((int64_t)strtod(r->str, NULL), base + 100 * sec);
        freeReplyObject(r);
        r = t_redis_cmd(&server, "SISMEMBER lf:indexed timed");
        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
    }
    lf_store_free(other);
    t_got_reset(&g);
}

/* ---- the entered indexes (timers) ------------------------------------- */

/* Every page of an entered_by list of task_queued: ids into seen (each
 * once), returns how many. */
static size_t list_entered(lf_store *s, int64_t by, size_t limit, char (*seen)[LF_ID_LEN + 1],
                           size_t cap) {
    lf_list_query q = {.state = "task_queued", .entered_by = by, .limit = limit};
    return t_list_all(s, q, seen, cap);
}

/* When a record entered its state, as the entered index scores it, or -1. */
static int64_t entered_score(const char *state, const char *id) {
    redisReply *r = t_redis_cmd(&server, "ZSCORE lf:ent:%s %s", state, id);
    int64_t v = r->type == REDIS_REPLY_STRING ? (int64_t)strtod(r->str, NULL) : -1;
    freeReplyObject(r);
    return v;
}

/* Records written before the commit script kept entered indexes (taken
 * out of it here by hand) are found by the first ask -- a pass over the
 * whole state, in pages -- which fills the index; from then on an ask
 * reads just the records that entered by then, paged through the index
 * by when they entered. Every commit keeps it: a move out and a delete
 * take a record out, a move in scores it when it came. */
static void entered_index_filled_then_read(void **state) {
    lf_store *s = F(state)->s;
    enum { N = 250 };
    t_got g = {0};
    char id[N][LF_ID_LEN + 1], seen[N][LF_ID_LEN + 1];
    int64_t at[N];
    t_queued(s, N, id, at);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(entered_score("task_queued", id[i]), at[i]);
        assert_int_equal(entered_score("issue_created", id[i]), -1);
    }
    /* As a store an older version began: "old" records not indexed, and
     * no P indexed (a store begun now has "ent" there from its first
     * entry). */
    for (unsigned i = 0; i < N; i += 2)
        t_redis_ok(&server, "ZREM lf:ent:task_queued %s", id[i]);
    t_redis_ok(&server, "DEL lf:indexed");
    /* The first ask lists the whole state (all N, though only 11 are
     * due by at[10]), fills the index and says so in P indexed. */
    assert_int_equal(list_entered(s, at[10], 100, seen, N), N);
    redisReply *r = t_redis_cmd(&server, "ZCARD lf:ent:task_queued");
    assert_int_equal(r->integer, N);
    freeReplyObject(r);
    r = t_redis_cmd(&server, "SMEMBERS lf:indexed");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "ent:task_queued");
    freeReplyObject(r);
    for (unsigned i = 0; i < N; i++) assert_int_equal(entered_score("task_queued", id[i]), at[i]);
    /* Another process reads the index from its first ask. */
    lf_store *reader = open_url(server.url, F(state)->base);
    assert_int_equal(list_entered(reader, at[10], 100, seen, N), 11);
    lf_store_free(reader);
    /* Then exactly those due, in pages of any size. */
    const size_t limits[] = {1, 7, 100, 1000};
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
        assert_int_equal(list_entered(s, at[10], limits[l], seen, N), 11);
        for (unsigned i = 0; i <= 10; i++) {
            bool found = false;
            for (size_t k = 0; k < 11; k++) found |= !strcmp(seen[k], id[i]);
            assert_true(found);
        }
    }
    assert_int_equal(list_entered(s, at[N - 1], 100, seen, N), N);
    assert_int_equal(list_entered(s, at[0] - 1, 100, seen, N), 0);
    /* Moves and deletes keep it. */
    assert_int_equal(t_transition(s, id[0], "task_queued", "pr_created", 2, &g), LF_OK);
    assert_int_equal(entered_score("task_queued", id[0]), -1);
    assert_int_equal(entered_score("pr_created", id[0]), t_clock_us);
    assert_int_equal(t_delete(s, id[1], "task_queued", 2, &g), LF_OK);
    assert_int_equal(entered_score("task_queued", id[1]), -1);
    assert_int_equal(t_transition(s, id[0], "pr_created", "task_queued", 3, &g), LF_OK);
    assert_int_equal(entered_score("pr_created", id[0]), -1);
    assert_int_equal(entered_score("task_queued", id[0]), t_clock_us);
    assert_int_equal(list_entered(s, at[10], 100, seen, N), 9);    /* 2..10 */
    /* A record an older writer deleted behind the index's back: that
     * list fails, naming it, and takes it out; the next does not. */
    t_redis_ok(&server, "ZADD lf:ent:task_queued %lld loop-00000000deadbeef",
               (long long)at[5]);
    t_page p = {0};
    lf_list_query q = {.state = "task_queued", .entered_by = at[10], .limit = 100};
    lf_store_list(s, &q, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_UNAVAILABLE);
    assert_non_null(strstr(p.err, "loop-00000000deadbeef"));
    t_page_reset(&p);
    assert_int_equal(list_entered(s, at[10], 100, seen, N), 9);
    assert_int_equal(entered_score("task_queued", "loop-00000000deadbeef"), -1);
    /* A closed record has no timer to be due: its commit takes it out
     * (here one that stays in its state, as the store allows). */
    lf_entry e;
    char changes[64];
    t_entry(&e, LF_ENTRY_TRANSITION, id[3], 3, "task_queued", "task_queued", "test.closed");
    snprintf(changes, sizeof changes, "{\"closed_at\":\"%s\"}", e.timestamp);
    e.changes = changes;
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(entered_score("task_queued", id[3]), -1);
    assert_int_equal(list_entered(s, at[10], 100, seen, N), 8);
    /* Another process, once P indexed no longer says so, fills it once
     * too (leaving the closed one out), then reads it. */
    t_redis_ok(&server, "DEL lf:indexed");
    lf_store *other = open_url(server.url, F(state)->base);
    assert_int_equal(list_entered(other, at[10], 100, seen, N), N - 1);
    assert_int_equal(entered_score("task_queued", id[3]), -1);
    /* Of what that pass read, the records that entered by then join its
     * cache (the tick fires them next: one script call each, not two),
     * the others do not. */
    for (unsigned i = 2; i <= 10; i++)
        if (i != 3) assert_non_null(lf_redis_cache_get((lf_redis *)other, id[i]));
    assert_null(lf_redis_cache_get((lf_redis *)other, id[0]));      /* re-entered */
    assert_null(lf_redis_cache_get((lf_redis *)other, id[11]));
    assert_int_equal(list_entered(other, at[10], 100, seen, N), 8);
    lf_store_free(other);
    t_got_reset(&g);
}

/* ---- corruption and tampering ---------------------------------------- */

/* How many times Redis ran cmd since the last CONFIG RESETSTAT. */
static long long calls_of(const char *cmd) {
    redisReply *r = t_redis_cmd(&server, "INFO commandstats");
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *at = r->type == REDIS_REPLY_STRING ? strstr(r->str, key) : NULL;
    long long n = at ? atoll(at + strlen(key)) : 0;
    freeReplyObject(r);
    return n;
}

/* The log is lists of LF_REDIS_LOG_LIST values (redis_lua.c): seq's, as
 * it is stored. */
static redisReply *log_value(uint64_t seq) {
    return t_redis_cmd(&server, "LINDEX lf:log:%llu %llu",
                       (unsigned long long)((seq - 1) / LF_REDIS_LOG_LIST),
                       (unsigned long long)((seq - 1) % LF_REDIS_LOG_LIST));
}

/* The log's values are packed lines (redis_pack.c): these read and write
 * the lines themselves, as the store does (a value that refers to its
 * policy set gets it from lf:log:psets in front, as the scripts do). */
static char *hget_line(uint64_t seq) {
    redisReply *r = log_value(seq);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    lf_redis_pack *pk = lf_redis_pack_new();
    lf_buf line = LF_BUF_INIT, v = LF_BUF_INIT;
    char why[128];
    if (r->len > 5 && r->str[0] == '\x02') {
        const unsigned char *id = (const unsigned char *)r->str + 1;
        redisReply *d = t_redis_cmd(&server, "HGET lf:log:psets %02x%02x%02x%02x", id[0], id[1],
                                    id[2], id[3]);
        assert_int_equal(d->type, REDIS_REPLY_STRING);
        lf_buf_putc(&v, '\x03');
        lf_buf_add(&v, d->str, d->len);
        freeReplyObject(d);
    }
    lf_buf_add(&v, r->str + (v.len ? 5 : 0), r->len - (v.len ? 5 : 0));
    assert_int_equal(lf_redis_unpack_line(pk, v.p, v.len, &line, why, sizeof why), 0);
    lf_buf_free(&v);
    lf_redis_pack_free(pk);
    freeReplyObject(r);
    return lf_buf_steal(&line);
}

/* Stores value (n bytes) as seq's, as it is ("": the line is lost). */
static void hset_value(uint64_t seq, const char *value, size_t n) {
    char k[48], i[24];
    snprintf(k, sizeof k, "lf:log:%llu", (unsigned long long)((seq - 1) / LF_REDIS_LOG_LIST));
    snprintf(i, sizeof i, "%llu", (unsigned long long)((seq - 1) % LF_REDIS_LOG_LIST));
    const char *argv[] = {"LSET", k, i, value};
    size_t lens[] = {4, strlen(k), strlen(i), n};
    redisReply *r = t_redis_cmdv(&server, 4, argv, lens);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

static void del_line(uint64_t seq) { hset_value(seq, "", 0); }

/* An answer as a number (an integer, or a string of one); frees it. */
static long long reply_int(redisReply *r) {
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static void hset_line(uint64_t seq, const char *line) {
    lf_redis_pack *pk = lf_redis_pack_new();
    lf_buf v = LF_BUF_INIT;
    lf_redis_pack_line(pk, line, strlen(line), false, &v);
    hset_value(seq, v.p, v.len);
    lf_buf_free(&v);
    lf_redis_pack_free(pk);
}

static void corrupted_record_value(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_page p = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1], key[64];

    t_id(id, 1);
    snprintf(key, sizeof key, "lf:rec:{%s}", id);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);

    /* The record's hash keeps its version, the hash of the entry that
     * last changed it (h) and its entries' seqs (one run: c 1, l1 "1"),
     * and no copy of the record: it is its entries. */
    redisReply *j = t_redis_cmd(&server, "HGETALL %s", key);
    assert_int_equal(j->elements, 8);
    assert_string_equal(j->element[0]->str, "v");
    assert_string_equal(j->element[2]->str, "h");     /* its first digits */
    assert_int_equal(j->element[3]->len, LF_REDIS_H_LEN);
    assert_memory_equal(j->element[3]->str, g.hash, LF_REDIS_H_LEN);
    assert_string_equal(j->element[4]->str, "c");
    assert_string_equal(j->element[5]->str, "1");
    assert_string_equal(j->element[6]->str, "l1");
    assert_string_equal(j->element[7]->str, "1");
    freeReplyObject(j);
    char *line = hget_line(1), *at = strstr(line, "\"timestamp\":\"");
    assert_non_null(at);
    /* A list serves a record from the store's cache only while Redis
     * holds the record that entry made: its entries rewritten behind our
     * back (and its h), the list folds what is there now. */
    memcpy(at + strlen("\"timestamp\":\""), "2001", 4);
    hset_line(1, line);
    t_redis_ok(&server, "HSET %s h %s", key, LF_GENESIS);
    lf_list_query q = {0};
    lf_store_list(s, &q, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_OK);
    assert_int_equal(p.n, 1);
    assert_memory_equal(p.updated[0], "2001-", 5);
    t_page_reset(&p);

    hset_line(1, "{not json");
    t_redis_ok(&server, "HSET %s h %s", key,
               "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, key));
    assert_int_equal(t_find_ref(s, "r1", &g), LF_UNAVAILABLE);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g),
                     LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, key));
    lf_store_list(s, &q, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_UNAVAILABLE);
    assert_non_null(strstr(p.err, key));
    t_page_reset(&p);
    /* An entry the record's list names but the log lost. */
    del_line(1);
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "lf:log"));
    /* Put back, it reads again. */
    hset_line(1, line);
    free(line);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_memory_equal(strstr(g.json, "\"created_at\":\"") + 14, "2001-", 5);
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 1);
    t_audit_reset(&a);
    /* A score no int64 holds (an index written by something else): the
     * record is listed, its cursor's time 0 -- nothing converted. */
    t_redis_ok(&server, "ZADD lf:state:issue_created 1e300 %s", id);
    lf_list_query qs = {.state = "issue_created"};
    lf_store_list(s, &qs, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_OK);
    assert_int_equal(p.n, 1);
    t_page_reset(&p);

    /* A value of the wrong type altogether. */
    t_redis_ok(&server, "DEL %s", key);
    t_redis_ok(&server, "SET %s garbage", key);
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, key));
    assert_non_null(strstr(g.err, "WRONGTYPE"));

    /* The log's head overwritten: commits fail cleanly, nothing written. */
    t_redis_ok(&server, "SET lf:head garbage");
    t_id(id, 2);
    assert_int_equal(t_create(s, id, "r2", "acme/app", &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "redis"));
    redisReply *r = t_redis_cmd(&server, "EXISTS lf:rec:{%s}", id);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    t_got_reset(&g);
}

static void expect_broken(lf_store *s, const char *needle) {
    char why[256] = "";
    assert_int_equal(t_verify_chain(s, why, sizeof why), -1);
    if (!strstr(why, needle)) fail_msg("chain error '%s' lacks '%s'", why, needle);
}

/* `audit --verify` on Redis: modified, deleted and reordered entries are
 * caught at their seq; a deleted tail, which leaves no gap, is reported
 * against the head. Each tampering is undone before the next. */
static void tampering_is_detected(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (unsigned v = 1; v <= 6; v++)
        assert_int_equal(t_transition(s, id, v % 2 ? "issue_created" : "task_queued",
                                      v % 2 ? "task_queued" : "issue_created", v, &g),
                         LF_OK);
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);
    char *l2 = hget_line(2), *l3 = hget_line(3), *l4 = hget_line(4), *l7 = hget_line(7);

    /* Modified: one byte of seq 3. */
    char *bad = strdup(l3), *p = strstr(bad, "tester");
    assert_non_null(p);
    p[0] = 'T';
    hset_line(3, bad);
    expect_broken(s, "seq 3: hash mismatch");
    hset_line(3, l3);
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);

    /* Modified with its hash made again (what a changed frame gives: the
     * store keeps no hash of a line, redis_pack.c): the next line's prev
     * does not name it; the last line's, the head does not. */
    for (int last = 0; last < 2; last++) {
        lf_buf re = LF_BUF_INIT;
        char h[LF_HASH_LEN + 1];
        lf_buf_puts(&re, last ? l7 : l3);
        re.len -= LF_HASH_SUFFIX_LEN;
        lf_buf_putc(&re, '}');
        p = strstr(re.p, "tester");
        assert_non_null(p);
        p[0] = 'T';
        lf_entry_close_hash(&re, 0, h);
        hset_line(last ? 7 : 3, re.p);
        if (!last) {
            expect_broken(s, "seq 4: prev does not match the hash of seq 3");
        } else {
            lf_store_audit(s, NULL, 5, 0, t_audit_cb, &a);
            t_settle(&a.calls);
            assert_int_equal(a.code, LF_UNAVAILABLE);
            if (!strstr(a.err, "seq 7: hash ") || !strstr(a.err, "last entry was changed"))
                fail_msg("last line's error: %s", a.err);
            t_audit_reset(&a);
        }
        hset_line(last ? 7 : 3, last ? l7 : l3);
        lf_buf_free(&re);
    }
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);

    /* Deleted from the middle: the gap shows at the next entry. */
    del_line(4);
    expect_broken(s, "seq 5: expected seq 4");
    hset_line(4, l4);

    /* Reordered: seq 2 and seq 3 swapped. */
    hset_line(2, l3);
    hset_line(3, l2);
    expect_broken(s, "seq 3: expected seq 2");
    hset_line(2, l2);
    hset_line(3, l3);

    /* Replaced by a well-formed entry chained elsewhere. */
    hset_line(4, l2);
    expect_broken(s, "seq 2: expected seq 4");
    hset_line(4, l4);
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);

    /* The tail deleted: no later entry shows a gap, the head does. */
    del_line(7);
    lf_store_audit(s, NULL, 3, 0, t_audit_cb, &a);
    t_settle(&a.calls);
    assert_int_equal(a.code, LF_UNAVAILABLE);
    if (!strstr(a.err, "no entries 7..7")) fail_msg("tail error: %s", a.err);
    t_audit_reset(&a);
    hset_line(7, l7);
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);
    free(l2);
    free(l3);
    free(l4);
    free(l7);
    free(bad);
    t_got_reset(&g);
}

/* A line names the policy set that judged it (64 hex digits, the same in
 * every line that set judged): Redis keeps it once, in lf:log:psets under
 * its first 4 bytes, and each value refers to it (\2 and those bytes):
 * 27 bytes a line. Reads get the line back exactly; a value read without
 * its policy set is not passed off as a line; a policy set whose first
 * bytes another one has is stored whole; and a digest changed in
 * lf:log:psets changes the lines that refer to it, which the chain
 * catches. */
static void lines_refer_to_their_policy_set(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1], why[128];
    static const char P[] = "7d2f0a9c4b6e8d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f";
    static const char Q[] = "7d2f0a9c00000000000000000000000000000000000000000000000000000000";
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (unsigned v = 1; v <= 4; v++) {
        lf_entry e;
        t_flip(&e, id, v);
        e.policy_set = v < 4 ? P : Q;   /* seqs 2-4 by P, 5 by Q */
        assert_int_equal(t_commit(s, &e, &g), LF_OK);
    }
    redisReply *r = log_value(3), *d = t_redis_cmd(&server, "HGET lf:log:psets 7d2f0a9c");
    assert_int_equal(r->str[0], '\x02');
    assert_memory_equal(r->str + 1, "\x7d\x2f\x0a\x9c", 4);
    assert_string_equal(d->str, P);
    freeReplyObject(d);
    /* 27 bytes fewer than the same line holding its policy set */
    char *l3 = hget_line(3);
    lf_redis_pack *pk = lf_redis_pack_new();
    lf_buf whole = LF_BUF_INIT, back = LF_BUF_INIT;
    lf_redis_pack_unref(pk, P);
    assert_null(lf_redis_pack_line(pk, l3, strlen(l3), false, &whole));
    if (r->len + 25 > whole.len) fail_msg("refers: %zu bytes, whole: %zu", r->len, whole.len);
    /* read without its policy set: refused, not a line */
    assert_int_equal(lf_redis_unpack_line(pk, r->str, r->len, &back, why, sizeof why), -1);
    if (!strstr(why, "policy set")) fail_msg("why: %s", why);
    assert_int_equal(back.len, 0);
    freeReplyObject(r);
    /* Q has P's first bytes: seq 5 holds it whole */
    r = log_value(5);
    assert_true(lf_redis_packed(r->str, r->len) && r->str[0] == '\x28');
    freeReplyObject(r);
    char *l5 = hget_line(5);
    assert_non_null(strstr(l5, Q));
    /* a fresh handle reads the record and its lines exactly */
    lf_store *b = open_url(server.url, F(state)->base);
    assert_int_equal(t_get(b, id, &g), LF_OK);
    assert_int_equal(g.nhist, 5);
    t_audit_page(b, id, 0, 0, &a);
    assert_int_equal(a.n, 5);
    assert_string_equal(a.lines[2], l3);
    assert_string_equal(a.lines[4], l5);
    t_audit_reset(&a);
    assert_int_equal(t_verify_chain(b, NULL, 0), 5);
    /* another digest under P's bytes: the lines that refer to it change */
    t_redis_ok(&server, "HSET lf:log:psets 7d2f0a9c %s", Q);
    expect_broken(b, "seq 3: prev does not match the hash of seq 2");
    t_redis_ok(&server, "HSET lf:log:psets 7d2f0a9c %s", P);
    assert_int_equal(t_verify_chain(b, NULL, 0), 5);
    lf_store_free(b);
    lf_redis_pack_free(pk);
    lf_buf_free(&whole);
    free(l3);
    free(l5);
    t_got_reset(&g);
}

/* An integer reply (HEXISTS, SISMEMBER). */
static long long redis_int(const char *cmd) {
    redisReply *r = t_redis_cmd(&server, cmd);
    if (r->type != REDIS_REPLY_INTEGER) fail_msg("%s: not an integer reply", cmd);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* A handle whose commits registered a policy set puts it back in the
 * lines that refer to it itself: the scripts that read lines leave them
 * as they are stored (no HGET of lf:log:psets, no copy), and it reads
 * them exactly as a handle that knows no set, which gets them resolved.
 * A handle that wrote nothing reads lf:log:psets as it is: changed by
 * hand, the chain it reads breaks. */
static void readers_put_back_their_own_sets(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0}, b = {0};
    char id[LF_ID_LEN + 1];
    static const char P[] = "3c9e0a1b4b6e8d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f";
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (unsigned v = 1; v <= 3; v++) {
        lf_entry e;
        t_flip(&e, id, v);
        e.policy_set = P;
        assert_int_equal(t_commit(s, &e, &g), LF_OK);
    }
    redisReply *r = log_value(3);
    assert_int_equal(r->str[0], '\x02');          /* it refers to P */
    /* the pack alone: a value that refers to a known set unpacks; once
     * another set took its bytes (unref), it is known no more */
    lf_redis_pack *pk = lf_redis_pack_new();
    lf_buf line = LF_BUF_INIT;
    char why[128];
    assert_string_equal(lf_redis_pack_known(pk), "");
    assert_int_equal(lf_redis_unpack_line(pk, r->str, r->len, &line, why, sizeof why), -1);
    lf_redis_pack_learn(pk, P);
    lf_redis_pack_learn(pk, P);
    assert_string_equal(lf_redis_pack_known(pk), P);
    assert_int_equal(lf_redis_unpack_line(pk, r->str, r->len, &line, why, sizeof why), 0);
    assert_non_null(strstr(line.p, P));
    lf_redis_pack_unref(pk, P);
    assert_string_equal(lf_redis_pack_known(pk), "");
    lf_buf_reset(&line);
    assert_int_equal(lf_redis_unpack_line(pk, r->str, r->len, &line, why, sizeof why), -1);
    lf_buf_free(&line);
    lf_redis_pack_free(pk);
    freeReplyObject(r);
    long long hgets = calls_of("hget");
    t_audit_page(s, id, 0, 0, &a);                  /* its own set: no HGET */
    assert_int_equal(a.n, 4);
    assert_int_equal(calls_of("hget"), hgets);
    lf_store *fresh = open_url(server.url, F(state)->base);
    t_audit_page(fresh, id, 0, 0, &b);              /* resolved by the script */
    assert_int_equal(calls_of("hget"), hgets + 1);
    assert_int_equal(b.n, a.n);
    for (size_t i = 0; i < a.n; i++) assert_string_equal(a.lines[i], b.lines[i]);
    assert_non_null(strstr(a.lines[2], P));
    assert_int_equal(t_verify_chain(s, NULL, 0), 4);
    /* the get that folds them, on a handle that caches nothing of it */
    assert_int_equal(t_get(fresh, id, &g), LF_OK);
    assert_int_equal(g.nhist, 4);
    t_redis_ok(&server, "HSET lf:log:psets 3c9e0a1b %s",
               "3c9e0a1b00000000000000000000000000000000000000000000000000000000");
    lf_store *reader = open_url(server.url, F(state)->base);
    expect_broken(reader, "seq 3: prev does not match the hash of seq 2");
    lf_store_free(reader);
    lf_store_free(fresh);
    t_audit_reset(&a);
    t_audit_reset(&b);
    t_got_reset(&g);
}

/* What a handle's own answered commits wrote -- its policy set in P
 * log:psets, a state in P states -- it does not write again while its
 * pipeline is unbroken; anything that undid them (a flush) refuses its
 * next commit's head, and the commit after that writes them again. */
static void commits_skip_what_they_wrote(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    char id[LF_ID_LEN + 1], id2[LF_ID_LEN + 1];
    static const char P[] = "5b1e0c7a4b6e8d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f";
    t_id(id, 1);
    t_id(id2, 2);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (unsigned v = 1; v <= 2; v++) {     /* into task_queued, back */
        lf_entry e;
        t_flip(&e, id, v);
        e.policy_set = P;
        assert_int_equal(t_commit(s, &e, &g), LF_OK);
    }
    assert_int_equal(redis_int("HEXISTS lf:log:psets 5b1e0c7a"), 1);
    assert_int_equal(redis_int("SISMEMBER lf:states task_queued"), 1);
    /* taken away behind the handle's back: not written again */
    t_redis_ok(&server, "HDEL lf:log:psets 5b1e0c7a");
    t_redis_ok(&server, "SREM lf:states task_queued");
    lf_entry e;
    t_flip(&e, id, 3);
    e.policy_set = P;
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(redis_int("HEXISTS lf:log:psets 5b1e0c7a"), 0);
    assert_int_equal(redis_int("SISMEMBER lf:states task_queued"), 0);
    /* a flush: the next commit is refused its head, re-sealed on the
     * empty log, and writes both again */
    t_redis_ok(&server, "FLUSHALL");
    assert_int_equal(t_create(s, id2, "r2", "acme/app", &g), LF_OK);
    t_flip(&e, id2, 1);
    e.policy_set = P;
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(redis_int("HEXISTS lf:log:psets 5b1e0c7a"), 1);
    assert_int_equal(redis_int("SISMEMBER lf:states task_queued"), 1);
    assert_int_equal(t_verify_chain(s, NULL, 0), 2);
    t_got_reset(&g);
}

/* A repo's records are its index in each state, and every record the
 * index of its state, merged (there is no index of a repo alone, or of
 * all): newest first, ties by id descending across the states, page by
 * page. The set of states is kept by the commits, whole from a store's
 * first entry; a store an older version began has none, and the first
 * such list fills it by SCAN, once. */
static void lists_merge_the_states(void **state) {
    lf_store *s = F(state)->s;
    static const char *const to[] = {"task_queued", "issue_created", "pr_created"};
    enum { N = 9 };
    t_got g = {0};
    t_page p = {0};
    char id[N][LF_ID_LEN + 1], ref[16];
    int64_t at = t_clock_us + 1000000000;
    for (unsigned i = 0; i < N; i++) {
        t_id(id[i], i + 1);
        snprintf(ref, sizeof ref, "m%u", i);
        assert_int_equal(t_create(s, id[i], ref, i % 4 == 3 ? "acme/other" : "acme/app", &g),
                         LF_OK);
        if (i % 3 != 1) {
            t_clock_us = at - 1000000 + (i < 6 ? 0 : (int64_t)i);   /* six at one time */
            assert_int_equal(t_transition(s, id[i], "issue_created", to[i % 3], 1, &g),
                             LF_OK);
        }
    }
    redisReply *r = t_redis_cmd(&server, "EXISTS lf:repo:acme/app lf:all");
    assert_int_equal(r->integer, 0);    /* no index of a repo, or of all */
    freeReplyObject(r);
    r = t_redis_cmd(&server, "SMEMBERS lf:states");
    assert_int_equal(r->elements, 4);   /* '', and the three states */
    freeReplyObject(r);
    /* a repo's records (all but 3 and 7: acme/other), then every record */
    for (int pass = 0; pass < 4; pass++) {
        const char *repo = pass % 2 ? NULL : "acme/app";
        if (pass >= 2) {
            /* as a store an older version began: no set of states */
            t_redis_ok(&server, "DEL lf:states");
            t_redis_ok(&server, "CONFIG RESETSTAT");
        }
        char seen[N][LF_ID_LEN + 1], last[LF_TS_LEN + 1] = "";
        size_t n = 0, ties = 0;
        char *cur = NULL;
        do {
            t_list(s, NULL, repo, 2, cur, &p);
            for (size_t i = 0; i < p.n; i++) {
                /* newest first, ties by id descending */
                int c = n ? strcmp(p.updated[i], last) : -1;
                assert_true(c < 0 || (c == 0 && strcmp(p.ids[i], seen[n - 1]) < 0));
                ties += c == 0;
                snprintf(last, sizeof last, "%s", p.updated[i]);
                assert_true(n < N);
                memcpy(seen[n++], p.ids[i], LF_ID_LEN + 1);
            }
            free(cur);
            cur = p.cursor ? strdup(p.cursor) : NULL;
        } while (cur);
        assert_int_equal(n, repo ? 7 : N);
        assert_true(ties >= 2);     /* 0, 2 and 5: one time, two states */
        for (size_t i = 0; i < n; i++)
            for (size_t k = i + 1; k < n; k++) assert_string_not_equal(seen[i], seen[k]);
        if (pass >= 2) {
            assert_true(calls_of("evalsha") > 3);   /* the fill ran */
            const char *whole[] = {"SISMEMBER", "lf:states", ""};
            r = t_redis_cmdv(&server, 3, whole, NULL);
            assert_int_equal(r->integer, 1);
            freeReplyObject(r);
        }
    }
    /* A prefix that would be a glob fills its set from its own keys only. */
    char u1[4300], u2[4300];
    snprintf(u1, sizeof u1, "%s?prefix=g*:", server.url);
    snprintf(u2, sizeof u2, "%s?prefix=gx:", server.url);
    lf_store *a = open_url(u1, F(state)->base), *b = open_url(u2, F(state)->base);
    assert_int_equal(t_create(a, id[0], "a0", "acme/app", &g), LF_OK);
    assert_int_equal(t_create(b, id[0], "b0", "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(b, id[0], "issue_created", "pr_created", 1, &g), LF_OK);
    t_redis_ok(&server, "DEL g*:states");
    t_list(a, NULL, "acme/app", 10, NULL, &p);
    assert_int_equal(p.n, 1);
    r = t_redis_cmd(&server, "SCARD g*:states");
    assert_int_equal(r->integer, 2);    /* '' and issue_created: not gx:'s pr_created */
    freeReplyObject(r);
    lf_store_free(a);
    lf_store_free(b);
    t_page_reset(&p);
    t_got_reset(&g);
}

/* A record with three entries (seqs 1-3), at issue_created. */
static void three_entries(lf_store *s, char id[LF_ID_LEN + 1], t_got *g) {
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", g), LF_OK);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, g), LF_OK);
    assert_int_equal(t_transition(s, id, "task_queued", "issue_created", 2, g), LF_OK);
}

/* The log is lists of LF_REDIS_LOG_LIST lines. A store an older version
 * wrote keeps its lines in the hash P log: they read and verify as they
 * are, and the first commit after them pads its list up to its place.
 * Pages cross lists; a list that holds more than its head says (written
 * by something else) refuses the commit, which writes nothing. */
static void log_lists(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1];

    three_entries(s, id, &g);
    /* As an older version laid them out. */
    for (uint64_t q = 1; q <= 3; q++) {
        redisReply *v = log_value(q);
        assert_int_equal(v->type, REDIS_REPLY_STRING);
        char f[24];
        snprintf(f, sizeof f, "%llu", (unsigned long long)q);
        const char *argv[] = {"HSET", "lf:log", f, v->str};
        size_t lens[] = {4, 6, strlen(f), v->len};
        freeReplyObject(t_redis_cmdv(&server, 4, argv, lens));
        freeReplyObject(v);
    }
    t_redis_ok(&server, "DEL lf:log:0");
    t_redis_ok(&server, "HDEL lf:rec:{%s} h", id);   /* read it from the lines */
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_non_null(strstr(g.json, "\"version\":3"));
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 3, &g), LF_OK);
    assert_int_equal(reply_int(t_redis_cmd(&server, "LLEN lf:log:0")), 4);
    redisReply *r = t_redis_cmd(&server, "LINDEX lf:log:0 2");
    assert_int_equal(r->len, 0);   /* padding: seq 3 is in the hash */
    freeReplyObject(r);
    assert_int_equal(t_verify_chain(s, NULL, 0), 4);
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 4);
    t_audit_reset(&a);

    /* Across lists. */
    uint64_t v = 4;
    const char *at = "task_queued";
    while (v < LF_REDIS_LOG_LIST + 6) {
        const char *to = strcmp(at, "task_queued") == 0 ? "issue_created" : "task_queued";
        assert_int_equal(t_transition(s, id, at, to, v, &g), LF_OK);
        at = to;
        v++;
    }
    assert_int_equal(reply_int(t_redis_cmd(&server, "LLEN lf:log:0")), LF_REDIS_LOG_LIST);
    assert_int_equal(reply_int(t_redis_cmd(&server, "LLEN lf:log:1")), 6);
    assert_int_equal(t_verify_chain(s, NULL, 0), LF_REDIS_LOG_LIST + 6);
    t_audit_page(s, NULL, LF_REDIS_LOG_LIST - 3, 5, &a);
    assert_int_equal(a.n, 5);
    for (size_t i = 0; i < a.n; i++) {
        char *l = hget_line(LF_REDIS_LOG_LIST - 2 + i);
        assert_string_equal(a.lines[i], l);
        free(l);
    }
    t_audit_reset(&a);

    /* A list longer than its head says. */
    t_redis_ok(&server, "RPUSH lf:log:1 intruder");
    assert_int_equal(t_transition(s, id, at, "issue_created", v, &g), LF_UNAVAILABLE);
    if (!strstr(g.err, "lf:log:1 holds 7 lines")) fail_msg("error: %s", g.err);
    assert_int_equal(reply_int(t_redis_cmd(&server, "HGET lf:head seq")), LF_REDIS_LOG_LIST + 6);
    t_redis_ok(&server, "RPOP lf:log:1");
    assert_int_equal(t_transition(s, id, at, "issue_created", v, &g), LF_OK);
    assert_int_equal(t_verify_chain(s, NULL, 0), LF_REDIS_LOG_LIST + 7);
    t_got_reset(&g);
}

/* Packing gives back every line byte for byte, whatever hex it holds:
 * runs of every length about the thresholds, at either end, in upper
 * case; a line that holds the mark byte itself is kept whole. */
static void pack_round_trips(void **state) {
    (void)state;
    static const size_t runs[] = {0, 15, 16, 17, 31, 32, 63, 64, 65, 253, 254, 255, 256, 600};
    lf_redis_pack *pk = lf_redis_pack_new();
    lf_buf line = LF_BUF_INIT, v = LF_BUF_INIT, back = LF_BUF_INIT;
    char why[128];
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        for (int shape = 0; shape < 4; shape++) {
            lf_buf_reset(&line);
            if (shape != 1) lf_buf_puts(&line, "{\"prev\":\"");
            for (size_t k = 0; k < runs[i]; k++) /* shape 3: one upper-case digit */
                lf_buf_putc(&line, shape == 3 && k == runs[i] / 2
                                       ? 'E'
                                       : "0123456789abcdef"[(k * 7 + i) % 16]);
            if (shape != 2) lf_buf_puts(&line, "\",\"to_state\":\"merged\",\"x\":\"0a1b\"}");
            lf_redis_pack_line(pk, line.p, line.len, false, &v);
            lf_buf_reset(&back);
            assert_int_equal(lf_redis_unpack_line(pk, v.p, v.len, &back, why, sizeof why), 0);
            assert_int_equal(back.len, line.len);
            assert_memory_equal(back.p, line.p, line.len);
        }
    }
    /* A sealed line's own hash is left out and computed again: its frame
     * is ~34 bytes smaller than the same line's with a hash key that is
     * not its own, which is kept as it is (and verification catches). */
    lf_entry e;
    t_entry(&e, LF_ENTRY_TRANSITION, "loop-0123456789abcdef", 2, "ci_passed", "merged",
            "pr.merged");
    lf_entry_seal(&e, 7, "5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e5a1e",
                  &line);
    lf_buf wrong = LF_BUF_INIT;
    lf_buf_add(&wrong, line.p, line.len);
    wrong.p[wrong.len - 3] = wrong.p[wrong.len - 3] == '0' ? '1' : '0';
    size_t own_len = 0;
    for (int k = 0; k < 2; k++) {
        const lf_buf *l = k ? &wrong : &line;
        lf_redis_pack_line(pk, l->p, l->len, false, &v);
        assert_true(lf_redis_packed(v.p, v.len));
        if (k == 0) own_len = v.len;
        else if (v.len < own_len + 30) fail_msg("own %zu, other %zu bytes", own_len, v.len);
        lf_buf_reset(&back);
        assert_int_equal(lf_redis_unpack_line(pk, v.p, v.len, &back, why, sizeof why), 0);
        assert_int_equal(back.len, l->len);
        assert_memory_equal(back.p, l->p, l->len);
    }
    /* told it was just sealed, the packer packs it the same, unchecked:
     * so a line told so whose hash is not its own comes back with its own
     * (the check skipped; a caller that seals never tells it that) */
    lf_buf told = LF_BUF_INIT;
    lf_redis_pack_line(pk, line.p, line.len, false, &v);
    lf_redis_pack_line(pk, line.p, line.len, true, &told);
    assert_int_equal(told.len, v.len);
    assert_memory_equal(told.p, v.p, v.len);
    lf_redis_pack_line(pk, wrong.p, wrong.len, true, &told);
    lf_buf_reset(&back);
    assert_int_equal(lf_redis_unpack_line(pk, told.p, told.len, &back, why, sizeof why), 0);
    assert_int_equal(back.len, line.len);
    assert_memory_equal(back.p, line.p, line.len);
    lf_buf_free(&told);
    lf_buf_free(&wrong);
    /* The mark byte in a line: stored as it is, read as it is. */
    const char odd[] = "{\"a\":\"\x01\x10 0123456789abcdef0123456789abcdef0123456789abcdef\"}";
    lf_redis_pack_line(pk, odd, sizeof odd - 1, false, &v);
    assert_false(lf_redis_packed(v.p, v.len));
    lf_buf_reset(&back);
    assert_int_equal(lf_redis_unpack_line(pk, v.p, v.len, &back, why, sizeof why), 0);
    assert_memory_equal(back.p, odd, sizeof odd - 1);
    /* A frame whose content has a mark cut short (no packer writes one)
     * is damaged, and leaves out as it was. */
    const char cut[] = "{\"a\":\"\x01\x20\x01\x02\"}";
    char frame[256];
    size_t fn = ZSTD_compress(frame, sizeof frame, cut, sizeof cut - 1, 1);
    assert_false(ZSTD_isError(fn));
    lf_buf_reset(&back);
    lf_buf_puts(&back, "kept");
    assert_int_equal(lf_redis_unpack_line(pk, frame, fn, &back, why, sizeof why), -1);
    if (!strstr(why, "damaged")) fail_msg("why: %s", why);
    assert_int_equal(back.len, 4);
    /* and so is one whose own-hash mark is not last */
    const char early[] = "{\"a\":\"\x01\x00\"}";
    fn = ZSTD_compress(frame, sizeof frame, early, sizeof early - 1, 1);
    assert_false(ZSTD_isError(fn));
    assert_int_equal(lf_redis_unpack_line(pk, frame, fn, &back, why, sizeof why), -1);
    assert_int_equal(back.len, 4);
    lf_buf_free(&line);
    lf_buf_free(&v);
    lf_buf_free(&back);
    lf_redis_pack_free(pk);
}

/* The log keeps each line packed (a zstd frame on a fixed dictionary),
 * and every read gives back the sealed bytes: the chain verifies, a
 * line written whole (as older versions did) reads the same, and a
 * damaged frame is caught at its seq -- by the chain check, and by a
 * read of its record -- never passed off as a line. */
static void lines_are_packed(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1];

    three_entries(s, id, &g);
    char *l2 = hget_line(2);
    redisReply *r = log_value(2);
    assert_true(lf_redis_packed(r->str, r->len));
    /* Its three digests as bytes, the rest against the dictionary: well
     * under half (471 bytes to 184). */
    if (r->len * 2 > strlen(l2)) fail_msg("packed %zu of %zu bytes", r->len, strlen(l2));
    char *frame = lf_xmalloc(r->len);
    size_t flen = r->len;
    memcpy(frame, r->str, flen);
    freeReplyObject(r);
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.lens[1], strlen(l2));
    assert_string_equal(a.lines[1], l2);
    t_audit_reset(&a);

    /* As older versions wrote it: the line itself. */
    hset_value(2, l2, strlen(l2));
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    t_redis_ok(&server, "HDEL lf:rec:{%s} h", id);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 3, &g), LF_OK);
    assert_int_equal(t_verify_chain(s, NULL, 0), 4);

    /* A frame cut short does not unpack: the chain check reports the
     * entry, a read of its record says so. */
    hset_value(2, frame, flen - 3);
    expect_broken(s, "seq 2");
    t_redis_ok(&server, "HDEL lf:rec:{%s} h", id);
    assert_int_equal(t_get(s, id, &g), LF_UNAVAILABLE);
    if (!strstr(g.err, "damaged")) fail_msg("get error: %s", g.err);
    /* One changed byte unpacks to other bytes: the chain check sees them
     * (the frames carry no checksum of their own; the chain is one). */
    frame[flen / 2] ^= 0x55;
    hset_value(2, frame, flen);
    expect_broken(s, "seq 2");
    hset_line(2, l2);
    assert_int_equal(t_verify_chain(s, NULL, 0), 4);
    free(frame);
    free(l2);
    t_got_reset(&g);
}

/* ---- the engine on redis ------------------------------------------------ */

typedef struct res {
    int calls;
    lf_code code;
    char state[64];
    char id[LF_ID_LEN + 1];
} res;

static void on_res(const lf_result *r, void *arg) {
    res *x = arg;
    x->calls++;
    x->code = r->code;
    if (r->record) {
        snprintf(x->state, sizeof x->state, "%s", lf_record_state(r->record));
        snprintf(x->id, sizeof x->id, "%s", lf_record_id(r->record));
    }
}

/* An engine on the test's Redis, with the shipped policies. */
static lf_engine *redis_engine(fixture *f) {
    char err[512];
    lf_code code;
    lf_engine_config cfg = {.store = server.url, .policies = "policies", .base = f->base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, &code);
    if (!e) fail_msg("engine: %s", err);
    return e;
}

/* A record created through engine e (auto_merge, in acme/app); its id
 * goes to id. */
static void engine_record(lf_engine *e, const char *ref, char id[LF_ID_LEN + 1]) {
    res r = {0};
    lf_create_req c = {.ref = ref, .repo = "acme/app", .auto_merge = true, .actor = "t"};
    lf_engine_create(e, &c, on_res, &r);
    t_settle(&r.calls);
    assert_int_equal(r.code, LF_OK);
    memcpy(id, r.id, LF_ID_LEN + 1);
}

/* The public API, guards and all, completing on the event base. */
static void engine_runs_on_redis(void **state) {
    fixture *f = F(state);
    lf_engine *e = redis_engine(f);
    const char *ref = "https://github.com/acme/app/issues/1";
    res r = {0};
    char id[LF_ID_LEN + 1];
    engine_record(e, ref, id);
    const char *path[][2] = {{"task_queued", "worker.picked_up"},
                             {"pr_created", "pr.opened"},
                             {"ci_pending", "ci.started"},
                             {"merged", "yolo"}};
    for (size_t i = 0; i < 4; i++) {
        memset(&r, 0, sizeof r);
        lf_transition_req t = {
            .id = id, .to = path[i][0], .trigger = path[i][1], .actor = "t"};
        lf_engine_transition(e, &t, on_res, &r);
        t_settle(&r.calls);
        assert_int_equal(r.code, i < 3 ? LF_OK : LF_INVALID_TRANSITION);
    }
    memset(&r, 0, sizeof r);
    lf_engine_find_by_ref(e, ref, on_res, &r);
    t_settle(&r.calls);
    assert_int_equal(r.code, LF_OK);
    assert_string_equal(r.state, "ci_pending");
    lf_engine_free(e);
    /* the policy set's announcement, created, three transitions, one
     * rejected attempt */
    assert_int_equal(t_verify_chain(f->s, NULL, 0), 6);
}

/* ---- a page of the timers ---------------------------------------------- */

static void wait_until(const bool *done) {
    while (!*done) event_base_loop(t_base, EVLOOP_ONCE);
}

/* An engine on the fixture's Redis whose workflow has task_queued (with a
 * 1h timer when `timed`); its policy directory in d. */
static lf_engine *page_engine(fixture *f, tdir *d, bool timed) {
    char err[512], wf[600];
    assert_non_null(mkdtemp(d->root));
    snprintf(wf, sizeof wf,
             "return workflow {\n"
             "  name = \"loopforge\",\n"
             "  states = { \"issue_created\", \"task_queued\", \"closed\" },\n"
             "  initial = \"issue_created\", terminal = { \"closed\" },\n"
             "  edges = { { \"issue_created\", \"task_queued\" },\n"
             "            { \"task_queued\", \"closed\" } },\n"
             "%s}\n",
             timed ? "  timers = { task_queued = {\n"
                     "    { \"1h\", to = \"closed\", trigger = \"t.late\" } } },\n"
                   : "");
    put(d, "workflows/loopforge.lua", wf);
    lf_engine_config cfg = {.store = server.url, .policies = d->root, .base = f->base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) fail_msg("engine: %s", err);
    return e;
}

/* e's 600 timers at now read in pages of 50 are the whole listing, and
 * the 12 pages read fewer than `most` records in all; e is freed. */
static void pages_read(lf_engine *e, tdir *d, int64_t now, uint64_t most) {
    int pages, whole;
    lf_stats was, is;
    lf_engine_stats(e, &was);
    char *paged = tp_list(e, now, 50, &pages);
    lf_engine_stats(e, &is);
    char *all = tp_list(e, now, 0, &whole);
    assert_string_equal(paged, all);
    assert_int_equal(pages, 12);
    assert_true(is.timer_records - was.timer_records < most);
    size_t lines = 0;
    for (const char *p = all; (p = strchr(p, '\n')); p++) lines++;
    assert_int_equal(lines, 600);
    free(all);
    free(paged);
    lf_engine_free(e);
    nftw(d->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A page of the timers (GET /v1/timers?limit=) asks for a state's records
 * oldest first and stops reading once the page is found: 600 records
 * imported as having entered a 1h timer's state a second apart, every
 * page of 50 as the whole listing has them, and the pages reading about
 * what they show (fewer than 200 of the 600 each) -- not all 600 each, as
 * every page did before -- the first ones too: a store begun by this
 * version has its entered indexes whole from its first entry (P
 * indexed), for every process. */
static void timers_page_reads_a_page(void **state) {
    tdir d = {"/tmp/lf-page-XXXXXX"};
    lf_engine *e = page_engine(F(state), &d, true);
    int64_t now = lf_now_us();
    for (int i = 0; i < 600; i++) {
        char ts[LF_TS_LEN + 1], json[700];
        lf_ts_format(now - 3599 * 1000000LL + i * 1000000LL, ts);
        snprintf(json, sizeof json,
                 "{\"record_id\":\"loop-%08x\",\"ref\":\"acme/app#%d\",\"repo\":\"acme/app\","
                 "\"state\":\"task_queued\",\"transitions\":["
                 "{\"from_state\":null,\"to_state\":\"issue_created\",\"trigger\":\"created\","
                 "\"timestamp\":\"%s\"},{\"from_state\":\"issue_created\","
                 "\"to_state\":\"task_queued\",\"trigger\":\"go\",\"timestamp\":\"%s\"}]}",
                 (unsigned)(0x10000000 + i), i, ts, ts);
        res r = {0};
        lf_engine_import(e, json, "t", false, on_res, &r);
        t_settle(&r.calls);
        assert_int_equal(r.code, LF_OK);
    }
    pages_read(e, &d, now, 12 * 200);
}

/* So do the records with timers of their own (a hook's schedule{}),
 * listed earliest due first: 600 due a second apart, an hour from now,
 * each page reading about what it shows (623 in all) -- where rounds that
 * looked ever further ahead from the cursor, each reading all that was
 * due by then, read 43,203. */
static void own_timers_page_reads_a_page(void **state) {
    tdir d = {"/tmp/lf-own-XXXXXX"};
    lf_engine *e = page_engine(F(state), &d, false);
    int64_t now = lf_now_us();
    for (int i = 0; i < 600; i++) {
        char id[LF_ID_LEN + 1], ref[64];
        snprintf(ref, sizeof ref, "acme/app#own%d", i);
        engine_record(e, ref, id);
        tp_call c = {0};
        lf_engine_schedule(e, id, "issue_created", (3600 + i) * 1000000LL, "task_queued",
                           "own", NULL, "t", tp_result, &c);
        wait_until(&c.done);
        assert_int_equal(c.code, LF_OK);
    }
    pages_read(e, &d, now, 12 * 60);
}

/* The same records as test_engine's (timers_pages.h) on Redis: every
 * page size lists the whole listing. */
static void timers_pages_are_the_listing_cut(void **state) {
    fixture *f = F(state);
    tdir d = {"/tmp/lf-tp-XXXXXX"};
    char err[512];
    assert_non_null(mkdtemp(d.root));
    put(&d, "workflows/loopforge.lua", TP_WORKFLOW);
    lf_engine_config cfg = {.store = server.url, .policies = d.root, .base = f->base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) fail_msg("engine: %s", err);
    tp_fill(e, 400);
    tp_check(e, 400);
    lf_engine_free(e);
    nftw(d.root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static lf_code engine_move(lf_engine *e, const char *id, const char *to, const char *trigger,
                           uint64_t expect, res *r) {
    memset(r, 0, sizeof *r);
    lf_transition_req t = {.id = id, .to = to, .trigger = trigger, .actor = "t",
                           .expected_version = expect};
    lf_engine_transition(e, &t, on_res, r);
    t_settle(&r->calls);
    assert_int_equal(r->calls, 1);
    return r->code;
}

/* Two servers on one Redis. An engine commits on the record as it last
 * knew it, without asking Redis first; when the other one moved it
 * meanwhile, the commit's version check fails -- a refusal's too -- and
 * the request is judged again on the record as it is: an edge that is no
 * longer there is refused (the refusal names the version it judged), one
 * that is there now passes, an expected version the other one reached
 * passes. */
static void engines_share_a_record(void **state) {
    fixture *f = F(state);
    lf_engine *a = redis_engine(f), *b = redis_engine(f);
    res r = {0};
    char id[LF_ID_LEN + 1];
    engine_record(a, "https://github.com/acme/app/issues/7", id);
    /* a knows the record it wrote: the move is the commit script alone
     * (its two HMGETs: the record's version, the log's head), no read. */
    t_redis_ok(&server, "CONFIG RESETSTAT");
    assert_int_equal(engine_move(a, id, "task_queued", "worker.picked_up", 0, &r), LF_OK);
    assert_int_equal(calls_of("evalsha"), 1);
    assert_int_equal(calls_of("hmget"), 2);

    /* b moves it on; a still knows it at task_queued, version 2. */
    assert_int_equal(engine_move(b, id, "pr_created", "pr.opened", 0, &r), LF_OK);
    /* task_queued -> pr_created again: valid from what a knew, not from
     * where it is: refused, and the record stays where b put it. */
    assert_int_equal(engine_move(a, id, "pr_created", "pr.opened", 0, &r),
                     LF_INVALID_TRANSITION);
    assert_string_equal(r.state, "pr_created");
    /* b moves it again; pr_created -> ci_passed is no edge, but
     * ci_pending -> ci_passed is: a's refusal, judged on what it knew,
     * is not written (its version is not the record's) and the request
     * passes on the record as it is. */
    assert_int_equal(engine_move(b, id, "ci_pending", "ci.started", 0, &r), LF_OK);
    assert_int_equal(engine_move(a, id, "ci_passed", "ci.completed", 0, &r), LF_OK);
    assert_string_equal(r.state, "ci_passed");
    /* b last knew version 4; it expects the 5 a made. */
    assert_int_equal(engine_move(b, id, "merged", "auto.merged", 5, &r), LF_OK);
    /* an expectation the record has moved past is still a conflict */
    assert_int_equal(engine_move(a, id, "closed", "issue.closed", 5, &r), LF_CONFLICT);
    lf_engine_free(a);
    lf_engine_free(b);
    /* the policy set's announcement (once: b's is a repeat), created,
     * five moves, the one refusal */
    char why[256] = "";
    long n = t_verify_chain(f->s, why, sizeof why);
    if (n != 8) fail_msg("chain: %ld entries (%s)", n, why);
    t_audit a2 = {0};
    t_audit_page(f->s, id, 0, 0, &a2);
    assert_int_equal(a2.n, 7);
    /* the refusal names the version it judged: 3, where b had put it */
    assert_non_null(strstr(a2.lines[3], "\"kind\":\"rejected\""));
    assert_non_null(strstr(a2.lines[3], "\"version\":3"));
    t_audit_reset(&a2);
}

/* Break-glass is marked used only when it passed a guard's denial in the
 * attempt that committed: a retry after a version conflict is judged
 * afresh. Engine a last knew the record at s0, where the guard denies a
 * move to s2; b has moved it to s1, where it allows one. a's override
 * passes the denial on what it knew, its commit conflicts, and the move
 * is judged again at s1: no guard denies, the override is not used (and
 * the entry must not say it was). */
static void override_used_only_in_the_attempt_that_commits(void **state) {
    fixture *f = F(state);
    char *dir = t_tmpdir(), path[4200], err[512], id[LF_ID_LEN + 1];
    snprintf(path, sizeof path, "%s/workflows", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/guards", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    const char *files[][2] = {
        {"workflows/w.lua",
         "return workflow { name = \"loopforge\", states = { \"s0\", \"s1\", \"s2\" },\n"
         "  initial = \"s0\", terminal = { \"s2\" },\n"
         "  edges = { { \"s0\", \"s1\" }, { \"s1\", \"s2\" }, { \"s0\", \"s2\" } } }\n"},
        {"guards/g.lua",
         "return policy { name = \"not-from-s0\", on = { to = \"s2\" },\n"
         "  check = function(t) if t.from == \"s0\" then return deny { reason = \"s0\" } end\n"
         "    return allow() end }\n"}};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(files[i][1], fp);
        fclose(fp);
    }
    lf_engine_config cfg = {.store = server.url, .policies = dir, .base = f->base};
    lf_engine *a = lf_engine_new(&cfg, err, sizeof err, NULL), *b = lf_engine_new(&cfg, err, sizeof err, NULL);
    assert_non_null(a);
    assert_non_null(b);
    engine_record(a, "https://github.com/acme/app/issues/9", id);
    res r = {0};
    assert_int_equal(engine_move(b, id, "s1", "go", 0, &r), LF_OK);
    memset(&r, 0, sizeof r);
    lf_transition_req t = {.id = id, .to = "s2", .trigger = "go", .actor = "t",
                           .roles = "breakglass", .override_reason = "test"};
    lf_engine_transition(a, &t, on_res, &r);
    t_settle(&r.calls);
    assert_int_equal(r.code, LF_OK);
    lf_engine_free(a);
    lf_engine_free(b);
    t_audit au = {0};
    t_audit_page(f->s, id, 0, 0, &au);
    assert_int_equal(au.n, 3);
    assert_non_null(strstr(au.lines[2], "\"to_state\":\"s2\""));
    assert_null(strstr(au.lines[2], "\"used\":true"));
    assert_non_null(strstr(au.lines[2], "\"used\":false"));
    t_audit_reset(&au);
    t_rmtree(dir);
    free(dir);
}

/* ---- a record is its entries -------------------------------------------- */

/* Redis keeps a record's entries and its version and h, not a copy of
 * the record: a read folds the entries, as every store does, and a
 * commit sends the same few hundred bytes however long the history is. A
 * get answers from the cache on the version and h alone. A record an
 * older version wrote (its JSON in j) reads the same, loses j at its next
 * commit, and one without an entry list reads from j. */
static void records_are_their_entries(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0}, h = {0};
    char id[LF_ID_LEN + 1], id2[LF_ID_LEN + 1], key[64];
    const char *path[] = {"issue_created", "task_queued", "pr_created", "ci_pending"};

    t_id(id, 1);
    snprintf(key, sizeof key, "lf:rec:{%s}", id);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(t_transition(s, id, path[i], path[i + 1], (uint64_t)i + 1, &g),
                         LF_OK);
    redisReply *r = t_redis_cmd(&server, "HGETALL %s", key);
    assert_int_equal(r->elements, 8);   /* v, h, c and the one run of seqs */
    freeReplyObject(r);
    r = t_redis_cmd(&server, "HGET %s l1", key);
    assert_string_equal(r->str, "1,2,3,4");
    freeReplyObject(r);
    r = t_redis_cmd(&server, "HGET %s h", key);
    assert_int_equal(r->len, LF_REDIS_H_LEN);
    assert_memory_equal(r->str, g.hash, LF_REDIS_H_LEN);
    freeReplyObject(r);

    /* Cached: the gets read the version and h, nothing else -- h as this
     * version keeps it (its first digits) or as older ones did (all 64). */
    t_redis_ok(&server, "CONFIG RESETSTAT");
    for (int i = 0; i < 4; i++) {
        if (i == 2) t_redis_ok(&server, "HSET %s h %s", key, g.hash);
        assert_int_equal(t_get(s, id, &h), LF_OK);
        assert_int_equal(h.nhist, 4);
        assert_string_equal(h.json, g.json);
    }
    assert_int_equal(calls_of("hmget"), 4);
    assert_int_equal(calls_of("evalsha"), 0);
    /* A different h at that version (another entry: never the cache's) */
    t_redis_ok(&server, "HSET %s h 0000000000000000", key);
    assert_int_equal(t_get(s, id, &h), LF_OK);
    assert_int_equal(calls_of("evalsha"), 1);
    char h16[LF_REDIS_H_LEN + 1];
    memcpy(h16, g.hash, LF_REDIS_H_LEN);
    h16[LF_REDIS_H_LEN] = '\0';
    t_redis_ok(&server, "HSET %s h %s", key, h16);
    t_redis_ok(&server, "CONFIG RESETSTAT");
    /* Another handle has nothing cached: it folds the entries, into the
     * same record. */
    lf_store *b = open_url(server.url, F(state)->base);
    assert_int_equal(t_get(b, id, &h), LF_OK);
    assert_string_equal(h.json, g.json);
    assert_int_equal(calls_of("evalsha"), 1);
    /* A refused attempt answers with the record, unchanged. */
    assert_int_equal(t_move(s, LF_ENTRY_DENIED, id, "ci_pending", "ci_passed", 4, &h),
                     LF_OK);
    assert_true(h.has_rec);
    assert_string_equal(h.json, g.json);

    /* As an older version left it: its JSON in j, no h. Both handles
     * read it; its next commit drops j and sets h. */
    const char *old[] = {"HSET", key, "j", g.json};
    freeReplyObject(t_redis_cmdv(&server, 4, old, NULL));
    t_redis_ok(&server, "HDEL %s h", key);
    assert_int_equal(t_get(b, id, &h), LF_OK);
    assert_string_equal(h.json, g.json);
    assert_int_equal(t_get(s, id, &h), LF_OK);
    assert_string_equal(h.json, g.json);
    assert_int_equal(t_transition(s, id, "ci_pending", "ci_passed", 4, &g), LF_OK);
    assert_int_equal(g.nhist, 5);
    r = t_redis_cmd(&server, "HMGET %s j h", key);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[1]->len, LF_REDIS_H_LEN);
    assert_memory_equal(r->element[1]->str, g.hash, LF_REDIS_H_LEN);
    freeReplyObject(r);
    assert_int_equal(t_get(b, id, &h), LF_OK);
    assert_string_equal(h.json, g.json);

    /* Older still: no entry list, only j. */
    t_id(id2, 2);
    assert_int_equal(t_create(s, id2, "r2", "acme/app", &h), LF_OK);
    char key2[64];
    snprintf(key2, sizeof key2, "lf:rec:{%s}", id2);
    const char *j2[] = {"HSET", key2, "j", h.json};
    freeReplyObject(t_redis_cmdv(&server, 4, j2, NULL));
    t_redis_ok(&server, "HDEL %s h", key2);
    t_redis_ok(&server, "HDEL %s c l1", key2);
    lf_store *c3 = open_url(server.url, F(state)->base);
    char *want = strdup(h.json);
    assert_int_equal(t_get(c3, id2, &h), LF_OK);
    assert_string_equal(h.json, want);
    free(want);
    /* create 1, three moves, the refusal, the move, the second create */
    assert_int_equal(t_verify_chain(s, NULL, 0), 7);

    /* As an older version kept its seqs: a list, rec:{id}:log. Read
     * from there; the next commit that changes the record (the delete
     * below) moves them into runs and drops the list. */
    r = t_redis_cmd(&server, "HGET %s l1", key);
    assert_string_equal(r->str, "1,2,3,4,5,6");
    freeReplyObject(r);
    for (int q = 1; q <= 6; q++) t_redis_ok(&server, "RPUSH %s:log %d", key, q);
    t_redis_ok(&server, "HDEL %s c l1", key);
    lf_store *c4 = open_url(server.url, F(state)->base);
    assert_int_equal(t_get(c4, id, &h), LF_OK);
    assert_string_equal(h.json, g.json);
    lf_store_free(c4);
    /* A refusal, which does not change the record, goes on its list: an
     * older process may still hold the record at this version. */
    assert_int_equal(t_move(s, LF_ENTRY_DENIED, id, "ci_passed", "merged", 5, &h), LF_OK);
    assert_int_equal(reply_int(t_redis_cmd(&server, "LLEN %s:log", key)), 7);
    assert_int_equal(reply_int(t_redis_cmd(&server, "HEXISTS %s c", key)), 0);

    /* A delete leaves a tombstone: found by nobody. */
    assert_int_equal(t_delete(s, id, "ci_passed", 5, &g), LF_OK);
    r = t_redis_cmd(&server, "HMGET %s c l1", key);
    assert_string_equal(r->element[0]->str, "1");
    assert_string_equal(r->element[1]->str, "1,2,3,4,5,6,8,9");
    freeReplyObject(r);
    assert_int_equal(reply_int(t_redis_cmd(&server, "EXISTS %s:log", key)), 0);
    assert_int_equal(t_get(s, id, &h), LF_NOT_FOUND);
    assert_int_equal(t_get(b, id, &h), LF_NOT_FOUND);
    assert_int_equal(t_get(c3, id, &h), LF_NOT_FOUND);
    lf_store_free(b);
    lf_store_free(c3);
    t_got_reset(&g);
    t_got_reset(&h);
}

/* An older version's list of a long-lived record moves into runs at its
 * next commit whatever its length (here more runs than one call of
 * Lua's unpack can pass), in order, and the list goes. */
static void long_seq_list_moves(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    char id[LF_ID_LEN + 1];
    three_entries(s, id, &g);
    t_redis_ok(&server, "HDEL lf:rec:{%s} c l1", id);
    redisReply *r = t_redis_cmd(&server,
                                "EVAL %s 1 lf:rec:{%s}:log",
                                "for i = 1, 150000 do redis.call('RPUSH', KEYS[1], i) end",
                                id);
    freeReplyObject(r);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 3, &g), LF_OK);
    assert_int_equal(reply_int(t_redis_cmd(&server, "EXISTS lf:rec:{%s}:log", id)), 0);
    long long c = reply_int(t_redis_cmd(&server, "HGET lf:rec:{%s} c", id));
    if (c < 10000) fail_msg("%lld runs", c);
    r = t_redis_cmd(&server, "HGET lf:rec:{%s} l1", id);
    assert_memory_equal(r->str, "1,2,3,4,", 8);
    freeReplyObject(r);
    r = t_redis_cmd(&server, "HGET lf:rec:{%s} l%lld", id, c);
    const char *tail = r->str + strlen(r->str) - 8;
    assert_string_equal(tail, "150000,4");   /* the last old seq, then the commit's */
    freeReplyObject(r);
    t_got_reset(&g);
}

/* A list page reads the index with each record's version and h; the
 * records the cache holds are copied from it, the others are read and
 * folded in one more call. The pages are the same either way, and a
 * cursor from one handle pages on another. */
static void lists_read_what_the_cache_lacks(void **state) {
    lf_store *s = F(state)->s;
    t_got g = {0};
    t_page p = {0}, q = {0};
    char id[LF_ID_LEN + 1];
    for (unsigned i = 1; i <= 7; i++) {
        char ref[16];
        t_id(id, i);
        snprintf(ref, sizeof ref, "r%u", i);
        assert_int_equal(t_create(s, id, ref, "acme/app", &g), LF_OK);
        if (i % 2) assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g),
                                    LF_OK);
    }
    lf_store *b = open_url(server.url, F(state)->base);
    t_redis_ok(&server, "CONFIG RESETSTAT");
    t_list(s, NULL, NULL, 5, NULL, &p);     /* all cached */
    assert_int_equal(p.n, 5);
    assert_int_equal(calls_of("evalsha"), 1);
    t_list(b, NULL, NULL, 5, NULL, &q);     /* none cached: one more call */
    assert_int_equal(calls_of("evalsha"), 3);
    assert_int_equal(q.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(p.ids[i], q.ids[i]);
        assert_string_equal(p.updated[i], q.updated[i]);
    }
    char *cur = strdup(p.cursor);
    t_list(b, NULL, NULL, 5, cur, &q);
    assert_int_equal(q.n, 2);
    assert_null(q.cursor);
    t_list(s, NULL, NULL, 5, cur, &p);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.ids[1], q.ids[1]);
    free(cur);
    /* Some cached, some not: b caches two by reading them. */
    t_id(id, 3);
    assert_int_equal(t_get(b, id, &g), LF_OK);
    t_id(id, 6);
    assert_int_equal(t_get(b, id, &g), LF_OK);
    t_list(b, "task_queued", NULL, 10, NULL, &q);
    assert_int_equal(q.n, 4);               /* 1, 3, 5, 7 */
    t_list(b, NULL, NULL, 10, NULL, &q);
    assert_int_equal(q.n, 7);
    t_list(s, NULL, NULL, 10, NULL, &p);
    for (size_t i = 0; i < 7; i++) assert_string_equal(p.ids[i], q.ids[i]);
    lf_store_free(b);
    t_page_reset(&p);
    t_page_reset(&q);
    t_got_reset(&g);
}

/* Budget counters: one member under b:<name> when the actor acts for
 * itself, a:<actor> and p:<person> when not; counts add b. Counters an
 * older version wrote (every transition under a and p) count once. */
static void counters_once_for_the_common_case(void **state) {
    lf_store *s = F(state)->s;
    char b[LF_COUNTER_KEY], a[LF_COUNTER_KEY], p[LF_COUNTER_KEY];
    int64_t t1 = t_move_as(s, 1, "bot", NULL), oldest;
    t_move_as(s, 2, "bot", "alice");
    lf_counter_key("task_queued", 'b', "bot", b);
    lf_counter_key("task_queued", 'a', "bot", a);
    lf_counter_key("task_queued", 'p', "bot", p);
    redisReply *r = t_redis_cmd(&server, "STRLEN lf:tail:%s", b);
    assert_int_equal(r->integer, 8);     /* one time */
    freeReplyObject(r);
    r = t_redis_cmd(&server, "STRLEN lf:tail:%s", a);
    assert_int_equal(r->integer, 8);     /* the one for alice */
    freeReplyObject(r);
    r = t_redis_cmd(&server, "EXISTS lf:tail:%s lf:count:%s lf:count:%s lf:count:%s", p, p, a, b);
    assert_int_equal(r->integer, 0);     /* no sorted set: those are an older version's */
    freeReplyObject(r);
    /* As an older version wrote a transition by bot for itself, earlier. */
    t_redis_ok(&server, "ZADD lf:count:%s %lld 999", a, (long long)(t1 - 5));
    t_redis_ok(&server, "ZADD lf:count:%s %lld 999", p, (long long)(t1 - 5));
    assert_int_equal(t_count_of(s, 'a', "bot", 0, &oldest), 3);
    assert_int_equal(oldest, t1 - 5);
    assert_int_equal(t_count_of(s, 'p', "bot", 0, &oldest), 2);
    assert_int_equal(oldest, t1 - 5);
    assert_int_equal(t_count_of(s, 'p', "bot", t1, &oldest), 1);
    assert_int_equal(oldest, t1);
    assert_int_equal(t_count_of(s, 'p', "alice", 0, NULL), 1);
}

/* A transition by bot (for itself) into task_queued, of a new record n,
 * at time us; returns its seq. */
static uint64_t t_move_at(lf_store *s, unsigned n, int64_t us) {
    char id[LF_ID_LEN + 1], ref[16];
    t_got g = {0};
    t_id(id, n);
    snprintf(ref, sizeof ref, "c%u", n);
    assert_int_equal(t_create(s, id, ref, "acme/app", &g), LF_OK);
    t_clock_us = us - 1000000;          /* t_stamp adds a second */
    assert_int_equal(t_move_by(s, LF_ENTRY_TRANSITION, id, "issue_created", "task_queued", 1,
                               "bot", NULL, &g),
                     LF_OK);
    uint64_t seq = g.seq;
    t_got_reset(&g);
    return seq;
}

/* The counter's times as they are kept: the list's chunks hold 64 each,
 * the tail fewer, in order across them. Returns how many. */
static size_t times_kept(const char *key, int64_t *out, size_t cap) {
    redisReply *r = t_redis_cmd(&server, "LRANGE lf:times:%s 0 -1", key);
    redisReply *tail = t_redis_cmd(&server, "GET lf:tail:%s", key);
    size_t n = 0;
    for (size_t i = 0; i <= r->elements; i++) {
        redisReply *e = i < r->elements ? r->element[i] : tail;
        if (e->type == REDIS_REPLY_NIL) break;
        const unsigned char *c = (const unsigned char *)e->str;
        size_t len = e->len;
        assert_int_equal(len % 8, 0);
        if (i < r->elements)
            assert_int_equal(len, 512);
        else
            assert_true(len > 0 && len < 512);
        for (size_t j = 0; j < len; j += 8, n++) {
            uint64_t v = 0;
            for (int b = 0; b < 8; b++) v = v << 8 | c[j + b];
            assert_true(n < cap);
            out[n] = (int64_t)v;
            if (n) assert_true(out[n - 1] <= out[n]);
        }
    }
    freeReplyObject(r);
    freeReplyObject(tail);
    return n;
}

/* A counter's times may arrive in any order (processes' clocks, a clock
 * set back): each goes where it belongs, and a count since any time is
 * exact -- checked against a plain count of the times committed, about
 * and at each of them. Times older than 31 days go by whole chunks. */
static void counter_times_in_any_order(void **state) {
    lf_store *s = F(state)->s;
    enum { N = 300 };
    int64_t t[N + 20], kept[N + 20], base = t_clock_us + 1000000000, oldest;
    char key[LF_COUNTER_KEY];
    uint64_t x = 12345;
    lf_counter_key("task_queued", 'b', "bot", key);
    for (unsigned i = 0; i < N; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        t[i] = base + 1000 * (int64_t)i;
        if (i % 7 == 3) t[i] -= (int64_t)(x >> 33) % (1000 * (int64_t)i + 1);  /* back */
        if (i % 50 == 49) t[i] = base - 5;               /* before all: the first chunk */
        if (i % 11 == 5) t[i] = t[i - 1];                /* a tie */
        t_move_at(s, i + 1, t[i]);
    }
    assert_int_equal(times_kept(key, kept, N + 20), N);
    int64_t probes[] = {0, base - 6, base - 5, base - 4, base, base + 1, base + 64000,
                        base + 150500, base + 298999, base + 299000, base + 299001};
    for (size_t p = 0; p < sizeof probes / sizeof *probes + N; p++) {
        int64_t since = p < sizeof probes / sizeof *probes ? probes[p]
                                                           : t[p - sizeof probes / sizeof *probes];
        uint64_t want = 0;
        int64_t first = 0;
        for (unsigned i = 0; i < N; i++)
            if (t[i] >= since) {
                if (!want || t[i] < first) first = t[i];
                want++;
            }
        assert_int_equal(t_count_of(s, 'a', "bot", since, &oldest), want);
        assert_int_equal(oldest, want ? first : 0);
    }
    /* 32 days on, at a seq the commit trims at: the chunks whose times
     * are all past 31 days go; the ones that are not stay. */
    int64_t later = base + 32LL * 86400 * 1000000;
    unsigned n = N;
    for (;;) {
        char id[LF_ID_LEN + 1], ref[16];
        t_got g = {0};
        t_id(id, ++n);
        snprintf(ref, sizeof ref, "c%u", n);
        assert_int_equal(t_create(s, id, ref, "acme/app", &g), LF_OK);
        uint64_t next = g.seq + 2;   /* the move of the next record */
        t_got_reset(&g);
        if (next % 16 == 0) break;
    }
    assert_int_equal(t_move_at(s, ++n, later) % 16, 0);
    /* the four full chunks; the last keeps its 44 with the new one */
    size_t left = times_kept(key, kept, N + 20);
    assert_int_equal(left, N - 4 * 64 + 1);
    assert_int_equal(kept[left - 1], later);
    assert_true(kept[0] >= base && kept[0] < base + 300000);
    assert_int_equal(t_count_of(s, 'a', "bot", later - 31LL * 86400 * 1000000, &oldest), 1);
    assert_int_equal(oldest, later);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(bad_urls_are_usage_errors),
        T(unreachable_is_unavailable),
        T(auth_and_db_errors),
        T(prefix_and_db_separate_stores),
        T(pipelined_commits),
        T(pipeline_survives_refusals),
        T(pipelined_transitions_of_one_record),
        T(processes_race_for_the_log),
        T(noscript_recovery),
        T(restart_in_the_middle),
        T(command_timeout),
        T(free_with_requests_in_flight),
        T(free_from_a_callback),
        T(another_process_moved_it),
        T(pages_through_ties_like_memory),
        T(entered_index_filled_then_read),
        T(timed_scored_by_due),
        T(corrupted_record_value),
        T(records_are_their_entries),
        T(long_seq_list_moves),
        T(lists_read_what_the_cache_lacks),
        T(counters_once_for_the_common_case),
        T(counter_times_in_any_order),
        T(tampering_is_detected),
        T(lines_are_packed),
        T(lines_refer_to_their_policy_set),
        T(readers_put_back_their_own_sets),
        T(commits_skip_what_they_wrote),
        T(lists_merge_the_states),
        T(log_lists),
        cmocka_unit_test(pack_round_trips),
        T(engine_runs_on_redis),
        T(timers_page_reads_a_page),
        T(timers_pages_are_the_listing_cut),
        T(own_timers_page_reads_a_page),
        T(engines_share_a_record),
        T(override_used_only_in_the_attempt_that_commits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
