#!/usr/bin/env bash
# tests/crash/run.sh — kill -9 the engine at random moments, restart it,
# and check that no message is lost, none is published twice and every
# output verifies.
#
# A queue of CRASH_N messages (default 4000, from tools/demo-queue) over
# customer domains with RSA and Ed25519 keys and one without a key, plus
# an RSA ESP key. `dkimpress run --once` is started and killed with
# SIGKILL after a random 20-150 ms, at least CRASH_KILLS times (default
# 24); each kill's protocol state (docs/queue.md: C claimed, W copy being
# written with its input still claimed, R copy flushed with its input
# retired, not yet published) is read off the directories while the
# process is dead; the next start's recovery must put C and W back and
# publish R. Then six kills aimed at protocol steps (the first retire
# unlink, two commit rounds' syncfs, the flush of in/cur/E, a publish
# rename) must leave states W and R, so both are asserted, not left to
# chance. Then a last run drains the queue and the checks run:
#   - every input ID is in out/new exactly once, none in failed/;
#   - in/new, in/cur and out/tmp are empty;
#   - each output is its input plus 2 DKIM-Signature fields (1 for the
#     domain without a key) and nothing else;
#   - dkimpy verifies every signature of every output.
# Ends with "crash: N passed, N failed". Env: DKIMPRESS (default
# build/dkimpress), CRASH_N, CRASH_KILLS, CRASH_AIMED (messages added to
# the queue before each aimed kill, default 300, so that no aimed kill
# depends on how far the random ones got).
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
N=${CRASH_N:-4000}
KILLS=${CRASH_KILLS:-24}
AIMED=${CRASH_AIMED:-300}
NAIMED=6	# aimed kills below, each with AIMED fresh messages
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-crash.XXXXXX")
trap 'rm -rf "$W"' EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# keys, tables, configuration
mkdir -p "$W/keys"
"$DKIMPRESS" keygen --domain esp.example --selector esp --out "$W/keys" >"$W/dns.txt" 2>/dev/null
: >"$W/KeyTable"
: >"$W/SigningTable"
i=0
for spec in c1.example:rsa c2.example:ed25519 c3.example:rsa c4.example:ed25519; do
	dom=${spec%%:*} type=${spec##*:}
	i=$((i + 1))
	mkdir -p "$W/keys/$dom"
	"$DKIMPRESS" keygen --domain "$dom" --selector "k$i" --type "$type" --out "$W/keys/$dom" >>"$W/dns.txt" 2>/dev/null
	echo "key$i $dom:k$i:$W/keys/$dom/k$i.private" >>"$W/KeyTable"
	echo "*@$dom key$i" >>"$W/SigningTable"
done
cat >"$W/conf" <<CONF
queue_dir     = $W/q
esp_key       = esp.example:esp:$W/keys/esp.private
key_table     = $W/KeyTable
signing_table = refile:$W/SigningTable
batch         = 16
CONF

# the queue, and a pristine copy of every input (hard links: the engine
# never writes an input, it only renames and unlinks it)
# (N for the random kills; the aimed kills each add AIMED more)
TOTAL=$((N + NAIMED * AIMED))
"$TOP/tools/demo-queue" "$W/orig" "$TOTAL" c1.example c2.example c3.example c4.example nokey.example
ls "$W/orig/in/new" | sort >"$W/ids"
mkdir -p "$W/q/in/new"
fed=0
feed() {	# feed K: hard-link the next K pristine inputs into in/new
	sed -n "$((fed + 1)),$((fed + $1))p" "$W/ids" >"$W/slice"
	(cd "$W/orig/in/new" && xargs -r cp -l -t "$W/q/in/new" <"$W/slice")
	fed=$((fed + $1))
}
feed "$N"

# the kill loop
printf '%-5s %-8s %8s %8s %8s %8s %8s\n' kill "after" in/new "C+W" "W" "R" out/new >"$W/table"
kills=0 early=0 tries=0
while [ "$kills" -lt "$KILLS" ] && [ "$tries" -lt $((KILLS * 3)) ]; do
	tries=$((tries + 1))
	# stop when the queue is drained (the check below then says so)
	[ -n "$(ls -A "$W/q/in/new")$(find "$W/q/in/cur" -type f)" ] || break
	ms=$((20 + RANDOM % 130))
	"$DKIMPRESS" run -c "$W/conf" --once >/dev/null 2>>"$W/log" &
	pid=$!
	sleep "$(printf '0.%03d' "$ms")"
	if kill -9 "$pid" 2>/dev/null; then
		wait "$pid" 2>/dev/null
		kills=$((kills + 1))
		# claims (in/cur/E/ID) and copies (out/tmp/E/wN/ID) by ID
		find "$W/q/in/cur" -mindepth 2 -type f -printf '%f\n' | sort >"$W/claims"
		find "$W/q/out/tmp" -mindepth 3 -type f -printf '%f\n' | sort >"$W/copies"
		cur=$(wc -l <"$W/claims")
		st_w=$(comm -12 "$W/claims" "$W/copies" | wc -l)
		st_r=$(comm -13 "$W/claims" "$W/copies" | wc -l)
		printf '%-5s %-8s %8s %8s %8s %8s %8s\n' "$kills" "${ms}ms" \
			"$(ls "$W/q/in/new" | wc -l)" "$cur" "$st_w" "$st_r" \
			"$(ls "$W/q/out/new" 2>/dev/null | wc -l)" >>"$W/table"
	else
		wait "$pid" 2>/dev/null
		early=$((early + 1))
	fi
done
cat "$W/table"
echo "($kills kills; $early runs finished before their kill)"
if [ "$kills" -ge 20 ]; then
	ok "killed the engine with SIGKILL $kills times mid-run"
else
	bad "only $kills kills landed mid-run (want >= 20): use a larger CRASH_N"
fi
# were the interesting states hit at random? (reported; asserted below
# with kills aimed at each step)
awk 'NR > 1 && $5 > 0 { w++ } NR > 1 && $6 > 0 { r++ } END {
	printf "random kills with messages in state W (copy written, input claimed): %d, in state R (input retired, copy not yet published): %d\n", w, r }' "$W/table"

