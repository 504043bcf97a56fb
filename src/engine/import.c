/* import.c -- LoopForge's records into the log (loopforge import, POST
 * /v1/import): each record as LoopRecord.to_dict() writes it becomes a
 * `created` entry and one `transition` entry per history item, with its
 * original id, timestamps, triggers and metadata.
 *
 * Every imported entry is marked: its actor is "import:<the importing
 * actor>" and its decisions say {"policy":"import",...}, so nobody takes an
 * import for a live decision, and the chain (sealed by the store as
 * usual) stays verifiable. The history must be one the workflow allows
 * (LoopForge's is ours); a record whose id or ref exists is refused. */
#include "engine_internal.h"
#include "window.h"
#include "../core/workflow.h"
#include "../store/store.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/entry.h"
#include "../core/json.h"
#include "../core/mem.h"
#include "../core/record.h"
#include "../core/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

typedef struct imp {
    lf_engine *e;
    lf_store *store;
    lf_result_cb *cb;
    void *arg;
    bool dry_run;
    lf_entry *entries;
    char **strs;                    /* what the entries point into */
    size_t n, ns, next;
    char id[LF_ID_LEN + 1];
    char *ref;
    char *actor;
    lf_record *preview;             /* the fold, for a dry run */
} imp;

static void imp_free(imp *m) {
    for (size_t i = 0; i < m->ns; i++) free(m->strs[i]);
    free(m->strs);
    free(m->entries);
    free(m->ref);
    free(m->actor);
    lf_record_free(m->preview);
    free(m);
}

static const char *keep(imp *m, char *s) {
    m->strs = lf_xrealloc(m->strs, (m->ns + 1) * sizeof *m->strs);
    return m->strs[m->ns++] = s;
}

static void finish(imp *m, lf_code code, const char *err, const lf_record *rec) {
    lf_map *busy = lf_engine_importing(m->e);
    if (lf_map_get(busy, m->id) == m) lf_map_del(busy, m->id);
    lf_result r = {.success = code == LF_OK,
                   .code = code,
                   .error = code == LF_OK ? NULL : err,
                   .new_state = rec ? lf_record_state(rec) : NULL,
                   .record = rec,
                   .decisions = "[]",
                   .dry_run = m->dry_run};
    m->cb(&r, m->arg);
    imp_free(m);
}

/* ---- reading LoopForge's record ------------------------------------------ */

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A member that must be an integer or null: its text, or NULL (null). */
static int int_member(const cJSON *o, const char *k, bool *has, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *has = false;
    if (!v || cJSON_IsNull(v)) return 0;
    if (lf_json_number_int(v, out)) return -1;
    *has = true;
    return 0;
}

static char *canon_object(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return lf_xstrdup("{}");
    if (!cJSON_IsObject(v)) return NULL;
    char *t = lf_xptr(cJSON_PrintUnformatted(v)), err[64];
    char *n = lf_json_object_normalize(t, err, sizeof err);
    cJSON_free(t);
    return n;
}

#define DECISIONS_FMT                                                                    \
    "[{\"policy\":\"import\",\"verdict\":\"allow\",\"reason\":\"imported from LoopForge by %s\"}]"

