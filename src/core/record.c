/* record.c -- LoopForge's record: the fold of audit entries into a
 * record, and its JSON form (LoopForge's key order, then ours). */
#include "record.h"
#include "mem.h"
#include "json.h"
#include "text.h"
#include "../loopforge.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

static char *xstrdup(const char *s) { return s ? lf_xstrdup(s) : NULL; }

/* How many entries back a history string is looked for. */
#define HS_WINDOW 4

/* Whether the string at off of r's history strings is s, n bytes with
 * its NUL: n bytes from off inside them, or the string there is shorter
 * (its NUL comes first), and those bytes the same. */
static bool hs_equal(const lf_record *r, uint32_t off, const char *s, size_t n) {
    return (size_t)off + n <= r->hs_len && lf_same_bytes(r->hs + off, s, n);
}

/* The offset of s in r's history strings (NULL: LF_HS_NONE): `first`
 * when that string is equal, else the same field (`field`, an offsetof in
 * lf_hist) of one of the last HS_WINDOW entries when equal, else a copy
 * appended. A history is mostly a few states, triggers and actors over
 * and over: the entry before usually matches at the first compare. The
 * block grows by half: its slack is kept by every record in memory. */
static uint32_t hs_put(lf_record *r, const char *s, size_t field, uint32_t first) {
    if (!s) return LF_HS_NONE;
    size_t n = strlen(s) + 1, need = (size_t)r->hs_len + n;
    if (first != LF_HS_NONE && hs_equal(r, first, s, n)) return first;
    for (size_t k = 1; k <= HS_WINDOW && k <= r->nhist; k++) {
        uint32_t off;
        memcpy(&off, (const char *)&r->hist[r->nhist - k] + field, sizeof off);
        if (off != LF_HS_NONE && hs_equal(r, off, s, n)) return off;
    }
    if (need >= LF_HS_NONE) lf_oom(need);
    if (need > r->hs_cap) {
        size_t cap = r->hs_cap < 64 ? 64 : (size_t)r->hs_cap + r->hs_cap / 2;
        if (cap < need) cap = need;
        if (cap >= LF_HS_NONE) cap = need;
        r->hs = lf_xrealloc(r->hs, cap);
        r->hs_cap = (uint32_t)cap;
    }
    uint32_t off = r->hs_len;
    memcpy(r->hs + off, s, n);
    r->hs_len = (uint32_t)need;
    return off;
}

/* Something of a record's history strings, remembered by offset while one
 * pass over its entries lasts: they name the same few strings over and
 * over (hs_put), so each is looked at about once. */
#define MEMO 16
typedef struct hs_memo {
    uint32_t off[MEMO];
    size_t val[MEMO];
} hs_memo;

static void memo_init(hs_memo *m) {
    memset(m->off, 0xff, sizeof m->off);   /* LF_HS_NONE: nothing yet */
}

/* off's slot in m (off is never LF_HS_NONE): true when *val is off's
 * already, else the slot is off's now and *val is for the caller to set. */
static bool memo_slot(hs_memo *m, uint32_t off, size_t **val) {
    unsigned k = off % MEMO;
    *val = &m->val[k];
    if (m->off[k] == off) return true;
    m->off[k] = off;
    return false;
}

/* Appends a history entry (from NULL: the creation entry). A from_state
 * is first looked for as the last entry's to_state, a to_state as its
 * from_state (a cycle back). */
static void hist_add(lf_record *r, const char *from, const char *to, const char *trigger,
                     const char *actor, const char *metadata, const char *ts) {
    const lf_hist *p = r->nhist ? &r->hist[r->nhist - 1] : NULL;
    lf_hist h;
    h.from_state = hs_put(r, from, offsetof(lf_hist, from_state), p ? p->to_state : LF_HS_NONE);
    h.to_state = hs_put(r, to, offsetof(lf_hist, to_state), p ? p->from_state : LF_HS_NONE);
    h.trigger = hs_put(r, trigger ? trigger : "", offsetof(lf_hist, trigger), LF_HS_NONE);
    h.actor = hs_put(r, actor ? actor : "", offsetof(lf_hist, actor), LF_HS_NONE);
    h.metadata = hs_put(r, metadata ? metadata : "{}", offsetof(lf_hist, metadata), LF_HS_NONE);
    memcpy(h.timestamp, ts, LF_TS_LEN + 1);
    if (r->nhist == r->caphist) {
        r->caphist = r->caphist ? r->caphist * 2 : 8;
        r->hist = lf_xrealloc(r->hist, r->caphist * sizeof *r->hist);
    }
    r->hist[r->nhist++] = h;
}

/* "{}", what ci_status, labels and metadata hold on most records, is one
 * shared string: three allocations fewer a record (obj owns text and
 * returns it or the shared one; obj_free frees what obj returned). */
static char empty_obj[] = "{}";

static char *obj(char *text) {
    if (text == empty_obj || strcmp(text, "{}") != 0) return text;
    free(text);
    return empty_obj;
}

static void obj_free(char *text) {
    if (text != empty_obj) free(text);
}

static char *obj_dup(const char *text) {
    return text == empty_obj ? empty_obj : lf_xstrdup(text);
}

