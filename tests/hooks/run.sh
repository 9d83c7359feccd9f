#!/usr/bin/env bash
# tests/hooks/run.sh — the installed binary has no test hooks.
#
# DKP_TEST_CORRUPT_SIG (flip a bit of every Nth OpenSSL signature),
# DKP_RSA8_FAULT_LANE (compute one 8-lane result wrongly) and
# DKP_FAULT_URING (fail an io_uring completion) exist only in the test
# build (-DDKP_TEST_HOOKS, build/dkimpress-test; see the Makefile). An
# operator's environment must not be able to make the product corrupt
# signatures. Checks:
#   install:  `make install DESTDIR=tmp` installs build/dkimpress;
#   strings:  the installed binary does not even name the variables;
#   run:      the installed binary, with every hook variable set and
#             self_verify = off (nothing would stop a corrupted
#             signature), signs RSA (OpenSSL and, on IFMA CPUs, the
#             8-lane path) and Ed25519: every message published and
#             dkimpy verifies every signature;
#   sign:     `dkimpress sign` with DKP_TEST_CORRUPT_SIG=1 writes a
#             signature that dkimpy verifies;
#   control:  the test build with the same settings does corrupt (dkimpy
#             rejects), so the checks above can fail.
# HOOKS_BIN=/path/to/dkimpress runs the checks on that binary instead of
# installing one (to show what an older build does); the control then
# uses it too. Ends with "hooks: N passed, N failed". Env: BUILD,
# DKIMPRESS_TEST, HOOKS_BIN.
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
case $BUILD in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
T=${DKIMPRESS_TEST:-$BUILD/dkimpress-test}
case $T in /*) ;; *) T=$PWD/$T ;; esac
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-hooks.XXXXXX")
trap 'rm -rf "$W"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

$PY -c 'import dkim' 2>/dev/null || { echo "hooks: cannot run: python3-dkim missing"; exit 77; }

# ------------------------------------------------------------- install
if [ -n "${HOOKS_BIN:-}" ]; then
	D=$HOOKS_BIN
	T=$HOOKS_BIN
	echo "== HOOKS_BIN=$D (no install)"
else
	echo "== make install DESTDIR=... PREFIX=/usr"
	# -o all: install what $BUILD holds, never rebuild it here
	if make -C "$TOP" --no-print-directory -o all install DESTDIR="$W/root" PREFIX=/usr \
		BUILD="$BUILD" >"$W/install.log" 2>&1 && [ -x "$W/root/usr/bin/dkimpress" ]; then
		ok "make install put the binary in DESTDIR"
	else
		bad "make install: $(tail -3 "$W/install.log")"
		echo "hooks: $pass passed, $fail failed"
		exit 1
	fi
	D=$W/root/usr/bin/dkimpress
fi

# ------------------------------------------------------------- strings
names=$(grep -aoE 'DKP_(TEST_CORRUPT_SIG|RSA8_FAULT_LANE|FAULT_URING)|DKIMPRESS_RELAY_(TRACE|CRASH_REPUBLISHED)' "$D" | sort -u | tr '\n' ' ')
if [ -z "$names" ]; then
	ok "strings: the installed binary names no hook variable"
else
	bad "strings: the installed binary holds: $names"
fi

# ------------------------------------------------------------------ keys
mkdir -p "$W/k"
: >"$W/dns.txt"
for t in rsa ed25519; do
	"$D" keygen --domain esp.example --selector "e$t" --type $t --out "$W/k" >>"$W/dns.txt" 2>/dev/null
	"$D" keygen --domain cust.example --selector "c$t" --type $t --out "$W/k" >>"$W/dns.txt" 2>/dev/null
done
[ -s "$W/k/ersa.private" ] && [ -s "$W/k/ced25519.private" ] ||
	{ echo "hooks: cannot run: $D keygen failed"; exit 77; }
N=24
HOOKS=(DKP_TEST_CORRUPT_SIG=1 DKP_RSA8_FAULT_LANE=1 DKP_FAULT_URING=1:5)

setup() {	# setup DIR TYPE BACKEND
	local q=$1 t=$2 b=$3 i
	rm -rf "$q"
	mkdir -p "$q/in/new"
	printf 'cust.example cust.example:c%s:%s\n' "$t" "$W/k/c$t.private" >"$q/keys"
	printf 'cust.example cust.example\n' >"$q/signing"
	cat >"$q/conf" <<EOF
queue_dir = $q
esp_key = esp.example:e$t:$W/k/e$t.private
key_table = $q/keys
signing_table = $q/signing
threads = 2
batch = 8
io = uring
self_verify = off
rsa_backend = $b
EOF
	for i in $(seq 1 $N); do
		printf 'From: user%d@cust.example\r\nTo: r@example.net\r\nSubject: hooks %d\r\nMessage-ID: <%d@cust.example>\r\n\r\nbody %d\r\n' \
			"$i" "$i" "$i" "$i" >"$q/in/new/m$i"
	done
}
count() { find "$1" -maxdepth 1 -type f ! -name '.*' ! -name '*.reason' 2>/dev/null | wc -l; }
# run_case BIN DIR TYPE BACKEND: prints "published failed dkimpy-rejects"
run_case() {
	local bin=$1 q=$2
	setup "$q" "$3" "$4"
	env "${HOOKS[@]}" "$bin" run -c "$q/conf" --once >"$q/log" 2>&1
	find "$q/out/new" -maxdepth 1 -type f ! -name '.*' >"$q/list" 2>/dev/null
	$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 \
		--list "$q/list" >"$q/vfy" 2>&1
	echo "$(count "$q/out/new") $(count "$q/failed") $(grep -c "	fail	" "$q/vfy")"
}

backends="rsa:openssl ed25519:openssl"
if grep -q avx512ifma /proc/cpuinfo; then
	backends="$backends rsa:ifma"
fi
# ----------------------------------------------------------------- run
for tb in $backends; do
	t=${tb%%:*} b=${tb#*:}
	echo "== installed binary, $t ($b), every hook variable set, self_verify = off"
	read -r np nf nbad < <(run_case "$D" "$W/run-$t-$b" "$t" "$b")
	if [ "$np" = $N ] && [ "$nf" = 0 ] && [ "$nbad" = 0 ]; then
		ok "run $t $b: all $N published, dkimpy verifies every one ($(tail -1 "$W/run-$t-$b/vfy"))"
	else
		bad "run $t $b: published $np, failed $nf, dkimpy rejects $nbad (want $N, 0, 0)"
		grep -m 3 "	fail	" "$W/run-$t-$b/vfy"
		grep -m 3 -i 'DKP_\|error' "$W/run-$t-$b/log"
	fi
	# the 8-lane check would catch a faulty lane and redo it: the log says
	hits=$(grep -cE 'made again by OpenSSL|DKP_FAULT_URING' "$W/run-$t-$b/log")
	if [ "$hits" = 0 ]; then
		ok "run $t $b: no injected fault in the log"
	else
		bad "run $t $b: $hits injected faults logged: $(grep -m 2 -E 'made again by OpenSSL|DKP_FAULT_URING' "$W/run-$t-$b/log")"
	fi
done

# ---------------------------------------------------------------- sign
echo "== installed binary: dkimpress sign with DKP_TEST_CORRUPT_SIG=1"
printf 'From: a@cust.example\r\nSubject: x\r\n\r\nbody\r\n' >"$W/one.eml"
DKP_TEST_CORRUPT_SIG=1 "$D" sign --key "cust.example:crsa:$W/k/crsa.private" \
	--rsa-backend openssl -o "$W/one.out" "$W/one.eml" >"$W/sign.log" 2>&1
rc=$?
if [ "$rc" = 0 ] && $PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" \
	--expect 1 "$W/one.out" >"$W/sign.vfy" 2>&1; then
	ok "sign: exit 0 and dkimpy verifies the signature"
else
	bad "sign: exit $rc: $(head -c 200 "$W/sign.log") $(head -c 300 "$W/sign.vfy" 2>/dev/null)"
fi

# ------------------------------------------------------------- control
echo "== control: the test build ($T) with the same settings corrupts"
if [ ! -x "$T" ]; then
	bad "control: $T is not built (make unit-tests builds it)"
else
	read -r np nf nbad < <(run_case "$T" "$W/control" rsa openssl)
	if [ "$nbad" -ge $((N / 2)) ]; then
		ok "control: the test build's hook is real: dkimpy rejects $nbad of $np"
	else
		bad "control: the test build published $np, dkimpy rejects only $nbad"
	fi
fi

echo "hooks: $pass passed, $fail failed"
[ "$fail" = 0 ]
