/* redis_commit.c -- the redis store's only write: one audit entry,
 * checked and written by one EVALSHA of the commit script.
 *
 * Redis's Lua has no sha256 and the audit chain needs prev = the hash of
 * the previous entry, so: the client seals, the script checks the head.
 *
 * The client folds the entry into its copy of the record (lf_record_apply
 * on a base read from Redis at version - 1: the store's cache, filled by
 * the get the engine always makes first, or a read of its own), seals the
 * entry on the tip of the log as it last sent it, and the script
 * compares: the record's version, and head == (seq - 1, prev). If the
 * head moved (another process committed), nothing is written and the
 * script answers with the head: the client re-seals on it and sends
 * again. A race for a place in the log is not the caller's conflict, so it
 * retries up to MAX_RACES times before giving up with LF_UNAVAILABLE. A
 * version mismatch is a real LF_CONFLICT: the engine re-validates.
 *
 * Pipelining: each commit is sealed on the one sent before it, so a
 * process never races itself and many commits are in flight at once. When
 * one of them is not written (refused, raced, NOSCRIPT), the ones sent
 * after it were chained on a hash that never made it into the log and
 * come back "head moved": `epoch` marks such a break, so that only the
 * first reply of a broken pipeline moves the tip back and the others are
 * re-sealed behind it, in order. Whatever the bookkeeping, the script's
 * head check is what keeps the chain whole. Commits on one record are
 * kept in order (rec_queue), so each folds on what the previous one left.
 *
 * docs/redis.md has the whole protocol and the key layout. */
#include "redis.h"
#include "../core/verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RACES 64            /* head-moved retries per commit */

/* What a commit does to the record, whatever its entry's kind is called:
 * the script knows modes, not kinds (redis_lua.c). */
typedef enum commit_mode {
    MODE_CREATE,
    MODE_MOVE,
    MODE_NOTE,
    MODE_DELETE,
    MODE_GLOBAL
} commit_mode;

static const char *const mode_names[] = {"create", "move", "note", "delete", "global"};

/* -1 for a kind this store does not know: refused, never guessed at. */
static int commit_mode_of(lf_entry_kind k) {
    switch (k) {
    case LF_ENTRY_CREATED: return MODE_CREATE;
    case LF_ENTRY_TRANSITION:
    case LF_ENTRY_OBSERVED:
    case LF_ENTRY_NOTED: return MODE_MOVE;
    case LF_ENTRY_DENIED:
    case LF_ENTRY_REJECTED: return MODE_NOTE;
    case LF_ENTRY_DELETED: return MODE_DELETE;
    case LF_ENTRY_POLICY_LOADED:
    case LF_ENTRY_CHECKPOINT: return MODE_GLOBAL;
    default: return -1;
    }
}

typedef struct commit_op {
    lf_rop op;
    lf_store_cb *cb;
    void *arg;
    commit_mode mode;
    lf_entry e;                 /* our copy; its strings live in strs */
    char *strs;
    bool fetching;              /* the command out reads the base */
    lf_record *next;            /* the record after the entry */
    char *before;               /* the record's state before */
    size_t had_aliases;         /* how many aliases the base had */
    bool had_timers;            /* the base is in the timed set */
    char score[24];             /* next's updated_at, us since the epoch */
    int64_t entered;            /* when next entered its state (us) */
    lf_buf line;                /* the sealed line */
    uint64_t epoch;             /* s->epoch when it was sealed */
    char pset[LF_HASH_LEN + 1]; /* the policy set it registers, or "" */
    int races;
    bool ordered;               /* holds its record's turn (rec_queue) */
} commit_op;

static void commit_send(lf_rop *op);
static void commit_start(commit_op *c);

/* One record's commits from this store, in the order they were made. At
 * most one is under way (reading its base, queued, on the wire); the
 * others wait here and each starts when the one before it is answered,
 * folding on what it left. Without this, a commit made before the
 * previous one on the same record landed would read a base that is
 * about to be outdated, and a single writer would conflict with itself.
 * Commits on different records are not held back. */
