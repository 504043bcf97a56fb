/* sandbox.c -- the lua_State every policy set runs in.
 *
 * Owns what Lua code can reach: a custom allocator with a memory cap, an
 * instruction budget enforced by a count hook, the safe subset of the
 * standard libraries (read-only, so one policy cannot change them under
 * another), a require() that only finds DIR/lib and the Lua library
 * directory, and the DSL built-ins: workflow{}, policy{}, hook{}, route{},
 * allow(), deny(), request(), notify{} and parse_time() (route.c adds the
 * routes' create{}, transition{} and ignore()). */
#include "internal.h"
#include "../core/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

/* ---- memory and time ------------------------------------------------------ */

/* Counts bytes so one lua_State cannot take the machine down. Only growth
 * is refused: Lua copes with a failed allocation but a failed shrink
 * or free would leave its accounting wrong. */
static void *lf_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    lf_rules *r = ud;
    if (!ptr) osize = 0;            /* osize is then a type tag, not a size */
    if (nsize == 0) {
        free(ptr);
        r->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && r->mem_used - osize + nsize > r->mem_limit) return NULL;
    /* Most blocks are new ones: malloc is realloc's own path for them,
     * without realloc's checks in front. */
    void *p = ptr ? realloc(ptr, nsize) : malloc(nsize);
    if (p) r->mem_used = r->mem_used - osize + nsize;
    return p;
}

static lf_rules *rules_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Raises the spent budget's error again: the message saved when it ran
 * out, so every re-raise names the line that exhausted it. */
static int raise_spent(lua_State *L) {
    lf_rules *r = rules_of(L);
    lua_pushstring(L, r->spent);
    return lua_error(L);
}

/* Marks the running call's budget spent and keeps it spent: from here on
 * the hook fires on every instruction of every coroutine-free call chain
 * and raises again, so no pcall, loop or error handler in Lua can go on
 * running. Only lf_budget_reset (the next call) lifts it. */
static void spend(lua_State *L, const char *what, lua_Debug *ar) {
    lf_rules *r = rules_of(L);
    if (ar && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        snprintf(r->spent, sizeof r->spent, "%s:%d: %s", ar->short_src, ar->currentline,
                 what);
    else snprintf(r->spent, sizeof r->spent, "%s", what);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
}

/* The count hook stays installed for the life of the state; each call
 * (or file, at load) gets a fresh number of ticks and a fresh deadline.
 * The error names the line that was running, which is usually the loop
 * at fault. Once spent, the hook runs at every instruction and raises. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
    lf_rules *r = rules_of(L);
    if (!r->spent[0]) {
        if (lua_gethookcount(L) != LF_RULES_HOOK_EVERY)    /* armed by a spent call */
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, LF_RULES_HOOK_EVERY);
        if (--r->ticks_left < 0) {
            spend(L, "instruction budget exceeded", ar);
        } else {
            int64_t now = (int64_t)lf_mono_ns();
            if (!r->deadline_ns) {      /* the call's first tick: its clock starts */
                r->deadline_ns = now + r->time_ns;
                return;
            }
            if (now <= r->deadline_ns) return;
            spend(L, "time budget exceeded", ar);
        }
    }
    raise_spent(L);
}

void lf_budget_reset(lf_rules *r, long instructions) {
    long ticks = instructions / LF_RULES_HOOK_EVERY;
    r->ticks_left = ticks > 0 ? ticks : 1;
    r->spent[0] = '\0';
    /* A load gets the load budget's time too (ten times a call's). The
     * clock starts at the call's first tick (budget_hook), not here: most
     * calls end within a tick, and then never read it (a clock read was
     * ~13 % of a hook's cost). Nothing is checked before the first tick
     * either way; from it on, the budget runs and each tick checks it. */
    int64_t ms = instructions > r->call_budget ? 10 * r->call_ms : r->call_ms;
    r->time_ns = ms * 1000000;
    r->deadline_ns = 0;
    /* Re-arming also restarts the hook's countdown at a full tick. */
    lua_sethook(r->L, budget_hook, LUA_MASKCOUNT, LF_RULES_HOOK_EVERY);
}

