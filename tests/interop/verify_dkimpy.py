#!/usr/bin/python3
"""verify_dkimpy.py -- check every DKIM-Signature of many messages with dkimpy.

    /usr/bin/python3 verify_dkimpy.py --dns-file FILE [--expect N]
        [--rsa-only] [--list LIST] [MSG...]

Part of the dkimpress interop suite (tests/interop/run.sh).  Run it with
Debian's /usr/bin/python3 (python3-dkim, python3-nacl).

FILE holds key records, one per line: SELECTOR._domainkey.DOMAIN, a TAB, the
TXT record.  dkimpy asks a dnsfunc of ours, which answers from FILE only, so
no network is used.  LIST names one message file per line.

One output line per message:

    PATH<TAB>pass|fail<TAB>sigs=N pass=P fail=F; d=D s=S a=A: RESULT; ...

A message passes when every counted signature passes and there are N of
them (--expect; without it, at least one).  --rsa-only lists non-RSA
signatures as "skipped" and does not count them.  Last line:
"summary: M messages, P pass, F fail".  Exit 0 if all pass, else 1.

Delivery: bare LF becomes CRLF before verification, as SMTP would deliver
(dkimpress output is CRLF already; a bare CR is left alone).

Known dkimpy 1.1.4 quirk (the driver keeps the affected corpus cases on a
named exception list): with relaxed body canonicalization, trailing
white space on a last line that has no final CRLF is not removed
(dkimpy strips white space only before a CRLF), so such a body hashes
differently from RFC 6376 section 3.4.4.
"""

import logging
import re
import sys

import dkim
from dkim.util import parse_tag_value


class Capture(logging.Handler):
    """Keeps dkimpy's log messages so a failure can say why."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.msgs = []

    def emit(self, record):
        try:
            self.msgs.append(record.getMessage())
        except Exception:  # a log message must never stop the run
            self.msgs.append(str(record.msg))


def load_dns(path):
    keys = {}
    with open(path, 'rb') as f:
        for raw in f:
            line = raw.rstrip(b'\r\n')
            if not line.strip() or line.startswith(b'#'):
                continue
            name, sep, rec = line.partition(b'\t')
            if not sep:
                parts = line.split(None, 1)
                if len(parts) != 2:
                    continue
                name, rec = parts
            keys[name.strip().rstrip(b'.').lower()] = rec.strip()
    return keys


def crlf(data):
    return re.sub(rb'(?<!\r)\n', b'\r\n', data)


def main(argv):
    dnsfile = None
    listfile = None
    expect = None
    rsa_only = False
    paths = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == '--dns-file' and i + 1 < len(argv):
            dnsfile = argv[i + 1]
            i += 2
        elif a == '--expect' and i + 1 < len(argv):
            expect = int(argv[i + 1])
            i += 2
        elif a == '--list' and i + 1 < len(argv):
            listfile = argv[i + 1]
            i += 2
        elif a == '--rsa-only':
            rsa_only = True
            i += 1
        elif a == '--':
            paths.extend(argv[i + 1:])
            break
        elif a.startswith('-') and a != '-':
            sys.stderr.write(__doc__)
            return 2
        else:
            paths.append(a)
            i += 1
    if dnsfile is None:
        sys.stderr.write(__doc__)
        return 2
    if listfile:
        with open(listfile) as f:
            paths.extend(l.rstrip('\r\n') for l in f if l.strip())

    keys = load_dns(dnsfile)

    def dnsfunc(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return keys.get(name.rstrip(b'.').lower(), b'')

    cap = Capture()
    logger = logging.getLogger('verify_dkimpy')
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(cap)

    nmsg = npass = nfail = 0
    for path in paths:
        nmsg += 1
        try:
            with open(path, 'rb') as f:
                msg = crlf(f.read())
        except OSError as e:
            print('%s\tfail\tcannot read: %s' % (path, e))
            nfail += 1
            continue
        parts = []
        counted = sp = sf = 0
        try:
            d = dkim.DKIM(msg, logger=logger, minkey=1024)
            sigs = [v for (k, v) in d.headers if k.lower() == b'dkim-signature']
        except Exception as e:
            d, sigs = None, []
            parts.append('cannot parse message: %s: %s' % (type(e).__name__, e))
        for idx, value in enumerate(sigs):
            try:
                tags = parse_tag_value(value)
            except Exception:
                tags = {}
            dom = tags.get(b'd', b'?').decode('ascii', 'replace')
            sel = tags.get(b's', b'?').decode('ascii', 'replace')
            alg = tags.get(b'a', b'?').decode('ascii', 'replace')
            if rsa_only and not alg.startswith('rsa-'):
                parts.append('d=%s s=%s a=%s: skipped (not RSA)' % (dom, sel, alg))
                continue
            counted += 1
            del cap.msgs[:]
            try:
                ok = d.verify(idx=idx, dnsfunc=dnsfunc)
                why = '' if ok else '; '.join(
                    m for m in cap.msgs if not m.startswith(('sig:', 'bh:', 'signed for')))
            except dkim.DKIMException as e:
                ok, why = False, '%s: %s' % (type(e).__name__, e)
            except Exception as e:  # a dkimpy crash is a failure, not a stop
                ok, why = False, 'exception %s: %s' % (type(e).__name__, e)
            if ok:
                sp += 1
                parts.append('d=%s s=%s a=%s: pass' % (dom, sel, alg))
            else:
                sf += 1
                why = why.replace('\t', ' ').replace('\n', ' ')[:300]
                parts.append('d=%s s=%s a=%s: fail (%s)' % (dom, sel, alg, why or 'signature did not verify'))
        good = sf == 0 and (counted == expect if expect is not None else counted > 0)
        if not sigs:
            parts.append('no signature found')
        print('%s\t%s\tsigs=%d pass=%d fail=%d; %s' % (
            path, 'pass' if good else 'fail', counted, sp, sf, '; '.join(parts)))
        if good:
            npass += 1
        else:
            nfail += 1
    print('summary: %d messages, %d pass, %d fail' % (nmsg, npass, nfail))
    sys.stdout.flush()
    return 0 if nfail == 0 and nmsg > 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
