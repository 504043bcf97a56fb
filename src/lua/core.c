/* core.c -- the `loopforge.core` Lua module: the engine for Lua hosts and
 * for the busted kit (lua/loopforge/testing.lua).
 *
 * Owns the translation between Lua values and loopforge.h, nothing more:
 * every rule, check and message comes from the C engine itself, so a spec
 * runs the same pipeline, sandbox and stores as production.
 *
 *   local core = require "loopforge.core"
 *   local eng, err = core.engine{ policies = "policies", store = "memory:" }
 *   local res = eng:create{ ref = "acme/app#1" }
 *   res = eng:transition(res.record.record_id, "task_queued", "worker.picked_up")
 *   local routed = eng:route("issues", body, "delivery-guid")   -- GitHub webhook
 *
 * Results are built by decoding lf_result_json(), so the Lua view of a
 * result is exactly what the CLI's --json and the HTTP API print. Bad
 * arguments raise Lua errors; engine refusals (not found, denied, ...) are
 * results.
 *
 * Engine calls complete through callbacks. The module accepts only stores
 * that complete before the call returns (memory:, file:), and callbacks
 * never touch the Lua state: they copy what they are given into C memory,
 * and the Lua values are built after the engine call has returned. A Lua
 * error raised inside a callback would longjmp through the engine's frames
 * and leave its request contexts half done. */
#include <lauxlib.h>
#include <lua.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../loopforge.h"
#include "../core/buf.h"
#include "../core/mem.h"
#include "../rules/luajson.h"
#include "../core/entry.h"
#include "../core/clock.h"
#include "../core/json.h"
#include "../engine/engine_internal.h"

#define ENGINE_MT "loopforge.engine"
#define BOX_MT "loopforge.box"
#define AUDIT_PAGE 1000

/* The sentinel for JSON null inside arrays (an array keeps its length;
 * in objects a null key is simply absent). */
static const char null_sentinel = 0;
#define JSON_NULL ((void *)&null_sentinel)

/* ---- boxes: C memory owned by the Lua GC -------------------------------- *
 *
 * Anything malloc'd while Lua code may raise (a buffer being encoded
 * into, a result being read) lives in a box on the stack, so
 * an error frees it at the next collection instead of leaking it. */

typedef struct box {
    void *p;
    void (*free)(void *);
} box;

static int box_gc(lua_State *L) {
    box *b = luaL_checkudata(L, 1, BOX_MT);
    if (b->p) b->free(b->p);
    b->p = NULL;
    return 0;
}

static box *box_push(lua_State *L, void *p, void (*fr)(void *)) {
    box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->free = fr;
    luaL_setmetatable(L, BOX_MT);
    b->p = p;       /* only now: a failed allocation above must not free p */
    return b;
}

/* Frees the box's contents now and drops it from the stack at idx. */
static void box_drop(lua_State *L, int idx) {
    box *b = lua_touserdata(L, idx);
    if (b->p) b->free(b->p);
    b->p = NULL;
    lua_remove(L, idx);
}

static void free_buf(void *p) {
    lf_buf_free(p);
    free(p);
}

/* ---- JSON <-> Lua: src/rules/luajson.c, the sandbox's own converter ----- */

/* Decodes JSON text (which the engine wrote, so malformed text is a bug)
 * and pushes the value; null inside arrays is core.null. */
static void push_json_text(lua_State *L, const char *text, size_t len) {
    size_t pos;
    if (!lf_json_decode(L, text, len, JSON_NULL, &pos))
        luaL_error(L, "loopforge.core: engine returned malformed JSON: %.80s", text);
}

/* nil (fail), the message and the code's name: how a call reports an
 * engine refusal. */
static int push_failure(lua_State *L, lf_code code, const char *error) {
    luaL_pushfail(L);
    lua_pushstring(L, error ? error : lf_code_name(code));
    lua_pushstring(L, lf_code_name(code));
    return 3;
}

/* Encodes the table field `name` of the options table at `opts` as a JSON
 * object and pushes the text (or nil when the field is absent). */
