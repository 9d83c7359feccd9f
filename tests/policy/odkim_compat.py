#!/usr/bin/python3
"""odkim_compat.py -- the same KeyTable and SigningTable through Debian's
OpenDKIM 2.11 milter and through `dkimpress run`, compared.

    odkim_compat.py DKIMPRESS WORKDIR

For each scenario (plain and refile SigningTables whose lines overlap,
with MultipleSignatures yes and no): OpenDKIM runs privately (-f, its own
configuration, inet socket on a free loopback port, no syslog, its pid
ours to stop) and gets each test message over its milter socket
(milter_client.py, the MTA side of the protocol); the d=/s= pairs of the
DKIM-Signature fields it adds are its answer. dkimpress signs the same
messages with the same two files (multiple_signatures = yes / no,
esp-only for no match) and its customer pairs (the ESP's left out) must
be the same set, message by message. OpenDKIM signs twice when two lines
name one key; dkimpress signs once, so sets are compared, and the
OpenDKIM output is also shown, so what it did is on record.
Prints "ok"/"FAIL" lines and "policy-opendkim: N passed, N failed".
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import milter_client as mc  # noqa: E402

KEYS = [  # name, d=, s=
    ("kaddr", "cust.example", "c1"), ("kdom", "cust.example", "c2"),
    ("kdom2", "cust.example", "c5"), ("kpar", "cust.example", "c3"),
    ("kuser", "cust.example", "u1"), ("kpct", "%", "p1"),
]
SCENARIOS = [
    ("plain-all-kinds", "file", [
        "alice@a.cust.example kaddr", "a.cust.example kdom",
        "a.cust.example kdom2", ".cust.example kpar", "alice@* kuser", "* kpct"]),
    ("plain-no-catchall", "file", [
        "alice@a.cust.example kaddr", "a.cust.example kdom", ".cust.example kpar"]),
    ("refile-overlap", "refile", [
        "alice@a.cust.example kaddr", "*@a.cust.example kdom",
        "*@*.cust.example kpar", "*@a.cust.example kdom2", "alice@* kuser", "* kpct"]),
    ("refile-same-key", "refile", ["*@a.cust.example kdom", "* kdom"]),
]
FROMS = ["alice@a.cust.example", "bob@a.cust.example", "carol@x.cust.example",
         "bob@b.a.cust.example", "alice@other.test", "dave@other.test",
         "Alice@A.Cust.Example"]

passed = failed = 0
STOPPING = []   # OpenDKIM instances sent SIGTERM, reaped at the end


def ok(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what + (": " + detail if detail else ""))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def message(frm, i):
    return ("From: %s\r\nTo: rcpt@dest.test\r\nSubject: compat %d\r\n"
            "Date: Mon, 07 Dec 2026 00:00:00 +0000\r\nMessage-ID: <c%d@t>\r\n"
            "\r\nbody %d\r\n" % (frm, i, i, i)).encode()


def pairs(fields):
    out = []
    for v in fields:
        d = re.search(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", v)
        s = re.search(r"(?:^|;)\s*s\s*=\s*([^;\s]+)", v)
        out.append((d.group(1).lower() if d else None, s.group(1) if s else None))
    return out


def opendkim(work, name, kind, multi):
    port = free_port()
    conf = os.path.join(work, name + ".odkim.conf")
    with open(conf, "w") as f:
        f.write("Syslog no\nMode s\nSocket inet:%d@127.0.0.1\n"
                "KeyTable file:%s/KeyTable\nSigningTable %s:%s/%s.st\n"
                "MultipleSignatures %s\nRequireSafeKeys no\nInternalHosts 127.0.0.1\n"
                "PidFile %s/%s.pid\n"
                % (port, work, kind, work, name, "yes" if multi else "no", work, name))
    log = open(os.path.join(work, name + ".odkim.log"), "w")
    p = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", conf], stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.1)
    p.kill()
    p.wait()
    raise RuntimeError("opendkim did not start: " + open(log.name).read()[-500:])


def via_opendkim(work, name, kind, multi):
    p, port = opendkim(work, name, kind, multi)
    res = {}
    try:
        for i, frm in enumerate(FROMS):
            c = mc.Client("127.0.0.1", port)
            c.negotiate()
            verdict, added = c.message("bounce@esp.example", ["rcpt@dest.test"],
                                       message(frm, i), qid="Q%d" % i)
            c.abort_and_quit()
            res[frm] = pairs([v for n, v in added if n.lower() == "dkim-signature"])
    finally:
        # OpenDKIM (libmilter) takes about 5 s to exit after SIGTERM: stop
        # it now, reap it at the end, and let the next scenario go on
        p.terminate()
        STOPPING.append(p)
    return res


def via_dkimpress(dkp, work, name, kind, multi):
    q = os.path.join(work, name + ".q" + str(multi))
    os.makedirs(os.path.join(q, "in", "new"))
    for i, frm in enumerate(FROMS):
        with open(os.path.join(q, "in", "new", "m%d" % i), "wb") as f:
            f.write(message(frm, i))
    conf = os.path.join(work, name + ".dkp.conf")
    with open(conf, "w") as f:
        f.write("queue_dir = %s\nesp_key = esp.example:esp:%s/esp.private\n"
                "key_table = %s/KeyTable\nsigning_table = %s%s/%s.st\n"
                "%smissing_key = esp-only\nthreads = 1\n"
                % (q, work, work, "refile:" if kind == "refile" else "", work,
                   name, "multiple_signatures = yes\n" if multi else ""))
    r = subprocess.run([dkp, "run", "-c", conf, "--once"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("dkimpress run: exit %d: %s" % (r.returncode, r.stderr[-500:]))
    res = {}
    for i, frm in enumerate(FROMS):
        raw = open(os.path.join(q, "out", "new", "m%d" % i), "rb").read().decode()
        head = raw.split("\r\n\r\n", 1)[0]
        fields = [m.group(1) for m in re.finditer(
            r"(?ims)^dkim-signature:(.*?)(?=\r\n[^ \t]|\Z)", head)]
        res[frm] = [p for p in pairs(fields) if p != ("esp.example", "esp")]
    return res


def main():
    dkp, work = sys.argv[1], sys.argv[2]
    with open(os.path.join(work, "KeyTable"), "w") as f:
        for name, d, s in KEYS:
            f.write("%s %s:%s:%s/%s.private\n" % (name, d, s, work, s))
    for name, kind, lines in SCENARIOS:
        with open(os.path.join(work, name + ".st"), "w") as f:
            f.write("\n".join(lines) + "\n")
        for multi in (True, False):
            tag = "%s, MultipleSignatures %s" % (name, "yes" if multi else "no")
            try:
                theirs = via_opendkim(work, name, kind, multi)
                ours = via_dkimpress(dkp, work, name, kind, multi)
            except (RuntimeError, OSError, mc.MilterError) as e:
                ok(False, tag, str(e))
                continue
            for frm in FROMS:
                t, o = theirs[frm], ours[frm]
                ok(set(t) == set(o), "%s: From %s: OpenDKIM %s, dkimpress %s"
                   % (tag, frm, t or "(unsigned)", o or "(esp only)"))
    for p in STOPPING:
        p.wait()
    print("policy-opendkim: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
