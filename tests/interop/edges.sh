# shellcheck shell=bash
# tests/interop/edges.sh -- step h of run.sh: the "trust" edges.
#
# Sourced by run.sh after steps a and b (it uses $WORK, $K, the dns-file,
# $DKIMPRESS, $ODKIM_VERIFY, and run.sh's ok, bad, step, judge,
# mailauth_verify and dkimpress_verify_list).  Each part says what was
# decided and why; README.md ("The trust edges") has the table.
#
#  h1  a header block of fields only whose last line has no CRLF: signed as
#      it travels (the CRLF SMTP adds, RFC 5321 4.1.1.4, and the empty line
#      after the header block), in all 4 canonicalizations; the output ends
#      in CRLF CRLF; "SMTP delivery" (a CRLF added only where missing)
#      changes nothing and all five verifiers pass both signatures.
#  h2  white space between a field name and its colon (obsolete RFC 5322
#      4.5 syntax): sign refuses with 65 naming the field, verify too; the
#      engine puts such a message in failed/ with that reason.
#  h3  values rendered into tags follow RFC 6376's grammar: --identity,
#      --headers, --key d=/s= with CR, LF, ';', '=', '_', 8-bit, bad
#      hyphens or labels -> 64 with the reason and no output; a valid i=
#      still signs and verifies; the same in the engine's configuration
#      (esp_key, KeyTable, headers) -> 78 at start, no message touched.
#  h4  a '%' KeyTable entry with a From domain that is not a d= (b..c,
#      -bad-.example., an 8-bit name, a 248-character label): handled as
#      missing_key says (esp-only: the ESP signature alone, verified by
#      all; fail: failed/ with the reason; defer: left in in/new, 75).
#  h5  verify: 990 signatures over a 5 MB body take well under 3 s (one
#      body hash per canonicalization and l=, only the first 50 checked,
#      the rest "not-checked", not deciding the exit); control bytes from the message (an ESC in
#      d=) are printed as \xHH.
#  h6  signed output within our own limits: 999 fields + 2 signatures
#      (> max 1000) and a header block 400 bytes under 1 MiB are refused
#      with 65 (no output); 998 fields and a header block with room for
#      the signatures are signed and verify; in the engine a message of
#      1000 fields goes to failed/, not back to the queue.

step "h. trust edges"
H=$WORK/edges
mkdir -p "$H"
DNS=$WORK/dns.txt

# sign2 ARGS...: dkimpress sign with the customer RSA key on top of the
# ESP Ed25519 key, at T0
sign2() {
	"$DKIMPRESS" sign --key "$D1:rsa2048:$K/rsa2048.pem" --key "$D2:ed1:$K/ed1.pem" \
		--time "$T0" "$@"
}

# verify_all LIST PREFIX NSIGS NRSA: the five verifiers over LIST into
# PREFIX.VERIFIER (Mail::DKIM counts the RSA signatures only)
verify_all() {
	local list=$1 pre=$2 nsigs=$3 nrsa=$4
	"$PY" "$HERE/verify_dkimpy.py" --dns-file "$DNS" --expect "$nsigs" \
		--list "$list" >"$pre.dkimpy" 2>&1 &
	"$PERL" "$HERE/verify_maildkim.pl" --dns-file "$DNS" --expect "$nrsa" --rsa-only \
		--list "$list" >"$pre.maildkim" 2>&1 &
	"$ODKIM_VERIFY" --dns-file "$DNS" --expect "$nsigs" \
		--list "$list" >"$pre.odkim" 2>&1 &
	mailauth_verify --dns-file "$DNS" --expect "$nsigs" \
		--list "$list" >"$pre.mailauth" 2>&1 &
	dkimpress_verify_list "$list" "$pre.dkimpress" "$nsigs" "$DNS" &
	wait
}

# all_pass PREFIX N LABEL: every verifier's results at PREFIX.* have N
# lines, all "pass" (mailauth only when it runs)
all_pass() {
	local pre=$1 n=$2 label=$3 v got failures=""
	for v in dkimpy maildkim odkim mailauth dkimpress; do
		[ "$v" != mailauth ] || [ "$HAVE_MAILAUTH" = 1 ] || continue
		got=$(grep -c $'\tpass\t' "$pre.$v")
		if [ "$got" != "$n" ]; then
			failures+="    $v: $got of $n pass"$'\n'
			failures+=$(grep $'\tfail\t' "$pre.$v" | head -3 | cut -c1-400 | sed 's/^/      /')$'\n'
		fi
	done
	if [ -z "$failures" ]; then
		ok "$label"
	else
		bad "$label"
		printf '%s' "$failures"
	fi
}

