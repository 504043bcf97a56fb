#!/bin/sh
# walkthrough.sh -- what `make run` runs: a guided walk of one record
# through LoopForge's lifecycle on the embedded journal store.
#
#   sh contrib/walkthrough.sh PATH-TO-LOOPFORGE
#
# Every command is printed before it runs, exactly as you would type it.
# The store is the default, file:./var/loopforge.journal (or
# $LOOPFORGE_STORE); each run adds a new record, so it can run again and
# again and the journal simply grows.
set -u
LF=${1:?usage: sh contrib/walkthrough.sh PATH-TO-LOOPFORGE}
case $LF in */*) ;; *) LF=./$LF ;; esac

say() { printf '\n# %s\n' "$*"; }
show_cmd() { printf '$ loopforge %s\n' "$*"; }
# step ARGS...: print, run, stop the walk if it fails.
step() {
    show_cmd "$@"
    "$LF" "$@" || { echo "walkthrough: 'loopforge $*' failed (exit $?)" >&2; exit 1; }
}

store=${LOOPFORGE_STORE:-file:./var/loopforge.journal}
echo "loopforge walkthrough: one issue from creation to close, on $store"

# A fresh issue number per run: the journal refuses a second record for a
# ref it already has (a redelivered "issue opened" must not fork a record).
n=$(( $("$LF" audit 2>/dev/null | grep -c '"kind":"created"') + 1 ))
ref="https://github.com/example/app/issues/$n"

say "An issue is opened: create its record (prints the new id). --auto-merge lets it merge once CI passes."
show_cmd create --ref "$ref" --repo example/app --ref-number "$n" --label kind=bug --auto-merge
id=$("$LF" create --ref "$ref" --repo example/app --ref-number "$n" --label kind=bug --auto-merge) ||
    { echo "walkthrough: create failed" >&2; exit 1; }
echo "$id"

say "A worker picks the task up."
step transition "$id" task_queued worker.picked_up --actor worker-7

say "Skipping ahead is refused with LoopForge's message (exit 4), and nothing changes."
show_cmd transition "$id" merged yolo
"$LF" transition "$id" merged yolo 2>&1   # the message goes to stderr
rc=$?
echo "(exit $rc)"
[ "$rc" -eq 4 ] || { echo "walkthrough: expected exit 4, got $rc" >&2; exit 1; }

say "The rest of the happy path: PR, CI, merge, close."
step transition "$id" pr_created pr.opened --actor worker-7 \
    --meta "pr_url=https://github.com/example/app/pull/$n" --meta-json "pr_number=$n"
step transition "$id" ci_pending ci.started --actor github
step transition "$id" ci_passed ci.completed --actor github
step transition "$id" merged auto.merged --actor loopforge
step transition "$id" closed issue.closed --actor github

say "The record: LoopForge's fields, its full history, and who did what."
step show "$id"

say "Its audit trail: one hash-chained entry per change (NDJSON)."
step audit "$id"

say "The whole log still verifies: any edited, deleted, inserted or reordered entry would fail here."
step audit --verify

say "Recently closed records."
step list --state closed --limit 5
