/*
 * odkim-sign -- the libopendkim peer for the dkimpress benchmark: it
 * double-signs a directory of messages (customer key, then ESP key) with
 * libopendkim, the signer most ESPs run, as durably as `dkimpress run`.
 *
 *   odkim-sign --in DIR --out DIR --keys FILE --esp DOMAIN:SELECTOR:KEYFILE
 *              [--threads N] [--batch B]
 *
 * --keys: "DOMAIN SELECTOR KEYFILE" lines, '#' comments.  A message whose
 * From domain has no key gets the ESP signature only.  OUT/new/NAME holds
 * the customer field, the ESP field, then the message unchanged.  Output:
 * one JSON line {"messages","failed","bytes","seconds","p50_ms","p99_ms"}.
 * Exit 0, 1 if a message failed (one stderr line each, input left in place)
 * or set-up failed (no JSON), 64 on a usage error.
 *
 * Fairness choices (odkim_sign.md says more):
 *  - Key files are read once at start.  libopendkim takes the PEM text in
 *    dkim_sign() and parses it again for every signature: that is its real
 *    cost, so it is kept.
 *  - One DKIM_LIB shared by all workers, as the opendkim milter does.
 *  - The signatures dkimpress makes: c=relaxed/relaxed, t=, no l=, no x=,
 *    rsa-sha256 or ed25519-sha256 by key type, h= from dkimpress's default
 *    list (libopendkim's own default signs every field), no oversigning.
 *  - Both signatures cover the original message; the ESP one does not
 *    cover the customer one (dkimpress never signs DKIM-Signature).
 *  - dkimpress's durability (flush = filesystem): O_EXCL file in OUT/tmp,
 *    write, close; one syncfs() for the batch; rename (no replace) into
 *    OUT/new; one OUT/new fsync per batch; then unlink the batch's inputs.
 *    The peer skips dkimpress's claim rename into in/cur/, which favours
 *    it.
 *  - dkimpress's work split: N threads take B names at a time from the
 *    sorted listing through an atomic index.  Plain syscalls, no io_uring.
 */
#define _GNU_SOURCE 1

#include <sys/stat.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <dkim.h>

#define SIGHDR		"DKIM-Signature: "
#define NAME_LIMIT	200	/* leaves room for ".THREAD" within NAME_MAX */

/* dkp_sign_default_headers (src/sign.c): the same h= as dkimpress. */
static const char *const sign_headers[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date",
	"Resent-From", "Resent-To", "Resent-Cc", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive", "Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe-Post", "Feedback-ID", NULL,
};

struct key {
	char *domain;		/* lowercase */
	char *selector;
	unsigned char *pem;	/* the whole key file, NUL-terminated */
	dkim_alg_t alg;
};

/* Each worker owns its buffers and counters; main() merges them. */
struct worker {
	pthread_t tid;
	int id;
	unsigned char *msg;	/* the input message */
	size_t msgcap;
	char *out;		/* signature fields, then the message */
	size_t outlen, outcap;
	double *lat;		/* ms, one per published message */
	size_t nlat, latcap;
	unsigned long ok, failed;
	unsigned long long bytes;
};

/* Set up by main() before the workers start, read-only after. */
static DKIM_LIB *lib;
static struct key *keys, esp;
static char **names;
static size_t nkeys, nnames, batch = 32;
static int in_fd, tmp_fd, new_fd;
static atomic_size_t next_name;

static void usage(void)
{
	fputs("usage: odkim-sign --in DIR --out DIR --keys FILE"
	      " --esp DOMAIN:SELECTOR:KEYFILE [--threads N] [--batch B]\n",
	      stderr);
	exit(64);
}

