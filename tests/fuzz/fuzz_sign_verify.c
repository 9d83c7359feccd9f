/*
 * fuzz_sign_verify.c — every message we sign must verify with our own
 * verifier.
 *
 * Input: two option bytes, then a queued file (envelope lines allowed).
 * The path is the engine's (src/engine/job.c sign_one) and the CLI's:
 * dkp_envelope_split, dkp_msg_parse, dkp_msg_from_address, dkp_sign with
 * a customer signature on top of an ESP one; then the output (envelope,
 * signatures, message) goes through `verify`'s path: dkp_envelope_split,
 * dkp_msg_parse, dkp_verify with the keys' records served offline.
 *
 * A message that parse or sign refuses is skipped. A signed message whose
 * output does not parse, or any of whose new signatures does not pass, is
 * a crash.
 *
 * Option byte 0:
 *   bit 0  header canonicalization relaxed (else simple)
 *   bit 1  body canonicalization relaxed (else simple)
 *   bit 2  customer key Ed25519 (else RSA-1024); the ESP key is the other
 *   bit 3  explicit h= (From, then each field name of the message, as
 *          --headers or `headers =` would give them) instead of the default
 *   bit 4  x= (t= + 1 day)
 *   bit 5  i= (the From address's domain, with the local part if bit 1 of
 *          byte 1 is set)
 *   bit 6  customer d= is the From domain (KeyTable "%"); else fixed
 *   bit 7  customer signature only (else customer + ESP)
 * Option byte 1:
 *   bits 2-3 the customer selector: short, dotted, 63 bytes, or a long
 *            multi-label one (valid DNS: the name stays under 253 bytes)
 *   bit 1  i= has the From local part
 */
#include <ctype.h>

#include "fuzz.h"

#include "dkim/envelope.h"

#define FUZZ_T 1700000000

static struct dkp_key *rsa, *ed;
static char rec_rsa[1024], rec_ed[256];
static struct dkp_signer *signer;

static const char *const selectors[4] = {
	"s",
	"s2026.mail",
	"selector-63-bytes-long-0123456789abcdefghijklmnopqrstuvwxyz0123",
	/* 149 bytes, three labels; with d= the name is under 253 bytes */
	"label-one-0123456789abcdefghijklmnopqrstuvwxyz.label-two-0123456789"
	"abcdefghijklmnopqrstuvwxyz.label-three-0123456789abcdefghijklmnopqrs"
	"tuvwxyz0123456",
};

