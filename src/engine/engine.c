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
#include "../core/text.h"
#include "../core/mem.h"
#include "../core/json.h"
#include "../core/forge.h"
#include "../core/hash.h"
#include "../core/workflow.h"
#include "../rules/rules.h"
#include "../store/store.h"
#include "engine_internal.h"
#include "notify.h"
#include "evidence.h"
#include "attest.h"
#include "../core/sign.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>
#include <string.h>
#include <cjson/cJSON.h>

#define MAX_ATTEMPTS 8          /* commit retries after a version conflict */
#define MAX_CHAIN 8             /* follow-ups a follow-up may cause, in a row */
#define DEFAULT_STORE "file:./var/loopforge.journal"
#define DEFAULT_POLICIES "./policies"

/* A loaded policy set, shared by the engine and every request in flight
 * that started under it: a reload swaps the engine's pointer, and the old
 * set lives on until its last request completes. */
typedef struct gen {
    lf_rules *rules;
    int refs;
} gen;

struct lf_engine {
    lf_store *store;
    gen *gen;
    struct event_base *base;
    char *policies;             /* directory, for reloads */
    lf_rules_limits limits;
    lf_log_fn *log;
    void *log_ud;
    lf_stats stats;
    bool closing;               /* lf_engine_free is running */
    lf_notifier *notify;        /* hooks' POSTs in flight (notify.c), or NULL */
    lf_evidence *ev;            /* checkpoints, announcements (evidence.c) */
    lf_entry_watch_cb *watch;   /* told of every committed entry, or NULL */
    void *watch_arg;
    size_t busy;                /* transitions and nudges not finished yet
                                   (follow-ups and escalations included) */
    lf_tick_memo tick;          /* what serve's tick keeps between ticks */
    lf_map importing;           /* import.c: the records being imported, by id */
};

#define CLOSING_MSG "engine is shutting down"

static gen *gen_hold(gen *g) {
    g->refs++;
    return g;
}

static void gen_drop(gen *g) {
    if (g && --g->refs == 0) {
        lf_rules_free(g->rules);
        free(g);
    }
}

static const char *code_names[LF_CODE__COUNT] = {
    "ok",          "not_found",     "invalid_transition",
    "denied",      "conflict",      "invalid_request",
    "unavailable", "duplicate_ref", "idempotency_mismatch",
};

const char *lf_code_name(lf_code c) {
    return (unsigned)c < LF_CODE__COUNT ? code_names[c] : "unknown";
}

const char *lf_version(void) { return LF_VERSION_STRING; }

/* The caller's value (even an empty one: that is an error to report, not
 * a request for the default), else the environment, else the default. */
static const char *pick(const char *a, const char *env, const char *dflt) {
    const char *e;
    if (a) return a;
    if ((e = getenv(env)) && *e) return e;
    return dflt;
}

const char *lf_engine_store_url(const lf_engine_config *cfg) {
    return pick(cfg ? cfg->store : NULL, "LOOPFORGE_STORE", DEFAULT_STORE);
}

static void log_stderr(lf_log_level level, const char *msg, void *ud) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    (void)ud;
    fprintf(stderr, "loopforge: %s: %s\n", names[level], msg);
}

static void logf_(lf_engine *e, lf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(lf_engine *e, lf_log_level level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->log(level, msg, e->log_ud);
}

void lf_engine_set_log(lf_engine *e, lf_log_fn *fn, void *ud) {
    e->log = fn ? fn : log_stderr;
    e->log_ud = fn ? ud : NULL;
}

void lf_engine_stats(const lf_engine *e, lf_stats *out) {
    *out = e->stats;
    out->timer_records = e->tick.listed;
    lf_store_counts c = {0};
    if (e->store && e->store->type->counts) e->store->type->counts(e->store, &c);
    out->lock_waits = c.waited;
    out->lock_timeouts = c.gave_up;
    out->flushes = c.flushes;
}

static const double bounds_us[LF_LATENCY_BUCKETS] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, HUGE_VAL,
};

double lf_latency_bound_us(int i) {
    return i >= 0 && i < LF_LATENCY_BUCKETS ? bounds_us[i] : HUGE_VAL;
}

static void observe_evaluation(lf_stats *st, uint64_t ns) {
    int i = 0;
    while (i < LF_LATENCY_BUCKETS - 1 && (double)ns > bounds_us[i] * 1000.0) i++;
    st->evaluation_hist[i]++;
    st->evaluations++;
    st->guard_ns += ns;
}

/* The signing key at path: a private Ed25519 key in PEM. */
static lf_key *load_key(const char *path, char *err, size_t errlen) {
    size_t len;
    char *pem = lf_read_file(path, &len), why[160];
    if (!pem) {
        snprintf(err, errlen, "signing key %s: %s", path, strerror(errno));
        return NULL;
    }
    lf_key *k = lf_key_parse(pem, len, why, sizeof why);
    free(pem);
    if (k && !lf_key_can_sign(k)) {
        lf_key_free(k);
        k = NULL;
        snprintf(why, sizeof why, "a public key cannot sign (pass the private one)");
    }
    if (!k) snprintf(err, errlen, "signing key %s: %s", path, why);
    return k;
}

/* Loads the policy set; on failure returns NULL with every problem, one
 * per line, in `problems` (no trailing newline). */
static lf_rules *load_rules(lf_engine *e, lf_buf *problems) {
    lf_rules *r = lf_rules_load_opts(e->policies, &e->limits, NULL, problems);
    if (!r && problems->len && problems->p[problems->len - 1] == '\n')
        problems->p[--problems->len] = '\0';
    return r;
}

lf_engine *lf_engine_new(const lf_engine_config *cfg, char *err, size_t errlen,
                         lf_code *code) {
    lf_engine_config none = {0};
    lf_code dummy;
    if (!cfg) cfg = &none;
    if (!code) code = &dummy;
    lf_engine *e = lf_xcalloc(1, sizeof *e);
    e->policies = lf_xstrdup(pick(cfg->policies, "LOOPFORGE_POLICIES", DEFAULT_POLICIES));
    e->base = cfg->base;
    e->limits.instructions = cfg->lua_instructions;
    e->limits.memory = cfg->lua_memory;
    e->limits.time_ms = cfg->lua_time_ms;
    e->log = log_stderr;
    lf_buf problems = LF_BUF_INIT;
    lf_rules *rules = load_rules(e, &problems);
    if (!rules && cfg->reader) rules = lf_rules_none();
    if (!rules) {
        *code = LF_INVALID_REQUEST;
        snprintf(err, errlen, "%s", lf_buf_str(&problems));
        lf_buf_free(&problems);
        free(e->policies);
        free(e);
        return NULL;
    }
    e->gen = lf_xcalloc(1, sizeof *e->gen);
    lf_buf_free(&problems);
    e->gen->rules = rules;
    e->gen->refs = 1;
    lf_key *key = NULL;
    const char *kpath = pick(cfg->signing_key, "LOOPFORGE_SIGNING_KEY", "");
    if (*kpath && !(key = load_key(kpath, err, errlen))) {
        *code = LF_INVALID_REQUEST;
        gen_drop(e->gen);
        free(e->policies);
        free(e);
        return NULL;
    }
    e->store =
        cfg->reader
            ? lf_store_open_reader(lf_engine_store_url(cfg), cfg->base, code, err, errlen)
            : lf_store_open(lf_engine_store_url(cfg), cfg->base, code, err, errlen);
    if (!e->store) {
        lf_key_free(key);
        gen_drop(e->gen);
        free(e->policies);
        free(e);
        return NULL;
    }
    e->ev = lf_evidence_new(e->store, key, cfg->base);
    /* A reader's empty set announces nothing: it writes nothing. */
    if (strcmp(lf_rules_generation(rules), "none") == 0)
        lf_evidence_announced(e->ev, "none");
    *code = LF_OK;
    return e;
}

/* Freeing the store completes every request still waiting on it with
 * LF_UNAVAILABLE (its callbacks run here, before we return); `closing`
 * makes sure none of them, nor anything their callers start from inside
 * a callback, reaches the store again. */
void lf_engine_free(lf_engine *e) {
    if (!e) return;
    e->closing = true;
    lf_engine_tick_close(e);
    lf_store_free(e->store);
    lf_evidence_free(e->ev);
    lf_notify_free(e->notify);  /* cancels POSTs in flight, a log line each */
    gen_drop(e->gen);
    free(e->policies);
    lf_map_free(&e->importing);
    free(e);
}

const char *lf_engine_generation(const lf_engine *e) {
    return lf_rules_generation(e->gen->rules);
}

void lf_engine_route(lf_engine *e, const lf_event *ev, lf_route_result *out) {
    lf_rules_route(e->gen->rules, ev, out);
}

char *lf_engine_policies_json(lf_engine *e) {
    lf_buf b = LF_BUF_INIT;
    lf_rules_json(e->gen->rules, &b);
    return lf_buf_steal(&b);
}

/* ---- results ------------------------------------------------------------ */

/* Completes a request: success follows the code, errors only on failure. */
static void reply(lf_result_cb *cb, void *arg, lf_result r) {
    r.success = r.code == LF_OK;
    if (r.success) r.error = NULL;
    if (!r.decisions) r.decisions = "[]";
    cb(&r, arg);
}

static void fail(lf_result_cb *cb, void *arg, lf_code code, const char *error) {
    reply(cb, arg, (lf_result){.code = code, .error = error});
}

char *lf_result_json(const lf_result *r) { return lf_result_json_tail(r, 0); }

char *lf_result_json_tail(const lf_result *r, size_t max_transitions) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_bool(&o, "success", r->success);
    lf_jw_str(&o, "code", lf_code_name(r->code));
    lf_jw_str(&o, "error", r->error);
    lf_jw_str(&o, "previous_state", r->previous_state);
    lf_jw_str(&o, "new_state", r->new_state);
    lf_jw_key(&o, "record");
    if (r->record) lf_record_to_json_tail(r->record, max_transitions, &b);
    else lf_buf_puts(&b, "null");
    lf_jw_raw(&o, "decisions", r->decisions, "[]");
    lf_jw_bool(&o, "dry_run", r->dry_run);
    lf_jw_bool(&o, "duplicate", r->duplicate);
    lf_jw_raw(&o, "violation", r->violation, "null");
    if (r->observation) {
        lf_jw_bool(&o, "changed", r->changed);
        lf_jw_str(&o, "stale", r->stale);
    }
    lf_jw_close(&o, '}');
    return lf_buf_steal(&b);
}

/* ---- request validation ------------------------------------------------- */

/* Metadata (and labels) per request: every entry carries them into the
 * log and every reply into the record's history, so they stay small. */
#define LF_MAX_OBJECT (64 * 1024)

/* A JSON object from the caller, normalized so its bytes in the audit log
 * are canonical. NULL or "{}" stays NULL (meaning {}), the common case,
 * with no parse at all. `strings` demands string values (labels). */
static int take_object(const char *text, const char *what, int strings, char **out,
                       cJSON **tree, char *err, size_t errlen) {
    *out = NULL;
    if (tree) *tree = NULL;
    if (!text || strcmp(text, "{}") == 0) return 0;
    size_t len = strlen(text);
    if (len > LF_MAX_OBJECT) {
        snprintf(err, errlen, "%s: %zu bytes; the limit is %d", what, len, LF_MAX_OBJECT);
        return -1;
    }
    if (lf_json_text_check(text, len, what, err, errlen)) return -1;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(text, &end, 1);
    if (!cJSON_IsObject(o)) {
        if (!o && end)
            snprintf(err, errlen, "%s: malformed JSON at offset %ld", what,
                     (long)(cJSON_GetErrorPtr() - text));
        else snprintf(err, errlen, "%s: expected a JSON object", what);
        cJSON_Delete(o);
        return -1;
    }
    if (strings) {
        const cJSON *v;
        cJSON_ArrayForEach(v, o) if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "%s: value of '%s' must be a string", what, v->string);
            cJSON_Delete(o);
            return -1;
        }
    }
    lf_buf canon = LF_BUF_INIT;      /* integers as written: cJSON would round them */
    lf_json_canon(text, len, &canon);
    *out = lf_buf_steal(&canon);
    if (tree) *tree = o;
    else cJSON_Delete(o);
    return 0;
}

/* Checks "name", value, ... pairs (NULL-terminated; a NULL value is
 * absent) for valid UTF-8: -1 with the first problem in err. */
