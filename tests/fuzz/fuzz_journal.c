/* fuzz_journal.c -- a journal file (the input) opened as serve and the
 * CLI open it (lf_journal_open: replay, a torn last line cut). Property:
 * it opens or is refused with a reason; refused, the file is as it was;
 * opened, it is as it was but for a torn tail (what follows the last
 * "\n") cut off, a commit appends one line that continues it (the next
 * seq, on the head replay found), and it opens again, by a writer and by
 * a reader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/clock.h"
#include "../../src/core/entry.h"
#include "../../src/store/store.h"
#include "fuzz.h"

static char path[64];

static void put(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

/* The file's bytes (caller frees), *n its size. */
static char *slurp(size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)len + 1);
    if (fread(p, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void unlink_it(void) { unlink(path); }

typedef struct committed {
    lf_code code;
    uint64_t seq;
    char prev[LF_HASH_LEN + 1];
} committed;

static void on_commit(lf_code code, const char *err, const lf_record *rec, const lf_entry *e,
                      void *arg) {
    committed *c = arg;
    (void)err;
    (void)rec;
    c->code = code;
    if (code == LF_OK) {
        c->seq = e->seq;
        memcpy(c->prev, e->prev, sizeof c->prev);
    }
}

/* A policy_loaded entry committed on s: returns its seq (0 if refused),
 * and the hash it was chained to in prev. */
static uint64_t commit_one(lf_store *s, char prev[LF_HASH_LEN + 1]) {
    lf_entry e = {0};
    e.kind = LF_ENTRY_POLICY_LOADED;
    e.trigger = "reload";
    e.actor = "fuzz";
    e.policy_set = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    lf_ts_format(lf_now_us(), e.timestamp);
    committed c = {.code = LF_UNAVAILABLE};
    lf_store_commit(s, &e, on_commit, &c);
    memcpy(prev, c.prev, LF_HASH_LEN + 1);
    return c.code == LF_OK ? c.seq : 0;
}

/* The number of lines in p[0..n) and the hash the last one states (as
 * the replay read it), or "" for none. */
static size_t lines_of(const char *p, size_t n, char last[LF_HASH_LEN + 1]) {
    size_t k = 0, at = 0;
    last[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\n') {
            k++;
            if (i < n - 1) at = i + 1;
        }
    lf_entry_doc d;
    char err[256];
    if (k && lf_entry_parse(p + at, n - at - 1, &d, err, sizeof err) == 0) {
        snprintf(last, LF_HASH_LEN + 1, "%s", d.e.hash);
        lf_entry_doc_free(&d);
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/lf-fuzz-journal.%ld", (long)getpid());
        atexit(unlink_it);
    }
    put(data, size);
    lf_code code = LF_OK;
    char err[512] = "";
    lf_store *s = lf_journal_open(path, NULL, &code, err, sizeof err);
    size_t n;
    char *now = slurp(&n);
    /* what stays: everything up to the last "\n" (all of it if refused) */
    size_t keep = size;
    if (s)
        while (keep > 0 && data[keep - 1] != '\n') keep--;
    if (n != keep || memcmp(now, data, n) != 0) abort();
    free(now);
    if (!s) {
        if (!err[0] || code == LF_OK) abort();
        return 0;
    }
    /* one more entry: the line after the last, chained to its hash */
    char last[LF_HASH_LEN + 1], prev[LF_HASH_LEN + 1];
    size_t nlines = lines_of((const char *)data, keep, last);
    uint64_t seq = commit_one(s, prev);
    if (seq != nlines + 1 || (nlines && strcmp(prev, last) != 0)) abort();
    lf_store_free(s);
    now = slurp(&n);
    if (n <= keep || memcmp(now, data, keep) != 0 || now[n - 1] != '\n' ||
        memchr(now + keep, '\n', n - keep - 1))
        abort();
    free(now);
    /* opened again, by a writer and by a reader: both open it */
    s = lf_journal_open(path, NULL, &code, err, sizeof err);
    if (!s) abort();
    lf_store_free(s);
    s = lf_journal_open_reader(path, &code, err, sizeof err);
    if (!s) abort();
    lf_store_free(s);
    return 0;
}
