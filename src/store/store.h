/* store.h -- the asynchronous storage interface every backend implements.
 *
 * A store persists audit entries and keeps the records they fold into
 * (lf_record_apply). Every operation completes through its callback
 * exactly once; memory: calls it before returning, and so does file:
 * opened without an event base (with one, a commit is answered once its
 * flush is done, and an operation that needs the lock while another
 * process holds it once the lock is ours: journal.c). Pointers
 * passed to a callback are valid only during the callback.
 *
 * commit is the single write path: creates, transitions, refusals and
 * tombstones are all entries. The store assigns seq and prev, computes
 * the hash (lf_entry_seal), and writes the entry, the record and its
 * indexes atomically, after checking:
 *   created     no record with this id (LF_CONFLICT), no live record
 *               with this ref (LF_DUPLICATE_REF, err names the existing id)
 *   transition,
 *   deleted     the record exists and its version is e->version - 1
 *               (LF_NOT_FOUND / LF_CONFLICT)
 *   denied,
 *   rejected    the record exists (version unchanged, no CAS)
 *   policy_loaded  nothing (no record)
 * and, for any kind, that no entry holds e->idempotency_key yet (else
 * LF_CONFLICT: the caller looks the key up and answers with that entry),
 * and that none of e->limits is reached (a budget, an open_records cap:
 * core/entry.h; else LF_DENIED, and the caller counts again).
 * find_by_ref finds a live record by its ref or by one of its aliases (an
 * alias names the record that added it last).
 * An entry the fold refuses (malformed) is LF_INVALID_REQUEST and leaves
 * nothing behind. A store call made from inside a callback may change
 * the record that callback was handed: copy what you need first.
 */
#ifndef LF_STORE_H
#define LF_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "../loopforge.h"
#include "../core/entry.h"
#include "../core/record.h"

typedef struct lf_store lf_store;

/* rec: the record after the operation (commit) or as found (get); NULL
 * when there is none. e: the sealed entry (commit only), else NULL. */
typedef void lf_store_cb(lf_code code, const char *err, const lf_record *rec,
                         const lf_entry *e, void *arg);

/* A budget counter's standing: n transitions since the time asked, the
 * earliest of them at oldest_us (0 if none). */
typedef void lf_count_cb(lf_code code, const char *err, uint64_t n, int64_t oldest_us,
                         void *arg);

/* What a store counts of its own work (the journal): operations that had
 * to wait for the lock other processes share, those that gave up after
 * lf_journal_lock_wait_ms, changing nothing, and the fdatasyncs that made
 * commits durable (group commit: one covers every commit written
 * before it). */
typedef struct lf_store_counts {
    uint64_t waited, gave_up, flushes;
} lf_store_counts;

typedef struct lf_store_type {
    const char *scheme;         /* "memory", "file", ... */
    void (*get)(lf_store *s, const char *id, lf_store_cb *cb, void *arg);
    void (*find_by_ref)(lf_store *s, const char *ref, lf_store_cb *cb, void *arg);
    void (*commit)(lf_store *s, lf_entry *e, lf_store_cb *cb, void *arg);
    void (*list)(lf_store *s, const lf_list_query *q, lf_list_cb *cb, void *arg);
    void (*audit)(lf_store *s, const char *record_id, uint64_t after, size_t limit,
                  lf_audit_cb *cb, void *arg);
    /* The entry committed with this idempotency key (cb's e, parsed from
     * the log) and its record as it is now; LF_NOT_FOUND if none. */
    void (*find_key)(lf_store *s, const char *key, lf_store_cb *cb, void *arg);
    /* A budget counter (lf_counter_key, core/entry.h) from since_us on:
     * kept by every commit, read in O(log n), shared by every process on
     * the store. */
    void (*count)(lf_store *s, const char *key, int64_t since_us, lf_count_cb *cb,
                  void *arg);
    /* get, for a request about to commit on the record: it may answer with
     * the record as this process last read or wrote it, unconfirmed (and
     * at once): a commit on a record another process moved meanwhile
     * fails its version check (LF_CONFLICT) and the caller reads it again
     * with get. NULL: get. */
    void (*get_for_update)(lf_store *s, const char *id, lf_store_cb *cb, void *arg);
    /* Its counts so far (lf_store_counts); NULL: none. */
    void (*counts)(lf_store *s, lf_store_counts *out);
    void (*free)(lf_store *s);
} lf_store_type;

