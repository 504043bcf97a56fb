/* metrics.c -- what GET /metrics shows, in the Prometheus text format
 * (version 0.0.4): the server's own counters (requests by route and
 * status, latency histograms, webhook deliveries) and the engine's
 * (lf_engine_stats: transitions by outcome, policy evaluation latency,
 * hooks, reloads, violations).
 *
 * Every label set is fixed in advance (routes, statuses, known GitHub
 * events), so no request, however odd, can grow the exposition. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "internal.h"

static const double bounds_s[LF_HIST_BUCKETS - 1] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,
};

static const char *const op_names[LF_OP__COUNT] = {
    "create", "transition", "get", "find_by_ref", "list", "audit", "reload", "delete",
};

static const char *const wh_results[LF_WH__COUNT] = {
    "ok",      "duplicate", "ignored", "ping",      "unauthorized",
    "invalid", "error",     "late",    "unchanged", "stale",
};

static const char *const wh_events[LF_WH_EVENTS + 1] = {
    "ping",
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "check_suite",
    "check_run",
    "status",
    "workflow_run",
    "push",
    "other",
};

void lf_timing_observe(lf_timing *h, double seconds) {
    int i = 0;
    while (i < LF_HIST_BUCKETS - 1 && seconds > bounds_s[i]) i++;
    h->counts[i]++;
    h->n++;
    h->sum += seconds;
}

void lf_metrics_webhook(lf_metrics *m, const char *event, int result) {
    int i = 0;
    while (i < LF_WH_EVENTS && (!event || strcmp(event, wh_events[i]) != 0)) i++;
    m->webhooks[i][result]++;
}

static void head(lf_buf *b, const char *name, const char *type, const char *help) {
    lf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram from per-bucket counts; `labels` is "" or `k="v",`. */
static void hist(lf_buf *b, const char *name, const char *labels, const uint64_t *counts,
                 int nbuckets, double (*bound)(int), uint64_t n, double sum) {
    uint64_t cum = 0;
    for (int i = 0; i < nbuckets; i++) {
        cum += counts[i];
        double le = bound(i);
        if (isinf(le))
            lf_buf_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                          (unsigned long long)cum);
        else
            lf_buf_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, le,
                          (unsigned long long)cum);
    }
    size_t ll = strlen(labels);
    if (ll)
        lf_buf_printf(b, "%s_sum{%.*s} %.9f\n%s_count{%.*s} %llu\n", name, (int)ll - 1,
                      labels, sum, name, (int)ll - 1, labels, (unsigned long long)n);
    else
        lf_buf_printf(b, "%s_sum %.9f\n%s_count %llu\n", name, sum, name,
                      (unsigned long long)n);
}

static double server_bound(int i) {
    return i < LF_HIST_BUCKETS - 1 ? bounds_s[i] : INFINITY;
}

static double engine_bound(int i) { return lf_latency_bound_us(i) / 1e6; }

