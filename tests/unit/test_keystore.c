/* test_keystore.c — loading private keys: formats, permissions, refusals,
 * and that key material never reaches an error message. */
#include "unit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static char dir[] = "/tmp/dkp_ks_XXXXXX";

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* Write pem bytes to dir/name with mode; returns the path in out. */
static void put(const char *name, const void *p, size_t len, mode_t mode,
		char *out, size_t n)
{
	int fd;

	path_of(out, n, name);
	unlink(out);
	fd = open(out, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
	assert_int_equal(chmod(out, mode), 0);
}

/* PEM text of pk in the given form. */
static void pem_of(EVP_PKEY *pk, int traditional, struct dkp_buf *out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	assert_true(traditional ? PEM_write_bio_PrivateKey_traditional(b, pk, NULL, NULL, 0, NULL, NULL)
				: PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL));
	n = BIO_get_mem_data(b, &p);
	dkp_buf_add(out, p, (size_t)n);
	BIO_free(b);
}

static int setup(void **st)
{
	(void)st;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[64];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void load_ok(const char *path, unsigned flags, enum dkp_alg alg, int bits)
{
	struct dkp_key *k = NULL;
	struct dkp_err err;

	if (dkp_key_load(&k, path, flags, &err) != DKP_OK)
		fail_msg("%s: %s", path, err.msg);
	assert_int_equal(dkp_key_alg(k), alg);
	assert_int_equal(dkp_key_bits(k), bits);
	dkp_key_unref(k);
}

static void rsa_pkcs8_pkcs1_and_ed25519_load(void **st)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *r1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	struct dkp_buf pem;
	char path[128];

	(void)st;
	dkp_buf_init(&pem);
	pem_of(rsa, 0, &pem);
	assert_non_null(strstr(pem.p, "BEGIN PRIVATE KEY"));	/* PKCS#8 */
	put("rsa8.pem", pem.p, pem.len, 0600, path, sizeof(path));
	load_ok(path, 0, DKP_ALG_RSA_SHA256, 2048);
	dkp_buf_reset(&pem);
	pem_of(rsa, 1, &pem);
	assert_non_null(strstr(pem.p, "BEGIN RSA PRIVATE KEY"));	/* PKCS#1 */
	put("rsa1.pem", pem.p, pem.len, 0400, path, sizeof(path));
	load_ok(path, 0, DKP_ALG_RSA_SHA256, 2048);
	dkp_buf_reset(&pem);
	pem_of(r1024, 0, &pem);
	put("rsa1024.pem", pem.p, pem.len, 0600, path, sizeof(path));
	load_ok(path, 0, DKP_ALG_RSA_SHA256, 1024);	/* allowed; the CLI warns */
	dkp_buf_reset(&pem);
	pem_of(ed, 0, &pem);
	put("ed.pem", pem.p, pem.len, 0600, path, sizeof(path));
	load_ok(path, 0, DKP_ALG_ED25519_SHA256, 256);
	dkp_buf_free(&pem);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(r1024);
	EVP_PKEY_free(ed);
}

static void public_record_values(void **st)
{
	struct dkp_buf pem, rec, p;
	struct dkp_key *k;
	struct dkp_err err;
	unsigned char raw[33];
	const unsigned char *der;
	EVP_PKEY *pub;
	int alg;

	(void)st;
	for (alg = 0; alg < 2; alg++) {
		dkp_buf_init(&pem);
		dkp_buf_init(&rec);
		dkp_buf_init(&p);
		assert_int_equal(dkp_keygen(alg, 2048, &pem, &rec, &err), DKP_OK);
		assert_int_equal(dkp_key_from_pem(&k, pem.p, pem.len, "gen", &err), DKP_OK);
		assert_int_equal(dkp_key_public_b64(k, &p, &err), DKP_OK);
		if (alg == DKP_ALG_RSA_SHA256) {
			assert_true(strncmp(rec.p, "v=DKIM1; k=rsa; p=", 18) == 0);
			/* p= is a DER SubjectPublicKeyInfo of this key */
			dkp_buf_reset(&pem);
			dkp_buf_reserve(&pem, p.len);
			pem.len = (size_t)EVP_DecodeBlock((unsigned char *)pem.p,
							  (unsigned char *)p.p, (int)p.len);
			der = (const unsigned char *)pem.p;
			pub = d2i_PUBKEY(NULL, &der, (long)pem.len);
			assert_non_null(pub);
			assert_int_equal(EVP_PKEY_get_bits(pub), 2048);
			EVP_PKEY_free(pub);
		} else {
			assert_true(strncmp(rec.p, "v=DKIM1; k=ed25519; p=", 22) == 0);
			assert_int_equal(p.len, 44);	/* RFC 8463: 32 raw bytes */
			assert_int_equal(EVP_DecodeBlock(raw, (unsigned char *)p.p, 44), 33);
		}
		assert_non_null(strstr(rec.p, p.p));
		dkp_key_unref(k);
		dkp_buf_wipe(&pem);
		dkp_buf_free(&pem);
		dkp_buf_free(&rec);
		dkp_buf_free(&p);
	}
	assert_int_equal(dkp_keygen(DKP_ALG_RSA_SHA256, 512, &pem, &rec, &err), DKP_E_USAGE);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
}

