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

# survivors LABEL STORE: after a kill, every transition a client saw
# acknowledged (200, in $tmp/log.*) is in STORE's log exactly once, and
# the log verifies.
survivors() {
    cat "$tmp"/log.* >"$tmp/all"
    rm -f "$tmp"/log.*
    acked=$(grep -c '^200 ' "$tmp/all")
    "$LOOPFORGE_BIN" --policies "$POLICIES" --store "$2" audit >"$tmp/audit" 2>"$tmp/err"
    grep -o '"idempotency_key":"[^"]*"' "$tmp/audit" | sed 's/.*:"\(.*\)"/\1/' | sort >"$tmp/keys"
    dup=$(uniq -d "$tmp/keys" | head -3)
    grep '^200 ' "$tmp/all" | cut -d' ' -f2 | sort >"$tmp/acked"
    lost=$(comm -23 "$tmp/acked" "$tmp/keys" | head -3)
    if [ "$acked" -gt 0 ] && [ -z "$dup" ] && [ -z "$lost" ]; then
        ok "$1: all $acked acknowledged transitions survive SIGKILL, none twice"
    else
        not_ok "$1: acknowledged transitions survive SIGKILL exactly once" \
            "acked $acked; twice: $dup; lost: $lost"
    fi
    run --policies "$POLICIES" --store "$2" audit --verify
    expect_rc "$1: the log verifies after the kill" 0
}

# crash_cycles LABEL STORE
crash_cycles() {
    for cycle in $(seq $CYCLES); do
        start_server --store "$2" --policies "$POLICIES" || { not_ok "$1: serve starts"; return; }
        : >"$tmp/acks"
        pids=
        for w in $(seq $W); do
            rid=$(load_record "$1-$cycle-$w")
            if [ "$w" = 1 ]; then
                load_worker "$1-c$cycle-w$w" "$rid" $N "$tmp/log.$w" $KILL_AT KILL &
            else
                load_worker "$1-c$cycle-w$w" "$rid" $N "$tmp/log.$w" &
            fi
            pids="$pids $!"
        done
        wait $pids
        wait "$PID" 2>/dev/null
        PID=
        exec 9<&-
        survivors "$1 cycle $cycle" "$2"
    done
}

crash_cycles journal "file:$tmp/j"

# Two servers on one journal (group commit in each, the file lock between
# them), both killed mid-flood: every transition either acknowledged is
# there exactly once.
crash_two() {
    store="file:$tmp/j2"
    start_server --store "$store" --policies "$POLICIES" || { not_ok "two: A starts"; return; }
    exec 8<&9
    PID_A=$PID BASE_A=$BASE
    start_server --store "$store" --policies "$POLICIES" || { not_ok "two: B starts"; return; }
    PID_B=$PID BASE_B=$BASE
    : >"$tmp/acks"
    pids=
    for w in $(seq $W); do
        if [ "$w" -le 2 ]; then PID=$PID_A BASE=$BASE_A; else PID=$PID_B BASE=$BASE_B; fi
        rid=$(load_record "two-$w")
        case $w in
        1) load_worker "two-w$w" "$rid" $N "$tmp/log.$w" $KILL_AT KILL & ;;
        3) load_worker "two-w$w" "$rid" $N "$tmp/log.$w" $((KILL_AT + 20)) KILL & ;;
        *) load_worker "two-w$w" "$rid" $N "$tmp/log.$w" & ;;
        esac
        pids="$pids $!"
    done
    wait $pids
    wait "$PID_A" 2>/dev/null
    wait "$PID_B" 2>/dev/null
    PID=
    exec 9<&- 8<&-
    survivors "two servers on one journal, both killed" "$store"
}
crash_two

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