static const char *opt_json(lua_State *L, int opts, const char *name) {
    int t = lua_getfield(L, opts, name);
    if (t == LUA_TNIL) return NULL;     /* the nil stays pushed */
    if (t != LUA_TTABLE)
        luaL_argerror(
            L, opts,
            lua_pushfstring(L, "%s must be a table, got %s", name, luaL_typename(L, -1)));
    int val = lua_gettop(L);
    char err[300];
    lf_buf *b = lf_xcalloc(1, sizeof *b);
    box_push(L, b, free_buf);           /* freed by the GC if a push below raises */
    if (!lf_json_encode(L, val, JSON_NULL, name, b, err, sizeof err))
        luaL_argerror(L, opts, lua_pushstring(L, err));
    lua_pushlstring(L, b->p, b->len);
    box_drop(L, -2);
    lua_remove(L, val);                 /* keep one value pushed per field */
    return lua_tostring(L, -1);
}

/* ---- option tables ----------------------------------------------------- */

/* Refuses unknown keys: a typo ("automerge") would otherwise silently
 * become a default and make a spec pass for the wrong reason. */
static void check_keys(lua_State *L, int opts, const char *const *known) {
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *k = known; *k && !ok; k++)
                ok = strcmp(*k, lua_tostring(L, -1)) == 0;
        if (!ok)
            luaL_argerror(L, opts,
                          lua_pushfstring(L, "unknown option '%s'",
                                          lua_type(L, -1) == LUA_TSTRING
                                              ? lua_tostring(L, -1)
                                              : luaL_typename(L, -1)));
    }
}

/* Pushes opts[name] and returns it as a string, or NULL when nil. */
static const char *opt_string(lua_State *L, int opts, const char *name) {
    int t = lua_getfield(L, opts, name);
    if (t == LUA_TNIL) return NULL;
    if (t != LUA_TSTRING)
        luaL_argerror(L, opts,
                      lua_pushfstring(L, "%s must be a string, got %s", name,
                                      luaL_typename(L, -1)));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
        luaL_argerror(L, opts, lua_pushfstring(L, "%s contains a NUL character", name));
    return s;
}

/* luaL_checkstring, refusing a NUL inside (C would cut the string there). */
static const char *check_text(lua_State *L, int arg) {
    size_t len;
    const char *s = luaL_checklstring(L, arg, &len);
    if (strlen(s) != len) luaL_argerror(L, arg, "contains a NUL character");
    return s;
}

static int opt_bool(lua_State *L, int opts, const char *name) {
    int t = lua_getfield(L, opts, name);
    int v = lua_toboolean(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_argerror(L, opts,
                      lua_pushfstring(L, "%s must be a boolean, got %s", name,
                                      luaL_typename(L, -1)));
    lua_pop(L, 1);
    return v;
}

/* Returns opts[name] as a non-negative integer, or -1 when nil. */
static lua_Integer opt_count(lua_State *L, int opts, const char *name) {
    int isint;
    lua_getfield(L, opts, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0)
        luaL_argerror(L, opts,
                      lua_pushfstring(L, "%s must be a non-negative integer", name));
    lua_pop(L, 1);
    return v;
}

/* ---- the engine object ------------------------------------------------- */

typedef struct lua_engine {
    lf_engine *e;           /* NULL once closed */
    char **logs;            /* lines logged since the last eng:logs() */
    size_t nlogs, caplogs;
} lua_engine;

static lua_engine *check_engine(lua_State *L) {
    lua_engine *le = luaL_checkudata(L, 1, ENGINE_MT);
    if (!le->e) luaL_error(L, "loopforge.core: the engine is closed");
    return le;
}

static const char *level_name(lf_log_level lv) {
    switch (lv) {
    case LF_LOG_DEBUG: return "debug";
    case LF_LOG_INFO: return "info";
    case LF_LOG_WARN: return "warn";
    default: return "error";
    }
}

static void keep_line(lua_engine *le, const char *level, const char *msg, size_t len) {
    if (le->nlogs == le->caplogs) {
        le->caplogs = le->caplogs ? le->caplogs * 2 : 16;
        le->logs = lf_xrealloc(le->logs, le->caplogs * sizeof *le->logs);
    }
    le->logs[le->nlogs++] = lf_xprintf("%s: %.*s", level, (int)len, msg);
}

/* Called by the engine, possibly deep inside a request: C memory only. A
 * line that cannot be kept is dropped rather than failing the request.
 * One message may hold several lines (every failed hook of a commit);
 * each becomes a line of its own, with the level. */
static void capture_log(lf_log_level lv, const char *msg, void *ud) {
    lua_engine *le = ud;
    for (const char *p = msg; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len) keep_line(le, level_name(lv), p, len);
        p += len + (nl != NULL);
    }
}

