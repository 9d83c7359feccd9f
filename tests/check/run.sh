#!/usr/bin/env bash
# tests/check/run.sh — `dkimpress check`: keys against their DNS records.
#
#  classes   one configuration whose keys produce every verdict (ok,
#            missing, mismatch, revoked, testing, weak, syntax, temperror,
#            keyerror, skipped; '%' KeyTable entries expanded through the
#            SigningTable; a record holding a bare RSAPublicKey of the right
#            key is ok) from a dns-file: each line, the summary, exit 1,
#            the publish-before-use warning, --json parsed by python3, no
#            key material (private or p=) in any output; exit 0 when all
#            are ok, 75 when the only problems are temporary, 66 and 78 for
#            a missing dns-file or configuration.
#  resolver  the same kind of records served by a little DNS server
#            (tests/check/dns_server.py) on 127.0.0.1:53 inside a private
#            network and mount namespace (unshare -mn, /etc/resolv.conf
#            bind-mounted for that namespace only): ok, missing (NXDOMAIN),
#            temperror (SERVFAIL and a timeout), syntax (two TXT records)
#            through res_nquery. Skipped, and said, where unshare is not
#            allowed.
#  scale     CHECK_N (default 100000; 20000 under sanitizers, see tests/run)
#            KeyTable entries over as many domains, pointing at 20 key
#            files: all ok from a dns-file, and the time it took printed;
#            then the same table through the namespace resolver.
# Ends with "check: N passed, N failed". Env: DKIMPRESS, CHECK_N.
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
N=${CHECK_N:-100000}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-check.XXXXXX")
trap 'rm -rf "$W"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
D=$DKIMPRESS
K=$W/keys
mkdir -p "$K"

# keygen NAME DOMAIN SELECTOR TYPE [BITS]: key K/SELECTOR.private, its
# record line appended to W/all.txt
keygen() {
	local dom=$2 sel=$3 type=$4 bits=${5:-}
	"$D" keygen --domain "$dom" --selector "$sel" --type "$type" \
		${bits:+--bits "$bits"} --out "$K" >>"$W/all.txt" 2>/dev/null
}
rec() { grep -F "$1._domainkey.$2	" "$W/all.txt" | cut -f2-; }

echo "== keys and records for every class"
: >"$W/all.txt"
keygen esp esp.example e1 rsa
keygen ok ok.example sok ed25519
keygen miss miss.example smiss ed25519
keygen mism mism.example smism ed25519
keygen other other.example sother ed25519
keygen rev rev.example srev ed25519
keygen test test.example stest ed25519
keygen weak weak.example sweak rsa 1024
keygen syn syn.example ssyn ed25519
keygen temp temp.example stemp ed25519
keygen kerr kerr.example skerr ed25519
keygen pct pct.example spct ed25519
chmod 644 "$K/skerr.private"
bare=$(openssl pkey -in "$K/e1.private" -pubout -outform DER 2>/dev/null |
	openssl rsa -pubin -inform DER -RSAPublicKey_out -outform DER 2>/dev/null | base64 -w0)
{
	printf 'e1._domainkey.esp.example\t%s\n' "$(rec e1 esp.example)"
	printf 'e1bare._domainkey.esp.example\tv=DKIM1; k=rsa; p=%s\n' "$bare"
	printf 'sok._domainkey.ok.example\t%s\n' "$(rec sok ok.example)"
	# miss: nothing published
	printf 'smism._domainkey.mism.example\t%s\n' "$(rec sother other.example)"
	printf 'srev._domainkey.rev.example\tv=DKIM1; k=ed25519; p=\n'
	printf 'stest._domainkey.test.example\t%s; t=y\n' "$(rec stest test.example)"
	printf 'sweak._domainkey.weak.example\t%s\n' "$(rec sweak weak.example)"
	printf 'ssyn._domainkey.syn.example\tv=spf1 include:_spf.syn.example -all\n'
	printf 'stemp._domainkey.temp.example\tTEMPERROR\n'
	printf 'skerr._domainkey.kerr.example\t%s\n' "$(rec skerr kerr.example)"
	printf 'spct._domainkey.pct.example\t%s\n' "$(rec spct pct.example)"
} >"$W/dns.txt"
cat >"$W/KeyTable" <<EOF
kok     ok.example:sok:$K/sok.private
kbare   esp.example:e1bare:$K/e1.private
kmiss   miss.example:smiss:$K/smiss.private
kmism   mism.example:smism:$K/smism.private
krev    rev.example:srev:$K/srev.private
ktest   test.example:stest:$K/stest.private
kweak   weak.example:sweak:$K/sweak.private
ksyn    syn.example:ssyn:$K/ssyn.private
ktemp   temp.example:stemp:$K/stemp.private
kkerr   kerr.example:skerr:$K/skerr.private
kpct    %:spct:$K/spct.private
kwild   %:spct:$K/spct.private
EOF
cat >"$W/SigningTable" <<EOF
*@ok.example kok
*@pct.example kpct
*@*.wild.example kwild
EOF
: >"$W/SigningTable.none"
conf() {	# conf FILE KEYTABLE [SIGNINGTABLE]
	{
		echo "queue_dir = $W/q"
		echo "esp_key = esp.example:e1:$K/e1.private"
		echo "key_table = $2"
		echo "signing_table = refile:${3:-$W/SigningTable.none}"
	} >"$1"
}
conf "$W/all.conf" "$W/KeyTable" "$W/SigningTable"

