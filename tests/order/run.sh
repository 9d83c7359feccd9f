#!/usr/bin/env bash
# tests/order/run.sh — the flushes of the queue protocol are where a power
# loss needs them, read off the system calls (check_order.py): for every
# published message, its copy flushed before its input is unlinked, the
# unlink flushed before the copy is renamed into out/new, out/new flushed
# after. kill -9 tests cannot see this (the page cache survives a kill).
#
# Runs `dkimpress run --once` under strace with io = syscalls on a queue
# of ORDER_N messages (default 400) in four settings: the pipelined commit
# thread (group_commit = yes, the default) and the workers' own commit
# (no), each with flush = filesystem and flush = files; plus the
# checker's self-test (broken traces must be caught). Exit 77 without
# strace. Ends with "order: N passed, N failed".
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
N=${ORDER_N:-400}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
command -v strace >/dev/null || { echo "skip: strace is not installed (tools/deps installs it)"; exit 77; }
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-order.XXXXXX")
trap "${ORDER_KEEP:+:} rm -rf \"$W\"" EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

if /usr/bin/python3 "$HERE/check_order.py" "$W" --self-test >"$W/self" 2>&1; then
	ok "the checker catches a missing copy flush, a missing retire flush, a publish before the retire, an unflushed out/new"
else
	bad "the checker's self-test:"; grep self-test "$W/self"
fi

mkdir -p "$W/keys/c1.example"
"$DKIMPRESS" keygen --domain esp.example --selector esp --out "$W/keys" >/dev/null 2>&1
"$DKIMPRESS" keygen --domain c1.example --selector k1 --type ed25519 --out "$W/keys/c1.example" >/dev/null 2>&1
echo "key1 c1.example:k1:$W/keys/c1.example/k1.private" >"$W/KeyTable"
echo "*@c1.example key1" >"$W/SigningTable"
"$TOP/tools/demo-queue" "$W/orig" "$N" c1.example nokey.example >/dev/null

one() {	# one LABEL SETTINGS...
	local label=$1 rc=0 res
	shift
	rm -rf "$W/q" && mkdir -p "$W/q/in"
	cp -al "$W/orig/in/new" "$W/q/in/new"
	{
		echo "queue_dir = $W/q"
		echo "esp_key = esp.example:esp:$W/keys/esp.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = refile:$W/SigningTable"
		echo "io = syscalls"
		echo "threads = 3"
		echo "batch = 8"
		printf '%s\n' "$@"
	} >"$W/conf"
	# (LeakSanitizer cannot run under ptrace: off for the traced run of a
	# sanitizer build; ASan and UBSan stay on)
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
	strace -f -qq -y -ttt -T -e trace=openat,close,unlinkat,renameat2,syncfs,fsync \
		-o "$W/trace" "$DKIMPRESS" run -c "$W/conf" --once >/dev/null 2>"$W/log" || rc=$?
	if [ "$rc" != 0 ]; then
		bad "$label: the run exited $rc"; tail -3 "$W/log"; return
	fi
	[ "$(ls "$W/q/out/new" | wc -l)" = "$N" ] || { bad "$label: $(ls "$W/q/out/new" | wc -l) of $N published"; return; }
	res=$(/usr/bin/python3 "$HERE/check_order.py" "$W/trace") && rc=0 || rc=$?
	if [ "$rc" = 0 ]; then
		ok "$label: $(tail -1 <<<"$res")"
	else
		bad "$label: $(tail -1 <<<"$res")"; head -5 <<<"$res"
	fi
}
one "pipelined commit thread, flush = filesystem" "group_commit = yes" "flush = filesystem"
one "pipelined commit thread, flush = files" "group_commit = yes" "flush = files"
one "each worker commits, flush = filesystem" "group_commit = no" "flush = filesystem"
one "each worker commits, flush = files" "group_commit = no" "flush = files"
echo "order: $pass passed, $fail failed"
[ "$fail" = 0 ]
