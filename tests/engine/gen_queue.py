#!/usr/bin/python3
"""gen_queue.py -- a varied queue for the engine tests.

    /usr/bin/python3 gen_queue.py TEMPLATES QUEUE N MANIFEST

TEMPLATES is a directory written by tests/interop/gen_corpus.py (48 varied
messages: CRLF, LF and mixed line endings, folding, 8-bit, multipart, big
bodies). Message i is template i % len, with its From domain replaced by
one of 50 customer domains: d01-d20 have RSA keys, d21-d40 Ed25519, d41-d50
none; every other keyed message is From a subdomain (news.dNN.example),
routed by a "*@*.dNN.example" SigningTable pattern. Every 250th message is
malformed (no From, or two From fields) and must end in failed/.

Writes QUEUE/in/new/q%06d through QUEUE/in/tmp, and a manifest: one line
per message, "ID<TAB>expected customer d= or -<TAB>ok|fail". Fixed choices:
the same arguments give the same queue.
"""
import os
import re
import sys

# interop quirk cases (verifiers disagree there; see tests/interop/run.sh)
# and the 2 MB body (kept to every 200th message) are handled apart
SKIP = ("no-final-eol", "bare-cr", "headers-only", "last-line-ws-only-no-eol")


def main():
    tdir, qdir, n, manifest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    names = sorted(f for f in os.listdir(tdir)
                   if f.endswith(".eml") and not any(s in f for s in SKIP))
    big = [f for f in names if "2mb" in f]
    small = [f for f in names if f not in big]
    tmpl = {f: open(os.path.join(tdir, f), "rb").read() for f in names}
    os.makedirs(os.path.join(qdir, "in", "tmp"), exist_ok=True)
    os.makedirs(os.path.join(qdir, "in", "new"), exist_ok=True)
    with open(manifest, "w") as man:
        for i in range(n):
            qid = "q%06d" % i
            src = tmpl[big[0]] if big and i % 200 == 199 else tmpl[small[i % len(small)]]
            d = 1 + i % 50
            dom = "d%02d.example" % d
            keyed = d <= 40
            sender = ("news." + dom) if keyed and i % 2 else dom
            cut = src.find(b"\n\n")
            cut2 = src.find(b"\r\n\r\n")
            ends = [c for c in (cut, cut2) if c >= 0]
            hend = min(ends) if ends else len(src)
            head, body = src[:hend], src[hend:]
            head = head.replace(b"@customer.example", ("@" + sender).encode())
            state = "ok"
            if i % 250 == 124:      # no From at all
                head = re.sub(rb"(?im)^from:", b"X-Was-From:", head)
                state = "fail"
            elif i % 250 == 249:    # a second From
                head = b"From: second@" + sender.encode() + b"\r\n" + head
                state = "fail"
            tmp = os.path.join(qdir, "in", "tmp", qid)
            with open(tmp, "wb") as f:
                f.write(head + body)
            os.rename(tmp, os.path.join(qdir, "in", "new", qid))
            man.write("%s\t%s\t%s\n" % (qid, dom if keyed else "-", state))


main()
