/* cli.c — parse the command line; see cli.h. */
#include "cmd/cli.h"
#include "cmd/bench.h"
#include "cmd/check.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

static const char usage_main[] =
	"usage: dkimpress COMMAND [OPTIONS]\n"
	"\n"
	"DKIM-sign mail in bulk (RFC 6376, RFC 8301, RFC 8463).\n"
	"\n"
	"commands:\n"
	"  sign     add DKIM-Signature fields to one message\n"
	"  verify   check every DKIM-Signature of a message\n"
	"  keygen   make a signing key and its DNS TXT record\n"
	"  run      the batch engine: sign a queue directory (dkimpress.conf(5))\n"
	"  enqueue  hand one message to the queue (a producer; Postfix pipe(8))\n"
	"  relay    deliver the signed messages of out/new over SMTP or LMTP\n"
	"  check    every signing key of a configuration against its DNS record\n"
	"  bench    measure the engine against the crypto and I/O bounds\n"
	"  help     this text; 'dkimpress COMMAND --help' for a command\n"
	"\n"
	"'dkimpress --version' prints the version. See dkimpress(1).\n";

static const char usage_sign[] =
	"usage: dkimpress sign --key DOMAIN:SELECTOR:KEYFILE [--key ...]\n"
	"                      [--canon H/B] [--headers h1:h2:...]\n"
	"                      [--identity AUID] [--time UNIX] [--expire SECONDS]\n"
	"                      [--insecure-key-perms] [--rsa-backend B] [-o OUT]\n"
	"                      [FILE]\n"
	"\n"
	"Writes the new DKIM-Signature fields, then the message (FILE or standard\n"
	"input; bare LF becomes CRLF) to OUT or standard output. One signature per\n"
	"--key, in the order given, the first on top. RSA keys sign rsa-sha256,\n"
	"Ed25519 keys ed25519-sha256.\n"
	"\n"
	"  -k, --key D:S:FILE     sign for domain D, selector S with the PEM key\n"
	"                         in FILE (mode 0600; RSA >= 1024 bits or Ed25519)\n"
	"  -c, --canon H/B        simple or relaxed for header/body\n"
	"                         (default relaxed/relaxed)\n"
	"  -H, --headers LIST     sign exactly these fields (colon-separated, must\n"
	"                         include From); default: the RFC 6376 5.4.1 list\n"
	"                         plus Message-ID, MIME-Version, Content-*,\n"
	"                         List-Unsubscribe(-Post), Feedback-ID, each\n"
	"                         present one oversigned\n"
	"  -i, --identity AUID    add i=AUID to the signatures whose d= covers it\n"
	"  -t, --time UNIX        t= value (default: now)\n"
	"  -x, --expire SECONDS   add x= = t + SECONDS\n"
	"      --insecure-key-perms  accept key files group/others can read\n"
	"      --rsa-backend B    auto (default: RSA-2048 signatures eight at a\n"
	"                         time with AVX-512 IFMA when there are three or\n"
	"                         more and the CPU has it), openssl or ifma; every\n"
	"                         signature is checked with its public key first\n"
	"  -o, --output OUT       write OUT atomically (no partial file on error)\n"
	"\n"
	"exit: 0 ok, 64 usage, 65 malformed message, 66 unreadable input,\n"
	"      73 cannot create OUT, 74 I/O error, 78 key error\n";

static const char usage_verify[] =
	"usage: dkimpress verify [--dns-file FILE] [--time UNIX] [MESSAGE]\n"
	"\n"
	"Verifies every DKIM-Signature field of MESSAGE (or standard input) and\n"
	"prints one line per signature, top first:\n"
	"  pass|fail|temperror|permerror d=DOMAIN s=SELECTOR a=ALG [reason]\n"
	"Only the first 50 are checked (the rest: permerror, not checked); bytes\n"
	"that are not printable ASCII are shown as \\xHH.\n"
	"\n"
	"  -d, --dns-file FILE  key records from FILE, lines\n"
	"                       SELECTOR._domainkey.DOMAIN<TAB>TXT-RECORD;\n"
	"                       without it the system resolver is asked\n"
	"  -t, --time UNIX      the current time for x= (default: now)\n"
	"\n"
	"exit: 0 all signatures pass, 1 a signature fails or there is none,\n"
	"      75 only temporary errors, 65 malformed message, 66 unreadable\n";

