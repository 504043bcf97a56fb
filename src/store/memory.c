/* memory.c -- the memory: store, a memdb behind the store interface. For
 * tests, benchmarks and the busted kit; nothing survives the process. */
#include "memdb.h"
#include "../core/mem.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct memory_store {
    lf_store base;
    lf_memdb *db;
} memory_store;

#define DB(s) (((memory_store *)(s))->db)

static void mem_get(lf_store *s, const char *id, lf_store_cb *cb, void *arg) {
    lf_memdb_get_op(DB(s), id, cb, arg);
}

static void mem_find_ref(lf_store *s, const char *ref, lf_store_cb *cb, void *arg) {
    lf_memdb_find_ref_op(DB(s), ref, cb, arg);
}

static void mem_commit(lf_store *s, lf_entry *e, lf_store_cb *cb, void *arg) {
    char err[256];
    const lf_record *rec;
    lf_code code = lf_memdb_commit(DB(s), e, &rec, err, sizeof err);
    cb(code, code == LF_OK ? NULL : err, rec, code == LF_OK ? e : NULL, arg);
}

static void mem_list(lf_store *s, const lf_list_query *q, lf_list_cb *cb, void *arg) {
    lf_memdb_list(DB(s), q, cb, arg);
}

static void mem_audit(lf_store *s, const char *id, uint64_t after, size_t limit,
                      lf_audit_cb *cb, void *arg) {
    lf_memdb_audit(DB(s), id, after, limit, cb, arg);
}

static void mem_find_key(lf_store *s, const char *key, lf_store_cb *cb, void *arg) {
    lf_memdb_find_key(DB(s), key, cb, arg);
}

static void mem_count(lf_store *s, const char *key, int64_t since, lf_count_cb *cb,
                      void *arg) {
    uint64_t n;
    int64_t oldest;
    lf_memdb_count(DB(s), key, since, &n, &oldest);
    cb(LF_OK, NULL, n, oldest, arg);
}

static void mem_free(lf_store *s) {
    if (!s) return;
    lf_memdb_free(DB(s));
    free(s);
}

static const lf_store_type memory_type = {
    .scheme = "memory",
    .get = mem_get,
    .find_by_ref = mem_find_ref,
    .commit = mem_commit,
    .list = mem_list,
    .audit = mem_audit,
    .find_key = mem_find_key,
    .count = mem_count,
    .free = mem_free,
};

lf_store *lf_memory_open(void) {
    memory_store *m = lf_xcalloc(1, sizeof *m);
    m->db = lf_memdb_new();
    m->base.type = &memory_type;
    return &m->base;
}
