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
    local expected = {
      ["check_run.completed.failure"] = "ignored: check runs are not followed",
      ["check_run.completed.success"] = "ignored: check runs are not followed",
      ["check_run.created"] = "ignored: check runs are not followed",
      ["check_suite.completed.success"] = "transition " .. PR .. " -> ci_passed",
      ["check_suite.requested"] =
        "transition sha:f95f852bd8fca8fcc58a9a2d6c842781e32a215e -> ci_pending",
      ["issues.assigned"] = "transition " .. ISSUE .. " -> task_queued",
      ["issues.labeled"] = "ignored: label 'bug' is not the queue label 'loopforge:queued'",
      ["issues.opened"] = "create " .. ISSUE,
      ["issues.reopened"] = "ignored: no route for issues.reopened",
      ["ping"] = "ignored: ping",
      ["pull_request.closed.unmerged"] = "ignored: pull request #2 was closed without merging",
      ["pull_request.labeled"] = "ignored: no route for pull_request.labeled",
      ["pull_request.opened"] = "ignored: pull request #2 links no issue",
      ["pull_request.ready_for_review"] = "ignored: pull request #2 links no issue",
      ["pull_request.review_requested"] = "ignored: no route for pull_request.review_requested",
      ["pull_request.synchronize"] = "transition " .. PR .. " -> ci_pending",
      ["pull_request_review.dismissed"] = "ignored: no route for pull_request_review.dismissed",
      ["pull_request_review.submitted.commented"] =
        "ignored: review of pull request #2 is commented, not an approval",
      ["push.branch-created"] = "ignored: no route for push",
      ["push.tag-deleted"] = "ignored: no route for push",
      ["status"] = "ignored: no route for status",
      -- its pull_requests[0] is a PR of another repository: by head sha
      ["workflow_run.completed"] =
        "transition sha:3484a3fb816e0859fd6e1cea078d76385ff50625 -> ci_passed",
      ["workflow_run.requested"] =
        "transition sha:3484a3fb816e0859fd6e1cea078d76385ff50625 -> ci_pending",
    }
    local names = {}
    for name in pairs(expected) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      it(name .. ".json", function()
        local body, event = kit.fixture(name)
        local got = summary(eng:route(event, body, "72d3162e-cc78-11e3-81ab-4c9367dc0958"))
        assert.equal(expected[name], got:sub(1, #expected[name]))
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

    it("adds the new head sha as an alias on every push", function()
      local q = eng:route("pull_request", (kit.fixture("pull_request.synchronize"))).requests[1]
      assert.same({ aliases = { "sha:" .. HEAD }, head_sha = HEAD }, q.metadata)
      assert.equal("pr.synchronize", q.trigger)
    end)
  end)

  describe("on synthetic variants", function()
    it("synthetic: a PR whose body says Fixes #1 links the issue", function()
      local body = synthetic("pull_request.opened", function(p)
        p.pull_request.body = "This fixes the typo.\n\nFixes #1"
      end)
      local q = eng:route("pull_request", body).requests[1]
      assert.same({
        op = "transition", route = "pr-opened", ref = ISSUE, to = "pr_created",
        trigger = "pr.opened", actor = "github:Codertocat",
        metadata = {
          pr_url = "https://github.com/" .. REPO .. "/pull/2", pr_number = 2, linked_by = "body",
          aliases = { PR, "sha:" .. HEAD },
        },
      }, q)
    end)

    it("synthetic: a PR from branch 1-fix-readme links issue 1", function()
      local body = synthetic("pull_request.opened", function(p)
        p.pull_request.head.ref = "1-fix-readme"
      end)
      local q = eng:route("pull_request", body).requests[1]
      assert.equal(ISSUE, q.ref)
      assert.equal("branch", q.metadata.linked_by)
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
      assert.equal("Codertocat", q.metadata.merged_by)
      -- the published unmerged payload has a merge_commit_sha too
      local body = kit.fixture("pull_request.closed.unmerged")
      assert.equal("ignored: pull request #2 was closed without merging",
                   summary(eng:route("pull_request", body)))
    end)

    it("synthetic: an approving review approves", function()
      local body = synthetic("pull_request_review.submitted.commented", function(p)
        p.review.state = "approved"
      end)
      assert.equal("transition " .. PR .. " -> approved",
                   summary(eng:route("pull_request_review", body)))
    end)

    it("synthetic: a failed check suite fails CI, a neutral one says nothing", function()
      local failed = synthetic("check_suite.completed.success", function(p)
        p.check_suite.conclusion = "failure"
      end)
      assert.equal("transition " .. PR .. " -> ci_failed", summary(eng:route("check_suite", failed)))
      local neutral = synthetic("check_suite.completed.success", function(p)
        p.check_suite.conclusion = "neutral"
      end)
      assert.equal("ignored: check suite conclusion 'neutral' is neither a pass nor a failure",
                   summary(eng:route("check_suite", neutral)))
    end)

    it("synthetic: a closed issue closes", function()
      local body = synthetic("issues.opened", function(p)
        p.action = "closed"
        p.issue.state = "closed"
        p.issue.state_reason = "completed"
      end)
      local q = eng:route("issues", body).requests[1]
      assert.equal("transition " .. ISSUE .. " -> closed", summary({ requests = { q } }))
      assert.same({ state_reason = "completed" }, q.metadata)
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
      -- the published PR links no issue; nothing changes
      local none, routed = deliver("pull_request.opened")
      assert.is_nil(none)
      assert.equal("pull request #2 links no issue", routed.ignored)
      deliver("pull_request.opened", fixes_1)
      -- from now on the PR and its head sha find the record
      assert.equal(id, eng:find_by_ref(PR).record.record_id)
      assert.equal(id, eng:find_by_ref("sha:" .. HEAD).record.record_id)
      deliver("pull_request.synchronize")
      assert.equal("ci_pending", kit.state(eng, id))
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
        trail[#trail + 1] = ("%s %s %s"):format(h.to_state, h.trigger, h.actor)
      end
      assert.same({
        "issue_created created github:Codertocat",
        "task_queued issue.assigned github:Codertocat",
        "pr_created pr.opened github:Codertocat",
        "ci_pending pr.synchronize github:Codertocat",
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
        routes = { reopened = [[
          return route {
            name = "issue-reopened",
            on = { event = "issues", action = "reopened" },
            run = function(ev)
              return transition { ref = ev.payload.issue.html_url, to = "task_queued",
                                  trigger = "issue.reopened", actor = "github:" .. ev.payload.sender.login }
            end,
          }
        ]] },
        config = { ["ci-workflow-run"] = { enabled = false } },
      }
      local body = kit.fixture("issues.reopened")
      assert.equal("transition " .. ISSUE .. " -> task_queued", summary(mine:route("issues", body)))
      body = kit.fixture("workflow_run.completed")
      assert.equal("ignored: no route for workflow_run.completed",
                   summary(mine:route("workflow_run", body)))
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
