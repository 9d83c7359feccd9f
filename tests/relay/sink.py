#!/usr/bin/python3
"""tests/relay/sink.py - a small SMTP/LMTP server for the relay tests.

Records every accepted transaction in DIR as N.eml (the data as received,
dot-unstuffed) and N.env (JSON: mail, params, rcpts, how: DATA/BDAT,
session number, seq: its place in the session), before the reply. Misbehaves on command, chosen by the recipient's local
part so that one run exercises every path:

  t451...     451 to that RCPT (every time)
  o451...     451 to that RCPT the first 2 times it is seen, then 250
  p550...     550 to that RCPT
  c421...     421 to that RCPT, then the connection is closed
  d554...     554 after the data (for the whole transaction)
  drop...     connection dropped after the data, before the reply (once
              per address; then accepted)
  stall...    no reply after the data (once per address; then accepted)

Options: --port-file F (the chosen free port is written there), --dir D,
--size N (SIZE announced; bigger messages get 552), --no-pipelining,
--chunking, --lmtp, --8bitmime, --smtputf8, --tls-cert F --tls-key F
(STARTTLS offered; "tls" in N.env says whether the message came over it).
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import sys

seen = {}
counter = [0]
sessions = [0]


def once(key, times=1):
    n = seen.get(key, 0)
    seen[key] = n + 1
    return n < times


class Session:
    def __init__(self, opts, reader, writer):
        self.o, self.r, self.w = opts, reader, writer
        sessions[0] += 1
        self.sid = sessions[0]
        self.seq = 0
        self.tls = False
        self.reset()

    def reset(self):
        self.mail, self.params, self.rcpts, self.chunks = None, '', [], []

    def send(self, line):
        self.w.write((line + '\r\n').encode())

    def ehlo_lines(self):
        ext = ['sink.test']
        if not self.o.no_pipelining:
            ext.append('PIPELINING')
        if self.o.chunking:
            ext.append('CHUNKING')
        if self.o.eightbit:
            ext.append('8BITMIME')
        if self.o.smtputf8:
            ext.append('SMTPUTF8')
        if self.o.size:
            ext.append('SIZE %d' % self.o.size)
        if self.o.tls_cert and not self.tls:
            ext.append('STARTTLS')
        return ext

    async def run(self):
        self.send('220 sink.test ESMTP')
        await self.w.drain()
        while True:
            line = await self.r.readline()
            if not line:
                return
            cmd = line.decode('utf-8', 'replace').rstrip('\r\n')
            if not await self.command(cmd):
                return
            await self.w.drain()

    async def command(self, cmd):
        verb = cmd[:4].upper()
        if verb in ('EHLO', 'LHLO'):
            ext = self.ehlo_lines()
            for x in ext[:-1]:
                self.send('250-' + x)
            self.send('250 ' + ext[-1])
        elif verb == 'HELO':
            self.send('250 sink.test')
        elif verb == 'MAIL':
            addr, _, params = cmd[10:].partition('>')
            self.mail, self.params = addr.lstrip('<'), params.strip()
            self.send('250 2.1.0 ok')
        elif verb == 'RCPT':
            return self.rcpt(cmd[8:].strip().strip('<>'))
        elif verb == 'DATA':
            if not self.rcpts:
                self.send('554 5.5.1 no valid recipients')
                return True
            self.send('354 go ahead')
            await self.w.drain()
            return await self.data()
        elif verb == 'BDAT':
            return await self.bdat(cmd)
        elif verb == 'STAR' and self.o.tls_cert and not self.tls:
            self.send('220 2.0.0 go ahead')
            await self.w.drain()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.o.tls_cert, self.o.tls_key)
            try:
                await self.w.start_tls(ctx)
            except (ssl.SSLError, ConnectionError, OSError):
                return False
            self.tls = True
            self.reset()
        elif verb == 'RSET':
            self.reset()
            self.send('250 ok')
        elif verb == 'NOOP':
            self.send('250 ok')
        elif verb == 'QUIT':
            self.send('221 bye')
            await self.w.drain()
            self.w.close()
            return False
        else:
            self.send('502 5.5.2 what')
        return True

    def rcpt(self, addr):
        local = addr.split('@')[0]
        if local.startswith('t451'):
            self.send('451 4.3.0 try later, %s' % addr)
        elif local.startswith('o451') and once(addr, 2):
            self.send('451 4.3.0 not yet, %s' % addr)
        elif local.startswith('p550'):
            self.send('550 5.1.1 <%s>: no such user' % addr)
        elif local.startswith('c421'):
            self.send('421 4.3.2 going down')
            self.w.close()
            return False
        else:
            self.rcpts.append(addr)
            self.send('250 2.1.5 ok')
        return True

    async def data(self):
        buf = []
        while True:
            line = await self.r.readline()
            if not line:
                return False
            if line == b'.\r\n':
                break
            if line.startswith(b'.'):
                line = line[1:]
            buf.append(line)
        return await self.finish(b''.join(buf), 'DATA')

    async def bdat(self, cmd):
        parts = cmd.split()
        size = int(parts[1])
        self.chunks.append(await self.r.readexactly(size))
        if len(parts) > 2 and parts[2].upper() == 'LAST':
            data = b''.join(self.chunks)
            self.chunks = []
            if not self.rcpts:
                self.send('554 5.5.1 no valid recipients')
                return True
            return await self.finish(data, 'BDAT')
        self.send('250 2.0.0 chunk ok')
        return True

    async def finish(self, data, how):
        locs = [a.split('@')[0] for a in self.rcpts]
        if any(l.startswith('drop') for l in locs) and once('drop:' + self.rcpts[0]):
            self.w.close()
            return False
        if any(l.startswith('stall') for l in locs) and once('stall:' + self.rcpts[0]):
            await asyncio.sleep(3600)
            return False
        if self.o.size and len(data) > self.o.size:
            self.send('552 5.3.4 message too big')
        elif any(l.startswith('d554') for l in locs):
            self.send('554 5.7.1 rejected after data')
        else:
            self.record(data, how)
            if self.o.lmtp:
                for a in self.rcpts:
                    self.send('250 2.0.0 <%s> delivered' % a)
            else:
                self.send('250 2.0.0 queued as %d' % counter[0])
        self.reset()
        return True

    def record(self, data, how):
        counter[0] += 1
        self.seq += 1
        base = os.path.join(self.o.dir, '%06d' % counter[0])
        with open(base + '.eml', 'wb') as f:
            f.write(data)
        with open(base + '.env', 'w') as f:
            json.dump({'mail': self.mail, 'params': self.params,
                       'rcpts': self.rcpts, 'how': how,
                       'session': self.sid, 'seq': self.seq,
                       'tls': self.tls}, f)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port-file', required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--size', type=int, default=0)
    ap.add_argument('--no-pipelining', action='store_true')
    ap.add_argument('--chunking', action='store_true')
    ap.add_argument('--lmtp', action='store_true')
    ap.add_argument('--8bitmime', dest='eightbit', action='store_true')
    ap.add_argument('--smtputf8', action='store_true')
    ap.add_argument('--tls-cert')
    ap.add_argument('--tls-key')
    o = ap.parse_args()
    os.makedirs(o.dir, exist_ok=True)

    async def handle(reader, writer):
        try:
            await Session(o, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', 0))
    server = await asyncio.start_server(handle, sock=sock, limit=1 << 20)
    with open(o.port_file + '.tmp', 'w') as f:
        f.write(str(sock.getsockname()[1]))
    os.rename(o.port_file + '.tmp', o.port_file)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
