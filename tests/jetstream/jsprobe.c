/*
 * jsprobe.c — the cluster test's producer and independent consumer,
 * written against nats.c only (no dkimpress code), so what it reports
 * about the streams does not rest on the code under test.
 *
 *   jsprobe pub URLS SUBJECT N PREFIX MANIFEST DOMAIN...
 *       publish N messages asynchronously, each a small RFC 5322 message
 *       From: a rotating DOMAIN, with X-Sender, one or two X-Receiver
 *       headers, Nats-Msg-Id PREFIX-I and a token TOK-PREFIX-I-END in the
 *       body; every publish acknowledged (retried until it is, with the
 *       same ID). Appends each ID to MANIFEST.
 *   jsprobe drain URLS STREAM OUTDIR SAMPLE
 *       read the whole stream with an ephemeral ordered consumer; write
 *       OUTDIR/ids ("NATS-MSG-ID TOKEN" per message, in stream order;
 *       TOKEN from TOK-TOKEN-END in the body), OUTDIR/bad (IDs of
 *       messages without a token) and
 *       SAMPLE random messages as OUTDIR/sample/N.eml (payload only) with
 *       OUTDIR/sample/N.hdr (their X-Sender/X-Receiver/X-Dkimpress-Error).
 *       Prints "messages N".
 *   jsprobe pubfiles URLS SUBJECT LIST PREFIX
 *       publish every file named in LIST (one path a line) with
 *       Nats-Msg-Id PREFIX-N, X-Sender and one X-Receiver (the benchmark).
 *   jsprobe pubone URLS SUBJECT ID FILE [SENDER RCPT...]
 *       publish FILE with Nats-Msg-Id ID (and X-Sender SENDER, one
 *       X-Receiver per RCPT) and wait for the ack.
 *   jsprobe mkstream URLS STREAM SUBJECT MAXMSGS
 *       make a one-replica work-queue stream holding at most MAXMSGS
 *       messages, refusing new ones when full (discard new).
 *   jsprobe purge URLS STREAM
 *       remove every message of STREAM.
 *   jsprobe count URLS STREAM
 *       print the stream's message count.
 *   jsprobe leader URLS STREAM
 *       exit 0 if STREAM info can be read now (a JetStream leader).
 * Exit: 0 ok, 1 failure (message on stderr).
 */
#define _GNU_SOURCE
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static natsConnection *nc;
static jsCtx *js;

static void die(const char *what, natsStatus s)
{
	fprintf(stderr, "jsprobe: %s: %s\n", what, natsStatus_GetText(s));
	exit(1);
}

static void connect_to(const char *urls)
{
	natsOptions *o;
	const char *list[16];
	char *copy = strdup(urls), *save = NULL, *tok, *p;
	int n = 0;
	natsStatus s;

	for (p = copy; (tok = strtok_r(p, ",", &save)) && n < 16; p = NULL)
		list[n++] = tok;
	if ((s = natsOptions_Create(&o)) != NATS_OK ||
	    (s = natsOptions_SetServers(o, list, n)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(o, 200)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, 2000)) != NATS_OK)
		die("options", s);
	if ((s = natsConnection_Connect(&nc, o)) != NATS_OK)
		die("connect", s);
	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("jetstream", s);
}

