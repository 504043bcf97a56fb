/* test_window.c -- window.h: jobs started in order, at most LF_WINDOW
 * unfinished at once, their results delivered in the order they started
 * whatever the order they finish in, a job that finishes inside its start
 * not nesting the next one, and done once after the last delivery. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include "../src/engine/window.h"

typedef struct jobs {
    lf_window *w;
    size_t n;                   /* jobs there are */
    size_t started, delivered, done;
    bool at_once;               /* each finishes inside its start */
    int depth, deepest;         /* start's nesting */
} jobs;

static bool start(void *arg, size_t i) {
    jobs *j = arg;
    if (i == j->n) return false;
    assert_int_equal(i, j->started);    /* in order, each once */
    j->started++;
    if (++j->depth > j->deepest) j->deepest = j->depth;
    if (j->at_once) lf_window_finish(j->w, i);
    j->depth--;
    return true;
}

static void deliver(void *arg, size_t i) {
    jobs *j = arg;
    assert_int_equal(i, j->delivered);  /* in the order they started */
    assert_int_equal(j->done, 0);
    j->delivered++;
}

static void done(void *arg) {
    jobs *j = arg;
    assert_int_equal(j->delivered, j->started);
    j->done++;
}

static const lf_window_ops ops = {start, deliver, done};

static void in_order_whatever_the_finish_order(void **state) {
    (void)state;
    jobs j = {.n = 200};
    j.w = lf_window_new(&ops, &j);
    lf_window_go(j.w);
    assert_int_equal(j.started, LF_WINDOW);     /* as many as there is room for */
    for (size_t i = LF_WINDOW - 1; i > 0; i--) lf_window_finish(j.w, i);
    assert_int_equal(j.delivered, 0);           /* the first is not finished */
    assert_int_equal(j.started, LF_WINDOW);
    lf_window_finish(j.w, 0);
    assert_int_equal(j.delivered, LF_WINDOW);
    assert_int_equal(j.started, 2 * LF_WINDOW);
    /* the rest in an order of their own: odd ones first, then even */
    for (size_t i = LF_WINDOW + 1; i < j.n; i += 2) {
        while (i >= j.started) lf_window_finish(j.w, j.delivered);
        lf_window_finish(j.w, i);
        assert_true(j.started - j.delivered <= LF_WINDOW);
    }
    while (!j.done) lf_window_finish(j.w, j.delivered);
    assert_int_equal(j.delivered, j.n);
    assert_int_equal(j.done, 1);
}

static void finishing_inside_start_does_not_nest(void **state) {
    (void)state;
    jobs j = {.n = 200000, .at_once = true};
    j.w = lf_window_new(&ops, &j);
    lf_window_go(j.w);
    assert_int_equal(j.delivered, j.n);
    assert_int_equal(j.done, 1);
    assert_int_equal(j.deepest, 1);
}

static void no_jobs(void **state) {
    (void)state;
    jobs j = {.n = 0};
    j.w = lf_window_new(&ops, &j);
    lf_window_go(j.w);
    assert_int_equal(j.started, 0);
    assert_int_equal(j.done, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_order_whatever_the_finish_order),
        cmocka_unit_test(finishing_inside_start_does_not_nest),
        cmocka_unit_test(no_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
