-- loopforge.lua -- the default workflow: LoopForge's lifecycle of a work
-- item, issue -> task -> PR -> CI -> review -> merge -> close.
--
-- How workflow files work
-- -----------------------
-- Every *.lua file under policies/workflows/ (subdirectories included, dot
-- files skipped) is loaded, in path order, into a sandbox: string, table,
-- math, utf8 and os.time/date/clock; no io, no require, no load. Each file
-- has its own globals. A file returns one workflow, or a list of them:
--
--     return workflow { ... }
--     return { workflow { ... }, workflow { ... } }
--
-- `workflow` is a built-in that remembers the line it was called on, so
-- every problem found later is reported as "file:line: message" pointing at
-- the `workflow {` line. A broken file rejects the whole policy directory:
-- the previous generation keeps serving until the files are fixed.
--
-- Fields (any other field is an error, which catches typos):
--   name      unique across all files; records name their workflow by it.
--             "loopforge" is the default workflow.
--   states    every state, as a list of names. Order is kept for display.
--   initial   the state a new record starts in. No edge may lead into it.
--   terminal  states a record never leaves (optional). No edge may leave
--             them; every other state needs at least one way out.
--   edges     the allowed transitions, as {from, to} pairs. Their order is
--             significant: an invalid transition's message lists the allowed
--             targets of a state in the order its edges appear here, e.g.
--             "Invalid transition: ci_passed → issue_created. Allowed from
--             ci_passed: merged, awaiting_review".
--   timers    durable timers (optional): a record that stays in a state for
--             the given time moves on by itself, along an edge it has:
--               timers = {
--                 awaiting_review = { { "48h", to = "escalated",
--                                       trigger = "review.sla_expired" } },
--               }
--             Durations: digits and s, m, h or d. Due at the time the record
--             entered the state plus the duration; leaving the state cancels
--             it; it fires as an ordinary request (guards, audit) by actor
--             "timer:<state>" -- see docs/policies.md, "Timers".
--   retries   retries with backoff, then escalation (optional):
--               retries = {
--                 ci_failed = { to = "ci_pending", trigger = "ci.retry", max = 3,
--                               backoff = { initial = "1m", factor = 2, max = "1h",
--                                           jitter = 0.1 },
--                               escalate_to = "escalated" },
--               }
--             Attempts are counted from the record's history (across
--             restarts); the edge state -> to must exist (state ->
--             escalate_to is added for the engine if it does not). jitter
--             (0..1, optional) moves each backoff by up to that fraction,
--             the same on every store for a record's attempt. Without a
--             backoff the retries are the caller's: the engine counts them,
--             refuses one past max and escalates.
--   stages    a pipeline in order (optional), expanded by the loader:
--               stages = { from = "in_progress", pass = "passed", fail = "failed",
--                          backoff = { initial = "30s", factor = 2, max = "1h" },
--                          { "implement", retries = 5 }, { "lint", retries = 3 } }
--             Each stage is a state reached from the one before (the first
--             from `from`, the last leads to `pass`); a stage with retries gets
--             a STAGE_failed state that goes back after the backoff, at most
--             that many times, then to `fail`.
--
--   roles     who may leave or enter a state (optional): an actor needs one
--             of the listed roles (from the token over HTTP, --role on the
--             CLI); checked before the guards, refused with exit 5:
--               roles = { escalated = { leave = { "maintainer" } } }
--   override  what break-glass needs here (optional): a co-signer, and a
--             review -- unless someone other than the actor who overrode
--             acknowledges it in time (`loopforge ack`), the record is moved
--             to escalate_to (engine edges from every state):
--               override = { co_signer = true, review = "24h",
--                            escalate_to = "escalated" }
--   budgets   how often one actor, or the person behind it (an agent counts
--             for its principal), may move records into a state, in a
--             sliding window (optional; refused with exit 5 and when the
--             budget frees up):
--               budgets = { merged = { { per = "principal", max = 10,
--                                        within = "1h" } } }
--   open_records  how many records of the workflow one actor, or the
--             person behind it, may hold open at once (optional; a create
--             past it is refused with exit 5):
--               open_records = { per = "principal", max = 5 }
--   children  what a record's children (records created with --parent ID)
--             must be in before it enters a state (optional); auto = true
--             moves it there by itself once they are:
--               children = { closed = { "done", "cancelled", auto = true } }
--             Guards of such a workflow see t.record.children (counts by
--             state). specfuse.lua is the worked example.
--
-- The loader also checks that every state is reachable from `initial`, that
-- there are no self-loops and no duplicate states or edges.
--
-- This file must behave exactly like the reference, LoopForge v0.1.0, for
-- every record that never escalates: the same 10 states and the same 12
-- edges in the same order (tests/test_workflow.c checks all 100 from/to
-- pairs and every message). One state is ours: `escalated`, reached only
-- when CI's retry budget is spent (the retry's escalation edge is the
-- engine's own: it is not listed in any "Allowed from" message), and left
-- only by a maintainer.

return workflow {
  name = "loopforge",

  states = {
    "issue_created",    -- an issue exists; nothing has picked it up yet
    "task_queued",      -- a worker has queued the task
    "pr_created",       -- a pull request is open
    "ci_pending",       -- CI is running on the PR
    "ci_passed",
    "ci_failed",
    "awaiting_review",  -- CI passed but a human review is required
    "approved",
    "merged",
    "closed",           -- the issue is closed: the end of the line
    "escalated",        -- CI's retry budget is spent: a person must look
  },

  initial = "issue_created",
  terminal = { "closed" },

  edges = {
    { "issue_created",   "task_queued" },
    { "task_queued",     "pr_created" },
    { "pr_created",      "ci_pending" },
    { "ci_pending",      "ci_passed" },
    { "ci_pending",      "ci_failed" },
    { "ci_passed",       "merged" },          -- auto-merge
    { "ci_passed",       "awaiting_review" },
    { "ci_failed",       "ci_pending" },      -- retry after a fix
    { "awaiting_review", "approved" },
    { "awaiting_review", "ci_pending" },      -- changes requested, CI again
    { "approved",        "merged" },
    { "merged",          "closed" },
    { "escalated",       "ci_pending" },      -- a maintainer retries after all
    { "escalated",       "closed" },          -- or gives the work up
  },

  -- CI may be re-run after a failure at most 3 times per record (the
  -- re-runs are the caller's: no backoff); on the 4th failure the record
  -- moves to `escalated` at once (trigger retry.exhausted), and a 4th
  -- re-run is refused (policy retries:ci_failed, exit 5).
  retries = {
    ci_failed = { to = "ci_pending", trigger = "ci.retry", max = 3,
                  escalate_to = "escalated" },
  },

  roles = {
    escalated = { leave = { "maintainer" } },
  },
}
