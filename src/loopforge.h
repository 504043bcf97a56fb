/* loopforge.h -- the public interface of the loopforge engine.
 *
 * An engine owns a store (memory:, file:PATH, redis://…, unix://…) and a
 * policy set (a directory of Lua files). Every operation completes
 * through a callback, exactly once, in the hiredis-async style; the
 * memory and journal stores complete before the call returns, the Redis
 * store later on the event base given at creation. Pointers handed to a
 * callback are valid only until the callback returns: copy what you keep.
 *
 * Out of memory: the library's allocations never fail back to you; one
 * that cannot be satisfied prints what it wanted and aborts the process,
 * as Redis does (src/core/mem.h). No result is ever "out of memory". The
 * exception is by design: the Lua sandbox's memory cap is a policy's
 * budget, and a policy that exceeds it fails (a guard denies).
 *
 * Only the functions marked LF_API are exported by libloopforge.so. */
#ifndef LOOPFORGE_H
#define LOOPFORGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LF_VERSION_MAJOR 0
#define LF_VERSION_MINOR 1
#define LF_VERSION_PATCH 0
#define LF_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

#define LF_API __attribute__((visibility("default")))

struct event_base;

/* Result codes. Their names (lf_code_name) are the stable codes of the
 * CLI's --json output and the HTTP API. */
typedef enum lf_code {
    LF_OK = 0,
    LF_NOT_FOUND,
    LF_INVALID_TRANSITION,
    LF_DENIED,
    LF_CONFLICT,
    LF_INVALID_REQUEST,
    LF_UNAVAILABLE,
    LF_DUPLICATE_REF,
    LF_IDEMPOTENCY_MISMATCH,    /* a used idempotency key, another request */
    LF_CODE__COUNT
} lf_code;

LF_API const char *lf_code_name(lf_code code);
LF_API const char *lf_version(void);

typedef struct lf_engine lf_engine;
typedef struct lf_record lf_record;

/* Record accessors (the struct is private). */
LF_API const char *lf_record_id(const lf_record *r);
LF_API const char *lf_record_state(const lf_record *r);
LF_API uint64_t lf_record_version(const lf_record *r);
LF_API const char *lf_record_ref(const lf_record *r);
LF_API const char *lf_record_updated_at(const lf_record *r);  /* ISO 8601 UTC */
LF_API const char *lf_record_parent(const lf_record *r);      /* NULL = none */
/* The record as JSON (LoopForge's key order); caller frees. */
LF_API char *lf_record_json(const lf_record *r);
/* The same with only the last max_transitions history entries (0: all);
 * when some are left out, "transitions_total" gives their whole count. */
LF_API char *lf_record_json_tail(const lf_record *r, size_t max_transitions);

typedef struct lf_engine_config {
    const char *store;          /* URL; NULL: $LOOPFORGE_STORE, else
                                   "file:./var/loopforge.journal" */
    const char *policies;       /* directory; NULL: $LOOPFORGE_POLICIES,
                                   else "./policies" */
    struct event_base *base;    /* needed by asynchronous stores, and by
                                   hooks' notify{} POSTs (without a base
                                   they are skipped, with a warning) */
    size_t lua_instructions;    /* budget per guard/hook call; 0 = default */
    size_t lua_memory;          /* bytes per policy set; 0 = default */
    size_t lua_time_ms;         /* wall-clock per guard/hook call, ten times that
                                 * per policy file; 0 = default (1000) */
    const char *signing_key;    /* PEM file of an Ed25519 private key that
                                   signs checkpoints (loopforge keygen); NULL:
                                   $LOOPFORGE_SIGNING_KEY, else none */
    bool reader;                /* only reads: the journal is opened read-only
                                   (nothing created or cut), and a policy set
                                   that does not load is replaced by an empty
                                   one (writes then fail) instead of an error */
} lf_engine_config;

/* The store URL an engine made from cfg opens: cfg->store, else
 * $LOOPFORGE_STORE, else "file:./var/loopforge.journal". */
LF_API const char *lf_engine_store_url(const lf_engine_config *cfg);

/* Returns NULL with a message in err (and *code set, if code is not
 * NULL: LF_UNAVAILABLE for a store that cannot be opened,
 * LF_INVALID_REQUEST for a bad URL or a broken policy set). */
LF_API lf_engine *lf_engine_new(const lf_engine_config *cfg, char *err, size_t errlen,
                                lf_code *code);
LF_API void lf_engine_free(lf_engine *e);