static const char usage_keygen[] =
	"usage: dkimpress keygen --domain D --selector S [--type rsa|ed25519]\n"
	"                        [--bits N] [--out DIR]\n"
	"\n"
	"Writes DIR/S.private (PKCS#8 PEM, mode 0600, never overwritten) and\n"
	"DIR/S.txt (the DNS TXT record in zone-file form, split into 255-byte\n"
	"strings), and prints the record as one --dns-file line on standard\n"
	"output.\n"
	"\n"
	"  -d, --domain D      the signing domain (d=)\n"
	"  -s, --selector S    the selector (s=)\n"
	"  -t, --type T        rsa (default) or ed25519\n"
	"  -b, --bits N        RSA size, 1024..16384 (default 2048)\n"
	"  -o, --out DIR       where to write (default: .)\n";

static const char usage_relay[] =
	"usage: dkimpress relay -c CONF [--once] [--set KEY=VALUE ...]\n"
	"\n"
	"Takes each signed message out of the output queue (out/new, by rename)\n"
	"and delivers it over SMTP or LMTP to relay_host: the envelope from its\n"
	"x-sender / x-receiver lines (removed; the rest is sent byte for byte),\n"
	"relay_connections persistent connections, PIPELINING, CHUNKING, 8BITMIME,\n"
	"SMTPUTF8, SIZE and STARTTLS (relay_tls). Per recipient: 2xx done, 4xx\n"
	"retried on the relay_retry schedule (state on disk in out/defer), 5xx to\n"
	"the failed directory with the server's reply as the reason. A file is\n"
	"deleted only once every recipient was accepted. Several relays may share\n"
	"one queue. See dkimpress.conf(5) (relay_*) and docs/integration.md.\n"
	"With transport = jetstream it reads out_stream through its durable\n"
	"consumer relay_consumer instead (envelope in X-Sender / X-Receiver);\n"
	"a message is ACKed only after every recipient got 2xx, or once what\n"
	"replaces it is published (5xx: failed_subject; 4xx: a NAK, or the\n"
	"remaining recipients republished). See docs/scale-out.md.\n"
	"\n"
	"  -c, --config CONF   the configuration file (required)\n"
	"      --once          deliver what is due now and exit (deferred\n"
	"                      messages stay in out/defer); without it, watch\n"
	"                      out/new (inotify) until SIGTERM or SIGINT\n"
	"      --set K=V       a setting over CONF's (repeatable), e.g.\n"
	"                      --set relay_host=127.0.0.1:2525\n"
	"\n"
	"SIGTERM/SIGINT: take nothing new, finish the transactions in hand\n"
	"(each step bounded by relay_timeout), leave nothing in out/relay, exit 0.\n"
	"Exit: 0 done, 75 a message was deferred (--once), 78 configuration.\n";

static const char usage_run[] =
	"usage: dkimpress run -c CONF [--once] [--set KEY=VALUE ...]\n"
	"                     [--stats FILE] [--no-sign]\n"
	"\n"
	"The batch engine. Takes messages from the input queue directory, signs\n"
	"each twice (the customer's key chosen from the From address through the\n"
	"SigningTable, then the ESP key) and publishes them, crash-safely, into\n"
	"the output queue directory, exactly once even while a consumer empties\n"
	"out/new and whatever kills the engine. Messages that cannot be signed go\n"
	"to the failed directory with a .reason file. Several engines may share\n"
	"one queue. Envelope lines (x-sender:, x-receiver:) stay on top,\n"
	"unsigned. See dkimpress.conf(5) and docs/queue.md.\n"
	"\n"
	"  -c, --config CONF   the configuration file (required)\n"
	"      --once          drain the queue and exit; without it, watch the\n"
	"                      queue (inotify) until SIGTERM or SIGINT\n"
	"      --set K=V       a setting over CONF's (repeatable), e.g.\n"
	"                      --set threads=4 --set batch=64\n"
	"      --stats FILE    write the run's figures (counts, seconds,\n"
	"                      latency p50/p99) to FILE as JSON at the end\n"
	"      --no-sign       benchmark only: copy messages to the output queue\n"
	"                      UNSIGNED, to measure the queue path alone\n"
	"\n"
	"Signals: SIGHUP reloads CONF (a broken one keeps the old running);\n"
	"SIGTERM/SIGINT stop claiming, finish what is in hand and exit.\n"
	"\n"
	"Operating: metrics_listen = HOST:PORT in CONF serves Prometheus text at\n"
	"/metrics while it runs (the same counters as the summary); under systemd\n"
	"(Type=notify) it reports READY=1, RELOADING=1 and STOPPING=1 through\n"
	"sd_notify; log = syslog sends diagnostics to syslog (LOG_MAIL) instead of\n"
	"stderr. See docs/operations.md.\n"
	"\n"
	"transport = jetstream in CONF: no queue directories; every engine (on any\n"
	"machine) pulls batches from one durable consumer of in_stream (NATS\n"
	"JetStream), publishes the signed copies to out_subject (failed ones to\n"
	"failed_subject, reason in X-Dkimpress-Error), waits for every publish\n"
	"acknowledgement, then acknowledges the inputs; deferred ones are NAK'd\n"
	"with a delay. Missing streams are made (create_streams = no: exit 78);\n"
	"an unreachable cluster is waited for (with --once: exit 75).\n"
	"See docs/scale-out.md.\n"
	"\n"
	"exit: 0 all signed, 65 some failed, 75 some left queued (deferred, or\n"
	"      stopped by a signal first) (--once); 74 I/O or 77 permission: the\n"
	"      queue cannot be worked; 78 configuration or key error, 66 CONF missing;\n"
	"      71 cannot start (threads, or metrics_listen cannot be listened on)\n";

