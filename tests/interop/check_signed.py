#!/usr/bin/python3
"""check_signed.py -- check the shape of "dkimpress sign" output (interop suite).

    /usr/bin/python3 check_signed.py --corpus DIR --canon H/B --time T
        --sig DOMAIN:SELECTOR:ALG [--sig ...] [--list LIST] [SIGNED...]

For each SIGNED file (its original is DIR/BASENAME) this checks the output
contract of "dkimpress sign":
  - it starts with exactly one DKIM-Signature field per --sig, in that
    order (the first --key on top), with d=, s=, a= as given, c= equal to
    --canon, t= equal to --time, v=1, and bh=, b=, h= present, h=
    naming From;
  - what follows is the original message with every bare LF turned into
    CRLF and nothing else changed, except that a message of header fields
    only is closed as it travels: the CRLF its last line may lack, then
    the empty line (RFC 6376 hashes no body and an empty body alike).
Prints "PATH<TAB>pass|fail<TAB>detail" per file and a summary line; exit 0
when all pass.
"""

import os
import re
import sys


def crlf(data):
    return re.sub(rb'(?<!\r)\n', b'\r\n', data)


def as_signed(orig):
    """The input as dkimpress writes it: LF -> CRLF; header block closed."""
    m = crlf(orig)
    if b'\r\n\r\n' not in m and not m.startswith(b'\r\n'):
        if not m.endswith(b'\r\n'):
            m += b'\r\n'
        m += b'\r\n'
    return m


def parse_tags(value):
    tags = {}
    for spec in value.split(b';'):
        if not spec.strip():
            continue
        k, _, v = spec.partition(b'=')
        tags[k.strip().decode('ascii', 'replace')] = re.sub(rb'\s+', b'', v)
    return tags


def check(path, corpus, sigs, canon, when):
    with open(path, 'rb') as f:
        data = f.read()
    with open(os.path.join(corpus, os.path.basename(path)), 'rb') as f:
        orig = f.read()
    problems = []
    rest = data
    for k, (dom, sel, alg) in enumerate(sigs):
        m = re.compile(rb'DKIM-Signature:((?:[^\r\n]*\r\n)(?:[ \t][^\r\n]*\r\n)*)').match(rest)
        if m is None:
            problems.append('field %d is not a DKIM-Signature' % (k + 1))
            break
        t = parse_tags(m.group(1))
        want = {'v': '1', 'd': dom, 's': sel, 'a': alg, 'c': canon, 't': when}
        for tag, val in want.items():
            got = t.get(tag, b'').decode('ascii', 'replace')
            if got != val:
                problems.append('signature %d: %s=%s, want %s' % (k + 1, tag, got or '(none)', val))
        for tag in ('bh', 'b', 'h'):
            if not t.get(tag):
                problems.append('signature %d: no %s=' % (k + 1, tag))
        if b'from' not in [h.lower() for h in t.get('h', b'').split(b':')]:
            problems.append('signature %d: h= does not name From' % (k + 1))
        rest = rest[m.end():]
    if re.match(rb'(?i)DKIM-Signature:', rest):
        problems.append('more DKIM-Signature fields than --key options')
    if rest != as_signed(orig):
        a, b = rest, as_signed(orig)
        i = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
        problems.append('message after the signatures differs from the input with LF->CRLF '
                        'at byte %d (got %r, want %r; lengths %d/%d)'
                        % (i, a[i:i + 20], b[i:i + 20], len(a), len(b)))
    return problems


def main(argv):
    corpus = canon = when = listfile = None
    sigs = []
    paths = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ('--corpus', '--canon', '--time', '--sig', '--list') and i + 1 < len(argv):
            v = argv[i + 1]
            i += 2
            if a == '--corpus':
                corpus = v
            elif a == '--canon':
                canon = v
            elif a == '--time':
                when = v
            elif a == '--list':
                listfile = v
            else:
                sigs.append(tuple(v.split(':', 2)))
        elif a.startswith('-'):
            sys.stderr.write(__doc__)
            return 2
        else:
            paths.append(a)
            i += 1
    if not (corpus and canon and when and sigs):
        sys.stderr.write(__doc__)
        return 2
    if listfile:
        with open(listfile) as f:
            paths.extend(l.rstrip('\r\n') for l in f if l.strip())
    npass = nfail = 0
    for p in paths:
        try:
            problems = check(p, corpus, sigs, canon, when)
        except OSError as e:
            problems = ['cannot read: %s' % e]
        if problems:
            nfail += 1
            print('%s\tfail\t%s' % (p, '; '.join(problems)))
        else:
            npass += 1
            print('%s\tpass\toutput matches the sign contract' % p)
    print('summary: %d messages, %d pass, %d fail' % (npass + nfail, npass, nfail))
    return 0 if nfail == 0 and npass > 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
