#!/usr/bin/env bash
# tests/pipeline/run.sh — the queue protocol (docs/queue.md) in a live
# pipeline: producers, several engines, a consumer and kill -9, at once.
#
#  - a producer (producer.py) hands over PIPELINE_N messages (default
#    20000) at a steady pace, each through in/tmp and a rename into in/new,
#    its ID as file name and a unique token TOK-ID-END at the end of its body;
#  - THREE engines (`dkimpress run -c CONF`, watch mode, threads = 2) work
#    the same queue;
#  - a consumer (consumer.py) renames every file out of out/new into a sink
#    as soon as it appears (polls every 3 ms);
#  - a killer sends kill -9 to a random engine every 0.05-0.6 s (uniform)
#    and restarts it at once, at least PIPELINE_KILLS times (default 50),
#    for as long as the producer runs;
#  - then the engines drain the queue and get SIGTERM (they must exit 0 or
#    75), one last `run --once` recovers what the last kill left, and the
#    consumer finishes.
# Checks: each produced token is in the sink exactly once (duplicates and
# missing ones are listed by ID), failed/ is empty, no file is left in
# in/new, in/tmp, in/cur, out/tmp or out/new, no engine exited by itself,
# three engine areas (in/cur/E with its flock held) were live at once, and
# a random sample of 300 sink files (X-Sender:/X-Receiver: envelope lines
# stripped) verifies with dkimpy and libopendkim. It prints the counts
# (produced, consumed, duplicates, missing, kills) and the time taken.
# Ends with "pipeline: N passed, N failed"; exit 0 if all passed, 77 if it
# cannot run.
# Env: DKIMPRESS (default build/dkimpress), ODKIM_VERIFY (default
# build/tests/odkim_verify), PIPELINE_N, PIPELINE_KILLS, PIPELINE_SECONDS
# (how long the producer takes, default 40), PIPELINE_SET="io=syscalls
# flush=files" (extra settings for the engines). Under a sanitizer build (BUILD
# or DKIMPRESS contains "sanitize") the defaults are 3000 messages and 20
# kills over 30 s.
# The engine before docs/queue.md took a lock on the whole queue: its
# second and third engines exit 75 at once, again after every restart; this
# test reports that as engines exiting by themselves.
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
ODKIM_VERIFY=${ODKIM_VERIFY:-build/tests/odkim_verify}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
case $ODKIM_VERIFY in /*) ;; *) ODKIM_VERIFY=$PWD/$ODKIM_VERIFY ;; esac
D=$DKIMPRESS
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
SAN=0
case "${BUILD:-}:$DKIMPRESS" in *sanitize*) SAN=1 ;; esac
if [ "$SAN" = 1 ]; then
	N=${PIPELINE_N:-3000} KILLS=${PIPELINE_KILLS:-20} SECS=${PIPELINE_SECONDS:-30}
else
	N=${PIPELINE_N:-20000} KILLS=${PIPELINE_KILLS:-50} SECS=${PIPELINE_SECONDS:-40}
fi
NENG=3
SAMPLE=300

[ -x "$D" ] || { echo "pipeline: cannot run: $D is not an executable (build it first)"; exit 77; }
$PY -c 'import dkim, nacl' 2>/dev/null || { echo "pipeline: cannot run: $PY lacks dkim or nacl (python3-dkim, python3-nacl)"; exit 77; }

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-pipeline.XXXXXX")
ENG=()	# engine pid per slot
BG=()	# producer, consumer
cleanup() {
	local p
	for p in "${ENG[@]}" "${BG[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

[ "$SAN" = 1 ] && echo "(sanitizer build: $N messages and $KILLS kills, not 20000 and 50)"
echo "== $N messages over ${SECS}s, $NENG engines (threads = 2), a consumer, kill -9 at least $KILLS times"
# a private copy of the binary: a rebuild meanwhile must not disturb the run
cp "$D" "$W/dkimpress" && D=$W/dkimpress
mkdir -p "$W/k"
"$D" keygen --domain esp.example --selector e --type ed25519 --out "$W/k" >"$W/dns.txt" 2>/dev/null
[ -s "$W/k/e.private" ] || { echo "pipeline: cannot run: $D keygen failed"; exit 77; }
Q=$W/q C=$W/conf
mkdir -p "$Q/in/tmp" "$Q/in/new" "$Q/out/new" "$W/sink" "$W/logs"
cat >"$C" <<CONF
queue_dir = $Q
esp_key = esp.example:e:$W/k/e.private
threads = 2
CONF
for kv in ${PIPELINE_SET:-}; do echo "${kv%%=*} = ${kv#*=}" >>"$C"; done
[ -z "${PIPELINE_SET:-}" ] || echo "   (extra settings: ${PIPELINE_SET})"

GEN=0
EGEN=()	# the log number of each slot's engine
start_engine() {	# start_engine SLOT
	GEN=$((GEN + 1))
	EGEN[$1]=$GEN
	"$D" run -c "$C" >"$W/logs/e$1.$GEN.out" 2>"$W/logs/e$1.$GEN.err" &
	ENG[$1]=$!
}
$PY "$HERE/consumer.py" "$Q/out/new" "$W/sink" "$W/stop" 3 >"$W/consumer.out" 2>&1 &
CONSUMER=$!
BG+=("$CONSUMER")
for s in $(seq 0 $((NENG - 1))); do start_engine "$s"; done
rate=$(awk -v n="$N" -v s="$SECS" 'BEGIN { printf "%.1f", n / s }')
prefix="p$$r$RANDOM"
$PY "$HERE/producer.py" "$Q/in" "$N" "$rate" "$prefix" "$W/manifest" >"$W/producer.out" 2>&1 &
PRODUCER=$!
BG+=("$PRODUCER")

# the killer: while the producer runs, and until KILLS kills are done
kills=0 selfexit=0 maxareas=0 iter=0
: >"$W/selfexits"
producing=1
while [ "$producing" = 1 ] || [ "$kills" -lt "$KILLS" ]; do
	ms=$((50 + RANDOM % 551))
	sleep "$(printf '0.%03d' "$ms")"
	iter=$((iter + 1))
	if [ "$producing" = 1 ] && ! kill -0 "$PRODUCER" 2>/dev/null; then
		wait "$PRODUCER"
		prc=$?
		producing=0
		echo "   producer done after $(since "$T0")s (exit $prc): $(cat "$W/producer.out")"
	fi
	# an engine that exited without being killed: record, restart
	for s in $(seq 0 $((NENG - 1))); do
		if ! kill -0 "${ENG[$s]}" 2>/dev/null; then
			rc=0
			wait "${ENG[$s]}" || rc=$?
			selfexit=$((selfexit + 1))
			echo "engine slot $s (pid ${ENG[$s]}) exited by itself with $rc: $(tail -1 "$W/logs/e$s.${EGEN[$s]}.err" 2>/dev/null)" >>"$W/selfexits"
			start_engine "$s"
		fi
	done
	# live engine areas: in/cur/E whose flock is held (docs/queue.md)
	a=0
	for d in "$Q"/in/cur/*/; do
		[ -d "$d" ] || continue
		flock -n -E 99 "$d" true 2>/dev/null
		[ $? = 99 ] && a=$((a + 1))
	done
	[ "$a" -gt "$maxareas" ] && maxareas=$a
	s=$((RANDOM % NENG))
	if kill -9 "${ENG[$s]}" 2>/dev/null; then
		wait "${ENG[$s]}" 2>/dev/null
		kills=$((kills + 1))
	fi
	start_engine "$s"
	# a safety net: never run the killer for more than 4 minutes
	if awk -v e="$(since "$T0")" 'BEGIN { exit !(e > 240) }'; then
		echo "   (killer stopped after 240 s)"
		break
	fi
