/* clock.h -- record ids and timestamps.
 *
 * The two places where core asks the kernel for something (the clock and
 * the random source); everything else in core is pure. Ids are "loop-" +
 * 16 lowercase hex characters (64 random bits: LoopForge's 32-bit ids
 * collide). Timestamps are ISO 8601 UTC with exactly six fractional digits
 * and a "Z", e.g. 2026-11-23T01:48:57.000120Z. */
#ifndef LF_CLOCK_H
#define LF_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define LF_ID_LEN 21            /* "loop-" + 16 hex */
#define LF_TS_LEN 27            /* YYYY-MM-DDTHH:MM:SS.ffffffZ */

/* Writes a fresh id (NUL-terminated). Returns 0, or -1 if the kernel's
 * random source failed. */
int lf_id_new(char out[LF_ID_LEN + 1]);
/* True if s looks like a record id: "loop-" and 8 (LoopForge's) to 16 (ours)
 * lowercase hex digits. */
int lf_id_valid(const char *s);

int64_t lf_now_us(void);        /* microseconds since the epoch, UTC */
uint64_t lf_mono_ns(void);      /* nanoseconds on the monotonic clock */
void lf_ts_format(int64_t us, char out[LF_TS_LEN + 1]);
/* Parses our own format back; returns 0 or -1. */
int lf_ts_parse(const char *s, int64_t *us);
/* a is before b: two timestamps of our form (time order is byte order),
 * compared a word at a time. */
bool lf_ts_before(const char *a, const char *b);
/* An ISO 8601 UTC time as LoopForge writes it (fractional seconds or not,
 * "Z" or "+00:00") in our form. Returns 0, or -1 if it is not one. */
int lf_ts_normalize(const char *s, char out[LF_TS_LEN + 1]);

#endif
