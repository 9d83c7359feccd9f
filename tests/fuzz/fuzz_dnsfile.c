/*
 * fuzz_dnsfile.c — the --dns-file reader (dkp_dnsfile_load and
 * dkp_dnsfile_fetch in src/dkim/keyrec.c), as `dkimpress verify
 * --dns-file FILE` uses it.
 *
 * Input: the file's bytes (lines "QNAME<TAB>RECORD", zone-file quoting
 * allowed). It is loaded from a memfd; when it loads, every name it
 * declares must be found again by dkp_dnsfile_fetch (case-insensitively,
 * a trailing '.' dropped), and the RFC 8463 signed message is verified
 * with the table as the key fetcher (the seeds hold the RFC 8463 records,
 * so both signatures pass and every record check runs).
 */
#include <ctype.h>

#include "fuzz.h"

static void check_names(const uint8_t *data, size_t size,
			struct dkp_dnsfile *f)
{
	char *copy = malloc(size + 1), *line, *next, *p, *q;
	struct dkp_buf txt;
	struct dkp_err err;

	memcpy(copy, data, size);
	copy[size] = '\0';
	dkp_buf_init(&txt);
	for (line = copy; line && line < copy + size; line = next) {
		next = memchr(line, '\n', (size_t)(copy + size - line));
		if (next)
			*next++ = '\0';
		if (strlen(line) != (size_t)((next ? next - 1 : copy + size) - line))
			continue;	/* a NUL inside: getline sees more */
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		if (*p == '\0' || *p == '#' || *p == '\r')
			continue;
		for (q = p; *q && *q != ' ' && *q != '\t'; q++)
			;
		if (*q == '\0')
			continue;	/* the loader refused such a line */
		*q = '\0';
		if (q > p && q[-1] == '.')
			q[-1] = '\0';	/* absolute name, as the loader */
		/* "NAME TEMPERROR" is the loader's test aid for a failing
		 * lookup (keyrec.c): such a name fails, temporarily (its
		 * message names the name first, so a long one can push the
		 * word TEMPERROR out of err.msg: the code is what counts) */
		FUZZ_CHECK(dkp_dnsfile_fetch(f, p, &txt, &err) == DKP_OK ||
			   (err.code == DKP_E_DNS &&
			    memmem(data, size, "TEMPERROR", 9) != NULL),
			   "'%s' is in the file but not found: %s", p, err.msg);
		FUZZ_CHECK(txt.len == strlen(txt.p ? txt.p : ""),
			   "record with a NUL");
	}
	/* a name the file does not hold (the check is case-insensitive) */
	memcpy(copy, data, size);
	for (p = copy; p < copy + size; p++)
		*p = (char)tolower((unsigned char)*p);
	FUZZ_CHECK(dkp_dnsfile_fetch(f, "no-such-name._domainkey.invalid",
				     &txt, &err) == DKP_E_NOKEY ||
		   memmem(copy, size, "no-such-name", 12) != NULL,
		   "a name not in the file was found");
	dkp_buf_free(&txt);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dkp_dnsfile *f = NULL;
	struct dkp_err err;
	struct dkp_msg m;
	struct dkp_vresult res[4];
	size_t nres = 0;
	char path[64];
	int fd, rc;

	fd = fuzz_file(data, size, path);
	rc = dkp_dnsfile_load(&f, path, &err);
	fuzz_file_close(fd, path);
	if (rc != DKP_OK) {
		FUZZ_CHECK(f == NULL && rc == DKP_E_SYNTAX,
			   "load: status %d: %s", rc, err.msg);
		return 0;
	}
	FUZZ_CHECK(f != NULL, "load returned no table");
	check_names(data, size, f);

	dkp_msg_init(&m);
	FUZZ_CHECK(dkp_msg_parse(&m, fuzz_rfc8463_signed,
				 strlen(fuzz_rfc8463_signed), NULL, &err) == DKP_OK,
		   "fixture");
	FUZZ_CHECK(dkp_verify(&m, dkp_dnsfile_fetch, f, FUZZ_RFC8463_T + 1, res,
			      4, &nres, &err) == DKP_OK && nres == 2,
		   "verify: %s", err.msg);
	dkp_msg_fini(&m);
	dkp_dnsfile_free(f);
	return 0;
}
