/* test_store.c -- the store conformance suite.
 *
 * Every test runs once per backend: the cmocka state names the URL
 * ("memory:", "file:" or "redis"; the file: setup gives each test its own
 * journal in a fresh temp directory; the redis leg runs on a private
 * redis-server this file starts on a unix socket, flushed before each
 * test, and on an event base the helpers run until each callback fires).
 * A new backend is done when it passes this file unchanged. The entries
 * are built by hand, the way the engine builds them, so the suite tests
 * the store and nothing above it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_helpers.h"
#include "redis_helpers.h"

static t_redis server;              /* the redis leg's, for the whole run */

typedef struct fixture {
    const char *scheme;             /* "memory:", "file:" or "redis" */
    char *dir;                      /* file: only */
    char *url;
    struct event_base *base;        /* redis only */
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

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    char err[512];
    lf_code code;

    assert_non_null(f);
    f->scheme = *state;
    if (strcmp(f->scheme, "file:") == 0) {
        f->dir = t_tmpdir();
        assert_true(asprintf(&f->url, "file:%s/var/store.journal", f->dir) > 0);
    } else if (strcmp(f->scheme, "redis") == 0) {
        t_redis_ok(&server, "FLUSHALL");
        f->url = strdup(server.url);
        assert_non_null(t_base = f->base = event_base_new());
    } else {
        f->url = strdup(f->scheme);
    }
    f->s = lf_store_open(f->url, f->base, &code, err, sizeof err);
    if (!f->s) fail_msg("open %s: %s", f->url, err);
    assert_int_equal(code, LF_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    lf_store_free(f->s);
    if (f->base) event_base_free(f->base);
    t_base = NULL;
    if (f->dir) t_rmtree(f->dir);
    free(f->dir);
    free(f->url);
    free(f);
    return 0;
}

#define S(state) (((fixture *)*(state))->s)

static uint64_t last_seq(lf_store *s) {
    t_audit a = {0};
    uint64_t seq = 0, after = 0;
    for (;;) {
        t_audit_page(s, NULL, after, 0, &a);
        if (a.n == 0) break;
        seq = t_line_seq(a.lines[a.n - 1]);
        after = a.last_seq;
    }
    t_audit_reset(&a);
    return seq;
}

/* ---- create / get ------------------------------------------------------ */

static void create_then_get(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "acme/app#1", "acme/app", &g), LF_OK);
    assert_true(g.has_rec);
    assert_string_equal(g.id, id);
    assert_string_equal(g.state, "issue_created");
    assert_int_equal(g.version, 1);
    assert_int_equal(g.nhist, 1);
    assert_int_equal(g.seq, 1);
    assert_int_equal(strlen(g.hash), LF_HASH_LEN);

    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_string_equal(g.id, id);
    assert_string_equal(g.state, "issue_created");
    assert_int_equal(g.version, 1);
    assert_non_null(strstr(g.json, "\"ref\":\"acme/app#1\""));
    assert_non_null(strstr(g.json, "\"ref_number\":42"));
    assert_non_null(strstr(g.json, "\"repo\":\"acme/app\""));
    assert_non_null(strstr(g.json, "\"labels\":{\"team\":\"core\"}"));

    assert_int_equal(t_find_ref(s, "acme/app#1", &g), LF_OK);
    assert_string_equal(g.id, id);

    t_id(id, 2);
    assert_int_equal(t_get(s, id, &g), LF_NOT_FOUND);
    assert_false(g.has_rec);
    assert_non_null(strstr(g.err, id));
    assert_int_equal(t_find_ref(s, "acme/app#2", &g), LF_NOT_FOUND);
    t_got_reset(&g);
}

static void duplicate_id_refused(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_create(s, id, "r2", "acme/app", &g), LF_CONFLICT);
    assert_false(g.has_rec);
    assert_non_null(strstr(g.err, id));
    /* Nothing was written, and the loser's ref was not claimed. */
    assert_int_equal(last_seq(s), 1);
    assert_int_equal(t_find_ref(s, "r2", &g), LF_NOT_FOUND);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_non_null(strstr(g.json, "\"ref\":\"r1\""));
    t_got_reset(&g);
}

static void duplicate_ref_refused(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];

    t_id(a, 1);
    t_id(b, 2);
    assert_int_equal(t_create(s, a, "acme/app#7", "acme/app", &g), LF_OK);
    assert_int_equal(t_create(s, b, "acme/app#7", "acme/app", &g), LF_DUPLICATE_REF);
    assert_false(g.has_rec);
    assert_non_null(strstr(g.err, a));      /* names the existing id */
    assert_int_equal(t_get(s, b, &g), LF_NOT_FOUND);
    assert_int_equal(last_seq(s), 1);
    t_got_reset(&g);
}

/* A created entry the fold cannot read (no workflow) is the caller's
 * mistake: refused, and nothing of it stays in the log. */
static void malformed_create_refused(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    lf_entry e = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    e.record_id = id;
    e.kind = LF_ENTRY_CREATED;
    e.version = 1;
    e.to_state = "issue_created";
    e.trigger = "created";
    e.actor = "tester";
    t_stamp(e.timestamp);
    /* Each field the fold reads, of the wrong kind; a bad escape; a
     * record cut short; not an object. */
    static const char *const bad_records[] = {
        "{\"ref\":\"r1\"}",
        "{\"ref\":1,\"workflow\":\"loopforge\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"ref_number\":\"5\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"ref_number\":1.5}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"repo\":5}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"auto_merge\":\"yes\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"labels\":[]}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"metadata\":\"x\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"owner\":\"me\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\",\"parent\":7}",
        "{\"ref\":\"r\\x\",\"workflow\":\"loopforge\"}",
        "{\"ref\":\"r\",\"workflow\":\"loopforge\"",
        "[\"ref\",\"workflow\"]",
    };
    for (size_t i = 0; i < sizeof bad_records / sizeof *bad_records; i++) {
        e.record = bad_records[i];
        if (t_commit(s, &e, &g) != LF_INVALID_REQUEST) fail_msg("record %zu was taken", i);
        assert_int_equal(last_seq(s), 0);
        assert_int_equal(t_get(s, id, &g), LF_NOT_FOUND);
    }
    /* The next good entry is seq 1, chained to genesis. */
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(g.seq, 1);
    assert_int_equal(t_verify_chain(s, NULL, 0), 1);

    /* Every field the fold reads, escapes decoded, integers exact,
     * objects canonical; a repeated key counts once, the first time. */
    t_id(id, 2);
    e.record = "{\"ref\":\"r\\\"2\\u00fc\",\"ref_number\":12345678901234567,\"repo\":null,"
               "\"auto_merge\":true,\"labels\":{ \"b\" : \"2\", \"a\":\"1\"},\"metadata\":{},"
               "\"workflow\":\"loopforge\",\"parent\":\"loop-00\",\"ref\":\"other\","
               "\"owner\":{\"actor\":\"a\",\"behind\":\"p\"}}";
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    static const char *const want[] = {
        "\"ref\":\"r\\\"2\xc3\xbc\",\"ref_number\":12345678901234567,\"repo\":null,",
        "\"auto_merge\":true,", "\"labels\":{\"b\":\"2\",\"a\":\"1\"},", "\"metadata\":{},",
        "\"workflow\":\"loopforge\",", "\"parent\":\"loop-00\"",
        "\"owner\":{\"actor\":\"a\",\"behind\":\"p\"}"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(g.json, want[i])) fail_msg("%s not in %s", want[i], g.json);
    t_got_reset(&g);
}

/* The fixture's journal opened again: memdb folded anew from its lines. */
static lf_store *reopen(fixture *f) {
    char err[512];
    lf_code code;
    lf_store_free(f->s);
    f->s = lf_store_open(f->url, f->base, &code, err, sizeof err);
    assert_non_null(f->s);
    return f->s;
}

