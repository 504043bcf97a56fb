/* dsl.c -- compiling policy{}, hook{} and route{} tables, their `on`
 * filters, and config.lua.
 *
 *   return policy {
 *     name = "...", description = "...",
 *     on = { from = ..., to = ..., trigger = ..., workflow = ... },
 *     defaults = { setting = value, ... },
 *     check = function(t, cfg) return allow() end,     -- hook{}: run(e, cfg)
 *     validate = function(cfg) ... end,                -- optional
 *   }
 *
 * A route{} has the same fields, with `run(ev, cfg)` and a filter on the
 * inbound event instead: on = { event = ..., action = ..., source = ... }.
 *
 * Everything that can be checked before a transition arrives is checked
 * here, so that a typo is a lint error with file:line rather than a
 * policy that silently never runs: unknown fields, filters naming states
 * no workflow has, settings the policy does not declare, settings of the
 * wrong type. The `on` filter becomes C data (lf_filter), matched without
 * calling Lua at all. */
#include "internal.h"
#include "../core/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* One policy{} or hook{} table being compiled. */
typedef struct rule_ctx {
    lua_State *L;
    load_ctx *c;
    int t, line;
    const char *what;           /* "policy", "hook" or "route" */
    const char *fnkey;          /* "check" or "run" */
} rule_ctx;

