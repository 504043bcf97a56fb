#!/bin/sh
# The HTTP API against a real `loopforge serve` on loopback (no tokens):
# every route and error status, strict body validation, idempotency and
# dry runs, the NDJSON audit stream, policies and reload (endpoint and
# SIGHUP), metrics, the JSON log, and a restart on the same journal.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=${HTTP_STORE:-file:$tmp/j}
write_yolo_guard "$POLICIES"

if ! start_server --store "$STORE" --policies "$POLICIES"; then
    not_ok "serve starts and prints its address"
    done_testing
    exit 1
fi
ok "serve prints 'listening on 127.0.0.1:PORT' as its first line"

# ---- probes ----
req GET /healthz
expect_status "GET /healthz is 200" 200
expect_json "… status ok" status ok
run --policies "$POLICIES" lint --json
gen=$(json generation)
req GET /readyz
expect_status "GET /readyz is 200 with the store up" 200
expect_json "… names the loaded generation" generation "$gen"
expect_match "replies carry an X-Request-Id" header "$(header X-Request-Id)" '^[0-9a-f]{8}-[0-9a-f]+$'

# ---- create ----
req POST /v1/records '{"ref":"https://github.com/o/r/issues/1","repo":"o/r","ref_number":1,
  "auto_merge":true,"labels":{"kind":"bug"},"metadata":{"risk_tier":"low"}}'
expect_status "POST /v1/records is 201" 201
expect_match "… with the record" body "$out" '"record_id":"loop-[0-9a-f]{16}"'
id=$(json record_id)
expect_out_header() { if [ "$(header "$2")" = "$3" ]; then ok "$1"; else not_ok "$1" "$2: '$(header "$2")'"; fi; }
expect_out_header "… and a Location header" Location "/v1/records/$id"
expect_json "ref_number is stored as an integer" ref_number 1
expect_json "labels are stored" labels/kind bug
expect_json "metadata is stored" metadata/risk_tier low
expect_json "auto_merge is stored" auto_merge true
expect_json "without tokens the actor is anonymous" transitions/1/actor anonymous

req POST /v1/records '{"ref":"https://github.com/o/r/issues/1"}'
expect_status "a duplicate ref is 409" 409
expect_json "… code duplicate_ref" code duplicate_ref
match_out "… the message names the existing id" "already has record $id"
expect_json "… and the result carries the existing record" record/record_id "$id"

req POST /v1/records '{"ref":"idem-1","idempotency_key":"k-create"}'
expect_status "a create with an idempotency key is 201" 201
idem=$(json record_id)
req POST /v1/records '{"ref":"idem-1","idempotency_key":"k-create"}'
expect_status "… repeated, it is 200 (not 409)" 200
expect_json "… with the first record" record_id "$idem"
expect_out_header "… marked Idempotent-Replayed" Idempotent-Replayed true

req POST /v1/records '{"repo":"o/r"}'
expect_status "create without ref is 400" 400
expect_json "… invalid_request" code invalid_request
expect_json "… saying so" error "field 'ref' is required"
req POST /v1/records '{"ref":"x1","ref_number":"7"}'
expect_json "a string ref_number is refused" error "field 'ref_number' must be an integer or null"
req POST /v1/records '{"ref":"x1","ref_number":1e300}'
expect_status "a ref_number beyond int64 is 400" 400
expect_json "… as not an integer" error "field 'ref_number' must be an integer or null"
req POST /v1/records '{"ref":"x1","refs":"typo"}'
expect_status "an unknown field is 400" 400
expect_json "… naming it" error "unknown field 'refs'"
req POST /v1/records '{"ref":"x1","labels":{"k":1}}'
expect_status "a non-string label is 400" 400
match_out "… from the engine's check" "labels: value of 'k' must be a string"
req POST /v1/records '{"ref":"a",
 "repo":}'
