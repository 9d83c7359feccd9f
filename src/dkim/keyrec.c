/*
 * keyrec.c — fetching DKIM key records: from a --dns-file table (tests,
 * offline verification) or from DNS through the system resolver.
 */
#include "dkim/keyrec.h"

#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/file.h"
#include "base/htab.h"
#include "base/mem.h"

struct dnsent {
	char *qname;
	char *record;
	int temperror;	/* the test aid "NAME TEMPERROR": a failing lookup */
};

struct dkp_dnsfile {
	struct dnsent *e;
	size_t n;
	struct dkp_htab *idx;	/* lower-case name -> first entry */
};

#define DNSFILE_MAX_NAME 512

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int dkp_b64_decode(const char *s, size_t n, struct dkp_buf *out)
{
	unsigned acc = 0;
	int bits = 0, pad = 0;
	size_t i;

	dkp_buf_reset(out);
	dkp_buf_reserve(out, n);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		if (pad || (v = b64val(c)) < 0)
			return -1;	/* data after padding, or not base64 */
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out->p[out->len++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2 || bits >= 6)
		return -1;
	out->p[out->len] = '\0';
	return 0;
}

/* Join the record text: a sequence of "quoted" strings is concatenated
 * (zone-file style), anything else is taken as it is. */
static char *record_text(const char *s)
{
	struct dkp_buf b;
	char *r;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '"' && *s != '(')
		return dkp_strdup(s);
	dkp_buf_init(&b);
	while (*s) {
		if (*s == '"') {
			for (s++; *s && *s != '"'; s++) {
				if (*s == '\\' && s[1])
					s++;
				dkp_buf_addc(&b, *s);
			}
			if (*s)
				s++;
		} else {
			s++;	/* spaces, parentheses between strings */
		}
	}
	r = dkp_strdup(b.p ? b.p : "");
	dkp_buf_free(&b);
	return r;
}

void dkp_dnsfile_free(struct dkp_dnsfile *f)
{
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->n; i++) {
		dkp_free(f->e[i].qname);
		dkp_free(f->e[i].record);
	}
	dkp_free(f->e);
	dkp_htab_free(f->idx, NULL);
	dkp_free(f);
}

int dkp_dnsfile_load(struct dkp_dnsfile **out, const char *path,
		     struct dkp_err *err)
{
	FILE *fp = dkp_fopen_regular(path);
	struct dkp_dnsfile *f;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;

	*out = NULL;
	if (fp == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "dns-file", errno,
				   "cannot open %s%s", path, dkp_open_note(errno));
	f = dkp_calloc(1, sizeof(*f));
	while ((len = getline(&line, &cap, fp)) >= 0) {
		char *p = line, *q;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		for (q = p; *q && *q != ' ' && *q != '\t'; q++)
			;
		if (*q == '\0') {
			dkp_free(line);
			fclose(fp);
			dkp_dnsfile_free(f);
			return dkp_err_set(err, DKP_E_SYNTAX, 0, "dns-file",
					   "%s:%zu: expected NAME<TAB>RECORD",
					   path, lineno);
		}
		*q++ = '\0';
		if (q - p > 1 && q[-2] == '.')
			q[-2] = '\0';	/* absolute name */
		f->e = dkp_realloc(f->e, (f->n + 1) * sizeof(*f->e));
		f->e[f->n].qname = dkp_strdup(p);
		f->e[f->n].record = record_text(q);
		f->e[f->n].temperror = strcmp(q + strspn(q, " \t"), "TEMPERROR") == 0;
		f->n++;
	}
	dkp_free(line);
	fclose(fp);
	/* an index, so 100,000 names cost one hash lookup each (check) */
	f->idx = dkp_htab_new(f->n);
	for (size_t i = 0; i < f->n; i++) {
		char low[DNSFILE_MAX_NAME];
		size_t l = strlen(f->e[i].qname);

		if (l >= sizeof(low))
			continue;	/* found by the linear scan instead */
		for (size_t j = 0; j < l; j++)
			low[j] = (char)tolower((unsigned char)f->e[i].qname[j]);
		if (dkp_htab_get(f->idx, low, l) == NULL)	/* first wins */
			dkp_htab_put(f->idx, low, l, &f->e[i]);
	}
	*out = f;
	return DKP_OK;
}

/* The record entry for qname, or NULL: the index, else a scan. */
static const struct dnsent *dnsfile_find(const struct dkp_dnsfile *f,
					 const char *qname)
{
	char low[DNSFILE_MAX_NAME];
	size_t l = strlen(qname), i;

	if (l < sizeof(low) && f->idx) {
		for (i = 0; i < l; i++)
			low[i] = (char)tolower((unsigned char)qname[i]);
		return dkp_htab_get(f->idx, low, l);
	}
	for (i = 0; i < f->n; i++)
		if (strcasecmp(f->e[i].qname, qname) == 0)
			return &f->e[i];
	return NULL;
}

int dkp_dnsfile_fetch(void *ctx, const char *qname, struct dkp_buf *txt,
		      struct dkp_err *err)
{
	const struct dnsent *e = dnsfile_find(ctx, qname);

	if (e && e->temperror)
		return dkp_err_set(err, DKP_E_DNS, 1, "dns",
				   "lookup of %s failed (TEMPERROR in the dns-file)",
				   qname);
	if (e) {
		dkp_buf_reset(txt);
		dkp_buf_adds(txt, e->record);
		return DKP_OK;
	}
	return dkp_err_set(err, DKP_E_NOKEY, 0, "dns", "no record for %s",
			   qname);
}

void dkp_txt_rdata(const unsigned char *rd, size_t len, struct dkp_buf *txt)
{
	const unsigned char *end = rd + len;

	dkp_buf_reset(txt);
	while (rd < end) {
		unsigned l = *rd++;

		if (l > (unsigned)(end - rd))
			break;
		dkp_buf_add(txt, rd, l);
		rd += l;
	}
}

int dkp_dns_fetch(void *unused, const char *qname, struct dkp_buf *txt,
		  struct dkp_err *err)
{
	struct __res_state st;
	unsigned char ans[8192];
	ns_msg msg;
	ns_rr rr;
	int len, i, count;

	(void)unused;
	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0)
		return dkp_err_set(err, DKP_E_DNS, 1, "dns",
				   "cannot initialise the resolver");
	len = res_nquery(&st, qname, ns_c_in, ns_t_txt, ans, sizeof(ans));
	if (len < 0) {
		int h = st.res_h_errno;

		res_nclose(&st);
		if (h == HOST_NOT_FOUND || h == NO_DATA)
			return dkp_err_set(err, DKP_E_NOKEY, 0, "dns",
					   "no TXT record at %s", qname);
		return dkp_err_set(err, DKP_E_DNS, 1, "dns",
				   "DNS lookup of %s failed: %s", qname,
				   hstrerror(h));
	}
	res_nclose(&st);
	if (ns_initparse(ans, len, &msg) < 0)
		return dkp_err_set(err, DKP_E_DNS, 1, "dns",
				   "unparsable DNS answer for %s", qname);
	count = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < count; i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 ||
		    ns_rr_type(rr) != ns_t_txt)
			continue;
		dkp_txt_rdata(ns_rr_rdata(rr), ns_rr_rdlen(rr), txt);
		return DKP_OK;
	}
	return dkp_err_set(err, DKP_E_NOKEY, 0, "dns", "no TXT record at %s",
			   qname);
}
