#!/bin/sh
# loopforge import and POST /v1/import (issue 15 item 8), on dumps the
# reference LoopForge package made itself (tests/fixtures/loopforge, see
# generate.py there): every record with its id, state, history and
# original timestamps; every imported entry marked; duplicates, histories
# the workflow does not allow and bad timestamps refused, per record, and
# --dry-run writing nothing.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE="file:$tmp/j"
LF="$ROOT/tests/fixtures/loopforge"
# variant ID N EDIT: one.json as record loop-ID of issue N (neither taken),
# with EDIT (a sed script) applied.
variant() {
    sed 's/"record_id":"loop-[0-9a-f]*"/"record_id":"loop-'"$1"'"/; s/acme\/app\/issues\/101/acme\/app\/issues\/'"$2"'/g;'" $3" "$LF/one.json"
}
ids=$(sed -n 's/^    "record_id": "\(loop-[0-9a-f]*\)",$/\1/p' "$LF/records.json")
first=$(printf '%s\n' "$ids" | head -1)

lf import "$LF/records.json" --dry-run
expect_rc "import --dry-run" 0
match_out "… says what it would import" "^would import $first \\(https://github.com/acme/app/issues/101, state closed\\)"
check "… and writes nothing" test "$(audit_count)" -eq 0
lf import "$LF/records.json" --actor migrator
expect_rc "import of LoopForge's array dump" 0
match_err "… three records" 'import: 3 record\(s\), 0 refused'
lf show "$first" --json
expect_json "the record keeps its id" record_id "$first"
expect_json "… its state" state closed
expect_json "… its pr fields" pr_number 7
expect_json "… its ci_status" ci_status/build success
expect_json "… its labels" labels/team core
expect_json "… its whole history" 'transitions/#' 9
want=$(sed -n '/"trigger": "review.approved"/{n;s/.*"timestamp": "\(.*\)",/\1/p;}' "$LF/records.json" | head -1)
expect_json "… with the original timestamps" transitions/7/timestamp "$want"
expect_json "… and its closed_at" closed_at "$(sed -n 's/.*"closed_at": "\(.*\)"$/\1/p' "$LF/records.json" | head -1)"
lf audit "$first"
match_out "every imported entry is marked: the importing actor" '"actor":"import:migrator"'
match_out "… and the import decision" '"decisions":\[\{"policy":"import","verdict":"allow","reason":"imported from LoopForge by migrator"\}\]'
lf audit --verify
expect_rc "the log still verifies" 0
lf transition "$(printf '%s\n' "$ids" | sed -n 2p)" ci_passed ci.completed
expect_rc "an imported record goes on living" 0
lf import "$LF/one.json"
expect_rc "importing a record again: exit 6" 6
match_err "… refused, naming its id" "Record id already exists: $first"
n=$(audit_count)
sed 's/"record_id":"loop-[0-9a-f]*"/"record_id":"loop-aaaabbbb"/' "$LF/one.json" >other-id.json
lf import other-id.json
expect_rc "another id with a ref that exists: exit 6" 6
match_err "… duplicate ref" 'Duplicate ref'
check "… and nothing written" test "$(audit_count)" -eq "$n"
lf import "$LF/records.ndjson"
expect_rc "NDJSON (model_dump_json per line)" 0
match_err "… two records" 'import: 2 record\(s\), 0 refused'
variant ccccdddd 901 's/"from_state":"task_queued","to_state":"pr_created"/"from_state":"task_queued","to_state":"merged"/' >bad-edge.json
lf import bad-edge.json
expect_rc "a history the workflow does not allow: exit 2" 2
match_err "… says which step" 'transitions\[2\] \(task_queued -> merged\) is not a step of workflow loopforge'
variant eeeeffff 902 's/"timestamp":"\([0-9T:-]*\)\.[0-9]*Z"/"timestamp":"\1Z"/g' >whole-seconds.json
lf import whole-seconds.json
expect_rc "timestamps without fractional seconds (isoformat at .000000)" 0
variant 12121212 903 's/"timestamp":"[^"]*"/"timestamp":"yesterday"/g' >bad-time.json
lf import bad-time.json
expect_rc "a timestamp that is not ISO 8601: exit 2" 2
match_err "… named" "'yesterday' is not an ISO 8601 UTC time"
variant 13131313 906 's/"closed_at":"[^"]*"/"closed_at":"soon"/' >bad-closed.json
lf import bad-closed.json
expect_rc "a closed_at that is not ISO 8601: exit 2, not a record closed at no time" 2
match_err "… named" "closed_at: 'soon' is not an ISO 8601 UTC time"
variant 14141414 907 's/"repo":"[^"]*"/"repo":7/' >repo-number.json
lf import repo-number.json
expect_rc "a repo that is a number: exit 2, not a record without one" 2
match_err "… named" "repo must be a string or null"
# Strings as the front doors take them: a byte that is not UTF-8 would
# make a line an outside JSON reader refuses, and a \u0000 would be cut.
n=$(audit_count)
variant 34343434 904 's/"trigger":"review.approved"/"trigger":"review.appr\x98ved"/' >bad-utf8.json
lf import bad-utf8.json
expect_rc "a string that is not UTF-8: exit 2" 2
match_err "… says where" 'import loop-34343434: transitions\[[0-9]*\]\.trigger: not valid UTF-8'
variant 35353535 905 's/"labels":{/"labels":{"nul":"a\\u0000b",/' >nul.json
lf import nul.json
expect_rc "a \\u0000 in a string: exit 2" 2
match_err "… says where" 'import loop-35353535: labels\.nul: contains a NUL character'
check "… and neither wrote anything" test "$(audit_count)" -eq "$n"

