/* test_routes.c -- routes: inbound events (GitHub webhooks) become
 * requests.
 *
 *   - the shipped routes (policies/routes/github.lua) against every
 *     payload in tests/fixtures/github/ (ours, shaped like GitHub's),
 *     fed as the bytes of the file, with the exact requests or reasons
 *     expected; tests/run.sh runs this suite again over GitHub's
 *     published examples (../shared/fixtures/github/) where they exist;
 *   - the variants GitHub does not publish (a merged PR, an approving
 *     review, a failed check suite, a closed issue, a PR that says
 *     "Fixes #1", ...), derived here at run time from the nearest real
 *     payload (parsed with cJSON, one field changed, printed again) and
 *     named "synthetic" in the test names;
 *   - the route{} DSL: lint problems as file:line, results, ignore
 *     reasons, errors that stay in their route, budgets, payload errors,
 *     settings.
 *
 * $LOOPFORGE_FIXTURES overrides the fixture directory. Tests that need their own
 * policy directory build it under /tmp (mkdtemp) and remove it after. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../src/rules/rules.h"
#include "policy_dir.h"

/* ---- files ------------------------------------------------------------------- */

static const char *fixture_dir(void) {
    const char *d = getenv("LOOPFORGE_FIXTURES");
    return d && *d ? d : "tests/fixtures/github";
}

static char *fixture(const char *file, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fixture_dir(), file);
    return slurp(path, len);
}

/* ---- results as text ------------------------------------------------------------ */

/* One line per request, then the ignore reason and the error: the whole
 * result in one string, so a failure shows everything that came back. */
static char *result_text(const lf_route_result *res) {
    lf_buf b = LF_BUF_INIT;
    for (size_t i = 0; i < res->nrequests; i++) {
        const lf_route_request *q = &res->requests[i];
        if (q->op == LF_ROUTE_CREATE) {
            lf_buf_printf(&b, "%s: create ref=%s repo=%s", q->route, q->ref,
                          q->repo ? q->repo : "-");
            if (q->has_ref_number)
                lf_buf_printf(&b, " ref_number=%lld", (long long)q->ref_number);
            lf_buf_printf(&b, " labels=%s", q->labels ? q->labels : "-");
        } else {
            lf_buf_printf(&b, "%s: transition ref=%s to=%s trigger=%s", q->route, q->ref,
                          q->to, q->trigger);
        }
        lf_buf_printf(&b, " actor=%s metadata=%s\n", q->actor,
                      q->metadata ? q->metadata : "-");
    }
    if (res->ignored) lf_buf_printf(&b, "ignored: %s\n", res->ignored);
    if (res->error) lf_buf_printf(&b, "error: %s\n", res->error);
    return lf_buf_steal(&b);
}

static char *route_text(lf_rules *r, const char *event, const char *payload, size_t len) {
    lf_event ev = {"github", event, "72d3162e-cc78-11e3-81ab-4c9367dc0958", payload, len};
    lf_route_result res;
    lf_rules_route(r, &ev, &res);
    char *text = result_text(&res);
    lf_route_result_free(&res);
    return text;
}

static void expect_route(lf_rules *r, const char *event, const char *payload,
                         const char *want) {
    char *got = route_text(r, event, payload, strlen(payload));
    assert_string_equal(got, want);
    free(got);
}

/* ---- the shipped routes and the published payloads -------------------------------- */

static lf_rules *shipped;

static int load_shipped(void **state) {
    (void)state;
    lf_buf err = LF_BUF_INIT;
    shipped = lf_rules_load("policies", &err);
    if (!shipped) fprintf(stderr, "policies do not load:\n%s", lf_buf_str(&err));
    lf_buf_free(&err);
    return shipped ? 0 : -1;
}

static int free_shipped(void **state) {
    (void)state;
    lf_rules_free(shipped);
    return 0;
}

#define REPO "Codertocat/Hello-World"
#define ISSUE1 "https://github.com/" REPO "/issues/1"
#define PR2_URL "https://github.com/" REPO "/pull/2"
#define PR2 "pr:" REPO "#2"
#define ME "actor=github:Codertocat"
#define SHA_EC "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
#define SHA_F9 "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
#define SHA_34 "3484a3fb816e0859fd6e1cea078d76385ff50625"

/* In a case's expected text, "${path}" stands for the value at path in the
 * payload the route was given (a string's text, a number's digits): where
 * the repository's payloads and GitHub's published ones differ (times,
 * the status's commit, a reviewer), the expectation says which field the
 * route copies. "${path?TEXT}" is TEXT ('@' in it standing for the value)
 * when the payload has the field and nothing when it has not;
 * "${path?TEXT|ELSE}" is ELSE then; "${a,b}" is the first of a and b the
 * payload has. */

/* A CI report's conclusion in the metadata's ci and fact objects, or ""
 * for a report that has none (still running). */
#define CONCLUSION(c) "\"conclusion\":\"" c "\","
#define CI_REQ(ref, to, trigger, meta)                                                   \
    "ci: transition ref=" ref " to=" to " trigger=" trigger " " ME " metadata=" meta "\n"
/* check suite `id` of app octocoders-linter on commit `sha` */
#define SUITE_META(sha, id, conclusion, status)                                                \
    "{\"aliases\":[\"sha:" sha "\"],\"ci\":{\"app\":\"octocoders-linter\"," conclusion         \
    "\"head_sha\":\"" sha "\",\"key\":\"suite:" id "\",\"source\":\"check_suite\"},"           \
    "\"fact\":{\"app\":\"octocoders-linter\",\"at\":\"${check_suite.updated_at}\"," conclusion \
    "\"key\":\"suite:" id "\",\"kind\":\"ci\",\"required\":{},"                                \
    "\"sha\":\"" sha "\",\"status\":\"" status "\"}}"
/* workflow run 289782451 of workflow "test" on SHA_34: one key with its
 * check suite when the payload names the suite (GitHub's does) */
#define RUN_KEY "${workflow_run.check_suite_id?suite:@|run:289782451}"
#define RUN_META(key, conclusion, status)                                                \
    "{\"aliases\":[\"sha:" SHA_34 "\"],\"ci\":{\"app\":\"github-actions\"," conclusion   \
    "\"head_sha\":\"" SHA_34 "\",\"key\":\"" key "\",\"name\":\"test\","                 \
    "\"source\":\"workflow_run\",\"url\":\"https://github.com/octo-org/octo-repo/"       \
    "actions/runs/289782451\"},\"fact\":{\"app\":\"github-actions\","                    \
    "\"at\":\"${workflow_run.updated_at}\",\"attempt\":1," conclusion "\"key\":\"" key   \
    "\",\"kind\":\"ci\",\"name\":\"test\",\"required\":{},\"sha\":\"" SHA_34 "\","       \
    "\"status\":\"" status "\"}}"
/* check run 128620228 "Octocoders-linter" on SHA_EC; its app is the app's
 * slug, absent when the payload's app has none (two of GitHub's three) */
#define RUN_APP "${check_run.app.slug,check_run.app.name?\"app\":\"@\",}"
#define CHECK_RUN_META(conclusion, at, status)                                           \
    "{\"aliases\":[\"sha:" SHA_EC "\"],\"ci\":{" RUN_APP conclusion                      \
    "\"head_sha\":\"" SHA_EC                                                             \
    "\",\"key\":\"run:128620228\",\"name\":\"Octocoders-linter\","                       \
    "\"source\":\"check_run\"},\"fact\":{" RUN_APP "\"at\":\"${" at "}\"," conclusion    \
    "\"key\":\"run:128620228\",\"kind\":\"ci\",\"name\":\"Octocoders-linter\","          \
    "\"required\":{},\"sha\":\"" SHA_EC "\",\"status\":\"" status "\"}}"
