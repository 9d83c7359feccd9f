/*
 * clock.h — the monotonic clock, in seconds as a double. Thread-safe.
 */
#ifndef DKP_CLOCK_H
#define DKP_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC). */
double dkp_mono_now(void);

#endif
