#!/usr/bin/python3
"""check.py -- count what Postfix B delivered into the Maildir (tests/e2e).

    /usr/bin/python3 check.py MANIFEST MAILDIR [--wrap-log FILE
        --events FILE --relay-log FILE [--conns N] [--id]] [--list OUT]

MANIFEST is send.py's: Message-ID -> recipients. Every file of MAILDIR/new
and MAILDIR/cur is one copy; it is keyed by its Message-ID and by the
Delivered-To field Postfix B's virtual(8) put on top. The first Received
field (Postfix B's smtpd) names the relay that sent it: its EHLO name is
relayK.e2e.test, K the relay's incarnation. Prints ok/FAIL lines (TAB
separated) and ends with one line of counts.

Without --wrap-log (the clean run): every (Message-ID, recipient) of the
manifest arrives exactly once, nothing else arrives, and every copy came
through a relay.

With --wrap-log (the kill run; wrap.sh's log), --events (the test's log:
"start K T", "kill K T", "stop K T" for relay incarnation K, "bstop - T"
and "bup - T" around Postfix B's restart, T in seconds since the epoch)
and --relay-log (the relays' standard error): the Return-Path carries
wrap.sh's TAG, one per enqueue run. Then
  - lost: a (Message-ID, recipient) of the manifest with no copy: failure;
  - MTA-retry duplicates: copies of one (Message-ID, recipient) with
    several TAGs (Postfix A ran enqueue again after an attempt whose
    answer it never got). Each TAG but one must be a run that wrap.sh
    killed; with --id (enqueue --id in master.cf) there must be none;
  - one TAG delivered more than once, each later copy explained by the
    copy before it:
    - relay-window duplicates: the relay incarnation that sent the copy
      before it was killed with -9 at most 1 s after that copy arrived
      (and at most WINDOW_SLACK s after: the window is the time between
      the final 250 and the unlink), the later copy came from a later
      incarnation, and no killed incarnation accounts for more than N
      (--conns, relay_connections: each worker is in the window at most
      once) such copies;
    - duplicates of Postfix B's stop: both copies carry the same Postfix B
      queue ID (B received the message once and delivered it twice: its
      local delivery cut by its stop), or the copy before it arrived while
      Postfix B was being stopped (between "bstop" and "bup", 1 s of
      slack for the Received field's whole seconds), and the relay log
      has a deferral of that recipient that is not a failed connect (the
      transaction was under way when Postfix B went: the message was
      queued there, its reply lost; RFC 1047's duplicate);
    any other duplicate is a failure.
--list OUT writes the path of every copy to OUT (for the verifiers).
"""

import email.utils
import json
import os
import re
import sys
from collections import defaultdict

WINDOW_SLACK = 5.0
RECEIVED_RE = re.compile(rb'^from (\S+) \(')
RELAY_RE = re.compile(r'^relay(\d+)\.e2e\.test$')
QID_RE = re.compile(rb'\swith E?SMTPS?A?\s+id\s+(\S+?)[;\s]')


def headers(data):
    """The header fields of a Maildir file (LF line ends), unfolded, in
    order, as (lower-case name, value bytes)."""
    end = data.find(b'\n\n')
    head = data[:end if end >= 0 else len(data)]
    out = []
    for line in head.split(b'\n'):
        if line[:1] in (b' ', b'\t') and out:
            out[-1] = (out[-1][0], out[-1][1] + b' ' + line.strip())
        elif b':' in line:
            name, value = line.split(b':', 1)
            out.append((name.strip().lower().decode('ascii', 'replace'), value.strip()))
    return out


def first(hs, name):
    for n, v in hs:
        if n == name:
            return v
    return None


