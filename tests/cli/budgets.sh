#!/bin/sh
# Budgets (issue 12, item 3) on the journal: counted by the store from the
# log, so every process -- each CLI call here is a new one, opening the
# journal afresh -- sees the same counts; the refusal says when it frees up.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE="file:$tmp/j"
cat >"$POLICIES/workflows/ship.lua" <<'LUA'
return workflow { name = "ship", states = { "new", "merged" }, initial = "new",
  terminal = { "merged" }, edges = { { "new", "merged" } },
  budgets = { merged = { { per = "actor", max = 2, within = "1h" } } } }
LUA
for i in 1 2; do
    lf create --ref "b$i" --workflow ship; id=$out
    lf transition "$id" merged m --actor bot
    expect_rc "merge $i of 2 within the hour passes" 0
done
first=$("$LOOPFORGE_BIN" --policies "$POLICIES" --store "$STORE" audit |
    grep '"to_state":"merged"' | head -1 | sed 's/.*"timestamp":"\([^"]*\)".*/\1/')
lf create --ref b3 --workflow ship; id=$out
lf transition "$id" merged m --actor bot
expect_rc "a 3rd merge in the hour is refused: exit 5" 5
expect_match "… saying whose budget, and when it frees up (the 1st merge + 1h)" stderr "$err" \
    "^Denied by policy budget:merged: budget spent: actor bot made 2 transitions to merged within 3600s \\(at most 2\\); it frees up at $(date -u -d "${first%.*}Z + 1 hour" +%Y-%m-%dT%H:%M:%S)\\."
lf transition "$id" merged m --actor other
expect_rc "… another actor's budget is their own" 0
# A commit is not counted first (the store checks its budgets as it
# writes), but a spent budget still refuses before a guard that denies.
mkdir -p "$POLICIES/guards"
cat >"$POLICIES/guards/hold.lua" <<'LUA'
return policy { name = "hold", on = { to = "merged", workflow = "ship" },
  check = function(t) if t.metadata.hold then return deny { reason = "on hold" } end
    return allow() end }
LUA
lf create --ref b5 --workflow ship; b5=$out
lf transition "$b5" merged m --actor bot --meta hold=1
expect_rc "a spent budget and a guard that denies: exit 5" 5
match_err "… the budget refuses first" '^Denied by policy budget:merged: budget spent: actor bot made 2'
lf transition "$b5" merged m --actor other2 --meta hold=1
match_err "… and the guard where the budget is not spent" '^Denied by policy hold: on hold'
rm "$POLICIES/guards/hold.lua"
lf create --ref b4 --workflow ship; b4=$out
lf explain "$b4" --actor bot
match_out "explain shows where the budget stands, and when it frees up" \
    '^  budget: actor bot into merged: 2 of 2 within 3600s, frees up at [0-9T:.-]+Z$'
match_out "… and the way out it blocks" '^      budget:merged: budget spent: actor bot made 2'
lf explain "$id"
match_out "explain of a merged record: no way out" "no way out"

# Open records (workflow open_records): at most N records open at once per
# person behind the actor; closing one frees a place. config.lua's
# identities make the agent count for its principal.
cat >"$POLICIES/workflows/task.lua" <<'LUA'
return workflow { name = "task", states = { "open", "done" }, initial = "open",
  terminal = { "done" }, edges = { { "open", "done" } },
  open_records = { per = "principal", max = 2 } }
LUA
cat >"$POLICIES/config.lua" <<'LUA'
return { identities = { agents = { ["agent-7"] = { principal = "alice" } } } }
LUA
lf create --ref t1 --workflow task --actor agent-7; t1=$out
expect_rc "open records: the 1st open task of alice's agent is created" 0
lf create --ref t2 --workflow task --actor alice
expect_rc "… alice's own 2nd one too (she is the person behind both)" 0
lf create --ref t3 --workflow task --actor agent-7
expect_rc "… a 3rd one while 2 are open is refused: exit 5" 5
expect_match "… saying whose records, and what frees a place" stderr "$err" \
    "^Denied by policy open_records:task: principal alice has 2 open records in workflow task \\(at most 2\\); it frees up when one of them is closed$"
lf list --workflow task --json
check "… and creates nothing" test "$(printf '%s' "$out" | grep -o '"ref":"t3"' | wc -l)" = 0
lf create --ref t3 --workflow task --actor bob
expect_rc "… another person's records are their own" 0
lf show "$t1" --json
expect_json "the record keeps who opened it" owner/behind alice
lf transition "$t1" done d --actor alice
lf create --ref t4 --workflow task --actor agent-7
expect_rc "closing one frees a place (counted afresh by a new process)" 0
lf create --ref t5 --workflow task --actor agent-7
expect_rc "… and only one" 5
# Over HTTP the person behind an agent is its token's principal=.
TOKENS="$tmp/tokens"
run token agent-a write --kind agent --principal carol --tokens "$TOKENS"; tok_a=$out
run token agent-b write --kind agent --principal carol --tokens "$TOKENS"; tok_b=$out
start_server --store "file:$tmp/h" --policies "$POLICIES" --tokens "$TOKENS" ||
    not_ok "serve starts"