static void drop_logs(lua_engine *le) {
    for (size_t i = 0; i < le->nlogs; i++) free(le->logs[i]);
    free(le->logs);
    le->logs = NULL;
    le->nlogs = le->caplogs = 0;
}

static int engine_close(lua_State *L) {
    lua_engine *le = luaL_checkudata(L, 1, ENGINE_MT);
    if (le->e) lf_engine_free(le->e);
    le->e = NULL;
    drop_logs(le);
    return 0;
}

static int engine_tostring(lua_State *L) {
    lua_engine *le = luaL_checkudata(L, 1, ENGINE_MT);
    if (le->e) lua_pushfstring(L, "loopforge.engine (%p)", (void *)le);
    else lua_pushliteral(L, "loopforge.engine (closed)");
    return 1;
}

/* core.engine{ policies=, store=, instructions=, memory=, time_ms= }
 *   --> engine | nil, message, code */
static int l_engine(lua_State *L) {
    static const char *const known[] = {"policies", "store",   "instructions",
                                        "memory",   "time_ms", NULL};
    lf_engine_config cfg = {0};
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        check_keys(L, 1, known);
        cfg.policies = opt_string(L, 1, "policies");
        cfg.store = opt_string(L, 1, "store");
        lua_Integer n = opt_count(L, 1, "instructions");
        if (n > 0) cfg.lua_instructions = (size_t)n;
        n = opt_count(L, 1, "memory");
        if (n > 0) cfg.lua_memory = (size_t)n;
        n = opt_count(L, 1, "time_ms");
        if (n > 0) cfg.lua_time_ms = (size_t)n;
    }
    /* No event base: an asynchronous store cannot open, which is the
     * point -- this module only drives stores that complete inline. */
    lua_engine *le = lua_newuserdatauv(L, sizeof *le, 0);
    memset(le, 0, sizeof *le);
    luaL_setmetatable(L, ENGINE_MT);
    char err[4096];
    lf_code code = LF_OK;
    le->e = lf_engine_new(&cfg, err, sizeof err, &code);
    if (!le->e) return push_failure(L, code, err);
    lf_engine_set_log(le->e, capture_log, le);
    return 1;
}

/* ---- results ----------------------------------------------------------- */

typedef struct sync_result {
    int done;
    char *json;             /* lf_result_json() */
} sync_result;

static void keep_result(const lf_result *r, void *arg) {
    sync_result *s = arg;
    s->done++;
    s->json = lf_result_json(r);
}

/* Turns a finished engine call into the result table. */
static int push_result(lua_State *L, sync_result *s) {
    if (!s->done)
        return luaL_error(L, "loopforge.core: the store did not complete inline "
                             "(only memory: and file: stores are supported)");
    box_push(L, s->json, free);
    push_json_text(L, s->json, strlen(s->json));
    box_drop(L, -2);
    return 1;
}

/* eng:create{ ref=, repo=, ref_number=, auto_merge=, labels=, metadata=,
 *             actor=, workflow=, idempotency_key=, parent=, principal= }
 * --> result */
static int l_create(lua_State *L) {
    static const char *const known[] = {
        "ref",   "repo",     "ref_number",      "auto_merge", "labels", "metadata",
        "actor", "workflow", "idempotency_key", "parent",     "principal", NULL};
    lua_engine *le = check_engine(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    check_keys(L, 2, known);
    lf_create_req req = {0};
    req.ref = opt_string(L, 2, "ref");
    req.repo = opt_string(L, 2, "repo");
    req.actor = opt_string(L, 2, "actor");
    req.workflow = opt_string(L, 2, "workflow");
    req.idempotency_key = opt_string(L, 2, "idempotency_key");
    req.parent = opt_string(L, 2, "parent");
    req.principal = opt_string(L, 2, "principal");
    req.auto_merge = opt_bool(L, 2, "auto_merge");
    lua_Integer num = opt_count(L, 2, "ref_number");
    if (num >= 0) {
        req.has_ref_number = true;
        req.ref_number = num;
    }
    req.labels = opt_json(L, 2, "labels");
    req.metadata = opt_json(L, 2, "metadata");
    sync_result s = {0};
    lf_engine_create(le->e, &req, keep_result, &s);
    return push_result(L, &s);
}

/* opts.roles: a list of role names, joined with commas on the stack. */
static const char *opt_roles(lua_State *L, int opts) {
    if (lua_getfield(L, opts, "roles") == LUA_TNIL) return NULL;
    luaL_argcheck(L, lua_type(L, -1) == LUA_TTABLE, opts,
                  "roles must be a list of names");
    luaL_Buffer b;
    int list = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, list); i++) {
        if (i > 1) luaL_addchar(&b, ',');
        lua_rawgeti(L, list, i);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, opts,
                      "roles must be a list of names");
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* eng:transition(id, to, trigger, { actor=, metadata=, dry_run=, observed=,
 *   idempotency_key=, expected_version=, roles = {..}, override = "reason",
 *   co_signer= }) --> result */
