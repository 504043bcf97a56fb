/* route.c -- routes: inbound events (GitHub webhooks) become requests.
 *
 *   return route {
 *     name = "issue-opened",
 *     on = { event = "issues", action = "opened" },
 *     run = function(ev, cfg)        -- ev.source, name, delivery, action, payload
 *       return create { ref = ev.payload.issue.html_url, repo = ... }
 *     end,
 *   }
 *
 * A route sees the event and nothing else: no record, no store. It only
 * asks -- create{}, transition{}, a list of them, or ignore(why) -- and
 * the engine decides, resolving a transition's ref (or alias) to a
 * record. That keeps routes pure functions of the payload, testable
 * without a store, and keeps every decision in one place.
 *
 * The `on` filter is matched in C against the event name and the
 * payload's top-level "action", which is read without decoding the
 * payload: an event no route wants costs a scan of a few bytes. Only when
 * a route matches is the payload decoded, straight onto the Lua stack
 * (luajson.c), afresh for each route, so one route that scribbles on its
 * copy cannot change what the next one sees.
 *
 * Routes run like hooks: in load order, each under the instruction
 * budget and the memory cap; one that raises, runs out, or returns
 * something else is reported ("route NAME: message"), its requests are
 * dropped, and the routes after it still run. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define ACTION_MAX 128                  /* longer "action" values match nothing */

/* ---- the built-ins: create{}, transition{}, ignore() -------------------- */

/* What the constructors make is a userdata holding a table of fields:
 * readable like a table, but no field can be changed or added once made
 * (a route that scribbled `req.to = 5` would otherwise hand C a number
 * where it expects a state), and its metatable says what it is. */
static int mark_index(lua_State *L) {
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int mark_newindex(lua_State *L) {
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__name");
    return luaL_error(L, "attempt to modify a read-only %s (field '%s')",
                      lua_tostring(L, -1), k);
}

/* Replaces the table at the top with a userdata holding it, marked with
 * the metatable in upvalue 1. */
static void seal(lua_State *L) {
    lua_newuserdatauv(L, 0, 1);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
}

/* The fields a request constructor takes, and the Lua type of each. */
typedef struct field {
    const char *name;
    int type;
    bool required;
} field;

static const field create_fields[] = {{"ref", LUA_TSTRING, true},
                                      {"repo", LUA_TSTRING, false},
                                      {"ref_number", LUA_TNUMBER, false},
                                      {"labels", LUA_TTABLE, false},
                                      {"metadata", LUA_TTABLE, false},
                                      {"actor", LUA_TSTRING, false},
                                      {NULL, 0, false}};

static const field transition_fields[] = {
    {"ref", LUA_TSTRING, true},     {"to", LUA_TSTRING, true},
    {"trigger", LUA_TSTRING, true}, {"metadata", LUA_TTABLE, false},
    {"actor", LUA_TSTRING, false},  {NULL, 0, false}};

/* Checks the argument table against `fields` and copies it into a fresh
 * request (so the route cannot change it after the fact through another
 * reference), tagged with `op`. Errors point at the route's line: a typo
 * ("trigerr") or a missing ref must not become a silently odd request. */
static int make_request(lua_State *L, const char *op, const field *fields) {
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "%s: expected a table, like %s { ref = ... }, not a %s", op,
                          op, luaL_typename(L, 1));
    lua_settop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const field *f = fields;
        while (f->name && !(lua_type(L, -1) == LUA_TSTRING &&
                            strcmp(f->name, lua_tostring(L, -1)) == 0))
            f++;
        if (!f->name)
            return luaL_error(L, "%s: unknown field '%s'", op,
                              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                             : luaL_typename(L, -1));
    }
    lua_createtable(L, 0, 8);
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
    for (const field *f = fields; f->name; f++) {
        int ty = lua_getfield(L, 1, f->name);
        if (ty == LUA_TNIL && f->required)
            return luaL_error(L, "%s: %s is required", op, f->name);
        if (ty != LUA_TNIL && ty != f->type)
            return luaL_error(L, "%s: %s must be a %s, not a %s", op, f->name,
                              lua_typename(L, f->type), luaL_typename(L, -1));
        if (ty == LUA_TSTRING && lua_rawlen(L, -1) == 0)
            return luaL_error(L, "%s: %s must not be empty", op, f->name);
        if (ty == LUA_TNUMBER && !lua_isinteger(L, -1))
            return luaL_error(L, "%s: %s must be an integer", op, f->name);
        lua_setfield(L, -2, f->name);
    }
    seal(L);
    return 1;
}

static int l_create(lua_State *L) { return make_request(L, "create", create_fields); }
static int l_transition(lua_State *L) {
    return make_request(L, "transition", transition_fields);
}