/* ---- pcall and xpcall that cannot swallow a spent budget ------------------ */

/* Lua's own pcall/xpcall, but a spent budget (instructions, time) or a
 * memory error is raised again instead of returned: a policy that wraps
 * an endless loop in pcall inside another endless loop must still end. */
static int finish_pcall(lua_State *L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
        lf_rules *r = rules_of(L);
        if (status == LUA_ERRMEM && !r->spent[0])
            spend(L, "not enough memory (the policy memory limit was reached)", NULL);
        if (r->spent[0]) return raise_spent(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int l_pcall(lua_State *L) {
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int st = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
    return finish_pcall(L, st, 0);
}

/* xpcall's message handler, guarded: Lua calls a handler before it
 * unwinds, and with hooks off when the error came from the budget hook,
 * so the policy's handler runs only for ordinary errors. */
static int guarded_handler(lua_State *L) {
    lf_rules *r = rules_of(L);
    if (r->spent[0]) {
        lua_pushstring(L, r->spent);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int l_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);        /* true, f after the handler */
    int st = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
    return finish_pcall(L, st, 2);
}

/* ---- read-only tables ------------------------------------------------------ */

static int ro_newindex(lua_State *L) {
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

static int ro_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

static int ro_next(lua_State *L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, ro_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table at the top of the stack with an empty proxy that
 * reads through to it and refuses writes; `#`, ipairs and pairs work. */
void lf_freeze_top(lua_State *L) {
    int inner = lua_gettop(L);
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, inner);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, inner);
    lua_pushcclosure(L, ro_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushvalue(L, inner);
    lua_pushcclosure(L, ro_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, inner);
}

/* ---- DSL built-ins ---------------------------------------------------------- */

/* The first Lua frame up the stack is the caller, even when it got here
 * through pcall or another C function. */
static int caller_line(lua_State *L) {
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) return ar.currentline;
    }
    return 0;
}

/* workflow{} / policy{} / hook{} / route{}: tag the table with its kind and the line
 * it was written on, so every later problem with it can point there. */
static int tag_table(lua_State *L, int kind) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LF_REG_TAGS);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)caller_line(L) * LF_TAG_KINDS + kind);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

static int l_workflow(lua_State *L) { return tag_table(L, LF_TAG_WORKFLOW); }
static int l_policy(lua_State *L) { return tag_table(L, LF_TAG_POLICY); }
static int l_hook(lua_State *L) { return tag_table(L, LF_TAG_HOOK); }
static int l_route(lua_State *L) { return tag_table(L, LF_TAG_ROUTE); }

int lf_tag_of(lua_State *L, int idx, int *line) {
    *line = 0;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, LF_REG_TAGS);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_Integer tag = lua_tointeger(L, -1);
    lua_pop(L, 2);
    *line = (int)(tag / LF_TAG_KINDS);
    return (int)(tag % LF_TAG_KINDS);
}

static void check_opt_table(lua_State *L, int arg, const char *fn, const char *what) {
    if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TTABLE)
        luaL_error(L, "%s: %s must be a table, not a %s", fn, what,
                   luaL_typename(L, arg));
}

/* Refuses the table at slot 1 if it has a key not among the n names (a
 * typo would otherwise silently drop a setting): fn names the call in
 * the error, which lists the names. */
static void known_fields(lua_State *L, const char *fn, const char *const *names, size_t n) {
    for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
        bool str = lua_type(L, -2) == LUA_TSTRING;
        size_t i = 0;
        while (str && i < n && strcmp(lua_tostring(L, -2), names[i]) != 0) i++;
        if (str && i < n) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (i = 0; i < n; i++) {
            if (i) luaL_addstring(&b, ", ");
            luaL_addstring(&b, names[i]);
        }
        luaL_pushresult(&b);                /* above the key and its value */
        luaL_error(L, "%s: unknown field '%s' (%s)", fn,
                   str ? lua_tostring(L, -3) : luaL_typename(L, -3), lua_tostring(L, -1));
    }
}

