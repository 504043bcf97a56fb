-- identity_spec.lua -- who acts, across the delegation chain (issue 12,
-- item 2): config.lua's identities link names to people and agents to the
-- human they act for; no-self-approval holds transitively and refuses an
-- anonymous approval; a PR an agent opened merges only after a human
-- approved it; audit entries carry the resolved identity.
local kit = require "loopforge.testing"

local IDENTITIES = {
  people = { alice = { "github:alice", "alice@example.com" }, bob = { "github:bob" } },
  agents = { ["coder-7"] = { principal = "alice", names = { "github:coder-7[bot]" } } },
}

describe("identities", function()
  local eng
  after_each(function() if eng then eng:close() end; kit.cleanup() end)

  -- A record whose PR `author` opened, waiting for review.
  local function pr_by(author)
    local id = kit.record(eng)
    kit.walk(eng, id, { "task_queued", { "pr_created", actor = author }, "ci_pending", "ci_passed" })
    assert.equal("awaiting_review", kit.state(eng, id))    -- route-to-review moved it
    return id
  end

  it("refuses the agent's principal, the agent itself and anonymous; allows another human", function()
    eng = kit.engine{ config = { identities = IDENTITIES } }
    local id = pr_by("github:coder-7[bot]")
    kit.assert_denied(eng:transition(id, "approved", "lgtm", { actor = "alice@example.com" }),
                      "no-self-approval", "alice@example.com launched github:coder-7[bot]")
    kit.assert_denied(eng:transition(id, "approved", "lgtm", { actor = "coder-7" }),
                      "no-self-approval", "coder-7 opened the PR")
    kit.assert_denied(eng:transition(id, "approved", "lgtm"), "no-self-approval",
                      "an approval must name its actor")
    local res = kit.assert_allowed(eng:transition(id, "approved", "lgtm", { actor = "github:bob" }))
    assert.equal("approved", res.record.state)
  end)

  it("holds for an agent approving what its own principal opened", function()
    eng = kit.engine{ config = { identities = IDENTITIES } }
    local id = pr_by("github:alice")
    kit.assert_denied(eng:transition(id, "approved", "lgtm", { actor = "github:coder-7[bot]" }),
                      "no-self-approval", "acts for alice")
    kit.assert_allowed(eng:transition(id, "approved", "lgtm", { actor = "github:bob" }))
  end)

  it("merges an agent's PR only after a human approval", function()
    eng = kit.engine{ config = { identities = IDENTITIES } }
    local id = pr_by("github:coder-7[bot]")
    -- an app approves: another identity, but not a human
    assert.is_true(eng:transition(id, "approved", "lgtm", { actor = "github:review-bot[bot]" }).success)
    kit.assert_denied(eng:transition(id, "merged", "pr.merged", { actor = "github:bob" }),
                      "agent-prs-need-human-approval",
                      "github:coder-7[bot] is an agent: its PR needs 1 human approval (0 so far)")
    local d = kit.decision(eng:transition(id, "merged", "pr.merged",
                                          { actor = "github:bob", dry_run = true }),
                           "agent-prs-need-human-approval")
    assert.same({ human_approvals = 1, have = 0, not_by = "alice" }, d.requires)
    -- a human's own PR needs nothing more
    local human = pr_by("github:bob")
    kit.assert_allowed(eng:transition(human, "approved", "lgtm", { actor = "github:alice" }))
    local dec = kit.decision(eng:transition(human, "merged", "pr.merged",
                                            { actor = "github:alice", dry_run = true }),
                             "agent-prs-need-human-approval")
    assert.equal("allow", dec.verdict)
  end)

  it("records the resolved identity in the audit entry and shows it to guards", function()
    local seen
    eng = kit.engine{ config = { identities = IDENTITIES }, guards = { ["see-who"] = [[
return policy { name = "see-who", on = { to = "task_queued" },
  check = function(t)
    local i = t.identity
    return allow{ who = i.name .. "/" .. i.kind .. "/" .. tostring(i.person) .. "/"
                        .. tostring(i.principal) }
  end }
]] } }
    local id = kit.record(eng)
    local res = kit.assert_allowed(eng:transition(id, "task_queued", "pick",
                                                  { actor = "github:coder-7[bot]" }))
    seen = res.record.transitions[2].metadata.who
    assert.equal("github:coder-7[bot]/agent/coder-7/alice", seen)
    local _, last = kit.audit(eng, id)
    assert.same({ identity = { kind = "agent", person = "coder-7", principal = "alice" } },
                last.authority)
  end)

  it("refuses malformed identities at lint", function()
    local ok, err = pcall(kit.engine, { config = { identities = {
      people = { alice = { "a" }, bob = { "a" } } } } })
    assert.is_false(ok)
    assert.matches("identities: 'a' is named twice", err)
  end)
end)
