/*
 * cli.h — argv → options for each command, no side effects: nothing is
 * opened or loaded here; main.c does that. Usage errors come back as
 * DKP_E_USAGE with a one-line message.
 */
#ifndef DKP_CLI_H
#define DKP_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "dkimpress/dkimpress.h"
#include "dkim/sign.h"

enum dkp_cmd {
	DKP_CMD_HELP,
	DKP_CMD_VERSION,
	DKP_CMD_SIGN,
	DKP_CMD_VERIFY,
	DKP_CMD_KEYGEN,
	DKP_CMD_RUN,
	DKP_CMD_BENCH,
	DKP_CMD_ENQUEUE,
	DKP_CMD_CHECK,
	DKP_CMD_RELAY,
};

#define DKP_PHASE_CRYPTO 1
#define DKP_PHASE_IO 2
#define DKP_PHASE_ENGINE 4

#define DKP_CLI_MAX_KEYS 16
#define DKP_CLI_MAX_HEADERS 128
#define DKP_CLI_MAX_SETS 32

/* "DOMAIN:SELECTOR:KEYFILE", split; strings point into argv. */
struct dkp_cli_key {
	char domain[254];
	char selector[64];
	const char *path;
};

struct dkp_cli {
	enum dkp_cmd cmd;
	int help;			/* --help given for cmd */
	/* sign */
	struct dkp_cli_key keys[DKP_CLI_MAX_KEYS];
	size_t nkeys;
	enum dkp_canon hcanon, bcanon;
	char *headers_buf;		/* owned copy of --headers */
	const char *headers[DKP_CLI_MAX_HEADERS];
	size_t nheaders;		/* 0: default list */
	const char *identity;
	int64_t time;			/* -1: now */
	int64_t expire;			/* 0: no x= */
	unsigned key_flags;
	enum dkp_rsa_backend rsa_backend;	/* sign --rsa-backend */
	const char *out;		/* -o, NULL: stdout */
	const char *in;			/* NULL or "-": stdin */
	/* verify */
	const char *dns_file;
	/* run, bench */
	const char *conf;
	const char *sets[DKP_CLI_MAX_SETS];	/* --set K=V, point into argv */
	size_t nsets;
	int once;
	const char *stats;
	int nosign;
	/* bench */
	const char *corpus, *work, *label, *json;
	unsigned phases, seconds, repeat;
	size_t messages;
	int keep;
	/* enqueue (-c is conf; the message is in) */
	const char *sender;		/* -f, NULL: none; "" or "<>": null */
	const char **rcpts;		/* -r, in order; point into argv */
	size_t nrcpts;
	const char *enq_id;		/* --id, NULL: none */
	/* check (-c is conf, --dns-file is dns_file) */
	int check_json;			/* --json */
	unsigned dns_timeout;		/* --timeout seconds */
	unsigned concurrency;		/* --concurrency lookups */
	/* keygen */
	const char *domain, *selector, *outdir;
	char selector_buf[64];		/* --selector with its strftime
					 * conversions expanded (UTC) */
	enum dkp_alg type;
	int bits;
};

int dkp_cli_parse(struct dkp_cli *c, int argc, char **argv,
		  struct dkp_err *err);
void dkp_cli_free(struct dkp_cli *c);
/* The help text for a command (DKP_CMD_HELP: the overview). */
const char *dkp_cli_usage(enum dkp_cmd cmd);

#endif
