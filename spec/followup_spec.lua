-- followup_spec.lua -- hooks that ask for more: a follow-up transition
-- runs after the commit, with "hook:<name>" as its actor, through the
-- same pipeline (edge check, guards, audit); and a chain of follow-ups is
-- bounded, so two hooks that feed each other cannot loop forever.
local kit = require "loopforge.testing"

describe("follow-up transitions", function()
  after_each(kit.cleanup)

  describe("route-to-review (shipped)", function()
    local eng
    before_each(function() eng = kit.engine() end)
    after_each(function() eng:close() end)

    it("moves a record without auto_merge from ci_passed on to awaiting_review", function()
      local id = kit.record(eng, { auto_merge = false })
      kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending" })
      local res = eng:transition(id, "ci_passed", "ci.completed", { actor = "ci" })
      kit.assert_allowed(res)
      -- The caller hears about its own transition; the follow-up comes after.
      assert.equal("ci_passed", res.new_state)
      local rec = eng:get(id).record
      assert.equal("awaiting_review", rec.state)
      local h = rec.transitions[#rec.transitions]
      assert.equal("ci_passed", h.from_state)
      assert.equal("awaiting_review", h.to_state)
      assert.equal("hook:route-to-review", h.actor)
      local _, last = kit.audit(eng, id)
      assert.equal("transition", last.kind)
      assert.equal("hook:route-to-review", last.actor)
      assert.equal(1, eng:stats().followups)
    end)

    it("leaves an auto_merge record in ci_passed", function()
      local id = kit.record(eng, { auto_merge = true })
      kit.to_state(eng, id, "ci_passed")
      assert.equal("ci_passed", kit.state(eng, id))
      assert.equal(0, eng:stats().followups)
    end)
  end)

  describe("a chain of follow-ups", function()
    -- ci_pending -> ci_passed -> awaiting_review -> ci_pending -> ... for
    -- ever, were it not for the engine's bound (a cycle with no retry
    -- budget on it: ci_failed -> ci_pending would escalate).
    local PASS = [[
return hook {
  name = "pass-again",
  on = { to = "ci_pending" },
  run = function(e) return request("ci_passed", "ci.passed") end,
}
]]
    local REVIEW = [[
return hook {
  name = "review-again",
  on = { to = "ci_passed" },
  run = function(e) return request("awaiting_review", "review.required") end,
}
]]
    local CHANGE = [[
return hook {
  name = "change-again",
  on = { to = "awaiting_review" },
  run = function(e) return request("ci_pending", "review.changes_requested") end,
}
]]

    it("is stopped by the engine's chain bound, which logs it", function()
      local eng = kit.engine{ shipped = false,
                              hooks = { ["pass-again"] = PASS, ["review-again"] = REVIEW,
                                        ["change-again"] = CHANGE } }
      local id = kit.record(eng)
      kit.walk(eng, id, { "task_queued", "pr_created" })
      eng:logs()
      local res = eng:transition(id, "ci_pending", "ci.started")
      kit.assert_allowed(res)       -- the request itself is unaffected

      local stats = eng:stats()
      assert.is_true(stats.followups > 1, "the hooks never fed each other")
      assert.is_true(stats.followups <= 64, "the chain ran " .. stats.followups .. " times")

      local rec = eng:get(id).record
      assert.equal(4 + stats.followups, #rec.transitions)
      assert.is_true(rec.state == "ci_pending" or rec.state == "ci_passed"
                     or rec.state == "awaiting_review")
      local actors = {}
      for i = 5, #rec.transitions do actors[rec.transitions[i].actor] = true end
      assert.same({ ["hook:pass-again"] = true, ["hook:review-again"] = true,
                    ["hook:change-again"] = true }, actors)

      local stopped
      for _, line in ipairs(eng:logs()) do
        if line:find("chain", 1, true) then stopped = line end
      end
      assert.is_string(stopped, "no log line says the chain was stopped")
      assert.matches("^error: ", stopped)

      -- And the engine keeps serving.
      local other = kit.record(eng)
      kit.assert_allowed(eng:transition(other, "task_queued", "worker.picked_up"))
      eng:close()
    end)
  end)

  describe("a follow-up the rules refuse", function()
    it("is logged, and leaves the committed transition alone", function()
      local eng = kit.engine{ shipped = false, hooks = { skip = [[
return hook {
  name = "skip",
  on = { to = "task_queued" },
  run = function(e) return request("merged", "yolo") end,
}
]] } }
      local id = kit.record(eng)
      kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up"))
      assert.equal("task_queued", kit.state(eng, id))
      local refused
      for _, line in ipairs(eng:logs()) do
        if line:find("Invalid transition: task_queued", 1, true) then refused = line end
      end
      assert.is_string(refused, "the refused follow-up was not logged")
      eng:close()
    end)
  end)
end)