expect_status "malformed JSON is 400" 400
expect_json "… with the parse position" error "malformed JSON at offset 20 (line 2, column 9)"
req POST /v1/records '{"ref":"a"} x'
expect_json "trailing garbage is malformed too" error "malformed JSON at offset 12 (line 1, column 13)"
req POST /v1/records '["ref"]'
expect_json "a body that is not an object is 400" error "the body must be a JSON object"
req POST /v1/records ''
expect_json "an empty body is 400" error "a JSON object body is required"

# ---- get ----
req GET "/v1/records/$id"
expect_status "GET /v1/records/{id} is 200" 200
expect_json "… the record" record_id "$id"
req GET /v1/records/loop-0123456789abcdef
expect_status "an unknown id is 404" 404
expect_json "… code not_found" code not_found
expect_json "… LoopForge's message" error "Record not found: loop-0123456789abcdef"

# ---- transitions ----
TR="/v1/records/$id/transitions"
req POST "$TR" '{"to":"task_queued","trigger":"worker.picked_up"}'
expect_status "a valid transition is 200" 200
expect_json "… success" success true
expect_json "… previous_state" previous_state issue_created
expect_json "… new_state" new_state task_queued
expect_json "… the record follows" record/state task_queued
req POST "$TR" '{"to":"merged","trigger":"yolo.merge"}'
expect_status "an invalid transition is 409" 409
expect_json "… code invalid_transition" code invalid_transition
expect_json "… LoopForge's message" error \
    "Invalid transition: task_queued → merged. Allowed from task_queued: pr_created"
req POST /v1/records/loop-0123456789abcdef/transitions '{"to":"task_queued","trigger":"x"}'
expect_status "a transition of an unknown id is 404" 404
req POST "$TR" '{"to":"pr_created","trigger":"yolo"}'
expect_status "a denied transition is 403" 403
expect_json "… code denied" code denied
expect_json "… the policy's reason" error "Denied by policy no-yolo: no yolo merges"
expect_json "… with the decisions" decisions/1/policy no-yolo
expect_json "… verdict deny" decisions/1/verdict deny
req POST "$TR" '{"to":"pr_created","trigger":"pr.opened","dry_run":true}'
expect_status "a dry run is 200" 200
expect_json "… marked dry_run" dry_run true
req GET "/v1/records/$id"
expect_json "… and changed nothing" state task_queued
v0=$(json version)
req POST "$TR" '{"to":"pr_created","trigger":"pr.opened","idempotency_key":"t-1",
  "metadata":{"pr_url":"https://github.com/o/r/pull/7","pr_number":7}}'
expect_status "a transition with an idempotency key is 200" 200
expect_json "… not a duplicate" duplicate false
expect_json "… pr_number metadata sets the record's field" record/pr_number 7
req POST "$TR" '{"to":"pr_created","trigger":"pr.opened","idempotency_key":"t-1",
  "metadata":{"pr_url":"https://github.com/o/r/pull/7","pr_number":7}}'
expect_status "… repeated, 200 again" 200
expect_json "… marked duplicate" duplicate true
expect_json "… with the first result" new_state pr_created
req GET "/v1/records/$id"
expect_json "… and nothing changed the second time" version "$((v0 + 1))"
req POST "$TR" '{"to":"ci_pending","trigger":"ci.started","actor":"alice"}'
expect_json "without tokens a body may name the actor" record/transitions/4/actor alice
req POST "$TR" '{"trigger":"x"}'
expect_status "a transition without 'to' is 400" 400
expect_json "… saying so" error "fields 'to' and 'trigger' are required"
req POST "$TR" '{"to":"ci_passed","trigger":"x","dry_run":"yes"}'
expect_json "a non-boolean dry_run is 400" error "field 'dry_run' must be true or false"
req POST "$TR" '{"to":"ci_passed","trigger":"x","metadata":[1]}'
expect_json "non-object metadata is 400" error "field 'metadata' must be an object"
req POST "$TR" '{"to":"ci_passed","trigger":"x","meta":{}}'
expect_json "an unknown transition field is 400" error "unknown field 'meta'"

