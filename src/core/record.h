/* record.h -- a lifecycle record (LoopForge's LoopRecord) and the fold
 * that builds it from audit entries.
 *
 * The JSON form keeps LoopForge's `to_dict` key order exactly:
 *   record_id ref ref_number repo pr_url pr_number state auto_merge
 *   ci_status transitions labels created_at updated_at closed_at
 * followed by our additions: workflow version metadata aliases [forge]
 * [parent] [timers]. Each
 * transition is {from_state, to_state, trigger, timestamp, metadata, actor}.
 * Aliases are other names a record is found by besides its ref (e.g.
 * "pr:owner/repo#2", "sha:<head sha>"), added by transitions. */
#ifndef LF_RECORD_H
#define LF_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "clock.h"
#include "entry.h"

/* One history entry. Its strings live in the record's `hs` block, named
 * by offset (read them with lf_hs): the block grows by realloc and a
 * record is copied with two memcpys. A string equal to one of the two
 * entries before it is stored once -- a history is mostly the same few
 * states, triggers and actors, and at a million records one block per
 * entry was a quarter of the process. */
typedef struct lf_hist {
    uint32_t from_state;            /* LF_HS_NONE for the creation entry */
    uint32_t to_state;
    uint32_t trigger;
    uint32_t actor;
    uint32_t metadata;              /* JSON object text */
    char timestamp[LF_TS_LEN + 1];
} lf_hist;

#define LF_HS_NONE UINT32_MAX

typedef struct lf_record {
    /* What a read by id looks at, first: at a million records each cache
     * line a read misses costs more than the rest of the read. */
    char id[LF_ID_LEN + 1];
    bool deleted;                   /* a tombstone has been applied */
    char *state;                    /* state_in when it fits (a state's
                                       name is almost always short) */
    char state_in[32];
    char *ref;
    int64_t ref_number;
    char *repo;                     /* NULL = null */
    char *pr_url;                   /* NULL = null */
    int64_t pr_number;
    char *ci_status;                /* JSON object text, never NULL */
    lf_hist *hist;
    size_t nhist, caphist;
    char *hs;                       /* the history's strings, each ended by
                                       a NUL */
    uint32_t hs_len, hs_cap;
    char *labels;                   /* JSON object text, never NULL */
    char created_at[LF_TS_LEN + 1];
    char updated_at[LF_TS_LEN + 1];
    char closed_at[LF_TS_LEN + 1];  /* "" = null */
    char *workflow;
    uint64_t version;
    char *metadata;                 /* JSON object text, never NULL */
    char **aliases;                 /* in the order they were added */
    size_t naliases;
    char *forge;                    /* what GitHub told it (core/forge.h):
                                       JSON object text, NULL = nothing */
    char *owner;                    /* who opened it, for an open-records
                                       budget: {"actor","behind"} (JSON),
                                       NULL when its workflow has none */
    char *timers;                   /* its own timers (a hook's schedule{},
                                       an override's review): JSON array of
                                       {due, state, to, trigger, kind, by},
                                       NULL = none */
    int64_t timers_due;             /* the earliest due of timers (us), 0 =
                                       none: what the stores index a record
                                       with timers by */
    char *parent;                   /* the record this one belongs to (a
                                       gate's work unit, an epic's issue),
                                       set at create; NULL = none */
    uint32_t violations;            /* entries that carry a violation (an
                                       observation the rules refused) */
    uint32_t overrides;             /* entries that overrode a guard
                                       (break-glass) */
    /* the flags together, not each padded to 8 bytes: a million records */
    bool has_ref_number, has_pr_number;
    bool auto_merge;
} lf_record;

/* A history string of r (an lf_hist field): NULL for LF_HS_NONE. */
static inline const char *lf_hs(const lf_record *r, uint32_t off) {
    return off == LF_HS_NONE ? NULL : r->hs + off;
}

void lf_record_free(lf_record *r);
/* When the record entered its state: its last history entry's time, us
 * since the epoch (what timers count from). False for a tombstone or a
 * record without history. */
bool lf_record_entered(const lf_record *r, int64_t *us);
/* The open-records counters (workflow `open_records`) a record with an
 * owner belongs to while it is not closed: "open:<len>:<workflow>:a:<actor>"
 * and "open:<len>:<workflow>:p:<behind>". Returns how many (0 without an
 * owner). */
int lf_record_open_keys(const lf_record *r, char keys[2][LF_COUNTER_KEY]);
void lf_open_key(const char *workflow, char who, const char *name, char out[LF_COUNTER_KEY]);
/* History entries from -> to (NULL matches any state). */
size_t lf_record_count(const lf_record *r, const char *from, const char *to);
lf_record *lf_record_dup(const lf_record *r);

/* Folds one entry into a record. For `created`, *rp must be NULL and a
 * new record is allocated; for the other record kinds *rp must be the
 * record, whose version must be e->version - 1 (denied entries do not
 * touch the record at all).
 * Returns 0, or -1 with err set (the record is then unchanged). */
int lf_record_apply(lf_record **rp, const lf_entry *e, char *err, size_t errlen);

void lf_record_to_json(const lf_record *r, lf_buf *out);
/* The same with only the last max_hist transitions (0: all). When some
 * are left out, "transitions_total" (their whole count) follows
 * "aliases", so a reply stays bounded however long a record's history
 * grows; the whole history is in the audit log. */
void lf_record_to_json_tail(const lf_record *r, size_t max_hist, lf_buf *out);
/* Parses the JSON form back (round trip). Returns NULL with err set. */
lf_record *lf_record_from_json(const char *json, size_t len, char *err, size_t errlen);

#endif
