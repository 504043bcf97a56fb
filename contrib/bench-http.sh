#!/bin/sh
# bench-http.sh -- the HTTP leg of `make bench`: wrk posting transitions to
# `loopforge serve` over 64 connections, beside `loopforge serve --ceiling`
# (the same binary and evhttp setup answering every request 200 with
# nothing behind it) measured in the same run, for each store: the
# embedded journal (file:, group commit: one fdatasync per loop turn, before
# the acknowledgements), a
# private Redis on a unix socket if redis-server is installed, and memory:
# (not durable: the server and engine alone).
#
#   sh contrib/bench-http.sh [LOOPFORGE]
#
# Each wrk request moves a record between ci_pending and ci_failed (a
# cycle of the lifecycle), each one a real committed transition under
# the shipped policies (their guards run; the CI retry budget is lifted so
# the cycle can go on). Prints, per store: requests/s, p50 and p99
# latency, the CPU time serve (and redis-server) spent per request,
# non-2xx replies, and the rate as a share of the ceiling.
# DURATION (10s), CONNS (64), THREADS (2), RECORDS (64 per connection: a
# record's history, returned whole in every reply, grows by one entry per
# pass) tune the run; LOG (info) is the server's --log-level (info logs a
# line per request); KEEP=1 keeps the temp dir (server log, wrk output).
set -eu
LF=${1:-build/loopforge}
case $LF in */*) ;; *) LF=./$LF ;; esac
[ -x "$LF" ] || { echo "bench-http: no loopforge binary at $LF (make first)" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 ||
    { echo "bench-http: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 ||
    { echo "bench-http: curl not found (apt-get install curl)" >&2; exit 1; }
DURATION=${DURATION:-10s} CONNS=${CONNS:-64} THREADS=${THREADS:-2} LOG=${LOG:-info}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

dir=$(mktemp -d "${TMPDIR:-/tmp}/loopforge-bench-http.XXXXXX")
spid= rpid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$dir"
    return 0
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# The shipped policies, with the retry budget lifted for the endless cycle.
cp -R "$ROOT/policies" "$dir/policies"
sed -i 's/trigger = "ci.retry", max = 3,/trigger = "ci.retry", max = 1000000000,/' \
    "$dir/policies/workflows/loopforge.lua"
grep -q 'max = 1000000000' "$dir/policies/workflows/loopforge.lua" ||
    { echo "bench-http: cannot lift the retry budget of workflows/loopforge.lua" >&2; exit 1; }

# serve ARGS...: starts a server; sets spid and base (reads its first line).
serve() {
    rm -f "$dir/fifo"
    mkfifo "$dir/fifo"
    "$LF" serve --listen 127.0.0.1:0 --log-level "$LOG" "$@" >"$dir/fifo" 2>>"$dir/serve.log" &
    spid=$!
    exec 9<"$dir/fifo"
    IFS= read -r line <&9 || { echo "bench-http: serve did not start:" >&2; tail -5 "$dir/serve.log" >&2; exit 1; }
    base="http://127.0.0.1:${line##*:}"
}
stop() {
    kill -TERM "$spid"
    wait "$spid" || { echo "bench-http: serve exited $?" >&2; exit 1; }
    spid=
    exec 9<&-
}

# records N: N records at ci_pending, their ids in $dir/ids (one
# keep-alive connection, so setup is quick).
records() {
    : >"$dir/create.cfg"
    i=0
    while [ $i -lt "$1" ]; do
        i=$((i + 1))
        [ $i -gt 1 ] && echo next >>"$dir/create.cfg"
        printf 'url = "%s/v1/records"\ndata-binary = "{\\"ref\\":\\"bench-%s-%d\\",\\"auto_merge\\":true}"\nheader = "Content-Type: application/json"\nwrite-out = "\\n"\n' \
            "$base" "$$-$2" "$i" >>"$dir/create.cfg"
    done
    curl -sS -K "$dir/create.cfg" | grep -o '"record_id":"loop-[0-9a-f]*"' | cut -d'"' -f4 >"$dir/ids"
    : >"$dir/walk.cfg"
    first=1
    for state in task_queued pr_created ci_pending; do
        while read -r id; do
            [ $first = 1 ] || echo next >>"$dir/walk.cfg"
            first=0
            printf 'url = "%s/v1/records/%s/transitions"\ndata-binary = "{\\"to\\":\\"%s\\",\\"trigger\\":\\"bench.setup\\"}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
                "$base" "$id" "$state" >>"$dir/walk.cfg"
        done <"$dir/ids"
    done
    bad=$(curl -sS -K "$dir/walk.cfg" | grep -vc '^200$' || true)
    [ "$bad" = 0 ] || { echo "bench-http: setup: $bad transitions failed" >&2; exit 1; }
}

# (wrk runs LuaJIT: Lua 5.1, so no // operator.) Each thread takes its own slice of the records and walks it round robin,
# alternating the target per pass: with many more records per thread than
# connections, a record's previous request has long been answered when
# its next one goes out.
cat >"$dir/cycle.lua" <<'LUA'
local ids, threads = {}, {}
for line in io.lines(os.getenv("LF_IDS")) do ids[#ids + 1] = line end
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads - 1)
  thread:set("nthreads", tonumber(os.getenv("LF_THREADS")))
end
local mine, n, headers, probed = {}, 0, { ["Content-Type"] = "application/json" }, false
function init()
  for i = 1, #ids do
    if (i - 1) % nthreads == tid then mine[#mine + 1] = ids[i] end
  end
end
function request()
  -- wrk calls thread 0's request() once after init to check it, and
  -- sends nothing: that call must not count as a pass.
  if tid == 0 and not probed then
    probed = true
    return wrk.format("GET", "/healthz")
  end
  local k = n % #mine
  local to = math.floor(n / #mine) % 2 == 0 and "ci_failed" or "ci_pending"
  n = n + 1
  return wrk.format("POST", "/v1/records/" .. mine[k + 1] .. "/transitions", headers,
    '{"to":"' .. to .. '","trigger":"bench.cycle"}')
end
LUA

# CPU ticks (user + system) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run LABEL: wrk against $base; prints one line, sets rps and cpu (the
# CPU time serve, and the Redis server if there is one, spent per
# request: less sensitive than the rate to what else the machine runs).
run() {
    s0=$(ticks "$spid") r0=0
    [ -n "$rpid" ] && r0=$(ticks "$rpid")
    LF_IDS="$dir/ids" LF_THREADS=$THREADS wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -s "$dir/cycle.lua" "$base" >"$dir/wrk.out" 2>&1
    if grep -q 'cycle.lua' "$dir/wrk.out"; then
        echo "bench-http: the wrk script failed:" >&2
        head -3 "$dir/wrk.out" >&2
        exit 1
    fi
    s1=$(ticks "$spid") r1=0
    [ -n "$rpid" ] && r1=$(ticks "$rpid")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.out")
    cpu=$(awk -v s=$((s1 - s0)) -v r=$((r1 - r0)) -v hz="$(getconf CLK_TCK)" \
        '/requests in/ { n = $1 } END { if (n) printf "%.0f", (s + r) * 1e6 / hz / n }' "$dir/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$dir/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.out")
    errs=$(awk '/Socket errors/ {print}' "$dir/wrk.out")
    printf '  %-34s %10.0f req/s   p50 %-8s p99 %-8s cpu %5s us/req   non-2xx %s%s\n' \
        "$1" "$rps" "$p50" "$p99" "$cpu" "${non2xx:-0}" "${errs:+  ($errs)}"
}

leg() {   # NAME STORE-URL
    serve --store "$2" --policies "$dir/policies"
    records "${RECORDS:-$((CONNS * 64))}" "$1"
    run "serve, $1 store"
    served=$rps
    stop
    serve --ceiling                     # the same requests, answered 200 at once
    run "ceiling (serve --ceiling)"
    stop
    awk -v a="$served" -v b="$rps" 'BEGIN { printf "  %-34s %9.0f%%\n", "share of the ceiling", 100 * a / b }'
}

echo "loopforge serve: wrk -t$THREADS -c$CONNS -d$DURATION posting transitions to" \
     "${RECORDS:-$((CONNS * 64))} records (log level $LOG)"
# memory: is not durable; it shows what the server and the engine cost
# without a store's I/O.
leg memory memory:
leg journal "file:$dir/bench.journal"
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save '' \
        --appendonly no --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
    rpid=$!
    tries=0
    until redis-cli -s "$dir/redis.sock" ping 2>/dev/null | grep -q PONG; do
        tries=$((tries + 1))
        [ $tries -gt 2000 ] && { echo "bench-http: redis-server did not start" >&2; exit 1; }
    done
    leg redis "unix://$dir/redis.sock"
else
    echo "  (redis-server not installed: no redis leg)"
fi
