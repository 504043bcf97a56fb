#!/bin/sh
# The console's server side (issue 13): its files under /ui/, the
# workflows as data and as Graphviz SVG, and the live event stream
# GET /v1/events -- over a real `loopforge serve`. (The pages themselves
# are driven in a real browser by tests/cli/browser.sh.)
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
LOOPFORGE_UI=$ROOT/ui
export LOOPFORGE_UI
start_server --store "file:$tmp/j" --policies "$SHIPPED" || not_ok "serve starts"

req GET /
expect_status "/ redirects to the console" 302
check "… at /ui/" grep -qi '^Location: /ui/' "$tmp/headers"
req GET /ui/
expect_status "GET /ui/ serves the console's page" 200
check "… as HTML" grep -qi '^Content-Type: text/html' "$tmp/headers"
req GET /ui/nope.html
expect_status "an unknown console file: 404" 404
req GET /ui/.secret.js
expect_status "a dot file is never served" 404

req GET /v1/workflows
expect_status "GET /v1/workflows" 200
check "… names every state of loopforge in order" sh -c \
    "printf '%s' '$out' | grep -q '\"name\":\"loopforge\",\"initial\":\"issue_created\",\"states\":\\[\"issue_created\",\"task_queued\",\"pr_created\"'"
check "… and the guards that stand on an edge" sh -c \
    "printf '%s' '$out' | grep -q '{\"from\":\"approved\",\"to\":\"merged\",\"engine\":false,\"guards\":\\[[^]]*\"blocking-labels\"'"
check "… and marks the engine's own edges" sh -c \
    "printf '%s' '$out' | grep -q '{\"from\":\"ci_failed\",\"to\":\"escalated\",\"engine\":true'"

req GET /v1/workflows/loopforge/graph.svg
expect_status "GET /v1/workflows/loopforge/graph.svg" 200
check "… an SVG" grep -qi '^Content-Type: image/svg+xml' "$tmp/headers"
check "… drawn by Graphviz, each state's node named state-NAME" \
    grep -q 'id="state&#45;awaiting_review" class="node"' "$tmp/body"
check "… each edge edge-FROM-TO" grep -q 'id="edge&#45;approved&#45;merged" class="edge"' "$tmp/body"
req GET /v1/workflows/nope/graph.svg
expect_status "an unknown workflow: 404" 404

# The event stream: what the server commits from now on, as it happens.
# curl writes it into a fifo; reading the fifo blocks until the server has
# sent the next lines, so nothing here waits by the clock.
# open_stream: starts a reader of /v1/events on fd 7 and reads its hello.
open_stream() {
    rm -f "$tmp/ev.fifo"
    mkfifo "$tmp/ev.fifo"
    curl -sN --max-time 60 "$BASE/v1/events" >"$tmp/ev.fifo" 2>/dev/null &
    cpid=$!
    exec 7<"$tmp/ev.fifo"
    IFS= read -r hello <&7
}
open_stream
check "GET /v1/events opens with a comment line" test "$hello" = ": loopforge events"
req POST /v1/records '{"ref":"o/r#1","repo":"o/r"}'
id=$(json record_id)
req POST "/v1/records/$id/transitions" '{"to":"task_queued","trigger":"worker.picked_up"}'
: >"$tmp/events"
while IFS= read -r line <&7; do
    printf '%s\n' "$line" >>"$tmp/events"
    case $line in *'"to_state":"task_queued"'*) break ;; esac
done
kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
exec 7<&-
check "GET /v1/events streams the creation" grep -q "^data: {\"seq\":[0-9]*,\"record_id\":\"$id\",\"kind\":\"created\"" "$tmp/events"
check "… and the transition, as an event with its seq as id" sh -c \
    "grep -B2 '\"to_state\":\"task_queued\"' '$tmp/events' | grep -q '^event: entry'"
check "… in order" sh -c "grep -n '$id' '$tmp/events' | head -1 | grep -q created"
req GET /v1/records/$id
expect_status "the server still answers after a client left the stream" 200
open_stream
stop_server
cat <&7 >/dev/null             # returns at the end of the stream
exec 7<&-
wait "$cpid"
expect_match "a draining server ends an open stream (the client sees it end cleanly)" rc "$?" '^0$'
expect_match "a server with a stream open stops cleanly" rc "$STOP_RC" '^0$'

# The audit's health: when the policy set was loaded, the last checkpoint.
run keygen --out "$tmp/k"
start_server --store "file:$tmp/j" --policies "$SHIPPED" --signing-key "$tmp/k.key" \
    --checkpoint-every 1 || not_ok "serve with a key starts"
req GET /v1/policies
expect_match "/v1/policies says when the set was loaded" body "$out" '"loaded_at":"[0-9T:.-]+Z"}$'
req GET /v1/checkpoints/latest
expect_status "no checkpoint signed yet: 404" 404
req POST /v1/records '{"ref":"o/r#2"}'
i=0
until [ "$status" = 200 ] || [ $i -ge 500 ]; do
    i=$((i + 1))
    req GET /v1/checkpoints/latest
done
expect_status "after an entry, the server signs one: GET /v1/checkpoints/latest" 200
expect_match "… the signed document" body "$out" '"checkpoint":\{.*"signature":"[A-Za-z0-9+/=]+"'
stop_server

# --checkpoint-every N: one as soon as N entries are uncovered, not once a
# second at the tick: 200 records created in one go, a checkpoint of every
# 10 (signed off the loop, so some land a few entries late).
start_server --store "file:$tmp/j2" --policies "$SHIPPED" --signing-key "$tmp/k.key" \
    --checkpoint-every 10 --checkpoint-seconds 86400 || not_ok "serve with a key starts"
created=$(bulk_creates 200 'o/r#' | grep -c '^201$')
expect_match "200 records created" created "$created" '^200$'
stop_server
cps=$(grep -c '"kind":"checkpoint"' "$tmp/j2")
check "… and at least 19 checkpoints (one per 10 entries), not one a second ($cps)" \
    test "$cps" -ge 19
run --policies "$SHIPPED" --store "file:$tmp/j2" audit --verify --key "$tmp/k.pub"
expect_rc "… the log verifies with the key" 0

# With tokens: the console's files are public (they hold no data), the
# data and the stream are not.
TOKENS="$tmp/tokens"
run token viewer read --tokens "$TOKENS"; tok=$out
start_server --store "file:$tmp/j" --policies "$SHIPPED" --tokens "$TOKENS" ||
    not_ok "serve with tokens starts"
req GET /ui/
expect_status "with tokens, /ui/ is served without one" 200
req GET /v1/events
expect_status "… /v1/events is not: 401" 401
req GET /v1/workflows
expect_status "… nor /v1/workflows" 401
AUTH="Bearer $tok"
req GET /v1/workflows
expect_status "… with a read token: 200" 200
AUTH=
stop_server
done_testing
