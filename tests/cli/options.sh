#!/bin/sh
# Command-line surface: help on every command, version, global options on
# either side of the command, environment defaults, usage errors.
. tests/cli/tap.inc
STORE=memory:
COMMANDS="create transition show list delete audit lint graph bench"

for c in $COMMANDS; do
    run "$c" --help
    if [ "$rc" = 0 ] && printf '%s\n' "$out" | grep -q "^Usage: loopforge $c"; then
        ok "$c --help prints its usage and exits 0"
    else
        not_ok "$c --help prints its usage and exits 0"
    fi
done
run create -h
match_out "-h is --help" '^Usage: loopforge create'
run --help
expect_rc "loopforge --help exits 0" 0
for c in $COMMANDS; do
    match_out "loopforge --help lists $c" "^  $c "
done
run help
match_out "loopforge help lists the commands" '^  transition '
run help graph
match_out "loopforge help CMD prints that command's usage" '^Usage: loopforge graph'
run --json show --help
match_out "--help wins over a missing argument" '^Usage: loopforge show'

run --version
expect_out "--version prints the version" "loopforge 0.1.0"

# Usage errors: exit 2, a message and a pointer at --help on stderr.
run
expect_rc "no command exits 2" 2
run frobnicate
expect_rc "an unknown command exits 2" 2
match_err "an unknown command is named, with a hint" "unknown command 'frobnicate'"
match_err "usage errors point at --help" "Try 'loopforge --help'"
run --policies "$POLICIES" --store memory: create --ref x --bogus
expect_rc "an unknown option exits 2" 2
match_err "an unknown option is named" "unknown option '--bogus'"
match_err "a command's usage error points at its --help" "Try 'loopforge create --help'"
run --policies "$POLICIES" --store memory: create
expect_rc "create without --ref exits 2" 2
match_err "create without --ref says so" 'missing --ref'
run --policies "$POLICIES" --store
expect_rc "an option without its value exits 2" 2
match_err "an option without its value says so" "'--store' needs a value"
run --policies "$POLICIES" --store memory: create --ref x --json=yes
expect_rc "a flag given a value exits 2" 2
run --policies "$POLICIES" --store memory: transition loop-0000000000000000 task_queued
expect_rc "transition with two arguments exits 2" 2
match_err "transition names what is missing" 'missing arguments'
run --policies "$POLICIES" --store memory: show a b
expect_rc "show with two ids exits 2" 2
match_err "an extra argument is named" "unexpected argument 'b'"
run --policies "$POLICIES" --store memory: list --limit 0
expect_rc "list --limit 0 exits 2" 2
run --policies "$POLICIES" --store memory: list --limit ten
match_err "a bad --limit is explained" "--limit must be an integer"
run --policies "$POLICIES" --store memory: audit --after -3
expect_rc "audit --after -3 exits 2" 2
run --policies "$POLICIES" --store memory: audit --verify loop-0000000000000000
expect_rc "audit --verify with an id exits 2" 2
run --policies "$POLICIES" graph --format png
expect_rc "graph --format png exits 2" 2
match_err "graph names the formats" 'dot or mermaid'

# Global options before or after the command, --opt=value too.
j="file:$tmp/j"
run --json --store "$j" --policies "$POLICIES" create --ref before
expect_rc "global options before the command" 0
expect_json "--json before the command gives the record" ref before
id=$(json record_id)
run create --ref after --store "$j" --policies "$POLICIES" --json
expect_json "global options after the command" ref after
run show "$id" --store="$j" --policies="$POLICIES"
expect_rc "--opt=value form" 0
match_out "show without --json is indented" '^  "state": "issue_created",$'
run --store "$j" show --json --policies "$POLICIES" "$id"
expect_json "global options between the command and its argument" record_id "$id"
run --policies "$POLICIES" --store "$j" list -- --not-an-option
expect_rc "-- ends the options" 2
match_err "after --, an option-looking word is an argument" "unexpected argument '--not-an-option'"

# Environment defaults: LOOPFORGE_STORE, LOOPFORGE_POLICIES, LOOPFORGE_ACTOR.
LOOPFORGE_STORE="$j" LOOPFORGE_POLICIES="$POLICIES" LOOPFORGE_ACTOR=env-actor \
    run show "$id" --json
expect_json "LOOPFORGE_STORE and LOOPFORGE_POLICIES are the defaults" record_id "$id"
LOOPFORGE_STORE="$j" LOOPFORGE_POLICIES="$POLICIES" LOOPFORGE_ACTOR=env-actor \
    run transition "$id" task_queued worker.picked_up --json
expect_json "LOOPFORGE_ACTOR is the default actor" record/transitions/2/actor env-actor
LOOPFORGE_STORE="$j" run --policies "$POLICIES" --store memory: show "$id"
expect_rc "--store overrides LOOPFORGE_STORE" 3
LOOPFORGE_POLICIES=/nonexistent run --policies "$POLICIES" lint
expect_rc "--policies overrides LOOPFORGE_POLICIES" 0
LOOPFORGE_POLICIES=/nonexistent run lint
expect_rc "LOOPFORGE_POLICIES is used" 2
# Some shells keep assignments made before a function call: drop them.
unset LOOPFORGE_STORE LOOPFORGE_POLICIES LOOPFORGE_ACTOR

# Without any of them: ./policies and file:./var/loopforge.journal.
mkdir "$tmp/cwd" && cp -R "$POLICIES" "$tmp/cwd/policies"
(cd "$tmp/cwd" && "$LOOPFORGE_BIN" create --ref default-store >/dev/null 2>&1)
check "the default store is file:./var/loopforge.journal" \
    test -s "$tmp/cwd/var/loopforge.journal"
out=$(cd "$tmp/cwd" && USER= "$LOOPFORGE_BIN" create --ref no-user --json)
expect_json "without \$USER the actor is cli:unknown" transitions/1/actor cli:unknown

done_testing
