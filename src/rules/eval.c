/* eval.c -- running guards before a commit and hooks after it.
 *
 * The hot path of the product: every transition runs lf_rules_evaluate.
 * Filters are matched in C, so a guard that does not apply costs no Lua
 * at all; a guard that does costs one protected call with values that
 * were made at load (function, settings, the `t` proxy) plus a handful of
 * field stores. Each call gets the instruction budget afresh; the memory
 * cap is the lua_State's. Whatever goes wrong in a guard -- an error, the
 * budget, the cap, a result that is not a verdict -- is a deny with the
 * error as its reason (fail closed), and the state keeps serving.
 *
 * Hooks run the same way after a commit; their errors are counted and
 * reported, never propagated, and never stop the hooks after them. What
 * they ask for -- request() follow-ups and notify{} POSTs -- is handed
 * back to the engine in the report; nothing here does any I/O. */
#include "internal.h"
#include "../core/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* The runners' upvalues: what every call shares, made once per rule set
 * (lf_eval_prepare), so that a runner reaches each at an index rather than
 * by a lookup in the registry (a hash lookup there: ~15 % of a hook's
 * cost). U_CALLS lists each rule's function and settings at 2k+1 and 2k+2
 * (k its index in r->rules). Between calls the runner's stack holds only
 * its light userdata. */
enum { U_ALLOW = 1, U_VERDICT_MT, U_REQUEST_MT, U_PROXY, U_CALLS, NUPS = U_CALLS };
#define UP(u) lua_upvalueindex(u)

/* "<kind> NAME: <what went wrong>", from a failed lua_pcall. */
static char *call_error(lua_State *L, int st, const char *kind, const char *name) {
    if (st == LUA_ERRMEM)
        return lf_xprintf(
            "%s %s: not enough memory (the policy memory limit was reached)", kind, name);
    if (lua_type(L, -1) == LUA_TSTRING)
        return lf_scrub(lf_xprintf("%s %s: %s", kind, name, lua_tostring(L, -1)));
    return lf_xprintf("%s %s: (error object is a %s value)", kind, name,
                      luaL_typename(L, -1));
}

static bool has_mt(lua_State *L, int idx, int mt_slot) {
    if (!lua_getmetatable(L, idx)) return false;
    bool yes = lua_rawequal(L, -1, mt_slot);
    lua_pop(L, 1);
    return yes;
}

/* Calls rule k's function (the proxy, its settings) with a fresh budget;
 * leaves one result (or the error) on the stack and returns the pcall
 * status. The fields of t / e are made on demand (view.c). */
static int call_rule(lf_rules *r, int k) {
    lua_State *L = r->L;
    lua_rawgeti(L, UP(U_CALLS), 2 * (lua_Integer)k + 1);
    lua_pushvalue(L, UP(U_PROXY));
    lua_rawgeti(L, UP(U_CALLS), 2 * (lua_Integer)k + 2);
    lf_budget_reset(r, r->call_budget);
    return lua_pcall(L, 2, 1, 0);
}

/* After a call, successful or not: per-call caches go, and after a
 * memory error the garbage it left goes too, so the next call has room. */
static void after_call(lf_rules *r, int st) {
    lua_settop(r->L, 1);
    lf_call_done(r);
    if (st == LUA_ERRMEM) lua_gc(r->L, LUA_GCCOLLECT);
}

/* ---- guards -------------------------------------------------------------------- */

typedef struct eval_job {
    lf_rules *r;
    lf_verdict *out;
    cJSON *ann;                 /* annotations so far */
    lf_on on;                   /* what the filters match */
    int first;                  /* the first guard that matched */
} eval_job;

static void decide(eval_job *j, const lf_rule *g, bool allow, char *reason) {
    lf_verdict *v = j->out;
    lf_decision *d = &v->decisions[v->ndecisions];
    d->policy = g->name;
    d->allow = allow;
    d->reason = reason;
    d->
        requires
    = NULL;
    if (!allow && v->denied_by < 0) {
        v->denied_by = (int)v->ndecisions;
        v->allow = false;
    }
    v->ndecisions++;
}

