/* thread.c -- stopping a helper thread (thread.h). */
#include "thread.h"

void lf_thread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, bool *stop) {
    pthread_mutex_lock(mu);
    *stop = true;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
    pthread_join(t, NULL);
}
