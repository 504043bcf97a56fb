/* entry.c -- audit entries: canonical serialization, sealing (seq, prev,
 * sha256), parsing, and chain verification over stored bytes. */
#include "entry.h"
#include "hash.h"
#include "mem.h"
#include "json.h"

#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>

static const char *kind_names[LF_ENTRY__COUNT] = {
    "created",  "transition", "denied",     "deleted", "policy_loaded",
    "rejected", "observed",   "checkpoint", "noted",
};

const char *lf_entry_kind_name(lf_entry_kind k) {
    return (unsigned)k < LF_ENTRY__COUNT ? kind_names[k] : "unknown";
}

int lf_entry_kind_parse(const char *s) {
    for (int i = 0; i < LF_ENTRY__COUNT; i++)
        if (strcmp(s, kind_names[i]) == 0) return i;
    return -1;
}

char *lf_entry_own(lf_entry *e) {
    const char **f[] = {&e->record_id, &e->from_state, &e->to_state,  &e->trigger,
                        &e->actor,     &e->metadata,   &e->decisions, &e->policy_set,
                        &e->record,    &e->changes,    &e->violation, &e->idempotency_key,
                        &e->request,   &e->authority};
    size_t n = 1;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (*f[i]) n += strlen(*f[i]) + 1;
    char *block = lf_xmalloc(n), *p = block;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (!*f[i]) continue;
        size_t len = strlen(*f[i]) + 1;
        *f[i] = memcpy(p, *f[i], len);
        p += len;
    }
    return block;
}

void lf_entry_write_canonical(const lf_entry *e, lf_buf *b) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_int(&o, "seq", (int64_t)e->seq);
    lf_jw_str(&o, "record_id", e->record_id);
    lf_jw_str(&o, "kind", lf_entry_kind_name(e->kind));
    lf_jw_int(&o, "version", (int64_t)e->version);
    lf_jw_str(&o, "from_state", e->from_state);
    lf_jw_str(&o, "to_state", e->to_state);
    lf_jw_str(&o, "trigger", e->trigger);
    lf_jw_str(&o, "actor", e->actor);
    lf_jw_key(&o, "timestamp");
    lf_buf_putc(b, '"');
    lf_buf_add(b, e->timestamp, LF_TS_LEN);
    lf_buf_putc(b, '"');
    lf_jw_raw(&o, "metadata", e->metadata, "{}");
    lf_jw_raw(&o, "decisions", e->decisions, "[]");
    lf_jw_str(&o, "policy_set", e->policy_set);
    if (e->record) lf_jw_raw(&o, "record", e->record, NULL);
    if (e->changes) lf_jw_raw(&o, "changes", e->changes, NULL);
    if (e->violation) lf_jw_raw(&o, "violation", e->violation, NULL);
    if (e->authority) lf_jw_raw(&o, "authority", e->authority, NULL);
    if (e->idempotency_key) lf_jw_str(&o, "idempotency_key", e->idempotency_key);
    if (e->request) lf_jw_str(&o, "request", e->request);
    lf_jw_key(&o, "prev");
    lf_buf_putc(b, '"');
    lf_buf_add(b, e->prev, LF_HASH_LEN);
    lf_buf_putc(b, '"');
    lf_jw_close(&o, '}');
}

void lf_entry_seal(lf_entry *e, uint64_t seq, const char *prev, lf_buf *line) {
    e->seq = seq;
    memcpy(e->prev, prev, LF_HASH_LEN);
    e->prev[LF_HASH_LEN] = '\0';
    lf_buf_reset(line);
    lf_buf_reserve(line, 1024);     /* a sealed line is ~500-800 bytes: one
                                       allocation, where growing was four */
    lf_entry_write_canonical(e, line);
    lf_entry_close_hash(line, 0, e->hash);
}

void lf_entry_close_hash(lf_buf *line, size_t from, char hash[LF_HASH_LEN + 1]) {
    lf_sha256_hex(line->p + from, line->len - from, hash);
    /* Replace the closing brace by the hash key: the hashed bytes are the
     * line minus `,"hash":"…"`. */
    line->len--;
    lf_buf_puts(line, ",\"hash\":\"");
    lf_buf_add(line, hash, LF_HASH_LEN);
    lf_buf_puts(line, "\"}");
}

