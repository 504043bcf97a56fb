/* journal.c -- the `file:PATH` store: an append-only NDJSON journal of
 * sealed audit entries, replayed into a memdb at open.
 *
 * The file is the truth and the memdb is a cache of it. Each line is one
 * sealed entry followed by "\n", written with a single write() and made
 * durable with fdatasync() before the commit's callback fires. Several
 * processes may share one journal: every commit takes flock(LOCK_EX) on
 * the file, first folds in whatever the others appended since we last
 * looked (the "catch-up"), then checks, seals and appends. Reads catch up
 * too, under LOCK_SH, so a process always sees what the others committed.
 *
 * `end` is the invariant that makes this work: the byte offset up to
 * which the file has been folded into the memdb. It always sits on a line
 * boundary, so catching up is "parse the lines after end".
 *
 * A line without its "\n" can only be a commit that never finished (a
 * crash, or a writer killed mid-write): it was never acknowledged, so it
 * is cut off, with a warning. Anything else that does not parse or does
 * not fit the log is corruption and is reported with its line number,
 * never skipped.
 *
 * The lock belongs to the open file description, so one handle per
 * process: a handle inherited across fork() shares its lock with the
 * parent's and would not exclude it.
 *
 * Group commit (a journal opened with an event base, as `serve` does): a
 * commit appends and folds its line at once, under the lock, and waits;
 * a flusher thread runs fdatasync() for everything appended so far, and
 * every commit whose line that flush covered is acknowledged on the event
 * loop (an eventfd wakes it). Commits that arrive while a flush runs share
 * the next one, so 64 concurrent requests cost a couple of flushes, not
 * 64, and the loop never waits on the disk. Nothing is acknowledged
 * before it is durable; a read may see a line a flush is about to cover.
 * A flush that fails leaves lines on disk we cannot vouch for: every
 * waiting commit fails and so does every later one (restart: the replay
 * reads what is there). Without a base each commit syncs before it
 * returns -- the Lua module. With one, the loop never waits in flock
 * either: what needs the lock while another process holds it parks until
 * a thread has it for the loop ("waiting for the lock", below). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <event2/event.h>

#include "flock_wait.h"
#include "memdb.h"
#include "../core/clock.h"
#include "../core/mem.h"
#include "../core/thread.h"
#include "store.h"


/* A commit appended and folded, acknowledged once a flush covers `end`. */
typedef struct waiter {
    off_t end;
    lf_store_cb *cb;
    void *arg;
    lf_record *rec;             /* the record after it (a copy: later
                                   commits change the live one) */
    lf_entry e;                 /* its strings in `block` */
    char *block;
    struct waiter *next;
} waiter;

/* The flusher thread and what it shares with the loop (under mu). */
typedef struct flusher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    off_t want;                 /* the loop asks: durable up to here */
    off_t done;                 /* the thread answers: durable up to here */
    int error;                  /* errno of a failed fdatasync, then 0 never */
    bool stop;
    int efd;                    /* eventfd: the thread wakes the loop */
    struct event *ev;
    struct event *kick;         /* asks for a flush once per loop turn */
    bool kicked;
    uint64_t flushes;           /* (mu) fdatasyncs run */
} flusher;

typedef struct lf_journal {
    lf_store base;
    lf_memdb *db;
    char *path;
    int fd;
    off_t end;          /* bytes folded into db; always a line boundary */
    uint64_t lines;     /* lines folded into db, for error line numbers */
    lf_buf line;        /* scratch: the line being committed */
    bool reader;        /* opened read-only: never writes, never cuts */
    flusher *fl;        /* group commit, or NULL: each commit syncs */
    bool held;          /* group commit: LOCK_EX held for this loop turn */
    lf_buf pend;        /* group commit: lines folded, written at the turn's end */
    waiter *waiting, **tail;    /* in append order */
    char *broken;       /* why commits fail since a flush failed */
    struct event_base *evbase;  /* group commit's loop, or NULL */
    lf_flock_wait *lw;  /* waits for the lock another process holds, made
                           the first time one does */
    bool asking;        /* lw was asked for the loop: operations that need
                           the lock park */
    struct parked *parked, **ptail;     /* in arrival order */
    struct event *ptimer;               /* fails those parked too long */
    lf_store_counts counts;     /* flushes: those without group commit */
} lf_journal;

static const lf_store_type journal_type;

void (*lf_journal_replayed_unlocked)(const char *path);
void (*lf_journal_flushing)(const char *path);
int lf_journal_lock_wait_ms = 5000;

/* ---- small helpers ----------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void lock_got(int error, void *arg);

/* The waiter, made the first time another process holds the lock; NULL
 * with errno if it cannot be had. */
static lf_flock_wait *lock_waiter(lf_journal *j) {
    if (!j->lw) j->lw = lf_flock_wait_new(j->fd, j->evbase, lock_got, j);
    return j->lw;
}

/* flock() that survives signals (a commit must not fail because a timer
 * fired while another process held the lock) and waits for the lock at
 * most lf_journal_lock_wait_ms (ETIMEDOUT: lock_err), on the waiter once
 * there is one (flock_wait.h: the lock is then taken through it only;
 * LOCK_NB is for lock_or_ask, which knows the waiter is not asked). */
static int journal_lock(lf_journal *j, int op) {
    int rc;
    bool blocking = op == LOCK_SH || op == LOCK_EX;
    if (!blocking || !j->lw) {
        do rc = flock(j->fd, op == LOCK_UN ? op : op | LOCK_NB);
        while (rc < 0 && errno == EINTR);
        if (rc == 0 || errno != EWOULDBLOCK || !blocking) return rc;
        if (!lock_waiter(j)) return -1;
    }
    rc = lf_flock_wait_timed(j->lw, op, lf_journal_lock_wait_ms);
    if (rc != 0) j->counts.waited++;
    if (rc < 0 && errno == ETIMEDOUT) j->counts.gave_up++;
    return rc < 0 ? -1 : 0;
}

