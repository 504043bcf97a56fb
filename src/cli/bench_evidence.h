/* bench_evidence.h -- the evidence leg of `loopforge bench`
 * (bench_evidence.c). */
#ifndef LF_BENCH_EVIDENCE_H
#define LF_BENCH_EVIDENCE_H

#include <stddef.h>
#include "cli.h"

/* Signing cost (records x 7 entries, best of runs, beside the same
 * workload unsigned), then verification speed and proof cost over a
 * journal of about `entries` lines written in dir. Prints its lines;
 * returns an exit code. */
int lf_bench_evidence(lf_cli *c, const char *dir, const char *policies, size_t records,
                      unsigned runs, size_t entries);

#endif
