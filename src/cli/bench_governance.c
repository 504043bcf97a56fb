/* bench_governance.c -- what "why blocked" and backtesting cost, as part
 * of `loopforge bench`, each beside a reference from the same run:
 *
 *   - explain: the latency (p50, p99) of lf_engine_explain on records
 *     waiting at `approved` under the whole policy set, against one dry
 *     run of the same merge (explain is a dry run per way out, plus the
 *     record read);
 *   - replay: requests judged again per second over a journal of about
 *     ENTRIES lines under the whole policy set (engine/replay.c: parse,
 *     fold, every guard), against parsing those lines alone. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "cli.h"
#include "bench_util.h"
#include "bench_governance.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/entry.h"
#include "../core/mem.h"
#include "../engine/replay.h"

static void on_text(lf_code code, const char *error, const char *text, void *arg) {
    (void)error, (void)text;
    *(bool *)arg = code == LF_OK;
}

/* A record walked to `approved` (the shipped hook routes it to review). */
static bool approved(lf_engine *e, const char *ref, char id[LF_ID_LEN + 1]) {
    static const char *const steps[][2] = {{"task_queued", "dev"},
                                           {"pr_created", "dev"},
                                           {"ci_pending", "ci"},
                                           {"ci_passed", "ci"},
                                           {"approved", "reviewer"}};
    lf_bench_call cr = {0};
    lf_create_req req = {.ref = ref, .actor = "bench"};
    lf_engine_create(e, &req, lf_bench_on_result, &cr);
    bool ok = cr.ok;
    for (size_t s = 0; ok && s < sizeof steps / sizeof *steps; s++) {
        lf_bench_call ct = {0};
        lf_transition_req t = {
            .id = cr.id, .to = steps[s][0], .trigger = "bench", .actor = steps[s][1]};
        lf_engine_transition(e, &t, lf_bench_on_result, &ct);
        ok = ct.ok;
    }
    memcpy(id, cr.id, LF_ID_LEN + 1);
    return ok;
}

static int by_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int bench_explain(lf_cli *c, const char *policies, size_t n) {
    lf_engine_config cfg = {.store = "memory:", .policies = policies, .base = c->base};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) {
        fprintf(stderr, "bench: %s\n", err);
        return LF_EXIT_UNAVAILABLE;
    }
    lf_engine_set_log(e, lf_bench_log, NULL);
    typedef char rid[LF_ID_LEN + 1];
    rid *ids = lf_xcalloc(n, sizeof *ids);
    uint64_t *ex = lf_xcalloc(n, sizeof *ex), *dry = lf_xcalloc(n, sizeof *dry);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "bench-explain-%zu", i);
        ok = approved(e, ref, ids[i]);
    }
    for (size_t i = 0; i < n && ok; i++) {
        bool done = false;
        lf_explain_req req = {.id = ids[i], .actor = "bot"};
        uint64_t t0 = lf_mono_ns();
        lf_engine_explain(e, &req, on_text, &done);
        uint64_t t1 = lf_mono_ns();
        lf_bench_call d = {0};
        lf_transition_req t = {.id = ids[i],
                               .to = "merged",
                               .trigger = "explain",
                               .actor = "bot",
                               .dry_run = true};
        lf_engine_transition(e, &t, lf_bench_on_result, &d);
        uint64_t t2 = lf_mono_ns();
        ok = done && d.done;
        ex[i] = t1 - t0;
        dry[i] = t2 - t1;
    }
    lf_engine_free(e);
    if (ok) {
        qsort(ex, n, sizeof *ex, by_u64);
        qsort(dry, n, sizeof *dry, by_u64);
        printf(
            "governance: explain of a record at approved (shipped policies): p50 %.1f us, "
            "p99 %.1f us vs one dry run of its merge p50 %.1f us, p99 %.1f us\n",
            (double)ex[n / 2] / 1e3, (double)ex[n * 99 / 100] / 1e3,
            (double)dry[n / 2] / 1e3, (double)dry[n * 99 / 100] / 1e3);
    }
    free(ids);
    free(ex);
    free(dry);
    return ok ? LF_EXIT_OK : LF_EXIT_FAILURE;
}

