-- loopforge.testing -- the kit policy authors use to test policies with
-- busted, against the real C engine (loopforge.core): the same pipeline,
-- sandbox, budgets and audit log as production, on the memory store.
--
--   local kit = require "loopforge.testing"
--
--   describe("my policy", function()
--     after_each(kit.cleanup)
--     it("denies", function()
--       local eng = kit.engine{ guards = { mine = [[ return policy{ ... } ]] } }
--       local id = kit.record(eng, { labels = { ["do-not-merge"] = "yes" } })
--       kit.to_state(eng, id, "ci_passed")
--       kit.assert_denied(eng:transition(id, "merged", "auto.merged"), "mine", "label")
--     end)
--   end)
--
-- Owns: engines over temporary policy directories (and their removal),
-- walking records along the lifecycle with sensible triggers and actors,
-- and assertions on results and decisions whose failure messages say what
-- the engine actually answered. Everything it checks comes from the
-- engine; the kit never re-implements a rule.

local core = require "loopforge.core"
local lfs = require "lfs"

local kit = {}

-- The policies directory specs run against by default: the repository's
-- own, relative to where busted runs (the repository root).
kit.policies = os.getenv("LOOPFORGE_POLICIES") or "policies"

-- The trigger used for a step when the caller gives none: by edge first
-- (the same target is reached for different reasons), then by target.
kit.triggers = {
  ["ci_failed>ci_pending"]       = "ci.retry",
  ["awaiting_review>ci_pending"] = "review.changes_requested",
  ["ci_passed>merged"]           = "auto.merged",
  ["approved>merged"]            = "pr.merged",
  task_queued     = "worker.picked_up",
  pr_created      = "pr.opened",
  ci_pending      = "ci.started",
  ci_passed       = "ci.completed",
  ci_failed       = "ci.failed",
  awaiting_review = "review.requested",
  approved        = "review.approved",
  merged          = "pr.merged",
  closed          = "issue.closed",
}

-- Who performs a step when the caller names nobody. Approval comes from a
-- different person than the one who opened the PR, so a plain walk does
-- not trip separation-of-duties policies by accident.
kit.actor = "kit"
kit.actors = { approved = "kit-reviewer" }

---------------------------------------------------------------------------
-- Files and temporary directories
---------------------------------------------------------------------------

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function is_dir(path)
  return lfs.attributes(path, "mode") == "directory"
end

local function mkdir_p(path)
  local sofar = path:sub(1, 1) == "/" and "/" or ""
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. part
    if not is_dir(sofar) then assert(lfs.mkdir(sofar)) end
    sofar = sofar .. "/"
  end
end

local function write_file(path, text)
  mkdir_p(path:match("^(.*)/[^/]*$") or ".")
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  assert(f:close())
end

-- Removes a tree without following symbolic links out of it.
local function rm_rf(path)
  local mode = lfs.symlinkattributes(path, "mode")
  if mode == "directory" then
    for name in lfs.dir(path) do
      if name ~= "." and name ~= ".." then rm_rf(path .. "/" .. name) end
    end
    return lfs.rmdir(path)
  elseif mode then
    return os.remove(path)
  end
end

local function copy_tree(from, to)
  for name in lfs.dir(from) do
    if name ~= "." and name ~= ".." then
      local src, dst = from .. "/" .. name, to .. "/" .. name
      local mode = lfs.attributes(src, "mode")
      if mode == "directory" then
        mkdir_p(dst)
        copy_tree(src, dst)
      elseif mode == "file" then
        write_file(dst, assert(read_file(src)))
      end
    end
  end
end

-- os.tmpname creates a unique file; its name becomes our directory.
local function mkdtemp()
  local name = os.tmpname()
  os.remove(name)
  assert(lfs.mkdir(name), "kit: cannot create a temporary directory " .. name)
  return name
end

-- Every directory the kit made and has not removed yet. kit.cleanup()
-- removes them; so does the collector (a __gc on each handle), which also
-- runs when the Lua state closes at exit.
local live = setmetatable({}, { __mode = "k" })

local Dir = {}
Dir.__index = Dir
Dir.__gc = function(d) d:remove() end

--- Writes `text` to `rel` (a path relative to the directory), creating
--- subdirectories. Returns the handle, for chaining.
function Dir:write(rel, text)
  write_file(self.path .. "/" .. rel, text)
  return self
end

--- Deletes one file of the directory.
function Dir:delete(rel)
  os.remove(self.path .. "/" .. rel)
  return self
end

