#!/bin/sh
# GitHub webhooks against a real server with the shipped policies and
# routes: signatures (the README's published vectors, the real fixture
# bytes signed by this test, bad/missing/wrong secret -- and nothing
# happening then), ping, redelivery (also across a restart), events with
# no route or no record, and a whole lifecycle driven only by webhooks,
# including an observation the workflow would refuse (a violation).
#
# The payloads are $FIX: tests/fixtures/github (ours, shaped like GitHub's)
# by default; tests/run.sh runs this suite again over GitHub's published
# examples (../shared/fixtures/github, octokit's, byte for byte) with
# LOOPFORGE_FIXTURES_PUBLISHED=1, which adds the signature vectors the
# shared README publishes for two of those files. What the fixtures do
# not carry is derived from the nearest one with sed, named "synthetic".
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE=${HTTP_STORE:-file:$tmp/j}
if [ ! -f "$FIX/issues.opened.json" ]; then
    not_ok "the GitHub fixtures are in $FIX (set LOOPFORGE_FIXTURES)"
    done_testing
    exit 1
fi
count() { "$LOOPFORGE_BIN" --policies "$SHIPPED" --store "$STORE" audit | wc -l | tr -d ' '; }

# ---- off without a secret ----
start_server --store "$STORE" --policies "$SHIPPED" || not_ok "serve starts"
SECRET=whatever
hook issues "$FIX/issues.opened.json" off-1
expect_status "without --webhook-secret-file the intake answers 404" 404
match_out "… saying how to turn it on" 'webhook-secret-file'
stop_server

# ---- the README's published signature vectors ----
printf 'Hello, World!' >"$tmp/hello"
printf "It's a Secret to Everybody\n" >"$tmp/secret1"   # a final newline is ignored
printf 'mysecret' >"$tmp/secret2"
printf '{"foo":"bar"}' >"$tmp/foobar"
expect_match "openssl reproduces GitHub's vector (our signing is right)" sig \
    "$(sign "$tmp/hello" "It's a Secret to Everybody")" \
    '^sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17$'
expect_match "… and octokit's" sig "$(sign "$tmp/foobar" mysecret)" \
    '^sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3$'
# The published files' vectors (../shared/fixtures/github/README.md).
PR_SIG=$(sign "$FIX/pull_request.opened.json" "It's a Secret to Everybody")
if [ "${LOOPFORGE_FIXTURES_PUBLISHED:-}" = 1 ]; then
    expect_match "… and the README's vector over pull_request.opened.json" sig "$PR_SIG" \
        '^sha256=9dc478d9f168340c18752a2c72bfbec57a9230b5a8af4e1b5cd19e4469a0e55a$'
    expect_match "… and over check_suite.completed.success.json" sig \
        "$(sign "$FIX/check_suite.completed.success.json" "It's a Secret to Everybody")" \
        '^sha256=beef86ecc2fb727365bd6bdc6fee0a7c87191100de426d5834777c5089962776$'
fi

start_server --store "$STORE" --policies "$SHIPPED" --webhook-secret-file "$tmp/secret2" ||
    not_ok "serve starts with a secret"
hook ping "$tmp/foobar" v-2 sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3
expect_status "octokit's vector is accepted (ping: 200)" 200
stop_server

start_server --store "$STORE" --policies "$SHIPPED" --webhook-secret-file "$tmp/secret1" ||
    not_ok "serve starts with GitHub's docs secret"
SECRET="It's a Secret to Everybody"
hook ping "$tmp/hello" v-1 sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
expect_status "GitHub's docs vector is accepted (ping: 200)" 200
expect_json "… pong" pong true
hook ping "$tmp/hello" v-1b sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18
expect_status "one hex digit off: 401" 401
hook pull_request "$FIX/pull_request.opened.json" v-3 "$PR_SIG"
expect_status "a payload signed with GitHub's docs secret is accepted: 200" 200
expect_json "… a PR that links no issue gets a record of its own" results/1/op create
expect_json "… which enters the lifecycle at pr_created" results/2/to pr_created

