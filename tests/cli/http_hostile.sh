#!/bin/sh
# Hostile policies against a real server: a guard that catches its own
# budget error with pcall inside an endless loop, the same loop at the
# top of a policy file (reload, SIGHUP, lint). The budget cannot be
# caught from Lua, so each ends with a clear error, the server keeps
# answering /healthz while and after the guard runs, and a bad reload
# keeps the policies that were loaded.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=file:$tmp/j
POL=$tmp/hostile
mkdir -p "$POL/workflows" "$POL/guards"
cp "$SHIPPED"/workflows/*.lua "$POL/workflows/"
cat >"$POL/guards/spin.lua" <<'LUA'
return policy {
  name = "spin",
  on = { trigger = "spin" },
  check = function()
    while true do pcall(function() while true do end end) end
  end,
}
LUA
cat >"$POL/guards/bomb.lua" <<'LUA'
return policy {
  name = "bomb",
  on = { trigger = "bomb" },
  check = function()
    while true do
      pcall(function() local t = {} while true do t[#t + 1] = ("x"):rep(4096) .. #t end end)
    end
  end,
}
LUA

start_server --store "$STORE" --policies "$POL" || not_ok "serve starts with hostile guards"
req POST /v1/records '{"ref":"hostile-1"}'
id=$(json record_id)

# The hostile request runs while /healthz is asked: with one event loop,
# /healthz answers once the guard has been stopped -- within the bound.
curl -sS --max-time 30 -o "$tmp/spin.body" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -d '{"to":"task_queued","trigger":"spin"}' \
    "$BASE/v1/records/$id/transitions" >"$tmp/spin.status" 2>&1 &
spin=$!
hstatus=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$BASE/healthz" 2>&1)
expect_match "/healthz answers within 10 s while the pcall loop runs" healthz "$hstatus" '^200$'
wait "$spin"
out=$(cat "$tmp/spin.body")
expect_match "the pcall-in-a-loop guard is stopped: 403" status "$(cat "$tmp/spin.status")" '^403$'
expect_json "… code denied" code denied
match_out "… saying the budget ran out, at the guard's line" 'guards/spin.lua:5: instruction budget exceeded'
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"bomb"}'
expect_status "a memory bomb under pcall is stopped: 403" 403
# Under a loaded machine the wall-clock budget may run out before the
# memory does: either stops it, uncaught.
match_out "… not enough memory (or, on a loaded machine, out of time)" \
    'not enough memory|time budget exceeded'
req GET /healthz
expect_status "/healthz after both" 200
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"worker.picked_up"}'
expect_status "… and other requests still commit" 200
expect_json "… task_queued" record/state task_queued

# ---- the same loop at the top of a file ----
cat >"$POL/guards/top.lua" <<'LUA'
local n = 0
while true do pcall(function() while true do n = n + 1 end end) end
LUA
req POST /v1/admin/reload
expect_status "a reload with the loop at a file's top ends: 422" 422
match_out "… naming the file and line" 'guards/top.lua:2: instruction budget exceeded'
kill -HUP "$PID"
req GET /healthz
expect_status "SIGHUP with it: the server still answers" 200
req GET /v1/policies
match_out "… and keeps the policies it had" '"spin"'
stop_server
expect_match "serve stops with 0" rc "$STOP_RC" '^0$'

run --policies "$POL" lint
expect_rc "lint on that directory ends, exit 2 (it does not load)" 2
match_err "… with the same error" 'guards/top.lua:2: instruction budget exceeded'
done_testing
