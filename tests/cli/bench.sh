#!/bin/sh
# `loopforge bench`, tiny: the output format, that every record ends
# closed, and that its temporary journal is removed. (Speed is measured
# by `make bench`, never asserted by a test.)
. tests/cli/tap.inc
mkdir "$tmp/t"

TMPDIR="$tmp/t" run --policies "$POLICIES" bench --records 5 --runs 2
expect_rc "bench exits 0" 0
match_out "bench says what it ran" '^bench: 5 records x 6 transitions = 30 transitions per run'
match_out "one line for memory:" '^memory: [0-9]+ transitions/s \([0-9]+ ns/transition\)$'
match_out "one line for the file: journal" '^file: [0-9]+ transitions/s \([0-9]+ ns/transition\)$'
match_out "bench checked that every record closed" '^ok: all 5 records closed on every store$'
check "the temporary journal directory is removed" test -z "$(ls -A "$tmp/t")"

run --policies "$POLICIES" bench --records 4 --store memory: --store "file:$tmp/kept" --json
expect_rc "bench --store --json exits 0" 0
expect_json "bench --json: records" records 4
expect_json "bench --json: transitions" transitions 24
expect_json "bench --json: one result per --store" 'stores/#' 2
expect_json "bench --json: the second store is file" stores/2/store file
run --policies "$POLICIES" --store "file:$tmp/kept" list --state closed --json
expect_json "a given store keeps the bench records, all closed" 'records/#' 4
run --policies "$POLICIES" bench --records 4 --runs 1 --store "file:$tmp/kept"
expect_rc "bench again on the same store (fresh refs) exits 0" 0

run --policies "$POLICIES" bench --records 0
expect_rc "bench --records 0 exits 2" 2
run --policies "$POLICIES" bench --records 2 --store "bogus:"
expect_rc "bench on a malformed store URL exits 2" 2

done_testing
