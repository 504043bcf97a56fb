/* engine.c -- the transition pipeline: load the record, check the edge in
 * C, commit with compare-and-set (re-validating on conflict), report.
 *
 * Every request is a small heap context that survives until its store
 * callback fires, so the same code runs on stores that complete inline
 * (memory:, file:) and on asynchronous ones. */
#include "../loopforge.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/entry.h"
#include "../core/record.h"
#include "../core/workflow.h"
#include "../rules/rules.h"
#include "../store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define MAX_ATTEMPTS 8          /* commit retries after a version conflict */
#define DEFAULT_STORE "file:./var/loopforge.journal"
#define DEFAULT_POLICIES "./policies"

struct lf_engine {
    lf_store *store;
    lf_rules *rules;
    struct event_base *base;
};

static const char *code_names[LF_CODE__COUNT] = {
    "ok", "not_found", "invalid_transition", "denied", "conflict",
    "invalid_request", "unavailable", "duplicate_ref",
};

const char *lf_code_name(lf_code c) {
    return (unsigned)c < LF_CODE__COUNT ? code_names[c] : "unknown";
}

const char *lf_version(void) { return LF_VERSION_STRING; }

static const char *pick(const char *a, const char *env, const char *dflt) {
    const char *e;
    if (a && *a) return a;
    if ((e = getenv(env)) && *e) return e;
    return dflt;
}

lf_engine *lf_engine_new(const lf_engine_config *cfg, char *err, size_t errlen,
                         lf_code *code) {
    lf_engine_config none = {0};
    lf_code dummy;
    if (!cfg) cfg = &none;
    if (!code) code = &dummy;
    lf_engine *e = calloc(1, sizeof *e);
    if (!e) { *code = LF_UNAVAILABLE; snprintf(err, errlen, "out of memory"); return NULL; }
    e->base = cfg->base;
    lf_buf problems = LF_BUF_INIT;
    e->rules = lf_rules_load(pick(cfg->policies, "LOOPFORGE_POLICIES",
                                  DEFAULT_POLICIES), &problems);
    if (!e->rules) {
        *code = LF_INVALID_REQUEST;
        /* One line per problem; drop the trailing newline. */
        if (problems.len && problems.p[problems.len - 1] == '\n') problems.p[--problems.len] = '\0';
        snprintf(err, errlen, "%s", lf_buf_str(&problems));
        lf_buf_free(&problems);
        free(e);
        return NULL;
    }
    lf_buf_free(&problems);
    e->store = lf_store_open(pick(cfg->store, "LOOPFORGE_STORE", DEFAULT_STORE),
                             cfg->base, code, err, errlen);
    if (!e->store) {
        lf_rules_free(e->rules);
        free(e);
        return NULL;
    }
    *code = LF_OK;
    return e;
}

void lf_engine_free(lf_engine *e) {
    if (!e) return;
    lf_store_free(e->store);
    lf_rules_free(e->rules);
    free(e);
}

const char *lf_engine_generation(const lf_engine *e) {
    return lf_rules_generation(e->rules);
}

/* ---- results ------------------------------------------------------------ */

static void finish(lf_result_cb *cb, void *arg, lf_code code, const char *error,
                   const char *prev, const char *next, const lf_record *rec) {
    lf_result r = {code == LF_OK, code, code == LF_OK ? NULL : error, prev,
                   next, rec, "[]"};
    cb(&r, arg);
}

char *lf_result_json(const lf_result *r) {
    lf_buf b = LF_BUF_INIT;
    lf_buf_puts(&b, r->success ? "{\"success\":true" : "{\"success\":false");
    lf_buf_puts(&b, ",\"code\":");
    lf_buf_json_str(&b, lf_code_name(r->code));
    lf_buf_puts(&b, ",\"error\":");
    lf_buf_json_str(&b, r->error);
    lf_buf_puts(&b, ",\"previous_state\":");
    lf_buf_json_str(&b, r->previous_state);
    lf_buf_puts(&b, ",\"new_state\":");
    lf_buf_json_str(&b, r->new_state);
    lf_buf_puts(&b, ",\"record\":");
    if (r->record) lf_record_to_json(r->record, &b);
    else lf_buf_puts(&b, "null");
    lf_buf_puts(&b, ",\"decisions\":");
    lf_buf_json_raw(&b, r->decisions, "[]");
    lf_buf_putc(&b, '}');
    return lf_buf_steal(&b);
}