static int text_fields(char *err, size_t errlen, ...) {
    va_list ap;
    va_start(ap, errlen);
    int rc = 0;
    for (const char *name; !rc && (name = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        rc = lf_text_check(v, name, err, errlen);
    }
    va_end(ap);
    return rc;
}

static const lf_workflow *workflow_of(const gen *g, const char *name, char *err,
                                      size_t errlen) {
    const lf_workflow *wf = lf_rules_workflow(g->rules, name);
    if (!wf) snprintf(err, errlen, "Unknown workflow: %s", name ? name : "loopforge");
    return wf;
}

/* now, but never before `floor`: a record's history stays ordered even
 * if the clock steps back. */
static int64_t stamp(char ts[LF_TS_LEN + 1], const char *floor) {
    int64_t now = lf_now_us();
    lf_ts_format(now, ts);
    if (floor && floor[0] && lf_ts_before(ts, floor)) memcpy(ts, floor, LF_TS_LEN + 1);
    return now;
}

/* ---- idempotency ------------------------------------------------------- */

/* The first reason a decisions array gives for a deny. */
static void first_denial(const char *decisions, lf_buf *out) {
    cJSON *d = cJSON_Parse(decisions ? decisions : "[]"), *it;
    cJSON_ArrayForEach(it, d) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "verdict");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "policy");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, "reason");
        if (!cJSON_IsString(v) || strcmp(v->valuestring, "deny") != 0) continue;
        lf_buf_printf(out, "%s", cJSON_IsString(r) ? r->valuestring : "denied");
        if (cJSON_IsString(p) && strncmp(p->valuestring, "workflow:", 9) != 0) {
            lf_buf_reset(out);
            lf_buf_printf(out, "Denied by policy %s: %s", p->valuestring,
                          cJSON_IsString(r) ? r->valuestring : "denied");
        }
        break;
    }
    cJSON_Delete(d);
}

/* Answers a repeated request with what its first attempt got, rebuilt
 * from the entry that attempt left in the log and the record as it was
 * then. Nothing is written. */
static void reply_first_as_is(lf_engine *e, lf_result_cb *cb, void *arg,
                              const lf_record *rec, const lf_entry *en) {
    lf_buf why = LF_BUF_INIT;
    lf_code code = LF_OK;
    if (en->kind == LF_ENTRY_DENIED) code = LF_DENIED;
    else if (en->kind == LF_ENTRY_REJECTED) code = LF_INVALID_TRANSITION;
    if (code != LF_OK) first_denial(en->decisions, &why);
    e->stats.duplicates++;
    reply(cb, arg,
          (lf_result){.code = code,
                      .error = lf_buf_str(&why),
                      .previous_state = en->from_state,
                      .new_state = code == LF_OK ? en->to_state : NULL,
                      .record = rec,
                      .decisions = en->decisions,
                      .duplicate = true,
                      .violation = en->violation});
    lf_buf_free(&why);
}

/* A repeat whose record has moved on since its first attempt (another
 * request, or another server on the same store): the first answer's
 * record is the fold of the record's entries up to the keyed one, read
 * back from the audit log. */
typedef struct first_ctx {
    lf_engine *eng;
    lf_result_cb *cb;
    void *arg;
    lf_entry key;               /* what the reply needs of the keyed entry */
    char *strs[5];              /* its strings, owned */
    lf_record *rec;             /* the fold so far */
    lf_record *now;             /* the record as it is: if the fold fails */
    bool failed;                /* the fold could not be made */
} first_ctx;

static void first_done(first_ctx *f) {
    reply_first_as_is(f->eng, f->cb, f->arg, !f->failed && f->rec ? f->rec : f->now,
                      &f->key);
    lf_record_free(f->rec);
    lf_record_free(f->now);
    for (int i = 0; i < 5; i++) free(f->strs[i]);
    free(f);
}

static void first_audited(lf_code code, const char *error, const char *const *lines,
                          const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    first_ctx *f = arg;
    (void)error;
    bool reached = false;
    f->failed |= code != LF_OK;
    for (size_t i = 0; !f->failed && i < n && !reached; i++) {
        lf_entry_doc d;
        char err[256];
        if (lf_entry_parse(lines[i], lens[i], &d, err, sizeof err)) {
            f->failed = true;
            break;
        }
        reached = d.e.seq >= f->key.seq;
        if (d.e.seq <= f->key.seq && (d.e.kind == LF_ENTRY_CREATED || f->rec) &&
            lf_record_apply(&f->rec, &d.e, err, sizeof err))
            f->failed = true;
        lf_entry_doc_free(&d);
    }
    if (reached || n == 0 || f->failed) {
        first_done(f);
        return;
    }
    lf_store_audit(f->eng->store, f->key.record_id, last_seq, 0, first_audited, f);
}

static char *dup_or_null(const char *s) { return s ? lf_xstrdup(s) : NULL; }

/* A key used before answers with its first result -- when it was used
 * for the same request (digest: request_digest). A key reused for another
 * request (another record, target, trigger or metadata) is refused and
 * changes nothing: its first use stays what the key means. */
static void reply_first(lf_engine *e, lf_result_cb *cb, void *arg, const lf_record *rec,
                        const lf_entry *en, const char *digest) {
    if (en->request && digest && strcmp(en->request, digest) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg,
                 "Idempotency key %s was used for another request (seq %llu%s%s)",
                 en->idempotency_key ? en->idempotency_key : "",
                 (unsigned long long)en->seq, en->record_id ? ", record " : "",
                 en->record_id ? en->record_id : "");
        fail(cb, arg, LF_IDEMPOTENCY_MISMATCH, msg);
        return;
    }
    if (!rec || !en->record_id || rec->version == en->version) {
        reply_first_as_is(e, cb, arg, rec, en);
        return;
    }
    first_ctx *f = lf_xcalloc(1, sizeof *f);
    *f = (first_ctx){.eng = e, .cb = cb, .arg = arg};
    f->key.kind = en->kind;
    f->key.seq = en->seq;
    f->key.version = en->version;
    f->key.record_id = f->strs[0] = dup_or_null(en->record_id);
    f->key.from_state = f->strs[1] = dup_or_null(en->from_state);
    f->key.to_state = f->strs[2] = dup_or_null(en->to_state);
    f->key.decisions = f->strs[3] = dup_or_null(en->decisions);
    f->key.violation = f->strs[4] = dup_or_null(en->violation);
    f->now = lf_record_dup(rec);
    lf_store_audit(e->store, f->key.record_id, 0, 0, first_audited, f);
}

/* sha256 hex of what a keyed request asks for: the JSON array of its
 * parts (NULL parts are null). */
static char *request_digest(const char *const *parts, int n) {
    lf_buf b = LF_BUF_INIT;
    lf_jw list = lf_jw_open(&b, '[');
    for (int i = 0; i < n; i++) {
        lf_jw_next(&list);
        if (parts[i]) lf_buf_json_str(&b, parts[i]);
        else lf_buf_puts(&b, "null");
    }
    lf_jw_close(&list, ']');
    char *hex = lf_xmalloc(LF_HASH_LEN + 1);
    lf_sha256_hex(b.p, b.len, hex);
    lf_buf_free(&b);
    return hex;
}

/* An entry this engine appended: counted, and handed to the Merkle tree
 * while it is at hand (evidence.c; it reads the log only for others'). */
static void appended(lf_engine *e, const lf_entry *en) {
    e->stats.appended++;
    if (en) lf_evidence_saw(e->ev, en);
    if (en && e->watch) e->watch(en, e->watch_arg);
}

void lf_engine_watch(lf_engine *e, lf_entry_watch_cb *cb, void *arg) {
    e->watch = cb;
    e->watch_arg = arg;
}

/* ---- announcing the policy set ------------------------------------------ */

/* An announcement's metadata: the generation and each file's digest, so
 * the log names exactly what decided the entries after it. */
static char *announce_meta(const lf_rules *r) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_str(&o, "new_generation", lf_rules_generation(r));
    lf_jw_key(&o, "files");
    lf_jw list = lf_jw_open(&b, '[');
    for (int i = 0; i < lf_rules_nfiles(r); i++) {
        lf_jw_next(&list);
        lf_jw f = lf_jw_open(&b, '{');
        lf_jw_str(&f, "path", lf_rules_file_at(r, i));
        lf_jw_str(&f, "sha256", lf_rules_file_digest(r, i));
        lf_jw_close(&f, '}');
    }
    lf_jw_close(&list, ']');
    lf_jw_close(&o, '}');
    return lf_buf_steal(&b);
}

/* An entry held until its policy set is announced. */
typedef struct held {
    lf_engine *e;
    lf_entry en;
    char *strs;
    lf_store_cb *cb;
    void *arg;
} held;

static void held_go(void *arg) {
    held *h = arg;
    if (h->e->closing) h->cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, NULL, h->arg);
    else lf_store_commit(h->e->store, &h->en, h->cb, h->arg);
    free(h->strs);
    free(h);
}

/* Every entry decided under a policy set goes through here: a writer
 * whose set the log has not announced announces it first (evidence.c),
 * so no entry is decided under a set the log never named -- and nothing
 * is announced for a request that writes nothing. */
static void engine_commit(lf_engine *e, const gen *g, lf_entry *en, lf_store_cb *cb,
                          void *arg) {
    const char *id = lf_rules_generation(g->rules);
    lf_evidence_poll(e->ev);
    if (lf_evidence_is_announced(e->ev, id)) {
        lf_store_commit(e->store, en, cb, arg);
        return;
    }
    held *h = lf_xmalloc(sizeof *h);
    *h = (held){.e = e, .en = *en, .cb = cb, .arg = arg};
    h->strs = lf_entry_own(&h->en);
    char *meta = announce_meta(g->rules);
    lf_evidence_announce(e->ev, id, en->actor, meta, held_go, h);
    free(meta);
}

void lf_engine_checkpoint(lf_engine *e, const char *actor, lf_text_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, arg);
        return;
    }
    lf_evidence_checkpoint(e->ev, actor, lf_rules_generation(e->gen->rules), cb, arg);
}

bool lf_engine_can_sign(const lf_engine *e) { return lf_evidence_can_sign(e->ev); }

bool lf_engine_settled(const lf_engine *e) { return e->busy == 0; }

lf_store *lf_engine_store(lf_engine *e) { return e->store; }

const lf_rules *lf_engine_rules(lf_engine *e) { return e->gen->rules; }

void lf_engine_busy(lf_engine *e, int delta) { e->busy += (size_t)(ptrdiff_t)delta; }

void lf_engine_commit_entry(lf_engine *e, lf_entry *en, lf_store_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, NULL, arg);
        return;
    }
    engine_commit(e, e->gen, en, cb, arg);
}

const lf_workflow *lf_engine_workflow(lf_engine *e, const char *name) {
    return lf_rules_workflow(e->gen->rules, name);
}

lf_tick_memo *lf_engine_tick_memo(lf_engine *e) { return &e->tick; }

struct event_base *lf_engine_base(lf_engine *e) { return e->base; }

lf_map *lf_engine_importing(lf_engine *e) { return &e->importing; }

int lf_engine_nworkflows(lf_engine *e) { return lf_rules_nworkflows(e->gen->rules); }

const lf_workflow *lf_engine_workflow_at(lf_engine *e, int i) {
    return lf_rules_workflow_at(e->gen->rules, i);
}

char *lf_engine_public_key(const lf_engine *e) {
    const lf_key *k = lf_evidence_key(e->ev);
    return k ? lf_xstrdup(lf_key_public_pem(k)) : NULL;
}

void lf_engine_attestations(lf_engine *e, const char *id, lf_text_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, arg);
        return;
    }
    if (!lf_evidence_can_sign(e->ev)) {
        cb(LF_INVALID_REQUEST,
           "no signing key: attestations are signed (loopforge keygen, --signing-key)",
           NULL, arg);
        return;
    }
    lf_attest(e->store, lf_evidence_key(e->ev), id, cb, arg);
}

/* The name a budget counts a request under: the actor ('a'), or the
 * person behind it ('p': a credential's principal, else the identity
 * map's principal or person, else the actor itself) -- as
 * lf_entry_counters counts them. */
static const char *counted_as(lf_rules *rules, const char *actor, const char *principal,
                              char per) {
    lf_identity id;
    if (per == 'a') return actor;
    lf_rules_identity(rules, actor, &id);
    return principal     ? principal
           : id.principal ? id.principal
           : id.person    ? id.person
                          : actor;
}

/* ---- create ------------------------------------------------------------- */

typedef struct create_ctx {
    lf_engine *eng;
    lf_result_cb *cb;
    void *arg;
    gen *g;
    const char *initial;        /* owned by g */
    char id[LF_ID_LEN + 1];
    char *record, *hist;        /* the entry's record and metadata JSON */
    char *actor, *key;          /* key: idempotency key, or NULL */
    char *digest;               /* with a key: request_digest */
    bool looked_up;             /* the key was looked up after a race */
    char *parent;               /* must exist before the child is created */
    bool parent_seen;
    /* The workflow's open_records: its owner's count, then the create. */
    int open_max;               /* 0 = none */
    char open_per;              /* 'a' or 'p' */
    int attempts;               /* commits the store found past open_max */
    bool open_counted;
    const char *workflow;       /* owned by g */
    char open_key[LF_COUNTER_KEY];
    char *open_who;             /* "principal alice" */
} create_ctx;

static void create_ctx_free(create_ctx *c) {
    gen_drop(c->g);
    free(c->parent);
    free(c->open_who);
    free(c->record);
    free(c->hist);
    free(c->actor);
    free(c->key);
    free(c->digest);
    free(c);
}

static void create_commit(create_ctx *c);