/* ---- parsing ----------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *msg, const char *key) {
    if (key) snprintf(err, errlen, "%s '%s'", msg, key);
    else snprintf(err, errlen, "%s", msg);
    return -1;
}

/* 64 lowercase hex digits, then the end. Branch-free per character:
 * replaying a journal checks two of these on every line. */
static int is_hex64(const char *s) {
    if (!s || strnlen(s, LF_HASH_LEN + 1) != LF_HASH_LEN) return 0;
    unsigned ok = 1;
    for (int i = 0; i < LF_HASH_LEN; i++) ok &= lf_hex_lower[(unsigned char)s[i]];
    return (int)ok;
}

/* Every key a line may hold, a bit each. Both readers refuse a line that
 * repeats one (cJSON would read the first, a walk over the members the
 * last: the replay and the verifier would each see another entry) or
 * lacks one of those every line has; other keys are ignored by both. */
enum {
    K_SEQ = 1 << 0, K_RECORD_ID = 1 << 1, K_KIND = 1 << 2, K_VERSION = 1 << 3,
    K_FROM = 1 << 4, K_TO = 1 << 5, K_TRIGGER = 1 << 6, K_ACTOR = 1 << 7,
    K_TS = 1 << 8, K_POLICY_SET = 1 << 9, K_PREV = 1 << 10, K_HASH = 1 << 11,
    K_METADATA = 1 << 12, K_DECISIONS = 1 << 13,        /* every line has these */
    K_RECORD = 1 << 14, K_CHANGES = 1 << 15, K_VIOLATION = 1 << 16,
    K_AUTHORITY = 1 << 17, K_IDEMPOTENCY_KEY = 1 << 18, K_REQUEST = 1 << 19,
};
#define K_EVERY_LINE (2 * K_DECISIONS - 1)
#define NEVER_NULL                                                                       \
    (K_METADATA | K_DECISIONS | K_RECORD | K_CHANGES | K_VIOLATION | K_AUTHORITY |         \
     K_IDEMPOTENCY_KEY | K_REQUEST)

/* key's bit, 0 for a key no line holds (a switch: the replay asks for
 * every member of every line). */
static unsigned key_bit(const char *k) {
    switch (k[0]) {
    case 's': return strcmp(k, "seq") == 0 ? K_SEQ : 0;
    case 'r':
        return strcmp(k, "record_id") == 0 ? K_RECORD_ID
               : strcmp(k, "record") == 0  ? K_RECORD
               : strcmp(k, "request") == 0 ? K_REQUEST
                                           : 0;
    case 'k': return strcmp(k, "kind") == 0 ? K_KIND : 0;
    case 'v':
        return strcmp(k, "version") == 0     ? K_VERSION
               : strcmp(k, "violation") == 0 ? K_VIOLATION
                                             : 0;
    case 'f': return strcmp(k, "from_state") == 0 ? K_FROM : 0;
    case 't':
        return strcmp(k, "to_state") == 0    ? K_TO
               : strcmp(k, "trigger") == 0   ? K_TRIGGER
               : strcmp(k, "timestamp") == 0 ? K_TS
                                             : 0;
    case 'a':
        return strcmp(k, "actor") == 0       ? K_ACTOR
               : strcmp(k, "authority") == 0 ? K_AUTHORITY
                                             : 0;
    case 'm': return strcmp(k, "metadata") == 0 ? K_METADATA : 0;
    case 'd': return strcmp(k, "decisions") == 0 ? K_DECISIONS : 0;
    case 'p':
        return strcmp(k, "policy_set") == 0 ? K_POLICY_SET
               : strcmp(k, "prev") == 0     ? K_PREV
                                            : 0;
    case 'c': return strcmp(k, "changes") == 0 ? K_CHANGES : 0;
    case 'h': return strcmp(k, "hash") == 0 ? K_HASH : 0;
    case 'i': return strcmp(k, "idempotency_key") == 0 ? K_IDEMPOTENCY_KEY : 0;
    }
    return 0;
}

