#!/usr/bin/env bash
# tests/interop/run.sh -- independent-verifier interop suite for dkimpress.
#
# Run from the repository root:   tests/interop/run.sh
# Environment:
#   DKIMPRESS     the binary under test         (default build/dkimpress)
#   ODKIM_VERIFY  the libopendkim harness       (default build/tests/odkim_verify;
#                 when missing it is compiled into the work directory)
#   JOBS          parallel workers              (default: number of CPUs)
#   KEEP_WORK=1   keep the work directory and print its path
#   MAILAUTH_DIR  where `npm install mailauth` goes (default
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/dkimpress/mailauth-VERSION,
#                 outside the repository; installed on first use)
#   INTEROP_ONLY=edges  run only steps a, b and h (quick, for development)
#   INTEROP_RSA_BACKEND=ifma  steps c, d and g sign with --rsa-backend ifma
#                 (the 8-lane AVX-512 IFMA path; tests/interop/run_ifma.sh);
#                 steps e, f and h, which never sign with it, are left out
#   BUILD         a sanitizer build (*sanitize*, *tsan*) leaves out step e's
#                 "reference:" checks (the reference verifiers on each
#                 other's signatures: no dkimpress in them)
#
# No network, no standard input.  Everything happens in a mktemp -d work
# directory, removed at the end.  Steps:
#   a. keys: RSA-1024, RSA-2048 (PKCS#8), RSA-2048 (PKCS#1), RSA-4096, two
#      Ed25519 (openssl, mode 0600); a --dns-file with each key published
#      under both signing domains;
#   b. the corpus (gen_corpus.py, deterministic);
#   c. every corpus message signed by dkimpress with two keys of two
#      domains (customer.example first, esp.example second) for 6 key set-ups
#      x 4 canonicalizations; the output shape is checked (check_signed.py)
#      and every signature verified by dkimpy, Mail::DKIM (RSA signatures
#      only: it has no ed25519-sha256), libopendkim, mailauth and dkimpress
#      verify;
#   d. tampering: for 3 messages per set-up and canonicalization, one body
#      letter changed, and separately one Subject letter: all five verifiers
#      must fail every signature.  A third copy only moves each b= value to
#      a continuation line ("b=" CRLF TAB value): all five must still pass
#      every signature (RFC 6376 3.7 deletes the b= value "including all
#      surrounding whitespace");
#   e. reverse: the corpus signed by dkimpy (RSA + Ed25519) and Mail::DKIM
#      (RSA + RSA) in all 4 canonicalizations must pass dkimpress verify;
#      the same files also go through the other reference verifiers
#      ("reference" checks: when one of those fails, suspect the suite or a
#      reference library, not dkimpress);
#   f. command-line failures: key file mode 0644 -> exit 78 and no output
#      file; two From: -> 65; no From: -> 65; and a few more from the
#      documented exit codes;
#   g. envelope lines (x-sender, x-receiver; LF and CRLF, 1 and 3
#      receivers) in front of 4 corpus messages, double-signed (RSA +
#      Ed25519) in all 4 canonicalizations: the output starts with the
#      envelope lines (CRLF) and h= never names them; with them stripped,
#      dkimpy, Mail::DKIM (RSA), libopendkim and mailauth pass every
#      signature, and dkimpress verify passes the file as it is; malformed
#      envelopes -> 65;
#   h. the trust edges (edges.sh): a header block without its final CRLF,
#      white space before a colon, values that would inject tags or lines,
#      invalid From domains for a '%' KeyTable entry, verify's signature
#      limit, body-hash cache and escaping, signed output within the limits.
# mailauth (npm) is the fourth independent verifier: the suite installs it
# with npm into MAILAUTH_DIR; when node, npm or the registry is missing it
# says so ("SKIP mailauth: ...") and runs everything else.
# One check = one assertion over a group (verifier x set-up x
# canonicalization, ...); a failing check prints "FAIL: ..." with the files
# and the verifier's reason.  The last line is "interop: N passed, N failed";
# exit 1 if any check failed.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3     # Debian's python3 (python3-dkim, python3-nacl)
PERL=/usr/bin/perl      # Debian's perl (libmail-dkim-perl)
DKIMPRESS=${DKIMPRESS:-build/dkimpress}
ODKIM_VERIFY=${ODKIM_VERIFY:-build/tests/odkim_verify}
case $DKIMPRESS in /*) ;; *) DKIMPRESS=$PWD/$DKIMPRESS ;; esac
case $ODKIM_VERIFY in /*) ;; *) ODKIM_VERIFY=$PWD/$ODKIM_VERIFY ;; esac
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=2
# What a run repeats only when it can change (CI time, tests/run): with
# INTEROP_RSA_BACKEND (run_ifma.sh) steps e, f and h are left out: they
# never pass the backend, so they run the same commands on the same binary
# as the plain `interop` run of the same make test. Under the sanitizers
# the reference verifiers' checks of each other's signatures (step e,
# "reference: ...") are left out: no dkimpress runs in them.
BACKEND_RUN=0
[ -z "${INTEROP_RSA_BACKEND:-}" ] || BACKEND_RUN=1
SAN_RUN=0
case "${BUILD:-}:$DKIMPRESS" in *sanitize*|*tsan*) SAN_RUN=1 ;; esac
T0=1700000000            # fixed t= for every dkimpress signature
D1=customer.example      # first --key: the customer's domain
D2=esp.example           # second --key: the ESP's domain

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dkimpress-interop.XXXXXX") || {
	echo "interop: cannot create a work directory"
	echo "interop: 0 passed, 1 failed"
	exit 1
}
if [ "${KEEP_WORK:-}" = 1 ]; then
	echo "work directory: $WORK"
else
	trap 'rm -rf "$WORK"' EXIT
fi
exec </dev/null

npass=0
nfail=0
START=$SECONDS
ok() { npass=$((npass + 1)); echo "ok   $*"; }
bad() { nfail=$((nfail + 1)); echo "FAIL: $*"; }
step() { echo "== $* [$((SECONDS - START))s]"; }
finish() {
	step "done"
	echo "interop: $npass passed, $nfail failed"
	[ "$nfail" = 0 ]
	exit
}

# Wait until fewer than JOBS background jobs run.
throttle() {
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n 2>/dev/null || true
	done
}

# ---------------------------------------------------------------------------
# Expected disagreements.  Where the verifiers disagree, RFC 6376 decides.
# Each line: VERIFIER|SIGNER|CANON-GLOB|MESSAGE-GLOB|EXPECT|REASON
#   VERIFIER  dkimpy, maildkim, odkim, mailauth, dkimpress (or * for all)
#   SIGNER    dkimpress (forward direction), dkimpy or maildkim (reverse)
#   EXPECT    any  = a known bug of that verifier; its result is not asserted
#             fail = the signer made a signature that is wrong by the RFC,
#                    so an RFC-conforming verifier must fail it
# The first matching line wins: a verifier's own bug ("any") comes first, so
# a reference verifier is not asked to reject what its own library signed.
# A message listed here is never picked for the tampering checks.
# The corpus cases concerned (gen_corpus.py names them): a body without a
# final CRLF (body-no-final-eol), the same with its last line ending in
# white space (-trailing-ws), a last line of white space only and no final
# CRLF (body-last-line-ws-only-no-eol), a bare CR inside a body line
# (bare-cr-in-body), header fields only with no empty line after them
# (headers-only-no-separator).
# RFC 6376 3.4.3: simple body adds a CRLF to a body that lacks one.
# RFC 6376 3.4.4: relaxed body removes all WSP at the end of every line,
# then the empty lines at the end, then adds a CRLF to a non-empty body
# without one.  (Found by hashing these bodies by hand; see README.md.)
QUIRKS='
dkimpy|*|*/relaxed|*-body-no-final-eol-trailing-ws.eml|any|dkimpy 1.1.4 relaxed body: trailing WSP of an unterminated last line is kept (it strips WSP only before CRLF); RFC 6376 3.4.4 removes it
dkimpy|*|*/relaxed|*-body-last-line-ws-only-no-eol.eml|any|dkimpy 1.1.4 relaxed body: a white-space-only unterminated last line is hashed as " CRLF"; RFC 6376 3.4.4 removes it
maildkim|*|*/simple|*-body-no-final-eol.eml|any|Mail::DKIM 1.20230212 simple body: no CRLF added to a body without a final CRLF (RFC 6376 3.4.3 adds one)
maildkim|*|*/simple|*-body-no-final-eol-trailing-ws.eml|any|Mail::DKIM 1.20230212 simple body: no CRLF added to a body without a final CRLF (RFC 6376 3.4.3 adds one)
maildkim|*|*/simple|*-body-last-line-ws-only-no-eol.eml|any|Mail::DKIM 1.20230212 simple body: no CRLF added to a body without a final CRLF (RFC 6376 3.4.3 adds one)
odkim|*|*/relaxed|*-body-no-final-eol.eml|any|libopendkim 2.11 relaxed body: a body without a final CRLF is mis-canonicalized (dkim_eom: syntax error or body hash mismatch)
odkim|*|*/relaxed|*-body-no-final-eol-trailing-ws.eml|any|libopendkim 2.11 relaxed body: a body without a final CRLF is mis-canonicalized (dkim_eom: syntax error or body hash mismatch)
odkim|*|*/relaxed|*-bare-cr-in-body.eml|any|libopendkim 2.11 relaxed body: a bare CR is treated as a line break; RFC 6376 hashes it as an ordinary byte
odkim|dkimpy|simple/*|*-headers-only-no-separator.eml|any|libopendkim 2.11 simple header: a message with no empty line after the header block fails (dkimpress writes that empty line: its own signatures must pass)
odkim|maildkim|simple/*|*-headers-only-no-separator.eml|any|libopendkim 2.11 simple header: a message with no empty line after the header block fails (dkimpress writes that empty line: its own signatures must pass)
mailauth|dkimpy|*|*-headers-only-no-separator.eml|any|mailauth 4.13.3: a message with no empty line after the header block gets no result for any signature (dkimpress writes that empty line, which changes no RFC 6376 hash: its own signatures must pass)
mailauth|maildkim|*|*-headers-only-no-separator.eml|any|mailauth 4.13.3: a message with no empty line after the header block gets no result for any signature (dkimpress writes that empty line, which changes no RFC 6376 hash: its own signatures must pass)
*|dkimpy|*/relaxed|*-body-no-final-eol-trailing-ws.eml|fail|dkimpy signed this relaxed body with a non-RFC body hash (its quirk above): an RFC verifier must fail it
*|dkimpy|*/relaxed|*-body-last-line-ws-only-no-eol.eml|fail|dkimpy signed this relaxed body with a non-RFC body hash (its quirk above): an RFC verifier must fail it
*|maildkim|*/simple|*-body-no-final-eol.eml|fail|Mail::DKIM signed this simple body without a final CRLF with a non-RFC body hash: an RFC verifier must fail it
*|maildkim|*/simple|*-body-no-final-eol-trailing-ws.eml|fail|Mail::DKIM signed this simple body without a final CRLF with a non-RFC body hash: an RFC verifier must fail it
*|maildkim|*/simple|*-body-last-line-ws-only-no-eol.eml|fail|Mail::DKIM signed this simple body without a final CRLF with a non-RFC body hash: an RFC verifier must fail it
'