/* commit status "default" of the payload's commit */
#define STATUS_REQ(to, trigger, conclusion, status)                                      \
    CI_REQ(                                                                              \
        "sha:${sha}", to, trigger,                                                       \
        "{\"aliases\":[\"sha:${sha}\"],\"ci\":{" conclusion "\"head_sha\":\"${sha}\","   \
        "\"key\":\"status:default\",\"name\":\"default\",\"source\":\"status\"},"        \
        "\"fact\":{\"at\":\"${updated_at}\"," conclusion "\"key\":\"status:default\","   \
        "\"kind\":\"ci\",\"name\":\"default\",\"required\":{},\"sha\":\"${sha}\","       \
        "\"status\":\"" status "\"}}")

/* PR #2's fact: `action`, then what comes between kind and number, and
 * between number and url */
#define PR2_FACT(action, before_kind, after_kind, after_number)                          \
    "\"fact\":{\"action\":\"" action                                                     \
    "\",\"at\":\"${pull_request.updated_at}\"," before_kind "\"head\":\"" SHA_EC         \
    "\",\"kind\":\"pr\"," after_kind "\"number\":2," after_number "\"url\":\"" PR2_URL   \
    "\"}"
/* pr-opened linking PR #2 to issue 1 */
#define PR2_LINK(trigger, by)                                                            \
    "pr-opened: transition ref=" ISSUE1 " to=pr_created trigger=" trigger " " ME         \
    " metadata={\"aliases\":[\"" PR2 "\",\"sha:" SHA_EC                                  \
    "\"]," PR2_FACT("opened", "", "", "") ",\"linked_by\":\"" by "\",\"pr_number\":2,"   \
                                          "\"pr_url\":\"" PR2_URL "\"}\n"
/* pr-opened for PR #2 linking no issue: a record of its own */
#define PR2_OWN(trigger)                                                                 \
    "pr-opened: create ref=" PR2_URL " repo=" REPO " ref_number=2 labels=- " ME          \
    " metadata={\"pull_request\":true,\"title\":\"Update the README with new "           \
    "information.\"}\n"                                                                  \
    "pr-opened: transition ref=" PR2_URL " to=pr_created trigger=" trigger " " ME        \
    " metadata={\"aliases\":[\"" PR2 "\",\"sha:" SHA_EC                                  \
    "\"]," PR2_FACT("opened", "", "", "\"own\":true,") ",\"pr_number\":2,"               \
                                                       "\"pr_url\":\"" PR2_URL "\"}\n"
#define MERGE_SHA "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
#define MERGED_AT "2019-05-15T15:21:18Z"
/* review-submitted: review 237895671 of SHA_EC in `state` */
/* An approval is about `approved`; other reviews about `awaiting_review`. */
#define REVIEW_TO(state, to, reviewer)                                                   \
    "review-submitted: transition ref=" PR2 " to=" to " trigger=review." state " " ME    \
    " metadata={\"commit_id\":\"" SHA_EC                                                 \
    "\",\"fact\":{\"at\":\"${review.submitted_at}\","                                    \
    "\"commit\":\"" SHA_EC "\",\"kind\":\"review\",\"reviewer\":\"" reviewer "\","       \
    "\"state\":\"" state "\"},\"review_id\":237895671}\n"
#define REVIEW(state, reviewer) REVIEW_TO(state, "approved", reviewer)
#define ISSUE_FACT(action) "\"fact\":{\"action\":\"" action "\",\"kind\":\"issue\""

typedef struct route_case {
    const char *file;           /* the fixture */
    void (*derive)(cJSON *);    /* NULL: the file's bytes as they are */
    const char *name;           /* synthetic: what was changed */
    const char *want;           /* with ${...} (above) */
} route_case;

/* cJSON helpers: the value at a.b.c of the root (NULL: absent or null),
 * and for the derivations, set it. */
static cJSON *lookup(cJSON *root, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    cJSON *v = root;
    for (char *k = strtok(buf, "."); k && v; k = strtok(NULL, "."))
        v = cJSON_GetObjectItemCaseSensitive(v, k);
    return cJSON_IsNull(v) ? NULL : v;
}

static cJSON *at(cJSON *root, const char *path) {
    cJSON *v = lookup(root, path);
    if (!v) fail_msg("the fixture has no %s", path);
    return v;
}

/* A case's expected text with its ${...} replaced from the payload. */
static char *expand_payload(cJSON *root, const char *fmt) {
    lf_buf b = LF_BUF_INIT;
    for (const char *p = fmt;;) {
        const char *s = strstr(p, "${");
        if (!s) {
            lf_buf_puts(&b, p);
            break;
        }
        lf_buf_add(&b, p, (size_t)(s - p));
        const char *e = strchr(s, '}');
        if (!e) fail_msg("unterminated ${ in %s", fmt);
        char spec[256];
        snprintf(spec, sizeof spec, "%.*s", (int)(e - s - 2), s + 2);
        char *then = strchr(spec, '?'), *otherwise = NULL;
        if (then) {
            *then++ = '\0';
            if ((otherwise = strchr(then, '|'))) *otherwise++ = '\0';
        }
        /* "a,b": the first of the fields the payload has */
        cJSON *v = NULL;
        for (char *alt = spec, *comma; alt && !v; alt = comma) {
            if ((comma = strchr(alt, ','))) *comma++ = '\0';
            v = lookup(root, alt);
        }
        char val[256] = "";
        if (cJSON_IsString(v)) {
            if (strpbrk(v->valuestring, "\"\\"))
                fail_msg("payload field %s needs JSON escapes", spec);
            snprintf(val, sizeof val, "%s", v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            snprintf(val, sizeof val, "%.0f", v->valuedouble);
        } else if (v) {
            fail_msg("payload field %s is not a string or a number", spec);
        }
        if (!then) {
            if (!v) fail_msg("the payload has no %s", spec);
            lf_buf_puts(&b, val);
        } else if (v) {
            for (const char *t = then; *t; t++) {
                if (*t == '@') lf_buf_puts(&b, val);
                else lf_buf_add(&b, t, 1);
            }
        } else if (otherwise) {
            lf_buf_puts(&b, otherwise);
        }
        p = e + 1;
    }
    return lf_buf_steal(&b);
}

static void test_route_case(void **state) {
    const route_case *c = *state;
    size_t len;
    char *body = fixture(c->file, &len), *text = body;
    char event[64];
    snprintf(event, sizeof event, "%.*s", (int)strcspn(c->file, "."), c->file);
    cJSON *root = cJSON_ParseWithLength(body, len);
    assert_non_null(root);
    if (c->derive) {
        c->derive(root);
        text = cJSON_PrintUnformatted(root);
        len = strlen(text);
    }
    char *got = route_text(shipped, event, text, len);
    char *want = expand_payload(root, c->want);
    assert_string_equal(got, want);
    free(want);
    free(got);
    cJSON_Delete(root);
    if (text != body) cJSON_free(text);
    free(body);
}

static void set(cJSON *root, const char *path, cJSON *value) {
    const char *dot = strrchr(path, '.');
    char parent[256];
    snprintf(parent, sizeof parent, "%.*s", dot ? (int)(dot - path) : 0, path);
    cJSON *obj = dot ? at(root, parent) : root;
    const char *key = dot ? dot + 1 : path;
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, value);
    else cJSON_AddItemToObject(obj, key, value);
}

static void set_str(cJSON *root, const char *path, const char *s) {
    set(root, path, cJSON_CreateString(s));
}

