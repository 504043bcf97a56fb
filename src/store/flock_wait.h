/* flock_wait.h -- waiting for a file's lock on a thread: for an event
 * loop, which is called back holding the lock, or for a while
 * (flock_wait.c says why). */
#ifndef LF_FLOCK_WAIT_H
#define LF_FLOCK_WAIT_H

#include <event2/event.h>

typedef struct lf_flock_wait lf_flock_wait;

/* Called on the loop once the lock is the caller's (error 0), or with
 * the errno flock failed with (the lock is not held). */
typedef void lf_flock_got(int error, void *arg);

/* A waiter for the lock of fd's open file description: calling got on
 * base (NULL: no loop, lf_flock_wait_timed only). NULL with errno if a
 * thread or an event cannot be had. Once there is a waiter, the lock is
 * taken through it only (lf_flock_wait_timed or _ask): the caller gives
 * it back (LOCK_UN) on its own descriptor. */
lf_flock_wait *lf_flock_wait_new(int fd, struct event_base *base, lf_flock_got *got,
                                 void *arg);

/* Asks for the lock (LOCK_EX) for the loop: got is called once, when the
 * caller holds it. Asking again before then changes nothing. (A timed
 * wait for LOCK_SH that gave up must not be pending: its thread would hand
 * over a shared lock. The journal waits that way only at an open, and an
 * open that gives up closes the journal.) */
void lf_flock_wait_ask(lf_flock_wait *w);

/* The lock (how: LOCK_EX or LOCK_SH), waiting at most ms: 0 held at
 * once, 1 held after waiting for it, or -1 with errno (ETIMEDOUT: another
 * process held it all that time; the next wait goes on waiting for the
 * same thread). */
int lf_flock_wait_timed(lf_flock_wait *w, int how, int ms);

/* Frees the waiter; got is not called after this. A thread still blocked
 * in flock (another process stopped holding the lock) is left to end on
 * its own: it gives the lock back as soon as it gets it, and frees what
 * it used -- the caller must be done with the descriptor's lock. */
void lf_flock_wait_free(lf_flock_wait *w);

#endif
