/* records.c -- the commands that read and write records: create,
 * transition, show, list and delete. Each builds one engine request from
 * argv and prints its result. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"

/* ---- create ---------------------------------------------------------- */

static void print_created(lf_cli *c, const lf_result *res) {
    if (c->json) lf_cli_puts_free(lf_record_json(res->record));
    else printf("%s\n", lf_record_id(res->record));
}

static int run_create(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    lf_create_req req = {0};
    req.ref = lf_args_get(&c->args, "ref");
    if (!req.ref || !*req.ref) return lf_cli_usage(c, "missing --ref REF");
    req.repo = lf_args_get(&c->args, "repo");
    const char *num = lf_args_get(&c->args, "ref-number");
    if (num) {
        if (lf_cli_parse_i64(num, &req.ref_number) != 0)
            return lf_cli_usage(c, "--ref-number must be an integer, got '%s'", num);
        req.has_ref_number = true;
    }
    req.auto_merge = lf_args_has(&c->args, "auto-merge");
    req.workflow = lf_args_get(&c->args, "workflow");
    req.actor = lf_cli_actor(c);
    req.idempotency_key = lf_args_get(&c->args, "idempotency-key");
    req.parent = lf_args_get(&c->args, "parent");

    char *labels = NULL, *meta = NULL;
    if ((rc = lf_cli_kv_object(c, "label", NULL, &labels)) ||
        (rc = lf_cli_kv_object(c, "meta", "meta-json", &meta))) {
        free(labels);
        return rc;
    }
    req.labels = labels;
    req.metadata = meta;

    lf_engine *e = lf_cli_engine(c, &rc);
    if (e) {
        lf_reply r = {.c = c, .print = print_created};
        lf_engine_create(e, &req, lf_cli_result_cb, &r);
        rc = lf_cli_reply_wait(&r);
    }
    free(labels);
    free(meta);
    return rc;
}

static const lf_optspec create_opts[] = {{"ref", true},        {"repo", true},
                                         {"ref-number", true}, {"auto-merge", false},
                                         {"label", true},      {"meta", true},
                                         {"meta-json", true},  {"actor", true},
                                         {"workflow", true},   {"idempotency-key", true},
                                         {"parent", true},     {NULL, false}};

const lf_command lf_cmd_create = {
    "create",
    "create a record for an issue; prints its id",
    "Usage: loopforge create --ref REF [OPTIONS]\n\n"
    "Creates a record in the workflow's initial state and prints its id\n"
    "(--json: the record). A ref that already has a record is refused\n"
    "(exit 6, naming the existing id).\n\n"
    "  --ref REF            the issue, e.g. https://github.com/org/repo/issues/42\n"
    "  --repo R             repository, e.g. org/repo\n"
    "  --ref-number N       the issue number (an integer)\n"
    "  --auto-merge         merge as soon as CI passes\n"
    "  --label K=V          a label (repeatable)\n"
    "  --meta K=V           metadata with a string value (repeatable)\n"
    "  --meta-json K=JSON   metadata with any JSON value, e.g. risk=3\n"
    "  --actor A            who is acting (default: $LOOPFORGE_ACTOR, else cli:$USER)\n"
    "  --workflow W         workflow name (default: loopforge)\n"
    "  --idempotency-key K  a repeat with the same key changes nothing and\n"
    "                       answers as the first did\n"
    "  --parent ID          the record this one belongs to (a gate's work unit,\n"
    "                       an epic's issue); it must exist\n",
    create_opts,
    run_create,
    false};

/* ---- transition ------------------------------------------------------ */

static void print_transition(lf_cli *c, const lf_result *res) {
    if (c->json) {
        lf_cli_puts_free(lf_result_json(res));
        return;
    }
    /* new_state is NULL when a policy observed rather than moved. */
    printf("%s: %s \u2192 %s (%s)\n", lf_record_id(res->record),
           res->previous_state ? res->previous_state : "?",
           res->new_state ? res->new_state : lf_record_state(res->record),
           c->args.pos[2]);
}

/* --dry-run: the verdict first ("would allow" / "would deny: …"), then one
 * line per guard consulted; the exit code is the one a real request gets. */
static void print_decisions(const lf_result *res) {
    cJSON *d = cJSON_Parse(res->decisions ? res->decisions : "[]"), *it;
    cJSON_ArrayForEach(it, d) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(it, "policy");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "verdict");
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(it, "reason");
        printf("  %-5s %s%s%s\n", cJSON_IsString(v) ? v->valuestring : "?",
               cJSON_IsString(p) ? p->valuestring : "?", cJSON_IsString(why) ? ": " : "",
               cJSON_IsString(why) ? why->valuestring : "");
    }
    cJSON_Delete(d);
}

