#!/usr/bin/env python3
"""bench-reference.py -- the reference's leg of `make bench`: Python
LoopForge (github.com/fenderfonic/loopforge, MIT, `pip install loopforge`;
it needs pydantic >= 2) and loopforge's memory: store on the same
workload, in turns, in the same run: N records created and each walked
through the 6-transition happy path, timed per transition (6 x N),
creates included; the best of R runs for each, over K rounds that
alternate between them, so that a slow moment of the machine falls on
both. loopforge runs `bench --store memory: --json` twice a round: on
the workflows alone (the reference has no policies) and on the policy
directory given (the shipped policies).

  python3 contrib/bench-reference.py [--loopforge BIN] [--policies DIR]
                                     [--records N] [--runs R] [--rounds K]
                                     [--path DIR]

--path DIR puts a checkout's src/ (DIR) first on the import path. Without
the reference (or with a pydantic older than 2) it says so and how to get
it, and exits 0: the rest of `make bench` does not depend on it. Exit 1:
loopforge's bench failed; 2: bad arguments.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def reference_rate(ref, n, runs):
    """Transitions/s of the best of `runs` runs on a fresh service each."""
    service_cls, repo_cls, state = ref
    steps = [(state(s), t) for s, t in HAPPY]
    best = None
    for _ in range(runs):
        svc = service_cls(repo_cls())
        t0 = time.perf_counter()
        for i in range(n):
            rec = svc.create(ref="bench-%d" % i, auto_merge=True)
            for to, trigger in steps:
                if not svc.transition(rec.record_id, to, trigger).success:
                    sys.exit("bench-reference: record %d did not walk the path" % i)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return 6 * n / best


def ours_rate(binary, policies, n, runs):
    """loopforge's memory: transitions/s (its bench: best of `runs`)."""
    cmd = [binary, "--policies", policies, "bench", "--records", str(n), "--runs", str(runs),
           "--store", "memory:", "--json"]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        sys.stderr.write("bench-reference: cannot run %s: %s\n" % (binary, e.strerror))
        sys.exit(1)
    try:
        return float(json.loads(p.stdout)["stores"][0]["transitions_per_s"])
    except (ValueError, KeyError, IndexError, TypeError):
        sys.stderr.write("bench-reference: %s failed (exit %d): %s\n"
                         % (" ".join(cmd), p.returncode, p.stderr.strip()[-300:]))
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(
        description="Python LoopForge beside loopforge's memory: store, same workload, same run")
    ap.add_argument("--loopforge", default="build/loopforge", help="the loopforge binary")
    ap.add_argument("--policies", default="policies", help="the policy directory (shipped)")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--path", help="a checkout's src/ directory, imported first")
    a = ap.parse_args()
    if a.records < 1 or a.runs < 1 or a.rounds < 1:
        ap.error("--records, --runs and --rounds must be at least 1")
    ref, why = load(a.path)
    if not ref:
        print("reference: Python LoopForge %s: no comparison in this run "
              "(pip install loopforge, which brings pydantic 2; or --path a checkout's src/)" % why)
        return 0
    if not os.path.isdir(os.path.join(a.policies, "workflows")):
        ap.error("--policies %s has no workflows/ directory" % a.policies)
    bare = tempfile.mkdtemp(prefix="loopforge-reference-")
    try:
        shutil.copytree(os.path.join(a.policies, "workflows"), os.path.join(bare, "workflows"))
        theirs = plain = shipped = 0.0
        for _ in range(a.rounds):
            plain = max(plain, ours_rate(a.loopforge, bare, a.records, a.runs))
            shipped = max(shipped, ours_rate(a.loopforge, a.policies, a.records, a.runs))
            theirs = max(theirs, reference_rate(ref, a.records, a.runs))
    finally:
        shutil.rmtree(bare, ignore_errors=True)
    print("reference: Python LoopForge %.0f transitions/s (%.0f ns/transition), best of %d runs "
          "in %d rounds" % (theirs, 1e9 / theirs, a.runs, a.rounds))
    print("reference: loopforge memory: %.0f transitions/s = %.1fx of it (target >= 20x); "
          "with the policy directory %s: %.0f/s = %.1fx (target >= 15x)"
          % (plain, plain / theirs, a.policies, shipped, shipped / theirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