/* The table at idx as the text of a JSON object (an empty table is {}),
 * or NULL with "WHAT: why" in err. */
static char *object_text(lua_State *L, int idx, const char *what, char *err,
                         size_t errlen) {
    lf_buf b = LF_BUF_INIT;
    if (!lf_json_encode(L, idx, NULL, what, &b, err, errlen)) {
        lf_buf_free(&b);
        return NULL;
    }
    if (b.p[0] == '[') {
        snprintf(err, errlen, "%s: must be a table of names to values, not a list", what);
        lf_buf_free(&b);
        return NULL;
    }
    return lf_buf_steal(&b);
}

/* Later guards' keys replace earlier ones; the order is first-seen. */
static void merge(eval_job *j, cJSON *a) {
    if (!j->ann) {
        j->ann = a;
        return;
    }
    cJSON *it;
    while ((it = a->child)) {
        cJSON_DetachItemViaPointer(a, it);
        cJSON *old = cJSON_GetObjectItemCaseSensitive(j->ann, it->string);
        /* it keeps its own name: ReplaceItemInObject would free and copy it */
        if (old) cJSON_ReplaceItemViaPointer(j->ann, old, it);
        else cJSON_AddItemToObject(j->ann, it->string, it);
    }
    cJSON_Delete(a);
}

/* Reads the verdict at the top of the stack into a decision. */
static void take_verdict(eval_job *j, const lf_rule *g) {
    lua_State *L = j->r->L;
    int v = lua_gettop(L);
    if (lua_rawequal(L, v, UP(U_ALLOW))) {
        decide(j, g, true, NULL);
        return;
    }
    if (!has_mt(L, v, UP(U_VERDICT_MT))) {
        decide(j, g, false,
               lf_xprintf("guard %s: returned %s%s, not a verdict "
                          "(return allow() or deny(reason))",
                          g->name, lua_isnil(L, v) ? "" : "a ",
                          lua_isnil(L, v) ? "nothing" : luaL_typename(L, v)));
        return;
    }
    lua_getfield(L, v, "allow");
    lua_getfield(L, v, "reason");
    lua_getfield(L, v, "annotations");
    lua_getfield(L, v, "requires");
    bool allow = lua_toboolean(L, v + 1);
    char *reason =
        lua_type(L, v + 2) == LUA_TSTRING ? lf_xstrdup(lua_tostring(L, v + 2)) : NULL;
    char *
        requires
    = NULL;
    if (!allow && lua_type(L, v + 4) == LUA_TTABLE) {
        char err[300];
        if (!(requires = object_text(L, v + 4, "requires", err, sizeof err))) {
            free(reason);
            decide(j, g, false, lf_xprintf("guard %s: %s", g->name, err));
            return;
        }
    }
    if (lua_type(L, v + 3) == LUA_TTABLE) {
        char err[300];
        char *text = object_text(L, v + 3, "annotations", err, sizeof err);
        if (!text) {
            free(reason);
            free(requires);
            decide(j, g, false, lf_xprintf("guard %s: %s", g->name, err));
            return;
        }
        cJSON *a = lf_xptr(cJSON_Parse(text));
        free(text);
        if (a->child) merge(j, a);
        else cJSON_Delete(a);
    }
    decide(j, g, allow, reason);
    j->out->decisions[j->out->ndecisions - 1].
        requires
    =
        requires;
}

static int evaluate_p(lua_State *L) {
    eval_job *j = lua_touserdata(L, 1);
    lf_rules *r = j->r;
    lf_ctx_reset(r);
    for (int i = j->first; i < r->nguards; i++) {
        const lf_rule *g = &r->rules[r->guards[i]];
        if (!lf_rule_applies(g, &j->on)) continue;
        int st = call_rule(r, r->guards[i]);
        if (st == LUA_OK) take_verdict(j, g);
        else decide(j, g, false, call_error(L, st, "guard", g->name));
        after_call(r, st);
    }
    lf_ctx_reset(r);                /* and let the view be collected */
    return 0;
}

