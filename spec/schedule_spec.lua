-- schedule_spec.lua -- timers of a record's own (issue 11): a hook's
-- schedule{} (bound to the state the record is in, cancelled by leaving
-- it, fired by the tick), and break-glass reviews (a workflow's override
-- = { co_signer, review, escalate_to }: escalated unless someone else
-- acknowledges in time). The clock is moved with eng:tick, never slept.
local kit = require "loopforge.testing"

local WF = [[
return workflow {
  name = "job",
  states = { "new", "queued", "running", "stale", "done", "escalated" },
  initial = "new",
  terminal = { "done" },
  edges = { { "new", "queued" }, { "new", "running" }, { "queued", "running" },
            { "queued", "stale" }, { "running", "done" }, { "stale", "queued" },
            { "escalated", "queued" } },
  override = { co_signer = true, review = "24h", escalate_to = "escalated" },
}
]]

local REMIND = [[
return hook {
  name = "stale-after-an-hour",
  on = { to = "queued", workflow = "job" },
  run = function(e)
    return schedule{ after = "1h", to = "stale", trigger = "job.stale",
                     metadata = { note = "nobody picked it up" } }
  end,
}
]]

local FROZEN = [[
return policy {
  name = "frozen",
  on = { to = "running", workflow = "job" },
  check = function(t) return deny("runs are frozen") end,
}
]]