typedef struct rec_queue {
    bool busy;
    lf_rop_list waiting;
    char id[];                  /* the map's key */
} rec_queue;

/* True if c must wait for an earlier commit on its record. */
static bool recq_enter(lf_redis *s, commit_op *c) {
    rec_queue *q = lf_map_get(&s->recq, c->e.record_id);
    if (!q) {
        size_t n = strlen(c->e.record_id) + 1;
        q = lf_xcalloc(1, sizeof *q + n);
        memcpy(q->id, c->e.record_id, n);
        lf_map_put(&s->recq, q->id, q);
    }
    if (q->busy) {
        lf_redis_q_push(&q->waiting, &c->op);
        return true;
    }
    q->busy = c->ordered = true;
    return false;
}

/* c is answered: the next commit on its record may start. */
static void recq_leave(commit_op *c) {
    lf_redis *s = c->op.s;
    if (!c->ordered) return;
    c->ordered = false;
    rec_queue *q = lf_map_get(&s->recq, c->e.record_id);
    if (!q) return;
    q->busy = false;
    if (s->closing) return;     /* redis_free fails the waiting ones */
    commit_op *next = (commit_op *)lf_redis_q_pop(&q->waiting);
    if (!next) {
        lf_map_del(&s->recq, q->id);
        free(q);
        return;
    }
    q->busy = next->ordered = true;
    commit_start(next);
}

void lf_redis_recq_fail_all(lf_redis *s, const char *why) {
    lf_map *m = &s->recq;
    for (size_t i = 0; i < lf_map_span(m); i++) {
        rec_queue *q = lf_map_val(m, i);
        lf_rop *op;
        while (q && (op = lf_redis_q_pop(&q->waiting))) {
            lf_redis_fail(op, LF_UNAVAILABLE, why);
        }
    }
}

void lf_redis_recq_free(lf_redis *s) {
    lf_map *m = &s->recq;
    for (size_t i = 0; i < lf_map_span(m); i++)
        free(lf_map_val(m, i));
    lf_map_free(m);
}

static void commit_notify(lf_rop *op, lf_code code, const char *why) {
    commit_op *c = (commit_op *)op;
    c->cb(code, why, NULL, NULL, c->arg);
    recq_leave(c);
}

static void commit_destroy(lf_rop *op) {
    commit_op *c = (commit_op *)op;
    lf_redis_cmd_free(op);
    free(c->strs);
    lf_record_free(c->next);
    lf_buf_free(&c->line);
    free(c->before);
    free(c);
}

/* The entry's strings are borrowed from the caller (often from its
 * stack): they get a home of their own, in one block, before commit
 * returns. */
static void commit_own(commit_op *c, const lf_entry *e) {
    c->e = *e;
    c->strs = lf_entry_own(&c->e);
}

/* Folds the entry onto base (NULL for created): the record the script
 * will store. A fold the core refuses is the caller's malformed entry.
 * Returns 0, or -1 after failing the op. */
static int commit_fold(commit_op *c, const lf_record *base) {
    char err[256];
    int64_t us;
    lf_record *r = base ? lf_record_dup(base) : NULL;

    if (lf_record_apply(&r, &c->e, err, sizeof err) < 0) {
        lf_record_free(r);
        lf_redis_fail(&c->op, LF_INVALID_REQUEST, err);
        return -1;
    }
    c->next = r;
    c->had_aliases = base ? base->naliases : 0;
    c->had_timers = base && base->timers;
    if (base) c->before = lf_xstrdup(base->state);
    if (lf_ts_parse(r->updated_at, &us) < 0) us = 0;
    lf_fmt_int(us, c->score);
    if (!lf_record_entered(r, &c->entered)) c->entered = us;
    return 0;
}

