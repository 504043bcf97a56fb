#!/bin/sh
# Durable timers (issue 11, item 1): a workflow's `timers`, lint, the due
# time (the time the record entered the state + the duration), `timers`
# listing them, `tick --now` firing only what is due, as an ordinary
# transition by actor timer:<state>, leaving the state cancelling, a
# deadline that passed while nothing ran firing at the next tick, and two
# ticks at once moving a record once. The test moves the clock (--now);
# nothing sleeps.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
P="$tmp/pol"
mkdir -p "$P/workflows"
cat >"$P/workflows/review.lua" <<'LUA'
return workflow {
  name = "loopforge",
  states = { "open", "awaiting_review", "escalated", "done" },
  initial = "open",
  terminal = { "done" },
  edges = { { "open", "awaiting_review" }, { "awaiting_review", "escalated" },
            { "awaiting_review", "done" }, { "escalated", "done" } },
  timers = {
    awaiting_review = { { "48h", to = "escalated", trigger = "review.sla_expired" } },
  },
}
LUA
POLICIES="$P"
STORE="file:$tmp/j"
lf lint
expect_rc "a workflow with a timer lints" 0

# ---- lint ----
B="$tmp/bad"
mkdir -p "$B/workflows"
sed 's/to = "escalated"/to = "open"/' "$P/workflows/review.lua" >"$B/workflows/review.lua"
run --policies "$B" lint
expect_rc "a timer along an edge the workflow lacks: exit 2" 2
match_err "… says so" 'timers.awaiting_review\[1\]: no edge awaiting_review -> open'
sed 's/"48h"/"two days"/' "$P/workflows/review.lua" >"$B/workflows/review.lua"
run --policies "$B" lint
match_err "a duration that is not one: named" 'timers.awaiting_review\[1\] must be \{ "DURATION" \(like 30m, 48h\)'

# ---- due, not due, fired ----
lf create --ref a; a=$out
lf transition "$a" awaiting_review t
entered=$(lf show "$a" --json >/dev/null; printf '%s' "$out" | sed -n 's/.*"updated_at":"\([^"]*\)".*/\1/p')
lf timers
match_out "timers lists the record's timer" "^$a  awaiting_review → escalated \\(review.sla_expired\\)  due "
lf timers --json
due=$(json timers/1/due)
expect_match "… due 48h after it entered the state" due "$due" "^$(date -u -d "${entered%.*}Z + 48 hours" +%Y-%m-%dT%H:%M:%S)\\."
soon=$(date -u -d "${entered%.*}Z + 47 hours" +%Y-%m-%dT%H:%M:%SZ)
late=$(date -u -d "${entered%.*}Z + 49 hours" +%Y-%m-%dT%H:%M:%SZ)
n=$(audit_count)
lf tick --now "$soon"
expect_out "a tick before it is due fires nothing" ""
check "… and writes nothing" test "$(audit_count)" -eq "$n"
lf tick --now "$soon" --json
match_out "… and looks only at what can be due: not this record" '"timers":\[\]'
lf timers --due --now "$soon"
expect_out "timers --due before it is due: none" ""
lf timers --due --now "$late"
match_out "timers --due at a later time: due" '\[due\]'
lf tick --now "$late"
expect_out "a tick after it is due fires it" "$a: awaiting_review → escalated (ok)"
lf show "$a" --json
expect_json "… the record moved" state escalated
expect_json "… by the timer" transitions/3/actor timer:awaiting_review
expect_json "… with the declared trigger" transitions/3/trigger review.sla_expired
lf timers
expect_out "… and it has no timer any more" ""

# ---- a page at a time, soonest first (a journal of its own) ----
STORE="file:$tmp/pages"
for r in p1 p2 p3; do
    lf create --ref $r; eval "$r=\$out"; lf transition "$out" awaiting_review t
