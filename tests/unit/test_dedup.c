/* test_dedup.c — the queue directory's de-duplication window
 * (src/transport/dedup.c): IDs, insert, duplicate, a dead hand-over,
 * expiry, sweeping, the size bound and the lock, on a scratch queue. */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/dedup.h"

#define T0 1800000000	/* a bucket boundary for width 10 */

struct fix {
	char dir[64];
	char in[96];
	int tmpfd, newfd;
	struct dkp_dedup *d;
};

static struct fix *fix_new(int64_t window, uint64_t max)
{
	struct fix *f = calloc(1, sizeof(*f));
	char p[160], why[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_dedup.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->in, sizeof(f->in), "%s/in", f->dir);
	assert_int_equal(mkdir(f->in, 0700), 0);
	snprintf(p, sizeof(p), "%s/tmp", f->in);
	assert_int_equal(mkdir(p, 0700), 0);
	f->tmpfd = open(p, O_RDONLY | O_DIRECTORY);
	snprintf(p, sizeof(p), "%s/new", f->in);
	assert_int_equal(mkdir(p, 0700), 0);
	f->newfd = open(p, O_RDONLY | O_DIRECTORY);
	assert_true(f->tmpfd >= 0 && f->newfd >= 0);
	assert_int_equal(dkp_dedup_open(&f->d, f->in, f->tmpfd, window, max,
					why, sizeof(why)), 0);
	return f;
}

