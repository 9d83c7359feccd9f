/*
 * fuzz.h — shared bits of the libFuzzer targets in tests/fuzz/.
 *
 * Each target is one file, tests/fuzz/fuzz_<what>.c, with the libFuzzer
 * entry LLVMFuzzerTestOneInput (and, where a key or a signed message is
 * needed, LLVMFuzzerInitialize), shaped like hiredis's fuzzing/ target:
 * no main, no global state that one input can leave for the next beyond
 * the fixtures made once at start. `make fuzz` builds them against
 * build/fuzz/libdkimpress.a (clang, ASan + UBSan, libc malloc) and
 * tests/fuzz/run.sh runs them.
 *
 * A broken invariant is a crash: FUZZ_CHECK prints what was expected and
 * aborts, so libFuzzer saves the input under build/fuzz/crashes/.
 *
 * The fixed keys are the published RFC 8463 Appendix A keys (an RSA-1024
 * key and an Ed25519 key; tests/data/rfc8463/), never secret. The signed
 * message is RFC 8463 A.3 as transcribed in tests/data/rfc8463/signed.eml.
 */
#ifndef DKP_FUZZ_H
#define DKP_FUZZ_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dkimpress/dkimpress.h"

#define FUZZ_FAIL(...)                                                      \
	do {                                                                \
		fprintf(stderr, "fuzz: check failed at %s:%d: ", __FILE__,  \
			__LINE__);                                          \
		fprintf(stderr, __VA_ARGS__);                               \
		fputc('\n', stderr);                                        \
		abort();                                                    \
	} while (0)

#define FUZZ_CHECK(cond, ...)                                               \
	do {                                                                \
		if (!(cond))                                                \
			FUZZ_FAIL(__VA_ARGS__);                             \
	} while (0)

/* The RFC 8463 A.1 keys (tests/data/rfc8463/ed25519.pem, rsa.pem). */
static const char fuzz_ed25519_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";

static const char fuzz_rsa_pem[] =
	"-----BEGIN RSA PRIVATE KEY-----\n"
	"MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
	"Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
	"KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
	"AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
	"6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
	"zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
	"6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
	"uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
	"WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
	"WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
	"licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
	"o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
	"uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
	"-----END RSA PRIVATE KEY-----\n";

/* Their DNS records (tests/data/rfc8463/dns.txt). */
#define FUZZ_QNAME_ED "brisbane._domainkey.football.example.com"
#define FUZZ_QNAME_RSA "test._domainkey.football.example.com"
static const char fuzz_rec_ed[] =
	"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
static const char fuzz_rec_rsa[] =
	"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6"
	"NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e"
	"/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT"
	"+l/K4w3QIDAQAB";

/* RFC 8463 A.2: the message, headers then body (A.3 adds the two
 * signatures on top). */
#define FUZZ_RFC8463_HEADERS                                                \
	"From: Joe SixPack <joe@football.example.com>\r\n"                  \
	"To: Suzie Q <suzie@shopping.example.net>\r\n"                      \
	"Subject: Is dinner ready?\r\n"                                     \
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"                   \
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
#define FUZZ_RFC8463_BODY                                                   \
	"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"

static const char fuzz_rfc8463_signed[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	" subject : date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
	" date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
	FUZZ_RFC8463_HEADERS "\r\n" FUZZ_RFC8463_BODY;

/* The signatures' time; x= never set on them. */
#define FUZZ_RFC8463_T 1528637909

/* Load a PEM key or abort (fixtures are known good). */
static inline struct dkp_key *fuzz_key(const char *pem, const char *label)
{
	struct dkp_key *k = NULL;
	struct dkp_err err;

	if (dkp_key_from_pem(&k, pem, strlen(pem), label, &err) != DKP_OK)
		FUZZ_FAIL("fixture key %s: %s", label, err.msg);
	return k;
}

/*
 * A file holding data[0..n), for the APIs that take a path: a memfd named
 * by /proc/self/fd/N (nothing touches the disk), or a temporary file when
 * memfd_create is not there. path must hold 64 bytes. Returns the fd to
 * give to fuzz_file_close().
 */
static inline int fuzz_file(const uint8_t *data, size_t n, char *path)
{
	size_t off = 0;
	int fd = memfd_create("dkp-fuzz", MFD_CLOEXEC);

	if (fd >= 0) {
		snprintf(path, 64, "/proc/self/fd/%d", fd);
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(path, 64, "%s/dkp-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		fd = mkstemp(path);
		if (fd < 0)
			FUZZ_FAIL("cannot create a temporary file: %s",
				  strerror(errno));
	}
	while (off < n) {
		ssize_t w = write(fd, data + off, n - off);

		if (w <= 0)
			FUZZ_FAIL("write: %s", strerror(errno));
		off += (size_t)w;
	}
	return fd;
}

static inline void fuzz_file_close(int fd, const char *path)
{
	if (strncmp(path, "/proc/self/fd/", 14) != 0)
		unlink(path);
	close(fd);
}

/* Key fetcher over a small fixed table: exact name, case-insensitive, as
 * dkp_dnsfile_fetch looks names up. */
struct fuzz_dns {
	const char *qname[4];
	const char *rec[4];
	size_t recn[4];		/* 0: strlen(rec) */
	size_t n;
	unsigned calls;
};

static inline int fuzz_dns_fetch(void *ctx, const char *qname,
				 struct dkp_buf *txt, struct dkp_err *err)
{
	struct fuzz_dns *d = ctx;
	size_t i;

	d->calls++;
	for (i = 0; i < d->n; i++)
		if (strcasecmp(d->qname[i], qname) == 0) {
			dkp_buf_reset(txt);
			dkp_buf_add(txt, d->rec[i],
				    d->recn[i] ? d->recn[i] : strlen(d->rec[i]));
			return DKP_OK;
		}
	err->code = DKP_E_NOKEY;
	snprintf(err->msg, sizeof(err->msg), "no record for %s", qname);
	return DKP_E_NOKEY;
}

#endif
