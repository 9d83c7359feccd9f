#!/usr/bin/env bash
# tests/ct/run.sh — constant-time check of the 8-lane RSA kernel
# (src/crypto/rsa8.c) with valgrind's memcheck, the "ctgrind" technique:
# the key's secrets and the input are marked undefined (tests/ct/ct_rsa8.c)
# and memcheck must report no branch ("Conditional jump or move depends on
# uninitialised value(s)") and no memory index ("Use of uninitialised value
# of size N") that depends on them.
#
# Which build valgrind checks, and why: valgrind 3.19 (Debian 12) cannot
# execute AVX-512 — it stops with "unhandled instruction bytes: 0x62 ..."
# (the EVEX prefix) and SIGILL. So memcheck runs $BUILD/tests/ct_rsa8, the
# same kernel source built with -DDKP_RSA8_EMULATE: rsa8_vec.h's vector
# operations become plain C over 8-element arrays, the kernel's control
# flow and memory indexing are unchanged. The instruction-level timing of
# the intrinsics themselves (vpmadd52*, vpcmpq, vpternlogq, masked blends:
# data-independent on Intel) is not what this test sees.
#
# Then it shows the check is able to fail: $BUILD/tests/ct_rsa8_canary adds
# one `if (secret window & 1)` branch inside the kernel (-DDKP_RSA8_CT_CANARY)
# and memcheck must flag it.
#
# Last line: "ct: N passed, N failed"; exit 77 when valgrind is missing.
set -u
BUILD=${BUILD:-build}
pass=0 fail=0

if ! command -v valgrind >/dev/null 2>&1; then
	echo "ct: skipped: valgrind is not installed (tools/deps installs it)"
	exit 77
fi
for b in ct_rsa8 ct_rsa8_canary; do
	if [ ! -x "$BUILD/tests/$b" ]; then
		echo "FAIL: $BUILD/tests/$b is not built (make unit-tests)"
		echo "ct: 0 passed, 1 failed"
		exit 1
	fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2; do
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
		-out "$tmp/k$i.pem" 2>/dev/null || { echo "ct: 0 passed, 1 failed (openssl genpkey)"; exit 1; }
done

ok() { echo "ok   $1"; pass=$((pass + 1)); }
no() { echo "FAIL $1"; fail=$((fail + 1)); }

# run NAME BINARY: valgrind log in $tmp/NAME.log, program output in $tmp/NAME.out
run() {
	valgrind --tool=memcheck --error-exitcode=99 --log-file="$tmp/$1.log" \
		"$BUILD/tests/$2" "$tmp/k1.pem" "$tmp/k2.pem" >"$tmp/$1.out" 2>&1
	echo $?
}
count() { grep -c "$2" "$tmp/$1.log"; }

rc=$(run real ct_rsa8)
cj=$(count real 'Conditional jump or move depends on uninitialised')
ui=$(count real 'Use of uninitialised value of size')
if grep -q 'unhandled instruction' "$tmp/real.log"; then
	no "emulated kernel: valgrind met an instruction it cannot run"
	cat "$tmp/real.log"
elif [ "$cj" = 0 ] && [ "$ui" = 0 ] && [ "$rc" = 0 ] &&
	grep -q '8 of 8 lanes equal to BN_mod_exp (emulated build)' "$tmp/real.out"; then
	ok "emulated kernel: 0 secret-dependent branches, 0 secret-dependent indices; $(cat "$tmp/real.out")"
else
	no "emulated kernel: exit $rc, $cj secret-dependent branch reports, $ui secret-dependent index reports"
	cat "$tmp/real.out"
	grep -A8 -E 'Conditional jump|uninitialised value of size' "$tmp/real.log" | head -n 60
fi

rc=$(run canary ct_rsa8_canary)
cj=$(count canary 'Conditional jump or move depends on uninitialised')
if [ "$cj" -gt 0 ] && grep -q 'tab_select' "$tmp/canary.log"; then
	ok "canary (one branch on a secret window added on purpose): flagged ($cj report(s), exit $rc)"
else
	no "canary: the deliberate secret-dependent branch was NOT flagged (exit $rc)"
	cat "$tmp/canary.log" | tail -n 30
fi

echo "ct: $pass passed, $fail failed"
[ "$fail" = 0 ]