/* The place in list of the first enabled rule whose filter matches, or n:
 * the runners start there, so the rules before it are matched once. */
static int first_match(lf_rules *r, const int *list, int n, const lf_on *on) {
    int i = 0;
    while (i < n && !lf_rule_applies(&r->rules[list[i]], on)) i++;
    return i;
}

void lf_rules_evaluate(lf_rules *r, const lf_eval *in, lf_verdict *out) {
    memset(out, 0, sizeof *out);
    out->allow = true;
    out->denied_by = -1;
    if (!r->nguards) return;                /* the workflows alone */
    lf_on on;
    lf_on_init(r, &on, in->wf, in->from_id, in->to_id, in->from, in->to, in->trigger,
               in->record ? in->record->workflow : NULL);
    int first = first_match(r, r->guards, r->nguards, &on);
    if (first == r->nguards) return;        /* no Lua at all */
    uint64_t t0 = lf_mono_ns();
    /* Room for every guard from the first match on, and one spare for a
     * failure of the runner itself. */
    out->decisions =
        lf_xrealloc(NULL, (size_t)(r->nguards - first + 1) * sizeof *out->decisions);
    eval_job j = {r, out, NULL, on, first};
    static const lf_rule runner = {.name = "rules"};
    if (!in->record) {                      /* nothing to show the guards: closed */
        decide(&j, &runner, false, lf_xprintf("policy engine: no record to evaluate"));
        out->ns = lf_mono_ns() - t0;
        return;
    }
    lua_State *L = r->L;
    lf_scope sc = {.rec = in->record,
                   .from = in->from,
                   .to = in->to,
                   .trigger = in->trigger,
                   .actor = in->actor,
                   .roles = in->roles,
                   .children = in->children,
                   .actor_kind = in->actor_kind,
                   .principal = in->principal,
                   .now_us = in->now_us,
                   .meta = in->metadata};
    lf_scope_enter(r, &sc);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_run[0]);
    lua_pushlightuserdata(L, &j);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        /* Only the bookkeeping between guards can get here (a full heap):
         * still a decision, and still a deny. */
        decide(&j, &runner, false, call_error(L, st, "policy", "engine"));
        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT);
    }
    lf_scope_leave(r);
    if (j.ann) {
        out->annotations = lf_xptr(cJSON_PrintUnformatted(j.ann));
        cJSON_Delete(j.ann);
    }
    out->ns = lf_mono_ns() - t0;
}

void lf_verdict_free(lf_verdict *v) {
    for (size_t i = 0; i < v->ndecisions; i++) {
        free(v->decisions[i].reason);
        free(v->decisions[i].requires);
    }
    free(v->decisions);
    free(v->annotations);
    memset(v, 0, sizeof *v);
    v->denied_by = -1;
}

void lf_verdict_json(const lf_verdict *v, lf_buf *out) {
    /* Room for a plain allow each (~80 bytes), so the list is not grown a
     * few bytes at a time; an allow without a reason, the common case, is
     * one literal after the name. */
    lf_buf_reserve(out, 2 + v->ndecisions * 96);
    lf_jw list = lf_jw_open(out, '[');
    for (size_t i = 0; i < v->ndecisions; i++) {
        const lf_decision *d = &v->decisions[i];
        lf_jw_next(&list);
        if (d->allow && !d->reason && !d->requires) {
            lf_buf_add(out, "{\"policy\":", 10);
            lf_buf_json_str(out, d->policy);
            static const char rest[] = ",\"verdict\":\"allow\",\"reason\":null}";
            lf_buf_add(out, rest, sizeof rest - 1);
            continue;
        }
        lf_jw o = lf_jw_open(out, '{');
        lf_jw_str(&o, "policy", d->policy);
        lf_jw_str(&o, "verdict", d->allow ? "allow" : "deny");
        lf_jw_str(&o, "reason", d->reason);
        if (d->requires) lf_jw_raw(&o, "requires", d->requires, NULL);
        lf_jw_close(&o, '}');
    }
    lf_jw_close(&list, ']');
}

