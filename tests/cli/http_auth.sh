#!/bin/sh
# Tokens: `loopforge token`, the tokens file, bearer checks (401), roles
# (403), the token's name as the actor, tokens reloaded on SIGHUP, and the
# refusal to listen beyond loopback without tokens.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE="file:$tmp/j"
TOKENS="$tmp/tokens"

# ---- loopforge token ----
run token reader read
expect_rc "token NAME ROLE exits 0" 0
tok_r=$(printf '%s\n' "$out" | sed -n 1p)
line=$(printf '%s\n' "$out" | sed -n 2p)
expect_match "… prints a random token" stdout "$tok_r" '^lf_[0-9a-f]{48}$'
digest=$(printf '%s' "$tok_r" | sha256sum | cut -c1-64)
expect_match "… then its tokens-file line: name, role, sha256 of the token" stdout "$line" \
    "^reader read $digest\$"
printf '# loopforge tokens\n%s\n\n' "$line" >"$TOKENS"
run token writer write --tokens "$TOKENS"
expect_rc "token --tokens FILE exits 0" 0
tok_w=$out
expect_match "… prints only the token" stdout "$tok_w" '^lf_[0-9a-f]{48}$'
check "… and appends its line" grep -q "^writer write $(printf '%s' "$tok_w" | sha256sum | cut -c1-64)\$" "$TOKENS"
run token boss admin --tokens "$tmp/fresh"
tok_a=$out
expect_match "a new tokens file is created mode 600" mode "$(stat -c %a "$tmp/fresh")" '^600$'
cat "$tmp/fresh" >>"$TOKENS"
run token writer read --tokens "$TOKENS"
expect_rc "a name already in the file exits 6" 6
run token 'git:hub' read
expect_rc "a name with ':' is refused (actors like github:x stay unforgeable)" 2
run token someone root
expect_rc "an unknown role is refused" 2
match_err "… naming the roles" 'read, write or admin'
check "the tokens file holds no token in clear" sh -c "! grep -q -e '$tok_r' -e '$tok_w' -e '$tok_a' '$TOKENS'"

# ---- bad tokens files ----
printf 'reader read abc\n' >"$tmp/badtokens"
run serve --listen 127.0.0.1:0 --store "$STORE" --policies "$POLICIES" --tokens "$tmp/badtokens"
expect_rc "a malformed tokens file stops serve (exit 2)" 2
expect_err "… naming file:line" "loopforge serve: $tmp/badtokens:1: digest must be 64 hex digits (sha256 of the token)"
run serve --listen 127.0.0.1:0 --store "$STORE" --policies "$POLICIES" --tokens "$tmp/none"
expect_rc "a missing tokens file stops serve" 2

# ---- loopback only without tokens ----
run serve --listen 0.0.0.0:0 --store "$STORE" --policies "$POLICIES"
expect_rc "without tokens, a non-loopback address is refused (exit 2)" 2
match_err "… saying why" 'refusing to listen on 0.0.0.0:0 without --tokens'
run serve --listen '[::]:0' --store "$STORE" --policies "$POLICIES"
expect_rc "… IPv6 any too" 2

# ---- bearer checks ----
start_server --store "$STORE" --policies "$POLICIES" --tokens "$TOKENS" ||
    not_ok "serve starts with tokens"
AUTH=
req GET /v1/records
expect_status "no token: 401" 401
expect_json "… code unauthorized" code unauthorized
expect_match "… with WWW-Authenticate" header "$(header WWW-Authenticate)" '^Bearer'
AUTH="Bearer lf_000000000000000000000000000000000000000000000000"
req GET /v1/records
expect_status "an unknown token: 401" 401
AUTH="Basic $(printf 'a:b' | base64)"
req GET /v1/records
expect_status "another scheme: 401" 401
AUTH=
req GET /healthz
expect_status "/healthz needs no token" 200
req GET /readyz
expect_status "/readyz needs no token" 200
req GET /metrics
expect_status "/metrics needs one (read)" 401

# ---- roles ----
AUTH="Bearer $tok_r"
req GET /v1/records
expect_status "read: GET /v1/records" 200
req GET /metrics
expect_status "read: GET /metrics" 200
req GET /v1/policies
expect_status "read: GET /v1/policies" 200
req POST /v1/records '{"ref":"by-reader"}'
expect_status "read: POST /v1/records is 403" 403
expect_json "… code forbidden" code forbidden
expect_json "… saying which role it needs" error \
    "token 'reader' has role read; POST /v1/records needs write"
AUTH="bearer $tok_w"
req POST /v1/records '{"ref":"by-writer"}'
expect_status "write (scheme in any case): POST /v1/records" 201
expect_json "the token's name is the actor" transitions/1/actor writer
id=$(json record_id)
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"picked"}'
expect_json "… on transitions too" record/transitions/2/actor writer
req POST "/v1/records/$id/transitions" '{"to":"pr_created","trigger":"x","actor":"mallory"}'
expect_status "with tokens a body cannot claim another actor" 400
req POST /v1/admin/reload
expect_status "write: POST /v1/admin/reload is 403" 403
AUTH="Bearer $tok_a"
req POST /v1/admin/reload
expect_status "admin: POST /v1/admin/reload" 200
req GET "/v1/records/$id/audit"
expect_match "the audit trail names the token" audit "$(sed -n 2p "$tmp/body")" '"actor":"writer"'
AUTH="Bearer $tok_r"
req POST /v1/webhooks/github '{}'
expect_status "the webhook route takes no bearer token (off here: 404)" 404

# ---- tokens reload on SIGHUP ----
"$LOOPFORGE_BIN" token late read --tokens "$TOKENS" >"$tmp/late" 2>/dev/null
AUTH="Bearer $(cat "$tmp/late")"
req GET /v1/records
expect_status "a token added to the file is unknown before a reload" 401
kill -HUP "$PID"
i=0
while [ $i -lt 500 ] && [ "$status" != 200 ]; do i=$((i + 1)); req GET /v1/records; done
expect_status "… and admitted after SIGHUP" 200
printf 'garbage\n' >>"$TOKENS"
kill -HUP "$PID"
i=0
while [ $i -lt 500 ] && ! grep -q 'tokens not reloaded' "$SERR"; do i=$((i + 1)); req GET /healthz; done
check "a broken tokens file is not loaded on SIGHUP (logged)" grep -q 'tokens not reloaded, the old ones stay' "$SERR"
req GET /v1/records
expect_status "… and the old tokens keep working" 200
stop_server
expect_match "serve with tokens stops with 0" rc "$STOP_RC" '^0$'

# ---- with tokens, any address ----
sed -i '$d' "$TOKENS"
LISTEN=0.0.0.0:0 start_server --store "$STORE" --policies "$POLICIES" --tokens "$TOKENS"
expect_match "with tokens, 0.0.0.0 is allowed" stdout "$LISTENING" '^listening on 0\.0\.0\.0:[0-9]+$'
AUTH="Bearer $tok_r"
req GET /v1/records
expect_status "… and serves" 200
stop_server
expect_match "… and stops with 0" rc "$STOP_RC" '^0$'

done_testing
