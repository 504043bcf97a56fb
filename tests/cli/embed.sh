#!/bin/sh
# The embedding example, contrib/embed/lfbot.c, built the way a user
# builds it: against the *installed* header and shared library, found
# through pkg-config alone (a file `make install` forgets fails here).
# It walks a record through the shipped policies on the journal, one JSON
# line per command, reloads on SIGHUP and exits 0 on SIGTERM and on EOF.
. tests/cli/tap.inc
prefix="$tmp/prefix"
( cd "$ROOT" && make -s install PREFIX="$prefix" ) >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "make install PREFIX=… exits 0" 0
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/lfbot" "$ROOT/contrib/embed/lfbot.c" \
    $(pkg-config --cflags --libs loopforge libevent) >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "lfbot compiles against the installed loopforge with pkg-config only" 0
export LD_LIBRARY_PATH="$prefix/lib"
shipped="$prefix/share/loopforge/policies"
store="file:$tmp/journal"

ref=https://github.com/o/r/issues/7
cat >"$tmp/cmds" <<EOF
create $ref o/r
transition $ref task_queued worker.picked_up
transition $ref merged yolo
transition $ref pr_created pr.opened pr_url=https://github.com/o/r/pull/8 actor=alice

# CI passes; the shipped hook moves it on to awaiting_review
transition $ref ci_pending ci.started
transition $ref ci_passed ci.completed
show $ref
transition $ref approved review.approved actor=alice
transition $ref approved review.approved actor=bob
reload
transition $ref merged pr.merged
transition $ref closed issue.closed
show loop-0000000000000000
bogus
EOF
# The last line has no newline: it still counts.
printf 'show %s' "$ref" >>"$tmp/cmds"
cat "$tmp/cmds" | "$tmp/lfbot" --store "$store" --policies "$shipped" >"$tmp/out" 2>"$tmp/err"
rc=$?
all=$(cat "$tmp/out")
expect_rc "lfbot exits 0 at the end of its input" 0
n=$(printf '%s\n' "$all" | wc -l | tr -d ' ')
if [ "$n" = 15 ]; then ok "one answer per command"; else not_ok "one answer per command" "got $n lines"; fi
if printf '%s\n' "$all" | $JSON --lines >/dev/null 2>&1; then ok "every answer is one line of JSON"
else not_ok "every answer is one line of JSON"; fi

# answer N PATH VALUE NAME: line N of the answers has VALUE at PATH.
answer() {
    out=$(printf '%s\n' "$all" | sed -n "$1p")
    expect_json "$4" "$2" "$3"
}
answer 1 record/state issue_created "create makes the record"
answer 2 new_state task_queued "transition by ref"
answer 3 error "Invalid transition: task_queued → merged. Allowed from task_queued: pr_created" \
    "an invalid transition gets LoopForge's message"
answer 4 record/pr_url https://github.com/o/r/pull/8 "KEY=VALUE metadata sets the record's fields"
answer 6 new_state ci_passed "CI passes"
answer 7 record/state awaiting_review "the shipped hook's follow-up ran"
answer 8 code denied "the PR's author cannot approve it (actor=alice)"
answer 9 new_state approved "somebody else can (actor=bob)"
answer 10 success true "reload"
answer 11 new_state merged "merged after approval"
answer 12 record/state closed "closed"
answer 13 code not_found "an unknown id"
answer 14 code invalid_request "an unknown command"
answer 15 record/state closed "a last line without a newline"
out=$all; err=$(cat "$tmp/err")
match_err "hooks' follow-ups reach the engine's log, on stderr" \
    'lfbot: info: follow-up: loop-[0-9a-f]{16}: ci_passed → awaiting_review'
"$prefix/bin/loopforge" --store "$store" --policies "$shipped" audit --verify >"$tmp/out" 2>"$tmp/err"
rc=$?; out=$(cat "$tmp/out")
expect_rc "its journal verifies" 0
match_out "with every change, refusal and reload on record (and the announcement)" \
    "^ok: 13 entries verified"

# Signals: the bot holds stdin open (a fifo), reloads on SIGHUP, and ends
# cleanly on SIGTERM.
mkfifo "$tmp/fifo"
"$tmp/lfbot" --store "$store" --policies "$shipped" <"$tmp/fifo" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 3>"$tmp/fifo"
echo "show $ref" >&3
# wait_for FILE ERE: until FILE matches (10 s at most).
wait_for() {
    i=0
    while ! grep -q -E -e "$2" "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}
wait_for "$tmp/out" '"state":"closed"'
kill -HUP "$pid"
wait_for "$tmp/err" 'policies reloaded'
err=$(cat "$tmp/err")
match_err "SIGHUP reloads the policies" '^lfbot: policies reloaded: [0-9a-f]{12} -> [0-9a-f]{12}$'
kill -TERM "$pid"
wait "$pid"
rc=$?
exec 3>&-
expect_rc "SIGTERM ends it cleanly (exit 0)" 0
done_testing