/* The base the engine's get put in the cache, or a read of it. */
static void commit_prepare(commit_op *c) {
    lf_redis *s = c->op.s;
    const lf_record *base = lf_redis_cache_get(s, c->e.record_id);
    if (base && base->version + 1 == c->e.version) {
        if (commit_fold(c, base) == 0) commit_send(&c->op);
        return;
    }
    const char *ids[] = {c->e.record_id};
    lf_redis_format_read(&c->op, ids, 1);
    c->fetching = true;
    commit_send(&c->op);
}

/* The base read from Redis: a conflict decided on fresh data is final
 * (versions only grow); otherwise fold and commit. */
static void commit_fetched(commit_op *c, redisReply *r) {
    lf_redis *s = c->op.s;
    char msg[600];
    lf_record *base;
    const redisReply *one = lf_redis_read_one(r);
    lf_code code = lf_redis_record_reply(s, c->e.record_id, one, &base, msg, sizeof msg);

    c->fetching = false;
    c->op.script = LF_SCRIPT_COMMIT;
    if (code != LF_OK) {
        lf_redis_cache_del(s, c->e.record_id);
        lf_redis_fail(&c->op, code, msg);
        return;
    }
    lf_redis_cache_put(s, base, lf_redis_reply_h(one));
    if (base->version + 1 != c->e.version) {
        snprintf(msg, sizeof msg,
                 "Version conflict on %s: expected version "
                 "%" PRIu64 ", found %" PRIu64,
                 c->e.record_id, c->e.version - 1, base->version);
        lf_redis_fail(&c->op, LF_CONFLICT, msg);
        return;
    }
    if (commit_fold(c, base) == 0) commit_send(&c->op);
}

/* The entry's limits as the commit script reads them (ARGV 13 on, see
 * redis_lua.c), with the strings they need. */
typedef struct limit_args {
    char n[LF_INT_CHARS], max[LF_ENTRY_LIMITS][LF_INT_CHARS],
        since[LF_ENTRY_LIMITS][LF_INT_CHARS];
    lf_buf *keys;
    int nkeys;
} limit_args;

/* How many arguments the limits take (ARGV 13 on). */
static size_t limits_argc(const lf_entry *e) {
    size_t n = 1;
    for (int i = 0; i < e->nlimits; i++)
        n += e->limits[i].kind == 'c'   ? 9
             : e->limits[i].kind == 'o' ? 3
                                        : 3 + (size_t)e->limits[i].nstates;
    return n;
}

/* Appends the limits to argv at argc (their number first); open: the
 * record's open-records sets (lf_record_open_keys), nopen of them.
 * Returns the new argc; limits_free(la) once formatted. */
static int limits_format(lf_redis *s, const lf_entry *e, char open[][LF_COUNTER_KEY],
                         int nopen, limit_args *la, const char **argv, int argc) {
    char counters[2][LF_COUNTER_KEY], both[LF_COUNTER_KEY], *who;
    int ncount = e->nlimits ? lf_entry_counters(e, counters) : 0, n = 0, at = argc++;
    la->nkeys = 0;
    la->keys = e->nlimits ? lf_xcalloc(limits_argc(e), sizeof *la->keys) : NULL;
    for (int i = 0; i < e->nlimits; i++) {
        const lf_entry_limit *l = &e->limits[i];
        lf_fmt_int(l->max, la->max[i]);
        if (l->kind == 'k') {   /* the state indexes, then the children */
            lf_fmt_int(l->nstates, la->max[i]);
            argv[argc++] = "k";
            argv[argc++] = la->max[i];
            for (int j = 0; j < l->nstates; j++) {
                lf_redis_key_index(s, l->states[j], NULL, &la->keys[la->nkeys]);
                argv[argc++] = la->keys[la->nkeys++].p;
            }
            lf_redis_key_children(s, e->record_id, &la->keys[la->nkeys]);
            argv[argc++] = la->keys[la->nkeys++].p;
            n++;
            continue;
        }
        if (l->kind == 'o' && l->index < nopen) {
            argv[argc++] = "o";
            argv[argc++] = la->max[i];
            lf_redis_key_count(s, open[l->index], &la->keys[la->nkeys]);
            argv[argc++] = la->keys[la->nkeys++].p;
            n++;
            continue;
        }
        if (l->kind != 'c' || l->index >= ncount) continue;
        snprintf(both, sizeof both, "%s", counters[l->index]);
        if (!(who = lf_redis_counter_who(both))) continue;
        *who = 'b';
        lf_fmt_int(l->since, la->since[i]);
        argv[argc++] = "c";
        argv[argc++] = la->max[i];
        argv[argc++] = la->since[i];
        for (int j = 0; j < 2; j++) {   /* its own counter, then b's */
            const char *name = j ? both : counters[l->index];
            lf_redis_key_times(s, name, false, &la->keys[la->nkeys]);
            argv[argc++] = la->keys[la->nkeys++].p;
            lf_redis_key_times(s, name, true, &la->keys[la->nkeys]);
            argv[argc++] = la->keys[la->nkeys++].p;
            lf_redis_key_count(s, name, &la->keys[la->nkeys]);
            argv[argc++] = la->keys[la->nkeys++].p;
        }
        n++;
    }
    lf_fmt_int(n, la->n);
    argv[at] = la->n;
    return argc;
}

