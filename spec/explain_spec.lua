-- explain_spec.lua -- eng:explain (issue 12, item 1): on every state of
-- the default workflow it lists exactly the graph's ways out, in edge
-- order, each judged as the same request would be (a dry run); denials of
-- the shipped guards say what would satisfy them (`requires`); a role gate
-- names the roles that may leave; a timer is shown; nothing is written.
local kit = require "loopforge.testing"

-- LoopForge's edges (and ours out of escalated), in the workflow's order.
local WAYS = {
  issue_created = { "task_queued" },
  task_queued = { "pr_created" },
  pr_created = { "ci_pending" },
  ci_pending = { "ci_passed", "ci_failed" },
  ci_passed = { "merged", "awaiting_review" },
  ci_failed = { "ci_pending" },
  awaiting_review = { "approved", "ci_pending" },
  approved = { "merged" },
  merged = { "closed" },
  closed = {},
}

describe("explain", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  it("lists exactly each state's ways out, judged as a dry run would be", function()
    eng = kit.engine{ hooks = {}, shipped = true, config = { ["route-to-review"] = { enabled = false } } }
    for state, ways in pairs(WAYS) do
      local id = kit.record(eng, { auto_merge = state == "merged" or state == "closed" })
      kit.to_state(eng, id, state)
      local n = #kit.audit(eng)
      local x = assert(eng:explain(id, { actor = "ex" }))
      assert.equal(state, x.state)
      assert.equal(state == "closed", x.terminal)
      local got = {}
      for i, edge in ipairs(x.edges) do
        got[i] = edge.to
        local dry = eng:transition(id, edge.to, "explain", { actor = "ex", dry_run = true })
        assert.equal(dry.success, edge.allowed, state .. " -> " .. edge.to)
        assert.equal(dry.code, edge.code)
        assert.same(dry.decisions, edge.decisions)
      end
      assert.same(ways, got, "ways out of " .. state)
      assert.equal(n, #kit.audit(eng), "explain wrote to the log")
    end
  end)

  it("says what would satisfy the shipped guards", function()
    eng = kit.engine()
    local id = kit.record(eng, { labels = { hold = "do-not-merge" },
                                 metadata = { risk_tier = "high" } })
    kit.to_state(eng, id, "approved")
    local x = assert(eng:explain(id))
    assert.equal(1, #x.edges)
    local merged = x.edges[1]
    assert.is_false(merged.allowed)
    assert.equal("denied", merged.code)
    local req = {}
    for _, d in ipairs(merged.decisions) do req[d.policy] = d.requires end
    assert.same({ remove_label = "do-not-merge" }, req["blocking-labels"])
    assert.same({ governance_approved = true },
                req["high-risk-merge-needs-approval"].metadata)
  end)

  it("names the roles that may leave, judges with the caller's roles, and shows the timer", function()
    eng = kit.engine()
    local id = kit.record(eng)
    kit.to_state(eng, id, "ci_failed")
    for _ = 1, 3 do
      kit.walk(eng, id, { "ci_pending", "ci_failed" })
    end
    local x = assert(eng:explain(id, { actor = "dev" }))
    assert.equal("escalated", x.state)
    assert.same({ "maintainer" }, x.leave_roles)
    assert.same({ "ci_pending", "closed" }, { x.edges[1].to, x.edges[2].to })
    assert.is_false(x.edges[1].allowed)
    assert.equal("roles:escalated", x.edges[1].decisions[1].policy)
    local y = assert(eng:explain(id, { actor = "mo", roles = { "maintainer" } }))
    assert.is_true(y.edges[1].allowed)

    local d = kit.core.engine  -- a workflow with a timer
    local dir = kit.policy_dir{ shipped = false }
    dir:write("workflows/t.lua", [[
return workflow { name = "sla", states = { "open", "late", "done" }, initial = "open",
  terminal = { "done" }, edges = { { "open", "late" }, { "open", "done" }, { "late", "done" } },
  timers = { open = { { "48h", to = "late", trigger = "sla.expired" } } } }
]])
    local e2 = assert(d{ policies = dir.path, store = "memory:" })
    local r = e2:create{ ref = "s", workflow = "sla" }
    local z = assert(e2:explain(r.record.record_id))
    assert.same({ "late", "sla.expired" }, { z.timer.to, z.timer.trigger })
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", z.timer.due)
    e2:close()
  end)

  it("answers not_found for an unknown record", function()
    eng = kit.engine()
    local x, err, code = eng:explain("loop-nope")
    assert.is_nil(x)
    assert.equal("not_found", code)
    assert.matches("Record not found", err)
  end)
end)