/* The outcome of a request. */
typedef struct lf_result {
    bool success;
    lf_code code;
    const char *error;          /* NULL on success */
    const char *previous_state; /* NULL when unknown */
    const char *new_state;      /* NULL unless the state changed */
    const lf_record *record;    /* the record after the request, or NULL */
    const char *decisions;      /* JSON array text: every guard that was
                                   consulted, [{policy, verdict, reason}] */
    bool dry_run;               /* nothing was committed */
    bool duplicate;             /* a repeated idempotency key: this is the
                                   first request's result; nothing changed */
    const char *violation;      /* an observation the rules would have
                                   refused: {"rule":…,"reason":…}, or NULL */
    bool observation;           /* the request was an observation (a fact
                                   from GitHub): the two below are set */
    bool changed;               /* it taught the record something or moved it */
    const char *stale;          /* why it was older than what the record
                                   knew (it moved nothing), or NULL */
} lf_result;

typedef void lf_result_cb(const lf_result *res, void *arg);

/* The result as a JSON object; caller frees. Keys: success, code, error,
 * previous_state, new_state, record, decisions, dry_run, duplicate,
 * violation, and for an observation changed and stale. */
LF_API char *lf_result_json(const lf_result *res);
/* The same with the record's history cut to its last max_transitions
 * entries (0: all), as lf_record_json_tail does. */
LF_API char *lf_result_json_tail(const lf_result *res, size_t max_transitions);

typedef struct lf_create_req {
    const char *ref;            /* required */
    const char *repo;           /* NULL = null */
    bool has_ref_number;
    int64_t ref_number;
    bool auto_merge;
    const char *labels;         /* JSON object of strings, NULL = {} */
    const char *metadata;       /* JSON object, NULL = {} */
    const char *actor;          /* NULL = "anonymous" */
    const char *workflow;       /* NULL = "loopforge" */
    const char *idempotency_key;    /* a repeat returns the first result */
    const char *parent;         /* the id of the record this one belongs to
                                   (it must exist), NULL = none */
    const char *principal;      /* a credential's word on the human behind
                                   the actor, NULL = as config.lua's
                                   identities say (open_records) */
    bool observed;              /* a fact (a webhook: the PR was opened):
                                   never refused by open_records, only
                                   counted */
} lf_create_req;

typedef struct lf_transition_req {
    const char *id;             /* record id */
    const char *to;             /* target state */
    const char *trigger;        /* required, e.g. "pr.opened" */
    const char *metadata;       /* JSON object, NULL = {}; the keys pr_url
                                   (string) and pr_number (integer) also
                                   set the record's fields */
    const char *actor;          /* NULL = "anonymous" */
    bool dry_run;               /* evaluate everything, commit nothing: the
                                   result (and its code) is what a real
                                   request would get now */
    const char *idempotency_key;    /* a repeat (same key) returns the first
                                   result and changes nothing, across
                                   restarts and processes sharing a store */
    bool observed;              /* a fact, not a request (a webhook saying a
                                   PR *was* merged): the record follows it
                                   even where the workflow has no edge or a
                                   guard denies; the entry then carries a
                                   `violation` naming the rule and reason */
    uint64_t expected_version;  /* 0 = any; else only if the record is still
                                   at this version (LF_CONFLICT names the
                                   version it is at) */
    const char *roles;          /* the actor's roles, comma separated
                                   ("maintainer,breakglass"), NULL = none:
                                   a workflow's role gates and guards
                                   (t.actor_roles) see them, the entry
                                   keeps them */
    bool roles_verified;        /* they come from a credential (a token),
                                   not from the caller's word */
    const char *override_reason;    /* break-glass: pass guards that deny
                                   (never the graph or a role gate); needs
                                   the role "breakglass"; audited */
    const char *co_signer;      /* a second person for an override, or NULL */
    const char *actor_kind;     /* what a credential says the actor is
                                   ("human", "agent", "app"), NULL = as
                                   config.lua's identities say */
    const char *principal;      /* the human an agent acts for, likewise */
} lf_transition_req;

LF_API void lf_engine_create(lf_engine *e, const lf_create_req *req, lf_result_cb *cb,
                             void *arg);
LF_API void lf_engine_transition(lf_engine *e, const lf_transition_req *req,
                                 lf_result_cb *cb, void *arg);
LF_API void lf_engine_get(lf_engine *e, const char *id, lf_result_cb *cb, void *arg);
LF_API void lf_engine_find_by_ref(lf_engine *e, const char *ref, lf_result_cb *cb,
                                  void *arg);