/* Builds the entries; returns NULL, or what is wrong. */
static const char *read_record(imp *m, const cJSON *o, const lf_workflow *wf,
                               const char *generation, char *why, size_t cap) {
    const char *id = str_of(o, "record_id"), *ref = str_of(o, "ref"),
               *state = str_of(o, "state");
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(o, "transitions"), *t;
    const cJSON *am = cJSON_GetObjectItemCaseSensitive(o, "auto_merge");
    bool has_n, has_pr;
    int64_t refn, prn;
    if (!cJSON_IsObject(o)) return "a record must be a JSON object";
    if (!id || !lf_id_valid(id))
        return "record_id must be \"loop-\" and 8 to 16 hex digits";
    snprintf(m->id, sizeof m->id, "%s", id);
    if (!ref || !*ref) return "ref is required";
    m->ref = lf_xstrdup(ref);
    if (!state) return "state is required";
    if (int_member(o, "ref_number", &has_n, &refn))
        return "ref_number must be an integer";
    if (int_member(o, "pr_number", &has_pr, &prn)) return "pr_number must be an integer";
    if (am && !cJSON_IsBool(am)) return "auto_merge must be true or false";
    /* what is read where it is a string, and left out where it is null:
     * anything else would be dropped without a word */
    static const char *const opt[] = {"repo", "pr_url", "created_at", "closed_at"};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, opt[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
            snprintf(why, cap, "%s must be a string or null", opt[i]);
            return why;
        }
    }
    int nt = cJSON_GetArraySize(hist);
    if (!cJSON_IsArray(hist) || nt < 1)
        return "transitions must list the record's history";
    char *labels = canon_object(cJSON_GetObjectItemCaseSensitive(o, "labels"));
    if (!labels) return "labels must be an object";
    keep(m, labels);
    lf_buf b = LF_BUF_INIT;
    lf_buf_printf(&b, DECISIONS_FMT, m->actor + 7);     /* after "import:" */
    const char *decisions = keep(m, lf_buf_steal(&b));
    m->entries = lf_xcalloc((size_t)nt, sizeof *m->entries);
    const char *prev_to = NULL;
    int k = 0;
    cJSON_ArrayForEach(t, hist) {
        lf_entry *en = &m->entries[k];
        const char *from = str_of(t, "from_state"), *to = str_of(t, "to_state");
        const char *trig = str_of(t, "trigger"), *ts = str_of(t, "timestamp");
        char *meta = canon_object(cJSON_GetObjectItemCaseSensitive(t, "metadata"));
        if (meta) keep(m, meta);
        if (!to || !trig || !ts || !meta) {
            snprintf(why, cap, "transitions[%d] needs to_state, trigger, timestamp", k);
            return why;
        }
        int ti = lf_workflow_state(wf, to), fi = from ? lf_workflow_state(wf, from) : -1;
        if (ti < 0 || (k == 0 ? from != NULL || ti != wf->initial
                              : fi < 0 || strcmp(from, prev_to) != 0 ||
                                    !lf_workflow_has_edge(wf, fi, ti))) {
            snprintf(why, cap,
                     "transitions[%d] (%s -> %s) is not a step of workflow %s from where "
                     "the record was",
                     k, from ? from : "null", to, wf->name);
            return why;
        }
        const char *when =
            k == 0 && str_of(o, "created_at") ? str_of(o, "created_at") : ts;
        if (lf_ts_normalize(when, en->timestamp)) {
            snprintf(why, cap, "transitions[%d]: '%s' is not an ISO 8601 UTC time", k,
                     when);
            return why;
        }
        en->record_id = m->id;
        en->kind = k == 0 ? LF_ENTRY_CREATED : LF_ENTRY_TRANSITION;
        en->version = (uint64_t)k + 1;
        en->from_state = k ? wf->states[fi] : NULL;
        en->to_state = wf->states[ti];
        en->trigger = keep(m, lf_xstrdup(trig));
        en->actor = m->actor;
        en->metadata = meta;
        en->decisions = decisions;
        en->policy_set = generation;
        prev_to = wf->states[ti];
        k++;
    }
    if (strcmp(prev_to, state) != 0) {
        snprintf(why, cap, "state is %s but the history ends in %s", state, prev_to);
        return why;
    }
    m->n = (size_t)nt;
    /* The record's initial fields, and what the last entry sets. */
    lf_buf rec = LF_BUF_INIT;
    lf_jw r = lf_jw_open(&rec, '{');
    lf_jw_str(&r, "ref", ref);
    if (has_n) lf_jw_int(&r, "ref_number", refn);
    else lf_jw_raw(&r, "ref_number", NULL, "null");
    lf_jw_str(&r, "repo", str_of(o, "repo"));
    lf_jw_bool(&r, "auto_merge", cJSON_IsTrue(am));
    lf_jw_raw(&r, "labels", labels, "{}");
    lf_jw_raw(&r, "metadata", "{}", NULL);
    lf_jw_str(&r, "workflow", wf->name);
    lf_jw_close(&r, '}');
    m->entries[0].record = keep(m, lf_buf_steal(&rec));
    char *ci = canon_object(cJSON_GetObjectItemCaseSensitive(o, "ci_status"));
    if (!ci) return "ci_status must be an object";
    keep(m, ci);
    char closed[LF_TS_LEN + 1];
    const char *ca = str_of(o, "closed_at");
    if (ca && lf_ts_normalize(ca, closed)) {
        snprintf(why, cap, "closed_at: '%s' is not an ISO 8601 UTC time", ca);
        return why;
    }
    lf_buf ch = LF_BUF_INIT;
    lf_jw c = lf_jw_open(&ch, '{');
    if (lf_workflow_is_terminal(wf, lf_workflow_state(wf, state)) && ca) {
        lf_jw_key(&c, "closed_at");
        lf_buf_printf(&ch, "\"%s\"", closed);
    }
    if (str_of(o, "pr_url")) lf_jw_str(&c, "pr_url", str_of(o, "pr_url"));
    if (has_pr) lf_jw_int(&c, "pr_number", prn);
    if (strcmp(ci, "{}") != 0) lf_jw_raw(&c, "ci_status", ci, NULL);
    lf_jw_close(&c, '}');
    if (m->n > 1 && ch.len > 2) m->entries[m->n - 1].changes = keep(m, lf_buf_steal(&ch));
    else lf_buf_free(&ch);
    return NULL;
}