# The table, parsed once into arrays.
Q_V=() Q_S=() Q_C=() Q_M=() Q_E=() Q_R=()
while IFS='|' read -r v s c m e r; do
	[ -n "$v" ] || continue
	Q_V+=("$v") Q_S+=("$s") Q_C+=("$c") Q_M+=("$m") Q_E+=("$e") Q_R+=("$r")
done <<<"$QUIRKS"

# quirk VERIFIER SIGNER CANON MSG: sets QE (expect) and QR (reason) from the
# first matching line; QE is empty when none matches.  (No subshell: this
# runs for every result line.)
quirk() {
	local i
	QE="" QR=""
	# shellcheck disable=SC2254  # the table holds glob patterns
	for i in "${!Q_V[@]}"; do
		case $1 in ${Q_V[$i]}) ;; *) continue ;; esac
		case $2 in ${Q_S[$i]}) ;; *) continue ;; esac
		case $3 in ${Q_C[$i]}) ;; *) continue ;; esac
		case $4 in ${Q_M[$i]}) ;; *) continue ;; esac
		QE=${Q_E[$i]} QR=${Q_R[$i]}
		return 0
	done
}

# Messages never used for tampering: every name any quirk line mentions.
quirk_messages() {
	local f name i
	for f in "$WORK"/corpus/*.eml; do
		name=${f##*/}
		for i in "${!Q_M[@]}"; do
			# shellcheck disable=SC2254
			case $name in ${Q_M[$i]}) echo "$name"; break ;; esac
		done
	done
}

declare -A QUIRK_SEEN=()

