#!/usr/bin/env bash
# tests/queue/regress.sh — one regression test per queue-protocol defect of
# the engine before docs/queue.md (the engine-area protocol). Each test
# failed against the old engine (f7e8045, before the redesign) and must
# pass against the new one. The defects, one section each below:
#
#  1. published twice after a crash when a consumer empties out/new: the
#     old engine published (rename into out/new) before it retired the
#     input (unlink in/cur/ID) and decided at recovery from out/new; a
#     consumer that took out/new/ID in between made recovery sign it again.
#  2. a reused queue ID silently deleted a message: a publish rename that
#     found out/new/ID (an earlier message, a symlink, a directory) was
#     taken for "already published", and the input was retired; failed/ID
#     and its reason were overwritten by a second failure with the same ID;
#     a claim of an ID still claimed under the same name was dropped.
#  3. `--once` livelocked on a claim that kept failing: the same ID in the
#     old in/cur/ID and in in/new, or a claim rename failing with EACCES,
#     EROFS or EIO, made `run --once` (and watch mode) spin for ever,
#     silently, at 100% CPU.
#  4. SIGTERM under `--once` exited 0 while messages were left in in/new.
#  5. a producer writing straight into in/new got its message published
#     truncated: the engine claimed a file still open for writing, and did
#     not notice a file that grew between its read and its retire.
#  6. (step 2 of the protocol) a FIFO, a symlink or a directory in in/new
#     was deferred for ever by the old engine; it must go to failed/ with a
#     reason, and must never hang the engine (open() of a FIFO blocks).
#
# Every check prints "ok ..." or "FAIL ..."; the last line is
# "queue-regress: N passed, N failed". Exit 0 only if all passed, 77 if it
# cannot run (no strace or no ptrace, no binary). Env: DKIMPRESS (default
# build/dkimpress), REGRESS_ONLY="1 3" to run some sections only.
# Needs strace (syscall fault injection: -e inject=...); the fault
# injection runs use `io = syscalls` so that every queue step is a real
# system call strace can stop (io_uring operations are not syscalls).
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
D=$DKIMPRESS
PY=/usr/bin/python3
ONLY=${REGRESS_ONLY:-1 2 3 4 5 6}

if [ ! -x "$D" ]; then
	echo "queue-regress: cannot run: $D is not an executable (build it first)"
	exit 77
fi
if ! command -v strace >/dev/null 2>&1; then
	echo "queue-regress: cannot run: strace is not installed (apt-get install strace)"
	exit 77
fi
if ! strace -f -o /dev/null true 2>/dev/null; then
	echo "queue-regress: cannot run: strace cannot trace here (ptrace not permitted)"
	exit 77
fi
[ -x "$PY" ] || { echo "queue-regress: cannot run: $PY missing"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-qregress.XXXXXX")
T=$(realpath "$T")	# strace -P compares resolved paths
BG=()
cleanup() {
	local p
	for p in "${BG[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
within() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a < s) }'; }	# within T0 SECONDS

# LeakSanitizer cannot work under ptrace: no leak check in strace'd runs
UNDER_STRACE=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
# a private copy of the binary: a rebuild meanwhile must not disturb the run
cp "$D" "$T/dkimpress" && D=$T/dkimpress
mkdir -p "$T/k"
"$D" keygen --domain esp.example --selector e --type ed25519 --out "$T/k" >"$T/dns.txt" 2>/dev/null
if [ ! -s "$T/k/e.private" ]; then
	echo "queue-regress: cannot run: $D keygen failed"
	exit 77
fi

# writer.py: producers that break the rules (sections 1d and 5)
cat >"$T/writer.py" <<'PY'
import glob, os, sys, time
mode, path, first, rest, status = sys.argv[1:6]
def note(s):
    with open(status, "a") as f:
        f.write(s + "\n")
if mode == "slow":
    # open in/new/ID, write half, sleep (the engine runs), write the rest
    pause = float(sys.argv[6])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, first.encode().decode("unicode_escape").encode())
    note("half")
    time.sleep(pause)
    os.write(fd, rest.encode().decode("unicode_escape").encode())
    os.close(fd)
    note("closed")
elif mode == "hold":
    # keep path open for writing (nothing more written) until sys.argv[6] exists
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    note("held")
    deadline = time.time() + 60
    while not os.path.exists(sys.argv[6]) and time.time() < deadline:
        time.sleep(0.01)
    os.close(fd)
    note("released")