done
[ "$producing" = 1 ] && { kill -9 "$PRODUCER" 2>/dev/null; wait "$PRODUCER"; }
produced=$(wc -l <"$W/manifest")
echo "   $kills kills in $iter rounds, done after $(since "$T0")s; $(ls "$Q/in/new" | wc -l) in in/new, $(ls "$W/sink" | wc -l) consumed so far"

# drain: in/new and out/new empty and the sink unchanged for 3 s
t1=$(now)
last=-1 stable=0
while :; do
	c=$(ls "$W/sink" | wc -l)
	if [ -z "$(ls -A "$Q/in/new")" ] && [ -z "$(ls -A "$Q/out/new")" ] && [ "$c" = "$last" ]; then
		stable=$((stable + 1))
		[ "$stable" -ge 6 ] && break
	else
		stable=0
	fi
	last=$c
	awk -v e="$(since "$t1")" 'BEGIN { exit !(e > 90) }' && { echo "   (drain did not settle in 90 s)"; break; }
	sleep 0.5
done
echo "   drained in $(since "$t1")s: $(ls "$W/sink" | wc -l) consumed, $(find "$Q/in/cur" -type f | wc -l) files in in/cur"
termrc=""
for s in $(seq 0 $((NENG - 1))); do kill -TERM "${ENG[$s]}" 2>/dev/null; done
for s in $(seq 0 $((NENG - 1))); do
	for i in $(seq 1 200); do kill -0 "${ENG[$s]}" 2>/dev/null || break; sleep 0.1; done
	kill -9 "${ENG[$s]}" 2>/dev/null && termrc="$termrc hung"
	rc=0
	wait "${ENG[$s]}" || rc=$?
	termrc="$termrc $rc"
	ENG[$s]=""
