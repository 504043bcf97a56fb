/* notify.h -- hooks' outbound HTTP notifications (notify.c): what the
 * engine hands over after a hooks run. Not installed. */
#ifndef LF_NOTIFY_H
#define LF_NOTIFY_H

#include <stddef.h>
#include "../loopforge.h"
#include "../rules/rules.h"

typedef struct lf_notifier lf_notifier;

/* Where outcomes are reported. The log is read through pointers to the
 * engine's own fields at the moment a line is written, so
 * lf_engine_set_log also redirects the outcomes of POSTs in flight. */
typedef struct lf_notify_sink {
    lf_log_fn *const *log;
    void *const *log_ud;
    lf_stats *stats;            /* notify_sent, notify_failed */
} lf_notify_sink;

/* Starts one POST per notification on `base` and returns at once: the
 * outcomes reach the sink later, from the loop. *np is made on first use
 * (from `base` and `sink`); without a base each notification is logged
 * as skipped and counted as failed. Copies what it keeps: `ns` may be
 * freed on return. */
void lf_notify_send(lf_notifier **np, struct event_base *base, const lf_notify_sink *sink,
                    const lf_notification *ns, size_t n);

/* Cancels every POST still in flight (one log line each) and frees. The
 * event base must still exist. NULL is a no-op. */
void lf_notify_free(lf_notifier *nt);

#endif