done
lf timers --limit 2
check "timers --limit 2: two lines" test "$(printf '%s\n' "$out" | grep -c .)" -eq 2
match_out "… soonest first (p1 entered first)" "^$p1 "
match_err "… and the next page's cursor on stderr" '^\(more: add --cursor [0-9]*:loop-[0-9a-f]*\)$'
cursor=$(printf '%s' "$err" | sed -n 's/^(more: add --cursor \(.*\))$/\1/p')
lf timers --limit 2 --cursor "$cursor"
match_out "… the next page: the third" "^$p3 "
expect_err "… and the last" ""
lf timers --cursor nonsense
expect_rc "a cursor no listing gave: exit 2" 2
match_err "… says so" 'cursor: not one a listing of the timers gave'
lf timers --limit 0
expect_rc "--limit 0: exit 2" 2
# ... and over HTTP: GET /v1/timers pages (1,000 a page unless ?limit=),
# and takes due_by= and records=
start_server --store "$STORE" --policies "$P" || not_ok "serve starts"
req GET '/v1/timers?limit=2'
expect_json "GET /v1/timers?limit=2: two" 'timers/#' 2
expect_json "… soonest first" timers/1/record_id "$p1"
cursor=$(json next_cursor)
req GET "/v1/timers?limit=2&cursor=$cursor"
expect_json "… the cursor gives the rest" timers/1/record_id "$p3"
expect_json "… and no cursor after the last" next_cursor null
req GET "/v1/timers?records=$p3,$p1,loop-0000000000000000"
expect_json "?records= lists those records' timers" 'timers/#' 2
expect_json "… in due order" timers/2/record_id "$p3"
req GET "/v1/timers?due_by=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
expect_json "?due_by=now: none due yet" 'timers/#' 0
req GET '/v1/timers?due_by=2099-01-01T00:00:00Z'
expect_json "?due_by= later: all three" 'timers/#' 3
req GET '/v1/timers?limit=1001'
expect_status "?limit= over 1000 is 400" 400
req GET '/v1/timers?cursor=soon'
expect_json "a cursor no listing gave is 400" code invalid_request
req GET '/v1/timers?due_by=tomorrow'
expect_json "… so is a due_by that is no time" error \
    "due_by takes a time like 2026-12-05T10:00:00Z, got 'tomorrow'"
ids=$(awk 'BEGIN { for (i = 0; i < 1001; i++) printf "%sloop-%016d", i ? "," : "", i }')
req GET "/v1/timers?records=$ids"
expect_json "… and more than 1000 records" error "at most 1000 records a listing"
req GET '/v1/timers?state=x'
expect_json "… and an unknown query parameter" error "unknown query parameter 'state'"
stop_server
STORE="file:$tmp/j"

# ---- leaving the state cancels ----
lf create --ref b; b=$out
lf transition "$b" awaiting_review t
lf transition "$b" done reviewed
lf tick --now 2099-01-01T00:00:00Z
expect_out "a record that left the state has no timer to fire" ""
lf show "$b" --json
expect_json "… it stays where it went" state done

# ---- a deadline passed while nothing ran; two ticks at once ----
lf create --ref c; c=$out
lf transition "$c" awaiting_review t
n=$(audit_count)
"$LOOPFORGE_BIN" --policies "$P" --store "$STORE" tick --now 2099-01-01T00:00:00Z >"$tmp/t1" 2>&1 &
p1=$!
"$LOOPFORGE_BIN" --policies "$P" --store "$STORE" tick --now 2099-01-01T00:00:00Z >"$tmp/t2" 2>&1 &
p2=$!
wait $p1 $p2
check "a deadline long past fires at the next tick" sh -c "grep -h '^$c: awaiting_review → escalated (ok)' '$tmp/t1' '$tmp/t2' | grep -q ."
check "… two ticks at once move the record once" test "$(audit_count)" -eq "$((n + 1))"
lf audit --verify
expect_rc "the log verifies" 0

