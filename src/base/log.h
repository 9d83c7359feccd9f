/*
 * log.h — levelled diagnostics to stderr: "dkimpress: warning: ...".
 * info and warn report; error reports a failure the caller handles;
 * fatal reports an environment failure and exits 71 (EX_OSERR); panic
 * reports a broken invariant (a bug) and aborts. Thread-safe: each line
 * is written with one write(2). Never pass key material.
 */
#ifndef DKP_LOG_H
#define DKP_LOG_H

enum dkp_log_level { DKP_LOG_DEBUG, DKP_LOG_INFO, DKP_LOG_WARN, DKP_LOG_ERROR };

/* Messages below this level are dropped (default DKP_LOG_INFO). */
void dkp_log_set_level(enum dkp_log_level lvl);
/* Program name prefix (default "dkimpress"). */
void dkp_log_set_progname(const char *name);

void dkp_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dkp_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void dkp_panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
