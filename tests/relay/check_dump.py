#!/usr/bin/python3
"""tests/relay/check_dump.py SNAPSHOT DUMPDIR OUTDIR - Postfix smtp-sink's
-d dump files against the signed files of SNAPSHOT.

A dump is smtp-sink's own X-Client-Addr / X-Client-Proto / X-Helo-Args /
X-Mail-Args / X-Rcpt-Args lines, its Received: field, the message as
received (lines ending in LF), then one empty line. For each dump: its message (those lines and
the last empty line removed, LF back to CRLF) must equal the signed file
without its envelope lines; X-Mail-Args its x-sender, X-Rcpt-Args its
x-receivers. The message is written to OUTDIR/TID.eml for the verifiers.
Last line: "dumps=N missing=M duplicates=D mismatched=X".
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_env import split  # noqa: E402


def main(snap, dump, outdir):
    os.makedirs(outdir, exist_ok=True)
    want = {}
    for name in os.listdir(snap):
        env, msg = split(open(os.path.join(snap, name), 'rb').read())
        tid = re.search(rb'X-Test-Id: (\S+)', msg).group(1).decode()
        want[tid] = (env, msg)
    seen, bad, n = {}, 0, 0
    for name in sorted(os.listdir(dump)):
        n += 1
        lines = open(os.path.join(dump, name), 'rb').read().split(b'\n')
        mail, rcpts = None, []
        while lines and re.match(rb'X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|Rcpt-Args): ', lines[0]):
            if lines[0].startswith(b'X-Mail-Args: '):
                mail = lines[0][13:].decode('utf-8').split(' ')[0]
            if lines[0].startswith(b'X-Rcpt-Args: '):
                rcpts.append(lines[0][13:].decode('utf-8').split(' ')[0])
            lines.pop(0)
        # smtp-sink's own Received: field on top of the message
        if lines and lines[0].startswith(b'Received: from '):
            lines.pop(0)
            while lines and lines[0][:1] in (b'\t', b' '):
                lines.pop(0)
        # the message, then smtp-sink's empty line (and the final LF)
        if lines[-2:] == [b'', b'']:
            lines = lines[:-2]
        msg = b''.join(l + b'\r\n' for l in lines)
        m = re.search(rb'X-Test-Id: (\S+)', msg)
        tid = m.group(1).decode() if m else '?'
        seen[tid] = seen.get(tid, 0) + 1
        if tid not in want:
            print('%s: unknown %s' % (name, tid))
            bad += 1
            continue
        env, wmsg = want[tid]
        with open(os.path.join(outdir, tid + '.eml'), 'wb') as f:
            f.write(msg)
        sender = '<%s>' % (env[0] if env[0] != '<>' else '')
        if msg != wmsg or mail != sender or rcpts != ['<%s>' % r for r in env[1:]]:
            print('%s (%s): differs: mail %r rcpts %r, %d/%d bytes' %
                  (name, tid, mail, rcpts, len(msg), len(wmsg)))
            bad += 1
    missing = sum(1 for t in want if t not in seen)
    dups = sum(c - 1 for c in seen.values() if c > 1)
    print('dumps=%d missing=%d duplicates=%d mismatched=%d' % (n, missing, dups, bad))


main(*sys.argv[1:4])
