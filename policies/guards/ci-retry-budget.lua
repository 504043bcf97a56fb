-- ci-retry-budget -- CI may be re-run after a failure (ci_failed ->
-- ci_pending) at most max_retries times per record; after that a human has
-- to look at it instead of the retry button.
--
-- Settings (config.lua): max_retries (default 3).

local allow, deny = allow, deny

return policy {
  name = "ci-retry-budget",
  description = "at most max_retries ci_failed -> ci_pending retries, then escalate",
  on = { from = "ci_failed", to = "ci_pending", workflow = "loopforge" },
  defaults = { max_retries = 3 },

  validate = function(cfg)
    if math.type(cfg.max_retries) ~= "integer" or cfg.max_retries < 0 then
      return false, "max_retries must be a whole number, 0 or more"
    end
  end,

  check = function(t, cfg)
    local used = t:count_transitions("ci_failed", "ci_pending")
    if used >= cfg.max_retries then
      return deny(("CI retry budget exhausted (%d of %d retries used): escalate "
                   .. "instead of retrying"):format(used, cfg.max_retries))
    end
    return allow()
  end,
}
