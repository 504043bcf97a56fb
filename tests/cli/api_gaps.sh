#!/bin/sh
# Gaps of the API a new user hits (issue: close the API's gaps): DELETE
# over HTTP, lookup by ref, the Idempotency-Key header, --idempotency-key
# on the CLI, and listing an unknown state -- over HTTP and the CLI.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=file:$tmp/j
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve starts"

# ---- lookup by ref ----
req POST /v1/records '{"ref":"https://github.com/o/r/issues/5","repo":"o/r"}'
id=$(json record_id)
req GET "/v1/records?ref=https%3A%2F%2Fgithub.com%2Fo%2Fr%2Fissues%2F5"
expect_status "GET /v1/records?ref=… finds the record by its ref" 200
expect_json "… the record itself" record_id "$id"
req GET "/v1/records?ref=nope"
expect_status "an unknown ref: 404" 404
expect_json "… not_found" code not_found
req GET "/v1/records?ref=x&state=issue_created"
expect_status "ref with other parameters: 400" 400

# ---- Idempotency-Key ----
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"t"}' -H 'Idempotency-Key: k-1'
expect_status "a transition with an Idempotency-Key header" 200
expect_json "… applied" duplicate false
n=$(audit_count)
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"t"}' -H 'Idempotency-Key: k-1'
expect_json "the same key again: the first answer, duplicate" duplicate true
expect_match "… and nothing written" audit "$(audit_count)" "^$n\$"
req POST "/v1/records/$id/transitions" '{"to":"pr_created","trigger":"t","idempotency_key":"a"}' \
    -H 'Idempotency-Key: b'
expect_status "header and body keys that differ: 400" 400
match_out "… saying so" 'differ'
req POST /v1/records '{"ref":"keyed"}' -H 'Idempotency-Key: c-1'
cid=$(json record_id)
req POST /v1/records '{"ref":"keyed"}' -H 'Idempotency-Key: c-1'
expect_status "a create repeated with its key: 200, not a duplicate-ref 409" 200
expect_json "… the same record" record_id "$cid"

# ---- a key is bound to its request ----
req POST /v1/records '{"ref":"other"}'
oid=$(json record_id)
n=$(audit_count)
req POST "/v1/records/$oid/transitions" '{"to":"task_queued","trigger":"t"}' -H 'Idempotency-Key: k-1'
expect_status "the key of a transition reused on another record: 409" 409
expect_json "… code idempotency_mismatch" code idempotency_mismatch
match_out "… naming the first use" "was used for another request \\(seq [0-9]*, record $id\\)"
req POST "/v1/records/$id/transitions" '{"to":"pr_created","trigger":"t"}' -H 'Idempotency-Key: k-1'
expect_status "… reused for another target on the same record: 409" 409
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"t","metadata":{"x":1}}' \
    -H 'Idempotency-Key: k-1'
expect_status "… reused with other metadata: 409" 409
req POST /v1/records '{"ref":"keyed-2"}' -H 'Idempotency-Key: c-1'
expect_status "… a create's key reused for another ref: 409" 409
expect_match "none of them wrote anything" audit "$(audit_count)" "^$n\$"
req GET "/v1/records/$oid"
expect_json "… the other record did not move" state issue_created
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"t"}' -H 'Idempotency-Key: k-1'
expect_json "the first request with its key still answers from its first use" duplicate true

