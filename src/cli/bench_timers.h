/* bench_timers.h -- the timers leg of `loopforge bench` (bench_timers.c). */
#ifndef LF_BENCH_TIMERS_H
#define LF_BENCH_TIMERS_H

#include <stddef.h>
#include "cli.h"

/* The happy-path rate with a timer on every state beside the same without
 * (records each, best of runs), the memory of `pending` parked timers, and
 * how late a due timer fires with that many pending. Writes its policy set
 * under dir. Prints its lines; returns an exit code. */
int lf_bench_timers(lf_cli *c, const char *dir, size_t records, size_t pending,
                    unsigned runs);

#endif
