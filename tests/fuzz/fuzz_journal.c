/* fuzz_journal.c -- a journal file (the input) opened as serve and the
 * CLI open it (lf_journal_open: replay, a torn last line cut). Property:
 * it opens or is refused with a reason; refused, the file is as it was;
 * opened, it is as it was but for a torn tail (what follows the last
 * "\n") cut off, and read-only opens of it then agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    lf_store_free(s);
    /* opened again, by a writer and by a reader: both open it */
    s = lf_journal_open(path, NULL, &code, err, sizeof err);
    if (!s) abort();
    lf_store_free(s);
    s = lf_journal_open_reader(path, &code, err, sizeof err);
    if (!s) abort();
    lf_store_free(s);
    return 0;
}
