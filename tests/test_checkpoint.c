/* test_checkpoint.c -- checkpoints appended after the entries they state
 * (docs/audit.md): the verifier (src/core/verify.c) accepts a checkpoint
 * of the log's first T entries committed as any entry up to
 * LF_CHECKPOINT_LAG after them -- rebuilding the root of T from its
 * snapshots across every boundary -- and refuses one that states more
 * than precede it, lags further, or signs another size's root or head;
 * and the engine (src/engine/evidence.c) signs off its loop: with an
 * event base the checkpoint is answered from the loop, entries written
 * meanwhile may come first, and the log verifies with the key. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <cjson/cJSON.h>

#include "../src/core/buf.h"
#include "../src/core/clock.h"
#include "../src/core/hash.h"
#include "../src/core/merkle.h"
#include "../src/core/sign.h"
#include "../src/core/verify.h"
#include "engine_sync.h"

/* ---- a log written by hand --------------------------------------------- */

typedef struct log {
    char **lines;
    unsigned char (*leaves)[32];    /* leaf i of entry i + 1 */
    size_t n, cap;
    char prev[LF_HASH_LEN + 1];
    lf_key *key;
} log_t;

static void log_init(log_t *l) {
    memset(l, 0, sizeof *l);
    memcpy(l->prev, LF_GENESIS, sizeof l->prev);
    char *priv = NULL, *pub = NULL, err[128];
    assert_int_equal(lf_key_generate(&priv, &pub, err, sizeof err), 0);
    assert_non_null(l->key = lf_key_parse(priv, strlen(priv), err, sizeof err));
    free(priv);
    free(pub);
}

static void log_free(log_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->lines[i]);
    free(l->lines);
    free(l->leaves);
    lf_key_free(l->key);
}

static void seal(log_t *l, lf_entry *e) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->lines = realloc(l->lines, l->cap * sizeof *l->lines);
        l->leaves = realloc(l->leaves, l->cap * sizeof *l->leaves);
    }
    lf_buf line = LF_BUF_INIT;
    lf_ts_format(1700000000000000LL + (int64_t)l->n, e->timestamp);
    lf_entry_seal(e, l->n + 1, l->prev, &line);
    memcpy(l->prev, e->hash, sizeof l->prev);
    assert_int_equal(lf_unhex(e->hash, l->leaves[l->n], 32), 0);
    l->lines[l->n++] = lf_buf_steal(&line);
}

static void add_entry(log_t *l) {
    lf_entry e = {0};
    e.record_id = "loop-0123456789abcdef";
    e.kind = LF_ENTRY_NOTED;
    e.version = 1;
    e.trigger = "t";
    e.actor = "tester";
    seal(l, &e);
}

/* A checkpoint of the first t entries (root of `root_of` entries, head
 * of entry `head_of`: t and t for an honest one), signed. */
static void add_checkpoint_of(log_t *l, uint64_t t, uint64_t root_of, uint64_t head_of) {
    lf_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    unsigned char root[32], sig[LF_SIG_LEN];
    cp.tree_size = t;
    lf_merkle_root_of((const unsigned char(*)[32])l->leaves, root_of, root);
    lf_hex(root, 32, cp.root);
    if (head_of) lf_hex(l->leaves[head_of - 1], 32, cp.head);
    else memcpy(cp.head, LF_GENESIS, sizeof cp.head);
    lf_ts_format(1700000000000000LL, cp.time);
    lf_key_id(l->key, cp.key_id);
    lf_buf text = LF_BUF_INIT, meta = LF_BUF_INIT;
    lf_checkpoint_text(&cp, &text);
    assert_int_equal(lf_key_sign(l->key, text.p, text.len, sig), 0);
    char *b64 = lf_base64(sig, sizeof sig);
    snprintf(cp.signature, sizeof cp.signature, "%s", b64);
    free(b64);
    lf_checkpoint_json(&cp, &meta);
    lf_entry e = {0};
    e.kind = LF_ENTRY_CHECKPOINT;
    e.version = t;
    e.trigger = "checkpoint";
    e.actor = "tester";
    e.metadata = meta.p;
    seal(l, &e);
    lf_buf_free(&text);
    lf_buf_free(&meta);
}

static void add_checkpoint(log_t *l, uint64_t t) { add_checkpoint_of(l, t, t, t); }

/* Verifies the log with its key: 0, or the seq of the first bad entry
 * with err set. */
static uint64_t verify(const log_t *l, char *err, size_t errlen, uint64_t *checkpoints) {
    lf_verifier v;
    lf_verifier_init(&v, l->key);
    uint64_t bad = 0;
    for (size_t i = 0; i < l->n && !bad; i++)
        if (lf_verifier_feed(&v, l->lines[i], strlen(l->lines[i]), err, errlen)) bad = i + 1;
    if (checkpoints) *checkpoints = v.checkpoints;
    lf_verifier_free(&v);
    return bad;
}

static void adds(log_t *l, int n) {
    for (int i = 0; i < n; i++) add_entry(l);
}

