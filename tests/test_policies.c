/* test_policies.c -- guards, hooks and config.lua: the DSL and its lint
 * messages, `on` filters, verdicts and annotations, fail-closed guards
 * (errors, budgets, memory), the read-only record view, require, config
 * overrides, hooks and follow-ups, and every shipped policy's allow and
 * deny cases.
 *
 * Each test builds its own policy directory under /tmp (mkdtemp) with a
 * copy of the shipped loopforge workflow, and removes it afterwards.
 * Records are built from JSON through lf_record_from_json. */
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
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../src/rules/rules.h"
#include "policy_dir.h"

/* ---- the shipped set in a temp directory (helpers: policy_dir.h) ---------- */

static const char *const SHIPPED[] = {"guards/agent-prs-need-human-approval.lua",
                                      "guards/blocking-labels.lua",
                                      "guards/high-risk-merge-needs-approval.lua",
                                      "guards/merge-freeze.lua",
                                      "guards/no-self-approval.lua",
                                      "guards/review-unless-auto-merge.lua",
                                      "hooks/route-to-review.lua"};
#define NSHIPPED (sizeof SHIPPED / sizeof *SHIPPED)

/* The shipped guards and hooks, with `config` as config.lua. */
static void copy_shipped(tdir *d, const char *config) {
    for (size_t i = 0; i < NSHIPPED; i++) copy_in(d, SHIPPED[i]);
    put(d, "config.lua", config);
}

static lf_rules *load_opts(const char *dir, const lf_rules_limits *lim,
                           const char *lua_dir) {
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load_opts(dir, lim, lua_dir, &err);
    char got[8192];
    snprintf(got, sizeof got, "%s", lf_buf_str(&err));
    lf_buf_free(&err);
    if (!r) fail_msg("load failed:\n%s", got);
    assert_string_equal(got, "");
    return r;
}

static lf_rules *load_ok(tdir *d) { return load_opts(d->root, NULL, NULL); }

/* ---- records ------------------------------------------------------------------- */

#define TS "2026-05-01T10:00:00.000000Z"

/* hist: "state@actor" entries separated by ';', each optionally followed
 * by its metadata as JSON ("approved@bob{\"k\":1}"); the first is the
 * creation entry. The record is in the last entry's state. */
static lf_record *mkrec(const char *hist, bool auto_merge, const char *labels,
                        const char *meta) {
    lf_buf b = LF_BUF_INIT;
    char prev[512] = "", state[512] = "";
    lf_buf_puts(
        &b, "{\"record_id\":\"loop-0123456789abcdef\",\"ref\":\"acme/app#7\","
            "\"ref_number\":7,\"repo\":\"acme/app\",\"pr_url\":null,\"pr_number\":null,"
            "\"state\":\"@STATE@\",\"auto_merge\":");
    lf_buf_puts(&b, auto_merge ? "true" : "false");
    lf_buf_puts(&b, ",\"ci_status\":{\"lint\":\"ok\"},\"transitions\":[");
    const char *p = hist;
    for (int i = 0; *p; i++) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[512];
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        char *m = strchr(item, '{'), *at = strchr(item, '@');
        const char *md = "{}";
        if (m) {
            md = strdup(m);
            *m = '\0';
        }
        assert_non_null(at);
        *at = '\0';
        snprintf(state, sizeof state, "%s", item);
        lf_buf_printf(&b, "%s{\"from_state\":", i ? "," : "");
        if (i) lf_buf_json_str(&b, prev);
        else lf_buf_puts(&b, "null");
        lf_buf_printf(&b,
                      ",\"to_state\":\"%s\",\"trigger\":\"%s\",\"timestamp\":\"" TS "\","
                      "\"metadata\":%s,\"actor\":\"%s\"}",
                      state, i ? "t" : "created", md, at + 1);
        if (m) free((char *)md);
        snprintf(prev, sizeof prev, "%s", state);
        p += len + (end != NULL);
    }
    lf_buf_printf(&b,
                  "],\"labels\":%s,\"created_at\":\"" TS "\",\"updated_at\":\"" TS "\","
                  "\"closed_at\":null,\"workflow\":\"loopforge\",\"version\":3,"
                  "\"metadata\":%s}",
                  labels ? labels : "{}", meta ? meta : "{}");
    /* fill in the state */
    char *json = lf_buf_steal(&b), *at = strstr(json, "@STATE@");
    lf_buf_add(&b, json, (size_t)(at - json));
    lf_buf_puts(&b, state);
    lf_buf_puts(&b, at + 7);
    free(json);
    char err[128];
    lf_record *r = lf_record_from_json(b.p, b.len, err, sizeof err);
    if (!r) fail_msg("bad record: %s\n%s", err, b.p);
    lf_buf_free(&b);
    return r;
}

#define HAPPY "issue_created@alice;task_queued@bot;pr_created@alice;ci_pending@ci"

static int64_t at_us(const char *iso) {
    struct tm tm = {0};
    assert_non_null(strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm));
    return (int64_t)timegm(&tm) * 1000000;
}

static int64_t NOW;     /* 2026-06-01T00:00:00Z */

/* Evaluates rec.state -> to and returns the decisions as JSON (caller
 * frees); *v keeps the verdict when non-NULL. */
static char *evaluate(lf_rules *r, const lf_record *rec, const char *to,
                      const char *trigger, const char *actor, const char *meta,
                      lf_verdict *keep) {
    lf_eval in = {
        .record = rec, .from = rec->state, .to = to, .trigger = trigger, .actor = actor,
        .metadata = meta, .now_us = NOW};
    lf_verdict v;
    lf_rules_evaluate(r, &in, &v);
    lf_buf b = LF_BUF_INIT;
    lf_verdict_json(&v, &b);
    if (keep) *keep = v;
    else lf_verdict_free(&v);
    return b.p ? lf_buf_steal(&b) : strdup("[]");
}

static void expect_eval(lf_rules *r, const lf_record *rec, const char *to,
                        const char *actor, const char *meta, const char *want) {
    char *got = evaluate(r, rec, to, "t", actor, meta, NULL);
    assert_string_equal(got, want);
    free(got);
}

/* ---- the shipped set --------------------------------------------------------------- */

static void test_shipped_set(void **state) {
    (void)state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    assert_int_equal(lf_rules_nfiles(r), 12); /* and routes/, the workflows */
    assert_string_equal(lf_rules_file_at(r, 0), "policies/config.lua");
    for (size_t i = 0; i < NSHIPPED; i++) {
        char p[128];
        snprintf(p, sizeof p, "policies/%s", SHIPPED[i]);
        assert_string_equal(lf_rules_file_at(r, (int)i + 1), p);
    }
    assert_string_equal(lf_rules_file_at(r, 9), "policies/workflows/factory.lua");
    assert_string_equal(lf_rules_file_at(r, 10), "policies/workflows/loopforge.lua");

    static const char *const guards[][2] = {
        {"agent-prs-need-human-approval", "to=merged workflow=loopforge"},
        {"blocking-labels", "to=merged workflow=loopforge"},
        {"high-risk-merge-needs-approval", "to=merged workflow=loopforge"},
        {"merge-freeze", "to=merged workflow=loopforge"},
        {"no-self-approval", "to=approved workflow=loopforge"},
        {"review-unless-auto-merge", "from=ci_passed to=merged workflow=loopforge"}};
    assert_int_equal(lf_rules_count(r, LF_RULE_GUARD), 6);
    for (int i = 0; i < 6; i++) {
        lf_rule_info in;
        lf_rules_info(r, LF_RULE_GUARD, i, &in);
        assert_int_equal(in.kind, LF_RULE_GUARD);
        assert_string_equal(in.name, guards[i][0]);
        assert_string_equal(in.on, guards[i][1]);
        assert_non_null(in.description);
        assert_true(in.enabled);
        assert_true(in.line > 0);
    }
    assert_int_equal(lf_rules_count(r, LF_RULE_HOOK), 1);
    lf_rule_info in;
    lf_rules_info(r, LF_RULE_HOOK, 0, &in);
    assert_string_equal(in.name, "route-to-review");
    assert_string_equal(in.file, "policies/hooks/route-to-review.lua");
    /* The shipped rules apply to the loopforge workflow only. */
    assert_string_equal(in.on, "to=ci_passed workflow=loopforge");
    lf_rules_info(r, LF_RULE_HOOK, 1, &in);
    assert_null(in.name);
    lf_rules_free(r);
}

/* Every file under config.lua, guards/, hooks/, lib/, workflows/ counts,
 * in path order; anything else in the directory does not. */
static void test_generation(void **state) {
    tdir *d = *state;
    const char *g =
        "return policy { name = 'g', check = function() return allow() end }\n";
    const char *h = "return hook { name = 'h', run = function() end }\n";
    const char *l = "return {}\n";
    const char *c = "return {}\n";
    put(d, "guards/g.lua", g);
    put(d, "hooks/h.lua", h);
    put(d, "lib/l.lua", l);
    put(d, "config.lua", c);
    put(d, "notes/other.lua", "this is not part of the set");
    char path[256], *wf;
    snprintf(path, sizeof path, "%s/workflows/loopforge.lua", d->root);
    wf = slurp(path, NULL);
    lf_buf all = LF_BUF_INIT;
    lf_buf_puts(&all, c);
    lf_buf_puts(&all, g);
    lf_buf_puts(&all, h);
    lf_buf_puts(&all, l);
    lf_buf_puts(&all, wf);
    free(wf);
    unsigned char md[32];
    unsigned int n = 0;
    assert_true(EVP_Digest(all.p, all.len, md, &n, EVP_sha256(), NULL));
    char want[65];
    for (unsigned i = 0; i < n; i++) sprintf(want + 2 * i, "%02x", md[i]);
    lf_buf_free(&all);
    lf_rules *r = load_ok(d);
    assert_string_equal(lf_rules_generation(r), want);
    assert_int_equal(lf_rules_nfiles(r), 5);
    snprintf(path, sizeof path, "%s/lib/l.lua", d->root);
    assert_string_equal(lf_rules_file_at(r, 3), path);
    lf_rules_free(r);
}

