#!/usr/bin/python3
"""send.py -- the SMTP client of tests/e2e: N messages to Postfix A.

    /usr/bin/python3 send.py PORT N PREFIX MANIFEST [--conns C] [--null]
        [--domain D]

Sends N messages to 127.0.0.1:PORT over C parallel SMTP sessions
(default 4), all From: news@c.example (the customer key's domain), each
with a unique Message-ID <PREFIX-i@c.example>. Message i goes to
u<i>@D (default x.test), and also to v<i>@D when i % 9 == 4 (two recipients:
Postfix A makes two deliveries of it, one per recipient). The envelope
sender is bounce@c.example; with --null every tenth message has the
null sender instead. Bodies vary: plain, 8-bit UTF-8 text (BODY=8BITMIME),
lines that start with "." or "From ", a longer body, a 990-byte line.

MANIFEST (JSON): {"PREFIX-i@c.example": [RCPT, ...], ...}, the copies
Postfix B must deliver, one per (Message-ID, recipient). Last line:
"N messages sent, M deliveries expected" (exit 0), or why not (exit 1).
"""

import json
import smtplib
import sys
import threading
from email.utils import formatdate


def message(i, mid, rcpts):
    body = ['Dear reader %d,' % i, '', 'This is newsletter %d.' % i, '']
    opts = []
    if i % 4 == 1:
        body.append('Gr\u00fc\u00dfe aus K\u00f6ln \u2014 8-bit text.')
        opts = ['BODY=8BITMIME']
    if i % 5 == 2:
        body.append('.a line that starts with a dot')
        body.append('..two dots')
        body.append('From the desk of the editor')
    if i % 6 == 3:
        body.extend('line %d of a longer issue, ' % k + 'y' * 70 for k in range(120))
    if i % 11 == 7:
        body.append('z' * 990)
    body += ['-- ', 'c.example']
    head = [
        'From: News <news@c.example>',
        'To: %s' % ', '.join(rcpts),
        'Subject: issue %d' % i,
        'Date: %s' % formatdate(localtime=False),
        'Message-ID: <%s>' % mid,
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: %s' % ('8bit' if opts else '7bit'),
    ]
    text = '\r\n'.join(head) + '\r\n\r\n' + '\r\n'.join(body) + '\r\n'
    return text.encode('utf-8'), opts


def session(port, items, errors):
    try:
        s = smtplib.SMTP('127.0.0.1', port, timeout=120)
        s.ehlo('app.e2e.test')
        for i, mid, sender, rcpts in items:
            data, opts = message(i, mid, rcpts)
            refused = s.sendmail(sender, rcpts, data, mail_options=opts)
            if refused:
                errors.append('%s: refused %r' % (mid, refused))
                return
        s.quit()
    except Exception as e:  # reported by main, the run fails
        errors.append('%s: %s' % (type(e).__name__, e))


def main(argv):
    conns, null, dom = 4, False, 'x.test'
    args = []
    it = iter(argv)
    for a in it:
        if a == '--conns':
            conns = int(next(it))
        elif a == '--domain':
            dom = next(it)
        elif a == '--null':
            null = True
        else:
            args.append(a)
    if len(args) != 4:
        sys.stderr.write(__doc__)
        return 2
    port, n, prefix, manifest = int(args[0]), int(args[1]), args[2], args[3]
    want, parts = {}, [[] for _ in range(conns)]
    for i in range(n):
        mid = '%s-%05d@c.example' % (prefix, i)
        rcpts = ['u%d@%s' % (i, dom)]
        if i % 9 == 4:
            rcpts.append('v%d@%s' % (i, dom))
        sender = '' if null and i % 10 == 0 else 'bounce@c.example'
        want[mid] = rcpts
        parts[i % conns].append((i, mid, sender, rcpts))
    # the manifest first: a message that goes in must be looked for
    with open(manifest, 'w') as f:
        json.dump(want, f)
    errors = []
    threads = [threading.Thread(target=session, args=(port, p, errors)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print('; '.join(errors[:5]))
        return 1
    print('%d messages sent, %d deliveries expected'
          % (n, sum(len(r) for r in want.values())))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
