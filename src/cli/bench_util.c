/* bench_util.c -- helpers the legs of `loopforge bench` share (see
 * bench_util.h). */
#include <stdio.h>
#include "bench_util.h"

void lf_bench_on_result(const lf_result *r, void *arg) {
    lf_bench_call *c = arg;
    c->done = true;
    c->ok = r->success;
    if (r->success && r->record)
        snprintf(c->id, sizeof c->id, "%s", lf_record_id(r->record));
}

typedef struct dump {
    FILE *f;
    uint64_t after;
    bool end, done;
} dump;

static void dump_page(lf_code code, const char *error, const char *const *lines,
                      const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    dump *d = arg;
    (void)error;
    d->done = true;
    if (code != LF_OK || n == 0) {
        d->end = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fwrite(lines[i], 1, lens[i], d->f);
        fputc('\n', d->f);
    }
    d->after = last_seq;
}

int lf_bench_dump_log(lf_engine *e, const char *path) {
    dump d = {.f = fopen(path, "w")};
    while (d.f && !d.end) {
        d.done = false;
        lf_engine_audit(e, NULL, d.after, 10000, dump_page, &d);
        if (!d.done) break;
    }
    return d.f && fclose(d.f) == 0 && d.end ? 0 : -1;
}
