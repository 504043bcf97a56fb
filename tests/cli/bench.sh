#!/bin/sh
# `loopforge bench`, tiny: the output format, that every record ends
# closed, and that its temporary journal is removed. (Speed is measured
# by `make bench`, never asserted by a test.)
. tests/cli/tap.inc
mkdir "$tmp/t"

TMPDIR="$tmp/t" run --policies "$SHIPPED" bench --records 5 --runs 2
expect_rc "bench exits 0" 0
match_out "bench says what it ran" '^bench: 5 records x 6 transitions = 30 transitions per run'
match_out "one line for memory: (workflows only)" '^memory: [0-9]+ transitions/s \([0-9]+ ns/transition\); first run [0-9]+/s$'
match_out "one line for memory: with the policy set" '^memory\+policies: [0-9]+ transitions/s \([0-9]+ ns/transition\); first run [0-9]+/s$'
match_out "one line for the file: journal" '^file\+policies: [0-9]+ transitions/s \([0-9]+ ns/transition\)$'
match_out "bench checked that every record closed" '^ok: all 5 records closed on every store$'
match_out "the guards' cost is reported" '^  guards: 5 evaluations, [0-9]+ ns each \([0-9]+ ns per guard call\), p99 <= [0-9.]+ us$'
check "the temporary directory (journal, policy sets) is removed" test -z "$(ls -A "$tmp/t")"
check "the user's policy directory is untouched" test ! -e "$SHIPPED/hooks/zz-bench-noop.lua"

run --policies "$POLICIES" bench --records 4 --store memory: --store "file:$tmp/kept" --json
expect_rc "bench --store --json exits 0" 0
expect_json "bench --json: records" records 4
expect_json "bench --json: transitions" transitions 24
expect_json "bench --json: one result per --store" 'stores/#' 2
expect_json "bench --json: the second store is the given URL" stores/2/store "file:$tmp/kept"
run --policies "$POLICIES" --store "file:$tmp/kept" list --state closed --json
expect_json "a given store keeps the bench records, all closed" 'records/#' 4
run --policies "$POLICIES" bench --records 4 --runs 1 --store "file:$tmp/kept"
expect_rc "bench again on the same store (fresh refs) exits 0" 0

run --policies "$POLICIES" bench --records 0
expect_rc "bench --records 0 exits 2" 2
run --policies "$POLICIES" bench --records 2 --store "bogus:"
expect_rc "bench on a malformed store URL exits 2" 2

done_testing