/* A seq or version: an integer a double holds exactly, below 2^53 (a
 * larger one in a line would read as another number through cJSON). */
#define MAX_COUNT 9007199254740992LL

/* Whether line holds a byte below 0x20. A line we wrote never does: its
 * strings escape them and it has no whitespace. Both readers refuse one:
 * cJSON skips any of them as whitespace where JSON allows none, and a NUL
 * would end the strings an entry points to early. (The least byte in
 * each of 16 lanes, then the least of those, without an early exit: one
 * vector min for 16 bytes at -O2, where taking the least of each 16 in
 * turn cost 8 % of a journal's replay.) */
static bool control_byte(const char *line, size_t len) {
    const unsigned char *p = (const unsigned char *)line;
    unsigned char lane[16], least = 0xff;
    size_t i = 0;
    memset(lane, 0xff, sizeof lane);
    for (; i + 16 <= len; i += 16)
        for (int k = 0; k < 16; k++) lane[k] = p[i + k] < lane[k] ? p[i + k] : lane[k];
    for (int k = 0; k < 16; k++) least = lane[k] < least ? lane[k] : least;
    for (; i < len; i++) least = p[i] < least ? p[i] : least;
    return least < 0x20;
}

/* Whether a \\u escape in line lacks its 4 hex digits: cJSON reads one
 * as U+0000 where JSON (and the replay's reader) refuse it. Lines seldom
 * hold a backslash: memchr finds each. */
static bool bad_u_escape(const char *line, size_t len) {
    const char *p = line, *end = line + len;
    while ((p = memchr(p, '\\', (size_t)(end - p)))) {
        if (p + 1 < end && p[1] == 'u' && (end - p < 6 || lf_json_hex4(p + 2) < 0))
            return true;
        p += 2;                 /* the escaped byte is never the next escape's */
        if (p >= end) break;
    }
    return false;
}

/* What both readers refuse before reading a member, or NULL: a byte
 * below 0x20, anything but an object first, a short \\u escape. */
static const char *line_problem(const char *line, size_t len) {
    if (control_byte(line, len)) return "a control character";
    if (!len || line[0] != '{') return "not one JSON object";
    if (bad_u_escape(line, len)) return "a bad \\u escape";
    return NULL;
}

/* A string field, or NULL when the value is null and nullable. */
static int get_str(cJSON *o, const char *key, int nullable, const char **out, char *err,
                   size_t errlen) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return fail(err, errlen, "missing key", key);
    if (cJSON_IsNull(v) && nullable) {
        *out = NULL;
        return 0;
    }
    if (!cJSON_IsString(v)) return fail(err, errlen, "wrong type for", key);
    *out = v->valuestring;
    return 0;
}

static int get_u64(cJSON *o, const char *key, uint64_t *out, char *err, size_t errlen) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return fail(err, errlen, "missing key", key);
    int64_t n;      /* within 2^53: a seq or version a double holds exactly */
    if (lf_json_number_int(v, &n) || n < 0 || n >= MAX_COUNT)
        return fail(err, errlen, "wrong type for", key);
    *out = (uint64_t)n;
    return 0;
}

/* A JSON subdocument of the line, in canonical form (json.h: integers as
 * written, which a cJSON print would round to a double); absent is
 * allowed only when `optional`. */
static int get_doc(cJSON *o, const char *line, size_t len, const char *key, int array,
                   int optional, char **out, char *err, size_t errlen) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v) return optional ? 0 : fail(err, errlen, "missing key", key);
    if (array ? !cJSON_IsArray(v) : !cJSON_IsObject(v))
        return fail(err, errlen, "wrong type for", key);
    const char *text;
    size_t n;
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_get(line, len, key, &text, &n) || !lf_json_canon(text, n, &b)) {
        lf_buf_free(&b);
        return fail(err, errlen, "malformed", key);
    }
    *out = lf_buf_steal(&b);
    return 0;
}

/* The strict parse of one stored line (no trailing newline) into doc,
 * whose strings the entry points into. Every key of the canonical form
 * must be there with its type (record, changes, violation and
 * idempotency_key only where they belong), the kind known, the
 * timestamp ours; object and array values are normalized so a later
 * write reproduces them.
 * Returns 0, or -1 with "what: key" in err and doc left empty (nothing to
 * free). Never reads past line[len). */
