/* memdb.h -- the in-memory state every embedded store is built on: the
 * global log (sealed lines), the records folded from it, and the
 * indexes (id, live ref). `memory:` is a memdb and nothing more; the
 * `file:` journal is a memdb replayed from, and appended to, a file. */
#ifndef LF_MEMDB_H
#define LF_MEMDB_H

#include <stddef.h>
#include <stdint.h>
#include "store.h"

typedef struct lf_memdb lf_memdb;

lf_memdb *lf_memdb_new(void);
void lf_memdb_free(lf_memdb *db);

/* A live record (not deleted), or NULL. */
const lf_record *lf_memdb_get(const lf_memdb *db, const char *id);
const lf_record *lf_memdb_find_ref(const lf_memdb *db, const char *ref);

/* Checks e against the current state as described in store.h. Returns
 * LF_OK or the refusal code with err set. Changes nothing. */
lf_code lf_memdb_check(const lf_memdb *db, const lf_entry *e, char *err, size_t errlen);

/* Seals e as the next entry of the log (seq = last + 1, prev = last
 * hash) and writes its line to `line`. Changes nothing else. */
void lf_memdb_seal(const lf_memdb *db, lf_entry *e, lf_buf *line);

/* Lines kept in a file instead of in memory (the journal: at a million
 * records the lines were 60% of the process). The file is the log's
 * lines from seq 1, each followed by a newline, so the memdb knows each
 * one's offset; `read` copies the len bytes at offset off of that file
 * into out (lines not written yet too) and returns 0, or -1 with errno
 * set. Set before the first apply. */
typedef int lf_memdb_read_fn(void *arg, uint64_t off, size_t len, char *out);
void lf_memdb_lines_in_file(lf_memdb *db, lf_memdb_read_fn *read, void *arg);

/* Appends a sealed entry and its line and folds it into its record.
 * Used for fresh commits and for journal replay alike. Returns 0, or -1
 * with err set and nothing changed. The line is copied, unless
 * the lines are in a file. */
int lf_memdb_apply(lf_memdb *db, const lf_entry *e, const char *line, size_t len,
                   char *err, size_t errlen);

/* check + seal + apply, the whole commit of the memory store. On success
 * *rec is the record after the entry (NULL for policy_loaded). */
lf_code lf_memdb_commit(lf_memdb *db, lf_entry *e, const lf_record **rec, char *err,
                        size_t errlen);

/* Store operations over a memdb, shared by memory: and file:. */
void lf_memdb_get_op(const lf_memdb *db, const char *id, lf_store_cb *cb, void *arg);
void lf_memdb_find_ref_op(const lf_memdb *db, const char *ref, lf_store_cb *cb,
                          void *arg);
void lf_memdb_find_key(const lf_memdb *db, const char *key, lf_store_cb *cb, void *arg);
/* A budget counter (lf_counter_key): how many transitions it holds at or
 * after since_us, and the earliest of them (0 if none). */
void lf_memdb_count(const lf_memdb *db, const char *key, int64_t since_us, uint64_t *n,
                    int64_t *oldest);
/* A list by entered_by (the timers' tick) makes, the first time a state
 * is asked about, the index that answers it, and keeps it from then on:
 * the one change a read makes. */
void lf_memdb_list(const lf_memdb *db, const lf_list_query *q, lf_list_cb *cb, void *arg);
void lf_memdb_audit(const lf_memdb *db, const char *record_id, uint64_t after,
                    size_t limit, lf_audit_cb *cb, void *arg);

#endif
