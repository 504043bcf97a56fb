#!/bin/sh
# The policy directory through the CLI: lint (ok, and file:line problems),
# graph in dot and mermaid, and the --policies / install-dir fallback.
. tests/cli/tap.inc

run --policies "$SHIPPED" lint
expect_rc "lint of the shipped policies exits 0" 0
match_out "lint says ok with the file count and generation" \
    '^ok: [0-9]+ files?, generation [0-9a-f]{64}$'
gen=$(printf '%s' "$out" | sed 's/.*generation //')
run --policies "$SHIPPED" lint --json
expect_json "lint --json: ok" ok true
expect_json "lint --json: the same generation" generation "$gen"
expect_json "lint --json: the default workflow is loaded (after factory, in path order)" workflows/2 loopforge
match_out "lint --json lists the guards" '"guards":\["'
run --policies "$POLICIES" lint
expect_out "lint counts the files of a directory" \
    "ok: 1 file, generation $(sha256sum "$POLICIES/workflows/loopforge.lua" | cut -c1-64)"

# A broken workflow directory: every problem as file:line: message.
mkdir -p "$tmp/bad/workflows"
cp "$POLICIES"/workflows/*.lua "$tmp/bad/workflows/"
cat >"$tmp/bad/workflows/zz_broken.lua" <<'LUA'
return workflow {
  name = "broken",
  states = { "open", "done" },
  initial = "open",
  terminal = { "done" },
  edges = { { "open", "nowhere" } },
}
LUA
run --policies "$tmp/bad" lint
expect_rc "lint of a broken directory exits 2" 2
match_err "lint reports file:line: message" 'zz_broken\.lua:[0-9]+: .*nowhere'
expect_out "lint of a broken directory prints nothing on stdout" ""

printf 'return workflow {\n  name = "syntax",\n  states = { "a" \n' >"$tmp/bad/workflows/zz_broken.lua"
run --policies "$tmp/bad" lint
expect_rc "a Lua syntax error exits 2" 2
match_err "a Lua syntax error is reported as file:line:" 'zz_broken\.lua:[0-9]+:'

run --policies "$tmp/bad" --store memory: create --ref x
expect_rc "the engine refuses a broken policy directory too" 2
match_err "… with the same file:line message" 'zz_broken\.lua:[0-9]+:'

run --policies "$tmp/nonexistent" lint
expect_rc "lint of a missing directory exits 2" 2

# ---- graph ----
run --policies "$POLICIES" graph
expect_rc "graph exits 0" 0
match_out "graph defaults to dot" '^digraph '
for e in "issue_created -> task_queued" "task_queued -> pr_created" \
         "pr_created -> ci_pending" "ci_pending -> ci_passed" "ci_pending -> ci_failed" \
         "ci_passed -> merged" "ci_passed -> awaiting_review" "ci_failed -> ci_pending" \
         "awaiting_review -> approved" "awaiting_review -> ci_pending" \
         "approved -> merged" "merged -> closed"; do
    match_out "dot has the edge $e" "^  \"?${e%% *}\"? -> \"?${e##* }\"? \\[id=\"edge-${e%% *}-${e##* }\"\\];"
done
check "dot has LoopForge's 12 edges, escalated's two and the engine's escalation (plus the start arrow)" \
    test "$(printf '%s\n' "$out" | grep -c -- '->')" -eq 16
match_out "… the engine's edge drawn dashed" '^  "ci_failed" -> "escalated" \[id="edge-ci_failed-escalated", style=dashed\];$'
match_out "dot marks the terminal state" 'closed"? \[id="state-closed", shape=doublecircle\]'

run --policies "$POLICIES" graph --format mermaid
expect_rc "graph --format mermaid exits 0" 0
match_out "mermaid output is a state diagram" '^stateDiagram-v2$'
match_out "mermaid starts at the initial state" '\[\*\] --> issue_created$'
match_out "mermaid has the edges" '^    ci_passed --> awaiting_review$'
match_out "mermaid has the terminal state" '^    closed --> \[\*\]$'
run --policies "$POLICIES" graph --workflow loopforge --format=dot
match_out "graph --workflow loopforge" '^digraph '
run --policies "$POLICIES" graph --workflow nope
expect_rc "graph of an unknown workflow exits 3" 3
match_err "graph names the unknown workflow" 'Unknown workflow: nope'
run --policies "$tmp/bad" graph
expect_rc "graph of a broken directory exits 2" 2

# A second workflow file is loaded and drawable by name.
mkdir -p "$tmp/two/workflows"
cp "$POLICIES"/workflows/*.lua "$tmp/two/workflows/"
cat >"$tmp/two/workflows/gate.lua" <<'LUA'
return workflow {
  name = "gate",
  states = { "new", "draft", "review", "done" },
  initial = "new",
  terminal = { "done" },
  edges = { { "new", "draft" }, { "draft", "review" }, { "review", "draft" },
            { "review", "done" } },
}
LUA
run --policies "$tmp/two" lint
match_out "lint counts both files" '^ok: 2 files, '
run --policies "$tmp/two" graph --workflow gate --format mermaid
match_out "graph --workflow draws the named workflow" '^    review --> draft$'
run --policies "$tmp/two" --store memory: create --ref g --workflow gate --json
expect_json "create --workflow uses it" state new

# `policies` lists what the shipped set loads, in evaluation order.
run --policies "$SHIPPED" policies
expect_rc "policies exits 0" 0
match_out "policies names the generation" '^generation [0-9a-f]{64} \(12 files in '
match_out "policies lists a guard with its filter" '^  high-risk-merge-needs-approval +to=merged '
match_out "policies lists the hook" '^  route-to-review +to=ci_passed '
match_out "policies lists the routes" '^routes \(9\):$'
match_out "policies lists a route with its filter" '^  issue-opened +event=issues action=opened +.*/routes/github\.lua:[0-9]+$'
match_out "policies lists the one CI route with its four events" \
    '^  ci +event=check_suite\|check_run\|workflow_run\|status +.*/routes/github\.lua:[0-9]+$'
