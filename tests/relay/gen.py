#!/usr/bin/python3
"""tests/relay/gen.py OUTDIR SPEC... - messages for the relay tests.

Each SPEC is NAME:KIND:SENDER:RCPT[,RCPT...]; KIND picks the body:
  plain   a few lines
  dots    lines that start with '.', a line of only '.', '..'
  8bit    UTF-8 text in the body (BODY=8BITMIME)
  big     about 5000 bytes
  long    a 998-byte line
Writes OUTDIR/NAME.eml (From in c.example: both signatures) and prints
"NAME<TAB>SENDER<TAB>RCPTS" per message. Every message has an
X-Test-Id: NAME field to find it at the sink.
"""
import os
import sys

BODIES = {
    'plain': b'Hello,\r\n\r\nthis is a test.\r\n',
    'dots': b'.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n. space\r\n',
    '8bit': 'Grüße aus Köln, ça va? 日本語\r\n'.encode(),
    'big': b''.join(b'line %04d of a big message, padded to fifty bytes\r\n' % i
                    for i in range(100)),
    'long': b'x' * 998 + b'\r\nend\r\n',
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for spec in sys.argv[2:]:
        name, kind, sender, rcpts = spec.split(':', 3)
        msg = (b'From: Sender <news@c.example>\r\n'
               b'To: someone@x.test\r\n'
               b'Subject: relay test ' + name.encode() + b'\r\n'
               b'Message-ID: <' + name.encode() + b'@c.example>\r\n'
               b'X-Test-Id: ' + name.encode() + b'\r\n'
               b'MIME-Version: 1.0\r\n'
               b'Content-Type: text/plain; charset=utf-8\r\n'
               b'\r\n' + BODIES[kind])
        with open(os.path.join(out, name + '.eml'), 'wb') as f:
            f.write(msg)
        print('%s\t%s\t%s' % (name, sender, rcpts))


main()
