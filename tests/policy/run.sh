#!/usr/bin/env bash
# tests/policy/run.sh — signing policy (issue 17): several signatures per
# message, per-key settings, the ESP key chosen by sending stream, through
# the engine (`dkimpress run --once`).
#
# Keys: customer RSA-2048 + Ed25519 for cust.example (one SigningTable
# entry naming both: "cust.example c-rsa,c-ed"), RSA for other.example,
# Ed25519 + RSA '%' KeyTable entries for third.example, none for
# nokey.example (esp-only); two esp_key lines (RSA + Ed25519) and a
# stream table whose "transactional" stream signs with two other ESP keys
# (RSA + Ed25519). key_policy gives c-rsa simple/simple, its own h=, x= and
# i=; c-ed relaxed/simple and i=@%; the ESP RSA key simple/relaxed and its
# own h=; p-ed i=bounce@% and simple/simple. So messages carry 2, 3 and
# 4 signatures with mixed canonicalizations and header lists.
#
# For each of: rsa_backend = openssl, rsa_backend = ifma (the 8-lane path;
# skipped with a note on a CPU without AVX-512 IFMA), each with esp_stream
# = header:X-ESP-Stream, and esp_stream = sender (openssl):
#   - every message is signed (the summary), the queues end empty;
#   - policy_queue.py check: each file's signatures are exactly the
#     expected d=/s= list, customer ones on top, each with its key's c=,
#     h=, x=, i=; the stream field is removed; envelope lines on top;
#   - dkimpy, Mail::DKIM (RSA signatures only), libopendkim and mailauth
#     pass every signature of every file (envelope lines stripped), the
#     files grouped by their signature count;
#   - with ifma: the 8-lane path made every RSA-2048 signature of the run
#     (ifma_lanes in --stats = the RSA signatures counted in the files);
#     with openssl: none;
#   - (once) `dkimpress check` finds every key in DNS: both esp_key
#     lines, the stream table's, each key of a SigningTable list.
# Ends with "policy: N passed, N failed".
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
ODKIM_VERIFY=${ODKIM_VERIFY:-$BUILD/tests/odkim_verify}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
case $ODKIM_VERIFY in /*) ;; *) ODKIM_VERIFY=$PWD/$ODKIM_VERIFY ;; esac
D=$DKIMPRESS
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
PERL=/usr/bin/perl
N=${POLICY_N:-96}
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-policy.XXXXXX")
trap 'rm -rf "$W"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
# check COND DESC [DETAIL]: COND and DETAIL (on failure) are evaluated
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $(eval "$3")}"; fi; }

MAILAUTH_VERSION=4.13.3
MAILAUTH_DIR=${MAILAUTH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dkimpress/mailauth-$MAILAUTH_VERSION}
export MAILAUTH_DIR
HAVE_MAILAUTH=0
if command -v node >/dev/null 2>&1 && MAILAUTH_DIR=$MAILAUTH_DIR node -e '
	require(require.resolve("mailauth/lib/dkim/verify", { paths: [process.env.MAILAUTH_DIR] }));' 2>/dev/null; then
	HAVE_MAILAUTH=1
else
	echo "note: mailauth not installed in $MAILAUTH_DIR (tests/interop/run.sh installs it); its checks are skipped"
fi
[ -x "$ODKIM_VERIFY" ] || { echo "note: building odkim_verify"; cc -O2 -o "$W/odkim_verify" "$TOP/tests/interop/odkim_verify.c" -lopendkim && ODKIM_VERIFY=$W/odkim_verify; }

echo "== keys"
K=$W/keys
mkdir -p "$K"
key() {	# key DOMAIN SELECTOR TYPE
	"$D" keygen --domain "$1" --selector "$2" --type "$3" --out "$K" >>"$W/dns.txt" 2>/dev/null
}
key cust.example c-rsa rsa; key cust.example c-ed ed25519
key other.example o-rsa rsa
key third.example p-ed ed25519; key third.example p-rsa rsa
key esp.example e-rsa rsa; key esp.example e-ed ed25519
key esp.example t-rsa rsa; key esp.example t-ed ed25519
check '[ "$(wc -l <"$W/dns.txt")" = 9 ]' "9 keys made"
cat >"$W/KeyTable" <<KT
c-rsa cust.example:c-rsa:$K/c-rsa.private
c-ed  cust.example:c-ed:$K/c-ed.private
o-rsa other.example:o-rsa:$K/o-rsa.private
p-ed  %:p-ed:$K/p-ed.private
p-rsa %:p-rsa:$K/p-rsa.private
KT
cat >"$W/SigningTable" <<ST
cust.example  c-rsa,c-ed
other.example o-rsa
third.example p-ed,p-rsa
ST
cat >"$W/streams" <<SS
# esp_stream = header: the field's value; = sender: the sender's domain
transactional       esp.example:t-rsa:$K/t-rsa.private,esp.example:t-ed:$K/t-ed.private
.news.esp.example   esp.example:t-rsa:$K/t-rsa.private,esp.example:t-ed:$K/t-ed.private
SS
cat >"$W/policy" <<KP
c-rsa   canonicalization=simple/simple headers=From:To:Subject:Date:Message-ID expire=604800 identity=news@cust.example
c-ed    canonicalization=relaxed/simple identity=@%
esp.example:e-rsa  canonicalization=simple/relaxed headers=From:Subject:Date
p-ed    identity=bounce@% canonicalization=simple/simple
esp.example:t-ed   expire=3600
KP
cat >"$W/policy.json" <<PJ
{"cust.example:c-rsa": {"c": "simple/simple", "h": "From:To:Subject:Date:Message-ID", "x": 604800, "i": "news@cust.example"},
 "cust.example:c-ed": {"c": "relaxed/simple", "i": "@cust.example"},
 "esp.example:e-rsa": {"c": "simple/relaxed", "h": "From:Subject:Date"},
 "third.example:p-ed": {"c": "simple/simple", "i": "bounce@third.example"},
 "esp.example:t-ed": {"x": 3600},
 "_esp_default": [["esp.example", "e-rsa"], ["esp.example", "e-ed"]],
 "_esp_stream": [["esp.example", "t-rsa"], ["esp.example", "t-ed"]]}
PJ
$PY "$TOP/tests/interop/gen_corpus.py" "$W/tmpl" >/dev/null

# verify_all NAME: the four verifiers over out/new, grouped by count
verify_all() {
	local name=$1 q=$W/$1 f n r
	mkdir -p "$W/$name.v"
	for f in "$q"/out/new/*; do
		tail -n +3 "$f" >"$W/$name.v/$(basename "$f").eml"	# envelope off
	done
	for f in "$W/$name.v"/*.eml; do
		n=$(grep -ci '^dkim-signature:' "$f")
		r=$(awk 'BEGIN{IGNORECASE=1} /^dkim-signature:/{s=1} s&&/a=rsa-sha256/{c++; s=0} /^$|^\r$/{exit} END{print c+0}' "$f")
		echo "$f" >>"$W/$name.v/n$n"
		echo "$f" >>"$W/$name.v/r$r"
	done
	for l in "$W/$name.v"/n*; do
		n=${l##*/n}
		check '$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect "$n" --list "$l" >"$l.dkimpy" 2>&1' \
			"$name: dkimpy passes all $n signatures of $(wc -l <"$l") files" 'grep -v pass "$l.dkimpy" | head -3'
		check '"$ODKIM_VERIFY" --dns-file "$W/dns.txt" --expect "$n" --list "$l" >"$l.odkim" 2>&1' \
			"$name: libopendkim passes all $n signatures of $(wc -l <"$l") files" 'grep -v pass "$l.odkim" | head -3'
		if [ "$HAVE_MAILAUTH" = 1 ]; then
			check 'node "$TOP/tests/interop/verify_mailauth.js" --dns-file "$W/dns.txt" --expect "$n" --list "$l" >"$l.mailauth" 2>&1' \
				"$name: mailauth passes all $n signatures of $(wc -l <"$l") files" 'grep -v pass "$l.mailauth" | head -3'
		fi
	done
	for l in "$W/$name.v"/r*; do
		n=${l##*/r}
		[ "$n" = 0 ] && continue
		check '$PERL "$TOP/tests/interop/verify_maildkim.pl" --dns-file "$W/dns.txt" --expect "$n" --rsa-only --list "$l" >"$l.maildkim" 2>&1' \
			"$name: Mail::DKIM passes all $n RSA signatures of $(wc -l <"$l") files" 'grep -v pass "$l.maildkim" | head -3'
	done
}