void lf_open_key(const char *workflow, char who, const char *name, char out[LF_COUNTER_KEY]) {
    snprintf(out, LF_COUNTER_KEY, "open:%zu:%s:%c:%s", strlen(workflow), workflow, who, name);
}

bool lf_record_entered(const lf_record *r, int64_t *us) {
    return !r->deleted && r->nhist && !lf_ts_parse(r->hist[r->nhist - 1].timestamp, us);
}

int lf_record_open_keys(const lf_record *r, char keys[2][LF_COUNTER_KEY]) {
    const char *v;
    size_t n;
    lf_buf a = LF_BUF_INIT, p = LF_BUF_INIT;
    int k = 0;
    if (r->owner && lf_json_get(r->owner, strlen(r->owner), "actor", &v, &n) &&
        lf_json_string(v, n, &a) && lf_json_get(r->owner, strlen(r->owner), "behind", &v, &n) &&
        lf_json_string(v, n, &p)) {
        lf_open_key(r->workflow, 'a', lf_buf_str(&a), keys[0]);
        lf_open_key(r->workflow, 'p', lf_buf_str(&p), keys[1]);
        k = 2;
    }
    lf_buf_free(&a);
    lf_buf_free(&p);
    return k;
}

/* Whether history string off is s (NULL: any), remembered in m. */
static bool hs_is(hs_memo *m, const lf_record *r, uint32_t off, const char *s) {
    size_t *v;
    if (!s) return true;
    if (off == LF_HS_NONE) return false;
    if (!memo_slot(m, off, &v)) *v = strcmp(r->hs + off, s) == 0;
    return *v;
}

/* A transition's guards and its commit each count a retry's attempts
 * over the whole history: by offset, a strcmp per string, not per entry
 * (2 % of serve's time on a history of 60). */
size_t lf_record_count(const lf_record *r, const char *from, const char *to) {
    hs_memo mf, mt;
    memo_init(&mf);
    memo_init(&mt);
    size_t n = 0;
    for (size_t i = 0; i < r->nhist; i++)
        n += hs_is(&mf, r, r->hist[i].from_state, from) &&
             hs_is(&mt, r, r->hist[i].to_state, to);
    return n;
}

/* r's state: in r->state_in when it fits, else on the heap. */
static void set_state(lf_record *r, const char *state) {
    size_t n = strlen(state) + 1;
    r->state = n <= sizeof r->state_in ? memcpy(r->state_in, state, n) : lf_xstrdup(state);
}

static void free_state(lf_record *r) {
    if (r->state != r->state_in) free(r->state);
}

void lf_record_free(lf_record *r) {
    if (!r) return;
    free(r->hist);
    free(r->hs);
    free(r->ref);
    free(r->repo);
    free(r->pr_url);
    free_state(r);
    obj_free(r->ci_status);
    obj_free(r->labels);
    free(r->workflow);
    obj_free(r->metadata);
    free(r->forge);
    free(r->parent);
    free(r->owner);
    free(r->timers);
    for (size_t i = 0; i < r->naliases; i++) free(r->aliases[i]);
    free(r->aliases);
    free(r);
}

/* Adds an alias unless the record has it already. */
static void alias_add(lf_record *r, const char *a) {
    for (size_t i = 0; i < r->naliases; i++)
        if (strcmp(r->aliases[i], a) == 0) return;
    r->aliases = lf_xrealloc(r->aliases, (r->naliases + 1) * sizeof *r->aliases);
    r->aliases[r->naliases++] = lf_xstrdup(a);
}

lf_record *lf_record_dup(const lf_record *s) {
    lf_record *r = lf_xmalloc(sizeof *r);
    *r = *s;
    r->ref = xstrdup(s->ref);
    r->repo = xstrdup(s->repo);
    r->pr_url = xstrdup(s->pr_url);
    set_state(r, s->state);
    r->ci_status = obj_dup(s->ci_status);
    r->labels = obj_dup(s->labels);
    r->workflow = xstrdup(s->workflow);
    r->metadata = obj_dup(s->metadata);
    r->forge = xstrdup(s->forge);
    r->parent = xstrdup(s->parent);
    r->owner = xstrdup(s->owner);
    r->timers = xstrdup(s->timers);
    r->aliases = NULL;
    r->naliases = 0;
    for (size_t i = 0; i < s->naliases; i++) alias_add(r, s->aliases[i]);
    r->hist = s->nhist ? lf_xmalloc(s->nhist * sizeof *r->hist) : NULL;
    r->nhist = r->caphist = s->nhist;
    if (s->nhist) memcpy(r->hist, s->hist, s->nhist * sizeof *r->hist);
    r->hs = s->hs_len ? lf_xmalloc(s->hs_len) : NULL;
    r->hs_len = r->hs_cap = s->hs_len;
    if (s->hs_len) memcpy(r->hs, s->hs, s->hs_len);
    return r;
}

/* ---- the fold ---------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *msg, const char *detail) {
    snprintf(err, errlen, "%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
    return -1;
}

/* A buffer's text in a block of its own size: a record keeps it for as
 * long as it is in memory, and a buffer's capacity is a growth step. */
