/*
 * log.h — levelled diagnostics: "dkimpress: warning: ...".
 * info and warn report; error reports a failure the caller handles;
 * fatal reports an environment failure and exits 71 (EX_OSERR); panic
 * reports a broken invariant (a bug) and aborts. Never pass key material.
 *
 * Where lines go (one place only, never two, so nothing is logged twice):
 *  - stderr (the default), one write(2) per line. When stderr is the
 *    systemd journal (JOURNAL_STREAM names stderr's device and inode, as
 *    systemd sets it for a service), each line starts with its syslog
 *    priority, "<4>" for a warning (sd-daemon(3)), which journald strips
 *    and records as the priority; the "dkimpress: " prefix is left out
 *    there too (the journal names the program).
 *  - syslog(3), after dkp_log_syslog(1): facility LOG_MAIL, ident
 *    "dkimpress", with the process ID; debug, info, warning, error map to
 *    LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, and fatal and panic to
 *    LOG_CRIT. stderr then gets nothing from here.
 *
 * Thread-safe: the settings are atomics, each line is one write(2) or one
 * syslog(3) call, so concurrent threads never interleave within a line.
 */
#ifndef DKP_LOG_H
#define DKP_LOG_H

enum dkp_log_level { DKP_LOG_DEBUG, DKP_LOG_INFO, DKP_LOG_WARN, DKP_LOG_ERROR };

/* Messages below this level are dropped (default DKP_LOG_INFO). */
void dkp_log_set_level(enum dkp_log_level lvl);
/* Program name prefix (default "dkimpress"). */
void dkp_log_set_progname(const char *name);
/* on = 1: from now on to syslog (LOG_MAIL, ident "dkimpress"); 0: back to
 * stderr. */
void dkp_log_syslog(int on);

void dkp_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void dkp_panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