/* ignore(why): the route looked and there is nothing to do; `why` is what
 * the sender is told (GitHub shows it in the delivery's response). */
static int l_ignore(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING || lua_rawlen(L, 1) == 0)
        return luaL_error(L, "ignore: the reason must be a non-empty string");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "reason");
    seal(L);
    return 1;
}

/* The metatable that marks what a constructor made (left pushed; the
 * registry keeps a reference too). */
static int new_mark(lua_State *L, const char *name) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pushcfunction(L, mark_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, mark_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -1);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void lf_route_builtins(lf_rules *r) {
    lua_State *L = r->L;
    r->ref_route_req_mt = new_mark(L, "request");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_create, 1);
    lua_setglobal(L, "create");
    lua_pushcclosure(L, l_transition, 1);
    lua_setglobal(L, "transition");
    r->ref_ignore_mt = new_mark(L, "ignore");
    lua_pushcclosure(L, l_ignore, 1);
    lua_setglobal(L, "ignore");
}

/* ---- running the routes ---------------------------------------------------- */

typedef struct route_job {
    lf_rules *r;
    const lf_event *ev;
    const char *action;         /* the payload's "action", or NULL */
    lf_route_result *out;
    lf_buf reasons, errors;     /* "; "-separated */
} route_job;

/* Stack slots of the protected runner (1 is its light userdata). */
enum { S_REQ_MT = 2, S_IGNORE_MT, S_PAYLOAD };

static void add_line(lf_buf *b, char *msg) {
    if (b->len) lf_buf_puts(b, "; ");
    lf_buf_puts(b, msg);
    free(msg);
}

/* "<what went wrong>" from a failed lua_pcall (the message is at -1). */
static char *pcall_message(lua_State *L, int st) {
    if (st == LUA_ERRMEM)
        return lf_xstrdup("not enough memory (the policy memory limit was reached)");
    if (lua_type(L, -1) == LUA_TSTRING) return lf_xstrdup(lua_tostring(L, -1));
    return lf_xprintf("(error object is a %s value)", luaL_typename(L, -1));
}

static void route_error(route_job *j, const lf_rule *rt, char *msg) {
    add_line(&j->errors, lf_xprintf("route %s: %s", rt->name, msg));
    free(msg);
}

/* Decodes the payload (an object: lf_rules_route checked its first
 * byte) and pushes it; raises if it is not valid JSON. */
static int decode_p(lua_State *L) {
    route_job *j = lua_touserdata(L, 1);
    size_t pos = 0;
    if (!lf_json_decode(L, j->ev->payload, j->ev->payload_len, NULL, &pos)) {
        lua_pushfstring(L, "not valid JSON (at byte %I)", (lua_Integer)pos);
        return lua_error(L);
    }
    return 1;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* Calls route rt with ev = {source, name, delivery, action, payload}
 * (arguments: the job, the rule, and the payload table or nil to decode
 * a fresh one) and returns what it returned. */
static int call_p(lua_State *L) {
    route_job *j = lua_touserdata(L, 1);
    const lf_rule *rt = lua_touserdata(L, 2);
    if (lua_isnil(L, 3)) {
        lua_pushcfunction(L, decode_p);
        lua_pushlightuserdata(L, j);
        lua_call(L, 1, 1);
        lua_replace(L, 3);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->fn);
    lua_createtable(L, 0, 5);
    set_str(L, "source", j->ev->source);
    set_str(L, "name", j->ev->name);
    set_str(L, "delivery", j->ev->delivery);
    set_str(L, "action", j->action);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "payload");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->cfg);
    lf_budget_reset(j->r, j->r->call_budget);
    lua_call(L, 2, 1);
    return 1;
}

static bool has_mt(lua_State *L, int idx, int mt_slot) {
    if (!lua_getmetatable(L, idx)) return false;
    bool yes = lua_rawequal(L, -1, mt_slot);
    lua_pop(L, 1);
    return yes;
}

/* The string field k, or NULL. A string with a NUL inside would end
 * early in C: *err (if not yet set) says so and the field is dropped. */
static char *field_str(lua_State *L, int req, const char *k, char **err) {
    lua_getfield(L, req, k);
    size_t len = 0;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    char *s = NULL;
    if (v && strlen(v) != len) {
        if (!*err) *err = lf_xprintf("%s contains a NUL character", k);
    } else if (v) {
        s = lf_xstrdup(v);
    }
    lua_pop(L, 1);
    return s;
}

/* The table field k of the request at req as JSON object text in *out;
 * NULL (with *out untouched) if absent, else an error message. `strings`:
 * every value must be a string (labels). */
