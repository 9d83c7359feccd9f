#!/usr/bin/python3
"""tests/fault/sweep.py -- fail every I/O step of the queue protocol, one at
a time, and check that no message is ever lost, duplicated, published
partial or left stuck. Run it through tests/fault/run.sh, which checks the
prerequisites, builds or finds the shim and copies the binary first.

    /usr/bin/python3 sweep.py DKIMPRESS SHIM [MODE:KIND:ERRNO:N ...]

With no point given, the whole sweep runs: for each mode (FAULT_MODES,
default "sys uring"), one run that only counts gives the number of calls
of each kind; then for each kind, each N from 1 to that count and each
errno (FAULT_ERRNOS, default "EIO ENOSPC EINTR") a fresh queue of 20
messages (2 malformed, 3 with envelope lines, 6 without a customer key,
each with a unique token in its body) is worked by `dkimpress run --once`
(threads 1, batch 8) with the Nth call of that kind failing with that
errno. The state is checked, the engine is restarted normally (up to 3
times, until it exits 0 or 65) and the final state is checked.

Modes:
  sys       io = syscalls, flush = filesystem: every open, read, write,
            fsync and syncfs is a libc call the shim (inject.c) fails.
  uring     io = uring, flush = files: opens for reading, reads, writes and
            file fsyncs go through io_uring, whose completions are failed by
            the engine's test hook (DKP_FAULT_URING="N:errno" in
            src/transport/uring.c; kind "uring"); the shim fails the
            syscall-level steps (create, rename, unlink, link, mkdir,
            directory fsync, the reason files).
  rec       as sys, but the queue starts as a crashed engine left it
            (claims, flushed copies with their inputs, retired copies in two
            worker areas, a claim of the old layout), so the faults land in
            recovery (src/transport/qdir_recover.c) too. Not in the default:
            it finds the defects listed in tests/fault/README.md.
  sysfiles, uringfs: the other two io x flush pairs.

Kinds (inject.c): open read write fsync dirsync syncfs rename unlink link
mkdir, close (only when FAULT_KINDS names it), and uring.

After the injected run (messages found by their token):
  - each message is in exactly one of in/ (in/new or in/cur/E/), out/new,
    failed/; one found only in out/tmp is "in flight" (the restart must
    resolve it); nowhere = LOST; two places = DUPLICATE;
  - every file in out/new is complete: its input (envelope lines on top)
    plus 1 or 2 DKIM-Signature fields, nothing else (else PARTIAL);
  - a message in failed/ has a non-empty reason;
  - the engine did not crash or hang (FAULT_TIMEOUT, default 30 s).
After the restarts:
  - each well-formed message is in out/new exactly once, each malformed one
    in failed/ once with its reason; no file is left in in/new, in/cur,
    out/tmp; a well-formed message in failed/ fails the point (its reason
    is shown);
  - dkimpy verifies every signature of FAULT_VERIFY (default 2) outputs
    chosen at random (seeded by the point), keys offline.
Noted, not failed: an injected run that exits 0 with messages left in the
queue, stale failed/ID.reason files without a message (documented in
docs/queue.md), hidden temporary files left in failed/, empty engine
directories left over, messages published under ID.dupN.

Before the sweep, a self-test breaks copies of a good queue (a lost, a
duplicated, a partial, a stuck, a wrongly failed message, a missing reason,
a tampered body) and expects each complaint, so the checks cannot pass
vacuously.

The last line is "fault: N passed, N failed": one check per (mode, kind,
errno) group plus the set-up checks; every point is a line of points.tsv.
A failing point prints the injected call, its call chain (addr2line), the
problems and the command that repeats it. Env: FAULT_JOBS (points at once,
default 6: the engine mostly sleeps in its back-off), FAULT_MODES,
FAULT_KINDS, FAULT_ERRNOS, FAULT_MAX_N (cap N per kind), FAULT_VERIFY,
FAULT_TIMEOUT, FAULT_OUT (where points.tsv goes; default the work
directory), FAULT_KEEP=1 (keep the work directory; it is kept anyway when a
check fails).
"""
import collections
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dkim

SHIM_KINDS = ["open", "read", "write", "fsync", "dirsync", "syncfs", "rename",
              "unlink", "link", "mkdir", "close"]
ROP = {0: "OPEN_RD", 1: "OPEN_EXCL", 2: "SIZE", 3: "READ", 4: "WRITEV",
       5: "FSYNC", 6: "CLOSE", 7: "RENAME", 8: "RENAME_NOREPLACE", 9: "UNLINK"}
