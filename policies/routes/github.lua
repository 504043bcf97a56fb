-- github.lua -- GitHub webhooks become lifecycle observations.
--
-- Each route turns one kind of delivery into requests for the engine, and
-- every transition it asks for carries the *fact* the delivery reports
-- (metadata.fact): the engine keeps what GitHub told the record (its
-- `forge` knowledge: the PR and its head, CI per commit and check,
-- reviews, merge, closing) and moves the record forward to the state that
-- knowledge implies -- never back on an older fact, never out of
-- `closed`. The route's `to` names the state its fact is about; the
-- engine decides where the record goes (docs/http.md, "Connecting GitHub").
--
--   issues.opened                       create the record (ref = the issue's html_url)
--   issues.assigned, issues.labeled     queued (labeled: the queue label only)
--   issues.closed, issues.reopened      the issue's state
--   pull_request.opened,
--   pull_request.ready_for_review       the PR of the issue it links (body or branch
--                                       name); a PR that links none gets its own record
--   pull_request.synchronize            a new head commit
--   pull_request.closed                 merged, or closed unmerged
--   check_suite, check_run,
--   workflow_run, status                CI of a commit, one view per commit
--   pull_request_review.submitted,
--   pull_request_review.dismissed       a review (bound to the commit reviewed)
--   ping                                ignored
--
-- The server submits these as observations (GitHub says it happened), so
-- the record follows even where the workflow or a policy would refuse;
-- such an entry is marked a violation.
--
-- Conventions:
--   actor   "github:<sender.login>", always
--   repo    repository.full_name, never parsed from a URL (the published
--           payloads have PR URLs that name another repository)
--   refs    an issue's record is found by its html_url; once a PR is
--           linked, also by the aliases "pr:<repo>#<number>" and
--           "sha:<head sha>" (every head the PR ever had)
--   labels  {[name] = name}: the engine keeps labels as an object of
--           strings; keyed by name so guards' t:has_label(name) finds them
--
-- Settings (config.lua): issue-queued.label; ci.required, ci.apps,
-- ci.workflows; pr-synchronize.dismiss_stale_approvals;
-- pr-closed.require_review.

local create, transition, ignore = create, transition, ignore
local error, ipairs, pairs, tonumber, tostring, type = error, ipairs, pairs, tonumber, tostring, type

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

local PASSED = { success = true, neutral = true, skipped = true }
local FAILED = { failure = true, timed_out = true, cancelled = true, startup_failure = true,
                 action_required = true, error = true }

-- The state a report's conclusion is about (one that is neither a pass
-- nor a failure, like `stale`, says CI is not done).
local function ci_outcome(status, conclusion)
  if status == "completed" and PASSED[conclusion] then return "ci_passed" end
  if status == "completed" and FAILED[conclusion] then return "ci_failed" end
  return "ci_pending"
end