/* A large state's entered index is made a step at a time (memdb's
 * build_step: its state's index gathered BUILD_STEP entries a call,
 * sorted as many a call, the runs merged MERGE_STEP a call; the embedded
 * stores share it, so memory: stands for file: here, and Redis fills its
 * index its own way, test_redis.c): the first `asks` answer an empty page
 * and a cursor, then the state goes on changing -- a record moved out,
 * one deleted, one entering late, and 13,000 observed (updated without
 * moving, their entries in the state's index appended again: enough that
 * the index would be compacted under the walk, the unobserved records'
 * entries moving to places already passed, if it were not held) -- and
 * following the cursors ends with exactly the records that entered by
 * then, each once, oldest first; asked again later, with the late one
 * last. Made at once, the first ask answered a full page. */
static void made_in_steps(lf_store *s, unsigned asks) {
    enum { N = 20000, OBSERVED = 13000 };
    t_got g = {0};
    static char id[N + 1][LF_ID_LEN + 1], seen[N][LF_ID_LEN + 1];
    static int64_t at[N + 1];
    t_queued(s, N, id, at);
    lf_list_query q = {.state = "task_queued", .entered_by = at[N - 1], .limit = 1000};
    t_page p = {0};
    for (unsigned a = 0; a < asks; a++) {
        q.cursor = p.cursor ? strdup(p.cursor) : NULL;
        t_page_reset(&p);
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        free((char *)q.cursor);
        assert_int_equal(p.code, LF_OK);
        assert_int_equal(p.n, 0);
        assert_non_null(p.cursor);
    }
    q.cursor = NULL;
    t_page_reset(&p);
    assert_int_equal(t_transition(s, id[0], "task_queued", "pr_created", 2, &g), LF_OK);
    assert_int_equal(t_delete(s, id[1], "task_queued", 2, &g), LF_OK);
    for (unsigned i = 2; i < OBSERVED; i++) {
        lf_entry e;
        t_entry(&e, LF_ENTRY_OBSERVED, id[i], 3, "task_queued", "task_queued",
                "test.observed");
        assert_int_equal(t_commit(s, &e, &g), LF_OK);
    }
    t_got_reset(&g);
    t_id(id[N], N + 1);
    assert_int_equal(t_create(s, id[N], id[N], "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(s, id[N], "issue_created", "task_queued", 1, &g), LF_OK);
    size_t n = t_list_all(s, q, seen, N);
    assert_int_equal(n, N - 2);                 /* 2 .. N - 1 */
    for (unsigned i = 2; i < N; i++) assert_string_equal(seen[i - 2], id[i]);
    q.entered_by = t_clock_us;
    q.entered_after = at[N - 1];
    assert_int_equal(t_list_all(s, q, seen, N), 1);
    assert_string_equal(seen[0], id[N]);
    t_got_reset(&g);
}

/* The state changing while its entries are gathered. */
static void entered_index_made_in_steps(void **state) {
    made_in_steps(((fixture *)*state)->s, 1);
}

/* ... and while the sorted runs are merged (the 6th ask stops in the
 * middle of a pair: 20,000 entries, runs of 8,192, 16,384 merged a call):
 * what changed meanwhile is gathered and merged in at the end. */
static void entered_index_changed_while_merged(void **state) {
    made_in_steps(((fixture *)*state)->s, 6);
}

/* The timers' hint: the records that entered a state at or before a
 * time (lf_list_query.entered_by). The embedded stores answer exactly
 * those, oldest first: an observation since (a newer updated_at) keeps a
 * record in, a move out or a delete takes it out. Redis answers exactly
 * those too, newest first (a store begun by this version keeps its entered
 * indexes whole from its first entry; test_redis has one an older version
 * began), but the whole state when a repo is given: there the answer is
 * checked as a set. */
static void list_entered_by(void **state) {
    fixture *f = *state;
    lf_store *s = f->s;
    bool redis = strcmp(f->scheme, "redis") == 0, exact = !redis;
    t_got g = {0};
    t_page p = {0};
    char id[6][LF_ID_LEN + 1];
    int64_t at[6];
    for (unsigned i = 1; i <= 5; i++) {
        t_id(id[i], i);
        assert_int_equal(t_create(s, id[i], id[i], "acme/app", &g), LF_OK);
    }
    for (unsigned i = 1; i <= 4; i++) {
        assert_int_equal(t_transition(s, id[i], "issue_created", "task_queued", 1, &g), LF_OK);
        at[i] = t_clock_us;
    }
    assert_int_equal(t_transition(s, id[4], "task_queued", "pr_created", 2, &g), LF_OK);
    lf_entry e;                     /* 3 is observed after: updated, not moved */
    t_entry(&e, LF_ENTRY_OBSERVED, id[3], 3, "task_queued", "task_queued", "test.observed");
    e.changes = "{\"labels\":{\"seen\":\"yes\"}}";
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(t_transition(s, id[5], "issue_created", "task_queued", 1, &g), LF_OK);
    at[5] = t_clock_us;

    static const struct {
        int by;                     /* entered_by: at[by] */
        unsigned want[4];           /* the ids answered, oldest first, 0-ended */
    } cases[] = {{3, {1, 2, 3, 0}}, {1, {1, 0}}, {4, {1, 2, 3, 0}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lf_list_query q = {.state = "task_queued", .repo = c == 2 ? "acme/app" : NULL,
                           .entered_by = at[cases[c].by], .limit = 1000};
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.code, LF_OK);
        size_t n = 0;
        for (; cases[c].want[n]; n++) {
            bool found = false;
            for (size_t k = 0; k < p.n; k++) found |= !strcmp(p.ids[k], id[cases[c].want[n]]);
            if (!found) fail_msg("case %zu: %s is not in the answer", c, id[cases[c].want[n]]);
            if (exact) assert_string_equal(p.ids[n], id[cases[c].want[n]]);
        }
        for (size_t k = 0; k < p.n; k++) assert_string_not_equal(p.ids[k], id[4]);
        if (exact || (redis && c != 2)) assert_int_equal(p.n, n);
        if (redis && c == 2) assert_int_equal(p.n, 4);  /* the whole state: 5 too */
        t_page_reset(&p);
    }
    /* A state nobody is in answers nothing. */
    lf_list_query none = {.state = "nowhere", .entered_by = at[3], .limit = 1000};
    lf_store_list(s, &none, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_OK);
    assert_int_equal(p.n, 0);
    t_page_reset(&p);
    /* A delete takes a record out. */
    assert_int_equal(t_delete(s, id[2], "task_queued", 2, &g), LF_OK);
    lf_list_query q = {.state = "task_queued", .entered_by = at[3], .limit = 1000};
    lf_store_list(s, &q, t_list_cb, &p);
    t_settle(&p.calls);
    for (size_t k = 0; k < p.n; k++) assert_string_not_equal(p.ids[k], id[2]);
    assert_int_equal(p.n, 2);
    t_page_reset(&p);
    /* A record that comes back joins at the time it came back. */
    assert_int_equal(t_transition(s, id[4], "pr_created", "task_queued", 3, &g), LF_OK);
    at[4] = t_clock_us;
    lf_list_query all = {.state = "task_queued", .entered_by = t_clock_us, .limit = 1000};
    lf_store_list(s, &all, t_list_cb, &p);
    t_settle(&p.calls);
    static const unsigned order[] = {1, 3, 5, 4};
    assert_int_equal(p.n, 4);
    for (size_t k = 0; k < 4; k++)
        assert_string_equal(p.ids[k], id[order[redis ? 3 - k : k]]);
    t_page_reset(&p);
    /* A window (entered_after: the tick's on a retry state): those that
     * entered after it only, in the same order. */
    for (size_t after = 0; after < 4; after++) {
        lf_list_query w = {.state = "task_queued", .entered_by = t_clock_us,
                           .entered_after = after ? at[order[after - 1]] : at[1] - 1,
                           .limit = 1000};
        lf_store_list(s, &w, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.code, LF_OK);
        assert_int_equal(p.n, 4 - after);
        for (size_t k = 0; k < p.n; k++)
            assert_string_equal(p.ids[k], id[order[redis ? 3 - k : after + k]]);
        t_page_reset(&p);
    }
    /* In pages (the tick takes a thousand at a time): the pages follow
     * one another in the same order, whatever their size; a record that
     * moves out between two pages is not in the next one. */
    for (size_t limit = 1; limit <= 4; limit++) {
        char seen[5][LF_ID_LEN + 1];
        lf_list_query pg = {
            .state = "task_queued", .entered_by = t_clock_us, .limit = limit};
        size_t n = t_list_all(s, pg, seen, 4);
        assert_int_equal(n, 4);
        for (size_t k = 0; k < 4; k++)
            assert_string_equal(seen[k], id[order[redis ? 3 - k : k]]);
    }
    {
        unsigned last = order[redis ? 0 : 3];  /* the last one listed */
        lf_list_query pg = {.state = "task_queued", .entered_by = t_clock_us, .limit = 2};
        lf_store_list(s, &pg, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.n, 2);
        assert_non_null(p.cursor);
        char *cursor = strdup(p.cursor);
        t_page_reset(&p);
        uint64_t v = last == 4 ? 4 : last == 3 ? 3 : 2;
        assert_int_equal(t_transition(s, id[last], "task_queued", "pr_created", v, &g),
                         LF_OK);
        pg.cursor = cursor;
        lf_store_list(s, &pg, t_list_cb, &p);
        t_settle(&p.calls);
        free(cursor);
        assert_int_equal(p.code, LF_OK);
        assert_int_equal(p.n, 1);
        assert_string_equal(p.ids[0], id[order[redis ? 1 : 2]]);
        t_page_reset(&p);
        assert_int_equal(
            t_transition(s, id[last], "pr_created", "task_queued", v + 1, &g), LF_OK);
    }
    /* A record entering a state whose entered index was made before
     * anyone had been in it (the ask for "nowhere" above) is in it. */
    char late[LF_ID_LEN + 1];
    t_id(late, 9);
    assert_int_equal(t_create(s, late, late, "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(s, late, "issue_created", "nowhere", 1, &g), LF_OK);
    none.entered_by = t_clock_us;
    lf_store_list(s, &none, t_list_cb, &p);
    t_settle(&p.calls);
    assert_int_equal(p.code, LF_OK);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.ids[0], late);
    t_page_reset(&p);
    /* A journal builds the same from its lines when it opens again. */
    if (strcmp(f->scheme, "file:") == 0) {
        s = reopen(f);
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.n, 2);
        assert_string_equal(p.ids[0], id[1]);
        assert_string_equal(p.ids[1], id[3]);
        t_page_reset(&p);
    }
    t_got_reset(&g);
}

/* The tick's hint for the records with timers of their own
 * (lf_list_query.due_by): each store answers just the ones with a timer
 * due by then -- the embedded stores earliest first, Redis latest first
 * (it scores them by their earliest due) -- not every record with a
 * timer; a change of the timers moves a record in or out, a delete takes
 * it out. */
static void list_due_timers(void **state) {
    fixture *f = *state;
    lf_store *s = f->s;
    bool redis = strcmp(f->scheme, "redis") == 0;
    t_got g = {0};
    t_page p = {0};
    char id[5][LF_ID_LEN + 1], a[256], b[256], arr[600];
    int64_t base = t_clock_us + 1000 * 1000000LL, sec = 1000000;
    for (unsigned i = 1; i <= 4; i++) {
        t_id(id[i], i);
        assert_int_equal(t_create(s, id[i], id[i], "acme/app", &g), LF_OK);
    }
    t_timer(base + sec, a, sizeof a);                   /* 1: due at +1 s */
    snprintf(arr, sizeof arr, "[%s]", a);
    assert_int_equal(t_set_timers(s, id[1], 2, arr, &g), LF_OK);
    t_timer(base + 3 * sec, a, sizeof a);               /* 2: at +3 s */
    snprintf(arr, sizeof arr, "[%s]", a);
    assert_int_equal(t_set_timers(s, id[2], 2, arr, &g), LF_OK);
    t_timer(base + 5 * sec, a, sizeof a);               /* 3: at +5 s and +2 s */
    t_timer(base + 2 * sec, b, sizeof b);
    snprintf(arr, sizeof arr, "[%s,%s]", a, b);
    assert_int_equal(t_set_timers(s, id[3], 2, arr, &g), LF_OK);
    static const struct {
        unsigned want[3];           /* earliest due first, 0-ended */
    } steps[] = {{{1, 3, 0}}, {{3, 0}}, {{2, 3, 0}}, {{2, 0}}};
    for (size_t k = 0; k < 4; k++) {
        if (k == 1) assert_int_equal(t_set_timers(s, id[1], 3, "[]", &g), LF_OK);
        if (k == 2) {                                   /* 2: moved to +0 s */
            t_timer(base, a, sizeof a);
            snprintf(arr, sizeof arr, "[%s]", a);
            assert_int_equal(t_set_timers(s, id[2], 3, arr, &g), LF_OK);
        }
        if (k == 3) assert_int_equal(t_delete(s, id[3], "issue_created", 2, &g), LF_OK);
        lf_list_query q = {.timed = true, .due_by = base + 2 * sec, .limit = 1000};
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.code, LF_OK);
        size_t n = 0;
        while (steps[k].want[n]) n++;
        assert_int_equal(p.n, n);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(p.ids[i], id[steps[k].want[redis ? n - 1 - i : i]]);
        t_page_reset(&p);
    }
    /* Without due_by: every record with timers, whenever they are due,
     * newest first, in pages (a walk over every record's index on memdb,
     * the tick's full listing a page at a time). */
    t_timer(base + 9 * sec, a, sizeof a);
    snprintf(arr, sizeof arr, "[%s]", a);
    assert_int_equal(t_set_timers(s, id[4], 2, arr, &g), LF_OK);
    for (size_t limit = 1; limit <= 3; limit += 2) {
        char seen[3][LF_ID_LEN + 1];
        lf_list_query all = {.timed = true, .limit = limit};
        assert_int_equal(t_list_all(s, all, seen, 3), 2);
        assert_string_equal(seen[0], id[4]);
        assert_string_equal(seen[1], id[2]);
    }
    /* A journal builds the same from its lines when it opens again. */
    if (strcmp(f->scheme, "file:") == 0) {
        s = reopen(f);
        lf_list_query q = {.timed = true, .due_by = base + 3 * sec, .limit = 1000};
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.n, 1);
        assert_string_equal(p.ids[0], id[2]);
        t_page_reset(&p);
    }
    t_got_reset(&g);
}