static void limits_free(limit_args *la) {
    for (int i = 0; i < la->nkeys; i++) lf_buf_free(&la->keys[i]);
    free(la->keys);
}

/* Formats the commit script's call for the sealed entry into c->op:
 * EVALSHA sha nkeys KEYS... ARGV..., in the layout redis_lua.c's commit
 * script reads. KEYS: the head, the list of the log that takes its seq
 * (P log:<n>) and the idempotency index, then
 * (for a record's entry) the record and its own log, then the indexes
 * the entry touches. ARGV: the sealed line (packed: redis_pack.c), its
 * seq, the head it expects (the compare-and-set), the record's version,
 * its indexes' scores and flags, ...; from ARGV 13 on, a move's new
 * aliases or a tombstone's ref and aliases. The record itself is not
 * sent: Redis keeps its entries, and a read folds them.
 *
 * c: a commit whose entry is sealed (c->e) and whose fold (c->next) is
 *    done; c->mode says what kind of write it is.
 * Out of memory aborts (core/mem.h). */
static void commit_format(commit_op *c) {
    lf_redis *s = c->op.s;
    const lf_entry *e = &c->e;
    const lf_record *r = c->next;
    lf_buf *k = s->commit_keys, *cnt = s->commit_counters;
    char counters[4][LF_COUNTER_KEY];
    int ncount = c->mode == MODE_MOVE ? lf_entry_counters(e, counters) : 0;
    if (ncount == 2) {
        /* The actor acting for itself: one member under both (redis.c's
         * redis_count). */
        char *a = lf_redis_counter_who(counters[0]), *p = lf_redis_counter_who(counters[1]);
        if (a && p && a - counters[0] == p - counters[1] && strcmp(a + 1, p + 1) == 0) {
            *a = 'b';
            ncount = 1;
        }
    }
    /* Its owner's open-records sets: in while it is open, out once closed
     * or deleted (ZADD and ZREM are idempotent: no need to know before). */
    int nopen = r ? lf_record_open_keys(r, counters + ncount) : 0;
    bool open = r && c->mode != MODE_DELETE && !r->closed_at[0];
    char seq[LF_INT_CHARS], ver[LF_INT_CHARS], nkeys[LF_INT_CHARS];
    size_t extra = 0, first_extra = 0;
    int argc = 0, keys = 3, ncnt = 0;
    char listed = '0';          /* the state after is known in P states */

    /* ARGV 13...: a move's new aliases; a tombstone's ref and aliases. */
    if (r && c->mode == MODE_MOVE) {
        first_extra = c->had_aliases;
        extra = r->naliases - first_extra;
    } else if (r && c->mode == MODE_DELETE) {
        extra = r->naliases + 1;
    }
    size_t cap = 3 + 22 + 12 + limits_argc(e) + extra;   /* EVALSHA sha n, KEYS, ARGV */
    const char **argv = lf_xmalloc(cap * sizeof *argv);
    size_t *lens = lf_xmalloc(cap * sizeof *lens);

    argv[argc++] = "EVALSHA";
    argv[argc++] = s->sha[LF_SCRIPT_COMMIT];
    argv[argc++] = nkeys;
    lf_redis_key_log(s, e->seq, &k[6]);
    argv[argc++] = s->k_head;
    argv[argc++] = k[6].p;
    argv[argc++] = s->k_idem;
    if (c->mode != MODE_GLOBAL) {
        lf_redis_key_rec(s, e->record_id, &k[0]);
        lf_redis_key_reclog(s, e->record_id, &k[1]);
        argv[argc++] = k[0].p;
        argv[argc++] = k[1].p;
        keys = 5;
    }
    if (r) {                    /* create, move, delete */
        const char *after = c->mode == MODE_DELETE ? r->state : e->to_state;
        const char *before = c->before ? c->before : after;
        listed = lf_redis_state_listed(s, after) ? '1' : '0';
        lf_redis_key_index(s, before, NULL, &k[2]);
        lf_redis_key_index(s, after, NULL, &k[3]);
        argv[argc++] = s->k_ref;
        argv[argc++] = k[2].p;
        argv[argc++] = k[3].p;
        keys = 8;
        if (r->repo) {
            lf_redis_key_index(s, before, r->repo, &k[4]);
            lf_redis_key_index(s, after, r->repo, &k[5]);
            argv[argc++] = k[4].p;
            argv[argc++] = k[5].p;
            keys = 10;
        }
        /* a budget counter as its times' chunks and tail and an older
         * version's zset; an open-records set as its zset */
        for (int i = 0; i < ncount + nopen; i++) {
            if (i < ncount) {
                lf_redis_key_times(s, counters[i], false, &cnt[ncnt]);
                argv[argc++] = cnt[ncnt++].p;
                lf_redis_key_times(s, counters[i], true, &cnt[ncnt]);
                argv[argc++] = cnt[ncnt++].p;
                keys += 2;
            }
            lf_redis_key_count(s, counters[i], &cnt[ncnt]);
            argv[argc++] = cnt[ncnt++].p;
            keys++;
        }
        if (r->parent) {
            lf_redis_key_children(s, r->parent, &k[7]);
            argv[argc++] = k[7].p;
            keys++;
        }
        lf_redis_key_entered(s, before, &k[8]);
        lf_redis_key_entered(s, after, &k[9]);
        argv[argc++] = k[8].p;
        argv[argc++] = k[9].p;
        argv[argc++] = s->k_timed;
        keys += 3;
    }
    lf_fmt_int(keys, nkeys);
    lf_fmt_int((int64_t)e->seq, seq);
    lf_fmt_int((int64_t)e->version, ver);
    int line_at = argc + 4;
    /* the policy set to register, unless this epoch's answers say it is */
    const char *ps = lf_redis_pack_line(s->pack, c->line.p, c->line.len, true, &s->packed);
    c->pset[0] = '\0';
    if (ps && !(s->pset_at == s->epoch + 1 && memcmp(s->pset, ps, LF_HASH_LEN) == 0)) {
        memcpy(c->pset, ps, LF_HASH_LEN);
        c->pset[LF_HASH_LEN] = '\0';
    }
    argv[argc++] = mode_names[c->mode];
    argv[argc++] = seq;
    argv[argc++] = e->prev;
    argv[argc++] = e->hash;
    argv[argc++] = s->packed.p;
    argv[argc++] = ver;
    argv[argc++] = c->score;
    argv[argc++] = e->record_id ? e->record_id : "";
    argv[argc++] = r ? r->ref : "";
    char flags[64] = {r && r->repo ? '1' : '0', r && r->parent ? '1' : '0',
                      r && r->timers && c->mode != MODE_DELETE ? '1'
                      : c->had_timers                           ? '-'
                                                                : '0',
                      (char)('0' + ncount), nopen ? (open ? '+' : '-') : '0',
                      r && r->closed_at[0] ? '1' : '0',
                      listed, '\0'};
    if (r) lf_fmt_int(c->entered, flags + 7);
    if (flags[2] == '1') {      /* its score among the records with timers */
        size_t at = strlen(flags);
        flags[at] = ';';
        lf_fmt_int(r->timers_due, flags + at + 1);
    }
    argv[argc++] = flags;
    argv[argc++] = e->idempotency_key ? e->idempotency_key : "";
    argv[argc++] = c->pset;
    limit_args la;
    argc = limits_format(s, e, counters + ncount, nopen, &la, argv, argc);
    if (c->mode == MODE_DELETE) argv[argc++] = r->ref;
    if (extra)
        for (size_t i = first_extra; i < r->naliases; i++) argv[argc++] = r->aliases[i];
    for (int i = 0; i < argc; i++) lens[i] = i == line_at ? s->packed.len : strlen(argv[i]);
    lf_redis_format(&c->op, argc, argv, lens);
    limits_free(&la);
    free(argv);
    free(lens);
}

