#!/usr/bin/env bash
# tests/keymem/run.sh — private keys do not end up in core dumps.
#
# An engine holding RSA-2048 keys (the customer's, in OpenSSL's form and,
# on AVX-512 IFMA CPUs, the 8-lane kernel's) and Ed25519 keys (the ESP's
# and another customer's) is killed with SIGSEGV while it signs, under
# `ulimit -c unlimited`. Cores go to the test's directory: with a
# relative core_pattern (e.g. "core") the engine runs there; with an
# absolute or piped one the test, as root, points core_pattern at its
# directory and restores it at exit (else it exits 77 and says why).
#   default:    not dumpable while it holds keys (PR_SET_DUMPABLE 0): no
#               core, or if one is written, no key bytes in it;
#   core_dumps = yes: a core is written; search.py looks for every key's
#               bytes (PEM lines, DER, p, q, d, dp, dq, qinv in big- and
#               little-endian order, p and q as 52-bit limbs, the Ed25519
#               seed). None may be found where dkimpress's own key memory
#               is (the 8-lane tables: the limbs) or OpenSSL's secure
#               heap (the Ed25519 seed, RSA d and the CRT values as
#               decoded), nor the file's PEM or DER. What OpenSSL copies
#               into its ordinary heap while signing (the Montgomery
#               contexts of p and q) is reported, not failed: it is out
#               of dkimpress's hands (docs/operations.md, "Keys in
#               memory").
# KEYMEM_BIN=/path runs another binary (to show what an older one does).
# Ends with "keymem: N passed, N failed". Env: DKIMPRESS, KEYMEM_BIN,
# KEYMEM_N (messages in the queue, default 6000).
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
DKIMPRESS=${KEYMEM_BIN:-${DKIMPRESS:-build/dkimpress}}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
D=$DKIMPRESS
PY=/usr/bin/python3
N=${KEYMEM_N:-6000}
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-keymem.XXXXXX")
PAT_FILE=/proc/sys/kernel/core_pattern
OLD_PAT=$(cat "$PAT_FILE" 2>/dev/null)
SET_PAT=
EPID=
cleanup() {
	[ -n "$EPID" ] && kill -KILL "$EPID" 2>/dev/null
	[ -n "$SET_PAT" ] && printf '%s\n' "$OLD_PAT" >"$PAT_FILE"
	rm -rf "$W"
}
trap cleanup EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
skip() { echo "keymem: cannot run: $*"; exit 77; }

