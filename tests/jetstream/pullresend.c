/*
 * pullresend.c — does this nats-server deliver an acknowledged message
 * again, as a first delivery, when a redelivery meets a pull request
 * whose requester has gone? (nats-server before 2.10.14: consumer.go
 * loopAndGatherMsgs() rewinds the consumer's next stream sequence when
 * it finds no valid waiting request for a message, also when that
 * message was a redelivery that had not advanced it; fixed upstream by
 * "When we fail to deliver, only decrement o.sseq if it is not a
 * redelivery", nats-server commit b0d1b4f0a.) Written against nats.c
 * only, like jsprobe.c.
 *
 *   pullresend URL
 *   pullresend URL STREAM CONSUMER
 *       (the second form only leaves the stale pull request on STREAM's
 *       durable CONSUMER, batch 1, 10 s, and disconnects: for a test
 *       that shows what a relay reading that consumer then does)
 *
 * On a memory stream PULLRESEND with a durable pull consumer (AckWait
 * 2 s): reader A takes M1 and never acknowledges it (a relay killed with
 * it); reader B takes and acknowledges M2..M5; C sends a pull request and
 * disconnects (a relay killed while it waited); when M1's AckWait has
 * passed, reader D fetches. Prints what D gets ("D: M5 seq 5 delivery
 * 1" is the re-send) and a last line "resend: yes" or "resend: no".
 * Exit: 0 the server re-sends, 1 it does not, 2 failure (on stderr).
 */
#define _GNU_SOURCE
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAM "PULLRESEND"
#define SUBJ "pullresend.x"

static void ck(natsStatus s, const char *what)
{
	if (s != NATS_OK) {
		fprintf(stderr, "pullresend: %s: %s\n", what, natsStatus_GetText(s));
		exit(2);
	}
}

/* A connection, its JetStream context and a pull subscription. */
static natsSubscription *reader(const char *url, natsConnection **nc, jsCtx **js)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;

	ck(natsConnection_ConnectTo(nc, url), "connect");
	ck(natsConnection_JetStream(js, *nc, NULL), "jetstream");
	jsSubOptions_Init(&so);
	so.Stream = STREAM;
	so.Consumer = "C";
	ck(js_PullSubscribe(&sub, *js, SUBJ, "C", NULL, &so, NULL), "pull subscribe");
	return sub;
}

static void setup(jsCtx *js)
{
	const char *subj = SUBJ;
	jsStreamConfig sc;
	jsConsumerConfig cc;
	char b[8];
	int i;

	js_DeleteStream(js, STREAM, NULL, NULL);
	jsStreamConfig_Init(&sc);
	sc.Name = STREAM;
	sc.Subjects = &subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_MemoryStorage;
	ck(js_AddStream(NULL, js, &sc, NULL, NULL), "stream");
	jsConsumerConfig_Init(&cc);
	cc.Durable = "C";
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = 2000000000LL;
	ck(js_AddConsumer(NULL, js, STREAM, &cc, NULL, NULL), "consumer");
	for (i = 1; i <= 5; i++) {
		snprintf(b, sizeof(b), "M%d", i);
		ck(js_Publish(NULL, js, subj, b, 2, NULL, NULL), "publish");
	}
}

/* A pull request on stream's consumer, then its requester disconnects. */
static void stale_request(const char *url, const char *stream, const char *consumer)
{
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	char inbox[64], subj[512];

	ck(natsConnection_ConnectTo(&nc, url), "connect");
	snprintf(inbox, sizeof(inbox), "_INBOX.pullresend%d", (int)getpid());
	ck(natsConnection_SubscribeSync(&sub, nc, inbox), "subscribe");
	snprintf(subj, sizeof(subj), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, consumer);
	ck(natsConnection_PublishRequestString(nc, subj, inbox,
					       "{\"batch\":1,\"expires\":10000000000}"),
	   "pull request");
	ck(natsConnection_Flush(nc), "flush");
	usleep(200000);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
}

int main(int argc, char **argv)
{
	natsConnection *nca = NULL, *ncb = NULL, *ncd = NULL;
	jsCtx *jsa = NULL, *jsb = NULL, *jsd = NULL;
	natsSubscription *sa, *sb, *sd;
	natsMsgList l;
	int i, resend = 0;

	if (argc == 4) {
		stale_request(argv[1], argv[2], argv[3]);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: pullresend URL [STREAM CONSUMER]\n");
		return 2;
	}
	ck(natsConnection_ConnectTo(&nca, argv[1]), "connect");
	ck(natsConnection_JetStream(&jsa, nca, NULL), "jetstream");
	setup(jsa);
	natsConnection_Destroy(nca);
	jsCtx_Destroy(jsa);
	sa = reader(argv[1], &nca, &jsa);
	sb = reader(argv[1], &ncb, &jsb);
	sd = reader(argv[1], &ncd, &jsd);
	ck(natsSubscription_Fetch(&l, sa, 1, 2000, NULL), "fetch A");
	natsMsgList_Destroy(&l);	/* M1, never acknowledged */
	ck(natsSubscription_Fetch(&l, sb, 4, 2000, NULL), "fetch B");
	for (i = 0; i < l.Count; i++)
		ck(natsMsg_AckSync(l.Msgs[i], NULL, NULL), "ack B");
	natsMsgList_Destroy(&l);
	stale_request(argv[1], STREAM, "C");
	sleep(3);	/* M1's AckWait passes */
	for (i = 0; i < 4; i++) {
		jsMsgMetaData *md = NULL;

		if (natsSubscription_Fetch(&l, sd, 1, 1500, NULL) != NATS_OK)
			continue;
		if (natsMsg_GetMetaData(&md, l.Msgs[0]) == NATS_OK) {
			printf("D: %.*s seq %llu delivery %llu\n", natsMsg_GetDataLength(l.Msgs[0]),
			       natsMsg_GetData(l.Msgs[0]), (unsigned long long)md->Sequence.Stream,
			       (unsigned long long)md->NumDelivered);
			resend |= md->Sequence.Stream > 1;	/* M2..M5 were ACKed */
			jsMsgMetaData_Destroy(md);
		}
		natsMsg_AckSync(l.Msgs[0], NULL, NULL);
		natsMsgList_Destroy(&l);
	}
	js_DeleteStream(jsd, STREAM, NULL, NULL);
	printf("resend: %s\n", resend ? "yes" : "no");
	return resend ? 0 : 1;
}
