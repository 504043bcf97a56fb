#!/bin/sh
# The API, webhook and operations suites again, with `serve` on a real
# Redis store: a private redis-server on a unix socket in the suite's
# temp dir, each suite under its own key prefix. Their lines are
# prefixed "redis:". Then what only an asynchronous store can show: a
# delivery held up by a frozen store is still answered before GitHub's
# deadline, and finishes once the store is back. Skipped when
# redis-server is not installed.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "ok 1 # SKIP redis-server is not installed"
    echo "1..1"
    exit 0
fi
redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" &
rpid=$!
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
      kill -CONT "$rpid" 2>/dev/null; kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null
      rm -rf "$tmp"' EXIT
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
for suite in http_api http_webhook http_ops github_scenarios; do
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

# ---- a frozen store: the delivery is answered at the deadline ----
printf 'deadline-secret' >"$tmp/secret"
SECRET=deadline-secret
start_server --store "unix://$tmp/redis.sock?prefix=deadline:" --policies "$ROOT/policies" \
    --webhook-secret-file "$tmp/secret" --webhook-deadline 500 || not_ok "serve starts"
kill -STOP "$rpid"
hook issues "$FIX/issues.opened.json" slow-1
expect_status "a delivery stuck on a frozen store is answered 202 at the deadline" 202
expect_json "… accepted" accepted true
expect_json "… one request still pending" pending 1
kill -CONT "$rpid"
# It finishes once Redis answers again: ask until the record is there.
i=0
while [ $i -lt 2000 ]; do
    i=$((i + 1))
    req GET /v1/records
    [ "$(json 'records/#')" = 1 ] && break
done
expect_json "… and completes once the store is back" records/1/ref \
    https://github.com/Codertocat/Hello-World/issues/1
i=0
while [ $i -lt 2000 ] && ! grep -q 'finished after its early reply' "$SERR"; do
    i=$((i + 1)); req GET /healthz
done
check "… logging its outcome" grep -q 'delivery slow-1 finished after its early reply (200)' "$SERR"
hook issues "$FIX/issues.opened.json" slow-1
expect_json "a redelivery of it is a duplicate" duplicate true
req GET /metrics
match_out "late deliveries are counted" \
    'loopforge_webhook_deliveries_total\{event="issues",result="late"\} 1'
stop_server
expect_match "… and the server stops with 0" rc "$STOP_RC" '^0$'

# ---- timers and related records on Redis (issue 11) ----
# Specfuse's workflows: a gate with two units (children indexed in Redis),
# a unit's 2h timer fired by two ticking processes at once (exactly one
# moves it), a gate that closes by itself once its units are done.
R="unix://$tmp/redis.sock?prefix=people:"
rl() { run --policies "$ROOT/policies" --store "$R" "$@"; }
rl create --ref g --workflow specfuse-gate; g=$out
rl transition "$g" armed arm --role gatekeeper
rl transition "$g" running go
rl create --ref u1 --workflow specfuse-unit --parent "$g"; u1=$out
rl create --ref u2 --workflow specfuse-unit --parent "$g"; u2=$out
rl list --parent "$g" --json
expect_json "redis: a gate's units are listed by parent" 'records/#' 2
rl transition "$u1" dispatched d
# GET /v1/timers?records= reads those records one by one (an answer of
# the store's at a time, on Redis), and a page by due
start_server --store "$R" --policies "$ROOT/policies" || not_ok "serve starts"
req GET "/v1/timers?records=$g,$u2,$u1,loop-0000000000000000"
expect_json "redis: GET /v1/timers?records= lists the one with a timer" 'timers/#' 1
expect_json "… the dispatched unit" timers/1/record_id "$u1"
req GET '/v1/timers?due_by=2099-01-01T00:00:00Z&limit=1'
expect_json "… and ?due_by=&limit= a page of it" timers/1/trigger unit.timeout
stop_server
late=2099-01-01T00:00:00Z
"$LOOPFORGE_BIN" --policies "$ROOT/policies" --store "$R" tick --now $late >"$tmp/tick1" 2>&1 &
t1=$!
"$LOOPFORGE_BIN" --policies "$ROOT/policies" --store "$R" tick --now $late >"$tmp/tick2" 2>&1 &
t2=$!
wait $t1; wait $t2
rl audit "$u1"
check "redis: two ticks at once fire a due timer exactly once" \
    test "$(printf '%s\n' "$out" | grep -c '"trigger":"unit.timeout"')" -eq 1
check "… and its retry at most once (the later tick may find it due too)" \
    test "$(printf '%s\n' "$out" | grep -c '"trigger":"unit.retry"')" -le 1
rl show "$u1" --json
expect_match "… the unit timed out" state "$(json state)" '^(verify_failed|dispatched)$'
[ "$(json state)" = verify_failed ] && rl transition "$u1" dispatched d
rl transition "$g" closed early
expect_rc "redis: a gate with open units cannot close: exit 5" 5
match_err "… saying how many" '2 of 2 are not$'
rl transition "$u2" dispatched d
for u in "$u1" "$u2"; do
    rl transition "$u" verifying v
    rl transition "$u" done ok
