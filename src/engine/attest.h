/* attest.h -- signed merge attestations made from the log (attest.c). */
#ifndef LF_ATTEST_H
#define LF_ATTEST_H

#include "../loopforge.h"
#include "../core/sign.h"
#include "../store/store.h"

/* Answers with {"record_id","attestations":[DSSE envelope, ...]}: one per
 * merge of the record, in log order, signed with key. */
void lf_attest(lf_store *store, const lf_key *key, const char *record_id, lf_text_cb *cb,
               void *arg);

#endif