static void create_keyed(lf_code code, const char *err, const lf_record *rec,
                         const lf_entry *en, void *arg) {
    create_ctx *c = arg;
    if (code == LF_OK) reply_first(c->eng, c->cb, c->arg, rec, en, c->digest);
    else if (code != LF_NOT_FOUND) fail(c->cb, c->arg, code, err);
    else {
        create_commit(c);
        return;
    }
    create_ctx_free(c);
}

/* A keyed create first asks whether the key was used before. */
static void create_go(void *arg) {
    create_ctx *c = arg;
    if (c->key && !c->eng->closing)
        lf_store_find_key(c->eng->store, c->key, create_keyed, c);
    else create_commit(c);
}

static void created(lf_code code, const char *err, const lf_record *rec,
                    const lf_entry *e, void *arg) {
    create_ctx *c = arg;
    (void)e;
    if (code == LF_CONFLICT && c->key && !c->looked_up) {
        /* Another request with this key got there first: answer with
         * its result. */
        c->looked_up = true;
        lf_store_find_key(c->eng->store, c->key, create_keyed, c);
        return;
    }
    if (code == LF_DENIED && c->open_max && ++c->attempts < MAX_ATTEMPTS) {
        c->open_counted = false;    /* opened meanwhile: count again */
        create_commit(c);
        return;
    }
    if (code == LF_OK) appended(c->eng, e);
    reply(c->cb, c->arg,
          (lf_result){.code = code,
                      .error = err,
                      .new_state = code == LF_OK ? c->initial : NULL,
                      .record = code == LF_OK ? rec : NULL});
    create_ctx_free(c);
}

static void parent_found(lf_code code, const char *err, const lf_record *rec,
                         const lf_entry *en, void *arg) {
    create_ctx *c = arg;
    char msg[128];
    (void)en;
    if (code == LF_OK && rec && !rec->deleted) {
        c->parent_seen = true;
        create_commit(c);
        return;
    }
    if (code == LF_OK || code == LF_NOT_FOUND) {
        snprintf(msg, sizeof msg, "Parent record not found: %s", c->parent);
        fail(c->cb, c->arg, LF_INVALID_REQUEST, msg);
    } else fail(c->cb, c->arg, code, err);
    create_ctx_free(c);
}

static void open_counted(lf_code code, const char *err, uint64_t n, int64_t oldest,
                         void *arg) {
    create_ctx *c = arg;
    (void)oldest;
    if (code == LF_OK && n < (uint64_t)c->open_max) {
        c->open_counted = true;
        create_commit(c);
        return;
    }
    if (code == LF_OK) {
        lf_buf b = LF_BUF_INIT;
        lf_buf_printf(&b,
                      "Denied by policy open_records:%s: %s has %llu open records in "
                      "workflow %s (at most %d); it frees up when one of them is closed",
                      c->workflow, c->open_who,
                      (unsigned long long)n, c->workflow, c->open_max);
        fail(c->cb, c->arg, LF_DENIED, lf_buf_str(&b));
        lf_buf_free(&b);
    } else fail(c->cb, c->arg, code, err);
    create_ctx_free(c);
}

static void create_commit(create_ctx *c) {
    if (c->eng->closing) {
        fail(c->cb, c->arg, LF_UNAVAILABLE, CLOSING_MSG);
        create_ctx_free(c);
        return;
    }
    if (c->parent && !c->parent_seen) {
        lf_store_get(c->eng->store, c->parent, parent_found, c);
        return;
    }
    if (c->open_max && !c->open_counted) {
        lf_store_count(c->eng->store, c->open_key, INT64_MIN, open_counted, c);
        return;
    }
    lf_entry en = {0};
    en.record_id = c->id;
    en.kind = LF_ENTRY_CREATED;
    en.version = 1;
    en.to_state = c->initial;
    en.trigger = "created";
    en.actor = c->actor;
    stamp(en.timestamp, NULL);
    en.metadata = c->hist;
    en.policy_set = lf_rules_generation(c->g->rules);
    en.record = c->record;
    en.idempotency_key = c->key;
    en.request = c->digest;
    if (c->open_max)            /* checked again as it commits (core/entry.h) */
        en.limits[en.nlimits++] = (lf_entry_limit){
            .kind = 'o', .index = c->open_per == 'a' ? 0 : 1, .max = c->open_max};
    engine_commit(c->eng, c->g, &en, created, c);
}

/* The initial fields a created entry carries (the fold rebuilds the
 * record from them), and LoopForge's first history metadata. */
static void initial_fields(const lf_create_req *req, const char *labels, const char *meta,
                           const char *workflow, const char *const owner[2], lf_buf *rec,
                           lf_buf *hist) {
    lf_buf_reserve(rec, 256);   /* a typical record's: one allocation, not three */
    lf_buf_reserve(hist, 128);
    lf_jw o = lf_jw_open(rec, '{');
    lf_jw_str(&o, "ref", req->ref);
    if (req->has_ref_number) lf_jw_int(&o, "ref_number", req->ref_number);
    else lf_jw_raw(&o, "ref_number", NULL, "null");
    lf_jw_str(&o, "repo", req->repo);
    lf_jw_bool(&o, "auto_merge", req->auto_merge);
    lf_jw_raw(&o, "labels", labels, "{}");
    lf_jw_raw(&o, "metadata", meta, "{}");
    lf_jw_str(&o, "workflow", workflow);
    if (req->parent) lf_jw_str(&o, "parent", req->parent);
    if (owner[0]) {
        lf_jw_key(&o, "owner");
        lf_jw w = lf_jw_open(rec, '{');
        lf_jw_str(&w, "actor", owner[0]);
        lf_jw_str(&w, "behind", owner[1]);
        lf_jw_close(&w, '}');
    }
    lf_jw_close(&o, '}');
    lf_jw h = lf_jw_open(hist, '{');
    lf_jw_str(&h, "ref", req->ref);
    lf_jw_str(&h, "repo", req->repo);
    lf_jw_close(&h, '}');
}

void lf_engine_create(lf_engine *e, const lf_create_req *req, lf_result_cb *cb,
                      void *arg) {
    if (e->closing) {
        fail(cb, arg, LF_UNAVAILABLE, CLOSING_MSG);
        return;
    }
    char err[512];
    char *labels = NULL, *meta = NULL;
    const lf_workflow *wf;
    if (!req->ref || !req->ref[0]) {
        fail(cb, arg, LF_INVALID_REQUEST, "ref is required");
        return;
    }
    if (text_fields(err, sizeof err, "ref", req->ref, "repo", req->repo, "workflow",
                    req->workflow, "actor", req->actor, "idempotency_key",
                    req->idempotency_key, "parent", req->parent, NULL) ||
        !(wf = workflow_of(e->gen, req->workflow, err, sizeof err)) ||
        take_object(req->labels, "labels", 1, &labels, NULL, err, sizeof err) ||
        take_object(req->metadata, "metadata", 0, &meta, NULL, err, sizeof err)) {
        free(labels);
        fail(cb, arg, LF_INVALID_REQUEST, err);
        return;
    }
    /* A workflow with open_records remembers who opened each record. */
    const char *actor = req->actor ? req->actor : "anonymous";
    const char *owner[2] = {NULL, NULL};
    if (wf->open_max) {
        owner[0] = actor;
        owner[1] = counted_as(e->gen->rules, actor, req->principal, 'p');
    }
    lf_buf rec = LF_BUF_INIT, hist = LF_BUF_INIT;
    initial_fields(req, labels, meta, wf->name, owner, &rec, &hist);
    free(labels);
    free(meta);
    create_ctx *c = lf_xcalloc(1, sizeof *c);
    if (lf_id_new(c->id)) {
        free(c);
        lf_buf_free(&rec);
        lf_buf_free(&hist);
        fail(cb, arg, LF_UNAVAILABLE, "no randomness for a new record's id");
        return;
    }
    c->actor = lf_xstrdup(actor);
    if (wf->open_max && !req->observed) {
        const char *who = owner[wf->open_per == 'a' ? 0 : 1];
        c->open_max = wf->open_max;
        c->open_per = wf->open_per;
        lf_open_key(wf->name, wf->open_per, who, c->open_key);
        lf_buf w = LF_BUF_INIT;
        lf_buf_printf(&w, "%s %s", wf->open_per == 'a' ? "actor" : "principal", who);
        c->open_who = lf_buf_steal(&w);
    }
    if (req->idempotency_key) c->key = lf_xstrdup(req->idempotency_key);
    if (req->parent) c->parent = lf_xstrdup(req->parent);
    c->eng = e;
    c->cb = cb;
    c->arg = arg;
    c->g = gen_hold(e->gen);
    c->initial = wf->states[wf->initial];
    c->workflow = wf->name;
    c->record = lf_buf_steal(&rec);
    c->hist = lf_buf_steal(&hist);
    if (c->key) {
        const char *parts[] = {"create", c->record};
        c->digest = request_digest(parts, 2);
    }
    create_go(c);
}

/* ---- transition and delete ---------------------------------------------- */

typedef struct txn {
    lf_engine *eng;
    gen *g;                     /* the policy set this request runs under */
    lf_result_cb *cb;
    void *arg;
    lf_entry_kind kind;         /* transition or deleted */
    bool dry_run;
    int depth;                  /* 0 for a request, n for a follow-up chain */
    int attempts;
    char *id, *to, *trigger, *actor;
    char *metadata;             /* normalized, or NULL */
    char *pr_changes;           /* "pr_url":…,"pr_number":… or NULL */
    char *decisions;            /* JSON array of the last evaluation */
    char *denial;               /* "Denied by policy …: …" */
    lf_code refusal;            /* denied / invalid_transition, once refused */
    char *key;                  /* idempotency key, or NULL */
    char *digest;               /* with a key, of a request: request_digest */
    uint64_t expect;            /* the caller's expected version, 0 = any */
    bool observed;              /* a fact: commit it, mark what objects */
    char *violation;            /* {"rule":…,"reason":…} of an observation */
    const char *from_name, *to_name;    /* owned by g */
    int from_id, to_id;         /* their ids in wf (the guards' filters) */
    /* An observation carrying a forge fact (metadata.fact) walks from the
     * record's state to what its knowledge implies, one entry per edge. */
    char *fact;                 /* metadata.fact, or NULL */
    const lf_workflow *wf;      /* the record's workflow (owned by g) */
    int *path, npath, step;     /* states; the entry going in enters path[step+1] */
    int fact_edge;              /* the step that carries the fact */
    bool regression, changed;
    bool abandoned;             /* it ends closed with nothing merged */
    char *forge;                /* the knowledge after the fact (JSON) */
    char *pr_fields;            /* "pr_url":…,"pr_number":… when the PR changed */
    char stale[256];            /* why the fact moved nothing, or "" */
    char note[256];
    const char *start_name;     /* the state the walk started from */
    /* Authority: who acts with what right. */
    char *roles;                /* the actor's, comma separated, or NULL */
    bool roles_verified;        /* from a token, not the caller's word */
    bool internal;              /* the engine's own (a timer, a retry): may
                                   take engine edges, passes role gates */
    char *actor_kind, *principal;   /* a credential's word on who, or NULL */
    char *override;             /* break-glass reason, or NULL */
    char *co_signer;
    bool overrode;              /* the override passed a denying guard */
    /* Children by state, for workflows that declare `children`. */
    char *kids;                 /* {"total":N,"STATE":n,...} once loaded */
    char **kid_states;          /* while loading: the states seen... */
    size_t *kid_counts, nkid_states, nkids;
    char *kid_cursor;
    /* The budgets of the target state, when counted (count_budgets). */
    int nbudget;                /* loaded so far; -1 until it starts */
    struct budget_count {
        uint64_t n;
        int64_t oldest, since;  /* since: the window it was counted over */
    } *budget;                  /* one per budget of the workflow */
    bool budgets_loaded;
    /* Count them before the gates: a dry run (no commit checks them), an
     * attempt after the store found one spent, or before a guard's
     * refusal is written (a spent budget refuses first). Else the commit
     * carries them and the store checks them as it writes (budget_limits):
     * no count first. */
    bool count_budgets;
    bool limited;               /* the commit carries them */
} txn;

static void budgets_forget(txn *t);
static void kids_forget(txn *t);

static void txn_free(txn *t) {
    t->eng->busy--;
    gen_drop(t->g);
    /* Most are NULL on most requests: no call for those (~2 % of a
     * transition's time in process went to free(NULL)s). */
    void *own[] = {t->metadata,  t->pr_changes, t->decisions, t->denial,     t->key,
                   t->digest,    t->violation,  t->fact,      t->path,       t->forge,
                   t->pr_fields, t->roles,      t->actor_kind, t->principal, t->override,
                   t->co_signer};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (own[i]) free(own[i]);
    kids_forget(t);
    budgets_forget(t);
    free(t);
}

static void txn_load(txn *t);
static void txn_start(txn *t);

/* The first attempt of a request that commits may take the record as
 * this process last knew it (lf_store_get_for_update): if it moved, the
 * commit conflicts and the next attempt reads it afresh. So may the
 * engine's own dry run of a move from a version it names (the tick's
 * look before firing a timer, whose record its listing just read): what
 * it judges is that version, and the move after it commits only on it. */
