/*
 * cli_cmds.c — the commands of the command line: for each, its synopsis,
 * its texts, one description per option (what it stores, its range, its
 * help), and the checks after the options. cli.c parses argv and prints
 * --help from these tables.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "base/mem.h"
#include "cmd/bench.h"
#include "cmd/check.h"
#include "cmd/cli_int.h"
#include "dkim/sigfmt.h"

#define F(field) offsetof(struct dkp_cli, field)
#define OPT_CONFIG(help) { 'c', "config", "CONF", DKP_OPT_STR, F(conf), 0, 0, NULL, help }
#define OPT_SET { 0, "set", "K=V", DKP_OPT_STR, 0, 0, 0, add_set, \
		  "a setting over CONF's (repeatable), e.g. --set threads=4 --set batch=64" }
#define END { 0, NULL, NULL, DKP_OPT_FLAG, 0, 0, 0, NULL, NULL }

/* A printable copy of an argument for an error message (\xHH escapes). */
#define ESC(s, buf) dkp_sigfmt_escape((s), strlen(s), (buf), sizeof(buf))

#define usage(err, ...) dkp_err_set((err), DKP_E_USAGE, 0, "usage", __VA_ARGS__)

/* The optional message file after the options; at most one. */
static int message_arg(struct dkp_cli *c, int argc, char **argv, int ind,
		       const char *cmd, struct dkp_err *err)
{
	if (ind < argc)
		c->in = argv[ind++];
	if (ind < argc)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "%s takes one message; extra argument '%s'", cmd, argv[ind]);
	return DKP_OK;
}

/* After the options of a command that takes -c CONF and no operands. */
static int conf_only(const struct dkp_cli *c, int argc, char **argv, int ind,
		     const char *cmd, struct dkp_err *err)
{
	if (ind < argc)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "%s takes no arguments; got '%s'", cmd, argv[ind]);
	if (c->conf == NULL)
		return usage(err, "%s needs -c CONF", cmd);
	return DKP_OK;
}

static int add_set(struct dkp_cli *c, const char *v, struct dkp_err *err)
{
	if (strchr(v, '=') == NULL)
		return usage(err, "--set wants KEY=VALUE; got '%s'", v);
	if (c->nsets == DKP_CLI_MAX_SETS)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage", "at most %d --set",
				   DKP_CLI_MAX_SETS);
	c->sets[c->nsets++] = v;
	return DKP_OK;
}

/* ---- sign ----------------------------------------------------------- */

/*
 * --key D:S:FILE. d= and s= are rendered into the signature, so they must
 * fit RFC 6376's grammar (dkim/sigfmt.h): a d= of two or more labels, a
 * selector of one or more, each of letters, digits and inner '-'.
 */
static int parse_key(struct dkp_cli_key *k, const char *arg, struct dkp_err *err)
{
	const char *c1 = strchr(arg, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	char esc[200];

	if (c2 == NULL || c2[1] == '\0')
		return usage(err, "--key wants DOMAIN:SELECTOR:KEYFILE, got '%s'", ESC(arg, esc));
	if (!dkp_sigfmt_domain_ok(arg, (size_t)(c1 - arg)) ||
	    (size_t)(c1 - arg) >= sizeof(k->domain))
		return usage(err, "--key: invalid domain '%s' (d= wants a domain name of two or more labels of letters, digits and inner '-', RFC 6376 3.5; IDNs as xn-- A-labels)",
			     dkp_sigfmt_escape(arg, (size_t)(c1 - arg), esc, sizeof(esc)));
	if (!dkp_sigfmt_selector_ok(c1 + 1, (size_t)(c2 - c1 - 1)) ||
	    (size_t)(c2 - c1 - 1) >= sizeof(k->selector))
		return usage(err, "--key: invalid selector '%s' (s= wants labels of letters, digits and inner '-', RFC 6376 3.1)",
			     dkp_sigfmt_escape(c1 + 1, (size_t)(c2 - c1 - 1), esc, sizeof(esc)));
	memcpy(k->domain, arg, (size_t)(c1 - arg));
	k->domain[c1 - arg] = '\0';
	memcpy(k->selector, c1 + 1, (size_t)(c2 - c1 - 1));
	k->selector[c2 - c1 - 1] = '\0';
	for (char *p = k->domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	k->path = c2 + 1;
	return DKP_OK;
}

static int opt_key(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	int rc;

	if (c->nkeys == DKP_CLI_MAX_KEYS)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage", "at most %d --key options",
				   DKP_CLI_MAX_KEYS);
	if ((rc = parse_key(&c->keys[c->nkeys], arg, err)))
		return rc;
	c->nkeys++;
	return DKP_OK;
}

static int opt_canon(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	return dkp_canon_parse(arg, &c->hcanon, &c->bcanon) ? dkp_cli_bad_arg(err, "--canon", arg)
							     : DKP_OK;
}

/* --headers h1:h2:...: each name goes into h=, so no ';' (it would end
 * the tag), no white space or control byte (RFC 6376 3.5 hdr-name). */
static int opt_headers(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	char *p, *tok, *save = NULL, esc[200];

	dkp_free(c->headers_buf);
	c->headers_buf = dkp_strdup(arg);
	c->nheaders = 0;
	for (p = c->headers_buf; (tok = strtok_r(p, ":", &save)) != NULL; p = NULL) {
		if (!dkp_sigfmt_hname_ok(tok, strlen(tok)))
			return usage(err, "--headers: bad field name '%s' (printable US-ASCII except ':' and ';', RFC 6376 3.5)",
				     ESC(tok, esc));
		if (c->nheaders == DKP_CLI_MAX_HEADERS)
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "--headers: more than %d names", DKP_CLI_MAX_HEADERS);
		c->headers[c->nheaders++] = tok;
	}
	if (c->nheaders == 0)
		return usage(err, "--headers: empty list");
	return DKP_OK;
}

