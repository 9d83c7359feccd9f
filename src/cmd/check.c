/*
 * check.c — `dkimpress check`: keys against their DNS records; see check.h.
 *
 * Three steps, each a plain function:
 *
 *   1. collect: the ESP key, then each KeyTable entry in file order, as
 *      items (name, d=, s=, key file); a '%' entry becomes one item per
 *      concrete domain the SigningTable routes to it.
 *   2. load keys: each distinct key file once, on a few threads (parsing a
 *      PEM key is CPU work); what is kept is only the public key (DER)
 *      and its type and size, the private key is released (and wiped by
 *      OpenSSL) at once, so 100,000 distinct keys cost 100,000 public keys.
 *   3. look up and judge: the items are shared out in chunks to lookup
 *      threads (at most --concurrency; with a dns-file, one per core: the
 *      lookups are then hash probes). Each resolver thread owns its
 *      struct __res_state (res_ninit), so no lookup waits for another.
 *
 * Results are written into the item, so the report comes out in the
 * order of the tables whatever the threads did.
 */
#include "cmd/check.h"

#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/file.h"
#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/align.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "conf/route.h"
#include "dkim/keyrec.h"
#include "dkim/sigfmt.h"

#define EX_PROBLEM 1
#define EX_NOINPUT_ 66
#define EX_IOERR_ 74
#define EX_TEMPFAIL_ 75
#define EX_CONFIG_ 78

#define CHUNK 64		/* items a dns-file thread takes at a time */
#define ANSWER_MAX 65536	/* a DNS answer, TCP-sized */

/* Verdicts, in order of precedence (the first that applies wins). */
enum verdict {
	V_KEYERROR, V_SKIPPED, V_TEMPERROR, V_MISSING, V_SYNTAX, V_REVOKED,
	V_MISMATCH, V_WEAK, V_TESTING, V_OK, V_N
};

static const char *const vname[V_N] = {
	"keyerror", "skipped", "temperror", "missing", "syntax", "revoked",
	"mismatch", "weak", "testing", "ok",
};

/* The order of the summary line. */
static const enum verdict summary_order[V_N] = {
	V_OK, V_MISSING, V_MISMATCH, V_REVOKED, V_TESTING, V_WEAK, V_SYNTAX,
	V_TEMPERROR, V_KEYERROR, V_SKIPPED,
};

/* One distinct key file: its public half once loaded. */
struct keyfile {
	const char *path;		/* borrowed from the item that named it */
	int loaded;			/* 1 ok, 0 failed (why says why) */
	enum dkp_alg alg;
	int bits;
	unsigned char *pub;		/* SPKI DER (RSA) or raw 32 bytes */
	size_t publen;
	char why[340];
};

struct item {
	char *name;			/* "esp_key", the KeyTable name, NAME/% */
	char *domain, *selector, *path;	/* owned */
	struct keyfile *kf;
	enum verdict v;
	char reason[480];
};

struct check {
	const struct dkp_cli *cli;
	struct dkp_config *cfg;
	struct dkp_route *route;
	struct dkp_psl *psl;		/* for "%org" entries */
	struct dkp_streams *streams;	/* esp_stream_table, NULL: none */
	struct dkp_dnsfile *df;
	struct item *items;
	size_t n, cap;
	struct keyfile *kfs;
	size_t nkf;
	atomic_size_t next;		/* work sharing between threads */
	size_t chunk;			/* items taken at a time */
};

/* ------------------------------------------------------------ collect */

static void add_item(struct check *k, const char *name, const char *domain,
		     const char *selector, const char *path)
{
	struct item *it;

	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 256;
		k->items = dkp_realloc(k->items, k->cap * sizeof(*k->items));
	}
	it = &k->items[k->n++];
	memset(it, 0, sizeof(*it));
	it->name = dkp_strdup(name);
	it->domain = dkp_strdup(domain);
	it->selector = dkp_strdup(selector);
	it->path = dkp_strdup(path);
}

/*
 * The concrete domain a SigningTable key stands for, or NULL: "local@d"
 * and "d" give d; ".parent" (subdomains) and a refile pattern with '*' in
 * its domain part give none. Points into key.
 */
static const char *concrete_domain(char *key, int refile)
{
	char *at = strrchr(key, '@');
	const char *d = at ? at + 1 : key;

	if (*d == '.' || (refile && strchr(d, '*')) ||
	    !dkp_sigfmt_domain_ok(d, strlen(d)))
		return NULL;
	return d;
}

