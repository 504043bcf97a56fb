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
#include <event2/event.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <unistd.h>
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

/* ---- the tree and the signature -----------------------------------------
 *
 * With a key, a thread of its own keeps the tree and signs checkpoints:
 * the loop copies each entry's hash (64 hex digits: the leaf,
 * core/merkle.h) into a batch and hands full batches over, so keeping the
 * tree costs the loop a copy per entry, not the SHA-256 it costs to fold
 * one (n - 1 of them for n entries; ~8% of the memory store's rate when
 * done inline). A checkpoint asks the thread to sign the tree at the size
 * the loop has handed over (the partial batch goes with the request) and
 * the loop goes on appending: the thread folds up to that size, signs
 * (~40 us of Ed25519, never I/O), folds on, and wakes the loop, which
 * appends the checkpoint as the next entry -- a few entries after the
 * ones it states, at most LF_CHECKPOINT_LAG (core/verify.h). Without an
 * event base to wake, the loop takes the signed checkpoint at its next
 * write (lf_evidence_poll) or, for a checkpoint it must answer at once,
 * waits for it. Without the thread (it could not start) the loop folds
 * each leaf and signs itself. */
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

/* Signs the tree mk as cp (whose tree_size is mk's and head is set):
 * root, time, key id and signature. Returns 0, or -1 if the key could
 * not sign. */
static int sign(const lf_merkle *mk, const lf_key *key, lf_checkpoint *cp) {
    unsigned char root[32], sig[LF_SIG_LEN];
    lf_merkle_root(mk, root);
    lf_hex(root, sizeof root, cp->root);
    lf_ts_format(lf_now_us(), cp->time);
    lf_key_id(key, cp->key_id);
    lf_buf text = LF_BUF_INIT;
    lf_checkpoint_text(cp, &text);
    int rc = lf_key_sign(key, text.p, text.len, sig);
    lf_buf_free(&text);
    if (rc != 0) return -1;
    char *b64 = lf_base64(sig, sizeof sig);
    snprintf(cp->signature, sizeof cp->signature, "%s", b64);
    free(b64);
    return 0;
}

typedef struct folder {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, signed_;
    lf_buf q;                       /* leaf_hex handed over, not folded (mu) */
    bool stop;                      /* (mu) */
    bool polling;                   /* (mu) it looks again within POLL_NS */
    unsigned empty;                 /* looks in a row that found nothing */
    lf_merkle *mk;                  /* the evidence's tree: the thread's */
    const lf_key *key;
    bool asked;                     /* (mu) cp.tree_size and cp.head to sign */
    lf_checkpoint cp;               /* (mu) the request, then the answer */
    int rc;                         /* (mu) sign()'s */
    atomic_bool ready;              /* cp is signed: the loop may take it */
    int efd;                        /* eventfd waking the loop, or -1 */
} folder;

struct lf_evidence {
    lf_store *store;
    lf_key *key;
    lf_merkle mk;                   /* the tree (see fold) */
    folder *fold;                   /* NULL: the loop folds and signs */
    struct event *wake;             /* on the base: the folder signed */
    leaf_hex batch[BATCH];          /* leaves not handed over yet */
    size_t nbatch;
    uint64_t size;                  /* the log's first `size` entries are in */
    char head[LF_HASH_LEN + 1];     /* the hash of entry `size` */
    struct cp_ctx *cp;              /* the checkpoint being made: one at a time */
    char announced[LF_HASH_LEN + 1];    /* the generation known announced */
    bool announcing;
    waiter *waiting, **tail;        /* writes held until it is */
    char *gen, *actor, *meta;       /* the announcement being made */
};

/* The thread's side of a request: signs when the tree holds its size. */
static void sign_asked(folder *f) {
    pthread_mutex_lock(&f->mu);
    lf_checkpoint cp = f->cp;
    pthread_mutex_unlock(&f->mu);
    int rc = sign(f->mk, f->key, &cp);
    pthread_mutex_lock(&f->mu);
    f->cp = cp;
    f->rc = rc;
    f->asked = false;
    atomic_store(&f->ready, true);
    pthread_cond_signal(&f->signed_);
    pthread_mutex_unlock(&f->mu);
    uint64_t one = 1;
    if (f->efd >= 0 && write(f->efd, &one, sizeof one) < 0) { /* a wake-up is pending */ }
}

/* Folds n leaves, stopping to sign at the size asked for (at, if asked:
 * never below the tree's size, since the loop hands leaves over in order
 * and asks after the last one the checkpoint states). */
static void fold_to(folder *f, const leaf_hex *h, size_t n, bool asked, uint64_t at) {
    size_t k = n;
    if (asked && at - f->mk->size < n) k = (size_t)(at - f->mk->size);
    fold(f->mk, h, k);
    if (asked && f->mk->size == at) sign_asked(f);
    fold(f->mk, h + k, n - k);
}

static bool sign_due(const folder *f) { return f->asked && f->mk->size == f->cp.tree_size; }

