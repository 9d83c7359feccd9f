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
#      out/relay, the stalled message in out/defer; STARTTLS against the
#      sink (certificate checked for an address and a name; a wrong name
#      or an unknown CA defers, never falls back to plain text; verify
#      off; require without STARTTLS defers; starttls without it is
#      plain);
#   4. Postfix's smtp-sink (PIPELINING; Postfix 3.7's smtp-sink has no
#      CHUNKING): RELAY_SINK_N (default 200) messages, each once;
#   5. kill -9 of the relay at random moments while it delivers
#      RELAY_KILL_N (default 300) messages: none lost; duplicates counted,
#      each one explained: the first copy was the last transaction of its
#      session (the relay died between the server's acceptance and the
#      delete), so at most relay_connections per kill.
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
		for kv in relay_host=127.0.0.1:1 relay_timeout=2s relay_retry=1s \
			relay_connections=2 "$@"; do
			echo "${kv%%=*} = ${kv#*=}"
		done | awk -F' = ' '{ v[$1] = $0; if (!($1 in o)) { o[$1] = ++k; n[k] = $1 } }
			END { for (i = 1; i <= k; i++) print v[n[i]] }'
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
	[ -d "$q/out/new" ] && [ -d "$q/out/defer" ] && [ -d "$q/out/relay" ] &&
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

# publish NAME SPEC...: enqueue and sign (no snapshot: a relay may be
# taking them already)
publish() {
	local n=$1 name sender rcpts r args
	shift
	$PY "$HERE/gen.py" "$W/$n/msgs" "$@" >"$W/$n/manifest"
	while IFS=$'\t' read -r name sender rcpts; do
		args=(-f "$sender")
		IFS=, read -ra rs <<<"$rcpts"
		for r in "${rs[@]}"; do args+=(-r "$r"); done
		"$D" enqueue -c "$W/$n/conf" "${args[@]}" "$W/$n/msgs/$name.eml" >/dev/null || return 1
	done <"$W/$n/manifest"
	"$D" run --once -c "$W/$n/conf" 2>>"$W/$n/run.log"
}

