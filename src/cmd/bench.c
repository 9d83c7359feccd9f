/*
 * bench.c — `dkimpress bench`; see bench.h and docs/performance.md.
 *
 * Phases, each measured on this machine in this run:
 *  - crypto: every worker thread signs a SHA-256 digest in a loop with the
 *    configured keys (the ESP key, then a customer key, in turn) through
 *    its own struct dkp_signer — the calls dkp_sign makes, nothing else;
 *  - io: `run --once --no-sign`, a process of its own, on a scratch queue:
 *    the queue path (claim, read, write, flush, publish, retire) alone;
 *  - engine: `run --once` the same way;
 *  - engineN: N `run --once` processes on one scratch queue, released
 *    together from a pipe after all are forked: messages/s over the wall
 *    time from the release to the last exit, CPU and peak RSS summed over
 *    the N, p50 the median of their p50s, p99 the largest of their p99s
 *    (the pooled p99 cannot be above it); every process must exit 0, their
 *    counts must add up to the queue, and out/new must hold exactly one
 *    file per queued message.
 * Children report through run --stats; CPU time and peak RSS come from
 * wait4(). Scratch queues are filled with hard links to the corpus, so
 * filling one writes no data, and are removed only at the end: on ext4,
 * inodes freed in the last seconds slow the next creations down, and one
 * phase must not pay for another's clean-up.
 */
#include "cmd/bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/err.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "cmd/run.h"
#include "transport/qdir.h"
#include "dkim/sign.h"
#include "conf/snap.h"

/* PH_ENGINES + N - 1: N engines on one queue (engineN) */
enum { PH_CRYPTO, PH_IO, PH_ENGINE, PH_ENGINES,
       PH_COUNT = PH_ENGINES + DKP_BENCH_MAX_ENGINES };
#define CRYPTO_MAX_KEYS 1000	/* customer keys the crypto phase loads */

struct row {
	int done, ok;
	unsigned engines;	/* processes (engineN: N; 1 for io, engine) */
	double msgs, seconds, bytes, cpu, rss_mb, rss_max_mb, p50, p99;
	double sigs_per_s, msgs_per_s;
	/* CPU while the work was done: an engine's from its first claim to
	 * its end, without its start (configuration, key loading), which
	 * wait4's cpu counts; the crypto phase's cpu is that already */
	double work_cpu;
};

/* Engines of phase ph: N for engineN, 0 for the others. */
static unsigned ph_engines(unsigned ph)
{
	return ph >= PH_ENGINES ? ph - PH_ENGINES + 1 : 0;
}

static unsigned ph_bit(unsigned ph)
{
	return ph >= PH_ENGINES ? DKP_PHASE_ENGINES(ph_engines(ph)) : 1u << ph;
}

static const char *ph_name(unsigned ph)
{
	static const char *const name[PH_ENGINES] = { "crypto", "io", "engine" };
	static char multi[DKP_BENCH_MAX_ENGINES][24];	/* "engine" + a %u */

	if (ph < PH_ENGINES)
		return name[ph];
	snprintf(multi[ph - PH_ENGINES], sizeof(multi[0]), "engine%u", ph_engines(ph));
	return multi[ph - PH_ENGINES];
}

