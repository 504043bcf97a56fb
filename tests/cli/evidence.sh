#!/bin/sh
# Evidence an outsider can check (issue 10): keygen, signed checkpoints
# (verified with openssl, not with our code), audit --verify with a key and
# an outside checkpoint, the tamper matrix on the journal (modify and
# re-hash the rest, cut the tail, cut it and re-sign with another key, an
# entry under a generation never announced, two entries swapped, a byte of
# a checkpoint), a verification that changes no byte even with a torn
# tail, read commands without a policy set, inclusion proofs checked by an
# independent RFC 9162 implementation (python3), and policy sets announced
# before the first entry decided under them.
. tests/cli/tap.inc
. "$ROOT/tests/cli/http.inc"
STORE="file:$tmp/j"
J="$tmp/j"
cd "$tmp" || exit 1

# rehash FILE: recomputes every prev and hash in order, as an attacker
# with write access to the journal would after editing it.
rehash() {
    _prev=0000000000000000000000000000000000000000000000000000000000000000
    : >"$1.new"
    while IFS= read -r _line; do
        _body=$(printf '%s' "$_line" | sed 's/,"prev":"[0-9a-f]*","hash":"[0-9a-f]*"}$//')
        _body="$_body,\"prev\":\"$_prev\"}"
        _h=$(printf '%s' "$_body" | openssl dgst -sha256 -r | cut -d' ' -f1)
        printf '%s,"hash":"%s"}\n' "${_body%\}}" "$_h" >>"$1.new"
        _prev=$_h
    done <"$1"
    mv "$1.new" "$1"
}

# verify_copy NAME FILE [ARGS]: audit --verify of a tampered copy.
verify_copy() {
    _f=$2
    shift 2
    run --policies "$POLICIES" --store "file:$_f" audit --verify "$@"
}

# ---- keys ----
run keygen --out k
expect_rc "keygen writes a key pair" 0
match_out "… and prints its id" '^key [0-9a-f]{16}$'
kid=$(printf '%s\n' "$out" | sed -n 's/^key //p')
check "the private key is the owner's only (0600)" test "$(stat -c %a k.key)" = 600
check "openssl reads it as an Ed25519 key" sh -c "openssl pkey -in k.key -noout -text | grep -q ED25519"
run keygen --out k
expect_rc "keygen never overwrites a key (exit 6)" 6
run keygen --out other
expect_rc "another key" 0

# ---- a log with checkpoints ----
lf create --ref a; a=$out
lf create --ref b; b=$out
lf transition "$a" task_queued t
lf --signing-key "$PWD/k.key" audit checkpoint
expect_rc "audit checkpoint with a key" 0
printf '%s\n' "$out" >cp1.json
expect_json "… prints the checkpoint of the 4 entries before it" checkpoint/tree_size 4
expect_json "… which is entry 5" seq 5
expect_json "… signed by the key" checkpoint/key_id "$kid"
lf audit checkpoint
expect_rc "without a key: exit 2" 2
match_err "… saying how to get one" 'loopforge keygen'
lf transition "$b" task_queued t
lf transition "$a" pr_created t
LOOPFORGE_SIGNING_KEY="$PWD/k.key" run --policies "$POLICIES" --store "$STORE" audit checkpoint
expect_rc "the key from LOOPFORGE_SIGNING_KEY" 0
printf '%s\n' "$out" >cp2.json
expect_json "… the second checkpoint states 7 entries" checkpoint/tree_size 7

# openssl checks the signature, with the public key alone.
printf '%s\n' "$(json signed)" >signed.txt
json checkpoint/signature | openssl base64 -d -A >sig.bin
check "openssl verifies the checkpoint's signature with the public key" \
    sh -c "openssl pkeyutl -verify -pubin -inkey k.pub -rawin -in signed.txt -sigfile sig.bin >/dev/null"
sed 's/tree_size 7/tree_size 8/' signed.txt >forged.txt
check "… and refuses it for a changed text" \
    sh -c "! openssl pkeyutl -verify -pubin -inkey k.pub -rawin -in forged.txt -sigfile sig.bin >/dev/null 2>&1"