static void *xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n ? n : 1)) == NULL) {
		fputs("odkim-sign: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Read all of PATH (relative to the directory DFD) into *BUF, grown as
 * needed and NUL-terminated; 0 or -errno. */
static int read_file(int dfd, const char *path, unsigned char **buf,
		     size_t *cap, size_t *lenp)
{
	struct stat st;
	size_t len = 0, need;
	ssize_t n;
	int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		err = -errno;
	need = err ? 0 : (size_t)st.st_size + 2;  /* room to see EOF, and NUL */
	while (err == 0) {
		if (*cap < need)
			*buf = xrealloc(*buf, *cap = need);
		n = read(fd, *buf + len, *cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == *cap - 1)	/* the file grew after fstat */
			need = *cap * 2;
	}
	if (fd >= 0)
		close(fd);
	if (err == 0) {
		(*buf)[len] = '\0';
		*lenp = len;
	}
	return err;
}

/* Write all LEN bytes, resuming after short writes; 0 or -errno. */
static int write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read PATH once and check it is an RSA or Ed25519 PEM key; 0 or -1. */
static int load_key(const char *domain, const char *sel, const char *path,
		    struct key *k)
{
	size_t cap = 0, len = 0;
	int err, id = EVP_PKEY_NONE;
	BIO *bio;
	EVP_PKEY *pk;

	memset(k, 0, sizeof *k);
	if ((err = read_file(AT_FDCWD, path, &k->pem, &cap, &len)) < 0) {
		fprintf(stderr, "odkim-sign: %s: %s\n", path, strerror(-err));
		return -1;
	}
	/* An empty passphrase: an encrypted key fails here, never prompts. */
	bio = BIO_new_mem_buf(k->pem, (int)len);
	pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
	if (pk != NULL)
		id = EVP_PKEY_id(pk);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	if (id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
		fprintf(stderr, "odkim-sign: %s: not an unencrypted RSA or"
			" Ed25519 private key in PEM\n", path);
		return -1;
	}
	k->alg = id == EVP_PKEY_RSA ? DKIM_SIGN_RSASHA256
				    : DKIM_SIGN_ED25519SHA256;
	k->domain = xstrdup(domain);
	k->selector = xstrdup(sel);
	for (char *p = k->domain; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct key *)a)->domain,
		      ((const struct key *)b)->domain);
}

/* Load the --keys table into the sorted array keys[]; 0 or -1. */
static int load_keys(const char *path)
{
	char line[4096], *save, *dom, *sel, *file;
	unsigned long lineno = 0;
	size_t i, cap = 0;
	int rc = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "odkim-sign: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		lineno++;
		line[strcspn(line, "#\r\n")] = '\0';
		if ((dom = strtok_r(line, " \t", &save)) == NULL)
			continue;
		sel = strtok_r(NULL, " \t", &save);
		file = strtok_r(NULL, " \t", &save);
		if (file == NULL || strtok_r(NULL, " \t", &save) != NULL) {
			fprintf(stderr, "odkim-sign: %s:%lu: want DOMAIN"
				" SELECTOR KEYFILE\n", path, lineno);
			rc = -1;
			break;
		}
		if (nkeys == cap) {
			cap = cap ? cap * 2 : 16;
			keys = xrealloc(keys, cap * sizeof *keys);
		}
		if ((rc = load_key(dom, sel, file, &keys[nkeys])) == 0)
			nkeys++;
	}
	fclose(f);
	qsort(keys, nkeys, sizeof *keys, key_cmp);
	for (i = 1; rc == 0 && i < nkeys; i++) {
		if (strcmp(keys[i - 1].domain, keys[i].domain) == 0) {
			fprintf(stderr, "odkim-sign: %s: two keys for %s\n",
				path, keys[i].domain);
			rc = -1;
		}
	}
	return rc;
}

/* Domain of the first From: field, lowercased; false when none is found. */
static bool from_domain(const unsigned char *m, size_t len, char *out,
			size_t outsz)
{
	size_t i = 0, end, o = 0;
	const unsigned char *p, *at;

	while (i < len && m[i] != '\r' && m[i] != '\n') {
		/* the field ends at a line end not followed by SP or HTAB */
		for (end = i; ; ) {
			p = memchr(m + end, '\n', len - end);
			end = p != NULL ? (size_t)(p - m) + 1 : len;
			if (end >= len || (m[end] != ' ' && m[end] != '\t'))
				break;
		}
		if (end - i > 5 &&
		    strncasecmp((const char *)m + i, "From:", 5) == 0) {
			i += 5;
			/* an address in <> wins over '@' in a display name */
			if ((p = memrchr(m + i, '<', end - i)) != NULL)
				i = (size_t)(p - m) + 1;
			if ((at = memchr(m + i, '@', end - i)) == NULL)
				return false;
			for (p = at + 1; p < m + end && *p != '>' &&
			     !isspace(*p) && o + 1 < outsz; p++)
				out[o++] = (char)tolower(*p);
			out[o] = '\0';
			return o > 0;
		}
		i = end;
	}
	return false;
}

