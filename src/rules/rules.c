/* rules.c -- loading a policy directory into a policy set generation.
 *
 * A policy directory DIR holds (each directory searched recursively)
 *   DIR/config.lua           settings of policies and hooks (optional)
 *   DIR/guards/NAME.lua      policies: may veto a transition
 *   DIR/hooks/NAME.lua       hooks: run after a commit
 *   DIR/lib/NAME.lua         modules the others may require
 *   DIR/routes/NAME.lua      routes: inbound events become requests
 *   DIR/workflows/NAME.lua   workflows (required)
 * Every one of these files is part of the generation: its id is the
 * sha256 of their contents in path order, which is also the order they
 * are reported in and loaded in (config.lua, guards, hooks, routes,
 * workflows; lib modules are compiled first, so any file can require
 * them, and run when required).
 *
 * Loading is all or nothing: every problem in every file is collected as
 * "file:line: message" and a single problem means no rule set, so a
 * reload can never half-apply a broken policy directory. This file owns
 * the order of things and the workflow DSL; sandbox.c the lua_State,
 * dsl.c policies, hooks, routes and config. */
#include "internal.h"
#include "../core/entry.h"
#include "../core/hash.h"
#include "../core/text.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>

#ifndef LF_DATADIR
#define LF_DATADIR "/usr/local/share/loopforge"
#endif

#define LF_RULES_MAX_DEPTH 8               /* subdirectory nesting */

char *lf_scrub(char *msg) {
    static const char *const kinds[] = {"table: 0x", "function: 0x", "userdata: 0x",
                                        "thread: 0x", "function: builtin: 0x"};
    char *w = msg;
    for (const char *p = msg; *p;) {
        size_t skip = 0;
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds && !skip; k++) {
            size_t n = strlen(kinds[k]);
            if (strncmp(p, kinds[k], n) == 0 && isxdigit((unsigned char)p[n])) {
                const char *colon = strchr(kinds[k], ':');
                size_t keep = (size_t)(colon - kinds[k]);
                memmove(w, p, keep);
                w += keep;
                skip = n;
                while (isxdigit((unsigned char)p[skip])) skip++;
            }
        }
        if (skip) p += skip;
        else *w++ = *p++;
    }
    *w = '\0';
    return msg;
}

#define xrealloc lf_xrealloc

void lf_problem(load_ctx *c, int line, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lf_buf_printf(c->errors, "%s:%d: %s\n", c->path, line, msg);
    c->nerr++;
}

static void problem(load_ctx *c, int line, const char *msg) {
    lf_problem(c, line, "%s", msg);
}

/* ---- running one file ------------------------------------------------------ */

/* Message handler: make sure every error carries a position. Lua already
 * prefixes errors raised with a position ("src:12: ..."); errors raised
 * with level 0, non-string errors, and our budget error do not, so they
 * get the line of the innermost frame of this file. */
static int on_error(lua_State *L) {
    const char *chunk = lua_tostring(L, lua_upvalueindex(1));   /* "@path" */
    const char *shortsrc = lua_tostring(L, lua_upvalueindex(2));
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    size_t n = strlen(shortsrc);
    if (strncmp(msg, shortsrc, n) == 0 && msg[n] == ':') {
        lua_pushstring(L, msg);
        return 1;
    }
    int line = 1;
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0 && strcmp(ar.source, chunk) == 0) {
            line = ar.currentline;
            break;
        }
    }
    lua_pushfstring(L, "%s:%d: %s", shortsrc, line, msg);
    return 1;
}

/* Lua names a chunk in messages by its "short source", which truncates
 * long paths to "...tail". Learn the exact form by loading an empty chunk
 * under the same name, so messages can be rewritten to the full path. */
static void push_short_src(lua_State *L, const char *chunk) {
    lua_Debug ar;
    if (luaL_loadbufferx(L, "", 0, chunk, "t") != LUA_OK) {
        lua_pop(L, 1);
        lua_pushstring(L, chunk + 1);
        return;
    }
    lua_getinfo(L, ">S", &ar);
    lua_pushstring(L, ar.short_src);
}

/* Reports a Lua error message as a problem, replacing Lua's short source
 * prefix with the full path. Messages with no position get `line`. */
static void lua_problem(load_ctx *c, const char *shortsrc, const char *msg, int line) {
    size_t n = strlen(shortsrc);
    if (msg && strncmp(msg, shortsrc, n) == 0 && msg[n] == ':') {
        lf_buf_printf(c->errors, "%s%s\n", c->path, msg + n);
        c->nerr++;
    } else {
        problem(c, line, msg ? msg : "error");
    }
}

/* Where to point problems about what a file returned: its last line of
 * code (not blank, not a "--" comment), which is where the `return`
 * normally sits. */
static int last_code_line(const char *s, size_t len) {
    int line = 1, last = 1;
    bool start = true;              /* only blanks so far on this line */
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\n') {
            line++;
            start = true;
            continue;
        }
        if (!start || ch == ' ' || ch == '\t' || ch == '\r') continue;
        start = false;
        if (!(ch == '-' && i + 1 < len && s[i + 1] == '-')) last = line;
    }
    return last;
}

/* ---- compiling a workflow table ------------------------------------------ */

/* Compiling one workflow{} table: the Lua stack slot of the table, the
 * line it was written on, and the graph being built. */
typedef struct wf_ctx {
    lua_State *L;
    load_ctx *c;
    int t, line;
    lf_workflow *wf;
} wf_ctx;

