/* timers_pages.h -- test helpers: records whose timers tie and interleave
 * (imported as having entered two timed states and a retry state at a few
 * shared times, some with timers of their own too), and the check that
 * the timers' listing read a page at a time (lf_engine_timers' limit and
 * cursor) is the whole listing cut in pages: the same timers in the same
 * order, each once, whatever the page's size. Shared by test_engine
 * (memory:) and test_redis, whose listings stop early. The includer
 * defines wait_until(const bool *done), which runs its loop. */
#ifndef LF_TEST_TIMERS_PAGES_H
#define LF_TEST_TIMERS_PAGES_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../src/loopforge.h"
#include "../src/core/buf.h"
#include "../src/core/clock.h"
#include "../src/engine/engine_internal.h"

static void wait_until(const bool *done);

/* The workflow (as workflows/loopforge.lua): a (1h), b (2h), and r, a
 * retry (to w) with a jittered backoff. */
static const char TP_WORKFLOW[] =
    "return workflow {\n"
    "  name = 'loopforge',\n"
    "  states = { 'issue_created', 'a', 'b', 'r', 'w', 'closed' },\n"
    "  initial = 'issue_created', terminal = { 'closed' },\n"
    "  edges = { { 'issue_created', 'a' }, { 'issue_created', 'b' }, { 'issue_created', 'r' },\n"
    "            { 'a', 'closed' }, { 'b', 'closed' }, { 'r', 'w' }, { 'w', 'closed' } },\n"
    "  timers = { a = { { '1h', to = 'closed', trigger = 't.a' } },\n"
    "             b = { { '2h', to = 'closed', trigger = 't.b' } } },\n"
    "  retries = { r = { to = 'w', trigger = 'retry', max = 3,\n"
    "                    backoff = { initial = '20m', factor = 2, max = '1h', jitter = 0.5 },\n"
    "                    escalate_to = 'closed' } },\n"
    "}\n";

typedef struct tp_call {
    bool done;
    lf_code code;
    char *doc;
} tp_call;

static void tp_text(lf_code code, const char *error, const char *doc, void *arg) {
    tp_call *c = arg;
    (void)error;
    c->done = true;
    c->code = code;
    c->doc = doc ? strdup(doc) : NULL;
}

static void tp_result(const lf_result *r, void *arg) {
    tp_call *c = arg;
    c->done = true;
    c->code = r->code;
}

/* n records imported into e, each having entered a, b or r at one of 12
 * times a quarter of an hour apart over the last three hours (ties, many
 * to a page, within a state and across a and b: an hour apart), and
 * every fifth one in a or b a timer of its own, due in 10, 70 or 130
 * minutes. */
static void tp_fill(lf_engine *e, int n) {
    static const char *const states[] = {"a", "b", "r"};
    int64_t now = lf_now_us();
    for (int i = 0; i < n; i++) {
        char ts[LF_TS_LEN + 1], json[800], id[LF_ID_LEN + 1];
        const char *st = states[(i * 7) % 3];
        lf_ts_format(now - 3 * 3600 * 1000000LL + (i * 5 % 12) * 15 * 60 * 1000000LL, ts);
        snprintf(id, sizeof id, "loop-%08x", 0x30000000u + (unsigned)i);
        snprintf(json, sizeof json,
                 "{\"record_id\":\"%s\",\"ref\":\"acme/app#tp%d\",\"repo\":\"acme/app\","
                 "\"state\":\"%s\",\"transitions\":["
                 "{\"from_state\":null,\"to_state\":\"issue_created\",\"trigger\":\"created\","
                 "\"timestamp\":\"%s\"},{\"from_state\":\"issue_created\",\"to_state\":\"%s\","
                 "\"trigger\":\"go\",\"timestamp\":\"%s\"}]}",
                 id, i, st, ts, st, ts);
        tp_call c = {0};
        lf_engine_import(e, json, "t", false, tp_result, &c);
        wait_until(&c.done);
        assert_int_equal(c.code, LF_OK);
        if (i % 5 || st[0] == 'r') continue;
        c = (tp_call){0};
        lf_engine_schedule(e, id, st, (10 + 60 * (i % 3)) * 60 * 1000000LL, "closed", "own",
                           NULL, "t", tp_result, &c);
        wait_until(&c.done);
        assert_int_equal(c.code, LF_OK);
    }
}

/* The listing at now_us: its timers as "due record_id trigger" lines,
 * following the cursors in pages of `limit` (0: all at once); how many
 * pages in *pages. The caller frees it. */
static char *tp_list(lf_engine *e, int64_t now_us, size_t limit, int *pages) {
    lf_buf out = LF_BUF_INIT;
    char *cursor = NULL;
    *pages = 0;
    do {
        tp_call c = {0};
        lf_timers_query q = {.now_us = now_us, .limit = limit, .cursor = cursor};
        lf_engine_timers(e, &q, tp_text, &c);
        wait_until(&c.done);
        assert_int_equal(c.code, LF_OK);
        cJSON *doc = cJSON_Parse(c.doc), *t;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "timers");
        if (limit) assert_true((size_t)cJSON_GetArraySize(list) <= limit);
        cJSON_ArrayForEach(t, list) {
            char line[160];
            snprintf(line, sizeof line, "%s %s %s\n",
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "due")),
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "record_id")),
                     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "trigger")));
            lf_buf_puts(&out, line);
        }
        free(cursor);
        const char *next =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "next_cursor"));
        cursor = next ? strdup(next) : NULL;
        cJSON_Delete(doc);
        free(c.doc);
        ++*pages;
    } while (cursor);
    return lf_buf_steal(&out);
}

/* Every page size lists what the whole listing does, in its order. The
 * pages are read first, so that the first of them reads the store as a
 * process's first ask finds it. */
static void tp_check(lf_engine *e, int n) {
    static const size_t sizes[] = {1, 7, 50, 1000};
    enum { NSIZES = sizeof sizes / sizeof *sizes };
    int64_t now = lf_now_us();
    int pages[NSIZES], whole;
    char *paged[NSIZES];
    for (size_t k = 0; k < NSIZES; k++) paged[k] = tp_list(e, now, sizes[k], &pages[k]);
    char *all = tp_list(e, now, 0, &whole);
    size_t lines = 0;
    for (const char *p = all; (p = strchr(p, '\n')); p++) lines++;
    assert_int_equal(lines, (size_t)n);
    for (size_t k = 0; k < NSIZES; k++) {
        assert_string_equal(paged[k], all);
        assert_int_equal(pages[k], (int)((lines + sizes[k] - 1) / sizes[k]));
        free(paged[k]);
    }
    free(all);
}

#endif
