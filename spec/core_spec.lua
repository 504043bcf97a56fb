-- core_spec.lua -- the loopforge.core module itself: engines, argument
-- checking, Lua <-> JSON in both directions, list, audit, verify, stats,
-- logs and closing. Everything here is about the binding; what the engine
-- decides is covered by the other specs.
local core = require "loopforge.core"
local kit = require "loopforge.testing"

describe("loopforge.core", function()
  local eng
  before_each(function() eng = assert(core.engine{ policies = "policies", store = "memory:" }) end)
  after_each(function() eng:close(); kit.cleanup() end)

  it("reports its version and the policy set generation", function()
    assert.matches("^%d+%.%d+%.%d+$", core.version)
    assert.matches("^%x+$", eng:generation())
    assert.equal(64, #eng:generation())
    assert.matches("^loopforge%.engine", tostring(eng))
  end)

  it("returns nil, the problems and a code when policies do not load", function()
    local e, err, code = core.engine{ policies = "/nonexistent/policies", store = "memory:" }
    assert.is_nil(e)
    assert.is_string(err)
    assert.equal("invalid_request", code)
    local d = kit.policy_dir{ guards = { bad = "return policy {\n  name = 'bad',\n  check = 7,\n}\n" } }
    e, err = core.engine{ policies = d.path, store = "memory:" }
    assert.is_nil(e)
    assert.matches("guards/bad%.lua:%d+: ", err)
  end)

  it("refuses a store URL it does not understand", function()
    local e, err, code = core.engine{ policies = "policies", store = "gopher://x" }
    assert.is_nil(e)
    assert.is_string(err)
    assert.equal("invalid_request", code)
  end)

  it("works on a journal file, which survives the engine", function()
    local path = os.tmpname()
    os.remove(path)
    local j = assert(core.engine{ policies = "policies", store = "file:" .. path })
    local id = kit.record(j)
    kit.walk(j, id, { "task_queued" })
    j:close()
    j = assert(core.engine{ policies = "policies", store = "file:" .. path })
    assert.equal("task_queued", kit.state(j, id))
    assert.is_true((j:verify()))
    -- integers beyond 2^53 survive the journal's replay exactly
    local n = (1 << 53) + 1
    local big = j:create{ ref = "big", ref_number = n, metadata = { id = n } }.record.record_id
    j:close()
    j = assert(core.engine{ policies = "policies", store = "file:" .. path })
    local rec = j:get(big).record
    assert.equal(n, rec.ref_number)
    assert.equal(n, rec.metadata.id)
    j:close()
    os.remove(path)
  end)

  describe("arguments", function()
    it("raises on wrong types and unknown options, naming them", function()
      assert.has_error(function() eng:create{ ref = "x", automerge = true } end,
                       "bad argument #1 to 'create' (unknown option 'automerge')")
      assert.has_error(function() eng:create{ ref = 42 } end,
                       "bad argument #1 to 'create' (ref must be a string, got number)")
      assert.has_error(function() eng:create{ ref = "x", auto_merge = "yes" } end,
                       "bad argument #1 to 'create' (auto_merge must be a boolean, got string)")
      assert.has_error(function() eng:create{ ref = "x", ref_number = 1.5 } end,
                       "bad argument #1 to 'create' (ref_number must be a non-negative integer)")
      assert.has_error(function() eng:create{ ref = "x", labels = "a=b" } end,
                       "bad argument #1 to 'create' (labels must be a table, got string)")
      assert.has_error(function() eng:transition("loop-x", "task_queued") end)
      assert.has_error(function() eng:transition("loop-x", "a", "b", { dryrun = true }) end,
                       "bad argument #4 to 'transition' (unknown option 'dryrun')")
      assert.has_error(function() eng.create(42, {}) end)
    end)

    it("leaves engine refusals to results", function()
      local res = eng:create{}
      assert.is_false(res.success)
      assert.equal("invalid_request", res.code)
      assert.equal("ref is required", res.error)
      res = eng:create{ ref = "x", labels = { n = 1 } }
      assert.equal("invalid_request", res.code)
      assert.matches("labels", res.error)
      res = eng:create{ ref = "x", workflow = "nope" }
      assert.equal("invalid_request", res.code)
      assert.equal("Unknown workflow: nope", res.error)
      assert.is_true(eng:create{ ref = "dup" }.success)
      assert.equal("duplicate_ref", eng:create{ ref = "dup" }.code)
    end)

    it("refuses text C would cut or strict JSON clients could not read", function()
      assert.has_error(function() eng:create{ ref = "abc\0def" } end,
                       "bad argument #1 to 'create' (ref contains a NUL character)")
      local id = eng:create{ ref = "text" }.record.record_id
      assert.has_error(function() eng:transition(id, "task_queued", "t\0x") end,
                       "bad argument #3 to 'transition' (contains a NUL character)")
      local res = eng:create{ ref = "bad \xff" }
      assert.equal("invalid_request", res.code)
      assert.equal("ref: not valid UTF-8 (byte 4)", res.error)
      res = eng:transition(id, "task_queued", "t", { metadata = { note = "a\0b" } })
      assert.equal("invalid_request", res.code)
      assert.equal("metadata.note: contains a NUL character (\\u0000)", res.error)
      assert.equal(1, #eng:audit(id))
    end)
  end)

  describe("JSON", function()
    it("encodes tables to JSON and decodes it back to the same values", function()
      local meta = {
        s = "text with \"quotes\", \\ and \n newline", i = 42, neg = -7, f = 0.5,
        big = 1 << 40, t = true, no = false, empty = {},
        list = { 1, "two", { three = 3 } }, nested = { a = { b = { c = "deep" } } },
        utf8 = "caf\u{e9} \u{2192}",
      }
      local res = eng:create{ ref = "json", metadata = meta, labels = { team = "core" } }
      assert.is_true(res.success, res.error)
      local got = eng:get(res.record.record_id).record.metadata
      assert.same(meta, got)
      assert.equal("integer", math.type(got.i))
      assert.equal("float", math.type(got.f))
    end)

    it("keeps integers beyond 2^53 exact, end to end", function()
      -- Lua integer -> C int64 -> the entry's JSON -> the fold -> back;
      -- through a double 2^53 + 1 came back as 2^53.
      local n = (1 << 53) + 1
      local res = eng:create{ ref = "big-number", ref_number = n, metadata = { id = n } }
      assert.is_true(res.success, res.error)
      assert.equal(n, res.record.ref_number)
      assert.equal("integer", math.type(res.record.ref_number))
      local again = eng:get(res.record.record_id).record
      assert.equal(n, again.ref_number)
      assert.equal(n, again.metadata.id)
      local t = eng:transition(again.record_id, "task_queued", "t",
                               { metadata = { run = math.maxinteger } })
      assert.is_true(t.success, t.error)
      assert.equal(math.maxinteger, t.record.transitions[2].metadata.run)
    end)

    it("keeps null inside arrays as core.null and drops it from objects", function()
      local res = eng:create{ ref = "nulls", metadata = { list = { 1, core.null, 3 }, gone = core.null } }
      local got = eng:get(res.record.record_id).record.metadata
      assert.equal(3, #got.list)
      assert.equal(core.null, got.list[2])
      assert.is_nil(got.gone)
      -- and a fresh record's null fields are simply absent
      assert.is_nil(res.record.pr_url)
      assert.is_nil(res.record.closed_at)
    end)

    it("writes object keys sorted, so the audit bytes are stable", function()
      local res = eng:create{ ref = "order", metadata = { zebra = 1, apple = 2, mango = { y = 1, b = 2 } } }
      local id = res.record.record_id
      kit.walk(eng, id, { { "task_queued", metadata = { z = 1, a = 2, m = 3 } } })
      local entries = eng:audit(id)
      assert.equal(2, #entries)
      -- decoded tables lose the order, so look at the history JSON via the CLI
      -- contract instead: keys of the record metadata in creation order.
      local keys = {}
      for k in pairs(entries[1].record and entries[1].record.metadata or {}) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "apple", "mango", "zebra" }, keys)
    end)

    it("refuses what JSON cannot hold, naming the path", function()
      local cyc = {}
      cyc.self = cyc
      local cases = {
        { { f = print }, "metadata.f: cannot encode a function as JSON" },
        { { a = { b = cyc } }, "metadata.a.b.self: cannot encode a table that contains itself" },
        { { [1] = "a", x = 2 }, "metadata: cannot encode a table with a number key" },
        { { list = { 1, 2, nil, 4 } }, "metadata.list: cannot encode a table with a number key" },
        { { x = 0 / 0 }, "metadata.x: cannot encode NaN or infinity" },
        { { x = math.huge }, "metadata.x: cannot encode NaN or infinity" },
        { { co = coroutine.create(print) }, "metadata.co: cannot encode a thread" },
        { { [true] = 1 }, "metadata: cannot encode a table with a boolean key" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(eng.create, eng, { ref = "x", metadata = c[1] })
        assert.is_false(ok)
        assert.matches(c[2], err, 1, true)
      end
    end)

    it("encodes the same table twice when it is shared, not nested", function()
      local shared = { k = "v" }
      local res = eng:create{ ref = "shared", metadata = { a = shared, b = shared } }
      assert.is_true(res.success)
      assert.same({ a = { k = "v" }, b = { k = "v" } }, res.record.metadata)
    end)

    it("refuses tables nested too deeply instead of overflowing the C stack", function()
      local deep = {}
      local t = deep
      for _ = 1, 200 do t.x = {}; t = t.x end
      local ok, err = pcall(eng.create, eng, { ref = "deep", metadata = deep })
      assert.is_false(ok)
      assert.matches("nested too deeply", err, 1, true)
    end)
  end)

  describe("reads", function()
    it("lists by state and repo, newest first, with a cursor", function()
      local ids = {}
      for i = 1, 5 do
        ids[i] = kit.record(eng, { ref = "list#" .. i, repo = i % 2 == 0 and "even" or "odd" })
      end
      kit.walk(eng, ids[2], { "task_queued" })
      local all = eng:list{}
      assert.equal(5, #all.records)
      assert.equal(ids[2], all.records[1].record_id)     -- updated last
      assert.is_nil(all.next_cursor)
      local q = eng:list{ state = "issue_created" }
      assert.equal(4, #q.records)
      local evens = eng:list{ repo = "even" }
      assert.equal(2, #evens.records)
      local page = eng:list{ limit = 2 }
      assert.equal(2, #page.records)
      assert.is_string(page.next_cursor)
      local seen, cursor = #page.records, page.next_cursor
      while cursor do
        page = eng:list{ limit = 2, cursor = cursor }
        seen, cursor = seen + #page.records, page.next_cursor
      end
      assert.equal(5, seen)
    end)

    it("reads the whole audit log across pages, and verifies it", function()
      local id = kit.record(eng, { auto_merge = true })
      kit.to_state(eng, id, "closed")
      for i = 1, 1100 do eng:create{ ref = "bulk#" .. i } end
      local all = eng:audit()
      assert.equal(1 + 7 + 1100, #all)  -- the policy set's announcement first
      for i, e in ipairs(all) do assert.equal(i, e.seq) end
      local mine = eng:audit(id)
      assert.equal(7, #mine)
      assert.equal("created", mine[1].kind)
      assert.equal("closed", mine[7].to_state)
      local ok, n = eng:verify()
      assert.is_true(ok)
      assert.equal(#all, n)
    end)

    it("finds by ref and reports the previous state of a read", function()
      local id = kit.record(eng, { ref = "by-ref" })
      local res = eng:find_by_ref("by-ref")
      assert.is_true(res.success)
      assert.equal(id, res.record.record_id)
      assert.equal("not_found", eng:find_by_ref("nope").code)
    end)
  end)

  describe("counters and logs", function()
    it("counts transitions by outcome", function()
      local id = kit.record(eng)
      kit.walk(eng, id, { "task_queued" })
      eng:transition(id, "merged", "x")
      eng:transition("loop-0000000000000000", "merged", "x")
      local st = eng:stats()
      assert.equal(1, st.transitions.ok)
      assert.equal(1, st.transitions.invalid_transition)
      assert.equal(1, st.transitions.not_found)
      assert.equal(0, st.transitions.denied)
      for _, k in ipairs{ "guard_evals", "guard_ns", "hooks_run", "hook_errors",
                          "followups", "reloads_ok", "reloads_failed" } do
        assert.equal("integer", math.type(st[k]), k)
      end
    end)

    it("hands out logged lines once", function()
      assert.same({}, eng:logs())
    end)
  end)

  describe("closing", function()
    it("is idempotent, and a closed engine refuses work", function()
      local e = assert(core.engine{ policies = "policies", store = "memory:" })
      e:close()
      e:close()
      assert.matches("closed", tostring(e))
      assert.has_error(function() e:get("x") end, "loopforge.core: the engine is closed")
    end)

    it("works as a to-be-closed variable", function()
      local keep
      do
        local e <close> = assert(core.engine{ policies = "policies", store = "memory:" })
        keep = e
        assert.is_true(e:create{ ref = "tbc" }.success)
      end
      assert.has_error(function() keep:generation() end)
    end)
  end)
end)
