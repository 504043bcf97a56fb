-- config.lua -- settings of the shipped policies, hooks and routes.
--
-- One entry per policy, hook or route, by name. Every entry may say
--     enabled = false        -- turn it off (it is then never run)
-- and may override any of the settings the policy declares in its
-- `defaults`, key by key; a setting not given keeps its default. Naming a
-- policy that does not exist, a setting it does not declare, or a value of
-- the wrong type is a lint error (`loopforge lint`), with this file's line.
-- The values below are the defaults, spelled out so you can see what there
-- is to tune; docs/policies.md describes each policy.
--
-- A change here is a change of the policy set: it takes effect on reload
-- (SIGHUP, `POST /v1/admin/reload`), and the new generation id shows up in
-- every audit entry decided under it.

return {
  -- A merge of a record whose risk_tier (in the merge request's metadata or
  -- the record's) is one of risk_tiers needs a recorded governance approval
  -- (governance_approved = true in the record's metadata or on an earlier
  -- history entry).
  ["high-risk-merge-needs-approval"] = {
    risk_tiers = { "high" },
  },

  -- The actor who opened the PR cannot move the record to approved.
  ["no-self-approval"] = {
    -- enabled = false,
  },

  -- ci_passed -> merged only for records with auto_merge = true.
  ["review-unless-auto-merge"] = {
    -- enabled = false,
  },

  -- At most max_retries ci_failed -> ci_pending retries per record.
  ["ci-retry-budget"] = {
    max_retries = 3,
  },

  -- No merges inside these windows (UTC, from <= now < to).
  ["merge-freeze"] = {
    windows = {
      -- { from = "2026-12-24T00:00:00Z", to = "2027-01-02T00:00:00Z",
      --   reason = "end-of-year freeze" },
    },
  },

  -- Any of these labels on the record (or in the merge request's `labels`)
  -- blocks the merge.
  ["blocking-labels"] = {
    labels = { "do-not-merge", "blocked" },
  },

  -- Hook: after ci_passed, a record without auto_merge is moved to
  -- awaiting_review (trigger "review.required", actor "hook:route-to-review").
  ["route-to-review"] = {
    -- enabled = false,
  },

  -- Routes (routes/github.lua): GitHub webhooks become observations. Each
  -- can be turned off; docs/policies.md ("Routes") describes them.
  ["issue-opened"] = {},
  -- issues.assigned, or issues.labeled with this label, queues the issue.
  ["issue-queued"] = {
    label = "loopforge:queued",
  },
  ["pr-opened"] = {},
  ["pr-synchronize"] = {},
  -- Only check suites of these GitHub Apps (slug or name) count as CI;
  -- empty: every app. If your CI is GitHub Actions and the webhook also
  -- sends workflow_run, turn one of the two routes off.
  ["ci-check-suite"] = {
    apps = {},
  },
  -- Only these workflows (by name) count as CI; empty: every workflow.
  ["ci-workflow-run"] = {
    workflows = {},
  },
  ["check-run"] = {},
  ["review-submitted"] = {},
  ["pr-closed"] = {},
  ["issue-closed"] = {},
  ["ping"] = {},
}
