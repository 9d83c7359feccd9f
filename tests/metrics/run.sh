#!/usr/bin/env bash
# tests/metrics/run.sh — the Prometheus endpoint (metrics_listen) of
# `dkimpress run`, against the run's own summary.
#
#  live     an engine in watch mode with metrics_listen on a free loopback
#           port and metrics_domains = 10 (fewer for METRICS_N < 1280); METRICS_N (default 3000) varied
#           messages (tests/engine/gen_queue.py: 50 domains, 10 of them
#           without a key, 1 in 125 malformed) published into in/new in
#           six steps; /metrics scraped with curl between the steps (the
#           counters move, never go down, the queue gauge sees the
#           backlog) and once the queue is empty; one good and one broken
#           SIGHUP; then SIGTERM: every counter equals the summary line
#           and the --stats JSON exactly; promtool check metrics accepts
#           every scrape (no lint problem either).
#  shape    HELP and TYPE for every series, Content-Type
#           text/plain; version=0.0.4, the histogram cumulative with
#           _count = published, signatures = 2 per signed + 1 per
#           esp-only, per domain: exactly the bound + "_other" adding up
#           to the published total, the busiest (esp.example, 20%) among
#           them; 404 and 405 for other paths and methods.
#  errors   metrics_listen on a port another process holds: exit 71, a
#           clear error, the queue untouched; a malformed metrics_listen:
#           exit 78; off by default (no port opened).
# Ends with "metrics: N passed, N failed". Env: DKIMPRESS, METRICS_N; KEEP=1
# keeps the scratch directory.
set -u
export LC_ALL=C
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
D=$DKIMPRESS
N=${METRICS_N:-3000}
# the per-domain bound: 10, smaller for a small queue, so that the
# warm-up (64 messages per series, engine/stats.h) ends well before the
# queue does and every series gets its domain
BOUND=$((N / 128))
[ "$BOUND" -gt 10 ] && BOUND=10
[ "$BOUND" -lt 2 ] && BOUND=2
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if eval "$1"; then ok "$2"; else bad "$2${3:+: $3}"; fi; }
for tool in curl promtool; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "metrics: 0 passed, 0 failed"
		echo "skipped: $tool is not installed (tools/deps installs it)"
		exit 77
	fi
done
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-metrics.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

# a loopback port nobody listens on right now
free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# scrape OUT: GET /metrics into OUT (body) and OUT.h (headers)
scrape() {
	curl -sS --max-time 10 -D "$1.h" -o "$1" "http://127.0.0.1:$PORT/metrics"
}
# val FILE 'series{labels}': the value of one series line
val() {
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "MISSING" }' "$1"
}
# lint FILE: promtool check metrics prints nothing and exits 0
lint() {
	promtool check metrics <"$1" >"$1.lint" 2>&1 && [ ! -s "$1.lint" ]
}

echo "== keys: the ESP (RSA) and 40 customer domains (20 RSA, 20 Ed25519)"
mkdir -p "$W/keys"
"$D" keygen --domain esp.example --selector esp1 --out "$W/keys" >/dev/null 2>&1
: >"$W/KeyTable"
: >"$W/SigningTable"
for d in $(seq 1 40); do
	dom=$(printf 'd%02d.example' "$d")
	if [ "$d" -le 20 ]; then type=rsa; else type=ed25519; fi
	mkdir -p "$W/keys/$dom"
	"$D" keygen --domain "$dom" --selector "s$d" --type "$type" --out "$W/keys/$dom" >/dev/null 2>&1
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
		echo "threads = 2"
		for l in "$@"; do echo "$l"; done
	} >"$f"
}
$PY "$TOP/tests/interop/gen_corpus.py" "$W/tmpl" >/dev/null
# the messages are made in a staging queue and moved into the live one
$PY "$TOP/tests/engine/gen_queue.py" "$W/tmpl" "$W/stage" "$N" "$W/man"
mkdir -p "$W/q/in/new" "$W/q/in/tmp"
nfail=$(awk -F'\t' '$3 == "fail"' "$W/man" | wc -l)
nkey=$(awk -F'\t' '$3 == "ok" && $2 != "-"' "$W/man" | wc -l)
nesp=$((N - nfail - nkey))

