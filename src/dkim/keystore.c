/*
 * keystore.c — loading PEM private keys into OpenSSL 3 EVP keys.
 *
 * Keys are secrets: the file is read into a buffer that is wiped as soon
 * as OpenSSL has decoded it; messages name the file, never its content;
 * files that group or others can read are refused unless the caller says
 * otherwise; an encrypted key fails instead of prompting (there is no
 * terminal in a mail pipeline).
 */
#include "dkim/keystore.h"

#include "crypto/keymem.h"
#include "crypto/rsa8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/err.h"
#include "base/file.h"
#include "base/mem.h"

#define MAX_KEY_FILE (64 * 1024)

struct dkp_key {
	atomic_int refs;
	EVP_PKEY *pkey;
	enum dkp_alg alg;
	int bits;
	uint64_t serial;
	struct dkp_rsa8_key *r8;	/* RSA-2048 on an IFMA CPU: lane form */
	atomic_int retired;		/* dkp_key_retire */
};

static atomic_uint_fast64_t next_serial = 1;
static atomic_uint_fast64_t retire_epoch;
static atomic_long live_keys;

void dkp_key_retire(struct dkp_key *k)
{
	if (k == NULL)
		return;
	atomic_store(&k->retired, 1);
	atomic_fetch_add(&retire_epoch, 1);
	dkp_key_unref(k);
}

int dkp_key_retired(const struct dkp_key *k)
{
	return atomic_load(&((struct dkp_key *)k)->retired);
}

uint64_t dkp_key_retire_epoch(void)
{
	return atomic_load_explicit(&retire_epoch, memory_order_relaxed);
}

long dkp_key_live(void)
{
	return atomic_load(&live_keys);
}

const char *dkp_alg_name(enum dkp_alg a)
{
	return a == DKP_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

EVP_PKEY *dkp_key_pkey(const struct dkp_key *k)
{
	return k->pkey;
}

const struct dkp_rsa8_key *dkp_key_rsa8(const struct dkp_key *k)
{
	return k->r8;
}

uint64_t dkp_key_serial(const struct dkp_key *k)
{
	return k->serial;
}

enum dkp_alg dkp_key_alg(const struct dkp_key *k)
{
	return k->alg;
}

int dkp_key_bits(const struct dkp_key *k)
{
	return k->bits;
}

void dkp_key_ref(struct dkp_key *k)
{
	atomic_fetch_add(&k->refs, 1);
}

void dkp_key_unref(struct dkp_key *k)
{
	if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	dkp_rsa8_key_free(k->r8);	/* wipes its copy */
	EVP_PKEY_free(k->pkey);	/* OpenSSL clears the key material */
	dkp_free(k);
	atomic_fetch_sub(&live_keys, 1);
}

/* Whether OpenSSL's errors say its secure heap (crypto/keymem.h) ran out;
 * clears them. */
static int secure_heap_full(void)
{
	unsigned long e;
	int full = 0;

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) == ERR_LIB_CRYPTO &&
		    ERR_GET_REASON(e) == CRYPTO_R_SECURE_MALLOC_FAILURE)
			full = 1;
	return full;
}

/* Passphrase callback: refuse, so OpenSSL never reads a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(int *)u = 1;
	return -1;
}

int dkp_key_from_pem(struct dkp_key **out, const void *pem, size_t len,
		     const char *label, struct dkp_err *err)
{
	BIO *bio;
	EVP_PKEY *pk;
	int asked = 0, bits = 0;
	enum dkp_alg alg;
	struct dkp_key *k;

	*out = NULL;
	if (len > INT32_MAX)
		return dkp_err_set(err, DKP_E_KEY, 0, "key", "%s: too large",
				   label);
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		return dkp_err_ssl(err, DKP_E_CRYPTO, "key", "%s", label);
	/* the key's numbers go to OpenSSL's secure heap, its freed DER
	 * copies are wiped (crypto/keymem.h) */
	pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &asked);
	BIO_free(bio);
	if (pk == NULL) {
		if (secure_heap_full())
			return dkp_err_set(err, DKP_E_KEY, 0, "key",
					   "%s: no room left in OpenSSL's secure heap for the key (it is sized from key_cache at start; see docs/operations.md, Keys in memory)",
					   label);
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   asked ? "%s: the private key is encrypted; give an unencrypted PEM key"
					 : "%s: not a PEM RSA or Ed25519 private key",
				   label);
	}
	if (EVP_PKEY_is_a(pk, "RSA")) {
		alg = DKP_ALG_RSA_SHA256;
		bits = EVP_PKEY_get_bits(pk);
		if (bits < DKP_RSA_MIN_BITS) {
			EVP_PKEY_free(pk);
			return dkp_err_set(err, DKP_E_KEY, 0, "key",
					   "%s: RSA key of %d bits; RFC 8301 requires at least %d",
					   label, bits, DKP_RSA_MIN_BITS);
		}
	} else if (EVP_PKEY_is_a(pk, "ED25519")) {
		alg = DKP_ALG_ED25519_SHA256;
		bits = 256;
	} else {
		EVP_PKEY_free(pk);
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   "%s: unsupported key type (want RSA or Ed25519)",
				   label);
	}
	k = dkp_calloc(1, sizeof(*k));
	atomic_init(&k->refs, 1);
	k->pkey = pk;
	k->alg = alg;
	k->bits = bits;
	k->serial = atomic_fetch_add(&next_serial, 1);
	atomic_fetch_add(&live_keys, 1);
	if (alg == DKP_ALG_RSA_SHA256 && bits == 2048 && dkp_rsa8_cpu_ok()) {
		const char *why = NULL;

		/* NULL for a key the 8-lane path cannot take (an exponent
		 * other than 65537, more than two primes): OpenSSL signs */
		k->r8 = dkp_rsa8_key_new(pk, &why);
	}
	dkp_keymem_clear_regs();	/* pieces of the key pass through them */
	*out = k;
	return DKP_OK;
}