/*
 * The d= a '%' or "%org" entry e signs with for SigningTable key (into
 * buf), or NULL. "%org": a parent (".shop.example") or a refile pattern
 * "*@*.shop.example" stands for subdomains, which all share the parent's
 * organizational domain (XXX: not under a PSL wildcard rule such as
 * *.ck, where each label below is its own).
 */
static const char *entry_domain(const struct check *k, const struct dkp_keyent *e,
				char *key, int refile, char *buf, size_t cap)
{
	char *at = strrchr(key, '@'), *d = at ? at + 1 : key;

	if (strcmp(e->domain, "%") == 0)
		return concrete_domain(key, refile);
	if (refile && strncmp(d, "*.", 2) == 0)
		d += 2;
	else if (*d == '.')
		d++;
	if (refile && strchr(d, '*'))
		return NULL;
	return dkp_align_key_domain(k->psl, "%org", d, buf, cap);
}

/*
 * '%' and "%org" entries: one item per concrete domain the SigningTable routes to
 * the entry (each domain once per entry), or one "skipped" item. The
 * SigningTable is read again here, as route.c reads it (route.c keeps no
 * list of its lines); route.c has already refused a malformed one.
 */
static void expand_from_domain(struct check *k,
			       const struct dkp_keyent *const *pct, size_t npct)
{
	const char *spec = k->cfg->signing_table;
	int refile = strncmp(spec, "refile:", 7) == 0;
	const char *path = refile ? spec + 7 : spec;
	struct dkp_htab *byname = dkp_htab_new(npct), *seen = dkp_htab_new(64);
	size_t *found = dkp_calloc(npct, sizeof(*found)), i, cap = 0;
	char *line = NULL, *key, *kname, name[600], pair[600], org[256];
	FILE *f = dkp_fopen_regular(path);

	for (i = 0; i < npct; i++)
		dkp_htab_put(byname, pct[i]->name, strlen(pct[i]->name),
			     (void *)(uintptr_t)(i + 1));
	while (f && getline(&line, &cap, f) >= 0) {
		const char *d;
		uintptr_t idx;
		char *p, *tok, *save = NULL;

		if (dkp_route_two_fields(line, &key, &kname) != 1)
			continue;
		for (p = key; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		for (p = kname; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		/* a value may list several keys ("k1,k2") */
		for (tok = strtok_r(kname, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			idx = (uintptr_t)dkp_htab_get(byname, tok, strlen(tok));
			if (idx == 0 || (d = entry_domain(k, pct[idx - 1], key, refile, org,
							       sizeof(org))) == NULL)
				continue;
			snprintf(pair, sizeof(pair), "%s %s", tok, d);
			if (dkp_htab_get(seen, pair, strlen(pair)))
				continue;
			dkp_htab_put(seen, pair, strlen(pair), (void *)1);
			snprintf(name, sizeof(name), "%s/%s", pct[idx - 1]->name,
				 pct[idx - 1]->domain);
			add_item(k, name, d, pct[idx - 1]->selector, pct[idx - 1]->path);
			found[idx - 1]++;
		}
	}
	if (f)
		fclose(f);
	dkp_free(line);
	for (i = 0; i < npct; i++) {
		struct item *it;

		if (found[i])
			continue;
		snprintf(name, sizeof(name), "%s/%s", pct[i]->name, pct[i]->domain);
		add_item(k, name, pct[i]->domain, pct[i]->selector, pct[i]->path);
		it = &k->items[k->n - 1];
		it->v = V_SKIPPED;
		snprintf(it->reason, sizeof(it->reason), "%s",
			 strcmp(pct[i]->domain, "%") == 0 ?
			 "d=% (the From domain) and the SigningTable routes no concrete domain to it (only parents or wildcards): check those domains with explicit KeyTable entries" :
			 "d=%org (the From domain's organizational domain) and the SigningTable routes no domain with one to it: check those domains with explicit KeyTable entries");
	}
	dkp_free(found);
	dkp_htab_free(byname, NULL);
	dkp_htab_free(seen, NULL);
}

static void collect(struct check *k)
{
	const struct dkp_keyent **pct = NULL;
	size_t i, npct = 0;

	char name[64];
	size_t j;

	for (i = 0; i < k->cfg->nesp; i++) {	/* every esp_key line */
		snprintf(name, sizeof(name), i ? "esp_key#%zu" : "esp_key", i + 1);
		add_item(k, name, k->cfg->esp[i].domain, k->cfg->esp[i].selector,
			 k->cfg->esp[i].keyfile);
	}
	for (i = 0; i < dkp_streams_count(k->streams); i++) {
		const struct dkp_stream_ent *e = dkp_streams_at(k->streams, i);

		for (j = 0; j < e->nkeys; j++) {
			snprintf(name, sizeof(name), "esp_stream %.40s", e->value);
			add_item(k, name, e->keys[j].domain, e->keys[j].selector,
				 e->keys[j].keyfile);
		}
	}
	if (k->route == NULL)
		return;
	for (i = 0; i < dkp_route_nkeys(k->route); i++) {
		const struct dkp_keyent *e = dkp_route_key(k->route, i);

		if (strcmp(e->domain, "%") == 0 || strcmp(e->domain, "%org") == 0) {
			pct = dkp_realloc(pct, (npct + 1) * sizeof(*pct));
			pct[npct++] = e;
			continue;
		}
		add_item(k, e->name, e->domain, e->selector, e->path);
	}
	if (npct)
		expand_from_domain(k, pct, npct);
	dkp_free(pct);
}

/* ---------------------------------------------------------- load keys */

static void load_one(struct keyfile *kf, unsigned flags)
{
	struct dkp_key *key = NULL;
	struct dkp_buf b64, der;
	struct dkp_err err;

	dkp_err_clear(&err);
	if (dkp_key_load(&key, kf->path, flags, &err) != DKP_OK) {
		snprintf(kf->why, sizeof(kf->why), "%s", err.msg);
		return;
	}
	kf->alg = dkp_key_alg(key);
	kf->bits = dkp_key_bits(key);
	dkp_buf_init(&b64);
	dkp_buf_init(&der);
	if (dkp_key_public_b64(key, &b64, &err) != DKP_OK ||
	    dkp_b64_decode(b64.p, b64.len, &der) < 0) {
		snprintf(kf->why, sizeof(kf->why), "%s: cannot derive the public key",
			 kf->path);
	} else {
		kf->pub = dkp_malloc(der.len ? der.len : 1);
		memcpy(kf->pub, der.p, der.len);
		kf->publen = der.len;
		kf->loaded = 1;
	}
	dkp_key_unref(key);	/* the private key: freed (and cleared) now */
	dkp_buf_free(&b64);
	dkp_buf_free(&der);
}

struct loader {
	struct check *k;
	unsigned flags;
};

static void *load_thread(void *arg)
{
	struct loader *l = arg;
	size_t i;

	while ((i = atomic_fetch_add(&l->k->next, 1)) < l->k->nkf)
		load_one(&l->k->kfs[i], l->flags);
	ERR_clear_error();
	return NULL;
}

static unsigned ncores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

/* Run fn on nthreads threads (the calling one among them). */
static void run_threads(unsigned nthreads, void *(*fn)(void *), void *arg)
{
	pthread_t *t = dkp_calloc(nthreads, sizeof(*t));
	unsigned i, started = 0;

	/* a thread that cannot start leaves its share to the others */
	for (i = 1; i < nthreads; i++) {
		pthread_attr_t a;

		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 256 * 1024);
		if (pthread_create(&t[started], &a, fn, arg) == 0)
			started++;
		pthread_attr_destroy(&a);
	}
	fn(arg);
	for (i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	dkp_free(t);
}

/* Each distinct key file once, in parallel. */
static void load_keys(struct check *k)
{
	struct dkp_htab *byp = dkp_htab_new(k->n);
	struct loader l = { k, k->cfg->insecure_key_perms ? DKP_KEY_INSECURE_PERMS : 0 };
	unsigned nt;
	size_t i;

	k->kfs = dkp_calloc(k->n, sizeof(*k->kfs));
	for (i = 0; i < k->n; i++) {
		struct item *it = &k->items[i];
		struct keyfile *kf = dkp_htab_get(byp, it->path, strlen(it->path));

		if (kf == NULL) {
			kf = &k->kfs[k->nkf++];
			kf->path = it->path;
			dkp_htab_put(byp, it->path, strlen(it->path), kf);
		}
		it->kf = kf;
	}
	dkp_htab_free(byp, NULL);
	nt = ncores();
	if (nt > k->cli->concurrency)
		nt = k->cli->concurrency;
	if (nt > k->nkf)
		nt = (unsigned)k->nkf;
	atomic_store(&k->next, 0);
	run_threads(nt ? nt : 1, load_thread, &l);
}

/* -------------------------------------------------------------- lookup */

/* What a lookup found: the record text, none, or a temporary failure. */
enum found { F_RECORD, F_NONE, F_TEMP, F_MANY };

struct looker {
	struct check *k;
};

/* Per-thread resolver state. */
struct resolver {
	struct __res_state st;
	int ready;
	unsigned char *ans;
};

static enum found dns_lookup(struct resolver *r, unsigned timeout,
			     const char *qname, struct dkp_buf *txt, char *why,
			     size_t whysz)
{
	ns_msg msg;
	ns_rr rr;
	int len, i, count, ntxt = 0;

	if (!r->ready) {
		memset(&r->st, 0, sizeof(r->st));
		if (res_ninit(&r->st) != 0) {
			snprintf(why, whysz, "cannot initialise the resolver");
			return F_TEMP;
		}
		r->st.retrans = (int)timeout;
		r->st.retry = 2;
		r->ans = dkp_malloc(ANSWER_MAX);
		r->ready = 1;
	}
	len = res_nquery(&r->st, qname, ns_c_in, ns_t_txt, r->ans, ANSWER_MAX);
	if (len < 0) {
		int h = r->st.res_h_errno;

		if (h == HOST_NOT_FOUND)
			return snprintf(why, whysz, "NXDOMAIN"), F_NONE;
		if (h == NO_DATA)
			return snprintf(why, whysz, "no TXT record"), F_NONE;
		snprintf(why, whysz, "DNS lookup failed: %s",
			 h == TRY_AGAIN ? "timeout or SERVFAIL" : hstrerror(h));
		return F_TEMP;
	}
	if (len > ANSWER_MAX || ns_initparse(r->ans, len, &msg) < 0) {
		snprintf(why, whysz, "unparsable DNS answer");
		return F_TEMP;
	}
	count = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < count; i++) {
		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 ||
		    ns_rr_type(rr) != ns_t_txt)
			continue;
		if (ntxt++)
			continue;	/* counted: several records are an error */
		dkp_txt_rdata(ns_rr_rdata(rr), ns_rr_rdlen(rr), txt);
	}
	if (ntxt == 0)
		return snprintf(why, whysz, "no TXT record"), F_NONE;
	if (ntxt > 1)
		return snprintf(why, whysz, "%d TXT records at the name (a receiver may use any one)",
				ntxt), F_MANY;
	if (txt->p == NULL)
		dkp_buf_adds(txt, "");
	return F_RECORD;
}

static enum found file_lookup(const struct dkp_dnsfile *df, const char *qname,
			      struct dkp_buf *txt, char *why, size_t whysz)
{
	struct dkp_err err;

	dkp_err_clear(&err);
	switch (dkp_dnsfile_fetch((void *)df, qname, txt, &err)) {
	case DKP_OK:
		if (txt->p == NULL)
			dkp_buf_adds(txt, "");
		return F_RECORD;
	case DKP_E_NOKEY:
		return snprintf(why, whysz, "no TXT record in the dns-file"), F_NONE;
	default:
		snprintf(why, whysz, "%s", err.msg);
		return F_TEMP;
	}
}

/* ---------------------------------------------------------------- judge */

static int tag_is(const char *base, const struct dkp_tag *t, const char *s)
{
	return t && t->vlen == strlen(s) &&
	       strncasecmp(base + t->voff, s, t->vlen) == 0;
}

/* Does the colon-separated list (FWS allowed) hold word? */
static int list_has(const char *s, size_t n, const char *word)
{
	size_t i = 0, wl = strlen(word);

	while (i <= n) {
		size_t b = i, e;

		while (i < n && s[i] != ':')
			i++;
		e = i++;
		while (b < e && strchr(" \t\r\n", s[b]))
			b++;
		while (e > b && strchr(" \t\r\n", s[e - 1]))
			e--;
		if (e - b == wl && strncasecmp(s + b, word, wl) == 0)
			return 1;
	}
	return 0;
}

static enum verdict set(struct item *it, enum verdict v, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum verdict set(struct item *it, enum verdict v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->reason, sizeof(it->reason), fmt, ap);
	va_end(ap);
	return it->v = v;
}

/* Is the record's p= (decoded in der) the public half of kf? */
static int same_key(const struct keyfile *kf, const struct dkp_buf *der,
		    int *usable)
{
	const unsigned char *p;
	EVP_PKEY *rec, *ours;
	int eq;

	*usable = 1;
	if (der->len == kf->publen && memcmp(der->p, kf->pub, der->len) == 0)
		return 1;
	if (kf->alg == DKP_ALG_ED25519_SHA256) {
		*usable = der->len == 32;
		return 0;
	}
	/* another encoding of the same RSA key: a bare RSAPublicKey */
	p = (const unsigned char *)der->p;
	rec = d2i_PUBKEY(NULL, &p, (long)der->len);
	if (rec == NULL) {
		p = (const unsigned char *)der->p;
		rec = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)der->len);
	}
	if (rec == NULL || !EVP_PKEY_is_a(rec, "RSA")) {
		EVP_PKEY_free(rec);
		ERR_clear_error();
		*usable = 0;
		return 0;
	}
	p = kf->pub;
	ours = d2i_PUBKEY(NULL, &p, (long)kf->publen);
	eq = ours && EVP_PKEY_eq(rec, ours) == 1;
	EVP_PKEY_free(rec);
	EVP_PKEY_free(ours);
	ERR_clear_error();
	return eq;
}

