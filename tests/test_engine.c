/* test_engine.c -- the LoopForge reference behaviours (shared/conformance/
 * loopforge.md) through the engine API, on the memory: store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include <event2/event.h>

#include "engine_sync.h"
#include "policy_dir.h"
#include "timers_pages.h"
#include "../src/core/entry.h"
#include "../src/engine/engine_internal.h"

static const char *HAPPY[6][2] = {
    {"task_queued", "worker.picked_up"}, {"pr_created", "pr.opened"},
    {"ci_pending", "ci.started"},        {"ci_passed", "ci.completed"},
    {"merged", "auto.merged"},           {"closed", "issue.closed"},
};

/* The reference behaviours are those of the bare state machine, so these
 * tests run on a policy set holding only the shipped workflow; the
 * shipped guards and hooks have their own specs (spec/). */
static char bare[64];

static int make_bare(void **state) {
    (void)state;
    char cmd[256];
    snprintf(bare, sizeof bare, "/tmp/lf-engine-XXXXXX");
    if (!mkdtemp(bare)) return -1;
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/workflows && cp policies/workflows/loopforge.lua "
             "%s/workflows/",
             bare, bare);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_bare(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", bare);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state) {
    char err[512];
    lf_engine_config cfg = {.store = "memory:", .policies = bare};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        return -1;
    }
    *state = e;
    return 0;
}

static int teardown(void **state) {
    lf_engine_free(*state);
    return 0;
}

/* Creates a record with ref/repo and returns its id (static storage). */
static const char *new_record(lf_engine *e, const char *ref) {
    static char id[LF_ID_LEN + 1];
    lf_create_req req = {.ref = ref, .repo = "org/repo", .actor = "tester"};
    res r = do_create(e, &req);
    assert_true(r.success);
    snprintf(id, sizeof id, "%s", r.rec->id);
    res_clear(&r);
    return id;
}

static void walk(lf_engine *e, const char *id, const char *const (*steps)[2], int n) {
    for (int i = 0; i < n; i++) {
        res r = do_transition(e, id, steps[i][0], steps[i][1], NULL, "tester");
        assert_true(r.success);
        res_clear(&r);
    }
}

/* 4. */
static void new_record_shape(void **state) {
    lf_create_req req = {.ref = "https://github.com/org/repo/issues/42",
                         .repo = "org/repo"};
    res r = do_create(*state, &req);
    assert_int_equal(r.fired, 1);
    assert_true(r.success);
    assert_string_equal(r.rec->state, "issue_created");
    assert_true(lf_id_valid(r.rec->id));
    assert_int_equal(strlen(r.rec->id), 21);
    assert_int_equal(r.rec->nhist, 1);
    assert_null(lf_hs(r.rec, r.rec->hist[0].from_state));
    assert_string_equal(lf_hs(r.rec, r.rec->hist[0].to_state), "issue_created");
    assert_string_equal(lf_hs(r.rec, r.rec->hist[0].trigger), "created");
    assert_string_equal(
        lf_hs(r.rec, r.rec->hist[0].metadata),
        "{\"ref\":\"https://github.com/org/repo/issues/42\",\"repo\":\"org/repo\"}");
    assert_string_equal(r.rec->closed_at, "");
    assert_int_equal(r.rec->version, 1);
    assert_string_equal(r.next, "issue_created");
    res_clear(&r);
}

/* 5. */
static void creation_fields_stored(void **state) {
    lf_create_req req = {.ref = "T-5",
                         .repo = "o/r",
                         .has_ref_number = true,
                         .ref_number = 5000000000LL,
                         .auto_merge = true,
                         .labels = "{\"team\": \"core\", \"prio\": \"p1\"}"};
    res r = do_create(*state, &req);
    assert_true(r.success);
    res g = do_get(*state, r.rec->id);
    assert_true(g.success);
    assert_string_equal(g.rec->ref, "T-5");
    assert_string_equal(g.rec->repo, "o/r");
    assert_true(g.rec->has_ref_number);
    assert_true(g.rec->ref_number == 5000000000LL);
    assert_true(g.rec->auto_merge);
    assert_string_equal(g.rec->labels, "{\"team\":\"core\",\"prio\":\"p1\"}");
    res_clear(&r);
    res_clear(&g);
}

/* 6. */
static void valid_appends_invalid_changes_nothing(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-6");
    res ok = do_transition(e, id, "task_queued", "worker.picked_up", NULL, "w");
    assert_true(ok.success);
    assert_int_equal(ok.rec->nhist, 2);
    assert_string_equal(ok.rec->state, "task_queued");
    size_t entries = audit_len(e);
    res bad = do_transition(e, id, "merged", "yolo", NULL, "w");
    assert_false(bad.success);
    assert_int_equal(bad.code, LF_INVALID_TRANSITION);
    res g = do_get(e, id);
    assert_string_equal(g.rec->state, "task_queued");
    assert_int_equal(g.rec->nhist, 2);
    assert_int_equal(g.rec->version, 2);
    /* The record is untouched; the attempt itself is on record. */
    assert_int_equal(audit_len(e), entries + 1);
    res_clear(&ok);
    res_clear(&bad);
    res_clear(&g);
}

/* 7. and 11. */
static void happy_path_and_timestamps(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-7");
    walk(e, id, HAPPY, 6);
    res g = do_get(e, id);
    assert_string_equal(g.rec->state, "closed");
    assert_int_equal(g.rec->nhist, 7);
    assert_int_equal(g.rec->version, 7);
    assert_int_equal(strlen(g.rec->closed_at), LF_TS_LEN);
    for (size_t i = 0; i < g.rec->nhist; i++) {
        const char *ts = g.rec->hist[i].timestamp;
        int64_t us;
        assert_int_equal(lf_ts_parse(ts, &us), 0);
        assert_int_equal(ts[LF_TS_LEN - 1], 'Z');
        assert_int_equal(ts[19], '.');
        assert_true(strcmp(ts, g.rec->updated_at) <= 0);
        if (i) assert_true(strcmp(g.rec->hist[i - 1].timestamp, ts) <= 0);
        assert_string_equal(lf_hs(g.rec, g.rec->hist[i].actor), i ? "tester" : "tester");
    }
    assert_true(strcmp(g.rec->updated_at, g.rec->closed_at) <= 0);
    assert_string_equal(lf_hs(g.rec, g.rec->hist[6].to_state), "closed");
    assert_string_equal(lf_hs(g.rec, g.rec->hist[6].trigger), "issue.closed");
    res_clear(&g);
}

/* 8. */
static void retry_path(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-8");
    const char *const steps[][2] = {
        {"task_queued", "a"},          {"pr_created", "b"},        {"ci_pending", "c"},
        {"ci_failed", "ci.completed"}, {"ci_pending", "ci.retry"}, {"ci_passed", "ok"},
    };
    walk(e, id, steps, 6);
    res g = do_get(e, id);
    assert_string_equal(g.rec->state, "ci_passed");
    assert_string_equal(lf_hs(g.rec, g.rec->hist[5].trigger), "ci.retry");
    res_clear(&g);
}

