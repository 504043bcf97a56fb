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
