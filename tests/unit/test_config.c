/* test_config.c — the run configuration: defaults, values, refusals. */
#include "unit.h"

#include <unistd.h>

#include "conf/config.h"

static char path[] = "/tmp/dkp_conf_XXXXXX";

static int load(const char *text, struct dkp_config **c, struct dkp_err *err)
{
	int fd = mkstemp(path);
	int rc;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	rc = dkp_config_load(c, path, NULL, 0, err);
	unlink(path);
	strcpy(path, "/tmp/dkp_conf_XXXXXX");
	return rc;
}

/* --set: replaces the file's settings, refuses what the file would. */
static void overrides_replace_the_file(void **st)
{
	static const char text[] = "queue_dir = /q\nesp_key = e.example:s:/k\n"
				   "threads = 2\nflush = files\n";
	const char *good[] = { "threads=7", "queue_dir = /other", "flush=filesystem",
			       "batch=8" };
	const char *twice[] = { "batch=8", "batch=9" };
	const char *bad[] = { "threads=none" };
	const char *unknown[] = { "colour=blue" };
	struct dkp_config *c;
	struct dkp_err err;
	int fd;

	(void)st;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	if (dkp_config_load(&c, path, NULL, 0, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->threads, 2);
	assert_int_equal(c->flush, DKP_FLUSH_FILES);
	dkp_config_free(c);
	if (dkp_config_load(&c, path, good, 4, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->threads, 7);
	assert_int_equal(c->batch, 8);
	assert_int_equal(c->flush, DKP_FLUSH_FILESYSTEM);
	assert_string_equal(c->in_dir, "/other/in");
	assert_string_equal(c->out_dir, "/other/out");
	dkp_config_free(c);
	assert_int_equal(dkp_config_load(&c, path, twice, 2, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "set twice"));
	assert_int_equal(dkp_config_load(&c, path, bad, 1, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "--set threads=none"));
	assert_int_equal(dkp_config_load(&c, path, unknown, 1, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "unknown setting 'colour'"));
	unlink(path);
	strcpy(path, "/tmp/dkp_conf_XXXXXX");
}

/* The DMARC alignment settings (conf/align.h) through the file and
 * --set: defaults, values, a repeat, a bad value with its line. */
static void alignment_settings(void **st)
{
	const char *over[] = { "unaligned=fail", "public_suffix_list=auto" };
	const char *twice[] = { "unaligned=defer", "unaligned=fail" };
	struct dkp_config *c;
	struct dkp_err err;

	(void)st;
	if (load("queue_dir = /q\nesp_key = e.example:s:/k\n", &c, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->align.mode, DKP_ALIGN_RELAXED);
	assert_int_equal(c->align.action, DKP_UNALIGNED_SIGN);
	assert_null(c->align.psl_file);
	dkp_config_free(c);
	if (load("queue_dir = /q\nesp_key = e.example:s:/k\ndmarc_alignment = strict\n"
		 "unaligned = defer\npublic_suffix_list = /psl.dat\n", &c, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->align.mode, DKP_ALIGN_STRICT);
	assert_int_equal(c->align.action, DKP_UNALIGNED_DEFER);
	assert_string_equal(c->align.psl_file, "/psl.dat");
	dkp_config_free(c);
	assert_int_equal(load("queue_dir = /q\nesp_key = e.example:s:/k\n"
			      "unaligned = defer\nunaligned = fail\n", &c, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, ":4: 'unaligned' is set twice"));
	assert_int_equal(load("queue_dir = /q\nesp_key = e.example:s:/k\n"
			      "dmarc_alignment = loose\n", &c, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, ":3: dmarc_alignment: want relaxed or strict"));
	/* --set replaces the file's value (the path is freed, not leaked) */
	strcpy(path, "/tmp/dkp_conf_XXXXXX");
	{
		int fd = mkstemp(path);
		static const char text[] = "queue_dir = /q\nesp_key = e.example:s:/k\n"
					   "unaligned = defer\npublic_suffix_list = /psl.dat\n";

		assert_true(fd >= 0);
		assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
		close(fd);
	}
	if (dkp_config_load(&c, path, over, 2, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->align.action, DKP_UNALIGNED_FAIL);
	assert_null(c->align.psl_file);
	dkp_config_free(c);
	assert_int_equal(dkp_config_load(&c, path, twice, 2, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "set twice"));
	unlink(path);
	strcpy(path, "/tmp/dkp_conf_XXXXXX");
}

static void minimal_file_gets_defaults(void **st)
{
	struct dkp_config *c;
	struct dkp_err err;

	(void)st;
	if (load("queue_dir = /q\nesp_key = ESP.example:sel:/k/esp.pem\n", &c, &err))
		fail_msg("%s", err.msg);
	assert_string_equal(c->in_dir, "/q/in");
	assert_string_equal(c->out_dir, "/q/out");
	assert_string_equal(c->failed_dir, "/q/failed");
	assert_string_equal(c->esp_domain, "esp.example");
	assert_string_equal(c->esp_selector, "sel");
	assert_string_equal(c->esp_keyfile, "/k/esp.pem");
	assert_null(c->key_table);
	assert_int_equal(c->missing_key, DKP_MISSING_ESP_ONLY);
	assert_int_equal(c->hcanon, DKP_CANON_RELAXED);
	assert_int_equal(c->bcanon, DKP_CANON_RELAXED);
	assert_int_equal(c->nheaders, 0);
	assert_true(c->threads >= 1);
	assert_int_equal(c->batch, DKP_DEF_BATCH);
	assert_int_equal(c->inflight_bytes, DKP_DEF_INFLIGHT_BYTES);
	assert_int_equal(c->out_mode, 0600);
	assert_int_equal(c->out_gid, -1);
	assert_int_equal(c->limits.max_message_bytes, DKP_DEFAULT_MAX_MESSAGE_BYTES);
	assert_int_equal(c->io, DKP_IO_AUTO);
	assert_int_equal(c->flush, DKP_FLUSH_FILESYSTEM);
	assert_int_equal(c->self_verify, 1);		/* rsa */
	assert_int_equal(c->self_verify_rsa_only, 1);
	assert_int_equal(c->rsa_backend, DKP_RSA_AUTO);
	dkp_config_free(c);
}

/* self_verify and rsa_backend: every value, and the refusals. */
static void check_and_backend_settings(void **st)
{
	static const struct { const char *line; unsigned sv; int ro, be; } good[] = {
		{ "self_verify = off", 0, 0, DKP_RSA_AUTO },
		{ "self_verify = all", 1, 0, DKP_RSA_AUTO },
		{ "self_verify = rsa", 1, 1, DKP_RSA_AUTO },
		{ "self_verify = sample:100", 100, 0, DKP_RSA_AUTO },
		{ "rsa_backend = openssl", 1, 1, DKP_RSA_OPENSSL },
		{ "rsa_backend = ifma", 1, 1, DKP_RSA_IFMA },
		{ "rsa_backend = auto", 1, 1, DKP_RSA_AUTO },
	};
	static const char *const bad_lines[] = {
		"self_verify = some", "self_verify = sample:0", "self_verify = sample:",
		"self_verify = sample:x", "rsa_backend = gmp",
	};
	struct dkp_config *c;
	struct dkp_err err;
	char text[256];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "queue_dir = /q\nesp_key = e.example:s:/k\n%s\n",
			 good[i].line);
		if (load(text, &c, &err))
			fail_msg("%s: %s", good[i].line, err.msg);
		assert_int_equal(c->self_verify, good[i].sv);
		assert_int_equal(c->self_verify_rsa_only, good[i].ro);
		assert_int_equal(c->rsa_backend, good[i].be);
		dkp_config_free(c);
	}
	for (i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
		c = NULL;
		snprintf(text, sizeof(text), "queue_dir = /q\nesp_key = e.example:s:/k\n%s\n",
			 bad_lines[i]);
		if (load(text, &c, &err) == DKP_OK)
			fail_msg("%s: accepted", bad_lines[i]);
		assert_true(strstr(err.msg, ":3: ") != NULL);
	}
}

static void every_setting_parses(void **st)
{
	struct dkp_config *c;
	struct dkp_err err;

	(void)st;
	if (load("# full\n"
		 "in_dir = /a/in   # trailing comment\n"
		 "out_dir=/a/out\n"
		 "  failed_dir =   /a/failed  \n"
		 "esp_key = esp.example:e1:/k/e.pem\n"
		 "key_table = /k/KeyTable\n"
		 "signing_table = refile:/k/SigningTable\n"
		 "missing_key = defer\n"
		 "canonicalization = simple/relaxed\n"
		 "headers = From:To:Subject\n"
		 "expire = 604800\n"
		 "threads = 3\n"
		 "batch = 7\n"
		 "uring_depth = 64\n"
		 "io = syscalls\n"
		 "inflight_bytes = 64M\n"
		 "max_message_size = 10M\n"
		 "max_header_bytes = 64K\n"
		 "max_header_fields = 300\n"
		 "key_cache = 500\n"
		 "insecure_key_perms = yes\n"
		 "out_mode = 0660\n"
		 "out_group = root\n", &c, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(c->out_mode, 0660);
	assert_int_equal(c->out_gid, 0);
	assert_string_equal(c->failed_dir, "/a/failed");
	assert_string_equal(c->signing_table, "refile:/k/SigningTable");
	assert_int_equal(c->missing_key, DKP_MISSING_DEFER);
	assert_int_equal(c->hcanon, DKP_CANON_SIMPLE);
	assert_int_equal(c->bcanon, DKP_CANON_RELAXED);
	assert_int_equal(c->nheaders, 3);
	assert_string_equal(c->headers[2], "Subject");
	assert_int_equal(c->expire, 604800);
	assert_int_equal(c->threads, 3);
	assert_int_equal(c->batch, 7);
	assert_int_equal(c->uring_depth, 64);
	assert_int_equal(c->io, DKP_IO_SYSCALLS);
	assert_int_equal(c->inflight_bytes, 64u << 20);
	assert_int_equal(c->limits.max_message_bytes, 10u << 20);
	assert_int_equal(c->limits.max_header_bytes, 64u << 10);
	assert_int_equal(c->limits.max_fields, 300);
	assert_int_equal(c->key_cache, 500);
	assert_int_equal(c->insecure_key_perms, 1);
	dkp_config_free(c);
}

static const struct {
	const char *name, *text, *why;
} bad[] = {
	{ "unknown key", "queue_dir=/q\nesp_key=e.example:s:/k\nthreds = 2\n", ":3: unknown setting 'threds'" },
	{ "repeated key", "queue_dir=/q\nqueue_dir=/r\nesp_key=e.example:s:/k\n", ":2: 'queue_dir' is set twice" },
	{ "no equals", "queue_dir /q\n", ":1: want 'key = value'" },
	{ "empty value", "queue_dir =\n", "no value" },
	{ "no esp_key", "queue_dir=/q\n", "esp_key" },
	{ "no queue", "esp_key=e.example:s:/k\n", "queue_dir" },
	{ "esp_key shape", "queue_dir=/q\nesp_key=e.example:/k\n", "DOMAIN:SELECTOR:KEYFILE" },
	{ "tables apart", "queue_dir=/q\nesp_key=e.example:s:/k\nkey_table=/kt\n", "go together" },
	{ "missing_key value", "queue_dir=/q\nesp_key=e.example:s:/k\nmissing_key=maybe\n", "esp-only" },
	{ "canon value", "queue_dir=/q\nesp_key=e.example:s:/k\ncanonicalization=loose\n", "simple or relaxed" },
	{ "headers without From", "queue_dir=/q\nesp_key=e.example:s:/k\nheaders=To:Subject\n", "From" },
	{ "headers with DKIM-Signature", "queue_dir=/q\nesp_key=e.example:s:/k\nheaders=From:DKIM-Signature\n", "DKIM-Signature" },
	{ "threads range", "queue_dir=/q\nesp_key=e.example:s:/k\nthreads=1000\n", "256" },
	{ "batch zero", "queue_dir=/q\nesp_key=e.example:s:/k\nbatch=0\n", "1 to 4096" },
	{ "size suffix", "queue_dir=/q\nesp_key=e.example:s:/k\ninflight_bytes=12Q\n", "size" },
	{ "bool", "queue_dir=/q\nesp_key=e.example:s:/k\ninsecure_key_perms=perhaps\n", "yes or no" },
	{ "io value", "queue_dir=/q\nesp_key=e.example:s:/k\nio=aio\n", "uring" },
	{ "multiple_signatures value", "queue_dir=/q\nesp_key=e.example:s:/k\nmultiple_signatures=some\n", "all" },
	{ "esp_stream value", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_stream=recipient\n", "header:NAME" },
	{ "esp_stream From", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_stream=header:From\n", "header:NAME" },
	{ "esp_stream bad name", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_stream=header:X;y\n", "header:NAME" },
	{ "esp_stream alone", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_stream=sender\n", "go together" },
	{ "esp_stream_table alone", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_stream_table=/t\n", "go together" },
	{ "nine esp_keys", "queue_dir=/q\nesp_key=e.example:s:/k\nesp_key=e.example:s:/k\n"
	  "esp_key=e.example:s:/k\nesp_key=e.example:s:/k\nesp_key=e.example:s:/k\n"
	  "esp_key=e.example:s:/k\nesp_key=e.example:s:/k\nesp_key=e.example:s:/k\n"
	  "esp_key=e.example:s:/k\n", "at most 8" },
	{ "out_mode exec", "queue_dir=/q\nesp_key=e.example:s:/k\nout_mode=0750\n", "no execute bits" },
	{ "out_mode owner", "queue_dir=/q\nesp_key=e.example:s:/k\nout_mode=0440\n", "0600" },
	{ "out_mode decimal", "queue_dir=/q\nesp_key=e.example:s:/k\nout_mode=640\n", "octal" },
	{ "out_group", "queue_dir=/q\nesp_key=e.example:s:/k\nout_group=no-such-group-x\n", "group" },
};

/* Issue 17: several esp_key lines, multiple_signatures, key_policy,
 * esp_stream; --set esp_key lines replace the file's and add up. */
static void signing_policy_settings(void **st)
{
	static const char text[] = "queue_dir = /q\n"
				   "esp_key = esp.example:rsa1:/k/rsa1\n"
				   "esp_key = ESP.example:ed1:/k/ed1\n"
				   "multiple_signatures = yes\n"
				   "key_policy = /etc/kp\n"
				   "esp_stream = header:X-ESP-Stream\n"
				   "esp_stream_table = /etc/streams\n";
	const char *sets[] = { "esp_key=o.example:a:/k/a", "esp_key=o.example:b:/k/b",
			       "multiple_signatures=all" };
	struct dkp_config *c;
	struct dkp_err err;
	int fd;

	(void)st;
	assert_int_equal(load(text, &c, &err), DKP_OK);
	assert_int_equal(c->nesp, 2);
	assert_string_equal(c->esp[1].domain, "esp.example");
	assert_string_equal(c->esp[1].selector, "ed1");
	assert_string_equal(c->esp_selector, "rsa1");	/* esp[0]'s */
	assert_int_equal(c->multiple_signatures, DKP_MULTI_OPENDKIM);
	assert_string_equal(c->key_policy, "/etc/kp");
	assert_int_equal(c->esp_stream, DKP_STREAM_HEADER);
	assert_string_equal(c->esp_stream_header, "X-ESP-Stream");
	dkp_config_free(c);

	assert_int_equal(load("queue_dir=/q\nesp_key=e.example:s:/k\n", &c, &err), DKP_OK);
	assert_int_equal(c->multiple_signatures, DKP_MULTI_NO);	/* the default */
	assert_int_equal(c->esp_stream, DKP_STREAM_NONE);
	assert_int_equal(c->nesp, 1);
	dkp_config_free(c);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(dkp_config_load(&c, path, sets, 3, &err), DKP_OK);
	unlink(path);
	strcpy(path, "/tmp/dkp_conf_XXXXXX");
	assert_int_equal(c->nesp, 2);
	assert_string_equal(c->esp[0].selector, "a");
	assert_string_equal(c->esp[1].selector, "b");
	assert_string_equal(c->esp_domain, "o.example");
	assert_int_equal(c->multiple_signatures, DKP_MULTI_ALL);
	dkp_config_free(c);
}

static void bad_files_name_file_and_line(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dkp_config *c = NULL;
		struct dkp_err err;

		if (load(bad[i].text, &c, &err) == DKP_OK || strstr(err.msg, bad[i].why) == NULL)
			fail_msg("%s: got '%s', want '%s'", bad[i].name,
				 c ? "accepted" : err.msg, bad[i].why);
		assert_true(strstr(err.msg, "/tmp/dkp_conf_") != NULL);
		assert_null(c);
	}
}

static void missing_file_is_an_io_error(void **st)
{
	struct dkp_config *c;
	struct dkp_err err;

	(void)st;
	assert_int_equal(dkp_config_load(&c, "/nonexistent/dkimpress.conf", NULL, 0, &err), DKP_E_IO);
	assert_non_null(strstr(err.msg, "/nonexistent/dkimpress.conf"));
}

static void sizes(void **st)
{
	uint64_t v;

	(void)st;
	assert_int_equal(dkp_config_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(dkp_config_size("256M", &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(dkp_config_size("1g", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(dkp_config_size("2KB", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(dkp_config_size("-1", &v), -1);
	assert_int_equal(dkp_config_size("M", &v), -1);
	assert_int_equal(dkp_config_size("99999999999999999999G", &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(minimal_file_gets_defaults),
		cmocka_unit_test(check_and_backend_settings),
		cmocka_unit_test(overrides_replace_the_file),
		cmocka_unit_test(alignment_settings),
		cmocka_unit_test(every_setting_parses),
		cmocka_unit_test(bad_files_name_file_and_line),
		cmocka_unit_test(signing_policy_settings),
		cmocka_unit_test(missing_file_is_an_io_error),
		cmocka_unit_test(sizes),
	};

	UNIT_RUN("test_config", tests);
}