/* 9. */
static void review_path(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-9");
    const char *const steps[][2] = {
        {"task_queued", "a"},
        {"pr_created", "b"},
        {"ci_pending", "c"},
        {"ci_passed", "d"},
        {"awaiting_review", "review.requested"},
        {"approved", "review.approved"},
        {"merged", "pr.merged"},
    };
    walk(e, id, steps, 7);
    res g = do_get(e, id);
    assert_string_equal(g.rec->state, "merged");
    assert_string_equal(g.rec->closed_at, "");
    res_clear(&g);
}

/* 10. */
static void json_round_trip_and_key_order(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-10");
    res t = do_transition(e, id, "task_queued", "x",
                          "{\"why\": \"unicode \\u00e9 \\\"q\\\"\", \"n\": 1.5}", "a");
    assert_true(t.success);
    char *j1 = lf_record_json(t.rec);
    char err[128];
    lf_record *back = lf_record_from_json(j1, strlen(j1), err, sizeof err);
    assert_non_null(back);
    char *j2 = lf_record_json(back);
    assert_string_equal(j1, j2);
    static const char *keys[] = {
        "record_id",  "ref",        "ref_number", "repo",        "pr_url",   "pr_number",
        "state",      "auto_merge", "ci_status",  "transitions", "labels",   "created_at",
        "updated_at", "closed_at",  "workflow",   "version",     "metadata", "aliases"};
    cJSON *o = cJSON_Parse(j1);
    const cJSON *k = o->child;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++, k = k->next) {
        assert_non_null(k);
        assert_string_equal(k->string, keys[i]);
    }
    assert_null(k);
    static const char *tkeys[] = {"from_state", "to_state", "trigger",
                                  "timestamp",  "metadata", "actor"};
    k = cJSON_GetObjectItem(o, "transitions")->child->child;
    for (size_t i = 0; i < 6; i++, k = k->next) assert_string_equal(k->string, tkeys[i]);
    cJSON_Delete(o);
    free(j1);
    free(j2);
    lf_record_free(back);
    res_clear(&t);
}

/* A long history folded entry by entry: each entry reads back what it
 * was given after the history's string block has grown many times, the
 * strings the entries repeat are stored once (a cycle of two states, two
 * triggers and two actors keeps a few hundred bytes, not one copy an
 * entry), and a copy and a JSON round trip give the same record. */
static void long_history_shares_strings(void **state) {
    (void)state;
    enum { N = 400 };
    char err[256], meta[N][32];
    const char *st[2] = {"ci_pending", "ci_failed"}, *tr[2] = {"ci.started", "ci.completed"},
               *who[2] = {"alice", "bob"};
    lf_entry e = {.record_id = "loop-0123456789abcdef", .kind = LF_ENTRY_CREATED,
                  .version = 1, .to_state = "ci_pending", .trigger = "created",
                  .actor = "alice", .record = "{\"ref\":\"r\",\"workflow\":\"loopforge\"}"};
    lf_record *r = NULL;
    memcpy(e.timestamp, "2026-12-05T10:00:00.000000Z", LF_TS_LEN + 1);
    assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
    for (int i = 1; i < N; i++) {
        e.kind = LF_ENTRY_TRANSITION;
        e.version = (uint64_t)i + 1;
        e.from_state = st[(i + 1) % 2];
        e.to_state = st[i % 2];
        e.trigger = tr[i % 2];
        e.actor = who[(i / 2) % 2];
        snprintf(meta[i], sizeof meta[i], "{\"n\":%d}", i);
        e.metadata = i % 50 ? NULL : meta[i];
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
    }
    assert_int_equal(r->nhist, N);
    for (int i = 1; i < N; i++) {
        const lf_hist *h = &r->hist[i];
        assert_string_equal(lf_hs(r, h->from_state), st[(i + 1) % 2]);
        assert_string_equal(lf_hs(r, h->to_state), st[i % 2]);
        assert_string_equal(lf_hs(r, h->trigger), tr[i % 2]);
        assert_string_equal(lf_hs(r, h->actor), who[(i / 2) % 2]);
        assert_string_equal(lf_hs(r, h->metadata), i % 50 ? "{}" : meta[i]);
    }
    assert_null(lf_hs(r, r->hist[0].from_state));
    assert_true(r->hs_len < 160);   /* one copy an entry would be ~14 KB */
    lf_record *d = lf_record_dup(r);
    char *j1 = lf_record_json(r), *j2 = lf_record_json(d);
    assert_string_equal(j1, j2);
    lf_record *back = lf_record_from_json(j1, strlen(j1), err, sizeof err);
    assert_non_null(back);
    char *j3 = lf_record_json(back);
    assert_string_equal(j1, j3);
    assert_int_equal(back->hs_len, r->hs_len);
    free(j1);
    free(j2);
    free(j3);
    lf_record_free(back);
    lf_record_free(d);
    lf_record_free(r);
}

/* A reply renders a move it has rendered before from its copy, with the
 * entry's own time: over a history of repeated moves (a cycle), moves
 * that take the same memo slot, and moves too long to keep, every entry
 * is what was applied, in order. */
/* A record of its creation entry alone (by alice, at 10:00:00, in state
 * `to`), and that entry in *e for the caller's transitions to reuse. */
static lf_record *created(lf_entry *e, const char *to) {
    char err[256];
    *e = (lf_entry){.record_id = "loop-0123456789abcdef", .kind = LF_ENTRY_CREATED,
                    .version = 1, .to_state = to, .trigger = "created", .actor = "alice",
                    .record = "{\"ref\":\"r\",\"workflow\":\"loopforge\"}"};
    lf_record *r = NULL;
    memcpy(e->timestamp, "2026-12-05T10:00:00.000000Z", LF_TS_LEN + 1);
    assert_int_equal(lf_record_apply(&r, e, err, sizeof err), 0);
    return r;
}

static void moment(int i, char ts[LF_TS_LEN + 1]) {
    lf_ts_format(1796500000000000LL + 1000003LL * i, ts);
}

