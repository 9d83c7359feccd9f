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

/* Issue 17: key_policy lines attach to KeyTable and ESP keys; a line that
 * names no key or gives an i= outside its d= refuses the snapshot; with
 * multiple_signatures every key of the matches comes back (and is
 * cached); the stream table picks ESP keys, the esp_key lines otherwise. */
static void policy_streams_and_several_keys(void **st)
{
	struct dkp_snap *s = NULL;
	struct dkp_err err;
	const struct dkp_keyent *k[DKP_ROUTE_MAX_KEYS];
	const struct dkp_espset *e;
	char path[128], text[1024];
	static const struct { const char *pol, *why; } bad[] = {
		{ "nosuch expire=5\n", "1 problem" },
		{ "ka identity=x@other.example\n", "1 problem" },
		{ "esp.example:e identity=@a.example\n", "1 problem" },
		{ "kp identity=x@a.example\n", "1 problem" },	/* kp is d=% */
	};
	size_t i;

	(void)st;
	putkey("b.pem");
	snprintf(text, sizeof(text), "ka a.example:s1:%s/a.pem\nkb a.example:s2:%s/b.pem\n"
		 "kp %%:p:%s/b.pem\n", dir, dir, dir);
	put("KT2", text, 0644);
	put("ST2", "*@a.example ka\n*@*.example kb,kp\n", 0644);
	snprintf(text, sizeof(text), "stream1 esp.example:t:%s/b.pem\n", dir);
	put("streams", text, 0644);
	put("policy", "ka canonicalization=simple/simple\nesp.example:t expire=60\n"
	    "kp identity=bounce@%\n", 0644);
	snprintf(text, sizeof(text),
		 "queue_dir = %s/q\nesp_key = esp.example:e:%s/esp.pem\n"
		 "esp_key = esp.example:e2:%s/a.pem\n"
		 "key_table = %s/KT2\nsigning_table = refile:%s/ST2\n"
		 "multiple_signatures = yes\nkey_policy = %s/policy\n"
		 "esp_stream = header:X-Stream\nesp_stream_table = %s/streams\n",
		 dir, dir, dir, dir, dir, dir, dir);
	put("multi.conf", text, 0644);
	snprintf(path, sizeof(path), "%s/multi.conf", dir);
	if (dkp_snap_load(&s, path, NULL, 0, &err) != DKP_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(dkp_snap_route_all(s, "x", "a.example", k, DKP_ROUTE_MAX_KEYS), 3);
	assert_string_equal(k[0]->name, "ka");
	assert_string_equal(k[2]->name, "kp");
	assert_int_equal(dkp_snap_route_all(s, "x", "a.example", k, DKP_ROUTE_MAX_KEYS), 3);
	assert_int_equal(dkp_snap_route_all(s, "x", "a.example", k, 1), 1);
	assert_int_equal(dkp_htab_count(s->rcache), 1);
	assert_non_null(s->kpol[0]);
	assert_int_equal(s->kpol[0]->hcanon, DKP_CANON_SIMPLE);
	assert_null(s->kpol[1]);
	assert_int_equal(s->esp.n, 2);
	assert_null(s->esp.k[0].pol);
	e = dkp_snap_esp_for(s, "Stream1", 7);
	assert_int_equal(e->n, 1);
	assert_string_equal(e->k[0].spec->selector, "t");
	assert_non_null(e->k[0].pol);
	assert_int_equal(e->k[0].pol->expire, 60);
	assert_ptr_equal(dkp_snap_esp_for(s, "other", 5), &s->esp);
	dkp_snap_unref(s);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put("policy", bad[i].pol, 0644);
		s = NULL;
		if (dkp_snap_load(&s, path, NULL, 0, &err) == DKP_OK ||
		    strstr(err.msg, bad[i].why) == NULL)
			fail_msg("%s: got '%s'", bad[i].pol, s ? "loaded" : err.msg);
		assert_null(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policy_streams_and_several_keys),
		cmocka_unit_test(loads_and_caches_routes_both_ways),
		cmocka_unit_test(a_key_that_does_not_parse_stops_loading),
	};

	UNIT_RUN_WITH("test_snap", tests, setup, teardown);
}
