/* view.c -- what Lua sees of a record and of a request.
 *
 * Guards run on every transition, so nothing here is built eagerly. The
 * record is a userdata whose __index reads the C lf_record directly;
 * JSON-valued fields (labels, metadata, ci_status, each history entry's
 * metadata) are parsed only when a guard reads them, and the tables made
 * from them are cached for that one call only, so a guard that changes
 * one cannot change what the next guard sees.
 *
 * A view is valid for one evaluation (an "epoch"): the record it points
 * to belongs to the caller and is gone afterwards. A guard that keeps a
 * view and uses it later gets an error, never a dangling pointer.
 *
 * `t` (guards) and `e` (hooks) are made once per rule set: an empty proxy
 * table whose __index is a table of fields, each field made on first
 * access and kept for the evaluation (or, for tables, the call), so a
 * guard pays only for what it reads. */
#include "internal.h"
#include "../core/text.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

enum {
    SLOT_CI = 1,
    SLOT_LABELS,
    SLOT_META,
    SLOT_FORGE,
    SLOT_KIDS,
    SLOT_HIST,
    NSLOTS = SLOT_HIST
};

typedef struct lf_view {
    const lf_record *rec;
    uint32_t epoch;
    uint32_t stamp[NSLOTS + 1];   /* r->call when a slot's table was made */
} lf_view;

static lf_rules *rules_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* ---- JSON -> Lua ------------------------------------------------------------ */

/* A JSON object field as a table; anything else (there should be
 * nothing else) as an empty one. */
static void push_object(lua_State *L, const char *text) {
    lf_json_push(L, text);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);
    }
}

/* ---- the record view ---------------------------------------------------------- */

/* The record behind a view, or an error if its call is over. */
static const lf_record *live(lua_State *L, lf_rules *r, const lf_view *v) {
    if (!r->in_scope || v->epoch != r->epoch)
        luaL_error(L, "record view used after the call that received it returned "
                      "(copy the values you need instead of keeping the record)");
    return v->rec;
}

/* A string of the record (never one a cache of Lua's knows by its
 * address: lua_pushstring would look there first, in vain). */
static void push_str(lua_State *L, const char *s) {
    if (s) lua_pushlstring(L, s, strlen(s));
    else lua_pushnil(L);
}

/* The field names of the tables made here (entries, identities), made
 * once (lf_views_init) and handed to the functions that fill such tables
 * as their first upvalue, a list: a field set by a name Lua already holds
 * skips lua_setfield's lookup of a C string. */
enum {
    K_FROM_STATE = 1,
    K_TO_STATE,
    K_TRIGGER,
    K_ACTOR,
    K_TIMESTAMP,
    K_METADATA,
    K_NAME,
    K_KIND,
    K_PERSON,
    K_PRINCIPAL,
    K_ROLES,
    NKEYS = K_ROLES
};
static const char *const key_names[NKEYS + 1] = {
    NULL,   "from_state", "to_state", "trigger", "actor",     "timestamp",
    "metadata", "name",   "kind",     "person",  "principal", "roles"};
#define KEYS lua_upvalueindex(1)

/* t[key k] = the value at the top of the stack (popped); t is a fresh
 * table at index t, without a metatable, so a raw set is a set. */
static void set_key(lua_State *L, int t, int k) {
    lua_rawgeti(L, KEYS, k);
    lua_insert(L, -2);
    lua_rawset(L, t);
}

/* t[key k] = s, unless s is NULL (nil: a fresh table has no such field). */
static void set_str(lua_State *L, int t, int k, const char *s) {
    if (!s) return;
    lua_rawgeti(L, KEYS, k);
    push_str(L, s);
    lua_rawset(L, t);
}

