/*
 * unit.h — shared bits of the cmocka unit tests.
 *
 * Every test program ends with one summary line "NAME: N passed, N failed"
 * (tests/run adds them up) and exits 0 only when nothing failed. Tests run
 * from the repository root; fixtures live under tests/data/.
 */
#ifndef DKP_UNIT_H
#define DKP_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dkimpress/dkimpress.h"

#define DATA_DIR "tests/data"

/* Run a cmocka group (with group setup/teardown, may be NULL) and print
 * the summary line tests/run reads. */
#define UNIT_RUN_WITH(name, tests, setup, teardown)                         \
	do {                                                                \
		size_t n_ = sizeof(tests) / sizeof((tests)[0]);             \
		int f_ = cmocka_run_group_tests_name(name, tests, setup, teardown); \
		printf("%s: %zu passed, %d failed\n", name,                 \
		       f_ >= 0 && (size_t)f_ <= n_ ? n_ - (size_t)f_ : 0, f_); \
		return f_ == 0 ? 0 : 1;                                     \
	} while (0)

#define UNIT_RUN(name, tests) UNIT_RUN_WITH(name, tests, NULL, NULL)

/* Compare two byte strings; on mismatch print both escaped, then fail. */
static inline void unit_print_esc(const char *tag, const char *p, size_t n)
{
	size_t i;

	fprintf(stderr, "  %s (%zu bytes): \"", tag, n);
	for (i = 0; i < n && i < 400; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n", stderr);
		else if (c == '\t')
			fputs("\\t", stderr);
		else if (c < 32 || c > 126)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputs(n > 400 ? "\"...\n" : "\"\n", stderr);
}

#define assert_bytes_equal(got, gotlen, want, wantlen)                      \
	do {                                                                \
		const char *g_ = (const char *)(got);                       \
		const char *w_ = (const char *)(want);                      \
		size_t gl_ = (gotlen), wl_ = (wantlen);                     \
		if (gl_ != wl_ || memcmp(g_, w_, gl_) != 0) {               \
			unit_print_esc("got ", g_, gl_);                    \
			unit_print_esc("want", w_, wl_);                    \
			fail_msg("byte strings differ");                    \
		}                                                           \
	} while (0)

/* Read a whole file into a malloc'd buffer; fails the test if missing. */
static inline char *unit_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		fail_msg("cannot open fixture %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		fail_msg("cannot read fixture %s", path);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

#endif