def read_copies(maildir):
    """One dict per delivered file."""
    copies = []
    for sub in ('new', 'cur'):
        d = os.path.join(maildir, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            path = os.path.join(d, name)
            with open(path, 'rb') as f:
                hs = headers(f.read())
            mid = first(hs, 'message-id')
            rcpt = first(hs, 'delivered-to')
            rpath = first(hs, 'return-path')
            rcvd = first(hs, 'received') or b''
            m = RECEIVED_RE.match(rcvd)
            helo = m.group(1).decode('ascii', 'replace') if m else ''
            r = RELAY_RE.match(helo)
            when = None
            if b';' in rcvd:
                try:
                    when = email.utils.parsedate_to_datetime(
                        rcvd.rsplit(b';', 1)[1].strip().decode()).timestamp()
                except (TypeError, ValueError):
                    when = None
            q = QID_RE.search(rcvd)
            copies.append({
                'path': path,
                'qid': q.group(1).decode('ascii', 'replace') if q else None,
                'mid': mid.decode('ascii', 'replace').strip('<>') if mid else None,
                'rcpt': rcpt.decode('ascii', 'replace') if rcpt else None,
                'tag': tag_of(rpath),
                'relay': int(r.group(1)) if r else None,
                'helo': helo,
                'when': when,
            })
    return copies


def tag_of(rpath):
    """bounce+TAG@c.example -> TAG (None without one)."""
    if rpath is None:
        return None
    m = re.match(rb'^<?[^+@]*\+([^@]+)@', rpath)
    return m.group(1).decode('ascii', 'replace') if m else None


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, cond, desc, details=()):
        print('%s\t%s' % ('ok' if cond else 'FAIL', desc))
        if not cond:
            self.failed += 1
            for d in list(details)[:8]:
                print('  ' + d)


def load_events(path):
    """(incarnation -> {'start': T, 'kill': T, 'stop': T}, [(bstop, bup)])"""
    inc, bstops, bstop = defaultdict(dict), [], None
    with open(path) as f:
        for line in f:
            what, k, t = line.split()
            if what == 'bstop':
                bstop = float(t)
            elif what == 'bup':
                bstops.append((bstop, float(t)))
            else:
                inc[int(k)][what] = float(t)
    return inc, bstops


def load_midway(path):
    """Recipients whose delivery the relay deferred with the connection
    lost during the transaction (not a failed connect)."""
    rcpts = set()
    with open(path, errors='replace') as f:
        for line in f:
            m = re.search(r': deferred \(attempt \d+\): (.*)$', line)
            if not m:
                continue
            for r, why in re.findall(r'<([^>]*)>: ([^<]*)', m.group(1)):
                if 'cannot connect' not in why:
                    rcpts.add(r)
    return rcpts


def load_wrap(path):
    """TAG -> (mode, enqueue status)"""
    runs = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 5:
                runs[p[0]] = (p[3], int(p[4]))
    return runs


def common(rep, want, copies):
    """Checks for both runs; returns (Message-ID, rcpt) -> copies."""
    by = defaultdict(list)
    stray = []
    for c in copies:
        if c['mid'] in want and c['rcpt'] in want[c['mid']]:
            by[(c['mid'], c['rcpt'])].append(c)
        else:
            stray.append(c)
    keys = [(m, r) for m, rs in want.items() for r in rs]
    lost = [k for k in keys if k not in by]
    rep.check(not lost, '0 lost: each of the %d (Message-ID, recipient) pairs sent arrived'
              ' (%d missing)' % (len(keys), len(lost)), ['missing: %s to %s' % k for k in lost])
    rep.check(not stray, 'nothing arrived that was not sent (%d strays)' % len(stray),
              ['stray: %s (%s, %s)' % (c['path'], c['mid'], c['rcpt']) for c in stray])
    norelay = [c for c in copies if c['relay'] is None]
    rep.check(not norelay, 'every copy came from dkimpress relay (Received: from relayK.e2e.test)',
              ['%s: Received from %r' % (c['path'], c['helo']) for c in norelay])
    return by, lost


def clean(rep, want, copies):
    by, lost = common(rep, want, copies)
    dups = {k: len(v) for k, v in by.items() if len(v) > 1}
    rep.check(not dups, 'every message exactly once (%d duplicated)' % len(dups),
              ['%s to %s: %d copies' % (k[0], k[1], n) for k, n in dups.items()])
    print('copies=%d lost=%d duplicates=%d' % (len(copies), len(lost),
                                              sum(n - 1 for n in dups.values())))


def window_why(prev, c, relays, per_kill, conns):
    """Why the copy c after prev is not a relay-window one (None: it is)."""
    kill = relays.get(prev['relay'], {}).get('kill')
    if kill is None:
        return 'relay %s was not killed' % prev['relay']
    if c['relay'] is None or c['relay'] <= prev['relay']:
        return 'the later copy came from relay %s, not a later one' % c['relay']
    if prev['when'] is None or not kill - WINDOW_SLACK <= prev['when'] <= kill + 1:
        return 'the first copy arrived at %s, relay %s was killed at %.3f' % (
            prev['when'], prev['relay'], kill)
    if per_kill[prev['relay']] >= conns:
        return 'more than %d after the kill of relay %s' % (conns, prev['relay'])
    return None