/* Seals the entry on the tip and sends it; the tip moves to it, so the
 * next commit chains on this one before it has even been answered. */
static void commit_send(lf_rop *op) {
    commit_op *c = (commit_op *)op;
    lf_redis *s = op->s;
    if (!s->ac) {
        lf_redis_wait(op);
        return;
    }
    if (c->fetching) {
        lf_redis_write(op);
        return;
    }
    if (!s->tip_known) {
        lf_redis_wait_tip(op);
        return;
    }
    if (c->e.kind == LF_ENTRY_CHECKPOINT &&
        s->tip_seq > c->e.version + LF_CHECKPOINT_LAG) {
        /* A checkpoint states the first `version` entries, at most
         * LF_CHECKPOINT_LAG fewer than the log has (core/verify.h): the
         * log has grown too far past them (a tip below is stale, and the
         * script's answer corrects it). */
        lf_redis_fail(op, LF_CONFLICT, "the log grew past the checkpoint");
        return;
    }
    lf_entry_seal(&c->e, s->tip_seq + 1, s->tip_hash, &c->line);
    commit_format(c);
    c->epoch = s->epoch;
    s->tip_seq = c->e.seq;
    memcpy(s->tip_hash, c->e.hash, sizeof s->tip_hash);
    lf_redis_write(op);
}