lf audit --verify --key k.pub
expect_rc "the log verifies with the key" 0
match_out "… saying what it verified" "^ok: 8 entries verified, 2 checkpoints, last signed at seq 8 by key $kid\$"
lf audit --verify
match_out "without a key it says signatures were not checked" 'signatures not checked'
lf audit --verify --key k.pub --checkpoint cp1.json
expect_rc "the log extends the first checkpoint kept outside" 0
match_out "… and says so" 'extends the outside checkpoint \(4 entries\)'
lf audit --verify --json --key k.pub
expect_json "--json: checkpoints" checkpoints 2
expect_json "--json: signatures checked" signatures_checked true

# ---- the tamper matrix ----
# 1. modify an entry, re-hash everything after it
cp "$J" t1; sed -i '3s/"trigger":"created"/"trigger":"forged"/' t1; rehash t1
verify_copy t1 t1 --key k.pub
expect_rc "modified and re-hashed: exit 8" 8
match_err "… the next checkpoint's root names it" 'seq 5: the first 4 entries do not make the Merkle root'
# 2. delete the tail: only an outside checkpoint shows it
head -n 6 "$J" >t2
verify_copy t2 t2 --key k.pub
expect_rc "a cut tail alone still verifies (nothing to compare with)" 0
verify_copy t2 t2 --key k.pub --checkpoint cp2.json
expect_rc "… against the checkpoint kept outside: exit 8" 8
match_err "… entries were cut off" 'the log ends at 6 entries, the outside checkpoint states 7'
# 3. delete the tail and re-sign with another key
head -n 6 "$J" >t3
run --policies "$POLICIES" --store file:t3 --signing-key "$PWD/other.key" audit checkpoint
verify_copy t3 t3 --key k.pub
expect_rc "cut and re-signed by another key: exit 8" 8
match_err "… names the wrong key" 'seq 7: checkpoint signed by key [0-9a-f]{16}, not by '"$kid"
# 4. an entry under a generation never announced
cp "$J" t4
sed -n '3p' "$J" | sed 's/"seq":3,/"seq":9,/; s/"policy_set":"[0-9a-f]*"/"policy_set":"'"$(printf x | openssl dgst -sha256 -r | cut -d' ' -f1)"'"/' >>t4
rehash t4
verify_copy t4 t4
expect_rc "an entry under an unannounced policy set: exit 8" 8
match_err "… names it" 'seq 9: decided under policy set [0-9a-f]{12}…, which no policy_loaded entry announced'
# 5. two entries swapped
{ sed -n '1,2p' "$J"; sed -n '4p' "$J"; sed -n '3p' "$J"; sed -n '5,$p' "$J"; } >t5
verify_copy t5 t5
expect_rc "two entries swapped: exit 8" 8
match_err "… the first out of place" 'seq 4: expected seq 3'
# 6. one byte of a checkpoint; then re-hashed
sed '5s/"tree_size":4/"tree_size":5/' "$J" >t6
verify_copy t6 t6 --key k.pub
expect_rc "a byte of a checkpoint changed: exit 8" 8
match_err "… a hash mismatch" 'seq 5: hash mismatch'
cp "$J" t7; sed -i '5s/"time":"\([^"]*\)"/"time":"2020-01-01T00:00:00.000000Z"/' t7; rehash t7
verify_copy t7 t7 --key k.pub
expect_rc "… changed and re-hashed: exit 8" 8
match_err "… its signature does not verify" "seq 5: the checkpoint's signature does not verify"

# ---- verification writes nothing ----
cp "$J" torn
printf '{"seq":10,"record_id":"loop-' >>torn
before=$(sha256sum torn | cut -d' ' -f1)
run --policies /nonexistent --store file:torn audit --verify --key k.pub
expect_rc "a torn tail: still ok (it is not part of the log)" 0
match_err "… reported" 'a torn last line \(28 bytes'
check "… and the journal is byte for byte what it was" \
    test "$(sha256sum torn | cut -d' ' -f1)" = "$before"
run --policies /nonexistent --store "$STORE" show "$a"
expect_rc "show needs no policy set" 0
run --policies /nonexistent --store "$STORE" list
expect_rc "list needs no policy set" 0
run --policies /nonexistent --store "$STORE" transition "$a" ci_pending t
expect_rc "… but a write does" 2
run --policies "$POLICIES" --store "file:$tmp/absent" list
check "a read of a journal that does not exist creates nothing" test ! -e "$tmp/absent"

