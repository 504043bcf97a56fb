#!/bin/sh
# The repository by itself: what a user who clones it gets, with nothing
# beside it (no ../shared). The suites that read webhook payloads run
# from such a copy and must pass there, and `make run`'s printed webhook
# example must work as printed.
#
# The copy holds what a clone of this work tree would hold: every file
# git tracks or would track (`git ls-files -co --exclude-standard`), so
# uncommitted work is tested too. It is made in a fresh temp dir whose
# parent has no shared/ folder. The binaries are the ones under test
# (LOOPFORGE_BIN, the ASan test_routes, the Lua module): what is checked
# is that no test or example reaches outside the repository.
. tests/cli/tap.inc
if ! git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    ok "# SKIP not a git work tree: nothing to clone"
    done_testing
    exit 0
fi
clone=$tmp/clone/loopforge
mkdir -p "$clone"
( cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$clone" ) \
    2>"$tmp/err"
rc=$?
expect_rc "the work tree copies as a clone would" 0
check "… with nothing beside it" test ! -e "$tmp/clone/shared"
check "… and the repository's own payloads in it" test -f "$clone/tests/fixtures/github/issues.opened.json"

# ---- the suites that read payloads, from the copy ----
suite() {   # NAME COMMAND...: runs in the copy, passes when the suite passed
    name=$1; shift
    ( cd "$clone" && env -u LOOPFORGE_FIXTURES -u LOOPFORGE_FIXTURES_PUBLISHED "$@" ) \
        >"$tmp/suite.out" 2>&1
    rc=$?
    n=$(grep -c '^ok ' "$tmp/suite.out")
    bad=$(grep '^not ok ' "$tmp/suite.out" | head -5)
    if [ "$rc" -eq 0 ] && [ "$n" -gt 0 ] && [ -z "$bad" ]; then
        ok "$name passes in the clone ($n tests)"
    else
        not_ok "$name passes in the clone" "$bad" "$(tail -5 "$tmp/suite.out")"
    fi
}
routes_bin=$(dirname "$LOOPFORGE_BIN")/tests/test_routes
if [ -x "$routes_bin" ]; then
    suite test_routes env CMOCKA_MESSAGE_OUTPUT=TAP "$routes_bin"
else
    not_ok "test_routes is built beside the CLI ($routes_bin)"
fi
suite cli/http_webhook env LOOPFORGE_BIN="$LOOPFORGE_BIN" sh tests/cli/http_webhook.sh
suite "busted routes" env LUA_CPATH="$ROOT/build/lua/?.so;;" \
    busted --lua=lua5.4 -o TAP --cpath="$ROOT/build/lua/?.so" spec/routes_spec.lua

# ---- make run's webhook example, as printed ----
# contrib/serve.sh is what `make run` runs after building; its output is
# read through a fifo up to the end of the printed webhook example.
fifo=$tmp/serve.fifo
mkfifo "$fifo"
( cd "$clone" && exec env LOOPFORGE_LISTEN=127.0.0.1:0 sh contrib/serve.sh "$LOOPFORGE_BIN" ) \
    >"$fifo" 2>"$tmp/serve.err" &
spid=$!
: >"$tmp/printed"
while IFS= read -r line; do
    printf '%s\n' "$line" >>"$tmp/printed"
    case $line in *--data-binary*) break ;; esac
done <"$fifo"
# The example: from its "f=" line to the curl's last line.
sed -n '/^  f=/,/--data-binary/p' "$tmp/printed" >"$tmp/example.sh"
check "make run prints a webhook example" grep -q 'X-Hub-Signature-256' "$tmp/example.sh"
payload=$(sed -n 's/^  f=\([^ ]*\).*/\1/p' "$tmp/example.sh")
check "… whose payload is a file of the repository ($payload)" test -f "$clone/$payload"
out=$(cd "$clone" && sh "$tmp/example.sh" 2>&1)
expect_json "… and that, run as printed, creates a record" results/1/to issue_created
kill -TERM "$spid" 2>/dev/null
cat "$fifo" >/dev/null 2>&1 &
wait "$spid"
expect_match "serve.sh stops on TERM with 0" rc "$?" '^0$'
done_testing
