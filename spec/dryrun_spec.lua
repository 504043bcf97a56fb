-- dryrun_spec.lua -- transition{dry_run=true}: every check runs (edge,
-- guards), the result and its code are what a real request would get
-- now, and nothing is committed: no version bump, no history, no audit
-- entry (not even a `denied` one), no hook.
local kit = require "loopforge.testing"

local DENY_MERGE = [[
return policy {
  name = "no-merges",
  on = { to = "merged" },
  check = function(t) return deny("merges are off") end,
}
]]

-- Records every hook run as a follow-up would: here, as an error the
-- engine counts, which is all a dry run must never cause.
local PROBE = [[
return hook {
  name = "probe",
  run = function(e) error("probe ran") end,
}
]]

describe("dry run", function()
  local eng, id

  before_each(function()
    eng = kit.engine{ shipped = false, guards = { ["no-merges"] = DENY_MERGE },
                      hooks = { probe = PROBE } }
    id = kit.record(eng, { auto_merge = true })
    kit.to_state(eng, id, "ci_passed")
    eng:logs()
  end)
  after_each(function() eng:close(); kit.cleanup() end)

  local function snapshot()
    local rec = eng:get(id).record
    return { version = rec.version, state = rec.state, history = #rec.transitions,
             audit = #eng:audit(), hooks = eng:stats().hooks_run }
  end

  it("reports a denial as a real request would, and commits nothing", function()
    local before = snapshot()
    local res = eng:transition(id, "merged", "auto.merged", { actor = "bot", dry_run = true })
    assert.is_true(res.dry_run)
    kit.assert_denied(res, "no-merges", "merges are off")
    assert.equal("Denied by policy no-merges: merges are off", res.error)
    assert.same(before, snapshot())
    -- The real request gets the same answer, and is audited.
    local real = eng:transition(id, "merged", "auto.merged", { actor = "bot" })
    assert.is_false(real.dry_run)
    assert.equal(res.code, real.code)
    assert.equal(res.error, real.error)
    assert.same(res.decisions, real.decisions)
    assert.equal(before.audit + 1, #eng:audit())
  end)

  it("reports an allowed transition without making it", function()
    local before = snapshot()
    local res = eng:transition(id, "awaiting_review", "review.requested", { dry_run = true })
    kit.assert_allowed(res)
    assert.is_true(res.dry_run)
    assert.equal("ci_passed", res.previous_state)
    assert.equal("awaiting_review", res.new_state)
    assert.same(before, snapshot())
    assert.same({}, eng:logs())           -- no hook ran
  end)

  it("reports an invalid edge and a missing record with their real codes", function()
    local before = snapshot()
    local res = eng:transition(id, "closed", "issue.closed", { dry_run = true })
    assert.equal("invalid_transition", res.code)
    assert.matches("Allowed from ci_passed: merged, awaiting_review", res.error, 1, true)
    res = eng:transition("loop-0000000000000000", "merged", "x", { dry_run = true })
    assert.equal("not_found", res.code)
    assert.same(before, snapshot())
  end)
end)