echo "== every class from a dns-file"
rc=0
"$D" check -c "$W/all.conf" --dns-file "$W/dns.txt" >"$W/out" 2>"$W/err" || rc=$?
cat "$W/out"
line_is() {	# line_is VERDICT NAME QNAME
	grep -qE "^$1 +$2 $3: " "$W/out"
}
check 'line_is ok esp_key e1._domainkey.esp.example' "ok: the ESP key matches its record"
check 'line_is ok kok sok._domainkey.ok.example' "ok: an Ed25519 key matches its record"
check 'line_is ok kbare e1bare._domainkey.esp.example' "ok: a record holding a bare RSAPublicKey of the same key"
check 'line_is ok "kpct/%" spct._domainkey.pct.example' "ok: a '%' entry checked at the domain the SigningTable routes to it"
check 'line_is missing kmiss smiss._domainkey.miss.example && grep -E "^missing +kmiss " "$W/out" | grep -q "do not switch the KeyTable to this key yet"' \
	"missing: no record, and the line says not to switch to the key yet"
check 'line_is mismatch kmism smism._domainkey.mism.example' "mismatch: the record holds another key"
check 'line_is revoked krev srev._domainkey.rev.example' "revoked: empty p="
check 'line_is testing ktest stest._domainkey.test.example' "testing: matching key with t=y"
check 'line_is weak kweak sweak._domainkey.weak.example && grep -E "^weak +kweak" "$W/out" | grep -q "1024 bits"' \
	"weak: RSA-1024 (matching record), the size named"
check 'line_is syntax ksyn ssyn._domainkey.syn.example' "syntax: an SPF record where the key record should be"
check 'line_is temperror ktemp stemp._domainkey.temp.example' "temperror: a failing lookup (TEMPERROR in the dns-file)"
check 'line_is keyerror kkerr skerr._domainkey.kerr.example && grep -E "^keyerror" "$W/out" | grep -q "mode 0644"' \
	"keyerror: a key file others can read is refused as run refuses it"
check 'grep -qE "^skipped +kwild/% " "$W/out"' "skipped: a '%' entry the SigningTable reaches only through wildcards"
want="13 keys: 4 ok, 1 missing, 1 mismatch, 1 revoked, 1 testing, 1 weak, 1 syntax, 1 temperror, 1 keyerror, 1 skipped"
check 'tail -n 1 "$W/out" | grep -qF "$want"' "summary: $want" "$(tail -n 1 "$W/out")"
check '[ "$rc" = 1 ]' "exit 1 when a key has a problem" "exit $rc"
check 'grep -q "not published in DNS yet: do not let the KeyTable sign" "$W/err"' \
	"a warning on stderr: publish before use"