static char *exact(lf_buf *b) {
    size_t n = b->len;
    return lf_xrealloc(lf_buf_steal(b), n + 1);
}

/* Member `key` of the JSON object text json, in canonical form (json.h:
 * integers exact, where a cJSON print would round them); dflt if absent
 * or null. The caller has checked the text with cJSON already. */
static char *member_text(const char *json, const char *key, const char *dflt) {
    const char *v;
    size_t n;
    lf_buf b = LF_BUF_INIT;
    if (!json || !lf_json_get(json, strlen(json), key, &v, &n) ||
        (n == 4 && !memcmp(v, "null", 4)) || !lf_json_canon(v, n, &b)) {
        lf_buf_free(&b);
        return lf_xstrdup(dflt);
    }
    return exact(&b);
}

/* Member `key` of the JSON object text json as an exact integer. */
static int member_int(const char *json, const char *key, int64_t *out) {
    const char *v;
    size_t n;
    return json && lf_json_get(json, strlen(json), key, &v, &n) ? lf_json_int(v, n, out)
                                                                : -1;
}

/* A count a record's JSON carries (violations, overrides): 0 unless a
 * positive integer; at most UINT32_MAX. */
static uint32_t count_of(const cJSON *v) {
    int64_t n;
    if (lf_json_number_int(v, &n) || n <= 0) return 0;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* The members of a created entry's `record` the fold reads, found in one
 * pass over its text: a cJSON tree per create had been a tenth of the
 * memory store's time. The first of a repeated key counts, as in cJSON. */
enum { C_REF, C_NUM, C_REPO, C_AM, C_LABELS, C_META, C_WF, C_PARENT, C_OWNER, C_N };
typedef struct created_fields {
    const char *v[C_N];
    size_t n[C_N];
} created_fields;

static bool created_member(const char *key, const char *val, size_t vlen, void *arg) {
    static const char *const keys[C_N] = {"ref",      "ref_number", "repo",
                                          "auto_merge", "labels",   "metadata",
                                          "workflow", "parent",     "owner"};
    created_fields *f = arg;
    for (int i = 0; i < C_N; i++) {
        if (f->v[i] || strcmp(key, keys[i]) != 0) continue;
        f->v[i] = val;
        f->n[i] = vlen;
        break;
    }
    return true;
}

/* A member's kind by its text (NULL: missing). */
static bool is_null(const char *v, size_t n) { return v && n == 4 && !memcmp(v, "null", 4); }
static bool is_kind(const char *v, char first) { return v && *v == first; }
static bool is_bool(const char *v, size_t n) {
    return v && ((n == 4 && !memcmp(v, "true", 4)) || (n == 5 && !memcmp(v, "false", 5)));
}

/* The decoded string at v (a JSON string's text), or NULL. */
static char *text_of(const char *v, size_t n) {
    /* Without an escape it is the text between the quotes. */
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"' && !memchr(v + 1, '\\', n - 2) &&
        !memchr(v + 1, '"', n - 2))
        return lf_xstrndup(v + 1, n - 2);
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_string(v, n, &b)) {
        lf_buf_free(&b);
        return NULL;
    }
    return exact(&b);
}

/* The canonical text of the object at v ("{}" the shared one). */
static char *object_of(const char *v, size_t n) {
    if (n == 2 && v[0] == '{' && v[1] == '}') return empty_obj;
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_canon(v, n, &b)) lf_buf_puts(&b, "{}");
    return exact(&b);
}