# ---- expected versions (If-Match, expected_version, ETag) ----
req POST /v1/records '{"ref":"versioned"}'
vid=$(json record_id)
req GET "/v1/records/$vid"
expect_match "a record carries its version as its ETag" etag "$(header ETag)" '^"1"$'
n=$(audit_count)
req POST "/v1/records/$vid/transitions" '{"to":"task_queued","trigger":"t"}' -H 'If-Match: "7"'
expect_status "If-Match with another version: 409" 409
expect_json "… conflict" code conflict
match_out "… naming the version it is at" 'expected version 7, found 1'
req POST "/v1/records/$vid/transitions" '{"to":"task_queued","trigger":"t","expected_version":2}'
expect_status "… the same with the body field" 409
expect_match "… and nothing written" audit "$(audit_count)" "^$n\$"
req POST "/v1/records/$vid/transitions" '{"to":"task_queued","trigger":"t","expected_version":1e300}'
expect_status "an expected_version beyond int64: 400" 400
expect_match "… and nothing written" audit "$(audit_count)" "^$n\$"
req POST "/v1/records/$vid/transitions" '{"to":"task_queued","trigger":"t"}' -H 'If-Match: "1"'
expect_status "If-Match with the version it is at: 200" 200
expect_match "… and the reply's ETag is the new version" etag "$(header ETag)" '^"2"$'
req POST "/v1/records/$vid/transitions" '{"to":"pr_created","trigger":"t","expected_version":2}' \
    -H 'If-Match: "3"'
expect_status "header and field that differ: 400" 400
req POST "/v1/records/$vid/transitions" '{"to":"pr_created","trigger":"t"}' -H 'If-Match: *'
expect_status "an If-Match that names no version: 400" 400
req DELETE "/v1/records/$vid" '' -H 'If-Match: "1"'
expect_status "DELETE with a stale If-Match: 409" 409
req GET "/v1/records/$vid"
expect_status "… the record is still there" 200
req DELETE "/v1/records/$vid" '' -H 'If-Match: "2"'
expect_status "DELETE with the current version: 200" 200

# ---- unknown state ----
req GET "/v1/records?state=bogus"
expect_status "listing an unknown state: 400" 400
match_out "… naming the states there are" "Unknown state 'bogus' \\(the workflows have: issue_created"

# ---- DELETE ----
req DELETE "/v1/records/$id"
expect_status "DELETE /v1/records/{id}: 200" 200
expect_json "… success" success true
req GET "/v1/records/$id"
expect_status "… the record is gone" 404
req DELETE "/v1/records/$id"
expect_status "deleting it again: 404" 404
expect_json "… not_found" code not_found
req GET "/v1/records/$id/audit"
match_out "the tombstone is in its audit trail" '"kind":"deleted"'
stop_server

# ---- the CLI ----
run --policies "$POLICIES" --store "$STORE" create --ref cli-keyed --idempotency-key ck-1
expect_rc "create --idempotency-key" 0
first=$out
run --policies "$POLICIES" --store "$STORE" create --ref cli-keyed --idempotency-key ck-1
expect_rc "… repeated: exit 0, not a duplicate ref" 0
expect_out "… the same id" "$first"
run --policies "$POLICIES" --store "$STORE" transition "$first" task_queued t --idempotency-key tk-1 --json
expect_json "transition --idempotency-key" duplicate false
run --policies "$POLICIES" --store "$STORE" transition "$first" task_queued t --idempotency-key tk-1 --json
expect_json "… repeated: duplicate" duplicate true
run --policies "$POLICIES" --store "$STORE" transition "$first" pr_created t --idempotency-key tk-1 --json
expect_rc "… reused for another target: exit 6 (conflict)" 6
expect_json "… code idempotency_mismatch" code idempotency_mismatch
run --policies "$POLICIES" --store "$STORE" transition "$first" pr_created t --expect-version 9
expect_rc "transition --expect-version with another version: exit 6" 6
match_err "… naming the version it is at" 'expected version 9, found 2'
run --policies "$POLICIES" --store "$STORE" transition "$first" pr_created t --expect-version 2
expect_rc "… with the version it is at: exit 0" 0
run --policies "$POLICIES" --store "$STORE" delete "$first" --expect-version 2
expect_rc "delete --expect-version with a stale version: exit 6" 6
run --policies "$POLICIES" --store "$STORE" delete "$first" --expect-version 3
expect_rc "… with the current one: exit 0" 0
run --policies "$POLICIES" --store "$STORE" list --state bogus
expect_rc "list --state bogus: exit 2 (invalid request)" 2
match_err "… naming the states" "Unknown state 'bogus'"
done_testing