/* Each refusal: the file, the status, words the message must hold. */
static void refusals(void **st)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct dkp_buf pem, enc;
	struct dkp_key *k = NULL;
	struct dkp_err err;
	char path[128], half[128], body[64];
	BIO *b;
	char *p;
	long n;

	(void)st;
	dkp_buf_init(&pem);
	dkp_buf_init(&enc);
	pem_of(rsa, 0, &pem);
	/* group- or world-readable: refused, exit 78, file named */
	put("open.pem", pem.p, pem.len, 0644, path, sizeof(path));
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "0644"));
	assert_int_equal(dkp_err_exit_code(&err), 78);
	assert_null(k);
	chmod(path, 0640);
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	/* ... unless the caller says so */
	load_ok(path, DKP_KEY_INSECURE_PERMS, DKP_ALG_RSA_SHA256, 2048);
	/* missing, a directory */
	path_of(path, sizeof(path), "missing.pem");
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "missing.pem"));
	assert_int_equal(dkp_key_load(&k, dir, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "not a regular file"));
	/* garbage with a secret-looking line: refused, never echoed */
	{
		static const char g[] = "-----BEGIN PRIVATE KEY-----\nSECRETMARKER123\n-----END PRIVATE KEY-----\n";

		put("garbage.pem", g, sizeof(g) - 1, 0600, path, sizeof(path));
	}
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_null(strstr(err.msg, "SECRETMARKER"));
	assert_non_null(strstr(err.msg, "not a PEM RSA or Ed25519 private key"));
	/* a real key cut in half: refused, no 20-character run of it shown */
	put("half.pem", pem.p, pem.len / 2, 0600, half, sizeof(half));
	assert_int_equal(dkp_key_load(&k, half, 0, &err), DKP_E_KEY);
	memcpy(body, pem.p + 40, 20);
	body[20] = '\0';
	assert_null(strstr(err.msg, body));
	/* RSA under 1024 bits (RFC 8301), other key types */
	dkp_buf_reset(&pem);
	pem_of(weak, 0, &pem);
	put("weak.pem", pem.p, pem.len, 0600, path, sizeof(path));
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "512 bits"));
	dkp_buf_reset(&pem);
	pem_of(ec, 0, &pem);
	put("ec.pem", pem.p, pem.len, 0600, path, sizeof(path));
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "unsupported key type"));
	/* encrypted: refused without a prompt (stdin may be a terminal) */
	b = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio_PKCS8PrivateKey(b, rsa, EVP_aes_256_cbc(), NULL, 0,
						  NULL, (void *)"passphrase"));
	n = BIO_get_mem_data(b, &p);
	put("enc.pem", p, (size_t)n, 0600, path, sizeof(path));
	BIO_free(b);
	assert_int_equal(dkp_key_load(&k, path, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "encrypted"));
	dkp_buf_free(&pem);
	dkp_buf_free(&enc);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(ec);
}

static void references_count(void **st)
{
	struct dkp_buf pem, rec;
	struct dkp_key *k;
	struct dkp_err err;

	(void)st;
	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	assert_int_equal(dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err), DKP_OK);
	assert_int_equal(dkp_key_from_pem(&k, pem.p, pem.len, "mem", &err), DKP_OK);
	dkp_key_ref(k);
	dkp_key_unref(k);
	assert_int_equal(dkp_key_alg(k), DKP_ALG_ED25519_SHA256);	/* still alive */
	dkp_key_unref(k);	/* freed; ASan checks */
	dkp_key_unref(NULL);
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rsa_pkcs8_pkcs1_and_ed25519_load),
		cmocka_unit_test(public_record_values),
		cmocka_unit_test(refusals),
		cmocka_unit_test(references_count),
	};

	UNIT_RUN_WITH("test_keystore", tests, setup, teardown);
}
