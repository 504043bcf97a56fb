/* flock_wait.c -- waits for a file's lock on a thread.
 *
 * flock() cannot be polled: a loop that calls it while another process
 * holds the lock stops every request it serves until that process lets
 * go -- for good, if that process was stopped holding it. Trying with
 * LOCK_NB on a timer instead was measured to lose the lock, again and
 * again, to any process blocked in flock (the kernel hands the lock to a
 * waiter as it is released; a poller only gets it between the other's
 * turns): two servers sharing a journal went from a p99 of 3.5 ms to
 * 44-147 ms. So a thread blocks in flock for the caller: an event loop is
 * woken (an eventfd) once the thread holds the lock; a caller with
 * nothing else to do (an open, the Lua module's commit) waits on a
 * condition, for a while -- no process waits for good on another stopped
 * while holding the lock.
 *
 * The lock belongs to the open file description: the thread takes it on
 * a dup() of the caller's descriptor, so once it has it the caller holds
 * it, and gives it back on its own descriptor. For the same reason the
 * caller never takes the lock itself while the thread is asked for it
 * (the thread's flock would then succeed on the caller's own lock, and
 * its unlock drop it): a wait that gave up leaves the thread asked, and
 * the next wait waits for the same thread; a lock it gets when nobody
 * wants it any more it gives back at once. */
#include "flock_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "../core/mem.h"
#include "../core/thread.h"

struct lf_flock_wait {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;                     /* the dup the thread locks */
    int efd;                    /* the thread wakes the loop (-1: no loop) */
    struct event *ev;
    lf_flock_got *got;
    void *arg;
    int how;                    /* (mu) LOCK_EX or LOCK_SH */
    bool asked;                 /* (mu) the thread is to take the lock */
    bool wanted;                /* (mu) someone waits for it now */
    bool held;                  /* (mu) the thread got it (or failed: error) */
    int error;
    bool blocked;               /* (mu) the thread is in flock */
    bool stop;                  /* (mu) the caller is done with the waiter */
    bool orphan;                /* (mu) ... and left it to the thread to free */
};

static void wait_free(lf_flock_wait *w) {
    if (w->fd >= 0) close(w->fd);
    if (w->efd >= 0) close(w->efd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void *wait_thread(void *arg) {
    lf_flock_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && (!w->asked || w->held)) pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        int how = w->how, rc;
        w->blocked = true;
        pthread_mutex_unlock(&w->mu);
        do rc = flock(w->fd, how);
        while (rc < 0 && errno == EINTR);
        int why = rc < 0 ? errno : 0;
        pthread_mutex_lock(&w->mu);
        w->blocked = false;
        if (w->stop || (rc == 0 && !w->wanted)) {   /* nobody wants it any more */
            if (rc == 0) (void)flock(w->fd, LOCK_UN);
            if (w->stop) break;
            w->asked = false;
            continue;
        }
        w->held = true;
        w->error = why;
        pthread_cond_broadcast(&w->cv);         /* lf_flock_wait_timed */
        uint64_t one = 1;
        if (w->efd >= 0 && write(w->efd, &one, sizeof one) < 0) { /* one is pending */ }
    }
    bool orphan = w->orphan;
    pthread_mutex_unlock(&w->mu);
    if (orphan) wait_free(w);
    return NULL;
}

/* The lock is the caller's (or flock failed): held, taken. Under mu. */
static int take(lf_flock_wait *w) {
    int error = w->error;
    w->held = w->asked = w->wanted = false;
    return error;
}

static void woken(evutil_socket_t fd, short what, void *arg) {
    lf_flock_wait *w = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) < 0) { /* spurious: held says */ }
    pthread_mutex_lock(&w->mu);
    bool held = w->held;
    int error = held ? take(w) : 0;
    pthread_mutex_unlock(&w->mu);
    if (held) w->got(error, w->arg);
}

lf_flock_wait *lf_flock_wait_new(int fd, struct event_base *base, lf_flock_got *got,
                                 void *arg) {
    lf_flock_wait *w = lf_xcalloc(1, sizeof *w);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);    /* lf_flock_wait_timed */
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->got = got;
    w->arg = arg;
    w->efd = -1;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int e = w->fd < 0 ? errno : 0;
    if (!e && base) {
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0 || !(w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, woken, w)) ||
            event_add(w->ev, NULL) < 0)
            e = w->efd < 0 ? errno : ENOMEM;
    }
    if (!e) e = pthread_create(&w->thread, NULL, wait_thread, w);
    if (e) {
        if (w->ev) event_free(w->ev);
        wait_free(w);
        errno = e;
        return NULL;
    }
    return w;
}

void lf_flock_wait_ask(lf_flock_wait *w) {
    pthread_mutex_lock(&w->mu);
    w->how = LOCK_EX;
    w->asked = w->wanted = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int lf_flock_wait_timed(lf_flock_wait *w, int how, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&w->mu);
    if (!w->asked) {            /* the thread is idle: try first */
        int rc;
        do rc = flock(w->fd, how | LOCK_NB);
        while (rc < 0 && errno == EINTR);
        if (rc == 0 || errno != EWOULDBLOCK) {
            pthread_mutex_unlock(&w->mu);
            return rc;
        }
        w->how = how;
        w->asked = true;
    }
    w->wanted = true;
    pthread_cond_broadcast(&w->cv);
    int t = 0;
    while (!w->held && t == 0) t = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    bool held = w->held;
    int error = held ? take(w) : ETIMEDOUT;
    if (!held) w->wanted = false;       /* the thread stays asked */
    pthread_mutex_unlock(&w->mu);
    if (!error) return 1;
    errno = error;
    return -1;
}

void lf_flock_wait_free(lf_flock_wait *w) {
    if (!w) return;
    if (w->ev) event_free(w->ev);
    pthread_mutex_lock(&w->mu);
    bool blocked = w->orphan = w->blocked;
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (blocked) {
        pthread_detach(w->thread);
        return;
    }
    lf_thread_stop(w->thread, &w->mu, &w->cv, &w->stop);
    wait_free(w);
}