static void wf_problem(wf_ctx *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void wf_problem(wf_ctx *w, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    problem(w->c, w->line, msg);
}

/* Pushes t[key] without metamethods (a hostile __index must not run at
 * compile time) and returns its type. */
static int rawfield(wf_ctx *w, const char *key) {
    lua_pushstring(w->L, key);
    return lua_rawget(w->L, w->t);
}

/* Unknown keys are almost always typos ("termnal"), which would otherwise
 * silently drop a part of the workflow. */
static void check_fields(wf_ctx *w) {
    static const char *const known[] = {"name",  "initial",  "states",   "terminal",
                                        "edges", "timers",   "retries",  "stages",
                                        "roles", "children", "override", "budgets",
                                        "open_records"};
    lua_State *L = w->L;
    lua_pushnil(L);
    while (lua_next(L, w->t)) {
        lua_pop(L, 1);
        bool ok = false;
        if (lua_type(L, -1) != LUA_TSTRING) {
            wf_problem(w, "unknown field (a %s key)", luaL_typename(L, -1));
            continue;
        }
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            if (strcmp(lua_tostring(L, -1), known[i]) == 0) ok = true;
        if (!ok) wf_problem(w, "unknown field '%s'", lua_tostring(L, -1));
    }
}

static const char *get_name(wf_ctx *w) {
    int ty = rawfield(w, "name");
    const char *name = NULL;
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no name");
    else if (ty != LUA_TSTRING || lua_rawlen(w->L, -1) == 0)
        wf_problem(w, "workflow name must be a non-empty string");
    else name = lua_tostring(w->L, -1);
    /* Still referenced from the table, so the string outlives the pop. */
    lua_pop(w->L, 1);
    return name;
}

/* states: a list of names; declaration order becomes the state ids. */
static void get_states(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "states"), list = lua_gettop(L);
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no states");
    else if (ty != LUA_TTABLE) wf_problem(w, "states must be a list of names");
    else {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        if (n == 0) wf_problem(w, "states must not be empty");
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, list, i) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                wf_problem(w, "state %lld must be a non-empty string", (long long)i);
            else if (lf_workflow_add_state(w->wf, lua_tostring(L, -1)) < 0)
                wf_problem(w, "duplicate state '%s'", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static void get_initial(wf_ctx *w) {
    int ty = rawfield(w, "initial");
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no initial state");
    else if (ty != LUA_TSTRING) wf_problem(w, "initial must be a state name");
    else if ((w->wf->initial = lf_workflow_state(w->wf, lua_tostring(w->L, -1))) < 0)
        wf_problem(w, "initial state '%s' is not a declared state",
                   lua_tostring(w->L, -1));
    lua_pop(w->L, 1);
}

/* terminal: optional, since a workflow may legitimately cycle forever. */
static void get_terminal(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "terminal"), list = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE)
        wf_problem(w, "terminal must be a list of state names");
    else if (ty == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            int s = -1;
            if (lua_rawgeti(L, list, i) != LUA_TSTRING)
                wf_problem(w, "terminal %lld must be a state name", (long long)i);
            else if ((s = lf_workflow_state(w->wf, lua_tostring(L, -1))) < 0)
                wf_problem(w, "terminal state '%s' is not a declared state",
                           lua_tostring(L, -1));
            else w->wf->terminal[s] = true;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* One {from, to} pair at the top of the stack, the i-th edge. */
static void get_edge(wf_ctx *w, lua_Integer i) {
    lua_State *L = w->L;
    int e = lua_gettop(L);
    bool pair = lua_type(L, e) == LUA_TTABLE && lua_rawlen(L, e) == 2 &&
                lua_rawgeti(L, e, 1) == LUA_TSTRING &&
                lua_rawgeti(L, e, 2) == LUA_TSTRING;
    if (!pair) {
        wf_problem(w, "edge %lld must be a {from, to} pair of state names", (long long)i);
        lua_settop(L, e);
        return;
    }
    const char *fn = lua_tostring(L, e + 1), *tn = lua_tostring(L, e + 2);
    int from = lf_workflow_state(w->wf, fn), to = lf_workflow_state(w->wf, tn);
    if (from < 0) wf_problem(w, "edge %lld: unknown state '%s'", (long long)i, fn);
    if (to < 0 && strcmp(fn, tn) != 0)
        wf_problem(w, "edge %lld: unknown state '%s'", (long long)i, tn);
    if (from >= 0 && to >= 0 && lf_workflow_add_edge(w->wf, from, to) < 0)
        wf_problem(w, "edge %lld: duplicate edge %s -> %s", (long long)i, fn, tn);
    lua_settop(L, e);
}

/* edges: {from, to} pairs, kept in declaration order because that order
 * is the "Allowed from" order of the invalid-transition message. */
static void get_edges(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "edges"), list = lua_gettop(L);
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no edges");
    else if (ty != LUA_TTABLE) wf_problem(w, "edges must be a list of {from, to} pairs");
    else {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            get_edge(w, i);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* A field of the table at t: a string (or NULL), a number (or dflt). */
static const char *tstr(lua_State *L, int t, const char *k) {
    lua_pushstring(L, k);
    const char *s = lua_rawget(L, t) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);      /* the table keeps the string alive */
    return s;
}

static double tnum(lua_State *L, int t, const char *k, double dflt) {
    lua_pushstring(L, k);
    double v = lua_rawget(L, t) == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* t[k] as an int: dflt when it is not a number, -1 when it is one no int
 * holds (2.5; 1e300, whose conversion C leaves undefined) -- every caller
 * refuses a negative count. */
static int tint(lua_State *L, int t, const char *k, int dflt) {
    double v = tnum(L, t, k, dflt);
    return v >= INT_MIN && v <= INT_MAX && v == floor(v) ? (int)v : -1;
}

/* The workflow fields that map states to settings (timers, retries, roles,
 * children, budgets) share their walk: fn(w, name, state, idx) for each
 * STATE = value, the value at stack index idx (the stack is restored after
 * each). A field of the wrong type is reported as "FIELD must map states
 * to SHAPE", a name that is no state as "FIELD: unknown state". Returns
 * whether the field is there. */
typedef void state_fn(wf_ctx *w, const char *name, int state, int idx);

static bool each_state(wf_ctx *w, const char *field, const char *shape, state_fn *fn) {
    lua_State *L = w->L;
    int ty = rawfield(w, field), map = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE)
        wf_problem(w, "%s must map states to %s", field, shape);
    else if (ty == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, map)) {
            int v = lua_gettop(L);
            const char *sn = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            int state = lf_workflow_state(w->wf, sn);
            if (state < 0) wf_problem(w, "%s: unknown state '%s'", field, sn);
            else fn(w, sn, state, v);
            lua_settop(L, v - 1);
        }
    }
    lua_pop(L, 1);
    return ty == LUA_TTABLE;
}

/* timers = { STATE = { { "48h", to = STATE, trigger = "..." }, ... } }:
 * each moves a record that stayed that long along an edge it has. */
