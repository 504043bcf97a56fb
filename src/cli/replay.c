/* replay.c -- `loopforge replay`: the recorded history judged again under
 * the policy set given with --policies (engine/replay.c): every request
 * whose verdict would differ, then a summary. Read-only: a journal is read
 * as a file, other stores through the engine's audit pages. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../engine/replay.h"

typedef struct replay_call {
    lf_cli *c;
    lf_replay *r;
    char err[600];
} replay_call;

static void print_change(const lf_replay_change *x, void *arg) {
    replay_call *rc = arg;
    if (rc->c->json) {
        lf_buf b = LF_BUF_INIT;
        lf_jw o = lf_jw_open(&b, '{');
        lf_jw_int(&o, "seq", (int64_t)x->seq);
        lf_jw_str(&o, "record_id", x->record_id);
        lf_jw_str(&o, "from", x->from);
        lf_jw_str(&o, "to", x->to);
        lf_jw_str(&o, "trigger", x->trigger);
        lf_jw_str(&o, "actor", x->actor);
        lf_jw_str(&o, "timestamp", x->timestamp);
        lf_jw_str(&o, "was", x->was);
        lf_jw_str(&o, "was_rule", x->was_rule);
        lf_jw_str(&o, "was_reason", x->was_reason);
        lf_jw_str(&o, "now", x->now);
        lf_jw_str(&o, "now_rule", x->now_rule);
        lf_jw_str(&o, "now_reason", x->now_reason);
        lf_jw_close(&o, '}');
        puts(b.p);
        lf_buf_free(&b);
        return;
    }
    printf("seq %" PRIu64 "  %s  %s \u2192 %s (%s) by %s at %s: %s", x->seq, x->record_id,
           x->from, x->to, x->trigger ? x->trigger : "",
           x->actor ? x->actor : "anonymous", x->timestamp, x->was);
    if (x->was_rule) printf(" by %s", x->was_rule);
    printf(" \u2192 %s", x->now);
    if (x->now_rule)
        printf(" by %s: %s", x->now_rule, x->now_reason ? x->now_reason : "");
    putchar('\n');
}

static int feed(const char *line, size_t len, void *arg) {
    replay_call *rc = arg;
    return lf_replay_feed(rc->r, line, len, rc->err, sizeof rc->err);
}

typedef struct rule_line {
    lf_buf *b;
    bool json;
    int n;
} rule_line;

static void by_rule(const char *rule, size_t n, void *arg) {
    rule_line *l = arg;
    if (l->json) {
        if (l->n++) lf_buf_putc(l->b, ',');
        lf_buf_json_str(l->b, rule);
        lf_buf_printf(l->b, ":%zu", n);
    } else lf_buf_printf(l->b, "%s %s %zu", l->n++ ? "," : "; by rule:", rule, n);
}

static int time_opt(lf_cli *c, const char *name, int64_t *out) {
    const char *s = lf_args_get(&c->args, name);
    char ts[LF_TS_LEN + 1];
    *out = 0;
    if (!s) return 0;
    if (lf_ts_normalize(s, ts) == 0 && lf_ts_parse(ts, out) == 0) return 0;
    return lf_cli_usage(c, "--%s takes a time like 2026-12-01T00:00:00Z, got '%s'", name,
                        s);
}

static int run_replay(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    lf_replay_opts o = {.record = lf_args_get(&c->args, "record"), .fn = print_change};
    if (rc || (rc = time_opt(c, "since", &o.since)) ||
        (rc = time_opt(c, "until", &o.until)))
        return rc;
    lf_buf problems = LF_BUF_INIT;
    lf_rules *rules = lf_rules_load(c->policies, &problems);
    if (!rules) {
        fprintf(stderr, "replay: the policy set %s does not load:\n%s", c->policies,
                lf_buf_str(&problems));
        lf_buf_free(&problems);
        return LF_EXIT_USAGE;
    }
    lf_buf_free(&problems);
    replay_call call = {.c = c};
    o.arg = &call;
    call.r = lf_replay_new(rules, &o);
    size_t torn;
    rc = lf_cli_each_line(c, feed, &call, &torn);
    if (!rc && call.err[0]) rc = lf_cli_fail(c, LF_INVALID_REQUEST, call.err);
    if (!rc) {
        const lf_replay_stats *st = lf_replay_result(call.r);
        lf_buf b = LF_BUF_INIT;
        rule_line l = {&b, c->json, 0};
        if (c->json) {
            lf_buf_printf(&b,
                          "{\"summary\":true,\"generation\":\"%s\",\"entries\":%" PRIu64
                          ",\"replayed\":%" PRIu64 ",\"changed\":%" PRIu64
                          ",\"now_denied\":%" PRIu64 ",\"now_allowed\":%" PRIu64
                          ",\"other_reason\":%" PRIu64 ",\"by_rule\":{",
                          lf_rules_generation(rules), st->entries, st->replayed,
                          st->changed, st->now_denied, st->now_allowed, st->other_reason);
            lf_replay_rules(call.r, by_rule, &l);
            lf_buf_puts(&b, "}}");
        } else {
            lf_buf_printf(
                &b,
                "replay: %" PRIu64 " requests replayed under %s (generation %.12s), "
                "%" PRIu64 " would change (allowed \u2192 denied %" PRIu64
                ", denied \u2192 allowed %" PRIu64 ", another reason %" PRIu64 ")",
                st->replayed, c->policies, lf_rules_generation(rules), st->changed,
                st->now_denied, st->now_allowed, st->other_reason);
            lf_replay_rules(call.r, by_rule, &l);
        }
        puts(lf_buf_str(&b));
        lf_buf_free(&b);
    }
    lf_replay_free(call.r);
    lf_rules_free(rules);
    return rc;
}

static const lf_optspec replay_opts[] = {
    {"record", true}, {"since", true}, {"until", true}, {NULL, false}};

const lf_command lf_cmd_replay = {
    "replay",
    "judge the recorded history again under another policy set",
    "Usage: loopforge replay --policies NEWDIR [--record ID] [--since T] [--until T]\n\n"
    "Re-evaluates every recorded request of the audit log (transitions,\n"
    "denied and rejected attempts; not observations) against the record as\n"
    "it then stood, at its own time, by its own actor and roles, under the\n"
    "policy set in --policies: the workflow's edges, role gates, retry\n"
    "budgets and every guard. Prints each request whose verdict would differ\n"
    "(allowed \u2192 denied, denied \u2192 allowed, or another reason), then a\n"
    "summary by rule. Writes nothing; streams the log (a journal is read as\n"
    "a file). --json: one object per change, then the summary object.\n"
    "Children gates are not judged again (their counts are not in the log).\n\n"
    "  --record ID          only this record's requests\n"
    "  --since T, --until T only requests in [T, T)\n",
    replay_opts,
    run_replay,
    true};
