-- budget_spec.lua -- budgets (issue 12, item 3): a workflow's budgets cap
-- the transitions into a state per actor or per the person behind them
-- (an agent counts for its principal) in a sliding window, counted by the
-- store; a denial says when the budget frees up, and explain shows it.
local kit = require "loopforge.testing"

local WF = [[
return workflow { name = "ship", states = { "new", "open", "ci", "merged" }, initial = "new",
  terminal = { "merged" },
  edges = { { "new", "open" }, { "new", "merged" }, { "open", "ci" }, { "ci", "open" },
            { "open", "merged" } },
  budgets = {
    merged = { { per = "principal", max = 2, within = "1h" } },
    ci = { { per = "actor", max = 3, within = "1d" } },
  } }
]]

describe("budgets", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function engine()
    local d = kit.policy_dir{ shipped = false, config = { identities = {
      people = { alice = { "github:alice" } },
      agents = { ["coder-7"] = { principal = "alice", names = { "github:coder-7[bot]" } } } } } }
    d:write("workflows/ship.lua", WF)
    return assert(kit.core.engine{ policies = d.path, store = "memory:" })
  end
  local function new() return eng:create{ ref = tostring(math.random()), workflow = "ship" }.record.record_id end

  it("counts a principal's own merges and their agents' together", function()
    eng = engine()
    kit.assert_allowed(eng:transition(new(), "merged", "m", { actor = "github:alice" }))
    local first = eng:audit()
    local t0 = first[#first].timestamp
    kit.assert_allowed(eng:transition(new(), "merged", "m", { actor = "github:coder-7[bot]" }))
    local res = eng:transition(new(), "merged", "m", { actor = "coder-7" })
    kit.assert_denied(res, "budget:merged", "principal alice made 2 transitions to merged")
    -- it frees up when the first merge leaves the hour
    local frees = res.error:match("frees up at (%S+)$")
    assert.is_true(math.abs(kit.seconds(frees) - kit.seconds(t0, 3600)) < 0.001)
    kit.assert_allowed(eng:transition(new(), "merged", "m", { actor = "bob" }))
    -- explain says where a budget stands before it is spent, too
    local x = assert(eng:explain(new(), { actor = "github:coder-7[bot]" }))
    local standing
    for _, b in ipairs(x.budgets) do if b.to == "merged" then standing = b end end
    assert.same({ to = "merged", per = "principal", who = "alice", max = 2, within_s = 3600,
                  used = 2, frees_up = frees }, standing)
    x = assert(eng:explain(new(), { actor = "carol" }))
    for _, b in ipairs(x.budgets) do if b.to == "merged" then standing = b end end
    assert.same({ to = "merged", per = "principal", who = "carol", max = 2, within_s = 3600,
                  used = 0 }, standing)
  end)

  it("caps an actor's CI runs a day, shown by explain", function()
    eng = engine()
    local id = new()
    kit.assert_allowed(eng:transition(id, "open", "start", { actor = "bot" }))
    for _ = 1, 3 do
      kit.assert_allowed(eng:transition(id, "ci", "run", { actor = "bot" }))
      kit.assert_allowed(eng:transition(id, "open", "back", { actor = "bot" }))
    end
    local x = assert(eng:explain(id, { actor = "bot" }))
    local ci
    for _, e in ipairs(x.edges) do if e.to == "ci" then ci = e end end
    assert.is_false(ci.allowed)
    assert.equal("budget:ci", ci.decisions[1].policy)
    assert.matches("actor bot made 3 transitions to ci within 86400s %(at most 3%)", ci.error)
    kit.assert_allowed(eng:transition(id, "ci", "run", { actor = "someone-else" }))
  end)

  it("refuses a malformed budget at lint", function()
    local d = kit.policy_dir{ shipped = false }
    d:write("workflows/bad.lua", (WF:gsub('within = "1h"', 'within = "90d"')))
    local e, err = kit.core.engine{ policies = d.path, store = "memory:" }
    assert.is_nil(e)
    assert.matches("budgets.merged must be a list of", err)
  end)
end)
