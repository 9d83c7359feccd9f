#!/usr/bin/python3
"""mutate.py -- make tampered copies of signed messages (interop suite).

    /usr/bin/python3 mutate.py --outdir DIR --count K [--start N]
        [--exclude NAME]... SIGNED...

From the SIGNED files (a sorted list) it picks K messages that can take
both tamperings, walking the list from index N (wrapping), skipping names
given with --exclude, and writes for each picked file two copies:

    DIR/body-NAME      one body byte changed
    DIR/subject-NAME   one character of the Subject value changed
    DIR/refold-NAME    not tampered: in every DKIM-Signature field the
                       b= value is moved to a continuation line
                       ("b=" CRLF TAB value).  RFC 6376 3.5/3.7: the b=
                       value is deleted "including all surrounding
                       whitespace" before hashing, so every signature must
                       still verify, with simple header canonicalization
                       too.

The changed byte is always a letter or digit replaced by another letter or
digit, so the change survives relaxed canonicalization (it is never just
white space).  The body byte is the first letter/digit at or after the
middle of the body; the Subject change is on its first letter/digit.
Prints the paths written, one per line.
"""

import os
import re
import sys


def bump(c):
    """Another letter/digit for the ASCII letter/digit byte value C."""
    if c in b'zZ9':
        return {ord('z'): ord('a'), ord('Z'): ord('A'), ord('9'): ord('0')}[c]
    return c + 1


def split_message(data):
    m = re.search(rb'\r?\n\r?\n', data)
    if m is None:
        return None
    return m.end()


def mutate_body(data):
    start = split_message(data)
    if start is None:
        return None
    body = data[start:]
    mid = len(body) // 2
    m = re.compile(rb'[A-Za-z0-9]').search(body, mid) or re.compile(rb'[A-Za-z0-9]').search(body)
    if m is None:
        return None
    i = start + m.start()
    return data[:i] + bytes([bump(data[i])]) + data[i + 1:]


def mutate_subject(data):
    end = split_message(data) or len(data)
    m = re.compile(rb'(?im)^subject:').search(data, 0, end)
    if m is None:
        return None
    v = re.compile(rb'[A-Za-z0-9]').search(data, m.end(), end)
    if v is None:
        return None
    i = v.start()
    return data[:i] + bytes([bump(data[i])]) + data[i + 1:]


def refold_b(data):
    end = split_message(data) or len(data)
    head = data[:end]
    fields = re.split(rb'\r\n(?=[^ \t])', head)
    changed = False
    for k, f in enumerate(fields):
        if re.match(rb'(?i)dkim-signature:', f):
            g = re.sub(rb'(;[ \t\r\n]*)b=', rb'\1b=\r\n\t', f, count=1)
            changed = changed or g != f
            fields[k] = g
    if not changed:
        return None
    return b'\r\n'.join(fields) + data[end:]


def main(argv):
    outdir = None
    count = 3
    start = 0
    exclude = set()
    files = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ('--outdir', '--count', '--start', '--exclude') and i + 1 < len(argv):
            v = argv[i + 1]
            i += 2
            if a == '--outdir':
                outdir = v
            elif a == '--count':
                count = int(v)
            elif a == '--start':
                start = int(v)
            else:
                exclude.add(v)
        elif a.startswith('-'):
            sys.stderr.write(__doc__)
            return 2
        else:
            files.append(a)
            i += 1
    if outdir is None or not files:
        sys.stderr.write(__doc__)
        return 2
    files.sort()
    os.makedirs(outdir, exist_ok=True)
    picked = 0
    n = len(files)
    for k in range(n):
        if picked >= count:
            break
        path = files[(start + k) % n]
        name = os.path.basename(path)
        if name in exclude:
            continue
        with open(path, 'rb') as f:
            data = f.read()
        b = mutate_body(data)
        s = mutate_subject(data)
        r = refold_b(data)
        if b is None or s is None or r is None or b == data or s == data:
            continue
        for kind, content in (('body', b), ('subject', s), ('refold', r)):
            out = os.path.join(outdir, '%s-%s' % (kind, name))
            with open(out, 'wb') as f:
                f.write(content)
            print(out)
        picked += 1
    return 0 if picked == count else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