/* The entry was not written. If it was the first of its pipeline to come
 * back so, everything sent after it is chained on a hash that is not in
 * the log: the tip goes back to where this one was sealed (or to the
 * head the server reported), and a new epoch tells the others that they
 * are fallout, to be re-sealed, not news about the head. */
static void commit_not_written(commit_op *c, uint64_t hseq, const char *hhash) {
    lf_redis *s = c->op.s;
    if (c->epoch != s->epoch || !s->tip_known) return;
    s->epoch++;
    if (hhash) {
        s->tip_seq = hseq;
        memcpy(s->tip_hash, hhash, LF_HASH_LEN);
    } else {
        s->tip_seq = c->e.seq - 1;
        memcpy(s->tip_hash, c->e.prev, LF_HASH_LEN);
    }
    s->tip_hash[LF_HASH_LEN] = '\0';
}

static void commit_noscript(lf_rop *op) {
    commit_op *c = (commit_op *)op;
    if (!c->fetching) commit_not_written(c, 0, NULL);   /* a base's read seals nothing */
    commit_send(op);
}

/* {'head', seq, hash}: somebody else took the place; re-seal. */
static void commit_raced(commit_op *c, const redisReply *r) {
    lf_redis *s = c->op.s;
    char msg[600], *end = NULL;
    bool news = c->epoch == s->epoch;
    if (r->elements != 3 || !lf_redis_is_str(r->element[1]) ||
        !lf_redis_is_str(r->element[2]) || r->element[2]->len != LF_HASH_LEN) {
        commit_not_written(c, 0, NULL);
        lf_redis_errf(s, msg, sizeof msg, "%s does not hold a log head", s->k_head);
        lf_redis_fail(&c->op, LF_UNAVAILABLE, msg);
        return;
    }
    uint64_t hseq = strtoull(r->element[1]->str, &end, 10);
    commit_not_written(c, hseq, r->element[2]->str);
    if (news && ++c->races > MAX_RACES) {
        lf_redis_errf(s, msg, sizeof msg,
                      "gave up after %d attempts to append "
                      "to the audit log: other writers kept moving its head",
                      MAX_RACES);
        lf_redis_fail(&c->op, LF_UNAVAILABLE, msg);
        return;
    }
    commit_send(&c->op);
}