# ------------------------------------------------------------------ live
echo "== live: $N messages in six steps, scraped between them"
PORT=$(free_port)
conf "$W/live.conf" "$W/q" "metrics_listen = 127.0.0.1:$PORT" "metrics_domains = $BOUND"
"$D" run -c "$W/live.conf" --stats "$W/live.json" >"$W/live.sum" 2>"$W/live.log" &
ENG=$!
PIDS+=("$ENG")
up=0
for _ in $(seq 1 100); do
	if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/metrics"; then up=1; break; fi
	sleep 0.1
done
check '[ "$up" = 1 ]' "the endpoint answers while the engine runs" "$(tail -3 "$W/live.log")"
ls "$W/stage/in/new" | sort >"$W/ids"
split -n l/6 -d "$W/ids" "$W/chunk."
step=0 monotone=1 midrun=0 sawbacklog=0 lintbad=0 prev=0
for c in "$W"/chunk.*; do
	step=$((step + 1))
	# rename(2) each, as a producer publishes (mv(1) may stat the target
	# after the rename and complain when the engine already claimed it)
	$PY -c 'import os, sys
src, dst = sys.argv[1], sys.argv[2]
for qid in open(sys.argv[3]).read().split():
    os.rename(os.path.join(src, qid), os.path.join(dst, qid))' "$W/stage/in/new" "$W/q/in/new" "$c"
	scrape "$W/s$step"
	lint "$W/s$step" || { lintbad=1; cat "$W/s$step.lint"; }
	w=$(val "$W/s$step" dkimpress_queue_waiting_messages)
	done_now=$(( $(val "$W/s$step" 'dkimpress_messages_total{outcome="signed"}') +
		     $(val "$W/s$step" 'dkimpress_messages_total{outcome="esp_only"}') +
		     $(val "$W/s$step" 'dkimpress_messages_total{outcome="failed"}') ))
	[ "$done_now" -ge "$prev" ] || monotone=0
	[ "$done_now" -gt 0 ] && [ "$done_now" -lt "$N" ] && midrun=1
	[ "$w" != MISSING ] && [ "$w" -gt 0 ] && sawbacklog=1
	echo "   step $step: done $done_now, waiting in in/new $w"
	prev=$done_now
	sleep 0.3
done
# wait for the queue to drain: everything done, in/new empty (a slow
# build, e.g. ThreadSanitizer, may do its first batch only now)
drained=0
for _ in $(seq 1 600); do
	scrape "$W/final"
	d=$(( $(val "$W/final" 'dkimpress_messages_total{outcome="signed"}') +
	      $(val "$W/final" 'dkimpress_messages_total{outcome="esp_only"}') +
	      $(val "$W/final" 'dkimpress_messages_total{outcome="failed"}') ))
	[ "$d" -ge "$prev" ] || monotone=0
	[ "$d" -gt 0 ] && [ "$d" -lt "$N" ] && midrun=1
	prev=$d
	if [ "$d" = "$N" ] && [ "$(val "$W/final" dkimpress_queue_waiting_messages)" = 0 ]; then
		drained=1
		break
	fi
	lint "$W/final" || { lintbad=1; cat "$W/final.lint"; }
	sleep 0.2
done
check '[ "$midrun" = 1 ]' "a scrape during the run saw some messages done and some not"
check '[ "$monotone" = 1 ]' "the done count never goes down between scrapes"
check '[ "$sawbacklog" = 1 ]' "dkimpress_queue_waiting_messages saw the backlog in in/new"
check '[ "$lintbad" = 0 ]' "promtool check metrics accepts every scrape during the run (no lint output)"
check '[ "$drained" = 1 ]' "the queue drains: $N done, in/new empty (seen on /metrics)"
# one good reload, one broken
kill -HUP "$ENG"
for _ in $(seq 1 50); do grep -q "reloaded" "$W/live.log" && break; sleep 0.1; done
cp "$W/live.conf" "$W/live.conf.good"
echo "threads = many" >>"$W/live.conf"
kill -HUP "$ENG"
for _ in $(seq 1 50); do grep -q "reload failed" "$W/live.log" && break; sleep 0.1; done
scrape "$W/final"
check '[ "$(val "$W/final" dkimpress_reloads_total)" = 1 ] && [ "$(val "$W/final" dkimpress_reload_failures_total)" = 1 ]' \
	"dkimpress_reloads_total 1 and dkimpress_reload_failures_total 1 after a good and a broken SIGHUP"
