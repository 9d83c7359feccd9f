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
#            two FILEs, an unknown option)
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