elif mode == "after-claim":
    # the first half is already in in/new/ID (closed); wait for the claim,
    # reopen the claimed file and append the rest
    qid = os.path.basename(path)
    cur = os.path.join(os.path.dirname(os.path.dirname(path)), "cur")
    deadline = time.time() + 25
    while time.time() < deadline:
        hits = [p for p in glob.glob(os.path.join(cur, qid)) + glob.glob(os.path.join(cur, "*", qid))
                if os.path.isfile(p)]
        if hits:
            try:
                fd = os.open(hits[0], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
                note("appending to " + hits[0])
            except BlockingIOError:
                note("lease held on " + hits[0] + ": blocking open")
                fd = os.open(hits[0], os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                continue
            os.write(fd, rest.encode().decode("unicode_escape").encode())
            os.close(fd)
            note("appended")
            sys.exit(0)
        time.sleep(0.002)
    note("never saw the claim")
PY

# newq NAME [conf lines...]: a fresh queue $Q with its configuration $C
newq() {
	local name=$1
	shift
	Q=$T/$name/q C=$T/$name/conf L=$T/$name
	mkdir -p "$Q/in/tmp" "$Q/in/new"
	{
		echo "queue_dir = $Q"
		echo "esp_key = esp.example:e:$T/k/e.private"
		local l
		for l in "$@"; do echo "$l"; done
	} >"$C"
}
# msg TOKEN [nofrom]: a message whose body ends with TOKEN
msg() {
	if [ "${2:-}" = nofrom ]; then
		printf 'To: b@example.net\r\nSubject: X\r\n\r\nthis one has no From field\r\n%s\r\n' "$1"
	else
		printf 'From: a@esp.example\r\nSubject: X\r\n\r\nbody of a test message\r\n%s\r\n' "$1"
	fi
}
# enqueue ID TOKEN [nofrom]: as a producer must, through in/tmp
# A link, not mv: a test must never replace a queued message itself (an
# ID still in in/new makes enqueue fail and leaves in/new/ID untouched).
enqueue() {
	msg "$2" "${3:-}" >"$Q/in/tmp/$1"
	if ! ln "$Q/in/tmp/$1" "$Q/in/new/$1" 2>/dev/null; then
		rm -f "$Q/in/tmp/$1"
		return 1
	fi
	rm -f "$Q/in/tmp/$1"
}
# ntok TOKEN DIR...: how many regular files (symlinks not followed, reason
# files not counted) under DIRs contain TOKEN
ntok() {
	local tok=$1
	shift
	find "$@" -type f ! -name '*.reason' -print0 2>/dev/null |
		xargs -0r grep -lF -- "$tok" 2>/dev/null | wc -l
}
# consume: take every file out of out/new, as a downstream MTA would
CONS=0
consume() {
	local f
	mkdir -p "$L/sink"
	for f in "$Q"/out/new/*; do
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		CONS=$((CONS + 1))
		mv "$f" "$L/sink/$CONS.${f##*/}"
	done
}
leftovers() {	# files left in in/ (any layout) and out/tmp
	find "$Q/in" "$Q/out/tmp" -type f 2>/dev/null | sed "s|^$Q/||" | tr '\n' ' '
}
showlog() { sed 's/^/     | /' "$1" | head -"${2:-8}"; }

# ================================================================ 1
# Defect 1: published twice after a crash when out/new is consumed.
# kill -9 (strace: SIGKILL injected at a chosen system call) at every point
# the matrix reaches, a consumer empties out/new, a normal run recovers:
# every token must have been consumed exactly once in total (the consumer's
# sink + out/new), nothing in failed/, nothing left in in/ or out/tmp, and
# the recovery run exits 0.
#  1a one message, killed at the first unlinkat (the old engine: after the
#     publish, before the retire); 1b at the publish renameat2 (into
#     out/new); 1c at the fsync of out/new.
#  1m the matrix: 2 messages, io = syscalls and io = auto, every
#     occurrence of unlinkat, renameat2, fsync, syncfs (on any path, on
#     in/new, on out/new).
#  1f the fail path (a message without From beside a good one): the bad
#     one ends once in failed/, every failed file with a reason.
#  1d the defer path (the message open for writing, so put back): once.
# crashrun NAME NMSG IO SYSCALL PATH WHEN [KIND]: sets KILLED (1/0) and RES.
# KIND normal: NMSG good messages m1..; fail: m1 good and f1 without a From
# field (the fail path: reason file, link, rename into failed/); defer: m1
# good but held open for writing by another process during the killed run
# (no read lease: the defer path puts it back into in/new), released after.
crashrun() {
	local name=$1 nmsg=$2 io=$3 sc=$4 path=$5 when=$6 kind=${7:-normal} i rc2 n bad1="" hpid=""
	newq "$name" "io = $io" "threads = 1" "batch = 1"
	for i in $(seq 1 "$nmsg"); do enqueue "m$i" "TOK-$name-$i-END"; done
	[ "$kind" = fail ] && enqueue f1 "TOK-$name-f1-END" nofrom
	if [ "$kind" = defer ]; then
		$PY "$T/writer.py" hold "$Q/in/new/m1" "" "" "$L/status" "$L/release" &
		hpid=$!
		BG+=("$hpid")
		for i in $(seq 1 300); do grep -q held "$L/status" 2>/dev/null && break; sleep 0.01; done
	fi
	local pflag=()
	[ -n "$path" ] && pflag=(-P "$Q/$path")
	# (in a subshell, so that bash does not report "Killed")
	(timeout -k 5 30 "${UNDER_STRACE[@]}" strace -f -o "$L/strace" -e trace="$sc" "${pflag[@]}" \
		-e inject="$sc:signal=SIGKILL:when=$when" \
		"$D" run -c "$C" --once >"$L/run1.out" 2>"$L/run1.err"; :) 2>/dev/null
	KILLED=0
	grep -q "killed by SIGKILL" "$L/strace" && KILLED=1
	if [ -n "$hpid" ]; then
		touch "$L/release"
		wait "$hpid"
	fi
	consume
	rc2=0
	timeout -k 5 30 "$D" run -c "$C" --once >"$L/run2.out" 2>"$L/run2.err" || rc2=$?
	consume
	for i in $(seq 1 "$nmsg"); do
		n=$(ntok "TOK-$name-$i-END" "$L/sink" "$Q/out/new")
		[ "$n" = 1 ] || bad1="$bad1 m$i:${n}x"
	done
	local left failed want_rc=0 f
	left=$(leftovers)
	if [ "$kind" = fail ]; then
		want_rc=65
		n=$(ntok "TOK-$name-f1-END" "$Q/failed")
		[ "$n" = 1 ] || bad1="$bad1 f1:${n}x in failed/"
		n=$(ntok "TOK-$name-f1-END" "$L/sink" "$Q/out/new")
		[ "$n" = 0 ] || bad1="$bad1 f1:${n}x published"
		for f in "$Q"/failed/*; do
			case $f in *.reason) continue ;; esac
			[ -s "$f.reason" ] || bad1="$bad1 ${f##*/} has no reason"
		done
		failed=0
	else
		failed=$(ls -A "$Q/failed" 2>/dev/null | wc -l)
	fi
	RES=""
	[ -z "$bad1" ] || RES="consumed$bad1"
	# (the fail kind: 65 if f1 failed in this run, 0 if it had already)
	case "$rc2:$want_rc" in 0:0 | 65:65 | 0:65) ;; *) RES="$RES; recovery run exit $rc2" ;; esac
	[ -z "$left" ] || RES="$RES; left: $left"
	[ "$failed" = 0 ] || RES="$RES; $failed files in failed/"
	RES=${RES#; }
}
# matrix DESC NMSG KIND IO "SYSCALLS" "PATHS": every (syscall, path) pair,
# each occurrence (when=1, 2, ... until a run is no longer killed, at most
# 8); strace counts occurrences per thread, -P PATH restricts the count
# to calls on that directory, which reaches worker calls that the main
# thread's calls would otherwise shadow
MIDX=0
matrix() {
	local desc=$1 nmsg=$2 kind=$3 io=$4 scs=$5 paths=$6 sc path when pts badpts d
	for sc in $scs; do
		for path in $paths; do
			[ "$path" = - ] && path=""
			pts=0 badpts=""
			for when in $(seq 1 8); do
				MIDX=$((MIDX + 1))
				crashrun "t1m$MIDX" "$nmsg" "$io" "$sc" "$path" "$when" "$kind"
				[ "$KILLED" = 1 ] || { [ -z "$RES" ] || badpts="$badpts [no kill: $RES]"; break; }
				pts=$((pts + 1))
				[ -z "$RES" ] || badpts="$badpts [when=$when: $RES]"
			done
			d="io=$io, SIGKILL at each $sc${path:+ on $path} ($pts kill points), consumer, rerun"
			if [ "$pts" = 0 ] && [ -z "$badpts" ]; then
				echo "--   $desc: $d: no such call, not counted"
				continue
			fi
			check '[ -z "$badpts" ]' "$desc: $d: $DESC_OK" "$badpts"
		done
	done
}
if want 1; then
	echo "== 1. published twice after a crash when a consumer empties out/new"
	crashrun t1a 1 syscalls unlinkat "" 1
	check '[ "$KILLED" = 1 ] && [ -z "$RES" ]' \
		"1a: kill -9 at the first unlinkat, out/new consumed, rerun: the message was consumed exactly once" \
		"killed=$KILLED; $RES"
	[ -z "$RES" ] || showlog "$L/run2.err"
	# (the publish: with the commit thread it is that thread's first
	# renameat2, no longer the worker's second one after the claim)
	crashrun t1b 1 syscalls renameat2 out/new 1
	check '[ "$KILLED" = 1 ] && [ -z "$RES" ]' \
		"1b: kill -9 at the publish renameat2 (into out/new), out/new consumed, rerun: exactly once" \
		"killed=$KILLED; $RES"
	crashrun t1c 1 syscalls fsync out/new 1
	check '[ "$KILLED" = 1 ] && [ -z "$RES" ]' \
		"1c: kill -9 at the fsync of out/new, out/new consumed, rerun: exactly once" \
		"killed=$KILLED; $RES"
	# the matrix: 2 messages, batch 1, one thread
	for io in syscalls auto; do
		DESC_OK="each of 2 messages consumed exactly once"
		matrix 1m 2 normal "$io" "unlinkat renameat2 fsync syncfs" "- in/new out/new"
	done
	# the fail path (a message without From beside a good one)
	DESC_OK="the good one consumed once, the bad one once in failed/ with a reason"
	matrix 1f 1 fail syscalls "renameat2 linkat unlinkat fsync" "- failed"
	# the defer path (the message is open for writing: put back in in/new)
	DESC_OK="put back, then consumed exactly once"
	matrix 1d 1 defer syscalls "renameat2 fsync" "- in/new"