/* ---- DSL lint ------------------------------------------------------------------------ */

static void test_lint_rules(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "-- no name\nreturn policy {\n  description = 'x',\n"
        "  check = function() return allow() end,\n}\n");
    put(d, "guards/b.lua", "return policy { name = 'b', chek = function() end }\n");
    put(d, "guards/c.lua",
        "return policy {\n  name = 'c', check = 'allow',\n"
        "  on = { too = 'merged', to = 5, trigger = 'ci*x' },\n}\n");
    put(d, "guards/d.lua", "return 42\n");
    put(d, "guards/e.lua",
        "return {\n  policy { name = 'e1', check = function() end },\n"
        "  hook { name = 'e2', run = function() end },\n}\n");
    put(d, "guards/f.lua",
        "return policy { name = 'bad name!', check = function() end }\n");
    put(d, "guards/i.lua",
        "\nreturn policy { name = 'i', check = function() end,\n"
        "  defaults = 3, description = {} }\n");
    put(d, "guards/j.lua",
        "return policy { name = 'j', check = function() end,\n"
        "  on = 'merged', defaults = { enabled = true } }\n");
    put(d, "hooks/g.lua", "return hook { name = 'g' }\n");
    put(d, "hooks/h.lua", "return policy { name = 'h', check = function() end }\n");
    put(d, "lib/broken.lua", "local x =\n");
    expect_errors(
        d,
        "%s/lib/broken.lua:2: unexpected symbol near <eof>\n"
        "%s/guards/a.lua:2: policy has no name\n"
        "%s/guards/b.lua:1: unknown field 'chek'\n"
        "%s/guards/b.lua:1: policy 'b' has no check function\n"
        "%s/guards/c.lua:1: on: unknown filter 'too' (expected from, to, trigger or workflow)\n"
        "%s/guards/c.lua:1: on.to must be a name or a non-empty list of names\n"
        "%s/guards/c.lua:1: on.trigger: '*' may only end a trigger pattern ('ci*x')\n"
        "%s/guards/c.lua:1: check must be a function\n"
        "%s/guards/d.lua:1: file does not return a policy "
        "(expected `return policy { ... }` or a list of them)\n"
        "%s/guards/e.lua:4: item 2 of the returned list is not a policy\n"
        "%s/guards/f.lua:1: policy name 'bad name!' may only use letters, digits, "
        "'-', '_' and '.'\n"
        "%s/guards/i.lua:2: description must be a string\n"
        "%s/guards/i.lua:2: defaults must be a table\n"
        "%s/guards/j.lua:1: on must be a table (of from, to, trigger, workflow)\n"
        "%s/guards/j.lua:1: defaults: 'enabled' is reserved (config.lua turns a policy off)\n"
        "%s/hooks/g.lua:1: hook 'g' has no run function\n"
        "%s/hooks/h.lua:1: file does not return a hook "
        "(expected `return hook { ... }` or a list of them)\n");
}

#define OK_CHECK "check = function() return allow() end"

static void test_lint_duplicates(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua", "return policy { name = 'x', " OK_CHECK " }\n");
    put(d, "guards/b.lua",
        "return {\n  policy { name = 'y', " OK_CHECK " },\n"
        "  policy { name = 'y', " OK_CHECK " },\n}\n");
    put(d, "hooks/c.lua", "\nreturn hook { name = 'x', run = function() end }\n");
    expect_errors(
        d,
        "%s/guards/b.lua:3: duplicate policy name 'y' (first defined at %s/guards/b.lua:2)\n"
        "%s/hooks/c.lua:2: duplicate hook name 'x' (first defined at %s/guards/a.lua:1)\n");
}

/* Filters naming states or workflows that do not exist never match:
 * almost certainly a typo. */
static void test_lint_filter_names(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'a', " OK_CHECK ",\n"
        "  on = { from = 'ci_pased', to = { 'merged', 'mergd' } } }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'b', " OK_CHECK ",\n"
        "  on = { workflow = 'nope' } }\n");
    put(d, "hooks/c.lua",
        "return hook { name = 'c', run = function() end,\n"
        "  on = { workflow = 'loopforge', to = 'closd' } }\n");
    expect_errors(d, "%s/guards/a.lua:1: on.from: unknown state 'ci_pased'\n"
                     "%s/guards/a.lua:1: on.to: unknown state 'mergd'\n"
                     "%s/guards/b.lua:1: on.workflow: unknown workflow 'nope'\n"
                     "%s/hooks/c.lua:1: on.to: unknown state 'closd'\n");
}

static void test_lint_config(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua", "return policy { name = 'a', " OK_CHECK " }\n");
    put(d, "guards/b.lua", "return policy { name = 'b', " OK_CHECK " }\n");
    put(d, "guards/c.lua",
        "return policy { name = 'c', " OK_CHECK ", defaults = { limit = 10 } }\n");
    put(d, "config.lua",
        "return {\n"
        "  [\"a\"] = { enabled = 'no' },   -- a comment naming c\n"
        "  nope = {},\n"
        "  b = 5,\n"
        "  c = {\n"
        "    limit = 'ten',\n"
        "    limt = 3,\n"
        "  },\n"
        "}\n");
    expect_errors(d, "%s/config.lua:2: config for 'a': enabled must be true or false\n"
                     "%s/config.lua:3: config for unknown policy, hook or route 'nope'\n"
                     "%s/config.lua:4: config for 'b' must be a table of settings\n"
                     "%s/config.lua:6: config for 'c': setting 'limit' must be a number "
                     "(like its default), not a string\n"
                     "%s/config.lua:7: config for 'c': unknown setting 'limt'\n");
    put(d, "config.lua", "-- nothing\nreturn 5\n");
    expect_errors(d, "%s/config.lua:2: config.lua must return a table of settings keyed "
                     "by policy, hook or route name\n");
}

/* validate(cfg) refuses settings at load, pointing at where they came
 * from: config.lua if it names the policy, else the policy's defaults. */
static void test_lint_validate(void **state) {
    tdir *d = *state;
    put(d, "guards/v.lua",
        "return policy { name = 'v', " OK_CHECK ", defaults = { n = 1 },\n"
        "  validate = function(cfg) if cfg.n > 3 then return false, "
        "'n must be at most 3' end end }\n");
    put(d, "guards/w.lua",
        "\nreturn policy { name = 'w', " OK_CHECK ",\n"
        "  validate = function(cfg) error('oops', 0) end }\n");
    put(d, "guards/x.lua",
        "return policy { name = 'x', " OK_CHECK ",\n"
        "  validate = function(cfg) error('never run: disabled') end }\n");
    put(d, "config.lua", "return {\n  x = { enabled = false },\n\n  v = { n = 5 },\n}\n");
    expect_errors(d, "%s/config.lua:4: config for 'v': n must be at most 3\n"
                     "%s/guards/w.lua:2: defaults of 'w': oops\n");
    put(d, "guards/w.lua", "return policy { name = 'w', " OK_CHECK " }\n");
    put(d, "config.lua", "return { v = { n = 2 }, x = { enabled = false } }\n");
    lf_rules_free(load_ok(d));
}

/* ---- filters --------------------------------------------------------------------------- */

