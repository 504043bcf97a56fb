-- reload_spec.lua -- eng:reload(): a whole new policy set replaces the old
-- one atomically, and says so in the audit log; a broken one is refused
-- with "file:line: message" while the old generation keeps serving.
local kit = require "loopforge.testing"

local DENY_QUEUE = [[
return policy {
  name = "queue-closed",
  on = { to = "task_queued" },
  check = function(t) return deny("the queue is closed") end,
}
]]

-- Searches every string in a (decoded JSON) value.
local function mentions(v, s)
  if type(v) == "string" then return v:find(s, 1, true) ~= nil end
  if type(v) == "table" then
    for _, x in pairs(v) do if mentions(x, s) then return true end end
  end
  return false
end

describe("reload", function()
  local eng, dir
  before_each(function() eng, dir = kit.engine{ shipped = false, guards = {} } end)
  after_each(function() eng:close(); kit.cleanup() end)

  it("swaps in a new generation that changes behaviour, and audits it", function()
    local old = eng:generation()
    local a = kit.record(eng)
    kit.assert_allowed(eng:transition(a, "task_queued", "worker.picked_up"))

    dir:write("guards/queue-closed.lua", DENY_QUEUE)
    local ok, new = eng:reload("admin")
    assert.is_true(ok, new)
    assert.matches("^%x+$", new)
    assert.equal(64, #new)
    assert.not_equal(old, new)
    assert.equal(new, eng:generation())

    local b = kit.record(eng)
    local res = eng:transition(b, "task_queued", "worker.picked_up")
    kit.assert_denied(res, "queue-closed", "the queue is closed")

    -- The reload is on record, naming both generations and who did it,
    -- and the denial names the generation that decided it.
    local loaded
    for _, e in ipairs(eng:audit()) do
      if e.kind == "policy_loaded" then loaded = e end
    end
    assert.is_table(loaded, "no policy_loaded entry")
    assert.is_nil(loaded.record_id)
    assert.equal("admin", loaded.actor)
    assert.is_true(mentions(loaded, old), "policy_loaded does not name the old generation")
    assert.is_true(mentions(loaded, new), "policy_loaded does not name the new generation")
    local _, last = kit.audit(eng, b)
    assert.equal("denied", last.kind)
    assert.equal(new, last.policy_set)
    assert.is_true(eng:verify())
    assert.equal(1, eng:stats().reloads_ok)
  end)

  it("refuses a broken file with file:line and keeps the old generation serving", function()
    local old = eng:generation()
    dir:write("guards/broken.lua", "return policy {\n  name = 'broken',\n  check = function(t)\n    return allow(\nend,\n}\n")
    local before = #eng:audit()
    local ok, err = eng:reload("admin")
    assert.is_false(ok)
    assert.matches("guards/broken%.lua:%d+: ", err)
    assert.equal(old, eng:generation())
    assert.equal(before, #eng:audit())         -- nothing to record
    assert.equal(1, eng:stats().reloads_failed)
    -- Still serving, with the old rules.
    local id = kit.record(eng)
    kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up"))

    -- Once the file is fixed, the reload goes through.
    dir:write("guards/broken.lua", DENY_QUEUE)
    assert.is_true((eng:reload("admin")))
    assert.not_equal(old, eng:generation())
  end)

  it("reports every problem, one per line, and swaps nothing", function()
    local old = eng:generation()
    dir:write("guards/a.lua", "return policy { name = 'a', check = 42 }\n")
    dir:write("guards/b.lua", "this is not lua\n")
    local ok, err = eng:reload()
    assert.is_false(ok)
    assert.matches("guards/a%.lua:%d+: ", err)
    assert.matches("guards/b%.lua:%d+: ", err)
    assert.equal(old, eng:generation())
  end)

  it("a reload of unchanged files keeps the same generation id", function()
    local old = eng:generation()
    local ok, new = eng:reload()
    assert.is_true(ok)
    assert.equal(old, new)
  end)
end)