static void fix_free(struct fix *f)
{
	char cmd[128];

	dkp_dedup_close(f->d);
	close(f->tmpfd);
	close(f->newfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
}

static int exists_at(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Files (not . and ..) under path, recursively. */
static int count_files(const char *path)
{
	char cmd[256], buf[32];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", path);
	p = popen(cmd, "r");
	if (p && fgets(buf, sizeof(buf), p))
		n = atoi(buf);
	if (p)
		pclose(p);
	return n;
}

/* What enqueue does for id at time now: 1 queued, 0 a duplicate; the
 * message goes to in/new/NAME when publish, else it stays pending (a
 * hand-over killed between its mark and its rename). */
static int hand_over(struct fix *f, const char *id, int64_t now, int publish,
		     const char *name)
{
	char key[DKP_DEDUP_KEY_LEN + 1], pend[DKP_DEDUP_PENDING_MAX];
	int fd, rc;

	dkp_dedup_key(id, key);
	fd = openat(f->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, id, strlen(id)), (ssize_t)strlen(id));
	close(fd);
	assert_int_equal(dkp_dedup_lock(f->d, key, 1000), 0);
	rc = dkp_dedup_check(f->d, key, now);
	assert_true(rc == DKP_DEDUP_NEW || rc == DKP_DEDUP_SEEN);
	if (rc == DKP_DEDUP_SEEN) {
		assert_int_equal(unlinkat(f->tmpfd, name, 0), 0);
		dkp_dedup_unlock(f->d);
		return 0;
	}
	assert_int_equal(dkp_dedup_stage(f->d, key, name), 0);
	assert_false(exists_at(f->tmpfd, name));
	assert_true(exists_at(f->tmpfd, dkp_dedup_pending(key, pend, sizeof(pend))));
	assert_int_equal(dkp_dedup_mark(f->d, key, now), 0);
	if (publish)
		assert_int_equal(renameat(f->tmpfd, pend, f->newfd, name), 0);
	dkp_dedup_unlock(f->d);
	return 1;
}

static int seen(struct fix *f, const char *id, int64_t now)
{
	char key[DKP_DEDUP_KEY_LEN + 1];
	int rc;

	dkp_dedup_key(id, key);
	assert_int_equal(dkp_dedup_lock(f->d, key, 1000), 0);
	rc = dkp_dedup_check(f->d, key, now);
	dkp_dedup_unlock(f->d);
	assert_true(rc == DKP_DEDUP_NEW || rc == DKP_DEDUP_SEEN);
	return rc == DKP_DEDUP_SEEN;
}

static void ids_are_validated_and_mapped(void **st)
{
	const char *why = NULL;
	char id[600], key[DKP_DEDUP_KEY_LEN + 1], key2[DKP_DEDUP_KEY_LEN + 1];
	char safe[256];

	(void)st;
	assert_true(dkp_dedup_id_ok("4F1C2A75.alice@example.net", &why));
	assert_true(dkp_dedup_id_ok("q.j\xc3\xb6rg@example.de", &why));	/* SMTPUTF8 */
	assert_false(dkp_dedup_id_ok("", &why));
	assert_string_equal(why, "is empty");
	assert_false(dkp_dedup_id_ok("a b", &why));
	assert_string_equal(why, "contains a space");
	assert_false(dkp_dedup_id_ok("a\nb", &why));
	assert_string_equal(why, "contains a control character");
	memset(id, 'a', 512);
	id[512] = '\0';
	assert_true(dkp_dedup_id_ok(id, &why));
	id[512] = 'a';
	id[513] = '\0';
	assert_false(dkp_dedup_id_ok(id, &why));
	/* the key: fixed length, lowercase hex, one per ID (SHA-256 of
	 * "abc" starts ba7816bf8f01cfea414140de5dae2223) */
	dkp_dedup_key("abc", key);
	assert_string_equal(key, "ba7816bf8f01cfea414140de5dae2223");
	dkp_dedup_key("abd", key2);
	assert_string_not_equal(key, key2);
	/* a safe form: the ID when it is a valid queue ID, else id-KEY */
	dkp_dedup_safe_id("4F1C2A75.alice@example.net", safe, sizeof(safe));
	assert_string_equal(safe, "4F1C2A75.alice@example.net");
	dkp_dedup_safe_id("abc/../x", safe, sizeof(safe));
	dkp_dedup_key("abc/../x", key);
	assert_int_equal(strncmp(safe, "id-", 3), 0);
	assert_string_equal(safe + 3, key);
	dkp_dedup_safe_id(id, safe, sizeof(safe));	/* 513 bytes */
	assert_int_equal(strlen(safe), 3 + DKP_DEDUP_KEY_LEN);
}

static void insert_then_duplicate(void **st)
{
	struct fix *f = fix_new(80, 1000);

	(void)st;
	assert_false(seen(f, "Q1.a@example.net", T0));
	assert_int_equal(hand_over(f, "Q1.a@example.net", T0, 1, "m1"), 1);
	assert_true(exists_at(f->newfd, "m1"));
	/* the same ID again: seen, its copy dropped, one message */
	assert_int_equal(hand_over(f, "Q1.a@example.net", T0 + 5, 1, "m2"), 0);
	assert_false(exists_at(f->newfd, "m2"));
	assert_false(exists_at(f->tmpfd, "m2"));
	/* another ID is not */
	assert_int_equal(hand_over(f, "Q1.b@example.net", T0 + 5, 1, "m3"), 1);
	assert_int_equal(dkp_dedup_count(f->d, T0 + 5), 2);
	fix_free(f);
}

/* Killed between the mark and the rename into in/new: the next hand-over
 * finds the mark and the pending file, forgets both, and is queued. */
static void dead_hand_over_is_taken_over(void **st)
{
	struct fix *f = fix_new(80, 1000);
	char key[DKP_DEDUP_KEY_LEN + 1], pend[DKP_DEDUP_PENDING_MAX];

	(void)st;
	dkp_dedup_key("Q2.a@example.net", key);
	dkp_dedup_pending(key, pend, sizeof(pend));
	assert_int_equal(hand_over(f, "Q2.a@example.net", T0, 0, "m1"), 1);
	assert_true(exists_at(f->tmpfd, pend));
	assert_false(seen(f, "Q2.a@example.net", T0 + 1));	/* clears it */
	assert_false(exists_at(f->tmpfd, pend));
	assert_int_equal(dkp_dedup_count(f->d, T0 + 1), 0);
	assert_int_equal(hand_over(f, "Q2.a@example.net", T0 + 1, 1, "m2"), 1);
	assert_true(exists_at(f->newfd, "m2"));
	assert_true(seen(f, "Q2.a@example.net", T0 + 2));
	fix_free(f);
}

/* A pending file with no mark (killed after the stage, or between the
 * two removals of a forget) is removed, and the ID is new. */
static void pending_without_mark_is_garbage(void **st)
{
	struct fix *f = fix_new(80, 1000);
	char key[DKP_DEDUP_KEY_LEN + 1], pend[DKP_DEDUP_PENDING_MAX];
	int fd;

	(void)st;
	dkp_dedup_key("Q3.a@example.net", key);
	fd = openat(f->tmpfd, dkp_dedup_pending(key, pend, sizeof(pend)),
		    O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_false(seen(f, "Q3.a@example.net", T0));
	assert_false(exists_at(f->tmpfd, pend));
	fix_free(f);
}

static void forget_undoes_a_mark(void **st)
{
	struct fix *f = fix_new(80, 1000);
	char key[DKP_DEDUP_KEY_LEN + 1], pend[DKP_DEDUP_PENDING_MAX];

	(void)st;
	dkp_dedup_key("Q4.a@example.net", key);
	assert_int_equal(hand_over(f, "Q4.a@example.net", T0, 0, "m1"), 1);
	assert_int_equal(dkp_dedup_lock(f->d, key, 1000), 0);
	assert_int_equal(dkp_dedup_forget(f->d, key, T0), 0);
	dkp_dedup_unlock(f->d);
	assert_false(exists_at(f->tmpfd, dkp_dedup_pending(key, pend, sizeof(pend))));
	assert_int_equal(dkp_dedup_count(f->d, T0), 0);
	assert_false(seen(f, "Q4.a@example.net", T0));
	fix_free(f);
}

/* Window 80 s, buckets of 10 s: an ID is remembered for at least the
 * window and at most the window plus one bucket. */
static void expiry_and_sweep(void **st)
{
	struct fix *f = fix_new(80, 1000);
	char name[16], id[32], p[160];
	int i;

	(void)st;
	for (i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "E%d", i);
		snprintf(name, sizeof(name), "m%d", i);
		assert_int_equal(hand_over(f, id, T0 + 9, 1, name), 1);
	}
	assert_true(seen(f, "E3", T0 + 9 + 79));	/* within the window */
	assert_false(seen(f, "E3", T0 + 91));	/* bucket [T0, T0+10) + 80 */
	assert_int_equal(dkp_dedup_count(f->d, T0 + 91), 0);
	/* nothing is removed while live; then at most max_work per call */
	assert_int_equal(dkp_dedup_sweep(f->d, T0 + 50, 100), 0);
	assert_int_equal(dkp_dedup_sweep(f->d, T0 + 91, 4), 4);
	snprintf(p, sizeof(p), "%s/dedup", f->in);
	assert_int_equal(count_files(p), 1 + 1 + 6);	/* lock, .n0, 6 marks */
	assert_int_equal(dkp_dedup_sweep(f->d, T0 + 91, 100), 6);
	assert_int_equal(count_files(p), 1);	/* the lock file only */
	/* after the window the ID is queued again */
	assert_int_equal(hand_over(f, "E3", T0 + 91, 1, "again"), 1);
	assert_true(exists_at(f->newfd, "again"));
	fix_free(f);
}

/* A sweep also removes the pending file of a dead hand-over whose mark
 * expired, and leaves a busy key's alone. */
static void sweep_removes_dead_pending(void **st)
{
	struct fix *f = fix_new(80, 1000);
	char key[DKP_DEDUP_KEY_LEN + 1], pend[DKP_DEDUP_PENDING_MAX];

	(void)st;
	dkp_dedup_key("P1", key);
	dkp_dedup_pending(key, pend, sizeof(pend));
	assert_int_equal(hand_over(f, "P1", T0, 0, "m1"), 1);
	assert_int_equal(dkp_dedup_sweep(f->d, T0 + 200, 100), 1);
	assert_false(exists_at(f->tmpfd, pend));
	fix_free(f);
}

/* dedup_max 5: the sixth key evicts the oldest other bucket early. */
static void bound_evicts_the_oldest_bucket(void **st)
{
	struct fix *f = fix_new(80, 5);
	char name[16], id[32];
	int i;

	(void)st;
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "A%d", i);
		snprintf(name, sizeof(name), "a%d", i);
		assert_int_equal(hand_over(f, id, T0 + 1, 1, name), 1);
	}
	assert_int_equal(dkp_dedup_count(f->d, T0 + 1), 5);
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "B%d", i);
		snprintf(name, sizeof(name), "b%d", i);
		assert_int_equal(hand_over(f, id, T0 + 11, 1, name), 1);
	}
	assert_int_equal(dkp_dedup_count(f->d, T0 + 12), 5);
	assert_false(seen(f, "A0", T0 + 12));	/* forgotten early */
	assert_true(seen(f, "B0", T0 + 12));
	assert_true(seen(f, "B4", T0 + 12));
	/* the evicted bucket is swept */
	assert_int_equal(dkp_dedup_sweep(f->d, T0 + 12, 100), 5);
	assert_int_equal(dkp_dedup_count(f->d, T0 + 12), 5);
	fix_free(f);
}