/* Why the lock could not be had (errno `why`). */
static void lock_err(lf_journal *j, int why, char *err, size_t errlen) {
    if (why == ETIMEDOUT)
        seterr(err, errlen,
               "journal %s: another process has held its lock for more than %d ms "
               "(stopped while holding it?); nothing was done",
               j->path, lf_journal_lock_wait_ms);
    else
        seterr(err, errlen, "journal %s: lock: %s", j->path, strerror(why));
}

static void journal_unlock(lf_journal *j) {
    /* Unlocking cannot meaningfully fail on a descriptor we hold; if it
     * did, the lock goes away with the descriptor at close anyway. */
    (void)journal_lock(j, LOCK_UN);
}

/* mkdir -p for the directories above `path` (not the file itself).
 * A component that already is a directory is fine whatever mkdir() says
 * about it (EEXIST, but also EACCES or EROFS on a parent we cannot
 * write to). */
static int mkdir_parents(const char *path, char *err, size_t errlen) {
    struct stat st;
    char *p = lf_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) < 0 && errno != EEXIST &&
            !(stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
            seterr(err, errlen, "journal %s: cannot create directory %s: %s", path, p,
                   strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    free(p);
    return 0;
}

static int sync_parent(const char *path, char *err, size_t errlen) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? lf_xstrndup(path, (size_t)(slash - path)) : lf_xstrdup(".");
    int fd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    if (rc < 0)
        seterr(err, errlen, "journal %s: cannot sync directory %s: %s", path,
               *dir ? dir : "/", strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

/* ---- lines read back ------------------------------------------------------
 *
 * The memdb keeps where each line is, not the line: the file holds it
 * (an audit reads it back with pread, from the page cache in the normal
 * case), and the lines a turn's commits folded but has not written yet
 * are in `pend`, the last pend.len bytes before `end`. */
static int journal_read(void *arg, uint64_t off, size_t len, char *out) {
    lf_journal *j = arg;
    uint64_t written = (uint64_t)j->end - j->pend.len;
    size_t done = 0;
    while (done < len && off + done < written) {
        size_t want = len - done;
        if (off + done + want > written) want = (size_t)(written - off - done);
        ssize_t n = pread(j->fd, out + done, want, (off_t)(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;        /* the file is shorter than we knew */
            return -1;
        }
        done += (size_t)n;
    }
    if (done < len) memcpy(out + done, j->pend.p + (off + done - written), len - done);
    return 0;
}

static lf_memdb *journal_memdb(lf_journal *j) {
    lf_memdb *db = lf_memdb_new();
    lf_memdb_lines_in_file(db, journal_read, j);
    return db;
}

/* ---- replay ------------------------------------------------------------ */

/* Lines are read in batches of about BATCH_BYTES; a catch-up of more than
 * PARALLEL_BYTES (an open, in practice) parses each batch on a thread of
 * its own while the loop folds the one before, in order: parsing a line
 * is about half of a replay, so a million records open in about half the
 * time on two cores. */
#define BATCH_BYTES (1 << 20)
#define PARALLEL_BYTES ((off_t)1 << 20)

typedef struct batch {
    lf_buf text;                /* whole lines, each with its "\n" */
    size_t n, cap;              /* lines */
    size_t *at;                 /* line i is text.p + at[i], len[i] bytes */
    size_t *len;
    lf_entry_doc *doc;
    lf_buf block;               /* the docs' strings (lf_entry_read_into) */
    size_t parsed;              /* doc[0..parsed) parsed; a line that did
                                   not parse stops it, `why` says why */
    char why[256];
} batch;

/* Lines are parsed with lf_entry_read_into, the one-pass reader for lines
 * this program wrote (it halved a replay), into one block for the batch:
 * no allocation a line (one, freed by the other thread, was a tenth of
 * an open). */
static void batch_parse(batch *b) {
    lf_buf_reset(&b->block);
    lf_buf_reserve(&b->block, b->text.len + LF_ENTRY_READ_ROOM(0) * b->n);
    char *at = b->block.p;
    for (b->parsed = 0; b->parsed < b->n; b->parsed++) {
        size_t len = b->len[b->parsed];
        if (lf_entry_read_into(b->text.p + b->at[b->parsed], len, &b->doc[b->parsed], at,
                               b->why, sizeof b->why) < 0)
            break;
        at += LF_ENTRY_READ_ROOM(len);
    }
}

static void batch_drop(batch *b) {
    b->n = b->parsed = 0;
    lf_buf_reset(&b->text);
}

static void batch_free(batch *b) {
    batch_drop(b);
    lf_buf_free(&b->text);
    lf_buf_free(&b->block);
    free(b->at);
    free(b->len);
    free(b->doc);
}

/* Splits text into its lines; what follows the last "\n" goes to `rest`. */
static void batch_split(batch *b, lf_buf *rest) {
    const char *p = b->text.p, *lim = p + b->text.len, *nl;
    while (p < lim && (nl = memchr(p, '\n', (size_t)(lim - p)))) {
        if (b->n == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 64;
            b->at = lf_xrealloc(b->at, b->cap * sizeof *b->at);
            b->len = lf_xrealloc(b->len, b->cap * sizeof *b->len);
            b->doc = lf_xrealloc(b->doc, b->cap * sizeof *b->doc);
        }
        b->at[b->n] = (size_t)(p - b->text.p);
        b->len[b->n++] = (size_t)(nl - p);
        p = nl + 1;
    }
    lf_buf_add(rest, p, (size_t)(lim - p));
    b->text.len = (size_t)(p - b->text.p);
}

/* Folds a parsed batch into the memdb, in order, and drops it. The memdb
 * refuses an entry that does not continue the log (seq out of order, a
 * record version that does not follow), which is what turns a duplicated
 * or reordered line into an error here. Hashes are not checked: that is
 * `audit --verify`'s job, over the same stored bytes. Returns 0, or -1
 * with err naming the first line that does not parse or fold. */
static int batch_fold(lf_journal *j, batch *b, char *err, size_t errlen) {
    char why[256];
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const char *what = b->why;
        if (i < b->parsed && lf_memdb_apply(j->db, &b->doc[i].e, b->text.p + b->at[i],
                                            b->len[i], why, sizeof why) == 0) {
            j->lines++;
            j->end += (off_t)b->len[i] + 1;
            continue;
        }
        if (i < b->parsed) what = why;
        seterr(err, errlen, "journal %s:%" PRIu64 ": %s", j->path, j->lines + 1, what);
        rc = -1;
    }
    batch_drop(b);
    return rc;
}

/* The thread that parses while the loop folds (one catch-up long). */
typedef struct parser {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *todo;                /* (mu) being parsed, NULL when done */
    bool stop;
} parser;

static void *parse_thread(void *arg) {
    parser *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->todo && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->todo) break;
        pthread_mutex_unlock(&p->mu);
        batch_parse(p->todo);
        pthread_mutex_lock(&p->mu);
        p->todo = NULL;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Parses b: on the parser when there is one (parse_wait collects it),
 * else at once. */
static void parse_start(parser *p, batch *b) {
    if (!p) {
        batch_parse(b);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->todo = b;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void parse_wait(parser *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    while (p->todo) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static bool parser_start(parser *p) {
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->todo = NULL;
    p->stop = false;
    if (pthread_create(&p->thread, NULL, parse_thread, p) == 0) return true;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    return false;
}

static void parser_stop(parser *p) {
    if (!p) return;
    parse_wait(p);
    lf_thread_stop(p->thread, &p->mu, &p->cv, &p->stop);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

/* Cuts the file back to `end`, dropping an unfinished last line. Only
 * under LOCK_EX: nobody else may be reading or appending meanwhile. */
static int journal_cut(lf_journal *j, off_t size, char *err, size_t errlen) {
    fprintf(stderr,
            "loopforge: journal %s: cut off a torn last entry "
            "(%jd bytes at offset %jd)\n",
            j->path, (intmax_t)(size - j->end), (intmax_t)j->end);
    if (ftruncate(j->fd, j->end) < 0 || fdatasync(j->fd) < 0) {
        seterr(err, errlen,
               "journal %s: cannot cut off the torn last "
               "entry: %s",
               j->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads the next batch of whole lines at *pos (after `carry`, the start
 * of a line the last batch ended in) into b. Returns the bytes read (0
 * at the end of the file), or -1 with err set. */
static ssize_t batch_read(lf_journal *j, batch *b, lf_buf *carry, off_t *pos, off_t size,
                          char *err, size_t errlen) {
    lf_buf_add(&b->text, carry->p, carry->len);
    lf_buf_reset(carry);
    size_t want = BATCH_BYTES;
    if ((off_t)want > size - *pos) want = (size_t)(size - *pos);
    lf_buf_reserve(&b->text, want);
    ssize_t n = 0;
    while (want && (n = pread(j->fd, b->text.p + b->text.len, want, *pos)) < 0 &&
           errno == EINTR)
        ;
    if (n < 0) {
        seterr(err, errlen, "journal %s: read: %s", j->path, strerror(errno));
        return -1;
    }
    b->text.len += (size_t)n;       /* n == 0: shorter than fstat said, the end */
    *pos += n;
    batch_split(b, carry);
    return n;
}

/* Folds every complete line between `end` and `size` into the memdb;
 * bytes after the last "\n" are a torn tail left by a writer that died
 * (read under the lock, when no writer is halfway through a line), cut
 * off with `exclusive`, else merely left alone (the next commit cuts
 * them). Batches are read and parsed one ahead of the one being folded.
 * Returns 0, or -1 with err set: the file cannot be read or cut, or a
 * complete line does not parse or does not fold (a corrupt journal,
 * named by its line number) -- the memdb then holds what came before. */
static int fold_to(lf_journal *j, off_t size, bool exclusive, char *err, size_t errlen) {
    parser par, *p = size - j->end > PARALLEL_BYTES && parser_start(&par) ? &par : NULL;
    batch b[2] = {0};
    lf_buf carry = LF_BUF_INIT;     /* a line split across batches */
    off_t pos = j->end;
    int rc = -1, cur = 0;
    ssize_t n = batch_read(j, &b[cur], &carry, &pos, size, err, errlen);
    if (n < 0) goto out;
    parse_start(p, &b[cur]);
    while (n > 0) {
        n = batch_read(j, &b[1 - cur], &carry, &pos, size, err, errlen);
        parse_wait(p);
        if (n < 0) goto out;
        if (n > 0) parse_start(p, &b[1 - cur]);
        if (batch_fold(j, &b[cur], err, errlen) < 0) goto out;
        cur = 1 - cur;
    }
    if (batch_fold(j, &b[cur], err, errlen) < 0) goto out;
    if (pos > j->end && exclusive && journal_cut(j, pos, err, errlen) < 0) goto out;
    rc = 0;
out:
    parser_stop(p);
    batch_free(&b[0]);
    batch_free(&b[1]);
    lf_buf_free(&carry);
    return rc;
}

/* The file's size, or -1 with err set; a file shorter than what we folded
 * was rewritten behind our back (only a torn tail is ever cut, and we
 * never fold one). */
static off_t journal_size(lf_journal *j, char *err, size_t errlen) {
    struct stat st;
    if (fstat(j->fd, &st) < 0) {
        seterr(err, errlen, "journal %s: %s", j->path, strerror(errno));
        return -1;
    }
    if (st.st_size < j->end) {
        seterr(err, errlen,
               "journal %s: shrank from %jd to %jd bytes "
               "(modified by something other than loopforge?)",
               j->path, (intmax_t)j->end, (intmax_t)st.st_size);
        return -1;
    }
    return st.st_size;
}

/* Where the last whole line at or before `size` ends (j->end if none
 * after it); read under the lock, where what follows it can only be a
 * torn tail. -1 with err set if the file cannot be read. */
static off_t whole_lines_end(lf_journal *j, off_t size, char *err, size_t errlen) {
    char buf[4096];
    while (size > j->end) {
        size_t want = size - j->end < (off_t)sizeof buf ? (size_t)(size - j->end) : sizeof buf;
        ssize_t n = pread(j->fd, buf, want, size - (off_t)want);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)want) {
            seterr(err, errlen, "journal %s: read: %s", j->path,
                   n < 0 ? strerror(errno) : "shorter than its size");
            return -1;
        }
        const char *nl = memrchr(buf, '\n', want);
        if (nl) return size - (off_t)want + (nl - buf) + 1;
        size -= (off_t)want;
    }
    return j->end;
}

/* Takes the lock (op: LOCK_SH to read, LOCK_EX to write, which may cut a
 * torn tail; with LOCK_NB, not waiting for it; have: the first time, it
 * is held already) with the memdb caught up with the file: how each process
 * sees the others' commits before it reads or writes. When more than
 * `unlocked` bytes are new (an open passes 0; the others PARALLEL_BYTES:
 * a batch another process wrote), the whole lines seen under the lock
 * are folded after giving it back -- again while others appended more
 * than PARALLEL_BYTES meanwhile, four passes at most -- and only the
 * rest under it: seconds of replay at a million records do not stop the
 * other processes' commits, nor a server's event loop waiting on the
 * lock. That is safe because the file only grows by whole lines under
 * the lock, and only what follows them is ever cut or rolled back.
 * Returns 0 holding the lock, 1 if another process holds it (LOCK_NB:
 * what was folded stays folded), or -1 with err set, not holding it. */
static int journal_lock_caught_up(lf_journal *j, int op, off_t unlocked, bool have,
                                  char *err, size_t errlen) {
    for (int pass = 0;; pass++, have = false) {
        if (!have && journal_lock(j, op) < 0) {
            if (errno == EWOULDBLOCK) return 1;
            lock_err(j, errno, err, errlen);
            return -1;
        }
        off_t size = journal_size(j, err, errlen), whole = -1;
        if (size >= 0 && (size - j->end <= unlocked || pass == 4)) {
            /* The rest, under the lock (a torn tail cut with LOCK_EX). */
            if (size == j->end || fold_to(j, size, op & LOCK_EX, err, errlen) == 0) return 0;
        } else if (size >= 0) {
            whole = whole_lines_end(j, size, err, errlen);
        }
        journal_unlock(j);
        if (whole < 0 || (whole > j->end && fold_to(j, whole, false, err, errlen) < 0))
            return -1;
        if (lf_journal_replayed_unlocked) lf_journal_replayed_unlocked(j->path);
        unlocked = PARALLEL_BYTES;
    }
}

/* An open's replay. */
static int journal_replay(lf_journal *j, int op, char *err, size_t errlen) {
    if (journal_lock_caught_up(j, op, 0, false, err, errlen) < 0) return -1;
    journal_unlock(j);
    return 0;
}

/* An operation of the store, as it was asked: what parks while another
 * process holds the lock (group commit), and is asked again once the
 * lock is ours. */
typedef enum { OP_COMMIT, OP_GET, OP_REF, OP_KEY, OP_LIST, OP_COUNT, OP_AUDIT } op_kind;
typedef struct op {
    op_kind kind;
    const char *s;              /* get: the id; ref; key; count: the counter;
                                   audit: the record (NULL: the log) */
    lf_entry *e;                /* commit */
    const lf_list_query *q;     /* list */
    int64_t since;              /* count */
    uint64_t after;             /* audit */
    size_t limit;               /* audit */
    union {
        lf_store_cb *store;     /* commit, get, ref, key */
        lf_list_cb *list;
        lf_count_cb *count;
        lf_audit_cb *audit;
    } cb;
    void *arg;
} op;

static int lock_or_ask(lf_journal *j, int how, char *err, size_t errlen);
static void op_fail(const op *o, lf_code code, const char *err);
static void park(lf_journal *j, const op *o);

/* The read path: a cheap size check, and the shared lock only when
 * another process has appended something since we last looked. Returns 0
 * caught up, 1 to park (group commit: another process holds the lock),
 * -1 with err set. */
static int journal_refresh(lf_journal *j, char *err, size_t errlen) {
    struct stat st;
    if (j->held) return 0;      /* our lock: nobody else appended */
    if (fstat(j->fd, &st) < 0) {
        seterr(err, errlen, "journal %s: %s", j->path, strerror(errno));
        return -1;
    }
    if (st.st_size == j->end) return 0;
    int rc = lock_or_ask(j, LOCK_SH, err, errlen);
    if (rc == 0) journal_unlock(j);
    return rc;
}

/* ---- commit ------------------------------------------------------------ */

/* Puts the file back to `size` after a failed append, so that no reader
 * ever sees half a line or a line we did not acknowledge. */
static void journal_rollback(lf_journal *j, off_t size, char *err, size_t errlen) {
    if (ftruncate(j->fd, size) == 0) return;
    /* The line may stay behind. That is still consistent: we did not
     * fold it, `end` does not cover it, so the next catch-up (ours or
     * another process's) reads it as a committed entry -- or cuts it
     * as a torn tail if it was partial. Say so in the error. */
    size_t used = err ? strlen(err) : 0;
    if (err && used < errlen)
        seterr(err + used, errlen - used, "; truncating back failed too: %s",
               strerror(errno));
}

/* Appends `line` (which ends in "\n") at the end of the file (group
 * commit: to the turn's lines). On failure the file is cut back and -1
 * returned. journal_sync makes it durable, after the lock is given back. */
static int journal_append(lf_journal *j, const char *line, size_t len, char *err,
                          size_t errlen) {
    size_t done = 0;
    if (j->fl) {                /* written by group_write, at the turn's end */
        lf_buf_add(&j->pend, line, len);
        return 0;
    }
    /* Normally one write() does it all; the loop only matters for a
     * signal landing mid-write, and any failure is rolled back below. */
    while (done < len) {
        ssize_t n = write(j->fd, line + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            seterr(err, errlen, "journal %s: write: %s", j->path,
                   n < 0 ? strerror(errno) : "wrote nothing");
            journal_rollback(j, j->end, err, errlen);
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Why the store is broken: a flush (or a turn's write) failed. */
static void journal_break(lf_journal *j, const char *what, int error) {
    if (j->broken) return;
    lf_buf b = LF_BUF_INIT;
    lf_buf_printf(&b,
                  "journal %s: %s: %s (what was appended since the last flush may not "
                  "be durable; restart to replay the journal)",
                  j->path, what, strerror(error));
    j->broken = lf_buf_steal(&b);
}

/* A commit without group commit, durable before its callback: flushed
 * after the lock is given back, so other processes commit meanwhile and
 * one fdatasync covers whatever was written before it (processes sharing
 * the journal through the Lua module flush side by side, not in turn).
 * A flush that fails cannot take the line back (others may have
 * appended after it): the store is broken, as group commit's is. */
static int journal_sync(lf_journal *j, char *err, size_t errlen) {
    if (lf_journal_flushing) lf_journal_flushing(j->path);
    j->counts.flushes++;
    if (fdatasync(j->fd) == 0) return 0;
    journal_break(j, "fdatasync", errno);
    seterr(err, errlen, "%s", j->broken);
    return -1;
}

/* Under LOCK_EX, caught up (journal_lock_caught_up): check, seal, append,
 * fold. Returns the code; on LF_OK *rec is the record after the entry. */
static lf_code journal_commit_locked(lf_journal *j, lf_entry *e, const lf_record **rec,
                                     char *err, size_t errlen) {
    lf_code code = lf_memdb_check(j->db, e, err, errlen);
    if (code != LF_OK) return code;

    lf_memdb_seal(j->db, e, &j->line);
    size_t len = j->line.len;       /* without the newline */
    /* Metadata and the like are embedded as given; pretty-printed JSON
     * would split the entry over lines the replay could not read. */
    if (memchr(j->line.p, '\n', len)) {
        seterr(err, errlen,
               "journal %s: entry contains a raw newline "
               "(JSON fields must be compact)",
               j->path);
        return LF_INVALID_REQUEST;
    }
    lf_buf_putc(&j->line, '\n');
    if (journal_append(j, j->line.p, len + 1, err, errlen) < 0) return LF_UNAVAILABLE;

    /* The fold mutates a live record in place, so the pointer taken now
     * is the record after the entry -- also for a tombstone, which
     * lf_memdb_get no longer finds afterwards. */
    const lf_record *live = lf_memdb_get(j->db, e->record_id);
    if (lf_memdb_apply(j->db, e, j->line.p, len, err, errlen) < 0) {
        /* check passed but the fold refused the entry (say, a created
         * entry with malformed initial fields): the caller's mistake, as
         * in memory:. The line is on disk but must not stay there, or
         * every later replay would stop at it. */
        if (j->fl) j->pend.len -= len + 1;
        else journal_rollback(j, j->end, err, errlen);
        return LF_INVALID_REQUEST;
    }
    j->lines++;
    j->end += (off_t)len + 1;
    if (e->kind == LF_ENTRY_CREATED) live = lf_memdb_get(j->db, e->record_id);
    *rec = live;
    return LF_OK;
}

/* ---- group commit -------------------------------------------------------- */

static void *flush_thread(void *arg) {
    lf_journal *j = arg;
    flusher *f = j->fl;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && (f->want <= f->done || f->error)) pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop) break;
        off_t target = f->want;
        pthread_mutex_unlock(&f->mu);
        /* Everything written before this call, ours or another
         * process's, is durable when it returns. */
        int rc = fdatasync(j->fd), why = errno;
        pthread_mutex_lock(&f->mu);
        if (rc < 0) f->error = why;
        else f->done = target;
        f->flushes++;
        uint64_t one = 1;
        if (write(f->efd, &one, sizeof one) < 0) { /* a wakeup is pending already */ }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void waiter_free(waiter *w) {
    lf_record_free(w->rec);
    free(w->block);
    free(w);
}

/* Acknowledges the commits a flush covered (or fails them all once one
 * failed), in append order. A callback may commit again: that one waits
 * for a later flush, behind these. */
static void acknowledge(lf_journal *j, off_t done, int error) {
    if (error) journal_break(j, "fdatasync", error);
    while (j->waiting && (j->broken || j->waiting->end <= done)) {
        waiter *w = j->waiting;
        j->waiting = w->next;
        if (!j->waiting) j->tail = &j->waiting;
        if (j->broken) w->cb(LF_UNAVAILABLE, j->broken, NULL, NULL, w->arg);
        else w->cb(LF_OK, NULL, w->rec, &w->e, w->arg);
        waiter_free(w);
    }
}

static void flushed(evutil_socket_t fd, short what, void *arg) {
    lf_journal *j = arg;
    flusher *f = j->fl;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) < 0) { /* spurious: the state below says */ }
    pthread_mutex_lock(&f->mu);
    off_t done = f->done;
    int error = f->error;
    pthread_mutex_unlock(&f->mu);
    acknowledge(j, done, error);
}

/* Parks a commit until a flush covers its line, and asks for one. */
static void wait_flush(lf_journal *j, const lf_entry *e, char *block, const lf_record *rec,
                       lf_store_cb *cb, void *arg) {
    waiter *w = lf_xcalloc(1, sizeof *w);
    w->end = j->end;
    w->cb = cb;
    w->arg = arg;
    w->rec = rec ? lf_record_dup(rec) : NULL;
    w->e = *e;
    w->block = block;
    *j->tail = w;
    j->tail = &w->next;
}

/* The end of a turn: the lines its commits folded go out in one write(),
 * and the lock goes back to the other processes. A write that fails
 * leaves the memdb ahead of the file: the journal is broken (restart). */
static void group_write(lf_journal *j) {
    size_t done = 0;
    while (done < j->pend.len && !j->broken) {
        ssize_t n = write(j->fd, j->pend.p + done, j->pend.len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            journal_break(j, "write", n < 0 ? errno : EIO);
            if (ftruncate(j->fd, j->end - (off_t)j->pend.len) < 0) { /* replay cuts it */ }
        }
        done += n > 0 ? (size_t)n : 0;
    }
    lf_buf_reset(&j->pend);
    if (j->held) journal_unlock(j);
    j->held = false;
}

/* Runs after the requests that were ready in this turn of the loop have
 * appended theirs: one write and one flush for all of them. */
static void kick(evutil_socket_t fd, short what, void *arg) {
    lf_journal *j = arg;
    (void)fd, (void)what;
    j->fl->kicked = false;
    group_write(j);
    if (j->broken) {
        acknowledge(j, 0, 0);
        return;
    }
    pthread_mutex_lock(&j->fl->mu);
    j->fl->want = j->end;
    pthread_cond_signal(&j->fl->cv);
    pthread_mutex_unlock(&j->fl->mu);
}

/* What flusher_start set up (the thread is joined by then). */
static void flusher_free(flusher *f) {
    if (f->kick) event_free(f->kick);
    if (f->ev) event_free(f->ev);
    if (f->efd >= 0) close(f->efd);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static void parked_too_long(evutil_socket_t fd, short what, void *arg);

static int flusher_start(lf_journal *j, struct event_base *base, char *err, size_t errlen) {
    flusher *f = lf_xcalloc(1, sizeof *f);
    f->done = f->want = j->end;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    j->fl = f;
    if (f->efd < 0 || !(f->ev = event_new(base, f->efd, EV_READ | EV_PERSIST, flushed, j)) ||
        !(f->kick = event_new(base, -1, 0, kick, j)) || event_add(f->ev, NULL) < 0 ||
        !(j->ptimer = evtimer_new(base, parked_too_long, j)) ||
        pthread_create(&f->thread, NULL, flush_thread, j) != 0) {
        seterr(err, errlen, "journal %s: cannot set up group commit (event loop, thread)",
               j->path);
        j->fl = NULL;
        flusher_free(f);
        return -1;
    }
    return 0;
}

/* Stops the thread, then settles what still waits: one last flush of our
 * own, and the callbacks, here (as every store completes what waits on it
 * when it is freed). */
static void flusher_stop(lf_journal *j) {
    flusher *f = j->fl;
    if (!f) return;
    group_write(j);
    lf_thread_stop(f->thread, &f->mu, &f->cv, &f->stop);
    int error = f->error;
    if (!error && j->waiting && fdatasync(j->fd) < 0) error = errno;
    acknowledge(j, j->end, error);
    flusher_free(f);
    j->fl = NULL;
}

/* The lock is ours for the rest of this loop turn: kick() gives it back. */
static void hold_turn(lf_journal *j) {
    j->held = true;
    if (!j->fl->kicked) {
        j->fl->kicked = true;
        event_active(j->fl->kick, EV_TIMEOUT, 0);
    }
}

/* Takes the lock for the rest of this loop turn (once: later commits of
 * the turn find it held), caught up with the other processes. 0, 1 to
 * park, -1 with err set (a later commit of the turn tries again). */
static int group_hold(lf_journal *j, char *err, size_t errlen) {
    if (j->held) return 0;
    int rc = lock_or_ask(j, LOCK_EX, err, errlen);
    if (rc == 0) hold_turn(j);
    return rc;
}

static void journal_commit(lf_store *s, lf_entry *e, lf_store_cb *cb, void *arg) {
    lf_journal *j = (lf_journal *)s;
    char err[1024] = "";
    const lf_record *rec = NULL;
    /* The entry's strings are borrowed, often from a record of our own
     * memdb (the engine builds an entry from the record a get handed it):
     * catching up may fold another process's transition into that very
     * record and free its state string before we seal. */
    lf_entry own = *e;
    char *block = lf_entry_own(&own);
    lf_code code;

    if (j->reader) {
        seterr(err, sizeof err, "journal %s: opened read-only", j->path);
        code = LF_INVALID_REQUEST;
    } else if (j->broken) {
        seterr(err, sizeof err, "%s", j->broken);
        code = LF_UNAVAILABLE;
    } else if (j->fl) {
        /* Group commit: the lock is taken once per loop turn and given
         * back by kick(), after the turn's lines are written. */
        int held = group_hold(j, err, sizeof err);
        if (held == 1) {
            park(j, &(op){.kind = OP_COMMIT, .e = &own, .cb.store = cb, .arg = arg});
            free(block);
            return;
        }
        code = held < 0 ? LF_UNAVAILABLE : journal_commit_locked(j, &own, &rec, err, sizeof err);
    } else if (journal_lock_caught_up(j, LOCK_EX, PARALLEL_BYTES, false, err, sizeof err) < 0) {
        code = LF_UNAVAILABLE;
    } else {
        code = journal_commit_locked(j, &own, &rec, err, sizeof err);
        /* Unlock before the callback: it may well call back into the
         * store, and a nested unlock would drop the lock under our feet. */
        journal_unlock(j);
        if (code == LF_OK && journal_sync(j, err, sizeof err) < 0) code = LF_UNAVAILABLE;
    }
    if (code == LF_OK) {
        e->seq = own.seq;
        memcpy(e->prev, own.prev, sizeof e->prev);
        memcpy(e->hash, own.hash, sizeof e->hash);
    }
    if (code == LF_OK && j->fl) {
        wait_flush(j, &own, block, rec, cb, arg);
        return;
    }
    if (code == LF_OK) cb(LF_OK, NULL, rec, &own, arg);
    else cb(code, err, NULL, NULL, arg);
    free(block);
}

/* ---- reads ------------------------------------------------------------- */

/* Reads see what other processes appended first; a journal that cannot
 * be read answers LF_UNAVAILABLE, and one another process holds the lock
 * of (group commit) parks the read until it is ours. */
static bool refreshed(lf_journal *j, const op *o) {
    char err[1024];
    int rc = journal_refresh(j, err, sizeof err);
    if (rc == 1) park(j, o);
    else if (rc < 0) op_fail(o, LF_UNAVAILABLE, err);
    return rc == 0;
}

static void journal_get(lf_store *s, const char *id, lf_store_cb *cb, void *arg) {
    lf_journal *j = (lf_journal *)s;
    if (refreshed(j, &(op){.kind = OP_GET, .s = id, .cb.store = cb, .arg = arg}))
        lf_memdb_get_op(j->db, id, cb, arg);
}

static void journal_find_by_ref(lf_store *s, const char *ref, lf_store_cb *cb,
                                void *arg) {
    lf_journal *j = (lf_journal *)s;
    if (refreshed(j, &(op){.kind = OP_REF, .s = ref, .cb.store = cb, .arg = arg}))
        lf_memdb_find_ref_op(j->db, ref, cb, arg);
}

static void journal_find_key(lf_store *s, const char *key, lf_store_cb *cb, void *arg) {
    lf_journal *j = (lf_journal *)s;
    if (refreshed(j, &(op){.kind = OP_KEY, .s = key, .cb.store = cb, .arg = arg}))
        lf_memdb_find_key(j->db, key, cb, arg);
}

static void journal_list(lf_store *s, const lf_list_query *q, lf_list_cb *cb, void *arg) {
    lf_journal *j = (lf_journal *)s;
    if (refreshed(j, &(op){.kind = OP_LIST, .q = q, .cb.list = cb, .arg = arg}))
        lf_memdb_list(j->db, q, cb, arg);
}

static void journal_count(lf_store *s, const char *key, int64_t since, lf_count_cb *cb,
                          void *arg) {
    lf_journal *j = (lf_journal *)s;
    uint64_t n;
    int64_t oldest;
    if (!refreshed(j, &(op){.kind = OP_COUNT, .s = key, .since = since, .cb.count = cb,
                            .arg = arg}))
        return;
    lf_memdb_count(j->db, key, since, &n, &oldest);
    cb(LF_OK, NULL, n, oldest, arg);
}

static void journal_audit(lf_store *s, const char *record_id, uint64_t after,
                          size_t limit, lf_audit_cb *cb, void *arg) {
    lf_journal *j = (lf_journal *)s;
    if (refreshed(j, &(op){.kind = OP_AUDIT, .s = record_id, .after = after,
                           .limit = limit, .cb.audit = cb, .arg = arg}))
        lf_memdb_audit(j->db, record_id, after, limit, cb, arg);
}

/* ---- waiting for the lock (group commit) ----------------------------------
 *
 * `serve` never waits in flock on its event loop: an operation that needs
 * the lock tries for it (LOCK_NB), and when another process holds it --
 * a CLI command's commit, another server's turn, the tail of a journal
 * being opened -- it parks, and a thread waits in flock for the loop
 * (flock_wait.c). Once the lock is ours the loop catches up and asks the
 * parked operations again, in order, for the rest of that turn; each
 * operation asked meanwhile parks behind them (taking the lock itself
 * would race the thread's flock on the same descriptor). One parked for
 * longer than lf_journal_lock_wait_ms fails with LF_UNAVAILABLE: the
 * holder may have been stopped holding it, and nothing is changed. */
typedef struct parked {
    op o;
    lf_entry e;                 /* commit: a copy, its strings in block */
    char *block;
    lf_list_query q;            /* list: a copy */
    char *strs[5];              /* the strings of the others, copied */
    size_t nstrs;
    uint64_t deadline;          /* lf_mono_ns */
    struct parked *next;
} parked;

/* A copy of s that p owns (NULL stays NULL). */
static const char *keep(parked *p, const char *s) {
    return s ? (p->strs[p->nstrs++] = lf_xstrdup(s)) : NULL;
}

static void parked_free(parked *p) {
    for (size_t i = 0; i < p->nstrs; i++) free(p->strs[i]);
    free(p->block);
    free(p);
}

static void arm_timer(lf_journal *j) {
    if (!j->parked) return;
    uint64_t now = lf_mono_ns(), left = j->parked->deadline > now ? j->parked->deadline - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(left / 1000000000u),
                         .tv_usec = (suseconds_t)(left % 1000000000u / 1000u)};
    evtimer_add(j->ptimer, &tv);
}

static void park(lf_journal *j, const op *o) {
    parked *p = lf_xcalloc(1, sizeof *p);
    p->o = *o;
    if (o->kind == OP_COMMIT) {
        p->e = *o->e;
        p->block = lf_entry_own(&p->e);
        p->o.e = &p->e;
    } else if (o->kind == OP_LIST) {
        p->q = *o->q;
        p->q.state = keep(p, o->q->state);
        p->q.repo = keep(p, o->q->repo);
        p->q.cursor = keep(p, o->q->cursor);
        p->q.parent = keep(p, o->q->parent);
        p->o.q = &p->q;
    } else {
        p->o.s = keep(p, o->s);
    }
    p->deadline = lf_mono_ns() + (uint64_t)lf_journal_lock_wait_ms * 1000000u;
    j->counts.waited++;
    bool first = !j->parked;
    *j->ptail = p;
    j->ptail = &p->next;
    if (first) arm_timer(j);
}

static void op_fail(const op *o, lf_code code, const char *err) {
    switch (o->kind) {
    case OP_LIST: o->cb.list(code, err, NULL, 0, NULL, o->arg); break;
    case OP_COUNT: o->cb.count(code, err, 0, 0, o->arg); break;
    case OP_AUDIT: o->cb.audit(code, err, NULL, NULL, 0, o->after, o->arg); break;
    default: o->cb.store(code, err, NULL, NULL, o->arg); break;
    }
}

static void op_run(lf_journal *j, const op *o) {
    lf_store *s = &j->base;
    switch (o->kind) {
    case OP_COMMIT: journal_commit(s, o->e, o->cb.store, o->arg); break;
    case OP_GET: journal_get(s, o->s, o->cb.store, o->arg); break;
    case OP_REF: journal_find_by_ref(s, o->s, o->cb.store, o->arg); break;
    case OP_KEY: journal_find_key(s, o->s, o->cb.store, o->arg); break;
    case OP_LIST: journal_list(s, o->q, o->cb.list, o->arg); break;
    case OP_COUNT: journal_count(s, o->s, o->since, o->cb.count, o->arg); break;
    case OP_AUDIT: journal_audit(s, o->s, o->after, o->limit, o->cb.audit, o->arg); break;
    }
}

/* The first parked operation, taken off the queue (NULL: none). */
static parked *unpark(lf_journal *j) {
    parked *p = j->parked;
    if (!p) return NULL;
    j->parked = p->next;
    if (!j->parked) j->ptail = &j->parked;
    return p;
}

/* Fails the parked operations (all, or those past their deadline: they
 * gave up). */
static void fail_parked(lf_journal *j, bool all, const char *err) {
    uint64_t now = lf_mono_ns();
    while (j->parked && (all || j->parked->deadline <= now)) {
        parked *p = unpark(j);
        if (!all) j->counts.gave_up++;
        op_fail(&p->o, LF_UNAVAILABLE, err);
        parked_free(p);
    }
}

static void parked_too_long(evutil_socket_t fd, short what, void *arg) {
    lf_journal *j = arg;
    char err[1024];
    (void)fd, (void)what;
    lock_err(j, ETIMEDOUT, err, sizeof err);
    fail_parked(j, false, err);
    arm_timer(j);
}

/* The waiter takes the lock for the loop; what needs it parks meanwhile. */
static void ask(lf_journal *j) {
    j->asking = true;
    lf_flock_wait_ask(j->lw);
}

/* The lock is ours (the thread got it): catch up, hold it for the turn,
 * and ask each parked operation again. */
static void lock_got(int error, void *arg) {
    lf_journal *j = arg;
    char err[1024];
    j->asking = false;
    if (!error && !j->parked) {         /* they timed out meanwhile */
        journal_unlock(j);
        return;
    }
    int rc = -1;
    if (error) lock_err(j, error, err, sizeof err);
    else rc = journal_lock_caught_up(j, LOCK_EX | LOCK_NB, PARALLEL_BYTES, true, err,
                                     sizeof err);
    if (rc == 1) {              /* folded a batch unlocked: wait again */
        ask(j);
        return;
    }
    if (rc < 0) {
        fail_parked(j, true, err);
        return;
    }
    evtimer_del(j->ptimer);
    hold_turn(j);
    for (parked *p; (p = unpark(j));) {
        op_run(j, &p->o);
        parked_free(p);
    }
}

/* The lock (how: LOCK_SH or LOCK_EX), caught up: 0 held, 1 to park
 * (the waiter asked for it), -1 with err set. Without group commit (no
 * event base: the Lua module) it waits for it, a while (journal_lock). */
static int lock_or_ask(lf_journal *j, int how, char *err, size_t errlen) {
    if (!j->fl) return journal_lock_caught_up(j, how, PARALLEL_BYTES, false, err, errlen);
    if (j->asking) return 1;
    int rc = journal_lock_caught_up(j, how | LOCK_NB, PARALLEL_BYTES, false, err, errlen);
    if (rc != 1) return rc;
    if (!lock_waiter(j)) {
        lock_err(j, errno, err, errlen);
        return -1;
    }
    ask(j);
    return 1;
}

/* ---- open / free ------------------------------------------------------- */

static void journal_free(lf_store *s) {
    lf_journal *j = (lf_journal *)s;
    if (!j) return;
    char err[1024];
    seterr(err, sizeof err, "journal %s: closed while waiting for its lock", j->path);
    fail_parked(j, true, err);
    lf_flock_wait_free(j->lw);
    if (j->ptimer) event_free(j->ptimer);
    flusher_stop(j);
    free(j->broken);
    if (j->fd >= 0) close(j->fd);
    if (j->db) lf_memdb_free(j->db);
    lf_buf_free(&j->line);
    lf_buf_free(&j->pend);
    free(j->path);
    free(j);
}

lf_store *lf_journal_open(const char *path, struct event_base *base, lf_code *code,
                          char *err, size_t errlen) {
    lf_journal *j = NULL;

    if (code) *code = LF_UNAVAILABLE;
    if (!path || !*path) {
        seterr(err, errlen, "journal: empty path");
        if (code) *code = LF_INVALID_REQUEST;
        return NULL;
    }
    if (mkdir_parents(path, err, errlen) < 0) return NULL;

    j = lf_xcalloc(1, sizeof *j);
    j->evbase = base;
    j->base.type = &journal_type;
    j->fd = -1;
    j->path = lf_xstrdup(path);
    j->db = journal_memdb(j);
    j->tail = &j->waiting;
    j->ptail = &j->parked;
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (j->fd < 0) {
        seterr(err, errlen, "journal %s: %s", path, strerror(errno));
        goto fail;
    }
    /* Exclusive, not shared: replay may have to cut a torn tail. */
    if (journal_replay(j, LOCK_EX, err, errlen) < 0) goto fail;
    /* fdatasync() makes a line durable, not the file's name: a journal
     * that may have just been created needs its directory synced too, or
     * a crash could lose the whole file with its acknowledged entries. */
    if (j->end == 0 && sync_parent(path, err, errlen) < 0) goto fail;
    if (base && flusher_start(j, base, err, errlen) < 0) goto fail;

    if (code) *code = LF_OK;
    return &j->base;

fail:
    journal_free(&j->base);
    return NULL;
}

/* The journal as a reader sees it: opened read-only, a torn tail left
 * where it is (and unread), nothing created; a journal that does not
 * exist yet reads as an empty store. */
lf_store *lf_journal_open_reader(const char *path, lf_code *code, char *err,
                                 size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (code) *code = LF_OK;
        return lf_memory_open();
    }
    if (fd < 0) {
        seterr(err, errlen, "journal %s: %s", path, strerror(errno));
        if (code) *code = LF_UNAVAILABLE;
        return NULL;
    }
    lf_journal *j = lf_xcalloc(1, sizeof *j);
    j->base.type = &journal_type;
    j->fd = fd;
    j->reader = true;
    j->tail = &j->waiting;
    j->ptail = &j->parked;
    j->path = lf_xstrdup(path);
    j->db = journal_memdb(j);
    if (journal_replay(j, LOCK_SH, err, errlen) < 0) {
        if (code) *code = LF_UNAVAILABLE;
        journal_free(&j->base);
        return NULL;
    }
    if (code) *code = LF_OK;
    return &j->base;
}

static void journal_counts(lf_store *s, lf_store_counts *out) {
    lf_journal *j = (lf_journal *)s;
    *out = j->counts;
    if (!j->fl) return;
    pthread_mutex_lock(&j->fl->mu);
    out->flushes += j->fl->flushes;
    pthread_mutex_unlock(&j->fl->mu);
}

static const lf_store_type journal_type = {
    .scheme = "file",
    .get = journal_get,
    .find_by_ref = journal_find_by_ref,
    .commit = journal_commit,
    .list = journal_list,
    .audit = journal_audit,
    .find_key = journal_find_key,
    .count = journal_count,
    .counts = journal_counts,
    .free = journal_free,
};