fi

# ================================================================ 2
# Defect 2: a reused queue ID silently deleted a message.
#  2a out/new/x holds an earlier message: the new x is published as another
#     file (x.dupN, and the log names it) or failed with a reason; the
#     first stays untouched (same inode).
#  2b out/new/x is a symlink, 2c a directory: both stay untouched, the
#     message is published under another name.
#  2d two malformed messages with ID y, one run each: both in failed/,
#     failed/y still the first, each with its own non-empty reason.
#  2e the ID is queued again while the first is claimed and then put back
#     (in/new/ID taken): both end published once.
# nth ID...: do both tokens exist exactly once, published or failed?
where() {	# where TOKEN: "out/new/NAME", "failed/NAME" or counts
	local tok=$1 a b
	a=$(grep -rlF -- "$tok" "$Q/out/new" 2>/dev/null | grep -v '\.reason$')
	b=$(grep -rlF -- "$tok" "$Q/failed" 2>/dev/null | grep -v '\.reason$')
	echo "$a $b" | sed "s|$Q/||g; s/^ *//; s/ *$//"
}
if want 2; then
	echo "== 2. a reused queue ID must never delete or overwrite a message"
	newq t2a
	enqueue x TOK-t2a-first-END
	"$D" run -c "$C" --once >"$L/r1.out" 2>"$L/r1.err"
	ino=$(stat -c %i "$Q/out/new/x" 2>/dev/null)
	enqueue x TOK-t2a-second-END
	rc=0
	"$D" run -c "$C" --once >"$L/r2.out" 2>"$L/r2.err" || rc=$?
	w2=$(where TOK-t2a-second-END)
	check '[ "$(ntok TOK-t2a-first-END "$Q/out/new")" = 1 ] && [ "$(stat -c %i "$Q/out/new/x")" = "$ino" ] && grep -q TOK-t2a-first-END "$Q/out/new/x"' \
		"2a: the first message stays untouched as out/new/x" "$(ls "$Q/out/new" | tr '\n' ' ')"
	check '[ "$(ntok TOK-t2a-second-END "$Q/out/new" "$Q/failed")" = 1 ] && [ -z "$(leftovers)" ]' \
		"2a: the second message with ID x is published under another name (or failed with a reason), once" \
		"second found at: '${w2}'; exit $rc; $(tr '\n' ' ' <"$L/r2.out")"
	case $w2 in
	out/new/*) check 'grep -qF "${w2#out/new/}" "$L/r2.err"' \
		"2a: the run warns and names the new file ${w2#out/new/}" "$(tr '\n' ' ' <"$L/r2.err")" ;;
	failed/*) check '[ -s "$Q/$w2.reason" ] && [ "$rc" = 65 ]' "2a: in failed/ with its reason, exit 65" "exit $rc" ;;
	esac

	newq t2b
	echo "TARGET CONTENT" >"$L/target"
	mkdir -p "$Q/out/new"
	ln -s "$L/target" "$Q/out/new/x"
	enqueue x TOK-t2b-END
	rc=0
	"$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err" || rc=$?
	check '[ -L "$Q/out/new/x" ] && [ "$(readlink "$Q/out/new/x")" = "$L/target" ] && [ "$(cat "$L/target")" = "TARGET CONTENT" ]' \
		"2b: a symlink out/new/x (and its target) stays untouched"
	check '[ "$(ntok TOK-t2b-END "$Q/out/new" "$Q/failed")" = 1 ] && [ -z "$(leftovers)" ]' \
		"2b: the message with ID x beside the symlink is published under another name (or failed), once" \
		"found at: '$(where TOK-t2b-END)'; exit $rc; $(tr '\n' ' ' <"$L/r.out")"

	newq t2c
	mkdir -p "$Q/out/new/x"
	echo inner >"$Q/out/new/x/inner"
	enqueue x TOK-t2c-END
	rc=0
	"$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err" || rc=$?
	check '[ -d "$Q/out/new/x" ] && [ ! -L "$Q/out/new/x" ] && [ "$(cat "$Q/out/new/x/inner")" = inner ] && [ "$(ls -A "$Q/out/new/x")" = inner ]' \
		"2c: a directory out/new/x stays untouched"
	check '[ "$(find "$Q/out/new" "$Q/failed" -type f ! -name "*.reason" ! -path "*/x/inner" -print0 | xargs -0r grep -lF TOK-t2c-END | wc -l)" = 1 ] && [ -z "$(leftovers)" ]' \
		"2c: the message with ID x beside the directory is published under another name (or failed), once" \
		"found at: '$(where TOK-t2c-END)'; exit $rc; $(tr '\n' ' ' <"$L/r.out")"

	newq t2d
	enqueue y TOK-t2d-first-END nofrom
	rc1=0 rc2=0
	"$D" run -c "$C" --once >"$L/r1.out" 2>"$L/r1.err" || rc1=$?
	enqueue y TOK-t2d-second-END nofrom
	"$D" run -c "$C" --once >"$L/r2.out" 2>"$L/r2.err" || rc2=$?
	check '[ "$rc1" = 65 ] && [ "$rc2" = 65 ]' "2d: both runs with a malformed message exit 65" "exit $rc1, $rc2"
	check 'grep -q TOK-t2d-first-END "$Q/failed/y" 2>/dev/null && [ "$(ntok TOK-t2d-first-END "$Q/failed")" = 1 ]' \
		"2d: the first failed message stays failed/y, not overwritten" "failed/: $(ls "$Q/failed" | tr '\n' ' ')"
	check '[ "$(ntok TOK-t2d-second-END "$Q/failed")" = 1 ]' \
		"2d: the second malformed message with ID y is in failed/ too, under another name" \
		"failed/: $(ls "$Q/failed" | tr '\n' ' ')"
	nreason=0 nmsg=0
	for f in "$Q"/failed/*; do
		case $f in *.reason) continue ;; esac
		nmsg=$((nmsg + 1))
		[ -s "$f.reason" ] && grep -qi from "$f.reason" && nreason=$((nreason + 1))
	done
	check '[ "$nmsg" = 2 ] && [ "$nreason" = 2 ] && [ "$(ls "$Q/failed" | grep -c "\.reason$")" = 2 ]' \
		"2d: each of the two failed messages has its own reason file (naming the From problem)" \
		"$nmsg messages, $nreason with a reason: $(ls "$Q/failed" | tr '\n' ' ')"

	# 2e: the ID is queued again while the first message is claimed, and
	# the first is put back (it is still open for writing: no read lease).
	# strace holds every rename on in/new 1 s before it runs (renameat2
	# with no flags is renameat to glibc; strace counts calls per thread,
	# and claims and put-backs run on different threads), so while the
	# writer holds m1, each time in/cur holds it a put-back is pending.
	# The second m1 is linked in then; had the put-back won the race (a
	# slow poll under load), the link fails, nothing is replaced, and the
	# test waits for the next claim.
	newq t2e "io = syscalls" "threads = 1" "batch = 1"
	enqueue m1 TOK-t2e-first-END
	$PY "$T/writer.py" hold "$Q/in/new/m1" "" "" "$L/status" "$L/release" &
	hpid=$!
	BG+=("$hpid")
	for i in $(seq 1 300); do grep -q held "$L/status" 2>/dev/null && break; sleep 0.01; done
	timeout -k 5 60 "${UNDER_STRACE[@]}" strace -f -o /dev/null -P "$Q/in/new" -e trace=renameat,renameat2 \
		-e inject=renameat,renameat2:delay_enter=1000000:when=1+ \
		"$D" run -c "$C" --once >"$L/r1.out" 2>"$L/r1.err" &
	epid=$!
	BG+=("$epid")
	queued=0 tries=0 t0=$(now)
	while [ "$queued" = 0 ] && within "$t0" 30; do
		if [ -n "$(find "$Q/in/cur" -name m1 -type f 2>/dev/null)" ]; then
			tries=$((tries + 1))
			if enqueue m1 TOK-t2e-second-END; then queued=1; break; fi
			# the put-back came first: wait until in/cur is empty again
			while [ -n "$(find "$Q/in/cur" -name m1 -type f 2>/dev/null)" ] &&
				within "$t0" 30; do sleep 0.01; done
		fi
		sleep 0.01
	done
	touch "$L/release"
	wait "$hpid"
	rc1=0
	wait "$epid" || rc1=$?
	rc2=0
	"$D" run -c "$C" --once >"$L/r2.out" 2>"$L/r2.err" || rc2=$?
	n1=$(ntok TOK-t2e-first-END "$Q/out/new" "$Q/failed")
	n2=$(ntok TOK-t2e-second-END "$Q/out/new" "$Q/failed")
	check '[ "$queued" = 1 ] && [ "$n1" = 1 ] && [ "$n2" = 1 ] && [ -z "$(leftovers)" ]' \
		"2e: a message put back while its ID was queued again: both published, once each (exits $rc1, $rc2)" \
		"second queued: $queued (after $tries claims seen); first ${n1}x, second ${n2}x; out/new: $(ls "$Q/out/new" | tr '\n' ' '); left: $(leftovers)"
	grep -m1 "put back as" "$L/r1.err" | sed 's/^/   engine: /'
fi

# ================================================================ 3
# Defect 3: --once (and watch mode) livelocked on a claim that kept failing.
#  3a in/cur/x (the old claim layout) and in/new/x: run --once ends within
#     30 s by itself, both messages published (or failed) once each.
#  3b every claim rename (renameat2 on in/new, strace -P) fails with
#     EACCES, EROFS or EIO: run --once exits with a sysexits code (64-78)
#     within 20 s, logs the strerror text 1-20 times (at most 50 lines),
#     the message stays in in/new.
#  3c the same (EACCES) in watch mode: a non-zero exit within 20 s, the
#     cause logged, no flood, the message still in in/new.
if want 3; then
	echo "== 3. a claim that cannot succeed must not make the engine spin for ever"
	newq t3a
	mkdir -p "$Q/in/cur"
	msg TOK-t3a-cur-END >"$Q/in/cur/x"	# the old layout: a claim in in/cur/ID
	enqueue x TOK-t3a-new-END
	t0=$(now)
	rc=0
	timeout -k 5 30 "$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err" || rc=$?
	el=$(since "$t0")
	check '[ "$rc" != 124 ] && [ "$rc" != 137 ]' "3a: same ID in (old-layout) in/cur and in/new: run --once terminates by itself" \
		"killed by timeout 30 s (exit $rc, $(wc -l <"$L/r.err") log lines)"
	n1=$(ntok TOK-t3a-cur-END "$Q/out/new" "$Q/failed")
	n2=$(ntok TOK-t3a-new-END "$Q/out/new" "$Q/failed")
	check '[ "$n1" = 1 ] && [ "$n2" = 1 ] && [ -z "$(leftovers)" ]' \
		"3a: both messages end published (or failed with a reason), once each, nothing left in in/" \
		"in/cur one: ${n1}x, in/new one: ${n2}x; left: $(leftovers); exit $rc after ${el}s"
	[ "$rc" = 0 ] || [ "$rc" = 65 ] || showlog "$L/r.err" 4

	for spec in EACCES:"Permission denied" EROFS:"Read-only file system" EIO:"Input/output error"; do
		err=${spec%%:*} text=${spec#*:}
		newq "t3b-$err" "io = syscalls"
		enqueue m1 "TOK-t3b-$err-END"
		t0=$(now)
		rc=0
		timeout -k 5 30 "${UNDER_STRACE[@]}" strace -f -o /dev/null -P "$Q/in/new" -e trace=renameat2 \
			-e inject="renameat2:error=$err" \
			"$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err" || rc=$?
		el=$(since "$t0")
		nlines=$(grep -c "$text" "$L/r.err")
		check '[ "$rc" -ge 64 ] && [ "$rc" -le 78 ] && awk -v e="$el" "BEGIN { exit !(e <= 20) }"' \
			"3b: every claim rename fails with $err: run --once gives up with a sysexits code within 20 s (took ${el}s, exit $rc)" \
			"exit $rc after ${el}s (124 = killed by the 30 s timeout)"
		check '[ "$nlines" -ge 1 ] && [ "$nlines" -le 20 ] && [ "$(wc -l <"$L/r.err")" -le 50 ]' \
			"3b: $err: the log says '$text' ($nlines times) and is not flooded ($(wc -l <"$L/r.err") lines)" \
			"'$text' $nlines times, $(wc -l <"$L/r.err") lines"
		check '[ -f "$Q/in/new/m1" ] && [ -z "$(ls -A "$Q/out/new" 2>/dev/null)" ] && [ -z "$(ls -A "$Q/failed" 2>/dev/null)" ]' \
			"3b: $err: the message stays in in/new (nothing published, nothing failed)" "$(find "$Q" -type f | sed "s|$Q/||" | tr '\n' ' ')"
	done

	newq t3c "io = syscalls"
	enqueue m1 TOK-t3c-END
	t0=$(now)
	rc=0
	timeout -k 5 30 "${UNDER_STRACE[@]}" strace -f -o /dev/null -P "$Q/in/new" -e trace=renameat2 -e inject=renameat2:error=EACCES \
		"$D" run -c "$C" >"$L/r.out" 2>"$L/r.err" || rc=$?
	el=$(since "$t0")
	check '[ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$rc" != 137 ] && awk -v e="$el" "BEGIN { exit !(e <= 20) }"' \
		"3c: watch mode with every claim failing (EACCES) exits non-zero within 20 s (took ${el}s, exit $rc)" \
		"exit $rc after ${el}s (124 = still running at the 30 s timeout); log: $(grep -c . "$L/r.err") lines"
	check 'grep -q "Permission denied" "$L/r.err" && [ "$(wc -l <"$L/r.err")" -le 50 ] && [ -f "$Q/in/new/m1" ]' \
		"3c: watch mode: the log names the cause, is not flooded, the message stays in in/new" \
		"$(grep -c "Permission denied" "$L/r.err") 'Permission denied', $(wc -l <"$L/r.err") lines"
fi

# ================================================================ 4
# Defect 4: SIGTERM under --once exited 0 with messages left in in/new.
# 3000 messages, run --once, SIGTERM after 0.3 s (or as soon as 100, 10,
# 1 are published, so that it lands mid-run): with messages left in
# in/new the exit is 75; out/new + in/new + failed hold each token once;
# no file left in in/cur or out/tmp after the clean stop.
# tally NLIST DIR...: each token TOK-<id>-END of NLIST (one id a line) once?
tally() {
	local list=$1
	shift
	$PY - "$list" "$@" <<'PY'
import os, re, sys
want = [l.strip() for l in open(sys.argv[1]) if l.strip()]
seen = {}
pat = re.compile(rb"TOK-([A-Za-z0-9._-]+?)-END")
for d in sys.argv[2:]:
    for root, dirs, files in os.walk(d):
        for f in files:
            if f.endswith(".reason"):
                continue
            p = os.path.join(root, f)
            if os.path.islink(p):
                continue
            for t in set(pat.findall(open(p, "rb").read())):
                seen[t.decode()] = seen.get(t.decode(), 0) + 1
missing = [w for w in want if seen.get(w, 0) == 0]
dups = [w for w in want if seen.get(w, 0) > 1]
print("%d expected, %d missing, %d more than once%s%s" % (
    len(want), len(missing), len(dups),
    (" (missing: %s)" % " ".join(missing[:5])) if missing else "",
    (" (twice: %s)" % " ".join(dups[:5])) if dups else ""))
sys.exit(1 if missing or dups else 0)
PY
}
if want 4; then
	echo "== 4. SIGTERM under --once: messages left queued means exit 75, not 0"
	caught=0
	for attempt in 100 10 1; do
		newq "t4-$attempt"
		$PY - "$Q/in/new" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(3000):
    body = "".join("filler line %d of message %d\r\n" % (j, i) for j in range(10))
    with open(os.path.join(d, "s%05d" % i), "w", newline="") as f:
        f.write("From: a@esp.example\r\nSubject: X\r\n\r\n" + body + "TOK-s%05d-END\r\n" % i)
PY
		seq -f 's%05g' 0 2999 >"$L/ids"
		"$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err" &
		pid=$!
		BG+=("$pid")
		t0=$(now)
		# SIGTERM after 0.3 s, or as soon as $attempt are published
		while awk -v e="$(since "$t0")" 'BEGIN { exit !(e < 0.3) }' &&
			[ "$(ls "$Q/out/new" 2>/dev/null | wc -l)" -lt "$attempt" ]; do
			sleep 0.005
		done
		kill -TERM "$pid"
		rc=0
		wait "$pid" || rc=$?
		left=$(ls "$Q/in/new" | wc -l)
		published=$(ls "$Q/out/new" | wc -l)
		echo "   SIGTERM after $(since "$t0")s: exit $rc, $published published, $left left in in/new: $(tr '\n' ' ' <"$L/r.out")"
		[ "$left" -gt 0 ] && { caught=1; break; }
	done
	if [ "$caught" = 1 ]; then
		check '[ "$rc" = 75 ]' "4: SIGTERM under --once with $left messages left in in/new: exit 75" "exit $rc"
	else
		bad "4: could not stop run --once before it had drained 3000 messages (exit $rc); the test could not check the exit code"
	fi
	trc=0
	tally "$L/ids" "$Q/out/new" "$Q/in/new" "$Q/failed" >"$L/tally" || trc=$?
	check '[ "$trc" = 0 ]' \
		"4: nothing lost: out/new + in/new + failed hold each of the 3000 tokens once ($(cat "$L/tally"))"
	check '[ -z "$(find "$Q/in/cur" "$Q/out/tmp" -type f 2>/dev/null)" ] && [ -z "$(ls -A "$Q/failed")" ]' \
		"4: after a clean stop no claim or temporary copy is left (in/cur, out/tmp), nothing failed" \
		"$(find "$Q/in/cur" "$Q/out/tmp" -type f | wc -l) files left"
fi

# ================================================================ 5
# Defect 5: a producer writing straight into in/new got its message
# published truncated. The marker TOK-...-END is the last body line, the
# first half carries TOK-...-START: a published file with START but no
# END is a truncated publication.
#  5a a writer opens in/new/w1, writes half, sleeps 2.5 s (run --once runs
#     meanwhile), writes the rest: nothing truncated published; the whole
#     message published once, or left complete in in/new and published
#     whole by a second run.
#  5b the same with a watching engine: published once, whole.
#  5c the writer closed after the first half; it is claimed; while the
#     engine flushes its copy (syncfs held 1.5 s by strace) the writer
#     reopens the claimed file and appends: the first half alone is never
#     published, the whole message is, once.
HDR='From: a@esp.example\r\nSubject: X\r\n\r\n'
# truncated DIR TAG: published files with the START mark but not the END
truncated() {
	grep -rlF -- "TOK-$2-START" "$1" 2>/dev/null | xargs -r grep -LF -- "TOK-$2-END" | wc -l
}
if want 5; then
	echo "== 5. a producer writing straight into in/new: never publish a message truncated"
	# 5a: run --once while the writer sleeps between its two halves
	newq t5a
	"$D" run -c "$C" --once >/dev/null 2>&1	# makes the directories
	$PY "$T/writer.py" slow "$Q/in/new/w1" "${HDR}first half TOK-t5a-START\r\n" \
		'second half\r\nTOK-t5a-END\r\n' "$L/status" 2.5 &
	wpid=$!
	BG+=("$wpid")
	for i in $(seq 1 200); do grep -q half "$L/status" 2>/dev/null && break; sleep 0.01; done
	rc1=0
	timeout -k 5 30 "$D" run -c "$C" --once >"$L/r1.out" 2>"$L/r1.err" || rc1=$?
	wait "$wpid"
	grep -m2 -F w1 "$L/r1.err" | sed 's/^/   engine: /'
	tr1=$(truncated "$Q/out/new" t5a)
	whole1=$(ntok TOK-t5a-END "$Q/out/new")
	inq=0
	grep -q TOK-t5a-END "$Q/in/new/w1" 2>/dev/null && inq=1
	check '[ "$tr1" = 0 ] && { [ "$whole1" = 1 ] || [ "$inq" = 1 ]; }' \
		"5a: run --once during the write: the message is published whole, or left complete in in/new (exit $rc1)" \
		"$tr1 truncated copies published; whole: $whole1; complete in in/new: $inq; $(tr '\n' ' ' <"$L/r1.out")"
	rc2=0
	timeout -k 5 30 "$D" run -c "$C" --once >"$L/r2.out" 2>"$L/r2.err" || rc2=$?
	check '[ "$(truncated "$Q/out/new" t5a)" = 0 ] && [ "$(ntok TOK-t5a-END "$Q/out/new")" = 1 ] && [ -z "$(leftovers)" ]' \
		"5a: after the writer closed, a second run: published once, whole (exit $rc2)" \
		"truncated: $(truncated "$Q/out/new" t5a), whole: $(ntok TOK-t5a-END "$Q/out/new"), left: $(leftovers)"

	# 5b: the same with an engine already watching the queue
	newq t5b
	"$D" run -c "$C" >"$L/w.out" 2>"$L/w.err" &
	epid=$!
	BG+=("$epid")
	sleep 0.5
	$PY "$T/writer.py" slow "$Q/in/new/w1" "${HDR}first half TOK-t5b-START\r\n" \
		'second half\r\nTOK-t5b-END\r\n' "$L/status" 2.5
	for i in $(seq 1 150); do [ "$(ntok TOK-t5b-END "$Q/out/new")" -ge 1 ] && break; sleep 0.1; done
	sleep 0.3
	kill -TERM "$epid"
	rc=0
	wait "$epid" || rc=$?
	check '[ "$(truncated "$Q/out/new" t5b)" = 0 ] && [ "$(ntok TOK-t5b-END "$Q/out/new")" = 1 ] && [ -z "$(leftovers)" ]' \
		"5b: watch mode: the message written slowly into in/new is published once, whole, within 15 s of its close (exit $rc on SIGTERM)" \
		"truncated: $(truncated "$Q/out/new" t5b), whole: $(ntok TOK-t5b-END "$Q/out/new"), left: $(leftovers)"

	# 5c: the writer appends after the claim, while the signed copy is
	# being flushed (syncfs delayed 1.5 s by strace): the engine must see
	# the input changed and sign it again, never publish the old half
	newq t5c "io = syscalls" "threads = 1"
	"$D" run -c "$C" --once >/dev/null 2>&1
	printf "${HDR}first half TOK-t5c-START\r\n" >"$Q/in/tmp/w1"
	mv "$Q/in/tmp/w1" "$Q/in/new/w1"
	$PY "$T/writer.py" after-claim "$Q/in/new/w1" "" 'second half\r\nTOK-t5c-END\r\n' "$L/status" &
	wpid=$!
	BG+=("$wpid")
	rc1=0
	timeout -k 5 60 "${UNDER_STRACE[@]}" strace -f -o /dev/null -e trace=syncfs -e inject=syncfs:delay_enter=1500000 \
		"$D" run -c "$C" --once >"$L/r1.out" 2>"$L/r1.err" || rc1=$?
	wait "$wpid"
	echo "   writer: $(tr '\n' ' ' <"$L/status")"
	grep -m2 -F w1 "$L/r1.err" | sed 's/^/   engine: /'
	check 'grep -q "^appended" "$L/status"' "5c: the writer appended to the claimed file before the engine finished" \
		"$(cat "$L/status")"
	tr1=$(truncated "$Q/out/new" t5c)
	check '[ "$tr1" = 0 ]' "5c: the first half alone was not published (exit $rc1)" \
		"$tr1 truncated copies in out/new: $(grep -rlF TOK-t5c-START "$Q/out/new" | sed "s|$Q/||" | tr '\n' ' ')"
	rc2=0
	timeout -k 5 30 "$D" run -c "$C" --once >"$L/r2.out" 2>"$L/r2.err" || rc2=$?
	check '[ "$(truncated "$Q/out/new" t5c)" = 0 ] && [ "$(ntok TOK-t5c-END "$Q/out/new")" = 1 ] && [ -z "$(leftovers)" ]' \
		"5c: in the end the message is published once, whole (runs exited $rc1, $rc2)" \
		"truncated: $(truncated "$Q/out/new" t5c), whole: $(ntok TOK-t5c-END "$Q/out/new"), left: $(leftovers)"
fi

# ================================================================ 6
# Not a regression of one old defect but of the protocol's step 2: what is
# not a regular file (a FIFO, a symlink, a directory) goes to failed/ with
# a reason, never hangs the engine, and a symlink is never followed. The
# old engine deferred all three for ever (exit 75, left in in/new); with
# io = syscalls the new one must not block in open() on the FIFO.
if want 6; then
	echo "== 6. a FIFO, a symlink and a directory in in/new: to failed/, no hang, nothing followed"
	for io in syscalls auto; do
		newq "t6-$io" "io = $io"
		enqueue m1 "TOK-t6-$io-END"
		printf 'From: a@esp.example\r\nSubject: secret\r\n\r\nSECRET-t6-%s\r\n' "$io" >"$L/secret"
		cp "$L/secret" "$L/secret.orig"
		mkfifo "$Q/in/new/fifo"
		ln -s "$L/secret" "$Q/in/new/sym"
		mkdir "$Q/in/new/dir"
		t0=$(now)
		rc=$( (timeout -k 5 20 "$D" run -c "$C" --once >"$L/r.out" 2>"$L/r.err"; echo $?) 2>/dev/null)
		el=$(since "$t0")
		check '[ "$rc" != 124 ] && [ "$rc" != 137 ]' "6: io=$io: run --once terminates by itself (${el}s, exit $rc)" \
			"still running after 20 s: SIGTERM did not stop it (exit $rc after ${el}s); $(find "$Q/in" -mindepth 2 | sed "s|$Q/||" | tr '\n' ' ')"
		check '[ "$(ntok "TOK-t6-$io-END" "$Q/out/new")" = 1 ] && ! grep -rqF "SECRET-t6-$io" "$Q/out/new" && cmp -s "$L/secret" "$L/secret.orig" && [ ! -L "$L/secret" ]' \
			"6: io=$io: the good message is published, the symlink's target is neither published nor touched"
		check '[ -p "$Q/failed/fifo" ] && [ -L "$Q/failed/sym" ] && [ -d "$Q/failed/dir" ] && [ -s "$Q/failed/fifo.reason" ] && [ -s "$Q/failed/sym.reason" ] && [ -s "$Q/failed/dir.reason" ] && [ "$rc" = 65 ]' \
			"6: io=$io: the FIFO, the symlink and the directory are in failed/ with reasons, exit 65" \
			"exit $rc; failed/: $(ls "$Q/failed" 2>/dev/null | tr '\n' ' '); in/: $(find "$Q/in" -mindepth 2 | sed "s|$Q/||" | tr '\n' ' ')"
	done
fi

if grep -rlE "AddressSanitizer|LeakSanitizer|runtime error:" --include='*.err' "$T" >/dev/null 2>&1; then
	bad "sanitizer reports in the engine logs"
	grep -rhE -m3 "AddressSanitizer|LeakSanitizer|runtime error:" --include='*.err' "$T" | head -3
fi
echo "queue-regress: $pass passed, $fail failed"
[ "$fail" = 0 ]