--- Removes the whole directory (idempotent).
function Dir:remove()
  if self.path and is_dir(self.path) then rm_rf(self.path) end
  live[self] = nil
end

---------------------------------------------------------------------------
-- Configuration
---------------------------------------------------------------------------

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

-- Lua source for a value: keys sorted, so the file (and the policy set's
-- generation id) is the same on every run.
local function serialize(v, indent)
  indent = indent or ""
  local tv = type(v)
  if tv == "string" then return string.format("%q", v) end
  if tv == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.17g", v)
  end
  if tv == "boolean" then return tostring(v) end
  if tv ~= "table" then error("kit: cannot write a " .. tv .. " into config.lua", 3) end
  local inner, parts = indent .. "  ", {}
  if is_list(v) then
    for _, x in ipairs(v) do parts[#parts + 1] = inner .. serialize(x, inner) end
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k
                  or "[" .. serialize(k) .. "]"
      parts[#parts + 1] = inner .. key .. " = " .. serialize(v[k], inner)
    end
  end
  if #parts == 0 then return "{}" end
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

-- Overrides win; tables that are maps merge key by key, lists (freeze
-- windows, label names) are replaced whole, and so is anything by an
-- empty table (`risk_tiers = {}` means none).
local function merge(base, over)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over) do
    if type(v) == "table" and type(out[k]) == "table" and next(v) ~= nil
       and not is_list(v) then
      out[k] = merge(out[k], v)
    else
      out[k] = v
    end
  end
  return out
end

-- The settings a policies directory's config.lua returns, evaluated
-- with only the safe part of the standard library (config files are
-- plain data).
local function load_config(dir)
  local path = dir .. "/config.lua"
  local src = read_file(path)
  if not src then return {} end
  local env = { math = math, string = string, table = table, os = { time = os.time, date = os.date } }
  local chunk, err = load(src, "@" .. path, "t", env)
  if not chunk then error("kit: " .. err, 3) end
  local ok, cfg = pcall(chunk)
  if not ok then error("kit: " .. tostring(cfg), 3) end
  return type(cfg) == "table" and cfg or {}
end

kit.serialize = serialize

---------------------------------------------------------------------------
-- Policy directories and engines
---------------------------------------------------------------------------

local function add_sources(d, sub, sources)
  for name, src in pairs(sources or {}) do
    local rel = name:find("%.lua$") and name or name .. ".lua"
    d:write(sub .. "/" .. rel, src)
  end
end

--- A temporary policies directory.
---
---   kit.policy_dir{
---     from    = DIR,           -- where to copy from (default kit.policies)
---     shipped = false,         -- true: also copy DIR's guards/, hooks/, routes/;
---                              -- a list ("guards/merge-freeze.lua", ...):
---                              -- copy just those files
---     guards  = { name = source, ... },   -- written to guards/name.lua
---     hooks   = { name = source, ... },   -- written to hooks/name.lua
---     routes  = { name = source, ... },   -- written to routes/name.lua
---     lib     = { name = source, ... },   -- written to lib/name.lua
---     config  = table | source,           -- table: with shipped = true,
---                                         -- merged over DIR's config.lua
---                                         -- (else used as is); source:
---                                         -- written as config.lua
---   }
---
--- DIR's workflows/ and lib/ are always copied, so records behave as in
--- production. Returns a handle: d.path, d:write(rel, text), d:delete(rel),
--- d:remove(). kit.cleanup() removes every directory not yet removed.
function kit.policy_dir(opts)
  opts = opts or {}
  local from = opts.from or kit.policies
  if not is_dir(from .. "/workflows") then
    error("kit.policy_dir: " .. from .. " has no workflows/ directory", 2)
  end
  local d = setmetatable({ path = mkdtemp() }, Dir)
  live[d] = true
  for _, sub in ipairs{ "workflows", "lib" } do
    if is_dir(from .. "/" .. sub) then
      mkdir_p(d.path .. "/" .. sub)
      copy_tree(from .. "/" .. sub, d.path .. "/" .. sub)
    end
  end
  if opts.shipped == true then
    for _, sub in ipairs{ "guards", "hooks", "routes" } do
      if is_dir(from .. "/" .. sub) then
        mkdir_p(d.path .. "/" .. sub)
        copy_tree(from .. "/" .. sub, d.path .. "/" .. sub)
      end
    end
  elseif type(opts.shipped) == "table" then
    for _, rel in ipairs(opts.shipped) do
      local src, err = read_file(from .. "/" .. rel)
      if not src then error("kit.policy_dir: " .. err, 2) end
      d:write(rel, src)
    end
  end
  add_sources(d, "guards", opts.guards)
  add_sources(d, "hooks", opts.hooks)
  add_sources(d, "routes", opts.routes)
  add_sources(d, "lib", opts.lib)
  -- config.lua may only name policies that are loaded (anything else is
  -- a lint error), so the directory's own settings come along only with
  -- all of its policies.
  if type(opts.config) == "string" then
    d:write("config.lua", opts.config)
  elseif opts.config == nil and opts.shipped == true then
    local src = read_file(from .. "/config.lua")
    if src then d:write("config.lua", src) end     -- as is: lint lines stay right
  else
    local cfg = opts.config or {}
    if opts.shipped == true then cfg = merge(load_config(from), cfg) end
    if next(cfg) ~= nil then
      d:write("config.lua", "-- written by loopforge.testing\nreturn " .. serialize(cfg) .. "\n")
    end
  end
  return d
end

-- Directories that must live as long as the engine reading them (a
-- reload reads them again).
local owned = setmetatable({}, { __mode = "k" })

--- An engine on the memory store.
---
---   kit.engine()                                  -- the repository's policies
---   kit.engine{ policies = DIR }                  -- another directory, as is
---   kit.engine{ config = { ["merge-freeze"] = { windows = {} } } }
---   kit.engine{ guards = {...}, hooks = {...}, routes = {...}, shipped = false }
---
--- With config, guards, hooks, routes or lib, the engine runs on a temporary copy
--- (see kit.policy_dir; shipped defaults to true here, so the repository's
--- policies stay loaded unless shipped = false). instructions, memory and time_ms
--- set the Lua budgets. Returns the engine and the directory handle (nil
--- when the directory is used as is). A policy set that does not load is
--- an error carrying the engine's "file:line: message" lines.
function kit.engine(opts)
  opts = opts or {}
  local dir, handle = opts.policies or kit.policies, nil
  if opts.config or opts.guards or opts.hooks or opts.routes or opts.lib
     or opts.shipped ~= nil then
    local shipped = opts.shipped
    if shipped == nil then shipped = true end
    handle = kit.policy_dir{ from = dir, shipped = shipped, guards = opts.guards,
                             hooks = opts.hooks, routes = opts.routes, lib = opts.lib,
                             config = opts.config }
    dir = handle.path
  end
  local eng, err = core.engine{ policies = dir, store = opts.store or "memory:",
                                instructions = opts.instructions, memory = opts.memory,
                                time_ms = opts.time_ms }
  if not eng then
    if handle then handle:remove() end
    error("kit.engine: policies do not load:\n" .. err, 2)
  end
  if handle then owned[eng] = handle end
  return eng, handle
end

--- The directory handle of an engine made by kit.engine, if any.
function kit.dir_of(eng) return owned[eng] end

--- Removes every temporary directory the kit made. Use as
--- after_each(kit.cleanup) or teardown(kit.cleanup).
function kit.cleanup()
  local all = {}
  for d in pairs(live) do all[#all + 1] = d end
  for _, d in ipairs(all) do d:remove() end
end

---------------------------------------------------------------------------
-- Records and walks
---------------------------------------------------------------------------

local seq = 0

local function describe_result(res)
  return string.format("%s: %s", tostring(res.code), tostring(res.error))
end

--- Creates a record and returns its id (and the result). Fields as for
--- eng:create; ref defaults to a fresh "kit/repo#N".
function kit.record(eng, fields)
  fields = fields or {}
  local req = {}
  for k, v in pairs(fields) do req[k] = v end
  if req.ref == nil then
    seq = seq + 1
    req.ref = "kit/repo#" .. seq
    req.repo = req.repo or "kit/repo"
    req.ref_number = req.ref_number or seq
  end
  local res = eng:create(req)
  if not res.success then
    error("kit.record: create failed: " .. describe_result(res), 2)
  end
  return res.record.record_id, res
end

--- The state a record is in now (after any follow-ups).
function kit.state(eng, id)
  local res = eng:get(id)
  if not res.success then error("kit.state: " .. describe_result(res), 2) end
  return res.record.state
end

function kit.trigger(from, to)
  return kit.triggers[from .. ">" .. to] or kit.triggers[to] or ("kit." .. to)
end

-- One step: `step` is a state name or { to, trigger=, actor=, metadata= }.
local function step_of(step, opts)
  if type(step) == "string" then step = { step } end
  local to = step[1] or step.to
  return to, step.trigger, step.actor or (opts.actors and opts.actors[to]) or opts.actor
         or kit.actors[to] or kit.actor, step.metadata or opts.metadata
end

--- Walks a record through `steps`, in order, each with the default trigger
--- for its edge (kit.triggers) unless given. A step is a state name or a
--- table { "state", trigger=, actor=, metadata= }. opts: actor (every
--- step), actors (by target state), metadata (every step). Every step must
--- succeed; otherwise the error names the step and the engine's answer.
--- Returns the last result and the list of results.
function kit.walk(eng, id, steps, opts)
  opts = opts or {}
  local results, last = {}, nil
  for i, step in ipairs(steps) do
    local to, trigger, actor, meta = step_of(step, opts)
    local from = kit.state(eng, id)
    trigger = trigger or kit.trigger(from, to)
    last = eng:transition(id, to, trigger, { actor = actor, metadata = meta })
    results[i] = last
    if not last.success then
      error(string.format("kit.walk: step %d (%s \u{2192} %s, trigger %s, actor %s) failed: %s",
                          i, from, to, trigger, actor, describe_result(last)), 2)
    end
  end
  return last, results
end

-- The way to each state: the review path for records without auto_merge,
-- the auto-merge path otherwise.
local head = { "issue_created", "task_queued", "pr_created", "ci_pending" }
local function path_to(target, auto_merge)
  local p = { table.unpack(head) }
  local function add(...) for _, s in ipairs{ ... } do p[#p + 1] = s end end
  if target == "ci_failed" then add("ci_failed")
  elseif target == "ci_passed" then add("ci_passed")
  elseif target == "awaiting_review" then add("ci_passed", "awaiting_review")
  elseif target == "approved" then add("ci_passed", "awaiting_review", "approved")
  elseif target == "merged" or target == "closed" then
    if auto_merge then add("ci_passed", "merged")
    else add("ci_passed", "awaiting_review", "approved", "merged") end
    if target == "closed" then add("closed") end
  end
  return p
end

local function index_of(list, x)
  for i, v in ipairs(list) do if v == x then return i end end
end

--- Walks a record forward along the lifecycle until it is in `state`:
--- straight to merged when the record has auto_merge, through
--- awaiting_review and approved otherwise. Hooks may move the record on
--- by themselves (route-to-review does); the walk carries on from
--- wherever the record is. It is an error if a step fails or if the
--- record ends up past `state`. opts as for kit.walk. Returns the record.
function kit.to_state(eng, id, state, opts)
  opts = opts or {}
  local got = eng:get(id)
  if not got.success then error("kit.to_state: " .. describe_result(got), 2) end
  local path = path_to(state, got.record.auto_merge)
  if not index_of(path, state) then
    error("kit.to_state: no lifecycle path leads to " .. tostring(state), 2)
  end
  for _ = 1, #path + 1 do
    local rec = eng:get(id).record
    if rec.state == state then return rec end
    local at = index_of(path, rec.state)
    if not at or at >= index_of(path, state) then
      error(string.format("kit.to_state: record %s is in %s, which is not on the way to %s%s",
                          id, rec.state, state,
                          at and " (a hook moved it on?)" or ""), 2)
    end
    local ok, err = pcall(kit.walk, eng, id, { path[at + 1] }, opts)
    if not ok then error((tostring(err):gsub("^kit%.walk", "kit.to_state")), 2) end
  end
  error("kit.to_state: record " .. id .. " never reached " .. state, 2)
end

---------------------------------------------------------------------------
-- Webhooks: routes and deliveries
---------------------------------------------------------------------------

-- Where kit.fixture finds webhook payloads: $LOOPFORGE_FIXTURES, else the
-- repository's own GitHub payloads (tests/fixtures/github, relative to
-- where busted runs, like kit.policies).
kit.fixtures = os.getenv("LOOPFORGE_FIXTURES") or "tests/fixtures/github"

--- The bytes of a webhook payload file, kit.fixtures/NAME.json, and its
--- event name (the part of NAME before the first dot, as the fixtures
--- are named: "pull_request.opened" -> "pull_request").
function kit.fixture(name)
  local path = kit.fixtures .. "/" .. name .. ".json"
  local body, err = read_file(path)
  if not body then error("kit.fixture: " .. tostring(err), 2) end
  return body, name:match("^[^.]+")
end

--- Delivers a webhook as `loopforge serve` does once the signature
--- checks out: eng:route(event, payload, delivery), then each request in
--- order -- a create as it is; a transition to the record its ref (or
--- alias) names, as an observation, or a not_found result if no record
--- has that ref. With a delivery id, the i-th request carries the
--- idempotency key "<delivery>:<i - 1>" (the server's), so a redelivery
--- changes nothing. Returns the
--- routing ({ requests, ignored, error }) and one result per request.
function kit.deliver(eng, event, payload, delivery)
  local routed = eng:route(event, payload, delivery)
  local results = {}
  for i, q in ipairs(routed.requests) do
    local key = delivery and (delivery .. ":" .. (i - 1)) or nil
    if q.op == "create" then
      results[i] = eng:create{ ref = q.ref, repo = q.repo, ref_number = q.ref_number,
                               labels = q.labels, metadata = q.metadata, actor = q.actor,
                               idempotency_key = key }
    else
      local found = eng:find_by_ref(q.ref)
      results[i] = found.success
        and eng:transition(found.record.record_id, q.to, q.trigger,
                           { actor = q.actor, metadata = q.metadata, observed = true,
                             idempotency_key = key })
        or found
    end
  end
  return routed, results
end

---------------------------------------------------------------------------
-- Assertions
---------------------------------------------------------------------------

local function decisions_text(res)
  local out = {}
  for _, d in ipairs(res.decisions or {}) do
    out[#out + 1] = string.format("%s=%s%s", tostring(d.policy), tostring(d.verdict),
                                  d.reason and (" (" .. tostring(d.reason) .. ")") or "")
  end
  return #out > 0 and table.concat(out, ", ") or "none"
end

--- The decision a policy made in a result, or nil if it was not consulted.
function kit.decision(res, policy)
  for _, d in ipairs(res.decisions or {}) do
    if d.policy == policy then return d end
  end
end

-- Plain text first (reasons are full of "-" and "."), then as a pattern.
local function matches(s, pat)
  return s ~= nil and (s:find(pat, 1, true) ~= nil or s:find(pat) ~= nil)
end

--- Asserts the request went through: success, code "ok", and no policy
--- denied it. Returns the result.
function kit.assert_allowed(res, msg)
  if type(res) ~= "table" then error("kit.assert_allowed: not a result", 2) end
  local denied = false
  for _, d in ipairs(res.decisions or {}) do denied = denied or d.verdict ~= "allow" end
  if not res.success or res.code ~= "ok" or denied then
    error(string.format("%sexpected the transition to be allowed, got %s; decisions: %s",
                        msg and (msg .. ": ") or "", describe_result(res), decisions_text(res)), 2)
  end
  return res
end

--- Asserts `policy` denied the request: code "denied", the policy's
--- decision is "deny", and (if given) its reason contains `reason` (plain
--- text, or else a Lua pattern). Returns the decision.
function kit.assert_denied(res, policy, reason)
  if type(res) ~= "table" then error("kit.assert_denied: not a result", 2) end
  local d = kit.decision(res, policy)
  local problem
  if res.success or res.code ~= "denied" then
    problem = "expected code denied, got " .. describe_result(res)
  elseif not d then
    problem = "policy " .. tostring(policy) .. " made no decision"
  elseif d.verdict ~= "deny" then
    problem = "policy " .. tostring(policy) .. " did not deny"
  elseif reason and not matches(d.reason, reason) then
    problem = string.format("reason %q does not match %q", tostring(d.reason), reason)
  elseif not matches(res.error, "Denied by policy ") then
    problem = "error does not say who denied: " .. tostring(res.error)
  end
  if problem then
    error(string.format("kit.assert_denied(%s): %s; decisions: %s", tostring(policy),
                        problem, decisions_text(res)), 2)
  end
  return d
end

--- The audit entries of one record (or of the whole log), and the last one.
function kit.audit(eng, id)
  local entries = assert(eng:audit(id))
  return entries, entries[#entries]
end

--- Seconds since the epoch of an ISO 8601 UTC time as the engine writes
--- it ("2026-12-05T10:00:00.123456Z"), plus `plus`: the clock a spec
--- moves, for eng:tick(t) and eng:timers(t).
function kit.seconds(ts, plus)
  local y, mo, d, h, mi, s = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)Z$")
  if not y then error("kit.seconds: not an ISO 8601 UTC time: " .. tostring(ts), 2) end
  local t = os.time{ year = y, month = mo, day = d, hour = h, min = mi, sec = 0, isdst = false }
  return t - (os.time(os.date("!*t", t)) - t) + tonumber(s) + (plus or 0)
end

kit.core = core
return kit
