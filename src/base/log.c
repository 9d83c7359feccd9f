/* log.c — one write(2) or one syslog(3) call per diagnostic line; see
 * log.h. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

static atomic_int min_level = DKP_LOG_INFO;
static const char *progname = "dkimpress";
static atomic_int to_syslog;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static int to_journal;	/* stderr is the journal: set once, then read */

void dkp_log_set_level(enum dkp_log_level lvl)
{
	atomic_store(&min_level, (int)lvl);
}

void dkp_log_set_progname(const char *name)
{
	progname = name;
}

void dkp_log_syslog(int on)
{
	if (on && !atomic_load(&to_syslog))
		openlog("dkimpress", LOG_PID | LOG_NDELAY, LOG_MAIL);
	atomic_store(&to_syslog, on != 0);
}

/* Is stderr the journal? systemd sets JOURNAL_STREAM=DEV:INODE for a
 * service whose stderr it connected to journald (systemd.exec(5)); a
 * child whose stderr was redirected elsewhere keeps the variable, so the
 * device and inode must match stderr's. */
static void journal_check(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		to_journal = 1;
}

/* Format one line and write it; format(printf, 4, 0) has the compiler
 * check every caller's format string against its arguments. */
__attribute__((format(printf, 4, 0)))
static void vlog(enum dkp_log_level lvl, int prio, const char *tag,
		 const char *fmt, va_list ap)
{
	char line[1024];
	int n, m;

	if ((int)lvl < atomic_load(&min_level))
		return;
	if (atomic_load(&to_syslog)) {
		n = snprintf(line, sizeof(line), "%s", tag);
		if (n < 0 || (size_t)n >= sizeof(line))
			n = 0;
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		syslog(prio, "%s", line);
		return;
	}
	pthread_once(&journal_once, journal_check);
	if (to_journal)
		n = snprintf(line, sizeof(line), "<%d>%s", prio, tag);
	else
		n = snprintf(line, sizeof(line), "%s: %s", progname, tag);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write so concurrent threads do not interleave within a line. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

#define DEFINE_LOG(fn, lvl, prio, tag)                \
	void fn(const char *fmt, ...)                 \
	{                                             \
		va_list ap;                           \
		va_start(ap, fmt);                    \
		vlog(lvl, prio, tag, fmt, ap);        \
		va_end(ap);                           \
	}

DEFINE_LOG(dkp_debug, DKP_LOG_DEBUG, LOG_DEBUG, "debug: ")
DEFINE_LOG(dkp_info, DKP_LOG_INFO, LOG_INFO, "")
DEFINE_LOG(dkp_warn, DKP_LOG_WARN, LOG_WARNING, "warning: ")
DEFINE_LOG(dkp_error, DKP_LOG_ERROR, LOG_ERR, "error: ")

void dkp_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(DKP_LOG_ERROR, LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	exit(71);
}

void dkp_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(DKP_LOG_ERROR, LOG_CRIT, "panic: ", fmt, ap);
	va_end(ap);
	abort();
}
