/* forge.c -- a record's knowledge of the forge, the facts that update it
 * and the state it implies (forge.h has the model).
 *
 * The rule everywhere: a fact older than the knowledge never overrides it.
 * "Older" is decided by what the forge gives us to compare: the PR head a
 * CI run or review is for, a run's attempt, and the forge's own timestamps
 * (ISO 8601 in UTC, which compare as strings). */
#include "forge.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

struct lf_forge {
    cJSON *j;
};

/* ---- small helpers ------------------------------------------------------ */

static cJSON *get(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = get(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* o[key], created as an empty object when missing or not an object. */
static cJSON *obj(cJSON *o, const char *key) {
    cJSON *v = get(o, key);
    if (cJSON_IsObject(v)) return v;
    v = cJSON_CreateObject();
    if (get(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
    return v;
}

static void set(cJSON *o, const char *key, cJSON *v) {
    if (!v) v = cJSON_CreateNull();
    if (get(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

static void set_str(cJSON *o, const char *key, const char *s) {
    set(o, key, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}

/* Copies fact[key] to o[key] when the fact has it. */
static void copy(cJSON *o, const cJSON *fact, const char *key) {
    const cJSON *v = get(fact, key);
    if (v && !cJSON_IsNull(v)) set(o, key, cJSON_Duplicate(v, 1));
}

/* a is older than b: both timestamps known and a < b. */
static bool older(const char *a, const char *b) { return a && b && strcmp(a, b) < 0; }

static void short_sha(const char *sha, char out[8]) {
    snprintf(out, 8, "%s", sha ? sha : "?");
}

lf_forge *lf_forge_parse(const char *json) {
    lf_forge *k = lf_xmalloc(sizeof *k);
    k->j = json && *json ? cJSON_Parse(json) : NULL;
    if (!cJSON_IsObject(k->j)) {
        cJSON_Delete(k->j);
        k->j = lf_xptr(cJSON_CreateObject());
    }
    return k;
}

void lf_forge_free(lf_forge *k) {
    if (!k) return;
    cJSON_Delete(k->j);
    free(k);
}

char *lf_forge_json(const lf_forge *k) { return lf_xptr(cJSON_PrintUnformatted(k->j)); }

/* ---- checking a fact ---------------------------------------------------- */

typedef struct field {
    const char *name;
    int type;                   /* cJSON type bits accepted besides null */
    bool required;
} field;

static const field issue_fields[] = {{"action", cJSON_String, true},
                                     {"state_reason", cJSON_String, false},
                                     {NULL, 0, false}};
static const field pr_fields[] = {
    {"action", cJSON_String, true},
    {"number", cJSON_Number, true},
    {"url", cJSON_String, false},
    {"head", cJSON_String, false},
    {"merged", cJSON_True | cJSON_False, false},
    {"merged_by", cJSON_String, false},
    {"merge_sha", cJSON_String, false},
    {"at", cJSON_String, false},
    {"merged_at", cJSON_String, false},
    {"own", cJSON_True | cJSON_False, false},
    {"dismiss_stale", cJSON_True | cJSON_False, false},
    {"require_review", cJSON_String | cJSON_True | cJSON_False, false},
    {NULL, 0, false}};
static const field ci_fields[] = {
    {"sha", cJSON_String, true},         {"key", cJSON_String, true},
    {"name", cJSON_String, false},       {"status", cJSON_String, true},
    {"conclusion", cJSON_String, false}, {"attempt", cJSON_Number, false},
    {"at", cJSON_String, false},         {"required", cJSON_Array | cJSON_Object, false},
    {"app", cJSON_String, false},        {NULL, 0, false}};
static const field review_fields[] = {{"reviewer", cJSON_String, true},
                                      {"state", cJSON_String, true},
                                      {"commit", cJSON_String, false},
                                      {"at", cJSON_String, false},
                                      {NULL, 0, false}};

static const char *const issue_actions[] = {"queued", "closed", "reopened", NULL};
static const char *const pr_actions[] = {"opened", "push", "closed", NULL};
static const char *const ci_statuses[] = {"pending", "completed", NULL};

static bool one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (streq(s, *list)) return true;
    return false;
}

int lf_forge_check(const char *fact, char *err, size_t errlen) {
    cJSON *f = cJSON_Parse(fact);
    const char *kind = str(f, "kind");
    const field *fields = streq(kind, "issue")    ? issue_fields
                          : streq(kind, "pr")     ? pr_fields
                          : streq(kind, "ci")     ? ci_fields
                          : streq(kind, "review") ? review_fields
                                                  : NULL;
    int rc = -1;
    if (!fields) {
        snprintf(err, errlen,
                 "metadata.fact.kind must be issue, pr, ci or review, not %s",
                 kind ? kind : "missing");
        goto out;
    }
    for (const field *d = fields; d->name; d++) {
        const cJSON *v = get(f, d->name);
        if ((!v || cJSON_IsNull(v)) ? d->required : !(v->type & d->type)) {
            snprintf(err, errlen, "metadata.fact.%s is %s for a %s fact", d->name,
                     v && !cJSON_IsNull(v) ? "of the wrong type" : "required", kind);
            goto out;
        }
    }
    const char *action = str(f, "action");
    if ((streq(kind, "issue") && !one_of(action, issue_actions)) ||
        (streq(kind, "pr") && !one_of(action, pr_actions)) ||
        (streq(kind, "ci") && !one_of(str(f, "status"), ci_statuses))) {
        snprintf(err, errlen, "metadata.fact: unknown %s %s '%s'", kind,
                 streq(kind, "ci") ? "status" : "action",
                 streq(kind, "ci") ? str(f, "status") : action);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(f);
    return rc;
}

/* ---- folding facts in --------------------------------------------------- */

static void issue_fact(cJSON *k, const cJSON *f, lf_forge_outcome *o) {
    cJSON *issue = obj(k, "issue");
    const char *action = str(f, "action");
    if (streq(action, "queued")) {
        if (cJSON_IsTrue(get(issue, "queued"))) return;
        set(issue, "queued", cJSON_CreateTrue());
    } else {
        const char *state = streq(action, "closed") ? "closed" : "open";
        if (streq(str(issue, "state"), state)) return;
        set_str(issue, "state", state);
        set_str(issue, "state_reason", str(f, "state_reason"));
    }
    o->changed = true;
}

/* Approvals of commits other than the head stop counting (GitHub's
 * "dismiss stale pull request approvals when new commits are pushed"). */
static void dismiss_stale(cJSON *k, const char *head) {
    cJSON *r;
    cJSON_ArrayForEach(r, obj(k, "reviews")) {
        if (streq(str(r, "state"), "approved") && !streq(str(r, "commit"), head))
            set_str(r, "state", "dismissed");
    }
}

static bool in_replaced(const cJSON *k, double number) {
    const cJSON *r;
    cJSON_ArrayForEach(r, get(k, "replaced")) {
        if (num(r, "number", -1) == number) return true;
    }
    return false;
}

/* A pull request the record did not know becomes its current one; the
 * one it had goes to `replaced`. */
static cJSON *new_pr(cJSON *k, const cJSON *f, lf_forge_outcome *o) {
    cJSON *old = get(k, "pr");
    if (cJSON_IsObject(old)) {
        snprintf(o->note, sizeof o->note, "pull request #%.0f replaces #%.0f",
                 num(f, "number", 0), num(old, "number", 0));
        cJSON *gone = cJSON_CreateObject();
        copy(gone, old, "number");
        copy(gone, old, "url");
        copy(gone, old, "state");
        cJSON *list = get(k, "replaced");
        if (!cJSON_IsArray(list)) {
            list = cJSON_CreateArray();
            set(k, "replaced", list);
        }
        cJSON_AddItemToArray(list, gone);
        o->regression = true;
    }
    cJSON *pr = cJSON_CreateObject();
    copy(pr, f, "number");
    copy(pr, f, "url");
    copy(pr, f, "head");
    set_str(pr, "state", "open");
    set(pr, "pushes", cJSON_CreateNumber(0));
    copy(pr, f, "at");
    set(k, "pr", pr);
    o->changed = o->pr_changed = true;
    return pr;
}

static void pr_fact(cJSON *k, const cJSON *f, lf_forge_outcome *o) {
    const char *action = str(f, "action"), *head = str(f, "head"), *at = str(f, "at");
    const char *known;
    double number = num(f, "number", 0);
    char sha[8];
    if (cJSON_IsTrue(get(f, "own"))) set(k, "own", cJSON_CreateTrue());
    if (get(f, "dismiss_stale")) copy(k, f, "dismiss_stale");
    cJSON *pr = get(k, "pr");
    if (cJSON_IsObject(pr) && num(pr, "number", -1) != number) {
        if (in_replaced(k, number)) {
            snprintf(o->stale, sizeof o->stale,
                     "pull request #%.0f was replaced by #%.0f", number,
                     num(pr, "number", 0));
            return;
        }
        pr = NULL;              /* another PR: it takes the place */
    }
    if (!cJSON_IsObject(pr)) {
        pr = new_pr(k, f, o);
        if (streq(action, "opened")) return;
    } else if (older(at, known = str(pr, "at"))) {
        snprintf(o->stale, sizeof o->stale,
                 "pull request #%.0f: this report (%s) is older than what is known (%s)",
                 number, at, known);
        return;
    }
    if (at) set_str(pr, "at", at);
    if (streq(action, "opened")) {
        if (!streq(str(pr, "state"), "open") || (head && !streq(head, str(pr, "head")))) {
            short_sha(str(pr, "head"), sha);
            snprintf(o->stale, sizeof o->stale,
                     "pull request #%.0f was opened before (it is %s, at %s)", number,
                     str(pr, "state"), sha);
        }
        return;
    }
    if (streq(action, "push")) {
        if (!head || streq(head, str(pr, "head"))) return;
        set_str(pr, "head", head);
        set(pr, "pushes", cJSON_CreateNumber(num(pr, "pushes", 0) + 1));
        if (!cJSON_IsFalse(get(k, "dismiss_stale"))) dismiss_stale(k, head);
        o->changed = o->regression = true;
        return;
    }
    /* closed */
    bool merged = cJSON_IsTrue(get(f, "merged"));
    const char *state = merged ? "merged" : "closed";
    if (streq(str(pr, "state"), state)) return;
    set_str(pr, "state", state);
    if (head && !str(pr, "head")) set_str(pr, "head", head);
    if (merged) {
        copy(pr, f, "merged_by");
        copy(pr, f, "merge_sha");
        copy(pr, f, "merged_at");
        copy(pr, f, "require_review");
    }
    o->changed = true;
}

static int status_rank(const char *s) { return streq(s, "completed") ? 1 : 0; }

static void ci_fact(cJSON *k, const cJSON *f, lf_forge_outcome *o) {
    const char *sha = str(f, "sha"), *key = str(f, "key");
    /* Lua's empty table is an object in JSON: an empty list here. */
    const cJSON *req = get(f, "required");
    if (req) {
        cJSON *list = cJSON_IsArray(req) ? cJSON_Duplicate(req, 1) : cJSON_CreateArray();
        cJSON *had = get(k, "required");
        if (!had || !cJSON_Compare(had, list, 1)) set(k, "required", list);
        else cJSON_Delete(list);
    }
    cJSON *pr = get(k, "pr");
    const char *head = str(pr, "head");
    char s1[8], s2[8];
    cJSON *checks = obj(obj(k, "ci"), sha), *was = get(checks, key);
    /* Attempts compare only when both reports carry one (a check suite's
     * does not, the workflow run reporting the same suite does). */
    const cJSON *fa = get(f, "attempt"), *wa = get(was, "attempt");
    bool attempts = cJSON_IsNumber(fa) && cJSON_IsNumber(wa);
    double attempt = num(f, "attempt", 0), had = num(was, "attempt", 0);
    if (was) {
        const char *at = str(f, "at"), *wat = str(was, "at");
        bool same = streq(str(was, "status"), str(f, "status")) &&
                    streq(str(was, "conclusion"), str(f, "conclusion"));
        bool newer_attempt = attempts && attempt > had, is_stale;
        /* A later attempt wins, then the later time, then (same time)
         * completed over pending. */
        if (attempts && attempt != had) is_stale = attempt < had;
        else if (at && wat && strcmp(at, wat) != 0) is_stale = strcmp(at, wat) < 0;
        else is_stale = status_rank(str(f, "status")) < status_rank(str(was, "status"));
        if (is_stale) {
            snprintf(o->stale, sizeof o->stale,
                     "%s: an older report than the one known (%s%s)",
                     str(was, "name") ? str(was, "name") : key,
                     str(was, "conclusion") ? str(was, "conclusion") : "pending",
                     attempts ? ", a later attempt" : "");
            return;
        }
        if (same && !newer_attempt) goto superseded;
    } else {
        was = cJSON_CreateObject();
        set(checks, key, was);
    }
    /* One check reported by several events (a suite and the workflow run
     * of it): each adds what it knows, none erases a name. */
    copy(was, f, "name");
    copy(was, f, "app");
    set_str(was, "status", str(f, "status"));
    set_str(was, "conclusion", str(f, "conclusion"));
    copy(was, f, "attempt");
    copy(was, f, "at");
    o->changed = true;
superseded:
    /* Recorded either way; it moves nothing unless it is about the head. */
    if (head && !streq(sha, head)) {
        short_sha(sha, s1);
        short_sha(head, s2);
        snprintf(o->stale, sizeof o->stale,
                 "CI for %s, which is no longer the head of pull request #%.0f (%s)", s1,
                 num(pr, "number", 0), s2);
    }
}

static void review_fact(cJSON *k, const cJSON *f, lf_forge_outcome *o) {
    const char *who = str(f, "reviewer"), *commit = str(f, "commit");
    const char *head = str(get(k, "pr"), "head");
    char s1[8], s2[8];
    cJSON *reviews = obj(k, "reviews"), *was = get(reviews, who);
    if (was && older(str(f, "at"), str(was, "at"))) {
        snprintf(o->stale, sizeof o->stale, "%s reviewed again since (%s)", who,
                 str(was, "at"));
        return;
    }
    if (head && commit && !streq(commit, head) && !streq(str(f, "state"), "dismissed")) {
        short_sha(commit, s1);
        short_sha(head, s2);
        snprintf(o->stale, sizeof o->stale,
                 "review of %s, which is no longer the head of the pull request (%s)", s1,
                 s2);
        return;
    }
    if (was && streq(str(was, "state"), str(f, "state")) &&
        streq(str(was, "commit"), commit))
        return;
    cJSON *r = cJSON_CreateObject();
    copy(r, f, "state");
    copy(r, f, "commit");
    copy(r, f, "at");
    set(reviews, who, r);
    o->changed = true;
}

void lf_forge_apply(lf_forge *k, const char *fact, lf_forge_outcome *out) {
    memset(out, 0, sizeof *out);
    cJSON *f = cJSON_Parse(fact);
    const char *kind = str(f, "kind");
    if (streq(kind, "issue")) issue_fact(k->j, f, out);
    else if (streq(kind, "pr")) pr_fact(k->j, f, out);
    else if (streq(kind, "ci")) ci_fact(k->j, f, out);
    else if (streq(kind, "review")) review_fact(k->j, f, out);
    cJSON_Delete(f);
}

/* ---- what the knowledge implies ----------------------------------------- */

typedef enum verdict { CI_NONE, CI_PENDING, CI_FAILED, CI_PASSED } verdict;

static const char *const passes[] = {"success", "neutral", "skipped", NULL};
static const char *const fails[] = {
    "failure",         "timed_out", "cancelled", "startup_failure",
    "action_required", "error",     NULL};

/* A check answers to its name (workflow, check run, status context) and
 * to its app's slug. */
static bool named(const cJSON *c, const char *name) {
    return streq(str(c, "name"), name) || streq(str(c, "app"), name) ||
           streq(c->string, name);
}

static bool required(const cJSON *k, const cJSON *c) {
    const cJSON *req = get(k, "required"), *r;
    if (cJSON_GetArraySize(req) == 0) return true;
    cJSON_ArrayForEach(r, req) {
        if (cJSON_IsString(r) && named(c, r->valuestring)) return true;
    }
    return false;
}

/* One verdict over the checks of a commit: any required failure fails,
 * else any pending (or required but never seen) is pending, else passed. */
static verdict ci_verdict(const cJSON *k, const char *sha) {
    const cJSON *checks = get(get(k, "ci"), sha), *c, *r;
    bool any = false, failed = false, pending = false;
    cJSON_ArrayForEach(c, checks) {
        if (!required(k, c)) continue;
        any = true;
        if (!streq(str(c, "status"), "completed")) pending = true;
        else if (one_of(str(c, "conclusion"), fails)) failed = true;
        else if (!one_of(str(c, "conclusion"), passes)) pending = true;
    }
    cJSON_ArrayForEach(r, get(k, "required")) {
        bool seen = false;
        cJSON_ArrayForEach(c, checks) seen |=
            cJSON_IsString(r) && named(c, r->valuestring);
        if (!seen) pending = true;
    }
    if (failed) return CI_FAILED;
    /* A required check not seen yet keeps CI pending once anything ran. */
    if (pending) return any || cJSON_GetArraySize(checks) > 0 ? CI_PENDING : CI_NONE;
    return any ? CI_PASSED : CI_NONE;
}

static bool approved(const cJSON *k, const char *head) {
    const cJSON *r;
    cJSON_ArrayForEach(r, get(k, "reviews")) {
        if (streq(str(r, "state"), "approved") &&
            (streq(str(r, "commit"), head) || !str(r, "commit") ||
             cJSON_IsFalse(get(k, "dismiss_stale"))))
            return true;
    }
    return false;
}

/* The state an open PR's facts imply. */
static const char *open_pr_state(const cJSON *k, const cJSON *pr) {
    const char *head = str(pr, "head");
    switch (head ? ci_verdict(k, head) : CI_NONE) {
    case CI_NONE: return num(pr, "pushes", 0) > 0 ? "ci_pending" : "pr_created";
    case CI_PENDING: return "ci_pending";
    case CI_FAILED: return "ci_failed";
    case CI_PASSED: return approved(k, head) ? "approved" : "ci_passed";
    }
    return "pr_created";
}

const char *lf_forge_milestone(const lf_forge *k) {
    const cJSON *pr = get(k->j, "pr"), *issue = get(k->j, "issue");
    const char *prs = str(pr, "state");
    bool own = cJSON_IsTrue(get(k->j, "own"));
    /* An issue closed while its PR is still open waits for the PR's fate:
     * the merge usually follows (GitHub closes the issue *because* of it,
     * and may deliver that first). A PR's own record ends with the PR. */
    bool pr_open = streq(prs, "open");
    if ((streq(str(issue, "state"), "closed") && !pr_open) || (own && prs && !pr_open))
        return "closed";
    if (streq(prs, "merged")) return "merged";
    if (pr_open) return open_pr_state(k->j, pr);
    if (cJSON_IsTrue(get(issue, "queued")) || prs) return "task_queued";
    return NULL;
}

bool lf_forge_allows(const lf_forge *k, const char *state) {
    const cJSON *pr = get(k->j, "pr");
    const char *head = str(pr, "head");
    if (streq(state, "ci_passed") || streq(state, "awaiting_review"))
        return head && ci_verdict(k->j, head) == CI_PASSED;
    if (streq(state, "ci_failed")) return head && ci_verdict(k->j, head) == CI_FAILED;
    if (streq(state, "approved")) return head && approved(k->j, head);
    if (streq(state, "merged")) return streq(str(pr, "state"), "merged");
    return true;
}

int lf_forge_merge_unmet(const lf_forge *k, bool auto_merge, lf_buf *unmet) {
    const cJSON *pr = get(k->j, "pr");
    const char *head = str(pr, "head");
    char sha[8];
    int n = 0;
    short_sha(head, sha);
    switch (head ? ci_verdict(k->j, head) : CI_NONE) {
    case CI_PASSED: break;
    case CI_NONE: lf_buf_printf(unmet, "no CI was seen for %s\n", sha), n++; break;
    case CI_PENDING: lf_buf_printf(unmet, "CI had not finished on %s\n", sha), n++; break;
    case CI_FAILED: lf_buf_printf(unmet, "CI failed on %s\n", sha), n++; break;
    }
    const cJSON *rr = get(pr, "require_review");
    bool need = cJSON_IsBool(rr) ? cJSON_IsTrue(rr) : !auto_merge;
    if (need && !(head && approved(k->j, head))) {
        lf_buf_printf(unmet, "no approval of %s\n", sha);
        n++;
    }
    return n;
}

bool lf_forge_merged(const lf_forge *k) {
    return streq(str(get(k->j, "pr"), "state"), "merged");
}

bool lf_forge_pr(const lf_forge *k, int64_t *number, const char **url) {
    const cJSON *pr = get(k->j, "pr");
    if (!cJSON_IsObject(pr)) return false;
    *number = (int64_t)num(pr, "number", 0);
    *url = str(pr, "url");
    return true;
}
