/* alignrep.c — DMARC alignment in the summary and --stats; see alignrep.h. */
#include "cmd/alignrep.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define SUMMARY_DOMAINS 3

/* Read the per-domain table (NULL, 0 when not tracked). */
static struct dkp_stats_adom *read_table(const struct dkp_stats *st, size_t *n)
{
	size_t cap = DKP_DOM_MAX + 1;
	struct dkp_stats_adom *d = dkp_malloc(cap * sizeof(*d));

	*n = dkp_stats_align_domains(st, d, cap);
	return d;
}

static int by_unaligned(const void *a, const void *b)
{
	const struct dkp_stats_adom *x = a, *y = b;

	return x->unaligned < y->unaligned ? 1 : x->unaligned > y->unaligned ? -1 : 0;
}

void dkp_alignrep_summary(FILE *f, const struct dkp_stats *st)
{
	unsigned long yes = atomic_load(&st->align[0]), no = atomic_load(&st->align[1]);
	struct dkp_stats_adom *d;
	size_t n, i, shown = 0;

	if (yes + no == 0)
		return;
	fprintf(f, "; DMARC aligned %lu, unaligned %lu", yes, no);
	d = read_table(st, &n);
	qsort(d, n, sizeof(*d), by_unaligned);
	/* names only: a series counts from its promotion on (stats.h), so
	 * its figure is not the domain's whole run; "_other" is no name */
	for (i = 0; i < n && d[i].unaligned && shown < SUMMARY_DOMAINS; i++) {
		if (strcmp(d[i].domain, "_other") == 0)
			continue;
		fprintf(f, "%s%s", shown ? ", " : " (most: ", d[i].domain);
		shown++;
	}
	if (shown)
		fputc(')', f);
	dkp_free(d);
}

/* A JSON string (the domains are printable ASCII: conf/align.h). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void dkp_alignrep_json(FILE *f, const struct dkp_stats *st)
{
	struct dkp_stats_adom *d;
	size_t n, i;

	fprintf(f, "\"aligned\":%lu,\"unaligned\":%lu,\"align_domains\":{",
		(unsigned long)atomic_load(&st->align[0]),
		(unsigned long)atomic_load(&st->align[1]));
	d = read_table(st, &n);
	for (i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_str(f, d[i].domain);
		fprintf(f, ":{\"aligned\":%llu,\"unaligned\":%llu}",
			(unsigned long long)d[i].aligned,
			(unsigned long long)d[i].unaligned);
	}
	fputs("},", f);
	dkp_free(d);
}
