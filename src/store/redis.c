/* redis.c -- the redis store: the global audit log, the records folded
 * from it and their indexes, in Redis, through hiredis's asynchronous API
 * on the caller's event base. This file has the reads, opening and
 * closing, and what the modules share (keys, the fold-base cache, record
 * replies); redis_commit.c has the only write, redis_conn.c the
 * connection, redis_lua.c the scripts, redis_url.c the URLs, redis_pack.c
 * the lines as Redis holds them (packed; every read here unpacks them).
 *
 * A record in Redis is its entries: its hash keeps its version and the
 * hash of the entry that last changed it (h), its list the seqs of its
 * entries, and a read folds those lines, as the other stores fold their
 * logs. Reads ask for the version and h first (a get's HMGET, a list
 * page's script) and answer from the cache of records when it holds that
 * very record; what it does not, one more call of the read script brings.
 * Key layout, Cluster notes and outage behavior: docs/redis.md. */
#include "redis.h"
#include "../core/json.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#define CACHE_MAX 4096          /* fold bases kept */
#define LIST_MAX 1000           /* records per list page */
#define AUDIT_MAX 4096          /* lines per audit page (Lua's unpack) */

/* ---- keys -------------------------------------------------------------- */

/* b = the store's prefix, then each of the NULL-ended strings: every key
 * is built here, on every commit (a dozen of them), so by copies rather
 * than printf. */
static void key_cat(const lf_redis *s, lf_buf *b, ...) __attribute__((sentinel));
static void key_cat(const lf_redis *s, lf_buf *b, ...) {
    va_list ap;
    lf_buf_reset(b);
    lf_buf_puts(b, s->url.prefix);
    va_start(ap, b);
    for (const char *p; (p = va_arg(ap, const char *));) lf_buf_puts(b, p);
    va_end(ap);
}

/* Keys of one record share the {id} hash tag: a Redis Cluster would keep
 * a record's hash and its entry list on one slot. */
void lf_redis_key_rec(const lf_redis *s, const char *id, lf_buf *b) {
    key_cat(s, b, "rec:{", id, "}", (char *)NULL);
}

void lf_redis_key_reclog(const lf_redis *s, const char *id, lf_buf *b) {
    key_cat(s, b, "rec:{", id, "}:log", (char *)NULL);
}

void lf_redis_key_log(const lf_redis *s, uint64_t seq, lf_buf *b) {
    char n[LF_INT_CHARS];
    lf_fmt_int((int64_t)((seq - 1) / LF_REDIS_LOG_LIST), n);
    key_cat(s, b, "log:", n, (char *)NULL);
}

void lf_redis_key_index(const lf_redis *s, const char *state, const char *repo,
                        lf_buf *b) {
    if (state && repo) {
        /* The length makes the name unambiguous whatever the strings
         * hold: state and repo names are the workflow's and the user's. */
        char n[LF_INT_CHARS];
        lf_fmt_int((int64_t)strlen(state), n);
        key_cat(s, b, "sr:", n, ":", state, ":", repo, (char *)NULL);
    } else if (state) {
        key_cat(s, b, "state:", state, (char *)NULL);
    } else {
        /* every record, or a repo's, is in the index of its state: those
         * of every state are merged (list_lua) */
        key_cat(s, b, "states", (char *)NULL);
    }
}

void lf_redis_key_entered(const lf_redis *s, const char *state, lf_buf *b) {
    key_cat(s, b, "ent:", state, (char *)NULL);
}

void lf_redis_key_count(const lf_redis *s, const char *counter, lf_buf *b) {
    key_cat(s, b, "count:", counter, (char *)NULL);
}

void lf_redis_key_times(const lf_redis *s, const char *counter, bool tail, lf_buf *b) {
    key_cat(s, b, tail ? "tail:" : "times:", counter, (char *)NULL);
}

char *lf_redis_counter_who(char *key) {
    char *end;
    unsigned long n = strtoul(key, &end, 10);
    if (end == key || *end != ':' || strlen(end + 1) < n + 3) return NULL;
    char *w = end + 1 + n;
    return w[0] == ':' && w[2] == ':' ? w + 1 : NULL;
}

void lf_redis_key_children(const lf_redis *s, const char *parent, lf_buf *b) {
    key_cat(s, b, "children:", parent, (char *)NULL);
}

/* ---- the fold-base cache ------------------------------------------------ */

/* Records as last read from (or confirmed by) Redis: only ever what the
 * server holds or held at that version, never a guess, so folding the
 * next entry onto one is exact when its version is the entry's - 1. A
 * record handed to a callback stays valid during it: entries are added
 * only while answering a reply, before that reply's callback runs. */
typedef struct lf_redis_cached {
    lf_record *r;
    char h[LF_REDIS_H_LEN + 1]; /* the hash of the entry that last changed it
                                   (its first digits), or "" when unknown */
} lf_redis_cached;

lf_record *lf_redis_cache_get(lf_redis *s, const char *id) {
    lf_redis_cached *c = lf_map_get(&s->cache.map, id);
    return c ? c->r : NULL;
}

static void cached_free(lf_redis_cached *c) {
    if (!c) return;
    lf_record_free(c->r);
    free(c);
}

static void cache_evict_one(lf_redis *s) {
    lf_map *m = &s->cache.map;
    size_t span = lf_map_span(m);
    for (size_t i = 0; i < span; i++) {
        size_t j = (s->cache.hand + i) % span;
        lf_redis_cached *c = lf_map_val(m, j);
        if (!c) continue;
        lf_map_del(m, c->r->id);
        cached_free(c);
        s->cache.hand = j + 1;
        return;
    }
}

void lf_redis_cache_put(lf_redis *s, lf_record *r, const char *h) {
    lf_redis_cached *c = lf_map_get(&s->cache.map, r->id);
    bool known = h && strlen(h) >= LF_REDIS_H_LEN;
    if (c && c->r == r) {
        if (known) snprintf(c->h, sizeof c->h, "%.*s", LF_REDIS_H_LEN, h);
        return;
    }
    if (!c && s->cache.map.len >= CACHE_MAX) cache_evict_one(s);
    lf_record *old = c ? c->r : NULL;
    if (!c) c = lf_xcalloc(1, sizeof *c);
    c->r = r;
    /* Unknown (a record an older version wrote): kept, never matched. */
    if (known) snprintf(c->h, sizeof c->h, "%.*s", LF_REDIS_H_LEN, h);
    else c->h[0] = '\0';
    /* The key is the record's own id: the new one's goes in before the
     * old record (and its id) is freed. */
    lf_map_put(&s->cache.map, r->id, c);
    lf_record_free(old);
}

void lf_redis_cache_del(lf_redis *s, const char *id) {
    cached_free(lf_map_del(&s->cache.map, id));
}

static void cache_free(lf_redis *s) {
    lf_map *m = &s->cache.map;
    for (size_t i = 0; i < lf_map_span(m); i++)
        cached_free(lf_map_val(m, i));
    lf_map_free(m);
}

/* ---- replies ------------------------------------------------------------ */

bool lf_redis_is_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

/* The version a record hash's HMGET names, or 0. */
static uint64_t reply_version(const redisReply *v) {
    if (!lf_redis_is_str(v)) return 0;
    char *end;
    unsigned long long n = strtoull(v->str, &end, 10);
    return end != v->str && *end == '\0' ? (uint64_t)n : 0;
}

/* The cached record when Redis holds that very record: the same version
 * (v), last changed by the same entry (h: its hash names the whole log
 * before it). */
static lf_record *cache_match(lf_redis *s, const char *id, const redisReply *v,
                              const redisReply *h) {
    lf_redis_cached *c = lf_map_get(&s->cache.map, id);
    return c && c->h[0] && lf_redis_is_str(h) && h->len >= LF_REDIS_H_LEN &&
                   memcmp(c->h, h->str, LF_REDIS_H_LEN) == 0 &&
                   c->r->version == reply_version(v)
               ? c->r
               : NULL;
}

/* The record folded from its entries' lines, g's elements from 4 on
 * (REC_LUA), exactly as the other stores fold their logs; or, for one an
 * older version wrote without an entry list, parsed from its JSON (j).
 * NULL with msg set when they do not make a record. */
