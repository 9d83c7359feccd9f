#!/usr/bin/env bash
# tests/e2e/run.sh — Postfix in front and behind, no glue (issue 18).
#
# The setup of docs/integration.md, "Postfix in front and behind, no glue",
# on two private Postfix instances (each its own config_directory,
# queue_directory and data_directory under a temporary directory, smtpd on
# a loopback port picked at run time):
#
#   send.py --SMTP--> Postfix A --pipe(8)--> dkimpress enqueue --> in/new
#     --> dkimpress run (watch mode) --> out/new
#     --> dkimpress relay (long-running) --SMTP--> Postfix B --> Maildir
#
# Postfix A: default_transport = dkimpress, one recipient per delivery
# (dkimpress_destination_recipient_limit = 1), the master.cf line of the
# document (with --id ${queue_id}-${recipient} when `enqueue --help` lists
# --id). Postfix B: smtpd, then virtual(8) into a Maildir (the document's
# second instance relays to the Internet instead). The engine and the
# relay run as nobody, as pipe(8)'s enqueue does.
#
# 1. The clean run: E2E_N (default 1000) messages over SMTP (4 sessions;
#    some with two recipients, some from the null sender, 8-bit, dot
#    lines). Every (Message-ID, recipient) arrives exactly once, through
#    the relay; dkimpy and libopendkim pass both signatures of every
#    delivered copy (Postfix B's Return-Path, Delivered-To, X-Original-To
#    and Received fields on top); nothing failed, the queues are empty.
# 2. Kills everywhere: E2E_KILL_N (default 1000) more messages while
#    - Postfix A runs enqueue through tests/e2e/wrap.sh, which kills 1 in
#      40 enqueue runs with -9 after 0-49 ms and kills itself (pipe(8)'s
#      child) with -9 after 1 in 40 complete runs (a lost answer: Postfix
#      A tries again), and tags the envelope sender with the run;
#    - the engine and the relay get kill -9 at random moments and are
#      restarted, until the sending is done and at least E2E_DAEMON_KILLS
#      (default 40) such kills were made;
#    - Postfix B is stopped and started once while the relay delivers.
#    Then everything drains and check.py counts: 0 lost; duplicates from
#    Postfix A's retries (two tags, each extra one a killed run; 0 with
#    enqueue --id), duplicates from the relay's window between the final
#    250 and the delete (one tag twice, the first sender killed right after
#    it, at most relay_connections per kill) counted and printed, any
#    other duplicate a failure; at least E2E_KILLS (default 50) kills in
#    all; dkimpy and libopendkim on every copy again.
# At the end the relay and the engine get SIGTERM (exit 0, out/relay
# empty), both Postfix instances stop, and nothing the test started is
# left running (also on any exit: trap). Exit 77 when it cannot run here
# (not root, no Postfix, no python3-dkim). Ends with
# "e2e: N passed, N failed". 3 to 4 minutes on the shared 2-core machine
# at a load of 20 to 30 (the clean run's 1,111 deliveries drained in
# 46-56 s there, dkimpy and libopendkim took 10-20 s per run).
# Env: DKIMPRESS, ODKIM_VERIFY, E2E_N, E2E_KILL_N, E2E_KILLS,
# E2E_DAEMON_KILLS, KEEP=1 (keep the work directory).
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
N=${E2E_N:-1000}
KN=${E2E_KILL_N:-1000}
MIN_KILLS=${E2E_KILLS:-50}
DAEMON_KILLS=${E2E_DAEMON_KILLS:-40}
CONNS=4			# relay_connections
DRAIN_S=300		# longest wait for a drain (the machine may be busy)
USER_=nobody
GROUP_=$(id -gn nobody 2>/dev/null || echo nogroup)
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
finish() {
	echo "e2e: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

if [ "$(id -u)" != 0 ]; then
	echo "skip: two private Postfix instances need root (master binds and changes user)"
	exit 77
fi
if ! command -v postfix >/dev/null || [ ! -x /usr/lib/postfix/sbin/master ] ||
	[ ! -x /usr/lib/postfix/sbin/virtual ]; then
	echo "skip: Postfix is not installed (tools/deps installs it)"
	exit 77
fi
if ! $PY -c 'import dkim' 2>/dev/null; then
	echo "skip: python3-dkim is needed (tools/deps)"
	exit 77
fi
[ -x "$D" ] || { bad "no $D; run make first"; finish; }
[ -x "$ODKIM" ] || { bad "no $ODKIM; run make unit-tests first"; finish; }

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-e2e.XXXXXX")
PA=$W/postfix-a PB=$W/postfix-b Q=$W/queue CONF=$W/dkimpress.conf
ENGINE_PID= RELAY_PID= SEND_PID= RELAY_K=0

# master_pid DIR: the pid of instance DIR's master, if it runs
master_pid() {
	local pid
	pid=$(tr -d ' ' <"$1/spool/pid/master.pid" 2>/dev/null)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
stop_postfix() {
	local pid
	[ -f "$1/etc/main.cf" ] || return 0
	pid=$(master_pid "$1")
	[ -n "$pid" ] || return 0
	postfix -c "$1/etc" stop >/dev/null 2>&1
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null
}
# stop_pid PID: SIGTERM, up to 30 s, then SIGKILL; its status in $STOP_RC
stop_pid() {
	local i
	STOP_RC=
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null
	for i in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	STOP_RC=$?
}
cleanup() {
	[ -n "$SEND_PID" ] && kill "$SEND_PID" 2>/dev/null
	stop_pid "$RELAY_PID"
	stop_pid "$ENGINE_PID"
	stop_postfix "$PA"
	stop_postfix "$PB"
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
chmod 0755 "$W"
# private copies: pipe(8) runs them as nobody, and a rebuild of $D during
# the run must not change the binary under test
install -m 0755 "$D" "$W/dkimpress"
install -m 0755 "$HERE/wrap.sh" "$W/wrap.sh"
D=$W/dkimpress
# setpriv execs: $! of "${AS_USER[@]}" CMD & is CMD's own pid
AS_USER=(setpriv --reuid="$USER_" --regid="$GROUP_" --clear-groups --)
now() { date +%s.%N; }

echo "== keys, configuration, queue (owned by $USER_)"
mkdir -p "$W/keys"
"$D" keygen --domain c.example --selector s1 --out "$W/keys" >"$W/dns.txt" 2>/dev/null &&
	"$D" keygen --domain esp.example --selector e1 --out "$W/keys" >>"$W/dns.txt" 2>/dev/null
check '[ "$(wc -l <"$W/dns.txt")" = 2 ]' "keygen: customer and ESP RSA-2048 keys"
echo "k1 c.example:s1:$W/keys/s1.private" >"$W/KeyTable"
echo "*@c.example k1" >"$W/SigningTable"
free_port() {
	$PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT_A=$(free_port)
PORT_B=$(free_port)
while [ "$PORT_B" = "$PORT_A" ]; do PORT_B=$(free_port); done
cat >"$CONF" <<EOF
queue_dir = $Q
esp_key = esp.example:e1:$W/keys/e1.private
key_table = $W/KeyTable
signing_table = refile:$W/SigningTable
missing_key = fail
# dkimpress relay -> Postfix B
relay_host = 127.0.0.1:$PORT_B
relay_connections = $CONNS
relay_timeout = 20s
relay_retry = 1s
EOF
chown -R "$USER_:$GROUP_" "$W/keys"
chmod 0700 "$W/keys"
chmod 0600 "$W"/keys/*.private
chmod 0644 "$CONF" "$W/KeyTable" "$W/SigningTable"
install -d -o "$USER_" -g "$GROUP_" -m 0700 "$Q" "$Q/in" "$Q/in/tmp" "$Q/in/new" "$Q/in/cur"
install -d -o "$USER_" -g "$GROUP_" -m 0700 "$W/mail"
install -o "$USER_" -g "$GROUP_" -m 0644 /dev/null "$W/wrap.log"
HAVE_ID=0
"$D" enqueue --help 2>&1 | grep -q -- '--id' && HAVE_ID=1
ENQ_ARGS="-c $CONF -f \${sender} -r \${recipient}"
[ "$HAVE_ID" = 1 ] && ENQ_ARGS="$ENQ_ARGS --id \${queue_id}-\${recipient}"
echo "     enqueue --id: $([ "$HAVE_ID" = 1 ] && echo "listed by --help, used" || echo "not listed by --help, not used")"

# main_cf DIR NAME: the settings both instances share
main_cf() {
	cat <<EOF
# tests/e2e: a private instance, nothing shared with /etc/postfix
compatibility_level = 3.6
queue_directory = $1/spool
data_directory = $1/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $2.e2e.test
mydomain = e2e.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_banner = \$myhostname ESMTP
biff = no
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = $1/maillog
maillog_file_prefixes = $1
# a deferred delivery is retried within seconds, not minutes
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
}
master_cf() {
	cat <<EOF
127.0.0.1:$1 inet n - n - - smtpd
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
virtual   unix  -  n  n  -    -  virtual
anvil     unix  -  -  n  -    1  anvil
scache    unix  -  -  n  -    1  scache
postlog   unix-dgram n - n -  1  postlogd
EOF
}
# a_master_cf ARGV: Postfix A's master.cf with the dkimpress service
a_master_cf() {
	master_cf "$PORT_A"
	cat <<EOF
# docs/integration.md, "Postfix in front and behind, no glue"
dkimpress unix  -  n  n  -  50  pipe
  flags=q null_sender= user=$USER_
  argv=$1
EOF
}
mkdir -p "$PA/etc" "$PA/spool" "$PA/data" "$PB/etc" "$PB/spool" "$PB/data"
chown postfix "$PA/data" "$PB/data"
{
	main_cf "$PA" a
	cat <<EOF
# everything accepted goes to dkimpress enqueue, one recipient per run
default_transport = dkimpress
dkimpress_destination_recipient_limit = 1
message_size_limit = 52428800
EOF
} >"$PA/etc/main.cf"
a_master_cf "$D enqueue $ENQ_ARGS" >"$PA/etc/master.cf"
{
	main_cf "$PB" b
	cat <<EOF
# the settings of postfix-out in docs/integration.md: the message stays
# as signed
local_header_rewrite_clients =
receive_override_options = no_address_mappings
smtpd_milters =
non_smtpd_milters =
message_size_limit = 53477376
# what dkimpress relay hands over goes into a Maildir per test phase
virtual_mailbox_domains = x.test, y.test
virtual_mailbox_base = $W/mail
virtual_mailbox_maps = inline:{ @x.test=clean/, @y.test=kills/ }
# (0: no limit; the default is below the message_size_limit above)
virtual_mailbox_limit = 0
virtual_uid_maps = static:$(id -u "$USER_")
virtual_gid_maps = static:$(getent group "$GROUP_" | cut -d: -f3)
default_transport = error:5.3.0 not a test domain
EOF
} >"$PB/etc/main.cf"
master_cf "$PORT_B" >"$PB/etc/master.cf"

# start_postfix DIR PORT: start and wait until smtpd answers
start_postfix() {
	local i
	postfix -c "$1/etc" start >"$1/start.out" 2>&1 || return 1
	for i in $(seq 1 100); do
		$PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
			"$2" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
echo "== ($SECONDS s) Postfix A on 127.0.0.1:$PORT_A, Postfix B on 127.0.0.1:$PORT_B"
for pf in "$PA" "$PB"; do
	postfix -c "$pf/etc" check >"$pf/check.out" 2>&1
	rc=$?
	check '[ "$rc" = 0 ] && [ ! -s "$pf/check.out" ]' "postfix -c ${pf##*/}/etc check: clean" \
		"exit $rc: $(head -5 "$pf/check.out")"
done
start_postfix "$PA" "$PORT_A" && start_postfix "$PB" "$PORT_B"
rc=$?
check '[ "$rc" = 0 ]' "both instances started, each smtpd answers" \
	"$(cat "$PA/start.out" "$PB/start.out"; tail -5 "$PA/maillog" "$PB/maillog" 2>/dev/null)"
[ "$rc" = 0 ] || finish

start_engine() {
	"${AS_USER[@]}" "$D" run -c "$CONF" >>"$W/engine.log" 2>&1 &
	ENGINE_PID=$!
}
# each relay incarnation K says EHLO relayK.e2e.test: Postfix B's
# Received field then names the relay process that sent each copy
start_relay() {
	RELAY_K=$((RELAY_K + 1))
	echo "start $RELAY_K $(now)" >>"$W/events.log"
	"${AS_USER[@]}" "$D" relay -c "$CONF" --set "relay_helo=relay$RELAY_K.e2e.test" \
		>>"$W/relay.log" 2>&1 &
	RELAY_PID=$!
}
kill_engine() {
	kill -9 "$ENGINE_PID" 2>/dev/null
	wait "$ENGINE_PID" 2>/dev/null
	start_engine
}
# the time logged is taken just before the kill
kill_relay() {
	local t
	t=$(now)
	kill -9 "$RELAY_PID" 2>/dev/null
	wait "$RELAY_PID" 2>/dev/null
	echo "kill $RELAY_K $t" >>"$W/events.log"
	start_relay
}
# nfiles DIR...: regular files below the directories
nfiles() { find "$@" -type f 2>/dev/null | wc -l; }
pf_empty() { postqueue -c "$1/etc" -p 2>/dev/null | grep -q "Mail queue is empty"; }
# drained BOX WANT: both Postfix queues and the dkimpress queue empty,
# WANT copies (at least) in the Maildir BOX
drained() {
	pf_empty "$PA" && [ "$(nfiles "$Q/in/new" "$Q/in/cur" "$Q/out/new" "$Q/out/defer" \
		"$Q/out/relay" "$Q/out/tmp")" = 0 ] && pf_empty "$PB" &&
		[ "$(nfiles "$W/mail/$1/new" "$W/mail/$1/cur")" -ge "$2" ]
}
# wait_drained BOX WANT: up to DRAIN_S seconds; the seconds taken in $WAITED
wait_drained() {
	local t0=$SECONDS
	while ! drained "$1" "$2"; do
		[ $((SECONDS - t0)) -ge "$DRAIN_S" ] && { WAITED=$((SECONDS - t0)); return 1; }
		sleep 0.5
	done
	WAITED=$((SECONDS - t0))
}
queue_state() {
	echo "A: $(postqueue -c "$PA/etc" -p 2>&1 | tail -1); B: $(postqueue -c "$PB/etc" -p 2>&1 | tail -1);" \
		"in/new+cur $(nfiles "$Q/in/new" "$Q/in/cur"), out/new $(nfiles "$Q/out/new")," \
		"out/defer $(nfiles "$Q/out/defer"), out/relay $(nfiles "$Q/out/relay")"
}
# verify_copies NAME LIST: dkimpy and libopendkim, two signatures each
all_pass() {
	[[ "$1" =~ ^summary:\ ([0-9]+)\ messages,\ ([0-9]+)\ pass,\ 0\ fail ]] &&
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" != 0 ]
}
verify_copies() {
	local out n
	n=$(wc -l <"$2")
	out=$($PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 \
		--list "$2" >"$W/$1.dkimpy" 2>&1; tail -n 1 "$W/$1.dkimpy")
	check 'all_pass "$out" && [ "${BASH_REMATCH[1]}" = "$n" ]' \
		"$1: dkimpy passes both signatures of every delivered copy ($out)" \
		"$(grep -v $'\tpass\t' "$W/$1.dkimpy" | head -3)"
	out=$("$ODKIM" --dns-file "$W/dns.txt" --expect 2 --list "$2" >"$W/$1.odkim" 2>&1
		tail -n 1 "$W/$1.odkim")
	check 'all_pass "$out" && [ "${BASH_REMATCH[1]}" = "$n" ]' \
		"$1: libopendkim passes both signatures of every delivered copy ($out)" \
		"$(grep -v $'\tpass\t' "$W/$1.odkim" | head -3)"
}
# run_check NAME ARGS...: check.py's ok/FAIL lines become ours
run_check() {
	local name=$1 res desc
	shift
	$PY "$HERE/check.py" "$@" >"$W/$name.check" 2>&1
	CHECK_RC=$?
	while IFS=$'\t' read -r res desc; do
		case $res in
		ok) ok "$name: $desc" ;;
		FAIL) bad "$name: $desc" ;;
		esac
	done < <(grep -E $'^(ok|FAIL)\t' "$W/$name.check")
	grep -E '^  ' "$W/$name.check" | head -n 10
	CHECK_COUNTS=$(tail -n 1 "$W/$name.check")
	echo "     $CHECK_COUNTS"
}

# --- 1. the clean run --------------------------------------------------
echo "== clean run ($SECONDS s): $N messages, engine and relay as $USER_"
start_engine
start_relay
t0=$SECONDS
$PY "$HERE/send.py" "$PORT_A" "$N" "clean-$$" "$W/clean.json" --null --domain x.test \
	>"$W/send1.out" 2>&1
rc=$?
check '[ "$rc" = 0 ]' "send.py: $(tail -n 1 "$W/send1.out")" "exit $rc"
want=$($PY -c 'import json,sys; print(sum(map(len, json.load(open(sys.argv[1])).values())))' "$W/clean.json")
wait_drained clean "$want"
rc=$?
check '[ "$rc" = 0 ]' "clean: drained in $((SECONDS - t0)) s (Postfix A, the queue, Postfix B empty; $want copies)" \
	"$(queue_state)"
run_check clean "$W/clean.json" "$W/mail/clean" --list "$W/clean.list"
check '[ "$CHECK_RC" = 0 ]' "clean: check.py exit 0"
nsent=$(grep -c 'status=sent (delivered via dkimpress service' "$PA/maillog")
check '[ "$nsent" = "$want" ] && ! grep -q "status=\(deferred\|bounced\)" "$PA/maillog"' \
	"clean: Postfix A delivered $nsent recipients through the pipe (want $want), none deferred" \
	"$(grep -E 'status=(deferred|bounced)' "$PA/maillog" | head -3)"
echo "     ($SECONDS s) dkimpy and libopendkim"
verify_copies clean "$W/clean.list"
check '[ -z "$(ls -A "$Q/failed" 2>/dev/null)" ] && [ "$(nfiles "$Q/in/tmp")" = 0 ]' \
	"clean: failed/ and in/tmp empty" "$(ls "$Q/failed" "$Q/in/tmp" | head -5)"
check '[ -z "$(ls -A "$Q/out/defer")" ] && ! grep -q "deferred\|failed" "$W/relay.log"' \
	"clean: the relay deferred and failed nothing" "$(grep -E 'deferred|failed' "$W/relay.log" | head -3)"

# --- 2. kills everywhere -------------------------------------------------
echo "== kill run ($SECONDS s): $KN messages; kill -9 of enqueue, pipe(8)'s child, engine, relay; Postfix B restarted"
a_master_cf "$W/wrap.sh $W/wrap.log \${queue_id} 25 25 -- $D enqueue $ENQ_ARGS" >"$PA/etc/master.cf"
postfix -c "$PA/etc" reload >/dev/null 2>&1
rc=$?
check '[ "$rc" = 0 ]' "Postfix A reloaded with wrap.sh in front of enqueue"
t0=$SECONDS
$PY "$HERE/send.py" "$PORT_A" "$KN" "kill-$$" "$W/kills.json" --domain y.test \
	>"$W/send2.out" 2>&1 &
SEND_PID=$!
want2=$((KN + (KN + 4) / 9))
ekills=0 rkills=0 b_restart=0 b_busy=
# bash reports each killed job ("line N: PID Killed ...") on stderr when
# it reaps it: not during the kill loop
exec 3>&2 2>/dev/null
while :; do
	sending=0
	kill -0 "$SEND_PID" 2>/dev/null && sending=1
	if [ "$sending" = 0 ] && [ $((ekills + rkills)) -ge "$DAEMON_KILLS" ] && [ "$b_restart" = 1 ]; then
		break
	fi
	[ $((SECONDS - t0)) -ge "$DRAIN_S" ] && break
	ms=$((300 + RANDOM % 900))
	sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
	if [ $((RANDOM % 2)) = 0 ]; then
		kill_engine
		ekills=$((ekills + 1))
	else
		kill_relay
		rkills=$((rkills + 1))
	fi
	# Postfix B, once, while the relay has messages in hand
	got=$(nfiles "$W/mail/kills/new")
	if [ "$b_restart" = 0 ] && { [ "$got" -ge $((want2 / 4)) ] || [ "$sending" = 0 ]; }; then
		b_busy="out/new $(nfiles "$Q/out/new"), out/relay $(nfiles "$Q/out/relay"), $got delivered"
		echo "bstop - $(now)" >>"$W/events.log"
		bt0=$SECONDS
		stop_postfix "$PB"
		sleep 2
		start_postfix "$PB" "$PORT_B"
		b_restart=$?
		echo "bup - $(now)" >>"$W/events.log"
		b_restart=$((b_restart == 0 ? 1 : 2))
		b_busy="$b_busy; down $((SECONDS - bt0)) s"
	fi
done
exec 2>&3 3>&-
wait "$SEND_PID"
rc=$?
SEND_PID=
check '[ "$rc" = 0 ]' "send.py: $(tail -n 1 "$W/send2.out")" "exit $rc"
check '[ "$b_restart" = 1 ]' "Postfix B stopped and started again while the relay delivered ($b_busy)"
wait_drained kills "$want2"
rc=$?
check '[ "$rc" = 0 ]' "kills: drained $WAITED s after the last kill ($((SECONDS - t0)) s in all)" \
	"$(queue_state)"
kr=$(grep -c ' kill-random 137$' "$W/wrap.log")
kl=$(grep -c ' kill-random [0-9]*$' "$W/wrap.log")
ka=$(grep -c ' kill-answer ' "$W/wrap.log")
runs=$(wc -l <"$W/wrap.log")
echo "     $runs enqueue runs: $kr killed by kill -9 mid-way, $((kl - kr)) finished before that kill" \
	"(pipe(8)'s child killed after), $ka lost answers (pipe(8)'s child killed); engine killed $ekills times," \
	"relay $rkills times"
total=$((kr + (kl - kr) + ka + ekills + rkills))
check '[ "$total" -ge "$MIN_KILLS" ] && [ "$ekills" -ge 5 ] && [ "$rkills" -ge 5 ] && [ "$kr" -ge 1 ] && [ "$ka" -ge 1 ]' \
	"$total kill -9 in all (at least $MIN_KILLS; enqueue or its pipe(8) child $kl + $ka, engine $ekills, relay $rkills)"
ndef=$(grep -c 'Command died with signal 9' "$PA/maillog")
check '[ "$ndef" -ge $((kl + ka)) ]' "Postfix A deferred each killed pipe(8) run ($ndef 'Command died with signal 9')"
run_check kills "$W/kills.json" "$W/mail/kills" --wrap-log "$W/wrap.log" --events "$W/events.log" \
	--relay-log "$W/relay.log" --conns "$CONNS" --list "$W/kills.list" $([ "$HAVE_ID" = 1 ] && echo --id)
check '[ "$CHECK_RC" = 0 ]' "kills: check.py exit 0"
echo "     duplicates: $(sed 's/.*lost=[0-9]* //' <<<"$CHECK_COUNTS")"
echo "     ($SECONDS s) dkimpy and libopendkim"
verify_copies kills "$W/kills.list"
check '[ -z "$(ls -A "$Q/failed" 2>/dev/null)" ]' "kills: nothing in failed/" \
	"$(ls "$Q/failed" | head -5; head -c 300 "$Q"/failed/*.reason 2>/dev/null)"
echo "     in/tmp: $(nfiles "$Q/in/tmp") files left by enqueue runs killed between writing and" \
	"renaming them (nothing removes them)"
echo "     relay: $(grep -c 'deferred' "$W/relay.log") deferrals logged, $(grep -c 'took back' "$W/relay.log") areas of killed relays taken back"

# --- the end: SIGTERM, nothing left running ------------------------------
echo "== stop ($SECONDS s)"
echo "stop $RELAY_K $(now)" >>"$W/events.log"
stop_pid "$RELAY_PID"
rrc=$STOP_RC
RELAY_PID=
check '[ "$rrc" = 0 ] && [ -z "$(ls -A "$Q/out/relay")" ]' \
	"relay: SIGTERM, exit 0, out/relay empty ($(grep '^relay: ' "$W/relay.log" | tail -n 1))" \
	"exit $rrc; out/relay: $(ls "$Q/out/relay")"
stop_pid "$ENGINE_PID"
erc=$STOP_RC
ENGINE_PID=
check '[ "$erc" = 0 ]' "engine: SIGTERM, exit 0" "exit $erc: $(tail -n 3 "$W/engine.log")"
ma=$(master_pid "$PA") mb=$(master_pid "$PB")
stop_postfix "$PA"
stop_postfix "$PB"
left=
for p in $ma $mb; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
left="$left$(pgrep -f "$W/" | tr '\n' ' ')"
check '[ -z "${left// /}" ]' "nothing the test started is still running" "pids:$left"
check '! grep -qE "postfix/[a-z/-]+\[[0-9]+\]: (fatal|panic):" "$PA/maillog" "$PB/maillog"' \
	"no Postfix fatal or panic in either log" \
	"$(grep -hE ': (fatal|panic):' "$PA/maillog" "$PB/maillog" | head -3)"
finish
