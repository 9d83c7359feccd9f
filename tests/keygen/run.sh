#!/usr/bin/env bash
# tests/keygen/run.sh — `dkimpress keygen --selector` with a strftime
# pattern (a selector scheme, docs/operations.md "Rotating a key").
#
#  - UE%Y%m at --time 1796083200 (2026-12-01 00:00 UTC) makes
#    UE202612.private (mode 0600) and UE202612.txt, whose zone-file record
#    is UE202612._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; p=..." ), the
#    same p= as the --dns-file line printed, and the public half of the
#    private key (openssl);
#  - the time is UTC: 2026-12-31 23:30 UTC gives UE202612 whatever TZ says;
#  - without --time the pattern takes now (date -u);
#  - other conversions (%Y-%m-%d, %d), Ed25519;
#  - a selector without '%' is taken as given;
#  - an expansion that is no selector (x%H:%M, %Q, over 63 characters):
#    exit 64, nothing written;
#  - a message signed with the new key verifies with dkimpy and libopendkim
#    against the printed record.
# Ends with "keygen: N passed, N failed". Env: DKIMPRESS, ODKIM_VERIFY.
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
W=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-keygen.XXXXXX")
trap 'rm -rf "$W"' EXIT

echo "== UE%Y%m at 2026-12-01 00:00 UTC"
mkdir -p "$W/k"
"$D" keygen --domain shop.example --selector 'UE%Y%m' --time 1796083200 --out "$W/k" >"$W/line" 2>"$W/err"
rc=$?
check '[ "$rc" = 0 ] && [ "$(ls "$W/k")" = "$(printf "UE202612.private\nUE202612.txt")" ]' \
	"files UE202612.private and UE202612.txt, nothing else" "exit $rc: $(ls "$W/k") $(cat "$W/err")"
check '[ "$(stat -c %a "$W/k/UE202612.private")" = 600 ]' "the private key has mode 0600"
check 'head -1 "$W/k/UE202612.txt" | grep -q "^UE202612\._domainkey\.shop\.example\.	IN	TXT	( \"v=DKIM1; k=rsa; p=MII"' \
	"UE202612.txt: UE202612._domainkey.shop.example. IN TXT ( \"v=DKIM1; k=rsa; p=...\" )" "$(head -c 120 "$W/k/UE202612.txt")"
check 'grep -q "^UE202612\._domainkey\.shop\.example	v=DKIM1; k=rsa; p=" "$W/line"' \
	"the --dns-file line: UE202612._domainkey.shop.example<TAB>v=DKIM1; k=rsa; p=..."
# the zone file's strings joined, the printed line's record, the key's own public half
zone=$(tr -d '\n' <"$W/k/UE202612.txt" | grep -o '"[^"]*"' | tr -d '"' | tr -d '\n')
printed=$(cut -f2- "$W/line")
pub=$(openssl pkey -in "$W/k/UE202612.private" -pubout 2>/dev/null | grep -v '^-----' | tr -d '\n')
check '[ -n "$pub" ] && [ "$zone" = "$printed" ] && [ "$printed" = "v=DKIM1; k=rsa; p=$pub" ]' \
	"zone-file record = printed record = v=DKIM1; k=rsa; p=<the private key's public half>"

echo "== UTC, now, other conversions"
TZ=Pacific/Kiritimati "$D" keygen --domain shop.example --selector 'UE%Y%m' --time 1798759800 --out "$W/k" >/dev/null 2>&1
check '[ "$(TZ=Pacific/Kiritimati date -d @1798759800 +%Y%m)" = 202701 ] && [ -f "$W/k/UE202612.private" ] && [ ! -e "$W/k/UE202701.private" ] && grep -q "already exists" <("$D" keygen --domain shop.example --selector "UE%Y%m" --time 1798759800 --out "$W/k" 2>&1)' \
	"2026-12-31 23:30 UTC (already 2027 in TZ=Pacific/Kiritimati) is still UE202612: refused, it exists"
mkdir -p "$W/now"
before=$(date -u +UE%Y%m)
"$D" keygen --domain shop.example --selector 'UE%Y%m' --out "$W/now" >/dev/null 2>&1
after=$(date -u +UE%Y%m)
check '[ -f "$W/now/$before.private" ] || [ -f "$W/now/$after.private" ]' "without --time: the current month in UTC ($before)" "$(ls "$W/now")"
mkdir -p "$W/o"
"$D" keygen --domain shop.example --selector 's%Y-%m-%d' --time 1796083200 --type ed25519 --out "$W/o" >"$W/line2" 2>/dev/null
check '[ -f "$W/o/s2026-12-01.private" ] && grep -q "^s2026-12-01\._domainkey\.shop\.example	v=DKIM1; k=ed25519; p=" "$W/line2" && grep -q "^s2026-12-01\._domainkey\.shop\.example\.	IN	TXT	( \"v=DKIM1; k=ed25519; p=" "$W/o/s2026-12-01.txt"' \
	"s%Y-%m-%d, Ed25519: s2026-12-01.private, its .txt and line"
"$D" keygen --domain shop.example --selector 'plain2026' --out "$W/o" >/dev/null 2>&1
check '[ -f "$W/o/plain2026.private" ]' "a selector without '%' is taken as given"

echo "== expansions that are no selector"
mkdir -p "$W/bad"
for pat in 'x%H:%M' '%Q' 'a%%b' "$(printf 'x%.0s' $(seq 1 60))%Y" '%n'; do
	"$D" keygen --domain shop.example --selector "$pat" --time 1796083200 --out "$W/bad" >/dev/null 2>"$W/berr"
	rc=$?
	check '[ "$rc" = 64 ] && [ -z "$(ls "$W/bad")" ] && grep -q -- "--selector" "$W/berr"' \
		"--selector '$pat': exit 64, nothing written" "exit $rc: $(cat "$W/berr")"
done

echo "== the new key signs, dkimpy and libopendkim verify"
printf 'From: a@shop.example\r\nTo: b@rcpt.example\r\nSubject: keygen\r\n\r\nbody\r\n' >"$W/msg"
"$D" sign --key "shop.example:UE202612:$W/k/UE202612.private" -o "$W/signed" "$W/msg" 2>"$W/serr"
check '[ $? = 0 ] && grep -q "s=UE202612" "$W/signed"' "sign with shop.example:UE202612 (s=UE202612)" "$(cat "$W/serr")"
$PY "$TOP/tests/interop/verify_dkimpy.py" --dns-file "$W/line" --expect 1 "$W/signed" >"$W/v1" 2>&1
check '[ $? = 0 ]' "dkimpy verifies it against the printed record" "$(cat "$W/v1")"
if [ -x "$ODKIM_VERIFY" ]; then
	"$ODKIM_VERIFY" --dns-file "$W/line" --expect 1 "$W/signed" >"$W/v2" 2>&1
	check '[ $? = 0 ]' "libopendkim verifies it against the printed record" "$(cat "$W/v2")"
fi

echo "keygen: $pass passed, $fail failed"
[ "$fail" = 0 ]
