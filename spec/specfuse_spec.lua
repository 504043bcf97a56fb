-- specfuse_spec.lua -- policies/workflows/specfuse.lua run whole through the
-- kit: a feature, two gates armed by a gatekeeper, work units as child
-- records, a unit retried after a backoff (the clock moved with eng:tick,
-- never slept), escalated after its third failure and taken out by a
-- maintainer, gates and the feature closing by themselves once their
-- children are there.
local kit = require "loopforge.testing"

describe("the Specfuse gate cycle", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function new(workflow, ref, parent)
    local res = eng:create{ ref = ref, workflow = workflow, parent = parent }
    assert.is_true(res.success, res.error)
    return res.record.record_id
  end
  local function go(id, to, opts)
    return kit.assert_allowed(eng:transition(id, to, "spec." .. to, opts))
  end
  local function last_time(id)
    local rec = eng:get(id).record
    return rec.transitions[#rec.transitions].timestamp
  end
  local after = kit.seconds

  it("runs a feature through its gates and units to done", function()
    eng = kit.engine()
    local feature = new("specfuse-feature", "feat-1")
    go(feature, "in_progress")
    local g1 = new("specfuse-gate", "feat-1/g1", feature)
    local g2 = new("specfuse-gate", "feat-1/g2", feature)

    -- A gate waits for a person with the gatekeeper role.
    kit.assert_denied(eng:transition(g1, "armed", "arm", { actor = "bot" }), "roles:armed",
                      "entering armed needs the role gatekeeper; bot has no role")
    go(g1, "armed", { actor = "ana", roles = { "gatekeeper" } })
    go(g1, "running")

    local u1 = new("specfuse-unit", "feat-1/g1/u1", g1)
    local u2 = new("specfuse-unit", "feat-1/g1/u2", g1)
    assert.same({ "specfuse-unit", "specfuse-unit" },
                { eng:get(u1).record.workflow, eng:get(u2).record.workflow })
    assert.equal(g1, eng:get(u1).record.parent)
    local kids = assert(eng:list{ parent = g1 })
    assert.equal(2, #kids.records)

    -- The gate cannot close while a unit is open.
    kit.assert_denied(eng:transition(g1, "closed", "close.early"), "children:closed",
                      "2 of 2 are not")

    -- u1 passes at once.
    go(u1, "dispatched"); go(u1, "verifying"); go(u1, "done")
    assert.equal("running", kit.state(eng, g1))

    -- u2 fails verification three times: retried after 30s, then 60s.
    go(u2, "dispatched"); go(u2, "verifying"); go(u2, "verify_failed")
    local t = last_time(u2)
    assert.same({}, eng:tick(after(t, 29)).fired)
    local fired = eng:tick(after(t, 31)).fired
    assert.same({ record_id = u2, from = "verify_failed", to = "dispatched", code = "ok" },
                fired[1])
    go(u2, "verifying"); go(u2, "verify_failed")
    t = last_time(u2)
    assert.same({}, eng:tick(after(t, 59)).fired)
    assert.equal("dispatched", eng:tick(after(t, 61)).fired[1].to)
    go(u2, "verifying"); go(u2, "verify_failed")
    -- The third failure: the budget (two retries) is spent.
    assert.equal("escalated", kit.state(eng, u2))
    local rec = eng:get(u2).record
    local esc = rec.transitions[#rec.transitions]
    assert.same({ "verify_failed", "escalated", "retry.exhausted", "timer:verify_failed" },
                { esc.from_state, esc.to_state, esc.trigger, esc.actor })

    -- Only a maintainer takes it out.
    kit.assert_denied(eng:transition(u2, "dispatched", "again", { actor = "bot" }),
                      "roles:escalated")
    go(u2, "dispatched", { actor = "mo", roles = { "maintainer" } })
    go(u2, "verifying"); go(u2, "done")

    -- Every unit done: the gate closed by itself, and said why.
    assert.equal("closed", kit.state(eng, g1))
    rec = eng:get(g1).record
    local close = rec.transitions[#rec.transitions]
    assert.same({ "running", "closed", "children.done", "engine:children" },
                { close.from_state, close.to_state, close.trigger, close.actor })
    -- The early attempt is on record, and no refusal per finished unit.
    local denied = 0
    for _, e in ipairs(kit.audit(eng, g1)) do
      if e.kind == "denied" then denied = denied + 1 end
    end
    assert.equal(2, denied)         -- the bot's arm, the early close

    -- The next gate waits for its gatekeeper; the feature is not done.
    assert.equal("pending", kit.state(eng, g2))
    assert.equal("in_progress", kit.state(eng, feature))
    go(g2, "armed", { actor = "ana", roles = { "gatekeeper" } })
    go(g2, "running")
    local u3 = new("specfuse-unit", "feat-1/g2/u1", g2)
    go(u3, "dispatched")
    -- A unit left dispatched for two hours times out (an attempt).
    local fired2 = eng:tick(after(last_time(u3), 2 * 3600 + 1)).fired
    assert.same({ "dispatched", "verify_failed" }, { fired2[1].from, fired2[1].to })
    eng:tick(after(last_time(u3), 31))
    go(u3, "verifying"); go(u3, "done")
    assert.equal("closed", kit.state(eng, g2))
    -- The last gate closed: the feature is done, by itself.
    assert.equal("done", kit.state(eng, feature))
    local ok, n = eng:verify()
    assert.is_true(ok, n)
  end)

  it("refuses a parent that does not exist, and lists children only alone", function()
    eng = kit.engine()
    local res = eng:create{ ref = "orphan", workflow = "specfuse-unit", parent = "loop-nope" }
    assert.is_false(res.success)
    assert.equal("invalid_request", res.code)
    assert.equal("Parent record not found: loop-nope", res.error)
    local _, err, code = eng:list{ parent = "loop-nope", state = "queued" }
    assert.equal("invalid_request", code)
    assert.matches("takes no state or repo", err)
    assert.same({}, assert(eng:list{ parent = "loop-nope" }).records)
  end)
end)
