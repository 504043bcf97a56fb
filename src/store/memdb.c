/* memdb.c -- the global log, the records folded from it, and the id and
 * ref indexes: everything memory: is, and what file: replays into. */
#include "memdb.h"
#include "../core/mem.h"
#include "../core/arena.h"
#include "../core/map.h"
#include "../core/text.h"
#include "../core/verify.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

/* A record and the seqs of its entries (for per-record audit). */
typedef struct slot {
    lf_record *rec;
    uint64_t *seqs;
    uint32_t nseq, capseq;  /* 32 bits: one slot a record, a million of them */
    uint32_t gen;           /* bumped at every change: its index entries
                               from before are stale */
    uint32_t mgen;          /* bumped when it moves (enters a state): its
                               entered-index entries from before are stale */
    uint32_t tgen;          /* bumped when its timers' earliest due changes:
                               its entry in `due` from before is stale */
} slot;

/* A list index (every record, by state, by repo, by both): entries in
 * (updated_at, id) order, appended as records change -- almost always at
 * the end, since a change is the newest -- and never removed one by one:
 * an entry whose gen is not its slot's any more is stale and skipped, and
 * the stale ones are squeezed out when they outnumber the live. A page is
 * a walk back from the end (or from a cursor, found by binary search):
 * O(log n + page), not a pass over every record. */
typedef struct ixent {
    int64_t at;             /* (us) updated_at when it was indexed; in an
                               entered index when the record entered the
                               state, in the due heap its timers' due */
    slot *s;
    uint32_t gen;
} ixent;

typedef struct index {
    char *key;
    ixent *v;
    size_t n, cap;
    size_t squeeze_at;      /* compact when n reaches it */
    /* Compacting, a step a push (ix_squeeze): the live entries before r
     * moved down to before w; [w, r) is a hole no one reads (ix_at,
     * ix_len), and a push goes on appending at n. */
    bool squeezing;
    size_t w, r;
    unsigned pinned;        /* entered indexes being made from this one,
                               which walk it by position: not compacted */
    bool entered;           /* "e:STATE": ordered by the time each record
                               entered the state, stale only when it moves
                               (the timers' tick asks for the oldest) */
    struct build *build;    /* (entered) while being made: build_step */
} index_t;

/* An entered index being made from its state's index src, a step a call
 * (build_step), so that no call holds the loop long whatever the state's
 * size: the entries of src gathered (`built` of them looked at so far),
 * sorted BUILD_STEP at a time, then those runs merged two by two, each
 * pass into tmp (the pair at lo: its halves' next entries at i and j,
 * the next out at o), widths doubling, MERGE_STEP entries a call. */
typedef struct build {
    struct index *src;
    size_t built, sorted, width, lo, i, j, o;
    ixent *tmp;
} build;

/* The records with timers of their own (a hook's schedule{}, an
 * override's review), a binary min-heap by the earliest due of them
 * (lf_record.timers_due): the tick asks for the due ones, found by a walk
 * down the heap that stops at the first entry not due, not a pass over
 * every record with a timer (100,000 of them cost serve's tick ~320 ms
 * every second).
 * An entry whose gen is not its slot's tgen any more is stale, skipped,
 * and dropped when the stale ones outnumber the live. */
typedef struct dueheap {
    ixent *v;
    size_t n, cap, live;
} dueheap;

/* The children of one record, in creation order. */
typedef struct kids {
    char *parent;           /* the map's key */
    slot **v;
    size_t n, cap;
} kids;

/* A budget counter: the times of the transitions it counts, in order. */
typedef struct counter {
    char *key;
    int64_t *t;
    size_t n, cap;
} counter;

#define COUNTER_KEEP_US ((int64_t)31 * 86400 * 1000000)

/* A state's list indexes and the budget counters of moves into it, found
 * by one lookup of its name where a commit built and looked up four index
 * keys ("s:", "e:", "b:", "r:") and two counter keys: every commit indexes
 * its record under its new state. The pointers are into db->ix and
 * db->counters, whose members are never removed. */
typedef struct stix {
    index_t *s;             /* "s:STATE" */
    index_t *e;             /* "e:STATE", once entered_index made it */
    lf_map repos;           /* repo (inside b's key) -> repo_ix */
    lf_map actors;          /* actor -> actor_ctr, for the budget counters */
    char name[];
} stix;

/* The two budget counters (in db->counters) a move into a state by an
 * actor counts in when the entry names no other person (lf_entry_counters'
 * keys then): found by one lookup of the actor, not two keys made. */
typedef struct actor_ctr {
    counter *a, *p;
    char name[];
} actor_ctr;

/* A repo's two indexes beside a state: "b:STATE\x01REPO" and "r:REPO". */
typedef struct repo_ix {
    index_t *b, *r;
} repo_ix;

/* The open records of one owner (lf_record_open_keys): a set of ids. */
typedef struct openset {
    char *key;
    lf_map ids;             /* id (the record's own string) -> slot */
} openset;

struct lf_memdb {
    index_t all;            /* every live record */
    lf_map ix;              /* "s:STATE", "e:STATE", "r:REPO", "b:STATE\x01REPO"
                               -> index_t */
    lf_map states;          /* state -> stix: the way to its indexes */
    lf_map open;            /* lf_open_key -> openset */
    lf_map counters;        /* lf_counter_key -> counter */
    dueheap due;            /* the records with timers of their own */
    lf_map by_parent;       /* parent id -> kids */
    lf_map by_id;           /* id -> slot, deleted records included: an id
                               is never reused */
    lf_map by_ref;          /* ref or alias -> slot, live records only */
    lf_map by_key;          /* idempotency key (owned copy) -> seq */
    lf_arena arena;         /* the lines, never freed one by one */
    char **lines;           /* lines[seq - 1] in the arena, lens[seq - 1] */
    size_t *lens;           /* long; or, with the lines in a file, */
    uint64_t *ends;         /* ends[seq - 1]: the offset after its "\n" */
    lf_memdb_read_fn *read;
    void *read_arg;
    size_t nlines, caplines;
    char last_hash[LF_HASH_LEN + 1];
    lf_buf key;             /* the write path's index keys (a state or a
                               repo first seen), built here, not allocated */
};

lf_memdb *lf_memdb_new(void) {
    lf_memdb *db = lf_xcalloc(1, sizeof *db);
    memcpy(db->last_hash, LF_GENESIS, LF_HASH_LEN + 1);
    return db;
}

