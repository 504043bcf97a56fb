#!/bin/sh
# Records through the CLI: create options and escaping, the happy path,
# show, list order and paging, delete, every exit code a request can
# give, --json on success and failure, and bad input changing nothing.
. tests/cli/tap.inc
STORE="file:$tmp/j"

# ---- create: every option, and JSON escaping of labels and metadata ----
lf create --ref 'https://github.com/org/repo/issues/7' --repo org/repo \
    --ref-number 7 --auto-merge --label 'team=core' --label 'q"uote=a\b' \
    --meta 'note=line "one"' --meta-json 'risk=3' --meta-json 'tags=["a","b"]' \
    --actor alice --json
expect_rc "create with every option exits 0" 0
check "create --json is one valid JSON document" sh -c "printf '%s' '$(printf '%s' "$out" | sed "s/'/'\\\\''/g")' | $JSON"
expect_json "--ref-number is stored as an integer" ref_number 7
expect_json "--repo is stored" repo org/repo
expect_json "--auto-merge is stored" auto_merge true
expect_json "--label k=v is stored" labels/team core
expect_json "label keys and values are escaped" 'labels/q"uote' 'a\b'
expect_json "--meta keeps its value as a string" metadata/note 'line "one"'
expect_json "--meta-json gives a typed value" metadata/risk 3
expect_json "--meta-json takes arrays" metadata/tags/2 b
expect_json "--actor is the creating actor" transitions/1/actor alice
expect_json "a new record starts in issue_created" state issue_created
expect_json "the first history entry is 'created'" transitions/1/trigger created
id7=$(json record_id)

lf create --ref dup-test --meta k=1 --meta k=2 --json
expect_json "a key given twice keeps its last value" metadata/k 2
lf create --ref https://github.com/org/repo/issues/7
expect_rc "a duplicate ref exits 6" 6
match_err "a duplicate ref names the existing record" "$id7"
lf create --ref https://github.com/org/repo/issues/7 --json
expect_json "a duplicate ref --json gives code duplicate_ref" code duplicate_ref