static void history_json_repeated_moves(void **state) {
    (void)state;
    char err[256], meta[400];
    snprintf(meta, sizeof meta, "{\"long\":\"%0300d\"}", 7);
    lf_entry e;
    lf_record *r = created(&e, "s0");
    enum { MOVES = 120 };
    char to[MOVES][16], actor[MOVES][16];
    const char *metas[MOVES];
    for (int i = 0; i < MOVES; i++) {
        /* mostly s0 <-> s1; every 5th to one of 12 others; every 7th by
         * another actor; every 11th with metadata too long to keep */
        snprintf(to[i], sizeof to[i], "s%d",
                 i % 5 == 4 ? 2 + i % 12 : strcmp(r->state, "s0") == 0);
        snprintf(actor[i], sizeof actor[i], "%s", i % 7 ? "bot" : "carol");
        metas[i] = i % 11 == 3 ? meta : NULL;
        e.kind = LF_ENTRY_TRANSITION;
        e.version = (uint64_t)i + 2;
        e.from_state = r->state;
        e.to_state = to[i];
        e.trigger = i % 3 ? "ci.failed" : "ci.retry";
        e.actor = actor[i];
        e.metadata = metas[i];
        moment(i, e.timestamp);
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
    }
    char *j = lf_record_json(r);
    cJSON *doc = cJSON_Parse(j), *hist = cJSON_GetObjectItem(doc, "transitions");
    assert_int_equal(cJSON_GetArraySize(hist), MOVES + 1);
    for (int i = 0; i < MOVES; i++) {
        cJSON *x = cJSON_GetArrayItem(hist, i + 1);
        char ts[LF_TS_LEN + 1];
        moment(i, ts);
        const char *from = i ? to[i - 1] : "s0";
        assert_string_equal(cJSON_GetObjectItem(x, "from_state")->valuestring, from);
        assert_string_equal(cJSON_GetObjectItem(x, "to_state")->valuestring, to[i]);
        assert_string_equal(cJSON_GetObjectItem(x, "trigger")->valuestring,
                            i % 3 ? "ci.failed" : "ci.retry");
        assert_string_equal(cJSON_GetObjectItem(x, "timestamp")->valuestring, ts);
        assert_string_equal(cJSON_GetObjectItem(x, "actor")->valuestring, actor[i]);
        char *m = cJSON_PrintUnformatted(cJSON_GetObjectItem(x, "metadata"));
        assert_string_equal(m, metas[i] ? metas[i] : "{}");
        free(m);
    }
    cJSON_Delete(doc);
    free(j);
    lf_record_free(r);
}

/* A reply's history, byte for byte: entries whose strings need nothing
 * escaped are copied whole, the others (a quote, a control byte) go
 * through the JSON writer, and both give what the writer always gave;
 * the creation entry's from_state is null, UTF-8 passes through. */
static void history_json_exact_bytes(void **state) {
    (void)state;
    char err[256];
    lf_entry e;
    lf_record *r = created(&e, "s1");
    static const struct { const char *to, *trigger, *actor, *meta; } step[] = {
        {"s2", "pr.opened", "bob", "{\"n\":1}"},
        {"s1", "q\"t", "tab\tand\\", NULL},
        {"a_longer_state_name", "ci.completed", "\xc3\xa9\x01", "{\"why\":\"\\\"\"}"},
    };
    for (int i = 0; i < 3; i++) {
        e.kind = LF_ENTRY_TRANSITION;
        e.version = (uint64_t)i + 2;
        e.from_state = r->state;
        e.to_state = step[i].to;
        e.trigger = step[i].trigger;
        e.actor = step[i].actor;
        e.metadata = step[i].meta;
        e.timestamp[18] = (char)('1' + i);
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
    }
    char *j = lf_record_json(r);
    const char *a = strstr(j, "\"transitions\":["), *z = strstr(j, "],\"labels\"");
    assert_non_null(a);
    assert_non_null(z);
    a += strlen("\"transitions\":[");
    char *got = strndup(a, (size_t)(z - a));
    assert_string_equal(
        got,
        "{\"from_state\":null,\"to_state\":\"s1\",\"trigger\":\"created\","
        "\"timestamp\":\"2026-12-05T10:00:00.000000Z\",\"metadata\":{},\"actor\":\"alice\"},"
        "{\"from_state\":\"s1\",\"to_state\":\"s2\",\"trigger\":\"pr.opened\","
        "\"timestamp\":\"2026-12-05T10:00:01.000000Z\",\"metadata\":{\"n\":1},\"actor\":\"bob\"},"
        "{\"from_state\":\"s2\",\"to_state\":\"s1\",\"trigger\":\"q\\\"t\","
        "\"timestamp\":\"2026-12-05T10:00:02.000000Z\",\"metadata\":{},\"actor\":\"tab\\tand\\\\\"},"
        "{\"from_state\":\"s1\",\"to_state\":\"a_longer_state_name\",\"trigger\":\"ci.completed\","
        "\"timestamp\":\"2026-12-05T10:00:03.000000Z\",\"metadata\":{\"why\":\"\\\"\"},"
        "\"actor\":\"\xc3\xa9\\u0001\"}");
    /* the tail a reply keeps: the last two, and the count of all */
    lf_buf b = LF_BUF_INIT;
    lf_record_to_json_tail(r, 2, &b);
    assert_non_null(strstr(b.p, "\"transitions\":[{\"from_state\":\"s2\""));
    assert_non_null(strstr(b.p, "\"transitions_total\":4}"));
    /* an empty trigger, and an actor longer than a history string's
     * length byte can say (measured when written) */
    char actor[301], want[600];
    memset(actor, 'x', 300);
    actor[300] = '\0';
    e.version = 5;
    e.from_state = r->state;
    e.to_state = "s1";
    e.trigger = "";
    e.actor = actor;
    e.metadata = NULL;
    assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
    lf_buf_reset(&b);
    lf_record_to_json_tail(r, 1, &b);
    snprintf(want, sizeof want,
             "\"transitions\":[{\"from_state\":\"a_longer_state_name\",\"to_state\":\"s1\","
             "\"trigger\":\"\",\"timestamp\":\"2026-12-05T10:00:03.000000Z\","
             "\"metadata\":{},\"actor\":\"%s\"}]",
             actor);
    if (!strstr(b.p, want)) fail_msg("%s", b.p);
    lf_buf_free(&b);
    free(got);
    free(j);
    lf_record_free(r);
}

/* 12. and 13. */
static void create_get_and_result_shape(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-12");
    res g = do_get(e, id);
    assert_true(g.success);
    assert_string_equal(g.rec->ref, "ref-12");
    assert_string_equal(g.rec->state, "issue_created");
    res t = do_transition(e, id, "task_queued", "worker.picked_up", NULL, "w");
    assert_true(t.success);
    assert_int_equal(t.code, LF_OK);
    assert_null(t.error);
    assert_string_equal(t.prev, "issue_created");
    assert_string_equal(t.next, "task_queued");
    assert_string_equal(t.rec->state, "task_queued");
    res f = do_get(e, id);
    assert_string_equal(f.rec->state, "task_queued");
    res_clear(&g);
    res_clear(&t);
    res_clear(&f);
}

/* 14. */
static void unknown_id(void **state) {
    lf_engine *e = *state;
    size_t before = audit_len(e);
    res r = do_transition(e, "loop-0000000000000000", "task_queued", "x", NULL, "w");
    assert_int_equal(r.fired, 1);
    assert_false(r.success);
    assert_int_equal(r.code, LF_NOT_FOUND);
    assert_string_equal(r.error, "Record not found: loop-0000000000000000");
    assert_null(r.prev);
    assert_null(r.next);
    assert_int_equal(audit_len(e), before);
    res_clear(&r);
}