/* ---- replay ------------------------------------------------------------ */

/* About `entries` lines of LoopForge's happy path (with some review paths
 * and denials among them) written through the engine, then dumped. */
static int make_journal(lf_cli *c, const char *policies, const char *path,
                        size_t entries) {
    lf_engine_config cfg = {.store = "memory:", .policies = policies, .base = c->base};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) return -1;
    lf_engine_set_log(e, lf_bench_log, NULL);
    static const char *const steps[] = {"task_queued", "pr_created", "ci_pending",
                                        "ci_passed",   "merged",     "closed"};
    bool ok = true;
    for (size_t i = 0; ok; i++) {
        lf_stats st;
        lf_engine_stats(e, &st);
        if (st.appended >= entries) break;
        char ref[64];
        snprintf(ref, sizeof ref, "bench-replay-%zu", i);
        lf_bench_call cr = {0};
        lf_create_req req = {.ref = ref, .auto_merge = i % 4 != 0, .actor = "bench"};
        lf_engine_create(e, &req, lf_bench_on_result, &cr);
        ok = cr.ok;
        for (size_t s = 0; ok && s < sizeof steps / sizeof *steps; s++) {
            lf_bench_call ct = {0};
            lf_transition_req t = {
                .id = cr.id, .to = steps[s], .trigger = "bench", .actor = "bench"};
            lf_engine_transition(e, &t, lf_bench_on_result, &ct);
            /* Without auto_merge the hook routes the record to review and
             * the merge is refused: a denial, recorded; carry on. */
            if (!ct.ok && i % 4 == 0) break;
            ok = ct.ok;
        }
    }
    if (ok && lf_bench_dump_log(e, path) != 0) ok = false;
    lf_engine_free(e);
    return ok ? 0 : -1;
}

static void no_change(const lf_replay_change *x, void *arg) {
    (void)x;
    (*(size_t *)arg)++;
}

static int bench_replay(lf_cli *c, const char *dir, const char *policies,
                        size_t entries) {
    char path[4300];
    snprintf(path, sizeof path, "%s/replay.journal", dir);
    if (make_journal(c, policies, path, entries) != 0) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        return LF_EXIT_FAILURE;
    }
    lf_buf problems = LF_BUF_INIT;
    lf_rules *rules = lf_rules_load(policies, &problems);
    lf_buf_free(&problems);
    FILE *f = fopen(path, "r");
    if (!rules || !f) {
        if (f) fclose(f);
        lf_rules_free(rules);
        unlink(path);
        return LF_EXIT_FAILURE;
    }
    char *line = NULL, err[512] = "";
    size_t cap = 0, changes = 0, lines = 0;
    ssize_t len;
    /* The reference: every line parsed, nothing else. */
    uint64_t t0 = lf_mono_ns();
    while ((len = getline(&line, &cap, f)) > 0) {
        lf_entry_doc doc;
        if (lf_entry_read(line, (size_t)len - 1, &doc, err, sizeof err) == 0)
            lf_entry_doc_free(&doc);
        lines++;
    }
    double parse_s = (double)(lf_mono_ns() - t0) / 1e9;
    rewind(f);
    lf_replay_opts o = {.fn = no_change, .arg = &changes};
    lf_replay *r = lf_replay_new(rules, &o);
    bool ok = true;
    t0 = lf_mono_ns();
    while (ok && (len = getline(&line, &cap, f)) > 0)
        ok = lf_replay_feed(r, line, (size_t)len - 1, err, sizeof err) == 0;
    double replay_s = (double)(lf_mono_ns() - t0) / 1e9;
    const lf_replay_stats *st = lf_replay_result(r);
    if (ok)
        printf(
            "governance: replay of %zu entries under the shipped policies: %.0f requests/s "
            "(%" PRIu64 " requests, %zu would change; target >= 200000) vs %.0f lines/s "
            "parsing alone\n",
            lines, (double)st->replayed / replay_s, st->replayed, changes,
            (double)lines / parse_s);
    else fprintf(stderr, "bench: replay: %s\n", err);
    lf_replay_free(r);
    lf_rules_free(rules);
    free(line);
    fclose(f);
    unlink(path);
    return ok && changes == 0 ? LF_EXIT_OK : LF_EXIT_FAILURE;
}