int lf_entry_parse(const char *line, size_t len, lf_entry_doc *doc, char *err,
                   size_t errlen) {
    memset(doc, 0, sizeof *doc);
    const char *problem = line_problem(line, len);
    if (problem) return fail(err, errlen, problem, NULL);
    /* all of the line (cJSON would take anything after the object) */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, false);
    if (root && end != line + len) {
        cJSON_Delete(root);
        root = NULL;
    }
    if (!root) return fail(err, errlen, "not valid JSON", NULL);
    doc->json = root;
    lf_entry *e = &doc->e;
    const char *kind, *ts, *prev, *hash;
    if (!cJSON_IsObject(root)) goto bad_type;
    unsigned seen = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        unsigned bit = key_bit(c->string);
        if (bit & seen) {
            fail(err, errlen, "repeated key", c->string);
            goto bad;
        }
        seen |= bit;
    }
    if (get_u64(root, "seq", &e->seq, err, errlen) ||
        get_str(root, "record_id", 1, &e->record_id, err, errlen) ||
        get_str(root, "kind", 0, &kind, err, errlen) ||
        get_u64(root, "version", &e->version, err, errlen) ||
        get_str(root, "from_state", 1, &e->from_state, err, errlen) ||
        get_str(root, "to_state", 1, &e->to_state, err, errlen) ||
        get_str(root, "trigger", 1, &e->trigger, err, errlen) ||
        get_str(root, "actor", 1, &e->actor, err, errlen) ||
        get_str(root, "timestamp", 0, &ts, err, errlen) ||
        get_str(root, "policy_set", 1, &e->policy_set, err, errlen) ||
        get_str(root, "prev", 0, &prev, err, errlen) ||
        get_str(root, "hash", 0, &hash, err, errlen) ||
        get_doc(root, line, len, "metadata", 0, 0, &doc->metadata, err, errlen) ||
        get_doc(root, line, len, "decisions", 1, 0, &doc->decisions, err, errlen) ||
        get_doc(root, line, len, "record", 0, 1, &doc->record, err, errlen) ||
        get_doc(root, line, len, "changes", 0, 1, &doc->changes, err, errlen) ||
        get_doc(root, line, len, "violation", 0, 1, &doc->violation, err, errlen) ||
        get_doc(root, line, len, "authority", 0, 1, &doc->authority, err, errlen))
        goto bad;
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "idempotency_key");
    if (key && !cJSON_IsString(key)) {
        fail(err, errlen, "wrong type for", "idempotency_key");
        goto bad;
    }
    e->idempotency_key = key ? key->valuestring : NULL;
    const cJSON *rq = cJSON_GetObjectItemCaseSensitive(root, "request");
    if (rq && !cJSON_IsString(rq)) {
        fail(err, errlen, "wrong type for", "request");
        goto bad;
    }
    e->request = rq ? rq->valuestring : NULL;
    int k = lf_entry_kind_parse(kind);
    if (k < 0) {
        fail(err, errlen, "unknown kind", kind);
        goto bad;
    }
    e->kind = (lf_entry_kind)k;
    int64_t us;
    if (lf_ts_parse(ts, &us)) {
        fail(err, errlen, "bad timestamp", ts);
        goto bad;
    }
    memcpy(e->timestamp, ts, LF_TS_LEN + 1);
    if (!is_hex64(prev) || !is_hex64(hash)) {
        fail(err, errlen, "bad hash", NULL);
        goto bad;
    }
    memcpy(e->prev, prev, LF_HASH_LEN + 1);
    memcpy(e->hash, hash, LF_HASH_LEN + 1);
    if (!lf_entry_global(e->kind) && !e->record_id) {
        fail(err, errlen, "missing record_id", NULL);
        goto bad;
    }
    if (e->kind == LF_ENTRY_CREATED && !doc->record) {
        fail(err, errlen, "created entry without record", NULL);
        goto bad;
    }
    e->metadata = doc->metadata;
    e->decisions = doc->decisions;
    e->record = doc->record;
    e->changes = doc->changes;
    e->violation = doc->violation;
    e->authority = doc->authority;
    return 0;
