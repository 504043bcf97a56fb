/* bench_util.c -- helpers the legs of `loopforge bench` share (see
 * bench_util.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include "bench_util.h"
#include "../core/mem.h"

const lf_bench_step lf_bench_path[6] = {
    {"task_queued", "worker.picked_up"}, {"pr_created", "pr.opened"},
    {"ci_pending", "ci.started"},        {"ci_passed", "ci.completed"},
    {"merged", "auto.merged"},           {"closed", "issue.closed"},
};

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

void lf_bench_log(lf_log_level level, const char *msg, void *ud) {
    (void)ud;
    if (level >= LF_LOG_WARN)
        fprintf(stderr, "loopforge: %s: %s\n", level == LF_LOG_WARN ? "warn" : "error", msg);
}

int lf_bench_dump_log(lf_engine *e, const char *path) {
    dump d = {.f = fopen(path, "w")};
    while (d.f && !d.end) {
        d.done = false;
        lf_engine_audit(e, NULL, d.after, 10000, dump_page, &d);
        if (!d.done) break;
    }
    /* On disk before anything is timed on it: at a million records the
     * kernel would still be writing out gigabytes beside the reads the
     * bench times (an audit reads its lines back from the file). */
    bool ok = d.f && d.end && fflush(d.f) == 0 && fsync(fileno(d.f)) == 0;
    return d.f && fclose(d.f) == 0 && ok ? 0 : -1;
}

/* ---- the workload ------------------------------------------------------- */

typedef struct run run;

/* One record under way: created, then one transition at a time. */
typedef struct slot {
    run *rn;
    size_t rec;
    size_t step;                /* 0: the create; k: transition k */
    char id[LF_ID_LEN + 1];
} slot;

struct run {
    lf_engine *e;
    size_t n, next, outstanding;
    int failed;
    long pid;
    char err[600];
    char first_id[LF_ID_LEN + 1];
};

static void slot_begin(slot *sl);

static void on_step(const lf_result *r, void *arg) {
    slot *sl = arg;
    run *rn = sl->rn;
    rn->outstanding--;
    if (!r->success) {
        if (!rn->failed++)
            snprintf(rn->err, sizeof rn->err, "%s %s: %s: %s",
                     sl->step ? "transition to" : "create",
                     sl->step ? lf_bench_path[sl->step - 1].to : sl->id,
                     lf_code_name(r->code), r->error ? r->error : "");
        return;                 /* this slot stops; the others finish */
    }
    if (sl->step == 0) {
        memcpy(sl->id, lf_record_id(r->record), sizeof sl->id);
        if (sl->rec == 0) memcpy(rn->first_id, sl->id, sizeof sl->id);
    }
    if (sl->step == LF_BENCH_NSTEPS) {
        if (strcmp(r->new_state ? r->new_state : "", "closed") != 0 && !rn->failed++)
            snprintf(rn->err, sizeof rn->err, "record %s ended in %s, not closed", sl->id,
                     r->new_state ? r->new_state : "?");
        slot_begin(sl);
        return;
    }
    lf_transition_req t = {.id = sl->id,
                           .to = lf_bench_path[sl->step].to,
                           .trigger = lf_bench_path[sl->step].trigger,
                           .actor = "bench"};
    sl->step++;
    rn->outstanding++;
    lf_engine_transition(rn->e, &t, on_step, sl);
}

static void slot_begin(slot *sl) {
    run *rn = sl->rn;
    char ref[128];
    if (rn->failed || rn->next >= rn->n) return;
    sl->rec = rn->next++;
    sl->step = 0;
    snprintf(ref, sizeof ref, "https://github.com/loopforge/bench/issues/%zu#%ld",
             sl->rec + 1, rn->pid);
    lf_create_req req = {.ref = ref,
                         .repo = "loopforge/bench",
                         .has_ref_number = true,
                         .ref_number = (int64_t)sl->rec + 1,
                         .auto_merge = true,
                         .actor = "bench"};
    rn->outstanding++;
    lf_engine_create(rn->e, &req, on_step, sl);
}

int lf_bench_inflight(lf_cli *c, lf_engine *e, size_t n, size_t inflight, const char *label,
                      double *seconds, char *first_id) {
    run rn = {.e = e, .n = n, .pid = (long)getpid()};
    slot *slots = lf_xcalloc(inflight, sizeof *slots);
    double t0 = ((double)lf_mono_ns() / 1e9);
    for (size_t i = 0; i < inflight; i++) {
        slots[i].rn = &rn;
        slot_begin(&slots[i]);
    }
    while (rn.outstanding && event_base_loop(c->base, EVLOOP_ONCE) == 0)
        ;
    *seconds = ((double)lf_mono_ns() / 1e9) - t0;
    free(slots);
    memcpy(first_id, rn.first_id, LF_ID_LEN + 1);
    if (rn.outstanding) {
        fprintf(stderr, "bench: %s: the store stopped answering\n", label);
        return -1;
    }
    if (rn.failed) {
        fprintf(stderr, "bench: %s: %d requests failed; first: %s\n", label, rn.failed,
                rn.err);
        return -1;
    }
    return 0;
}

