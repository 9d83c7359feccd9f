/*
 * budget.h — a byte budget shared by threads (back-pressure): a taker
 * waits while what is taken would exceed the cap. A request larger than
 * the cap runs alone rather than never. Thread-safe; init/fini pair.
 */
#ifndef DKP_BUDGET_H
#define DKP_BUDGET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct dkp_budget {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t cap, used;
};

void dkp_budget_init(struct dkp_budget *b, uint64_t cap);
void dkp_budget_fini(struct dkp_budget *b);
/* Take n bytes, waiting while others hold too much. */
void dkp_budget_take(struct dkp_budget *b, uint64_t n);
/* Take n bytes only if they fit under the cap now; 1 taken, 0 not. */
int dkp_budget_try(struct dkp_budget *b, uint64_t n);
/* Give back n bytes taken before. */
void dkp_budget_give(struct dkp_budget *b, uint64_t n);
/* What a message of n bytes at p costs on top of itself: the size of the
 * CRLF copy dkp_msg_parse makes when it has bare LFs (n + one byte per
 * bare LF), 0 when every LF follows a CR. Every transport counts it. */
uint64_t dkp_budget_crlf_bytes(const char *p, size_t n);

#endif
