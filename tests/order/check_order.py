#!/usr/bin/python3
"""tests/order/check_order.py -- check, from an strace of `dkimpress run`,
that every published message went through the queue protocol's steps in
the order that makes it crash-safe against power loss (docs/queue.md):

  1. its signed copy (out/tmp/E/wN/ID) is written and closed;
  2. a FLUSH OF THE COPY completes after that and before step 3: a
     syncfs that started after the close, or (flush = files) an fsync of
     the copy after its writes and then an fsync of its directory;
  3. its input is retired: unlinkat(in/cur/E, ID);
  4. a FLUSH OF THE RETIRE completes after that and before step 5: a
     syncfs that started after the unlink ended, or an fsync of in/cur/E;
  5. the copy is published: renameat2(out/tmp/E/wN, ID, out/new, ...);
  6. a flush of out/new (a syncfs or an fsync of out/new) starts after the
     publish, before the engine exits.

A kill -9 cannot see a missing flush (the page cache survives it), so the
crash tests cannot catch a flush in the wrong place; a power loss would.
This reads the order off the system calls instead.

    check_order.py TRACE [--self-test]

TRACE comes from `strace -f -qq -y -ttt -T -e trace=openat,close,unlinkat,
renameat2,syncfs,fsync -o TRACE dkimpress run ...` with io = syscalls (so
that the copies' closes and fsyncs are system calls). Prints one line per
violation and a summary "order: N messages checked, N violations".
Exit 0 when none, 1 otherwise, 2 when the trace holds no published message.
"""
import re
import sys

LINE = re.compile(r'^(\d+)\s+(\d+\.\d+) (.*)$')
CALL = re.compile(r'^(\w+)\((.*)\) += (-?\d+)(<[^>]*>)?(?: [A-Z]+ \([^)]*\))? <(\d+\.\d+)>$')
UNFINISHED = re.compile(r'^(\w+)\((.*) <unfinished \.\.\.>$')
RESUMED = re.compile(r'^<\.\.\. (\w+) resumed>(.*)\) += (-?\d+)(<[^>]*>)?(?: [A-Z]+ \([^)]*\))? <(\d+\.\d+)>$')
FDPATH = re.compile(r'^-?\d+<(.*)>$')


def split_args(s):
    """Split strace's argument text at top-level commas."""
    out, depth, cur, q = [], 0, "", False
    i = 0
    while i < len(s):
        c = s[i]
        if q:
            cur += c
            if c == "\\":
                cur += s[i + 1]
                i += 1
            elif c == '"':
                q = False
        elif c == '"':
            q = True
            cur += c
        elif c in "<[{(":
            depth += 1
            cur += c
        elif c in ">]})":
            depth -= 1
            cur += c
        elif c == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        out.append(cur.strip())
    return out


def fdpath(a):
    m = FDPATH.match(a)
    return m.group(1) if m else None


def name(a):
    return a[1:-1] if a.startswith('"') and a.endswith('"') else a


