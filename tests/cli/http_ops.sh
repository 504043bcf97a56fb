#!/bin/sh
# Operating `loopforge serve`: configuration from the environment, bad
# options, the ceiling mode, log levels; reload under load with no failed
# request; SIGTERM under load with no acknowledged transition lost.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=${HTTP_STORE:-file:$tmp/j}

# ---- options ----
run serve --listen nonsense --store "$STORE" --policies "$POLICIES"
expect_rc "a malformed --listen exits 2" 2
expect_err "… saying what it wants" \
    "loopforge serve: --listen nonsense: expected ADDR:PORT, e.g. 127.0.0.1:8080"
run serve --listen example.com:80 --store "$STORE" --policies "$POLICIES"
expect_rc "a host name is refused (numeric or localhost only)" 2
run serve --timeout 0
expect_rc "--timeout 0 is a usage error" 2
run serve --log-level loud
expect_rc "an unknown --log-level is a usage error" 2
run serve extra
expect_rc "a positional argument is a usage error" 2
run serve --help
expect_rc "serve --help exits 0" 0
match_out "… and documents the environment" 'LOOPFORGE_WEBHOOK_SECRET_FILE'
run serve --listen 127.0.0.1:0 --store "$STORE" --policies "$POLICIES" \
    --webhook-secret-file "$tmp/nosecret"
expect_rc "a missing secret file exits 2" 2
: >"$tmp/empty"
run serve --listen 127.0.0.1:0 --store "$STORE" --policies "$POLICIES" --webhook-secret-file "$tmp/empty"
expect_match "… an empty one too" err "$err" 'the webhook secret is empty'

# ---- everything from the environment ----
"$LOOPFORGE_BIN" token env-admin admin --tokens "$tmp/tokens" >"$tmp/tok" 2>/dev/null
printf 's3cret\n' >"$tmp/secret"
export LOOPFORGE_LISTEN=127.0.0.1:0 LOOPFORGE_STORE="file:$tmp/env.journal" \
    LOOPFORGE_POLICIES="$POLICIES" LOOPFORGE_TOKENS="$tmp/tokens" \
    LOOPFORGE_WEBHOOK_SECRET_FILE="$tmp/secret"
LISTEN=env start_server || not_ok "serve starts from the environment alone"
expect_match "LOOPFORGE_LISTEN sets the address" stdout "$LISTENING" '^listening on 127\.0\.0\.1:[0-9]+$'
req GET /v1/records
expect_status "LOOPFORGE_TOKENS sets the tokens (401 without one)" 401
AUTH="Bearer $(cat "$tmp/tok")"
req POST /v1/records '{"ref":"env-1"}'
expect_status "… and admits its token" 201
check "LOOPFORGE_STORE sets the store" grep -q '"ref":"env-1"' "$tmp/env.journal"
SECRET=s3cret
hook ping "$FIX/ping.json" env-ping
expect_status "LOOPFORGE_WEBHOOK_SECRET_FILE sets the secret" 200
# A second server on the same port cannot listen.
run serve --listen "127.0.0.1:$PORT"
expect_rc "a port in use exits 7" 7
match_err "… saying so" "cannot listen on 127.0.0.1:$PORT"
stop_server
expect_match "… and it stops with 0" rc "$STOP_RC" '^0$'
unset LOOPFORGE_LISTEN LOOPFORGE_STORE LOOPFORGE_POLICIES LOOPFORGE_TOKENS \
    LOOPFORGE_WEBHOOK_SECRET_FILE
AUTH=

# ---- the ceiling (bench) and log levels ----
start_server --ceiling || not_ok "serve --ceiling starts"
req POST /v1/records/x/transitions '{"to":"a"}'
expect_status "--ceiling answers everything 200" 200
expect_out '… with a fixed body' '{"success":true}'
stop_server
expect_match "… and stops with 0" rc "$STOP_RC" '^0$'
start_server --store "$STORE" --policies "$POLICIES" --log-level warn || not_ok "serve starts"
req GET /healthz
stop_server
check "--log-level warn drops the request lines" sh -c "! grep -q '\"msg\":\"request\"' '$SERR'"

# ---- load: workers, each cycling its own record through CI retries ----

# ---- reload under load ----
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve starts"
W=4
mkdir -p "$POLICIES/guards"
: >"$tmp/reload.codes"
pids=
for w in $(seq $W); do
    rid=$(load_record "r$w")
    load_worker "r$w" "$rid" 120 "$tmp/load.r$w" &
    pids="$pids $!"
