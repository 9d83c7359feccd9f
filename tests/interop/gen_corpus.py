#!/usr/bin/python3
"""gen_corpus.py -- write the interop test corpus into a directory.

    /usr/bin/python3 gen_corpus.py OUTDIR

Deterministic: a fixed seed, no clock, no environment, so the same files
(byte for byte) every run.  Each file name says what the message
exercises.  Every message has exactly one From: field and a Subject:.

Messages are written as raw bytes with the line endings given per case:
CRLF, bare LF, or a mix.  A few cases end without any line ending, or have
a bare CR; run.sh keeps a named list of the verifier quirks they hit.
"""

import base64
import os
import random
import sys

SEED = 6376_8463
rng = random.Random(SEED)

WORDS = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do '
         'eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim '
         'ad minim veniam quis nostrud exercitation ullamco laboris nisi '
         'aliquip ex ea commodo consequat duis aute irure in reprehenderit '
         'voluptate velit esse cillum fugiat nulla pariatur excepteur sint '
         'occaecat cupidatat non proident sunt culpa qui officia deserunt '
         'mollit anim id est laborum').split()


def words(n):
    return ' '.join(rng.choice(WORDS) for _ in range(n))


def para_lines(nlines, width=(30, 76)):
    out = []
    for _ in range(nlines):
        line = ''
        target = rng.randint(*width)
        while len(line) < target:
            line += (' ' if line else '') + rng.choice(WORDS)
        out.append(line[:width[1]])
    return out


def join(lines, eol):
    """Join LINES, each ended by EOL (the last one too)."""
    return ''.join(l + eol for l in lines)


def msg(headers, body, eol='\r\n', final_eol=True):
    """headers: list of field strings; a '\n' inside a field is a fold point
    (the following text must start with WSP).  body: list of lines or a
    str already carrying its own line endings."""
    hdr = ''.join(h.replace('\n', eol) + eol for h in headers)
    if isinstance(body, list):
        b = join(body, eol)
        if not final_eol and b.endswith(eol):
            b = b[:-len(eol)]
    else:
        b = body
    return (hdr + eol + b).encode('utf-8')


def std_headers(n, subject=None, extra=()):
    h = [
        'Received: from mta%d.esp.example (mta%d.esp.example [192.0.2.%d])\n'
        '\tby mx.receiver.example with ESMTPS id %08X\n'
        '\tfor <rcpt%d@receiver.example>; Tue, 14 Nov 2023 22:13:%02d +0000'
        % (n, n, n, rng.getrandbits(32), n, n % 60),
        'From: "Shop %d" <news@customer.example>' % n,
        'To: Recipient %d <rcpt%d@receiver.example>' % (n, n),
        'Subject: %s' % (subject if subject is not None else 'Test message %d: %s' % (n, words(4))),
        'Date: Tue, 14 Nov 2023 22:13:%02d +0000' % (n % 60),
        'Message-ID: <%d.%08x@customer.example>' % (n, rng.getrandbits(32)),
        'MIME-Version: 1.0',
    ]
    h.extend(extra)
    return h


TEXT_PLAIN = ['Content-Type: text/plain; charset="us-ascii"',
              'Content-Transfer-Encoding: 7bit']


def b64_lines(data, width=76):
    s = base64.b64encode(data).decode('ascii')
    return [s[i:i + width] for i in range(0, len(s), width)]