# ---- inclusion proofs ----
cat >check_proof.py <<'EOF'
# An independent RFC 9162 2.1.3.2 inclusion check, on the proof's own
# entry bytes: the leaf hash is the entry's hash, SHA-256 of its line
# without the hash key; node = SHA-256(0x01 || l || r).
import hashlib, json, sys
p = json.load(sys.stdin)
h = lambda b: hashlib.sha256(b).digest()
line = p["entry"].encode()
tail = b',"hash":"' + json.loads(line)["hash"].encode() + b'"}'
if not line.endswith(tail) or h(line[:-len(tail)] + b"}").hex() != json.loads(line)["hash"]:
    sys.exit(1)
r = bytes.fromhex(json.loads(line)["hash"])
fn, sn = p["leaf_index"], p["tree_size"] - 1
for x in p["path"]:
    x = bytes.fromhex(x)
    if sn == 0: sys.exit(1)
    if fn & 1 or fn == sn:
        r = h(b"\1" + x + r)
        while not fn & 1 and fn: fn >>= 1; sn >>= 1
    else:
        r = h(b"\1" + r + x)
    fn >>= 1; sn >>= 1
sys.exit(0 if sn == 0 and r.hex() == p["root"] else 1)
EOF
if command -v python3 >/dev/null 2>&1; then
    for s in 1 2 3 4 5 6 7; do
        lf audit proof "$s"
        printf '%s\n' "$out" >proof.json
        check "the proof of entry $s verifies (python3, RFC 9162)" sh -c "python3 check_proof.py <proof.json"
    done
    sed 's/\\"trigger\\":\\"t\\"/\\"trigger\\":\\"u\\"/' proof.json >bad.json
    check "… and fails for another entry" sh -c "! python3 check_proof.py <bad.json"
else
    not_ok "python3 checks the proofs (install python3)"
fi
lf audit proof 99
expect_rc "a proof of an entry the log does not have: exit 3" 3

