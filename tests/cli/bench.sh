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
match_out "one line for processes sharing a journal without an event base" \
    '^journal: 4 processes without an event base \(the Lua module.s way\), [0-9]+ creates each: [0-9]+ creates/s together vs [0-9]+/s for one process alone: [0-9.]+x$'
match_out "the guards' cost is reported" '^  guards: 5 evaluations, [0-9]+ ns each \([0-9]+ ns per guard call\), p99 <= [0-9.]+ us$'
match_out "serve's first tick (it indexes the timed states) says how long it held the loop" \
    '^  500 pending \+ 5 due: .*, its first [0-9.]+ ms \(it indexes the timed states\), which held the event loop [0-9.]+ ms at most; lateness '
match_out "the timers' full look says how long it held the loop at most" \
    '^  500 records waiting in a retry state without a backoff: .*, which held the event loop [0-9.]+ ms at most$'
match_out "one line for records with timers of their own" \
    '^  500 records with a timer of their own \(a hook.s schedule\{\}, none due\): serve.s tick [0-9.]+ ms vs [0-9.]+ ms listing every one \(loopforge timers\), which held the event loop [0-9.]+ ms at most; the first page of 1000 \(GET /v1/timers\) [0-9.]+ ms; the timers of 500 of them by id \(the console.s ask\) [0-9.]+ ms, of those due within the hour [0-9.]+ ms$'
check "… and no line of the engine's info log (a timer set a record)" \
    sh -c "! printf '%s' \"\$1\" | grep -q 'timer set'" _ "$err"
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

# The cost curve at its smallest size: a journal and, with redis-server
# here, a private Redis loaded with the same records; every figure there.
TMPDIR="$tmp/t" run --policies "$POLICIES" bench --scale 10000 --json
expect_rc "bench --scale --json exits 0" 0
expect_json "bench --scale: the journal's records" scale/1/records 10000
expect_json "bench --scale: 7 entries a record" scale/1/entries 70000
positive() { v=$(json "$1"); [ "${v%%.*}" -gt 0 ] 2>/dev/null; }
for f in open_ns rss_delta_bytes get_p50_ns list_page_100_ns audit_p50_ns random_load_ns; do
    check "bench --scale: journal $f is measured" positive "scale/1/$f"
done
if command -v redis-server >/dev/null 2>&1; then
    for f in used_memory_delta_bytes get_p50_ns list_page_100_ns audit_p50_ns; do
        check "bench --scale: redis $f is measured" positive "scale/1/redis/$f"
    done
else
    expect_json "bench --scale: no redis leg without redis-server" scale/1/redis "<missing>"
fi
check "bench --scale removes its journal and Redis directory" test -z "$(ls -A "$tmp/t")"
run --policies "$POLICIES" bench --scale 9999
expect_rc "bench --scale below 10000 exits 2" 2

run --policies "$POLICIES" bench --records 0
expect_rc "bench --records 0 exits 2" 2
run --policies "$POLICIES" bench --records 2 --store "bogus:"
expect_rc "bench on a malformed store URL exits 2" 2

done_testing