static void rproblem(rule_ctx *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rproblem(rule_ctx *x, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lf_problem(x->c, x->line, "%s", msg);
}

/* Pushes t[key] without metamethods and returns its type. */
static int rawfield(lua_State *L, int t, const char *key) {
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

/* ---- filters ---------------------------------------------------------------- */

static void strset_free(lf_strset *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    free(s->prefix);
    memset(s, 0, sizeof *s);
}

static void strset_add(lf_strset *s, const char *v, bool prefix) {
    s->v = lf_xrealloc(s->v, (size_t)(s->n + 1) * sizeof *s->v);
    s->prefix = lf_xrealloc(s->prefix, (size_t)(s->n + 1) * sizeof *s->prefix);
    size_t len = strlen(v) - prefix;
    s->v[s->n] = lf_xrealloc(NULL, len + 1);
    memcpy(s->v[s->n], v, len);
    s->v[s->n][len] = '\0';
    s->prefix[s->n++] = prefix;
}

static bool strset_match(const lf_strset *s, const char *v) {
    if (s->n == 0) return true;
    if (!v) return false;
    for (int i = 0; i < s->n; i++) {
        if (s->prefix[i] ? strncmp(v, s->v[i], strlen(s->v[i])) == 0
                         : lf_streq(v, s->v[i]))
            return true;
    }
    return false;
}

bool lf_filter_match(const lf_filter *f, const char *from, const char *to,
                     const char *trigger, const char *workflow) {
    return strset_match(&f->to, to) && strset_match(&f->from, from) &&
           strset_match(&f->trigger, trigger) && strset_match(&f->workflow, workflow);
}

/* Bit s set for each state s of wf that set matches (all of them for an
 * empty set). */
static uint64_t state_bits(const lf_strset *set, const lf_workflow *wf) {
    uint64_t bits = 0;
    for (int s = 0; s < wf->nstates; s++)
        if (strset_match(set, wf->states[s])) bits |= (uint64_t)1 << s;
    return bits;
}

void lf_filters_prepare(lf_rules *r) {
    for (int k = 0; k < r->nrules; k++) {
        lf_rule *x = &r->rules[k];
        if (x->kind == LF_RULE_ROUTE) continue;
        free(x->sm);
        x->sm = r->nwfs ? lf_xcalloc((size_t)r->nwfs, sizeof *x->sm) : NULL;
        for (int w = 0; w < r->nwfs; w++) {
            const lf_workflow *wf = r->wfs[w];
            lf_state_match *m = &x->sm[w];
            m->wf = strset_match(&x->filter.workflow, wf->name);
            m->from_any = x->filter.from.n == 0;
            m->bits = wf->nstates <= 64;
            if (!m->bits) continue;
            m->from = state_bits(&x->filter.from, wf);
            m->to = state_bits(&x->filter.to, wf);
        }
    }
}

void lf_on_init(const lf_rules *r, lf_on *on, const lf_workflow *wf, int from_id,
                int to_id, const char *from, const char *to, const char *trigger,
                const char *workflow) {
    *on = (lf_on){from, to, trigger, workflow, -1, from_id, to_id};
    if (!wf || to_id < 0 || to_id >= wf->nstates || from_id >= wf->nstates ||
        (from_id < 0) != !from)
        return;
    for (int w = 0; w < r->nwfs; w++)
        if (r->wfs[w] == wf) on->w = w;
}

static bool has_bit(uint64_t bits, int id) { return bits >> id & 1; }

bool lf_rule_applies(const lf_rule *x, const lf_on *on) {
    if (!x->enabled) return false;
    const lf_state_match *m = on->w >= 0 && x->sm ? &x->sm[on->w] : NULL;
    if (!m || !m->bits)
        return lf_filter_match(&x->filter, on->from, on->to, on->trigger, on->workflow);
    return m->wf && has_bit(m->to, on->to_id) &&
           (on->from_id < 0 ? m->from_any : has_bit(m->from, on->from_id)) &&
           strset_match(&x->filter.trigger, on->trigger);
}

/* An event without an action (push, ping) matches only routes that do
 * not filter on the action. */
bool lf_event_match(const lf_filter *f, const char *source, const char *event,
                    const char *action) {
    return strset_match(&f->event, event) && strset_match(&f->action, action) &&
           strset_match(&f->source, source);
}

/* One field of `on` (the value at the top of the stack): a name or a
 * non-empty list of names. Only triggers take patterns ("ci.*"). */
static void get_names(rule_ctx *x, const char *key, lf_strset *set, lf_buf *text) {
    lua_State *L = x->L;
    int v = lua_gettop(L);
    lua_Integer n = 1;
    if (lua_type(L, v) == LUA_TTABLE) n = (lua_Integer)lua_rawlen(L, v);
    bool ok = lua_type(L, v) == LUA_TSTRING || (lua_type(L, v) == LUA_TTABLE && n > 0);
    for (lua_Integer i = 1; ok && i <= n; i++) {
        if (lua_type(L, v) == LUA_TTABLE) lua_rawgeti(L, v, i);
        else lua_pushvalue(L, v);
        size_t len;
        const char *s =
            lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!s || len == 0) {
            ok = false;
        } else {
            bool pattern = strcmp(key, "trigger") == 0 && s[len - 1] == '*';
            const char *star = strchr(s, '*');
            if (star && (!pattern || star != s + len - 1))
                rproblem(x, "on.%s: '*' may only end a trigger pattern ('%s')", key, s);
            else strset_add(set, s, pattern);
            lf_buf_puts(text, i > 1 ? "|" : "");
            lf_buf_puts(text, s);
        }
        lua_pop(L, 1);
    }
    if (!ok) rproblem(x, "on.%s must be a name or a non-empty list of names", key);
}

static void get_filter(rule_ctx *x, lf_rule *rule) {
    lua_State *L = x->L;
    static const char *const tkeys[] = {"from", "to", "trigger", "workflow"};
    static const char *const ekeys[] = {"event", "action", "source"};
    lf_filter *f = &rule->filter;
    bool route = rule->kind == LF_RULE_ROUTE;
    const char *const *keys = route ? ekeys : tkeys;
    int nkeys = route ? 3 : 4;
    const char *expected =
        route ? "event, action or source" : "from, to, trigger or workflow";
    const char *fields = route ? "event, action, source" : "from, to, trigger, workflow";
    lf_strset *sets[4] = {&f->from, &f->to, &f->trigger, &f->workflow};
    if (route) {
        sets[0] = &f->event;
        sets[1] = &f->action;
        sets[2] = &f->source;
    }
    lf_buf text = LF_BUF_INIT;
    bool has_event = false;
    int ty = rawfield(L, x->t, "on"), on = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE) {
        rproblem(x, "on must be a table (of %s)", fields);
    } else if (ty == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, on)) {
            lua_pop(L, 1);
            bool known = false;
            for (int i = 0; i < nkeys && lua_type(L, -1) == LUA_TSTRING; i++)
                known |= strcmp(lua_tostring(L, -1), keys[i]) == 0;
            if (!known)
                rproblem(x, "on: unknown filter '%s' (expected %s)",
                         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                        : luaL_typename(L, -1),
                         expected);
        }
        /* In a fixed order, so the readable form is stable. */
        for (int i = 0; i < nkeys; i++) {
            if (rawfield(L, on, keys[i]) != LUA_TNIL) {
                has_event |= route && i == 0;
                lf_buf_puts(&text, text.len ? " " : "");
                lf_buf_printf(&text, "%s=", keys[i]);
                get_names(x, keys[i], sets[i], &text);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    /* A route for every event would be asked about pings and pushes it
     * never meant to handle, and would hide "no route for X". */
    if (route && !has_event && (ty == LUA_TNIL || ty == LUA_TTABLE))
        rproblem(x, "route has no on.event (name the events it handles)");
    rule->on = text.len ? lf_buf_steal(&text) : lf_xstrdup("any");
    lf_buf_free(&text);
}

/* ---- one policy{} / hook{} / route{} ------------------------------------------ */

static void check_fields(rule_ctx *x) {
    lua_State *L = x->L;
    const char *known[] = {"name", "description", "on", "defaults", x->fnkey, "validate"};
    lua_pushnil(L);
    while (lua_next(L, x->t)) {
        lua_pop(L, 1);
        bool ok = false;
        if (lua_type(L, -1) != LUA_TSTRING) {
            rproblem(x, "unknown field (a %s key)", luaL_typename(L, -1));
            continue;
        }
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok |= strcmp(lua_tostring(L, -1), known[i]) == 0;
        if (!ok) rproblem(x, "unknown field '%s'", lua_tostring(L, -1));
    }
}

static bool name_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
}

