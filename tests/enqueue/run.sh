#!/usr/bin/env bash
# tests/enqueue/run.sh — `dkimpress enqueue`, the producer side of the queue.
#
#  basics    --help; stdin, FILE and "-": the ID printed is Maildir-style
#            and passes the queue-ID allow-list, in/new/ID holds the bytes
#            unchanged (NUL bytes, no final newline), mode 0600, in/tmp
#            empty; a closed stdout still queues (exit 0)
#  envelope  -f/-r write "x-sender: S" and one "x-receiver: R" per -r, CRLF,
#            above the unchanged message; '' and '<>' give "x-sender: <>";
#            <addr> loses its brackets; -r without -f and -f without -r
#            are 75; bad addresses (space, CR, LF, TAB, no @, 321 bytes,
#            '<' inside, null recipient) are 64 with a reason, 320 bytes
#            is fine; a message that starts with x-sender lines is 65
#            with -f/-r and copied as is without
#  limits    max_message_size counts the whole file: at the limit 0, one
#            byte over 65; an endless input stops at the limit; an empty
#            message is 65
#  errors    FILE missing or a directory 66; unreadable as nobody 66;
#            configuration missing or broken 75 (issue 19: the signer's
#            problems defer, never bounce); in/tmp missing 75, not writable
#            (as nobody) 75; command line errors 75 (-r without -f, no -c,
#            two FILEs, an unknown option, an invalid --id)
#  disk      on a small tmpfs: a message bigger than the disk 75 and a
#            full inode table 75, nothing left; afterwards a small one
#            goes through
#  faults    (strace fault injection) EIO on fsync 75, EDQUOT on write 75,
#            EIO on the in/new flush 75 with the message taken back, EIO on
#            the rename 75, EIO reading the message 75, EEXIST
#            on the rename and on the create: a new ID, exit 0; the order
#            of the syscalls: create O_EXCL in in/tmp, fsync, rename with
#            RENAME_NOREPLACE, fsync in/new, then the ID; SIGTERM while
#            reading removes in/tmp/ID and exits 75
#  dedup     --id: the same ID twice is one message, both calls 0 (an info
#            line); another ID, no --id, dedup_window = 0 queue again; after
#            the window it is queued again, expired buckets are swept; an ID
#            with '/' is mapped; 8 concurrent calls with one ID, 20 rounds:
#            one message; kill -9 at each file-system step (tests/fault's
#            FAULT_KILL) of a first call, of a call on a warm queue and of
#            the retry that takes a dead call over, then the retry: exit 0,
#            one message; kill -9 at 60 random moments, then the retry
#  lost      a lost answer through two live engines: 40 messages, each
#            handed over again (sometimes 4 times at once, sometimes after
#            an engine took the first copy): each signed and published once
#  unique    1,000 calls, 8 at a time: 1,000 different IDs, 1,000 files
#
# After every failing call: in/tmp is empty and in/new unchanged.
# Ends with "enqueue: N passed, N failed". Exit 1 on a failure; 77 when
# everything ran passed but a part could not run (no root: no tmpfs mount,
# no setpriv), and says which. Env: DKIMPRESS (default $BUILD/dkimpress).
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
D=$DKIMPRESS
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-enqueue.XXXXXX")
MOUNTS=()
cleanup() {
	local m
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT
pass=0 fail=0 skipped=()
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
skip() { echo "skip $*"; skipped+=("$*"); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }

if [ ! -x "$D" ]; then
	echo "no $D; run make first"
	echo "enqueue: 0 passed, 1 failed"
	exit 1
fi
ROOT=0
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && ROOT=1
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
chmod 0755 "$W"
# a private copy of the binary (a rebuild during the run changes nothing)
install -m 0755 "$D" "$W/dkimpress"
D=$W/dkimpress

# conf FILE QUEUE [extra lines]: esp_key is required by the loader, but
# enqueue never opens a key
conf() {
	local f=$1 q=$2
	shift 2
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:esp1:/nonexistent/esp1.private"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}
mkq() { mkdir -p "$1/in/tmp" "$1/in/new" "$1/in/cur"; }
Q=$W/q
mkq "$Q"
conf "$W/c.conf" "$Q"

# enq ARGS...: run enqueue; sets rc, out (stdout), errt (stderr)
enq() {
	"$D" enqueue "$@" >"$W/out" 2>"$W/err"
	rc=$?
	out=$(cat "$W/out")
	errt=$(cat "$W/err")
}
nnew() { find "$1/in/new" -mindepth 1 | wc -l; }
ntmp() { find "$1/in/tmp" -mindepth 1 | wc -l; }
# the dkp_qdir_id_ok allow-list
id_ok() {
	[[ $1 =~ ^[A-Za-z0-9_=,:@+-][A-Za-z0-9._=,:@+-]{0,199}$ ]] && [[ $1 != *.reason ]]
}
ID_RE='^[0-9]+\.M[0-9]{6}P[0-9]+Q[0-9]+R[0-9a-f]{16}\.[A-Za-z0-9._-]+$'
# refused CODE DESC ARGS... (stdin: the message): exit CODE, nothing
# published, nothing left in in/tmp
refused() {
	local want=$1 desc=$2 before
	shift 2
	before=$(nnew "$Q")
	enq "$@"
	if [ "$rc" = "$want" ] && [ "$(nnew "$Q")" = "$before" ] &&
		[ "$(ntmp "$Q")" = 0 ] && [ -z "$out" ] && [ -n "$errt" ]; then
		ok "$desc: exit $want ($errt)"
	else
		bad "$desc: exit $rc (want $want), in/new $before -> $(nnew "$Q"), in/tmp $(ntmp "$Q"), stdout '$out', stderr '$errt'"
	fi
}

printf 'From: a@customer.example\r\nTo: b@example.net\r\nSubject: t\r\n\r\nbody\r\n' >"$W/m1"
printf 'From: a@customer.example\nSubject: binary\n\nNUL \0 here\nno final newline' >"$W/m2"

echo "== basics"
enq --help
check '[ "$rc" = 0 ] && grep -q "usage: dkimpress enqueue -c CONF" "$W/out" && grep -q pipe "$W/out"' \
	"enqueue --help: usage with the pipe(8) line"
check '"$D" --help | grep -q "^  enqueue "' "dkimpress --help lists enqueue"
enq -c "$W/c.conf" <"$W/m1"
id=$out
check '[ "$rc" = 0 ] && [ "$(wc -l <"$W/out")" = 1 ] && [[ $id =~ $ID_RE ]] && id_ok "$id"' \
	"stdin: exit 0, one line, a Maildir-style ID that passes the allow-list ($id)" "rc $rc, '$out' '$errt'"
check 'cmp -s "$W/m1" "$Q/in/new/$id"' "stdin: in/new/ID holds the message unchanged"
check '[ "$(stat -c %a "$Q/in/new/$id")" = 600 ] && [ "$(ntmp "$Q")" = 0 ]' "mode 0600, in/tmp empty"
enq -c "$W/c.conf" "$W/m2"
check '[ "$rc" = 0 ] && cmp -s "$W/m2" "$Q/in/new/$out"' "FILE: NUL bytes and no final newline copied byte for byte"
enq -c "$W/c.conf" - <"$W/m2"
check '[ "$rc" = 0 ] && cmp -s "$W/m2" "$Q/in/new/$out"' "'-' is standard input"
n0=$(nnew "$Q")
"$D" enqueue -c "$W/c.conf" <"$W/m1" >&- 2>"$W/err"
rc=$?
check '[ "$rc" = 0 ] && [ "$(nnew "$Q")" = $((n0 + 1)) ] && grep -q "cannot print" "$W/err"' \
	"closed stdout: queued anyway, exit 0, a warning (a failure would make the MTA send it twice)" "rc $rc"

echo "== envelope"
enq -c "$W/c.conf" -f s@sender.example -r a@rcpt.example -r b@rcpt.example <"$W/m1"
{ printf 'x-sender: s@sender.example\r\nx-receiver: a@rcpt.example\r\nx-receiver: b@rcpt.example\r\n'; cat "$W/m1"; } >"$W/want"
check '[ "$rc" = 0 ] && cmp -s "$W/want" "$Q/in/new/$out"' "-f -r -r: x-sender, two x-receiver lines (CRLF), then the message unchanged"
for nul in "" "<>"; do
	enq -c "$W/c.conf" -f "$nul" -r a@rcpt.example "$W/m2"
	{ printf 'x-sender: <>\r\nx-receiver: a@rcpt.example\r\n'; cat "$W/m2"; } >"$W/want"
	check '[ "$rc" = 0 ] && cmp -s "$W/want" "$Q/in/new/$out"' "-f '$nul': x-sender: <>"
done
enq -c "$W/c.conf" --sender '<s@sender.example>' --recipient '<a@rcpt.example>' "$W/m1"
check '[ "$rc" = 0 ] && head -c 60 "$Q/in/new/$out" | grep -q "^x-sender: s@sender.example.$" && head -2 "$Q/in/new/$out" | grep -q "^x-receiver: a@rcpt.example.$"' \
	"<addr>: written without the brackets"
# a command line that master.cf got wrong is the signer's problem: 75,
# the MTA keeps the message (issue 19; it was 64, a bounce)
refused 75 "-r without -f" -c "$W/c.conf" -r a@rcpt.example <"$W/m1"
refused 75 "-f without -r" -c "$W/c.conf" -f s@sender.example <"$W/m1"
refused 75 "no -c" -f s@sender.example -r a@rcpt.example <"$W/m1"
refused 75 "two FILEs (-r \${recipient} with several recipients)" -c "$W/c.conf" "$W/m1" "$W/m2"
refused 75 "an unknown option" -c "$W/c.conf" --no-such-option <"$W/m1"
refused 75 "--id with a space" -c "$W/c.conf" --id "a b" <"$W/m1"
refused 75 "--id with a line break" -c "$W/c.conf" --id $'a\nb' <"$W/m1"
refused 75 "--id of 513 bytes" -c "$W/c.conf" --id "$(printf 'i%.0s' $(seq 1 513))" <"$W/m1"
refused 75 "--id empty" -c "$W/c.conf" --id "" <"$W/m1"
long320="$(printf 'l%.0s' $(seq 1 308))@example.com"
long321="l$long320"
for a in "a b@example.com" $'a\r@example.com' $'a\n@example.com' $'a\t@example.com' \
	"noat" "@example.com" "a@" "a<b@example.com" "$long321"; do
	refused 64 "-r '$(printf '%q' "${a:0:30}")' (${#a} bytes)" -c "$W/c.conf" -f s@sender.example -r "$a" <"$W/m1"
done
refused 64 "-f with a line break" -c "$W/c.conf" -f $'s@x\r\nx-receiver: evil@x' -r a@rcpt.example <"$W/m1"
check '[ "$(wc -l <"$W/err")" = 1 ] && grep -qF "s@x\\x0d\\x0ax-receiver" "$W/err"' "... the reason is one line, control bytes shown as \\xNN"
refused 64 "null recipient -r ''" -c "$W/c.conf" -f s@sender.example -r '' <"$W/m1"
enq -c "$W/c.conf" -f s@sender.example -r "$long320" <"$W/m1"
check '[ "$rc" = 0 ] && [ "${#long320}" = 320 ]' "a 320-byte address is accepted" "rc $rc $errt"
{ printf 'X-Sender: old@sender.example\r\nx-receiver: other@rcpt.example\r\n'; cat "$W/m1"; } >"$W/pre"
refused 65 "-f/-r on a message that already starts with envelope lines" -c "$W/c.conf" -f s@sender.example -r a@rcpt.example "$W/pre"
enq -c "$W/c.conf" "$W/pre"
check '[ "$rc" = 0 ] && cmp -s "$W/pre" "$Q/in/new/$out"' "without -f/-r such a message is copied as is"

echo "== limits"
conf "$W/small.conf" "$Q" "max_message_size = 1K"
head -c 1024 /dev/zero | tr '\0' 'a' >"$W/1024"
head -c 1025 /dev/zero | tr '\0' 'a' >"$W/1025"
enq -c "$W/small.conf" "$W/1024"
check '[ "$rc" = 0 ] && cmp -s "$W/1024" "$Q/in/new/$out"' "max_message_size 1K: 1024 bytes queued"
refused 65 "max_message_size 1K: 1025 bytes" -c "$W/small.conf" "$W/1025"
check 'grep -q "message too big" "$W/err"' "... says 'message too big'"
env="x-sender: s@e.example"$'\r\n'"x-receiver: r@e.example"$'\r\n'
head -c $((1024 - ${#env})) "$W/1024" >"$W/fit"
head -c $((1025 - ${#env})) "$W/1024" >"$W/over"
enq -c "$W/small.conf" -f s@e.example -r r@e.example "$W/fit"
check '[ "$rc" = 0 ] && [ "$(stat -c %s "$Q/in/new/$out")" = 1024 ]' "envelope + message = 1024 bytes: queued"
refused 65 "envelope + message = 1025 bytes" -c "$W/small.conf" -f s@e.example -r r@e.example "$W/over"
before=$(nnew "$Q")
timeout 20 bash -c 'yes | "$0" enqueue -c "$1" >/dev/null 2>&1; echo $? >"$2"' "$D" "$W/small.conf" "$W/yesrc"
check '[ "$(cat "$W/yesrc")" = 65 ] && [ "$(nnew "$Q")" = "$before" ] && [ "$(ntmp "$Q")" = 0 ]' \
	"an endless input: reading stops at the limit, exit 65" "$(cat "$W/yesrc")"
refused 65 "empty message on stdin" -c "$W/c.conf" </dev/null
: >"$W/empty"
refused 65 "empty FILE" -c "$W/c.conf" -f s@e.example -r r@e.example "$W/empty"

echo "== errors"
refused 66 "FILE missing" -c "$W/c.conf" "$W/nonexistent"
refused 66 "FILE is a directory" -c "$W/c.conf" "$W"
# the signer's configuration: 75, never a bounce (issue 19; it was 78)
refused 75 "configuration missing" -c "$W/nonexistent.conf" <"$W/m1"
printf 'queue_dir = %s\nno_such_setting = 1\n' "$Q" >"$W/broken.conf"
refused 75 "configuration broken" -c "$W/broken.conf" <"$W/m1"
conf "$W/noq.conf" "$W/not-made"
enq -c "$W/noq.conf" <"$W/m1"
check '[ "$rc" = 75 ] && [ ! -e "$W/not-made" ] && grep -q "dkimpress run" "$W/err"' \
	"queue not made yet: exit 75 (was 73, a bounce), nothing created, says who makes it" "rc $rc $errt"
if [ "$ROOT" = 1 ]; then
	chmod 0644 "$W/c.conf"
	cp "$W/m1" "$W/secret" && chmod 0600 "$W/secret"
	as_nobody "$D" enqueue -c "$W/c.conf" "$W/secret" >"$W/out" 2>"$W/err"
	rc=$?
	check '[ "$rc" = 66 ] && [ "$(ntmp "$Q")" = 0 ]' "FILE unreadable (as nobody): exit 66" "rc $rc"
	chmod 0755 "$Q" "$Q/in" "$Q/in/new"
	as_nobody "$D" enqueue -c "$W/c.conf" <"$W/m1" >"$W/out" 2>"$W/err"
	rc=$?
	check '[ "$rc" = 75 ] && grep -q "Permission denied" "$W/err"' "in/tmp not writable (as nobody): exit 75 (was 73, a bounce)" "rc $rc $(cat "$W/err")"
else
	skip "errors as nobody (needs root and setpriv)"
fi

echo "== disk"
if [ "$ROOT" = 1 ] && mkdir -p "$W/mnt" && mount -t tmpfs -o size=256k,mode=0755 tmpfs "$W/mnt" 2>"$W/merr"; then
	MOUNTS+=("$W/mnt")
	T=$W/mnt/q
	mkq "$T"
	conf "$W/t.conf" "$T"
	head -c 1048576 /dev/urandom | base64 >"$W/big"
	before=$(nnew "$T")
	enq -c "$W/t.conf" -f s@e.example -r r@e.example "$W/big"
	check '[ "$rc" = 75 ] && [ "$(nnew "$T")" = 0 ] && [ "$(ntmp "$T")" = 0 ] && grep -q "No space left" "$W/err"' \
		"full disk (1.4 MB into 256 KB): exit 75, in/tmp emptied, nothing in in/new" "rc $rc $errt"
	enq -c "$W/t.conf" "$W/m1"
	check '[ "$rc" = 0 ] && cmp -s "$W/m1" "$T/in/new/$out"' "... and once there is room a message goes through"
	mkdir -p "$W/mnt2"
	if mount -t tmpfs -o size=256k,nr_inodes=3,mode=0755 tmpfs "$W/mnt2" 2>>"$W/merr"; then
		MOUNTS+=("$W/mnt2")
		mkdir "$W/mnt2/tmp" "$W/mnt2/new"
		printf 'in_dir = %s\nout_dir = %s/o\nfailed_dir = %s/f\nesp_key = e.example:s:/x\n' \
			"$W/mnt2" "$W" "$W" >"$W/i.conf"
		enq -c "$W/i.conf" "$W/m1"
		check '[ "$rc" = 75 ] && [ "$(find "$W/mnt2/tmp" "$W/mnt2/new" -mindepth 1 | wc -l)" = 0 ]' \
			"no inode left: exit 75 (the MTA retries), nothing created" "rc $rc $errt"
	else
		bad "tmpfs with nr_inodes: $(cat "$W/merr")"
	fi
else
	skip "full disk: cannot mount a tmpfs ($( [ "$ROOT" = 1 ] && cat "$W/merr" || echo "not root"))"
fi

echo "== faults"
if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
	# LeakSanitizer cannot run under ptrace (make sanitize)
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
	# sfault DESC WANT INJECT...: the call under strace with faults
	sfault() {
		local desc=$1 want=$2 before
		shift 2
		before=$(nnew "$Q")
		strace -f -o "$W/trace" "$@" "$D" enqueue -c "$W/c.conf" "$W/m1" >"$W/out" 2>"$W/err"
		rc=$?
		out=$(cat "$W/out")
		if [ "$rc" = "$want" ] && [ "$(ntmp "$Q")" = 0 ] &&
			{ [ "$want" = 0 ] || [ "$(nnew "$Q")" = "$before" ]; } &&
			{ [ "$want" != 0 ] || [ "$(nnew "$Q")" = $((before + 1)) ]; }; then
			ok "$desc: exit $want$(tail -1 "$W/err" | sed 's/^/ (/; s/$/)/')"
		else
			bad "$desc: exit $rc (want $want), in/new $before -> $(nnew "$Q"), in/tmp $(ntmp "$Q"): $(cat "$W/err")"
		fi
	}
	# an I/O error is the signer's: 75 (issue 19; it was 74, a bounce)
	sfault "EIO on fsync of the file" 75 -e trace=fsync -e inject=fsync:error=EIO:when=1
	sfault "EDQUOT on write" 75 -e trace=write -e inject=write:error=EDQUOT:when=1
	sfault "EIO on the flush of in/new: taken back, not queued" 75 -e trace=fsync -e inject=fsync:error=EIO:when=2
	sfault "EIO on the rename into in/new" 75 -e trace=renameat2 -e inject=renameat2:error=EIO:when=1
	# which read is the message's? (the loader and the configuration
	# read first; their number does not change from run to run)
	strace -o "$W/trace" -e trace=read "$D" enqueue -c "$W/c.conf" "$W/m1" >/dev/null 2>&1
	nth=$(grep -n '"From: a@customer' "$W/trace" | head -1 | cut -d: -f1)
	sfault "EIO reading the message (read #$nth)" 75 -e trace=read -e inject=read:error=EIO:when="$nth"
	sfault "EEXIST on the rename: published under a new ID" 0 -e trace=renameat2 -e inject=renameat2:error=EEXIST:when=1
	check 'grep -q "new ID" "$W/err" && [ -f "$Q/in/new/$out" ] && cmp -s "$W/m1" "$Q/in/new/$out"' \
		"... the ID printed is the one in in/new"
	# which openat is the create? (the loader and the configuration open
	# files first; their number does not change from run to run)
	strace -o "$W/trace" -e trace=openat "$D" enqueue -c "$W/c.conf" "$W/m1" >/dev/null 2>&1
	nth=$(grep -n 'O_CREAT|O_EXCL' "$W/trace" | head -1 | cut -d: -f1)
	sfault "EEXIST on the create (openat #$nth): a new ID" 0 -e trace=openat -e inject=openat:error=EEXIST:when="$nth"
	check '[ "$(grep -c "O_CREAT|O_EXCL" "$W/trace")" = 2 ] && cmp -s "$W/m1" "$Q/in/new/$out"' "... two creates, the second one queued"
	# the order of the steps
	strace -o "$W/trace" -e trace=openat,fsync,renameat2,write "$D" enqueue -c "$W/c.conf" "$W/m1" >"$W/out" 2>"$W/err"
	id=$(cat "$W/out")
	if awk -v id="$id" '
		/openat\(.*"'"$id"'", O_WRONLY\|O_CREAT\|O_EXCL/ { if (!s) s = 1; next }
		/^fsync\(/ && s == 1 { s = 2; next }
		/renameat2\(.*RENAME_NOREPLACE/ && s == 2 { s = 3; next }
		/^fsync\(/ && s == 3 { s = 4; next }
		/^write\(1, "/ && s == 4 { s = 5 }
		END { exit s == 5 ? 0 : 1 }' "$W/trace"; then
		ok "order: create O_EXCL in in/tmp, fsync, renameat2 RENAME_NOREPLACE, fsync in/new, print the ID"
	else
		bad "order of syscalls:"; grep -E 'openat.*O_CREAT|fsync|renameat2|write\(1' "$W/trace"
	fi
else
	skip "fault injection: strace cannot trace here"
fi
# SIGTERM while the message is still coming (an MTA's time limit)
mkfifo "$W/fifo"
before=$(nnew "$Q")
"$D" enqueue -c "$W/c.conf" -f s@e.example -r r@e.example <"$W/fifo" >"$W/out" 2>"$W/err" &
pid=$!
exec 9>"$W/fifo"
printf 'From: a@customer.example\r\n' >&9
for _ in $(seq 1 100); do [ "$(ntmp "$Q")" = 1 ] && break; sleep 0.05; done
intmp=$(ntmp "$Q")
kill -TERM "$pid"
wait "$pid"
rc=$?
exec 9>&-
check '[ "$intmp" = 1 ] && [ "$rc" = 75 ] && [ "$(ntmp "$Q")" = 0 ] && [ "$(nnew "$Q")" = "$before" ]' \
	"SIGTERM while reading: in/tmp/ID removed, exit 75, nothing in in/new" "in/tmp had $intmp, rc $rc"

echo "== dedup (--id)"
# the de-duplication window (docs/queue.md): the same --id twice is one
# message, both calls 0; after the window it is queued again
DQ=$W/dq
mkq "$DQ"
conf "$W/d.conf" "$DQ" "dedup_window = 3"
# tokmsg TOKEN: a message with TOKEN in its body, in $W/tok.TOKEN
tokmsg() {
	printf 'From: a@customer.example\r\nSubject: %s\r\n\r\nTOK-%s-END\r\n' "$1" "$1" >"$W/tok.$1"
	echo "$W/tok.$1"
}
# copies Q TOKEN: messages in Q's in/new holding TOKEN
copies() { grep -rl -- "TOK-$2-END" "$1/in/new" 2>/dev/null | wc -l; }
enq -c "$W/d.conf" --id "4F1C2A75.alice@example.net" "$(tokmsg d1)"
rc1=$rc out1=$out
enq -c "$W/d.conf" --id "4F1C2A75.alice@example.net" "$(tokmsg d1)"
check '[ "$rc1" = 0 ] && [[ $out1 =~ $ID_RE ]] && [ "$rc" = 0 ] && [ -z "$out" ] && [ "$(copies "$DQ" d1)" = 1 ] && [ "$(ntmp "$DQ")" = 0 ]' \
	"the same --id twice: both exit 0, one message in in/new, the second prints no ID, in/tmp empty" \
	"rc $rc1 '$out1', then rc $rc '$out' '$errt', $(copies "$DQ" d1) copies, in/tmp $(ntmp "$DQ")"
check 'grep -q "^dkimpress: --id 4F1C2A75.alice@example.net: handed over already within dedup_window; not queued again$" "$W/err"' \
	"... the second says so in one info line ($errt)"
enq -c "$W/d.conf" --id "4F1C2A75.bob@example.net" "$(tokmsg d1)"
check '[ "$rc" = 0 ] && [ "$(copies "$DQ" d1)" = 2 ]' "another --id (the next recipient of the same Postfix queue ID) is queued"
enq -c "$W/d.conf" "$(tokmsg d1)"
check '[ "$rc" = 0 ] && [ "$(copies "$DQ" d1)" = 3 ]' "without --id nothing is remembered"
sleep 5
enq -c "$W/d.conf" --id "4F1C2A75.alice@example.net" "$(tokmsg d1)"
check '[ "$rc" = 0 ] && [[ $out =~ $ID_RE ]] && [ "$(copies "$DQ" d1)" = 4 ]' \
	"after the window (3 s, tried after 5 s) the same --id is queued again" "rc $rc '$out' $(copies "$DQ" d1)"
enq -c "$W/d.conf" --id "4F1C2A75.alice@example.net" "$(tokmsg d1)"
check '[ "$rc" = 0 ] && [ -z "$out" ] && [ "$(copies "$DQ" d1)" = 4 ]' "... and remembered again from then on"
old=$(find "$DQ/in/dedup" -mindepth 1 -maxdepth 1 -name 'b*' | while read -r b; do
	s=${b##*/b}; s=${s%%.*}; [ $((s + 5)) -lt "$(date +%s)" ] && echo "$b"; done)
check '[ -z "$old" ]' "expired buckets were swept by the later calls" "$old"
enq -c "$W/d.conf" --id 'odd/id!%#' -f s@e.example -r 'a/b@e.example' "$(tokmsg d2)"
enq -c "$W/d.conf" --id 'odd/id!%#' -f s@e.example -r 'a/b@e.example' "$(tokmsg d2)"
check '[ "$rc" = 0 ] && [ "$(copies "$DQ" d2)" = 1 ]' "an --id with '/' and other characters a file name cannot take: mapped, one message"
printf 'queue_dir = %s\nesp_key = e.example:s:/x\ndedup_window = 0\n' "$DQ" >"$W/off.conf"
enq -c "$W/off.conf" --id same "$(tokmsg d3)"
enq -c "$W/off.conf" --id same "$(tokmsg d3)"
check '[ "$rc" = 0 ] && [ "$(copies "$DQ" d3)" = 2 ]' "dedup_window = 0: --id is accepted and nothing is remembered"

# 8 processes with the same --id at once, 20 times: one message each time.
# Each call is waited for by its PID: bash 5.2's `wait -n` now and then
# returns 127 although every child exited 0 (about once in 3,000 rounds of
# 8 /bin/true here), which once failed this check in CI with one copy and
# one ID. A failed round shows each call's exit code and stderr.
conf "$W/d60.conf" "$DQ" "dedup_window = 60"
: >"$W/conc"
: >"$W/conc.err"
for r in $(seq 1 20); do
	m=$(tokmsg "c$r")
	pids=()
	for k in 1 2 3 4 5 6 7 8; do
		"$D" enqueue -c "$W/d60.conf" --id "conc-$r" "$m" >"$W/c.$k.out" 2>"$W/c.$k.err" &
		pids+=($!)
	done
	crc=0 rcs=""
	for k in 1 2 3 4 5 6 7 8; do
		wait "${pids[k - 1]}"
		c=$?
		rcs+=" $c"
		[ "$c" = 0 ] || { crc=1; echo "round $r call $k exit $c: $(tr '\n' ' ' <"$W/c.$k.err")" >>"$W/conc.err"; }
	done
	echo "$r $crc $(copies "$DQ" "c$r") $(cat "$W"/c.*.out | grep -c .) exits$rcs" >>"$W/conc"
done
check '! awk '"'"'$2 != 0 || $3 != 1 || $4 != 1'"'"' "$W/conc" | grep -q . && [ "$(ntmp "$DQ")" = 0 ]' \
	"8 concurrent calls with the same --id, 20 rounds: all exit 0, exactly one message and one ID printed each round, in/tmp empty" \
	"round, failed, copies, IDs: $(awk '$2 != 0 || $3 != 1 || $4 != 1' "$W/conc" | head -3 | tr '\n' ';') $(head -3 "$W/conc.err" | tr '\n' ';') in/tmp $(ntmp "$DQ")"

# kill -9 at every file-system step of a call with --id (tests/fault's
# FAULT_KILL, counting only calls on the queue's paths), then the MTA's
# retry with the same ID, then once more: the kill lands, the retry and
# the third call exit 0, and exactly one message is in in/new
INJECT=${FAULT_INJECT:-$(dirname "$DKIMPRESS")/tests/fault_inject.so}
KINDS="open write fsync dirsync rename unlink link mkdir"
# kq NAME MODE: a fresh queue $W/NAME with a 600 s window; MODE warm: a
# call with another ID went first (in/dedup and the bucket exist)
kq() {
	mkq "$W/$1"
	conf "$W/$1.conf" "$W/$1" "dedup_window = 600"
	[ "$2" = warm ] && "$D" enqueue -c "$W/$1.conf" --id warmup "$(tokmsg warm)" >/dev/null 2>&1
	return 0
}
# killed OUT Q ID FILE KIND N: one call with a kill at the Nth KIND step
# on Q's paths; its exit status into OUT (137 when the kill landed)
killed() {
	( ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	  LD_PRELOAD="$INJECT" FAULT_OP="$5" FAULT_N="$6" FAULT_KILL=1 FAULT_PATH="$2" \
		"$D" enqueue -c "$2.conf" --id "$3" "$4" >/dev/null 2>&1
	  echo $? >"$1" ) 2>/dev/null
}
# kcount Q ID FILE: "KIND N" lines, the steps of one call on Q's paths
kcount() {
	: >"$W/kcount"
	# (an ASan build wants its runtime first; the shim only wraps libc)
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	LD_PRELOAD="$INJECT" FAULT_COUNT="$W/kcount" FAULT_PATH="$1" \
		"$D" enqueue -c "$1.conf" --id "$2" "$3" >/dev/null 2>&1
	cat "$W/kcount"
}
if [ -f "$INJECT" ]; then
	for mode in fresh warm takeover; do
		kq "kc$mode" "$([ $mode = fresh ] && echo fresh || echo warm)"
		if [ "$mode" = takeover ]; then
			# the first call killed at its publish rename (after its
			# mark: the 2nd rename on the queue's paths), so that the
			# retry counted here is the one that takes it over
			killed "$W/krc" "$W/kc$mode" kt "$(tokmsg kt)" rename 2
		fi
		kcount "$W/kc$mode" kt "$(tokmsg kt)" >"$W/kcounts.$mode"
		points=0 kbad=0
		: >"$W/kfail"
		for kind in $KINDS; do
			cnt=$(awk -v k="$kind" '$1 == k { print $2 }' "$W/kcounts.$mode")
			for n in $(seq 1 "${cnt:-0}"); do
				points=$((points + 1))
				q=k$points
				kq "$q" "$([ $mode = fresh ] && echo fresh || echo warm)"
				tok="k-$mode-$kind-$n"
				m=$(tokmsg "$tok")
				first=
				if [ "$mode" = takeover ]; then
					killed "$W/krc" "$W/$q" "$tok" "$m" rename 2
					first="first $(cat "$W/krc"), "
				fi
				killed "$W/krc" "$W/$q" "$tok" "$m" "$kind" "$n"
				krc=$(cat "$W/krc")
				"$D" enqueue -c "$W/$q.conf" --id "$tok" "$m" >/dev/null 2>>"$W/kerr"
				rrc=$?
				"$D" enqueue -c "$W/$q.conf" --id "$tok" "$m" >/dev/null 2>>"$W/kerr"
				drc=$?
				nk=$(copies "$W/$q" "$tok")
				if [ "$krc" != 137 ] || [ "$rrc" != 0 ] || [ "$drc" != 0 ] || [ "$nk" != 1 ] ||
					{ [ -n "$first" ] && [ "$first" != "first 137, " ]; }; then
					kbad=$((kbad + 1))
					echo "$kind #$n: ${first}killed $krc, retry $rrc, again $drc, $nk copies" >>"$W/kfail"
				fi
				rm -rf "${W:?}/$q"
			done
		done
		case $mode in
		fresh) what="the first call on a queue (it makes in/dedup and a bucket)" ;;
		warm) what="a call on a queue with in/dedup and the bucket made" ;;
		takeover) what="the retry of a call killed between its mark and its rename (it takes the dead one over)" ;;
		esac
		check '[ "$points" -ge 10 ] && [ "$kbad" = 0 ]' \
			"kill -9 at each of the $points file-system steps of $what ($(tr '\n' ' ' <"$W/kcounts.$mode" | sed 's/[a-z]* 0 //g; s/ *$//')), then the MTA's retry: killed there, the retry and a third call exit 0, one message" \
			"$kbad bad: $(head -5 "$W/kfail")"
	done
	# random moments: kill -9 after 0-199 ms (a call takes ~10-80 ms, more
	# on a busy machine),
	# then the retry; a call that exited 0 first must have queued
	kq rq fresh
	rbad=0 rzero=0
	: >"$W/rfail"
	for i in $(seq 1 60); do
		m=$(tokmsg "r$i")
		( "$D" enqueue -c "$W/rq.conf" --id "r$i" "$m" >/dev/null 2>&1 &
		  pid=$!
		  sleep "$(printf '0.%03d' $((RANDOM % 200)))"
		  kill -9 "$pid" 2>/dev/null
		  wait "$pid"
		  echo $? >"$W/krc" ) 2>/dev/null
		krc=$(cat "$W/krc")
		n1=$(copies "$W/rq" "r$i")
		[ "$krc" = 0 ] && rzero=$((rzero + 1))
		"$D" enqueue -c "$W/rq.conf" --id "r$i" "$m" >/dev/null 2>&1
		rrc=$?
		n2=$(copies "$W/rq" "r$i")
		if { [ "$krc" = 0 ] && [ "$n1" != 1 ]; } || [ "$rrc" != 0 ] || [ "$n2" != 1 ]; then
			rbad=$((rbad + 1))
			echo "r$i: first $krc ($n1 copies), retry $rrc ($n2 copies)" >>"$W/rfail"
		fi
	done
	check '[ "$rbad" = 0 ]' \
		"kill -9 at random moments, 60 times ($rzero finished first, their message queued), then the retry: exactly one message each" \
		"$(head -5 "$W/rfail")"
else
	skip "kill -9 at each step of enqueue --id: no $INJECT (make unit-tests builds it)"
fi

echo "== lost answer (--id through live engines)"
# enqueue succeeds but its caller does not see the answer and hands the
# same message over again, sometimes after an engine has already taken
# the first copy out of in/new: two engines running, each message must
# be signed and published exactly once
LQ=$W/lq
mkq "$LQ"
mkdir -p "$W/keys"
if "$D" keygen --domain esp.example --selector esp1 --type ed25519 --out "$W/keys" >/dev/null 2>&1; then
	printf 'queue_dir = %s\nesp_key = esp.example:esp1:%s/keys/esp1.private\ndedup_window = 600\n' \
		"$LQ" "$W" >"$W/l.conf"
	"$D" run -c "$W/l.conf" >/dev/null 2>"$W/e1.log" &
	e1=$!
	"$D" run -c "$W/l.conf" >/dev/null 2>"$W/e2.log" &
	e2=$!
	lbad=0
	: >"$W/lfail"
	for i in $(seq 1 40); do
		m=$(tokmsg "L$i")
		"$D" enqueue -c "$W/l.conf" --id "Q$i.rcpt@example.net" "$m" >/dev/null 2>&1	# answer lost
		[ $((i % 2)) = 0 ] && sleep 0.3	# let an engine take it first
		if [ $((i % 4)) = 0 ]; then	# and sometimes 4 retries at once
			pids=()
			for k in 1 2 3 4; do
				"$D" enqueue -c "$W/l.conf" --id "Q$i.rcpt@example.net" "$m" >/dev/null 2>&1 &
				pids+=($!)
			done
			lrc=0	# by PID, not `wait -n` (see the 8 concurrent calls above)
			for p in "${pids[@]}"; do wait "$p" || lrc=$?; done
		else
			"$D" enqueue -c "$W/l.conf" --id "Q$i.rcpt@example.net" "$m" >/dev/null 2>&1
			lrc=$?
		fi
		[ "$lrc" = 0 ] || { lbad=$((lbad + 1)); echo "L$i: retry exit $lrc" >>"$W/lfail"; }
	done
	for _ in $(seq 1 100); do
		[ -z "$(ls -A "$LQ/in/new")$(find "$LQ/in/cur" -type f)" ] && break
		sleep 0.1
	done
	kill -TERM "$e1" "$e2" 2>/dev/null
	wait "$e1" "$e2" 2>/dev/null
	"$D" run -c "$W/l.conf" --once >/dev/null 2>>"$W/e1.log"
	for i in $(seq 1 40); do
		n=$(grep -rl -- "TOK-L$i-END" "$LQ/out/new" 2>/dev/null | wc -l)
		[ "$n" = 1 ] || { lbad=$((lbad + 1)); echo "L$i: $n signed copies" >>"$W/lfail"; }
	done
	check '[ "$lbad" = 0 ] && [ "$(ls "$LQ/out/new" | wc -l)" = 40 ] && [ "$(grep -l "^DKIM-Signature:" "$LQ"/out/new/* | wc -l)" = 40 ]' \
		"a lost answer, 40 times, two live engines: every retry exits 0 and each message is signed and published once (40 in out/new)" \
		"$(head -5 "$W/lfail"); $(ls "$LQ/out/new" | wc -l) in out/new; $(tail -3 "$W/e1.log")"
else
	bad "keygen for the lost-answer test"
fi

echo "== unique"
U=$W/u
mkq "$U"
conf "$W/u.conf" "$U"
t0=$(date +%s.%N)
seq 1 1000 | xargs -P 8 -I{} sh -c 'printf "From: a@customer.example\r\nSubject: {}\r\n\r\n{}\r\n" | "$0" enqueue -c "$1"' "$D" "$W/u.conf" >"$W/ids" 2>"$W/uerr"
t1=$(date +%s.%N)
ndist=$(sort -u "$W/ids" | wc -l)
nbad=$(while read -r i; do { [[ $i =~ $ID_RE ]] && id_ok "$i"; } || echo "$i"; done <"$W/ids" | wc -l)
check '[ "$(wc -l <"$W/ids")" = 1000 ] && [ "$ndist" = 1000 ] && [ "$nbad" = 0 ] && [ ! -s "$W/uerr" ]' \
	"1,000 calls (8 at a time, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s): 1,000 different IDs, all valid" \
	"$(wc -l <"$W/ids") printed, $ndist different, $nbad invalid; $(head -3 "$W/uerr")"
check '[ "$(nnew "$U")" = 1000 ] && [ "$(ntmp "$U")" = 0 ] && [ "$(sort "$W/ids" | tr -d "\n")" = "$(ls "$U/in/new" | sort | tr -d "\n")" ]' \
	"... 1,000 files in in/new, named by the IDs printed, in/tmp empty"

echo "enqueue: $pass passed, $fail failed"
if [ "$fail" != 0 ]; then
	exit 1
fi
if [ "${#skipped[@]}" != 0 ]; then
	printf 'not run: %s\n' "${skipped[@]}"
	exit 77
fi
exit 0
