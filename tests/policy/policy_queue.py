#!/usr/bin/python3
"""policy_queue.py -- queue and checks for tests/policy/run.sh (issue 17:
several signatures per message, per-key settings, ESP key by stream).

    policy_queue.py gen TEMPLATES QUEUE N MANIFEST
    policy_queue.py check QUEUE MANIFEST POLICY_JSON

gen: message i is a gen_corpus.py template (the quirk cases the verifiers
disagree on left out, as tests/engine/gen_queue.py does) with its From
domain replaced by one of the routing cases below, an x-sender/x-receiver
envelope (sender domain chosen for esp_stream = sender runs) and, for
some, an "X-ESP-Stream: transactional" field (esp_stream = header runs).
The manifest line: ID, the case, the envelope sender's domain, whether
the stream field is there.

check: for every file in QUEUE/out/new, the DKIM-Signature fields are
exactly the expected (d=, s=) list in order (customer ones on top, then
the ESP's), each with the c=, h= (first names), x= - t= and i= its
key_policy line gives (POLICY_JSON: "d:s" -> {c, h, x, i}), the stream
field is gone, the envelope lines still on top. Prints one line per
problem and "policy-check: N files, P ok, F bad"; exit 1 on any.
"""
import json
import os
import re
import sys

SKIP = ("no-final-eol", "bare-cr", "headers-only", "last-line-ws-only-no-eol", "2mb")

# From domain -> customer (d=, s=) in order (the SigningTable of run.sh)
CASES = [
    ("cust.example", [("cust.example", "c-rsa"), ("cust.example", "c-ed")]),
    ("other.example", [("other.example", "o-rsa")]),
    ("third.example", [("third.example", "p-ed"), ("third.example", "p-rsa")]),
    ("nokey.example", []),
]


def gen(tdir, qdir, n, manifest):
    names = sorted(f for f in os.listdir(tdir)
                   if f.endswith(".eml") and not any(s in f for s in SKIP))
    os.makedirs(os.path.join(qdir, "in", "tmp"), exist_ok=True)
    os.makedirs(os.path.join(qdir, "in", "new"), exist_ok=True)
    with open(manifest, "w") as man:
        for i in range(n):
            src = open(os.path.join(tdir, names[i % len(names)]), "rb").read()
            dom = CASES[i % len(CASES)][0]
            ends = [c for c in (src.find(b"\n\n"), src.find(b"\r\n\r\n")) if c >= 0]
            hend = min(ends) if ends else len(src)
            head, body = src[:hend], src[hend:]
            head = head.replace(b"@customer.example", ("@" + dom).encode())
            stream = (i // len(CASES)) % 2 == 1
            if stream:  # the ESP's own stage marks the stream
                nl = b"\r\n" if b"\r\n" in head else b"\n"
                head = head + nl + b"X-ESP-Stream: transactional"
            sdom = "bulk.news.esp.example" if i % 3 == 0 else "mailer.example"
            env = ("x-sender: <bounce-%d@%s>\r\nx-receiver: <rcpt@dest.test>\r\n"
                   % (i, sdom)).encode()
            qid = "p%05d" % i
            tmp = os.path.join(qdir, "in", "tmp", qid)
            with open(tmp, "wb") as f:
                f.write(env + head + body)
            os.rename(tmp, os.path.join(qdir, "in", "new", qid))
            man.write("%s\t%s\t%s\t%d\n" % (qid, dom, sdom, stream))


def tags(field):
    v = re.sub(r"\r\n[ \t]", " ", field.split(":", 1)[1])
    out = {}
    for part in v.split(";"):
        if "=" in part:
            k, val = part.split("=", 1)
            out[k.strip()] = re.sub(r"\s+", "", val)
    return out


def check(qdir, manifest, polfile):
    mode = os.environ.get("STREAM_MODE", "none")
    pol = json.load(open(polfile))
    esp_default = pol["_esp_default"]
    esp_stream = pol["_esp_stream"]
    bad = okn = nfiles = 0
    for line in open(manifest):
        qid, dom, sdom, stream = line.rstrip("\n").split("\t")
        path = os.path.join(qdir, "out", "new", qid)
        probs = []
        if not os.path.exists(path):
            print("FAIL %s: not in out/new" % qid)
            bad += 1
            continue
        nfiles += 1
        raw = open(path, "rb").read().decode("latin-1")
        if not raw.startswith("x-sender: <bounce-"):
            probs.append("envelope lines not on top")
        head = raw[:raw.find("\r\n\r\n") + 2]
        fields = re.findall(r"(?ms)^([A-Za-z0-9-]+:.*?\r\n)(?=[^ \t]|\Z)", head)
        sigs = [tags(f) for f in fields if f.lower().startswith("dkim-signature:")]
        cust = dict(CASES)[dom]
        if mode == "header" and stream == "1":
            esp = esp_stream
        elif mode == "sender" and sdom.endswith(".news.esp.example"):
            esp = esp_stream
        else:
            esp = esp_default
        want = [list(p) for p in cust] + esp
        got = [[s.get("d"), s.get("s")] for s in sigs]
        if got != want:
            probs.append("signatures %s, want %s" % (got, want))
        if re.search(r"(?im)^x-esp-stream:", head) and mode == "header":
            probs.append("the X-ESP-Stream field was not removed")
        for s in sigs:
            p = pol.get("%s:%s" % (s.get("d"), s.get("s")), {})
            if s.get("c") != p.get("c", "relaxed/relaxed"):
                probs.append("%s: c=%s want %s" % (s.get("s"), s.get("c"), p.get("c")))
            if "h" in p and not s.get("h", "").lower().startswith(p["h"].lower()):
                probs.append("%s: h=%s want %s..." % (s.get("s"), s.get("h"), p["h"]))
            xt = int(s["x"]) - int(s["t"]) if "x" in s else 0
            if xt != p.get("x", 0):
                probs.append("%s: x-t=%d want %d" % (s.get("s"), xt, p.get("x", 0)))
            want_i = p.get("i", "").replace("%", s.get("d", "")) or None
            if s.get("i") != want_i:
                probs.append("%s: i=%s want %s" % (s.get("s"), s.get("i"), want_i))
        if probs:
            bad += 1
            print("FAIL %s (%s): %s" % (qid, dom, "; ".join(probs)))
        else:
            okn += 1
    print("policy-check: %d files, %d ok, %d bad" % (nfiles, okn, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