/* ---- budgets ------------------------------------------------------------- */

/* Two workflows of one shape; `budgeted` has a budget per principal on
 * every state (never spent: the cost of counting, not of refusing). */
static const char BUDGETED[] =
    "local function wf(name, b)\n"
    "  local e, budgets = {}, nil\n"
    "  for i = 0, 5 do e[#e + 1] = { 's' .. i, 's' .. (i + 1) } end\n"
    "  if b then\n"
    "    budgets = {}\n"
    "    for i = 1, 6 do budgets['s' .. i] = { { per = 'principal', max = 1000000000, "
    "within = '1h' } } end\n"
    "  end\n"
    "  return workflow { name = name, states = { 's0', 's1', 's2', 's3', 's4', 's5', 's6' },\n"
    "    initial = 's0', terminal = { 's6' }, edges = e, budgets = budgets }\n"
    "end\n"
    "return { wf('loopforge', false), wf('budgeted', true) }\n";

static double walk_wf(lf_cli *c, const char *policies, const char *wf, size_t n) {
    static const char *const st[] = {"s1", "s2", "s3", "s4", "s5", "s6"};
    lf_engine_config cfg = {.store = "memory:", .policies = policies, .base = c->base};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) return -1;
    lf_engine_set_log(e, lf_bench_log, NULL);
    bool ok = true;
    uint64_t t0 = lf_mono_ns();
    for (size_t i = 0; i < n && ok; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "bench-budget-%zu", i);
        lf_bench_call cr = {0};
        lf_create_req req = {.ref = ref, .workflow = wf, .actor = "bench"};
        lf_engine_create(e, &req, lf_bench_on_result, &cr);
        ok = cr.ok;
        for (size_t s = 0; ok && s < 6; s++) {
            lf_bench_call ct = {0};
            lf_transition_req t = {
                .id = cr.id, .to = st[s], .trigger = "go", .actor = "bench"};
            lf_engine_transition(e, &t, lf_bench_on_result, &ct);
            ok = ct.ok;
        }
    }
    double s = (double)(lf_mono_ns() - t0) / 1e9;
    lf_engine_free(e);
    return ok ? s : -1;
}

static int bench_budgets(lf_cli *c, const char *dir, size_t n) {
    char pol[2300], wfdir[2400], file[2500];
    snprintf(pol, sizeof pol, "%s/budgets", dir);
    snprintf(wfdir, sizeof wfdir, "%s/workflows", pol);
    snprintf(file, sizeof file, "%s/b.lua", wfdir);
    FILE *f = NULL;
    if (mkdir(pol, 0700) || mkdir(wfdir, 0700) || !(f = fopen(file, "w")) ||
        fputs(BUDGETED, f) < 0 || fclose(f))
        return LF_EXIT_UNAVAILABLE;
    double plain = 0, budgeted = 0;
    for (int r = 0; r < 3; r++) {
        double a = walk_wf(c, pol, "loopforge", n), b = walk_wf(c, pol, "budgeted", n);
        if (a < 0 || b < 0) return LF_EXIT_FAILURE;
        if (!plain || a < plain) plain = a;
        if (!budgeted || b < budgeted) budgeted = b;
    }
    double tr = (double)n * 6;
    printf(
        "governance: a budget on every state: %.0f transitions/s vs %.0f without: %.2f us "
        "added per transition (target <= 1 us)\n",
        tr / budgeted, tr / plain, (budgeted - plain) * 1e6 / tr);
    return LF_EXIT_OK;
}

int lf_bench_governance(lf_cli *c, const char *dir, const char *policies, size_t records,
                        size_t entries) {
    int rc = bench_explain(c, policies, records);
    if (rc == LF_EXIT_OK) rc = bench_budgets(c, dir, records * 5);
    if (rc == LF_EXIT_OK) rc = bench_replay(c, dir, policies, entries);
    fflush(stdout);
    return rc;
}
