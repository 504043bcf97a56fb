#!/bin/sh
# corpus.sh OUT LOOPFORGE -- the fuzz targets' seed corpora, made from the
# repository's own material (nothing of it is committed):
#   route, text   every payload in tests/fixtures/github (route: the event
#                 name, a newline, the payload)
#   entry, pack   each line of a journal that LOOPFORGE writes here through
#                 a record's whole lifecycle, a denial and a deletion
#   record        that journal whole, and each record's JSON
#   journal       that journal whole, cut mid-line (a torn tail) and with a
#                 line changed in the middle (corruption)
#   import        the Python LoopForge's records (tests/fixtures/loopforge),
#                 each alone
# Run from the repository root.
set -e
out=$1 lf=$2
mkdir -p "$out/route" "$out/text" "$out/entry" "$out/pack" "$out/record" "$out/import" "$out/journal"
for f in tests/fixtures/github/*.json; do
    name=$(basename "$f" .json)
    { printf '%s\n' "${name%%.*}"; cat "$f"; } >"$out/route/$name"
    cp "$f" "$out/text/$name"
done
cp tests/fixtures/loopforge/one.json "$out/import/one"
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" >"$out/import/ndjson-$n"
done <tests/fixtures/loopforge/records.ndjson
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
j="file:$tmp/j"
run() { "$lf" --policies policies --store "$j" "$@" >/dev/null 2>&1 || true; }
id=$("$lf" --policies policies --store "$j" create --ref seed-1 --repo o/r --label kind=bug \
     --meta title=seed 2>/dev/null)
for step in "task_queued worker.picked_up" "pr_created pr.opened --meta pr_number=7" \
            "ci_pending ci.started" "ci_failed ci.failed" "ci_pending ci.retry" \
            "ci_passed ci.passed" "awaiting_review review.required" \
            "merged pr.merged --meta risk_tier=high" "approved review.approved --actor bob" \
            "merged pr.merged" "closed issue.closed"; do
    # shellcheck disable=SC2086
    run transition "$id" $step
done
id2=$("$lf" --policies policies --store "$j" create --ref seed-2 2>/dev/null)
run delete "$id2"
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" >"$out/entry/line-$n"
    printf '%s' "$line" >"$out/pack/line-$n"
done <"$tmp/j"
cp "$tmp/j" "$out/record/journal"
cp "$tmp/j" "$out/journal/whole"
head -c $(($(wc -c <"$tmp/j") - 100)) "$tmp/j" >"$out/journal/torn"
sed '3s/"version":2/"version":9/' "$tmp/j" >"$out/journal/changed"
"$lf" --policies policies --store "$j" show "$id" --json >"$out/record/record.json" 2>/dev/null || true
