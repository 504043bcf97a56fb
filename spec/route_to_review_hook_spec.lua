-- route_to_review_hook_spec.lua -- policies/hooks/route-to-review.lua:
-- after ci_passed, a record without auto_merge is moved on to
-- awaiting_review (trigger review.required, actor hook:route-to-review).
-- followup_spec.lua covers how follow-ups run; this is the hook itself.
local kit = require "loopforge.testing"

local H = "route-to-review"

describe("hook " .. H, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  it("routes a record without auto_merge to review", function()
    eng = kit.engine()
    local id = kit.record(eng)
    kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending", "ci_passed" })
    local rec = eng:get(id).record
    assert.equal("awaiting_review", rec.state)
    local h = rec.transitions[#rec.transitions]
    assert.equal("review.required", h.trigger)
    assert.equal("hook:" .. H, h.actor)
  end)

  it("leaves an auto-merge record where it is", function()
    eng = kit.engine()
    local id = kit.record(eng, { auto_merge = true })
    kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending", "ci_passed" })
    assert.equal("ci_passed", kit.state(eng, id))
  end)

  it("runs on every entry into ci_passed", function()
    eng = kit.engine()
    local id = kit.record(eng)
    kit.to_state(eng, id, "awaiting_review")
    kit.walk(eng, id, { "ci_pending", "ci_passed" })          -- changes requested, CI again
    assert.equal("awaiting_review", kit.state(eng, id))
    assert.equal(2, eng:stats().followups)
  end)

  it("is off with enabled = false", function()
    eng = kit.engine{ config = { [H] = { enabled = false } } }
    local id = kit.record(eng)
    kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending", "ci_passed" })
    assert.equal("ci_passed", kit.state(eng, id))
    assert.equal(0, eng:stats().hooks_run)
  end)
end)
