#!/bin/sh
# callgrind.sh -- the instructions a transition costs, counted: `serve` on
# a private Redis, both under valgrind's callgrind, answering a fixed
# workload sent by curl, one request at a time. Counts do not drift as
# this machine's clock rates do (10-20 % within minutes), so a change of
# a few percent to the commit script or the request path shows here when
# wrk cannot see it; time is still what `make bench` measures.
#
#   sh contrib/callgrind.sh [LOOPFORGE] [REDIS-SERVER]
#
# RECORDS (600) records are created and walked to ci_pending (and DEPTH
# times, 0 by default, to ci_failed and back: a reply carries the
# record's history, some 60 entries by the HTTP bench's last run, about
# DEPTH=25), then the counters are zeroed and each record is moved to
# ci_failed and back (2 x RECORDS transitions under the shipped
# policies); prints the instructions per transition of serve and of
# redis-server, less what each spent in as long idle (serve's timers
# tick every second). A
# redis-server built with symbols (e.g. from `apt-get source redis`)
# gives a readable profile: KEEP=1 keeps the callgrind files for
# callgrind_annotate.
set -eu
LF=${1:-build/loopforge}
RS=${2:-redis-server}
RECORDS=${RECORDS:-600} DEPTH=${DEPTH:-0}
case $LF in */*) ;; *) LF=./$LF ;; esac
[ -x "$LF" ] || { echo "callgrind: no loopforge binary at $LF (make first)" >&2; exit 1; }
for c in valgrind callgrind_control curl redis-cli; do
    command -v $c >/dev/null 2>&1 || { echo "callgrind: $c not found" >&2; exit 1; }
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
me=callgrind
. "$ROOT/contrib/records.inc"
dir=$(mktemp -d "${TMPDIR:-/tmp}/loopforge-callgrind.XXXXXX")
spid= rpid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    [ -n "$rpid" ] && redis-cli -s "$dir/redis.sock" shutdown nosave >/dev/null 2>&1 &&
        wait "$rpid" 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "callgrind: files kept in $dir" >&2 || rm -rf "$dir"
    return 0
}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM

# cg NAME PROGRAM ARGS... &: PROGRAM under callgrind (this process, so $!
# names it), its files $dir/NAME.<pid>*
cg() {
    name=$1
    shift
    exec valgrind --tool=callgrind --callgrind-out-file="$dir/$name.%p" "$@"
}
# total NAME PART: the instructions of dump PART (each after a zeroing)
total() {
    callgrind_annotate "$(ls "$dir/$1".*."$2" | head -1)" 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
# zero / dump: both processes' counters
zero() { for p in $spid $rpid; do callgrind_control -z "$p" >/dev/null 2>&1; done; }
dump() { for p in $spid $rpid; do callgrind_control -d "$p" >/dev/null 2>&1; done; }

cg redis "$RS" --port 0 --unixsocket "$dir/redis.sock" --save '' --appendonly no \
    >"$dir/redis.log" 2>&1 &
rpid=$!
until redis-cli -s "$dir/redis.sock" ping 2>/dev/null | grep -q PONG; do sleep 0.2; done
cp -R "$ROOT/policies" "$dir/policies"
sed -i 's/trigger = "ci.retry", max = 3,/trigger = "ci.retry", max = 1000000000,/' \
    "$dir/policies/workflows/loopforge.lua"
cg serve "$LF" serve --listen 127.0.0.1:0 --log-level warn --store "unix://$dir/redis.sock" \
    --policies "$dir/policies" >"$dir/out" 2>"$dir/serve.log" &
spid=$!
until grep -q listening "$dir/out" 2>/dev/null; do sleep 0.2; done
base="http://127.0.0.1:$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$dir/out" | head -1)"

create_records "$RECORDS" cg
move_records cg task_queued pr_created ci_pending
cycles=
i=0
while [ $i -lt "$DEPTH" ]; do cycles="$cycles ci_failed ci_pending"; i=$((i + 1)); done
[ -n "$cycles" ] && move_records cg $cycles
# The workload (part 1), then as long idle (part 2): serve's tick, once a
# second, lists the timed states whatever the requests do, so a count
# grew with the time valgrind took (5-10 % between runs on a busy
# machine); the idle part's count is taken off.
zero
t0=$(date +%s%N)
move_records cg ci_failed ci_pending
dump
t1=$(date +%s%N)
zero
sleep "$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
dump
n=$((2 * RECORDS))
per() { echo $((($(total "$1" 1) - $(total "$1" 2)) / n)); }
echo "callgrind: $n transitions over HTTP on Redis, one at a time:" \
     "serve $(per serve) instructions a transition," \
     "redis-server $(per redis) (less the same time idle)"
