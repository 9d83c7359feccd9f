/*
 * transport.h — the seam between the engine and where messages come from
 * and go to (DESIGN.md "Transports"). A transport moves bytes and makes
 * outcomes durable; it knows nothing about DKIM. The engine signs; it
 * knows nothing about directories or brokers.
 *
 * One batch, as a worker runs it (src/engine/pool_worker.c):
 *
 *   ids ──fetch──► messages in memory (claimed, read, checked)
 *        engine:   sign each; set m->out (what to publish) or m->err
 *        commit ──► signed ones published durably and their inputs
 *                   retired; failed ones moved aside with a reason;
 *                   deferred ones handed back for a later retry
 *
 * After commit every message of the batch is in exactly one outcome
 * (m->outcome).
 *
 * Group commit (optional, the queue directory has it): commit splits in
 * two. stage runs on the worker (write the signed copies, no flush);
 * commit_round runs on the pool's commit thread, over and over: each
 * round takes the batches staged since the last one ("fresh") and the
 * ones the last round flushed ("done"), and with one flush for all of
 * them makes the fresh copies durable and retires and publishes the done
 * batches, so signing never waits for a flush and a flush serves every
 * batch waiting. commit(w, m, n) is stage followed by a round with the
 * batch fresh and one with it done. Where the IDs come from is the
 * transport's too: the queue directory lists in/new (scan, fed to
 * workers by the pool's dispatcher); a broker (JetStream,
 * src/transport/jetstream*.c) sets `pulls` and fills the IDs itself in
 * fetch from a pull consumer.
 *
 * Recovery takes back what a crashed engine left; it runs at start and,
 * for transports shared by several engines, periodically.
 *
 * Errors: functions return 0 or -errno for the transport as a whole; each
 * message carries its own struct dkp_err, whose temp class decides defer
 * (temp) or fail (permanent). Thread-safety: a struct dkp_tworker belongs
 * to one worker thread; scan and recover may run beside the workers.
 */
#ifndef DKP_TRANSPORT_H
#define DKP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dkimpress/dkimpress.h"

#define DKP_QID_MAX 200

enum dkp_outcome {
	DKP_OUT_SIGNED = 0,	/* customer + ESP signatures, published */
	DKP_OUT_ESP_ONLY,	/* no customer key: ESP signature only, published */
	DKP_OUT_DEFERRED,	/* temporary failure: handed back, retried later */
	DKP_OUT_FAILED,		/* moved aside (failed/) with a reason */
	DKP_OUT_GONE,		/* claimed by another engine first: not ours */
	DKP_OUT_N
};

/* One message of a batch. The engine owns the array and reuses it. */
struct dkp_tmsg {
	char id[DKP_QID_MAX + 1];	/* queue ID (in) */
	char pub[DKP_QID_MAX + 1];	/* name it was published or failed
					 * under, if not id (collision) */
	/* filled by fetch; buf is kept between batches (cap) */
	char *buf;
	size_t len, cap;
	double t_claim;			/* monotonic seconds */
	/* set by the engine before commit for a message to publish:
	 * envelope lines, new signature fields, the message */
	struct iovec out[3];
	int nout;
	int outcome;			/* enum dkp_outcome, -1 while open */
	/* set by the engine: DMARC alignment (enum dkp_align_result,
	 * conf/align.h; 0 not checked) and the From domain it is about */
	int align;
	char align_dom[256];
	/* set by the engine with a signed result, for the counters: its
	 * signatures per algorithm ([0] rsa-sha256, [1] ed25519-sha256) and
	 * the topmost one's d=, lowercased ("" if none) */
	unsigned nsig[2];
	char sig_dom[256];
	int claimed;			/* the transport holds it */
	struct dkp_err err;		/* why deferred or failed */
	/* transport-private */
	int fd;				/* the claimed input, open until commit */
	int copy;			/* a signed copy exists in the temp area */
	uint64_t held;			/* bytes taken from the budget for it */
	int64_t st_size, st_mtime_ns, st_ctime_ns;
};

/* Mark m deferred (err->temp) or failed (permanent) with err's reason. */
void dkp_tmsg_reject(struct dkp_tmsg *m, const struct dkp_err *err);

struct dkp_transport;
struct dkp_tworker;
struct dkp_budget;

/* One worker's staged batch, for commit_round. */
struct dkp_tbatch {
	struct dkp_tworker *w;
	struct dkp_tmsg *m;
	size_t n;
};

/* What recovery did. */
struct dkp_recovery {
	size_t engines;		/* dead engines' areas taken back */
	size_t published;	/* retired copies published */
	size_t requeued;	/* claims put back to be signed again */
	size_t discarded;	/* copies dropped because their input was back */
};

struct dkp_transport_ops {
	const char *name;
	int pulls;	/* 1: fetch fills the IDs itself (no scan) */
	/* One worker's state (its ring, its temporary area). */
	int (*worker_new)(struct dkp_transport *t, unsigned id, int want_uring,
			  unsigned depth, struct dkp_tworker **out);
	void (*worker_free)(struct dkp_tworker *w);
	int (*worker_uring)(const struct dkp_tworker *w);
	/* Claim and read m[0..n); messages over max_bytes fail; the bytes
	 * read are taken from budget, and given back by commit. A pulling
	 * transport fills the IDs too and returns how many messages it
	 * filled (0 after waiting up to about 500 ms for one), or -errno. */
	int (*fetch)(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
		     uint64_t max_bytes, struct dkp_budget *budget);
	/* Make every outcome of m[0..n) durable. A negative return means the
	 * transport cannot go on safely (the engine must stop; recovery at
	 * the next start finishes what was in hand). */
	int (*commit)(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n);
	/* Group commit (both NULL where the transport has none). stage:
	 * the worker's part of commit, before any flush (0 or -errno, as
	 * commit). commit_round: one round for nf fresh and nd done batches
	 * of any workers (see above); the done ones are ended (every
	 * message in its outcome) when it returns, the fresh ones must come
	 * back as done in a later round. *unsynced is the caller's (0 at
	 * first): set while published entries wait for a flush. May run on
	 * another thread than the batches' workers, never beside a fetch or
	 * stage of the same batch. */
	int (*stage)(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n);
	int (*commit_round)(struct dkp_tbatch *fresh, size_t nf, struct dkp_tbatch *done,
			    size_t nd, int *unsynced);
	/* Call fn for each message waiting; stop early if fn returns
	 * non-zero. */
	int (*scan)(struct dkp_transport *t,
		    int (*fn)(void *ctx, const char *id), void *ctx);
	/* Take back what crashed engines left. */
	int (*recover)(struct dkp_transport *t, struct dkp_recovery *r);
};

struct dkp_transport {
	const struct dkp_transport_ops *ops;
};

#endif