struct lf_store {
    const lf_store_type *type;
};

/* Opens a store by URL: "memory:", "file:PATH",
 * "redis://[:password@]host:port/db" or "unix:///path/redis.sock?db=N"
 * (see docs/redis.md for the options). Returns NULL with err set; *code
 * is LF_INVALID_REQUEST for a URL we do not understand (or a redis URL
 * without an event base) and LF_UNAVAILABLE when the store cannot be
 * opened (a redis server that cannot be reached within the connect
 * timeout, a wrong password). */
lf_store *lf_store_open(const char *url, struct event_base *base, lf_code *code,
                        char *err, size_t errlen);
/* lf_store_open for a reader: the journal is opened read-only
 * (lf_journal_open_reader); other stores as lf_store_open. */
lf_store *lf_store_open_reader(const char *url, struct event_base *base, lf_code *code,
                               char *err, size_t errlen);

/* Backends (lf_store_open dispatches on the URL scheme). */
lf_store *lf_memory_open(void);
/* Opens or creates the journal at path (creating missing parent
 * directories), replays it, and cuts off a torn last line with a warning
 * on stderr. A corrupt line elsewhere is an error naming its line number.
 * With a `base`, commits are group-committed: appended at once, made
 * durable by a flusher thread, one fdatasync for every line appended
 * meanwhile, and acknowledged on `base` once their flush is done; without
 * one, each commit syncs before it returns. */
lf_store *lf_journal_open(const char *path, struct event_base *base, lf_code *code,
                          char *err, size_t errlen);
/* The same for reading only: nothing is created, cut or written (a
 * commit is invalid_request); a missing journal reads as empty. */
lf_store *lf_journal_open_reader(const char *path, lf_code *code, char *err,
                                 size_t errlen);

/* Tests only: called each time a catch-up (an open, or one of more than
 * 1 MiB) has folded whole lines without holding the lock, before it takes
 * the lock again for what came since (journal.c, journal_lock_caught_up).
 * NULL: nothing. */
extern void (*lf_journal_replayed_unlocked)(const char *path);
/* Tests only: called as a commit without group commit (no event base:
 * the Lua module) is about to flush its line, after giving the lock back
 * (journal.c, journal_sync). NULL: nothing. */
extern void (*lf_journal_flushing)(const char *path);

/* How long the journal waits for the lock another process holds before
 * the operation fails with LF_UNAVAILABLE, changing nothing: one parked
 * by a journal opened with an event base (`serve`, the CLI: the loop
 * never waits in flock, journal.c), an open, the Lua module's commit. No
 * process waits for good on one stopped holding the lock. 5000 ms; tests
 * shorten it. */
extern int lf_journal_lock_wait_ms;

/* The redis store: asynchronous, on `base`, which the caller dispatches
 * (callbacks fire from it, never before the call returns). The caller
 * keeps the base alive until the store is freed. Opening checks the
 * server once, synchronously, bounded by the connect timeout. */
lf_store *lf_redis_open(const char *url, struct event_base *base, lf_code *code,
                        char *err, size_t errlen);

/* Convenience wrappers. */
#define lf_store_get(s, id, cb, a) ((s)->type->get((s), (id), (cb), (a)))
#define lf_store_find_by_ref(s, r, cb, a) ((s)->type->find_by_ref((s), (r), (cb), (a)))
#define lf_store_commit(s, e, cb, a) ((s)->type->commit((s), (e), (cb), (a)))
#define lf_store_list(s, q, cb, a) ((s)->type->list((s), (q), (cb), (a)))
#define lf_store_audit(s, id, af, l, cb, a)                                              \
    ((s)->type->audit((s), (id), (af), (l), (cb), (a)))
#define lf_store_find_key(s, k, cb, a) ((s)->type->find_key((s), (k), (cb), (a)))
#define lf_store_count(s, k, t, cb, a) ((s)->type->count((s), (k), (t), (cb), (a)))
#define lf_store_get_for_update(s, id, cb, a)                                            \
    ((s)->type->get_for_update ? (s)->type->get_for_update((s), (id), (cb), (a))         \
                               : (s)->type->get((s), (id), (cb), (a)))
#define lf_store_free(s) ((s)->type->free(s))

#endif
