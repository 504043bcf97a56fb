/* window.h -- asynchronous jobs run many at once, their results handed
 * over in order (the engine's bulk work: importing records, firing due
 * timers).
 *
 * Jobs are started in order, up to LF_WINDOW of them unfinished at once:
 * a chain of durable commits one at a time waits for a flush (or a round
 * trip) each, where 64 share one. Each job's results are delivered in
 * the order the jobs started, once it and every job before it have
 * finished. A job that finishes inside its own start (a store that
 * answers at once) does not start the next one deeper on the stack: the
 * window goes round again instead, so 100,000 jobs do not nest 100,000
 * calls deep. */
#ifndef LF_WINDOW_H
#define LF_WINDOW_H

#include <stdbool.h>
#include <stddef.h>

#define LF_WINDOW 64

typedef struct lf_window lf_window;

typedef struct lf_window_ops {
    /* Starts job i (0, 1, ...), which calls lf_window_finish(w, i) once
     * it is over, maybe before returning; false: there is no job i, the
     * jobs are all started. */
    bool (*start)(void *arg, size_t i);
    /* Job i's results, in order. */
    void (*deliver)(void *arg, size_t i);
    /* After the last delivery; the window is freed after it returns. */
    void (*done)(void *arg);
} lf_window_ops;

/* A window over arg's jobs; nothing starts before lf_window_go. */
lf_window *lf_window_new(const lf_window_ops *ops, void *arg);
/* Starts the jobs (done, and the window freed, may come before it
 * returns). */
void lf_window_go(lf_window *w);
/* Job i is over: deliver what is next in order, start more. */
void lf_window_finish(lf_window *w, size_t i);

#endif
