/* replay.h -- a recorded history judged again under another policy set
 * (replay.c; `loopforge replay`). */
#ifndef LF_REPLAY_H
#define LF_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include "../rules/rules.h"

/* One request whose verdict would differ. `was` and `now` are "allowed",
 * "denied" or "invalid"; the rules and reasons those of the first deny
 * (NULL when allowed). Valid during the callback only. */
typedef struct lf_replay_change {
    uint64_t seq;
    const char *record_id, *from, *to, *trigger, *actor, *timestamp;
    const char *was, *was_rule, *was_reason;
    const char *now, *now_rule, *now_reason;
} lf_replay_change;

typedef struct lf_replay_opts {
    const char *record;         /* only this record's requests, or NULL */
    int64_t since, until;       /* µs since the epoch; 0 = open */
    void (*fn)(const lf_replay_change *c, void *arg);
    void *arg;
} lf_replay_opts;

typedef struct lf_replay_stats {
    uint64_t entries, replayed, changed;
    uint64_t now_denied, now_allowed, other_reason;
} lf_replay_stats;

typedef struct lf_replay lf_replay;

/* `rules` is borrowed and must outlive the replay. */
lf_replay *lf_replay_new(const lf_rules *rules, const lf_replay_opts *o);
/* Feeds the next stored line of the log (no newline), in seq order.
 * Returns 0, or -1 with the reason in err (a line that does not parse or
 * fold). */
int lf_replay_feed(lf_replay *r, const char *line, size_t len, char *err, size_t errlen);
const lf_replay_stats *lf_replay_result(const lf_replay *r);
/* Calls fn(rule, count) for every rule that decided a change. */
void lf_replay_rules(const lf_replay *r, void (*fn)(const char *, size_t, void *),
                     void *arg);
void lf_replay_free(lf_replay *r);

#endif