# kills aimed at each step of the protocol (tests/fault/inject.c with
# FAULT_KILL: SIGKILL at the Nth call touching a path), each followed by
# the state it must leave; the next run recovers it
INJECT=${FAULT_INJECT:-$TOP/${BUILD:-build}/tests/fault_inject.so}
states() {	# claims and copies now: sets cur st_w st_r
	find "$W/q/in/cur" -mindepth 2 -type f -printf '%f\n' | sort >"$W/claims"
	find "$W/q/out/tmp" -mindepth 3 -type f -printf '%f\n' | sort >"$W/copies"
	cur=$(wc -l <"$W/claims")
	st_w=$(comm -12 "$W/claims" "$W/copies" | wc -l)
	st_r=$(comm -13 "$W/claims" "$W/copies" | wc -l)
}
recover_only() {	# let a run recover the dead engines, with in/new set aside
	mv "$W/q/in/new" "$W/q/in/new.hold" && mkdir "$W/q/in/new"
	"$DKIMPRESS" run -c "$W/conf" --once >/dev/null 2>>"$W/log"
	find "$W/q/in/new" -mindepth 1 -maxdepth 1 -exec mv -t "$W/q/in/new.hold/" {} +
	rmdir "$W/q/in/new" && mv "$W/q/in/new.hold" "$W/q/in/new"
}
aimed() {	# aimed KIND PATH N WANT DESC: kill at the Nth KIND call on PATH
	local kind=$1 path=$2 n=$3 want=$4 desc=$5 rc=0
	# no dead engine left, so the count reaches this run's own steps
	recover_only
	feed "$AIMED"
	[ -n "$(ls -A "$W/q/in/new")" ] || { bad "aimed kill ($desc): the queue ran dry first (use a larger CRASH_N)"; return; }
	# (an ASan build wants its runtime first; the shim only wraps libc)
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	LD_PRELOAD="$INJECT" FAULT_OP="$kind" FAULT_PATH="$path" FAULT_N="$n" FAULT_KILL=1 \
	FAULT_SLOW="${SLOW:-0}" \
		"$DKIMPRESS" run -c "$W/conf" --once >/dev/null 2>>"$W/log" &
	wait $! 2>/dev/null || rc=$?	# (in the background: no "Killed" line)
	states
	case $want in
	W) [ "$rc" = 137 ] && [ "$st_w" -gt 0 ] ;;
	R) [ "$rc" = 137 ] && [ "$st_r" -gt 0 ] ;;	# other workers may be in W
	WR) [ "$rc" = 137 ] && [ "$st_w" -gt 0 ] && [ "$st_r" -gt 0 ] ;;
	esac && ok "aimed kill -9 $desc: left $st_w in state W, $st_r in state R" ||
		bad "aimed kill -9 $desc: exit $rc, $st_w in state W, $st_r in state R (want $want)"
}
if [ -f "$INJECT" ]; then
	# the first unlink of a claim: copies flushed, no input retired yet
	aimed unlink /in/cur/e 1 W "at the first retire (unlink of a claim)"
	# the pipelined commit (group_commit = yes, the default): a round's one
	# syncfs covers the batches staged since the last round (state W) and
	# the retires of the batches the last round flushed (state R), so a
	# kill there leaves both, from several batches of several workers
	# (the first round's flush made to last 1.5 s, FAULT_SLOW, so that
	# other workers stage batches behind it however slow the build is (a
	# ThreadSanitizer build signs a batch in about half a second): the
	# second round then covers them and the first one's retires)
	SLOW=1500 aimed syncfs /in/cur/e 2 WR "at the second commit round's flush (one flush, several batches)"
	# (a later round: its fresh batches are in W; whether done ones are
	# in R depends on how fast the workers sign, so only W is asserted)
	aimed syncfs /in/cur/e 6 W "at a later commit round's flush, batches waiting for it"
	# the first rename into out/new: retired, not yet visible
	aimed rename /out/new/ 1 R "at the first publish rename"
	# a later batch's publish, with earlier batches done
	aimed rename /out/new/ 40 R "at a later publish rename"
	# the flush of in/cur/E: the commit thread's last round (nothing fresh
	# left) flushes the claim area alone, so this run drains the queue
	# first; inputs unlinked, copies unpublished
	aimed dirsync /in/cur/e 1 R "at the flush of the claim area after the unlinks (the last round)"