static lf_record *record_fold(lf_redis *s, const redisReply *g, const char *key, char *msg,
                              size_t len) {
    char why[256] = "no entries";
    lf_record *r = NULL;
    if (g->elements == 4) {
        if (lf_redis_is_str(g->element[3]) &&
            (r = lf_record_from_json(g->element[3]->str, g->element[3]->len, why,
                                     sizeof why)))
            return r;
        lf_redis_errf(s, msg, len, "key %s does not hold a loopforge record (%s)", key, why);
        return NULL;
    }
    lf_buf line = LF_BUF_INIT;
    for (size_t i = 4; i < g->elements; i++) {
        const redisReply *l = g->element[i];
        lf_entry_doc doc;
        if (!lf_redis_is_str(l)) {
            lf_redis_errf(s, msg, len, "%s lacks an entry %s lists", s->k_log, key);
            lf_record_free(r);
            lf_buf_free(&line);
            return NULL;
        }
        lf_buf_reset(&line);
        int rc = lf_redis_unpack_line(s->pack, l->str, l->len, &line, why, sizeof why);
        if (rc == 0) rc = lf_entry_read(line.p, line.len, &doc, why, sizeof why);
        if (rc == 0) {
            rc = lf_record_apply(&r, &doc.e, why, sizeof why);
            lf_entry_doc_free(&doc);
        }
        if (rc < 0) {
            lf_redis_errf(s, msg, len,
                          "key %s: its entries do not make a loopforge record (%s)", key, why);
            lf_record_free(r);
            lf_buf_free(&line);
            return NULL;
        }
    }
    lf_buf_free(&line);
    return r;
}

/* A record as REC_LUA gives it, {d, v, h, j, line, ...} (or the probe's
 * {d, v, h}: it answers only from the cache): LF_OK with *out (the
 * caller's, or the cached record itself when the cache holds that very
 * record: folding it again is the work the cache saves), LF_NOT_FOUND for
 * none or a tombstone, or LF_UNAVAILABLE naming the key when what is there
 * is not a loopforge record. With a probe's reply and no cached match,
 * LF_OK with *out NULL: read the record. */
lf_code lf_redis_record_reply(lf_redis *s, const char *id, const redisReply *g,
                              lf_record **out, char *msg, size_t len) {
    lf_buf key = LF_BUF_INIT;
    lf_code code = LF_UNAVAILABLE;

    *out = NULL;
    lf_redis_key_rec(s, id, &key);
    if (g->type == REDIS_REPLY_ERROR) {
        lf_redis_errf(s, msg, len, "key %s: %s", key.p, g->str);
    } else if (g->type != REDIS_REPLY_ARRAY || g->elements < 3) {
        lf_redis_errf(s, msg, len, "key %s: unexpected reply", key.p);
    } else if (g->element[0]->type != REDIS_REPLY_NIL || !lf_redis_is_str(g->element[1])) {
        snprintf(msg, len, "Record not found: %s", id);
        code = LF_NOT_FOUND;
    } else if ((*out = cache_match(s, id, g->element[1], g->element[2])) || g->elements == 3) {
        code = LF_OK;
    } else if (!(*out = record_fold(s, g, key.p, msg, len))) {
        /* msg says why */
    } else if (strcmp((*out)->id, id) != 0 || (*out)->version != reply_version(g->element[1])) {
        lf_redis_errf(s, msg, len, "key %s holds record %s at version %llu, not %s at %s",
                      key.p, (*out)->id, (unsigned long long)(*out)->version, id,
                      g->element[1]->str);
        lf_record_free(*out);
        *out = NULL;
    } else {
        code = LF_OK;
    }
    lf_buf_free(&key);
    return code;
}

/* The h of a record reply ({d, v, h, ...}), or NULL. */
const char *lf_redis_reply_h(const redisReply *g) {
    return g->type == REDIS_REPLY_ARRAY && g->elements >= 3 && lf_redis_is_str(g->element[2])
               ? g->element[2]->str
               : NULL;
}

void lf_redis_format_read(lf_rop *op, const char *const *ids, size_t n) {
    lf_redis *s = op->s;
    const char **argv = lf_xmalloc((n + 6) * sizeof *argv);
    argv[0] = "EVALSHA";
    argv[1] = s->sha[LF_SCRIPT_READ];
    argv[2] = "1";
    argv[3] = s->k_log;
    argv[4] = s->k_rec;
    argv[5] = lf_redis_pack_known(s->pack);
    for (size_t i = 0; i < n; i++) argv[6 + i] = ids[i];
    op->script = LF_SCRIPT_READ;
    lf_redis_format(op, (int)n + 6, argv, NULL);
    free(argv);
}

/* The one record of a read script's reply for one id. */
const redisReply *lf_redis_read_one(const redisReply *r) {
    return r->type == REDIS_REPLY_ARRAY && r->elements == 1 ? r->element[0] : r;
}

/* ---- get and find_by_ref ------------------------------------------------ */

typedef struct get_op {
    lf_rop op;
    lf_store_cb *cb;
    void *arg;
    char *id;                   /* NULL until find_by_ref learned it */
    char *ref;                  /* find_by_ref only */
} get_op;

static void get_notify(lf_rop *op, lf_code code, const char *why) {
    get_op *g = (get_op *)op;
    g->cb(code, why, NULL, NULL, g->arg);
}

static void get_destroy(lf_rop *op) {
    get_op *g = (get_op *)op;
    lf_redis_cmd_free(op);
    free(g->id);
    free(g->ref);
    free(g);
}

/* A get of a record the cache holds asks first for its version and the
 * hash of the entry that last changed it (h): when they are the cached
 * record's, that is the answer, and nothing else crosses the wire.
 * Otherwise (or for a record an older version wrote, which has no h) the
 * read script brings its entries' lines, and the store folds them; a
 * record the cache does not hold is read that way at once. */
static void get_format(get_op *g, bool whole) {
    lf_buf key = LF_BUF_INIT;
    if (whole) {
        const char *ids[] = {g->id};
        lf_redis_format_read(&g->op, ids, 1);
        return;
    }
    lf_redis_key_rec(g->op.s, g->id, &key);
    const char *argv[] = {"HMGET", key.p, "d", "v", "h"};
    g->op.script = -1;
    lf_redis_format(&g->op, 5, argv, NULL);
    lf_buf_free(&key);
}

