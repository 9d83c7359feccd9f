/* relay_js_rec.c — the JetStream relay's outcome records; see relay_js_rec.h. */
#include "relay/relay_js_rec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define REC_MAGIC "dkimpress-relay-record 1 "
#define BUCKET_MAX 200
#define KEY_MAX 1600		/* an ID of 512 bytes, every byte escaped */

static int st_errno(natsStatus s)
{
	return s == NATS_OK ? 0 : s == NATS_TIMEOUT ? -ETIMEDOUT : -EIO;
}

void dkp_rjrec_bucket_name(char *out, size_t outsz, const char *consumer)
{
	size_t i;

	snprintf(out, outsz, "%.*s-records", BUCKET_MAX, consumer);
	for (i = 0; out[i]; i++)
		if (!(out[i] == '-' || out[i] == '_' || (out[i] >= '0' && out[i] <= '9') ||
		      (out[i] >= 'a' && out[i] <= 'z') || (out[i] >= 'A' && out[i] <= 'Z')))
			out[i] = '_';
}

/* id as a key: [A-Za-z0-9_-] as they are, any other byte as =XX. */
static int key_of(char *out, size_t outsz, const char *id)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)id; *p; p++) {
		if (o + 4 > outsz)
			return -1;
		if (*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		    (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '=';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return o ? 0 : -1;
}

int dkp_rjrec_ensure(jsCtx *js, const char *consumer, int replicas, int64_t ttl_s,
		     int create, char *why, size_t whylen)
{
	char name[BUCKET_MAX + 16], sname[BUCKET_MAX + 20];
	jsStreamInfo *si = NULL;
	kvStore *kv = NULL;
	kvConfig kc;
	natsStatus s;

	dkp_rjrec_bucket_name(name, sizeof(name), consumer);
	snprintf(sname, sizeof(sname), "KV_%s", name);
	s = js_GetStreamInfo(&si, js, sname, NULL, NULL);
	if (s == NATS_OK) {
		if (si->Config->MaxAge && si->Config->MaxAge < ttl_s * 1000000000LL)
			dkp_warn("relay: bucket %s keeps records %lld s, less than dup_window (%lld s): a redelivery after that may be sent again",
				 name, (long long)(si->Config->MaxAge / 1000000000LL),
				 (long long)ttl_s);
		jsStreamInfo_Destroy(si);
		return 0;
	}
	if (s != NATS_NOT_FOUND) {
		snprintf(why, whylen, "bucket %s: %s", name, natsStatus_GetText(s));
		return st_errno(s);
	}
	if (!create) {
		snprintf(why, whylen, "bucket %s is missing and create_streams = no", name);
		return -ENOENT;
	}
	kvConfig_Init(&kc);
	kc.Bucket = name;
	kc.Description = "dkimpress relay: what replaced a partly delivered message";
	kc.History = 1;
	kc.TTL = ttl_s * 1000000000LL;
	kc.StorageType = js_FileStorage;
	kc.Replicas = replicas;
	s = js_CreateKeyValue(&kv, js, &kc);
	if (s == NATS_OK) {
		dkp_info("relay: made bucket %s (%d replicas, records kept %lld s)", name,
			 replicas, (long long)ttl_s);
		kvStore_Destroy(kv);
		return 0;
	}
	/* another relay made it first? */
	if (js_GetStreamInfo(&si, js, sname, NULL, NULL) == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	snprintf(why, whylen, "cannot make bucket %s (%d replicas): %s", name, replicas,
		 natsStatus_GetText(s));
	return st_errno(s);
}

int dkp_rjrec_bind(kvStore **kv, jsCtx *js, const char *consumer)
{
	char name[BUCKET_MAX + 16];

	dkp_rjrec_bucket_name(name, sizeof(name), consumer);
	return st_errno(js_KeyValue(kv, js, name));
}

/* s[0..n) with line breaks as '?'. */
static void add_line_safe(struct dkp_buf *b, const char *s, size_t n)
{
	size_t i, at = b->len;

	dkp_buf_add(b, s, n);
	for (i = at; i < b->len; i++)
		if (b->p[i] == '\n' || b->p[i] == '\r' || b->p[i] == '\0')
			b->p[i] = '?';
}

void dkp_rjrec_begin(struct dkp_buf *b, uint64_t seq, const char *sender, size_t len)
{
	dkp_buf_reset(b);
	dkp_buf_printf(b, REC_MAGIC "%" PRIu64 "\n", seq);
	dkp_rjrec_item(b, 'S', len ? sender : "<>", len ? len : 2, NULL);
}

void dkp_rjrec_item(struct dkp_buf *b, char type, const char *a, size_t alen,
		    const char *v)
{
	dkp_buf_addc(b, type);
	dkp_buf_addc(b, ' ');
	add_line_safe(b, a, alen);
	if (v) {
		dkp_buf_addc(b, ' ');
		add_line_safe(b, v, strlen(v));
	}
	dkp_buf_addc(b, '\n');
}

int dkp_rjrec_put(kvStore *kv, const char *id, const struct dkp_buf *b)
{
	char key[KEY_MAX];

	if (key_of(key, sizeof(key), id) < 0)
		return -EINVAL;
	return st_errno(kvStore_Put(NULL, kv, key, b->p, (int)b->len));
}

int dkp_rjrec_get(kvStore *kv, const char *id, uint64_t seq, struct dkp_buf *out)
{
	char key[KEY_MAX], head[64];
	kvEntry *e = NULL;
	natsStatus s;
	int n;

	if (key_of(key, sizeof(key), id) < 0)
		return 0;	/* never stored */
	s = kvStore_Get(&e, kv, key);
	if (s == NATS_NOT_FOUND)
		return 0;
	if (s != NATS_OK)
		return st_errno(s);
	dkp_buf_reset(out);
	dkp_buf_add(out, kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
	kvEntry_Destroy(e);
	n = snprintf(head, sizeof(head), REC_MAGIC "%" PRIu64 "\n", seq);
	if (out->len < (size_t)n || memcmp(out->p, head, (size_t)n) != 0) {
		if (out->len < sizeof(REC_MAGIC) - 1 ||
		    memcmp(out->p, REC_MAGIC, sizeof(REC_MAGIC) - 1) != 0)
			dkp_warn("relay: %s: the record in the bucket is not one of ours: ignored",
				 id);
		return 0;	/* another message's (or not ours) */
	}
	return 1;
}

int dkp_rjrec_next(struct dkp_buf *b, size_t *pos, const char **a, const char **v)
{
	char *line, *nl, *sp;
	int type;

	if (*pos == 0) {	/* the first line: magic and sequence */
		nl = memchr(b->p, '\n', b->len);
		if (nl == NULL)
			return -1;
		*pos = (size_t)(nl - b->p) + 1;
	}
	if (*pos >= b->len)
		return 0;
	line = b->p + *pos;
	nl = memchr(line, '\n', b->len - *pos);
	if (nl == NULL || nl - line < 2 || line[1] != ' ')
		return -1;
	*nl = '\0';
	*pos = (size_t)(nl - b->p) + 1;
	type = line[0];
	*a = line + 2;
	*v = NULL;
	if (type == 'P' || type == 'H') {
		if ((sp = strchr(line + 2, ' ')) == NULL)
			return -1;
		*sp = '\0';
		*v = sp + 1;
	} else if (type != 'S' && type != 'R') {
		return -1;
	}
	return type;
}
