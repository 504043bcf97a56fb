#!/bin/sh
# contrib/bench-reference.py, the reference's leg of `make bench`, on a
# stand-in for Python LoopForge (the same API: LoopService over a
# MemoryRepository, LoopState, a pydantic VERSION), so that no network
# is needed, beside the real loopforge: each round runs loopforge's
# memory: bench on the workflows alone and on the given policies, and the
# reference, which must walk every record through the happy path; it
# prints both rates and their ratio; without the reference, or with a
# pydantic before 2, it says why and exits 0. (The speeds themselves are
# `make bench`'s, never asserted here.)
. tests/cli/tap.inc
SCRIPT="$ROOT/contrib/bench-reference.py"
PY=$(command -v python3) || { echo "1..0 # SKIP no python3"; exit 0; }

# py ARGS...: runs the script; sets rc, out, err.
py() {
    "$PY" "$SCRIPT" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

# A stand-in reference: every transition must be the next on the happy
# path, or the script's walk fails; it counts what it was asked.
fake() {    # DIR PYDANTIC-VERSION
    mkdir -p "$1/pydantic" "$1/loopforge"
    echo "VERSION = \"$2\"" >"$1/pydantic/__init__.py"
    : >"$1/loopforge/__init__.py"
    cat >"$1/loopforge/states.py" <<'PY'
from enum import Enum
class LoopState(str, Enum):
    ISSUE_CREATED = "issue_created"; TASK_QUEUED = "task_queued"; PR_CREATED = "pr_created"
    CI_PENDING = "ci_pending"; CI_PASSED = "ci_passed"; MERGED = "merged"; CLOSED = "closed"
PY
    cat >"$1/loopforge/repository.py" <<'PY'
class MemoryRepository:
    def __init__(self): self.records = {}
PY
    cat >"$1/loopforge/service.py" <<'PY'
import os
from types import SimpleNamespace
ORDER = ["issue_created", "task_queued", "pr_created", "ci_pending", "ci_passed", "merged", "closed"]
class LoopService:
    def __init__(self, repo): self.repo = repo
    def create(self, ref, auto_merge=False):
        r = SimpleNamespace(record_id="loop-%d" % len(self.repo.records), state=ORDER[0])
        self.repo.records[r.record_id] = r
        return r
    def transition(self, record_id, new_state, trigger, metadata=None):
        r = self.repo.records[record_id]
        ok = ORDER.index(new_state.value) == ORDER.index(r.state) + 1
        if ok: r.state = new_state.value
        if ok and r.state == "closed":
            with open(os.environ["CLOSED"], "a") as f: f.write(record_id + "\n")
        return SimpleNamespace(success=ok)
PY
}
fake "$tmp/v2" 2.7.1
fake "$tmp/v1" 1.10.4
export CLOSED="$tmp/closed"
mkdir "$tmp/t"
export TMPDIR="$tmp/t"
py --loopforge "$LOOPFORGE_BIN" --policies "$SHIPPED" --path "$tmp/v2" --records 3 --runs 1 \
    --rounds 2
expect_rc "the reference's leg exits 0" 0
match_out "it reports the reference's rate" \
    '^reference: Python LoopForge [0-9]+ transitions/s \([0-9]+ ns/transition\), best of 1 runs in 2 rounds$'
check "every record of every round walked the whole path" test "$(wc -l <"$tmp/closed")" -eq 6
match_out "loopforge's two rates beside it, each with its ratio and target" \
    "^reference: loopforge memory: [0-9]+ transitions/s = [0-9.]+x of it \(target >= 20x\); with the policy directory $SHIPPED: [0-9]+/s = [0-9.]+x \(target >= 15x\)$"
rate=$(printf '%s\n' "$out" | sed -n 's/^reference: Python LoopForge \([0-9]*\) transitions.*/\1/p')
ratio() {   # the printed multiple is the printed rate over the reference's
    printf '%s\n' "$out" | sed -n 's/^reference: loopforge memory: \([0-9]*\) transitions\/s = \([0-9.]*\)x.*/\1 \2/p' |
        awk -v r="$rate" '{ d = $2 - $1 / r; exit !(NF == 2 && d < 0.06 && d > -0.06) }'
}
check "… that ratio is loopforge's rate over the reference's" ratio
check "the workflows-only policy copy is removed" test -z "$(ls -A "$tmp/t")"
unset TMPDIR

py --path "$tmp/v1" --records 3
expect_rc "a pydantic before 2 is no failure" 0
expect_out "… it says what is missing and how to get it" \
    "reference: Python LoopForge needs pydantic >= 2, found 1.10.4: no comparison in this run (pip install loopforge, which brings pydantic 2; or --path a checkout's src/)"

py --path "$tmp/none" --records 3
expect_rc "no reference at all is no failure" 0
match_out "… and says so" "^reference: Python LoopForge not importable \(.*\): no comparison in this run"

py --loopforge "$tmp/no-such-binary" --policies "$SHIPPED" --path "$tmp/v2" --records 1 \
    --runs 1 --rounds 1
expect_rc "a loopforge that cannot run is a failure" 1
match_err "… naming it" "cannot run $tmp/no-such-binary"
py --records 0
expect_rc "--records 0 is a usage error" 2
done_testing