static void merged(cJSON *p) {
    set(p, "pull_request.merged", cJSON_CreateTrue());
    set_str(p, "pull_request.merged_at", MERGED_AT);
    set(p, "pull_request.merged_by", cJSON_Duplicate(at(p, "sender"), true));
}
static void approved(cJSON *p) { set_str(p, "review.state", "approved"); }
static void approved_upper(cJSON *p) { set_str(p, "review.state", "APPROVED"); }
static void changes_requested(cJSON *p) {
    set_str(p, "review.state", "changes_requested");
}
static void suite_failure(cJSON *p) { set_str(p, "check_suite.conclusion", "failure"); }
static void suite_timed_out(cJSON *p) {
    set_str(p, "check_suite.conclusion", "timed_out");
}
static void suite_action_required(cJSON *p) {
    set_str(p, "check_suite.conclusion", "action_required");
}
static void suite_neutral(cJSON *p) { set_str(p, "check_suite.conclusion", "neutral"); }
static void suite_rerequested(cJSON *p) { set_str(p, "action", "rerequested"); }
static void run_failure(cJSON *p) { set_str(p, "workflow_run.conclusion", "failure"); }
static void run_cancelled(cJSON *p) {
    set_str(p, "workflow_run.conclusion", "cancelled");
}
static void run_skipped(cJSON *p) { set_str(p, "workflow_run.conclusion", "skipped"); }
/* Its PR made one of this repository's (the published one belongs to
 * another repository). */
static void run_own_pr(cJSON *p) {
    cJSON *pr = cJSON_GetArrayItem(at(p, "workflow_run.pull_requests"), 0);
    set(pr, "base.repo.id", cJSON_CreateNumber(300029405));
}
static void run_of_suite(cJSON *p) {
    set(p, "workflow_run.check_suite_id", cJSON_CreateNumber(118578147));
}
static void run_no_suite(cJSON *p) {
    cJSON_DeleteItemFromObjectCaseSensitive(at(p, "workflow_run"), "check_suite_id");
}
static void status_pending(cJSON *p) { set_str(p, "state", "pending"); }
static void status_error(cJSON *p) { set_str(p, "state", "error"); }
static void status_failure(cJSON *p) { set_str(p, "state", "failure"); }
static void issue_closed(cJSON *p) {
    set_str(p, "action", "closed");
    set_str(p, "issue.state", "closed");
    set_str(p, "issue.closed_at", "2019-05-15T16:00:00Z");
    set_str(p, "issue.state_reason", "completed");
}
static void issue_queued_label(cJSON *p) { set_str(p, "label.name", "loopforge:queued"); }
static void issue_queued_label_case(cJSON *p) {
    set_str(p, "label.name", "LoopForge:Queued");
}
static void issue_no_labels(cJSON *p) { set(p, "issue.labels", cJSON_CreateArray()); }
static void fixes_1(cJSON *p) { set_str(p, "pull_request.body", "Fixes #1"); }
static void branch_1(cJSON *p) {
    set_str(p, "pull_request.head.ref", "fix/1-readme-typo");
}
static void draft(cJSON *p) {
    set(p, "pull_request.draft", cJSON_CreateTrue());
    set_str(p, "pull_request.body", "Fixes #1");
}
static void reopened_fixes_1(cJSON *p) {
    set_str(p, "action", "reopened");
    set_str(p, "pull_request.body", "Fixes #1");
}
static void ready_fixes_1(cJSON *p) { set_str(p, "pull_request.body", "closes: #1"); }