/* --identity AUID: rendered as i=, so RFC 6376 3.5's [local-part] "@"
 * domain-name, with no CR, LF, ';' or '=' to end the tag or the line. */
static int opt_identity(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	char esc[400];

	if (!dkp_sigfmt_auid_ok(arg, strlen(arg)))
		return usage(err, "--identity: '%s' is not an i= value (RFC 6376 3.5: [local-part]@domain, the local part at most 64 of RFC 5322 atext except '=', dot-separated; the domain as for d=)",
			     ESC(arg, esc));
	c->identity = arg;
	return DKP_OK;
}

static int opt_insecure(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	(void)arg;
	(void)err;
	c->key_flags |= DKP_KEY_INSECURE_PERMS;
	return DKP_OK;
}

static int opt_rsa_backend(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	if (!strcmp(arg, "auto"))
		c->rsa_backend = DKP_RSA_AUTO;
	else if (!strcmp(arg, "openssl"))
		c->rsa_backend = DKP_RSA_OPENSSL;
	else if (!strcmp(arg, "ifma"))
		c->rsa_backend = DKP_RSA_IFMA;
	else
		return dkp_cli_bad_arg(err, "--rsa-backend", arg);
	return DKP_OK;
}

static void sign_defaults(struct dkp_cli *c)
{
	c->hcanon = c->bcanon = DKP_CANON_RELAXED;
	c->time = -1;
}

static int sign_finish(struct dkp_cli *c, int argc, char **argv, int ind,
		       struct dkp_err *err)
{
	if (c->nkeys == 0)
		return usage(err, "sign needs at least one --key DOMAIN:SELECTOR:KEYFILE");
	return message_arg(c, argc, argv, ind, "sign", err);
}

static const struct dkp_opt sign_opts[] = {
	{ 'k', "key", "D:S:FILE", 0, 0, 0, 0, opt_key,
	  "sign for domain D, selector S with the PEM key in FILE (mode 0600; RSA >= 1024 bits or Ed25519)" },
	{ 'c', "canon", "H/B", 0, 0, 0, 0, opt_canon,
	  "simple or relaxed for header/body (default relaxed/relaxed)" },
	{ 'H', "headers", "LIST", 0, 0, 0, 0, opt_headers,
	  "sign exactly these fields (colon-separated, must include From); default: the RFC 6376 5.4.1 list plus Message-ID, MIME-Version, Content-*, List-Unsubscribe(-Post), Feedback-ID, each present one oversigned" },
	{ 'i', "identity", "AUID", 0, 0, 0, 0, opt_identity,
	  "add i=AUID to the signatures whose d= covers it" },
	{ 't', "time", "UNIX", DKP_OPT_I64, F(time), 0, INT64_MAX / 2, NULL,
	  "t= value (default: now)" },
	{ 'x', "expire", "SECONDS", DKP_OPT_I64, F(expire), 1, INT64_MAX / 4, NULL,
	  "add x= = t + SECONDS" },
	{ 0, "insecure-key-perms", NULL, 0, 0, 0, 0, opt_insecure,
	  "accept key files group/others can read" },
	{ 0, "rsa-backend", "B", 0, 0, 0, 0, opt_rsa_backend,
	  "auto (default: RSA-2048 signatures eight at a time with AVX-512 IFMA when there are three or more and the CPU has it), openssl or ifma; every signature is checked with its public key first" },
	{ 'o', "output", "OUT", DKP_OPT_STR, F(out), 0, 0, NULL,
	  "write OUT atomically (no partial file on error)" },
	END,
};