# ---- a closed record has no timer ----
# Closed in a terminal state, then the workflow changes: the state is no
# longer terminal and has a timer. The record stays closed and its timer
# is never due, on every store (Redis keeps closed records out of its
# entered indexes).
TP="$tmp/term"
mkdir -p "$TP/workflows"
cat >"$TP/workflows/t.lua" <<'LUA'
return workflow {
  name = "loopforge",
  states = { "open", "done" },
  initial = "open",
  terminal = { "done" },
  edges = { { "open", "done" } },
}
LUA
lf --policies "$TP" --store "file:$tmp/t" create --ref t; t=$out
lf --policies "$TP" --store "file:$tmp/t" transition "$t" done finished
cat >"$TP/workflows/t.lua" <<'LUA'
return workflow {
  name = "loopforge",
  states = { "open", "done", "archived" },
  initial = "open",
  terminal = { "archived" },
  edges = { { "open", "done" }, { "done", "archived" } },
  timers = { done = { { "1h", to = "archived", trigger = "archive" } } },
}
LUA
lf --policies "$TP" --store "file:$tmp/t" timers
expect_out "a closed record's timer is not listed" ""
lf --policies "$TP" --store "file:$tmp/t" tick --now 2099-01-01T00:00:00Z
expect_out "… nor fired" ""
lf --policies "$TP" --store "file:$tmp/t" show "$t" --json
expect_json "… it stays where it closed" state done

# ---- retries with backoff, then escalation ----
R="$tmp/retry"
mkdir -p "$R/workflows"
cat >"$R/workflows/ci.lua" <<'LUA'
return workflow {
  name = "loopforge",
  states = { "new", "ci_pending", "ci_failed", "escalated", "done" },
  initial = "new",
  terminal = { "done" },
  edges = { { "new", "ci_pending" }, { "ci_pending", "ci_failed" }, { "ci_failed", "ci_pending" },
            { "ci_failed", "escalated" }, { "ci_pending", "done" }, { "escalated", "done" } },
  retries = {
    ci_failed = { to = "ci_pending", trigger = "ci.retry", max = 3,
                  backoff = { initial = "1m", factor = 2, max = "1h" },
                  escalate_to = "escalated" },
  },
}
LUA
POLICIES="$R"
STORE="file:$tmp/r"
lf create --ref ci; r=$out
lf transition "$r" ci_pending start
# failed_at: when the record last entered ci_failed
failed_at() { lf show "$r" --json >/dev/null; printf '%s' "$out" | sed 's/.*"to_state":"ci_failed","trigger":"[^"]*","timestamp":"\([^"]*\)".*/\1/'; }
for attempt in 1 2 3; do
    lf transition "$r" ci_failed fail
    at=$(failed_at)
    backoff=$((60 << (attempt - 1)))
    lf timers --json
    due=$(json timers/1/due)
    expect_match "retry $attempt: due ${backoff}s after the failure" due "$due" \
        "^$(date -u -d "${at%.*}Z + $backoff seconds" +%Y-%m-%dT%H:%M:%S)\."
    expect_json "… back to ci_pending" timers/1/to ci_pending
    lf tick --now "$(date -u -d "${at%.*}Z + $((backoff - 1)) seconds" +%Y-%m-%dT%H:%M:%SZ)"
    expect_out "… not a second before" ""
    lf tick --now "$(date -u -d "${at%.*}Z + $((backoff + 1)) seconds" +%Y-%m-%dT%H:%M:%SZ)"
    expect_out "… and then it retries" "$r: ci_failed → ci_pending (ok)"
done
lf transition "$r" ci_failed fail
lf show "$r" --json
expect_json "the 4th failure: the budget is spent, the record escalates at once" state escalated
expect_json "… trigger retry.exhausted" transitions/10/trigger retry.exhausted
expect_json "… by the retry's timer" transitions/10/actor timer:ci_failed
lf timers
expect_out "… and no timer is left" ""

