/* bench_util.h -- what the legs of `loopforge bench` share (bench_util.c):
 * a request's outcome kept for a loop that runs on an inline store, and
 * the log written out as a journal file. */
#ifndef LF_BENCH_UTIL_H
#define LF_BENCH_UTIL_H

#include <stdbool.h>
#include "cli.h"
#include "../core/clock.h"

/* The happy path every leg walks a record along after creating it. */
typedef struct lf_bench_step {
    const char *to, *trigger;
} lf_bench_step;
#define LF_BENCH_NSTEPS ((size_t)6)
extern const lf_bench_step lf_bench_path[6];

typedef struct lf_bench_call {
    bool done, ok;
    char id[LF_ID_LEN + 1];     /* the record's, on success */
} lf_bench_call;

/* lf_result_cb: fills the lf_bench_call at arg. */
void lf_bench_on_result(const lf_result *r, void *arg);

/* lf_log_fn for a bench's engines: warnings and errors on stderr, not
 * the info a workload's hooks produce by the thousand (follow-ups). */
void lf_bench_log(lf_log_level level, const char *msg, void *ud);

/* Writes e's whole log to path, a line each (a journal a reader can
 * verify or replay). Returns 0, or -1. */
int lf_bench_dump_log(lf_engine *e, const char *path);

/* Runs n records through the happy path on e, `inflight` of them at
 * once (each one request at a time), dispatching c->base until all are
 * answered; *seconds is the time it took, first_id the first record's id.
 * Returns 0, or -1 (why on stderr, after `label`). */
int lf_bench_inflight(lf_cli *c, lf_engine *e, size_t n, size_t inflight, const char *label,
                      double *seconds, char *first_id);

#endif