static int l_transition(lua_State *L) {
    static const char *const known[] = {"actor",    "metadata",        "dry_run",
                                        "observed", "idempotency_key", "expected_version",
                                        "roles",    "override",        "co_signer",
                                        NULL};
    lua_engine *le = check_engine(L);
    lf_transition_req req = {0};
    req.id = check_text(L, 2);
    req.to = check_text(L, 3);
    req.trigger = check_text(L, 4);
    if (!lua_isnoneornil(L, 5)) {
        luaL_checktype(L, 5, LUA_TTABLE);
        check_keys(L, 5, known);
        req.actor = opt_string(L, 5, "actor");
        req.metadata = opt_json(L, 5, "metadata");
        req.dry_run = opt_bool(L, 5, "dry_run");
        req.observed = opt_bool(L, 5, "observed");
        req.idempotency_key = opt_string(L, 5, "idempotency_key");
        req.override_reason = opt_string(L, 5, "override");
        req.co_signer = opt_string(L, 5, "co_signer");
        lua_getfield(L, 5, "expected_version");
        req.expected_version = (uint64_t)luaL_optinteger(L, -1, 0);
        req.roles = opt_roles(L, 5);
    }
    sync_result s = {0};
    lf_engine_transition(le->e, &req, keep_result, &s);
    return push_result(L, &s);
}

static int l_get(lua_State *L) {
    lua_engine *le = check_engine(L);
    sync_result s = {0};
    lf_engine_get(le->e, luaL_checkstring(L, 2), keep_result, &s);
    return push_result(L, &s);
}

static int l_find_by_ref(lua_State *L) {
    lua_engine *le = check_engine(L);
    sync_result s = {0};
    lf_engine_find_by_ref(le->e, luaL_checkstring(L, 2), keep_result, &s);
    return push_result(L, &s);
}

/* eng:delete(id, actor?) --> result */
static int l_delete(lua_State *L) {
    lua_engine *le = check_engine(L);
    const char *id = luaL_checkstring(L, 2);
    const char *actor = luaL_optstring(L, 3, NULL);
    sync_result s = {0};
    lf_engine_delete(le->e, id, actor, keep_result, &s);
    return push_result(L, &s);
}

/* ---- routes --------------------------------------------------------------- */

static void free_routed(void *p) {
    lf_route_result_free(p);
    free(p);
}

