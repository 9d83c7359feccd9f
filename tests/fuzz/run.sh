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
set -u

B=${FUZZ_BUILD:-build/fuzz}
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

mkdir -p "$B/work" "$B/crashes" "$B/logs"

# run_one NAME: fuzz, then write "EXECS RC" to $B/logs/NAME.result
run_one() {
	local name=$1 bin=$B/bin/fuzz_$1 work=$B/work/$1 out=$B/crashes/$1
	local log=$B/logs/$1.log dict=() rc execs

	rm -rf "$work"
	mkdir -p "$work" "$out"
	if [ -d "$SEEDS/$name" ]; then
		cp -R "$SEEDS/$name/." "$work/"
	fi
	if [ -f "$DICTS/$name.dict" ]; then
		dict=("-dict=$DICTS/$name.dict")
	fi
	touch "$B/logs/$name.start"	# crashes newer than this are this run's
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
		"$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$out/" "${dict[@]}" \
		"$work" >"$log" 2>&1 </dev/null
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	if [ -z "$execs" ]; then
		# no final stats (killed hard): the last "#N" status line
		execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
	fi
	echo "${execs:-0} $rc" >"$B/logs/$name.result"
}

for name in "$@"; do
	if [ ! -x "$B/bin/fuzz_$name" ]; then
		echo "0 127" >"$B/logs/$name.result"
		echo "no such target: $B/bin/fuzz_$name" >"$B/logs/$name.log"
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
	read -r execs rc <"$B/logs/$name.result"
	total=$((total + execs))
	found=$(find "$B/crashes/$name" -type f -newer "$B/logs/$name.start" \
		2>/dev/null | sort)
	if [ "$rc" != 0 ] || [ -n "$found" ]; then
		crashes=$((crashes + 1))
		echo "$name: $execs executions, CRASH (exit $rc); log $B/logs/$name.log"
		grep -m 3 -E '^(fuzz: check failed|==[0-9]+==ERROR|SUMMARY:|.*runtime error:)' \
			"$B/logs/$name.log" | sed 's/^/    /'
		for f in $found; do
			echo "    reproduce: $B/bin/fuzz_$name $f"
		done
	else
		echo "$name: $execs executions, no crash"
	fi
done
echo "fuzz: $n targets, $total executions, $crashes crashes"
[ "$crashes" = 0 ]
