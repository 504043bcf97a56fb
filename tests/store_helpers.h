/* store_helpers.h -- what test_store.c, test_journal.c and test_redis.c
 * share: entries built by hand, callbacks that copy what a store hands
 * them (its pointers die with the callback), a deterministic clock, chain
 * checks and temp directories.
 *
 * Asynchronous stores (redis) complete on an event base: when t_base is
 * set, every helper runs it until the callback has fired (t_settle), and
 * the callbacks count, so a second call for one request is caught.
 *
 * Header-only (static inline functions) because the Makefile builds each
 * tests/test_*.c as its own program. Include after <cmocka.h>. */
#ifndef LF_TEST_STORE_HELPERS_H
#define LF_TEST_STORE_HELPERS_H

#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <event2/event.h>

#include "../src/store/store.h"

/* ---- waiting for asynchronous stores ------------------------------------ */

static struct event_base *t_base;   /* NULL: the store completes inline */
static bool t_timed_out;

static inline void t_watchdog_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    t_timed_out = true;
}

/* Runs the event base until *calls is non-zero (and a little more, so a
 * callback that fires twice has the chance to). A store that never calls
 * back fails the test after 30 s instead of hanging it. */
static inline void t_settle(const int *calls) {
    if (!t_base) return;
    struct event *dog = evtimer_new(t_base, t_watchdog_cb, NULL);
    struct timeval tv = {30, 0};
    t_timed_out = false;
    evtimer_add(dog, &tv);
    while (!*calls && !t_timed_out)
        if (event_base_loop(t_base, EVLOOP_ONCE) != 0) break;
    event_free(dog);
    event_base_loop(t_base, EVLOOP_NONBLOCK);
    if (!*calls) fail_msg("the store never called back");
}

/* ---- a clock the tests control ----------------------------------------- */

/* Every entry gets a timestamp one second after the previous one, so
 * "newest updated_at first" has exactly one right answer. */
static int64_t t_clock_us = 1795000000LL * 1000000;

static inline void t_stamp(char out[LF_TS_LEN + 1]) {
    t_clock_us += 1000000;
    lf_ts_format(t_clock_us, out);
}

/* ---- capturing results ------------------------------------------------- */

typedef struct t_got {
    int calls;
    lf_code code;
    char err[512];
    bool has_rec;
    char id[LF_ID_LEN + 1];
    char state[64];
    uint64_t version;
    size_t nhist;
    char *json;                     /* the record as JSON, malloc'd */
    uint64_t seq;                   /* the sealed entry's, commit only */
    char hash[LF_HASH_LEN + 1];
    char ts[LF_TS_LEN + 1];         /* its timestamp */
} t_got;

static inline void t_got_reset(t_got *g) {
    free(g->json);
    memset(g, 0, sizeof *g);
}

static inline void t_store_cb(lf_code code, const char *err, const lf_record *rec,
                              const lf_entry *e, void *arg) {
    t_got *g = arg;
    int calls = g->calls;
    t_got_reset(g);
    g->calls = calls + 1;
    g->code = code;
    if (err) snprintf(g->err, sizeof g->err, "%s", err);
    if (rec) {
        g->has_rec = true;
        snprintf(g->id, sizeof g->id, "%s", rec->id);
        snprintf(g->state, sizeof g->state, "%s", rec->state);
        g->version = rec->version;
        g->nhist = rec->nhist;
        g->json = lf_record_json(rec);
    }
    if (e) {
        g->seq = e->seq;
        memcpy(g->hash, e->hash, sizeof g->hash);
        memcpy(g->ts, e->timestamp, sizeof g->ts);
    }
}

/* ---- entries ----------------------------------------------------------- */

static inline void t_id(char out[LF_ID_LEN + 1], unsigned n) {
    snprintf(out, LF_ID_LEN + 1, "loop-%016x", n);
}

/* Commits e and returns the code; the callback must fire exactly once. */
static inline lf_code t_commit(lf_store *s, lf_entry *e, t_got *g) {
    t_got_reset(g);
    lf_store_commit(s, e, t_store_cb, g);
    t_settle(&g->calls);
    assert_int_equal(g->calls, 1);
    return g->code;
}

/* A created entry of record id with the record fields `rec` and history
 * metadata `meta` (JSON object texts), by tester, stamped by the test
 * clock: the rest is the caller's to set before committing it. */
static inline void t_created(lf_entry *e, const char *id, const char *rec, const char *meta) {
    memset(e, 0, sizeof *e);
    e->record_id = id;
    e->kind = LF_ENTRY_CREATED;
    e->version = 1;
    e->to_state = "issue_created";
    e->trigger = "created";
    e->actor = "tester";
    t_stamp(e->timestamp);
    e->metadata = meta;
    e->record = rec;
}

