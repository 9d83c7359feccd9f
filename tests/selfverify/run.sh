#!/usr/bin/env bash
# tests/selfverify/run.sh — no wrong signature is ever released.
#
# dkimpress checks each signature it makes with the public half of the
# private key before the message is published (self_verify, the 8-lane
# RSA path always). A faulty computation is simulated with two test
# hooks, present only in the test build (-DDKP_TEST_HOOKS,
# build/dkimpress-test; build/dkimpress ignores them, tests/hooks):
#   DKP_TEST_CORRUPT_SIG=N   every Nth signature made by OpenSSL gets one
#                            bit flipped before its check (src/dkim/sign.c)
#   DKP_RSA8_FAULT_LANE=L    lane L of every 8-lane group is computed
#                            wrongly in one CRT half (src/crypto/rsa8.c)
# Checks:
#   all:      RSA and Ed25519, every signature corrupted: every message in
#             failed/ with the reason, none published, a loud log line;
#   default:  self_verify = rsa checks every RSA signature, no Ed25519 one;
#   sample:   one in three corrupted: the corrupted ones failed, every
#             published one verifies with dkimpy, none lost;
#   off:      the same with self_verify = off: the bad ones ARE published
#             and dkimpy rejects them (the hook is real; the check is what
#             stops them);
#   ifma:     (AVX-512 IFMA CPUs) a wrong lane is caught, made again by
#             OpenSSL, counted and logged; nothing fails; all verify;
#   sign:     `dkimpress sign` with a corrupted signature writes nothing
#             and exits 70.
# Ends with "selfverify: N passed, N failed". Env: DKIMPRESS_TEST.
set -u
export LC_ALL=C
TOP=$(cd "$(dirname "$0")/../.." && pwd)
DKIMPRESS=${DKIMPRESS_TEST:-${BUILD:-build}/dkimpress-test}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
D=$DKIMPRESS
[ -x "$D" ] || { echo "selfverify: cannot run: $D is not built (make unit-tests builds it)"; exit 77; }
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-selfverify.XXXXXX")
trap 'rm -rf "$W"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

$PY -c 'import dkim' 2>/dev/null || { echo "selfverify: cannot run: python3-dkim missing"; exit 77; }
mkdir -p "$W/k"
: >"$W/dns.txt"
for t in rsa ed25519; do
	"$D" keygen --domain esp.example --selector "e$t" --type $t --out "$W/k" >>"$W/dns.txt" 2>/dev/null
	"$D" keygen --domain cust.example --selector "c$t" --type $t --out "$W/k" >>"$W/dns.txt" 2>/dev/null
done
[ -s "$W/k/ersa.private" ] && [ -s "$W/k/ced25519.private" ] ||
	{ echo "selfverify: cannot run: $D keygen failed"; exit 77; }
N=48

setup() {	# setup NAME TYPE [extra config lines...]
	local q=$W/$1 t=$2
	shift 2
	mkdir -p "$q/in/new"
	printf 'cust.example cust.example:c%s:%s\n' "$t" "$W/k/c$t.private" >"$q/keys"
	printf 'cust.example cust.example\n' >"$q/signing"
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:e$t:$W/k/e$t.private"
		echo "key_table = $q/keys"
		echo "signing_table = $q/signing"
		echo "threads = 2"
		echo "batch = 16"
		for l in "$@"; do echo "$l"; done
	} >"$q/conf"
	for i in $(seq 1 $N); do
		printf 'From: user%d@cust.example\r\nTo: r@example.net\r\nSubject: self-verify %d\r\nMessage-ID: <%d@cust.example>\r\n\r\nbody %d\r\n' \
			"$i" "$i" "$i" "$i" >"$q/in/new/m$i"
	done
}
count() { find "$1" -maxdepth 1 -type f ! -name '.*' ! -name '*.reason' | wc -l; }
verify_all() {	# verify_all DIR OUT: every message in DIR with dkimpy
	find "$1" -maxdepth 1 -type f ! -name '.*' >"$2.list"
	$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 --list "$2.list" >"$2" 2>&1
}

