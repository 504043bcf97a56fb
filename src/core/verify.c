/* verify.c -- the whole check of a stored log, line by line (verify.h). */
#include "verify.h"
#include "hash.h"
#include "json.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

/* ---- checkpoints ------------------------------------------------------- */

void lf_checkpoint_text(const lf_checkpoint *cp, lf_buf *out) {
    lf_buf_printf(out,
                  "loopforge checkpoint v1\ntree_size %llu\nroot %s\nhead %s\ntime %s\n"
                  "key %s\n",
                  (unsigned long long)cp->tree_size, cp->root, cp->head, cp->time,
                  cp->key_id);
}

void lf_checkpoint_json(const lf_checkpoint *cp, lf_buf *out) {
    lf_jw o = lf_jw_open(out, '{');
    lf_jw_int(&o, "tree_size", (int64_t)cp->tree_size);
    lf_jw_str(&o, "root", cp->root);
    lf_jw_str(&o, "head", cp->head);
    lf_jw_str(&o, "time", cp->time);
    lf_jw_str(&o, "key_id", cp->key_id);
    lf_jw_str(&o, "signature", cp->signature);
    lf_jw_close(&o, '}');
}

/* Copies string member key of o into out (of size cap, exactly want
 * characters unless want is 0). */
static int member(const cJSON *o, const char *key, char *out, size_t cap, size_t want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap ||
        (want && strlen(v->valuestring) != want))
        return -1;
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

int lf_checkpoint_parse(const char *json, size_t len, lf_checkpoint *cp, char *err,
                        size_t errlen) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "tree_size");
    memset(cp, 0, sizeof *cp);
    int rc = -1;
    int64_t size = -1;
    if (lf_json_number_int(n, &size) || size < 0 ||
        member(o, "root", cp->root, sizeof cp->root, 64) ||
        member(o, "head", cp->head, sizeof cp->head, 64) ||
        member(o, "time", cp->time, sizeof cp->time, 0) ||
        member(o, "key_id", cp->key_id, sizeof cp->key_id, LF_KEY_ID_LEN) ||
        member(o, "signature", cp->signature, sizeof cp->signature, 0))
        snprintf(err, errlen,
                 "not a checkpoint (tree_size, root, head, time, key_id, signature)");
    else {
        cp->tree_size = (uint64_t)size;
        rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}

bool lf_checkpoint_verify(const lf_checkpoint *cp, const lf_key *key) {
    char id[LF_KEY_ID_LEN + 1];
    lf_key_id(key, id);
    if (strcmp(id, cp->key_id) != 0) return false;
    size_t n;
    unsigned char *sig = lf_unbase64(cp->signature, &n);
    if (!sig) return false;
    lf_buf text = LF_BUF_INIT;
    lf_checkpoint_text(cp, &text);
    bool ok = lf_key_verify(key, text.p, text.len, sig, n);
    lf_buf_free(&text);
    free(sig);
    return ok;
}

/* ---- the verifier ------------------------------------------------------ */

/* A checkpoint may state fewer entries than precede it (by up to
 * LF_CHECKPOINT_LAG): its root is then the tree of an earlier size T,
 * which the verifier rebuilds from the last snapshot at a multiple of
 * SNAP at or below T and the leaves after it. RECENT leaves and NSNAP
 * snapshots cover any T a checkpoint may state (both powers of two above
 * LAG + SNAP and (LAG + SNAP) / SNAP): ~130 KB, and a 2 KB copy every
 * SNAP entries. */
#define SNAP 64
#define RECENT 2048
#define NSNAP 32

void lf_verifier_init(lf_verifier *v, const lf_key *key) {
    memset(v, 0, sizeof *v);
    lf_chain_init(&v->chain);
    lf_merkle_init(&v->mk);
    v->recent = lf_xmalloc(RECENT * sizeof *v->recent);
    v->snaps = lf_xmalloc(NSNAP * sizeof *v->snaps);
    v->snaps[0] = v->mk;
    v->key = key;
    if (key) lf_key_id(key, v->key_id);
}

void lf_verifier_free(lf_verifier *v) {
    free(v->gens);
    free(v->recent);
    free(v->snaps);
    v->gens = NULL;
    v->recent = NULL;
    v->snaps = NULL;
}

/* A leaf in: kept among the recent ones, and the tree snapshot at every
 * SNAP-th. */
static void add_leaf(lf_verifier *v, const unsigned char leaf[32]) {
    lf_merkle_append(&v->mk, leaf);
    memcpy(v->recent[(v->mk.size - 1) % RECENT], leaf, 32);
    if (v->mk.size % SNAP == 0) v->snaps[(v->mk.size / SNAP) % NSNAP] = v->mk;
}