/* An audited tombstone: later reads find nothing; history stays in the
 * audit log. */
LF_API void lf_engine_delete(lf_engine *e, const char *id, const char *actor,
                             lf_result_cb *cb, void *arg);
/* The same, only if the record is still at expected_version (0 = any). */
LF_API void lf_engine_delete_version(lf_engine *e, const char *id, const char *actor,
                                     uint64_t expected_version, lf_result_cb *cb,
                                     void *arg);

typedef struct lf_list_query {
    const char *state;          /* NULL = any */
    const char *repo;           /* NULL = any */
    size_t limit;               /* 0 = 100 */
    const char *cursor;         /* from a previous page, or NULL */
    const char *parent;         /* NULL = any; else only its children (and
                                   then neither state nor repo) */
    bool timed;                 /* only records with timers of their own
                                   (scheduled by a hook, an override's
                                   review); alone, like parent */
    int64_t entered_by;         /* with state: only the records that entered
                                   it at or before this time (us since the
                                   epoch; their last history entry), for
                                   the timers' tick. A hint: the embedded
                                   stores answer just those, oldest first;
                                   Redis just those, newest first (but on
                                   a store an older version began, the
                                   whole state the first time it is asked
                                   about), and the whole state when repo
                                   is given too. In pages either way, and
                                   on the embedded stores the first asks
                                   about a large state answer empty pages
                                   with a cursor while they index it.
                                   0 = any */
    int64_t entered_after;      /* with entered_by: and after this time
                                   (the tick's window on a retry state,
                                   timers.c); 0 = any */
    int64_t due_by;             /* with timed: only the records with one
                                   of their own timers due at or before
                                   this time (us), for serve's tick. A
                                   hint: the embedded stores answer just
                                   those, earliest first (then by id);
                                   Redis those and any an older version
                                   wrote, latest first (earliest first
                                   when oldest_first is asked); in pages
                                   either way.
                                   0 = any */
    bool oldest_first;          /* with entered_by: oldest first; with
                                   due_by: earliest due first; ties by
                                   id, as the embedded stores always
                                   answer (a page of the timers' listing
                                   stops on it). Redis, while it fills a
                                   state's entered index or scores the
                                   records with timers of their own by
                                   due (the first ask about each on a
                                   store an older version began),
                                   answers empty pages with a cursor */
    int64_t due_after;          /* with due_by: and due at or after this
                                   time, for a page of the timers' listing
                                   (Redis: with oldest_first). 0 = any */
} lf_list_query;

/* Newest updated_at first. next_cursor is NULL on the last page. */
typedef void lf_list_cb(lf_code code, const char *error, const lf_record *const *records,
                        size_t n, const char *next_cursor, void *arg);
LF_API void lf_engine_list(lf_engine *e, const lf_list_query *q, lf_list_cb *cb,
                           void *arg);

/* A page of the audit log as NDJSON lines (without newlines), in seq
 * order: entries with seq > after, at most limit (0 = 1000); for one
 * record when record_id is not NULL. `last_seq` is the seq of the last
 * line given (pass it as `after` for the next page); n == 0 at the end. */
typedef void lf_audit_cb(lf_code code, const char *error, const char *const *lines,
                         const size_t *lens, size_t n, uint64_t last_seq, void *arg);
LF_API void lf_engine_audit(lf_engine *e, const char *record_id, uint64_t after,
                            size_t limit, lf_audit_cb *cb, void *arg);

/* The loaded policy set: generation id (sha256 hex). */
LF_API const char *lf_engine_generation(const lf_engine *e);

/* Reloads the policy directory into a fresh sandbox. The new generation
 * replaces the old only if it loads and lints whole; otherwise the old
 * keeps serving and `error` lists every problem as "file:line: message"
 * (code LF_INVALID_REQUEST). A successful reload is an audit entry
 * (kind policy_loaded, naming old and new generation ids). */
typedef void lf_reload_cb(lf_code code, const char *error, const char *old_generation,
                          const char *new_generation, void *arg);
LF_API void lf_engine_reload(lf_engine *e, const char *actor, lf_reload_cb *cb,
                             void *arg);

/* Where the engine reports what no result carries: hook errors,
 * follow-up outcomes and what became of hooks' notifications. Default:
 * one line on stderr. Never stdout. Called on the engine's thread, from
 * inside engine calls and event callbacks: it must not free the engine. */
