#!/usr/bin/env bash
# tests/jetstream/run.sh — transport = jetstream on a real three-node
# nats-server cluster (docs/scale-out.md).
#
# Starts three nats-server nodes with JetStream on free loopback ports
# (store in a temporary directory, cluster routes), then:
#
#  failure paths, each once, on their own streams (T_IN, T_OUT, T_FAIL):
#   - a malformed message goes to the failed subject with the reason in
#     X-Dkimpress-Error and its input is acknowledged (T_IN empty);
#   - a message without a customer key, missing_key = defer, is NAK'd and
#     redelivered (deferred twice within a few seconds, still in T_IN),
#     then signed by an engine with missing_key = esp-only;
#   - an output already in T_OUT under the input's ID (a crash between
#     publish and acknowledgement, staged): the re-publish is dropped by
#     the duplicate window, T_OUT keeps one copy, the input is acked;
#   - an unknown transport or a bad stream name: 78;
#   - create_streams = no and a stream missing: run exits 78;
#   - enqueue with nothing listening: exit 75;
#   - the in-flight byte budget counts a bare-LF payload's CRLF copy: four
#     300 KB bare-LF messages, inflight_bytes = 1M, batch 4: one batch
#     holds one, the rest go straight back ("gone" >= 3 in --stats);
#  the cluster run (DKIM_IN, DKIM_OUT, R3 streams made by `run`):
#   - a producer publishes JS_N messages (default 20000): JS_ENQ of them
#     through `dkimpress enqueue` (X-Sender/X-Receiver headers, a new
#     Nats-Msg-Id, acknowledged), the rest with jsprobe (nats.c, in
#     chunks while the engines run); mixed domains: three RSA and three
#     Ed25519 customer keys from `dkimpress keygen`, two domains without
#     a key (ESP signature only);
#   - three `dkimpress run` engines (threads = 2) sign them; meanwhile
#     the test kill -9s a random engine at least JS_KILLS times (default
#     20), restarting it, sends SIGHUP (reload) now and then, and kill -9s
#     one NATS node once, restarting it 3 s later;
#   - at the end: DKIM_IN is empty, DKIM_OUT holds every input ID exactly
#     once with its own body (read by jsprobe, an ordered consumer
#     written against nats.c only), DKIM_FAILED is empty, the engines exit
#     0 on SIGTERM, and a random sample of 300 outputs verifies with dkimpy
#     (keys from the keygen records, no DNS) with its envelope headers.
# The cluster is stopped and the temporary directory removed on exit.
# Ends with "jetstream: N passed, N failed"; exit 77 when nats-server,
# libnats, a C compiler or python3-dkim is missing.
# Env: DKIMPRESS, JS_N, JS_ENQ, JS_KILLS; JS_QUICK=1 stops after the
# failure paths and regressions (no cluster run). Sanitizer builds: 3000
# messages.
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
SAN=0
case "${BUILD:-}:$DKIMPRESS" in *sanitize*|*tsan*) SAN=1 ;; esac
if [ "$SAN" = 1 ]; then
	N=${JS_N:-3000} ENQ=${JS_ENQ:-50} KILLS=${JS_KILLS:-20}
else
	N=${JS_N:-20000} ENQ=${JS_ENQ:-200} KILLS=${JS_KILLS:-20}
fi
NENG=3
SAMPLE=300

