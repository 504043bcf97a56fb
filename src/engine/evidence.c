/* evidence.c -- signed checkpoints and policy set announcements
 * (evidence.h). */
#include "evidence.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/hash.h"
#include "../core/mem.h"
#include "../core/merkle.h"
#include "../core/verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 1000
#define MAX_ATTEMPTS 8          /* checkpoints tried while others append */

typedef struct waiter {
    void (*go)(void *);
    void *arg;
    struct waiter *next;
} waiter;

struct lf_evidence {
    lf_store *store;
    lf_key *key;
    lf_merkle mk;                   /* the log's first mk.size entries */
    char head[LF_HASH_LEN + 1];     /* the hash of entry mk.size */
    bool checkpointing;             /* one at a time */
    char announced[LF_HASH_LEN + 1];    /* the generation known announced */
    bool announcing;
    waiter *waiting, **tail;        /* writes held until it is */
    char *gen, *actor, *meta;       /* the announcement being made */
};

lf_evidence *lf_evidence_new(lf_store *store, lf_key *key) {
    lf_evidence *ev = lf_xcalloc(1, sizeof *ev);
    ev->store = store;
    ev->key = key;
    lf_merkle_init(&ev->mk);
    memcpy(ev->head, LF_GENESIS, LF_HASH_LEN + 1);
    ev->tail = &ev->waiting;
    return ev;
}

void lf_evidence_free(lf_evidence *ev) {
    if (!ev) return;
    lf_key_free(ev->key);
    for (waiter *w = ev->waiting, *n; w; w = n) {
        n = w->next;
        free(w);
    }
    free(ev->gen);
    free(ev->actor);
    free(ev->meta);
    free(ev);
}

bool lf_evidence_can_sign(const lf_evidence *ev) { return ev->key != NULL; }

const lf_key *lf_evidence_key(const lf_evidence *ev) { return ev->key; }

void lf_evidence_saw(lf_evidence *ev, const lf_entry *e) {
    unsigned char leaf[32];
    if (!ev->key || ev->checkpointing || e->seq != ev->mk.size + 1 ||
        lf_unhex_n(e->hash, leaf, 32) != 0)
        return;
    lf_merkle_append(&ev->mk, leaf);
    memcpy(ev->head, e->hash, LF_HASH_LEN + 1);
}

/* ---- checkpoints ------------------------------------------------------- */

typedef struct cp_ctx {
    lf_evidence *ev;
    char *actor;
    lf_text_cb *cb;
    void *arg;
    int attempts;
    lf_checkpoint cp;
} cp_ctx;

static void cp_done(cp_ctx *c, lf_code code, const char *err, const char *doc) {
    c->ev->checkpointing = false;
    c->cb(code, code == LF_OK ? NULL : err, doc, c->arg);
    free(c->actor);
    free(c);
}

static void cp_commit(cp_ctx *c);

/* One page of the log after what the tree holds: leaves in, then the next
 * page, until the end. */