# ------------------------------------------------------------------ all
for t in rsa ed25519; do
	echo "== $t: every signature corrupted, self_verify = all"
	setup all-$t $t "self_verify = all" "rsa_backend = openssl"
	q=$W/all-$t
	DKP_TEST_CORRUPT_SIG=1 "$D" run -c "$q/conf" --once >"$q/log" 2>&1
	rc=$?
	nf=$(count "$q/failed") np=$(count "$q/out/new")
	if [ "$nf" = $N ] && [ "$np" = 0 ]; then
		ok "$t: all $N in failed/, none published (run exit $rc)"
	else
		bad "$t: failed/ $nf, out/new $np (want $N and 0)"; tail -5 "$q/log"
	fi
	if grep -q "SELF-VERIFICATION FAILED" "$q/log"; then
		ok "$t: a loud log line names the failure"
	else
		bad "$t: no SELF-VERIFICATION FAILED line in the log"; tail -5 "$q/log"
	fi
	r=$(cat "$q"/failed/.m1.reason "$q"/failed/m1.reason 2>/dev/null | head -c 400)
	[ -n "$r" ] || r=$(grep -rl "self-verify\|its check" "$q/failed" 2>/dev/null | head -1)
	if grep -qr "failed its check" "$q/failed" 2>/dev/null; then
		ok "$t: failed/ holds the reason"
	else
		bad "$t: no reason naming the check in failed/ ($(ls -a "$q/failed" | head -5 | tr '\n' ' '))"
	fi
done

# --------------------------------------------------------------- default
# self_verify = rsa (the default): every RSA signature is checked (one
# wrong RSA-CRT signature reveals the key); Ed25519 ones are not (a check
# costs more than the signature; docs/performance.md)
for t in rsa ed25519; do
	echo "== $t: every signature corrupted, the default self_verify (rsa)"
	setup def-$t $t "rsa_backend = openssl"
	q=$W/def-$t
	DKP_TEST_CORRUPT_SIG=1 "$D" run -c "$q/conf" --once >"$q/log" 2>&1
	nf=$(count "$q/failed") np=$(count "$q/out/new")
	if [ $t = rsa ] && [ "$nf" = $N ] && [ "$np" = 0 ]; then
		ok "rsa: the default checks RSA: all $N in failed/"
	elif [ $t = ed25519 ] && [ "$nf" = 0 ] && [ "$np" = $N ]; then
		ok "ed25519: the default does not check Ed25519: all $N published (as documented)"
	else
		bad "$t default: failed/ $nf, out/new $np"; tail -3 "$q/log"
	fi
done

# ---------------------------------------------------------------- sample
for sv in all off; do
	echo "== rsa: one signature in three corrupted, self_verify = $sv"
	setup third-$sv rsa "self_verify = $sv" "rsa_backend = openssl"
	q=$W/third-$sv
	DKP_TEST_CORRUPT_SIG=3 "$D" run -c "$q/conf" --once >"$q/log" 2>&1
	nf=$(count "$q/failed") np=$(count "$q/out/new")
	# 2 signatures per message, every 3rd corrupted: 2 of every 3
	# messages hold a corrupted one
	verify_all "$q/out/new" "$q/vfy"
	nbad=$(grep -c "	fail	" "$q/vfy")
	if [ "$sv" = all ]; then
		if [ $((nf + np)) = $N ] && [ "$nf" -ge $((N / 4)) ] && [ "$nbad" = 0 ] && [ "$np" -ge 1 ]; then
			ok "all: $nf caught in failed/, $np published, every published one verifies ($(tail -1 "$q/vfy"))"
		else
			bad "all: failed/ $nf, published $np, dkimpy fails $nbad (want sum $N, >= $((N / 4)) caught, 0 bad)"
			tail -3 "$q/vfy"
		fi
	else
		if [ "$nf" = 0 ] && [ "$np" = $N ] && [ "$nbad" -ge $((N / 2)) ]; then
			ok "off: all $N published and dkimpy rejects $nbad of them: the check is what stops them"
		else
			bad "off: failed/ $nf, published $np, dkimpy rejects $nbad (want 0, $N, >= $((N / 2)))"
		fi
	fi