void lf_memdb_free(lf_memdb *db) {
    if (!db) return;
    lf_buf_free(&db->key);
    for (size_t i = 0; i < lf_map_span(&db->by_id); i++) {
        slot *s = lf_map_val(&db->by_id, i);
        if (!s) continue;
        lf_record_free(s->rec);
        free(s->seqs);
        free(s);
    }
    for (size_t i = 0; i < lf_map_span(&db->by_key); i++) {
        const lf_map_slot *e = lf_map_at(&db->by_key, i);
        if (e) free((char *)e->key);
    }
    for (size_t i = 0; i < lf_map_span(&db->by_parent); i++) {
        kids *k = lf_map_val(&db->by_parent, i);
        if (!k) continue;
        free(k->parent);
        free(k->v);
        free(k);
    }
    lf_map_free(&db->by_parent);
    free(db->due.v);
    for (size_t i = 0; i < lf_map_span(&db->counters); i++) {
        counter *c = lf_map_val(&db->counters, i);
        if (!c) continue;
        free(c->key);
        free(c->t);
        free(c);
    }
    lf_map_free(&db->counters);
    for (size_t i = 0; i < lf_map_span(&db->open); i++) {
        openset *o = lf_map_val(&db->open, i);
        if (!o) continue;
        free(o->key);
        lf_map_free(&o->ids);
        free(o);
    }
    lf_map_free(&db->open);
    for (size_t i = 0; i < lf_map_span(&db->ix); i++) {
        index_t *x = lf_map_val(&db->ix, i);
        if (!x) continue;
        if (x->build) free(x->build->tmp);
        free(x->build);
        free(x->key);
        free(x->v);
        free(x);
    }
    lf_map_free(&db->ix);
    for (size_t i = 0; i < lf_map_span(&db->states); i++) {
        stix *st = lf_map_val(&db->states, i);
        if (!st) continue;
        for (size_t k = 0; k < lf_map_span(&st->repos); k++) free(lf_map_val(&st->repos, k));
        lf_map_free(&st->repos);
        for (size_t k = 0; k < lf_map_span(&st->actors); k++) free(lf_map_val(&st->actors, k));
        lf_map_free(&st->actors);
        free(st);
    }
    lf_map_free(&db->states);
    free(db->all.v);
    lf_map_free(&db->by_id);
    lf_map_free(&db->by_ref);
    lf_map_free(&db->by_key);
    lf_arena_free(&db->arena);
    free(db->lines);
    free(db->ends);
    free(db->lens);
    free(db);
}

void lf_memdb_lines_in_file(lf_memdb *db, lf_memdb_read_fn *read, void *arg) {
    db->read = read;
    db->read_arg = arg;
}

static slot *live(const lf_memdb *db, const char *id) {
    slot *s = id ? lf_map_get(&db->by_id, id) : NULL;
    return s && !s->rec->deleted ? s : NULL;
}

const lf_record *lf_memdb_get(const lf_memdb *db, const char *id) {
    slot *s = live(db, id);
    return s ? s->rec : NULL;
}

const lf_record *lf_memdb_find_ref(const lf_memdb *db, const char *ref) {
    slot *s = lf_map_get(&db->by_ref, ref);
    return s ? s->rec : NULL;
}

/* The ref a created entry claims. The engine writes `ref` first and most
 * refs need no escaping, so read it straight off the text when that is
 * exactly what is there; anything else goes through the JSON parser. The
 * fold parses the initial fields anyway, so this only saves a parse. */
static char *created_ref(const lf_entry *e) {
    static const char head[] = "{\"ref\":\"";
    const char *r = e->record;
    if (r && strncmp(r, head, sizeof head - 1) == 0) {
        const char *v = r + sizeof head - 1, *end = strpbrk(v, "\"\\");
        if (end && *end == '"') return lf_xstrndup(v, (size_t)(end - v));
    }
    cJSON *o = r ? cJSON_Parse(r) : NULL;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "ref");
    char *s = cJSON_IsString(ref) ? lf_xstrdup(ref->valuestring) : NULL;
    cJSON_Delete(o);
    return s;
}

/* The slot an entry names (deleted records included), or NULL. Commit
 * looks it up once and hands it to both check and apply. */
static slot *slot_of(const lf_memdb *db, const lf_entry *e) {
    return e->record_id ? lf_map_get(&db->by_id, e->record_id) : NULL;
}

/* The keys limit kind `kind` of e counts under (core/entry.h): the
 * entry's counters, or the open-records sets of the record it creates.
 * Returns how many. */
static int limit_keys(const lf_entry *e, char kind, char keys[2][LF_COUNTER_KEY]) {
    if (kind == 'c') return lf_entry_counters(e, keys);
    lf_record *r = NULL;
    char why[128];
    int n = e->kind == LF_ENTRY_CREATED && lf_record_apply(&r, e, why, sizeof why) == 0
                ? lf_record_open_keys(r, keys)
                : 0;
    lf_record_free(r);
    return n;
}

/* A live child of e's record that is in none of l's states, or NULL. */
static const char *child_outside(const lf_memdb *db, const lf_entry *e,
                                 const lf_entry_limit *l) {
    const kids *k = e->record_id ? lf_map_get(&db->by_parent, e->record_id) : NULL;
    for (size_t i = 0; k && i < k->n; i++) {
        const lf_record *c = k->v[i]->rec;
        if (c->deleted) continue;
        int j = 0;
        while (j < l->nstates && strcmp(c->state, l->states[j]) != 0) j++;
        if (j == l->nstates) return c->id;
    }
    return NULL;
}

/* LF_DENIED, saying which, when a limit of e is reached; else LF_OK. */
static lf_code check_limits(const lf_memdb *db, const lf_entry *e, char *err,
                            size_t errlen) {
    char keys[2][LF_COUNTER_KEY];
    for (int i = 0; i < e->nlimits; i++) {
        const lf_entry_limit *l = &e->limits[i];
        if (l->kind == 'k') {
            const char *out = child_outside(db, e, l);
            if (!out) continue;
            snprintf(err, errlen, "Denied: child %s is not where the gate wants it "
                     "(as it was committed)", out);
            return LF_DENIED;
        }
        if (l->index < 0 || l->index >= limit_keys(e, l->kind, keys)) continue;
        uint64_t n;
        int64_t oldest;
        lf_memdb_count(db, keys[l->index], l->kind == 'c' ? l->since : INT64_MIN, &n,
                       &oldest);
        if (n >= (uint64_t)l->max) {
            snprintf(err, errlen, "Denied: %s counts %llu, at most %d (as it was committed)",
                     keys[l->index], (unsigned long long)n, l->max);
            return LF_DENIED;
        }
    }
    return LF_OK;
}

static lf_code check_slot(const lf_memdb *db, const lf_entry *e, slot *s, char *err,
                          size_t errlen) {
    if (e->idempotency_key && lf_map_get(&db->by_key, e->idempotency_key)) {
        snprintf(err, errlen, "Idempotency key already used: %s", e->idempotency_key);
        return LF_CONFLICT;
    }
    if (e->kind == LF_ENTRY_POLICY_LOADED) return LF_OK;
    if (e->kind == LF_ENTRY_CHECKPOINT) {
        /* It states the first `version` entries: at most
         * LF_CHECKPOINT_LAG fewer than the log has (core/verify.h). */
        if (e->version <= db->nlines && db->nlines - e->version <= LF_CHECKPOINT_LAG)
            return LF_OK;
        snprintf(err, errlen, "the log has %zu entries, the checkpoint states %llu",
                 (size_t)db->nlines, (unsigned long long)e->version);
        return LF_CONFLICT;
    }
    if (e->kind == LF_ENTRY_CREATED) {
        if (s) {
            snprintf(err, errlen, "Record id already exists: %s", e->record_id);
            return LF_CONFLICT;
        }
        char *ref = created_ref(e);
        if (!ref) {
            snprintf(err, errlen, "Created entry has no ref");
            return LF_INVALID_REQUEST;
        }
        const lf_record *other = lf_memdb_find_ref(db, ref);
        if (other)
            snprintf(err, errlen, "Duplicate ref: %s already has record %s", ref,
                     other->id);
        free(ref);
        return other ? LF_DUPLICATE_REF : check_limits(db, e, err, errlen);
    }
    if (!s || s->rec->deleted) {
        snprintf(err, errlen, "Record not found: %s", e->record_id);
        return LF_NOT_FOUND;
    }
    if (e->kind == LF_ENTRY_DENIED || e->kind == LF_ENTRY_REJECTED) return LF_OK;
    if (s->rec->version + 1 != e->version) {
        snprintf(err, errlen,
                 "Version conflict on %s: expected version %llu, "
                 "found %llu",
                 e->record_id, (unsigned long long)(e->version - 1),
                 (unsigned long long)s->rec->version);
        return LF_CONFLICT;
    }
    return check_limits(db, e, err, errlen);
}