# run_case NAME BACKEND STREAM_MODE: one engine run and its checks
run_case() {
	local name=$1 backend=$2 mode=$3 q=$W/$1 rc=0 rsa lanes
	echo "== $name: rsa_backend = $backend, esp_stream = $mode"
	$PY "$HERE/policy_queue.py" gen "$W/tmpl" "$q" "$N" "$W/$name.man"
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:e-rsa:$K/e-rsa.private"
		echo "esp_key = esp.example:e-ed:$K/e-ed.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = $W/SigningTable"
		echo "key_policy = $W/policy"
		echo "rsa_backend = $backend"
		echo "threads = 2"
		case $mode in
		header) echo "esp_stream = header:X-ESP-Stream"; echo "esp_stream_table = $W/streams" ;;
		sender) echo "esp_stream = sender"; echo "esp_stream_table = $W/streams" ;;
		esac
	} >"$W/$name.conf"
	"$D" run -c "$W/$name.conf" --once --stats "$W/$name.json" >"$W/$name.sum" 2>"$W/$name.log" || rc=$?
	cat "$W/$name.sum"
	check '[ "$rc" = 0 ]' "$name: run --once exits 0" 'echo "exit $rc: $(head -c 400 "$W/$name.log")"'
	check '[ "$(ls "$q/out/new" | wc -l)" = "$N" ] && [ "$(find "$q/in" "$q/failed" -type f | wc -l)" = 0 ]' \
		"$name: all $N messages in out/new, in/ and failed/ empty"
	check 'STREAM_MODE=$mode $PY "$HERE/policy_queue.py" check "$q" "$W/$name.man" "$W/policy.json" >"$W/$name.chk" 2>&1' \
		"$name: signatures, their order and per-key tags as configured" \
		'head -5 "$W/$name.chk"'
	tail -n 1 "$W/$name.chk"
	rsa=$(cat "$q"/out/new/* | grep -c 'a=rsa-sha256')
	lanes=$(grep -o '"ifma_lanes":[0-9]*' "$W/$name.json" | cut -d: -f2)
	if [ "$backend" = ifma ]; then
		check '[ "$lanes" = "$rsa" ] && [ "$rsa" -gt "$N" ]' \
			"$name: the 8-lane path made every RSA-2048 signature ($lanes of $rsa)"
	else
		check '[ "$lanes" = 0 ]' "$name: OpenSSL made every signature (ifma_lanes $lanes)"
	fi
	verify_all "$name"
}

run_case openssl-header openssl header
# `dkimpress check` looks up every key: both esp_key lines, the stream
# table's keys, each key of a list, the '%' keys for third.example
"$D" check -c "$W/openssl-header.conf" --dns-file "$W/dns.txt" >"$W/check.out" 2>&1
crc=$?
check '[ "$crc" = 0 ] && [ "$(grep -c "ok" "$W/check.out")" -ge 9 ] && grep -q "esp_key#2" "$W/check.out" && grep -q "t-ed" "$W/check.out" && grep -q "p-rsa/%" "$W/check.out"' \
	"check: all 9 keys found in DNS and match (both esp_key lines, the stream's, '%' keys of a list)" \
	'cat "$W/check.out"'
if grep -q avx512ifma /proc/cpuinfo; then
	run_case ifma-header ifma header
else
	echo "note: this CPU has no AVX-512 IFMA: the 8-lane runs are skipped"
fi
run_case openssl-sender openssl sender

echo "policy: $pass passed, $fail failed"
[ "$fail" = 0 ]