/* A page of the timers asks for a state's records oldest first
 * (lf_list_query.oldest_first): every store answers so, in pages of any
 * size after entered_after and up to entered_by -- Redis, at a store
 * handle's first ask about the state, after empty pages while it fills
 * the state's entered index. */
static void list_entered_oldest_first(void **state) {
    lf_store *s = ((fixture *)*state)->s;
    enum { N = 40 };
    char id[N][LF_ID_LEN + 1], seen[N][LF_ID_LEN + 1];
    int64_t at[N];
    t_queued(s, N, id, at);
    for (size_t limit = 1; limit <= 64; limit *= 4) {
        lf_list_query q = {.state = "task_queued", .entered_by = at[29],
                           .entered_after = limit > 1 ? at[4] : 0, .oldest_first = true,
                           .limit = limit};
        size_t from = limit > 1 ? 5 : 0;
        assert_int_equal(t_list_all(s, q, seen, N), 30 - from);
        for (size_t k = 0; k < 30 - from; k++) assert_string_equal(seen[k], id[from + k]);
    }
}

/* The same listing in pages (a page of GET /v1/timers, serve's tick over
 * many due): 120 records, five due at each of 24 times (ties), and a
 * record's timers changed between pages; every page at most its limit,
 * every live one once -- earliest first, ties by id, which the cursor
 * resumes in, on the embedded stores always and on Redis when asked
 * (oldest_first: on Redis through the empty pages of its first ask). */