done
rl show "$g" --json
expect_json "redis: the last unit done closes the gate by itself" state closed
expect_json "… as the engine" transitions/4/actor engine:children

# A hook's schedule{}: a timer of the record's own, found by the tick
# through the Redis index of records with timers.
P4="$tmp/sched"
mkdir -p "$P4/workflows" "$P4/hooks"
cat >"$P4/workflows/job.lua" <<'LUA'
return workflow { name = "job", states = { "new", "queued", "stale" }, initial = "new",
  edges = { { "new", "queued" }, { "queued", "stale" }, { "stale", "queued" } } }
LUA
cat >"$P4/hooks/remind.lua" <<'LUA'
return hook { name = "remind", on = { to = "queued" },
  run = function(e) return schedule{ after = "1h", to = "stale", trigger = "job.stale" } end }
LUA
R4="unix://$tmp/redis.sock?prefix=sched:"
run --policies "$P4" --store "$R4" create --ref j --workflow job; j=$out
run --policies "$P4" --store "$R4" transition "$j" queued go
run --policies "$P4" --store "$R4" show "$j" --json
expect_json "redis: a hook's schedule{} is kept with the record" timers/1/trigger job.stale
check "… and indexed" sh -c "redis-cli -s '$tmp/redis.sock' zrange sched:timed 0 -1 | grep -q '$j'"
due=$(printf '%s' "$out" | grep -o '"due":"[^"]*"' | head -1 | cut -d'"' -f4)
score=$(redis-cli -s "$tmp/redis.sock" zscore sched:timed "$j")
check "… by when it is due ($due: $score)" test "$score" = "$(date -u -d "$due" +%s%6N)"
run --policies "$P4" --store "$R4" tick --now 2099-01-01T00:00:00Z
expect_out "redis: the tick fires it" "$j: queued → stale (ok)"
check "… and the index forgets it" sh -c "! redis-cli -s '$tmp/redis.sock' zrange sched:timed 0 -1 | grep -q '$j'"

# Budgets: the counters live in Redis, so separate processes (two CLIs
# here, two servers in production) share them.
cat >"$P4/workflows/ship.lua" <<'LUA'
return workflow { name = "ship", states = { "new", "merged" }, initial = "new",
  terminal = { "merged" }, edges = { { "new", "merged" } },
  budgets = { merged = { { per = "actor", max = 1, within = "1h" } } } }
LUA
run --policies "$P4" --store "$R4" create --ref m1 --workflow ship; m1=$out
run --policies "$P4" --store "$R4" transition "$m1" merged m --actor bot
expect_rc "redis: the first merge of the hour passes" 0
run --policies "$P4" --store "$R4" create --ref m2 --workflow ship; m2=$out
run --policies "$P4" --store "$R4" transition "$m2" merged m --actor bot
expect_rc "redis: another process sees the budget spent: exit 5" 5
match_err "… and says when it frees up" '^Denied by policy budget:merged: .* it frees up at [0-9T:.-]+Z$'

# Two daemons on one Redis share a principal's budget: merge through one,
# the next through the other is refused; a restarted daemon still counts.
cat >"$P4/workflows/ship2.lua" <<'LUA'
return workflow { name = "ship2", states = { "new", "merged" }, initial = "new",
  terminal = { "merged" }, edges = { { "new", "merged" } },
  budgets = { merged = { { per = "principal", max = 1, within = "1h" } } } }
LUA
TOKENS="$tmp/tokens"
run token agent-x write --kind agent --principal dana --tokens "$TOKENS"; tok_x=$out
run token agent-y write --kind agent --principal dana --tokens "$TOKENS"; tok_y=$out
start_server --store "$R4" --policies "$P4" --tokens "$TOKENS" || not_ok "daemon A starts"
exec 8<&9                       # keep A's stdout open while B starts
PID_A=$PID BASE_A=$BASE SERR_A=$SERR
start_server --store "$R4" --policies "$P4" --tokens "$TOKENS" || not_ok "daemon B starts"
PID_B=$PID BASE_B=$BASE
AUTH="Bearer $tok_x"
BASE=$BASE_A req POST /v1/records '{"ref":"d1","workflow":"ship2"}'; d1=$(json record_id)
BASE=$BASE_A req POST /v1/records '{"ref":"d2","workflow":"ship2"}'; d2=$(json record_id)
BASE=$BASE_A req POST "/v1/records/$d1/transitions" '{"to":"merged","trigger":"m"}'
expect_status "two daemons: dana's agent x merges through daemon A: 200" 200
AUTH="Bearer $tok_y"
BASE=$BASE_B req POST "/v1/records/$d2/transitions" '{"to":"merged","trigger":"m"}'
expect_status "… her agent y's merge through daemon B is refused: 403" 403
expect_match "… her budget, with when it frees up" error "$(json error)" \
    '^Denied by policy budget:merged: budget spent: principal dana made 1 transitions to merged within 3600s \(at most 1\); it frees up at [0-9T:.-]+Z$'
