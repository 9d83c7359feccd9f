/* test_htab.c — the XXH3 open-addressing table against a reference. */
#include "unit.h"

#include "base/htab.h"

static void put_get_replace_delete(void **st)
{
	struct dkp_htab *t = dkp_htab_new(0);
	int a = 1, b = 2;

	(void)st;
	assert_null(dkp_htab_put(t, "example.com", 11, &a));
	assert_ptr_equal(dkp_htab_get(t, "example.com", 11), &a);
	assert_null(dkp_htab_get(t, "example.co", 10));
	assert_ptr_equal(dkp_htab_put(t, "example.com", 11, &b), &a);
	assert_int_equal(dkp_htab_count(t), 1);
	assert_ptr_equal(dkp_htab_del(t, "example.com", 11), &b);
	assert_null(dkp_htab_get(t, "example.com", 11));
	assert_int_equal(dkp_htab_count(t), 0);
	/* keys are bytes: NUL inside and the empty key work */
	assert_null(dkp_htab_put(t, "a\0b", 3, &a));
	assert_null(dkp_htab_put(t, "", 0, &b));
	assert_ptr_equal(dkp_htab_get(t, "a\0b", 3), &a);
	assert_null(dkp_htab_get(t, "a", 1));
	assert_ptr_equal(dkp_htab_get(t, "", 0), &b);
	dkp_htab_free(t, NULL);
}

/* Random inserts and deletes checked against a plain array: exercises
 * growth and backward-shift deletion across wrap-around. */
static void matches_a_reference_under_churn(void **st)
{
	enum { N = 5000 };
	static int present[N];
	static int vals[N];
	struct dkp_htab *t = dkp_htab_new(4);
	uint32_t x = 12345;
	size_t i, round, live = 0;
	char key[32];

	(void)st;
	for (i = 0; i < N; i++)
		vals[i] = (int)i;
	for (round = 0; round < 60000; round++) {
		size_t k;
		int len;

		x = x * 1103515245u + 12345u;
		k = (x >> 8) % N;
		len = snprintf(key, sizeof(key), "d%zu.example", k);
		if ((x >> 4) & 1) {
			void *prev = dkp_htab_put(t, key, (size_t)len, &vals[k]);

			assert_true((prev != NULL) == present[k]);
			live += !present[k];
			present[k] = 1;
		} else {
			void *prev = dkp_htab_del(t, key, (size_t)len);

			assert_true((prev != NULL) == present[k]);
			live -= present[k];
			present[k] = 0;
		}
	}
	assert_int_equal(dkp_htab_count(t), live);
	for (i = 0; i < N; i++) {
		int len = snprintf(key, sizeof(key), "d%zu.example", i);
		void *v = dkp_htab_get(t, key, (size_t)len);

		if (present[i])
			assert_ptr_equal(v, &vals[i]);
		else
			assert_null(v);
	}
	dkp_htab_free(t, NULL);
}

static int freed;
static void count_free(void *p)
{
	(void)p;
	freed++;
}

static void free_calls_the_value_destructor(void **st)
{
	struct dkp_htab *t = dkp_htab_new(100);
	int v;

	(void)st;
	dkp_htab_put(t, "a", 1, &v);
	dkp_htab_put(t, "b", 1, &v);
	dkp_htab_free(t, count_free);
	assert_int_equal(freed, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_get_replace_delete),
		cmocka_unit_test(matches_a_reference_under_churn),
		cmocka_unit_test(free_calls_the_value_destructor),
	};

	UNIT_RUN("test_htab", tests);
}
