#!/bin/sh
# What enters the engine is valid text: invalid UTF-8, an embedded NUL
# (escaped or raw) and raw control characters are refused with 400
# invalid_request naming the field, on the API, the webhook intake and
# the CLI, and nothing is written; a signed webhook whose field has the
# wrong type is a 4xx naming the field, with no internal address in it.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=file:$tmp/j
start_server --store "$STORE" --policies "$SHIPPED" || not_ok "serve starts"
req POST /v1/records '{"ref":"before"}'
id=$(json record_id)
n0=$(audit_count)

# send BODY-FILE: POST /v1/records with the file's exact bytes
send() { req POST "${2:-/v1/records}" "@$1"; }

printf '{"ref":"\377\376"}' >"$tmp/b1"
send "$tmp/b1"
expect_status "a ref that is not UTF-8: 400" 400
expect_json "… invalid_request" code invalid_request
expect_json "… naming the field" error "ref: not valid UTF-8"
printf '{"ref":"abc\\u0000def"}' >"$tmp/b2"
send "$tmp/b2"
expect_status "an escaped NUL in the ref: 400" 400
expect_json "… saying so" error 'ref: contains a NUL character (\u0000)'
printf '{"ref":"abc\000def"}' >"$tmp/b3"
send "$tmp/b3"
expect_status "a raw NUL inside a JSON string: 400" 400
expect_json "… saying so" error "ref: contains a NUL character"
printf '{"ref":"x","metadata":{"notes":["fine","b\001"]}}' >"$tmp/b4"
send "$tmp/b4"
expect_status "a raw control character deep in metadata: 400" 400
expect_json "… naming the path" error "metadata.notes[1]: contains a raw control character (escape it)"
printf '{"ref":"x","labels":{"\300\257":"l"}}' >"$tmp/b5"
send "$tmp/b5"
expect_json "an overlong UTF-8 key: named as a key" error "labels (a key): not valid UTF-8"
printf '{"to":"task_queued","trigger":"t","metadata":{"why":"\355\240\200"}}' >"$tmp/b6"
send "$tmp/b6" "/v1/records/$id/transitions"
expect_status "a surrogate in a transition's metadata: 400" 400
expect_json "… named" error "metadata.why: not valid UTF-8"
printf '{"ref":"twice","metadata":{"a":1},"metadata":{"b":2}}' >"$tmp/b7"
send "$tmp/b7"
expect_status "a field given twice: 400" 400
expect_json "… naming it" error "field 'metadata' appears twice"
expect_match "none of them wrote anything" audit "$(audit_count)" "^$n0\$"
req GET /v1/records
check "… and the list is valid UTF-8 for strict clients" sh -c "printf '%s' \"\$1\" | iconv -f UTF-8 -t UTF-8 >/dev/null" - "$out"
printf '{"ref":"caf\303\251 \342\202\254 \360\237\230\200"}' >"$tmp/ok"
send "$tmp/ok"
expect_status "valid UTF-8 beyond ASCII is fine: 201" 201
expect_json "… stored as sent" ref "café € 😀"

# ---- the CLI ----
run --policies "$SHIPPED" --store "$STORE" create --ref "$(printf 'bad\377')"
expect_rc "loopforge create with a ref that is not UTF-8: exit 2" 2
match_err "… naming the field" 'ref: not valid UTF-8'
run --policies "$SHIPPED" --store "$STORE" transition "$id" task_queued t --meta "note=$(printf '\377')"
expect_rc "--meta with a value that is not UTF-8: exit 2" 2
match_err "… naming it" 'metadata.note: not valid UTF-8'
stop_server

# ---- webhooks ----
printf 'whsec' >"$tmp/secret"
SECRET=whsec
start_server --store "$STORE" --policies "$SHIPPED" --webhook-secret-file "$tmp/secret" ||
    not_ok "serve starts with a secret"
sed 's/"title": "[^"]*"/"title": "caf\\u0000e"/' "$FIX/issues.opened.json" >"$tmp/nul.json"
hook issues "$tmp/nul.json" in-1
expect_status "a signed payload with an escaped NUL: 400" 400
expect_json "… naming the field" error 'payload.issue.title: contains a NUL character (\u0000)'
sed 's/"conclusion": "success"/"conclusion": {"nested": true}/' \
    "$FIX/check_suite.completed.success.json" >"$tmp/type.json"
hook check_suite "$tmp/type.json" in-2
expect_status "a signed payload with an object for check_suite.conclusion: 422" 422
expect_json "… code route_error" code route_error
match_out "… naming the field and the type" 'check_suite.conclusion must be a string'
check "… and no internal address leaves the process" sh -c "! printf '%s' \"\$1\" | grep -q '0x[0-9a-f]'" - "$out"
sed 's/"head_sha": "[0-9a-f]*"/"head_sha": 42/' "$FIX/check_suite.completed.success.json" \
    >"$tmp/sha.json"
hook check_suite "$tmp/sha.json" in-3
expect_status "a number for check_suite.head_sha: 422" 422
match_out "… named" 'check_suite.head_sha must be a string'
expect_match "none of the deliveries wrote anything" audit "$(audit_count)" "^$((n0 + 1))\$"
stop_server
done_testing