static bool txn_maybe_stale(const txn *t) {
    return !t->attempts && (!t->dry_run || (t->internal && t->expect));
}
static void set_violation(txn *t, const char *rule, const char *reason);

static void txn_done(txn *t, lf_code code, const char *err, const char *next,
                     const lf_record *rec) {
    if (t->kind == LF_ENTRY_TRANSITION) t->eng->stats.transitions[code]++;
    reply(t->cb, t->arg,
          (lf_result){.code = code,
                      .error = err,
                      .previous_state = t->start_name ? t->start_name : t->from_name,
                      .new_state = next,
                      .record = rec,
                      .decisions = t->decisions,
                      .dry_run = t->dry_run,
                      .violation = code == LF_OK ? t->violation : NULL,
                      .observation = t->observed,
                      .changed = t->changed,
                      .stale = t->stale[0] ? t->stale : NULL});
    txn_free(t);
}

static void scheduled_done(const lf_result *r, void *arg) {
    lf_engine *e = arg;
    if (r->success)
        logf_(e, LF_LOG_INFO, "timer set: %s in %s", lf_record_id(r->record),
              r->previous_state);
    else logf_(e, LF_LOG_WARN, "schedule refused: %s", r->error);
}

static void followup_done(const lf_result *r, void *arg) {
    lf_engine *e = arg;
    if (r->success)
        logf_(e, LF_LOG_INFO, "follow-up: %s: %s \xe2\x86\x92 %s",
              lf_record_id(r->record), r->previous_state, r->new_state);
    else logf_(e, LF_LOG_WARN, "follow-up refused: %s", r->error);
}

static txn *txn_new(lf_engine *e, lf_entry_kind kind, const char *id, const char *to,
                    const char *trigger, const char *actor, lf_result_cb *cb, void *arg);

/* Hooks see the committed record; what they ask for runs next, as its
 * own request with the hook as actor, one link further down the chain. */
static void run_hooks(txn *t, const lf_record *rec, const lf_entry *en, bool followups) {
    lf_engine *e = t->eng;
    lf_hook_event ev = {.record = rec,
                        .previous = t->from_name,
                        .state = t->to_name,
                        .trigger = t->trigger,
                        .actor = t->actor,
                        .metadata = en->metadata,
                        .decisions = t->decisions,
                        .violation = en->violation != NULL,
                        .roles = t->roles,
                        .children = t->kids,
                        .wf = t->wf,
                        .previous_id = t->from_id,
                        .state_id = t->to_id};
    lf_hook_report rep;
    lf_rules_run_hooks(t->g->rules, &ev, &rep);
    e->stats.hooks_run += rep.ran;
    e->stats.hook_errors += rep.errors;
    /* One log line per failed hook, so a host's log stays greppable. */
    for (char *line = rep.messages, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line) logf_(e, LF_LOG_ERROR, "%s", line);
    }
    for (size_t i = 0; i < rep.nfollowups && !e->closing; i++) {
        lf_followup *f = &rep.followups[i];
        if (!followups) {
            /* A step the record walked through on its way further: what a
             * hook would do with it is already past. */
            logf_(e, LF_LOG_INFO,
                  "hook %s: follow-up to %s dropped: %s passed through %s on its way "
                  "further",
                  f->hook, f->to, rec->id, t->to_name);
            continue;
        }
        if (t->depth + 1 > MAX_CHAIN) {
            logf_(e, LF_LOG_ERROR,
                  "hook %s: follow-up to %s dropped: chain of "
                  "%d follow-ups reached (hooks looping?)",
                  f->hook, f->to, MAX_CHAIN);
            continue;
        }
        char actor[256], err[128];
        char *meta = NULL;
        if (f->metadata &&
            !(meta = lf_json_object_normalize(f->metadata, err, sizeof err))) {
            logf_(e, LF_LOG_ERROR, "hook %s: follow-up to %s dropped: metadata %s",
                  f->hook, f->to, err);
            continue;
        }
        snprintf(actor, sizeof actor, "hook:%s", f->hook);
        if (f->after_us > 0) {
            /* schedule{}: a timer of the record's own, bound to the state
             * it is in now (for another record: the one it is in then). */
            lf_engine_schedule(e, f->record ? f->record : rec->id,
                               f->record ? NULL : rec->state, f->after_us, f->to,
                               f->trigger, meta, actor, scheduled_done, e);
            free(meta);
            continue;
        }
        txn *n = txn_new(e, LF_ENTRY_TRANSITION, f->record ? f->record : rec->id, f->to,
                         f->trigger, actor, followup_done, e);
        if (!n) {
            free(meta);
            continue;
        }
        n->depth = t->depth + 1;
        n->metadata = meta;
        e->stats.followups++;
        txn_load(n);
    }
    /* Sent on the host's loop; their outcomes only ever reach the log. */
    if (rep.nnotifications && !e->closing)
        lf_notify_send(&e->notify, e->base,
                       &(lf_notify_sink){&e->log, &e->log_ud, &e->stats},
                       rep.notifications, rep.nnotifications);
    lf_hook_report_free(&rep);
}

/* A record that entered a state whose retry budget is spent escalates
 * at once, as the engine (the tick would a second later; this way a
 * CLI-only user needs none). */
static void escalate_if_spent(txn *t, const lf_record *rec) {
    const lf_workflow *wf = t->wf;     /* txn_loaded's: the record's */
    if (!wf) return;
    /* The few retry states by name, not the record's state among all
     * (every commit asks). */
    const lf_retry_def *r = NULL;
    for (int i = 0; i < wf->nretries && !r; i++)
        if (lf_streq(wf->states[wf->retries[i].state], rec->state)) r = &wf->retries[i];
    if (!r || t->eng->closing ||
        (int)lf_record_count(rec, wf->states[r->state], wf->states[r->to]) < r->max)
        return;
    char actor[256];
    snprintf(actor, sizeof actor, "timer:%s", rec->state);
    lf_transition_req req = {.id = rec->id,
                             .to = wf->states[r->escalate],
                             .trigger = LF_RETRY_EXHAUSTED,
                             .actor = actor,
                             .expected_version = rec->version};
    lf_engine_transition_internal(t->eng, &req, followup_done, t->eng);
}

/* A child moved: a parent whose workflow moves on by itself once all its
 * children are somewhere (`children = { STATE = {...}, auto = true }`) is
 * asked to, by the engine -- a dry run first, so that a parent whose
 * children are not all there yet gets no refused entry per child. */
typedef struct nudge {
    lf_engine *e;
    char *parent, *to;
    uint64_t version;
} nudge;

static void nudge_free(nudge *n) {
    n->e->busy--;
    free(n->parent);
    free(n->to);
    free(n);
}

static void nudged(const lf_result *r, void *arg) {
    nudge *n = arg;
    followup_done(r, n->e);
    nudge_free(n);
}

static lf_transition_req nudge_req(const nudge *n, bool dry) {
    return (lf_transition_req){.id = n->parent,
                               .to = n->to,
                               .trigger = "children.done",
                               .actor = "engine:children",
                               .dry_run = dry,
                               .expected_version = n->version};
}

static void nudge_checked(const lf_result *r, void *arg) {
    nudge *n = arg;
    if (!r->success || n->e->closing) {
        nudge_free(n);
        return;
    }
    lf_transition_req req = nudge_req(n, false);
    lf_engine_transition_internal(n->e, &req, nudged, n);
}

static void nudge_loaded(lf_code code, const char *err, const lf_record *rec,
                         const lf_entry *en, void *arg) {
    nudge *n = arg;
    (void)err;
    (void)en;
    const lf_workflow *wf =
        code == LF_OK && !n->e->closing ? lf_engine_workflow(n->e, rec->workflow) : NULL;
    int from = wf ? lf_workflow_state(wf, rec->state) : -1;
    for (int i = 0; from >= 0 && wf->gates && i < wf->nedges && !n->to; i++) {
        const lf_edge *ed = &wf->edges[i];
        if (ed->from == from && !ed->engine && wf->gates[ed->to].kids_auto) {
            n->to = lf_xstrdup(wf->states[ed->to]);
            n->version = rec->version;
        }
    }
    if (!n->to) {
        nudge_free(n);
        return;
    }
    lf_transition_req req = nudge_req(n, true);
    lf_engine_transition_internal(n->e, &req, nudge_checked, n);
}

static void nudge_parent(txn *t, const lf_record *rec) {
    if (!rec->parent || t->eng->closing) return;
    nudge *n = lf_xcalloc(1, sizeof *n);
    n->e = t->eng;
    n->e->busy++;
    n->parent = lf_xstrdup(rec->parent);
    lf_store_get(t->eng->store, n->parent, nudge_loaded, n);
}

static void txn_committed(lf_code code, const char *err, const lf_record *rec,
                          const lf_entry *en, void *arg) {
    txn *t = arg;
    if (code == LF_CONFLICT && ++t->attempts < MAX_ATTEMPTS) {
        txn_start(t);           /* somebody else moved it: re-validate */
        return;
    }
    if (code == LF_DENIED && t->limited && ++t->attempts < MAX_ATTEMPTS) {
        budgets_forget(t);      /* spent, or a child moved (txn_limits): count */
        kids_forget(t);         /* again, and refuse */
        txn_start(t);
        return;
    }
    if (code != LF_OK) {
        txn_done(t, code, err, NULL, NULL);
        return;
    }
    if (t->kind == LF_ENTRY_DELETED) {
        txn_done(t, LF_OK, NULL, NULL, NULL);
        return;
    }
    /* The caller hears first; hooks and follow-ups come after. */
    t->eng->stats.transitions[LF_OK]++;
    appended(t->eng, en);
    if (t->violation) t->eng->stats.violations++;
    reply(t->cb, t->arg,
          (lf_result){.code = LF_OK,
                      .previous_state = t->from_name,
                      .new_state = t->to_name,
                      .record = rec,
                      .decisions = t->decisions,
                      .violation = t->violation});
    run_hooks(t, rec, en, true);
    escalate_if_spent(t, rec);
    nudge_parent(t, rec);
    txn_free(t);
}

/* A refused attempt (denied by a guard, or no such edge) is in the log:
 * answer with the refusal. */
static void txn_refused(lf_code code, const char *err, const lf_record *rec,
                        const lf_entry *en, void *arg) {
    txn *t = arg;
    (void)en;
    if (code == LF_CONFLICT && ++t->attempts < MAX_ATTEMPTS) {
        txn_start(t);           /* the key was used, or the record moved, meanwhile */
        return;
    }
    if (code != LF_OK) {
        txn_done(t, code, err, NULL, NULL);
        return;
    }
    appended(t->eng, en);
    txn_done(t, t->refusal, t->denial, NULL, rec);
}

/* Request metadata with the guards' annotations merged in (annotations
 * win: they are what the policy set decided). */
static char *merge_annotations(const char *meta, const char *ann) {
    cJSON *m = cJSON_Parse(meta ? meta : "{}"), *a = cJSON_Parse(ann), *it;
    char *out = NULL;
    if (cJSON_IsObject(m) && cJSON_IsObject(a)) {
        while ((it = a->child)) {
            cJSON_DetachItemViaPointer(a, it);
            cJSON_DeleteItemFromObjectCaseSensitive(m, it->string);
            cJSON_AddItemToObject(m, it->string, it);
        }
        out = lf_xptr(cJSON_PrintUnformatted(m));
    }
    cJSON_Delete(m);
    cJSON_Delete(a);
    return out;
}

/* Guards: returns true when the transition may go ahead. On a denial the
 * request is finished here (dry run) or a `denied` entry is on its way. */
static bool txn_guard(txn *t, const lf_record *rec, int64_t now, lf_entry *en,
                      char **merged, bool uncounted) {
    lf_engine *e = t->eng;
    lf_eval ev = {.record = rec,
                  .from = t->from_name,
                  .to = t->to_name,
                  .trigger = t->trigger,
                  .actor = t->actor,
                  .metadata = t->metadata,
                  .now_us = now,
                  .roles = t->roles,
                  .children = t->kids,
                  .actor_kind = t->actor_kind,
                  .principal = t->principal,
                  .wf = t->wf,
                  .from_id = t->from_id,
                  .to_id = t->to_id};
    lf_verdict v;
    lf_rules_evaluate(t->g->rules, &ev, &v);
    lf_buf b = LF_BUF_INIT;
    free(t->decisions);
    t->decisions = NULL;            /* NULL reads as [] */
    if (v.ndecisions) {
        observe_evaluation(&e->stats, v.ns);
        e->stats.guard_evals += v.ndecisions;
        lf_verdict_json(&v, &b);
        t->decisions = lf_buf_steal(&b);
    }
    *merged =
        v.allow && v.annotations ? merge_annotations(t->metadata, v.annotations) : NULL;
    if (v.allow) {
        lf_verdict_free(&v);
        return true;
    }
    const lf_decision *d = &v.decisions[v.denied_by];
    if (t->override) {
        /* Break-glass (its role was checked first): the entry says so. */
        t->overrode = true;
        lf_verdict_free(&v);
        return true;
    }
    if (t->observed) {
        /* It happened anyway: record it, with who objected. */
        if (!t->violation) set_violation(t, d->policy, d->reason ? d->reason : "denied");
        lf_verdict_free(&v);
        return true;
    }
    if (uncounted) {
        /* A spent budget refuses before any guard: count them, and judge
         * the request again. */
        lf_verdict_free(&v);
        budgets_forget(t);
        txn_start(t);
        return false;
    }
    lf_buf_printf(&b, "Denied by policy %s: %s", d->policy,
                  d->reason ? d->reason : "denied");
    free(t->denial);
    t->denial = lf_buf_steal(&b);
    lf_verdict_free(&v);
    if (t->dry_run) {
        txn_done(t, LF_DENIED, t->denial, NULL, rec);
        return false;
    }
    /* The attempt itself goes on record, the record does not move. */
    en->kind = LF_ENTRY_DENIED;
    en->version = rec->version;
    en->decisions = t->decisions;
    t->refusal = LF_DENIED;
    engine_commit(e, t->g, en, txn_refused, t);
    return false;
}