/* The root and head of the log's first t entries, t at most
 * LF_CHECKPOINT_LAG below the leaves so far. Returns -1 if it is not. */
static int tree_at(const lf_verifier *v, uint64_t t, unsigned char root[32],
                   char head[LF_HASH_LEN + 1]) {
    if (t > v->mk.size || v->mk.size - t > LF_CHECKPOINT_LAG) return -1;
    if (t == v->mk.size) {
        lf_merkle_root(&v->mk, root);
    } else {
        uint64_t base = t / SNAP * SNAP;
        lf_merkle m = v->snaps[(base / SNAP) % NSNAP];
        for (uint64_t i = base + 1; i <= t; i++)
            lf_merkle_append(&m, v->recent[(i - 1) % RECENT]);
        lf_merkle_root(&m, root);
    }
    /* An entry's leaf is its hash. */
    if (t) lf_hex(v->recent[(t - 1) % RECENT], 32, head);
    else memcpy(head, LF_GENESIS, LF_HASH_LEN + 1);
    return 0;
}

void lf_verifier_outside(lf_verifier *v, const lf_checkpoint *cp) {
    v->outside = true;
    v->out = *cp;
    v->outside_met = cp->tree_size == 0;
}

static bool announced(const lf_verifier *v, const char *gen) {
    for (size_t i = v->ngens; i-- > 0;)
        if (strcmp(v->gens[i], gen) == 0) return true;
    return false;
}

static void announce(lf_verifier *v, const char *gen) {
    if (announced(v, gen) || strlen(gen) != LF_HASH_LEN) return;
    v->gens = lf_xrealloc(v->gens, (v->ngens + 1) * sizeof *v->gens);
    memcpy(v->gens[v->ngens++], gen, LF_HASH_LEN + 1);
}

/* A checkpoint entry at seq: it states the entries before it. */
static int check_checkpoint(lf_verifier *v, const lf_entry *e, char *err, size_t errlen) {
    lf_checkpoint cp;
    char why[160];
    unsigned long long seq = (unsigned long long)e->seq;
    if (lf_checkpoint_parse(e->metadata, strlen(e->metadata), &cp, why, sizeof why)) {
        snprintf(err, errlen, "seq %llu: %s", seq, why);
        return -1;
    }
    unsigned char root[32];
    char hex[65], head[LF_HASH_LEN + 1];
    if (e->version != cp.tree_size || tree_at(v, cp.tree_size, root, head) != 0) {
        snprintf(err, errlen,
                 "seq %llu: a checkpoint must state the entries before it, or up to %d "
                 "fewer (it states %llu)",
                 seq, LF_CHECKPOINT_LAG, (unsigned long long)cp.tree_size);
        return -1;
    }
    lf_hex(root, 32, hex);
    if (strcmp(hex, cp.root) != 0 || strcmp(head, cp.head) != 0) {
        snprintf(err, errlen,
                 "seq %llu: the first %llu entries do not make the Merkle root this "
                 "checkpoint signed (the log was rewritten)",
                 seq, (unsigned long long)cp.tree_size);
        return -1;
    }
    if (v->key && strcmp(cp.key_id, v->key_id) != 0) {
        snprintf(err, errlen, "seq %llu: checkpoint signed by key %s, not by %s", seq,
                 cp.key_id, v->key_id);
        return -1;
    }
    if (v->key && !lf_checkpoint_verify(&cp, v->key)) {
        snprintf(err, errlen, "seq %llu: the checkpoint's signature does not verify",
                 seq);
        return -1;
    }
    v->checkpoints++;
    v->last_signed = e->seq;
    memcpy(v->last_key, cp.key_id, sizeof v->last_key);
    return 0;
}

/* The policy set an entry was decided under must have been announced. */
static int check_announced(lf_verifier *v, uint64_t seq, const char *gen, char *err,
                           size_t errlen) {
    if (!gen || strcmp(gen, "none") == 0 || announced(v, gen)) return 0;
    snprintf(err, errlen,
             "seq %llu: decided under policy set %.12s…, which no policy_loaded entry "
             "announced",
             (unsigned long long)seq, gen);
    return -1;
}

/* The rare entries whose content matters here (checkpoints, policy set
 * announcements) are parsed whole; the others are read on the fly. */
static int feed_parsed(lf_verifier *v, const char *line, size_t len, char *err,
                       size_t errlen) {
    lf_entry_doc doc;
    char why[160];
    if (lf_entry_parse(line, len, &doc, why, sizeof why)) {
        snprintf(err, errlen, "seq %llu: unreadable entry (%s)",
                 (unsigned long long)v->chain.next_seq, why);
        return -1;
    }
    const lf_entry *e = &doc.e;
    int rc = lf_chain_check(&v->chain, line, len, e, err, errlen);
    if (rc == 0 && e->kind == LF_ENTRY_CHECKPOINT)
        rc = check_checkpoint(v, e, err, errlen);
    if (rc == 0 && e->kind == LF_ENTRY_POLICY_LOADED && e->policy_set)
        announce(v, e->policy_set);
    else if (rc == 0) rc = check_announced(v, e->seq, e->policy_set, err, errlen);
    lf_entry_doc_free(&doc);
    return rc;
}

