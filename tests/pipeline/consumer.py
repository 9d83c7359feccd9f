#!/usr/bin/python3
"""consumer.py -- take published messages out of out/new as soon as they appear.

    consumer.py OUT_NEW SINK STOPFILE [POLL_MS]

Like a downstream MTA: every POLL_MS (default 3) milliseconds it lists
OUT_NEW and renames each regular file in it into SINK, as SINK/SEQ.NAME
(SEQ counts up, so a name published twice is kept twice). It stops once
STOPFILE exists and OUT_NEW has been seen empty after that. Prints
"consumed N" at the end. Part of tests/pipeline/run.sh.
"""

import os
import sys
import time


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    out, sink, stop = argv[0], argv[1], argv[2]
    poll = (float(argv[3]) if len(argv) == 4 else 3.0) / 1000.0
    os.makedirs(sink, exist_ok=True)
    seq = 0
    while True:
        stopping = os.path.exists(stop)
        took = 0
        try:
            entries = list(os.scandir(out))
        except FileNotFoundError:
            entries = []
        for e in entries:
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            seq += 1
            try:
                os.rename(e.path, os.path.join(sink, "%07d.%s" % (seq, e.name)))
                took += 1
            except FileNotFoundError:
                pass
        if stopping and took == 0:
            break
        if took == 0:
            time.sleep(poll)
    print("consumed %d" % len(os.listdir(sink)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
