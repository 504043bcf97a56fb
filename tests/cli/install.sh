#!/bin/sh
# `make install` into a temporary prefix: every file the issue names is
# there, and a program compiles and links against the *installed* header
# and library through pkg-config alone, and runs.
. tests/cli/tap.inc
prefix="$tmp/prefix"
( cd "$ROOT" && make -s all && make -s install PREFIX="$prefix" ) >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "make install PREFIX=… exits 0" 0
for f in bin/loopforge include/loopforge.h lib/libloopforge.a lib/libloopforge.so \
         lib/libloopforge.so.0 lib/pkgconfig/loopforge.pc \
         lib/lua/5.4/loopforge/core.so share/lua/5.4/loopforge/testing.lua \
         share/loopforge/policies/workflows/loopforge.lua \
         share/loopforge/policies/guards/no-self-approval.lua; do
    check "installed $f" test -e "$prefix/$f"
done
check "no internal header is installed" test ! -e "$prefix/include/record.h"

# The shared library exports the API (LF_API in loopforge.h) and nothing else.
sed -n 's/^LF_API .*[ *]\(lf_[a-z_0-9]*\)(.*/\1/p' "$prefix/include/loopforge.h" | sort >"$tmp/api"
nm -D --defined-only "$prefix/lib/libloopforge.so.0" | awk '$2 == "T" { print $3 }' | sort >"$tmp/exported"
check "the header declares the API ($(wc -l <"$tmp/api") functions)" test "$(wc -l <"$tmp/api")" -gt 20
check "libloopforge.so exports exactly those" cmp -s "$tmp/api" "$tmp/exported"
check "pkg-config's version is the header's" sh -c "grep -q \"^Version: \$(sed -n 's/^#define LF_VERSION_STRING \"\\(.*\\)\"/\\1/p' '$prefix/include/loopforge.h')\$\" '$prefix/lib/pkgconfig/loopforge.pc'"

cat >"$tmp/hello.c" <<'C'
#include <loopforge.h>
#include <stdio.h>
#include <string.h>
static void done(const lf_result *r, void *arg) {
    *(int *)arg = r->success && strcmp(r->new_state, "issue_created") == 0;
}
int main(void) {
    char err[512];
    lf_engine_config cfg = {.store = "memory:"};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) { fprintf(stderr, "%s\n", err); return 1; }
    int ok = 0;
    lf_create_req req = {.ref = "https://github.com/o/r/issues/1"};
    lf_engine_create(e, &req, done, &ok);
    printf("%s %s\n", lf_version(), ok ? "created" : "failed");
    lf_engine_free(e);
    return !ok;
}
C
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -o "$tmp/hello" "$tmp/hello.c" \
    $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs --static loopforge) \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "a program compiles against the installed header and library" 0
LD_LIBRARY_PATH="$prefix/lib" LOOPFORGE_POLICIES="$prefix/share/loopforge/policies" "$tmp/hello" >"$tmp/out" 2>"$tmp/err"
rc=$?; out=$(cat "$tmp/out")
expect_rc "it runs with the installed policies" 0
match_out "and creates a record" '^0\.1\.0 created$'
"$prefix/bin/loopforge" --policies "$prefix/share/loopforge/policies" lint >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "the installed binary lints the installed policies" 0
# After a plain `make` (another PREFIX), from a directory with no policies:
# the installed binary finds the data where it was installed.
( cd / && env -u LOOPFORGE_POLICIES "$prefix/bin/loopforge" lint --json ) >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc "… and finds them by itself, run from /" 0
out=$(cat "$tmp/out")
match_out "… its own installed policies" "\"$prefix/share/loopforge/policies/workflows/loopforge.lua\""
done_testing
