"""The network model against the clock: K ranks in a :class:`~qodasim.netlab.Lab` time real iterations.

Each rank (one process per node, started by :func:`measure`) holds a float32 vector of ``d``
coordinates (layers of different scales, as in the ``speedup`` experiment) and, per iteration,
waits ``compute / K`` seconds (a sleep: the oracle's time without taking a core, like a GPU kernel),
then exchanges it by one of

* ``"allreduce"``: a ring all-reduce of the float32 vector (reduce-scatter then all-gather of
  ``d/K``-coordinate chunks) — uncompressed training;
* ``"allgather"``: quantize + encode (layer-wise levels, dense Elias-γ), a ring all-gather of the
  encoded messages, decode + average;
* ``"sra"``: quantize + encode chunk by chunk (:mod:`qodasim.solvers.sra`), ``K − 1`` pairwise
  exchanges, decode + average the owned chunk, re-quantize + encode it, a ring all-gather, decode;
* ``"qgenx-allgather"``, ``"qgenx-sra"``: Q-GenX — two oracles and two such exchanges per iteration.

over TCP between the nodes (:class:`Mesh`: one connection per pair; in each ring or exchange step a
thread sends while the caller receives).  Every rank records its seconds per iteration, the part spent
in the codec (its own, timed where it runs) and the bytes it sent.

:func:`measure` fits the latency ``α`` and bandwidth ``β`` of one link by a ping-pong (one-way time
= half the round trip, least squares over message sizes), then puts each measured iteration beside
the model (:mod:`qodasim.solvers.network`) fed with the fitted ``α``, ``β``, the messages' real sizes,
the compute, and the codec and reduction seconds measured in the run (per iteration the slowest
rank's: a ring waits for it): its one unmeasured term is the communication.  On a 2-core machine the
ranks share the cores: the codec seconds are those measured in the run (slower than on an idle core),
and the compute is a sleep so that it does not compete for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time

import numpy as np

__all__ = ["Mesh", "fit_link", "measure", "modelled_seconds"]

PORT = 5301
#: Exchanges timed: QODA's one message per iteration by each collective, and Q-GenX's two
#: (``"qgenx-…"``: two oracles and two exchanges per iteration).
COLLECTIVE_MODES = ("allreduce", "allgather", "sra", "qgenx-allgather", "qgenx-sra")


def _split_mode(mode: str) -> tuple[int, str]:
    """``(messages per iteration, collective)`` of a mode."""
    return (2, mode[len("qgenx-") :]) if mode.startswith("qgenx-") else (1, mode)


class Mesh:
    """TCP connections between every pair of ``K`` ranks; length-prefixed messages.

    Rank ``r`` listens on its address and connects to every lower rank (retrying while it starts)."""

    def __init__(self, rank: int, addresses: list[str], port: int = PORT, timeout: float = 60.0):
        self.rank, self.K = rank, len(addresses)
        self.conns: dict[int, socket.socket] = {}
        self.sent = 0
        self.seconds = 0.0  # inside exchanges: sending, receiving and waiting for the peers
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addresses[rank], port))
        srv.listen(self.K)
        srv.settimeout(timeout)
        for j in range(rank):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    c = socket.create_connection((addresses[j], port), timeout=timeout)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            c.sendall(rank.to_bytes(4, "little"))
            self.conns[j] = c
        for _ in range(rank + 1, self.K):
            c, _ = srv.accept()
            self.conns[int.from_bytes(self._exact(c, 4), "little")] = c
        srv.close()
        for c in self.conns.values():
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.settimeout(timeout)

    @staticmethod
    def _exact(c: socket.socket, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = c.recv_into(view[got:])
            if k == 0:
                raise ConnectionError("a peer closed its connection")
            got += k
        return bytes(buf)

    def send(self, to: int, data: bytes) -> None:
        """Send one length-prefixed message to rank ``to``."""
        self.conns[to].sendall(len(data).to_bytes(8, "little") + data)
        self.sent += len(data) + 8

    def recv(self, frm: int) -> bytes:
        """Receive one message from rank ``frm``."""
        c = self.conns[frm]
        return self._exact(c, int.from_bytes(self._exact(c, 8), "little"))

    def exchange(self, to: int, data: bytes, frm: int) -> bytes:
        """Send ``data`` to ``to`` while receiving one message from ``frm``."""
        t0 = time.perf_counter()
        t = threading.Thread(target=self.send, args=(to, data))
        t.start()
        got = self.recv(frm)
        t.join()
        self.seconds += time.perf_counter() - t0
        return got

    def barrier(self) -> None:
        """Return once every rank has reached its barrier (an empty exchange with every other rank)."""
        for s in range(1, self.K):
            self.exchange((self.rank + s) % self.K, b"", (self.rank - s) % self.K)

    def ring_allgather(self, data: bytes) -> list[bytes]:
        """Everyone's message, in rank order: ``K − 1`` steps of forwarding to the right."""
        out = [b""] * self.K
        out[self.rank] = data
        right, left = (self.rank + 1) % self.K, (self.rank - 1) % self.K
        for s in range(self.K - 1):
            out[(self.rank - s - 1) % self.K] = self.exchange(right, out[(self.rank - s) % self.K], left)
        return out

    def ring_allreduce(self, x: np.ndarray, timer=None) -> np.ndarray:
        """The float32 sum of every rank's ``x``: ring reduce-scatter, then ring all-gather of the chunks
        (the additions timed by ``timer.add`` if given)."""
        K, r = self.K, self.rank
        b = np.arange(K + 1) * x.size // K
        acc = [x[b[j] : b[j + 1]].copy() for j in range(K)]
        right, left = (r + 1) % K, (r - 1) % K
        for s in range(K - 1):
            send_j, recv_j = (r - s) % K, (r - s - 1) % K
            got = np.frombuffer(self.exchange(right, acc[send_j].tobytes(), left), np.float32)
            if timer is None:
                acc[recv_j] += got
            else:
                timer.add(acc[recv_j], got)
        for s in range(K - 1):
            send_j, recv_j = (r + 1 - s) % K, (r - s) % K
            got = self.exchange(right, acc[send_j].tobytes(), left)
            acc[recv_j] = np.frombuffer(got, np.float32).copy()
        return np.concatenate(acc)

    def close(self) -> None:
        """Close every connection."""
        for c in self.conns.values():
            c.close()


