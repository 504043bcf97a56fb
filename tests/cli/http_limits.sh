#!/bin/sh
# Connections that would lock others out, and the end of keep-alive:
#   - clients trickling one header byte at a time (slowloris) fill
#     --max-connections; a new client still gets in (the oldest idle or
#     slow connection makes room), and each trickler is cut once it has
#     not sent a whole request within --timeout, however busy it looks;
#   - on SIGTERM a request sent on an open keep-alive connection is
#     answered 503 with Connection: close, not met by a closed socket.
# The tricklers are bash (/dev/tcp); they pace their own bytes, and the
# test waits on what they report through a fifo, never on a clock.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=memory:

start_server --store "$STORE" --policies "$POLICIES" --timeout 2 --max-connections 4 ||
    not_ok "serve starts with --timeout 2 --max-connections 4"
report=$tmp/report.fifo
mkfifo "$report"
exec 8<>"$report"
# trickle N: one connection sending a request a byte every 0.3 s; says
# "up N" once connected and "cut N S" when the server ended it after S
# seconds (or "alive N" if it never did, within 30 s).
trickle() {
    bash -c '
        trap "" PIPE
        exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' || exit 1
        echo "up $1" >&8
        start=$SECONDS
        req="GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        i=0
        while [ $((SECONDS - start)) -lt 30 ]; do
            printf "%s" "${req:i:1}" >&3 2>/dev/null || { echo "cut $1 $((SECONDS - start))" >&8; exit 0; }
            i=$(( (i + 1) % ${#req} ))
            read -r -t 0.3 -u 3 line; rc=$?
            if [ $rc -eq 0 ] || [ $rc -eq 1 ]; then echo "cut $1 $((SECONDS - start))" >&8; exit 0; fi
        done
        echo "alive $1" >&8' trickle "$1" &
}
for n in 1 2 3 4; do trickle $n; done
up=0 cut=0 alive=0
while [ $up -lt 4 ] && IFS= read -r line <&8; do
    case $line in up*) up=$((up + 1)) ;; cut*) cut=$((cut + 1)) ;; esac
done
expect_match "four tricklers hold all four connections" up "$up" '^4$'
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$BASE/healthz" 2>&1)
expect_match "a new client still gets in at the cap (200 within 5 s)" healthz "$code" '^200$'
while [ $((cut + alive)) -lt 4 ] && IFS= read -r line <&8; do
    case $line in
    cut*) cut=$((cut + 1)); secs=${line##* } ;;
    alive*) alive=$((alive + 1)) ;;
    esac
    [ "${secs:-0}" -le 5 ] || not_ok "a trickler was cut after $secs s (--timeout 2)"
done
expect_match "every trickler is cut, none survives 30 s" cut "$cut/$alive" '^4/0$'
req GET /metrics
match_out "slow connections are counted" 'loopforge_http_connections_cut_total\{reason="slow"\} [1-9]'
match_out "… and evicted ones" 'loopforge_http_connections_cut_total\{reason="evicted"\} [1-9]'
req GET /healthz
expect_status "the server still answers" 200
stop_server
wait

# ---- replies and metadata stay bounded ----
start_server --store "$STORE" --policies "$POLICIES" --max-history 3 ||
    not_ok "serve starts with --max-history 3"
req POST /v1/records '{"ref":"long-history"}'
id=$(json record_id)
for to in task_queued pr_created ci_pending ci_failed ci_pending; do
    req POST "/v1/records/$id/transitions" "{\"to\":\"$to\",\"trigger\":\"t\"}"
done
expect_json "a transition's reply carries the last 3 transitions" 'record/transitions/#' 3
expect_json "… the newest last" record/transitions/3/to_state ci_pending
expect_json "… and how many there are" record/transitions_total 6
req GET "/v1/records/$id"
expect_json "GET a record: the same" 'transitions/#' 3
expect_json "… transitions_total" transitions_total 6
req GET "/v1/records/$id/audit"
expect_match "the audit route has every entry" audit "$(printf '%s\n' "$out" | grep -c '"seq"')" '^6$'
req GET "/v1/records/$id?history=1"
expect_json "?history=1: the last transition alone" 'transitions/#' 1
expect_json "… the newest" transitions/1/to_state ci_pending
expect_json "… with transitions_total" transitions_total 6
req GET "/v1/records/$id?history=50"
expect_json "?history past --max-history: --max-history" 'transitions/#' 3
req POST "/v1/records/$id/transitions?history=2" '{"to":"ci_failed","trigger":"t"}'
expect_status "a transition with ?history=2 is 200" 200
expect_json "… its record carries 2 transitions" 'record/transitions/#' 2
expect_json "… the one it made last" record/transitions/2/to_state ci_failed
req GET "/v1/records?state=ci_failed&history=1"
expect_json "a list with ?history=1: one transition a record" 'records/1/transitions/#' 1
req GET "/v1/records?ref=long-history&history=2"
expect_json "a lookup by ref takes ?history too" 'transitions/#' 2
req POST "/v1/records?history=1" '{"ref":"created-short"}'
expect_status "a create with ?history=1 is 201" 201
expect_json "… with its one transition" 'transitions/#' 1
for bad in 0 -1 x 1.5 1000001; do
    req POST "/v1/records/$id/transitions?history=$bad" '{"to":"ci_pending","trigger":"t"}'
    expect_status "?history=$bad is 400" 400
    expect_json "… invalid_request" code invalid_request
done
expect_json "… saying what it takes" error "query parameter 'history' must be an integer from 1 to 1000000, got '1000001'"
req GET "/v1/records/$id"
expect_json "… and changed nothing" version 7
req POST /v1/records '{"ref":"short"}'
expect_json "a short history has no transitions_total" transitions_total '<missing>'
big=$(head -c 70000 /dev/zero | tr '\0' x)
printf '{"ref":"big","metadata":{"blob":"%s"}}' "$big" >"$tmp/big.json"
req POST /v1/records "@$tmp/big.json"
expect_status "metadata over 64 KiB: 400" 400
expect_json "… saying the limit" error "metadata: 70011 bytes; the limit is 65536"
stop_server

# ---- SIGTERM and keep-alive ----
start_server --store "$STORE" --policies "$POLICIES" || not_ok "serve starts"
ka=$tmp/ka.fifo
mkfifo "$ka"
# Three requests on one connection, two a second: the first is answered,
# then SIGTERM, then the second goes out on the same open connection.
# (-w to stderr: curl's stdout to a fifo is buffered until it exits)
curl -sS --rate 2/s -w '%{stderr}%{http_code} %{num_connects}\n' -o /dev/null -o /dev/null \
    -o /dev/null "$BASE/healthz" "$BASE/healthz" "$BASE/healthz" 2>"$ka" &
cpid=$!
exec 7<"$ka"
IFS= read -r first <&7
expect_match "the first request is answered on a new connection" first "$first" '^200 1$'
kill -TERM "$PID"
IFS= read -r second <&7
expect_match "after SIGTERM, the next request on that keep-alive connection gets 503" \
    second "$second" '^503 0$'
wait "$cpid"
wait "$PID"
expect_match "serve exits 0" rc "$?" '^0$'
done_testing