static void timers_of(wf_ctx *w, const char *sn, int state, int list) {
    lua_State *L = w->L;
    if (lua_type(L, list) != LUA_TTABLE) {
        wf_problem(w, "timers.%s must be a list of timers", sn);
        return;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        int t = lua_gettop(L);
        const char *after = NULL, *to = NULL, *trig = NULL;
        if (lua_type(L, t) == LUA_TTABLE) {
            if (lua_rawgeti(L, t, 1) == LUA_TSTRING) after = lua_tostring(L, -1);
            to = tstr(L, t, "to");
            trig = tstr(L, t, "trigger");
        }
        int64_t us = after ? lf_duration_parse(after) : -1;
        int ti = to ? lf_workflow_state(w->wf, to) : -1;
        if (us <= 0 || ti < 0 || !trig)
            wf_problem(w,
                       "timers.%s[%lld] must be { \"DURATION\" (like 30m, 48h), "
                       "to = STATE, trigger = \"...\" }",
                       sn, (long long)i);
        else if (lf_workflow_add_timer(w->wf, state, ti, us, trig) < 0)
            wf_problem(w, "timers.%s[%lld]: no edge %s -> %s for it to take", sn,
                       (long long)i, sn, to);
        lua_settop(L, list);
    }
}

static void get_timers(wf_ctx *w) {
    each_state(w, "timers", "lists of { \"48h\", to = ..., trigger = ... }", timers_of);
}


/* retries = { STATE = { to = STATE, trigger = "...", max = 3,
 *   backoff = { initial = "1s", factor = 2, max = "1h", jitter = 0.1 },
 *   escalate_to = STATE } } */
static void retries_of(wf_ctx *w, const char *sn, int state, int t) {
    lua_State *L = w->L;
    lf_retry_def r = {.state = state, .max = -1, .factor = 2};
    const char *to = NULL, *esc = NULL, *ini = NULL, *mx = NULL;
    if (lua_type(L, t) == LUA_TTABLE) {
        to = tstr(L, t, "to");
        esc = tstr(L, t, "escalate_to");
        r.trigger = (char *)tstr(L, t, "trigger");
        r.max = tint(L, t, "max", -1);
        lua_pushstring(L, "backoff");
        if (lua_rawget(L, t) == LUA_TTABLE) {
            int b = lua_gettop(L);
            ini = tstr(L, b, "initial");
            mx = tstr(L, b, "max");
            r.factor = tnum(L, b, "factor", 2);
            r.jitter = tnum(L, b, "jitter", 0);
        }
        lua_settop(L, t);
    }
    r.to = to ? lf_workflow_state(w->wf, to) : -1;
    r.escalate = esc ? lf_workflow_state(w->wf, esc) : -1;
    r.initial_us = ini ? lf_duration_parse(ini) : 0;
    r.max_us = mx ? lf_duration_parse(mx) : 0;
    /* the names and a zero initial wait here; every value's range in
     * lf_workflow_add_retry, which stages' retries go through too */
    int rc = r.to < 0 || r.escalate < 0 || (ini && !r.initial_us)
                 ? LF_RETRY_BAD_VALUE
                 : lf_workflow_add_retry(w->wf, &r);
    if (rc == LF_RETRY_BAD_VALUE)
        wf_problem(
            w,
            "retries.%s must be { to = STATE, trigger = \"...\", max = N, "
            "backoff = { initial = \"1s\", factor = 2, max = \"1h\", jitter = 0.1 } "
            "(optional), escalate_to = STATE }",
            sn);
    else if (rc == LF_RETRY_BAD_EDGE)
        wf_problem(w,
                   "retries.%s: the workflow needs the edge %s -> %s, and "
                   "escalate_to another state",
                   sn, sn, to);
}

static void get_retries(wf_ctx *w) { each_state(w, "retries", "retries", retries_of); }

/* roles = { STATE = { leave = { "maintainer" }, enter = { ... } } }: who
 * may move a record out of or into a state (an actor needs one of them). */
static void roles_of(wf_ctx *w, const char *sn, int state, int t) {
    lua_State *L = w->L;
    bool ok = lua_type(L, t) == LUA_TTABLE;
    for (int side = 0; ok && side < 2; side++) {
        lua_pushstring(L, side ? "enter" : "leave");
        int lt = lua_rawget(L, t), list = lua_gettop(L);
        if (lt == LUA_TTABLE) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, list);
            ok = n > 0;
            for (lua_Integer i = 1; ok && i <= n; i++) {
                ok = lua_rawgeti(L, list, i) == LUA_TSTRING &&
                     lf_workflow_add_gate(w->wf, state, side, lua_tostring(L, -1)) == 0;
                lua_pop(L, 1);
            }
        } else ok = lt == LUA_TNIL;
        lua_settop(L, t);
    }
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        ok = strcmp(k, "leave") == 0 || strcmp(k, "enter") == 0;
        lua_pop(L, 1);
    }
    if (!ok)
        wf_problem(w,
                   "roles.%s must be { leave = { ROLE, ... }, enter = { ROLE, ... } } "
                   "with non-empty role names",
                   sn);
}

static void get_roles(wf_ctx *w) {
    each_state(w, "roles", "{ leave = { ROLE, ... }, enter = { ... } }", roles_of);
}

/* budgets = { STATE = { { per = "principal"|"actor", max = N, within = "1h" }, ... } } */
static void budgets_of(wf_ctx *w, const char *sn, int state, int list) {
    lua_State *L = w->L;
    /* each is checked as a transition commits: an entry carries
     * LF_ENTRY_BUDGETS at most (core/entry.h) */
    bool ok = lua_type(L, list) == LUA_TTABLE && lua_rawlen(L, list) > 0 &&
              lua_rawlen(L, list) <= LF_ENTRY_BUDGETS;
    for (lua_Integer i = 1; ok && i <= (lua_Integer)lua_rawlen(L, list); i++) {
        ok = lua_rawgeti(L, list, i) == LUA_TTABLE;
        int b = lua_gettop(L);
        const char *per = ok ? tstr(L, b, "per") : NULL,
                   *within = ok ? tstr(L, b, "within") : NULL;
        int max = ok ? tint(L, b, "max", -1) : -1;
        int64_t us = within ? lf_duration_parse(within) : -1;
        ok = ok && per && (!strcmp(per, "principal") || !strcmp(per, "actor")) &&
             max >= 1 && us > 0 &&
             us <= (int64_t)31 * 86400 * 1000000;
        if (ok) {
            lf_workflow *wf = w->wf;
            wf->budgets = lf_xrealloc(wf->budgets,
                                      (size_t)(wf->nbudgets + 1) * sizeof *wf->budgets);
            wf->budgets[wf->nbudgets++] =
                (lf_budget_def){.state = state,
                                .max = max,
                                .per = per[0] == 'a' ? 'a' : 'p',
                                .within_us = us};
        }
        lua_settop(L, list);
    }
    if (!ok)
        wf_problem(w,
                   "budgets.%s must be a list of at most %d { per = \"principal\"|\"actor\", "
                   "max = N, within = \"1h\" } (at most 31d)",
                   sn, LF_ENTRY_BUDGETS);
}

