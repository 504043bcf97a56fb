-- related_spec.lua -- records with a parent: guards of a workflow that
-- declares `children` see t.record.children (counts by state), hooks ask
-- for transitions of another record (request's fourth argument), and the
-- actor's roles reach guards (t.actor_roles) from loopforge.core.
local kit = require "loopforge.testing"

local EPIC = [[
return {
  workflow {
    name = "epic",
    states = { "open", "review", "shipped" },
    initial = "open",
    terminal = { "shipped" },
    edges = { { "open", "review" }, { "review", "shipped" } },
    children = {},                  -- counts for the guards, no gate
  },
  workflow {
    name = "story",
    states = { "todo", "done" },
    initial = "todo",
    terminal = { "done" },
    edges = { { "todo", "done" } },
  },
}
]]

local MOST_DONE = [[
return policy {
  name = "most-stories-done",
  on = { to = "review", workflow = "epic" },
  check = function(t)
    local c = t.record.children
    if (c.done or 0) * 2 >= c.total and c.total > 0 then return allow() end
    return deny(("%d of %d stories done"):format(c.done or 0, c.total))
  end,
}
]]

local SHIP_ROLE = [[
return policy {
  name = "release-manager-ships",
  on = { to = "shipped", workflow = "epic" },
  check = function(t)
    for _, r in ipairs(t.actor_roles) do
      if r == "release-manager" then return allow() end
    end
    return deny("only a release manager ships")
  end,
}
]]

-- The last story done asks its epic to go to review.
local NUDGE = [[
return hook {
  name = "story-done-nudges-epic",
  on = { to = "done", workflow = "story" },
  run = function(e)
    if e.record.parent then
      return request("review", "stories.done", { by = e.record.record_id }, e.record.parent)
    end
  end,
}
]]

describe("related records", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function engine()
    local d = kit.policy_dir{ shipped = false,
                              guards = { ["most-stories-done"] = MOST_DONE,
                                         ["release-manager-ships"] = SHIP_ROLE },
                              hooks = { ["story-done-nudges-epic"] = NUDGE } }
    d:write("workflows/epic.lua", EPIC)
    return assert(kit.core.engine{ policies = d.path, store = "memory:" })
  end

  it("gives guards the children by state and lets hooks move the parent", function()
    eng = engine()
    local epic = eng:create{ ref = "epic-1", workflow = "epic" }.record.record_id
    local s = {}
    for i = 1, 3 do
      s[i] = eng:create{ ref = "story-" .. i, workflow = "story", parent = epic }.record.record_id
    end
    kit.assert_denied(eng:transition(epic, "review", "try"), "most-stories-done",
                      "0 of 3 stories done")
    -- The first story done: its hook asks, the guard still says no.
    kit.assert_allowed(eng:transition(s[1], "done", "did"))
    assert.equal("open", kit.state(eng, epic))
    local _, last = kit.audit(eng, epic)
    assert.equal("denied", last.kind)
    assert.equal("hook:story-done-nudges-epic", last.actor)
    assert.equal("1 of 3 stories done", last.decisions[1].reason)
    -- The second: two of three is enough, and the hook's request passes.
    kit.assert_allowed(eng:transition(s[2], "done", "did"))
    assert.equal("review", kit.state(eng, epic))
    _, last = kit.audit(eng, epic)
    assert.same({ "transition", "stories.done", s[2] }, { last.kind, last.trigger, last.metadata.by })
  end)

  it("lets guards see the actor's roles", function()
    eng = engine()
    local epic = eng:create{ ref = "epic-2", workflow = "epic" }.record.record_id
    local st = eng:create{ ref = "story-x", workflow = "story", parent = epic }.record.record_id
    kit.assert_allowed(eng:transition(st, "done", "did"))
    assert.equal("review", kit.state(eng, epic))
    kit.assert_denied(eng:transition(epic, "shipped", "ship", { roles = { "dev" } }),
                      "release-manager-ships")
    local res = kit.assert_allowed(eng:transition(epic, "shipped", "ship",
                                                  { roles = { "dev", "release-manager" } }))
    assert.equal("shipped", res.record.state)
    local _, last = kit.audit(eng, epic)
    assert.same({ roles = { "dev", "release-manager" }, source = "claimed" }, last.authority)
  end)
end)