/* ---- verify --------------------------------------------------------- */

static int verify_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			 struct dkp_err *err)
{
	return message_arg(c, argc, argv, ind, "verify", err);
}

static const struct dkp_opt verify_opts[] = {
	{ 'd', "dns-file", "FILE", DKP_OPT_STR, F(dns_file), 0, 0, NULL,
	  "key records from FILE, lines SELECTOR._domainkey.DOMAIN<TAB>TXT-RECORD; without it the system resolver is asked" },
	{ 't', "time", "UNIX", DKP_OPT_I64, F(time), 1, INT64_MAX / 2, NULL,
	  "the current time for x= (default: now)" },
	END,
};

/* ---- keygen --------------------------------------------------------- */

static int opt_type(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	if (strcasecmp(arg, "rsa") == 0)
		c->type = DKP_ALG_RSA_SHA256;
	else if (strcasecmp(arg, "ed25519") == 0)
		c->type = DKP_ALG_ED25519_SHA256;
	else
		return dkp_cli_bad_arg(err, "--type", arg);
	return DKP_OK;
}

/* --selector with its strftime conversions (a selector scheme such as
 * UE%Y%m) expanded for c->time (or now), in UTC so that every host of a
 * fleet names a month's key alike; the result is checked by the caller. */
static int expand_selector(struct dkp_cli *c, struct dkp_err *err)
{
	time_t t = c->time >= 0 ? (time_t)c->time : time(NULL);
	struct tm tm;
	size_t n;

	if (strchr(c->selector, '%') == NULL)
		return DKP_OK;
	if (gmtime_r(&t, &tm) == NULL)
		return dkp_cli_bad_arg(err, "--time", "out of range");
	/* a non-literal format is the point here: the operator's scheme */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	n = strftime(c->selector_buf, sizeof(c->selector_buf), c->selector, &tm);
#pragma GCC diagnostic pop
	if (n == 0)
		return usage(err, "--selector '%s' expands to nothing or to more than 63 characters",
			     c->selector);
	c->selector = c->selector_buf;
	return DKP_OK;
}

static void keygen_defaults(struct dkp_cli *c)
{
	c->time = -1;
	c->type = DKP_ALG_RSA_SHA256;
	c->outdir = ".";
	c->bits = 0;	/* not given: 2048 for RSA (keygen_finish) */
}

static int keygen_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			 struct dkp_err *err)
{
	if (ind < argc)
		return usage(err, "keygen takes no arguments; got '%s'", argv[ind]);
	if (c->domain == NULL || c->selector == NULL)
		return usage(err, "keygen needs --domain and --selector");
	if (!dkp_sigfmt_domain_ok(c->domain, strlen(c->domain)))
		return dkp_cli_bad_arg(err, "--domain", c->domain);
	if (expand_selector(c, err) != DKP_OK)
		return err->code;
	if (!dkp_sigfmt_selector_ok(c->selector, strlen(c->selector)) ||
	    strlen(c->selector) > 63) {
		dkp_cli_bad_arg(err, "--selector", c->selector);
		if (c->selector == c->selector_buf)
			snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg),
				 " (expanded from the pattern; a selector is letters, digits, inner '-' and '.')");
		return err->code;
	}
	if (c->bits && c->type == DKP_ALG_ED25519_SHA256)
		return usage(err, "--bits applies to RSA keys only");
	if (c->bits == 0)
		c->bits = 2048;
	return DKP_OK;
}

