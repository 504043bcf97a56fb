/* flock_wait.c -- waits for a file's lock on a thread, for an event loop.
 *
 * flock() cannot be polled: a loop that calls it while another process
 * holds the lock stops every request it serves until that process lets
 * go -- for good, if that process was stopped holding it. Trying with
 * LOCK_NB on a timer instead was measured to lose the lock, again and
 * again, to any process blocked in flock (the kernel hands the lock to a
 * waiter as it is released; a poller only gets it between the other's
 * turns): two servers sharing a journal went from a p99 of 3.5 ms to
 * 44-147 ms. So a thread blocks in flock for the loop and wakes it (an
 * eventfd) once it holds the lock.
 *
 * The lock belongs to the open file description: the thread takes it on
 * a dup() of the caller's descriptor, so once it has it the caller holds
 * it, and gives it back on its own descriptor. A caller with no loop to
 * go on with (an open, the Lua module's commit) waits for the same thread
 * on a condition, for a while: no process waits for good on another that
 * was stopped holding the lock. */
#include "flock_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

#include "../core/mem.h"
#include "../core/thread.h"

struct lf_flock_wait {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;                     /* the dup the thread locks */
    int how;                    /* LOCK_EX or LOCK_SH */
    int efd;                    /* the thread wakes the loop (-1: none) */
    struct event *ev;
    lf_flock_got *got;
    void *arg;
    bool asked;                 /* (mu) the loop waits for the lock */
    bool held;                  /* (mu) the thread got it (or failed: error) */
    int error;
    bool blocked;               /* (mu) the thread is in flock */
    bool stop;                  /* (mu) the loop is done with the waiter */
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
        w->blocked = true;
        pthread_mutex_unlock(&w->mu);
        int rc;
        do rc = flock(w->fd, w->how);
        while (rc < 0 && errno == EINTR);
        int why = rc < 0 ? errno : 0;
        pthread_mutex_lock(&w->mu);
        w->blocked = false;
        if (w->stop) {          /* nobody wants it any more */
            if (rc == 0) (void)flock(w->fd, LOCK_UN);
            break;
        }
        w->held = true;
        w->error = why;
        pthread_cond_broadcast(&w->cv);         /* lf_flock_timed */
        uint64_t one = 1;
        if (w->efd >= 0 && write(w->efd, &one, sizeof one) < 0) { /* one is pending */ }
    }
    bool orphan = w->orphan;
    pthread_mutex_unlock(&w->mu);
    if (orphan) wait_free(w);
    return NULL;
}

static void woken(evutil_socket_t fd, short what, void *arg) {
    lf_flock_wait *w = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof n) < 0) { /* spurious: held says */ }
    pthread_mutex_lock(&w->mu);
    bool held = w->held;
    int error = w->error;
    if (held) w->held = w->asked = false;
    pthread_mutex_unlock(&w->mu);
    if (held) w->got(error, w->arg);
}

/* A waiter and its thread, not asked yet: NULL if they cannot be had. */
static lf_flock_wait *wait_new(int fd, int how) {
    lf_flock_wait *w = lf_xcalloc(1, sizeof *w);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);    /* lf_flock_timed */
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->how = how;
    w->efd = -1;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (w->fd < 0 || pthread_create(&w->thread, NULL, wait_thread, w) != 0) {
        wait_free(w);
        return NULL;
    }
    return w;
}

lf_flock_wait *lf_flock_wait_new(int fd, struct event_base *base, lf_flock_got *got,
                                 void *arg) {
    lf_flock_wait *w = wait_new(fd, LOCK_EX);
    if (!w) return NULL;
    w->got = got;
    w->arg = arg;
    /* Set before the first ask, which the thread waits for under mu. */
    w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->efd < 0 || !(w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, woken, w)) ||
        event_add(w->ev, NULL) < 0) {
        lf_flock_wait_free(w);
        return NULL;
    }
    return w;
}

int lf_flock_timed(int fd, int how, int ms) {
    int rc;
    do rc = flock(fd, how | LOCK_NB);
    while (rc < 0 && errno == EINTR);
    if (rc == 0 || errno != EWOULDBLOCK) return rc;
    lf_flock_wait *w = wait_new(fd, how);
    if (!w) return -1;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&w->mu);
    w->asked = true;
    pthread_cond_broadcast(&w->cv);
    int t = 0;
    while (!w->held && t != ETIMEDOUT) t = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    bool held = w->held;
    int error = w->error;
    w->held = w->asked = false;
    pthread_mutex_unlock(&w->mu);
    lf_flock_wait_free(w);      /* still in flock: it gives the lock back */
    if (held && !error) return 0;
    errno = held ? error : ETIMEDOUT;
    return -1;
}

void lf_flock_wait_ask(lf_flock_wait *w) {
    pthread_mutex_lock(&w->mu);
    w->asked = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void lf_flock_wait_free(lf_flock_wait *w) {
    if (!w) return;
    if (w->ev) event_free(w->ev);
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    bool blocked = w->orphan = w->blocked;
    pthread_mutex_unlock(&w->mu);
    if (blocked) {
        pthread_detach(w->thread);
        return;
    }
    lf_thread_stop(w->thread, &w->mu, &w->cv, &w->stop);
    wait_free(w);
}
