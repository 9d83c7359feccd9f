#!/usr/bin/env bash
# tests/relay/run.sh — dkimpress relay against SMTP/LMTP servers.
#
# Messages are signed by the engine (customer RSA key through the
# KeyTable, RSA ESP key), with x-sender / x-receiver lines from `enqueue`,
# copied from out/new (the snapshot the sink's copies are compared with),
# then delivered by `dkimpress relay` to:
#   1. tests/relay/sink.py (free loopback port) with PIPELINING, without
#      it, with CHUNKING (BDAT), as LMTP: every message delivered once,
#      byte for byte the signed file minus its envelope lines (dot lines,
#      8-bit body with BODY=8BITMIME, a UTF-8 address with SMTPUTF8, a
#      998-byte line, the null sender, three recipients), the queue empty
#      afterwards, and both signatures of every delivered copy pass
#      dkimpy and libopendkim;
#   2. the sink misbehaving per recipient: 451 always (failed after
#      relay_max_attempts with "gave up"), 451 twice then 250 (delivered
#      once, on the 3rd attempt), 550 (failed/ with the reply as the
#      reason), 421 + close, 554 after the data, the connection dropped
#      after the data, a stall after the data (relay_timeout 2s: deferred,
#      then delivered; the relay's CPU time over the stall stays small),
#      SIZE 3000 with a bigger message (failed, never sent), one message
#      with 250 + 550 + 451 recipients (each handled on its own);
#   3. the long-running relay (inotify): messages published while it runs
#      are delivered; SIGTERM, also during a stall: exit 0, nothing left in
#      out/relay, the stalled message in out/defer;
#   4. Postfix's smtp-sink (PIPELINING; Postfix 3.7's smtp-sink has no
#      CHUNKING): RELAY_SINK_N (default 200) messages, each once;
#   5. kill -9 of the relay at random moments while it delivers
#      RELAY_KILL_N (default 300) messages: none lost; duplicates counted,
#      at most relay_connections per kill (each worker can be inside the
#      2xx-to-delete window once).
# Exit 77 without python3-dkim. Ends with "relay: N passed, N failed".
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
D=${DKIMPRESS:-$BUILD/dkimpress}
case $D in /*) ;; *) D=$PWD/$D ;; esac
ODKIM=${ODKIM_VERIFY:-$BUILD/tests/odkim_verify}
case $ODKIM in /*) ;; *) ODKIM=$PWD/$ODKIM ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
SINK_N=${RELAY_SINK_N:-200}
KILL_N=${RELAY_KILL_N:-300}

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
finish() {
	echo "relay: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

if ! $PY -c 'import dkim' 2>/dev/null; then
	echo "skip: python3-dkim is needed (tools/deps)"
	exit 77
fi
[ -x "$D" ] || { bad "no $D; run make first"; finish; }

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-relay.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/keys"
"$D" keygen --domain c.example --selector s1 --out "$W/keys" >"$W/dns.txt" 2>/dev/null &&
	"$D" keygen --domain esp.example --selector e1 --out "$W/keys" >>"$W/dns.txt" 2>/dev/null
chmod 0600 "$W"/keys/*.private
echo "k1 c.example:s1:$W/keys/s1.private" >"$W/KeyTable"
echo "*@c.example k1" >"$W/SigningTable"

# new_queue NAME [KEY=VALUE...]: $W/NAME/{conf,q}
new_queue() {
	local n=$1 kv
	shift
	mkdir -p "$W/$n/q/in/tmp" "$W/$n/q/in/new" "$W/$n/q/in/cur"
	{
		echo "queue_dir = $W/$n/q"
		echo "esp_key = esp.example:e1:$W/keys/e1.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = refile:$W/SigningTable"
		echo "relay_host = 127.0.0.1:1"
		echo "relay_timeout = 2s"
		echo "relay_retry = 1s"
		echo "relay_connections = 2"
		for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
	} >"$W/$n/conf"
}

# sign NAME SPEC...: generate, enqueue, sign; snapshot out/new
sign() {
	local n=$1 name sender rcpts r args
	shift
	$PY "$HERE/gen.py" "$W/$n/msgs" "$@" >"$W/$n/manifest"
	while IFS=$'\t' read -r name sender rcpts; do
		args=(-f "$sender")
		IFS=, read -ra rs <<<"$rcpts"
		for r in "${rs[@]}"; do args+=(-r "$r"); done
		"$D" enqueue -c "$W/$n/conf" "${args[@]}" "$W/$n/msgs/$name.eml" >/dev/null || return 1
	done <"$W/$n/manifest"
	"$D" run --once -c "$W/$n/conf" 2>"$W/$n/run.log" || return 1
	mkdir -p "$W/$n/snap"
	cp "$W/$n/q/out/new/"* "$W/$n/snap/"
}

# start_sink NAME ARGS...: the Python sink; its port in $SINK_PORT
start_sink() {
	local n=$1 i
	shift
	rm -f "$W/$n.port"
	$PY "$HERE/sink.py" --port-file "$W/$n.port" --dir "$W/$n/got" "$@" \
		2>"$W/$n/sink.log" &
	PIDS+=($!)
	SINK_PID=$!
	for i in $(seq 100); do [ -s "$W/$n.port" ] && break; sleep 0.05; done
	SINK_PORT=$(cat "$W/$n.port")
}

# relay_once NAME [--set ...]: one `relay --once` run; rc in $RC
relay_once() {
	local n=$1
	shift
	"$D" relay --once -c "$W/$n/conf" --set "relay_host=127.0.0.1:$SINK_PORT" "$@" \
		>>"$W/$n/relay.log" 2>&1
	RC=$?
}

# queue_empty NAME: nothing in out/new, out/defer, out/relay
queue_empty() {
	local q=$W/$1/q
	[ -z "$(find "$q/out/new" "$q/out/defer" "$q/out/relay" -mindepth 1 | head -n 1)" ]
}

# delivered NAME TID RCPT: how many times the sink took TID for RCPT
delivered() {
	$PY - "$W/$1/got" "$2" "$3" <<'PY'
import json, os, sys
d, tid, rcpt = sys.argv[1:]
n = 0
for f in os.listdir(d) if os.path.isdir(d) else []:
    if f.endswith('.env'):
        meta = json.load(open(os.path.join(d, f)))
        data = open(os.path.join(d, f[:-4] + '.eml'), 'rb').read()
        if ('X-Test-Id: %s\r\n' % tid).encode() in data and rcpt in meta['rcpts']:
            n += 1
print(n)
PY
}

# all_pass "summary: M messages, P pass, F fail": P = M > 0, F = 0
all_pass() {
	[[ "$1" =~ ^summary:\ ([0-9]+)\ messages,\ ([0-9]+)\ pass,\ 0\ fail ]] &&
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" != 0 ]
}

# verify NAME: dkimpy and libopendkim on every delivered copy, 2 sigs each
verify() {
	local n=$1 out
	out=$($PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 \
		"$W/$n/got/"*.eml | tail -n 1)
	check 'all_pass "$out"' \
		"$n: dkimpy passes both signatures of every delivered copy" "$out"
	if [ -x "$ODKIM" ]; then
		out=$("$ODKIM" --dns-file "$W/dns.txt" --expect 2 "$W/$n/got/"*.eml | tail -n 1)
		check 'all_pass "$out"' \
			"$n: libopendkim passes both signatures of every delivered copy" "$out"
	else
		bad "$n: no $ODKIM (make unit-tests builds it)"
	fi
}

SPECS=(
	"plain1:plain:bounce@c.example:a@x.test"
	"dots1:dots:bounce@c.example:b@x.test"
	"eight1:8bit:bounce@c.example:c@x.test"
	"long1:long:bounce@c.example:d@x.test"
	"null1:plain:<>:e@x.test"
	"three1:dots:bounce@c.example:f1@x.test,f2@y.test,f3@z.test"
	"utf1:8bit:bounce@c.example:jürgen@x.test"
	"big1:big:bounce@c.example:g@x.test"
)

# --- 1. well-behaved servers -----------------------------------------------
basic() {
	local n=$1 how=$2 out
	shift 2
	new_queue "$n" "${QUEUE_KV[@]}"
	sign "$n" "${SPECS[@]}" || { bad "$n: signing the messages"; return; }
	start_sink "$n" "$@"
	relay_once "$n"
	check '[ "$RC" = 0 ]' "$n: relay --once exits 0" "rc $RC, $(tail -n 3 "$W/$n/relay.log")"
	out=$($PY "$HERE/check.py" "$W/$n/snap" "$W/$n/got" --expect-how "$how" --eightbit | tail -n 1)
	check '[ "$out" = "deliveries=8 messages=8 missing=0 duplicates=0 mismatched=0" ]' \
		"$n: each message once, byte for byte, right envelope and parameters ($how)" \
		"$out; $($PY "$HERE/check.py" "$W/$n/snap" "$W/$n/got" --eightbit | head -n 5)"
	check 'queue_empty "$n"' "$n: out/new, out/defer and out/relay empty" \
		"$(find "$W/$n/q/out" -mindepth 2 | head -n 5)"
	check '[ -z "$(ls -A "$W/$n/q/failed")" ]' "$n: nothing failed"
	verify "$n"
	kill "$SINK_PID" 2>/dev/null
}
QUEUE_KV=()
basic pipelining DATA --8bitmime --smtputf8
basic nopipelining DATA --8bitmime --smtputf8 --no-pipelining
basic chunking BDAT --8bitmime --smtputf8 --chunking
QUEUE_KV=(relay_protocol=lmtp)
basic lmtp DATA --8bitmime --smtputf8 --lmtp
QUEUE_KV=()

# no SMTPUTF8 at the next hop: the UTF-8 address fails, never sent
n=noutf8
new_queue $n
sign $n "utf2:plain:bounce@c.example:jürgen@x.test" "ascii2:plain:bounce@c.example:h@x.test"
start_sink $n --8bitmime
relay_once $n
check '[ "$(delivered $n utf2 jürgen@x.test)" = 0 ] && [ "$(delivered $n ascii2 h@x.test)" = 1 ]' \
	"$n: a UTF-8 address is not sent to a server without SMTPUTF8"
check 'grep -q "SMTPUTF8" "$W/$n/q/failed/"*.reason' "$n: failed/ with the reason" \
	"$(cat "$W/$n/q/failed/"*.reason 2>/dev/null)"
kill "$SINK_PID" 2>/dev/null

# cpu_of PID: user + system seconds so far
cpu_of() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

# --- 2. a misbehaving server ---------------------------------------------
n=misbehave
new_queue $n relay_max_attempts=3
sign $n "t451m:plain:b@c.example:t451@x.test" \
	"o451m:plain:b@c.example:o451a@x.test" \
	"p550m:plain:b@c.example:p550@x.test" \
	"mixedm:dots:b@c.example:ok1@x.test,p550b@x.test,o451b@x.test" \
	"c421m:plain:b@c.example:c421@x.test" \
	"d554m:plain:b@c.example:d554@x.test" \
	"dropm:plain:b@c.example:drop@x.test" \
	"stallm:8bit:b@c.example:stall@x.test" \
	"bigm:big:b@c.example:g2@x.test" || bad "$n: signing"
start_sink $n --size 3000 --8bitmime
# the first run meets the stall: it must wait relay_timeout (2s), not spin
read -r RC cpu wall < <($PY - "$D" relay --once -c "$W/$n/conf" \
	--set "relay_host=127.0.0.1:$SINK_PORT" 2>>"$W/$n/relay.log" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(rc, '%.3f' % (u.ru_utime + u.ru_stime), '%.2f' % (time.monotonic() - t))
PY
)
check '[ "$RC" = 75 ]' "$n: first run defers some and exits 75" "rc $RC"
check 'awk "BEGIN { exit !($wall >= 1.9 && $cpu < 0.5) }"' \
	"$n: a stalled server is waited for (relay_timeout 2s) without spinning" \
	"wall ${wall}s, cpu ${cpu}s"
for round in 1 2 3 4 5 6; do
	[ -z "$(ls -A "$W/$n/q/out/defer")" ] && break
	sleep 1.1
	relay_once $n
done
check 'queue_empty $n' "$n: every message ended delivered or failed" \
	"$(find "$W/$n/q/out" -mindepth 2 | head -n 5)"
for spec in "o451m o451a@x.test 1" "mixedm ok1@x.test 1" "mixedm o451b@x.test 1" \
	"mixedm p550b@x.test 0" "dropm drop@x.test 1" "stallm stall@x.test 1" \
	"t451m t451@x.test 0" "p550m p550@x.test 0" "c421m c421@x.test 0" \
	"d554m d554@x.test 0" "bigm g2@x.test 0"; do
	read -r tid rcpt want <<<"$spec"
	got=$(delivered $n "$tid" "$rcpt")
	check '[ "$got" = "$want" ]' "$n: $tid to $rcpt delivered $want time(s)" "got $got"
done
# reason files: the right reply for each failed message
reason_of() {	# TID: the reason of the failed file holding X-Test-Id TID
	local f
	f=$(grep -l "^X-Test-Id: $1" "$W/$n/q/failed/"* 2>/dev/null | grep -v '\.reason$' | head -n 1)
	[ -n "$f" ] && cat "$f.reason"
}
check 'reason_of t451m | grep -q "gave up after 3 attempts.*451 4.3.0"' \
	"$n: 451 every time: failed after relay_max_attempts, with the last reply" "$(reason_of t451m)"
check 'reason_of p550m | grep -q "RCPT TO:<p550@x.test>: 550 5.1.1"' \
	"$n: 550: failed with the server's reply" "$(reason_of p550m)"
check 'reason_of c421m | grep -q "421 4.3.2"' "$n: 421: retried, then failed" "$(reason_of c421m)"
check 'reason_of d554m | grep -q "end of the data: 554 5.7.1"' \
	"$n: 554 after the data: failed with the reply" "$(reason_of d554m)"
check 'reason_of bigm | grep -q "exceeds the SIZE limit 3000.*not sent"' \
	"$n: over SIZE: failed without sending" "$(reason_of bigm)"
f=$(grep -l "^X-Test-Id: mixedm" "$W/$n/q/failed/"* | grep -v '\.reason$')
check '[ "$(grep -c "^x-receiver:" "$f")" = 1 ] && grep -q "^x-receiver: p550b@x.test" "$f" &&
	grep -q "p550b@x.test.*550 5.1.1" "$f.reason"' \
	"$n: 250 + 550 + 451: failed/ holds the 550 recipient only, with its reply"
check '[ "$(ls "$W/$n/q/failed" | grep -vc "\.reason$")" = 6 ]' \
	"$n: six files in failed/ (451, 550, 421, 554, SIZE, the 550 of the mixed one)" \
	"$(ls "$W/$n/q/failed")"
out=$($PY "$HERE/check.py" "$W/$n/snap" "$W/$n/got" --eightbit | tail -n 1)
check '[[ "$out" == *" duplicates=0 mismatched=0" ]]' \
	"$n: what was delivered is byte for byte the signed message, never twice" "$out"
verify $n
kill "$SINK_PID" 2>/dev/null