static void test_filters(void **state) {
    tdir *d = *state;
    put(d, "guards/g1.lua",
        "return policy { name = 'g1', on = { to = 'merged' }, " OK_CHECK " }\n");
    put(d, "guards/g2.lua",
        "return policy { name = 'g2', on = { from = { 'approved', "
        "'ci_passed' } }, " OK_CHECK " }\n");
    put(d, "guards/g3.lua",
        "return policy { name = 'g3', on = { trigger = 'ci.*' }, " OK_CHECK " }\n");
    put(d, "guards/g4.lua",
        "return policy { name = 'g4', on = { trigger = { 'pr.merged', "
        "'x.*' } }, " OK_CHECK " }\n");
    put(d, "guards/g5.lua",
        "return policy { name = 'g5', on = { workflow = 'loopforge', "
        "to = 'closed' }, " OK_CHECK " }\n");
    put(d, "guards/g6.lua", "return policy { name = 'g6', " OK_CHECK " }\n");
    lf_rules *r = load_ok(d);
    static const struct {
        const char *hist, *to, *trigger, *want;
    } cases[] = {
        {HAPPY ";ci_passed@ci;awaiting_review@bot;approved@bob", "merged", "pr.merged",
         "g1 g2 g4 g6"},
        {HAPPY, "ci_failed", "ci.failed", "g3 g6"},
        {HAPPY ";ci_passed@ci", "awaiting_review", "ci", "g2 g6"},
        {HAPPY ";ci_passed@ci;merged@bot", "closed", "x.closed", "g4 g5 g6"},
        {HAPPY ";ci_passed@ci;merged@bot", "closed", "x", "g5 g6"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lf_record *rec = mkrec(cases[i].hist, false, NULL, NULL);
        lf_verdict v;
        free(evaluate(r, rec, cases[i].to, cases[i].trigger, "a", NULL, &v));
        char got[128] = "";
        for (size_t k = 0; k < v.ndecisions; k++) {
            strcat(got, k ? " " : "");
            strcat(got, v.decisions[k].policy);
            assert_true(v.decisions[k].allow);
        }
        assert_string_equal(got, cases[i].want);
        assert_true(v.allow);
        lf_verdict_free(&v);
        lf_record_free(rec);
    }
    lf_rules_free(r);
}

/* No guard matches: no decisions, no Lua, allowed. */
static void test_no_guard_matches(void **state) {
    tdir *d = *state;
    put(d, "guards/g.lua",
        "return policy { name = 'g', on = { to = 'merged' },\n"
        "  check = function() return deny('no') end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    lf_verdict v;
    free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
    assert_true(v.allow);
    assert_int_equal(v.ndecisions, 0);
    assert_int_equal(v.denied_by, -1);
    assert_null(v.annotations);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- verdicts and annotations ---------------------------------------------------------- */

static void test_verdicts_and_annotations(void **state) {
    tdir *d = *state;
    put(d, "guards/p1.lua",
        "return policy { name = 'p1', check = function()\n"
        "  return allow({ a = 1, shared = 'first', nested = { x = true, list = { 1, 2.5 } } })\n"
        "end }\n");
    put(d, "guards/p2.lua",
        "return policy { name = 'p2', check = function()\n"
        "  return allow { shared = 'second', b = 'two' } end }\n");
    put(d, "guards/p3.lua",
        "return policy { name = 'p3', check = function()\n"
        "  return deny('nope', { why = 'because' }) end }\n");
    put(d, "guards/p4.lua",
        "return policy { name = 'p4', check = function() return allow() end }\n");
    put(d, "guards/p5.lua",
        "return policy { name = 'p5', check = function() return deny('again') end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    lf_verdict v;
    char *json = evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v);
    assert_string_equal(json,
                        "[{\"policy\":\"p1\",\"verdict\":\"allow\",\"reason\":null},"
                        "{\"policy\":\"p2\",\"verdict\":\"allow\",\"reason\":null},"
                        "{\"policy\":\"p3\",\"verdict\":\"deny\",\"reason\":\"nope\"},"
                        "{\"policy\":\"p4\",\"verdict\":\"allow\",\"reason\":null},"
                        "{\"policy\":\"p5\",\"verdict\":\"deny\",\"reason\":\"again\"}]");
    assert_false(v.allow);
    assert_int_equal(v.denied_by, 2);
    assert_int_equal(v.ndecisions, 5);
    assert_string_equal(
        v.annotations,
        "{\"a\":1,\"nested\":{\"list\":[1,2.5],\"x\":true},\"shared\":\"second\","
        "\"b\":\"two\",\"why\":\"because\"}");
    free(json);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* Annotations must be JSON-shaped; anything else denies. */
static void test_bad_annotations(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'fn', check = function() return allow({ f = print }) end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'list', check = function() return allow({ 1, 2 }) end }\n");
    put(d, "guards/c.lua",
        "return policy { name = 'mixed', check = function() return allow({ 1, k = 2 }) end }\n");
    put(d, "guards/d.lua",
        "return policy { name = 'cycle', check = function()\n"
        "  local t = {} t.t = t return allow({ t = t }) end }\n");
    put(d, "guards/e.lua",
        "return policy { name = 'num', check = function() return allow(42) end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    char want[2048];
    expand(
        d,
        "[{\"policy\":\"fn\",\"verdict\":\"deny\",\"reason\":\"guard fn: annotations.f: cannot encode a function as JSON\"},"
        "{\"policy\":\"list\",\"verdict\":\"deny\",\"reason\":\"guard list: annotations: must be a table of names to values, not a list\"},"
        "{\"policy\":\"mixed\",\"verdict\":\"deny\",\"reason\":\"guard mixed: annotations: cannot encode a table with a number key as JSON (object keys must be strings; lists must be 1..n)\"},"
        "{\"policy\":\"cycle\",\"verdict\":\"deny\",\"reason\":\"guard cycle: annotations.t.t: cannot encode a table that contains itself (a cycle) as JSON\"},"
        "{\"policy\":\"num\",\"verdict\":\"deny\",\"reason\":\"guard num: %s/guards/e.lua:1: allow: annotations must be a table, not a number\"}]",
        want, sizeof want);
    lf_verdict v;
    char *json = evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v);
    assert_string_equal(json, want);
    assert_null(v.annotations);
    free(json);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- fail closed ------------------------------------------------------------------------- */

static void test_fail_closed(void **state) {
    tdir *d = *state;
    put(d, "guards/a_loop.lua",
        "return policy {\n  name = 'loop',\n  check = function()\n"
        "    while true do end\n  end,\n}\n");
    put(d, "guards/b_rep.lua",
        "return policy { name = 'rep', check = function()\n"
        "  return deny(string.rep('x', 2^31)) end }\n");
    put(d, "guards/b_rep2.lua",
        "return policy { name = 'rep2', check = function()\n"
        "  return deny(string.rep('x', 2^30)) end }\n");
    put(d, "guards/c_grow.lua",
        "return policy { name = 'grow', check = function()\n"
        "  local t = {}\n"
        "  while true do t[#t + 1] = ('x'):rep(1000) .. #t end\n"
        "end }\n");
    put(d, "guards/d_errobj.lua",
        "return policy { name = 'errobj', check = function() error({}) end }\n");
    put(d, "guards/e_num.lua",
        "return policy { name = 'num', check = function() return 42 end }\n");
    put(d, "guards/f_none.lua",
        "return policy { name = 'none', check = function() end }\n");
    put(d, "guards/g_boom.lua",
        "return policy { name = 'boom',\n  check = function()\n"
        "    error('boom')\n  end }\n");
    put(d, "guards/h_noreason.lua",
        "return policy { name = 'noreason',\n"
        "  check = function() return deny() end }\n");
    put(d, "guards/i_true.lua",
        "return policy { name = 'bool', check = function() return true end }\n");
    put(d, "guards/z_ok.lua",
        "return policy { name = 'ok', check = function(t)\n"
        "  local s = {} for i = 1, 1000 do s[i] = t.to .. i end\n"
        "  return allow() end }\n");
    lf_rules_limits lim = {0, 8u << 20, 0};
    lf_rules *r = load_opts(d->root, &lim, NULL);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    char want[4096];
    expand(
        d,
        "[{\"policy\":\"loop\",\"verdict\":\"deny\",\"reason\":\"guard loop: %s/guards/a_loop.lua:4: instruction budget exceeded\"},"
        "{\"policy\":\"rep\",\"verdict\":\"deny\",\"reason\":\"guard rep: %s/guards/b_rep.lua:2: resulting string too large\"},"
        "{\"policy\":\"rep2\",\"verdict\":\"deny\",\"reason\":\"guard rep2: not enough memory (the policy memory limit was reached)\"},"
        "{\"policy\":\"grow\",\"verdict\":\"deny\",\"reason\":\"guard grow: not enough memory (the policy memory limit was reached)\"},"
        "{\"policy\":\"errobj\",\"verdict\":\"deny\",\"reason\":\"guard errobj: (error object is a table value)\"},"
        "{\"policy\":\"num\",\"verdict\":\"deny\",\"reason\":\"guard num: returned a number, not a verdict (return allow() or deny(reason))\"},"
        "{\"policy\":\"none\",\"verdict\":\"deny\",\"reason\":\"guard none: returned nothing, not a verdict (return allow() or deny(reason))\"},"
        "{\"policy\":\"boom\",\"verdict\":\"deny\",\"reason\":\"guard boom: %s/guards/g_boom.lua:3: boom\"},"
        "{\"policy\":\"noreason\",\"verdict\":\"deny\",\"reason\":\"guard noreason: %s/guards/h_noreason.lua:2: deny: the reason must be a non-empty string\"},"
        "{\"policy\":\"bool\",\"verdict\":\"deny\",\"reason\":\"guard bool: returned a boolean, not a verdict (return allow() or deny(reason))\"},"
        "{\"policy\":\"ok\",\"verdict\":\"allow\",\"reason\":null}]",
        want, sizeof want);
    /* Again and again: the state keeps serving, the same way. */
    for (int round = 0; round < 3; round++) {
        lf_verdict v;
        char *json = evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v);
        assert_string_equal(json, want);
        assert_false(v.allow);
        assert_int_equal(v.denied_by, 0);
        free(json);
        lf_verdict_free(&v);
    }
    lf_record_free(rec);
    lf_rules_free(r);
}

/* A guard that keeps what it allocates fills the heap for good: it and
 * everything after it deny (closed), nothing crashes. */
static void test_leaking_guard(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "local keep = {}\n"
        "return policy { name = 'hoard', check = function()\n"
        "  while true do keep[#keep + 1] = ('y'):rep(200) .. #keep end\n"
        "end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'ok', check = function() return allow() end }\n");
    lf_rules_limits lim = {100000000, 4u << 20, 0};
    lf_rules *r = load_opts(d->root, &lim, NULL);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    for (int round = 0; round < 3; round++) {
        lf_verdict v;
        free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
        /* The first deny is the hoarder's, or (with the heap that full)
         * the runner's own; either way it is closed, and says why. */
        assert_false(v.allow);
        assert_non_null(
            strstr(v.decisions[v.denied_by].reason,
                   "not enough memory (the policy memory limit was reached)"));
        lf_verdict_free(&v);
    }
    lf_record_free(rec);
    lf_rules_free(r);
}

static void test_instruction_limit_option(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'count', check = function()\n"
        "  local n = 0\n  for i = 1, 20000 do n = n + i end\n"
        "  return allow() end }\n");
    lf_rules_limits lim = {10000, 0, 0};
    lf_rules *r = load_opts(d->root, &lim, NULL);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    lf_verdict v;
    free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
    assert_false(v.allow);
    char want[256];
    expand(d, "guard count: %s/guards/a.lua:3: instruction budget exceeded", want,
           sizeof want);
    assert_string_equal(v.decisions[0].reason, want);
    lf_verdict_free(&v);
    lf_rules_free(r);
    r = load_ok(d); /* the default budget is plenty */
    free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
    assert_true(v.allow);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* Budgets cannot be caught from Lua: pcall and xpcall around an endless
 * loop, inside another endless loop, a memory bomb or a recursion under
 * pcall, an error handler that loops -- each ends its call with the
 * budget's error, and the state keeps serving the same way after. */
static void test_hostile_guards(void **state) {
    tdir *d = *state;
    alarm(60); /* a budget that can be caught hangs: fail instead */
    put(d, "guards/a.lua",
        "return policy { name = 'pcall', check = function()\n"
        "  while true do pcall(function() while true do end end) end\n"
        "end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'xpcall', check = function()\n"
        "  local spin = function() while true do end end\n"
        "  while true do xpcall(spin, spin) end\n"
        "end }\n");
    put(d, "guards/c.lua",
        "return policy { name = 'bomb', check = function()\n"
        "  while true do pcall(function()\n"
        "    local t = {} while true do t[#t + 1] = ('x'):rep(1000) .. #t end\n"
        "  end) end\n"
        "end }\n");
    put(d, "guards/d.lua",
        "local function f() return f() + 1 end\n"
        "return policy { name = 'recurse', check = function()\n"
        "  while true do pcall(f) end\n"
        "end }\n");
    put(d, "guards/e.lua",
        "return policy { name = 'nested', check = function()\n"
        "  while true do pcall(pcall, pcall, function() while true do end end) end\n"
        "end }\n");
    put(d, "guards/f.lua",
        "return policy { name = 'ok', check = function() return allow() end }\n");
    lf_rules_limits lim = {0, 8u << 20, 0};
    lf_rules *r = load_opts(d->root, &lim, NULL);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    static const char *const want[] = {
        "guard pcall: %s/guards/a.lua:2: instruction budget exceeded",
        "guard xpcall: %s/guards/b.lua:2: instruction budget exceeded",
        "guard bomb: not enough memory (the policy memory limit was reached)",
        "guard recurse: not enough memory (the policy memory limit was reached)",
        "guard nested: %s/guards/e.lua:2: instruction budget exceeded",
    };
    for (int round = 0; round < 2; round++) {
        lf_verdict v;
        free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
        assert_false(v.allow);
        assert_int_equal(v.ndecisions, 6);
        for (size_t i = 0; i < 5; i++) {
            char w[512];
            expand(d, want[i], w, sizeof w);
            assert_string_equal(v.decisions[i].reason, w);
        }
        assert_true(v.decisions[5].allow); /* the state still serves */
        lf_verdict_free(&v);
    }
    lf_record_free(rec);
    lf_rules_free(r);
    alarm(0);
}

/* A wall-clock deadline backs the instruction count: a loop that spends
 * its time in C (few instructions, much work) ends too. */
static void test_time_budget(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'slow', check = function()\n"
        "  while true do pcall(string.rep, 'x', 200000) end\n"
        "end }\n");
    lf_rules_limits lim = {1000000000, 0, 50};
    lf_rules *r = load_opts(d->root, &lim, NULL);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    lf_verdict v;
    free(evaluate(r, rec, "ci_passed", "ci", "a", NULL, &v));
    assert_false(v.allow);
    char w[512];
    expand(d, "guard slow: %s/guards/a.lua:2: time budget exceeded", w, sizeof w);
    assert_string_equal(v.decisions[0].reason, w);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* Loading a file runs under the same unstoppable budget: the hostile loop
 * at the top of a file is a load error naming its line (lint, reload and
 * SIGHUP all load this way). */
static void test_hostile_file(void **state) {
    tdir *d = *state;
    alarm(60);
    put(d, "guards/a.lua",
        "local n = 0\n"
        "while true do pcall(function() while true do n = n + 1 end end) end\n");
    lf_buf err = LF_BUF_INIT;
    assert_null(lf_rules_load_opts(d->root, NULL, NULL, &err));
    char w[512];
    expand(d, "%s/guards/a.lua:2: instruction budget exceeded\n", w, sizeof w);
    assert_string_equal(lf_buf_str(&err), w);
    lf_buf_free(&err);
    alarm(0);
}

/* A cap too small for Lua itself is a load error, not a crash. */
static void test_tiny_memory(void **state) {
    tdir *d = *state;
    lf_rules_limits lim = {0, 4096, 0};
    lf_buf err = LF_BUF_INIT;
    assert_null(lf_rules_load_opts(d->root, &lim, NULL, &err));
    char want[256];
    expand(d, "%s: the policy memory limit (4096 bytes) leaves no room to start Lua\n",
           want, sizeof want);
    assert_string_equal(lf_buf_str(&err), want);
    lf_buf_free(&err);
    /* room for the sandbox but not for the files: reported per file */
    lim.memory = 200000;
    put(d, "guards/a.lua", "local t = {} for i = 1, 1e6 do t[i] = i end\n");
    assert_null(lf_rules_load_opts(d->root, &lim, NULL, &err));
    expand(d,
           "%s/guards/a.lua:1: not enough memory (the policy memory limit was reached)\n",
           want, sizeof want);
    assert_string_equal(lf_buf_str(&err), want);
    lf_buf_free(&err);
}

/* Guards need a record; without one the answer is no. */
static void test_no_record(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua", "return policy { name = 'a', " OK_CHECK " }\n");
    lf_rules *r = load_ok(d);
    lf_eval in = {.from = "a", .to = "b", .trigger = "t", .actor = "x", .now_us = NOW};
    lf_verdict v;
    lf_rules_evaluate(r, &in, &v);
    assert_false(v.allow);
    assert_int_equal(v.ndecisions, 1);
    assert_string_equal(v.decisions[0].policy, "rules");
    assert_string_equal(v.decisions[0].reason, "policy engine: no record to evaluate");
    lf_verdict_free(&v);
    lf_rules_free(r);
}

/* ---- what a guard sees -------------------------------------------------------------------- */

static void test_guard_sees(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "local function eq(got, want, what)\n"
        "  if got ~= want then\n"
        "    error(what .. ': got ' .. tostring(got) .. ', want ' .. tostring(want), 0)\n"
        "  end\n"
        "end\n"
        "return policy { name = 'sees', check = function(t)\n"
        "  eq(t.from, 'approved', 'from'); eq(t.to, 'merged', 'to')\n"
        "  eq(t.trigger, 'pr.merged', 'trigger'); eq(t.actor, 'bob', 'actor')\n"
        "  eq(t.metadata.risk_tier, 'high', 'metadata'); eq(t.metadata.n, 3, 'n')\n"
        "  eq(math.type(t.metadata.n), 'integer', 'n type'); eq(t.metadata.f, 1.5, 'f')\n"
        "  eq(t.now, 1780272000.25, 'now')\n"
        "  local r = t.record\n"
        "  eq(r.record_id, 'loop-0123456789abcdef', 'id'); eq(r.ref, 'acme/app#7', 'ref')\n"
        "  eq(r.ref_number, 7, 'ref_number'); eq(r.repo, 'acme/app', 'repo')\n"
        "  eq(r.pr_url, nil, 'pr_url'); eq(r.pr_number, nil, 'pr_number')\n"
        "  eq(r.state, 'approved', 'state'); eq(r.auto_merge, true, 'auto_merge')\n"
        "  eq(r.ci_status.lint, 'ok', 'ci_status'); eq(r.labels.team, 'core', 'labels')\n"
        "  eq(r.metadata.owner, 'carol', 'record metadata')\n"
        "  eq(r.created_at, '" TS "', 'created_at'); eq(r.updated_at, '" TS
        "', 'updated_at')\n"
        "  eq(r.closed_at, nil, 'closed_at'); eq(r.workflow, 'loopforge', 'workflow')\n"
        "  eq(r.version, 3, 'version')\n"
        "  eq(r.metadata, r.metadata, 'cached for the call')\n"
        "  local tr = r.transitions\n"
        "  eq(#tr, 8, '#transitions'); eq(tr[1].from_state, nil, 'first from')\n"
        "  eq(tr[1].to_state, 'issue_created', 'first to'); eq(tr[1].trigger, 'created', 'trigger')\n"
        "  eq(tr[8].actor, 'bob', 'last actor'); eq(tr[8].metadata.ok, true, 'entry metadata')\n"
        "  eq(tr[9], nil, 'past the end'); eq(tr[1].timestamp, '" TS "', 'timestamp')\n"
        "  local n = 0 for i, e in ipairs(tr) do n = i end eq(n, 8, 'ipairs')\n"
        "  eq(t:count_entered('ci_pending'), 2, 'count_entered')\n"
        "  eq(t:count_entered('merged'), 0, 'count_entered none')\n"
        "  eq(t:count_transitions('ci_failed', 'ci_pending'), 1, 'count_transitions')\n"
        "  eq(t:count_transitions(nil, 'ci_pending'), 2, 'count_transitions any from')\n"
        "  eq(t:last_entry('pr_created').actor, 'alice', 'last_entry')\n"
        "  eq(t:last_entry('merged'), nil, 'last_entry none')\n"
        "  eq(t:last_entry().to_state, 'approved', 'last_entry any')\n"
        "  eq(t:has_label('team'), true, 'label key'); eq(t:has_label('core'), true, 'label value')\n"
        "  eq(t:has_label('urgent'), true, 'request label'); eq(t:has_label('nope'), false, 'no label')\n"
        "  eq(tostring(r), 'record loop-0123456789abcdef', 'tostring')\n"
        "  return allow()\n"
        "end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(
        HAPPY ";ci_failed@ci;ci_pending@alice;ci_passed@ci;approved@bob{\"ok\":true}",
        true, "{\"team\":\"core\"}", "{\"owner\":\"carol\"}");
    lf_eval in = {
        .record = rec, .from = "approved", .to = "merged", .trigger = "pr.merged",
        .actor = "bob",
        .metadata = "{\"risk_tier\":\"high\",\"n\":3,\"f\":1.5,\"labels\":[\"urgent\"]}",
        .now_us = at_us("2026-06-01T00:00:00Z") + 250000};
    lf_verdict v;
    lf_rules_evaluate(r, &in, &v);
    if (!v.allow) fail_msg("%s", v.decisions[0].reason);
    lf_verdict_free(&v);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* JSON reaches Lua intact: escapes, surrogate pairs, numbers, nesting,
 * null (absent); has_label reads escaped keys too. */
static void test_json_values(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'json', check = function(t)\n"
        "  local m = t.metadata\n"
        "  assert(m.s == 'a\"b\\\\c/\\n\\t', 'escapes: ' .. tostring(m.s))\n"
        "  assert(m.u == '\\u{e9}\\u{2192}\\u{1F600}', 'unicode')\n"
        "  assert(math.type(m.i) == 'integer' and m.i == -42, 'integer')\n"
        "  assert(m.f == 1.5 and m.e == 1000.0 and math.type(m.e) == 'float', 'floats')\n"
        "  assert(m.big == 2^70, 'big')\n"
        "  assert(m.t == true and m.n == nil and m.no == false, 'literals')\n"
        "  assert(#m.list == 3 and m.list[2][1] == 'x' and m.list[3].k == 'v', 'nesting')\n"
        "  assert(next(m.empty) == nil and #m.arr0 == 0, 'empty')\n"
        "  assert(t:has_label('we\"ird') and t:has_label('plain') and not t:has_label('we'), 'labels')\n"
        "  return allow()\n"
        "end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    const char *meta =
        "{ \"s\": \"a\\\"b\\\\c\\/\\n\\t\", \"u\": \"\\u00e9\\u2192\\ud83d\\ude00\","
        " \"i\": -42, \"f\": 1.5, \"e\": 1e3, \"big\": 1180591620717411303424,"
        " \"t\": true, \"n\": null, \"no\": false,"
        " \"list\": [1, [\"x\"], {\"k\": \"v\"}], \"empty\": {}, \"arr0\": [],"
        " \"labels\": [\"w\\u0065\\\"ird\", \"plain\"] }";
    lf_eval in = {
        .record = rec, .from = rec->state, .to = "ci_passed", .trigger = "t",
        .actor = "a", .metadata = meta, .now_us = NOW};
    lf_verdict v;
    lf_rules_evaluate(r, &in, &v);
    if (!v.allow) fail_msg("%s", v.decisions[0].reason);
    lf_verdict_free(&v);
    /* malformed metadata reads as empty, it does not crash or leak */
    put(d, "guards/a.lua",
        "return policy { name = 'json', check = function(t)\n"
        "  return next(t.metadata) == nil and allow() or deny('not empty') end }\n");
    lf_rules_free(r);
    r = load_ok(d);
    static const char *const bad[] = {
        "{\"a\":",     "{\"a\" 1}", "[1,]",        "{\"a\":\"\\q\"}",
        "{\"a\":tru}", "\"s\"",     "{\"a\":1} x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        in.metadata = bad[i];
        lf_rules_evaluate(r, &in, &v);
        if (!v.allow) fail_msg("%s: %s", bad[i], v.decisions[0].reason);
        lf_verdict_free(&v);
    }
    lf_record_free(rec);
    lf_rules_free(r);
}

static void test_read_only(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'ro1',\n  check = function(t)\n"
        "    t.record.state = 'merged'\n  end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'ro2',\n  check = function(t)\n"
        "    t.to = 'closed'\n  end }\n");
    put(d, "guards/c.lua",
        "return policy { name = 'ro3',\n  check = function(t)\n"
        "    return t.record.stat\n  end }\n");
    put(d, "guards/d.lua",
        "return policy { name = 'ro4',\n  check = function(t)\n"
        "    string.upper = nil\n  end }\n");
    put(d, "guards/e.lua",
        "return policy { name = 'ro5',\n  check = function(t, cfg)\n"
        "    cfg.limit = 3\n  end, defaults = { limit = 1 } }\n");
    put(d, "guards/f.lua",
        "return policy { name = 'ro6',\n  check = function(t)\n"
        "    return t.metdata\n  end }\n");
    put(d, "guards/g.lua",
        "return policy { name = 'ro7',\n  check = function(t)\n"
        "    setmetatable({}, { __gc = print })\n  end }\n");
    put(d, "guards/h.lua",
        "return policy { name = 'ro8',\n  check = function(t)\n"
        "    t.record.transitions[1] = {}\n  end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    char want[4096];
    expand(
        d,
        "[{\"policy\":\"ro1\",\"verdict\":\"deny\",\"reason\":\"guard ro1: %s/guards/a.lua:3: the record is read-only (a guard changes nothing by writing to it; return annotations or request a transition instead)\"},"
        "{\"policy\":\"ro2\",\"verdict\":\"deny\",\"reason\":\"guard ro2: %s/guards/b.lua:3: attempt to modify a read-only table (field 'to')\"},"
        "{\"policy\":\"ro3\",\"verdict\":\"deny\",\"reason\":\"guard ro3: %s/guards/c.lua:3: the record has no field 'stat'\"},"
        "{\"policy\":\"ro4\",\"verdict\":\"deny\",\"reason\":\"guard ro4: %s/guards/d.lua:3: attempt to modify a read-only table (field 'upper')\"},"
        "{\"policy\":\"ro5\",\"verdict\":\"deny\",\"reason\":\"guard ro5: %s/guards/e.lua:3: attempt to modify a read-only table (field 'limit')\"},"
        "{\"policy\":\"ro6\",\"verdict\":\"deny\",\"reason\":\"guard ro6: %s/guards/f.lua:3: the transition has no field 'metdata'\"},"
        "{\"policy\":\"ro7\",\"verdict\":\"deny\",\"reason\":\"guard ro7: %s/guards/g.lua:3: setmetatable: __gc metamethods are not allowed in policies\"},"
        "{\"policy\":\"ro8\",\"verdict\":\"deny\",\"reason\":\"guard ro8: %s/guards/h.lua:3: the record is read-only (a guard changes nothing by writing to it; return annotations or request a transition instead)\"}]",
        want, sizeof want);
    char *json = evaluate(r, rec, "ci_passed", "ci", "a", NULL, NULL);
    assert_string_equal(json, want);
    free(json);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* Tables a guard gets are its own for the call: changing them changes
 * nothing for the next guard. */
static void test_isolation(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'scribble', check = function(t)\n"
        "  t.metadata.x = 1; t.record.metadata.y = 2; t.record.labels.z = 3\n"
        "  t:last_entry().metadata.w = 4; t.record.transitions[1].to_state = 'q'\n"
        "  glob = 1\n"
        "  return allow() end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'check', check = function(t)\n"
        "  assert(t.metadata.x == nil and t.record.metadata.y == nil)\n"
        "  assert(t.record.labels.z == nil and t:last_entry().metadata.w == nil)\n"
        "  assert(t.record.transitions[1].to_state == 'issue_created')\n"
        "  assert(glob == nil)\n"
        "  return allow() end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    for (int i = 0; i < 2; i++)
        expect_eval(r, rec, "ci_passed", "a", "{\"k\":1}",
                    "[{\"policy\":\"scribble\",\"verdict\":\"allow\",\"reason\":null},"
                    "{\"policy\":\"check\",\"verdict\":\"allow\",\"reason\":null}]");
    lf_record_free(rec);
    lf_rules_free(r);
}

/* A guard that keeps the record view and uses it in a later evaluation
 * gets an error, never another (or a freed) record. */
static void test_stashed_view(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "local saved\nreturn policy { name = 'stash', check = function(t)\n"
        "  if saved then\n    return allow({ state = saved.state })\n  end\n"
        "  saved = t.record\n  return allow()\nend }\n");
    put(d, "guards/b.lua",
        "local saved\nreturn policy { name = 'stash2', check = function(t)\n"
        "  if saved then\n    return allow({ n = #saved })\n  end\n"
        "  saved = t.record.transitions\n  return allow()\nend }\n");
    put(d, "hooks/c.lua",
        "local saved\nreturn hook { name = 'h', run = function(e)\n"
        "  if saved then\n    return request(saved.state, 'x')\n  end\n"
        "  saved = e.record\nend }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    expect_eval(r, rec, "ci_passed", "a", NULL,
                "[{\"policy\":\"stash\",\"verdict\":\"allow\",\"reason\":null},"
                "{\"policy\":\"stash2\",\"verdict\":\"allow\",\"reason\":null}]");
    char want[2048];
    expand(
        d,
        "[{\"policy\":\"stash\",\"verdict\":\"deny\",\"reason\":\"guard stash: %s/guards/a.lua:4: "
        "record view used after the call that received it returned (copy the values you need "
        "instead of keeping the record)\"},"
        "{\"policy\":\"stash2\",\"verdict\":\"deny\",\"reason\":\"guard stash2: %s/guards/b.lua:4: "
        "record view used after the call that received it returned (copy the values you need "
        "instead of keeping the record)\"}]",
        want, sizeof want);
    lf_record *other = mkrec(HAPPY ";ci_passed@ci", false, NULL, NULL);
    char *json = evaluate(r, other, "merged", "t", "a", NULL, NULL);
    assert_string_equal(json, want);
    free(json);

    lf_hook_event ev = {
        .record = other, .previous = "ci_pending", .state = "ci_passed", .trigger = "ci",
        .actor = "ci", .decisions = "[]"};
    lf_hook_report rep;
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.errors, 0);
    lf_hook_report_free(&rep);
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.errors, 1);
    expand(d,
           "hook h: %s/hooks/c.lua:4: record view used after the call that received it "
           "returned (copy the values you need instead of keeping the record)\n",
           want, sizeof want);
    assert_string_equal(rep.messages, want);
    lf_hook_report_free(&rep);
    lf_record_free(other);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- require ---------------------------------------------------------------------------- */

static void test_require(void **state) {
    tdir *d = *state;
    put(d, "lib/helpers.lua",
        "local M = {}\nfunction M.double(x) return x * 2 end\n"
        "M.loaded = (M.loaded or 0) + 1\nreturn M\n");
    put(d, "lib/team/owners.lua",
        "assert(io == nil and os.execute == nil)\nreturn { 'alice' }\n");
    put(d, "luadir/loopforge/util.lua", "return { answer = 42 }\n");
    put(d, "guards/a.lua",
        "local helpers = require('helpers')\n"
        "return policy { name = 'req', check = function(t)\n"
        "  local owners = require('team.owners')\n"
        "  local util = require('loopforge.util')\n"
        "  assert(helpers.double(2) == 4 and owners[1] == 'alice' and util.answer == 42)\n"
        "  assert(require('helpers') == helpers and helpers.loaded == 1)\n"
        "  return allow()\n"
        "end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'noio',\n  check = function()\n"
        "    return require('io')\n  end }\n");
    put(d, "guards/c.lua",
        "return policy { name = 'dots',\n  check = function()\n"
        "    return require('../../etc/passwd')\n  end }\n");
    put(d, "guards/d.lua",
        "return policy { name = 'nolib',\n  check = function()\n"
        "    return require('luadir.loopforge.util')\n  end }\n");
    char luadir[128];
    snprintf(luadir, sizeof luadir, "%s/luadir", d->root);
    lf_rules *r = load_opts(d->root, NULL, luadir);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    char want[4096];
    expand(
        d,
        "[{\"policy\":\"req\",\"verdict\":\"allow\",\"reason\":null},"
        "{\"policy\":\"noio\",\"verdict\":\"deny\",\"reason\":\"guard noio: %s/guards/b.lua:3: module 'io' not found (policies can only require modules under lib/ and the Lua library directory)\"},"
        "{\"policy\":\"dots\",\"verdict\":\"deny\",\"reason\":\"guard dots: %s/guards/c.lua:3: require: bad module name '../../etc/passwd'\"},"
        "{\"policy\":\"nolib\",\"verdict\":\"deny\",\"reason\":\"guard nolib: %s/guards/d.lua:3: module 'luadir.loopforge.util' not found (policies can only require modules under lib/ and the Lua library directory)\"}]",
        want, sizeof want);
    for (int i = 0; i < 2; i++) {
        char *json = evaluate(r, rec, "ci_passed", "ci", "a", NULL, NULL);
        assert_string_equal(json, want);
        free(json);
    }
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- config ------------------------------------------------------------------------------ */

static void test_config(void **state) {
    tdir *d = *state;
    put(d, "guards/a.lua",
        "return policy { name = 'limit', defaults = { max = 1, names = { 'x' },\n"
        "  deep = { list = { 1, 2, 3 } } },\n"
        "  check = function(t, cfg)\n"
        "    local n = 0 for _ in pairs(cfg.deep) do n = n + 1 end\n"
        "    local s = 0 for _, v in ipairs(cfg.deep.list) do s = s + v end\n"
        "    return deny(('max=%d names=%s #names=%d keys=%d sum=%d'):format(\n"
        "      cfg.max, table.concat({ cfg.names[1], cfg.names[2] }, ','),\n"
        "      #cfg.names, n, s))\n"
        "  end }\n");
    put(d, "guards/b.lua",
        "return policy { name = 'off', check = function() return deny('off') end }\n");
    put(d, "hooks/c.lua",
        "return hook { name = 'hoff', run = function() return request('x', 'y') end }\n");
    put(d, "config.lua",
        "return {\n  limit = { max = 5, names = { 'y', 'z' } },\n"
        "  off = { enabled = false },\n  hoff = { enabled = false },\n}\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    expect_eval(
        r, rec, "ci_passed", "a", NULL,
        "[{\"policy\":\"limit\",\"verdict\":\"deny\",\"reason\":\"max=5 names=y,z #names=2 keys=1 sum=6\"}]");
    lf_rule_info in;
    lf_rules_info(r, LF_RULE_GUARD, 1, &in);
    assert_string_equal(in.name, "off");
    assert_false(in.enabled);
    lf_rules_info(r, LF_RULE_HOOK, 0, &in);
    assert_false(in.enabled);
    lf_hook_event ev = {
        .record = rec, .previous = "pr_created", .state = "ci_pending", .trigger = "ci",
        .actor = "ci", .decisions = "[]"};
    lf_hook_report rep;
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.ran, 0);
    assert_int_equal(rep.nfollowups, 0);
    lf_hook_report_free(&rep);
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static void test_hooks(void **state) {
    tdir *d = *state;
    put(d, "hooks/1.lua",
        "return hook { name = 'h1', run = function(e)\n"
        "  return request('awaiting_review', 'review.required', { by = e.actor, prev = e.previous,\n"
        "    state = e.state, trig = e.trigger, first = e.decisions[1].policy, viol = e.violation,\n"
        "    m = e.metadata.k, auto = e.record.auto_merge, n = #e.record.transitions })\n"
        "end }\n");
    put(d, "hooks/2.lua",
        "return hook { name = 'h2',\n  run = function()\n    error('kaput')\n  end }\n");
    put(d, "hooks/3.lua",
        "return hook { name = 'h3', on = { to = 'ci_passed' }, run = function()\n"
        "  return { request('a', 't1'), request('b', 't2', {}) } end }\n");
    put(d, "hooks/4.lua",
        "return hook { name = 'h4', on = { to = 'merged' },\n"
        "  run = function() error('not me') end }\n");
    put(d, "hooks/5.lua", "return hook { name = 'h5', run = function() return 7 end }\n");
    put(d, "hooks/6.lua",
        "return hook { name = 'h6',\n  run = function()\n    while true do end\n  end }\n");
    put(d, "hooks/7.lua",
        "return hook { name = 'h7', run = function()\n"
        "  return { request('x', 'y'), 5 } end }\n");
    put(d, "hooks/8.lua",
        "return hook { name = 'h8', run = function(e)\n"
        "  return { request('z', 'w', { f = print }) } end }\n");
    put(d, "hooks/9.lua",
        "return hook { name = 'h9', run = function() return {} end }\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY ";ci_passed@ci", false, NULL, NULL);
    lf_hook_event ev = {
        .record = rec, .previous = "ci_pending", .state = "ci_passed",
        .trigger = "ci.completed", .actor = "ci", .metadata = "{\"k\":\"v\"}",
        .decisions = "[{\"policy\":\"p\",\"verdict\":\"allow\",\"reason\":null}]"};
    for (int round = 0; round < 2; round++) {
        lf_hook_report rep;
        lf_rules_run_hooks(r, &ev, &rep);
        assert_int_equal(rep.ran, 8);
        assert_int_equal(rep.errors, 5);
        char want[2048];
        expand(
            d,
            "hook h2: %s/hooks/2.lua:3: kaput\n"
            "hook h5: returned a number, not nil, a request, a notification or a list of them\n"
            "hook h6: %s/hooks/6.lua:3: instruction budget exceeded\n"
            "hook h7: item 2 of the returned list is not a request or a notification\n"
            "hook h8: request metadata.f: cannot encode a function as JSON\n",
            want, sizeof want);
        assert_string_equal(rep.messages, want);
        assert_int_equal(rep.nfollowups, 3);
        assert_string_equal(rep.followups[0].hook, "h1");
        assert_string_equal(rep.followups[0].to, "awaiting_review");
        assert_string_equal(rep.followups[0].trigger, "review.required");
        assert_string_equal(
            rep.followups[0].metadata,
            "{\"auto\":false,\"by\":\"ci\",\"first\":\"p\",\"m\":\"v\",\"n\":5,"
            "\"prev\":\"ci_pending\",\"state\":\"ci_passed\",\"trig\":\"ci.completed\","
            "\"viol\":false}");
        assert_string_equal(rep.followups[1].hook, "h3");
        assert_string_equal(rep.followups[1].to, "a");
        assert_string_equal(rep.followups[1].trigger, "t1");
        assert_null(rep.followups[1].metadata);
        assert_string_equal(rep.followups[2].to, "b");
        assert_string_equal(rep.followups[2].metadata, "{}");
        lf_hook_report_free(&rep);
    }
    lf_record_free(rec);
    lf_rules_free(r);
}

/* ---- the shipped policies ------------------------------------------------------------------ */

#define ALLOW(p) "{\"policy\":\"" p "\",\"verdict\":\"allow\",\"reason\":null}"
#define DENY(p, why) "{\"policy\":\"" p "\",\"verdict\":\"deny\",\"reason\":\"" why "\"}"
/* A denial that says what would satisfy it (`requires`, JSON). */
#define DENYR(p, why, req)                                                               \
    "{\"policy\":\"" p "\",\"verdict\":\"deny\",\"reason\":\"" why                       \
    "\",\"requires\":" req "}"
#define TO_MERGED_OK(first)                                                              \
    "[" ALLOW("agent-prs-need-human-approval") "," ALLOW(                                \
        "blocking-labels") "," first "," ALLOW("merge-freeze")
#define REVIEWED HAPPY ";ci_passed@ci;awaiting_review@hook:route-to-review"

static void test_high_risk(void **state) {
    (void)state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    const char *hr = "high-risk-merge-needs-approval";
    lf_record *plain = mkrec(REVIEWED ";approved@bob", false, NULL, NULL);
    lf_record *risky =
        mkrec(REVIEWED ";approved@bob", false, NULL, "{\"risk_tier\":\"high\"}");
    lf_record *signed_off = mkrec(REVIEWED ";approved@bob{\"governance_approved\":true}",
                                  false, NULL, "{\"risk_tier\":\"high\"}");
    lf_record *rec_ok = mkrec(REVIEWED ";approved@bob", false, NULL,
                              "{\"risk_tier\":\"high\",\"governance_approved\":true}");
    const char *deny = TO_MERGED_OK(DENYR(
        "high-risk-merge-needs-approval", "high-risk merge requires governance approval",
        "{\"metadata\":{\"governance_approved\":true},"
        "\"on\":\"an earlier transition (the approval)\"}")) "]";
    const char *ok = TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "]";
    (void)hr;
    expect_eval(r, plain, "merged", "bot", "{\"risk_tier\":\"high\"}", deny);
    expect_eval(r, risky, "merged", "bot", NULL, deny);
    expect_eval(r, risky, "merged", "bot", "{\"risk_tier\":\"low\"}", deny);
    /* approval in the merge request itself is not a recorded approval */
    expect_eval(r, risky, "merged", "bot", "{\"governance_approved\":true}", deny);
    expect_eval(r, signed_off, "merged", "bot", NULL, ok);
    expect_eval(r, rec_ok, "merged", "bot", "{\"risk_tier\":\"high\"}", ok);
    expect_eval(r, plain, "merged", "bot", NULL, ok);
    expect_eval(r, plain, "merged", "bot", "{\"risk_tier\":\"low\"}", ok);
    /* the issue's example, through the engine's message format */
    lf_verdict v;
    lf_eval in = {
        .record = plain, .from = "approved", .to = "merged", .trigger = "pr.merged",
        .actor = "bot", .metadata = "{\"risk_tier\":\"high\"}", .now_us = NOW};
    lf_rules_evaluate(r, &in, &v);
    assert_false(v.allow);
    assert_string_equal(v.decisions[v.denied_by].policy,
                        "high-risk-merge-needs-approval");
    lf_verdict_free(&v);
    lf_record_free(plain);
    lf_record_free(risky);
    lf_record_free(signed_off);
    lf_record_free(rec_ok);
    lf_rules_free(r);
}

static void test_no_self_approval(void **state) {
    (void)state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    lf_record *rec = mkrec(REVIEWED, false, NULL, NULL);
    expect_eval(r, rec, "approved", "alice", NULL,
                "[" DENYR("no-self-approval",
                          "separation of duties: alice opened the PR and "
                          "cannot also approve it",
                          "{\"actor_not\":\"alice\"}") "]");
    expect_eval(r, rec, "approved", "bob", NULL, "[" ALLOW("no-self-approval") "]");
    expect_eval(r, rec, "approved", NULL, NULL,
                "[" DENYR("no-self-approval", "an approval must name its actor",
                          "{\"actor\":\"named\"}") "]");
    lf_record_free(rec);
    /* the last PR counts: reopened by bob, approved by alice */
    rec = mkrec(
        HAPPY
        ";ci_failed@ci;pr_created@bob;ci_pending@bob;ci_passed@ci;awaiting_review@x",
        false, NULL, NULL);
    expect_eval(r, rec, "approved", "alice", NULL, "[" ALLOW("no-self-approval") "]");
    lf_record_free(rec);
    lf_rules_free(r);
}

static void test_review_unless_auto_merge(void **state) {
    (void)state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    lf_record *manual = mkrec(HAPPY ";ci_passed@ci", false, NULL, NULL);
    lf_record *autom = mkrec(HAPPY ";ci_passed@ci", true, NULL, NULL);
    expect_eval(
        r, manual, "merged", "bot", NULL,
        TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "," DENYR(
            "review-unless-auto-merge",
            "merging straight from ci_passed needs "
            "auto_merge; without it the record goes through awaiting_review and "
            "approved",
            "{\"auto_merge\":true,\"or_path\":[\"awaiting_review\",\"approved\"]}") "]");
    expect_eval(r, autom, "merged", "bot", NULL,
                TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "," ALLOW(
                    "review-unless-auto-merge") "]");
    expect_eval(r, manual, "awaiting_review", "bot", NULL, "[]");
    lf_record_free(manual);
    lf_record_free(autom);
    lf_rules_free(r);
}

static void test_merge_freeze(void **state) {
    tdir *d = *state;
    copy_shipped(
        d,
        "return {\n"
        "  ['merge-freeze'] = { windows = {\n"
        "    { from = '2026-05-31T00:00:00Z', to = '2026-06-02T00:00:00Z', reason = 'release' },\n"
        "    { from = '2026-12-24', to = '2027-01-02T00:00:00.5Z' },\n"
        "  } },\n"
        "}\n");
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(REVIEWED ";approved@bob", false, NULL, NULL);
    int64_t saved = NOW;
    NOW = at_us("2026-05-30T23:59:59Z");
    expect_eval(r, rec, "merged", "bot", NULL,
                TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "]");
    NOW = at_us("2026-06-01T23:59:59Z");
    const char *release =
        "[" ALLOW("agent-prs-need-human-approval") "," ALLOW("blocking-labels") "," ALLOW(
            "high-risk-merge-needs-approval") "," DENYR("merge-freeze",
                                                        "merge freeze until 2026-06-02T00:00:00Z: release",
                                                        "{\"after\":\"2026-06-02T00:00:00Z\"}") "]";
    expect_eval(r, rec, "merged", "bot", NULL, release);
    NOW = at_us("2026-05-31T00:00:00Z");
    expect_eval(r, rec, "merged", "bot", NULL, release);
    NOW = at_us("2026-06-02T00:00:00Z"); /* `to` is exclusive */
    expect_eval(r, rec, "merged", "bot", NULL,
                TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "]");
    NOW = at_us("2027-01-02T00:00:00Z");
    expect_eval(
        r, rec, "merged", "bot", NULL,
        "[" ALLOW("agent-prs-need-human-approval") "," ALLOW("blocking-labels") "," ALLOW(
            "high-risk-merge-needs-approval") "," DENYR("merge-freeze",
                                                        "merge freeze until 2027-01-02T00:00:00.5Z: merges are frozen",
                                                        "{\"after\":\"2027-01-02T00:00:00.5Z\"}") "]");
    NOW = saved;
    lf_rules_free(r);
    lf_record_free(rec);

    copy_shipped(
        d, "return {\n  ['merge-freeze'] = {\n    windows = { { from = '2026-13-01', "
           "to = '2027-01-01' } },\n  },\n}\n");
    expect_errors(
        d, "%s/config.lua:2: config for 'merge-freeze': window 1: from and to must be "
           "UTC times like 2026-12-24T00:00:00Z\n");
    copy_shipped(d, "return { ['merge-freeze'] = { windows = { { from = '2026-02-01', "
                    "to = '2026-01-01' } } } }\n");
    expect_errors(
        d,
        "%s/config.lua:1: config for 'merge-freeze': window 1 ends before it starts\n");
    copy_shipped(d, "return { ['merge-freeze'] = { windows = { { from = '2026-01-01', "
                    "to = '2026-02-01', resaon = 'x' } } } }\n");
    expect_errors(
        d,
        "%s/config.lua:1: config for 'merge-freeze': window 1: unknown field 'resaon'\n");
}

static void test_blocking_labels(void **state) {
    tdir *d = *state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    static const struct {
        const char *labels, *meta, *label;
    } deny[] = {
        {"{\"do-not-merge\":true}", NULL, "do-not-merge"},
        {"{\"status\":\"blocked\"}", NULL, "blocked"},
        {"{}", "{\"labels\":[\"x\",\"blocked\"]}", "blocked"},
        {"{\"blocked\":1,\"do-not-merge\":1}", NULL, "do-not-merge"},
    };
    for (size_t i = 0; i < sizeof deny / sizeof *deny; i++) {
        lf_record *rec = mkrec(REVIEWED ";approved@bob", false, deny[i].labels, NULL);
        char want[512];
        snprintf(
            want, sizeof want,
            "[" ALLOW("agent-prs-need-human-approval") "," DENYR(
                "blocking-labels", "label '%s' blocks merging",
                "{\"remove_label\":\"%s\"}") "," ALLOW("high-risk-merge-needs-approval") "," ALLOW("merge-freeze") "]",
            deny[i].label, deny[i].label);
        expect_eval(r, rec, "merged", "bot", deny[i].meta, want);
        lf_record_free(rec);
    }
    lf_record *rec = mkrec(REVIEWED ";approved@bob", false, "{\"team\":\"core\"}", NULL);
    const char *ok = TO_MERGED_OK(ALLOW("high-risk-merge-needs-approval")) "]";
    expect_eval(r, rec, "merged", "bot", "{\"labels\":\"blocked\"}", ok);
    lf_rules_free(r);
    copy_shipped(d, "return { ['blocking-labels'] = { labels = { 'team' } } }\n");
    r = load_ok(d);
    expect_eval(
        r, rec, "merged", "bot", NULL,
        "[" ALLOW("agent-prs-need-human-approval") "," DENYR(
            "blocking-labels", "label 'team' blocks merging",
            "{\"remove_label\":\"team\"}") "," ALLOW("high-risk-merge-needs-approval") "," ALLOW("merge-freeze") "]");
    lf_rules_free(r);
    copy_shipped(d, "return { ['blocking-labels'] = { enabled = false } }\n");
    r = load_ok(d);
    expect_eval(r, rec, "merged", "bot", NULL,
                "[" ALLOW("agent-prs-need-human-approval") "," ALLOW(
                    "high-risk-merge-needs-approval") "," ALLOW("merge-freeze") "]");
    lf_rules_free(r);
    lf_record_free(rec);
}

static void test_route_to_review(void **state) {
    (void)state;
    lf_rules *r = load_opts("policies", NULL, NULL);
    lf_record *manual = mkrec(HAPPY ";ci_passed@ci", false, NULL, NULL);
    lf_record *autom = mkrec(HAPPY ";ci_passed@ci", true, NULL, NULL);
    lf_hook_event ev = {
        .record = manual, .previous = "ci_pending", .state = "ci_passed",
        .trigger = "ci.completed", .actor = "ci", .metadata = "{}", .decisions = "[]"};
    lf_hook_report rep;
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.ran, 1);
    assert_int_equal(rep.errors, 0);
    assert_null(rep.messages);
    assert_int_equal(rep.nfollowups, 1);
    assert_string_equal(rep.followups[0].hook, "route-to-review");
    assert_string_equal(rep.followups[0].to, "awaiting_review");
    assert_string_equal(rep.followups[0].trigger, "review.required");
    assert_null(rep.followups[0].metadata);
    lf_hook_report_free(&rep);
    ev.record = autom;
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.ran, 1);
    assert_int_equal(rep.nfollowups, 0);
    lf_hook_report_free(&rep);
    ev.state = "merged"; /* filter: not for other states */
    lf_rules_run_hooks(r, &ev, &rep);
    assert_int_equal(rep.ran, 0);
    lf_hook_report_free(&rep);
    lf_record_free(manual);
    lf_record_free(autom);
    lf_rules_free(r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)

/* Filters matched by state id (the engine passes its workflow and the
 * states' ids: lf_eval.wf) decide as filters matched by name, for every
 * (from, to) of every workflow, for each kind of filter: from and to
 * lists, workflow, trigger patterns, none; guards and hooks alike. */
static void test_filters_by_id(void **state) {
    tdir *d = *state;
    copy_in(d, "workflows/factory.lua");
    copy_in(d, "workflows/specfuse.lua");
    static const char *const rules[][2] = {
        {"guards/a.lua", "return policy { name = 'a', on = { to = 'merged', workflow = "
                         "'loopforge' }, check = function() return allow() end }\n"},
        {"guards/b.lua", "return policy { name = 'b', on = { from = { 'ci_passed', "
                         "'approved' }, to = { 'merged', 'closed' } }, "
                         "check = function() return allow() end }\n"},
        {"guards/c.lua", "return policy { name = 'c', on = { trigger = 'ci.*' }, "
                         "check = function() return allow() end }\n"},
        {"guards/d.lua", "return policy { name = 'd', check = function() return allow() "
                         "end }\n"},
        {"guards/e.lua", "return policy { name = 'e', on = { workflow = { 'factory', "
                         "'specfuse-gate' }, from = { 'created', 'armed' } }, "
                         "check = function() return allow() end }\n"},
        {"hooks/h.lua", "return hook { name = 'h', on = { to = 'ci_passed' }, "
                        "run = function() end }\n"},
        {"hooks/i.lua", "return hook { name = 'i', on = { from = 'pr_created', "
                        "workflow = 'loopforge', trigger = 'pr.*' }, "
                        "run = function() end }\n"},
        {"hooks/j.lua", "return hook { name = 'j', run = function() end }\n"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
        put(d, rules[i][0], rules[i][1]);
    lf_rules *r = load_ok(d);
    lf_record *rec = mkrec(HAPPY, false, NULL, NULL);
    char *own = rec->workflow;
    static const char *const triggers[] = {"ci.completed", "pr.opened", "manual"};
    int compared = 0, matched = 0;
    for (int w = 0; w < lf_rules_nworkflows(r); w++) {
        const lf_workflow *wf = lf_rules_workflow_at(r, w);
        rec->workflow = wf->name;
        for (int from = -1; from < wf->nstates; from++) {
            for (int to = 0; to < wf->nstates; to++) {
                for (size_t t = 0; t < 3; t++) {
                    const char *fn = from < 0 ? NULL : wf->states[from];
                    const char *tn = wf->states[to];
                    lf_verdict by_name, by_id;
                    lf_eval in = {
                        .record = rec, .from = fn, .to = tn, .trigger = triggers[t],
                        .actor = "a", .now_us = NOW};
                    lf_rules_evaluate(r, &in, &by_name);
                    in.wf = wf;
                    in.from_id = from;
                    in.to_id = to;
                    lf_rules_evaluate(r, &in, &by_id);
                    assert_int_equal(by_id.ndecisions, by_name.ndecisions);
                    for (size_t k = 0; k < by_id.ndecisions; k++)
                        assert_string_equal(by_id.decisions[k].policy,
                                            by_name.decisions[k].policy);
                    matched += (int)by_id.ndecisions;
                    lf_verdict_free(&by_name);
                    lf_verdict_free(&by_id);

                    lf_hook_report hn, hi;
                    lf_hook_event ev = {
                        .record = rec, .previous = fn, .state = tn,
                        .trigger = triggers[t], .actor = "a", .decisions = "[]"};
                    lf_rules_run_hooks(r, &ev, &hn);
                    ev.wf = wf;
                    ev.previous_id = from;
                    ev.state_id = to;
                    lf_rules_run_hooks(r, &ev, &hi);
                    assert_int_equal(hi.ran, hn.ran);
                    matched += hi.ran;
                    lf_hook_report_free(&hn);
                    lf_hook_report_free(&hi);
                    compared++;
                }
            }
        }
    }
    rec->workflow = own;
    assert_true(compared > 300);
    assert_true(matched > compared);     /* the filters took some, not all */
    assert_true(matched < compared * 8);
    lf_record_free(rec);
    lf_rules_free(r);
}

int main(void) {
    NOW = at_us("2026-06-01T00:00:00Z");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_set),
        T(test_generation),
        T(test_lint_rules),
        T(test_lint_duplicates),
        T(test_lint_filter_names),
        T(test_lint_config),
        T(test_lint_validate),
        T(test_filters),
        T(test_no_guard_matches),
        T(test_verdicts_and_annotations),
        T(test_bad_annotations),
        T(test_fail_closed),
        T(test_leaking_guard),
        T(test_instruction_limit_option),
        T(test_hostile_guards),
        T(test_time_budget),
        T(test_hostile_file),
        T(test_tiny_memory),
        T(test_no_record),
        T(test_guard_sees),
        T(test_json_values),
        T(test_read_only),
        T(test_isolation),
        T(test_stashed_view),
        T(test_require),
        T(test_config),
        T(test_hooks),
        T(test_filters_by_id),
        cmocka_unit_test(test_high_risk),
        cmocka_unit_test(test_no_self_approval),
        cmocka_unit_test(test_review_unless_auto_merge),
        T(test_merge_freeze),
        T(test_blocking_labels),
        cmocka_unit_test(test_route_to_review),
    };
    return cmocka_run_group_tests_name("policies", tests, NULL, NULL);
}