static void set_string(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_json(lua_State *L, const char *k, const char *json) {
    if (!json) return;
    push_json_text(L, json, strlen(json));
    lua_setfield(L, -2, k);
}

static void push_route_request(lua_State *L, const lf_route_request *q) {
    lua_createtable(L, 0, 10);
    set_string(L, "op", q->op == LF_ROUTE_CREATE ? "create" : "transition");
    set_string(L, "route", q->route);
    set_string(L, "ref", q->ref);
    set_string(L, "repo", q->repo);
    if (q->has_ref_number) {
        lua_pushinteger(L, (lua_Integer)q->ref_number);
        lua_setfield(L, -2, "ref_number");
    }
    set_json(L, "labels", q->labels);
    set_string(L, "to", q->to);
    set_string(L, "trigger", q->trigger);
    set_json(L, "metadata", q->metadata);
    set_string(L, "actor", q->actor);
}

/* eng:route(event, payload [, delivery]) --> { requests = {...}, ignored =, error = }
 * Runs the policy set's routes over a GitHub webhook, as the server does:
 * `event` is the X-GitHub-Event header, `payload` the body (a string, its
 * bytes as they are, or a table, sent as JSON). Nothing is committed: the
 * requests are what the server would submit. Each is { op = "create" |
 * "transition", route, ref, repo, ref_number, labels, to, trigger,
 * metadata, actor }, absent fields left out. */
static int l_route(lua_State *L) {
    lua_engine *le = check_engine(L);
    lf_event ev = {.source = "github",
                   .name = luaL_checkstring(L, 2),
                   .delivery = luaL_optstring(L, 4, NULL)};
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_settop(L, 4);
        lua_createtable(L, 0, 1);           /* 5: { payload = <table> } */
        lua_pushvalue(L, 3);
        lua_setfield(L, 5, "payload");
        opt_json(L, 5, "payload");
        lua_replace(L, 3);
    }
    ev.payload = luaL_checklstring(L, 3, &ev.payload_len);
    lf_route_result *res = lf_xcalloc(1, sizeof *res);
    box_push(L, res, free_routed);
    int b = lua_gettop(L);
    lf_engine_route(le->e, &ev, res);
    lua_createtable(L, 0, 3);
    lua_createtable(L, (int)res->nrequests, 0);
    for (size_t i = 0; i < res->nrequests; i++) {
        push_route_request(L, &res->requests[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "requests");
    set_string(L, "ignored", res->ignored);
    set_string(L, "error", res->error);
    box_drop(L, b);
    return 1;
}

/* ---- list ---------------------------------------------------------------- */

typedef struct sync_list {
    int done;
    lf_code code;
    lf_buf json;            /* "[record,record,...]" */
    char *error, *cursor;
} sync_list;

static void free_list(void *p) {
    sync_list *s = p;
    lf_buf_free(&s->json);
    free(s->error);
    free(s->cursor);
    free(s);
}

static void keep_list(lf_code code, const char *error, const lf_record *const *records,
                      size_t n, const char *next_cursor, void *arg) {
    sync_list *s = arg;
    s->done++;
    s->code = code;
    s->error = error ? lf_xstrdup(error) : NULL;
    s->cursor = next_cursor ? lf_xstrdup(next_cursor) : NULL;
    lf_buf_putc(&s->json, '[');
    for (size_t i = 0; i < n; i++) {
        char *j = lf_record_json(records[i]);
        if (i) lf_buf_putc(&s->json, ',');
        lf_buf_puts(&s->json, j);
        free(j);
    }
    lf_buf_putc(&s->json, ']');
}

/* eng:list{ state=, repo=, limit=, cursor= }
 *   --> { records = {...}, next_cursor = ... } | nil, message, code */
static int l_list(lua_State *L) {
    static const char *const known[] = {"state",  "repo",   "limit",
                                        "cursor", "parent", NULL};
    lua_engine *le = check_engine(L);
    lf_list_query q = {0};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        check_keys(L, 2, known);
        q.state = opt_string(L, 2, "state");
        q.repo = opt_string(L, 2, "repo");
        q.parent = opt_string(L, 2, "parent");
        q.cursor = opt_string(L, 2, "cursor");
        lua_Integer n = opt_count(L, 2, "limit");
        if (n > 0) q.limit = (size_t)n;
    }
    sync_list *s = lf_xcalloc(1, sizeof *s);
    box_push(L, s, free_list);
    int b = lua_gettop(L);
    lf_engine_list(le->e, &q, keep_list, s);
    if (!s->done)
        return luaL_error(L, "loopforge.core: the store did not complete inline");
    if (s->code != LF_OK) return push_failure(L, s->code, s->error);
    lua_createtable(L, 0, 2);
    push_json_text(L, lf_buf_str(&s->json), s->json.len);
    lua_setfield(L, -2, "records");
    if (s->cursor) {
        lua_pushstring(L, s->cursor);
        lua_setfield(L, -2, "next_cursor");
    }
    box_drop(L, b);
    return 1;
}

/* ---- audit and verify --------------------------------------------------- */

/* One page of the audit log, copied. Pages are read until one comes back
 * empty; `after` carries on from the last seq seen. */
typedef struct sync_page {
    int done;
    lf_code code;
    char *error;
    uint64_t last;
    size_t n;
    lf_buf lines;           /* NUL-separated */
    lf_chain *chain;        /* verify: feed lines here instead */
    char chain_err[512];
    int broken;
} sync_page;

static void free_page(void *p) {
    sync_page *s = p;
    lf_buf_free(&s->lines);
    free(s->error);
    free(s);
}

static void keep_page(lf_code code, const char *error, const char *const *lines,
                      const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    sync_page *s = arg;
    s->done++;
    s->code = code;
    s->error = error ? lf_xstrdup(error) : NULL;
    s->last = last_seq;
    s->n = n;
    for (size_t i = 0; i < n && !s->broken; i++) {
        if (s->chain) {
            if (lf_chain_feed(s->chain, lines[i], lens[i], s->chain_err,
                              sizeof s->chain_err) != 0)
                s->broken = 1;
        } else {
            lf_buf_add(&s->lines, lines[i], lens[i]);
            lf_buf_add(&s->lines, "", 1);
        }
    }
}

/* Reads the next page into a fresh boxed sync_page (pushed). Returns it,
 * or NULL after pushing fail, message, code. */
static sync_page *next_page(lua_State *L, lua_engine *le, const char *id, uint64_t after,
                            lf_chain *chain) {
    sync_page *s = lf_xcalloc(1, sizeof *s);
    box_push(L, s, free_page);
    s->chain = chain;
    lf_engine_audit(le->e, id, after, AUDIT_PAGE, keep_page, s);
    if (!s->done) luaL_error(L, "loopforge.core: the store did not complete inline");
    if (s->code != LF_OK) {
        push_failure(L, s->code, s->error);
        return NULL;
    }
    return s;
}

/* eng:audit(id?) --> { entry, ... } (every page, decoded)
 *                  | nil, message, code */
static int l_audit(lua_State *L) {
    lua_engine *le = check_engine(L);
    const char *id = luaL_optstring(L, 2, NULL);
    lua_newtable(L);
    int out = lua_gettop(L);
    lua_Integer k = 1;
    uint64_t after = 0;
    for (;;) {
        sync_page *s = next_page(L, le, id, after, NULL);
        if (!s) return 3;
        if (s->n == 0) break;
        const char *p = s->lines.p;
        for (size_t i = 0; i < s->n; i++) {
            size_t len = strlen(p);
            push_json_text(L, p, len);
            lua_rawseti(L, out, k++);
            p += len + 1;
        }
        after = s->last;
        box_drop(L, -1);
    }
    lua_settop(L, out);
    return 1;
}

/* eng:verify() --> true, count | false, message
 * Walks the whole log through the same hash-chain check as
 * `loopforge audit --verify`. */
static int l_verify(lua_State *L) {
    lua_engine *le = check_engine(L);
    lf_chain chain;
    lf_chain_init(&chain);
    uint64_t after = 0;
    for (;;) {
        sync_page *s = next_page(L, le, NULL, after, &chain);
        if (!s) return 3;
        if (s->broken) {
            lua_pushboolean(L, 0);
            lua_pushstring(L, s->chain_err);
            return 2;
        }
        if (s->n == 0) break;
        after = s->last;
        box_drop(L, -1);
    }
    lua_pushboolean(L, 1);
    lua_pushinteger(L, (lua_Integer)chain.count);
    return 2;
}

/* ---- timers ------------------------------------------------------------------ */

typedef struct sync_text {
    int done;
    lf_code code;
    char *text, *error;
} sync_text;

static void free_text(void *p) {
    sync_text *s = p;
    free(s->text);
    free(s->error);
    free(s);
}

static void keep_text(lf_code code, const char *error, const char *text, void *arg) {
    sync_text *s = arg;
    s->done = 1;
    s->code = code;
    s->text = text ? lf_xstrdup(text) : NULL;
    s->error = error ? lf_xstrdup(error) : NULL;
}

/* A text answer as Lua: the decoded document, or fail, message, code. */
static int push_text_result(lua_State *L, const sync_text *s) {
    if (!s->done)
        return luaL_error(L, "loopforge.core: the store did not complete inline");
    if (s->code != LF_OK) return push_failure(L, s->code, s->error);
    push_json_text(L, s->text, strlen(s->text));
    return 1;
}

/* The time at stack index i: seconds since the epoch or an ISO 8601 UTC
 * time, in us; 0 for nil. */
static int64_t opt_time(lua_State *L, int i, int arg) {
    int64_t us = 0;
    char ts[LF_TS_LEN + 1];
    if (lua_type(L, i) == LUA_TSTRING) {
        if (lf_ts_normalize(lua_tostring(L, i), ts) || lf_ts_parse(ts, &us))
            luaL_argerror(L, arg, "a time like 2026-01-01T00:00:00Z");
    } else if (!lua_isnoneornil(L, i)) {
        if (!lua_isnumber(L, i) || lf_json_double_int(trunc(lua_tonumber(L, i) * 1e6), &us))
            luaL_argerror(L, arg, "a time like 2026-01-01T00:00:00Z");
    }
    return us;
}

/* eng:timers([now] [, { due_by=, limit=, cursor=, records = {ids} }]) /
 * eng:tick([now]): the pending timers (a part of them: lf_engine_timers;
 * and, for tick, fire what is due) as judged at `now` -- seconds since the
 * epoch or an ISO 8601 UTC time; default the clock. A spec moves time by
 * passing it. eng:fire_due([now]): serve's tick, which looks only at what
 * can be due. */
enum { TIMERS, TICK, FIRE_DUE };
static int timers_at(lua_State *L, int how) {
    static const char *const known[] = {"due_by", "limit", "cursor", "records", NULL};
    lua_engine *le = check_engine(L);
    int64_t now = opt_time(L, 2, 2);
    lf_timers_query q = {.now_us = now};
    const char *ids[LF_TIMERS_IDS_MAX + 1];
    if (how == TIMERS && !lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        check_keys(L, 3, known);
        lua_getfield(L, 3, "due_by");
        q.due_by_us = opt_time(L, -1, 3);
        lua_Integer limit = opt_count(L, 3, "limit");
        q.limit = limit > 0 ? (size_t)limit : 0;
        q.cursor = opt_string(L, 3, "cursor");
        if (lua_getfield(L, 3, "records") != LUA_TNIL) {
            int list = lua_gettop(L);
            luaL_argcheck(L, lua_type(L, list) == LUA_TTABLE, 3,
                          "records must be a list of record ids");
            q.ids = ids;
            /* each id stays on the stack while the engine copies it; one
             * more than the engine takes is refused by it */
            lua_Integer n = (lua_Integer)lua_rawlen(L, list);
            for (lua_Integer i = 1; i <= n && q.nids <= LF_TIMERS_IDS_MAX; i++) {
                luaL_checkstack(L, 1, "records");
                lua_rawgeti(L, list, i);
                luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 3,
                              "records must be a list of record ids");
                ids[q.nids++] = lua_tostring(L, -1);
            }
        }
    }
    sync_text *s = lf_xcalloc(1, sizeof *s);
    box_push(L, s, free_text);
    if (how == FIRE_DUE) lf_engine_fire_due(le->e, now, keep_text, s);
    else if (how == TICK) lf_engine_tick(le->e, now, true, keep_text, s);
    else lf_engine_timers(le->e, &q, keep_text, s);
    return push_text_result(L, s);
}

