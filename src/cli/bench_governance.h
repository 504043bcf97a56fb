/* bench_governance.h -- the explain and replay leg of `loopforge bench`
 * (bench_governance.c). */
#ifndef LF_BENCH_GOVERNANCE_H
#define LF_BENCH_GOVERNANCE_H

#include <stddef.h>
#include "cli.h"

/* Explain latency over `records` records under `policies` (the whole set),
 * then replay throughput over a journal of about `entries` lines written
 * in dir. Prints its lines; returns an exit code. */
int lf_bench_governance(lf_cli *c, const char *dir, const char *policies, size_t records,
                        size_t entries);

#endif