/* The verdict for one item whose record text is in rec/len. */
static void judge(struct item *it, const char *rec, size_t len,
		  struct dkp_buf *der)
{
	const struct keyfile *kf = it->kf;
	const struct dkp_tag *tv, *tk, *tp, *th, *ts, *tt;
	struct dkp_taglist tl;
	struct dkp_err e;
	int usable;
	const char *want = kf->alg == DKP_ALG_RSA_SHA256 ? "rsa" : "ed25519";

	dkp_err_clear(&e);
	if (dkp_taglist_parse(rec, len, &tl, &e) != DKP_OK) {
		set(it, V_SYNTAX, "the record is not a tag list: %s", e.msg);
		return;
	}
	tv = dkp_taglist_get(&tl, "v");
	tk = dkp_taglist_get(&tl, "k");
	tp = dkp_taglist_get(&tl, "p");
	th = dkp_taglist_get(&tl, "h");
	ts = dkp_taglist_get(&tl, "s");
	tt = dkp_taglist_get(&tl, "t");
	if (tv && (!tag_is(rec, tv, "DKIM1") || tv != &tl.tags[0])) {
		set(it, V_SYNTAX, "v= is not DKIM1 or not the first tag");
		return;
	}
	if (tp == NULL) {
		set(it, V_SYNTAX, "the record has no p=");
		return;
	}
	if (tk && !tag_is(rec, tk, "rsa") && !tag_is(rec, tk, "ed25519")) {
		set(it, V_SYNTAX, "unknown key type k=");
		return;
	}
	if (tp->vlen == 0) {
		set(it, V_REVOKED, "p= is empty: the key is revoked; mail signed with it fails");
		return;
	}
	if (dkp_b64_decode(rec + tp->voff, tp->vlen, der) < 0) {
		set(it, V_SYNTAX, "p= is not base64");
		return;
	}
	if (!(tk ? tag_is(rec, tk, want) : kf->alg == DKP_ALG_RSA_SHA256)) {
		set(it, V_MISMATCH, "the record is for k=%s, the key is %s",
		    tk ? (tag_is(rec, tk, "rsa") ? "rsa" : "ed25519") : "rsa",
		    want);
		return;
	}
	if (!same_key(kf, der, &usable)) {
		if (!usable)
			set(it, V_SYNTAX, "p= is not a usable %s public key", want);
		else
			set(it, V_MISMATCH, "the record holds another key than %s: mail signed with this key fails at every receiver",
			    it->path);
		return;
	}
	if (th && !list_has(rec + th->voff, th->vlen, "sha256")) {
		set(it, V_MISMATCH, "h= does not allow sha256");
		return;
	}
	if (ts && !list_has(rec + ts->voff, ts->vlen, "*") &&
	    !list_has(rec + ts->voff, ts->vlen, "email")) {
		set(it, V_MISMATCH, "s= does not allow email");
		return;
	}
	if (kf->alg == DKP_ALG_RSA_SHA256 && kf->bits < DKP_RSA_WARN_BITS) {
		set(it, V_WEAK, "the record matches; RSA key of %d bits, %d or more recommended (RFC 8301)",
		    kf->bits, DKP_RSA_WARN_BITS);
		return;
	}
	if (tt && list_has(rec + tt->voff, tt->vlen, "y")) {
		set(it, V_TESTING, "the record matches but says t=y (testing): receivers may ignore failures");
		return;
	}
	set(it, V_OK, "%s-%d", want, kf->alg == DKP_ALG_RSA_SHA256 ? kf->bits : 256);
}

