/* fuzz_text.c -- the text checks at the front doors (src/core/text.c), JSON
 * as the server reads a body, and the canonical form metadata is stored in
 * (src/core/json.c). Properties: text that cJSON parses and
 * lf_json_text_check accepts prints back as valid UTF-8 with no NUL, so
 * what is stored is strict JSON; the canonical form is itself canonical
 * (a second pass changes nothing) and parses again. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../src/core/json.h"
#include "../../src/core/text.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    size_t bad = lf_utf8_invalid(s, size);
    if (bad > size) abort();
    char err[256];
    lf_buf a = LF_BUF_INIT, b = LF_BUF_INIT;
    if (lf_json_canon(s, size, &a)) {
        if (!lf_json_canon(a.p, a.len, &b)) abort();
        if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0) abort();
    }
    lf_buf_free(&a);
    lf_buf_free(&b);
    cJSON *j = cJSON_ParseWithLength(s, size);
    if (!j) return 0;
    if (lf_json_text_check(s, size, "body", err, sizeof err) == 0) {
        char *out = cJSON_PrintUnformatted(j);
        if (out) {
            size_t n = strlen(out);
            if (lf_utf8_invalid(out, n) != n) abort();
            cJSON_free(out);
        }
    }
    cJSON_Delete(j);
    return 0;
}