/* One history entry as a fresh table (the caller's to keep or change). */
static void push_entry(lua_State *L, const lf_record *rec, const lf_hist *h) {
    lua_createtable(L, 0, 6);
    int t = lua_gettop(L);
    set_str(L, t, K_FROM_STATE, lf_hs(rec, h->from_state));
    set_str(L, t, K_TO_STATE, lf_hs(rec, h->to_state));
    set_str(L, t, K_TRIGGER, lf_hs(rec, h->trigger));
    set_str(L, t, K_ACTOR, lf_hs(rec, h->actor));
    set_str(L, t, K_TIMESTAMP, h->timestamp);
    push_object(L, lf_hs(rec, h->metadata));
    set_key(L, t, K_METADATA);
}

/* A JSON field of the record, as a table cached in the view for this call. */
static int push_cached(lua_State *L, lf_rules *r, lf_view *v, int slot,
                       const char *text) {
    if (v->stamp[slot] == r->call) {
        lua_getiuservalue(L, 1, slot);
        return 1;
    }
    push_object(L, text);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, slot);
    v->stamp[slot] = r->call;
    return 1;
}

/* transitions: a read-only list view; `#` and ipairs work, each element
 * is a fresh table. */
static int hist_index(lua_State *L) {
    lf_rules *r = rules_of(L);
    const lf_record *rec = live(L, r, lua_touserdata(L, 1));
    lua_Integer i = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
    if (i < 1 || (size_t)i > rec->nhist) {
        lua_pushnil(L);
        return 1;
    }
    push_entry(L, rec, &rec->hist[i - 1]);
    return 1;
}

static int hist_len(lua_State *L) {
    lf_rules *r = rules_of(L);
    lua_pushinteger(L, (lua_Integer)live(L, r, lua_touserdata(L, 1))->nhist);
    return 1;
}

static int view_newindex(lua_State *L) {
    return luaL_error(L, "the record is read-only (a guard changes nothing by writing "
                         "to it; return annotations or request a transition instead)");
}

/* Made once per view: a view lives for one epoch anyway. */
static int push_hist(lua_State *L, lf_view *v) {
    if (v->stamp[SLOT_HIST]) {
        lua_getiuservalue(L, 1, SLOT_HIST);
        return 1;
    }
    lf_view *h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = *v;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rules_of(L)->ref_hist_mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, SLOT_HIST);
    v->stamp[SLOT_HIST] = 1;
    return 1;
}

static int push_int_or_nil(lua_State *L, bool has, int64_t v) {
    if (has) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnil(L);
    return 1;
}

#define KEY(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)

static int view_index(lua_State *L) {
    lf_rules *r = rules_of(L);
    lf_view *v = lua_touserdata(L, 1);
    const lf_record *rec = live(L, r, v);
    size_t n = 0;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : "";
    if (KEY("state")) {
        push_str(L, rec->state);
        return 1;
    }
    if (KEY("auto_merge")) {
        lua_pushboolean(L, rec->auto_merge);
        return 1;
    }
    if (KEY("metadata")) return push_cached(L, r, v, SLOT_META, rec->metadata);
    if (KEY("labels")) return push_cached(L, r, v, SLOT_LABELS, rec->labels);
    if (KEY("transitions")) return push_hist(L, v);
    if (KEY("ci_status")) return push_cached(L, r, v, SLOT_CI, rec->ci_status);
    /* What GitHub told the record (core/forge.h), {} when nothing. */
    if (KEY("forge"))
        return push_cached(L, r, v, SLOT_FORGE, rec->forge ? rec->forge : "{}");
    /* Its children by state, {total = N, STATE = n, ...}: loaded for the
     * records of workflows that declare `children`, nil otherwise. */
    if (KEY("children")) {
        if (!r->scope.children || rec != r->scope.rec) {
            lua_pushnil(L);
            return 1;
        }
        return push_cached(L, r, v, SLOT_KIDS, r->scope.children);
    }
    if (KEY("parent")) {
        push_str(L, rec->parent);
        return 1;
    }
    if (KEY("record_id")) {
        lua_pushstring(L, rec->id);
        return 1;
    }
    if (KEY("ref")) {
        push_str(L, rec->ref);
        return 1;
    }
    if (KEY("ref_number"))
        return push_int_or_nil(L, rec->has_ref_number, rec->ref_number);
    if (KEY("repo")) {
        push_str(L, rec->repo);
        return 1;
    }
    if (KEY("pr_url")) {
        push_str(L, rec->pr_url);
        return 1;
    }
    if (KEY("pr_number")) return push_int_or_nil(L, rec->has_pr_number, rec->pr_number);
    if (KEY("created_at")) {
        lua_pushstring(L, rec->created_at);
        return 1;
    }
    if (KEY("updated_at")) {
        lua_pushstring(L, rec->updated_at);
        return 1;
    }
    if (KEY("closed_at")) {
        push_str(L, rec->closed_at[0] ? rec->closed_at : NULL);
        return 1;
    }
    if (KEY("workflow")) {
        push_str(L, rec->workflow);
        return 1;
    }
    if (KEY("version")) {
        lua_pushinteger(L, (lua_Integer)rec->version);
        return 1;
    }
    /* A misspelt field would otherwise read as nil and quietly change what
     * the policy decides. */
    return luaL_error(L, "the record has no field '%s'",
                      lua_type(L, 2) == LUA_TSTRING ? k : luaL_typename(L, 2));
}