/* What allow(), deny(), request(), schedule() and notify() return: a new
 * table of the n values from stack slot `first` on, under names in that
 * order, with the metatable that tags its kind (upvalue mt). Returns 1
 * (the table, on top). */
static int tagged(lua_State *L, const char *const *names, int first, int n, int mt) {
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        lua_pushvalue(L, first + i);
        lua_setfield(L, -2, names[i]);
    }
    lua_pushvalue(L, lua_upvalueindex(mt));
    lua_setmetatable(L, -2);
    return 1;
}

/* allow() with nothing to add is by far the commonest verdict: it returns
 * one shared table, so the fast path allocates nothing. */
static int l_allow(lua_State *L) {
    static const char *const names[] = {"annotations", "allow"};
    if (lua_isnoneornil(L, 1)) {
        lua_pushvalue(L, lua_upvalueindex(1));
        return 1;
    }
    check_opt_table(L, 1, "allow", "annotations");
    lua_settop(L, 1);           /* the slots read below are the arguments */
    lua_pushboolean(L, 1);
    return tagged(L, names, 1, 2, 2);
}

/* deny(reason [, annotations]) or deny{ reason = ..., requires = {...},
 * annotations = {...} }: `requires` says, as data, what would satisfy the
 * guard (explain shows it; the entry keeps it). */
static int l_deny(lua_State *L) {
    static const char *const names[] = {"reason", "annotations", "requires", "allow"};
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_settop(L, 1);
        known_fields(L, "deny{}", names, 3);
        lua_getfield(L, 1, "reason");
        lua_getfield(L, 1, "annotations");
        lua_getfield(L, 1, "requires");
        lua_remove(L, 1);           /* reason, annotations, requires */
    } else lua_settop(L, 2);
    if (lua_type(L, 1) != LUA_TSTRING || lua_rawlen(L, 1) == 0)
        return luaL_error(L, "deny: the reason must be a non-empty string");
    check_opt_table(L, 2, "deny", "annotations");
    check_opt_table(L, 3, "deny", "requires");
    lua_settop(L, 3);
    lua_pushboolean(L, 0);
    return tagged(L, names, 1, 4, 1);
}

/* request(to, trigger [, metadata [, record_id]]): a follow-up transition a
 * hook asks for, of its record or of another (e.g. e.record.parent). */
/* A non-empty string argument with no NUL inside (C would cut it there). */
static bool plain_string(lua_State *L, int arg) {
    size_t len;
    const char *s = lua_type(L, arg) == LUA_TSTRING ? lua_tolstring(L, arg, &len) : NULL;
    return s && len > 0 && strlen(s) == len;
}

static int l_request(lua_State *L) {
    static const char *const names[] = {"to", "trigger", "metadata", "record"};
    if (!plain_string(L, 1))
        return luaL_error(L, "request: the target state must be a non-empty string "
                             "with no NUL");
    if (!plain_string(L, 2))
        return luaL_error(L,
                          "request: the trigger must be a non-empty string with no NUL");
    check_opt_table(L, 3, "request", "metadata");
    if (!lua_isnoneornil(L, 4) && !plain_string(L, 4))
        return luaL_error(L, "request: the record id must be a non-empty string");
    lua_settop(L, 4);
    return tagged(L, names, 1, 4, 1);
}

/* schedule{ after = "30m", to = STATE, trigger = "...", metadata = {...} }:
 * a transition a hook asks for later: a timer of the record's own, bound
 * to the state it is in now (leaving it cancels the timer), durable on
 * every store, fired by the tick like a workflow's timers. It is a
 * request with a delay, so it travels the same way. */
static int l_schedule(lua_State *L) {
    static const char *const names[] = {"after", "to", "trigger", "metadata"};
    if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "schedule: expects one table: schedule{ after = \"30m\", "
                             "to = STATE, trigger = \"...\" }");
    lua_settop(L, 1);
    known_fields(L, "schedule", names, 4);
    lua_getfield(L, 1, "after");
    const char *after = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || lf_duration_parse(after) <= 0)
        return luaL_error(L,
                          "schedule: after must be a duration like \"30m\" or \"48h\"");
    lua_getfield(L, 1, "to");
    lua_getfield(L, 1, "trigger");
    lua_getfield(L, 1, "metadata");
    if (!plain_string(L, 3) || !plain_string(L, 4))
        return luaL_error(L, "schedule: to and trigger must be non-empty strings");
    check_opt_table(L, 5, "schedule", "metadata");
    return tagged(L, names, 2, 4, 1);
}

