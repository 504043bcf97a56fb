#!/bin/sh
# GitHub delivery patterns (issue 9) against a real server with the shipped
# policies and signed deliveries: the ordinary repository-webhook lifecycle
# (check suites, workflow runs, both, statuses) with no violation,
# close-before-merge, stale CI for a superseded head, a CI re-run after
# approval, repeated deliveries (at once and late), a replacement PR, a PR
# without an issue, fork CI found by sha, merges with failing CI or
# without approval (flagged on the merge entry), shuffled lifecycles, and
# no 5xx for any fixture shape. The scenarios are in github_scenarios.lua;
# this starts the server on $HTTP_STORE (the journal by default;
# http_redis.sh runs it again on Redis) and relays their TAP.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
SECRET="scenario secret"
printf '%s' "$SECRET" >"$tmp/secret"

run_on() {
    start_server --store "$1" --policies "$SHIPPED" --webhook-secret-file "$tmp/secret" ||
        { not_ok "serve starts on $1"; return; }
    mkdir -p "$tmp/s"
    lua5.4 "$ROOT/tests/cli/github_scenarios.lua" "$BASE" "$SECRET" "$FIX" "$tmp/s" >"$tmp/tap" 2>&1
    rc=$?
    # Renumber into this suite's TAP, naming the store.
    while IFS= read -r line; do
        case $line in
        "ok "*) ok "${line#ok * - }" ;;
        "not ok "*) not_ok "${line#not ok * - }" ;;
        "#"*) echo "$line" ;;
        esac
    done <"$tmp/tap"
    [ "$rc" -eq 0 ] || grep -v '^\(ok\|not ok\|#\|1\.\.\)' "$tmp/tap" | head -20 | sed 's/^/#   /'
    req GET /metrics
    match_out "metrics count unchanged and stale deliveries apart" \
        'loopforge_webhook_deliveries_total\{event="[a-z_]*",result="stale"\} [1-9]'
    stop_server
}

run_on "${HTTP_STORE:-file:$tmp/journal}"
done_testing
