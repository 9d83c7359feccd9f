/*
 * cli_int.h — the option tables of the command line (cli_cmds.c) and the
 * machinery that parses argv with them and prints --help from them
 * (cli.c): one description per option, so the parser and the help text
 * cannot drift apart. Not for use outside src/cmd/cli*.c.
 */
#ifndef DKP_CLI_INT_H
#define DKP_CLI_INT_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/cli.h"

/* What an option stores in struct dkp_cli (at off), unless fn is set. */
enum dkp_opt_kind {
	DKP_OPT_FLAG,	/* int = 1 */
	DKP_OPT_STR,	/* const char * = the argument (points into argv) */
	DKP_OPT_I64,	/* int64_t, min..max */
	DKP_OPT_INT,	/* int, min..max */
	DKP_OPT_UINT,	/* unsigned, min..max */
	DKP_OPT_SIZE,	/* size_t, min..max */
};

struct dkp_opt {
	char shrt;		/* the short letter, 0: none */
	const char *name;	/* the long name, without "--" */
	const char *arg;	/* the value's name in --help; NULL: a flag */
	enum dkp_opt_kind kind;
	size_t off;		/* offsetof(struct dkp_cli, field) */
	int64_t min, max;	/* numbers: the accepted range */
	/* instead of kind: takes the argument (NULL for a flag) */
	int (*fn)(struct dkp_cli *c, const char *arg, struct dkp_err *err);
	const char *help;	/* sentences; --help wraps them */
};

struct dkp_cmd_def {
	const char *name;
	enum dkp_cmd cmd;
	const char *summary;	/* its line in 'dkimpress --help' */
	const char *usage;	/* the synopsis, "usage: dkimpress NAME ..." */
	const char *about;	/* the text between the synopsis and the options */
	const struct dkp_opt *opts;	/* ends with name == NULL */
	const char *after;	/* the text after the options */
	void (*defaults)(struct dkp_cli *c);	/* NULL: none */
	/* after the options: operands from argv[ind..argc), cross-checks */
	int (*finish)(struct dkp_cli *c, int argc, char **argv, int ind,
		      struct dkp_err *err);
};

/* Every command, in the order 'dkimpress --help' lists them; ends with
 * name == NULL. */
extern const struct dkp_cmd_def dkp_cli_cmds[];

/* A decimal in min..max into *v; 0, or -1 when it is not one. */
int dkp_cli_int64(const char *s, int64_t *v, int64_t min, int64_t max);
/* "invalid value for OPT: 'ARG'" (ARG escaped), DKP_E_USAGE. */
int dkp_cli_bad_arg(struct dkp_err *err, const char *opt, const char *arg);

#endif
