#!/bin/sh
# The walk of the issue's example, byte for byte: create, a valid
# transition, an invalid one with LoopForge's message, audit --verify.
. tests/cli/tap.inc
STORE="file:$tmp/var/loopforge.journal"
POLICIES=$SHIPPED       # exactly what a user gets

lf create --ref https://github.com/org/repo/issues/42 --repo org/repo
expect_rc "create exits 0" 0
match_out "create prints a loop- id with 16 hex characters" '^loop-[0-9a-f]{16}$'
id=$out

lf transition "$id" task_queued worker.picked_up --actor worker-7
expect_rc "valid transition exits 0" 0
expect_out "transition prints ID: from → to (trigger)" \
    "$id: issue_created → task_queued (worker.picked_up)"

lf transition "$id" merged yolo
expect_rc "invalid transition exits 4" 4
expect_err "invalid transition prints LoopForge's message" \
    "Invalid transition: task_queued → merged. Allowed from task_queued: pr_created"
expect_out "invalid transition prints nothing on stdout" ""

lf audit --verify
expect_rc "audit --verify exits 0" 0
# The policy set's announcement, the creation, the transition, the
# refused attempt.
match_out "audit --verify counts the entries" "^ok: 4 entries verified, 0 checkpoints\$"

# The journal is created where --store says, parents included.
check "the journal file exists on disk" test -s "$tmp/var/loopforge.journal"

# The actor given is the actor recorded; the default is cli:$USER.
lf show "$id" --json
expect_json "history names the creating actor (cli:\$USER)" transitions/1/actor cli:tester
expect_json "history names --actor" transitions/2/actor worker-7
expect_json "the invalid transition changed nothing" state task_queued

done_testing