static int apply_created(lf_record **rp, const lf_entry *e, char *err, size_t errlen) {
    if (*rp) return bad(err, errlen, "record already exists", e->record_id);
    if (e->version != 1 || !e->to_state || !e->record)
        return bad(err, errlen, "malformed created entry", e->record_id);
    if (strlen(e->record_id) > LF_ID_LEN)
        return bad(err, errlen, "record id too long", e->record_id);
    created_fields f = {{NULL}, {0}};
    int64_t n = 0;
    const char *const *v = f.v;
    const size_t *l = f.n;
    if (!lf_json_members(e->record, strlen(e->record), created_member, &f) ||
        !is_kind(v[C_REF], '"') || !is_kind(v[C_WF], '"') ||
        (v[C_PARENT] && !is_kind(v[C_PARENT], '"')) ||
        (v[C_OWNER] && !is_kind(v[C_OWNER], '{')) ||
        (v[C_NUM] && !is_null(v[C_NUM], l[C_NUM]) && lf_json_int(v[C_NUM], l[C_NUM], &n)) ||
        (v[C_REPO] && !is_null(v[C_REPO], l[C_REPO]) && !is_kind(v[C_REPO], '"')) ||
        (v[C_AM] && !is_bool(v[C_AM], l[C_AM])) ||
        (v[C_LABELS] && !is_kind(v[C_LABELS], '{')) || (v[C_META] && !is_kind(v[C_META], '{')))
        return bad(err, errlen, "malformed record in created entry", e->record_id);
    char *ref = text_of(v[C_REF], l[C_REF]), *wf = text_of(v[C_WF], l[C_WF]);
    char *repo = is_kind(v[C_REPO], '"') ? text_of(v[C_REPO], l[C_REPO]) : NULL;
    char *parent = v[C_PARENT] ? text_of(v[C_PARENT], l[C_PARENT]) : NULL;
    if (!ref || !wf || (is_kind(v[C_REPO], '"') && !repo) || (v[C_PARENT] && !parent)) {
        free(ref);
        free(wf);
        free(repo);
        free(parent);
        return bad(err, errlen, "malformed record in created entry", e->record_id);
    }
    lf_record *r = lf_xcalloc(1, sizeof *r);
    memcpy(r->id, e->record_id, strlen(e->record_id) + 1);
    r->ref = ref;
    r->has_ref_number = v[C_NUM] && !is_null(v[C_NUM], l[C_NUM]);
    r->ref_number = n;
    r->repo = repo;
    set_state(r, e->to_state);
    r->auto_merge = v[C_AM] && l[C_AM] == 4;
    r->ci_status = empty_obj;
    r->labels = v[C_LABELS] ? obj(object_of(v[C_LABELS], l[C_LABELS])) : empty_obj;
    r->metadata = v[C_META] ? obj(object_of(v[C_META], l[C_META])) : empty_obj;
    r->workflow = wf;
    r->parent = parent;
    /* owner is freed as it is: never the shared "{}". */
    r->owner = v[C_OWNER] ? object_of(v[C_OWNER], l[C_OWNER]) : NULL;
    if (r->owner == empty_obj) r->owner = lf_xstrdup("{}");
    memcpy(r->created_at, e->timestamp, LF_TS_LEN + 1);
    memcpy(r->updated_at, e->timestamp, LF_TS_LEN + 1);
    r->version = 1;
    hist_add(r, NULL, e->to_state, e->trigger, e->actor, e->metadata, e->timestamp);
    *rp = r;
    return 0;
}

/* The record fields an entry may set, validated before anything moves so
 * that a bad entry leaves the record untouched. */
typedef struct changes {
    const char *text;
    cJSON *json;                /* NULL for none, or for a close read as it is */
    const char *closed_at;      /* a valid timestamp, or NULL */
    const cJSON *pr_url, *pr_number, *ci_status, *labels, *aliases, *forge;
    const cJSON *timers;
    char close_ts[LF_TS_LEN + 1];
} changes;

static int string_array(const cJSON *a) {
    const cJSON *it;
    if (!cJSON_IsArray(a)) return 0;
    cJSON_ArrayForEach(it, a) if (!cJSON_IsString(it) || !it->valuestring[0]) return 0;
    return 1;
}

/* A close's changes as the engine writes them, {"closed_at":"<timestamp>"},
 * read as they are: a close is one entry in seven of the lifecycle, and
 * cJSON's parse and tree were ~2.5 % of the time a transition takes in
 * process. Anything else (other spacing too) is for cJSON. */
static bool close_only(const char *text, changes *c) {
    static const char pre[] = "{\"closed_at\":\"";
    const size_t n = sizeof pre - 1;
    int64_t us;
    if (strncmp(text, pre, n) != 0 || strlen(text) != n + LF_TS_LEN + 2 ||
        strcmp(text + n + LF_TS_LEN, "\"}") != 0)
        return false;
    memcpy(c->close_ts, text + n, LF_TS_LEN);
    c->close_ts[LF_TS_LEN] = '\0';
    if (lf_ts_parse(c->close_ts, &us)) return false;
    c->closed_at = c->close_ts;
    return true;
}

static int changes_parse(const char *text, changes *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!text) return 0;
    c->text = text;
    if (close_only(text, c)) return 0;
    c->json = cJSON_Parse(text);
    if (!cJSON_IsObject(c->json)) goto bad;
    const cJSON *closed = cJSON_GetObjectItemCaseSensitive(c->json, "closed_at");
    c->pr_url = cJSON_GetObjectItemCaseSensitive(c->json, "pr_url");
    c->pr_number = cJSON_GetObjectItemCaseSensitive(c->json, "pr_number");
    c->ci_status = cJSON_GetObjectItemCaseSensitive(c->json, "ci_status");
    c->labels = cJSON_GetObjectItemCaseSensitive(c->json, "labels");
    c->aliases = cJSON_GetObjectItemCaseSensitive(c->json, "aliases");
    c->forge = cJSON_GetObjectItemCaseSensitive(c->json, "forge");
    c->timers = cJSON_GetObjectItemCaseSensitive(c->json, "timers");
    int64_t n, us;
    if ((closed && (!cJSON_IsString(closed) || lf_ts_parse(closed->valuestring, &us))) ||
        (c->pr_url && !cJSON_IsString(c->pr_url) && !cJSON_IsNull(c->pr_url)) ||
        (c->pr_number && !cJSON_IsNull(c->pr_number) && lf_json_number_int(c->pr_number, &n)) ||
        (c->ci_status && !cJSON_IsObject(c->ci_status)) ||
        (c->labels && !cJSON_IsObject(c->labels)) ||
        (c->forge && !cJSON_IsObject(c->forge)) ||
        (c->timers && !cJSON_IsArray(c->timers) && !cJSON_IsNull(c->timers)) ||
        (c->aliases && !string_array(c->aliases)))
        goto bad;
    c->closed_at = closed ? closed->valuestring : NULL;
    return 0;