# expect_exit WANT LABEL OUTFILE ERRFILE WORD...: the last command's exit
# status ($RC) is WANT, OUTFILE does not exist, ERRFILE holds every WORD
# and no CR or ESC (the reason is one printable line)
expect_exit() {
	local want=$1 label=$2 out=$3 err=$4 w why=""
	shift 4
	[ "$RC" = "$want" ] || why+=" exit $RC (want $want);"
	[ ! -e "$out" ] || why+=" $out was written;"
	for w in "$@"; do
		grep -qF -- "$w" "$err" || why+=" no '$w' in the error;"
	done
	! grep -q $'[\r\033]' "$err" || why+=" raw CR or ESC in the error;"
	if [ -z "$why" ]; then
		ok "$label"
	else
		bad "$label:$why $(head -c 300 "$err" | tr '\r\n' '  ')"
	fi
}

# ---------------------------------------------------------------- h1
# RFC 6376 3.4.1 (simple header) hashes the last field with its CRLF, as a
# receiver gets it; 3.4.3/3.4.4 hash no body and an empty body alike, so
# the empty line changes no hash (libopendkim 2.11 and mailauth need it).
mkdir -p "$H/e1/in"
printf 'From: Edge <edge@customer.example>\r\nTo: r@receiver.example\r\nSubject: header block without its final CRLF' \
	>"$H/e1/in/hdr-only-no-crlf.eml"
printf 'From: Edge <edge@customer.example>\nTo: r@receiver.example\nSubject: LF, no final LF' \
	>"$H/e1/in/hdr-only-no-lf.eml"
printf 'From: Edge <edge@customer.example>\r\nTo: r@receiver.example\r\nSubject: folded\r\n last line, no CRLF' \
	>"$H/e1/in/hdr-only-folded-no-crlf.eml"
: >"$H/e1.list"
failures=""
for canon in $CANONS; do
	cdir=${canon/\//-}
	mkdir -p "$H/e1/out/$cdir" "$H/e1/smtp/e1/$cdir"
	for f in "$H/e1/in"/*.eml; do
		name=${f##*/}
		out=$H/e1/out/$cdir/$name
		sign2 --canon "$canon" -o "$out" "$f" 2>"$H/e1.err"
		RC=$?
		if [ "$RC" != 0 ]; then
			failures+="    $canon $name: exit $RC: $(head -c 200 "$H/e1.err")"$'\n'
			continue
		fi
		[ "$(tail -c 4 "$out" | od -An -c | tr -d ' ')" = '\r\n\r\n' ] ||
			failures+="    $canon $name: the output does not end in CRLF CRLF (header block not closed)"$'\n'
		# SMTP delivery: a CRLF is added where the data does not end in one
		cp "$out" "$H/e1/smtp/e1/$cdir/$name"
		[ "$(tail -c 2 "$out" | od -An -c | tr -d ' ')" = '\r\n' ] ||
			printf '\r\n' >>"$H/e1/smtp/e1/$cdir/$name"
		echo "$H/e1/smtp/e1/$cdir/$name" >>"$H/e1.list"
	done
done
NE1=$(find "$H/e1/in" -name '*.eml' | wc -l)
if [ -z "$failures" ]; then
	ok "h1 sign a header block without its final CRLF ($NE1 messages x 4 canonicalizations): exit 0, the header block closed (CRLF CRLF)"
else
	bad "h1 sign a header block without its final CRLF"
	printf '%s' "$failures"
fi
verify_all "$H/e1.list" "$H/e1.v" 2 1
for canon in $CANONS; do
	for v in dkimpy maildkim odkim mailauth dkimpress; do
		[ "$v" != mailauth ] || [ "$HAVE_MAILAUTH" = 1 ] || continue
		judge "$v" dkimpress e1 "$canon" "$H/e1.v.$v" "$NE1" \
			"h1 $v passes both signatures of a header block signed without its final CRLF, as SMTP delivers it: $canon"
	done
done

