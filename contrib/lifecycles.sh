#!/bin/sh
# lifecycles.sh -- the two other lifecycles loopforge ships, from the
# shell (part of `make walk`): one Factory task whose failed stage is
# retried after its backoff, and one Specfuse feature worked through a gate
# whose work units close it by themselves.
#
#   sh contrib/lifecycles.sh PATH-TO-LOOPFORGE
#
# Every command is printed before it runs. Time is moved with `tick --now`
# (what `loopforge serve` does every second by itself). The store is
# $LOOPFORGE_STORE, else file:./var/lifecycles.journal; each run adds
# records with fresh refs.
set -u
LF=${1:?usage: sh contrib/lifecycles.sh PATH-TO-LOOPFORGE}
case $LF in */*) ;; *) LF=./$LF ;; esac
export LOOPFORGE_STORE=${LOOPFORGE_STORE:-file:./var/lifecycles.journal}

say() { printf '\n# %s\n' "$*"; }
# step ARGS...: print, run, stop the walk if it fails; the output is in $out.
step() {
    printf '$ loopforge %s\n' "$*"
    out=$("$LF" "$@") || { echo "lifecycles: 'loopforge $*' failed (exit $?)" >&2; exit 1; }
    [ -n "$out" ] && printf '%s\n' "$out"
    return 0
}
n=$(( $("$LF" audit 2>/dev/null | grep -c '"kind":"created"') + 1 ))
later=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)

echo "loopforge lifecycles: Factory's task pipeline and Specfuse's gate cycle, on $LOOPFORGE_STORE"

say "Factory: a task goes through nine declared stages (policies/workflows/factory.lua)."
step create --ref "factory/task-$n" --workflow factory
task=$out
step transition "$task" in_progress start
for s in implement unit_test coverage; do step transition "$task" "$s" stage.passed; done
say "Lint fails: the stage has 3 retries with a 30s backoff, doubling."
step transition "$task" lint lint.started
step transition "$task" lint_failed lint.failed
step timers
say "A day later the tick retries it (serve ticks every second by itself)."
step tick --now "$later"
for s in static integration security review accept passed_pipeline integrated; do
    step transition "$task" "$s" stage.passed
done

say "Specfuse: a feature, a gate a gatekeeper arms, two work units (policies/workflows/specfuse.lua)."
step create --ref "specfuse/feature-$n" --workflow specfuse-feature
feature=$out
step transition "$feature" in_progress start
step create --ref "specfuse/feature-$n/gate-1" --workflow specfuse-gate --parent "$feature"
gate=$out
say "Only a gatekeeper arms a gate (exit 5 otherwise):"
printf '$ loopforge transition %s armed arm\n' "$gate"
"$LF" transition "$gate" armed arm || echo "(exit $?)"
step transition "$gate" armed arm --role gatekeeper
step transition "$gate" running go
step create --ref "specfuse/feature-$n/gate-1/unit-1" --workflow specfuse-unit --parent "$gate"
u1=$out
step create --ref "specfuse/feature-$n/gate-1/unit-2" --workflow specfuse-unit --parent "$gate"
u2=$out
step list --parent "$gate"
say "The gate cannot close while a unit is open; explain says why."
step explain "$gate"
for u in "$u1" "$u2"; do
    step transition "$u" dispatched dispatch
    step transition "$u" verifying verify
    step transition "$u" done verified
done
say "Every unit is done: the gate closed by itself, and so did the feature (its only gate)."
for id in "$gate" "$feature"; do
    printf '$ loopforge show %s --json | grep -o state\n' "$id"
    "$LF" show "$id" --json | grep -o '"state":"[a-z_]*"' | head -1
done
