/*
 * enqueue.h — `dkimpress enqueue`: the producer side of the queue
 * directory (docs/queue.md, "Producers"). One call hands one message to
 * the queue's in/: written under a new unique ID into in/tmp/ID
 * (O_CREAT|O_EXCL, 0600), optionally preceded by the envelope lines of
 * the pickup-directory convention (x-sender / x-receiver, CRLF), flushed,
 * then renamed into in/new/ID with RENAME_NOREPLACE and in/new flushed.
 * The ID is printed on standard output.
 *
 * Contract: on any failure the temporary file is removed and nothing
 * appears in in/new; the exit code (sysexits.h) tells a calling MTA
 * whether to retry (75) or not. Nothing in in/new is ever replaced.
 * Suitable for Postfix pipe(8): no terminal needed, message on stdin.
 *
 * Errors: reported on stderr, one line each; the return value is the
 * process exit code.
 */
#ifndef DKP_ENQUEUE_H
#define DKP_ENQUEUE_H

#include <stddef.h>

#include "cmd/cli.h"

/* Longest envelope address accepted (RFC 5321 4.5.3.1: 64 + 1 + 255),
 * the same bound the engine's envelope parser applies. */
#define DKP_ENQUEUE_MAX_ADDR 320

/* Enqueue the message c->in (NULL or "-": standard input) into the queue
 * of c->conf, with envelope c->sender / c->rcpts when given. Returns the
 * exit code: 0, 64 usage, 65 empty or too big, 66 FILE unreadable,
 * 73 cannot create in in/tmp, 74 I/O error, 75 temporary (full disk),
 * 78 configuration error. */
int dkp_enqueue_run(const struct dkp_cli *c);

/* Is a (NUL-terminated) usable as an envelope address? null_ok: "" and
 * "<>" are accepted (the null sender). On refusal returns 0 and points
 * *why at a short reason. */
int dkp_enqueue_addr_ok(const char *a, int null_ok, const char **why);

/* Make a new Maildir-style queue ID into out (outsz >= 256):
 * SECONDS.MUSECPPIDQCOUNTERRHEX.HOST. Every call in a process differs. */
void dkp_enqueue_make_id(char *out, size_t outsz);

#endif