# ---------------------------------------------------------------- h2
# "Name WSP :" is obsolete (RFC 5322 4.5): dkimpy cannot parse the message
# and libopendkim does not see "From<TAB>:" as From (a From that parsers
# disagree on is a spoofing vector), so 2 of 4 verifiers fail whatever we
# sign.  Refused, naming the field.
mkdir -p "$H/e2"
printf 'From: a@customer.example\r\nSubject : space before the colon\r\n\r\nbody\r\n' >"$H/e2/ws-subject.eml"
printf 'From\t: a@customer.example\r\nSubject: TAB before the colon of From\r\n\r\nbody\r\n' >"$H/e2/ws-from-tab.eml"
printf 'From : a@customer.example\nSubject: space before the colon of From, LF\n\nbody\n' >"$H/e2/ws-from-sp-lf.eml"
for t in ws-subject:Subject ws-from-tab:From ws-from-sp-lf:From; do
	f=$H/e2/${t%%:*}.eml
	sign2 -o "$H/e2/${t%%:*}.out" "$f" >/dev/null 2>"$H/e2.err"
	RC=$?
	expect_exit 65 "h2 sign ${t%%:*} (white space before the colon of ${t#*:}): exit 65 naming the field, no output" \
		"$H/e2/${t%%:*}.out" "$H/e2.err" "'${t#*:}'" "white space before its colon"
	"$DKIMPRESS" verify --dns-file "$DNS" "$f" >/dev/null 2>"$H/e2.err"
	RC=$?
	expect_exit 65 "h2 verify ${t%%:*}: exit 65 naming the field" \
		"$H/e2/none" "$H/e2.err" "'${t#*:}'"
done

# ---------------------------------------------------------------- h3
mkdir -p "$H/e3"
good=$C/01-basic-crlf.eml
h3() {	# h3 LABEL WORD ARGS...: sign ARGS must exit 64 naming WORD
	local label=$1 word=$2
	shift 2
	rm -f "$H/e3/out.eml"
	"$DKIMPRESS" sign "$@" --time "$T0" -o "$H/e3/out.eml" "$good" >/dev/null 2>"$H/e3.err"
	RC=$?
	expect_exit 64 "h3 sign $label: exit 64 with the reason, no output" \
		"$H/e3/out.eml" "$H/e3.err" "$word"
}
K1=(--key "$D1:rsa2048:$K/rsa2048.pem")
h3 "--identity with CR LF (header injection)" --identity "${K1[@]}" \
	--identity $'a\r\nX-Injected: yes@customer.example'
h3 "--identity with ';' (tag injection)" --identity "${K1[@]}" --identity 'a;l=0@customer.example'
h3 "--identity with '=' (dkim-quoted-printable)" --identity "${K1[@]}" --identity 'a=b@customer.example'
h3 "--identity without '@'" --identity "${K1[@]}" --identity 'customer.example'
h3 "--headers with ';l=0' (tag injection)" --headers "${K1[@]}" --headers 'From:Subject;l=0'
h3 "--headers with CR LF" --headers "${K1[@]}" --headers $'From:Subject\r\nX-Injected: yes'
h3 "--key d= with ';'" "--key" --key "customer.example;l=0:rsa2048:$K/rsa2048.pem"
h3 "--key d= 8-bit (not an A-label)" "--key" --key "ex"$'\xc3\xa4'"mple.com:rsa2048:$K/rsa2048.pem"
h3 "--key d= -bad-.example" "--key" --key "-bad-.example:rsa2048:$K/rsa2048.pem"
h3 "--key d= b..c" "--key" --key "b..c:rsa2048:$K/rsa2048.pem"
h3 "--key d= of one label" "--key" --key "localhost:rsa2048:$K/rsa2048.pem"
h3 "--key s= with ';'" "--key" --key "customer.example:rsa2048;l=0:$K/rsa2048.pem"
h3 "--key s= with '_'" "--key" --key "customer.example:rsa_2048:$K/rsa2048.pem"
# a valid i= still signs, and verifies
"$DKIMPRESS" sign "${K1[@]}" --identity news@mail.customer.example --time "$T0" \
	-o "$H/e3/ok.eml" "$good" 2>"$H/e3.err"
RC=$?
if [ "$RC" = 0 ] && grep -q 'i=news@mail.customer.example;' "$H/e3/ok.eml" &&
	"$PY" "$HERE/verify_dkimpy.py" --dns-file "$DNS" --expect 1 "$H/e3/ok.eml" >"$H/e3.v" 2>&1 &&
	"$DKIMPRESS" verify --dns-file "$DNS" "$H/e3/ok.eml" >>"$H/e3.v" 2>&1; then
	ok "h3 sign --identity news@mail.customer.example: i= rendered, dkimpy and dkimpress verify pass"