/* What an observation would have been refused by. */
static void set_violation(txn *t, const char *rule, const char *reason) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_str(&o, "rule", rule);
    lf_jw_str(&o, "reason", reason);
    lf_jw_close(&o, '}');
    free(t->violation);
    t->violation = lf_buf_steal(&b);
}

/* A refusal decided before the guards, by one rule: the workflow (no
 * such edge: invalid_transition, kind rejected), a role gate, a retry
 * budget or the break-glass check (denied). The attempt is recorded with
 * that rule as the deciding one so the log proves what was tried; the
 * record does not move. A dry run records nothing. */
static void txn_refuse(txn *t, const lf_record *rec, lf_entry *en, lf_code code,
                       const char *rule, const char *reason) {
    lf_buf b = LF_BUF_INIT;
    if (code == LF_DENIED) lf_buf_printf(&b, "Denied by policy %s: %s", rule, reason);
    else lf_buf_puts(&b, reason);
    free(t->denial);
    t->denial = lf_buf_steal(&b);
    /* A dry run of a missing edge answers as LoopForge does, with no
     * decisions; one a rule refuses names the rule, as the real one. */
    if (t->dry_run && code != LF_DENIED) {
        txn_done(t, code, t->denial, NULL, rec);
        return;
    }
    lf_jw list = lf_jw_open(&b, '[');
    lf_jw_next(&list);
    lf_jw d = lf_jw_open(&b, '{');
    lf_jw_str(&d, "policy", rule);
    lf_jw_str(&d, "verdict", "deny");
    lf_jw_str(&d, "reason", reason);
    lf_jw_close(&d, '}');
    lf_jw_close(&list, ']');
    free(t->decisions);
    t->decisions = lf_buf_steal(&b);
    if (t->dry_run) {
        txn_done(t, code, t->denial, NULL, rec);
        return;
    }
    en->kind = code == LF_DENIED ? LF_ENTRY_DENIED : LF_ENTRY_REJECTED;
    en->version = rec->version;
    if (!en->to_state) en->to_state = t->to;
    en->decisions = t->decisions;
    t->refusal = code;
    engine_commit(t->eng, t->g, en, txn_refused, t);
}

/* An edge the workflow does not have (or one only the engine takes). */
static void txn_reject(txn *t, const lf_workflow *wf, int from, const lf_record *rec,
                       lf_entry *en) {
    lf_buf b = LF_BUF_INIT, rule = LF_BUF_INIT;
    lf_workflow_invalid_msg(wf, from, t->to, &b);
    lf_buf_printf(&rule, "workflow:%s", wf->name);
    txn_refuse(t, rec, en, LF_INVALID_TRANSITION, lf_buf_str(&rule), lf_buf_str(&b));
    lf_buf_free(&b);
    lf_buf_free(&rule);
}

/* The changes of an override's transition with its review timer added
 * (workflow `override.review`): due `review` after now, bound to no
 * state, moving the record to `escalate_to` unless acknowledged first. */
static char *with_review(const char *changes, const lf_record *rec, const lf_workflow *wf,
                         const txn *t, const char *ts) {
    int64_t now = 0;
    char due[LF_TS_LEN + 1];
    lf_ts_parse(ts, &now);
    lf_ts_format(now + wf->override_review_us, due);
    /* Spliced as text: what the changes and timers already hold is kept
     * byte for byte (no double in between). */
    lf_buf b = LF_BUF_INIT;
    size_t clen = changes ? strlen(changes) : 0;
    if (clen > 2) {
        lf_buf_add(&b, changes, clen - 1);
        lf_buf_putc(&b, ',');
    } else lf_buf_putc(&b, '{');
    lf_buf_puts(&b, "\"timers\":");
    size_t tlen = rec->timers ? strlen(rec->timers) : 0;
    if (tlen > 2) {
        lf_buf_add(&b, rec->timers, tlen - 1);
        lf_buf_putc(&b, ',');
    } else lf_buf_putc(&b, '[');
    lf_jw x = lf_jw_open(&b, '{');
    lf_jw_str(&x, "due", due);
    lf_jw_raw(&x, "state", NULL, "null");
    lf_jw_str(&x, "to", wf->states[wf->override_escalate]);
    lf_jw_str(&x, "trigger", "override.review_expired");
    lf_jw_str(&x, "kind", "override_review");
    lf_jw_str(&x, "by", t->actor);
    lf_jw_close(&x, '}');
    lf_buf_puts(&b, "]}");
    return lf_buf_steal(&b);
}

/* Who acted with what right, for the entry: the actor's roles and where
 * they come from, and a break-glass override. NULL when there is nothing
 * to say (no roles, no override). */
static char *authority_json(const txn *t) {
    lf_identity id;
    lf_rules_identity(t->g->rules, t->actor, &id);
    if (t->actor_kind) id.kind = t->actor_kind;
    if (t->principal) id.principal = t->principal;
    /* Said only when it says more than the name: another person behind
     * it, an agent or app, a principal. */
    bool who = !lf_streq(id.kind, "human") || id.principal ||
               (id.person && !lf_streq_null(id.person, t->actor));
    if (who && (lf_streq(id.kind, "engine") || lf_streq(id.kind, "unknown"))) who = false;
    if (!(t->roles && *t->roles) && !t->override && !who) return NULL;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    if (who) {
        lf_jw_key(&o, "identity");
        lf_jw i = lf_jw_open(&b, '{');
        lf_jw_str(&i, "kind", id.kind);
        lf_jw_str(&i, "person", id.person);
        lf_jw_str(&i, "principal", id.principal);
        lf_jw_close(&i, '}');
    }
    if ((t->roles && *t->roles) || t->override) {
        lf_jw_key(&o, "roles");
        lf_jw list = lf_jw_open(&b, '[');
        for (const char *p = t->roles; p && *p;) {
            const char *c = strchr(p, ',');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            lf_buf one = LF_BUF_INIT;
            lf_buf_printf(&one, "%.*s", (int)len, p);
            lf_jw_next(&list);
            lf_buf_json_str(&b, lf_buf_str(&one));
            lf_buf_free(&one);
            p = c ? c + 1 : NULL;
        }
        lf_jw_close(&list, ']');
        lf_jw_str(&o, "source", t->roles_verified ? "token" : "claimed");
    }
    if (t->override) {
        lf_jw_key(&o, "override");
        lf_jw ov = lf_jw_open(&b, '{');
        lf_jw_str(&ov, "reason", t->override);
        lf_jw_str(&ov, "co_signer", t->co_signer);
        lf_jw_bool(&ov, "used", t->overrode);
        lf_jw_close(&ov, '}');
    }
    lf_jw_close(&o, '}');
    return lf_buf_steal(&b);
}

/* ---- budgets ------------------------------------------------------------- */

/* The counter a budget reads for this request: the actor's, or the one of
 * the person behind it (as lf_entry_counters counts them). */
static const char *budget_who(const txn *t, char per) {
    return counted_as(t->g->rules, t->actor, t->principal, per);
}

static void budget_key(const txn *t, const lf_budget_def *b, const lf_workflow *wf,
                       char key[LF_COUNTER_KEY]) {
    lf_counter_key(wf->states[b->state], b->per, budget_who(t, b->per), key);
}

static void load_budget(txn *t);

static void budget_counted(lf_code code, const char *err, uint64_t n, int64_t oldest,
                           void *arg) {
    txn *t = arg;
    if (code != LF_OK) {
        txn_done(t, code, err, NULL, NULL);
        return;
    }
    t->budget[t->nbudget].n = n;
    t->budget[t->nbudget].oldest = oldest;
    t->nbudget++;
    load_budget(t);
}

/* Counts, one budget of the workflow after the other, then starts the
 * request over with them (the record is read again). */
static void load_budget(txn *t) {
    const lf_workflow *wf = t->wf;
    int to = lf_workflow_state(wf, t->to);
    while (t->nbudget < wf->nbudgets && wf->budgets[t->nbudget].state != to) t->nbudget++;
    if (t->nbudget == wf->nbudgets || t->eng->closing) {
        t->budgets_loaded = true;
        txn_load(t);
        return;
    }
    const lf_budget_def *b = &wf->budgets[t->nbudget];
    char key[LF_COUNTER_KEY];
    budget_key(t, b, wf, key);
    t->budget[t->nbudget].since = lf_now_us() - b->within_us;
    lf_store_count(t->eng->store, key, t->budget[t->nbudget].since, budget_counted, t);
}

/* Whether a request into state `to` answers to budgets: a person's
 * request (not the engine's own move, not an observation) into a state
 * that has one. */
static bool budgeted(const txn *t, const lf_workflow *wf, int to) {
    if (t->internal || t->observed || t->kind != LF_ENTRY_TRANSITION) return false;
    for (int i = 0; i < wf->nbudgets; i++)
        if (wf->budgets[i].state == to) return true;
    return false;
}

/* The budgets of the target state, for the store to check as it commits
 * (core/entry.h), atomically with the write: counted before or not, other
 * requests in flight may have spent them. The window each was counted
 * over, else the one that ends now. */
static void budget_limits(txn *t, const lf_workflow *wf, int to, lf_entry *en) {
    if (!budgeted(t, wf, to)) return;
    int64_t now = lf_now_us();
    for (int i = 0; i < wf->nbudgets; i++) {
        const lf_budget_def *b = &wf->budgets[i];
        if (b->state != to || en->nlimits == LF_ENTRY_BUDGETS) continue;
        en->limits[en->nlimits++] = (lf_entry_limit){
            .kind = 'c', .index = b->per == 'a' ? 0 : 1, .max = b->max,
            .since = t->budgets_loaded ? t->budget[i].since : now - b->within_us};
    }
}

/* What the store checks as the transition commits (core/entry.h): the
 * target state's budgets, and its children gate -- the children were
 * counted before the gates, and one may have moved since. */
static void txn_limits(txn *t, const lf_workflow *wf, int to, lf_entry *en) {
    budget_limits(t, wf, to, en);
    const lf_gate *g = wf->gates ? &wf->gates[to] : NULL;
    if (!t->observed && g && g->nkids)
        en->limits[en->nlimits++] =
            (lf_entry_limit){.kind = 'k', .states = g->kids, .nstates = g->nkids};
    t->limited = en->nlimits > 0;
}

/* A budget may be spent: count them before the next attempt's gates. */
static void budgets_forget(txn *t) {
    t->count_budgets = true;
    free(t->budget);
    t->budget = NULL;
    t->nbudget = 0;
    t->budgets_loaded = false;
}

/* A budget of the target state that is spent: the reason, and when the
 * earliest counted transition leaves the window. */
static bool budget_spent(const txn *t, const lf_workflow *wf, int to, lf_buf *why,
                         lf_buf *rule) {
    for (int i = 0; t->budgets_loaded && i < wf->nbudgets; i++) {
        const lf_budget_def *b = &wf->budgets[i];
        if (b->state != to || t->budget[i].n < (uint64_t)b->max) continue;
        char frees[LF_TS_LEN + 1];
        lf_ts_format(t->budget[i].oldest + b->within_us, frees);
        const char *who = budget_who(t, b->per);
        lf_buf_printf(rule, "budget:%s", wf->states[to]);
        lf_buf_printf(why,
                      "budget spent: %s %s made %llu transitions to %s within %llds "
                      "(at most %d); it frees up at %s",
                      b->per == 'a' ? "actor" : "principal", who,
                      (unsigned long long)t->budget[i].n, wf->states[to],
                      (long long)(b->within_us / 1000000), b->max, frees);
        return true;
    }
    return false;
}

/* The checks before the guards that a workflow declares: the break-glass
 * role of an override, engine-only edges, role gates and retry budgets.
 * Returns true when the request may go on to the guards; else it is
 * finished (refused) here. An observation is never refused: what it
 * breaks becomes its violation. */