static void check_item(struct check *k, struct item *it, struct resolver *r,
		       struct dkp_buf *txt, struct dkp_buf *der)
{
	char qname[600], why[340];
	enum found f;

	if (it->v == V_SKIPPED)
		return;
	if (!it->kf->loaded) {
		set(it, V_KEYERROR, "%s", it->kf->why);
		return;
	}
	snprintf(qname, sizeof(qname), "%s._domainkey.%s", it->selector, it->domain);
	why[0] = '\0';
	f = k->df ? file_lookup(k->df, qname, txt, why, sizeof(why))
		  : dns_lookup(r, k->cli->dns_timeout, qname, txt, why, sizeof(why));
	switch (f) {
	case F_TEMP:
		set(it, V_TEMPERROR, "%s; try again", why);
		return;
	case F_NONE:
		set(it, V_MISSING, "%s: publish the record and wait for check to say ok; do not switch the KeyTable to this key yet",
		    why);
		return;
	case F_MANY:
		set(it, V_SYNTAX, "%s", why);
		return;
	case F_RECORD:
		break;
	}
	judge(it, txt->p, txt->len, der);
}

static void *lookup_thread(void *arg)
{
	struct looker *l = arg;
	struct check *k = l->k;
	struct resolver r;
	struct dkp_buf txt, der;
	size_t i, end;

	r.ready = 0;
	r.ans = NULL;
	dkp_buf_init(&txt);
	dkp_buf_init(&der);
	while ((i = atomic_fetch_add(&k->next, k->chunk)) < k->n) {
		end = i + k->chunk < k->n ? i + k->chunk : k->n;
		for (; i < end; i++)
			check_item(k, &k->items[i], &r, &txt, &der);
	}
	if (r.ready) {
		res_nclose(&r.st);
		dkp_free(r.ans);
	}
	dkp_buf_free(&txt);
	dkp_buf_free(&der);
	ERR_clear_error();
	return NULL;
}

