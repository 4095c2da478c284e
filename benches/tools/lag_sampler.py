#!/usr/bin/env python3
"""Samples ferry's lag every INTERVAL seconds until STOP_FILE exists.

Each sample is one JSON line: wall time, the source's master_repl_offset
(INFO replication, read directly), ferry's applied_offset and lag_seconds
(from /status), and lag_bytes = source offset - applied offset computed
from the two reads (ferry's own lag_bytes uses a source offset polled at
most once a second).

usage: lag_sampler.py SOURCE_PORT HTTP_PORT INTERVAL STOP_FILE MAX_SECONDS
"""
import json
import os
import socket
import sys
import time
import urllib.request


def repl_offset(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(65536)
        head, rest = buf.split(b"\r\n", 1)
        need = int(head[1:]) + 2
        while len(rest) < need:
            rest += s.recv(65536)
    for line in rest.decode().splitlines():
        if line.startswith("master_repl_offset:"):
            return int(line.split(":")[1])
    raise RuntimeError("no master_repl_offset")


def main() -> None:
    src, http, interval, stop, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    t0 = time.time()
    while not os.path.exists(stop) and time.time() - t0 < limit:
        t = time.time()
        try:
            off = repl_offset(src)
            st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=2))
            applied = st.get("applied_offset") or 0
            print(json.dumps(dict(t=round(t, 3), source_offset=off, applied_offset=applied,
                                  lag_bytes=max(0, off - applied), lag_seconds=st.get("lag_seconds"),
                                  phase=st.get("phase"))), flush=True)
        except (OSError, ValueError, RuntimeError) as e:
            print(json.dumps(dict(t=round(t, 3), error=str(e))), flush=True)
        time.sleep(max(0.0, interval - (time.time() - t)))


if __name__ == "__main__":
    main()