/* 15. */
static void invalid_messages(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-15");
    char keep[LF_ID_LEN + 1];
    snprintf(keep, sizeof keep, "%s", id);
    res r = do_transition(e, keep, "merged", "x", NULL, "w");
    assert_string_equal(r.error, "Invalid transition: issue_created \xe2\x86\x92 merged. "
                                 "Allowed from issue_created: task_queued");
    assert_string_equal(r.prev, "issue_created");
    assert_null(r.next);
    res_clear(&r);
    const char *const to_passed[][2] = {{"task_queued", "a"},
                                        {"pr_created", "b"},
                                        {"ci_pending", "c"},
                                        {"ci_passed", "d"}};
    walk(e, keep, to_passed, 4);
    r = do_transition(e, keep, "issue_created", "x", NULL, "w");
    assert_string_equal(r.error,
                        "Invalid transition: ci_passed \xe2\x86\x92 issue_created. "
                        "Allowed from ci_passed: merged, awaiting_review");
    res_clear(&r);
    const char *const to_closed[][2] = {{"merged", "a"}, {"closed", "b"}};
    walk(e, keep, to_closed, 2);
    r = do_transition(e, keep, "issue_created", "x", NULL, "w");
    assert_string_equal(r.error, "Invalid transition: closed \xe2\x86\x92 issue_created. "
                                 "Allowed from closed: none (terminal)");
    assert_string_equal(r.prev, "closed");
    res_clear(&r);
}

/* 16. and pr fields from metadata. */
static void metadata_on_history(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-16");
    res r = do_transition(e, id, "task_queued", "x", "{\"worker\":\"w-7\",\"attempt\":2}",
                          "w");
    assert_true(r.success);
    assert_string_equal(lf_hs(r.rec, r.rec->hist[1].metadata), "{\"worker\":\"w-7\",\"attempt\":2}");
    res_clear(&r);
    r = do_transition(e, id, "pr_created", "pr.opened",
                      "{\"pr_url\":\"https://github.com/o/r/pull/9\",\"pr_number\":9}",
                      "w");
    assert_true(r.success);
    assert_string_equal(r.rec->pr_url, "https://github.com/o/r/pull/9");
    assert_true(r.rec->has_pr_number);
    assert_int_equal(r.rec->pr_number, 9);
    res_clear(&r);
}