# ---- the happy path, one transition at a time ----
lf create --ref happy --repo org/repo
happy=$out
prev=issue_created
for step in task_queued:worker.picked_up pr_created:pr.opened ci_pending:ci.started \
            ci_passed:ci.completed merged:auto.merged closed:issue.closed; do
    to=${step%%:*} trig=${step#*:}
    lf transition "$happy" "$to" "$trig"
    expect_out "happy path: $prev → $to" "$happy: $prev → $to ($trig)"
    prev=$to
done
lf show "$happy" --json
expect_json "the happy path ends closed" state closed
expect_json "with 7 history entries" 'transitions/#' 7
match_out "closed_at is set" '"closed_at":"[0-9T:.-]{26}Z"'
lf transition "$happy" issue_created reopen
expect_rc "leaving a terminal state exits 4" 4
expect_err "the terminal message is LoopForge's" \
    "Invalid transition: closed → issue_created. Allowed from closed: none (terminal)"

# ---- transition --json, metadata, pr fields ----
lf create --ref pr-test
pr=$out
lf transition "$pr" task_queued worker.picked_up
lf transition "$pr" pr_created pr.opened --meta pr_url=https://github.com/org/repo/pull/9 \
    --meta-json pr_number=9 --json
expect_rc "transition --json exits 0" 0
expect_json "transition --json gives the result: success" success true
expect_json "… previous_state" previous_state task_queued
expect_json "… new_state" new_state pr_created
expect_json "… the record" record/state pr_created
expect_json "--meta lands on the history entry" record/transitions/3/metadata/pr_url \
    https://github.com/org/repo/pull/9
expect_json "pr_number metadata sets the record's pr_number" record/pr_number 9
lf transition "$pr" merged yolo --json
expect_rc "invalid transition --json exits 4" 4
expect_json "invalid transition --json: code" code invalid_transition
expect_json "invalid transition --json: error" error \
    "Invalid transition: pr_created → merged. Allowed from pr_created: ci_pending"
match_err "invalid transition --json still prints the message on stderr" '^Invalid transition'

# ---- not found, for every command that takes an id ----
for c in show delete; do
    lf "$c" loop-0123456789abcdef
    expect_rc "$c of an unknown id exits 3" 3
    expect_err "$c of an unknown id says Record not found" "Record not found: loop-0123456789abcdef"
done
lf transition loop-0123456789abcdef task_queued x
expect_rc "transition of an unknown id exits 3" 3
expect_err "transition of an unknown id says Record not found" "Record not found: loop-0123456789abcdef"
lf show loop-0123456789abcdef --json
expect_json "not found --json: success false" success false
expect_json "not found --json: code" code not_found

# ---- show ----
lf show "$id7"
expect_rc "show exits 0" 0
match_out "show prints the record indented" '^  "record_id": "loop-[0-9a-f]{16}",$'
match_out "show puts each history entry on one line" '^    \{"from_state":null,"to_state":"issue_created"'
lf show "$id7" --json
check "show --json is one line" test "$(printf '%s\n' "$out" | wc -l)" -eq 1
expect_json "show --json keeps LoopForge's key order" record_id "$id7"
match_out "keys in LoopForge's to_dict order, then ours" \
    '^\{"record_id":.*"ref":.*"ref_number":.*"repo":.*"pr_url":.*"pr_number":.*"state":.*"auto_merge":.*"ci_status":.*"transitions":.*"labels":.*"created_at":.*"updated_at":.*"closed_at":.*"workflow":.*"version":.*"metadata":'

# ---- list: newest updated_at first, filters, --limit, --cursor ----
STORE="file:$tmp/list"
lf create --ref l1 --repo a/one; l1=$out
lf create --ref l2 --repo a/two; l2=$out
lf create --ref l3 --repo a/one; l3=$out
lf transition "$l1" task_queued worker.picked_up    # l1 is now the newest
lf list
expect_rc "list exits 0" 0
ids=$(printf '%s\n' "$out" | cut -d' ' -f1 | tr '\n' ' ')
expect_match "list is newest updated_at first" list "$ids" "^$l1 $l3 $l2 $"
match_out "a list line is: id, state, updated_at, ref" \
    "^$l1  task_queued +[0-9-]{10}T[0-9:.]{15}Z  l1$"
lf list --state issue_created
ids=$(printf '%s\n' "$out" | cut -d' ' -f1 | tr '\n' ' ')
expect_match "list --state filters" list "$ids" "^$l3 $l2 $"
lf list --repo a/one
ids=$(printf '%s\n' "$out" | cut -d' ' -f1 | tr '\n' ' ')
expect_match "list --repo filters" list "$ids" "^$l1 $l3 $"
lf list --limit 2 --json
expect_json "list --limit 2 gives 2 records" 'records/#' 2
expect_json "… the newest first" records/1/record_id "$l1"
cursor=$(json next_cursor)
check "… and a next_cursor" test "$cursor" != null
lf list --limit 2 --cursor "$cursor" --json
expect_json "the cursor's page has the rest" 'records/#' 1
expect_json "… which is the oldest" records/1/record_id "$l2"
expect_json "… and no further cursor" next_cursor null
lf list --limit 2
match_err "plain list says how to get the next page" '^\(more: add --cursor [^ ]+\)$'
lf list --state merged --json
expect_json "an empty list is {records:[]}" 'records/#' 0

# ---- delete: an audited tombstone ----
before=$(audit_count)
lf delete "$l2" --actor remover
expect_rc "delete exits 0" 0
expect_out "delete says what it deleted" "deleted $l2"
lf show "$l2"
expect_rc "show after delete exits 3" 3
lf list
check "a deleted record leaves list" sh -c "! printf '%s\n' '$out' | grep -q '$l2'"
check "delete appends one audit entry" test "$(audit_count)" -eq $((before + 1))
lf audit "$l2"
match_out "the tombstone names its actor" '"kind":"deleted".*"actor":"remover"'
lf audit --verify
expect_rc "audit --verify still passes after a delete" 0
lf delete "$l2"
expect_rc "deleting twice exits 3" 3
lf create --ref l2
expect_rc "a deleted record's ref can be used again" 0

# ---- the shipped policies: a guard's veto exits 5 and changes nothing ----
STORE="file:$tmp/governed"
run --policies "$SHIPPED" --store "$STORE" create --ref gov --auto-merge --label do-not-merge=yes
gov=$out
for step in task_queued:worker.picked_up pr_created:pr.opened ci_pending:ci.started \
            ci_passed:ci.completed; do
    run --policies "$SHIPPED" --store "$STORE" transition "$gov" "${step%%:*}" "${step#*:}"
done
expect_rc "the shipped policies allow the path up to ci_passed" 0
before=$(audit_count)
run --policies "$SHIPPED" --store "$STORE" transition "$gov" merged auto.merged --json
expect_rc "a transition a guard denies exits 5" 5
expect_json "denied --json: code" code denied
match_out "denied --json: the decisions name the policy" '"policy":"blocking-labels"'
match_err "a denial prints the reason" 'do-not-merge'
run --policies "$SHIPPED" --store "$STORE" show "$gov" --json
expect_json "a denied transition leaves the state" state ci_passed
check "a denied attempt is itself audited" test "$(audit_count)" -eq $((before + 1))
run --policies "$SHIPPED" --store "$STORE" audit "$gov"
match_out "the denied entry names policy and reason" '"kind":"denied".*blocking-labels.*do-not-merge'
STORE="file:$tmp/list"

# ---- bad input changes nothing ----
lf list --json; list_before=$out
before=$(audit_count)
lf transition "$l1" nonsense_state x
expect_rc "an unknown state exits 2" 2
match_err "an unknown state is named" "Unknown state 'nonsense_state'"
lf transition "$l1" pr_created ""
expect_rc "an empty trigger exits 2" 2
lf create --ref bad --ref-number 12x
expect_rc "a bad --ref-number exits 2" 2
match_err "a bad --ref-number is explained" "--ref-number must be an integer, got '12x'"
lf create --ref bad --ref-number 99999999999999999999
expect_rc "an out-of-range --ref-number exits 2" 2
lf create --ref bad --label novalue
expect_rc "a --label without = exits 2" 2
match_err "a --label without = is explained" "wants KEY=VALUE"
lf create --ref bad --meta-json 'x={oops'
expect_rc "bad --meta-json exits 2" 2
match_err "bad --meta-json is explained" "not a JSON value"
lf create --ref bad --workflow nope
expect_rc "an unknown workflow exits 2" 2
match_err "an unknown workflow is named" "Unknown workflow: nope"
lf transition "$l1" pr_created pr.opened --meta-json 'pr_number="nine"'
expect_rc "a non-integer pr_number exits 2" 2
check "bad requests append no audit entry" test "$(audit_count)" -eq "$before"
lf list --json
check "bad requests change no record" test "$out" = "$list_before"

# A malformed or unusable store URL: exit 2 / 7, nothing created.
run --policies "$POLICIES" --store "fil:$tmp/typo" create --ref x
expect_rc "a malformed --store URL exits 2" 2
match_err "a malformed --store URL is explained" "unknown store URL 'fil:"
check "a malformed --store URL creates nothing" test ! -e "$tmp/typo"
run --policies "$POLICIES" --store "" show x
expect_rc "an empty --store URL exits 2" 2
run --policies "$POLICIES" --store "file:$tmp" show x
expect_rc "a store that cannot be opened exits 7" 7
run --policies "$POLICIES" --store "file:$tmp" show x --json
expect_json "store unavailable --json: code" code unavailable
run --policies "$tmp/no-policies" --store memory: create --ref x
expect_rc "a missing policy directory exits 2" 2

# A journal with a line that is not an entry refuses to open: exit 7.
printf 'this is not json\n' >"$tmp/garbage"
run --policies "$POLICIES" --store "file:$tmp/garbage" list
expect_rc "a corrupt journal exits 7" 7
match_err "a corrupt journal names its line" 'garbage:1'

# A process stopped while holding the journal's lock (here `flock`): a
# command waits 5 s for it, no longer, then exits 7, changing nothing.
STORE="file:$tmp/held.journal"
lf create --ref acme/app#before-the-lock
mkfifo "$tmp/hold" "$tmp/held"
flock -x "$tmp/held.journal" sh -c "echo held >'$tmp/held'; read x <'$tmp/hold'" &
holder=$!
read x <"$tmp/held"
before=$(cksum <"$tmp/held.journal")
lf create --ref acme/app#held
expect_rc "a command beside a process holding the journal's lock exits 7" 7
match_err "… saying so" 'another process has held its lock for more than 5000 ms'
check "… having written nothing" sh -c "[ \"\$(cksum <'$tmp/held.journal')\" = '$before' ]"
echo go >"$tmp/hold"
wait "$holder"
lf create --ref acme/app#held
expect_rc "… and goes through once the lock is free" 0

done_testing