typedef enum lf_log_level {
    LF_LOG_DEBUG,
    LF_LOG_INFO,
    LF_LOG_WARN,
    LF_LOG_ERROR
} lf_log_level;
typedef void lf_log_fn(lf_log_level level, const char *msg, void *ud);
LF_API void lf_engine_set_log(lf_engine *e, lf_log_fn *fn, void *ud);

/* Counters since the engine was created. */
#define LF_LATENCY_BUCKETS 12
typedef struct lf_stats {
    uint64_t transitions[LF_CODE__COUNT];   /* requests by outcome code */
    uint64_t guard_evals;                   /* guard calls */
    uint64_t guard_ns;                      /* time spent evaluating guards */
    uint64_t evaluations;                   /* transitions that ran >= 1 guard */
    /* Those evaluations by latency: bucket i counts the ones that took at
     * most lf_latency_bound_us(i) microseconds (and more than bucket
     * i-1's bound); the last bucket is unbounded. */
    uint64_t evaluation_hist[LF_LATENCY_BUCKETS];
    uint64_t hooks_run, hook_errors;
    uint64_t violations;                    /* observations the rules refused */
    uint64_t duplicates;                    /* repeated idempotency keys */
    uint64_t followups;
    uint64_t reloads_ok, reloads_failed;
    /* Hooks' notify{} POSTs: answered 2xx, or not (an error status, a
     * timeout, no connection, a bad URL, no event base, cancelled). */
    uint64_t notify_sent, notify_failed;
    uint64_t appended;                      /* entries this engine appended */
    uint64_t timer_records;                 /* records the timers' ticks listed */
    /* The journal's lock, shared with other processes: store operations
     * that waited for it, and those that gave up after 5 s, changing
     * nothing (a process stopped while holding it?). */
    uint64_t lock_waits, lock_timeouts;
    /* The journal's fdatasyncs that made commits durable: with group
     * commit one covers every commit written before it, so appended /
     * flushes is how many a flush carries. */
    uint64_t flushes;
} lf_stats;
LF_API void lf_engine_stats(const lf_engine *e, lf_stats *out);
/* Text answers (a checkpoint document): text on success, else error. */
typedef void lf_text_cb(lf_code code, const char *error, const char *text, void *arg);
/* Appends a signed checkpoint of the whole log (tree size, Merkle root,
 * head, time, key id, Ed25519 signature; docs/audit.md) and answers with
 * it as a standalone JSON document: {"seq","checkpoint","signed",
 * "public_key"}. The signature is made off the caller's thread: with an
 * event base the answer comes from the loop (or from the engine's next
 * write, if the loop does not run first), and entries written meanwhile
 * may come before the checkpoint, which states the log as it was when
 * asked; without a base the call waits for the signature. One at a time
 * (conflict while one is being made); invalid_request without a signing
 * key. */
LF_API void lf_engine_checkpoint(lf_engine *e, const char *actor, lf_text_cb *cb,
                                 void *arg);
/* Imports one record as LoopForge writes it (LoopRecord.to_dict(): its
 * record_id, ref, state, history with timestamps, labels, pr fields,
 * ci_status): a `created` entry and one `transition` per history item,
 * each with the original timestamp, actor "import:<actor>" and the
 * decision {"policy":"import"}. invalid_request for a record the workflow
 * does not allow, conflict for an id and duplicate_ref for a ref that
 * exist -- unless the record with that id is this one half imported (an
 * interrupted import: its entries so far all imported, the same moves at
 * the same times as the first ones here), which is finished. dry_run
 * checks all that and answers with the record it would make, writing
 * nothing. */
LF_API void lf_engine_import(lf_engine *e, const char *record_json, const char *actor,
                             bool dry_run, lf_result_cb *cb, void *arg);
/* Imports many records (loopforge import, POST /v1/import): `next` gives
 * each one's JSON in turn, NULL after the last (the text need only last
 * until the next call), and up to 64 are imported at once -- a journal
 * flushes their entries together, Redis gets their commits pipelined --
 * yet `each` gets every record's result in the order `next` gave them,
 * as lf_engine_import would one after the other; then `done` is called.
 * Records in one batch that share an id or a ref: the first wins, as one
 * after the other. */
typedef const char *lf_import_next_cb(void *arg);
LF_API void lf_engine_import_all(lf_engine *e, lf_import_next_cb *next, const char *actor,
                                 bool dry_run, lf_result_cb *each, void (*done)(void *arg),
                                 void *arg);