# wait_got NAME COUNT SECONDS: until the sink has COUNT transactions
wait_got() {
	local i
	for i in $(seq $(($3 * 10))); do
		[ "$(ls "$W/$1/got" 2>/dev/null | grep -c '\.env$')" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# --once is one pass: a message it defers (relay_retry 1s) waits for the
# next run, even when the run lasts longer than the retry delay (here a
# stall of relay_timeout 2s on the other connection)
n=oncepass
new_queue $n relay_max_attempts=30
sign $n "op1:plain:b@c.example:t451@x.test" "op2:plain:b@c.example:stall@x.test" ||
	bad "$n: signing"
start_sink $n
relay_once $n
check '[ "$RC" = 75 ] && [ "$(ls "$W/$n/q/out/defer" | grep -c "~1~")" = 2 ]' \
	"$n: relay --once tries each message once (exit 75, both at attempt 1 in out/defer)" \
	"rc $RC, defer: $(ls "$W/$n/q/out/defer")"
kill "$SINK_PID" 2>/dev/null

# --- 3. long-running: inotify, SIGTERM ------------------------------------
n=daemon
new_queue $n
mkdir -p "$W/$n/q/out/new"
start_sink $n
"$D" relay -c "$W/$n/conf" --set "relay_host=127.0.0.1:$SINK_PORT" 2>"$W/$n/relay.log" &
RELAY=$!
PIDS+=($RELAY)
sleep 0.5
specs=()
for i in $(seq 30); do specs+=("dm$i:plain:b@c.example:r$i@x.test"); done
publish $n "${specs[@]}"
check 'wait_got $n 30 20' "$n: 30 messages published while it runs are delivered (inotify)" \
	"$(ls "$W/$n/got" | grep -c '\.env$') delivered"
c0=$(cpu_of $RELAY)
sleep 2
c1=$(cpu_of $RELAY)
check 'awk "BEGIN { exit !($c1 - $c0 < 0.1) }"' "$n: idle, it sleeps (CPU ${c0}s -> ${c1}s over 2s)"
kill -TERM $RELAY
wait $RELAY
RC=$?
check '[ "$RC" = 0 ]' "$n: SIGTERM: exit 0" "rc $RC"
check '[ -z "$(ls -A "$W/$n/q/out/relay")" ] && queue_empty $n' \
	"$n: SIGTERM: nothing left in out/relay" "$(find "$W/$n/q/out" -mindepth 2)"
check 'grep -q "^relay: 30 delivered, 0 deferred, 0 failed" "$W/$n/relay.log"' \
	"$n: the summary line counts them" "$(tail -n 1 "$W/$n/relay.log")"
# SIGTERM while a transaction is stalled: the relay waits for its
# timeout, defers the message, leaves no file in its area
"$D" relay -c "$W/$n/conf" --set "relay_host=127.0.0.1:$SINK_PORT" 2>>"$W/$n/relay.log" &
RELAY=$!
PIDS+=($RELAY)
sleep 0.3
publish $n "st1:plain:b@c.example:stall9@x.test"
sleep 0.7
t0=$(date +%s.%N)
kill -TERM $RELAY
wait $RELAY
RC=$?
t1=$(date +%s.%N)
check '[ "$RC" = 0 ] && awk "BEGIN { exit !($t1 - $t0 < 4) }"' \
	"$n: SIGTERM during a stall: exit 0 within relay_timeout" "rc $RC, $(awk "BEGIN { print $t1 - $t0 }")s"
check '[ -z "$(ls -A "$W/$n/q/out/relay")" ] && [ "$(ls "$W/$n/q/out/defer" | wc -l)" = 1 ]' \
	"$n: the stalled message is in out/defer, out/relay is empty" \
	"$(find "$W/$n/q/out" -mindepth 2)"
sleep 1.1
relay_once $n
check '[ "$RC" = 0 ] && [ "$(delivered $n st1 stall9@x.test)" = 1 ] && queue_empty $n' \
	"$n: then delivered once"
kill "$SINK_PID" 2>/dev/null

# --- 3b. STARTTLS ----------------------------------------------------------
tls_case() {	# NAME HOST CERT EXPECT(delivered|deferred) [KEY=VALUE...] -- SINKARGS
	local n=$1 host=$2 cert=$3 want=$4 kv=() got
	shift 4
	while [ $# -gt 0 ] && [ "$1" != -- ]; do kv+=("$1"); shift; done
	shift
	new_queue "$n" "${kv[@]}"
	sign "$n" "${n}a:plain:b@c.example:t1@x.test" "${n}b:8bit:b@c.example:t2@x.test" ||
		bad "$n: signing"
	start_sink "$n" ${cert:+--tls-cert "$W/tls/$cert.crt" --tls-key "$W/tls/$cert.key"} "$@"
	"$D" relay --once -c "$W/$n/conf" --set "relay_host=$host:$SINK_PORT" >>"$W/$n/relay.log" 2>&1
	RC=$?
	got=$(ls "$W/$n/got" 2>/dev/null | grep -c '\.env$')
	if [ "$want" = delivered ]; then
		check '[ "$RC" = 0 ] && [ "$got" = 2 ] && queue_empty "$n"' "$n: delivered" \
			"rc $RC, $got received; $(tail -n 2 "$W/$n/relay.log")"
	else
		check '[ "$RC" = 75 ] && [ "$got" = 0 ] && [ "$(ls "$W/$n/q/out/defer" | wc -l)" = 2 ]' \
			"$n: nothing sent, both deferred" "rc $RC, $got received"
	fi
	kill "$SINK_PID" 2>/dev/null
}
if command -v openssl >/dev/null; then
	mkdir -p "$W/tls"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$W/tls/good.key" -out "$W/tls/good.crt" 2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other.test \
		-addext "subjectAltName=DNS:other.test" \
		-keyout "$W/tls/other.key" -out "$W/tls/other.crt" 2>/dev/null
	tls_case tls_ip 127.0.0.1 good delivered relay_tls=require "relay_tls_ca=$W/tls/good.crt" --
	check 'grep -q "\"tls\": true" "$W/tls_ip/got/"*.env && ! grep -q "\"tls\": false" "$W/tls_ip/got/"*.env' \
		"tls_ip: both came over STARTTLS (certificate checked for 127.0.0.1)"
	tls_case tls_name localhost good delivered relay_tls=starttls "relay_tls_ca=$W/tls/good.crt" --
	check '! grep -q "\"tls\": false" "$W/tls_name/got/"*.env' "tls_name: over STARTTLS (checked for localhost)"
	tls_case tls_badname 127.0.0.1 other deferred relay_tls=starttls "relay_tls_ca=$W/tls/other.crt" --
	check 'grep -q "TLS handshake with 127.0.0.1 failed" "$W/tls_badname/relay.log"' \
		"tls_badname: a certificate for another name: no fall-back to plain text" \
		"$(grep deferred "$W/tls_badname/relay.log" | head -n 1)"
	tls_case tls_untrusted localhost good deferred relay_tls=require --
	tls_case tls_noverify 127.0.0.1 other delivered relay_tls=require relay_tls_verify=no --
	tls_case tls_missing 127.0.0.1 "" deferred relay_tls=require --
	check 'grep -q "offers no STARTTLS" "$W/tls_missing/relay.log"' \
		"tls_missing: relay_tls = require and no STARTTLS: the reason says so"
	tls_case tls_optional 127.0.0.1 "" delivered relay_tls=starttls --
else
	echo "skip STARTTLS: no openssl command"
fi

# --- 4. Postfix's smtp-sink ------------------------------------------------
n=smtpsink
if command -v smtp-sink >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	new_queue $n relay_connections=4
	specs=()
	for i in $(seq "$SINK_N"); do
		case $((i % 4)) in
		0) specs+=("ss$i:dots:b@c.example:r$i@x.test") ;;
		1) specs+=("ss$i:8bit:b@c.example:r$i@x.test,s$i@y.test") ;;
		2) specs+=("ss$i:plain:<>:r$i@x.test") ;;
		3) specs+=("ss$i:long:b@c.example:r$i@x.test") ;;
		esac
	done
	sign $n "${specs[@]}" || bad "$n: signing"
	mkdir -p "$W/$n/dump"
	chown nobody "$W/$n/dump"
	chmod o+x "$W" "$W/$n"	# smtp-sink writes as nobody
	SINK_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	smtp-sink -u nobody -d "$W/$n/dump/%M." "127.0.0.1:$SINK_PORT" 256 2>"$W/$n/sink.log" &
	SS=$!
	PIDS+=($SS)
	sleep 0.5
	relay_once $n
	check '[ "$RC" = 0 ] && queue_empty $n' "$n: relay --once delivers $SINK_N messages, exit 0" \
		"rc $RC; $(tail -n 2 "$W/$n/relay.log")"
	sleep 1
	out=$($PY "$HERE/check_dump.py" "$W/$n/snap" "$W/$n/dump" "$W/$n/verify" | tail -n 1)
	check '[ "$out" = "dumps=$SINK_N missing=0 duplicates=0 mismatched=0" ]' \
		"$n: smtp-sink got each once, the same bytes, MAIL/RCPT right" "$out"
	out=$($PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 \
		"$W/$n/verify/"* | tail -n 1)
	check 'all_pass "$out"' "$n: dkimpy passes both signatures of what smtp-sink got" "$out"
	kill $SS 2>/dev/null