/* Bad input: a clear error, a stable code, nothing written. */
static void bad_input_changes_nothing(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-bad");
    char keep[LF_ID_LEN + 1];
    snprintf(keep, sizeof keep, "%s", id);
    size_t before = audit_len(e);
    res r = do_transition(e, keep, "task_queued", "x", "{not json", "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    assert_non_null(strstr(r.error, "metadata"));
    res_clear(&r);
    r = do_transition(e, keep, "task_queued", "x", "[1,2]", "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    r = do_transition(e, keep, "no_such_state", "x", NULL, "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    assert_string_equal(r.error, "Unknown state 'no_such_state' in workflow loopforge");
    res_clear(&r);
    r = do_transition(e, keep, "task_queued", "", NULL, "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    r = do_transition(e, keep, "pr_created", "x", "{\"pr_number\":\"nine\"}", "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    lf_create_req c1 = {.ref = ""};
    r = do_create(e, &c1);
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    lf_create_req c2 = {.ref = "x", .labels = "{\"a\":1}"};
    r = do_create(e, &c2);
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    assert_non_null(strstr(r.error, "labels"));
    res_clear(&r);
    lf_create_req c3 = {.ref = "x", .workflow = "nope"};
    r = do_create(e, &c3);
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    assert_int_equal(audit_len(e), before);
    res g = do_get(e, keep);
    assert_int_equal(g.rec->version, 1);
    res_clear(&g);
}

static void duplicate_ref(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "https://github.com/o/r/issues/77");
    char keep[LF_ID_LEN + 1];
    snprintf(keep, sizeof keep, "%s", id);
    lf_create_req req = {.ref = "https://github.com/o/r/issues/77"};
    res r = do_create(e, &req);
    assert_false(r.success);
    assert_int_equal(r.code, LF_DUPLICATE_REF);
    assert_non_null(strstr(r.error, keep));
    res_clear(&r);
    res f = {0};
    lf_engine_find_by_ref(e, "https://github.com/o/r/issues/77", res_keep, &f);
    assert_true(f.success);
    assert_string_equal(f.rec->id, keep);
    res_clear(&f);
}

/* 21. */
typedef struct listed {
    int n;
    char ids[8][LF_ID_LEN + 1];
    char states[8][32];
    char updated[8][LF_TS_LEN + 1];
    char *cursor;
} listed;
static void list_keep(lf_code c, const char *err, const lf_record *const *recs, size_t n,
                      const char *next, void *arg) {
    listed *l = arg;
    (void)err;
    assert_int_equal(c, LF_OK);
    l->n = (int)n;
    for (size_t i = 0; i < n && i < 8; i++) {
        snprintf(l->ids[i], sizeof l->ids[i], "%s", recs[i]->id);
        snprintf(l->states[i], sizeof l->states[i], "%s", recs[i]->state);
        memcpy(l->updated[i], recs[i]->updated_at, LF_TS_LEN + 1);
    }
    l->cursor = next ? strdup(next) : NULL;
}

static void list_by_state(void **state) {
    lf_engine *e;
    char err[256];
    lf_engine_config cfg = {.store = "memory:", .policies = bare};
    e = lf_engine_new(&cfg, err, sizeof err, NULL);
    char ids[5][LF_ID_LEN + 1];
    (void)state;
    for (int i = 0; i < 5; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "L-%d", i);
        snprintf(ids[i], sizeof ids[i], "%s", new_record(e, ref));
    }
    /* ids 1, 3, 4 move to task_queued in the order 3, 1, 4. */
    int order[3] = {3, 1, 4};
    for (int i = 0; i < 3; i++) {
        res r = do_transition(e, ids[order[i]], "task_queued", "x", NULL, "w");
        assert_true(r.success);
        res_clear(&r);
    }
    listed l = {0};
    lf_list_query q = {.state = "task_queued"};
    lf_engine_list(e, &q, list_keep, &l);
    assert_int_equal(l.n, 3);
    /* Newest updated_at first (ties by id): sorted descending, and when
     * the clock told the three apart, exactly the reverse of the moves. */
    for (int i = 1; i < 3; i++) {
        int c = strcmp(l.updated[i - 1], l.updated[i]);
        assert_true(c > 0 || (c == 0 && strcmp(l.ids[i - 1], l.ids[i]) > 0));
    }
    if (strcmp(l.updated[0], l.updated[1]) && strcmp(l.updated[1], l.updated[2])) {
        assert_string_equal(l.ids[0], ids[4]);
        assert_string_equal(l.ids[1], ids[1]);
        assert_string_equal(l.ids[2], ids[3]);
    }
    for (int i = 0; i < 3; i++) assert_string_equal(l.states[i], "task_queued");
    char all[3][LF_ID_LEN + 1];
    memcpy(all, l.ids, sizeof all);
    assert_null(l.cursor);
    q.limit = 2;
    memset(&l, 0, sizeof l);
    lf_engine_list(e, &q, list_keep, &l);
    assert_int_equal(l.n, 2);
    assert_non_null(l.cursor);
    assert_string_equal(l.ids[0], all[0]);
    assert_string_equal(l.ids[1], all[1]);
    listed p2 = {0};
    q.cursor = l.cursor;
    lf_engine_list(e, &q, list_keep, &p2);
    assert_int_equal(p2.n, 1);
    assert_string_equal(p2.ids[0], all[2]);
    assert_null(p2.cursor);
    free(l.cursor);
    lf_list_query q2 = {.state = "issue_created"};
    memset(&l, 0, sizeof l);
    lf_engine_list(e, &q2, list_keep, &l);
    assert_int_equal(l.n, 2);
    lf_engine_free(e);
}

/* 22. */
static void delete_semantics(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-22");
    char keep[LF_ID_LEN + 1];
    snprintf(keep, sizeof keep, "%s", id);
    res d = {0};
    lf_engine_delete(e, keep, "admin", res_keep, &d);
    assert_true(d.success);
    res_clear(&d);
    res g = do_get(e, keep);
    assert_int_equal(g.code, LF_NOT_FOUND);
    res_clear(&g);
    lf_engine_delete(e, "loop-ffffffffffffffff", "admin", res_keep, &d);
    assert_false(d.success);
    assert_int_equal(d.code, LF_NOT_FOUND);
    res_clear(&d);
    /* The ref is free again, and the tombstone stays in the audit log. */
    lf_create_req req = {.ref = "ref-22"};
    res again = do_create(e, &req);
    assert_true(again.success);
    res_clear(&again);
}

/* 24. and the chain over everything the engine wrote. */
typedef struct chain_ctx {
    lf_chain c;
    int bad;
    int actors;
    char err[256];
} chain_ctx;
static void chain_cb(lf_code code, const char *err, const char *const *lines,
                     const size_t *lens, size_t n, uint64_t last, void *arg) {
    chain_ctx *c = arg;
    (void)err;
    (void)last;
    assert_int_equal(code, LF_OK);
    for (size_t i = 0; i < n; i++) {
        if (lf_chain_feed(&c->c, lines[i], lens[i], c->err, sizeof c->err)) c->bad++;
        cJSON *o = cJSON_ParseWithLength(lines[i], lens[i]);
        const cJSON *a = cJSON_GetObjectItem(o, "actor");
        if (cJSON_IsString(a) && a->valuestring[0]) c->actors++;
        cJSON_Delete(o);
    }
}

static void actors_and_chain(void **state) {
    lf_engine *e = *state;
    const char *id = new_record(e, "ref-24");
    walk(e, id, HAPPY, 6);
    res g = do_get(e, id);
    for (size_t i = 0; i < g.rec->nhist; i++)
        assert_string_equal(lf_hs(g.rec, g.rec->hist[i].actor), "tester");
    res_clear(&g);
    chain_ctx c = {0};
    lf_chain_init(&c.c);
    lf_engine_audit(e, NULL, 0, 100000, chain_cb, &c);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.c.count, 8); /* the policy set's announcement, then 7 */
    assert_int_equal((uint64_t)c.actors, c.c.count);
}

/* A repeated idempotency key answers with the first result and writes
 * nothing, for successes and refusals alike. */
static void idempotency(void **state) {
    lf_engine *e = *state;
    const char *id0 = new_record(e, "ref-idem");
    char id[LF_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", id0);
    lf_transition_req t = {.id = id,
                           .to = "task_queued",
                           .trigger = "x",
                           .actor = "w",
                           .idempotency_key = "delivery-1"};
    res a = {0}, b = {0};
    lf_engine_transition(e, &t, res_keep, &a);
    assert_true(a.success);
    size_t n = audit_len(e);
    lf_engine_transition(e, &t, res_keep, &b);
    assert_true(b.success);
    assert_non_null(strstr(b.json, "\"duplicate\":true"));
    assert_string_equal(b.prev, "issue_created");
    assert_string_equal(b.next, "task_queued");
    assert_int_equal(b.rec->version, 2);
    assert_int_equal(audit_len(e), n);
    res_clear(&a);
    res_clear(&b);
    /* The same key for another request is refused, and writes nothing:
     * the key stays bound to its first request. */
    t.to = "pr_created";
    lf_engine_transition(e, &t, res_keep, &b);
    assert_int_equal(b.code, LF_IDEMPOTENCY_MISMATCH);
    assert_non_null(strstr(b.error, "was used for another request"));
    assert_int_equal(audit_len(e), n);
    res_clear(&b);
    lf_transition_req other = t;
    other.id = new_record(e, "ref-idem-other");
    n = audit_len(e);
    lf_engine_transition(e, &other, res_keep, &b);
    assert_int_equal(b.code, LF_IDEMPOTENCY_MISMATCH);
    assert_int_equal(audit_len(e), n);
    res_clear(&b);
    /* A refused attempt repeats as the same refusal. */
    lf_transition_req bad = {
        .id = id, .to = "merged", .trigger = "x", .idempotency_key = "delivery-2"};
    lf_engine_transition(e, &bad, res_keep, &a);
    assert_int_equal(a.code, LF_INVALID_TRANSITION);
    n = audit_len(e);
    lf_engine_transition(e, &bad, res_keep, &b);
    assert_int_equal(b.code, LF_INVALID_TRANSITION);
    assert_string_equal(a.error, b.error);
    assert_non_null(strstr(b.json, "\"duplicate\":true"));
    assert_int_equal(audit_len(e), n);
    res_clear(&a);
    res_clear(&b);
    /* The record moves on; a repeat of delivery-1 still answers with the
     * record as its first attempt left it (version 2, task_queued), not
     * as it is now. */
    lf_transition_req on = {.id = id, .to = "pr_created", .trigger = "y", .actor = "w"};
    lf_engine_transition(e, &on, res_keep, &a);
    assert_true(a.success);
    assert_int_equal(a.rec->version, 3);
    res_clear(&a);
    t.to = "task_queued";
    lf_engine_transition(e, &t, res_keep, &b);
    assert_true(b.success);
    assert_non_null(strstr(b.json, "\"duplicate\":true"));
    assert_int_equal(b.rec->version, 2);
    assert_string_equal(b.rec->state, "task_queued");
    assert_int_equal(b.rec->nhist, 2);
    res_clear(&b);
    /* … and a refusal repeats with the record as it was refused. */
    lf_engine_transition(e, &bad, res_keep, &b);
    assert_int_equal(b.code, LF_INVALID_TRANSITION);
    assert_int_equal(b.rec->version, 2);
    res_clear(&b);
    /* Creates too. */
    lf_create_req c = {.ref = "ref-idem-2", .idempotency_key = "delivery-3"};
    a = do_create(e, &c);
    b = do_create(e, &c);
    assert_true(a.success && b.success);
    assert_string_equal(a.rec->id, b.rec->id);
    assert_non_null(strstr(b.json, "\"duplicate\":true"));
    res_clear(&a);
    res_clear(&b);
    lf_stats st;
    lf_engine_stats(e, &st);
    assert_int_equal(st.duplicates, 5); /* the mismatches are not duplicates */
}

/* An observation follows reality where a request would be refused, and
 * says what it violated. */
static void observation_records_violation(void **state) {
    lf_engine *e = *state;
    const char *id0 = new_record(e, "ref-obs");
    char id[LF_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", id0);
    lf_transition_req t = {.id = id,
                           .to = "merged",
                           .trigger = "pr.merged",
                           .actor = "github:octocat",
                           .observed = true};
    res r = {0};
    lf_engine_transition(e, &t, res_keep, &r);
    assert_true(r.success);
    assert_string_equal(r.rec->state, "merged");
    assert_non_null(strstr(r.json, "\"violation\":{\"rule\":\"workflow:loopforge\","
                                   "\"reason\":\"Invalid transition: issue_created"));
    res_clear(&r);
    lf_stats st;
    lf_engine_stats(e, &st);
    assert_int_equal(st.violations, 1);
    /* The same fact observed again moves nothing; it is in the log as an
     * `observed` entry, and the reply says nothing changed. */
    size_t n = audit_len(e);
    lf_engine_transition(e, &t, res_keep, &r);
    assert_true(r.success);
    assert_string_equal(r.next, "merged");
    assert_null(strstr(r.json, "\"violation\":{"));
    assert_non_null(strstr(r.json, "\"changed\":false"));
    assert_int_equal(r.rec->version, 3);
    assert_int_equal(r.rec->nhist, 2);
    assert_int_equal(audit_len(e), n + 1);
    res_clear(&r);
    /* A request for the same edge elsewhere is still refused. */
    const char *other = new_record(e, "ref-obs-2");
    r = do_transition(e, other, "merged", "x", NULL, "w");
    assert_int_equal(r.code, LF_INVALID_TRANSITION);
    res_clear(&r);
}

/* Aliases from metadata find the record like its ref; the newest claim
 * of an alias wins; a deleted record releases its aliases. */
static void aliases_find_records(void **state) {
    lf_engine *e = *state;
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];
    snprintf(a, sizeof a, "%s", new_record(e, "ref-al-a"));
    snprintf(b, sizeof b, "%s", new_record(e, "ref-al-b"));
    res r = do_transition(e, a, "task_queued", "x",
                          "{\"aliases\":[\"pr:o/r#2\",\"sha:abc\"]}", "w");
    assert_true(r.success);
    assert_int_equal(r.rec->naliases, 2);
    res_clear(&r);
    res f = {0};
    lf_engine_find_by_ref(e, "pr:o/r#2", res_keep, &f);
    assert_true(f.success);
    assert_string_equal(f.rec->id, a);
    res_clear(&f);
    r = do_transition(e, b, "task_queued", "x", "{\"aliases\":[\"sha:abc\"]}", "w");
    res_clear(&r);
    lf_engine_find_by_ref(e, "sha:abc", res_keep, &f);
    assert_string_equal(f.rec->id, b);
    res_clear(&f);
    r = do_transition(e, a, "pr_created", "x", "{\"aliases\":[\"\"]}", "w");
    assert_int_equal(r.code, LF_INVALID_REQUEST);
    res_clear(&r);
    lf_engine_delete(e, a, "admin", res_keep, &f);
    res_clear(&f);
    lf_engine_find_by_ref(e, "pr:o/r#2", res_keep, &f);
    assert_int_equal(f.code, LF_NOT_FOUND);
    res_clear(&f);
    lf_engine_find_by_ref(e, "sha:abc", res_keep, &f);
    assert_string_equal(f.rec->id, b);
    res_clear(&f);
}

/* ---- a tick over many records holds the loop a page at a time -------- */

typedef struct beat {
    struct event *ev;
    int beats;                  /* turns of the loop while the tick ran */
    bool done;
    lf_code code;
    char *doc;
    lf_engine **free_at;        /* freed at turn free_beat, if not NULL */
    int free_beat;
} beat;

static const struct timeval no_wait = {0, 0};

static void on_beat(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    beat *b = arg;
    if (b->done) return;
    if (++b->beats == b->free_beat && b->free_at) {
        lf_engine_free(*b->free_at);
        *b->free_at = NULL;
        return;
    }
    evtimer_add(b->ev, &no_wait);
}

static void on_ticked(lf_code code, const char *error, const char *doc, void *arg) {
    (void)error;
    beat *b = arg;
    b->done = true;
    b->code = code;
    b->doc = doc ? strdup(doc) : NULL;
}

/* A memory: engine on policies whose ticks page on base's loop. */
static lf_engine *engine_on_loop(const char *policies, struct event_base *base) {
    assert_non_null(base);
    char err[512];
    lf_engine_config cfg = {.store = "memory:", .policies = policies, .base = base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) fail_msg("%s", err);
    return e;
}

/* 2,500 records waiting in ci_failed (a retry without a backoff): serve's
 * first tick looks at every one of them, a page of 1,000 at a time, the
 * loop turning between pages -- before, the embedded stores answered the
 * whole state inside the call and the loop waited for all of it. Every
 * record is listed once and none is due; the next tick (its window: the
 * records that entered in the last seconds, all of them here) pages the
 * same way, and an engine freed while it waits for the loop ends it. */
static void tick_pages_turn_the_loop(void **state) {
    (void)state;
    static const char *const (TO_FAILED[4])[2] = {
        {"task_queued", "w"}, {"pr_created", "p"}, {"ci_pending", "c"},
        {"ci_failed", "f"}};
    struct event_base *base = event_base_new();
    lf_engine *e = engine_on_loop(bare, base);
    for (int i = 0; i < 2500; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "o/r#%d", i);
        walk(e, new_record(e, ref), TO_FAILED, 4);
    }
    for (int round = 0; round < 2; round++) {
        lf_stats before, after;
        lf_engine_stats(e, &before);
        beat b = {0};
        b.ev = evtimer_new(base, on_beat, &b);
        evtimer_add(b.ev, &no_wait);
        lf_engine_fire_due(e, 0, on_ticked, &b);
        assert_false(b.done);           /* the first page only, then the loop */
        if (round == 1) {               /* freed while it waits: it ends */
            lf_engine_free(e);
            e = NULL;
            assert_true(b.done);
            assert_int_equal(b.code, LF_UNAVAILABLE);
        }
        while (!b.done) event_base_loop(base, EVLOOP_ONCE);
        event_free(b.ev);
        if (round == 0) {
            assert_int_equal(b.code, LF_OK);
            assert_true(b.beats >= 3);  /* after each of the three pages */
            assert_non_null(strstr(b.doc, "\"fired\":[]"));
            lf_engine_stats(e, &after);
            assert_int_equal(after.timer_records - before.timer_records, 2500);
        }
        free(b.doc);
    }
    event_base_free(base);
}

/* A listing of 2,500 timers (`loopforge tick`, GET /v1/timers) comes
 * back in due order, written a page at a time: two timed states, listed
 * one after the other, whose timers fall due the other way round (the
 * second state's are an hour sooner), so the order is made, not the one
 * they were listed in; the loop turns while the reply is written as
 * while the states are listed (5 pages listed, then 3 written: 7 turns
 * between them; before, the reply was sorted and written at once, and
 * 100,000 timers held the loop ~35 ms freeing their strings one by one).
 * An engine freed while the reply is being written still hands it over
 * whole. */
/* An engine on `base` whose workflow has two timed states, slow (2h) and
 * fast (1h), with 2,500 records: the odd ones in fast, the even in slow;
 * its policies in dir (removed by the caller). */
static lf_engine *two_timed(char *dir, struct event_base *base) {
    tdir d;
    assert_non_null(mkdtemp(dir));
    snprintf(d.root, sizeof d.root, "%s", dir);
    put(&d, "workflows/two.lua",
        "return workflow {\n"
        "  name = \"loopforge\",\n"
        "  states = { \"open\", \"slow\", \"fast\", \"done\" },\n"
        "  initial = \"open\", terminal = { \"done\" },\n"
        "  edges = { { \"open\", \"slow\" }, { \"open\", \"fast\" },\n"
        "            { \"slow\", \"done\" }, { \"fast\", \"done\" } },\n"
        "  timers = { slow = { { \"2h\", to = \"done\", trigger = \"t.slow\" } },\n"
        "             fast = { { \"1h\", to = \"done\", trigger = \"t.fast\" } } },\n"
        "}\n");
    lf_engine *e = engine_on_loop(dir, base);
    for (int i = 0; i < 2500; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "o/r#%d", i);
        const char *to = i % 2 ? "fast" : "slow";
        res r = do_transition(e, new_record(e, ref), to, "go", NULL, "tester");
        assert_true(r.success);
        res_clear(&r);
    }
    return e;
}

