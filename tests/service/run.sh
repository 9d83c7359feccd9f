#!/usr/bin/env bash
# tests/service/run.sh — dkimpress as a service: the installation, the
# systemd unit, sd_notify and the log destinations.
#
#  install  `make install DESTDIR=tmp PREFIX=/usr/local`: the binary, the
#           library and header, dkimpress(1), dkimpress.conf(5), the
#           example configuration and the unit, which names
#           /usr/local/bin/dkimpress and /etc/dkimpress/dkimpress.conf;
#           `make uninstall` removes them again.
#  verify   `systemd-analyze verify` on the installed unit, offline: with
#           --root=DESTDIR (this container has no systemd as PID 1), the
#           root holding a copy of the system's units (the targets the
#           unit is ordered after) and /bin/kill (ExecReload). verify
#           loads the unit as systemd would: every key known and parsed,
#           the commands executable, the dependencies there; it prints a
#           line for each problem, and exits 0 even for some (an unknown
#           key), so the check is "exit 0 and no output". A broken copy of
#           the unit (Type=notifyx, an unknown key) must be caught. User=
#           is not checked (resolved when the service starts). Then
#           `systemd-analyze security --offline` rates the sandbox.
#  notify   the engine with NOTIFY_SOCKET on a datagram socket this test
#           listens on: READY=1 once it runs, RELOADING=1 (with
#           MONOTONIC_USEC) then READY=1 around a SIGHUP, the same for a
#           SIGHUP with a broken configuration, STOPPING=1 on SIGTERM, exit 0.
#  log      log = syslog: nothing on stderr, the lines reach /dev/log
#           (a socket of this test, bound over /dev/log in a private mount
#           namespace) with facility mail and ident dkimpress; stderr that
#           is the journal (JOURNAL_STREAM): lines start with <priority>.
# Ends with "service: N passed, N failed". Env: DKIMPRESS, BUILD; KEEP=1
# keeps the scratch directory.
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
D=$DKIMPRESS
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "service: 0 passed, 0 failed"
	echo "skipped: systemd-analyze is not installed (apt-get install systemd)"
	exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-service.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

# --------------------------------------------------------------- install
echo "== make install DESTDIR=... PREFIX=/usr/local"
R=$W/root
# -o all: install what $BUILD holds, never rebuild it here (a sanitizer
# build's flags are not known to this script)
if make -C "$TOP" --no-print-directory -o all install DESTDIR="$R" PREFIX=/usr/local \
	BUILD="$BUILD" >"$W/install.log" 2>&1; then
	ok "make install exits 0"
else
	bad "make install: $(tail -3 "$W/install.log")"
fi
for f in bin/dkimpress lib/libdkimpress.a include/dkimpress/dkimpress.h \
	share/man/man1/dkimpress.1 share/man/man5/dkimpress.conf.5 \
	share/doc/dkimpress/dkimpress.conf.example lib/systemd/system/dkimpress.service; do
	[ -s "$R/usr/local/$f" ] || missing="${missing:-} $f"
done
check '[ -z "${missing:-}" ]' "installed: binary, library, header, both man pages, example configuration, unit" "missing:${missing:-}"
check '"$R/usr/local/bin/dkimpress" --version | grep -q "^dkimpress "' "the installed binary runs"
U=$R/usr/local/lib/systemd/system/dkimpress.service
check 'grep -qx "ExecStart=/usr/local/bin/dkimpress run -c /etc/dkimpress/dkimpress.conf" "$U" && ! grep -q "@[A-Z]*@" "$U"' \
	"the unit names the installed binary and /etc/dkimpress/dkimpress.conf (PREFIX written in)" "$(grep ExecStart "$U")"
miss=""
for l in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' User=dkimpress ProtectSystem=strict \
	ReadWritePaths=/var/spool/dkimpress PrivateTmp=yes NoNewPrivileges=yes CapabilityBoundingSet= \
	ProtectHome=yes PrivateDevices=yes 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
	SystemCallArchitectures=native MemoryDenyWriteExecute=yes 'RestartPreventExitStatus=66 78'; do
	grep -qxF "$l" "$U" || miss="$miss [$l]"