bad:
    cJSON_Delete(c->json);
    return bad(err, errlen, "malformed changes", text);
}

/* The earliest due of timers (a JSON array), 0 for none. */
static int64_t earliest_due(const cJSON *timers) {
    const cJSON *t;
    int64_t due = 0, at;
    cJSON_ArrayForEach(t, timers) {
        const char *ds = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "due"));
        if (ds && !lf_ts_parse(ds, &at) && (!due || at < due)) due = at;
    }
    return due;
}

static void changes_apply(lf_record *r, const changes *c) {
    const cJSON *a;
    cJSON_ArrayForEach(a, c->aliases) alias_add(r, a->valuestring);
    if (c->closed_at) memcpy(r->closed_at, c->closed_at, LF_TS_LEN + 1);
    if (c->pr_url) {
        free(r->pr_url);
        r->pr_url = cJSON_IsString(c->pr_url) ? lf_xstrdup(c->pr_url->valuestring) : NULL;
    }
    if (c->pr_number) {
        r->has_pr_number = !cJSON_IsNull(c->pr_number);
        if (r->has_pr_number) member_int(c->text, "pr_number", &r->pr_number);
    }
    if (c->ci_status) {
        obj_free(r->ci_status);
        r->ci_status = obj(member_text(c->text, "ci_status", "{}"));
    }
    if (c->labels) {
        obj_free(r->labels);
        r->labels = obj(member_text(c->text, "labels", "{}"));
    }
    if (c->timers) {
        free(r->timers);
        r->timers =
            cJSON_GetArraySize(c->timers) ? member_text(c->text, "timers", "[]") : NULL;
        r->timers_due = earliest_due(c->timers);
    }
    if (c->forge) {
        free(r->forge);
        r->forge = member_text(c->text, "forge", "{}");
    }
}

/* A move spends the record's timers that asked for it (their target is
 * the new state) and cancels those of the state it left; one bound to
 * no state (an override's review) outlives moves until it fires or is
 * acknowledged. Part of the fold, so every store agrees. */
static void timers_after_move(lf_record *r) {
    cJSON *a = cJSON_Parse(r->timers), *t = a ? a->child : NULL;
    while (t) {
        cJSON *next = t->next;
        const char *st =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "state"));
        const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "to"));
        if ((to && strcmp(to, r->state) == 0) || (st && strcmp(st, r->state) != 0))
            cJSON_DetachItemViaPointer(a, t), cJSON_Delete(t);
        t = next;
    }
    free(r->timers);
    r->timers = cJSON_GetArraySize(a) ? lf_xptr(cJSON_PrintUnformatted(a)) : NULL;
    r->timers_due = earliest_due(a);
    cJSON_Delete(a);
}

int lf_record_apply(lf_record **rp, const lf_entry *e, char *err, size_t errlen) {
    if (e->kind == LF_ENTRY_CREATED) return apply_created(rp, e, err, errlen);
    lf_record *r = *rp;
    if (lf_entry_global(e->kind)) return 0;
    if (!r) return bad(err, errlen, "no such record", e->record_id);
    if (e->kind == LF_ENTRY_DENIED || e->kind == LF_ENTRY_REJECTED) return 0;
    if (e->version != r->version + 1)
        return bad(err, errlen, "version out of sequence", r->id);
    if (e->kind == LF_ENTRY_DELETED) {
        r->deleted = true;
        r->version = e->version;
        memcpy(r->updated_at, e->timestamp, LF_TS_LEN + 1);
        return 0;
    }
    bool moves = e->kind == LF_ENTRY_TRANSITION;
    if ((!moves && e->kind != LF_ENTRY_OBSERVED && e->kind != LF_ENTRY_NOTED) ||
        !e->to_state || !e->from_state || strcmp(e->from_state, r->state) != 0 ||
        (!moves && strcmp(e->to_state, r->state) != 0))
        return bad(err, errlen, "entry does not follow the record's state", r->id);
    changes c;
    if (changes_parse(e->changes, &c, err, errlen)) return -1;
    /* An observation that moved nothing is in the log, not the history. */
    if (moves) {
        hist_add(r, e->from_state, e->to_state, e->trigger, e->actor, e->metadata,
                 e->timestamp);
        free_state(r);
        set_state(r, e->to_state);
    }
    r->version = e->version;
    memcpy(r->updated_at, e->timestamp, LF_TS_LEN + 1);
    /* What a board shows on a card without reading the record's log. */
    if (e->violation) r->violations++;
    if (e->authority && strstr(e->authority, "\"override\":")) r->overrides++;
    changes_apply(r, &c);
    cJSON_Delete(c.json);
    if (moves && r->timers) timers_after_move(r);
    return 0;
}

/* ---- JSON -------------------------------------------------------------- */

/* "key":"<timestamp>", or null for an empty one. */
static void jw_ts(lf_jw *w, const char *key, const char *ts) {
    lf_jw_key(w, key);
    if (!ts[0]) {
        lf_buf_puts(w->b, "null");
        return;
    }
    lf_buf_putc(w->b, '"');
    lf_buf_add(w->b, ts, LF_TS_LEN);
    lf_buf_putc(w->b, '"');
}