# wait_state STATE N: polls until serve lists N records in STATE (its
# tick moves them; at most 3000 tries, no sleep); $n is how many it saw.
wait_state() {
    n=0 tries=0
    while [ "$n" -lt "$2" ] && [ $tries -lt 3000 ]; do
        tries=$((tries + 1))
        req GET "/v1/records?state=$1&limit=1000"
        n=$(printf '%s' "$out" | grep -o '"record_id"' | wc -l)
    done
}
# metric NAME: the value of a counter in serve's /metrics.
metric() {
    req GET /metrics
    printf '%s\n' "$out" | sed -n "s/^$1 \([0-9]*\)\$/\1/p"
}

# ---- many due at once ----
# 100 records whose timers passed long ago (imported with their 2020
# timestamps): serve's tick fires them many at once (window.h), so their
# commits share the journal's flushes -- one at a time, each waited for
# its own (at least 100).
P5="$tmp/many"
mkdir -p "$P5/workflows"
cat >"$P5/workflows/loopforge.lua" <<'LUA'
return workflow { name = "loopforge", states = { "issue_created", "task_queued", "pr_created" },
  initial = "issue_created", terminal = { "pr_created" },
  edges = { { "issue_created", "task_queued" }, { "task_queued", "pr_created" } },
  timers = { task_queued = { { "1h", to = "pr_created", trigger = "pick.expired" } } } }
LUA
line=$(sed -n 1p "$ROOT/tests/fixtures/loopforge/records.ndjson")
i=0
while [ $i -lt 100 ]; do
    i=$((i + 1))
    printf '%s\n' "$line" | sed "s/\"record_id\":\"loop-[0-9a-f]*\"/\"record_id\":\"loop-$(printf '%08x' $i)\"/;
        s/acme\/lib\/issues\/1\"/acme\/lib\/issues\/$i\"/g; s/2026-12-05T03:25:07/2020-01-01T00:00:00/g"
done >"$tmp/due.ndjson"
run --policies "$P5" --store "file:$tmp/due" import "$tmp/due.ndjson"
expect_rc "100 records waiting past their timer" 0
start_server --store "file:$tmp/due" --policies "$P5" || not_ok "serve starts"
wait_state pr_created 100
check "serve's tick moves all 100 ($n)" test "$n" -eq 100
flushes=$(metric loopforge_store_flushes_total)
check "… many at once: their commits shared the journal's flushes ($flushes for 100)" \
    test -n "$flushes" -a "${flushes:-100}" -lt 50
stop_server

# ---- timers of their own: serve's tick looks at the due ones only ----
# 20 records hold a hook's 1h timer and one a 1s timer: serve's tick
# fires that one, and the ticks list only what is due -- they listed
# every record holding a timer each second (21 a tick, counted by the
# metric), which at 100,000 such records was ~320 ms of serve's loop.
P6="$tmp/own"
mkdir -p "$P6/workflows" "$P6/hooks"
cat >"$P6/workflows/job.lua" <<'LUA'
return workflow { name = "job", states = { "new", "queued", "stale" }, initial = "new",
  terminal = { "stale" }, edges = { { "new", "queued" }, { "queued", "stale" } } }
LUA
cat >"$P6/hooks/remind.lua" <<'LUA'
return hook { name = "remind", on = { to = "queued" },
  run = function(e)
    return schedule{ after = e.record.ref == "soon" and "1s" or "1h", to = "stale",
                     trigger = "job.stale" }
  end }
LUA
i=0 made=0
while [ $i -lt 21 ]; do
    i=$((i + 1))
    ref=later-$i
    [ $i = 21 ] && ref=soon
    run --policies "$P6" --store "file:$tmp/own.journal" create --ref "$ref" --workflow job
    run --policies "$P6" --store "file:$tmp/own.journal" transition "$out" queued go
    [ "$rc" = 0 ] && made=$((made + 1))
done
check "21 records holding a timer of their own ($made)" test "$made" -eq 21
start_server --store "file:$tmp/own.journal" --policies "$P6" || not_ok "serve starts"
wait_state stale 1
check "serve's tick fires the one due" test "$n" -eq 1
listed=$(metric loopforge_timer_records_total)
check "… its ticks listed the due one, not all 21 ($listed)" \
    test -n "$listed" -a "${listed:-21}" -lt 21
stop_server
done_testing
