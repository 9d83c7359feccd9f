/* align.c — DMARC alignment through libpsl; see align.h. */
#include "conf/align.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <libpsl.h>

#include "base/err.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

struct dkp_psl {
	psl_ctx_t *ctx;
};

static const char *const key_names[DKP_ALIGN_NKEYS] = {
	"dmarc_alignment", "unaligned", "public_suffix_list",
};

int dkp_align_conf_key(const char *name)
{
	int i;

	for (i = 0; i < DKP_ALIGN_NKEYS; i++)
		if (strcmp(key_names[i], name) == 0)
			return i;
	return -1;
}

const char *dkp_align_conf_apply(struct dkp_align_conf *ac, int key,
				 const char *v)
{
	switch (key) {
	case 0:
		if (!strcasecmp(v, "relaxed"))
			ac->mode = DKP_ALIGN_RELAXED;
		else if (!strcasecmp(v, "strict"))
			ac->mode = DKP_ALIGN_STRICT;
		else
			return "want relaxed or strict";
		break;
	case 1:
		if (!strcasecmp(v, "sign"))
			ac->action = DKP_UNALIGNED_SIGN;
		else if (!strcasecmp(v, "defer"))
			ac->action = DKP_UNALIGNED_DEFER;
		else if (!strcasecmp(v, "fail"))
			ac->action = DKP_UNALIGNED_FAIL;
		else
			return "want sign, defer or fail";
		break;
	case 2:
		dkp_free(ac->psl_file);
		ac->psl_file = strcasecmp(v, "auto") ? dkp_strdup(v) : NULL;
		break;
	default:
		return "unknown setting";
	}
	return NULL;
}

void dkp_align_conf_free(struct dkp_align_conf *ac)
{
	dkp_free(ac->psl_file);
	ac->psl_file = NULL;
}

const char *dkp_align_mode_name(enum dkp_align_mode m)
{
	return m == DKP_ALIGN_STRICT ? "strict" : "relaxed";
}

const char *dkp_unaligned_name(enum dkp_unaligned a)
{
	return a == DKP_UNALIGNED_DEFER ? "defer" : a == DKP_UNALIGNED_FAIL ? "fail" : "sign";
}

int dkp_psl_load(struct dkp_psl **out, const char *file, struct dkp_err *err)
{
	psl_ctx_t *ctx;

	*out = NULL;
	errno = 0;
	ctx = file ? psl_load_file(file) : psl_latest(NULL);
	if (ctx == NULL) {
		if (file)
			return dkp_err_sys(err, DKP_E_IO, 0, "config", errno ? errno : EINVAL,
					   "public_suffix_list = %s: cannot load it (a public_suffix_list.dat file, Debian's publicsuffix package)",
					   file);
		return dkp_err_set(err, DKP_E_IO, 0, "config",
				   "libpsl has no Public Suffix List (install Debian's publicsuffix package, or set public_suffix_list)");
	}
	*out = dkp_calloc(1, sizeof(**out));
	(*out)->ctx = ctx;
	return DKP_OK;
}

void dkp_psl_free(struct dkp_psl *p)
{
	if (p == NULL)
		return;
	psl_free(p->ctx);	/* a no-op for libpsl's built-in list */
	dkp_free(p);
}

int dkp_align_norm(const char *dom, char *out, size_t cap)
{
	size_t n = strlen(dom), i;

	if (n && dom[n - 1] == '.')
		n--;	/* the root label: "shop.example." is shop.example */
	if (n == 0 || n > 253 || n >= cap)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)dom[i];

		if (c >= 0x80 || c <= ' ' || c == 0x7f)
			return -1;
		if (c == '.' && (i == 0 || dom[i - 1] == '.'))
			return -1;	/* an empty label */
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : (char)c;
	}
	if (out[n - 1] == '.')
		return -1;	/* "shop.example..": an empty last label */
	out[n] = '\0';
	return 0;
}

int dkp_align_orgdomain(const struct dkp_psl *p, const char *dom, char *out,
			size_t cap)
{
	char norm[256];
	const char *reg;

	/* libpsl wants lowercase names without the root dot: it takes
	 * "co.uk." as the registrable part of "news.shop.co.uk." */
	if (dkp_align_norm(dom, norm, sizeof(norm)) < 0)
		return -1;
	reg = psl_registrable_domain(p->ctx, norm);
	if (reg == NULL || strlen(reg) >= cap)
		return -1;
	memcpy(out, reg, strlen(reg) + 1);
	return 0;
}

int dkp_align_check(const struct dkp_psl *p, enum dkp_align_mode mode,
		    const char *from, const char *d)
{
	char f[256], s[256], fo[256], so[256];

	if (dkp_align_norm(from, f, sizeof(f)) < 0 ||
	    dkp_align_norm(d, s, sizeof(s)) < 0)
		return 0;
	if (strcmp(f, s) == 0)
		return 1;
	if (mode == DKP_ALIGN_STRICT)
		return 0;
	/* relaxed: both organizational domains exist and are the same */
	return dkp_align_orgdomain(p, f, fo, sizeof(fo)) == 0 &&
	       dkp_align_orgdomain(p, s, so, sizeof(so)) == 0 && strcmp(fo, so) == 0;
}

enum dkp_align_result dkp_align_message(const struct dkp_psl *p,
					enum dkp_align_mode mode, const char *from,
					const char *const *d, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (d[i] && dkp_align_check(p, mode, from, d[i]))
			return DKP_ALIGN_YES;
	return DKP_ALIGN_NO;
}

const char *dkp_align_key_domain(const struct dkp_psl *p, const char *kdom,
				 const char *from, char *buf, size_t cap)
{
	if (strcmp(kdom, "%") == 0)
		return dkp_sigfmt_domain_ok(from, strlen(from)) ? from : NULL;
	if (strcmp(kdom, "%org") == 0)
		return dkp_align_orgdomain(p, from, buf, cap) == 0 &&
		       dkp_sigfmt_domain_ok(buf, strlen(buf)) ? buf : NULL;
	return kdom;
}
