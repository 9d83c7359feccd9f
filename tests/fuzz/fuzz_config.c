/*
 * fuzz_config.c — the `dkimpress run` configuration parser
 * (dkp_config_load in src/conf/config.c) and dkp_config_size.
 *
 * Input: the file's bytes, then optionally a NUL byte and up to eight
 * NUL-separated `--set key=value` overrides. The file is read from a
 * memfd (dkp_config_load takes a path; it opens nothing else: key files
 * and tables are the engine's business). When the configuration loads,
 * it must be what dkimpress.conf(5) promises: the three queue
 * directories, an ESP key with a valid domain and selector, both tables
 * or neither, at most DKP_MAX_CONF_HEADERS names in h= with From among
 * them and never DKIM-Signature, numbers within their ranges.
 */
#include "fuzz.h"

#include "conf/config.h"

static void check_config(const struct dkp_config *c)
{
	size_t i;
	int from = 0;

	FUZZ_CHECK(c->in_dir && c->out_dir && c->failed_dir, "queue dirs");
	FUZZ_CHECK(c->esp_domain && c->esp_selector && c->esp_keyfile &&
		   *c->esp_keyfile, "esp_key");
	FUZZ_CHECK(dkp_domain_ok(c->esp_domain, strlen(c->esp_domain)) &&
		   dkp_domain_ok(c->esp_selector, strlen(c->esp_selector)),
		   "esp_key '%s':'%s'", c->esp_domain, c->esp_selector);
	for (i = 0; c->esp_domain[i]; i++)
		FUZZ_CHECK(!(c->esp_domain[i] >= 'A' && c->esp_domain[i] <= 'Z'),
			   "esp domain not lower-cased: %s", c->esp_domain);
	FUZZ_CHECK(!c->key_table == !c->signing_table, "tables");
	FUZZ_CHECK(c->nheaders <= DKP_MAX_CONF_HEADERS, "%zu headers",
		   c->nheaders);
	for (i = 0; i < c->nheaders; i++) {
		FUZZ_CHECK(c->headers[i] && *c->headers[i], "empty header name");
		FUZZ_CHECK(strcasecmp(c->headers[i], "DKIM-Signature") != 0,
			   "DKIM-Signature in headers");
		FUZZ_CHECK(!strpbrk(c->headers[i], ": \t"), "header '%s'",
			   c->headers[i]);
		from |= !strcasecmp(c->headers[i], "From");
	}
	FUZZ_CHECK(c->nheaders == 0 || from, "headers without From");
	FUZZ_CHECK(c->threads >= 1 && c->threads <= DKP_MAX_THREADS,
		   "threads %u", c->threads);
	FUZZ_CHECK(c->batch >= 1 && c->batch <= 4096, "batch %u", c->batch);
	FUZZ_CHECK(c->uring_depth >= 8 && c->uring_depth <= 4096, "uring_depth");
	FUZZ_CHECK(c->inflight_bytes >= (1u << 20), "inflight_bytes");
	FUZZ_CHECK(c->limits.max_message_bytes >= 1024 &&
		   c->limits.max_header_bytes >= 1024 &&
		   c->limits.max_fields >= 1 && c->key_cache >= 1, "limits");
	FUZZ_CHECK(c->expire >= 0, "expire");
	FUZZ_CHECK(!(c->out_mode & ~0666u) && (c->out_mode & 0600) == 0600,
		   "out_mode %o", c->out_mode);
	FUZZ_CHECK(c->out_gid >= -1, "out_gid %ld", c->out_gid);
	FUZZ_CHECK(c->hcanon <= DKP_CANON_RELAXED &&
		   c->bcanon <= DKP_CANON_RELAXED, "canon");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t flen = nul ? (size_t)(nul - data) : size, nsets = 0;
	const char *sets[8];
	char *setbuf = NULL, path[64], line[64];
	struct dkp_config *c = NULL;
	struct dkp_err err;
	uint64_t sz;
	int fd, rc;

	if (nul) {
		/* the overrides: NUL-separated strings after the file */
		size_t n = size - flen - 1, i;

		setbuf = malloc(n + 1);
		memcpy(setbuf, nul + 1, n);
		setbuf[n] = '\0';
		sets[nsets++] = setbuf;
		for (i = 0; i < n && nsets < 8; i++)
			if (setbuf[i] == '\0')
				sets[nsets++] = setbuf + i + 1;
	}
	fd = fuzz_file(data, flen, path);
	rc = dkp_config_load(&c, path, sets, nsets, &err);
	fuzz_file_close(fd, path);
	if (rc == DKP_OK) {
		FUZZ_CHECK(c != NULL, "no config");
		check_config(c);
		dkp_config_free(c);
	} else {
		FUZZ_CHECK(c == NULL && rc == DKP_E_SYNTAX,
			   "load: status %d: %s", rc, err.msg);
		FUZZ_CHECK(memchr(err.msg, '\0', sizeof(err.msg)), "err.msg");
	}
	free(setbuf);

	/* sizes ("64M"): the first line, if short */
	if (flen < sizeof(line)) {
		memcpy(line, data, flen);
		line[flen] = '\0';
		if (dkp_config_size(line, &sz) == 0)
			FUZZ_CHECK(line[0] >= '0' && line[0] <= '9', "size '%s'", line);
	}
	return 0;
}
