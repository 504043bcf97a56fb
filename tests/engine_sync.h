/* engine_sync.h -- test helpers: run one engine request and keep a copy
 * of its result (the engine's pointers live only during the callback). */
#ifndef LF_TEST_ENGINE_SYNC_H
#define LF_TEST_ENGINE_SYNC_H

#include <stdlib.h>
#include <string.h>
#include "../src/loopforge.h"
#include "../src/core/record.h"

typedef struct res {
    int fired;
    bool success;
    lf_code code;
    char *error, *prev, *next, *json;
    lf_record *rec;
} res;

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void res_keep(const lf_result *r, void *arg) {
    res *o = arg;
    o->fired++;
    o->success = r->success;
    o->code = r->code;
    o->error = dup_or_null(r->error);
    o->prev = dup_or_null(r->previous_state);
    o->next = dup_or_null(r->new_state);
    o->json = lf_result_json(r);
    o->rec = r->record ? lf_record_dup(r->record) : NULL;
}

static void res_clear(res *o) {
    free(o->error);
    free(o->prev);
    free(o->next);
    free(o->json);
    lf_record_free(o->rec);
    memset(o, 0, sizeof *o);
}

static res do_create(lf_engine *e, const lf_create_req *req) {
    res o = {0};
    lf_engine_create(e, req, res_keep, &o);
    return o;
}

static res do_transition(lf_engine *e, const char *id, const char *to,
                         const char *trigger, const char *meta, const char *actor) {
    res o = {0};
    lf_transition_req t = {
        .id = id, .to = to, .trigger = trigger, .metadata = meta, .actor = actor};
    lf_engine_transition(e, &t, res_keep, &o);
    return o;
}

static res do_get(lf_engine *e, const char *id) {
    res o = {0};
    lf_engine_get(e, id, res_keep, &o);
    return o;
}

/* Number of audit entries in the whole log. */
typedef struct audit_count {
    uint64_t last;
    size_t n;
} audit_count;
static void count_cb(lf_code c, const char *err, const char *const *l, const size_t *lens,
                     size_t n, uint64_t last, void *arg) {
    (void)c;
    (void)err;
    (void)l;
    (void)lens;
    audit_count *a = arg;
    a->n += n;
    a->last = last;
}
static size_t audit_len(lf_engine *e) {
    audit_count a = {0, 0};
    size_t before;
    do {
        before = a.n;
        lf_engine_audit(e, NULL, a.last, 0, count_cb, &a);
    } while (a.n != before);
    return a.n;
}

#endif