static const struct dkp_opt keygen_opts[] = {
	{ 'd', "domain", "D", DKP_OPT_STR, F(domain), 0, 0, NULL, "the signing domain (d=)" },
	{ 's', "selector", "S", DKP_OPT_STR, F(selector), 0, 0, NULL,
	  "the selector (s=); strftime(3) conversions are expanded for the current time in UTC, so a scheme such as UE%Y%m gives UE202612" },
	{ 't', "type", "T", 0, 0, 0, 0, opt_type, "rsa (default) or ed25519" },
	{ 'b', "bits", "N", DKP_OPT_INT, F(bits), DKP_RSA_MIN_BITS, 16384, NULL,
	  "RSA size, 1024..16384 (default 2048)" },
	{ 'o', "out", "DIR", DKP_OPT_STR, F(outdir), 0, 0, NULL, "where to write (default: .)" },
	{ 0, "time", "UNIX", DKP_OPT_I64, F(time), 0, INT64_MAX / 2, NULL,
	  "the time for --selector's conversions (default: now)" },
	END,
};

/* ---- run ------------------------------------------------------------ */

static int run_finish(struct dkp_cli *c, int argc, char **argv, int ind,
		      struct dkp_err *err)
{
	return conf_only(c, argc, argv, ind, "run", err);
}

static const struct dkp_opt run_opts[] = {
	OPT_CONFIG("the configuration file (required)"),
	{ 0, "once", NULL, DKP_OPT_FLAG, F(once), 0, 0, NULL,
	  "drain the queue and exit; without it, watch the queue (inotify) until SIGTERM or SIGINT" },
	OPT_SET,
	{ 0, "stats", "FILE", DKP_OPT_STR, F(stats), 0, 0, NULL,
	  "write the run's figures (counts, seconds, latency p50/p99) to FILE as JSON at the end" },
	{ 0, "no-sign", NULL, DKP_OPT_FLAG, F(nosign), 0, 0, NULL,
	  "benchmark only: copy messages to the output queue UNSIGNED, to measure the queue path alone" },
	END,
};

/* ---- relay ---------------------------------------------------------- */

static int relay_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			struct dkp_err *err)
{
	return conf_only(c, argc, argv, ind, "relay", err);
}

static const struct dkp_opt relay_opts[] = {
	OPT_CONFIG("the configuration file (required)"),
	{ 0, "once", NULL, DKP_OPT_FLAG, F(once), 0, 0, NULL,
	  "deliver what is due now and exit (deferred messages stay in out/defer); without it, watch out/new (inotify) until SIGTERM or SIGINT" },
	{ 0, "set", "K=V", DKP_OPT_STR, 0, 0, 0, add_set,
	  "a setting over CONF's (repeatable), e.g. --set relay_host=127.0.0.1:2525" },
	END,
};

/* ---- bench ---------------------------------------------------------- */

static int opt_phases(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	char buf[128], *p, *tok, *save = NULL;
	int64_t v;

	snprintf(buf, sizeof(buf), "%s", arg);
	c->phases = 0;
	for (p = buf; (tok = strtok_r(p, ", ", &save)); p = NULL) {
		if (!strcmp(tok, "crypto"))
			c->phases |= DKP_PHASE_CRYPTO;
		else if (!strcmp(tok, "io"))
			c->phases |= DKP_PHASE_IO;
		else if (!strcmp(tok, "engine"))
			c->phases |= DKP_PHASE_ENGINE;
		else if (!strncmp(tok, "engine", 6) && isdigit((unsigned char)tok[6]) &&
			 !dkp_cli_int64(tok + 6, &v, 1, DKP_BENCH_MAX_ENGINES))
			c->phases |= DKP_PHASE_ENGINES(v);
		else
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "--phases: unknown phase '%s' (crypto, io, engine, engine1..engine%d)",
					   tok, DKP_BENCH_MAX_ENGINES);
	}
	if (c->phases == 0)
		return usage(err, "--phases needs at least one phase");
	return DKP_OK;
}

static void bench_defaults(struct dkp_cli *c)
{
	c->phases = DKP_PHASE_CRYPTO | DKP_PHASE_IO | DKP_PHASE_ENGINE;
	c->seconds = 3;
	c->repeat = 1;
}

static int bench_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			struct dkp_err *err)
{
	int rc;

	if ((rc = conf_only(c, argc, argv, ind, "bench", err)) != DKP_OK)
		return rc;
	if (c->corpus == NULL && (c->phases & ~DKP_PHASE_CRYPTO))
		return usage(err, "bench needs --corpus DIR for the io and engine phases");
	return DKP_OK;
}