check 'lint "$W/final"' "promtool check metrics accepts the final scrape" "$(head -3 "$W/final.lint" 2>/dev/null)"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$W/final.h"
check '[ $? = 0 ]' "Content-Type: text/plain; version=0.0.4" "$(grep -i content-type "$W/final.h")"
kill -TERM "$ENG"
wait "$ENG"
rc=$?
PIDS=()
check '[ "$rc" = 0 ]' "SIGTERM: exit 0" "exit $rc"
cat "$W/live.sum"

# every counter against the summary line and the --stats JSON
if $PY - "$W/final" "$W/live.json" "$W/live.sum" "$N" "$nkey" "$nesp" "$nfail" "$BOUND" "$W/q/out/new" >"$W/cmp" <<'PY'
import json, os, re, sys
mfile, jfile, sfile = sys.argv[1:4]
n, nkey, nesp, nfail, bound = map(int, sys.argv[4:9])
# what was published, read from the files themselves: a= of every
# DKIM-Signature, and the topmost one's d= (lowercased) per message
pub_alg, pub_top = {}, {}
for f in os.listdir(sys.argv[9]):
    data = open(os.path.join(sys.argv[9], f), "rb").read().replace(b"\r\n", b"\n")
    head = re.sub(rb"\n[ \t]", b" ", data.split(b"\n\n", 1)[0]).decode("ascii", "replace")
    top = None
    for line in head.split("\n"):
        if not line.lower().startswith("dkim-signature:"):
            continue
        tags = dict(t.strip().split("=", 1) for t in line.split(":", 1)[1].split(";") if "=" in t)
        a = re.sub(r"\s", "", tags.get("a", ""))
        pub_alg[a] = pub_alg.get(a, 0) + 1
        if top is None:
            top = re.sub(r"\s", "", tags.get("d", "")).lower()
    if top is not None:
        pub_top[top] = pub_top.get(top, 0) + 1
m = {}
helps, types, order = set(), {}, []
for line in open(mfile):
    line = line.rstrip("\n")
    if line.startswith("# HELP "):
        helps.add(line.split()[2])
    elif line.startswith("# TYPE "):
        types[line.split()[2]] = line.split()[3]
    elif line:
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
        order.append(k)
js = json.load(open(jfile))
summ = open(sfile).read()
sm = re.search(r"signed (\d+), esp-only (\d+), deferred (\d+), failed (\d+)", summ)
bad = []
def eq(what, got, want):
    if got != want:
        bad.append("%s: metrics %s, want %s" % (what, got, want))
    else:
        print("same  %-40s %s" % (what, got))
