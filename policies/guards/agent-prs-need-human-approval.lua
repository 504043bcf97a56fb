-- agent-prs-need-human-approval -- a PR an agent (or an app) opened merges
-- only after `approvals` distinct humans approved it, none of them the
-- human the agent acts for. Who is a human, an agent and whose agent:
-- config.lua's `identities` (a GitHub App's "[bot]" login is an app).
--
-- Settings (config.lua): approvals (default 1).

local allow, deny, identity, ipairs = allow, deny, identity, ipairs

return policy {
  name = "agent-prs-need-human-approval",
  description = "PRs opened by agents merge only after human approvals",
  on = { to = "merged", workflow = "loopforge" },
  defaults = { approvals = 1 },

  validate = function(cfg)
    if math.type(cfg.approvals) ~= "integer" or cfg.approvals < 1 then
      return false, "approvals must be a whole number, 1 or more"
    end
  end,

  check = function(t, cfg)
    local opened = t:last_entry("pr_created")
    if not opened then return allow() end
    local author = identity(opened.actor)
    if author.kind ~= "agent" and author.kind ~= "app" then return allow() end
    local seen, humans = {}, 0
    for _, h in ipairs(t.record.transitions) do
      if h.to_state == "approved" then
        local who = identity(h.actor)
        if who.kind == "human" and who.person and who.person ~= author.principal
           and not seen[who.person] then
          seen[who.person] = true
          humans = humans + 1
        end
      end
    end
    if humans >= cfg.approvals then return allow() end
    return deny { reason = ("%s is an %s: its PR needs %d human approval%s (%d so far)")
                             :format(opened.actor, author.kind, cfg.approvals,
                                     cfg.approvals == 1 and "" or "s", humans),
                  requires = { human_approvals = cfg.approvals, have = humans,
                               not_by = author.principal } }
  end,
}
