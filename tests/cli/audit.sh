#!/bin/sh
# The audit log through the CLI: NDJSON export (all, per record, --after),
# and --verify catching every kind of tampering with the journal: a
# modified byte, a deleted line, two swapped lines, a duplicated line.
. tests/cli/tap.inc
STORE="file:$tmp/j"
J="$tmp/j"

lf audit
expect_rc "audit of an empty log exits 0" 0
expect_out "audit of an empty log prints nothing" ""
lf audit --verify
match_out "an empty log verifies" "^ok: 0 entries verified"

# Two records, interleaved: the policy set's announcement, then 6 entries.
lf create --ref a; a=$out
lf create --ref b; b=$out
lf transition "$a" task_queued worker.picked_up
lf transition "$b" task_queued worker.picked_up --actor w2
lf transition "$a" pr_created pr.opened
lf transition "$a" ci_pending ci.started

lf audit
check "audit prints one line per entry" test "$(printf '%s\n' "$out" | wc -l)" -eq 7
check "audit prints NDJSON" sh -c "$JSON --lines <'$tmp/out'"
seqs=$(printf '%s\n' "$out" | sed 's/^{"seq":\([0-9]*\),.*/\1/' | tr '\n' ' ')
expect_match "audit is in seq order" seqs "$seqs" '^1 2 3 4 5 6 7 $'
match_out "entries carry record_id, kind, states, trigger, actor, prev, hash" \
    '"record_id":"loop-[0-9a-f]{16}","kind":"transition".*"from_state":"issue_created","to_state":"task_queued","trigger":"worker.picked_up","actor":"w2".*"prev":"[0-9a-f]{64}","hash":"[0-9a-f]{64}"\}$'
lf audit "$a"
check "audit ID gives that record's entries" test "$(printf '%s\n' "$out" | wc -l)" -eq 4
check "… and no other record's" sh -c "! grep -q '$b' '$tmp/out'"
lf audit --after 5
seqs=$(printf '%s\n' "$out" | sed 's/^{"seq":\([0-9]*\),.*/\1/' | tr '\n' ' ')
expect_match "audit --after 5 starts at seq 6" seqs "$seqs" '^6 7 $'
lf audit "$a" --after 4
seqs=$(printf '%s\n' "$out" | sed 's/^{"seq":\([0-9]*\),.*/\1/' | tr '\n' ' ')
expect_match "audit ID --after combines" seqs "$seqs" '^6 7 $'
lf audit loop-0123456789abcdef
expect_out "audit of an unknown id prints nothing" ""

lf audit --verify
expect_rc "an intact log verifies" 0
match_out "verify counts every entry" "^ok: 7 entries verified, 0 checkpoints"
lf audit --verify --json
expect_json "verify --json: ok" ok true
expect_json "verify --json: count" verified 7

# A log longer than one page (1000 lines) is paged through whole.
STORE="file:$tmp/long"
# A thousand separate CLI runs would be slow under ASan; one process
# does it: bench writes 7 entries per record to a store it is given.
run --policies "$POLICIES" bench --records 150 --runs 1 --store "file:$tmp/long"
expect_rc "bench fills a store" 0
lf audit --verify
match_out "verify pages through 1051 entries" "^ok: 1051 entries verified"
lf audit
check "audit pages through 1051 entries" test "$(printf '%s\n' "$out" | wc -l)" -eq 1051
STORE="file:$tmp/j"

# ---- tampering: each case on a fresh copy of the good journal ----
cp "$J" "$tmp/good"
tamper() {      # NAME EXPECTED-SEQ: $J was just tampered with
    lf audit --verify
    expect_rc "$1: audit --verify exits 8" 8
    match_err "$1: names the first bad entry (seq $2)" \
        "^audit: verification failed: seq $2: "
    cp "$tmp/good" "$J"
}
sed '4s/worker\.picked_up/worker.picked_uq/' "$tmp/good" >"$J"
tamper "one byte of a middle line's trigger changed" 4
sed '6s/"actor":"cli:tester"/"actor":"cli:mallory"/' "$tmp/good" >"$J"
tamper "a middle line's actor rewritten" 6
sed '7s/ci\.started/ci.startex/' "$tmp/good" >"$J"
tamper "the last line modified" 7
sed '4d' "$tmp/good" >"$J"
tamper "a middle line deleted" 5
awk 'NR == 4 { held = $0; next } NR == 5 { print; print held; next } { print }' \
    "$tmp/good" >"$J"
tamper "two lines swapped" 5
sed '4p' "$tmp/good" >"$J"
tamper "a line duplicated" 4
sed '1d' "$tmp/good" >"$J"
tamper "the first line deleted" 2

sed '4s/worker\.picked_up/worker.picked_uq/' "$tmp/good" >"$J"
lf audit --verify --json
expect_json "verify --json on a broken chain: ok false" ok false
expect_json "… how many entries verified before it" verified 3
match_out "… and the error" '"error":"seq 4: '
cp "$tmp/good" "$J"
lf audit --verify
match_out "the restored journal verifies again" "^ok: 7 entries verified"

# A delete keeps the chain whole, and its entry is part of it.
lf delete "$b"
lf audit --verify
match_out "a delete is one more verified entry" "^ok: 8 entries verified"

done_testing
