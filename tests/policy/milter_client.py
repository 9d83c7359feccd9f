#!/usr/bin/python3
"""milter_client.py - a minimal milter *client* (the MTA side of the
sendmail milter protocol, version 6), enough to hand one message to a
signing milter (OpenDKIM) and collect the header fields it adds.

Used by tests/policy/odkim_compat.py; no Debian package ships a milter
client that can be scripted (python3-milter is a milter server library,
and opendkim-tools has no miltertest in Debian 12).

Protocol (libmilter's mfdef.h): every packet is a 4-byte big-endian
length, a command byte and its data. The MTA negotiates (O), sends
macros (D), connect (C), HELO (H), MAIL (M), RCPT (R), each header (L),
end of headers (N), the body in chunks (B) and end of body (E); the
milter answers each step (unless it negotiated "no reply" for it) and at
end of body first sends its modifications (h add header, i insert
header, ...) and then the final verdict.
"""
import socket
import struct

SMFIF_ALL = 0x1FF
# protocol flags (mfapi.h)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_EOH, P_NR_BODY, P_HDR_LEADSPC = 0x40000, 0x80000, 0x100000
OFFER = 0x1FFFFF


class MilterError(Exception):
    pass


class Client:
    def __init__(self, host, port, timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        # the milter protocol is many small commands, each answered or
        # not: without this, Nagle holds a command until the delayed ACK
        # of the one before (40 ms, several times per message)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.prot = 0

    def send(self, cmd, data=b""):
        self.s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def _read(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise MilterError("milter closed the connection")
            b += c
        return b

    def recv(self):
        (n,) = struct.unpack(">I", self._read(4))
        p = self._read(n)
        return p[:1], p[1:]

    def negotiate(self):
        self.send(b"O", struct.pack(">III", 6, SMFIF_ALL, OFFER))
        cmd, data = self.recv()
        if cmd != b"O":
            raise MilterError("negotiation answered %r" % cmd)
        _ver, _act, self.prot = struct.unpack(">III", data[:12])

    def step(self, cmd, data, skip_flag, nr_flag):
        """Send one step unless the milter asked not to see it; read its
        answer unless it asked not to answer. Returns the answer byte."""
        if self.prot & skip_flag:
            return b"c"
        self.send(cmd, data)
        if self.prot & nr_flag:
            return b"c"
        while True:
            r, _ = self.recv()
            if r != b"p":  # progress: keep waiting
                return r

    def macro(self, stage, pairs):
        data = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
        self.send(b"D", stage + data)

    def message(self, sender, rcpts, raw, qid="A1B2C3"):
        """One message (bytes, CRLF or LF); returns (verdict, added) where
        added lists (name, value) of the fields the milter adds, in the
        order they will stand in the message (top first)."""
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        fields = []
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1] += b"\r\n" + line
            else:
                name, _, value = line.partition(b":")
                fields.append([name, value])
        self.macro(b"C", [("j", "mta.test"), ("{daemon_name}", "mta")])
        r = self.step(b"C", b"localhost\0" + b"4" + struct.pack(">H", 25) +
                      b"127.0.0.1\0", P_NOCONNECT, P_NR_CONN)
        if r != b"c":
            raise MilterError("connect answered %r" % r)
        steps = [(b"H", b"localhost\0", P_NOHELO, P_NR_HELO)]
        steps.append((b"M", b"<" + sender.encode() + b">\0", P_NOMAIL, P_NR_MAIL))
        for rc in rcpts:
            steps.append((b"R", b"<" + rc.encode() + b">\0", P_NORCPT, P_NR_RCPT))
        for name, value in fields:
            if not (self.prot & P_HDR_LEADSPC) and value[:1] == b" ":
                value = value[1:]
            steps.append((b"L", name + b"\0" + value + b"\0", P_NOHDRS, P_NR_HDR))
        steps.append((b"N", b"", P_NOEOH, P_NR_EOH))
        body = body.replace(b"\n", b"\r\n")
        for i in range(0, len(body), 65535):
            steps.append((b"B", body[i:i + 65535], P_NOBODY, P_NR_BODY))
        for cmd, data, skip, nr in steps:
            if cmd == b"M":
                self.macro(b"M", [("i", qid), ("{mail_addr}", sender)])
            r = self.step(cmd, data, skip, nr)
            if r in (b"a", b"r", b"t", b"d"):
                # accept (nothing more to do), or a rejection: the
                # milter wants no more of this message and changes nothing
                return r.decode(), []
        self.send(b"E")
        added = []
        while True:
            cmd, data = self.recv()
            if cmd == b"h":
                n, v = data.rstrip(b"\0").split(b"\0", 1)
                added.append((None, n.decode(), v.decode()))
            elif cmd == b"i":
                (idx,) = struct.unpack(">I", data[:4])
                n, v = data[4:].rstrip(b"\0").split(b"\0", 1)
                added.append((idx, n.decode(), v.decode()))
            elif cmd == b"p":
                continue
            elif cmd in (b"c", b"a", b"t", b"r", b"d"):
                return cmd.decode(), order(added)
            else:
                # other modifications (body, recipients): not expected
                raise MilterError("unexpected reply %r" % cmd)

    def abort_and_quit(self):
        try:
            self.send(b"Q")
        finally:
            self.s.close()


def order(added):
    """Insertions at index 0 go on top; each later one at 0 above the
    earlier ones (as Postfix and sendmail apply them)."""
    top, bottom = [], []
    for idx, n, v in added:
        if idx is None:
            bottom.append((n, v))
        else:
            top.insert(min(idx, len(top)), (n, v))
    return top + bottom
