/* fuzz_import.c -- a record of the Python LoopForge, as its to_dict()
 * writes it (the input), imported into a memory: store under the shipped
 * policies (loopforge import, POST /v1/import). Properties: the import
 * answers, whatever the input; a dry run answers as the import itself
 * then does, with the very record it then writes; and a refused import
 * writes nothing. Runs from the repository root (policies/). */
#include <stdlib.h>
#include <string.h>

#include "../../src/loopforge.h"
#include "fuzz.h"

static lf_engine *eng;
static unsigned imported;

static void unload(void) { lf_engine_free(eng); }

typedef struct answer {
    bool done;
    lf_code code;
    char *record;   /* its JSON, on success */
} answer;

static void on_result(const lf_result *r, void *arg) {
    answer *a = arg;
    a->done = true;
    a->code = r->code;
    a->record = r->success && r->record ? lf_record_json(r->record) : NULL;
}

static uint64_t entries(void) {
    lf_stats st;
    lf_engine_stats(eng, &st);
    return st.appended;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a fresh store now and then: what succeeds stays in it */
    if (!eng || imported >= 2000) {
        char err[512];
        lf_engine_config cfg = {.store = "memory:", .policies = "policies"};
        lf_engine_free(eng);
        eng = lf_engine_new(&cfg, err, sizeof err, NULL);
        if (!eng) abort();
        imported = 0;
        static bool once;
        if (!once) atexit(unload);
        once = true;
    }
    char *json = malloc(size + 1);
    memcpy(json, data, size);
    json[size] = '\0';
    answer dry = {0}, real = {0};
    uint64_t before = entries();
    lf_engine_import(eng, json, "fuzz", true, on_result, &dry);
    if (!dry.done || entries() != before) abort();
    lf_engine_import(eng, json, "fuzz", false, on_result, &real);
    if (!real.done || real.code != dry.code) abort();
    if (real.code == LF_OK) {
        imported++;
        if (!dry.record || !real.record || strcmp(dry.record, real.record) != 0) abort();
    } else if (entries() != before) {
        abort();
    }
    free(dry.record);
    free(real.record);
    free(json);
    return 0;
}
