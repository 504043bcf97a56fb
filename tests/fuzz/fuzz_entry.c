/* fuzz_entry.c -- one journal / audit line: the strict entry parse, the
 * canonical form of what parsed, the hash chain's check of the line, and
 * the replay's one-pass reader. Properties: an entry that parses writes
 * a canonical form that parses again to the same canonical form; the
 * one-pass reader (lf_entry_read: the journal's replay, Redis's fold)
 * takes exactly the lines the strict parse (lf_entry_parse: audit
 * --verify) takes, and reads the same entry from each. */
#include <stdlib.h>
#include <string.h>

#include "../../src/core/buf.h"
#include "../../src/core/entry.h"
#include "../../src/core/json.h"
#include "fuzz.h"

static bool same_str(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* A document the reader took as it stands, against the strict parse's
 * normalized one. */
static bool same_doc(const char *raw, const char *canon) {
    if (!raw || !canon) return raw == canon;
    lf_buf b = LF_BUF_INIT;
    bool same = lf_json_canon(raw, strlen(raw), &b) && strcmp(b.p, canon) == 0;
    lf_buf_free(&b);
    return same;
}

/* The two readers agree on the line. */
static void readers_agree(const char *line, size_t size, const lf_entry_doc *d, bool parsed) {
    lf_entry_doc r;
    char err[256];
    bool read = lf_entry_read(line, size, &r, err, sizeof err) == 0;
    if (read != parsed) abort();
    if (!read) return;
    const lf_entry *a = &r.e, *b = &d->e;
    if (a->seq != b->seq || a->version != b->version || a->kind != b->kind ||
        !same_str(a->record_id, b->record_id) || !same_str(a->from_state, b->from_state) ||
        !same_str(a->to_state, b->to_state) || !same_str(a->trigger, b->trigger) ||
        !same_str(a->actor, b->actor) || !same_str(a->policy_set, b->policy_set) ||
        !same_str(a->idempotency_key, b->idempotency_key) ||
        !same_str(a->request, b->request) || strcmp(a->timestamp, b->timestamp) ||
        strcmp(a->prev, b->prev) || strcmp(a->hash, b->hash) ||
        !same_doc(a->metadata, b->metadata) || !same_doc(a->decisions, b->decisions) ||
        !same_doc(a->record, b->record) || !same_doc(a->changes, b->changes) ||
        !same_doc(a->violation, b->violation) || !same_doc(a->authority, b->authority))
        abort();
    lf_entry_doc_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *line = (const char *)data;
    char err[256];
    lf_chain c;
    lf_chain_init(&c);
    (void)lf_chain_feed(&c, line, size, err, sizeof err);
    lf_entry_doc d;
    if (lf_entry_parse(line, size, &d, err, sizeof err)) {
        readers_agree(line, size, NULL, false);
        return 0;
    }
    readers_agree(line, size, &d, true);
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