static bool txn_gates(txn *t, const lf_workflow *wf, int from, int to,
                      const lf_record *rec, lf_entry *en) {
    lf_buf why = LF_BUF_INIT, rule = LF_BUF_INIT;
    bool go = true;
    if (t->override && !lf_roles_have(t->roles, "breakglass")) {
        lf_buf_printf(&why, "an override needs the role breakglass; %s has %s", t->actor,
                      t->roles && *t->roles ? t->roles : "no role");
        lf_buf_puts(&rule, "breakglass");
    } else if (t->override && wf->override_co_signer && !t->co_signer) {
        lf_buf_printf(&why, "an override in workflow %s needs a co-signer", wf->name);
        lf_buf_puts(&rule, "breakglass");
    } else if (!t->internal) {
        const char *gated = lf_workflow_gate(wf, from, to, t->actor, t->roles, &why);
        const lf_retry_def *r = lf_workflow_retry(wf, from);
        if (gated) lf_buf_printf(&rule, "roles:%s", gated);
        else if (r && r->to == to) {
            size_t used = lf_record_count(rec, wf->states[from], wf->states[to]);
            if ((int)used >= r->max) {
                lf_buf_printf(&rule, "retries:%s", wf->states[from]);
                lf_buf_printf(&why,
                              "retry budget exhausted (%zu of %d retries used): "
                              "escalate instead of retrying",
                              used, r->max);
            }
        }
    }
    if (!why.len && !lf_workflow_kids_ok(wf, to, t->kids, &why))
        lf_buf_printf(&rule, "children:%s", wf->states[to]);
    if (!why.len && !t->internal) budget_spent(t, wf, to, &why, &rule);
    if (why.len) {
        if (t->observed) {
            if (!t->violation) set_violation(t, lf_buf_str(&rule), lf_buf_str(&why));
        } else {
            txn_refuse(t, rec, en, LF_DENIED, lf_buf_str(&rule), lf_buf_str(&why));
            go = false;
        }
    }
    lf_buf_free(&why);
    lf_buf_free(&rule);
    return go;
}

/* ---- children ------------------------------------------------------------ */

/* A page of the record's children: counted by state, then the next page,
 * then the request starts over with the counts in hand (the record is
 * read again: nothing is borrowed across the wait). */
static void kids_listed(lf_code code, const char *error, const lf_record *const *recs,
                        size_t n, const char *next, void *arg) {
    txn *t = arg;
    if (code != LF_OK) {
        txn_done(t, code, error, NULL, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < t->nkid_states && strcmp(t->kid_states[k], recs[i]->state) != 0) k++;
        if (k == t->nkid_states) {
            t->kid_states = lf_xrealloc(t->kid_states, (k + 1) * sizeof *t->kid_states);
            t->kid_counts = lf_xrealloc(t->kid_counts, (k + 1) * sizeof *t->kid_counts);
            t->kid_states[k] = lf_xstrdup(recs[i]->state);
            t->kid_counts[k] = 0;
            t->nkid_states++;
        }
        t->kid_counts[k]++;
        t->nkids++;
    }
    free(t->kid_cursor);
    t->kid_cursor = next ? lf_xstrdup(next) : NULL;
    if (next && !t->eng->closing) {
        lf_list_query q = {.parent = t->id, .limit = 1000, .cursor = t->kid_cursor};
        lf_store_list(t->eng->store, &q, kids_listed, t);
        return;
    }
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_int(&o, "total", (int64_t)t->nkids);
    for (size_t k = 0; k < t->nkid_states; k++)
        if (strcmp(t->kid_states[k], "total") != 0)
            lf_jw_int(&o, t->kid_states[k], (int64_t)t->kid_counts[k]);
    lf_jw_close(&o, '}');
    t->kids = lf_buf_steal(&b);
    txn_load(t);
}

/* A child moved as the record committed: list them again. */
static void kids_forget(txn *t) {
    for (size_t i = 0; i < t->nkid_states; i++) free(t->kid_states[i]);
    free(t->kid_states);
    free(t->kid_counts);
    free(t->kid_cursor);
    free(t->kids);
    t->kid_states = NULL;
    t->kid_counts = NULL;
    t->kid_cursor = NULL;
    t->kids = NULL;
    t->nkid_states = t->nkids = 0;
}

static void load_kids(txn *t) {
    lf_list_query q = {.parent = t->id, .limit = 1000};
    lf_store_list(t->eng->store, &q, kids_listed, t);
}

/* ---- observations: facts, and the walk they imply ---------------------- */

static void walk_commit(txn *t, const lf_record *rec);

/* One item of a violation: {"rule":…,"reason":…}. */
static void unmet_add(lf_buf *items, const char *rule, const char *reason) {
    if (items->len) lf_buf_putc(items, ',');
    lf_jw o = lf_jw_open(items, '{');
    lf_jw_str(&o, "rule", rule);
    lf_jw_str(&o, "reason", reason);
    lf_jw_close(&o, '}');
}

/* The violation of a step from its items: the one item itself, or the
 * first one's rule, every reason, and the whole list as `unmet`. */
static char *violation_of(const lf_buf *items, int n, const char *first_rule) {
    if (n == 0) return NULL;
    if (n == 1) return lf_xstrdup(items->p);
    lf_buf list = LF_BUF_INIT, why = LF_BUF_INIT, out = LF_BUF_INIT;
    lf_buf_printf(&list, "[%s]", items->p);
    cJSON *all = lf_xptr(cJSON_Parse(list.p)), *it;
    cJSON_ArrayForEach(it, all) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, "reason");
        if (why.len) lf_buf_puts(&why, "; ");
        lf_buf_puts(&why, cJSON_IsString(r) ? r->valuestring : "");
    }
    cJSON_Delete(all);
    lf_jw o = lf_jw_open(&out, '{');
    lf_jw_str(&o, "rule", first_rule);
    lf_jw_str(&o, "reason", lf_buf_str(&why));
    lf_jw_raw(&o, "unmet", list.p, "[]");
    lf_jw_close(&o, '}');
    lf_buf_free(&list);
    lf_buf_free(&why);
    return lf_buf_steal(&out);
}

/* The record fields an entry sets: closed_at entering a terminal state;
 * on a request, or the step of a walk that carries the fact, the
 * knowledge (forge), the PR fields when the PR is another one, and what
 * the metadata named (pr_url, pr_number, aliases: record_fields). */
static char *entry_changes(const txn *t, bool fact, bool terminal, const char *ts) {
    bool any = fact && (t->forge || t->pr_fields || t->pr_changes);
    if (!terminal && !any) return NULL;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    if (terminal) {
        lf_jw_key(&o, "closed_at");
        lf_buf_putc(&b, '"');
        lf_buf_add(&b, ts, LF_TS_LEN);
        lf_buf_putc(&b, '"');
    }
    if (fact && t->forge) lf_jw_raw(&o, "forge", t->forge, "{}");
    const char *members[] = {fact ? t->pr_fields : NULL, fact ? t->pr_changes : NULL};
    for (int i = 0; i < 2; i++) {
        if (!members[i]) continue;
        lf_jw_next(&o);
        lf_buf_puts(&b, members[i]);
    }
    lf_jw_close(&o, '}');
    return lf_buf_steal(&b);
}

/* The request's metadata with what the engine adds to the entry that
 * carries the fact: why it moved nothing (stale), what else happened
 * (note), whether it went back (regression). */
static char *fact_metadata(const txn *t, const char *meta) {
    if (!t->stale[0] && !t->note[0] && !t->regression && !t->abandoned) return NULL;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    if (t->stale[0]) lf_jw_str(&o, "stale", t->stale);
    if (t->note[0]) lf_jw_str(&o, "note", t->note);
    if (t->regression && t->npath) lf_jw_bool(&o, "regression", true);
    if (t->abandoned && t->npath) lf_jw_bool(&o, "abandoned", true);
    lf_jw_close(&o, '}');
    char *out = merge_annotations(meta, b.p);
    lf_buf_free(&b);
    return out;
}

/* The states from `from` to `target` the record walks, in t->path, and
 * which step carries the fact; t->npath 0 when it stays. The state only
 * goes forward (lf_workflow_ranks): further along by the shortest path
 * whose steps the knowledge allows (else straight there, a violation if
 * the workflow has no such edge), sideways only by such a path, back only
 * along an edge the workflow has (a CI re-run) or when a new head or a
 * new PR says so. */
static void plan_walk(txn *t, int from, int target, int to, const lf_forge *k) {
    const lf_workflow *wf = t->wf;
    int *ranks = lf_xmalloc((size_t)wf->nstates * sizeof *ranks);
    lf_workflow_ranks(wf, ranks);
    free(t->path);
    t->path = lf_xmalloc((size_t)(wf->nstates + 1) * sizeof *t->path);
    t->npath = 0;
    int len = lf_workflow_path(wf, from, target, t->path);
    for (int i = 1; i < len - 1; i++)
        if (!lf_forge_allows(k, wf->states[t->path[i]])) len = 0;
    bool ahead = ranks[target] > ranks[from], behind = ranks[target] < ranks[from];
    if (behind && !t->regression && !lf_workflow_has_edge(wf, from, target)) len = 0;
    else if ((len == 0 && ahead) || (behind && t->regression)) {
        t->path[0] = from, t->path[1] = target;
        len = 2;
    }
    t->npath = len;
    t->step = 0;
    t->fact_edge = len - 2;
    for (int i = 0; i + 1 < len; i++)
        if (t->path[i + 1] == to) t->fact_edge = i;
    free(ranks);
}

/* Folds the fact into the record's knowledge and plans the walk. */
static void learn(txn *t, int from, int to, const lf_record *rec) {
    lf_forge *k = lf_forge_parse(rec->forge);
    lf_forge_outcome fo;
    lf_forge_apply(k, t->fact, &fo);
    t->changed = fo.changed;
    t->regression = fo.regression;
    memcpy(t->stale, fo.stale, sizeof t->stale);
    memcpy(t->note, fo.note, sizeof t->note);
    free(t->forge);
    t->forge = fo.changed ? lf_forge_json(k) : NULL;
    free(t->pr_fields);
    t->pr_fields = NULL;
    int64_t number;
    const char *url;
    if (fo.pr_changed && lf_forge_pr(k, &number, &url)) {
        lf_buf b = LF_BUF_INIT;
        lf_jw o = {&b, false};      /* members only, like record_fields */
        lf_jw_str(&o, "pr_url", url);
        lf_jw_int(&o, "pr_number", number);
        t->pr_fields = lf_buf_steal(&b);
    }
    const char *m = t->stale[0] ? NULL : lf_forge_milestone(k);
    int target = m ? lf_workflow_state(t->wf, m) : -1;
    /* GitHub closing what was never merged (a won't-fix issue, an
     * abandoned PR) is an ending, not a breach of the lifecycle. */
    t->abandoned =
        target >= 0 && lf_workflow_is_terminal(t->wf, target) && !lf_forge_merged(k);
    t->npath = 0;
    if (target >= 0 && target != from) plan_walk(t, from, target, to, k);
    lf_forge_free(k);
}

/* An observation: a fact (metadata.fact), one that repeats the record's
 * state, or one about a record in a terminal state. It always leaves an
 * entry: the steps of the walk its knowledge implies, or one `observed`
 * entry that keeps the fact (and the knowledge it taught) and moves
 * nothing. Nothing takes a record out of a terminal state. */
static void observe(txn *t, int from, int to, const lf_record *rec) {
    const lf_workflow *wf = t->wf;
    t->start_name = wf->states[from];
    t->stale[0] = t->note[0] = '\0';
    t->changed = t->regression = t->abandoned = false;
    t->npath = 0;
    free(t->violation);
    t->violation = NULL;
    if (t->fact) learn(t, from, to, rec);
    if (lf_workflow_is_terminal(wf, from)) {
        t->npath = 0;
        if (!t->note[0])
            snprintf(t->note, sizeof t->note,
                     "%s is terminal: the fact is kept, the state stays",
                     wf->states[from]);
    }
    if (t->dry_run) {
        const char *end = t->npath ? wf->states[t->path[t->npath - 1]] : t->start_name;
        txn_done(t, LF_OK, NULL, end, rec);
        return;
    }
    walk_commit(t, rec);
}

/* The store's answer to one step of a walk (or to the observed entry). */
static void walk_committed(lf_code code, const char *err, const lf_record *rec,
                           const lf_entry *en, void *arg) {
    txn *t = arg;
    if (code == LF_CONFLICT && ++t->attempts < MAX_ATTEMPTS) {
        t->start_name = NULL;
        txn_start(t);           /* somebody else moved it: learn again */
        return;
    }
    if (code != LF_OK) {
        txn_done(t, code, err, NULL, NULL);
        return;
    }
    if (en->violation) t->eng->stats.violations++;
    appended(t->eng, en);
    if (t->npath && t->step + 2 < t->npath) {
        run_hooks(t, rec, en, false);
        t->step++;
        walk_commit(t, rec);
        return;
    }
    t->eng->stats.transitions[LF_OK]++;
    const char *end = t->npath ? t->to_name : t->start_name;
    bool moved = t->npath > 0;
    reply(t->cb, t->arg,
          (lf_result){.code = LF_OK,
                      .previous_state = t->start_name,
                      .new_state = end,
                      .record = rec,
                      .decisions = t->decisions,
                      .violation = t->violation,
                      .observation = true,
                      .changed = t->changed || moved,
                      .stale = t->stale[0] ? t->stale : NULL});
    if (moved) run_hooks(t, rec, en, true);
    txn_free(t);
}

