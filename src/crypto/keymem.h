/*
 * keymem.h — memory for private keys that stays out of core dumps and
 * swap.
 *
 * Four things, set up once by dkp_keymem_init before the first key is
 * loaded (dkp_snap_load and `dkimpress sign` call it):
 *  - OpenSSL's secure heap (CRYPTO_secure_malloc_init): one mmap'd arena,
 *    mlock'ed and MADV_DONTDUMP, where OpenSSL's decoders put the secret
 *    numbers of a key (RSA d, p, q, dp, dq, qinv; the Ed25519 seed) and
 *    clear them on free. Sized from max_keys (see keymem.c); when it is
 *    full OpenSSL falls back to failing the load, which keystore.c reports
 *    as such.
 *  - pages of our own (dkp_keymem_alloc) for what dkimpress derives from
 *    a key: the 8-lane kernel's key tables and its per-thread scratch.
 *    Each is MADV_DONTDUMP and mlock'ed where RLIMIT_MEMLOCK allows; wiped
 *    before it is unmapped.
 *  - every block OpenSSL frees wiped first (dkp_keymem_early), so no
 *    freed copy of a key lingers in the ordinary heap;
 *  - the process made not dumpable (prctl PR_SET_DUMPABLE 0: no core, no
 *    ptrace or /proc/PID/mem by the same user) unless allow_core
 *    (core_dumps = yes).
 * When the memory cannot be locked, one warning says how much was wanted,
 * the limit, and how to raise it (LimitMEMLOCK= in dkimpress.service).
 *
 * Thread-safe after init. Nothing here logs key material.
 */
#ifndef DKP_KEYMEM_H
#define DKP_KEYMEM_H

#include <stddef.h>

/* OpenSSL's allocations through functions that wipe a block when it is
 * freed or moved (OpenSSL 3.0's decoders free their DER copy of a key
 * without clearing it). Must run before OpenSSL allocates anything: first
 * in main(). 0 when it was too late. */
int dkp_keymem_early(void);
/* Between these two, this thread's OpenSSL allocations come from the
 * secure heap (when dkp_keymem_early and dkp_keymem_init ran; the
 * ordinary heap when it is full): for OpenSSL objects that hold a copy
 * of a prime, such as a Montgomery context (rsa8_check.c). Not nested. */
void dkp_keymem_secret_begin(void);
void dkp_keymem_secret_end(void);
/* The first call sets up the secure heap for max_keys keys; every call
 * (a reload too) sets dumpable from allow_core. */
void dkp_keymem_init(size_t max_keys, int allow_core);
/* n zeroed bytes on pages of their own (rounded up to pages), excluded
 * from core dumps and locked when allowed; never NULL (fatal on ENOMEM). */
void *dkp_keymem_alloc(size_t n);
/* Wipe and unmap p (from dkp_keymem_alloc with the same n); NULL is a
 * no-op. */
void dkp_keymem_free(void *p, size_t n);
/* Zero this thread's vector registers (after a key was decoded: they
 * keep pieces of it until overwritten, and a core holds registers). */
void dkp_keymem_clear_regs(void);
/* 1 when the secure heap is in use (for tests and the log). */
int dkp_keymem_secure_heap(void);

#endif
