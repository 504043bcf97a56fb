#!/bin/sh
# The API, webhook and operations suites again, with `serve` on a real
# Redis store: a private redis-server on a unix socket in the suite's
# temp dir, each suite under its own key prefix. Their lines are
# prefixed "redis:". Skipped when redis-server is not installed.
. tests/cli/tap.inc
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "ok 1 # SKIP redis-server is not installed"
    echo "1..1"
    exit 0
fi
redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" &
rpid=$!
trap 'kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; rm -rf "$tmp"' EXIT
# Bounded: ask until it answers (each ask is a round trip, no sleeping).
i=0
until redis-cli -s "$tmp/redis.sock" ping 2>/dev/null | grep -q PONG; do
    i=$((i + 1))
    if [ $i -gt 2000 ] || ! kill -0 "$rpid" 2>/dev/null; then
        not_ok "redis-server starts" "$(tail -5 "$tmp/redis.log")"
        done_testing
        exit 1
    fi
done
ok "a private redis-server answers"
for suite in http_api http_webhook http_ops; do
    res=$(cd "$ROOT" && HTTP_STORE="unix://$tmp/redis.sock?prefix=$suite:" \
          sh "tests/cli/$suite.sh" 2>&1)
    rc=$?
    printf '%s\n' "$res" | grep -v '^1\.\.' |
        sed -e "s/^ok [0-9]* - /ok - redis: /" -e "s/^not ok [0-9]* - /not ok - redis: /"
    n_ok=$(printf '%s\n' "$res" | grep -c '^ok ')
    n_bad=$(printf '%s\n' "$res" | grep -c '^not ok ')
    T=$((T + n_ok + n_bad))
    FAILED=$((FAILED + n_bad))
    if [ "$rc" -ne 0 ] && [ "$n_bad" -eq 0 ]; then not_ok "redis: $suite exited $rc"; fi
done
done_testing
