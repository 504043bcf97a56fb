/* verify.h -- everything `audit --verify` checks, one stored line at a
 * time, on the bytes alone (no store, no policies):
 *
 *   - the hash chain (lf_chain: a modified byte, a deleted, inserted or
 *     reordered entry);
 *   - checkpoints: each states the Merkle root (RFC 6962, merkle.h) and
 *     head of the log's first entries (all those before it, or up to
 *     LF_CHECKPOINT_LAG fewer) and is signed; the root must be the
 *     one the entries make, and with a key the signature must verify and
 *     name that key (a rewrite re-hashed to look whole, a re-signing by
 *     another key);
 *   - announced policy sets: every entry decided under a generation must
 *     follow a policy_loaded entry announcing it;
 *   - an outside checkpoint (kept elsewhere): the log must still extend it
 *     (a truncated tail, a rewrite of what it covered).
 *
 * The checkpoint's signed text is made here too, so the signer (the
 * engine) and every verifier agree on its bytes. */
#ifndef LF_VERIFY_H
#define LF_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include "buf.h"
#include "entry.h"
#include "merkle.h"
#include "sign.h"

/* A checkpoint states the first tree_size entries of the log and is
 * committed as a later entry S of it, at most LF_CHECKPOINT_LAG after
 * them (tree_size <= S - 1 <= tree_size + LAG): its signature is made off
 * the writer's loop, which appends meanwhile (engine/evidence.c). The
 * bound lets a verifier reading the log once keep only the last LAG
 * leaves and a few snapshots of the tree. */
#define LF_CHECKPOINT_LAG 1024

/* A checkpoint's fields, as its entry's metadata carries them. */
typedef struct lf_checkpoint {
    uint64_t tree_size;
    char root[2 * 32 + 1], head[LF_HASH_LEN + 1];
    char time[LF_TS_LEN + 1];
    char key_id[LF_KEY_ID_LEN + 1];
    char signature[128];            /* base64 */
} lf_checkpoint;

/* The text a checkpoint signs:
 *   "loopforge checkpoint v1\ntree_size N\nroot R\nhead H\ntime T\nkey K\n" */
void lf_checkpoint_text(const lf_checkpoint *cp, lf_buf *out);
/* The metadata object of a checkpoint entry. */
void lf_checkpoint_json(const lf_checkpoint *cp, lf_buf *out);
/* Reads a checkpoint object (an entry's metadata, or the "checkpoint" of
 * a standalone document). Returns 0, or -1 with err set. */
int lf_checkpoint_parse(const char *json, size_t len, lf_checkpoint *cp, char *err,
                        size_t errlen);
/* Whether the signature verifies under key (and names it). */
bool lf_checkpoint_verify(const lf_checkpoint *cp, const lf_key *key);

typedef struct lf_verifier {
    lf_chain chain;
    lf_merkle mk;
    unsigned char (*recent)[32];    /* the last leaves (see tree_at) */
    lf_merkle *snaps;               /* the tree at the last multiples of SNAP */
    const lf_key *key;              /* NULL: signatures are not checked */
    char key_id[LF_KEY_ID_LEN + 1];
    uint64_t checkpoints;           /* checkpoint entries seen */
    uint64_t last_signed;           /* seq of the last checkpoint */
    char last_key[LF_KEY_ID_LEN + 1];
    char (*gens)[LF_HASH_LEN + 1];  /* generations announced so far */
    size_t ngens;
    bool outside;                   /* an outside checkpoint to extend */
    lf_checkpoint out;
    bool outside_met;               /* the log reached its size and matched */
} lf_verifier;

void lf_verifier_init(lf_verifier *v, const lf_key *key);
void lf_verifier_free(lf_verifier *v);
/* The log must extend cp (already checked against the key by the caller). */
void lf_verifier_outside(lf_verifier *v, const lf_checkpoint *cp);
/* Checks one stored line. Returns 0, or -1 with err ("seq N: why"). */
int lf_verifier_feed(lf_verifier *v, const char *line, size_t len, char *err,
                     size_t errlen);
/* After the last line: what can only be told at the end (the log stops
 * short of the outside checkpoint). Returns 0 or -1 with err. */
int lf_verifier_end(lf_verifier *v, char *err, size_t errlen);

#endif
