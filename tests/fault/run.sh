#!/usr/bin/env bash
# tests/fault/run.sh — fault injection at every I/O step of the queue
# protocol (docs/queue.md): the Nth call of each kind of operation fails
# with EIO, ENOSPC or EINTR, for every N of a small run, and after each the
# engine is restarted and the queue checked (no message lost, duplicated,
# published partial or stuck; failures have reasons; dkimpy verifies a
# sample of the outputs). tests/fault/sweep.py has the details.
#
#   tests/fault/run.sh                     the whole sweep (a few minutes)
#   tests/fault/run.sh MODE:KIND:ERRNO:N   one point, e.g. sys:rename:EIO:12
#                                          (FAULT_KEEP=1 keeps its queue)
#
# How the faults are made: tests/fault/inject.c, an LD_PRELOAD shim over
# libc (open, read, write, fsync of files and of directories, syncfs,
# rename, unlink, link, mkdir); io_uring completions, which no shim can
# see, through the engine's DKP_FAULT_URING test hook (src/transport/uring.c).
# Mode "sys" runs with io = syscalls (every step is a libc call), mode
# "uring" with io = uring and flush = files.
#
# Ends with "fault: N passed, N failed"; exit 0 only if all passed, 77 when
# it cannot run (no python3-dkim, no compiler for the shim, LD_PRELOAD not
# honoured). Env: DKIMPRESS_TEST (default build/dkimpress-test, the test
# build that has the DKP_FAULT_URING hook; see the Makefile), BUILD (for the shim,
# $BUILD/tests/fault_inject.so, made by `make`; compiled here if missing),
# FAULT_JOBS, FAULT_MODES, FAULT_KINDS, FAULT_ERRNOS, FAULT_MAX_N,
# FAULT_KEEP, FAULT_OUT (see sweep.py).
set -u
export LC_ALL=C
BUILD=${BUILD:-build}
# the test build: build/dkimpress has no fault hooks (tests/hooks)
DKIMPRESS=${DKIMPRESS_TEST:-$BUILD/dkimpress-test}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3

skip() { echo "fault: cannot run: $*"; exit 77; }
[ -x "$DKIMPRESS" ] || skip "$DKIMPRESS is not an executable (build it first)"
[ -x "$PY" ] || skip "$PY is missing"
"$PY" -c 'import dkim' 2>/dev/null || skip "python3-dkim (dkimpy) is not installed"

W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-faultrun.XXXXXX")
trap 'rm -rf "$W"' EXIT
trap 'exit 130' INT TERM HUP

# a private copy of the binary: a rebuild meanwhile must not disturb the run
cp "$DKIMPRESS" "$W/dkimpress" || skip "cannot copy $DKIMPRESS"

# the shim: the one make built, or compiled here
SHIM=$TOP/$BUILD/tests/fault_inject.so
case $BUILD in /*) SHIM=$BUILD/tests/fault_inject.so ;; esac
if [ ! -f "$SHIM" ] || [ "$HERE/inject.c" -nt "$SHIM" ]; then
	SHIM=$W/inject.so
	${CC:-cc} -std=gnu11 -O2 -g -Wall -Wextra -fPIC -shared -o "$SHIM" "$HERE/inject.c" \
		-ldl -lpthread 2>"$W/cc.err" || skip "cannot compile the shim: $(head -3 "$W/cc.err")"
fi
cp "$SHIM" "$W/inject.so" 2>/dev/null
SHIM=$W/inject.so

# an AddressSanitizer build must accept a preloaded library before its runtime
if nm -D "$W/dkimpress" 2>/dev/null | grep -q __asan_init; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
	# several times slower: one errno unless asked otherwise
	export FAULT_ERRNOS=${FAULT_ERRNOS:-EIO}
fi

# does the shim see the engine's calls?
LD_PRELOAD=$SHIM FAULT_COUNT=$W/count "$W/dkimpress" keygen --domain x.example \
	--selector s --type ed25519 --out "$W" >/dev/null 2>&1
grep -qE '^open [1-9]' "$W/count" 2>/dev/null || skip "LD_PRELOAD is not honoured here (the shim saw no call)"
rm -f "$W/count" "$W/s.private" "$W/s.txt"

# the io_uring hook is in the engine, or that kind is left out
if ! grep -qa DKP_FAULT_URING "$W/dkimpress"; then
	echo "note: $DKIMPRESS has no DKP_FAULT_URING hook: io_uring completions are not failed"
	export FAULT_KINDS=${FAULT_KINDS:-open read write fsync dirsync syncfs rename unlink link mkdir}
fi

"$PY" "$HERE/sweep.py" "$W/dkimpress" "$SHIM" "$@"
