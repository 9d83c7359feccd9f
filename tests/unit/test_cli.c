/*
 * test_cli.c — the table-driven command line (src/cmd/cli.c,
 * cli_cmds.c): options land in their fields, ranges and cross-checks are
 * enforced, and every option of every command is in its --help (both come
 * from one table), with no line over 79 columns.
 */
#include "unit.h"

#include "base/err.h"
#include "cmd/cli.h"
#include "cmd/cli_int.h"

static int parse(struct dkp_cli *c, struct dkp_err *e, char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	dkp_err_clear(e);
	return dkp_cli_parse(c, argc, argv, e);
}

#define ARGV(...) ((char *[]){ "dkimpress", __VA_ARGS__, NULL })

static void sign_options(void **state)
{
	struct dkp_cli c;
	struct dkp_err e;

	(void)state;
	assert_int_equal(parse(&c, &e, ARGV("sign", "-k", "Ex.COM:s1:/k.pem", "--key",
					     "b.example:s2:k2", "-c", "simple/relaxed",
					     "-H", "From:To", "-x", "60", "--time", "100",
					     "--insecure-key-perms", "msg.eml")), DKP_OK);
	assert_int_equal(c.cmd, DKP_CMD_SIGN);
	assert_int_equal(c.nkeys, 2);
	assert_string_equal(c.keys[0].domain, "ex.com");
	assert_string_equal(c.keys[0].selector, "s1");
	assert_string_equal(c.keys[0].path, "/k.pem");
	assert_int_equal(c.hcanon, DKP_CANON_SIMPLE);
	assert_int_equal(c.bcanon, DKP_CANON_RELAXED);
	assert_int_equal(c.nheaders, 2);
	assert_string_equal(c.headers[1], "To");
	assert_int_equal(c.expire, 60);
	assert_int_equal(c.time, 100);
	assert_true(c.key_flags & DKP_KEY_INSECURE_PERMS);
	assert_string_equal(c.in, "msg.eml");
	dkp_cli_free(&c);
	/* defaults */
	assert_int_equal(parse(&c, &e, ARGV("sign", "-k", "a.example:s:f")), DKP_OK);
	assert_int_equal(c.time, -1);
	assert_int_equal(c.hcanon, DKP_CANON_RELAXED);
	assert_null(c.in);
	dkp_cli_free(&c);
}

static void errors(void **state)
{
	struct dkp_cli c;
	struct dkp_err e;

	(void)state;
	assert_int_equal(parse(&c, &e, ARGV("sign", "msg")), DKP_E_USAGE);
	assert_non_null(strstr(e.msg, "at least one --key"));
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("sign", "-k", "a.example:s:f", "--nope")),
			 DKP_E_USAGE);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("bench", "-c", "x", "--seconds", "0")),
			 DKP_E_USAGE);
	assert_non_null(strstr(e.msg, "--seconds wants 1 to 3600"));
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("run", "--once")), DKP_E_USAGE);
	assert_non_null(strstr(e.msg, "run needs -c CONF"));
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("run", "-c", "x", "extra")), DKP_E_USAGE);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("enqueue", "-c", "x", "-r", "a@b.example")),
			 DKP_E_USAGE);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("keygen", "--domain", "a.example", "-s", "s",
					     "-t", "ed25519", "-b", "2048")), DKP_E_USAGE);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("frobnicate")), DKP_E_USAGE);
	dkp_cli_free(&c);
}

static void other_commands(void **state)
{
	struct dkp_cli c;
	struct dkp_err e;

	(void)state;
	assert_int_equal(parse(&c, &e, ARGV("keygen", "-d", "a.example", "-s", "k1")), DKP_OK);
	assert_int_equal(c.bits, 2048);
	assert_int_equal(c.type, DKP_ALG_RSA_SHA256);
	assert_string_equal(c.outdir, ".");
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("bench", "-c", "x", "--corpus", "d", "--phases",
					     "io,engine3", "--messages", "500", "--set",
					     "threads=2", "--keep")), DKP_OK);
	assert_int_equal(c.messages, 500);
	assert_int_equal(c.seconds, 3);
	assert_int_equal(c.nsets, 1);
	assert_true(c.keep);
	assert_true(c.phases & DKP_PHASE_IO);
	assert_false(c.phases & DKP_PHASE_CRYPTO);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("enqueue", "-c", "x", "-f", "", "-r", "a@b.example",
					     "-r", "c@d.example", "-")), DKP_OK);
	assert_int_equal(c.nrcpts, 2);
	assert_string_equal(c.rcpts[1], "c@d.example");
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("check", "-c", "x", "--json")), DKP_OK);
	assert_true(c.check_json);
	assert_true(c.dns_timeout > 0 && c.concurrency > 0);
	dkp_cli_free(&c);
	assert_int_equal(parse(&c, &e, ARGV("verify", "--help")), DKP_OK);
	assert_true(c.help);
	assert_int_equal(c.cmd, DKP_CMD_VERIFY);
	dkp_cli_free(&c);
}

/* Every option of every command is in its --help, and the lines fit. */
static void help_from_table(void **state)
{
	const struct dkp_cmd_def *d;
	const struct dkp_opt *o;
	char want[64];

	(void)state;
	for (d = dkp_cli_cmds; d->name; d++) {
		const char *h = dkp_cli_usage(d->cmd), *p, *nl;

		for (o = d->opts; o->name; o++) {
			snprintf(want, sizeof(want), "--%s", o->name);
			if (strstr(h, want) == NULL)
				fail_msg("%s --help lacks %s", d->name, want);
			if (o->shrt) {
				snprintf(want, sizeof(want), "  -%c, --%s", o->shrt, o->name);
				if (strstr(h, want) == NULL)
					fail_msg("%s --help lacks '%s'", d->name, want);
			}
		}
		for (p = h; *p; p = nl + 1) {
			nl = strchr(p, '\n');
			if (nl == NULL)
				break;
			if (nl - p > 79)
				fail_msg("%s --help: a line of %d columns", d->name, (int)(nl - p));
		}
		assert_non_null(strstr(dkp_cli_usage(DKP_CMD_HELP), d->name));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sign_options),
		cmocka_unit_test(errors),
		cmocka_unit_test(other_commands),
		cmocka_unit_test(help_from_table),
	};

	UNIT_RUN("test_cli", tests);
}
