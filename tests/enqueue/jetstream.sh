#!/usr/bin/env bash
# tests/enqueue/jetstream.sh — `dkimpress enqueue --id` with transport =
# jetstream: the ID is the publish's Nats-Msg-Id, so the input stream's
# duplicate window keeps one copy of a second hand-over.
#
# Starts one private nats-server with JetStream on a free loopback port
# (its store in a temporary directory), makes the work-queue stream
# DKIM_IN (dkim.in) with tests/jetstream/jsprobe (nats.c only, no dkimpress
# code), and checks with jsprobe's count, pubone and purge:
#   - the same --id twice: both exit 0, the second says it was a
#     duplicate, one message in the stream; jsprobe's own publish with
#     that Nats-Msg-Id is dropped as well, and after a purge the same
#     --id is still dropped (the stream's window, not its content);
#   - another --id: a second message;
#   - without --id twice: two more (new IDs each time);
#   - an --id that is not a valid queue ID ('/'): published as id-KEY,
#     once for two calls;
#   - an invalid --id (a space): 75, nothing published.
# Ends with "enqueue-jetstream: N passed, N failed"; exit 77 when
# nats-server, libnats or a C compiler is missing. Env: BUILD, DKIMPRESS.
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=enqueue-jetstream
skip() { echo "$NAME: 0 passed, 0 failed"; echo "skipped: $*"; exit 77; }
[ -x "$DKIMPRESS" ] || skip "$DKIMPRESS is not an executable (build it first)"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$NATS_SERVER" ] || skip "nats-server is not installed (apt-get install nats-server)"
pkg-config --exists libnats 2>/dev/null || skip "libnats is missing (apt-get install libnats-dev)"
command -v cc >/dev/null || skip "no C compiler for the test's NATS client"

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-enqueue-js.XXXXXX")
NPID=
cleanup() {
	[ -n "$NPID" ] && kill -9 "$NPID" 2>/dev/null && wait "$NPID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }

cp "$DKIMPRESS" "$W/dkimpress" && D=$W/dkimpress
P=$W/jsprobe
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -o "$P" "$HERE/../jetstream/jsprobe.c" $(pkg-config --cflags --libs libnats) ||
	skip "cannot build tests/jetstream/jsprobe.c against libnats"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=nats://127.0.0.1:$port
mkdir -p "$W/store"
"$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$W/store" >"$W/nats.log" 2>&1 &
NPID=$!
for _ in $(seq 1 100); do
	"$P" mkstream "$URL" DKIM_IN dkim.in 100000 >/dev/null 2>&1 && break
	sleep 0.1
done
"$P" count "$URL" DKIM_IN >/dev/null 2>&1 || { tail -5 "$W/nats.log"; bad "nats-server with JetStream on $URL and the stream DKIM_IN"; echo "$NAME: $pass passed, $fail failed"; exit 1; }
ok "a private nats-server with JetStream on $URL, stream DKIM_IN (work queue, subject dkim.in)"

cat >"$W/c.conf" <<CONF
transport = jetstream
nats_servers = $URL
esp_key = esp.example:esp1:/nonexistent/esp1.private
CONF
printf 'From: a@customer.example\r\nSubject: js\r\n\r\nTOK-js-END\r\n' >"$W/m"
count() { "$P" count "$URL" DKIM_IN 2>/dev/null | grep -oE '[0-9]+' | tail -1; }
enq() {
	"$D" enqueue -c "$W/c.conf" "$@" "$W/m" >"$W/out" 2>"$W/err"
	rc=$?
	out=$(cat "$W/out")
	errt=$(cat "$W/err")
}

enq --id "4F1C2A75.alice@example.net" -f s@e.example -r alice@example.net
rc1=$rc out1=$out
enq --id "4F1C2A75.alice@example.net" -f s@e.example -r alice@example.net
check '[ "$rc1" = 0 ] && [ "$out1" = "4F1C2A75.alice@example.net" ] && [ "$rc" = 0 ] && [ "$(count)" = 1 ]' \
	"the same --id twice: both exit 0, the ID printed, one message in DKIM_IN" \
	"rc $rc1 '$out1', rc $rc '$errt', count $(count)"
check 'grep -q "^dkimpress: --id 4F1C2A75.alice@example.net: the stream has it already" "$W/err"' \
	"... the second says the stream had it already ($errt)"
# an independent client publishing with Nats-Msg-Id = the --id is
# dropped too (so that is what enqueue sent), another ID is not
"$P" pubone "$URL" dkim.in "4F1C2A75.alice@example.net" "$W/m" >/dev/null 2>"$W/p.err"
c1=$(count)
"$P" pubone "$URL" dkim.in "probe-1" "$W/m" >/dev/null 2>>"$W/p.err"
c2=$(count)
"$P" purge "$URL" DKIM_IN >/dev/null 2>>"$W/p.err"
enq --id "4F1C2A75.alice@example.net" -f s@e.example -r alice@example.net
check '[ "$c1" = 1 ] && [ "$c2" = 2 ] && [ "$rc" = 0 ] && [ "$(count)" = 0 ]' \
	"... its Nats-Msg-Id is the --id: jsprobe's publish with that ID is dropped, with another ID kept; after a purge the stream still drops it (its window remembers)" \
	"counts $c1 $c2 $(count), rc $rc; $(cat "$W/p.err")"
"$P" purge "$URL" DKIM_IN >/dev/null 2>>"$W/p.err"
enq --id "4F1C2A75.bob@example.net" -f s@e.example -r bob@example.net
check '[ "$rc" = 0 ] && [ "$(count)" = 1 ]' "another --id: published" "rc $rc, count $(count)"
enq
enq
check '[ "$rc" = 0 ] && [ "$(count)" = 3 ]' "without --id, twice: two more messages (a new ID each)" "rc $rc, count $(count)"
enq --id 'odd/id!'
o1=$out
enq --id 'odd/id!'
check '[ "$rc" = 0 ] && [[ $o1 =~ ^id-[0-9a-f]{32}$ ]] && [ "$out" = "$o1" ] && [ "$(count)" = 4 ]' \
	"an --id with '/' goes as id-KEY ($o1), once for two calls" "rc $rc '$o1' '$out', count $(count)"
enq --id 'a b'
check '[ "$rc" = 75 ] && [ "$(count)" = 4 ]' "an invalid --id (a space): 75, nothing published" "rc $rc '$errt', count $(count)"

echo "$NAME: $pass passed, $fail failed"
[ "$fail" = 0 ]
