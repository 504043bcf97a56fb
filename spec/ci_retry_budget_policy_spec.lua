-- ci_retry_budget_policy_spec.lua -- policies/guards/ci-retry-budget.lua:
-- at most max_retries ci_failed -> ci_pending retries per record (default
-- 3), then a denial that says to escalate.
local kit = require "loopforge.testing"
local core = require "loopforge.core"

local P = "ci-retry-budget"

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  -- Fails CI and retries `n` times; returns the record id, now in ci_pending.
  local function retried(n)
    local id = kit.record(eng)
    kit.to_state(eng, id, "ci_failed")
    for _ = 1, n do kit.walk(eng, id, { "ci_pending", "ci_failed" }) end
    return id
  end

  it("allows three retries by default and denies the fourth, saying to escalate", function()
    eng = kit.engine()
    local id = retried(3)
    local res = eng:transition(id, "ci_pending", "ci.retry", { actor = "dev" })
    kit.assert_denied(res, P, "CI retry budget exhausted (3 of 3 retries used)")
    kit.assert_denied(res, P, "escalate")
    assert.equal("ci_failed", kit.state(eng, id))
    local _, last = kit.audit(eng, id)
    assert.equal("denied", last.kind)
  end)

  it("counts retries per record", function()
    eng = kit.engine()
    retried(3)
    local other = retried(0)
    local res = kit.assert_allowed(eng:transition(other, "ci_pending", "ci.retry"))
    assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
  end)

  it("does not count the first run of CI, nor a re-run after review", function()
    eng = kit.engine{ config = { [P] = { max_retries = 1 } } }
    local id = kit.record(eng)
    kit.to_state(eng, id, "awaiting_review")
    -- changes requested: awaiting_review -> ci_pending is not a retry
    kit.walk(eng, id, { "ci_pending", "ci_failed" })
    kit.assert_allowed(eng:transition(id, "ci_pending", "ci.retry"))
  end)

  it("takes max_retries from config.lua", function()
    eng = kit.engine{ config = { [P] = { max_retries = 1 } } }
    local id = retried(1)
    kit.assert_denied(eng:transition(id, "ci_pending", "ci.retry"), P, "(1 of 1 retries used)")
  end)

  it("allows no retry at all with max_retries = 0", function()
    eng = kit.engine{ config = { [P] = { max_retries = 0 } } }
    local id = retried(0)
    kit.assert_denied(eng:transition(id, "ci_pending", "ci.retry"), P, "(0 of 0 retries used)")
  end)

  it("is off with enabled = false", function()
    eng = kit.engine{ config = { [P] = { enabled = false } } }
    local id = retried(5)
    local res = kit.assert_allowed(eng:transition(id, "ci_pending", "ci.retry"))
    assert.is_nil(kit.decision(res, P))
  end)

  it("refuses a bad setting when the policy set loads", function()
    for _, bad in ipairs{ -1, 1.5, "3" } do
      local d = kit.policy_dir{ shipped = true, config = { [P] = { max_retries = bad } } }
      local e, err = core.engine{ policies = d.path, store = "memory:" }
      assert.is_nil(e, "max_retries = " .. tostring(bad) .. " was accepted")
      assert.matches("config%.lua:%d+: ", err)
      d:remove()
    end
  end)
end)