static void list_due_in_pages(void **state) {
    fixture *f = *state;
    lf_store *s = f->s;
    bool redis = strcmp(f->scheme, "redis") == 0;
    t_got g = {0};
    char id[120][LF_ID_LEN + 1], a[256], arr[300], seen[120][LF_ID_LEN + 1];
    int64_t base = t_clock_us + 1000 * 1000000LL, sec = 1000000;
    for (unsigned i = 0; i < 120; i++) {
        t_id(id[i], 1000 + i);
        assert_int_equal(t_create(s, id[i], id[i], "acme/app", &g), LF_OK);
        t_timer(base + (int64_t)(i % 24) * sec, a, sizeof a);
        snprintf(arr, sizeof arr, "[%s]", a);
        assert_int_equal(t_set_timers(s, id[i], 2, arr, &g), LF_OK);
    }
    for (size_t limit = 1; limit <= 64; limit *= 4) {
        lf_list_query q = {.timed = true, .due_by = base + 30 * sec, .limit = limit,
                           .oldest_first = limit > 1 || !redis};
        assert_int_equal(t_list_all(s, q, seen, 120), 120);
        for (size_t k = 1; q.oldest_first && k < 120; k++) {
            unsigned x = (unsigned)strtoul(seen[k - 1] + 5, NULL, 16) - 1000,
                     y = (unsigned)strtoul(seen[k] + 5, NULL, 16) - 1000;
            /* t_id's ids grow with their number: by due, then by id */
            assert_true(x % 24 < y % 24 || (x % 24 == y % 24 && strcmp(seen[k - 1], seen[k]) < 0));
        }
    }
    /* due by +10 s: the 55 due at +0 .. +10 s; and from +10 s (a hint
     * Redis takes earliest first): the 70 due at +10 .. +23 s */
    lf_list_query q = {.timed = true, .due_by = base + 10 * sec, .limit = 7};
    assert_int_equal(t_list_all(s, q, seen, 120), 55);
    q = (lf_list_query){.timed = true, .due_by = base + 30 * sec, .due_after = base + 10 * sec,
                        .limit = 7};
    assert_int_equal(t_list_all(s, q, seen, 120), redis ? 120 : 70);
    q.oldest_first = true;
    assert_int_equal(t_list_all(s, q, seen, 120), 70);
    t_got_reset(&g);
}

/* ---- transitions ------------------------------------------------------- */

static void transition_cas(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g), LF_OK);
    assert_string_equal(g.state, "task_queued");
    assert_int_equal(g.version, 2);
    assert_int_equal(g.nhist, 2);
    assert_int_equal(g.seq, 2);

    /* A writer that read version 1 lost the race. */
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g),
                     LF_CONFLICT);
    assert_false(g.has_rec);
    /* A version from the future is a conflict too, not a gap. */
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 5, &g),
                     LF_CONFLICT);

    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_string_equal(g.state, "task_queued");
    assert_int_equal(g.version, 2);
    assert_int_equal(g.nhist, 2);
    assert_int_equal(last_seq(s), 2);

    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g), LF_OK);
    assert_int_equal(g.version, 3);
    assert_int_equal(g.seq, 3);
    t_got_reset(&g);
}

static void transition_unknown_id(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 9);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g),
                     LF_NOT_FOUND);
    assert_false(g.has_rec);
    assert_non_null(strstr(g.err, id));
    assert_int_equal(t_move(s, LF_ENTRY_DENIED, id, "issue_created", "merged", 1, &g),
                     LF_NOT_FOUND);
    assert_int_equal(t_delete(s, id, "issue_created", 1, &g), LF_NOT_FOUND);
    assert_int_equal(last_seq(s), 0);
    t_got_reset(&g);
}

static void denied_changes_nothing(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    t_audit a = {0};
    char id[LF_ID_LEN + 1], kind[32];

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    char *before = strdup(g.json);

    assert_int_equal(
        t_move(s, LF_ENTRY_DENIED, id, "issue_created", "task_queued", 1, &g), LF_OK);
    assert_int_equal(g.seq, 2);
    assert_true(g.has_rec);
    assert_int_equal(g.version, 1);
    assert_string_equal(g.state, "issue_created");

    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_string_equal(g.json, before);        /* byte for byte */
    free(before);

    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 2);
    t_line_str(a.lines[1], "kind", kind, sizeof kind);
    assert_string_equal(kind, "denied");
    assert_non_null(strstr(a.lines[1], "\"reason\":\"not today\""));
    assert_non_null(strstr(a.lines[1], "\"policy\":\"no-way\""));
    t_audit_reset(&a);

    /* The version did not move, so a transition from 1 still commits. */
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g), LF_OK);
    assert_int_equal(g.version, 2);
    t_got_reset(&g);
}

/* ---- delete ------------------------------------------------------------ */

static void delete_leaves_audit(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    t_audit a = {0};
    t_page p = {0};
    char id[LF_ID_LEN + 1], id2[LF_ID_LEN + 1], kind[32];

    t_id(id, 1);
    t_id(id2, 2);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g), LF_OK);
    /* A stale delete loses like any other write. */
    assert_int_equal(t_delete(s, id, "issue_created", 1, &g), LF_CONFLICT);
    assert_int_equal(t_delete(s, id, "task_queued", 2, &g), LF_OK);
    assert_int_equal(g.seq, 3);

    assert_int_equal(t_get(s, id, &g), LF_NOT_FOUND);
    assert_int_equal(t_find_ref(s, "r1", &g), LF_NOT_FOUND);
    t_list(s, NULL, NULL, 0, NULL, &p);
    assert_int_equal(p.n, 0);
    t_list(s, "task_queued", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 0);
    t_page_reset(&p);

    /* Gone means gone for writers too. */
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 3, &g),
                     LF_NOT_FOUND);
    assert_int_equal(t_delete(s, id, "task_queued", 3, &g), LF_NOT_FOUND);
    /* ... and its id is never handed out again. */
    assert_int_equal(t_create(s, id, "r9", "acme/app", &g), LF_CONFLICT);

    /* The ref is free for a new record. */
    assert_int_equal(t_create(s, id2, "r1", "acme/app", &g), LF_OK);
    assert_int_equal(t_find_ref(s, "r1", &g), LF_OK);
    assert_string_equal(g.id, id2);

    /* The history stays. */
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 3);
    t_line_str(a.lines[2], "kind", kind, sizeof kind);
    assert_string_equal(kind, "deleted");
    t_audit_reset(&a);
    assert_int_equal(t_verify_chain(s, NULL, 0), 4);
    t_got_reset(&g);
}

/* ---- list -------------------------------------------------------------- */

/* n records, r1..rn, created in order (so rn is the newest); the ones
 * in `move` (a bitmask over 1..n) then go to task_queued, oldest first. */
static void populate(lf_store *s, unsigned n, unsigned move) {
    t_got g = {0};
    char id[LF_ID_LEN + 1], ref[32];

    for (unsigned i = 1; i <= n; i++) {
        t_id(id, i);
        snprintf(ref, sizeof ref, "r%u", i);
        assert_int_equal(t_create(s, id, ref, i % 2 ? "acme/odd" : "acme/even", &g),
                         LF_OK);
    }
    for (unsigned i = 1; i <= n; i++) {
        if (!(move & (1u << i))) continue;
        t_id(id, i);
        assert_int_equal(t_transition(s, id, "issue_created", "task_queued", 1, &g),
                         LF_OK);
    }
    t_got_reset(&g);
}

static void assert_newest_first(const t_page *p) {
    for (size_t i = 1; i < p->n; i++)
        assert_true(strcmp(p->updated[i - 1], p->updated[i]) >= 0);
}