static char *field_object(lua_State *L, int req, const char *k, bool strings,
                          char **out) {
    char err[300], *msg = NULL;
    if (lua_getfield(L, req, k) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    int t = lua_gettop(L);
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_encode(L, t, NULL, k, &b, err, sizeof err)) msg = lf_xstrdup(err);
    else if (b.p[0] == '[')     /* (an empty table is an empty object) */
        msg = lf_xprintf("%s: must be a table of names to values, not a list", k);
    lua_pushnil(L);
    while (!msg && strings && lua_next(L, t)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            msg = lf_xprintf("%s: '%s' must map to a string", k, lua_tostring(L, -2));
        lua_pop(L, msg ? 2 : 1);
    }
    lua_settop(L, t - 1);
    if (!msg) *out = lf_buf_steal(&b);
    lf_buf_free(&b);
    return msg;
}

static bool known_state(const lf_rules *r, const char *state) {
    for (int i = 0; i < r->nwfs; i++)
        if (lf_workflow_state(r->wfs[i], state) >= 0) return true;
    return false;
}

static void free_request(lf_route_request *q) {
    free(q->route);
    free(q->ref);
    free(q->repo);
    free(q->labels);
    free(q->to);
    free(q->trigger);
    free(q->metadata);
    free(q->actor);
}

/* The request at idx (made by create{} or transition{}) into *q; NULL or
 * an error message. The constructors checked the fields' types already. */
static char *take_request(route_job *j, const lf_rule *rt, int sealed,
                          lf_route_request *q) {
    lua_State *L = j->r->L;
    memset(q, 0, sizeof *q);
    lua_getiuservalue(L, sealed, 1);
    int idx = lua_gettop(L);
    lua_getfield(L, idx, "op");
    bool create = strcmp(lua_tostring(L, -1), "create") == 0;
    lua_pop(L, 1);
    q->op = create ? LF_ROUTE_CREATE : LF_ROUTE_TRANSITION;
    q->route = lf_xstrdup(rt->name);
    char *err = NULL;
    q->ref = field_str(L, idx, "ref", &err);
    q->actor = field_str(L, idx, "actor", &err);
    /* Every change has an actor; a route that names none acts itself. */
    if (!q->actor) q->actor = lf_xprintf("route:%s", rt->name);
    if (!err) err = field_object(L, idx, "metadata", false, &q->metadata);
    if (create) {
        q->repo = field_str(L, idx, "repo", &err);
        if (lua_getfield(L, idx, "ref_number") == LUA_TNUMBER) {
            q->has_ref_number = true;
            q->ref_number = (int64_t)lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
        if (!err) err = field_object(L, idx, "labels", true, &q->labels);
    } else {
        q->to = field_str(L, idx, "to", &err);
        q->trigger = field_str(L, idx, "trigger", &err);
        /* Caught here, the route's author sees the typo in the route's
         * own error rather than as an engine refusal much later. */
        if (!err && !known_state(j->r, q->to))
            err = lf_xprintf("unknown state '%s'", q->to);
    }
    lua_settop(L, idx - 1);
    if (err) {
        char *msg = lf_xprintf("%s: %s", create ? "create" : "transition", err);
        free(err);
        return msg;
    }
    return NULL;
}

static void add_requests(lf_route_result *o, lf_route_request *got, size_t n) {
    o->requests = lf_xrealloc(o->requests, (o->nrequests + n) * sizeof *got);
    memcpy(o->requests + o->nrequests, got, n * sizeof *got);
    o->nrequests += n;
}

/* What a route returned (top of the stack): nil, ignore(why), a request,
 * or a list of requests. All or nothing: one bad element makes the whole
 * result an error. */
static void take_result(route_job *j, const lf_rule *rt) {
    lua_State *L = j->r->L;
    int v = lua_gettop(L);
    if (lua_isnil(L, v)) {
        add_line(&j->reasons, lf_xprintf("route %s returned no request", rt->name));
        return;
    }
    if (has_mt(L, v, S_IGNORE_MT)) {
        lua_getiuservalue(L, v, 1);
        lua_getfield(L, -1, "reason");
        add_line(&j->reasons, lf_xstrdup(lua_tostring(L, -1)));
        lua_settop(L, v);
        return;
    }
    bool list = lua_type(L, v) == LUA_TTABLE && !lua_getmetatable(L, v);
    if (!list) lua_settop(L, v);
    if (!list && !has_mt(L, v, S_REQ_MT)) {
        route_error(j, rt,
                    lf_xprintf("returned a %s, not a request, a list of requests or "
                               "ignore(reason)",
                               luaL_typename(L, v)));
        return;
    }
    lua_Integer n = list ? (lua_Integer)lua_rawlen(L, v) : 1;
    if (n == 0) {
        add_line(&j->reasons, lf_xprintf("route %s returned no request", rt->name));
        return;
    }
    lf_route_request *got = lf_xrealloc(NULL, (size_t)n * sizeof *got);
    char *err = NULL;
    lua_Integer k = 0;
    for (; k < n && !err; k++) {
        if (list) lua_rawgeti(L, v, k + 1);
        else lua_pushvalue(L, v);
        if (has_mt(L, -1, S_REQ_MT)) {
            if ((err = take_request(j, rt, lua_gettop(L), &got[k])))
                free_request(&got[k]);
        } else {
            err =
                lf_xprintf("item %lld of the returned list is not a request (create{} or "
                           "transition{})",
                           (long long)k + 1);
        }
        lua_pop(L, 1);
    }
    if (err) {
        for (lua_Integer i = 0; i < k - 1; i++) free_request(&got[i]);
        route_error(j, rt, err);
    } else {
        add_requests(j->out, got, (size_t)n);
    }
    free(got);
}

static int routes_p(lua_State *L) {
    route_job *j = lua_touserdata(L, 1);
    lf_rules *r = j->r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_route_req_mt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_ignore_mt);
    /* Decoded once up front: a payload that is not a JSON object is the
     * sender's problem, reported once, not once per route. */
    lua_pushcfunction(L, decode_p);
    lua_pushlightuserdata(L, j);
    int st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        char *m = pcall_message(L, st);
        add_line(&j->errors, lf_xprintf("payload: %s", m));
        free(m);
        return 0;
    }
    bool fresh = true;              /* S_PAYLOAD is unused so far */
    for (int i = 0; i < r->nroutes; i++) {
        const lf_rule *rt = &r->rules[r->routes[i]];
        if (!rt->enabled ||
            !lf_event_match(&rt->filter, j->ev->source, j->ev->name, j->action))
            continue;
        lua_pushcfunction(L, call_p);
        lua_pushlightuserdata(L, j);
        lua_pushlightuserdata(L, (void *)rt);
        if (fresh) lua_pushvalue(L, S_PAYLOAD);
        else lua_pushnil(L);
        fresh = false;
        st = lua_pcall(L, 3, 1, 0);
        if (st == LUA_OK) take_result(j, rt);
        else route_error(j, rt, pcall_message(L, st));
        lua_settop(L, S_PAYLOAD);
        if (st == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
    }
    return 0;
}

