/*
 * cli.c — parse the command line with the option tables of cli_cmds.c,
 * and print each command's --help from the same tables; see cli.h and
 * cli_int.h.
 */
#include "cmd/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "cmd/cli_int.h"
#include "dkim/sigfmt.h"

#define MAX_OPTS 32		/* options of one command, --help included */
#define HELP_WIDTH 79		/* --help lines are at most this long */
#define HELP_COL_MAX 26		/* where option descriptions start, at most */
#define VAL_BASE 1000		/* getopt values of long-only options */

int dkp_cli_int64(const char *s, int64_t *v, int64_t min, int64_t max)
{
	char *end;
	long long x;

	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno || end == s || *end || x < min || x > max)
		return -1;
	*v = x;
	return 0;
}

int dkp_cli_bad_arg(struct dkp_err *err, const char *opt, const char *arg)
{
	char esc[200];

	return dkp_err_set(err, DKP_E_USAGE, 0, "usage", "invalid value for %s: '%s'",
			   opt, dkp_sigfmt_escape(arg, strlen(arg), esc, sizeof(esc)));
}

static const struct dkp_cmd_def *find_cmd(const char *name)
{
	const struct dkp_cmd_def *d;

	for (d = dkp_cli_cmds; d->name; d++)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

/* ---- parsing -------------------------------------------------------- */

/* One option's argument (NULL for a flag) into c. */
static int apply_opt(const struct dkp_opt *o, struct dkp_cli *c, const char *arg,
		     struct dkp_err *err)
{
	char *field = (char *)c + o->off;
	int64_t v;

	if (o->fn)
		return o->fn(c, arg, err);
	switch (o->kind) {
	case DKP_OPT_FLAG:
		*(int *)(void *)field = 1;
		return DKP_OK;
	case DKP_OPT_STR:
		*(const char **)(void *)field = arg;
		return DKP_OK;
	default:
		break;
	}
	if (dkp_cli_int64(arg, &v, o->min, o->max)) {
		char esc[100];

		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "--%s wants %lld to %lld, not '%s'", o->name,
				   (long long)o->min, (long long)o->max,
				   dkp_sigfmt_escape(arg, strlen(arg), esc, sizeof(esc)));
	}
	switch (o->kind) {
	case DKP_OPT_I64: *(int64_t *)(void *)field = v; break;
	case DKP_OPT_INT: *(int *)(void *)field = (int)v; break;
	case DKP_OPT_UINT: *(unsigned *)(void *)field = (unsigned)v; break;
	case DKP_OPT_SIZE: *(size_t *)(void *)field = (size_t)v; break;
	default: break;
	}
	return DKP_OK;
}

/* getopt_long's tables for d: lo[] and the short-option string. */
static size_t getopt_tables(const struct dkp_cmd_def *d, struct option *lo,
			    char *shorts, size_t shortsz)
{
	size_t n, k = 0;

	shorts[k++] = '+';	/* stop at the first operand */
	for (n = 0; d->opts[n].name && n < MAX_OPTS - 2; n++) {
		const struct dkp_opt *o = &d->opts[n];

		lo[n].name = o->name;
		lo[n].has_arg = o->arg ? required_argument : no_argument;
		lo[n].flag = NULL;
		lo[n].val = o->shrt ? o->shrt : VAL_BASE + (int)n;
		if (o->shrt && k + 3 < shortsz) {
			shorts[k++] = o->shrt;
			if (o->arg)
				shorts[k++] = ':';
		}
	}
	lo[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n + 1] = (struct option){ NULL, 0, NULL, 0 };
	shorts[k++] = 'h';
	shorts[k] = '\0';
	return n;
}

static const struct dkp_opt *opt_of(const struct dkp_cmd_def *d, size_t n, int val)
{
	size_t i;

	if (val >= VAL_BASE && (size_t)(val - VAL_BASE) < n)
		return &d->opts[val - VAL_BASE];
	for (i = 0; i < n; i++)
		if (d->opts[i].shrt && d->opts[i].shrt == val)
			return &d->opts[i];
	return NULL;
}

static int parse_cmd(const struct dkp_cmd_def *d, struct dkp_cli *c, int argc,
		     char **argv, struct dkp_err *err)
{
	struct option lo[MAX_OPTS];
	char shorts[2 * MAX_OPTS + 4];
	const struct dkp_opt *o;
	size_t n = getopt_tables(d, lo, shorts, sizeof(shorts));
	int val, rc;

	c->cmd = d->cmd;
	if (d->defaults)
		d->defaults(c);
	while ((val = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		if (val == 'h') {
			c->help = 1;
			return DKP_OK;
		}
		if ((o = opt_of(d, n, val)) == NULL)
			return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
					   "see 'dkimpress %s --help'", d->name);
		if ((rc = apply_opt(o, c, optarg, err)) != DKP_OK)
			return rc;
	}
	return d->finish ? d->finish(c, argc, argv, optind, err) : DKP_OK;
}

