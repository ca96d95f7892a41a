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

:func:`measure` fits the latency ``α`` of one link by a ping-pong (one-way time = half the round
trip) and the bandwidth ``β`` the ranks get when all of them send at once, as in every step of a ring
(:func:`ring_calibration`: every rank sends to its right neighbour while receiving from its left, over
the ranks' own transport; :func:`fit_ring`).  A ping-pong's ``β`` (one pair, the other ranks idle) is
kept beside it: on a machine whose cores the ranks share, their sockets' copies compete for the cores
and a link of 5 Gbit/s gives each rank less (``BENCHMARKS.md``, *netlab*).  Each measured iteration is
then put beside the model (:mod:`qodasim.netlab.model`) fed with ``α``, ``β``, the messages' real sizes,
the compute, and the codec and reduction seconds measured in the run on the iteration's critical path
(:func:`codec_path`: between two exchanges the slowest rank's work, since each exchange step waits for
it): its one unmeasured term is the communication.  On a 2-core machine the ranks share the cores: the
codec seconds are those measured in the run (slower than on an idle core), ranks finish their phases at
different times and wait for one another inside the exchanges (the path's excess over the slowest
rank's own codec time), and the compute is a sleep so that it does not compete for the cores.
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

__all__ = ["Mesh", "codec_path", "fit_link", "fit_ring", "measure", "modelled_seconds", "ring_calibration"]

PORT = 5301
#: Message sizes (bytes) of :func:`ring_calibration`: from past the shaper's 128 KiB burst up to the
#: all-reduce's 4 MiB chunks at ``d = 4·10^6``, ``K = 4``.
RING_SIZES = (1 << 18, 1 << 20, 1 << 22)
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
        self.on_exchange = None  # called as each exchange starts (the codec's phase boundaries)
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
        if self.on_exchange is not None:
            self.on_exchange()
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
        """The float32 sum of every rank's ``x``: ring reduce-scatter, then ring all-gather of the chunks.
        With ``timer``, the host's work is timed as the reduction: the additions (``timer.add``) and the
        copies between the vector and the messages (``timer.host``: the uncompressed counterpart of a
        codec's encode and decode)."""
        K, r = self.K, self.rank
        b = np.arange(K + 1) * x.size // K
        clock = time.perf_counter
        t0 = clock()
        acc = [x[b[j] : b[j + 1]].copy() for j in range(K)]
        right, left = (r + 1) % K, (r - 1) % K
        for s in range(K - 1):
            send_j, recv_j = (r - s) % K, (r - s - 1) % K
            data = acc[send_j].tobytes()
            if timer is not None:
                timer.host(clock() - t0)
            got = np.frombuffer(self.exchange(right, data, left), np.float32)
            if timer is None:
                acc[recv_j] += got
            else:
                timer.add(acc[recv_j], got)
            t0 = clock()
        for s in range(K - 1):
            send_j, recv_j = (r + 1 - s) % K, (r - s) % K
            data = acc[send_j].tobytes()
            if timer is not None:
                timer.host(clock() - t0)
            got = self.exchange(right, data, left)
            t0 = clock()
            acc[recv_j] = np.frombuffer(got, np.float32).copy()
        out = np.concatenate(acc)
        if timer is not None:
            timer.host(clock() - t0)
        return out

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
        self.phase = 0.0  # codec + reduction seconds since the last exchange began
        self.phases: list[float] = []

    def boundary(self) -> None:
        """An exchange begins (or the iteration ends): close the phase of work since the last one."""
        self.phases.append(self.phase)
        self.phase = 0.0

    def _tick(self, dt: float) -> None:
        self.seconds += dt
        self.phase += dt

    def host(self, dt: float) -> None:
        """``dt`` seconds of the reduction's host work other than adding (the all-reduce's copies)."""
        self.reduce_seconds += dt
        self.phase += dt

    def add(self, total: np.ndarray, x: np.ndarray) -> None:
        """``total += x``, timed as the reduction."""
        t0 = time.perf_counter()
        total += x
        dt = time.perf_counter() - t0
        self.reduce_seconds += dt
        self.phase += dt

    def encode(self, stream, quant, v, key) -> tuple[bytes, object]:
        """The message's bytes and the quantized vector (the sender uses its own, exactly as decoded)."""
        t0 = time.perf_counter()
        qv = quant.quantize(v, key)
        data = self._enc.setdefault(stream, self._E()).encode(qv).data
        self._tick(time.perf_counter() - t0)
        return data, qv

    def own(self, qv) -> np.ndarray:
        t0 = time.perf_counter()
        out = qv.dequantize(np.float64)
        self._tick(time.perf_counter() - t0)
        return out

    def decode(self, stream, data: bytes) -> np.ndarray:
        t0 = time.perf_counter()
        out = self._dec.setdefault(stream, self._D()).decode(data).dequantize(np.float64)
        self._tick(time.perf_counter() - t0)
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
    out = {"rank": rank, "K": K, "modes": {}, "ring": ring_calibration(mesh, spec.get("ring_sizes", RING_SIZES))}
    for mode in spec["modes"]:
        codec = _Codec()
        times, codec_s, comm_s, red_s, sent, sizes, phases = [], [], [], [], [], [], []
        mesh.barrier()
        for it in range(int(spec["warmup"]) + int(spec["iterations"])):
            c0, s0, m0, r0 = codec.seconds, mesh.sent, mesh.seconds, codec.reduce_seconds
            codec.phase, codec.phases, mesh.on_exchange = 0.0, [], codec.boundary
            t0 = time.perf_counter()
            m, coll = _split_mode(mode)
            for i in range(m):  # Q-GenX: a second oracle and exchange (another round of keys)
                time.sleep(float(spec["compute"]) / K)
                agg, sz = _iteration(coll, mesh, codec, v, quant, subs, bounds, seed, m * it + i)
            t1 = time.perf_counter()
            codec.boundary()
            mesh.on_exchange = None
            if it >= int(spec["warmup"]):
                phases.append(codec.phases)
                times.append(t1 - t0)
                codec_s.append(codec.seconds - c0)
                comm_s.append(mesh.seconds - m0)
                red_s.append(codec.reduce_seconds - r0)
                sent.append(mesh.sent - s0)
                sizes.append(sz)
        out["modes"][mode] = {"seconds": times, "codec": codec_s, "comm": comm_s, "reduce": red_s, "phases": phases,
                              "sent_bytes": sent,
                              "encoded_bytes": sizes, "last": hashlib.sha256(agg.tobytes()).hexdigest(),
                              "last_round": m * (it + 1) - 1,
                              "last_sum": float(np.sum(agg, dtype=np.float64))}  # fmt: skip
    mesh.barrier()
    mesh.close()
    return out


def ring_calibration(mesh: Mesh, sizes=RING_SIZES, repeats: int = 3) -> list[dict]:
    """This rank's best time (seconds) of one ring step per message size: after a barrier, every rank
    sends ``bytes`` to its right neighbour while receiving as many from its left, over ``mesh`` (the
    collectives' own transport: framing, copies, a sending thread).  ``[{"bytes", "best"}]``."""
    right, left = (mesh.rank + 1) % mesh.K, (mesh.rank - 1) % mesh.K
    out = []
    for n in sizes:
        data, best = bytes(int(n)), float("inf")
        for _ in range(repeats):
            mesh.barrier()
            t0 = time.perf_counter()
            mesh.exchange(right, data, left)
            best = min(best, time.perf_counter() - t0)
        out.append({"bytes": int(n), "best": best})
    return out


def fit_ring(per_rank: list[list[dict]]) -> float:
    """``β`` (bits per second) from every rank's :func:`ring_calibration`: per size the slowest rank's
    best step (a ring step ends when its last rank has its message), then the least-squares slope of
    time against bits (its intercept absorbs the latency and the shaper's burst)."""
    sizes = sorted({r["bytes"] for rank in per_rank for r in rank})
    if len(sizes) < 2:
        raise ValueError("per_rank: needs at least two message sizes")
    t = np.array([max(r["best"] for rank in per_rank for r in rank if r["bytes"] == n) for n in sizes])
    x = 8.0 * np.array(sizes, np.float64)
    slope = np.polyfit(x, t, 1)[0]
    if not slope > 0:
        raise ValueError(f"per_rank: step times do not grow with the message size ({t.tolist()})")
    return float(1.0 / slope)


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
    from . import model as nm

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


def codec_path(phases) -> float:
    """The codec and reduction seconds on an iteration's critical path: ``phases[k][i][p]`` is rank
    ``k``'s work in iteration ``i`` between its exchanges ``p − 1`` and ``p`` (the last phase after the
    last exchange); every exchange step waits for the slowest rank's phase before it, so the path takes
    ``Σ_p max_k`` (mean over iterations).  It exceeds the slowest rank's own total ``max_k Σ_p`` by the
    time ranks spend waiting for one another (on a machine whose cores the ranks share, their phases
    end at different times)."""
    try:
        P = np.asarray(phases, np.float64)
    except ValueError:  # ragged: ranks with different numbers of phases
        P = np.zeros(0)
    if P.ndim != 3 or P.size == 0:
        raise ValueError(f"phases must be (ranks, iterations, phases) with the same counts, got shape {P.shape}")
    return float(P.max(axis=0).sum(axis=1).mean())


def _summary(mode: str, runs: list[dict], K: int, d: int, alpha: float, beta: float, compute: float) -> dict:
    """One mode's measured and modelled seconds from every rank's record (see :func:`measure`)."""
    per_rank = np.array([o["seconds"] for o in runs])  # (K, iterations)
    slow = int(np.argmax(per_rank.mean(axis=1)))
    comm = float(np.mean(runs[slow]["comm"]))
    # the slowest rank of each iteration's own codec + reduction (without waiting for others)
    c, r = np.array([o["codec"] for o in runs]), np.array([o["reduce"] for o in runs])
    worst = np.argmax(c + r, axis=0)
    cols = np.arange(c.shape[1])
    codec, reduce = float(c[worst, cols].mean()), float(r[worst, cols].mean())
    path = codec_path([o["phases"] for o in runs])
    enc = runs[0]["encoded_bytes"][-1]
    measured = float(per_rank.max(axis=0).mean())
    model = modelled_seconds(mode, K, d, alpha, beta, compute, path, enc, 0.0)
    lump = modelled_seconds(mode, K, d, alpha, beta, compute, codec, enc, reduce)
    return {"measured": measured, "codec": codec, "reduce": reduce, "codec_path": path, "comm": comm,
            "comm_modelled": model["comm"], "other": measured - compute / K - codec - reduce - comm,
            "modelled": model["total"], "error": model["total"] / measured - 1,
            "modelled_slowest": lump["total"], "error_slowest": lump["total"] / measured - 1,
            "per_rank": per_rank.mean(axis=1).tolist(), "sent_bytes": float(np.mean(runs[0]["sent_bytes"])),
            "last": [o["last"] for o in runs], "last_sum": [o["last_sum"] for o in runs],
            "last_round": runs[0]["last_round"], "encoded_bytes": enc}  # fmt: skip


def measure(K: int = 4, rate_gbit: float = 1.0, d: int = 4_000_000, compute: float = 0.1, iterations: int = 5,
            warmup: int = 2, levels=("uniform:3", "uniform:3"), seed: int = 0, modes=COLLECTIVE_MODES,
            timeout: float = 600.0) -> dict:  # fmt: skip
    """Run the ranks in a fresh lab and return the measured and modelled seconds per iteration.

    Returns ``{"K", "rate_gbit", "d", "compute", "alpha", "beta", "beta_pingpong", "round_trips", "ring",
    "modes": {mode: {...}}}`` (``beta``: :func:`fit_ring` of every rank's ``ring`` calibration, the
    model's; ``beta_pingpong``: :func:`fit_link`'s);
    per mode: ``measured`` (mean over iterations of the slowest rank's seconds); ``codec`` and
    ``reduce``: per iteration those of the rank whose codec + reduction took longest, averaged;
    ``codec_path``: the codec and reduction seconds on the critical path (:func:`codec_path`: per step
    the slowest rank's); ``comm``: the seconds inside the exchanges (waiting for peers included) of the
    slowest rank on average; ``other`` (the rest: copies, Python, the sleep's overshoot); the model's
    ``modelled`` seconds (with ``codec_path``), its ``comm_modelled`` part and ``error``
    (``modelled/measured − 1``); ``modelled_slowest`` and ``error_slowest``: the model with the slowest
    rank's own codec + reduction instead (no waiting); ``per_rank`` means, ``sent_bytes`` and ``encoded_bytes``;
    ``last``/``last_sum``: every rank's SHA-256 and sum of its aggregate in the last round
    (``last_round``), to check the transport against an in-process computation.
    """
    from . import Lab

    spec = {"d": d, "compute": compute, "iterations": iterations, "warmup": warmup, "levels": list(levels),
            "seed": seed, "modes": list(modes)}  # fmt: skip
    env = dict(os.environ, QODASIM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with Lab(K, rate_gbit) as lab:
        rt = lab.ping_pong(sizes=(1, 1 << 18, 1 << 20, 1 << 22), repeats=5)
        alpha, beta_pp = fit_link(rt)
        argv = [sys.executable, "-m", "qodasim.netlab.clock", json.dumps(spec)]
        outs = lab.run_json([(k, argv) for k in range(K)], timeout, env=env, what="a rank")
    ring = [o["ring"] for o in outs]
    beta = fit_ring(ring)
    res = {"K": K, "rate_gbit": rate_gbit, "d": d, "compute": compute, "alpha": alpha, "beta": beta,
           "beta_pingpong": beta_pp, "round_trips": rt, "ring": ring, "modes": {}}  # fmt: skip
    for mode in modes:
        res["modes"][mode] = _summary(mode, [o["modes"][mode] for o in outs], K, d, alpha, beta, compute)
    return res


if __name__ == "__main__":
    print(json.dumps(worker(json.loads(sys.argv[1]))), flush=True)