-- Refs of the records a CI report belongs to: its pull requests in this
-- repository (pull_requests also lists PRs of other repositories whose
-- head matches -- the published workflow_run example does), else its
-- commit (a fork's PR, a status).
local function ci_refs(p, prs, head_sha)
  local refs, own = {}, need(p, "repository.id", "number")
  for _, pr in ipairs(prs or {}) do
    local base = type(pr.base) == "table" and type(pr.base.repo) == "table"
      and pr.base.repo.id or nil
    if type(pr.number) == "number" and (base == nil or base == own) then
      refs[#refs + 1] = pr_alias(p, pr.number)
    end
  end
  if #refs == 0 then refs[1] = "sha:" .. head_sha end
  return refs
end

-- What each CI event reports, as one shape: the commit, a key naming the
-- check (a suite and the workflow run of it share one), its name and app,
-- status, conclusion, attempt and time.
local CI = {
  check_suite = function(p)
    local s = need(p, "check_suite", "table")
    return {
      sha = need(p, "check_suite.head_sha", "string"), key = "suite:" .. tostring(s.id),
      app = opt(p, "check_suite.app.slug", "string") or opt(p, "check_suite.app.name", "string"),
      status = s.status == "completed" and "completed" or "pending",
      conclusion = opt(p, "check_suite.conclusion", "string"),
      at = opt(p, "check_suite.updated_at", "string"), prs = s.pull_requests,
    }
  end,
  workflow_run = function(p)
    local r = need(p, "workflow_run", "table")
    local suite = opt(p, "workflow_run.check_suite_id", "number")
    -- workflow_run.name may be empty (it is in the published example);
    -- the workflow object always has the name.
    local name = opt(p, "workflow.name", "string") or opt(p, "workflow_run.name", "string")
    return {
      sha = need(p, "workflow_run.head_sha", "string"),
      key = suite and ("suite:%d"):format(suite) or "run:" .. tostring(r.id),
      name = name, app = "github-actions",
      status = r.status == "completed" and "completed" or "pending",
      conclusion = opt(p, "workflow_run.conclusion", "string"),
      attempt = opt(p, "workflow_run.run_attempt", "number"),
      at = opt(p, "workflow_run.updated_at", "string"), prs = r.pull_requests,
      url = opt(p, "workflow_run.html_url", "string"),
    }
  end,
  check_run = function(p)
    local r = need(p, "check_run", "table")
    return {
      sha = need(p, "check_run.head_sha", "string"), key = "run:" .. tostring(r.id),
      name = opt(p, "check_run.name", "string"),
      app = opt(p, "check_run.app.slug", "string") or opt(p, "check_run.app.name", "string"),
      status = r.status == "completed" and "completed" or "pending",
      conclusion = opt(p, "check_run.conclusion", "string"),
      at = opt(p, "check_run.completed_at", "string") or opt(p, "check_run.started_at", "string"),
      prs = r.pull_requests,
    }
  end,
  status = function(p)
    local state = need(p, "state", "string")
    local context = need(p, "context", "string")
    return {
      sha = need(p, "sha", "string"), key = "status:" .. context, name = context,
      status = state == "pending" and "pending" or "completed",
      conclusion = state ~= "pending" and state or nil,
      at = opt(p, "updated_at", "string"),
    }
  end,
}

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- ---- the routes -------------------------------------------------------------------

-- The PR fact of a pull_request payload.
local function pr_fact(p, action, extra)
  local f = {
    kind = "pr", action = action, number = need(p, "pull_request.number", "number"),
    url = need(p, "pull_request.html_url", "string"),
    head = opt(p, "pull_request.head.sha", "string"),
    at = opt(p, "pull_request.updated_at", "string"),
  }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

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
      meta.fact = { kind = "issue", action = "queued" }
      return transition {
        ref = need(p, "issue.html_url", "string"), to = "task_queued",
        trigger = "issue." .. p.action,
        actor = actor(p), metadata = meta,
      }
    end,
  },

  route {
    name = "pr-opened",
    description = "a pull request is linked to the issue it fixes (body or branch name); "
      .. "one that links none gets a record of its own",
    on = { event = "pull_request", action = { "opened", "ready_for_review", "reopened" } },
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
      local url = need(p, "pull_request.html_url", "string")
      local sha = need(p, "pull_request.head.sha", "string")
      local linked_by, issue = "body", issue_from_body(pr.body, repo(p), html)
      if not issue then
        linked_by, issue = "branch", issue_from_branch(pr.head and pr.head.ref)
      end
      local meta = {
        pr_url = url, pr_number = number, linked_by = linked_by,
        aliases = { pr_alias(p, number), "sha:" .. sha },
        fact = pr_fact(p, "opened"),
      }
      if not issue or issue == number then
        -- Every PR is governed: one that links no issue is its own record.
        meta.linked_by, meta.fact.own = nil, true
        return {
          create {
            ref = url, repo = repo(p), ref_number = number, actor = actor(p),
            metadata = { title = pr.title, pull_request = true },
          },
          transition {
            ref = url, to = "pr_created", trigger = "pr." .. p.action,
            actor = actor(p), metadata = meta,
          },
        }
      end
      return transition {
        ref = ("%s/issues/%d"):format(html, issue), to = "pr_created",
        trigger = "pr." .. p.action, actor = actor(p), metadata = meta,
      }
    end,
  },

  route {
    name = "pr-synchronize",
    description = "a new push to a pull request: its head commit (an alias at once); "
      .. "approvals of older commits stop counting",
    on = { event = "pull_request", action = "synchronize" },
    defaults = { dismiss_stale_approvals = true },
    run = function(ev, cfg)
      local p = ev.payload
      local sha = need(p, "after", "string")
      local fact = pr_fact(p, "push", { dismiss_stale = cfg.dismiss_stale_approvals })
      fact.head = sha
      return transition {
        ref = pr_alias(p, need(p, "pull_request.number", "number")), to = "ci_pending",
        trigger = "pr.synchronize", actor = actor(p),
        metadata = { head_sha = sha, aliases = { "sha:" .. sha }, fact = fact },
      }
    end,
  },

  route {
    name = "ci",
    description = "CI reports (check suites, check runs, workflow runs, commit statuses): "
      .. "one view per commit",
    on = { event = { "check_suite", "check_run", "workflow_run", "status" } },
    defaults = { required = {}, apps = {}, workflows = {} },
    run = function(ev, cfg)
      local p = ev.payload
      local r = CI[ev.name](p)
      if #cfg.apps > 0 and r.app and ev.name ~= "status" and not contains(cfg.apps, r.app) then
        return ignore(("CI of app '%s' is not followed"):format(tostring(r.app)))
      end
      if #cfg.workflows > 0 and ev.name == "workflow_run" and not contains(cfg.workflows, r.name) then
        return ignore(("workflow '%s' is not followed"):format(tostring(r.name)))
      end
      -- Settings are read-only views: the list goes in the fact as a copy.
      local required = {}
      for i, name in ipairs(cfg.required) do required[i] = name end
      local fact = {
        kind = "ci", sha = r.sha, key = r.key, name = r.name, app = r.app,
        status = r.status, conclusion = r.conclusion, attempt = r.attempt, at = r.at,
        required = required,
      }
      local to = ci_outcome(r.status, r.conclusion)
      local trigger = ("ci.%s.%s"):format(ev.name, p.action or r.status)
      local out = {}
      for _, ref in ipairs(ci_refs(p, r.prs, r.sha)) do
        out[#out + 1] = transition {
          ref = ref, to = to, trigger = trigger, actor = actor(p),
          metadata = { ci = { source = ev.name, key = r.key, name = r.name, app = r.app,
                              head_sha = r.sha, conclusion = r.conclusion, url = r.url },
                       aliases = { "sha:" .. r.sha }, fact = fact },
        }
      end
      return out
    end,
  },

  route {
    name = "review-submitted",
    description = "a review (approved, changes requested, dismissed), bound to the commit reviewed",
    on = { event = "pull_request_review", action = { "submitted", "dismissed" } },
    run = function(ev)
      local p = ev.payload
      local review = need(p, "review", "table")
      local number = need(p, "pull_request.number", "number")
      local state = p.action == "dismissed" and "dismissed"
        or tostring(opt(p, "review.state", "string")):lower()
      if state ~= "approved" and state ~= "changes_requested" and state ~= "dismissed" then
        return ignore(("review of pull request #%d is %s, not an approval"):format(number, state))
      end
      return transition {
        ref = pr_alias(p, number), to = state == "approved" and "approved" or "awaiting_review",
        trigger = "review." .. state,
        actor = actor(p),
        metadata = {
          review_id = review.id, commit_id = review.commit_id,
          fact = { kind = "review", state = state,
                   reviewer = opt(p, "review.user.login", "string") or actor(p),
                   commit = opt(p, "review.commit_id", "string"),
                   at = opt(p, "review.submitted_at", "string") },
        },
      }
    end,
  },

  route {
    name = "pr-closed",
    description = "a pull request merged, or closed without merging",
    on = { event = "pull_request", action = "closed" },
    -- "auto": a merge needs an approval of its head unless the record is
    -- auto_merge; "always" / "never".
    defaults = { require_review = "auto" },
    run = function(ev, cfg)
      local p = ev.payload
      local pr = need(p, "pull_request", "table")
      local number = need(p, "pull_request.number", "number")
      -- `merged` only: merge_commit_sha is set on unmerged PRs too (it is
      -- GitHub's test merge).
      local merged = pr.merged == true
      local fact = pr_fact(p, "closed", { merged = merged })
      local require = cfg.require_review
      if merged then
        fact.merged_by = type(pr.merged_by) == "table" and pr.merged_by.login or nil
        fact.merge_sha = opt(p, "pull_request.merge_commit_sha", "string")
        fact.merged_at = opt(p, "pull_request.merged_at", "string")
        if require ~= "auto" then fact.require_review = require == "always" end
      end
      return transition {
        ref = pr_alias(p, number), to = merged and "merged" or "closed",
        trigger = merged and "pr.merged" or "pr.closed", actor = actor(p),
        metadata = {
          merge_commit_sha = merged and pr.merge_commit_sha or nil,
          merged_at = pr.merged_at,
          merged_by = fact.merged_by, fact = fact,
        },
      }
    end,
  },

  route {
    name = "issue-closed",
    description = "the issue closed or reopened",
    on = { event = "issues", action = { "closed", "reopened" } },
    run = function(ev)
      local p = ev.payload
      local state_reason = opt(p, "issue.state_reason", "string")
      return transition {
        ref = need(p, "issue.html_url", "string"),
        to = p.action == "closed" and "closed" or "task_queued",
        trigger = "issue." .. p.action, actor = actor(p),
        metadata = { state_reason = state_reason,
                     fact = { kind = "issue", action = p.action, state_reason = state_reason } },
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