else
	bad "h3 sign --identity news@mail.customer.example: exit $RC: $(head -c 300 "$H/e3.err" "$H/e3.v" 2>/dev/null)"
fi

# the engine's configuration: 78 at start, the queued message untouched
EQ=$H/eq
engine_conf() {	# engine_conf NAME [LINES...]: $EQ/NAME/{conf,q/in/new/msg}
	local d=$EQ/$1
	shift
	mkdir -p "$d/q/in/tmp" "$d/q/in/new"
	cp "$good" "$d/q/in/new/msg1"
	{
		echo "queue_dir = $d/q"
		for l in "$@"; do echo "$l"; done
	} >"$d/conf"
}
h3run() {	# h3run LABEL NAME CONF-LINES...
	local label=$1 name=$2 d=$EQ/$2
	shift 2
	engine_conf "$name" "$@"
	"$DKIMPRESS" run -c "$d/conf" --once >/dev/null 2>"$d/err"
	RC=$?
	if [ "$RC" = 78 ] && [ -f "$d/q/in/new/msg1" ] && ! grep -q $'[\r\033]' "$d/err"; then
		ok "h3 engine $label: exit 78 at start, the message left in in/new"
	else
		bad "h3 engine $label: exit $RC (want 78), in/new: $(ls "$d/q/in/new" 2>/dev/null | tr '\n' ' '): $(head -c 300 "$d/err")"
	fi
}
ESPK="esp_key = $D2:rsa2048p1:$K/rsa2048p1.pem"
printf 'k1 ex\xc3\xa4mple.com:rsa2048:%s\n' "$K/rsa2048.pem" >"$H/kt-8bit"
printf 'k1 -bad-.example:rsa2048:%s\n' "$K/rsa2048.pem" >"$H/kt-hyphen"
printf 'k1 customer.example:rsa2048;l=0:%s\n' "$K/rsa2048.pem" >"$H/kt-semicolon"
printf '* k1\n' >"$H/st-all"
h3run "esp_key with d=-bad-.example" esp-d "esp_key = -bad-.example:rsa2048p1:$K/rsa2048p1.pem"
h3run "esp_key with s=rsa_2048" esp-s "esp_key = $D2:rsa_2048:$K/rsa2048p1.pem"
h3run "esp_key with d= of one label" esp-1 "esp_key = localhost:rsa2048p1:$K/rsa2048p1.pem"
h3run "KeyTable with an 8-bit domain" kt-8bit "$ESPK" "key_table = $H/kt-8bit" "signing_table = refile:$H/st-all"
h3run "KeyTable with d=-bad-.example" kt-hyphen "$ESPK" "key_table = $H/kt-hyphen" "signing_table = refile:$H/st-all"
h3run "KeyTable with ';' in the selector" kt-semi "$ESPK" "key_table = $H/kt-semicolon" "signing_table = refile:$H/st-all"
h3run "headers = From:Subject;l=0" headers "$ESPK" "headers = From:Subject;l=0"

# ---------------------------------------------------------------- h4
# '%' signs with the From domain as d=: one that is not an RFC 6376 3.5
# domain-name has no customer key; missing_key decides.
L248=$(printf 'a%.0s' $(seq 248))
cp "$DNS" "$H/dns4.txt"
grep '^rsa2048\._domainkey\.customer\.example' "$DNS" |
	sed 's/customer\.example/good.example/' >>"$H/dns4.txt"
