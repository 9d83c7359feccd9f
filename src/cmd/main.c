/*
 * main.c — the dkimpress command: wiring, I/O around the library, exit
 * codes (sysexits.h, as mail filters expect).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cmd/cli.h"
#include "dkimpress/dkimpress.h"
#include "base/err.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "crypto/keymem.h"
#include "cmd/bench.h"
#include "cmd/check.h"
#include "cmd/enqueue.h"
#include "dkim/envelope.h"
#include "dkim/sigfmt.h"
#include "cmd/run.h"
#include "cmd/relay.h"

#define EX_USAGE_ 64
#define EX_NOINPUT_ 66
#define EX_CANTCREAT_ 73
#define EX_IOERR_ 74

static int report(const struct dkp_err *err)
{
	dkp_error("%s", err->msg);
	return dkp_err_exit_code(err);
}

/*
 * Read all of path (or stdin for NULL / "-") into b, but never more than
 * max bytes: a bigger input (a 2 GB file, /dev/zero) is refused with
 * DKP_E_LIMIT (exit 65) as soon as that is known, without reading it.
 */
static int read_input(const char *path, struct dkp_buf *b, size_t max,
		      struct dkp_err *err)
{
	int fd = STDIN_FILENO;
	const char *name = "standard input";

	if (path && strcmp(path, "-") != 0) {
		struct stat st;

		name = path;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return dkp_err_sys(err, DKP_E_IO, 0, "read", errno,
					   "cannot open %s", path);
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			if ((uint64_t)st.st_size > max) {
				close(fd);
				return dkp_err_set(err, DKP_E_LIMIT, 0, "read",
						   "%s: %llu bytes, over the %zu-byte message limit",
						   path, (unsigned long long)st.st_size, max);
			}
			dkp_buf_reserve(b, (size_t)st.st_size);
		}
	}
	for (;;) {
		ssize_t n;
		size_t room;

		dkp_buf_reserve(b, 65536);
		room = b->cap - b->len - 1;
		if (room > max + 1 - b->len)
			room = max + 1 - b->len;	/* one byte past: "too big" */
		n = read(fd, b->p + b->len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			if (fd != STDIN_FILENO)
				close(fd);
			dkp_err_sys(err, DKP_E_IO, 0, "read", e,
				    "cannot read %s", name);
			err->sys_errno = e == EISDIR ? ENOENT : e;
			return DKP_E_IO;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
		if (b->len > max) {
			if (fd != STDIN_FILENO)
				close(fd);
			return dkp_err_set(err, DKP_E_LIMIT, 0, "read",
					   "%s: over the %zu-byte message limit", name, max);
		}
	}
	b->p[b->len] = '\0';
	if (fd != STDIN_FILENO)
		close(fd);
	return DKP_OK;
}

/* The temporary output file while it exists, for the signal handler. */
static char out_tmp[PATH_MAX];
static volatile sig_atomic_t out_tmp_live;

/* SIGTERM, SIGINT or SIGHUP while the temporary output exists: remove it,
 * then die of the signal as usual (async-signal-safe calls only). */
static void on_signal_unlink_tmp(int sig)
{
	if (out_tmp_live)
		unlink(out_tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Write the two parts to path atomically: a uniquely named temporary file
 * in the same directory, fsync, rename over path. No partial file is left
 * behind on any failure. Returns 0 or an exit code (73 cannot create,
 * 74 cannot write), with err filled.
 */
static int write_atomic(const char *path, const struct dkp_buf *a,
			const char *b, size_t blen, struct dkp_err *err)
{
	char tmp[PATH_MAX];
	unsigned char rnd[6];
	int fd, e;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%02x%02x%02x%02x%02x%02x",
			     path, (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3],
			     rnd[4], rnd[5]) >= sizeof(tmp))
		return dkp_err_set(err, DKP_E_USAGE, 0, "write",
				   "output path too long") ? EX_USAGE_ : 0;
	{
		struct sigaction sa;

		memcpy(out_tmp, tmp, sizeof(out_tmp));
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal_unlink_tmp;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
	out_tmp_live = 1;	/* before the create: no window without it */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0) {
		out_tmp_live = 0;
		dkp_err_sys(err, DKP_E_IO, 0, "create", errno,
			    "cannot create %s (as %s)", path, tmp);
		return EX_CANTCREAT_;
	}
	if (dkp_write_all(fd, a->p, a->len) < 0 || dkp_write_all(fd, b, blen) < 0 ||
	    fsync(fd) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		out_tmp_live = 0;
		dkp_err_sys(err, DKP_E_IO, 0, "write", e, "cannot write %s", path);
		return EX_IOERR_;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		e = errno;
		unlink(tmp);
		out_tmp_live = 0;
		dkp_err_sys(err, DKP_E_IO, 0, "write", e, "cannot write %s", path);
		return EX_IOERR_;
	}
	out_tmp_live = 0;	/* renamed: nothing to remove any more */
	return 0;
}


