/*
 * verify.h — DKIM verification (dkp_verify in dkimpress.h): the `verify`
 * command, self-checks and tests. A fourth opinion beside dkimpy,
 * Mail::DKIM and libopendkim, never the only one.
 */
#ifndef DKP_VERIFY_H
#define DKP_VERIFY_H

#include "dkimpress/dkimpress.h"

#endif