/* Lags of 0, 1, 63, 64, 65, 200 and the most allowed, at sizes on and
 * off the verifier's snapshot boundaries, and one of the empty log. */
static void lagging_checkpoints_verify(void **state) {
    (void)state;
    log_t l;
    log_init(&l);
    add_checkpoint(&l, 0);              /* entry 1: the empty log */
    static const int lags[] = {0, 1, 63, 64, 65, 200, LF_CHECKPOINT_LAG, 3, 0};
    int expect = 1;
    for (size_t k = 0; k < sizeof lags / sizeof *lags; k++) {
        adds(&l, 100 + (int)k * 37);
        uint64_t t = l.n;
        adds(&l, lags[k]);
        add_checkpoint(&l, t);
        expect++;
    }
    /* t a multiple of 64 (a snapshot itself), lagging */
    while (l.n % 64) add_entry(&l);
    uint64_t t = l.n;
    adds(&l, 10);
    add_checkpoint(&l, t);
    expect++;
    char err[300] = "";
    uint64_t cps = 0;
    uint64_t bad = verify(&l, err, sizeof err, &cps);
    if (bad) fail_msg("seq %llu refused: %s", (unsigned long long)bad, err);
    assert_int_equal(cps, expect);
    log_free(&l);
}

/* Each bad checkpoint on its own log; returns the error. */
static void expect_refused(void (*build)(log_t *), const char *want) {
    log_t l;
    log_init(&l);
    build(&l);
    char err[300] = "";
    uint64_t bad = verify(&l, err, sizeof err, NULL);
    if (bad != l.n) fail_msg("expected seq %zu refused, got %llu (%s)", l.n,
                             (unsigned long long)bad, err);
    if (!strstr(err, want)) fail_msg("error \"%s\" lacks \"%s\"", err, want);
    log_free(&l);
}

static void too_far_behind(log_t *l) {
    adds(l, 300);
    adds(l, LF_CHECKPOINT_LAG + 1);
    add_checkpoint(l, 300);
}

static void ahead_of_itself(log_t *l) {
    adds(l, 300);
    add_checkpoint_of(l, 301, 300, 300);
}

static void another_sizes_root(log_t *l) {
    adds(l, 300);
    adds(l, 5);
    add_checkpoint_of(l, 300, 301, 300);
}

static void another_sizes_head(log_t *l) {
    adds(l, 300);
    adds(l, 5);
    add_checkpoint_of(l, 300, 300, 299);
}

static void bad_lagging_checkpoints_refused(void **state) {
    (void)state;
    expect_refused(too_far_behind, "up to 1024 fewer (it states 300)");
    expect_refused(ahead_of_itself, "up to 1024 fewer (it states 301)");
    expect_refused(another_sizes_root, "the first 300 entries do not make the Merkle root");
    expect_refused(another_sizes_head, "the first 300 entries do not make the Merkle root");
}

/* ---- the engine signs off its loop ---------------------------------- */

typedef struct answer {
    int fired;
    lf_code code;
    uint64_t seq, tree_size;
} answer;

static void on_cp(lf_code code, const char *error, const char *doc, void *arg) {
    answer *a = arg;
    (void)error;
    a->fired++;
    a->code = code;
    cJSON *o = doc ? cJSON_Parse(doc) : NULL;
    const cJSON *seq = cJSON_GetObjectItem(o, "seq");
    const cJSON *size = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "checkpoint"), "tree_size");
    if (cJSON_IsNumber(seq)) a->seq = (uint64_t)seq->valuedouble;
    if (cJSON_IsNumber(size)) a->tree_size = (uint64_t)size->valuedouble;
    cJSON_Delete(o);
}

static char key_path[64], pub_pem[1024];

static void write_key(void) {
    char *priv = NULL, *pub = NULL, err[128];
    assert_int_equal(lf_key_generate(&priv, &pub, err, sizeof err), 0);
    snprintf(key_path, sizeof key_path, "/tmp/lf-test-checkpoint-%d.key", (int)getpid());
    FILE *f = fopen(key_path, "w");
    assert_non_null(f);
    fputs(priv, f);
    fclose(f);
    snprintf(pub_pem, sizeof pub_pem, "%s", pub);
    free(priv);
    free(pub);
}

static lf_engine *engine(struct event_base *base) {
    lf_engine_config cfg = {
        .store = "memory:", .policies = "policies", .base = base, .signing_key = key_path};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) fail_msg("engine: %s", err);
    return e;
}

static void one_record(lf_engine *e, int n) {
    char ref[32];
    snprintf(ref, sizeof ref, "r-%d", n);
    lf_create_req req = {.ref = ref, .actor = "tester"};
    res r = do_create(e, &req);
    assert_true(r.success);
    res t = do_transition(e, r.rec->id, "task_queued", "t", NULL, "tester");
    assert_true(t.success);
    res g = do_get(e, r.rec->id);
    assert_string_equal(g.rec->state, "task_queued");
    res_clear(&r);
    res_clear(&t);
    res_clear(&g);
}

