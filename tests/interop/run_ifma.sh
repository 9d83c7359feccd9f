#!/usr/bin/env bash
# tests/interop/run_ifma.sh — the interop suite with every RSA-2048
# signature of steps c, d and g made by the 8-lane AVX-512 IFMA path
# (dkimpress sign --rsa-backend ifma), so that dkimpy, Mail::DKIM,
# libopendkim and mailauth check its output too. Exits 77 on a CPU without
# AVX-512 IFMA (sign refuses the backend there with 64).
set -u
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-ifma.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$DKIMPRESS" keygen --domain a.example --selector s --type rsa --out "$W" >/dev/null 2>&1
printf 'From: a@a.example\r\nSubject: probe\r\n\r\nprobe\r\n' >"$W/m"
if ! "$DKIMPRESS" sign --rsa-backend ifma --key "a.example:s:$W/s.private" "$W/m" >/dev/null 2>"$W/err"; then
	if grep -q "lacks AVX-512" "$W/err"; then
		echo "interop-ifma: cannot run: this CPU has no AVX-512 IFMA ($(head -c 200 "$W/err"))"
		exit 77
	fi
	echo "interop-ifma: sign --rsa-backend ifma failed: $(head -c 300 "$W/err")"
	echo "interop-ifma: 0 passed, 1 failed"
	exit 1
fi
echo "interop-ifma: RSA-2048 signatures by the 8-lane path (--rsa-backend ifma)"
INTEROP_RSA_BACKEND=ifma exec "$HERE/run.sh"
