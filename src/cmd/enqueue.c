/*
 * enqueue.c — `dkimpress enqueue`: hand one message to the queue; see
 * enqueue.h and docs/queue.md ("Producers").
 *
 * The steps, in order, each named by the function that does it:
 *
 *   check_args    addresses valid, before anything is touched     (64)
 *   load config   only in_dir and max_message_size are used       (78)
 *   open_input    FILE or standard input                          (66)
 *   open_dirs     in/tmp and in/new                                (73)
 *   create_tmp    in/tmp/ID, O_CREAT|O_EXCL|O_NOFOLLOW, 0600       (73/75)
 *   copy_message  envelope lines, then the message, streamed,
 *                 stopped at max_message_size                      (65/74/75)
 *   fsync, close  the file's data is durable before its name is
 *   publish       renameat2(in/tmp/ID, in/new/ID, RENAME_NOREPLACE),
 *                 then fsync(in/new)                               (74/75)
 *
 * Until publish, any failure (and SIGTERM/SIGINT/SIGHUP, as sent by an
 * MTA's time limit) removes in/tmp/ID, so a failed call leaves nothing
 * behind and a retry makes a fresh ID. From the rename on, the catchable
 * termination signals are blocked: a message that is in in/new is not
 * also reported as failed (the MTA would send it again).
 *
 * With --id (and dedup_window > 0) the steps after fsync, close go under
 * the ID's lock in in/dedup (transport/dedup.h, docs/queue.md "The
 * de-duplication window"):
 *
 *   dedup_check   the ID published within the window: drop in/tmp/ID,
 *                 exit 0 (a duplicate)
 *   dedup_stage   in/tmp/ID becomes in/tmp/dd.KEY, in/tmp flushed
 *   dedup_mark    KEY remembered, flushed
 *   publish       renameat2(in/tmp/dd.KEY, in/new/ID), fsync(in/new)
 *
 * With transport = jetstream (enqueue_jetstream) the message is read into
 * memory instead and published to in_subject under a new ID (or --id) with
 * the envelope in headers, waiting for the stream's acknowledgement
 * (dkp_js_publish: 75 when the cluster does not answer); the stream's
 * duplicate window drops a second publish with the same ID.
 *
 * Exit codes: only a fault of the message itself is permanent (64 a bad
 * address, 65 empty or too big, 66 an unreadable FILE); every other
 * failure, the signer's own (configuration, queue permissions, I/O, a
 * command line that master.cf got wrong), is 75 so that the MTA keeps
 * the message and retries (exit_code).
 */
#include "cmd/enqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/config.h"
#include "dkim/envelope.h"
#include "transport/dedup.h"
#include "transport/jetstream.h"
#include "transport/qdir.h"

#define EX_USAGE_ 64
#define EX_DATAERR_ 65
#define EX_NOINPUT_ 66
#define EX_CANTCREAT_ 73
#define EX_IOERR_ 74
#define EX_TEMPFAIL_ 75
#define EX_CONFIG_ 78

/* New IDs tried when a name is taken (it never should be). */
#define ID_TRIES 16
#define HOST_MAX 64
/* How long a hand-over waits for another one of the same --id, and how
 * many dead window entries each call removes. */
#define DEDUP_WAIT_MS 30000
#define DEDUP_SWEEP 64

/*
 * The temporary file, for the signal handler. tmp_live is set only while
 * in/tmp/tmp_name exists and is ours, so the handler never removes a
 * file another process made.
 */
static volatile sig_atomic_t tmp_live;
static int tmp_dirfd = -1;
static char tmp_name[256];

static void on_signal(int sig)
{
	(void)sig;
	if (tmp_live)
		unlinkat(tmp_dirfd, tmp_name, 0);
	_exit(EX_TEMPFAIL_);
}

static void term_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGALRM);
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigfillset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	/* a closed stdout or a file size limit must be an error we report,
	 * not a death that the MTA reads as "try again" */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGXFSZ, &sa, NULL);
}

