#!/usr/bin/env bash
# tests/policy/odkim_compat.sh — the SigningTable read as the OpenDKIM 2.11
# milter reads it: the same KeyTable/SigningTable files (plain and refile,
# overlapping lines, a '%' key, local@* and * entries) through Debian's
# opendkim (MultipleSignatures yes and no, run privately on a free
# loopback port, driven over its milter socket by milter_client.py) and
# through `dkimpress run --once` (multiple_signatures yes and no) must
# give the same set of customer d=/s= pairs for every message
# (odkim_compat.py). Exit 77 when opendkim is not installed (tools/deps
# installs it without starting its service).
# Ends with "policy-opendkim: N passed, N failed".
set -u
BUILD=${BUILD:-build}
DKIMPRESS=${DKIMPRESS:-$BUILD/dkimpress}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /usr/sbin/opendkim ]; then
	echo "policy-opendkim: cannot run: /usr/sbin/opendkim is missing (Debian package opendkim; tools/deps)"
	exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-odkim.XXXXXX")
trap 'rm -rf "$W"' EXIT
chmod 755 "$W"
for s in c1 c2 c3 c5 u1 p1 esp; do
	"$DKIMPRESS" keygen --domain k.example --selector "$s" --bits 1024 --out "$W" >/dev/null 2>&1 ||
		{ echo "keygen failed"; echo "policy-opendkim: 0 passed, 1 failed"; exit 1; }
done
/usr/bin/python3 "$HERE/odkim_compat.py" "$DKIMPRESS" "$W"