static void cp_page(lf_code code, const char *error, const char *const *lines,
                    const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    cp_ctx *c = arg;
    lf_evidence *ev = c->ev;
    (void)last_seq;
    if (code != LF_OK) {
        cp_done(c, code, error ? error : "the log could not be read", NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char leaf[32];
        if (lf_merkle_entry_leaf(lines[i], lens[i], leaf) != 0) {
            cp_done(c, LF_UNAVAILABLE, "the log holds a line that is not an entry", NULL);
            return;
        }
        lf_merkle_append(&ev->mk, leaf);
        memcpy(ev->head, lines[i] + lens[i] - LF_HASH_LEN - 2, LF_HASH_LEN);
    }
    if (n == 0) cp_commit(c);
    else lf_store_audit(ev->store, NULL, ev->mk.size, PAGE, cp_page, c);
}

static void cp_catch_up(cp_ctx *c) {
    lf_store_audit(c->ev->store, NULL, c->ev->mk.size, PAGE, cp_page, c);
}

/* The standalone document: the checkpoint, the seq it has in the log,
 * the exact text signed, and the public key. */
static char *cp_document(const cp_ctx *c, uint64_t seq) {
    lf_buf b = LF_BUF_INIT, text = LF_BUF_INIT, cp = LF_BUF_INIT;
    lf_checkpoint_text(&c->cp, &text);
    lf_checkpoint_json(&c->cp, &cp);
    char *pem = lf_key_public_pem(c->ev->key);
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_int(&o, "seq", (int64_t)seq);
    lf_jw_raw(&o, "checkpoint", cp.p, NULL);
    lf_jw_str(&o, "signed", text.p);
    lf_jw_str(&o, "public_key", pem);
    lf_jw_close(&o, '}');
    free(pem);
    lf_buf_free(&text);
    lf_buf_free(&cp);
    return lf_buf_steal(&b);
}

static void cp_committed(lf_code code, const char *err, const lf_record *rec,
                         const lf_entry *en, void *arg) {
    cp_ctx *c = arg;
    (void)rec;
    if (code == LF_CONFLICT && ++c->attempts < MAX_ATTEMPTS) {
        cp_catch_up(c);         /* others appended: state those too */
        return;
    }
    if (code != LF_OK) {
        cp_done(c, code, err, NULL);
        return;
    }
    c->ev->checkpointing = false;
    lf_evidence_saw(c->ev, en);         /* the checkpoint is a leaf too */
    char *doc = cp_document(c, en->seq);
    cp_done(c, LF_OK, NULL, doc);
    free(doc);
}

/* Signs what the tree holds and appends it as the next entry. */
static void cp_commit(cp_ctx *c) {
    lf_evidence *ev = c->ev;
    lf_checkpoint *cp = &c->cp;
    unsigned char root[32], sig[LF_SIG_LEN];
    memset(cp, 0, sizeof *cp);
    cp->tree_size = ev->mk.size;
    lf_merkle_root(&ev->mk, root);
    lf_hex(root, sizeof root, cp->root);
    memcpy(cp->head, ev->head, LF_HASH_LEN + 1);
    lf_ts_format(lf_now_us(), cp->time);
    lf_key_id(ev->key, cp->key_id);
    lf_buf text = LF_BUF_INIT, meta = LF_BUF_INIT;
    lf_checkpoint_text(cp, &text);
    if (lf_key_sign(ev->key, text.p, text.len, sig) != 0) {
        lf_buf_free(&text);
        cp_done(c, LF_UNAVAILABLE, "the signing key could not sign", NULL);
        return;
    }
    char *b64 = lf_base64(sig, sizeof sig);
    snprintf(cp->signature, sizeof cp->signature, "%s", b64);
    free(b64);
    lf_checkpoint_json(cp, &meta);
    lf_entry en = {0};
    en.kind = LF_ENTRY_CHECKPOINT;
    en.version = cp->tree_size;
    en.trigger = "checkpoint";
    en.actor = c->actor;
    memcpy(en.timestamp, cp->time, LF_TS_LEN + 1);
    en.metadata = meta.p;
    lf_store_commit(ev->store, &en, cp_committed, c);
    lf_buf_free(&text);
    lf_buf_free(&meta);
}

void lf_evidence_checkpoint(lf_evidence *ev, const char *actor, const char *generation,
                            lf_text_cb *cb, void *arg) {
    (void)generation;           /* a checkpoint is decided by no policy */
    if (!ev->key) {
        cb(LF_INVALID_REQUEST,
           "no signing key: make one with `loopforge keygen` and pass --signing-key "
           "(or set LOOPFORGE_SIGNING_KEY)",
           NULL, arg);
        return;
    }
    if (ev->checkpointing) {
        cb(LF_CONFLICT, "a checkpoint is being written", NULL, arg);
        return;
    }
    ev->checkpointing = true;
    cp_ctx *c = lf_xcalloc(1, sizeof *c);
    c->ev = ev;
    c->actor = lf_xstrdup(actor ? actor : "anonymous");
    c->cb = cb;
    c->arg = arg;
    cp_catch_up(c);
}

/* ---- announcements ----------------------------------------------------- */

static void release(lf_evidence *ev, bool done) {
    if (done) snprintf(ev->announced, sizeof ev->announced, "%s", ev->gen);
    ev->announcing = false;
    waiter *w = ev->waiting;
    ev->waiting = NULL;
    ev->tail = &ev->waiting;
    while (w) {
        waiter *n = w->next;
        w->go(w->arg);
        free(w);
        w = n;
    }
}

static void ann_committed(lf_code code, const char *err, const lf_record *rec,
                          const lf_entry *en, void *arg) {
    (void)err, (void)rec;
    if (code == LF_OK) lf_evidence_saw(arg, en);
    /* A conflict on the key: another writer announced it meanwhile. */
    release(arg, code == LF_OK || code == LF_CONFLICT);
}

static void ann_found(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *found, void *arg) {
    lf_evidence *ev = arg;
    (void)err, (void)rec, (void)found;
    if (code != LF_NOT_FOUND) {
        release(ev, code == LF_OK);
        return;
    }
    char key[16 + LF_HASH_LEN];
    snprintf(key, sizeof key, "announce:%s", ev->gen);
    lf_entry en = {0};
    en.kind = LF_ENTRY_POLICY_LOADED;
    en.trigger = "announce";
    en.actor = ev->actor;
    en.metadata = ev->meta;
    en.policy_set = ev->gen;
    en.idempotency_key = key;
    lf_ts_format(lf_now_us(), en.timestamp);
    lf_store_commit(ev->store, &en, ann_committed, ev);
}

void lf_evidence_announce(lf_evidence *ev, const char *generation, const char *actor,
                          const char *meta, void (*go)(void *), void *arg) {
    if (strcmp(ev->announced, generation) == 0) {
        go(arg);
        return;
    }
    waiter *w = lf_xmalloc(sizeof *w);
    *w = (waiter){go, arg, NULL};
    *ev->tail = w;
    ev->tail = &w->next;
    if (ev->announcing) return;
    ev->announcing = true;
    free(ev->gen);
    free(ev->actor);
    free(ev->meta);
    ev->gen = lf_xstrdup(generation);
    ev->actor = lf_xstrdup(actor ? actor : "anonymous");
    ev->meta = lf_xstrdup(meta);
    char key[16 + LF_HASH_LEN];
    snprintf(key, sizeof key, "announce:%s", generation);
    lf_store_find_key(ev->store, key, ann_found, ev);
}

bool lf_evidence_is_announced(const lf_evidence *ev, const char *generation) {
    return strcmp(ev->announced, generation) == 0;
}

void lf_evidence_announced(lf_evidence *ev, const char *generation) {
    snprintf(ev->announced, sizeof ev->announced, "%s", generation);
}