typedef struct lines {
    lf_verifier v;
    uint64_t n;
    char err[300];
    bool bad, end;
} lines_t;

static void feed(lf_code code, const char *error, const char *const *l, const size_t *lens,
                 size_t n, uint64_t last, void *arg) {
    lines_t *s = arg;
    (void)error, (void)last;
    assert_int_equal(code, LF_OK);
    s->end = n == 0;
    for (size_t i = 0; i < n && !s->bad; i++, s->n++)
        s->bad = lf_verifier_feed(&s->v, l[i], lens[i], s->err, sizeof s->err) != 0;
}

/* The whole log through the verifier with the key. */
static void expect_verifies(lf_engine *e, uint64_t checkpoints) {
    char err[128];
    lf_key *pub = lf_key_parse(pub_pem, strlen(pub_pem), err, sizeof err);
    assert_non_null(pub);
    lines_t s;
    memset(&s, 0, sizeof s);
    lf_verifier_init(&s.v, pub);
    while (!s.end && !s.bad) lf_engine_audit(e, NULL, s.n, 100, feed, &s);
    if (s.bad) fail_msg("the log does not verify: %s", s.err);
    assert_int_equal(s.v.checkpoints, checkpoints);
    lf_verifier_free(&s.v);
    lf_key_free(pub);
}

/* Without an event base the checkpoint is answered before the call
 * returns, as the next entry. */
static void without_base_answered_at_once(void **state) {
    (void)state;
    write_key();
    lf_engine *e = engine(NULL);
    for (int i = 0; i < 3; i++) one_record(e, i);
    answer a = {0};
    lf_engine_checkpoint(e, "tester", on_cp, &a);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.code, LF_OK);
    uint64_t t = a.tree_size;
    assert_true(t >= 6);
    assert_int_equal(a.seq, t + 1);
    expect_verifies(e, 1);
    lf_engine_free(e);
    unlink(key_path);
}

static bool fired(void *arg) { return ((answer *)arg)->fired > 0; }

/* With a base: answered from the loop, not inside the call; the entries
 * written before the loop runs may come before it (it is taken at the
 * next write once signed), it states the log as it was asked for, and a
 * second one waits for the first. */
static void with_base_signed_off_the_loop(void **state) {
    (void)state;
    write_key();
    struct event_base *base = event_base_new();
    lf_engine *e = engine(base);
    for (int i = 0; i < 3; i++) one_record(e, i);
    answer a = {0}, busy = {0};
    size_t before = audit_len(e);
    lf_engine_checkpoint(e, "tester", on_cp, &a);
    assert_int_equal(a.fired, 0);
    lf_engine_checkpoint(e, "tester", on_cp, &busy);
    assert_int_equal(busy.fired, 1);
    assert_int_equal(busy.code, LF_CONFLICT);
    for (int i = 3; i < 40; i++) one_record(e, i);
    while (!fired(&a) && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.code, LF_OK);
    assert_int_equal(a.tree_size, before);
    assert_true(a.seq > a.tree_size && a.seq <= before + 1 + 37 * 2);
    /* However long the signature takes, the writes never leave it more
     * than half the lag allowed behind: 600 entries without the loop. */
    answer far = {0};
    before = audit_len(e);
    lf_engine_checkpoint(e, "tester", on_cp, &far);
    for (int i = 40; i < 340; i++) one_record(e, i);
    while (!fired(&far) && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    assert_int_equal(far.code, LF_OK);
    assert_int_equal(far.tree_size, before);
    assert_true(far.seq - 1 - far.tree_size <= LF_CHECKPOINT_LAG / 2);
    expect_verifies(e, 2);
    /* and the next */
    answer b = {0};
    lf_engine_checkpoint(e, "tester", on_cp, &b);
    while (!fired(&b) && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    assert_int_equal(b.code, LF_OK);
    assert_int_equal(b.seq, b.tree_size + 1);
    assert_int_equal(b.tree_size, audit_len(e) - 1);
    expect_verifies(e, 3);
    lf_engine_free(e);
    event_base_free(base);
    unlink(key_path);
}

/* Freed while the checkpoint is being signed: answered, not lost. */
static void freed_while_signing(void **state) {
    (void)state;
    write_key();
    struct event_base *base = event_base_new();
    lf_engine *e = engine(base);
    one_record(e, 0);
    answer a = {0};
    lf_engine_checkpoint(e, "tester", on_cp, &a);
    lf_engine_free(e);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.code, LF_UNAVAILABLE);
    event_base_free(base);
    unlink(key_path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lagging_checkpoints_verify),
        cmocka_unit_test(bad_lagging_checkpoints_refused),
        cmocka_unit_test(without_base_answered_at_once),
        cmocka_unit_test(with_base_signed_off_the_loop),
        cmocka_unit_test(freed_while_signing),
    };
    return cmocka_run_group_tests_name("checkpoints", tests, NULL, NULL);
}