/* Durable timers (a workflow's `timers`): every record in a timed state,
 * with when its timer is due, soonest first, as {"now","timers":[{record_id,
 * state, to, trigger, due, due_now}],"fired":[...]} (without fire, a
 * listing, also "next_cursor": null, as lf_engine_timers); with fire, the
 * due ones move (in due order, actor "timer:<state>", the record's version
 * expected, so of several hosts ticking at once one moves it). now_us: the
 * time to act at (0: the clock's), which tests move instead of sleeping. */
LF_API void lf_engine_tick(lf_engine *e, int64_t now_us, bool fire, lf_text_cb *cb,
                           void *arg);
/* A part of the timers' listing (lf_engine_timers). Zeroed: all of them,
 * as lf_engine_tick lists them. */
#define LF_TIMERS_IDS_MAX 1000
typedef struct lf_timers_query {
    int64_t now_us;             /* the time to judge by; 0: the clock's */
    int64_t due_by_us;          /* only those due at or before it (0: any):
                                 * only the records that can be due by then
                                 * are read, as a tick reads them */
    const char *const *ids;     /* only these records' (nids; at most
                                 * LF_TIMERS_IDS_MAX) */
    size_t nids;
    size_t limit;               /* at most this many (0: all) ... */
    const char *cursor;         /* ... after a page's next_cursor: a page
                                 * reads about a page of records of each
                                 * timed state (listed oldest first) and of
                                 * those with timers of their own (by due;
                                 * on Redis, what can be due a little past
                                 * the page's last, looking twice as far
                                 * each time) */
} lf_timers_query;
/* The timers a query asks for, in due order (ties by record id), as
 * lf_engine_tick lists them, with "next_cursor" (null when no more
 * follow). LF_INVALID_REQUEST for a cursor this did not give or more
 * than LF_TIMERS_IDS_MAX ids. */
LF_API void lf_engine_timers(lf_engine *e, const lf_timers_query *q, lf_text_cb *cb,
                             void *arg);
/* The same, firing, but looking only at the records whose timers can be
 * due (those that entered a timed state at least its shortest timer
 * ago, and every record with timers of its own): a tick then costs what
 * is due, not every record in a timed state (on a Redis store an older
 * version began, from the second tick on: the first fills the index,
 * docs/redis.md). Its "timers" are the ones it looked at. serve ticks
 * with it, and so does `loopforge tick`. */
LF_API void lf_engine_fire_due(lf_engine *e, int64_t now_us, lf_text_cb *cb, void *arg);

/* Signed attestations of a record's merges: {"record_id","attestations":
 * [...]}, each an in-toto Statement v1 in a DSSE envelope (docs/audit.md);
 * invalid_request without a signing key, not_found for no such record. */
/* Acknowledges the break-glass overrides waiting for review on a record
 * (workflow `override.review`): their review timers end. Someone other
 * than the actor who overrode must do it (else LF_DENIED); a record with
 * none is LF_INVALID_REQUEST. Audited as a `noted` entry with the reason. */
LF_API void lf_engine_acknowledge(lf_engine *e, const char *id, const char *actor,
                                  const char *reason, lf_result_cb *cb, void *arg);

/* Why a record is where it is and what would move it: for its current
 * state, every way out judged now as a dry run by `actor` with `roles`
 * (each denial with its reason and, where the guard says, `requires`),
 * the roles that may leave the state, its next timer. Writes nothing.
 * Answers with JSON text (docs/http.md, "explain"). */
typedef struct lf_explain_req {
    const char *id;
    const char *actor;          /* NULL = "anonymous" */
    const char *roles;          /* comma separated, NULL = none */
    const char *trigger;        /* for guards that filter on it; NULL = "explain" */
} lf_explain_req;
LF_API void lf_engine_explain(lf_engine *e, const lf_explain_req *req, lf_text_cb *cb,
                              void *arg);
LF_API void lf_engine_attestations(lf_engine *e, const char *id, lf_text_cb *cb,
                                   void *arg);
/* The signing key's public half as PEM (caller frees), or NULL. */
LF_API char *lf_engine_public_key(const lf_engine *e);
/* Whether the engine has a signing key. */
LF_API bool lf_engine_can_sign(const lf_engine *e);

/* Upper bound of latency bucket i in microseconds (+infinity for the last):
 * 1 2 5 10 20 50 100 200 500 1000 5000 +inf. */
LF_API double lf_latency_bound_us(int i);

#ifdef __cplusplus
}
#endif
#endif