# ---- bad signatures change nothing ----
before=$(count)
hook issues "$FIX/issues.opened.json" bad-1 -
expect_status "no signature: 401" 401
expect_json "… code unauthorized" code unauthorized
expect_json "… saying what is missing" error "missing X-Hub-Signature-256"
hook issues "$FIX/issues.opened.json" bad-2 "$(sign "$FIX/issues.opened.json" "not the secret")"
expect_status "signed with the wrong secret: 401" 401
hook issues "$FIX/issues.opened.json" bad-3 "sha1=$(openssl dgst -sha1 -hmac "$SECRET" -r "$FIX/issues.opened.json" | cut -d' ' -f1)"
expect_status "a sha1 signature (X-Hub-Signature style): 401" 401
expect_match "… malformed" error "$out" 'malformed X-Hub-Signature-256'
sed 's/"number": 1,/"number": 9,/' "$FIX/issues.opened.json" >"$tmp/tampered.json"
hook issues "$tmp/tampered.json" bad-4 "$(sign "$FIX/issues.opened.json")"
expect_status "a body changed after signing: 401" 401
hook issues "$FIX/issues.opened.json" bad-5 "sha256=$(printf '%064d' 0)"
expect_status "a well-formed but wrong signature: 401" 401
expect_match "none of them changed anything" audit "$(count)" "^$before\$"
req GET /v1/records
expect_json "… no record was created (the one there is the PR's)" 'records/#' 1

# ---- headers and payloads ----
printf '{"action":' >"$tmp/broken.json"
hook issues "$tmp/broken.json" p-1
expect_status "a signed but malformed payload is 400" 400
expect_json "… with the parse position" error "malformed JSON at offset 9 (line 1, column 10)"
status=$(curl -sS -o "$tmp/body" -w '%{http_code}' -H "X-GitHub-Delivery: p-2" \
    -H "X-Hub-Signature-256: $(sign "$FIX/issues.opened.json")" \
    --data-binary @"$FIX/issues.opened.json" "$BASE/v1/webhooks/github")
expect_status "no X-GitHub-Event: 400" 400
status=$(curl -sS -o "$tmp/body" -w '%{http_code}' -H "X-GitHub-Event: issues" \
    -H "X-Hub-Signature-256: $(sign "$FIX/issues.opened.json")" \
    --data-binary @"$FIX/issues.opened.json" "$BASE/v1/webhooks/github")
expect_status "no X-GitHub-Delivery (the idempotency key): 400" 400
hook ping "$FIX/ping.json" p-3
expect_status "the real ping payload: 200" 200
hook push "$FIX/push.branch-created.json" p-4
expect_status "an event no route follows: 202" 202
expect_json "… ignored, saying why" ignored "no route for push"
hook check_run "$FIX/check_run.created.json" p-5
expect_status "check_run is CI too: 200" 200
expect_json "… through the ci route" results/1/route ci
sed 's/"number": 2,/"number": 99,/' "$FIX/check_suite.completed.success.json" >"$tmp/pr99.json"
hook check_suite "$tmp/pr99.json" p-6
expect_status "CI for a PR no record knows: 202" 202
expect_json "… no record" ignored "no record for pr:Codertocat/Hello-World#99"
head -c 27000000 /dev/zero >"$tmp/huge"
hook issues "$tmp/huge" p-7
expect_status "a delivery over GitHub's 25 MB is 413" 413

# ---- synthetic variants GitHub does not publish ----
sed '0,/"body": "\([^"]*\)"/s//"body": "Fixes #1. \1"/' \
    "$FIX/pull_request.opened.json" >"$tmp/synthetic.pr_fixes_1.json"
sed 's/"conclusion": "success"/"conclusion": "failure"/' \
    "$FIX/check_suite.completed.success.json" >"$tmp/synthetic.check_suite_failure.json"
sed 's/"state": "commented"/"state": "approved"/' \
    "$FIX/pull_request_review.submitted.commented.json" >"$tmp/synthetic.review_approved.json"