/* Names show up in actors ("hook:NAME"), config keys and audit entries:
 * keep them to one plain word. */
static char *get_name(rule_ctx *x) {
    lua_State *L = x->L;
    int ty = rawfield(L, x->t, "name");
    char *name = NULL;
    if (ty == LUA_TNIL) {
        rproblem(x, "%s has no name", x->what);
    } else if (ty != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
        rproblem(x, "%s name must be a non-empty string", x->what);
    } else {
        const char *s = lua_tostring(L, -1);
        bool ok = true;
        for (const char *p = s; *p; p++) ok &= name_char(*p);
        if (ok) name = lf_xstrdup(s);
        else
            rproblem(x, "%s name '%s' may only use letters, digits, '-', '_' and '.'",
                     x->what, s);
    }
    lua_pop(L, 1);
    return name;
}

/* A function field as a registry ref (LUA_NOREF if absent or wrong). */
static int get_fn(rule_ctx *x, const char *key, const char *name, bool required) {
    lua_State *L = x->L;
    int ty = rawfield(L, x->t, key);
    if (ty == LUA_TFUNCTION) return luaL_ref(L, LUA_REGISTRYINDEX);
    if (ty == LUA_TNIL && required)
        rproblem(x, "%s '%s' has no %s function", x->what, name ? name : "?", key);
    else if (ty != LUA_TNIL) rproblem(x, "%s must be a function", key);
    lua_pop(L, 1);
    return LUA_NOREF;
}