/* ---- request validation ------------------------------------------------- */

/* A JSON object from the caller, normalized so its bytes in the audit log
 * are canonical. NULL or "{}" stays NULL (meaning {}), the common case,
 * with no parse at all. `strings` demands string values (labels). */
static int take_object(const char *text, const char *what, int strings,
                       char **out, cJSON **tree, char *err, size_t errlen) {
    *out = NULL;
    if (tree) *tree = NULL;
    if (!text || strcmp(text, "{}") == 0) return 0;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(text, &end, 1);
    if (!cJSON_IsObject(o)) {
        if (!o && end)
            snprintf(err, errlen, "%s: malformed JSON at offset %ld", what,
                     (long)(cJSON_GetErrorPtr() - text));
        else
            snprintf(err, errlen, "%s: expected a JSON object", what);
        cJSON_Delete(o);
        return -1;
    }
    if (strings) {
        const cJSON *v;
        cJSON_ArrayForEach(v, o) if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s: value of '%s' must be a string", what,
                     v->string);
            cJSON_Delete(o);
            return -1;
        }
    }
    *out = cJSON_PrintUnformatted(o);
    if (tree) *tree = o;
    else cJSON_Delete(o);
    return 0;
}

static const lf_workflow *workflow_of(lf_engine *e, const char *name,
                                      char *err, size_t errlen) {
    const lf_workflow *wf = lf_rules_workflow(e->rules, name);
    if (!wf) snprintf(err, errlen, "Unknown workflow: %s", name ? name : "loopforge");
    return wf;
}

/* now, but never before `floor`: a record's history stays ordered even
 * if the clock steps back. */
static void stamp(char ts[LF_TS_LEN + 1], const char *floor) {
    lf_ts_format(lf_now_us(), ts);
    if (floor && floor[0] && strcmp(ts, floor) < 0) memcpy(ts, floor, LF_TS_LEN + 1);
}

/* ---- create ------------------------------------------------------------- */

typedef struct create_ctx {
    lf_result_cb *cb;
    void *arg;
    const char *initial;
} create_ctx;

static void created(lf_code code, const char *err, const lf_record *rec,
                    const lf_entry *e, void *arg) {
    create_ctx *c = arg;
    (void)e;
    finish(c->cb, c->arg, code, err, NULL, code == LF_OK ? c->initial : NULL,
           code == LF_OK ? rec : NULL);
}

