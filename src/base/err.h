/*
 * err.h — filling a struct dkp_err (declared in dkimpress.h). Lower layers
 * fill the error and stay quiet; the caller decides what to log.
 */
#ifndef DKP_ERR_H
#define DKP_ERR_H

#include "dkimpress/dkimpress.h"

/* Set code, class, step and a formatted one-line message; returns code. */
int dkp_err_set(struct dkp_err *err, enum dkp_status code, int temp,
		const char *step, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* As dkp_err_set, plus errno saved and its text appended. */
int dkp_err_sys(struct dkp_err *err, enum dkp_status code, int temp,
		const char *step, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* As dkp_err_set, plus the drained OpenSSL error queue's first reason. */
int dkp_err_ssl(struct dkp_err *err, enum dkp_status code, const char *step,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void dkp_err_clear(struct dkp_err *err);

#endif
