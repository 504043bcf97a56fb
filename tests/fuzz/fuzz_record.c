/* fuzz_record.c -- the record fold: the input's lines are entries, folded
 * one by one as a store replays them; the record that results is written
 * as JSON and read back. The whole input is also read as a record's JSON.
 * Property: a folded record round-trips through its JSON unchanged. */
#include <stdlib.h>
#include <string.h>

#include "../../src/core/buf.h"
#include "../../src/core/entry.h"
#include "../../src/core/record.h"
#include "fuzz.h"

static void round_trip(const lf_record *r) {
    lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT;
    char err[256];
    lf_record_to_json(r, &a);
    lf_record *back = lf_record_from_json(a.p, a.len, err, sizeof err);
    if (!back) abort();
    lf_record_to_json(back, &b);
    if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0) abort();
    lf_record_free(back);
    lf_buf_free(&a);
    lf_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    char err[256];
    lf_record *rec = lf_record_from_json(p, size, err, sizeof err);
    if (rec) round_trip(rec);
    lf_record_free(rec);
    rec = NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lf_entry_doc d;
        if (lf_entry_parse(p, len, &d, err, sizeof err) == 0) {
            if (d.e.kind == LF_ENTRY_CREATED || rec)
                (void)lf_record_apply(&rec, &d.e, err, sizeof err);
            lf_entry_doc_free(&d);
        }
        p += len + (nl != NULL);
    }
    if (rec) round_trip(rec);
    lf_record_free(rec);
    return 0;
}
