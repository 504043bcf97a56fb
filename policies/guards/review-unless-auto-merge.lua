-- review-unless-auto-merge -- ci_passed -> merged is the auto-merge edge:
-- only a record created with auto_merge = true may take it. Every other
-- record goes ci_passed -> awaiting_review -> approved -> merged (the
-- route-to-review hook moves it to awaiting_review by itself).

local allow, deny = allow, deny

return policy {
  name = "review-unless-auto-merge",
  description = "ci_passed -> merged only with auto_merge; otherwise review first",
  on = { from = "ci_passed", to = "merged", workflow = "loopforge" },

  check = function(t)
    if t.record.auto_merge then return allow() end
    return deny { reason = "merging straight from ci_passed needs auto_merge; without it "
                           .. "the record goes through awaiting_review and approved",
                  requires = { auto_merge = true, or_path = { "awaiting_review", "approved" } } }
  end,
}