static void get_budgets(wf_ctx *w) { each_state(w, "budgets", "lists", budgets_of); }

/* open_records = { per = "principal"|"actor", max = N }: a create past N
 * open records of one owner is denied. */
static void get_open_records(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "open_records"), t = lua_gettop(L);
    bool ok = ty == LUA_TNIL;
    if (ty == LUA_TTABLE) {
        const char *per = tstr(L, t, "per");
        int max = tint(L, t, "max", -1);
        int n = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            n++;
            lua_pop(L, 1);
        }
        ok = n == 2 && per && (!strcmp(per, "principal") || !strcmp(per, "actor")) &&
             max >= 1 && max <= 1000000000;
        if (ok) {
            w->wf->open_max = max;
            w->wf->open_per = per[0] == 'a' ? 'a' : 'p';
        }
    }
    if (!ok) wf_problem(w, "open_records must be { per = \"principal\"|\"actor\", max = N }");
    lua_pop(L, 1);
}

/* override = { co_signer = true, review = "24h", escalate_to = STATE }:
 * what break-glass needs here. Read after `terminal`, whose states get no
 * review edge. */
static void get_override(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "override"), t = lua_gettop(L);
    if (ty == LUA_TTABLE) {
        bool ok = true;
        const char *review = tstr(L, t, "review"), *esc = tstr(L, t, "escalate_to");
        lua_pushstring(L, "co_signer");
        int cs = lua_rawget(L, t);
        ok = cs == LUA_TNIL || cs == LUA_TBOOLEAN;
        w->wf->override_co_signer = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_pushnil(L);
        while (ok && lua_next(L, t)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
            ok = !strcmp(k, "co_signer") || !strcmp(k, "review") ||
                 !strcmp(k, "escalate_to");
            lua_pop(L, 1);
        }
        lua_settop(L, t);
        /* The review is 24h unless said otherwise; it needs a state to go. */
        if (ok && (review || esc))
            ok = esc &&
                 lf_workflow_set_review(w->wf, lf_duration_parse(review ? review : "24h"),
                                        lf_workflow_state(w->wf, esc)) == 0;
        if (!ok)
            wf_problem(w, "override must be { co_signer = true|false, review = \"24h\", "
                          "escalate_to = STATE } (a review needs escalate_to)");
    } else if (ty != LUA_TNIL) {
        wf_problem(w, "override must be a table");
    }
    lua_pop(L, 1);
}

/* children = { STATE = { CHILD_STATE, ... } }: a record enters STATE only
 * when every child is in one of the listed states (the children may run
 * another workflow: the names are theirs). Declaring it, even empty,
 * also gives guards t.record.children. */
static void children_of(wf_ctx *w, const char *sn, int state, int t) {
    lua_State *L = w->L;
    bool ok = lua_type(L, t) == LUA_TTABLE && lua_rawlen(L, t) > 0;
    for (lua_Integer i = 1; ok && i <= (lua_Integer)lua_rawlen(L, t); i++) {
        ok = lua_rawgeti(L, t, i) == LUA_TSTRING &&
             lf_workflow_add_kids_gate(w->wf, state, lua_tostring(L, -1)) == 0;
        lua_pop(L, 1);
    }
    /* auto = true: the engine moves the record there by itself. */
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            ok = strcmp(lua_tostring(L, -2), "auto") == 0 &&
                 lua_type(L, -1) == LUA_TBOOLEAN;
            if (ok) w->wf->gates[state].kids_auto = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
    }
    if (!ok)
        wf_problem(w,
                   "children.%s must be a list of the children's states "
                   "(and optionally auto = true)",
                   sn);
}

static void get_children(wf_ctx *w) {
    w->wf->children =
        each_state(w, "children", "lists of the children's states", children_of);
}

/* Adds an edge the stages need (an existing one is fine). */
static void stage_edge(wf_ctx *w, const char *a, const char *b) {
    int from = lf_workflow_state(w->wf, a), to = lf_workflow_state(w->wf, b);
    if (!lf_workflow_has_edge(w->wf, from, to)) lf_workflow_add_edge(w->wf, from, to);
}

/* stages = { from = STATE, pass = STATE, fail = STATE,
 *            backoff = { initial = "30s", factor = 2, max = "1h" },
 *            { "implement", retries = 5 }, { "lint", retries = 3 }, ... }
 * A pipeline in order: each stage is a state, reached from the one before
 * (the first from `from`, the last leads to `pass`); a stage with retries
 * has a STAGE_failed state that goes back to it after the backoff, as
 * many times as it says, then to `fail` (a declared retry); one without
 * fails straight to `fail`. Nine stages are nine lines, not 39 edges. */
