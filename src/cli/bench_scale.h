/* bench_scale.h -- the cost curve of `loopforge bench --scale N[,N...]`
 * (bench_scale.c). */
#ifndef LF_BENCH_SCALE_H
#define LF_BENCH_SCALE_H

#include "cli.h"

/* For each size in `sizes` (comma separated record counts): a journal of
 * that many records (7 entries each), its open time and RSS, and the
 * latency of get, list --state (first and 100th page) and audit ID on
 * it; then the largest size's read latencies over the smallest's. Prints
 * its lines; returns an exit code. */
int lf_bench_scale(lf_cli *c, const char *sizes);

#endif