static int get_defaults(rule_ctx *x) {
    lua_State *L = x->L;
    int ty = rawfield(L, x->t, "defaults"), d = lua_gettop(L);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (ty != LUA_TTABLE) {
        rproblem(x, "defaults must be a table");
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    lua_pushnil(L);
    while (lua_next(L, d)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            rproblem(x, "defaults: setting names must be strings");
            lua_pop(L, 1);
            break;
        }
        if (strcmp(lua_tostring(L, -1), "enabled") == 0)
            rproblem(x, "defaults: 'enabled' is reserved (config.lua turns a %s off)",
                     x->what);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static char *get_description(rule_ctx *x) {
    int ty = rawfield(x->L, x->t, "description");
    char *d = NULL;
    if (ty == LUA_TSTRING) d = lf_xstrdup(lua_tostring(x->L, -1));
    else if (ty != LUA_TNIL) rproblem(x, "description must be a string");
    lua_pop(x->L, 1);
    return d;
}

void lf_rule_free(lf_rule *rule) {
    free(rule->sm);
    free(rule->name);
    free(rule->description);
    free(rule->on);
    strset_free(&rule->filter.from);
    strset_free(&rule->filter.to);
    strset_free(&rule->filter.trigger);
    strset_free(&rule->filter.workflow);
    strset_free(&rule->filter.event);
    strset_free(&rule->filter.action);
    strset_free(&rule->filter.source);
}

static const char *kind_word(lf_rule_kind k) {
    return k == LF_RULE_GUARD ? "policy" : k == LF_RULE_HOOK ? "hook" : "route";
}

/* Names key config.lua and the audit trail: unique across the set,
 * policies, hooks and routes together. */
static bool unique(load_ctx *c, const lf_rule *rule) {
    lf_rules *r = c->r;
    for (int i = 0; i < r->nrules; i++) {
        if (strcmp(r->rules[i].name, rule->name) != 0) continue;
        lf_problem(c, rule->line, "duplicate %s name '%s' (first defined at %s:%d)",
                   kind_word(rule->kind), rule->name, r->files[r->rules[i].file],
                   r->rules[i].line);
        return false;
    }
    return true;
}

static void add_rule(lf_rules *r, const lf_rule *rule) {
    r->rules = lf_xrealloc(r->rules, (size_t)(r->nrules + 1) * sizeof *r->rules);
    r->rules[r->nrules] = *rule;
    int **list = rule->kind == LF_RULE_GUARD  ? &r->guards
                 : rule->kind == LF_RULE_HOOK ? &r->hooks
                                              : &r->routes;
    int *n = rule->kind == LF_RULE_GUARD  ? &r->nguards
             : rule->kind == LF_RULE_HOOK ? &r->nhooks
                                          : &r->nroutes;
    *list = lf_xrealloc(*list, (size_t)(*n + 1) * sizeof **list);
    (*list)[(*n)++] = r->nrules++;
}

/* Compiles the policy{} / hook{} / route{} table at idx (tagged `tag`,
 * written at `line`); runs in protected mode. */
void lf_dsl_compile(load_ctx *c, int idx, int tag, int line) {
    lua_State *L = c->r->L;
    lf_rule_kind kind = tag == LF_TAG_POLICY ? LF_RULE_GUARD
                        : tag == LF_TAG_HOOK ? LF_RULE_HOOK
                                             : LF_RULE_ROUTE;
    rule_ctx x = {L,
                  c,
                  lua_absindex(L, idx),
                  line,
                  kind_word(kind),
                  kind == LF_RULE_GUARD ? "check" : "run"};
    int before = c->nerr;
    lf_rule rule = {.kind = kind, .file = c->file, .line = line, .enabled = true};
    check_fields(&x);
    rule.name = get_name(&x);
    rule.description = get_description(&x);
    get_filter(&x, &rule);
    rule.defaults = get_defaults(&x);
    rule.fn = get_fn(&x, x.fnkey, rule.name, true);
    rule.validate = get_fn(&x, "validate", rule.name, false);
    rule.cfg = LUA_NOREF;
    if (c->nerr == before && unique(c, &rule)) add_rule(c->r, &rule);
    else lf_rule_free(&rule);     /* the refs go with the failed state */
}

/* ---- after every file: cross-checks, config, settings ------------------------- */

typedef struct fin {
    lf_rules *r;
    lf_buf *errors;
    int nerr;
    int config_file;            /* index into r->files, or -1 */
    const char *config_src;
    int config_ref;
    int partial;                /* LF_PARTIAL_*: some files did not load */
} fin;

static void fproblem(fin *f, int file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fproblem(fin *f, int file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lf_buf_printf(f->errors, "%s:%d: %s\n", f->r->files[file], line, msg);
    f->nerr++;
}

static bool has_state(lf_rules *r, const lf_strset *wfs, const char *state) {
    for (int i = 0; i < r->nwfs; i++) {
        if (wfs->n && !strset_match(wfs, r->wfs[i]->name)) continue;
        if (lf_workflow_state(r->wfs[i], state) >= 0) return true;
    }
    return false;
}

/* on.from / on.to must name states of the workflows the rule applies to:
 * a misspelt state would make the rule never run. */
static void check_filter(fin *f, const lf_rule *rule) {
    lf_rules *r = f->r;
    const lf_filter *fl = &rule->filter;
    for (int i = 0; i < fl->workflow.n; i++)
        if (!lf_rules_workflow(r, fl->workflow.v[i]))
            fproblem(f, rule->file, rule->line, "on.workflow: unknown workflow '%s'",
                     fl->workflow.v[i]);
    const lf_strset *sets[] = {&fl->from, &fl->to};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < sets[k]->n; i++)
            if (!has_state(r, &fl->workflow, sets[k]->v[i]))
                fproblem(f, rule->file, rule->line, "on.%s: unknown state '%s'",
                         k ? "to" : "from", sets[k]->v[i]);
}

/* The line config.lua first mentions `key` on, at or after line `from`,
 * as a whole word outside a comment; 0 if it does not. A config file is
 * plain data, so this is where a human would look. */
static int key_line(const char *src, const char *key, int from) {
    size_t klen = strlen(key);
    int line = 1;
    for (const char *p = src; *p; line++) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *dash = NULL;
        for (size_t i = 0; i + 1 < len && !dash; i++)
            if (p[i] == '-' && p[i + 1] == '-') dash = p + i;
        size_t eff = dash ? (size_t)(dash - p) : len;
        for (size_t i = 0; line >= from && i + klen <= eff; i++) {
            if (memcmp(p + i, key, klen) == 0 && (i == 0 || !name_char(p[i - 1])) &&
                (i + klen == eff || !name_char(p[i + klen])))
                return line;
        }
        if (!eol) break;
        p = eol + 1;
    }
    return 0;
}

static lf_rule *rule_named(lf_rules *r, const char *name) {
    for (int i = 0; i < r->nrules; i++)
        if (strcmp(r->rules[i].name, name) == 0) return &r->rules[i];
    return NULL;
}

typedef struct ckey {
    const char *name;
    int line;
} ckey;

static int cmp_ckey(const void *a, const void *b) {
    const ckey *x = a, *y = b;
    if (x->line != y->line) return x->line - y->line;
    return strcmp(x->name, y->name);
}

/* The string keys of the table at idx, in the order the file has them
 * (Lua's own order varies between runs; error output must not). */
static ckey *sorted_keys(fin *f, int idx, int from, size_t *n, int last_line) {
    lua_State *L = f->r->L;
    ckey *keys = NULL;
    *n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            fproblem(f, f->config_file, last_line, "config keys must be names, not a %s",
                     luaL_typename(L, -1));
            continue;
        }
        keys = lf_xrealloc(keys, (*n + 1) * sizeof *keys);
        keys[*n].name = lua_tostring(L, -1);
        int line = key_line(f->config_src, keys[*n].name, from);
        keys[(*n)++].line = line ? line : last_line;
    }
    if (*n) qsort(keys, *n, sizeof *keys, cmp_ckey);
    return keys;
}