# judge VERIFIER SIGNER SETUP CANON RESULTS NEXPECTED LABEL
# RESULTS holds "PATH<TAB>pass|fail<TAB>detail" lines for files named
# .../SETUP/CANONDIR/MSG.  One check: every message of the group is present
# and passes, except the expected disagreements.
judge() {
	local verifier=$1 signer=$2 setup=$3 canon=$4 results=$5 nexp=$6 label=$7
	local cdir=${canon/\//-} lines n=0 path verdict detail name
	local failures=""
	lines=$(grep -F "/$setup/$cdir/" "$results" 2>/dev/null)
	while IFS=$'\t' read -r path verdict detail; do
		[ -n "$path" ] || continue
		n=$((n + 1))
		name=${path##*/}
		quirk "$verifier" "$signer" "$canon" "$name"
		if [ -z "$QE" ]; then
			[ "$verdict" = pass ] ||
				failures+="    $name: ${detail:0:600}"$'\n'
		elif [ "$QE" = fail ]; then
			if [ "$verdict" = pass ]; then
				failures+="    $name: passed, but must fail: $QR"$'\n'
			fi
			QUIRK_SEEN["$verifier: $QR"]=$((${QUIRK_SEEN["$verifier: $QR"]:-0} + 1))
		else
			QUIRK_SEEN["$verifier: $QR [$verdict]"]=$((${QUIRK_SEEN["$verifier: $QR [$verdict]"]:-0} + 1))
		fi
	done <<<"$lines"
	if [ "$n" != "$nexp" ]; then
		failures+="    $n results for $nexp messages (verifier crashed or skipped files?)"$'\n'
	fi
	if [ -z "$failures" ]; then
		ok "$label"
	else
		bad "$label"
		printf '%s' "$failures"
	fi
}

# dkimpress_verify_list LIST OUT NEXP [DNSFILE]: run "dkimpress verify" per
# file and write harness-style lines.  pass = exit 0 and NEXP lines, all
# "pass ...".
dkimpress_verify_list() {
	local list=$1 out=$2 nexp=$3 dns=${4:-$WORK/dns.txt} f res rc np nl line
	while IFS= read -r f; do
		res=$("$DKIMPRESS" verify --dns-file "$dns" "$f" 2>&1)
		rc=$?
		nl=0 np=0
		while IFS= read -r line; do
			[ -n "$line" ] || continue
			nl=$((nl + 1))
			case $line in "pass "*) np=$((np + 1)) ;; esac
		done <<<"$res"
		res=${res//$'\n'/; }
		if [ "$rc" = 0 ] && [ "$nl" = "$nexp" ] && [ "$np" = "$nexp" ]; then
			printf '%s\tpass\tsigs=%s pass=%s fail=0; %s\n' "$f" "$nl" "$np" "$res"
		else
			printf '%s\tfail\tsigs=%s pass=%s fail=%s; exit %s; %s\n' \
				"$f" "$nl" "$np" "$((nl - np))" "$rc" "$res"
		fi
	done <"$list" >"$out"
}

# dkimpress_verify_parallel LIST OUT NEXP: the same, JOBS workers.
dkimpress_verify_parallel() {
	local list=$1 out=$2 nexp=$3 i
	split -n "l/$JOBS" -d "$list" "$list.part."
	for i in "$list".part.*; do
		dkimpress_verify_list "$i" "$i.out" "$nexp" &
	done
	wait
	cat "$list".part.*.out >"$out"
}

# ---------------------------------------------------------------------------
step "preflight"
if [ ! -x "$DKIMPRESS" ]; then
	bad "dkimpress binary: $DKIMPRESS is missing or not executable"
	finish
fi
missing=""
"$PY" -c 'import dkim, nacl' 2>/dev/null || missing+=" python3-dkim/python3-nacl"
"$PERL" -MMail::DKIM::Verifier -e 1 2>/dev/null || missing+=" libmail-dkim-perl"
command -v openssl >/dev/null || missing+=" openssl"
if [ -n "$missing" ]; then
	bad "reference tools missing:$missing (run tools/deps as root)"
	finish
fi
if [ ! -x "$ODKIM_VERIFY" ]; then
	echo "note: $ODKIM_VERIFY missing; compiling tests/interop/odkim_verify.c"
	# shellcheck disable=SC2046
	if cc -Wall -Wextra -Werror -O2 -o "$WORK/odkim_verify" "$HERE/odkim_verify.c" \
		$(pkg-config --cflags --libs opendkim) >"$WORK/cc.log" 2>&1; then
		ODKIM_VERIFY=$WORK/odkim_verify
	else
		cat "$WORK/cc.log"
		bad "odkim_verify: cannot build it (libopendkim-dev missing?)"
		finish
	fi
fi

# mailauth: the fourth independent verifier (npm).  Installed once into a
# cache outside the repository, under a lock (several runs may share it).
# When it cannot be had, only the mailauth checks are skipped, and said.
MAILAUTH_VERSION=4.13.3
MAILAUTH_DIR=${MAILAUTH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dkimpress/mailauth-$MAILAUTH_VERSION}
HAVE_MAILAUTH=0
MAILAUTH_SKIP=""
mailauth_ok() {
	MAILAUTH_DIR=$MAILAUTH_DIR node -e '
		const p = require.resolve("mailauth/package.json", { paths: [process.env.MAILAUTH_DIR] });
		if (require(p).version !== process.argv[1]) process.exit(1);
		require(require.resolve("mailauth/lib/dkim/verify", { paths: [process.env.MAILAUTH_DIR] }));
	' "$MAILAUTH_VERSION" >/dev/null 2>&1
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	MAILAUTH_SKIP="node or npm is not installed (tools/deps installs Debian's nodejs and npm)"
elif mailauth_ok; then
	HAVE_MAILAUTH=1
else
	echo "note: installing mailauth@$MAILAUTH_VERSION with npm into $MAILAUTH_DIR"
	mkdir -p "$MAILAUTH_DIR" 2>/dev/null
	# shellcheck disable=SC2016
	if ( flock -w 600 9 || exit 1
	     mailauth_ok || timeout 600 npm install --prefix "$MAILAUTH_DIR" --no-audit \
		--no-fund --ignore-scripts --no-save --loglevel=error \
		"mailauth@$MAILAUTH_VERSION" ) 9>"$MAILAUTH_DIR.lock" >"$WORK/npm.log" 2>&1 &&
		mailauth_ok; then
		HAVE_MAILAUTH=1
	else
		MAILAUTH_SKIP="npm install mailauth@$MAILAUTH_VERSION into $MAILAUTH_DIR failed: $(grep -m2 -iE 'err|fail' "$WORK/npm.log" | tr '\n' ' ' | head -c 300)"
	fi
fi
export MAILAUTH_DIR
if [ "$HAVE_MAILAUTH" = 1 ]; then
	echo "note: mailauth $MAILAUTH_VERSION (node $(node --version)) from $MAILAUTH_DIR"
else
	echo "SKIP mailauth: $MAILAUTH_SKIP; every other verifier still runs"
fi
# mailauth_verify ARGS...: the harness, or nothing when mailauth is skipped
mailauth_verify() {
	[ "$HAVE_MAILAUTH" = 1 ] || return 0
	node "$HERE/verify_mailauth.js" "$@"
}

# ---------------------------------------------------------------------------
step "a. keys and dns-file"
K=$WORK/keys
mkdir -p "$K"
(umask 077
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$K/rsa1024.pem" 2>/dev/null &
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/rsa2048.pem" 2>/dev/null &
openssl genrsa -traditional -out "$K/rsa2048p1.pem" 2048 2>/dev/null &
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$K/rsa4096.pem" 2>/dev/null &
openssl genpkey -algorithm ED25519 -out "$K/ed1.pem" 2>/dev/null &
openssl genpkey -algorithm ED25519 -out "$K/ed2.pem" 2>/dev/null &
wait)
chmod 600 "$K"/*.pem
keys_ok=1
: >"$WORK/dns.txt"
for k in rsa1024 rsa2048 rsa2048p1 rsa4096 ed1 ed2; do
	case $k in
	ed*) p=$(openssl pkey -in "$K/$k.pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)
	     kt=ed25519 ;;
	*)   p=$(openssl pkey -in "$K/$k.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
	     kt=rsa ;;
	esac
	if [ -z "$p" ]; then
		keys_ok=0
		continue
	fi
	for d in $D1 $D2; do
		printf '%s._domainkey.%s\tv=DKIM1; k=%s; p=%s\n' "$k" "$d" "$kt" "$p" >>"$WORK/dns.txt"
	done
done
if [ "$keys_ok" = 1 ] && grep -q 'BEGIN RSA PRIVATE KEY' "$K/rsa2048p1.pem" &&
	grep -q 'BEGIN PRIVATE KEY' "$K/rsa2048.pem"; then
	ok "keys: RSA-1024/2048/2048(PKCS#1)/4096 and 2 Ed25519 made, dns-file written"
else
	bad "keys: openssl could not make every key"
	finish
fi

# ---------------------------------------------------------------------------
step "b. corpus"
C=$WORK/corpus
if "$PY" "$HERE/gen_corpus.py" "$C" >"$WORK/gen.log" 2>&1; then
	NCORPUS=$(find "$C" -name '*.eml' | wc -l)
	ok "corpus: $NCORPUS messages"
else
	cat "$WORK/gen.log"
	bad "corpus: gen_corpus.py failed"
	finish
fi
CANONS="simple/simple simple/relaxed relaxed/simple relaxed/relaxed"

# set-up name -> "DOMAIN:SELECTOR" pair (key file = keys/SELECTOR.pem)
SETUPS="rsa1024+rsa2048 rsa2048+rsa2048p1 rsa4096+rsa2048 ed25519+ed25519 rsa2048+ed25519 ed25519+rsa2048"
declare -A SEL1 SEL2 NRSA
SEL1[rsa1024+rsa2048]=rsa1024;    SEL2[rsa1024+rsa2048]=rsa2048;   NRSA[rsa1024+rsa2048]=2
SEL1[rsa2048+rsa2048p1]=rsa2048;  SEL2[rsa2048+rsa2048p1]=rsa2048p1; NRSA[rsa2048+rsa2048p1]=2
SEL1[rsa4096+rsa2048]=rsa4096;    SEL2[rsa4096+rsa2048]=rsa2048;   NRSA[rsa4096+rsa2048]=2
SEL1[ed25519+ed25519]=ed1;        SEL2[ed25519+ed25519]=ed2;       NRSA[ed25519+ed25519]=0
SEL1[rsa2048+ed25519]=rsa2048p1;  SEL2[rsa2048+ed25519]=ed1;       NRSA[rsa2048+ed25519]=1
SEL1[ed25519+rsa2048]=ed2;        SEL2[ed25519+rsa2048]=rsa2048;   NRSA[ed25519+rsa2048]=1
alg_of() { case $1 in ed*) echo ed25519-sha256 ;; *) echo rsa-sha256 ;; esac; }

if [ "${INTEROP_ONLY:-}" != edges ]; then
# ---------------------------------------------------------------------------
step "c. dkimpress sign: $(wc -w <<<"$SETUPS") key set-ups x 4 canonicalizations x $NCORPUS messages"
S=$WORK/signed
sign_group() {
	local setup=$1 canon=$2 cdir=${2/\//-} f out rc
	local dir=$S/$setup/$cdir
	mkdir -p "$dir"
	: >"$dir.signlog"
	for f in "$C"/*.eml; do
		out=$dir/${f##*/}
		"$DKIMPRESS" sign ${INTEROP_RSA_BACKEND:+--rsa-backend "$INTEROP_RSA_BACKEND"} \
			--key "$D1:${SEL1[$setup]}:$K/${SEL1[$setup]}.pem" \
			--key "$D2:${SEL2[$setup]}:$K/${SEL2[$setup]}.pem" \
			--canon "$canon" --time "$T0" -o "$out" "$f" 2>"$dir.err"
		rc=$?
		if [ "$rc" != 0 ] || [ ! -s "$out" ]; then
			echo "    ${f##*/}: exit $rc: $(head -c 300 "$dir.err" | tr '\n' ' ')" >>"$dir.signlog"
			rm -f "$out"
		fi
	done
}
for setup in $SETUPS; do
	for canon in $CANONS; do
		throttle
		sign_group "$setup" "$canon" &
	done
done
wait
for setup in $SETUPS; do
	for canon in $CANONS; do
		log=$S/$setup/${canon/\//-}.signlog
		if [ -s "$log" ]; then
			bad "dkimpress sign $setup $canon: not every message signed"
			cat "$log"
		else
			ok "dkimpress sign $setup $canon: exit 0 for all $NCORPUS messages"
		fi
	done
done

step "c. output shape (check_signed.py)"
for setup in $SETUPS; do
	for canon in $CANONS; do
		throttle
		( find "$S/$setup/${canon/\//-}" -name '*.eml' | sort >"$WORK/shape.$setup.${canon/\//-}.list"
		  "$PY" "$HERE/check_signed.py" --corpus "$C" --canon "$canon" --time "$T0" \
			--sig "$D1:${SEL1[$setup]}:$(alg_of "${SEL1[$setup]}")" \
			--sig "$D2:${SEL2[$setup]}:$(alg_of "${SEL2[$setup]}")" \
			--list "$WORK/shape.$setup.${canon/\//-}.list" \
			>"$WORK/shape.$setup.${canon/\//-}.out" 2>&1 ) &
	done
done
wait
for setup in $SETUPS; do
	for canon in $CANONS; do
		judge shape dkimpress "$setup" "$canon" "$WORK/shape.$setup.${canon/\//-}.out" "$NCORPUS" \
			"sign output of $setup $canon: 2 DKIM-Signature fields in --key order (d=, s=, a=, c=, t=), then the message with LF->CRLF only"
	done
done

step "c. verify the signed corpus with dkimpy, Mail::DKIM, libopendkim, mailauth, dkimpress"
find "$S" -name '*.eml' | sort >"$WORK/all.list"
: >"$WORK/rsa2.list"
: >"$WORK/rsa1.list"
for setup in $SETUPS; do
	case ${NRSA[$setup]} in
	2) grep -F "/$setup/" "$WORK/all.list" >>"$WORK/rsa2.list" ;;
	1) grep -F "/$setup/" "$WORK/all.list" >>"$WORK/rsa1.list" ;;
	esac