static void *fold_thread(void *arg) {
    folder *f = arg;
    lf_buf mine = LF_BUF_INIT;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->q.len && !f->stop && !sign_due(f)) {
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
        if (sign_due(f)) {
            pthread_mutex_unlock(&f->mu);
            sign_asked(f);
            pthread_mutex_lock(&f->mu);
            continue;
        }
        if (!f->q.len) break;
        /* Copied, not taken: both buffers keep their memory, so handing
         * a batch over never allocates (a fresh buffer each time had the
         * loop page-faulting in hand_over). */
        size_t n = f->q.len / sizeof(leaf_hex);
        bool asked = f->asked;
        uint64_t at = f->cp.tree_size;
        lf_buf_reset(&mine);
        lf_buf_add(&mine, f->q.p, f->q.len);
        lf_buf_reset(&f->q);
        pthread_mutex_unlock(&f->mu);
        fold_to(f, (const leaf_hex *)mine.p, n, asked, at);
        pthread_mutex_lock(&f->mu);
        f->polling = true;
        f->empty = 0;
    }
    pthread_mutex_unlock(&f->mu);
    lf_buf_free(&mine);
    return NULL;
}

static folder *fold_start(lf_merkle *mk, const lf_key *key, bool wakes) {
    folder *f = lf_xcalloc(1, sizeof *f);
    f->mk = mk;
    f->key = key;
    f->efd = wakes ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
    atomic_init(&f->ready, false);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&f->signed_, NULL);
    if ((!wakes || f->efd >= 0) && pthread_create(&f->thread, NULL, fold_thread, f) == 0)
        return f;
    if (f->efd >= 0) close(f->efd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->signed_);
    free(f);
    return NULL;
}

static void fold_stop(folder *f) {
    if (!f) return;
    lf_thread_stop(f->thread, &f->mu, &f->work, &f->stop);
    if (f->efd >= 0) close(f->efd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->signed_);
    lf_buf_free(&f->q);
    free(f);
}

/* The batch to the thread (mu held). */
static void hand_over_locked(lf_evidence *ev) {
    folder *f = ev->fold;
    if (!ev->nbatch) return;
    memcpy(ev->head, ev->batch[ev->nbatch - 1], LF_HASH_LEN);
    lf_buf_add(&f->q, ev->batch, ev->nbatch * sizeof *ev->batch);
    if (!f->polling) pthread_cond_signal(&f->work);
    ev->nbatch = 0;
}

static void hand_over(lf_evidence *ev) {
    pthread_mutex_lock(&ev->fold->mu);
    hand_over_locked(ev);
    pthread_mutex_unlock(&ev->fold->mu);
}

/* Entry size + 1, whose hash is `hash` (64 hex digits). The head is
 * the batch's last leaf while there is a batch (hand_over keeps it). */
static void add_leaf(lf_evidence *ev, const char *hash) {
    if (ev->fold) {
        memcpy(ev->batch[ev->nbatch++], hash, LF_HASH_LEN);
        if (ev->nbatch == BATCH) hand_over(ev);
    } else {
        fold(&ev->mk, (const leaf_hex *)hash, 1);
        memcpy(ev->head, hash, LF_HASH_LEN);
    }
    ev->size++;
}

static void on_wake(evutil_socket_t fd, short what, void *arg);

lf_evidence *lf_evidence_new(lf_store *store, lf_key *key, struct event_base *base) {
    lf_evidence *ev = lf_xcalloc(1, sizeof *ev);
    ev->store = store;
    ev->key = key;
    lf_merkle_init(&ev->mk);
    if (key) ev->fold = fold_start(&ev->mk, key, base != NULL);
    if (ev->fold && base) ev->wake = event_new(base, ev->fold->efd, EV_READ, on_wake, ev);
    memcpy(ev->head, LF_GENESIS, LF_HASH_LEN + 1);
    ev->tail = &ev->waiting;
    return ev;
}

static void cp_done(struct cp_ctx *c, lf_code code, const char *err, const char *doc);

void lf_evidence_free(lf_evidence *ev) {
    if (!ev) return;
    if (ev->wake) event_free(ev->wake);
    fold_stop(ev->fold);
    if (ev->cp) cp_done(ev->cp, LF_UNAVAILABLE, "closed before the checkpoint was appended", NULL);
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
    if (!ev->key || e->seq != ev->size + 1) return;
    add_leaf(ev, e->hash);
}

/* ---- checkpoints ------------------------------------------------------- */

typedef struct cp_ctx {
    lf_evidence *ev;
    char *actor;
    lf_text_cb *cb;
    void *arg;
    int attempts;
    uint64_t after;             /* the tree's size when the page was asked for */
    bool asked;                 /* the folder is signing it */
    lf_checkpoint cp;
} cp_ctx;

static void cp_done(cp_ctx *c, lf_code code, const char *err, const char *doc) {
    c->ev->cp = NULL;
    c->cb(code, code == LF_OK ? NULL : err, doc, c->arg);
    free(c->actor);
    free(c);
}