static const char usage_bench[] =
	"usage: dkimpress bench -c CONF --corpus DIR [--work DIR]\n"
	"                       [--phases crypto,io,engine] [--messages N]\n"
	"                       [--seconds S] [--repeat N] [--set KEY=VALUE ...]\n"
	"                       [--label TEXT] [--json FILE] [--keep]\n"
	"\n"
	"Measures, on this machine and in one run, how close the engine comes to\n"
	"what the hardware allows for CONF's keys and settings:\n"
	"  crypto  signatures/s of CONF's keys (ESP key and customer keys in\n"
	"          turn) on all worker threads, through the engine's own OpenSSL\n"
	"          contexts; half of it is the double-signed messages/s bound.\n"
	"          With rsa_backend auto or ifma on an AVX-512 IFMA CPU, RSA-2048\n"
	"          signatures go eight at a time (16 per call), each checked, as\n"
	"          the engine makes them; --set rsa_backend=openssl for OpenSSL's\n"
	"          one-at-a-time bound\n"
	"  io      the engine's queue path with signing switched off (run\n"
	"          --no-sign): claim, read, write, flush, publish, retire\n"
	"  engine  the engine itself (run --once)\n"
	"  engineN N engines on one queue: N run --once processes started at\n"
	"          once (each with CONF's threads); msg/s over the wall time from\n"
	"          the start to the last exit, CPU and RSS summed, p50 the median\n"
	"          of the engines' p50s, p99 the largest p99 (N = 1..16)\n"
	"Each queue phase runs as a separate dkimpress run process on a scratch\n"
	"queue under the work directory, filled with hard links to the corpus\n"
	"messages (DIR/msgs/* or DIR/*), and reports messages/s, MB/s, CPU\n"
	"seconds per 1,000 messages, peak RSS, claim-to-durable latency p50/p99\n"
	"and the ratio to min(crypto, io). With --repeat, phases alternate and the\n"
	"median run of each is reported.\n"
	"\n"
	"  -c, --config CONF   the configuration (keys, threads, batch, ...)\n"
	"      --corpus DIR    the messages to sign\n"
	"      --work DIR      scratch queues (default: QUEUE_DIR.bench, beside\n"
	"                      the configured queue, on the same filesystem)\n"
	"      --phases LIST   any of crypto, io, engine, engineN (default:\n"
	"                      crypto,io,engine)\n"
	"      --messages N    queue N messages, cycling the corpus (default:\n"
	"                      each corpus message once)\n"
	"      --seconds S     crypto phase length (default 3)\n"
	"      --repeat N      run each phase N times (default 1)\n"
	"      --set K=V       a setting over CONF's (repeatable)\n"
	"      --label TEXT    name the rows (default: CONF's file name)\n"
	"      --json FILE     append the rows to FILE, one JSON object a line\n"
	"      --keep          keep the scratch queues (kept anyway, with the\n"
	"                      logs, when a phase fails)\n"
	"\n"
	"exit: 0 measured, 1 a phase did not sign everything, 64 usage,\n"
	"      78 configuration or key error\n";