/* ---- hooks ------------------------------------------------------------------------ */

typedef struct hook_job {
    lf_rules *r;
    const lf_hook_event *ev;
    lf_hook_report *out;
    lf_buf messages;
    lf_on on;                   /* what the filters match */
    int first;                  /* the first hook that matched */
} hook_job;

static void hook_error(hook_job *j, char *msg) {
    j->out->errors++;
    lf_buf_printf(&j->messages, "%s\n", msg);
    free(msg);
}

/* What one hook returned, gathered before any of it is kept. */
typedef struct hook_asks {
    lf_followup *f;
    size_t nf;
    lf_notification *n;
    size_t nn;
} hook_asks;

static bool is_notify(lf_rules *r, int idx) {
    lua_State *L = r->L;
    if (!lua_getmetatable(L, idx)) return false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_notify_mt);
    bool yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* A request() at idx as a follow-up; false (with *err set) if its
 * metadata cannot be encoded. */
static bool take_request(lua_State *L, int idx, const lf_rule *h, lf_followup *f,
                         char **err) {
    memset(f, 0, sizeof *f);
    lua_getfield(L, idx, "metadata");
    if (lua_type(L, -1) == LUA_TTABLE) {
        char msg[300];
        if (!(f->metadata =
                  object_text(L, lua_gettop(L), "request metadata", msg, sizeof msg))) {
            *err = lf_xprintf("hook %s: %s", h->name, msg);
            lua_pop(L, 1);
            return false;
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "record");
    if (lua_type(L, -1) == LUA_TSTRING) f->record = lf_xstrdup(lua_tostring(L, -1));
    lua_getfield(L, idx, "after");
    if (lua_type(L, -1) == LUA_TSTRING)
        f->after_us = lf_duration_parse(lua_tostring(L, -1));
    lua_pop(L, 2);
    lua_getfield(L, idx, "to");
    lua_getfield(L, idx, "trigger");
    f->hook = lf_xstrdup(h->name);
    f->to = lf_xstrdup(lua_tostring(L, -2));
    f->trigger = lf_xstrdup(lua_tostring(L, -1));
    lua_pop(L, 2);
    return true;
}

/* A notify{} at idx (checked when it was made) as a notification; false
 * (with *err set) if its body table cannot be encoded. A table goes out
 * as JSON, a string as it is. */
static bool take_notification(lua_State *L, int idx, const lf_rule *h, lf_notification *n,
                              char **err) {
    memset(n, 0, sizeof *n);
    lua_getfield(L, idx, "body");
    lua_getfield(L, idx, "content_type");
    const char *type = lua_tostring(L, -1);
    if (lua_type(L, -2) == LUA_TTABLE) {
        char msg[300];
        lf_buf b = LF_BUF_INIT;
        if (!lf_json_encode(L, -2, NULL, "notify body", &b, msg, sizeof msg)) {
            lf_buf_free(&b);
            *err = lf_xprintf("hook %s: %s", h->name, msg);
            lua_pop(L, 2);
            return false;
        }
        n->body_len = b.len;
        n->body = lf_buf_steal(&b);
        if (!type) type = "application/json";
    } else {
        const char *body = lua_tolstring(L, -2, &n->body_len);     /* or nil */
        n->body = lf_xrealloc(NULL, n->body_len + 1);
        if (n->body_len) memcpy(n->body, body, n->body_len);
        n->body[n->body_len] = '\0';
        if (!type) type = "text/plain; charset=utf-8";
    }
    n->content_type = lf_xstrdup(type);
    lua_pop(L, 2);
    lua_getfield(L, idx, "url");
    lua_getfield(L, idx, "timeout_ms");
    n->url = lf_xstrdup(lua_tostring(L, -2));
    n->timeout_ms = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    n->hook = lf_xstrdup(h->name);
    return true;
}

static void free_followup(lf_followup *f) {
    free(f->record);
    free(f->hook);
    free(f->to);
    free(f->trigger);
    free(f->metadata);
}

static void free_notification(lf_notification *n) {
    free(n->hook);
    free(n->url);
    free(n->body);
    free(n->content_type);
}

static void free_asks(hook_asks *a) {
    for (size_t i = 0; i < a->nf; i++) free_followup(&a->f[i]);
    for (size_t i = 0; i < a->nn; i++) free_notification(&a->n[i]);
    free(a->f);
    free(a->n);
}

/* One item of a hook's result: a request() or a notify{}. `item` is its
 * place in the returned list, 0 when the hook returned it alone. */
static bool take_item(hook_job *j, const lf_rule *h, int idx, lua_Integer item,
                      hook_asks *a, char **err) {
    lua_State *L = j->r->L;
    if (has_mt(L, idx, UP(U_REQUEST_MT))) {
        if (!take_request(L, idx, h, &a->f[a->nf], err)) return false;
        a->nf++;
        return true;
    }
    if (is_notify(j->r, idx)) {
        if (!take_notification(L, idx, h, &a->n[a->nn], err)) return false;
        a->nn++;
        return true;
    }
    if (item)
        *err = lf_xprintf("hook %s: item %lld of the returned list is not a request "
                          "or a notification",
                          h->name, (long long)item);
    else
        *err = lf_xprintf("hook %s: returned %s%s, not nil, a request, a notification "
                          "or a list of them",
                          h->name, lua_isnil(L, idx) ? "" : "a ",
                          lua_isnil(L, idx) ? "nothing" : luaL_typename(L, idx));
    return false;
}

/* Appends n items of `from` to the report's array `*to` (of *nto). */
static void append(void **to, size_t *nto, void *from, size_t n, size_t size) {
    if (!n) return;
    *to = lf_xrealloc(*to, (*nto + n) * size);
    memcpy((char *)*to + *nto * size, from, n * size);
    *nto += n;
}

/* nil, a request or a notification, or a list of them. All or nothing:
 * one bad element makes the hook's whole result an error. */
static void take_requests(hook_job *j, const lf_rule *h) {
    lua_State *L = j->r->L;
    int v = lua_gettop(L);
    if (lua_isnil(L, v)) return;
    bool list = false;
    if (lua_type(L, v) == LUA_TTABLE) {
        if (lua_getmetatable(L, v)) lua_pop(L, 1);
        else list = true;
    }
    lua_Integer n = list ? (lua_Integer)lua_rawlen(L, v) : 1;
    hook_asks a = {lf_xrealloc(NULL, (size_t)n * sizeof *a.f), 0,
                   lf_xrealloc(NULL, (size_t)n * sizeof *a.n), 0};
    char *err = NULL;
    for (lua_Integer k = 0; k < n; k++) {
        if (list) lua_rawgeti(L, v, k + 1);
        else lua_pushvalue(L, v);
        bool ok = take_item(j, h, lua_gettop(L), list ? k + 1 : 0, &a, &err);
        lua_pop(L, 1);
        if (!ok) break;
    }
    if (err) {
        free_asks(&a);
        hook_error(j, err);
        return;
    }
    lf_hook_report *o = j->out;
    append((void **)&o->followups, &o->nfollowups, a.f, a.nf, sizeof *a.f);
    append((void **)&o->notifications, &o->nnotifications, a.n, a.nn, sizeof *a.n);
    free(a.f);
    free(a.n);
}

static int hooks_p(lua_State *L) {
    hook_job *j = lua_touserdata(L, 1);
    lf_rules *r = j->r;
    lf_ctx_reset(r);
    for (int i = j->first; i < r->nhooks; i++) {
        const lf_rule *h = &r->rules[r->hooks[i]];
        if (!lf_rule_applies(h, &j->on)) continue;
        j->out->ran++;
        int st = call_rule(r, r->hooks[i]);
        if (st == LUA_OK) take_requests(j, h);
        else hook_error(j, call_error(L, st, "hook", h->name));
        after_call(r, st);
    }
    lf_ctx_reset(r);
    return 0;
}

void lf_rules_run_hooks(lf_rules *r, const lf_hook_event *ev, lf_hook_report *out) {
    memset(out, 0, sizeof *out);
    if (!ev->record || !r->nhooks) return;
    lf_on on;
    lf_on_init(r, &on, ev->wf, ev->previous_id, ev->state_id, ev->previous, ev->state,
               ev->trigger, ev->record->workflow);
    int first = first_match(r, r->hooks, r->nhooks, &on);
    if (first == r->nhooks) return;
    hook_job j = {r, ev, out, LF_BUF_INIT, on, first};
    lua_State *L = r->L;
    lf_scope sc = {.hooks = true,
                   .rec = ev->record,
                   .from = ev->previous,
                   .to = ev->state,
                   .trigger = ev->trigger,
                   .actor = ev->actor,
                   .roles = ev->roles,
                   .children = ev->children,
                   .violation = ev->violation,
                   .meta = ev->metadata,
                   .decisions = ev->decisions};
    lf_scope_enter(r, &sc);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_run[1]);
    lua_pushlightuserdata(L, &j);
    int st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        hook_error(&j, call_error(L, st, "hooks", "runner"));
        lua_settop(L, 0);
        lua_gc(L, LUA_GCCOLLECT);
    }
    lf_scope_leave(r);
    out->messages = j.messages.len ? lf_buf_steal(&j.messages) : NULL;
    lf_buf_free(&j.messages);
}

