/*
 * dkimpress.h — public API of libdkimpress: parse a message, load keys,
 * produce DKIM signatures (RFC 6376, RFC 8301, RFC 8463), verify them.
 *
 * Contract: nothing here does queue or network I/O except the two key
 * fetchers at the end (a --dns-file table and the system resolver) and
 * dkp_key_load(), which reads one key file. All functions report failure
 * through a caller-supplied struct dkp_err and a named status; none abort
 * on bad input.
 *
 * Ownership: a struct dkp_msg may point into the caller's buffer (see
 * dkp_msg_parse); the buffer must outlive the message. Keys are reference
 * counted; dkp_key_unref() frees the last reference and wipes nothing
 * secret on the way (OpenSSL holds the key material and clears it).
 *
 * Threads: a struct dkp_key may be shared by any number of threads once
 * loaded. A struct dkp_signer, struct dkp_msg and struct dkp_buf belong to
 * one thread at a time.
 */
#ifndef DKIMPRESS_H
#define DKIMPRESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DKIMPRESS_VERSION "0.1.0"

/* ---- status and error context ---------------------------------------- */

enum dkp_status {
	DKP_OK = 0,
	DKP_E_SYNTAX,	/* malformed message or record */
	DKP_E_FROM,	/* no From field, or more than one (RFC 6376 8.15) */
	DKP_E_LIMIT,	/* a configured limit was exceeded */
	DKP_E_NOKEY,	/* no key for that domain/selector */
	DKP_E_KEY,	/* key file unreadable, insecure, unparsable or unfit */
	DKP_E_CRYPTO,	/* OpenSSL failed */
	DKP_E_IO,	/* read/write failure */
	DKP_E_USAGE,	/* caller passed something impossible */
	DKP_E_DNS,	/* key lookup failed temporarily */
	DKP_E_BADSIG,	/* a signature we made failed its own check */
};

/* Context for one failure; filled by the layer that failed. */
struct dkp_err {
	enum dkp_status code;
	int temp;		/* 1: retry may succeed; 0: permanent */
	int sys_errno;		/* saved errno, 0 if none */
	char step[24];		/* failing step: "parse", "open", "sign" ... */
	char msg[320];		/* one line, no key material, no newline */
};

/* Short name of a status ("syntax", "no-key", ...). */
const char *dkp_status_str(enum dkp_status st);

/* sysexits.h code for an error: 65 data, 66 no input, 74 I/O, 75 temp,
 * 78 config/key, 64 usage. */
int dkp_err_exit_code(const struct dkp_err *err);

/* ---- byte buffer ------------------------------------------------------ */

/*
 * A growable byte buffer with its own length; NUL-safe. p is always
 * NUL-terminated for convenience (the NUL is not counted in len).
 * Warning: any append may move p; pointers into the buffer are invalid
 * after a call that grows it.
 */
struct dkp_buf {
	char *p;
	size_t len;
	size_t cap;
};