int dkp_cli_parse(struct dkp_cli *c, int argc, char **argv,
		  struct dkp_err *err)
{
	const struct dkp_cmd_def *d;
	const char *cmd;

	memset(c, 0, sizeof(*c));
	if (argc < 2)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "no command; try 'dkimpress --help'");
	cmd = argv[1];
	optind = 0;	/* glibc: full re-initialisation; argv[1] acts as argv[0] */
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		c->cmd = DKP_CMD_HELP;
		return DKP_OK;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		c->cmd = DKP_CMD_VERSION;
		return DKP_OK;
	}
	if ((d = find_cmd(cmd)) == NULL)
		return dkp_err_set(err, DKP_E_USAGE, 0, "usage",
				   "unknown command '%s'; try 'dkimpress --help'", cmd);
	return parse_cmd(d, c, argc - 1, argv + 1, err);
}

void dkp_cli_free(struct dkp_cli *c)
{
	dkp_free(c->headers_buf);
	c->headers_buf = NULL;
	dkp_free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpts = 0;
}

/* ---- --help --------------------------------------------------------- */

/* "  -k, --key D:S:FILE" */
static int opt_label(const struct dkp_opt *o, char *out, size_t outsz)
{
	return snprintf(out, outsz, "  %c%c%s--%s%s%s", o->shrt ? '-' : ' ',
			o->shrt ? o->shrt : ' ', o->shrt ? ", " : "  ", o->name,
			o->arg ? " " : "", o->arg ? o->arg : "");
}

/* text wrapped into lines of at most HELP_WIDTH, each after indent spaces;
 * the first line continues what b holds at column col. */
static void wrap(struct dkp_buf *b, const char *text, size_t col, size_t indent)
{
	const char *p = text;

	while (*p) {
		size_t wl = strcspn(p, " ");

		if (col > indent && col + 1 + wl > HELP_WIDTH) {
			dkp_buf_adds(b, "\n");
			for (col = 0; col < indent; col++)
				dkp_buf_adds(b, " ");
		} else if (col > indent) {
			dkp_buf_adds(b, " ");
			col++;
		}
		for (; col < indent; col++)
			dkp_buf_adds(b, " ");
		dkp_buf_add(b, p, wl);
		col += wl;
		p += wl;
		p += strspn(p, " ");
	}
	dkp_buf_adds(b, "\n");
}

static void render_opts(struct dkp_buf *b, const struct dkp_opt *opts)
{
	static const struct dkp_opt help = { 'h', "help", NULL, DKP_OPT_FLAG, 0, 0, 0,
					     NULL, "this text" };
	const struct dkp_opt *o;
	char label[96];
	size_t col = 0, w;

	for (o = opts; o->name; o++) {
		w = (size_t)opt_label(o, label, sizeof(label)) + 2;
		if (w <= HELP_COL_MAX && w > col)
			col = w;
	}
	for (o = opts;; o++) {
		const struct dkp_opt *x = o->name ? o : &help;

		w = (size_t)opt_label(x, label, sizeof(label));
		dkp_buf_adds(b, label);
		if (w + 2 > col) {	/* too long: the text on the next line */
			dkp_buf_adds(b, "\n");
			w = 0;
		}
		wrap(b, x->help, w, col);
		if (!o->name)
			break;
	}
}

static void render_main(struct dkp_buf *b)
{
	const struct dkp_cmd_def *d;
	char line[128];

	dkp_buf_adds(b, "usage: dkimpress COMMAND [OPTIONS]\n\n"
			"DKIM-sign mail in bulk (RFC 6376, RFC 8301, RFC 8463).\n\n"
			"commands:\n");
	for (d = dkp_cli_cmds; d->name; d++) {
		snprintf(line, sizeof(line), "  %-8s %s\n", d->name, d->summary);
		dkp_buf_adds(b, line);
	}
	dkp_buf_adds(b, "  help     this text; 'dkimpress COMMAND --help' for a command\n\n"
			"'dkimpress --version' prints the version. See dkimpress(1).\n");
}

const char *dkp_cli_usage(enum dkp_cmd cmd)
{
	static struct dkp_buf b;	/* main's thread only */
	const struct dkp_cmd_def *d;

	dkp_buf_free(&b);
	dkp_buf_init(&b);
	for (d = dkp_cli_cmds; d->name && d->cmd != cmd; d++)
		;
	if (d->name == NULL) {
		render_main(&b);
	} else {
		dkp_buf_adds(&b, d->usage);
		dkp_buf_adds(&b, "\n");
		if (d->about) {
			dkp_buf_adds(&b, d->about);
			dkp_buf_adds(&b, "\n");
		}
		render_opts(&b, d->opts);
		if (d->after) {
			dkp_buf_adds(&b, "\n");
			dkp_buf_adds(&b, d->after);
		}
	}
	dkp_buf_add(&b, "", 1);
	return b.p;
}
