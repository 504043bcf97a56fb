/* rules.h -- the Lua host: loads a policies directory into a sandboxed
 * lua_State and compiles what it finds.
 *
 * This is the only layer that touches the Lua C API. A loaded directory
 * is a "policy set generation": its id is the sha256 (hex) of the
 * contents of every loaded file, in load order (sorted by path). */
#ifndef LF_RULES_H
#define LF_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../core/buf.h"
#include "../core/record.h"
#include "../core/workflow.h"

typedef struct lf_rules lf_rules;

/* Loads every *.lua file under DIR/workflows, DIR/guards, DIR/hooks,
 * DIR/lib, DIR/routes and DIR/config.lua (sorted by path; only
 * workflows/ is required); the generation id covers all of them. On any
 * problem returns NULL and appends every problem found to `errors`, one
 * per line, as "file:line: message". A broken file never yields a
 * partial rule set. */
lf_rules *lf_rules_load(const char *dir, lf_buf *errors);
void lf_rules_free(lf_rules *r);

/* Workflow by name; NULL name means the default workflow "loopforge".
 * Returns NULL if there is no such workflow. */
const lf_workflow *lf_rules_workflow(const lf_rules *r, const char *name);
int lf_rules_nworkflows(const lf_rules *r);
const lf_workflow *lf_rules_workflow_at(const lf_rules *r, int i);

/* ---- policies (guards) and hooks -------------------------------------- *
 *
 * Besides DIR/workflows, a policy set holds DIR/guards/NAME.lua (policies
 * that may veto a transition) and DIR/hooks/NAME.lua (run after a commit),
 * plus DIR/config.lua (settings of the shipped policies, see
 * docs/policies.md) and DIR/lib/NAME.lua (modules policies may require, as
 * may modules under the Lua library directory lua/). Guards and hooks
 * run in load order (sorted path, then order within the file). */

typedef struct lf_rules_limits {
    size_t instructions;        /* per guard or hook call; 0 = default */
    size_t memory;              /* bytes per lua_State; 0 = default */
    size_t time_ms;             /* wall-clock per call (x10 per file); 0 = default */
} lf_rules_limits;

/* lf_rules_load with explicit limits (NULL = defaults) and the Lua library
 * directory for require (NULL = $LOOPFORGE_LUA_PATH, else ./lua, else
 * LF_DATADIR/lua). */
lf_rules *lf_rules_load_opts(const char *dir, const lf_rules_limits *limits,
                             const char *lua_dir, lf_buf *errors);

/* An empty policy set (no workflow, no policy; generation "none"): what a
 * reader runs under when the policy directory cannot be loaded. Every
 * write then fails on its unknown workflow. */
lf_rules *lf_rules_none(void);

/* A transition as guards see it. Everything Lua gets is a read-only view
 * or a copy: a guard cannot change the record. */
/* Who a name is (config.lua `identities`, docs/policies.md "Identities").
 * kind: "human", "agent", "app" (a GitHub App: a name ending in "[bot]"),
 * "engine" (timer:, hook:, engine:, route:) or "unknown" (anonymous);
 * person: the one it is across sources (for an agent, the agent);
 * principal: the human an agent acts for, or NULL. Strings borrowed from
 * the rules or from `name`. */
typedef struct lf_identity {
    const char *name, *kind, *person, *principal;
} lf_identity;

void lf_rules_identity(const lf_rules *r, const char *name, lf_identity *out);

typedef struct lf_eval {
    const lf_record *record;    /* as loaded, before the transition */
    const char *from, *to, *trigger, *actor;
    const char *metadata;       /* JSON object text of the request; NULL = {} */
    int64_t now_us;             /* the engine's clock for this request */
    const char *roles;          /* the actor's roles, comma separated, or NULL */
    const char *children;       /* the record's children by state, JSON
                                   {"total":N,"STATE":n,...}, or NULL */
    const char *actor_kind;     /* what a credential says the actor is */
    const char *principal;      /* (a token's kind= and principal=), or NULL */
    /* Optional: the record's workflow, one of this rule set's, and from
     * and to as its state ids (from_id -1 for none): the filters then
     * match by bits, not by name. NULL: by name. */
    const lf_workflow *wf;
    int from_id, to_id;
} lf_eval;

typedef struct lf_decision {
    const char *policy;         /* the guard's name: the rule set's own,
                                   valid while the rule set is */
    bool allow;
    char *reason;               /* NULL when allowed without a reason */
    char *
        requires;             /* a denial's "what would satisfy it"
                                   (JSON object), or NULL */
} lf_decision;

typedef struct lf_verdict {
    bool allow;                 /* true unless some guard denied */
    lf_decision *decisions;     /* one per guard that matched, in order */
    size_t ndecisions;
    int denied_by;              /* index of the first deny, or -1 */
    char *annotations;          /* merged JSON object text, or NULL */
    uint64_t ns;                /* what running the guards took */
} lf_verdict;

/* Runs every guard whose `on` filter matches, in order, all of them (so
 * the audit shows every reason), each under the instruction budget and
 * the memory cap. Fail closed: a guard that raises, runs out of budget
 * or returns something that is not a verdict denies, with the error as
 * the reason. Never fails itself; *out must be freed. */
void lf_rules_evaluate(lf_rules *r, const lf_eval *in, lf_verdict *out);
void lf_verdict_free(lf_verdict *v);
/* [{"policy":…,"verdict":"allow"|"deny","reason":…|null},…] */
void lf_verdict_json(const lf_verdict *v, lf_buf *out);