void dkp_buf_init(struct dkp_buf *b);
void dkp_buf_free(struct dkp_buf *b);	/* frees storage; b reusable */
void dkp_buf_reset(struct dkp_buf *b);	/* len = 0, keeps storage */
void dkp_buf_reserve(struct dkp_buf *b, size_t extra);
void dkp_buf_add(struct dkp_buf *b, const void *p, size_t n);
void dkp_buf_adds(struct dkp_buf *b, const char *s);
void dkp_buf_addc(struct dkp_buf *b, char c);
void dkp_buf_printf(struct dkp_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Overwrite with zeros, then reset (for anything secret). */
void dkp_buf_wipe(struct dkp_buf *b);

/* ---- message ---------------------------------------------------------- */

struct dkp_limits {
	size_t max_header_bytes;	/* whole header block */
	size_t max_fields;		/* header fields */
	size_t max_message_bytes;	/* whole message */
};

#define DKP_DEFAULT_MAX_HEADER_BYTES (1024u * 1024u)
#define DKP_DEFAULT_MAX_FIELDS 1000u
#define DKP_DEFAULT_MAX_MESSAGE_BYTES (64u * 1024u * 1024u)

void dkp_limits_default(struct dkp_limits *lim);

/* One header field: the bytes [off, off+len) of dkp_msg.data, including
 * folded continuation lines and the final CRLF. */
struct dkp_field {
	size_t off;
	size_t len;
	size_t name_len;	/* name without trailing WSP before ':' */
	size_t colon;		/* offset of ':' relative to off */
};

struct dkp_msg {
	const char *data;	/* the message, CRLF line endings */
	size_t len;
	size_t body_off;	/* first body byte (== len if no body) */
	struct dkp_field *fields;
	size_t nfields;
	size_t from_idx;	/* index of the one From field */
	/* private */
	size_t fields_cap;
	char *own;		/* CRLF-normalised copy when input had bare LF */
	size_t own_cap;
	struct dkp_limits lim;	/* as parsed with; dkp_sign keeps within */
};

void dkp_msg_init(struct dkp_msg *m);
void dkp_msg_fini(struct dkp_msg *m);
/*
 * Parse a message. If buf uses CRLF throughout, m->data points into buf
 * (buf must outlive m); otherwise each bare LF becomes CRLF in a copy owned
 * by m. A message of header fields only gets, in that copy, the CRLF its
 * last line may lack and the empty line after them (as it travels: see
 * msg_parse.c). Refuses (DKP_E_SYNTAX) an empty header block, a line that
 * is not a field, white space between a field name and its colon
 * (obsolete RFC 5322 4.5 syntax), a NUL in the header block; (DKP_E_FROM)
 * zero or several From; (DKP_E_LIMIT) anything over lim. Reusable: parse
 * again to reuse storage.
 */
int dkp_msg_parse(struct dkp_msg *m, const char *buf, size_t len,
		  const struct dkp_limits *lim, struct dkp_err *err);
/* Name of field i (not NUL-terminated; see dkp_field.name_len). */
const char *dkp_msg_field_name(const struct dkp_msg *m, size_t i);
/* Copy the domain of the From address, lower-cased, into out (NUL-
 * terminated). Returns DKP_OK or DKP_E_FROM if no usable address. */
int dkp_msg_from_domain(const struct dkp_msg *m, char *out, size_t outsz,
			struct dkp_err *err);
/* As dkp_msg_from_domain, plus the local part as written (trimmed) into
 * local (localsz 0: not wanted). */
int dkp_msg_from_address(const struct dkp_msg *m, char *local,
			 size_t localsz, char *out, size_t outsz,
			 struct dkp_err *err);

/* Is s/n a usable selector, or domain name: dot-separated labels of
 * letters, digits and '-', not starting or ending with '-', each 1..63
 * long, 253 in all (RFC 6376 3.1 selector; a d= also needs two labels)? */
int dkp_domain_ok(const char *s, size_t n);

/* ---- keys ------------------------------------------------------------- */

enum dkp_alg {
	DKP_ALG_RSA_SHA256 = 0,
	DKP_ALG_ED25519_SHA256 = 1,
};

enum dkp_canon {
	DKP_CANON_SIMPLE = 0,
	DKP_CANON_RELAXED = 1,
};

/* "rsa-sha256" / "ed25519-sha256"; "simple" / "relaxed". */
const char *dkp_alg_name(enum dkp_alg a);
const char *dkp_canon_name(enum dkp_canon c);
/* Parse "relaxed/simple" (or a single word: body defaults to simple, as in
 * RFC 6376 3.5 c=). Returns DKP_OK or DKP_E_USAGE. */
int dkp_canon_parse(const char *s, enum dkp_canon *h, enum dkp_canon *b);

struct dkp_key;

#define DKP_KEY_INSECURE_PERMS 0x1	/* accept group/other-readable files */

/* Warning threshold below which RSA keys are accepted but reported. */
#define DKP_RSA_WARN_BITS 2048
#define DKP_RSA_MIN_BITS 1024

/*
 * Load a PEM private key (RSA PKCS#1/PKCS#8, Ed25519 PKCS#8) from a file.
 * Refuses a file readable or writable by group/others unless
 * DKP_KEY_INSECURE_PERMS, an encrypted key (never prompts), RSA under 1024
 * bits and other key types, all with DKP_E_KEY and a message naming the
 * file. The file's bytes are wiped from memory after parsing.
 */
int dkp_key_load(struct dkp_key **out, const char *path, unsigned flags,
		 struct dkp_err *err);
/* Same from a PEM buffer; label names the source in messages. */
int dkp_key_from_pem(struct dkp_key **out, const void *pem, size_t len,
		     const char *label, struct dkp_err *err);
void dkp_key_ref(struct dkp_key *k);
void dkp_key_unref(struct dkp_key *k);
enum dkp_alg dkp_key_alg(const struct dkp_key *k);
int dkp_key_bits(const struct dkp_key *k);
/* The p= value for the DNS record (base64), appended to out. */
int dkp_key_public_b64(const struct dkp_key *k, struct dkp_buf *out,
		       struct dkp_err *err);

/* ---- signing ---------------------------------------------------------- */

/* What one signature should look like. */
struct dkp_sig_spec {
	const char *domain;	/* d= */
	const char *selector;	/* s= */
	struct dkp_key *key;	/* borrowed */
	enum dkp_canon hcanon, bcanon;
	/* h=: NULL for the default list (see dkp_sign); otherwise these names
	 * exactly, in this order. */
	const char *const *headers;
	size_t nheaders;
	const char *identity;	/* i=, NULL to omit */
	int64_t t;		/* t=, < 0 to omit */
	int64_t x;		/* x=, 0 to omit (must be > t) */
};

struct dkp_signer;

struct dkp_signer *dkp_signer_new(void);
void dkp_signer_free(struct dkp_signer *s);

/*
 * Produce n DKIM-Signature fields for m, in spec order (the first is meant
 * to go on top), appended to out, each ending in CRLF and folded to at most
 * 78 columns. The body is hashed once per distinct body canonicalization.
 *
 * Default h= (spec->headers == NULL): the RFC 6376 5.4.1 recommendations
 * plus Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding,
 * List-Unsubscribe-Post and Feedback-ID, each only when present, each
 * named once more than it occurs (oversigned). DKIM-Signature, Received
 * and Return-Path are never in the default list.
 *
 * Refuses (DKP_E_USAGE) a d=, s=, i= or h= name outside the RFC 6376
 * grammar (see dkim/sigfmt.h), and (DKP_E_LIMIT, out unchanged) a signed
 * message that would exceed the limits m was parsed with: more than
 * max_fields fields, or a header block over max_header_bytes.
 */
int dkp_sign(struct dkp_signer *s, const struct dkp_msg *m,
	     const struct dkp_sig_spec *specs, size_t n, struct dkp_buf *out,
	     struct dkp_err *err);

/* ---- verification ----------------------------------------------------- */

enum dkp_vres {
	DKP_V_PASS = 0,
	DKP_V_FAIL,
	DKP_V_TEMPERROR,
	DKP_V_PERMERROR,
};

const char *dkp_vres_name(enum dkp_vres r);

struct dkp_vresult {
	enum dkp_vres res;
	char domain[256];
	char selector[256];	/* a DNS name: never truncated */
	char alg[32];
	char reason[160];
};

/*
 * Key fetcher: put the TXT record for qname ("sel._domainkey.example.com")
 * into txt. Return DKP_OK, DKP_E_NOKEY (no such record) or DKP_E_DNS
 * (temporary failure).
 */
typedef int (*dkp_keyfetch_fn)(void *ctx, const char *qname,
			       struct dkp_buf *txt, struct dkp_err *err);

/* Signatures dkp_verify checks; those below them are not checked. */
#define DKP_VERIFY_MAX_SIGS 50

/*
 * Verify every DKIM-Signature field of m (top first). Writes up to maxres
 * results and the number of signatures found in *nres. now is the current
 * time for x= (pass 0 to use the clock). Only the first
 * DKP_VERIFY_MAX_SIGS are checked; each one after them is a permerror
 * "not checked". A body is hashed once per (body canonicalization, l=).
 * d=, s=, a= and the reason are printable: bytes outside printable
 * US-ASCII (and '\') are written \xHH.
 */
int dkp_verify(const struct dkp_msg *m, dkp_keyfetch_fn fetch, void *fctx,
	       int64_t now, struct dkp_vresult *res, size_t maxres,
	       size_t *nres, struct dkp_err *err);

/* A key table read from a --dns-file: lines "QNAME<TAB>RECORD". */
struct dkp_dnsfile;
int dkp_dnsfile_load(struct dkp_dnsfile **out, const char *path,
		     struct dkp_err *err);
void dkp_dnsfile_free(struct dkp_dnsfile *f);
int dkp_dnsfile_fetch(void *dnsfile, const char *qname, struct dkp_buf *txt,
		      struct dkp_err *err);
/* Fetcher that asks the system resolver (res_nquery, TXT). */
int dkp_dns_fetch(void *unused, const char *qname, struct dkp_buf *txt,
		  struct dkp_err *err);

/* ---- key generation --------------------------------------------------- */

/*
 * Generate a key pair: the private key as PKCS#8 PEM in pem (caller wipes
 * it), and the TXT record value ("v=DKIM1; k=rsa; p=...") in record.
 */
int dkp_keygen(enum dkp_alg alg, int bits, struct dkp_buf *pem,
	       struct dkp_buf *record, struct dkp_err *err);

#ifdef __cplusplus
}
#endif

#endif