bad_type:
    fail(err, errlen, "not a JSON object", NULL);
bad:
    lf_entry_doc_free(doc);
    return -1;
}

typedef struct reader {
    lf_entry_doc *doc;
    char *at;                   /* the next free byte of the arena */
    unsigned seen;              /* the keys met, one bit each */
    bool bad;
    const char *why;
    const char *end;            /* where the last member's value ends */
} reader;

/* A JSON string value (or null) into the arena; NULL for null. */
static const char *read_str(reader *r, const char *v, size_t n) {
    if (n == 4 && memcmp(v, "null", 4) == 0) return NULL;
    if (n < 2 || *v != '"') {
        r->bad = true;
        return NULL;
    }
    char *out = r->at;
    if (!memchr(v, '\\', n)) {            /* the usual case: no escapes */
        memcpy(out, v + 1, n - 2);
        out[n - 2] = '\0';
        r->at += n - 1;
        return out;
    }
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_string(v, n, &b)) r->bad = true;
    memcpy(out, lf_buf_str(&b), b.len + 1);     /* never longer than its text */
    r->at += b.len + 1;
    lf_buf_free(&b);
    return out;
}

/* An object or array as it stands (or null). */
static const char *read_doc(reader *r, const char *v, size_t n, char open) {
    if (n == 4 && memcmp(v, "null", 4) == 0) return NULL;
    if (!n || *v != open) {
        r->bad = true;
        return NULL;
    }
    char *out = r->at;
    memcpy(out, v, n);
    out[n] = '\0';
    r->at += n + 1;
    return out;
}

/* Marks the line bad: why, for the caller's message. */
static void refuse(reader *r, const char *why) {
    if (!r->bad) r->why = why;
    r->bad = true;
}

/* Whether [p, end) is spaces and the object's closing brace: the object
 * is all of the line (other whitespace is a control byte, refused). */
static bool ends_object(const char *p, const char *end) {
    while (p < end && *p == ' ') p++;
    return p + 1 == end && *p == '}';
}

/* Takes what lf_entry_parse takes, and refuses what it refuses (the two
 * must read every line alike): each key once, with its type. */
static bool read_member(const char *key, const char *v, size_t n, void *arg) {
    reader *r = arg;
    lf_entry *e = &r->doc->e;
    unsigned bit = key_bit(key);
    int64_t i;
    const char *s = NULL;
    if (bit & r->seen) refuse(r, "repeated key");
    r->seen |= bit;
    r->end = v + n;
    switch (bit) {
    case K_SEQ:
    case K_VERSION:
        if (lf_json_int(v, n, &i) || i < 0 || i >= MAX_COUNT) refuse(r, "wrong type");
        else if (bit == K_SEQ) e->seq = (uint64_t)i;
        else e->version = (uint64_t)i;
        break;
    case K_RECORD_ID: e->record_id = read_str(r, v, n); break;
    case K_FROM: e->from_state = read_str(r, v, n); break;
    case K_TO: e->to_state = read_str(r, v, n); break;
    case K_TRIGGER: e->trigger = read_str(r, v, n); break;
    case K_ACTOR: e->actor = read_str(r, v, n); break;
    case K_POLICY_SET: e->policy_set = read_str(r, v, n); break;
    case K_KIND: {
        int k = (s = read_str(r, v, n)) ? lf_entry_kind_parse(s) : -1;
        if (k < 0) refuse(r, "unknown kind");
        else e->kind = (lf_entry_kind)k;
        break;
    }
    case K_TS: {
        int64_t us;
        if (!(s = read_str(r, v, n)) || lf_ts_parse(s, &us)) refuse(r, "bad timestamp");
        else memcpy(e->timestamp, s, LF_TS_LEN + 1);
        break;
    }
    case K_PREV:
    case K_HASH:
        if (!(s = read_str(r, v, n)) || !is_hex64(s)) refuse(r, "bad hash");
        else memcpy(bit == K_PREV ? e->prev : e->hash, s, LF_HASH_LEN + 1);
        break;
    case K_METADATA: s = e->metadata = read_doc(r, v, n, '{'); break;
    case K_DECISIONS: s = e->decisions = read_doc(r, v, n, '['); break;
    case K_RECORD: s = e->record = read_doc(r, v, n, '{'); break;
    case K_CHANGES: s = e->changes = read_doc(r, v, n, '{'); break;
    case K_VIOLATION: s = e->violation = read_doc(r, v, n, '{'); break;
    case K_AUTHORITY: s = e->authority = read_doc(r, v, n, '{'); break;
    case K_IDEMPOTENCY_KEY: s = e->idempotency_key = read_str(r, v, n); break;
    case K_REQUEST: s = e->request = read_str(r, v, n); break;
    }
    /* the documents and the optional strings: there, never null */
    if ((bit & NEVER_NULL) && !s) refuse(r, "wrong type");
    return !r->bad;
}

