/* entry.h -- audit entries: their canonical serialization and the hash
 * chain.
 *
 * An entry is the unit of truth: every store persists entries, and a
 * record is nothing but the fold of its entries (see lf_record_apply).
 * The canonical serialization is one line of JSON with keys in a fixed
 * order, written by lf_entry_write_canonical; `hash` is the sha256 of
 * exactly those bytes (the line without its hash key), and `prev`
 * is the hash of the entry before it in the global log, so modifying,
 * deleting, inserting or reordering any entry breaks the chain.
 *
 * The line layout (keys in this order; optional keys omitted when absent):
 *   seq record_id kind version from_state to_state trigger actor timestamp
 *   metadata decisions policy_set [record] [changes] [violation] [authority]
 *   [idempotency_key] prev hash
 */
#ifndef LF_ENTRY_H
#define LF_ENTRY_H

#include <stdbool.h>
#include <stdint.h>
#include "buf.h"
#include "clock.h"

#define LF_HASH_LEN 64
#define LF_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

typedef enum lf_entry_kind {
    LF_ENTRY_CREATED = 0,
    LF_ENTRY_TRANSITION,
    LF_ENTRY_DENIED,        /* an attempt a policy refused: no record change */
    LF_ENTRY_DELETED,       /* tombstone: the record leaves every index */
    LF_ENTRY_POLICY_LOADED, /* no record */
    LF_ENTRY_REJECTED,      /* an attempt the workflow graph refused: no
                               record change */
    LF_ENTRY_OBSERVED,      /* a fact that did not move the state: it may
                               change the record's knowledge (forge) and
                               aliases, never its state */
    LF_ENTRY_CHECKPOINT,    /* no record: a signed statement of the log's
                               first `version` entries (tree size, Merkle
                               root, head), committed as a later entry,
                               at most LF_CHECKPOINT_LAG after them
                               (verify.h) */
    LF_ENTRY_NOTED,         /* the record's own timers changed (a hook
                               scheduled one, an override was acknowledged):
                               never its state, not in its history */
    LF_ENTRY__COUNT
} lf_entry_kind;

/* Entries that belong to no record. */
static inline bool lf_entry_global(int kind) {
    return kind == LF_ENTRY_POLICY_LOADED || kind == LF_ENTRY_CHECKPOINT;
}

/* A limit the store checks as it commits the entry, atomically with the
 * write (never written to the log): a budget of the state a transition
 * enters, an open_records cap of a create. Requests in flight together
 * would each read the counts before any of them commits, and all of them
 * could pass a budget that allowed one: this check is the one that holds
 * (the engine counts first only where it must say why). kind 'c': the
 * entry's counter `index` (lf_entry_counters' order: 0 the actor's, 1
 * the person's) must hold fewer than `max` times at or after `since`
 * (us); kind 'o': the open-records set `index` of the record a created
 * entry makes (lf_record_open_keys' order) fewer than `max` records; kind
 * 'k': every child of the entry's record in one of `states` (nstates of
 * them, borrowed until the commit's callback: a workflow's children
 * gate). A commit that would pass one fails LF_DENIED, writing nothing
 * (the engine then counts again and refuses as it would have). */
#define LF_ENTRY_LIMITS 5            /* a state's budgets (4 at most), its gate */
#define LF_ENTRY_BUDGETS (LF_ENTRY_LIMITS - 1)
typedef struct lf_entry_limit {
    char kind;
    int index, max;
    int64_t since;
    char *const *states;
    int nstates;
} lf_entry_limit;

/* All pointers are borrowed: the entry never owns its strings, so the
 * engine can build one on the stack without copying. lf_entry_parse
 * gives them a home (lf_entry_doc). */
typedef struct lf_entry {
    uint64_t seq;                   /* set by the store when sealing */
    const char *record_id;          /* NULL for policy_loaded */
    lf_entry_kind kind;
    uint64_t version;               /* record version after this entry */
    const char *from_state;         /* NULL for created */
    const char *to_state;
    const char *trigger;
    const char *actor;
    char timestamp[LF_TS_LEN + 1];
    const char *metadata;           /* JSON object text; NULL means {} */
    const char *decisions;          /* JSON array text; NULL means [] */
    const char *policy_set;         /* generation id, or NULL */
    const char *record;             /* created: initial fields (JSON object) */
    const char *changes;            /* record fields this entry sets (JSON
                                       object: closed_at, pr_url, pr_number,
                                       ci_status, labels, aliases), or NULL */
    const char *violation;          /* an observation the rules refused:
                                       {"rule":…,"reason":…}, or NULL */
    const char *authority;          /* who acted with what right (JSON
                                       object: roles, source, override),
                                       or NULL */
    const char *idempotency_key;    /* the request's key, or NULL */
    const char *request;            /* with a key: sha256 hex of what was
                                       asked (op, record, target, trigger,
                                       metadata), so a key reused for
                                       another request is refused */
    char prev[LF_HASH_LEN + 1];
    char hash[LF_HASH_LEN + 1];
    lf_entry_limit limits[LF_ENTRY_LIMITS];     /* not written */
    int nlimits;
} lf_entry;

/* Gives every string of e a home of its own: copies them into one block,
 * which the caller frees once e is no longer used, and points e at it. */
char *lf_entry_own(lf_entry *e);