printf 'kpct %%:rsa2048:%s\n' "$K/rsa2048.pem" >"$H/kt-pct"
printf '* kpct\n' >"$H/st-pct"
h4queue() {	# h4queue NAME [WITH_GOOD]: a queue of the bad From domains
	local q=$EQ/$1/q i=0 from
	mkdir -p "$q/in/tmp" "$q/in/new"
	for from in 'x@b..c' 'x@-bad-.example.' "u@ex"$'\xc3\xa4'"mple.com" "v@$L248.ex" ${2:+ok@good.example}; do
		i=$((i + 1))
		printf 'From: %s\r\nTo: r@receiver.example\r\nSubject: %%-key edge %d\r\n\r\nbody %d\r\n' \
			"$from" "$i" "$i" >"$q/in/new/m$i"
	done
	{
		echo "queue_dir = $q"
		echo "$ESPK"
		echo "key_table = $H/kt-pct"
		echo "signing_table = refile:$H/st-pct"
		echo "missing_key = $3"
	} >"$EQ/$1/conf"
}
h4queue pct-esp-only 1 esp-only
"$DKIMPRESS" run -c "$EQ/pct-esp-only/conf" --once >/dev/null 2>"$EQ/pct-esp-only/err"
RC=$?
q=$EQ/pct-esp-only/q
# the d= of each signature, top first, per output file
dlist() { tr -d '\r' <"$1" | sed -n '/^$/q;p' | sed -n 's/.*[;[:space:]]d=\([^;]*\);.*/\1/p' | tr '\n' ' '; }
failures=""
[ "$RC" = 0 ] || failures+="    exit $RC: $(head -c 300 "$EQ/pct-esp-only/err")"$'\n'
: >"$H/e4.one"
for i in 1 2 3 4; do
	if [ ! -f "$q/out/new/m$i" ]; then
		failures+="    m$i not in out/new"$'\n'
	elif [ "$(dlist "$q/out/new/m$i")" != "esp.example " ]; then
		failures+="    m$i ($(grep -m1 '^From:' "$q/out/new/m$i" | head -c 60 | tr -d '\r' | cat -v)): signatures d= $(dlist "$q/out/new/m$i" | cat -v| head -c 200), want the ESP's alone"$'\n'
	fi
	echo "$q/out/new/m$i" >>"$H/e4.one"
done
[ "$(dlist "$q/out/new/m5" 2>/dev/null)" = "good.example esp.example " ] ||
	failures+="    m5 (ok@good.example): d= $(dlist "$q/out/new/m5" 2>/dev/null), want good.example then esp.example"$'\n'
if [ -z "$failures" ]; then
	ok "h4 '%' KeyTable, missing_key = esp-only: From domains b..c, -bad-.example., 8-bit, 248-character label get the ESP signature alone; good.example gets d=good.example on top"
else
	bad "h4 '%' KeyTable, missing_key = esp-only"
	printf '%s' "$failures"
fi
DNS_SAVE=$DNS
DNS=$H/dns4.txt
echo "$q/out/new/m5" >"$H/e4.two"
verify_all "$H/e4.one" "$H/e4.v1" 1 1
verify_all "$H/e4.two" "$H/e4.v2" 2 2
DNS=$DNS_SAVE
all_pass "$H/e4.v1" 4 "h4 every verifier passes the ESP signature of the 4 messages with an invalid From domain"
all_pass "$H/e4.v2" 1 "h4 every verifier passes both signatures of the good.example message"
h4queue pct-fail "" fail
"$DKIMPRESS" run -c "$EQ/pct-fail/conf" --once >/dev/null 2>"$EQ/pct-fail/err"
RC=$?
q=$EQ/pct-fail/q
nfailed=$(find "$q/failed" -name 'm?' 2>/dev/null | wc -l)
nreason=$(grep -l 'not a valid d=' "$q"/failed/m?.reason 2>/dev/null | wc -l)
if [ "$RC" = 65 ] && [ "$nfailed" = 4 ] && [ "$nreason" = 4 ] &&
	[ "$(find "$q/out/new" -type f 2>/dev/null | wc -l)" = 0 ] &&
	! grep -q $'[\033\x80-\xff]' "$q"/failed/m?.reason; then
	ok "h4 '%' KeyTable, missing_key = fail: the 4 messages in failed/ with the reason (From domain not a valid d=, escaped), exit 65"
else
	bad "h4 '%' KeyTable, missing_key = fail: exit $RC, $nfailed in failed/, $nreason reasons name it: $(cat "$q"/failed/m?.reason 2>/dev/null | head -c 300)"
fi
h4queue pct-defer "" defer
"$DKIMPRESS" run -c "$EQ/pct-defer/conf" --once >/dev/null 2>"$EQ/pct-defer/err"
RC=$?
q=$EQ/pct-defer/q
if [ "$RC" = 75 ] && [ "$(find "$q/in/new" -type f | wc -l)" = 4 ] &&
	[ "$(find "$q/out/new" -type f 2>/dev/null | wc -l)" = 0 ]; then
	ok "h4 '%' KeyTable, missing_key = defer: the 4 messages stay in in/new, exit 75"
