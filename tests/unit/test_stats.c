/* test_stats.c — engine/stats.c: signatures counted per algorithm and
 * domain from what the engine recorded, bytes and the fixed-bucket
 * histogram, batch sums, and the bounded per-domain table (100,000
 * domains cannot make more than bound + 1 series; the series add up
 * exactly; heavy domains get one; concurrent adders). */
#include "unit.h"

#include <pthread.h>

#include "engine/stats.h"

/* rendered fields: only their length counts (bytes out) */
#define SIG_RSA "DKIM-Signature: v=1; c=relaxed/relaxed; t=1; h=from:to;\r\n" \
		"\tbh=AAd=;\r\n\ta=rsa-sha256; d=cust.example; s=s1; b=BB\r\n\tBB\r\n"
#define SIG_ED "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=esp.example;\r\n" \
	       "\ts=e1; t=1; bh=AAAA; b=CC\r\n"

/* One published message with the given signature block: nrsa rsa-sha256
 * and ned ed25519-sha256 signatures, the topmost with d=dom, as the
 * engine records them when it signs (job.c). */
static void mk(struct dkp_tmsg *m, const char *sigs, size_t len, double claim,
	       unsigned nrsa, unsigned ned, const char *dom)
{
	memset(m, 0, sizeof(*m));
	m->outcome = DKP_OUT_SIGNED;
	m->len = len;
	m->t_claim = claim;
	m->out[0].iov_base = NULL;
	m->out[0].iov_len = 0;
	m->out[1].iov_base = (void *)sigs;
	m->out[1].iov_len = strlen(sigs);
	m->out[2].iov_base = NULL;
	m->out[2].iov_len = len;
	m->nout = 3;
	m->nsig[0] = nrsa;
	m->nsig[1] = ned;
	snprintf(m->sig_dom, sizeof(m->sig_dom), "%s", dom);
}

static void signatures_bytes_and_histogram(void **state)
{
	static struct dkp_stats st;	/* zeroed */
	struct dkp_tmsg m[3];
	struct dkp_stats_dom d[4];
	const char *two = SIG_RSA SIG_ED;
	unsigned long cum = 0;
	size_t n, i;

	(void)state;
	dkp_stats_track_domains(&st, 4);
	mk(&m[0], two, 100, 9.998, 1, 1, "cust.example");	/* 2 ms */
	mk(&m[1], SIG_ED, 50, 9.7, 0, 1, "esp.example");	/* 300 ms */
	m[1].outcome = DKP_OUT_ESP_ONLY;
	mk(&m[2], "", 10, 9.0, 5, 5, "failed.example");	/* not counted */
	m[2].outcome = DKP_OUT_FAILED;
	dkp_stats_add(&st, m, 3, 10.0);
	assert_int_equal(atomic_load(&st.n[DKP_OUT_SIGNED]), 1);
	assert_int_equal(atomic_load(&st.n[DKP_OUT_ESP_ONLY]), 1);
	assert_int_equal(atomic_load(&st.n[DKP_OUT_FAILED]), 1);
	assert_int_equal(atomic_load(&st.sigs[DKP_SALG_RSA_SHA256]), 1);
	assert_int_equal(atomic_load(&st.sigs[DKP_SALG_ED25519_SHA256]), 2);
	assert_int_equal(atomic_load(&st.bytes), 150);
	assert_int_equal(atomic_load(&st.bytes_out), 150 + strlen(two) + strlen(SIG_ED));
	for (i = 0; i < DKP_HIST_BUCKETS; i++)
		cum += atomic_load(&st.hist[i]);
	assert_int_equal(cum, 2);
	assert_int_equal(atomic_load(&st.hist[1]), 1);	/* 0.001 < 2 ms <= 0.0025 */
	assert_int_equal(atomic_load(&st.hist[8]), 1);	/* 0.25 < 300 ms <= 0.5 */
	assert_in_range(atomic_load(&st.lat_sum_us), 301990, 302010);
	/* both domains below the promotion minimum */
	n = dkp_stats_domains(&st, d, 4);
	assert_int_equal(n, 1);
	assert_string_equal(d[0].domain, "_other");
	assert_int_equal(d[0].msgs, 2);
	dkp_stats_untrack_domains(&st);
	assert_int_equal(dkp_stats_domains(&st, d, 4), 0);
}