static const char usage_enqueue[] =
	"usage: dkimpress enqueue -c CONF [-f SENDER] [-r RCPT]... [FILE]\n"
	"\n"
	"Hands one message (FILE or standard input) to the queue of CONF: writes\n"
	"it as in/tmp/ID (mode 0600), flushes it, renames it into in/new/ID (never\n"
	"over anything), flushes in/new and prints the new queue ID. With -f and\n"
	"-r the envelope goes first, as the lines of the PowerMTA pickup format,\n"
	"\"x-sender: SENDER\" and one \"x-receiver: RCPT\" per -r (CRLF); the message\n"
	"bytes follow unchanged. No terminal is needed: it works as a Postfix\n"
	"pipe(8) command.\n"
	"\n"
	"  -c, --config CONF       the configuration (only in_dir or queue_dir and\n"
	"                          max_message_size are used)\n"
	"  -f, --sender ADDR       envelope sender; '' or '<>' is the null sender\n"
	"  -r, --recipient ADDR    envelope recipient, repeatable; -f and -r go\n"
	"                          together\n"
	"\n"
	"An address is local@domain or <local@domain>, at most 320 bytes, with no\n"
	"space, control character or stray '<' '>'. The whole file (envelope\n"
	"lines and message) must fit in max_message_size; reading stops there.\n"
	"\n"
	"Postfix master.cf (with dkimpress_destination_recipient_limit = 1 in\n"
	"main.cf; see docs/integration.md):\n"
	"  dkimpress unix - n n - - pipe flags=q null_sender= user=dkimpress\n"
	"    argv=/usr/local/bin/dkimpress enqueue -c /etc/dkimpress/dkimpress.conf\n"
	"    -f ${sender} -r ${recipient}\n"
	"\n"
	"exit: 0 queued (the ID on standard output), 64 usage or bad address,\n"
	"      65 empty or too big message, 66 FILE unreadable, 73 cannot create\n"
	"      in in/tmp, 74 I/O error, 75 temporary (disk full: retry later),\n"
	"      78 configuration error. On failure nothing is left in in/tmp and\n"
	"      nothing appears in in/new.\n"
	"\n"
	"With transport = jetstream in CONF the message is published to in_subject\n"
	"(envelope in the X-Sender and X-Receiver headers, the new ID in\n"
	"Nats-Msg-Id) and acknowledged by the stream, retried with the same ID for\n"
	"up to 10 s; 75 when the cluster cannot be reached or does not answer.\n";

static const char usage_check[] =
	"usage: dkimpress check -c CONF [--dns-file FILE] [--json]\n"
	"                       [--timeout S] [--concurrency N]\n"
	"\n"
	"Checks the ESP key and every KeyTable key of CONF against its DNS key\n"
	"record SELECTOR._domainkey.DOMAIN: loads the private key (as run does,\n"
	"with the same permission checks), derives the public key and compares\n"
	"it with the record's p=. A KeyTable domain '%' is checked for each\n"
	"concrete domain the SigningTable routes to it (else: skipped). One line\n"
	"per key, then \"N keys: N ok, N missing, ...\":\n"
	"  ok         the record holds this key\n"
	"  missing    no record (NXDOMAIN or no TXT): publish it first, do not\n"
	"             switch the KeyTable to this key yet\n"
	"  mismatch   the record holds another key (or k=, h=, s= exclude it)\n"
	"  revoked    the record's p= is empty\n"
	"  testing    the key matches, but the record says t=y\n"
	"  weak       the key matches, but it is RSA under 2048 bits\n"
	"  syntax     the record does not parse (or several TXT records)\n"
	"  temperror  the lookup failed (timeout, SERVFAIL): try again\n"
	"  keyerror   the private key cannot be loaded\n"
	"  skipped    '%' key with no concrete domain in the SigningTable\n"
	"When several apply, the first in this list wins: keyerror, skipped,\n"
	"temperror, missing, syntax, revoked, mismatch, weak, testing.\n"
	"\n"
	"  -c, --config CONF      the configuration (esp_key, key_table, ...)\n"
	"  -d, --dns-file FILE    records from FILE (lines NAME<TAB>RECORD, as\n"
	"                         verify and keygen; a record TEMPERROR fails the\n"
	"                         lookup); without it the system resolver\n"
	"      --json             one JSON document instead of lines\n"
	"      --timeout S        seconds per DNS attempt (default 5, 2 attempts)\n"
	"      --concurrency N    DNS lookups at once (default 64, max 1024)\n"
	"\n"
	"exit: 0 every key ok (skipped ones aside), 1 a key has a problem,\n"
	"      75 only temporary DNS errors, 64 usage, 66 FILE missing,\n"
	"      78 configuration error\n";

const char *dkp_cli_usage(enum dkp_cmd cmd)
{
	switch (cmd) {
	case DKP_CMD_SIGN: return usage_sign;
	case DKP_CMD_VERIFY: return usage_verify;
	case DKP_CMD_KEYGEN: return usage_keygen;
	case DKP_CMD_RUN: return usage_run;
	case DKP_CMD_BENCH: return usage_bench;
	case DKP_CMD_ENQUEUE: return usage_enqueue;
	case DKP_CMD_RELAY: return usage_relay;
	case DKP_CMD_CHECK: return usage_check;
	default: return usage_main;
	}
}

static int parse_int64(const char *s, int64_t *v, int64_t min, int64_t max)
{
	char *end;
	long long x;

	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno || end == s || *end || x < min || x > max)
		return -1;
	*v = x;
	return 0;
}

/* A printable copy of an argument for an error message (\xHH escapes). */
#define ESC(s, buf) dkp_sigfmt_escape((s), strlen(s), (buf), sizeof(buf))