# ---- list ----
req GET /v1/records
expect_status "GET /v1/records is 200" 200
expect_json "… lists every record" 'records/#' 2
expect_json "… newest first" records/1/record_id "$id"
expect_json "… the last page has no cursor" next_cursor null
req GET '/v1/records?state=issue_created'
expect_json "?state= filters" records/1/record_id "$idem"
req GET '/v1/records?repo=o/r'
expect_json "?repo= filters" 'records/#' 1
req GET '/v1/records?limit=1'
expect_json "?limit=1 gives one record" 'records/#' 1
cursor=$(json next_cursor)
req GET "/v1/records?limit=1&cursor=$cursor"
expect_json "… and the cursor the next page" records/1/record_id "$idem"
req GET '/v1/records?limit=0'
expect_status "?limit=0 is 400" 400
req GET '/v1/records?limit=abc'
expect_json "… so is a non-number" error "query parameter 'limit' must be an integer from 1 to 1000, got 'abc'"
req GET '/v1/records?status=closed'
expect_json "an unknown query parameter is 400" error "unknown query parameter 'status'"

# ---- audit: NDJSON, paged with bounded memory ----
# A few hundred entries over one keep-alive connection, so the stream
# spans several pages.
codes=$(bulk_creates 300 bulk- | sort | uniq -c | tr -s ' ')
expect_match "300 creates on one connection are all 201" "codes ($codes)" "$codes" '^ ?300 201$'
req GET /v1/audit
expect_status "GET /v1/audit is 200" 200
expect_out_header "… NDJSON" Content-Type application/x-ndjson
check "… every line is one JSON document" sh -c "$JSON --lines <'$tmp/body'"
n=$(wc -l <"$tmp/body" | tr -d ' ')
cli_n=$("$LOOPFORGE_BIN" --policies "$POLICIES" --store "$STORE" audit | wc -l | tr -d ' ')
if [ "$n" = "$cli_n" ] && [ "$n" -gt 300 ]; then ok "… the whole log ($n entries, as the CLI reads it)"
else not_ok "… the whole log" "http $n lines, cli $cli_n"; fi
seqs=$(sed 's/^{"seq":\([0-9]*\),.*/\1/' "$tmp/body" | awk 'NR != $1 {print "gap at line " NR ": " $1; exit}')
if [ -z "$seqs" ]; then ok "… in seq order with no gap across pages"; else not_ok "… in seq order" "$seqs"; fi
req GET '/v1/audit?after=2&limit=3'
expect_match "?after=2&limit=3 gives entries 3..5" body "$(sed 's/^{"seq":\([0-9]*\),.*/\1/' "$tmp/body" | tr '\n' ' ')" '^3 4 5 $'
req GET '/v1/audit?after=999999'
expect_status "after the end: 200" 200
expect_out "… and an empty body" ""
req GET '/v1/audit?limit=x'
expect_status "a bad limit is 400" 400
req GET '/v1/audit?from=1'
expect_json "an unknown audit parameter is 400" error "unknown query parameter 'from'"
req GET "/v1/records/$id/audit"
expect_status "GET /v1/records/{id}/audit is 200" 200
others=$(grep -vc "\"record_id\":\"$id\"" "$tmp/body")
if [ "$others" = 0 ]; then ok "… only that record's entries"; else not_ok "… only that record's entries" "$others others"; fi
expect_match "… starting with its creation" body "$(head -1 "$tmp/body")" '"kind":"created"'
expect_match "… including the denied attempt" body "$out" '"kind":"denied"'
req GET /v1/records/loop-0123456789abcdef/audit
expect_status "the audit of an unknown record is 404" 404
# A client that hangs up mid-stream costs the server nothing.
curl -sSN "$BASE/v1/audit" 2>/dev/null | head -c 2000 >/dev/null
req GET /healthz
expect_status "a client leaving mid-stream leaves the server serving" 200

# ---- routing errors and limits ----
req GET /v2/nothing
expect_status "an unknown route is 404" 404
expect_json "… in the error shape" code not_found
req PUT "/v1/records/$id"
expect_status "a wrong method is 405" 405
expect_out_header "… with Allow" Allow "GET, DELETE"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$tmp/big"
req POST /v1/records "@$tmp/big"
expect_status "an API body over 1 MiB is 413" 413
expect_json "… payload_too_large" code payload_too_large

