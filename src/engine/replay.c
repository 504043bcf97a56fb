/* replay.c -- "what would last month's requests have met under the new
 * policy set?" (lf_replay): the audit log, streamed line by line, folded
 * into records as it was recorded, and every recorded request (kinds
 * transition, denied, rejected) judged again against the record as it
 * then stood, at its own time, by its own actor and roles, under another
 * policy set: the workflow's edge, its role gates and retry budgets, and
 * every guard. A verdict that differs (allowed -> denied, denied ->
 * allowed, or a denial for another reason) is reported.
 *
 * Read-only by construction (it never sees a store); memory is the folded
 * records, not the log. What it cannot judge again: a children gate (the
 * counts of that moment are not in the log) -- it is left out -- and a
 * guard's annotations, which the recorded metadata already carries. */
#include "replay.h"
#include "../core/entry.h"
#include "../core/map.h"
#include "../core/mem.h"
#include "../core/record.h"
#include "../core/text.h"
#include "../core/workflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

struct lf_replay {
    const lf_rules *rules;
    lf_replay_opts o;
    lf_map recs;                /* id -> lf_record (owned) */
    lf_replay_stats st;
    lf_map by_rule;             /* rule -> rule_count (owned, its key inside) */
};

typedef struct rule_count {
    char *rule;
    size_t n;
} rule_count;

lf_replay *lf_replay_new(const lf_rules *rules, const lf_replay_opts *o) {
    lf_replay *r = lf_xcalloc(1, sizeof *r);
    r->rules = rules;
    r->o = *o;
    return r;
}

void lf_replay_free(lf_replay *r) {
    if (!r) return;
    for (size_t i = 0; i < lf_map_span(&r->recs); i++)
        lf_record_free(lf_map_val(&r->recs, i));
    for (size_t i = 0; i < lf_map_span(&r->by_rule); i++) {
        rule_count *c = lf_map_val(&r->by_rule, i);
        if (!c) continue;
        free(c->rule);
        free(c);
    }
    lf_map_free(&r->recs);
    lf_map_free(&r->by_rule);
    free(r);
}

const lf_replay_stats *lf_replay_result(const lf_replay *r) { return &r->st; }

static int by_name(const void *a, const void *b) {
    return strcmp((*(const rule_count *const *)a)->rule, (*(const rule_count *const *)b)->rule);
}

/* By rule name: the summary reads the same whatever the hash table's
 * layout. */
void lf_replay_rules(const lf_replay *r, void (*fn)(const char *, size_t, void *),
                     void *arg) {
    const rule_count **v = lf_xmalloc((r->by_rule.len + 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < lf_map_span(&r->by_rule); i++) {
        const rule_count *c = lf_map_val(&r->by_rule, i);
        if (c) v[n++] = c;
    }
    qsort(v, n, sizeof *v, by_name);
    for (size_t i = 0; i < n; i++) fn(v[i]->rule, v[i]->n, arg);
    free(v);
}

/* A verdict: "allowed", "denied" or "invalid", and the first deny. */
typedef struct verdict {
    const char *what;
    char *rule, *reason;
} verdict;

static void verdict_free(verdict *v) {
    free(v->rule);
    free(v->reason);
}

/* What the log says was decided. */
static void recorded(const lf_entry *e, verdict *v) {
    memset(v, 0, sizeof *v);
    v->what = e->kind == LF_ENTRY_TRANSITION ? "allowed"
              : e->kind == LF_ENTRY_DENIED   ? "denied"
                                             : "invalid";
    if (e->kind == LF_ENTRY_TRANSITION) return;
    cJSON *ds = cJSON_Parse(e->decisions ? e->decisions : "[]"), *d;
    cJSON_ArrayForEach(d, ds) {
        const char *verdict_s = cJSON_GetStringValue(cJSON_GetObjectItem(d, "verdict"));
        if (verdict_s && strcmp(verdict_s, "deny") == 0) {
            const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(d, "policy"));
            const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(d, "reason"));
            v->rule = p ? lf_xstrdup(p) : NULL;
            v->reason = why ? lf_xstrdup(why) : NULL;
            break;
        }
    }
    cJSON_Delete(ds);
}

/* The entry's authority: the actor's roles (comma separated, or NULL) and
 * whether a break-glass override was asked for. */
static char *authority_roles(const lf_entry *e, bool *override) {
    *override = false;
    if (!e->authority) return NULL;
    cJSON *a = cJSON_Parse(e->authority), *x;
    lf_buf b = LF_BUF_INIT;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(a, "roles")) {
        if (!cJSON_IsString(x)) continue;
        if (b.len) lf_buf_putc(&b, ',');
        lf_buf_puts(&b, x->valuestring);
    }
    *override = cJSON_IsObject(cJSON_GetObjectItem(a, "override"));
    cJSON_Delete(a);
    return b.len ? lf_buf_steal(&b) : (lf_buf_free(&b), NULL);
}

static void deny_with(verdict *v, const char *rule, const char *reason) {
    v->what = "denied";
    v->rule = lf_xstrdup(rule);
    v->reason = lf_xstrdup(reason);
}