/*
 * Sign one message. Output: the envelope lines if the input starts with
 * them (see dkim/envelope.h), then the new DKIM-Signature fields, then the
 * message; bare LF becomes CRLF throughout.
 */
/* dkp_sign_flush could not make a signature: nothing is written. */
static void sign_failed(void *ctx, size_t tag, const struct dkp_err *e)
{
	(void)tag;
	*(struct dkp_err *)ctx = *e;
}

/* Every --key loaded, with its signature's spec; an --identity that no
 * key's d= covers is a usage error. */
static int load_specs(const struct dkp_cli *c, int64_t t, struct dkp_key **keys,
		      struct dkp_sig_spec *specs, struct dkp_err *err)
{
	size_t i;
	int matched = 0;

	dkp_keymem_init(c->nkeys, 0);	/* no core while keys are held */
	for (i = 0; i < c->nkeys; i++) {
		if (dkp_key_load(&keys[i], c->keys[i].path, c->key_flags, err) != DKP_OK)
			return err->code;
		if (dkp_key_alg(keys[i]) == DKP_ALG_RSA_SHA256 &&
		    dkp_key_bits(keys[i]) < DKP_RSA_WARN_BITS)
			dkp_warn("%s: RSA key of %d bits; %d or more is recommended (RFC 8301)",
				 c->keys[i].path, dkp_key_bits(keys[i]), DKP_RSA_WARN_BITS);
		memset(&specs[i], 0, sizeof(specs[i]));
		specs[i].domain = c->keys[i].domain;
		specs[i].selector = c->keys[i].selector;
		specs[i].key = keys[i];
		specs[i].hcanon = c->hcanon;
		specs[i].bcanon = c->bcanon;
		specs[i].headers = c->nheaders ? c->headers : NULL;
		specs[i].nheaders = c->nheaders;
		specs[i].t = t;
		specs[i].x = c->expire ? t + c->expire : 0;
		if (c->identity && dkp_sigfmt_auid_within(c->identity, specs[i].domain)) {
			specs[i].identity = c->identity;
			matched = 1;
		}
	}
	if (c->identity && !matched)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--identity %s is not within the d= of any --key",
				   c->identity);
	return DKP_OK;
}

/* The signature fields of m into out (after the envelope lines). */
static int make_signatures(const struct dkp_cli *c, struct dkp_msg *m,
			   const struct dkp_sig_spec *specs, struct dkp_buf *out,
			   struct dkp_err *err)
{
	struct dkp_signer *signer = dkp_signer_new();
	int rc;

	rc = dkp_signer_set_backend(signer, c->rsa_backend, err);
	if (rc == DKP_OK) {
		/* several RSA-2048 keys: their signatures wait and are made
		 * eight at a time (dkp_sign_flush), each checked before it is
		 * written */
		dkp_signer_set_batch(signer, 1, 0);
		rc = dkp_sign(signer, m, specs, c->nkeys, out, err);
	}
	if (rc == DKP_OK) {
		dkp_sign_flush(signer, sign_failed, err);
		rc = err->code;
	}
	dkp_signer_free(signer);
	return rc;
}

static int cmd_sign(const struct dkp_cli *c)
{
	struct dkp_key *keys[DKP_CLI_MAX_KEYS] = { 0 };
	struct dkp_sig_spec specs[DKP_CLI_MAX_KEYS];
	struct dkp_buf in, out;
	struct dkp_envelope env;
	struct dkp_msg m;
	struct dkp_err err;
	int64_t t = c->time >= 0 ? c->time : (int64_t)time(NULL);
	size_t i;
	int rc = 0;

	dkp_err_clear(&err);
	dkp_buf_init(&in);
	dkp_buf_init(&out);
	dkp_msg_init(&m);
	/* envelope lines are not part of the message: never parsed as
	 * header fields, never signed, kept on top of the output */
	if (load_specs(c, t, keys, specs, &err) != DKP_OK ||
	    read_input(c->in, &in, DKP_DEFAULT_MAX_MESSAGE_BYTES, &err) != DKP_OK ||
	    dkp_envelope_split(in.p, in.len, &env, &err) != DKP_OK ||
	    dkp_msg_parse(&m, in.p + env.len, in.len - env.len, NULL, &err) != DKP_OK) {
		rc = report(&err);
		goto done;
	}
	dkp_envelope_add_crlf(&out, in.p, &env);
	if (make_signatures(c, &m, specs, &out, &err) != DKP_OK) {
		rc = report(&err);
		goto done;
	}
	if (c->out) {
		rc = write_atomic(c->out, &out, m.data, m.len, &err);
		if (rc != 0)
			dkp_error("%s", err.msg);
	} else if (dkp_write_all(STDOUT_FILENO, out.p, out.len) < 0 ||
		   dkp_write_all(STDOUT_FILENO, m.data, m.len) < 0) {
		dkp_err_sys(&err, DKP_E_IO, 0, "write", errno,
			    "cannot write to standard output");
		rc = report(&err);
	}
done:
	for (i = 0; i < c->nkeys; i++)
		dkp_key_unref(keys[i]);
	dkp_msg_fini(&m);
	dkp_buf_free(&in);
	dkp_buf_free(&out);
	return rc;
}