static void lookup_all(struct check *k)
{
	struct looker l = { k };
	unsigned nt = k->cli->concurrency;
	size_t chunks;

	/* a dns-file lookup is a hash probe: one thread per core is enough;
	 * a resolver lookup waits on the network: --concurrency threads,
	 * each taking one item at a time so the waits spread evenly */
	if (k->df && nt > ncores())
		nt = ncores();
	k->chunk = k->df ? CHUNK : 1;
	chunks = (k->n + k->chunk - 1) / k->chunk;
	if (nt > chunks)
		nt = (unsigned)chunks;
	atomic_store(&k->next, 0);
	run_threads(nt ? nt : 1, lookup_thread, &l);
}

/* --------------------------------------------------------------- report */

/* A JSON string: ", \ and control bytes escaped; bytes >= 0x80 as
 * \u00XX (names come from files and may be anything). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Printable text for a line: non-printable bytes as \xHH. */
static const char *esc(const char *s, char *buf, size_t sz)
{
	return dkp_sigfmt_escape(s, strlen(s), buf, sz);
}

static void report(struct check *k, const size_t *cnt, double secs)
{
	FILE *f = stdout;
	size_t i;
	int j;

	if (k->cli->check_json) {
		fputs("{\"keys\":[", f);
		for (i = 0; i < k->n; i++) {
			const struct item *it = &k->items[i];

			fputs(i ? ",\n{" : "\n{", f);
			fputs("\"name\":", f);
			json_str(f, it->name);
			fputs(",\"domain\":", f);
			json_str(f, it->domain);
			fputs(",\"selector\":", f);
			json_str(f, it->selector);
			fputs(",\"key_file\":", f);
			json_str(f, it->path);
			fprintf(f, ",\"result\":\"%s\",\"reason\":", vname[it->v]);
			json_str(f, it->reason);
			fputc('}', f);
		}
		fprintf(f, "\n],\"summary\":{\"keys\":%zu", k->n);
		for (j = 0; j < V_N; j++)
			fprintf(f, ",\"%s\":%zu", vname[summary_order[j]],
				cnt[summary_order[j]]);
		fprintf(f, "},\"seconds\":%.3f,\"source\":\"%s\"}\n", secs,
			k->df ? "dns-file" : "resolver");
		return;
	}
	for (i = 0; i < k->n; i++) {
		const struct item *it = &k->items[i];
		char b1[300], b2[300], b3[300];

		fprintf(f, "%-9s %s %s._domainkey.%s: %s\n", vname[it->v],
			esc(it->name, b1, sizeof(b1)),
			esc(it->selector, b2, sizeof(b2)),
			esc(it->domain, b3, sizeof(b3)), it->reason);
	}
	fprintf(f, "%zu keys:", k->n);
	for (j = 0; j < V_N; j++)
		fprintf(f, "%s %zu %s", j ? "," : "", cnt[summary_order[j]],
			vname[summary_order[j]]);
	fprintf(f, " (%.2f s, %s)\n", secs, k->df ? "dns-file" : "resolver");
}

