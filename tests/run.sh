#!/bin/sh
# Runs every test and prints one closing line "N passed, N failed"
# (", K skipped" follows when a suite could not run here).
#
# Each suite speaks TAP ("ok N - name" / "not ok N - name"): cmocka via
# CMOCKA_MESSAGE_OUTPUT=TAP, busted via -o TAP, the shell suites by hand.
# A suite that exits non-zero without reporting a failure (a crash, an
# ASan report) counts as one failure, so nothing fails silently.
# Usage: tests/run.sh C-TEST-BINARY...   (LOOPFORGE_BIN names the CLI)
cd "$(dirname "$0")/.." || exit 1
export CMOCKA_MESSAGE_OUTPUT=TAP
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log=$(mktemp -d)
passed=0 failed=0 skipped=0

run_suite() {       # name, command...
    name=$1; shift
    out="$log/$(echo "$name" | tr '/ ' '__').out"
    "$@" >"$out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$out")
    f=$(grep -c '^not ok ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name exited $rc" >>"$out"; fi
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok - $name ran no test" >>"$out"; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        echo "FAIL $name ($p passed, $f failed)"; grep -v '^ok ' "$out" | tail -40 | sed 's/^/    /'
    else
        echo "ok   $name ($p passed)"
    fi
}

for t in "$@"; do run_suite "$(basename "$t")" "$t"; done
for t in tests/cli/*.sh; do [ -f "$t" ] && run_suite "cli/$(basename "$t" .sh)" sh "$t"; done
if ls spec/*_spec.lua >/dev/null 2>&1; then
    run_suite busted busted --lua=lua5.4 -o TAP
fi

# The route suites above read the repository's own payloads
# (tests/fixtures/github). Where GitHub's published examples lie beside
# the repository (../shared/fixtures/github, as in our checkouts and CI),
# the same suites run again over them, unedited; elsewhere they count as
# skipped, said once.
published=../shared/fixtures/github
if [ -f "$published/issues.opened.json" ]; then
    published=$(cd "$published" && pwd)
    for t in "$@"; do
        case $t in */test_routes)
            run_suite "published/test_routes" env LOOPFORGE_FIXTURES="$published" "$t" ;;
        esac
    done
    run_suite "published/cli/http_webhook" env LOOPFORGE_FIXTURES="$published" \
        LOOPFORGE_FIXTURES_PUBLISHED=1 sh tests/cli/http_webhook.sh
    run_suite "published/busted routes" env LOOPFORGE_FIXTURES="$published" \
        busted --lua=lua5.4 -o TAP spec/routes_spec.lua
else
    skipped=3
    echo "skip published/test_routes, published/cli/http_webhook, published/busted routes:" \
        "$published is not beside the repository (GitHub's published examples;" \
        "the same suites ran over tests/fixtures/github)"
fi
rm -rf "$log"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
