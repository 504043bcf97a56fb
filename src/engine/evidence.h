/* evidence.h -- what the engine adds to the log so that an outsider can
 * verify it (docs/audit.md): signed checkpoints over the Merkle tree of
 * the log, and the announcement of a policy set before the first entry
 * decided under it.
 *
 * Both only append entries through the store's commit, so they work the
 * same on every store. The tree is kept compact (core/merkle.h) and caught
 * up from the log itself before each checkpoint, so entries other
 * processes appended are covered too. */
#ifndef LF_EVIDENCE_H
#define LF_EVIDENCE_H

#include "../loopforge.h"
#include "../core/sign.h"
#include "../store/store.h"

typedef struct lf_evidence lf_evidence;

/* key: the signing key (taken over; NULL: checkpoints are refused). */
lf_evidence *lf_evidence_new(lf_store *store, lf_key *key);
void lf_evidence_free(lf_evidence *ev);
bool lf_evidence_can_sign(const lf_evidence *ev);
const lf_key *lf_evidence_key(const lf_evidence *ev);

/* Appends a signed checkpoint of every entry so far and answers with the
 * standalone document (lf_text_cb in loopforge.h). Fails with
 * invalid_request without a key; retries when other writers append in
 * between. */
void lf_evidence_checkpoint(lf_evidence *ev, const char *actor, const char *generation,
                            lf_text_cb *cb, void *arg);

/* Runs go(arg) once the policy set `generation` is announced in the log:
 * at once if this engine did so already, else after finding the
 * announcement (its key is "announce:<generation>") or appending it.
 * go runs even if the store failed: the write that follows fails the
 * same way. meta: the policy_loaded entry's metadata. */
void lf_evidence_announce(lf_evidence *ev, const char *generation, const char *actor,
                          const char *meta, void (*go)(void *), void *arg);
bool lf_evidence_is_announced(const lf_evidence *ev, const char *generation);
/* An entry the engine just committed: when it is the next one the tree
 * lacks (and there is a key), its leaf goes in now, so a checkpoint reads
 * back only what other writers appended. */
void lf_evidence_saw(lf_evidence *ev, const lf_entry *e);
/* The engine announced `generation` itself (a reload). */
void lf_evidence_announced(lf_evidence *ev, const char *generation);

#endif
