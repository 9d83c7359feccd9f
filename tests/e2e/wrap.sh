#!/bin/bash
# tests/e2e/wrap.sh — the pipe(8) command of tests/e2e's kill phase.
#
#   wrap.sh LOG QUEUE_ID RANDOM ANSWER -- DKIMPRESS enqueue ... -f SENDER ...
#
# Runs the enqueue command line after "--" (the one of docs/integration.md)
# with two changes:
#   - the envelope sender local@domain becomes local+TAG@domain, TAG =
#     QUEUE_ID.NUMBER, one per run of this wrapper: Postfix B's Return-Path
#     then tells which delivery attempt of Postfix A made each copy, so a
#     duplicate can be told apart: two TAGs = two enqueue runs (Postfix A
#     retried), one TAG twice = one queue file sent twice (the relay);
#   - RANDOM of 1000 runs are killed: enqueue gets kill -9 after 0-49 ms,
#     then this wrapper kills itself with -9 (pipe(8) sees "died with
#     signal 9" and defers: Postfix A tries again later), and ANSWER of
#     1000 runs let enqueue finish and then kill themselves with -9 (the
#     message is queued, Postfix never hears it: the lost answer).
# Each run appends "TAG QUEUE_ID RCPT MODE ENQUEUE_STATUS" to LOG before it
# ends (MODE normal, kill-random or kill-answer; status 137 = killed).
set -u
log=$1 qid=$2 p_random=$3 p_answer=$4
shift 4
[ "${1:-}" = -- ] && shift
tag=$qid.$SRANDOM
args=() rcpt=? prev=
for a in "$@"; do
	case $prev in
	-f) case $a in *@*) a=${a%@*}+$tag@${a##*@} ;; esac ;;
	-r) rcpt=$a ;;
	esac
	args+=("$a")
	prev=$a
done
r=$((SRANDOM % 1000))
if [ "$r" -lt "$p_random" ]; then
	"${args[@]}" <&0 &
	pid=$!
	sleep "0.0$(printf %02d $((SRANDOM % 50)))"
	kill -9 "$pid" 2>/dev/null
	wait "$pid"
	echo "$tag $qid $rcpt kill-random $?" >>"$log"
	kill -9 $$
elif [ "$r" -lt $((p_random + p_answer)) ]; then
	"${args[@]}"
	echo "$tag $qid $rcpt kill-answer $?" >>"$log"
	kill -9 $$
fi
"${args[@]}"
rc=$?
echo "$tag $qid $rcpt normal $rc" >>"$log"
exit $rc
