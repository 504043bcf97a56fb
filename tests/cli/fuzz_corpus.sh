#!/bin/sh
# Each fuzz target (tests/fuzz) once over its seed corpus, as `make test`
# builds them: plain programs under ASan and UBSan. The corpus is made
# from the repository's fixtures and a journal written here
# (tests/fuzz/corpus.sh), plus tests/fuzz/regressions/<target>/ (inputs
# that once crashed a target); `make fuzz` explores from the same seeds.
. tests/cli/tap.inc
FUZZ=$(dirname "$LOOPFORGE_BIN")/fuzz
( cd "$ROOT" && sh tests/fuzz/corpus.sh "$tmp/seeds" "$LOOPFORGE_BIN" ) 2>"$tmp/err"
rc=$?
expect_rc "the seed corpus is made" 0
for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    target=${name#fuzz_}
    # inputs that once crashed it (tests/fuzz/regressions) run too
    reg="$ROOT/tests/fuzz/regressions/$target"
    [ -d "$reg" ] || reg=
    seeds=$(find "$tmp/seeds/$target" ${reg:+"$reg"} -type f 2>/dev/null | wc -l)
    if [ ! -x "$FUZZ/$name" ]; then
        not_ok "$name is built ($FUZZ/$name)"
        continue
    fi
    ( cd "$ROOT" && "$FUZZ/$name" "$tmp/seeds/$target" ${reg:+"$reg"} ) >"$tmp/out" 2>"$tmp/err"
    rc=$?
    n=$(grep -c '^ok ' "$tmp/out")
    if [ "$rc" -eq 0 ] && [ "$n" -gt 0 ] && [ "$n" -eq "$seeds" ] && ! grep -q Sanitizer "$tmp/err"; then
        ok "$name runs clean over its $n seeds"
    else
        not_ok "$name runs clean over its seeds ($n of $seeds)" "$(tail -5 "$tmp/err")"
    fi
done
done_testing