sed 's/"merged": false/"merged": true/; s/"merged_at": null/"merged_at": "2019-05-15T15:21:18Z"/; s/"merged_by": null/"merged_by": {"login": "Codertocat"}/' \
    "$FIX/pull_request.closed.unmerged.json" >"$tmp/synthetic.pr_merged.json"
sed 's/"action": "opened"/"action": "closed"/; 0,/"state": "open"/s//"state": "closed"/; 0,/"closed_at": null/s//"closed_at": "2019-05-15T15:30:00Z"/' \
    "$FIX/issues.opened.json" >"$tmp/synthetic.issue_closed.json"
for f in "$tmp"/synthetic.*.json; do
    check "synthetic $(basename "$f" .json | sed 's/^synthetic\.//') is valid JSON" sh -c "$JSON <'$f'"
done
check "… and each differs from its source" sh -c "! cmp -s '$tmp/synthetic.pr_merged.json' '$FIX/pull_request.closed.unmerged.json'"

# ---- a whole lifecycle, driven only by webhooks ----
ISSUE=https://github.com/Codertocat/Hello-World/issues/1
hook issues "$FIX/issues.opened.json" life-1
expect_status "issues.opened (real) creates the record: 200" 200
expect_json "… op create" results/1/op create
expect_json "… actor github:<sender>" results/1/to issue_created
id=$(json results/1/record_id)
n_created=$(count)
hook issues "$FIX/issues.opened.json" life-1
expect_status "the same delivery again: 200" 200
expect_json "… duplicate" duplicate true
expect_match "… and nothing was written" audit "$(count)" "^$n_created\$"
hook issues "$FIX/issues.assigned.json" life-2
expect_json "issues.assigned (real) queues it" results/1/to task_queued
hook pull_request "$FIX/pull_request.opened.json" life-3
expect_status "pull_request.opened (real) again, new delivery: 200" 200
match_out "… its record exists" '"ignored":"Duplicate ref'
expect_json "… and knows it: nothing changed" changed false
hook pull_request "$tmp/synthetic.pr_fixes_1.json" life-4
expect_json "pull_request.opened with 'Fixes #1' (synthetic) links the PR" results/1/to pr_created
expect_json "… on the issue's record" results/1/record_id "$id"
hook pull_request "$FIX/pull_request.synchronize.json" life-5
# The published synchronize's head is the opened PR's head: a push of a
# commit the record knows changes nothing.
expect_json "pull_request.synchronize (real) is found by the PR alias" results/1/record_id "$id"
expect_json "… a push of the head it knows moves nothing" results/1/to pr_created
expect_json "… and changes nothing" results/1/changed false
hook check_suite "$tmp/synthetic.check_suite_failure.json" life-6
expect_json "check_suite failure (synthetic) fails CI" results/1/to ci_failed
hook pull_request "$FIX/pull_request.synchronize.json" life-7
expect_json "the same push again (new delivery) leaves CI failed" results/1/to ci_failed
hook check_suite "$FIX/check_suite.completed.success.json" life-8
expect_json "check_suite success (real) passes CI" results/1/to ci_passed
req GET "/v1/records/$id"
expect_json "… and the shipped hook moved it on to awaiting_review" state awaiting_review
hook pull_request_review "$FIX/pull_request_review.submitted.commented.json" life-9
expect_status "a commented review (real) is not an approval: 202" 202
hook pull_request_review "$tmp/synthetic.review_approved.json" life-10
expect_status "an approving review (synthetic): 200" 200
expect_json "… approves" results/1/to approved
# The PR's author approved it: the no-self-approval policy would refuse
# that as a request; as an observation it is recorded, marked.
expect_json "… marked a violation (author approving own PR)" results/1/violation/rule no-self-approval
expect_json "… counted" violations 1
hook pull_request "$FIX/pull_request.closed.unmerged.json" life-11
expect_status "a PR closed unmerged (real) is recorded: 200" 200
expect_json "… the state stays" results/1/to approved
expect_json "… the knowledge changed" results/1/changed true
hook pull_request "$tmp/synthetic.pr_merged.json" life-12
expect_json "a merged PR (synthetic) merges the record" results/1/to merged
expect_json "… no violation: it was approved" results/1/violation null
hook issues "$tmp/synthetic.issue_closed.json" life-13
expect_json "issues.closed (synthetic) closes it" results/1/to closed
req GET "/v1/records/$id"
expect_json "the record counts its violations (what a board card shows)" violations 1
expect_json "the record is closed" state closed
expect_json "… its ref is the issue" ref "$ISSUE"
expect_json "… pr_number from the PR" pr_number 2
expect_json "… pr_url" pr_url https://github.com/Codertocat/Hello-World/pull/2
expect_json "… every change by github:Codertocat" transitions/3/actor github:Codertocat
match_out "… findable by its aliases" '"aliases":\[[^]]*"pr:Codertocat/Hello-World#2"'
req GET "/v1/records/$id/audit"
expect_match "the audit entry carries the violation" audit \
    "$(grep '"to_state":"approved"' "$tmp/body")" '"violation":\{"rule":"no-self-approval"'