static void list_by_state(void **state) {
    lf_store *s = S(state);
    t_page p = {0};
    char id[LF_ID_LEN + 1];

    populate(s, 6, (1u << 2) | (1u << 5));

    t_list(s, "task_queued", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 2);
    t_id(id, 5);                    /* moved last: newest */
    assert_string_equal(p.ids[0], id);
    t_id(id, 2);
    assert_string_equal(p.ids[1], id);
    assert_null(p.cursor);

    t_list(s, "issue_created", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 4);
    unsigned want[] = {6, 4, 3, 1};
    for (size_t i = 0; i < 4; i++) {
        t_id(id, want[i]);
        assert_string_equal(p.ids[i], id);
    }
    assert_newest_first(&p);

    t_list(s, "issue_created", NULL, 2, NULL, &p);
    assert_int_equal(p.n, 2);
    t_id(id, 6);
    assert_string_equal(p.ids[0], id);
    assert_non_null(p.cursor);

    t_list(s, "merged", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 0);
    assert_null(p.cursor);

    /* By repo, and by both. */
    t_list(s, NULL, "acme/even", 0, NULL, &p);
    assert_int_equal(p.n, 3);
    for (size_t i = 0; i < p.n; i++) {
        unsigned k = (unsigned)strtoul(p.ids[i] + 5, NULL, 16);
        assert_int_equal(k % 2, 0);
    }
    t_list(s, "issue_created", "acme/odd", 0, NULL, &p);
    assert_int_equal(p.n, 2);       /* r1, r3 (r5 moved) */
    t_id(id, 3);
    assert_string_equal(p.ids[0], id);
    t_page_reset(&p);
}

static void list_pagination(void **state) {
    lf_store *s = S(state);
    t_page p = {0};
    unsigned seen[32] = {0};
    size_t total = 0, pages = 0;
    char last[LF_TS_LEN + 1] = "9999";
    char *cursor = NULL;

    populate(s, 11, (1u << 3) | (1u << 4) | (1u << 9));

    do {
        t_list(s, NULL, NULL, 4, cursor, &p);
        free(cursor);
        cursor = p.cursor ? strdup(p.cursor) : NULL;
        pages++;
        assert_true(p.n <= 4);
        for (size_t i = 0; i < p.n; i++) {
            unsigned k = (unsigned)strtoul(p.ids[i] + 5, NULL, 16);
            assert_true(k >= 1 && k <= 11);
            seen[k]++;
            /* Newest first across page boundaries too. */
            assert_true(strcmp(last, p.updated[i]) >= 0);
            memcpy(last, p.updated[i], sizeof last);
            total++;
        }
    } while (cursor);
    assert_int_equal(pages, 3);     /* 4 + 4 + 3 */
    assert_int_equal(total, 11);
    for (unsigned k = 1; k <= 11; k++) assert_int_equal(seen[k], 1);

    /* A page size that divides the set: the last full page may or may
     * not carry a cursor, but what follows it must be empty. */
    memset(seen, 0, sizeof seen);
    total = 0;
    do {
        t_list(s, "issue_created", NULL, 4, cursor, &p);
        free(cursor);
        cursor = p.cursor ? strdup(p.cursor) : NULL;
        for (size_t i = 0; i < p.n; i++) {
            unsigned k = (unsigned)strtoul(p.ids[i] + 5, NULL, 16);
            seen[k]++;
            total++;
        }
    } while (cursor);
    assert_int_equal(total, 8);
    assert_int_equal(seen[3] + seen[4] + seen[9], 0);
    t_page_reset(&p);
}

/* ---- audit ------------------------------------------------------------- */

/* Builds a small mixed history: 2 records, transitions, a denial, a
 * deletion, a policy_loaded. Returns the number of entries. */
static uint64_t history(lf_store *s) {
    t_got g = {0};
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];
    t_id(a, 1);
    t_id(b, 2);
    assert_int_equal(t_policy_loaded(s, &g), LF_OK);                 /* 1 */
    assert_false(g.has_rec);
    assert_int_equal(t_create(s, a, "ra", "acme/app", &g), LF_OK);   /* 2 */
    assert_int_equal(t_create(s, b, "rb", "acme/app", &g), LF_OK);   /* 3 */
    assert_int_equal(t_transition(s, a, "issue_created", "task_queued", 1, &g),
                     LF_OK);                                          /* 4 */
    assert_int_equal(t_move(s, LF_ENTRY_DENIED, b, "issue_created", "merged", 1, &g),
                     LF_OK);                           /* 5 */
    assert_int_equal(t_transition(s, a, "task_queued", "pr_created", 2, &g),
                     LF_OK);                                          /* 6 */
    assert_int_equal(t_delete(s, b, "issue_created", 1, &g), LF_OK); /* 7 */
    assert_int_equal(t_transition(s, a, "pr_created", "ci_pending", 3, &g),
                     LF_OK);                                          /* 8 */
    assert_int_equal(g.seq, 8);
    t_got_reset(&g);
    return 8;
}

static void audit_pages(void **state) {
    lf_store *s = S(state);
    t_audit a = {0};
    uint64_t n = history(s), after = 0, want = 1;
    size_t pages = 0;

    t_audit_page(s, NULL, 0, 0, &a);
    assert_int_equal(a.n, n);
    assert_int_equal(a.last_seq, n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(t_line_seq(a.lines[i]), i + 1);
        assert_null(memchr(a.lines[i], '\n', a.lens[i]));
        assert_int_equal(strlen(a.lines[i]), a.lens[i]);
    }

    for (;;) {
        t_audit_page(s, NULL, after, 3, &a);
        if (a.n == 0) break;
        pages++;
        assert_true(a.n <= 3);
        for (size_t i = 0; i < a.n; i++) assert_int_equal(t_line_seq(a.lines[i]), want++);
        assert_int_equal(a.last_seq, want - 1);
        after = a.last_seq;
    }
    assert_int_equal(pages, 3);
    assert_int_equal(want, n + 1);

    /* Past the end: nothing. */
    t_audit_page(s, NULL, n, 10, &a);
    assert_int_equal(a.n, 0);
    t_audit_reset(&a);
}

static void audit_per_record(void **state) {
    lf_store *s = S(state);
    t_audit a = {0};
    char id[LF_ID_LEN + 1], rid[LF_ID_LEN + 1];
    uint64_t want_a[] = {2, 4, 6, 8}, want_b[] = {3, 5, 7};

    history(s);
    t_id(id, 1);
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 4);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(t_line_seq(a.lines[i]), want_a[i]);
        t_line_str(a.lines[i], "record_id", rid, sizeof rid);
        assert_string_equal(rid, id);
    }
    assert_int_equal(a.last_seq, 8);

    /* Paged: after is a global seq. */
    t_audit_page(s, id, 0, 2, &a);
    assert_int_equal(a.n, 2);
    assert_int_equal(a.last_seq, 4);
    t_audit_page(s, id, a.last_seq, 2, &a);
    assert_int_equal(a.n, 2);
    assert_int_equal(t_line_seq(a.lines[0]), 6);
    assert_int_equal(a.last_seq, 8);
    t_audit_page(s, id, a.last_seq, 2, &a);
    assert_int_equal(a.n, 0);

    /* A deleted record keeps its history. */
    t_id(id, 2);
    t_audit_page(s, id, 0, 0, &a);
    assert_int_equal(a.n, 3);
    for (size_t i = 0; i < a.n; i++) assert_int_equal(t_line_seq(a.lines[i]), want_b[i]);
    t_audit_reset(&a);

    /* An id the store never saw. */
    t_id(id, 77);
    lf_store_audit(s, id, 0, 0, t_audit_cb, &a);
    t_settle(&a.calls);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.code, LF_NOT_FOUND);
    t_audit_reset(&a);
}

