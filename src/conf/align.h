/*
 * align.h — DMARC identifier alignment (RFC 7489 3.1.1): does a
 * signature's d= align with the RFC5322.From domain, strictly (the same
 * name, case-insensitive) or relaxed (the same organizational domain,
 * RFC 7489 3.2)? The organizational domain comes from the Public Suffix
 * List through libpsl (Debian's publicsuffix data), never from a list of
 * our own. Also the KeyTable's From-derived domains: "%" (the From
 * domain, as OpenDKIM) and "%org" (its organizational domain), and the
 * three settings of docs/dkimpress.conf.5 (dmarc_alignment, unaligned,
 * public_suffix_list), parsed here for config.c.
 *
 * Names are compared as ASCII: lowercased, one trailing dot (the root)
 * dropped. IDNs take part in their A-label (xn--) form, as d= writes
 * them; a From domain in UTF-8 never aligns (XXX: no IDNA conversion).
 *
 * A loaded struct dkp_psl is read-only: any number of threads may use it
 * at once (libpsl's lookups do not write to the context).
 */
#ifndef DKP_ALIGN_H
#define DKP_ALIGN_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

enum dkp_align_mode {
	DKP_ALIGN_RELAXED = 0,	/* the same organizational domain */
	DKP_ALIGN_STRICT,	/* the same domain */
};

/* What the engine does with a message whose customer signature does not
 * align (and no other signature does). */
enum dkp_unaligned {
	DKP_UNALIGNED_SIGN = 0,	/* sign anyway, counted */
	DKP_UNALIGNED_DEFER,	/* back to the queue (a temporary failure) */
	DKP_UNALIGNED_FAIL,	/* to failed/ with the reason */
};

/* A message's alignment, as the engine records it (struct dkp_tmsg). */
enum dkp_align_result {
	DKP_ALIGN_UNCHECKED = 0,	/* not signed, or no key_table */
	DKP_ALIGN_YES,			/* a signature it carries aligns */
	DKP_ALIGN_NO,			/* none does */
};

/* The settings (zero-initialised: relaxed, sign, the newest PSL). */
struct dkp_align_conf {
	enum dkp_align_mode mode;
	enum dkp_unaligned action;
	char *psl_file;		/* NULL: psl_latest(), else a .dat file */
};

#define DKP_ALIGN_NKEYS 3
/* The setting's index (0..DKP_ALIGN_NKEYS-1) for a name, or -1. */
int dkp_align_conf_key(const char *name);
/* Apply setting key with value v (a repeated one replaces): NULL or why
 * not (a static string). */
const char *dkp_align_conf_apply(struct dkp_align_conf *ac, int key,
				 const char *v);
void dkp_align_conf_free(struct dkp_align_conf *ac);
const char *dkp_align_mode_name(enum dkp_align_mode m);
const char *dkp_unaligned_name(enum dkp_unaligned a);

struct dkp_psl;

/* Load the Public Suffix List: file NULL takes the newest of libpsl's
 * built-in list and the distribution's (Debian's publicsuffix package),
 * else that file (the public_suffix_list.dat format). */
int dkp_psl_load(struct dkp_psl **out, const char *file, struct dkp_err *err);
void dkp_psl_free(struct dkp_psl *p);

/* dom lowercased, without one trailing dot, into out (cap bytes): 0, or
 * -1 when it is no usable domain name (empty, empty label, 8-bit, too
 * long). */
int dkp_align_norm(const char *dom, char *out, size_t cap);

/* The organizational domain of dom (RFC 7489 3.2: its public suffix and
 * one more label), normalized, into out: 0, or -1 when there is none (dom
 * is itself a public suffix, or unusable). */
int dkp_align_orgdomain(const struct dkp_psl *p, const char *dom, char *out,
			size_t cap);

/* Does d= d align with From domain from in mode? 1 yes, 0 no. Equal names
 * align in both modes; relaxed also aligns names with one organizational
 * domain. */
int dkp_align_check(const struct dkp_psl *p, enum dkp_align_mode mode,
		    const char *from, const char *d);

/* The result for a message signed with d[0..n) (NULL entries skipped):
 * DKP_ALIGN_YES if any aligns. */
enum dkp_align_result dkp_align_message(const struct dkp_psl *p,
					enum dkp_align_mode mode, const char *from,
					const char *const *d, size_t n);

/* The d= of a KeyTable entry's domain kdom for From domain from: "%" the
 * From domain itself, "%org" its organizational domain (in buf), any
 * other kdom itself. NULL when the From domain gives no valid d= (RFC
 * 6376 3.5 grammar; a public suffix has no organizational domain). */
const char *dkp_align_key_domain(const struct dkp_psl *p, const char *kdom,
				 const char *from, char *buf, size_t cap);

#endif
