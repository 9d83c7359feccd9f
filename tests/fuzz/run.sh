#!/usr/bin/env bash
# tests/fuzz/run.sh — run libFuzzer targets built by `make fuzz`.
#
#   tests/fuzz/run.sh NAME...      (NAME: msg_parse for fuzz_msg_parse)
#
# Each target runs FUZZ_SECONDS (default 60) on a fresh copy of its seeds,
# tests/fuzz/corpus/NAME -> $FUZZ_BUILD/work/NAME, so the repository is
# never written to; new inputs stay in the copy. Up to FUZZ_JOBS targets
# (default 2) run at once, one process each. A crash, leak, timeout or
# out-of-memory input is saved under $FUZZ_BUILD/crashes/NAME/ and the
# target's log under $FUZZ_BUILD/logs/NAME.log.
#
# One line per target, then one closing line:
#   fuzz: 6 targets, 12345678 executions, 0 crashes
# Exit 0 only when no target crashed (or failed to start).
#
# Reproduce a saved crash:  $FUZZ_BUILD/bin/fuzz_NAME FILE
#
# FUZZ_TIMEOUT: seconds one input may take (default 10; libFuzzer counts
# wall time, so make fuzz-long, under nice -n 19 on a busy machine, uses
# 120: starved of CPU, a 10 ms input once "took" 13 s).
# FUZZ_KEEP=1 (make fuzz-long): the work copy is kept and grown across
# runs (seeds are added, nothing is removed), and each target's line also
# gives its wall and CPU seconds (the fuzzer's user + system time, from
# wait) and the corpus size at the end.
set -u

B=${FUZZ_BUILD:-build/fuzz}
O=${FUZZ_OUT:-$B}	# work/, crashes/, logs/ (make fuzz-long: $B/long)
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
SEEDS=$HERE/corpus
DICTS=$HERE/dict

if [ $# -eq 0 ]; then
	echo "usage: $0 NAME..." >&2
	exit 64
fi
case "$SECS" in '' | *[!0-9]*) echo "FUZZ_SECONDS must be a number" >&2; exit 64 ;; esac
case "$JOBS" in '' | *[!0-9]* | 0) JOBS=1 ;; esac

mkdir -p "$O/work" "$O/crashes" "$O/logs"

# run_one NAME: fuzz, then write "EXECS RC SECONDS FILES KB CPU" to
# $O/logs/NAME.result
run_one() {
	local name=$1 bin=$B/bin/fuzz_$1 work=$O/work/$1 out=$O/crashes/$1
	local log=$O/logs/$1.log dict=() rc execs t0 files cpu

	[ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$work"
	mkdir -p "$work" "$out"
	if [ -d "$SEEDS/$name" ]; then
		cp -R "$SEEDS/$name/." "$work/"
	fi
	if [ -f "$DICTS/$name.dict" ]; then
		dict=("-dict=$DICTS/$name.dict")
	fi
	touch "$O/logs/$name.start"	# crashes newer than this are this run's
	t0=$(date +%s)
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
		"$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-10}" \
		-print_final_stats=1 -artifact_prefix="$out/" "${dict[@]}" \
		"$work" >"$log" 2>&1 </dev/null
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	if [ -z "$execs" ]; then
		# no final stats (killed hard): the last "#N" status line
		execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
	fi
	# the CPU seconds (user + system) of the children this subshell
	# waited for, the fuzzer and the commands above: `times` in this
	# shell (in a command substitution it would count that one's)
	times >"$O/logs/$name.times"
	cpu=$(sed -n 2p "$O/logs/$name.times" |
		awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%.0f", n }')
	files=$(find "$work" -type f | wc -l)
	echo "${execs:-0} $rc $(($(date +%s) - t0)) $files $(du -sk "$work" | cut -f1) ${cpu:-0}" \
		>"$O/logs/$name.result"
}

for name in "$@"; do
	if [ ! -x "$B/bin/fuzz_$name" ]; then
		echo "0 127 0 0 0" >"$O/logs/$name.result"
		echo "no such target: $B/bin/fuzz_$name" >"$O/logs/$name.log"
		continue
	fi
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n 2>/dev/null || true
	done
	run_one "$name" &
done
wait

total=0 crashes=0 n=0
for name in "$@"; do
	n=$((n + 1))
	read -r execs rc secs files kb cpu <"$O/logs/$name.result"
	stats=""
	[ "${FUZZ_KEEP:-0}" = 1 ] &&
		stats=" in $secs s, ${cpu:-?} CPU s (corpus: $files files, $kb KB)"
	total=$((total + execs))
	# slow-unit-*: an input that took over 10 s (libFuzzer keeps it and
	# goes on); on a busy machine a starved process is slow, not wrong
	found=$(find "$O/crashes/$name" -type f -newer "$O/logs/$name.start" \
		! -name 'slow-unit-*' 2>/dev/null | sort)
	if [ "$rc" != 0 ] || [ -n "$found" ]; then
		crashes=$((crashes + 1))
		echo "$name: $execs executions$stats, CRASH (exit $rc); log $O/logs/$name.log"
		grep -m 3 -E '^(fuzz: check failed|==[0-9]+==ERROR|SUMMARY:|.*runtime error:)' \
			"$O/logs/$name.log" | sed 's/^/    /'
		for f in $found; do
			echo "    reproduce: $B/bin/fuzz_$name $f"
		done
	else
		echo "$name: $execs executions$stats, no crash"
	fi
done
echo "fuzz: $n targets, $total executions, $crashes crashes"
[ "$crashes" = 0 ]
