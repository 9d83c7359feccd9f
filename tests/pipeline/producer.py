#!/usr/bin/python3
"""producer.py -- feed a dkimpress queue at a steady pace, as a producer must.

    producer.py QUEUE_IN_DIR N RATE PREFIX MANIFEST

Writes N messages, RATE per second, each first into IN/tmp/ID and then
renamed into IN/new/ID (the queue ID is the file name). ID is
PREFIX-NNNNNN; the body ends with the unique token TOK-ID-END. MANIFEST
gets one ID a line, written as each message is handed over. Prints
"produced N in S s" at the end. Part of tests/pipeline/run.sh.
"""

import os
import sys
import time


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    qin, n, rate, prefix, manifest = argv[0], int(argv[1]), float(argv[2]), argv[3], argv[4]
    tmp = os.path.join(qin, "tmp")
    new = os.path.join(qin, "new")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(new, exist_ok=True)
    t0 = time.monotonic()
    with open(manifest, "w") as man:
        for i in range(n):
            due = t0 + i / rate
            ahead = due - time.monotonic()
            if ahead > 0.002:
                time.sleep(ahead)
            qid = "%s-%06d" % (prefix, i)
            body = "".join("line %d of pipeline message %s\r\n" % (j, qid) for j in range(i % 7 + 1))
            data = ("From: Sender <a@esp.example>\r\n"
                    "To: r%d@example.net\r\n"
                    "Subject: X\r\n"
                    "Message-ID: <%s@esp.example>\r\n"
                    "\r\n"
                    "%sTOK-%s-END\r\n" % (i, qid, body, qid)).encode()
            path = os.path.join(tmp, qid)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.rename(path, os.path.join(new, qid))
            man.write(qid + "\n")
            if i % 256 == 0:
                man.flush()
    print("produced %d in %.1f s" % (n, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
