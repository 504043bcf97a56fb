#!/usr/bin/env python3
"""bench-reference.py -- the reference's leg of `make bench`: Python
LoopForge (github.com/fenderfonic/loopforge, MIT, `pip install loopforge`;
it needs pydantic >= 2) running the same workload as `loopforge bench`'s
memory: lines -- N records created and each walked through the
6-transition happy path on its in-memory repository, best of R runs,
timed per transition (6 x N), creates included -- and, given that bench's
output, loopforge's rates as multiples of it, measured in the same run.

  python3 contrib/bench-reference.py [--records N] [--runs R]
                                     [--path DIR] [--against FILE]

--path DIR puts a checkout's src/ (DIR) first on the import path.
--against FILE reads `memory:` and `memory+policies:` transitions/s from
a `loopforge bench` output and prints each over the reference's rate
(issue targets: >= 20x and >= 15x). Without the reference (or with a
pydantic older than 2) it says so and how to get it, and exits 0: the
rest of `make bench` does not depend on it. Exit 2: bad arguments or an
--against file without the memory: lines.
"""
import argparse
import re
import sys
import time

HAPPY = [("task_queued", "worker.picked_up"), ("pr_created", "pr.opened"),
         ("ci_pending", "ci.started"), ("ci_passed", "ci.completed"),
         ("merged", "auto.merged"), ("closed", "issue.closed")]


def load(path):
    """The reference's service and repository, or None with why."""
    if path:
        sys.path.insert(0, path)
    try:
        import pydantic
        from loopforge.service import LoopService
        from loopforge.repository import MemoryRepository
        from loopforge.states import LoopState
    except ImportError as e:
        return None, "not importable (%s)" % e
    major = str(getattr(pydantic, "VERSION", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 2:
        return None, "needs pydantic >= 2, found %s" % getattr(pydantic, "VERSION", "?")
    return (LoopService, MemoryRepository, LoopState), None


def workload(ref, n):
    """Seconds for n records through the happy path on a fresh service."""
    service_cls, repo_cls, state = ref
    svc = service_cls(repo_cls())
    steps = [(state(s), t) for s, t in HAPPY]
    t0 = time.perf_counter()
    for i in range(n):
        rec = svc.create(ref="bench-%d" % i, auto_merge=True)
        for to, trigger in steps:
            if not svc.transition(rec.record_id, to, trigger).success:
                raise SystemExit("bench-reference: record %d did not walk the path" % i)
    return time.perf_counter() - t0


def ours(path):
    """loopforge's memory: and memory+policies: transitions/s from a
    `loopforge bench` output."""
    rates = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^(memory|memory\+policies): ([0-9]+) transitions/s", line)
            if m:
                rates[m.group(1)] = int(m.group(2))
    if "memory" not in rates or "memory+policies" not in rates:
        sys.stderr.write("bench-reference: %s has no memory: and memory+policies: lines\n" % path)
        sys.exit(2)
    return rates


def main():
    ap = argparse.ArgumentParser(description="Python LoopForge's rate on loopforge bench's workload")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--path", help="a checkout's src/ directory, imported first")
    ap.add_argument("--against", help="a `loopforge bench` output to compare with")
    a = ap.parse_args()
    if a.records < 1 or a.runs < 1:
        ap.error("--records and --runs must be at least 1")
    mine = ours(a.against) if a.against else None
    ref, why = load(a.path)
    if not ref:
        print("reference: Python LoopForge %s: no comparison in this run "
              "(pip install loopforge, which brings pydantic 2; or --path a checkout's src/)" % why)
        return 0
    best = min(workload(ref, a.records) for _ in range(a.runs))
    rate = 6 * a.records / best
    print("reference: Python LoopForge %.0f transitions/s (%.0f ns/transition), best of %d runs"
          % (rate, 1e9 / rate, a.runs))
    if mine:
        print("reference: loopforge memory: %.1fx of it (target >= 20x), memory+policies: %.1fx "
              "(target >= 15x)" % (mine["memory"] / rate, mine["memory+policies"] / rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
