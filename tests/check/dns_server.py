#!/usr/bin/env python3
"""dns_server.py -- a tiny authoritative-looking DNS server for tests/check.

    dns_server.py ZONEFILE ADDR PORT READYFILE

Answers TXT questions over UDP from ZONEFILE (lines NAME<TAB>RECORD, the
dkimpress --dns-file format; quoted strings are not joined, the record is
served as it is, split into 255-byte strings). Special records:

    SERVFAIL   answer with rcode SERVFAIL
    TIMEOUT    never answer
    TWICE:REC  two TXT records at the name, both REC

A name that is not in the file gets NXDOMAIN. Standard library only;
meant to run inside a private network namespace (unshare -n), where it
can own 127.0.0.1:53 without touching the host. Writes READYFILE once it
listens. Runs until killed.
"""

import socket
import struct
import sys


def load(path):
    recs = {}
    with open(path, 'rb') as f:
        for raw in f:
            line = raw.rstrip(b'\r\n')
            if not line.strip() or line.startswith(b'#'):
                continue
            name, _, rec = line.partition(b'\t')
            recs.setdefault(name.strip().rstrip(b'.').lower(), rec.strip())
    return recs


def qname(data, off):
    labels = []
    while True:
        n = data[off]
        off += 1
        if n == 0:
            return b'.'.join(labels), off
        labels.append(data[off:off + n])
        off += n


def txt_rdata(rec):
    out = b''
    for i in range(0, max(len(rec), 1), 255):
        chunk = rec[i:i + 255]
        out += bytes([len(chunk)]) + chunk
    return out


def answer(data, recs):
    qid, flags = struct.unpack('!HH', data[:4])
    name, off = qname(data, 12)
    qtype, qclass = struct.unpack('!HH', data[off:off + 4])
    question = data[12:off + 4]
    rec = recs.get(name.lower())
    rd = flags & 0x0100
    if rec == b'TIMEOUT':
        return None
    if rec == b'SERVFAIL':
        return struct.pack('!HHHHHH', qid, 0x8082 | rd, 1, 0, 0, 0) + question
    if rec is None:
        return struct.pack('!HHHHHH', qid, 0x8483 | rd, 1, 0, 0, 0) + question
    if qtype != 16:
        return struct.pack('!HHHHHH', qid, 0x8480 | rd, 1, 0, 0, 0) + question
    recs_out = [rec]
    if rec.startswith(b'TWICE:'):
        recs_out = [rec[6:], rec[6:]]
    body = b''
    for r in recs_out:
        rdata = txt_rdata(r)
        body += b'\xc0\x0c' + struct.pack('!HHIH', 16, 1, 60, len(rdata)) + rdata
    flags_out = 0x8480 | rd
    if 12 + len(question) + len(body) > 512:
        flags_out |= 0x0200   # TC: glibc would retry over TCP; keep tests small
        body = b''
        recs_out = []
    return struct.pack('!HHHHHH', qid, flags_out, 1, len(recs_out), 0, 0) + question + body


def main():
    zone, addr, port, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    recs = load(zone)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((addr, port))
    with open(ready, 'w') as f:
        f.write('ready\n')
    while True:
        data, peer = s.recvfrom(4096)
        try:
            out = answer(data, recs)
        except Exception:  # a malformed question: no answer
            out = None
        if out is not None:
            s.sendto(out, peer)


if __name__ == '__main__':
    main()
