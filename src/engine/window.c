/* window.c -- asynchronous jobs run many at once, their results handed
 * over in order (window.h). */
#include "window.h"
#include "../core/mem.h"

#include <stdlib.h>

struct lf_window {
    const lf_window_ops *ops;
    void *arg;
    size_t started, given;      /* jobs started; results delivered, in order */
    bool finished[LF_WINDOW];   /* job i's is finished[i % LF_WINDOW] */
    bool ended, pumping, again;
};

lf_window *lf_window_new(const lf_window_ops *ops, void *arg) {
    lf_window *w = lf_xcalloc(1, sizeof *w);
    w->ops = ops;
    w->arg = arg;
    return w;
}

/* Delivers what is next in order, starts jobs while there is room, and
 * finishes after the last; a call from inside (a job that finished in
 * its start) only asks for another round. */
static void pump(lf_window *w) {
    if (w->pumping) {
        w->again = true;
        return;
    }
    w->pumping = true;
    do {
        w->again = false;
        for (; w->given < w->started && w->finished[w->given % LF_WINDOW]; w->given++)
            w->ops->deliver(w->arg, w->given);
        while (!w->ended && w->started - w->given < LF_WINDOW) {
            w->finished[w->started % LF_WINDOW] = false;
            if (!w->ops->start(w->arg, w->started)) w->ended = true;
            else w->started++;
        }
    } while (w->again);
    w->pumping = false;
    if (w->ended && w->given == w->started) {
        w->ops->done(w->arg);
        free(w);
    }
}

void lf_window_go(lf_window *w) { pump(w); }

void lf_window_finish(lf_window *w, size_t i) {
    w->finished[i % LF_WINDOW] = true;
    pump(w);
}