void lf_engine_create(lf_engine *e, const lf_create_req *req, lf_result_cb *cb,
                      void *arg) {
    char err[512];
    char *labels = NULL, *meta = NULL;
    const lf_workflow *wf;
    if (!req->ref || !req->ref[0]) {
        finish(cb, arg, LF_INVALID_REQUEST, "ref is required", NULL, NULL, NULL);
        return;
    }
    if (!(wf = workflow_of(e, req->workflow, err, sizeof err)) ||
        take_object(req->labels, "labels", 1, &labels, NULL, err, sizeof err) ||
        take_object(req->metadata, "metadata", 0, &meta, NULL, err, sizeof err)) {
        cJSON_free(labels);
        finish(cb, arg, LF_INVALID_REQUEST, err, NULL, NULL, NULL);
        return;
    }
    char id[LF_ID_LEN + 1];
    if (lf_id_new(id)) {
        cJSON_free(labels); cJSON_free(meta);
        finish(cb, arg, LF_UNAVAILABLE, "no randomness for a record id", NULL, NULL, NULL);
        return;
    }
    /* The initial fields, and LoopForge's first history metadata. */
    lf_buf rec = LF_BUF_INIT, hist = LF_BUF_INIT;
    lf_buf_puts(&rec, "{\"ref\":");
    lf_buf_json_str(&rec, req->ref);
    lf_buf_puts(&rec, ",\"ref_number\":");
    if (req->has_ref_number) lf_buf_json_int(&rec, req->ref_number);
    else lf_buf_puts(&rec, "null");
    lf_buf_puts(&rec, ",\"repo\":");
    lf_buf_json_str(&rec, req->repo);
    lf_buf_puts(&rec, req->auto_merge ? ",\"auto_merge\":true" : ",\"auto_merge\":false");
    lf_buf_puts(&rec, ",\"labels\":");
    lf_buf_json_raw(&rec, labels, "{}");
    lf_buf_puts(&rec, ",\"metadata\":");
    lf_buf_json_raw(&rec, meta, "{}");
    lf_buf_puts(&rec, ",\"workflow\":");
    lf_buf_json_str(&rec, wf->name);
    lf_buf_putc(&rec, '}');
    lf_buf_puts(&hist, "{\"ref\":");
    lf_buf_json_str(&hist, req->ref);
    lf_buf_puts(&hist, ",\"repo\":");
    lf_buf_json_str(&hist, req->repo);
    lf_buf_putc(&hist, '}');

    lf_entry en = {0};
    en.record_id = id;
    en.kind = LF_ENTRY_CREATED;
    en.version = 1;
    en.to_state = wf->states[wf->initial];
    en.trigger = "created";
    en.actor = req->actor ? req->actor : "anonymous";
    stamp(en.timestamp, NULL);
    en.metadata = hist.p;
    en.policy_set = lf_rules_generation(e->rules);
    en.record = rec.p;
    create_ctx c = {cb, arg, wf->states[wf->initial]};
    /* Inline stores finish before returning; an asynchronous store copies
     * the entry when it serializes it, before returning, too. */
    lf_store_commit(e->store, &en, created, &c);
    lf_buf_free(&rec);
    lf_buf_free(&hist);
    cJSON_free(labels);
    cJSON_free(meta);
}

/* ---- transition and delete ---------------------------------------------- */

typedef struct txn {
    lf_engine *eng;
    lf_result_cb *cb;
    void *arg;
    lf_entry_kind kind;         /* transition or deleted */
    char *id, *to, *trigger, *actor;
    char *metadata;             /* normalized, or NULL */
    char *pr_changes;           /* "pr_url":…,"pr_number":… or NULL */
    int attempts;
    const char *from_name, *to_name;    /* workflow-owned, stable */
} txn;

static void txn_free(txn *t) {
    cJSON_free(t->metadata);
    free(t->pr_changes);
    free(t);
}

static void txn_load(txn *t);

static void txn_done(txn *t, lf_code code, const char *err, const char *prev,
                     const char *next, const lf_record *rec) {
    finish(t->cb, t->arg, code, err, prev, next, rec);
    txn_free(t);
}

static void txn_committed(lf_code code, const char *err, const lf_record *rec,
                          const lf_entry *e, void *arg) {
    txn *t = arg;
    (void)e;
    if (code == LF_CONFLICT && ++t->attempts < MAX_ATTEMPTS) {
        txn_load(t);            /* somebody else moved it: re-validate */
        return;
    }
    if (code != LF_OK) { txn_done(t, code, err, t->from_name, NULL, NULL); return; }
    txn_done(t, LF_OK, NULL, t->from_name, t->to_name,
             t->kind == LF_ENTRY_DELETED ? NULL : rec);
}

/* The record fields this transition sets: closed_at on entering a
 * terminal state, and pr_url/pr_number taken from the metadata. */
static char *txn_changes(const txn *t, bool terminal, const char *ts) {
    if (!terminal && !t->pr_changes) return NULL;
    lf_buf b = LF_BUF_INIT;
    lf_buf_putc(&b, '{');
    if (terminal) {
        lf_buf_puts(&b, "\"closed_at\":\"");
        lf_buf_add(&b, ts, LF_TS_LEN);
        lf_buf_putc(&b, '"');
    }
    if (t->pr_changes) {
        if (terminal) lf_buf_putc(&b, ',');
        lf_buf_puts(&b, t->pr_changes);
    }
    lf_buf_putc(&b, '}');
    return lf_buf_steal(&b);
}

