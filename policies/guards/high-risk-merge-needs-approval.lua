-- high-risk-merge-needs-approval -- a high-risk change is merged only
-- after someone with the authority to do so has approved it on record.
--
-- "High risk" is the `risk_tier` of the merge request's metadata or of the
-- record's metadata (either is enough: the record may have been classified
-- when it was created, or the merge request may say so). "On record" means
-- the approval is already in the record, never in the merge request itself:
--   * the record's metadata has governance_approved = true, or
--   * some history entry's metadata has governance_approved = true
--     (e.g. `loopforge transition ID approved review.approved
--      --meta governance_approved=true`).
--
-- Settings (config.lua): risk_tiers, the tiers that need the approval.

local allow, deny, ipairs = allow, deny, ipairs

local function listed(value, list)
  if value == nil then return false end
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- Newest first: an approval is usually one of the last entries.
local function approved(record)
  if record.metadata.governance_approved == true then return true end
  local history = record.transitions
  for i = #history, 1, -1 do
    if history[i].metadata.governance_approved == true then return true end
  end
  return false
end

return policy {
  name = "high-risk-merge-needs-approval",
  description = "a high-risk merge needs a recorded governance approval",
  on = { to = "merged", workflow = "loopforge" },
  defaults = { risk_tiers = { "high" } },

  check = function(t, cfg)
    local risky = listed(t.metadata.risk_tier, cfg.risk_tiers)
               or listed(t.record.metadata.risk_tier, cfg.risk_tiers)
    if risky and not approved(t.record) then
      return deny { reason = "high-risk merge requires governance approval",
                    requires = { metadata = { governance_approved = true },
                                 on = "an earlier transition (the approval)" } }
    end
    return allow()
  end,
}
