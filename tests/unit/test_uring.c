/* test_uring.c — the batch executor, io_uring and syscalls side by side:
 * same ops, same results, including errors and linked chains.
 * Where the kernel refuses a ring (seccomp, kernel.io_uring_disabled, a
 * kernel before 5.1) the syscall backend is still checked, and the
 * program then exits 77 (skip) with the reason: a missing io_uring is
 * never counted as a tested one. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "transport/uring.h"

static void run_scenario(int want_uring)
{
	char dir[] = "/tmp/dkp_uring_XXXXXX";
	struct dkp_ring *r;
	struct dkp_rop ops[64];
	char name[40][16], buf[40][64];
	int dfd, i, rc;
	const int N = 40;	/* more than the depth below: chunking */

	rc = dkp_ring_new(&r, 16, want_uring);
	if (rc < 0)
		fail_msg("dkp_ring_new(uring = %d): %s", want_uring, strerror(-rc));
	/* the backend asked for, not a silent fallback */
	assert_int_equal(dkp_ring_is_uring(r), want_uring);
	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);

	/* create N files exclusively */
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < N; i++) {
		snprintf(name[i], sizeof(name[i]), "f%02d", i);
		ops[i].kind = DKP_ROP_OPEN_EXCL;
		ops[i].dirfd = dfd;
		ops[i].name = name[i];
	}
	assert_int_equal(dkp_ring_run(r, ops, (size_t)N), 0);
	for (i = 0; i < N; i++)
		assert_true(ops[i].res >= 0);
	/* writev + fsync linked, for each; total 2N ops > depth */
	{
		struct dkp_rop w[80];
		int fds[40];

		memset(w, 0, sizeof(w));
		for (i = 0; i < N; i++) {
			fds[i] = (int)ops[i].res;
			snprintf(buf[i], sizeof(buf[i]), "message %d\r\n", i);
			w[2 * i].kind = DKP_ROP_WRITEV;
			w[2 * i].fd = fds[i];
			w[2 * i].iov[0].iov_base = (void *)"Header: x\r\n";
			w[2 * i].iov[0].iov_len = 11;
			w[2 * i].iov[1].iov_base = buf[i];
			w[2 * i].iov[1].iov_len = strlen(buf[i]);
			w[2 * i].niov = 2;
			w[2 * i + 1].kind = DKP_ROP_FSYNC;
			w[2 * i + 1].flags = DKP_ROP_LINK;
			w[2 * i + 1].fd = fds[i];
		}
		assert_int_equal(dkp_ring_run(r, w, (size_t)(2 * N)), 0);
		for (i = 0; i < N; i++) {
			assert_int_equal(w[2 * i].res, (int64_t)(11 + strlen(buf[i])));
			assert_int_equal(w[2 * i + 1].res, 0);
			w[i].kind = DKP_ROP_CLOSE;
			w[i].flags = 0;
			w[i].fd = fds[i];
		}
		assert_int_equal(dkp_ring_run(r, w, (size_t)N), 0);
		for (i = 0; i < N; i++)
			assert_int_equal(w[i].res, 0);
	}
	/* exclusive create again: EEXIST for every one */
	for (i = 0; i < N; i++)
		ops[i].res = 0;
	assert_int_equal(dkp_ring_run(r, ops, (size_t)N), 0);
	for (i = 0; i < N; i++)
		assert_int_equal(ops[i].res, -EEXIST);
	/* sizes, then open + read back */
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < N; i++) {
		ops[i].kind = DKP_ROP_SIZE;
		ops[i].dirfd = dfd;
		ops[i].name = name[i];
	}
	ops[N].kind = DKP_ROP_SIZE;
	ops[N].dirfd = dfd;
	ops[N].name = "missing";
	assert_int_equal(dkp_ring_run(r, ops, (size_t)N + 1), 0);
	for (i = 0; i < N; i++)
		assert_int_equal(ops[i].size, 11 + strlen(buf[i]));
	assert_int_equal(ops[N].res, -ENOENT);
	{
		struct dkp_rop rd[40];
		char in[40][64];

		memset(rd, 0, sizeof(rd));
		for (i = 0; i < N; i++) {
			rd[i].kind = DKP_ROP_OPEN_RD;
			rd[i].dirfd = dfd;
			rd[i].name = name[i];
		}
		assert_int_equal(dkp_ring_run(r, rd, (size_t)N), 0);
		for (i = 0; i < N; i++) {
			int fd = (int)rd[i].res;

			assert_true(fd >= 0);
			rd[i].kind = DKP_ROP_READ;
			rd[i].fd = fd;
			rd[i].buf = in[i];
			rd[i].len = ops[i].size;
		}
		assert_int_equal(dkp_ring_run(r, rd, (size_t)N), 0);
		for (i = 0; i < N; i++) {
			assert_int_equal(rd[i].res, (int64_t)ops[i].size);
			assert_memory_equal(in[i], "Header: x\r\n", 11);
			assert_memory_equal(in[i] + 11, buf[i], strlen(buf[i]));
			close(rd[i].fd);
		}
	}
	/* rename without replacing: the second onto an existing name fails */
	memset(ops, 0, sizeof(ops));
	ops[0].kind = DKP_ROP_RENAME_NOREPLACE;
	ops[0].dirfd = ops[0].dirfd2 = dfd;
	ops[0].name = "f00";
	ops[0].name2 = "g00";
	ops[1].kind = DKP_ROP_RENAME_NOREPLACE;
	ops[1].dirfd = ops[1].dirfd2 = dfd;
	ops[1].name = "f01";
	ops[1].name2 = "f02";
	/* a failed writev cancels the fsync linked to it */
	ops[2].kind = DKP_ROP_WRITEV;
	ops[2].fd = openat(dfd, "f03", O_RDONLY);
	ops[2].iov[0].iov_base = (void *)"x";
	ops[2].iov[0].iov_len = 1;
	ops[2].niov = 1;
	ops[3].kind = DKP_ROP_FSYNC;
	ops[3].flags = DKP_ROP_LINK;
	ops[3].fd = ops[2].fd;
	assert_int_equal(dkp_ring_run(r, ops, 4), 0);
	close(ops[2].fd);
	assert_int_equal(ops[0].res, 0);
	assert_int_equal(ops[1].res, -EEXIST);
	assert_int_equal(ops[2].res, -EBADF);
	assert_int_equal(ops[3].res, -ECANCELED);
	/* clean up through the executor */
	memset(ops, 0, sizeof(ops));
	for (i = 0; i < N; i++) {
		ops[i].kind = DKP_ROP_UNLINK;
		ops[i].dirfd = dfd;
		ops[i].name = i == 0 ? "g00" : name[i];
	}
	assert_int_equal(dkp_ring_run(r, ops, (size_t)N), 0);
	for (i = 0; i < N; i++)
		assert_int_equal(ops[i].res, 0);
	close(dfd);
	assert_int_equal(rmdir(dir), 0);
	dkp_ring_free(r);
}

static void syscall_backend(void **st)
{
	(void)st;
	run_scenario(0);
}

static void uring_backend(void **st)
{
	(void)st;
	run_scenario(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(syscall_backend),
		cmocka_unit_test(uring_backend),
	};
	const struct CMUnitTest syscalls_only[] = {
		cmocka_unit_test(syscall_backend),
	};
	struct dkp_ring *r;
	int rc = dkp_ring_new(&r, 16, 1), f;

	if (rc == 0) {
		dkp_ring_free(r);
		UNIT_RUN("test_uring", tests);
	}
	f = cmocka_run_group_tests_name("test_uring", syscalls_only, NULL, NULL);
	if (f != 0) {
		printf("test_uring: 0 passed, %d failed (and io_uring unavailable: %s)\n",
		       f, strerror(-rc));
		return 1;
	}
	printf("test_uring: skipped: io_uring unavailable (io_uring_setup: %s; seccomp, kernel.io_uring_disabled or an old kernel?); only the syscall backend was tested, and it passed\n",
	       strerror(-rc));
	return 77;
}
