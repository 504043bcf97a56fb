-- conformance_spec.lua -- the reference behaviours of LoopForge
-- (../shared/conformance/loopforge.md) that a Lua host can see, run
-- through loopforge.core: the core lines a spec author relies on, the hook
-- lines 17-20 and line 25 (denied attempts are audited).
--
-- Hooks run in the sandbox and cannot write anywhere, so these specs
-- observe them through what the engine exposes: a hook that raises is
-- logged with its message and counted (eng:logs(), eng:stats()), and a
-- hook that requests a follow-up moves the record.
local kit = require "loopforge.testing"

local ARROW = "\u{2192}"

describe("conformance: core lines through Lua", function()
  local eng
  before_each(function() eng = kit.engine() end)
  after_each(function() eng:close(); kit.cleanup() end)

  it("4, 5, 12: a new record starts in issue_created with one history entry", function()
    local res = eng:create{ ref = "acme/app#7", repo = "acme/app", ref_number = 7,
                            auto_merge = true, labels = { team = "core" }, actor = "alice" }
    assert.is_true(res.success)
    assert.equal("ok", res.code)
    local rec = res.record
    assert.matches("^loop%-%x+$", rec.record_id)
    assert.equal(21, #rec.record_id)
    assert.equal("issue_created", rec.state)
    assert.equal("acme/app#7", rec.ref)
    assert.equal(7, rec.ref_number)
    assert.equal("acme/app", rec.repo)
    assert.is_true(rec.auto_merge)
    assert.same({ team = "core" }, rec.labels)
    assert.is_nil(rec.closed_at)
    assert.equal(1, #rec.transitions)
    local h = rec.transitions[1]
    assert.is_nil(h.from_state)
    assert.equal("issue_created", h.to_state)
    assert.equal("created", h.trigger)
    assert.same({ ref = "acme/app#7", repo = "acme/app" }, h.metadata)
    assert.equal("alice", h.actor)
    local got = eng:get(rec.record_id)
    assert.equal("issue_created", got.record.state)
    assert.equal(rec.record_id, eng:find_by_ref("acme/app#7").record.record_id)
  end)

  it("7: the six-step happy path ends closed with seven history entries", function()
    local id = kit.record(eng, { auto_merge = true })
    local last = kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending",
                                     "ci_passed", "merged", "closed" })
    assert.equal("closed", last.new_state)
    assert.equal("merged", last.previous_state)
    local rec = eng:get(id).record
    assert.equal("closed", rec.state)
    assert.equal(7, #rec.transitions)
    assert.is_string(rec.closed_at)
    assert.equal("auto.merged", rec.transitions[6].trigger)
    assert.is_true(rec.transitions[7].timestamp <= rec.updated_at)
    assert.is_true(rec.updated_at <= rec.closed_at)
  end)

  it("8, 9: the retry and review paths succeed", function()
    local id = kit.record(eng)
    kit.walk(eng, id, { "task_queued", "pr_created", "ci_pending", "ci_failed",
                        "ci_pending", "ci_passed" })
    -- Without auto_merge the record goes through review (route-to-review
    -- may already have moved it there).
    kit.to_state(eng, id, "merged")
    local rec = eng:get(id).record
    assert.equal("merged", rec.state)
    local triggers = {}
    for _, h in ipairs(rec.transitions) do triggers[#triggers + 1] = h.to_state end
    assert.same({ "issue_created", "task_queued", "pr_created", "ci_pending", "ci_failed",
                  "ci_pending", "ci_passed", "awaiting_review", "approved", "merged" }, triggers)
    assert.equal("ci.retry", rec.transitions[6].trigger)
  end)

  it("13, 16: a transition's result, its metadata and a fresh read agree", function()
    local id = kit.record(eng)
    local res = eng:transition(id, "task_queued", "worker.picked_up",
                               { actor = "worker-1", metadata = { queue = "fast", n = 2 } })
    kit.assert_allowed(res)
    assert.equal("issue_created", res.previous_state)
    assert.equal("task_queued", res.new_state)
    assert.equal("task_queued", res.record.state)
    assert.is_false(res.dry_run)
    local h = eng:get(id).record.transitions[2]
    assert.same({ queue = "fast", n = 2 }, h.metadata)
    assert.equal("worker-1", h.actor)
  end)

  it("14: an unknown id is not found, and nothing is written", function()
    local before = #eng:audit()
    local res = eng:transition("loop-0123456789abcdef", "task_queued", "worker.picked_up")
    assert.is_false(res.success)
    assert.equal("not_found", res.code)
    assert.equal("Record not found: loop-0123456789abcdef", res.error)
    assert.is_nil(res.previous_state)
    assert.is_nil(res.new_state)
    assert.equal(before, #eng:audit())
  end)

  it("15: an invalid edge has LoopForge's message and changes nothing", function()
    local id = kit.record(eng)
    local res = eng:transition(id, "merged", "pr.merged")
    assert.is_false(res.success)
    assert.equal("invalid_transition", res.code)
    assert.equal("Invalid transition: issue_created " .. ARROW ..
                 " merged. Allowed from issue_created: task_queued", res.error)
    assert.equal("issue_created", res.previous_state)
    assert.is_nil(res.new_state)
    -- Never reached the guards: the workflow graph is the only decision.
    assert.same({ { policy = "workflow:loopforge", verdict = "deny",
                    reason = res.error } }, res.decisions)
    local rec = eng:get(id).record
    assert.equal(1, rec.version)
    assert.equal(1, #rec.transitions)
    -- The attempt is on record (kind rejected), the record did not move.
    local log = eng:audit(id)
    assert.equal("rejected", log[#log].kind)
    assert.equal("merged", log[#log].to_state)
  end)

  it("15: a terminal state allows nothing", function()
    local id = kit.record(eng, { auto_merge = true })
    kit.to_state(eng, id, "closed")
    local res = eng:transition(id, "issue_created", "reopen")
    assert.equal("Invalid transition: closed " .. ARROW ..
                 " issue_created. Allowed from closed: none (terminal)", res.error)
  end)

  it("22: delete leaves nothing to read, and an unknown id is not found", function()
    local id = kit.record(eng)
    assert.is_true(eng:delete(id, "admin").success)
    assert.equal("not_found", eng:get(id).code)
    assert.is_false(eng:delete(id, "admin").success)
    local entries, last = kit.audit(eng, id)
    assert.equal("deleted", last.kind)
    assert.equal("admin", last.actor)
    assert.equal(2, #entries)
  end)

  it("24: every audit entry names its actor, and the chain verifies", function()
    local id = kit.record(eng, { actor = "alice" })
    kit.walk(eng, id, { "task_queued", "pr_created" }, { actor = "bob" })
    for _, e in ipairs(eng:audit(id)) do assert.is_string(e.actor) end
    local ok, n = eng:verify()
    assert.is_true(ok)
    assert.equal(#eng:audit(), n)
  end)
end)

-- What the engine logged since the last look, one line per message
-- ("error: hook NAME: ..." for each failed hook).
local function log_lines(eng) return eng:logs() end

local function grep(lines, text)
  local hits = {}
  for _, l in ipairs(lines) do
    if l:find(text, 1, true) then hits[#hits + 1] = l end
  end
  return hits
end

describe("conformance: hooks (lines 17-20)", function()
  after_each(kit.cleanup)

  -- A hook that reports what it was handed by raising it: an error is the
  -- one thing a hook can do that the engine reports verbatim.
  local PROBE = [[
return hook {
  name = "probe",
  run = function(e)
    error(("probe record=%s state=%s version=%d previous=%s new=%s trigger=%s actor=%s")
          :format(e.record.record_id, e.record.state, e.record.version,
                  tostring(e.previous), e.state, e.trigger, e.actor), 0)
  end,
}
]]

  it("17: a hook fires exactly once per successful transition, with record, previous, new and trigger", function()
    local eng = kit.engine{ shipped = false, hooks = { probe = PROBE } }
    local id = kit.record(eng)
    assert.equal(0, eng:stats().hooks_run)           -- creating is not a transition
    kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up", { actor = "w1" }))
    local st = eng:stats()
    assert.equal(1, st.hooks_run)
    local lines = grep(log_lines(eng), "probe record=")
    assert.equal(1, #lines)
    assert.matches("probe record=" .. id .. " state=task_queued version=2 previous=issue_created " ..
                   "new=task_queued trigger=worker.picked_up actor=w1", lines[1], 1, true)
    kit.walk(eng, id, { "pr_created", "ci_pending" })
    assert.equal(3, eng:stats().hooks_run)
    assert.equal(2, #grep(log_lines(eng), "probe record="))
    eng:close()
  end)

  it("18: no hook fires for an invalid, a not-found or a denied transition", function()
    local eng = kit.engine{ shipped = false, hooks = { probe = PROBE }, guards = { ["no-prs"] = [[
return policy {
  name = "no-prs",
  on = { to = "pr_created" },
  check = function(t) return deny("no PRs today") end,
}
]] } }
    local id = kit.record(eng)
    eng:transition(id, "merged", "pr.merged")
    eng:transition("loop-0000000000000000", "task_queued", "worker.picked_up")
    assert.equal(0, eng:stats().hooks_run)
    assert.same({}, log_lines(eng))
    kit.walk(eng, id, { "task_queued" })
    eng:logs()
    local res = eng:transition(id, "pr_created", "pr.opened")
    assert.equal("denied", res.code)
    assert.equal(1, eng:stats().hooks_run)
    assert.same({}, grep(log_lines(eng), "probe record="))
    eng:close()
  end)

  it("19: a raising hook does not fail the transition, and later hooks still run, in order", function()
    local function raiser(name, msg)
      return ([[
return hook {
  name = %q,
  on = { to = "task_queued" },
  run = function(e) error(%q) end,
}
]]):format(name, msg)
    end
    local eng = kit.engine{ shipped = false, hooks = {
      ["10-first"] = raiser("first", "first hook failed"),
      ["20-second"] = [[
return hook {
  name = "second",
  on = { to = "task_queued" },
  run = function(e) return request("pr_created", "pr.opened") end,
}
]],
      ["30-third"] = raiser("third", "third hook failed"),
    } }
    local id = kit.record(eng)
    local res = eng:transition(id, "task_queued", "worker.picked_up")
    kit.assert_allowed(res)
    assert.equal("task_queued", res.new_state)
    local st = eng:stats()
    assert.equal(3, st.hooks_run)
    assert.equal(2, st.hook_errors)
    -- The hook between the two failures ran: its follow-up happened.
    local rec = eng:get(id).record
    assert.equal("pr_created", rec.state)
    assert.equal("hook:second", rec.transitions[#rec.transitions].actor)
    -- Both errors are reported, first before third.
    local lines = log_lines(eng)
    local first, third
    for i, l in ipairs(lines) do
      if l:find("hook first: ", 1, true) then first = first or i end
      if l:find("hook third: ", 1, true) then third = third or i end
    end
    assert.is_number(first, "the first hook's error was not logged")
    assert.is_number(third, "the third hook's error was not logged")
    assert.is_true(first < third)
    assert.matches("first hook failed", lines[first], 1, true)
    eng:close()
  end)

  it("20: a hook's changes to the record are not persisted: the view is read-only", function()
    local eng = kit.engine{ shipped = false, hooks = { meddle = [[
return hook {
  name = "meddle",
  on = { to = "task_queued" },
  run = function(e)
    e.record.labels.sneaky = "yes"        -- a private copy: allowed, goes nowhere
    e.record.state = "closed"             -- the view itself: raises
  end,
}
]] } }
    local id = kit.record(eng, { labels = { team = "core" } })
    local res = eng:transition(id, "task_queued", "worker.picked_up")
    kit.assert_allowed(res)
    local st = eng:stats()
    assert.equal(1, st.hooks_run)
    assert.equal(1, st.hook_errors)
    local errs = grep(log_lines(eng), "hook meddle: ")
    assert.equal(1, #errs)
    assert.matches("read-only", errs[1], 1, true)
    local rec = eng:get(id).record
    assert.equal("task_queued", rec.state)
    assert.same({ team = "core" }, rec.labels)
    assert.equal(2, rec.version)
    eng:close()
  end)
end)

describe("conformance: denied attempts are audited (line 25)", function()
  after_each(kit.cleanup)

  it("records the attempt with every decision, and leaves the record alone", function()
    local eng = kit.engine{ shipped = false, guards = {
      ["a-ok"] = [[return policy { name = "a-ok", check = function(t) return allow() end }]],
      ["b-no"] = [[
return policy {
  name = "b-no",
  on = { to = "task_queued" },
  check = function(t) return deny("the queue is full") end,
}
]] } }
    local id = kit.record(eng)
    local before = eng:get(id).record
    local res = eng:transition(id, "task_queued", "worker.picked_up",
                               { actor = "worker-9", metadata = { attempt = 1 } })
    kit.assert_denied(res, "b-no", "the queue is full")
    assert.equal("Denied by policy b-no: the queue is full", res.error)
    assert.equal("issue_created", res.previous_state)
    assert.is_nil(res.new_state)
    assert.same({ policy = "a-ok", verdict = "allow" }, kit.decision(res, "a-ok"))

    local after = eng:get(id).record
    assert.same(before, after)                 -- state, version, history: unchanged

    local entries, last = kit.audit(eng, id)
    assert.equal(2, #entries)
    assert.equal("denied", last.kind)
    assert.equal("issue_created", last.from_state)
    assert.equal("task_queued", last.to_state)
    assert.equal("worker.picked_up", last.trigger)
    assert.equal("worker-9", last.actor)
    assert.equal(before.version, last.version)
    assert.same({ attempt = 1 }, last.metadata)
    assert.same({ { policy = "a-ok", verdict = "allow" },
                  { policy = "b-no", verdict = "deny", reason = "the queue is full" } },
                last.decisions)
    assert.equal(eng:generation(), last.policy_set)
    assert.is_true((eng:verify()))
    eng:close()
  end)
end)
