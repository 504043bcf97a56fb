-- factory_spec.lua -- policies/workflows/factory.lua (Factory's task
-- pipeline, nine declared stages) run whole through the kit: a task
-- passing every stage, and one whose failed stage is retried after its
-- exponential backoff (the clock moved with eng:tick) until the stage's
-- budget is spent and the task fails the pipeline.
local kit = require "loopforge.testing"

local STAGES = { "implement", "unit_test", "coverage", "lint", "static", "integration",
                 "security", "review", "accept" }

describe("Factory's task pipeline", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function go(id, to)
    return kit.assert_allowed(eng:transition(id, to, "spec." .. to))
  end
  local function task(ref)
    local res = eng:create{ ref = ref, workflow = "factory" }
    assert.is_true(res.success, res.error)
    go(res.record.record_id, "in_progress")
    return res.record.record_id
  end
  local function entered(id)
    local rec = eng:get(id).record
    return rec.transitions[#rec.transitions].timestamp
  end
  local secs = kit.seconds

  it("takes a task through the nine stages to integrated", function()
    eng = kit.engine()
    local id = task("t-1")
    for _, s in ipairs(STAGES) do go(id, s) end
    go(id, "passed_pipeline")
    go(id, "integrated")
    local rec = eng:get(id).record
    assert.equal("integrated", rec.state)
    assert.equal(2 + #STAGES + 2, #rec.transitions)
  end)

  it("retries a failed stage after a growing backoff, then fails the pipeline", function()
    eng = kit.engine()
    local id = task("t-2")
    for i = 1, 4 do go(id, STAGES[i]) end      -- up to lint: 3 retries
    local due = {}
    for attempt = 1, 3 do
      go(id, "lint_failed")
      local at = secs(entered(id))
      local timers = eng:timers(at).timers
      assert.equal(1, #timers)
      assert.same({ "lint_failed", "lint", "stage.retry" },
                  { timers[1].state, timers[1].to, timers[1].trigger })
      due[attempt] = secs(timers[1].due) - at
      assert.same({}, eng:tick(at + due[attempt] - 1).fired, "fired early")
      assert.equal("lint", eng:tick(at + due[attempt] + 1).fired[1].to)
    end
    -- 30s, 60s, 120s: the declared backoff doubling
    for i, want in ipairs({ 30, 60, 120 }) do
      assert.is_true(math.abs(due[i] - want) < 0.01, ("retry %d after %.3fs"):format(i, due[i]))
    end
    go(id, "lint_failed")
    assert.equal("failed_pipeline", kit.state(eng, id))
    local rec = eng:get(id).record
    local last = rec.transitions[#rec.transitions]
    assert.same({ "lint_failed", "retry.exhausted", "timer:lint_failed" },
                { last.from_state, last.trigger, last.actor })
  end)
end)
