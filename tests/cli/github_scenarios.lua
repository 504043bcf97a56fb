-- github_scenarios.lua -- GitHub delivery patterns against a real server
-- (tests/cli/github_scenarios.sh starts it with the shipped policies).
--
--   lua5.4 tests/cli/github_scenarios.lua BASE SECRET FIXTURES TMPDIR
--
-- Every delivery is built from a fixture payload (FIXTURES: ours, or
-- GitHub's published ones), editing the fields that link deliveries
-- (issue and PR numbers, urls, head shas, check ids, the issue a PR body
-- fixes), and what the scenario is about (a conclusion, a review's state,
-- merged, a time), then signed with SECRET and posted. Each scenario has
-- issue and PR numbers of its own, so all share one server and store.
-- Speaks TAP.

local BASE, SECRET, FIX, TMP = arg[1], arg[2], arg[3], arg[4]
JSON_MODULE = true
local json = dofile((arg[0]:gsub("[^/]*$", "")) .. "json.lua")

local T, FAILED = 0, 0
local function ok(cond, name, detail)
  T = T + 1
  if cond then
    print(("ok %d - %s"):format(T, name))
  else
    FAILED = FAILED + 1
    print(("not ok %d - %s"):format(T, name))
    if detail then print("#   " .. tostring(detail):gsub("\n", "\n#   ")) end
  end
end

-- ---- JSON out -------------------------------------------------------------------

local function encode(v)
  local t = type(v)
  if t == "table" then
    if v.is_array then
      local out = {}
      for i = 1, #v do out[i] = encode(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    if getmetatable(v) then return "null" end
    local keys = {}
    for k in pairs(v) do if k ~= "is_array" then keys[#keys + 1] = k end end
    table.sort(keys)
    local out = {}
    for i, k in ipairs(keys) do out[i] = encode(tostring(k)) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return c == '"' and '\\"' or c == "\\" and "\\\\" or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" then
    return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- ---- HTTP -----------------------------------------------------------------------

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local DELIVERY = 0

-- Posts body (text) as event EVENT; returns status and the decoded reply.
local function post(event, body)
  DELIVERY = DELIVERY + 1
  local file = TMP .. "/payload.json"
  spit(file, body)
  local sig = sh("openssl dgst -sha256 -hmac " .. q(SECRET) .. " -r " .. file):match("^(%x+)")
  local out = sh(("curl -sS --max-time 60 -o %s/reply -w '%%{http_code}' "
    .. "-H 'Content-Type: application/json' -H 'X-GitHub-Event: %s' "
    .. "-H 'X-GitHub-Delivery: scenario-%d' -H 'X-Hub-Signature-256: sha256=%s' "
    .. "--data-binary @%s %s/v1/webhooks/github"):format(TMP, event, DELIVERY, sig, file, BASE))
  local reply = slurp(TMP .. "/reply")
  local okj, v = pcall(json.decode, reply)
  return tonumber(out), okj and v or { raw = reply }
end

local function get(path)
  local out = sh(("curl -sS --max-time 60 -o %s/got -w '%%{http_code}' %s%s")
    :format(TMP, BASE, path))
  return tonumber(out), slurp(TMP .. "/got")
end

local function urlencode(s)
  return (s:gsub("[^%w%-_.~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- The record a ref names, or nil.
local function record(ref)
  local status, body = get("/v1/records?ref=" .. urlencode(ref))
  if status ~= 200 then return nil end
  return json.decode(body)
end

-- The record's audit entries, decoded.
local function audit(id)
  local _, body = get("/v1/records/" .. id .. "/audit")
  local out = {}
  for line in body:gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

local function is_null(v) return v == nil or (type(v) == "table" and getmetatable(v) ~= nil) end

local function states(rec)
  local out = {}
  for i, t in ipairs(rec.transitions) do out[i] = t.to_state end
  return table.concat(out, " ")
end

local function violations(entries)
  local out = {}
  for _, e in ipairs(entries) do
    if not is_null(e.violation) then out[#out + 1] = e end
  end
  return out
end

-- ---- payloads -------------------------------------------------------------------

local FIXTURES = {}
local function fixture(name)
  if not FIXTURES[name] then FIXTURES[name] = slurp(FIX .. "/" .. name .. ".json") end
  return json.decode(FIXTURES[name])
end

local REPO = fixture("issues.opened").repository
local HTML = REPO.html_url
local AUTHOR, REVIEWER = "Codertocat", "octo-reviewer"

local function sha(tag) return (tag .. string.rep("0", 40)):sub(1, 40) end

local function arr(...) local a = { ... }; a.is_array = true; return a end

-- A lifecycle's deliveries: issue I, its PR P (body "Fixes #I").
local function lifecycle(I, P)
  local L = {}
  local issue_url = ("%s/issues/%d"):format(HTML, I)
  local pr_url = ("%s/pull/%d"):format(HTML, P)
  L.issue_url, L.pr_url = issue_url, pr_url

  function L.issue(action)
    local name = action == "opened" and "issues.opened" or "issues.assigned"
    local p = fixture(name)
    p.action, p.repository = action, REPO
    p.issue.number, p.issue.html_url = I, issue_url
    if action == "closed" then p.issue.state, p.issue.state_reason = "closed", "completed" end
    return "issues", p
  end

  -- pull_request.<action> with head `head`; opts: number, body, merged, at, before
  function L.pr(action, head, opts)
    opts = opts or {}
    local p = fixture("pull_request.opened")
    local n = opts.number or P
    p.action, p.repository = action, REPO
    p.number, p.pull_request.number = n, n
    p.pull_request.html_url = ("%s/pull/%d"):format(HTML, n)
    p.pull_request.body = opts.body or ("Fixes #%d"):format(I)
    p.pull_request.head.sha, p.pull_request.head.ref = head, "feature"
    p.pull_request.updated_at = opts.at or p.pull_request.updated_at
    p.pull_request.user.login = AUTHOR
    if action == "synchronize" then p.before, p.after = opts.before, head end
    if action == "closed" then
      p.pull_request.state = "closed"
      p.pull_request.merged = opts.merged or false
      p.pull_request.merged_at = opts.merged and (opts.at or "2026-03-02T10:00:00Z") or nil
      p.pull_request.merged_by = opts.merged and { login = AUTHOR } or nil
    end
    return "pull_request", p
  end

  -- check_suite for `head`: action requested | completed; conclusion
  function L.suite(action, head, conclusion, opts)
    opts = opts or {}
    local p = fixture("check_suite.completed.success")
    p.action, p.repository = action, REPO
    p.check_suite.id = opts.id or (P * 1000 + #head % 7)
    p.check_suite.head_sha = head
    p.check_suite.status = action == "completed" and "completed" or "queued"
    p.check_suite.conclusion = action == "completed" and conclusion or nil
    p.check_suite.updated_at = opts.at or p.check_suite.updated_at
    if opts.fork then
      p.check_suite.pull_requests = arr()
    else
      p.check_suite.pull_requests[1].number = opts.number or P
      p.check_suite.pull_requests[1].head.sha = head
    end
    return "check_suite", p
  end

  -- workflow_run: action requested | completed
  function L.run(action, head, conclusion, opts)
    opts = opts or {}
    local p = fixture("workflow_run.completed")
    p.action, p.repository = action, REPO
    local r = p.workflow_run
    r.id, r.head_sha = opts.id or P * 7, head
    r.check_suite_id = opts.suite
    r.run_attempt = opts.attempt or 1
    r.status = action == "completed" and "completed" or "queued"
    r.conclusion = action == "completed" and conclusion or nil
    r.pull_requests[1].number = P
    r.pull_requests[1].base.repo.id = REPO.id
    r.pull_requests[1].head.sha = head
    r.updated_at = opts.at or r.updated_at
    return "workflow_run", p
  end

  function L.review(state, commit, opts)
    opts = opts or {}
    local p = fixture("pull_request_review.submitted.commented")
    p.repository = REPO
    p.pull_request.number, p.pull_request.html_url = P, pr_url
    p.pull_request.user.login = AUTHOR
    p.review.state, p.review.commit_id = state, commit
    p.review.user.login = opts.by or REVIEWER
    p.sender.login = opts.by or REVIEWER
    p.review.submitted_at = opts.at or p.review.submitted_at
    return "pull_request_review", p
  end

  function L.status(head, state, context)
    local p = fixture("status")
    p.repository, p.sha, p.state, p.context = REPO, head, state, context or "ci/jenkins"
    return "status", p
  end
  return L
end

-- Delivers each {event, payload} in order; returns the replies.
local function deliver(list)
  local replies = {}
  for i, d in ipairs(list) do
    local status, reply = post(d[1], encode(d[2]))
    replies[i] = { status = status, reply = reply }
  end
  return replies
end

local function all_below(replies, limit)
  for i, r in ipairs(replies) do
    if r.status >= limit then return false, ("delivery %d: %d %s"):format(i, r.status, encode(r.reply)) end
  end
  return true
end

local function d(event, payload) return { event, payload } end

-- Checks a record: its states (the history) and its violations.
local function expect(name, ref, want_states, want_violations)
  local rec = record(ref)
  ok(rec ~= nil, name .. ": the record is found by " .. ref)
  if not rec then return nil end
  ok(states(rec) == want_states, name .. ": history " .. want_states, "got: " .. states(rec))
  local v = violations(audit(rec.record_id))
  local got = {}
  for i, e in ipairs(v) do got[i] = e.to_state .. ":" .. e.violation.rule end
  ok(table.concat(got, " ") == (want_violations or ""),
    name .. ": violations [" .. (want_violations or "") .. "]", "got: " .. table.concat(got, " "))
  return rec
end

local ORDINARY_CI = "issue_created task_queued pr_created ci_pending ci_passed awaiting_review approved merged closed"

-- ---- scenarios ------------------------------------------------------------------

-- The repository-webhook lifecycle: GitHub sends check suites only
-- `completed`, nobody assigns the issue.
local function ordinary(I, P, ci)
  local L, A = lifecycle(I, P), sha("a" .. I)
  local list = { d(L.issue("opened")), d(L.pr("opened", A)) }
  for _, x in ipairs(ci(L, A)) do list[#list + 1] = x end
  list[#list + 1] = d(L.review("approved", A))
  list[#list + 1] = d(L.pr("closed", A, { merged = true }))
  list[#list + 1] = d(L.issue("closed"))
  return L, list
end

do
  local L, list = ordinary(101, 1101, function(L, A) return { d(L.suite("completed", A, "success")) } end)
  local r = deliver(list)
  ok(all_below(r, 300), "check suites only: every delivery 2xx")
  expect("check suites only", L.issue_url, ORDINARY_CI)
  local rec = record(L.issue_url)
  ok(rec and rec.forge and rec.forge.pr.state == "merged" and rec.forge.issue.state == "closed",
    "check suites only: the record knows the merge and the close")
  ok(rec and rec.pr_number == 1101, "check suites only: the record's pr_number is the PR's")
  ok(rec and rec.transitions[2].metadata.implied == true and rec.transitions[4].metadata.implied == true,
    "check suites only: task_queued and ci_pending are implied steps",
    rec and encode(rec.transitions[2].metadata))
end

do
  local L, list = ordinary(102, 1102, function(L, A)
    return { d(L.run("requested", A)), d(L.run("completed", A, "success")) }
  end)
  ok(all_below(deliver(list), 300), "workflow runs only: every delivery 2xx")
  expect("workflow runs only", L.issue_url, ORDINARY_CI)
end

do
  local L, list = ordinary(103, 1103, function(L, A)
    return { d(L.suite("requested", A, nil, { id = 77103 })),
             d(L.run("requested", A, nil, { suite = 77103 })),
             d(L.run("completed", A, "success", { suite = 77103 })),
             d(L.suite("completed", A, "success", { id = 77103 })) }
  end)
  local r = deliver(list)
  ok(all_below(r, 300), "check suites and workflow runs: every delivery 2xx")
  expect("check suites and workflow runs (one run, two events)", L.issue_url, ORDINARY_CI)
  ok(r[6].reply.results and r[6].reply.results[1].changed == false,
    "… the second report of the finished run changes nothing", encode(r[6].reply))
end

do  -- assigned, statuses as CI
  local L, A = lifecycle(104, 1104), sha("a104")
  local r = deliver {
    d(L.issue("opened")), d(L.issue("assigned")), d(L.pr("opened", A)),
    d(L.status(A, "pending")), d(L.status(A, "success")),
    d(L.review("approved", A)), d(L.pr("closed", A, { merged = true })), d(L.issue("closed")),
  }
  ok(all_below(r, 300), "commit statuses: every delivery 2xx")
  local rec = expect("commit statuses", L.issue_url, ORDINARY_CI)
  ok(rec and rec.transitions[2].metadata.implied == nil, "… an assigned issue is queued by the fact, not implied")
end

do  -- close before merge
  local L, A = lifecycle(105, 1105), sha("a105")
  local r = deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("completed", A, "success")),
    d(L.review("approved", A)), d(L.issue("closed")), d(L.pr("closed", A, { merged = true })),
  }
  ok(all_below(r, 300), "close before merge: every delivery 2xx")
  ok(r[5].reply.results[1].from == "approved" and r[5].reply.results[1].to == "approved"
    and r[5].reply.results[1].changed == true,
    "… the close is recorded while the PR is open, the state waits", encode(r[5].reply))
  expect("close before merge", L.issue_url, ORDINARY_CI)
end

do  -- stale CI for a superseded sha: cancelled, then success
  local L, A, B = lifecycle(106, 1106), sha("a106"), sha("b106")
  local r = deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("requested", A, nil, { id = 1 })),
    d(L.pr("synchronize", B, { before = A })),
    d(L.suite("completed", A, "cancelled", { id = 1 })),
    d(L.suite("completed", A, "success", { id = 2 })),
  }
  ok(all_below(r, 300), "stale CI: every delivery 2xx")
  local res5, res6 = r[5].reply.results[1], r[6].reply.results[1]
  ok(res5.to == "ci_pending" and type(res5.stale) == "string" and res5.stale:find("no longer the head"),
    "… a cancelled suite for the old head is stale and moves nothing", encode(r[5].reply))
  ok(res6.to == "ci_pending" and type(res6.stale) == "string",
    "… a success for the old head is stale and moves nothing", encode(r[6].reply))
  r = deliver { d(L.suite("requested", B, nil, { id = 3 })), d(L.review("approved", B)),
                d(L.pr("closed", B, { merged = true })) }
  local rec = expect("stale CI, merged before B's CI finished", L.issue_url,
    "issue_created task_queued pr_created ci_pending merged", "merged:workflow:loopforge")
  local v = rec and violations(audit(rec.record_id))[1]
  ok(v and v.violation.reason:find("CI had not finished on " .. B:sub(1, 7), 1, true),
    "… the merge entry says B's CI had not finished", v and encode(v.violation))
end

do  -- a CI re-run after approval
  local L, A = lifecycle(107, 1107), sha("a107")
  local r = deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("completed", A, "success", { id = 5 })),
    d(L.review("approved", A)),
    d(L.suite("requested", A, nil, { id = 5, at = "2026-03-02T09:20:00Z" })),
    d(L.suite("completed", A, "success", { id = 5, at = "2026-03-02T09:25:00Z" })),
    d(L.suite("completed", A, "success", { id = 6, at = "2026-03-02T09:26:00Z" })),
    d(L.pr("closed", A, { merged = true })), d(L.issue("closed")),
  }
  ok(all_below(r, 300), "CI re-run after approval: every delivery 2xx")
  ok(r[5].reply.results[1].to == "approved", "… the re-run starting leaves the record approved",
    encode(r[5].reply))
  expect("CI re-run and a second app's suite after approval", L.issue_url, ORDINARY_CI)
end

do  -- every delivery repeated with a new delivery id: at once, and late
  local L, list = ordinary(108, 1108, function(L, A)
    return { d(L.suite("requested", A)), d(L.suite("completed", A, "success")) }
  end)
  local twice = {}
  for _, x in ipairs(list) do twice[#twice + 1] = x; twice[#twice + 1] = x end
  local r = deliver(twice)
  ok(all_below(r, 300), "repeated deliveries: every delivery 2xx")
  local rec = expect("every delivery repeated at once", L.issue_url, ORDINARY_CI)
  local before = rec and #audit(rec.record_id)
  r = deliver(list)
  ok(all_below(r, 300), "… and late: every delivery 2xx")
  local changed = false
  for _, x in ipairs(r) do
    for _, res in ipairs(x.reply.results or {}) do changed = changed or res.changed == true end
  end
  ok(not changed, "… no late repeat changes anything")
  expect("every delivery repeated late", L.issue_url, ORDINARY_CI)
  local after = rec and #audit(rec.record_id)
  ok(rec and after == before + #list - 1, "… each late repeat that found the record left an entry",
    ("%s -> %s"):format(before, after))
  local kinds = {}
  for _, e in ipairs(audit(rec.record_id)) do kinds[e.kind] = (kinds[e.kind] or 0) + 1 end
  ok(kinds.observed and kinds.observed >= #list - 1, "… as `observed` entries", encode(kinds))
end

do  -- a replacement PR
  local L, A, C = lifecycle(109, 1109), sha("a109"), sha("c109")
  local r = deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("completed", A, "failure")),
    d(L.pr("closed", A)),
    d(L.pr("opened", C, { number = 2109 })),
  }
  ok(all_below(r, 300), "replacement PR: every delivery 2xx")
  local res = r[5].reply.results[1]
  ok(res.from == "ci_failed" and res.to == "pr_created" and res.changed,
    "… the new PR takes the record back to pr_created", encode(r[5].reply))
  local rec = record(L.issue_url)
  ok(rec and rec.pr_number == 2109 and rec.pr_url == HTML .. "/pull/2109",
    "… the record's PR is the new one", rec and encode({ rec.pr_number, rec.pr_url }))
  local alias = false
  for _, a in ipairs(rec and rec.aliases or {}) do alias = alias or a == "pr:" .. REPO.full_name .. "#2109" end
  ok(alias, "… and it is found by the new PR's alias")
  local L2 = lifecycle(109, 2109)
  r = deliver {
    d(L2.suite("completed", C, "success")), d(L2.review("approved", C)),
    d(L2.pr("closed", C, { merged = true })), d(L2.issue("closed")),
  }
  ok(all_below(r, 300), "… the new PR's CI, review and merge: 2xx")
  expect("replacement PR", L.issue_url,
    "issue_created task_queued pr_created ci_pending ci_failed pr_created ci_pending ci_passed awaiting_review approved merged closed")
  rec = record(L.issue_url)
  ok(rec and rec.forge.replaced and rec.forge.replaced[1].number == 1109, "… the knowledge keeps the replaced PR")
end

do  -- a PR that links no issue
  local L, A = lifecycle(110, 1110), sha("a110")
  local r = deliver {
    d(L.pr("opened", A, { body = "Tidy the README." })), d(L.suite("completed", A, "success")),
    d(L.review("approved", A)), d(L.pr("closed", A, { merged = true })),
  }
  ok(all_below(r, 300), "PR without an issue: every delivery 2xx")
  expect("PR without an issue (its own record)", L.pr_url,
    "issue_created task_queued pr_created ci_pending ci_passed awaiting_review approved merged closed")
end

do  -- an abandoned PR of its own, and a won't-fix issue
  local L, A = lifecycle(114, 1114), sha("a114")
  local r = deliver {
    d(L.pr("opened", A, { body = "Try something." })), d(L.suite("completed", A, "success")),
    d(L.pr("closed", A)),
  }
  ok(all_below(r, 300), "abandoned PR: every delivery 2xx")
  local rec = expect("abandoned PR (its own record, closed unmerged)", L.pr_url,
    "issue_created task_queued pr_created ci_pending ci_passed awaiting_review closed")
  local last = rec and rec.transitions[#rec.transitions]
  ok(last and last.metadata.abandoned == true, "… the closing entry says abandoned",
    last and encode(last.metadata))
  local W = lifecycle(115, 1115)
  r = deliver { d(W.issue("opened")), d(W.issue("assigned")), d(W.issue("closed")) }
  expect("won't-fix issue", W.issue_url, "issue_created task_queued closed")
end

do  -- fork-PR CI, found by sha after several pushes
  local L, A, B, C = lifecycle(111, 1111), sha("a111"), sha("b111"), sha("c111")
  local r = deliver {
    d(L.issue("opened")), d(L.pr("opened", A)),
    d(L.pr("synchronize", B, { before = A })), d(L.pr("synchronize", C, { before = B })),
    d(L.suite("completed", C, "success", { fork = true })),
    d(L.suite("completed", B, "failure", { fork = true, id = 9 })),
  }
  ok(all_below(r, 300), "fork CI: every delivery 2xx")
  ok(r[5].reply.results[1].ref == "sha:" .. C and r[5].reply.results[1].to == "ci_passed",
    "… CI with no PR list finds the record by its head sha", encode(r[5].reply))
  ok(r[6].reply.results[1].code == "ok" and type(r[6].reply.results[1].stale) == "string",
    "… an older push's CI finds it too, and is stale", encode(r[6].reply))
  expect("fork CI after several pushes", L.issue_url,
    "issue_created task_queued pr_created ci_pending ci_passed awaiting_review")
end

do  -- merged with failing CI
  local L, A = lifecycle(112, 1112), sha("a112")
  deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("completed", A, "failure")),
    d(L.pr("closed", A, { merged = true })),
  }
  local rec = expect("merge with failing CI", L.issue_url,
    "issue_created task_queued pr_created ci_pending ci_failed merged", "merged:workflow:loopforge")
  local v = rec and violations(audit(rec.record_id))[1]
  local unmet = v and v.violation.unmet or {}
  local rules = {}
  for i, u in ipairs(unmet) do rules[i] = u.rule .. "=" .. u.reason end
  ok(#unmet == 3 and rules[2]:find("CI failed on", 1, true) and rules[3]:find("no approval", 1, true),
    "… the merge entry lists every unmet requirement", table.concat(rules, " | "))
end

do  -- merged without approval
  local L, A = lifecycle(113, 1113), sha("a113")
  deliver {
    d(L.issue("opened")), d(L.pr("opened", A)), d(L.suite("completed", A, "success")),
    d(L.pr("closed", A, { merged = true })), d(L.issue("closed")),
  }
  local rec = expect("merge without approval", L.issue_url,
    "issue_created task_queued pr_created ci_pending ci_passed awaiting_review merged closed",
    "merged:workflow:loopforge")
  local v = rec and violations(audit(rec.record_id))[1]
  ok(v and v.violation.reason:find("no approval of " .. A:sub(1, 7), 1, true),
    "… the merge entry says there was no approval", v and encode(v.violation))
end

do  -- a lifecycle in shuffled order converges
  local finals = {}
  for seed = 1, 5 do
    local I = 120 + seed
    local L, A = lifecycle(I, 1100 + I), sha("a" .. I)
    local rest = {
      d(L.issue("assigned")), d(L.pr("opened", A)), d(L.suite("requested", A)),
      d(L.suite("completed", A, "success")), d(L.review("approved", A)),
      d(L.pr("closed", A, { merged = true })), d(L.issue("closed")),
    }
    math.randomseed(seed)
    for i = #rest, 2, -1 do
      local j = math.random(i)
      rest[i], rest[j] = rest[j], rest[i]
    end
    table.insert(rest, 1, d(L.issue("opened")))
    local r = deliver(rest)
    local fine, why = all_below(r, 500)
    ok(fine, ("shuffled (seed %d): no 5xx"):format(seed), why)
    local rec = record(L.issue_url)
    finals[#finals + 1] = rec and rec.state or "?"
    ok(rec and rec.state == "closed" and rec.forge.pr and rec.forge.issue.state == "closed",
      ("shuffled (seed %d): ends closed, knowing the close"):format(seed),
      rec and (rec.state .. " " .. states(rec)))
  end
end

do  -- no payload shape makes the route answer 5xx
  local names = sh("ls " .. q(FIX))
  local bad = {}
  local n = 0
  for file in names:gmatch("([%w_.%-]+)%.json") do
    local event = file:match("^([%w_]+)")
    local text = slurp(FIX .. "/" .. file .. ".json")
    local status = post(event, text)
    n = n + 1
    if status >= 500 then bad[#bad + 1] = file .. ": " .. status end
    local p = json.decode(text)
    for key in pairs(p) do
      if key ~= "is_array" then
        local v = p[key]
        p[key] = nil
        status = post(event, encode(p))
        n = n + 1
        if status >= 500 then bad[#bad + 1] = file .. " without " .. key .. ": " .. status end
        p[key] = v
      end
    end
  end
  ok(#bad == 0 and n > 20, ("%d deliveries of every fixture, whole and with each top-level field removed: no 5xx"):format(n),
    table.concat(bad, "\n"))
end

print("1.." .. T)
os.exit(FAILED == 0 and 0 or 1)