static inline lf_code t_create_rec(lf_store *s, const char *id, const char *rec,
                                   const char *meta, t_got *g) {
    lf_entry e;
    t_created(&e, id, rec, meta);
    return t_commit(s, &e, g);
}

static inline lf_code t_create(lf_store *s, const char *id, const char *ref,
                               const char *repo, t_got *g) {
    char rec[512], meta[256];
    snprintf(rec, sizeof rec,
             "{\"ref\":\"%s\",\"ref_number\":42,\"repo\":\"%s\","
             "\"auto_merge\":false,\"labels\":{\"team\":\"core\"},"
             "\"metadata\":{},\"workflow\":\"loopforge\"}",
             ref, repo);
    snprintf(meta, sizeof meta, "{\"ref\":\"%s\",\"repo\":\"%s\"}", ref, repo);
    return t_create_rec(s, id, rec, meta, g);
}

/* An entry of kind on record id, the record's version with it, from ->
 * to because of trigger, by tester, stamped by the test clock: the rest
 * is the caller's to set before committing it. */
static inline void t_entry(lf_entry *e, lf_entry_kind kind, const char *id, uint64_t version,
                           const char *from, const char *to, const char *trigger) {
    memset(e, 0, sizeof *e);
    e->record_id = id;
    e->kind = kind;
    e->version = version;
    e->from_state = from;
    e->to_state = to;
    e->trigger = trigger;
    e->actor = "tester";
    t_stamp(e->timestamp);
}

/* A transition (or, with kind LF_ENTRY_DENIED, a refused attempt) built
 * on the record as the caller last saw it, at `version`, by `actor` with
 * `authority` (NULL: none). */
static inline lf_code t_move_by(lf_store *s, lf_entry_kind kind, const char *id,
                                const char *from, const char *to, uint64_t version,
                                const char *actor, const char *authority, t_got *g) {
    lf_entry e;
    bool denied = kind == LF_ENTRY_DENIED;
    t_entry(&e, kind, id, denied ? version : version + 1, from, to,
            denied ? "test.denied" : "test.moved");
    e.actor = actor;
    e.authority = authority;
    e.metadata = "{\"why\":\"test\"}";
    if (kind == LF_ENTRY_DENIED)
        e.decisions = "[{\"policy\":\"no-way\",\"verdict\":\"deny\","
                      "\"reason\":\"not today\"}]";
    return t_commit(s, &e, g);
}

static inline lf_code t_move(lf_store *s, lf_entry_kind kind, const char *id,
                             const char *from, const char *to, uint64_t version,
                             t_got *g) {
    return t_move_by(s, kind, id, from, to, version, "tester", NULL, g);
}

static inline lf_code t_transition(lf_store *s, const char *id, const char *from,
                                   const char *to, uint64_t version, t_got *g) {
    return t_move(s, LF_ENTRY_TRANSITION, id, from, to, version, g);
}

/* n records (ids t_id(1..n) into id[]) created and moved into
 * task_queued, each a second after the last: at[i] when id[i] entered. */
static inline void t_queued(lf_store *s, unsigned n, char (*id)[LF_ID_LEN + 1], int64_t *at) {
    t_got g = {0};
    for (unsigned i = 0; i < n; i++) {
        t_id(id[i], i + 1);
        assert_int_equal(t_create(s, id[i], id[i], "acme/app", &g), LF_OK);
        assert_int_equal(t_transition(s, id[i], "issue_created", "task_queued", 1, &g),
                         LF_OK);
        at[i] = t_clock_us;
        t_got_reset(&g);
    }
}

/* A noted entry setting a record's own timers (a JSON array), at version
 * (the record's next). */
static inline lf_code t_set_timers(lf_store *s, const char *id, uint64_t version,
                                   const char *timers, t_got *g) {
    char changes[1024];
    lf_entry e;
    t_entry(&e, LF_ENTRY_NOTED, id, version, "issue_created", "issue_created",
            "test.timers");
    snprintf(changes, sizeof changes, "{\"timers\":%s}", timers);
    e.changes = changes;
    return t_commit(s, &e, g);
}

/* A timer due at `us`, bound to issue_created, as its JSON. */
static inline void t_timer(int64_t us, char *out, size_t cap) {
    char ts[LF_TS_LEN + 1];
    lf_ts_format(us, ts);
    snprintf(out, cap,
             "{\"due\":\"%s\",\"state\":\"issue_created\",\"to\":\"task_queued\","
             "\"trigger\":\"test.late\",\"kind\":\"schedule\",\"by\":\"tester\"}",
             ts);
}

static inline lf_code t_delete(lf_store *s, const char *id, const char *state,
                               uint64_t version, t_got *g) {
    lf_entry e = {0};
    e.record_id = id;
    e.kind = LF_ENTRY_DELETED;
    e.version = version + 1;
    e.from_state = state;
    e.trigger = "deleted";
    e.actor = "tester";
    t_stamp(e.timestamp);
    return t_commit(s, &e, g);
}

