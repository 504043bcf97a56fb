#!/bin/sh
# LoopForge's own service tests (the reference's tests/test_service.py,
# case by case, names kept) through loopforge serve's HTTP API: what a
# thin client over our API gives a LoopForge user. Hooks are the client's
# in LoopForge (callbacks in the caller's process); here the equivalent is
# the result a client acts on.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
start_server --store "memory:" --policies "$POLICIES" || not_ok "serve starts"
create() { req POST /v1/records "$1"; json record_id; }
move() { req POST "/v1/records/$1/transitions" "{\"to\":\"$2\",\"trigger\":\"$3\"${4:+,\"metadata\":$4}}"; }

# test_create_and_get
id=$(create '{"ref":"issue-1","repo":"org/repo"}')
req GET "/v1/records/$id"
expect_json "test_create_and_get: the record is found" ref issue-1
expect_json "test_create_and_get: state issue_created" state issue_created
# test_transition_success
id=$(create '{"ref":"issue-2"}')
move "$id" task_queued worker.picked_up
expect_json "test_transition_success: success" success true
expect_json "test_transition_success: previous_state" previous_state issue_created
expect_json "test_transition_success: new_state" new_state task_queued
expect_json "test_transition_success: the record's state" record/state task_queued
# test_transition_persists
req GET "/v1/records/$id"
expect_json "test_transition_persists" state task_queued
# test_transition_not_found
move loop-0000000000000000 task_queued t
expect_json "test_transition_not_found: success false" success false
match_out "test_transition_not_found: 'not found' in the error" '"error":"Record not found'
# test_transition_invalid
id=$(create '{"ref":"issue-3"}')
move "$id" merged bad
expect_json "test_transition_invalid: success false" success false
match_out "test_transition_invalid: 'Invalid transition' in the error" 'Invalid transition'
# test_transition_with_metadata
move "$id" task_queued worker '{"worker_id":"w-123"}'
expect_json "test_transition_with_metadata: success" success true
expect_json "test_transition_with_metadata: the last transition's metadata" \
    record/transitions/2/metadata/worker_id w-123
# test_full_lifecycle
id=$(create '{"ref":"issue-42","repo":"org/repo","auto_merge":true}')
for step in task_queued:queued pr_created:pr.opened ci_pending:ci.started ci_passed:ci.passed \
            merged:auto.merged closed:issue.closed; do
    move "$id" "${step%%:*}" "${step#*:}"
    expect_json "test_full_lifecycle: ${step%%:*}" success true
done
req GET "/v1/records/$id"
expect_json "test_full_lifecycle: closed" state closed
match_out "test_full_lifecycle: closed_at set" '"closed_at":"[0-9]{4}-'
# test_list_by_state (a fresh store would have 1 and 1; ours has the records above)
a=$(create '{"ref":"a"}'); b=$(create '{"ref":"b"}')
move "$b" task_queued t
req GET "/v1/records?state=issue_created"
match_out "test_list_by_state: record a is issue_created" "\"record_id\":\"$a\""
req GET "/v1/records?state=task_queued"
match_out "test_list_by_state: record b is task_queued" "\"record_id\":\"$b\""
# test_delete
req DELETE "/v1/records/$a"
expect_json "test_delete: deleted" success true
req GET "/v1/records/$a"
expect_status "test_delete: gone" 404
# test_delete_nonexistent
req DELETE /v1/records/loop-0000000000000000
expect_json "test_delete_nonexistent: false" success false
stop_server
done_testing
