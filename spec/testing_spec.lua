-- testing_spec.lua -- the kit itself (lua/loopforge/testing.lua): its
-- failures must say what went wrong, its walks must follow the records,
-- and its temporary directories must go away.
local kit = require "loopforge.testing"
local lfs = require "lfs"

describe("loopforge.testing", function()
  after_each(kit.cleanup)

  it("walk names the failing step and the engine's answer", function()
    local eng = kit.engine()
    local id = kit.record(eng)
    local ok, err = pcall(kit.walk, eng, id, { "task_queued", "merged" }, { actor = "ann" })
    assert.is_false(ok)
    assert.matches("kit.walk: step 2 (task_queued \u{2192} merged, trigger pr.merged, actor ann) " ..
                   "failed: invalid_transition: Invalid transition: task_queued \u{2192} merged. " ..
                   "Allowed from task_queued: pr_created", err, 1, true)
    eng:close()
  end)

  it("to_state follows a hook that moves the record, and refuses to overshoot", function()
    local eng = kit.engine()
    local id = kit.record(eng)                       -- no auto_merge: route-to-review applies
    local rec = kit.to_state(eng, id, "approved")
    assert.equal("approved", rec.state)
    local other = kit.record(eng)
    local ok, err = pcall(kit.to_state, eng, other, "ci_passed")
    assert.is_false(ok)
    assert.matches("is in awaiting_review, which is not on the way to ci_passed", err, 1, true)
    eng:close()
  end)

  it("assert_denied and assert_allowed explain a mismatch", function()
    local eng = kit.engine()
    local id = kit.record(eng)
    local res = eng:transition(id, "task_queued", "worker.picked_up")
    local ok, err = pcall(kit.assert_denied, res, "no-self-approval")
    assert.is_false(ok)
    assert.matches("kit.assert_denied(no-self-approval): expected code denied, got ok", err, 1, true)
    kit.to_state(eng, id, "awaiting_review")
    res = eng:transition(id, "approved", "review.approved", { actor = "kit" })
    ok, err = pcall(kit.assert_allowed, res)
    assert.is_false(ok)
    assert.matches("no-self-approval=deny (separation of duties", err, 1, true)
    ok, err = pcall(kit.assert_denied, res, "no-self-approval", "something else")
    assert.is_false(ok)
    assert.matches("does not match", err, 1, true)
    eng:close()
  end)

  it("builds policy directories with lib modules, and removes them", function()
    local eng, dir = kit.engine{ shipped = false,
      lib = { limits = "return { max = 2 }" },
      guards = { ["uses-lib"] = [[
local limits = require "limits"
return policy {
  name = "uses-lib",
  on = { to = "task_queued" },
  check = function(t)
    if #t.record.transitions >= limits.max then return deny("too late") end
    return allow()
  end,
}
]] } }
    assert.equal("directory", lfs.attributes(dir.path, "mode"))
    assert.equal("file", lfs.attributes(dir.path .. "/workflows/loopforge.lua", "mode"))
    assert.is_nil(lfs.attributes(dir.path .. "/guards/blocking-labels.lua"))
    kit.assert_allowed(eng:transition(kit.record(eng), "task_queued", "worker.picked_up"))
    eng:close()
    kit.cleanup()
    assert.is_nil(lfs.attributes(dir.path))
  end)

  it("keeps the repository's config.lua as is when all its policies come along", function()
    local d = kit.policy_dir{ shipped = true }
    local f = assert(io.open(d.path .. "/config.lua"))
    local copy = f:read("a")
    f:close()
    f = assert(io.open(kit.policies .. "/config.lua"))
    assert.equal(f:read("a"), copy)
    f:close()
  end)
end)
