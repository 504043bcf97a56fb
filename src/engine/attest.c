/* attest.c -- a signed attestation of every merge (docs/audit.md): an
 * in-toto Statement v1 in a DSSE envelope, signed with the log's key.
 *
 * It is made from the log, on request, never stored: everything in it is
 * an entry already (the merge, the decisions and violations on the way,
 * the policy set's announcement, the first checkpoint that covers the
 * merge), and Ed25519 is deterministic, so asking again gives the same
 * bytes -- the attestation of a merge is a function of the log.
 *
 * Steps, each on the store's callback: the record's entries, the log from
 * the first merge on (for the checkpoint), the announcement of each
 * merge's policy set (by its key, announce:<generation>). */
#include "attest.h"
#include "../core/buf.h"
#include "../core/entry.h"
#include "../core/hash.h"
#include "../core/json.h"
#include "../core/mem.h"
#include "../core/verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define PAGE 1000
#define MAX_SIZE (100 * 1024)       /* the public Rekor limit, per envelope */

typedef struct merge {
    char *line;                     /* the merge entry */
    uint64_t seq;
    char *gen;                      /* its policy set */
    char *files;                    /* the announcement's files (JSON), or NULL */
    char *checkpoint;               /* {"seq","checkpoint"} covering it, or NULL */
} merge;

typedef struct attest_ctx {
    lf_store *store;
    const lf_key *key;
    char *id;
    lf_text_cb *cb;
    void *arg;
    char **lines;                   /* the record's entries */
    size_t nlines, cap;
    merge *merges;
    size_t nmerges, next;           /* next: the merge whose announcement is asked */
    uint64_t after;
    char *forge;                    /* the record's knowledge */
    char *ref, *repo;
} attest_ctx;

static void ctx_free(attest_ctx *a) {
    for (size_t i = 0; i < a->nlines; i++) free(a->lines[i]);
    free(a->lines);
    for (size_t i = 0; i < a->nmerges; i++) {
        free(a->merges[i].line);
        free(a->merges[i].gen);
        free(a->merges[i].files);
        free(a->merges[i].checkpoint);
    }
    free(a->merges);
    free(a->id);
    free(a->forge);
    free(a->ref);
    free(a->repo);
    free(a);
}

static void done(attest_ctx *a, lf_code code, const char *err, const char *text) {
    a->cb(code, err, text, a->arg);
    ctx_free(a);
}

/* ---- the statement ------------------------------------------------------- */

/* The record's facts the predicate quotes: approvals, and CI on the
 * merged head. */
static void forge_facts(const char *forge, lf_jw *o, lf_buf *b, const char **head) {
    cJSON *k = cJSON_Parse(forge ? forge : "{}");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(k, "pr");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(pr, "head");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(pr, "merge_sha");
    *head = NULL;
    lf_jw_key(o, "approvals");
    lf_jw list = lf_jw_open(b, '[');
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(k, "reviews")) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "state");
        if (!cJSON_IsString(st) || strcmp(st->valuestring, "approved") != 0) continue;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(r, "commit");
        lf_jw_next(&list);
        lf_jw a = lf_jw_open(b, '{');
        lf_jw_str(&a, "reviewer", r->string);
        lf_jw_str(&a, "commit", cJSON_IsString(c) ? c->valuestring : NULL);
        lf_jw_close(&a, '}');
    }
    lf_jw_close(&list, ']');
    const cJSON *ci = cJSON_IsString(h)
                          ? cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(k, "ci"), h->valuestring)
                          : NULL;
    char *citext = ci ? cJSON_PrintUnformatted(ci) : NULL;
    lf_jw_raw(o, "ci", citext, "{}");
    cJSON_free(citext);
    lf_jw_str(o, "head", cJSON_IsString(h) ? h->valuestring : NULL);
    lf_jw_str(o, "merge_commit", cJSON_IsString(ms) ? ms->valuestring : NULL);
    static char keep[64];
    keep[0] = '\0';
    if (cJSON_IsString(ms) && strlen(ms->valuestring) < sizeof keep)
        snprintf(keep, sizeof keep, "%s", ms->valuestring);
    else if (cJSON_IsString(h) && strlen(h->valuestring) < sizeof keep)
        snprintf(keep, sizeof keep, "%s", h->valuestring);
    if (keep[0]) *head = keep;
    cJSON_Delete(k);
}