/* Feed one message for domain name. */
static void feed(struct dkp_stats *st, const char *name, size_t len)
{
	struct dkp_tmsg m;

	mk(&m, SIG_RSA, len, 0.5, 1, 0, name);
	dkp_stats_add(st, &m, 1, 1.0);
}

static void hundred_thousand_domains_stay_bounded(void **state)
{
	static struct dkp_stats st;
	static struct dkp_stats_dom d[DKP_DOM_MAX + 1];
	uint64_t msgs = 0, bytes = 0, sent = 0;
	char name[64];
	size_t n, i, heavy = 0;
	int k;

	(void)state;
	dkp_stats_track_domains(&st, 100);
	/* 100,000 domains once each, and five busy ones (each 1 in 20) */
	for (i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "tail%06zu.example", i);
		feed(&st, name, 7);
		sent++;
		if (i % 4 == 0) {
			snprintf(name, sizeof(name), "busy%zu.example", (i / 4) % 5);
			feed(&st, name, 7);
			sent++;
		}
	}
	n = dkp_stats_domains(&st, d, DKP_DOM_MAX + 1);
	assert_true(n >= 6 && n <= 101);
	assert_string_equal(d[n - 1].domain, "_other");
	for (i = 0; i < n; i++) {
		msgs += d[i].msgs;
		bytes += d[i].bytes;
		for (k = 0; k < 5; k++) {
			snprintf(name, sizeof(name), "busy%d.example", k);
			heavy += !strcmp(d[i].domain, name);
		}
	}
	assert_int_equal(msgs, sent);
	assert_int_equal(bytes, 7 * sent);
	assert_int_equal(heavy, 5);
	dkp_stats_untrack_domains(&st);
}

static void uniform_domains_fill_the_bound(void **state)
{
	static struct dkp_stats st;
	struct dkp_stats_dom d[12];
	char name[64];
	size_t n, i;

	(void)state;
	dkp_stats_track_domains(&st, 10);
	for (i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "d%02zu.example", i % 50);
		feed(&st, name, 1);
	}
	n = dkp_stats_domains(&st, d, 12);
	assert_int_equal(n, 11);
	dkp_stats_untrack_domains(&st);
}

static struct dkp_stats shared;

static void *adder(void *arg)
{
	char name[64];
	size_t i;

	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "t%zu-%zu.example", (size_t)(uintptr_t)arg, i % 300);
		feed(&shared, name, 3);
	}
	return NULL;
}

static void concurrent_adders_add_up(void **state)
{
	struct dkp_stats_dom d[33];
	pthread_t th[4];
	uint64_t msgs = 0;
	size_t n, i;

	(void)state;
	dkp_stats_track_domains(&shared, 32);
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, adder, (void *)(uintptr_t)i);
	for (i = 0; i < 4; i++) {
		dkp_stats_domains(&shared, d, 33);	/* a scrape beside them */
		pthread_join(th[i], NULL);
	}
	n = dkp_stats_domains(&shared, d, 33);
	for (i = 0; i < n; i++)
		msgs += d[i].msgs;
	assert_true(n <= 33);
	assert_int_equal(msgs, 80000);
	assert_int_equal(atomic_load(&shared.n[DKP_OUT_SIGNED]), 80000);
	assert_int_equal(atomic_load(&shared.sigs[DKP_SALG_RSA_SHA256]), 80000);
	dkp_stats_untrack_domains(&shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(signatures_bytes_and_histogram),
		cmocka_unit_test(hundred_thousand_domains_stay_bounded),
		cmocka_unit_test(uniform_domains_fill_the_bound),
		cmocka_unit_test(concurrent_adders_add_up),
	};

	UNIT_RUN("test_stats", tests);
}