else
	bad "h4 '%' KeyTable, missing_key = defer: exit $RC, in/new $(find "$q/in/new" -type f | wc -l), out/new $(find "$q/out/new" -type f 2>/dev/null | wc -l)"
fi

# ---------------------------------------------------------------- h5
# RFC 6376 6.1: a verifier may limit the signatures it checks.  One body
# hash per (canonicalization, l=); the first 50 checked.
mkdir -p "$H/e5"
"$PY" - "$H/e5/big.eml" <<'PYEOF'
import sys
line = b'x' * 70 + b'\r\n'
body = line * (5 * 1024 * 1024 // len(line))
open(sys.argv[1], 'wb').write(b'From: Big <big@customer.example>\r\nSubject: 5 MB\r\n\r\n' + body)
PYEOF
"$DKIMPRESS" sign "${K1[@]}" --time "$T0" -o "$H/e5/big.signed" "$H/e5/big.eml" 2>"$H/e5.err"
"$PY" - "$H/e5/big.signed" "$H/e5/many.eml" <<'PYEOF'
import sys
d = open(sys.argv[1], 'rb').read()
i = d.index(b'\r\nFrom:') + 2
open(sys.argv[2], 'wb').write(d[:i] * 990 + d[i:])
PYEOF
t0=$(date +%s%N)
"$DKIMPRESS" verify --dns-file "$DNS" "$H/e5/many.eml" >"$H/e5.out" 2>"$H/e5.verr"
RC=$?
ms=$((($(date +%s%N) - t0) / 1000000))
h5pass=$(grep -c '^pass d=customer.example s=rsa2048 a=rsa-sha256$' "$H/e5.out")
h5not=$(grep -c '^not-checked d=customer.example s=rsa2048 a=rsa-sha256 over the limit of 50 signatures$' "$H/e5.out")
if [ "$ms" -lt 3000 ] && [ "$RC" = 0 ] && [ "$h5pass" = 50 ] && [ "$h5not" = 14 ] &&
	[ "$(head -50 "$H/e5.out" | grep -c '^pass')" = 50 ] &&
	[ "$(tail -1 "$H/e5.out")" = "not-checked: 926 more signatures over the limit of 50" ] &&
	grep -q "990 signatures; only the first 50 are checked" "$H/e5.verr"; then
	ok "h5 verify 990 signatures over a 5 MB body: $ms ms (< 3000), the first 50 pass, the rest 'not-checked' with a warning naming the limit, exit 0"
else
	bad "h5 verify 990 signatures over a 5 MB body: $ms ms (want < 3000), exit $RC, $h5pass pass (want 50), $h5not 'not checked' lines (want 14): $(sort "$H/e5.out" | uniq -c | head -5 | tr '\n' ' ')"
fi
printf 'DKIM-Signature: v=1; a=rsa-sha256; d=esc\033[31mred.example; s=x\033[0m\a;\r\n h=From; bh=AAAA; b=AAAA\r\nFrom: a@customer.example\r\n\r\nbody\r\n' \
	>"$H/e5/esc.eml"
"$DKIMPRESS" verify --dns-file "$DNS" "$H/e5/esc.eml" >"$H/e5.esc" 2>&1
if ! grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$H/e5.esc" && grep -qF 'd=esc\x1b[31mred.example' "$H/e5.esc" &&
	grep -qF 's=x\x1b[0m\x07' "$H/e5.esc"; then
	ok "h5 verify prints an ESC and a BEL from d= and s= as \\x1b and \\x07: $(head -c 120 "$H/e5.esc")"
else
	bad "h5 verify prints control bytes from the message raw: $(cat -v "$H/e5.esc" | head -c 300)"
fi

# ---------------------------------------------------------------- h6
# what we write must pass our own limits (1000 fields, 1 MiB header block)
mkdir -p "$H/e6"
"$PY" - "$H/e6" <<'PYEOF'
import sys
d = sys.argv[1]
def fields(n, name):
    h = b'From: Many <many@customer.example>\r\nSubject: %d fields\r\n' % n
    h += b''.join(b'X-F%d: v\r\n' % i for i in range(n - 2))
    open('%s/%s' % (d, name), 'wb').write(h + b'\r\nbody\r\n')
fields(999, 'f999.eml')
fields(998, 'f998.eml')
fields(1000, 'f1000.eml')
def block(under, name):
    # a header block (with its empty line) of 1 MiB - under bytes
    target = 1024 * 1024 - under - 2
    h = b'From: Big <big@customer.example>\r\nSubject: big header block\r\n'
    while len(h) < target:
        room = target - len(h)
        f = b'X-P: v\r\n'
        while len(f) + 78 <= min(room, 8000):
            f += b'\t' + b'y' * 75 + b'\r\n'
        if len(f) > room or room - len(f) < 12:
            f = b'X-Q: ' + b'z' * (room - 7) + b'\r\n'
        h += f
    assert len(h) == target, (len(h), target)
    open('%s/%s' % (d, name), 'wb').write(h + b'\r\nbody\r\n')
block(400, 'hb400.eml')
block(4000, 'hb4000.eml')
PYEOF
for t in f999:"limit of 1000 fields" hb400:"header block"; do
	sign2 -o "$H/e6/${t%%:*}.out" "$H/e6/${t%%:*}.eml" >/dev/null 2>"$H/e6.err"
	RC=$?
	expect_exit 65 "h6 sign ${t%%:*} with 2 keys: the signed result would exceed the limits: exit 65, no output" \
		"$H/e6/${t%%:*}.out" "$H/e6.err" "${t#*:}"
done
for t in f998 hb4000; do
	sign2 -o "$H/e6/$t.out" "$H/e6/$t.eml" 2>"$H/e6.err"
	RC=$?
	if [ "$RC" = 0 ] && "$DKIMPRESS" verify --dns-file "$DNS" "$H/e6/$t.out" >"$H/e6.v" 2>&1 &&
		[ "$(grep -c '^pass' "$H/e6.v")" = 2 ]; then
		ok "h6 sign $t with 2 keys: fits, and dkimpress verify passes both signatures"
	else
		bad "h6 sign $t with 2 keys: exit $RC: $(head -c 200 "$H/e6.err") $(head -c 300 "$H/e6.v")"
	fi
done

# the engine: h2 and h6 end in failed/ (permanent), h1 is signed
q=$EQ/msgs/q
mkdir -p "$q/in/tmp" "$q/in/new"
cp "$H/e2/ws-subject.eml" "$q/in/new/ws1"
cp "$H/e2/ws-from-tab.eml" "$q/in/new/ws2"
cp "$H/e6/f1000.eml" "$q/in/new/f1000"
cp "$H/e1/in/hdr-only-no-crlf.eml" "$q/in/new/hdr"
printf 'queue_dir = %s\n%s\n' "$q" "$ESPK" >"$EQ/msgs/conf"
"$DKIMPRESS" run -c "$EQ/msgs/conf" --once >/dev/null 2>"$EQ/msgs/err"
RC=$?
failures=""
[ "$RC" = 65 ] || failures+="    exit $RC (want 65): $(head -c 300 "$EQ/msgs/err")"$'\n'
grep -qs "'Subject'.*white space before its colon" "$q/failed/ws1.reason" ||
	failures+="    ws1 (Subject :): not in failed/ with the reason: $(head -c 200 "$q/failed/ws1.reason" 2>&1)"$'\n'
grep -qs "'From'.*white space before its colon" "$q/failed/ws2.reason" ||
	failures+="    ws2 (From<TAB>:): not in failed/ with the reason: $(head -c 200 "$q/failed/ws2.reason" 2>&1)"$'\n'
grep -qs "limit of 1000 fields" "$q/failed/f1000.reason" ||
	failures+="    f1000 (1000 fields): not in failed/ with the reason: $(head -c 200 "$q/failed/f1000.reason" 2>&1)"$'\n'
[ -f "$q/out/new/hdr" ] || failures+="    hdr (header block without its final CRLF): not in out/new"$'\n'
if [ -z "$failures" ]; then
	ok "h2/h6 engine: white space before a colon and a signed result over 1000 fields go to failed/ with their reasons; h1's message is signed"
else
	bad "h2/h6 engine"
	printf '%s' "$failures"
fi
if [ -f "$q/out/new/hdr" ]; then
	echo "$q/out/new/hdr" >"$H/e1e.list"
	DNS=$DNS_SAVE
	verify_all "$H/e1e.list" "$H/e1e.v" 1 1
	all_pass "$H/e1e.v" 1 "h1 engine: every verifier passes the ESP signature of the header block signed without its final CRLF"
fi