[ -x "$D" ] || skip "$D is not built"
$PY -c 'import cryptography' 2>/dev/null || skip "python3-cryptography missing"
# ASan and TSan catch SIGSEGV themselves (a report, exit 1) and ASan
# turns core dumps off: nothing to learn from them here
grep -qa -e __asan_init -e __tsan_init "$D" && skip "$D is a sanitizer build (it handles SIGSEGV and writes no core)"
ulimit -c unlimited 2>/dev/null || skip "ulimit -c unlimited is not allowed here"
case $OLD_PAT in
'') skip "cannot read $PAT_FILE" ;;
'|'* | /*)
	# a piped or absolute pattern: cores would not reach this directory
	if [ "$(id -u)" = 0 ] && printf '%s\n' "$W/cores/core.%p" >"$PAT_FILE" 2>/dev/null; then
		SET_PAT=1
		echo "note: core_pattern was '$OLD_PAT'; set to $W/cores/core.%p for this test (restored at exit)"
	else
		skip "core_pattern is '$OLD_PAT' and this test cannot change it (needs root and a writable $PAT_FILE)"
	fi
	;;
esac

mkdir -p "$W/k"
for t in rsa ed25519; do
	"$D" keygen --domain esp.example --selector "e$t" --type $t --out "$W/k" >/dev/null 2>&1
	"$D" keygen --domain c$t.example --selector "c$t" --type $t --out "$W/k" >/dev/null 2>&1
done
[ -s "$W/k/crsa.private" ] && [ -s "$W/k/eed25519.private" ] && [ -s "$W/k/ced25519.private" ] ||
	skip "$D keygen failed"
KEYS="$W/k/crsa.private $W/k/eed25519.private $W/k/ced25519.private"

# setup NAME [config lines...]: a queue of N messages, half for each customer
setup() {
	local q=$W/$1
	shift
	mkdir -p "$q/in/new" "$q/cores"
	printf 'crsa.example crsa.example:crsa:%s\nced25519.example ced25519.example:ced25519:%s\n' \
		"$W/k/crsa.private" "$W/k/ced25519.private" >"$q/keys"
	printf 'crsa.example crsa.example\nced25519.example ced25519.example\n' >"$q/signing"
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:eed25519:$W/k/eed25519.private"
		echo "key_table = $q/keys"
		echo "signing_table = $q/signing"
		echo "threads = 2"
		echo "batch = 16"
		for l in "$@"; do echo "$l"; done
	} >"$q/conf"
	$PY - "$q/in/new" "$N" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    dom = "crsa.example" if i % 2 == 0 else "ced25519.example"
    with open(os.path.join(d, "m%d" % i), "wb") as f:
        f.write(b"From: u%d@%s\r\nTo: r@example.net\r\nSubject: keymem %d\r\n"
                b"Message-ID: <%d@%s>\r\n\r\nbody %d\r\n"
                % (i, dom.encode(), i, i, dom.encode(), i))
EOF
}
count() { find "$1" -maxdepth 1 -type f ! -name '.*' 2>/dev/null | wc -l; }

# crash NAME: start the engine in $W/NAME/cores, SIGSEGV once it signs;
# sets RC and CORE (the core file, or empty)
crash() {
	local q=$W/$1 i
	CORE=
	(cd "$q/cores" && exec "$D" run -c "$q/conf") >"$q/log" 2>&1 &
	EPID=$!
	for i in $(seq 1 300); do
		[ "$(count "$q/out/new")" -ge 100 ] && break
		kill -0 "$EPID" 2>/dev/null || break
		sleep 0.05
	done
	left=$(count "$q/in/new")
	kill -SEGV "$EPID" 2>/dev/null
	wait "$EPID"
	RC=$?
	EPID=
	for i in $(seq 1 100); do	# the kernel writes the core before wait returns; be patient
		CORE=$(find "$q/cores" "$W/cores" -maxdepth 1 -type f -name 'core*' 2>/dev/null | head -n 1)
		[ -n "$CORE" ] && break
		[ "$i" -ge 10 ] && break
		sleep 0.1
	done
	echo "   engine exit $RC, $(count "$q/out/new") signed, $left still queued at the kill, core: ${CORE:-none}${CORE:+ ($(du -m "$CORE" | cut -f1) MB)}"
}

# -------------------------------------------------------------- default
echo "== default: kill -SEGV while signing"
setup dflt
crash dflt
if [ "$RC" = 139 ] && [ "$left" -gt 0 ]; then
	ok "default: killed by SIGSEGV while messages were still queued"
else
	bad "default: exit $RC, $left queued at the kill (want 139, > 0): $(tail -n 3 "$W/dflt/log")"
fi
if [ -z "$CORE" ]; then
	ok "default: no core written (the process is not dumpable while it holds keys)"
else
	$PY "$HERE/search.py" "$CORE" $KEYS >"$W/dflt.search" 2>&1
	if [ $? = 0 ]; then
		ok "default: a core was written, but no key bytes in it ($(tail -n 1 "$W/dflt.search"))"
	else
		bad "default: key bytes in the core: $(grep -c '^found' "$W/dflt.search") needles; $(tail -n 1 "$W/dflt.search")"
		grep '^found' "$W/dflt.search" | head -n 20
	fi
	rm -f "$CORE"
fi

# ----------------------------------------------------------- core_dumps
echo "== core_dumps = yes: kill -SEGV while signing"
setup yes "core_dumps = yes"
crash yes
if [ "$RC" = 139 ] && [ -n "$CORE" ]; then
	ok "core_dumps = yes: killed by SIGSEGV while signing, core written"
	$PY "$HERE/search.py" "$CORE" $KEYS >"$W/yes.search" 2>&1
	echo "   search: $(tail -n 1 "$W/yes.search")"
	sed 's/^/   /' "$W/yes.search" | grep found
	# what dkimpress's own key memory and OpenSSL's secure heap hold,
	# and what OpenSSL frees (wiped: keymem.h)
	covered='(pem-line-[0-9]+|der|p-limbs52|q-limbs52|ed25519-seed|d-be|d-le|dp-be|dp-le|dq-be|dq-le|qinv-be|qinv-le) '
	nc=$(grep -E "^found [^ ]+ $covered" "$W/yes.search" | grep -vc ' in notes$')
	if [ "$nc" = 0 ] && grep -q '^summary' "$W/yes.search"; then
		ok "core_dumps = yes: no PEM, DER, d, CRT values, 8-lane limbs or Ed25519 seed in the core's memory"
	else
		bad "core_dumps = yes: $nc key values found in memory that MADV_DONTDUMP or the wiping should cover"
	fi
	no=$(grep -E '^found [^ ]+ (p|q)-(be|le) ' "$W/yes.search" | grep -vc ' in notes$')
	[ "$no" = 0 ] || echo "   note: $no copies of p or q in OpenSSL's ordinary heap (its Montgomery contexts; docs/operations.md)"
	nn=$(grep -c ' in notes$' "$W/yes.search")
	[ "$nn" = 0 ] || echo "   note: $nn pieces in the core's notes (a thread's registers, not memory: MADV_DONTDUMP cannot cover them)"
	rm -f "$CORE"
else
	bad "core_dumps = yes: exit $RC, core ${CORE:-none} (want 139 and a core): $(tail -n 3 "$W/yes/log")"
fi

echo "keymem: $pass passed, $fail failed"
[ "$fail" = 0 ]