static void dry_run_cb(const lf_result *res, void *arg) {
    lf_reply *r = arg;
    lf_cli *c = r->c;
    if (c->json || res->code == LF_NOT_FOUND || res->code == LF_INVALID_REQUEST ||
        res->code == LF_UNAVAILABLE) {
        lf_cli_result_cb(res, arg);
        return;
    }
    r->done = true;
    r->rc = res->success ? LF_EXIT_OK : lf_cli_exit_code(res->code);
    if (res->success)
        printf("would allow: %s: %s \u2192 %s (%s)\n", lf_record_id(res->record),
               res->previous_state, res->new_state, c->args.pos[2]);
    else if (res->code == LF_DENIED)
        /* "Denied by policy NAME: reason" -> "would deny: NAME: reason" */
        printf("would deny: %s\n", strncmp(res->error, "Denied by policy ", 17) == 0
                                       ? res->error + 17
                                       : res->error);
    else printf("would refuse: %s\n", res->error);
    print_decisions(res);
}

/* --expect-version N: the version the record must still be at (0: any). */
static int expect_version(lf_cli *c, uint64_t *v) {
    const char *s = lf_args_get(&c->args, "expect-version");
    *v = 0;
    if (s && lf_cli_parse_u64(s, 1, UINT64_MAX, v) != 0)
        return lf_cli_usage(
            c, "--expect-version must be a record version (1 or more), got '%s'", s);
    return 0;
}

static int run_transition(lf_cli *c) {
    int rc = lf_cli_npos(c, 3, 3, "arguments: transition ID STATE TRIGGER");
    if (rc) return rc;
    uint64_t expect;
    if ((rc = expect_version(c, &expect))) return rc;
    lf_transition_req req = {
        .id = c->args.pos[0],
        .to = c->args.pos[1],
        .trigger = c->args.pos[2],
        .actor = lf_cli_actor(c),
        .dry_run = lf_args_has(&c->args, "dry-run"),
        .idempotency_key = lf_args_get(&c->args, "idempotency-key"),
        .expected_version = expect,
        /* Local use: the roles are the caller's word, and the entry says so. */
        .roles = lf_args_get(&c->args, "role"),
        .override_reason = lf_args_get(&c->args, "reason"),
        .co_signer = lf_args_get(&c->args, "co-signer"),
    };
    if (!*req.id || !*req.to || !*req.trigger)
        return lf_cli_usage(c, "ID, STATE and TRIGGER must not be empty");
    if (lf_args_has(&c->args, "override") != (req.override_reason != NULL))
        return lf_cli_usage(
            c, "--override needs --reason \"why\", and --reason an --override");
    char *meta = NULL;
    if ((rc = lf_cli_kv_object(c, "meta", "meta-json", &meta))) return rc;
    req.metadata = meta;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (e) {
        lf_reply r = {.c = c, .print = print_transition};
        lf_engine_transition(e, &req, req.dry_run ? dry_run_cb : lf_cli_result_cb, &r);
        rc = lf_cli_reply_wait(&r);
    }
    free(meta);
    return rc;
}

static const lf_optspec transition_opts[] = {{"meta", true},
                                             {"meta-json", true},
                                             {"actor", true},
                                             {"dry-run", false},
                                             {"idempotency-key", true},
                                             {"expect-version", true},
                                             {"role", true},
                                             {"override", false},
                                             {"reason", true},
                                             {"co-signer", true},
                                             {NULL, false}};

const lf_command lf_cmd_transition = {
    "transition",
    "move a record to another state",
    "Usage: loopforge transition ID STATE TRIGGER [OPTIONS]\n\n"
    "Moves record ID to STATE because of TRIGGER (e.g. pr.opened) and prints\n"
    "\"ID: from \u2192 to (trigger)\" (--json: the result object). An edge the\n"
    "workflow does not have exits 4 with the allowed targets; a policy's\n"
    "veto exits 5; a concurrent change exits 6.\n\n"
    "  --meta K=V           metadata for this history entry (repeatable);\n"
    "                       pr_url also sets the record's pr_url\n"
    "  --meta-json K=JSON   metadata with any JSON value, e.g. pr_number=17\n"
    "  --actor A            who is acting (default: $LOOPFORGE_ACTOR, else cli:$USER)\n"
    "  --dry-run            evaluate the edge and every guard, print each\n"
    "                       decision, commit nothing; exits as a real request would\n"
    "  --idempotency-key K  a repeat with the same key changes nothing and\n"
    "                       answers as the first did (\"duplicate\": true)\n"
    "  --expect-version N   only if the record is still at version N (else\n"
    "                       exit 6, naming the version it is at)\n"
    "  --role R[,R...]      the actor's roles, for the workflow's role gates and\n"
    "                       the guards (local use: the entry records them as\n"
    "                       claimed; over HTTP they come from the token)\n"
    "  --override --reason \"why\"\n"
    "                       break-glass: pass guards that deny (needs the role\n"
    "                       breakglass; never the graph or a role gate); audited\n"
    "  --co-signer NAME     a second person who signs the override\n",
    transition_opts,
    run_transition,
    false};

/* ---- show ------------------------------------------------------------ */