/* Commits the walk's current step (or, with no walk, the observed entry)
 * on top of rec. */
static void walk_commit(txn *t, const lf_record *rec) {
    const lf_workflow *wf = t->wf;
    bool walking = t->npath > 0;
    bool fact = !walking || t->step == t->fact_edge;
    bool last = !walking || t->step + 2 == t->npath;
    int a = walking ? t->path[t->step] : lf_workflow_state(wf, rec->state);
    int b = walking ? t->path[t->step + 1] : a;
    lf_entry en = {0};
    en.record_id = t->id;
    en.kind = walking ? LF_ENTRY_TRANSITION : LF_ENTRY_OBSERVED;
    en.version = rec->version + 1;
    en.from_state = t->from_name = wf->states[t->from_id = a];
    en.to_state = t->to_name = wf->states[t->to_id = b];
    en.trigger = t->trigger;
    en.actor = t->actor;
    en.policy_set = lf_rules_generation(t->g->rules);
    en.idempotency_key = last ? t->key : NULL;
    int64_t now = stamp(en.timestamp, rec->updated_at);
    char *merged = NULL, *extra = NULL, *changes = NULL;
    lf_buf items = LF_BUF_INIT;
    int n = 0;
    const char *first = NULL;
    char rule[160];
    if (walking && fact) {
        free(t->violation);
        t->violation = NULL;
        if (!lf_workflow_has_edge(wf, a, b) && !t->regression &&
            !(t->abandoned && lf_workflow_is_terminal(wf, b))) {
            lf_buf why = LF_BUF_INIT;
            lf_workflow_invalid_msg(wf, a, wf->states[b], &why);
            snprintf(rule, sizeof rule, "workflow:%s", wf->name);
            unmet_add(&items, rule, lf_buf_str(&why));
            lf_buf_free(&why);
            first = rule, n++;
        }
        if (strcmp(wf->states[b], "merged") == 0) {
            lf_forge *k = lf_forge_parse(t->forge ? t->forge : rec->forge);
            lf_buf lines = LF_BUF_INIT;
            lf_forge_merge_unmet(k, rec->auto_merge, &lines);
            for (char *l = lines.p, *nl; l && *l; l = nl + 1) {
                nl = strchr(l, '\n');
                *nl = '\0';
                unmet_add(&items, "merge-checks", l);
                if (!first) first = "merge-checks";
                n++;
            }
            lf_buf_free(&lines);
            lf_forge_free(k);
        }
        /* Guards see the record with what this fact taught it. */
        lf_record *seen = NULL;
        if (t->forge) {
            seen = lf_record_dup(rec);
            free(seen->forge);
            seen->forge = lf_xstrdup(t->forge);
        }
        txn_guard(t, seen ? seen : rec, now, &en, &merged, false); /* observed: never refuses */
        lf_record_free(seen);
        if (t->violation) {
            cJSON *v = cJSON_Parse(t->violation);
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(v, "rule");
            const cJSON *why = cJSON_GetObjectItemCaseSensitive(v, "reason");
            snprintf(rule, sizeof rule, "%s", cJSON_IsString(r) ? r->valuestring : "?");
            if (!first) first = rule;
            unmet_add(&items, rule, cJSON_IsString(why) ? why->valuestring : "denied");
            n++;
            cJSON_Delete(v);
            free(t->violation);
        }
        t->violation = violation_of(&items, n, first);
    }
    const char *meta = merged ? merged : t->metadata;
    if (fact) meta = (extra = fact_metadata(t, meta)) ? extra : meta;
    else meta = "{\"implied\":true}";
    en.metadata = meta;
    en.decisions = walking && fact ? t->decisions : NULL;
    en.violation = walking && fact ? t->violation : NULL;
    en.changes = changes =
        entry_changes(t, fact, walking && lf_workflow_is_terminal(wf, b), en.timestamp);
    engine_commit(t->eng, t->g, &en, walk_committed, t);
    lf_buf_free(&items);
    free(changes);
    cJSON_free(extra);
    cJSON_free(merged);
}

/* The store's answer to the load of a transition's (or deletion's) record,
 * and the heart of the pipeline: checks the edge in the record's
 * workflow, runs the guards (or, for an observation, records what they
 * would have said as a violation), builds the entry and hands it to the
 * store's commit.
 *
 * code/err: the load's outcome (anything but LF_OK ends the request with
 *           it); rec: the record as loaded, valid only during this call.
 * arg:      the txn, which from here belongs to the commit's callback or
 *           is finished (txn_done) on every early return.
 * Can fail: an unknown workflow or state (invalid_request), no edge
 * (invalid_transition, audited as `rejected`), a guard's deny (denied,
 * audited as `denied`). A repeat of an
 * observation already true changes nothing and answers ok. */
static void txn_loaded(lf_code code, const char *err, const lf_record *rec,
                       const lf_entry *unused, void *arg) {
    txn *t = arg;
    char msg[512];
    (void)unused;
    if (code != LF_OK) {
        txn_done(t, code, err, NULL, NULL);
        return;
    }
    const lf_workflow *wf = workflow_of(t->g, rec->workflow, msg, sizeof msg);
    if (!wf) {
        txn_done(t, LF_INVALID_REQUEST, msg, NULL, NULL);
        return;
    }
    t->wf = wf;
    int from = lf_workflow_state(wf, rec->state);
    if (from < 0) {
        snprintf(msg, sizeof msg,
                 "Record %s is in state '%s', which workflow "
                 "%s does not have",
                 rec->id, rec->state, wf->name);
        txn_done(t, LF_INVALID_REQUEST, msg, NULL, NULL);
        return;
    }
    t->from_name = wf->states[t->from_id = from];
    if (wf->children && !t->kids && t->kind == LF_ENTRY_TRANSITION) {
        load_kids(t);
        return;
    }
    if (wf->nbudgets && !t->budgets_loaded && !t->internal && !t->observed &&
        t->kind == LF_ENTRY_TRANSITION && (t->dry_run || t->count_budgets)) {
        t->budget = lf_xcalloc((size_t)wf->nbudgets, sizeof *t->budget);
        load_budget(t);
        return;
    }
    if (t->expect && rec->version != t->expect && txn_maybe_stale(t)) {
        t->attempts++;          /* maybe what this process last knew: read it */
        txn_load(t);
        return;
    }
    if (t->expect && rec->version != t->expect) {
        snprintf(msg, sizeof msg,
                 "Version conflict on %s: expected version %llu, found %llu", rec->id,
                 (unsigned long long)t->expect, (unsigned long long)rec->version);
        txn_done(t, LF_CONFLICT, msg, NULL, rec);
        return;
    }
    /* Borrow nothing from `rec` for the entry: a store may catch up on
     * other writers inside commit, and that can change the record. */
    lf_entry en = {0};
    en.record_id = t->id;
    en.kind = t->kind;
    en.version = rec->version + 1;
    en.from_state = t->from_name;
    en.trigger = t->trigger;
    en.actor = t->actor;
    en.metadata = t->metadata;
    en.policy_set = lf_rules_generation(t->g->rules);
    en.idempotency_key = t->key;
    en.request = t->digest;
    int64_t now = stamp(en.timestamp, rec->updated_at);
    char *changes = NULL, *merged = NULL, *authority = NULL;
    if (t->kind == LF_ENTRY_TRANSITION) {
        int to = lf_workflow_state(wf, t->to);
        if (to < 0) {
            snprintf(msg, sizeof msg, "Unknown state '%s' in workflow %s", t->to,
                     wf->name);
            txn_done(t, LF_INVALID_REQUEST, msg, NULL, NULL);
            return;
        }
        free(t->violation);
        t->violation = NULL;
        t->overrode = false;    /* each attempt is judged afresh */
        if (t->observed && (t->fact || to == from || lf_workflow_is_terminal(wf, from))) {
            observe(t, from, to, rec);
            return;
        }
        if (!lf_workflow_has_edge(wf, from, to) ||
            (lf_workflow_engine_edge(wf, from, to) && !t->internal)) {
            if (!t->observed) {
                txn_reject(t, wf, from, rec, &en);
                return;
            }
            /* GitHub merged it whatever our graph says: follow reality. */
            lf_buf b = LF_BUF_INIT, rule = LF_BUF_INIT;
            lf_workflow_invalid_msg(wf, from, t->to, &b);
            lf_buf_printf(&rule, "workflow:%s", wf->name);
            set_violation(t, lf_buf_str(&rule), lf_buf_str(&b));
            lf_buf_free(&b);
            lf_buf_free(&rule);
        }
        t->to_name = en.to_state = wf->states[t->to_id = to];
        en.authority = authority = authority_json(t);
        if (!txn_gates(t, wf, from, to, rec, &en)) {
            free(authority);
            return;
        }
        if (!txn_guard(t, rec, now, &en, &merged, budgeted(t, wf, to) && !t->budgets_loaded)) {
            free(authority);
            return;
        }
        if (t->overrode) {
            free(authority);
            en.authority = authority = authority_json(t);
        }
        if (t->dry_run) {
            reply(t->cb, t->arg,
                  (lf_result){.code = LF_OK,
                              .previous_state = t->from_name,
                              .new_state = t->to_name,
                              .record = rec,
                              .decisions = t->decisions,
                              .dry_run = true,
                              .violation = t->violation});
            t->eng->stats.transitions[LF_OK]++;
            txn_free(t);
            free(authority);
            cJSON_free(merged);
            return;
        }
        if (merged) en.metadata = merged;
        en.decisions = t->decisions;
        en.violation = t->violation;
        en.changes = changes =
            entry_changes(t, true, lf_workflow_is_terminal(wf, to), en.timestamp);
        if (t->overrode && wf->override_review_us && to != wf->override_escalate) {
            char *c2 = with_review(changes, rec, wf, t, en.timestamp);
            free(changes);
            en.changes = changes = c2;
        }
        txn_limits(t, wf, to, &en);
    }
    engine_commit(t->eng, t->g, &en, txn_committed, t);
    free(changes);
    free(authority);
    cJSON_free(merged);
}

static void txn_load(txn *t) {
    if (t->eng->closing) {
        txn_done(t, LF_UNAVAILABLE, CLOSING_MSG, NULL, NULL);
        return;
    }
    if (txn_maybe_stale(t)) lf_store_get_for_update(t->eng->store, t->id, txn_loaded, t);
    else lf_store_get(t->eng->store, t->id, txn_loaded, t);
}

static void txn_keyed(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *en, void *arg) {
    txn *t = arg;
    if (code == LF_NOT_FOUND) {
        txn_load(t);
        return;
    }
    if (code == LF_OK) {
        reply_first(t->eng, t->cb, t->arg, rec, en, t->digest);
        txn_free(t);
        return;
    }
    txn_done(t, code, err, NULL, NULL);
}

/* A keyed request first asks whether the key was used before. */
static void txn_start(txn *t) {
    if (t->key && !t->eng->closing)
        lf_store_find_key(t->eng->store, t->key, txn_keyed, t);
    else txn_load(t);
}

/* One allocation for the context and every string it keeps. */
static txn *txn_new(lf_engine *e, lf_entry_kind kind, const char *id, const char *to,
                    const char *trigger, const char *actor, lf_result_cb *cb, void *arg) {
    size_t li = strlen(id) + 1, lt = strlen(to) + 1, lg = strlen(trigger) + 1;
    size_t la = strlen(actor) + 1;
    txn *t = lf_xmalloc(sizeof *t + li + lt + lg + la);
    memset(t, 0, sizeof *t);
    char *p = (char *)(t + 1);
    t->id = memcpy(p, id, li);
    p += li;
    t->to = memcpy(p, to, lt);
    p += lt;
    t->trigger = memcpy(p, trigger, lg);
    p += lg;
    t->actor = memcpy(p, actor, la);
    t->eng = e;
    e->busy++;
    t->g = gen_hold(e->gen);
    t->kind = kind;
    t->cb = cb;
    t->arg = arg;
    return t;
}

/* pr_url (string or null), pr_number (integer or null) and aliases (an
 * array of non-empty strings) in a transition's metadata also set the
 * record's fields, so a route that links a PR needs no second request. */
