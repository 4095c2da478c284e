"""Master CPU per checkpointed transaction, for the command forms a
checkpointed write could take (benches/ckpt_forms.sh runs it).

Usage: ckpt_forms.py PORT PID N ROUNDS

The server on 127.0.0.1:PORT (process PID) must be a cluster node serving
every slot. For N one-key transactions over random slots (a 100-byte SET
each, the checkpoint key in the same slot through a hash tag), each form is
sent pipelined, 1000 transactions per write, after a FLUSHALL; the server's
CPU (user + system, /proc/PID/stat) is read before and after. Forms:

* plain `SET` alone (no checkpoint: the floor);
* `MULTI, SET, SET <checkpoint>, EXEC` per slot (what ferry sends);
* one `EVALSHA` of a script that runs many slots' transactions
  (`redis.pcall` per op, `redis.call('SET', <checkpoint>)` per slot;
  a script without a shebang may touch keys of any local slot), with
  10, 100 and 1000 transactions per call.

Prints a Markdown table: the median over ROUNDS of µs of server CPU per
transaction, and bytes sent per transaction.
"""

import hashlib
import os
import random
import socket
import statistics
import sys
import time

PORT, PID, N, ROUNDS = (int(a) for a in sys.argv[1:5])
BATCH = 1000
VALUE = b"x" * 100
HISTORY = b"8f2e6a3c1b9d4e7f0a5c2b8d6e1f3a9c7b4d0e2f"
SCRIPT = b"""
local i = 2
local errs = {}
for t = 1, tonumber(ARGV[1]) do
  for o = 1, tonumber(ARGV[i]) do
    local argc = tonumber(ARGV[i + 1])
    local r = redis.pcall(unpack(ARGV, i + 2, i + 1 + argc))
    if type(r) == 'table' and r.err then
      errs[#errs + 1] = t
      errs[#errs + 1] = r.err
    end
    i = i + 1 + argc
  end
  i = i + 1
  redis.call('SET', ARGV[i], ARGV[i + 1])
  i = i + 2
end
return errs
"""


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def frame_end(b, i):
    """End of the complete frame at b[i:], None if incomplete."""
    j = b.find(b"\r\n", i)
    if j < 0:
        return None
    t = b[i:i + 1]
    if t in (b"+", b"-", b":"):
        if t == b"-":
            raise SystemExit("error reply: %r" % b[i:j])
        return j + 2
    n = int(b[i + 1:j])
    if t == b"$":
        end = j + 2 + max(n, 0) + (2 if n >= 0 else 0)
        return end if end <= len(b) else None
    if t == b"*":
        k = j + 2
        for _ in range(max(n, 0)):
            k = frame_end(b, k)
            if k is None:
                return None
        return k
    raise SystemExit("unexpected reply: %r" % b[i:i + 40])


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=60)
        self.buf = b""

    def send(self, data, replies):
        """Sends `data` and reads `replies` frames; the last one's bytes."""
        self.s.sendall(data)
        got, last = 0, b""
        while got < replies:
            end = frame_end(self.buf, 0) if self.buf else None
            if end is None:
                chunk = self.s.recv(1 << 20)
                if not chunk:
                    raise SystemExit("connection closed")
                self.buf += chunk
                continue
            last, self.buf = self.buf[:end], self.buf[end:]
            got += 1
        return last


def cpu():
    f = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def forms(tags, sha):
    def ckpt(t):
        return b"ferry:ckpt:{%d}" % t, HISTORY + b":%d" % (10**9 + t)

    def chunked(make):
        return [make(tags[b:b + BATCH]) for b in range(0, len(tags), BATCH)]

    yield "`SET` alone (no checkpoint)", chunked(
        lambda ts: (b"".join(cmd("SET", b"{%d}k" % t, VALUE) for t in ts), len(ts)))
    yield "`MULTI, SET, SET <checkpoint>, EXEC` per slot (ferry)", chunked(
        lambda ts: (b"".join(cmd("MULTI") + cmd("SET", b"{%d}k" % t, VALUE)
                             + cmd("SET", *ckpt(t)) + cmd("EXEC") for t in ts), 4 * len(ts)))
    for per in (10, 100, 1000):
        def script(ts, per=per):
            calls = []
            for c in range(0, len(ts), per):
                args = [len(ts[c:c + per])]
                for t in ts[c:c + per]:
                    args += [1, 3, b"SET", b"{%d}k" % t, VALUE, *ckpt(t)]
                calls.append(cmd("EVALSHA", sha, 0, *args))
            return b"".join(calls), len(calls)
        yield f"one `EVALSHA` per {per} slots' transactions", chunked(script)


def main():
    conn = Conn()
    random.seed(15)
    tags = random.sample(range(10**9), N)
    conn.send(cmd("SCRIPT", "LOAD", SCRIPT), 1)
    sha = hashlib.sha1(SCRIPT).hexdigest()
    all_forms = list(forms(tags, sha))
    us = {name: [] for name, _ in all_forms}
    for _ in range(ROUNDS):
        for name, chunks in all_forms:
            conn.send(cmd("FLUSHALL"), 1)
            time.sleep(0.2)
            before = cpu()
            for data, replies in chunks:
                conn.send(data, replies)
            us[name].append(1e6 * (cpu() - before) / N)
            # Every form wrote what it should: the keys, and the checkpoints.
            want = N if name.startswith("`SET` alone") else 2 * N
            got = conn.send(cmd("DBSIZE"), 1)
            if got != b":%d\r\n" % want:
                raise SystemExit(f"{name}: DBSIZE {got!r}, expected {want}")
    base = statistics.median(us[all_forms[1][0]])
    print("| form | server CPU µs per transaction (median) | ÷ ferry's form | all rounds | bytes sent per transaction |")
    print("|---|---:|---:|---|---:|")
    for name, chunks in all_forms:
        m = statistics.median(us[name])
        sent = sum(len(d) for d, _ in chunks) / N
        rounds = ", ".join(f"{u:.2f}" for u in us[name])
        print(f"| {name} | {m:.2f} | {m / base:.2f}× | {rounds} | {sent:.0f} |")


main()
