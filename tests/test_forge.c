/* test_forge.c -- the fact model (src/core/forge.c): which facts are
 * stale, what the knowledge implies, what a merge lacks. Pure: facts in,
 * knowledge and verdicts out. The scenarios over a real server are in
 * tests/cli/github_scenarios.lua. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/forge.h"

#define A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* Applies a fact; returns the outcome. */
static lf_forge_outcome fact(lf_forge *k, const char *json) {
    char err[256];
    if (lf_forge_check(json, err, sizeof err)) fail_msg("%s: %s", json, err);
    lf_forge_outcome o;
    lf_forge_apply(k, json, &o);
    return o;
}

static const char *milestone(const lf_forge *k) {
    const char *m = lf_forge_milestone(k);
    return m ? m : "(none)";
}

#define PR_OPENED(n, head)                                                               \
    "{\"kind\":\"pr\",\"action\":\"opened\",\"number\":" #n ",\"url\":\"u/" #n           \
    "\",\"head\":\"" head "\",\"at\":\"2026-01-01T00:00:00Z\"}"
#define SUITE(sha, id, status, concl, at)                                                \
    "{\"kind\":\"ci\",\"sha\":\"" sha "\",\"key\":\"suite:" #id "\",\"name\":\"CI\","    \
    "\"status\":\"" status "\",\"conclusion\":" concl ",\"at\":\"" at "\"}"
#define REVIEW(state, commit, at)                                                        \
    "{\"kind\":\"review\",\"reviewer\":\"hubot\",\"state\":\"" state                     \
    "\",\"commit\":\"" commit "\",\"at\":\"" at "\"}"

static void test_check(void **state) {
    (void)state;
    char err[256];
    assert_int_equal(lf_forge_check("{\"kind\":\"weather\"}", err, sizeof err), -1);
    assert_string_equal(
        err, "metadata.fact.kind must be issue, pr, ci or review, not weather");
    assert_int_equal(
        lf_forge_check("{\"kind\":\"pr\",\"action\":\"opened\"}", err, sizeof err), -1);
    assert_string_equal(err, "metadata.fact.number is required for a pr fact");
    assert_int_equal(
        lf_forge_check("{\"kind\":\"pr\",\"action\":\"opened\",\"number\":\"2\"}", err,
                       sizeof err),
        -1);
    assert_string_equal(err, "metadata.fact.number is of the wrong type for a pr fact");
    assert_int_equal(
        lf_forge_check("{\"kind\":\"issue\",\"action\":\"eaten\"}", err, sizeof err), -1);
    assert_string_equal(err, "metadata.fact: unknown issue action 'eaten'");
    assert_int_equal(lf_forge_check(SUITE(A, 1, "done", "null", "t"), err, sizeof err),
                     -1);
    assert_int_equal(lf_forge_check(PR_OPENED(2, A), err, sizeof err), 0);
}

/* The ordinary lifecycle, step by step. */
static void test_lifecycle(void **state) {
    (void)state;
    lf_forge *k = lf_forge_parse(NULL);
    assert_string_equal(milestone(k), "(none)");
    assert_true(fact(k, "{\"kind\":\"issue\",\"action\":\"queued\"}").changed);
    assert_string_equal(milestone(k), "task_queued");
    lf_forge_outcome o = fact(k, PR_OPENED(2, A));
    assert_true(o.changed && o.pr_changed && !o.regression);
    assert_string_equal(milestone(k), "pr_created");
    /* an approval before CI finished is kept, and waits for CI */
    assert_true(fact(k, REVIEW("approved", A, "2026-01-01T00:01:00Z")).changed);
    assert_string_equal(milestone(k), "pr_created");
    assert_false(lf_forge_allows(k, "ci_passed"));
    fact(k, SUITE(A, 1, "pending", "null", "2026-01-01T00:02:00Z"));
    assert_string_equal(milestone(k), "ci_pending");
    fact(k, SUITE(A, 1, "completed", "\"success\"", "2026-01-01T00:03:00Z"));
    assert_string_equal(milestone(k), "approved");
    assert_true(lf_forge_allows(k, "ci_passed") && lf_forge_allows(k, "approved"));
    /* the issue closes first: the open PR decides */
    fact(k, "{\"kind\":\"issue\",\"action\":\"closed\",\"state_reason\":\"completed\"}");
    assert_string_equal(milestone(k), "approved");
    lf_buf unmet = LF_BUF_INIT;
    assert_int_equal(lf_forge_merge_unmet(k, false, &unmet), 0);
    fact(k, "{\"kind\":\"pr\",\"action\":\"closed\",\"number\":2,\"merged\":true}");
    assert_string_equal(milestone(k), "closed");
    assert_true(lf_forge_allows(k, "merged"));
    lf_buf_free(&unmet);
    char *json = lf_forge_json(k);
    assert_non_null(strstr(json, "\"state\":\"merged\""));
    free(json);
    lf_forge_free(k);
}