AUTH="Bearer $tok_a"
req POST /v1/records '{"ref":"h1","workflow":"task"}'
expect_status "http: carol's first agent opens a task: 201" 201
AUTH="Bearer $tok_b"
req POST /v1/records '{"ref":"h2","workflow":"task"}'
expect_status "… her second agent a second: 201" 201
req POST /v1/records '{"ref":"h3","workflow":"task"}'
expect_status "… a third is refused: 403" 403
expect_json "… denied" code denied
AUTH=
stop_server

mkdir -p "$tmp/bad/workflows"
cat >"$tmp/bad/workflows/t.lua" <<'LUA'
return workflow { name = "t", states = { "a", "b" }, initial = "a", terminal = { "b" },
  edges = { { "a", "b" } }, open_records = { per = "team", max = 2 } }
LUA
run --policies "$tmp/bad" lint
expect_rc "a malformed open_records fails the lint" 2
match_err "… saying its shape" 't.lua:1: open_records must be \{ per = "principal"\|"actor", max = N \}'
# A commit carries its state's budgets for the store to check again as it
# writes (core/entry.h): at most 4 a state.
cat >"$tmp/bad/workflows/t.lua" <<'LUA'
local b = { per = "actor", max = 2, within = "1h" }
return workflow { name = "t", states = { "a", "b" }, initial = "a", terminal = { "b" },
  edges = { { "a", "b" } }, budgets = { b = { b, b, b, b, b } } }
LUA
run --policies "$tmp/bad" lint
expect_rc "five budgets on one state fail the lint" 2
match_err "… saying at most 4" 'budgets.b must be a list of at most 4 \{ per'
# A count no int holds (1e300: converting it is undefined in C, and the
# test build stops at one) is refused with the field's shape, as 2.5 is;
# so is a backoff's factor or jitter of NaN (0/0 in Lua), which passed
# every `< 1` and was then converted by a retry's wait. Each field lints
# clean with a right value first: the refusals are the number's.
lint_wf() {    # WORKFLOW-FIELD
    cat >"$tmp/bad/workflows/t.lua" <<LUA
return workflow { name = "t", states = { "a", "b", "c", "d" }, initial = "a",
  terminal = { "d" }, edges = { { "a", "b" }, { "b", "c" }, { "c", "b" }, { "c", "d" } }, $1 }
LUA
    run --policies "$tmp/bad" lint
}
lint_bad() {   # WHAT WORKFLOW-FIELD MESSAGE
    lint_wf "$2"
    expect_rc "$1 fails the lint" 2
    match_err "… saying the field's shape" "$3"
}
open='open_records = { per = "actor", max = N }'
budget='budgets = { b = { { per = "actor", max = N, within = "1h" } } }'
retry='retries = { c = { to = "b", trigger = "r", max = N, escalate_to = "d",
  backoff = { initial = "1s", max = "1h", factor = F, jitter = J } } }'
stage='stages = { from = "b", pass = "c", fail = "d", backoff = { factor = F }, { "s1", retries = N } }'
fill() { echo "$1" | sed "s|N|$2|; s|F|${3:-2}|; s|J|${4:-0.1}|"; }
for f in "$open" "$budget" "$retry" "$stage"; do
    lint_wf "$(fill "$f" 3)"
    expect_rc "${f%% =*} with 3 lints clean" 0
done
for n in 1e300 2.5; do
    lint_bad "open_records max = $n" "$(fill "$open" $n)" 'open_records must be \{ per'
    lint_bad "a budget's max = $n" "$(fill "$budget" $n)" \
        'budgets.b must be a list of at most 4 \{ per'
    lint_bad "retries max = $n" "$(fill "$retry" $n)" 'retries.c must be \{ to = STATE'
    lint_bad "a stage's retries = $n" "$(fill "$stage" $n)" \
        'stage 1 must be \{ "NAME", retries = N \}'
done
lint_bad "a retries backoff factor = 0/0" "$(fill "$retry" 3 0/0)" 'retries.c must be \{ to = STATE'
lint_bad "a retries backoff jitter = 0/0" "$(fill "$retry" 3 2 0/0)" 'retries.c must be \{ to = STATE'
lint_bad "a retries backoff factor = 0.5" "$(fill "$retry" 3 0.5)" 'retries.c must be \{ to = STATE'
lint_bad "a retries backoff jitter = 1.5" "$(fill "$retry" 3 2 1.5)" 'retries.c must be \{ to = STATE'
lint_bad "a retry along no edge" "$(fill "$retry" 3 | sed 's/to = "b"/to = "a"/')" \
    'retries.c: the workflow needs the edge c -> a'
lint_bad "a stages backoff factor = 0/0" "$(fill "$stage" 2 0/0)" \
    'stages: backoff needs durations like "30s" and a factor >= 1'
done_testing