/*
 * --key D:S:FILE. d= and s= are rendered into the signature, so they must
 * fit RFC 6376's grammar (dkim/sigfmt.h): a d= of two or more labels, a
 * selector of one or more, each of letters, digits and inner '-'.
 */
static int parse_key(struct dkp_cli_key *k, const char *arg,
		     struct dkp_err *err)
{
	const char *c1 = strchr(arg, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	char esc[200];

	if (c2 == NULL || c2[1] == '\0')
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--key wants DOMAIN:SELECTOR:KEYFILE, got '%s'",
				   ESC(arg, esc));
	if (!dkp_sigfmt_domain_ok(arg, (size_t)(c1 - arg)) ||
	    (size_t)(c1 - arg) >= sizeof(k->domain))
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--key: invalid domain '%s' (d= wants a domain name of two or more labels of letters, digits and inner '-', RFC 6376 3.5; IDNs as xn-- A-labels)",
				   dkp_sigfmt_escape(arg, (size_t)(c1 - arg), esc,
						     sizeof(esc)));
	if (!dkp_sigfmt_selector_ok(c1 + 1, (size_t)(c2 - c1 - 1)) ||
	    (size_t)(c2 - c1 - 1) >= sizeof(k->selector))
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--key: invalid selector '%s' (s= wants labels of letters, digits and inner '-', RFC 6376 3.1)",
				   dkp_sigfmt_escape(c1 + 1, (size_t)(c2 - c1 - 1),
						     esc, sizeof(esc)));
	memcpy(k->domain, arg, (size_t)(c1 - arg));
	k->domain[c1 - arg] = '\0';
	memcpy(k->selector, c1 + 1, (size_t)(c2 - c1 - 1));
	k->selector[c2 - c1 - 1] = '\0';
	for (char *p = k->domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	k->path = c2 + 1;
	return DKP_OK;
}

/* --headers h1:h2:...: each name goes into h=, so no ';' (it would end
 * the tag), no white space or control byte (RFC 6376 3.5 hdr-name). */
static int parse_headers(struct dkp_cli *c, const char *arg,
			 struct dkp_err *err)
{
	char *p, *tok, *save = NULL, esc[200];

	dkp_free(c->headers_buf);
	c->headers_buf = dkp_strdup(arg);
	c->nheaders = 0;
	for (p = c->headers_buf; (tok = strtok_r(p, ":", &save)) != NULL;
	     p = NULL) {
		if (!dkp_sigfmt_hname_ok(tok, strlen(tok)))
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "--headers: bad field name '%s' (printable US-ASCII except ':' and ';', RFC 6376 3.5)",
					   ESC(tok, esc));
		if (c->nheaders == DKP_CLI_MAX_HEADERS)
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "--headers: more than %d names",
					   DKP_CLI_MAX_HEADERS);
		c->headers[c->nheaders++] = tok;
	}
	if (c->nheaders == 0)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--headers: empty list");
	return DKP_OK;
}

/* --identity AUID: rendered as i=, so RFC 6376 3.5's [local-part] "@"
 * domain-name, with no CR, LF, ';' or '=' to end the tag or the line. */
static int parse_identity(struct dkp_cli *c, const char *arg,
			  struct dkp_err *err)
{
	char esc[400];

	if (!dkp_sigfmt_auid_ok(arg, strlen(arg)))
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--identity: '%s' is not an i= value (RFC 6376 3.5: [local-part]@domain, the local part at most 64 of RFC 5322 atext except '=', dot-separated; the domain as for d=)",
				   ESC(arg, esc));
	c->identity = arg;
	return DKP_OK;
}

enum { OPT_INSECURE = 256, OPT_RSA_BACKEND };

static int bad_arg(struct dkp_err *err, const char *opt, const char *arg)
{
	char esc[200];

	return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
			   "invalid value for %s: '%s'", opt, ESC(arg, esc));
}

/* The optional message file after the options; at most one. */
static int message_arg(struct dkp_cli *c, int argc, char **argv,
		       const char *cmd, struct dkp_err *err)
{
	if (optind < argc)
		c->in = argv[optind++];
	if (optind < argc)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "%s takes one message; extra argument '%s'",
				   cmd, argv[optind]);
	return DKP_OK;
}