def calls(path):
    """(name, args, ret, retpath, start, end) of every completed call."""
    pending = {}
    for raw in open(path, errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
        u = UNFINISHED.match(rest)
        if u:
            pending[pid] = (u.group(1), u.group(2), t)
            continue
        r = RESUMED.match(rest)
        if r:
            if pid not in pending:
                continue
            fn, args, t0 = pending.pop(pid)
            yield (fn, split_args(args + r.group(2)), int(r.group(3)),
                   r.group(4)[1:-1] if r.group(4) else None, t0,
                   t0 + float(r.group(5)))
            continue
        c = CALL.match(rest)
        if c:
            yield (c.group(1), split_args(c.group(2)), int(c.group(3)),
                   c.group(4)[1:-1] if c.group(4) else None, t,
                   t + float(c.group(5)))


def check(path):
    copy_closed = {}     # copy path -> close end
    copy_fsync = {}      # copy path -> fsync (start, end)
    dir_fsyncs = {}      # directory path -> [(start, end)]
    syncfs = []          # (start, end)
    unlink = {}          # (claim dir, ID) -> (start, end)
    published = []       # (ID, copy path, start, end)
    open_fd = {}
    for fn, a, ret, retpath, t0, t1 in calls(path):
        if ret < 0:
            continue
        if fn == "openat" and retpath and "/out/tmp/" in retpath:
            open_fd[retpath] = t1
        elif fn == "close":
            p = fdpath(a[0])
            if p and "/out/tmp/" in p:
                copy_closed[p] = t1
        elif fn == "fsync":
            p = fdpath(a[0])
            if p is None:
                continue
            if re.search(r'/out/tmp/[^/]+/w\d+/[^/]+$', p):
                copy_fsync[p] = (t0, t1)
            else:
                dir_fsyncs.setdefault(p, []).append((t0, t1))
        elif fn == "syncfs":
            syncfs.append((t0, t1))
        elif fn == "unlinkat":
            d = fdpath(a[0])
            if d and "/in/cur/" in d:
                unlink[(d, name(a[1]))] = (t0, t1)
        elif fn == "renameat2":
            src, dst = fdpath(a[0]), fdpath(a[2])
            if src and dst and "/out/tmp/" in src and dst.endswith("/out/new"):
                published.append((name(a[1]), src + "/" + name(a[1]), t0, t1, dst))
    bad = []

    def flushed(after, before, extra=()):
        """A syncfs, or one of the extra (start, end) flushes, inside
        (after, before)."""
        for s, e in list(syncfs) + list(extra):
            if s >= after and e <= before:
                return True
        return False

    for mid, copy, p0, p1, outnew in published:
        closed = copy_closed.get(copy)
        if closed is None:
            bad.append("%s: published, but its copy %s was never closed in the trace" % (mid, copy))
            continue
        claims = [k for k in unlink if k[1] == mid]
        if not claims:
            bad.append("%s: published without an unlink of its input in in/cur/E" % mid)
            continue
        cdir = claims[0][0]
        u0, u1 = unlink[claims[0]]
        if u0 < closed:
            bad.append("%s: input unlinked before its copy was closed" % mid)
        # 2: the copy flushed between its close and the unlink: a syncfs,
        # or (flush = files) an fsync of the copy after its last write
        # (the stage fsyncs it before the close) and then of its directory
        fs = copy_fsync.get(copy)
        tdir = copy.rsplit("/", 1)[0]
        files_ok = fs is not None and fs[0] >= open_fd.get(copy, float("inf")) and any(
            ds >= fs[1] and de <= u0 for ds, de in dir_fsyncs.get(tdir, []))
        if not files_ok and not flushed(closed, u0):
            bad.append("%s: no flush of its copy between the copy's close and the unlink of its input" % mid)
        # 4: the unlink flushed before the publish rename
        if p0 < u1:
            bad.append("%s: published before its input was retired" % mid)
        elif not flushed(u1, p0, dir_fsyncs.get(cdir, [])):
            bad.append("%s: no flush of in/cur/E between the unlink of its input and its publish" % mid)
        # 6: out/new flushed after the publish
        if not flushed(p1, float("inf"), dir_fsyncs.get(outnew, [])):
            bad.append("%s: out/new never flushed after its publish" % mid)
    for b in bad[:20]:
        print("VIOLATION " + b)
    if len(bad) > 20:
        print("... and %d more" % (len(bad) - 20))
    print("order: %d messages checked, %d violations" % (len(published), len(bad)))
    if not published:
        return 2
    return 1 if bad else 0


def self_test(tmp):
    """A good trace passes; each broken one is caught."""
    Q = "/q"
    E = Q + "/in/cur/e1-aa"
    T = Q + "/out/tmp/e1-aa/w0"
    good = [
        # (strace pads the PID column: one space or several)
        ("1  1.000 openat(5<%s>, \"m1\", O_WRONLY|O_CREAT|O_EXCL, 0600) = 9<%s/m1> <0.001>" % (T, T)),
        ("1 1.010 close(9<%s/m1>) = 0 <0.001>" % T),
        ("2 1.020 syncfs(4<%s>) = 0 <0.010>" % E),
        ("2 1.040 unlinkat(4<%s>, \"m1\", 0) = 0 <0.001>" % E),
        ("2 1.050 syncfs(4<%s>) = 0 <0.010>" % E),
        ("2 1.070 renameat2(5<%s>, \"m1\", 7<%s/out/new>, \"m1\", RENAME_NOREPLACE) = 0 <0.001>" % (T, Q)),
        ("2 1.080 fsync(7<%s/out/new>) = 0 <0.001>" % Q),
    ]
    cases = {"good": (good, 0),
             "no copy flush": ([l for i, l in enumerate(good) if i != 2], 1),
             "no retire flush": ([l for i, l in enumerate(good) if i != 4], 1),
             "publish before retire": (good[:5] + [good[5].replace(" 1.070 ", " 1.035 "), good[6]], 1),
             "out/new never flushed": (good[:6], 1)}
    fails = 0
    for what, (lines, want) in cases.items():
        p = "%s/selftest.trace" % tmp
        open(p, "w").write("\n".join(lines) + "\n")
        got = check(p)
        ok = got == want
        fails += not ok
        print("self-test %-22s %s (exit %d, want %d)" % (what, "ok" if ok else "WRONG", got, want))
    return 1 if fails else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[2] == "--self-test":
        sys.exit(self_test(sys.argv[1]))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(check(sys.argv[1]))