static void get_stages(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "stages"), st = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE)
        wf_problem(w, "stages must be a table: { from = ..., pass = ..., fail = ..., "
                      "{ \"stage\", retries = N }, ... }");
    if (ty != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    const char *from = tstr(L, st, "from"), *pass = tstr(L, st, "pass");
    const char *fail = tstr(L, st, "fail"), *ini = "30s", *mx = "1h";
    double factor = 2;
    lua_pushstring(L, "backoff");
    if (lua_rawget(L, st) == LUA_TTABLE) {
        int b = lua_gettop(L);
        if (tstr(L, b, "initial")) ini = tstr(L, b, "initial");
        if (tstr(L, b, "max")) mx = tstr(L, b, "max");
        factor = tnum(L, b, "factor", 2);
    }
    lua_settop(L, st);
    lua_Integer n = (lua_Integer)lua_rawlen(L, st);
    if (!from || !pass || !fail || lf_workflow_state(w->wf, from) < 0 ||
        lf_workflow_state(w->wf, pass) < 0 || lf_workflow_state(w->wf, fail) < 0 ||
        n < 1) {
        wf_problem(w,
                   "stages needs from, pass and fail (declared states) and at least one "
                   "{ \"stage\", retries = N }");
        lua_pop(L, 1);
        return;
    }
    const char *prev = from;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, st, i);
        int t = lua_gettop(L);
        const char *name = NULL;
        int retries = 0;
        if (lua_type(L, t) == LUA_TTABLE) {
            if (lua_rawgeti(L, t, 1) == LUA_TSTRING) name = lua_tostring(L, -1);
            lua_pop(L, 1);
            retries = tint(L, t, "retries", 0);
        }
        if (!name || retries < 0 || lf_workflow_add_state(w->wf, name) < 0) {
            wf_problem(
                w, "stage %lld must be { \"NAME\", retries = N } with a new state name",
                (long long)i);
            lua_settop(L, st);
            break;
        }
        stage_edge(w, prev, name);
        if (retries > 0) {
            lf_buf failed = LF_BUF_INIT;
            lf_buf_printf(&failed, "%s_failed", name);
            lf_workflow_add_state(w->wf, failed.p);
            stage_edge(w, name, failed.p);
            stage_edge(w, failed.p, name);
            stage_edge(w, failed.p, fail);
            lf_retry_def r = {.state = lf_workflow_state(w->wf, failed.p),
                              .to = lf_workflow_state(w->wf, name),
                              .escalate = lf_workflow_state(w->wf, fail),
                              .max = retries,
                              .initial_us = lf_duration_parse(ini),
                              .max_us = lf_duration_parse(mx),
                              .factor = factor,
                              .trigger = "stage.retry"};
            if (lf_workflow_add_retry(w->wf, &r) < 0)
                wf_problem(
                    w, "stages: backoff needs durations like \"30s\" and a factor >= 1");
            lf_buf_free(&failed);
        } else {
            stage_edge(w, name, fail);
        }
        prev = name; /* kept alive by the stages table */
        lua_settop(L, st);
    }
    stage_edge(w, prev, pass);
    lua_pop(L, 1);
}

/* The core's structural lint, one problem per line, all at `line`. */
static void lint(wf_ctx *w) {
    lf_buf problems = LF_BUF_INIT;
    lf_workflow_check(w->wf, &problems);
    const char *p = lf_buf_str(&problems);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lf_buf_printf(w->c->errors, "%s:%d: %.*s\n", w->c->path, w->line, (int)len, p);
        w->c->nerr++;
        p += len + (nl != NULL);
    }
    lf_buf_free(&problems);
}

/* Compiles the workflow table at index t (tagged at `line`) into a new
 * lf_workflow, reporting every problem. Returns NULL if there was any. */
static lf_workflow *compile(lua_State *L, load_ctx *c, int t, int line) {
    wf_ctx w = {L, c, t, line, NULL};
    int before = c->nerr;
    check_fields(&w);
    const char *name = get_name(&w);
    w.wf = lf_workflow_new(name ? name : "");
    get_states(&w);
    get_initial(&w);
    get_terminal(&w);
    get_edges(&w);
    if (c->nerr == before) get_stages(&w);
    if (c->nerr == before) get_timers(&w);
    if (c->nerr == before) get_retries(&w);
    if (c->nerr == before) get_roles(&w);
    if (c->nerr == before) get_children(&w);
    if (c->nerr == before) get_override(&w);
    if (c->nerr == before) get_budgets(&w);
    if (c->nerr == before) get_open_records(&w);
    /* The lint only makes sense on a graph that compiled: a misspelt
     * state in an edge would otherwise also show up as "unreachable". */
    if (c->nerr == before) lint(&w);
    if (c->nerr != before) {
        lf_workflow_free(w.wf);
        return NULL;
    }
    return w.wf;
}

static void add_workflow(load_ctx *c, lf_workflow *wf, int line) {
    lf_rules *r = c->r;
    /* Names are the handle records and the CLI use: they must be unique
     * across the whole generation, not just within a file. */
    for (int i = 0; i < r->nwfs; i++) {
        if (strcmp(r->wfs[i]->name, wf->name) != 0) continue;
        char msg[512];
        snprintf(msg, sizeof msg, "duplicate workflow '%s' (first defined at %s:%d)",
                 wf->name, r->files[r->wf_file[i]], r->wf_line[i]);
        problem(c, line, msg);
        lf_workflow_free(wf);
        return;
    }
    size_t n = (size_t)r->nwfs + 1;
    r->wfs = xrealloc(r->wfs, n * sizeof *r->wfs);
    r->wf_line = xrealloc(r->wf_line, n * sizeof *r->wf_line);
    r->wf_file = xrealloc(r->wf_file, n * sizeof *r->wf_file);
    r->wfs[r->nwfs] = wf;
    r->wf_line[r->nwfs] = line;
    r->wf_file[r->nwfs] = c->file;
    r->nwfs++;
}

static const char *const tag_word[] = {"?", "workflow", "policy", "hook", "route"};

static void compile_one(load_ctx *c, int idx, int tag, int line) {
    if (tag == LF_TAG_WORKFLOW) {
        lf_workflow *wf = compile(c->r->L, c, idx, line);
        if (wf) add_workflow(c, wf, line);
    } else {
        lf_dsl_compile(c, idx, tag, line);
    }
}

/* What a file returned (index 2; the load_ctx is a light userdata at
 * index 1): one DSL table of the kind its directory holds, or a list of
 * them. Runs in protected mode, so a memory error while walking the
 * tables becomes a load error instead of a panic. */
static int compile_results(lua_State *L) {
    load_ctx *c = lua_touserdata(L, 1);
    const char *want = tag_word[c->expect];
    int line, tag = lf_tag_of(L, 2, &line);
    if (tag == c->expect) {
        compile_one(c, 2, tag, line);
        return 0;
    }
    lua_Integer n =
        !tag && lua_type(L, 2) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, 2) : 0;
    if (n == 0) {
        lf_problem(c, c->last_line,
                   "file does not return a %s (expected `return %s { ... }` "
                   "or a list of them)",
                   want, want);
        return 0;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int top = lua_gettop(L);
        if ((tag = lf_tag_of(L, top, &line)) != c->expect)
            lf_problem(c, c->last_line, "item %lld of the returned list is not a %s",
                       (long long)i, want);
        else compile_one(c, top, tag, line);
        lua_settop(L, top - 1);
    }
    return 0;
}

