-- route-to-review -- when CI passes on a record that may not auto-merge,
-- move it on to awaiting_review, so nobody has to remember to. The engine
-- runs the follow-up after this transition's commit, as actor
-- "hook:route-to-review", through the same guards as any request.

local request = request

return hook {
  name = "route-to-review",
  description = "on ci_passed without auto_merge, request awaiting_review",
  on = { to = "ci_passed", workflow = "loopforge" },

  run = function(e)
    if not e.record.auto_merge then
      return request("awaiting_review", "review.required")
    end
  end,
}
