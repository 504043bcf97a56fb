/* internal.h -- what the modules of src/rules share: the lf_rules
 * structure, compiled rules and filters, and the entry points each module
 * offers the others. Never installed, never included outside src/rules.
 *
 *   rules.c    loading a policy directory: files, generation id, workflows,
 *              the order everything happens in
 *   sandbox.c  the lua_State: allocator, budgets, safe libraries, require,
 *              the DSL built-ins (workflow, policy, hook, allow, deny, ...)
 *   dsl.c      compiling policy{} / hook{} / route{} tables and config.lua
 *   view.c     what Lua sees of a record and a request
 *   luajson.c  JSON <-> Lua values
 *   eval.c     running guards and hooks, verdicts, listing
 *   route.c    running routes: inbound events become requests
 *   describe.c the set as JSON, for the CLI and the server */
#ifndef LF_RULES_INTERNAL_H
#define LF_RULES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <lua.h>

#include "rules.h"
#include "../core/mem.h"
#include "../core/map.h"
#include "luajson.h"

#define LF_RULES_MEM_LIMIT (64u << 20)     /* bytes per lua_State */
#define LF_RULES_CALL_BUDGET 1000000         /* instructions per call */
#define LF_RULES_LOAD_BUDGET 10000000        /* instructions per file */
#define LF_RULES_HOOK_EVERY 1000            /* instructions per tick */
#define LF_RULES_CALL_MS 1000            /* wall-clock ms per call */

/* Registry keys (light userdata would do as well; strings read better in
 * a debugger and cost nothing at run time: they are only used at load). */
#define LF_REG_TAGS "lf.tags"       /* weak: DSL table -> line*4 + kind */
#define LF_REG_LIBS "lf.libs"       /* module name -> compiled lib chunk */
#define LF_REG_LOADED "lf.loaded"     /* module name -> its value */

/* What a DSL call tagged a table as; a tag is stored as
 * line * LF_TAG_KINDS + kind. */
enum { LF_TAG_WORKFLOW = 1, LF_TAG_POLICY = 2, LF_TAG_HOOK = 3, LF_TAG_ROUTE = 4 };
#define LF_TAG_KINDS 8

/* The kinds of file in a policy directory, in the order of their
 * directories' names (the load order is the path order). */
typedef enum lf_file_kind {
    LF_FILE_CONFIG,
    LF_FILE_GUARD,
    LF_FILE_HOOK,
    LF_FILE_LIB,
    LF_FILE_ROUTE,
    LF_FILE_WORKFLOW
} lf_file_kind;

/* One field of an `on` filter: n == 0 matches anything. A trigger pattern
 * may end in '*' (prefix[i]: match v[i] as a prefix). */
typedef struct lf_strset {
    char **v;
    bool *prefix;
    int n;
} lf_strset;

/* Guards and hooks filter transitions (from .. workflow); routes filter
 * inbound events (event .. source). */
typedef struct lf_filter {
    lf_strset from, to, trigger, workflow;
    lf_strset event, action, source;
} lf_filter;

/* A guard's or hook's filter against one workflow of the set, by state
 * id (lf_filters_prepare): bit s of from / to says whether state s
 * matches. For workflows of at most 64 states; others match by name. */
typedef struct lf_state_match {
    uint64_t from, to;
    bool from_any;              /* no from filter: a created record matches */
    bool wf;                    /* the workflow filter takes this workflow */
    bool bits;                  /* from / to are set (at most 64 states) */
} lf_state_match;

/* What a transition (or a committed one, for hooks) is, for the filters:
 * the names, and where the caller knows them the workflow's index in the
 * set and the states' ids in it (w -1: by name only). */
typedef struct lf_on {
    const char *from, *to, *trigger, *workflow;
    int w, from_id, to_id;
} lf_on;

/* A compiled policy (guard), hook or route. Lua values live in the
 * registry. */
typedef struct lf_rule {
    lf_rule_kind kind;
    char *name, *description, *on;
    int file, line;
    lf_filter filter;
    int fn;                     /* check / run (hooks and routes) */
    int validate;               /* or LUA_NOREF */
    int defaults;               /* raw defaults table, or LUA_NOREF */
    int cfg;                    /* frozen settings passed to fn */
    bool enabled;
    lf_state_match *sm;         /* per workflow of the set (guards, hooks) */
} lf_rule;

/* What Lua may look at right now: one evaluation or one hooks run. */
typedef struct lf_scope {
    bool hooks;                 /* e (after a commit) rather than t */
    const lf_record *rec;
    const char *from, *to, *trigger, *actor;    /* e: previous, state */
    const char *roles;          /* the actor's, comma separated, or NULL */
    const char *children;       /* the record's children by state (JSON), or NULL */
    const char *actor_kind, *principal;     /* a credential's, or NULL */
    int64_t now_us;
    bool violation;
    const char *meta;           /* request / committed entry metadata */
    const char *decisions;      /* hooks only */
} lf_scope;

/* One person or agent of config.lua's identities; names map to it. */
typedef struct lf_ident {
    char *kind, *person, *principal;
} lf_ident;

