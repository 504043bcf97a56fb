/* explain.c -- `loopforge explain ID`: why a record is where it is and
 * what would move it on (lf_engine_explain): every way out of its state
 * judged now, as a dry run by the given actor and roles, each denial with
 * its reason and what would satisfy it; who may leave; its next timer. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"

#define S(o, k) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k))

static void print_edge(const cJSON *x) {
    bool allowed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "allowed"));
    printf("  \u2192 %s: %s\n", S(x, "to"), allowed ? "allowed" : S(x, "code"));
    if (allowed) return;
    const cJSON *d, *ds = cJSON_GetObjectItemCaseSensitive(x, "decisions");
    bool any = false;
    cJSON_ArrayForEach(d, ds) {
        const char *verdict = S(d, "verdict");
        if (!verdict || strcmp(verdict, "deny") != 0) continue;
        any = true;
        printf("      %s: %s\n", S(d, "policy"),
               S(d, "reason") ? S(d, "reason") : "denied");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(d, "requires");
        if (req) {
            char *t = cJSON_PrintUnformatted(req);
            printf("        requires %s\n", t);
            free(t);
        }
    }
    if (!any && S(x, "error")) printf("      %s\n", S(x, "error"));
}

static void print_text(const char *text) {
    cJSON *j = cJSON_Parse(text), *x;
    printf("%s: %s (%s, version %.0f)%s\n", S(j, "record_id"), S(j, "state"),
           S(j, "workflow"),
           cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "version")),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "terminal")) ? ", terminal"
                                                                         : "");
    const cJSON *edges = cJSON_GetObjectItemCaseSensitive(j, "edges");
    if (!cJSON_GetArraySize(edges)) printf("  no way out\n");
    cJSON_ArrayForEach(x, edges) print_edge(x);
    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(j, "leave_roles");
    if (cJSON_IsArray(roles)) {
        printf("  leaving needs one of the roles:");
        cJSON_ArrayForEach(x, roles) printf(" %s", cJSON_GetStringValue(x));
        putchar('\n');
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "timer");
    if (cJSON_IsObject(t))
        printf("  timer: \u2192 %s (%s) due %s\n", S(t, "to"), S(t, "trigger"),
               S(t, "due"));
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(j, "budgets")) {
        printf("  budget: %s %s into %s: %.0f of %.0f within %.0fs", S(x, "per"),
               S(x, "who"), S(x, "to"),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "used")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "max")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "within_s")));
        if (S(x, "frees_up")) printf(", frees up at %s", S(x, "frees_up"));
        putchar('\n');
    }
    cJSON_Delete(j);
}

static int run_explain(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "record ID");
    if (rc) return rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_explain_req req = {.id = c->args.pos[0],
                          .actor = lf_cli_actor(c),
                          .roles = lf_args_get(&c->args, "role"),
                          .trigger = lf_args_get(&c->args, "trigger")};
    lf_text_call t = {0};
    lf_engine_explain(e, &req, lf_cli_text_cb, &t);
    if ((rc = lf_cli_wait(c, &t.done))) return rc;
    if (t.code != LF_OK) rc = lf_cli_fail(c, t.code, t.error);
    else if (c->json) puts(t.text);
    else print_text(t.text);
    free(t.text);
    free(t.error);
    return rc;
}

static const lf_optspec explain_opts[] = {
    {"actor", true}, {"role", true}, {"trigger", true}, {NULL, false}};

const lf_command lf_cmd_explain = {
    "explain",
    "why a record is where it is, and what would move it",
    "Usage: loopforge explain ID [--actor A] [--role R,...] [--trigger T]\n\n"
    "For the record's current state, every way out its workflow has, judged\n"
    "now as a dry run by the actor (default: $LOOPFORGE_ACTOR, else cli:$USER)\n"
    "with the given roles: allowed, or the code and every denial with its\n"
    "reason and, where the guard says, what would satisfy it (\"requires\");\n"
    "the roles that may leave the state; its next timer. Writes nothing.\n"
    "--json prints the document (docs/http.md, \"explain\").\n\n"
    "  --actor A            who would ask\n"
    "  --role R[,R...]      with these roles\n"
    "  --trigger T          the trigger guards see (default: explain)\n",
    explain_opts,
    run_explain,
    true};

/* ---- ack ------------------------------------------------------------------ */

static void print_ack(lf_cli *c, const lf_result *res) {
    (void)c;
    printf("%s: override acknowledged (%s)\n", lf_record_id(res->record),
           lf_record_state(res->record));
}

static int run_ack(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "record ID");
    if (rc) return rc;
    const char *reason = lf_args_get(&c->args, "reason");
    if (!reason || !*reason)
        return lf_cli_usage(c, "ack needs --reason \"what was checked\"");
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_reply r = {.c = c, .print = print_ack};
    lf_engine_acknowledge(e, c->args.pos[0], lf_cli_actor(c), reason, lf_cli_result_cb,
                          &r);
    return lf_cli_reply_wait(&r);
}

static const lf_optspec ack_opts[] = {{"reason", true}, {"actor", true}, {NULL, false}};

const lf_command lf_cmd_ack = {
    "ack",
    "acknowledge a break-glass override waiting for review",
    "Usage: loopforge ack ID --reason \"...\" [--actor A]\n\n"
    "Ends the review timers of the overrides on record ID (a workflow's\n"
    "override = { review = \"24h\", escalate_to = STATE }): unacknowledged, the\n"
    "record is moved to STATE when the review is due. Someone other than the\n"
    "actor who overrode must do it (exit 5 otherwise); a record with no\n"
    "override waiting exits 2. Audited (a `noted` entry with the reason).\n\n"
    "  --reason TEXT        what was checked (required)\n"
    "  --actor A            who acknowledges (default: $LOOPFORGE_ACTOR, else cli:$USER)\n",
    ack_opts,
    run_ack,
    false};