static void counter(lf_buf *b, const char *name, const char *help, uint64_t v) {
    head(b, name, "counter", help);
    lf_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void render_http(lf_server *s, lf_buf *b) {
    const lf_metrics *m = &s->metrics;
    head(b, "loopforge_http_requests_total", "counter",
         "HTTP requests answered, by method, route and status.");
    for (int rt = 0; rt <= LF_RT__COUNT; rt++)
        for (int st = 0; st < 600; st++) {
            if (!m->requests[rt][st]) continue;
            lf_buf_printf(b,
                          "loopforge_http_requests_total{method=\"%s\",route=\"%s\","
                          "status=\"%d\"} %llu\n",
                          rt < LF_RT__COUNT
                              ? (lf_routes[rt].method == EVHTTP_REQ_GET ? "GET" : "POST")
                              : "*",
                          rt < LF_RT__COUNT ? lf_routes[rt].pattern : "unmatched", st,
                          (unsigned long long)m->requests[rt][st]);
        }
    head(b, "loopforge_http_request_duration_seconds", "histogram",
         "Time from a request's arrival to its reply being queued.");
    hist(b, "loopforge_http_request_duration_seconds", "", m->request_seconds.counts,
         LF_HIST_BUCKETS, server_bound, m->request_seconds.n, m->request_seconds.sum);
    head(b, "loopforge_store_seconds", "histogram",
         "Engine calls made by the server, by operation (store round trips "
         "included).");
    for (int op = 0; op < LF_OP__COUNT; op++) {
        char labels[48];
        snprintf(labels, sizeof labels, "op=\"%s\",", op_names[op]);
        hist(b, "loopforge_store_seconds", labels, m->store_seconds[op].counts,
             LF_HIST_BUCKETS, server_bound, m->store_seconds[op].n,
             m->store_seconds[op].sum);
    }
    head(b, "loopforge_http_connections", "gauge", "Open client connections.");
    lf_buf_printf(b, "loopforge_http_connections %zu\n", s->nconns);
    head(b, "loopforge_http_connections_cut_total", "counter",
         "Connections the server ended: slow (no whole request within --timeout) "
         "or evicted (the oldest idle one, at --max-connections).");
    lf_buf_printf(b,
                  "loopforge_http_connections_cut_total{reason=\"slow\"} %llu\n"
                  "loopforge_http_connections_cut_total{reason=\"evicted\"} %llu\n",
                  (unsigned long long)s->metrics.connections_slow,
                  (unsigned long long)s->metrics.connections_evicted);
    head(b, "loopforge_http_inflight_requests", "gauge", "Requests not yet answered.");
    lf_buf_printf(b, "loopforge_http_inflight_requests %zu\n", s->inflight);
}

static void render_webhooks(const lf_metrics *m, lf_buf *b) {
    head(b, "loopforge_webhook_deliveries_total", "counter",
         "GitHub deliveries by event and result.");
    for (int ev = 0; ev <= LF_WH_EVENTS; ev++)
        for (int res = 0; res < LF_WH__COUNT; res++)
            if (m->webhooks[ev][res])
                lf_buf_printf(b,
                              "loopforge_webhook_deliveries_total{event=\"%s\","
                              "result=\"%s\"} %llu\n",
                              wh_events[ev], wh_results[res],
                              (unsigned long long)m->webhooks[ev][res]);
}

static void render_engine(lf_server *s, lf_buf *b) {
    lf_stats st;
    lf_engine_stats(s->engine, &st);
    head(b, "loopforge_transitions_total", "counter",
         "Transition requests by outcome code.");
    for (int c = 0; c < LF_CODE__COUNT; c++)
        lf_buf_printf(b, "loopforge_transitions_total{code=\"%s\"} %llu\n",
                      lf_code_name((lf_code)c), (unsigned long long)st.transitions[c]);
    head(b, "loopforge_policy_evaluation_seconds", "histogram",
         "Time spent in guards per transition that ran at least one.");
    hist(b, "loopforge_policy_evaluation_seconds", "", st.evaluation_hist,
         LF_LATENCY_BUCKETS, engine_bound, st.evaluations, (double)st.guard_ns / 1e9);
    counter(b, "loopforge_guard_evaluations_total", "Guard calls.", st.guard_evals);
    counter(b, "loopforge_hooks_run_total", "Hook calls.", st.hooks_run);
    counter(b, "loopforge_hook_errors_total",
            "Hook calls that failed (logged, never "
            "rolled back).",
            st.hook_errors);
    counter(b, "loopforge_followups_total", "Follow-up transitions hooks asked for.",
            st.followups);
    counter(b, "loopforge_violations_total",
            "Observations the rules would have "
            "refused, recorded anyway and marked.",
            st.violations);
    counter(b, "loopforge_timer_records_total",
            "Records the timers' ticks listed to find what is due.", st.timer_records);
    counter(b, "loopforge_store_lock_waits_total",
            "Store operations that waited for the journal's lock another process held.",
            st.lock_waits);
    counter(b, "loopforge_store_lock_timeouts_total",
            "Store operations that gave up waiting for the journal's lock after 5 s, "
            "changing nothing (a process stopped while holding it?).",
            st.lock_timeouts);
    counter(b, "loopforge_store_flushes_total",
            "The journal's fdatasyncs that made commits durable (group commit: one covers "
            "every commit written before it).",
            st.flushes);
    counter(b, "loopforge_duplicates_total",
            "Requests answered from a repeated "
            "idempotency key.",
            st.duplicates);
    head(b, "loopforge_policy_reloads_total", "counter", "Policy reloads by result.");
    lf_buf_printf(b,
                  "loopforge_policy_reloads_total{result=\"ok\"} %llu\n"
                  "loopforge_policy_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)st.reloads_ok,
                  (unsigned long long)st.reloads_failed);
    head(b, "loopforge_policy_generation_info", "gauge",
         "The policy set generation serving now.");
    lf_buf_printf(b, "loopforge_policy_generation_info{generation=\"%s\"} 1\n",
                  lf_engine_generation(s->engine));
}

void lf_metrics_render(lf_server *s, lf_buf *b) {
    head(b, "loopforge_build_info", "gauge", "The running version.");
    lf_buf_printf(b, "loopforge_build_info{version=\"%s\"} 1\n", lf_version());
    head(b, "loopforge_uptime_seconds", "gauge", "Seconds since the server started.");
    lf_buf_printf(b, "loopforge_uptime_seconds %.3f\n",
                  (double)(lf_mono_ns() - s->started_ns) / 1e9);
    render_http(s, b);
    render_webhooks(&s->metrics, b);
    head(b, "loopforge_token_reloads_total", "counter", "Tokens file reloads by result.");
    lf_buf_printf(b,
                  "loopforge_token_reloads_total{result=\"ok\"} %llu\n"
                  "loopforge_token_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)s->metrics.token_reloads_ok,
                  (unsigned long long)s->metrics.token_reloads_failed);
    render_engine(s, b);
}
