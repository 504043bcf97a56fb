/* forge.h -- what the forge (GitHub) has told a record: its facts, and the
 * lifecycle state they imply.
 *
 * A record's knowledge is a JSON object (the record's `forge` member):
 *
 *   issue     {state: "open"|"closed", queued, state_reason}
 *   pr        the current pull request: {number, url, head, state:
 *             "open"|"merged"|"closed", pushes, at, merged_sha, merged_by,
 *             merged_at}
 *   replaced  [{number, url, state}] pull requests a later one replaced
 *   ci        {<sha>: {<check key>: {name, status: "pending"|"completed",
 *             conclusion, attempt, at}}}
 *   required  check names that must pass (empty: every check seen)
 *   reviews   {<reviewer>: {state, commit, at}}
 *   dismiss_stale   a push dismisses approvals of older commits
 *   own       the record is the pull request's own (it links no issue)
 *
 * A fact (a route's `metadata.fact`) is one thing the forge reported:
 *
 *   {kind: "issue", action: "queued"|"closed"|"reopened", state_reason}
 *   {kind: "pr", action: "opened"|"push"|"closed", number, url, head,
 *    merged, merged_by, at, own, dismiss_stale}
 *   {kind: "ci", sha, key, name, status, conclusion, attempt, at, required}
 *   {kind: "review", reviewer, state, commit, at}
 *
 * Folding a fact in says whether it taught anything, whether it was older
 * than what was known (stale: a superseded commit's CI, a lower attempt,
 * a review of an older commit, a repeated "opened" after a push), and the
 * state the knowledge now implies. The engine moves the record forward
 * to that state (src/engine/engine.c); the names are LoopForge's states,
 * so any workflow that uses them follows GitHub. Pure: no I/O. */
#ifndef LF_FORGE_H
#define LF_FORGE_H

#include <stdbool.h>
#include <stdint.h>
#include "buf.h"

typedef struct lf_forge lf_forge;

typedef struct lf_forge_outcome {
    bool changed;           /* the knowledge is not what it was */
    char stale[256];        /* why the fact is older than the knowledge, or "" */
    bool regression;        /* a new head or a new PR: the state may go back */
    char note[256];         /* what else happened ("replaces PR #1"), or "" */
    bool pr_changed;        /* the current PR is another one */
} lf_forge_outcome;

/* Knowledge from a record's `forge` text (NULL or "" for none). Never
 * NULL: unreadable text reads as no knowledge. */
lf_forge *lf_forge_parse(const char *json);
void lf_forge_free(lf_forge *k);
/* The knowledge as compact JSON; caller frees. */
char *lf_forge_json(const lf_forge *k);

/* Checks a fact's shape. Returns 0, or -1 with err naming the field. */
int lf_forge_check(const char *fact, char *err, size_t errlen);
/* Folds a checked fact into k. */
void lf_forge_apply(lf_forge *k, const char *fact, lf_forge_outcome *out);

/* The state the knowledge implies ("closed", "merged", "approved",
 * "ci_passed", "ci_failed", "ci_pending", "pr_created", "task_queued"),
 * or NULL when it implies nothing beyond a new record. */
const char *lf_forge_milestone(const lf_forge *k);
/* Whether the record may be said to have passed through `state` on the
 * way to what the knowledge implies: verdict states need their facts
 * (ci_passed a passing CI, approved an approval of the head); the others
 * are steps GitHub never reports to a repository webhook. */
bool lf_forge_allows(const lf_forge *k, const char *state);
/* What a merge of the current PR lacks: one line per unmet requirement
 * appended to `unmet` ("CI has not passed on abc1234", "no approval of
 * abc1234"). Review is required when the merge fact said so, or (its
 * default, "auto") when the record is not auto_merge. Returns how many. */
int lf_forge_merge_unmet(const lf_forge *k, bool auto_merge, lf_buf *unmet);
/* Whether the current PR was merged. */
bool lf_forge_merged(const lf_forge *k);
/* The current PR: number and url, false if there is none. */
bool lf_forge_pr(const lf_forge *k, int64_t *number, const char **url);

#endif