/* Every decision and violation on the record's way to (and at) merge m. */
static void decisions(const attest_ctx *a, uint64_t upto, lf_jw *o, lf_buf *b) {
    lf_jw_key(o, "decisions");
    lf_jw list = lf_jw_open(b, '[');
    lf_buf viol = LF_BUF_INIT;
    lf_jw vlist = lf_jw_open(&viol, '[');
    for (size_t i = 0; i < a->nlines; i++) {
        lf_entry_doc d;
        char why[160];
        if (lf_entry_parse(a->lines[i], strlen(a->lines[i]), &d, why, sizeof why))
            continue;
        const lf_entry *e = &d.e;
        if (e->seq <= upto && e->decisions && strcmp(e->decisions, "[]") != 0) {
            lf_jw_next(&list);
            lf_jw x = lf_jw_open(b, '{');
            lf_jw_int(&x, "seq", (int64_t)e->seq);
            lf_jw_str(&x, "kind", lf_entry_kind_name(e->kind));
            lf_jw_str(&x, "to_state", e->to_state);
            lf_jw_raw(&x, "decisions", e->decisions, "[]");
            lf_jw_close(&x, '}');
        }
        if (e->seq <= upto && e->violation) {
            lf_jw_next(&vlist);
            lf_jw x = lf_jw_open(&viol, '{');
            lf_jw_int(&x, "seq", (int64_t)e->seq);
            lf_jw_str(&x, "to_state", e->to_state);
            lf_jw_raw(&x, "violation", e->violation, "null");
            lf_jw_close(&x, '}');
        }
        lf_entry_doc_free(&d);
    }
    lf_jw_close(&list, ']');
    lf_jw_close(&vlist, ']');
    lf_jw_raw(o, "violations", viol.p, "[]");
    lf_buf_free(&viol);
}

/* The in-toto Statement v1 of merge m. */
static void statement(const attest_ctx *a, const merge *m, lf_buf *b) {
    lf_entry_doc d;
    char why[160];
    lf_entry_parse(m->line, strlen(m->line), &d, why, sizeof why);
    lf_buf pred = LF_BUF_INIT;
    const char *sha = NULL;
    lf_jw p = lf_jw_open(&pred, '{');
    lf_jw_str(&p, "record_id", a->id);
    lf_jw_str(&p, "ref", a->ref);
    lf_jw_str(&p, "repo", a->repo);
    lf_jw_key(&p, "merge");
    lf_jw mg = lf_jw_open(&pred, '{');
    lf_jw_int(&mg, "seq", (int64_t)d.e.seq);
    lf_jw_str(&mg, "hash", d.e.hash);
    lf_jw_str(&mg, "timestamp", d.e.timestamp);
    lf_jw_str(&mg, "actor", d.e.actor);
    lf_jw_str(&mg, "trigger", d.e.trigger);
    lf_jw_str(&mg, "from_state", d.e.from_state);
    lf_jw_close(&mg, '}');
    lf_jw_str(&p, "policy_set", m->gen);
    lf_jw_raw(&p, "policy_files", m->files, "null");
    forge_facts(a->forge, &p, &pred, &sha);
    decisions(a, m->seq, &p, &pred);
    lf_jw_raw(&p, "checkpoint", m->checkpoint, "null");
    lf_jw_close(&p, '}');

    lf_jw s = lf_jw_open(b, '{');
    lf_jw_str(&s, "_type", "https://in-toto.io/Statement/v1");
    lf_jw_key(&s, "subject");
    lf_jw subj = lf_jw_open(b, '[');
    lf_jw_next(&subj);
    lf_jw one = lf_jw_open(b, '{');
    lf_buf name = LF_BUF_INIT;
    if (sha && strlen(sha) == 40) {
        lf_buf_printf(&name, "git+%s@%s", a->repo ? a->repo : a->ref, sha);
        lf_jw_str(&one, "name", name.p);
        lf_jw_key(&one, "digest");
        lf_jw dg = lf_jw_open(b, '{');
        lf_jw_str(&dg, "gitCommit", sha);
        lf_jw_close(&dg, '}');
    } else {
        /* No commit known: the merge entry itself (its hash is SHA-256). */
        lf_buf_printf(&name, "loopforge:%s#%llu", a->id, (unsigned long long)d.e.seq);
        lf_jw_str(&one, "name", name.p);
        lf_jw_key(&one, "digest");
        lf_jw dg = lf_jw_open(b, '{');
        lf_jw_str(&dg, "sha256", d.e.hash);
        lf_jw_close(&dg, '}');
    }
    lf_jw_close(&one, '}');
    lf_jw_close(&subj, ']');
    lf_jw_str(&s, "predicateType", "https://loopforge.dev/attestation/merge/v1");
    lf_jw_raw(&s, "predicate", pred.p, NULL);
    lf_jw_close(&s, '}');
    lf_buf_free(&name);
    lf_buf_free(&pred);
    lf_entry_doc_free(&d);
}