static inline lf_code t_policy_loaded(lf_store *s, t_got *g) {
    lf_entry e = {0};
    e.kind = LF_ENTRY_POLICY_LOADED;
    e.trigger = "policy.loaded";
    e.actor = "tester";
    e.policy_set = "0123456789abcdef0123456789abcdef"
                   "0123456789abcdef0123456789abcdef";
    t_stamp(e.timestamp);
    return t_commit(s, &e, g);
}

static inline lf_code t_get(lf_store *s, const char *id, t_got *g) {
    t_got_reset(g);
    lf_store_get(s, id, t_store_cb, g);
    t_settle(&g->calls);
    assert_int_equal(g->calls, 1);
    return g->code;
}

static inline lf_code t_find_ref(lf_store *s, const char *ref, t_got *g) {
    t_got_reset(g);
    lf_store_find_by_ref(s, ref, t_store_cb, g);
    t_settle(&g->calls);
    assert_int_equal(g->calls, 1);
    return g->code;
}

/* ---- lists ------------------------------------------------------------- */

typedef struct t_page {
    int calls;
    lf_code code;
    size_t n;
    char (*ids)[LF_ID_LEN + 1];
    char (*updated)[LF_TS_LEN + 1];
    char *cursor;                   /* NULL on the last page */
    char err[512];
} t_page;

static inline void t_page_reset(t_page *p) {
    free(p->ids);
    free(p->updated);
    free(p->cursor);
    memset(p, 0, sizeof *p);
}

static inline void t_list_cb(lf_code code, const char *error,
                             const lf_record *const *records, size_t n,
                             const char *next_cursor, void *arg) {
    t_page *p = arg;
    int calls = p->calls;
    t_page_reset(p);
    p->calls = calls + 1;
    if (error) snprintf(p->err, sizeof p->err, "%s", error);
    p->code = code;
    p->n = n;
    p->ids = calloc(n + 1, sizeof *p->ids);
    p->updated = calloc(n + 1, sizeof *p->updated);
    for (size_t i = 0; i < n; i++) {
        memcpy(p->ids[i], records[i]->id, sizeof p->ids[i]);
        memcpy(p->updated[i], records[i]->updated_at, sizeof p->updated[i]);
    }
    p->cursor = next_cursor ? strdup(next_cursor) : NULL;
}

/* Every page of q, following the cursors: the ids into seen (each once,
 * at most cap), no page longer than q's limit; returns how many. */
static inline size_t t_list_all(lf_store *s, lf_list_query q, char (*seen)[LF_ID_LEN + 1],
                                size_t cap) {
    size_t n = 0;
    char *cur = NULL;
    do {
        t_page p = {0};
        q.cursor = cur;
        lf_store_list(s, &q, t_list_cb, &p);
        t_settle(&p.calls);
        assert_int_equal(p.code, LF_OK);
        assert_true(p.n <= q.limit);
        for (size_t i = 0; i < p.n; i++) {
            for (size_t k = 0; k < n; k++) assert_string_not_equal(seen[k], p.ids[i]);
            assert_true(n < cap);
            memcpy(seen[n++], p.ids[i], LF_ID_LEN + 1);
        }
        free(cur);
        cur = p.cursor ? strdup(p.cursor) : NULL;
        t_page_reset(&p);
    } while (cur);
    return n;
}

static inline void t_list(lf_store *s, const char *state, const char *repo, size_t limit,
                          const char *cursor, t_page *p) {
    lf_list_query q = {.state = state, .repo = repo, .limit = limit, .cursor = cursor};
    char *cur = cursor ? strdup(cursor) : NULL;  /* p->cursor dies below */
    q.cursor = cur;
    t_page_reset(p);
    lf_store_list(s, &q, t_list_cb, p);
    t_settle(&p->calls);
    free(cur);
    assert_int_equal(p->calls, 1);
    assert_int_equal(p->code, LF_OK);
}

static inline bool t_page_has(const t_page *p, const char *id) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->ids[i], id) == 0) return true;
    return false;
}

/* ---- audit ------------------------------------------------------------- */

typedef struct t_audit {
    int calls;
    lf_code code;
    size_t n;
    char **lines;                   /* NUL-terminated copies */
    size_t *lens;
    uint64_t last_seq;
    char err[512];
} t_audit;