static const route_case CASES[] = {
    /* every published payload, as it is */
    /* check runs: each a check of its own, on the PR it lists */
    {"check_run.completed.failure.json", NULL, NULL,
     CI_REQ(
         PR2, "ci_failed", "ci.check_run.completed",
         CHECK_RUN_META(CONCLUSION("failure"), "check_run.completed_at", "completed"))},
    {"check_run.completed.success.json", NULL, NULL,
     CI_REQ(
         PR2, "ci_passed", "ci.check_run.completed",
         CHECK_RUN_META(CONCLUSION("success"), "check_run.completed_at", "completed"))},
    /* queued: not completed, so pending; no completed_at yet */
    {"check_run.created.json", NULL, NULL,
     CI_REQ(PR2, "ci_pending", "ci.check_run.created",
            CHECK_RUN_META("", "check_run.started_at", "pending"))},
    {"check_suite.completed.success.json", NULL, NULL,
     CI_REQ(PR2, "ci_passed", "ci.check_suite.completed",
            SUITE_META(SHA_EC, "118578147", CONCLUSION("success"), "completed"))},
    /* no PR yet: by its head commit */
    {"check_suite.requested.json", NULL, NULL,
     CI_REQ("sha:" SHA_F9, "ci_pending", "ci.check_suite.requested",
            SUITE_META(SHA_F9, "118578174", "", "pending"))},
    {"issues.assigned.json", NULL, NULL,
     "issue-queued: transition ref=" ISSUE1 " to=task_queued trigger=issue.assigned " ME
     " metadata={\"assignee\":\"Codertocat\"," ISSUE_FACT("queued") "}}\n"},
    {"issues.labeled.json", NULL, NULL,
     "ignored: label 'bug' is not the queue label 'loopforge:queued'\n"},
    {"issues.opened.json", NULL, NULL,
     "issue-opened: create ref=" ISSUE1 " repo=" REPO
     " ref_number=1 labels={\"bug\":\"bug\"} " ME
     " metadata={\"title\":\"Spelling error in the README file\"}\n"},
    /* reopened: queued again (state_reason is null) */
    {"issues.reopened.json", NULL, NULL,
     "issue-closed: transition ref=" ISSUE1 " to=task_queued trigger=issue.reopened " ME
     " metadata={" ISSUE_FACT("reopened") "}}\n"},
    {"ping.json", NULL, NULL, "ignored: ping\n"},
    /* closed without merging; its merge_commit_sha (GitHub's test merge)
     * is no merge */
    {"pull_request.closed.unmerged.json", NULL, NULL,
     "pr-closed: transition ref=" PR2 " to=closed trigger=pr.closed " ME
     " metadata={" PR2_FACT("closed", "", "\"merged\":false,", "") "}\n"},
    {"pull_request.labeled.json", NULL, NULL,
     "ignored: no route for pull_request.labeled\n"},
    /* body and branch link no issue: the PR is a record of its own */
    {"pull_request.opened.json", NULL, NULL, PR2_OWN("pr.opened")},
    {"pull_request.ready_for_review.json", NULL, NULL, PR2_OWN("pr.ready_for_review")},
    {"pull_request.review_requested.json", NULL, NULL,
     "ignored: no route for pull_request.review_requested\n"},
    {"pull_request.synchronize.json", NULL, NULL,
     "pr-synchronize: transition ref=" PR2 " to=ci_pending trigger=pr.synchronize " ME
     " metadata={\"aliases\":[\"sha:" SHA_EC "\"]," PR2_FACT(
         "push", "\"dismiss_stale\":true,", "", "") ",\"head_sha\":\"" SHA_EC "\"}\n"},
    /* the reviewer is the review's author, not the sender who dismissed it */
    {"pull_request_review.dismissed.json", NULL, NULL,
     REVIEW_TO("dismissed", "awaiting_review", "${review.user.login}")},
    {"pull_request_review.submitted.commented.json", NULL, NULL,
     "ignored: review of pull request #2 is commented, not an approval\n"},
    {"push.branch-created.json", NULL, NULL, "ignored: no route for push\n"},
    {"push.tag-deleted.json", NULL, NULL, "ignored: no route for push\n"},
    /* a status names only its commit */
    {"status.json", NULL, NULL,
     STATUS_REQ("ci_passed", "ci.status.completed", CONCLUSION("success"), "completed")},
    /* pull_requests[0] is a PR of Codertocat/Hello-World (base.repo.id
     * 186853002), not of octo-org/octo-repo: matched by head sha */
    {"workflow_run.completed.json", NULL, NULL,
     CI_REQ("sha:" SHA_34, "ci_passed", "ci.workflow_run.completed",
            RUN_META(RUN_KEY, CONCLUSION("success"), "completed"))},
    {"workflow_run.requested.json", NULL, NULL,
     CI_REQ("sha:" SHA_34, "ci_pending", "ci.workflow_run.requested",
            RUN_META(RUN_KEY, "", "pending"))},

    /* synthetic: derived from the nearest published payload */
    {"pull_request.closed.unmerged.json", merged, "a merged PR (merged = true)",
     "pr-closed: transition ref=" PR2 " to=merged trigger=pr.merged " ME
     " metadata={" PR2_FACT(
         "closed", "",
         "\"merge_sha\":\"" MERGE_SHA "\",\"merged\":true,"
         "\"merged_at\":\"" MERGED_AT "\",\"merged_by\":\"Codertocat\",",
         "") ",\"merge_commit_sha\":\"" MERGE_SHA "\",\"merged_at\":\"" MERGED_AT "\","
             "\"merged_by\":\"Codertocat\"}\n"},
    {"pull_request_review.submitted.commented.json", approved, "an approving review",
     REVIEW("approved", "Codertocat")},
    {"pull_request_review.submitted.commented.json", approved_upper,
     "an approving review, state in capitals", REVIEW("approved", "Codertocat")},
    {"pull_request_review.submitted.commented.json", changes_requested,
     "changes requested",
     REVIEW_TO("changes_requested", "awaiting_review", "Codertocat")},
    {"check_suite.completed.success.json", suite_failure, "a failed check suite",
     CI_REQ(PR2, "ci_failed", "ci.check_suite.completed",
            SUITE_META(SHA_EC, "118578147", CONCLUSION("failure"), "completed"))},
    {"check_suite.completed.success.json", suite_timed_out, "a timed-out check suite",
     CI_REQ(PR2, "ci_failed", "ci.check_suite.completed",
            SUITE_META(SHA_EC, "118578147", CONCLUSION("timed_out"), "completed"))},
    {"check_suite.completed.success.json", suite_action_required,
     "a check suite that needs action",
     CI_REQ(PR2, "ci_failed", "ci.check_suite.completed",
            SUITE_META(SHA_EC, "118578147", CONCLUSION("action_required"), "completed"))},
    /* neutral and skipped fail nothing: passed */
    {"check_suite.completed.success.json", suite_neutral, "a neutral check suite",
     CI_REQ(PR2, "ci_passed", "ci.check_suite.completed",
            SUITE_META(SHA_EC, "118578147", CONCLUSION("neutral"), "completed"))},
    {"check_suite.requested.json", suite_rerequested, "a check suite re-requested",
     CI_REQ("sha:" SHA_F9, "ci_pending", "ci.check_suite.rerequested",
            SUITE_META(SHA_F9, "118578174", "", "pending"))},
    {"workflow_run.completed.json", run_failure, "a failed workflow run",
     CI_REQ("sha:" SHA_34, "ci_failed", "ci.workflow_run.completed",
            RUN_META(RUN_KEY, CONCLUSION("failure"), "completed"))},
    {"workflow_run.completed.json", run_cancelled, "a cancelled workflow run",
     CI_REQ("sha:" SHA_34, "ci_failed", "ci.workflow_run.completed",
            RUN_META(RUN_KEY, CONCLUSION("cancelled"), "completed"))},
    {"workflow_run.completed.json", run_skipped, "a skipped workflow run",
     CI_REQ("sha:" SHA_34, "ci_passed", "ci.workflow_run.completed",
            RUN_META(RUN_KEY, CONCLUSION("skipped"), "completed"))},
    {"workflow_run.completed.json", run_own_pr, "a workflow run of this repository's PR",
     CI_REQ("pr:octo-org/octo-repo#2", "ci_passed", "ci.workflow_run.completed",
            RUN_META(RUN_KEY, CONCLUSION("success"), "completed"))},
    /* a run and its check suite are one check */
    {"workflow_run.completed.json", run_of_suite,
     "a workflow run of check suite 118578147",
     CI_REQ("sha:" SHA_34, "ci_passed", "ci.workflow_run.completed",
            RUN_META("suite:118578147", CONCLUSION("success"), "completed"))},
    {"workflow_run.completed.json", run_no_suite, "a workflow run naming no check suite",
     CI_REQ("sha:" SHA_34, "ci_passed", "ci.workflow_run.completed",
            RUN_META("run:289782451", CONCLUSION("success"), "completed"))},
    {"status.json", status_pending, "a pending status",
     STATUS_REQ("ci_pending", "ci.status.pending", "", "pending")},
    {"status.json", status_failure, "a failed status",
     STATUS_REQ("ci_failed", "ci.status.completed", CONCLUSION("failure"), "completed")},
    {"status.json", status_error, "a status in error",
     STATUS_REQ("ci_failed", "ci.status.completed", CONCLUSION("error"), "completed")},
    {"issues.opened.json", issue_closed, "a closed issue",
     "issue-closed: transition ref=" ISSUE1 " to=closed trigger=issue.closed " ME
     " metadata={" ISSUE_FACT("closed") ",\"state_reason\":\"completed\"},"
                                        "\"state_reason\":\"completed\"}\n"},
    {"issues.labeled.json", issue_queued_label, "labeled with the queue label",
     "issue-queued: transition ref=" ISSUE1 " to=task_queued trigger=issue.labeled " ME
     " metadata={" ISSUE_FACT("queued") "},\"label\":\"loopforge:queued\"}\n"},
    {"issues.labeled.json", issue_queued_label_case, "the queue label in other case",
     "issue-queued: transition ref=" ISSUE1 " to=task_queued trigger=issue.labeled " ME
     " metadata={" ISSUE_FACT("queued") "},\"label\":\"LoopForge:Queued\"}\n"},
    {"issues.opened.json", issue_no_labels, "an issue without labels",
     "issue-opened: create ref=" ISSUE1 " repo=" REPO " ref_number=1 labels={} " ME
     " metadata={\"title\":\"Spelling error in the README file\"}\n"},
    {"pull_request.opened.json", fixes_1, "a PR whose body says Fixes #1",
     PR2_LINK("pr.opened", "body")},
    {"pull_request.opened.json", branch_1, "a PR from branch fix/1-readme-typo",
     PR2_LINK("pr.opened", "branch")},
    {"pull_request.opened.json", draft, "a draft PR",
     "ignored: pull request #2 is a draft\n"},
    {"pull_request.opened.json", reopened_fixes_1, "a PR reopened, Fixes #1",
     PR2_LINK("pr.reopened", "body")},
    {"pull_request.ready_for_review.json", ready_fixes_1, "ready for review, closes: #1",
     PR2_LINK("pr.ready_for_review", "body")},
};
#define NCASES (sizeof CASES / sizeof *CASES)

/* ---- how a PR names its issue ------------------------------------------------------ */

/* Runs pull_request.opened with the given body and branch; returns the
 * issue number it links (0: none, and then the PR is a record of its own:
 * a create and a transition to pr_created, both on the PR's URL). */