/* After a commit. */
typedef struct lf_hook_event {
    const lf_record *record;    /* as committed */
    const char *previous, *state, *trigger, *actor;
    const char *metadata;       /* the committed entry's metadata */
    const char *decisions;      /* JSON array text */
    bool violation;             /* an observation the rules would refuse */
    const char *roles;          /* the actor's roles, comma separated, or NULL */
    const char *children;       /* as lf_eval's */
    const lf_workflow *wf;      /* as lf_eval's wf, from_id, to_id */
    int previous_id, state_id;
} lf_hook_event;

/* A transition a hook asks for; the engine runs it after the hooks, with
 * "hook:<name>" as actor. */
typedef struct lf_followup {
    char *hook, *to, *trigger, *metadata;   /* metadata: JSON text or NULL */
    char *record;                           /* another record (e.g. the
                                               parent), or NULL: this one */
    int64_t after_us;                       /* schedule{}: fire this much
                                               later (a timer), 0 = now */
} lf_followup;

/* An HTTP POST a hook asks for with notify{}: the engine sends it on the
 * host's event loop after the hooks and never waits for it
 * (src/engine/notify.c). http:// only: no TLS. */
#define LF_NOTIFY_TIMEOUT_MS 5000       /* when the hook gives none */
#define LF_NOTIFY_MAX_TIMEOUT_MS 60000
typedef struct lf_notification {
    char *hook;                 /* the hook's name, for the log */
    char *url;                  /* http://HOST[:PORT][/PATH][?QUERY] */
    char *body;                 /* body_len bytes (and a NUL after them) */
    size_t body_len;
    char *content_type;
    int timeout_ms;             /* the whole exchange: connect to reply */
} lf_notification;

typedef struct lf_hook_report {
    size_t ran;                 /* hooks whose filter matched */
    size_t errors;              /* of those, how many raised or ran out */
    char *messages;             /* one "hook NAME: error" line per error */
    lf_followup *followups;
    size_t nfollowups;
    lf_notification *notifications;     /* in the order hooks asked */
    size_t nnotifications;
} lf_hook_report;

/* Runs every matching hook in order; an error in one is recorded and the
 * next still runs. Never fails itself; *out must be freed. */
void lf_rules_run_hooks(lf_rules *r, const lf_hook_event *ev, lf_hook_report *out);
void lf_hook_report_free(lf_hook_report *rep);

/* ---- routes: inbound events become engine requests -------------------- *
 *
 * DIR/routes/NAME.lua files hold `route{}` definitions: a filter on the
 * event (name, action) and a function from the decoded payload to
 * requests. Routes load, lint and hot-reload with the rest of the set. */

typedef struct lf_event {
    const char *source;         /* "github" */
    const char *name;           /* e.g. the X-GitHub-Event header */
    const char *delivery;       /* e.g. X-GitHub-Delivery, or NULL */
    const char *payload;        /* the raw JSON body */
    size_t payload_len;
} lf_event;

typedef enum lf_route_op { LF_ROUTE_CREATE, LF_ROUTE_TRANSITION } lf_route_op;

/* One request a route asks for. Strings are owned by the result. */
typedef struct lf_route_request {
    lf_route_op op;
    char *route;                /* the route's name */
    char *ref;                  /* create: the new record's ref; transition:
                                   the record's ref or one of its aliases */
    char *repo;                 /* create */
    bool has_ref_number;        /* create */
    int64_t ref_number;
    char *labels;               /* create: JSON object, or NULL */
    char *to, *trigger;         /* transition */
    char *metadata;             /* JSON object or NULL; may carry pr_url,
                                   pr_number and aliases */
    char *actor;                /* e.g. "github:<sender.login>" */
} lf_route_request;

typedef struct lf_route_result {
    lf_route_request *requests; /* in the order the routes produced them */
    size_t nrequests;
    char *ignored;              /* why nothing was asked for, or NULL:
                                   "no route for EVENT[.ACTION]", else the
                                   matching routes' reasons, "; "-joined */
    char *error;                /* "route NAME: message" for each route that
                                   failed ("; "-joined; its requests are
                                   dropped, the others' kept), or
                                   "payload: ..." (no route ran); or NULL */
} lf_route_result;

/* Runs every route whose filter matches the event, in load order, each
 * under the budgets. Never fails itself; *out must be freed. */
void lf_rules_route(lf_rules *r, const lf_event *ev, lf_route_result *out);
void lf_route_result_free(lf_route_result *out);

/* Listing for `loopforge policies` and GET /v1/policies. */
typedef enum lf_rule_kind { LF_RULE_GUARD, LF_RULE_HOOK, LF_RULE_ROUTE } lf_rule_kind;
typedef struct lf_rule_info {
    lf_rule_kind kind;
    const char *name, *file;
    int line;
    const char *on;             /* the filter, readable: "to=merged" */
    const char *description;    /* or NULL */
    bool enabled;               /* false: turned off in config.lua */
} lf_rule_info;
int lf_rules_count(const lf_rules *r, lf_rule_kind kind);
/* The whole set as JSON: {generation, files, workflows, guards, hooks,
 * routes}, each rule with name, file, line, on, description, enabled. */
void lf_rules_json(const lf_rules *r, lf_buf *out);
/* Its workflows whole: {generation, workflows: [{name, initial, states,
 * terminal, edges: [{from, to, engine, guards: [names]}]}]}. */
void lf_rules_workflows_json(const lf_rules *r, lf_buf *out);
void lf_rules_info(const lf_rules *r, lf_rule_kind kind, int i, lf_rule_info *out);

/* 64 lowercase hex characters. */
const char *lf_rules_generation(const lf_rules *r);
/* Number of files loaded, and their paths in load order. */
int lf_rules_nfiles(const lf_rules *r);
const char *lf_rules_file_at(const lf_rules *r, int i);
/* The sha256 (hex) of file i's bytes as loaded. */
const char *lf_rules_file_digest(const lf_rules *r, int i);

#endif