def build():
    C = []

    def add(name, data):
        """NAME: what the message exercises; the number is its position."""
        C.append(('%02d-%s.eml' % (len(C) + 1, name), data))

    body = para_lines(8)
    add('basic-crlf', msg(std_headers(1, extra=TEXT_PLAIN), body, '\r\n'))
    add('basic-lf', msg(std_headers(2, extra=TEXT_PLAIN), para_lines(8), '\n'))

    # mixed line endings: header block CRLF except two fields, body alternates
    lines = para_lines(10)
    hs = std_headers(3, extra=TEXT_PLAIN)
    raw = ''
    for i, h in enumerate(hs):
        raw += h.replace('\n', '\r\n') + ('\n' if i in (1, 4) else '\r\n')
    raw += '\r\n'
    for i, l in enumerate(lines):
        raw += l + ('\n' if i % 2 else '\r\n')
    add('mixed-eol', raw.encode())

    folded_subj = ('Subject: Your weekly digest:\n\tthree new offers,\n   two reminders'
                   '\n\t and\tone   final note')
    h = std_headers(4, extra=TEXT_PLAIN)
    h[3] = folded_subj
    add('folded-subject-crlf', msg(h, para_lines(5), '\r\n'))
    h = std_headers(5, extra=TEXT_PLAIN)
    h[3] = folded_subj
    add('folded-subject-lf', msg(h, para_lines(5), '\n'))

    h = std_headers(6, extra=TEXT_PLAIN)
    h[2] = ('To: Alice Example <alice@receiver.example>,\n\tBob Example <bob@receiver.example>,'
            '\n\t\tCarol <carol@receiver.example>,\n \tDave <dave@receiver.example>')
    add('folded-to-tabs-lf', msg(h, para_lines(4), '\n'))

    add('odd-header-case', msg([
        'fRoM: Odd Case <odd@customer.example>',
        'tO: rcpt7@receiver.example',
        'SUBJECT: upper-case field name',
        'DaTe: Tue, 14 Nov 2023 22:13:07 +0000',
        'message-ID: <odd.7@customer.example>',
        'mime-VERSION: 1.0',
        'CONTENT-TYPE: text/plain; charset=us-ascii',
        'reply-TO: replies@customer.example',
    ], para_lines(4), '\r\n'))

    h = std_headers(8, extra=TEXT_PLAIN)
    h.insert(3, 'To: Second To <second@receiver.example>')
    add('two-to-fields', msg(h, para_lines(4), '\r\n'))

    rec = ['Received: from relay%d.example (relay%d.example [198.51.100.%d])\n'
           '\tby relay%d.example with ESMTP id R%05d;\n\tTue, 14 Nov 2023 22:1%d:00 +0000'
           % (i, i, i, i + 1, rng.randrange(100000), i) for i in range(6)]
    add('many-received-lf', msg(
        ['Return-Path: <bounce-9@esp.example>'] + rec + std_headers(9, extra=TEXT_PLAIN)
        + ['X-Mailer: interop-corpus', 'X-Priority: 3'],
        para_lines(6), '\n'))

    h = std_headers(10, extra=TEXT_PLAIN)
    h[3:3] = ['Sender: Mailer (bulk sender) <bulk@esp.example>',
              'Organization: Customer (Example) Ltd.',
              'Cc: cc1@receiver.example', 'Cc: Second <cc2@receiver.example>,\n\tThird <cc3@receiver.example>',
              'Cc: cc4@receiver.example']
    add('several-cc', msg(h, para_lines(4), '\r\n'))

    add('trailing-ws-headers', msg([
        'From: Trailing <trail@customer.example>   ',
        'To: rcpt11@receiver.example\t',
        'Subject: trailing white space after this \t \t',
        'Date: Tue, 14 Nov 2023 22:13:11 +0000 ',
        'Message-ID: <trail.11@customer.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain;\n\tcharset=us-ascii   ',
    ], para_lines(4), '\r\n'))

    add('trailing-ws-body-lines', msg(std_headers(12, extra=TEXT_PLAIN), [
        'line with trailing spaces   ', 'line with trailing tab\t', 'mixed \t \t',
        'plain line', 'last line with spaces  '], '\r\n'))

    add('ws-runs-inside-lines-lf', msg(
        std_headers(13, subject='runs   of \t white\t\tspace', extra=TEXT_PLAIN)
        + ['X-Spaces: a    b\t\tc \t d'],
        ['word    word\t\tword', '   leading spaces', '\tleading tab', 'a \t \t b',
         'end'], '\n'))

    utf8 = ['Grüße aus München — voilà, ça marche.', 'Japanese: 日本語のテキスト',
            'Emoji: 🎉🚀 and Ελληνικά, Русский', 'Ünïcödé    with   runs   ', 'done']
    add('utf8-body-8bit', msg(std_headers(14, extra=[
        'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit']),
        utf8, '\r\n'))

    add('raw-8bit-header-lf', msg([
        'From: Café Müller <cafe@customer.example>',
        'To: Jürgen <rcpt15@receiver.example>',
        'Subject: Überraschung — 50% Rabatt für Sie ☕',
        'Date: Tue, 14 Nov 2023 22:13:15 +0000',
        'Message-ID: <raw8.15@customer.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
    ], ['Schöne Grüße!', 'Café Müller'], '\n'))

    add('empty-body', msg(std_headers(16, extra=TEXT_PLAIN), '', '\r\n'))
    add('body-only-blank-lines', msg(std_headers(18, extra=TEXT_PLAIN), '\r\n\r\n\r\n\r\n', '\r\n'))
    add('body-no-final-eol', msg(std_headers(19, extra=TEXT_PLAIN),
        ['first line', 'last line has no line ending'], '\r\n', final_eol=False))
    add('body-no-final-eol-trailing-ws', msg(std_headers(20, extra=TEXT_PLAIN),
        ['first line', 'last line ends in spaces  \t '], '\r\n', final_eol=False))
    add('body-last-line-ws-only-no-eol', msg(std_headers(21, extra=TEXT_PLAIN),
        'some text\r\nmore text\r\n \t  ', '\r\n'))
    add('body-last-line-ws-only-crlf', msg(std_headers(22, extra=TEXT_PLAIN),
        'some text\r\nmore text\r\n \t  \r\n', '\r\n'))

    long_line = ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz0123456789 ') for _ in range(5000))
    add('long-line-5000', msg(std_headers(23, extra=TEXT_PLAIN),
        ['short start', long_line, 'x' * 5000, 'short end'], '\r\n'))

    h = std_headers(24, subject='S' + ''.join(rng.choice('abcdefgh ') for _ in range(980)),
                    extra=TEXT_PLAIN)
    h.append('X-Long-Header: ' + ''.join(rng.choice('ABCDEFGHIJKLMNOP;=') for _ in range(2000)))
    add('long-header-unfolded', msg(h, para_lines(3), '\r\n'))

    big = []
    size = 0
    i = 0
    while size < 2 * 1024 * 1024:
        l = ('%07d %s' % (i, words(10)))[:76]
        if i % 97 == 0:
            l += '   '          # trailing white space now and then
        if i % 89 == 0:
            l = l.replace(' ', '\t  ', 2)
        big.append(l)
        size += len(l) + 1
        i += 1
    add('huge-body-2mb-lf', msg(std_headers(25, extra=TEXT_PLAIN), big, '\n'))

    html = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8"></head>',
            '<body style="margin:0">', '<p>%s</p>' % words(30),
            '<p><a href="https://customer.example/offer?id=42&amp;u=7">Offer</a></p>',
            '</body></html>']
    add('multipart-alternative', msg(std_headers(26, extra=[
        'Content-Type: multipart/alternative;\n\tboundary="=_alt_26"']),
        ['This is a multi-part message in MIME format.', '',
         '--=_alt_26', 'Content-Type: text/plain; charset=utf-8',
         'Content-Transfer-Encoding: 7bit', ''] + para_lines(5)
        + ['', '--=_alt_26', 'Content-Type: text/html; charset=utf-8',
           'Content-Transfer-Encoding: 7bit', ''] + html + ['', '--=_alt_26--', ''],
        '\r\n'))

    att1 = bytes(rng.getrandbits(8) for _ in range(3000))
    att2 = bytes(rng.getrandbits(8) for _ in range(12000))
    add('multipart-mixed-base64-lf', msg(std_headers(27, extra=[
        'Content-Type: multipart/mixed; boundary="mixed-27-XyZ"']),
        ['--mixed-27-XyZ', 'Content-Type: text/plain; charset=us-ascii', ''] + para_lines(4)
        + ['', '--mixed-27-XyZ', 'Content-Type: image/png; name="logo.png"',
           'Content-Transfer-Encoding: base64',
           'Content-Disposition: attachment; filename="logo.png"', ''] + b64_lines(att1)
        + ['', '--mixed-27-XyZ', 'Content-Type: application/pdf; name="invoice.pdf"',
           'Content-Transfer-Encoding: base64',
           'Content-Disposition: attachment;\n\tfilename="invoice.pdf"', ''] + b64_lines(att2)
        + ['', '--mixed-27-XyZ--'], '\n'))

    add('list-unsubscribe-feedback-id', msg(std_headers(28, extra=[
        'List-Unsubscribe: <https://esp.example/u/28?t=abcDEF123>,\n <mailto:unsub-28@esp.example?subject=unsubscribe>',
        'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
        'Feedback-ID: campaign42:customer1:newsletter:espid',
        'Precedence: bulk',
        'X-Campaign-ID: 42',
        'Content-Type: text/html; charset=utf-8',
        'Content-Transfer-Encoding: 7bit']), html, '\r\n'))

    add('quoted-printable', msg(std_headers(29, extra=[
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: quoted-printable']),
        ['Caf=C3=A9 and cr=C3=A8me br=C3=BBl=C3=A9e, a=3Db, soft break here =',
         'continues after the soft break.=20', 'Trailing encoded space=20',
         'Line with real trailing space   ', '=E2=80=94 done'], '\r\n'))

    h = std_headers(30, subject='Re: Re: Fwd: meeting notes', extra=TEXT_PLAIN)
    h[3:3] = ['Reply-To: Support <support@customer.example>',
              'Cc: Team <team@customer.example>',
              'In-Reply-To: <prev.29@receiver.example>',
              'References: <first.1@receiver.example> <second.2@customer.example>\n'
              ' <third.3@receiver.example>\n\t<prev.29@receiver.example>']
    add('reply-thread-headers', msg(h, ['> quoted line', '>> deeper quote', '', 'reply'], '\r\n'))

    add('body-trailing-blank-lines', msg(std_headers(31, extra=TEXT_PLAIN),
        'text\r\n\r\n\r\n\r\n\r\n', '\r\n'))
    add('body-ws-only-lines-middle', msg(std_headers(32, extra=TEXT_PLAIN),
        'a\r\n   \r\n\t\r\n \t \r\nb\r\n  \r\n\r\n', '\r\n'))
    add('body-leading-blank-lines-lf', msg(std_headers(33, extra=TEXT_PLAIN),
        '\n\n\nstarts after blank lines\n', '\n'))
    add('dot-and-from-lines', msg(std_headers(34, extra=TEXT_PLAIN),
        ['.', '..', '.leading dot', 'From the body, not a header', '>From quoted',
         'Subject: not a header either', '.'], '\r\n'))
    add('empty-header-values', msg(std_headers(35, extra=TEXT_PLAIN + [
        'Cc:', 'X-Empty:', 'Keywords: ', 'X-Folded-Empty:\n \t']), para_lines(2), '\r\n'))
    add('no-space-after-colon', msg([
        'From:<nospace@customer.example>', 'To:rcpt36@receiver.example',
        'Subject:NoSpaceAfterColon', 'Date:Tue, 14 Nov 2023 22:13:36 +0000',
        'Message-ID:<nospace.36@customer.example>', 'MIME-Version:1.0',
        'Content-Type:text/plain'], para_lines(2), '\r\n'))
    add('body-single-lf', msg(std_headers(37, extra=TEXT_PLAIN), '\n', '\n'))
    add('tabs-in-body-lf', msg(std_headers(38, extra=TEXT_PLAIN),
        ['\tindented by tab', '\t\t\tthree tabs', 'col1\tcol2\tcol3', '\t', 'end\t\tx'], '\n'))

    add('nested-multipart', msg(std_headers(39, extra=[
        'Content-Type: multipart/mixed; boundary="outer39"']),
        ['--outer39', 'Content-Type: multipart/alternative; boundary="inner39"', '',
         '--inner39', 'Content-Type: text/plain; charset=utf-8', ''] + para_lines(3)
        + ['--inner39', 'Content-Type: text/html; charset=utf-8', ''] + html
        + ['--inner39--', '', '--outer39', 'Content-Type: application/octet-stream',
           'Content-Transfer-Encoding: base64', ''] + b64_lines(att1[:700])
        + ['--outer39--'], '\r\n'))

    add('bare-cr-in-body', msg(std_headers(40, extra=TEXT_PLAIN),
        'line with a bare\rCR inside\r\nsecond line\r\n', '\r\n'))

    h = std_headers(41, extra=TEXT_PLAIN)
    h[3] = ('Subject: =?UTF-8?B?' + base64.b64encode('Große Angebote für Sie — jetzt'.encode()).decode()
            + '?=\n =?UTF-8?Q?_und_nur_heute_=E2=9C=93?=')
    add('encoded-word-subject', msg(h, para_lines(3), '\r\n'))

    h = std_headers(42, extra=TEXT_PLAIN)
    h[1] = ('From: "A Very Long Display Name That Goes On And On, Inc. Customer Newsletter"\n'
            '\t<newsletter-with-a-long-local-part@customer.example>')
    add('folded-from-display-name-lf', msg(h, para_lines(3), '\n'))

    add('format-flowed', msg(std_headers(43, extra=[
        'Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes',
        'Content-Transfer-Encoding: 8bit']),
        ['This paragraph is flowed, so each line but the last ', 'ends in a space that ',
         'matters to the reader.', '', '> quoted flowed ', '> text', '-- ', 'signature'],
        '\r\n'))

    # folded header whose continuation lines end in bare LF inside a CRLF message
    raw = ('From: fold-mix@customer.example\r\nTo: rcpt44@receiver.example\r\n'
           'Subject: folded with\n\tmixed\r\n line endings\r\n'
           'Date: Tue, 14 Nov 2023 22:13:44 +0000\r\nMessage-ID: <m.44@customer.example>\n'
           'MIME-Version: 1.0\r\n\r\nbody line one\nbody line two\r\n')
    add('mixed-eol-in-folded-header', raw.encode())

    h = std_headers(46, extra=TEXT_PLAIN)
    h += ['X-Header-%02d: %s' % (i, words(rng.randint(1, 8))) for i in range(60)]
    add('many-headers', msg(h, para_lines(3), '\r\n'))

    add('headers-only-no-separator', (
        'From: hdr-only@customer.example\r\nTo: rcpt48@receiver.example\r\n'
        'Subject: headers only, no empty line\r\nDate: Tue, 14 Nov 2023 22:13:48 +0000\r\n'
        'Message-ID: <h.48@customer.example>\r\n').encode())

    # pseudo-random mixtures
    cases = ['From', 'FROM', 'from', 'fRoM']
    for k in range(1, 4):
        n = 48 + k
        eol = rng.choice(['\r\n', '\n'])
        hs = [
            '%s: Random %d <random%d@customer.example>' % (rng.choice(cases), k, k),
            '%s: r%d@receiver.example' % (rng.choice(['To', 'TO', 'to']), n),
            '%s:%s%s' % (rng.choice(['Subject', 'SUBJECT', 'subject']),
                         rng.choice([' ', '  ', '\t', ' \t']),
                         words(3) + rng.choice(['', '\n\t' + words(2), '\n ' + words(3) + '  '])),
            'Date: Tue, 14 Nov 2023 22:14:%02d +0000' % k,
            'Message-ID: <rand.%d.%08x@customer.example>' % (k, rng.getrandbits(32)),
        ]
        for _ in range(rng.randint(0, 4)):
            hs.append('X-R%d: %s%s' % (rng.randrange(100), words(rng.randint(1, 5)),
                                       rng.choice(['', ' ', '\t', '\n\t' + words(2)])))
        if rng.random() < 0.5:
            hs.append('Cc: c%d@receiver.example' % n)
        rng.shuffle(hs)
        blines = []
        for _ in range(rng.randint(1, 40)):
            l = words(rng.randint(0, 14))
            l = l.replace(' ', rng.choice([' ', '  ', '\t', ' \t ']), rng.randint(0, 3))
            l += rng.choice(['', '', ' ', '\t', '  \t'])
            blines.append(l)
        blines.append('end of random message %d' % k)
        blines += [''] * rng.randint(0, 3)
        add('random-%d-%s' % (k, 'crlf' if eol == '\r\n' else 'lf'), msg(hs, blines, eol))

    return C


def main(argv):
    if len(argv) != 1:
        sys.stderr.write('usage: gen_corpus.py OUTDIR\n')
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    corpus = build()
    names = set()
    for name, data in corpus:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
    print('gen_corpus: wrote %d messages to %s' % (len(corpus), out))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