static int linked_issue(const char *body, const char *branch) {
    size_t len;
    char *raw = fixture("pull_request.opened.json", &len);
    cJSON *p = cJSON_ParseWithLength(raw, len);
    free(raw);
    set(p, "pull_request.body", body ? cJSON_CreateString(body) : cJSON_CreateNull());
    set_str(p, "pull_request.head.ref", branch);
    char *text = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    lf_event ev = {"github", "pull_request", NULL, text, strlen(text)};
    lf_route_result res;
    lf_rules_route(shipped, &ev, &res);
    cJSON_free(text);
    int n = 0;
    if (res.error) fail_msg("%s", res.error);
    if (res.nrequests == 1) {
        const lf_route_request *q = &res.requests[0];
        assert_int_equal(q->op, LF_ROUTE_TRANSITION);
        assert_string_equal(q->to, "pr_created");
        const char *issues = strstr(q->ref, "/issues/");
        if (!issues) fail_msg("linked to %s, not an issue", q->ref);
        n = atoi(issues + 8);
    } else {
        assert_int_equal(res.nrequests, 2);
        assert_int_equal(res.requests[0].op, LF_ROUTE_CREATE);
        assert_string_equal(res.requests[0].ref, "https://github.com/" REPO "/pull/2");
        assert_int_equal(res.requests[1].op, LF_ROUTE_TRANSITION);
        assert_string_equal(res.requests[1].ref, "https://github.com/" REPO "/pull/2");
        assert_string_equal(res.requests[1].to, "pr_created");
    }
    lf_route_result_free(&res);
    return n;
}

static void test_pr_links(void **state) {
    (void)state;
    static const struct {
        const char *body, *branch;
        int want;
    } cases[] = {
        {"Fixes #12", "changes", 12},
        {"fixes #12", "changes", 12},
        {"This PR\n\nCloses: #7.", "changes", 7},
        {"RESOLVED #7, and more", "changes", 7},
        {"resolves Codertocat/Hello-World#9", "changes", 9},
        {"fix codertocat/hello-world#9", "changes", 9},
        {"Fixed https://github.com/Codertocat/Hello-World/issues/31", "changes", 31},
        {"fixes other/repo#9", "changes", 0}, /* another repository */
        {"fixes https://github.com/other/repo/issues/9", "changes", 0},
        {"prefixes #4 suffixes #5", "changes", 0}, /* not the keyword */
        {"Fixes #3 and closes #4", "changes", 3}, /* the first one */
        {"see #5", "changes", 0},
        {"fixes #5abc", "changes", 0},
        {"Fixes #2", "changes", 0}, /* the PR itself */
        {NULL, "changes", 0}, /* body null */
        {"", "42-foo", 42},
        {"", "issue-42", 42},
        {"", "issue42", 42},
        {"", "issues_42-x", 42},
        {"", "gh-42", 42},
        {"", "fix/42-bar", 42},
        {"", "feature/issue-42-login", 42},
        {"", "42", 42},
        {"", "node-18-support", 0},
        {"", "release/1.2", 0},
        {"", "v2-migration", 0},
        {"", "2fa-login", 0},
        {"Fixes #8", "42-foo", 8}, /* the body first */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = linked_issue(cases[i].body, cases[i].branch);
        if (got != cases[i].want)
            fail_msg("body %s, branch %s: linked #%d, want #%d",
                     cases[i].body ? cases[i].body : "null", cases[i].branch, got,
                     cases[i].want);
    }
}

/* A payload without a field a route needs names the field, at the line
 * that needed it. */
static void test_missing_fields(void **state) {
    (void)state;
    char *src = slurp("policies/routes/github.lua", NULL);
    int line = 1;
    for (const char *p = src; strncmp(p, "local function actor", 20) != 0; p++) {
        assert_true(*p != '\0');
        line += *p == '\n';
    }
    free(src);
    size_t len;
    char *raw = fixture("issues.opened.json", &len);
    cJSON *p = cJSON_ParseWithLength(raw, len);
    free(raw);
    cJSON_DeleteItemFromObject(p, "sender");
    char *text = cJSON_PrintUnformatted(p);
    char want[256];
    snprintf(want, sizeof want,
             "error: route issue-opened: policies/routes/github.lua:%d: "
             "payload has no sender.login\n",
             line);
    expect_route(shipped, "issues", text, want);
    cJSON_free(text);
    cJSON_DeleteItemFromObject(p, "issue");
    text = cJSON_PrintUnformatted(p);
    char *got = route_text(shipped, "issues", text, strlen(text));
    assert_non_null(strstr(got, ": payload has no issue\n"));
    free(got);
    cJSON_free(text);
    cJSON_Delete(p);
}

/* ---- listing ------------------------------------------------------------------------ */

static void test_shipped_listing(void **state) {
    (void)state;
    static const char *const names[] = {
        "issue-opened",   "issue-queued", "pr-opened",
        "pr-synchronize", "ci",           "review-submitted",
        "pr-closed",      "issue-closed", "ping"};
    int n = (int)(sizeof names / sizeof *names);
    assert_int_equal(lf_rules_count(shipped, LF_RULE_ROUTE), n);
    for (int i = 0; i < n; i++) {
        lf_rule_info in;
        lf_rules_info(shipped, LF_RULE_ROUTE, i, &in);
        assert_int_equal(in.kind, LF_RULE_ROUTE);
        assert_string_equal(in.name, names[i]);
        assert_string_equal(in.file, "policies/routes/github.lua");
        assert_true(in.line > 1);
        assert_non_null(in.description);
        assert_true(in.enabled);
    }
    lf_rule_info in;
    lf_rules_info(shipped, LF_RULE_ROUTE, 0, &in);
    assert_string_equal(in.on, "event=issues action=opened");
    lf_rules_info(shipped, LF_RULE_ROUTE, 4, &in);
    assert_string_equal(in.on, "event=check_suite|check_run|workflow_run|status");
    lf_rules_info(shipped, LF_RULE_ROUTE, 5, &in);
    assert_string_equal(in.on, "event=pull_request_review action=submitted|dismissed");
    lf_rules_info(shipped, LF_RULE_ROUTE, 7, &in);
    assert_string_equal(in.on, "event=issues action=closed|reopened");
    lf_rules_info(shipped, LF_RULE_ROUTE, n, &in); /* out of range: empty */
    assert_null(in.name);
    /* the route line is the `route {` line */
    char *src = slurp("policies/routes/github.lua", NULL);
    lf_rules_info(shipped, LF_RULE_ROUTE, 0, &in);
    const char *p = src;
    for (int line = 1; line < in.line; line++) p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "  route {", 9) == 0);
    free(src);

    lf_buf b = LF_BUF_INIT;
    lf_rules_json(shipped, &b);
    assert_non_null(strstr(lf_buf_str(&b), ",\"routes\":[{\"name\":\"issue-opened\","
                                           "\"file\":\"policies/routes/github.lua\""));
    lf_buf_free(&b);
    /* routes/ is part of the generation */
    bool listed = false;
    for (int i = 0; i < lf_rules_nfiles(shipped); i++)
        listed |= strcmp(lf_rules_file_at(shipped, i), "policies/routes/github.lua") == 0;
    assert_true(listed);
}

/* ---- routes in a temp directory (helpers: policy_dir.h) ------------------- */

static lf_rules *load_lim(tdir *d, size_t instructions, size_t memory) {
    lf_rules_limits lim = {instructions, memory, 0};
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load_opts(d->root, &lim, NULL, &err);
    if (!r) fail_msg("load failed:\n%s", lf_buf_str(&err));
    assert_string_equal(lf_buf_str(&err), "");
    lf_buf_free(&err);
    return r;
}

static lf_rules *load_ok(tdir *d) { return load_lim(d, 0, 0); }

/* expect_route with "%s" in want standing for the root directory. */
static void expect_in(tdir *d, lf_rules *r, const char *event, const char *payload,
                      const char *fmt) {
    char want[8192];
    expand(d, fmt, want, sizeof want);
    expect_route(r, event, payload, want);
}