/* find_by_ref's first step answered: the id the ref names, if any. */
static void get_ref_reply(get_op *g, redisReply *r) {
    char msg[600];
    if (r->type == REDIS_REPLY_ERROR) {
        lf_redis_errf(g->op.s, msg, sizeof msg, "key %s: %s", g->op.s->k_ref, r->str);
        lf_redis_fail(&g->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (!lf_redis_is_str(r)) {
        snprintf(msg, sizeof msg, "Record not found: %s", g->ref);
        lf_redis_fail(&g->op, LF_NOT_FOUND, msg);
        return;
    }
    g->id = lf_xstrdup(r->str);
    get_format(g, !lf_redis_cache_get(g->op.s, g->id));
    lf_redis_send(&g->op);
}

static void get_reply(lf_rop *op, redisReply *r) {
    get_op *g = (get_op *)op;
    lf_redis *s = op->s;
    char msg[600];
    lf_record *rec;

    if (!g->id) {
        get_ref_reply(g, r);
        return;
    }
    const redisReply *one = lf_redis_read_one(r);
    lf_code code = lf_redis_record_reply(s, g->id, one, &rec, msg, sizeof msg);
    if (code == LF_OK && !rec) {        /* the probe: not what the cache holds */
        get_format(g, true);
        lf_redis_send(&g->op);
        return;
    }
    if (code == LF_NOT_FOUND && g->ref)
        snprintf(msg, sizeof msg, "Record not found: %s", g->ref);
    if (code != LF_OK) {
        lf_redis_cache_del(s, g->id);    /* whatever we knew of it is stale now */
        lf_redis_fail(&g->op, code, msg);
        return;
    }
    lf_redis_cache_put(s, rec, lf_redis_reply_h(one));
    g->cb(LF_OK, NULL, rec, NULL, g->arg);
    get_destroy(op);
}

static const lf_rop_type get_type = {
    .send = lf_redis_send,
    .reply = get_reply,
    .notify = get_notify,
    .destroy = get_destroy,
};

static get_op *get_new(lf_redis *s, lf_store_cb *cb, void *arg) {
    get_op *g = lf_xcalloc(1, sizeof *g);
    g->op.type = &get_type;
    g->op.s = s;
    g->op.script = -1;
    g->cb = cb;
    g->arg = arg;
    return g;
}

static void redis_get(lf_store *st, const char *id, lf_store_cb *cb, void *arg) {
    get_op *g = get_new((lf_redis *)st, cb, arg);
    g->id = lf_xstrdup(id);
    get_format(g, !lf_redis_cache_get((lf_redis *)st, id));
    lf_redis_send(&g->op);
}

/* The engine's read before a commit: the cached record as this process
 * last read or wrote it, without asking Redis (the probe's round trip was
 * a third of a transition's time with 64 in flight); the commit script's
 * version check catches one another process moved meanwhile. */
static void redis_get_for_update(lf_store *st, const char *id, lf_store_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    lf_record *r = s->ac ? lf_redis_cache_get(s, id) : NULL;
    if (r) {
        cb(LF_OK, NULL, r, NULL, arg);
        return;
    }
    redis_get(st, id, cb, arg);
}

static void redis_find_by_ref(lf_store *st, const char *ref, lf_store_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    get_op *g = get_new(s, cb, arg);
    const char *argv[] = {"HGET", s->k_ref, ref};
    g->ref = lf_xstrdup(ref);
    lf_redis_format(&g->op, 3, argv, NULL);
    lf_redis_send(&g->op);
}

/* ---- find_key ------------------------------------------------------------ */

typedef struct key_op {
    lf_rop op;
    lf_store_cb *cb;
    void *arg;
    char *key;
    bool parsed;                /* doc holds the entry: its record is read */
    lf_entry_doc doc;
} key_op;

static void key_notify(lf_rop *op, lf_code code, const char *why) {
    key_op *k = (key_op *)op;
    k->cb(code, why, NULL, NULL, k->arg);
}

static void key_destroy(lf_rop *op) {
    key_op *k = (key_op *)op;
    lf_redis_cmd_free(op);
    if (k->parsed) lf_entry_doc_free(&k->doc);
    free(k->key);
    free(k);
}

/* {seq, line}: the entry the key names, parsed from the stored line; then
 * (a second call, the read script) its record as it is now -- the line is
 * packed, so only the client can tell whose it is. None for a tombstone
 * or a global entry. */
static void key_entry_reply(key_op *k, redisReply *r) {
    lf_redis *s = k->op.s;
    char msg[600], why[256];
    lf_buf line = LF_BUF_INIT;

    if (r->type != REDIS_REPLY_ARRAY) {
        lf_redis_errf(s, msg, sizeof msg, "key %s: %s", s->k_idem,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&k->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (r->elements == 0) {
        snprintf(msg, sizeof msg, "No entry with idempotency key %s", k->key);
        lf_redis_fail(&k->op, LF_NOT_FOUND, msg);
        return;
    }
    if (r->elements < 2 || !lf_redis_is_str(r->element[0]) ||
        !lf_redis_is_str(r->element[1])) {
        lf_redis_errf(s, msg, sizeof msg, "%s names an entry %s does not hold", s->k_idem,
                      s->k_log);
        lf_redis_fail(&k->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (lf_redis_unpack_line(s->pack, r->element[1]->str, r->element[1]->len, &line, why,
                             sizeof why) ||
        lf_entry_parse(line.p, line.len, &k->doc, why, sizeof why)) {
        lf_buf_free(&line);
        lf_redis_errf(s, msg, sizeof msg, "%s entry %s: %s", s->k_log, r->element[0]->str,
                      why);
        lf_redis_fail(&k->op, LF_UNAVAILABLE, msg);
        return;
    }
    lf_buf_free(&line);
    k->parsed = true;
    if (!k->doc.e.record_id) {
        k->cb(LF_OK, NULL, NULL, &k->doc.e, k->arg);
        key_destroy(&k->op);
        return;
    }
    const char *ids[] = {k->doc.e.record_id};
    lf_redis_format_read(&k->op, ids, 1);
    lf_redis_send(&k->op);
}

static void key_reply(lf_rop *op, redisReply *r) {
    key_op *k = (key_op *)op;
    lf_record *rec = NULL;
    char msg[600];

    if (!k->parsed) {
        key_entry_reply(k, r);
        return;
    }
    const redisReply *rr = lf_redis_read_one(r);
    if (rr && lf_redis_record_reply(op->s, k->doc.e.record_id, rr, &rec, msg, sizeof msg) ==
                  LF_OK && rec)
        lf_redis_cache_put(op->s, rec, lf_redis_reply_h(rr));
    k->cb(LF_OK, NULL, rec, &k->doc.e, k->arg);
    key_destroy(op);
}

static const lf_rop_type key_type = {
    .send = lf_redis_send,
    .reply = key_reply,
    .notify = key_notify,
    .destroy = key_destroy,
};

static void redis_find_key(lf_store *st, const char *key, lf_store_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    key_op *k = lf_xcalloc(1, sizeof *k);
    k->op.type = &key_type;
    k->op.s = s;
    k->op.script = LF_SCRIPT_FIND_KEY;
    k->cb = cb;
    k->arg = arg;
    const char *argv[] = {"EVALSHA", s->sha[LF_SCRIPT_FIND_KEY], "2", s->k_idem, s->k_log,
                          key, lf_redis_pack_known(s->pack)};
    k->key = lf_xstrdup(key);
    lf_redis_format(&k->op, 7, argv, NULL);
    lf_redis_send(&k->op);
}

/* ---- count (budget counters) -------------------------------------------- */

typedef struct count_op {
    lf_rop op;
    lf_count_cb *cb;
    void *arg;
} count_op;

static void count_notify(lf_rop *op, lf_code code, const char *why) {
    count_op *k = (count_op *)op;
    k->cb(code, why, 0, 0, k->arg);
}

static void count_destroy(lf_rop *op) {
    lf_redis_cmd_free(op);
    free(op);
}

/* A sorted set's score (a time in us, as the commit script writes it) as
 * an integer; 0 for one no int64 holds (a Redis written by something
 * else may hold anything: converting that is undefined in C). */
static int64_t score_us(const char *s) {
    int64_t us = 0;
    (void)lf_json_double_int(trunc(strtod(s, NULL)), &us);
    return us;
}

/* {n, earliest score or ''} */
static void count_reply(lf_rop *op, redisReply *r) {
    count_op *k = (count_op *)op;
    char msg[300];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || !lf_redis_is_str(r->element[1])) {
        lf_redis_errf(op->s, msg, sizeof msg, "count: %s",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(op, LF_UNAVAILABLE, msg);
        return;
    }
    int64_t oldest = r->element[1]->len ? score_us(r->element[1]->str) : 0;
    k->cb(LF_OK, NULL, (uint64_t)r->element[0]->integer, oldest, k->arg);
    count_destroy(op);
}

static const lf_rop_type count_type = {
    .send = lf_redis_send,
    .reply = count_reply,
    .notify = count_notify,
    .destroy = count_destroy,
};

/* A transition's counters: by its actor (a) and by the person behind it
 * (p), or both at once (b) when they are the same name -- the common case,
 * one zset member instead of two. So a count of a:N or p:N adds b:N's
 * (redis_commit.c). Counters an older version wrote have no b: all of
 * theirs are in a and p, and each is counted once either way. */
static void redis_count(lf_store *st, const char *key, int64_t since, lf_count_cb *cb,
                        void *arg) {
    lf_redis *s = (lf_redis *)st;
    char since_s[32], both[LF_COUNTER_KEY], *who;
    lf_buf k[6] = {LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT, LF_BUF_INIT};
    count_op *c = lf_xcalloc(1, sizeof *c);
    c->op.type = &count_type;
    c->op.s = s;
    c->op.script = LF_SCRIPT_COUNT;
    c->cb = cb;
    c->arg = arg;
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    snprintf(both, sizeof both, "%s", key);
    bool twice = (who = lf_redis_counter_who(both)) && (*who == 'a' || *who == 'p');
    const char *argv[11] = {"EVALSHA", s->sha[LF_SCRIPT_COUNT], twice ? "6" : "3"};
    int argc = 3;
    for (int i = 0; i < (twice ? 2 : 1); i++) {   /* key, then b's */
        if (i) *who = 'b';
        const char *name = i ? both : key;
        lf_redis_key_times(s, name, false, &k[3 * i]);
        lf_redis_key_times(s, name, true, &k[3 * i + 1]);
        lf_redis_key_count(s, name, &k[3 * i + 2]);
        for (int j = 0; j < 3; j++) argv[argc++] = k[3 * i + j].p;
    }
    argv[argc++] = since_s;
    lf_redis_format(&c->op, argc, argv, NULL);
    for (int i = 0; i < 6; i++) lf_buf_free(&k[i]);
    lf_redis_send(&c->op);
}

/* ---- the entered indexes ------------------------------------------------ *
 *
 * The timers' tick asks each timed state for the records that entered it
 * at or before a time (lf_list_query.entered_by). The commit script puts
 * every record it writes into its state's entered index (P ent:S, scored
 * by when the record entered S), but a record last written before that
 * script existed (an older loopforge) is not in it. A store begun since
 * says so from its first entry: P indexed holds "ent". On one an older
 * version began, the first ask about S lists the whole state, as it
 * always did, and puts each record of each page into the index at the
 * version it read (the ent_fill script: a record written since is where
 * its commit put it); the pass that reaches the end of the state adds
 * "ent:S" to P indexed, and later asks, of any process, read the index:
 * O(those records + log n), not O(state). A listing of the index asks
 * the list script to check P indexed (its {'unindexed'} starts the pass
 * instead) until the process knows it whole. */
struct lf_redis_entered {
    char *state;                /* the map's key; NULL: P timed (timed_of) */
    bool begun;                 /* a pass started at the state's first page */
    bool whole;                 /* known whole: P indexed said so, or a pass
                                   reached its last page, filling it */
    uint64_t listed_at;         /* in P states since epoch listed_at - 1 */
};

static lf_redis_entered *entered_of(lf_redis *s, const char *state) {
    lf_redis_entered *x = lf_map_get(&s->entered, state);
    if (!x) {
        x = lf_xcalloc(1, sizeof *x);
        x->state = lf_xstrdup(state);
        lf_map_put(&s->entered, x->state, x);
    }
    return x;
}

bool lf_redis_state_listed(lf_redis *s, const char *state) {
    const lf_redis_entered *x = lf_map_get(&s->entered, state);
    return x && x->listed_at == s->epoch + 1;
}

void lf_redis_state_listed_set(lf_redis *s, const char *state) {
    entered_of(s, state)->listed_at = s->epoch + 1;
}

/* P timed, the records with timers of their own, is the same kind of
 * index. The commit script scores each by the earliest due of them, but
 * older versions scored some by their updated_at, below their due: a
 * listing by due that goes down from due_by meets those too (and scores
 * them again, due_later), but one that goes up, earliest first, and stops
 * once a page is found (a page of the timers' listing) would meet them
 * out of order, or not at all after a cursor. So unless P indexed holds
 * "timed" (a store's first entry adds it), the first such listing reads
 * P timed whole once, scoring every record by its due, and its last page
 * adds it; a record an older process scores below its due later is
 * scored again when met (due_up_end). */
static lf_redis_entered *timed_of(lf_redis *s) {
    if (!s->timed) s->timed = lf_xcalloc(1, sizeof *s->timed);
    return s->timed;
}

/* What P indexed holds once x is whole: "ent:<state>", or "timed". */
static void indexed_member(const lf_redis_entered *x, lf_buf *b) {
    lf_buf_reset(b);
    lf_buf_puts(b, x->state ? "ent:" : "timed");
    if (x->state) lf_buf_puts(b, x->state);
}

static void entered_free(lf_redis *s) {
    lf_map *m = &s->entered;
    free(s->timed);
    for (size_t i = 0; i < lf_map_span(m); i++) {
        lf_redis_entered *x = lf_map_val(m, i);
        if (!x) continue;
        free(x->state);
        free(x);
    }
    lf_map_free(m);
}

typedef struct fill_op {
    lf_rop op;
    lf_redis_entered *x;        /* NULL: a stale entry's removal */
} fill_op;

/* A fill that did not happen: the next pass fills the index again. */
static void fill_notify(lf_rop *op, lf_code code, const char *why) {
    fill_op *f = (fill_op *)op;
    (void)code, (void)why;
    if (f->x) f->x->whole = f->x->begun = false;
}

static void fill_destroy(lf_rop *op) {
    lf_redis_cmd_free(op);
    free(op);
}

static void fill_reply(lf_rop *op, redisReply *r) {
    fill_op *f = (fill_op *)op;
    if (r->type != REDIS_REPLY_INTEGER && f->x) f->x->whole = f->x->begun = false;
    fill_destroy(op);
}

static const lf_rop_type fill_type = {
    .send = lf_redis_send,
    .reply = fill_reply,
    .notify = fill_notify,
    .destroy = fill_destroy,
};

/* Takes id out of an entered index (a stale entry). */
static void entered_forget(lf_redis *s, const char *index, const char *id) {
    fill_op *f = lf_xcalloc(1, sizeof *f);
    f->op.type = &fill_type;
    f->op.s = s;
    f->op.script = -1;
    f->x = NULL;
    const char *argv[] = {"ZREM", index, id};
    lf_redis_format(&f->op, 3, argv, NULL);
    lf_redis_send(&f->op);
}

/* A record's score in a zset the fill script writes: false leaves it out. */
typedef bool fill_score(const lf_record *r, int64_t by, int64_t *score);

/* When it entered its state (a closed one is left out, as the commit
 * leaves it out). */
static bool entered_at(const lf_record *r, int64_t by, int64_t *score) {
    (void)by;
    *score = 0;
    if (r->closed_at[0]) return false;
    (void)lf_record_entered(r, score);
    return true;
}

/* Its earliest due, when a listing of what is due by `by` found it though
 * it is not (by 0: any it has): an older version scored it by its
 * updated_at. */
static bool due_later(const lf_record *r, int64_t by, int64_t *score) {
    *score = r->timers_due;
    return r->timers_due > by;
}

/* recs[0..n) that score() picks into the zset `index`, each only if it is
 * still at the version read (the fill script; a commit since put it where
 * it belongs): a page of a full listing of x's state into its entered
 * index, or of P timed into itself by due (x->state NULL), or (x NULL)
 * records an older version scored in P timed by their due. Nothing is
 * sent for none picked, but for x's last page, which -- of a pass from
 * the first -- adds x to P indexed. */
static void fill_send(lf_redis *s, lf_redis_entered *x, const char *index,
                      lf_record *const *recs, size_t n, fill_score *score, int64_t by,
                      bool last) {
    size_t argc = 0;
    const char **argv = lf_xmalloc((7 + 3 * n) * sizeof *argv);
    char (*nums)[24] = lf_xmalloc((2 * n + 1) * sizeof *nums);
    bool mark = x && last && x->begun;
    lf_buf member = LF_BUF_INIT;
    if (mark) indexed_member(x, &member);
    argv[argc++] = "EVALSHA";
    argv[argc++] = s->sha[LF_SCRIPT_ENT_FILL];
    argv[argc++] = mark ? "2" : "1";
    argv[argc++] = index;
    if (mark) argv[argc++] = s->k_indexed;
    argv[argc++] = s->k_rec;
    argv[argc++] = mark ? member.p : "";
    for (size_t i = 0; i < n; i++) {
        int64_t at;
        if (!score(recs[i], by, &at)) continue;
        snprintf(nums[2 * i], sizeof *nums, "%" PRIu64, recs[i]->version);
        snprintf(nums[2 * i + 1], sizeof *nums, "%" PRId64, at);
        argv[argc++] = recs[i]->id;
        argv[argc++] = nums[2 * i];
        argv[argc++] = nums[2 * i + 1];
    }
    if (argc > 6u + mark || x) {
        fill_op *f = lf_xcalloc(1, sizeof *f);
        f->op.type = &fill_type;
        f->op.s = s;
        f->op.script = LF_SCRIPT_ENT_FILL;
        f->x = x;
        lf_redis_format(&f->op, (int)argc, argv, NULL);
        lf_redis_send(&f->op);
    }
    free(argv);
    free(nums);
    lf_buf_free(&member);
    /* Redis runs one connection's commands in order: a list of the index
     * sent from now on reads it filled (a fill that fails says so). */
    if (x && last && x->begun) x->whole = true;
}

/* ---- list --------------------------------------------------------------- */

/* A page is gathered by calls of the list script of at most LIST_CALL
 * records each: a script call blocks every other client of Redis while
 * it runs, and 1,000 records with long histories took 10-16 ms -- a
 * commit's p99 under load was that wait. */
#define LIST_CALL 100

typedef struct list_op {
    lf_rop op;
    lf_list_cb *cb;
    void *arg;
    size_t limit;
    char *index;                /* the zset, for messages */
    lf_record **recs;           /* gathered so far (NULL: being read) */
    size_t n;
    bool entered;               /* index is an entered index (ent:S) */
    int64_t keep_by;            /* the tick's listing of what can be due,
                                   which it moves next: the records read
                                   that entered their state by then join
                                   the cache (INT64_MAX: all; 0: none), so
                                   each move reads nothing again */
    char min[24];               /* the lowest score listed: "-inf", or
                                   "(" and entered_after; or ">" and the
                                   highest, entered_by (oldest first) */
    lf_redis_entered *fill;     /* a listing of S that fills its entered
                                   index (or of P timed, scoring it by due) */
    bool hide;                  /* (fill) oldest first was asked: the records
                                   read are not handed over, an empty page
                                   with the fill's cursor is */
    int64_t due_by;             /* a listing of P timed by due: a record in it
                                   that is not due is scored again (fill_send) */
    int64_t *scores;            /* P timed earliest first (due_up_end): each
                                   record's score */
    lf_redis_entered *known;    /* the index listed, not known whole here:
                                   the list script checks P indexed (an
                                   {'unindexed'} starts a pass filling it) */
    bool oldest;                /* (known) oldest first was asked: a pass
                                   hides what it reads (hide) */
    int64_t fill_keep;          /* (known) a pass's keep_by */
    /* The last call's records the cache did not hold, being read. */
    char (*miss)[LF_ID_LEN + 1];
    size_t *miss_at;            /* their places in recs */
    size_t nmiss;
    bool more;                  /* the index goes on after the last call's */
    bool merge;                 /* index is P states: merge the state indexes */
    char *repo;                 /* (merge) a repo's records: its sr: indexes */
    char cursor[LF_TS_LEN + LF_ID_LEN + 2];
} list_op;

static void list_call(list_op *l, const char *score, const char *cid);
static void states_fill(list_op *l, const char *cursor);
static void fill_pass(list_op *l, const char *cursor);
static int cursor_parse(const char *cursor, char score[24], const char **id);

/* How many records the next call asks for. */
static size_t list_call_size(const list_op *l) {
    size_t want = l->limit - l->n;
    return want < LIST_CALL ? want : LIST_CALL;
}

static void list_notify(lf_rop *op, lf_code code, const char *why) {
    list_op *l = (list_op *)op;
    l->cb(code, why, NULL, 0, NULL, l->arg);
}

static void list_destroy(lf_rop *op) {
    list_op *l = (list_op *)op;
    lf_redis_cmd_free(op);
    for (size_t i = 0; i < l->n; i++) lf_record_free(l->recs[i]);
    free(l->recs);
    free(l->scores);
    free(l->miss);
    free(l->miss_at);
    free(l->index);
    free(l->repo);
    free(l);
}

/* "TS|ID": where a record is in an index, as memdb's cursors (pages
 * move between stores). */
static void cursor_of(char out[LF_TS_LEN + LF_ID_LEN + 2], int64_t us, const char *id) {
    char ts[LF_TS_LEN + 1];
    lf_ts_format(us, ts);
    snprintf(out, LF_TS_LEN + LF_ID_LEN + 2, "%s|%s", ts, id);
}

/* A page of P timed earliest first, read: the page a listing stops on
 * needs each record scored by its earliest due, which an older process
 * may not have written (timed_of). Each record scored below its due is
 * scored by it (fill_send, at the version read), so that the walk meets
 * it again at its place; those of them after the page's last rightly
 * scored one are held back, so that nothing after the page is due before
 * its last: the cursor is that one's place. (A page with none rightly
 * scored is handed over whole: were the scoring to fail, holding it back
 * would read the same page for ever.) */
static void due_up_end(list_op *l) {
    lf_redis *s = l->op.s;
    lf_record **moved = lf_xmalloc((l->n + 1) * sizeof *moved);
    size_t nmoved = 0, keep = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->scores[i] < l->recs[i]->timers_due) moved[nmoved++] = l->recs[i];
        else keep = i + 1;
    }
    if (nmoved) fill_send(s, NULL, s->k_timed, moved, nmoved, due_later, 0, false);
    free(moved);
    if (!keep || keep == l->n) return;
    for (size_t i = keep; i < l->n; i++) lf_record_free(l->recs[i]);
    l->n = keep;
    l->more = true;
    cursor_of(l->cursor, l->scores[keep - 1], l->recs[keep - 1]->id);
}

/* The page so far is whole: the next call from the last record, until
 * the page is full or the index ends. */
static void list_next(list_op *l) {
    lf_redis *s = l->op.s;
    char score[24];
    const char *cid;
    if (l->more && l->n < l->limit && cursor_parse(l->cursor, score, &cid) == 0) {
        list_call(l, score, cid);
        return;
    }
    if (l->fill) {              /* into the state's entered index, or P timed */
        lf_buf key = LF_BUF_INIT;
        if (l->fill->state) lf_redis_key_entered(s, l->fill->state, &key);
        else lf_buf_puts(&key, s->k_timed);
        fill_send(s, l->fill, key.p, l->recs, l->n, l->fill->state ? entered_at : due_later,
                  0, !l->more);
        lf_buf_free(&key);
    }
    if (l->due_by) fill_send(s, NULL, s->k_timed, l->recs, l->n, due_later, l->due_by, false);
    if (l->scores) due_up_end(l);
    char filled[sizeof l->cursor + 1];
    if (l->hide) snprintf(filled, sizeof filled, "f%s", l->more ? l->cursor : "");
    l->cb(LF_OK, NULL, (const lf_record *const *)l->recs, l->hide ? 0 : l->n,
          l->hide ? filled : l->more ? l->cursor : NULL, l->arg);
    list_destroy(&l->op);
}

/* Whether a record the listing read joins the cache (keep_by). */
static bool keeps(const list_op *l, const lf_record *rec) {
    int64_t at;
    return l->keep_by == INT64_MAX ||
           (l->keep_by && lf_record_entered(rec, &at) && at <= l->keep_by);
}

/* The read script's records for the misses, in order. One deleted since
 * the index named it is left out of the page. */
static void list_read(list_op *l, const redisReply *r) {
    lf_redis *s = l->op.s;
    char msg[600];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != l->nmiss) {
        lf_redis_errf(s, msg, sizeof msg, "reading the records of index %s: %s", l->index,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&l->op, LF_UNAVAILABLE, msg);
        return;
    }
    for (size_t k = 0; k < l->nmiss; k++) {
        lf_record *rec = NULL;
        lf_code code = lf_redis_record_reply(s, l->miss[k], r->element[k], &rec, msg, sizeof msg);
        if (code != LF_OK && code != LF_NOT_FOUND) {
            lf_redis_fail(&l->op, code, msg);
            return;
        }
        if (rec && rec == lf_redis_cache_get(s, l->miss[k])) rec = lf_record_dup(rec);
        else if (rec && keeps(l, rec))
            lf_redis_cache_put(s, lf_record_dup(rec), lf_redis_reply_h(r->element[k]));
        l->recs[l->miss_at[k]] = rec;
    }
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->scores && l->recs[i]) l->scores[n] = l->scores[i];
        if (l->recs[i]) l->recs[n++] = l->recs[i];
    }
    l->n = n;
    l->nmiss = 0;
    list_next(l);
}

/* {id, score, {d, v, h}, ...}: each record the cache holds is copied to
 * the page, the others are read (list_read), in one call. */
static void list_reply(lf_rop *op, redisReply *r) {
    list_op *l = (list_op *)op;
    lf_redis *s = op->s;
    char msg[600], why[600] = "";
    size_t asked = list_call_size(l), got;

    if (l->nmiss) {
        list_read(l, r);
        return;
    }
    if (l->merge && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        lf_redis_is_str(r->element[0]) && strcmp(r->element[0]->str, "nostates") == 0) {
        states_fill(l, "0");
        return;
    }
    if (l->known && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        lf_redis_is_str(r->element[0]) && strcmp(r->element[0]->str, "unindexed") == 0) {
        fill_pass(l, NULL);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 3) {
        lf_redis_errf(s, msg, sizeof msg, "index %s: %s", l->index,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&l->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (l->known) {             /* P indexed says it is whole */
        l->known->whole = true;
        l->known = NULL;
    }
    got = r->elements / 3;      /* one more than asked: there is more */
    for (size_t i = 0; i < got && i < asked; i++) {
        const redisReply *id = r->element[3 * i], *sc = r->element[3 * i + 1],
                         *g = r->element[3 * i + 2];
        lf_record *rec = NULL;
        lf_code code = lf_redis_is_str(id) && lf_redis_is_str(sc) && id->len <= LF_ID_LEN
                           ? lf_redis_record_reply(s, id->str, g, &rec, why, sizeof why)
                           : LF_UNAVAILABLE;
        if (code == LF_UNAVAILABLE && !why[0]) snprintf(why, sizeof why, "not a record id");
        if (code != LF_OK) {
            /* An entered index may name a record an older loopforge
             * deleted (its commits do not keep the index): this list
             * fails, the next does not. */
            if (code == LF_NOT_FOUND && l->entered) entered_forget(s, l->index, id->str);
            lf_redis_errf(s, msg, sizeof msg,
                          "index %s lists %s, but %srec:{%s} "
                          "does not hold it: %s",
                          l->index, lf_redis_is_str(id) ? id->str : "?", s->url.prefix,
                          lf_redis_is_str(id) ? id->str : "?",
                          code == LF_NOT_FOUND ? "no record there" : why);
            lf_redis_fail(&l->op, LF_UNAVAILABLE, msg);
            return;
        }
        if (!rec) {             /* not cached: read it */
            memcpy(l->miss[l->nmiss], id->str, id->len + 1);
            l->miss_at[l->nmiss++] = l->n;
        } else {
            rec = lf_record_dup(rec);   /* the page's own */
        }
        /* The cursor: where this record is in the index. */
        int64_t us = score_us(sc->str);
        if (l->scores) l->scores[l->n] = us;
        l->recs[l->n++] = rec;
        cursor_of(l->cursor, us, id->str);
    }
    l->more = got > asked;
    if (l->nmiss) {
        const char **ids = lf_xmalloc(l->nmiss * sizeof *ids);
        for (size_t k = 0; k < l->nmiss; k++) ids[k] = l->miss[k];
        lf_redis_format_read(&l->op, ids, l->nmiss);
        free(ids);
        lf_redis_send(&l->op);
        return;
    }
    list_next(l);
}

static const lf_rop_type list_type = {
    .send = lf_redis_send,
    .reply = list_reply,
    .notify = list_notify,
    .destroy = list_destroy,
};

/* ---- the set of states (a store an older version began) --------------- */

typedef struct states_op {
    lf_rop op;
    list_op *l;                 /* the list call to send again after */
} states_op;

static void states_notify(lf_rop *op, lf_code code, const char *why) {
    states_op *f = (states_op *)op;
    lf_redis_fail(&f->l->op, code, why);
}

static void states_destroy(lf_rop *op) {
    lf_redis_cmd_free(op);
    free(op);
}

/* The next SCAN cursor: "0" at the end, when the list call goes again. */
static void states_reply(lf_rop *op, redisReply *r) {
    states_op *f = (states_op *)op;
    list_op *l = f->l;
    char msg[600];
    if (!lf_redis_is_str(r)) {
        lf_redis_errf(op->s, msg, sizeof msg, "filling %s: %s", l->index,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(op, LF_UNAVAILABLE, msg);
        return;
    }
    if (strcmp(r->str, "0") != 0) {
        states_fill(l, r->str);
    } else {
        l->op.script = LF_SCRIPT_LIST;
        lf_redis_send(&l->op);  /* its call, as formatted */
    }
    states_destroy(op);
}

static const lf_rop_type states_type = {
    .send = lf_redis_send,
    .reply = states_reply,
    .notify = states_notify,
    .destroy = states_destroy,
};

/* A store an older version began keeps no set of its states: the first
 * list that merges the state indexes (every record, or a repo's) fills
 * it, a SCAN step a call (never KEYS), then sends its call again. Once,
 * for every process: the set says it is whole. */
static void states_fill(list_op *l, const char *cursor) {
    lf_redis *s = l->op.s;
    states_op *f = lf_xcalloc(1, sizeof *f);
    lf_buf pat = LF_BUF_INIT;
    f->op.type = &states_type;
    f->op.s = s;
    f->op.script = LF_SCRIPT_STATES_FILL;
    f->l = l;
    /* the state indexes' names up to the state ("P state:"), as a glob
     * that matches itself only: its *, ?, [, ] and \ escaped (a prefix
     * may hold them) */
    lf_buf name = LF_BUF_INIT;
    char skip[LF_INT_CHARS];
    lf_redis_key_index(s, "", NULL, &name);
    for (size_t i = 0; i < name.len; i++) {
        if (strchr("*?[]\\", name.p[i])) lf_buf_putc(&pat, '\\');
        lf_buf_putc(&pat, name.p[i]);
    }
    lf_buf_putc(&pat, '*');
    lf_fmt_int((int64_t)name.len, skip);
    lf_buf_free(&name);
    const char *argv[] = {"EVALSHA", s->sha[LF_SCRIPT_STATES_FILL], "1", l->index, cursor,
                          pat.p,     skip};
    lf_redis_format(&f->op, 7, argv, NULL);
    lf_buf_free(&pat);
    lf_redis_send(&f->op);
}

/* "updated_at|id", as memdb's cursors: pages move between stores. */
static int cursor_parse(const char *cursor, char score[24], const char **id) {
    int64_t us;
    char ts[LF_TS_LEN + 1];
    const char *bar = strchr(cursor, '|');
    if (!bar || bar - cursor != LF_TS_LEN || !bar[1]) return -1;
    memcpy(ts, cursor, LF_TS_LEN);
    ts[LF_TS_LEN] = '\0';
    if (lf_ts_parse(ts, &us) < 0) return -1;
    snprintf(score, 24, "%" PRId64, us);
    *id = bar + 1;
    return 0;
}

/* One call of the list script: the next (at most) LIST_CALL records of
 * the page after (score, cid), and one more if there are. */
static void list_call(list_op *l, const char *score, const char *cid) {
    lf_redis *s = l->op.s;
    char limit[24];
    lf_buf pre = LF_BUF_INIT;   /* the merged indexes' names before the state */
    snprintf(limit, sizeof limit, "%zu", list_call_size(l));
    if (l->repo) key_cat(s, &pre, "sr:", (char *)NULL);
    else if (l->merge) lf_redis_key_index(s, "", NULL, &pre);
    const char *argv[] = {"EVALSHA", s->sha[LF_SCRIPT_LIST], "1",    l->index, score, cid,
                          limit,     s->k_rec,               l->min, pre.p,    l->repo};
    l->op.script = LF_SCRIPT_LIST;
    if (l->known) {     /* whole if P indexed holds "ent" or "ent:S" ("timed") */
        lf_buf one = LF_BUF_INIT;
        indexed_member(l->known, &one);
        const char *checked[] = {"EVALSHA", s->sha[LF_SCRIPT_LIST],
                                 "2",       l->index,
                                 s->k_indexed, score,
                                 cid,       limit,
                                 s->k_rec,  l->min,
                                 l->known->state ? "ent" : "timed", one.p};
        lf_redis_format(&l->op, 12, checked, NULL);
        lf_buf_free(&one);
    } else {
        lf_redis_format(&l->op, l->repo ? 11 : l->merge ? 10 : 9, argv, NULL);
    }
    lf_buf_free(&pre);
    lf_redis_send(&l->op);
}

/* A listing of an index not known whole (l->known: a state's entered
 * index, or P timed earliest first): a pass over the whole of what fills
 * it instead (the state's index; P timed itself, down), from its first
 * page (cursor NULL) or on from a pass's cursor, putting each record in
 * at the version read; its pages handed over, or empty with the pass's
 * cursor when oldest first was asked. */
static void fill_pass(list_op *l, const char *cursor) {
    lf_redis *s = l->op.s;
    lf_redis_entered *x = l->known;
    char score[24] = "";
    const char *cid = "";
    if (x->state) {
        lf_buf key = LF_BUF_INIT;
        lf_redis_key_index(s, x->state, NULL, &key);
        free(l->index);
        l->index = lf_buf_steal(&key);
        l->entered = false;
    }
    free(l->scores);
    l->scores = NULL;
    l->known = NULL;
    l->fill = x;
    l->hide = l->oldest;
    l->keep_by = l->fill_keep;
    if (!cursor) x->begun = true;
    snprintf(l->min, sizeof l->min, "-inf");
    if (cursor) cursor_parse(cursor, score, &cid);
    list_call(l, score, cid);
}

static void redis_list(lf_store *st, const lf_list_query *q, lf_list_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    char score[24] = "";
    const char *cid = "";
    list_op *l;
    lf_buf key = LF_BUF_INIT;

    /* Oldest first while a fill is under way, the cursor is "f" and the
     * fill's own ("f" alone: the fill is done, the index from its start) */
    const char *cur = q->cursor;
    bool filling = q->oldest_first && cur && cur[0] == 'f';
    if (filling) cur = cur[1] ? cur + 1 : NULL;
    if (cur && cursor_parse(cur, score, &cid) < 0) {
        cb(LF_INVALID_REQUEST, "invalid list cursor", NULL, 0, NULL, arg);
        return;
    }
    l = lf_xcalloc(1, sizeof *l);
    l->op.type = &list_type;
    l->op.s = s;
    l->op.script = LF_SCRIPT_LIST;
    l->cb = cb;
    l->arg = arg;
    l->limit = q->limit ? q->limit : 100;
    if (l->limit > LIST_MAX) l->limit = LIST_MAX;
    l->recs = lf_xmalloc(l->limit * sizeof *l->recs);
    l->miss = lf_xmalloc(LIST_CALL * sizeof *l->miss);
    l->miss_at = lf_xmalloc(LIST_CALL * sizeof *l->miss_at);
    snprintf(l->min, sizeof l->min, "-inf");
    if (q->entered_by && q->state && !q->parent && !q->timed && !q->repo) {
        lf_redis_entered *x = entered_of(s, q->state);
        l->oldest = q->oldest_first;
        l->fill_keep = q->entered_after ? 0 : q->entered_by;
        if (!x->whole) l->known = x;
        /* A pass filling it goes on from its cursor (newest first: any;
         * oldest first: "f" and where) */
        if (!x->whole && cur && (!q->oldest_first || filling)) {
            fill_pass(l, cur);
            return;
        }
        l->entered = true;
        /* (not a window's: what entered lately) */
        l->keep_by = q->entered_after ? 0 : INT64_MAX;
        lf_redis_key_entered(s, q->state, &key);
        l->index = lf_buf_steal(&key);
        if (q->oldest_first) {
            /* From (entered_after, above any id) up to entered_by;
             * a fill's cursor: the fill is done, from the start */
            snprintf(l->min, sizeof l->min, ">%" PRId64, q->entered_by);
            if (!cur || filling) {
                if (q->entered_after)
                    snprintf(score, sizeof score, "%" PRId64, q->entered_after);
                else score[0] = '\0';
                cid = "~";
            }
            list_call(l, score, cid);
            return;
        }
        /* At or before entered_by: from (entered_by, above any id). */
        if (q->entered_after) snprintf(l->min, sizeof l->min, "(%" PRId64, q->entered_after);
        if (!cur) snprintf(score, sizeof score, "%" PRId64, q->entered_by);
        list_call(l, score, cur ? cid : "~");
        return;
    }
    if (q->timed && q->due_by && q->oldest_first) {
        lf_redis_entered *x = timed_of(s);
        l->keep_by = l->fill_keep = INT64_MAX;
        l->oldest = true;
        l->index = lf_xstrdup(s->k_timed);
        if (!x->whole || (filling && cur)) l->known = x;
        if (filling && cur) {       /* a pass scoring it by due, on */
            fill_pass(l, cur);
            return;
        }
        /* From due_after (above any id at the time before it) up to
         * due_by */
        l->scores = lf_xmalloc(l->limit * sizeof *l->scores);
        snprintf(l->min, sizeof l->min, ">%" PRId64, q->due_by);
        if (!cur) {
            if (q->due_after) snprintf(score, sizeof score, "%" PRId64, q->due_after - 1);
            cid = "~";
        }
        list_call(l, score, cid);
        return;
    }
    if (q->timed && q->due_by) {
        l->keep_by = INT64_MAX;
        l->due_by = q->due_by;
        if (!cur) {         /* scored by their earliest due: from due_by down */
            snprintf(score, sizeof score, "%" PRId64, q->due_by);
            cid = "~";
        }
    }
    if (q->timed) lf_buf_puts(&key, s->k_timed);
    else if (q->parent) lf_redis_key_children(s, q->parent, &key);
    else lf_redis_key_index(s, q->state, q->repo, &key);
    if (!q->state && !q->timed && !q->parent) {
        l->merge = true;
        if (q->repo) l->repo = lf_xstrdup(q->repo);
    }
    l->index = lf_buf_steal(&key);
    list_call(l, score, cid);
}

/* ---- audit -------------------------------------------------------------- */

typedef struct audit_op {
    lf_rop op;
    lf_audit_cb *cb;
    void *arg;
    char *id;                   /* NULL: the global log */
    uint64_t after;
    size_t limit;
    lf_buf arena;               /* the page's packed lines, unpacked */
} audit_op;

static void audit_notify(lf_rop *op, lf_code code, const char *why) {
    audit_op *a = (audit_op *)op;
    a->cb(code, why, NULL, NULL, 0, a->after, a->arg);
}

static void audit_destroy(lf_rop *op) {
    audit_op *a = (audit_op *)op;
    lf_redis_cmd_free(op);
    lf_buf_free(&a->arena);
    free(a->id);
    free(a);
}

static void audit_format(audit_op *a) {
    lf_redis *s = a->op.s;
    lf_buf k1 = LF_BUF_INIT, k3 = LF_BUF_INIT;
    char after[24], limit[24];
    snprintf(after, sizeof after, "%" PRIu64, a->after);
    snprintf(limit, sizeof limit, "%zu", a->limit);
    if (a->id) {
        lf_redis_key_reclog(s, a->id, &k1);
        lf_redis_key_rec(s, a->id, &k3);
        const char *argv[] = {"EVALSHA", s->sha[LF_SCRIPT_AUDIT_REC], "3", k1.p, s->k_log,
                              k3.p, after, limit, lf_redis_pack_known(s->pack)};
        lf_redis_format(&a->op, 9, argv, NULL);
    } else {
        const char *argv[] = {"EVALSHA", s->sha[LF_SCRIPT_AUDIT_LOG], "2", s->k_head,
                              s->k_log, after, limit, lf_redis_pack_known(s->pack)};
        lf_redis_format(&a->op, 8, argv, NULL);
    }
    lf_buf_free(&k1);
    lf_buf_free(&k3);
}

/* Answers the page: v[0..n) are its stored values, each a line or a
 * packed one (redis_pack.c), unpacked into a->arena for the callback. A
 * frame that does not unpack is passed on as it is stored: the chain
 * check then reports that entry as malformed, as it would any damaged
 * line. head: the hash P head names, when the page ends with the head's
 * line, else NULL: a last line that is not that one (changed, its hash
 * made again: no later line's prev shows it) fails the page. */
static void audit_deliver(audit_op *a, const redisReply **v, size_t n, uint64_t last,
                          const char *head) {
    lf_redis *s = a->op.s;
    const char **lines = lf_xmalloc((n + 1) * sizeof *lines);
    size_t *lens = lf_xmalloc((n + 1) * sizeof *lens), *at = lf_xmalloc((n + 1) * sizeof *at);
    char why[128];
    for (size_t i = 0; i < n; i++) {        /* offsets first: the arena may move */
        size_t was = a->arena.len;
        at[i] = SIZE_MAX;
        lens[i] = v[i]->len;
        if (lf_redis_packed(v[i]->str, v[i]->len) &&
            lf_redis_unpack_line(s->pack, v[i]->str, v[i]->len, &a->arena, why,
                                 sizeof why) == 0) {
            at[i] = was;
            lens[i] = a->arena.len - was;
        }
    }
    for (size_t i = 0; i < n; i++) lines[i] = at[i] == SIZE_MAX ? v[i]->str : a->arena.p + at[i];
    char h[LF_HASH_LEN + 1], msg[600] = "";
    if (head && n && lf_entry_self_hash(lines[n - 1], lens[n - 1], h) == 0 &&
        strcmp(h, head) != 0)
        lf_redis_errf(s, msg, sizeof msg,
                      "seq %" PRIu64 ": hash %.12s... is not the one %s names (%.12s...):"
                      " the log's last entry was changed",
                      last, h, s->k_head, head);
    else
        a->cb(LF_OK, NULL, lines, lens, n, n ? last : a->after, a->arg);
    free(lines);
    free(lens);
    free(at);
    free(v);
    if (msg[0]) lf_redis_fail(&a->op, LF_UNAVAILABLE, msg);
    else audit_destroy(&a->op);
}

/* {head, last, head hash, line...}: the lines for seq after+1 .. last. A missing
 * line (deleted behind our back) is skipped, so the chain check sees the
 * gap in seq; missing lines at the very end of the log would leave no
 * gap to see, so they are an error of their own. */
static void audit_log_reply(audit_op *a, redisReply *r) {
    lf_redis *s = a->op.s;
    char msg[600];
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_INTEGER || !lf_redis_is_str(r->element[2])) {
        lf_redis_errf(s, msg, sizeof msg, "audit log: %s",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&a->op, LF_UNAVAILABLE, msg);
        return;
    }
    uint64_t head = (uint64_t)r->element[0]->integer;
    uint64_t last = (uint64_t)r->element[1]->integer, seen = 0;
    size_t n = 0, k = r->elements - 3;
    const redisReply **v = lf_xmalloc((k + 1) * sizeof *v);
    for (size_t i = 0; i < k; i++) {
        const redisReply *l = r->element[i + 3];
        if (!lf_redis_is_str(l)) continue;
        v[n++] = l;
        seen = a->after + i + 1;
    }
    if (last > a->after && seen < last && last == head) {
        lf_redis_errf(s, msg, sizeof msg,
                      "%s has no entries %" PRIu64 "..%" PRIu64
                      " although %s is at seq %" PRIu64 " (deleted?)",
                      s->k_log, (seen ? seen : a->after) + 1, head, s->k_head, head);
        free(v);
        lf_redis_fail(&a->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (n == 0 && last > a->after) {
        /* A whole page gone: look further, so the gap shows. */
        free(v);
        a->after = last;
        audit_format(a);
        lf_redis_send(&a->op);
        return;
    }
    audit_deliver(a, v, n, seen, seen == head ? r->element[2]->str : NULL);
}

/* {0} for an unknown record, else {1, seq, line, ...}. */
static void audit_rec_reply(audit_op *a, redisReply *r) {
    lf_redis *s = a->op.s;
    char msg[600];
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->elements % 2 == 0 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        lf_redis_errf(s, msg, sizeof msg, "audit of %s: %s", a->id,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&a->op, LF_UNAVAILABLE, msg);
        return;
    }
    if (r->element[0]->integer == 0) {
        snprintf(msg, sizeof msg, "Record not found: %s", a->id);
        lf_redis_fail(&a->op, LF_NOT_FOUND, msg);
        return;
    }
    size_t k = (r->elements - 1) / 2;
    uint64_t last = a->after;
    const redisReply **v = lf_xmalloc((k + 1) * sizeof *v);
    for (size_t i = 0; i < k; i++) {
        const redisReply *seq = r->element[1 + 2 * i], *l = r->element[2 + 2 * i];
        if (!lf_redis_is_str(seq) || !lf_redis_is_str(l)) {
            lf_redis_errf(s, msg, sizeof msg,
                          "%s has no entry %s, which "
                          "%srec:{%s} lists",
                          s->k_log, lf_redis_is_str(seq) ? seq->str : "?", s->url.prefix,
                          a->id);
            free(v);
            lf_redis_fail(&a->op, LF_UNAVAILABLE, msg);
            return;
        }
        v[i] = l;
        last = strtoull(seq->str, NULL, 10);
    }
    audit_deliver(a, v, k, last, NULL);
}

static void audit_reply(lf_rop *op, redisReply *r) {
    audit_op *a = (audit_op *)op;
    if (a->id) audit_rec_reply(a, r);
    else audit_log_reply(a, r);
}

static const lf_rop_type audit_type = {
    .send = lf_redis_send,
    .reply = audit_reply,
    .notify = audit_notify,
    .destroy = audit_destroy,
};

static void redis_audit(lf_store *st, const char *record_id, uint64_t after, size_t limit,
                        lf_audit_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    audit_op *a = lf_xcalloc(1, sizeof *a);
    a->op.type = &audit_type;
    a->op.s = s;
    a->op.script = record_id ? LF_SCRIPT_AUDIT_REC : LF_SCRIPT_AUDIT_LOG;
    a->cb = cb;
    a->arg = arg;
    a->after = after;
    a->limit = limit ? limit : 1000;
    if (a->limit > AUDIT_MAX) a->limit = AUDIT_MAX;
    if (record_id) a->id = lf_xstrdup(record_id);
    audit_format(a);
    lf_redis_send(&a->op);
}

/* ---- open / free -------------------------------------------------------- */

void lf_redis_destroy(lf_redis *s) {
    if (s->t_connect) event_free(s->t_connect);
    if (s->t_cmd) event_free(s->t_cmd);
    if (s->t_retry) event_free(s->t_retry);
    cache_free(s);
    entered_free(s);
    lf_redis_recq_free(s);
    lf_redis_pack_free(s->pack);
    lf_buf_free(&s->packed);
    for (size_t i = 0; i < sizeof s->commit_keys / sizeof *s->commit_keys; i++)
        lf_buf_free(&s->commit_keys[i]);
    for (size_t i = 0; i < sizeof s->commit_counters / sizeof *s->commit_counters; i++)
        lf_buf_free(&s->commit_counters[i]);
    free(s->k_head);
    free(s->k_log);
    free(s->k_ref);
    free(s->k_idem);
    free(s->k_rec);
    free(s->k_timed);
    free(s->k_indexed);
    lf_redis_url_free(&s->url);
    free(s);
}

static void redis_free(lf_store *st) {
    lf_redis *s = (lf_redis *)st;
    char why[600];
    if (!s) return;
    s->closing = true;
    lf_redis_errf(s, why, sizeof why, "the store was closed");
    lf_redis_recq_fail_all(s, why);
    lf_redis_conn_close(s);
    if (s->busy == 0) lf_redis_destroy(s);
}

static struct timeval ms_tv(int ms) {
    return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

/* One bounded, synchronous look at the server before the store exists,
 * so that a wrong address, password or db fails the open with a clear
 * message instead of every later request. Never on the request path:
 * requests only ever use the asynchronous connection. */
static int probe(const lf_redis_url *u, char *err, size_t errlen) {
    redisContext *c = lf_xptr(
        u->path
            ? redisConnectUnixWithTimeout(u->path, ms_tv(u->connect_timeout_ms))
            : redisConnectWithTimeout(u->host, u->port, ms_tv(u->connect_timeout_ms)));
    redisReply *r = NULL;
    char db[16];
    int rc = -1;

    if (c->err) {
        snprintf(err, errlen, "redis %s: cannot connect: %s", u->addr, c->errstr);
        goto out;
    }
    redisSetTimeout(c, ms_tv(u->timeout_ms));
    if (u->password) {
        const char *argv[] = {"AUTH", u->user ? u->user : u->password, u->password};
        r = redisCommandArgv(c, u->user ? 3 : 2, argv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis %s: AUTH failed: %s", u->addr,
                     r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
    }
    snprintf(db, sizeof db, "%d", u->db);
    const char *argv[] = {"SELECT", db};
    r = redisCommandArgv(c, 2, argv, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s: SELECT %d failed: %s", u->addr, u->db,
                 r ? r->str : c->errstr);
        goto out;
    }
    rc = 0;
out:
    if (r) freeReplyObject(r);
    if (c) redisFree(c);
    return rc;
}

static const lf_store_type redis_type = {
    .scheme = "redis",
    .get = redis_get,
    .get_for_update = redis_get_for_update,
    .find_by_ref = redis_find_by_ref,
    .commit = lf_redis_commit,
    .list = redis_list,
    .audit = redis_audit,
    .find_key = redis_find_key,
    .count = redis_count,
    .free = redis_free,
};

static char *key_fixed(const lf_redis *s, const char *name) {
    lf_buf b = LF_BUF_INIT;
    key_cat(s, &b, name, (char *)NULL);
    return lf_buf_steal(&b);
}

lf_store *lf_redis_open(const char *url, struct event_base *base, lf_code *code,
                        char *err, size_t errlen) {
    lf_redis *s;
    lf_code dummy;
    struct sigaction sa;

    if (!code) code = &dummy;
    *code = LF_INVALID_REQUEST;
    if (!base) {
        snprintf(err, errlen, "redis store needs an event loop (an event_base)");
        return NULL;
    }
    s = lf_xcalloc(1, sizeof *s);
    if (lf_redis_url_parse(url, &s->url, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    *code = LF_UNAVAILABLE;
    if (probe(&s->url, err, errlen) < 0) {
        lf_redis_destroy(s);
        return NULL;
    }
    /* hiredis writes with write(2): a server that closed the socket would
     * kill the process with SIGPIPE instead of failing the request. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    s->base.type = &redis_type;
    s->evb = base;
    for (int i = 0; i < LF_SCRIPT__COUNT; i++)
        lf_redis_script_sha((lf_redis_script)i, s->sha[i]);
    s->k_head = key_fixed(s, "head");
    s->k_log = key_fixed(s, "log");
    s->k_ref = key_fixed(s, "ref");
    s->k_idem = key_fixed(s, "idem");
    s->k_timed = key_fixed(s, "timed");
    s->k_indexed = key_fixed(s, "indexed");
    s->k_rec = key_fixed(s, "rec:{");
    s->pack = lf_redis_pack_new();
    lf_redis_conn_init(s);
    lf_redis_conn_start(s);         /* warm: requests queue behind it */
    *code = LF_OK;
    return &s->base;
}
