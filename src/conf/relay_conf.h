/*
 * relay_conf.h — the relay_* settings of dkimpress.conf (`dkimpress
 * relay`, docs/dkimpress.conf.5): the next hop, its protocol, the pool,
 * TLS, timeouts and the retry schedule. config.c looks a key up here
 * (dkp_relay_conf_key) and applies it (dkp_relay_conf_apply); the engine
 * ignores these settings.
 *
 * Ownership: the strings belong to the struct (dkp_relay_conf_free).
 * No I/O; no shared state.
 */
#ifndef DKP_RELAY_CONF_H
#define DKP_RELAY_CONF_H

#include <stddef.h>
#include <stdint.h>

#define DKP_RELAY_MAX_STEPS 32
#define DKP_DEF_RELAY_CONNECTIONS 4
#define DKP_MAX_RELAY_CONNECTIONS 256
#define DKP_DEF_RELAY_TIMEOUT 300		/* seconds, each read/write */
#define DKP_DEF_RELAY_RETRY "1m,5m,15m,30m,1h,2h,4h"
#define DKP_DEF_RELAY_MAX_ATTEMPTS 30
#define DKP_DEF_RELAY_MAX_AGE (5 * 86400)	/* seconds */
#define DKP_DEF_RELAY_CONSUMER "dkimpress-relay"

enum dkp_relay_tls {
	DKP_RELAY_TLS_NONE = 0,		/* never STARTTLS */
	DKP_RELAY_TLS_STARTTLS,		/* STARTTLS when offered */
	DKP_RELAY_TLS_REQUIRE,		/* STARTTLS or no delivery (4xx) */
};

/* Delays between attempts: step[i] after the (i+1)-th failed attempt,
 * the last one repeated. */
struct dkp_relay_sched {
	unsigned n;
	int64_t step[DKP_RELAY_MAX_STEPS];	/* seconds */
};

struct dkp_relay_config {
	char *host;			/* next hop name or address; NULL: unset */
	unsigned port;			/* 0: 25 (smtp) or 24 (lmtp) */
	int lmtp;
	unsigned connections;
	enum dkp_relay_tls tls;
	int tls_verify;			/* certificate and host name (default 1) */
	char *tls_ca;			/* CA file; NULL: the system's */
	char *helo;			/* NULL: the host name */
	int64_t timeout;		/* seconds */
	struct dkp_relay_sched sched;
	unsigned max_attempts;
	int64_t max_age;		/* seconds since the first attempt */
	char *consumer;			/* JetStream durable; NULL: the default */
};

enum {
	DKP_RK_HOST, DKP_RK_PROTOCOL, DKP_RK_CONNECTIONS, DKP_RK_TLS,
	DKP_RK_TLS_VERIFY, DKP_RK_TLS_CA, DKP_RK_HELO, DKP_RK_TIMEOUT,
	DKP_RK_RETRY, DKP_RK_MAX_ATTEMPTS, DKP_RK_MAX_AGE, DKP_RK_CONSUMER,
	DKP_RK_COUNT
};

/* The defaults (the strings NULL). */
void dkp_relay_conf_init(struct dkp_relay_config *r);
void dkp_relay_conf_free(struct dkp_relay_config *r);
/* Index of setting name k (DKP_RK_*), or -1. */
int dkp_relay_conf_key(const char *k);
/* Apply setting k = v (a repeat replaces); NULL or why it is refused. */
const char *dkp_relay_conf_apply(struct dkp_relay_config *r, int k, const char *v);
/* "30", "30s", "5m", "2h", "1d" → seconds; -1 on error. */
int64_t dkp_relay_duration(const char *s);
/* "1m,5m,1h" → *out; 0 or -1 (empty, bad step, too many). */
int dkp_relay_sched_parse(const char *s, struct dkp_relay_sched *out);

#endif