# no key material anywhere: no PEM line of any private key, no p= value
: >"$W/secrets"
for f in "$K"/*.private; do grep -v -- '-----' "$f" >>"$W/secrets"; done
grep -oE 'p=[A-Za-z0-9+/=]{40,}' "$W/all.txt" | cut -c3- >>"$W/secrets"
echo "$bare" >>"$W/secrets"
"$D" check -c "$W/all.conf" --dns-file "$W/dns.txt" --json >"$W/json" 2>>"$W/err"
jrc=$?
check '! grep -qFf "$W/secrets" "$W/out" "$W/err" "$W/json"' \
	"no private key line and no public key (p=) in the output ($(wc -l <"$W/secrets") strings checked)"
check '[ "$jrc" = 1 ]' "--json: exit 1 as well" "exit $jrc"
if $PY - "$W/json" >"$W/json.chk" 2>&1 <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
want = {"esp_key": "ok", "kok": "ok", "kbare": "ok", "kpct/%": "ok",
        "kmiss": "missing", "kmism": "mismatch", "krev": "revoked",
        "ktest": "testing", "kweak": "weak", "ksyn": "syntax",
        "ktemp": "temperror", "kkerr": "keyerror", "kwild/%": "skipped"}
got = {k["name"]: k["result"] for k in doc["keys"]}
s = doc["summary"]
errs = []
if got != want:
    errs.append("results %s" % {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v})
if s["keys"] != 13 or s["ok"] != 4 or any(s[c] != 1 for c in
        ("missing", "mismatch", "revoked", "testing", "weak", "syntax", "temperror", "keyerror", "skipped")):
    errs.append("summary %s" % s)
for k in doc["keys"]:
    if set(k) != {"name", "domain", "selector", "key_file", "result", "reason"}:
        errs.append("fields %s" % sorted(k))
        break
print("; ".join(errs) or "json ok: %d keys" % len(doc["keys"]))
sys.exit(1 if errs else 0)
PY
then ok "--json: one document, python3 parses it, results and summary as the lines ($(cat "$W/json.chk"))"
else bad "--json: $(cat "$W/json.chk")"; fi

echo "== exit codes"
printf 'kok ok.example:sok:%s\n' "$K/sok.private" >"$W/KeyTable.ok"
conf "$W/ok.conf" "$W/KeyTable.ok"
"$D" check -c "$W/ok.conf" --dns-file "$W/dns.txt" >"$W/ok.out" 2>&1
rc=$?
check '[ "$rc" = 0 ] && tail -n 1 "$W/ok.out" | grep -qF "2 keys: 2 ok, 0 missing"' "exit 0 when every key is ok" "exit $rc: $(tail -n 1 "$W/ok.out")"
printf 'kok ok.example:sok:%s\nktemp temp.example:stemp:%s\n' "$K/sok.private" "$K/stemp.private" >"$W/KeyTable.temp"
conf "$W/temp.conf" "$W/KeyTable.temp"
"$D" check -c "$W/temp.conf" --dns-file "$W/dns.txt" >"$W/temp.out" 2>&1
rc=$?
check '[ "$rc" = 75 ]' "exit 75 when the only problems are temporary" "exit $rc"
"$D" check -c "$W/ok.conf" --dns-file "$W/nonexistent" >/dev/null 2>&1
rc=$?
check '[ "$rc" = 66 ]' "exit 66 for a missing dns-file" "exit $rc"
"$D" check -c "$W/nonexistent.conf" --dns-file "$W/dns.txt" >/dev/null 2>&1
rc=$?
check '[ "$rc" = 66 ]' "exit 66 for a missing configuration" "exit $rc"
printf 'broken line\n' >"$W/KeyTable.bad"
conf "$W/bad.conf" "$W/KeyTable.bad"
"$D" check -c "$W/bad.conf" --dns-file "$W/dns.txt" >/dev/null 2>&1
rc=$?
check '[ "$rc" = 78 ]' "exit 78 for a malformed KeyTable" "exit $rc"
"$D" check --dns-file "$W/dns.txt" >/dev/null 2>&1
rc=$?
check '[ "$rc" = 64 ]' "exit 64 without -c" "exit $rc"

# ------------------------------------------------------------ resolver
# nsrun SCRIPT: run SCRIPT (sh) in a private network + mount namespace
# where dns_server.py answers on 127.0.0.1:53 from W/zone and
# /etc/resolv.conf points at it; 0 or the script's status, 200 if the
# namespace cannot be made.
printf 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n' >"$W/resolv.conf"
nsrun() {
	unshare -mn sh -c '
		ip link set lo up || exit 200
		mount --bind "$1/resolv.conf" /etc/resolv.conf || exit 200
		'"$PY"' "$2/dns_server.py" "$1/zone" 127.0.0.1 53 "$1/ready" 2>"$1/server.log" &
		spid=$!
		i=0; while [ ! -e "$1/ready" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		[ -e "$1/ready" ] || exit 200
		sh -c "$3"; rc=$?
		kill $spid; rm -f "$1/ready"
		exit $rc' nsrun "$W" "$HERE" "$1"
}
echo "== through the system resolver (res_nquery, private namespace)"
{
	printf 'e1._domainkey.esp.example\t%s\n' "$(rec e1 esp.example)"
	printf 'sok._domainkey.ok.example\t%s\n' "$(rec sok ok.example)"
	printf 'stemp._domainkey.temp.example\tSERVFAIL\n'
	printf 'stest._domainkey.test.example\tTIMEOUT\n'
	printf 'ssyn._domainkey.syn.example\tTWICE:%s\n' "$(rec ssyn syn.example)"
	printf 'srev._domainkey.rev.example\tv=DKIM1; k=ed25519; p=\n'
} >"$W/zone"
cat >"$W/KeyTable.res" <<EOF
kok     ok.example:sok:$K/sok.private
kmiss   miss.example:smiss:$K/smiss.private
ktemp   temp.example:stemp:$K/stemp.private
ktout   test.example:stest:$K/stest.private
ksyn    syn.example:ssyn:$K/ssyn.private
krev    rev.example:srev:$K/srev.private
EOF
conf "$W/res.conf" "$W/KeyTable.res"
nsrun "\"$D\" check -c \"$W/res.conf\" --timeout 1 >\"$W/res.out\" 2>\"$W/res.err\"; echo \$? >\"$W/res.rc\""
nrc=$?
resolver=1
if [ "$nrc" = 200 ] || [ ! -s "$W/res.rc" ]; then
	echo "SKIP resolver part: cannot make a private network/mount namespace here (unshare -mn, exit $nrc)"
	resolver=0
else
	cat "$W/res.out"
	out=$W/res.out
	check 'grep -qE "^ok +esp_key " "$out" && grep -qE "^ok +kok " "$out"' "resolver: ok for published matching keys"
	check 'grep -qE "^missing +kmiss .*NXDOMAIN" "$out"' "resolver: missing on NXDOMAIN"
	check 'grep -qE "^temperror +ktemp .*(SERVFAIL|timeout)" "$out"' "resolver: temperror on SERVFAIL"
	check 'grep -qE "^temperror +ktout " "$out"' "resolver: temperror on a server that never answers (--timeout 1)"
	check 'grep -qE "^syntax +ksyn .*2 TXT records" "$out"' "resolver: syntax for two TXT records at one name"
	check 'grep -qE "^revoked +krev " "$out"' "resolver: revoked for p="
	check 'tail -n 1 "$out" | grep -qF "7 keys: 2 ok, 1 missing, 0 mismatch, 1 revoked, 0 testing, 0 weak, 1 syntax, 2 temperror" && [ "$(cat "$W/res.rc")" = 1 ]' \
		"resolver: summary and exit 1" "$(tail -n 1 "$out"), exit $(cat "$W/res.rc")"
fi

# ---------------------------------------------------------------- scale
echo "== $N KeyTable entries over $N domains, 20 key files"
for i in $(seq 0 19); do
	"$D" keygen --domain big.example --selector "b$i" --type ed25519 --out "$K" >>"$W/big.keys" 2>/dev/null
done
$PY - "$W" "$K" "$N" <<'PY'
import sys
w, k, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
recs = [l.rstrip("\n").split("\t", 1)[1] for l in open(w + "/big.keys")]
with open(w + "/KeyTable.big", "w") as kt, open(w + "/dns.big", "w") as dns, \
        open(w + "/zone.big", "w") as zone:
    for i in range(n):
        j = i % 20
        kt.write("k%d d%d.example:b%d:%s/b%d.private\n" % (i, i, j, k, j))
        dns.write("b%d._domainkey.d%d.example\t%s\n" % (j, i, recs[j]))
    dns.write("b0._domainkey.big.example\t%s\n" % recs[0])
PY
printf 'e1._domainkey.esp.example\t%s\n' "$(rec e1 esp.example)" >>"$W/dns.big"
conf "$W/big.conf" "$W/KeyTable.big"
t0=$(date +%s.%N)
"$D" check -c "$W/big.conf" --dns-file "$W/dns.big" >"$W/big.out" 2>&1
rc=$?
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
tail -n 1 "$W/big.out"
check '[ "$rc" = 0 ] && tail -n 1 "$W/big.out" | grep -qF "$((N + 1)) keys: $((N + 1)) ok, 0 missing"' \
	"scale: $((N + 1)) keys all ok from a $((N + 1))-line dns-file in $secs s (wall, whole process)" \
	"exit $rc: $(tail -n 1 "$W/big.out")"
check '[ "$(grep -c "^ok " "$W/big.out")" = "$((N + 1))" ]' "scale: one line per key"
if [ "$resolver" = 1 ]; then
	cp "$W/dns.big" "$W/zone"
	t0=$(date +%s.%N)
	nsrun "\"$D\" check -c \"$W/big.conf\" --timeout 2 >\"$W/bigr.out\" 2>&1; echo \$? >\"$W/bigr.rc\""
	t1=$(date +%s.%N)
	secs=$(echo "$t1 - $t0" | bc)
	tail -n 1 "$W/bigr.out"
	check '[ "$(cat "$W/bigr.rc")" = 0 ] && tail -n 1 "$W/bigr.out" | grep -qF "$((N + 1)) keys: $((N + 1)) ok"' \
		"scale: $((N + 1)) keys all ok through res_nquery and a local (Python, one thread) DNS server in $secs s wall (with the server's start)" \
		"exit $(cat "$W/bigr.rc"): $(tail -n 1 "$W/bigr.out")"
fi

echo "check: $pass passed, $fail failed"
[ "$fail" = 0 ]