#define PAYLOAD_TYPE "application/vnd.in-toto+json"

/* The DSSE envelope of payload: signed over PAE(type, payload). */
static void envelope(const lf_key *key, const char *payload, size_t len, lf_buf *b) {
    lf_buf pae = LF_BUF_INIT;
    lf_buf_printf(&pae, "DSSEv1 %zu %s %zu ", sizeof PAYLOAD_TYPE - 1, PAYLOAD_TYPE, len);
    lf_buf_add(&pae, payload, len);
    unsigned char sig[LF_SIG_LEN];
    char kid[LF_KEY_ID_LEN + 1];
    lf_key_sign(key, pae.p, pae.len, sig);
    lf_key_id(key, kid);
    char *p64 = lf_base64(payload, len), *s64 = lf_base64(sig, sizeof sig);
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "payloadType", PAYLOAD_TYPE);
    lf_jw_str(&o, "payload", p64);
    lf_jw_key(&o, "signatures");
    lf_jw list = lf_jw_open(b, '[');
    lf_jw_next(&list);
    lf_jw one = lf_jw_open(b, '{');
    lf_jw_str(&one, "keyid", kid);
    lf_jw_str(&one, "sig", s64);
    lf_jw_close(&one, '}');
    lf_jw_close(&list, ']');
    lf_jw_close(&o, '}');
    free(p64);
    free(s64);
    lf_buf_free(&pae);
}

static void finish(attest_ctx *a) {
    lf_buf out = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&out, '{');
    lf_jw_str(&o, "record_id", a->id);
    lf_jw_key(&o, "attestations");
    lf_jw list = lf_jw_open(&out, '[');
    for (size_t i = 0; i < a->nmerges; i++) {
        lf_buf st = LF_BUF_INIT, env = LF_BUF_INIT;
        statement(a, &a->merges[i], &st);
        envelope(a->key, st.p, st.len, &env);
        lf_jw_next(&list);
        if (env.len > MAX_SIZE) lf_buf_puts(&out, "null");   /* said below */
        else lf_buf_add(&out, env.p, env.len);
        lf_buf_free(&st);
        lf_buf_free(&env);
    }
    lf_jw_close(&list, ']');
    lf_jw_close(&o, '}');
    done(a, LF_OK, NULL, out.p);
    lf_buf_free(&out);
}

/* ---- gathering ------------------------------------------------------------ */

static void ask_announcement(attest_ctx *a);

static void announced(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *e, void *arg) {
    attest_ctx *a = arg;
    (void)err, (void)rec;
    if (code == LF_OK && e && e->metadata) {
        const char *v;
        size_t vl;
        if (lf_json_get(e->metadata, strlen(e->metadata), "files", &v, &vl))
            a->merges[a->next].files = lf_xstrndup(v, vl);
    }
    a->next++;
    ask_announcement(a);
}

