/* explain.c -- "why is it blocked, and what would unblock it?"
 * (lf_engine_explain): for a record's current state, every way out the
 * workflow has, each judged now as a dry run by the asking actor (the
 * edge, role gates, retry budget, children, every guard), with each
 * denial's reason and -- where the guard says -- what would satisfy it
 * (`requires`); the roles that may leave the state, its next timer and
 * its children by state.
 *
 * Nothing is written: every verdict is an ordinary dry run
 * (lf_engine_transition with dry_run), so explain answers exactly what a
 * request would get, by construction. */
#include "engine_internal.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/mem.h"
#include "../core/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct explain_ctx {
    lf_engine *e;
    lf_text_cb *cb;
    void *arg;
    char *id, *actor, *roles, *trigger;
    char **targets;             /* the ways out, in edge order */
    size_t ntargets, next;
    lf_buf out;                 /* the reply, built as the dry runs answer */
    lf_jw edges;
    lf_jw top;
    /* Then the standing of the budgets of the states it may go to. */
    lf_budget_def *budgets;
    int nbudgets, bi;
    char **bstate;
    lf_jw blist;
} explain_ctx;

static void ctx_free(explain_ctx *x) {
    for (int i = 0; i < x->nbudgets; i++) free(x->bstate[i]);
    free(x->bstate);
    free(x->budgets);
    for (size_t i = 0; i < x->ntargets; i++) free(x->targets[i]);
    free(x->targets);
    free(x->id);
    free(x->actor);
    free(x->roles);
    free(x->trigger);
    lf_buf_free(&x->out);
    free(x);
}

static void ask_next(explain_ctx *x);

/* One way out, judged. */
static void judged(const lf_result *r, void *arg) {
    explain_ctx *x = arg;
    lf_buf *b = &x->out;
    lf_jw_next(&x->edges);
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "to", x->targets[x->next - 1]);
    lf_jw_bool(&o, "allowed", r->success);
    lf_jw_str(&o, "code", lf_code_name(r->code));
    lf_jw_str(&o, "error", r->success ? NULL : r->error);
    lf_jw_raw(&o, "decisions", r->decisions, "[]");
    lf_jw_close(&o, '}');
    ask_next(x);
}

/* Who a budget counts for this actor: itself, or the person behind it. */
static const char *budget_who(explain_ctx *x, char per) {
    lf_identity id;
    if (per == 'a') return x->actor;
    lf_rules_identity(lf_engine_rules(x->e), x->actor, &id);
    return id.principal ? id.principal : id.person ? id.person : x->actor;
}

static void standing_next(explain_ctx *x);

static void counted(lf_code code, const char *err, uint64_t n, int64_t oldest,
                    void *arg) {
    explain_ctx *x = arg;
    const lf_budget_def *b = &x->budgets[x->bi];
    (void)err;
    lf_buf *o = &x->out;
    lf_jw_next(&x->blist);
    lf_jw j = lf_jw_open(o, '{');
    lf_jw_str(&j, "to", x->bstate[x->bi]);
    lf_jw_str(&j, "per", b->per == 'a' ? "actor" : "principal");
    lf_jw_str(&j, "who", budget_who(x, b->per));
    lf_jw_int(&j, "max", b->max);
    lf_jw_int(&j, "within_s", b->within_us / 1000000);
    if (code == LF_OK) {
        char ts[LF_TS_LEN + 1];
        lf_jw_int(&j, "used", (int64_t)n);
        if (n >= (uint64_t)b->max) lf_ts_format(oldest + b->within_us, ts);
        lf_jw_str(&j, "frees_up", n >= (uint64_t)b->max ? ts : NULL);
    } else lf_jw_str(&j, "error", lf_code_name(code));
    lf_jw_close(&j, '}');
    x->bi++;
    standing_next(x);
}

static void standing_next(explain_ctx *x) {
    if (x->bi < x->nbudgets) {
        char key[LF_COUNTER_KEY];
        const lf_budget_def *b = &x->budgets[x->bi];
        lf_counter_key(x->bstate[x->bi], b->per, budget_who(x, b->per), key);
        lf_store_count(lf_engine_store(x->e), key, lf_now_us() - b->within_us, counted,
                       x);
        return;
    }
    lf_jw_close(&x->blist, ']');
    lf_jw_close(&x->top, '}');
    x->cb(LF_OK, NULL, x->out.p, x->arg);
    ctx_free(x);
}

static void ask_next(explain_ctx *x) {
    if (x->next < x->ntargets) {
        lf_transition_req req = {.id = x->id,
                                 .to = x->targets[x->next++],
                                 .trigger = x->trigger,
                                 .actor = x->actor,
                                 .roles = x->roles,
                                 .dry_run = true};
        lf_engine_transition(x->e, &req, judged, x);
        return;
    }
    lf_jw_close(&x->edges, ']');
    lf_jw_key(&x->top, "budgets");
    x->blist = lf_jw_open(&x->out, '[');
    standing_next(x);
}

