/*
 * msg_parse.h — header/body split and field index (dkp_msg_* in
 * dkimpress.h). Internal helpers shared with sign.c and verify.c.
 */
#ifndef DKP_MSG_PARSE_H
#define DKP_MSG_PARSE_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

/* Case-insensitive: is field i named name (len n)? */
int dkp_msg_field_is(const struct dkp_msg *m, size_t i, const char *name,
		     size_t n);
/* Number of fields named name. */
size_t dkp_msg_count(const struct dkp_msg *m, const char *name, size_t n);

#endif