static void txn_loaded(lf_code code, const char *err, const lf_record *rec,
                       const lf_entry *unused, void *arg) {
    txn *t = arg;
    char msg[512];
    (void)unused;
    if (code != LF_OK) { txn_done(t, code, err, NULL, NULL, NULL); return; }
    const lf_workflow *wf = workflow_of(t->eng, rec->workflow, msg, sizeof msg);
    if (!wf) { txn_done(t, LF_INVALID_REQUEST, msg, NULL, NULL, NULL); return; }
    int from = lf_workflow_state(wf, rec->state);
    if (from < 0) {
        snprintf(msg, sizeof msg, "Record %s is in state '%s', which workflow "
                 "%s does not have", rec->id, rec->state, wf->name);
        txn_done(t, LF_INVALID_REQUEST, msg, NULL, NULL, NULL);
        return;
    }
    t->from_name = wf->states[from];
    lf_entry en = {0};
    en.record_id = rec->id;
    en.kind = t->kind;
    en.version = rec->version + 1;
    en.from_state = rec->state;
    en.trigger = t->trigger;
    en.actor = t->actor;
    en.metadata = t->metadata;
    en.policy_set = lf_rules_generation(t->eng->rules);
    stamp(en.timestamp, rec->updated_at);
    char *changes = NULL;
    if (t->kind == LF_ENTRY_TRANSITION) {
        int to = lf_workflow_state(wf, t->to);
        if (to < 0) {
            snprintf(msg, sizeof msg, "Unknown state '%s' in workflow %s",
                     t->to, wf->name);
            txn_done(t, LF_INVALID_REQUEST, msg, t->from_name, NULL, NULL);
            return;
        }
        if (!lf_workflow_has_edge(wf, from, to)) {
            lf_buf b = LF_BUF_INIT;
            lf_workflow_invalid_msg(wf, from, t->to, &b);
            txn_done(t, LF_INVALID_TRANSITION, lf_buf_str(&b), t->from_name, NULL, rec);
            lf_buf_free(&b);
            return;
        }
        t->to_name = en.to_state = wf->states[to];
        en.changes = changes = txn_changes(t, lf_workflow_is_terminal(wf, to),
                                           en.timestamp);
    }
    lf_store_commit(t->eng->store, &en, txn_committed, t);
    free(changes);
}

static void txn_load(txn *t) {
    lf_store_get(t->eng->store, t->id, txn_loaded, t);
}

/* One allocation for the context and every string it keeps. */
static txn *txn_new(lf_engine *e, lf_entry_kind kind, const char *id,
                    const char *to, const char *trigger, const char *actor,
                    lf_result_cb *cb, void *arg) {
    size_t li = strlen(id) + 1, lt = strlen(to) + 1, lg = strlen(trigger) + 1;
    size_t la = strlen(actor) + 1;
    txn *t = malloc(sizeof *t + li + lt + lg + la);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    char *p = (char *)(t + 1);
    t->id = memcpy(p, id, li); p += li;
    t->to = memcpy(p, to, lt); p += lt;
    t->trigger = memcpy(p, trigger, lg); p += lg;
    t->actor = memcpy(p, actor, la);
    t->eng = e; t->kind = kind; t->cb = cb; t->arg = arg;
    return t;
}

/* pr_url (string or null) and pr_number (integer or null) in a
 * transition's metadata also set the record's fields, so a route that
 * links a PR needs no second request. */
static int pr_fields(cJSON *meta, char **out, char *err, size_t errlen) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(meta, "pr_url");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(meta, "pr_number");
    *out = NULL;
    if (!u && !n) return 0;
    if ((u && !cJSON_IsString(u) && !cJSON_IsNull(u)) ||
        (n && !cJSON_IsNull(n) && (!cJSON_IsNumber(n) ||
                                   n->valuedouble != (double)(int64_t)n->valuedouble))) {
        snprintf(err, errlen, "metadata: pr_url must be a string and pr_number an integer");
        return -1;
    }
    lf_buf b = LF_BUF_INIT;
    if (u) {
        lf_buf_puts(&b, "\"pr_url\":");
        lf_buf_json_str(&b, cJSON_IsString(u) ? u->valuestring : NULL);
    }
    if (n) {
        lf_buf_puts(&b, u ? ",\"pr_number\":" : "\"pr_number\":");
        if (cJSON_IsNull(n)) lf_buf_puts(&b, "null");
        else lf_buf_json_int(&b, (int64_t)n->valuedouble);
    }
    *out = lf_buf_steal(&b);
    return 0;
}