/* ---- lint ------------------------------------------------------------------------------- */

static void test_lint(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "return route {\n"
        "  name = \"a\",\n"
        "  on = { evnt = \"issues\" },\n"
        "  run = function() end,\n"
        "}\n");
    put(d, "routes/b.lua",
        "return route {\n"
        "  name = \"b\", on = { event = \"issues\", action = {} },\n"
        "  check = function() end,\n"
        "}\n");
    put(d, "routes/c.lua",
        "local x = 1\n"
        "return {\n"
        "  route { name = \"c1\", on = { event = \"ping\" }, run = function() end },\n"
        "  route { name = \"c2\", on = { event = \"ping*\", from = \"x\" }, run = 5 },\n"
        "  policy { name = \"c3\", check = function() end },\n"
        "}\n");
    put(d, "routes/d.lua", "return hook { name = \"d\", run = function() end }\n");
    put(d, "routes/e.lua",
        "return route { name = \"c1\", on = { event = \"push\" },\n"
        "  run = function() end }\n");
    put(d, "routes/f.lua", "return route { name = \"f\", run = function() end }\n");
    put(d, "routes/g.lua",
        "return route {\n  name = \"g\",\n  on = { event = \"x\" },\n"
        "  run = function()\n  end\n  end\n");
    expect_errors(
        d,
        "%s/routes/a.lua:1: on: unknown filter 'evnt' (expected event, action or source)\n"
        "%s/routes/a.lua:1: route has no on.event (name the events it handles)\n"
        "%s/routes/b.lua:1: unknown field 'check'\n"
        "%s/routes/b.lua:1: on.action must be a name or a non-empty list of names\n"
        "%s/routes/b.lua:1: route 'b' has no run function\n"
        "%s/routes/c.lua:4: on: unknown filter 'from' (expected event, action or source)\n"
        "%s/routes/c.lua:4: on.event: '*' may only end a trigger pattern ('ping*')\n"
        "%s/routes/c.lua:4: run must be a function\n"
        "%s/routes/c.lua:6: item 3 of the returned list is not a route\n"
        "%s/routes/d.lua:1: file does not return a route (expected `return route { ... }` "
        "or a list of them)\n"
        "%s/routes/e.lua:1: duplicate route name 'c1' (first defined at %s/routes/c.lua:3)\n"
        "%s/routes/f.lua:1: route has no on.event (name the events it handles)\n"
        "%s/routes/g.lua:6: '}' expected (to close '{' at line 1) near 'end'\n");
}

/* Names are one namespace across policies, hooks and routes (config.lua
 * is keyed by them), and config.lua checks route settings like any. */
static void test_lint_names_and_config(void **state) {
    tdir *d = *state;
    put(d, "guards/x.lua",
        "return policy { name = \"x\", check = function() return allow() end }\n");
    put(d, "routes/x.lua",
        "return route { name = \"x\", on = { event = \"ping\" },\n"
        "  defaults = { label = \"q\" }, run = function() end }\n");
    expect_errors(d, "%s/routes/x.lua:1: duplicate route name 'x' "
                     "(first defined at %s/guards/x.lua:1)\n");
    put(d, "guards/x.lua",
        "return policy { name = \"y\", check = function() return allow() end }\n");
    put(d, "config.lua",
        "return {\n"
        "  x = {\n"
        "    label = 5,\n"
        "    lable = \"z\",\n"
        "  },\n"
        "  nope = {},\n"
        "}\n");
    expect_errors(
        d,
        "%s/config.lua:3: config for 'x': setting 'label' must be a string (like its default), "
        "not a number\n"
        "%s/config.lua:4: config for 'x': unknown setting 'lable'\n"
        "%s/config.lua:6: config for unknown policy, hook or route 'nope'\n");
}

/* ---- running routes ------------------------------------------------------------------- */

#define ISSUES_OPENED "{\"action\":\"opened\",\"n\":1}"

static void test_results(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "return {\n"
        "  route { name = \"fields\", on = { event = \"issues\", action = \"opened\" },\n"
        "    run = function(ev)\n"
        "      ev.payload.n = ev.payload.n + 1      -- its own copy\n"
        "      return transition { ref = ev.source .. '/' .. ev.name .. '/' .. ev.action,\n"
        "        to = 'task_queued', trigger = ev.delivery, metadata = { n = ev.payload.n } }\n"
        "    end },\n"
        "  route { name = \"fresh\", on = { event = \"issues\" },\n"
        "    run = function(ev)\n"
        "      return { create { ref = 'r' .. ev.payload.n, ref_number = 7, repo = 'o/r',\n"
        "                        labels = { bug = 'bug' }, actor = 'me' },\n"
        "               transition { ref = 'r', to = 'closed', trigger = 't' } }\n"
        "    end },\n"
        "  route { name = \"nothing\", on = { event = { \"issues\", \"push\" } },\n"
        "    run = function() end },\n"
        "  route { name = \"empty\", on = { event = \"push\" }, run = function() return {} end },\n"
        "  route { name = \"why\", on = { event = \"push\" },\n"
        "    run = function() return ignore('not today') end },\n"
        "  route { name = \"gitlab\", on = { event = \"issues\", source = \"gitlab\" },\n"
        "    run = function() error('never') end },\n"
        "}\n");
    lf_rules *r = load_ok(d);
    /* requests in route order; the route that returned nothing adds no
     * reason once there is a request */
    expect_route(
        r, "issues", ISSUES_OPENED,
        "fields: transition ref=github/issues/opened to=task_queued "
        "trigger=72d3162e-cc78-11e3-81ab-4c9367dc0958 actor=route:fields metadata={\"n\":2}\n"
        "fresh: create ref=r1 repo=o/r ref_number=7 labels={\"bug\":\"bug\"} actor=me "
        "metadata=-\n"
        "fresh: transition ref=r to=closed trigger=t actor=route:fresh metadata=-\n");
    /* reasons, in order, when nothing is asked for */
    expect_route(
        r, "push", "{\"ref\":\"refs/heads/main\"}",
        "ignored: route nothing returned no request; route empty returned no request; "
        "not today\n");
    /* no route: by name, and by name and action */
    expect_route(r, "status", "{}", "ignored: no route for status\n");
    expect_route(r, "pull_request", "{\"action\":\"opened\"}",
                 "ignored: no route for pull_request.opened\n");
    /* an action that is not a string is no action */
    expect_route(r, "pull_request", "{\"action\":5}",
                 "ignored: no route for pull_request\n");
    lf_rules_free(r);
}

static void test_payload_errors(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "return route { name = \"a\", on = { event = \"issues\" },\n"
        "  run = function(ev) return ignore('got ' .. tostring(ev.payload.x)) end }\n");
    lf_rules *r = load_ok(d);
    expect_route(r, "issues", "[1,2]", "error: payload: not a JSON object\n");
    expect_route(r, "issues", "\"x\"", "error: payload: not a JSON object\n");
    expect_route(r, "issues", "", "error: payload: not a JSON object\n");
    expect_route(r, "nope", " \n\t", "error: payload: not a JSON object\n");
    expect_route(r, "issues", "{\"x\": 1,}",
                 "error: payload: not valid JSON (at byte 8)\n");
    expect_route(r, "issues", "{\"x\": 1} {",
                 "error: payload: not valid JSON (at byte 9)\n");
    /* decoded only when a route wants it */
    expect_route(r, "nope", "{\"x\": ", "ignored: no route for nope\n");
    /* and JSON's details: escapes, unicode, null members absent */
    expect_route(r, "issues", " {\"x\":\"a\\u00e9\\n\\ud83d\\ude00\"} ",
                 "ignored: got a\xc3\xa9\n\xf0\x9f\x98\x80\n");
    expect_route(r, "issues", "{\"x\":null}", "ignored: got nil\n");
    /* the payload need not be NUL-terminated where it ends */
    const char buf[] = "{\"x\":1}{\"x\":2}";
    char *got = route_text(r, "issues", buf, 7);
    assert_string_equal(got, "ignored: got 1\n");
    free(got);
    lf_rules_free(r);
}