/* User + system CPU seconds of ru. */
static double cpu_of(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

/* ---- crypto bound ---- */

struct cthread {
	pthread_t th;
	unsigned id;
	struct dkp_key *esp[DKP_MAX_ESP_KEYS];	/* every esp_key line */
	size_t nesp;
	struct dkp_key **cust;
	size_t ncust;
	size_t cpm;		/* customer signatures per message */
	double until;
	enum dkp_rsa_backend backend;
	unsigned self_verify;
	int self_verify_rsa_only;
	unsigned long sigs;
	int failed;
};

/* The 8-lane path: a batch's signatures (8 messages' worth, both
 * signatures of each) made together, as a worker makes them. */
static int crypto_batch(struct cthread *t, struct dkp_signer *s,
			unsigned long *n, size_t *j, struct dkp_err *err)
{
	struct dkp_key *k[8 * (DKP_ROUTE_MAX_KEYS + DKP_MAX_ESP_KEYS)];
	unsigned char dig[8 * (DKP_ROUTE_MAX_KEYS + DKP_MAX_ESP_KEYS)][32];
	size_t m = 0, i, c;

	for (i = 0; i < 8; i++) {	/* eight messages' signatures */
		for (c = 0; t->ncust && c < t->cpm; c++) {
			k[m] = t->cust[(*j)++ % t->ncust];
			memset(dig[m], 0x5a, 32);
			memcpy(dig[m], n, sizeof(*n));
			(*n)++, m++;
		}
		for (c = 0; c < t->nesp; c++) {
			k[m] = t->esp[c];
			memset(dig[m], 0x5a, 32);
			memcpy(dig[m], n, sizeof(*n));
			(*n)++, m++;
		}
	}
	return dkp_sign_digests(s, k, (const unsigned char (*)[32])dig, m, err);
}

static void *crypto_main(void *arg)
{
	struct cthread *t = arg;
	struct dkp_signer *s = dkp_signer_new();
	unsigned char dig[32];
	struct dkp_err err;
	size_t siglen, j = t->id * 7919u;
	unsigned long n = 0;

	memset(dig, 0x5a, sizeof(dig));
	dkp_err_clear(&err);
	if (t->backend != DKP_RSA_OPENSSL &&
	    dkp_signer_set_backend(s, t->backend, &err) == DKP_OK) {
		/* as a worker signs: the 8-lane results always checked, the
		 * others as self_verify says */
		dkp_signer_set_verify(s, t->self_verify, t->self_verify_rsa_only);
		dkp_signer_set_batch(s, 1, 0);
		do {
			if (crypto_batch(t, s, &n, &j, &err) != DKP_OK)
				goto fail;
		} while (dkp_mono_now() < t->until);
		t->sigs = n;
		dkp_signer_free(s);
		return NULL;
	}
	for (;;) {
		unsigned k;

		/* a message's worth: customer signatures, then the ESP's */
		for (k = 0; k < 8; k++) {
			size_t c;

			memcpy(dig, &n, sizeof(n));
			for (c = 0; t->ncust && c < t->cpm; c++) {
				if (dkp_sign_digest(s, t->cust[j++ % t->ncust], dig,
						    &siglen, &err) != DKP_OK)
					goto fail;
				n++;
			}
			for (c = 0; c < t->nesp; c++) {
				if (dkp_sign_digest(s, t->esp[c], dig, &siglen, &err) != DKP_OK)
					goto fail;
				n++;
			}
		}
		if (dkp_mono_now() >= t->until)
			break;
	}
	t->sigs = n;
	dkp_signer_free(s);
	return NULL;
fail:
	dkp_error("bench: signing failed: %s", err.msg);
	t->failed = 1;
	dkp_signer_free(s);
	return NULL;
}

static int phase_crypto(struct dkp_snap *s, unsigned seconds, struct row *r)
{
	const struct dkp_config *c = s->cfg;
	struct dkp_key **cust = NULL;
	struct cthread *t;
	size_t ncust = 0, i, cpm = 1, per;
	unsigned long sigs = 0;
	double t0, c0, el;
	int failed = 0;

	if (s->route && dkp_route_nkeys(s->route)) {
		/* as many customer signatures per message as the first
		 * key's domain gets (several keys per SigningTable line,
		 * multiple_signatures) */
		const struct dkp_keyent *k0 = dkp_route_key(s->route, 0), *ks[DKP_ROUTE_MAX_KEYS];

		if (strcmp(k0->domain, "%") != 0 &&
		    (per = dkp_snap_route_all(s, "bench", k0->domain, ks, DKP_ROUTE_MAX_KEYS)))
			cpm = per;
	}
	if (s->route) {
		size_t total = dkp_route_nkeys(s->route);
		/* a sample of a very large KeyTable, spread over it */
		size_t nk = total > CRYPTO_MAX_KEYS ? CRYPTO_MAX_KEYS : total;

		cust = dkp_calloc(nk ? nk : 1, sizeof(*cust));
		for (i = 0; i < nk; i++) {
			const struct dkp_keyent *ke = dkp_route_key(s->route, i * total / nk);
			struct dkp_err err;

			dkp_err_clear(&err);
			if (dkp_keycache_get(s->keys, ke->index, ke->path, &cust[ncust],
					     &err) != DKP_OK) {
				dkp_error("bench: key %s: %s", ke->name, err.msg);
				failed = 1;
				break;
			}
			ncust++;
		}
	}
	t = dkp_calloc(c->threads, sizeof(*t));
	t0 = dkp_mono_now();
	c0 = dkp_cpu_now();
	for (i = 0; !failed && i < c->threads; i++) {
		t[i].id = (unsigned)i;
		for (t[i].nesp = 0; t[i].nesp < s->esp.n; t[i].nesp++)
			t[i].esp[t[i].nesp] = s->esp.k[t[i].nesp].key;
		t[i].cust = cust;
		t[i].ncust = ncust;
		t[i].cpm = cpm;
		t[i].until = t0 + seconds;
		t[i].backend = c->rsa_backend;
		t[i].self_verify = c->self_verify;
		t[i].self_verify_rsa_only = c->self_verify_rsa_only;
		if (pthread_create(&t[i].th, NULL, crypto_main, &t[i]) != 0)
			dkp_fatal("cannot start threads");
	}
	for (i = 0; !failed && i < c->threads; i++) {
		pthread_join(t[i].th, NULL);
		sigs += t[i].sigs;
		failed |= t[i].failed;
	}
	el = dkp_mono_now() - t0;
	memset(r, 0, sizeof(*r));
	r->done = 1;
	r->ok = !failed;
	r->seconds = el;
	r->cpu = dkp_cpu_now() - c0;
	r->work_cpu = r->cpu;
	r->sigs_per_s = el > 0 ? (double)sigs / el : 0;
	/* a message costs its customer and ESP signatures */
	per = (ncust ? cpm : 0) + s->esp.n;
	r->msgs_per_s = r->sigs_per_s / (double)per;
	r->msgs = (double)sigs / (double)per;
	for (i = 0; i < ncust; i++)
		dkp_key_unref(cust[i]);
	dkp_free(cust);
	dkp_free(t);
	return failed ? -1 : 0;
}

/* ---- queue phases ---- */

struct cmsg {
	char *name;
	uint64_t size;
};

struct corpus {
	char *dir;
	struct cmsg *m;		/* sorted by name */
	size_t n;
};

static int cmsg_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cmsg *)a)->name, ((const struct cmsg *)b)->name);
}