static int pub_one(const char *subj, const char *prefix, long i, char **domains,
		   int ndom)
{
	char body[2048], id[128], snd[160], r1[160], r2[160];
	const char *dom = domains[i % ndom];
	natsMsg *m = NULL;
	jsPubOptions po;
	jsPubAck *pa = NULL;
	natsStatus s;
	int len;

	snprintf(id, sizeof(id), "%s-%ld", prefix, i);
	snprintf(snd, sizeof(snd), "bounce-%ld@%s", i, dom);
	snprintf(r1, sizeof(r1), "rcpt%ld@example.net", i);
	snprintf(r2, sizeof(r2), "cc%ld@example.org", i);
	len = snprintf(body, sizeof(body),
		       "From: Sender %ld <news@%s>\r\n"
		       "To: <%s>\r\n"
		       "Subject: offer %ld for you\r\n"
		       "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
		       "Message-ID: <%s@%s>\r\n"
		       "MIME-Version: 1.0\r\n"
		       "Content-Type: text/plain; charset=us-ascii\r\n"
		       "\r\n"
		       "Hello,\r\n"
		       "this is message %ld of the cluster test.\r\n"
		       "TOK-%s-END\r\n",
		       i, dom, r1, i, id, dom, i, id);
	s = natsMsg_Create(&m, subj, NULL, body, len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "X-Sender", snd);
	if (s == NATS_OK)
		s = natsMsgHeader_Add(m, "X-Receiver", r1);
	if (s == NATS_OK && i % 3 == 0)
		s = natsMsgHeader_Add(m, "X-Receiver", r2);
	jsPubOptions_Init(&po);
	po.MaxWait = 5000;
	if (s == NATS_OK)
		s = js_PublishMsgAsync(js, &m, &po);
	natsMsg_Destroy(m);
	jsPubAck_Destroy(pa);
	return s == NATS_OK ? 0 : -1;
}

static int pub_errors;

static void on_err(jsCtx *j, jsPubAckErr *pae, void *c)
{
	(void)j;
	(void)c;
	if (pub_errors++ == 0)
		fprintf(stderr, "jsprobe: publish error: %s (%d)\n",
			pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
			(int)pae->ErrCode);
}

/* Publish N, in windows of 512, every window acknowledged; a window with
 * an error or a timeout is published again (same IDs: the stream's
 * duplicate window keeps one copy). */
static int cmd_pub(char **a, int n)
{
	const char *subj = a[0], *prefix = a[2], *manifest = a[3];
	long total = atol(a[1]), i, w;
	FILE *mf = fopen(manifest, "a");
	jsOptions jo;
	jsPubOptions po;
	natsStatus s;
	int tries;

	if (mf == NULL) {
		perror(manifest);
		return 1;
	}
	jsCtx_Destroy(js);
	jsOptions_Init(&jo);
	jo.PublishAsync.ErrHandler = on_err;
	jo.PublishAsync.MaxPending = 1024;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		die("jetstream", s);
	for (w = 0; w < total; w += 512) {
		long end = w + 512 < total ? w + 512 : total;

		for (tries = 0;; tries++) {
			pub_errors = 0;
			for (i = w; i < end; i++)
				if (pub_one(subj, prefix, i, a + 4, n - 4) < 0)
					pub_errors++;	/* not sent: the window again */
			jsPubOptions_Init(&po);
			po.MaxWait = 10000;
			s = js_PublishAsyncComplete(js, &po);
			if (s == NATS_OK && pub_errors == 0)
				break;
			if (s != NATS_OK) {
				natsMsgList l;

				if (js_PublishAsyncGetPendingList(&l, js) == NATS_OK)
					natsMsgList_Destroy(&l);
			}
			if (tries > 30) {
				fprintf(stderr, "jsprobe: window %ld not acknowledged\n", w);
				return 1;
			}
			usleep(300000);
		}
		for (i = w; i < end; i++)
			fprintf(mf, "%s-%ld\n", prefix, i);
	}
	fclose(mf);
	printf("published %ld\n", total);
	return 0;
}

/* Publish each file named in LIST (one path a line) as a message with
 * Nats-Msg-Id PREFIX-N and a fixed envelope, windows of 512 acked. */
