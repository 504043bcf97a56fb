/* timers.c -- `loopforge timers` and `loopforge tick`: the durable timers
 * of a workflow's timed states, listed (lf_engine_timers), or fired when
 * due (lf_engine_fire_due, as serve's tick: only the records that can be
 * due are read) -- for cron, and for whoever runs loopforge without a
 * server (serve ticks every second by itself). --now says what time it
 * is. */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "cli.h"
#include "../core/clock.h"

static int now_opt(lf_cli *c, int64_t *now) {
    const char *s = lf_args_get(&c->args, "now");
    char ts[LF_TS_LEN + 1];
    *now = 0;
    if (s && lf_ts_normalize(s, ts) == 0 && lf_ts_parse(ts, now) == 0) return 0;
    if (s)
        return lf_cli_usage(c, "--now takes a time like 2026-12-05T10:00:00Z, got '%s'",
                            s);
    return 0;
}

static int run(lf_cli *c, bool fire) {
    int rc = lf_cli_npos(c, 0, 0, "");
    int64_t now;
    if (rc || (rc = now_opt(c, &now))) return rc;
    const char *lim = lf_args_get(&c->args, "limit");
    uint64_t limit = 0;
    if (lim && lf_cli_parse_u64(lim, 1, 100000, &limit) != 0)
        return lf_cli_usage(c, "--limit must be an integer from 1 to 100000, got '%s'", lim);
    if (fire) c->writes = true;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_text_call t = {0};
    if (fire) {
        lf_engine_fire_due(e, now, lf_cli_text_cb, &t);
    } else {
        /* --due: only the records that can be due by now are read */
        bool due = lf_args_has(&c->args, "due");
        if (due && !now) now = lf_now_us();
        lf_timers_query q = {.now_us = now, .due_by_us = due ? now : 0, .limit = limit,
                             .cursor = lf_args_get(&c->args, "cursor")};
        lf_engine_timers(e, &q, lf_cli_text_cb, &t);
    }
    if ((rc = lf_cli_wait(c, &t.done))) return rc;
    if (t.code != LF_OK) {
        rc = lf_cli_fail(c, t.code, t.error);
    } else if (c->json) {
        puts(t.text);
    } else {
        cJSON *j = cJSON_Parse(t.text), *x;
        cJSON_ArrayForEach(
            x, cJSON_GetObjectItemCaseSensitive(j, fire ? "fired" : "timers")) {
#define S(k) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, k))
            if (fire) {
                const char *err = S("error");
                printf("%s: %s \u2192 %s (%s)%s%s\n", S("record_id"), S("from"), S("to"),
                       S("code"), err ? ": " : "", err ? err : "");
            } else {
                printf("%s  %s \u2192 %s (%s)  due %s%s\n", S("record_id"), S("state"),
                       S("to"), S("trigger"), S("due"),
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "due_now"))
                           ? "  [due]"
                           : "");
            }
#undef S
        }
        const char *next =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "next_cursor"));
        if (next) fprintf(stderr, "(more: add --cursor %s)\n", next);
        cJSON_Delete(j);
    }
    free(t.text);
    free(t.error);
    return rc;
}

static int run_timers(lf_cli *c) { return run(c, false); }
static int run_tick(lf_cli *c) { return run(c, true); }

static const lf_optspec timers_opts[] = {
    {"due", false}, {"now", true}, {"limit", true}, {"cursor", true}, {NULL, false}};
static const lf_optspec tick_opts[] = {{"now", true}, {NULL, false}};

const lf_command lf_cmd_timers = {
    "timers",
    "list the durable timers of records in timed states",
    "Usage: loopforge timers [--due] [--now T] [--limit N] [--cursor C]\n\n"
    "One line per record in a state its workflow gives a timer\n"
    "(`timers` in workflows/*.lua) or with a timer of its own, soonest first:\n"
    "ID  STATE -> TO (TRIGGER)  due TIME, marked [due] when it is. A timer is\n"
    "due when the record has stayed that long in the state (since its last\n"
    "transition); leaving the state cancels it. When there are more than\n"
    "--limit, the cursor of the next page is printed to stderr.\n\n"
    "  --due                only the due ones (only those records are read)\n"
    "  --now T              the time to judge by (default: now)\n"
    "  --limit N            at most N timers (default: all)\n"
    "  --cursor C           the page after a previous one\n",
    timers_opts,
    run_timers,
    true};

const lf_command lf_cmd_tick = {
    "tick",
    "fire the durable timers that are due",
    "Usage: loopforge tick [--now T]\n\n"
    "Moves every record whose timer is due, in due order, as an ordinary\n"
    "transition (guards, audit) with actor \"timer:STATE\" and the record's\n"
    "version expected: of several ticks at once exactly one moves a record.\n"
    "Prints \"ID: from -> to (code)\" per timer fired. It reads only the\n"
    "records whose timers can be due, as serve's tick does (--json: its\n"
    "\"timers\" are those). For cron; loopforge serve ticks every second by\n"
    "itself.\n\n"
    "  --now T              the time to act at (default: now)\n",
    tick_opts,
    run_tick,
    true};