/* ---- writing it ------------------------------------------------------------- */

static void step(imp *m);

/* How many of m's entries the record already has when it is m's record
 * half imported -- an import interrupted between a record's entries (it
 * keeps 64 records in flight) -- so that the import goes on from there:
 * nothing but fewer of m's entries, the record they fold to whole (its
 * ref, labels, each move's time, actor and metadata), so that what the
 * import then makes is m's record, as a dry run says it would be. 0: it
 * is not (another record with m's id). */
static size_t imported_prefix(const imp *m, const lf_record *r) {
    if (r->deleted || r->nhist == 0 || r->nhist >= m->n || r->version != r->nhist) return 0;
    lf_record *p = NULL;
    char err[200];
    bool same = true;
    for (size_t i = 0; i < r->nhist && same; i++)
        same = lf_record_apply(&p, &m->entries[i], err, sizeof err) == 0;
    if (same) {
        lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT;
        lf_record_to_json(p, &a);
        lf_record_to_json(r, &b);
        same = a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
        lf_buf_free(&a);
        lf_buf_free(&b);
    }
    lf_record_free(p);
    return same ? r->nhist : 0;
}

/* The record whose id the created entry found taken: go on where a
 * half-done import of it stopped, else refuse as before. */
static void existing_got(const lf_result *r, void *arg) {
    imp *m = arg;
    /* not a record another import of this engine is writing right now (a
     * file that has it twice): that one comes first */
    void *other = lf_map_get(lf_engine_importing(m->e), m->id);
    size_t n = r->success && (!other || other == m) ? imported_prefix(m, r->record) : 0;
    if (!n) {
        char why[200];
        snprintf(why, sizeof why, "Record id already exists: %s", m->id);
        finish(m, LF_CONFLICT, why, NULL);
        return;
    }
    m->next = n;
    if (m->dry_run) {
        finish(m, LF_OK, NULL, m->preview);     /* folded whole already */
        return;
    }
    step(m);
}

static void committed(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *en, void *arg) {
    imp *m = arg;
    (void)en;
    if (code == LF_CONFLICT && m->next == 0 && !m->dry_run) {
        lf_engine_get(m->e, m->id, existing_got, m);
        return;
    }
    if (code != LF_OK) {
        char why[600];
        if (m->next > 0)
            snprintf(why, sizeof why, "import of %s stopped at its entry %zu: %s", m->id,
                     m->next + 1, err ? err : lf_code_name(code));
        finish(m, code, m->next > 0 ? why : err, NULL);
        return;
    }
    if (++m->next == m->n) {
        finish(m, LF_OK, NULL, rec);
        return;
    }
    step(m);
}

static void step(imp *m) {
    lf_map *busy = lf_engine_importing(m->e);
    if (!lf_map_get(busy, m->id)) lf_map_put(busy, m->id, m);
    lf_engine_commit_entry(m->e, &m->entries[m->next], committed, m);
}

/* A dry run: the fold, once the id and the ref are known to be free. */
static void ref_checked(const lf_result *r, void *arg) {
    imp *m = arg;
    if (r->success) {
        char why[300];
        snprintf(why, sizeof why, "Duplicate ref: %s already has record %s", m->ref,
                 lf_record_id(r->record));
        finish(m, LF_DUPLICATE_REF, why, NULL);
        return;
    }
    char err[200];
    for (size_t i = 0; i < m->n; i++) {
        lf_entry *en = &m->entries[i];
        if (lf_record_apply(&m->preview, en, err, sizeof err)) {
            finish(m, LF_INVALID_REQUEST, err, NULL);
            return;
        }
    }
    finish(m, LF_OK, NULL, m->preview);
}