/* config.lua returns plain data: a table keyed by policy, hook or route
 * name. */
static int config_result(lua_State *L) {
    load_ctx *c = lua_touserdata(L, 1);
    int *ref = lua_touserdata(L, 3);
    if (lua_type(L, 2) != LUA_TTABLE || lf_tag_of(L, 2, &(int){0})) {
        problem(c, c->last_line,
                "config.lua must return a table of settings keyed by "
                "policy, hook or route name");
        return 0;
    }
    lua_pushvalue(L, 2);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

typedef struct file_job {
    load_ctx *c;
    const char *src;
    size_t len;
    int *config_ref; /* for config.lua */
} file_job;

static int run_file_p(lua_State *L) {
    file_job *j = lua_touserdata(L, 1);
    load_ctx *c = j->c;
    int base = lua_gettop(L);
    lua_pushfstring(L, "@%s", c->path);
    const char *chunk = lua_tostring(L, -1);
    push_short_src(L, chunk);
    const char *shortsrc = lua_tostring(L, -1);

    /* Text only: a precompiled chunk can crash the VM on purpose. */
    if (luaL_loadbufferx(L, j->src, j->len, chunk, "t") != LUA_OK) {
        lua_problem(c, shortsrc, lua_tostring(L, -1), 1);
        return 0;
    }
    int fn = lua_gettop(L);
    lf_set_env(L, fn);

    lua_pushvalue(L, base + 1);
    lua_pushvalue(L, base + 2);
    lua_pushcclosure(L, on_error, 2);
    lua_insert(L, fn); /* handler below fn */
    lf_budget_reset(c->r, LF_RULES_LOAD_BUDGET);
    int st = lua_pcall(L, 0, 1, fn);
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        if (st == LUA_ERRMEM)
            m = "not enough memory (the policy memory limit was reached)";
        lua_problem(c, shortsrc, m, 1);
        return 0;
    }

    lua_pushcfunction(L, j->config_ref ? config_result : compile_results);
    lua_pushlightuserdata(L, c);
    lua_pushvalue(L, -3);
    lua_pushlightuserdata(L, j->config_ref);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        problem(c, c->last_line, lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    return 0;
}

/* Runs one file. Even the bookkeeping around it runs protected: a file
 * that leaves the heap full must not panic the next one's pushes. */
static void run_file(load_ctx *c, const char *src, size_t len, int *config_ref) {
    lua_State *L = c->r->L;
    file_job j = {c, src, len, config_ref};
    c->last_line = last_code_line(src, len);
    lua_pushcfunction(L, run_file_p);
    lua_pushlightuserdata(L, &j);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        problem(c, 1, "not enough memory (the policy memory limit was reached)");
        lua_pop(L, 1);
    }
}

/* A lib module: compiled now (so a syntax error is a lint error and the
 * bytes hashed are the bytes run), run on its first require. Its name is
 * its path under lib/ without ".lua", with dots for slashes. */
static int compile_lib_p(lua_State *L) {
    file_job *j = lua_touserdata(L, 1);
    const char *modname = lua_touserdata(L, 2);
    load_ctx *c = j->c;
    lua_pushfstring(L, "@%s", c->path);
    push_short_src(L, lua_tostring(L, -1));
    const char *shortsrc = lua_tostring(L, -1);
    if (luaL_loadbufferx(L, j->src, j->len, lua_tostring(L, -2), "t") != LUA_OK) {
        lua_problem(c, shortsrc, lua_tostring(L, -1), 1);
        return 0;
    }
    lf_set_env(L, lua_gettop(L));
    lua_getfield(L, LUA_REGISTRYINDEX, LF_REG_LIBS);
    if (lua_getfield(L, -1, modname) != LUA_TNIL) {
        lf_problem(c, 1, "duplicate module name '%s'", modname);
        return 0;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, modname);
    return 0;
}

static void compile_lib(load_ctx *c, const char *libdir, const char *src, size_t len) {
    lua_State *L = c->r->L;
    lf_buf name = LF_BUF_INIT;
    const char *rel = c->path + strlen(libdir) + 1;
    for (const char *p = rel; p < rel + strlen(rel) - 4; p++)
        lf_buf_putc(&name, *p == '/' ? '.' : *p);
    for (const char *p = lf_buf_str(&name); *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.';
        if (!ok) {
            lf_problem(c, 1,
                       "'%s' is not a valid module name (letters, digits, '-', '_')",
                       lf_buf_str(&name));
            lf_buf_free(&name);
            return;
        }
    }
    file_job j = {c, src, len, NULL};
    lua_pushcfunction(L, compile_lib_p);
    lua_pushlightuserdata(L, &j);
    lua_pushlightuserdata(L, (void *)lf_buf_str(&name));
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        problem(c, 1, "not enough memory (the policy memory limit was reached)");
        lua_pop(L, 1);
    }
    lf_buf_free(&name);
}

/* ---- the directory --------------------------------------------------------- */

static bool has_lua_suffix(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

typedef struct path_list {
    char **v;
    lf_file_kind *kind;
    int n;
} path_list;

static void add_path(path_list *out, char *path, lf_file_kind kind) {
    out->v = xrealloc(out->v, (size_t)(out->n + 1) * sizeof *out->v);
    out->kind = xrealloc(out->kind, (size_t)(out->n + 1) * sizeof *out->kind);
    out->v[out->n] = path;
    out->kind[out->n++] = kind;
}

/* Collects *.lua files below dir, recursively; dot-entries (editor
 * droppings, VCS metadata) are skipped. Returns -1 if dir can't be opened. */
static int scan(const char *dir, path_list *out, lf_file_kind kind, int depth) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        lf_buf p = LF_BUF_INIT;
        lf_buf_printf(&p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(lf_buf_str(&p), &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < LF_RULES_MAX_DEPTH) {
                scan(lf_buf_str(&p), out, kind, depth + 1);
            } else if (S_ISREG(st.st_mode) && has_lua_suffix(de->d_name)) {
                add_path(out, lf_buf_steal(&p), kind);
            }
        }
        lf_buf_free(&p);
    }
    closedir(d);
    return 0;
}

