/*
 * alignrep.h — DMARC alignment in the reports of `dkimpress run`: the
 * summary line's part and the --stats JSON's (the Prometheus series are
 * rendered in metrics.c). Both read engine/stats.h's alignment counters:
 * the totals and the per From domain table, bounded by metrics_domains,
 * so the three reports agree exactly.
 */
#ifndef DKP_ALIGNREP_H
#define DKP_ALIGNREP_H

#include <stdio.h>

#include "engine/stats.h"

/* "; DMARC aligned N, unaligned M (most: DOMAIN, ...)" on f: the From
 * domains whose series counted the most unaligned messages (at most 3);
 * nothing when no message was checked. */
void dkp_alignrep_summary(FILE *f, const struct dkp_stats *st);

/* "\"aligned\":N,\"unaligned\":M,\"align_domains\":{\"DOMAIN\":
 * {\"aligned\":A,\"unaligned\":U},...}," on f (JSON members, a comma
 * after the last). */
void dkp_alignrep_json(FILE *f, const struct dkp_stats *st);

#endif
