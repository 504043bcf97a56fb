#!/bin/sh
# serve.sh -- what `make run` runs: `loopforge serve` on 127.0.0.1:8080
# with the embedded journal (./var) and the shipped policies, GitHub
# webhook intake on with a local secret, and working curl examples.
#
#   sh contrib/serve.sh PATH-TO-LOOPFORGE
#
# LOOPFORGE_LISTEN, LOOPFORGE_STORE and LOOPFORGE_POLICIES override the
# defaults. Ctrl-C stops the server (it drains and exits 0).
set -u
LF=${1:?usage: sh contrib/serve.sh PATH-TO-LOOPFORGE}
case $LF in */*) ;; *) LF=./$LF ;; esac
listen=${LOOPFORGE_LISTEN:-127.0.0.1:8080}
store=${LOOPFORGE_STORE:-file:./var/loopforge.journal}
policies=${LOOPFORGE_POLICIES:-./policies}
mkdir -p var
# A webhook secret for local experiments (GitHub would be given the same).
[ -s var/webhook-secret ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >var/webhook-secret

fifo=var/.serve.$$
rm -f "$fifo"
mkfifo "$fifo" || exit 1
"$LF" serve --listen "$listen" --store "$store" --policies "$policies" \
    --webhook-secret-file var/webhook-secret >"$fifo" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' INT TERM
exec 3<"$fifo"
rm -f "$fifo"
if ! IFS= read -r line <&3; then
    wait "$pid"
    exit $?
fi
addr=${line#listening on }
base="http://$addr"
# A fresh issue number each run: the journal keeps every record.
n=$(date +%s)
cat <<EOF
loopforge serve is $line (store $store, policies $policies);
its log (JSON lines) follows below. Ctrl-C stops it.

The console (the board, each record's story, the workflows, the audit's
health), in a browser:

  $base/ui/

Try, from another terminal:

  curl -s -X POST $base/v1/records -H 'Content-Type: application/json' \\
       -d '{"ref":"https://github.com/example/app/issues/$n","repo":"example/app","ref_number":$n}'
  curl -s -X POST $base/v1/records/ID/transitions \\
       -d '{"to":"task_queued","trigger":"worker.picked_up"}'
  curl -s "$base/v1/records?state=task_queued"
  curl -s $base/v1/audit
  curl -s $base/metrics
  curl -sN $base/v1/events        # every change as it is committed (SSE)

A GitHub delivery, signed with var/webhook-secret:

  f=tests/fixtures/github/issues.opened.json    # or any file of tests/fixtures/github
  curl -s $base/v1/webhooks/github -H 'X-GitHub-Event: issues' \\
       -H "X-GitHub-Delivery: \$(date +%s%N)" \\
       -H "X-Hub-Signature-256: sha256=\$(openssl dgst -sha256 -hmac "\$(cat var/webhook-secret)" -r \$f | cut -d' ' -f1)" \\
       --data-binary @\$f

docs/http.md describes every route.

EOF
wait "$pid"
rc=$?
# A first wait is interrupted by the trap; wait again for the exit code.
kill -0 "$pid" 2>/dev/null && { wait "$pid"; rc=$?; }
exit "$rc"
