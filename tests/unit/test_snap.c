/* test_snap.c — signing snapshots: loading, refusals, the route cache. */
#include "unit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/htab.h"
#include "conf/snap.h"

static char dir[] = "/tmp/dkp_snap_XXXXXX";

static void put(const char *name, const char *text, mode_t mode)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void putkey(const char *name)
{
	struct dkp_buf pem, rec;
	struct dkp_err err;

	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	assert_int_equal(dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err), DKP_OK);
	put(name, pem.p, 0600);
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
}

static int setup(void **st)
{
	char text[1024];

	(void)st;
	if (mkdtemp(dir) == NULL)
		return -1;
	putkey("esp.pem");
	putkey("a.pem");
	snprintf(text, sizeof(text), "ka a.example:s1:%s/a.pem\n", dir);
	put("KeyTable", text, 0644);
	put("SigningTable", "*@a.example ka\n*@*.a.example ka\n", 0644);
	snprintf(text, sizeof(text),
		 "queue_dir = %s/q\nesp_key = esp.example:e:%s/esp.pem\n"
		 "key_table = %s/KeyTable\nsigning_table = refile:%s/SigningTable\n",
		 dir, dir, dir, dir);
	put("good.conf", text, 0644);
	return 0;
}

static int teardown(void **st)
{
	char cmd[64];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void loads_and_caches_routes_both_ways(void **st)
{
	struct dkp_snap *s;
	struct dkp_err err;
	char path[128];
	const struct dkp_keyent *k;

	(void)st;
	snprintf(path, sizeof(path), "%s/good.conf", dir);
	if (dkp_snap_load(&s, path, NULL, 0, &err) != DKP_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(dkp_key_alg(s->esp_key), DKP_ALG_ED25519_SHA256);
	/* a small table is parsed at load: one key loaded already */
	assert_int_equal(dkp_keycache_loaded(s->keys), 1);
	k = dkp_snap_route(s, "news", "mail.a.example");
	assert_non_null(k);
	assert_string_equal(k->name, "ka");
	assert_ptr_equal(dkp_snap_route(s, "news", "mail.a.example"), k);
	assert_null(dkp_snap_route(s, "x", "nokey.example"));
	assert_null(dkp_snap_route(s, "x", "nokey.example"));	/* cached miss */
	assert_int_equal(dkp_htab_count(s->rcache), 2);
	dkp_snap_ref(s);
	dkp_snap_unref(s);
	dkp_snap_unref(s);
}

static void a_key_that_does_not_parse_stops_loading(void **st)
{
	struct dkp_snap *s = NULL;
	struct dkp_err err;
	char path[128], text[512];

	(void)st;
	put("bad.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600);
	snprintf(text, sizeof(text), "kb b.example:s1:%s/bad.pem\n", dir);
	put("KeyTable.bad", text, 0644);
	put("SigningTable.bad", "*@b.example kb\n", 0644);
	snprintf(text, sizeof(text),
		 "queue_dir = %s/q\nesp_key = esp.example:e:%s/esp.pem\n"
		 "key_table = %s/KeyTable.bad\nsigning_table = refile:%s/SigningTable.bad\n",
		 dir, dir, dir, dir);
	put("bad.conf", text, 0644);
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	assert_int_equal(dkp_snap_load(&s, path, NULL, 0, &err), DKP_E_KEY);
	assert_non_null(strstr(err.msg, "failed to load"));
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(loads_and_caches_routes_both_ways),
		cmocka_unit_test(a_key_that_does_not_parse_stops_loading),
	};

	UNIT_RUN_WITH("test_snap", tests, setup, teardown);
}