static int corpus_load(struct corpus *k, const char *dir)
{
	char path[4096];
	struct stat st;
	struct dirent *de;
	DIR *d;
	size_t cap = 0;

	memset(k, 0, sizeof(*k));
	snprintf(path, sizeof(path), "%s/msgs", dir);
	k->dir = dkp_strdup(stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path : dir);
	if ((d = opendir(k->dir)) == NULL) {
		dkp_error("bench: cannot read the corpus %s: %s", k->dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (!dkp_qdir_id_ok(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (k->n == cap) {
			cap = cap ? 2 * cap : 1024;
			k->m = dkp_realloc(k->m, cap * sizeof(*k->m));
		}
		k->m[k->n].name = dkp_strdup(de->d_name);
		k->m[k->n++].size = (uint64_t)st.st_size;
	}
	closedir(d);
	if (k->n == 0) {
		dkp_error("bench: no messages in %s", k->dir);
		return -1;
	}
	qsort(k->m, k->n, sizeof(*k->m), cmsg_cmp);
	return 0;
}

static void corpus_free(struct corpus *k)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		dkp_free(k->m[i].name);
	dkp_free(k->m);
	dkp_free(k->dir);
}

static int copy_file(int sdir, const char *sname, int ddir, const char *dname)
{
	char buf[65536];
	int in = openat(sdir, sname, O_RDONLY | O_CLOEXEC), out, rc = 0;
	ssize_t n;

	if (in < 0)
		return -1;
	out = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	/* in the kernel where it can; from where it stopped otherwise */
	while ((n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0)) > 0)
		;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			rc = -1;
			break;
		}
	if (n < 0)
		rc = -1;
	close(in);
	if (close(out) < 0)
		rc = -1;
	return rc;
}

