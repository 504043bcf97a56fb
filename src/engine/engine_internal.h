/* engine_internal.h -- what loopforge's own front-ends (the server, the
 * CLI) need from the engine beyond the public API. Not installed. */
#ifndef LF_ENGINE_INTERNAL_H
#define LF_ENGINE_INTERNAL_H

#include "../loopforge.h"
#include "../rules/rules.h"
#include "../core/map.h"
#include "../core/workflow.h"
#include "../store/store.h"

/* A transition the engine makes itself (a timer, a retry, an escalation):
 * it may take engine edges and is not held by role gates. */
void lf_engine_transition_internal(lf_engine *e, const lf_transition_req *req,
                                   lf_result_cb *cb, void *arg);
/* The record's next timer (workflow `timers` and `retries`, timers.c):
 * its due time, the state it moves to, its trigger. False when none. */
bool lf_record_timer(const lf_workflow *wf, const lf_record *rec, int64_t *due, int *to,
                     char *trigger, size_t cap);
/* What fire_due (serve's tick) keeps between ticks (timers.c): a retry
 * state without a backoff has nothing due but the escalation of a spent
 * budget, due when the record entered it, so a tick looks only at the
 * records that entered since `since` (0: at every one), and at every one
 * again from `full_at` on (both zeroed when the policies change). */
typedef struct lf_tick_memo {
    int64_t since, full_at;
    uint64_t listed;            /* records the ticks listed (lf_stats) */
    struct tick_ctx *parked;    /* a tick waiting for a turn of the loop
                                   before its next page (timers.c) */
} lf_tick_memo;
lf_tick_memo *lf_engine_tick_memo(lf_engine *e);
/* Ends a tick waiting for its next page: it fails LF_UNAVAILABLE (the
 * engine is closing). */
void lf_engine_tick_close(lf_engine *e);
/* The event loop the engine was given (lf_engine_config.base), or NULL. */
struct event_base *lf_engine_base(lf_engine *e);
/* A hook's schedule{}: a timer of record id's own, bound to `state` (the
 * record must still be there), firing `to` with `trigger` after_us from
 * now; a `noted` entry by `actor`. cb may be NULL (logged by the caller). */
void lf_engine_schedule(lf_engine *e, const char *id, const char *state, int64_t after_us,
                        const char *to, const char *trigger, const char *metadata,
                        const char *actor, lf_result_cb *cb, void *arg);
/* The store and the current policy set (explain reads budget counters). */
lf_store *lf_engine_store(lf_engine *e);
const lf_rules *lf_engine_rules(lf_engine *e);
/* Counts work in flight that lf_engine_settled waits for. */
void lf_engine_busy(lf_engine *e, int delta);
/* True when no transition is in flight, follow-ups and the engine's own
 * moves included: a one-shot host (the CLI) runs its loop until then. */
bool lf_engine_settled(const lf_engine *e);
/* Runs the current generation's routes over an inbound event. */
void lf_engine_route(lf_engine *e, const lf_event *ev, lf_route_result *out);
/* Tells cb of every entry the engine committed, once it is durable (the
 * server's event stream); NULL stops it. One watcher. */
typedef void lf_entry_watch_cb(const lf_entry *e, void *arg);
void lf_engine_watch(lf_engine *e, lf_entry_watch_cb *cb, void *arg);
/* The current generation described as JSON (lf_rules_json); caller frees. */
char *lf_engine_policies_json(lf_engine *e);

/* For import.c: commits an entry decided under the current policy set
 * (announced first, as every write), and a workflow of that set. */
void lf_engine_commit_entry(lf_engine *e, lf_entry *en, lf_store_cb *cb, void *arg);
/* For import.c: the records this engine is importing, by id (keys and
 * values the import's own). */
lf_map *lf_engine_importing(lf_engine *e);
const lf_workflow *lf_engine_workflow(lf_engine *e, const char *name);
int lf_engine_nworkflows(lf_engine *e);
const lf_workflow *lf_engine_workflow_at(lf_engine *e, int i);

#endif