def _vector(d: int, seed: int, rank: int) -> tuple[np.ndarray, object]:
    """A layered float32 vector (the ``speedup`` experiment's layer proportions and scales) and its layout."""
    from ..quantize import LayerLayout

    props, scales, types = np.array([96, 24, 384, 48]), [1.0, 0.05, 4.0, 0.3], [0, 1, 0, 1]
    sizes = np.floor(props * d / props.sum()).astype(np.int64)
    sizes[2] += d - int(sizes.sum())
    rng = np.random.default_rng([seed, rank])
    v = np.concatenate([s * rng.standard_normal(n) for s, n in zip(scales, sizes)]).astype(np.float32)
    return v, LayerLayout(sizes, types=types)


class _Codec:
    """Encoders per outgoing stream and decoders per incoming one (level tables only when they change)."""

    def __init__(self):
        from ..coding import Decoder, Encoder

        self._enc, self._dec, self._E, self._D = {}, {}, Encoder, Decoder
        self.seconds = 0.0
        self.reduce_seconds = 0.0

    def add(self, total: np.ndarray, x: np.ndarray) -> None:
        """``total += x``, timed as the reduction."""
        t0 = time.perf_counter()
        total += x
        self.reduce_seconds += time.perf_counter() - t0

    def encode(self, stream, quant, v, key) -> tuple[bytes, object]:
        """The message's bytes and the quantized vector (the sender uses its own, exactly as decoded)."""
        t0 = time.perf_counter()
        qv = quant.quantize(v, key)
        data = self._enc.setdefault(stream, self._E()).encode(qv).data
        self.seconds += time.perf_counter() - t0
        return data, qv

    def own(self, qv) -> np.ndarray:
        t0 = time.perf_counter()
        out = qv.dequantize(np.float64)
        self.seconds += time.perf_counter() - t0
        return out

    def decode(self, stream, data: bytes) -> np.ndarray:
        t0 = time.perf_counter()
        out = self._dec.setdefault(stream, self._D()).decode(data).dequantize(np.float64)
        self.seconds += time.perf_counter() - t0
        return out


