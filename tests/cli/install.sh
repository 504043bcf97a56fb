#!/bin/sh
# `make install` into a temporary prefix: every file the issue names is
# there, and a program compiles and links against the *installed* header
# and library through pkg-config alone, and runs.
. tests/cli/tap.inc
prefix="$tmp/prefix"
( cd "$ROOT" && make -s install PREFIX="$prefix" ) >"$tmp/out" 2>"$tmp/err"
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
done_testing