MODES = {
    "sys": {"io": "syscalls", "flush": "filesystem"},
    "uring": {"io": "uring", "flush": "files"},
    "sysfiles": {"io": "syscalls", "flush": "files"},
    "uringfs": {"io": "uring", "flush": "filesystem"},
    # recovery: the queue a crashed engine left (see Fixture.crash)
    "rec": {"io": "syscalls", "flush": "filesystem"},
}
DEAD = "e999999-0badcafe"       # the crashed engine of mode rec
REC_C = (0, 1, 2, 6)            # claimed (6 is malformed)
REC_W = (3, 4, 5)               # claimed, and a flushed copy in out/tmp/E/w0
REC_R = {7: "w0", 8: "w0", 9: "w0", 10: "w1", 11: "w1"}   # retired: copy only
REC_LEGACY = (12,)              # a claim of the old layout, in/cur/ID
NMSG = 20
TOKEN = re.compile(rb"FAULT-TOKEN-(\d{3})-[0-9a-f]{16}")
TIMEOUT = float(os.environ.get("FAULT_TIMEOUT", "30"))


def log(*a):
    print(*a, flush=True)


# ---- the fixture: keys, tables, configuration, messages -------------------

class Fixture:
    def __init__(self, top, binary):
        self.top, self.bin = top, binary
        keys = os.path.join(top, "keys")
        os.makedirs(keys)
        dns = []
        specs = [("esp.example", "esp", "rsa", keys),
                 ("c1.example", "k1", "rsa", os.path.join(keys, "c1")),
                 ("c2.example", "k2", "ed25519", os.path.join(keys, "c2"))]
        for dom, sel, typ, kdir in specs:
            os.makedirs(kdir, exist_ok=True)
            out = subprocess.run([binary, "keygen", "--domain", dom, "--selector", sel,
                                  "--type", typ, "--out", kdir],
                                 check=True, capture_output=True).stdout
            dns.append(out)
        self.dns_path = os.path.join(top, "dns.txt")
        with open(self.dns_path, "wb") as f:
            f.write(b"".join(dns))
        with open(os.path.join(top, "KeyTable"), "w") as f:
            f.write("key1 c1.example:k1:%s/c1/k1.private\n" % keys)
            f.write("key2 c2.example:k2:%s/c2/k2.private\n" % keys)
        with open(os.path.join(top, "SigningTable"), "w") as f:
            f.write("*@c1.example key1\n*@c2.example key2\n")
        self.esp = "esp.example:esp:%s/esp.private" % keys
        self.dns = {}
        for line in b"".join(dns).splitlines():
            name, _, rec = line.partition(b"\t")
            if rec:
                self.dns[name.strip().rstrip(b".").lower()] = rec.strip()
        self.make_messages()

    def make_messages(self):
        rng = random.Random(20261130)
        doms = ["c1.example", "c2.example", "nokey.example"]
        self.msgs = {}      # index -> (id, bytes, envelope bytes, want sigs, ok)
        self.pristine = os.path.join(self.top, "pristine")
        os.makedirs(self.pristine)
        for i in range(NMSG):
            dom = doms[i % 3]
            tok = "FAULT-TOKEN-%03d-%016x" % (i, rng.getrandbits(64))
            hdr = ["From: News <news@%s>" % dom, "To: reader%d@example.net" % i,
                   "Subject: fault sweep message %d" % i,
                   "Date: Mon, 30 Nov 2026 10:00:%02d +0000" % i,
                   "Message-ID: <%d.%s@%s>" % (i, tok[-8:], dom),
                   "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
            ok = True
            if i == 6:          # no From: must end in failed/
                hdr = hdr[1:]
                ok = False
            if i == 13:         # two From fields: failed/ too
                hdr.insert(0, "From: other@%s" % dom)
                ok = False
            size = rng.choice([200, 800, 3000, 12000, 40000])
            lines, n = [], 0
            while n < size:
                ln = "line %d of message %d: %s" % (len(lines), i, "x" * rng.randint(5, 60))
                lines.append(ln)
                n += len(ln) + 2
            lines.insert(len(lines) // 2, tok)
            env = b""
            if i in (2, 9, 16):
                env = ("x-sender: bounce-%d@%s\r\nx-receiver: reader%d@example.net\r\n"
                       % (i, dom, i)).encode()
            body = ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()
            qid = "m%03d" % i
            with open(os.path.join(self.pristine, qid), "wb") as f:
                f.write(env + body)
            want = 1 if dom == "nokey.example" else 2
            self.msgs[i] = (qid, body, env, want, ok)

    def conf(self, qdir, mode):
        m = MODES[mode]
        path = os.path.join(os.path.dirname(qdir), "conf")
        with open(path, "w") as f:
            f.write("queue_dir = %s\nesp_key = %s\nkey_table = %s/KeyTable\n"
                    "signing_table = refile:%s/SigningTable\nthreads = 1\nbatch = 8\n"
                    "io = %s\nflush = %s\n"
                    % (qdir, self.esp, self.top, self.top, m["io"], m["flush"]))
        return path

    def new_queue(self, d, mode=None):
        q = os.path.join(d, "q")
        os.makedirs(os.path.join(q, "in"))
        shutil.copytree(self.pristine, os.path.join(q, "in", "new"))
        if mode == "rec":
            self.crash(q)
        return q

    def baseline(self):
        """Signed copies of every well-formed message, from a normal run:
        the flushed copies of the crashed engine of mode rec."""
        d = os.path.join(self.top, "baseline")
        os.makedirs(d)
        q = self.new_queue(d)
        r = run_engine(self.bin, self.conf(q, "sys"))
        self.signed = {}
        for name in os.listdir(os.path.join(q, "out", "new")):
            with open(os.path.join(q, "out", "new", name), "rb") as f:
                self.signed[name] = f.read()
        return r, q

    def crash(self, q):
        """What a kill -9 of engine DEAD leaves (docs/queue.md states C, W,
        R), a claim of the old layout, and the rest still queued."""
        new = os.path.join(q, "in", "new")
        claim = os.path.join(q, "in", "cur", DEAD)
        tmp = os.path.join(q, "out", "tmp", DEAD)
        os.makedirs(claim)
        for w in ("w0", "w1"):
            os.makedirs(os.path.join(tmp, w))
        for i in REC_C + REC_W:
            qid = self.msgs[i][0]
            os.rename(os.path.join(new, qid), os.path.join(claim, qid))
        for i in REC_LEGACY:
            qid = self.msgs[i][0]
            os.rename(os.path.join(new, qid), os.path.join(q, "in", "cur", qid))
        for i, w in list(((i, "w0") for i in REC_W)) + list(REC_R.items()):
            qid = self.msgs[i][0]
            with open(os.path.join(tmp, w, qid), "wb") as f:
                f.write(self.signed[qid])
            if i in REC_R:
                os.unlink(os.path.join(new, qid))


# ---- running the engine -----------------------------------------------------

def run_engine(binary, conf, env_extra=None, timeout=TIMEOUT):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "FAULT_OP", "FAULT_N", "FAULT_ERRNO", "FAULT_COUNT",
              "FAULT_LOG", "FAULT_TRACE", "DKP_FAULT_URING"):
        env.pop(k, None)
    if env_extra:
        env.update(env_extra)
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "run", "-c", conf, "--once"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        hung = True
    return {"rc": p.returncode, "out": out.decode("utf-8", "replace"),
            "err": err.decode("utf-8", "replace"), "hung": hung,
            "secs": time.monotonic() - t0}


# ---- the state of a queue ------------------------------------------------------

def files_under(d):
    out = []
    for root, dirs, files in os.walk(d):
        for f in files:
            out.append(os.path.join(root, f))
    return out


def split_sigs(data):
    """Strip leading DKIM-Signature fields: (count, rest)."""
    n = 0
    while data[:15].lower() == b"dkim-signature:":
        end = data.find(b"\r\n")
        if end < 0:
            return n, None
        end += 2
        while data[end:end + 1] in (b" ", b"\t"):
            nxt = data.find(b"\r\n", end)
            if nxt < 0:
                return n, None
            end = nxt + 2
        data, n = data[end:], n + 1
    return n, data


class State:
    """Where each message is (by token), and what is wrong with the files."""

    def __init__(self, fx, q):
        self.loc = collections.defaultdict(lambda: collections.Counter())
        self.where = collections.defaultdict(list)
        self.problems = []      # failures
        self.notes = []         # not failures
        self.out_files = []
        self.leftover_files = []
        self.failed_reasons = {}
        self.q = q
        names = {"in_new": os.path.join(q, "in", "new"),
                 "in_cur": os.path.join(q, "in", "cur"),
                 "in_tmp": os.path.join(q, "in", "tmp"),
                 "out_new": os.path.join(q, "out", "new"),
                 "out_tmp": os.path.join(q, "out", "tmp"),
                 "failed": os.path.join(q, "failed")}
        for area, d in names.items():
            if not os.path.isdir(d):
                continue
            for path in files_under(d):
                rel = os.path.relpath(path, q)
                base = os.path.basename(path)
                if area == "failed":
                    if base.startswith("."):
                        self.notes.append("hidden file left in failed/: %s" % base)
                        continue
                    if base.endswith(".reason"):
                        continue
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as e:
                    self.problems.append("cannot read %s: %s" % (rel, e))
                    continue
                toks = set(TOKEN.findall(data))
                if area in ("in_new", "in_cur", "out_tmp", "in_tmp"):
                    self.leftover_files.append(rel)
                if len(toks) != 1:
                    if area == "out_tmp":
                        continue        # a torn copy, before its token
                    self.problems.append("%s holds %d message tokens (%d bytes)"
                                         % (rel, len(toks), len(data)))
                    continue
                i = int(toks.pop())
                key = {"in_new": "in", "in_cur": "in", "in_tmp": "in_tmp",
                       "out_new": "out", "out_tmp": "flight", "failed": "failed"}[area]
                self.loc[i][key] += 1
                self.where[i].append(rel)
                if area == "out_new":
                    self.check_output(fx, i, rel, data)
                    self.out_files.append((i, path))
                    qid = fx.msgs[i][0]
                    if base != qid:
                        self.notes.append("message %d published as out/new/%s" % (i, base))
                elif area == "failed":
                    self.check_reason(path, rel, i)
                elif area in ("in_new", "in_cur"):
                    qid, body, env, _, _ = fx.msgs[i]
                    if data != env + body:
                        self.problems.append("%s: the queued input differs from the original" % rel)
                    if base != qid:
                        self.notes.append("message %d queued again as %s" % (i, rel))
        # stale reasons: failed/X.reason without failed/X
        fdir = names["failed"]
        if os.path.isdir(fdir):
            present = set(os.listdir(fdir))
            for b in present:
                if b.endswith(".reason") and not b.startswith(".") and b[:-7] not in present:
                    self.notes.append("stale failed/%s without its message" % b)

    def check_output(self, fx, i, rel, data):
        qid, body, env, want, _ = fx.msgs[i]
        if env:
            if not data.startswith(env):
                self.problems.append("%s: envelope lines missing or changed" % rel)
                return
            data = data[len(env):]
        n, rest = split_sigs(data)
        if rest != body:
            self.problems.append("%s: PARTIAL or altered output (%d bytes, %d DKIM-Signature fields,"
                                 " body %s)" % (rel, len(data), n,
                                                "cut" if rest is not None and body.startswith(rest)
                                                else "different"))
        elif n != want:
            self.problems.append("%s: %d DKIM-Signature fields, want %d" % (rel, n, want))

    def check_reason(self, path, rel, i):
        try:
            with open(path + ".reason", "rb") as f:
                reason = f.read().decode("utf-8", "replace").strip()
        except OSError:
            reason = None
        if not reason:
            self.problems.append("%s has no reason file (or an empty one)" % rel)
        self.failed_reasons[i] = reason or ""

    def invariant(self, fx, final):
        """Per message: exactly one place (or in flight), and at the end the
        right place."""
        for i in range(NMSG):
            c = self.loc.get(i, collections.Counter())
            held = c["in"] + c["out"] + c["failed"] + c["in_tmp"]
            places = ", ".join(self.where.get(i, [])) or "nowhere"
            if held > 1:
                self.problems.append("DUPLICATE: message %d (%s) is in %s"
                                     % (i, fx.msgs[i][0], places))
            elif held == 0 and c["flight"] == 0:
                self.problems.append("LOST: message %d (%s) is nowhere" % (i, fx.msgs[i][0]))
            elif held == 0 and final:
                self.problems.append("message %d (%s) still only in flight after the restart: %s"
                                     % (i, fx.msgs[i][0], places))
            if c["flight"] > 1:
                self.problems.append("message %d has %d copies in out/tmp" % (i, c["flight"]))
            if not final:
                continue
            ok = fx.msgs[i][4]
            if ok and c["failed"]:
                self.problems.append("well-formed message %d (%s) ended in failed/, reason: %r"
                                     % (i, fx.msgs[i][0], self.failed_reasons.get(i)))
            elif ok and c["out"] != 1:
                self.problems.append("message %d (%s) is not in out/new once: %s"
                                     % (i, fx.msgs[i][0], places))
            if not ok and c["failed"] != 1:
                self.problems.append("malformed message %d (%s) is not in failed/ once: %s"
                                     % (i, fx.msgs[i][0], places))
        if final and self.leftover_files:
            orphan = any(f.startswith("out/tmp/") and not os.path.isdir(
                os.path.join(self.q, "in", "cur", f.split("/")[2])) for f in self.leftover_files)
            self.problems.append("files left after the restart: %s%s"
                                 % (", ".join(sorted(self.leftover_files)[:6]),
                                    " (in out/tmp/E with in/cur/E gone: no recovery looks"
                                    " there again)" if orphan else ""))

    def held_in_queue(self):
        return sum(c["in"] for c in self.loc.values())


def empty_dirs_left(q):
    left = []
    for sub in ("in/cur", "out/tmp"):
        d = os.path.join(q, sub)
        if os.path.isdir(d):
            left += ["%s/%s" % (sub, e) for e in os.listdir(d)]
    return left


# ---- dkimpy, keys offline ------------------------------------------------

_dkim_lock = threading.Lock()


def dkimpy_verify(fx, path):
    with open(path, "rb") as f:
        data = f.read()

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return fx.dns.get(name.rstrip(b".").lower(), b"")

    quiet = logging.getLogger("fault-dkimpy")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    with _dkim_lock:
        d = dkim.DKIM(data, logger=quiet, minkey=1024)
        sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
        res = []
        for idx in range(len(sigs)):
            try:
                res.append(bool(d.verify(idx=idx, dnsfunc=dnsfunc)))
            except Exception:
                res.append(False)
    return len(sigs), all(res) and len(res) > 0


# ---- one point ----------------------------------------------------------------

class Sweep:
    def __init__(self, binary, shim, work, outdir):
        self.bin, self.shim, self.work, self.outdir = binary, shim, work, outdir
        self.fx = Fixture(os.path.join(work, "fixture"), binary)
        self.base_run, self.base_q = self.fx.baseline()
        self.nverify = int(os.environ.get("FAULT_VERIFY", "2"))
        self.lock = threading.Lock()
        self.verified = [0, 0]     # signatures' messages checked, failed

    def selftest(self):
        """The checks must see what they are there for: on copies of the
        baseline queue, break one thing each and expect the complaint.
        Returns a list of the cases the checker missed."""
        q0 = self.base_q
        tmpdir = os.path.join("out", "tmp", DEAD, "w0")

        def mv(a, b):
            def f(q):
                os.makedirs(os.path.dirname(os.path.join(q, b)), exist_ok=True)
                os.rename(os.path.join(q, a), os.path.join(q, b))
            return f

        def cp(a, b):
            return lambda q: shutil.copy(os.path.join(q, a), os.path.join(q, b))

        def cut(a):
            def f(q):
                path = os.path.join(q, a)
                data = open(path, "rb").read()
                open(path, "wb").write(data[:len(data) * 2 // 3])
            return f

        def tamper(a):
            def f(q):
                path = os.path.join(q, a)
                data = open(path, "rb").read()
                open(path, "wb").write(data.replace(b"line 1 of", b"line 1 0f", 1))
            return f

        cases = [
            ("nothing wrong", lambda q: None, None, True),
            ("a lost message", lambda q: os.unlink(os.path.join(q, "out/new/m000")), "LOST", False),
            ("a message in in/new and out/new", cp("out/new/m001", "in/new/m001"), "DUPLICATE", False),
            ("a message published twice", cp("out/new/m003", "out/new/m003.dup1"), "DUPLICATE", False),
            ("a partial file in out/new", cut("out/new/m004"), "PARTIAL", False),
            ("a well-formed message in failed/", lambda q: (
                mv("out/new/m007", "failed/m007")(q),
                open(os.path.join(q, "failed/m007.reason"), "w").write("x\n")), "ended in failed/", True),
            ("a retired copy left unpublished", mv("out/new/m008", tmpdir + "/m008"), "only in flight", True),
            ("a failed message without its reason", lambda q: os.unlink(os.path.join(q, "failed/m006.reason")),
             "no reason", False),
            ("a file left in in/cur", mv("out/new/m010", "in/cur/%s/m010" % DEAD), "files left", True),
        ]
        missed = []
        for what, breakit, want, final in cases:
            d = os.path.join(self.work, "selftest")
            shutil.rmtree(d, ignore_errors=True)
            q = os.path.join(d, "q")
            shutil.copytree(q0, q)
            breakit(q)
            st = State(self.fx, q)
            st.invariant(self.fx, final)
            text = " | ".join(st.problems)
            if (want is None and st.problems) or (want is not None and want not in text):
                missed.append("%s: %s" % (what, text or "no complaint"))
        # dkimpy must reject a tampered body
        d = os.path.join(self.work, "selftest")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(q0, os.path.join(d, "q"))
        tamper("out/new/m000")(os.path.join(d, "q"))
        if dkimpy_verify(self.fx, os.path.join(d, "q", "out/new/m000"))[1]:
            missed.append("dkimpy accepted a tampered body")
        if not dkimpy_verify(self.fx, os.path.join(q0, "out/new/m000"))[1]:
            missed.append("dkimpy rejected a good output")
        shutil.rmtree(d, ignore_errors=True)
        return missed

    def point_dir(self, mode, kind, err, n):
        return os.path.join(self.work, "p", "%s-%s-%s-%d" % (mode, kind, err, n))

    def inject_env(self, kind, err, n, d):
        if kind == "uring":
            en = {"EIO": 5, "ENOSPC": 28, "EINTR": 4}.get(err)
            return {"DKP_FAULT_URING": "%d:%d" % (n, en)}
        return {"LD_PRELOAD": self.shim, "FAULT_OP": kind, "FAULT_N": str(n),
                "FAULT_ERRNO": err, "FAULT_LOG": os.path.join(d, "fault.log")}

    def count(self, mode):
        """Calls of each kind in a normal run; the io_uring completions by
        bisection on the hook (it prints a line when it fires)."""
        d = os.path.join(self.work, "count-" + mode)
        os.makedirs(d)
        q = self.fx.new_queue(d, mode)
        conf = self.fx.conf(q, mode)
        cf = os.path.join(d, "counts")
        r = run_engine(self.bin, conf, {"LD_PRELOAD": self.shim, "FAULT_COUNT": cf})
        counts = {}
        if os.path.exists(cf):
            for line in open(cf):
                k, v = line.split()
                counts[k] = int(v)
        st = State(self.fx, q)
        st.invariant(self.fx, True)
        if MODES[mode]["io"] == "uring":
            if "io_uring" not in r["err"].split("run: engine", 1)[-1].split("\n", 1)[0]:
                counts["uring"] = -1        # no ring here
            else:
                lo, hi = 0, 1
                while self.uring_fires(mode, hi):
                    lo, hi = hi, hi * 2
                while hi - lo > 1:          # fires(lo), not fires(hi)
                    mid = (lo + hi) // 2
                    if self.uring_fires(mode, mid):
                        lo = mid
                    else:
                        hi = mid
                counts["uring"] = lo
        return r, st, counts

    def uring_fires(self, mode, n):
        d = tempfile.mkdtemp(dir=self.work, prefix="probe-")
        q = self.fx.new_queue(d)
        r = run_engine(self.bin, self.fx.conf(q, mode), {"DKP_FAULT_URING": "%d:5" % n})
        shutil.rmtree(d, ignore_errors=True)
        return "DKP_FAULT_URING: completion" in r["err"]

    def point(self, mode, kind, err, n):
        try:
            return self.point1(mode, kind, err, n)
        except Exception:
            import traceback
            return {"mode": mode, "kind": kind, "errno": err, "n": n, "fired": False,
                    "rc": None, "rcs": [], "flight": 0, "secs": 0, "what": "",
                    "problems": ["the sweep itself failed: " +
                                 traceback.format_exc().strip().replace("\n", " / ")],
                    "notes": []}

    def point1(self, mode, kind, err, n):
        d = self.point_dir(mode, kind, err, n)
        os.makedirs(d)
        q = self.fx.new_queue(d, mode)
        conf = self.fx.conf(q, mode)
        res = {"mode": mode, "kind": kind, "errno": err, "n": n, "problems": [],
               "notes": [], "what": "", "rcs": []}
        r = run_engine(self.bin, conf, self.inject_env(kind, err, n, d))
        with open(os.path.join(d, "injected.log"), "w") as f:
            f.write(r["err"] + r["out"])
        res["rc"] = r["rc"]
        res["secs"] = r["secs"]
        fl = os.path.join(d, "fault.log")
        if kind == "uring":
            m = re.search(r"DKP_FAULT_URING: completion \d+ \(op (\d+), res (-?\d+)\)", r["err"])
            res["fired"] = m is not None
            if m:
                res["what"] = "io_uring %s (res %s)" % (ROP.get(int(m.group(1)), m.group(1)), m.group(2))
        else:
            res["fired"] = os.path.exists(fl)
            if res["fired"]:
                first = open(fl).readline().strip()
                res["what"] = re.sub(r"^injected \S+ #\d+: ", "", first)
                res["what"] = res["what"].replace(q + "/", "")
        if r["hung"]:
            res["problems"].append("HANG: the injected run did not end within %.0f s" % TIMEOUT)
        elif r["rc"] < 0:
            res["problems"].append("CRASH: the injected run was killed by signal %d" % -r["rc"])
        if re.search(r"Sanitizer|runtime error", r["err"]):
            res["problems"].append("sanitizer report in the injected run")
        st = State(self.fx, q)
        st.invariant(self.fx, False)
        res["problems"] += ["after the injected run: " + p for p in st.problems]
        res["notes"] += st.notes
        if r["rc"] == 0 and st.held_in_queue():
            res["notes"].append("the injected run exited 0 with %d messages left in in/"
                                % st.held_in_queue())
        res["flight"] = sum(1 for c in st.loc.values() if c["flight"] and
                            not (c["in"] + c["out"] + c["failed"]))
        # restart normally until nothing is left
        for attempt in range(3):
            rr = run_engine(self.bin, conf)
            res["rcs"].append(rr["rc"])
            with open(os.path.join(d, "restart%d.log" % attempt), "w") as f:
                f.write(rr["err"] + rr["out"])
            if rr["hung"]:
                res["problems"].append("HANG: restart %d did not end" % (attempt + 1))
                break
            if rr["rc"] < 0:
                res["problems"].append("CRASH: restart %d killed by signal %d" % (attempt + 1, -rr["rc"]))
                break
            if rr["rc"] in (0, 65):
                break
        else:
            res["problems"].append("the restarts did not drain the queue (exits %s)" % res["rcs"])
        fin = State(self.fx, q)
        fin.invariant(self.fx, True)
        res["problems"] += ["after the restart: " + p for p in fin.problems]
        res["notes"] += ["after the restart: " + x for x in fin.notes if x not in st.notes]
        left = empty_dirs_left(q)
        if left:
            res["notes"].append("after the restart: directories left: %s" % ", ".join(left))
        for i, reason in fin.failed_reasons.items():
            if self.fx.msgs[i][4]:
                res["notes"].append("well-formed message %d failed: %s" % (i, reason))
        # dkimpy on a sample of the outputs
        rng = random.Random("%s:%s:%s:%d" % (mode, kind, err, n))
        sample = rng.sample(fin.out_files, min(self.nverify, len(fin.out_files)))
        for i, path in sample:
            nsig, ok = dkimpy_verify(self.fx, path)
            with self.lock:
                self.verified[0] += 1
                self.verified[1] += 0 if ok else 1
            if not ok:
                res["problems"].append("dkimpy: %s does not verify (%d signatures)"
                                       % (os.path.relpath(path, q), nsig))
        if res["problems"] and os.path.exists(fl):
            res["where"] = self.where(fl)
        if not res["problems"] and os.environ.get("FAULT_KEEP") != "1":
            shutil.rmtree(d, ignore_errors=True)
        return res

    def where(self, fault_log):
        """The engine's call chain of the injected call (addr2line)."""
        offs = []
        for line in open(fault_log):
            m = re.match(r"\s+bt (\S+)\(\+(0x[0-9a-f]+)\)", line)
            if m and os.path.realpath(m.group(1)) == os.path.realpath(self.bin):
                offs.append("%#x" % (int(m.group(2), 16) - 1))    # the call, not the return
        if not offs or shutil.which("addr2line") is None:
            return ""
        r = subprocess.run(["addr2line", "-f", "-p", "-e", self.bin] + offs,
                           capture_output=True, text=True)
        frames = [re.sub(r" \(discriminator \d+\)", "", l.strip())
                  for l in r.stdout.splitlines() if l.strip()]
        return " <- ".join(re.sub(r"^(\S+) at .*?(src/.*)$", r"\1 (\2)", f) for f in frames[:5])


def main():
    binary, shim = sys.argv[1], sys.argv[2]
    only = sys.argv[3:]
    work = tempfile.mkdtemp(prefix="dkimpress-fault.", dir=os.environ.get("TMPDIR", "/tmp"))
    outdir = os.environ.get("FAULT_OUT") or work
    os.makedirs(outdir, exist_ok=True)
    jobs = int(os.environ.get("FAULT_JOBS", "6"))
    modes = os.environ.get("FAULT_MODES", "sys uring rec").split()
    errnos = os.environ.get("FAULT_ERRNOS", "EIO ENOSPC EINTR").split()
    kinds = os.environ.get("FAULT_KINDS", " ".join(k for k in SHIM_KINDS if k != "close")
                           + " uring").split()
    max_n = int(os.environ.get("FAULT_MAX_N", "0"))
    passed = failed = 0
    t0 = time.monotonic()

    def ok(msg):
        nonlocal passed
        passed += 1
        log("ok   " + msg)

    def bad(msg):
        nonlocal failed
        failed += 1
        log("FAIL " + msg)

    sw = Sweep(binary, shim, work, outdir)
    log("work directory: %s" % work)
    st = State(sw.fx, sw.base_q)
    st.invariant(sw.fx, True)
    if st.problems or sw.base_run["rc"] != 65:
        bad("a normal run (no fault, no preload): exit %s; %s" % (sw.base_run["rc"], "; ".join(st.problems)))
    else:
        ok("a normal run signs 18 messages (all verified by dkimpy below) and fails the 2 malformed ones")
    missed = sw.selftest()
    if missed:
        bad("the checks miss what they must catch: " + "; ".join(missed))
    else:
        ok("the checks catch a lost, a duplicated, a partial, a stuck and a wrongly failed message, "
           "a missing reason, and dkimpy a tampered body")
    tasks = []
    if only:
        for spec in only:
            mode, kind, err, n = spec.split(":")
            tasks.append((mode, kind, err, int(n)))
    else:
        for mode in modes:
            r, st, counts = sw.count(mode)
            if MODES[mode]["io"] == "uring" and r["rc"] == 78 and "io_uring" in r["err"]:
                log("note %s: io_uring is unavailable here (%s): mode left out"
                    % (mode, r["err"].strip().splitlines()[-1]))
                continue
            problems = st.problems + (["exit %d" % r["rc"]] if r["rc"] != 65 else [])
            if problems:
                bad("%s: the counting run (no fault): %s" % (mode, "; ".join(problems)))
                continue
            ok("%s: a run without faults %spublishes 18 and fails the 2 malformed messages; calls: %s"
               % (mode, "recovers the crashed engine's area, " if mode == "rec" else "",
                  " ".join("%s=%d" % (k, v) for k, v in sorted(counts.items()) if v)))
            for kind in kinds:
                c = counts.get(kind, 0)
                if kind == "uring" and c < 0:
                    log("note %s: io_uring unavailable here: no completion to fail" % mode)
                    continue
                if kind == "uring" and MODES[mode]["io"] != "uring":
                    continue
                if kind != "uring" and kind not in SHIM_KINDS:
                    bad("unknown kind %s" % kind)
                    continue
                if max_n:
                    c = min(c, max_n)
                for err in errnos:
                    for n in range(1, c + 1):
                        tasks.append((mode, kind, err, n))
    log("%d injection points (mode:kind:errno:N), %d at a time" % (len(tasks), jobs))
    results = []
    tsv = open(os.path.join(outdir, "points.tsv"), "w")
    tsv.write("mode\tkind\terrno\tn\tfired\trc\trestart_rcs\tin_flight\tsecs\tinjected call\tproblems\tnotes\n")
    done = 0
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = [ex.submit(sw.point, *t) for t in tasks]
        for f in futs:
            res = f.result()
            results.append(res)
            done += 1
            tsv.write("%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%.2f\t%s\t%s\t%s\n" % (
                res["mode"], res["kind"], res["errno"], res["n"], res["fired"], res["rc"],
                ",".join(map(str, res["rcs"])), res["flight"], res["secs"], res["what"],
                " | ".join(res["problems"]), " | ".join(res["notes"])))
            tsv.flush()
            if res["problems"]:
                log("FAIL point %s:%s:%s:%d (%s; exit %s, restarts %s):" % (
                    res["mode"], res["kind"], res["errno"], res["n"], res["what"] or "not reached",
                    res["rc"], res["rcs"]))
                if res.get("where"):
                    log("       call: " + res["where"])
                for p in res["problems"]:
                    log("       " + p)
                log("       reproduce: tests/fault/run.sh %s:%s:%s:%d  (its queue is kept in %s)" % (
                    res["mode"], res["kind"], res["errno"], res["n"],
                    sw.point_dir(res["mode"], res["kind"], res["errno"], res["n"])))
            if done % 100 == 0:
                log("  ... %d/%d points, %.0f s" % (done, len(tasks), time.monotonic() - t0))
    tsv.close()

    # one check per (mode, kind, errno); a summary table
    groups = collections.OrderedDict()
    for res in results:
        groups.setdefault((res["mode"], res["kind"], res["errno"]), []).append(res)
    log("")
    log("%-6s %-8s %-7s %6s %6s %7s %9s  %s" % ("mode", "kind", "errno", "points", "fired",
                                                  "flight", "bad", "injected-run exits"))
    fired_total = 0
    for (mode, kind, err), rs in groups.items():
        nb = sum(1 for r in rs if r["problems"])
        fired = sum(1 for r in rs if r["fired"])
        fired_total += fired
        fl = sum(1 for r in rs if r["flight"])
        exits = collections.Counter(str(r["rc"]) for r in rs)
        log("%-6s %-8s %-7s %6d %6d %7d %9d  %s" % (mode, kind, err, len(rs), fired, fl, nb,
                                                     " ".join("%s:%d" % kv for kv in sorted(exits.items()))))
        label = "%s %s %s: %d points (N=1..%d), %d injected" % (mode, kind, err, len(rs),
                                                                max(r["n"] for r in rs), fired)
        if nb:
            bad(label + ": %d with a lost, duplicated, partial or stuck message (see above)" % nb)
        else:
            ok(label + ": every message in exactly one place after the fault, "
               "published once or failed with a reason after the restart")
    notes = collections.Counter()
    for res in results:
        for n in res["notes"]:
            notes[re.sub(r"\d+", "N", re.sub(r"e\d+-[0-9a-f]{8}", "E", n))] += 1
    if notes:
        log("")
        log("notes (not failures), by kind of note:")
        for n, c in notes.most_common():
            log("  %5d x %s" % (c, n))
    log("")
    log("dkimpy verified %d sampled outputs, %d failed" % tuple(sw.verified))
    if results and sw.verified[0] == 0:
        bad("dkimpy verified no output")
    keep = failed or os.environ.get("FAULT_KEEP") == "1" or outdir != work
    log("%d injection points, %d reached their call, in %.0f s%s"
        % (len(results), fired_total, time.monotonic() - t0,
           "; points: " + os.path.join(outdir, "points.tsv") if keep
           else " (FAULT_OUT=DIR keeps points.tsv, one line per point)"))
    if failed or os.environ.get("FAULT_KEEP") == "1":
        log("kept %s (the queue of every failing point is in p/)" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    log("fault: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
