/* err.c — status names, sysexits mapping, error context; see err.h. */
#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

const char *dkp_status_str(enum dkp_status st)
{
	switch (st) {
	case DKP_OK: return "ok";
	case DKP_E_SYNTAX: return "syntax";
	case DKP_E_FROM: return "from";
	case DKP_E_LIMIT: return "limit";
	case DKP_E_NOKEY: return "no-key";
	case DKP_E_KEY: return "key";
	case DKP_E_CRYPTO: return "crypto";
	case DKP_E_IO: return "io";
	case DKP_E_USAGE: return "usage";
	case DKP_E_DNS: return "dns";
	case DKP_E_BADSIG: return "bad-signature";
	}
	return "unknown";
}

int dkp_err_exit_code(const struct dkp_err *err)
{
	if (err->temp)
		return 75;	/* EX_TEMPFAIL */
	switch (err->code) {
	case DKP_OK: return 0;
	case DKP_E_SYNTAX:
	case DKP_E_FROM:
	case DKP_E_LIMIT: return 65;	/* EX_DATAERR */
	case DKP_E_USAGE: return 64;	/* EX_USAGE */
	case DKP_E_NOKEY:
	case DKP_E_KEY: return 78;	/* EX_CONFIG */
	case DKP_E_IO:
		return err->sys_errno == ENOENT || err->sys_errno == EACCES
			       ? 66	/* EX_NOINPUT */
			       : 74;	/* EX_IOERR */
	case DKP_E_DNS: return 75;
	case DKP_E_CRYPTO:
	case DKP_E_BADSIG: return 70;	/* EX_SOFTWARE */
	}
	return 70;
}

void dkp_err_clear(struct dkp_err *err)
{
	memset(err, 0, sizeof(*err));
}

/* The va_list twin of dkp_err_set: the attribute lets the compiler check
 * the callers' format strings, and accept the non-literal one here. */
__attribute__((format(printf, 5, 0)))
static void vset(struct dkp_err *err, enum dkp_status code, int temp,
		 const char *step, const char *fmt, va_list ap)
{
	err->code = code;
	err->temp = temp;
	err->sys_errno = 0;
	snprintf(err->step, sizeof(err->step), "%s", step);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int dkp_err_set(struct dkp_err *err, enum dkp_status code, int temp,
		const char *step, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(err, code, temp, step, fmt, ap);
	va_end(ap);
	return code;
}

static void append(struct dkp_err *err, const char *sep, const char *what)
{
	size_t n = strlen(err->msg);

	if (n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - n, "%s%s", sep, what);
}

int dkp_err_sys(struct dkp_err *err, enum dkp_status code, int temp,
		const char *step, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(err, code, temp, step, fmt, ap);
	va_end(ap);
	err->sys_errno = errnum;
	append(err, ": ", strerror(errnum));
	return code;
}

int dkp_err_ssl(struct dkp_err *err, enum dkp_status code, const char *step,
		const char *fmt, ...)
{
	va_list ap;
	unsigned long e, first = 0;
	char why[160];

	va_start(ap, fmt);
	vset(err, code, 0, step, fmt, ap);
	va_end(ap);
	/* Drain the whole queue so the next operation starts clean; report
	 * the first (outermost cause) reason. Reason strings never contain
	 * key material. */
	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	if (first != 0) {
		const char *r = ERR_reason_error_string(first);

		if (r == NULL) {
			snprintf(why, sizeof(why), "OpenSSL error %lx", first);
			r = why;
		}
		append(err, ": ", r);
	}
	return code;
}
