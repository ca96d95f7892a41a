"""Socket probes run inside a network lab's namespaces: a bulk transfer and a ping-pong.

Run as a script (``python probe.py …``; it imports nothing of qodasim, so it starts in milliseconds):

* ``probe.py recv HOST PORT NBYTES``: accept one connection, read ``NBYTES``, print the goodput in
  bits per second (first byte to last) and the times of both (``CLOCK_MONOTONIC``, shared by every
  process on the machine), and acknowledge;
* ``probe.py send HOST PORT NBYTES``: connect (retrying while the receiver starts), send ``NBYTES``,
  wait for the acknowledgement;
* ``probe.py pong HOST PORT``: echo messages back (one connection) until it closes;
* ``probe.py ping HOST PORT SIZES REPEATS``: for each message size (comma-separated bytes), time
  ``REPEATS`` round trips (the best and the median round trip in seconds, one JSON line per size).

Each prints one JSON line on stdout.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time

CHUNK = 1 << 20


def _connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _listen(host: str, port: int) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    srv.settimeout(30)
    conn, _ = srv.accept()
    conn.settimeout(60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    srv.close()
    return conn


def _read_exact(conn: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("the peer closed the connection")
        got += n


def recv(host: str, port: int, nbytes: int) -> dict:
    conn = _listen(host, port)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got, t0 = 0, None
    while got < nbytes:
        n = conn.recv_into(view[: min(CHUNK, nbytes - got)])
        if n == 0:
            raise ConnectionError(f"the sender closed after {got} of {nbytes} bytes")
        if t0 is None:
            t0 = time.monotonic()
        got += n
    t1 = time.monotonic()
    conn.sendall(b"k")
    conn.close()
    return {"bytes": got, "seconds": t1 - t0, "bits_per_second": 8 * got / (t1 - t0), "first": t0, "last": t1}


def send(host: str, port: int, nbytes: int) -> dict:
    conn = _connect(host, port)
    data = bytes(CHUNK)
    t0 = time.perf_counter()
    left = nbytes
    while left:
        k = min(CHUNK, left)
        conn.sendall(data[:k])
        left -= k
    conn.recv(1)
    seconds = time.perf_counter() - t0
    conn.close()
    return {"bytes": nbytes, "seconds": seconds}


def pong(host: str, port: int) -> dict:
    conn = _listen(host, port)
    rounds = 0
    head = bytearray(8)
    while True:
        try:
            _read_exact(conn, memoryview(head))
        except ConnectionError:
            break
        size = int.from_bytes(head, "little")
        body = bytearray(size)
        _read_exact(conn, memoryview(body))
        conn.sendall(head + body)
        rounds += 1
    conn.close()
    return {"rounds": rounds}


def ping(host: str, port: int, sizes: list[int], repeats: int) -> dict:
    conn = _connect(host, port)
    out = []
    for size in sizes:
        msg = size.to_bytes(8, "little") + bytes(size)
        back = bytearray(len(msg))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            conn.sendall(msg)
            _read_exact(conn, memoryview(back))
            times.append(time.perf_counter() - t0)
        out.append({"bytes": size, "best": min(times), "median": statistics.median(times)})
    conn.close()
    return {"round_trips": out}


def main(argv: list[str]) -> int:
    cmd, host, port = argv[0], argv[1], int(argv[2])
    if cmd == "recv":
        res = recv(host, port, int(argv[3]))
    elif cmd == "send":
        res = send(host, port, int(argv[3]))
    elif cmd == "pong":
        res = pong(host, port)
    elif cmd == "ping":
        res = ping(host, port, [int(x) for x in argv[3].split(",")], int(argv[4]))
    else:
        raise SystemExit(f"unknown probe {cmd!r}")
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
