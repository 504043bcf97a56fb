-- review_unless_auto_merge_policy_spec.lua --
-- policies/guards/review-unless-auto-merge.lua: ci_passed -> merged only
-- for records with auto_merge; every other record goes through
-- awaiting_review and approved.
local kit = require "loopforge.testing"

local P = "review-unless-auto-merge"

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  -- route-to-review would move a record without auto_merge on by itself;
  -- switched off, the record stays in ci_passed for the policy to judge.
  local function engine(cfg)
    cfg = cfg or {}
    cfg["route-to-review"] = { enabled = false }
    return kit.engine{ config = cfg }
  end

  it("denies merging straight from ci_passed without auto_merge", function()
    eng = engine()
    local id = kit.record(eng, { auto_merge = false })
    kit.to_state(eng, id, "ci_passed")
    local res = eng:transition(id, "merged", "pr.merged", { actor = "dev" })
    kit.assert_denied(res, P, "needs auto_merge")
    kit.assert_denied(res, P, "awaiting_review and approved")
    assert.equal("ci_passed", kit.state(eng, id))
  end)

  it("allows it with auto_merge", function()
    eng = engine()
    local id = kit.record(eng, { auto_merge = true })
    kit.to_state(eng, id, "ci_passed")
    local res = kit.assert_allowed(eng:transition(id, "merged", "auto.merged"))
    assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
  end)

  it("does not stand in the way of the review path", function()
    eng = engine()
    local id = kit.record(eng, { auto_merge = false })
    kit.to_state(eng, id, "approved")
    local res = kit.assert_allowed(eng:transition(id, "merged", "pr.merged"))
    assert.is_nil(kit.decision(res, P))          -- approved -> merged is not its edge
  end)

  it("is off with enabled = false", function()
    eng = engine({ [P] = { enabled = false } })
    local id = kit.record(eng, { auto_merge = false })
    kit.to_state(eng, id, "ci_passed")
    local res = kit.assert_allowed(eng:transition(id, "merged", "pr.merged"))
    assert.is_nil(kit.decision(res, P))
  end)
end)