/* Queue msgs messages into QDIR/in/new as links to the corpus, the first
 * pass over it; further passes (msgs > corpus) as copies: the engine
 * checks each input's ctime between its read and its retire, and a
 * claim or unlink of another link of the same inode changes it (the
 * message would be put back, as if a producer were still writing it). */
static int fill_queue(const struct corpus *k, const char *qdir, size_t msgs,
		      uint64_t *bytes)
{
	char path[4096], name[DKP_QID_MAX + 32];
	int sfd, dfd, linked = 1;
	size_t m;

	snprintf(path, sizeof(path), "%s/in/new", qdir);
	for (char *p = path + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(path, 0700);
			*p = '/';
		}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		dkp_error("bench: cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	sfd = open(k->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0 || dfd < 0) {
		dkp_error("bench: cannot open %s: %s", sfd < 0 ? k->dir : path,
			  strerror(errno));
		goto fail;
	}
	*bytes = 0;
	for (m = 0; m < msgs; m++) {
		size_t i = m % k->n;

		if (m < k->n)
			snprintf(name, sizeof(name), "%s", k->m[i].name);
		else
			snprintf(name, sizeof(name), "%s.%zu", k->m[i].name, m / k->n);
		if (linked && m < k->n) {
			if (linkat(sfd, k->m[i].name, dfd, name, 0) == 0) {
				*bytes += k->m[i].size;
				continue;
			}
			if (errno != EXDEV && errno != EPERM) {
				dkp_error("bench: cannot link %s into %s: %s",
					  k->m[i].name, path, strerror(errno));
				goto fail;
			}
			linked = 0;	/* another filesystem: copy */
		}
		if (copy_file(sfd, k->m[i].name, dfd, name) < 0) {
			dkp_error("bench: cannot copy %s into %s: %s", k->m[i].name,
				  path, strerror(errno));
			goto fail;
		}
		*bytes += k->m[i].size;
	}
	close(sfd);
	close(dfd);
	sync();		/* this phase must not pay for the last one's writes */
	return 0;
fail:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	return -1;
}

