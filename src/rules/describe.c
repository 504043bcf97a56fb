/* describe.c -- a policy set described as JSON: what `loopforge policies
 * --json` prints and GET /v1/policies answers, written once for both. */
#include "rules.h"

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
