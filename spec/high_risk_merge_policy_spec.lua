-- high_risk_merge_policy_spec.lua --
-- policies/guards/high-risk-merge-needs-approval.lua: a merge of a record
-- whose risk_tier (in the merge request's metadata or the record's) is
-- one of risk_tiers needs a governance approval already on record: the
-- record's metadata, or an earlier history entry, has
-- governance_approved = true.
local kit = require "loopforge.testing"

local P = "high-risk-merge-needs-approval"
local REASON = "high-risk merge requires governance approval"

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function ready(metadata)
    local id = kit.record(eng, { auto_merge = true, metadata = metadata })
    kit.to_state(eng, id, "ci_passed")
    return id
  end

  describe("with the shipped settings", function()
    before_each(function() eng = kit.engine() end)

    it("denies merging a high-risk record without approval", function()
      local id = ready({ risk_tier = "high" })
      local res = eng:transition(id, "merged", "pr.merged", { actor = "bot" })
      kit.assert_denied(res, P, REASON)
      assert.equal("Denied by policy " .. P .. ": " .. REASON, res.error)
      assert.equal("ci_passed", kit.state(eng, id))
    end)

    it("denies when the merge request says the change is high risk", function()
      local id = ready()
      kit.assert_denied(eng:transition(id, "merged", "pr.merged",
                                       { metadata = { risk_tier = "high" } }), P, REASON)
    end)

    it("does not take the merge request's own word for the approval", function()
      local id = ready({ risk_tier = "high" })
      kit.assert_denied(eng:transition(id, "merged", "pr.merged",
                                       { metadata = { governance_approved = true } }), P, REASON)
    end)

    it("allows a high-risk record approved in its metadata", function()
      local id = ready({ risk_tier = "high", governance_approved = true })
      local res = kit.assert_allowed(eng:transition(id, "merged", "pr.merged"))
      assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
    end)

    it("allows a high-risk record whose approval is in its history", function()
      local id = kit.record(eng, { metadata = { risk_tier = "high" } })
      kit.to_state(eng, id, "awaiting_review")
      kit.walk(eng, id, { { "approved", actor = "governance-board",
                            metadata = { governance_approved = true } } })
      kit.assert_allowed(eng:transition(id, "merged", "pr.merged"))
    end)

    it("leaves other risk tiers alone", function()
      kit.assert_allowed(eng:transition(ready({ risk_tier = "low" }), "merged", "pr.merged"))
      kit.assert_allowed(eng:transition(ready(), "merged", "pr.merged"))
    end)

    it("answers a dry run the same, and records nothing", function()
      local id = ready({ risk_tier = "high" })
      local n = #eng:audit(id)
      local res = eng:transition(id, "merged", "pr.merged", { actor = "bot", dry_run = true })
      assert.is_true(res.dry_run)
      kit.assert_denied(res, P, REASON)
      assert.equal(n, #eng:audit(id))
    end)
  end)

  describe("configured", function()
    it("treats every tier in risk_tiers as high risk", function()
      eng = kit.engine{ config = { [P] = { risk_tiers = { "high", "critical" } } } }
      kit.assert_denied(eng:transition(ready({ risk_tier = "critical" }), "merged", "pr.merged"), P)
      kit.assert_denied(eng:transition(ready({ risk_tier = "high" }), "merged", "pr.merged"), P)
    end)

    it("needs no approval with an empty risk_tiers", function()
      eng = kit.engine{ config = { [P] = { risk_tiers = {} } } }
      kit.assert_allowed(eng:transition(ready({ risk_tier = "high" }), "merged", "pr.merged"))
    end)

    it("is off with enabled = false", function()
      eng = kit.engine{ config = { [P] = { enabled = false } } }
      local res = kit.assert_allowed(eng:transition(ready({ risk_tier = "high" }), "merged", "pr.merged"))
      assert.is_nil(kit.decision(res, P))
    end)
  end)
end)