done
"$PY" "$HERE/verify_dkimpy.py" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/all.list" >"$WORK/v.dkimpy" 2>&1 &
"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 2 --rsa-only \
	--list "$WORK/rsa2.list" >"$WORK/v.maildkim" 2>&1 &
"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 1 --rsa-only \
	--list "$WORK/rsa1.list" >"$WORK/v.maildkim1" 2>&1 &
"$ODKIM_VERIFY" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/all.list" >"$WORK/v.odkim" 2>&1 &
mailauth_verify --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/all.list" >"$WORK/v.mailauth" 2>&1 &
dkimpress_verify_parallel "$WORK/all.list" "$WORK/v.dkimpress" 2 &
wait
cat "$WORK/v.maildkim1" >>"$WORK/v.maildkim"
step "c. results"

for setup in $SETUPS; do
	for canon in $CANONS; do
		judge dkimpy dkimpress "$setup" "$canon" "$WORK/v.dkimpy" "$NCORPUS" \
			"dkimpy verifies both signatures: $setup $canon"
		if [ "${NRSA[$setup]}" != 0 ]; then
			judge maildkim dkimpress "$setup" "$canon" "$WORK/v.maildkim" "$NCORPUS" \
				"Mail::DKIM verifies the ${NRSA[$setup]} RSA signature(s): $setup $canon"
		fi
		judge odkim dkimpress "$setup" "$canon" "$WORK/v.odkim" "$NCORPUS" \
			"libopendkim verifies both signatures: $setup $canon"
		if [ "$HAVE_MAILAUTH" = 1 ]; then
			judge mailauth dkimpress "$setup" "$canon" "$WORK/v.mailauth" "$NCORPUS" \
				"mailauth verifies both signatures: $setup $canon"
		fi
		judge dkimpress dkimpress "$setup" "$canon" "$WORK/v.dkimpress" "$NCORPUS" \
			"dkimpress verify passes both signatures: $setup $canon"
	done