struct lf_rules {
    lua_State *L;
    lf_map idents;                /* name (owned key) -> lf_ident */
    lf_ident **ident_v;           /* every lf_ident, to free them */
    int nident;
    size_t mem_used, mem_limit;   /* custom allocator accounting */
    long ticks_left;              /* budget of the running call, in ticks */
    long call_budget;             /* instructions per guard or hook call */
    long call_ms;                 /* wall-clock ms per call (x10 per file) */
    int64_t time_ns;              /* the running call's time budget */
    int64_t deadline_ns;          /* its end, CLOCK_MONOTONIC; 0 until its
                                   * first tick (sandbox.c) */
    char spent[200];              /* "" or why the running call's budget is
                                   * gone: raised again at every instruction */
    char *lua_dir;                /* for require; NULL = none usable */

    lf_workflow **wfs;
    int *wf_line;                 /* workflow{} line, per workflow */
    int *wf_file;                 /* index into files, per workflow */
    int nwfs;

    char **files;                 /* load order */
    lf_file_kind *file_kind;
    int nfiles;

    lf_rule *rules;               /* guards, hooks, routes, in load order */
    int nrules;
    int *guards, nguards;         /* indexes into rules, enabled or not */
    int *hooks, nhooks;
    int *routes, nroutes;

    char generation[65];
    char (*digests)[65];          /* sha256 of each file, per file */

    /* Run time. Views of a record carry the epoch they were made in and
     * are dead once it has passed; per-call caches carry the call. */
    uint32_t epoch, call;
    lf_scope scope;
    bool in_scope;
    unsigned lazy[2];             /* fields cached in t's / e's field table */
    int ref_t, ref_e;             /* the proxies handed to guards / hooks */
    int ref_tf, ref_ef;           /* their field tables */
    int ref_allow;                /* the shared result of allow() */
    int ref_verdict_mt, ref_request_mt, ref_view_mt, ref_hist_mt;
    int ref_route_req_mt, ref_ignore_mt;    /* create{}/transition{}, ignore() */
    int ref_notify_mt;            /* what notify{} returns */
    int ref_run[2];               /* the guard and hook runners (eval.c), or 0 */
};

/* Per-file loading state. */
typedef struct load_ctx {
    lf_rules *r;
    const char *path;
    int file;                     /* index into r->files */
    int last_line;                /* for problems with no better line */
    lf_buf *errors;
    int nerr;
    int expect;                   /* LF_TAG_* the file must return */
} load_ctx;

/* Removes Lua heap addresses ("table: 0x55d0…" becomes "table") from a
 * message, in place, and returns it: no internal address leaves the
 * process in an error or a reason. */
char *lf_scrub(char *msg);
void lf_problem(load_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* sandbox.c */
lua_State *lf_sandbox_new(lf_rules *r);
void lf_budget_reset(lf_rules *r, long instructions);
void lf_freeze_top(lua_State *L);                    /* read-only proxy */
int lf_tag_of(lua_State *L, int idx, int *line);     /* LF_TAG_* or 0 */
/* Gives the function at fn its own globals (reading through to the
 * sandbox's). */
void lf_set_env(lua_State *L, int fn);

/* dsl.c */
void lf_dsl_compile(load_ctx *c, int idx, int tag, int line);
/* What did not load, so that the cross-file checks skip what it would
 * make look wrong: rules (config entries of rules it defined), workflows
 * (state names). */
enum { LF_PARTIAL_RULES = 1, LF_PARTIAL_WORKFLOWS = 2, LF_PARTIAL_ALL = 3 };
void lf_dsl_finish(lf_rules *r, lf_buf *errors, int *nerr, int config_file,
                   const char *config_src, int config_ref, int partial);
void lf_rule_free(lf_rule *rule);
bool lf_filter_match(const lf_filter *f, const char *from, const char *to,
                     const char *trigger, const char *workflow);
bool lf_event_match(const lf_filter *f, const char *source, const char *event,
                    const char *action);
/* At the end of a load: each guard's and hook's filter against each
 * workflow's states, so a transition is matched by bits. */
void lf_filters_prepare(lf_rules *r);
/* The lf_on of a transition (w, from_id, to_id found from wf and the
 * names when wf is one of the set's). */
void lf_on_init(const lf_rules *r, lf_on *on, const lf_workflow *wf, int from_id,
                int to_id, const char *from, const char *to, const char *trigger,
                const char *workflow);
/* Whether an enabled guard or hook applies to a transition. */
bool lf_rule_applies(const lf_rule *x, const lf_on *on);

/* route.c */
void lf_route_builtins(lf_rules *r);   /* create{}, transition{}, ignore() */

/* view.c */
void lf_views_init(lf_rules *r);
void lf_scope_enter(lf_rules *r, const lf_scope *s);
void lf_scope_leave(lf_rules *r);
void lf_push_record_view(lf_rules *r);
void lf_call_done(lf_rules *r);
void lf_ctx_reset(lf_rules *r);
/* eval.c: the guard and hook runners, made at the end of a load. */
void lf_eval_prepare(lf_rules *r);

/* luajson.c (besides luajson.h) */
/* Pushes the value of JSON text (NULL: {}); malformed text pushes an
 * empty table and returns false. May raise a memory error. */
bool lf_json_push(lua_State *L, const char *json);
/* The string member `key` of the top-level object of json[0..len),
 * unescaped into out (NUL-terminated); false if there is none, it is not
 * a string, or it does not fit in cap bytes. Decodes nothing else. */
bool lf_json_member_string(const char *json, size_t len, const char *key, char *out,
                           size_t cap);
/* True if name is a string value (or, with keys, a key) of the top-level
 * object or array of json. */
bool lf_json_mentions(const char *json, const char *name, bool keys);
/* Where the value of member `key` of the top-level object starts, or NULL. */
const char *lf_json_member(const char *json, const char *key);

#endif