static void str_list(lf_buf *b, lf_jw *o, const char *key, char **v, int n) {
    lf_jw_key(o, key);
    lf_jw l = lf_jw_open(b, '[');
    for (int i = 0; i < n; i++) {
        lf_jw_next(&l);
        lf_buf_json_str(b, v[i]);
    }
    lf_jw_close(&l, ']');
}

/* The record as it is: what the state declares, then the dry runs. */
static void loaded(const lf_result *r, void *arg) {
    explain_ctx *x = arg;
    if (!r->success) {
        x->cb(r->code, r->error, NULL, x->arg);
        ctx_free(x);
        return;
    }
    const lf_record *rec = r->record;
    const lf_workflow *wf = lf_engine_workflow(x->e, rec->workflow);
    int s = wf ? lf_workflow_state(wf, rec->state) : -1;
    if (s < 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "Record %s is in state '%s', which no loaded workflow has", rec->id,
                 rec->state);
        x->cb(LF_INVALID_REQUEST, msg, NULL, x->arg);
        ctx_free(x);
        return;
    }
    lf_buf *b = &x->out;
    x->top = lf_jw_open(b, '{');
    lf_jw_str(&x->top, "record_id", rec->id);
    lf_jw_str(&x->top, "workflow", wf->name);
    lf_jw_str(&x->top, "state", rec->state);
    lf_jw_int(&x->top, "version", (int64_t)rec->version);
    lf_jw_bool(&x->top, "terminal", lf_workflow_is_terminal(wf, s));
    lf_jw_str(&x->top, "actor", x->actor);
    lf_jw_str(&x->top, "trigger", x->trigger);
    /* Who may leave: null when anyone may. */
    const lf_gate *g = wf->gates ? &wf->gates[s] : NULL;
    if (g && g->nleave) str_list(b, &x->top, "leave_roles", g->leave, g->nleave);
    else lf_jw_raw(&x->top, "leave_roles", NULL, "null");
    int64_t due;
    int to;
    char trig[128];
    lf_jw_key(&x->top, "timer");
    if (lf_record_timer(wf, rec, &due, &to, trig, sizeof trig)) {
        char ts[LF_TS_LEN + 1];
        lf_ts_format(due, ts);
        lf_jw t = lf_jw_open(b, '{');
        lf_jw_str(&t, "to", wf->states[to]);
        lf_jw_str(&t, "trigger", trig);
        lf_jw_str(&t, "due", ts);
        lf_jw_close(&t, '}');
    } else lf_buf_puts(b, "null");
    lf_jw_key(&x->top, "edges");
    x->edges = lf_jw_open(b, '[');
    for (int i = 0; i < wf->nedges; i++) {
        const lf_edge *ed = &wf->edges[i];
        if (ed->from != s || ed->engine) continue;
        x->targets = lf_xrealloc(x->targets, (x->ntargets + 1) * sizeof *x->targets);
        x->targets[x->ntargets++] = lf_xstrdup(wf->states[ed->to]);
    }
    /* The budgets of the states it may go to, copied: the policy set may
     * be reloaded while the counts are read. */
    for (int i = 0; i < wf->nbudgets; i++) {
        const lf_budget_def *bd = &wf->budgets[i];
        if (!lf_workflow_has_edge(wf, s, bd->state) ||
            lf_workflow_engine_edge(wf, s, bd->state))
            continue;
        x->budgets =
            lf_xrealloc(x->budgets, (size_t)(x->nbudgets + 1) * sizeof *x->budgets);
        x->bstate = lf_xrealloc(x->bstate, (size_t)(x->nbudgets + 1) * sizeof *x->bstate);
        x->budgets[x->nbudgets] = *bd;
        x->bstate[x->nbudgets++] = lf_xstrdup(wf->states[bd->state]);
    }
    ask_next(x);
}

void lf_engine_explain(lf_engine *e, const lf_explain_req *req, lf_text_cb *cb,
                       void *arg) {
    if (!req->id || !*req->id) {
        cb(LF_INVALID_REQUEST, "record id is required", NULL, arg);
        return;
    }
    explain_ctx *x = lf_xcalloc(1, sizeof *x);
    x->e = e;
    x->cb = cb;
    x->arg = arg;
    x->id = lf_xstrdup(req->id);
    x->actor = lf_xstrdup(req->actor ? req->actor : "anonymous");
    x->roles = req->roles && *req->roles ? lf_xstrdup(req->roles) : NULL;
    x->trigger = lf_xstrdup(req->trigger && *req->trigger ? req->trigger : "explain");
    lf_engine_get(e, x->id, loaded, x);
}