void lf_hook_report_free(lf_hook_report *rep) {
    for (size_t i = 0; i < rep->nfollowups; i++) free_followup(&rep->followups[i]);
    for (size_t i = 0; i < rep->nnotifications; i++)
        free_notification(&rep->notifications[i]);
    free(rep->followups);
    free(rep->notifications);
    free(rep->messages);
    memset(rep, 0, sizeof *rep);
}

/* ---- the runners ---------------------------------------------------------------- */

/* Makes the guard and hook runners of a loaded rule set (the upvalues
 * above). In protected mode, at the end of a load (dsl.c), when every
 * rule has its function and settings. */
void lf_eval_prepare(lf_rules *r) {
    lua_State *L = r->L;
    lua_createtable(L, 2 * r->nrules, 0);
    int calls = lua_gettop(L);
    for (int k = 0; k < r->nrules; k++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->rules[k].fn);
        lua_rawseti(L, calls, 2 * (lua_Integer)k + 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->rules[k].cfg);
        lua_rawseti(L, calls, 2 * (lua_Integer)k + 2);
    }
    for (int hooks = 0; hooks < 2; hooks++) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_allow);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_verdict_mt);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref_request_mt);
        lua_rawgeti(L, LUA_REGISTRYINDEX, hooks ? r->ref_e : r->ref_t);
        lua_pushvalue(L, calls);
        lua_pushcclosure(L, hooks ? hooks_p : evaluate_p, NUPS);
        if (r->ref_run[hooks] > 0) luaL_unref(L, LUA_REGISTRYINDEX, r->ref_run[hooks]);
        r->ref_run[hooks] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
}

/* ---- listing ------------------------------------------------------------------------ */

int lf_rules_count(const lf_rules *r, lf_rule_kind kind) {
    return kind == LF_RULE_GUARD  ? r->nguards
           : kind == LF_RULE_HOOK ? r->nhooks
                                  : r->nroutes;
}

void lf_rules_info(const lf_rules *r, lf_rule_kind kind, int i, lf_rule_info *out) {
    memset(out, 0, sizeof *out);
    const int *list = kind == LF_RULE_GUARD  ? r->guards
                      : kind == LF_RULE_HOOK ? r->hooks
                                             : r->routes;
    if (i < 0 || i >= lf_rules_count(r, kind)) return;
    const lf_rule *x = &r->rules[list[i]];
    out->kind = kind;
    out->name = x->name;
    out->file = r->files[x->file];
    out->line = x->line;
    out->on = x->on;
    out->description = x->description;
    out->enabled = x->enabled;
}