/* A route that raises, or returns something that is not a request,
 * reports "route NAME: ..." and drops only its own requests. */
static void test_errors_stay_in_their_route(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "local function ok() return transition { ref = 'r', to = 'closed', trigger = 't' } end\n"
        "return {\n"
        "  route { name = \"boom\", on = { event = \"e\" }, run = function(ev)\n"
        "    error('boom')\n"
        "  end },\n"
        "  route { name = \"ok\", on = { event = \"e\" }, run = ok },\n"
        "  route { name = \"num\", on = { event = \"e\" }, run = function() return 42 end },\n"
        "  route { name = \"item\", on = { event = \"e\" },\n"
        "    run = function() return { ok(), 'x' } end },\n"
        "  route { name = \"mixed\", on = { event = \"e\" },\n"
        "    run = function() return { ok(), ignore('no') } end },\n"
        "  route { name = \"nil-index\", on = { event = \"e\" },\n"
        "    run = function(ev) return ev.payload.issue.number end },\n"
        "}\n");
    lf_rules *r = load_ok(d);
    expect_in(
        d, r, "e", "{}",
        "ok: transition ref=r to=closed trigger=t actor=route:ok metadata=-\n"
        "error: route boom: %s/routes/a.lua:4: boom; "
        "route num: returned a number, not a request, a list of requests or ignore(reason); "
        "route item: item 2 of the returned list is not a request (create{} or transition{}); "
        "route mixed: item 2 of the returned list is not a request (create{} or transition{}); "
        "route nil-index: %s/routes/a.lua:13: attempt to index a nil value (field 'issue')\n");
    /* and the state serves the next event as if nothing happened */
    expect_in(
        d, r, "e", "{}",
        "ok: transition ref=r to=closed trigger=t actor=route:ok metadata=-\n"
        "error: route boom: %s/routes/a.lua:4: boom; "
        "route num: returned a number, not a request, a list of requests or ignore(reason); "
        "route item: item 2 of the returned list is not a request (create{} or transition{}); "
        "route mixed: item 2 of the returned list is not a request (create{} or transition{}); "
        "route nil-index: %s/routes/a.lua:13: attempt to index a nil value (field 'issue')\n");
    lf_rules_free(r);
}

/* The constructors check their fields where the route calls them. */
static void test_bad_requests(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "local R = {\n"
        "  function() return create { ref = 'r', labls = {} } end,\n"
        "  function() return create { repo = 'o/r' } end,\n"
        "  function() return create { ref = '' } end,\n"
        "  function() return create { ref = 'r', ref_number = 1.5 } end,\n"
        "  function() return create { ref = 'r', labels = 'bug' } end,\n"
        "  function() return create { ref = 'r', labels = { bug = true } } end,\n"
        "  function() return create { ref = 'r', metadata = { 1, 2 } } end,\n"
        "  function() return create 'r' end,\n"
        "  function() return transition { ref = 'r', to = 'mergd', trigger = 't' } end,\n"
        "  function() return transition { ref = 'r', to = 'merged' } end,\n"
        "  function() return transition { ref = 'r', to = 'merged', trigger = 't',\n"
        "                                 metadata = { f = print } } end,\n"
        "  function() return ignore('') end,\n"
        "  function() local q = create { ref = 'r' }; q.ref = 'x'; return q end,\n"
        "}\n"
        "return route { name = \"a\", on = { event = \"e\" },\n"
        "  run = function(ev) return R[ev.payload.i]() end }\n");
    lf_rules *r = load_ok(d);
    static const char *const want[] = {
        "%s/routes/a.lua:2: create: unknown field 'labls'",
        "%s/routes/a.lua:3: create: ref is required",
        "%s/routes/a.lua:4: create: ref must not be empty",
        "%s/routes/a.lua:5: create: ref_number must be an integer",
        "%s/routes/a.lua:6: create: labels must be a table, not a string",
        "create: labels: 'bug' must map to a string",
        "create: metadata: must be a table of names to values, not a list",
        "%s/routes/a.lua:9: create: expected a table, like create { ref = ... }, not a string",
        "transition: unknown state 'mergd'",
        "%s/routes/a.lua:11: transition: trigger is required",
        "transition: metadata.f: cannot encode a function as JSON",
        "%s/routes/a.lua:14: ignore: the reason must be a non-empty string",
        "%s/routes/a.lua:15: attempt to modify a read-only request (field 'ref')",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char payload[32], fmt[512];
        snprintf(payload, sizeof payload, "{\"i\":%zu}", i + 1);
        snprintf(fmt, sizeof fmt, "error: route a: %s\n", want[i]);
        expect_in(d, r, "e", payload, fmt);
    }
    lf_rules_free(r);
}

/* Budgets: a route that loops or eats memory fails alone, the next route
 * (and the next event) still runs. */
static void test_budgets(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "local keep = {}\n"
        "return {\n"
        "  route { name = \"loop\", on = { event = \"loop\" },\n"
        "    run = function() while true do end end },\n"
        "  route { name = \"big\", on = { event = \"big\" },\n"
        "    run = function() local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end end },\n"
        "  route { name = \"leak\", on = { event = \"leak\" },\n"
        "    run = function() for i = 1, 1e8 do keep[#keep + 1] = ('y'):rep(64) .. i end end },\n"
        "  route { name = \"after\", on = { event = { \"loop\", \"big\", \"leak\" } },\n"
        "    run = function(ev) return ignore('still here: ' .. ev.name) end },\n"
        "}\n");
    lf_rules *r = load_lim(d, 100000, 8u << 20);
    expect_in(d, r, "loop", "{}",
              "ignored: still here: loop\n"
              "error: route loop: %s/routes/a.lua:4: instruction budget exceeded\n");
    char *got = route_text(r, "big", "{}", 2);
    /* a million-instruction budget stops it before or after memory runs
     * out, depending on the allocator; either is a clean failure */
    assert_non_null(strstr(got, "ignored: still here: big\nerror: route big: "));
    free(got);
    got = route_text(r, "leak", "{}", 2);
    assert_non_null(strstr(got, "ignored: still here: leak\nerror: route leak: "));
    free(got);
    lf_rules_free(r);

    /* with room in the budget, memory is what stops it */
    r = load_lim(d, 1000000000, 8u << 20);
    expect_route(
        r, "big", "{}",
        "ignored: still here: big\n"
        "error: route big: not enough memory (the policy memory limit was reached)\n");
    lf_rules_free(r);
}

/* A payload too big for the memory cap is the payload's error, reported
 * once, and the state is fine afterwards. */
static void test_payload_too_big(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "return route { name = \"a\", on = { event = \"e\" },\n"
        "  run = function(ev) return ignore('n=' .. #ev.payload.list) end }\n");
    lf_rules *r = load_lim(d, 0, 4u << 20);
    lf_buf big = LF_BUF_INIT;
    lf_buf_puts(&big, "{\"list\":[");
    for (int i = 0; i < 200000; i++) lf_buf_printf(&big, "%s{\"i\":%d}", i ? "," : "", i);
    lf_buf_puts(&big, "]}");
    char *got = route_text(r, "e", big.p, big.len);
    assert_string_equal(got, "error: payload: not enough memory (the policy memory limit "
                             "was reached)\n");
    free(got);
    lf_buf_free(&big);
    expect_route(r, "e", "{\"list\":[1,2,3]}", "ignored: n=3\n");
    lf_rules_free(r);
}