done
# Reload for as long as any worker runs, switching between two policy
# sets (with and without a guard), by the endpoint and by SIGHUP.
reloads=0
alive() { for p in $pids; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while alive; do
    reloads=$((reloads + 1))
    if [ $((reloads % 2)) = 1 ]; then
        printf 'return policy { name = "allow-all", check = function() return allow() end }\n' \
            >"$POLICIES/guards/allow-all.lua"
    else
        rm -f "$POLICIES/guards/allow-all.lua"
    fi
    if [ $((reloads % 3)) = 0 ]; then
        kill -HUP "$PID"
        echo "200 sighup" >>"$tmp/reload.codes"
    else
        req POST /v1/admin/reload
        echo "$status" >>"$tmp/reload.codes"
    fi
done
wait $pids
total=$(cat "$tmp"/load.r* | wc -l | tr -d ' ')
bad=$(cat "$tmp"/load.r* | grep -vc '^200 ')
if [ "$total" = $((W * 120)) ] && [ "$bad" = 0 ]; then
    ok "reload under load: all $total transitions succeeded"
else
    not_ok "reload under load: all transitions succeeded" "$total requests, $bad not 200" \
        "$(grep -v '^200 ' "$tmp"/load.r* | head -5)"
fi
if [ "$reloads" -ge 2 ] && ! grep -qv '^200' "$tmp/reload.codes"; then
    ok "… during $reloads reloads, every one 200"
else
    not_ok "… during several reloads, every one 200" "$reloads reloads" "$(sort "$tmp/reload.codes" | uniq -c)"
fi
req GET /v1/audit
awk '/"trigger":"load"/ { if (!first) first = NR; last = NR }
     /"kind":"policy_loaded"/ { pl[NR] = 1 }
     END { for (n in pl) if (n + 0 > first && n + 0 < last) inside++; print inside + 0 }' \
    "$tmp/body" >"$tmp/inside"
expect_match "… which the audit log shows interleaved with the load" "reloads inside" \
    "$(cat "$tmp/inside")" '^[1-9]'
stop_server
expect_match "… and the server stops with 0" rc "$STOP_RC" '^0$'

# ---- SIGTERM under load: no acknowledged transition lost ----
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve starts"
pids=
for w in $(seq $W); do
    rid=$(load_record "t$w")
    if [ "$w" = 1 ]; then
        load_worker "t$w" "$rid" 100000 "$tmp/term.t$w" 25 TERM &
    else
        load_worker "t$w" "$rid" 100000 "$tmp/term.t$w" &
    fi
    pids="$pids $!"
done
wait $pids
wait "$PID"
rc=$?
PID=
exec 9<&-
expect_match "SIGTERM under load: serve exits 0" rc "$rc" '^0$'
check "… without a sanitizer report" sh -c "! grep -q -e Sanitizer -e 'runtime error' '$SERR'"
check "… after draining" grep -q 'SIGTERM: draining' "$SERR"
grep -h '^200 ' "$tmp"/term.t* | cut -d' ' -f2 | sort >"$tmp/acked"
others=$(grep -hv -e '^200 ' -e '^000 ' -e '^503 ' "$tmp"/term.t* | head -3)
[ -z "$others" ] && ok "… every request was 200, 503 (draining) or refused" ||
    not_ok "… every request was 200, 503 or refused" "$others"
acked=$(wc -l <"$tmp/acked" | tr -d ' ')
[ "$acked" -ge 25 ] && ok "… $acked transitions were acknowledged" || not_ok "… at least 25 acknowledged" "$acked"
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve restarts"
req GET /v1/audit
grep -o '"idempotency_key":"t[0-9]*-[0-9]*"' "$tmp/body" | cut -d'"' -f4 | sort >"$tmp/kept"
missing=$(comm -23 "$tmp/acked" "$tmp/kept")
[ -z "$missing" ] && ok "… and after a restart every acknowledged one is in the log" ||
    not_ok "… every acknowledged transition is in the log" "missing: $(echo $missing | head -c 300)"
stop_server
run --store "$STORE" audit --verify
expect_rc "… which verifies" 0

# ---- another process holding the journal's lock ----
# A CLI command mid-commit on serve's journal -- here `flock`, standing in
# for one stopped while it held the lock -- must not stop serve: what needs
# the lock waits for it off the event loop; everything else is answered
# meanwhile, and the waiting create goes through once the lock is free.
LJ="$tmp/locked.journal"
start_server --store "file:$LJ" --policies "$POLICIES" || not_ok "serve starts on a journal"
req POST /v1/records '{"ref":"acme/app#lock-1"}'
expect_match "a record to read while the lock is held" status "$status" '^201$'
lid=$(printf '%s' "$out" | sed -n 's/^{"record_id":"\([^"]*\)".*/\1/p')
mkfifo "$tmp/hold" "$tmp/held"
flock -x "$LJ" sh -c "echo held >'$tmp/held'; read x <'$tmp/hold'" &
holder=$!
read x <"$tmp/held"
curl -sS --max-time 60 -o "$tmp/parked.body" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary '{"ref":"acme/app#lock-2"}' \
    "$BASE/v1/records" >"$tmp/parked.code" 2>&1 &
parked=$!
seen=no n=0     # until serve holds the create: in flight beside this metrics request
while [ $n -lt 20000 ]; do
    n=$((n + 1))
    req GET /metrics
    [ "$status" = 200 ] || break
    printf '%s\n' "$out" | grep -q '^loopforge_http_inflight_requests 2$' && { seen=yes; break; }
done
expect_match "serve holds the create while another process holds the lock" seen "$seen" '^yes$'
req GET "/v1/records/$lid"
expect_match "… and answers a read meanwhile (nothing new to fold)" status "$status" '^200$'
req GET /healthz
expect_match "… and its health" status "$status" '^200$'
check "… the create still waits" sh -c "[ ! -s '$tmp/parked.code' ]"
echo go >"$tmp/hold"
wait "$holder"
wait "$parked"
expect_match "… and goes through once the lock is free" code "$(cat "$tmp/parked.code")" '^201$'
check "… written to the journal" grep -q '"ref":"acme/app#lock-2"' "$LJ"
req GET /metrics
match_out "… counted as a wait for the lock" '^loopforge_store_lock_waits_total [1-9]'
match_out "… and not as one that gave up" '^loopforge_store_lock_timeouts_total 0$'
stop_server
expect_match "… serve stops cleanly after" rc "$STOP_RC" '^0$'

done_testing
