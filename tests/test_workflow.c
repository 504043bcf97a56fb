/* test_workflow.c -- the workflow graph against LoopForge's reference
 * behaviour (conformance lines 1-3 and 15) and the structural lint.
 *
 * The default workflow is loaded from policies/ exactly as the server
 * does (tests run with cwd = repo root). Expected answers come from the
 * literal tables below, transcribed from the reference's
 * VALID_TRANSITIONS, never from the code under test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../src/core/workflow.h"
#include "../src/rules/rules.h"

#define NSTATES 10

static const char *const STATES[NSTATES] = {
    "issue_created", "task_queued",     "pr_created", "ci_pending", "ci_passed",
    "ci_failed",     "awaiting_review", "approved",   "merged",     "closed",
};

/* Allowed targets per state, in the reference's table order; NULL for
 * the terminal state. */
static const char *const ALLOWED[NSTATES][3] = {
    {"task_queued"},
    {"pr_created"},
    {"ci_pending"},
    {"ci_passed", "ci_failed"},
    {"merged", "awaiting_review"},
    {"ci_pending"},
    {"approved", "ci_pending"},
    {"merged"},
    {"closed"},
    {NULL},
};

#define ARROW "\xe2\x86\x92"

static bool allowed(int from, const char *to) {
    for (int k = 0; k < 3 && ALLOWED[from][k]; k++)
        if (strcmp(ALLOWED[from][k], to) == 0) return true;
    return false;
}

static void expected_msg(int from, const char *to, char *out, size_t n) {
    char list[128] = "";
    for (int k = 0; k < 3 && ALLOWED[from][k]; k++) {
        if (k) strcat(list, ", ");
        strcat(list, ALLOWED[from][k]);
    }
    if (!list[0]) strcpy(list, "none (terminal)");
    snprintf(out, n, "Invalid transition: %s " ARROW " %s. Allowed from %s: %s",
             STATES[from], to, STATES[from], list);
}

/* ---- fixtures ------------------------------------------------------------ */

static int load_default(void **state) {
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load("policies", &err);
    if (!r) fprintf(stderr, "loading policies/ failed:\n%s", lf_buf_str(&err));
    lf_buf_free(&err);
    *state = r;
    return r ? 0 : -1;
}

static int free_default(void **state) {
    lf_rules_free(*state);
    return 0;
}

static const lf_workflow *dflt(void **state) {
    const lf_workflow *wf = lf_rules_workflow(*state, NULL);
    assert_non_null(wf);
    return wf;
}

/* ---- the default workflow vs. the reference ------------------------------ */

static void test_default_shape(void **state) {
    const lf_workflow *wf = dflt(state);
    assert_string_equal(wf->name, "loopforge");
    assert_ptr_equal(lf_rules_workflow(*state, "loopforge"), wf);
    /* LoopForge's 10 states, then ours: escalated, reached only when CI's
     * retry budget is spent. */
    assert_int_equal(wf->nstates, NSTATES + 1);
    for (int i = 0; i < NSTATES; i++) {
        assert_string_equal(wf->states[i], STATES[i]);
        assert_int_equal(lf_workflow_state(wf, STATES[i]), i);
        /* conformance 1: only closed is terminal */
        assert_int_equal(lf_workflow_is_terminal(wf, i), i == NSTATES - 1);
    }
    assert_string_equal(wf->states[NSTATES], "escalated");
    assert_false(lf_workflow_is_terminal(wf, NSTATES));
    assert_int_equal(wf->initial, 0);
    /* LoopForge's 12 edges (DESIGN.md says 13; it lists 12) come first, then
     * escalated's two ways out and the engine's escalation edge. */
    assert_int_equal(wf->nedges, 15);
    for (int i = 0; i < wf->nedges; i++) assert_int_equal(wf->edges[i].engine, i == 14);
    assert_true(lf_workflow_engine_edge(wf, lf_workflow_state(wf, "ci_failed"), NSTATES));
    assert_int_equal(lf_workflow_state(wf, "nope"), -1);
}

