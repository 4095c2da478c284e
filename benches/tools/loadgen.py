#!/usr/bin/env python3
"""Fixed-rate pipelined write load on one Redis server (loopback only).

Sends a mix of write commands (SET, INCR, LPUSH, HSET, SADD, ZADD, APPEND,
PEXPIRE, DEL) over one connection at a fixed rate, in batches every TICK
seconds, for at most SECONDS and at most COUNT commands, then waits for
every reply. Prints one JSON object: commands sent, replies, errors, the
achieved rate and the wall time. Every reply of this mix is a single line
(+OK or :n), so replies are counted by line ends.

usage: loadgen.py PORT RATE SECONDS COUNT [KEYS [TAGS]]

TAGS (comma-separated) confines every key to the hash tags given (key
"lg:s:<k>{<tag>}", the tag picked by k), e.g. tags whose slots one master of
a cluster serves, so the load can be aimed at that master.
"""
import json
import random
import select
import socket
import sys
import time

TICK = 0.005


def command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pool(keys: int, size: int, seed: int = 7, tags=None):
    rnd = random.Random(seed)
    val = bytes(rnd.getrandbits(8) for _ in range(100))
    cmds = []
    for _ in range(size):
        n = rnd.randrange(keys)
        k = b"%d" % n
        if tags:
            k += b"{%s}" % tags[n % len(tags)]
        r = rnd.random()
        if r < 0.30:
            c = command(b"SET", b"lg:s:" + k, val)
        elif r < 0.45:
            c = command(b"INCR", b"lg:c:" + k)
        elif r < 0.55:
            c = command(b"LPUSH", b"lg:l:" + k, val[:20])
        elif r < 0.65:
            c = command(b"HSET", b"lg:h:" + k, b"f%d" % rnd.randrange(50), val[:30])
        elif r < 0.72:
            c = command(b"SADD", b"lg:t:" + k, b"m%d" % rnd.randrange(1000))
        elif r < 0.80:
            c = command(b"ZADD", b"lg:z:" + k, b"%d" % rnd.randrange(10**6), b"m%d" % rnd.randrange(1000))
        elif r < 0.88:
            c = command(b"APPEND", b"lg:a:" + k, b"x")
        elif r < 0.95:
            c = command(b"PEXPIRE", b"lg:s:" + k, b"%d" % rnd.randrange(60_000, 600_000))
        else:
            c = command(b"DEL", b"lg:s:" + k)
        cmds.append(c)
    return cmds


def main() -> None:
    port, rate, seconds, count = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    keys = int(sys.argv[5]) if len(sys.argv) > 5 else 100_000
    tags = [t.encode() for t in sys.argv[6].split(",") if t] if len(sys.argv) > 6 else None
    cmds = pool(keys, 200_000, tags=tags)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    sent = replies = errors = 0
    pending = b""
    tail = b""
    t0 = time.time()
    next_tick = t0
    idx = 0

    def read() -> None:
        nonlocal replies, errors, tail
        while True:
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                raise SystemExit("server closed the connection")
            buf = tail + data
            replies += buf.count(b"\r\n")
            errors += buf.count(b"\n-") + (1 if buf.startswith(b"-") and not tail else 0)
            tail = buf[buf.rfind(b"\n") + 1:]

    while sent < count and time.time() - t0 < seconds:
        now = time.time()
        if now >= next_tick:
            due = int(rate * (now - t0)) - sent
            due = max(0, min(due, count - sent))
            if due:
                chunk = []
                for _ in range(due):
                    chunk.append(cmds[idx])
                    idx = (idx + 1) % len(cmds)
                pending += b"".join(chunk)
                sent += due
            next_tick += TICK
        if pending:
            try:
                n = s.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
        read()
        wait = max(0.0, next_tick - time.time())
        select.select([s], [s] if pending else [], [], wait)
    deadline = time.time() + 60
    while (pending or replies < sent) and time.time() < deadline:
        if pending:
            try:
                n = s.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
        select.select([s], [s] if pending else [], [], 0.05)
        read()
    wall = time.time() - t0
    print(json.dumps(dict(sent=sent, replies=replies, errors=errors, seconds=round(wall, 3),
                          rate=round(sent / wall, 1), target_rate=rate)))
    if replies < sent:
        raise SystemExit(f"only {replies} of {sent} replies after 60 s")


if __name__ == "__main__":
    main()
