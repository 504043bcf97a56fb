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

  -- The approver is neither who opened the PR nor the human behind the
  -- agent that did (see identities below); an anonymous approval is refused.
  ["no-self-approval"] = {
    -- enabled = false,
  },

  -- A PR an agent or app opened merges after this many human approvals
  -- (not by the human the agent acts for).
  ["agent-prs-need-human-approval"] = {
    approvals = 1,
  },

  -- Who is who across sources: a person's names (GitHub login, token name,
  -- email), and agents with the human they act for. Names not listed are
  -- people of their own; a GitHub App's "[bot]" login is an app.
  identities = {
    people = {
      -- alice = { "github:alice", "alice@example.com" },
    },
    agents = {
      -- ["coder-7"] = { principal = "alice", names = { "github:coder-7[bot]" } },
    },
  },

  -- ci_passed -> merged only for records with auto_merge = true.
  ["review-unless-auto-merge"] = {
    -- enabled = false,
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

  -- Routes (routes/github.lua): GitHub webhooks become observations, each
  -- carrying the fact it reports; the engine keeps the facts and moves the
  -- record forward to what they imply. Each can be turned off;
  -- docs/http.md ("Connecting GitHub") says which events to subscribe to.
  ["issue-opened"] = {},
  -- issues.assigned, or issues.labeled with this label, queues the issue.
  ["issue-queued"] = {
    label = "loopforge:queued",
  },
  ["pr-opened"] = {},
  -- A push dismisses approvals of older commits (GitHub's "dismiss stale
  -- pull request approvals when new commits are pushed").
  ["pr-synchronize"] = {
    dismiss_stale_approvals = true,
  },
  -- CI: check suites, check runs, workflow runs and commit statuses feed
  -- one view per commit; a run reported by two events counts once.
  ["ci"] = {
    -- Check names (workflow, check run, status context or app slug) that
    -- must pass; empty: every check seen on the commit.
    required = {},
    -- Only CI of these GitHub Apps (slug or name); empty: every app.
    apps = {},
    -- Only these Actions workflows (by name); empty: every workflow.
    workflows = {},
  },
  ["review-submitted"] = {},
  -- A merge needs an approval of the merged head: "auto" unless the
  -- record is auto_merge, "always" or "never".
  ["pr-closed"] = {
    require_review = "auto",
  },
  ["issue-closed"] = {},
  ["ping"] = {},
}