static const struct dkp_opt bench_opts[] = {
	OPT_CONFIG("the configuration (keys, threads, batch, ...)"),
	{ 0, "corpus", "DIR", DKP_OPT_STR, F(corpus), 0, 0, NULL, "the messages to sign" },
	{ 0, "work", "DIR", DKP_OPT_STR, F(work), 0, 0, NULL,
	  "scratch queues (default: QUEUE_DIR.bench, beside the configured queue, on the same filesystem)" },
	{ 0, "phases", "LIST", 0, 0, 0, 0, opt_phases,
	  "any of crypto, io, engine, engineN (default: crypto,io,engine)" },
	{ 0, "messages", "N", DKP_OPT_SIZE, F(messages), 1, 100000000, NULL,
	  "queue N messages, cycling the corpus (default: each corpus message once)" },
	{ 0, "seconds", "S", DKP_OPT_UINT, F(seconds), 1, 3600, NULL,
	  "crypto phase length (default 3)" },
	{ 0, "repeat", "N", DKP_OPT_UINT, F(repeat), 1, 100, NULL,
	  "run each phase N times (default 1)" },
	OPT_SET,
	{ 0, "label", "TEXT", DKP_OPT_STR, F(label), 0, 0, NULL,
	  "name the rows (default: CONF's file name)" },
	{ 0, "json", "FILE", DKP_OPT_STR, F(json), 0, 0, NULL,
	  "append the rows to FILE, one JSON object a line" },
	{ 0, "keep", NULL, DKP_OPT_FLAG, F(keep), 0, 0, NULL,
	  "keep the scratch queues (kept anyway, with the logs, when a phase fails)" },
	END,
};

/* ---- enqueue -------------------------------------------------------- */

static int opt_rcpt(struct dkp_cli *c, const char *arg, struct dkp_err *err)
{
	(void)err;
	c->rcpts = dkp_realloc(c->rcpts, (c->nrcpts + 1) * sizeof(*c->rcpts));
	c->rcpts[c->nrcpts++] = arg;
	return DKP_OK;
}

static int enqueue_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			  struct dkp_err *err)
{
	if (c->conf == NULL)
		return usage(err, "enqueue needs -c CONF");
	/* the envelope is a sender and at least one recipient, or nothing
	 * (docs/queue.md; the engine refuses any other shape) */
	if (c->nrcpts && c->sender == NULL)
		return usage(err, "-r needs -f SENDER (use -f '' for the null sender)");
	if (c->sender && c->nrcpts == 0)
		return usage(err, "-f needs at least one -r RECIPIENT");
	return message_arg(c, argc, argv, ind, "enqueue", err);
}

static const struct dkp_opt enqueue_opts[] = {
	OPT_CONFIG("the configuration (only in_dir or queue_dir, max_message_size, dedup_window and dedup_max are used)"),
	{ 'f', "sender", "ADDR", DKP_OPT_STR, F(sender), 0, 0, NULL,
	  "envelope sender; '' or '<>' is the null sender" },
	{ 'r', "recipient", "ADDR", 0, 0, 0, 0, opt_rcpt,
	  "envelope recipient, repeatable; -f and -r go together" },
	{ 0, "id", "ID", DKP_OPT_STR, F(enq_id), 0, 0, NULL,
	  "the caller's stable ID of this hand-over: the same ID again within dedup_window is answered 0 and not queued again (an MTA's retry after a lost answer); 1-512 bytes, no space or control character" },
	END,
};

/* ---- check ---------------------------------------------------------- */

static void check_defaults(struct dkp_cli *c)
{
	c->dns_timeout = DKP_CHECK_DEF_TIMEOUT;
	c->concurrency = DKP_CHECK_DEF_CONCURRENCY;
}

static int check_finish(struct dkp_cli *c, int argc, char **argv, int ind,
			struct dkp_err *err)
{
	return conf_only(c, argc, argv, ind, "check", err);
}

