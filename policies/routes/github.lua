-- github.lua -- GitHub webhooks become lifecycle observations.
--
-- Each route turns one kind of delivery into requests for the engine:
--
--   issues.opened                       create the record (ref = the issue's html_url)
--   issues.assigned, issues.labeled     -> task_queued (labeled: the queue label only)
--   pull_request.opened,
--   pull_request.ready_for_review       -> pr_created on the issue the PR links to
--   pull_request.synchronize            -> ci_pending (a new push)
--   check_suite.*, workflow_run.*       -> ci_pending / ci_passed / ci_failed
--   pull_request_review.submitted       -> approved (approving reviews only)
--   pull_request.closed                 -> merged (merged PRs only)
--   issues.closed                       -> closed
--   check_run.*, ping                   ignored, with the reason
--
-- The server submits these as observations (GitHub says it happened), so
-- the record follows even where the workflow or a policy would refuse;
-- such an entry is marked a violation. docs/policies.md ("Routes") has
-- the details and the choices behind them.
--
-- Conventions:
--   actor   "github:<sender.login>", always
--   repo    repository.full_name, never parsed from a URL (the published
--           payloads have PR URLs that name another repository)
--   refs    an issue's record is found by its html_url; once a PR is
--           linked, also by the aliases "pr:<repo>#<number>" and
--           "sha:<head sha>" that pr_created (and each new push) adds
--   labels  {[name] = name}: the engine keeps labels as an object of
--           strings; keyed by name so guards' t:has_label(name) finds them
--
-- Settings (config.lua): issue-queued.label; ci-check-suite.apps and
-- ci-workflow-run.workflows (empty: follow every app / workflow).

local create, transition, ignore = create, transition, ignore
local error, ipairs, tonumber, tostring, type = error, ipairs, tonumber, tostring, type

-- ---- payload helpers --------------------------------------------------------

-- p.a.b.c, or an error naming what is missing: a payload without the
-- field is not what the route was written for, and should say so. With
-- `kind` ("string", "number", "table"), a value of another type is an
-- error naming the field and both types (never the value: a table's
-- text would be a Lua address).
local function need(p, path, kind)
  local v = p
  for key in path:gmatch("[^.]+") do
    if type(v) ~= "table" then v = nil; break end
    v = v[key]
  end
  if v == nil then error("payload has no " .. path, 2) end
  if kind and type(v) ~= kind then
    error(("payload field %s must be a %s, not a %s"):format(path, kind, type(v)), 2)
  end
  return v
end

-- p.a.b.c if present (nil otherwise), of type `kind` when present.
local function opt(p, path, kind)
  local v = p
  for key in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[key]
  end
  if v ~= nil and type(v) ~= kind then
    error(("payload field %s must be a %s, not a %s"):format(path, kind, type(v)), 2)
  end
  return v
end

local function actor(p) return "github:" .. need(p, "sender.login", "string") end
local function repo(p) return need(p, "repository.full_name", "string") end
local function pr_alias(p, number) return ("pr:%s#%d"):format(repo(p), number) end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- ---- which issue a pull request closes ---------------------------------------

local KEYWORDS = {
  close = true, closes = true, closed = true,
  fix = true, fixes = true, fixed = true,
  resolve = true, resolves = true, resolved = true,
}

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- The issue number in what follows a closing keyword: "#12", "OWNER/REPO#12"
-- or the issue's URL, of this repository only.
local function issue_target(target, full_name, html_url)
  local n = target:match("^#(%d+)%f[^%w]")
  if n then return n end
  local other, m = target:match("^([%w._-]+/[%w._-]+)#(%d+)%f[^%w]")
  if other then return other == full_name and m or nil end
  return target:match("^" .. escape(html_url) .. "/issues/(%d+)%f[^%w]")
end

-- The first "Fixes #12" (closes/resolves, any tense, any case, an optional
-- colon) in the body that names an issue of this repository.
local function issue_from_body(body, full_name, html_url)
  if type(body) ~= "string" then return nil end
  local text, me, url = body:lower(), full_name:lower(), html_url:lower()
  for pos, word in text:gmatch("()%f[%w](%a+)%f[^%w]") do
    if KEYWORDS[word] then
      local target = text:match("^:?%s*(%S+)", pos + #word)
      local n = target and issue_target(target, me, url)
      if n then return tonumber(n) end
    end
  end
  return nil
end

-- The issue number a branch name carries: a path segment that is or
-- starts with the number ("42", "42-foo", "fix/42-bar") or names it
-- ("issue-42", "issues_42", "gh-42"). Anything vaguer ("node-18") would
-- link PRs to the wrong issues.
local function issue_from_branch(ref)
  if type(ref) ~= "string" then return nil end
  for seg in ref:lower():gmatch("[^/]+") do
    local n = seg:match("^(%d+)$") or seg:match("^(%d+)[-_]")
      or seg:match("^issues?[-_]?(%d+)%f[%D]") or seg:match("^gh[-_]?(%d+)%f[%D]")
    if n then return tonumber(n) end
  end
  return nil
end

-- ---- CI ---------------------------------------------------------------------------

local FAILED = { failure = true, timed_out = true, cancelled = true, startup_failure = true }

-- The target state for a completed run's conclusion, or nil.
local function ci_outcome(conclusion)
  if conclusion == "success" then return "ci_passed" end
  if FAILED[conclusion] then return "ci_failed" end
  return nil
end

-- Refs of the records a CI run belongs to: its pull requests in this
-- repository (pull_requests also lists PRs of other repositories whose
-- head matches -- the published workflow_run example does), else its
-- head commit.
local function ci_refs(p, prs, head_sha)
  local refs, own = {}, need(p, "repository.id", "number")
  for _, pr in ipairs(prs or {}) do
    local base = type(pr.base) == "table" and type(pr.base.repo) == "table"
      and pr.base.repo.id or nil
    if pr.number and (base == nil or base == own) then
      refs[#refs + 1] = pr_alias(p, pr.number)
    end
  end
  if #refs == 0 then refs[1] = "sha:" .. head_sha end
  return refs
end

-- One transition per ref, or ignore(why) when the action says nothing
-- about CI's outcome.
local function ci_requests(p, kind, run, ci)
  local to, trigger = "ci_pending", ("ci.%s.%s"):format(kind, p.action)
  local conclusion = opt(p, kind .. ".conclusion", "string")
  local head_sha = need(p, kind .. ".head_sha", "string")
  if p.action == "completed" then
    to = ci_outcome(conclusion)
    if not to then
      return ignore(("%s conclusion '%s' is neither a pass nor a failure")
        :format(kind:gsub("_", " "), tostring(conclusion)))
    end
  end
  local out = {}
  for _, ref in ipairs(ci_refs(p, opt(p, kind .. ".pull_requests", "table"), head_sha)) do
    out[#out + 1] = transition {
      ref = ref, to = to, trigger = trigger, actor = actor(p), metadata = { ci = ci },
    }
  end
  return out
end

-- ---- the routes -------------------------------------------------------------------

return {
  route {
    name = "issue-opened",
    description = "a new issue becomes a record (ref = its html_url)",
    on = { event = "issues", action = "opened" },
    run = function(ev)
      local p = ev.payload
      local issue = need(p, "issue", "table")
      local labels = {}
      for _, label in ipairs(issue.labels or {}) do
        if type(label.name) == "string" then labels[label.name] = label.name end
      end
      return create {
        ref = need(p, "issue.html_url", "string"), repo = repo(p),
        ref_number = need(p, "issue.number", "number"),
        labels = labels, actor = actor(p), metadata = { title = issue.title },
      }
    end,
  },

  route {
    name = "issue-queued",
    description = "an issue assigned, or labeled with the queue label, is queued",
    on = { event = "issues", action = { "assigned", "labeled" } },
    defaults = { label = "loopforge:queued" },
    run = function(ev, cfg)
      local p = ev.payload
      local meta
      if p.action == "labeled" then
        local name = need(p, "label.name", "string")
        if name:lower() ~= cfg.label:lower() then
          return ignore(("label '%s' is not the queue label '%s'"):format(name, cfg.label))
        end
        meta = { label = name }
      else
        meta = { assignee = p.assignee and p.assignee.login }
      end
      return transition {
        ref = need(p, "issue.html_url", "string"), to = "task_queued",
        trigger = "issue." .. p.action,
        actor = actor(p), metadata = meta,
      }
    end,
  },

  route {
    name = "pr-opened",
    description = "a pull request is linked to the issue it fixes (body or branch name)",
    on = { event = "pull_request", action = { "opened", "ready_for_review" } },
    run = function(ev)
      local p = ev.payload
      local pr = need(p, "pull_request", "table")
      local number = need(p, "pull_request.number", "number")
      -- A draft is not yet the PR of the lifecycle; ready_for_review
      -- links it (and is only ever sent for drafts).
      if p.action == "opened" and pr.draft then
        return ignore(("pull request #%d is a draft"):format(number))
      end
      local html = need(p, "repository.html_url", "string")
      local linked_by, issue = "body", issue_from_body(pr.body, repo(p), html)
      if not issue then
        linked_by, issue = "branch", issue_from_branch(pr.head and pr.head.ref)
      end
      if not issue or issue == number then
        return ignore(("pull request #%d links no issue"):format(number))
      end
      return transition {
        ref = ("%s/issues/%d"):format(html, issue), to = "pr_created",
        trigger = "pr." .. p.action, actor = actor(p),
        metadata = {
          pr_url = need(p, "pull_request.html_url", "string"), pr_number = number,
          linked_by = linked_by,
          aliases = { pr_alias(p, number), "sha:" .. need(p, "pull_request.head.sha", "string") },
        },
      }
    end,
  },

  route {
    name = "pr-synchronize",
    description = "a new push to a pull request restarts CI, and its head sha becomes an alias",
    on = { event = "pull_request", action = "synchronize" },
    run = function(ev)
      local p = ev.payload
      local sha = need(p, "after", "string")
      return transition {
        ref = pr_alias(p, need(p, "pull_request.number", "number")), to = "ci_pending",
        trigger = "pr.synchronize", actor = actor(p),
        metadata = { head_sha = sha, aliases = { "sha:" .. sha } },
      }
    end,
  },

  route {
    name = "ci-check-suite",
    description = "check suites: requested -> ci_pending, completed -> ci_passed / ci_failed",
    on = { event = "check_suite", action = { "requested", "rerequested", "completed" } },
    defaults = { apps = {} },
    run = function(ev, cfg)
      local p = ev.payload
      local suite = need(p, "check_suite", "table")
      local app = opt(p, "check_suite.app.slug", "string") or opt(p, "check_suite.app.name", "string")
      if #cfg.apps > 0 and not contains(cfg.apps, app) then
        return ignore(("check suite of app '%s' is not followed"):format(tostring(app)))
      end
      return ci_requests(p, "check_suite", suite, {
        source = "check_suite", app = app, id = suite.id, head_sha = suite.head_sha,
        conclusion = suite.conclusion,
      })
    end,
  },

  route {
    name = "ci-workflow-run",
    description = "Actions workflow runs: requested -> ci_pending, completed -> ci_passed / ci_failed",
    on = { event = "workflow_run", action = { "requested", "completed" } },
    defaults = { workflows = {} },
    run = function(ev, cfg)
      local p = ev.payload
      local run = need(p, "workflow_run", "table")
      -- workflow_run.name may be empty (it is in the published example);
      -- the workflow object always has the name.
      local name = opt(p, "workflow.name", "string") or opt(p, "workflow_run.name", "string")
      if #cfg.workflows > 0 and not contains(cfg.workflows, name) then
        return ignore(("workflow '%s' is not followed"):format(tostring(name)))
      end
      return ci_requests(p, "workflow_run", run, {
        source = "workflow_run", workflow = name, id = run.id, attempt = run.run_attempt,
        head_sha = run.head_sha, conclusion = run.conclusion, url = run.html_url,
      })
    end,
  },

  route {
    name = "check-run",
    description = "check runs are ignored: CI is followed by check suite and workflow run",
    on = { event = "check_run" },
    run = function()
      return ignore("check runs are not followed: one check run is not the whole CI "
        .. "(loopforge follows check_suite and workflow_run)")
    end,
  },

  route {
    name = "review-submitted",
    description = "an approving review approves the pull request's record",
    on = { event = "pull_request_review", action = "submitted" },
    run = function(ev)
      local p = ev.payload
      local review = need(p, "review", "table")
      local number = need(p, "pull_request.number", "number")
      local state = tostring(opt(p, "review.state", "string")):lower()
      if state ~= "approved" then
        return ignore(("review of pull request #%d is %s, not an approval"):format(number, state))
      end
      return transition {
        ref = pr_alias(p, number), to = "approved", trigger = "review.approved",
        actor = actor(p),
        metadata = { review_id = review.id, commit_id = review.commit_id },
      }
    end,
  },

  route {
    name = "pr-closed",
    description = "a merged pull request merges its record; one closed unmerged is ignored",
    on = { event = "pull_request", action = "closed" },
    run = function(ev)
      local p = ev.payload
      local pr = need(p, "pull_request", "table")
      local number = need(p, "pull_request.number", "number")
      -- `merged` only: merge_commit_sha is set on unmerged PRs too (it is
      -- GitHub's test merge).
      if pr.merged ~= true then
        return ignore(("pull request #%d was closed without merging"):format(number))
      end
      return transition {
        ref = pr_alias(p, number), to = "merged", trigger = "pr.merged", actor = actor(p),
        metadata = {
          merge_commit_sha = pr.merge_commit_sha, merged_at = pr.merged_at,
          merged_by = type(pr.merged_by) == "table" and pr.merged_by.login or nil,
        },
      }
    end,
  },

  route {
    name = "issue-closed",
    description = "a closed issue closes its record",
    on = { event = "issues", action = "closed" },
    run = function(ev)
      local p = ev.payload
      return transition {
        ref = need(p, "issue.html_url", "string"), to = "closed", trigger = "issue.closed",
        actor = actor(p), metadata = { state_reason = opt(p, "issue.state_reason", "string") },
      }
    end,
  },

  route {
    name = "ping",
    description = "GitHub's hello when a webhook is set up",
    on = { event = "ping" },
    run = function() return ignore("ping") end,
  },
}