/* The same request under the new set. */
static void judge(const lf_replay *r, const lf_record *rec, const lf_entry *e,
                  verdict *v) {
    memset(v, 0, sizeof *v);
    const lf_workflow *wf = lf_rules_workflow(r->rules, rec->workflow);
    lf_buf why = LF_BUF_INIT;
    int from = wf ? lf_workflow_state(wf, rec->state) : -1;
    int to = wf ? lf_workflow_state(wf, e->to_state) : -1;
    bool engine = e->actor && (strncmp(e->actor, "timer:", 6) == 0 ||
                               strncmp(e->actor, "engine:", 7) == 0);
    if (!wf || from < 0 || to < 0 || !lf_workflow_has_edge(wf, from, to) ||
        (lf_workflow_engine_edge(wf, from, to) && !engine)) {
        v->what = "invalid";
        if (!wf) lf_buf_printf(&why, "Unknown workflow: %s", rec->workflow);
        else if (from < 0 || to < 0)
            lf_buf_printf(&why, "workflow %s has no state '%s'", wf->name,
                          from < 0 ? rec->state : e->to_state);
        else lf_workflow_invalid_msg(wf, from, e->to_state, &why);
        v->rule = lf_xprintf("workflow:%s", wf ? wf->name : rec->workflow);
        v->reason = lf_buf_steal(&why);
        return;
    }
    bool override;
    char *roles = authority_roles(e, &override);
    const char *gated =
        engine ? NULL : lf_workflow_gate(wf, from, to, e->actor, roles, &why);
    const lf_retry_def *rt = lf_workflow_retry(wf, from);
    lf_buf rule = LF_BUF_INIT;
    if (gated) {
        lf_buf_printf(&rule, "roles:%s", gated);
    } else if (!engine && rt && rt->to == to &&
               (int)lf_record_count(rec, wf->states[from], wf->states[to]) >= rt->max) {
        lf_buf_printf(&rule, "retries:%s", wf->states[from]);
        lf_buf_printf(&why, "retry budget exhausted (%d of %d retries used)", rt->max,
                      rt->max);
    }
    if (rule.len) {
        deny_with(v, lf_buf_str(&rule), lf_buf_str(&why));
    } else {
        int64_t now = 0;
        lf_ts_parse(e->timestamp, &now);
        /* no workflow or state ids: matched by name */
        lf_eval ev = {.record = rec, .from = rec->state, .to = e->to_state,
                      .trigger = e->trigger, .actor = e->actor, .metadata = e->metadata,
                      .now_us = now, .roles = roles};
        lf_verdict out;
        lf_rules_evaluate((lf_rules *)r->rules, &ev, &out);
        if (out.allow || (override && lf_roles_have(roles, "breakglass")))
            v->what = "allowed";
        else
            deny_with(v, out.decisions[out.denied_by].policy,
                      out.decisions[out.denied_by].reason
                          ? out.decisions[out.denied_by].reason
                          : "denied");
        lf_verdict_free(&out);
    }
    free(roles);
    lf_buf_free(&rule);
    lf_buf_free(&why);
}

static void count_rule(lf_replay *r, const char *rule) {
    rule_count *c = lf_map_get(&r->by_rule, rule);
    if (!c) {
        c = lf_xcalloc(1, sizeof *c);
        c->rule = lf_xstrdup(rule);
        lf_map_put(&r->by_rule, c->rule, c);
    }
    c->n++;
}

static void consider(lf_replay *r, const lf_record *rec, const lf_entry *e) {
    int64_t ts = 0;
    lf_ts_parse(e->timestamp, &ts);
    if ((r->o.record && strcmp(r->o.record, e->record_id) != 0) ||
        (r->o.since && ts < r->o.since) || (r->o.until && ts >= r->o.until))
        return;
    /* Observations were facts, not requests: what broke a rule says so. */
    if (e->violation) return;
    verdict was, now;
    recorded(e, &was);
    judge(r, rec, e, &now);
    r->st.replayed++;
    bool changed = strcmp(was.what, now.what) != 0 ||
                   (strcmp(now.what, "allowed") != 0 &&
                    (!lf_streq_null(was.rule, now.rule) ||
                     !lf_streq_null(was.reason, now.reason)));
    if (changed) {
        r->st.changed++;
        if (strcmp(now.what, "allowed") == 0) r->st.now_allowed++;
        else if (strcmp(was.what, "allowed") == 0) r->st.now_denied++;
        else r->st.other_reason++;
        count_rule(r, now.rule ? now.rule : was.rule ? was.rule : "?");
        lf_replay_change c = {.seq = e->seq,
                              .record_id = e->record_id,
                              .from = rec->state,
                              .to = e->to_state,
                              .trigger = e->trigger,
                              .actor = e->actor,
                              .timestamp = e->timestamp,
                              .was = was.what,
                              .was_rule = was.rule,
                              .was_reason = was.reason,
                              .now = now.what,
                              .now_rule = now.rule,
                              .now_reason = now.reason};
        r->o.fn(&c, r->o.arg);
    }
    verdict_free(&was);
    verdict_free(&now);
}

int lf_replay_feed(lf_replay *r, const char *line, size_t len, char *err, size_t errlen) {
    lf_entry_doc doc;
    if (lf_entry_read(line, len, &doc, err, errlen) != 0) return -1;
    const lf_entry *e = &doc.e;
    r->st.entries++;
    int rc = 0;
    if (!lf_entry_global(e->kind)) {
        lf_record *rec = lf_map_get(&r->recs, e->record_id);
        if (rec && (e->kind == LF_ENTRY_TRANSITION || e->kind == LF_ENTRY_DENIED ||
                    e->kind == LF_ENTRY_REJECTED))
            consider(r, rec, e);
        if (e->kind == LF_ENTRY_CREATED) {
            lf_record *n = NULL;
            if ((rc = lf_record_apply(&n, e, err, errlen)) == 0)
                lf_map_put(&r->recs, n->id, n);
        } else if (rec) {
            rc = lf_record_apply(&rec, e, err, errlen);
        }
    }
    lf_entry_doc_free(&doc);
    return rc;
}