static int record_fields(cJSON *meta, char **out, char *err, size_t errlen) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(meta, "pr_url");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(meta, "pr_number");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(meta, "aliases"), *a;
    *out = NULL;
    if (!u && !n && !al) return 0;
    int64_t pr = 0;
    if ((u && !cJSON_IsString(u) && !cJSON_IsNull(u)) ||
        (n && !cJSON_IsNull(n) &&
         lf_json_number_int(n, &pr))) {
        snprintf(err, errlen,
                 "metadata: pr_url must be a string and pr_number an integer");
        return -1;
    }
    if (al && !cJSON_IsArray(al)) goto bad_aliases;
    cJSON_ArrayForEach(a,
                       al) if (!cJSON_IsString(a) || !a->valuestring[0]) goto bad_aliases;
    lf_buf b = LF_BUF_INIT;
    lf_jw o = {&b, false}; /* members only: entry_changes adds the braces */
    if (u) lf_jw_str(&o, "pr_url", cJSON_IsString(u) ? u->valuestring : NULL);
    if (n && cJSON_IsNull(n)) lf_jw_raw(&o, "pr_number", NULL, "null");
    else if (n) lf_jw_int(&o, "pr_number", pr);
    if (al) {
        lf_jw_key(&o, "aliases");
        lf_jw list = lf_jw_open(&b, '[');
        cJSON_ArrayForEach(a, al) {
            lf_jw_next(&list);
            lf_buf_json_str(&b, a->valuestring);
        }
        lf_jw_close(&list, ']');
    }
    *out = lf_buf_steal(&b);
    return 0;
bad_aliases:
    snprintf(err, errlen, "metadata: aliases must be an array of non-empty strings");
    return -1;
}

/* An observation's metadata.fact (core/forge.h): checked here, so a
 * route that sends a malformed one hears it at once. The record's PR
 * fields then come from the knowledge, not from the metadata. */
static int take_fact(txn *t, cJSON *meta, char *err, size_t errlen) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(meta, "fact");
    if (!f) return 0;
    t->fact = lf_xptr(cJSON_PrintUnformatted(f));
    if (!cJSON_IsObject(f)) {
        snprintf(err, errlen, "metadata.fact must be an object");
        return -1;
    }
    if (lf_forge_check(t->fact, err, errlen)) return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "pr_url");
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "pr_number");
    return 0;
}

/* Roles as given: comma separated names of letters, digits, '.', '_', '-'. */
static bool roles_valid(const char *roles) {
    if (!roles) return true;
    size_t run = 0;
    for (const char *p = roles;; p++) {
        if (*p == ',' || !*p) {
            if (!run) return false;
            if (!*p) return true;
            run = 0;
        } else if (isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-')
            run++;
        else return false;
    }
}

/* What a request says about its authority, checked before anything runs. */
static const char *authority_problem(const lf_transition_req *req) {
    if (!roles_valid(req->roles))
        return "roles must be comma-separated names (letters, digits, '.', '_', '-')";
    if (req->override_reason && !*req->override_reason)
        return "an override needs a reason";
    if (req->co_signer && !req->override_reason) return "a co-signer signs an override";
    if (req->co_signer &&
        (!*req->co_signer ||
         strcmp(req->co_signer, req->actor ? req->actor : "anonymous") == 0))
        return "the co-signer must be another person than the actor";
    return NULL;
}

static void transition(lf_engine *e, const lf_transition_req *req, bool internal,
                       lf_result_cb *cb, void *arg);

void lf_engine_transition(lf_engine *e, const lf_transition_req *req, lf_result_cb *cb,
                          void *arg) {
    transition(e, req, false, cb, arg);
}

void lf_engine_transition_internal(lf_engine *e, const lf_transition_req *req,
                                   lf_result_cb *cb, void *arg) {
    transition(e, req, true, cb, arg);
}

/* A request (internal: the engine's own, a timer or a retry). */
static void transition(lf_engine *e, const lf_transition_req *req, bool internal,
                       lf_result_cb *cb, void *arg) {
    if (e->closing) {
        fail(cb, arg, LF_UNAVAILABLE, CLOSING_MSG);
        return;
    }
    char err[512];
    const char *missing = !req->id || !*req->id             ? "record id"
                          : !req->to || !*req->to           ? "target state"
                          : !req->trigger || !*req->trigger ? "trigger"
                                                            : NULL;
    if (missing ||
        text_fields(err, sizeof err, "id", req->id, "to", req->to, "trigger",
                    req->trigger, "actor", req->actor, "idempotency_key",
                    req->idempotency_key, NULL) ||
        text_fields(err, sizeof err, "override reason", req->override_reason, "co_signer",
                    req->co_signer, NULL)) {
        if (missing) snprintf(err, sizeof err, "%s is required", missing);
        e->stats.transitions[LF_INVALID_REQUEST]++;
        fail(cb, arg, LF_INVALID_REQUEST, err);
        return;
    }
    const char *bad = authority_problem(req);
    if (bad) {
        e->stats.transitions[LF_INVALID_REQUEST]++;
        fail(cb, arg, LF_INVALID_REQUEST, bad);
        return;
    }
    txn *t = txn_new(e, LF_ENTRY_TRANSITION, req->id, req->to, req->trigger,
                     req->actor ? req->actor : "anonymous", cb, arg);
    t->internal = internal;
    t->roles = req->roles && *req->roles ? lf_xstrdup(req->roles) : NULL;
    t->roles_verified = req->roles_verified;
    t->actor_kind =
        req->actor_kind && *req->actor_kind ? lf_xstrdup(req->actor_kind) : NULL;
    t->principal = req->principal && *req->principal ? lf_xstrdup(req->principal) : NULL;
    t->override = req->override_reason ? lf_xstrdup(req->override_reason) : NULL;
    t->co_signer = req->co_signer ? lf_xstrdup(req->co_signer) : NULL;
    t->dry_run = req->dry_run;
    t->observed = req->observed;
    t->expect = req->expected_version;
    cJSON *tree = NULL;
    if (req->idempotency_key) t->key = lf_xstrdup(req->idempotency_key);
    if (take_object(req->metadata, "metadata", 0, &t->metadata, &tree, err, sizeof err) ||
        (tree && req->observed && take_fact(t, tree, err, sizeof err)) ||
        (tree && record_fields(tree, &t->pr_changes, err, sizeof err))) {
        cJSON_Delete(tree);
        txn_done(t, LF_INVALID_REQUEST, err, NULL, NULL);
        return;
    }
    cJSON_Delete(tree);
    /* An observation's key is its delivery's: bound to that already. */
    if (t->key && !t->observed) {
        const char *parts[] = {"transition", t->id, t->to, t->trigger,
                               t->metadata ? t->metadata : "{}"};
        t->digest = request_digest(parts, 5);
    }
    txn_start(t);
}

void lf_engine_delete(lf_engine *e, const char *id, const char *actor, lf_result_cb *cb,
                      void *arg) {
    lf_engine_delete_version(e, id, actor, 0, cb, arg);
}

void lf_engine_delete_version(lf_engine *e, const char *id, const char *actor,
                              uint64_t expected_version, lf_result_cb *cb, void *arg) {
    if (e->closing) {
        fail(cb, arg, LF_UNAVAILABLE, CLOSING_MSG);
        return;
    }
    if (!id || !*id) {
        fail(cb, arg, LF_INVALID_REQUEST, "record id is required");
        return;
    }
    txn *t = txn_new(e, LF_ENTRY_DELETED, id, "", "deleted", actor ? actor : "anonymous",
                     cb, arg);
    t->expect = expected_version;
    txn_load(t);
}

/* ---- reload ------------------------------------------------------------- */

typedef struct reload_ctx {
    lf_engine *eng;
    gen *next;
    char old[LF_HASH_LEN + 1];
    lf_reload_cb *cb;
    void *arg;
} reload_ctx;

/* The new generation serves only once its policy_loaded entry is in the
 * log: every generation that ever decided anything is on record. */
static void reload_logged(lf_code code, const char *err, const lf_record *rec,
                          const lf_entry *en, void *arg) {
    reload_ctx *c = arg;
    lf_engine *e = c->eng;
    (void)rec;
    (void)en;
    if (code == LF_OK) {
        gen *old = e->gen;
        e->gen = c->next;
        gen_drop(old);
        e->stats.reloads_ok++;
        /* a budget or a retry state may have changed: the next tick
         * looks at every record of the retry states again */
        e->tick.since = e->tick.full_at = 0;
        appended(e, en);
        lf_evidence_announced(e->ev, lf_rules_generation(e->gen->rules));
        c->cb(LF_OK, NULL, c->old, lf_rules_generation(e->gen->rules), c->arg);
    } else {
        e->stats.reloads_failed++;
        gen_drop(c->next);
        c->cb(code, err, c->old, NULL, c->arg);
    }
    free(c);
}

void lf_engine_reload(lf_engine *e, const char *actor, lf_reload_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, lf_engine_generation(e), NULL, arg);
        return;
    }
    lf_buf problems = LF_BUF_INIT;
    lf_rules *rules = load_rules(e, &problems);
    if (!rules) {
        e->stats.reloads_failed++;
        cb(LF_INVALID_REQUEST, lf_buf_str(&problems), lf_rules_generation(e->gen->rules),
           NULL, arg);
        lf_buf_free(&problems);
        return;
    }
    reload_ctx *c = lf_xcalloc(1, sizeof *c);
    gen *next = lf_xcalloc(1, sizeof *next);
    lf_buf_free(&problems);
    next->rules = rules;
    next->refs = 1;
    *c = (reload_ctx){e, next, "", cb, arg};
    memcpy(c->old, lf_rules_generation(e->gen->rules), LF_HASH_LEN + 1);
    lf_buf meta = LF_BUF_INIT;
    lf_jw m = lf_jw_open(&meta, '{');
    lf_jw_str(&m, "old_generation", c->old);
    lf_jw_str(&m, "new_generation", lf_rules_generation(rules));
    lf_jw_int(&m, "files", lf_rules_nfiles(rules));
    lf_jw_close(&m, '}');
    lf_entry en = {0};
    en.kind = LF_ENTRY_POLICY_LOADED;
    en.trigger = "reload";
    en.actor = actor ? actor : "anonymous";
    en.metadata = meta.p;
    en.policy_set = lf_rules_generation(rules);
    stamp(en.timestamp, NULL);
    lf_store_commit(e->store, &en, reload_logged, c);
    lf_buf_free(&meta);
}

/* ---- reads -------------------------------------------------------------- */

typedef struct read_ctx {
    lf_result_cb *cb;
    void *arg;
} read_ctx;

static void read_done(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *e, void *arg) {
    read_ctx *c = arg;
    (void)e;
    reply(c->cb, c->arg,
          (lf_result){.code = code,
                      .error = err,
                      .previous_state = rec ? rec->state : NULL,
                      .record = rec});
    free(c);
}

static void read_one(lf_engine *e, const char *key, int by_ref, lf_result_cb *cb,
                     void *arg) {
    if (e->closing) {
        fail(cb, arg, LF_UNAVAILABLE, CLOSING_MSG);
        return;
    }
    if (!key || !*key) {
        fail(cb, arg, LF_INVALID_REQUEST,
             by_ref ? "ref is required" : "record id is required");
        return;
    }
    read_ctx *c = lf_xmalloc(sizeof *c);
    c->cb = cb;
    c->arg = arg;
    if (by_ref) lf_store_find_by_ref(e->store, key, read_done, c);
    else lf_store_get(e->store, key, read_done, c);
}

void lf_engine_get(lf_engine *e, const char *id, lf_result_cb *cb, void *arg) {
    read_one(e, id, 0, cb, arg);
}

void lf_engine_find_by_ref(lf_engine *e, const char *ref, lf_result_cb *cb, void *arg) {
    read_one(e, ref, 1, cb, arg);
}

void lf_engine_list(lf_engine *e, const lf_list_query *q, lf_list_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, 0, NULL, arg);
        return;
    }
    if ((q->parent || q->timed) && (q->state || q->repo || (q->parent && q->timed))) {
        cb(LF_INVALID_REQUEST,
           q->parent ? "a list of a record's children takes no state or repo"
                     : "a list of the records with timers takes no state or repo",
           NULL, 0, NULL, arg);
        return;
    }
    /* A state no loaded workflow has can match nothing: say so, with the
     * states there are, rather than answer an empty list. */
    const lf_rules *rules = e->gen->rules;
    bool known = !q->state || lf_rules_nworkflows(rules) == 0; /* a reader's none */
    for (int i = 0; !known && i < lf_rules_nworkflows(rules); i++)
        known = lf_workflow_state(lf_rules_workflow_at(rules, i), q->state) >= 0;
    if (!known) {
        lf_buf msg = LF_BUF_INIT;
        lf_buf_printf(&msg, "Unknown state '%s' (the workflows have:", q->state);
        for (int i = 0; i < lf_rules_nworkflows(rules); i++) {
            const lf_workflow *wf = lf_rules_workflow_at(rules, i);
            for (int s = 0; s < wf->nstates; s++)
                lf_buf_printf(&msg, " %s", wf->states[s]);
        }
        lf_buf_putc(&msg, ')');
        cb(LF_INVALID_REQUEST, msg.p, NULL, 0, NULL, arg);
        lf_buf_free(&msg);
        return;
    }
    lf_store_list(e->store, q, cb, arg);
}

void lf_engine_audit(lf_engine *e, const char *record_id, uint64_t after, size_t limit,
                     lf_audit_cb *cb, void *arg) {
    if (e->closing) {
        cb(LF_UNAVAILABLE, CLOSING_MSG, NULL, NULL, 0, after, arg);
        return;
    }
    lf_store_audit(e->store, record_id, after, limit, cb, arg);
}
