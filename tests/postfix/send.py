#!/usr/bin/python3
"""send.py -- send the messages of tests/postfix over SMTP.

    /usr/bin/python3 send.py PORT N MANIFEST

Sends N messages to 127.0.0.1:PORT in one SMTP session, all From: the
customer domain customer1.example, each with a unique token in its body
("token: tok-..."), and one more that Postfix must bounce (a recipient
whose quoted local part has a space: dkimpress enqueue refuses it).

Message i goes:
  i % 7 == 3   to two recipients on m.test: one delivery, two x-receiver
  i % 7 == 5   to two recipients on a.test: two deliveries, one each
  otherwise    to one recipient on a.test
and from the null sender <> when i % 10 == 0, else from
bounce-i@customer1.example. Bodies vary: plain, UTF-8 (BODY=8BITMIME),
a line starting with "." and one with "From ", a few KB of text.

MANIFEST (JSON) lists every delivery Postfix should hand to the pipe:
{"files": [{"token": T, "sender": S or "<>", "rcpts": [R, ...]}, ...]}.
Last line: "N messages sent, M deliveries expected".
"""

import json
import os
import smtplib
import sys
from email.utils import formatdate


def message(i, tok, rcpts):
    body = ['Hello reader %d,' % i, '', 'token: %s' % tok, '']
    opts = []
    if i % 4 == 1:
        body.append('Gr\u00fc\u00dfe aus K\u00f6ln \u2014 8-bit text.')
        opts = ['BODY=8BITMIME']
    if i % 5 == 2:
        body.append('.a line that starts with a dot')
        body.append('From the desk of the editor (not an mbox separator)')
    if i % 6 == 4:
        body.extend('line %d of a longer newsletter, ' % k + 'x' * 60
                    for k in range(80))
    body.append('-- ')
    body.append('customer1.example')
    head = [
        'From: News <news@customer1.example>',
        'To: %s' % ', '.join(rcpts),
        'Subject: newsletter %d' % i,
        'Date: %s' % formatdate(localtime=False),
        'Message-ID: <%s@customer1.example>' % tok,
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: %s' % ('8bit' if opts else '7bit'),
        'List-Unsubscribe: <mailto:unsub-%d@customer1.example>' % i,
    ]
    text = '\r\n'.join(head) + '\r\n\r\n' + '\r\n'.join(body) + '\r\n'
    return text.encode('utf-8'), opts


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    port, n, manifest = int(argv[0]), int(argv[1]), argv[2]
    run = os.urandom(4).hex()
    files = []
    s = smtplib.SMTP('127.0.0.1', port, timeout=60)
    s.ehlo('client.dkimpress.test')
    for i in range(n):
        tok = 'tok-%05d-%s' % (i, run)
        sender = '' if i % 10 == 0 else 'bounce-%d@customer1.example' % i
        env_sender = sender or '<>'
        if i % 7 == 3:
            rcpts = ['u%d@m.test' % i, 'v%d@m.test' % i]
            files.append({'token': tok, 'sender': env_sender, 'rcpts': rcpts})
        elif i % 7 == 5:
            rcpts = ['u%d@a.test' % i, 'v%d@a.test' % i]
            for r in rcpts:
                files.append({'token': tok, 'sender': env_sender, 'rcpts': [r]})
        else:
            rcpts = ['u%d@a.test' % i]
            files.append({'token': tok, 'sender': env_sender, 'rcpts': rcpts})
        data, opts = message(i, tok, rcpts)
        refused = s.sendmail(sender, rcpts, data, mail_options=opts)
        if refused:
            print('message %d: refused %r' % (i, refused))
            return 1
    # enqueue refuses this recipient (a space), so Postfix bounces it
    data, _ = message(n, 'tok-bounce-%s' % run, ['"a b"@a.test'])
    s.sendmail('bounce-x@customer1.example', ['"a b"@a.test'], data)
    s.quit()
    with open(manifest, 'w') as f:
        json.dump({'files': files}, f)
    print('%d messages sent, %d deliveries expected' % (n, len(files)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
