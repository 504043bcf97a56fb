/* fuzz_entry.c -- one journal / audit line: the strict entry parse, the
 * canonical form of what parsed, and the hash chain's check of the line.
 * Property: an entry that parses writes a canonical form that parses
 * again to the same canonical form. */
#include <stdlib.h>
#include <string.h>

#include "../../src/core/buf.h"
#include "../../src/core/entry.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *line = (const char *)data;
    char err[256];
    lf_chain c;
    lf_chain_init(&c);
    (void)lf_chain_feed(&c, line, size, err, sizeof err);
    lf_entry_doc d;
    if (lf_entry_parse(line, size, &d, err, sizeof err)) return 0;
    lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT;
    lf_entry_write_canonical(&d.e, &a);
    lf_entry_doc again;
    /* The canonical form has no hash: add one so the strict parse takes it. */
    lf_buf_puts(&b, a.p);
    b.len--;                                    /* drop the closing brace */
    lf_buf_puts(&b, ",\"hash\":\"");
    lf_buf_puts(&b, d.e.hash);
    lf_buf_puts(&b, "\"}");
    if (lf_entry_parse(b.p, b.len, &again, err, sizeof err) == 0) {
        lf_buf a2 = LF_BUF_INIT;
        lf_entry_write_canonical(&again.e, &a2);
        if (a2.len != a.len || memcmp(a2.p, a.p, a.len) != 0) abort();
        lf_buf_free(&a2);
        lf_entry_doc_free(&again);
    }
    lf_buf_free(&a);
    lf_buf_free(&b);
    lf_entry_doc_free(&d);
    return 0;
}