# ---- many records at once (lf_engine_import_all) ----
# 151 records, long ones (9 entries) between short ones (1), so later
# records finish first; and two pairs in one window: line 11 has line
# 10's ref, line 21 line 20's id -- the first of each wins, as one after
# the other. Then line 151 has line 3's ref.
STORE="file:$tmp/many"
short=$(sed -n 2p "$LF/records.ndjson")
i=0
while [ $i -lt 151 ]; do
    i=$((i + 1))
    id=$(printf 'loop-%08x' $((0x10000 + i))) ref=$i
    [ $i = 11 ] && ref=10
    [ $i = 21 ] && id=$(printf 'loop-%08x' $((0x10000 + 20)))
    [ $i = 151 ] && ref=3
    if [ $((i % 2)) = 1 ]; then line=$(cat "$LF/one.json"); else line=$short; fi
    printf '%s\n' "$line" |
        sed "s/\"record_id\":\"loop-[0-9a-f]*\"/\"record_id\":\"$id\"/; s/acme\/[a-z]*\/issues\/[0-9]*/many\/x\/issues\/$ref/g"
done >many.ndjson
lf import many.ndjson
expect_rc "151 records in one file, three refused: exit 6" 6
match_err "… counted" 'import: 148 record\(s\), 3 refused'
want=$(sed 's/^{"record_id":"\(loop-[0-9a-f]*\)".*/\1/' many.ndjson | sed '11d;21d;151d' | tr '\n' ' ')
got=$(printf '%s\n' "$out" | sed 's/^imported \(loop-[0-9a-f]*\) .*/\1/' | tr '\n' ' ')
check "… one line each, in the file's order, though short ones finish first" test "$got" = "$want"
match_err "… the first of a ref wins" "Duplicate ref: https://github.com/many/x/issues/10 already has record $(printf 'loop-%08x' $((0x10000 + 10)))"
match_err "… and the first of an id" "Record id already exists: $(printf 'loop-%08x' $((0x10000 + 20)))"
lf audit
runs=$(printf '%s\n' "$out" | sed -n 's/.*"record_id":"\(loop-[0-9a-f]*\)".*/\1/p' | uniq | wc -l)
check "… many in flight at once: the log interleaves their entries ($runs runs for 148 records)" test "$runs" -gt 148
lf audit --verify
expect_rc "… and still verifies" 0