lf_code lf_memdb_check(const lf_memdb *db, const lf_entry *e, char *err, size_t errlen) {
    return check_slot(db, e, slot_of(db, e), err, errlen);
}

void lf_memdb_seal(const lf_memdb *db, lf_entry *e, lf_buf *line) {
    lf_entry_seal(e, db->nlines + 1, db->last_hash, line);
}

static void push_line(lf_memdb *db, const char *line, size_t len) {
    if (db->nlines == db->caplines) {
        db->caplines = db->caplines ? db->caplines * 2 : 1024;
        if (db->read) {
            db->ends = lf_xrealloc(db->ends, db->caplines * sizeof *db->ends);
        } else {
            db->lines = lf_xrealloc(db->lines, db->caplines * sizeof *db->lines);
            db->lens = lf_xrealloc(db->lens, db->caplines * sizeof *db->lens);
        }
    }
    if (db->read) {     /* the file is the lines, each followed by a newline */
        size_t n = db->nlines++;
        db->ends[n] = (n ? db->ends[n - 1] : 0) + len + 1;
        return;
    }
    db->lines[db->nlines] = lf_arena_copy(&db->arena, line, len);
    db->lens[db->nlines++] = len;
}

static void push_seq(slot *s, uint64_t seq) {
    if (s->nseq == s->capseq) {
        s->capseq = s->capseq ? s->capseq * 2 : 8;
        s->seqs = lf_xrealloc(s->seqs, s->capseq * sizeof *s->seqs);
    }
    s->seqs[s->nseq++] = seq;
}

/* A deleted record leaves the ref index, with every alias still naming it. */
static void unindex(lf_memdb *db, slot *s) {
    lf_map_del(&db->by_ref, s->rec->ref);
    for (size_t i = 0; i < s->rec->naliases; i++)
        if (lf_map_get(&db->by_ref, s->rec->aliases[i]) == s)
            lf_map_del(&db->by_ref, s->rec->aliases[i]);
}

/* ---- list indexes ----------------------------------------------------- */

static bool ix_live(const index_t *x, const ixent *e) {
    return e->gen == (x->entered ? e->s->mgen : e->s->gen) && !e->s->rec->deleted;
}

/* (at, id) order: the order lists walk backwards. */
static int ix_cmp(int64_t at, const char *id, const ixent *e) {
    if (at != e->at) return at < e->at ? -1 : 1;
    return strcmp(id, e->s->rec->id);
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* x's entries, in order, less the hole of a squeeze under way: how
 * many, and entry i of them. */
static size_t ix_len(const index_t *x) { return x->n - (x->r - x->w); }
static ixent *ix_at(const index_t *x, size_t i) {
    return &x->v[i < x->w ? i : i + (x->r - x->w)];
}

/* The first entry not below (at, id). */
static size_t ix_lower(const index_t *x, int64_t at, const char *id) {
    size_t lo = 0, hi = ix_len(x);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix_cmp(at, id, ix_at(x, mid)) > 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Stale entries squeezed out of x, `most` of its entries looked at (each
 * a record's slot to read: a million at once held the loop ~30 ms, a few
 * a push do not). Once the last is looked at, x is whole again. */
#define SQUEEZE_STEP 128
static void ix_squeeze(index_t *x, size_t most) {
    x->squeezing = true;
    for (size_t stop = x->r + min_size(x->n - x->r, most); x->r < stop; x->r++)
        if (ix_live(x, &x->v[x->r])) x->v[x->w++] = x->v[x->r];
    if (x->r < x->n) return;
    x->n = x->w;
    x->w = x->r = 0;
    x->squeezing = false;
    x->squeeze_at = 2 * x->n + 64;
}

/* Room for one more entry. */
static void ix_room(index_t *x) {
    if (x->n < x->cap) return;
    x->cap = x->cap ? 2 * x->cap : 16;
    x->v = lf_xrealloc(x->v, x->cap * sizeof *x->v);
}

static void ix_push(index_t *x, slot *s, int64_t at) {
    if (x->squeezing || (x->n >= x->squeeze_at && !x->pinned)) ix_squeeze(x, SQUEEZE_STEP);
    ix_room(x);
    size_t i = x->n;
    /* Out of order only when a writer's clock was behind another's (a
     * squeeze under way is finished first: a position is one again). */
    if (i && ix_cmp(at, s->rec->id, &x->v[i - 1]) < 0) {
        if (x->squeezing) ix_squeeze(x, SIZE_MAX);
        i = ix_lower(x, at, s->rec->id);
        memmove(x->v + i + 1, x->v + i, (x->n - i) * sizeof *x->v);
    }
    x->v[i] = (ixent){at, s, x->entered ? s->mgen : s->gen};
    x->n++;
}

static index_t *ix_of(lf_memdb *db, const lf_buf *key, bool make) {
    index_t *x = lf_map_get(&db->ix, key->p);
    if (!x && make) {
        x = lf_xcalloc(1, sizeof *x);
        x->key = lf_xstrdup(key->p);
        x->squeeze_at = 64;
        lf_map_put(&db->ix, x->key, x);
    }
    return x;
}

/* "b:STATE\x01REPO", "s:STATE" or "r:REPO" (appended, not printf'd:
 * every commit makes up to six). */
static void ix_key(lf_buf *k, const char *state, const char *repo) {
    lf_buf_reset(k);
    lf_buf_add(k, state && repo ? "b:" : state ? "s:" : "r:", 2);
    if (state) lf_buf_puts(k, state);
    if (state && repo) lf_buf_putc(k, '\x01');
    if (repo) lf_buf_puts(k, repo);
}

/* When a record entered its state: its last history entry's time. */
static void entered_key(lf_buf *k, const char *state) {
    lf_buf_reset(k);
    lf_buf_add(k, "e:", 2);
    lf_buf_puts(k, state);
}

/* A state's stix, made the first time the state is seen (with its list
 * index; its entered index only when entered_index makes it). */
static stix *stix_of(lf_memdb *db, const char *state) {
    stix *st = lf_map_get(&db->states, state);
    if (st) return st;
    size_t n = strlen(state) + 1;
    st = lf_xcalloc(1, sizeof *st + n);
    memcpy(st->name, state, n);
    ix_key(&db->key, state, NULL);
    st->s = ix_of(db, &db->key, true);
    lf_map_put(&db->states, st->name, st);
    return st;
}

static repo_ix *repo_ix_of(lf_memdb *db, stix *st, const char *repo) {
    repo_ix *p = lf_map_get(&st->repos, repo);
    if (p) return p;
    p = lf_xmalloc(sizeof *p);
    ix_key(&db->key, st->name, repo);
    p->b = ix_of(db, &db->key, true);
    ix_key(&db->key, NULL, repo);
    p->r = ix_of(db, &db->key, true);
    lf_map_put(&st->repos, p->b->key + 3 + strlen(st->name), p);
    return p;
}

/* The record in s entered its state at `at` (us; it was created or
 * moved): its entries in the entered indexes are stale, and it joins its
 * state's, if that one is kept (list_entered makes it the first time it
 * is asked; while it is being made, the walk of the state's index finds
 * the record's new entry there). */
static void reindex_entered(slot *s, stix *st, int64_t at) {
    s->mgen++;
    if (s->rec->deleted) return;
    index_t *x = st->e;
    if (x && !x->build) ix_push(x, s, at);
}

/* The record in s changed at `at` (us: its updated_at): whatever indexed
 * it before is stale now. st: its state's (NULL when deleted). */
static void reindex(lf_memdb *db, slot *s, stix *st, int64_t at) {
    const lf_record *r = s->rec;
    s->gen++;
    if (r->deleted) return;
    ix_push(&db->all, s, at);
    ix_push(st->s, s, at);
    if (r->repo) {
        repo_ix *p = repo_ix_of(db, st, r->repo);
        ix_push(p->r, s, at);
        ix_push(p->b, s, at);
    }
}

/* ---- the due heap -------------------------------------------------------- */

static bool due_live(const ixent *e) { return e->gen == e->s->tgen; }

static void due_swap(ixent *v, size_t a, size_t b) {
    ixent t = v[a];
    v[a] = v[b];
    v[b] = t;
}

static void due_down(dueheap *h, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l].at < h->v[m].at) m = l;
        if (r < h->n && h->v[r].at < h->v[m].at) m = r;
        if (m == i) return;
        due_swap(h->v, i, m);
        i = m;
    }
}