#define MAX_RESULTS 64

static int cmd_verify(const struct dkp_cli *c)
{
	struct dkp_vresult res[MAX_RESULTS];
	struct dkp_dnsfile *df = NULL;
	struct dkp_buf in;
	struct dkp_envelope env;
	struct dkp_msg m;
	struct dkp_err err;
	size_t n = 0, i;
	int rc = 0, fails = 0, temps = 0;

	dkp_err_clear(&err);
	dkp_buf_init(&in);
	dkp_msg_init(&m);
	if (c->dns_file && dkp_dnsfile_load(&df, c->dns_file, &err) != DKP_OK) {
		rc = err.code == DKP_E_IO ? EX_NOINPUT_ : 78;
		dkp_error("%s", err.msg);
		goto done;
	}
	if (read_input(c->in, &in, DKP_DEFAULT_MAX_MESSAGE_BYTES, &err) != DKP_OK) {
		rc = report(&err);
		goto done;
	}
	/* Skip leading envelope lines (a signed queue file verifies as it
	 * is). Lines that only look like one are RFC 5322 header fields
	 * ("X-Sender: Name <addr>"): verify them as such, as before. */
	if (dkp_envelope_split(in.p, in.len, &env, &err) != DKP_OK) {
		dkp_warn("%s; verifying those lines as header fields",
			 err.msg);
		dkp_err_clear(&err);
	}
	if (dkp_msg_parse(&m, in.p + env.len, in.len - env.len, NULL,
			  &err) != DKP_OK ||
	    dkp_verify(&m, df ? dkp_dnsfile_fetch : dkp_dns_fetch, df,
		       c->time > 0 ? c->time : 0, res, MAX_RESULTS, &n,
		       &err) != DKP_OK) {
		rc = report(&err);
		goto done;
	}
	if (n == 0) {
		printf("none: no DKIM-Signature field\n");
		rc = 1;
		goto done;
	}
	if (n > DKP_VERIFY_MAX_SIGS)
		dkp_warn("verify: the message has %zu signatures; only the first %d are checked (the limit), the other %zu are reported as not checked and do not decide the exit status",
			 n, DKP_VERIFY_MAX_SIGS, n - DKP_VERIFY_MAX_SIGS);
	for (i = 0; i < n && i < MAX_RESULTS; i++) {
		const struct dkp_vresult *r = &res[i];

		if (i >= DKP_VERIFY_MAX_SIGS) {
			printf("not-checked d=%s s=%s a=%s over the limit of %d signatures\n",
			       r->domain, r->selector, r->alg, DKP_VERIFY_MAX_SIGS);
			continue;
		}
		printf("%s d=%s s=%s a=%s%s%s\n", dkp_vres_name(r->res),
		       r->domain, r->selector, r->alg, r->reason[0] ? " " : "",
		       r->reason);
		fails += r->res == DKP_V_FAIL || r->res == DKP_V_PERMERROR;
		temps += r->res == DKP_V_TEMPERROR;
	}
	if (n > MAX_RESULTS)
		printf("not-checked: %zu more signatures over the limit of %d\n",
		       n - MAX_RESULTS, DKP_VERIFY_MAX_SIGS);
	rc = fails ? 1 : temps ? 75 : 0;
done:
	if (fflush(stdout) != 0 && rc == 0)
		rc = EX_IOERR_;
	dkp_dnsfile_free(df);
	dkp_msg_fini(&m);
	dkp_buf_free(&in);
	return rc;
}

/* Create path exclusively with mode and content; 0 or an exit code. */
static int write_new(const char *path, mode_t mode, const char *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0) {
		dkp_error("cannot create %s: %s", path, strerror(errno));
		return errno == EEXIST || errno == EACCES || errno == ENOENT
			       ? EX_CANTCREAT_
			       : EX_IOERR_;
	}
	if (dkp_write_all(fd, p, n) < 0 || fsync(fd) < 0 || close(fd) < 0) {
		dkp_error("cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return EX_IOERR_;
	}
	return 0;
}

