/* json.h -- reading JSON text without losing integers.
 *
 * cJSON keeps every number as a double, so an integer beyond 2^53 that
 * went through a parse and a print came back changed. Where loopforge
 * keeps a caller's JSON (metadata, labels, the record fields an entry
 * carries) it works on the text instead: the canonical form below keeps
 * integer tokens exactly as written, and the lookups hand back the text
 * of a member's value. Pure: no I/O. */
#ifndef LF_JSON_H
#define LF_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Appends the compact canonical form of the JSON value s[0..len) to out:
 * no whitespace, strings with escapes decoded and re-escaped as cJSON
 * prints them (", \, \b \f \n \r \t, other control characters as \u00XX,
 * everything else as UTF-8), integer tokens (-?digits) as written, other
 * numbers as cJSON prints them (%1.15g, %1.17g when that does not read
 * back). Member order and duplicates are kept. Returns false (out partly
 * written) if the text is not one JSON value. */
bool lf_json_canon(const char *s, size_t len, lf_buf *out);

/* Calls fn(key, val, vlen, arg) for each member of the JSON object
 * s[0..len) in order, key decoded (NUL-terminated, valid during the
 * call), the value's text spanned; fn returns false to stop there.
 * Returns false if s is not a well-formed object up to where it stopped. */
typedef bool lf_json_member_fn(const char *key, const char *val, size_t vlen, void *arg);
bool lf_json_members(const char *s, size_t len, lf_json_member_fn *fn, void *arg);

/* The value of member `key` of the JSON object s[0..len): *val and *vlen
 * span its text. Returns false if s is not an object or has no such
 * member (the first counts when a key repeats, as in cJSON). */
bool lf_json_get(const char *s, size_t len, const char *key, const char **val,
                 size_t *vlen);

/* The text of the JSON string value v[0..vlen) (at its opening quote),
 * escapes decoded, appended to out. False if it is not one string. */
bool lf_json_string(const char *v, size_t vlen, lf_buf *out);

/* Walks the elements of the JSON array s[0..len):
 *   lf_json_iter it;  lf_json_array(&it, s, len);
 *   while (lf_json_next(&it, &v, &vlen)) ...
 * lf_json_array returns false if s is not an array; lf_json_next false at
 * its end (or at anything malformed). */
typedef struct lf_json_iter {
    const char *p, *end;
    bool more;                  /* an element has been read */
} lf_json_iter;
bool lf_json_array(lf_json_iter *it, const char *s, size_t len);
bool lf_json_next(lf_json_iter *it, const char **val, size_t *vlen);

/* The pieces every JSON reader needs, written once (luajson.c too): the
 * code unit of four hex digits (-1 if one is not hex), and code point c
 * as UTF-8 into u (returns the length, 1 to 4). */
long lf_json_hex4(const char *s);
int lf_json_utf8(char u[4], unsigned long c);

/* The integer the value text v[0..vlen) holds: an integer token exactly
 * (int64), or a number with an integral value (3.0, 1e3) within 2^53.
 * Returns 0, or -1 for anything else (null included). */
int lf_json_int(const char *v, size_t vlen, int64_t *out);

/* A number held as a double (cJSON's, Lua's) as an int64_t: 0 with *out
 * set when d is integral and within int64's range, else -1 -- fractions,
 * NaN, infinities and the magnitudes whose conversion C leaves undefined
 * (a record's version of 1e300, say). Above 2^53 a double is not exact:
 * where the value itself counts, it is read from the text (lf_json_int). */
int lf_json_double_int(double d, int64_t *out);
/* The same of a cJSON value: -1 for one that is not a number (NULL too). */
struct cJSON;
int lf_json_number_int(const struct cJSON *v, int64_t *out);

#endif
