-- merge_freeze_policy_spec.lua -- policies/guards/merge-freeze.lua: no
-- merges inside the freeze windows configured in config.lua (UTC, from <=
-- now < to). The engine's clock is real, so the windows here are placed
-- around today rather than at fixed dates.
local kit = require "loopforge.testing"
local core = require "loopforge.core"

local P = "merge-freeze"

local function utc(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end
local NOW = os.time()
local DAY = 86400

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function ready()
    local id = kit.record(eng, { auto_merge = true })
    kit.to_state(eng, id, "ci_passed")
    return id
  end

  local function frozen(windows) return kit.engine{ config = { [P] = { windows = windows } } } end

  it("allows merges when no window is configured (the default)", function()
    eng = kit.engine()
    local res = kit.assert_allowed(eng:transition(ready(), "merged", "auto.merged"))
    assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
  end)

  it("denies a merge inside a window, naming its end and reason", function()
    local to = utc(NOW + DAY)
    eng = frozen{ { from = utc(NOW - DAY), to = to, reason = "release 2.0" } }
    local id = ready()
    local res = eng:transition(id, "merged", "auto.merged")
    kit.assert_denied(res, P, "merge freeze until " .. to .. ": release 2.0")
    assert.equal("ci_passed", kit.state(eng, id))
  end)

  it("has a default reason", function()
    eng = frozen{ { from = utc(NOW - DAY), to = utc(NOW + DAY) } }
    kit.assert_denied(eng:transition(ready(), "merged", "auto.merged"), P, "merges are frozen")
  end)

  it("allows merges before and after a window", function()
    eng = frozen{
      { from = utc(NOW - 3 * DAY), to = utc(NOW - 2 * DAY), reason = "past" },
      { from = utc(NOW + 2 * DAY), to = utc(NOW + 3 * DAY), reason = "future" },
    }
    kit.assert_allowed(eng:transition(ready(), "merged", "auto.merged"))
  end)

  it("checks every window", function()
    eng = frozen{
      { from = utc(NOW - 3 * DAY), to = utc(NOW - 2 * DAY), reason = "past" },
      { from = utc(NOW - DAY), to = utc(NOW + DAY), reason = "the second one" },
    }
    kit.assert_denied(eng:transition(ready(), "merged", "auto.merged"), P, "the second one")
  end)

  it("freezes merges only", function()
    eng = frozen{ { from = utc(NOW - DAY), to = utc(NOW + DAY) } }
    local id = kit.record(eng)
    local res = kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up"))
    assert.is_nil(kit.decision(res, P))
  end)

  it("is off with enabled = false", function()
    eng = kit.engine{ config = { [P] = { enabled = false,
                                        windows = { { from = utc(NOW - DAY), to = utc(NOW + DAY) } } } } }
    local res = kit.assert_allowed(eng:transition(ready(), "merged", "auto.merged"))
    assert.is_nil(kit.decision(res, P))
  end)

  it("refuses a bad window when the policy set loads, with config.lua's line", function()
    for _, w in ipairs{
      { from = "2026-12-24", to = "2026-12-20T00:00:00Z" },           -- ends before it starts
      { from = "24/12/2026", to = "2027-01-02T00:00:00Z" },           -- not UTC ISO 8601
      { from = "2026-12-24T00:00:00+01:00", to = "2027-01-02T00:00:00Z" },  -- not UTC
      { from = "2026-12-24T00:00:00Z", to = "2027-01-02T00:00:00Z", resaon = "typo" },
    } do
      local d = kit.policy_dir{ shipped = true, config = { [P] = { windows = { w } } } }
      local e, err = core.engine{ policies = d.path, store = "memory:" }
      assert.is_nil(e, "a bad window was accepted: " .. kit.serialize(w))
      assert.matches("config%.lua:%d+: ", err)
      d:remove()
    end
  end)
end)
