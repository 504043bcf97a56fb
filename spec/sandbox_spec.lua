-- sandbox_spec.lua -- what a policy cannot do. Each escape is tried from
-- inside a guard's check: a guard whose attempt worked would return
-- allow(), so the spec insists on a denial -- the sandbox made the attempt
-- raise, and the engine failed closed with the error as the reason. The
-- same attempts at a file's top level make the policy set fail to load
-- ("file:line: message"). Budgets: an endless loop and a memory bomb are
-- stopped, deny, and the engine keeps serving.
local kit = require "loopforge.testing"
local core = require "loopforge.core"

-- A guard on task_queued whose check runs `body` and then allows.
local function guard(name, body)
  return string.format([[
return policy {
  name = %q,
  on = { to = "task_queued" },
  check = function(t)
    %s
    return allow()
  end,
}
]], name, body)
end

-- Runs `body` in a guard on a fresh engine and returns the result of the
-- transition it guards, and the engine.
local function attempt(body, opts)
  opts = opts or {}
  local eng = kit.engine{ shipped = false, guards = { escape = guard("escape", body) },
                          instructions = opts.instructions, memory = opts.memory,
                          time_ms = opts.time_ms }
  local id = kit.record(eng)
  return eng:transition(id, "task_queued", "worker.picked_up"), eng, id
end

-- name, the attempt, what the denial's reason must mention (plain text).
local escapes = {
  { "io.open",            [[local f = io.open("/etc/passwd")]],                 "global 'io'" },
  { "io.popen",           [[io.popen("id")]],                                   "global 'io'" },
  { "os.execute",         [[os.execute("touch /tmp/loopforge-pwned")]],         "field 'execute'" },
  { "os.getenv",          [[local home = os.getenv("HOME")]],                   "field 'getenv'" },
  { "os.remove",          [[os.remove("/tmp/loopforge-x")]],                    "field 'remove'" },
  { "os.exit",            [[os.exit(1)]],                                       "field 'exit'" },
  { 'require "os"',       [[local o = require "os"; o.execute("true")]],        "module 'os' not found" },
  { 'require "io"',       [[local io2 = require "io"; io2.open("/etc/passwd")]], "module 'io' not found" },
  { "require a C module", [[require "lfs"]],                                    "module 'lfs' not found" },
  { "require by path",    [[require "../../etc/passwd"]],                       "bad module name" },
  { "load (binary)",      [[assert(load("\27Lua\x54\0", "x", "b"))]],          "global 'load'" },
  { "load (text) reaching io",
                          [[local f = assert(load("return io.open")); f()("/etc/passwd")]], "global 'load'" },
  { "loadfile",           [[loadfile("/etc/passwd")]],                          "global 'loadfile'" },
  { "dofile",             [[dofile("/etc/passwd")]],                            "global 'dofile'" },
  { "string.dump",        [[local b = string.dump(function() end)]],            "field 'dump'" },
  { "string.dump as a method", [[local b = ("x").dump(function() end)]],        "field 'dump'" },
  { "debug",              [[debug.sethook()]],                                  "global 'debug'" },
  { "debug via require",  [[require("debug").getregistry()]],                   "module 'debug' not found" },
  { "collectgarbage",     [[collectgarbage("collect")]],                        "global 'collectgarbage'" },
  { "the string metatable",
                          [[getmetatable("").__index = { upper = function() return "x" end }]],
                                                                                "attempt to index a boolean value" },
  { "setmetatable on the string metatable",
                          [[setmetatable(getmetatable(""), nil)]],              "table expected" },
  { "a shared library table",  [[string.upper = function() return "pwned" end]], "read-only" },
  { "a __gc finalizer",   [[setmetatable({}, { __gc = function() end })]],      "__gc" },
  { "package.loadlib",    [[package.loadlib("/lib/x86_64-linux-gnu/libc.so.6", "system")]], "global 'package'" },
}