/* "key":N, or null when the record has none. */
static void jw_opt_int(lf_jw *w, const char *key, bool has, int64_t v) {
    if (has) lf_jw_int(w, key, v);
    else lf_jw_raw(w, key, NULL, "null");
}

/* One history entry through the JSON writer: any string, escaped. */
static void hist_json_any(const lf_record *r, const lf_hist *h, lf_buf *b) {
    lf_jw t = lf_jw_open(b, '{');
    lf_jw_str(&t, "from_state", lf_hs(r, h->from_state));
    lf_jw_str(&t, "to_state", lf_hs(r, h->to_state));
    lf_jw_str(&t, "trigger", lf_hs(r, h->trigger));
    jw_ts(&t, "timestamp", h->timestamp);
    lf_jw_raw(&t, "metadata", lf_hs(r, h->metadata), "{}");
    lf_jw_str(&t, "actor", lf_hs(r, h->actor));
    lf_jw_close(&t, '}');
}

/* One history entry, the same bytes as hist_json_any: a reply carries up
 * to max_history of them, and nearly every one is names with nothing to
 * escape, so those are measured once and copied whole into room reserved
 * once (hist_json_any, pushing every piece through the writer, was a
 * fifth of serve's own work on a long history). */
#define PUT(w, s, n) (memcpy((w), (s), (n)), (w) += (n))
#define PUT_LIT(w, lit) PUT(w, lit, sizeof lit - 1)

/* What lf_json_clean_len says of a record's history strings, remembered
 * by offset for one reply (hs_memo): measuring each again was 4 % of
 * serve's time. (Stored with each string instead, the byte cost a journal
 * of 100,000 records 112 bytes a record: the blocks' growth steps.) */
static size_t memo_len(hs_memo *m, const lf_record *r, uint32_t off) {
    size_t *v;
    if (!memo_slot(m, off, &v)) *v = lf_json_clean_len(r->hs + off);
    return *v;
}

/* An entry as rendered but for its timestamp, by its strings' offsets: a
 * history repeats a few moves (a cycle, two) that differ in their times
 * alone, and one copied whole in three pieces is a third of the work of
 * the dozen it is written in (~340 instructions an entry). */
#define FRAGS 8
typedef struct hist_frag {
    uint32_t key[5];            /* from, to, trigger, metadata, actor */
    uint16_t head, tail;        /* the bytes before the timestamp, after it */
    char text[232];
} hist_frag;

typedef struct hist_memo {
    hs_memo len;
    hist_frag frag[FRAGS];
} hist_memo;

static void hist_memo_init(hist_memo *m) {
    memo_init(&m->len);
    /* empty: from LF_HS_NONE, which no entry kept here has (a creation
     * entry's is hist_json_any's) */
    for (int k = 0; k < FRAGS; k++) memset(m->frag[k].key, 0xff, sizeof m->frag[k].key);
}

static void hist_json(const lf_record *r, const lf_hist *h, hist_memo *m, lf_buf *b) {
    const uint32_t key[5] = {h->from_state, h->to_state, h->trigger, h->metadata, h->actor};
    hist_frag *f = &m->frag[(key[0] + 3 * key[1] + 5 * key[2] + 7 * key[3] + key[4]) % FRAGS];
    if (key[0] != LF_HS_NONE && h->timestamp[0] && memcmp(f->key, key, sizeof key) == 0) {
        lf_buf_reserve(b, (size_t)f->head + LF_TS_LEN + f->tail);
        char *w = b->p + b->len;
        PUT(w, f->text, f->head);
        PUT(w, h->timestamp, LF_TS_LEN);
        PUT(w, f->text + f->head, f->tail);
        *w = '\0';
        b->len = (size_t)(w - b->p);
        return;
    }
    const char *from = lf_hs(r, h->from_state), *to = lf_hs(r, h->to_state),
               *trig = lf_hs(r, h->trigger), *meta = lf_hs(r, h->metadata),
               *actor = lf_hs(r, h->actor);
    size_t nf, nt, ng, nm, na;
    if (!from || !to || !trig || !meta || !actor || !h->timestamp[0] ||
        (nf = memo_len(&m->len, r, h->from_state)) == SIZE_MAX ||
        (nt = memo_len(&m->len, r, h->to_state)) == SIZE_MAX ||
        (ng = memo_len(&m->len, r, h->trigger)) == SIZE_MAX ||
        (na = memo_len(&m->len, r, h->actor)) == SIZE_MAX) {
        hist_json_any(r, h, b);         /* a null, or something to escape */
        return;
    }
    nm = memo_len(&m->len, r, h->metadata);   /* "{}", mostly; else its length */
    if (nm == SIZE_MAX) nm = strlen(meta);
    lf_buf_reserve(b, 96 + nf + nt + ng + LF_TS_LEN + nm + na);
    char *start = b->p + b->len, *w = start;
    PUT_LIT(w, "{\"from_state\":\"");
    PUT(w, from, nf);
    PUT_LIT(w, "\",\"to_state\":\"");
    PUT(w, to, nt);
    PUT_LIT(w, "\",\"trigger\":\"");
    PUT(w, trig, ng);
    PUT_LIT(w, "\",\"timestamp\":\"");
    char *ts = w;
    PUT(w, h->timestamp, LF_TS_LEN);
    PUT_LIT(w, "\",\"metadata\":");
    PUT(w, meta, nm);
    PUT_LIT(w, ",\"actor\":\"");
    PUT(w, actor, na);
    PUT_LIT(w, "\"}");
    *w = '\0';
    b->len = (size_t)(w - b->p);
    size_t head = (size_t)(ts - start), tail = (size_t)(w - ts) - LF_TS_LEN;
    if (head + tail <= sizeof f->text) {
        memcpy(f->key, key, sizeof key);
        f->head = (uint16_t)head;
        f->tail = (uint16_t)tail;
        memcpy(f->text, start, head);
        memcpy(f->text + head, ts + LF_TS_LEN, tail);
    }
}
#undef PUT_LIT
#undef PUT

