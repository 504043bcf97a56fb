-- routes_spec.lua -- policies/routes/github.lua through the real engine:
-- every published GitHub payload (kit.fixtures, the bytes of the file as
-- they are), the variants GitHub does not publish (derived here from the
-- nearest published payload and named "synthetic"), and a whole lifecycle
-- driven only by webhooks, delivered the way `loopforge serve` does
-- (kit.deliver: observations, looked up by ref or alias).
local kit = require "loopforge.testing"
local json = require "dkjson"       -- comes with busted

local REPO = "Codertocat/Hello-World"
local ISSUE = "https://github.com/" .. REPO .. "/issues/1"
local PR = "pr:" .. REPO .. "#2"
local HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"

-- A published payload changed by `change(payload)`, as JSON text again.
local function synthetic(name, change)
  local body, event = kit.fixture(name)
  local p = assert(json.decode(body))
  change(p)
  return json.encode(p), event
end

-- What a routing came to, one line per request, or why nothing.
local function summary(routed)
  local out = {}
  for _, q in ipairs(routed.requests) do
    out[#out + 1] = q.op .. " " .. q.ref .. (q.to and (" -> " .. q.to) or "")
  end
  if routed.ignored then out[#out + 1] = "ignored: " .. routed.ignored end
  if routed.error then out[#out + 1] = "error: " .. routed.error end
  return table.concat(out, "\n")
end

describe("routes", function()
  local eng
  before_each(function() eng = kit.engine() end)
  after_each(function() eng:close(); kit.cleanup() end)

  describe("on the published payloads", function()
    local PR_URL = "https://github.com/" .. REPO .. "/pull/2"
    local PR_OWN = "create " .. PR_URL .. "\ntransition " .. PR_URL .. " -> pr_created"
    local RUN_SHA = "sha:3484a3fb816e0859fd6e1cea078d76385ff50625"
    -- a string, or a function of the decoded payload for what differs
    -- between the repository's payloads and GitHub's (the status's commit)
    local expected = {
      -- check runs: each a check of its own, on the PR it lists
      ["check_run.completed.failure"] = "transition " .. PR .. " -> ci_failed",
      ["check_run.completed.success"] = "transition " .. PR .. " -> ci_passed",
      ["check_run.created"] = "transition " .. PR .. " -> ci_pending",
      ["check_suite.completed.success"] = "transition " .. PR .. " -> ci_passed",
      ["check_suite.requested"] =
        "transition sha:f95f852bd8fca8fcc58a9a2d6c842781e32a215e -> ci_pending",
      ["issues.assigned"] = "transition " .. ISSUE .. " -> task_queued",
      ["issues.labeled"] = "ignored: label 'bug' is not the queue label 'loopforge:queued'",
      ["issues.opened"] = "create " .. ISSUE,
      ["issues.reopened"] = "transition " .. ISSUE .. " -> task_queued",
      ["ping"] = "ignored: ping",
      ["pull_request.closed.unmerged"] = "transition " .. PR .. " -> closed",
      ["pull_request.labeled"] = "ignored: no route for pull_request.labeled",
      -- links no issue: a record of its own
      ["pull_request.opened"] = PR_OWN,
      ["pull_request.ready_for_review"] = PR_OWN,
      ["pull_request.review_requested"] = "ignored: no route for pull_request.review_requested",
      ["pull_request.synchronize"] = "transition " .. PR .. " -> ci_pending",
      ["pull_request_review.dismissed"] = "transition " .. PR .. " -> awaiting_review",
      ["pull_request_review.submitted.commented"] =
        "ignored: review of pull request #2 is commented, not an approval",
      ["push.branch-created"] = "ignored: no route for push",
      ["push.tag-deleted"] = "ignored: no route for push",
      -- a status names only its commit
      ["status"] = function(p) return "transition sha:" .. p.sha .. " -> ci_passed" end,
      -- its pull_requests[0] is a PR of another repository: by head sha
      ["workflow_run.completed"] = "transition " .. RUN_SHA .. " -> ci_passed",
      ["workflow_run.requested"] = "transition " .. RUN_SHA .. " -> ci_pending",
    }
    local names = {}
    for name in pairs(expected) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      it(name .. ".json", function()
        local body, event = kit.fixture(name)
        local want = expected[name]
        if type(want) == "function" then want = want(assert(json.decode(body))) end
        local got = summary(eng:route(event, body, "72d3162e-cc78-11e3-81ab-4c9367dc0958"))
        assert.equal(want, got)
      end)
    end

    it("creates the record with the issue's fields, labels keyed by name", function()
      local body = kit.fixture("issues.opened")
      local q = eng:route("issues", body).requests[1]
      assert.same({
        op = "create", route = "issue-opened", ref = ISSUE, repo = REPO, ref_number = 1,
        labels = { bug = "bug" }, actor = "github:Codertocat",
        metadata = { title = "Spelling error in the README file" },
      }, q)
    end)

    it("adds the new head sha as an alias on every push, with the push's fact", function()
      local body = kit.fixture("pull_request.synchronize")
      local p = json.decode(body)
      local q = eng:route("pull_request", body).requests[1]
      assert.same({
        aliases = { "sha:" .. HEAD }, head_sha = HEAD,
        fact = { kind = "pr", action = "push", number = 2, url = PR_URL, head = HEAD,
                 at = p.pull_request.updated_at, dismiss_stale = true },
      }, q.metadata)
      assert.equal("pr.synchronize", q.trigger)
    end)

    it("gives a PR that links no issue a record of its own", function()
      local body = kit.fixture("pull_request.opened")
      local p = json.decode(body)
      local routed = eng:route("pull_request", body)
      assert.equal(2, #routed.requests)
      assert.same({
        op = "create", route = "pr-opened", ref = PR_URL, repo = REPO, ref_number = 2,
        actor = "github:Codertocat",
        metadata = { title = p.pull_request.title, pull_request = true },
      }, routed.requests[1])
      assert.same({
        op = "transition", route = "pr-opened", ref = PR_URL, to = "pr_created",
        trigger = "pr.opened", actor = "github:Codertocat",
        metadata = {
          pr_url = PR_URL, pr_number = 2, aliases = { PR, "sha:" .. HEAD },
          fact = { kind = "pr", action = "opened", number = 2, url = PR_URL, head = HEAD,
                   at = p.pull_request.updated_at, own = true },
        },
      }, routed.requests[2])
    end)

    it("reports a check suite's CI as a fact of its commit", function()
      local body = kit.fixture("check_suite.completed.success")
      local p = json.decode(body)
      local q = eng:route("check_suite", body).requests[1]
      assert.equal("ci.check_suite.completed", q.trigger)
      assert.same({
        ci = { source = "check_suite", key = "suite:118578147", app = "octocoders-linter",
               head_sha = HEAD, conclusion = "success" },
        aliases = { "sha:" .. HEAD },
        fact = { kind = "ci", sha = HEAD, key = "suite:118578147", app = "octocoders-linter",
                 status = "completed", conclusion = "success", at = p.check_suite.updated_at,
                 required = {} },
      }, q.metadata)
    end)

    it("binds a dismissal to the review's author and commit", function()
      local body = kit.fixture("pull_request_review.dismissed")
      local p = json.decode(body)
      local q = eng:route("pull_request_review", body).requests[1]
      assert.equal("review.dismissed", q.trigger)
      assert.same({ kind = "review", state = "dismissed", reviewer = p.review.user.login,
                    commit = HEAD, at = p.review.submitted_at }, q.metadata.fact)
    end)
  end)

  describe("on synthetic variants", function()
    local PR_URL = "https://github.com/" .. REPO .. "/pull/2"

    it("synthetic: a PR whose body says Fixes #1 links the issue", function()
      local body = synthetic("pull_request.opened", function(p)
        p.pull_request.body = "This fixes the typo.\n\nFixes #1"
      end)
      local q = eng:route("pull_request", body).requests[1]
      assert.same({
        op = "transition", route = "pr-opened", ref = ISSUE, to = "pr_created",
        trigger = "pr.opened", actor = "github:Codertocat",
        metadata = {
          pr_url = PR_URL, pr_number = 2, linked_by = "body",
          aliases = { PR, "sha:" .. HEAD },
          fact = { kind = "pr", action = "opened", number = 2, url = PR_URL, head = HEAD,
                   at = json.decode(body).pull_request.updated_at },
        },
      }, q)
    end)

    it("synthetic: a PR from branch 1-fix-readme links issue 1", function()
      local body = synthetic("pull_request.opened", function(p)
        p.pull_request.head.ref = "1-fix-readme"
      end)
      local routed = eng:route("pull_request", body)
      assert.equal(1, #routed.requests)
      assert.equal(ISSUE, routed.requests[1].ref)
      assert.equal("branch", routed.requests[1].metadata.linked_by)
    end)

    it("synthetic: a PR reopened links its issue again", function()
      local body = synthetic("pull_request.opened", function(p)
        p.action = "reopened"
        p.pull_request.body = "Fixes #1"
      end)
      local q = eng:route("pull_request", body).requests[1]
      assert.equal("transition " .. ISSUE .. " -> pr_created", summary({ requests = { q } }))
      assert.equal("pr.reopened", q.trigger)
    end)

    it("synthetic: a draft PR waits for ready_for_review", function()
      local body = synthetic("pull_request.opened", function(p)
        p.pull_request.draft = true
        p.pull_request.body = "Fixes #1"
      end)
      assert.equal("ignored: pull request #2 is a draft", summary(eng:route("pull_request", body)))
    end)

    it("synthetic: a merged PR merges, and merge_commit_sha alone does not", function()
      local merged = synthetic("pull_request.closed.unmerged", function(p)
        p.pull_request.merged = true
        p.pull_request.merged_by = p.sender
      end)
      local q = eng:route("pull_request", merged).requests[1]
      assert.equal("transition " .. PR .. " -> merged", summary({ requests = { q } }))
      assert.equal("pr.merged", q.trigger)
      assert.equal("Codertocat", q.metadata.merged_by)
      assert.is_true(q.metadata.fact.merged)
      assert.equal("Codertocat", q.metadata.fact.merged_by)
      -- the published unmerged payload has a merge_commit_sha too: closed
      local body = kit.fixture("pull_request.closed.unmerged")
      q = eng:route("pull_request", body).requests[1]
      assert.equal("transition " .. PR .. " -> closed", summary({ requests = { q } }))
      assert.equal("pr.closed", q.trigger)
      assert.is_false(q.metadata.fact.merged)
      assert.is_nil(q.metadata.merge_commit_sha)
      assert.is_nil(q.metadata.fact.merge_sha)
    end)

    it("synthetic: an approving review approves, changes requested are a review too", function()
      local body = synthetic("pull_request_review.submitted.commented", function(p)
        p.review.state = "approved"
      end)
      local routed = eng:route("pull_request_review", body)
      assert.equal("transition " .. PR .. " -> approved", summary(routed))
      assert.equal("review.approved", routed.requests[1].trigger)
      assert.equal("approved", routed.requests[1].metadata.fact.state)
      body = synthetic("pull_request_review.submitted.commented", function(p)
        p.review.state = "changes_requested"
      end)
      routed = eng:route("pull_request_review", body)
      assert.equal("transition " .. PR .. " -> awaiting_review", summary(routed))
      assert.equal("review.changes_requested", routed.requests[1].trigger)
      assert.equal("changes_requested", routed.requests[1].metadata.fact.state)
    end)

    it("synthetic: a failed check suite fails CI, a neutral one passes", function()
      local failed = synthetic("check_suite.completed.success", function(p)
        p.check_suite.conclusion = "failure"
      end)
      assert.equal("transition " .. PR .. " -> ci_failed", summary(eng:route("check_suite", failed)))
      local neutral = synthetic("check_suite.completed.success", function(p)
        p.check_suite.conclusion = "neutral"
      end)
      local routed = eng:route("check_suite", neutral)
      assert.equal("transition " .. PR .. " -> ci_passed", summary(routed))
      assert.equal("neutral", routed.requests[1].metadata.fact.conclusion)
    end)

    it("synthetic: a skipped workflow run passes, a pending status is pending", function()
      local skipped = synthetic("workflow_run.completed", function(p)
        p.workflow_run.conclusion = "skipped"
      end)
      assert.equal("transition sha:3484a3fb816e0859fd6e1cea078d76385ff50625 -> ci_passed",
                   summary(eng:route("workflow_run", skipped)))
      local pending, event = synthetic("status", function(p) p.state = "pending" end)
      local routed = eng:route(event, pending)
      assert.equal("transition sha:" .. json.decode(pending).sha .. " -> ci_pending",
                   summary(routed))
      assert.equal("ci.status.pending", routed.requests[1].trigger)
      assert.is_nil(routed.requests[1].metadata.fact.conclusion)
    end)

    it("synthetic: a closed issue closes", function()
      local body = synthetic("issues.opened", function(p)
        p.action = "closed"
        p.issue.state = "closed"
        p.issue.state_reason = "completed"
      end)
      local q = eng:route("issues", body).requests[1]
      assert.equal("transition " .. ISSUE .. " -> closed", summary({ requests = { q } }))
      assert.same({ state_reason = "completed",
                    fact = { kind = "issue", action = "closed", state_reason = "completed" } },
                  q.metadata)
    end)
  end)

  describe("a lifecycle driven only by webhooks", function()
    -- The variants GitHub does not publish, derived from its examples.
    local function fixes_1(p) p.pull_request.body = "Fixes #1" end
    local function approved_by(login)
      return function(p) p.review.state = "approved"; p.sender.login = login end
    end
    local function merged(p) p.pull_request.merged = true end
    local function closed(p) p.action = "closed"; p.issue.state = "closed" end

    local n = 0
    local function deliver(name, change)
      local body, event
      if change then body, event = synthetic(name, change) else body, event = kit.fixture(name) end
      n = n + 1
      local routed, results = kit.deliver(eng, event, body, "delivery-" .. n)
      assert.is_nil(routed.error)
      return results[1], routed
    end

    it("walks issue -> queued -> PR -> CI -> review -> merge -> close", function()
      local res = deliver("issues.opened")
      kit.assert_allowed(res)
      local id = res.record.record_id
      deliver("issues.assigned")
      assert.equal("task_queued", kit.state(eng, id))
      deliver("pull_request.opened", fixes_1)
      assert.equal("pr_created", kit.state(eng, id))
      -- from now on the PR and its head sha find the record
      assert.equal(id, eng:find_by_ref(PR).record.record_id)
      assert.equal(id, eng:find_by_ref("sha:" .. HEAD).record.record_id)
      -- a push of the head the record already knows: nothing new
      deliver("pull_request.synchronize")
      assert.equal("pr_created", kit.state(eng, id))
      -- the finished suite walks pr_created -> ci_pending -> ci_passed
      kit.assert_allowed(deliver("check_suite.completed.success"))
      -- route-to-review moves a record without auto_merge on
      assert.equal("awaiting_review", kit.state(eng, id))
      kit.assert_allowed(deliver("pull_request_review.submitted.commented", approved_by("octocat")))
      kit.assert_allowed(deliver("pull_request.closed.unmerged", merged))
      kit.assert_allowed(deliver("issues.opened", closed))

      local rec = eng:get(id).record
      assert.equal("closed", rec.state)
      assert.equal("https://github.com/" .. REPO .. "/pull/2", rec.pr_url)
      assert.equal(2, rec.pr_number)
      local trail = {}
      for _, h in ipairs(rec.transitions) do
        trail[#trail + 1] = ("%s %s %s%s"):format(h.to_state, h.trigger, h.actor,
          h.metadata and h.metadata.implied and " implied" or "")
      end
      assert.same({
        "issue_created created github:Codertocat",
        "task_queued issue.assigned github:Codertocat",
        "pr_created pr.opened github:Codertocat",
        "ci_pending ci.check_suite.completed github:Codertocat implied",
        "ci_passed ci.check_suite.completed github:Codertocat",
        "awaiting_review review.required hook:route-to-review",
        "approved review.approved github:octocat",
        "merged pr.merged github:Codertocat",
        "closed issue.closed github:Codertocat",
      }, trail)
      assert.is_true(eng:verify())
    end)

    it("records what GitHub did even when a policy would have refused it", function()
      local id = deliver("issues.opened").record.record_id
      deliver("issues.assigned")
      deliver("pull_request.opened", fixes_1)
      deliver("pull_request.synchronize")
      deliver("check_suite.completed.success")
      -- the PR's author approves: no-self-approval would deny a request,
      -- but this already happened on GitHub
      local res = deliver("pull_request_review.submitted.commented", approved_by("Codertocat"))
      assert.equal("approved", kit.state(eng, id))
      assert.is_truthy(res.violation)
      assert.equal("no-self-approval", kit.decision(res, "no-self-approval").policy)
    end)

    it("gives a PR that links no issue a record that enters at pr_created", function()
      local res, routed = deliver("pull_request.opened")
      assert.equal(2, #routed.requests)
      kit.assert_allowed(res)
      local id = res.record.record_id
      assert.is_true(res.record.metadata.pull_request)
      assert.equal("pr_created", kit.state(eng, id))
      -- its PR and head sha find it, as for a linked PR
      assert.equal(id, eng:find_by_ref(PR).record.record_id)
      assert.equal(id, eng:find_by_ref("sha:" .. HEAD).record.record_id)
      kit.assert_allowed(deliver("check_suite.completed.success"))
      assert.equal("awaiting_review", kit.state(eng, id))
    end)

    it("answers CI for a commit no record knows with not_found", function()
      local res = deliver("check_suite.requested")
      assert.equal("not_found", res.code)
    end)

    it("changes nothing on a redelivery", function()
      local body, event = kit.fixture("issues.opened")
      local _, first = kit.deliver(eng, event, body, "same-guid")
      local _, again = kit.deliver(eng, event, body, "same-guid")
      kit.assert_allowed(first[1])
      assert.is_true(again[1].duplicate)
      assert.equal(first[1].record.record_id, again[1].record.record_id)
    end)
  end)

  describe("of your own", function()
    it("run beside the shipped ones, and config.lua turns shipped ones off", function()
      local mine = kit.engine{
        routes = { labeled = [[
          return route {
            name = "pr-labeled",
            on = { event = "pull_request", action = "labeled" },
            run = function(ev)
              return transition { ref = ev.payload.pull_request.html_url, to = "task_queued",
                                  trigger = "pr.labeled", actor = "github:" .. ev.payload.sender.login }
            end,
          }
        ]] },
        config = { ci = { enabled = false } },
      }
      local body = kit.fixture("pull_request.labeled")
      assert.equal("transition https://github.com/" .. REPO .. "/pull/2 -> task_queued",
                   summary(mine:route("pull_request", body)))
      -- the shipped ones still run beside it
      body = kit.fixture("issues.reopened")
      assert.equal("transition " .. ISSUE .. " -> task_queued", summary(mine:route("issues", body)))
      -- ci is off: no route for any CI event
      body = kit.fixture("workflow_run.completed")
      assert.equal("ignored: no route for workflow_run.completed",
                   summary(mine:route("workflow_run", body)))
      body = kit.fixture("status")
      assert.equal("ignored: no route for status", summary(mine:route("status", body)))
      mine:close()
    end)

    it("report errors as results, never as Lua errors", function()
      local mine = kit.engine{ shipped = false, routes = { bad = [[
        return route { name = "bad", on = { event = "issues" },
          run = function(ev) return ev.payload.nothing.here end }
      ]] } }
      local routed = mine:route("issues", (kit.fixture("issues.opened")))
      assert.same({}, routed.requests)
      assert.matches("^route bad: .*routes/bad%.lua:2: attempt to index a nil value",
                     routed.error)
      assert.equal("payload: not a JSON object", mine:route("issues", "[]").error)
      mine:close()
    end)

    it("take a table as the payload", function()
      local routed = eng:route("issues", { action = "labeled", label = { name = "x" },
                                           issue = { html_url = ISSUE } })
      assert.equal("label 'x' is not the queue label 'loopforge:queued'", routed.ignored)
    end)
  end)
end)
