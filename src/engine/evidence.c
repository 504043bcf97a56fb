/* evidence.c -- signed checkpoints and policy set announcements
 * (evidence.h). */
#include "evidence.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/hash.h"
#include "../core/mem.h"
#include "../core/merkle.h"
#include "../core/thread.h"
#include "../core/verify.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
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

/* ---- the tree ---------------------------------------------------------
 *
 * With a key, a thread of its own folds the leaves into the tree: the
 * loop copies each entry's hash (64 hex digits: the leaf, core/merkle.h)
 * into a batch and hands full batches over, so keeping the tree costs the
 * loop a copy per entry, not the SHA-256 it costs to fold one (n - 1 of
 * them for n entries; ~8% of the memory store's rate when done inline).
 * A checkpoint waits for a batch the thread is folding (~10 us of
 * hashing, never I/O), then folds what it has not started and the
 * partial batch itself -- which is why batches are small and looked for
 * often: what is left for the checkpoint to fold is the loop's time. The
 * tree is the thread's while it is busy, the loop's otherwise; without
 * the thread (it could not start) the loop folds each leaf itself. */
#define BATCH 64
/* A busy thread looks for work every 100 us instead of being woken
 * per batch: on a virtual machine, waking an idle CPU costs the waker
 * ~20 us (an inter-processor interrupt), more than folding the batch.
 * It sleeps until woken only after IDLE_POLLS looks found nothing (4 ms):
 * going idle after one empty look had made every batch a wake-up (3-4%
 * of the memory store's rate). */
#define POLL_NS 100000L
#define IDLE_POLLS 40

typedef char leaf_hex[LF_HASH_LEN];

/* The hashes were checked as hex when they came in. */
static void fold(lf_merkle *mk, const leaf_hex *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char leaf[32];
        (void)lf_unhex_n(h[i], leaf, 32);
        lf_merkle_append(mk, leaf);
    }
}

typedef struct folder {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    lf_buf q;                       /* leaf_hex handed over, not folded (mu) */
    bool busy, stop;                /* (mu) */
    bool polling;                   /* (mu) it looks again within POLL_NS */
    unsigned empty;                 /* looks in a row that found nothing */
    lf_merkle *mk;                  /* the evidence's tree */
} folder;

struct lf_evidence {
    lf_store *store;
    lf_key *key;
    lf_merkle mk;                   /* the tree (see fold) */
    folder *fold;                   /* NULL: the loop folds */
    leaf_hex batch[BATCH];          /* leaves not handed over yet */
    size_t nbatch;
    uint64_t size;                  /* the log's first `size` entries are in */
    char head[LF_HASH_LEN + 1];     /* the hash of entry `size` */
    bool checkpointing;             /* one at a time */
    char announced[LF_HASH_LEN + 1];    /* the generation known announced */
    bool announcing;
    waiter *waiting, **tail;        /* writes held until it is */
    char *gen, *actor, *meta;       /* the announcement being made */
};

static void *fold_thread(void *arg) {
    folder *f = arg;
    lf_buf mine = LF_BUF_INIT;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->q.len && !f->stop) {
            if (!f->polling) {
                pthread_cond_wait(&f->work, &f->mu);
                continue;
            }
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            t.tv_nsec += POLL_NS;
            if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&f->work, &f->mu, &t) == ETIMEDOUT && !f->q.len &&
                ++f->empty >= IDLE_POLLS)
                f->polling = false;     /* idle: sleep until woken */
        }
        if (!f->q.len) break;
        /* Copied, not taken: both buffers keep their memory, so handing
         * a batch over never allocates (a fresh buffer each time had the
         * loop page-faulting in hand_over). */
        size_t n = f->q.len / sizeof(leaf_hex);
        lf_buf_reset(&mine);
        lf_buf_add(&mine, f->q.p, f->q.len);
        lf_buf_reset(&f->q);
        f->busy = true;
        pthread_mutex_unlock(&f->mu);
        fold(f->mk, (const leaf_hex *)mine.p, n);
        pthread_mutex_lock(&f->mu);
        f->busy = false;
        f->polling = true;
        f->empty = 0;
        pthread_cond_signal(&f->idle);
    }
    pthread_mutex_unlock(&f->mu);
    lf_buf_free(&mine);
    lf_sha256_thread_end();
    return NULL;
}

