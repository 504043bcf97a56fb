/* describe.c -- a policy set described as JSON: what `loopforge policies
 * --json` prints and GET /v1/policies answers, written once for both. */
#include "rules.h"

static void rules_json(const lf_rules *r, lf_rule_kind kind, lf_buf *b) {
    lf_buf_putc(b, '[');
    for (int i = 0; i < lf_rules_count(r, kind); i++) {
        lf_rule_info in;
        lf_rules_info(r, kind, i, &in);
        lf_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        lf_buf_json_str(b, in.name);
        lf_buf_puts(b, ",\"file\":");
        lf_buf_json_str(b, in.file);
        lf_buf_printf(b, ",\"line\":%d,\"on\":", in.line);
        lf_buf_json_str(b, in.on);
        lf_buf_puts(b, ",\"description\":");
        lf_buf_json_str(b, in.description);
        lf_buf_puts(b, in.enabled ? ",\"enabled\":true}" : ",\"enabled\":false}");
    }
    lf_buf_putc(b, ']');
}

void lf_rules_json(const lf_rules *r, lf_buf *b) {
    lf_buf_puts(b, "{\"generation\":");
    lf_buf_json_str(b, lf_rules_generation(r));
    lf_buf_puts(b, ",\"files\":[");
    for (int i = 0; i < lf_rules_nfiles(r); i++) {
        if (i) lf_buf_putc(b, ',');
        lf_buf_json_str(b, lf_rules_file_at(r, i));
    }
    lf_buf_puts(b, "],\"workflows\":[");
    for (int i = 0; i < lf_rules_nworkflows(r); i++) {
        const lf_workflow *wf = lf_rules_workflow_at(r, i);
        lf_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        lf_buf_json_str(b, wf->name);
        lf_buf_printf(b, ",\"states\":%d,\"edges\":%d}", wf->nstates, wf->nedges);
    }
    lf_buf_puts(b, "],\"guards\":");
    rules_json(r, LF_RULE_GUARD, b);
    lf_buf_puts(b, ",\"hooks\":");
    rules_json(r, LF_RULE_HOOK, b);
    lf_buf_puts(b, ",\"routes\":");
    rules_json(r, LF_RULE_ROUTE, b);
    lf_buf_putc(b, '}');
}
