#!/usr/bin/python3
"""sign_dkimpy.py -- sign messages with dkimpy (reverse-direction interop).

    /usr/bin/python3 sign_dkimpy.py --key DOMAIN:SELECTOR:KEYFILE [--key ...]
        [--canon HEADER/BODY] --outdir DIR MSG...

Part of the dkimpress interop suite: the outputs are checked with
"dkimpress verify --dns-file".  One DKIM-Signature per --key, in the order
given, the first on top (as dkimpress does).  KEYFILE is PEM: RSA (PKCS#1 or
PKCS#8) signs rsa-sha256, Ed25519 (PKCS#8) signs ed25519-sha256.  Default
canonicalization: relaxed/relaxed.

The message is first put in SMTP form (bare LF -> CRLF; a bare CR is left
alone), then signed; DIR/BASENAME gets the signature fields followed by
that message.  Signed fields: dkimpy's default list (RFC 6376 5.4.1) plus
List-Unsubscribe-Post and Feedback-ID when present.  t= is the current
time (dkimpy has no way to set it).

dkimpy 1.1.4 signs two relaxed-body corpus cases with a body hash that
RFC 6376 3.4.4 does not give (an unterminated last line ending in white
space); run.sh expects every RFC verifier, dkimpress included, to fail
those (its QUIRKS table).

Prints one line per message, "PATH<TAB>ok" or "PATH<TAB>error<TAB>why";
exit 0 when every message was signed, else 1.
"""

import base64
import os
import re
import sys

import dkim

ED25519_PKCS8_PREFIX = bytes.fromhex('302e020100300506032b657004220420')


def read_key(path):
    """(algorithm, key material in the form dkimpy's sign() wants)."""
    with open(path, 'rb') as f:
        pem = f.read()
    m = re.search(rb'-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END', pem, re.DOTALL)
    if not m:
        raise ValueError('%s: no PEM block' % path)
    der = base64.b64decode(b''.join(m.group(2).split()))
    if m.group(1) == b'PRIVATE KEY' and der.startswith(ED25519_PKCS8_PREFIX) \
            and len(der) == len(ED25519_PKCS8_PREFIX) + 32:
        # Ed25519 PKCS#8: dkimpy wants the base64 of the 32-byte seed
        return b'ed25519-sha256', base64.b64encode(der[-32:])
    # RSA: dkimpy parses PKCS#1 and PKCS#8 PEM itself
    return b'rsa-sha256', pem


def main(argv):
    keys = []
    canon = 'relaxed/relaxed'
    outdir = None
    paths = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ('--key', '--canon', '--outdir') and i + 1 < len(argv):
            v = argv[i + 1]
            i += 2
            if a == '--key':
                parts = v.split(':', 2)
                if len(parts) != 3:
                    sys.stderr.write('bad --key %s\n' % v)
                    return 2
                keys.append(parts)
            elif a == '--canon':
                canon = v
            else:
                outdir = v
        elif a.startswith('-'):
            sys.stderr.write(__doc__)
            return 2
        else:
            paths.append(a)
            i += 1
    if not keys or outdir is None:
        sys.stderr.write(__doc__)
        return 2
    hc, _, bc = canon.partition('/')
    canonicalize = (hc.encode(), (bc or 'simple').encode())
    loaded = [(d.encode(), s.encode()) + read_key(k) for d, s, k in keys]
    os.makedirs(outdir, exist_ok=True)

    bad = 0
    for path in paths:
        try:
            with open(path, 'rb') as f:
                msg = re.sub(rb'(?<!\r)\n', b'\r\n', f.read())
            sigs = b''
            for dom, sel, alg, key in loaded:
                d = dkim.DKIM(msg, signature_algorithm=alg, minkey=1024)
                hdrs = d.default_sign_headers()
                present = set(x.lower() for x, _ in d.headers)
                hdrs += [h for h in (b'list-unsubscribe-post', b'feedback-id') if h in present]
                sigs += d.sign(sel, dom, key, canonicalize=canonicalize,
                               include_headers=hdrs)
            with open(os.path.join(outdir, os.path.basename(path)), 'wb') as f:
                f.write(sigs + msg)
            print('%s\tok' % path)
        except Exception as e:
            bad += 1
            print('%s\terror\t%s: %s' % (path, type(e).__name__, e))
    return 0 if bad == 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
