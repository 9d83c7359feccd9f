/*
 * relay.h — `dkimpress relay`: the process around the relay layer
 * (src/relay/): configuration, the worker threads (one persistent
 * session each), the scan of out/new and out/defer, inotify, signals,
 * the summary. Exit codes: 0, 75 (--once left deferred messages), 78
 * (configuration), 73/74 (queue directories).
 */
#ifndef DKP_CMD_RELAY_H
#define DKP_CMD_RELAY_H

#include "cmd/cli.h"

int dkp_relay_run(const struct dkp_cli *c);

#endif