/* config[name] (at idx) against the rule's defaults. */
static void check_settings(fin *f, lf_rule *rule, int idx, int line) {
    lua_State *L = f->r->L;
    size_t n;
    ckey *keys = sorted_keys(f, idx, line, &n, line);
    if (rule->defaults != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, rule->defaults);
    else lua_createtable(L, 0, 0);
    int defs = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i].name;
        lua_getfield(L, idx, k);
        int ty = lua_type(L, -1);
        if (strcmp(k, "enabled") == 0) {
            if (ty != LUA_TBOOLEAN)
                fproblem(f, f->config_file, keys[i].line,
                         "config for '%s': enabled must be true or false", rule->name);
            else rule->enabled = lua_toboolean(L, -1);
        } else {
            int want = lua_getfield(L, defs, k);
            if (want == LUA_TNIL)
                fproblem(f, f->config_file, keys[i].line,
                         "config for '%s': unknown setting '%s'", rule->name, k);
            else if (want != ty)
                fproblem(
                    f, f->config_file, keys[i].line,
                    "config for '%s': setting '%s' must be a %s (like its default), not a %s",
                    rule->name, k, lua_typename(L, want), lua_typename(L, ty));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    free(keys);
}

/* Maps every name of a person or agent to it (the id itself too). */
static void ident_add(fin *f, int line, const char *id, const char *kind,
                      const char *principal, int names) {
    lua_State *L = f->r->L;
    lf_rules *r = f->r;
    lf_ident *x = lf_xcalloc(1, sizeof *x);
    x->kind = lf_xstrdup(kind);
    x->person = lf_xstrdup(id);
    x->principal = principal ? lf_xstrdup(principal) : NULL;
    r->ident_v = lf_xrealloc(r->ident_v, (size_t)(r->nident + 1) * sizeof *r->ident_v);
    r->ident_v[r->nident++] = x;
    for (lua_Integer i = 0; i <= (lua_Integer)(names ? lua_rawlen(L, names) : 0); i++) {
        const char *nm = id;
        if (i && (lua_rawgeti(L, names, i) != LUA_TSTRING || !lua_rawlen(L, -1))) {
            fproblem(f, f->config_file, line, "identities: %s's names must be strings",
                     id);
            lua_pop(L, 1);
            continue;
        }
        if (i) nm = lua_tostring(L, -1);
        if (lf_map_get(&r->idents, nm))
            fproblem(f, f->config_file, line, "identities: '%s' is named twice", nm);
        else {
            char *k = lf_xstrdup(nm);
            lf_map_put(&r->idents, k, x);
        }
        if (i) lua_pop(L, 1);
    }
}

