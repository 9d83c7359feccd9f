#!/usr/bin/env bash
# tests/relay/jetstream.sh — `dkimpress relay` with transport = jetstream:
# a private single-node nats-server -js and tests/relay/sink.py, each on a
# free loopback port.
#   1. 200 messages through `dkimpress enqueue`, signed by `run --once`,
#      delivered by `relay --once`: each exactly once; dkimpy passes both
#      signatures of every copy the sink received;
#   2. a message to ok1 + o451a (451 twice, then 250): ok1 delivered once
#      on the first attempt, the rest republished and o451a delivered
#      once on a later attempt;
#   3. a message to ok2 + p550x (550): ok2 delivered once; the failed
#      stream holds it for p550x only, with the 550 reply in
#      X-Dkimpress-Error (read with tests/jetstream/jsprobe.c: nats.c
#      only, no dkimpress code);
#   4. RELAY_JS_KILL_N (default 300) messages, the relay killed -9 at
#      random moments while it delivers: none lost; every duplicate is a
#      message some killed relay had sent ("try" in DKIMPRESS_RELAY_TRACE)
#      without its ACK ("ack"): the final-2xx-before-ACK window, and no
#      other (asserted) - except, on a nats-server that
#      tests/jetstream/pullresend.c shows re-sends an ACKed message as a
#      first delivery (before 2.10.14; docs/scale-out.md), a message the
#      traces show handed out twice as the same stream sequence's first
#      delivery (nd=1), reported apart; before it, a relay that kills itself between
#      republishing a remainder and the ACK
#      (DKIMPRESS_RELAY_CRASH_REPUBLISHED): the original comes back, is
#      answered from its outcome record without being sent again, its
#      second republish is dropped by the duplicate window (one ID~r1 in
#      DKIM_OUT); the recipient that took it before the crash and the
#      remaining one each get it exactly once;
#   5. a redelivery that meets only the pull request of a relay that is
#      gone: on a server pullresend convicts, the last ACKed message is
#      delivered again and the traces show it first-delivered twice; on
#      a fixed one, every message once.
# Exit 77 without nats-server, libnats or python3-dkim.
# Ends with "relay-jetstream: N passed, N failed".
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
D=${DKIMPRESS:-$BUILD/dkimpress}
# the relay runs need its test hooks (DKIMPRESS_RELAY_TRACE, ..._CRASH_
# REPUBLISHED): the test build (Makefile, HOOK_SRC)
DT=${DKIMPRESS_TEST:-$BUILD/dkimpress-test}
case $D in /*) ;; *) D=$PWD/$D ;; esac
case $DT in /*) ;; *) DT=$PWD/$DT ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
N=${RELAY_JS_N:-200}
KILL_N=${RELAY_JS_KILL_N:-300}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
finish() {
	echo "relay-jetstream: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}
skip() { echo "skip: $*"; exit 77; }

[ -x "$NATS_SERVER" ] || skip "nats-server is missing (apt-get install nats-server)"
pkg-config --exists libnats 2>/dev/null || skip "libnats is missing (apt-get install libnats-dev)"
$PY -c 'import dkim' 2>/dev/null || skip "python3-dkim is missing (apt-get install python3-dkim)"
[ -x "$D" ] || { bad "no $D; run make first"; finish; }

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-relay-js.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

P=$W/jsprobe
cc -std=gnu11 -O2 -o "$P" "$TOP/tests/jetstream/jsprobe.c" $(pkg-config --cflags --libs libnats) ||
	{ bad "cannot build jsprobe"; finish; }
cc -std=gnu11 -O2 -o "$W/pullresend" "$TOP/tests/jetstream/pullresend.c" $(pkg-config --cflags --libs libnats) ||
	{ bad "cannot build pullresend"; finish; }

read -r NPORT SPORT_UNUSED <<<"$($PY -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
: "$SPORT_UNUSED"
"$NATS_SERVER" -a 127.0.0.1 -p "$NPORT" -js -sd "$W/store" >"$W/nats.log" 2>&1 &
PIDS+=($!)
URL=nats://127.0.0.1:$NPORT
for _ in $(seq 100); do
	$PY -c "import socket; socket.create_connection(('127.0.0.1', $NPORT), 0.2)" 2>/dev/null && break
	sleep 0.1
done

# Does this server re-send an ACKed message as a first delivery when a
# redelivery meets a pull request of a client that is gone (a killed
# relay)? nats-server before 2.10.14 does (tests/jetstream/pullresend.c);
# only then may phase 4 put a duplicate down to the server, and only one
# the traces show delivered twice as the same stream message's first
# delivery (nd=1, same seq), which a correct server never does.
"$W/pullresend" "$URL" >"$W/pullresend.out" 2>&1
RESENDS=$?
echo "   this nats-server re-sends an ACKed message after a redelivery meets a gone client's pull request: $(tail -n 1 "$W/pullresend.out")"
check '[ "$RESENDS" -le 1 ]' "the server's re-send check ran" "$(cat "$W/pullresend.out")"

mkdir -p "$W/keys"
"$D" keygen --domain c.example --selector s1 --out "$W/keys" >"$W/dns.txt" 2>/dev/null &&
	"$D" keygen --domain esp.example --selector e1 --out "$W/keys" >>"$W/dns.txt" 2>/dev/null
chmod 0600 "$W"/keys/*.private
echo "k1 c.example:s1:$W/keys/s1.private" >"$W/KeyTable"
echo "*@c.example k1" >"$W/SigningTable"
{
	echo "transport = jetstream"
	echo "nats_servers = $URL"
	echo "esp_key = esp.example:e1:$W/keys/e1.private"
	echo "key_table = $W/KeyTable"
	echo "signing_table = refile:$W/SigningTable"
	echo "threads = 2"
	echo "ack_wait = 8"
	echo "nak_delay = 1"
	echo "relay_host = 127.0.0.1:1"
	echo "relay_timeout = 2s"
	echo "relay_retry = 1s"
	echo "relay_connections = 2"
} >"$W/conf"

# enqueue TID SENDER RCPT...: one small message from c.example
enqueue() {
	local tid=$1 snd=$2 args=() r
	shift 2
	for r in "$@"; do args+=(-r "$r"); done
	printf 'From: <u@c.example>\r\nTo: <%s>\r\nSubject: relay %s\r\nX-Test-Id: %s\r\nMessage-ID: <%s@c.example>\r\n\r\nBody of %s.\r\n.dot line\r\n' \
		"$1" "$tid" "$tid" "$tid" "$tid" >"$W/m.eml"
	id=$("$D" enqueue -c "$W/conf" -f "$snd" "${args[@]}" "$W/m.eml" 2>>"$W/enqueue.err") || return 1
	echo "$tid $id" >>"$W/idmap"
}

start_sink() {
	$PY "$HERE/sink.py" --port-file "$W/sink.port" --dir "$W/got" 2>"$W/sink.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$W/sink.port" ] && break; sleep 0.05; done
	SPORT=$(cat "$W/sink.port")
}

relay_once() {
	"$DT" relay --once -c "$W/conf" --set "relay_host=127.0.0.1:$SPORT" "$@" >>"$W/relay.log" 2>&1
	RC=$?
}

# count TID RCPT: deliveries of TID to RCPT the sink recorded
counts() {
	$PY - "$W/got" <<'PY'
import json, os, re, sys
d = sys.argv[1]
n = {}
for f in os.listdir(d):
    if f.endswith('.env'):
        meta = json.load(open(os.path.join(d, f)))
        data = open(os.path.join(d, f[:-4] + '.eml'), 'rb').read()
        m = re.search(rb'X-Test-Id: (\S+)', data)
        for r in meta['rcpts']:
            k = (m.group(1).decode() if m else '?') + ' ' + r
            n[k] = n.get(k, 0) + 1
for k in sorted(n):
    print(k, n[k])
PY
}

echo "== 1-3: $N messages, a 451-then-250 recipient, a 550 recipient"
start_sink
"$D" run --once -c "$W/conf" >"$W/run0.log" 2>&1	# makes the streams
n_bad=0
for i in $(seq 1 "$N"); do enqueue "m$i" "b@c.example" "r$i@x.test" || n_bad=$((n_bad + 1)); done
enqueue o451 "b@c.example" "ok1@x.test" "o451a@x.test" || n_bad=$((n_bad + 1))
enqueue p550 "b@c.example" "ok2@x.test" "p550x@x.test" || n_bad=$((n_bad + 1))
check '[ "$n_bad" = 0 ]' "$((N + 2)) messages enqueued (transport = jetstream)" "$(tail -n 3 "$W/enqueue.err")"
"$D" run --once -c "$W/conf" >"$W/run.log" 2>&1
check '[ "$("$P" count "$URL" DKIM_OUT)" = $((N + 2)) ]' "run --once published $((N + 2)) signed messages to DKIM_OUT" \
	"$("$P" count "$URL" DKIM_OUT) in DKIM_OUT; $(tail -n 3 "$W/run.log")"
relay_once
check '[ "$RC" = 75 ]' "relay --once exits 75 (a recipient left for a retry)" "rc $RC: $(tail -n 3 "$W/relay.log")"
# the 451 recipient: 451 twice, then 250, on a later run
for _ in $(seq 12); do
	counts >"$W/counts"
	grep -q '^o451 o451a@x.test ' "$W/counts" && break
	sleep 1.2
	relay_once
done
counts >"$W/counts"
got=$(grep -c '^m[0-9]* r[0-9]*@x.test 1$' "$W/counts")
check '[ "$got" = "$N" ] && ! grep -q "^m[0-9]* .* [2-9]" "$W/counts"' \
	"each of the $N messages delivered exactly once" "$got once; $(grep -v ' 1$' "$W/counts" | head -n 3)"
check 'grep -qx "o451 ok1@x.test 1" "$W/counts" && grep -qx "o451 o451a@x.test 1" "$W/counts"' \
	"451-then-250: ok1 once on the first attempt, o451a once on a later one" "$(grep o451 "$W/counts")"
check 'grep -qx "p550 ok2@x.test 1" "$W/counts" && ! grep -q "^p550 p550x" "$W/counts"' \
	"550: ok2 delivered once, p550x never" "$(grep p550 "$W/counts")"
out=$($PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 "$W/got/"*.eml | tail -n 1)
check '[[ "$out" =~ ^summary:\ ([0-9]+)\ messages,\ ([0-9]+)\ pass,\ 0\ fail ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" -ge "$N" ]' \
	"dkimpy passes both signatures of every copy the sink received" "$out"
mkdir -p "$W/failed"
"$P" drain "$URL" DKIM_FAILED "$W/failed" 100 >/dev/null 2>"$W/drain.err"
hdr=$(grep -l 'p550x@x.test' "$W/failed/sample/"*.hdr 2>/dev/null | head -n 1)
check '[ -n "$hdr" ] && grep -q "X-Dkimpress-Error: .*p550x@x.test.*550" "$hdr" && ! grep -q ok2 "$hdr" && [ "$(wc -l <"$W/failed/ids")" = 1 ]' \
	"the 550 recipient alone is in DKIM_FAILED with the reply in X-Dkimpress-Error" \
	"$(cat "$W/failed/ids" 2>/dev/null; cat "$hdr" 2>/dev/null)"
grep -h "2xx-to-ACK window" "$W/relay.log" | head -n 1

echo "== 4: kill -9 of the relay during delivery ($KILL_N messages)"
enqueue cr "b@c.example" "ok3@x.test" "o451b@x.test"
cr_id=$id
"$D" run --once -c "$W/conf" >>"$W/run.log" 2>&1
# a crash between the republish of the remainder and the ACK
DKIMPRESS_RELAY_CRASH_REPUBLISHED=1 DKIMPRESS_RELAY_TRACE=$W/trace.0 \
	"$DT" relay --once -c "$W/conf" --set "relay_host=127.0.0.1:$SPORT" --set relay_connections=1 \
	>>"$W/relay-kill.log" 2>&1
RC=$?
check '[ "$RC" = 137 ]' "the relay killed itself between a republish and its ACK (test hook)" "rc $RC"
for i in $(seq 1 "$KILL_N"); do enqueue "k$i" "b@c.example" "k$i@x.test"; done
"$D" run --once -c "$W/conf" >>"$W/run.log" 2>&1
kills=0
for k in 1 2 3 4; do
	DKIMPRESS_RELAY_TRACE=$W/trace.$k "$DT" relay -c "$W/conf" --set "relay_host=127.0.0.1:$SPORT" \
		>>"$W/relay-kill.log" 2>&1 &
	rp=$!
	sleep "0.$((RANDOM % 7 + 2))"
	kill -9 "$rp" 2>/dev/null && kills=$((kills + 1))
	wait "$rp" 2>/dev/null
done
# what the killed relays left unacknowledged comes back after AckWait
# (relay_timeout x 12 = 24 s)
for _ in $(seq 40); do
	DKIMPRESS_RELAY_TRACE=$W/trace.final relay_once
	counts >"$W/counts"
	[ "$(grep -c '^k[0-9]* ' "$W/counts")" = "$KILL_N" ] && grep -q '^cr o451b' "$W/counts" &&
		[ "$RC" = 0 ] && break
	sleep 1
done
counts >"$W/counts"
got=$(grep -c '^k[0-9]* ' "$W/counts")
check '[ "$got" = "$KILL_N" ]' "after $kills kills: 0 of $KILL_N lost" "$got delivered"
grep '^[kc][0-9r]* ' "$W/counts" | awk '$3 > 1 { print $1 }' | sort -u >"$W/dups"
ndup=$(wc -l <"$W/dups")
# in flight at a kill: "try" without "ack" in that relay's trace
cat "$W"/trace.[0-4] 2>/dev/null | awk '$1 == "try" { t[$2]++ } $1 == "ack" { a[$2]++ }
	END { for (i in t) if (t[i] > a[i]) print i }' | sort >"$W/open"
open=$(wc -l <"$W/open")
# delivered twice by the server as the same stream message's first delivery
cat "$W"/trace.* 2>/dev/null | awk '$1 == "try" && $3 == "nd=1" { n[$2 " " $4]++ }
	END { for (k in n) if (n[k] > 1) { split(k, a, " "); print a[1] } }' | sort -u >"$W/resent"
unexplained=0 server=0
while read -r tid; do
	id=$(awk -v t="$tid" '$1 == t { print $2 }' "$W/idmap")
	if grep -qx "$id" "$W/open"; then
		continue
	elif [ "$RESENDS" = 0 ] && grep -qx "$id" "$W/resent"; then
		server=$((server + 1))
		echo "   re-sent by the server as a first delivery (nats-server < 2.10.14): $tid ($id)"
	else
		unexplained=$((unexplained + 1))
		echo "   unexplained duplicate: $tid ($id)"
	fi
done <"$W/dups"
check '[ "$unexplained" = 0 ]' \
	"every duplicate ($ndup) is a killed relay's open transaction (sent, not acknowledged) or the server's re-send ($server)" \
	"$unexplained not explained"
rm -rf "$W/out"; mkdir -p "$W/out"
"$P" drain "$URL" DKIM_OUT "$W/out" 0 >/dev/null 2>>"$W/drain.err"
nrem=$(grep -c "^$cr_id~r1 " "$W/out/ids")
# The original comes back whole after that crash (it was never ACKed).
# Its outcome record (stored before the republish) says what replaced
# it: the redelivery publishes the remainder again (dropped by the
# duplicate window: one ~r1 in DKIM_OUT) and is ACKed without a
# transaction, so ok3 (250 before the crash) is not sent it again and
# o451b gets it once, through the remainder (docs/scale-out.md).
cr_ok=$(awk '$1 == "cr" && $2 == "ok3@x.test" { print $3 }' "$W/counts")
cr_copies=$(awk '$1 == "cr" && $2 == "o451b@x.test" { print $3 }' "$W/counts")
check '[ "$nrem" = 1 ] && [ "${cr_ok:-0}" = 1 ] && [ "${cr_copies:-0}" = 1 ]' \
	"after that crash the original came back, its remainder is once in DKIM_OUT ($cr_id~r1: $nrem), ok3 delivered ${cr_ok:-0} time(s), o451b ${cr_copies:-0} (once each)" \
	"$nrem copies; $(grep '^cr ' "$W/counts")"
check 'cat "$W"/trace.* | grep -q "^replay $cr_id\( \|$\)"' \
	"the original's redelivery was answered from its outcome record, not sent" \
	"$(grep -h "$cr_id" "$W"/trace.* | head -n 5)"
echo "   $ndup duplicates after $kills kills; $open messages in flight at the kills"
grep -h "2xx-to-ACK window" "$W/relay.log" | tail -n 1

echo "== 5: a redelivery meets the pull request of a relay that is gone"
# sd (always 451) first in the stream, then s1..s5; the relay delivers
# and ACKs s1..s5 and NAKs sd for 3 s; then a pull request whose client
# disconnects (a relay killed while it waited: pullresend) is the only
# one when sd comes due. A server before 2.10.14 then hands the last
# message it delivered (one of s1..s5) out again as a first delivery; a
# fixed one does not. Either way the traces must tell which it was.
enqueue sd "b@c.example" "t451z@x.test"
"$D" run --once -c "$W/conf" >>"$W/run.log" 2>&1
for i in 1 2 3 4 5; do enqueue "s$i" "b@c.example" "s$i@x.test"; done
"$D" run --once -c "$W/conf" >>"$W/run.log" 2>&1
DKIMPRESS_RELAY_TRACE=$W/trace.s1 relay_once --set relay_retry=3s
"$W/pullresend" "$URL" DKIM_OUT dkimpress-relay
sleep 4
DKIMPRESS_RELAY_TRACE=$W/trace.s2 relay_once
counts >"$W/counts"
once=$(grep -c '^s[1-5] s[1-5]@x.test 1$' "$W/counts")
twice=$(awk '$1 ~ /^s[1-5]$/ && $3 == 2 { print $1 }' "$W/counts")
cat "$W"/trace.s[12] | awk '$1 == "try" && $3 == "nd=1" { n[$2 " " $4]++ }
	END { for (k in n) if (n[k] > 1) { split(k, a, " "); print a[1] } }' >"$W/resent5"
twice_id=$(awk -v t="$twice" '$1 == t { print $2 }' "$W/idmap")
if [ "$RESENDS" = 0 ]; then
	check '[ "$once" = 4 ] && [ -n "$twice" ] && [ -n "$twice_id" ] && grep -qx "$twice_id" "$W/resent5"' \
		"this server re-sends: the last message delivered ($twice, ACKed) went out again, the traces show it first-delivered twice; the other four once" \
		"$once once, twice: ${twice:-none}; $(grep '^s' "$W/counts" | tr '\n' ' ')"
else
	check '[ "$once" = 5 ]' "this server does not re-send: s1-s5 each delivered once" \
		"$(grep '^s' "$W/counts" | tr '\n' ' ')"
fi
finish
