-- no-self-approval -- separation of duties across the delegation chain:
-- the approver must not be the person who opened the PR, nor -- when an
-- agent opened it -- the human the agent acts for, nor an agent acting
-- for either of them. Names are resolved through config.lua's
-- `identities` (github:alice, the token alice and alice@example.com can be
-- one person); an approval by nobody in particular (anonymous) is denied.

local allow, deny, identity = allow, deny, identity

return policy {
  name = "no-self-approval",
  description = "the approver is neither the PR's author nor the human behind it",
  on = { to = "approved", workflow = "loopforge" },

  check = function(t)
    local me = t.identity
    if t.actor == nil or t.actor == "" or me.kind == "unknown" then
      return deny { reason = "an approval must name its actor",
                    requires = { actor = "named" } }
    end
    local opened = t:last_entry("pr_created")
    if not opened then return allow() end
    local author = identity(opened.actor)
    if me.person == author.person then
      return deny { reason = ("separation of duties: %s opened the PR and cannot also "
                              .. "approve it"):format(t.actor),
                    requires = { actor_not = t.actor } }
    end
    if author.principal and me.person == author.principal then
      return deny { reason = ("separation of duties: %s launched %s, which opened the PR")
                                 :format(t.actor, opened.actor),
                    requires = { actor_not = author.principal } }
    end
    if me.principal and (me.principal == author.person or me.principal == author.principal) then
      return deny { reason = ("separation of duties: %s acts for %s, who is behind the PR")
                                 :format(t.actor, me.principal),
                    requires = { actor_not = me.principal } }
    end
    return allow()
  end,
}
