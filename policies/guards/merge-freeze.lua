-- merge-freeze -- no merges inside a freeze window (a release, the end of
-- the year). Windows are configured in config.lua, in UTC:
--
--   ["merge-freeze"] = {
--     windows = {
--       { from = "2026-12-24T00:00:00Z", to = "2027-01-02T00:00:00Z",
--         reason = "end-of-year freeze" },
--     },
--   },
--
-- A window covers from <= now < to. There are none by default. The windows
-- are checked when the policy set loads, so a typo in a date is a lint
-- error, not a freeze that never starts.

local allow, deny, ipairs, pairs, parse_time = allow, deny, ipairs, pairs, parse_time

local FIELDS = { from = true, to = true, reason = true }

return policy {
  name = "merge-freeze",
  description = "no merges inside the configured freeze windows (UTC)",
  on = { to = "merged", workflow = "loopforge" },
  defaults = { windows = {} },

  validate = function(cfg)
    for i, w in ipairs(cfg.windows) do
      if type(w) ~= "table" then
        return false, ("window %d must be a table {from=, to=, reason=}"):format(i)
      end
      for k in pairs(w) do
        if not FIELDS[k] then
          return false, ("window %d: unknown field '%s'"):format(i, tostring(k))
        end
      end
      local from = type(w.from) == "string" and parse_time(w.from)
      local to = type(w.to) == "string" and parse_time(w.to)
      if not from or not to then
        return false, ("window %d: from and to must be UTC times like "
                       .. "2026-12-24T00:00:00Z"):format(i)
      end
      if to <= from then
        return false, ("window %d ends before it starts"):format(i)
      end
    end
  end,

  check = function(t, cfg)
    local now = t.now
    for _, w in ipairs(cfg.windows) do
      if now >= parse_time(w.from) and now < parse_time(w.to) then
        return deny { reason = ("merge freeze until %s: %s")
                                 :format(w.to, w.reason or "merges are frozen"),
                      requires = { after = w.to } }
      end
    end
    return allow()
  end,
}