static folder *fold_start(lf_merkle *mk) {
    folder *f = lf_xcalloc(1, sizeof *f);
    f->mk = mk;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&f->idle, NULL);
    if (pthread_create(&f->thread, NULL, fold_thread, f) == 0) return f;
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->idle);
    free(f);
    return NULL;
}

static void fold_stop(folder *f) {
    if (!f) return;
    lf_thread_stop(f->thread, &f->mu, &f->work, &f->stop);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->idle);
    lf_buf_free(&f->q);
    free(f);
}

/* The batch to the thread. */
static void hand_over(lf_evidence *ev) {
    folder *f = ev->fold;
    if (!ev->nbatch) return;
    pthread_mutex_lock(&f->mu);
    lf_buf_add(&f->q, ev->batch, ev->nbatch * sizeof *ev->batch);
    if (!f->polling) pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->mu);
    ev->nbatch = 0;
}

/* Entry size + 1, whose hash is `hash` (64 hex digits). */
static void add_leaf(lf_evidence *ev, const char *hash) {
    if (ev->fold) {
        memcpy(ev->batch[ev->nbatch++], hash, LF_HASH_LEN);
        if (ev->nbatch == BATCH) hand_over(ev);
    } else {
        fold(&ev->mk, (const leaf_hex *)hash, 1);
    }
    memcpy(ev->head, hash, LF_HASH_LEN);
    ev->head[LF_HASH_LEN] = '\0';
    ev->size++;
}

/* The root of the first `size` entries. */
static void tree_root(lf_evidence *ev, unsigned char out[32]) {
    folder *f = ev->fold;
    if (!f) {
        lf_merkle_root(&ev->mk, out);
        return;
    }
    /* What the thread has not started on, and the partial batch, are
     * folded here: waking it would cost as much. */
    pthread_mutex_lock(&f->mu);
    while (f->busy) pthread_cond_wait(&f->idle, &f->mu);
    fold(&ev->mk, (const leaf_hex *)f->q.p, f->q.len / sizeof(leaf_hex));
    lf_buf_reset(&f->q);
    fold(&ev->mk, ev->batch, ev->nbatch);
    ev->nbatch = 0;
    lf_merkle_root(&ev->mk, out);
    pthread_mutex_unlock(&f->mu);
}

lf_evidence *lf_evidence_new(lf_store *store, lf_key *key) {
    lf_evidence *ev = lf_xcalloc(1, sizeof *ev);
    ev->store = store;
    ev->key = key;
    lf_merkle_init(&ev->mk);
    if (key) ev->fold = fold_start(&ev->mk);
    memcpy(ev->head, LF_GENESIS, LF_HASH_LEN + 1);
    ev->tail = &ev->waiting;
    return ev;
}

void lf_evidence_free(lf_evidence *ev) {
    if (!ev) return;
    fold_stop(ev->fold);
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
    /* e->hash is hex: the store sealed it. */
    if (!ev->key || ev->checkpointing || e->seq != ev->size + 1) return;
    add_leaf(ev, e->hash);
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
        add_leaf(ev, lines[i] + lens[i] - LF_HASH_LEN - 2);
    }
    if (n == 0) cp_commit(c);
    else lf_store_audit(ev->store, NULL, ev->size, PAGE, cp_page, c);
}

static void cp_catch_up(cp_ctx *c) {
    lf_store_audit(c->ev->store, NULL, c->ev->size, PAGE, cp_page, c);
}

/* The standalone document: the checkpoint, the seq it has in the log,
 * the exact text signed, and the public key. */
static char *cp_document(const cp_ctx *c, uint64_t seq) {
    lf_buf b = LF_BUF_INIT, text = LF_BUF_INIT, cp = LF_BUF_INIT;
    lf_checkpoint_text(&c->cp, &text);
    lf_checkpoint_json(&c->cp, &cp);
    const char *pem = lf_key_public_pem(c->ev->key);
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_int(&o, "seq", (int64_t)seq);
    lf_jw_raw(&o, "checkpoint", cp.p, NULL);
    lf_jw_str(&o, "signed", text.p);
    lf_jw_str(&o, "public_key", pem);
    lf_jw_close(&o, '}');
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
    cp->tree_size = ev->size;
    tree_root(ev, root);
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