/* identities = { people = { alice = { "github:alice", ... } },
 *                agents = { ["coder-7"] = { principal = "alice",
 *                                           names = { "github:coder-7[bot]" } } } } */
static void check_identities(fin *f, int idx, int line) {
    lua_State *L = f->r->L;
    if (lua_type(L, idx) != LUA_TTABLE) {
        fproblem(f, f->config_file, line,
                 "identities must be { people = {...}, agents = {...} }");
        return;
    }
    for (int agents = 0; agents < 2; agents++) {
        int ty = lua_getfield(L, idx, agents ? "agents" : "people"), t = lua_gettop(L);
        if (ty == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, t)) {
                int v = lua_gettop(L);
                const char *id =
                    lua_type(L, v - 1) == LUA_TSTRING ? lua_tostring(L, v - 1) : NULL;
                if (!id || lua_type(L, v) != LUA_TTABLE) {
                    fproblem(f, f->config_file, line,
                             "identities.%s: each is NAME = { ... }",
                             agents ? "agents" : "people");
                } else if (!agents) {
                    ident_add(f, line, id, "human", NULL, v);
                } else {
                    lua_getfield(L, v, "principal");
                    lua_getfield(L, v, "names");
                    const char *pr = lua_tostring(L, -2);
                    if (lua_type(L, -2) != LUA_TSTRING ||
                        (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TTABLE))
                        fproblem(
                            f, f->config_file, line,
                            "identities.agents.%s must be { principal = PERSON, names = { ... } }",
                            id);
                    else
                        ident_add(f, line, id, "agent", pr,
                                  lua_isnil(L, -1) ? 0 : lua_gettop(L));
                }
                lua_settop(L, v - 1);
            }
        } else if (ty != LUA_TNIL) {
            fproblem(f, f->config_file, line, "identities.%s must be a table",
                     agents ? "agents" : "people");
        }
        lua_settop(L, t - 1);
    }
}

static void check_config(fin *f) {
    lua_State *L = f->r->L;
    if (f->config_ref == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->config_ref);
    int cfg = lua_gettop(L);
    int last = key_line(f->config_src, "return", 1);
    size_t n;
    ckey *keys = sorted_keys(f, cfg, 1, &n, last ? last : 1);
    for (size_t i = 0; i < n; i++) {
        lf_rule *rule = rule_named(f->r, keys[i].name);
        lua_getfield(L, cfg, keys[i].name);
        if (strcmp(keys[i].name, "identities") == 0)
            check_identities(f, lua_gettop(L), keys[i].line);
        else if (!rule && !(f->partial & LF_PARTIAL_RULES))
            fproblem(f, f->config_file, keys[i].line,
                     "config for unknown policy, hook or route '%s'", keys[i].name);
        else if (!rule) {
        } else if (lua_type(L, -1) != LUA_TTABLE)
            fproblem(f, f->config_file, keys[i].line,
                     "config for '%s' must be a table of settings", keys[i].name);
        else check_settings(f, rule, lua_gettop(L), keys[i].line);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    free(keys);
}

/* Pushes a deep, read-only copy of the value at idx. */
static void push_frozen(lua_State *L, int idx, int depth) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    if (depth > 16) luaL_error(L, "settings nested more than 16 levels (a cycle?)");
    luaL_checkstack(L, 4, "settings nested too deeply");
    lua_createtable(L, (int)lua_rawlen(L, idx), 0);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        push_frozen(L, -1, depth + 1);
        lua_remove(L, -2);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lf_freeze_top(L);
}

