/*
 * job.h — sign a batch: for each message a transport has fetched, set its
 * envelope lines aside, parse it, route its From address to its customer
 * keys (none, one or several: SigningTable lists, multiple_signatures),
 * choose the ESP keys (esp_key lines, or esp_stream), and make the
 * customer signatures (on top) and the ESP's, each with its key_policy
 * settings. No I/O: the transport reads before and publishes after
 * (transport.h).
 *
 * Each message ends here either ready to publish (outcome SIGNED or
 * ESP_ONLY, m->out = envelope lines, signature fields, message) or
 * rejected with a struct dkp_err whose temp class decides defer or fail.
 * A struct dkp_job belongs to one worker thread.
 */
#ifndef DKP_JOB_H
#define DKP_JOB_H

#include <stddef.h>

#include "conf/snap.h"
#include "transport/transport.h"

struct dkp_job;

/* Called once per message signed with the ESP key alone because its
 * domain has no customer key (may be NULL). */
typedef void dkp_job_esp_only_fn(void *ctx, const char *domain, const char *id);

/* A job for batches of up to cap messages. */
struct dkp_job *dkp_job_new(size_t cap);
void dkp_job_free(struct dkp_job *j);
void dkp_job_set_hook(struct dkp_job *j, dkp_job_esp_only_fn *fn, void *ctx);
/* nosign = 1: copy messages through unsigned (to measure the queue path). */
void dkp_job_set_nosign(struct dkp_job *j, int nosign);

/* Drop scratch buffers over keep bytes (the CRLF copies of big
 * messages), so an idle worker holds little. */
void dkp_job_trim(struct dkp_job *j, size_t keep);

/* Sign every message of m[0..n) (n <= cap) still open (outcome < 0)
 * with snapshot s. The out vectors point into m[i].buf and the job's own
 * buffers: valid until the next call. */
void dkp_job_sign(struct dkp_job *j, struct dkp_snap *s, struct dkp_tmsg *m,
		  size_t n);

#endif