check "policies lists none of the old CI routes" \
    sh -c '! printf "%s\n" "$1" | grep -q -E "^  (ci-check-suite|ci-workflow-run|check-run) "' _ "$out"
run --policies "$SHIPPED" policies --json
expect_json "policies --json has the guards in order" 'guards/6/name' review-unless-auto-merge
expect_json "policies --json has the routes in order" 'routes/1/name' issue-opened
expect_json "… with their filters" 'routes/1/on' 'event=issues action=opened'
expect_json "policies --json: ci is the fifth route" 'routes/5/name' ci
expect_json "… following check suites, check runs, workflow runs and statuses" 'routes/5/on' \
    'event=check_suite|check_run|workflow_run|status'
expect_json "… review-submitted follows dismissals" 'routes/6/on' \
    'event=pull_request_review action=submitted|dismissed'
expect_json "… the last route is ping" 'routes/9/name' ping
run --policies "$SHIPPED" lint --json
expect_json "lint --json lists the routes" 'routes/9' ping
expect_json "lint --json lists the ci route in its place" 'routes/5' ci
run --policies "$tmp/bad" policies
expect_rc "policies of a broken directory exits 2" 2

# --dry-run: the verdict and every decision, nothing committed, the exit
# code a real request would get.
STORE="file:$tmp/dry.journal"
run --policies "$SHIPPED" --store "$STORE" create --ref dry-1 --auto-merge
id=$out
for s in task_queued pr_created ci_pending ci_passed; do
    run --policies "$SHIPPED" --store "$STORE" transition "$id" "$s" t --actor dev