static void tick_reply_in_due_order_by_pages(void **state) {
    (void)state;
    char dir[] = "/tmp/lf-tick-XXXXXX", path[128];
    struct event_base *base = event_base_new();
    lf_engine *e = two_timed(dir, base);
    for (int round = 0; round < 2; round++) {
        beat b = {.free_at = round ? &e : NULL, .free_beat = 6};
        b.ev = evtimer_new(base, on_beat, &b);
        evtimer_add(b.ev, &no_wait);
        lf_engine_tick(e, 0, false, on_ticked, &b);
        assert_false(b.done);
        while (!b.done) event_base_loop(base, EVLOOP_ONCE);
        event_free(b.ev);
        assert_int_equal(b.code, LF_OK);
        if (!round) assert_true(b.beats >= 7);
        cJSON *doc = cJSON_Parse(b.doc), *t;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "timers");
        assert_int_equal(cJSON_GetArraySize(list), 2500);
        int k = 0;
        const char *last = "";
        cJSON_ArrayForEach(t, list) {
            const char *due = cJSON_GetObjectItemCaseSensitive(t, "due")->valuestring,
                       *st = cJSON_GetObjectItemCaseSensitive(t, "state")->valuestring;
            assert_true(strcmp(last, due) <= 0);
            assert_string_equal(st, k++ < 1250 ? "fast" : "slow");
            last = due;
        }
        cJSON_Delete(doc);
        free(b.doc);
    }
    assert_null(e);
    event_base_free(base);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