/* notify{ url = "http://...", body = string or table, content_type = ...,
 * timeout_ms = ... }: an HTTP POST a hook asks for. Everything that can
 * be checked is checked here, so a mistake names the hook's line; a body
 * table is encoded after the call, like request() metadata. */
static int l_notify(lua_State *L) {
    static const char *const fields[] = {"url", "body", "content_type", "timeout_ms"};
    if (lua_gettop(L) != 1 || lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L,
                          "notify: expects one table: notify{ url = ..., body = ... }");
    lua_settop(L, 1);
    known_fields(L, "notify", fields, 4);
    lua_getfield(L, 1, "url");                                  /* 2 */
    const char *url = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (!url || strncasecmp(url, "http://", 7) != 0 || !url[7] || url[7] == '/')
        return luaL_error(L, "notify: url must be an http://HOST[:PORT]/PATH string "
                             "(https is not supported)");
    int bt = lua_getfield(L, 1, "body");                        /* 3 */
    if (bt != LUA_TNIL && bt != LUA_TSTRING && bt != LUA_TTABLE)
        return luaL_error(L, "notify: body must be a string or a table, not a %s",
                          luaL_typename(L, 3));
    int ct = lua_getfield(L, 1, "content_type");                /* 4 */
    if (ct != LUA_TNIL && (ct != LUA_TSTRING || lua_rawlen(L, 4) == 0))
        return luaL_error(L, "notify: content_type must be a non-empty string");
    int isint = 1;
    lua_Integer ms = LF_NOTIFY_TIMEOUT_MS;
    if (lua_getfield(L, 1, "timeout_ms") != LUA_TNIL)           /* 5 */
        ms = lua_tointegerx(L, 5, &isint);
    if (!isint || ms < 1 || ms > LF_NOTIFY_MAX_TIMEOUT_MS)
        return luaL_error(L, "notify: timeout_ms must be a whole number from 1 to %d",
                          LF_NOTIFY_MAX_TIMEOUT_MS);
    lua_pushinteger(L, ms);
    lua_replace(L, 5);
    return tagged(L, fields, 2, 4, 1);
}

static int digits(const char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or with a fraction before the Z:
 * UTC only, because a freeze window must not move with the server's
 * time zone. */
static int parse_time(const char *s, double *out) {
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-') return -1;
    int Y = digits(s, 4), M = digits(s + 5, 2), D = digits(s + 8, 2), h = 0, m = 0,
        sec = 0;
    double frac = 0;
    if (n > 10) {
        if (n < 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[n - 1] != 'Z')
            return -1;
        h = digits(s + 11, 2), m = digits(s + 14, 2), sec = digits(s + 17, 2);
        if (n > 20) {
            if (s[19] != '.' || n == 21) return -1;
            double scale = 0.1;
            for (size_t i = 20; i < n - 1; i++, scale /= 10) {
                if (s[i] < '0' || s[i] > '9') return -1;
                frac += (s[i] - '0') * scale;
            }
        }
    }
    if (Y < 0 || M < 1 || M > 12 || D < 1 || D > 31 || h < 0 || h > 23 || m < 0 ||
        m > 59 || sec < 0 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    *out = (double)timegm(&tm) + frac;
    return 0;
}

static int l_parse_time(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    double t;
    if (parse_time(s, &t) == 0) {
        lua_pushnumber(L, t);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "bad time '%s' (expected UTC, like 2026-12-24T00:00:00Z)", s);
    return 2;
}

/* A finalizer would run at whatever moment the collector picks, outside
 * any call's budget; policies get setmetatable without __gc. */
static int l_setmetatable(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L,
                          "setmetatable: __gc metamethods are not allowed in policies");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* print() goes to stderr: stdout belongs to the CLI's output (JSON). */
static int l_print(lua_State *L) {
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1) fputc('\t', stderr);
        fwrite(s, 1, len, stderr);
        lua_pop(L, 1);
    }
    fputc('\n', stderr);
    return 0;
}