static void id_checked(const lf_result *r, void *arg) {
    imp *m = arg;
    char err[200];
    if (r->success) {           /* a half-done import of it goes on (existing_got) */
        for (size_t i = 0; i < m->n; i++)
            if (lf_record_apply(&m->preview, &m->entries[i], err, sizeof err)) {
                finish(m, LF_INVALID_REQUEST, err, NULL);
                return;
            }
        existing_got(r, m);
        return;
    }
    lf_engine_find_by_ref(m->e, m->ref, ref_checked, m);
}

void lf_engine_import(lf_engine *e, const char *record_json, const char *actor,
                      bool dry_run, lf_result_cb *cb, void *arg) {
    imp *m = lf_xcalloc(1, sizeof *m);
    m->e = e;
    m->cb = cb;
    m->arg = arg;
    m->dry_run = dry_run;
    lf_buf a = LF_BUF_INIT;
    lf_buf_printf(&a, "import:%s", actor ? actor : "anonymous");
    m->actor = lf_buf_steal(&a);
    cJSON *o = cJSON_Parse(record_json);
    char why[400];
    const char *bad;
    const lf_workflow *wf = lf_engine_workflow(e, "loopforge");
    if (!wf) bad = "the policy set has no loopforge workflow to import into";
    else bad = read_record(m, o, wf, lf_engine_generation(e), why, sizeof why);
    /* Its strings as the front doors take them (valid UTF-8, no NUL):
     * cJSON takes any bytes, and would cut a string at a \u0000. */
    if (!bad && lf_json_text_check(record_json, strlen(record_json), NULL, why, sizeof why))
        bad = why;
    cJSON_Delete(o);
    if (bad) {
        char msg[600];
        snprintf(msg, sizeof msg, "import %s: %s", m->id[0] ? m->id : "record", bad);
        finish(m, LF_INVALID_REQUEST, msg, NULL);
        return;
    }
    if (dry_run) lf_engine_get(e, m->id, id_checked, m);
    else step(m);
}

/* ---- many records ----------------------------------------------------------- */

/* A record's entries go one after another (each on the version the one
 * before made), so one record at a time waits for a flush per entry;
 * records run LF_WINDOW at a time (window.h) share them. */
typedef struct import_all import_all;

/* A record in flight, and its result until those before it are given. */
typedef struct import_slot {
    import_all *all;
    size_t i;
    lf_code code;
    char *error;
    lf_record *rec;
} import_slot;

struct import_all {
    lf_engine *e;
    lf_window *w;
    lf_import_next_cb *next;
    lf_result_cb *each;
    void (*done)(void *arg);
    void *arg;
    char *actor;
    bool dry_run;
    import_slot slot[LF_WINDOW];    /* record i's is slot[i % LF_WINDOW] */
};

static void slot_done(const lf_result *r, void *arg) {
    import_slot *s = arg;
    s->code = r->code;
    s->error = r->error ? lf_xstrdup(r->error) : NULL;
    s->rec = r->record ? lf_record_dup(r->record) : NULL;
    lf_window_finish(s->all->w, s->i);
}

static bool import_start(void *arg, size_t i) {
    import_all *a = arg;
    const char *text = a->next(a->arg);
    if (!text) return false;
    import_slot *s = &a->slot[i % LF_WINDOW];
    *s = (import_slot){.all = a, .i = i};
    lf_engine_import(a->e, text, a->actor, a->dry_run, slot_done, s);
    return true;
}

static void import_deliver(void *arg, size_t i) {
    import_all *a = arg;
    import_slot *s = &a->slot[i % LF_WINDOW];
    lf_result r = {.success = s->code == LF_OK,
                   .code = s->code,
                   .error = s->error,
                   .new_state = s->rec ? lf_record_state(s->rec) : NULL,
                   .record = s->rec,
                   .decisions = "[]",
                   .dry_run = a->dry_run};
    a->each(&r, a->arg);
    free(s->error);
    lf_record_free(s->rec);
}

static void import_done(void *arg) {
    import_all *a = arg;
    a->done(a->arg);
    free(a->actor);
    free(a);
}

static const lf_window_ops import_ops = {import_start, import_deliver, import_done};

void lf_engine_import_all(lf_engine *e, lf_import_next_cb *next, const char *actor,
                          bool dry_run, lf_result_cb *each, void (*done)(void *arg),
                          void *arg) {
    import_all *a = lf_xcalloc(1, sizeof *a);
    *a = (import_all){.e = e, .next = next, .each = each, .done = done, .arg = arg,
                      .actor = actor ? lf_xstrdup(actor) : NULL, .dry_run = dry_run};
    a->w = lf_window_new(&import_ops, a);
    lf_window_go(a->w);
}