/* The record in s has the timers it has now, whose earliest was due at
 * `was` before the entry (0: none, nor in the heap): if that changed, it
 * joins the heap at the new one, its entry from before stale. */
static void due_sync(lf_memdb *db, slot *s, int64_t was) {
    dueheap *h = &db->due;
    int64_t due = s->rec->deleted ? 0 : s->rec->timers_due;
    if (due == was) return;
    if (was) h->live--;
    s->tgen++;
    if (due) {
        if (h->n == h->cap) {
            h->cap = h->cap ? 2 * h->cap : 64;
            h->v = lf_xrealloc(h->v, h->cap * sizeof *h->v);
        }
        size_t i = h->n++;
        h->v[i] = (ixent){due, s, s->tgen};
        for (; i && h->v[(i - 1) / 2].at > h->v[i].at; i = (i - 1) / 2)
            due_swap(h->v, i, (i - 1) / 2);
        h->live++;
    }
    if (h->n > 2 * h->live + 64) {      /* squeeze out the stale, heapify */
        size_t k = 0;
        for (size_t i = 0; i < h->n; i++)
            if (due_live(&h->v[i])) h->v[k++] = h->v[i];
        h->n = k;
        for (size_t i = k / 2; i-- > 0;) due_down(h, i);
    }
}

static counter *counter_of(lf_memdb *db, const char *key) {
    counter *c = lf_map_get(&db->counters, key);
    if (!c) {
        c = lf_xcalloc(1, sizeof *c);
        c->key = lf_xstrdup(key);
        lf_map_put(&db->counters, c->key, c);
    }
    return c;
}

static actor_ctr *actor_ctr_of(lf_memdb *db, stix *st, const char *actor) {
    actor_ctr *ac = lf_map_get(&st->actors, actor);
    if (ac) return ac;
    size_t n = strlen(actor) + 1;
    char key[LF_COUNTER_KEY];
    ac = lf_xmalloc(sizeof *ac + n);
    memcpy(ac->name, actor, n);
    lf_counter_key(st->name, 'a', actor, key);
    ac->a = counter_of(db, key);
    lf_counter_key(st->name, 'p', actor, key);
    ac->p = counter_of(db, key);
    lf_map_put(&st->actors, ac->name, ac);
    return ac;
}

/* Adds `at` to c, kept in time order (writers of one journal may
 * interleave a little). */
static void count_in(counter *c, int64_t at) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->t = lf_xrealloc(c->t, c->cap * sizeof *c->t);
    }
    size_t i = c->n++;
    while (i && c->t[i - 1] > at) c->t[i] = c->t[i - 1], i--;
    c->t[i] = at;
    /* Windows are at most 31 days: older times are dropped (as the
     * Redis commit script does), so a counter does not grow forever. */
    size_t old = 0;
    while (old < c->n && c->t[old] < c->t[c->n - 1] - COUNTER_KEEP_US) old++;
    if (old) {
        memmove(c->t, c->t + old, (c->n - old) * sizeof *c->t);
        c->n -= old;
    }
}

/* Adds a transition made at `at` (us) to its budget counters. st: the
 * record's state's, which a move's to_state is (NULL: none). */
static void count_entry(lf_memdb *db, const lf_entry *e, stix *st, int64_t at) {
    if (!lf_entry_counts(e)) return;
    if (!e->authority) {
        if (!st || !lf_streq(st->name, e->to_state)) st = stix_of(db, e->to_state);
        actor_ctr *ac = actor_ctr_of(db, st, e->actor);
        count_in(ac->a, at);
        count_in(ac->p, at);
        return;
    }
    char keys[2][LF_COUNTER_KEY];
    int n = lf_entry_counters(e, keys);
    for (int k = 0; k < n; k++) count_in(counter_of(db, keys[k]), at);
}

/* A record is open for its owner from its creation until it is closed or
 * deleted (the fold sets closed_at on entering a terminal state). */
static void track_open(lf_memdb *db, slot *s, bool was_open) {
    char keys[2][LF_COUNTER_KEY];
    int n = lf_record_open_keys(s->rec, keys);
    bool open = !s->rec->deleted && !s->rec->closed_at[0];
    if (!n || open == was_open) return;
    for (int k = 0; k < n; k++) {
        openset *o = lf_map_get(&db->open, keys[k]);
        if (!o && open) {
            o = lf_xcalloc(1, sizeof *o);
            o->key = lf_xstrdup(keys[k]);
            lf_map_put(&db->open, o->key, o);
        }
        if (o && open) lf_map_put(&o->ids, s->rec->id, s);
        else if (o) lf_map_del(&o->ids, s->rec->id);
    }
}