/* The optional parts of DIR; an unreadable one is a problem, a missing
 * one is not. Returns the number of problems. */
static int scan_optional(const char *dir, path_list *out, lf_buf *errors) {
    static const struct {
        const char *sub;
        lf_file_kind kind;
    } parts[] = {{"guards", LF_FILE_GUARD},
                 {"hooks", LF_FILE_HOOK},
                 {"lib", LF_FILE_LIB},
                 {"routes", LF_FILE_ROUTE}};
    int nerr = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        lf_buf p = LF_BUF_INIT;
        lf_buf_printf(&p, "%s/%s", dir, parts[i].sub);
        if (scan(lf_buf_str(&p), out, parts[i].kind, 0) < 0 && errno != ENOENT &&
            errno != ENOTDIR) {
            lf_buf_printf(errors, "%s: %s\n", lf_buf_str(&p), strerror(errno));
            nerr++;
        }
        lf_buf_free(&p);
    }
    /* A policy file at the top would silently never run. */
    DIR *top = opendir(dir);
    struct dirent *de;
    while (top && (de = readdir(top))) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' || n < 5 || strcmp(de->d_name + n - 4, ".lua") != 0 ||
            strcmp(de->d_name, "config.lua") == 0)
            continue;
        lf_buf_printf(errors,
                      "%s/%s: not loaded: at the top of the policy directory only "
                      "config.lua is; put a guard in guards/, a hook in hooks/, a route "
                      "in routes/, a workflow in workflows/, shared code in lib/\n",
                      dir, de->d_name);
        nerr++;
    }
    if (top) closedir(top);
    lf_buf p = LF_BUF_INIT;
    lf_buf_printf(&p, "%s/config.lua", dir);
    struct stat st;
    if (stat(lf_buf_str(&p), &st) == 0 && S_ISREG(st.st_mode))
        add_path(out, lf_buf_steal(&p), LF_FILE_CONFIG);
    lf_buf_free(&p);
    return nerr;
}

/* Path order, carrying each path's kind along. */
static void sort_paths(path_list *l) {
    for (int i = 1; i < l->n; i++) {
        char *v = l->v[i];
        lf_file_kind k = l->kind[i];
        int j = i;
        for (; j > 0 && strcmp(l->v[j - 1], v) > 0; j--) {
            l->v[j] = l->v[j - 1];
            l->kind[j] = l->kind[j - 1];
        }
        l->v[j] = v;
        l->kind[j] = k;
    }
}

/* $LOOPFORGE_LUA_PATH, else ./lua if it is there, else the installed one. */
static char *resolve_lua_dir(const char *given) {
    if (given) return lf_xstrdup(given);
    const char *env = getenv("LOOPFORGE_LUA_PATH");
    if (env && *env) return lf_xstrdup(env);
    struct stat st;
    if (stat("lua", &st) == 0 && S_ISDIR(st.st_mode)) return lf_xstrdup("lua");
    return lf_xstrdup(LF_DATADIR "/lua");
}

/* Reads every file (hashing them in order) and runs what runs at load. */
static int load_files(lf_rules *r, const char *dir, char **srcs, size_t *lens,
                      lf_buf *errors) {
    int nerr = 0, config_file = -1, config_ref = LUA_NOREF, partial = 0;
    lf_buf all = LF_BUF_INIT; /* the generation id hashes every file, in order */
    r->digests = lf_xcalloc((size_t)r->nfiles + 1, sizeof *r->digests);
    for (int i = 0; i < r->nfiles; i++) {
        if (!(srcs[i] = lf_read_file(r->files[i], &lens[i]))) {
            lf_buf_printf(errors, "%s: %s\n", r->files[i], strerror(errno));
            nerr++;
            continue;
        }
        lf_buf_add(&all, srcs[i], lens[i]);
        lf_sha256_hex(srcs[i], lens[i], r->digests[i]);
    }
    lf_sha256_hex(all.p ? all.p : "", all.len, r->generation);
    lf_buf_free(&all);

    lf_buf libdir = LF_BUF_INIT;
    lf_buf_printf(&libdir, "%s/lib", dir);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < r->nfiles; i++) {
            if (!srcs[i] || (pass == 0) != (r->file_kind[i] == LF_FILE_LIB)) continue;
            static const int expect[] = {0, LF_TAG_POLICY, LF_TAG_HOOK,
                                         0, LF_TAG_ROUTE,  LF_TAG_WORKFLOW};
            load_ctx c = {r, r->files[i], i, 1, errors, 0, expect[r->file_kind[i]]};
            if (pass == 0) {
                compile_lib(&c, lf_buf_str(&libdir), srcs[i], lens[i]);
            } else if (r->file_kind[i] == LF_FILE_CONFIG) {
                config_file = i;
                run_file(&c, srcs[i], lens[i], &config_ref);
            } else {
                run_file(&c, srcs[i], lens[i], NULL);
            }
            nerr += c.nerr;
            if (c.nerr || !srcs[i]) {
                lf_file_kind k = r->file_kind[i];
                partial |= k == LF_FILE_WORKFLOW || k == LF_FILE_LIB ? LF_PARTIAL_ALL
                           : k == LF_FILE_CONFIG                     ? 0
                                                                     : LF_PARTIAL_RULES;
            }
        }
    }
    lf_buf_free(&libdir);
    /* Cross-file checks too, so that one lint round says everything it
     * can: with files that failed, only what they cannot have changed. */
    lf_dsl_finish(r, errors, &nerr, config_file,
                  config_file >= 0 ? srcs[config_file] : NULL, config_ref, partial);
    return nerr;
}