static void test_stale_ci(void **state) {
    (void)state;
    lf_forge *k = lf_forge_parse(NULL);
    fact(k, PR_OPENED(2, A));
    fact(k, SUITE(A, 1, "completed", "\"success\"", "2026-01-01T00:03:00Z"));
    /* requested at the same time as the completion: older */
    lf_forge_outcome o = fact(k, SUITE(A, 1, "pending", "null", "2026-01-01T00:03:00Z"));
    assert_true(o.stale[0] && !o.changed);
    /* an earlier report */
    o = fact(k, SUITE(A, 1, "completed", "\"failure\"", "2026-01-01T00:01:00Z"));
    assert_true(o.stale[0] && !o.changed);
    assert_string_equal(milestone(k), "ci_passed");
    /* a re-run, later: pending again */
    o = fact(k, SUITE(A, 1, "pending", "null", "2026-01-01T00:09:00Z"));
    assert_true(!o.stale[0] && o.changed);
    assert_string_equal(milestone(k), "ci_pending");
    /* a push: CI of the old head is stale, and so is a review of it */
    o = fact(k, "{\"kind\":\"pr\",\"action\":\"push\",\"number\":2,\"head\":\"" B "\"}");
    assert_true(o.changed && o.regression);
    o = fact(k, SUITE(A, 1, "completed", "\"cancelled\"", "2026-01-01T00:10:00Z"));
    assert_non_null(strstr(o.stale, "no longer the head"));
    o = fact(k, REVIEW("approved", A, "2026-01-01T00:11:00Z"));
    assert_non_null(strstr(o.stale, "no longer the head"));
    assert_string_equal(milestone(k), "ci_pending");
    /* lower attempts of a run are older */
    fact(k, "{\"kind\":\"ci\",\"sha\":\"" B
            "\",\"key\":\"suite:7\",\"status\":\"completed\","
            "\"conclusion\":\"failure\",\"attempt\":2}");
    o = fact(k, "{\"kind\":\"ci\",\"sha\":\"" B
                "\",\"key\":\"suite:7\",\"status\":\"completed\","
                "\"conclusion\":\"success\",\"attempt\":1}");
    assert_true(o.stale[0] != '\0');
    assert_string_equal(milestone(k), "ci_failed");
    lf_buf unmet = LF_BUF_INIT;
    assert_int_equal(lf_forge_merge_unmet(k, false, &unmet), 2);
    assert_string_equal(lf_buf_str(&unmet),
                        "CI failed on bbbbbbb\nno approval of bbbbbbb\n");
    lf_buf_free(&unmet);
    lf_forge_free(k);
}

static void test_push_dismisses_approvals(void **state) {
    (void)state;
    lf_forge *k = lf_forge_parse(NULL);
    fact(k, PR_OPENED(2, A));
    fact(k, REVIEW("approved", A, "2026-01-01T00:01:00Z"));
    fact(k, "{\"kind\":\"pr\",\"action\":\"push\",\"number\":2,\"head\":\"" B "\"}");
    fact(k, SUITE(B, 2, "completed", "\"success\"", "2026-01-01T00:03:00Z"));
    assert_string_equal(milestone(k), "ci_passed");
    /* with dismissal off, the approval survives the push */
    lf_forge *keep = lf_forge_parse(NULL);
    fact(keep, PR_OPENED(2, A));
    fact(keep, REVIEW("approved", A, "2026-01-01T00:01:00Z"));
    fact(keep, "{\"kind\":\"pr\",\"action\":\"push\",\"number\":2,\"head\":\"" B
               "\",\"dismiss_stale\":false}");
    fact(keep, SUITE(B, 2, "completed", "\"success\"", "2026-01-01T00:03:00Z"));
    assert_string_equal(milestone(keep), "approved");
    lf_forge_free(keep);
    lf_forge_free(k);
}

static void test_required_and_replacement(void **state) {
    (void)state;
    lf_forge *k = lf_forge_parse(NULL);
    fact(k, PR_OPENED(2, A));
    fact(k,
         "{\"kind\":\"ci\",\"sha\":\"" A "\",\"key\":\"status:lint\",\"name\":\"lint\","
         "\"status\":\"completed\",\"conclusion\":\"failure\",\"required\":[\"tests\"]}");
    /* lint is not required, tests was never seen */
    assert_string_equal(milestone(k), "ci_pending");
    fact(k,
         "{\"kind\":\"ci\",\"sha\":\"" A "\",\"key\":\"status:tests\",\"name\":\"tests\","
         "\"status\":\"completed\",\"conclusion\":\"success\",\"required\":[\"tests\"]}");
    assert_string_equal(milestone(k), "ci_passed");
    /* the PR closes unmerged; another one takes its place */
    fact(k, "{\"kind\":\"pr\",\"action\":\"closed\",\"number\":2,\"merged\":false}");
    assert_string_equal(milestone(k), "task_queued");
    lf_forge_outcome o = fact(k, PR_OPENED(3, B));
    assert_true(o.pr_changed && o.regression);
    assert_string_equal(o.note, "pull request #3 replaces #2");
    assert_string_equal(milestone(k), "pr_created");
    int64_t n;
    const char *url;
    assert_true(lf_forge_pr(k, &n, &url));
    assert_int_equal(n, 3);
    assert_string_equal(url, "u/3");
    /* the old PR's deliveries are stale now */
    o = fact(k, PR_OPENED(2, A));
    assert_non_null(strstr(o.stale, "was replaced by #3"));
    lf_forge_free(k);
}

static void test_own_pr_record(void **state) {
    (void)state;
    lf_forge *k = lf_forge_parse("not json");
    fact(k, "{\"kind\":\"pr\",\"action\":\"opened\",\"number\":5,\"head\":\"" A
            "\",\"own\":true}");
    assert_string_equal(milestone(k), "pr_created");
    fact(k, "{\"kind\":\"pr\",\"action\":\"closed\",\"number\":5,\"merged\":false}");
    assert_string_equal(milestone(k), "closed");
    lf_forge_free(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_stale_ci),
        cmocka_unit_test(test_push_dismisses_approvals),
        cmocka_unit_test(test_required_and_replacement),
        cmocka_unit_test(test_own_pr_record),
    };
    return cmocka_run_group_tests_name("forge facts", tests, NULL, NULL);
}
