"""tests/relay/check_env.py - split a queue file into its envelope lines
(addresses, angle brackets removed) and the message after them."""
import re


def split(data):
    env, pos = [], 0
    while True:
        end = data.find(b'\n', pos)
        line = data[pos:end + 1]
        m = re.match(rb'(?i)x-(sender|receiver):[ \t]*(.*?)[ \t]*\r?\n$', line)
        if not m:
            return env, data[pos:]
        a = m.group(2)
        if a.startswith(b'<') and a.endswith(b'>'):
            a = a[1:-1]
        env.append(a.decode('utf-8'))
        pos = end + 1