void lf_memdb_count(const lf_memdb *db, const char *key, int64_t since, uint64_t *n,
                    int64_t *oldest) {
    const openset *o = strncmp(key, "open:", 5) == 0 ? lf_map_get(&db->open, key) : NULL;
    if (o || strncmp(key, "open:", 5) == 0) {
        *n = o ? o->ids.len : 0;
        *oldest = 0;
        return;
    }
    const counter *c = lf_map_get(&db->counters, key);
    size_t lo = 0, hi = c ? c->n : 0;
    while (lo < hi) {                   /* the first time >= since */
        size_t mid = lo + (hi - lo) / 2;
        if (c->t[mid] < since) lo = mid + 1;
        else hi = mid;
    }
    *n = c ? c->n - lo : 0;
    *oldest = c && lo < c->n ? c->t[lo] : 0;
}

/* Folds e into slot s (NULL for created and policy_loaded) and appends
 * its line; *out is the record's slot (NULL for policy_loaded). Returns
 * 0, or -1 with err set when e does not follow the log. */
static int apply_slot(lf_memdb *db, const lf_entry *e, slot *s, const char *line,
                      size_t len, slot **out, char *err, size_t errlen) {
    if (e->seq != db->nlines + 1) {
        snprintf(err, errlen, "seq %llu out of order (expected %llu)",
                 (unsigned long long)e->seq, (unsigned long long)db->nlines + 1);
        return -1;
    }
    bool was_open = s && !s->rec->deleted && !s->rec->closed_at[0];
    int64_t due_was = s && !s->rec->deleted ? s->rec->timers_due : 0;
    size_t moves = s ? s->rec->nhist : 0;
    if (e->kind == LF_ENTRY_CREATED) {
        lf_record *r = NULL;
        if (s) {
            snprintf(err, errlen, "record %s created twice", e->record_id);
            return -1;
        }
        if (lf_record_apply(&r, e, err, errlen)) return -1;
        s = lf_xcalloc(1, sizeof *s);
        lf_map_put(&db->by_id, r->id, s);
        lf_map_put(&db->by_ref, r->ref, s);
        s->rec = r;
        if (r->parent) {
            kids *k = lf_map_get(&db->by_parent, r->parent);
            if (!k) {
                k = lf_xcalloc(1, sizeof *k);
                k->parent = lf_xstrdup(r->parent);
                lf_map_put(&db->by_parent, k->parent, k);
            }
            if (k->n == k->cap) {
                k->cap = k->cap ? 2 * k->cap : 4;
                k->v = lf_xrealloc(k->v, k->cap * sizeof *k->v);
            }
            k->v[k->n++] = s;
        }
    } else if (!lf_entry_global(e->kind)) {
        if (!s || s->rec->deleted) {
            snprintf(err, errlen, "entry for unknown record %s", e->record_id);
            return -1;
        }
        size_t had = s->rec->naliases;
        if (lf_record_apply(&s->rec, e, err, errlen)) return -1;
        if (s->rec->deleted) unindex(db, s);
        /* A new alias names this record from now on, even if another
         * record had it: the latest claim is the live one. */
        for (size_t i = had; i < s->rec->naliases && !s->rec->deleted; i++)
            lf_map_put(&db->by_ref, s->rec->aliases[i], s);
    }
    /* The entry's time, parsed once: a record it changed was updated
     * then, a move entered its state then, a transition counts then. */
    int64_t at = 0;
    lf_ts_parse(e->timestamp, &at);
    /* The record's state's indexes, looked up once for all three. */
    stix *st = s && !s->rec->deleted ? stix_of(db, s->rec->state) : NULL;
    count_entry(db, e, st, at);
    bool refused = e->kind == LF_ENTRY_DENIED || e->kind == LF_ENTRY_REJECTED;
    if (s && !refused) reindex(db, s, st, at);
    if (s && (s->rec->nhist != moves || s->rec->deleted)) reindex_entered(s, st, at);
    if (s) track_open(db, s, was_open);
    if (s) due_sync(db, s, due_was);
    /* The first entry with a key holds it: a commit refuses the key once
     * it is spent, so a log that has it twice was not written by one,
     * and its replay answers as the first did. */
    if (e->idempotency_key && !lf_map_get(&db->by_key, e->idempotency_key))
        lf_map_put(&db->by_key, lf_xstrdup(e->idempotency_key),
                   (void *)(uintptr_t)e->seq);
    if (s) push_seq(s, e->seq);
    push_line(db, line, len);
    memcpy(db->last_hash, e->hash, LF_HASH_LEN + 1);
    *out = s;
    return 0;
}

int lf_memdb_apply(lf_memdb *db, const lf_entry *e, const char *line, size_t len,
                   char *err, size_t errlen) {
    slot *s;
    return apply_slot(db, e, slot_of(db, e), line, len, &s, err, errlen);
}

lf_code lf_memdb_commit(lf_memdb *db, lf_entry *e, const lf_record **rec, char *err,
                        size_t errlen) {
    static __thread lf_buf line;
    slot *s = slot_of(db, e);
    lf_code code = check_slot(db, e, s, err, errlen);
    *rec = NULL;
    if (code != LF_OK) return code;
    lf_memdb_seal(db, e, &line);
    if (apply_slot(db, e, s, line.p, line.len, &s, err, errlen))
        return LF_INVALID_REQUEST;
    *rec = s ? s->rec : NULL;
    return LF_OK;
}

static void found(const lf_record *r, const char *what, lf_store_cb *cb, void *arg) {
    char err[256];
    if (r) {
        cb(LF_OK, NULL, r, NULL, arg);
        return;
    }
    snprintf(err, sizeof err, "Record not found: %s", what);
    cb(LF_NOT_FOUND, err, NULL, NULL, arg);
}

void lf_memdb_get_op(const lf_memdb *db, const char *id, lf_store_cb *cb, void *arg) {
    found(lf_memdb_get(db, id), id, cb, arg);
}

void lf_memdb_find_ref_op(const lf_memdb *db, const char *ref, lf_store_cb *cb,
                          void *arg) {
    found(lf_memdb_find_ref(db, ref), ref, cb, arg);
}

/* Where line `seq` is in the file, and how long it is. */
static uint64_t line_at(const lf_memdb *db, uint64_t seq, size_t *len) {
    uint64_t off = seq > 1 ? db->ends[seq - 2] : 0;
    *len = (size_t)(db->ends[seq - 1] - off - 1);
    return off;
}

/* The lines of seqs[0..n), NUL-terminated, into lines/lens: pointers
 * into the arena, or into *block (the caller frees it), read from the
 * file a run of adjacent lines at a time. Returns 0, or -1 with err set
 * when the file could not be read. */