# ---- an import that stopped half-way goes on ----
# A record whose first entries are in (an import stopped between them:
# 64 are in flight at once) is finished by the next import of it; one
# that has moved here since, or whose history differs, is refused.
STORE="file:$tmp/resume"
full=$(sed -n 1p "$LF/records.ndjson")
rid=$(printf '%s' "$full" | sed 's/^{"record_id":"\(loop-[0-9a-f]*\)".*/\1/')
printf '%s\n' "$full" | sed 's/,{"from_state":"issue_created","to_state":"task_queued"[^}]*"metadata":{}}//;
    s/"state":"task_queued"/"state":"issue_created"/' >half.ndjson
lf import half.ndjson
expect_rc "the first entry of a record in" 0
lf import "$LF/records.ndjson" --dry-run
match_out "… --dry-run says it would finish it" "^would import $rid \\(.*, state task_queued\\)"
lf import "$LF/records.ndjson"
expect_rc "importing the whole record finishes it" 0
lf show "$rid" --json
expect_json "… its state" state task_queued
expect_json "… its whole history, once" 'transitions/#' 2
lf import "$LF/records.ndjson"
expect_rc "… and again: the record exists, refused" 6
STORE="file:$tmp/twice"
printf '%s\n%s\n' "$full" "$full" >twice.ndjson
lf import twice.ndjson
expect_rc "a file with one record twice: exit 6" 6
match_out "… the first imported" "^imported $rid "
match_err "… the second refused, not taken for a half-done import" "^refused: Record id already exists: $rid"
lf show "$rid" --json
expect_json "… the history once" 'transitions/#' 2
STORE="file:$tmp/moved"
lf import half.ndjson
lf transition "$rid" task_queued picked --actor dev
lf import "$LF/records.ndjson"
match_err "a half-imported record that moved here since is refused" "Record id already exists: $rid"
# Another record with the id of one half imported: its first entry is not
# the one in (here its labels, then its first move's metadata), so the
# import would make a record that is neither -- refused, as a dry run says.
for what in labels metadata; do
    STORE="file:$tmp/other-$what"
    lf import half.ndjson
    n=$(audit_count)
    case $what in
    labels) printf '%s\n' "$full" | sed 's/"labels":{}/"labels":{"team":"other"}/' >other.ndjson ;;
    metadata) printf '%s\n' "$full" | sed 's/"metadata":{"ref":/"metadata":{"note":"other","ref":/' >other.ndjson ;;
    esac
    lf import other.ndjson --dry-run
    expect_rc "the id of a half-imported record, another $what: --dry-run exit 6" 6
    match_err "… says the id is taken" "Record id already exists: $rid"
    lf import other.ndjson
    expect_rc "… and the import exit 6" 6
    check "… writing nothing" test "$(audit_count)" -eq "$n"
done
lf audit --verify
expect_rc "… and the log verifies" 0

# ---- over HTTP (admin) ----
start_server --store "file:$tmp/h" --policies "$POLICIES" || not_ok "serve starts"
req POST "/v1/import?dry_run=true" "@$LF/records.json"
expect_status "POST /v1/import?dry_run=true: 200" 200
expect_json "… would import three" imported 3
req GET "/v1/records/$first"
expect_status "… and wrote nothing" 404
req POST /v1/import "@$LF/records.json"
expect_json "POST /v1/import: three imported" imported 3
expect_json "… each result is a result object" results/1/record/record_id "$first"
req POST /v1/import "@$LF/one.json"
expect_json "… one object again: refused" refused 1
expect_json "… conflict" results/1/code conflict
req POST /v1/import '"a string"'
expect_status "a body that is no record: 400" 400
stop_server
done_testing
