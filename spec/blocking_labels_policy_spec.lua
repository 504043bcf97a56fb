-- blocking_labels_policy_spec.lua -- policies/guards/blocking-labels.lua:
-- a record carrying a blocking label (as a key or a value of its labels,
-- or listed in the merge request's metadata `labels`) cannot be merged.
local kit = require "loopforge.testing"

local P = "blocking-labels"

describe("policy " .. P, function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  -- An auto-merge record in ci_passed, ready to merge.
  local function ready(labels)
    local id = kit.record(eng, { auto_merge = true, labels = labels })
    kit.to_state(eng, id, "ci_passed")
    return id
  end

  describe("with the shipped settings", function()
    before_each(function() eng = kit.engine() end)

    it("allows a merge without blocking labels", function()
      local id = ready({ team = "core" })
      local res = kit.assert_allowed(eng:transition(id, "merged", "auto.merged"))
      assert.same({ policy = P, verdict = "allow" }, kit.decision(res, P))
    end)

    it("denies a merge when a blocking label is a key of the labels", function()
      local id = ready({ ["do-not-merge"] = "true" })
      local res = eng:transition(id, "merged", "auto.merged")
      kit.assert_denied(res, P, "label 'do-not-merge' blocks merging")
      assert.equal("Denied by policy blocking-labels: label 'do-not-merge' blocks merging", res.error)
      assert.equal("ci_passed", kit.state(eng, id))
    end)

    it("denies a merge when a blocking label is a value of the labels", function()
      local id = ready({ status = "blocked" })
      kit.assert_denied(eng:transition(id, "merged", "auto.merged"), P, "label 'blocked'")
    end)

    it("denies a merge whose request lists a blocking label", function()
      local id = ready()
      local res = eng:transition(id, "merged", "auto.merged",
                                 { metadata = { labels = { "needs-work", "do-not-merge" } } })
      kit.assert_denied(res, P, "do-not-merge")
    end)

    it("guards the review path's merge too", function()
      local id = kit.record(eng, { labels = { ["do-not-merge"] = "yes" } })
      kit.to_state(eng, id, "approved")
      kit.assert_denied(eng:transition(id, "merged", "pr.merged"), P, "do-not-merge")
    end)

    it("does not look at other transitions", function()
      local id = kit.record(eng, { labels = { ["do-not-merge"] = "yes" } })
      local res = kit.assert_allowed(eng:transition(id, "task_queued", "worker.picked_up"))
      assert.is_nil(kit.decision(res, P))
    end)
  end)

  describe("configured", function()
    it("blocks on the labels listed in config.lua instead", function()
      eng = kit.engine{ config = { [P] = { labels = { "hold" } } } }
      local held = ready({ hold = "release" })
      kit.assert_denied(eng:transition(held, "merged", "auto.merged"), P, "label 'hold'")
      local dnm = ready({ ["do-not-merge"] = "yes" })
      kit.assert_allowed(eng:transition(dnm, "merged", "auto.merged"))
    end)

    it("is off with enabled = false", function()
      eng = kit.engine{ config = { [P] = { enabled = false } } }
      local id = ready({ ["do-not-merge"] = "yes" })
      local res = kit.assert_allowed(eng:transition(id, "merged", "auto.merged"))
      assert.is_nil(kit.decision(res, P))
    end)
  end)
end)
