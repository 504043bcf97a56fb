#!/bin/sh
# Replay (issue 12, item 4): a recorded history judged again under another
# policy set. Under the set that recorded it: no change. Under a stricter
# set: exactly the requests it would deny, by rule. Under a laxer one: the
# denied attempts it would allow. --record, --since/--until narrow it;
# --json streams one object per change and a summary; nothing is written.
. tests/cli/tap.inc
STORE="file:$tmp/j"
# The recording set: LoopForge's workflow and the shipped blocking-labels.
mkdir -p "$POLICIES/guards"
cp "$SHIPPED/guards/blocking-labels.lua" "$POLICIES/guards/"

lf create --ref a --repo o/r; a=$out
lf create --ref b --repo o/r --label hold=do-not-merge; b=$out
for id in "$a" "$b"; do
    for s in task_queued pr_created ci_pending ci_passed; do lf transition "$id" $s t --actor dev; done
done
lf transition "$a" merged m --actor bot
lf transition "$b" merged m --actor bot
expect_rc "the recording set denies b's merge (a label)" 5
lf transition "$b" closed x
expect_rc "… and an edge that does not exist is rejected" 4
mid=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
lf transition "$a" closed done --actor bot
n=$(audit_count)

lf replay
expect_rc "replay exits 0" 0
expect_match "under the same set nothing would change" stdout "$out" \
    '^replay: 12 requests replayed under .*, 0 would change \(allowed → denied 0, denied → allowed 0, another reason 0\)$'

# guard DIR NAME STATE ACTOR WHY: a guard in DIR denying ACTOR's moves to
# STATE with WHY.
guard() {
    cat >"$1/guards/$2.lua" <<LUA
return policy {
  name = "$2",
  on = { to = "$3" },
  check = function(t)
    if t.actor == "$4" then return deny("$5") end
    return allow()
  end,
}
LUA
}

# Stricter: bots may not merge or close.
S="$tmp/strict"
mkdir -p "$S/workflows" "$S/guards"
cp "$POLICIES/workflows/loopforge.lua" "$S/workflows/"
cp "$POLICIES/guards/blocking-labels.lua" "$S/guards/"
guard "$S" no-bots merged bot "bots do not merge"
run --policies "$S" --store "$STORE" replay
expect_rc "replay under a stricter set exits 0" 0
match_out "it reports a's merge as now denied" \
    "^seq [0-9]+  $a  ci_passed → merged \\(m\\) by bot at .*: allowed → denied by no-bots: bots do not merge$"
match_out "… and nothing else (b's merge is still denied by the label first)" \
    '^replay: 12 requests replayed under .*, 1 would change \(allowed → denied 1, denied → allowed 0, another reason 0\); by rule: no-bots 1$'

# Laxer: no guards at all.
X="$tmp/lax"
mkdir -p "$X/workflows"
cp "$POLICIES/workflows/loopforge.lua" "$X/workflows/"
run --policies "$X" --store "$STORE" replay --json
expect_rc "replay --json exits 0" 0
printf '%s\n' "$out" | sed -n 1p >"$tmp/first"
out=$(cat "$tmp/first")
expect_json "a laxer set would allow b's merge" record_id "$b"
expect_json "… was denied" was denied
expect_json "… by the label" was_rule blocking-labels
expect_json "… now allowed" now allowed
out=$(printf '%s\n' "$(run --policies "$X" --store "$STORE" replay --json; printf '%s' "$out")" | tail -1)
expect_json "the summary comes last" summary true
expect_json "… one change" changed 1
expect_json "… by rule" by_rule/blocking-labels 1

run --policies "$S" --store "$STORE" replay --record "$b"
match_out "--record narrows it to one record" '^replay: 6 requests replayed under .*, 0 would change'
run --policies "$S" --store "$STORE" replay --since "$mid"
match_out "--since keeps the later requests only" '^replay: 1 requests replayed under .*, 0 would change'
run --policies "$S" --store "$STORE" replay --until "$mid"
match_out "--until the earlier ones" '^replay: 11 requests replayed under .*, 1 would change'
run --policies "$S" --store "$STORE" replay --since yesterday
expect_rc "a bad time: exit 2" 2
run --policies "$tmp/nowhere" --store "$STORE" replay
expect_rc "a policy set that does not load: exit 2" 2
# Several rules: the summary lists them by name, whatever order its hash
# table keeps them in (checked to fail with the summary unsorted).
M="$tmp/many"
mkdir -p "$M/workflows" "$M/guards"
cp "$POLICIES/workflows/loopforge.lua" "$M/workflows/"
guard "$M" zulu merged bot no
guard "$M" mike closed bot no
guard "$M" alpha pr_created dev no
guard "$M" kilo task_queued dev no
run --policies "$M" --store "$STORE" replay
match_out "the summary by rule is in name order" \
    '; by rule: alpha 2, kilo 2, mike 1, zulu 2$'
run --policies "$M" --store "$STORE" replay --json
out=$(printf '%s\n' "$out" | tail -1)
match_out "… in --json too" '"by_rule":\{"alpha":2,"kilo":2,"mike":1,"zulu":2\}\}$'

check "replay wrote nothing" test "$(audit_count)" -eq "$n"
done_testing
