/*
 * clock.h — the monotonic clock and the process's CPU time, in seconds as
 * a double. Thread-safe.
 */
#ifndef DKP_CLOCK_H
#define DKP_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC). */
double dkp_mono_now(void);

/* CPU seconds (user + system) used so far by every thread of this process
 * (CLOCK_PROCESS_CPUTIME_ID). */
double dkp_cpu_now(void);

#endif