static void cp_ask(cp_ctx *c);
static void cp_catch_up(cp_ctx *c);

/* One page of the log after what the tree held when it was asked for
 * (c->after): the entries the tree lacks go in -- this engine's own may
 * have gone in meanwhile (lf_evidence_saw) -- then the next page, until
 * one that is not full. Entries appended after that are the next
 * checkpoint's: under load, waiting for a page with nothing new would
 * never end (the writes in flight are always new), and each page is a
 * read the store must serve. */
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
        if (c->after + 1 + i == ev->size + 1) add_leaf(ev, lines[i] + lens[i] - LF_HASH_LEN - 2);
    }
    if (n < PAGE) cp_ask(c);
    else cp_catch_up(c);
}

/* Reads what others appended since the tree's size, then asks. */
static void cp_catch_up(cp_ctx *c) {
    c->after = c->ev->size;
    lf_store_audit(c->ev->store, NULL, c->after, PAGE, cp_page, c);
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
        cp_catch_up(c);         /* others appended past the lag: state more */
        return;
    }
    if (code != LF_OK) {
        cp_done(c, code, err, NULL);
        return;
    }
    lf_evidence_saw(c->ev, en);         /* the checkpoint is a leaf too */
    char *doc = cp_document(c, en->seq);
    cp_done(c, LF_OK, NULL, doc);
    free(doc);
}

/* Appends the signed checkpoint as the next entry. */
static void cp_commit(cp_ctx *c, int signed_rc) {
    if (signed_rc != 0) {
        cp_done(c, LF_UNAVAILABLE, "the signing key could not sign", NULL);
        return;
    }
    lf_buf meta = LF_BUF_INIT;
    lf_checkpoint_json(&c->cp, &meta);
    lf_entry en = {0};
    en.kind = LF_ENTRY_CHECKPOINT;
    en.version = c->cp.tree_size;
    en.trigger = "checkpoint";
    en.actor = c->actor;
    memcpy(en.timestamp, c->cp.time, LF_TS_LEN + 1);
    en.metadata = meta.p;
    lf_store_commit(c->ev->store, &en, cp_committed, c);
    lf_buf_free(&meta);
}

static void wait_signed(folder *f) {
    pthread_mutex_lock(&f->mu);
    while (!atomic_load(&f->ready)) pthread_cond_wait(&f->signed_, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/* The tree holds the log's first `size` entries: sign them. The folder
 * signs off the loop; without an event base to wake the loop, a
 * checkpoint asked for outside any write (the CLI's, the Lua module's)
 * waits for it here. */
static void cp_ask(cp_ctx *c) {
    lf_evidence *ev = c->ev;
    folder *f = ev->fold;
    memset(&c->cp, 0, sizeof c->cp);
    c->cp.tree_size = ev->size;
    if (!f) {
        memcpy(c->cp.head, ev->head, LF_HASH_LEN + 1);
        cp_commit(c, sign(&ev->mk, ev->key, &c->cp));
        return;
    }
    pthread_mutex_lock(&f->mu);
    hand_over_locked(ev);
    memcpy(c->cp.head, ev->head, LF_HASH_LEN + 1);
    f->cp = c->cp;
    f->asked = true;
    pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->mu);
    c->asked = true;
    if (ev->wake) {
        event_add(ev->wake, NULL);
        return;
    }
    wait_signed(f);
    lf_evidence_poll(ev);
}

void lf_evidence_poll(lf_evidence *ev) {
    cp_ctx *c = ev->cp;
    if (!c || !c->asked) return;
    folder *f = ev->fold;
    if (!atomic_load_explicit(&f->ready, memory_order_acquire)) {
        /* Half the lag a checkpoint may have is written already (the
         * thread was descheduled): wait for it -- it signs, never waits
         * on I/O -- rather than let the log outgrow it. */
        if (ev->size - c->cp.tree_size < LF_CHECKPOINT_LAG / 2) return;
        wait_signed(f);
    }
    pthread_mutex_lock(&f->mu);
    c->cp = f->cp;
    int rc = f->rc;
    atomic_store(&f->ready, false);
    pthread_mutex_unlock(&f->mu);
    c->asked = false;
    if (ev->wake) event_del(ev->wake);
    cp_commit(c, rc);
}

/* The folder signed (or a wake-up left from one taken at a write). */
static void on_wake(evutil_socket_t fd, short what, void *arg) {
    lf_evidence *ev = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) < 0) { /* nothing to drain */ }
    lf_evidence_poll(ev);
    if (ev->cp && ev->cp->asked) event_add(ev->wake, NULL);
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
    if (ev->cp) {
        cb(LF_CONFLICT, "a checkpoint is being written", NULL, arg);
        return;
    }
    cp_ctx *c = lf_xcalloc(1, sizeof *c);
    c->ev = ev;
    c->actor = lf_xstrdup(actor ? actor : "anonymous");
    c->cb = cb;
    c->arg = arg;
    ev->cp = c;
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
