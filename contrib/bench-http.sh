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
# the cycle can go on). Both servers run side by side and wrk alternates
# between them, PAIRS times (serve, then the ceiling): this machine's
# speed drifts by several percent within a minute, and a pair run back to
# back sees the same machine. Prints, per store: the median run's
# requests/s, p50 and p99 latency, the CPU time serve (and redis-server)
# spent per request over all its runs, non-2xx replies; where the
# machine's CPU went per request (serve, redis-server, the rest: wrk and
# the kernel) and how much sat idle; and the share of the ceiling: the
# median of the pairs' shares, each pair's beside it.
# STORES ("memory journal redis") names the legs to run, in that order;
# PAIRS (3), DURATION (3s a run), CONNS (64), THREADS (2), RECORDS (64 per
# connection: a record's history, returned whole in every reply, grows by
# one entry per pass) tune the run; LOG (info) is the server's
# --log-level (info logs a line per request); KEEP=1 keeps the temp dir
# (server log, wrk output).
set -eu
LF=${1:-build/loopforge}
case $LF in */*) ;; *) LF=./$LF ;; esac
[ -x "$LF" ] || { echo "bench-http: no loopforge binary at $LF (make first)" >&2; exit 1; }
command -v wrk >/dev/null 2>&1 ||
    { echo "bench-http: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 ||
    { echo "bench-http: curl not found (apt-get install curl)" >&2; exit 1; }
STORES=${STORES:-memory journal redis}
for s in $STORES; do
    case $s in memory | journal | redis) ;;
    *) echo "bench-http: STORES: unknown store '$s' (memory, journal, redis)" >&2; exit 2 ;;
    esac
done
has() { case " $STORES " in *" $1 "*) return 0 ;; esac; return 1; }
PAIRS=${PAIRS:-3} DURATION=${DURATION:-3s} CONNS=${CONNS:-64} THREADS=${THREADS:-2}
LOG=${LOG:-info}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
me=bench-http
. "$ROOT/contrib/records.inc"

dir=$(mktemp -d "${TMPDIR:-/tmp}/loopforge-bench-http.XXXXXX")
spid= cpid= rpid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$cpid" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
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

# serve ARGS...: starts a server; sets pid and url (reads its first line;
# its stdout stays open on the fifo's descriptor the caller dups).
serve() {
    rm -f "$dir/fifo"
    mkfifo "$dir/fifo"
    "$LF" serve --listen 127.0.0.1:0 --log-level "$LOG" "$@" >"$dir/fifo" 2>>"$dir/serve.log" &
    pid=$!
    exec 7<"$dir/fifo"
    IFS= read -r line <&7 || { echo "bench-http: serve did not start:" >&2; tail -5 "$dir/serve.log" >&2; exit 1; }
    url="http://127.0.0.1:${line##*:}"
}
# stop PID
stop() {
    kill -TERM "$1"
    wait "$1" || { echo "bench-http: serve exited $?" >&2; exit 1; }
}

# records N TAG: N records at ci_pending, their ids in $dir/ids.
records() {
    create_records "$1" "bench-$$-$2"
    move_records bench.setup task_queued pr_created ci_pending
}

# (wrk runs LuaJIT: Lua 5.1, so no // operator.) LF_IDS has a line "ID
# STATE" per record. Each thread takes its own slice of the records and
# walks it round robin, moving each to the other state of the cycle than
# the one it is at: with many more records per thread than connections, a
# record's previous request has long been answered when its next one goes
# out. A run stops mid-pass; the next starts from the states the server
# then lists (states, below).
cat >"$dir/cycle.lua" <<'LUA'
local ids, at, threads = {}, {}, {}
for line in io.lines(os.getenv("LF_IDS")) do
  local id, state = line:match("^(%S+) (%S+)$")
  ids[#ids + 1] = id
  at[id] = state
end
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
  local id = mine[n % #mine + 1]
  local to = at[id] == "ci_failed" and "ci_pending" or "ci_failed"
  at[id] = to
  n = n + 1
  return wrk.format("POST", "/v1/records/" .. id .. "/transitions", headers,
    '{"to":"' .. to .. '","trigger":"bench.cycle"}')
end
LUA

# states: each record's state after a run, in $dir/ids.state (those the
# server lists at ci_failed, page by page; the others are at ci_pending).
states() {
    : >"$dir/failed"
    cursor=
    while :; do
        curl -sS -G "$base/v1/records" -d state=ci_failed -d limit=1000 \
            ${cursor:+--data-urlencode "cursor=$cursor"} >"$dir/page"
        grep -o '"record_id":"loop-[0-9a-f]*"' "$dir/page" | cut -d'"' -f4 >>"$dir/failed"
        cursor=$(grep -o '"next_cursor":"[^"]*"' "$dir/page" | cut -d'"' -f4 || true)
        [ -n "$cursor" ] || break
    done
    awk 'FILENAME == ARGV[1] { f[$1] = 1; next } { print $1, ($1 in f) ? "ci_failed" : "ci_pending" }' \
        "$dir/failed" "$dir/ids" >"$dir/ids.state"
}

# CPU ticks (user + system) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The machine's CPU ticks so far over every core: "busy idle stolen"
# (idle counts iowait; stolen: the hypervisor gave the time to others).
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6, $9 }' /proc/stat; }

# run PID URL OUT: wrk against URL; appends a line to OUT: requests/s,
# p50, p99, non-2xx, requests, the CPU ticks PID (and the Redis server if
# there is one) spent, then PID's alone, the Redis server's, and the
# machine's busy, idle and stolen ticks (every core) over the run.
run() {
    s0=$(ticks "$1") r0=0 m0=$(machine)
    [ -n "$rpid" ] && [ "$1" = "$spid" ] && r0=$(ticks "$rpid")
    LF_IDS="$dir/ids.state" LF_THREADS=$THREADS wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -s "$dir/cycle.lua" "$2" >"$dir/wrk.out" 2>&1
    if grep -q 'cycle.lua' "$dir/wrk.out"; then
        echo "bench-http: the wrk script failed:" >&2
        head -3 "$dir/wrk.out" >&2
        exit 1
    fi
    s1=$(ticks "$1") r1=0 m1=$(machine)
    [ -n "$rpid" ] && [ "$1" = "$spid" ] && r1=$(ticks "$rpid")
    if grep -q 'Socket errors' "$dir/wrk.out"; then
        echo "bench-http: $(grep 'Socket errors' "$dir/wrk.out")" >&2
    fi
    awk -v t=$((s1 - s0 + r1 - r0)) -v s=$((s1 - s0)) -v r=$((r1 - r0)) \
        -v m0="$m0" -v m1="$m1" '
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = $2 }
        $1 == "99%" { p99 = $2 }
        /Non-2xx/ { bad = $NF }
        /requests in/ { n = $1 }
        END {
            split(m0, a, " "); split(m1, b, " ")
            print rps, p50, p99, bad + 0, n, t, s, r, b[1] - a[1], b[2] - a[2], b[3] - a[3]
        }' "$dir/wrk.out" >>"$3"
}

# report LABEL FILE: the median run by requests/s, and the CPU time a
# request over all the runs; then where the machine's went, a request:
# the server, redis-server (if any), the rest (wrk, the kernel's share
# not charged to either), and how much of it sat idle or was stolen by
# the hypervisor. With every core busy, the rate cannot pass the cores'
# time over the three's sum.
report() {
    awk -v label="$1" -v hz="$(getconf CLK_TCK)" -v mid=$(((PAIRS + 1) / 2)) '
        { rps[NR] = $1; line[NR] = $0; bad += $4; n += $5; t += $6
          s += $7; r += $8; busy += $9; idle += $10; stolen += $11 }
        END {
            for (i = 1; i <= NR; i++) {          # rank of run i by rate
                k = 1
                for (j = 1; j <= NR; j++) if (rps[j] < rps[i] || (rps[j] == rps[i] && j < i)) k++
                if (k == mid) m = i
            }
            split(line[m], f, " ")
            us = n ? 1e6 / hz / n : 0
            printf "  %-34s %10.0f req/s   p50 %-8s p99 %-8s cpu %5.0f us/req   non-2xx %d\n",
                label, f[1], f[2], f[3], t * us, bad
            all = busy + idle + stolen
            printf "  %-34s serve %.0f us,%s the rest %.0f (wrk, the kernel); %.0f%% idle%s\n",
                "  the machine a request", s * us,
                r ? sprintf(" redis-server %.0f,", r * us) : "", (busy - s - r) * us,
                all ? 100 * idle / all : 0,
                (all && 100 * stolen / all >= 0.5) ? sprintf(", %.0f%% stolen", 100 * stolen / all) : ""
        }' "$2"
}

leg() {   # NAME STORE-URL
    serve --store "$2" --policies "$dir/policies"
    spid=$pid base=$url
    exec 9<&7 7<&-
    records "${RECORDS:-$((CONNS * 64))}" "$1"
    serve --ceiling                     # the same requests, answered 200 at once
    cpid=$pid ceil=$url
    exec 8<&7 7<&-
    : >"$dir/runs.serve"
    : >"$dir/runs.ceiling"
    i=0
    while [ $i -lt "$PAIRS" ]; do
        i=$((i + 1))
        states
        run "$spid" "$base" "$dir/runs.serve"
        run "$cpid" "$ceil" "$dir/runs.ceiling"
    done
    stop "$spid"
    stop "$cpid"
    spid= cpid=
    exec 9<&- 8<&-
    report "serve, $1 store" "$dir/runs.serve"
    report "ceiling (serve --ceiling)" "$dir/runs.ceiling"
    paste -d' ' "$dir/runs.serve" "$dir/runs.ceiling" | awk -v mid=$(((PAIRS + 1) / 2)) '
        { sh[NR] = 100 * $1 / $(NF / 2 + 1); all = all sprintf(" %.0f%%", sh[NR]) }
        END {
            for (i = 1; i <= NR; i++) {
                k = 1
                for (j = 1; j <= NR; j++) if (sh[j] < sh[i] || (sh[j] == sh[i] && j < i)) k++
                if (k == mid) m = sh[i]
            }
            printf "  %-34s %9.0f%%   (the pairs:%s)\n", "share of the ceiling", m, all
        }'
}

echo "loopforge serve: wrk -t$THREADS -c$CONNS, $PAIRS pairs of $DURATION runs (serve, then" \
     "the ceiling), posting transitions to ${RECORDS:-$((CONNS * 64))} records (log level $LOG)"
# memory: is not durable; it shows what the server and the engine cost
# without a store's I/O.
! has memory || leg memory memory:
! has journal || leg journal "file:$dir/bench.journal"
if ! has redis; then
    :
elif command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
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