static void chain_verifies(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    t_audit a = {0};
    char prev[LF_HASH_LEN + 1] = LF_GENESIS, field[LF_HASH_LEN + 1];

    uint64_t n = history(s);
    /* lf_chain_feed also insists on seq = 1, 2, 3 ... */
    assert_int_equal(t_verify_chain(s, NULL, 0), (long)n);

    /* ... and the commit callback reports the hash that went in. */
    t_audit_page(s, NULL, 0, 0, &a);
    for (size_t i = 0; i < a.n; i++) {
        t_line_str(a.lines[i], "prev", field, sizeof field);
        assert_string_equal(field, prev);
        t_line_str(a.lines[i], "hash", prev, sizeof prev);
    }
    char id[LF_ID_LEN + 1];
    t_id(id, 3);
    assert_int_equal(t_create(s, id, "rc", "acme/app", &g), LF_OK);
    assert_int_equal(g.seq, n + 1);
    t_audit_page(s, NULL, n, 0, &a);
    assert_int_equal(a.n, 1);
    t_line_str(a.lines[0], "prev", field, sizeof field);
    assert_string_equal(field, prev);
    t_line_str(a.lines[0], "hash", field, sizeof field);
    assert_string_equal(field, g.hash);
    t_audit_reset(&a);
    t_got_reset(&g);
}

/* Failed commits must not burn a seq: the log stays contiguous. */
static void refusals_keep_seq_contiguous(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];

    t_id(a, 1);
    t_id(b, 2);
    assert_int_equal(t_create(s, a, "ra", "acme/app", &g), LF_OK);
    assert_int_equal(t_create(s, b, "ra", "acme/app", &g), LF_DUPLICATE_REF);
    assert_int_equal(t_transition(s, b, "issue_created", "task_queued", 1, &g),
                     LF_NOT_FOUND);
    assert_int_equal(t_transition(s, a, "issue_created", "task_queued", 0, &g),
                     LF_CONFLICT);
    assert_int_equal(t_create(s, b, "rb", "acme/app", &g), LF_OK);
    assert_int_equal(g.seq, 2);
    assert_int_equal(t_verify_chain(s, NULL, 0), 2);
    t_got_reset(&g);
}

/* ---- idempotency keys and aliases ------------------------------------- */

static lf_code t_find_key(lf_store *s, const char *key, t_got *g) {
    t_got_reset(g);
    lf_store_find_key(s, key, t_store_cb, g);
    t_settle(&g->calls);
    assert_int_equal(g->calls, 1);
    return g->code;
}

/* A key is spent by the entry that carries it, whatever its kind; the
 * refusal costs no seq; find_key answers with that entry and the record
 * as it is now. */
static void idempotency_key_once(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];
    lf_entry e = {0};

    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    e.record_id = id;
    e.kind = LF_ENTRY_TRANSITION;
    e.version = 2;
    e.from_state = "issue_created";
    e.to_state = "task_queued";
    e.trigger = "github.delivery";
    e.actor = "tester";
    e.idempotency_key = "delivery-1";
    t_stamp(e.timestamp);
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(g.seq, 2);

    /* The same delivery again, even as another kind of entry. */
    e.version = 3;
    e.from_state = "task_queued";
    e.to_state = "pr_created";
    t_stamp(e.timestamp);
    assert_int_equal(t_commit(s, &e, &g), LF_CONFLICT);
    assert_non_null(strstr(g.err, "delivery-1"));
    e.kind = LF_ENTRY_POLICY_LOADED;
    e.record_id = NULL;
    e.policy_set = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(t_commit(s, &e, &g), LF_CONFLICT);

    assert_int_equal(t_find_key(s, "delivery-1", &g), LF_OK);
    assert_int_equal(g.seq, 2);
    assert_true(g.has_rec);
    assert_string_equal(g.id, id);
    assert_string_equal(g.state, "task_queued");
    assert_int_equal(t_find_key(s, "delivery-2", &g), LF_NOT_FOUND);

    /* A global entry with a key: found, with no record. */
    e.idempotency_key = "reload-7";
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    assert_int_equal(g.seq, 3);         /* the refusals cost nothing */
    assert_int_equal(t_find_key(s, "reload-7", &g), LF_OK);
    assert_int_equal(g.seq, 3);
    assert_false(g.has_rec);
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    t_got_reset(&g);
}

static lf_code t_add_alias(lf_store *s, const char *id, const char *alias,
                           uint64_t version, t_got *g) {
    char changes[128];
    lf_entry e = {0};
    snprintf(changes, sizeof changes, "{\"aliases\":[\"%s\"]}", alias);
    e.record_id = id;
    e.kind = LF_ENTRY_TRANSITION;
    e.version = version + 1;
    e.from_state = version % 2 ? "issue_created" : "task_queued";
    e.to_state = version % 2 ? "task_queued" : "issue_created";
    e.trigger = "pr.opened";
    e.actor = "tester";
    e.changes = changes;
    t_stamp(e.timestamp);
    return t_commit(s, &e, g);
}

/* find_by_ref by alias: the record that added it last, while it lives. */
static void aliases_find_records(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];

    t_id(a, 1);
    t_id(b, 2);
    assert_int_equal(t_create(s, a, "ra", "acme/app", &g), LF_OK);
    assert_int_equal(t_create(s, b, "rb", "acme/app", &g), LF_OK);
    assert_int_equal(t_add_alias(s, a, "pr:acme/app#5", 1, &g), LF_OK);
    assert_int_equal(t_find_ref(s, "pr:acme/app#5", &g), LF_OK);
    assert_string_equal(g.id, a);
    assert_non_null(strstr(g.json, "\"aliases\":[\"pr:acme/app#5\"]"));
    assert_int_equal(t_find_ref(s, "ra", &g), LF_OK);   /* the ref still works */
    assert_string_equal(g.id, a);

    /* The latest claim wins. */
    assert_int_equal(t_add_alias(s, b, "pr:acme/app#5", 1, &g), LF_OK);
    assert_int_equal(t_find_ref(s, "pr:acme/app#5", &g), LF_OK);
    assert_string_equal(g.id, b);
    /* An alias is taken like a ref: no new record may claim it as one. */
    assert_int_equal(
        t_create(s, "loop-00000000000000ff", "pr:acme/app#5", "acme/app", &g),
        LF_DUPLICATE_REF);

    /* A tombstone releases what names it. */
    assert_int_equal(t_delete(s, b, "task_queued", 2, &g), LF_OK);
    assert_int_equal(t_find_ref(s, "pr:acme/app#5", &g), LF_NOT_FOUND);
    assert_int_equal(t_find_ref(s, "rb", &g), LF_NOT_FOUND);
    assert_int_equal(t_find_ref(s, "ra", &g), LF_OK);
    t_got_reset(&g);
}

/* Integers beyond 2^53 in the record's fields and in metadata come back
 * as written: the store never rounds them through a double. */
static void integers_stay_exact(void **state) {
    lf_store *s = S(state);
    t_got g = {0};
    char id[LF_ID_LEN + 1];

    t_id(id, 7);
    assert_int_equal(t_create_rec(s, id,
                                  "{\"ref\":\"big\",\"ref_number\":9007199254740993,"
                                  "\"repo\":null,\"auto_merge\":false,\"labels\":{},"
                                  "\"metadata\":{\"id\":9223372036854775807},"
                                  "\"workflow\":\"loopforge\"}",
                                  "{\"ref\":\"big\",\"repo\":null}", &g),
                     LF_OK);
    lf_entry m = {0};
    m.record_id = id;
    m.kind = LF_ENTRY_TRANSITION;
    m.version = 2;
    m.from_state = "issue_created";
    m.to_state = "task_queued";
    m.trigger = "t";
    m.actor = "tester";
    t_stamp(m.timestamp);
    m.metadata = "{\"run\":9007199254740995}";
    m.changes = "{\"pr_number\":9007199254740997}";
    assert_int_equal(t_commit(s, &m, &g), LF_OK);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_non_null(strstr(g.json, "\"ref_number\":9007199254740993"));
    assert_non_null(strstr(g.json, "\"pr_number\":9007199254740997"));
    assert_non_null(strstr(g.json, "\"metadata\":{\"id\":9223372036854775807}"));
    assert_non_null(strstr(g.json, "\"metadata\":{\"run\":9007199254740995}"));
    t_got_reset(&g);
}