/* Conformance 2, 3 and 15: all 100 pairs. */
static void test_all_pairs(void **state) {
    const lf_workflow *wf = dflt(state);
    int valid = 0;
    char want[256];
    for (int f = 0; f < NSTATES; f++) {
        for (int t = 0; t < NSTATES; t++) {
            bool ok = allowed(f, STATES[t]);
            if (lf_workflow_has_edge(wf, f, t) != ok)
                fail_msg("%s -> %s: expected %s", STATES[f], STATES[t],
                         ok ? "valid" : "invalid");
            valid += ok;
            if (ok) continue;
            lf_buf got = LF_BUF_INIT;
            lf_workflow_invalid_msg(wf, f, STATES[t], &got);
            expected_msg(f, STATES[t], want, sizeof want);
            assert_string_equal(lf_buf_str(&got), want);
            lf_buf_free(&got);
        }
    }
    assert_int_equal(valid, 12);
}

static void test_edge_order(void **state) {
    const lf_workflow *wf = dflt(state);
    static const char *const order[12][2] = {
        {"issue_created", "task_queued"}, {"task_queued", "pr_created"},
        {"pr_created", "ci_pending"},     {"ci_pending", "ci_passed"},
        {"ci_pending", "ci_failed"},      {"ci_passed", "merged"},
        {"ci_passed", "awaiting_review"}, {"ci_failed", "ci_pending"},
        {"awaiting_review", "approved"},  {"awaiting_review", "ci_pending"},
        {"approved", "merged"},           {"merged", "closed"},
    };
    for (int i = 0; i < 12; i++) {
        assert_string_equal(wf->states[wf->edges[i].from], order[i][0]);
        assert_string_equal(wf->states[wf->edges[i].to], order[i][1]);
    }
}

