/* stats.c — engine counters, the latency histograms and the bounded
 * per-domain table; see stats.h. */
#include "engine/stats.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/htab.h"
#include "base/mem.h"
#include "conf/align.h"

const double dkp_stats_le[DKP_HIST_BUCKETS - 1] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60,
};

const char *const dkp_stats_alg_names[DKP_SALG_N] = {
	"rsa-sha256", "ed25519-sha256",
};

/* ---- the per-domain table (stats.h) ---------------------------------- */

struct cand {			/* a space-saving candidate */
	char *name;
	size_t len;
	uint64_t count, err;	/* estimate and its overestimate bound */
	size_t heap;		/* its index in the min-heap */
};

struct prom {			/* a domain with its own series */
	char name[256];
	uint64_t c[2];		/* messages and bytes; or aligned, unaligned */
};

struct dkp_domstats {
	pthread_mutex_t mu;
	size_t bound, ccap;
	struct dkp_htab *pidx;	/* name -> index + 1 into p */
	struct prom *p;
	size_t np, pcap;
	struct dkp_htab *cidx;	/* name -> struct cand */
	struct cand **heap;	/* min-heap on count, nc of ccap */
	size_t nc;
	uint64_t total;		/* messages counted */
	uint64_t other[2];
};

static void heap_swap(struct dkp_domstats *d, size_t a, size_t b)
{
	struct cand *t = d->heap[a];

	d->heap[a] = d->heap[b];
	d->heap[b] = t;
	d->heap[a]->heap = a;
	d->heap[b]->heap = b;
}