done
termrc=${termrc# }
check 'for r in $termrc; do case $r in 0|75) ;; *) exit 1 ;; esac; done' \
	"the three engines exit 0 or 75 on SIGTERM (exits: $termrc)" "exits: $termrc (hung = still running 20 s after SIGTERM)"
before=$(ls "$W/sink" | wc -l)
frc=0
"$D" run -c "$C" --once >"$W/final.out" 2>"$W/final.err" || frc=$?
echo "   final run --once: exit $frc: $(cat "$W/final.out")"
grep -i "recover" "$W/final.err" | head -3 | sed 's/^/   /'
check '[ "$frc" = 0 ]' "the final run --once exits 0" "exit $frc: $(tail -3 "$W/final.err")"
touch "$W/stop"
wait "$CONSUMER"
consumed=$(ls "$W/sink" | wc -l)
echo "   the final run and the consumer added $((consumed - before)) messages"

check '[ "$kills" -ge "$KILLS" ]' "killed an engine with kill -9 $kills times (want >= $KILLS)"
check '[ "$selfexit" = 0 ]' "no engine exited by itself during the run" \
	"$selfexit exits: $(head -3 "$W/selfexits" | tr '\n' ' ')"
check '[ "$maxareas" -ge "$NENG" ]' "$NENG engines worked the queue at once (up to $maxareas live, locked engine areas in in/cur)" \
	"at most $maxareas live engine areas seen in in/cur"
check '[ "$produced" = "$N" ]' "the producer handed over all $N messages" "$produced"

# every token exactly once in the sink
$PY - "$W/manifest" "$W/sink" >"$W/tally" <<'PY'
import os, re, sys
want = [l.strip() for l in open(sys.argv[1]) if l.strip()]
wanted = set(want)
seen, extra = {}, 0
pat = re.compile(rb"TOK-([A-Za-z0-9._-]+?)-END")
for f in os.listdir(sys.argv[2]):
    toks = set(pat.findall(open(os.path.join(sys.argv[2], f), "rb").read()))
    if len(toks) != 1:
        extra += 1
    for t in toks:
        t = t.decode()
        seen.setdefault(t, []).append(f)
missing = [w for w in want if w not in seen]
dups = sorted(w for w in want if len(seen.get(w, ())) > 1)
unknown = [t for t in seen if t not in wanted]
print("produced %d consumed %d duplicates %d missing %d unknown %d odd %d"
      % (len(want), sum(len(v) for v in seen.values()), len(dups), len(missing), len(unknown), extra))
for w in dups[:10]:
    print("duplicate %s: %s" % (w, " ".join(sorted(seen[w]))))
for w in missing[:10]:
    print("missing %s" % w)
sys.exit(1 if missing or dups or unknown or extra else 0)
PY
trc=$?
read -r _ p _ c _ dup _ mis _ unk _ odd <"$W/tally"
echo "   produced $p, consumed $c, duplicates $dup, missing $mis, kills $kills"
check '[ "$trc" = 0 ]' "every produced token is in the sink exactly once ($p produced, $c consumed, $dup duplicates, $mis missing)" \
	"$(head -1 "$W/tally")"
[ "$trc" = 0 ] || sed -n '2,21p' "$W/tally" | sed 's/^/     /'
check '[ -z "$(ls -A "$Q/failed" 2>/dev/null)" ]' "nothing in failed/" "$(ls "$Q/failed" | head -5 | tr '\n' ' ')"
left=$(find "$Q/in/new" "$Q/in/tmp" "$Q/in/cur" "$Q/out/tmp" "$Q/out/new" -type f 2>/dev/null)
check '[ -z "$left" ]' "no file left in in/new, in/tmp, in/cur, out/tmp or out/new" \
	"$(echo "$left" | wc -l) left: $(echo "$left" | head -5 | sed "s|$Q/||" | tr '\n' ' ')"

# a random sample, envelope lines (X-Sender:, X-Receiver:) stripped, verified
mkdir -p "$W/vfy"
$PY - "$W/sink" "$W/vfy" "$SAMPLE" >"$W/vfy.list" <<'PY'
import os, random, re, sys
sink, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(os.listdir(sink))
for n in random.sample(names, min(k, len(names))):
    data = open(os.path.join(sink, n), "rb").read()
    while re.match(rb"(?i)x-(sender|receiver):[^\n]*\n", data):
        data = data[data.index(b"\n") + 1:]
    p = os.path.join(dst, n)
    open(p, "wb").write(data)
    print(p)
PY
nv=$(wc -l <"$W/vfy.list")
if $PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 1 --list "$W/vfy.list" >"$W/vfy.dkimpy" 2>&1; then
	ok "dkimpy verifies a random sample of $nv consumed messages ($(tail -1 "$W/vfy.dkimpy"))"
else
	bad "dkimpy: $(tail -1 "$W/vfy.dkimpy")"; grep -m3 "	fail	" "$W/vfy.dkimpy"
fi
if [ ! -x "$ODKIM_VERIFY" ]; then
	# shellcheck disable=SC2046
	cc -O2 -o "$W/odkim_verify" "$TOP/tests/interop/odkim_verify.c" $(pkg-config --cflags --libs opendkim 2>/dev/null) \
		>/dev/null 2>&1 && ODKIM_VERIFY=$W/odkim_verify
fi
if [ -x "$ODKIM_VERIFY" ]; then
	if "$ODKIM_VERIFY" --dns-file "$W/dns.txt" --expect 1 --list "$W/vfy.list" >"$W/vfy.odkim" 2>&1; then
		ok "libopendkim verifies the same $nv messages ($(tail -1 "$W/vfy.odkim"))"
	else
		bad "libopendkim: $(tail -1 "$W/vfy.odkim")"; grep -m3 "	fail	" "$W/vfy.odkim"
	fi
else
	bad "libopendkim harness $ODKIM_VERIFY missing and cannot be built (libopendkim-dev)"
fi
if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$W"/logs/* "$W/final.err" >/dev/null 2>&1; then
	bad "sanitizer reports in the engine logs"
	grep -hE -m3 "AddressSanitizer|LeakSanitizer|runtime error:" "$W"/logs/* "$W/final.err" | head -3
fi
echo "   time taken: $(since "$T0") s (produced $p, consumed $c, duplicates $dup, missing $mis, kills $kills)"
echo "pipeline: $pass passed, $fail failed"
[ "$fail" = 0 ]