static void block_signals(int block)
{
	sigset_t set;

	term_signals(&set);
	sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* Worth a retry later: the disk or the system may have room again. */
static int temp_errno(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
	case EAGAIN:
	case EINTR:
	case ENOMEM:
	case ENOBUFS:
	case EMFILE:
	case ENFILE:
	case ETIMEDOUT:
	case EBUSY:
		return 1;
	}
	return 0;
}

/* Exit code for a failed write, flush or rename: 75 or 74. */
static int io_exit(int e)
{
	return temp_errno(e) ? EX_TEMPFAIL_ : EX_IOERR_;
}

/* Exit code for a file or directory that cannot be made: 75 or 73. */
static int create_exit(int e)
{
	return temp_errno(e) ? EX_TEMPFAIL_ : EX_CANTCREAT_;
}

/*
 * The exit status the MTA sees (issue 19). Postfix bounces on anything but
 * 0 and 75, so only a fault of the message itself stays permanent: 64 (a
 * bad address), 65 (empty, too big, envelope lines that contradict -f/-r)
 * and 66 (FILE unreadable, not used by pipe(8)). What 73, 74, 77 and 78
 * say (in/tmp cannot be written, an I/O error, a refused JetStream login,
 * a configuration error) is the signer's problem: 75, the MTA keeps the
 * message and retries, and the log line says why.
 */
static int exit_code(int rc)
{
	switch (rc) {
	case EX_CANTCREAT_:
	case EX_IOERR_:
	case 77:
	case EX_CONFIG_:
		return EX_TEMPFAIL_;
	}
	return rc;
}

int dkp_enqueue_addr_ok(const char *a, int null_ok, const char **why)
{
	size_t n = strlen(a), i;
	int at = 0;

	if (n == 0 || strcmp(a, "<>") == 0) {
		*why = "the null address <> is for the sender only";
		return null_ok;
	}
	if (a[0] == '<' && n >= 2 && a[n - 1] == '>') {
		a++;
		n -= 2;
	}
	if (n > DKP_ENQUEUE_MAX_ADDR) {
		*why = "longer than 320 bytes";
		return 0;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];

		if (c < 32 || c == 127) {
			*why = c == '\r' || c == '\n'
				       ? "contains a line break"
				       : "contains a control character";
			return 0;
		}
		if (c == ' ') {
			*why = "contains a space";
			return 0;
		}
		if (c == '<' || c == '>') {
			*why = "contains '<' or '>'";
			return 0;
		}
		if (c == '@' && i > 0 && i + 1 < n)
			at = 1;
	}
	if (!at) {
		*why = "is not local-part@domain";
		return 0;
	}
	return 1;
}

/* Copy the host name, keeping letters, digits, '-' and '.'; others
 * become '_' (Maildir escapes '/' and ':'; IDs allow neither '/' nor '\'). */
