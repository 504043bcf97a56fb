/* text.h -- what text must be to enter the engine: valid UTF-8, no NUL.
 *
 * Every string the engine stores ends up in JSON that strict clients
 * parse (Python's json.loads refuses invalid UTF-8), and C strings end at
 * a NUL, so "abc\u0000def" would be stored as "abc" without a word. The
 * front doors (HTTP bodies, webhook payloads, the engine's own request
 * checks, strings from Lua) refuse such text with an error naming the
 * field, using these checks. Pure: no allocation, no I/O. */
#ifndef LF_TEXT_H
#define LF_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The offset of the first byte of s[0..len) that is not part of a valid
 * UTF-8 sequence (overlong forms, surrogates and code points above
 * U+10FFFF are invalid), or len if all of it is valid. */
size_t lf_utf8_invalid(const char *s, size_t len);

/* The offset in s of its NUL, or of the first byte before it that ends a
 * run: with json, one JSON must escape ('"', '\\', a control byte);
 * without, one that is not ASCII. Sixteen bytes a step where SSE2 is:
 * every string of a line and of a request is scanned so. */
size_t lf_str_run(const char *s, bool json);

/* Checks a C string field: 0 if s is NULL or valid UTF-8, else -1 with
 * "FIELD: not valid UTF-8 (byte N)" in err. */
int lf_text_check(const char *s, const char *field, char *err, size_t errlen);

/* Checks JSON text that already parsed (cJSON accepts what follows, so
 * this runs after it): every string, key or value, must be valid UTF-8
 * with no NUL (escaped or raw) and no raw control character. Returns 0,
 * or -1 with "PATH: why" in err, PATH being `what` (may be NULL) followed
 * by the keys and indexes down to the string, e.g. "metadata.notes[2]". */
int lf_json_text_check(const char *s, size_t len, const char *what, char *err,
                       size_t errlen);

/* a and b (neither NULL) are the same string. The first bytes first: a
 * transition compares a state, trigger or workflow name with several
 * that mostly differ there (~1 % of it in calls saved). */
static inline bool lf_streq(const char *a, const char *b) {
    return a[0] == b[0] && (!a[0] || strcmp(a + 1, b + 1) == 0);
}

/* The n bytes at a and at b are the same (both must have n bytes to
 * read). A word at a time in line: the strings compared on a
 * transition's path (record ids, states, triggers) are a few words long,
 * where a call to memcmp or strcmp costs more than the compare. */
static inline bool lf_same_bytes(const char *a, const char *b, size_t n) {
    uint64_t x, y;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i]) return false;
        return true;
    }
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) return false;
    }
    memcpy(&x, a + n - 8, 8);   /* the last eight: may overlap the loop's last */
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

/* The same, where either may be NULL: two NULLs are the same string. */
static inline bool lf_streq_null(const char *a, const char *b) {
    return a == b || (a && b && lf_streq(a, b));
}

#endif
