/* workflow.h -- a compiled workflow graph: states, ordered edges, the
 * initial state and the terminal states.
 *
 * Workflows are data, written in Lua (policies/workflows/<name>.lua) and
 * compiled by src/rules into this structure. The core only answers
 * questions about the graph; it never sees Lua. Edge order is preserved
 * because LoopForge's "Allowed from" message lists targets in table order. */
#ifndef LF_WORKFLOW_H
#define LF_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include "buf.h"

typedef struct lf_edge {
    int from, to;
    bool engine;        /* added by a retry for its escalation: taken by the
                           engine only, not listed in "Allowed from" */
} lf_edge;

/* Who may leave or enter a state (workflow `roles`): an actor needs one
 * of the listed roles; an empty list lets anyone. */
typedef struct lf_gate {
    char **leave, **enter;
    int nleave, nenter;
    char **kids;        /* entering needs every child in one of these */
    int nkids;
    bool kids_auto;     /* and the engine moves the record here by itself
                           once its children are there */
} lf_gate;

/* A durable timer: a record that stays in `state` for `after_us` moves
 * along the edge to `to` (an ordinary request, actor "timer:<state>"). */
typedef struct lf_timer_def {
    int state, to;
    int64_t after_us;
    char *trigger;
} lf_timer_def;

/* Retries of a failure state: a record in `state` is moved to `to` after
 * a backoff (initial x factor^attempts, at most max_us) while fewer than
 * `max` attempts were made (attempts: its transitions state -> to); after
 * that it is moved to `escalate` (trigger LF_RETRY_EXHAUSTED). Without a
 * backoff (initial_us 0) the retries are the caller's (a CI re-run): the
 * engine only counts them, refuses one past the budget and escalates. */
#define LF_RETRY_EXHAUSTED "retry.exhausted"
typedef struct lf_retry_def {
    int state, to, escalate, max;
    int64_t initial_us, max_us;
    double factor;
    double jitter;          /* 0..1: each backoff moved by up to this
                               fraction, the same for a record's attempt
                               on every store and restart */
    char *trigger;
} lf_retry_def;

/* A budget: at most `max` transitions into `state` by one actor ('a') or
 * by the people behind them ('p': an agent counts for its principal)
 * within `within_us`, counted by the store (core/entry.h counters). */
typedef struct lf_budget_def {
    int state, max;
    char per;
    int64_t within_us;
} lf_budget_def;

typedef struct lf_workflow {
    char *name;
    char **states;          /* index is the state id, declaration order */
    bool *terminal;         /* per state */
    int nstates;
    int initial;            /* state id, -1 until set */
    lf_edge *edges;         /* declaration order */
    int nedges;
    lf_timer_def *timers;   /* declaration order */
    int ntimers;
    lf_retry_def *retries;
    int nretries;
    lf_gate *gates;         /* per state, NULL when no state has a gate */
    lf_budget_def *budgets;
    int nbudgets;
    /* Break-glass (`override`): a co-signer required; a review timer
     * that moves an unacknowledged override's record to `escalate`. */
    bool override_co_signer;
    int64_t override_review_us; /* 0 = no review timer */
    int override_escalate;      /* state id, -1 = none */
    /* open_records = { per, max }: at most `open_max` records of this
     * workflow open (not closed) at once per actor ('a') or per person
     * behind them ('p'); 0 = no limit. */
    int open_max;
    char open_per;
    bool children;          /* declared `children`: the engine loads a
                               record's children by state for its gates
                               and guards */
} lf_workflow;

lf_workflow *lf_workflow_new(const char *name);
void lf_workflow_free(lf_workflow *wf);

/* Returns the new state's id, or -1 if the name is empty or already used. */
int lf_workflow_add_state(lf_workflow *wf, const char *name);
/* State id by name, -1 if unknown. */
int lf_workflow_state(const lf_workflow *wf, const char *name);
/* Returns 0, or -1 if either id is out of range or the edge exists. */
int lf_workflow_add_edge(lf_workflow *wf, int from, int to);
bool lf_workflow_has_edge(const lf_workflow *wf, int from, int to);
bool lf_workflow_is_terminal(const lf_workflow *wf, int state);
/* Adds a timer; returns 0, or -1 if a state is out of range or the
 * workflow has no edge state -> to. */
int lf_workflow_add_timer(lf_workflow *wf, int state, int to, int64_t after_us,
                          const char *trigger);
