#!/usr/bin/python3
"""check.py -- check out/new against what tests/postfix sent.

    /usr/bin/python3 check.py [--relayed] MANIFEST OUT_NEW DNS_FILE

MANIFEST is send.py's list of deliveries, OUT_NEW the engine's output
directory, DNS_FILE the key records (SELECTOR._domainkey.DOMAIN, TAB,
record), given to dkimpy offline through its dnsfunc.

Prints one "ok<TAB>what" or "FAIL<TAB>what" line per check, details of
failures indented by two spaces, and a last summary line. Exit 0 when
every check passes.

Each file must be: the envelope lines "x-sender: S" and one "x-receiver:
R" per recipient (CRLF), exactly those send.py expects for the token in
its body, then DKIM-Signature d=customer1.example, then DKIM-Signature
d=esp.example, then the message. The envelope lines are stripped before
dkimpy verifies both signatures (bare LF becomes CRLF first, as SMTP
would deliver it).

--relayed: the files went through Postfix once more after signing (the
mover in docs/examples), so other header fields (Received) may come
before and between the signatures; they must still be there, in order,
and pass.
"""

import collections
import json
import os
import re
import sys

import dkim


def load_dns(path):
    keys = {}
    with open(path, 'rb') as f:
        for line in f:
            name, sep, rec = line.rstrip(b'\r\n').partition(b'\t')
            if sep:
                keys[name.strip().rstrip(b'.').lower()] = rec.strip()
    return keys


def split_envelope(data):
    """(sender, [rcpts], rest) from the leading x-sender/x-receiver lines."""
    sender, rcpts, pos = None, [], 0
    while True:
        end = data.find(b'\r\n', pos)
        if end < 0:
            break
        line = data[pos:end]
        low = line.lower()
        if low.startswith(b'x-sender:') and sender is None and not rcpts:
            sender = line[9:].strip().decode('utf-8', 'replace')
        elif low.startswith(b'x-receiver:') and sender is not None:
            rcpts.append(line[11:].strip().decode('utf-8', 'replace'))
        else:
            break
        pos = end + 2
    return sender, rcpts, data[pos:]


def sig_domains(rest, anywhere=False):
    """d= of the DKIM-Signature fields at the top of rest (anywhere: in
    the whole header block), in order."""
    ds = []
    while rest and rest[:1] not in (b'\r', b'\n'):
        end = rest.index(b'\n') + 1
        while rest[end:end + 1] in (b' ', b'\t'):
            end = rest.index(b'\n', end) + 1
        if rest[:15].lower() == b'dkim-signature:':
            m = re.search(rb'\bd=([^;\s]+)', rest[:end])
            ds.append(m.group(1).decode() if m else '?')
        elif not anywhere:
            break
        rest = rest[end:]
    return ds


def main(argv):
    relayed = argv[:1] == ['--relayed']
    if relayed:
        argv = argv[1:]
    manifest, outdir, dnsfile = argv
    want = collections.Counter()
    for f in json.load(open(manifest))['files']:
        want[(f['token'], f['sender'], tuple(f['rcpts']))] += 1
    keys = load_dns(dnsfile)

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return keys.get(name.rstrip(b'.').lower(), b'')

    got = collections.Counter()
    no_env, bad_sigs, no_token, vfail = [], [], [], []
    names = sorted(os.listdir(outdir))
    for name in names:
        data = open(os.path.join(outdir, name), 'rb').read()
        sender, rcpts, rest = split_envelope(data)
        if sender is None or not rcpts:
            no_env.append(name)
        ds = sig_domains(rest, anywhere=relayed)
        if ds != ['customer1.example', 'esp.example']:
            bad_sigs.append('%s: d= %s' % (name, ds))
        m = re.search(rb'\ntoken: (tok-\S+)', rest)
        if not m:
            no_token.append(name)
            continue
        got[(m.group(1).decode(), sender, tuple(rcpts))] += 1
        msg = re.sub(rb'(?<!\r)\n', b'\r\n', rest)
        try:
            d = dkim.DKIM(msg, minkey=1024)
            n = sum(1 for k, v in d.headers if k.lower() == b'dkim-signature')
            res = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n)]
        except Exception as e:  # a dkimpy crash is a failure, not a stop
            res = ['%s: %s' % (type(e).__name__, e)]
        if len(res) != 2 or not all(r is True for r in res):
            vfail.append('%s: %s' % (name, res))

    missing = want - got
    extra = got - want
    dups = [k for k, v in got.items() if v > 1]
    checks = [
        (len(names) == sum(want.values()),
         '%d files in %s for %d expected deliveries'
         % (len(names), os.path.basename(os.path.dirname(outdir.rstrip('/'))) + '/' +
            os.path.basename(outdir.rstrip('/')), sum(want.values())), []),
        (not missing, 'every expected delivery arrived (%d missing)' % sum(missing.values()),
         ['missing %s' % (k,) for k in list(missing)[:5]]),
        (not dups, 'none arrived twice (%d duplicated)' % len(dups),
         ['twice %s' % (k,) for k in dups[:5]]),
        (not no_env and not extra,
         'every file starts with x-sender / x-receiver lines, and they are the right sender '
         'and recipients for its token (%d without, %d wrong)' % (len(no_env), sum(extra.values())),
         no_env[:3] + ['unexpected %s' % (k,) for k in list(extra)[:5]]),
        (not bad_sigs,
         '%s, DKIM-Signature d=customer1.example then d=esp.example (%d otherwise)'
         % ('in the header' if relayed else 'below them', len(bad_sigs)),
         bad_sigs[:5]),
        (not no_token, 'every file carries its token (%d without)' % len(no_token), no_token[:3]),
        (not vfail, 'dkimpy: both signatures of every file pass, envelope lines stripped '
         '(%d files fail)' % len(vfail), vfail[:5]),
    ]
    nbad = 0
    for good, what, details in checks:
        print('%s\t%s' % ('ok' if good else 'FAIL', what))
        if not good:
            nbad += 1
            for d in details:
                print('  %s' % d)
    nnull = sum(v for k, v in got.items() if k[1] == '<>')
    nmulti = sum(v for k, v in got.items() if len(k[2]) > 1)
    print('summary: %d files, %d from the null sender, %d with two x-receiver lines, %d checks failed'
          % (len(names), nnull, nmulti, nbad))
    return 1 if nbad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