describe("serve's tick (eng:fire_due)", function()
  after_each(function() kit.cleanup() end)

  -- It looks only at the records that entered a timed state at least its
  -- shortest timer ago (and at those with timers of their own), so on the
  -- embedded stores it costs what is due; what it fires is what a full
  -- tick fires.
  local TWO = [[
return workflow { name = "w", states = { "open", "waiting", "late", "later" },
  initial = "open", terminal = { "late", "later" },
  edges = { { "open", "late" }, { "open", "waiting" }, { "waiting", "later" } },
  timers = { open = { { "1h", to = "late", trigger = "sla" } },
             waiting = { { "2h", to = "later", trigger = "sla2" } } } }
]]
  local function engine()
    local d = kit.policy_dir{ shipped = false }
    d:write("workflows/w.lua", TWO)
    return assert(kit.core.engine{ policies = d.path, store = "memory:" })
  end
  local function refs(eng, list)
    local out = {}
    for _, x in ipairs(list) do out[#out + 1] = eng:get(x.record_id).record.ref end
    table.sort(out)
    return out
  end

  it("fires what is due, as a full tick does, and nothing early", function()
    local a, b = engine(), engine()
    local t0
    for _, eng in ipairs{ a, b } do
      for i = 1, 6 do
        local r = eng:create{ ref = "r" .. i, workflow = "w" }
        t0 = t0 or kit.seconds(r.record.created_at)
        if i > 3 then assert(eng:transition(r.record.record_id, "waiting", "wait").success) end
      end
    end
    assert.same({}, a:fire_due(t0 + 3500).fired)
    local due = a:fire_due(t0 + 3700)
    assert.equal(3, #due.fired)
    assert.equal(3, #due.timers)            -- it looked at those only ...
    assert.equal(6, #b:timers(t0 + 3700).timers)    -- ... a full tick at all
    assert.same(refs(b, b:tick(t0 + 3700).fired), refs(a, due.fired))
    local later = a:fire_due(t0 + 7300).fired
    assert.equal(3, #later)
    for _, x in ipairs(later) do assert.equal("later", x.to) end
  end)

  it("lists a part of the timers: by due, a page after a cursor, by record", function()
    local eng = engine()
    local t0, ids = nil, {}
    for i = 1, 5 do
      local r = eng:create{ ref = "r" .. i, workflow = "w" }
      t0 = t0 or kit.seconds(r.record.created_at)
      ids[i] = r.record.record_id
      if i > 3 then assert(eng:transition(ids[i], "waiting", "wait").success) end
    end
    -- due within 90 minutes: the three in open (1h), not the two waiting (2h)
    local soon = eng:timers(t0, { due_by = t0 + 5400 })
    assert.equal(3, #soon.timers)
    for _, x in ipairs(soon.timers) do assert.equal("open", x.state) end
    -- pages of two, soonest first, every timer once
    local seen, cursor, pages = {}, nil, 0
    repeat
      local page = eng:timers(t0, { limit = 2, cursor = cursor })
      pages = pages + 1
      for _, x in ipairs(page.timers) do seen[#seen + 1] = x.record_id end
      cursor = page.next_cursor
    until cursor == nil
    assert.equal(3, pages)
    assert.same({ ids[1], ids[2], ids[3], ids[4], ids[5] }, seen)
    -- those records' timers, and none for one that is not
    local two = eng:timers(t0, { records = { ids[5], ids[1], "loop-0000000000000000" } })
    assert.same({ ids[1], ids[5] }, { two.timers[1].record_id, two.timers[2].record_id })
    -- refused: a cursor no listing gave, an unknown option
    local ok, err, code = eng:timers(t0, { cursor = "soon" })
    assert.is_nil(ok)
    assert.equal("invalid_request", code)
    assert.matches("cursor", err)
    assert.has_error(function() eng:timers(t0, { state = "open" }) end)
    -- a time no clock reaches (its microseconds beyond int64) is no time
    assert.has_error(function() eng:timers(1e300) end)
    assert.has_error(function() eng:tick(0 / 0) end)
  end)

  it("counts a record's time in its state from when it entered it", function()
    local eng = engine()
    local r = eng:create{ ref = "r", workflow = "w" }
    local id = r.record.record_id
    local t0 = kit.seconds(r.record.created_at)
    assert(eng:transition(id, "waiting", "wait").success)
    local entered = kit.seconds(eng:get(id).record.updated_at)
    assert.same({}, eng:fire_due(entered + 7100).fired)
    assert.equal("later", eng:fire_due(entered + 7300).fired[1].to)
    assert.is_true(entered >= t0)
  end)
end)

describe("serve's tick on a retry state without a backoff", function()
  after_each(function() kit.cleanup() end)

  -- Nothing there is due but a spent budget's escalation, which the move
  -- into the state makes at once; so the tick looks at every record of
  -- the state at its first tick, after a reload and every ten minutes,
  -- and otherwise only at those that entered since its last tick (ten
  -- seconds before it) and at those whose escalation a guard held.
  local WF = [[
return workflow { name = "w", states = { "new", "run", "failed", "given_up" }, initial = "new",
  terminal = { "given_up" },
  edges = { { "new", "run" }, { "run", "failed" }, { "failed", "run" }, { "failed", "given_up" } },
  retries = { failed = { to = "run", trigger = "again", max = 1, escalate_to = "given_up" } } }
]]
  local HOLD = [[
return policy { name = "hold", on = { to = "given_up", workflow = "w" },
  check = function(t) return deny("not yet") end }
]]

  it("lists those that entered since its last tick, the held ones, now and then all", function()
    local d = kit.policy_dir{ shipped = false }
    d:write("workflows/w.lua", WF)
    d:write("guards/hold.lua", HOLD)
    local eng = assert(kit.core.engine{ policies = d.path, store = "memory:" })
    local spent
    for i = 1, 50 do
      local id = eng:create{ ref = "r" .. i, workflow = "w" }.record.record_id
      assert(eng:transition(id, "run", "go").success)
      assert(eng:transition(id, "failed", "fail").success)
      spent = id
    end
    -- the last one spends its one retry: its escalation is held
    assert(eng:transition(spent, "run", "again").success)
    assert(eng:transition(spent, "failed", "fail").success)
    assert.equal("failed", eng:get(spent).record.state)
    local t = kit.seconds(eng:get(spent).record.updated_at)
    local function listed(now)
      local n = eng:stats().timer_records
      local out = eng:fire_due(now)
      return eng:stats().timer_records - n, out
    end
    local n, out = listed(t + 1)                 -- the first tick: every one
    assert.equal(50, n)
    assert.equal(1, #out.fired)
    assert.is_true(out.fired[1].held)
    n = listed(t + 60)          -- those that entered since (10 s before) it
    assert.equal(50, n)
    n, out = listed(t + 120)                     -- then the held one alone
    assert.equal(1, n)
    assert.equal(spent, out.fired[1].record_id)
    assert.is_true(out.fired[1].held)
    os.remove(d.path .. "/guards/hold.lua")      -- a reload: every one again
    assert(eng:reload())
    n, out = listed(t + 180)
    assert.equal(50, n)
    assert.equal("ok", out.fired[1].code)
    assert.equal("given_up", eng:get(spent).record.state)
    n = listed(t + 240)                          -- none entered since
    assert.equal(0, n)
    n = listed(t + 180 + 599)
    assert.equal(0, n)
    n = listed(t + 180 + 601)                    -- ten minutes on: every one
    assert.equal(49, n)
  end)
end)

describe("a tick with many due timers", function()
  after_each(function() kit.cleanup() end)

  -- The memory store answers before a call returns; firing one timer
  -- after the other used to nest a call chain per timer and overflow the
  -- stack after a few thousand.
  it("fires 20,000 of them on the memory store, every one", function()
    local d = kit.policy_dir{ shipped = false }
    d:write("workflows/w.lua", [[
return workflow { name = "w", states = { "open", "late" }, initial = "open",
  terminal = { "late" }, edges = { { "open", "late" } },
  timers = { open = { { "1h", to = "late", trigger = "sla" } } } }
]])
    local eng = assert(kit.core.engine{ policies = d.path, store = "memory:" })
    local t0
    for i = 1, 20000 do
      local r = eng:create{ ref = "r" .. i, workflow = "w" }
      t0 = t0 or kit.seconds(r.record.created_at)
    end
    local fired = eng:tick(t0 + 7200).fired
    assert.equal(20000, #fired)
    assert.equal("ok", fired[20000].code)
    assert.equal(0, #eng:timers())
  end)
end)

describe("retry backoff with jitter", function()
  after_each(function() kit.cleanup() end)

  it("spreads records that failed together, the same way every time", function()
    local d = kit.policy_dir{ shipped = false }
    d:write("workflows/w.lua", [[
return workflow { name = "w", states = { "new", "run", "failed", "given_up" }, initial = "new",
  terminal = { "given_up" },
  edges = { { "new", "run" }, { "run", "failed" }, { "failed", "run" }, { "failed", "given_up" } },
  retries = { failed = { to = "run", trigger = "again", max = 3, escalate_to = "given_up",
                         backoff = { initial = "100s", factor = 2, max = "1h", jitter = 0.5 } } } }
]])
    local eng = assert(kit.core.engine{ policies = d.path, store = "memory:" })
    local delays = {}
    for i = 1, 8 do
      local id = eng:create{ ref = "r" .. i, workflow = "w" }.record.record_id
      eng:transition(id, "run", "go")
      local rec = eng:transition(id, "failed", "boom").record
      delays[id] = rec.updated_at
    end
    local seen, distinct = eng:timers(), {}
    for _, t in ipairs(seen.timers) do
      local d_s = kit.seconds(t.due) - kit.seconds(delays[t.record_id])
      assert.is_true(d_s >= 50 and d_s <= 150, "backoff " .. d_s .. " outside 100s +- 50%")
      distinct[("%.3f"):format(d_s)] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.is_true(n >= 6, "only " .. n .. " distinct backoffs of 8")
    assert.same(seen.timers, eng:timers(seen.now).timers)       -- the same every time
    eng:close()
  end)
end)

describe("a record's own timers", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  local function engine(guards)
    local d = kit.policy_dir{ shipped = false, guards = guards,
                              hooks = { ["stale-after-an-hour"] = REMIND } }
    d:write("workflows/job.lua", WF)
    return assert(kit.core.engine{ policies = d.path, store = "memory:" })
  end
  local secs = kit.seconds

  it("fires a hook's schedule{} at its time, bound to the state it was set in", function()
    eng = engine()
    local id = eng:create{ ref = "j1", workflow = "job" }.record.record_id
    kit.assert_allowed(eng:transition(id, "queued", "enqueue"))   -- the hook schedules
    local rec = eng:get(id).record
    assert.equal(1, #rec.timers)
    local t = rec.timers[1]
    assert.same({ "queued", "stale", "job.stale", "scheduled", "hook:stale-after-an-hour" },
                { t.state, t.to, t.trigger, t.kind, t.by })
    local _, noted = kit.audit(eng, id)
    assert.same({ "noted", "timer.scheduled", "hook:stale-after-an-hour", "nobody picked it up" },
                { noted.kind, noted.trigger, noted.actor, noted.metadata.metadata.note })
    local due = secs(t.due)
    assert.same({}, eng:tick(due - 1).fired)
    local fired = eng:tick(due + 1).fired
    assert.same({ record_id = id, from = "queued", to = "stale", code = "ok" }, fired[1])
    rec = eng:get(id).record
    assert.equal("stale", rec.state)
    assert.is_nil(rec.timers, "a fired timer is spent")
  end)

  it("cancels a scheduled timer when the record leaves the state", function()
    eng = engine()
    local id = eng:create{ ref = "j2", workflow = "job" }.record.record_id
    kit.assert_allowed(eng:transition(id, "queued", "enqueue"))
    kit.assert_allowed(eng:transition(id, "running", "picked"))
    assert.is_nil(eng:get(id).record.timers)
    assert.same({}, eng:tick("2099-01-01T00:00:00Z").fired)
    assert.equal("running", kit.state(eng, id))
  end)

  it("needs a co-signer for an override, and escalates an unacknowledged one", function()
    eng = engine{ frozen = FROZEN }
    local id = eng:create{ ref = "j3", workflow = "job" }.record.record_id
    local res = eng:transition(id, "running", "go", { actor = "al", roles = { "breakglass" },
                                                      override = "hotfix" })
    kit.assert_denied(res, "breakglass", "needs a co-signer")
    res = eng:transition(id, "running", "go", {
      actor = "al", roles = { "breakglass" }, override = "hotfix", co_signer = "bo" })
    assert.is_true(res.success, res.error)
    assert.equal("deny", res.decisions[1].verdict)      -- the guard it overrode
    local review = res.record.timers[1]
    assert.same({ "override_review", "escalated", "al" }, { review.kind, review.to, review.by })
    assert.is_nil(review.state)
    -- It outlives moves until it fires.
    local due = secs(review.due)
    assert.is_true(math.abs(due - secs(res.record.updated_at) - 86400) < 1)
    assert.same({}, eng:tick(due - 1).fired)
    local fired = eng:tick(due + 1).fired
    assert.same({ "running", "escalated", "ok" }, { fired[1].from, fired[1].to, fired[1].code })
    local rec = eng:get(id).record
    local last = rec.transitions[#rec.transitions]
    assert.same({ "override.review_expired", "timer:running" }, { last.trigger, last.actor })
    assert.is_nil(rec.timers)
  end)

  it("ends the review when someone else acknowledges it", function()
    eng = engine{ frozen = FROZEN }
    local id = eng:create{ ref = "j4", workflow = "job" }.record.record_id
    assert.is_true(eng:transition(id, "running", "go", {
      actor = "al", roles = { "breakglass" }, override = "hotfix", co_signer = "bo" }).success)
    local own = eng:acknowledge(id, { actor = "al", reason = "looked fine" })
    assert.equal("denied", own.code)
    assert.matches("cannot also acknowledge it", own.error)
    local ok = kit.assert_allowed(eng:acknowledge(id, { actor = "cy", reason = "reviewed the diff" }))
    assert.is_nil(ok.record.timers)
    local _, last = kit.audit(eng, id)
    assert.same({ "noted", "override.acknowledged", "cy", "reviewed the diff" },
                { last.kind, last.trigger, last.actor, last.metadata.reason })
    assert.same({}, eng:tick("2099-01-01T00:00:00Z").fired)
    assert.equal("running", kit.state(eng, id))
    local none = eng:acknowledge(id, { actor = "cy", reason = "again" })
    assert.equal("invalid_request", none.code)
    local ok2, n = eng:verify()
    assert.is_true(ok2, n)
  end)
end)