void lf_record_to_json(const lf_record *r, lf_buf *b) { lf_record_to_json_tail(r, 0, b); }

void lf_record_to_json_tail(const lf_record *r, size_t max_hist, lf_buf *b) {
    size_t first = max_hist && r->nhist > max_hist ? r->nhist - max_hist : 0;
    /* Room for a typical history at once (~200 bytes an entry), rather
     * than a dozen doublings, each a copy, on a long one. */
    lf_buf_reserve(b, 1024 + (r->nhist - first) * 256);
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "record_id", r->id);
    lf_jw_str(&o, "ref", r->ref);
    jw_opt_int(&o, "ref_number", r->has_ref_number, r->ref_number);
    lf_jw_str(&o, "repo", r->repo);
    lf_jw_str(&o, "pr_url", r->pr_url);
    jw_opt_int(&o, "pr_number", r->has_pr_number, r->pr_number);
    lf_jw_str(&o, "state", r->state);
    lf_jw_bool(&o, "auto_merge", r->auto_merge);
    lf_jw_raw(&o, "ci_status", r->ci_status, "{}");
    lf_jw_key(&o, "transitions");
    lf_jw list = lf_jw_open(b, '[');
    hist_memo memo;
    hist_memo_init(&memo);
    for (size_t i = first; i < r->nhist; i++) {
        lf_jw_next(&list);
        hist_json(r, &r->hist[i], &memo, b);
    }
    lf_jw_close(&list, ']');
    lf_jw_raw(&o, "labels", r->labels, "{}");
    jw_ts(&o, "created_at", r->created_at);
    jw_ts(&o, "updated_at", r->updated_at);
    jw_ts(&o, "closed_at", r->closed_at);
    lf_jw_str(&o, "workflow", r->workflow);
    lf_jw_int(&o, "version", (int64_t)r->version);
    lf_jw_raw(&o, "metadata", r->metadata, "{}");
    lf_jw_key(&o, "aliases");
    lf_jw al = lf_jw_open(b, '[');
    for (size_t i = 0; i < r->naliases; i++) {
        lf_jw_next(&al);
        lf_buf_json_str(b, r->aliases[i]);
    }
    lf_jw_close(&al, ']');
    if (r->forge) lf_jw_raw(&o, "forge", r->forge, "{}");
    if (r->parent) lf_jw_str(&o, "parent", r->parent);
    if (r->owner) lf_jw_raw(&o, "owner", r->owner, "{}");
    if (r->timers) lf_jw_raw(&o, "timers", r->timers, "[]");
    if (r->violations) lf_jw_int(&o, "violations", r->violations);
    if (r->overrides) lf_jw_int(&o, "overrides", r->overrides);
    if (first) lf_jw_int(&o, "transitions_total", (int64_t)r->nhist);
    lf_jw_close(&o, '}');
}

static int json_ts(const cJSON *o, const char *key, int nullable,
                   char out[LF_TS_LEN + 1]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    int64_t us;
    out[0] = '\0';
    if (nullable && cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || lf_ts_parse(v->valuestring, &us)) return -1;
    memcpy(out, v->valuestring, LF_TS_LEN + 1);
    return 0;
}

static int json_str(const cJSON *o, const char *key, int nullable, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (nullable && cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return -1;
    *out = lf_xstrdup(v->valuestring);
    return 0;
}

static int json_num(const cJSON *o, const char *key, bool *has, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *has = false;
    if (cJSON_IsNull(v)) return 0;
    if (lf_json_number_int(v, out)) return -1;
    *has = true;
    return 0;
}

/* 0 if member key is an object (its text is read by member_text). */
static int json_obj(const cJSON *o, const char *key) {
    return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, key)) ? 0 : -1;
}

/* The history; each transition's metadata from the text (canonical,
 * integers exact), the other fields through cJSON. */