static inline void t_audit_reset(t_audit *a) {
    for (size_t i = 0; i < a->n; i++) free(a->lines[i]);
    free(a->lines);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

static inline void t_audit_cb(lf_code code, const char *error, const char *const *lines,
                              const size_t *lens, size_t n, uint64_t last_seq,
                              void *arg) {
    t_audit *a = arg;
    int calls = a->calls;
    t_audit_reset(a);
    a->calls = calls + 1;
    if (error) snprintf(a->err, sizeof a->err, "%s", error);
    a->code = code;
    a->n = n;
    a->last_seq = last_seq;
    a->lines = calloc(n + 1, sizeof *a->lines);
    a->lens = calloc(n + 1, sizeof *a->lens);
    for (size_t i = 0; i < n; i++) {    /* whole: a damaged line may hold a NUL */
        char *line = malloc(lens[i] + 1);
        memcpy(line, lines[i], lens[i]);
        line[lens[i]] = '\0';
        a->lines[i] = line;
        a->lens[i] = lens[i];
    }
}

static inline void t_audit_page(lf_store *s, const char *id, uint64_t after, size_t limit,
                                t_audit *a) {
    t_audit_reset(a);
    lf_store_audit(s, id, after, limit, t_audit_cb, a);
    t_settle(&a->calls);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->code, LF_OK);
}

/* A field of an audit line, parsed (numbers as double, strings copied
 * into out). */
static inline uint64_t t_line_seq(const char *line) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "seq");
    uint64_t seq = cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : 0;
    cJSON_Delete(o);
    return seq;
}

static inline void t_line_str(const char *line, const char *key, char *out,
                              size_t outlen) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, outlen, "%s", cJSON_IsString(v) ? v->valuestring : "");
    cJSON_Delete(o);
}

/* Feeds the whole global log, page by page, through the hash chain.
 * Returns the number of entries, or fails the test with the chain's
 * complaint. When `why` is given, a broken chain is reported there
 * (and -1 returned) instead of failing. */
static inline long t_verify_chain(lf_store *s, char *why, size_t whylen) {
    lf_chain c;
    t_audit a = {0};
    uint64_t after = 0;
    char err[256];

    lf_chain_init(&c);
    for (;;) {
        t_audit_page(s, NULL, after, 3, &a);   /* small pages on purpose */
        if (a.n == 0) break;
        for (size_t i = 0; i < a.n; i++) {
            if (lf_chain_feed(&c, a.lines[i], a.lens[i], err, sizeof err) < 0) {
                t_audit_reset(&a);
                if (why) {
                    snprintf(why, whylen, "%s", err);
                    return -1;
                }
                fail_msg("chain broken: %s", err);
            }
        }
        after = a.last_seq;
    }
    t_audit_reset(&a);
    return (long)c.count;
}

/* ---- temp directories -------------------------------------------------- */

static inline int t_rm_one(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void t_rmtree(const char *dir) {
    nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under $TMPDIR (or /tmp); caller frees and removes. */
static inline char *t_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *dir;
    if (!base || !*base) base = "/tmp";
    assert_true(asprintf(&dir, "%s/loopforge-test-XXXXXX", base) > 0);
    assert_non_null(mkdtemp(dir));
    return dir;
}

/* ---- budget counters ---------------------------------------------------- */

typedef struct t_count {
    int calls;
    lf_code code;
    uint64_t n;
    int64_t oldest;
} t_count;

static inline void t_count_cb(lf_code code, const char *err, uint64_t n, int64_t oldest_us,
                       void *arg) {
    (void)err;
    t_count *c = arg;
    c->calls++;
    c->code = code;
    c->n = n;
    c->oldest = oldest_us;
}

/* The transitions into task_queued counted under key who:name since. */
static inline uint64_t t_count_of(lf_store *s, char who, const char *name, int64_t since,
                         int64_t *oldest) {
    char key[LF_COUNTER_KEY];
    t_count c = {0};
    lf_counter_key("task_queued", who, name, key);
    lf_store_count(s, key, since, t_count_cb, &c);
    t_settle(&c.calls);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.code, LF_OK);
    if (oldest) *oldest = c.oldest;
    return c.n;
}

/* A transition into task_queued by actor, on behalf of `behind` (a
 * credential's principal) or, with NULL, of the actor itself, of a new
 * record; returns its time (us). */
static inline int64_t t_move_as(lf_store *s, unsigned n, const char *actor, const char *behind) {
    char id[LF_ID_LEN + 1], ref[16], auth[128];
    t_got g = {0};
    int64_t us;
    t_id(id, n);
    snprintf(ref, sizeof ref, "c%u", n);
    assert_int_equal(t_create(s, id, ref, "acme/app", &g), LF_OK);
    snprintf(auth, sizeof auth, "{\"identity\":{\"principal\":\"%s\"}}", behind ? behind : "");
    assert_int_equal(t_move_by(s, LF_ENTRY_TRANSITION, id, "issue_created", "task_queued", 1,
                               actor, behind ? auth : NULL, &g),
                     LF_OK);
    assert_int_equal(lf_ts_parse(g.ts, &us), 0);
    t_got_reset(&g);
    return us;
}

#endif