else
	echo "skip $n: needs smtp-sink (package postfix) and root (its -u)"
fi

# --- 5. kill -9 at random moments ------------------------------------------
n=kill9
new_queue $n relay_connections=4
specs=()
for i in $(seq "$KILL_N"); do specs+=("k$i:plain:b@c.example:r$i@x.test"); done
sign $n "${specs[@]}" || bad "$n: signing"
start_sink $n
kills=0
for i in $(seq 300); do
	"$D" relay -c "$W/$n/conf" --set "relay_host=127.0.0.1:$SINK_PORT" 2>>"$W/$n/relay.log" &
	RELAY=$!
	# a random moment in its first 0.15-0.8 s (it starts in ~0.1 s)
	sleep "0.$(printf '%02d' $((RANDOM % 65 + 15)))"
	kill -9 $RELAY 2>/dev/null && kills=$((kills + 1))
	wait $RELAY 2>/dev/null
	[ -z "$(ls -A "$W/$n/q/out/new")" ] && [ -z "$(ls -A "$W/$n/q/out/defer")" ] &&
		[ -z "$(find "$W/$n/q/out/relay" -mindepth 2 -type f)" ] && break
done
relay_once $n	# takes back the last killed relay's area
out=$($PY "$HERE/check.py" "$W/$n/snap" "$W/$n/got" --explain | tail -n 1)
dups=$(sed -n 's/.* duplicates=\([0-9]*\) .*/\1/p' <<<"$out")
check '[[ "$out" == *" missing=0 "* ]] && [[ "$out" == *" mismatched=0"* ]]' \
	"$n: $kills kill -9 during $KILL_N deliveries: none lost" "$out"
check '[ "${dups:-999}" -le $((kills * 4)) ] && [[ "$out" == *" unexplained=0" ]]' \
	"$n: $dups duplicates, each the last transaction of a killed relay's session" "$out"
echo "     kill9: $kills kills, $dups duplicates (each a kill inside the 2xx-to-delete window)"
check 'queue_empty $n && [ -z "$(ls -A "$W/$n/q/out/relay")" ] && [ -z "$(ls -A "$W/$n/q/failed")" ]' \
	"$n: afterwards the queue and out/relay are empty, nothing failed" \
	"$(find "$W/$n/q/out" "$W/$n/q/failed" -mindepth 2 | head)"
kill "$SINK_PID" 2>/dev/null

finish