/* Copies every entry of the table at src into the table at dst (frozen),
 * except `enabled`. */
static void merge_frozen(lua_State *L, int dst, int src) {
    lua_pushnil(L);
    while (lua_next(L, src)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            strcmp(lua_tostring(L, -2), "enabled") == 0) {
            lua_pop(L, 1);
            continue;
        }
        push_frozen(L, -1, 1);
        lua_remove(L, -2);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, dst);
    }
}

/* The settings a rule's function gets: its defaults, overridden key by
 * key by config.lua, read-only all the way down. */
static void build_settings(fin *f, lf_rule *rule) {
    lua_State *L = f->r->L;
    lua_createtable(L, 0, 4);
    int dst = lua_gettop(L);
    if (rule->defaults != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, rule->defaults);
        merge_frozen(L, dst, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (f->config_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, f->config_ref);
        if (lua_getfield(L, -1, rule->name) == LUA_TTABLE)
            merge_frozen(L, dst, lua_gettop(L));
        lua_pop(L, 2);
    }
    lf_freeze_top(L);
    rule->cfg = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* validate(cfg): raise, or return false and a message, to refuse the
 * settings. Reported where the settings come from. */
static void run_validate(fin *f, const lf_rule *rule) {
    lua_State *L = f->r->L;
    if (rule->validate == LUA_NOREF || !rule->enabled) return;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rule->validate);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rule->cfg);
    lf_budget_reset(f->r, LF_RULES_LOAD_BUDGET);
    int st = lua_pcall(L, 1, 2, 0);
    const char *msg = NULL;
    if (st != LUA_OK)
        msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "validate failed";
    else if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2))
        msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "invalid settings";
    if (msg) {
        int line = f->config_src ? key_line(f->config_src, rule->name, 1) : 0;
        if (line)
            fproblem(f, f->config_file, line, "config for '%s': %s", rule->name, msg);
        else fproblem(f, rule->file, rule->line, "defaults of '%s': %s", rule->name, msg);
    }
    lua_settop(L, top);
}

static int finish_p(lua_State *L) {
    fin *f = lua_touserdata(L, 1);
    /* A workflow (or lib) that did not load would make every state name
     * look unknown; a rule file that did not load, every config entry of
     * its rules. Those checks wait for the next round. */
    if (!(f->partial & LF_PARTIAL_WORKFLOWS))
        for (int i = 0; i < f->r->nrules; i++) check_filter(f, &f->r->rules[i]);
    check_config(f);
    for (int i = 0; i < f->r->nrules; i++) build_settings(f, &f->r->rules[i]);
    for (int i = 0; i < f->r->nrules; i++) run_validate(f, &f->r->rules[i]);
    lf_filters_prepare(f->r);
    lf_eval_prepare(f->r);
    return 0;
}

void lf_dsl_finish(lf_rules *r, lf_buf *errors, int *nerr, int config_file,
                   const char *config_src, int config_ref, int partial) {
    fin f = {r, errors, 0, config_file, config_src, config_ref, partial};
    lua_State *L = r->L;
    lua_pushcfunction(L, finish_p);
    lua_pushlightuserdata(L, &f);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        lf_buf_printf(errors, "%s: %s\n",
                      config_file >= 0 ? r->files[config_file] : "policies",
                      m ? m : "error");
        f.nerr++;
        lua_pop(L, 1);
    }
    *nerr += f.nerr;
}
