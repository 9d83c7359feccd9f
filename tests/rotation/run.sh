#!/usr/bin/env bash
# tests/rotation/run.sh — key rotation under load, as docs/operations.md
# ("Rotating a key") tells an operator to do it.
#
# `dkimpress run` (watch mode, not --once) signs while a producer keeps
# handing messages to the queue with `dkimpress enqueue`. Mid-run, for the
# customer domain (RSA-2048, KeyTable) and for the ESP key (Ed25519,
# esp_key): new selectors made with `dkimpress keygen` (the customer's
# from the scheme c%Y%m, as docs/operations.md does it: c202611, then
# c202612); `check` on the new
# configuration says "missing" (and exits 1) while the records are not
# published, "ok" (exit 0) once they are; then the KeyTable and esp_key
# are switched and the engine gets SIGHUP. Asserted:
#   - no message failed or deferred: failed/ empty, the summary and
#     --stats say 0 failed, 0 deferred; every message enqueued was
#     published once (out/new count = produced count);
#   - every output verifies with dkimpy against the record of the selector
#     its signatures name (both old and new records published);
#   - both selectors appear, for the customer and for the ESP: the
#     messages published before the switch carry the old ones, every
#     message enqueued after the engine logged the reload the new ones;
#   - after the run, the old record revoked (p= empty): check on the old
#     configuration says "revoked".
# Ends with "rotation: N passed, N failed". Env: DKIMPRESS, ROTATION_N
# (messages per phase, default 300; 100 under sanitizers, see tests/run).
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
N=${ROTATION_N:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-rotation.XXXXXX")
RPID= PPID_=
cleanup() {
	[ -n "$PPID_" ] && kill "$PPID_" 2>/dev/null
	[ -n "$RPID" ] && kill -TERM "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
D=$DKIMPRESS
K=$W/keys
Q=$W/q
mkdir -p "$K" "$Q/in/tmp" "$Q/in/new"
if ! $PY -c 'import dkim' 2>/dev/null; then
	echo "rotation: dkimpy (python3-dkim) is missing: apt-get install python3-dkim"
	exit 77
fi

# waitfor SECONDS CMD: poll CMD every 0.1 s
waitfor() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		eval "$1" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
nout() { find "$Q/out/new" -maxdepth 1 -type f 2>/dev/null | wc -l; }

echo "== old keys, published; the engine starts"
"$D" keygen --domain cust.example --selector 'c%Y%m' --time 1794700800 --out "$K" >"$W/dns.txt" 2>/dev/null
"$D" keygen --domain esp.example --selector e1 --type ed25519 --out "$K" >>"$W/dns.txt" 2>/dev/null
echo "kcust cust.example:c202611:$K/c202611.private" >"$W/KeyTable"
echo "*@cust.example kcust" >"$W/SigningTable"
mkconf() {	# mkconf FILE ESPSEL KEYTABLE
	{
		echo "queue_dir = $Q"
		echo "esp_key = esp.example:$2:$K/$2.private"
		echo "key_table = $3"
		echo "signing_table = refile:$W/SigningTable"
		echo "missing_key = fail"	# a customer message without its key fails: we would see it
		echo "threads = 2"
	} >"$1"
}
mkconf "$W/dkimpress.conf" e1 "$W/KeyTable"
"$D" check -c "$W/dkimpress.conf" --dns-file "$W/dns.txt" >"$W/check0" 2>&1
rc=$?
check '[ "$rc" = 0 ] && tail -n 1 "$W/check0" | grep -qF "2 keys: 2 ok"' "check: the old keys are published (2 keys: 2 ok)" "$(tail -n 1 "$W/check0")"

"$D" run -c "$W/dkimpress.conf" --stats "$W/stats.json" >"$W/run.out" 2>"$W/run.log" &
RPID=$!

# the producer: numbered messages, one enqueue each, until told to stop;
# W/produced holds the count so far (written after each enqueue returned)
cat >"$W/producer.sh" <<'EOF'
D=$1 W=$2 i=0
while [ ! -e "$W/stop" ]; do
	i=$((i + 1))
	printf 'From: User %d <user%d@cust.example>\nTo: rcpt@example.net\nSubject: rotation %d\nMessage-ID: <rot%d@cust.example>\n\nmessage %d of the rotation test\n' \
		"$i" "$i" "$i" "$i" "$i" >"$W/msg"
	if ! "$D" enqueue -c "$W/dkimpress.conf" "$W/msg" >>"$W/ids" 2>>"$W/enqueue.err"; then
		echo "enqueue $i failed" >>"$W/enqueue.err"
		break
	fi
	echo "$i" >"$W/produced.tmp" && mv "$W/produced.tmp" "$W/produced"
done
EOF
sh "$W/producer.sh" "$D" "$W" &
PPID_=$!
check 'waitfor 60 "[ \$(nout) -ge $N ]"' "phase 1: the engine signs while the producer enqueues ($N published)" "$(nout) published"
# what was published before the switch: the old selectors must sign it
ls "$Q/out/new" >"$W/before"

echo "== new selectors: keygen, check says missing, publish, check says ok"
"$D" keygen --domain cust.example --selector 'c%Y%m' --time 1797292800 --out "$K" >"$W/new.rec" 2>/dev/null
"$D" keygen --domain esp.example --selector e2 --type ed25519 --out "$K" >>"$W/new.rec" 2>/dev/null
echo "kcust cust.example:c202612:$K/c202612.private" >"$W/KeyTable.new"
mkconf "$W/dkimpress.conf.new" e2 "$W/KeyTable.new"
"$D" check -c "$W/dkimpress.conf.new" --dns-file "$W/dns.txt" >"$W/check1" 2>"$W/check1.err"
rc=$?
cat "$W/check1"
check '[ "$rc" = 1 ] && grep -qE "^missing +esp_key e2._domainkey.esp.example: .*do not switch" "$W/check1" && grep -qE "^missing +kcust c202612._domainkey.cust.example" "$W/check1"' \
	"check before publishing: missing for both new keys, exit 1, 'do not switch' said" "exit $rc"
cat "$W/new.rec" >>"$W/dns.txt"	# publish
"$D" check -c "$W/dkimpress.conf.new" --dns-file "$W/dns.txt" >"$W/check2" 2>&1
rc=$?
cat "$W/check2"
check '[ "$rc" = 0 ] && tail -n 1 "$W/check2" | grep -qF "2 keys: 2 ok"' "check after publishing: ok for both, exit 0" "exit $rc"

echo "== switch: new KeyTable and esp_key, SIGHUP"
mv "$W/KeyTable.new" "$W/KeyTable.c202612"
mkconf "$W/dkimpress.conf.tmp" e2 "$W/KeyTable.c202612"
cp "$W/dkimpress.conf" "$W/dkimpress.conf.old"
mv "$W/dkimpress.conf.tmp" "$W/dkimpress.conf"
kill -HUP "$RPID"
check 'waitfor 20 "grep -q reloaded \"$W/run.log\""' "the engine reloads on SIGHUP" "$(tail -n 3 "$W/run.log")"
mark=$(cat "$W/produced")
check 'waitfor 90 "[ \$(cat \"$W/produced\") -ge $((mark + N)) ]"' \
	"phase 2: $N more enqueued after the reload (from message $((mark + 1)))" "produced $(cat "$W/produced")"
touch "$W/stop"
wait "$PPID_"
PPID_=
total=$(cat "$W/produced")
check 'waitfor 60 "[ \$(nout) -ge $total ] && [ -z \"\$(ls -A \"$Q/in/new\")\" ]"' \
	"every message enqueued is published ($total)" "$(nout) in out/new, $(ls "$Q/in/new" | wc -l) in in/new"
kill -TERM "$RPID"
wait "$RPID"
rc=$?
RPID=
cat "$W/run.out"
check '[ "$rc" = 0 ]' "run exits 0 on SIGTERM" "exit $rc"
check 'grep -qE "signed $total, esp-only 0, deferred 0, failed 0 " "$W/run.out"' \
	"summary: signed $total, deferred 0, failed 0" "$(cat "$W/run.out")"
check '$PY -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s[\"failed\"] == 0 and s[\"deferred\"] == 0 and s[\"signed\"] == $total))" "$W/stats.json"' \
	"--stats: failed 0, deferred 0, signed $total" "$(cat "$W/stats.json" 2>/dev/null)"
check '[ -z "$(ls -A "$Q/failed" 2>/dev/null)" ]' "failed/ is empty"
check '[ ! -s "$W/enqueue.err" ]' "no enqueue failed" "$(head -3 "$W/enqueue.err")"
check '[ "$(nout)" = "$total" ]' "out/new holds exactly $total messages (none twice)" "$(nout)"

echo "== every output verifies against the record its s= names"
find "$Q/out/new" -maxdepth 1 -type f >"$W/list"
if $PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 --list "$W/list" >"$W/dkimpy" 2>&1; then
	ok "dkimpy verifies both signatures of all $total ($(tail -1 "$W/dkimpy"))"
else
	bad "dkimpy: $(tail -1 "$W/dkimpy")"
	grep -m5 "	fail	" "$W/dkimpy"
fi
# selectors per message, against when it was published/enqueued
if $PY - "$Q/out/new" "$W/before" "$mark" >"$W/sel" 2>&1 <<'PY'
import os, re, sys
out, before_list, mark = sys.argv[1], sys.argv[2], int(sys.argv[3])
before = set(l.strip() for l in open(before_list) if l.strip())
count = {}
errs = []
for name in os.listdir(out):
    data = open(os.path.join(out, name), "rb").read()
    head = data.split(b"\r\n\r\n", 1)[0]
    sigs = re.findall(rb"DKIM-Signature:(.*?)(?=\r\n[^ \t])", head, re.S)
    pairs = sorted((re.search(rb"\bd=([^;\s]+)", s).group(1).decode(),
                    re.search(rb"\bs=([^;\s]+)", s).group(1).decode()) for s in sigs)
    for p in pairs:
        count[p] = count.get(p, 0) + 1
    seq = int(re.search(rb"Subject: rotation (\d+)", data).group(1))
    sels = dict(pairs)
    if name in before and sels != {"cust.example": "c202611", "esp.example": "e1"}:
        errs.append("%s (published before the switch): %s" % (name, sels))
    if seq > mark and sels != {"cust.example": "c202612", "esp.example": "e2"}:
        errs.append("message %d (enqueued after the reload): %s" % (seq, sels))
print("selectors:", ", ".join("%s s=%s: %d" % (d, s, n) for (d, s), n in sorted(count.items())))
for e in errs[:5]:
    print(e)
ok = not errs and all(count.get(p, 0) > 0 for p in
                      [("cust.example", "c202611"), ("cust.example", "c202612"),
                       ("esp.example", "e1"), ("esp.example", "e2")])
sys.exit(0 if ok else 1)
PY
then ok "old selectors before the switch, new ones after the reload, both used ($(head -1 "$W/sel"))"
else bad "selectors: $(cat "$W/sel")"; fi

echo "== after the longest delivery time: revoke the old records"
sed -e 's/^\(c202611\._domainkey\.cust\.example\t\).*/\1v=DKIM1; k=rsa; p=/' \
    -e 's/^\(e1\._domainkey\.esp\.example\t\).*/\1v=DKIM1; k=ed25519; p=/' "$W/dns.txt" >"$W/dns.revoked"
"$D" check -c "$W/dkimpress.conf.old" --dns-file "$W/dns.revoked" >"$W/check3" 2>&1
rc=$?
"$D" check -c "$W/dkimpress.conf" --dns-file "$W/dns.revoked" >"$W/check4" 2>&1
rc4=$?
check '[ "$rc" = 1 ] && tail -n 1 "$W/check3" | grep -qF "2 keys: 0 ok, 0 missing, 0 mismatch, 2 revoked" && [ "$rc4" = 0 ]' \
	"check: the old keys revoked, the new ones still ok" "$(tail -n 1 "$W/check3"), new: exit $rc4"

echo "rotation: $pass passed, $fail failed"
[ "$fail" = 0 ]