static int lines_of(const lf_memdb *db, const uint64_t *seqs, size_t n, const char **lines,
                    size_t *lens, char **block, char *err, size_t errlen) {
    *block = NULL;
    if (!db->read) {
        for (size_t i = 0; i < n; i++) {
            lines[i] = db->lines[seqs[i] - 1];
            lens[i] = db->lens[seqs[i] - 1];
        }
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        (void)line_at(db, seqs[i], &lens[i]);
        total += lens[i] + 1;
    }
    char *b = *block = lf_xmalloc(total ? total : 1), *at = b;
    for (size_t i = 0, j; i < n; i = j) {
        uint64_t off = line_at(db, seqs[i], &lens[i]), end = off;
        for (j = i; j < n && line_at(db, seqs[j], &lens[j]) == end; j++)
            end = db->ends[seqs[j] - 1];            /* the line and its newline */
        if (db->read(db->read_arg, off, (size_t)(end - off), at) < 0) {
            snprintf(err, errlen, "the log could not be read back at seq %llu: %s",
                     (unsigned long long)seqs[i], strerror(errno));
            free(b);
            *block = NULL;
            return -1;
        }
        for (size_t k = i; k < j; k++) {
            lines[k] = at;
            at[lens[k]] = '\0';
            at += lens[k] + 1;
        }
    }
    return 0;
}

void lf_memdb_find_key(const lf_memdb *db, const char *key, lf_store_cb *cb, void *arg) {
    uint64_t seq = (uint64_t)(uintptr_t)lf_map_get(&db->by_key, key);
    char err[256];
    lf_entry_doc doc;
    if (!seq) {
        snprintf(err, sizeof err, "No entry with idempotency key %s", key);
        cb(LF_NOT_FOUND, err, NULL, NULL, arg);
        return;
    }
    const char *line;
    size_t len;
    char *block;
    if (lines_of(db, &seq, 1, &line, &len, &block, err, sizeof err) < 0 ||
        lf_entry_parse(line, len, &doc, err, sizeof err)) {
        free(block);
        cb(LF_UNAVAILABLE, err, NULL, NULL, arg);
        return;
    }
    free(block);
    slot *s = doc.e.record_id ? lf_map_get(&db->by_id, doc.e.record_id) : NULL;
    cb(LF_OK, NULL, s ? s->rec : NULL, &doc.e, arg);
    lf_entry_doc_free(&doc);
}

/* ---- list --------------------------------------------------------------- */

/* Newest updated_at first; ties broken by id so the order is total and a
 * cursor ("updated_at|id") names one position exactly. */
static int newer_first(const void *a, const void *b) {
    const lf_record *x = *(const lf_record *const *)a;
    const lf_record *y = *(const lf_record *const *)b;
    int c = strcmp(y->updated_at, x->updated_at);
    return c ? c : strcmp(y->id, x->id);
}

static int after_cursor(const lf_record *r, const char *cursor) {
    size_t n = strlen(r->updated_at);
    int c = strncmp(r->updated_at, cursor, n);
    if (c) return c < 0;
    return cursor[n] == '|' && strcmp(r->id, cursor + n + 1) < 0;
}

/* A bounded max-heap of the `cap` newest records seen so far, its root
 * the oldest of them: a page costs one pass over the candidates and
 * log(page) per candidate, not a sort of everything that matches (a tick
 * pages through every record in a timed state). */
typedef struct newest {
    const lf_record **v;
    size_t n, cap;
} newest;

static void sift_down(newest *h, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        /* "greater" in newer_first's order means older */
        if (l < h->n && newer_first(&h->v[l], &h->v[m]) > 0) m = l;
        if (r < h->n && newer_first(&h->v[r], &h->v[m]) > 0) m = r;
        if (m == i) return;
        const lf_record *t = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = t;
        i = m;
    }
}