int lf_entry_read_into(const char *line, size_t len, lf_entry_doc *doc, char *block,
                       char *err, size_t errlen) {
    memset(doc, 0, sizeof *doc);
    /* Every string and sub-document fits in the line's own length, plus
     * one NUL each: the block never grows. */
    reader r = {doc, block, 0, false, NULL, NULL};
    const char *problem = line_problem(line, len);
    if (problem) refuse(&r, problem);
    bool ok = !r.bad && lf_json_members(line, len, read_member, &r) && !r.bad &&
              r.end && ends_object(r.end, line + len);
    if (!ok || (r.seen & K_EVERY_LINE) != K_EVERY_LINE ||
        (!lf_entry_global(doc->e.kind) && !doc->e.record_id) ||
        (doc->e.kind == LF_ENTRY_CREATED && !doc->e.record)) {
        fail(err, errlen, r.why ? r.why : "malformed entry", NULL);
        return -1;
    }
    return 0;
}

int lf_entry_read(const char *line, size_t len, lf_entry_doc *doc, char *err,
                  size_t errlen) {
    char *block = lf_xmalloc(LF_ENTRY_READ_ROOM(len));
    if (lf_entry_read_into(line, len, doc, block, err, errlen) < 0) {
        free(block);
        return -1;
    }
    doc->arena = block;
    return 0;
}

/* "<len>:<to>:<who>:<name>", cut to fit; built by hand because it runs
 * twice per transition and snprintf was a measurable share of one. */
void lf_counter_key(const char *to, char who, const char *name,
                    char out[LF_COUNTER_KEY]) {
    size_t tl = strlen(to), nl = strlen(name), i;
    char num[24];
    int d = 0;
    do num[d++] = (char)('0' + tl % 10);
    while ((tl /= 10) > 0);
    tl = strlen(to);
    for (i = 0; d > 0 && i < LF_COUNTER_KEY - 1; i++) out[i] = num[--d];
    const char *parts[] = {":", to, (char[]){':', who, ':', '\0'}, name};
    const size_t lens[] = {1, tl, 3, nl};
    for (size_t k = 0; k < 4; k++) {
        size_t n = lens[k] < LF_COUNTER_KEY - 1 - i ? lens[k] : LF_COUNTER_KEY - 1 - i;
        memcpy(out + i, parts[k], n);
        i += n;
    }
    out[i] = '\0';
}

bool lf_entry_counts(const lf_entry *e) {
    return e->kind == LF_ENTRY_TRANSITION && e->to_state && e->actor && !e->violation;
}

int lf_entry_counters(const lf_entry *e, char keys[2][LF_COUNTER_KEY]) {
    if (!lf_entry_counts(e)) return 0;
    const char *id, *v;
    size_t n, vn;
    lf_buf b = LF_BUF_INIT;
    /* The person: the identity's principal or person, else the actor
     * itself (the common case: no copy). */
    bool named = e->authority &&
                 lf_json_get(e->authority, strlen(e->authority), "identity", &id, &n) &&
                 ((lf_json_get(id, n, "principal", &v, &vn) && lf_json_string(v, vn, &b)) ||
                  (lf_json_get(id, n, "person", &v, &vn) && lf_json_string(v, vn, &b)));
    lf_counter_key(e->to_state, 'a', e->actor, keys[0]);
    lf_counter_key(e->to_state, 'p', named ? lf_buf_str(&b) : e->actor, keys[1]);
    lf_buf_free(&b);
    return 2;
}

