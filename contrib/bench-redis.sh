#!/bin/sh
# bench-redis.sh -- the redis leg of the benchmark, on its own: LoopForge's
# workload on a redis store with many transitions in flight, beside
# redis-benchmark calling the same commit script with the same concurrency
# (both rates and the ratio), and Redis memory per record (7 history
# entries, from INFO memory).
#
#   sh contrib/bench-redis.sh [LOOPFORGE] [URL]
#
# Without URL a private redis-server is started on a unix socket in a
# temporary directory (no TCP port, no persistence) and stopped after.
# With one (redis://[:password@]host:port/db or unix:///path?db=N) the run
# works under a key prefix of its own there and deletes its keys after.
# RECORDS (default 3000) and IN_FLIGHT (default 64) size the run.
#
# The redis-benchmark call is made by `loopforge bench` itself
# (src/cli/bench_redis.c): its arguments follow the commit script's
# layout and use a line and a record taken from the run, which only the
# binary has.
set -eu
LF=${1:-build/loopforge}
URL=${2:-}
case $LF in */*) ;; *) LF=./$LF ;; esac
[ -x "$LF" ] || { echo "bench-redis: no loopforge binary at $LF (make first)" >&2; exit 1; }
command -v redis-benchmark >/dev/null 2>&1 ||
    echo "bench-redis: redis-benchmark not found (apt-get install redis-tools):" \
         "only loopforge's own rate will be shown" >&2

dir= pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$dir" ] && rm -rf "$dir"
    return 0
}
trap cleanup EXIT INT TERM

if [ -z "$URL" ]; then
    command -v redis-server >/dev/null 2>&1 ||
        { echo "bench-redis: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/loopforge-bench-redis.XXXXXX")
    redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
        --save '' --appendonly no --daemonize no --dir "$dir" \
        --logfile "$dir/redis.log" &
    pid=$!
    # Poll until it answers (bounded); never a blind sleep as the wait.
    tries=0
    until redis-cli -s "$dir/redis.sock" ping 2>/dev/null | grep -q PONG; do
        tries=$((tries + 1))
        [ "$tries" -gt 400 ] && { echo "bench-redis: redis-server did not start" >&2; exit 1; }
        kill -0 "$pid" 2>/dev/null || { echo "bench-redis: redis-server exited" >&2; exit 1; }
        sleep 0.05
    done
    URL="unix://$dir/redis.sock"
fi

"$LF" bench --records "${RECORDS:-3000}" --in-flight "${IN_FLIGHT:-64}" --store "$URL"
