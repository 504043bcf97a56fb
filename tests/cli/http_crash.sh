#!/bin/sh
# Crash consistency: `serve` is killed with SIGKILL under concurrent load,
# several times, on the journal and on Redis. After each kill, every
# transition a client saw acknowledged (200) is in the audit log exactly
# once, none is there twice, and the log verifies. Each request carries
# its own idempotency key, which is how the log is matched to the
# clients' view. Redis is skipped when redis-server is not installed.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
W=4             # concurrent clients
N=400           # requests each, at most (the kill comes long before)
KILL_AT=40      # client 1 kills the server after its 40th request
CYCLES=3

# worker NAME ID OUT: transitions ci_pending <-> ci_failed, one curl each,
# each with its own key; appends "STATUS KEY" per request to OUT; stops
# when the server is gone. Worker 1 sends SIGKILL after KILL_AT requests.
worker() {
    _i=0 _to=ci_failed
    while [ $_i -lt $N ]; do
        _i=$((_i + 1))
        _code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
            -H 'Content-Type: application/json' \
            --data-binary "{\"to\":\"$_to\",\"trigger\":\"load\",\"idempotency_key\":\"$1-$_i\"}" \
            "$BASE/v1/records/$2/transitions")
        echo "$_code $1-$_i" >>"$3"
        [ "$_code" = 200 ] && { [ $_to = ci_failed ] && _to=ci_pending || _to=ci_failed; }
        [ "$_code" = 000 ] && break
        [ "$4" = killer ] && [ $_i = $KILL_AT ] && kill -KILL "$PID"
    done
}

new_record() {
    req POST /v1/records "{\"ref\":\"crash-$1\"}"
    _id=$(json record_id)
    for _s in task_queued pr_created ci_pending; do
        req POST "/v1/records/$_id/transitions" "{\"to\":\"$_s\",\"trigger\":\"setup\"}"
    done
    echo "$_id"
}

# crash_cycles LABEL STORE
crash_cycles() {
    for cycle in $(seq $CYCLES); do
        start_server --store "$2" --policies "$POLICIES" || { not_ok "$1: serve starts"; return; }
        : >"$tmp/acks"
        pids=
        for w in $(seq $W); do
            rid=$(new_record "$1-$cycle-$w")
            role=; [ "$w" = 1 ] && role=killer
            worker "$1-c$cycle-w$w" "$rid" "$tmp/log.$w" $role &
            pids="$pids $!"
        done
        wait $pids
        wait "$PID" 2>/dev/null
        PID=
        exec 9<&-
        cat "$tmp"/log.* >"$tmp/all"
        rm -f "$tmp"/log.*
        acked=$(grep -c '^200 ' "$tmp/all")
        "$LOOPFORGE_BIN" --policies "$POLICIES" --store "$2" audit >"$tmp/audit" 2>"$tmp/err"
        grep -o '"idempotency_key":"[^"]*"' "$tmp/audit" | sed 's/.*:"\(.*\)"/\1/' | sort >"$tmp/keys"
        dup=$(uniq -d "$tmp/keys" | head -3)
        grep '^200 ' "$tmp/all" | cut -d' ' -f2 | sort >"$tmp/acked"
        lost=$(comm -23 "$tmp/acked" "$tmp/keys" | head -3)
        if [ "$acked" -gt 0 ] && [ -z "$dup" ] && [ -z "$lost" ]; then
            ok "$1 cycle $cycle: all $acked acknowledged transitions survive SIGKILL, none twice"
        else
            not_ok "$1 cycle $cycle: acknowledged transitions survive SIGKILL exactly once" \
                "acked $acked; twice: $dup; lost: $lost"
        fi
        run --policies "$POLICIES" --store "$2" audit --verify
        expect_rc "$1 cycle $cycle: the log verifies after the kill" 0
    done
}

crash_cycles journal "file:$tmp/j"

if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save '' \
        --appendonly no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" &
    rpid=$!
    trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
          kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; rm -rf "$tmp"' EXIT
    i=0
    until redis-cli -s "$tmp/redis.sock" ping 2>/dev/null | grep -q PONG; do
        i=$((i + 1))
        [ $i -gt 2000 ] || ! kill -0 "$rpid" 2>/dev/null && break
    done
    crash_cycles redis "unix://$tmp/redis.sock?prefix=crash:"
else
    ok "# SKIP redis-server is not installed"
fi
done_testing