/* lf_engine_timers on e, run on base to its answer: the document (NULL
 * for an error, its code in *code); the caller frees it. */
static cJSON *timers_of(lf_engine *e, struct event_base *base, const lf_timers_query *q,
                        lf_code *code) {
    tp_call c = {0};
    lf_engine_timers(e, q, tp_text, &c);
    while (!c.done) event_base_loop(base, EVLOOP_ONCE);
    *code = c.code;
    cJSON *doc = c.doc ? cJSON_Parse(c.doc) : NULL;
    free(c.doc);
    return doc;
}

static const char *item_str(const cJSON *o, const char *k) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* A listing of the timers in parts (GET /v1/timers' limit, cursor,
 * due_by and records): pages that resume where the last stopped, in due
 * order, ties by id, every timer once; due_by reads only the records that
 * can be due by then (the fast state's: their records alone are listed);
 * records names the ones wanted; a cursor not given by a listing, or too
 * many ids, is refused. */
static void timers_listed_in_parts(void **state) {
    (void)state;
    char dir[] = "/tmp/lf-tick-XXXXXX", path[128];
    struct event_base *base = event_base_new();
    lf_engine *e = two_timed(dir, base);
    int64_t now = lf_now_us();
    lf_code code;
    /* pages of 1,000 */
    char *cursor = NULL, last[64] = "", *ids[3] = {0};
    int pages = 0, n = 0;
    do {
        lf_timers_query q = {.now_us = now, .limit = 1000, .cursor = cursor};
        cJSON *doc = timers_of(e, base, &q, &code), *t;
        assert_int_equal(code, LF_OK);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "timers");
        assert_int_equal(cJSON_GetArraySize(list), ++pages < 3 ? 1000 : 500);
        cJSON_ArrayForEach(t, list) {
            char key[64];   /* due, then id: strictly increasing */
            snprintf(key, sizeof key, "%s %s", item_str(t, "due"), item_str(t, "record_id"));
            assert_true(strcmp(last, key) < 0);
            snprintf(last, sizeof last, "%s", key);
            assert_string_equal(item_str(t, "state"), n++ < 1250 ? "fast" : "slow");
            if (n == 7 || n == 2000) ids[n == 7 ? 0 : 1] = strdup(item_str(t, "record_id"));
        }
        free(cursor);
        const char *next = item_str(doc, "next_cursor");
        cursor = next ? strdup(next) : NULL;
        cJSON_Delete(doc);
    } while (cursor);
    assert_int_equal(pages, 3);
    assert_int_equal(n, 2500);
    /* pages of 100: the same order, and a page reads about a page of each
     * state (listed oldest first), not all 2,500 */
    char *all[2500];
    int k = 0;
    pages = 0;
    last[0] = '\0';
    do {
        lf_stats was, now_stats;
        lf_engine_stats(e, &was);
        lf_timers_query q = {.now_us = now, .limit = 100, .cursor = cursor};
        cJSON *doc = timers_of(e, base, &q, &code), *t;
        lf_engine_stats(e, &now_stats);
        assert_int_equal(code, LF_OK);
        assert_true(now_stats.timer_records - was.timer_records < 500);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "timers")),
                         100);
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "timers")) {
            char key[64];
            snprintf(key, sizeof key, "%s %s", item_str(t, "due"), item_str(t, "record_id"));
            assert_true(strcmp(last, key) < 0);
            snprintf(last, sizeof last, "%s", key);
            all[k++] = strdup(item_str(t, "record_id"));
        }
        pages++;
        free(cursor);
        const char *next = item_str(doc, "next_cursor");
        cursor = next ? strdup(next) : NULL;
        cJSON_Delete(doc);
    } while (cursor && k < 2500);
    assert_null(cursor);
    assert_int_equal(pages, 25);
    /* due within 90 minutes: the fast ones, and only they are read */
    lf_stats before, after;
    lf_engine_stats(e, &before);
    lf_timers_query q = {.now_us = now, .due_by_us = now + 90 * 60 * 1000000LL};
    cJSON *doc = timers_of(e, base, &q, &code);
    lf_engine_stats(e, &after);
    assert_int_equal(code, LF_OK);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "timers")),
                     1250);
    assert_null(item_str(doc, "next_cursor"));
    assert_int_equal(after.timer_records - before.timer_records, 1250);
    cJSON_Delete(doc);
    /* two records by id, one that is none */
    ids[2] = "loop-0000000000000000";
    q = (lf_timers_query){.now_us = now, .ids = (const char *const *)ids, .nids = 3};
    doc = timers_of(e, base, &q, &code);
    assert_int_equal(code, LF_OK);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "timers");
    assert_int_equal(cJSON_GetArraySize(list), 2);
    assert_string_equal(item_str(cJSON_GetArrayItem(list, 0), "record_id"), ids[0]);
    assert_string_equal(item_str(cJSON_GetArrayItem(list, 1), "record_id"), ids[1]);
    cJSON_Delete(doc);
    free(ids[0]);
    free(ids[1]);
    /* refused */
    q = (lf_timers_query){.cursor = "soon"};
    assert_null(timers_of(e, base, &q, &code));
    assert_int_equal(code, LF_INVALID_REQUEST);
    q = (lf_timers_query){.ids = (const char *const *)ids, .nids = 1001};
    assert_null(timers_of(e, base, &q, &code));
    assert_int_equal(code, LF_INVALID_REQUEST);
    /* timers of their own on 300 of the fast ones, due sooner than any
     * state's: a page of 100 is the earliest of them, and reads about a
     * page of each listing (the records with timers of their own by due) */
    for (int i = 0; i < 300; i++) {
        res r = {0};
        lf_engine_schedule(e, all[i], "fast", (600 + i) * 1000000LL, "done", "own.late", NULL,
                           "tester", res_keep, &r);
        while (!r.fired) event_base_loop(base, EVLOOP_ONCE);
        assert_true(r.success);
        res_clear(&r);
    }
    lf_engine_stats(e, &before);
    lf_timers_query own = {.now_us = lf_now_us(), .limit = 100};
    cJSON *page = timers_of(e, base, &own, &code), *t;
    lf_engine_stats(e, &after);
    assert_int_equal(code, LF_OK);
    assert_true(after.timer_records - before.timer_records < 800);
    k = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(page, "timers")) {
        assert_string_equal(item_str(t, "record_id"), all[k++]);
        assert_string_equal(item_str(t, "trigger"), "own.late");
    }
    assert_int_equal(k, 100);
    assert_non_null(item_str(page, "next_cursor"));
    /* and every page after it: in order, each timer once, each page
     * reading about a page of each listing (a cursor bounds them below) */
    char *next = strdup(item_str(page, "next_cursor")), prev[64] = "";
    cJSON_Delete(page);
    while (next) {
        lf_engine_stats(e, &before);
        own = (lf_timers_query){.now_us = own.now_us, .limit = 100, .cursor = next};
        page = timers_of(e, base, &own, &code);
        lf_engine_stats(e, &after);
        assert_int_equal(code, LF_OK);
        assert_true(after.timer_records - before.timer_records < 800);
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(page, "timers")) {
            char key[64];
            snprintf(key, sizeof key, "%s %s", item_str(t, "due"), item_str(t, "record_id"));
            assert_true(strcmp(prev, key) < 0);
            snprintf(prev, sizeof prev, "%s", key);
            if (k < 300) assert_string_equal(item_str(t, "record_id"), all[k]);
            k++;
        }
        free(next);
        next = item_str(page, "next_cursor") ? strdup(item_str(page, "next_cursor")) : NULL;
        cJSON_Delete(page);
    }
    assert_int_equal(k, 2500);
    for (int i = 0; i < 2500; i++) free(all[i]);
    lf_engine_free(e);
    event_base_free(base);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