/* Settings: defaults, config.lua overrides, enabled = false. */
static void test_settings(void **state) {
    tdir *d = *state;
    put(d, "routes/a.lua",
        "return {\n"
        "  route { name = \"a\", on = { event = \"e\" }, defaults = { word = 'hi', n = 1 },\n"
        "    run = function(ev, cfg) return ignore(cfg.word .. cfg.n) end },\n"
        "  route { name = \"b\", on = { event = { \"e\", \"f\" } },\n"
        "    run = function() return ignore('b') end },\n"
        "}\n");
    put(d, "config.lua", "return { a = { word = 'ho' }, b = { enabled = false } }\n");
    lf_rules *r = load_ok(d);
    expect_route(r, "e", "{}", "ignored: ho1\n");
    expect_route(r, "f", "{}", "ignored: no route for f\n"); /* b is off */
    lf_rule_info in;
    lf_rules_info(r, LF_RULE_ROUTE, 1, &in);
    assert_string_equal(in.name, "b");
    assert_string_equal(in.on, "event=e|f");
    assert_false(in.enabled);
    lf_rules_free(r);
}

/* A fixture through r, changed by derive first (NULL: as it is). */
static char *route_fixture(lf_rules *r, const char *file, void (*derive)(cJSON *)) {
    size_t len;
    char *body = fixture(file, &len), *text = body;
    char event[64];
    snprintf(event, sizeof event, "%.*s", (int)strcspn(file, "."), file);
    if (derive) {
        cJSON *root = cJSON_ParseWithLength(body, len);
        assert_non_null(root);
        derive(root);
        text = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        len = strlen(text);
    }
    char *got = route_text(r, event, text, len);
    if (text != body) cJSON_free(text);
    free(body);
    return got;
}

static void expect_fixture(lf_rules *r, const char *file, void (*derive)(cJSON *),
                           const char *want) {
    char *got = route_fixture(r, file, derive);
    assert_string_equal(got, want);
    free(got);
}

/* Asserts the routing of a fixture has each of the NULL-terminated texts. */
static void expect_fixture_has(lf_rules *r, const char *file, void (*derive)(cJSON *),
                               ...) {
    char *got = route_fixture(r, file, derive);
    va_list ap;
    va_start(ap, derive);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(got, want)) fail_msg("%s: no %s in:\n%s", file, want, got);
    va_end(ap);
    free(got);
}

static void app_circleci(cJSON *p) { set_str(p, "check_run.app.slug", "circleci"); }
static void app_travis(cJSON *p) { set_str(p, "check_run.app.slug", "travis"); }

/* The shipped config: the queue label, what CI is followed, stale
 * approvals, review on merge, a route turned off. */
static void test_shipped_settings(void **state) {
    tdir *d = *state;
    char *src = slurp("policies/routes/github.lua", NULL);
    put(d, "routes/github.lua", src);
    free(src);
    put(d, "config.lua",
        "return {\n"
        "  [\"issue-queued\"] = { label = \"ready\" },\n"
        "  ci = { apps = { \"circleci\", \"github-actions\" }, workflows = { \"build\" },\n"
        "         required = { \"tests\", \"ci/lint\" } },\n"
        "  [\"pr-synchronize\"] = { dismiss_stale_approvals = false },\n"
        "  [\"pr-closed\"] = { require_review = \"always\" },\n"
        "  [\"issue-opened\"] = { enabled = false },\n"
        "}\n");
    lf_rules *r = load_ok(d);
    expect_fixture(r, "issues.labeled.json", NULL,
                   "ignored: label 'bug' is not the queue label 'ready'\n");
    /* apps: check suites and check runs of other apps are not followed */
    expect_fixture(r, "check_suite.completed.success.json", NULL,
                   "ignored: CI of app 'octocoders-linter' is not followed\n");
    expect_fixture(r, "check_run.completed.failure.json", app_travis,
                   "ignored: CI of app 'travis' is not followed\n");
    expect_fixture_has(r, "check_run.completed.failure.json", app_circleci,
                       "ci: transition ref=" PR2 " to=ci_failed ", "\"app\":\"circleci\"",
                       NULL);
    /* workflows: an Actions run of another workflow is not followed */
    expect_fixture(r, "workflow_run.requested.json", NULL,
                   "ignored: workflow 'test' is not followed\n");
    /* a status has no app: followed whatever apps says; every CI fact
     * names the required checks */
    expect_fixture_has(r, "status.json", NULL,
                       "ci: transition ref=sha:", "\"required\":[\"tests\",\"ci/lint\"]",
                       NULL);
    expect_fixture_has(r, "pull_request.synchronize.json", NULL,
                       "pr-synchronize: transition ref=" PR2 " to=ci_pending ",
                       "\"dismiss_stale\":false", NULL);
    /* require_review goes with a merge when it is not "auto" */
    expect_fixture_has(r, "pull_request.closed.unmerged.json", merged,
                       "pr-closed: transition ref=" PR2 " to=merged ",
                       "\"require_review\":true", NULL);
    expect_fixture(r, "issues.opened.json", NULL,
                   "ignored: no route for issues.opened\n");
    lf_rules_free(r);

    put(d, "config.lua",
        "return {\n"
        "  ci = { workflows = { \"test\" } },\n"
        "  [\"pr-closed\"] = { require_review = \"never\" },\n"
        "}\n");
    r = load_ok(d);
    expect_fixture_has(r, "workflow_run.requested.json", NULL,
                       "ci: transition ref=sha:" SHA_34 " to=ci_pending ", NULL);
    /* workflows filter Actions runs only */
    expect_fixture_has(r, "check_suite.completed.success.json", NULL,
                       "ci: transition ref=" PR2 " to=ci_passed ", NULL);
    expect_fixture_has(r, "pull_request.closed.unmerged.json", merged,
                       "pr-closed: transition ref=" PR2 " to=merged ",
                       "\"require_review\":false", NULL);
    lf_rules_free(r);
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(void) {
    struct CMUnitTest cases[NCASES];
    char names[NCASES][160];
    for (size_t i = 0; i < NCASES; i++) {
        const route_case *c = &CASES[i];
        if (c->derive)
            snprintf(names[i], sizeof names[i], "synthetic: %s (from %s)", c->name,
                     c->file);
        else snprintf(names[i], sizeof names[i], "fixture: %s", c->file);
        cases[i] = (struct CMUnitTest){names[i], test_route_case, NULL, NULL, (void *)c};
    }
    const struct CMUnitTest shipped_tests[] = {
        cmocka_unit_test(test_shipped_listing),
        cmocka_unit_test(test_pr_links),
        cmocka_unit_test(test_missing_fields),
    };
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest dsl_tests[] = {
        T(test_lint),
        T(test_lint_names_and_config),
        T(test_results),
        T(test_payload_errors),
        T(test_errors_stay_in_their_route),
        T(test_bad_requests),
        T(test_budgets),
        T(test_payload_too_big),
        T(test_settings),
        T(test_shipped_settings),
    };
    int failed = _cmocka_run_group_tests("shipped routes and the GitHub payloads", cases,
                                         NCASES, load_shipped, free_shipped);
    failed += cmocka_run_group_tests_name("shipped routes", shipped_tests, load_shipped,
                                          free_shipped);
    failed += cmocka_run_group_tests_name("the route DSL", dsl_tests, NULL, NULL);
    return failed;
}