static int cmd_pubfiles(const char *subj, const char *list, const char *prefix)
{
	FILE *lf = fopen(list, "r");
	char path[4096], id[256];
	jsOptions jo;
	jsPubOptions po;
	natsStatus s;
	long n = 0;

	if (lf == NULL) {
		perror(list);
		return 1;
	}
	jsCtx_Destroy(js);
	jsOptions_Init(&jo);
	jo.PublishAsync.ErrHandler = on_err;
	jo.PublishAsync.MaxPending = 1024;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		die("jetstream", s);
	while (fgets(path, sizeof(path), lf)) {
		FILE *f;
		char *data;
		long len;
		natsMsg *m = NULL;

		path[strcspn(path, "\n")] = '\0';
		if ((f = fopen(path, "rb")) == NULL) {
			perror(path);
			return 1;
		}
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		rewind(f);
		data = malloc((size_t)len + 1);
		if (fread(data, 1, (size_t)len, f) != (size_t)len)
			return 1;
		fclose(f);
		snprintf(id, sizeof(id), "%s-%ld", prefix, n++);
		s = natsMsg_Create(&m, subj, NULL, data, (int)len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "X-Sender", "bounce@esp.bench.example");
		if (s == NATS_OK)
			s = natsMsgHeader_Add(m, "X-Receiver", "rcpt@example.net");
		if (s == NATS_OK)
			s = js_PublishMsgAsync(js, &m, NULL);
		natsMsg_Destroy(m);
		free(data);
		if (s != NATS_OK)
			die("publish", s);
		if (n % 512 == 0) {
			jsPubOptions_Init(&po);
			po.MaxWait = 20000;
			if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK || pub_errors)
				die("publish acks", s);
		}
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 20000;
	if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK || pub_errors)
		die("publish acks", s);
	fclose(lf);
	printf("published %ld\n", n);
	return 0;
}

/* One message: FILE's bytes to SUBJECT with Nats-Msg-Id ID, acked. */
static int cmd_pubone(const char *subj, const char *id, const char *file,
		      char **env, int nenv)
{
	FILE *f = fopen(file, "rb");
	static char buf[1 << 20];	/* a server's default max_payload */
	size_t len;
	natsMsg *m = NULL;
	jsPubAck *pa = NULL;
	natsStatus s;

	if (f == NULL) {
		perror(file);
		return 1;
	}
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	s = natsMsg_Create(&m, subj, NULL, buf, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK && nenv > 0)
		s = natsMsgHeader_Set(m, "X-Sender", env[0]);
	for (int i = 1; s == NATS_OK && i < nenv; i++)
		s = natsMsgHeader_Add(m, "X-Receiver", env[i]);
	if (s == NATS_OK)
		s = js_PublishMsg(&pa, js, m, NULL, NULL);
	if (s != NATS_OK)
		die("publish", s);
	printf("%s seq %llu%s\n", pa->Stream, (unsigned long long)pa->Sequence,
	       pa->Duplicate ? " duplicate" : "");
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	return 0;
}

static int cmd_mkstream(const char *name, const char *subj, long max)
{
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = &subj;
	sc.SubjectsLen = 1;
	sc.Retention = js_WorkQueuePolicy;
	sc.Discard = js_DiscardNew;
	sc.MaxMsgs = max;
	sc.Storage = js_FileStorage;
	sc.Replicas = 1;
	if ((s = js_AddStream(&si, js, &sc, NULL, NULL)) != NATS_OK)
		die("add stream", s);
	jsStreamInfo_Destroy(si);
	return 0;
}

static int cmd_purge(const char *stream)
{
	natsStatus s = js_PurgeStream(js, stream, NULL, NULL);

	if (s != NATS_OK)
		die("purge", s);
	return 0;
}

static int cmd_count(const char *stream)
{
	jsStreamInfo *si = NULL;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, NULL);

	if (s != NATS_OK)
		die("stream info", s);
	printf("%llu\n", (unsigned long long)si->State.Msgs);
	jsStreamInfo_Destroy(si);
	return 0;
}

