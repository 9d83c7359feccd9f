/*
 * sigfmt.h — DKIM-Signature rendering and parsing (RFC 6376 3.2, 3.5).
 *
 * Rendering: tags in the order v c t x h bh, then on a line of their own
 * a d s i b; the field is folded to at most 78 columns (a TAB counts as
 * 8) and only where the grammar allows: between tags, after a ':' in h=,
 * and inside base64. b= comes last, so the signed form ("...; b=") is a
 * prefix of the final field. The first part is the same for every
 * signature of a message with the same c=, t=, x= and h= (and so bh=),
 * and it comes first in the hash: dkp_sign hashes the header fields and
 * that part once for all of them (tag order is free, RFC 6376 3.2).
 *
 * Parsing: a generic RFC 6376 3.2 tag-list parser that records where each
 * value lies in the raw field, so a verifier can blank out b=.
 */
#ifndef DKP_SIGFMT_H
#define DKP_SIGFMT_H

#include <stddef.h>
#include <stdint.h>

#include "dkimpress/dkimpress.h"

#define DKP_SIGFMT_COLS 78

struct dkp_sigfmt {
	enum dkp_alg alg;
	enum dkp_canon hcanon, bcanon;
	const char *domain, *selector, *identity;
	int64_t t, x;		/* < 0 / 0: omitted */
	const char *const *headers;	/* h= names, in order */
	size_t nheaders;
	const char *bh;		/* base64 body hash */
};

/*
 * Append "DKIM-Signature: v=1; ...; b=" (no value, no CRLF) to out; store
 * the column after "b=" in *col for dkp_sigfmt_finish().
 */
void dkp_sigfmt_render(const struct dkp_sigfmt *f, struct dkp_buf *out,
		       size_t *col);
/*
 * The same in three steps: the part a message's signatures share,
 * "DKIM-Signature: v=1; c=...; t=...; x=...; h=...; bh=...;" (returns
 * the column after it); the key's part, cached as a template: a fold,
 * then "a=...; d=...; s=...;" (returns the column after it); then from
 * that column the rest, i= when set and "b=".
 */
size_t dkp_sigfmt_shared(const struct dkp_sigfmt *f, struct dkp_buf *out);
size_t dkp_sigfmt_keypart(const struct dkp_sigfmt *f, struct dkp_buf *out);
void dkp_sigfmt_rest(const struct dkp_sigfmt *f, size_t col,
		     struct dkp_buf *out, size_t *bcol);
/* Append the folded b= value and the final CRLF. */
void dkp_sigfmt_finish(struct dkp_buf *out, size_t col, const char *b64,
		       size_t n);

/*
 * RFC 6376 grammar of the values dkp_sigfmt_render() writes into tags.
 * Every value that comes from outside (the command line, the
 * configuration, a KeyTable, a From address) is checked with these before
 * it is signed, so that nothing can end a tag (';'), start a line (CR,
 * LF) or change what a verifier looks up. Each takes (ptr, len) and
 * returns 1 when the value is acceptable.
 *
 *  selector  s= (3.1): sub-domain *("." sub-domain), where a sub-domain is
 *            letters, digits and '-', starting and ending with a letter or
 *            digit (RFC 5321 Let-dig [Ldh-str]), 1..63 each, 253 in all;
 *  domain    d= (3.5 domain-name): the same with at least two labels; an
 *            internationalized name must be given as A-labels (xn--);
 *  hname     one h= name (3.5 hdr-name = RFC 5322 field-name): printable
 *            US-ASCII except ':' and, because it would end the tag, ';';
 *  auid      i= (3.5): [local-part] "@" domain, the local part a dot-atom
 *            of RFC 5322 atext without '=' (i= is dkim-quoted-printable,
 *            so a bare '=' would be read as an escape), at most 64 bytes
 *            (RFC 5321 4.5.3.1.1); the domain as for d=.
 */
int dkp_sigfmt_selector_ok(const char *s, size_t n);
int dkp_sigfmt_domain_ok(const char *s, size_t n);
int dkp_sigfmt_hname_ok(const char *s, size_t n);
int dkp_sigfmt_auid_ok(const char *s, size_t n);
/* Does the domain of auid (after its last '@') fall within d: equal, or a
 * subdomain (RFC 6376 3.5, i=)? */
int dkp_sigfmt_auid_within(const char *auid, const char *d);
/*
 * Every value of sp that dkp_sign renders into a tag, checked with the
 * above (d=, s=, their DNS name, i= within d=, h= names including From
 * and not DKIM-Signature, x= after t=): DKP_OK or DKP_E_USAGE with the
 * reason. dkp_sign's last line of defence; callers check first, to name
 * the option or setting at fault.
 */
int dkp_sigfmt_spec_ok(const struct dkp_sig_spec *sp, struct dkp_err *err);

/*
 * A printable copy of s/n for a message or a report: bytes outside
 * printable US-ASCII and the backslash itself become \xHH. Writes at most
 * outsz - 1 bytes and a NUL (whole escapes only); returns out.
 */
char *dkp_sigfmt_escape(const char *s, size_t n, char *out, size_t outsz);

/* One tag of a parsed tag-list; offsets into the parsed text. */
struct dkp_tag {
	char name[8];		/* tag names we care about are short */
	size_t voff, vlen;	/* value without surrounding FWS */
	size_t roff, rlen;	/* raw: everything between '=' and ';' */
};

#define DKP_MAX_TAGS 32

struct dkp_taglist {
	struct dkp_tag tags[DKP_MAX_TAGS];
	size_t n;
};

/*
 * Parse an RFC 6376 3.2 tag-list from s/len. Refuses a syntax error, a
 * duplicate tag or more than DKP_MAX_TAGS tags (DKP_E_SYNTAX). Tag names
 * longer than 7 characters are kept truncated-and-marked so they are
 * ignored (unknown tags are allowed) but still count as duplicates only
 * among themselves when identical.
 */
int dkp_taglist_parse(const char *s, size_t len, struct dkp_taglist *tl,
		      struct dkp_err *err);
/* Find a tag by name; NULL if absent. */
const struct dkp_tag *dkp_taglist_get(const struct dkp_taglist *tl,
				      const char *name);

#endif