static int json_hist(lf_record *r, const cJSON *arr, const char *text, size_t len) {
    const cJSON *t;
    const char *span, *el;
    size_t slen, elen;
    lf_json_iter it;
    if (!cJSON_IsArray(arr) || !lf_json_get(text, len, "transitions", &span, &slen) ||
        !lf_json_array(&it, span, slen))
        return -1;
    cJSON_ArrayForEach(t, arr) {
        char *from = NULL, *to = NULL, *trig = NULL, *actor = NULL, *meta = NULL;
        char ts[LF_TS_LEN + 1];
        int rc = -1;
        if (!lf_json_next(&it, &el, &elen)) return -1;
        if (!json_str(t, "from_state", 1, &from) && !json_str(t, "to_state", 0, &to) &&
            !json_str(t, "trigger", 0, &trig) && !json_str(t, "actor", 0, &actor) &&
            cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(t, "metadata")) &&
            !json_ts(t, "timestamp", 0, ts)) {
            char *one = lf_xstrndup(el, elen);
            meta = member_text(one, "metadata", "{}");
            free(one);
            hist_add(r, from, to, trig, actor, meta, ts);
            rc = 0;
        }
        free(from);
        free(to);
        free(trig);
        free(actor);
        free(meta);
        if (rc) return -1;
    }
    return 0;
}

lf_record *lf_record_from_json(const char *json, size_t len, char *err, size_t errlen) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    lf_record *r = lf_xcalloc(1, sizeof *r);
    char *id = NULL;
    int64_t version = 0;
    const cJSON *am = cJSON_GetObjectItemCaseSensitive(o, "auto_merge");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "version");
    if (!cJSON_IsObject(o) || json_str(o, "record_id", 0, &id) ||
        strlen(id) > LF_ID_LEN || json_str(o, "ref", 0, &r->ref) ||
        json_num(o, "ref_number", &r->has_ref_number, &r->ref_number) ||
        json_str(o, "repo", 1, &r->repo) || json_str(o, "pr_url", 1, &r->pr_url) ||
        json_num(o, "pr_number", &r->has_pr_number, &r->pr_number) ||
        json_str(o, "state", 0, &r->state) || !cJSON_IsBool(am) ||
        json_obj(o, "ci_status") ||
        json_hist(r, cJSON_GetObjectItemCaseSensitive(o, "transitions"), json, len) ||
        json_obj(o, "labels") || json_ts(o, "created_at", 0, r->created_at) ||
        json_ts(o, "updated_at", 0, r->updated_at) ||
        json_ts(o, "closed_at", 1, r->closed_at) ||
        json_str(o, "workflow", 0, &r->workflow) ||
        (cJSON_GetObjectItemCaseSensitive(o, "parent") &&
         json_str(o, "parent", 0, &r->parent)) ||
        lf_json_number_int(ver, &version) || version < 1 || json_obj(o, "metadata")) {
        free(id);
        cJSON_Delete(o);
        lf_record_free(r);
        bad(err, errlen, "not a loopforge record", NULL);
        return NULL;
    }
    char *st = r->state;            /* read onto the heap: in state_in if it fits */
    set_state(r, st);
    free(st);
    memcpy(r->id, id, strlen(id) + 1);
    r->auto_merge = cJSON_IsTrue(am);
    r->version = (uint64_t)version;
    /* What a double would round, from the text. */
    char *t = lf_xstrndup(json, len);
    if (r->has_ref_number) member_int(t, "ref_number", &r->ref_number);
    if (r->has_pr_number) member_int(t, "pr_number", &r->pr_number);
    r->ci_status = obj(member_text(t, "ci_status", "{}"));
    r->labels = obj(member_text(t, "labels", "{}"));
    r->metadata = obj(member_text(t, "metadata", "{}"));
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "forge")))
        r->forge = member_text(t, "forge", "{}");
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "owner")))
        r->owner = member_text(t, "owner", "{}");
    if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "timers")) > 0) {
        r->timers = member_text(t, "timers", "[]");
        r->timers_due = earliest_due(cJSON_GetObjectItemCaseSensitive(o, "timers"));
    }
    r->violations = count_of(cJSON_GetObjectItemCaseSensitive(o, "violations"));
    r->overrides = count_of(cJSON_GetObjectItemCaseSensitive(o, "overrides"));
    free(t);
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "aliases"), *a;
    if (al && !string_array(al)) {
        free(id);
        cJSON_Delete(o);
        lf_record_free(r);
        bad(err, errlen, "not a loopforge record", "aliases");
        return NULL;
    }
    cJSON_ArrayForEach(a, al) alias_add(r, a->valuestring);
    free(id);
    cJSON_Delete(o);
    return r;
}

/* ---- public accessors (loopforge.h) ------------------------------------ */

const char *lf_record_id(const lf_record *r) { return r->id; }
const char *lf_record_state(const lf_record *r) { return r->state; }
uint64_t lf_record_version(const lf_record *r) { return r->version; }
const char *lf_record_ref(const lf_record *r) { return r->ref; }
const char *lf_record_updated_at(const lf_record *r) { return r->updated_at; }
const char *lf_record_parent(const lf_record *r) { return r->parent; }

char *lf_record_json(const lf_record *r) { return lf_record_json_tail(r, 0); }

char *lf_record_json_tail(const lf_record *r, size_t max_transitions) {
    lf_buf b = LF_BUF_INIT;
    lf_record_to_json_tail(r, max_transitions, &b);
    return lf_buf_steal(&b);
}