static int parse_sign(struct dkp_cli *c, int argc, char **argv,
		      struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "canon", required_argument, NULL, 'c' },
		{ "headers", required_argument, NULL, 'H' },
		{ "identity", required_argument, NULL, 'i' },
		{ "time", required_argument, NULL, 't' },
		{ "expire", required_argument, NULL, 'x' },
		{ "output", required_argument, NULL, 'o' },
		{ "insecure-key-perms", no_argument, NULL, OPT_INSECURE },
		{ "rsa-backend", required_argument, NULL, OPT_RSA_BACKEND },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o, rc;

	while ((o = getopt_long(argc, argv, "+k:c:H:i:t:x:o:h", lo, NULL)) != -1) {
		switch (o) {
		case 'k':
			if (c->nkeys == DKP_CLI_MAX_KEYS)
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "at most %d --key options",
						   DKP_CLI_MAX_KEYS);
			if ((rc = parse_key(&c->keys[c->nkeys], optarg, err)))
				return rc;
			c->nkeys++;
			break;
		case 'c':
			if (dkp_canon_parse(optarg, &c->hcanon, &c->bcanon))
				return bad_arg(err, "--canon", optarg);
			break;
		case 'H':
			if ((rc = parse_headers(c, optarg, err)))
				return rc;
			break;
		case 'i':
			if ((rc = parse_identity(c, optarg, err)))
				return rc;
			break;
		case 't':
			if (parse_int64(optarg, &c->time, 0, INT64_MAX / 2))
				return bad_arg(err, "--time", optarg);
			break;
		case 'x':
			if (parse_int64(optarg, &c->expire, 1, INT64_MAX / 4))
				return bad_arg(err, "--expire", optarg);
			break;
		case 'o':
			c->out = optarg;
			break;
		case OPT_INSECURE:
			c->key_flags |= DKP_KEY_INSECURE_PERMS;
			break;
		case OPT_RSA_BACKEND:
			if (!strcmp(optarg, "auto"))
				c->rsa_backend = DKP_RSA_AUTO;
			else if (!strcmp(optarg, "openssl"))
				c->rsa_backend = DKP_RSA_OPENSSL;
			else if (!strcmp(optarg, "ifma"))
				c->rsa_backend = DKP_RSA_IFMA;
			else
				return bad_arg(err, "--rsa-backend", optarg);
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress sign --help'");
		}
	}
	if (c->nkeys == 0)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "sign needs at least one --key DOMAIN:SELECTOR:KEYFILE");
	return message_arg(c, argc, argv, "sign", err);
}

static int parse_verify(struct dkp_cli *c, int argc, char **argv,
			struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "dns-file", required_argument, NULL, 'd' },
		{ "time", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "+d:t:h", lo, NULL)) != -1) {
		switch (o) {
		case 'd':
			c->dns_file = optarg;
			break;
		case 't':
			if (parse_int64(optarg, &c->time, 1, INT64_MAX / 2))
				return bad_arg(err, "--time", optarg);
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress verify --help'");
		}
	}
	return message_arg(c, argc, argv, "verify", err);
}

static int parse_keygen(struct dkp_cli *c, int argc, char **argv,
			struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "domain", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 's' },
		{ "type", required_argument, NULL, 't' },
		{ "bits", required_argument, NULL, 'b' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o, bits_given = 0;
	int64_t v;

	while ((o = getopt_long(argc, argv, "+d:s:t:b:o:h", lo, NULL)) != -1) {
		switch (o) {
		case 'd':
			c->domain = optarg;
			break;
		case 's':
			c->selector = optarg;
			break;
		case 't':
			if (strcasecmp(optarg, "rsa") == 0)
				c->type = DKP_ALG_RSA_SHA256;
			else if (strcasecmp(optarg, "ed25519") == 0)
				c->type = DKP_ALG_ED25519_SHA256;
			else
				return bad_arg(err, "--type", optarg);
			break;
		case 'b':
			if (parse_int64(optarg, &v, DKP_RSA_MIN_BITS, 16384))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--bits must be 1024 to 16384, not '%s'",
						   optarg);
			c->bits = (int)v;
			bits_given = 1;
			break;
		case 'o':
			c->outdir = optarg;
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress keygen --help'");
		}
	}
	if (optind < argc)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "keygen takes no arguments; got '%s'",
				   argv[optind]);
	if (c->domain == NULL || c->selector == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "keygen needs --domain and --selector");
	if (!dkp_sigfmt_domain_ok(c->domain, strlen(c->domain)))
		return bad_arg(err, "--domain", c->domain);
	if (!dkp_sigfmt_selector_ok(c->selector, strlen(c->selector)) ||
	    strlen(c->selector) > 63)
		return bad_arg(err, "--selector", c->selector);
	if (bits_given && c->type == DKP_ALG_ED25519_SHA256)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--bits applies to RSA keys only");
	return DKP_OK;
}

enum {
	OPT_ONCE = 257, OPT_SET, OPT_STATS, OPT_NOSIGN, OPT_CORPUS, OPT_WORK,
	OPT_PHASES, OPT_MESSAGES, OPT_SECONDS, OPT_REPEAT, OPT_LABEL, OPT_JSON,
	OPT_KEEP,
};

