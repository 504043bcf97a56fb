/* fuzz_route.c -- a webhook through the shipped routes: the first line of
 * the input is the event name (X-GitHub-Event), the rest the payload, as
 * the server hands a signed delivery to lf_rules_route (JSON to Lua, the
 * routes, their results back to C). Property: whatever the payload, the
 * routes answer (requests, an ignore or an error) and never leak a Lua
 * address. Runs from the repository root (policies/). */
#include <stdlib.h>
#include <string.h>

#include "../../src/core/buf.h"
#include "../../src/rules/rules.h"
#include "fuzz.h"

static lf_rules *rules;

static void unload(void) { lf_rules_free(rules); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!rules) {
        lf_buf err = LF_BUF_INIT;
        rules = lf_rules_load("policies", &err);
        lf_buf_free(&err);
        if (!rules) abort();
        atexit(unload);
    }
    const char *p = (const char *)data, *nl = memchr(p, '\n', size);
    if (!nl || nl - p > 64) return 0;
    char event[65];
    memcpy(event, p, (size_t)(nl - p));
    event[nl - p] = '\0';
    size_t len = size - (size_t)(nl - p) - 1;
    /* lf_rules_route wants an object's text, as the server checks first */
    if (len == 0 || nl[1] != '{') return 0;
    lf_event ev = {"github", event, "fuzz-delivery", nl + 1, len};
    lf_route_result res;
    lf_rules_route(rules, &ev, &res);
    /* (an event name or payload may itself say "table: 0x…") */
    if (!memmem(data, size, "0x", 2)) {
        if (res.error && strstr(res.error, ": 0x")) abort();
        if (res.ignored && strstr(res.ignored, ": 0x")) abort();
    }
    lf_route_result_free(&res);
    return 0;
}
