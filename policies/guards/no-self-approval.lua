-- no-self-approval -- separation of duties: whoever opened the pull
-- request (the actor of the record's last `pr_created` entry) cannot be the
-- one who moves it to `approved`.
--
-- An approval without an actor is refused too: it could be anyone.

local allow, deny = allow, deny

return policy {
  name = "no-self-approval",
  description = "the actor who opened the PR cannot approve it",
  on = { to = "approved", workflow = "loopforge" },

  check = function(t)
    if t.actor == nil or t.actor == "" then
      return deny { reason = "an approval must name its actor",
                    requires = { actor = "named" } }
    end
    local opened = t:last_entry("pr_created")
    if opened and opened.actor == t.actor then
      return deny { reason = ("separation of duties: %s opened the PR and cannot also "
                              .. "approve it"):format(t.actor),
                    requires = { actor_not = t.actor } }
    end
    return allow()
  end,
}