else
	echo "skip aimed kills: $INJECT not built (make unit-tests builds it)"
fi

# recovery and the rest
rc=0
"$DKIMPRESS" run -c "$W/conf" --once >"$W/summary" 2>>"$W/log" || rc=$?
cat "$W/summary"
grep -h "recovery:" "$W/log" | tail -3
[ "$rc" = 0 ] && ok "the final run exits 0" || bad "the final run exited $rc"

left=$(find "$W/q/in/new" "$W/q/in/cur" "$W/q/out/tmp" -type f | wc -l)
[ "$left" = 0 ] && ok "in/new, in/cur and out/tmp are empty" || bad "$left files left in in/new, in/cur or out/tmp"
nfail=$(find "$W/q/failed" -type f | wc -l)
[ "$nfail" = 0 ] && ok "nothing in failed/" || bad "$nfail files in failed/"
ls "$W/q/out/new" | sort >"$W/outs"
head -n "$fed" "$W/ids" | sort >"$W/fed"
if cmp -s "$W/fed" "$W/outs"; then
	ok "every one of the $fed input IDs is in out/new, exactly once"
else
	bad "out/new differs from the inputs: $(comm -23 "$W/fed" "$W/outs" | wc -l) missing, $(comm -13 "$W/fed" "$W/outs" | wc -l) unexpected"
fi

# each output = its input plus the new fields, nothing else
/usr/bin/python3 - "$W/orig/in/new" "$W/q/out/new" >"$W/shape" <<'PY'
import os, sys
orig, out = sys.argv[1], sys.argv[2]
bad = 0
for name in sorted(os.listdir(out)):
    data = open(os.path.join(out, name), "rb").read()
    src = open(os.path.join(orig, name), "rb").read()
    want = 1 if b"@nokey.example" in src.split(b"\r\n\r\n", 1)[0] else 2
    rest, n = data, 0
    while rest.startswith(b"DKIM-Signature:"):
        end = rest.index(b"\r\n") + 2
        while rest[end:end + 1] in (b" ", b"\t"):
            end = rest.index(b"\r\n", end) + 2
        rest, n = rest[end:], n + 1
    if n != want or rest != src:
        bad += 1
        print("%s: %d signatures (want %d), body %s" % (name, n, want, "same" if rest == src else "DIFFERS"))
print("shape: %d bad" % bad)
sys.exit(1 if bad else 0)
PY
if [ $? = 0 ]; then
	ok "each output is its input plus its DKIM-Signature fields (2, or 1 without a customer key)"
else
	bad "outputs with the wrong shape: $(tail -1 "$W/shape")"; head -5 "$W/shape"
fi

# every signature, verified by dkimpy
ls -d "$W/q/out/new"/* >"$W/list"
/usr/bin/python3 "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --list "$W/list" >"$W/dkimpy" 2>&1
if [ $? = 0 ]; then
	ok "dkimpy verifies every signature: $(tail -1 "$W/dkimpy")"
else
	bad "dkimpy: $(tail -1 "$W/dkimpy")"; grep -m5 "	fail	" "$W/dkimpy"
fi
grep -iE "sanitizer|runtime error" "$W/log" >/dev/null && bad "sanitizer reports in the engine's log" && grep -m5 -iE "sanitizer|runtime error" "$W/log"
echo "crash: $pass passed, $fail failed"
[ "$fail" = 0 ]
