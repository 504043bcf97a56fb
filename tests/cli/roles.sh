#!/bin/sh
# People and authority (issue 11, items 2-4): CI's retry budget declared on
# the shipped `loopforge` workflow (the 4th failure escalates, "Allowed
# from" messages unchanged), role gates (exit 5, an audited refusal), roles
# reaching guards (t.actor_roles), break-glass overrides (refused without
# the role, audited with every overridden guard, never past the graph or a
# gate, co-signed), `audit --overrides`, and the same over HTTP with roles
# from the tokens file.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE="file:$tmp/j"

# A record in ci_failed, through LoopForge's lifecycle.
failed_record() {
    lf create --ref "$1"
    _id=$out
    for s in task_queued pr_created ci_pending ci_failed; do lf transition "$_id" $s t; done
    printf '%s' "$_id"
}
# last_entry ID [STORE POLICIES]: the record's last audit line.
last_entry() {
    "$LOOPFORGE_BIN" --policies "${3:-$POLICIES}" --store "${2:-$STORE}" audit "$1" | tail -1
}

# ---- the retry budget: three re-runs, the 4th failure escalates ----
id=$(failed_record r1)
for i in 1 2 3; do
    lf transition "$id" ci_pending ci.retry
    lf transition "$id" ci_failed ci.failed
done
lf show "$id" --json
expect_json "the 4th failure escalates at once" state escalated
expect_json "… by the engine, as timer:ci_failed" transitions/12/actor timer:ci_failed
expect_json "… with trigger retry.exhausted" transitions/12/trigger retry.exhausted
expect_json "… from ci_failed" transitions/12/from_state ci_failed
id2=$(failed_record r2)
lf transition "$id2" escalated by.hand
expect_rc "nobody takes the escalation edge by hand: exit 4" 4
expect_err "… and LoopForge's message for ci_failed is unchanged" \
    "Invalid transition: ci_failed → escalated. Allowed from ci_failed: ci_pending"
lf transition "$id2" closed x
expect_err "… as every other message" \
    "Invalid transition: ci_failed → closed. Allowed from ci_failed: ci_pending"

# ---- a role gate: only a maintainer leaves escalated ----
n=$(audit_count)
lf transition "$id" ci_pending retry
expect_rc "leaving escalated without the role: exit 5" 5
expect_err "… saying which role it needs and what the actor has" \
    "Denied by policy roles:escalated: leaving escalated needs the role maintainer; cli:tester has no role"
check "… the refusal is in the log" test "$(audit_count)" -eq $((n + 1))
out=$(last_entry "$id")
expect_json "… as a denied entry" kind denied
expect_json "… decided by the gate" decisions/1/policy roles:escalated
lf transition "$id" ci_pending retry --role reviewer,triage
expect_rc "the wrong roles: exit 5" 5
match_err "… naming them" 'cli:tester has reviewer,triage$'
lf transition "$id" ci_pending retry --role triage,maintainer
expect_rc "with the role: it passes" 0
out=$(last_entry "$id")
expect_json "… the entry records the roles" authority/roles/2 maintainer
expect_json "… claimed on the CLI, not from a token" authority/source claimed
lf transition "$id" ci_pending retry --role 'bad role'
expect_rc "a malformed role: exit 2" 2

# ---- the budget refuses a re-run when escalation was held up ----
P2="$tmp/p2"
mkdir -p "$P2/workflows" "$P2/guards"
cp "$POLICIES/workflows/loopforge.lua" "$P2/workflows/"
cat >"$P2/guards/hold.lua" <<'LUA'
return policy {
  name = "hold-escalation",
  on = { to = "escalated" },
  check = function(t) return deny("held for the test") end,
}
LUA
S2="file:$tmp/j2"
run --policies "$P2" --store "$S2" create --ref h; h=$out
for s in task_queued pr_created ci_pending ci_failed ci_pending ci_failed ci_pending ci_failed ci_pending ci_failed; do
    run --policies "$P2" --store "$S2" transition "$h" $s t
done
run --policies "$P2" --store "$S2" show "$h" --json
expect_json "a held escalation leaves the record in ci_failed" state ci_failed
run --policies "$P2" --store "$S2" transition "$h" ci_pending ci.retry
expect_rc "a 4th re-run is refused: exit 5" 5
expect_err "… by the declared budget" \
    "Denied by policy retries:ci_failed: retry budget exhausted (3 of 3 retries used): escalate instead of retrying"
