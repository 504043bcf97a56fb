/* evidence.h -- what the engine adds to the log so that an outsider can
 * verify it (docs/audit.md): signed checkpoints over the Merkle tree of
 * the log, and the announcement of a policy set before the first entry
 * decided under it.
 *
 * Both only append entries through the store's commit, so they work the
 * same on every store. The tree is kept compact (core/merkle.h) by a
 * thread of its own, which also signs, and caught up from the log itself
 * before each checkpoint, so entries other processes appended are covered
 * too. */
#ifndef LF_EVIDENCE_H
#define LF_EVIDENCE_H

#include "../loopforge.h"
#include "../core/sign.h"
#include "../store/store.h"

typedef struct lf_evidence lf_evidence;

struct event_base;

/* key: the signing key (taken over; NULL: checkpoints are refused).
 * base: where a signed checkpoint wakes the loop to be appended (NULL:
 * at the next write, or at once when nothing writes). */
lf_evidence *lf_evidence_new(lf_store *store, lf_key *key, struct event_base *base);
void lf_evidence_free(lf_evidence *ev);
bool lf_evidence_can_sign(const lf_evidence *ev);
const lf_key *lf_evidence_key(const lf_evidence *ev);

/* Appends a signed checkpoint of every entry so far and answers with the
 * standalone document (lf_text_cb in loopforge.h). It is signed off the
 * loop and appended when signed, so entries written meanwhile may come
 * before it (at most LF_CHECKPOINT_LAG, core/verify.h). Fails with
 * invalid_request without a key, conflict while another is being made;
 * states more when others append too much in between. */
void lf_evidence_checkpoint(lf_evidence *ev, const char *actor, const char *generation,
                            lf_text_cb *cb, void *arg);

/* Runs go(arg) once the policy set `generation` is announced in the log:
 * at once if this engine did so already, else after finding the
 * announcement (its key is "announce:<generation>") or appending it.
 * go runs even if the store failed: the write that follows fails the
 * same way. meta: the policy_loaded entry's metadata. */
void lf_evidence_announce(lf_evidence *ev, const char *generation, const char *actor,
                          const char *meta, void (*go)(void *), void *arg);
/* Appends the checkpoint being made if it is signed: the engine calls it
 * before each write, so without an event base a checkpoint goes in at the
 * next write, a few entries after those it states. */
void lf_evidence_poll(lf_evidence *ev);
bool lf_evidence_is_announced(const lf_evidence *ev, const char *generation);
/* An entry the engine just committed: when it is the next one the tree
 * lacks (and there is a key), its leaf goes in now, so a checkpoint reads
 * back only what other writers appended. */
void lf_evidence_saw(lf_evidence *ev, const lf_entry *e);
/* The engine announced `generation` itself (a reload). */
void lf_evidence_announced(lf_evidence *ev, const char *generation);

#endif
