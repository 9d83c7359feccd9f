#!/usr/bin/python3
"""search.py -- look for private-key bytes in a core file.

    /usr/bin/python3 search.py CORE KEY.private...

For every key (PEM, RSA or Ed25519) the needles are: each base64 line of
the PEM body, the PKCS#8 DER; for RSA the primes p and q, the private
exponent d and the CRT values dp, dq, qinv, each big-endian and
little-endian (OpenSSL's BN words on x86-64), and p and q as the twenty
52-bit limbs of the 8-lane kernel (src/crypto/rsa8.c); for Ed25519 the
32-byte seed. A value counts as found when the whole value or any 32-byte
piece of it (at a 16-byte step; 8-byte limbs: any 4 consecutive limbs) is
in the core: a piece of 256 random bits does not occur by chance.

One line per needle found ("found KEY NAME (PART) at OFFSET in WHERE":
WHERE is "memory 0xVADDR" for a PT_LOAD segment of the core or "notes"
for PT_NOTE, which holds the threads' registers), then
"summary: N needles, F found". Exit 0 when none is found, 1 otherwise,
2 on a usage error.
"""

import mmap
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def be(n, size):
    return n.to_bytes(size, "big")


def limbs52(n, count=20):
    out = b""
    for _ in range(count):
        out += (n & ((1 << 52) - 1)).to_bytes(8, "little")
        n >>= 52
    return out


def needles(path):
    raw = open(path, "rb").read()
    key = serialization.load_pem_private_key(raw, password=None)
    out = []
    body = [l for l in raw.splitlines() if l and not l.startswith(b"-----")]
    for i, line in enumerate(body):
        if len(line) >= 32:
            out.append(("pem-line-%d" % i, line, len(line)))
    der = key.private_bytes(serialization.Encoding.DER,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # whole only: pieces of it are the public modulus and exponent (the
    # private fields are needles of their own below, as they are in it)
    out.append(("der", der, len(der)))
    if isinstance(key, rsa.RSAPrivateKey):
        pn = key.private_numbers()
        half = (key.key_size + 15) // 16
        vals = [("p", pn.p, half), ("q", pn.q, half), ("d", pn.d, 2 * half),
                ("dp", pn.dmp1, half), ("dq", pn.dmq1, half),
                ("qinv", pn.iqmp, half)]
        for name, v, size in vals:
            b = be(v, size)
            out.append((name + "-be", b, 32))
            out.append((name + "-le", b[::-1], 32))
        if key.key_size == 2048:
            out.append(("p-limbs52", limbs52(pn.p), 32))
            out.append(("q-limbs52", limbs52(pn.q), 32))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw,
                                 serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        out.append(("ed25519-seed", seed, 32))
    return out


def pieces(b, size):
    """The whole value, then size-byte pieces at a size/2 step."""
    yield 0, b
    if len(b) > size:
        step = max(size // 2, 8)
        for off in range(0, len(b) - size + 1, step):
            yield off, b[off:off + size]


def segments(m):
    """(offset, size, vaddr or None for PT_NOTE) of an ELF64 core."""
    import struct
    if m[:4] != b"\x7fELF" or m[4] != 2:
        return []
    phoff = struct.unpack_from("<Q", m, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", m, 0x36)
    out = []
    for i in range(phnum):
        t, _, off, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", m, phoff + i * phentsize)
        if t == 1:
            out.append((off, filesz, vaddr))
        elif t == 4:
            out.append((off, filesz, None))
    return out


def where(segs, at):
    for off, size, vaddr in segs:
        if off <= at < off + size:
            return "notes" if vaddr is None else "memory 0x%x" % (vaddr + at - off)
    return "elsewhere"


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    core = sys.argv[1]
    with open(core, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    segs = segments(m)
    total = found = 0
    for kp in sys.argv[2:]:
        for name, b, size in needles(kp):
            total += 1
            for off, piece in pieces(b, size):
                at = m.find(piece)
                if at >= 0:
                    found += 1
                    what = "whole" if off == 0 and len(piece) == len(b) else \
                        "bytes %d-%d" % (off, off + len(piece))
                    print("found %s %s (%s) at %d in %s" % (kp.rsplit("/", 1)[-1], name, what,
                                                         at, where(segs, at)))
                    break
    print("summary: %d needles, %d found" % (total, found))
    return 0 if found == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