def bstop_ok(prev, key, bstops, midway):
    """Was prev queued by Postfix B as it stopped, its reply lost?"""
    return key[1] in midway and prev['when'] is not None and any(
        a - 1 <= prev['when'] <= b + 1 for a, b in bstops)


def b_local_ok(prev, c, bstops):
    """Did Postfix B deliver one message it queued twice (the same queue
    ID in its Received field: received once, its local delivery cut by
    its own stop and made again after it), with a stop in the run?"""
    return bool(bstops) and prev['qid'] is not None and prev['qid'] == c['qid'] \
        and prev['relay'] == c['relay']


def same_tag_dups(by, relays, bstops, midway, conns):
    """Same-TAG duplicates: (relay-window ones, B-stop ones, the others)."""
    per_kill = defaultdict(int)
    allowed, bstop, other = 0, 0, []
    for key, cs in sorted(by.items()):
        by_tag = defaultdict(list)
        for c in cs:
            by_tag[c['tag']].append(c)
        for tag, tc in by_tag.items():
            tc.sort(key=lambda c: (c['relay'] or 0, c['when'] or 0))
            for prev, c in zip(tc, tc[1:]):
                why = window_why(prev, c, relays, per_kill, conns)
                if why is None:
                    per_kill[prev['relay']] += 1
                    allowed += 1
                elif bstop_ok(prev, key, bstops, midway) or b_local_ok(prev, c, bstops):
                    bstop += 1
                else:
                    other.append('%s to %s, tag %s: %s; not at Postfix B\'s stop'
                                 % (key[0], key[1], tag, why))
    return allowed, bstop, other


def kills(rep, want, copies, runs, events, midway, conns, with_id):
    by, lost = common(rep, want, copies)
    untagged = [c for c in copies if c['tag'] is None or c['tag'] not in runs]
    rep.check(not untagged, 'every copy carries the TAG of a logged enqueue run',
              ['%s: tag %s' % (c['path'], c['tag']) for c in untagged])
    retry, unexplained = 0, []
    for key, cs in sorted(by.items()):
        tags = sorted({c['tag'] for c in cs})
        if len(tags) < 2:
            continue
        retry += len(tags) - 1
        normal = [t for t in tags if runs.get(t, ('?', 0))[0] == 'normal']
        if len(normal) > 1:
            unexplained.append('%s to %s: %d enqueue runs that were not killed: %s'
                               % (key[0], key[1], len(normal), ' '.join(normal)))
    rep.check(not unexplained, 'each MTA-retry duplicate comes from an enqueue run that was'
              ' killed (%d such duplicates)' % retry, unexplained)
    if with_id:
        rep.check(retry == 0, 'enqueue --id: no duplicate from an MTA retry after a lost'
                  ' enqueue answer (%d)' % retry)
    relays, bstops = events
    allowed, bstop, other = same_tag_dups(by, relays, bstops, midway, conns)
    rep.check(not other, 'every other duplicate is a relay-window one (the relay killed'
              ' between the final 250 and the delete, at most %d per kill: %d) or one of'
              ' Postfix B\'s stop (queued there, the reply lost, or delivered twice by B'
              ' itself: %d); %d others'
              % (conns, allowed, bstop, len(other)), other)
    print('copies=%d lost=%d mta_retry_duplicates=%d relay_window_duplicates=%d'
          ' b_stop_duplicates=%d other_duplicates=%d (copies with a Postfix B queue ID: %d)'
          % (len(copies), len(lost), retry, allowed, bstop, len(other),
             sum(1 for c in copies if c['qid'])))


def main(argv):
    opts = {'--wrap-log': None, '--events': None, '--relay-log': None, '--conns': '4',
            '--list': None}
    with_id, pos = False, []
    it = iter(argv)
    for a in it:
        if a in opts:
            opts[a] = next(it)
        elif a == '--id':
            with_id = True
        else:
            pos.append(a)
    if len(pos) != 2:
        sys.stderr.write(__doc__)
        return 2
    with open(pos[0]) as f:
        want = json.load(f)
    copies = read_copies(pos[1])
    if opts['--list']:
        with open(opts['--list'], 'w') as f:
            f.writelines(c['path'] + '\n' for c in copies)
    rep = Report()
    if opts['--wrap-log'] is None:
        clean(rep, want, copies)
    else:
        kills(rep, want, copies, load_wrap(opts['--wrap-log']),
              load_events(opts['--events']), load_midway(opts['--relay-log']),
              int(opts['--conns']), with_id)
    return 1 if rep.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