static double json_num(const char *js, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(js, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* Queue IDs in DIR (dot names left out); -1 if it cannot be read. */
static long count_ids(const char *dir)
{
	struct dirent *de;
	long n = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* One child's figures from its --stats file and wait4(). */
struct child {
	pid_t pid;
	int status;
	struct rusage ru;
	double msgs, seconds, bytes, p50, p99, renamed, work_cpu;
	char log[4100], stats[4100];
};

static int p50_cmp(const void *a, const void *b)
{
	double x = ((const struct child *)a)->p50, y = ((const struct child *)b)->p50;

	return x < y ? -1 : x > y;
}

/* Fork `dkimpress run --once` for one engine of the phase; the child waits
 * until gate (a pipe's read end) reads end-of-file, then execs. */
static pid_t spawn_run(const struct dkp_cli *c, int io, const char *const *sets,
		       size_t nsets, struct child *ch, const int gate[2])
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		dkp_error("bench: fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* a fresh `dkimpress run`, so its peak RSS is its own, not
		 * this process's keys and corpus list as well */
		const char *av[2 * (DKP_CLI_MAX_SETS + 3) + 10];
		size_t n = 0, i;
		char b;
		int fd;

		close(gate[1]);
		while (read(gate[0], &b, 1) < 0 && errno == EINTR)
			;
		fd = open(ch->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		av[n++] = "dkimpress";
		av[n++] = "run";
		av[n++] = "-c";
		av[n++] = c->conf;
		av[n++] = "--once";
		av[n++] = "--stats";
		av[n++] = ch->stats;
		if (io)
			av[n++] = "--no-sign";
		for (i = 0; i < nsets; i++) {
			av[n++] = "--set";
			av[n++] = sets[i];
		}
		av[n] = NULL;
		execv("/proc/self/exe", (char *const *)av);
		fprintf(stderr, "bench: cannot run /proc/self/exe: %s\n", strerror(errno));
		_exit(71);
	}
	return pid;
}

/* Each child's log and stats file names, beside the scratch queue. */
static void name_children(struct child *ch, unsigned nproc, unsigned ne,
			  const char *qdir)
{
	unsigned e;

	for (e = 0; e < nproc; e++) {
		if (ne) {
			snprintf(ch[e].log, sizeof(ch[e].log), "%s.%u.log", qdir, e + 1);
			snprintf(ch[e].stats, sizeof(ch[e].stats), "%s.%u.json", qdir, e + 1);
		} else {
			snprintf(ch[e].log, sizeof(ch[e].log), "%s.log", qdir);
			snprintf(ch[e].stats, sizeof(ch[e].stats), "%s.json", qdir);
		}
	}
}

/* Fork every engine, release them at once (closing the gate), wait for
 * all; *t0 the release, *t1 the last exit. Returns 0 or -1. */
static int run_children(const struct dkp_cli *c, int io, const char **sets,
			size_t nsets, struct child *ch, unsigned nproc,
			double *t0, double *t1)
{
	unsigned e, started = 0;
	int gate[2];

	if (pipe2(gate, O_CLOEXEC) < 0) {
		dkp_error("bench: pipe: %s", strerror(errno));
		return -1;
	}
	for (e = 0; e < nproc; e++) {
		if ((ch[e].pid = spawn_run(c, io, sets, nsets, &ch[e], gate)) < 0)
			break;
		started++;
	}
	close(gate[0]);
	if (started < nproc)
		for (e = 0; e < started; e++)
			kill(ch[e].pid, SIGTERM);
	*t0 = dkp_mono_now();
	close(gate[1]);
	for (e = 0; e < started; e++)
		while (wait4(ch[e].pid, &ch[e].status, 0, &ch[e].ru) < 0)
			if (errno != EINTR) {
				dkp_error("bench: wait: %s", strerror(errno));
				return -1;
			}
	*t1 = dkp_mono_now();
	return started < nproc ? -1 : 0;
}

/* One child's figures from its --stats file; -1 when it failed. */
static int read_child(struct child *x, unsigned ph, unsigned e, unsigned nproc)
{
	struct dkp_buf b;
	char chunk[4096];
	const char *js;
	int st = x->status;
	size_t n;
	FILE *f;

	/* the whole file: its per-domain tables (align_domains) can run to
	 * many kilobytes before the counters */
	dkp_buf_init(&b);
	if ((f = fopen(x->stats, "re")) != NULL) {
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			dkp_buf_add(&b, chunk, n);
		fclose(f);
	}
	dkp_buf_add(&b, "", 1);
	js = b.p;
	x->msgs = json_num(js, "signed") + json_num(js, "esp_only");
	x->seconds = json_num(js, "seconds");
	x->work_cpu = json_num(js, "cpu_s");
	x->bytes = json_num(js, "bytes");
	x->p50 = json_num(js, "p50_ms");
	x->p99 = json_num(js, "p99_ms");
	x->renamed = json_num(js, "renamed");
	dkp_buf_free(&b);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || x->msgs < 0 || x->seconds < 0) {
		dkp_error("bench: the %s phase: engine %u of %u exited %d; see %s",
			  ph_name(ph), e + 1, nproc,
			  WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), x->log);
		return -1;
	}
	return 0;
}

/* The children's figures summed into r; *renamed their renamed copies. */
static int sum_children(struct child *ch, unsigned nproc, unsigned ph,
			struct row *r, double *renamed)
{
	unsigned e;
	int bad = 0;

	for (e = 0; e < nproc; e++) {
		struct child *x = &ch[e];
		double rss = (double)x->ru.ru_maxrss / 1024.0;

		if (read_child(x, ph, e, nproc) < 0) {
			bad = 1;
			continue;
		}
		r->msgs += x->msgs;
		r->bytes += x->bytes;
		r->cpu += cpu_of(&x->ru);
		r->work_cpu += x->work_cpu;
		r->rss_mb += rss;
		if (rss > r->rss_max_mb)
			r->rss_max_mb = rss;
		if (x->p99 > r->p99)
			r->p99 = x->p99;
		*renamed += x->renamed;
	}
	return bad ? -1 : 0;
}

/* engineN: how the queue was shared (in the order of the p50s). */
static void log_shares(const struct child *ch, unsigned nproc, unsigned ph,
		       double seconds)
{
	char line[16 * DKP_BENCH_MAX_ENGINES + 64];
	size_t n = 0;
	unsigned e;

	for (e = 0; e < nproc && n < sizeof(line) - 20; e++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%.0f",
				      e ? "+" : "", ch[e].msgs);
	dkp_info("bench: %s: %s messages in %.2f s", ph_name(ph), line, seconds);
}

static int phase_queue(const struct dkp_cli *c, const struct corpus *k,
		       const char *work, unsigned ph, unsigned rep, size_t msgs,
		       struct row *r)
{
	char qdir[3900], path[4000];
	char set_in[4300], set_out[4300], set_failed[4300];
	const char *sets[DKP_CLI_MAX_SETS + 3];
	unsigned ne = ph_engines(ph), nproc = ne ? ne : 1;
	struct child ch[DKP_BENCH_MAX_ENGINES];
	uint64_t bytes = 0;
	size_t nsets = 0, i;
	double t0, t1, renamed = 0;
	long in_out;

	memset(r, 0, sizeof(*r));
	memset(ch, 0, sizeof(ch));
	r->done = 1;
	r->engines = nproc;
	snprintf(qdir, sizeof(qdir), "%s/%s-%u", work, ph_name(ph), rep);
	name_children(ch, nproc, ne, qdir);
	if (fill_queue(k, qdir, msgs, &bytes) < 0)
		return -1;
	for (i = 0; i < c->nsets; i++)
		sets[nsets++] = c->sets[i];
	snprintf(set_in, sizeof(set_in), "in_dir=%s/in", qdir);
	snprintf(set_out, sizeof(set_out), "out_dir=%s/out", qdir);
	snprintf(set_failed, sizeof(set_failed), "failed_dir=%s/failed", qdir);
	sets[nsets++] = set_in;
	sets[nsets++] = set_out;
	sets[nsets++] = set_failed;
	if (run_children(c, ph == PH_IO, sets, nsets, ch, nproc, &t0, &t1) < 0 ||
	    sum_children(ch, nproc, ph, r, &renamed) < 0)
		return -1;
	if (ne == 0) {
		/* io, engine: the run's own clock, from its start to drained */
		r->seconds = ch[0].seconds;
		r->p50 = ch[0].p50;
	} else {
		/* engineN: the wall time from the release to the last exit */
		r->seconds = t1 - t0;
		qsort(ch, nproc, sizeof(ch[0]), p50_cmp);
		r->p50 = nproc % 2 ? ch[nproc / 2].p50
				   : (ch[nproc / 2 - 1].p50 + ch[nproc / 2].p50) / 2;
	}
	r->msgs_per_s = r->seconds > 0 ? r->msgs / r->seconds : 0;
	snprintf(path, sizeof(path), "%s/out/new", qdir);
	in_out = count_ids(path);
	r->ok = r->msgs == (double)msgs && in_out == (long)msgs && renamed == 0;
	if (!r->ok) {
		dkp_error("bench: the %s phase published %.0f of %zu messages, "
			  "%.0f under a new name, out/new holds %ld; see %s",
			  ph_name(ph), r->msgs, msgs, renamed, in_out, ch[0].log);
		return -1;
	}
	if (ne)
		log_shares(ch, nproc, ph, r->seconds);
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int type,
		  struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT
		       ? -1 : 0;
}

static int row_cmp(const void *a, const void *b)
{
	double x = ((const struct row *)a)->msgs_per_s;
	double y = ((const struct row *)b)->msgs_per_s;

	return x < y ? -1 : x > y;
}

static void print_row(FILE *f, const char *label, unsigned ph, const struct row *r,
		      double bound)
{
	char ratio[32] = "-";

	if (bound > 0)
		snprintf(ratio, sizeof(ratio), "%.2f", r->msgs_per_s / bound);
	if (ph == PH_CRYPTO) {
		fprintf(f, "%-12s %-8s %8.0f %7s %9.2f %7s %7s %7s %6s  (%.0f signatures/s)\n",
			label, ph_name(ph), r->msgs_per_s, "-",
			r->msgs > 0 ? r->cpu / r->msgs * 1000 : 0, "-", "-", "-",
			"-", r->sigs_per_s);
		return;
	}
	fprintf(f, "%-12s %-8s %8.0f %7.1f %9.2f %7.1f %7.1f %7.1f %6s\n",
		label, ph_name(ph), r->msgs_per_s,
		r->seconds > 0 ? r->bytes / r->seconds / 1e6 : 0,
		r->msgs > 0 ? r->cpu / r->msgs * 1000 : 0, r->rss_mb, r->p50,
		r->p99, ratio);
}

static void json_row(FILE *f, const char *label, const struct dkp_config *cfg,
		     unsigned ph, const struct row *r, double bound, unsigned runs)
{
	fprintf(f, "{\"label\":\"%s\",\"phase\":\"%s\",\"engines\":%u,"
		"\"threads\":%u,\"batch\":%u,"
		"\"uring_depth\":%u,\"flush\":\"%s\",\"runs\":%u,\"messages\":%.0f,"
		"\"seconds\":%.4f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,"
		"\"cpu_s_per_1k\":%.4f,\"peak_rss_mb\":%.1f,\"p50_ms\":%.3f,"
		"\"p99_ms\":%.3f,\"sigs_per_s\":%.1f,\"bound_msgs_per_s\":%.1f,"
		"\"ratio\":%.4f,\"peak_rss_max_mb\":%.1f,\"work_cpu_s_per_1k\":%.4f}\n",
		label, ph_name(ph), r->engines, cfg->threads, cfg->batch, cfg->uring_depth,
		cfg->flush == DKP_FLUSH_FILES ? "files" : "filesystem", runs,
		r->msgs, r->seconds, r->msgs_per_s,
		r->seconds > 0 && ph != PH_CRYPTO ? r->bytes / r->seconds / 1e6 : 0,
		r->msgs > 0 ? r->cpu / r->msgs * 1000 : 0, r->rss_mb, r->p50,
		r->p99, r->sigs_per_s, bound,
		bound > 0 && ph != PH_CRYPTO ? r->msgs_per_s / bound : 0,
		r->rss_max_mb, r->msgs > 0 ? r->work_cpu / r->msgs * 1000 : 0);
}

/* The rows' label: --label or CONF's file name, safe inside JSON. */
static void make_label(const struct dkp_cli *c, char *label, size_t size)
{
	const char *base = strrchr(c->conf, '/');

	snprintf(label, size, "%s", c->label ? c->label : base ? base + 1 : c->conf);
	for (char *p = label; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '_';	/* it goes into JSON as it is */
}

/* Every selected phase, c->repeat times, alternating; -1 at the first
 * that fails. */
static int run_phases(const struct dkp_cli *c, struct dkp_snap *s,
		      const struct corpus *k, const char *work, size_t msgs,
		      const char *label, struct row (*rows)[100])
{
	unsigned rep, ph;
	int rc;

	for (rep = 0; rep < c->repeat; rep++)
		for (ph = 0; ph < PH_COUNT; ph++) {
			if (!(c->phases & ph_bit(ph)))
				continue;
			fprintf(stderr, "bench %s: %s %u/%u ...\n", label, ph_name(ph),
				rep + 1, c->repeat);
			if (ph == PH_CRYPTO)
				rc = phase_crypto(s, c->seconds, &rows[ph][rep]);
			else
				rc = phase_queue(c, k, work, ph, rep, msgs, &rows[ph][rep]);
			if (rc < 0)
				return -1;
		}
	return 0;
}

/* The median run of each phase, printed (and appended to jf). */
static void report(const struct dkp_cli *c, const struct dkp_snap *s,
		   const char *label, struct row (*rows)[100], FILE *jf)
{
	struct row med[PH_COUNT];
	double bound = 0;
	unsigned ph;

	memset(med, 0, sizeof(med));
	for (ph = 0; ph < PH_COUNT; ph++) {
		if (!(c->phases & ph_bit(ph)))
			continue;
		qsort(rows[ph], c->repeat, sizeof(rows[ph][0]), row_cmp);
		med[ph] = rows[ph][c->repeat / 2];
	}
	if (med[PH_CRYPTO].done && med[PH_IO].done)
		bound = med[PH_CRYPTO].msgs_per_s < med[PH_IO].msgs_per_s
				? med[PH_CRYPTO].msgs_per_s : med[PH_IO].msgs_per_s;
	printf("%-12s %-8s %8s %7s %9s %7s %7s %7s %6s\n", "label", "phase",
	       "msg/s", "MB/s", "CPU s/1k", "RSS MB", "p50 ms", "p99 ms", "ratio");
	for (ph = 0; ph < PH_COUNT; ph++) {
		if (!med[ph].done)
			continue;
		print_row(stdout, label, ph, &med[ph], ph == PH_CRYPTO ? 0 : bound);
		if (jf)
			json_row(jf, label, s->cfg, ph, &med[ph], bound, c->repeat);
	}
	if (bound > 0)
		printf("ratio: messages/s over min(crypto, io) = %.0f msg/s, medians of %u run%s\n",
		       bound, c->repeat, c->repeat == 1 ? "" : "s");
	fflush(stdout);
}

/* The corpus and this run's own scratch directory (beside the configured
 * queue by default: the same filesystem). Returns 0, -1 (work cannot be
 * made; the corpus is loaded) or -2 (no corpus). */
static int prepare(const struct dkp_cli *c, const struct dkp_snap *s,
		   struct corpus *k, char *work, size_t worksz)
{
	if (c->work)
		snprintf(work, worksz, "%s/bench.%ld", c->work, (long)getpid());
	else
		snprintf(work, worksz, "%s.bench.%ld", s->cfg->in_dir, (long)getpid());
	if (corpus_load(k, c->corpus) < 0)
		return -2;
	if (c->work)
		mkdir(c->work, 0700);
	if (mkdir(work, 0700) < 0) {
		dkp_error("bench: cannot create %s: %s", work, strerror(errno));
		return -1;
	}
	return 0;
}

int dkp_bench_run(const struct dkp_cli *c)
{
	struct row (*rows)[100];
	struct dkp_snap *s = NULL;
	struct corpus k;
	struct dkp_err err;
	char work[3600], label[256];
	size_t msgs;
	int failed = 0, have_corpus = 0, rc;
	FILE *jf = NULL;

	dkp_err_clear(&err);
	if (dkp_snap_load(&s, c->conf, c->sets, c->nsets, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		return 78;
	}
	make_label(c, label, sizeof(label));
	if (c->phases & ~DKP_PHASE_CRYPTO) {
		if ((rc = prepare(c, s, &k, work, sizeof(work))) == -2) {
			dkp_snap_unref(s);
			return 66;
		}
		have_corpus = 1;
		failed = rc < 0;
	}
	msgs = c->messages ? c->messages : have_corpus ? k.n : 0;
	if (c->json && (jf = fopen(c->json, "ae")) == NULL) {
		dkp_error("bench: cannot write %s: %s", c->json, strerror(errno));
		failed = 1;
	}
	rows = dkp_calloc(PH_COUNT, sizeof(*rows));
	if (!failed) {
		fprintf(stderr, "bench %s: %u threads, batch %u, uring_depth %u, flush %s; %zu messages; %u run%s\n",
			label, s->cfg->threads, s->cfg->batch, s->cfg->uring_depth,
			s->cfg->flush == DKP_FLUSH_FILES ? "files" : "filesystem",
			msgs, c->repeat, c->repeat == 1 ? "" : "s each");
		failed = run_phases(c, s, &k, work, msgs, label, rows) < 0;
	}
	if (!failed)
		report(c, s, label, rows, jf);
	if (jf && fclose(jf) != 0) {
		dkp_error("bench: cannot write %s: %s", c->json, strerror(errno));
		failed = 1;
	}
	if (have_corpus) {
		if (failed)
			dkp_info("bench: the scratch queues and their logs stay in %s", work);
		else if (!c->keep && nftw(work, rm_one, 32, FTW_DEPTH | FTW_PHYS) < 0 &&
			 errno != ENOENT)
			dkp_warn("bench: cannot remove %s: %s", work, strerror(errno));
		corpus_free(&k);
	}
	dkp_snap_unref(s);
	dkp_free(rows);
	return failed ? 1 : 0;
}