static void print_record(lf_cli *c, const lf_result *res) {
    char *json = lf_record_json(res->record);
    if (c->json) {
        lf_cli_puts_free(json);
        return;
    }
    /* Depth 2: the record's fields one per line, each history entry on
     * one line of its own. */
    lf_cli_print_pretty(stdout, json, 2);
    free(json);
}

static int run_show(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "record ID");
    if (rc) return rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_reply r = {.c = c, .print = print_record};
    lf_engine_get(e, c->args.pos[0], lf_cli_result_cb, &r);
    return lf_cli_reply_wait(&r);
}

const lf_command lf_cmd_show = {
    "show",
    "print a record",
    "Usage: loopforge show ID\n\n"
    "Prints the record as JSON, indented (--json: on one line). A record\n"
    "that does not exist, or was deleted, exits 3.\n",
    NULL,
    run_show,
    true};

/* ---- delete ---------------------------------------------------------- */

static void print_deleted(lf_cli *c, const lf_result *res) {
    if (c->json) lf_cli_puts_free(lf_result_json(res));
    else printf("deleted %s\n", c->args.pos[0]);
}

static int run_delete(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "record ID");
    if (rc) return rc;
    uint64_t expect;
    if ((rc = expect_version(c, &expect))) return rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_reply r = {.c = c, .print = print_deleted};
    lf_engine_delete_version(e, c->args.pos[0], lf_cli_actor(c), expect, lf_cli_result_cb,
                             &r);
    return lf_cli_reply_wait(&r);
}

static const lf_optspec delete_opts[] = {
    {"actor", true}, {"expect-version", true}, {NULL, false}};

const lf_command lf_cmd_delete = {
    "delete",
    "delete a record (its history stays in the audit log)",
    "Usage: loopforge delete ID [--actor A] [--expect-version N]\n\n"
    "Appends an audited tombstone: the record disappears from show and list,\n"
    "its history stays in the audit log and still verifies.\n\n"
    "  --actor A            who is acting (default: $LOOPFORGE_ACTOR, else cli:$USER)\n"
    "  --expect-version N   only if the record is still at version N (else exit 6)\n",
    delete_opts,
    run_delete,
    false};

/* ---- list ------------------------------------------------------------ */

typedef struct list_call {
    lf_cli *c;
    bool done;
    int rc;
} list_call;

static void on_list(lf_code code, const char *error, const lf_record *const *records,
                    size_t n, const char *next_cursor, void *arg) {
    list_call *l = arg;
    lf_cli *c = l->c;
    l->done = true;
    if (code != LF_OK) {
        l->rc = lf_cli_fail(c, code, error ? error : lf_code_name(code));
        return;
    }
    if (c->json) {
        fputs("{\"records\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            char *json = lf_record_json(records[i]);
            printf("%s%s", i ? "," : "", json);
            free(json);
        }
        fputs("],\"next_cursor\":", stdout);
        lf_cli_json_str(stdout, next_cursor);    /* opaque; null on the last page */
        fputs("}\n", stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const lf_record *r = records[i];
        printf("%s  %-15s  %s  %s\n", lf_record_id(r), lf_record_state(r),
               lf_record_updated_at(r), lf_record_ref(r));
    }
    if (next_cursor) fprintf(stderr, "(more: add --cursor %s)\n", next_cursor);
}

static int run_list(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    lf_list_query q = {
        .state = lf_args_get(&c->args, "state"),
        .repo = lf_args_get(&c->args, "repo"),
        .parent = lf_args_get(&c->args, "parent"),
        .cursor = lf_args_get(&c->args, "cursor"),
    };
    const char *lim = lf_args_get(&c->args, "limit");
    if (lim) {
        uint64_t v;
        if (lf_cli_parse_u64(lim, 1, 100000, &v) != 0)
            return lf_cli_usage(
                c, "--limit must be an integer from 1 to 100000, got '%s'", lim);
        q.limit = (size_t)v;
    }
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    list_call l = {.c = c};
    lf_engine_list(e, &q, on_list, &l);
    rc = lf_cli_wait(c, &l.done);
    return rc ? rc : l.rc;
}

static const lf_optspec list_opts[] = {{"state", true},  {"repo", true},
                                       {"limit", true},  {"cursor", true},
                                       {"parent", true}, {NULL, false}};

const lf_command lf_cmd_list = {
    "list",
    "list records, newest first",
    "Usage: loopforge list [OPTIONS]\n\n"
    "Prints one line per record, newest updated_at first:\n"
    "  ID  STATE  UPDATED_AT  REF\n"
    "(--json: {\"records\":[...],\"next_cursor\":...}). When there are more,\n"
    "the cursor of the next page is printed to stderr.\n\n"
    "  --state S            only records in state S\n"
    "  --repo R             only records of repository R\n"
    "  --parent ID          only the children of record ID\n"
    "  --limit N            at most N records (default 100)\n"
    "  --cursor C           the page after a previous one\n",
    list_opts,
    run_list,
    true};
