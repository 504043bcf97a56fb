-- specfuse.lua -- Specfuse's gate cycle as three workflows of related
-- records: a feature is worked through gates, one after another, and each
-- gate through work units.
--
--   feature  specfuse-feature   open -> in_progress -> done
--     gate   specfuse-gate      pending -> armed -> running -> closed
--       unit specfuse-unit      queued -> dispatched -> verifying -> done
--
-- A gate and a unit are created with `--parent` (the feature, the gate):
--
--   loopforge create --ref feat-1 --workflow specfuse-feature
--   loopforge create --ref feat-1/g1 --workflow specfuse-gate --parent FEATURE
--   loopforge create --ref feat-1/g1/u1 --workflow specfuse-unit --parent GATE
--
-- What the engine does from these declarations, with no code:
--   * A person with the role `gatekeeper` arms a gate (pending -> armed): a
--     gate waits for them. Nobody else can (exit 5, audited).
--   * A unit that fails verification is dispatched again after a backoff
--     (30s, 1m, ...), three attempts in all; after the third failure it is
--     escalated, and only a `maintainer` takes it out of `escalated`
--     (dispatched again, or cancelled).
--   * A unit that stays dispatched for 2 hours fails (unit.timeout), which
--     counts as an attempt.
--   * A gate closes by itself (trigger children.done) as soon as every one
--     of its units is done or cancelled -- and cannot be closed before: a
--     request to close it early is refused with how many units are open.
--   * A feature is done by itself once all its gates are closed.
--   * A break-glass override on a unit needs a co-signer, and escalates the
--     unit unless someone else acknowledges it within 24h
--     (`loopforge ack ID --reason ...`).
-- Timers and retries fire from `loopforge serve` (every second) or
-- `loopforge tick` (cron).

return {
  workflow {
    name = "specfuse-feature",
    states = { "open", "in_progress", "done" },
    initial = "open",
    terminal = { "done" },
    edges = { { "open", "in_progress" }, { "in_progress", "done" } },
    children = { done = { "closed", auto = true } },
  },

  workflow {
    name = "specfuse-gate",
    states = { "pending", "armed", "running", "closed" },
    initial = "pending",
    terminal = { "closed" },
    edges = { { "pending", "armed" }, { "armed", "running" }, { "running", "closed" } },
    roles = { armed = { enter = { "gatekeeper" } } },
    children = { closed = { "done", "cancelled", auto = true } },
  },

  workflow {
    name = "specfuse-unit",
    states = { "queued", "dispatched", "verifying", "verify_failed", "done",
               "escalated", "cancelled" },
    initial = "queued",
    terminal = { "done", "cancelled" },
    edges = {
      { "queued", "dispatched" },
      { "queued", "cancelled" },
      { "dispatched", "verifying" },
      { "dispatched", "verify_failed" },      -- timed out
      { "verifying", "done" },
      { "verifying", "verify_failed" },
      { "verify_failed", "dispatched" },      -- the retry
      { "escalated", "dispatched" },          -- a maintainer tries again
      { "escalated", "cancelled" },           -- or gives it up
    },
    timers = {
      dispatched = { { "2h", to = "verify_failed", trigger = "unit.timeout" } },
    },
    retries = {
      verify_failed = { to = "dispatched", trigger = "unit.retry", max = 2,
                        backoff = { initial = "30s", factor = 2, max = "10m" },
                        escalate_to = "escalated" },
    },
    roles = { escalated = { leave = { "maintainer" } } },
    -- A break-glass override on a unit needs a second person, and someone
    -- other than the one who overrode must acknowledge it within a day,
    -- else the unit is escalated.
    override = { co_signer = true, review = "24h", escalate_to = "escalated" },
  },
}
