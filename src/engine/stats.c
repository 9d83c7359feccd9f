/* stats.c — engine counters and the latency histogram; see stats.h. */
#include "engine/stats.h"

#include <stdint.h>

/* 8 buckets per power of two of microseconds. */
static unsigned lat_bucket(uint64_t us)
{
	unsigned msb, frac;

	if (us == 0)
		us = 1;
	msb = 63u - (unsigned)__builtin_clzll(us);
	frac = msb >= 3 ? (unsigned)(us >> (msb - 3)) & 7u
			: (unsigned)(us << (3 - msb)) & 7u;
	msb = msb * 8 + frac;
	return msb < DKP_LAT_BUCKETS ? msb : DKP_LAT_BUCKETS - 1;
}

void dkp_stats_add(struct dkp_stats *st, const struct dkp_tmsg *m, size_t n,
		   double now)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int o = m[i].outcome;

		if (o < 0 || o >= DKP_OUT_N)
			continue;
		atomic_fetch_add(&st->n[o], 1);
		if (m[i].pub[0])
			atomic_fetch_add(&st->renamed, 1);
		if (o == DKP_OUT_SIGNED || o == DKP_OUT_ESP_ONLY) {
			double us = (now - m[i].t_claim) * 1e6;

			atomic_fetch_add(&st->bytes, m[i].len);
			atomic_fetch_add(&st->lat[lat_bucket(us > 0 ? (uint64_t)us : 0)], 1);
		}
	}
}

double dkp_stats_latency_ms(const struct dkp_stats *st, double q)
{
	uint64_t total = 0, run = 0, want;
	unsigned i;

	for (i = 0; i < DKP_LAT_BUCKETS; i++)
		total += atomic_load(&st->lat[i]);
	if (total == 0)
		return 0.0;
	want = (uint64_t)(q * (double)total + 0.5);
	if (want < 1)
		want = 1;
	for (i = 0; i < DKP_LAT_BUCKETS; i++) {
		run += atomic_load(&st->lat[i]);
		if (run >= want)
			break;
	}
	if (i == DKP_LAT_BUCKETS)
		i--;
	/* the middle of bucket i: (8 + frac + 0.5) * 2^msb / 8 microseconds */
	return (8.0 + (double)(i % 8) + 0.5) * (double)(1ull << (i / 8)) / 8.0 / 1000.0;
}