void lf_entry_doc_free(lf_entry_doc *doc) {
    free(doc->arena);
    cJSON_Delete(doc->json);
    cJSON_free(doc->metadata);
    cJSON_free(doc->decisions);
    cJSON_free(doc->record);
    cJSON_free(doc->changes);
    cJSON_free(doc->violation);
    cJSON_free(doc->authority);
    memset(doc, 0, sizeof *doc);
}

/* ---- chain verification ------------------------------------------------ */

void lf_chain_init(lf_chain *c) {
    c->next_seq = 1;
    memcpy(c->prev, LF_GENESIS, LF_HASH_LEN + 1);
    c->count = 0;
}

int lf_chain_feed(lf_chain *c, const char *line, size_t len, char *err, size_t errlen) {
    lf_entry_doc doc;
    char why[160];
    if (lf_entry_parse(line, len, &doc, why, sizeof why)) {
        snprintf(err, errlen, "seq %llu: unreadable entry (%s)",
                 (unsigned long long)c->next_seq, why);
        return -1;
    }
    int rc = lf_chain_check(c, line, len, &doc.e, err, errlen);
    lf_entry_doc_free(&doc);
    return rc;
}

int lf_entry_self_hash(const char *line, size_t len, char hash[LF_HASH_LEN + 1]) {
    /* The stored hash must be the line's last key, and equal the sha256
     * of everything before it (plus the closing brace). */
    if (len < LF_HASH_SUFFIX_LEN + 2) return -1;
    const char *suffix = line + len - LF_HASH_SUFFIX_LEN;
    if (memcmp(suffix, ",\"hash\":\"", 9) != 0 ||
        memcmp(line + len - 2, "\"}", 2) != 0)
        return -1;
    static const char brace = '}';
    const void *parts[] = {line, &brace};
    const size_t lens[] = {len - LF_HASH_SUFFIX_LEN, 1};
    unsigned char d[32];
    lf_sha256_parts(2, parts, lens, d);
    lf_hex(d, sizeof d, hash);
    return memcmp(hash, suffix + 9, LF_HASH_LEN) == 0 ? 0 : -2;
}

int lf_chain_check(lf_chain *c, const char *line, size_t len, const lf_entry *e,
                   char *err, size_t errlen) {
    return lf_chain_link(c, line, len, e->seq, e->prev, err, errlen);
}

int lf_chain_link(lf_chain *c, const char *line, size_t len, uint64_t seq,
                  const char *prev, char *err, size_t errlen) {
    unsigned long long s = (unsigned long long)seq;
    if (seq != c->next_seq) {
        snprintf(err, errlen,
                 "seq %llu: expected seq %llu (entry missing, inserted or reordered)", s,
                 (unsigned long long)c->next_seq);
        return -1;
    }
    if (memcmp(prev, c->prev, LF_HASH_LEN) != 0) {
        snprintf(err, errlen, "seq %llu: prev does not match the hash of seq %llu", s,
                 s - 1);
        return -1;
    }
    char h[LF_HASH_LEN + 1];
    int self = lf_entry_self_hash(line, len, h);
    if (self) {
        snprintf(err, errlen,
                 self == -1 ? "seq %llu: hash is not the entry's last key"
                            : "seq %llu: hash mismatch (entry modified)",
                 s);
        return -1;
    }
    c->next_seq = seq + 1;
    memcpy(c->prev, h, LF_HASH_LEN + 1);
    c->count++;
    return 0;
}

char *lf_json_object_normalize(const char *text, char *err, size_t errlen) {
    cJSON *v = cJSON_Parse(text);
    if (!v || !cJSON_IsObject(v)) {
        cJSON_Delete(v);
        fail(err, errlen, "not a JSON object", NULL);
        return NULL;
    }
    cJSON_Delete(v);
    lf_buf b = LF_BUF_INIT;
    lf_json_canon(text, strlen(text), &b);      /* cJSON took it: it is JSON */
    return lf_buf_steal(&b);
}
