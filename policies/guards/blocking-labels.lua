-- blocking-labels -- a record carrying one of the blocking labels cannot
-- be merged. A label is on the record if it is a key of the record's
-- labels object ({"do-not-merge": true}) or one of its values, or if the
-- merge request's metadata lists it in `labels` (["do-not-merge"]).
--
-- Settings (config.lua): labels, the blocking labels.

local allow, deny, ipairs = allow, deny, ipairs

return policy {
  name = "blocking-labels",
  description = "labels such as do-not-merge block merging",
  on = { to = "merged", workflow = "loopforge" },
  defaults = { labels = { "do-not-merge", "blocked" } },

  check = function(t, cfg)
    for _, label in ipairs(cfg.labels) do
      if t:has_label(label) then
        return deny { reason = ("label '%s' blocks merging"):format(label),
                      requires = { remove_label = label } }
      end
    end
    return allow()
  end,
}