n2=$("$LOOPFORGE_BIN" --policies "$P2" --store "$S2" audit | wc -l)
run --policies "$P2" --store "$S2" tick
expect_out "a due escalation the rules refuse is held by the tick" \
    "$h: ci_failed → escalated (denied): Denied by policy hold-escalation: held for the test"
run --policies "$P2" --store "$S2" tick
check "… and not written down again, tick after tick" \
    test "$("$LOOPFORGE_BIN" --policies "$P2" --store "$S2" audit | wc -l)" -eq "$n2"

# ---- guards see the actor's roles ----
P3="$tmp/p3"
mkdir -p "$P3/workflows" "$P3/guards"
cp "$POLICIES/workflows/loopforge.lua" "$P3/workflows/"
cat >"$P3/guards/approver.lua" <<'LUA'
return policy {
  name = "approver-role",
  on = { to = "approved" },
  check = function(t)
    for _, r in ipairs(t.actor_roles) do
      if r == "approver" then return allow() end
    end
    return deny(("needs the approver role (has %d roles)"):format(#t.actor_roles))
  end,
}
LUA
S3="file:$tmp/j3"
l3() { run --policies "$P3" --store "$S3" "$@"; }
l3 create --ref g; g=$out
for s in task_queued pr_created ci_pending ci_passed awaiting_review; do l3 transition "$g" $s t; done
l3 transition "$g" approved lgtm --role reviewer
expect_rc "a guard reading t.actor_roles denies without the role" 5
expect_err "… it saw the roles" "Denied by policy approver-role: needs the approver role (has 1 roles)"
l3 transition "$g" approved lgtm --role reviewer,approver
expect_rc "… and allows with it" 0

# ---- break-glass ----
l3 create --ref o; o=$out
for s in task_queued pr_created ci_pending ci_passed awaiting_review; do l3 transition "$o" $s t; done
l3 transition "$o" approved lgtm --override
expect_rc "--override without --reason: exit 2" 2
l3 transition "$o" approved lgtm --override --reason "prod is down"
expect_rc "an override without the breakglass role: exit 5" 5
expect_err "… saying so" "Denied by policy breakglass: an override needs the role breakglass; cli:tester has no role"
l3 transition "$o" approved lgtm --override --reason "prod is down" --role breakglass --co-signer cli:tester
expect_rc "a co-signer who is the actor: exit 2" 2
l3 transition "$o" approved lgtm --override --reason "prod is down" --role breakglass --co-signer dana
expect_rc "with the role, the override passes the denying guard" 0
out=$(last_entry "$o" "$S3" "$P3")
expect_json "… a transition" kind transition
expect_json "… with the overridden guard's verdict" decisions/1/verdict deny
expect_json "… and its reason" decisions/1/reason "needs the approver role (has 1 roles)"
expect_json "… the override's reason" authority/override/reason "prod is down"
expect_json "… its co-signer" authority/override/co_signer dana
expect_json "… and that it was used" authority/override/used true
l3 show "$o" --json
expect_json "the record counts its overrides (what a board card shows)" overrides 1
l3 transition "$o" closed x --override --reason "skip it all" --role breakglass
expect_rc "an override never passes the graph: exit 4" 4
l3 audit --overrides
expect_match "audit --overrides lists the override" stdout "$out" '"override":\{"reason":"prod is down","co_signer":"dana","used":true'
expect_match "… and the refused attempt" stdout "$out" '"kind":"denied".*"override":\{"reason":"prod is down","co_signer":null,"used":false'
check "… and nothing else" test "$(printf '%s\n' "$out" | wc -l)" -eq 2
id3=$(STORE=$S3 POLICIES=$P3 failed_record e3)
for i in 1 2 3; do l3 transition "$id3" ci_pending r; l3 transition "$id3" ci_failed f; done
l3 transition "$id3" ci_pending r --override --reason "urgent" --role breakglass
expect_rc "an override never passes a role gate: exit 5" 5
match_err "… the gate says why" '^Denied by policy roles:escalated'

# ---- over HTTP, roles come from the tokens file ----
TOKENS="$tmp/tokens"
run token alice write,maintainer --tokens "$TOKENS"; tok_alice=$out
run token bob write,breakglass --tokens "$TOKENS"; tok_bob=$out
run token carol read,breakglass --tokens "$TOKENS"; tok_carol=$out
run token dave write --tokens "$TOKENS"; tok_dave=$out
check "the tokens file keeps the roles" grep -q '^alice write,maintainer ' "$TOKENS"
run token eve write,admin
expect_rc "two access roles in one token: exit 2" 2
start_server --store "$S3" --policies "$P3" --tokens "$TOKENS" || not_ok "serve starts"
AUTH="Bearer $tok_dave"
req POST "/v1/records/$id3/transitions" '{"to":"ci_pending","trigger":"retry"}'
expect_status "a token without maintainer cannot leave escalated: 403" 403
expect_json "… code denied" code denied
req POST "/v1/records/$id3/transitions" '{"to":"ci_pending","trigger":"retry","roles":["maintainer"]}'
expect_status "with tokens, roles cannot be claimed in the body: 400" 400
AUTH="Bearer $tok_alice"
req POST "/v1/records/$id3/transitions" '{"to":"ci_pending","trigger":"retry"}'
expect_status "alice's token holds maintainer: 200" 200
out=$(last_entry "$id3" "$S3" "$P3")
expect_json "… the entry says the roles come from the token" authority/source token
expect_json "… and names them" authority/roles/2 maintainer
l3 create --ref h2; o2=$out
for s in task_queued pr_created ci_pending ci_passed awaiting_review; do l3 transition "$o2" $s t; done
AUTH="Bearer $tok_bob"
req POST "/v1/records/$o2/transitions" "{\"to\":\"approved\",\"trigger\":\"lgtm\",\"override\":{\"reason\":\"hotfix\",\"co_signer_token\":\"$tok_dave\"}}"
expect_status "a co-signer token without breakglass: 403" 403
req POST "/v1/records/$o2/transitions" "{\"to\":\"approved\",\"trigger\":\"lgtm\",\"override\":{\"reason\":\"hotfix\",\"co_signer\":\"carol\"}}"
expect_status "with tokens, a co-signer is a token, not a name: 400" 400
req POST "/v1/records/$o2/transitions" "{\"to\":\"approved\",\"trigger\":\"lgtm\",\"override\":{\"reason\":\"hotfix\",\"co_signer_token\":\"$tok_carol\"}}"
expect_status "bob overrides, co-signed by carol's token: 200" 200
expect_json "… the record moved" record/state approved
out=$(last_entry "$o2" "$S3" "$P3")
expect_json "… the actor is bob" actor bob
expect_json "… the co-signer is carol, by her token" authority/override/co_signer carol
AUTH="Bearer $tok_dave"
req POST "/v1/records/$o2/transitions" '{"to":"merged","trigger":"m","override":{"reason":"x"}}'
expect_status "an override without breakglass over HTTP: 403" 403

# ---- explain (issue 12, item 1): as the caller, with the token's roles ----
l3 create --ref ex; ex=$out
l3 transition "$ex" task_queued t; l3 transition "$ex" pr_created t; l3 transition "$ex" ci_pending t
l3 transition "$ex" ci_failed t
for i in 1 2 3; do l3 transition "$ex" ci_pending r; l3 transition "$ex" ci_failed f; done
n=$(STORE=$S3 POLICIES=$P3 audit_count)
AUTH="Bearer $tok_dave"
req GET "/v1/records/$ex/explain"
expect_status "explain over HTTP: 200" 200
expect_json "… the state" state escalated
expect_json "… who may leave it" leave_roles/1 maintainer
expect_json "… each way out, judged as the caller" edges/1/allowed false
expect_json "… refused by the gate" edges/1/decisions/1/policy roles:escalated
expect_json "… the second way out" edges/2/to closed
AUTH="Bearer $tok_alice"
req GET "/v1/records/$ex/explain"
expect_json "… with the maintainer's token it is allowed" edges/1/allowed true
req GET "/v1/records/$ex/explain?roles=maintainer"
expect_status "… roles cannot be asked for with tokens: 400" 400
req GET "/v1/records/loop-nope/explain"
expect_status "… an unknown record: 404" 404
check "explain wrote nothing" test "$(STORE=$S3 POLICIES=$P3 audit_count)" -eq "$n"
stop_server
l3 explain "$ex" --actor dave
expect_rc "loopforge explain exits 0" 0
match_out "… names the record and state" "^$ex: escalated \\(loopforge, version [0-9]+\\)$"
match_out "… each way out with the rule that refuses it" '^      roles:escalated: leaving escalated needs the role maintainer; dave has no role$'
match_out "… and who may leave" '^  leaving needs one of the roles: maintainer$'
l3 explain "$ex" --actor mo --role maintainer
match_out "… as a maintainer: allowed" '^  → ci_pending: allowed$'
done_testing