static int add_set(struct dkp_cli *c, const char *v, struct dkp_err *err)
{
	if (strchr(v, '=') == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--set wants KEY=VALUE; got '%s'", v);
	if (c->nsets == DKP_CLI_MAX_SETS)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "at most %d --set", DKP_CLI_MAX_SETS);
	c->sets[c->nsets++] = v;
	return DKP_OK;
}

/* After the options of a command that takes -c CONF and no operands. */
static int conf_only(const struct dkp_cli *c, int argc, char **argv,
		     const char *cmd, struct dkp_err *err)
{
	if (optind < argc)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "%s takes no arguments; got '%s'", cmd, argv[optind]);
	if (c->conf == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "%s needs -c CONF", cmd);
	return DKP_OK;
}

static int parse_run(struct dkp_cli *c, int argc, char **argv,
		     struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "set", required_argument, NULL, OPT_SET },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "no-sign", no_argument, NULL, OPT_NOSIGN },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c->conf = optarg;
			break;
		case OPT_ONCE:
			c->once = 1;
			break;
		case OPT_SET:
			if (add_set(c, optarg, err) != DKP_OK)
				return err->code;
			break;
		case OPT_STATS:
			c->stats = optarg;
			break;
		case OPT_NOSIGN:
			c->nosign = 1;
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress run --help'");
		}
	}
	return conf_only(c, argc, argv, "run", err);
}

static int parse_relay(struct dkp_cli *c, int argc, char **argv,
		       struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "set", required_argument, NULL, OPT_SET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		if (o == 'c') {
			c->conf = optarg;
		} else if (o == OPT_ONCE) {
			c->once = 1;
		} else if (o == OPT_SET) {
			if (add_set(c, optarg, err) != DKP_OK)
				return err->code;
		} else if (o == 'h') {
			c->help = 1;
			return DKP_OK;
		} else {
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress relay --help'");
		}
	}
	return conf_only(c, argc, argv, "relay", err);
}

static int parse_bench(struct dkp_cli *c, int argc, char **argv,
		       struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "corpus", required_argument, NULL, OPT_CORPUS },
		{ "work", required_argument, NULL, OPT_WORK },
		{ "phases", required_argument, NULL, OPT_PHASES },
		{ "messages", required_argument, NULL, OPT_MESSAGES },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "repeat", required_argument, NULL, OPT_REPEAT },
		{ "set", required_argument, NULL, OPT_SET },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "keep", no_argument, NULL, OPT_KEEP },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t v;
	int o, rc;

	c->phases = DKP_PHASE_CRYPTO | DKP_PHASE_IO | DKP_PHASE_ENGINE;
	c->seconds = 3;
	c->repeat = 1;
	while ((o = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c->conf = optarg;
			break;
		case OPT_CORPUS:
			c->corpus = optarg;
			break;
		case OPT_WORK:
			c->work = optarg;
			break;
		case OPT_PHASES: {
			char buf[128], *p, *tok, *save = NULL;

			snprintf(buf, sizeof(buf), "%s", optarg);
			c->phases = 0;
			for (p = buf; (tok = strtok_r(p, ", ", &save)); p = NULL) {
				if (!strcmp(tok, "crypto"))
					c->phases |= DKP_PHASE_CRYPTO;
				else if (!strcmp(tok, "io"))
					c->phases |= DKP_PHASE_IO;
				else if (!strcmp(tok, "engine"))
					c->phases |= DKP_PHASE_ENGINE;
				else if (!strncmp(tok, "engine", 6) && isdigit((unsigned char)tok[6]) &&
					 !parse_int64(tok + 6, &v, 1, DKP_BENCH_MAX_ENGINES))
					c->phases |= DKP_PHASE_ENGINES(v);
				else
					return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
							   "--phases: unknown phase '%s' (crypto, io, engine, engine1..engine%d)",
							   tok, DKP_BENCH_MAX_ENGINES);
			}
			if (c->phases == 0)
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--phases needs at least one phase");
			break;
		}
		case OPT_MESSAGES:
			if (parse_int64(optarg, &v, 1, 100000000))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--messages wants 1 to 100000000");
			c->messages = (size_t)v;
			break;
		case OPT_SECONDS:
			if (parse_int64(optarg, &v, 1, 3600))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--seconds wants 1 to 3600");
			c->seconds = (unsigned)v;
			break;
		case OPT_REPEAT:
			if (parse_int64(optarg, &v, 1, 100))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--repeat wants 1 to 100");
			c->repeat = (unsigned)v;
			break;
		case OPT_SET:
			if (add_set(c, optarg, err) != DKP_OK)
				return err->code;
			break;
		case OPT_LABEL:
			c->label = optarg;
			break;
		case OPT_JSON:
			c->json = optarg;
			break;
		case OPT_KEEP:
			c->keep = 1;
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress bench --help'");
		}
	}
	if ((rc = conf_only(c, argc, argv, "bench", err)) != DKP_OK)
		return rc;
	if (c->corpus == NULL && (c->phases & ~DKP_PHASE_CRYPTO))
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "bench needs --corpus DIR for the io and engine phases");
	return DKP_OK;
}

