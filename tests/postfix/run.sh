#!/usr/bin/env bash
# tests/postfix/run.sh — a real Postfix in front of the engine.
#
# Runs a private Postfix instance (its own config_directory, queue_directory
# and data_directory under a temporary directory, smtpd on a free loopback
# port 127.0.0.1:25xx) whose only transports are pipe(8) services running
# `dkimpress enqueue -c CONF -f ${sender} -r ${recipient}` as nobody, the
# setup of docs/integration.md:
#   a.test  transport dkimpress,  one recipient per delivery
#           (dkimpress_destination_recipient_limit = 1, "-r ${recipient}",
#           "--id ${queue_id}.${recipient}", enable_long_queue_ids = yes:
#           no delivery may be taken for a duplicate)
#   m.test  transport dkimpressm, all recipients in one delivery
#           ("-r${recipient}" expands to one -rADDR per recipient)
# It sends POSTFIX_N (default 300) messages over SMTP (python3 smtplib):
# single recipients, two recipients on a.test (two deliveries), two on
# m.test (one delivery), and every tenth from the null sender; plus one
# to a quoted local part with a space, which enqueue refuses (64) and
# Postfix bounces. It waits until Postfix's queue is empty, then runs
# `dkimpress run --once` (as nobody too; customer RSA key through
# KeyTable/SigningTable, Ed25519 ESP key) and checks:
#   - postfix check is clean; every delivery went through the pipe and
#     the refused one bounced with enqueue's reason;
#   - in/new got exactly one file per expected delivery, in/tmp is empty;
#   - the engine signs them all; in/, out/tmp and failed/ end empty;
#   - every delivery is in out/new exactly once (matched by its token);
#   - each file starts with its x-sender / x-receiver lines (the right
#     sender, the null sender as <>, the right recipients) above the two
#     DKIM-Signature fields, customer d= first;
#   - dkimpy verifies both signatures of every file (envelope lines
#     stripped, keys fed offline).
# Then, behind the engine, docs/examples/dkimpress-to-postfix hands
# out/new to the same Postfix (sendmail -G -i -f SENDER -- RCPTS): every
# file leaves out/new, Postfix delivers each again through the pipe, and
# the same checks pass on what comes back into in/new (envelope right,
# both signatures still pass after sendmail, pickup, cleanup and pipe).
# Postfix is stopped on exit (trap). Exit 77 when Postfix cannot run here
# (not installed, not root). Ends with "postfix: N passed, N failed".
# Env: DKIMPRESS (default $BUILD/dkimpress), POSTFIX_N.
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
D=$DKIMPRESS
N=${POSTFIX_N:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
USER_=nobody
GROUP_=$(id -gn nobody 2>/dev/null || echo nogroup)
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
finish() {
	echo "postfix: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

if [ "$(id -u)" != 0 ]; then
	echo "skip: a private Postfix instance needs root (master binds and changes user)"
	exit 77
fi
if ! command -v postfix >/dev/null || [ ! -x /usr/lib/postfix/sbin/master ]; then
	echo "skip: Postfix is not installed (tools/deps installs it)"
	exit 77
fi
if ! $PY -c 'import dkim, nacl' 2>/dev/null; then
	echo "skip: python3-dkim and python3-nacl are needed (tools/deps)"
	exit 77
fi
if [ ! -x "$D" ]; then
	echo "no $D; run make first"
	bad "dkimpress binary"
	finish
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-postfix.XXXXXX")
PF=$W/postfix
stop_postfix() {
	local pid
	[ -f "$PF/etc/main.cf" ] || return 0
	postfix -c "$PF/etc" stop >/dev/null 2>&1
	pid=$(cat "$PF/spool/pid/master.pid" 2>/dev/null | tr -d ' ')
	for _ in $(seq 1 50); do
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid" 2>/dev/null
	fi
}
cleanup() {
	stop_postfix
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# nobody (the pipe user and the engine's user) must reach the binary,
# the configuration and its own queue and keys
chmod 0755 "$W"
# a private copy of the binary: pipe(8) runs it hundreds of times, and a
# rebuild of $D in the middle of the run must not make a delivery fail
install -m 0755 "$D" "$W/dkimpress"
D=$W/dkimpress
as_user() { setpriv --reuid="$USER_" --regid="$GROUP_" --clear-groups -- "$@"; }

echo "== keys, configuration, queue (owned by $USER_)"
mkdir -p "$W/keys"
"$D" keygen --domain customer1.example --selector s1 --out "$W/keys" >"$W/dns.txt" 2>/dev/null &&
	"$D" keygen --domain esp.example --selector esp1 --type ed25519 --out "$W/keys" >>"$W/dns.txt" 2>/dev/null
check '[ "$(wc -l <"$W/dns.txt")" = 2 ]' "keygen: customer RSA-2048 and ESP Ed25519 keys"
echo "k1 customer1.example:s1:$W/keys/s1.private" >"$W/KeyTable"
echo "*@customer1.example k1" >"$W/SigningTable"
Q=$W/queue
cat >"$W/dkimpress.conf" <<EOF
queue_dir = $Q
esp_key = esp.example:esp1:$W/keys/esp1.private
key_table = $W/KeyTable
signing_table = refile:$W/SigningTable
missing_key = fail
EOF
chown -R "$USER_:$GROUP_" "$W/keys"
chmod 0700 "$W/keys"
chmod 0600 "$W"/keys/*.private
chmod 0644 "$W/dkimpress.conf" "$W/KeyTable" "$W/SigningTable"
install -d -o "$USER_" -g "$GROUP_" -m 0700 "$Q" "$Q/in" "$Q/in/tmp" "$Q/in/new" "$Q/in/cur"

echo "== a private Postfix"
PORT=$($PY - <<'PY'
import socket
for port in range(2525, 2600):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
PY
)
if [ -z "$PORT" ]; then
	bad "no free port in 127.0.0.1:2525-2599"
	finish
fi
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix "$PF/data"
cat >"$PF/etc/main.cf" <<EOF
# tests/postfix: a private instance, nothing shared with /etc/postfix
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.dkimpress.test
mydomain = dkimpress.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP
biff = no
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
# every test domain goes to dkimpress enqueue (docs/integration.md)
relay_domains = a.test, m.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
transport_maps = inline:{ a.test=dkimpress:, m.test=dkimpressm: }
default_transport = error:5.3.0 not a test domain
dkimpress_destination_recipient_limit = 1
# queue IDs that never come back, for enqueue --id
enable_long_queue_ids = yes
# a deferred delivery is retried within seconds, not minutes
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
EOF
cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$PORT inet n - n - - smtpd
pickup    unix  n  -  n  60   1  pickup
cleanup   unix  n  -  n  -    0  cleanup
qmgr      unix  n  -  n  300  1  qmgr
rewrite   unix  -  -  n  -    -  trivial-rewrite
bounce    unix  -  -  n  -    0  bounce
defer     unix  -  -  n  -    0  bounce
trace     unix  -  -  n  -    0  bounce
verify    unix  -  -  n  -    1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -    -  proxymap
proxywrite unix -  -  n  -    1  proxymap
smtp      unix  -  -  n  -    -  smtp
relay     unix  -  -  n  -    -  smtp
showq     unix  n  -  n  -    -  showq
error     unix  -  -  n  -    -  error
retry     unix  -  -  n  -    -  error
discard   unix  -  -  n  -    -  discard
local     unix  -  n  n  -    -  local
anvil     unix  -  -  n  -    1  anvil
scache    unix  -  -  n  -    1  scache
postlog   unix-dgram n - n -  1  postlogd
# dkimpress enqueue as a pipe(8) command (docs/integration.md)
dkimpress unix  -  n  n  -    -  pipe
  flags=q null_sender= user=$USER_
  argv=$D enqueue -c $W/dkimpress.conf --id \${queue_id}.\${recipient} -f \${sender} -r \${recipient}
dkimpressm unix -  n  n  -    -  pipe
  flags=q null_sender= user=$USER_
  argv=$D enqueue -c $W/dkimpress.conf -f \${sender} -r\${recipient}
EOF
postfix -c "$PF/etc" check >"$W/check.out" 2>&1
rc=$?
check '[ "$rc" = 0 ] && [ ! -s "$W/check.out" ]' "postfix -c DIR check: clean" "exit $rc: $(head -5 "$W/check.out")"
postfix -c "$PF/etc" start >"$W/start.out" 2>&1
rc=$?
up=0
for _ in $(seq 1 100); do
	if $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
check '[ "$rc" = 0 ] && [ "$up" = 1 ]' "postfix -c DIR start: smtpd answers on 127.0.0.1:$PORT" "exit $rc: $(cat "$W/start.out")"
if [ "$up" != 1 ]; then
	cat "$PF/maillog" 2>/dev/null | tail -20
	finish
fi

echo "== $N messages over SMTP"
t0=$(date +%s)
$PY "$HERE/send.py" "$PORT" "$N" "$W/manifest.json" >"$W/send.out" 2>&1
rc=$?
want=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["files"]))' "$W/manifest.json" 2>/dev/null)
wantr=$($PY -c 'import json,sys; print(sum(len(f["rcpts"]) for f in json.load(open(sys.argv[1]))["files"]))' "$W/manifest.json" 2>/dev/null)
check '[ "$rc" = 0 ]' "smtplib: $(tail -1 "$W/send.out")" "exit $rc: $(tail -3 "$W/send.out")"
# wait for Postfix to deliver everything (or give up after 90 s)
empty=0
for _ in $(seq 1 450); do
	if postqueue -c "$PF/etc" -p 2>/dev/null | grep -q "Mail queue is empty"; then
		empty=1
		break
	fi
	sleep 0.2
done
t1=$(date +%s)
check '[ "$empty" = 1 ]' "Postfix delivered everything in $((t1 - t0)) s (postqueue -p: queue empty)" \
	"$(postqueue -c "$PF/etc" -p 2>&1 | tail -5)"
# one log line per recipient; each names the queue ID enqueue printed
# (postlogd writes the log asynchronously: give it a moment)
for _ in $(seq 1 50); do
	nsent=$(grep -c 'status=sent (delivered via dkimpress' "$PF/maillog")
	[ "$nsent" -ge "$wantr" ] && break
	sleep 0.1
done
ndefer=$(grep -c 'status=deferred' "$PF/maillog")
check '[ "$nsent" = "$wantr" ] && [ "$ndefer" = 0 ]' \
	"$nsent recipients delivered through the dkimpress pipes (want $wantr), none deferred" \
	"$(grep -E 'status=(deferred|bounced)' "$PF/maillog" | head -3)"
grep -oE 'delivered via dkimpressm? service \([^)]*\)' "$PF/maillog" | sed 's/.*(//; s/)$//' | sort -u >"$W/logged.ids"
ls "$Q/in/new" | sort >"$W/queued.ids"
check 'cmp -s "$W/logged.ids" "$W/queued.ids"' \
	"the maillog names, for each delivery, the queue ID enqueue printed, and only those are in in/new"
nmarks=$(find "$Q/in/dedup" -mindepth 2 -type f -name '[0-9a-f]*' 2>/dev/null | wc -l)
check '! grep -q "not queued again" "$PF/maillog" && [ "$nmarks" -gt 0 ]' \
	"--id \${queue_id}.\${recipient}: $nmarks deliveries remembered in in/dedup, none taken for a duplicate" \
	"$(grep "not queued again" "$PF/maillog" | head -2)"
check 'grep -q "status=bounced (.*-r .*contains a space" "$PF/maillog"' \
	"the recipient with a space: enqueue exits 64, Postfix bounces it with the reason" \
	"$(grep -E 'status=bounced' "$PF/maillog" | head -2)"
nnew=$(find "$Q/in/new" -type f | wc -l)
check '[ "$nnew" = "$want" ] && [ -z "$(ls -A "$Q/in/tmp")" ]' "in/new holds $nnew files (want $want), in/tmp is empty"
check '[ -z "$(find "$Q/in/new" -type f ! -user "$USER_")" ] && [ -z "$(find "$Q/in/new" -type f ! -perm 0600)" ]' \
	"queue files owned by $USER_, mode 0600"

echo "== the engine (as $USER_)"
as_user "$D" run -c "$W/dkimpress.conf" --once >"$W/run.out" 2>"$W/run.err"
rc=$?
cat "$W/run.out" "$W/run.err" | grep -E "signed [0-9]+" | tail -1
check '[ "$rc" = 0 ]' "dkimpress run --once: exit 0" "exit $rc: $(tail -3 "$W/run.err")"
# (in/dedup keeps the --id marks for dedup_window: not messages)
check '[ -z "$(find "$Q/in" "$Q/out/tmp" -path "$Q/in/dedup" -prune -o -type f -print 2>/dev/null)" ] && [ -z "$(ls -A "$Q/failed" 2>/dev/null)" ]' \
	"in/ (but in/dedup), out/tmp and failed/ empty" "$(find "$Q/in" "$Q/out/tmp" "$Q/failed" -path "$Q/in/dedup" -prune -o -type f -print 2>/dev/null | head -3; head -c 300 "$Q"/failed/*.reason 2>/dev/null)"

echo "== every delivery in out/new exactly once, envelope on top, signatures pass"
$PY "$HERE/check.py" "$W/manifest.json" "$Q/out/new" "$W/dns.txt" >"$W/check.txt" 2>&1
rc=$?
grep -v '^  ' "$W/check.txt" | sed -n '1,20p' | while IFS= read -r l; do echo "     $l"; done
while IFS=$'\t' read -r res desc; do
	case $res in
	ok) ok "$desc" ;;
	FAIL) bad "$desc" ;;
	esac
done < <(grep -E $'^(ok|FAIL)\t' "$W/check.txt")
check '[ "$rc" = 0 ]' "check.py: $(tail -1 "$W/check.txt")"

# Behind the engine: the mover of docs/integration.md hands out/new to
# Postfix (sendmail -G -i -f SENDER -- RCPTS). The messages go to the
# same test domains, so they come back through the pipe into in/new: the
# signatures must survive sendmail, pickup, cleanup and pipe.
echo "== behind: docs/examples/dkimpress-to-postfix feeds out/new to Postfix"
SENDMAIL="sendmail -C $PF/etc" sh "$TOP/docs/examples/dkimpress-to-postfix" "$Q/out" >"$W/mover.out" 2>&1
rc=$?
check '[ "$rc" = 0 ] && [ -z "$(ls -A "$Q/out/new")" ] && [ -z "$(ls -A "$Q/out/sending")" ]' \
	"the mover took every file out of out/new by rename and handed it to sendmail" "exit $rc: $(head -3 "$W/mover.out")"
empty=0
for _ in $(seq 1 450); do
	if postqueue -c "$PF/etc" -p 2>/dev/null | grep -q "Mail queue is empty"; then
		empty=1
		break
	fi
	sleep 0.2
done
nnew=$(find "$Q/in/new" -type f | wc -l)
check '[ "$empty" = 1 ] && [ "$nnew" = "$want" ]' "Postfix delivered them all again: $nnew in in/new (want $want)" \
	"$(postqueue -c "$PF/etc" -p 2>&1 | tail -3)"
$PY "$HERE/check.py" --relayed "$W/manifest.json" "$Q/in/new" "$W/dns.txt" >"$W/check2.txt" 2>&1
rc=$?
while IFS=$'\t' read -r res desc; do
	case $res in
	ok) ok "after the trip: $desc" ;;
	FAIL) bad "after the trip: $desc" ;;
	esac
done < <(grep -E $'^(ok|FAIL)\t' "$W/check2.txt")
check '[ "$rc" = 0 ]' "check.py --relayed: $(tail -1 "$W/check2.txt")"
check '! grep -qE "postfix/[a-z/-]+\[[0-9]+\]: (warning|fatal|panic):" "$PF/maillog"' \
	"no Postfix warning in the whole run" "$(grep -E ": (warning|fatal|panic):" "$PF/maillog" | head -3)"
if [ "$fail" != 0 ]; then
	echo "--- maillog (last 15 lines)"
	tail -15 "$PF/maillog"
	grep -hE '^  ' "$W/check.txt" "$W/check2.txt" 2>/dev/null | head -10
fi
finish