static void record(struct dkp_key *k, const char *kt, char *out, size_t outsz)
{
	struct dkp_buf p;
	struct dkp_err err;

	dkp_buf_init(&p);
	if (dkp_key_public_b64(k, &p, &err) != DKP_OK)
		FUZZ_FAIL("public key: %s", err.msg);
	snprintf(out, outsz, "v=DKIM1; k=%s; p=%s", kt, p.p);
	dkp_buf_free(&p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	rsa = fuzz_key(fuzz_rsa_pem, "rfc8463-rsa");
	ed = fuzz_key(fuzz_ed25519_pem, "rfc8463-ed25519");
	record(rsa, "rsa", rec_rsa, sizeof(rec_rsa));
	record(ed, "ed25519", rec_ed, sizeof(rec_ed));
	FUZZ_CHECK(strcmp(rec_rsa, fuzz_rec_rsa) == 0 &&
		   strcmp(rec_ed, fuzz_rec_ed) == 0,
		   "fixture records differ from RFC 8463");
	signer = dkp_signer_new();	/* one per thread, reused, as the engine */
	return 0;
}

/* Field names as the CLI's --headers accepts them (no byte <= 32, no
 * DEL; ':' cannot occur) and dkp_sign takes them (no DKIM-Signature). */
static size_t explicit_h(const struct dkp_msg *m, char names[][128],
			 const char **h, size_t max)
{
	size_t i, j, n = 0;

	h[n++] = "From";
	for (i = 0; i < m->nfields && n < max; i++) {
		const char *name = dkp_msg_field_name(m, i);
		size_t len = m->fields[i].name_len;
		int ok = len < 128;

		for (j = 0; ok && j < len; j++)
			ok = (unsigned char)name[j] > 32 && name[j] != 127;
		if (!ok || (len == 14 && strncasecmp(name, "DKIM-Signature", 14) == 0))
			continue;
		memcpy(names[n], name, len);
		names[n][len] = '\0';
		h[n] = names[n];
		n++;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char names[64][128];
	const char *h[64];
	unsigned o0, o1;
	const char *in;
	size_t n, nspec = 0, nres = 0, i, nh = 0;
	struct dkp_envelope env, env2;
	struct dkp_msg m, m2;
	struct dkp_err err;
	struct dkp_sig_spec sp[2];
	struct dkp_buf out;
	struct dkp_vresult res[8];
	struct fuzz_dns dns;
	char local[256], dom[256], cdom[256], ident[600];
	int have_from;

	if (size < 2)
		return 0;
	o0 = data[0];
	o1 = data[1];
	in = (const char *)data + 2;
	n = size - 2;

	if (dkp_envelope_split(in, n, &env, &err) != DKP_OK)
		return 0;
	dkp_msg_init(&m);
	if (dkp_msg_parse(&m, in + env.len, n - env.len, NULL, &err) != DKP_OK) {
		dkp_msg_fini(&m);
		return 0;
	}
	have_from = dkp_msg_from_address(&m, local, sizeof(local), dom,
					 sizeof(dom), &err) == DKP_OK;

	memset(sp, 0, sizeof(sp));
	if ((o0 & 0x40) && have_from)
		snprintf(cdom, sizeof(cdom), "%s", dom);	/* KeyTable "%" */
	else
		snprintf(cdom, sizeof(cdom), "customer.example");
	sp[0].domain = cdom;
	sp[0].selector = selectors[(o1 >> 2) & 3];
	sp[0].key = (o0 & 4) ? ed : rsa;
	sp[1].domain = "esp.example";
	sp[1].selector = "esp1";
	sp[1].key = (o0 & 4) ? rsa : ed;
	if (o0 & 8)
		nh = explicit_h(&m, names, h, 64);
	for (i = 0; i < 2; i++) {
		sp[i].hcanon = (o0 & 1) ? DKP_CANON_RELAXED : DKP_CANON_SIMPLE;
		sp[i].bcanon = (o0 & 2) ? DKP_CANON_RELAXED : DKP_CANON_SIMPLE;
		sp[i].headers = nh ? h : NULL;
		sp[i].nheaders = nh;
		sp[i].t = FUZZ_T;
		sp[i].x = (o0 & 0x10) ? FUZZ_T + 86400 : 0;
	}
	if ((o0 & 0x20) && have_from) {
		/* --identity AUID is given only to signatures whose d= covers
		 * it (src/cmd/main.c auid_within); the customer's here */
		snprintf(ident, sizeof(ident), "%s@%s", (o1 & 2) ? local : "",
			 sp[0].domain);
		sp[0].identity = ident;
	}
	nspec = (o0 & 0x80) ? 1 : 2;

	dkp_buf_init(&out);
	dkp_buf_add(&out, in, env.len);		/* job.c keeps them as they are */
	if (dkp_sign(signer, &m, sp, nspec, &out, &err) != DKP_OK) {
		FUZZ_CHECK(err.code != DKP_E_CRYPTO, "sign: %s", err.msg);
		goto done;	/* refused by sign: fine */
	}
	dkp_buf_add(&out, m.data, m.len);

	/* verify, as `dkimpress verify --dns-file` reads the output */
	FUZZ_CHECK(dkp_envelope_split(out.p, out.len, &env2, &err) == DKP_OK &&
		   env2.len == env.len,
		   "signed output: envelope no longer splits: %s", err.msg);
	dkp_msg_init(&m2);
	if (dkp_msg_parse(&m2, out.p + env2.len, out.len - env2.len, NULL,
			  &err) != DKP_OK)
		FUZZ_FAIL("signed output does not parse: %s\n%.*s", err.msg,
			  (int)out.len, out.p);
	memset(&dns, 0, sizeof(dns));
	for (i = 0; i < nspec; i++) {
		static char qn[2][600];

		snprintf(qn[i], sizeof(qn[i]), "%s._domainkey.%s",
			 sp[i].selector, sp[i].domain);
		dns.qname[i] = qn[i];
		dns.rec[i] = sp[i].key == rsa ? rec_rsa : rec_ed;
	}
	dns.n = nspec;
	FUZZ_CHECK(dkp_verify(&m2, fuzz_dns_fetch, &dns, FUZZ_T + 1, res, 8,
			      &nres, &err) == DKP_OK, "verify: %s", err.msg);
	FUZZ_CHECK(nres >= nspec, "%zu signatures found, %zu made", nres, nspec);
	for (i = 0; i < nspec; i++)
		if (res[i].res != DKP_V_PASS)
			FUZZ_FAIL("our signature %zu (d=%s s=%s a=%s) does not "
				  "verify: %s %s\n--- signed output ---\n%.*s",
				  i, res[i].domain, res[i].selector, res[i].alg,
				  dkp_vres_name(res[i].res), res[i].reason,
				  (int)(out.len < 4000 ? out.len : 4000), out.p);
	dkp_msg_fini(&m2);
done:
	dkp_buf_free(&out);
	dkp_msg_fini(&m);
	return 0;
}