done

# ------------------------------------------------------------------ ifma
echo "== rsa: a wrong 8-lane result is caught and made again by OpenSSL"
setup ifma rsa "self_verify = all" "rsa_backend = ifma"
q=$W/ifma
"$D" run -c "$q/conf" --once >"$q/log0" 2>&1
rc=$?
if [ "$rc" = 78 ] && grep -q "lacks AVX-512" "$q/log0"; then
	echo "SKIP ifma: this CPU has no AVX-512 IFMA (run refused rsa_backend = ifma with 78, as documented)"
	ok "rsa_backend = ifma is refused with 78 on a CPU without IFMA"
else
	rm -rf "$q" && setup ifma rsa "self_verify = all" "rsa_backend = ifma"
	DKP_RSA8_FAULT_LANE=3 "$D" run -c "$q/conf" --once --stats "$q/stats.json" >"$q/log" 2>&1
	nf=$(count "$q/failed") np=$(count "$q/out/new")
	verify_all "$q/out/new" "$q/vfy"
	nbad=$(grep -c "	fail	" "$q/vfy")
	if [ "$nf" = 0 ] && [ "$np" = $N ] && [ "$nbad" = 0 ]; then
		ok "ifma: all $N published, none failed, dkimpy verifies all ($(tail -1 "$q/vfy"))"
	else
		bad "ifma: failed/ $nf, published $np, dkimpy rejects $nbad"; tail -5 "$q/log"
	fi
	nl=$(grep -c "made again by OpenSSL" "$q/log")
	if [ "$nl" -ge 1 ]; then
		ok "ifma: the wrong lane was caught, recomputed and logged ($nl times)"
	else
		bad "ifma: no 'made again by OpenSSL' line in the log"; tail -5 "$q/log"
	fi
	if grep -q '"recomputed": *[1-9]' "$q/stats.json" 2>/dev/null; then
		ok "ifma: counted in --stats ($(grep -o '"recomputed": *[0-9]*' "$q/stats.json"))"
	else
		bad "ifma: --stats does not count the recomputed signatures"; cat "$q/stats.json" 2>/dev/null | head -c 600
	fi
fi

# ------------------------------------------------------------------ sign
echo "== dkimpress sign"
printf 'From: a@cust.example\r\nSubject: x\r\n\r\nbody\r\n' >"$W/one.eml"
DKP_TEST_CORRUPT_SIG=1 "$D" sign --key "cust.example:crsa:$W/k/crsa.private" \
	--rsa-backend openssl -o "$W/one.out" "$W/one.eml" >"$W/sign.log" 2>&1
rc=$?
if [ "$rc" = 70 ] && [ ! -e "$W/one.out" ] && grep -q "failed its check" "$W/sign.log"; then
	ok "sign: a corrupted signature is not written (exit 70)"
else
	bad "sign: exit $rc, output $([ -e "$W/one.out" ] && echo written || echo absent): $(head -c 300 "$W/sign.log")"
fi
"$D" sign --key "cust.example:crsa:$W/k/crsa.private" --rsa-backend openssl \
	-o "$W/two.out" "$W/one.eml" >"$W/sign2.log" 2>&1
if [ -s "$W/two.out" ] && $PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 1 "$W/two.out" >/dev/null 2>&1; then
	ok "sign: without the hook the signature is written and verifies"
else
	bad "sign: without the hook: $(head -c 300 "$W/sign2.log")"
fi

echo "selfverify: $pass passed, $fail failed"
[ "$fail" = 0 ]
