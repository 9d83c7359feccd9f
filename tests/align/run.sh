#!/usr/bin/env bash
# tests/align/run.sh — DMARC alignment in the engine (conf/align.h): the
# three `unaligned` actions, their counters in the summary line, the
# --stats JSON and the Prometheus endpoint, strict against relaxed, and the
# KeyTable's "%org" domain verified by dkimpy and libopendkim.
#
# The queue (refile SigningTable, missing_key = esp-only, the ESP key
# esp.example):
#   20  From news.shop.co.uk   key "%org"           d=shop.co.uk     aligned (relaxed)
#   12  From brand.example     key "%org"           d=brand.example  aligned
#   15  From wrong.example     key other.example    d=other.example  unaligned
#   10  From nokey.example     no key: esp-only                      unaligned
#    3  From co.uk             key "%org": a public suffix has no
#                              organizational domain: esp-only       unaligned
#
#  sign     unaligned = sign (the default), watch mode with metrics: 47
#           signed, 13 esp-only; "DMARC aligned 32, unaligned 28 (most:
#           wrong.example)" in the summary, the same in --stats and on
#           /metrics, per From domain too (each series counting from the
#           domain's 10th message on, the rest in _other: engine/stats.h);
#           every output verified by dkimpy and libopendkim, the "%org"
#           ones with d=shop.co.uk and d=brand.example.
#  defer    unaligned = defer: the 15 go back to in/new (deferred, counted
#           unaligned), the rest is signed; --once exits 75 with them
#           left; in watch mode the counters agree across the three
#           reports.
#  fail     unaligned = fail: the 15 in failed/ with a reason naming the
#           From domain, d= and the setting; --once exits 65.
#  check    `dkimpress check` looks a "%org" entry up under each
#           organizational domain the SigningTable routes to it.
#  strict   dmarc_alignment = strict, unaligned = fail: news.shop.co.uk
#           signed as shop.co.uk no longer aligns (20 failed),
#           brand.example still does.
# Ends with "align: N passed, N failed". Env: DKIMPRESS, ODKIM_VERIFY;
# KEEP=1 keeps the scratch directory.
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
ODKIM_VERIFY=${ODKIM_VERIFY:-build/tests/odkim_verify}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
case $ODKIM_VERIFY in /*) ;; *) ODKIM_VERIFY=$PWD/$ODKIM_VERIFY ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
D=$DKIMPRESS
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
for tool in curl; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "align: 0 passed, 0 failed"
		echo "skipped: $tool is not installed (tools/deps installs it)"
		exit 77
	fi
done
if ! $PY -c 'import dkim' 2>/dev/null || [ ! -x "$ODKIM_VERIFY" ]; then
	echo "align: 0 passed, 0 failed"
	echo "skipped: dkimpy (python3-dkim) or $ODKIM_VERIFY (make unit-tests) is missing"
	exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-align.XXXXXX")
ENG=
cleanup() {
	[ -n "$ENG" ] && kill -KILL "$ENG" 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
val() {	# val FILE 'series{labels}'
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "MISSING" }' "$1"
}
jget() {	# jget FILE python-expression-on-j
	$PY -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

echo "== keys and tables"
K=$W/keys
mkdir -p "$K"
"$D" keygen --domain esp.example --selector esp1 --out "$K" >"$W/dns.txt" 2>/dev/null
# one "%org" key, published under each organizational domain it signs for
"$D" keygen --domain shop.co.uk --selector org1 --out "$K" >"$W/org.txt" 2>/dev/null
cat "$W/org.txt" >>"$W/dns.txt"
sed 's/^org1\._domainkey\.shop\.co\.uk/org1._domainkey.brand.example/' "$W/org.txt" >>"$W/dns.txt"
"$D" keygen --domain other.example --selector mis1 --out "$K" >>"$W/dns.txt" 2>/dev/null
{
	echo "korg %org:org1:$K/org1.private"
	echo "kmis other.example:mis1:$K/mis1.private"
} >"$W/KeyTable"
{
	echo "*@*.shop.co.uk korg"
	echo "*@brand.example korg"
	echo "*@wrong.example kmis"
	echo "*@co.uk korg"
} >"$W/SigningTable"
check '[ "$(wc -l <"$W/dns.txt")" = 4 ]' "keygen: four DNS records (esp, %org under two domains, other.example)"

# the queue, made once in $W/stage and copied for each run
mkdir -p "$W/stage"
n=0
mk() {	# mk COUNT FROM-DOMAIN
	local i
	for i in $(seq 1 "$1"); do
		n=$((n + 1))
		printf 'From: Sender <news@%s>\r\nTo: r%d@rcpt.example\r\nSubject: alignment %d\r\nDate: Mon, 07 Dec 2026 00:00:00 +0000\r\nMessage-ID: <m%d@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello %d.\r\n' \
			"$2" "$n" "$n" "$n" "$2" "$n" >"$W/stage/m$(printf %04d $n)"
	done
}
mk 20 news.shop.co.uk
mk 12 brand.example
mk 15 wrong.example
mk 10 nokey.example
mk 3 co.uk
TOTAL=$n

conf() {	# conf FILE QUEUE [extra lines...]
	local f=$1 q=$2
	shift 2
	{
		echo "queue_dir = $q"
		echo "esp_key = esp.example:esp1:$K/esp1.private"
		echo "key_table = $W/KeyTable"
		echo "signing_table = refile:$W/SigningTable"
		echo "missing_key = esp-only"
		echo "threads = 2"
		echo "batch = 8"
		echo "metrics_domains = 10"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}
fill() {	# fill QUEUE: a fresh queue holding every staged message
	mkdir -p "$1/in/tmp" "$1/in/new"
	cp "$W/stage"/m* "$1/in/tmp/"
	mv "$1/in/tmp"/m* "$1/in/new/"
}
count() { find "$1" -maxdepth 1 -type f -name 'm*' ! -name '*.reason' 2>/dev/null | wc -l; }

# watch NAME PUBLISHED FAILED DEFERRED [conf lines...]: an engine in watch
# mode with metrics; once PUBLISHED are in out/new, FAILED in failed/ and
# DEFERRED deferrals seen, scrape, SIGTERM. Leaves $W/NAME.{sum,json,prom,log}.
watch() {
	local name=$1 npub=$2 nfailed=$3 ndef=$4 port i done_=0
	shift 4
	port=$(free_port)
	conf "$W/$name.conf" "$W/$name" "metrics_listen = 127.0.0.1:$port" "$@"
	fill "$W/$name"
	"$D" run -c "$W/$name.conf" --stats "$W/$name.json" >"$W/$name.sum" 2>"$W/$name.log" &
	ENG=$!
	for i in $(seq 1 600); do
		if curl -s --max-time 2 -o "$W/$name.prom" "http://127.0.0.1:$port/metrics" &&
		   [ "$(count "$W/$name/out/new")" = "$npub" ] &&
		   [ "$(count "$W/$name/failed")" = "$nfailed" ] &&
		   [ "$(val "$W/$name.prom" 'dkimpress_messages_total{outcome="deferred"}')" -ge "$ndef" ] 2>/dev/null &&
		   [ "$(( $(val "$W/$name.prom" 'dkimpress_messages_total{outcome="signed"}') + $(val "$W/$name.prom" 'dkimpress_messages_total{outcome="esp_only"}') ))" = "$npub" ]; then
			done_=1
			break
		fi
		sleep 0.1
	done
	kill -TERM "$ENG"
	wait "$ENG"
	ENG=
	check '[ "$done_" = 1 ]' "$name: the engine got to $npub published, $nfailed failed, $ndef deferred" \
		"$(cat "$W/$name.sum"; tail -3 "$W/$name.log")"
	echo "     $(cat "$W/$name.sum")"
}

# -------------------------------------------------------------- sign
echo "== sign: unaligned = sign (the default)"
watch sign 60 0 0
S=$W/sign.sum
check 'grep -q "signed 47, esp-only 13, deferred 0, failed 0" "$S"' "sign: summary signed 47, esp-only 13"
check 'grep -q "; DMARC aligned 32, unaligned 28 (most: wrong.example)" "$S"' \
	"sign: summary DMARC aligned 32, unaligned 28 (most: wrong.example)"
check '[ "$(jget "$W/sign.json" "(j[\"aligned\"], j[\"unaligned\"])")" = "(32, 28)" ]' "sign: --stats aligned 32, unaligned 28"
check '[ "$(jget "$W/sign.json" "sorted((k, v[\"aligned\"], v[\"unaligned\"]) for k, v in j[\"align_domains\"].items())")" = "[('"'"'_other'"'"', 20, 23), ('"'"'brand.example'"'"', 2, 0), ('"'"'news.shop.co.uk'"'"', 10, 0), ('"'"'nokey.example'"'"', 0, 0), ('"'"'wrong.example'"'"', 0, 5)]" ]' \
	"sign: --stats per From domain: 4 series counting from their 10th message (engine/stats.h), the rest in _other" "$(jget "$W/sign.json" 'j["align_domains"]')"
P=$W/sign.prom
check '[ "$(val "$P" "dkimpress_dmarc_messages_total{alignment=\"aligned\"}")" = 32 ] && [ "$(val "$P" "dkimpress_dmarc_messages_total{alignment=\"unaligned\"}")" = 28 ]' \
	"sign: /metrics dkimpress_dmarc_messages_total aligned 32, unaligned 28"
check '[ "$(val "$P" "dkimpress_domain_dmarc_messages_total{domain=\"wrong.example\",alignment=\"unaligned\"}")" = 5 ] && [ "$(val "$P" "dkimpress_domain_dmarc_messages_total{domain=\"news.shop.co.uk\",alignment=\"aligned\"}")" = 10 ] && [ "$(val "$P" "dkimpress_domain_dmarc_messages_total{domain=\"_other\",alignment=\"unaligned\"}")" = 23 ]' \
	"sign: /metrics per From domain, as --stats (wrong.example 5 unaligned, news.shop.co.uk 10 aligned, _other 23 unaligned)"
if command -v promtool >/dev/null 2>&1; then
	promtool check metrics <"$P" >"$W/lint" 2>&1
	check '[ $? = 0 ] && [ ! -s "$W/lint" ]' "sign: promtool check metrics accepts the scrape" "$(head -3 "$W/lint")"
fi
# d= of the top signature per From domain
dtop() {	# dtop FROM-DOMAIN: the distinct top d= of that domain's outputs
	grep -l "^From: Sender <news@$1>" "$W/sign/out/new"/m* | while read -r f; do
		sed -n '1,/^\r$/p' "$f" | tr -d '\r' | awk '/^DKIM-Signature:/ { s = 1 } s { printf "%s", $0 } /^[^ \t]/ && !/^DKIM-Signature:/ { s = 0 }' |
			grep -o 'd=[^;]*' | head -1
	done | sort -u | tr '\n' ' '
}
check '[ "$(dtop news.shop.co.uk)" = "d=shop.co.uk " ]' "sign: %org signs news.shop.co.uk as d=shop.co.uk" "$(dtop news.shop.co.uk)"
check '[ "$(dtop brand.example)" = "d=brand.example " ]' "sign: %org signs brand.example as d=brand.example" "$(dtop brand.example)"
check '[ "$(dtop co.uk)" = "d=esp.example " ]' "sign: %org for From co.uk (a public suffix): ESP signature only" "$(dtop co.uk)"
check 'grep -q "no customer key for co.uk" "$W/sign.log"' "sign: the log names co.uk as a domain without a customer key"
grep -L "^From: Sender <news@\(nokey.example\|co.uk\)>" "$W/sign/out/new"/m* >"$W/two.list"
grep -l "^From: Sender <news@\(nokey.example\|co.uk\)>" "$W/sign/out/new"/m* >"$W/one.list"
check '[ "$(wc -l <"$W/two.list")" = 47 ] && [ "$(wc -l <"$W/one.list")" = 13 ]' "sign: 47 outputs with two signatures, 13 with one"
for v in dkimpy odkim; do
	for k in two one; do
		e=2; [ $k = one ] && e=1
		if [ $v = dkimpy ]; then
			$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/dns.txt" --expect $e --list "$W/$k.list" >"$W/$v.$k" 2>&1
		else
			"$ODKIM_VERIFY" --dns-file "$W/dns.txt" --expect $e --list "$W/$k.list" >"$W/$v.$k" 2>&1
		fi
		check '[ $? = 0 ]' "sign: $v verifies every signature of the $(wc -l <"$W/$k.list") outputs with $e ($(tail -1 "$W/$v.$k"))" \
			"$(grep -v pass "$W/$v.$k" | head -3)"
	done
done

# ------------------------------------------------------------- defer
echo "== defer: unaligned = defer"
conf "$W/deferonce.conf" "$W/deferonce" "unaligned = defer"
fill "$W/deferonce"
"$D" run -c "$W/deferonce.conf" --once --stats "$W/deferonce.json" >"$W/deferonce.sum" 2>"$W/deferonce.log"
rc=$?
echo "     $(cat "$W/deferonce.sum")"
check '[ "$rc" = 75 ]' "defer --once: exit 75 (messages left)" "exit $rc"
check '[ "$(count "$W/deferonce/in/new")" = 15 ] && [ "$(grep -l "news@wrong.example" "$W/deferonce/in/new"/m* | wc -l)" = 15 ]' \
	"defer --once: the 15 wrong.example messages back in in/new, unchanged" "$(count "$W/deferonce/in/new") in in/new"
check '[ "$(count "$W/deferonce/out/new")" = 45 ] && [ "$(count "$W/deferonce/failed")" = 0 ]' "defer --once: 45 published, none failed"
check 'grep -q "signed 32, esp-only 13, deferred 15, failed 0" "$W/deferonce.sum" && grep -q "; DMARC aligned 32, unaligned 28 (most: wrong.example)" "$W/deferonce.sum"' \
	"defer --once: summary deferred 15 and DMARC aligned 32, unaligned 28 (most: wrong.example)"
check '[ "$(jget "$W/deferonce.json" "(j[\"deferred\"], j[\"aligned\"], j[\"unaligned\"], j[\"align_domains\"][\"wrong.example\"][\"unaligned\"])")" = "(15, 32, 28, 5)" ]' \
	"defer --once: --stats deferred 15, aligned 32, unaligned 28 (wrong.example's series 5)"
check 'grep -q "deferred: no DMARC-aligned signature: From domain wrong.example, customer d=other.example (dmarc_alignment = relaxed, unaligned = defer)" "$W/deferonce.log"' \
	"defer --once: the log line names From domain, d= and the settings"
watch defer 45 0 15 "unaligned = defer"
# a retry (2 s later; before the scrape on a slow build, or between it and
# SIGTERM) is one more deferral and one more unaligned wrong.example
# message, in every report
if $PY - "$W/defer.prom" "$W/defer.json" "$W/defer.sum" >"$W/defer.cmp" <<'PY'
import json, re, sys
m = {}
for line in open(sys.argv[1]):
    if line and not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        m[k] = int(float(v))
j = json.load(open(sys.argv[2]))
s = open(sys.argv[3]).read()
dfr = m['dkimpress_messages_total{outcome="deferred"}']
early = dfr - 15                 # retries before the scrape (a slow build)
late = j["deferrals"] - dfr      # retries between the scrape and SIGTERM
wser = m['dkimpress_domain_dmarc_messages_total{domain="wrong.example",alignment="unaligned"}']
al = re.search(r"DMARC aligned (\d+), unaligned (\d+) \(most: (wrong\.example)\)", s)
want = [
    ("scrape: deferred 15 + early retries (>= 15)", dfr >= 15, True),
    ("scrape: aligned 32", m['dkimpress_dmarc_messages_total{alignment="aligned"}'], 32),
    ("scrape: unaligned 28 + early retries", m['dkimpress_dmarc_messages_total{alignment="unaligned"}'], 28 + early),
    # an early retry counts in the series once it exists (from the
    # domain's 10th message), in _other before
    ("scrape: wrong.example's series unaligned 5 (+ early retries)",
     5 <= wser <= 5 + early, True),
    ("scrape: wrong.example + _other unaligned = 5 + 23 + early retries",
     wser + m['dkimpress_domain_dmarc_messages_total{domain="_other",alignment="unaligned"}'],
     28 + early),
    ("JSON unaligned = scrape + retries after it", j["unaligned"], 28 + early + late),
    ("JSON wrong.example = scrape + retries after it",
     j["align_domains"]["wrong.example"]["unaligned"], wser + late),
    ("JSON aligned", j["aligned"], 32),
    ("summary = JSON", (int(al.group(1)), int(al.group(2)), al.group(3)),
     (j["aligned"], j["unaligned"], "wrong.example")),
    ("summary deferred 15 (messages waiting)", int(re.search(r"deferred (\d+)", s).group(1)), 15),
]
bad = [w for w in want if w[1] != w[2]]
for w in want:
    print("%s  %s: %s (want %s)" % ("DIFF" if w in bad else "same", w[0], w[1], w[2]))
sys.exit(1 if bad else 0)
PY
then ok "defer: /metrics, --stats and the summary agree (15 deferred, aligned 32, unaligned 28 + retries)"
else bad "defer: reports disagree"; cat "$W/defer.cmp"; fi

# -------------------------------------------------------------- fail
echo "== fail: unaligned = fail"
conf "$W/failonce.conf" "$W/failonce" "unaligned = fail"
fill "$W/failonce"
"$D" run -c "$W/failonce.conf" --once --stats "$W/failonce.json" >"$W/failonce.sum" 2>"$W/failonce.log"
rc=$?
echo "     $(cat "$W/failonce.sum")"
check '[ "$rc" = 65 ]' "fail --once: exit 65 (messages in failed/)" "exit $rc"
check '[ "$(count "$W/failonce/failed")" = 15 ] && [ "$(count "$W/failonce/out/new")" = 45 ] && [ "$(count "$W/failonce/in/new")" = 0 ]' \
	"fail --once: 15 in failed/, 45 published, in/new empty"
r=$(cat "$W/failonce/failed"/m*.reason 2>/dev/null | sort -u)
check '[ "$(echo "$r" | wc -l)" = 1 ] && echo "$r" | grep -q "no DMARC-aligned signature: From domain wrong.example, customer d=other.example (dmarc_alignment = relaxed, unaligned = fail)"' \
	"fail --once: every reason file names From domain, d= and the settings" "$r"
check 'grep -q "signed 32, esp-only 13, deferred 0, failed 15" "$W/failonce.sum" && grep -q "; DMARC aligned 32, unaligned 28 (most: wrong.example)" "$W/failonce.sum"' \
	"fail --once: summary failed 15, DMARC aligned 32, unaligned 28"
watch fail 45 15 0 "unaligned = fail"
check '[ "$(val "$W/fail.prom" "dkimpress_messages_total{outcome=\"failed\"}")" = 15 ] && [ "$(val "$W/fail.prom" "dkimpress_dmarc_messages_total{alignment=\"unaligned\"}")" = 28 ] && [ "$(val "$W/fail.prom" "dkimpress_domain_dmarc_messages_total{domain=\"wrong.example\",alignment=\"unaligned\"}")" = 5 ]' \
	"fail: /metrics failed 15, unaligned 28 (wrong.example's series 5)"
check '[ "$(jget "$W/fail.json" "(j[\"failed\"], j[\"aligned\"], j[\"unaligned\"], j[\"align_domains\"][\"wrong.example\"][\"unaligned\"])")" = "(15, 32, 28, 5)" ] && grep -q "failed 15 .*DMARC aligned 32, unaligned 28 (most: wrong.example)" "$W/fail.sum"' \
	"fail: --stats and the summary say the same"

# ------------------------------------------------------------ strict
echo "== strict: dmarc_alignment = strict, unaligned = fail"
conf "$W/strict.conf" "$W/strict" "dmarc_alignment = strict" "unaligned = fail"
fill "$W/strict"
"$D" run -c "$W/strict.conf" --once >"$W/strict.sum" 2>"$W/strict.log"
rc=$?
echo "     $(cat "$W/strict.sum")"
check '[ "$rc" = 65 ] && grep -q "signed 12, esp-only 13, deferred 0, failed 35" "$W/strict.sum" && grep -q "DMARC aligned 12, unaligned 48 (most: news.shop.co.uk, wrong.example)" "$W/strict.sum"' \
	"strict: news.shop.co.uk (d=shop.co.uk) fails too, brand.example still aligns"
check '[ "$(grep -l "From domain news.shop.co.uk, customer d=shop.co.uk (dmarc_alignment = strict" "$W/strict/failed"/m*.reason | wc -l)" = 20 ]' \
	"strict: 20 reason files for news.shop.co.uk"

# ------------------------------------------------------------- check
echo "== dkimpress check: a %org entry is checked under each organizational domain routed to it"
"$D" check -c "$W/sign.conf" --dns-file "$W/dns.txt" >"$W/check.out" 2>&1
rc=$?
check '[ "$rc" = 0 ] && grep -q "^ok *korg/%org org1._domainkey.shop.co.uk" "$W/check.out" && grep -q "^ok *korg/%org org1._domainkey.brand.example" "$W/check.out" && grep -q "^4 keys: 4 ok" "$W/check.out"' \
	"check: korg/%org ok for shop.co.uk (from *@*.shop.co.uk) and brand.example, co.uk left out; exit 0" "exit $rc: $(cat "$W/check.out")"

# ---------------------------------------------------- configuration
echo "== configuration errors"
conf "$W/bad.conf" "$W/bad" "unaligned = reject"
mkdir -p "$W/bad/in/new"
"$D" run -c "$W/bad.conf" --once >/dev/null 2>"$W/bad.log"
rc=$?
check '[ "$rc" = 78 ] && grep -q "unaligned: want sign, defer or fail" "$W/bad.log"' "unaligned = reject: exit 78 with the choices" "exit $rc: $(cat "$W/bad.log")"
conf "$W/bad2.conf" "$W/bad" "public_suffix_list = $W/nonexistent.dat"
"$D" run -c "$W/bad2.conf" --once >/dev/null 2>"$W/bad2.log"
rc=$?
check '[ "$rc" = 78 ] && grep -q "public_suffix_list = .*nonexistent.dat: cannot load it" "$W/bad2.log"' \
	"public_suffix_list naming a missing file: exit 78" "exit $rc: $(cat "$W/bad2.log")"
conf "$W/psl.conf" "$W/pslq" "public_suffix_list = /usr/share/publicsuffix/public_suffix_list.dat"
fill "$W/pslq"
"$D" run -c "$W/psl.conf" --once >"$W/psl.sum" 2>/dev/null
check 'grep -q "DMARC aligned 32, unaligned 28" "$W/psl.sum"' "public_suffix_list = Debian's .dat file: the same results" "$(cat "$W/psl.sum")"

echo "align: $pass passed, $fail failed"
[ "$fail" = 0 ]