/* eng:explain(id [, { actor=, roles = {...}, trigger= }]) --> the document */
static int l_explain(lua_State *L) {
    static const char *const known[] = {"actor", "roles", "trigger", NULL};
    lua_engine *le = check_engine(L);
    lf_explain_req req = {.id = check_text(L, 2)};
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        check_keys(L, 3, known);
        req.actor = opt_string(L, 3, "actor");
        req.trigger = opt_string(L, 3, "trigger");
        req.roles = opt_roles(L, 3);
    }
    sync_text *s = lf_xcalloc(1, sizeof *s);
    box_push(L, s, free_text);
    lf_engine_explain(le->e, &req, keep_text, s);
    return push_text_result(L, s);
}

/* eng:acknowledge(id, { reason = "...", actor = ... }) --> result */
static int l_acknowledge(lua_State *L) {
    static const char *const known[] = {"reason", "actor", NULL};
    lua_engine *le = check_engine(L);
    const char *id = check_text(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    check_keys(L, 3, known);
    const char *reason = opt_string(L, 3, "reason"), *actor = opt_string(L, 3, "actor");
    sync_result s = {0};
    lf_engine_acknowledge(le->e, id, actor, reason, keep_result, &s);
    return push_result(L, &s);
}

static int l_timers(lua_State *L) { return timers_at(L, TIMERS); }
static int l_tick(lua_State *L) { return timers_at(L, TICK); }
static int l_fire_due(lua_State *L) { return timers_at(L, FIRE_DUE); }

/* ---- policies, counters, logs ---------------------------------------------- */

typedef struct sync_reload {
    int done;
    lf_code code;
    char *error, *generation;
} sync_reload;

static void keep_reload(lf_code code, const char *error, const char *old_gen,
                        const char *new_gen, void *arg) {
    sync_reload *s = arg;
    (void)old_gen;
    s->done++;
    s->code = code;
    s->error = error ? lf_xstrdup(error) : NULL;
    s->generation = new_gen ? lf_xstrdup(new_gen) : NULL;
}

/* eng:reload(actor?) --> true, new_generation | false, "file:line: ...", code */
static int l_reload(lua_State *L) {
    lua_engine *le = check_engine(L);
    sync_reload s = {0};
    lf_engine_reload(le->e, luaL_optstring(L, 2, NULL), keep_reload, &s);
    if (!s.done) return luaL_error(L, "loopforge.core: reload did not complete inline");
    int n;
    if (s.code == LF_OK) {
        lua_pushboolean(L, 1);
        lua_pushstring(L, s.generation ? s.generation : lf_engine_generation(le->e));
        n = 2;
    } else {
        lua_pushboolean(L, 0);
        lua_pushstring(L, s.error ? s.error : lf_code_name(s.code));
        lua_pushstring(L, lf_code_name(s.code));
        n = 3;
    }
    free(s.error);
    free(s.generation);
    return n;
}

static int l_generation(lua_State *L) {
    lua_engine *le = check_engine(L);
    lua_pushstring(L, lf_engine_generation(le->e));
    return 1;
}

static void set_count(lua_State *L, const char *k, uint64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* eng:stats() --> { transitions = { ok=n, denied=n, ... }, guard_evals=,
 *                  guard_ns=, hooks_run=, hook_errors=, followups=,
 *                  reloads_ok=, reloads_failed=, timer_records=,
 *                  lock_waits=, lock_timeouts=, flushes= } */
static int l_stats(lua_State *L) {
    lua_engine *le = check_engine(L);
    lf_stats st;
    memset(&st, 0, sizeof st);
    lf_engine_stats(le->e, &st);
    lua_createtable(L, 0, 11);
    lua_createtable(L, 0, LF_CODE__COUNT);
    for (int c = 0; c < LF_CODE__COUNT; c++)
        set_count(L, lf_code_name(c), st.transitions[c]);
    lua_setfield(L, -2, "transitions");
    set_count(L, "guard_evals", st.guard_evals);
    set_count(L, "guard_ns", st.guard_ns);
    set_count(L, "hooks_run", st.hooks_run);
    set_count(L, "hook_errors", st.hook_errors);
    set_count(L, "followups", st.followups);
    set_count(L, "reloads_ok", st.reloads_ok);
    set_count(L, "reloads_failed", st.reloads_failed);
    set_count(L, "timer_records", st.timer_records);
    set_count(L, "lock_waits", st.lock_waits);
    set_count(L, "lock_timeouts", st.lock_timeouts);
    set_count(L, "flushes", st.flushes);
    return 1;
}

/* eng:logs() --> { "warn: hook x: ...", ... }, and forgets them. */
static int l_logs(lua_State *L) {
    lua_engine *le = check_engine(L);
    lua_createtable(L, (int)le->nlogs, 0);
    for (size_t i = 0; i < le->nlogs; i++) {
        lua_pushstring(L, le->logs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    /* Free only after every line is safely in Lua (pushing may raise). */
    for (size_t i = 0; i < le->nlogs; i++) free(le->logs[i]);
    le->nlogs = 0;
    return 1;
}

/* ---- the module ---------------------------------------------------------- */

static const luaL_Reg engine_methods[] = {
    {"create", l_create},
    {"transition", l_transition},
    {"get", l_get},
    {"find_by_ref", l_find_by_ref},
    {"delete", l_delete},
    {"route", l_route},
    {"list", l_list},
    {"audit", l_audit},
    {"verify", l_verify},
    {"timers", l_timers},
    {"tick", l_tick},
    {"fire_due", l_fire_due},
    {"explain", l_explain},
    {"acknowledge", l_acknowledge},
    {"reload", l_reload},
    {"generation", l_generation},
    {"stats", l_stats},
    {"logs", l_logs},
    {"close", engine_close},
    {NULL, NULL},
};

static const luaL_Reg engine_meta[] = {
    {"__gc", engine_close},
    {"__close", engine_close},
    {"__tostring", engine_tostring},
    {NULL, NULL},
};

static const luaL_Reg module_funcs[] = {
    {"engine", l_engine},
    {NULL, NULL},
};

int luaopen_loopforge_core(lua_State *L);

int luaopen_loopforge_core(lua_State *L) {
    luaL_checkversion(L);
    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, ENGINE_MT);
    luaL_setfuncs(L, engine_meta, 0);
    luaL_newlib(L, engine_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newlib(L, module_funcs);
    lua_pushstring(L, lf_version());
    lua_setfield(L, -2, "version");
    /* Stands for JSON null inside arrays; comparable with ==. */
    lua_pushlightuserdata(L, JSON_NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