# ---- an observation the workflow has no edge for ----
# Issue #3 and PR #4 are synthetic copies of #1 and #2 (their numbers, URLs
# and head sha changed); the PR is merged while CI never ran.
sed 's|/issues/1"|/issues/3"|; 0,/"number": 1,/s//"number": 3,/' "$FIX/issues.opened.json" \
    >"$tmp/synthetic.issue3.json"
sed 's/"number": 2,/"number": 4,/g; s|/pull/2"|/pull/4"|g; s/ec26c3e57ca3a959ca5aad62de7213c562f8c821/4444444444444444444444444444444444444444/g; 0,/"body": "[^"]*"/s//"body": "Closes #3"/' \
    "$FIX/pull_request.opened.json" >"$tmp/synthetic.pr4.json"
sed 's/"number": 2,/"number": 4,/g; s|/pull/2"|/pull/4"|g' "$tmp/synthetic.pr_merged.json" \
    >"$tmp/synthetic.pr4_merged.json"
hook issues "$tmp/synthetic.issue3.json" v-issue3
id3=$(json results/1/record_id)
sed 's|/issues/1"|/issues/3"|; 0,/"number": 1,/s//"number": 3,/' "$FIX/issues.assigned.json" \
    >"$tmp/synthetic.issue3_assigned.json"
hook issues "$tmp/synthetic.issue3_assigned.json" v-assign3
expect_json "issue #3 (synthetic) is queued, no violation" results/1/violation null
hook pull_request "$tmp/synthetic.pr4.json" v-pr4
expect_json "issue #3 gets PR #4 (synthetic)" results/1/record_id "$id3"
hook pull_request "$tmp/synthetic.pr4_merged.json" v-merge4
expect_status "PR #4 merged without CI: still 200" 200
expect_json "… the record follows GitHub" results/1/to merged
expect_json "… marked a violation of the workflow" results/1/violation/rule workflow:loopforge
match_out "… with LoopForge's reason" 'Invalid transition: pr_created → merged'
req GET /metrics
match_out "violations are counted (the self-approval and the merge)" 'loopforge_violations_total 2$'
match_out "deliveries by event and result" \
    'loopforge_webhook_deliveries_total\{event="issues",result="duplicate"\} 1'
match_out "… unauthorized ones too" \
    'loopforge_webhook_deliveries_total\{event="issues",result="unauthorized"\} 5'
stop_server
expect_match "serve stops with 0" rc "$STOP_RC" '^0$'

# ---- redelivery after a restart: the keys are in the journal ----
start_server --store "$STORE" --policies "$SHIPPED" --webhook-secret-file "$tmp/secret1" ||
    not_ok "serve restarts"
n=$(count)
hook pull_request "$tmp/synthetic.pr_merged.json" life-12
expect_status "a redelivery after a restart: 200" 200
expect_json "… duplicate" duplicate true
hook issues "$tmp/synthetic.issue_closed.json" life-13
expect_json "… every one" duplicate true
expect_match "… and nothing was written" audit "$(count)" "^$n\$"
stop_server
run --store "$STORE" audit --verify
expect_rc "the journal verifies after all that" 0

done_testing