static void out_append(struct worker *w, const void *p, size_t n)
{
	if (w->outcap - w->outlen < n)
		w->out = xrealloc(w->out, w->outcap = (w->outlen + n) * 2);
	memcpy(w->out + w->outlen, p, n);
	w->outlen += n;
}

/* Sign the LEN bytes of w->msg with K; append the field to w->out. */
static int sign_one(struct worker *w, const char *name, const struct key *k,
		    size_t len, char *why, size_t whysz)
{
	DKIM_STAT st;
	DKIM *d;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	const char *e;

	d = dkim_sign(lib, (const unsigned char *)name, NULL, k->pem,
		      (const unsigned char *)k->selector,
		      (const unsigned char *)k->domain, DKIM_CANON_RELAXED,
		      DKIM_CANON_RELAXED, k->alg, -1, &st);
	if (d == NULL) {
		snprintf(why, whysz, "dkim_sign d=%s: %s", k->domain,
			 dkim_getresultstr(st));
		return -1;
	}
	st = dkim_chunk(d, w->msg, len);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, NULL, 0);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(d, NULL);
	/* The value comes folded with CRLF TAB, without a final CRLF. */
	if (st == DKIM_STAT_OK)
		st = dkim_getsighdr_d(d, strlen(SIGHDR), &sig, &siglen);
	if (st != DKIM_STAT_OK) {
		e = dkim_geterror(d);
		snprintf(why, whysz, "d=%s: %s%s%s", k->domain,
			 dkim_getresultstr(st), e ? ": " : "", e ? e : "");
		dkim_free(d);
		return -1;
	}
	out_append(w, SIGHDR, strlen(SIGHDR));
	out_append(w, sig, siglen);
	out_append(w, "\r\n", 2);
	dkim_free(d);
	return 0;
}

/* Allow-list for the names readdir gave us, before they reach a path. */
static bool name_ok(const char *name)
{
	size_t i;

	for (i = 0; name[i] != '\0'; i++)
		if (!isalnum((unsigned char)name[i]) &&
		    strchr("._-+=,@", name[i]) == NULL)
			return false;
	return i > 0 && i <= NAME_LIMIT;
}

/* Read and sign one message into OUT/tmp/NAME.ID (not yet flushed);
 * 0, or -1 with WHY. */
