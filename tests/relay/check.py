#!/usr/bin/python3
"""tests/relay/check.py SNAPSHOT GOT [--expect-how DATA|BDAT] - what the
sink (tests/relay/sink.py) received against the signed files.

SNAPSHOT holds copies of the files the engine published in out/new
(envelope lines on top). GOT is the sink's directory (N.eml + N.env).
Prints one line per problem and a last line
"deliveries=N messages=M missing=K duplicates=D mismatched=X"; for every
transaction: the data equals the signed file without its envelope lines,
byte for byte; MAIL FROM is its x-sender; every RCPT is one of its
x-receivers; BODY=8BITMIME exactly when the data has 8-bit bytes (and
the sink announced 8BITMIME: --eightbit), SMTPUTF8 exactly when an
address is not ASCII. --explain: a message received twice must have
been the last transaction of the session that carried its first copy
(the relay was killed between the server's acceptance and its delete). --only NAME,... limits "missing" to those ids.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_env import split  # noqa: E402



def main(argv):
    snap, got = argv[0], argv[1]
    how = None
    eightbit = '--eightbit' in argv
    if '--expect-how' in argv:
        how = argv[argv.index('--expect-how') + 1]
    want = {}
    for name in os.listdir(snap):
        data = open(os.path.join(snap, name), 'rb').read()
        env, msg = split(data)
        tid = re.search(rb'X-Test-Id: (\S+)', msg).group(1).decode()
        want[tid] = (env, msg)
    seen, bad, total = {}, 0, 0
    first = {}                  # (tid, rcpt) -> (session, seq) of the 1st copy
    last = {}                   # session -> its last seq
    for name in sorted(os.listdir(got)):
        if not name.endswith('.env'):
            continue
        total += 1
        meta = json.load(open(os.path.join(got, name)))
        data = open(os.path.join(got, name[:-4] + '.eml'), 'rb').read()
        m = re.search(rb'X-Test-Id: (\S+)', data)
        tid = m.group(1).decode() if m else '?'
        if tid not in want:
            print('%s: unknown message %s' % (name, tid))
            bad += 1
            continue
        env, msg = want[tid]
        sess = (meta['session'], meta.get('seq', 0))
        last[sess[0]] = max(last.get(sess[0], 0), sess[1])
        for r in meta['rcpts']:
            seen[(tid, r)] = seen.get((tid, r), 0) + 1
            if (tid, r) not in first or first[(tid, r)] > sess:
                first[(tid, r)] = sess
        problems = []
        if data != msg:
            problems.append('data differs (%d bytes, want %d)' % (len(data), len(msg)))
        if meta['mail'] != (env[0] if env[0] != '<>' else ''):
            problems.append('MAIL FROM %r, want %r' % (meta['mail'], env[0]))
        if any(r not in env[1:] for r in meta['rcpts']):
            problems.append('RCPT %r not among %r' % (meta['rcpts'], env[1:]))
        has8 = any(b >= 0x80 for b in msg)
        if eightbit and ('BODY=8BITMIME' in meta['params']) != has8:
            problems.append('params %r, 8-bit body: %s' % (meta['params'], has8))
        utf8 = any(any(ord(c) >= 0x80 for c in a) for a in env)
        if ('SMTPUTF8' in meta['params']) != utf8:
            problems.append('params %r, UTF-8 address: %s' % (meta['params'], utf8))
        if how and meta['how'] != how:
            problems.append('sent with %s, want %s' % (meta['how'], how))
        for p in problems:
            print('%s (%s): %s' % (name, tid, p))
        bad += bool(problems)
    only = None
    for a in argv:
        if a.startswith('--only='):
            only = set(a[7:].split(','))
    missing = dups = unexplained = 0
    for tid, (env, msg) in want.items():
        if only is not None and tid not in only:
            continue
        for r in env[1:]:
            n = seen.get((tid, r), 0)
            if n == 0:
                print('missing: %s to %s' % (tid, r))
                missing += 1
            dups += max(0, n - 1)
            # a copy sent twice is explained only when the relay stopped
            # right after the first: it was its session's last one
            if n > 1 and first[(tid, r)][1] != last[first[(tid, r)][0]]:
                print('unexplained duplicate: %s to %s (session %d went on)'
                      % (tid, r, first[(tid, r)][0]))
                unexplained += 1
    print('deliveries=%d messages=%d missing=%d duplicates=%d mismatched=%d%s'
          % (total, len(want), missing, dups, bad,
             ' unexplained=%d' % unexplained if '--explain' in argv else ''))


main(sys.argv[1:])