# ---- policies and reload ----
req GET /v1/policies
expect_status "GET /v1/policies is 200" 200
expect_json "… the generation" generation "$gen"
expect_json "… the guards" guards/1/name no-yolo
req POST /v1/admin/reload
expect_status "POST /v1/admin/reload is 200" 200
expect_json "… an unchanged set keeps its generation" generation "$gen"
cat >"$POLICIES/guards/always.lua" <<'LUA'
return policy { name = "always", description = "allows", check = function() return allow() end }
LUA
req POST /v1/admin/reload
expect_json "… a changed set gets a new generation" previous_generation "$gen"
gen2=$(json generation)
[ "$gen2" != "$gen" ] && ok "… which differs" || not_ok "… which differs"
printf 'return policy {\n  name = "broken",\n  check = function( \n' >"$POLICIES/guards/broken.lua"
req POST /v1/admin/reload
expect_status "a broken policy set is 422" 422
expect_json "… code invalid_request" code invalid_request
match_out "… with file:line: message" 'broken\.lua:[0-9]+:'
expect_json "… and the old generation keeps serving" generation "$gen2"
req POST "$TR" '{"to":"ci_passed","trigger":"ci.completed"}'
expect_status "… transitions still run under it" 200
rm "$POLICIES/guards/broken.lua" "$POLICIES/guards/always.lua"
kill -HUP "$PID"
# SIGHUP is asynchronous: ask until the generation turns (each ask is a
# full round trip; no sleeping).
i=0
while [ $i -lt 500 ]; do
    i=$((i + 1))
    req GET /v1/policies
    [ "$(json generation)" = "$gen" ] && break
done
expect_json "SIGHUP reloads the policies" generation "$gen"
check "… and logs it" grep -q 'policies reloaded (SIGHUP)' "$SERR"

# ---- metrics ----
req GET /metrics
expect_status "GET /metrics is 200" 200
expect_match "… Prometheus text" header "$(header Content-Type)" '^text/plain; version=0.0.4'
match_out "… requests by method, route and status" \
    'loopforge_http_requests_total\{method="POST",route="/v1/records",status="201"\} 30[0-9]'
match_out "… transitions by outcome" 'loopforge_transitions_total\{code="denied"\} 1'
match_out "… invalid transitions too" 'loopforge_transitions_total\{code="invalid_transition"\} 1'
match_out "… the policy evaluation histogram" 'loopforge_policy_evaluation_seconds_bucket\{le="\+Inf"\} [1-9]'
match_out "… reloads ok" 'loopforge_policy_reloads_total\{result="ok"\} 3'
match_out "… reloads failed" 'loopforge_policy_reloads_total\{result="failed"\} 1'
match_out "… store latency by operation" 'loopforge_store_seconds_count\{op="transition"\} [1-9]'
match_out "… duplicates" 'loopforge_duplicates_total [1-9]'

# ---- the log ----
req GET /healthz '' -H 'X-Request-Id: trace-42'
expect_out_header "a caller's X-Request-Id is echoed" X-Request-Id trace-42
check "every log line is one JSON object" sh -c "$JSON --lines <'$SERR'"
line=$(grep '"request_id":"trace-42"' "$SERR")
out=$line
expect_json "a request's log line has its route" route /healthz
expect_json "… status" status 200
expect_json "… level" level info
expect_match "… duration_ms" log "$line" '"duration_ms":[0-9]+\.[0-9]{3}'
expect_match "… and time" log "$line" '^\{"time":"[0-9-]{10}T[0-9:.]{15}Z"'

# ---- stop, restart on the same journal ----
stop_server TERM
expect_match "SIGTERM exits 0" rc "$STOP_RC" '^0$'
check "… after logging that it stopped" grep -q '"stopped (SIGTERM)' "$SERR"
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve restarts"
req GET "/v1/records/$id"
expect_json "after a restart the records are there" state ci_passed
stop_server INT
expect_match "SIGINT exits 0 too" rc "$STOP_RC" '^0$'

done_testing
