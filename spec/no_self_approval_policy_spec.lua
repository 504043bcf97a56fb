-- no_self_approval_policy_spec.lua -- policies/guards/no-self-approval.lua:
-- separation of duties. Whoever opened the PR (the actor of the record's
-- pr_created entry) cannot move the record to approved.
local kit = require "loopforge.testing"

local P = "no-self-approval"

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  -- A record whose PR alice opened, waiting for review.
  local function opened_by_alice()
    local id = kit.record(eng)
    kit.walk(eng, id, { "task_queued" }, { actor = "worker" })
    kit.walk(eng, id, { "pr_created" }, { actor = "alice" })
    kit.to_state(eng, id, "awaiting_review", { actor = "ci" })
    return id
  end

  describe("with the shipped settings", function()
    before_each(function() eng = kit.engine() end)

    it("denies the PR's author approving it", function()
      local id = opened_by_alice()
      local res = eng:transition(id, "approved", "review.approved", { actor = "alice" })
      kit.assert_denied(res, P, "separation of duties: alice opened the PR and cannot also approve it")
      assert.equal("awaiting_review", kit.state(eng, id))
    end)

    it("allows anyone else to approve", function()
      local id = opened_by_alice()
      local res = kit.assert_allowed(eng:transition(id, "approved", "review.approved", { actor = "bob" }))
      assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
    end)

    it("still knows the author after another round of CI", function()
      local id = opened_by_alice()
      kit.walk(eng, id, { "ci_pending", "ci_passed" }, { actor = "ci" })   -- changes requested
      kit.to_state(eng, id, "awaiting_review")
      kit.assert_denied(eng:transition(id, "approved", "review.approved", { actor = "alice" }), P, "alice")
    end)

    it("denies an approval without an actor: it could be anyone", function()
      local id = opened_by_alice()
      -- The engine records a missing actor as "anonymous", who is nobody.
      local res = eng:transition(id, "approved", "review.approved")
      kit.assert_denied(res, P, "an approval must name its actor")
      res = eng:transition(id, "approved", "review.approved", { actor = "anonymous" })
      kit.assert_denied(res, P, "an approval must name its actor")
    end)

    it("does not look at other transitions", function()
      local id = opened_by_alice()
      local res = kit.assert_allowed(eng:transition(id, "ci_pending", "review.changes_requested",
                                                    { actor = "alice" }))
      assert.is_nil(kit.decision(res, P))
    end)
  end)

  it("is off with enabled = false", function()
    eng = kit.engine{ config = { [P] = { enabled = false } } }
    local id = opened_by_alice()
    local res = kit.assert_allowed(eng:transition(id, "approved", "review.approved", { actor = "alice" }))
    assert.is_nil(kit.decision(res, P))
  end)
end)
