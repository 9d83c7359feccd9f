/* relay_conf.c — the relay_* settings; see relay_conf.h. */
#include "conf/relay_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

static const char *const rkey_names[DKP_RK_COUNT] = {
	"relay_host", "relay_protocol", "relay_connections", "relay_tls",
	"relay_tls_verify", "relay_tls_ca", "relay_helo", "relay_timeout",
	"relay_retry", "relay_max_attempts", "relay_max_age", "relay_consumer",
};

void dkp_relay_conf_init(struct dkp_relay_config *r)
{
	memset(r, 0, sizeof(*r));
	r->connections = DKP_DEF_RELAY_CONNECTIONS;
	r->tls_verify = 1;
	r->timeout = DKP_DEF_RELAY_TIMEOUT;
	r->max_attempts = DKP_DEF_RELAY_MAX_ATTEMPTS;
	r->max_age = DKP_DEF_RELAY_MAX_AGE;
	dkp_relay_sched_parse(DKP_DEF_RELAY_RETRY, &r->sched);
}

void dkp_relay_conf_free(struct dkp_relay_config *r)
{
	dkp_free(r->host);
	dkp_free(r->tls_ca);
	dkp_free(r->helo);
	dkp_free(r->consumer);
	r->host = r->tls_ca = r->helo = r->consumer = NULL;
}

int dkp_relay_conf_key(const char *k)
{
	int i;

	for (i = 0; i < DKP_RK_COUNT; i++)
		if (!strcmp(rkey_names[i], k))
			return i;
	return -1;
}

int64_t dkp_relay_duration(const char *s)
{
	char *end;
	unsigned long long v;
	int64_t mul = 1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || v > 100ULL * 366 * 86400)
		return -1;
	if (*end && end[1] == '\0') {
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
	} else if (*end) {
		return -1;
	}
	return (int64_t)v * mul;
}

int dkp_relay_sched_parse(const char *s, struct dkp_relay_sched *out)
{
	char buf[512], *tok, *save = NULL, *p;
	struct dkp_relay_sched t;

	if (strlen(s) >= sizeof(buf))
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	t.n = 0;
	for (p = buf; (tok = strtok_r(p, ", \t", &save)) != NULL; p = NULL) {
		int64_t d = dkp_relay_duration(tok);

		if (d < 1 || t.n == DKP_RELAY_MAX_STEPS)
			return -1;
		t.step[t.n++] = d;
	}
	if (t.n == 0)
		return -1;
	*out = t;
	return 0;
}

/* "HOST", "HOST:PORT", "[V6]:PORT" into r. */
static const char *set_host(struct dkp_relay_config *r, const char *v)
{
	const char *colon = NULL, *h = v;
	size_t hl = strlen(v);
	char *end;
	unsigned long port = 0;

	if (*v == '[') {
		const char *rb = strchr(v, ']');

		if (rb == NULL || rb == v + 1 || (rb[1] && rb[1] != ':'))
			return "want HOST[:PORT] or [IPv6]:PORT";
		h = v + 1;
		hl = (size_t)(rb - h);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else if ((colon = strrchr(v, ':')) != NULL) {
		if (strchr(v, ':') != colon)
			return "write an IPv6 address as [ADDR]:PORT";
		hl = (size_t)(colon - v);
	}
	if (colon) {
		port = strtoul(colon + 1, &end, 10);
		if (*end || port < 1 || port > 65535)
			return "the port wants 1 to 65535";
	}
	if (hl == 0 || hl > 253)
		return "want HOST[:PORT]";
	dkp_free(r->host);
	r->host = dkp_strndup(h, hl);
	r->port = (unsigned)port;
	return NULL;
}

static const char *set_str(char **slot, const char *v)
{
	dkp_free(*slot);
	*slot = dkp_strdup(v);
	return NULL;
}

/* An unsigned lo..hi into *out, or a reason. */
static const char *set_uint(unsigned *out, const char *v, unsigned long lo,
			    unsigned long hi, const char *why)
{
	char *end;
	unsigned long u;

	errno = 0;
	u = strtoul(v, &end, 10);
	if (!isdigit((unsigned char)*v) || *end || errno || u < lo || u > hi)
		return why;
	*out = (unsigned)u;
	return NULL;
}

const char *dkp_relay_conf_apply(struct dkp_relay_config *r, int k, const char *v)
{
	int64_t d;

	switch (k) {
	case DKP_RK_HOST: return set_host(r, v);
	case DKP_RK_PROTOCOL:
		if (strcasecmp(v, "smtp") && strcasecmp(v, "lmtp"))
			return "want smtp or lmtp";
		r->lmtp = !strcasecmp(v, "lmtp");
		return NULL;
	case DKP_RK_CONNECTIONS:
		return set_uint(&r->connections, v, 1, DKP_MAX_RELAY_CONNECTIONS,
				"want 1 to 256");
	case DKP_RK_TLS:
		if (!strcasecmp(v, "none"))
			r->tls = DKP_RELAY_TLS_NONE;
		else if (!strcasecmp(v, "starttls"))
			r->tls = DKP_RELAY_TLS_STARTTLS;
		else if (!strcasecmp(v, "require"))
			r->tls = DKP_RELAY_TLS_REQUIRE;
		else
			return "want none, starttls or require";
		return NULL;
	case DKP_RK_TLS_VERIFY:
		if (!strcasecmp(v, "yes") || !strcmp(v, "1"))
			r->tls_verify = 1;
		else if (!strcasecmp(v, "no") || !strcmp(v, "0"))
			r->tls_verify = 0;
		else
			return "want yes or no";
		return NULL;
	case DKP_RK_TLS_CA: return set_str(&r->tls_ca, v);
	case DKP_RK_HELO: return set_str(&r->helo, v);
	case DKP_RK_CONSUMER:
		if (!*v || strpbrk(v, ". *>\t"))
			return "want a consumer name (no '.', '*', '>' or spaces)";
		return set_str(&r->consumer, v);
	case DKP_RK_TIMEOUT:
		if ((d = dkp_relay_duration(v)) < 1 || d > 3600)
			return "want 1s to 1h";
		r->timeout = d;
		return NULL;
	case DKP_RK_RETRY:
		return dkp_relay_sched_parse(v, &r->sched)
			       ? "want delays like 1m,5m,15m,1h (s, m, h, d; at most 32)" : NULL;
	case DKP_RK_MAX_ATTEMPTS:
		return set_uint(&r->max_attempts, v, 1, 10000, "want 1 to 10000");
	case DKP_RK_MAX_AGE:
		if ((d = dkp_relay_duration(v)) < 1)
			return "want a duration (s, m, h, d)";
		r->max_age = d;
		return NULL;
	}
	return "unknown";
}