o = lambda x: m.get('dkimpress_messages_total{outcome="%s"}' % x, -1)
eq("signed = summary", o("signed"), int(sm.group(1)))
eq("esp_only = summary", o("esp_only"), int(sm.group(2)))
eq("failed = summary", o("failed"), int(sm.group(4)))
eq("deferred gauge = summary deferred", m.get("dkimpress_deferred_messages"), int(sm.group(3)))
eq("signed = JSON", o("signed"), js["signed"])
eq("esp_only = JSON", o("esp_only"), js["esp_only"])
eq("failed = JSON", o("failed"), js["failed"])
eq("deferred (every deferral) = JSON deferrals", o("deferred"), js["deferrals"])
eq("deferred gauge = JSON deferred", m.get("dkimpress_deferred_messages"), js["deferred"])
eq("renamed = JSON", m.get("dkimpress_renamed_messages_total"), js["renamed"])
eq("input bytes = JSON bytes", m.get("dkimpress_input_bytes_total"), js["bytes"])
eq("output bytes = JSON bytes_out", m.get("dkimpress_output_bytes_total"), js["bytes_out"])
rsa = m.get('dkimpress_signatures_total{alg="rsa-sha256"}')
ed = m.get('dkimpress_signatures_total{alg="ed25519-sha256"}')
eq("rsa-sha256 signatures = JSON", rsa, js["sig_rsa_sha256"])
eq("ed25519-sha256 signatures = JSON", ed, js["sig_ed25519_sha256"])
eq("reloads = JSON", m.get("dkimpress_reloads_total"), js["reloads"])
eq("reload failures = JSON", m.get("dkimpress_reload_failures_total"), js["reload_failures"])
# what the queue held
eq("signed = messages with a customer key", o("signed"), nkey)
eq("esp_only = messages without one", o("esp_only"), nesp)
eq("failed = malformed messages", o("failed"), nfail)
eq("signatures = 2 per signed + 1 per esp-only", rsa + ed, 2 * nkey + nesp)
eq("rsa-sha256 signatures = a=rsa-sha256 in out/new", rsa, pub_alg.get("rsa-sha256", 0))
eq("ed25519-sha256 signatures = a=ed25519-sha256 in out/new", ed, pub_alg.get("ed25519-sha256", 0))
pub = o("signed") + o("esp_only")
# the histogram
h = "dkimpress_publish_latency_seconds"
eq("histogram _count = published", m.get(h + "_count"), pub)
eq('histogram le="+Inf" = _count', m.get(h + '_bucket{le="+Inf"}'), m.get(h + "_count"))
bk = [m[k] for k in order if k.startswith(h + "_bucket")]
eq("histogram buckets cumulative", bk == sorted(bk), True)
eq("histogram _sum > 0", m.get(h + "_sum", 0) > 0, True)
# per domain
dm = {k: v for k, v in m.items() if k.startswith("dkimpress_domain_messages_total{")}
db = {k: v for k, v in m.items() if k.startswith("dkimpress_domain_input_bytes_total{")}
named = [k for k in dm if 'domain="_other"' not in k]
eq("per-domain series: the bound (%d) + _other" % bound, (len(named), 'dkimpress_domain_messages_total{domain="_other"}' in dm), (bound, True))
eq("per-domain messages add up to published", sum(dm.values()), pub)
eq("per-domain bytes add up to input bytes", sum(db.values()), m.get("dkimpress_input_bytes_total"))
eq("the busiest domain (esp.example, the esp-only 20%) has a series",
   'dkimpress_domain_messages_total{domain="esp.example"}' in dm, True)
# a series counts from its promotion: never more than out/new's topmost d=
over = [k for k in named if dm[k] > pub_top.get(re.search(r'domain="([^"]*)"', k).group(1), 0)]
eq("each domain's series <= the messages in out/new whose topmost d= it is", over, [])
# DMARC alignment (conf/align.h): every published message was checked
# (the malformed ones fail before), the JSON says the same, and the
# per-From-domain family adds up to the totals
al = m.get('dkimpress_dmarc_messages_total{alignment="aligned"}', -1)
un = m.get('dkimpress_dmarc_messages_total{alignment="unaligned"}', -1)
eq("dmarc aligned = JSON", al, js["aligned"])
eq("dmarc unaligned = JSON", un, js["unaligned"])
eq("dmarc aligned + unaligned = published", al + un, pub)
ad = {k: v for k, v in m.items() if k.startswith("dkimpress_domain_dmarc_messages_total{")}
eq("per-domain dmarc aligned adds up", sum(v for k, v in ad.items() if 'alignment="aligned"' in k), al)
eq("per-domain dmarc unaligned adds up", sum(v for k, v in ad.items() if 'alignment="unaligned"' in k), un)
eq("per-domain dmarc series: at most the bound + _other",
   len({k.split(",")[0] for k in ad}) <= bound + 1, True)
# key cache
eq("key cache: 40 keys loaded, none failed",
   (m.get("dkimpress_keycache_loads_total") >= 40, m.get("dkimpress_keycache_load_failures_total")), (True, 0))
eq("key cache: a lookup per signed message (hits + misses >= signed)",
   m.get("dkimpress_keycache_hits_total") + m.get("dkimpress_keycache_misses_total") >= o("signed"), True)