lf_rules *lf_rules_load_opts(const char *dir, const lf_rules_limits *limits,
                             const char *lua_dir, lf_buf *errors) {
    lf_rules *r = xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->mem_limit = limits && limits->memory ? limits->memory : LF_RULES_MEM_LIMIT;
    r->call_budget = limits && limits->instructions ? (long)limits->instructions
                                                    : LF_RULES_CALL_BUDGET;
    r->call_ms = limits && limits->time_ms ? (long)limits->time_ms : LF_RULES_CALL_MS;

    lf_buf root = LF_BUF_INIT, wdir = LF_BUF_INIT;
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/') dlen--; /* no "dir//workflows" */
    lf_buf_add(&root, dir, dlen);
    lf_buf_printf(&wdir, "%s/workflows", lf_buf_str(&root));

    path_list files = {NULL, NULL, 0};
    int scanned = scan(lf_buf_str(&wdir), &files, LF_FILE_WORKFLOW, 0);
    if (files.n == 0) {
        if (scanned < 0 && errno != ENOENT)
            lf_buf_printf(errors, "%s: %s\n", lf_buf_str(&wdir), strerror(errno));
        else lf_buf_printf(errors, "%s: no workflow files\n", lf_buf_str(&wdir));
        lf_buf_free(&wdir);
        lf_buf_free(&root);
        free(files.v);
        free(files.kind);
        free(r);
        return NULL;
    }
    lf_buf_free(&wdir);
    int nerr = scan_optional(lf_buf_str(&root), &files, errors);
    sort_paths(&files);
    r->files = files.v;
    r->file_kind = files.kind;
    r->nfiles = files.n;
    r->lua_dir = resolve_lua_dir(lua_dir);

    if (!lf_sandbox_new(r)) {
        lf_buf_printf(errors,
                      "%s: the policy memory limit (%zu bytes) leaves no room to "
                      "start Lua\n",
                      lf_buf_str(&root), r->mem_limit);
        lf_buf_free(&root);
        lf_rules_free(r);
        return NULL;
    }
    char **srcs = xrealloc(NULL, (size_t)r->nfiles * sizeof *srcs);
    size_t *lens = xrealloc(NULL, (size_t)r->nfiles * sizeof *lens);
    nerr += load_files(r, lf_buf_str(&root), srcs, lens, errors);
    for (int i = 0; i < r->nfiles; i++) free(srcs[i]);
    free(srcs);
    free(lens);
    lf_buf_free(&root);

    if (nerr) {
        lf_rules_free(r);
        return NULL;
    }
    /* Drop what the files left behind; the state lives on for policies. */
    lua_gc(r->L, LUA_GCCOLLECT);
    return r;
}

lf_rules *lf_rules_none(void) {
    lf_rules *r = xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->mem_limit = LF_RULES_MEM_LIMIT;
    r->call_budget = LF_RULES_CALL_BUDGET;
    r->call_ms = LF_RULES_CALL_MS;
    snprintf(r->generation, sizeof r->generation, "none");
    if (!lf_sandbox_new(r)) {
        lf_rules_free(r);
        return NULL;
    }
    return r;
}

lf_rules *lf_rules_load(const char *dir, lf_buf *errors) {
    return lf_rules_load_opts(dir, NULL, NULL, errors);
}

void lf_rules_free(lf_rules *r) {
    if (!r) return;
    if (r->L) lua_close(r->L);
    for (size_t i = 0; i < lf_map_span(&r->idents); i++) {
        const lf_map_slot *e = lf_map_at(&r->idents, i);
        if (e) free((char *)e->key);
    }
    lf_map_free(&r->idents);
    for (int i = 0; i < r->nident; i++) {
        free(r->ident_v[i]->kind);
        free(r->ident_v[i]->person);
        free(r->ident_v[i]->principal);
        free(r->ident_v[i]);
    }
    free(r->ident_v);
    for (int i = 0; i < r->nrules; i++) lf_rule_free(&r->rules[i]);
    free(r->rules);
    free(r->guards);
    free(r->hooks);
    free(r->routes);
    free(r->file_kind);
    free(r->digests);
    free(r->lua_dir);
    for (int i = 0; i < r->nwfs; i++) lf_workflow_free(r->wfs[i]);
    free(r->wfs);
    free(r->wf_line);
    free(r->wf_file);
    for (int i = 0; i < r->nfiles; i++) free(r->files[i]);
    free(r->files);
    free(r);
}

/* timer:, hook:, engine:, route: -- the engine's own actors. */
static bool engine_actor(const char *name) {
    switch (name[0]) {
    case 't': return strncmp(name, "timer:", 6) == 0;
    case 'h': return strncmp(name, "hook:", 5) == 0;
    case 'e': return strncmp(name, "engine:", 7) == 0;
    case 'r': return strncmp(name, "route:", 6) == 0;
    default: return false;
    }
}

void lf_rules_identity(const lf_rules *r, const char *name, lf_identity *out) {
    *out = (lf_identity){.name = name, .kind = "human", .person = name};
    const lf_ident *id = name ? lf_map_get(&r->idents, name) : NULL;
    if (id) {
        out->kind = id->kind;
        out->person = id->person;
        out->principal = id->principal;
        return;
    }
    /* Every transition asks (its entry's authority): the first byte
     * before each comparison. */
    size_t n = name ? strlen(name) : 0;
    if (!n || (name[0] == 'a' && strcmp(name, "anonymous") == 0)) {
        out->kind = "unknown";
        out->person = NULL;
    } else if (n > 5 && name[n - 1] == ']' && memcmp(name + n - 5, "[bot]", 5) == 0) {
        out->kind = "app";
    } else if (engine_actor(name)) {
        out->kind = "engine";
    }
}

const lf_workflow *lf_rules_workflow(const lf_rules *r, const char *name) {
    if (!name) name = "loopforge";
    for (int i = 0; i < r->nwfs; i++)
        if (lf_streq(r->wfs[i]->name, name)) return r->wfs[i];
    return NULL;
}

int lf_rules_nworkflows(const lf_rules *r) { return r->nwfs; }

const lf_workflow *lf_rules_workflow_at(const lf_rules *r, int i) {
    return i >= 0 && i < r->nwfs ? r->wfs[i] : NULL;
}

const char *lf_rules_generation(const lf_rules *r) { return r->generation; }

int lf_rules_nfiles(const lf_rules *r) { return r->nfiles; }

const char *lf_rules_file_digest(const lf_rules *r, int i) {
    return i >= 0 && i < r->nfiles && r->digests ? r->digests[i] : NULL;
}

const char *lf_rules_file_at(const lf_rules *r, int i) {
    return i >= 0 && i < r->nfiles ? r->files[i] : NULL;
}
