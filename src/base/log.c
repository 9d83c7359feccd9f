/* log.c — one write(2) per diagnostic line; see log.h. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static enum dkp_log_level min_level = DKP_LOG_INFO;
static const char *progname = "dkimpress";

void dkp_log_set_level(enum dkp_log_level lvl)
{
	min_level = lvl;
}

void dkp_log_set_progname(const char *name)
{
	progname = name;
}

/* Format one line and write it; format(printf, 3, 0) has the compiler
 * check every caller's format string against its arguments. */
__attribute__((format(printf, 3, 0)))
static void vlog(enum dkp_log_level lvl, const char *tag, const char *fmt,
		 va_list ap)
{
	char line[1024];
	int n, m;

	if (lvl < min_level)
		return;
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

#define DEFINE_LOG(fn, lvl, tag)                      \
	void fn(const char *fmt, ...)                 \
	{                                             \
		va_list ap;                           \
		va_start(ap, fmt);                    \
		vlog(lvl, tag, fmt, ap);              \
		va_end(ap);                           \
	}

DEFINE_LOG(dkp_debug, DKP_LOG_DEBUG, "debug: ")
DEFINE_LOG(dkp_info, DKP_LOG_INFO, "")
DEFINE_LOG(dkp_warn, DKP_LOG_WARN, "warning: ")
DEFINE_LOG(dkp_error, DKP_LOG_ERROR, "error: ")

void dkp_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(DKP_LOG_ERROR, "fatal: ", fmt, ap);
	va_end(ap);
	exit(71);
}

void dkp_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(DKP_LOG_ERROR, "panic: ", fmt, ap);
	va_end(ap);
	abort();
}