stop_server
PID=$PID_A SERR=$SERR_A
exec 9<&8 8<&-
stop_server
start_server --store "$R4" --policies "$P4" --tokens "$TOKENS" || not_ok "daemon B restarts"
req POST "/v1/records/$d2/transitions" '{"to":"merged","trigger":"m"}'
expect_status "… and still after both daemons restarted: 403" 403
AUTH=
stop_server

# Open records: the owner's open set lives in Redis too.
cat >"$P4/workflows/task.lua" <<'LUA'
return workflow { name = "task", states = { "open", "done" }, initial = "open",
  terminal = { "done" }, edges = { { "open", "done" } },
  open_records = { per = "actor", max = 1 } }
LUA
run --policies "$P4" --store "$R4" create --ref o1 --workflow task --actor bot; o1=$out
expect_rc "redis: a first open task" 0
run --policies "$P4" --store "$R4" create --ref o2 --workflow task --actor bot
expect_rc "redis: another process sees it open: a 2nd is refused, exit 5" 5
match_err "… naming the rule" '^Denied by policy open_records:task: actor bot has 1 open records'
run --policies "$P4" --store "$R4" transition "$o1" done d --actor bot
run --policies "$P4" --store "$R4" create --ref o2 --workflow task --actor bot; o2=$out
expect_rc "redis: closing it frees the place" 0
run --policies "$P4" --store "$R4" delete "$o2"
run --policies "$P4" --store "$R4" create --ref o3 --workflow task --actor bot
expect_rc "redis: so does deleting one" 0

# Requests in flight together: 30 at once, each counted before any of them
# commits, must not all pass a cap of 3 -- the commit script checks the
# budget and the open records again as it writes (core/entry.h), and the
# engine counts again and refuses the rest as it would one after another.
cat >"$P4/workflows/burst.lua" <<'LUA'
return workflow { name = "burst", states = { "new", "merged" }, initial = "new",
  terminal = { "merged" }, edges = { { "new", "merged" } },
  budgets = { merged = { { per = "actor", max = 3, within = "1h" } } } }
LUA
cat >"$P4/workflows/burst_open.lua" <<'LUA'
return workflow { name = "burst_open", states = { "open", "done" }, initial = "open",
  terminal = { "done" }, edges = { { "open", "done" } },
  open_records = { per = "actor", max = 3 } }
LUA
start_server --store "$R4" --policies "$P4" || not_ok "serve starts"
: >"$tmp/burst.cfg"
: >"$tmp/open.cfg"
i=0
while [ $i -lt 30 ]; do
    i=$((i + 1))
    req POST /v1/records "{\"ref\":\"burst-$i\",\"workflow\":\"burst\"}"
    b=$(json record_id)
    [ $i = 1 ] || { echo next >>"$tmp/burst.cfg"; echo next >>"$tmp/open.cfg"; }
    printf 'url = "%s/v1/records/%s/transitions"\ndata = "{\\"to\\":\\"merged\\",\\"trigger\\":\\"m\\",\\"actor\\":\\"swarm\\"}"\nheader = "Content-Type: application/json"\noutput = "%s/burst.%d"\nwrite-out = "%%{http_code}\\n"\n' \
        "$BASE" "$b" "$tmp" $i >>"$tmp/burst.cfg"
    printf 'url = "%s/v1/records"\ndata = "{\\"ref\\":\\"open-%d\\",\\"workflow\\":\\"burst_open\\",\\"actor\\":\\"swarm\\"}"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
        "$BASE" $i >>"$tmp/open.cfg"
done
codes=$(curl -sS --no-progress-meter --parallel --parallel-max 30 -K "$tmp/burst.cfg" | sort | uniq -c | tr -s ' ' | tr '\n' ,)
check "redis: 30 moves at once by one actor with a budget of 3: 3 pass, 27 refused ($codes)" \
    test "$codes" = " 3 200, 27 403,"
check "… each refusal names the budget" \
    test "$(grep -l '"error":"Denied by policy budget:merged: budget spent: actor swarm made 3 transitions' "$tmp"/burst.* | wc -l)" = 27
req GET '/v1/audit?limit=1000'
check "… and is in the log, as one after another would be" \
    test "$(printf '%s' "$out" | grep -o '"kind":"denied","version":[0-9]*,"from_state":"new","to_state":"merged","trigger":"m","actor":"swarm"' | wc -l)" = 27
codes=$(curl -sS --no-progress-meter --parallel --parallel-max 30 -K "$tmp/open.cfg" | sort | uniq -c | tr -s ' ' | tr '\n' ,)
check "redis: 30 creates at once with open_records 3: 3 made, 27 refused ($codes)" \
    test "$codes" = " 3 201, 27 403,"
stop_server

done_testing