/* The loop the timers' helpers wait on (timers_pages.h). */
static struct event_base *tp_base;

static void wait_until(const bool *done) {
    while (!*done) event_base_loop(tp_base, EVLOOP_ONCE);
}

/* 400 records whose timers tie and interleave across two timed states, a
 * retry's jittered backoff and timers of their own: the listing read in
 * pages of 1, 7, 50 and 1,000 is the whole listing cut in pages (each
 * state's listing stops early on memory: this checks where). */
static void timers_pages_are_the_listing_cut(void **state) {
    (void)state;
    tdir d = {"/tmp/lf-tp-XXXXXX"};
    assert_non_null(mkdtemp(d.root));
    put(&d, "workflows/loopforge.lua", TP_WORKFLOW);
    tp_base = event_base_new();
    lf_engine *e = engine_on_loop(d.root, tp_base);
    tp_fill(e, 400);
    tp_check(e, 400);
    lf_engine_free(e);
    event_base_free(tp_base);
    nftw(d.root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(new_record_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(creation_fields_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(valid_appends_invalid_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(happy_path_and_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_path, setup, teardown),
        cmocka_unit_test_setup_teardown(review_path, setup, teardown),
        cmocka_unit_test(long_history_shares_strings),
        cmocka_unit_test(history_json_exact_bytes),
        cmocka_unit_test(history_json_repeated_moves),
        cmocka_unit_test_setup_teardown(json_round_trip_and_key_order, setup, teardown),
        cmocka_unit_test_setup_teardown(create_get_and_result_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(metadata_on_history, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_ref, setup, teardown),
        cmocka_unit_test(list_by_state),
        cmocka_unit_test_setup_teardown(delete_semantics, setup, teardown),
        cmocka_unit_test_setup_teardown(actors_and_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(observation_records_violation, setup, teardown),
        cmocka_unit_test_setup_teardown(aliases_find_records, setup, teardown),
        cmocka_unit_test(tick_pages_turn_the_loop),
        cmocka_unit_test(tick_reply_in_due_order_by_pages),
        cmocka_unit_test(timers_listed_in_parts),
        cmocka_unit_test(timers_pages_are_the_listing_cut),
    };
    return cmocka_run_group_tests_name("engine", tests, make_bare, remove_bare);
}
