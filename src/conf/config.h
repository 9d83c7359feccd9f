/*
 * config.h — `dkimpress run` configuration: a "key = value" file parsed
 * and validated into an immutable struct dkp_config. Every setting but the
 * paths and keys has an embedded default (below); docs/dkimpress.conf.5
 * documents each. Parsing has no side effects beyond reading the file:
 * key files are checked by the engine, not here.
 */
#ifndef DKP_CONFIG_H
#define DKP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "dkimpress/dkimpress.h"
#include "conf/align.h"
#include "conf/route.h"
#include "dkim/sign.h"
#include "conf/relay_conf.h"

enum dkp_missing_key {
	DKP_MISSING_ESP_ONLY = 0,	/* sign with the ESP key alone */
	DKP_MISSING_DEFER,		/* leave in the queue for later */
	DKP_MISSING_FAIL,		/* move to failed/ */
};

enum dkp_io_mode {
	DKP_IO_AUTO = 0,	/* io_uring, falling back to syscalls */
	DKP_IO_URING,		/* io_uring or refuse to start */
	DKP_IO_SYSCALLS,	/* plain syscalls */
};

enum dkp_flush_mode {
	DKP_FLUSH_FILESYSTEM = 0,	/* one syncfs() per batch for the data */
	DKP_FLUSH_FILES,		/* one fsync() per output file */
};

/* Defaults (Postfix mail_params.h style: every limit named here). */
#define DKP_DEF_THREADS 0			/* 0: twice the cores */
#define DKP_DEF_BATCH 32			/* messages per group commit */
#define DKP_DEF_URING_DEPTH 128
#define DKP_DEF_INFLIGHT_BYTES (256ull << 20)
#define DKP_DEF_KEY_CACHE 10000
#define DKP_DEF_EXPIRE 0
#define DKP_MAX_THREADS 256
#define DKP_DEF_METRICS_DOMAINS 100		/* metrics_domains */
#define DKP_MAX_METRICS_DOMAINS 100000
#define DKP_DEF_SELF_VERIFY 1	/* with rsa_only: "rsa" (docs/performance.md) */
#define DKP_MAX_CONF_HEADERS 64
/* enqueue --id: the queue directory's de-duplication window */
#define DKP_DEF_DEDUP_WINDOW 600		/* seconds (dedup_window) */
#define DKP_DEF_DEDUP_MAX 1000000		/* IDs remembered (dedup_max) */
#define DKP_MAX_ESP_KEYS 8			/* esp_key lines */

/* Which ESP key(s) sign a message (esp_stream, docs/dkimpress.conf.5). */
enum dkp_esp_stream {
	DKP_STREAM_NONE = 0,	/* every esp_key, always */
	DKP_STREAM_SENDER,	/* by the envelope sender's domain (x-sender) */
	DKP_STREAM_HEADER,	/* by a header field, removed before signing */
};

/* One ESP key: esp_key = DOMAIN:SELECTOR:KEYFILE. */
struct dkp_espkey {
	char *domain, *selector, *keyfile;
};

/* Where messages come from and go to (docs/scale-out.md). */
enum dkp_transport_kind {
	DKP_TRANSPORT_QUEUE = 0,	/* the queue directory (default) */
	DKP_TRANSPORT_JETSTREAM,	/* NATS JetStream streams */
};

#define DKP_DEF_JS_SERVERS "nats://127.0.0.1:4222"
#define DKP_DEF_JS_DUP_WINDOW (2 * 3600)	/* seconds */
#define DKP_DEF_JS_NAK_DELAY 30			/* seconds, first retry */
#define DKP_DEF_JS_ACK_WAIT 60			/* seconds */
#define DKP_DEF_JS_MAX_ACK_PENDING 20000

/* transport = jetstream settings; every string is set (defaults filled). */
struct dkp_js_config {
	char *servers;			/* comma-separated nats:// URLs */
	char *in_stream, *in_subject;	/* work-queue input */
	char *out_stream, *out_subject;	/* signed output */
	char *failed_stream, *failed_subject;
	char *consumer;			/* durable pull consumer name */
	char *creds, *user, *password, *token;	/* NULL: not used */
	char *tls_ca, *tls_cert, *tls_key;	/* NULL: not used */
	unsigned replicas;		/* 0: 3 with >= 3 servers, else 1 */
	int create_streams;		/* 0: a missing stream refuses (78) */
	int64_t dup_window;		/* seconds */
	int64_t nak_delay;		/* seconds */
	int64_t ack_wait;		/* seconds */
	int64_t max_ack_pending;
};

struct dkp_config {
	char *path;			/* the file this came from */
	char *in_dir, *out_dir, *failed_dir;
	char *esp_domain, *esp_selector, *esp_keyfile;	/* esp[0]'s */
	struct dkp_espkey esp[DKP_MAX_ESP_KEYS];	/* every esp_key line */
	size_t nesp;
	unsigned out_mode;			/* published messages (0600) */
	long out_gid;				/* out_group, -1: none */
	char *key_table, *signing_table;	/* both NULL or both set */
	enum dkp_multi multiple_signatures;	/* which matching entries sign */
	char *key_policy;			/* per-key settings, NULL: none */
	enum dkp_esp_stream esp_stream;
	char *esp_stream_header;		/* DKP_STREAM_HEADER: its name */
	char *esp_stream_table;			/* set with esp_stream */
	enum dkp_missing_key missing_key;
	enum dkp_canon hcanon, bcanon;
	char *headers_buf;			/* owned storage for headers */
	const char *headers[DKP_MAX_CONF_HEADERS];
	size_t nheaders;			/* 0: the default list */
	int64_t expire;				/* seconds, 0: no x= */
	unsigned threads;			/* resolved: >= 1 */
	unsigned batch;
	unsigned uring_depth;
	enum dkp_io_mode io;
	uint64_t inflight_bytes;
	struct dkp_limits limits;
	size_t key_cache;
	int insecure_key_perms;
	int core_dumps;				/* 1: stay dumpable (keymem.h) */
	enum dkp_flush_mode flush;
	int group_commit;			/* 1: one commit thread flushes
						 * every worker's batches */
	char *metrics_listen;			/* HOST:PORT, NULL: no endpoint */
	size_t metrics_domains;			/* per-domain series bound */
	int log_syslog;				/* log = syslog */
	enum dkp_transport_kind transport;	/* queue dirs needed only for queue */
	struct dkp_js_config js;
	unsigned self_verify;			/* 0 off, 1 every, N: 1 in N */
	int self_verify_rsa_only;		/* self_verify = rsa */
	enum dkp_rsa_backend rsa_backend;
	struct dkp_align_conf align;		/* dmarc_alignment, unaligned,
						 * public_suffix_list (align.h) */
	int64_t dedup_window;			/* seconds, 0: off (enqueue --id) */
	uint64_t dedup_max;			/* IDs remembered at most */
	struct dkp_relay_config relay;		/* relay_* (dkimpress relay) */
};

/* Parse and validate path, then apply sets[0..nsets) ("key=value", as
 * `run --set` gives them; they replace what the file says). On error, err
 * says "FILE:LINE: what" or "--set key=value: what". */
int dkp_config_load(struct dkp_config **out, const char *path,
		    const char *const *sets, size_t nsets, struct dkp_err *err);
void dkp_config_free(struct dkp_config *c);
/* Parse "64M", "1G", "4096" into bytes; -1 on error. */
int dkp_config_size(const char *s, uint64_t *out);

#endif