static int do_message(struct worker *w, const char *name, size_t *lenp,
		      char *why, size_t whysz)
{
	char dom[256], tmp[NAME_LIMIT + 16];
	const char *step = "read";
	const struct key *ck = NULL, want = { .domain = dom };
	int fd, err;

	if (!name_ok(name)) {
		snprintf(why, whysz, "unsafe file name");
		return -1;
	}
	if ((err = read_file(in_fd, name, &w->msg, &w->msgcap, lenp)) < 0) {
		errno = -err;
		goto sys;
	}
	w->outlen = 0;
	if (from_domain(w->msg, *lenp, dom, sizeof dom))
		ck = bsearch(&want, keys, nkeys, sizeof *keys, key_cmp);
	if ((ck != NULL && sign_one(w, name, ck, *lenp, why, whysz) < 0) ||
	    sign_one(w, name, &esp, *lenp, why, whysz) < 0)
		return -1;
	out_append(w, w->msg, *lenp);

	snprintf(tmp, sizeof tmp, "%s.%d", name, w->id);
	step = "create in out/tmp";
	fd = openat(tmp_fd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		goto sys;
	step = "write";
	err = write_all(fd, w->out, w->outlen);
	if (close(fd) < 0 && err == 0) {
		step = "close";
		err = -errno;
	}
	if (err == 0)
		return 0;
	unlinkat(tmp_fd, tmp, 0);
	errno = -err;
sys:
	snprintf(why, whysz, "%s: %s", step, strerror(errno));
	return -1;
}

/* Fail every still-good message among the N at names[FIRST], for REASON. */
static void fail_rest(struct worker *w, size_t first, bool *ok, size_t n,
		      const char *reason, int err)
{
	for (size_t i = 0; i < n; i++) {
		if (ok[i]) {
			fprintf(stderr, "odkim-sign: %s: %s: %s\n",
				names[first + i], reason, strerror(err));
			ok[i] = false;
			w->failed++;
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	double *t0 = xrealloc(NULL, batch * sizeof *t0), t1;
	size_t *len = xrealloc(NULL, batch * sizeof *len), first, n, i, nok;
	bool *ok = xrealloc(NULL, batch * sizeof *ok);
	char why[512];

	while ((first = atomic_fetch_add(&next_name, batch)) < nnames) {
		n = nnames - first < batch ? nnames - first : batch;
		for (nok = 0, i = 0; i < n; i++) {
			t0[i] = now_ms();	/* the message is taken */
			ok[i] = do_message(w, names[first + i], &len[i], why,
					   sizeof why) == 0;
			nok += ok[i];
			if (!ok[i]) {
				fprintf(stderr, "odkim-sign: %s: %s\n",
					names[first + i], why);
				w->failed++;
			}
		}
		if (nok == 0)
			continue;
		/* Group commit, as dkimpress: one flush for the batch's files,
		 * then publish, then one flush of out/new. */
		if (syncfs(tmp_fd) < 0) {
			fail_rest(w, first, ok, n, "syncfs out/tmp", errno);
			continue;
		}
		for (i = 0; i < n; i++) {
			char tmp[NAME_LIMIT + 16];

			if (!ok[i])
				continue;
			snprintf(tmp, sizeof tmp, "%s.%d", names[first + i], w->id);
			if (renameat2(tmp_fd, tmp, new_fd, names[first + i],
				      RENAME_NOREPLACE) < 0) {
				fail_rest(w, first + i, ok + i, 1,
					  "rename into out/new", errno);
				unlinkat(tmp_fd, tmp, 0);
			}
		}
		if (fsync(new_fd) < 0) {
			fail_rest(w, first, ok, n, "fsync out/new", errno);
			continue;
		}
		t1 = now_ms();
		for (i = 0; i < n; i++)
			if (ok[i] && unlinkat(in_fd, names[first + i], 0) < 0)
				fail_rest(w, first + i, ok + i, 1,
					  "unlink input", errno);
		for (i = 0; i < n; i++) {
			if (!ok[i])
				continue;
			if (w->nlat == w->latcap) {
				w->latcap = w->latcap ? w->latcap * 2 : 1024;
				w->lat = xrealloc(w->lat,
						  w->latcap * sizeof *w->lat);
			}
			w->lat[w->nlat++] = t1 - t0[i];
			w->ok++;
			w->bytes += len[i];
		}
	}
	free(t0);
	free(len);
	free(ok);
	return NULL;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names[] := the regular, non-hidden files of DFD, sorted; 0 or -errno. */
static int list_dir(int dfd)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct stat st;
	size_t cap = 0;
	bool reg;

	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		reg = de->d_type == DT_REG;
		if (de->d_type == DT_UNKNOWN)	/* the filesystem did not say */
			reg = fstatat(dfd, de->d_name, &st,
				      AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISREG(st.st_mode);
		if (!reg)
			continue;
		if (nnames == cap) {
			cap = cap ? cap * 2 : 1024;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[nnames++] = xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, nnames, sizeof *names, str_cmp);
	return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile P (0..1] of the N sorted values V. */
static double pct(const double *v, size_t n, double p)
{
	size_t r = (size_t)(p * (double)n);

	if ((double)r < p * (double)n)
		r++;
	return n == 0 ? 0 : v[r > 0 ? r - 1 : 0];
}

/* Open DIR/SUB as a directory, first creating it if MAKE; fd or -1. */
static int open_dir(const char *dir, const char *sub, bool make)
{
	char path[4096];
	int fd = -1;

	snprintf(path, sizeof path, "%s%s%s", dir, *sub ? "/" : "", sub);
	if (!make || mkdir(path, 0700) == 0 || errno == EEXIST)
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		fprintf(stderr, "odkim-sign: %s: %s\n", path, strerror(errno));
	return fd;
}

static long num_arg(const char *s, long max)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > max)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "in", 1, NULL, 'i' }, { "out", 1, NULL, 'o' },
		{ "keys", 1, NULL, 'k' }, { "esp", 1, NULL, 'e' },
		{ "threads", 1, NULL, 't' }, { "batch", 1, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *in = NULL, *out = NULL, *keyfile = NULL;
	char *espdom = NULL, *espsel = NULL, *esppath = NULL;
	struct worker *ws;
	size_t i, nlat = 0, nthreads = 2;
	unsigned long ok = 0, failed = 0;
	unsigned long long bytes = 0;
	double *lat, t_start, secs;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'e': espdom = xstrdup(optarg); break;
		case 't': nthreads = (size_t)num_arg(optarg, 1024); break;
		case 'b': batch = (size_t)num_arg(optarg, 1L << 20); break;
		default: usage();
		}
	}
	if (espdom != NULL && (espsel = strchr(espdom, ':')) != NULL)
		esppath = strchr(espsel + 1, ':');
	if (optind != argc || !in || !out || !keyfile || esppath == NULL ||
	    espsel == espdom || esppath == espsel + 1 || esppath[1] == '\0')
		usage();
	*espsel++ = '\0';
	*esppath++ = '\0';

	lib = dkim_init(NULL, NULL);
	if (lib == NULL || dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
					(void *)sign_headers, sizeof(char **))
			   != DKIM_STAT_OK) {
		fputs("odkim-sign: cannot set up libopendkim\n", stderr);
		return 1;
	}
	if (load_key(espdom, espsel, esppath, &esp) < 0 ||
	    load_keys(keyfile) < 0)
		return 1;
	if ((in_fd = open_dir(in, "", false)) < 0 ||
	    open_dir(out, "", true) < 0 ||
	    (tmp_fd = open_dir(out, "tmp", true)) < 0 ||
	    (new_fd = open_dir(out, "new", true)) < 0)
		return 1;
	if ((c = list_dir(in_fd)) < 0) {
		fprintf(stderr, "odkim-sign: %s: %s\n", in, strerror(-c));
		return 1;
	}

	ws = xrealloc(NULL, nthreads * sizeof *ws);
	memset(ws, 0, nthreads * sizeof *ws);
	t_start = now_ms();
	for (i = 0; i < nthreads; i++) {
		ws[i].id = (int)i;
		c = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
		if (c != 0) {
			fprintf(stderr, "odkim-sign: pthread_create: %s\n",
				strerror(c));
			return 1;
		}
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(ws[i].tid, NULL);
	secs = (now_ms() - t_start) / 1e3;

	for (i = 0; i < nthreads; i++)
		nlat += ws[i].nlat;
	lat = xrealloc(NULL, nlat * sizeof *lat);
	for (nlat = 0, i = 0; i < nthreads; i++) {
		if (ws[i].nlat > 0)
			memcpy(lat + nlat, ws[i].lat, ws[i].nlat * sizeof *lat);
		nlat += ws[i].nlat;
		ok += ws[i].ok;
		failed += ws[i].failed;
		bytes += ws[i].bytes;
	}
	qsort(lat, nlat, sizeof *lat, dbl_cmp);
	printf("{\"messages\":%lu,\"failed\":%lu,\"bytes\":%llu,"
	       "\"seconds\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
	       ok, failed, bytes, secs, pct(lat, nlat, 0.50),
	       pct(lat, nlat, 0.99));
	dkim_close(lib);
	return failed == 0 ? 0 : 1;
}
