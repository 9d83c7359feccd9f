/* keymem.c — key memory out of core dumps and swap; see keymem.h. */
#include "crypto/keymem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/log.h"

/* OpenSSL's secure heap per key_cache entry. An RSA-2048 key takes 3,392
 * bytes there on an IFMA CPU (d, p, q, dp, dq, qinv as decoded: 1,664; the
 * check's numbers and Montgomery contexts of each prime, rsa8_check.c:
 * 1,728; measured with OpenSSL 3.0), an Ed25519 seed 32. Twice that: a
 * reload builds and fills a new cache while batches still hold the old
 * one. Rounded up to a power of two (OpenSSL wants one): 128 MiB of
 * address space for the default key_cache of 10000, in RAM only as used
 * unless it can be locked. A full heap makes a key load fail with its own
 * message (keystore.c). */
#define PER_KEY 7168
#define HEAP_MIN ((size_t)256 << 10)
#define HEAP_MAX ((size_t)1 << 30)
/* the 8-lane form of a key and the kernel's per-thread scratch, on our
 * own pages (a guess for the warning only: keys are made on demand) */
#define PAGES_PER_KEY 1

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t want_keys;
static size_t heap_size;
static int heap_on;
static atomic_int warned;

static size_t page(void)
{
	static size_t ps;

	if (ps == 0)
		ps = (size_t)sysconf(_SC_PAGESIZE);
	return ps;
}

/* The one line when memory cannot be locked: how much, the limit, the
 * fix. Once per process. */
static void warn_lock(void)
{
	struct rlimit rl;
	char lim[32];
	size_t want;

	if (atomic_exchange(&warned, 1))
		return;
	want = (heap_size + want_keys * PAGES_PER_KEY * page()) >> 10;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		snprintf(lim, sizeof(lim), "%llu KiB", (unsigned long long)rl.rlim_cur >> 10);
	else
		snprintf(lim, sizeof(lim), "unknown");
	dkp_warn("keys: cannot lock key memory in RAM (about %zu KiB wanted for key_cache = %zu, RLIMIT_MEMLOCK is %s): key pages may be swapped out; raise the limit with LimitMEMLOCK= in dkimpress.service (or ulimit -l); they stay out of core dumps either way",
		 want, want_keys, lim);
}

static void init_heap(void)
{
	size_t want = want_keys * PER_KEY, sz = HEAP_MIN;
	int rc;

	while (sz < want && sz < HEAP_MAX)
		sz <<= 1;
	if (CRYPTO_secure_malloc_initialized()) {
		heap_on = 1;	/* someone (a test) did it already */
		return;
	}
	rc = CRYPTO_secure_malloc_init(sz, 32);
	if (rc == 0) {
		dkp_warn("keys: OpenSSL's secure heap (%zu KiB) could not be set up: OpenSSL keeps key numbers in its ordinary heap",
			 sz >> 10);
		return;
	}
	heap_on = 1;
	heap_size = sz;
	if (rc == 2)	/* mlock (or madvise) refused */
		warn_lock();
}

void dkp_keymem_init(size_t max_keys, int allow_core)
{
	if (want_keys == 0)
		want_keys = max_keys ? max_keys : 1;
	pthread_once(&init_once, init_heap);
	if (prctl(PR_SET_DUMPABLE, allow_core ? 1 : 0, 0, 0, 0) != 0)
		dkp_warn("keys: prctl(PR_SET_DUMPABLE) failed: the process stays %s",
			 allow_core ? "not dumpable" : "dumpable");
}

int dkp_keymem_secure_heap(void)
{
	return heap_on;
}

void *dkp_keymem_alloc(size_t n)
{
	size_t len = (n + page() - 1) & ~(page() - 1);
	void *p;

	if (len == 0)
		len = page();
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		dkp_fatal("out of memory mapping %zu bytes for key material", len);
	/* never in a core; never inherited by a child */
	madvise(p, len, MADV_DONTDUMP);
	madvise(p, len, MADV_DONTFORK);
	if (mlock(p, len) != 0)
		warn_lock();
	return p;
}

void dkp_keymem_free(void *p, size_t n)
{
	size_t len = (n + page() - 1) & ~(page() - 1);

	if (p == NULL)
		return;
	if (len == 0)
		len = page();
	OPENSSL_cleanse(p, len);
	munlock(p, len);
	munmap(p, len);
}

/* OpenSSL's allocator (dkp_keymem_early): malloc as usual, and every block
 * wiped to its usable size (what the allocator gave, jemalloc or libc)
 * before it goes back. */
static void wipe_free(void *p, const char *file, int line)
{
	if (p == NULL)
		return;
	if (heap_on && CRYPTO_secure_allocated(p)) {
		CRYPTO_secure_clear_free(p, 0, file, line);	/* clears */
		return;
	}
	/* glibc's vectorised memset, not OPENSSL_cleanse's word loop: this
	 * runs on every free of OpenSSL's */
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* set between dkp_keymem_secret_begin and _end: this thread's OpenSSL
 * allocations go to the secure heap */
static _Thread_local int secret_window;

static void *plain_malloc(size_t n, const char *file, int line)
{
	if (secret_window && heap_on) {
		void *p = CRYPTO_secure_malloc(n, file, line);

		if (p != NULL)
			return p;
		/* full: the ordinary heap rather than a failure */
	}
	return malloc(n);
}

static size_t block_size(void *p)
{
	return heap_on && CRYPTO_secure_allocated(p) ? CRYPTO_secure_actual_size(p)
					  : malloc_usable_size(p);
}

static void *wipe_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old;
	void *q;

	if (p == NULL)
		return plain_malloc(n, file, line);
	if (n == 0) {
		wipe_free(p, file, line);
		return NULL;
	}
	old = block_size(p);
	if (n <= old)
		return p;
	q = plain_malloc(n, file, line);
	if (q == NULL)
		return NULL;
	memcpy(q, p, old);
	wipe_free(p, file, line);
	return q;
}

void dkp_keymem_secret_begin(void)
{
	secret_window = 1;
}

void dkp_keymem_secret_end(void)
{
	secret_window = 0;
}

int dkp_keymem_early(void)
{
	return CRYPTO_set_mem_functions(plain_malloc, wipe_realloc, wipe_free);
}

/* Vector registers keep what memcpy and OpenSSL's code last moved through
 * them until something overwrites them, and a core's notes hold every
 * thread's registers (the thread that loaded keys may then sleep for
 * hours). Zero them: all 32 zmm registers with AVX-512, else the 16 ymm. */
__attribute__((target("avx512f"))) static void zero_zmm(void)
{
	__asm__ __volatile__("vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
			     "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
			     "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
			     "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
			     "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
			     "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
			     "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
			     "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
			     "vpxord %%zmm24, %%zmm24, %%zmm24\n\t"
			     "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
			     "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"
			     "vpxord %%zmm27, %%zmm27, %%zmm27\n\t"
			     "vpxord %%zmm28, %%zmm28, %%zmm28\n\t"
			     "vpxord %%zmm29, %%zmm29, %%zmm29\n\t"
			     "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
			     "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
			     "vzeroall" ::: "memory");
}

__attribute__((target("avx"))) static void zero_ymm(void)
{
	__asm__ __volatile__("vzeroall" ::: "memory");
}

void dkp_keymem_clear_regs(void)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx512f"))
		zero_zmm();
	else if (__builtin_cpu_supports("avx"))
		zero_ymm();
#endif
}
