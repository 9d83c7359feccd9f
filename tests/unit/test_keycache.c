/* test_keycache.c — lazily parsed, shared, bounded customer keys. */
#include "unit.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/keycache.h"

#define NKEYS 6

static char dir[] = "/tmp/dkp_kc_XXXXXX";
static char paths[NKEYS][64];

static int setup(void **st)
{
	size_t i;

	(void)st;
	if (mkdtemp(dir) == NULL)
		return -1;
	for (i = 0; i < NKEYS; i++) {
		struct dkp_buf pem, rec;
		struct dkp_err err;
		int fd;

		dkp_buf_init(&pem);
		dkp_buf_init(&rec);
		if (dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err))
			return -1;
		snprintf(paths[i], sizeof(paths[i]), "%s/k%zu.pem", dir, i);
		fd = open(paths[i], O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0 || write(fd, pem.p, pem.len) != (ssize_t)pem.len)
			return -1;
		close(fd);
		dkp_buf_wipe(&pem);
		dkp_buf_free(&pem);
		dkp_buf_free(&rec);
	}
	return 0;
}

static int teardown(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < NKEYS; i++)
		unlink(paths[i]);
	unlink("/tmp/dkp_kc_bad.pem");
	rmdir(dir);
	return 0;
}

struct racer {
	struct dkp_keycache *c;
	int ok;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	int i;

	for (i = 0; i < 200; i++) {
		struct dkp_key *k;
		struct dkp_err err;

		if (dkp_keycache_get(r->c, 0, paths[0], &k, &err) != DKP_OK)
			return NULL;
		dkp_key_unref(k);
	}
	r->ok = 1;
	return NULL;
}

static void one_parse_per_key_under_concurrency(void **st)
{
	struct dkp_keycache *c = dkp_keycache_new(NKEYS, 100, 0);
	pthread_t th[8];
	struct racer r[8];
	size_t i;

	(void)st;
	for (i = 0; i < 8; i++) {
		r[i].c = c;
		r[i].ok = 0;
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_true(r[i].ok);
	}
	assert_int_equal(dkp_keycache_loads(c), 1);
	assert_int_equal(dkp_keycache_loaded(c), 1);
	dkp_keycache_free(c);
}

static void bounded_and_keys_outlive_eviction(void **st)
{
	struct dkp_keycache *c = dkp_keycache_new(NKEYS, 3, 0);
	struct dkp_key *held, *k;
	struct dkp_err err;
	size_t i, round;

	(void)st;
	assert_int_equal(dkp_keycache_get(c, 0, paths[0], &held, &err), DKP_OK);
	for (round = 0; round < 3; round++)
		for (i = 0; i < NKEYS; i++) {
			assert_int_equal(dkp_keycache_get(c, i, paths[i], &k, &err), DKP_OK);
			dkp_key_unref(k);
			assert_true(dkp_keycache_loaded(c) <= 3);
		}
	/* keys were dropped and parsed again, never more than the cap */
	assert_true(dkp_keycache_loads(c) > NKEYS);
	/* the reference taken first is still valid after its eviction */
	assert_int_equal(dkp_key_alg(held), DKP_ALG_ED25519_SHA256);
	dkp_key_unref(held);
	dkp_keycache_free(c);
}

static void failures_are_remembered(void **st)
{
	struct dkp_keycache *c = dkp_keycache_new(2, 10, 0);
	struct dkp_key *k;
	struct dkp_err err;
	int fd = open("/tmp/dkp_kc_bad.pem", O_WRONLY | O_CREAT | O_TRUNC, 0644);

	(void)st;
	assert_true(fd >= 0);
	close(fd);
	chmod("/tmp/dkp_kc_bad.pem", 0644);
	/* insecure mode: refused, and remembered */
	assert_int_equal(dkp_keycache_get(c, 1, "/tmp/dkp_kc_bad.pem", &k, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "0644"));
	chmod("/tmp/dkp_kc_bad.pem", 0600);
	memset(&err, 0, sizeof(err));
	assert_int_equal(dkp_keycache_get(c, 1, "/tmp/dkp_kc_bad.pem", &k, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "0644"));	/* the same, not retried */
	assert_int_equal(dkp_keycache_loads(c), 1);
	assert_null(k);
	assert_int_equal(dkp_keycache_get(c, 5, paths[0], &k, &err), DKP_E_NOKEY);
	dkp_keycache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_parse_per_key_under_concurrency),
		cmocka_unit_test(bounded_and_keys_outlive_eviction),
		cmocka_unit_test(failures_are_remembered),
	};

	UNIT_RUN_WITH("test_keycache", tests, setup, teardown);
}