done
check '[ -z "$miss" ]' "the unit: Type=notify, ExecReload SIGHUP, User=dkimpress, ProtectSystem=strict with the queue writable, the sandbox" "missing:$miss"
if command -v groff >/dev/null 2>&1; then
	MANWARN=$(for m in man1/dkimpress.1 man5/dkimpress.conf.5; do
		LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$R/usr/local/share/man/$m" 2>&1; done | head -3)
	check '[ -z "$MANWARN" ]' "both man pages format without groff warnings" "$MANWARN"
else
	echo "skip man page warnings: groff is not installed"
fi
cp -a "$R" "$W/root2"
if make -C "$TOP" --no-print-directory -o all uninstall DESTDIR="$W/root2" PREFIX=/usr/local \
	BUILD="$BUILD" >"$W/uninstall.log" 2>&1 && [ -z "$(find "$W/root2" -type f)" ]; then
	ok "make uninstall removes every installed file"
else
	bad "make uninstall: left $(find "$W/root2" -type f | head -3)"
fi

# ---------------------------------------------------------------- verify
echo "== systemd-analyze verify (offline, --root=DESTDIR)"
mkdir -p "$R/usr/lib/systemd" "$R/usr/bin" "$R/etc"
cp -a /usr/lib/systemd/system "$R/usr/lib/systemd/"
cp /usr/bin/kill "$R/usr/bin/kill"
ln -sfn usr/bin "$R/bin"
rc=0
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --root="$R" --man=no "$U" >"$W/verify.out" 2>&1 || rc=$?
check '[ "$rc" = 0 ] && [ ! -s "$W/verify.out" ]' "systemd-analyze verify passes on the installed unit (exit 0, no output)" \
	"exit $rc: $(head -5 "$W/verify.out")"
B=$R/usr/local/lib/systemd/system/broken.service
sed -e 's/^Type=notify$/Type=notifyx/' -e 's/^UMask=0077$/UMask=0077\nNoSuchKey=1/' "$U" >"$B"
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --root="$R" --man=no "$B" >"$W/broken.out" 2>&1
check 'grep -q "notifyx" "$W/broken.out" && grep -q "NoSuchKey" "$W/broken.out"' \
	"... and catches a broken copy (a bad Type=, an unknown key)" "$(head -3 "$W/broken.out")"
rm -f "$B"
systemd-analyze security --offline=true --root="$R" "$U" >"$W/security.out" 2>&1
score=$(grep -oE 'Overall exposure level for dkimpress.service: [0-9.]+' "$W/security.out" | grep -oE '[0-9.]+$')
check '[ -n "$score" ] && awk -v s="$score" "BEGIN { exit !(s < 5.0) }"' \
	"systemd-analyze security --offline: exposure ${score:-?} (below 5.0, MEDIUM)" "$(tail -2 "$W/security.out")"

# ---------------------------------------------------------------- notify
echo "== sd_notify: READY, RELOADING, STOPPING"
mkdir -p "$W/keys" "$W/q/in/new"
"$D" keygen --domain esp.example --selector esp1 --out "$W/keys" >/dev/null 2>&1
conf() {	# conf FILE [extra lines]
	local f=$1
	shift
	{
		echo "queue_dir = $W/q"
		echo "esp_key = esp.example:esp1:$W/keys/esp1.private"
		echo "threads = 2"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}
for i in 1 2 3; do
	printf 'From: a@x.example\r\nSubject: %d\r\n\r\nbody\r\n' "$i" >"$W/q/in/new/m$i"
done
conf "$W/n.conf"
# the listener: one line per datagram, newlines inside shown as '|'
$PY - "$W/notify.sock" "$W/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w") as out:
    out.write("listening\n")
    out.flush()
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", "|") + "\n")
        out.flush()
PY
LST=$!
PIDS+=("$LST")
for _ in $(seq 1 50); do [ -S "$W/notify.sock" ] && break; sleep 0.1; done
# wait_line PATTERN N: until the notify log has N lines matching
wait_line() {
	local i
	for i in $(seq 1 100); do
		[ "$(grep -cE "$1" "$W/notify.log")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
NOTIFY_SOCKET=$W/notify.sock "$D" run -c "$W/n.conf" >"$W/n.sum" 2>"$W/n.log" &
ENG=$!
PIDS+=("$ENG")
wait_line '^READY=1' 1
check '[ $? = 0 ] && [ -z "$(ls "$W/q/in/new")" ] || { sleep 1; [ -z "$(ls "$W/q/in/new")" ]; }' \
	"READY=1 once the engine runs (and it signs what was queued)" "$(cat "$W/notify.log" | tr '\n' ' ')"
check 'grep -q "^READY=1|STATUS=signing $W/q/in" "$W/notify.log"' "... with STATUS= naming the queue"
kill -HUP "$ENG"
wait_line '^READY=1' 2
check 'grep -qE "^RELOADING=1\|MONOTONIC_USEC=[0-9]+\|" "$W/notify.log" && [ "$(grep -n "" "$W/notify.log" | grep -E "RELOADING=1" | head -1 | cut -d: -f1)" -lt "$(grep -n "" "$W/notify.log" | grep -E "^[0-9]+:READY=1" | sed -n 2p | cut -d: -f1)" ]' \
	"SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1" "$(tr '\n' ' ' <"$W/notify.log")"
echo "threads = many" >>"$W/n.conf"
kill -HUP "$ENG"
wait_line '^READY=1' 3
check '[ "$(grep -c "^RELOADING=1" "$W/notify.log")" = 2 ] && grep -q "failed reloads 1" "$W/notify.log"' \
	"a SIGHUP with a broken configuration: RELOADING=1, then READY=1 (the old one keeps signing)" "$(tr '\n' ' ' <"$W/notify.log")"
kill -TERM "$ENG"
wait "$ENG"
rc=$?
wait_line '^STOPPING=1' 1
check '[ $? = 0 ] && [ "$rc" = 0 ]' "SIGTERM: STOPPING=1, exit 0" "exit $rc; $(tr '\n' ' ' <"$W/notify.log")"
kill "$LST" 2>/dev/null
wait "$LST" 2>/dev/null
PIDS=()
conf "$W/n.conf"
rc=0
env -u NOTIFY_SOCKET "$D" run -c "$W/n.conf" --once >/dev/null 2>&1 || rc=$?
check '[ "$rc" = 0 ]' "without NOTIFY_SOCKET nothing is sent and the run works" "exit $rc"

# ------------------------------------------------------------------- log
echo "== log = syslog, and stderr as the journal"
printf 'From: a@x.example\r\nSubject: s\r\n\r\nbody\r\n' >"$W/q/in/new/s1"
conf "$W/s.conf" "log = syslog"
if unshare -m --propagation private true 2>/dev/null; then
	$PY - "$W/log.sock" "$W/syslog.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w") as out:
    while True:
        out.write(s.recv(8192).decode(errors="replace") + "\n")
        out.flush()
PY
	LST=$!
	PIDS+=("$LST")
	for _ in $(seq 1 50); do [ -S "$W/log.sock" ] && break; sleep 0.1; done
	mkdir -p "$W/odev"
	# a private /dev: the few devices a run opens, and our socket as /dev/log
	rc=0
	unshare -m --propagation private /bin/sh -c '
		W=$1; D=$2
		mount --bind /dev "$W/odev" && mount -t tmpfs -o mode=755 none /dev || exit 90
		for n in null zero random urandom full; do
			touch /dev/$n && mount --bind "$W/odev/$n" /dev/$n || exit 91
		done
		touch /dev/log && mount --bind "$W/log.sock" /dev/log || exit 92
		exec "$D" run -c "$W/s.conf" --once' sh "$W" "$D" >"$W/s.sum" 2>"$W/s.err" || rc=$?
	sleep 0.3
	kill "$LST" 2>/dev/null
	wait "$LST" 2>/dev/null
	PIDS=()
	check '[ "$rc" = 0 ] && [ ! -s "$W/s.err" ] && grep -q "signed 0, esp-only 1" "$W/s.sum"' \
		"log = syslog: the run works, stderr stays empty, the summary is on stdout" "exit $rc: $(head -2 "$W/s.err")"
	# <22>: facility mail (2) x 8 + info (6); RFC 3164 "dkimpress[PID]:"
	check 'grep -qE "^<22>.* dkimpress\[[0-9]+\]: run: engine" "$W/syslog.log"' \
		"... the lines reach /dev/log as mail.info, ident dkimpress[PID]" "$(head -2 "$W/syslog.log")"
else
	echo "skip log = syslog through /dev/log: no private mount namespace here (not root?)"
fi
printf 'From: a@x.example\r\nSubject: j\r\n\r\nbody\r\n' >"$W/q/in/new/j1"
printf 'broken\r\n' >"$W/q/in/new/j2"
conf "$W/j.conf"
: >"$W/j.err"
js=$(stat -c '%d:%i' "$W/j.err")
rc=0
JOURNAL_STREAM=$js "$D" run -c "$W/j.conf" --once >/dev/null 2>>"$W/j.err" || rc=$?
check 'grep -q "^<6>run: engine" "$W/j.err" && grep -q "^<4>warning: j2: failed" "$W/j.err" && ! grep -q "^dkimpress:" "$W/j.err"' \
	"stderr that is the journal (JOURNAL_STREAM): <6> info, <4> warning, no other prefix" "$(head -3 "$W/j.err")"
JOURNAL_STREAM=1:1 "$D" run -c "$W/j.conf" --once >/dev/null 2>"$W/j2.err"
check 'grep -q "^dkimpress: run: engine" "$W/j2.err"' "a JOURNAL_STREAM that is not stderr (a redirected child) changes nothing"

echo "service: $pass passed, $fail failed"
[ "$fail" = 0 ]