static int view_tostring(lua_State *L) {
    lf_rules *r = rules_of(L);
    lf_view *v = lua_touserdata(L, 1);
    if (!r->in_scope || v->epoch != r->epoch) lua_pushliteral(L, "record (expired)");
    else lua_pushfstring(L, "record %s", v->rec->id);
    return 1;
}

void lf_push_record_view(lf_rules *r) {
    lua_State *L = r->L;
    lf_view *v = lua_newuserdatauv(L, sizeof *v, NSLOTS);
    memset(v, 0, sizeof *v);
    v->rec = r->scope.rec;
    v->epoch = r->epoch;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_view_mt);
    lua_setmetatable(L, -2);
}

/* ---- helpers on t and e --------------------------------------------------------- */

static const lf_record *scope_rec(lua_State *L) {
    lf_rules *r = rules_of(L);
    if (!r->in_scope) luaL_error(L, "called outside a guard or hook call");
    return r->scope.rec;
}

/* t:count_entered(state): history entries whose to_state is state. */
static int l_count_entered(lua_State *L) {
    lua_pushinteger(
        L, (lua_Integer)lf_record_count(scope_rec(L), NULL, luaL_checkstring(L, 2)));
    return 1;
}

/* t:count_transitions(from, to): entries from -> to; nil matches any. */
static int l_count_transitions(lua_State *L) {
    const char *from = luaL_optstring(L, 2, NULL), *to = luaL_optstring(L, 3, NULL);
    lua_pushinteger(L, (lua_Integer)lf_record_count(scope_rec(L), from, to));
    return 1;
}

