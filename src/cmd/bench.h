/*
 * bench.h — `dkimpress bench`: the engine measured against the bounds of
 * the machine it runs on (crypto: signatures per second of the configured
 * keys; I/O: the queue path with signing off), in one run, on one corpus.
 * See dkimpress(1) and docs/performance.md.
 */
#ifndef DKP_BENCH_H
#define DKP_BENCH_H

#include "cmd/cli.h"

/* --phases engineN: N `run --once` processes started together on one
 * scratch queue (N = 1 .. DKP_BENCH_MAX_ENGINES); its bit in
 * dkp_cli.phases, above the DKP_PHASE_* bits. */
#define DKP_BENCH_MAX_ENGINES 16
#define DKP_PHASE_ENGINES(n) (1u << (7 + (n)))

/* Run the phases c asks for; returns the process exit code. */
int dkp_bench_run(const struct dkp_cli *c);

#endif