static void keep_newest(newest *h, const lf_record *r) {
    if (h->n < h->cap) {
        size_t i = h->n++;
        h->v[i] = r;
        while (i && newer_first(&h->v[i], &h->v[(i - 1) / 2]) > 0) {
            const lf_record *t = h->v[i];
            h->v[i] = h->v[(i - 1) / 2];
            h->v[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (newer_first(&r, &h->v[0]) < 0) {
        h->v[0] = r;
        sift_down(h, 0);
    }
}

/* A page of an index: back from the end, or from below the cursor. The
 * records with timers of their own (q->timed, all of them) are those of
 * every record's index that have timers: a page walks back until it has
 * them, the whole listing one walk over the index. */
static void list_index(const lf_memdb *db, const lf_list_query *q, lf_list_cb *cb,
                       void *arg) {
    size_t limit = q->limit ? q->limit : 100;
    const index_t *x = &db->all;
    if (q->state || q->repo) {
        lf_buf k = LF_BUF_INIT;
        ix_key(&k, q->state, q->repo);
        x = lf_map_get(&db->ix, k.p);
        lf_buf_free(&k);
    }
    size_t i = x ? ix_len(x) : 0;
    if (x && q->cursor) {
        const char *bar = strchr(q->cursor, '|');
        char ts[LF_TS_LEN + 1] = "";
        int64_t at = 0;
        if (bar && (size_t)(bar - q->cursor) <= LF_TS_LEN) {
            memcpy(ts, q->cursor, (size_t)(bar - q->cursor));
            ts[bar - q->cursor] = '\0';
        }
        /* A cursor we did not make lists nothing rather than anything. */
        i = bar && !lf_ts_parse(ts, &at) ? ix_lower(x, at, bar + 1) : 0;
    }
    const lf_record **page = lf_xmalloc((limit + 1) * sizeof *page);
    size_t n = 0;
    while (i > 0 && n <= limit) {
        const ixent *e = ix_at(x, --i);
        if (ix_live(x, e) && (!q->timed || e->s->rec->timers)) page[n++] = e->s->rec;
    }
    char cursor[LF_TS_LEN + LF_ID_LEN + 2], *next = NULL;
    if (n > limit) {
        const lf_record *last = page[limit - 1];
        snprintf(cursor, sizeof cursor, "%s|%s", last->updated_at, last->id);
        next = cursor;
        n = limit;
    }
    cb(LF_OK, NULL, page, n, next, arg);
    free(page);
}

static int by_time(const void *a, const void *b) {
    const ixent *x = a, *y = b;
    return ix_cmp(x->at, x->s->rec->id, y);
}

/* Entries of a state's index gathered, or sorted, by one call while its
 * entered index is being made, and entries merged (merging is the
 * cheaper, by the entry). In one call, the whole of a state of 100,000
 * records waiting held the loop 34-36 ms; gathered in steps and sorted at
 * once, 4.6-8.2 ms, and 56 ms at a million. */
#define BUILD_STEP 8192
#define MERGE_STEP (2 * BUILD_STEP)

/* Gathers the entries of b->src not looked at yet onto x (unsorted); at
 * most `most`. Returns how many of src's are left. */
static size_t gather(index_t *x, build *b, size_t most) {
    const index_t *src = b->src;
    size_t end = src->n, stop = b->built + min_size(end - b->built, most);
    for (; b->built < stop; b->built++) {
        const ixent *e = &src->v[b->built];
        int64_t at;
        if (!ix_live(src, e) || !lf_record_entered(e->s->rec, &at)) continue;
        ix_room(x);
        x->v[x->n++] = (ixent){at, e->s, e->s->mgen};
    }
    return end - b->built;
}

/* The merge pass's next pair from lo on. */
static void pair_at(build *b, size_t lo, size_t n) {
    b->lo = b->i = b->o = lo;
    b->j = min_size(lo + b->width, n);
}

/* The pair at b->lo's runs [lo, mid) and [mid, hi) merged into b->tmp up
 * to `most` entries on, in order (ties: the left run's first, as a stable
 * sort would). Returns how many of `most` are left. */
static size_t merge_pair(index_t *x, build *b, size_t mid, size_t hi, size_t most) {
    for (; b->o < hi && most; most--) {
        bool left = b->j >= hi || (b->i < mid && by_time(&x->v[b->i], &x->v[b->j]) <= 0);
        b->tmp[b->o++] = x->v[left ? b->i++ : b->j++];
    }
    return most;
}

/* x's entries from b->tmp, where a pass merged them (the same size). */
static void swap_tmp(index_t *x, build *b) {
    ixent *v = x->v;
    x->v = b->tmp;
    b->tmp = v;
}

/* Up to `most` entries of x's runs of b->width merged, pass after pass,
 * each doubling the width. */
static void merge(index_t *x, build *b, size_t most) {
    size_t n = x->n;
    if (!b->tmp) b->tmp = lf_xmalloc(x->cap * sizeof *x->v);
    while (b->width < n && most) {
        size_t mid = min_size(b->lo + b->width, n), hi = min_size(b->lo + 2 * b->width, n);
        most = merge_pair(x, b, mid, hi, most);
        if (b->o < hi) return;
        if (hi < n) {
            pair_at(b, hi, n);
            continue;
        }
        swap_tmp(x, b);
        b->width *= 2;
        pair_at(b, 0, n);
    }
}

/* One step of making x (struct build), which is whole once it returns
 * with x->build NULL: then sorted, each record in it once, and kept from
 * then on. The state's index is not compacted meanwhile (pinned), so a
 * position stays one; a record that changes meanwhile has its new entry
 * appended there, gathered at the end and merged in (they are few), and
 * one that changed without moving is then in x twice, side by side: one
 * is dropped. */
static void build_step(index_t *x) {
    build *b = x->build;
    if (!b->width) {                /* gathering, then sorting runs */
        if (gather(x, b, BUILD_STEP)) return;
        if (b->sorted < x->n) {
            size_t k = min_size(x->n - b->sorted, BUILD_STEP);
            qsort(x->v + b->sorted, k, sizeof *x->v, by_time);
            b->sorted += k;
            if (b->sorted < x->n) return;
        }
        b->width = BUILD_STEP;
        pair_at(b, 0, x->n);
    }
    if (b->width < x->n) {
        merge(x, b, MERGE_STEP);
        if (b->width < x->n) return;
    }
    /* What changed while the runs were sorted and merged, merged in. */
    size_t n0 = x->n;
    gather(x, b, SIZE_MAX);
    if (x->n > n0) {
        qsort(x->v + n0, x->n - n0, sizeof *x->v, by_time);
        b->tmp = lf_xrealloc(b->tmp, x->cap * sizeof *x->v);
        b->i = b->o = 0;
        b->j = n0;
        merge_pair(x, b, n0, x->n, SIZE_MAX);
        swap_tmp(x, b);
    }
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++)
        if (!k || x->v[i].s != x->v[k - 1].s || x->v[i].gen != x->v[k - 1].gen)
            x->v[k++] = x->v[i];
    x->n = k;
    x->squeeze_at = 2 * x->n + 64;
    b->src->pinned--;
    free(b->tmp);
    free(b);
    x->build = NULL;
}

/* A state's entered index, made from its list index the first time it is
 * asked for (the timers' tick asks for the timed states only; the other
 * states never pay for one), a step a call (build_step), then kept up by
 * reindex_entered. NULL while it is still being made. */
static index_t *entered_index(lf_memdb *db, const char *state) {
    stix *st = stix_of(db, state);
    index_t *x = st->e;
    if (!x) {
        entered_key(&db->key, state);
        x = st->e = ix_of(db, &db->key, true);
        x->entered = true;
        x->build = lf_xcalloc(1, sizeof *x->build);
        /* the state's index walked by position: whole, and kept so */
        index_t *src = x->build->src = st->s;
        if (src->squeezing) ix_squeeze(src, SIZE_MAX);
        src->pinned++;
    }
    if (x->build) build_step(x);
    return x->build ? NULL : x;
}

/* A cursor "AT|ID" (list_entered's and list_due's): the place of entry e,
 * and it read back (false for one we did not make). */
#define AT_CURSOR_LEN (24 + LF_ID_LEN)
static void cursor_of(const ixent *e, char out[AT_CURSOR_LEN]) {
    snprintf(out, AT_CURSOR_LEN, "%lld|%s", (long long)e->at, e->s->rec->id);
}

static bool cursor_at(const char *c, int64_t *at, const char **id) {
    char *bar;
    long long v = strtoll(c, &bar, 10);
    if (*bar != '|' || bar == c) return false;
    *at = v;
    *id = bar + 1;
    return true;
}

/* The records that entered q->state at or before q->entered_by (and
 * after q->entered_after), oldest first, a page of q->limit at a time:
 * O(log n + the page + stale entries skipped). The cursor is the last
 * entry of the page before, "AT|ID" (at: us), which stays a place in the
 * index however the records move meanwhile. The memdb is changed only by
 * the index it keeps from then on; while that is being made (the first
 * asks about a large state), a call makes a step of it and answers an
 * empty page with the cursor to ask with again (the same, or "0|": the
 * start). */
static void list_entered(lf_memdb *db, const lf_list_query *q, lf_list_cb *cb, void *arg) {
    const index_t *x = entered_index(db, q->state);
    if (!x) {   /* still being made: nothing yet, and the same ask again */
        const lf_record *none[1];
        cb(LF_OK, NULL, none, 0, q->cursor ? q->cursor : "0|", arg);
        return;
    }
    size_t limit = q->limit ? q->limit : 100;
    /* the first entry at a later time: "" is below every id */
    size_t begin = q->entered_after ? ix_lower(x, q->entered_after + 1, "") : 0,
           end = ix_lower(x, q->entered_by + 1, ""), n = 0;
    if (q->cursor) {
        int64_t at;
        const char *id;
        /* A cursor we did not make lists nothing rather than anything. */
        size_t i = end;
        if (cursor_at(q->cursor, &at, &id)) {
            i = ix_lower(x, at, id);
            while (i < end && ix_cmp(at, id, ix_at(x, i)) == 0) i++;
        }
        if (i > begin) begin = i;
    }
    if (end < begin) end = begin;
    size_t cap = end - begin < limit ? end - begin : limit;
    const lf_record **page = lf_xmalloc((cap + 1) * sizeof *page);
    size_t i = begin;
    for (; i < end && n < limit; i++) {
        const ixent *e = ix_at(x, i);
        const lf_record *r = e->s->rec;
        if (ix_live(x, e) && (!q->repo || (r->repo && !strcmp(r->repo, q->repo))))
            page[n++] = r;
    }
    char cursor[AT_CURSOR_LEN], *next = NULL;
    if (i < end) {
        cursor_of(ix_at(x, i - 1), cursor);
        next = cursor;
    }
    cb(LF_OK, NULL, page, n, next, arg);
    free(page);
}

/* A walk down the due heap, earliest first: a min-heap of the places in
 * it to look at next (their parents looked at). */
typedef struct frontier {
    size_t *v, n, cap;
} frontier;

static void front_push(frontier *f, const dueheap *h, size_t i) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->v = lf_xrealloc(f->v, f->cap * sizeof *f->v);
    }
    size_t k = f->n++;
    for (; k && h->v[f->v[(k - 1) / 2]].at > h->v[i].at; k = (k - 1) / 2)
        f->v[k] = f->v[(k - 1) / 2];
    f->v[k] = i;
}