def _iteration(mode: str, mesh: Mesh, codec: _Codec, v, quant, subs, bounds, seed: int,
               it: int) -> tuple[np.ndarray, list[int]]:  # fmt: skip
    """One exchange of ``v``: the aggregate every rank ends with (the sum for the all-reduce, the mean
    otherwise: workers added in rank order in float64, as the simulation and
    :func:`~qodasim.solvers.sra.sra_aggregate` do) and the sizes in bytes of what this rank encoded."""
    from ..rng import Key
    from ..solvers.sra import stage1_key, stage2_key

    K, r = mesh.K, mesh.rank
    if mode == "allreduce":
        return mesh.ring_allreduce(v, codec), []
    if mode == "allgather":
        msg, qv = codec.encode("all", quant, v, Key(seed, r, it))
        msgs = mesh.ring_allgather(msg)
        total = np.zeros(v.size)
        for j, m in enumerate(msgs):
            codec.add(total, codec.own(qv) if j == r else codec.decode(("all", j), m))
        return total / K, [len(msg)]
    chunks = [codec.encode(("c", j), subs[j], v[bounds[j] : bounds[j + 1]], stage1_key(seed, r, j, K, it))
              for j in range(K)]  # fmt: skip
    received = {r: codec.own(chunks[r][1])}
    for s in range(1, K):
        to, frm = (r + s) % K, (r - s) % K
        received[frm] = codec.decode(("c", frm), mesh.exchange(to, chunks[to][0], frm))
    own = np.zeros(bounds[r + 1] - bounds[r])
    for k in range(K):
        codec.add(own, received[k])
    mine, mine_qv = codec.encode("r", subs[r], own / K, stage2_key(seed, r, it))
    parts = mesh.ring_allgather(mine)
    out = [codec.own(mine_qv) if j == r else codec.decode(("r", j), m) for j, m in enumerate(parts)]
    return np.concatenate(out), [len(c) for j, (c, _) in enumerate(chunks) if j != r] + [len(mine)]


def worker(spec: dict) -> dict:
    """One rank's run (``spec``: d, compute, iterations, warmup, levels, seed, modes); called in a node."""
    from ..levels import Levels
    from ..quantize import LayerwiseQuantizer
    from ..solvers.sra import chunk_bounds, chunk_quantizers

    rank, K = int(os.environ["QODASIM_NETLAB_RANK"]), int(os.environ["QODASIM_NETLAB_SIZE"])
    mesh = Mesh(rank, os.environ["QODASIM_NETLAB_ADDRS"].split(","))
    d, seed = int(spec["d"]), int(spec["seed"])
    v, layout = _vector(d, seed, rank)
    quant = LayerwiseQuantizer(layout, tuple(Levels.parse(x) for x in spec["levels"]))
    subs, bounds = chunk_quantizers(quant, d, K), chunk_bounds(d, K)
    out = {"rank": rank, "K": K, "modes": {}}
    for mode in spec["modes"]:
        codec = _Codec()
        times, codec_s, comm_s, red_s, sent, sizes = [], [], [], [], [], []
        mesh.barrier()
        for it in range(int(spec["warmup"]) + int(spec["iterations"])):
            c0, s0, m0, r0 = codec.seconds, mesh.sent, mesh.seconds, codec.reduce_seconds
            t0 = time.perf_counter()
            m, coll = _split_mode(mode)
            for i in range(m):  # Q-GenX: a second oracle and exchange (another round of keys)
                time.sleep(float(spec["compute"]) / K)
                agg, sz = _iteration(coll, mesh, codec, v, quant, subs, bounds, seed, m * it + i)
            t1 = time.perf_counter()
            if it >= int(spec["warmup"]):
                times.append(t1 - t0)
                codec_s.append(codec.seconds - c0)
                comm_s.append(mesh.seconds - m0)
                red_s.append(codec.reduce_seconds - r0)
                sent.append(mesh.sent - s0)
                sizes.append(sz)
        out["modes"][mode] = {"seconds": times, "codec": codec_s, "comm": comm_s, "reduce": red_s, "sent_bytes": sent,
                              "encoded_bytes": sizes, "last": hashlib.sha256(agg.tobytes()).hexdigest(),
                              "last_round": m * (it + 1) - 1,
                              "last_sum": float(np.sum(agg, dtype=np.float64))}  # fmt: skip
    mesh.barrier()
    mesh.close()
    return out


def fit_link(round_trips: list[dict]) -> tuple[float, float]:
    """``(α, β)`` from ping-pong round trips (one-way time = best round trip / 2): ``α`` the smallest
    message's one-way time, ``β`` (bits per second) from the least-squares slope through ``α`` of the
    messages of 256 KiB and more (the shaper's bucket lets the first ~128 KiB of a burst through at
    once, so small messages do not show the rate)."""
    rts = sorted(round_trips, key=lambda r: r["bytes"])
    alpha = rts[0]["best"] / 2
    big = [r for r in rts if r["bytes"] >= 1 << 18] or rts[-1:]
    x = np.array([r["bytes"] * 8.0 for r in big])
    y = np.array([r["best"] / 2 - alpha for r in big])
    return float(alpha), float(np.sum(x * x) / np.sum(x * y))