describe("sandbox: a guard cannot", function()
  after_each(kit.cleanup)

  for _, case in ipairs(escapes) do
    local name, body, mention = case[1], case[2], case[3]
    it("use " .. name .. " (fails closed: denies)", function()
      local res, eng, id = attempt(body)
      kit.assert_denied(res, "escape", mention)
      local d = kit.decision(res, "escape")
      assert.is_string(d.reason)
      assert.is_true(#d.reason > 0)
      assert.equal("issue_created", kit.state(eng, id))
      eng:close()
    end)
  end

  it("use any of them at load time either: the policy set does not load", function()
    for i, case in ipairs(escapes) do
      local d = kit.policy_dir{ guards = { ["top" .. i] = case[2] .. "\n" .. guard("top" .. i, "") } }
      local eng, err = core.engine{ policies = d.path, store = "memory:" }
      assert.is_nil(eng, case[1] .. " loaded at file scope")
      assert.matches("guards/top" .. i .. "%.lua:%d+: ", err)
      d:remove()
    end
  end)

  it("see anything of os but time, date and clock", function()
    local res = attempt([[
      local names = {}
      for k in pairs(os) do names[#names + 1] = k end
      table.sort(names)
      local got = table.concat(names, ",")
      if got ~= "clock,date,time" then error("os has " .. got) end
    ]])
    kit.assert_allowed(res)
  end)

  it("change the record it is shown: the view refuses writes", function()
    for _, body in ipairs{ [[t.record.state = "merged"]],
                           [[t.record.auto_merge = true]],
                           [[t.record.transitions[1] = {}]],
                           [[rawset(t.record, "state", "merged")]],
                           [[setmetatable(t.record, nil)]],
                           [[t.to = "merged"]] } do
      local res, eng, id = attempt(body)
      kit.assert_denied(res, "escape", "")
      assert.equal("issue_created", kit.state(eng, id))
      eng:close()
    end
  end)

  it("change what the next guard sees through a decoded table", function()
    -- labels and metadata are handed out as fresh tables per call: a guard
    -- may scribble on its copy, but the next guard (and the store) still
    -- see what the record says.
    local eng = kit.engine{ shipped = false, guards = {
      ["a-scribble"] = guard("a-scribble", [[t.record.labels.hold = "yes"; t.record.metadata.risk_tier = "low"]]),
      ["b-look"] = guard("b-look", [[
        if t.record.labels.hold then return deny("saw the scribbled label") end
        if t.record.metadata.risk_tier ~= "high" then return deny("saw the scribbled metadata") end]]),
    } }
    local id = kit.record(eng, { labels = { team = "core" }, metadata = { risk_tier = "high" } })
    kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up"))
    local rec = eng:get(id).record
    assert.same({ team = "core" }, rec.labels)
    assert.same({ risk_tier = "high" }, rec.metadata)
    eng:close()
  end)
end)

describe("sandbox budgets", function()
  after_each(kit.cleanup)

  -- After a budget denial the engine must still answer, and correctly.
  local function still_serving(eng)
    local other = eng:create{ ref = "after-the-bomb" }
    assert.is_true(other.success)
    local ok = eng:verify()
    assert.is_true(ok)
  end

  it("stop an endless loop: deny with the budget error, keep serving", function()
    local res, eng, id = attempt([[while true do end]])
    kit.assert_denied(res, "escape", "instruction")
    assert.equal("issue_created", kit.state(eng, id))
    still_serving(eng)
    -- The same guard runs again (fresh budget per call) and denies again.
    kit.assert_denied(eng:transition(id, "task_queued", "worker.picked_up"), "escape", "instruction")
    eng:close()
  end)

  it("cannot be caught: pcall and xpcall around a loop, in a loop, still end", function()
    for _, src in ipairs{
      [[while true do pcall(function() while true do end end) end]],
      [[local spin = function() while true do end end
        while true do xpcall(spin, spin) end]],
      [[while true do pcall(error, "again") end]],
    } do
      local res, eng, id = attempt(src)
      kit.assert_denied(res, "escape", "instruction budget exceeded")
      assert.equal("issue_created", kit.state(eng, id))
      still_serving(eng)
      eng:close()
    end
  end)

  it("has a wall-clock deadline behind the instruction count", function()
    local res, eng = attempt([[while true do pcall(string.rep, "x", 100000) end]],
                             { instructions = 1e9, time_ms = 20 })
    kit.assert_denied(res, "escape", "time budget exceeded")
    still_serving(eng)
    eng:close()
  end)

  it("stop a memory bomb: deny with the memory error, keep serving", function()
    local res, eng, id = attempt([[local s = string.rep("x", 1 << 30)]])
    kit.assert_denied(res, "escape", "memory")
    assert.equal("issue_created", kit.state(eng, id))
    still_serving(eng)
    eng:close()
  end)

  it("stop a growing table before it takes the machine", function()
    local res, eng = attempt([[local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end]])
    kit.assert_denied(res, "escape")
    local reason = kit.decision(res, "escape").reason
    assert.is_truthy(reason:find("memory") or reason:find("instruction"), reason)
    still_serving(eng)
    eng:close()
  end)

  it("are configurable per engine", function()
    local loop = [[local n = 0 for i = 1, 200000 do n = n + i end]]
    kit.assert_allowed((attempt(loop)))
    kit.assert_denied((attempt(loop, { instructions = 10000 })), "escape", "instruction")
    local alloc = [[local s = string.rep("x", 8 << 20)]]
    kit.assert_allowed((attempt(alloc)))
    kit.assert_denied((attempt(alloc, { memory = 4 << 20 })), "escape", "memory")
  end)
end)
