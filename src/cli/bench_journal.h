/* bench_journal.h -- the group-commit leg of `loopforge bench`
 * (bench_journal.c). */
#ifndef LF_BENCH_JOURNAL_H
#define LF_BENCH_JOURNAL_H

#include <stddef.h>
#include "cli.h"

/* The journal with `inflight` requests at once (records x 7 entries
 * under `policies`, in dir), beside one writer's append + fdatasync of a
 * 500-byte line, measured in the same run; then `records` creates made by
 * four processes sharing a journal without an event base, beside one
 * process making as many alone. Prints its lines; returns an exit code. */
int lf_bench_journal(lf_cli *c, const char *dir, const char *policies, size_t records,
                     size_t inflight);

#endif