static int count_matching(const lf_rules *r, const lf_event *ev, const char *action) {
    int n = 0;
    for (int i = 0; i < r->nroutes; i++) {
        const lf_rule *rt = &r->rules[r->routes[i]];
        n += rt->enabled && lf_event_match(&rt->filter, ev->source, ev->name, action);
    }
    return n;
}

/* The payload's first byte that is not blank. */
static char first_char(const lf_event *ev) {
    for (size_t i = 0; i < ev->payload_len; i++) {
        char c = ev->payload[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return c;
    }
    return '\0';
}

void lf_rules_route(lf_rules *r, const lf_event *ev, lf_route_result *out) {
    memset(out, 0, sizeof *out);
    /* Before any filter: an event that is not a JSON object is refused
     * whether or not a route wants it. */
    if (!ev->payload || first_char(ev) != '{') {
        out->error = lf_xstrdup("payload: not a JSON object");
        return;
    }
    char action[ACTION_MAX];
    bool has_action = lf_json_member_string(ev->payload, ev->payload_len, "action",
                                            action, sizeof action);
    route_job j = {r, ev, has_action ? action : NULL, out, LF_BUF_INIT, LF_BUF_INIT};
    if (!count_matching(r, ev, j.action)) {     /* no Lua at all */
        out->ignored =
            lf_xprintf("no route for %s%s%s", ev->name ? ev->name : "(unnamed event)",
                       j.action ? "." : "", j.action ? j.action : "");
        return;
    }
    lua_State *L = r->L;
    lua_pushcfunction(L, routes_p);
    lua_pushlightuserdata(L, &j);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        /* Only the bookkeeping between routes can get here (a full heap). */
        char *m = pcall_message(L, st);
        add_line(&j.errors, lf_xprintf("routes: %s", m));
        free(m);
        lua_settop(L, 0);
    }
    /* A big payload's tables are garbage now; give the memory back before
     * the next event rather than whenever the collector gets round to it. */
    if (st != LUA_OK || ev->payload_len > (1u << 20)) lua_gc(L, LUA_GCCOLLECT);
    if (!out->nrequests && j.reasons.len)
        out->ignored = lf_scrub(lf_buf_steal(&j.reasons));
    if (j.errors.len) out->error = lf_scrub(lf_buf_steal(&j.errors));
    lf_buf_free(&j.reasons);
    lf_buf_free(&j.errors);
}

void lf_route_result_free(lf_route_result *out) {
    for (size_t i = 0; i < out->nrequests; i++) free_request(&out->requests[i]);
    free(out->requests);
    free(out->ignored);
    free(out->error);
    memset(out, 0, sizeof *out);
}
