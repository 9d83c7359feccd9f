#!/usr/bin/env bash
# tests/engine/run.sh — the batch engine, end to end, and under faults.
#
#  e2e     ENGINE_N (default 5000) varied messages (tests/engine/gen_queue.py)
#          across 50 customer domains (20 RSA, 20 Ed25519, 10 without a
#          key; subdomains routed by refile patterns) and 1 in 125
#          malformed, through `run --once`: counts add up, queues empty,
#          each output = input + its signatures with the right d= on top,
#          every signature passes dkimpy, every RSA one Mail::DKIM, a
#          sample libopendkim and dkimpress verify; malformed ones in
#          failed/ with reasons. Then 500 more with io = syscalls, 500
#          with flush = files, and through the commit thread
#          (group_commit = yes) 2000 with syncfs and 500 with flush =
#          files.
#  bench   run --no-sign copies byte for byte and warns, --stats and --set
#          work, the summary has latency; `dkimpress bench` runs its three
#          phases, writes JSON rows, removes its scratch queues.
#  faults  a full disk (out_dir on a small tmpfs): nothing lost, exit 75,
#          a clear error, a second run finishes; a read-only out_dir: every
#          input stays queued; configuration errors: exit 78 before any
#          message is touched; watch mode (inotify) with a broken reload
#          (old keys keep signing) and a good one (new ESP selector), then
#          SIGTERM: exit 0 with a summary.
# Ends with "engine: N passed, N failed". Env: DKIMPRESS (default
# build/dkimpress), ODKIM_VERIFY (default build/tests/odkim_verify),
# ENGINE_N. Needs root for the tmpfs mounts (skipped otherwise, and said).
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
ODKIM_VERIFY=${ODKIM_VERIFY:-build/tests/odkim_verify}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
case $ODKIM_VERIFY in /*) ;; *) ODKIM_VERIFY=$PWD/$ODKIM_VERIFY ;; esac
N=${ENGINE_N:-5000}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-engine.XXXXXX")
MOUNTS=()
cleanup() {
	local m
	for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
# vcheck DESC OUT CMD...: run a verifier into OUT, then report with its
# summary line (and its first failures)
vcheck() {
	local desc=$1 out=$2
	shift 2
	if "$@" >"$out" 2>&1; then
		ok "$desc ($(tail -1 "$out"))"
	else
		bad "$desc: $(tail -1 "$out")"
		grep -m3 "	fail	" "$out"
	fi
}
D=$DKIMPRESS

echo "== keys for 50 customer domains and the ESP"
mkdir -p "$W/keys"
"$D" keygen --domain esp.example --selector esp1 --out "$W/keys" >"$W/dns.txt" 2>/dev/null
"$D" keygen --domain esp.example --selector esp2 --type ed25519 --out "$W/keys" >>"$W/dns.txt" 2>/dev/null
: >"$W/KeyTable"
: >"$W/SigningTable"
for d in $(seq 1 40); do
	dom=$(printf 'd%02d.example' "$d")
	if [ "$d" -le 20 ]; then type=rsa; else type=ed25519; fi
	mkdir -p "$W/keys/$dom"
	"$D" keygen --domain "$dom" --selector "s$d" --type "$type" --out "$W/keys/$dom" >>"$W/dns.txt" 2>/dev/null
	echo "k$d $dom:s$d:$W/keys/$dom/s$d.private" >>"$W/KeyTable"
	printf '*@%s k%d\n*@*.%s k%d\n' "$dom" "$d" "$dom" "$d" >>"$W/SigningTable"
done
conf() {	# conf FILE QUEUE [extra lines...]
	local f=$1 q=$2
	shift 2
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:esp1:$W/keys/esp1.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = refile:$W/SigningTable"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}
$PY "$TOP/tests/interop/gen_corpus.py" "$W/tmpl" >/dev/null

# ---------------------------------------------------------------- e2e
e2e() {	# e2e NAME COUNT [conf lines...]
	local name=$1 n=$2 q="$W/$1" rc=0
	shift 2
	echo "== e2e $name: $n messages"
	$PY "$HERE/gen_queue.py" "$W/tmpl" "$q" "$n" "$W/$name.man"
	mkdir -p "$W/$name.orig"
	cp -al "$q/in/new/." "$W/$name.orig/"
	conf "$W/$name.conf" "$q" "$@"
	"$D" run -c "$W/$name.conf" --once >"$W/$name.sum" 2>"$W/$name.log" || rc=$?
	cat "$W/$name.sum"
	local nfail nok nkey nnokey
	nfail=$(awk -F'\t' '$3 == "fail"' "$W/$name.man" | wc -l)
	nok=$((n - nfail))
	nkey=$(awk -F'\t' '$3 == "ok" && $2 != "-"' "$W/$name.man" | wc -l)
	nnokey=$((nok - nkey))
	check '[ "$rc" = 65 ]' "$name: exit 65 (some messages malformed)" "exit $rc"
	check 'grep -q "signed $nkey, esp-only $nnokey, deferred 0, failed $nfail " "$W/$name.sum"' \
		"$name: summary counts add up (signed $nkey + esp-only $nnokey + failed $nfail = $n)"
	check '[ "$(find "$q/in" "$q/out/tmp" -type f | wc -l)" = 0 ]' "$name: in/new, in/cur, out/tmp empty"
	check '[ "$(ls "$q/out/new" | wc -l)" = "$nok" ] && [ "$(ls "$q/failed" | grep -vc reason)" = "$nfail" ]' \
		"$name: $nok in out/new, $nfail in failed/"
	check 'for f in $(awk -F"\t" "\$3 == \"fail\" {print \$1}" "$W/$name.man"); do [ -s "$q/failed/$f.reason" ] || exit 1; done' \
		"$name: each failed message has its .reason"
	# shape and route: input (LF -> CRLF) + signatures, customer d= first
	if $PY - "$W/$name.orig" "$q/out/new" "$W/$name.man" >"$W/$name.shape" <<'PY'
import os, re, sys
orig, out, man = sys.argv[1:4]
bad = 0
for line in open(man):
    qid, dom, state = line.rstrip("\n").split("\t")
    if state != "ok":
        continue
    data = open(os.path.join(out, qid), "rb").read()
    src = open(os.path.join(orig, qid), "rb").read()
    src = re.sub(rb"(?<!\r)\n", b"\r\n", src)
    ds, rest = [], data
    while rest.startswith(b"DKIM-Signature:"):
        end = rest.index(b"\r\n") + 2
        while rest[end:end + 1] in (b" ", b"\t"):
            end = rest.index(b"\r\n", end) + 2
        ds.append(re.search(rb"\bd=([^;\s]+)", rest[:end]).group(1).decode())
        rest = rest[end:]
    want = ([dom] if dom != "-" else []) + ["esp.example"]
    if ds != want or rest != src:
        bad += 1
        if bad <= 5:
            print("%s: d= %s (want %s), body %s" % (qid, ds, want, "same" if rest == src else "DIFFERS"))
print("shape: %d bad" % bad)
sys.exit(1 if bad else 0)
PY
	then ok "$name: every output is its input + signatures, customer d= on top, ESP below"
	else bad "$name: $(tail -1 "$W/$name.shape")"; head -5 "$W/$name.shape"; fi
	# independent verification
	awk -F'\t' -v d="$q/out/new" '$3 == "ok" && $2 != "-" {print d "/" $1}' "$W/$name.man" >"$W/$name.two"
	awk -F'\t' -v d="$q/out/new" '$3 == "ok" && $2 == "-" {print d "/" $1}' "$W/$name.man" >"$W/$name.one"
	vcheck "$name: dkimpy verifies both signatures of every keyed message" "$W/$name.py2" \
		$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 --list "$W/$name.two"
	vcheck "$name: dkimpy verifies the one signature of every esp-only message" "$W/$name.py1" \
		$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 1 --list "$W/$name.one"
	cat "$W/$name.two" "$W/$name.one" >"$W/$name.all"
	vcheck "$name: Mail::DKIM verifies every RSA signature" "$W/$name.pl" \
		/usr/bin/perl "$TOP/tests/interop/verify_maildkim.pl" --dns-file "$W/dns.txt" --rsa-only --list "$W/$name.all"
	if [ -x "$ODKIM_VERIFY" ]; then
		awk 'NR % 20 == 1' "$W/$name.two" >"$W/$name.sample"
		vcheck "$name: libopendkim verifies a sample of $(wc -l <"$W/$name.sample")" "$W/$name.od" \
			"$ODKIM_VERIFY" --dns-file "$W/dns.txt" --expect 2 --list "$W/$name.sample"
	else
		bad "$name: libopendkim harness $ODKIM_VERIFY missing (make unit-tests builds it)"
	fi
	local f vbad=0
	for f in $(awk 'NR % 50 == 1' "$W/$name.two"); do
		"$D" verify --dns-file "$W/dns.txt" "$f" >/dev/null || vbad=$((vbad + 1))
	done
	check '[ "$vbad" = 0 ]' "$name: dkimpress verify passes a sample" "$vbad failed"
}
e2e main "$N"
e2e syscalls 500 "io = syscalls" "threads = 3" "batch = 7"
check 'grep -q "syscalls" "$W/syscalls.log"' "syscalls: the run says it uses plain syscalls"
e2e files 500 "flush = files" "threads = 2" "batch = 16"
check 'grep -q "flush files" "$W/files.log"' "files: the run says it fsyncs each file (flush = files)"
# the commit thread (group_commit): the same checks, batches of several
# workers committed together
e2e groupcommit 2000 "group_commit = yes" "threads = 4" "batch = 8"
e2e groupfiles 500 "group_commit = yes" "flush = files" "io = uring" "threads = 3" "batch = 5"

# ------------------------------------------------- bench and --no-sign
echo "== run --no-sign --stats, dkimpress bench"
q="$W/nosign"
$PY "$HERE/gen_queue.py" "$W/tmpl" "$q" 200 "$W/nosign.man"
awk -F'\t' '$3 == "ok" {print $1}' "$W/nosign.man" >"$W/nosign.ok"
find "$q/in/new" -type f | while read -r f; do
	grep -qx "$(basename "$f")" "$W/nosign.ok" || rm -f "$f"	# keep well-formed ones
done
mkdir -p "$W/nosign.orig" && cp -al "$q/in/new/." "$W/nosign.orig/"
nq=$(ls "$q/in/new" | wc -l)
conf "$W/nosign.conf" "$q"
rc=0
"$D" run -c "$W/nosign.conf" --once --no-sign --stats "$W/nosign.json" \
	--set batch=9 >"$W/nosign.sum" 2>"$W/nosign.log" || rc=$?
same=0
for f in "$W/nosign.orig"/*; do
	cmp -s "$f" "$q/out/new/$(basename "$f")" && same=$((same + 1))
done
check '[ "$rc" = 0 ] && [ "$same" = "$nq" ] && [ -z "$(ls "$q/in/new")" ]' \
	"--no-sign: all $nq messages copied to out/new byte for byte, unsigned" "exit $rc, $same identical"
check 'grep -q "UNSIGNED" "$W/nosign.log" && grep -q "batch 9" "$W/nosign.log"' \
	"--no-sign warns; --set batch=9 overrides the file"
check "grep -q '\"signed\":$nq,' '$W/nosign.json' && grep -q '\"p99_ms\":[0-9]' '$W/nosign.json'" \
	"--stats writes the counts and latency percentiles as JSON" "$(cat "$W/nosign.json")"
check 'grep -q "latency p50 .* ms, p99 .* ms" "$W/nosign.sum"' "the summary line gives the latency p50/p99"

# bench on the well-formed messages: three phases, rows in JSON, no scratch left
rc=0
"$D" bench -c "$W/nosign.conf" --corpus "$W/nosign.orig" --work "$W/bw" \
	--seconds 1 --repeat 2 --json "$W/bench.json" --label smoke \
	>"$W/bench.out" 2>"$W/bench.err" || rc=$?
cat "$W/bench.out"
check '[ "$rc" = 0 ] && [ "$(grep -c "\"label\":\"smoke\"" "$W/bench.json")" = 3 ]' \
	"bench: exit 0, one JSON row per phase" "exit $rc: $(tail -2 "$W/bench.err")"
check "grep -q '\"phase\":\"engine\".*\"messages\":$nq,' '$W/bench.json' && grep -q '\"phase\":\"io\".*\"messages\":$nq,' '$W/bench.json'" \
	"bench: the io and engine phases each publish all $nq messages"
check 'grep -q "^smoke .*crypto .*signatures/s" "$W/bench.out" && grep -q "^ratio: " "$W/bench.out"' \
	"bench: the table has the crypto bound and the ratio line"
check '[ -z "$(ls -A "$W/bw")" ] && [ "$(ls "$W/nosign.orig" | wc -l)" = "$nq" ]' \
	"bench: scratch queues removed, the corpus untouched"
mkdir -p "$W/badcorpus"
cp "$W/nosign.orig/$(ls "$W/nosign.orig" | head -1)" "$W/badcorpus/good"
printf 'no empty line ends this header\r\n' >"$W/badcorpus/bad"
rc=0
"$D" bench -c "$W/nosign.conf" --corpus "$W/badcorpus" --work "$W/bwbad" --phases engine \
	>/dev/null 2>"$W/bench.err3" || rc=$?
log=$(sed -n 's/.*the engine phase: engine 1 of 1 exited 65; see \(.*\)$/\1/p' "$W/bench.err3")
check '[ "$rc" = 1 ] && [ -n "$log" ] && [ -s "$log" ] && grep -q "stay in" "$W/bench.err3"' \
	"bench: a phase that does not sign everything fails, and keeps its queue and log" \
	"exit $rc: $(tail -2 "$W/bench.err3")"
rc=0
"$D" bench -c "$W/nosign.conf" --phases nonsense >/dev/null 2>"$W/bench.err2" || rc=$?
check '[ "$rc" = 64 ] && grep -q "unknown phase" "$W/bench.err2"' "bench: a bad --phases is a usage error (64)"

# -------------------------------------------------------------- faults
root=0
mkdir -p "$W/probe"
[ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1m tmpfs "$W/probe" 2>/dev/null && umount "$W/probe" && root=1
if [ "$root" = 1 ]; then
	echo "== full disk: out_dir on a 3 MB tmpfs"
	q="$W/full"
	mkdir -p "$q/in" "$q/outfs"
	mount -t tmpfs -o size=3m tmpfs "$q/outfs" && MOUNTS+=("$q/outfs")
	$PY "$HERE/gen_queue.py" "$W/tmpl" "$q/src" 600 "$W/full.man" >/dev/null
	# keep only well-formed messages here
	awk -F'\t' '$3 == "ok" {print $1}' "$W/full.man" >"$W/full.ids"
	mkdir -p "$q/in/new"
	while read -r id; do mv "$q/src/in/new/$id" "$q/in/new/"; done <"$W/full.ids"
	total=$(wc -l <"$W/full.ids")
	conf "$W/full.conf" "$q" "in_dir = $q/in" "out_dir = $q/outfs/out" "failed_dir = $q/failed"
	sed -i '/^queue_dir/d' "$W/full.conf"
	rc=0
	"$D" run -c "$W/full.conf" --once >"$W/full.sum" 2>"$W/full.log" || rc=$?
	cat "$W/full.sum"
	done1=$(ls "$q/outfs/out/new" | wc -l)
	queued=$(ls "$q/in/new" | wc -l)
	check '[ "$rc" = 75 ]' "full disk: exit 75 (deferred)" "exit $rc"
	check 'grep -q "No space left on device" "$W/full.log"' "full disk: the log says 'No space left on device'"
	check '[ "$((done1 + queued))" = "$total" ] && [ "$queued" -gt 0 ] && [ "$(ls "$q/in/cur" | wc -l)" = 0 ]' \
		"full disk: nothing lost ($done1 published + $queued still queued = $total)"
	check 'grep -q "deferred $queued," "$W/full.sum"' "full disk: the summary counts the $queued deferred messages"
	check '[ -z "$(ls "$q/failed" 2>/dev/null)" ] && [ -z "$(find "$q/outfs/out/tmp" -type f)" ]' \
		"full disk: nothing in failed/, no temporary files left" \
		"failed: $(ls "$q/failed" 2>/dev/null | wc -l), out/tmp: $(find "$q/outfs/out/tmp" -type f | wc -l)"
	mount -o remount,size=200m "$q/outfs"
	rc=0
	"$D" run -c "$W/full.conf" --once >>"$W/full.sum" 2>>"$W/full.log" || rc=$?
	check '[ "$rc" = 0 ] && [ "$(ls "$q/outfs/out/new" | wc -l)" = "$total" ] && [ -z "$(ls "$q/in/new")" ]' \
		"full disk: after making room a second run publishes the rest ($total in all)" "exit $rc"
	ls -d "$q/outfs/out/new"/* >"$W/full.list"
	vcheck "full disk: every output verifies with dkimpy" "$W/full.py" \
		$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --list "$W/full.list"

	echo "== read-only output directory"
	q="$W/ro"
	mkdir -p "$q/in" "$q/outfs"
	mount -t tmpfs -o size=50m tmpfs "$q/outfs" && MOUNTS+=("$q/outfs")
	conf "$W/ro.conf" "$q" "in_dir = $q/in" "out_dir = $q/outfs/out" "failed_dir = $q/failed"
	sed -i '/^queue_dir/d' "$W/ro.conf"
	"$D" run -c "$W/ro.conf" --once >/dev/null 2>&1	# creates the directories
	mount -o remount,ro "$q/outfs"
	$PY "$HERE/gen_queue.py" "$W/tmpl" "$q/src" 100 "$W/ro.man" >/dev/null
	mkdir -p "$q/in/new"
	for id in $(awk -F'\t' '$3 == "ok" {print $1}' "$W/ro.man"); do mv "$q/src/in/new/$id" "$q/in/new/"; done
	before=$(ls "$q/in/new" | wc -l)
	rc=0
	"$D" run -c "$W/ro.conf" --once >"$W/ro.sum" 2>"$W/ro.log" || rc=$?
	# the engine cannot make its temporary area: the queue cannot be
	# worked at all, so it stops at once with EX_IOERR (docs/queue.md)
	check '[ "$rc" = 74 ]' "read-only out_dir: exit 74 at start" "exit $rc"
	check 'grep -q "Read-only file system" "$W/ro.log"' "read-only out_dir: the log says 'Read-only file system'"
	check '[ "$(ls "$q/in/new" | wc -l)" = "$before" ] && [ -z "$(find "$q/in/cur" -mindepth 1)" ] && [ -z "$(ls "$q/failed" 2>/dev/null)" ]' \
		"read-only out_dir: all $before inputs still in in/new, nothing in failed/"
	umount "$q/outfs"
else
	echo "(not root or no tmpfs: the full-disk and read-only checks are skipped)"
fi

echo "== configuration errors stop start-up (exit 78) before any message is touched"
q="$W/cfg"
mkdir -p "$q/in/new"
printf 'From: a@d01.example\r\n\r\nx\r\n' >"$q/in/new/m1"
cfgcase() {	# cfgcase WHAT EXPECTED-WORDS CONF-LINES...
	local what=$1 words=$2 rc=0
	shift 2
	printf '%s\n' "$@" >"$W/bad.conf"
	"$D" run -c "$W/bad.conf" --once >"$W/bad.out" 2>"$W/bad.err" || rc=$?
	check '[ "$rc" = 78 ] && grep -q "$words" "$W/bad.err" && [ -f "$q/in/new/m1" ]' \
		"config error, $what: exit 78, '$words', the message untouched" "exit $rc: $(head -2 "$W/bad.err")"
}
good="esp_key = esp.example:esp1:$W/keys/esp1.private"
cfgcase "unknown key" "unknown setting 'thraeds'" "queue_dir = $q" "$good" "thraeds = 4"
cfgcase "missing ESP key file" "cannot open key file" "queue_dir = $q" "esp_key = esp.example:e:$W/nope.private"
cp "$W/keys/esp1.private" "$W/open.private"
chmod 644 "$W/open.private"
cfgcase "key file mode 0644" "mode 0644" "queue_dir = $q" "esp_key = esp.example:e:$W/open.private"
echo "kx d01.example:s1:$W/missing.private" >"$W/badKT"
echo "*@d01.example kx" >"$W/badST"
cfgcase "KeyTable names a missing file" "missing.private" "queue_dir = $q" "$good" "key_table = $W/badKT" "signing_table = refile:$W/badST"
printf -- '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n' >"$W/corrupt.private"
chmod 600 "$W/corrupt.private"
echo "kc d01.example:s1:$W/corrupt.private" >"$W/badKT2"
echo "*@d01.example kc" >"$W/badST3"
cfgcase "a customer key that does not parse" "key kc: .*not a PEM RSA or Ed25519 private key" "queue_dir = $q" "$good" "key_table = $W/badKT2" "signing_table = refile:$W/badST3"
echo "*@d01.example nosuchkey" >"$W/badST2"
cfgcase "SigningTable names an unknown key" "not in the KeyTable" "queue_dir = $q" "$good" "key_table = $W/KeyTable" "signing_table = refile:$W/badST2"

echo "== watch mode (inotify), reloads, SIGTERM"
q="$W/watch"
conf "$W/watch.conf" "$q"
mkdir -p "$q/in/tmp" "$q/in/new"
"$D" run -c "$W/watch.conf" >"$W/watch.sum" 2>"$W/watch.log" &
wpid=$!
drop() {	# drop ID: a producer writes in/tmp, then renames into in/new
	printf 'From: News <news@d0%d.example>\r\nTo: r@example.net\r\nSubject: %s\r\n\r\nhello %s\r\n' "$((RANDOM % 9 + 1))" "$1" "$1" >"$q/in/tmp/$1"
	mv "$q/in/tmp/$1" "$q/in/new/$1"
}
waitfor() {	# waitfor FILE: up to 5 s
	local i
	for i in $(seq 1 50); do [ -f "$1" ] && return 0; sleep 0.1; done
	return 1
}
sleep 0.5
drop w1
check 'waitfor "$q/out/new/w1"' "watch: a message dropped into in/new is signed within seconds"
sed 's/^key_table/key_tabel/' "$W/watch.conf" >"$W/watch.conf.new" && cp "$W/watch.conf" "$W/watch.conf.good"
mv "$W/watch.conf.new" "$W/watch.conf"
kill -HUP "$wpid"
sleep 0.5
drop w2
check 'waitfor "$q/out/new/w2" && grep -q "reload failed" "$W/watch.log"' "watch: a broken config on SIGHUP is refused and logged"
check 'grep -m1 -oE "(^|[;[:space:]])d=[^;]*" "$q/out/new/w2" | grep -q "d=d0" && grep -q "s=esp1;" "$q/out/new/w2"' \
	"watch: after the refused reload the old keys still sign (customer d= on top, ESP s=esp1)"
sed 's/esp1/esp2/g' "$W/watch.conf.good" >"$W/watch.conf"
kill -HUP "$wpid"
sleep 0.5
drop w3
check 'waitfor "$q/out/new/w3" && grep -q "s=esp2;" "$q/out/new/w3" && grep -q "a=ed25519-sha256; d=esp.example; s=esp2;" "$q/out/new/w3"' \
	"watch: a good reload switches the ESP key (s=esp2, Ed25519) for new messages"
kill -TERM "$wpid"
rc=0
wait "$wpid" || rc=$?
check '[ "$rc" = 0 ] && grep -q "signed 3," "$W/watch.sum"' "watch: SIGTERM exits 0 with a summary" "exit $rc: $(cat "$W/watch.sum")"
ls -d "$q/out/new"/* >"$W/watch.list"
vcheck "watch: dkimpy verifies all three" "$W/watch.py" \
	$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect 2 --list "$W/watch.list"

grep -hiE "AddressSanitizer|runtime error|LeakSanitizer" "$W"/*.log "$W"/*.err 2>/dev/null | head -3 | grep . && bad "sanitizer reports in the engine logs"
echo "engine: $pass passed, $fail failed"
[ "$fail" = 0 ]