/* A member's value (val[0..n), NULL: missing) as a short plain string
 * (no escapes), or "" for null; false if it is missing or anything else. */
static bool plain(const char *val, size_t n, char *out, size_t cap) {
    if (!val) return false;
    if (n == 4 && memcmp(val, "null", 4) == 0) {
        out[0] = '\0';
        return true;
    }
    if (n < 2 || n - 2 >= cap || val[0] != '"' || val[n - 1] != '"' ||
        memchr(val + 1, '\\', n - 2))
        return false;
    memcpy(out, val + 1, n - 2);
    out[n - 2] = '\0';
    return true;
}

/* The members every line is checked on, found in one pass over it (four
 * lookups had been four passes, most of the verifier's time beside the
 * hashing); the first of a repeated key counts, as in lf_json_get. */
enum { H_SEQ, H_KIND, H_PREV, H_GEN, H_N };
typedef struct line_head {
    const char *v[H_N];
    size_t n[H_N];
    int found;
} line_head;

static bool head_member(const char *key, const char *val, size_t vlen, void *arg) {
    static const char *const keys[H_N] = {"seq", "kind", "prev", "policy_set"};
    line_head *h = arg;
    for (int i = 0; i < H_N; i++) {
        if (h->v[i] || strcmp(key, keys[i]) != 0) continue;
        h->v[i] = val;
        h->n[i] = vlen;
        h->found++;
    }
    return h->found < H_N;
}

int lf_verifier_feed(lf_verifier *v, const char *line, size_t len, char *err,
                     size_t errlen) {
    line_head h = {{NULL}, {0}, 0};
    int64_t seq = 0;
    char kind[32], prev[LF_HASH_LEN + 1], gen[LF_HASH_LEN + 1];
    int k = -1, rc;
    lf_json_members(line, len, head_member, &h);
    if (!h.v[H_SEQ] || lf_json_int(h.v[H_SEQ], h.n[H_SEQ], &seq) || seq < 1 ||
        !plain(h.v[H_KIND], h.n[H_KIND], kind, sizeof kind) ||
        (k = lf_entry_kind_parse(kind)) < 0 ||
        !plain(h.v[H_PREV], h.n[H_PREV], prev, sizeof prev) || strlen(prev) != LF_HASH_LEN ||
        !plain(h.v[H_GEN], h.n[H_GEN], gen, sizeof gen)) {
        snprintf(err, errlen, "seq %llu: unreadable entry (%s)",
                 (unsigned long long)v->chain.next_seq,
                 k < 0 && seq ? "unknown kind or none" : "seq, kind, prev or policy_set");
        return -1;
    }
    if (k == LF_ENTRY_CHECKPOINT || k == LF_ENTRY_POLICY_LOADED)
        rc = feed_parsed(v, line, len, err, errlen);
    else if ((rc = lf_chain_link(&v->chain, line, len, (uint64_t)seq, prev, err,
                                 errlen)) == 0)
        rc = check_announced(v, (uint64_t)seq, gen[0] ? gen : NULL, err, errlen);
    if (rc != 0) return rc;
    unsigned char leaf[32], root[32];
    lf_merkle_entry_leaf(line, len, leaf);
    add_leaf(v, leaf);
    if (v->outside && !v->outside_met && v->mk.size == v->out.tree_size) {
        char hex[65];
        lf_merkle_root(&v->mk, root);
        lf_hex(root, 32, hex);
        v->outside_met = true;
        if (strcmp(hex, v->out.root) != 0 || strcmp(v->chain.prev, v->out.head) != 0) {
            snprintf(
                err, errlen,
                "seq %llu: the log no longer extends the outside checkpoint (its first "
                "%llu entries were rewritten)",
                (unsigned long long)seq, (unsigned long long)v->out.tree_size);
            return -1;
        }
    }
    return 0;
}

int lf_verifier_end(lf_verifier *v, char *err, size_t errlen) {
    if (v->outside && !v->outside_met) {
        snprintf(
            err, errlen,
            "seq %llu: the log ends at %llu entries, the outside checkpoint states %llu "
            "(entries were cut off)",
            (unsigned long long)v->mk.size + 1, (unsigned long long)v->mk.size,
            (unsigned long long)v->out.tree_size);
        return -1;
    }
    return 0;
}