done
run --policies "$SHIPPED" --store "$STORE" audit --verify
before=$out
run --policies "$SHIPPED" --store "$STORE" transition "$id" merged pr.merged --actor bot --meta risk_tier=high --dry-run
expect_rc "dry-run of a denied merge exits 5" 5
match_out "dry-run says who would deny and why" '^would deny: high-risk-merge-needs-approval: high-risk merge requires governance approval$'
match_out "dry-run prints every decision" '^  allow blocking-labels$'
run --policies "$SHIPPED" --store "$STORE" audit --verify
expect_out "dry-run commits nothing (same audit)" "$before"
run --policies "$SHIPPED" --store "$STORE" transition "$id" merged pr.merged --actor bot --dry-run
expect_rc "dry-run of an allowed merge exits 0" 0
match_out "dry-run says it would allow" "^would allow: $id: ci_passed → merged \\(pr.merged\\)$"
run --policies "$SHIPPED" --store "$STORE" show "$id" --json
expect_json "the record did not move" state ci_passed
run --policies "$SHIPPED" --store "$STORE" transition "$id" closed x --dry-run
expect_rc "dry-run of an invalid edge exits 4" 4
match_out "dry-run of an invalid edge says so" '^would refuse: Invalid transition: ci_passed → closed'
run --policies "$SHIPPED" --store "$STORE" transition "$id" merged pr.merged --actor bot --meta risk_tier=high
expect_rc "the real denied merge exits 5" 5
match_err "the real denial names the policy" '^Denied by policy high-risk-merge-needs-approval: high-risk merge requires governance approval$'

# ---- the shipped rules keep to the loopforge workflow ----
O="$tmp/other-wf"
cp -r "$SHIPPED" "$O"
cat >"$O/workflows/release.lua" <<'LUA'
return workflow {
  name = "release",
  states = { "draft", "merged", "shipped" },
  initial = "draft",
  terminal = { "shipped" },
  edges = { { "draft", "merged" }, { "merged", "shipped" } },
}
LUA
run --policies "$O" --store "file:$tmp/other.j" create --ref rel-1 --workflow release --label do-not-merge=do-not-merge
rel=$out
run --policies "$O" --store "file:$tmp/other.j" transition "$rel" merged ship
expect_rc "blocking-labels does not apply to another workflow's merged state" 0
run --policies "$O" --store "file:$tmp/other.j" create --ref rel-2 --auto-merge --label do-not-merge=do-not-merge
lfr=$out
for st in task_queued pr_created ci_pending ci_passed; do
    run --policies "$O" --store "file:$tmp/other.j" transition "$lfr" "$st" t
done
run --policies "$O" --store "file:$tmp/other.j" transition "$lfr" merged ship
expect_rc "… and still does to loopforge's (exit 5)" 5

# ---- lint in one round ----
L1="$tmp/lint1"
mkdir -p "$L1/workflows" "$L1/guards"
cp "$SHIPPED"/workflows/*.lua "$L1/workflows/"
printf 'return policy { name = "ok-one", on = { to = "merged" }, defaults = { n = 1 },\n  check = function() return allow() end }\n' >"$L1/guards/ok.lua"
printf 'return policy { name = "broken"\n' >"$L1/guards/broken.lua"
printf 'return {\n  ["ok-one"] = { n = "x" },\n  ["broken"] = {},\n}\n' >"$L1/config.lua"
printf 'return policy {}\n' >"$L1/stray.lua"
run --policies "$L1" lint
expect_rc "a set with three kinds of problem: exit 2" 2
match_err "… a file that does not compile" 'guards/broken.lua:2: .\}. expected'
match_err "… a setting of the wrong type, in the same round" "config.lua:2: config for 'ok-one': setting 'n' must be a number"
match_err "… a policy file at the top, and where it belongs" 'stray.lua: not loaded: .* put a guard in guards/'
expect_match "… and no false alarm for the config of the file that did not load" stderr \
    "$(printf '%s' "$err" | grep -c "unknown policy, hook or route 'broken'")" '^0$'

done_testing