/* t:last_entry(state): the last entry into state (nil: the last entry). */
static int l_last_entry(lua_State *L) {
    const lf_record *rec = scope_rec(L);
    const char *st = luaL_optstring(L, 2, NULL);
    for (size_t i = rec->nhist; i-- > 0;) {
        if (!st || lf_streq_null(lf_hs(rec, rec->hist[i].to_state), st)) {
            push_entry(L, rec, &rec->hist[i]);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

/* t:has_label(name): the record's labels ({name: ...}, or name as a
 * value), or the request metadata's `labels` list. Read from the JSON
 * text itself: nothing is decoded. */
static int l_has_label(lua_State *L) {
    lf_rules *r = rules_of(L);
    const lf_record *rec = scope_rec(L);
    const char *name = luaL_checkstring(L, 2);
    bool yes = lf_json_mentions(rec->labels, name, true);
    if (!yes) {
        const char *list = lf_json_member(r->scope.meta, "labels");
        yes = list && *list == '[' && lf_json_mentions(list, name, false);
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* ---- t and e ---------------------------------------------------------------------- */

/* The fields of t and e. None is stored up front: each is made on first
 * access and then kept in the field table, for the rest of the evaluation
 * (values that cannot change: F_FROM..F_RECORD) or of the call (tables a
 * guard could scribble on: F_META, F_DECISIONS). Most guards read two or
 * three fields; the rest then cost nothing. */
enum {
    F_FROM,
    F_TO,
    F_TRIGGER,
    F_ACTOR,
    F_NOW,
    F_RECORD,
    F_META,
    F_DECISIONS,
    F_ROLES,
    F_IDENT,
    NFIELDS
};
#define PER_CALL                                                                         \
    ((1u << F_META) | (1u << F_DECISIONS) | (1u << F_ROLES) | (1u << F_IDENT))

static const char *const t_names[NFIELDS] = {
    "from",   "to",       "trigger", "actor",       "now",
    "record", "metadata", NULL,      "actor_roles", "identity"};
static const char *const e_names[NFIELDS] = {
    "previous", "state",    "trigger",   "actor",       "violation",
    "record",   "metadata", "decisions", "actor_roles", "identity"};

/* The actor's roles as a list of strings ({} for none). */
static void push_roles(lua_State *L, const char *roles) {
    lua_newtable(L);
    lua_Integer i = 0;
    for (const char *p = roles; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len) {
            lua_pushlstring(L, p, len);
            lua_rawseti(L, -2, ++i);
        }
        p = c ? c + 1 : NULL;
    }
}

/* {name, kind, person, principal[, roles]} of a name (lf_rules_identity),
 * a credential's kind and principal winning when given. */
static void push_identity(lua_State *L, lf_rules *r, const char *name, const char *kind,
                          const char *principal, const char *roles) {
    lf_identity id;
    lf_rules_identity(r, name, &id);
    if (kind) id.kind = kind;
    if (principal) id.principal = principal;
    lua_createtable(L, 0, 5);
    int t = lua_gettop(L);
    set_str(L, t, K_NAME, id.name);
    set_str(L, t, K_KIND, id.kind);
    set_str(L, t, K_PERSON, id.person);
    set_str(L, t, K_PRINCIPAL, id.principal);
    if (roles) {
        push_roles(L, roles);
        set_key(L, t, K_ROLES);
    }
}

/* identity(name): who a name is (config.lua's identities). */
static int l_identity(lua_State *L) {
    const char *name = luaL_optstring(L, 1, NULL);
    push_identity(L, rules_of(L), name, NULL, NULL, NULL);
    return 1;
}

static int field_id(const char *const *names, const char *k, size_t n) {
    for (int i = 0; i < NFIELDS; i++)
        if (names[i] && names[i][0] == k[0] && strcmp(names[i], k) == 0 && n == strlen(k))
            return i;
    return -1;
}

/* Pushes field f of the current scope. */
static void push_field(lua_State *L, lf_rules *r, int f, bool hooks) {
    lf_scope *s = &r->scope;
    switch (f) {
    case F_FROM: push_str(L, s->from); break;
    case F_TO: push_str(L, s->to); break;
    case F_TRIGGER: push_str(L, s->trigger); break;
    case F_ACTOR: push_str(L, s->actor); break;
    case F_NOW:       /* e.violation shares the slot: both are scalars */
        if (hooks) lua_pushboolean(L, s->violation);
        else lua_pushnumber(L, (lua_Number)s->now_us / 1e6);
        break;
    case F_RECORD: lf_push_record_view(r); break;
    case F_META: push_object(L, s->meta); break;
    case F_ROLES: push_roles(L, s->roles); break;
    case F_IDENT:
        push_identity(L, r, s->actor, s->actor_kind, s->principal, s->roles);
        break;
    default: lf_json_push(L, s->decisions ? s->decisions : "[]"); break;
    }
}

/* __index of the field table (upvalues: the keys, true for e). A name that is not a
 * field at all is an error: `t.metdata` must not quietly read as nil. */
static int ctx_index(lua_State *L) {
    lf_rules *r = rules_of(L);
    bool hooks = lua_toboolean(L, lua_upvalueindex(2));
    size_t n = 0;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : "";
    int f = field_id(hooks ? e_names : t_names, k, n);
    if (f < 0)
        return luaL_error(L, "%s has no field '%s'",
                          hooks ? "the event" : "the transition",
                          lua_type(L, 2) == LUA_TSTRING ? k : luaL_typename(L, 2));
    if (!r->in_scope) return luaL_error(L, "called outside a guard or hook call");
    push_field(L, r, f, hooks);
    if (lua_isnil(L, -1)) return 1;
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    r->lazy[hooks] |= 1u << f;
    return 1;
}

/* Removes the cached fields in `mask` from the field table of t (hooks
 * false) or e. */
static void ctx_clear(lf_rules *r, bool hooks, unsigned mask) {
    lua_State *L = r->L;
    const char *const *names = hooks ? e_names : t_names;
    if (!(r->lazy[hooks] & mask)) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, hooks ? r->ref_ef : r->ref_tf);
    for (int f = 0; f < NFIELDS; f++) {
        if (!(r->lazy[hooks] & mask & (1u << f))) continue;
        lua_pushnil(L);
        lua_setfield(L, -2, names[f]);
    }
    lua_pop(L, 1);
    r->lazy[hooks] &= ~mask;
}

static int ctx_newindex(lua_State *L) {
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

/* Makes the proxy (registry ref *proxy) and its field table (*fields);
 * keys: the stack index of the field names. */
static void make_ctx(lua_State *L, int keys, bool hooks, int *proxy, int *fields) {
    static const luaL_Reg methods[] = {{"count_entered", l_count_entered},
                                       {"count_transitions", l_count_transitions},
                                       {"last_entry", l_last_entry},
                                       {"has_label", l_has_label},
                                       {NULL, NULL}};
    lua_createtable(L, 0, 16);                         /* fields */
    lua_pushvalue(L, keys);
    luaL_setfuncs(L, methods, 1);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, keys);
    lua_pushboolean(L, hooks);
    lua_pushcclosure(L, ctx_index, 2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);

    lua_createtable(L, 0, 0);                          /* proxy */
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ctx_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    *proxy = luaL_ref(L, LUA_REGISTRYINDEX);
    *fields = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* In the sandbox's setup, before any file runs. */
void lf_views_init(lf_rules *r) {
    lua_State *L = r->L;
    lua_createtable(L, NKEYS, 0);
    int keys = lua_gettop(L);
    for (int k = 1; k <= NKEYS; k++) {
        lua_pushstring(L, key_names[k]);
        lua_rawseti(L, keys, k);
    }
    lua_pushvalue(L, keys);
    lua_pushcclosure(L, l_identity, 1);
    lua_setglobal(L, "identity");

    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, view_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, view_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, view_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "record");
    lua_setfield(L, -2, "__metatable");
    r->ref_view_mt = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 4);
    lua_pushvalue(L, keys);
    lua_pushcclosure(L, hist_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, hist_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, view_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "transitions");
    lua_setfield(L, -2, "__metatable");
    r->ref_hist_mt = luaL_ref(L, LUA_REGISTRYINDEX);

    make_ctx(L, keys, false, &r->ref_t, &r->ref_tf);
    make_ctx(L, keys, true, &r->ref_e, &r->ref_ef);
    lua_pop(L, 1);
    r->call = 1;
}

/* ---- scopes and calls ------------------------------------------------------------- */

void lf_scope_enter(lf_rules *r, const lf_scope *s) {
    r->scope = *s;
    r->in_scope = true;
}

/* Every view made in this scope dies with it. */
void lf_scope_leave(lf_rules *r) {
    lf_scope *s = &r->scope;
    memset(s, 0, sizeof *s);
    r->in_scope = false;
    r->epoch++;
}

/* After each guard or hook call: per-call caches expire, so the next
 * call starts from what the record says, whatever this one did. */
void lf_call_done(lf_rules *r) {
    if (++r->call == 0) r->call = 1;
    ctx_clear(r, r->scope.hooks, PER_CALL);
}

/* At both ends of an evaluation or a hooks run (inside its protected
 * call): nothing of another transition may be left in the fields. */
void lf_ctx_reset(lf_rules *r) {
    ctx_clear(r, false, ~0u);
    ctx_clear(r, true, ~0u);
}