void lf_engine_transition(lf_engine *e, const lf_transition_req *req,
                          lf_result_cb *cb, void *arg) {
    char err[512];
    const char *missing = !req->id || !*req->id ? "record id" :
                          !req->to || !*req->to ? "target state" :
                          !req->trigger || !*req->trigger ? "trigger" : NULL;
    if (missing) {
        snprintf(err, sizeof err, "%s is required", missing);
        finish(cb, arg, LF_INVALID_REQUEST, err, NULL, NULL, NULL);
        return;
    }
    txn *t = txn_new(e, LF_ENTRY_TRANSITION, req->id, req->to, req->trigger,
                     req->actor ? req->actor : "anonymous", cb, arg);
    if (!t) { finish(cb, arg, LF_UNAVAILABLE, "out of memory", NULL, NULL, NULL); return; }
    cJSON *tree = NULL;
    if (take_object(req->metadata, "metadata", 0, &t->metadata, &tree, err, sizeof err) ||
        (tree && pr_fields(tree, &t->pr_changes, err, sizeof err))) {
        cJSON_Delete(tree);
        txn_free(t);
        finish(cb, arg, LF_INVALID_REQUEST, err, NULL, NULL, NULL);
        return;
    }
    cJSON_Delete(tree);
    txn_load(t);
}

void lf_engine_delete(lf_engine *e, const char *id, const char *actor,
                      lf_result_cb *cb, void *arg) {
    if (!id || !*id) {
        finish(cb, arg, LF_INVALID_REQUEST, "record id is required", NULL, NULL, NULL);
        return;
    }
    txn *t = txn_new(e, LF_ENTRY_DELETED, id, "", "deleted",
                     actor ? actor : "anonymous", cb, arg);
    if (!t) { finish(cb, arg, LF_UNAVAILABLE, "out of memory", NULL, NULL, NULL); return; }
    txn_load(t);
}

/* ---- reads -------------------------------------------------------------- */

typedef struct read_ctx { lf_result_cb *cb; void *arg; } read_ctx;

static void read_done(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *e, void *arg) {
    read_ctx *c = arg;
    (void)e;
    finish(c->cb, c->arg, code, err, rec ? rec->state : NULL, NULL, rec);
    free(c);
}

static void read_one(lf_engine *e, const char *key, int by_ref,
                     lf_result_cb *cb, void *arg) {
    if (!key || !*key) {
        finish(cb, arg, LF_INVALID_REQUEST, by_ref ? "ref is required" :
               "record id is required", NULL, NULL, NULL);
        return;
    }
    read_ctx *c = malloc(sizeof *c);
    if (!c) { finish(cb, arg, LF_UNAVAILABLE, "out of memory", NULL, NULL, NULL); return; }
    c->cb = cb;
    c->arg = arg;
    if (by_ref) lf_store_find_by_ref(e->store, key, read_done, c);
    else lf_store_get(e->store, key, read_done, c);
}

void lf_engine_get(lf_engine *e, const char *id, lf_result_cb *cb, void *arg) {
    read_one(e, id, 0, cb, arg);
}

void lf_engine_find_by_ref(lf_engine *e, const char *ref, lf_result_cb *cb,
                           void *arg) {
    read_one(e, ref, 1, cb, arg);
}

void lf_engine_list(lf_engine *e, const lf_list_query *q, lf_list_cb *cb,
                    void *arg) {
    lf_store_list(e->store, q, cb, arg);
}

void lf_engine_audit(lf_engine *e, const char *record_id, uint64_t after,
                     size_t limit, lf_audit_cb *cb, void *arg) {
    lf_store_audit(e->store, record_id, after, limit, cb, arg);
}