static void host_part(char *out, size_t outsz)
{
	char h[256];
	size_t i, n = 0;

	if (gethostname(h, sizeof(h)) < 0)
		h[0] = '\0';
	h[sizeof(h) - 1] = '\0';
	for (i = 0; h[i] && n + 1 < outsz && n < HOST_MAX; i++) {
		unsigned char c = (unsigned char)h[i];

		out[n++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				   (c >= '0' && c <= '9') || c == '-' || c == '.'
			   ? (char)c
			   : '_';
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, outsz, "localhost");
}

void dkp_enqueue_make_id(char *out, size_t outsz)
{
	static unsigned long counter;
	unsigned long long rnd = 0;
	struct timespec ts;
	char host[HOST_MAX + 1];

	clock_gettime(CLOCK_REALTIME, &ts);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		/* no entropy yet (early boot): time, PID and counter already
		 * make the name unique on this host; this only spreads it */
		rnd = ((unsigned long long)ts.tv_nsec << 20) ^
		      ((unsigned long long)getpid() << 40) ^ (counter * 0x9e3779b97f4a7c15ull);
	host_part(host, sizeof(host));
	counter++;
	snprintf(out, outsz, "%lld.M%06ldP%ldQ%luR%016llx.%s",
		 (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(),
		 counter, rnd, host);
	if (!dkp_qdir_id_ok(out))	/* a host named "reason", say */
		snprintf(out, outsz, "%lld.M%06ldP%ldQ%luR%016llx.localhost",
			 (long long)ts.tv_sec, ts.tv_nsec / 1000,
			 (long)getpid(), counter, rnd);
}

/* a for a one-line diagnostic: control bytes as \xNN, cut at 80 bytes
 * (under pipe(8) it ends up in a bounce and in the mail log) */
static const char *printable(const char *a, char *out, size_t outsz)
{
	size_t n = 0;

	for (; *a && n + 5 < outsz && n < 80; a++) {
		unsigned char ch = (unsigned char)*a;

		if (ch < 32 || ch == 127 || ch == '\\')
			n += (size_t)snprintf(out + n, outsz - n, "\\x%02x", ch);
		else
			out[n++] = (char)ch;
	}
	out[n] = '\0';
	if (*a && n + 4 < outsz)
		memcpy(out + n, "...", 4);
	return out;
}

/* The addresses of c, or 64 with the reason. */
static int check_args(const struct dkp_cli *c)
{
	const char *why = NULL;
	char shown[128];
	size_t i;

	if (c->sender && !dkp_enqueue_addr_ok(c->sender, 1, &why)) {
		dkp_error("-f '%s': %s",
			  printable(c->sender, shown, sizeof(shown)), why);
		return EX_USAGE_;
	}
	for (i = 0; i < c->nrcpts; i++)
		if (!dkp_enqueue_addr_ok(c->rcpts[i], 0, &why)) {
			dkp_error("-r '%s': %s",
				  printable(c->rcpts[i], shown, sizeof(shown)),
				  why);
			return EX_USAGE_;
		}
	if (c->enq_id && !dkp_dedup_id_ok(c->enq_id, &why)) {
		dkp_error("--id '%s': %s", printable(c->enq_id, shown, sizeof(shown)),
			  why);
		return EX_TEMPFAIL_;	/* the caller's setup, not the message */
	}
	return 0;
}

/* Append address a to b as written in an envelope line: without angle
 * brackets, the null address as "<>". */
static void add_addr(struct dkp_buf *b, const char *a)
{
	size_t n = strlen(a);

	if (n == 0 || strcmp(a, "<>") == 0)
		dkp_buf_adds(b, "<>");
	else if (a[0] == '<' && a[n - 1] == '>')
		dkp_buf_add(b, a + 1, n - 2);
	else
		dkp_buf_add(b, a, n);
}

/* The x-sender / x-receiver lines (PowerMTA pickup format), or nothing. */
static void envelope_lines(const struct dkp_cli *c, struct dkp_buf *b)
{
	size_t i;

	if (c->sender == NULL)
		return;
	dkp_buf_adds(b, "x-sender: ");
	add_addr(b, c->sender);
	dkp_buf_adds(b, "\r\n");
	for (i = 0; i < c->nrcpts; i++) {
		dkp_buf_adds(b, "x-receiver: ");
		add_addr(b, c->rcpts[i]);
		dkp_buf_adds(b, "\r\n");
	}
}

struct enq {
	const struct dkp_cli *c;
	const char *in_dir;
	size_t limit;		/* max_message_size: the whole file */
	int in;			/* the message */
	const char *in_name;
	int tmpdir, newdir;
	int fd;			/* in/tmp/ID while being written */
	char id[256];
	char tmpname[256];	/* its name in in/tmp: ID, then dd.KEY */
	struct dkp_dedup *dd;	/* --id on the queue directory */
	char key[DKP_DEDUP_KEY_LEN + 1];
	char safe_id[256];	/* --id as shown (dkp_dedup_safe_id) */
	int marked;		/* the key is remembered for this message */
	size_t total;		/* message bytes copied */
	char head[16];		/* the first message bytes */
	size_t headlen;
};

static int open_input(struct enq *e)
{
	const char *path = e->c->in;

	e->in = STDIN_FILENO;
	e->in_name = "standard input";
	if (path == NULL || strcmp(path, "-") == 0)
		return 0;
	e->in_name = path;
	e->in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (e->in < 0) {
		dkp_error("cannot open %s: %s", path, strerror(errno));
		return temp_errno(errno) ? EX_TEMPFAIL_ : EX_NOINPUT_;
	}
	return 0;
}

static int open_dirs(struct enq *e)
{
	static const char *const sub[2] = { "tmp", "new" };
	char path[4096];
	int i, fd;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", e->in_dir, sub[i]);
		/* in/tmp is only written into: search and write access is
		 * all it needs (O_PATH), unless --id flushes it; in/new is
		 * flushed, so it is read */
		fd = open(path, (i == 0 && e->c->enq_id == NULL ? O_PATH : O_RDONLY) |
					O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			int err = errno;

			dkp_error("cannot open the queue directory %s: %s%s", path,
				  strerror(err),
				  err == ENOENT
					  ? " (not made yet? 'dkimpress run' makes it)"
					  : "");
			return create_exit(err);
		}
		if (i == 0)
			e->tmpdir = fd;
		else
			e->newdir = fd;
	}
	return 0;
}

/* Create in/tmp/ID under a new ID; the handler may remove it from now. */
static int create_tmp(struct enq *e)
{
	int tries, err = 0;

	for (tries = 0; tries < ID_TRIES; tries++) {
		dkp_enqueue_make_id(e->id, sizeof(e->id));
		block_signals(1);
		e->fd = openat(e->tmpdir, e->id,
			       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			       0600);
		err = errno;
		if (e->fd >= 0) {
			memcpy(e->tmpname, e->id, sizeof(e->tmpname));
			memcpy(tmp_name, e->id, sizeof(tmp_name));
			tmp_dirfd = e->tmpdir;
			tmp_live = 1;
		}
		block_signals(0);
		if (e->fd >= 0)
			return 0;
		if (err != EEXIST)
			break;
	}
	dkp_error("cannot create %s/tmp/%s: %s", e->in_dir, e->id, strerror(err));
	return create_exit(err);
}

/* Remove in/tmp/ID (any failure before publish), and with --id the
 * remembered key first: a key must never outlive an unpublished message's
 * pending file (docs/queue.md). */
static void drop_tmp(struct enq *e)
{
	int saved = errno;

	block_signals(1);
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
	if (e->marked) {
		if (dkp_dedup_forget(e->dd, e->key, (int64_t)time(NULL)) < 0)
			dkp_warn("--id %s: %s", e->safe_id, dkp_dedup_why(e->dd));
		e->marked = 0;
		tmp_live = 0;	/* forget removed the pending file */
	}
	if (tmp_live)
		unlinkat(e->tmpdir, e->tmpname, 0);
	tmp_live = 0;
	block_signals(0);
	errno = saved;
}

static int too_big(const struct enq *e)
{
	dkp_error("message too big: more than max_message_size (%zu bytes, envelope lines included)",
		  e->limit);
	return EX_DATAERR_;
}

/* Envelope lines, then the message as it comes, never past the limit. */
static int copy_message(struct enq *e)
{
	struct dkp_buf env;
	char buf[65536];
	size_t room;
	int rc = 0;

	dkp_buf_init(&env);
	envelope_lines(e->c, &env);
	if (env.len >= e->limit) {
		dkp_buf_free(&env);
		return too_big(e);
	}
	room = e->limit - env.len;
	if (dkp_write_all(e->fd, env.p, env.len) < 0) {
		rc = io_exit(errno);
		dkp_error("cannot write %s/tmp/%s: %s", e->in_dir, e->id,
			  strerror(errno));
	}
	dkp_buf_free(&env);
	while (rc == 0) {
		size_t want = room < sizeof(buf) ? room + 1 : sizeof(buf);
		ssize_t n = read(e->in, buf, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			dkp_error("cannot read %s: %s", e->in_name, strerror(err));
			return err == EISDIR ? EX_NOINPUT_ : io_exit(err);
		}
		if (n == 0)
			break;
		if ((size_t)n > room)
			return too_big(e);	/* stop reading here */
		if (e->headlen < sizeof(e->head)) {
			size_t k = sizeof(e->head) - e->headlen;

			k = k < (size_t)n ? k : (size_t)n;
			memcpy(e->head + e->headlen, buf, k);
			e->headlen += k;
		}
		if (dkp_write_all(e->fd, buf, (size_t)n) < 0) {
			rc = io_exit(errno);
			dkp_error("cannot write %s/tmp/%s: %s", e->in_dir, e->id,
				  strerror(errno));
			break;
		}
		room -= (size_t)n;
		e->total += (size_t)n;
	}
	if (rc == 0 && e->total == 0) {
		dkp_error("empty message on %s; nothing queued", e->in_name);
		return EX_DATAERR_;
	}
	/* With -f/-r, a message that itself starts with envelope lines
	 * would have them read as more of ours (extra recipients). */
	if (rc == 0 && e->c->sender &&
	    ((e->headlen >= 9 && strncasecmp(e->head, "x-sender:", 9) == 0) ||
	     (e->headlen >= 11 && strncasecmp(e->head, "x-receiver:", 11) == 0))) {
		dkp_error("%s already starts with x-sender/x-receiver lines; with -f and -r they would become part of the envelope",
			  e->in_name);
		return EX_DATAERR_;
	}
	return rc;
}

/* Flush and close in/tmp/ID. */
static int commit_tmp(struct enq *e)
{
	const char *step = "flush";
	int err;

	if (fsync(e->fd) == 0) {
		step = "close";
		if (close(e->fd) == 0) {
			e->fd = -1;
			return 0;
		}
	}
	err = errno;
	if (e->fd >= 0 && strcmp(step, "flush") == 0)
		close(e->fd);
	e->fd = -1;	/* closed or not, it is not used again */
	dkp_error("cannot %s %s/tmp/%s: %s", step, e->in_dir, e->id,
		  strerror(err));
	return io_exit(err);
}

/* Rename in/tmp/NAME (ID, or dd.KEY with --id) to in/new/ID (a new ID if
 * that is taken), never over anything, and flush in/new. Signals stay
 * blocked from here on. */
static int publish(struct enq *e)
{
	char newid[256];
	int tries, rc, err = 0;

	memcpy(newid, e->id, sizeof(newid));
	block_signals(1);
	for (tries = 0; tries < ID_TRIES; tries++) {
		rc = renameat2(e->tmpdir, e->tmpname, e->newdir, newid,
			       RENAME_NOREPLACE);
		if (rc < 0 && errno == EINVAL) {
			/* no RENAME_NOREPLACE here: link never replaces */
			rc = linkat(e->tmpdir, e->tmpname, e->newdir, newid, 0);
			if (rc == 0)
				unlinkat(e->tmpdir, e->tmpname, 0);
		}
		if (rc == 0)
			break;
		err = errno;
		if (err != EEXIST)
			break;
		dkp_warn("%s/new/%s exists; queueing under a new ID", e->in_dir,
			 newid);
		dkp_enqueue_make_id(newid, sizeof(newid));
	}
	if (rc < 0) {
		dkp_error("cannot rename %s/tmp/%s into %s/new: %s", e->in_dir,
			  e->tmpname, e->in_dir, strerror(err));
		errno = err;
		return err == EACCES || err == EPERM ? EX_CANTCREAT_
						      : io_exit(err);
	}
	tmp_live = 0;
	e->marked = 0;	/* published: the key stays */
	if (fsync(e->newdir) < 0 && errno != EINVAL) {
		err = errno;
		/* Not known to be durable: take it back if nobody has
		 * claimed it yet, so that the MTA's retry is the only copy. */
		if (renameat2(e->newdir, newid, e->tmpdir, e->tmpname,
			      RENAME_NOREPLACE) == 0) {
			e->marked = e->dd != NULL;
			tmp_live = 1;
			drop_tmp(e);	/* the key first, then the file */
			block_signals(1);
			dkp_error("cannot flush %s/new: %s; message not queued",
				  e->in_dir, strerror(err));
			return io_exit(err);
		}
		if (errno == ENOENT) {
			dkp_warn("cannot flush %s/new: %s; %s already claimed by the engine",
				 e->in_dir, strerror(err), newid);
		} else {
			dkp_error("cannot flush %s/new: %s; %s may be signed twice if retried%s",
				  e->in_dir, strerror(err), newid,
				  e->dd ? " after dedup_window" : "");
			return io_exit(err);
		}
	}
	memcpy(e->id, newid, sizeof(e->id));
	return 0;
}

/* --id, under the key's lock: 1 when the ID was published within the
 * window (nothing more to do), 0 to go on with in/tmp/dd.KEY remembered,
 * or an exit code. */
static int dedup_steps(struct enq *e)
{
	int64_t now = (int64_t)time(NULL);
	char pend[DKP_DEDUP_PENDING_MAX];
	int rc = dkp_dedup_check(e->dd, e->key, now);

	if (rc == DKP_DEDUP_SEEN) {
		dkp_info("--id %s: handed over already within dedup_window; not queued again",
			 e->safe_id);
		return 1;
	}
	if (rc == DKP_DEDUP_NEW) {
		/* from the rename on, a signal would find the wrong name:
		 * blocked until exit, as after publish */
		block_signals(1);
		rc = dkp_dedup_stage(e->dd, e->key, e->tmpname);
		if (rc == 0) {
			dkp_dedup_pending(e->key, pend, sizeof(pend));
			memcpy(e->tmpname, pend, sizeof(pend));
			memcpy(tmp_name, pend, sizeof(pend));
			e->marked = 1;	/* forget also removes dd.KEY */
			rc = dkp_dedup_mark(e->dd, e->key, now);
		}
	}
	if (rc < 0) {
		dkp_error("--id %s: %s", e->safe_id, dkp_dedup_why(e->dd));
		return io_exit(-rc);
	}
	return 0;
}

/* --id on the queue directory: validate, key, open in/dedup. */
static int dedup_open(struct enq *e, const struct dkp_config *conf)
{
	char why[512];
	int rc;

	if (e->c->enq_id == NULL || conf->dedup_window == 0)
		return 0;
	dkp_dedup_safe_id(e->c->enq_id, e->safe_id, sizeof(e->safe_id));
	dkp_dedup_key(e->c->enq_id, e->key);
	rc = dkp_dedup_open(&e->dd, e->in_dir, e->tmpdir, conf->dedup_window,
			    conf->dedup_max, why, sizeof(why));
	if (rc < 0) {
		dkp_error("%s", why);
		return create_exit(-rc);
	}
	return 0;
}

/* Write, flush and publish the message; with --id under its lock. */
static int enqueue_qdir(struct enq *e)
{
	int rc, seen = 0;

	if ((rc = create_tmp(e)) != 0)
		return rc;
	if ((rc = copy_message(e)) != 0 || (rc = commit_tmp(e)) != 0) {
		drop_tmp(e);
		return rc;
	}
	if (e->dd && dkp_dedup_lock(e->dd, e->key, DEDUP_WAIT_MS) < 0) {
		dkp_error("--id %s: %s", e->safe_id, dkp_dedup_why(e->dd));
		drop_tmp(e);
		return EX_TEMPFAIL_;
	}
	if (e->dd && (rc = dedup_steps(e)) != 0) {
		seen = rc == 1;
		drop_tmp(e);	/* a duplicate's copy, or a failure's */
	}
	if (rc == 0 && (rc = publish(e)) != 0)
		drop_tmp(e);
	if (e->dd)
		dkp_dedup_unlock(e->dd);
	if (seen)
		return 0;
	if (rc != 0)
		return rc;
	/* Queued. A stdout that cannot take the ID changes nothing now:
	 * failing would make the MTA send the message a second time. */
	if (printf("%s\n", e->id) < 0 || fflush(stdout) != 0)
		dkp_warn("queued %s, but cannot print its ID: %s", e->id,
			 strerror(errno));
	if (e->dd)
		dkp_dedup_sweep(e->dd, (int64_t)time(NULL), DEDUP_SWEEP);
	return 0;
}

/* An address as an X-Sender/X-Receiver header value: without angle
 * brackets, the null sender as "<>" (the envelope lines' form). */
static char *header_addr(const char *a)
{
	size_t n = strlen(a);

	if (n == 0 || strcmp(a, "<>") == 0)
		return dkp_strdup("<>");
	if (a[0] == '<' && a[n - 1] == '>')
		return dkp_strndup(a + 1, n - 2);
	return dkp_strdup(a);
}

/* Is every one of a[0..na) (as given to -r) in b[0..nb) (header form)? */
static int rcpts_in(const char *const *a, size_t na, char *const *b, size_t nb)
{
	size_t i, k;
	int found;

	for (i = 0; i < na; i++) {
		char *v = header_addr(a[i]);

		for (k = 0, found = 0; k < nb && !found; k++)
			found = strcmp(v, b[k]) == 0;
		dkp_free(v);
		if (!found)
			return 0;
	}
	return 1;
}

/* transport = jetstream: x-sender/x-receiver lines at the top of the
 * file (pickup format) become the X-Sender/X-Receiver headers (*sender,
 * *rcpts; *env_len their bytes, left out of the payload), as the queue
 * directory's engine would read them. With -f/-r too the two must name
 * the same envelope (then -f/-r are used), or 65. Malformed lines: 65. */
static int file_envelope(struct enq *e, const struct dkp_buf *msg, size_t *env_len,
			 char **sender, char ***rcpts, size_t *nrcpts)
{
	const struct dkp_cli *c = e->c;
	struct dkp_envelope env;
	struct dkp_err err;
	char *cs;
	int same;

	dkp_err_clear(&err);
	*env_len = 0;
	if (dkp_envelope_split(msg->p, msg->len, &env, &err) != DKP_OK) {
		dkp_error("%s: envelope lines: %s", e->in_name, err.msg);
		return EX_DATAERR_;
	}
	if (env.len == 0)
		return 0;
	if (dkp_js_envelope_parse(msg->p, env.len, sender, rcpts, nrcpts) < 0) {
		dkp_error("%s: cannot read its envelope lines", e->in_name);
		return EX_DATAERR_;
	}
	*env_len = env.len;
	if (c->sender == NULL)
		return 0;
	cs = header_addr(c->sender);
	same = strcmp(cs, *sender) == 0 &&
	       rcpts_in((const char *const *)c->rcpts, c->nrcpts, *rcpts, *nrcpts);
	dkp_free(cs);
	/* and every line's recipient among -r's */
	if (same) {
		size_t i, k;

		for (i = 0; i < *nrcpts && same; i++) {
			for (k = 0, same = 0; k < c->nrcpts && !same; k++) {
				char *v = header_addr(c->rcpts[k]);

				same = strcmp(v, (*rcpts)[i]) == 0;
				dkp_free(v);
			}
		}
	}
	dkp_js_envelope_free(*sender, *rcpts, *nrcpts);
	*sender = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	if (!same) {
		dkp_error("%s starts with x-sender/x-receiver lines that name another envelope than -f and -r",
			  e->in_name);
		return EX_DATAERR_;
	}
	return 0;	/* the same envelope: -f and -r's headers, lines dropped */
}

/* transport = jetstream: read the message (envelope headers count
 * against max_message_size as the lines would), publish it to in_subject
 * under a new ID and wait for the stream's acknowledgement. 75 when the
 * cluster cannot be reached or does not answer in time. */
static int enqueue_jetstream(struct enq *e, const struct dkp_config *conf)
{
	const struct dkp_cli *c = e->c;
	struct dkp_buf msg, env;
	char **rcpts = NULL, *sender = NULL, why[512], buf[65536];
	size_t i, nrcpts = 0, skip = 0, env_len = 0;
	int rc = 0;

	dkp_buf_init(&msg);
	dkp_buf_init(&env);
	envelope_lines(c, &env);	/* only for the size */
	while (rc == 0) {
		ssize_t n = read(e->in, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			dkp_error("cannot read %s: %s", e->in_name, strerror(errno));
			rc = errno == EISDIR ? EX_NOINPUT_ : io_exit(errno);
			break;
		}
		if (n == 0)
			break;
		if (env.len + msg.len + (size_t)n > e->limit)
			rc = too_big(e);
		else
			dkp_buf_add(&msg, buf, (size_t)n);
	}
	if (rc == 0 && msg.len == 0) {
		dkp_error("empty message on %s; nothing queued", e->in_name);
		rc = EX_DATAERR_;
	}
	if (rc == 0)
		rc = file_envelope(e, &msg, &env_len, &sender, &rcpts, &nrcpts);
	if (rc == 0 && env_len == msg.len) {
		dkp_error("%s holds envelope lines and no message; nothing queued",
			  e->in_name);
		rc = EX_DATAERR_;
	}
	if (rc == 0) {
		if (c->sender && sender == NULL) {
			sender = header_addr(c->sender);
			rcpts = dkp_calloc(c->nrcpts + 1, sizeof(*rcpts));
			for (i = 0; i < c->nrcpts; i++)
				rcpts[i] = header_addr(c->rcpts[i]);
			nrcpts = c->nrcpts;
		}
		skip = env_len;	/* the lines are headers now */
		if (c->enq_id)	/* the stream's duplicate window keeps one */
			dkp_dedup_safe_id(c->enq_id, e->id, sizeof(e->id));
		else
			dkp_enqueue_make_id(e->id, sizeof(e->id));
		rc = dkp_js_publish(conf, sender, (const char *const *)rcpts,
				    sender ? nrcpts : 0, msg.p + skip, msg.len - skip,
				    e->id, 10000, why, sizeof(why));
		if (rc < 0) {
			dkp_error("jetstream: %s", why);
			rc = dkp_js_exit_code(rc);
		} else if (rc == 1) {
			dkp_info("--id %s: the stream has it already (within its duplicate window); not queued again",
				 e->id);
			rc = 0;
		}
	}
	dkp_js_envelope_free(sender, rcpts, nrcpts);
	dkp_buf_free(&msg);
	dkp_buf_free(&env);
	if (rc == 0 && (printf("%s\n", e->id) < 0 || fflush(stdout) != 0))
		dkp_warn("queued %s, but cannot print its ID: %s", e->id,
			 strerror(errno));
	return rc;
}

int dkp_enqueue_run(const struct dkp_cli *c)
{
	struct dkp_config *conf = NULL;
	struct dkp_err err;
	struct enq e;
	int rc;

	memset(&e, 0, sizeof(e));
	e.c = c;
	e.in = e.tmpdir = e.newdir = e.fd = -1;
	dkp_err_clear(&err);
	if ((rc = check_args(c)) != 0)
		return exit_code(rc);
	if (dkp_config_load(&conf, c->conf, NULL, 0, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		return exit_code(EX_CONFIG_);
	}
	e.in_dir = conf->in_dir;
	e.limit = conf->limits.max_message_bytes;
	install_signals();
	if (conf->transport == DKP_TRANSPORT_JETSTREAM) {
		if ((rc = open_input(&e)) == 0)
			rc = enqueue_jetstream(&e, conf);
		goto done;
	}
	if ((rc = open_input(&e)) == 0 && (rc = open_dirs(&e)) == 0 &&
	    (rc = dedup_open(&e, conf)) == 0)
		rc = enqueue_qdir(&e);
done:
	if (e.in > STDIN_FILENO)
		close(e.in);
	if (e.tmpdir >= 0)
		close(e.tmpdir);
	if (e.newdir >= 0)
		close(e.newdir);
	dkp_dedup_close(e.dd);
	dkp_config_free(conf);
	return exit_code(rc);
}