int dkp_key_load(struct dkp_key **out, const char *path, unsigned flags,
		 struct dkp_err *err)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, rc;

	*out = NULL;
	/* never blocks: a FIFO or device is refused, not waited on */
	fd = dkp_open_regular(path);
	if (fd == -EINVAL || fd == -EISDIR)
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   "key file %s is not a regular file", path);
	if (fd < 0)
		return dkp_err_sys(err, DKP_E_KEY, 0, "key", -fd,
				   "cannot open key file %s", path);
	if (fstat(fd, &st) < 0) {
		rc = errno;
		close(fd);
		return dkp_err_sys(err, DKP_E_KEY, 0, "key", rc,
				   "cannot stat key file %s", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   "key file %s is not a regular file", path);
	}
	if ((st.st_mode & 077) && !(flags & DKP_KEY_INSECURE_PERMS)) {
		close(fd);
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   "key file %s has mode %04o: group or others can access it; chmod 600 it (or pass --insecure-key-perms)",
				   path, (unsigned)(st.st_mode & 07777));
	}
	if (st.st_size > MAX_KEY_FILE) {
		close(fd);
		return dkp_err_set(err, DKP_E_KEY, 0, "key",
				   "key file %s is larger than %d bytes", path,
				   MAX_KEY_FILE);
	}
	buf = dkp_malloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? errno : EIO;
			close(fd);
			dkp_free_wipe(buf, (size_t)st.st_size + 1);
			return dkp_err_sys(err, DKP_E_KEY, 0, "key", rc,
					   "cannot read key file %s", path);
		}
		got += (size_t)n;
	}
	close(fd);
	rc = dkp_key_from_pem(out, buf, got, path, err);
	dkp_free_wipe(buf, (size_t)st.st_size + 1);
	return rc;
}

int dkp_key_public_b64(const struct dkp_key *k, struct dkp_buf *out,
		       struct dkp_err *err)
{
	unsigned char *der = NULL, raw[32];
	size_t rawlen = sizeof(raw), n;
	int len;

	if (k->alg == DKP_ALG_ED25519_SHA256) {
		/* RFC 8463 3: p= is the raw 32-byte public key */
		if (!EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen))
			return dkp_err_ssl(err, DKP_E_CRYPTO, "key",
					   "cannot extract the Ed25519 public key");
		der = raw;
		len = (int)rawlen;
	} else {
		/* RFC 6376 3.6.1: p= is a DER SubjectPublicKeyInfo */
		len = i2d_PUBKEY(k->pkey, &der);
		if (len <= 0)
			return dkp_err_ssl(err, DKP_E_CRYPTO, "key",
					   "cannot encode the RSA public key");
	}
	n = 4 * (((size_t)len + 2) / 3);
	dkp_buf_reserve(out, n);
	EVP_EncodeBlock((unsigned char *)out->p + out->len, der, len);
	out->len += n;
	out->p[out->len] = '\0';
	if (der != raw)
		OPENSSL_free(der);
	return DKP_OK;
}

int dkp_keygen(enum dkp_alg alg, int bits, struct dkp_buf *pem,
	       struct dkp_buf *record, struct dkp_err *err)
{
	EVP_PKEY *pk;
	BIO *bio;
	BUF_MEM *mem;
	struct dkp_key k;
	int rc;

	if (alg == DKP_ALG_RSA_SHA256) {
		if (bits < DKP_RSA_MIN_BITS || bits > 16384)
			return dkp_err_set(err, DKP_E_USAGE, 0, "keygen",
					   "RSA key size must be 1024 to 16384 bits, not %d",
					   bits);
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else {
		pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	}
	if (pk == NULL)
		return dkp_err_ssl(err, DKP_E_CRYPTO, "keygen",
				   "key generation failed");
	bio = BIO_new(BIO_s_secmem());
	if (bio == NULL || !PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0,
						     NULL, NULL)) {
		BIO_free(bio);
		EVP_PKEY_free(pk);
		return dkp_err_ssl(err, DKP_E_CRYPTO, "keygen",
				   "cannot encode the private key");
	}
	BIO_get_mem_ptr(bio, &mem);
	dkp_buf_add(pem, mem->data, mem->length);
	BIO_free(bio);	/* secure-heap BIO: cleared on free */

	k.pkey = pk;
	k.alg = alg;
	dkp_buf_printf(record, "v=DKIM1; k=%s; p=",
		       alg == DKP_ALG_RSA_SHA256 ? "rsa" : "ed25519");
	rc = dkp_key_public_b64(&k, record, err);
	EVP_PKEY_free(pk);
	return rc;
}