static const struct dkp_opt check_opts[] = {
	OPT_CONFIG("the configuration (esp_key, key_table, ...)"),
	{ 'd', "dns-file", "FILE", DKP_OPT_STR, F(dns_file), 0, 0, NULL,
	  "records from FILE (lines NAME<TAB>RECORD, as verify and keygen; a record TEMPERROR fails the lookup); without it the system resolver" },
	{ 0, "json", NULL, DKP_OPT_FLAG, F(check_json), 0, 0, NULL,
	  "one JSON document instead of lines" },
	{ 0, "timeout", "S", DKP_OPT_UINT, F(dns_timeout), 1, 300, NULL,
	  "seconds per DNS attempt (default 5, 2 attempts)" },
	{ 0, "concurrency", "N", DKP_OPT_UINT, F(concurrency), 1, DKP_CHECK_MAX_CONCURRENCY, NULL,
	  "DNS lookups at once (default 64, max 1024)" },
	END,
};

/* ---- the commands --------------------------------------------------- */

const struct dkp_cmd_def dkp_cli_cmds[] = {
{
	"sign", DKP_CMD_SIGN, "add DKIM-Signature fields to one message",
	"usage: dkimpress sign --key DOMAIN:SELECTOR:KEYFILE [--key ...]\n"
	"                      [--canon H/B] [--headers h1:h2:...]\n"
	"                      [--identity AUID] [--time UNIX] [--expire SECONDS]\n"
	"                      [--insecure-key-perms] [--rsa-backend B] [-o OUT]\n"
	"                      [FILE]\n",
	"Writes the new DKIM-Signature fields, then the message (FILE or standard\n"
	"input; bare LF becomes CRLF) to OUT or standard output. One signature per\n"
	"--key, in the order given, the first on top. RSA keys sign rsa-sha256,\n"
	"Ed25519 keys ed25519-sha256.\n",
	sign_opts,
	"exit: 0 ok, 64 usage, 65 malformed message, 66 unreadable input,\n"
	"      73 cannot create OUT, 74 I/O error, 78 key error\n",
	sign_defaults, sign_finish,
},
{
	"verify", DKP_CMD_VERIFY, "check every DKIM-Signature of a message",
	"usage: dkimpress verify [--dns-file FILE] [--time UNIX] [MESSAGE]\n",
	"Verifies every DKIM-Signature field of MESSAGE (or standard input) and\n"
	"prints one line per signature, top first:\n"
	"  pass|fail|temperror|permerror d=DOMAIN s=SELECTOR a=ALG [reason]\n"
	"Only the first 50 are checked: a warning says so, each one after them is\n"
	"  not-checked d=DOMAIN s=SELECTOR a=ALG over the limit of 50 signatures\n"
	"and does not decide the exit status; bytes that are not printable ASCII\n"
	"are shown as \\xHH.\n",
	verify_opts,
	"exit: 0 all checked signatures pass, 1 one fails or there is none,\n"
	"      75 only temporary errors, 65 malformed message, 66 unreadable\n",
	NULL, verify_finish,
},
{
	"keygen", DKP_CMD_KEYGEN, "make a signing key and its DNS TXT record",
	"usage: dkimpress keygen --domain D --selector S [--type rsa|ed25519]\n"
	"                        [--bits N] [--out DIR] [--time UNIX]\n",
	"Writes DIR/S.private (PKCS#8 PEM, mode 0600, never overwritten) and\n"
	"DIR/S.txt (the DNS TXT record in zone-file form, split into 255-byte\n"
	"strings), and prints the record as one --dns-file line on standard\n"
	"output.\n",
	keygen_opts, NULL, keygen_defaults, keygen_finish,
},
{
	"run", DKP_CMD_RUN, "the batch engine: sign a queue directory (dkimpress.conf(5))",
	"usage: dkimpress run -c CONF [--once] [--set KEY=VALUE ...]\n"
	"                     [--stats FILE] [--no-sign]\n",
	"The batch engine. Takes messages from the input queue directory, signs\n"
	"each twice (the customer's key chosen from the From address through the\n"
	"SigningTable, then the ESP key) and publishes them, crash-safely, into\n"
	"the output queue directory, exactly once even while a consumer empties\n"
	"out/new and whatever kills the engine. Messages that cannot be signed go\n"
	"to the failed directory with a .reason file. Several engines may share\n"
	"one queue. Envelope lines (x-sender:, x-receiver:) stay on top,\n"
	"unsigned. See dkimpress.conf(5) and docs/queue.md.\n",
	run_opts,
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
	"      71 cannot start (threads, or metrics_listen cannot be listened on)\n",
	NULL, run_finish,
},
{
	"enqueue", DKP_CMD_ENQUEUE, "hand one message to the queue (a producer; Postfix pipe(8))",
	"usage: dkimpress enqueue -c CONF [-f SENDER] [-r RCPT]... [--id ID] [FILE]\n",
	"Hands one message (FILE or standard input) to the queue of CONF: writes\n"
	"it as in/tmp/ID (mode 0600), flushes it, renames it into in/new/ID (never\n"
	"over anything), flushes in/new and prints the new queue ID. With -f and\n"
	"-r the envelope goes first, as the lines of the PowerMTA pickup format,\n"
	"\"x-sender: SENDER\" and one \"x-receiver: RCPT\" per -r (CRLF); the message\n"
	"bytes follow unchanged. No terminal is needed: it works as a Postfix\n"
	"pipe(8) command.\n",
	enqueue_opts,
	"An address is local@domain or <local@domain>, at most 320 bytes, with no\n"
	"space, control character or stray '<' '>'. The whole file (envelope\n"
	"lines and message) must fit in max_message_size; reading stops there.\n"
	"\n"
	"Postfix master.cf (with dkimpress_destination_recipient_limit = 1 in\n"
	"main.cf; see docs/integration.md):\n"
	"  dkimpress unix - n n - - pipe flags=q null_sender= user=dkimpress\n"
	"    argv=/usr/local/bin/dkimpress enqueue -c /etc/dkimpress/dkimpress.conf\n"
	"    --id ${queue_id}.${recipient} -f ${sender} -r ${recipient}\n"
	"\n"
	"exit: 0 queued (the ID on standard output), or a duplicate --id (nothing\n"
	"      on standard output, an info line on standard error);\n"
	"      64 bad address, 65 empty or too big message, 66 FILE unreadable:\n"
	"      the message itself is at fault (an MTA bounces it);\n"
	"      75 anything else: a full disk, an I/O error, a queue that cannot\n"
	"      be written, a configuration or command line error (an MTA keeps\n"
	"      the message and retries: a signer problem never bounces mail).\n"
	"      On failure nothing is left in in/tmp and nothing appears in in/new.\n"
	"\n"
	"With transport = jetstream in CONF the message is published to in_subject\n"
	"(envelope in the X-Sender and X-Receiver headers, a new ID or --id in\n"
	"Nats-Msg-Id, so that the stream's duplicate window drops a second\n"
	"hand-over) and acknowledged by the stream, retried with the same ID for\n"
	"up to 10 s; 75 when the cluster cannot be reached or does not answer.\n",
	NULL, enqueue_finish,
},
{
	"relay", DKP_CMD_RELAY, "deliver the signed messages of out/new over SMTP or LMTP",
	"usage: dkimpress relay -c CONF [--once] [--set KEY=VALUE ...]\n",
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
	"remaining recipients republished). See docs/scale-out.md.\n",
	relay_opts,
	"SIGTERM/SIGINT: take nothing new, finish the transactions in hand\n"
	"(each step bounded by relay_timeout), leave nothing in out/relay, exit 0.\n"
	"Exit: 0 done, 75 a message was deferred (--once), 78 configuration.\n",
	NULL, relay_finish,
},
{
	"check", DKP_CMD_CHECK, "every signing key of a configuration against its DNS record",
	"usage: dkimpress check -c CONF [--dns-file FILE] [--json]\n"
	"                       [--timeout S] [--concurrency N]\n",
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
	"temperror, missing, syntax, revoked, mismatch, weak, testing.\n",
	check_opts,
	"exit: 0 every key ok (skipped ones aside), 1 a key has a problem,\n"
	"      75 only temporary DNS errors, 64 usage, 66 FILE missing,\n"
	"      78 configuration error\n",
	check_defaults, check_finish,
},
{
	"bench", DKP_CMD_BENCH, "measure the engine against the crypto and I/O bounds",
	"usage: dkimpress bench -c CONF --corpus DIR [--work DIR]\n"
	"                       [--phases crypto,io,engine] [--messages N]\n"
	"                       [--seconds S] [--repeat N] [--set KEY=VALUE ...]\n"
	"                       [--label TEXT] [--json FILE] [--keep]\n",
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
	"median run of each is reported.\n",
	bench_opts,
	"exit: 0 measured, 1 a phase did not sign everything, 64 usage,\n"
	"      78 configuration or key error\n",
	bench_defaults, bench_finish,
},
{ NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL },
};