static int cmd_leader(const char *stream)
{
	jsStreamInfo *si = NULL;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, NULL);

	jsStreamInfo_Destroy(si);
	return s == NATS_OK || s == NATS_NOT_FOUND ? 0 : 1;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static int cmd_drain(const char *stream, const char *outdir, long sample)
{
	jsStreamInfo *si = NULL;
	jsSubOptions so;
	natsSubscription *sub = NULL;
	natsStatus s;
	uint64_t total, got = 0;
	char path[4096];
	FILE *ids, *bad;
	long *pick, k;

	if ((s = js_GetStreamInfo(&si, js, stream, NULL, NULL)) != NATS_OK)
		die("stream info", s);
	total = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	snprintf(path, sizeof(path), "%s/sample", outdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/ids", outdir);
	ids = fopen(path, "w");
	snprintf(path, sizeof(path), "%s/bad", outdir);
	bad = fopen(path, "w");
	if (!ids || !bad)
		return 1;
	/* a random sample of sequence positions */
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	pick = calloc(total + 1, sizeof(*pick));
	for (k = 0; k < sample && (uint64_t)k < total;) {
		long r = (long)(((uint64_t)rand() * RAND_MAX + (uint64_t)rand()) % total);

		if (!pick[r]) {
			pick[r] = 1;
			k++;
		}
	}
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	if (total > 0 &&
	    (s = js_SubscribeSync(&sub, js, ">", NULL, &so, NULL)) != NATS_OK)
		die("subscribe", s);
	while (got < total) {
		natsMsg *m = NULL;
		const char *id = NULL, *v, **vals;
		const char *data, *t, *e;
		char tok[300];
		int len, nv, i;

		s = natsSubscription_NextMsg(&m, sub, 10000);
		if (s != NATS_OK) {
			fprintf(stderr, "jsprobe: drain: %s after %llu of %llu\n",
				natsStatus_GetText(s), (unsigned long long)got,
				(unsigned long long)total);
			return 1;
		}
		natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
		data = natsMsg_GetData(m);
		len = natsMsg_GetDataLength(m);
		/* the body's token: TOK-X-END */
		t = memmem(data, (size_t)len, "TOK-", 4);
		e = t ? memmem(t, (size_t)(data + len - t), "-END", 4) : NULL;
		if (t && e && e - t - 4 < (long)sizeof(tok)) {
			memcpy(tok, t + 4, (size_t)(e - t - 4));
			tok[e - t - 4] = '\0';
		} else {
			snprintf(tok, sizeof(tok), "-");
			fprintf(bad, "%s\n", id ? id : "-");
		}
		fprintf(ids, "%s %s\n", id ? id : "-", tok);
		if (pick[got]) {
			FILE *h;

			snprintf(path, sizeof(path), "%s/sample/%llu.eml", outdir,
				 (unsigned long long)got);
			write_file(path, data, (size_t)len);
			snprintf(path, sizeof(path), "%s/sample/%llu.hdr", outdir,
				 (unsigned long long)got);
			h = fopen(path, "w");
			if (natsMsgHeader_Get(m, "X-Sender", &v) == NATS_OK)
				fprintf(h, "X-Sender: %s\n", v);
			if (natsMsgHeader_Values(m, "X-Receiver", &vals, &nv) == NATS_OK) {
				for (i = 0; i < nv; i++)
					fprintf(h, "X-Receiver: %s\n", vals[i]);
				free((void *)vals);
			}
			if (natsMsgHeader_Get(m, "X-Dkimpress-Error", &v) == NATS_OK)
				fprintf(h, "X-Dkimpress-Error: %s\n", v);
			fclose(h);
		}
		natsMsg_Destroy(m);
		got++;
	}
	fclose(ids);
	fclose(bad);
	natsSubscription_Destroy(sub);
	printf("messages %llu\n", (unsigned long long)got);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: see jsprobe.c\n");
		return 2;
	}
	connect_to(argv[2]);
	if (!strcmp(argv[1], "pub") && argc >= 8)
		rc = cmd_pub(argv + 3, argc - 3);
	else if (!strcmp(argv[1], "drain") && argc == 6)
		rc = cmd_drain(argv[3], argv[4], atol(argv[5]));
	else if (!strcmp(argv[1], "pubfiles") && argc == 6)
		rc = cmd_pubfiles(argv[3], argv[4], argv[5]);
	else if (!strcmp(argv[1], "pubone") && (argc == 6 || argc >= 8))
		rc = cmd_pubone(argv[3], argv[4], argv[5], argv + 6, argc - 6);
	else if (!strcmp(argv[1], "mkstream") && argc == 6)
		rc = cmd_mkstream(argv[3], argv[4], atol(argv[5]));
	else if (!strcmp(argv[1], "purge"))
		rc = cmd_purge(argv[3]);
	else if (!strcmp(argv[1], "count"))
		rc = cmd_count(argv[3]);
	else if (!strcmp(argv[1], "leader"))
		rc = cmd_leader(argv[3]);
	else
		fprintf(stderr, "jsprobe: bad command\n");
	jsCtx_Destroy(js);
	natsConnection_FlushTimeout(nc, 2000);
	natsConnection_Destroy(nc);
	return rc;
}
