/* describe.c -- a policy set described as JSON: what `loopforge policies
 * --json` prints and GET /v1/policies answers, written once for both. */
#include "rules.h"
#include "internal.h"

static void rules_json(const lf_rules *r, lf_rule_kind kind, lf_buf *b) {
    lf_jw list = lf_jw_open(b, '[');
    for (int i = 0; i < lf_rules_count(r, kind); i++) {
        lf_rule_info in;
        lf_rules_info(r, kind, i, &in);
        lf_jw_next(&list);
        lf_jw o = lf_jw_open(b, '{');
        lf_jw_str(&o, "name", in.name);
        lf_jw_str(&o, "file", in.file);
        lf_jw_int(&o, "line", in.line);
        lf_jw_str(&o, "on", in.on);
        lf_jw_str(&o, "description", in.description);
        lf_jw_bool(&o, "enabled", in.enabled);
        lf_jw_close(&o, '}');
    }
    lf_jw_close(&list, ']');
}

void lf_rules_json(const lf_rules *r, lf_buf *b) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "generation", lf_rules_generation(r));
    lf_jw_key(&o, "files");
    lf_jw files = lf_jw_open(b, '[');
    for (int i = 0; i < lf_rules_nfiles(r); i++) {
        lf_jw_next(&files);
        lf_buf_json_str(b, lf_rules_file_at(r, i));
    }
    lf_jw_close(&files, ']');
    lf_jw_key(&o, "workflows");
    lf_jw wfs = lf_jw_open(b, '[');
    for (int i = 0; i < lf_rules_nworkflows(r); i++) {
        const lf_workflow *wf = lf_rules_workflow_at(r, i);
        lf_jw_next(&wfs);
        lf_jw w = lf_jw_open(b, '{');
        lf_jw_str(&w, "name", wf->name);
        lf_jw_int(&w, "states", wf->nstates);
        lf_jw_int(&w, "edges", wf->nedges);
        lf_jw_close(&w, '}');
    }
    lf_jw_close(&wfs, ']');
    lf_jw_key(&o, "guards");
    rules_json(r, LF_RULE_GUARD, b);
    lf_jw_key(&o, "hooks");
    rules_json(r, LF_RULE_HOOK, b);
    lf_jw_key(&o, "routes");
    rules_json(r, LF_RULE_ROUTE, b);
    lf_jw_close(&o, '}');
}

/* The guards that may apply to an edge (its trigger aside: a guard that
 * filters on triggers is listed for the edges it can stand on). */
static void edge_guards(const lf_rules *r, const lf_workflow *wf, int from, int to,
                        lf_buf *b) {
    lf_jw list = lf_jw_open(b, '[');
    for (int i = 0; i < r->nguards; i++) {
        const lf_rule *g = &r->rules[r->guards[i]];
        const char *trigger = g->filter.trigger.n ? g->filter.trigger.v[0] : NULL;
        if (!g->enabled || !lf_filter_match(&g->filter, wf->states[from], wf->states[to],
                                            trigger, wf->name))
            continue;
        lf_jw_next(&list);
        lf_buf_json_str(b, g->name);
    }
    lf_jw_close(&list, ']');
}

/* The workflow's states (or only its terminal ones) in order, a list. */
static void state_names(const lf_workflow *wf, bool terminal_only, lf_buf *b) {
    lf_jw list = lf_jw_open(b, '[');
    for (int s = 0; s < wf->nstates; s++) {
        if (terminal_only && !wf->terminal[s]) continue;
        lf_jw_next(&list);
        lf_buf_json_str(b, wf->states[s]);
    }
    lf_jw_close(&list, ']');
}

void lf_rules_workflows_json(const lf_rules *r, lf_buf *b) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "generation", lf_rules_generation(r));
    lf_jw_key(&o, "workflows");
    lf_jw wfs = lf_jw_open(b, '[');
    for (int i = 0; i < lf_rules_nworkflows(r); i++) {
        const lf_workflow *wf = lf_rules_workflow_at(r, i);
        lf_jw_next(&wfs);
        lf_jw w = lf_jw_open(b, '{');
        lf_jw_str(&w, "name", wf->name);
        lf_jw_str(&w, "initial", wf->initial >= 0 ? wf->states[wf->initial] : NULL);
        lf_jw_key(&w, "states");
        state_names(wf, false, b);
        lf_jw_key(&w, "terminal");
        state_names(wf, true, b);
        lf_jw_key(&w, "edges");
        lf_jw es = lf_jw_open(b, '[');
        for (int k = 0; k < wf->nedges; k++) {
            const lf_edge *e = &wf->edges[k];
            lf_jw_next(&es);
            lf_jw x = lf_jw_open(b, '{');
            lf_jw_str(&x, "from", wf->states[e->from]);
            lf_jw_str(&x, "to", wf->states[e->to]);
            lf_jw_bool(&x, "engine", e->engine);
            lf_jw_key(&x, "guards");
            edge_guards(r, wf, e->from, e->to, b);
            lf_jw_close(&x, '}');
        }
        lf_jw_close(&es, ']');
        lf_jw_close(&w, '}');
    }
    lf_jw_close(&wfs, ']');
    lf_jw_close(&o, '}');
}