# ---- announced policy sets ----
lf audit
first=$(printf '%s\n' "$out" | head -1)
expect_match "the first entry announces the policy set" first "$first" '"kind":"policy_loaded","version":0,.*"trigger":"announce"'
expect_match "… naming every file's digest" first "$first" '"files":\[\{"path":"[^"]*","sha256":"[0-9a-f]{64}"\}'
n=$(audit_count)
lf transition "$b" pr_created t
expect_match "a writer with the same set announces nothing more" audit "$(audit_count)" "^$((n + 1))\$"
mkdir -p other/workflows && cp "$POLICIES"/workflows/*.lua other/workflows/
printf -- '-- another set\n' >>other/workflows/loopforge.lua
run --policies other --store "$STORE" transition "$b" ci_pending t
lf audit --after "$((n + 1))"
expect_match "a writer with another set announces it first" audit "$out" '"kind":"policy_loaded".*"trigger":"announce"'
lf audit --verify --key k.pub
expect_rc "… and the log still verifies" 0
# ---- the tamper matrix on Redis ----
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    redis-server --port 0 --unixsocket "$tmp/r.sock" --unixsocketperm 700 --save '' \
        --appendonly no --daemonize no --dir "$tmp" --logfile "$tmp/redis.log" &
    rpid=$!
    i=0
    until redis-cli -s "$tmp/r.sock" ping 2>/dev/null | grep -q PONG; do
        i=$((i + 1))
        [ $i -gt 2000 ] && break
    done
    R="unix://$tmp/r.sock?prefix=ev:"
    rl() { run --policies "$POLICIES" --store "$R" "$@"; }
    rcli() { redis-cli -s "$tmp/r.sock" "$@" >/dev/null; }
    rl create --ref ra; ra=$out
    rl transition "$ra" task_queued t
    rl --signing-key "$tmp/k.key" audit checkpoint
    printf '%s\n' "$out" >rcp.json
    rl transition "$ra" pr_created t
    rl transition "$ra" ci_pending t
    rl --signing-key "$tmp/k.key" audit checkpoint
    printf '%s\n' "$out" >rcp2.json
    rl audit --verify --key k.pub
    match_out "redis: the log verifies with the key" "^ok: 7 entries verified, 2 checkpoints, last signed at seq 7 by key $kid\$"
    rl audit
    printf '%s\n' "$out" >rgood
    # put_log FILE: the log becomes FILE's lines, whole (as the lists of 64
    # lines hold them: docs/redis.md), and the head its last
    put_log() {
        rcli DEL ev:log:0
        n=0
        while IFS= read -r l; do n=$((n + 1)); rcli RPUSH ev:log:$(((n - 1) / 64)) "$l"; done <"$1"
        h=$(tail -n 1 "$1" | sed 's/.*"hash":"\([0-9a-f]*\)"}$/\1/')
        rcli HSET ev:head seq "$n" hash "$h"
    }
    sed '3s/"trigger":"t"/"trigger":"u"/' rgood >r1
    put_log r1
    rl audit --verify --key k.pub
    expect_rc "redis: a byte changed: exit 8" 8
    match_err "redis: … hash mismatch at seq 3" 'seq 3: hash mismatch'
    rehash r1
    put_log r1
    rl audit --verify --key k.pub
    match_err "redis: modified and re-hashed: the checkpoint's root names it" \
        'seq 4: the first 3 entries do not make the Merkle root'
    head -n 5 rgood >r2
    put_log r2
    rl audit --verify --key k.pub --checkpoint rcp.json
    expect_rc "redis: a cut tail still extends the first checkpoint" 0
    rl audit --verify --key k.pub --checkpoint rcp2.json
    expect_rc "redis: … but not the second, kept outside: exit 8" 8
    match_err "redis: … entries were cut off" 'the log ends at 5 entries, the outside checkpoint states 6'
    head -n 5 rgood >r3
    put_log r3
    rl --signing-key "$tmp/other.key" audit checkpoint
    rl audit --verify --key k.pub
    match_err "redis: cut and re-signed by another key" 'seq 6: checkpoint signed by key [0-9a-f]{16}, not by '"$kid"
    { sed -n '1,2p' rgood; sed -n '4p' rgood; sed -n '3p' rgood; sed -n '5,$p' rgood; } >r5
    put_log r5
    rl audit --verify
    match_err "redis: two entries swapped" 'seq 4: expected seq 3'
    cp rgood r6
    sed -n '3p' rgood | sed 's/"seq":3,/"seq":8,/; s/"policy_set":"[0-9a-f]*"/"policy_set":"'"$(printf y | openssl dgst -sha256 -r | cut -d' ' -f1)"'"/' >>r6
    rehash r6
    put_log r6
    rl audit --verify
    match_err "redis: an entry under an unannounced policy set" 'seq 8: decided under policy set'
    kill "$rpid" 2>/dev/null
    wait "$rpid" 2>/dev/null
else
    ok "redis tamper matrix # SKIP redis-server is not installed"
fi

# ---- signed merge attestations (in-toto in DSSE) ----
lf create --ref https://github.com/o/r/issues/9 --repo o/r --auto-merge; m=$out
for st in task_queued pr_created ci_pending ci_passed merged; do lf transition "$m" "$st" t; done
lf attest "$m"
expect_rc "attest without a key: exit 2" 2
lf --signing-key "$tmp/k.key" audit checkpoint
lf --signing-key "$tmp/k.key" attest "$m"
expect_rc "attest with the key" 0
printf '%s\n' "$out" >att.json
expect_json "… one attestation per merge" 'attestations/#' 1
expect_json "… an in-toto envelope" attestations/1/payloadType application/vnd.in-toto+json
expect_json "… signed by the log's key" attestations/1/signatures/1/keyid "$kid"
check "… under 100 KB" test "$(wc -c <att.json)" -lt 102400
lf --signing-key "$tmp/k.key" attest "$m"
printf '%s\n' "$out" >att2.json
check "… the same bytes when asked again (made from the log)" cmp -s att.json att2.json
cat >dsse.py <<'EOF'
# DSSE v1 verified with python3-securesystemslib's Ed25519 key: the PAE
# is built here from the spec, the signature checked by securesystemslib.
import base64, json, subprocess, sys
from securesystemslib.signer import SSlibKey, Signature
env = json.load(open(sys.argv[1]))["attestations"][0]
if len(sys.argv) > 3:   # tamper: one byte of the statement
    p = bytearray(base64.b64decode(env["payload"])); p[10] ^= 1
    env["payload"] = base64.b64encode(bytes(p)).decode()
body = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)
der = subprocess.run(["openssl", "pkey", "-pubin", "-in", sys.argv[2], "-outform", "DER"],
                     capture_output=True, check=True).stdout
sig = env["signatures"][0]
key = SSlibKey(sig["keyid"], "ed25519", "ed25519", {"public": der[-32:].hex()})
key.verify_signature(Signature(sig["keyid"], base64.b64decode(sig["sig"]).hex()), pae)
st = json.loads(body)
assert st["_type"] == "https://in-toto.io/Statement/v1"
assert st["predicate"]["checkpoint"]["checkpoint"]["tree_size"] >= st["predicate"]["merge"]["seq"]
print(st["subject"][0]["name"])
EOF
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if "$PY" -c 'import securesystemslib.signer' 2>/dev/null; then
    check "python3-securesystemslib verifies the attestation with the public key" \
        sh -c "'$PY' dsse.py att.json k.pub >/dev/null"
    check "… and refuses it after one byte of the statement changed" \
        sh -c "! '$PY' dsse.py att.json k.pub tamper >/dev/null 2>&1"
else
    not_ok "python3-securesystemslib verifies the attestation (install python3-securesystemslib)"
fi
start_server --store "$STORE" --policies "$POLICIES" --signing-key "$tmp/k.key" ||
    not_ok "serve starts with the key"
req GET "/v1/records/$m/attestations"
expect_status "GET /v1/records/{id}/attestations: 200" 200
printf '%s\n' "$out" >att3.json
check "… the same attestation as the CLI's" cmp -s att.json att3.json
req GET "/v1/records/loop-0000000000000000/attestations"
expect_status "… of no such record: 404" 404
stop_server

# ---- evidence bundles ----
lf --signing-key "$tmp/k.key" evidence --record "$m" --out bundle.json
expect_rc "evidence --record writes a bundle" 0
match_err "… saying what is in it" 'evidence: [0-9]+ entries of 1 record\(s\), proven against the latest checkpoint'
run --policies /nonexistent --store "$STORE" evidence verify bundle.json --key k.pub
expect_rc "evidence verify checks it offline (no store, no policies)" 0
match_out "… every entry proven, the attestation and the policy files" \
    '^ok: 6 entries proven against the checkpoint of [0-9]+ entries signed by key '"$kid"', 0 after it \(not yet covered\); 1 attestations verified; [1-9][0-9]* policy files match'
# The key a bundle carries is the forger's as easily as ours: only the
# key the auditor has counts.
run --policies /nonexistent --store "$STORE" evidence verify bundle.json
expect_rc "evidence verify without --key: a usage error, exit 2" 2
match_err "… asking for the key, naming the bundle's own" \
    "needs --key PUBLIC_KEY.*the bundle's own key $kid proves nothing"
run --store "$STORE" evidence verify bundle.json --key /nonexistent/k.pub
expect_rc "… with a --key it cannot read: exit 8" 8
match_err "… saying so" 'no usable public key in --key: cannot read /nonexistent/k.pub'
sed 's/\\"trigger\\":\\"t\\"/\\"trigger\\":\\"x\\"/' bundle.json >bundle-entry.json
run --store "$STORE" evidence verify bundle-entry.json --key k.pub
expect_rc "a bundle with an entry changed: exit 8" 8
match_err "… names it" 'is not the one the checkpoint covers'
sed 's/return workflow/return  workflow/' bundle.json >bundle-policy.json
run --store "$STORE" evidence verify bundle-policy.json --key k.pub
expect_rc "a bundle with a policy file changed: exit 8" 8
match_err "… names it" 'policy file .* is not the one its set announced'
# A file's digest is the log's only through its announcement, a line the
# checkpoint covers: a file changed with its digest in the bundle, then
# with the announcement's digest too, is refused each time.
cat >forge.py <<'PY'
import hashlib, json, sys
b = json.load(open(sys.argv[1]))
pol = b["policies"][0]
f = next(f for f in pol["files"] if f.get("content"))
old, f["content"] = f["sha256"], f["content"] + "-- changed\n"
f["sha256"] = hashlib.sha256(f["content"].encode()).hexdigest()
if sys.argv[2] == "announcement":
    pol["announcement"] = pol["announcement"].replace(old, f["sha256"])
json.dump(b, open(sys.argv[3], "w"))
PY
python3 forge.py bundle.json file bundle-digest.json
run --store "$STORE" evidence verify bundle-digest.json --key k.pub
expect_rc "a bundle with a policy file and its digest changed: exit 8" 8
match_err "… names the file" 'policy file .* is not the one its set announced'
python3 forge.py bundle.json announcement bundle-ann.json
run --store "$STORE" evidence verify bundle-ann.json --key k.pub
expect_rc "… and with its announcement's digest changed too: exit 8" 8
match_err "… the announcement is not the log's" 'the announcement of policy set [0-9a-f]{64} is not one the checkpoint covers'
# An attestation is of a merge entry the bundle holds: one whose entry is
# left out (a genuine attestation, of something else) is refused.
python3 -c '
import json, sys
b = json.load(open("bundle.json"))
b["entries"] = [e for e in b["entries"] if "\"to_state\":\"merged\"" not in e["line"]]
json.dump(b, open("bundle-att.json", "w"))'
run --store "$STORE" evidence verify bundle-att.json --key k.pub
expect_rc "a bundle with an attestation of a merge it does not hold: exit 8" 8
match_err "… says so" 'an attestation is not of a merge entry of the bundle'
# A line the checkpoint covers comes with its proof: one without is not
# taken for a line after the checkpoint.
for what in entry announcement; do
    python3 -c '
import json, sys
b = json.load(open("bundle.json"))
if sys.argv[1] == "entry": b["entries"][0]["proof"] = None
else: b["policies"][0]["announcement_proof"] = None
json.dump(b, open("bundle-noproof.json", "w"))' "$what"
    run --store "$STORE" evidence verify bundle-noproof.json --key k.pub
    expect_rc "a bundle with an $what's proof left out: exit 8" 8
done
run --store "$STORE" evidence verify bundle.json --key other.pub
expect_rc "… or checked with another key: exit 8" 8
lf evidence --ref https://github.com/o/r/issues/9
expect_rc "evidence --ref" 0
expect_json "… the same record" record_id "$m"
lf evidence --since 2000-01-01T00:00:00.000000Z --until 2100-01-01T00:00:00.000000Z
expect_rc "evidence --since --until" 0
match_err "… every record's entries in the range" '^evidence: [0-9]+ entries of [3-9] record\(s\)'
# A range that ends before the first merge: the records in it are
# attested, but not within it -- no attestation goes in, and it verifies.
until=$(printf '%s\n' "$out" | python3 -c '
import json, sys
b = json.load(sys.stdin)
print(min(json.loads(e["line"])["timestamp"] for e in b["entries"]
          if json.loads(e["line"])["to_state"] == "merged"))')
lf --signing-key "$tmp/k.key" evidence --since 2000-01-01T00:00:00.000000Z --until "$until" --out range.json
run --policies /nonexistent --store "$STORE" evidence verify range.json --key k.pub
expect_rc "a range before a merge: its attestation left out, and the bundle verifies" 0
match_out "… no attestation" '; 0 attestations verified;'
lf evidence
expect_rc "evidence without a selection: exit 2" 2

# ---- serve signs what it appended when it stops ----
start_server --store "file:$tmp/served" --policies "$POLICIES" --signing-key "$tmp/k.key" ||
    not_ok "serve starts with a signing key"
req POST /v1/records '{"ref":"served-1"}'
req POST /v1/records '{"ref":"served-2"}'
stop_server TERM
check "serve exits 0" test "$STOP_RC" -eq 0
last=$(tail -n 1 "$tmp/served")
expect_match "its last entry is a checkpoint of everything before it" last "$last" \
    '"kind":"checkpoint","version":3,.*"tree_size":3'
run --policies "$POLICIES" --store "file:$tmp/served" audit --verify --key "$tmp/k.pub"
match_out "… which verifies with the public key" "^ok: 4 entries verified, 1 checkpoints, last signed at seq 4 by key $kid\$"
done_testing