static int cmd_keygen(const struct dkp_cli *c)
{
	struct dkp_buf pem, rec, zone;
	struct dkp_err err;
	char path[PATH_MAX], txtpath[PATH_MAX];
	size_t i;
	int rc;

	dkp_err_clear(&err);
	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	dkp_buf_init(&zone);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.private", c->outdir,
			     c->selector) >= sizeof(path) ||
	    (size_t)snprintf(txtpath, sizeof(txtpath), "%s/%s.txt", c->outdir,
			     c->selector) >= sizeof(txtpath)) {
		dkp_error("--out path too long");
		return EX_USAGE_;
	}
	if (access(path, F_OK) == 0 || access(txtpath, F_OK) == 0) {
		dkp_error("%s or %s already exists; not overwriting a key",
			  path, txtpath);
		return EX_CANTCREAT_;
	}
	if (dkp_keygen(c->type, c->bits, &pem, &rec, &err) != DKP_OK) {
		rc = report(&err);
		goto done;
	}
	/* zone-file form: TXT strings of at most 255 bytes each */
	dkp_buf_printf(&zone, "%s._domainkey.%s.\tIN\tTXT\t( ", c->selector,
		       c->domain);
	for (i = 0; i < rec.len; i += 255) {
		size_t n = rec.len - i < 255 ? rec.len - i : 255;

		dkp_buf_printf(&zone, "%s\"%.*s\"", i ? "\n\t" : "", (int)n,
			       rec.p + i);
	}
	if (c->type == DKP_ALG_RSA_SHA256)
		dkp_buf_printf(&zone, " )  ; RSA %d bits\n", c->bits);
	else
		dkp_buf_adds(&zone, " )  ; Ed25519\n");
	if ((rc = write_new(path, 0600, pem.p, pem.len)) != 0)
		goto done;
	if ((rc = write_new(txtpath, 0644, zone.p, zone.len)) != 0) {
		unlink(path);
		goto done;
	}
	printf("%s._domainkey.%s\t%s\n", c->selector, c->domain, rec.p);
	if (fflush(stdout) != 0)
		rc = EX_IOERR_;
	dkp_info("wrote %s (private key, mode 0600) and %s (DNS record)",
		 path, txtpath);
done:
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
	dkp_buf_free(&zone);
	return rc;
}

int main(int argc, char **argv)
{
	struct dkp_cli c;
	struct dkp_err err;
	int rc;

	/* before OpenSSL allocates anything: its freed blocks wiped */
	dkp_keymem_early();
	/* the engine's handlers before anything else (see dkp_run_signals) */
	if (argc > 1 && strcmp(argv[1], "run") == 0)
		dkp_run_signals();
	dkp_err_clear(&err);
	if (dkp_cli_parse(&c, argc, argv, &err) != DKP_OK) {
		/* enqueue's command line is master.cf's: a mistake there is
		 * the signer's, and must make the MTA retry, not bounce */
		rc = c.cmd == DKP_CMD_ENQUEUE ? 75 : EX_USAGE_;
		dkp_error("%s", err.msg);
		dkp_cli_free(&c);
		return rc;
	}
	if (c.cmd == DKP_CMD_HELP || c.help) {
		fputs(dkp_cli_usage(c.help ? c.cmd : DKP_CMD_HELP), stdout);
		dkp_cli_free(&c);
		return 0;
	}
	switch (c.cmd) {
	case DKP_CMD_VERSION:
		printf("dkimpress %s (%s)\n", DKIMPRESS_VERSION,
		       OpenSSL_version(OPENSSL_VERSION));
		rc = 0;
		break;
	case DKP_CMD_SIGN:
		rc = cmd_sign(&c);
		break;
	case DKP_CMD_VERIFY:
		rc = cmd_verify(&c);
		break;
	case DKP_CMD_KEYGEN:
		rc = cmd_keygen(&c);
		break;
	case DKP_CMD_RUN: {
		struct dkp_run_opts ro;

		memset(&ro, 0, sizeof(ro));
		ro.conf = c.conf;
		ro.sets = c.sets;
		ro.nsets = c.nsets;
		ro.once = c.once;
		ro.progress = c.once && isatty(STDERR_FILENO);
		ro.nosign = c.nosign;
		ro.stats_path = c.stats;
		rc = dkp_run(&ro);
		break;
	}
	case DKP_CMD_BENCH:
		rc = dkp_bench_run(&c);
		break;
	case DKP_CMD_ENQUEUE:
		rc = dkp_enqueue_run(&c);
		break;
	case DKP_CMD_CHECK:
		rc = dkp_check_run(&c);
		break;
	case DKP_CMD_RELAY:
		rc = dkp_relay_run(&c);
		break;
	default:
		rc = EX_USAGE_;
	}
	dkp_cli_free(&c);
	return rc;
}