/* 'ok' ({'ok', the record} for a note): the entry, the record and the
 * indexes are in. */
static void commit_done(commit_op *c, const redisReply *r) {
    lf_redis *s = c->op.s;
    lf_record *rec = NULL;
    char why[256];

    if (c->epoch == s->epoch) {      /* what it wrote, known (lf_redis.pset_at) */
        if (c->pset[0]) {
            memcpy(s->pset, c->pset, sizeof s->pset);
            s->pset_at = s->epoch + 1;
            lf_redis_pack_learn(s->pack, c->pset);
        }
        if (c->mode == MODE_CREATE || (c->mode == MODE_MOVE && c->before &&
                                       strcmp(c->before, c->e.to_state) != 0))
            lf_redis_state_listed_set(s, c->e.to_state);
    }
    switch (c->mode) {
    case MODE_GLOBAL: break;
    case MODE_NOTE:
        /* The record did not move; the script read it for us. */
        if (r->elements > 1 &&
            lf_redis_record_reply(s, c->e.record_id, r->element[1], &rec, why, sizeof why) ==
                LF_OK &&
            rec)
            lf_redis_cache_put(s, rec, lf_redis_reply_h(r->element[1]));
        else rec = NULL;
        break;
    case MODE_DELETE:
        lf_redis_cache_del(s, c->e.record_id);
        rec = c->next;          /* the tombstoned record; freed with c */
        break;
    default:
        rec = c->next;
        c->next = NULL;
        /* Redis holds what this entry wrote: h is its hash. */
        lf_redis_cache_put(s, rec, c->e.hash);
    }
    c->cb(LF_OK, NULL, rec, &c->e, c->arg);
    recq_leave(c);
    commit_destroy(&c->op);
}