static void sift_up(struct dkp_domstats *d, size_t i)
{
	while (i > 0 && d->heap[(i - 1) / 2]->count > d->heap[i]->count) {
		heap_swap(d, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void sift_down(struct dkp_domstats *d, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < d->nc && d->heap[l]->count < d->heap[m]->count)
			m = l;
		if (r < d->nc && d->heap[r]->count < d->heap[m]->count)
			m = r;
		if (m == i)
			return;
		heap_swap(d, i, m);
		i = m;
	}
}

/* Take candidate c out of the heap and the index, and free it. */
static void cand_drop(struct dkp_domstats *d, struct cand *c)
{
	size_t i = c->heap;

	dkp_htab_del(d->cidx, c->name, c->len);
	d->nc--;
	if (i != d->nc) {
		d->heap[i] = d->heap[d->nc];
		d->heap[i]->heap = i;
		sift_down(d, i);
		sift_up(d, i);
	}
	dkp_free(c->name);
	dkp_free(c);
}

/* The candidate for name, made (or taken over from the smallest, which
 * the sketch then forgets) if it is new, with this message counted. */
static struct cand *cand_count(struct dkp_domstats *d, const char *name, size_t len)
{
	struct cand *c = dkp_htab_get(d->cidx, name, len);

	if (c) {
		c->count++;
		sift_down(d, c->heap);
		return c;
	}
	if (d->nc < d->ccap) {
		c = dkp_calloc(1, sizeof(*c));
		c->heap = d->nc;
		d->heap[d->nc++] = c;
		c->count = 1;
	} else {
		c = d->heap[0];	/* the smallest: replaced (space-saving) */
		dkp_htab_del(d->cidx, c->name, c->len);
		dkp_free(c->name);
		c->err = c->count;
		c->count++;
	}
	c->name = dkp_strndup(name, len);
	c->len = len;
	dkp_htab_put(d->cidx, c->name, len, c);
	sift_down(d, c->heap);
	sift_up(d, c->heap);
	return c;
}

/* Count one message for domain name (may be ""), adding c0 and c1 to
 * its two counters, mutex held. */
static void dom_count(struct dkp_domstats *d, const char *name, size_t len,
		      uint64_t c0, uint64_t c1)
{
	uintptr_t pi;
	struct cand *c;
	uint64_t sure;

	d->total++;
	if (len && (pi = (uintptr_t)dkp_htab_get(d->pidx, name, len)) != 0) {
		d->p[pi - 1].c[0] += c0;
		d->p[pi - 1].c[1] += c1;
		return;
	}
	d->other[0] += c0;
	d->other[1] += c1;
	if (len == 0 || d->np == d->bound)
		return;
	c = cand_count(d, name, len);
	sure = c->count - c->err;
	/* a large share at once; after the warm-up, any domain the sketch
	 * kept long enough to count DKP_DOM_PROMOTE_MIN messages surely */
	if (sure >= DKP_DOM_PROMOTE_MIN &&
	    (sure * 2 * d->bound >= d->total || d->total >= DKP_DOM_WARMUP * d->bound)) {
		if (d->np == d->pcap) {
			d->pcap = d->pcap ? 2 * d->pcap : 16;
			if (d->pcap > d->bound)
				d->pcap = d->bound;
			d->p = dkp_realloc(d->p, d->pcap * sizeof(*d->p));
		}
		memset(&d->p[d->np], 0, sizeof(d->p[d->np]));
		memcpy(d->p[d->np].name, name, len);
		d->np++;
		dkp_htab_put(d->pidx, name, len, (void *)(uintptr_t)d->np);
		cand_drop(d, c);
		if (d->np == d->bound)	/* no more promotions: the sketch can go */
			while (d->nc)
				cand_drop(d, d->heap[d->nc - 1]);
	}
}

static struct dkp_domstats *domstats_new(size_t bound)
{
	struct dkp_domstats *d = dkp_calloc(1, sizeof(*d));

	if (bound < 1)
		bound = 1;
	if (bound > DKP_DOM_MAX)
		bound = DKP_DOM_MAX;
	pthread_mutex_init(&d->mu, NULL);
	d->bound = bound;
	d->ccap = 4 * bound < 64 ? 64 : 4 * bound;
	d->pidx = dkp_htab_new(bound);
	d->cidx = dkp_htab_new(d->ccap);
	d->heap = dkp_calloc(d->ccap, sizeof(*d->heap));
	return d;
}

static void domstats_free(struct dkp_domstats *d)
{
	if (d == NULL)
		return;
	while (d->nc)
		cand_drop(d, d->heap[d->nc - 1]);
	dkp_htab_free(d->cidx, NULL);
	dkp_htab_free(d->pidx, NULL);
	dkp_free(d->heap);
	dkp_free(d->p);
	pthread_mutex_destroy(&d->mu);
	dkp_free(d);
}

void dkp_stats_track_domains(struct dkp_stats *st, size_t bound)
{
	atomic_store(&st->dom, domstats_new(bound));
}

void dkp_stats_untrack_domains(struct dkp_stats *st)
{
	domstats_free(atomic_exchange(&st->dom, NULL));
}

/* Copy d's series into out[0..max), "_other" last; how many. */
static size_t domstats_read(struct dkp_domstats *d, struct dkp_stats_dom *out,
			    size_t max)
{
	size_t i, n = 0;

	if (d == NULL || max == 0)
		return 0;
	pthread_mutex_lock(&d->mu);
	for (i = 0; i < d->np && n + 1 < max; i++, n++) {
		memcpy(out[n].domain, d->p[i].name, sizeof(out[n].domain));
		out[n].msgs = d->p[i].c[0];
		out[n].bytes = d->p[i].c[1];
	}
	snprintf(out[n].domain, sizeof(out[n].domain), "_other");
	out[n].msgs = d->other[0];
	out[n].bytes = d->other[1];
	n++;
	pthread_mutex_unlock(&d->mu);
	return n;
}

size_t dkp_stats_domains(const struct dkp_stats *st, struct dkp_stats_dom *out,
			 size_t max)
{
	return domstats_read(atomic_load(&((struct dkp_stats *)st)->dom), out, max);
}

/* ---- DMARC alignment per From domain (stats.h) ------------------------ */

void dkp_stats_track_align(struct dkp_stats *st, size_t bound)
{
	atomic_store(&st->adom, domstats_new(bound));
}

void dkp_stats_untrack_align(struct dkp_stats *st)
{
	domstats_free(atomic_exchange(&st->adom, NULL));
}

size_t dkp_stats_align_domains(const struct dkp_stats *st,
			       struct dkp_stats_adom *out, size_t max)
{
	struct dkp_stats_dom *tmp;
	size_t i, n;

	if (max == 0)
		return 0;
	/* the same table as the per-domain messages: its two counters are
	 * aligned and unaligned here */
	tmp = dkp_malloc(max * sizeof(*tmp));
	n = domstats_read(atomic_load(&((struct dkp_stats *)st)->adom), tmp, max);
	for (i = 0; i < n; i++) {
		memcpy(out[i].domain, tmp[i].domain, sizeof(out[i].domain));
		out[i].aligned = tmp[i].msgs;
		out[i].unaligned = tmp[i].bytes;
	}
	dkp_free(tmp);
	return n;
}

/* The batch's alignment results: totals, and per From domain when
 * tracked (one lock per batch). */
static void add_align(struct dkp_stats *st, const struct dkp_tmsg *m, size_t n)
{
	struct dkp_domstats *d = atomic_load(&st->adom);
	size_t i;
	int locked = 0;

	for (i = 0; i < n; i++) {
		int yes = m[i].align == DKP_ALIGN_YES;

		if (m[i].align == DKP_ALIGN_UNCHECKED || m[i].outcome < 0 ||
		    m[i].outcome >= DKP_OUT_N || m[i].outcome == DKP_OUT_GONE)
			continue;
		atomic_fetch_add(&st->align[yes ? 0 : 1], 1);
		if (d) {
			if (!locked) {
				pthread_mutex_lock(&d->mu);
				locked = 1;
			}
			dom_count(d, m[i].align_dom, strnlen(m[i].align_dom,
							     sizeof(m[i].align_dom)),
				  yes, !yes);
		}
	}
	if (locked)
		pthread_mutex_unlock(&d->mu);
}

/* ---- counting a batch ------------------------------------------------ */

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

static unsigned hist_bucket(double s)
{
	unsigned i;

	for (i = 0; i < DKP_HIST_BUCKETS - 1; i++)
		if (s <= dkp_stats_le[i])
			return i;
	return DKP_HIST_BUCKETS - 1;
}

/* The batch's sums go to the shared counters once each at the end: the
 * workers add concurrently, and an atomic add per message and signature
 * would pass those cache lines between them for every one. */
void dkp_stats_add(struct dkp_stats *st, const struct dkp_tmsg *m, size_t n,
		   double now)
{
	struct dkp_domstats *d = atomic_load(&st->dom);
	unsigned long cnt[DKP_OUT_N] = { 0 }, nsig[DKP_SALG_N] = { 0 }, renamed = 0;
	uint64_t bytes = 0, bytes_out = 0, lat_sum = 0;
	size_t i;
	int locked = 0, k;

	for (i = 0; i < n; i++) {
		int o = m[i].outcome;

		if (o < 0 || o >= DKP_OUT_N)
			continue;
		cnt[o]++;
		renamed += m[i].pub[0] != '\0';
		if (o == DKP_OUT_SIGNED || o == DKP_OUT_ESP_ONLY) {
			double s = now - m[i].t_claim, us = s * 1e6;

			for (k = 0; k < m[i].nout && k < 3; k++)
				bytes_out += m[i].out[k].iov_len;
			nsig[DKP_SALG_RSA_SHA256] += m[i].nsig[0];
			nsig[DKP_SALG_ED25519_SHA256] += m[i].nsig[1];
			bytes += m[i].len;
			atomic_fetch_add(&st->lat[lat_bucket(us > 0 ? (uint64_t)us : 0)], 1);
			atomic_fetch_add(&st->hist[hist_bucket(s)], 1);
			lat_sum += us > 0 ? (uint64_t)(us + 0.5) : 0;
			if (d) {
				if (!locked) {
					pthread_mutex_lock(&d->mu);
					locked = 1;
				}
				dom_count(d, m[i].sig_dom, strnlen(m[i].sig_dom, sizeof(m[i].sig_dom)),
					  1, m[i].len);
			}
		}
	}
	if (locked)
		pthread_mutex_unlock(&d->mu);
	for (k = 0; k < DKP_OUT_N; k++)
		if (cnt[k])
			atomic_fetch_add(&st->n[k], cnt[k]);
	for (k = 0; k < DKP_SALG_N; k++)
		if (nsig[k])
			atomic_fetch_add(&st->sigs[k], nsig[k]);
	if (renamed)
		atomic_fetch_add(&st->renamed, renamed);
	if (cnt[DKP_OUT_SIGNED] + cnt[DKP_OUT_ESP_ONLY]) {
		atomic_fetch_add(&st->bytes, bytes);
		atomic_fetch_add(&st->bytes_out, bytes_out);
		atomic_fetch_add(&st->lat_sum_us, lat_sum);
	}
	add_align(st, m, n);
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