/* Each test once per backend, named after it. */
#define EACH(f)                                                                          \
    {"memory: " #f, f, setup, teardown, (void *)"memory:"},                              \
        {"file: " #f, f, setup, teardown, (void *)"file:"}, {                            \
        "redis: " #f, f, setup, teardown, (void *)"redis"                                \
    }

/* ---- list under churn ----------------------------------------------------- */

typedef struct churn_rec {
    char id[LF_ID_LEN + 1], updated[LF_TS_LEN + 1];
    const char *repo;
    unsigned step;
    bool deleted;
} churn_rec;

static const char *const churn_path[] = {"issue_created", "task_queued", "pr_created",
                                         "ci_pending", "ci_passed", "merged"};

static int churn_newest_first(const void *a, const void *b) {
    const churn_rec *x = a, *y = b;
    int c = strcmp(y->updated, x->updated);
    return c ? c : strcmp(y->id, x->id);
}

/* Every page of (state, repo), walked with `limit` per page, is exactly
 * the matching live records newest first. */
static void churn_check(lf_store *s, churn_rec *recs, size_t n, const char *state,
                        const char *repo, size_t limit) {
    churn_rec *want = calloc(n, sizeof *want);
    size_t nw = 0, at = 0;
    for (size_t i = 0; i < n; i++)
        if (!recs[i].deleted && (!state || !strcmp(churn_path[recs[i].step], state)) &&
            (!repo || !strcmp(recs[i].repo, repo)))
            want[nw++] = recs[i];
    qsort(want, nw, sizeof *want, churn_newest_first);
    t_page p = {0};
    char *cursor = NULL;
    size_t pages = 0;
    do {
        if (++pages > nw / limit + 2) fail_msg("%s/%s: the pages never end", state, repo);
        t_list(s, state, repo, limit, cursor, &p);
        free(cursor);
        cursor = p.cursor ? strdup(p.cursor) : NULL;
        for (size_t i = 0; i < p.n; i++, at++) {
            if (at >= nw) fail_msg("%s/%s: more records than live ones", state, repo);
            assert_string_equal(p.ids[i], want[at].id);
        }
    } while (cursor);
    assert_int_equal(at, nw);
    t_page_reset(&p);
    free(want);
}

/* Records moved in a shuffled order, some by a writer whose clock is
 * behind (its entries land in the middle of the order), some deleted:
 * the list indexes follow exactly, through their compactions -- checked
 * after every move, so memdb's squeezes are seen under way too (a few
 * entries a push, ix_squeeze: a listing in the middle of one reads past
 * its hole). */
static void list_under_churn(void **state) {
    lf_store *s = S(state);
    enum { N = 150 };
    churn_rec recs[N];
    t_got g = {0};
    unsigned seed = 7;
    for (unsigned i = 0; i < N; i++) {
        char ref[32];
        t_id(recs[i].id, 1000 + i);
        snprintf(ref, sizeof ref, "churn%u", i);
        recs[i].repo = i % 3 ? "acme/a" : "acme/b";
        recs[i].step = 0;
        recs[i].deleted = false;
        assert_int_equal(t_create(s, recs[i].id, ref, recs[i].repo, &g), LF_OK);
        lf_ts_format(t_clock_us, recs[i].updated);
    }
    for (unsigned k = 0; k < 4 * N; k++) {
        seed = seed * 1103515245u + 12345u;
        churn_rec *r = &recs[(seed >> 8) % N];
        if (r->deleted || r->step + 1 >= sizeof churn_path / sizeof *churn_path) continue;
        if ((seed >> 20) % 5 == 0) t_clock_us -= 30 * 1000000LL;    /* a clock behind */
        assert_int_equal(t_transition(s, r->id, churn_path[r->step], churn_path[r->step + 1],
                                      r->step + 1, &g),
                         LF_OK);
        r->step++;
        lf_ts_format(t_clock_us, r->updated);   /* the entry's time (t_stamp) */
        churn_check(s, recs, N, NULL, NULL, 7);
        churn_check(s, recs, N, churn_path[r->step], NULL, 5);
        if ((seed >> 12) % 97 == 0) {
            lf_entry e = {.record_id = r->id, .kind = LF_ENTRY_DELETED,
                          .version = r->step + 2, .actor = "t", .trigger = "deleted",
                          .metadata = "{}"};
            t_stamp(e.timestamp);
            assert_int_equal(t_commit(s, &e, &g), LF_OK);
            r->deleted = true;
        }
    }
    for (unsigned i = 0; i < N; i++) {
        if (recs[i].deleted) continue;
        assert_int_equal(t_get(s, recs[i].id, &g), LF_OK);
        cJSON *j = cJSON_Parse(g.json);
        snprintf(recs[i].updated, sizeof recs[i].updated, "%s",
                 cJSON_GetStringValue(cJSON_GetObjectItem(j, "updated_at")));
        cJSON_Delete(j);
    }
    t_got_reset(&g);
    churn_check(s, recs, N, NULL, NULL, 7);
    churn_check(s, recs, N, NULL, NULL, 1000);
    for (size_t k = 0; k < sizeof churn_path / sizeof *churn_path; k++) {
        churn_check(s, recs, N, churn_path[k], NULL, 5);
        churn_check(s, recs, N, churn_path[k], "acme/b", 3);
    }
    churn_check(s, recs, N, NULL, "acme/a", 9);
}

/* Listings in the middle of a squeeze: records moved between two states
 * in time order (every entry appended at the end of its indexes), the
 * lists checked after every move. memdb squeezes a list index's stale
 * entries out a few at each push (ix_squeeze), so many of these listings
 * land in the middle of one, where the entries already kept sit below a
 * hole and those not looked at yet above it: reading the hole would list
 * records twice; the same for a state's entered index, oldest first.
 * (list_under_churn's clocks behind finish a squeeze at
 * once, an entry going into its middle; Redis does not squeeze.) */
static void list_while_squeezed(void **state) {
    lf_store *s = S(state);
    enum { N = 200, MOVES = 1200 };
    churn_rec recs[N];
    uint64_t version[N];
    t_got g = {0};
    for (unsigned i = 0; i < N; i++) {
        t_id(recs[i].id, 3000 + i);
        recs[i].repo = "acme/a";
        recs[i].step = 0;
        recs[i].deleted = false;
        assert_int_equal(t_create(s, recs[i].id, recs[i].id, recs[i].repo, &g), LF_OK);
        lf_ts_format(t_clock_us, recs[i].updated);
        version[i] = 1;
    }
    for (unsigned k = 0; k < MOVES; k++) {
        unsigned i = (k * 7) % N;
        churn_rec *r = &recs[i];
        unsigned to = r->step == 3 ? 4 : 3;     /* ci_pending <-> ci_passed */
        assert_int_equal(t_transition(s, r->id, churn_path[r->step], churn_path[to],
                                      version[i]++, &g),
                         LF_OK);
        r->step = to;
        lf_ts_format(t_clock_us, r->updated);
        churn_check(s, recs, N, NULL, NULL, 50);
        churn_check(s, recs, N, churn_path[to], NULL, 40);
        churn_check(s, recs, N, NULL, "acme/a", 60);
        /* the state's entered index (squeezed as the others): oldest first */
        static char seen[N][LF_ID_LEN + 1];
        churn_rec want[N];
        size_t nw = 0;
        for (unsigned j = 0; j < N; j++)
            if (recs[j].step == to) want[nw++] = recs[j];
        qsort(want, nw, sizeof *want, churn_newest_first);
        lf_list_query q = {.state = churn_path[to], .entered_by = t_clock_us, .limit = 30};
        assert_int_equal(t_list_all(s, q, seen, N), nw);
        for (size_t j = 0; j < nw; j++) assert_string_equal(seen[j], want[nw - 1 - j].id);
    }
    t_got_reset(&g);
}

/* Budgets count a state's transitions by actor ('a') and by the person
 * behind them ('p'), exactly, on every store: the common case (the actor
 * acts for itself) counts once under each, and an actor acting for
 * someone else counts for the actor and for that someone only. */
static void budget_counts(void **state) {
    lf_store *s = S(state);
    int64_t oldest, t1 = t_move_as(s, 1, "bot", NULL);
    int64_t t2 = t_move_as(s, 2, "bot", "alice");
    int64_t t3 = t_move_as(s, 3, "carol", "bot");
    (void)t2;

    assert_int_equal(t_count_of(s, 'a', "bot", 0, &oldest), 2);
    assert_int_equal(oldest, t1);
    assert_int_equal(t_count_of(s, 'p', "bot", 0, &oldest), 2);
    assert_int_equal(oldest, t1);
    assert_int_equal(t_count_of(s, 'p', "alice", 0, NULL), 1);
    assert_int_equal(t_count_of(s, 'a', "alice", 0, NULL), 0);
    assert_int_equal(t_count_of(s, 'a', "carol", 0, NULL), 1);
    assert_int_equal(t_count_of(s, 'p', "carol", 0, NULL), 0);
    /* A window that starts after the first: the oldest moves on. */
    assert_int_equal(t_count_of(s, 'p', "bot", t1 + 1, &oldest), 1);
    assert_int_equal(oldest, t3);
    assert_int_equal(t_count_of(s, 'a', "bot", t1 + 1, NULL), 1);
    assert_int_equal(t_count_of(s, 'a', "nobody", 0, &oldest), 0);
}

/* A commit carries the budgets and open-records caps the engine counted
 * (core/entry.h), and the store checks them again as it writes: one that
 * is reached fails LF_DENIED and writes nothing, on every store -- the
 * actor's counter, the person's (on Redis partly under the member both
 * share), a window that starts later, and a creator's open records. */
static void limits_checked_as_committed(void **state) {
    lf_store *s = S(state);
    char id[LF_ID_LEN + 1], rec[256];
    t_got g = {0};
    t_move_as(s, 1, "bot", NULL);
    int64_t t2 = t_move_as(s, 2, "bot", NULL);
    t_id(id, 10);
    assert_int_equal(t_create(s, id, "c10", "acme/app", &g), LF_OK);
    long before = t_verify_chain(s, NULL, 0);
    const struct {
        char kind;
        int index, max;
        int64_t since;
        lf_code want;
    } cases[] = {
        {'c', 0, 2, 0, LF_DENIED},          /* bot moved 2 */
        {'c', 1, 2, 0, LF_DENIED},          /* and so did the person behind */
        {'c', 0, 1, t2 + 1, LF_OK},         /* none since the second */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lf_entry e;
        t_entry(&e, LF_ENTRY_TRANSITION, id, 2, "issue_created", "task_queued", "test.moved");
        e.actor = "bot";
        e.limits[0] = (lf_entry_limit){.kind = cases[i].kind, .index = cases[i].index,
                                       .max = cases[i].max, .since = cases[i].since};
        e.nlimits = 1;
        assert_int_equal(t_commit(s, &e, &g), cases[i].want);
        if (cases[i].want == LF_OK) break;
        assert_int_equal(t_verify_chain(s, NULL, 0), before);     /* nothing written */
    }
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_non_null(strstr(g.json, "\"state\":\"task_queued\""));

    /* bot has two records of workflow task open: a third past a cap of 2 */
    for (unsigned n = 20; n < 23; n++) {
        t_id(id, n);
        snprintf(rec, sizeof rec,
                 "{\"ref\":\"o%u\",\"workflow\":\"task\","
                 "\"owner\":{\"actor\":\"bot\",\"behind\":\"bot\"}}", n);
        lf_entry e;
        t_created(&e, id, rec, NULL);
        e.to_state = "open";
        e.actor = "bot";
        e.limits[0] = (lf_entry_limit){.kind = 'o', .index = n == 22 ? 1 : 0, .max = 2};
        e.nlimits = 1;
        assert_int_equal(t_commit(s, &e, &g), n == 22 ? LF_DENIED : LF_OK);
    }
    assert_int_equal(t_get(s, id, &g), LF_NOT_FOUND);
}

/* A children gate is checked as the parent commits (core/entry.h): a
 * child outside the gate's states fails it LF_DENIED and nothing is
 * written; once every child is there (a deleted one no longer counts),
 * it passes -- on every store. */
static void children_gate_checked_as_committed(void **state) {
    lf_store *s = S(state);
    char p[LF_ID_LEN + 1], c[3][LF_ID_LEN + 1], rec[256];
    char *const gate[] = {"task_queued", "closed"};
    t_got g = {0};
    t_id(p, 30);
    assert_int_equal(t_create(s, p, "p30", "acme/app", &g), LF_OK);
    for (unsigned i = 0; i < 3; i++) {
        t_id(c[i], 31 + i);
        snprintf(rec, sizeof rec,
                 "{\"ref\":\"c%u\",\"workflow\":\"loopforge\",\"parent\":\"%s\"}", 31 + i, p);
        assert_int_equal(t_create_rec(s, c[i], rec, NULL, &g), LF_OK);
    }
    assert_int_equal(t_transition(s, c[0], "issue_created", "task_queued", 1, &g), LF_OK);
    lf_entry e;
    long before = t_verify_chain(s, NULL, 0);
    for (int round = 0; round < 3; round++) {
        t_entry(&e, LF_ENTRY_TRANSITION, p, 2, "issue_created", "task_queued", "test.moved");
        e.limits[0] = (lf_entry_limit){.kind = 'k', .states = gate, .nstates = 2};
        e.nlimits = 1;
        if (round == 0) {           /* c1 and c2 are not there */
            assert_int_equal(t_commit(s, &e, &g), LF_DENIED);
            assert_int_equal(t_transition(s, c[1], "issue_created", "task_queued", 1, &g), LF_OK);
        } else if (round == 1) {    /* c2 still is not */
            assert_int_equal(t_commit(s, &e, &g), LF_DENIED);
            assert_int_equal(t_delete(s, c[2], "issue_created", 1, &g), LF_OK);
        } else {
            assert_int_equal(t_commit(s, &e, &g), LF_OK);
        }
    }
    assert_int_equal(t_verify_chain(s, NULL, 0), before + 3);   /* the moves, the tombstone */
    t_got_reset(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        EACH(create_then_get),
        EACH(duplicate_id_refused),
        EACH(duplicate_ref_refused),
        EACH(malformed_create_refused),
        EACH(list_entered_by),
        {"memory: entered_index_made_in_steps", entered_index_made_in_steps, setup, teardown,
         (void *)"memory:"},
        {"memory: entered_index_changed_while_merged", entered_index_changed_while_merged,
         setup, teardown, (void *)"memory:"},
        EACH(list_due_timers),
        EACH(list_due_in_pages),
        EACH(list_entered_oldest_first),
        EACH(transition_cas),
        EACH(transition_unknown_id),
        EACH(denied_changes_nothing),
        EACH(delete_leaves_audit),
        EACH(list_by_state),
        EACH(list_pagination),
        EACH(audit_pages),
        EACH(audit_per_record),
        EACH(chain_verifies),
        EACH(refusals_keep_seq_contiguous),
        EACH(idempotency_key_once),
        EACH(integers_stay_exact),
        EACH(aliases_find_records),
        EACH(list_under_churn),
        {"memory: list_while_squeezed", list_while_squeezed, setup, teardown,
         (void *)"memory:"},
        {"file: list_while_squeezed", list_while_squeezed, setup, teardown, (void *)"file:"},
        EACH(budget_counts),
        EACH(limits_checked_as_committed),
        EACH(children_gate_checked_as_committed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