# HELP and TYPE for every family
fams = set(re.sub(r"(_bucket|_sum|_count)$", "", k.split("{")[0]) if k.split("{")[0].startswith(h) else k.split("{")[0] for k in m)
eq("HELP and TYPE for every family", sorted(f for f in fams if f not in helps or f not in types), [])
eq("build_info with the version", any(k.startswith('dkimpress_build_info{version="') for k in m), True)
eq("start time and uptime", ("dkimpress_start_time_seconds" in m, m.get("dkimpress_uptime_seconds", 0) > 0), (True, True))
for b in bad:
    print("DIFF  " + b)
print("compare: %d differences" % len(bad))
sys.exit(1 if bad else 0)
PY
then ok "every counter equals the summary line and the --stats JSON ($(tail -1 "$W/cmp"))"
else bad "counters against the summary: $(grep -c DIFF "$W/cmp") differences"; grep DIFF "$W/cmp"; fi
grep -E '^same' "$W/cmp" | sed 's/^/     /'

# ------------------------------------------------------------------ http
echo "== http: other paths and methods"
PORT=$(free_port)
mkdir -p "$W/q2/in/new"
conf "$W/h.conf" "$W/q2" "metrics_listen = 127.0.0.1:$PORT"
"$D" run -c "$W/h.conf" >/dev/null 2>"$W/h.log" &
ENG=$!
PIDS+=("$ENG")
for _ in $(seq 1 100); do
	curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/metrics" && break
	sleep 0.1
done
code404=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nope")
code405=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x "http://127.0.0.1:$PORT/metrics")
codehead=$(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$PORT/metrics")
check '[ "$code404" = 404 ] && [ "$code405" = 405 ] && [ "$codehead" = 200 ]' \
	"GET /nope 404, POST /metrics 405, HEAD /metrics 200" "$code404 $code405 $codehead"
# a domain-less engine (no traffic): the per-domain family has only _other
scrape "$W/idle"
check '[ "$(grep -c "^dkimpress_domain_messages_total{" "$W/idle")" = 1 ] && [ "$(val "$W/idle" "dkimpress_domain_messages_total{domain=\"_other\"}")" = 0 ]' \
	"an idle engine: one per-domain series, _other 0"
check 'lint "$W/idle"' "promtool check metrics accepts an idle engine's scrape"

# ---------------------------------------------------------------- errors
echo "== errors: a busy port, a malformed address, off by default"
mkdir -p "$W/q3/in/new"
printf 'From: a@d01.example\r\nSubject: x\r\n\r\nbody\r\n' >"$W/q3/in/new/m1"
conf "$W/busy.conf" "$W/q3" "metrics_listen = 127.0.0.1:$PORT"
rc=0
timeout 20 "$D" run -c "$W/busy.conf" --once >"$W/busy.out" 2>"$W/busy.log" || rc=$?
check '[ "$rc" = 71 ]' "metrics_listen on a port already in use: exit 71 (EX_OSERR)" "exit $rc"
check 'grep -q "metrics_listen = 127.0.0.1:$PORT: cannot listen there: Address already in use" "$W/busy.log"' \
	"... with a clear error" "$(head -2 "$W/busy.log")"
check '[ -f "$W/q3/in/new/m1" ] && [ -z "$(ls "$W/q3/out/new" 2>/dev/null)" ]' "... and the message stays queued, nothing published"
kill -TERM "$ENG"
wait "$ENG"
PIDS=()
conf "$W/badaddr.conf" "$W/q3" "metrics_listen = localhost"
rc=0
"$D" run -c "$W/badaddr.conf" --once >/dev/null 2>"$W/badaddr.log" || rc=$?
check '[ "$rc" = 78 ] && grep -q "metrics_listen: want HOST:PORT" "$W/badaddr.log"' \
	"metrics_listen = localhost (no port): exit 78, says HOST:PORT" "exit $rc: $(head -1 "$W/badaddr.log")"
conf "$W/off.conf" "$W/q3"
rc=0
"$D" run -c "$W/off.conf" --once >/dev/null 2>"$W/off.log" || rc=$?
check '[ "$rc" = 0 ] && ! grep -q "metrics:" "$W/off.log"' "without metrics_listen: no endpoint, the run works (exit 0)" "exit $rc"

echo "metrics: $pass passed, $fail failed"
[ "$fail" = 0 ]