static void ask_announcement(attest_ctx *a) {
    while (a->next < a->nmerges && !a->merges[a->next].gen) a->next++;
    if (a->next == a->nmerges) {
        finish(a);
        return;
    }
    char key[16 + LF_HASH_LEN];
    snprintf(key, sizeof key, "announce:%s", a->merges[a->next].gen);
    lf_store_find_key(a->store, key, announced, a);
}

/* The log after the first merge, until every merge has the first
 * checkpoint that states it. */
static void log_page(lf_code code, const char *error, const char *const *lines,
                     const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    attest_ctx *a = arg;
    if (code != LF_OK) {
        done(a, code, error, NULL);
        return;
    }
    bool missing = false;
    for (size_t i = 0; i < n; i++) {
        lf_entry_doc d;
        char why[160];
        if (lf_entry_parse(lines[i], lens[i], &d, why, sizeof why)) continue;
        if (d.e.kind == LF_ENTRY_CHECKPOINT) {
            for (size_t m = 0; m < a->nmerges; m++) {
                if (a->merges[m].checkpoint || a->merges[m].seq > d.e.version) continue;
                lf_buf c = LF_BUF_INIT;
                lf_jw o = lf_jw_open(&c, '{');
                lf_jw_int(&o, "seq", (int64_t)d.e.seq);
                lf_jw_raw(&o, "checkpoint", d.e.metadata, NULL);
                lf_jw_close(&o, '}');
                a->merges[m].checkpoint = lf_buf_steal(&c);
            }
        }
        lf_entry_doc_free(&d);
    }
    for (size_t m = 0; m < a->nmerges; m++) missing |= !a->merges[m].checkpoint;
    if (n == 0 || !missing) {
        ask_announcement(a);
        return;
    }
    lf_store_audit(a->store, NULL, last_seq, PAGE, log_page, a);
}

static void record_page(lf_code code, const char *error, const char *const *lines,
                        const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    attest_ctx *a = arg;
    if (code != LF_OK) {
        done(a, code, error, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (a->nlines == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 16;
            a->lines = lf_xrealloc(a->lines, a->cap * sizeof *a->lines);
        }
        a->lines[a->nlines++] = lf_xstrndup(lines[i], lens[i]);
        lf_entry_doc d;
        char why[160];
        if (lf_entry_parse(lines[i], lens[i], &d, why, sizeof why)) continue;
        if (d.e.kind == LF_ENTRY_TRANSITION && d.e.to_state &&
            strcmp(d.e.to_state, "merged") == 0) {
            a->merges = lf_xrealloc(a->merges, (a->nmerges + 1) * sizeof *a->merges);
            merge *m = &a->merges[a->nmerges++];
            memset(m, 0, sizeof *m);
            m->line = lf_xstrndup(lines[i], lens[i]);
            m->seq = d.e.seq;
            m->gen = d.e.policy_set ? lf_xstrdup(d.e.policy_set) : NULL;
        }
        lf_entry_doc_free(&d);
    }
    if (n > 0) {
        lf_store_audit(a->store, a->id, last_seq, PAGE, record_page, a);
        return;
    }
    if (a->nmerges == 0) {
        finish(a);              /* nothing merged: no attestation */
        return;
    }
    lf_store_audit(a->store, NULL, a->merges[0].seq, PAGE, log_page, a);
}

static void got_record(lf_code code, const char *err, const lf_record *rec,
                       const lf_entry *e, void *arg) {
    attest_ctx *a = arg;
    (void)e;
    if (code != LF_OK) {
        done(a, code, err, NULL);
        return;
    }
    a->forge = rec->forge ? lf_xstrdup(rec->forge) : NULL;
    a->ref = lf_xstrdup(rec->ref);
    a->repo = rec->repo ? lf_xstrdup(rec->repo) : NULL;
    lf_store_audit(a->store, a->id, 0, PAGE, record_page, a);
}

void lf_attest(lf_store *store, const lf_key *key, const char *record_id, lf_text_cb *cb,
               void *arg) {
    attest_ctx *a = lf_xcalloc(1, sizeof *a);
    a->store = store;
    a->key = key;
    a->id = lf_xstrdup(record_id);
    a->cb = cb;
    a->arg = arg;
    lf_store_get(store, record_id, got_record, a);
}