const char *lf_entry_kind_name(lf_entry_kind k);
int lf_entry_kind_parse(const char *s);    /* -1 if unknown */

/* Canonical serialization without the hash key (what gets hashed). */
void lf_entry_write_canonical(const lf_entry *e, lf_buf *out);

/* Assigns seq and prev, computes hash, and writes the full line (with the
 * hash, without a newline) to `line` (replacing its contents). */
void lf_entry_seal(lf_entry *e, uint64_t seq, const char *prev, lf_buf *line);
/* line from `from` on is an entry's canonical serialization (what gets
 * hashed, ending in its closing brace): hashes it into hash and puts the
 * hash key in place of the brace, as lf_entry_seal does. */
void lf_entry_close_hash(lf_buf *line, size_t from, char hash[LF_HASH_LEN + 1]);
/* The bytes a sealed line's hash key takes at its end: ,"hash":"…"} */
#define LF_HASH_SUFFIX_LEN (sizeof(",\"hash\":\"") - 1 + LF_HASH_LEN + 2)

/* A parsed line. Strings in `e` point into this document. */
typedef struct lf_entry_doc {
    lf_entry e;
    void *json;                 /* cJSON root */
    char *metadata, *decisions, *record, *changes, *violation,
        *authority; /* normalized */
    char *arena;                /* lf_entry_read: every string, in one block
                                   (NULL: lf_entry_read_into's, the caller's) */
} lf_entry_doc;

/* Parses one line. Returns 0, or -1 with a message in err. The strict
 * parse refuses unknown kinds, missing keys and wrong types. */
int lf_entry_parse(const char *line, size_t len, lf_entry_doc *doc, char *err,
                   size_t errlen);
void lf_entry_doc_free(lf_entry_doc *doc);

/* Budget counters (workflow `budgets`): a committed transition counts
 * once for its actor and once for the person behind it (an agent's
 * principal, the person its name resolves to, else the actor), under the
 * keys lf_counter_key makes. Writes them to keys[0..1]; returns how many
 * (0 for other kinds and for observations that broke a rule). */
#define LF_COUNTER_KEY 320
int lf_entry_counters(const lf_entry *e, char keys[2][LF_COUNTER_KEY]);
/* Whether e counts at all (a transition without a violation); when it
 * has no authority, its person is its actor. */
bool lf_entry_counts(const lf_entry *e);
/* "<len>:<to>:<a|p>:<name>": the counter of transitions into `to` by an
 * actor ('a') or by the people behind them ('p'). */
void lf_counter_key(const char *to, char who, const char *name, char out[LF_COUNTER_KEY]);

/* A line this program wrote, read fast for a pass over a whole log
 * (replay): one walk over its members, the strings copied into one block,
 * the sub-documents taken as they stand (they were written canonical).
 * Checks the keys are there with their types and the kind is known; the
 * hash is not checked (lf_chain_feed does that). Returns 0, or -1 with a
 * message. Free with lf_entry_doc_free. */
int lf_entry_read(const char *line, size_t len, lf_entry_doc *doc, char *err,
                  size_t errlen);

/* The same into `block`, the caller's (at least LF_ENTRY_READ_ROOM(len)
 * bytes), which the doc's strings then point into for as long as it
 * lasts: a replay gives a batch of lines one block, not one each. Such
 * a doc owns nothing (lf_entry_doc_free has nothing to do). */
#define LF_ENTRY_READ_ROOM(len) ((len) + 32)
int lf_entry_read_into(const char *line, size_t len, lf_entry_doc *doc, char *block,
                       char *err, size_t errlen);

/* Walks the global log in order and checks the chain. Verification works
 * on the stored bytes: hash must equal sha256 of the line with its
 * trailing `,"hash":"…"` removed (and the closing brace kept), so no
 * re-serialization can mask or invent a difference. */
typedef struct lf_chain {
    uint64_t next_seq;              /* seq the next line must carry */
    char prev[LF_HASH_LEN + 1];     /* hash the next line must name */
    uint64_t count;                 /* lines verified so far */
} lf_chain;

void lf_chain_init(lf_chain *c);
/* Returns 0, or -1 with err ("seq N: reason"; the line number when the
 * seq cannot be read) and the chain left unchanged. */
int lf_chain_feed(lf_chain *c, const char *line, size_t len, char *err, size_t errlen);
/* The same for a line already parsed into e. */
int lf_chain_check(lf_chain *c, const char *line, size_t len, const lf_entry *e,
                   char *err, size_t errlen);
/* A stored line's own hash: 0 with hash set when its last key is the
 * SHA-256 of the rest, -1 when it has no hash key last, -2 on a mismatch. */
int lf_entry_self_hash(const char *line, size_t len, char hash[LF_HASH_LEN + 1]);
/* The chain's checks on a line whose seq and prev (64 hex digits) the
 * caller read: seq in order, prev the last hash, the line's own hash. */
int lf_chain_link(lf_chain *c, const char *line, size_t len, uint64_t seq,
                  const char *prev, char *err, size_t errlen);

/* Normalizes a JSON object text (as cJSON prints it, compact), so the
 * canonical form is stable under parse/print. Returns a malloc'd string
 * or NULL with err set if the text is not a JSON object. */
char *lf_json_object_normalize(const char *text, char *err, size_t errlen);

#endif