static size_t front_pop(frontier *f, const dueheap *h) {
    size_t top = f->v[0], last = f->v[--f->n], k = 0;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= f->n) break;
        if (c + 1 < f->n && h->v[f->v[c + 1]].at < h->v[f->v[c]].at) c++;
        if (h->v[f->v[c]].at >= h->v[last].at) break;
        f->v[k] = f->v[c];
        k = c;
    }
    if (f->n) f->v[k] = last;
    return top;
}

/* The walk's start: the entries at i and below it due from `from` to
 * `by`, whose parents are due before `from` -- those are passed over
 * without looking at their records or sorting them (a deep page). */
static void front_from(frontier *f, const dueheap *h, size_t i, int64_t from, int64_t by) {
    if (i >= h->n || h->v[i].at > by) return;
    if (h->v[i].at >= from) {
        front_push(f, h, i);
        return;
    }
    front_from(f, h, 2 * i + 1, from, by);
    front_from(f, h, 2 * i + 2, from, by);
}

/* The records whose timers of their own are due at or before q->due_by,
 * by due (then id), a page of q->limit at a time after the cursor ("AT|ID"
 * as list_entered's, and from q->due_after): the heap walked earliest
 * first, so a page costs a pass over the entries due before it (none of
 * their records read) and O(page log) -- the tick's ask for the few due,
 * and a page of a listing in due order, are both small however many
 * records wait. Every entry due at the time of the page's last is taken
 * too, then sorted, since the heap orders ties by nothing. */
static void list_due(const lf_memdb *db, const lf_list_query *q, lf_list_cb *cb,
                     void *arg) {
    const dueheap *h = &db->due;
    size_t limit = q->limit ? q->limit : 100, n = 0, cap = 0;
    int64_t after = 0;
    const char *after_id = NULL;
    frontier f = {0};
    ixent *hit = NULL;
    /* A cursor we did not make lists nothing rather than anything. */
    bool ok = !q->cursor || cursor_at(q->cursor, &after, &after_id);
    int64_t from = after_id && after > q->due_after ? after : q->due_after;
    if (ok) front_from(&f, h, 0, from, q->due_by);
    while (f.n && (n < limit || h->v[f.v[0]].at <= hit[n - 1].at)) {
        size_t i = front_pop(&f, h);
        for (size_t c = 2 * i + 1; c <= 2 * i + 2; c++)
            if (c < h->n && h->v[c].at <= q->due_by) front_push(&f, h, c);
        const ixent *e = &h->v[i];
        if (!due_live(e) || (after_id && ix_cmp(after, after_id, e) >= 0)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            hit = lf_xrealloc(hit, cap * sizeof *hit);
        }
        hit[n++] = *e;
    }
    if (n) qsort(hit, n, sizeof *hit, by_time);
    size_t shown = n < limit ? n : limit;
    char cursor[AT_CURSOR_LEN], *next = NULL;
    if (shown && (n > shown || f.n)) {
        cursor_of(&hit[shown - 1], cursor);
        next = cursor;
    }
    const lf_record **page = lf_xmalloc((shown + 1) * sizeof *page);
    for (size_t i = 0; i < shown; i++) page[i] = hit[i].s->rec;
    free(hit);
    free(f.v);
    cb(LF_OK, NULL, page, shown, next, arg);
    free(page);
}

void lf_memdb_list(const lf_memdb *db, const lf_list_query *q, lf_list_cb *cb,
                   void *arg) {
    if (q->entered_by && q->state && !q->parent && !q->timed) {
        list_entered((lf_memdb *)db, q, cb, arg);
        return;
    }
    if (q->timed && q->due_by) {
        list_due(db, q, cb, arg);
        return;
    }
    if (!q->parent) {
        list_index(db, q, cb, arg);
        return;
    }
    size_t limit = q->limit ? q->limit : 100;
    /* A parent's children come from their own (small) set. */
    const kids *k = lf_map_get(&db->by_parent, q->parent);
    size_t cap = k ? k->n : 0;
    /* One more than the page: it tells there is a next one. */
    size_t keep = limit < db->by_id.len ? limit + 1 : db->by_id.len + 1;
    newest h = {lf_xmalloc(keep * sizeof *h.v), 0, keep};
    for (size_t i = 0; i < cap; i++) {
        const slot *s = k->v[i];
        if (s->rec->deleted) continue;
        const lf_record *r = s->rec;
        if (q->state && strcmp(r->state, q->state) != 0) continue;
        if (q->repo && (!r->repo || strcmp(r->repo, q->repo) != 0)) continue;
        if (q->cursor && !after_cursor(r, q->cursor)) continue;
        keep_newest(&h, r);
    }
    size_t n = h.n;
    qsort(h.v, n, sizeof *h.v, newer_first);
    char cursor[LF_TS_LEN + LF_ID_LEN + 2], *next = NULL;
    if (n > limit) {
        const lf_record *last = h.v[limit - 1];
        snprintf(cursor, sizeof cursor, "%s|%s", last->updated_at, last->id);
        next = cursor;
        n = limit;
    }
    cb(LF_OK, NULL, h.v, n, next, arg);
    free(h.v);
}

/* ---- audit -------------------------------------------------------------- */

void lf_memdb_audit(const lf_memdb *db, const char *record_id, uint64_t after,
                    size_t limit, lf_audit_cb *cb, void *arg) {
    if (!limit) limit = 1000;
    const slot *s = NULL;
    if (record_id && !(s = lf_map_get(&db->by_id, record_id))) {
        char err[128];
        snprintf(err, sizeof err, "Record not found: %s", record_id);
        cb(LF_NOT_FOUND, err, NULL, NULL, 0, after, arg);
        return;
    }
    if (limit > db->nlines) limit = db->nlines ? db->nlines : 1;
    const char **lines = lf_xmalloc(limit * sizeof *lines);
    size_t *lens = lf_xmalloc(limit * sizeof *lens), n = 0;
    uint64_t *seqs = lf_xmalloc(limit * sizeof *seqs), last = after;
    if (s) {
        for (size_t i = 0; i < s->nseq && n < limit; i++)
            if (s->seqs[i] > after) seqs[n++] = s->seqs[i];
    } else {
        for (uint64_t seq = after + 1; seq <= db->nlines && n < limit; seq++) seqs[n++] = seq;
    }
    if (n) last = seqs[n - 1];
    char *block, err[256];
    if (lines_of(db, seqs, n, lines, lens, &block, err, sizeof err) < 0)
        cb(LF_UNAVAILABLE, err, NULL, NULL, 0, after, arg);
    else
        cb(LF_OK, NULL, lines, lens, n, last, arg);
    free(block);
    free(seqs);
    free(lines);
    free(lens);
}