/* Two openers (two processes' worth of locks): the second waits, then
 * times out; once the first lets go it gets the key. */
static void lock_excludes_and_times_out(void **st)
{
	struct fix *f = fix_new(80, 1000);
	struct dkp_dedup *d2;
	char why[256], key[DKP_DEDUP_KEY_LEN + 1], other[DKP_DEDUP_KEY_LEN + 1];

	(void)st;
	assert_int_equal(dkp_dedup_open(&d2, f->in, f->tmpfd, 80, 1000, why,
					sizeof(why)), 0);
	dkp_dedup_key("L1", key);
	dkp_dedup_key("L2", other);
	assert_int_equal(dkp_dedup_lock(f->d, key, 0), 0);
	assert_int_equal(dkp_dedup_lock(d2, key, 50), -ETIMEDOUT);
	if (strncmp(key, other, 4) != 0) {	/* another stripe is free */
		assert_int_equal(dkp_dedup_lock(d2, other, 0), 0);
		dkp_dedup_unlock(d2);
	}
	dkp_dedup_unlock(f->d);
	assert_int_equal(dkp_dedup_lock(d2, key, 0), 0);
	dkp_dedup_close(d2);	/* closing releases it */
	assert_int_equal(dkp_dedup_lock(f->d, key, 0), 0);
	dkp_dedup_unlock(f->d);
	fix_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ids_are_validated_and_mapped),
		cmocka_unit_test(insert_then_duplicate),
		cmocka_unit_test(dead_hand_over_is_taken_over),
		cmocka_unit_test(pending_without_mark_is_garbage),
		cmocka_unit_test(forget_undoes_a_mark),
		cmocka_unit_test(expiry_and_sweep),
		cmocka_unit_test(sweep_removes_dead_pending),
		cmocka_unit_test(bound_evicts_the_oldest_bucket),
		cmocka_unit_test(lock_excludes_and_times_out),
	};

	UNIT_RUN("test_dedup", tests);
}