static bool load_chunk(lua_State *L, const char *src, size_t len, const char *path);

/* ---- require ------------------------------------------------------------------ */

static bool valid_modname(const char *s) {
    bool seg = false;
    for (; *s; s++) {
        if (*s == '.') {
            if (!seg) return false;
            seg = false;
        } else if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                   (*s >= '0' && *s <= '9') || *s == '_' || *s == '-') {
            seg = true;
        } else {
            return false;
        }
    }
    return seg;
}

/* Pushes the chunk of module `name` from the Lua library directory, or
 * returns false (nothing pushed) if there is none. Syntax errors raise. */
static bool lua_dir_module(lua_State *L, lf_rules *r, const char *name) {
    if (!r->lua_dir) return false;
    lf_buf p = LF_BUF_INIT;
    lf_buf_printf(&p, "%s/", r->lua_dir);
    for (const char *s = name; *s; s++) lf_buf_putc(&p, *s == '.' ? '/' : *s);
    lf_buf_puts(&p, ".lua");
    size_t len = 0;
    char *src = lf_read_file(lf_buf_str(&p), &len);
    if (!src) {
        lf_buf_free(&p);
        return false;
    }
    bool ok = load_chunk(L, src, len, lf_buf_str(&p));
    free(src);
    lf_buf_free(&p);
    if (!ok) lua_error(L);
    return true;
}

static char loading;    /* its address marks a module being loaded */

/* require(name): DIR/lib/<name>.lua (compiled at load, part of the
 * generation) or <lua_dir>/<name>.lua, dots meaning directories. Each
 * module runs once per generation, with its own globals. */
static int l_require(lua_State *L) {
    lf_rules *r = rules_of(L);
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!valid_modname(name)) return luaL_error(L, "require: bad module name '%s'", name);
    lua_getfield(L, LUA_REGISTRYINDEX, LF_REG_LOADED);         /* 2 */
    if (lua_getfield(L, 2, name) != LUA_TNIL) {                 /* 3 */
        if (lua_touserdata(L, 3) == &loading)
            return luaL_error(L, "require: module '%s' requires itself", name);
        return 1;
    }
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LF_REG_LIBS);           /* 3 */
    if (lua_getfield(L, 3, name) != LUA_TFUNCTION) {            /* 4 */
        lua_pop(L, 1);
        if (!lua_dir_module(L, r, name))
            return luaL_error(L,
                              "module '%s' not found (policies can only require "
                              "modules under lib/ and the Lua library directory)",
                              name);
    }
    lua_pushlightuserdata(L, &loading);
    lua_setfield(L, 2, name);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pushnil(L);                 /* a later require may try again */
        lua_setfield(L, 2, name);
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* ---- chunks and the state ------------------------------------------------------- */

/* Each chunk gets its own globals, falling back to the shared sandbox,
 * so a stray global in one file cannot change the meaning of the next.
 * _G inside it names its own globals, never the shared table. */
void lf_set_env(lua_State *L, int fn) {
    lua_createtable(L, 0, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "lf.envmt");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    if (!lua_setupvalue(L, fn, 1)) lua_pop(L, 1);
}

/* Pushes a function that runs `src` (a text chunk named "@path") with its
 * own globals; on a syntax error pushes the message and returns false. */