skip() { echo "jetstream: cannot run: $*"; exit 77; }
[ -x "$DKIMPRESS" ] || skip "$DKIMPRESS is not an executable (build it first)"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS_SERVER" ] || skip "nats-server is not installed (tools/deps installs it: apt-get install nats-server)"
pkg-config --exists libnats 2>/dev/null || skip "libnats is missing (apt-get install libnats-dev)"
command -v cc >/dev/null || skip "no C compiler for the test's NATS client"
$PY -c 'import dkim, nacl' 2>/dev/null || skip "$PY lacks dkim or nacl (python3-dkim, python3-nacl)"

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-jetstream.XXXXXX")
JSW=$W
# shellcheck source=cluster.sh
. "$HERE/cluster.sh"
ENG=()
BG=()
cleanup() {
	local p
	for p in "${ENG[@]}" "${BG[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null
	done
	js_cluster_stop
	wait 2>/dev/null
	if [ -n "${JS_KEEP:-}" ]; then echo "(kept $W)"; else rm -rf "$W"; fi
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
[ "$SAN" = 1 ] && echo "(sanitizer build: $N messages, not 20000)"

# a private copy of the binary: a rebuild meanwhile must not disturb the run
cp "$DKIMPRESS" "$W/dkimpress" && D=$W/dkimpress
P=$W/jsprobe
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -o "$P" "$HERE/jsprobe.c" $(pkg-config --cflags --libs libnats) ||
	skip "cannot build tests/jetstream/jsprobe.c against libnats"

echo "== three-node cluster"
js_cluster_start "$P" || { echo "   nats-server logs:"; tail -5 "$W"/n*/log; bad "a JetStream leader within 30 s"; echo "jetstream: $pass passed, $fail failed"; exit 1; }
ok "three nats-server nodes with JetStream, a meta leader after $(since "$T0") s ($JS_URLS)"

# keys: the ESP's, six customer domains, two without a key
mkdir -p "$W/k"
"$D" keygen --domain esp.example --selector e --type ed25519 --out "$W/k" >"$W/dns.txt" 2>/dev/null
: >"$W/KeyTable"
: >"$W/SigningTable"
DOMS=""
for i in 1 2 3 4 5 6; do
	t=rsa; [ "$i" -gt 3 ] && t=ed25519
	mkdir -p "$W/k/c$i"
	"$D" keygen --domain "c$i.example" --selector "s$i" --type "$t" --out "$W/k/c$i" >>"$W/dns.txt" 2>/dev/null
	echo "k$i c$i.example:s$i:$W/k/c$i/s$i.private" >>"$W/KeyTable"
	echo "*@c$i.example k$i" >>"$W/SigningTable"
	DOMS="$DOMS c$i.example"
done
DOMS="$DOMS nokey1.example nokey2.example"
[ "$(wc -l <"$W/dns.txt")" = 7 ] || skip "dkimpress keygen failed"

conf() {	# conf FILE [extra lines]
	local f=$1
	shift
	{
		echo "transport = jetstream"
		echo "nats_servers = $JS_URLS"
		echo "esp_key = esp.example:e:$W/k/e.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = refile:$W/SigningTable"
		echo "threads = 2"
		echo "ack_wait = 8"
		echo "nak_delay = 1"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}

echo "== failure paths"
conf "$W/t.conf" "in_stream = T_IN" "in_subject = t.in" "out_stream = T_OUT" \
	"out_subject = t.out" "failed_stream = T_FAIL" "failed_subject = t.fail" \
	"nats_consumer = t"
# streams made by a first run on an empty stream
rc=0; "$D" run -c "$W/t.conf" --once >"$W/t0.out" 2>"$W/t0.err" || rc=$?
check '[ "$rc" = 0 ] && [ "$($P count "$JS_URLS" T_IN)" = 0 ]' "run --once on an empty stream makes the streams and exits 0" "exit $rc: $(tail -2 "$W/t0.err")"
printf 'this line is no header field\r\n\r\nbody\r\n' >"$W/malformed.eml"
mid=$("$D" enqueue -c "$W/t.conf" -f a@c1.example -r b@example.net "$W/malformed.eml" 2>"$W/t1e.err")
rc=0; "$D" run -c "$W/t.conf" --once >"$W/t1.out" 2>"$W/t1.err" || rc=$?
mkdir -p "$W/tf"
"$P" drain "$JS_URLS" T_FAIL "$W/tf" 10 >/dev/null 2>&1
reason=$(cat "$W"/tf/sample/*.hdr 2>/dev/null | grep '^X-Dkimpress-Error:' | head -1)
check '[ "$rc" = 65 ] && [ -n "$mid" ] && grep -q "^$mid " "$W/tf/ids" && [ -n "$reason" ] && [ "$($P count "$JS_URLS" T_IN)" = 0 ]' \
	"a malformed message goes to the failed subject with a reason ($reason) and is acknowledged; run --once exits 65" \
	"exit $rc, id '$mid', failed ids: $(cat "$W/tf/ids" 2>/dev/null), T_IN $($P count "$JS_URLS" T_IN): $(tail -2 "$W/t1.err")"
printf 'From: <x@nokey1.example>\r\nTo: <y@example.net>\r\nSubject: defer\r\n\r\nbody\r\n' >"$W/nokey.eml"
did=$("$D" enqueue -c "$W/t.conf" -f x@nokey1.example -r y@example.net "$W/nokey.eml" 2>&1)
"$D" run -c "$W/t.conf" --set missing_key=defer >"$W/t2.out" 2>"$W/t2.err" &
dpid=$!
sleep 4.5
kill -TERM "$dpid"; rc=0; wait "$dpid" || rc=$?
ndef=$(grep -c "$did: deferred: no customer key" "$W/t2.err")
check '[ "$ndef" -ge 2 ] && [ "$($P count "$JS_URLS" T_IN)" = 1 ] && [ "$rc" = 0 ]' \
	"missing_key = defer: the message is NAK'd and redelivered ($ndef deliveries in 4.5 s with nak_delay = 1), it stays in the input stream" \
	"$ndef deferrals, T_IN $($P count "$JS_URLS" T_IN), exit $rc: $(tail -2 "$W/t2.err")"
# its NAK delay has grown (1, 2, 4 s): an engine in watch mode takes it
# when it comes back
"$D" run -c "$W/t.conf" >"$W/t3.out" 2>"$W/t3.err" &
dpid=$!
for i in $(seq 1 150); do [ "$($P count "$JS_URLS" T_OUT)" = 1 ] && break; sleep 0.1; done
sleep 0.3
kill -TERM "$dpid"; rc=0; wait "$dpid" || rc=$?
check '[ "$rc" = 0 ] && [ "$($P count "$JS_URLS" T_IN)" = 0 ] && [ "$($P count "$JS_URLS" T_OUT)" = 1 ]' \
	"with missing_key = esp-only again the redelivered message is signed and acknowledged" "exit $rc: $(tail -n 2 "$W/t3.err")"
# a crash between publish and acknowledgement, staged: the output of ID is
# already in T_OUT when the engine gets the input; the re-publish carries
# the same Nats-Msg-Id and T_OUT's duplicate window drops it
printf 'From: <a@c4.example>\r\nTo: <b@example.net>\r\nSubject: twice\r\n\r\nTOK-twice-END\r\n' >"$W/twice.eml"
xid=$("$D" enqueue -c "$W/t.conf" -f a@c4.example -r b@example.net "$W/twice.eml" 2>&1)
"$P" pubone "$JS_URLS" t.out "$xid" "$W/twice.eml" >/dev/null
before=$("$P" count "$JS_URLS" T_OUT)
rc=0; "$D" run -c "$W/t.conf" --once >"$W/t3b.out" 2>"$W/t3b.err" || rc=$?
after=$("$P" count "$JS_URLS" T_OUT)
check '[ "$rc" = 0 ] && [ "$after" = "$before" ] && [ "$($P count "$JS_URLS" T_IN)" = 0 ] && grep -q "1 signed copies were in T_OUT already" "$W/t3b.err"' \
	"an output already in the stream (crash between publish and ack): the re-publish is dropped as a duplicate, the input acknowledged" \
	"exit $rc, T_OUT $before -> $after: $(tail -n 2 "$W/t3b.err")"
rc=0; "$D" run -c "$W/t.conf" --once --set create_streams=no --set in_stream=NOPE_IN --set in_subject=nope.in \
	>"$W/t4.out" 2>"$W/t4.err" || rc=$?
check '[ "$rc" = 78 ] && grep -q "NOPE_IN is missing and create_streams = no" "$W/t4.err"' \
	"create_streams = no and a missing stream: run exits 78" "exit $rc: $(tail -1 "$W/t4.err")"
rc=0; "$D" run -c "$W/t.conf" --once --set transport=broker >/dev/null 2>"$W/t4b.err" || rc=$?
rc2=0; "$D" run -c "$W/t.conf" --once --set in_stream=a.b >/dev/null 2>>"$W/t4b.err" || rc2=$?
check '[ "$rc" = 78 ] && [ "$rc2" = 78 ]' "an unknown transport or a stream name with '.' is a configuration error (78)" "exits $rc $rc2: $(cat "$W/t4b.err")"
read -r freeport <<<"$(js_free_ports 1)"
conf "$W/down.conf" "nats_servers = nats://127.0.0.1:$freeport"
sed -i "2d" "$W/down.conf"	# the first nats_servers line
rc=0; echo "x" | "$D" enqueue -c "$W/down.conf" -f a@c1.example -r b@example.net >"$W/t5.out" 2>"$W/t5.err" || rc=$?
check '[ "$rc" = 75 ] && [ ! -s "$W/t5.out" ]' "enqueue with no server listening exits 75 and prints no ID" "exit $rc: $(cat "$W/t5.err")"

echo "== review regressions: envelope lines, exit codes, start-up, credentials, reload, metrics"
conf "$W/u.conf" "in_stream = U_IN" "in_subject = u.in" "out_stream = U_OUT" \
	"out_subject = u.out" "failed_stream = U_FAIL" "failed_subject = u.fail" \
	"nats_consumer = u"
"$D" run -c "$W/u.conf" --once >/dev/null 2>"$W/u0.err"	# makes the streams
udrain() {	# udrain STREAM DIR: every message of STREAM, headers in DIR/sample/N.hdr
	rm -rf "$2"; mkdir -p "$2"
	"$P" drain "$JS_URLS" "$1" "$2" 1000 >/dev/null 2>&1
}
# pickup format inside the payload: `enqueue` without -f of a file that
# starts with envelope lines; the output must carry them as headers
printf 'x-sender: bounce@c1.example\r\nx-receiver: r1@example.net\r\nx-receiver: <r2@example.org>\r\nFrom: <a@c1.example>\r\nTo: <r1@example.net>\r\nSubject: pickup\r\n\r\nTOK-pickup-END\r\n' >"$W/pickup.eml"
pid1=$("$D" enqueue -c "$W/u.conf" "$W/pickup.eml" 2>"$W/u1e.err")
rc=0; "$D" run -c "$W/u.conf" --once >/dev/null 2>"$W/u1.err" || rc=$?
udrain U_OUT "$W/u1"
hdr=$(cat "$W"/u1/sample/0.hdr 2>/dev/null | tr '\n' ' ')
check '[ "$rc" = 0 ] && [ -n "$pid1" ] && [ "$hdr" = "X-Sender: bounce@c1.example X-Receiver: r1@example.net X-Receiver: r2@example.org " ] && ! grep -qi "^x-receiver" "$W"/u1/sample/0.eml' \
	"enqueue (no -f) of a pickup-format file: the signed output carries X-Sender and both X-Receiver headers" \
	"exit $rc, id '$pid1', headers '$hdr': $(tail -n 2 "$W/u1e.err" "$W/u1.err")"
"$P" purge "$JS_URLS" U_OUT >/dev/null
# the same lines published by another producer, no envelope headers
"$P" pubone "$JS_URLS" u.in raw-pickup-1 "$W/pickup.eml" >/dev/null
rc=0; "$D" run -c "$W/u.conf" --once >/dev/null 2>"$W/u2.err" || rc=$?
udrain U_OUT "$W/u2"
hdr=$(cat "$W"/u2/sample/0.hdr 2>/dev/null | tr '\n' ' ')
check '[ "$rc" = 0 ] && [ "$hdr" = "X-Sender: bounce@c1.example X-Receiver: r1@example.net X-Receiver: r2@example.org " ]' \
	"a payload that starts with envelope lines (no NATS headers): the engine turns them into X-Sender/X-Receiver headers" \
	"exit $rc, headers '$hdr': $(tail -n 2 "$W/u2.err")"
"$P" purge "$JS_URLS" U_OUT >/dev/null
# headers and payload lines that disagree: failed with a reason, not guessed
printf 'x-receiver: other@example.com\r\nFrom: <a@c1.example>\r\nTo: <r1@example.net>\r\nSubject: clash\r\n\r\nTOK-clash-END\r\n' >"$W/clash.eml"
"$P" pubone "$JS_URLS" u.in raw-clash-1 "$W/clash.eml" bounce@c1.example r1@example.net >/dev/null
rc=0; "$D" run -c "$W/u.conf" --once >/dev/null 2>"$W/u3.err" || rc=$?
udrain U_FAIL "$W/u3"
reason=$(grep -h '^X-Dkimpress-Error:' "$W"/u3/sample/*.hdr 2>/dev/null | head -1)
check '[ "$rc" = 65 ] && [ "$($P count "$JS_URLS" U_OUT)" = 0 ] && grep -q "^raw-clash-1 " "$W/u3/ids" && echo "$reason" | grep -q "different envelopes"' \
	"X-Receiver headers and x-receiver lines in the payload that disagree: the message fails with a reason ($reason)" \
	"exit $rc, U_OUT $($P count "$JS_URLS" U_OUT), failed: $(cat "$W/u3/ids" 2>/dev/null): $(tail -n 2 "$W/u3.err")"
"$P" purge "$JS_URLS" U_FAIL >/dev/null
"$P" purge "$JS_URLS" U_OUT >/dev/null
# enqueue -f/-r and lines that name another envelope: 65; the same: queued
rc=0; "$D" enqueue -c "$W/u.conf" -f bounce@c1.example -r r1@example.net "$W/pickup.eml" >/dev/null 2>"$W/u4.err" || rc=$?
rc2=0; "$D" enqueue -c "$W/u.conf" -f bounce@c1.example -r r1@example.net -r r2@example.org "$W/pickup.eml" >/dev/null 2>>"$W/u4.err" || rc2=$?
check '[ "$rc" = 65 ] && [ "$rc2" = 0 ]' "enqueue -f/-r of a file whose envelope lines disagree exits 65; agreeing ones are queued" "exits $rc $rc2: $(cat "$W/u4.err")"
"$P" purge "$JS_URLS" U_IN >/dev/null
# a stream that refuses (full, discard new): temporary (75), not 69
"$P" mkstream "$JS_URLS" V_IN v.in 1 >/dev/null
conf "$W/v.conf" "in_stream = V_IN" "in_subject = v.in"
printf 'From: <a@c1.example>\r\nTo: <b@example.net>\r\nSubject: full\r\n\r\nbody\r\n' >"$W/full.eml"
rc1=0; "$D" enqueue -c "$W/v.conf" -f a@c1.example -r b@example.net "$W/full.eml" >/dev/null 2>"$W/v.err" || rc1=$?
rc=0; "$D" enqueue -c "$W/v.conf" -f a@c1.example -r b@example.net "$W/full.eml" >/dev/null 2>>"$W/v.err" || rc=$?
check '[ "$rc1" = 0 ] && [ "$rc" = 75 ]' "enqueue to a full stream (discard new) exits 75 (temporary), not 69" "exits $rc1 $rc: $(cat "$W/v.err")"
# a metrics port that cannot be bound: 71 before anything is fetched
read -r busyport mport aport <<<"$(js_free_ports 3)"
$PY -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$busyport" &
BUSY=$!
BG+=("$BUSY")
sleep 0.3
"$D" enqueue -c "$W/u.conf" -f a@c1.example -r b@example.net "$W/full.eml" >/dev/null 2>&1
rc=0; "$D" run -c "$W/u.conf" --once --set metrics_listen=127.0.0.1:$busyport >/dev/null 2>"$W/u5.err" || rc=$?
check '[ "$rc" = 71 ] && [ "$($P count "$JS_URLS" U_IN)" = 1 ] && [ "$($P count "$JS_URLS" U_OUT)" = 0 ]' \
	"metrics_listen on a busy port: run exits 71 with the message still in the input stream (nothing fetched)" \
	"exit $rc, U_IN $($P count "$JS_URLS" U_IN), U_OUT $($P count "$JS_URLS" U_OUT): $(tail -n 2 "$W/u5.err")"
kill "$BUSY" 2>/dev/null
"$P" purge "$JS_URLS" U_IN >/dev/null
# a password in nats_servers never reaches the log (start-up line, and a
# connection error)
first=${JS_URLS%%,*}
secret=S3cretPw$$
rc=0; "$D" run -c "$W/u.conf" --once --set "nats_servers=nats://alice:$secret@${first#nats://}" >"$W/u6.out" 2>"$W/u6.err" || rc=$?
rc2=0; "$D" run -c "$W/u.conf" --once --set "nats_servers=nats://alice:$secret@127.0.0.1:$freeport" >>"$W/u6.out" 2>>"$W/u6.err" || rc2=$?
check '[ "$rc" = 0 ] && [ "$rc2" = 75 ] && grep -q "alice\|\*\*\*@" "$W/u6.err" && ! grep -q "$secret" "$W/u6.err" "$W/u6.out"' \
	"a password in nats_servers never appears in the log" "exits $rc $rc2: $(grep -h "$secret" "$W/u6.err" | head -2)"
# two engines on one consumer: A defers (missing_key = defer, metrics on),
# B signs; A's metrics must not keep the message as deferred
conf "$W/a.conf" "in_stream = U_IN" "in_subject = u.in" "out_stream = U_OUT" \
	"out_subject = u.out" "failed_stream = U_FAIL" "failed_subject = u.fail" \
	"nats_consumer = u" "missing_key = defer" "metrics_listen = 127.0.0.1:$mport"
"$P" purge "$JS_URLS" U_OUT >/dev/null
"$D" run -c "$W/a.conf" >"$W/ua.out" 2>"$W/ua.err" &
APID=$!
BG+=("$APID")
for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null && break; sleep 0.1; done
"$D" enqueue -c "$W/u.conf" -f x@nokey2.example -r y@example.net "$W/nokey.eml" >/dev/null 2>&1
for i in $(seq 1 50); do grep -q "deferred: no customer key" "$W/ua.err" && break; sleep 0.1; done
"$D" run -c "$W/u.conf" >"$W/ub.out" 2>"$W/ub.err" &
BPID=$!
BG+=("$BPID")
for i in $(seq 1 200); do [ "$($P count "$JS_URLS" U_OUT)" = 1 ] && break; sleep 0.1; done
kill -TERM "$BPID"; wait "$BPID" 2>/dev/null
sleep 0.5
curl -sf "http://127.0.0.1:$mport/metrics" >"$W/ua.prom" 2>/dev/null
stuck=$(sed -n 's/^dkimpress_deferred_messages //p' "$W/ua.prom")
check '[ "$($P count "$JS_URLS" U_OUT)" = 1 ] && [ -s "$W/ua.prom" ] && { [ -z "$stuck" ] || [ "$stuck" = 0 ]; }' \
	"a message deferred by engine A and signed by engine B is not kept as deferred by A (dkimpress_deferred_messages: '${stuck:-absent}')" \
	"U_OUT $($P count "$JS_URLS" U_OUT), scrape $(wc -c <"$W/ua.prom") bytes"
waiting=$(sed -n 's/^dkimpress_queue_waiting_messages //p' "$W/ua.prom")
if command -v promtool >/dev/null; then
	promtool check metrics <"$W/ua.prom" >"$W/ua.promtool" 2>&1; prc=$?
else
	prc=0; echo "(promtool missing: not checked)" >"$W/ua.promtool"
fi
check '[ "$waiting" = 0 ] && [ "$prc" = 0 ]' \
	"transport = jetstream: /metrics has dkimpress_queue_waiting_messages (the consumer's pending count: '$waiting') and promtool accepts it" \
	"waiting '$waiting', promtool exit $prc: $(head -3 "$W/ua.promtool")"
# reload: JetStream settings and threads need a restart, and say so
sed -i 's/^nak_delay = 1$/nak_delay = 2/; s/^threads = 2$/threads = 1/' "$W/a.conf"
kill -HUP "$APID"
for i in $(seq 1 30); do grep -q "reloaded $W/a.conf" "$W/ua.err" && break; sleep 0.1; done
check 'grep "reload:" "$W/ua.err" | grep -q "nak_delay" && grep "reload:" "$W/ua.err" | grep -q "threads"' \
	"SIGHUP with nak_delay and threads changed: a warning names both" "$(grep -E "reload" "$W/ua.err" | head -3)"
kill -TERM "$APID"; wait "$APID" 2>/dev/null
# the byte budget counts a bare-LF payload's CRLF copy (issue 19): four
# 300 KB messages with bare LFs, inflight_bytes = 1M, one worker, batch 4.
# Counted at their size (+ slack), three fit in one batch and one goes
# straight back (gone 1); with the copy (about twice the size) one batch
# holds one, and the first batch alone hands three back (gone >= 3).
conf "$W/b.conf" "in_stream = B_IN" "in_subject = b.in" "out_stream = B_OUT" \
	"out_subject = b.out" "failed_stream = B_FAIL" "failed_subject = b.fail" \
	"nats_consumer = b" "threads = 1" "batch = 4" "inflight_bytes = 1M"
sed -i '/^threads = 2$/d' "$W/b.conf"
"$D" run -c "$W/b.conf" --once >/dev/null 2>"$W/b0.err"	# streams, consumer
$PY -c 'import sys
line = "x" * 76 + "\n"
body = line * (300 * 1024 // len(line))
sys.stdout.write("From: <a@c1.example>\nTo: <b@example.net>\nSubject: lf\n\n" + body)' >"$W/lf.eml"
for i in 1 2 3 4; do
	"$P" pubone "$JS_URLS" b.in "lf-$i" "$W/lf.eml" a@c1.example b@example.net >/dev/null
done
rc=0; "$D" run -c "$W/b.conf" --once --stats "$W/b.json" >/dev/null 2>"$W/b1.err" || rc=$?
gone=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["gone"])' "$W/b.json" 2>/dev/null)
check '[ "$rc" = 0 ] && [ "$($P count "$JS_URLS" B_OUT)" = 4 ] && [ "${gone:-0}" -ge 3 ]' \
	"the in-flight byte budget counts the CRLF copy of a bare-LF payload: with inflight_bytes = 1M a batch holds one 300 KB message, not three (gone $gone)" \
	"exit $rc, B_OUT $($P count "$JS_URLS" B_OUT), gone '${gone}': $(tail -n 2 "$W/b1.err")"
if [ -n "${JS_QUICK:-}" ]; then
	echo "(JS_QUICK: the $N-message cluster run left out)"
	echo "jetstream: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
fi

echo "== $N messages, $NENG engines (threads = 2), kill -9 at least $KILLS times, one NATS node killed"
conf "$W/conf"
mkdir -p "$W/logs"
GEN=0
start_engine() {	# start_engine SLOT
	GEN=$((GEN + 1))
	"$D" run -c "$W/conf" >"$W/logs/e$1.$GEN.out" 2>"$W/logs/e$1.$GEN.err" &
	ENG[$1]=$!
}
start_engine 0
for i in $(seq 1 50); do [ "$($P count "$JS_URLS" DKIM_IN 2>/dev/null)" = 0 ] && break; sleep 0.2; done
for s in $(seq 1 $((NENG - 1))); do start_engine "$s"; done
# the producer: enqueue for some, jsprobe chunks (paced) for the rest
: >"$W/manifest"
(
	for i in $(seq 1 "$ENQ"); do
		dom=$(echo $DOMS | cut -d' ' -f$(( (i % 8) + 1 )))
		printf 'From: <news@%s>\r\nTo: <r%d@example.net>\r\nSubject: enqueued %d\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\nTOK-enq-%d-END\r\n' \
			"$dom" "$i" "$i" "$i" >"$W/enq.eml"
		# as an MTA does: exit 75 means try again later
		for try in 1 2 3 4 5; do
			rc=0
			id=$("$D" enqueue -c "$W/conf" -f "b$i@$dom" -r "r$i@example.net" -r "s$i@example.org" "$W/enq.eml") || rc=$?
			[ "$rc" = 0 ] && { echo "$id enq-$i" >>"$W/manifest"; break; }
			echo "enqueue $i: exit $rc (try $try)"
			sleep 1
		done
	done
) >"$W/enq.out" 2>&1 &
ENQPID=$!
BG+=("$ENQPID")
(
	rest=$((N - ENQ)) chunk=2000 c=0 sent=0
	while [ "$sent" -lt "$rest" ]; do
		k=$((rest - sent < chunk ? rest - sent : chunk))
		"$P" pub "$JS_URLS" dkim.in "$k" "p$$c$c" "$W/probe.ids" $DOMS || exit 1
		sent=$((sent + k)) c=$((c + 1))
		sleep 0.7
	done
) >"$W/pub.out" 2>&1 &
PUBPID=$!
BG+=("$PUBPID")

kills=0 selfexit=0 natskill=0 producing=1 iter=0 hups=0
: >"$W/selfexits"
while [ "$producing" = 1 ] || [ "$kills" -lt "$KILLS" ] || [ "$natskill" = 0 ]; do
	# an engine needs a moment to connect and bind (unlike the queue
	# directory's): kill every 0.4-1.2 s so that work gets done between
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.4 + 0.8 * r / 32768 }')"
	iter=$((iter + 1))
	if [ "$producing" = 1 ] && ! kill -0 "$PUBPID" 2>/dev/null && ! kill -0 "$ENQPID" 2>/dev/null; then
		producing=0
		prc=0; wait "$PUBPID" || prc=$?
		echo "   producers done after $(since "$T0") s (jsprobe exit $prc)"
	fi
	for s in $(seq 0 $((NENG - 1))); do
		if ! kill -0 "${ENG[$s]}" 2>/dev/null; then
			rc=0; wait "${ENG[$s]}" || rc=$?
			selfexit=$((selfexit + 1))
			echo "engine slot $s exited by itself with $rc" >>"$W/selfexits"
			start_engine "$s"
		fi
	done
	if [ "$natskill" = 0 ] && [ "$iter" -ge 8 ]; then
		node=$((RANDOM % 3))
		echo "   kill -9 NATS node n$node (pid ${JS_PID[$node]}) after $(since "$T0") s"
		js_node_stop "$node"
		natskill=1
		( sleep 3 ) & NATSWAIT=$!
	fi
	if [ "$natskill" = 1 ] && [ -n "${NATSWAIT:-}" ] && ! kill -0 "$NATSWAIT" 2>/dev/null; then
		js_node_start "$node"
		echo "   NATS node n$node restarted (pid ${JS_PID[$node]})"
		NATSWAIT=""
	fi
	# a reload now and then: the transport must not hold on to the old
	# snapshot's configuration
	if [ $((iter % 4)) = 0 ]; then
		kill -HUP "${ENG[$((RANDOM % NENG))]}" 2>/dev/null && hups=$((hups + 1))
	fi
	s=$((RANDOM % NENG))
	if kill -9 "${ENG[$s]}" 2>/dev/null; then
		wait "${ENG[$s]}" 2>/dev/null
		kills=$((kills + 1))
	fi
	start_engine "$s"
	if awk -v e="$(since "$T0")" 'BEGIN { exit !(e > 200) }'; then
		echo "   (killer stopped after 200 s)"
		break
	fi
done
[ -n "${NATSWAIT:-}" ] && { wait "$NATSWAIT"; js_node_start "$node"; }
cat "$W/probe.ids" >>"$W/manifest" 2>/dev/null
sed -i 's/^\(p[^ ]*\)$/\1 \1/' "$W/manifest"
produced=$(wc -l <"$W/manifest")
echo "   $kills engine kills, $(since "$T0") s; DKIM_IN holds $($P count "$JS_URLS" DKIM_IN 2>/dev/null)"

# drain: DKIM_IN empty (work queue: only acknowledged messages leave it)
t1=$(now)
while :; do
	left=$("$P" count "$JS_URLS" DKIM_IN 2>/dev/null)
	[ "$left" = 0 ] && break
	for s in $(seq 0 $((NENG - 1))); do
		if ! kill -0 "${ENG[$s]}" 2>/dev/null; then
			rc=0; wait "${ENG[$s]}" || rc=$?
			selfexit=$((selfexit + 1))
			echo "engine slot $s exited by itself with $rc while draining" >>"$W/selfexits"
			start_engine "$s"
		fi
	done
	awk -v e="$(since "$t1")" 'BEGIN { exit !(e > 90) }' && { echo "   (DKIM_IN still holds $left after 90 s)"; break; }
	sleep 0.5
done
echo "   drained in $(since "$t1") s"
termrc=""
for s in $(seq 0 $((NENG - 1))); do kill -TERM "${ENG[$s]}" 2>/dev/null; done
for s in $(seq 0 $((NENG - 1))); do
	for i in $(seq 1 100); do kill -0 "${ENG[$s]}" 2>/dev/null || break; sleep 0.1; done
	kill -9 "${ENG[$s]}" 2>/dev/null && termrc="$termrc hung"
	rc=0; wait "${ENG[$s]}" || rc=$?
	termrc="$termrc $rc"
	ENG[$s]=""
done
termrc=${termrc# }

ndup=$(cat "$W"/logs/*.err | sed -n 's/.*jetstream: \([0-9]*\) signed copies were in DKIM_OUT already.*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
nnak=$(cat "$W"/logs/*.err | grep -c "deferred: publish not acknowledged")
echo "   redeliveries seen by engines that lived to SIGTERM: $ndup re-published copies dropped by DKIM_OUT's duplicate window; $nnak messages NAK'd after a publish was not acknowledged"
check '[ "$kills" -ge "$KILLS" ]' "killed an engine with kill -9 $kills times (want >= $KILLS)"
check '[ "$natskill" = 1 ]' "killed a NATS node with kill -9 and restarted it"
nrel=$(cat "$W"/logs/*.err | grep -c "reloaded $W/conf")
check '[ "$nrel" -gt 0 ] && ! grep -q "reload failed" "$W"/logs/*.err' "SIGHUP reloads during the run ($hups sent, $nrel logged as reloaded)"
check '[ "$selfexit" = 0 ]' "no engine exited by itself" "$(head -3 "$W/selfexits" | tr '\n' ' '); last log: $(tail -n 1 "$(ls -t "$W"/logs/*.err | head -1)")"
check 'for r in $termrc; do [ "$r" = 0 ] || exit 1; done' "the engines exit 0 on SIGTERM (exits: $termrc)"
nretry=$(grep -c "exit 75" "$W/enq.out")
[ "$nretry" = 0 ] || echo "   enqueue exited 75 (cluster busy or a node down) $nretry times; the producer tried again"
check '[ "$produced" = "$N" ]' "the producers published $N messages ($ENQ by dkimpress enqueue)" "$produced in the manifest: $(tail -n 2 "$W/enq.out" "$W/pub.out")"
check '[ "$($P count "$JS_URLS" DKIM_IN)" = 0 ]' "the input stream is empty"
check '[ "$($P count "$JS_URLS" DKIM_FAILED)" = 0 ]' "nothing in the failed stream"

mkdir -p "$W/out"
"$P" drain "$JS_URLS" DKIM_OUT "$W/out" "$SAMPLE" >"$W/drain.out" 2>&1
$PY - "$W/manifest" "$W/out/ids" >"$W/tally" <<'PY'
import sys
want = dict(l.split() for l in open(sys.argv[1]) if l.strip())
seen = {}
wrong = []
for l in open(sys.argv[2]):
    i, tok = l.split()
    seen[i] = seen.get(i, 0) + 1
    if i in want and want[i] != tok:
        wrong.append(i)
dups = sorted(i for i, c in seen.items() if c > 1)
missing = sorted(i for i in want if i not in seen)
unknown = sorted(i for i in seen if i not in want)
print("inputs %d outputs %d duplicates %d missing %d unknown %d wrong-body %d"
      % (len(want), sum(seen.values()), len(dups), len(missing), len(unknown), len(wrong)))
for i in (dups + missing + unknown + wrong)[:10]:
    print("  %s" % i)
sys.exit(1 if dups or missing or unknown or wrong else 0)
PY
trc=$?
check '[ "$trc" = 0 ]' "DKIM_OUT holds every input ID exactly once, each with its own body ($(head -1 "$W/tally"))" "$(cat "$W/tally" "$W/drain.out" | head -12)"

ls "$W"/out/sample/*.eml >"$W/vfy.list" 2>/dev/null
nv=$(wc -l <"$W/vfy.list")
if $PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --list "$W/vfy.list" >"$W/vfy.dkimpy" 2>&1 &&
	[ "$nv" -ge "$SAMPLE" ]; then
	ok "dkimpy verifies a random sample of $nv outputs ($(tail -1 "$W/vfy.dkimpy"))"
else
	bad "dkimpy on $nv outputs: $(tail -1 "$W/vfy.dkimpy")"; grep -m3 "	fail" "$W/vfy.dkimpy"
fi
nenv=$(grep -l '^X-Sender: ' "$W"/out/sample/*.hdr 2>/dev/null | xargs -r grep -l '^X-Receiver: ' | wc -l)
check '[ "$nenv" = "$nv" ]' "every sampled output carries its X-Sender and X-Receiver headers ($nenv of $nv)"
ncust=$(grep -c "d=c[1-6].example" "$W/vfy.dkimpy")
nrsa=$(grep -c "d=c[1-3].example s=s[1-3] a=rsa-sha256: pass" "$W/vfy.dkimpy")
ned=$(grep -c "d=c[4-6].example s=s[4-6] a=ed25519-sha256: pass" "$W/vfy.dkimpy")
nesp=$(grep -c "sigs=1 pass=1" "$W/vfy.dkimpy")
check '[ "$nrsa" -gt 0 ] && [ "$ned" -gt 0 ] && [ "$nesp" -gt 0 ]' \
	"the sample mixes RSA ($nrsa) and Ed25519 ($ned) customer signatures and ESP-only messages ($nesp)"

if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$W"/logs/* >/dev/null 2>&1; then
	bad "sanitizer reports in the engine logs"
	grep -hE -m3 "AddressSanitizer|LeakSanitizer|runtime error:" "$W"/logs/* | head -3
fi
js_cluster_stop
rc=0; echo "x" | "$D" enqueue -c "$W/conf" -f a@c1.example -r b@example.net >/dev/null 2>"$W/t6.err" || rc=$?
check '[ "$rc" = 75 ]' "enqueue with the whole cluster stopped exits 75" "exit $rc: $(cat "$W/t6.err")"
echo "   time taken: $(since "$T0") s"
echo "jetstream: $pass passed, $fail failed"
[ "$fail" = 0 ]