/* Adds a retry (r's trigger is copied). Returns 0; LF_RETRY_BAD_VALUE
 * for a negative max or duration, a factor under 1, a jitter outside
 * 0..1 (NaN is neither), or no trigger; LF_RETRY_BAD_EDGE unless the
 * workflow has the edge state -> to and escalate is another state of it
 * (and state has no retry yet). The edge state -> escalate is added as an
 * engine edge when the workflow does not declare it. */
enum { LF_RETRY_BAD_VALUE = -1, LF_RETRY_BAD_EDGE = -2 };
int lf_workflow_add_retry(lf_workflow *wf, const lf_retry_def *r);
/* The retry declared for `state`, or NULL. */
const lf_retry_def *lf_workflow_retry(const lf_workflow *wf, int state);
/* True when from -> to exists only for the engine (a retry's escalation). */
bool lf_workflow_engine_edge(const lf_workflow *wf, int from, int to);
/* Adds `role` to who may leave (enter false) or enter `state`. Returns 0,
 * or -1 for a bad state or an empty role. */
int lf_workflow_add_gate(lf_workflow *wf, int state, bool enter, const char *role);
/* Declares an override review moving records to `escalate` after
 * `review_us`: adds engine edges into it from every non-terminal state
 * that has none. Returns 0, or -1 for a bad state or duration. */
int lf_workflow_set_review(lf_workflow *wf, int64_t review_us, int escalate);
/* Adds `child_state` to the states every child must be in before a
 * record enters `state`. Returns 0, or -1. */
int lf_workflow_add_kids_gate(lf_workflow *wf, int state, const char *child_state);
/* The children gate of entering `to`, given the children by state
 * (`kids`: JSON {"total":N,"STATE":n,...}). Returns true when it lets the
 * record in, else false with the reason appended to `why`. */
bool lf_workflow_kids_ok(const lf_workflow *wf, int to, const char *kids, lf_buf *why);
/* The role gates of from -> to for an actor holding `roles` (comma
 * separated, NULL = none). Returns NULL when they let it through, else
 * the state whose gate refuses, with the reason appended to `why`. */
const char *lf_workflow_gate(const lf_workflow *wf, int from, int to, const char *actor,
                             const char *roles, lf_buf *why);
/* True when the comma-separated `roles` holds `role`. */
bool lf_roles_have(const char *roles, const char *role);
/* The backoff before attempt n (0 for the first retry), with the
 * declared jitter for record `id` (NULL: none): a fraction in
 * [-jitter, +jitter] drawn from the id and n, so concurrent failures
 * spread out and every store computes the same time. */
int64_t lf_retry_backoff(const lf_retry_def *r, int n, const char *id);
/* A duration: digits and a unit, s, m, h or d ("90s", "48h"). Returns
 * the microseconds, or -1. */
int64_t lf_duration_parse(const char *s);

/* Structural checks a loadable workflow must pass: an initial state, no
 * self-loops, no edge into the initial state, no edge out of a terminal
 * state, every state reachable from the initial one, every non-terminal
 * state has a way out. Appends one line per problem ("message\n") to
 * `problems` and returns how many there were. */
int lf_workflow_check(const lf_workflow *wf, lf_buf *problems);

/* LoopForge's message, byte for byte:
 *   "Invalid transition: A → B. Allowed from A: x, y"
 * with "none (terminal)" when A has no outgoing edge. `to` is a name
 * because the caller may ask for a state this workflow does not have. */
void lf_workflow_invalid_msg(const lf_workflow *wf, int from, const char *to,
                             lf_buf *out);

/* How far along the lifecycle a state is: the longest path to it from
 * the initial state once the edges that lead back (to a state on the way
 * there, found depth-first in edge order: "retry after a fix") are set
 * aside. ranks[] gets one value per state; unreachable states get -1.
 * Observations use it to move forward only (docs/http.md). */
void lf_workflow_ranks(const lf_workflow *wf, int *ranks);

/* The shortest path from -> to over the workflow's edges but the engine's
 * (breadth first,
 * edge order breaking ties): path[0] = from, path[n-1] = to. Returns n,
 * or 0 when `to` cannot be reached (or from == to). path must hold
 * nstates ints. */
int lf_workflow_path(const lf_workflow *wf, int from, int to, int *path);

/* Renderings for `loopforge graph`. */
void lf_workflow_dot(const lf_workflow *wf, lf_buf *out);
void lf_workflow_mermaid(const lf_workflow *wf, lf_buf *out);

#endif
