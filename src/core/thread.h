/* thread.h -- the one way loopforge stops a helper thread of its own (the
 * evidence's tree folder, the journal's flusher, replay parser and lock
 * waiter): each waits on a condition under a mutex and ends when its stop
 * flag is set. (The lock waiter, stopped while blocked in flock, is left
 * to end on its own: flock_wait.c.) */
#ifndef LF_THREAD_H
#define LF_THREAD_H

#include <pthread.h>
#include <stdbool.h>

/* Sets *stop under mu, wakes every waiter on cv, and joins t. The caller
 * then destroys what the thread used. */
void lf_thread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop);

#endif
