#!/bin/sh
# Budgets (issue 12, item 3) on the journal: counted by the store from the
# log, so every process -- each CLI call here is a new one, opening the
# journal afresh -- sees the same counts; the refusal says when it frees up.
. tests/cli/tap.inc
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
lf create --ref b4 --workflow ship; b4=$out
lf explain "$b4" --actor bot
match_out "explain shows where the budget stands, and when it frees up" \
    '^  budget: actor bot into merged: 2 of 2 within 3600s, frees up at [0-9T:.-]+Z$'
match_out "… and the way out it blocks" '^      budget:merged: budget spent: actor bot made 2'
lf explain "$id"
match_out "explain of a merged record: no way out" "no way out"
done_testing