static void check_free(struct check *k)
{
	size_t i;

	for (i = 0; i < k->n; i++) {
		dkp_free(k->items[i].name);
		dkp_free(k->items[i].domain);
		dkp_free(k->items[i].selector);
		dkp_free(k->items[i].path);
	}
	for (i = 0; i < k->nkf; i++)
		dkp_free(k->kfs[i].pub);
	dkp_free(k->items);
	dkp_free(k->kfs);
	dkp_dnsfile_free(k->df);
	dkp_route_free(k->route);
	dkp_psl_free(k->psl);
	dkp_streams_free(k->streams);
	dkp_config_free(k->cfg);
}

int dkp_check_run(const struct dkp_cli *c)
{
	struct check k;
	struct dkp_err err;
	size_t cnt[V_N] = { 0 }, i, problems, temps;
	double t0 = dkp_mono_now();
	int rc;

	memset(&k, 0, sizeof(k));
	k.cli = c;
	dkp_err_clear(&err);
	if (dkp_config_load(&k.cfg, c->conf, NULL, 0, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		rc = err.code == DKP_E_IO && err.sys_errno == ENOENT ? EX_NOINPUT_
								     : EX_CONFIG_;
		goto done;
	}
	if (k.cfg->key_table &&
	    dkp_route_load(&k.route, k.cfg->key_table, k.cfg->signing_table,
			   &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		rc = EX_CONFIG_;
		goto done;
	}
	if (k.route && dkp_psl_load(&k.psl, k.cfg->align.psl_file, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		rc = EX_CONFIG_;
		goto done;
	}
	if (k.cfg->esp_stream_table &&
	    dkp_streams_load(&k.streams, k.cfg->esp_stream_table, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		rc = EX_CONFIG_;
		goto done;
	}
	if (c->dns_file && dkp_dnsfile_load(&k.df, c->dns_file, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		rc = err.code == DKP_E_IO ? EX_NOINPUT_ : EX_CONFIG_;
		goto done;
	}
	collect(&k);
	load_keys(&k);
	lookup_all(&k);
	for (i = 0; i < k.n; i++)
		cnt[k.items[i].v]++;
	report(&k, cnt, dkp_mono_now() - t0);
	problems = k.n - cnt[V_OK] - cnt[V_SKIPPED];
	temps = cnt[V_TEMPERROR];
	rc = problems == 0 ? 0 : problems == temps ? EX_TEMPFAIL_ : EX_PROBLEM;
	if (cnt[V_MISSING])
		dkp_warn("%zu key%s not published in DNS yet: do not let the KeyTable sign with %s before check says ok",
			 cnt[V_MISSING], cnt[V_MISSING] == 1 ? " is" : "s are",
			 cnt[V_MISSING] == 1 ? "it" : "them");
	if (fflush(stdout) != 0 || ferror(stdout))
		rc = EX_IOERR_;
done:
	check_free(&k);
	return rc;
}