static bool load_chunk(lua_State *L, const char *src, size_t len, const char *path) {
    lua_pushfstring(L, "@%s", path);
    /* Text only: a precompiled chunk can crash the VM on purpose. */
    int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
    lua_remove(L, -2);
    if (st != LUA_OK) return false;
    lf_set_env(L, lua_gettop(L));
    return true;
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open) {
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

/* Swaps global `name` for a read-only proxy of it. */
static void freeze_global(lua_State *L, const char *name) {
    lua_getglobal(L, name);
    lf_freeze_top(L);
    lua_setglobal(L, name);
}

static void only_os_clock(lua_State *L) {
    /* os: only the clock functions. Open the real library off to the side
     * and copy the safe entries into a fresh table. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_newtable(L);
    static const char *const keep[] = {"time", "date", "clock"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        lua_getfield(L, -2, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);
}

static void drop_unsafe(lua_State *L) {
    /* Anything that loads code from outside the policy directory, or
     * turns functions into bytes, or lets a file steer the collector. */
    static const char *const drop[] = {"dofile", "loadfile", "load", "collectgarbage"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) {
        lua_pushnil(L);
        lua_setglobal(L, drop[i]);
    }
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
}

static void set_fn(lua_State *L, const char *name, lua_CFunction f, int nup) {
    lua_pushcclosure(L, f, nup);
    lua_setglobal(L, name);
}

/* A metatable that tags a kind of result (its __metatable names the
 * kind) and refuses writes: left on the stack; returns its registry
 * reference, which the evaluator compares a result's metatable with. */
static int kind_mt(lua_State *L, const char *kind) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "__metatable");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -1);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The verdict and request constructors and their metatables, which the
 * evaluator recognises results by. */
static void dsl_builtins(lf_rules *r) {
    lua_State *L = r->L;
    set_fn(L, "workflow", l_workflow, 0);
    set_fn(L, "policy", l_policy, 0);
    set_fn(L, "hook", l_hook, 0);
    set_fn(L, "route", l_route, 0);
    set_fn(L, "require", l_require, 0);
    set_fn(L, "parse_time", l_parse_time, 0);
    set_fn(L, "print", l_print, 0);
    lua_getglobal(L, "setmetatable");
    set_fn(L, "setmetatable", l_setmetatable, 1);

    r->ref_verdict_mt = kind_mt(L, "verdict");

    lua_createtable(L, 0, 1);                          /* the shared allow() */
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "allow");
    lua_pushvalue(L, -2);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    r->ref_allow = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -2);
    set_fn(L, "allow", l_allow, 2);
    set_fn(L, "deny", l_deny, 1);

    r->ref_request_mt = kind_mt(L, "request");
    lua_pushvalue(L, -1);
    set_fn(L, "schedule", l_schedule, 1);
    set_fn(L, "request", l_request, 1);

    r->ref_notify_mt = kind_mt(L, "notify");
    set_fn(L, "notify", l_notify, 1);
    lf_route_builtins(r);
}

static void registry_tables(lua_State *L) {
    /* The DSL tags: weak keys, so they never keep a table alive. */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, LF_REG_TAGS);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LF_REG_LIBS);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LF_REG_LOADED);
    /* Every chunk's globals read through to the shared sandbox. */
    lua_createtable(L, 0, 1);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_setfield(L, LUA_REGISTRYINDEX, "lf.envmt");
}

static int setup_p(lua_State *L) {
    lf_rules *r = lua_touserdata(L, 1);
    open_lib(L, LUA_GNAME, luaopen_base);
    lua_register(L, "pcall", l_pcall);
    lua_register(L, "xpcall", l_xpcall);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
    only_os_clock(L);
    drop_unsafe(L);
    registry_tables(L);
    dsl_builtins(r);

    /* Shared tables are read-only: one policy must not be able to change
     * string.format (or the string metatable) under every other one. */
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, LUA_OSLIBNAME};
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) freeze_global(L, libs[i]);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_setglobal(L, "_G");
    /* package.loaded would hand out the real library tables. */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);

    lf_views_init(r);
    /* Guards allocate small, short-lived objects: the generational
     * collector is made for exactly that. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    return 0;
}

/* A fresh sandbox in r->L, or NULL if the memory cap does not even leave
 * room for that. Set up in protected mode: a memory error there must be
 * a load error, not a panic. */
lua_State *lf_sandbox_new(lf_rules *r) {
    lua_State *L = lua_newstate(lf_alloc, r);
    if (!L) return NULL;
    r->L = L;
    lua_pushcfunction(L, setup_p);
    lua_pushlightuserdata(L, r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_close(L);
        r->L = NULL;
    }
    return r->L;
}