done
echo "   (Mail::DKIM 1.20230212 cannot verify ed25519-sha256: ed25519+ed25519 is not sent to it, and for the mixed set-ups only the RSA signature counts)"

# ---------------------------------------------------------------------------
step "d. tampering (body byte, Subject) and b= refolding, 3 messages per set-up and canonicalization"
M=$WORK/mutated
excl=()
while IFS= read -r q; do excl+=(--exclude "$q"); done < <(quirk_messages)
i=0
mutlog=$WORK/mutate.log
for setup in $SETUPS; do
	for canon in $CANONS; do
		cdir=${canon/\//-}
		throttle
		{ "$PY" "$HERE/mutate.py" --outdir "$M/$setup/$cdir" --count 3 --start $((i * 3)) \
			"${excl[@]}" "$S/$setup/$cdir"/*.eml >"$M.$i.log" 2>&1 ||
			echo "mutate.py: too few messages for $setup $canon" >>"$M.$i.log"; } &
		i=$((i + 1))
	done
done
wait
cat "$M".*.log >"$mutlog"
find "$M" -name '*.eml' | sort >"$WORK/mut.list"
NMUT=$(wc -l <"$WORK/mut.list")
NSETUPS=$(wc -w <<<"$SETUPS")
if [ "$NMUT" = $((NSETUPS * 4 * 3 * 3)) ]; then
	ok "tampering: $NMUT tampered or refolded messages made"
else
	bad "tampering: $NMUT tampered or refolded messages made, want $((NSETUPS * 4 * 3 * 3))"
	grep -v '^/' "$mutlog"
fi
: >"$WORK/mut.rsa2.list"
: >"$WORK/mut.rsa1.list"
for setup in $SETUPS; do
	case ${NRSA[$setup]} in
	2) grep -F "/$setup/" "$WORK/mut.list" >>"$WORK/mut.rsa2.list" ;;
	1) grep -F "/$setup/" "$WORK/mut.list" >>"$WORK/mut.rsa1.list" ;;
	esac
done
"$PY" "$HERE/verify_dkimpy.py" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/mut.list" >"$WORK/m.dkimpy" 2>&1 &
"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 2 --rsa-only \
	--list "$WORK/mut.rsa2.list" >"$WORK/m.maildkim" 2>&1 &
"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 1 --rsa-only \
	--list "$WORK/mut.rsa1.list" >"$WORK/m.maildkim1" 2>&1 &
"$ODKIM_VERIFY" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/mut.list" >"$WORK/m.odkim" 2>&1 &
mailauth_verify --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$WORK/mut.list" >"$WORK/m.mailauth" 2>&1 &
dkimpress_verify_list "$WORK/mut.list" "$WORK/m.dkimpress" 2 &
wait
cat "$WORK/m.maildkim1" >>"$WORK/m.maildkim"

# judge_tampered VERIFIER RESULTS SETUP KIND NSIGS LABEL: every body- or
# subject-tampered message of SETUP must show all NSIGS counted signatures
# failing; every refolded one all NSIGS passing.
judge_tampered() {
	local verifier=$1 results=$2 setup=$3 kind=$4 nsigs=$5 label=$6
	local lines n=0 path verdict detail failures="" want
	want="sigs=$nsigs pass=0 fail=$nsigs;"
	[ "$kind" = refold ] && want="sigs=$nsigs pass=$nsigs fail=0;"
	lines=$(grep -F "/$setup/" "$results" | grep -F "/$kind-")
	while IFS=$'\t' read -r path verdict detail; do
		[ -n "$path" ] || continue
		n=$((n + 1))
		case $detail in
		"$want"*) ;;
		*) failures+="    ${path#"$M"/}: ${detail:0:600}"$'\n' ;;
		esac
	done <<<"$lines"
	[ "$n" = 12 ] || failures+="    $n results for 12 tampered messages"$'\n'
	if [ -z "$failures" ]; then
		ok "$label"
	else
		bad "$label"
		printf '%s' "$failures"
	fi
}
for setup in $SETUPS; do
	for kind in body subject refold; do
		if [ "$kind" = refold ]; then
			what="passes the signature(s) of every message whose b= value was refolded (\"b=\" CRLF TAB value)"
		else
			what="fails the signature(s) of every $kind-tampered message"
		fi
		judge_tampered dkimpy "$WORK/m.dkimpy" "$setup" "$kind" 2 "dkimpy $what: $setup"
		if [ "${NRSA[$setup]}" != 0 ]; then
			judge_tampered maildkim "$WORK/m.maildkim" "$setup" "$kind" "${NRSA[$setup]}" \
				"Mail::DKIM (RSA only) $what: $setup"
		fi
		judge_tampered odkim "$WORK/m.odkim" "$setup" "$kind" 2 "libopendkim $what: $setup"
		if [ "$HAVE_MAILAUTH" = 1 ]; then
			judge_tampered mailauth "$WORK/m.mailauth" "$setup" "$kind" 2 "mailauth $what: $setup"
		fi
		judge_tampered dkimpress "$WORK/m.dkimpress" "$setup" "$kind" 2 "dkimpress verify $what: $setup"
	done
done

# ---------------------------------------------------------------------------
good=$C/01-basic-crlf.eml	# a well-formed message, for steps f and g
if [ "$BACKEND_RUN" = 0 ]; then
step "e. reverse: dkimpy- and Mail::DKIM-signed corpus through dkimpress verify"
R=$WORK/reverse
revlog=$WORK/reverse.log
: >"$revlog"
for canon in $CANONS; do
	cdir=${canon/\//-}
	throttle
	"$PY" "$HERE/sign_dkimpy.py" --key "$D1:rsa2048:$K/rsa2048.pem" --key "$D2:ed1:$K/ed1.pem" \
		--canon "$canon" --outdir "$R/dkimpy/$cdir" "$C"/*.eml >"$R.dkimpy.$cdir.log" 2>&1 &
	throttle
	"$PERL" "$HERE/sign_maildkim.pl" --key "$D1:rsa4096:$K/rsa4096.pem" \
		--key "$D2:rsa2048p1:$K/rsa2048p1.pem" \
		--canon "$canon" --outdir "$R/maildkim/$cdir" "$C"/*.eml >"$R.maildkim.$cdir.log" 2>&1 &
done
wait
for signer in dkimpy maildkim; do
	for canon in $CANONS; do
		cdir=${canon/\//-}
		if [ "$(grep -c $'\tok$' "$R.$signer.$cdir.log")" = "$NCORPUS" ]; then
			ok "reference: $signer signs the corpus $canon"
		else
			bad "reference: $signer signs the corpus $canon"
			grep -v $'\tok$' "$R.$signer.$cdir.log" | head -20
		fi
	done
done
find "$R/dkimpy" -name '*.eml' | sort >"$WORK/rev.dkimpy.list"
find "$R/maildkim" -name '*.eml' | sort >"$WORK/rev.maildkim.list"
cat "$WORK/rev.dkimpy.list" "$WORK/rev.maildkim.list" >"$WORK/rev.list"
if [ "$SAN_RUN" = 0 ]; then
	"$PY" "$HERE/verify_dkimpy.py" --dns-file "$WORK/dns.txt" --expect 2 \
		--list "$WORK/rev.maildkim.list" >"$WORK/r.dkimpy" 2>&1 &
	"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 1 --rsa-only \
		--list "$WORK/rev.dkimpy.list" >"$WORK/r.maildkim" 2>&1 &
	"$ODKIM_VERIFY" --dns-file "$WORK/dns.txt" --expect 2 \
		--list "$WORK/rev.list" >"$WORK/r.odkim" 2>&1 &
	mailauth_verify --dns-file "$WORK/dns.txt" --expect 2 \
		--list "$WORK/rev.list" >"$WORK/r.mailauth" 2>&1 &
fi
dkimpress_verify_parallel "$WORK/rev.list" "$WORK/r.dkimpress" 2 &
wait
step "e. results"
for canon in $CANONS; do
	judge dkimpress dkimpy dkimpy "$canon" "$WORK/r.dkimpress" "$NCORPUS" \
		"dkimpress verify passes dkimpy's rsa-sha256 + ed25519-sha256 signatures: $canon"
	judge dkimpress maildkim maildkim "$canon" "$WORK/r.dkimpress" "$NCORPUS" \
		"dkimpress verify passes Mail::DKIM's two rsa-sha256 signatures: $canon"
done
[ "$SAN_RUN" = 0 ] || echo "   (sanitizer build: the reference verifiers' checks of each other are left to the plain run)"
[ "$SAN_RUN" = 1 ] || for canon in $CANONS; do
	judge maildkim dkimpy dkimpy "$canon" "$WORK/r.maildkim" "$NCORPUS" \
		"reference: Mail::DKIM verifies dkimpy's RSA signature: $canon"
	judge odkim dkimpy dkimpy "$canon" "$WORK/r.odkim" "$NCORPUS" \
		"reference: libopendkim verifies dkimpy's signatures: $canon"
	judge dkimpy maildkim maildkim "$canon" "$WORK/r.dkimpy" "$NCORPUS" \
		"reference: dkimpy verifies Mail::DKIM's signatures: $canon"
	judge odkim maildkim maildkim "$canon" "$WORK/r.odkim" "$NCORPUS" \
		"reference: libopendkim verifies Mail::DKIM's signatures: $canon"
	if [ "$HAVE_MAILAUTH" = 1 ]; then
		judge mailauth dkimpy dkimpy "$canon" "$WORK/r.mailauth" "$NCORPUS" \
			"reference: mailauth verifies dkimpy's signatures: $canon"
		judge mailauth maildkim maildkim "$canon" "$WORK/r.mailauth" "$NCORPUS" \
			"reference: mailauth verifies Mail::DKIM's signatures: $canon"
	fi
done

# ---------------------------------------------------------------------------
step "f. command-line failures"
N=$WORK/neg
mkdir -p "$N"
cp "$K/rsa2048.pem" "$N/open.pem"
chmod 644 "$N/open.pem"
"$DKIMPRESS" sign --key "$D1:rsa2048:$N/open.pem" -o "$N/out1.eml" "$good" >"$N/stdout1" 2>"$N/err1"
rc=$?
if [ "$rc" = 78 ] && [ ! -e "$N/out1.eml" ] && [ ! -s "$N/stdout1" ]; then
	ok "key file mode 0644: exit 78, no output file"
else
	bad "key file mode 0644: exit $rc (want 78), output file $([ -e "$N/out1.eml" ] && echo exists || echo absent): $(head -c 300 "$N/err1")"
fi
"$DKIMPRESS" sign --insecure-key-perms --key "$D1:rsa2048:$N/open.pem" -o "$N/out2.eml" "$good" 2>"$N/err2"
rc=$?
if [ "$rc" = 0 ] && [ -s "$N/out2.eml" ] &&
	"$DKIMPRESS" verify --dns-file "$WORK/dns.txt" "$N/out2.eml" >/dev/null 2>&1; then
	ok "key file mode 0644 with --insecure-key-perms: signed and verifies"
else
	bad "key file mode 0644 with --insecure-key-perms: exit $rc: $(head -c 300 "$N/err2")"
fi
printf 'From: a@customer.example\r\nFrom: b@customer.example\r\nTo: c@receiver.example\r\nSubject: two From\r\n\r\nbody\r\n' >"$N/twofrom.eml"
printf 'To: c@receiver.example\r\nSubject: no From\r\n\r\nbody\r\n' >"$N/nofrom.eml"
printf 'fRoM: a@customer.example\nTo: c@receiver.example\nFROM: b@customer.example\nSubject: two From, odd case, LF\n\nbody\n' >"$N/twofrom-case.eml"
for t in twofrom nofrom twofrom-case; do
	"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" -o "$N/$t.out" "$N/$t.eml" >/dev/null 2>"$N/$t.err"
	rc=$?
	if [ "$rc" = 65 ] && [ ! -e "$N/$t.out" ]; then
		ok "sign $t message: exit 65, no output file"
	else
		bad "sign $t message: exit $rc (want 65): $(head -c 300 "$N/$t.err")"
	fi
done
"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" -o "$N/missing.out" "$N/does-not-exist.eml" >/dev/null 2>&1
rc=$?
if [ "$rc" = 66 ]; then ok "sign a missing input file: exit 66"; else bad "sign a missing input file: exit $rc (want 66)"; fi
"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" --canon relaxed/bogus "$good" >/dev/null 2>&1
rc=$?
if [ "$rc" = 64 ]; then ok "sign --canon relaxed/bogus: exit 64"; else bad "sign --canon relaxed/bogus: exit $rc (want 64)"; fi
printf 'not a key\n' >"$N/garbage.pem"
chmod 600 "$N/garbage.pem"
"$DKIMPRESS" sign --key "$D1:rsa2048:$N/garbage.pem" -o "$N/garbage.out" "$good" >/dev/null 2>&1
rc=$?
if [ "$rc" = 78 ] && [ ! -e "$N/garbage.out" ]; then ok "sign with a key file that is not PEM: exit 78"; else bad "sign with a key file that is not PEM: exit $rc (want 78)"; fi
"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" --time "$T0" "$good" >"$N/stdout.eml" 2>/dev/null
rc=$?
if [ "$rc" = 0 ] && "$DKIMPRESS" verify --dns-file "$WORK/dns.txt" <"$N/stdout.eml" >/dev/null 2>&1; then
	ok "sign to standard output, verify from standard input"
else
	bad "sign to standard output (exit $rc) or verify from standard input failed"
fi
"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" --time "$T0" <"$good" >"$N/stdin.eml" 2>/dev/null
rc=$?
if [ "$rc" = 0 ] && cmp -s "$N/stdin.eml" "$N/stdout.eml"; then
	ok "sign from standard input gives the same bytes as from a file (same --time)"
else
	bad "sign from standard input: exit $rc, output $(cmp "$N/stdin.eml" "$N/stdout.eml" 2>&1 | head -c 200)"
fi
grep -v '^rsa2048\._domainkey\.customer' "$WORK/dns.txt" >"$N/dns-nokey.txt"
out=$("$DKIMPRESS" verify --dns-file "$N/dns-nokey.txt" "$N/stdout.eml" 2>&1)
rc=$?
if [ "$rc" != 0 ] && ! grep -q '^pass' <<<"$out"; then
	ok "verify with the key missing from the dns-file: not a pass (exit $rc)"
else
	bad "verify with the key missing from the dns-file: exit $rc: $out"
fi

fi	# BACKEND_RUN (steps e and f)

# ---------------------------------------------------------------------------
step "g. envelope lines (x-sender, x-receiver): sign, strip, verify"
E=$WORK/envelope
mkdir -p "$E/in" "$E/want"
# envelope_msg CORPUS-NAME EOL LINE...: E/in/NAME is the LINEs, each ending
# in EOL, then the corpus message; E/want/NAME is the LINEs with CRLF, as
# they must open the signed output.  (The name stays the corpus name, so
# check_signed.py finds the original of the stripped output.)
envelope_msg() {
	local name=$1 eol=$2 line
	shift 2
	: >"$E/in/$name"
	: >"$E/want/$name"
	for line in "$@"; do
		printf '%s%s' "$line" "$eol" >>"$E/in/$name"
		printf '%s\r\n' "$line" >>"$E/want/$name"
	done
	cat "$C/$name" >>"$E/in/$name"
}
envelope_msg 02-basic-lf.eml $'\n' 'x-sender: bounce-1@esp.example' \
	'x-receiver: rcpt@receiver.example'
envelope_msg 01-basic-crlf.eml $'\r\n' 'x-sender: <bounce-2@esp.example>' \
	'x-receiver: <rcpt@receiver.example>'
envelope_msg 26-multipart-mixed-base64-lf.eml $'\n' 'X-Sender: <>' \
	'X-Receiver: one@receiver.example' 'x-receiver: <two@receiver.example>' \
	'X-RECEIVER: three@other.example'
envelope_msg 46-random-1-crlf.eml $'\r\n' 'X-Sender: bounce-4@esp.example' \
	'x-Receiver: one@receiver.example' 'X-receiver: two@receiver.example' \
	'x-receiver: three@other.example'
NENV=$(find "$E/in" -name '*.eml' | wc -l)
: >"$E/signed.list"
: >"$E/stripped.list"
for canon in $CANONS; do
	cdir=${canon/\//-}
	mkdir -p "$E/signed/env/$cdir" "$E/stripped/env/$cdir"
	failures=""
	for f in "$E/in"/*.eml; do
		name=${f##*/}
		out=$E/signed/env/$cdir/$name
		"$DKIMPRESS" sign ${INTEROP_RSA_BACKEND:+--rsa-backend "$INTEROP_RSA_BACKEND"} \
			--key "$D1:rsa2048:$K/rsa2048.pem" --key "$D2:ed1:$K/ed1.pem" \
			--canon "$canon" --time "$T0" -o "$out" "$f" 2>"$E/err"
		rc=$?
		n=$(wc -c <"$E/want/$name")
		if [ "$rc" != 0 ] || [ ! -s "$out" ]; then
			failures+="    $name: exit $rc: $(head -c 300 "$E/err" | tr '\n' ' ')"$'\n'
		elif ! cmp -s -n "$n" "$out" "$E/want/$name" ||
			[ "$(tail -c +$((n + 1)) "$out" | head -c 15)" != "DKIM-Signature:" ]; then
			failures+="    $name: does not start with the envelope lines (CRLF) then DKIM-Signature: $(head -c 200 "$out" | tr '\r\n' '  ')"$'\n'
		else
			echo "$out" >>"$E/signed.list"
			tail -c +$((n + 1)) "$out" >"$E/stripped/env/$cdir/$name"
			echo "$E/stripped/env/$cdir/$name" >>"$E/stripped.list"
		fi
	done
	if [ -z "$failures" ]; then
		ok "sign with envelope lines $canon: exit 0 for all $NENV, output starts with the envelope lines (CRLF), then DKIM-Signature"
	else
		bad "sign with envelope lines $canon"
		printf '%s' "$failures"
	fi
done
for canon in $CANONS; do
	cdir=${canon/\//-}
	grep -F "/env/$cdir/" "$E/stripped.list" >"$E/stripped.$cdir.list"
	"$PY" "$HERE/check_signed.py" --corpus "$C" --canon "$canon" --time "$T0" \
		--sig "$D1:rsa2048:rsa-sha256" --sig "$D2:ed1:ed25519-sha256" \
		--list "$E/stripped.$cdir.list" >"$E/shape.$cdir.out" 2>&1
done
cat "$E"/shape.*.out >"$E/shape.out"
# h= of every signature: present, and never naming x-sender or x-receiver
"$PY" - "$E/stripped.list" >"$E/h.out" 2>&1 <<'PYEOF'
import re, sys
for p in open(sys.argv[1]).read().splitlines():
    head = open(p, 'rb').read().split(b'\r\n\r\n', 1)[0] + b'\r\n'
    hs = []
    for s in re.findall(rb'(?im)^DKIM-Signature:((?:[^\r\n]*\r\n)(?:[ \t][^\r\n]*\r\n)*)', head):
        m = re.search(rb'(?:^|;)h=([^;]*)', re.sub(rb'\s+', b'', s))
        hs.append(m.group(1).lower() if m else b'')
    bad = [h for h in hs if not h or re.search(rb'(^|:)x-(sender|receiver)(:|$)', h)]
    print('%s\t%s\t%d signatures; h=%s' % (p, 'fail' if bad or len(hs) != 2 else 'pass',
          len(hs), ' | '.join(h.decode('ascii', 'replace') for h in hs)))
PYEOF
"$PY" "$HERE/verify_dkimpy.py" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$E/stripped.list" >"$E/v.dkimpy" 2>&1 &
"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$WORK/dns.txt" --expect 1 --rsa-only \
	--list "$E/stripped.list" >"$E/v.maildkim" 2>&1 &
"$ODKIM_VERIFY" --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$E/stripped.list" >"$E/v.odkim" 2>&1 &
mailauth_verify --dns-file "$WORK/dns.txt" --expect 2 \
	--list "$E/stripped.list" >"$E/v.mailauth" 2>&1 &
dkimpress_verify_list "$E/signed.list" "$E/v.dkimpress" 2 &
wait
for canon in $CANONS; do
	judge shape dkimpress env "$canon" "$E/shape.out" "$NENV" \
		"sign output with envelope lines stripped, $canon: 2 DKIM-Signature fields (rsa-sha256, ed25519-sha256), then the message with LF->CRLF only"
	judge hlist dkimpress env "$canon" "$E/h.out" "$NENV" \
		"h= of both signatures never names x-sender or x-receiver: $canon"
	judge dkimpy dkimpress env "$canon" "$E/v.dkimpy" "$NENV" \
		"dkimpy verifies both signatures, envelope lines stripped: $canon"
	judge maildkim dkimpress env "$canon" "$E/v.maildkim" "$NENV" \
		"Mail::DKIM verifies the RSA signature, envelope lines stripped: $canon"
	judge odkim dkimpress env "$canon" "$E/v.odkim" "$NENV" \
		"libopendkim verifies both signatures, envelope lines stripped: $canon"
	if [ "$HAVE_MAILAUTH" = 1 ]; then
		judge mailauth dkimpress env "$canon" "$E/v.mailauth" "$NENV" \
			"mailauth verifies both signatures, envelope lines stripped: $canon"
	fi
	judge dkimpress dkimpress env "$canon" "$E/v.dkimpress" "$NENV" \
		"dkimpress verify passes both signatures with the envelope lines still on: $canon"
done
# malformed envelopes: exit 65, the reason, no output file
printf 'x-receiver: rcpt@receiver.example\r\nx-sender: bounce@esp.example\r\n' >"$E/bad-order.eml"
printf 'x-sender: bounce@esp.example\n' >"$E/bad-norcpt.eml"
printf 'x-sender: Bounce <bounce@esp.example>\r\nx-receiver: rcpt@receiver.example\r\n' >"$E/bad-space.eml"
printf 'x-sender: bounce@esp.example\r\nx-receiver: rcpt@receiver.example,\r\n two@receiver.example\r\n' >"$E/bad-folded.eml"
for t in order:"x-receiver before x-sender" norcpt:"without any x-receiver" \
	space:"white space inside" folded:"continuation"; do
	cat "$good" >>"$E/bad-${t%%:*}.eml"
	"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" -o "$E/bad-${t%%:*}.out" \
		"$E/bad-${t%%:*}.eml" >/dev/null 2>"$E/bad.err"
	rc=$?
	if [ "$rc" = 65 ] && [ ! -e "$E/bad-${t%%:*}.out" ] && grep -qF "${t#*:}" "$E/bad.err"; then
		ok "sign with a malformed envelope (${t#*:}): exit 65 with the reason, no output file"
	else
		bad "sign with a malformed envelope (${t#*:}): exit $rc (want 65): $(head -c 300 "$E/bad.err")"
	fi
done

fi	# INTEROP_ONLY

# ---------------------------------------------------------------------------
# h. the trust edges: tests/interop/edges.sh, run in this shell (it uses
# the keys, the dns-file, judge, ok and bad)
if [ "$BACKEND_RUN" = 0 ]; then
	# shellcheck source=tests/interop/edges.sh
	. "$HERE/edges.sh"
fi

# ---------------------------------------------------------------------------
step "expected disagreements seen (RFC 6376 decides; see QUIRKS in this script)"
if [ "${#QUIRK_SEEN[@]}" = 0 ]; then
	echo "   none"
else
	for q in "${!QUIRK_SEEN[@]}"; do
		printf '   %4d x %s\n' "${QUIRK_SEEN[$q]}" "$q"
	done | sort -k3
fi
[ "$HAVE_MAILAUTH" = 1 ] || echo "SKIP mailauth: $MAILAUTH_SKIP (its checks did not run)"
[ "${INTEROP_ONLY:-}" != edges ] || echo "(INTEROP_ONLY=edges: steps c to g did not run)"
[ "$BACKEND_RUN" = 0 ] || echo "(--rsa-backend $INTEROP_RSA_BACKEND: steps e, f and h did not run: they sign nothing with it and ran in the plain interop run)"
finish