static void test_conformance_examples(void **state) {
    const lf_workflow *wf = dflt(state);
    struct {
        const char *from, *to, *msg;
    } ex[] = {
        {"issue_created", "merged",
         "Invalid transition: issue_created \xe2\x86\x92 merged. "
         "Allowed from issue_created: task_queued"},
        {"ci_passed", "issue_created",
         "Invalid transition: ci_passed \xe2\x86\x92 issue_created. "
         "Allowed from ci_passed: merged, awaiting_review"},
        {"closed", "issue_created",
         "Invalid transition: closed \xe2\x86\x92 issue_created. "
         "Allowed from closed: none (terminal)"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        lf_buf got = LF_BUF_INIT;
        lf_workflow_invalid_msg(wf, lf_workflow_state(wf, ex[i].from), ex[i].to, &got);
        assert_string_equal(lf_buf_str(&got), ex[i].msg);
        lf_buf_free(&got);
    }
}

/* Conformance 3's named invalid examples and 2's self-loop. */
static void test_named_invalid(void **state) {
    const lf_workflow *wf = dflt(state);
    const char *bad[][2] = {
        {"issue_created", "merged"},  {"closed", "issue_created"},
        {"ci_failed", "ci_passed"},   {"approved", "ci_pending"},
        {"ci_pending", "ci_pending"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(lf_workflow_has_edge(wf, lf_workflow_state(wf, bad[i][0]),
                                          lf_workflow_state(wf, bad[i][1])));
    /* nothing enters issue_created */
    for (int f = 0; f < NSTATES; f++) assert_false(lf_workflow_has_edge(wf, f, 0));
}

/* The target may be a name this workflow does not have (a typo in a
 * request): the message still names it. */
static void test_invalid_msg_unknown_target(void **state) {
    const lf_workflow *wf = dflt(state);
    lf_buf got = LF_BUF_INIT;
    lf_workflow_invalid_msg(wf, 3, "deployed", &got);
    assert_string_equal(lf_buf_str(&got),
                        "Invalid transition: ci_pending " ARROW " deployed. "
                        "Allowed from ci_pending: ci_passed, ci_failed");
    lf_buf_free(&got);
}

static void test_default_passes_lint(void **state) {
    lf_buf p = LF_BUF_INIT;
    assert_int_equal(lf_workflow_check(dflt(state), &p), 0);
    assert_string_equal(lf_buf_str(&p), "");
    lf_buf_free(&p);
}

/* ---- graph construction API ---------------------------------------------- */

static void test_add_state_and_edge(void **state) {
    (void)state;
    lf_workflow *wf = lf_workflow_new("t");
    assert_int_equal(wf->initial, -1);
    assert_int_equal(lf_workflow_add_state(wf, "a"), 0);
    assert_int_equal(lf_workflow_add_state(wf, "b"), 1);
    assert_int_equal(lf_workflow_add_state(wf, "a"), -1);    /* duplicate */
    assert_int_equal(lf_workflow_add_state(wf, ""), -1);     /* empty */
    assert_int_equal(wf->nstates, 2);
    assert_int_equal(lf_workflow_add_edge(wf, 0, 1), 0);
    assert_int_equal(lf_workflow_add_edge(wf, 0, 1), -1);    /* exists */
    assert_int_equal(lf_workflow_add_edge(wf, 0, 2), -1);    /* out of range */
    assert_int_equal(lf_workflow_add_edge(wf, -1, 0), -1);
    assert_true(lf_workflow_has_edge(wf, 0, 1));
    assert_false(lf_workflow_has_edge(wf, 1, 0));
    assert_false(lf_workflow_is_terminal(wf, 1));
    assert_false(lf_workflow_is_terminal(wf, 7));            /* out of range */
    wf->terminal[1] = true;
    assert_true(lf_workflow_is_terminal(wf, 1));
    lf_workflow_free(wf);
    lf_workflow_free(NULL);
}

/* States found by name among names that share their first bytes: one
 * that ends at 8, each a prefix of the next, bytes past 0x7f. */
static void test_state_lookup_by_name(void **state) {
    (void)state;
    static const char *const names[] = {"ci_pending", "ci_passed", "ci_pend", "ci_pendi",
                                        "ci_pendin", "ci_pending_long", "\xc3\xa9tat",
                                        "x"};
    const int n = (int)(sizeof names / sizeof *names);
    lf_workflow *wf = lf_workflow_new("t");
    for (int i = 0; i < n; i++) assert_int_equal(lf_workflow_add_state(wf, names[i]), i);
    for (int i = 0; i < n; i++) {
        assert_int_equal(lf_workflow_state(wf, names[i]), i);
        assert_int_equal(lf_workflow_add_state(wf, names[i]), -1);   /* duplicate */
    }
    static const char *const absent[] = {"ci_pendingx", "ci_pending_lon", "ci_pen",
                                         "ci_pass", "ci_passedd", "\xc3\xa9ta", "y", ""};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
        assert_int_equal(lf_workflow_state(wf, absent[i]), -1);
    assert_int_equal(lf_workflow_state(wf, NULL), -1);
    lf_workflow_free(wf);
}

/* ---- lf_workflow_check ---------------------------------------------------- */

/* a -> b -> c, a initial, c terminal: clean. Tests break it one way each. */
static lf_workflow *chain(void) {
    lf_workflow *wf = lf_workflow_new("chain");
    lf_workflow_add_state(wf, "a");
    lf_workflow_add_state(wf, "b");
    lf_workflow_add_state(wf, "c");
    wf->initial = 0;
    wf->terminal[2] = true;
    lf_workflow_add_edge(wf, 0, 1);
    lf_workflow_add_edge(wf, 1, 2);
    return wf;
}

static void assert_lint(lf_workflow *wf, int n, const char *text) {
    lf_buf p = LF_BUF_INIT;
    assert_int_equal(lf_workflow_check(wf, &p), n);
    assert_string_equal(lf_buf_str(&p), text);
    lf_buf_free(&p);
    lf_workflow_free(wf);
}

static void test_check_clean(void **state) {
    (void)state;
    assert_lint(chain(), 0, "");
}

static void test_check_no_initial(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    wf->initial = -1;
    assert_lint(wf, 1, "no initial state\n");
}

static void test_check_no_states(void **state) {
    (void)state;
    assert_lint(lf_workflow_new("empty"), 2, "no states\nno initial state\n");
}

static void test_check_self_loop(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    lf_workflow_add_edge(wf, 1, 1);
    assert_lint(wf, 1, "self-loop on state 'b'\n");
}

static void test_check_edge_into_initial(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    lf_workflow_add_edge(wf, 1, 0);
    assert_lint(wf, 1, "edge b -> a leads into the initial state\n");
}

static void test_check_edge_out_of_terminal(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    lf_workflow_add_edge(wf, 2, 1);
    assert_lint(wf, 1, "edge c -> b leaves terminal state 'c'\n");
}

static void test_check_unreachable(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    lf_workflow_add_state(wf, "d");
    lf_workflow_add_edge(wf, 3, 2);      /* d has a way out but no way in */
    assert_lint(wf, 1, "state 'd' is unreachable from initial state 'a'\n");
}

static void test_check_dead_end(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    wf->terminal[2] = false;
    assert_lint(wf, 1, "state 'c' has no outgoing edge and is not terminal\n");
}

static void test_check_reports_all(void **state) {
    (void)state;
    lf_workflow *wf = chain();
    lf_workflow_add_state(wf, "d");      /* unreachable and a dead end */
    lf_workflow_add_edge(wf, 1, 1);      /* self-loop */
    lf_workflow_add_edge(wf, 2, 0);      /* leaves terminal, enters initial */
    assert_lint(wf, 5,
                "self-loop on state 'b'\n"
                "edge c -> a leads into the initial state\n"
                "edge c -> a leaves terminal state 'c'\n"
                "state 'd' is unreachable from initial state 'a'\n"
                "state 'd' has no outgoing edge and is not terminal\n");
}

/* A cycle is fine as long as everything is reachable. */
static void test_check_cycle_ok(void **state) {
    (void)state;
    lf_workflow *wf = lf_workflow_new("cycle");
    lf_workflow_add_state(wf, "start");
    lf_workflow_add_state(wf, "x");
    lf_workflow_add_state(wf, "y");
    wf->initial = 0;
    lf_workflow_add_edge(wf, 0, 1);
    lf_workflow_add_edge(wf, 1, 2);
    lf_workflow_add_edge(wf, 2, 1);
    assert_lint(wf, 0, "");
}

/* ---- renderings ----------------------------------------------------------- */

static void test_dot(void **state) {
    const lf_workflow *wf = dflt(state);
    lf_buf out = LF_BUF_INIT;
    lf_workflow_dot(wf, &out);
    const char *s = lf_buf_str(&out);
    assert_non_null(strstr(s, "digraph \"loopforge\" {"));
    char line[128];
    for (int i = 0; i < wf->nedges; i++) {
        const char *f = wf->states[wf->edges[i].from], *t = wf->states[wf->edges[i].to];
        snprintf(line, sizeof line, "\"%s\" -> \"%s\" [id=\"edge-%s-%s\"%s\n", f, t, f, t,
                 wf->edges[i].engine ? ", style=dashed];" : "];");
        if (!strstr(s, line)) fail_msg("dot lacks %s", line);
    }
    assert_non_null(strstr(s, "\"closed\" [id=\"state-closed\", shape=doublecircle];"));
    assert_non_null(strstr(s, "-> \"issue_created\";"));        /* start arrow */
    assert_non_null(strstr(s, "[shape=point"));
    assert_null(strstr(s, "\"merged\" [shape=doublecircle]"));
    assert_int_equal(s[out.len - 2], '}');
    lf_buf_free(&out);
}

static void test_mermaid(void **state) {
    const lf_workflow *wf = dflt(state);
    lf_buf out = LF_BUF_INIT;
    lf_workflow_mermaid(wf, &out);
    const char *s = lf_buf_str(&out);
    assert_int_equal(strncmp(s, "stateDiagram-v2\n", 16), 0);
    char line[128];
    for (int i = 0; i < wf->nedges; i++) {
        snprintf(line, sizeof line, "    %s --> %s%s\n", wf->states[wf->edges[i].from],
                 wf->states[wf->edges[i].to], wf->edges[i].engine ? " : engine" : "");
        if (!strstr(s, line)) fail_msg("mermaid lacks %s", line);
    }
    assert_non_null(strstr(s, "[*] --> issue_created\n"));
    assert_non_null(strstr(s, "closed --> [*]\n"));
    assert_non_null(strstr(s, "classDef terminal"));
    assert_non_null(strstr(s, "class closed terminal\n"));
    assert_null(strstr(s, "merged --> [*]"));
    lf_buf_free(&out);
}

/* Names that are not identifiers must not break either syntax. */
static void test_render_odd_names(void **state) {
    (void)state;
    lf_workflow *wf = lf_workflow_new("odd \"wf\"");
    lf_workflow_add_state(wf, "__start");          /* collides with dot's start */
    lf_workflow_add_state(wf, "in \"review\"");
    lf_workflow_add_state(wf, "lf__1");            /* looks like a mermaid alias */
    wf->initial = 0;
    wf->terminal[2] = true;
    lf_workflow_add_edge(wf, 0, 1);
    lf_workflow_add_edge(wf, 1, 2);

    lf_buf out = LF_BUF_INIT;
    lf_workflow_dot(wf, &out);
    const char *s = lf_buf_str(&out);
    assert_non_null(strstr(s, "digraph \"odd \\\"wf\\\"\" {"));
    assert_non_null(strstr(s, "\"__start_\" -> \"__start\";"));
    assert_non_null(strstr(s, "\"__start\" -> \"in \\\"review\\\"\" [id=\"edge-__start-in \\\"review\\\"\"];"));
    assert_non_null(strstr(s, "\"lf__1\" [id=\"state-lf__1\", shape=doublecircle];"));

    lf_buf_reset(&out);
    lf_workflow_mermaid(wf, &out);
    s = lf_buf_str(&out);
    assert_non_null(strstr(s, "state \"in #quot;review#quot;\" as lf__1\n"));
    assert_non_null(strstr(s, "state \"lf__1\" as lf__2\n"));
    assert_non_null(strstr(s, "[*] --> __start\n"));
    assert_non_null(strstr(s, "__start --> lf__1\n"));
    assert_non_null(strstr(s, "lf__1 --> lf__2\n"));
    assert_non_null(strstr(s, "lf__2 --> [*]\n"));
    assert_non_null(strstr(s, "class lf__2 terminal\n"));
    lf_buf_free(&out);
    lf_workflow_free(wf);
}

/* Ranks: how far along each state is, the edges back (ci_failed ->
 * ci_pending, awaiting_review -> ci_pending) set aside. Written out by
 * hand from the workflow's table. */
static void test_ranks(void **state) {
    const lf_workflow *wf = dflt(state);
    static const int want[NSTATES] = {0, 1, 2, 3, 4, 4, 5, 6, 7, 8};
    int ranks[NSTATES + 1];
    lf_workflow_ranks(wf, ranks);
    for (int i = 0; i < NSTATES; i++) {
        int s = lf_workflow_state(wf, STATES[i]);
        if (ranks[s] != want[i])
            fail_msg("rank of %s: want %d, got %d", STATES[i], want[i], ranks[s]);
    }
}

static void expect_path(const lf_workflow *wf, const char *from, const char *to,
                        const char *want) {
    int path[NSTATES + 1];
    char got[256] = "";
    int n = lf_workflow_path(wf, lf_workflow_state(wf, from), lf_workflow_state(wf, to),
                             path);
    for (int i = 0; i < n; i++) {
        if (i) strcat(got, " ");
        strcat(got, wf->states[path[i]]);
    }
    assert_string_equal(got, want);
}

static void test_paths(void **state) {
    const lf_workflow *wf = dflt(state);
    expect_path(wf, "issue_created", "pr_created",
                "issue_created task_queued pr_created");
    expect_path(wf, "pr_created", "ci_passed", "pr_created ci_pending ci_passed");
    expect_path(wf, "ci_failed", "ci_passed", "ci_failed ci_pending ci_passed");
    /* edge order breaks ties: via approved is as short as via ci_pending */
    expect_path(wf, "awaiting_review", "merged", "awaiting_review approved merged");
    expect_path(wf, "approved", "ci_pending", "");   /* no way back */
    expect_path(wf, "closed", "merged", "");          /* terminal */
    expect_path(wf, "merged", "merged", "");
}

int main(void) {
    const struct CMUnitTest with_default[] = {
        cmocka_unit_test(test_default_shape),
        cmocka_unit_test(test_all_pairs),
        cmocka_unit_test(test_edge_order),
        cmocka_unit_test(test_conformance_examples),
        cmocka_unit_test(test_named_invalid),
        cmocka_unit_test(test_invalid_msg_unknown_target),
        cmocka_unit_test(test_default_passes_lint),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_mermaid),
        cmocka_unit_test(test_ranks),
        cmocka_unit_test(test_paths),
    };
    const struct CMUnitTest standalone[] = {
        cmocka_unit_test(test_add_state_and_edge),
        cmocka_unit_test(test_state_lookup_by_name),
        cmocka_unit_test(test_check_clean),
        cmocka_unit_test(test_check_no_initial),
        cmocka_unit_test(test_check_no_states),
        cmocka_unit_test(test_check_self_loop),
        cmocka_unit_test(test_check_edge_into_initial),
        cmocka_unit_test(test_check_edge_out_of_terminal),
        cmocka_unit_test(test_check_unreachable),
        cmocka_unit_test(test_check_dead_end),
        cmocka_unit_test(test_check_reports_all),
        cmocka_unit_test(test_check_cycle_ok),
        cmocka_unit_test(test_render_odd_names),
    };
    int failed = cmocka_run_group_tests_name("workflow (default)", with_default,
                                             load_default, free_default);
    failed += cmocka_run_group_tests_name("workflow (graph)", standalone, NULL, NULL);
    return failed;
}
