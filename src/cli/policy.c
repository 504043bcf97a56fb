/* policy.c -- the commands that look at the policy directory without a
 * store: `lint` (does it load?) and `graph` (draw a workflow). */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../core/buf.h"
#include "../rules/rules.h"

/* ---- lint ------------------------------------------------------------ */

/* A JSON array of the names of the loaded guards, hooks or routes. */
static void rule_names(const lf_rules *r, lf_rule_kind kind, lf_buf *b) {
    lf_jw list = lf_jw_open(b, '[');
    for (int i = 0; i < lf_rules_count(r, kind); i++) {
        lf_rule_info info;
        lf_rules_info(r, kind, i, &info);
        lf_jw_next(&list);
        lf_buf_json_str(b, info.name);
    }
    lf_jw_close(&list, ']');
}

static int run_lint(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    lf_buf errors = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(c->policies, &errors);
    if (!r) {
        /* One "file:line: message" per line, as an editor wants them. */
        const char *msg = lf_buf_str(&errors);
        fputs(msg, stderr);
        if (errors.len && msg[errors.len - 1] != '\n') fputc('\n', stderr);
        if (!errors.len) fprintf(stderr, "%s: cannot load\n", c->policies);
        lf_buf_free(&errors);
        return LF_EXIT_USAGE;
    }
    lf_buf_free(&errors);
    int n = lf_rules_nfiles(r);
    if (c->json) {
        lf_buf b = LF_BUF_INIT;
        lf_jw o = lf_jw_open(&b, '{');
        lf_jw_bool(&o, "ok", true);
        lf_jw_str(&o, "generation", lf_rules_generation(r));
        lf_jw_key(&o, "files");
        lf_jw files = lf_jw_open(&b, '[');
        for (int i = 0; i < n; i++) {
            lf_jw_next(&files);
            lf_buf_json_str(&b, lf_rules_file_at(r, i));
        }
        lf_jw_close(&files, ']');
        lf_jw_key(&o, "workflows");
        lf_jw wfs = lf_jw_open(&b, '[');
        for (int i = 0; i < lf_rules_nworkflows(r); i++) {
            lf_jw_next(&wfs);
            lf_buf_json_str(&b, lf_rules_workflow_at(r, i)->name);
        }
        lf_jw_close(&wfs, ']');
        lf_jw_key(&o, "guards");
        rule_names(r, LF_RULE_GUARD, &b);
        lf_jw_key(&o, "hooks");
        rule_names(r, LF_RULE_HOOK, &b);
        lf_jw_key(&o, "routes");
        rule_names(r, LF_RULE_ROUTE, &b);
        lf_jw_close(&o, '}');
        lf_cli_puts_free(lf_buf_steal(&b));
        lf_buf_free(&b);
    } else {
        printf("ok: %d file%s, generation %s\n", n, n == 1 ? "" : "s",
               lf_rules_generation(r));
    }
    lf_rules_free(r);
    return LF_EXIT_OK;
}

const lf_command lf_cmd_lint = {
    "lint",
    "check the policy directory",
    "Usage: loopforge lint\n\n"
    "Loads every file of the policy directory the way the engine does and\n"
    "reports each problem as \"file:line: message\" on stderr (exit 2), or\n"
    "\"ok: N files, generation ID\" when the whole set loads.\n",
    NULL,
    run_lint,
    false};

/* ---- policies -------------------------------------------------------- */

static void policies_json(const lf_rules *r) {
    lf_buf b = LF_BUF_INIT;
    lf_rules_json(r, &b);
    lf_cli_puts_free(lf_buf_steal(&b));
}

static void rules_text(const lf_rules *r, lf_rule_kind kind, const char *title) {
    int n = lf_rules_count(r, kind);
    printf("%s (%d):\n", title, n);
    for (int i = 0; i < n; i++) {
        lf_rule_info in;
        lf_rules_info(r, kind, i, &in);
        printf("  %-32s %-28s %s:%d%s\n", in.name, in.on && *in.on ? in.on : "(always)",
               in.file, in.line, in.enabled ? "" : "  (disabled)");
    }
}

static int run_policies(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    lf_buf errors = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(c->policies, &errors);
    if (!r) {
        fprintf(stderr, "%s%s", lf_buf_str(&errors),
                errors.len && errors.p[errors.len - 1] == '\n' ? "" : "\n");
        lf_buf_free(&errors);
        return LF_EXIT_USAGE;
    }
    lf_buf_free(&errors);
    if (c->json) {
        policies_json(r);
    } else {
        printf("generation %s (%d files in %s)\n", lf_rules_generation(r),
               lf_rules_nfiles(r), c->policies);
        printf("workflows (%d):\n", lf_rules_nworkflows(r));
        for (int i = 0; i < lf_rules_nworkflows(r); i++) {
            const lf_workflow *wf = lf_rules_workflow_at(r, i);
            printf("  %-32s %d states, %d edges\n", wf->name, wf->nstates, wf->nedges);
        }
        rules_text(r, LF_RULE_GUARD, "guards");
        rules_text(r, LF_RULE_HOOK, "hooks");
        rules_text(r, LF_RULE_ROUTE, "routes");
    }
    lf_rules_free(r);
    return LF_EXIT_OK;
}

const lf_command lf_cmd_policies = {
    "policies",
    "list the loaded workflows, guards, hooks and routes",
    "Usage: loopforge policies\n\n"
    "Loads the policy directory and lists its generation id, workflows,\n"
    "guards, hooks and routes in evaluation order, each with its filter and\n"
    "where it is defined (--json: the same as an object). A directory that\n"
    "does not load exits 2 with every problem, as `lint` does.\n",
    NULL,
    run_policies,
    false};

/* ---- graph ----------------------------------------------------------- */

static int run_graph(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    const char *fmt = lf_args_get(&c->args, "format");
    if (!fmt) fmt = "dot";
    if (strcmp(fmt, "dot") != 0 && strcmp(fmt, "mermaid") != 0)
        return lf_cli_usage(c, "--format must be dot or mermaid, got '%s'", fmt);
    lf_buf out = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(c->policies, &out);
    if (!r) {
        fprintf(stderr, "%s", lf_buf_str(&out));
        fprintf(stderr,
                "graph: the policy directory %s does not load "
                "(see 'loopforge lint')\n",
                c->policies);
        lf_buf_free(&out);
        return LF_EXIT_USAGE;
    }
    lf_buf_reset(&out);
    const char *name = lf_args_get(&c->args, "workflow");
    const lf_workflow *wf = lf_rules_workflow(r, name);
    if (!wf) {
        fprintf(stderr, "Unknown workflow: %s\n", name ? name : "loopforge");
        rc = LF_EXIT_NOT_FOUND;
    } else {
        if (fmt[0] == 'd') lf_workflow_dot(wf, &out);
        else lf_workflow_mermaid(wf, &out);
        fputs(lf_buf_str(&out), stdout);
    }
    lf_buf_free(&out);
    lf_rules_free(r);
    return rc;
}

static const lf_optspec graph_opts[] = {
    {"workflow", true}, {"format", true}, {NULL, false}};

const lf_command lf_cmd_graph = {
    "graph",
    "draw a workflow (Graphviz dot or Mermaid)",
    "Usage: loopforge graph [--workflow W] [--format dot|mermaid]\n\n"
    "Prints the workflow's states and edges, e.g.\n"
    "  loopforge graph | dot -Tsvg > loopforge.svg\n\n"
    "  --workflow W         workflow name (default: loopforge)\n"
    "  --format F           dot (default) or mermaid\n",
    graph_opts,
    run_graph,
    false};