static void commit_reply(lf_rop *op, redisReply *r) {
    commit_op *c = (commit_op *)op;
    lf_redis *s = op->s;
    char msg[600];

    if (c->fetching) {
        commit_fetched(c, r);
        return;
    }
    if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "ok") == 0) {
        commit_done(c, r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        !lf_redis_is_str(r->element[0])) {
        commit_not_written(c, 0, NULL);
        lf_redis_errf(s, msg, sizeof msg, "commit script: %s",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        lf_redis_fail(&c->op, LF_UNAVAILABLE, msg);
        return;
    }
    const char *st = r->element[0]->str;
    if (strcmp(st, "ok") == 0) {
        commit_done(c, r);
        return;
    }
    if (strcmp(st, "head") == 0) {
        commit_raced(c, r);
        return;
    }
    if (strcmp(st, "pset") == 0 && c->e.policy_set) {
        /* Another policy set has this one's first bytes (never met by
         * chance in practice): its lines are stored whole from now on. */
        lf_redis_pack_unref(s->pack, c->e.policy_set);
        commit_not_written(c, 0, NULL);
        commit_send(op);
        return;
    }

    commit_not_written(c, 0, NULL);
    lf_code code = LF_CONFLICT;
    if (strcmp(st, "idem") == 0) {
        snprintf(msg, sizeof msg, "Idempotency key already used: %s",
                 c->e.idempotency_key ? c->e.idempotency_key : "");
    } else if (strcmp(st, "exists") == 0) {
        snprintf(msg, sizeof msg, "Record id already exists: %s", c->e.record_id);
    } else if (strcmp(st, "dupref") == 0 && r->elements == 2 &&
               lf_redis_is_str(r->element[1])) {
        snprintf(msg, sizeof msg, "Duplicate ref: %s already has record %s",
                 c->next ? c->next->ref : "?", r->element[1]->str);
        code = LF_DUPLICATE_REF;
    } else if (strcmp(st, "logpos") == 0 && r->elements == 2) {
        /* (the head check passed: nothing of ours wrote those lines) */
        lf_redis_errf(s, msg, sizeof msg,
                      "%s:%" PRIu64 " holds %lld lines, more than its head (seq %" PRIu64
                      ") says: written by something other than loopforge",
                      s->k_log, (c->e.seq - 1) / LF_REDIS_LOG_LIST,
                      r->element[1]->type == REDIS_REPLY_INTEGER ? r->element[1]->integer : -1,
                      c->e.seq - 1);
        code = LF_UNAVAILABLE;
    } else if (strcmp(st, "limit") == 0 && r->elements == 2 &&
               lf_redis_is_str(r->element[1])) {
        /* a budget or cap reached (core/entry.h): the engine counts and refuses */
        snprintf(msg, sizeof msg, "Denied: a limit reached as it was committed (%s counted)",
                 r->element[1]->str);
        code = LF_DENIED;
    } else if (strcmp(st, "notfound") == 0) {
        lf_redis_cache_del(s, c->e.record_id);
        snprintf(msg, sizeof msg, "Record not found: %s", c->e.record_id);
        code = LF_NOT_FOUND;
    } else if (strcmp(st, "version") == 0 && r->elements == 2 &&
               lf_redis_is_str(r->element[1])) {
        lf_redis_cache_del(s, c->e.record_id);   /* our base is stale */
        snprintf(msg, sizeof msg,
                 "Version conflict on %s: expected version "
                 "%" PRIu64 ", found %s",
                 c->e.record_id, c->e.version - 1, r->element[1]->str);
    } else {
        lf_redis_errf(s, msg, sizeof msg, "commit script: unexpected answer '%s'", st);
        code = LF_UNAVAILABLE;
    }
    lf_redis_fail(&c->op, code, msg);
}

static const lf_rop_type commit_type = {
    .send = commit_send,
    .reply = commit_reply,
    .notify = commit_notify,
    .noscript = commit_noscript,
    .destroy = commit_destroy,
};

void lf_redis_commit(lf_store *st, lf_entry *e, lf_store_cb *cb, void *arg) {
    lf_redis *s = (lf_redis *)st;
    commit_op *c = lf_xcalloc(1, sizeof *c);
    c->op.type = &commit_type;
    c->op.s = s;
    c->op.script = LF_SCRIPT_COMMIT;
    c->cb = cb;
    c->arg = arg;
    commit_own(c, e);
    int mode = commit_mode_of(e->kind);
    if (mode < 0) {
        lf_redis_fail(&c->op, LF_INVALID_REQUEST,
                      "the redis store does not know this "
                      "kind of audit entry");
        return;
    }
    c->mode = (commit_mode)mode;
    if (c->mode != MODE_GLOBAL &&
        (!e->record_id || !*e->record_id || strpbrk(e->record_id, "{}"))) {
        lf_redis_fail(&c->op, LF_INVALID_REQUEST, "entry without a valid record id");
        return;
    }
    /* Refusals and global entries change no record: no turn to wait. */
    if (c->mode != MODE_GLOBAL && c->mode != MODE_NOTE && recq_enter(s, c)) return;
    commit_start(c);
}

static void commit_start(commit_op *c) {
    switch (c->mode) {
    case MODE_GLOBAL:
    case MODE_NOTE: /* no fold: the record does not move */ commit_send(&c->op); break;
    case MODE_CREATE:
        if (commit_fold(c, NULL) == 0) commit_send(&c->op);
        break;
    default: /* move, delete: fold onto the base */ commit_prepare(c);
    }
}