def modelled_seconds(mode: str, K: int, d: int, alpha: float, beta: float, compute: float, codec: float,
                     encoded_bytes: list[int] | None = None, reduce: float = 0.0) -> dict:  # fmt: skip
    """The network model's seconds per iteration for ``mode``: the collective's time with the fitted
    link and the messages' real sizes (bytes, with an 8-byte frame each) plus the compute, per message,
    and the codec and reduction seconds measured in the run (per iteration): ``{"comm", "total"}``."""
    from ..solvers import network as nm

    m, mode = _split_mode(mode)
    net = nm.Network(beta, alpha)
    if mode == "allreduce":
        comm = nm.allreduce_time(d, K, net)
    else:
        bits = [8 * (b + 8) for b in encoded_bytes]
        if mode == "allgather":
            comm = nm.allgather_time([bits[0]] * K, net)
        else:
            comm = nm.sra_time(np.full((K, K), float(np.mean(bits[:-1]))), [bits[-1]] * K, net)
    return {"comm": m * comm, "total": m * (compute / K + comm) + codec + reduce}


def measure(K: int = 4, rate_gbit: float = 1.0, d: int = 4_000_000, compute: float = 0.1, iterations: int = 5,
            warmup: int = 2, levels=("uniform:3", "uniform:3"), seed: int = 0, modes=COLLECTIVE_MODES,
            timeout: float = 600.0) -> dict:  # fmt: skip
    """Run the ranks in a fresh lab and return the measured and modelled seconds per iteration.

    Returns ``{"K", "rate_gbit", "d", "compute", "alpha", "beta", "round_trips", "modes": {mode: {...}}}``;
    per mode: ``measured`` (mean over iterations of the slowest rank's seconds); ``codec`` and
    ``reduce``: per iteration those of the rank whose codec + reduction took longest (a synchronous
    collective waits for it), averaged; ``comm``: the seconds inside the exchanges (waiting for peers
    included) of the slowest rank on average; ``other`` (the rest: copies, Python, the sleep's
    overshoot), the model's ``modelled`` seconds and ``comm_modelled`` part,
    ``error`` (``modelled/measured − 1``), ``per_rank`` means, ``sent_bytes`` and ``encoded_bytes``;
    ``reduce`` (that rank's seconds adding received values into sums) and the model's ``comm_modelled``;
    ``last``/``last_sum``: every rank's SHA-256 and sum of its aggregate in the last round
    (``last_round``), to check the transport against an in-process computation.
    """
    from . import Lab

    spec = {"d": d, "compute": compute, "iterations": iterations, "warmup": warmup, "levels": list(levels),
            "seed": seed, "modes": list(modes)}  # fmt: skip
    env = dict(os.environ, QODASIM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with Lab(K, rate_gbit) as lab:
        rt = lab.ping_pong(sizes=(1, 1 << 18, 1 << 20, 1 << 22), repeats=5)
        alpha, beta = fit_link(rt)
        argv = [sys.executable, "-m", "qodasim.netlab.clock", json.dumps(spec)]
        outs = lab.run_json([(k, argv) for k in range(K)], timeout, env=env, what="a rank")
    res = {"K": K, "rate_gbit": rate_gbit, "d": d, "compute": compute, "alpha": alpha, "beta": beta,
           "round_trips": rt, "modes": {}}  # fmt: skip
    for mode in modes:
        per_rank = np.array([o["modes"][mode]["seconds"] for o in outs])  # (K, iterations)
        slow = int(np.argmax(per_rank.mean(axis=1)))
        comm = float(np.mean(outs[slow]["modes"][mode]["comm"]))
        # a synchronous collective waits for the slowest rank of each iteration: its codec + reduction
        c = np.array([o["modes"][mode]["codec"] for o in outs])
        r = np.array([o["modes"][mode]["reduce"] for o in outs])
        worst = np.argmax(c + r, axis=0)
        cols = np.arange(c.shape[1])
        codec, reduce = float(c[worst, cols].mean()), float(r[worst, cols].mean())
        enc = outs[0]["modes"][mode]["encoded_bytes"][-1]
        measured = float(per_rank.max(axis=0).mean())
        model = modelled_seconds(mode, K, d, alpha, beta, compute, codec, enc, reduce)
        modelled = model["total"]
        res["modes"][mode] = {"measured": measured, "codec": codec, "reduce": reduce, "comm": comm,
                              "comm_modelled": model["comm"], "other": measured - compute / K - codec - reduce - comm,
                              "modelled": modelled,
                              "error": modelled / measured - 1, "per_rank": per_rank.mean(axis=1).tolist(),
                              "sent_bytes": float(np.mean(outs[0]["modes"][mode]["sent_bytes"])),
                              "last": [o["modes"][mode]["last"] for o in outs],
                              "last_sum": [o["modes"][mode]["last_sum"] for o in outs],
                              "last_round": outs[0]["modes"][mode]["last_round"],
                              "encoded_bytes": enc}  # fmt: skip
    return res


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))), flush=True)
