#!/bin/sh
# Declarative stages (issue 11, item 6): Factory's task pipeline -- the
# shipped policies/workflows/factory.lua -- nine
# stages with their retry counts (5, 3, 5, 3, 3, 3, 2, 3, 1) and
# exponential backoff -- in nine lines of a workflow file, expanded by the
# loader into 23 states and 39 edges; a task run through it with a failed
# stage retried by the tick (the clock moved, not slept), and a stage whose
# budget is spent ending the task in failed_pipeline.
. tests/cli/tap.inc
P="$tmp/factory"
mkdir -p "$P/workflows"
cp "$SHIPPED/workflows/factory.lua" "$P/workflows/"
POLICIES="$P"
STORE="file:$tmp/j"
lf policies
match_out "nine stage lines expand to 23 states and 39 edges" 'factory +23 states, 39 edges'
lf graph --workflow factory --format mermaid
match_out "the graph shows a stage's retry loop" 'unit_test_failed --> unit_test'

lf create --ref task-1 --workflow factory; t=$out
lf transition "$t" in_progress start
for s in implement unit_test; do lf transition "$t" "$s" go; done
lf transition "$t" unit_test_failed tests.red
expect_rc "a stage fails into its _failed state" 0
lf timers --json
expect_json "… the retry is due 30s later (the first backoff)" timers/1/to unit_test
expect_json "… trigger stage.retry" timers/1/trigger stage.retry
lf tick --now 2099-01-01T00:00:00Z
match_out "the tick retries the stage" "^$t: unit_test_failed → unit_test \\(ok\\)"
for s in coverage lint static integration security review accept passed_pipeline integrated; do
    lf transition "$t" "$s" go
done
lf show "$t" --json
expect_json "the task goes through every stage to integrated" state integrated
expect_json "… with its whole history" 'transitions/#' 15

lf create --ref task-2 --workflow factory; u=$out
for s in in_progress implement unit_test coverage lint static integration security review accept; do
    lf transition "$u" "$s" go
done
lf transition "$u" accept_failed rejected
lf tick --now 2099-01-01T00:00:00Z
match_out "accept has one retry: it is retried once" "^$u: accept_failed → accept \\(ok\\)"
lf transition "$u" accept_failed rejected
lf show "$u" --json
expect_json "… then the budget is spent: failed_pipeline at once" transitions/15/to_state failed_pipeline
expect_json "… by the stage's retry" transitions/15/trigger retry.exhausted
lf show "$u" --json
expect_json "… which is terminal" state failed_pipeline

run --policies "$P" lint
expect_rc "the workflow lints" 0
B="$tmp/bad"
mkdir -p "$B/workflows"
sed 's/from = "in_progress"/from = "nowhere"/' "$P/workflows/factory.lua" >"$B/workflows/factory.lua"
run --policies "$B" lint
expect_rc "stages from an undeclared state: exit 2" 2
match_err "… says what stages need" 'stages needs from, pass and fail'
# `make walk`'s second half: one Factory task and one Specfuse feature from
# the shell, on a store of its own.
LOOPFORGE_STORE="file:$tmp/walk" LOOPFORGE_POLICIES="$SHIPPED" \
    sh "$ROOT/contrib/lifecycles.sh" "$LOOPFORGE_BIN" >"$tmp/out" 2>"$tmp/err"
rc=$? out=$(cat "$tmp/out") err=$(cat "$tmp/err")
expect_rc "contrib/lifecycles.sh runs to the end" 0
match_out "… a failed stage is retried by the tick" '^loop-[0-9a-f]+: lint_failed → lint \(ok\)$'
match_out "… the task is integrated" '^loop-[0-9a-f]+: passed_pipeline → integrated \(stage.passed\)$'
match_out "… the gate closed by itself" '^"state":"closed"$'
match_out "… and the feature is done" '^"state":"done"$'
done_testing