static int parse_enqueue(struct dkp_cli *c, int argc, char **argv,
			 struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "sender", required_argument, NULL, 'f' },
		{ "recipient", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	while ((o = getopt_long(argc, argv, "+c:f:r:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c->conf = optarg;
			break;
		case 'f':
			c->sender = optarg;
			break;
		case 'r':
			c->rcpts = dkp_realloc(c->rcpts, (c->nrcpts + 1) *
							      sizeof(*c->rcpts));
			c->rcpts[c->nrcpts++] = optarg;
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress enqueue --help'");
		}
	}
	if (c->conf == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "enqueue needs -c CONF");
	/* the envelope is a sender and at least one recipient, or nothing
	 * (docs/queue.md; the engine refuses any other shape) */
	if (c->nrcpts && c->sender == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "-r needs -f SENDER (use -f '' for the null sender)");
	if (c->sender && c->nrcpts == 0)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "-f needs at least one -r RECIPIENT");
	return message_arg(c, argc, argv, "enqueue", err);
}

enum { OPT_CJSON = 300, OPT_TIMEOUT, OPT_CONCURRENCY };

static int parse_check(struct dkp_cli *c, int argc, char **argv,
		       struct dkp_err *err)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dns-file", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, OPT_CJSON },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t v;
	int o;

	c->dns_timeout = DKP_CHECK_DEF_TIMEOUT;
	c->concurrency = DKP_CHECK_DEF_CONCURRENCY;
	while ((o = getopt_long(argc, argv, "+c:d:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			c->conf = optarg;
			break;
		case 'd':
			c->dns_file = optarg;
			break;
		case OPT_CJSON:
			c->check_json = 1;
			break;
		case OPT_TIMEOUT:
			if (parse_int64(optarg, &v, 1, 300))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--timeout wants 1 to 300 seconds");
			c->dns_timeout = (unsigned)v;
			break;
		case OPT_CONCURRENCY:
			if (parse_int64(optarg, &v, 1, DKP_CHECK_MAX_CONCURRENCY))
				return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
						   "--concurrency wants 1 to %d",
						   DKP_CHECK_MAX_CONCURRENCY);
			c->concurrency = (unsigned)v;
			break;
		case 'h':
			c->help = 1;
			return DKP_OK;
		default:
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress check --help'");
		}
	}
	return conf_only(c, argc, argv, "check", err);
}

int dkp_cli_parse(struct dkp_cli *c, int argc, char **argv,
		  struct dkp_err *err)
{
	const char *cmd;

	memset(c, 0, sizeof(*c));
	c->hcanon = c->bcanon = DKP_CANON_RELAXED;
	c->time = -1;
	c->bits = 2048;
	c->type = DKP_ALG_RSA_SHA256;
	c->outdir = ".";
	if (argc < 2)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "no command; try 'dkimpress --help'");
	cmd = argv[1];
	optind = 0;	/* glibc: full re-initialisation; argv[1] acts as argv[0] */
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		c->cmd = DKP_CMD_HELP;
		return DKP_OK;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		c->cmd = DKP_CMD_VERSION;
		return DKP_OK;
	}
	if (!strcmp(cmd, "sign")) {
		c->cmd = DKP_CMD_SIGN;
		return parse_sign(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "verify")) {
		c->cmd = DKP_CMD_VERIFY;
		return parse_verify(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "run")) {
		c->cmd = DKP_CMD_RUN;
		return parse_run(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "bench")) {
		c->cmd = DKP_CMD_BENCH;
		return parse_bench(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "enqueue")) {
		c->cmd = DKP_CMD_ENQUEUE;
		return parse_enqueue(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "relay")) {
		c->cmd = DKP_CMD_RELAY;
		return parse_relay(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "check")) {
		c->cmd = DKP_CMD_CHECK;
		return parse_check(c, argc - 1, argv + 1, err);
	}
	if (!strcmp(cmd, "keygen")) {
		c->cmd = DKP_CMD_KEYGEN;
		return parse_keygen(c, argc - 1, argv + 1, err);
	}
	return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
			   "unknown command '%s'; try 'dkimpress --help'", cmd);
}

void dkp_cli_free(struct dkp_cli *c)
{
	dkp_free(c->headers_buf);
	c->headers_buf = NULL;
	dkp_free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpts = 0;
}
