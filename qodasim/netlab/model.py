"""A network-time model: seconds per iteration = compute + codec + communication (THEORY §8).

Latency–bandwidth (``α``, ``β``) costs of the three collectives a data-parallel VI solver can use:

* **ring all-gather** of one compressed message per worker, sizes ``b_1 … b_K`` bits: ``K − 1`` steps;
  in each, every worker forwards one message to its neighbour, and the step lasts as long as the
  largest message in flight — every message is in flight at some link in every step — so
  ``t = (K − 1)·(α + max_k b_k / β)``; with equal sizes THEORY §8's ``(K−1)α + (K−1)b/β``;
* **ring all-reduce** of ``d`` float32 values: ``t = 2(K − 1)α + 2(K − 1)/K · 32d/β``;
* **compressed scatter-reduce-allgather (SRA**, what CGX runs): each worker cuts its compressed
  vector into ``K`` chunks and sends chunk ``j`` to worker ``j`` (``K − 1`` pairwise-exchange steps, in
  step ``s`` worker ``k`` sends to ``k + s mod K``), worker ``j`` decodes and adds the chunks, re-quantizes
  the sum and the re-quantized chunks are ring-all-gathered (``K − 1`` steps):
  ``t = Σ_s (α + max_k c_{k, k+s}/β) + (K − 1)(α + max_j r_j/β)``, with equal sizes
  ``2(K − 1)α + (K − 1)/K · (b_1 + b_2)·d/β`` (``b_1``: bits per coordinate of the workers' messages,
  ``b_2``: of the re-quantized chunks; THEORY §8 has ``b_1 = b_2``).

Per worker and message the codec encodes ``d`` coordinates and decodes ``(K − 1)·d`` under the
all-gather; under SRA it encodes ``d + d/K`` (its vector and its re-quantized chunk) and decodes
``2(K − 1)·d/K`` (the chunks it reduces and the chunks it gathers).  Adding the received vectors into
the sum costs ``reduce_per_coord`` per coordinate added: ``(K − 1)·d`` (all-gather), ``(K − 1)·d/K``
(SRA: the owned chunk; and the ring all-reduce's reduce-scatter: ``"allreduce"``).

An iteration of a method that sends ``m`` messages per worker (QODA 1, Q-GenX 2) evaluates ``m``
oracles (``compute`` seconds each at ``K = 1``; divided by ``K`` under strong scaling, where a fixed
global minibatch is split over the workers), and per message pays the codec and the collective.
Uncompressed methods all-reduce instead and pay no codec.  Bits come from the solver's ledger (real
streams), scaled to the model's ``d`` through bits per coordinate (``Workload.bits_from_d`` says
which ``d`` they were measured at), or per round from a run's own ledger (:func:`run_time`).

Speed-up of a method ``M`` = seconds per iteration of the uncompressed baseline (default: uncompressed
QODA, one all-reduce per iteration) / seconds per iteration of compressed ``M``, at equal iterations
(THEORY §7.5: per iteration the methods' gaps are comparable; SRA's second quantization adds variance,
:func:`qodasim.solvers.sra.sra_variance` says how much).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validate import check_int, check_real

__all__ = ["Network", "Workload", "allgather_time", "allreduce_time", "sra_time", "iteration_time", "run_time",
           "speedup", "traffic", "collective_time", "COLLECTIVES", "GBPS", "PAPER_SPEEDUP"]  # fmt: skip

#: Bits per second in one Gbps.
GBPS = 1e9
#: The paper's end-to-end speed-ups over uncompressed training (THEORY §8; WGAN, CIFAR-10/100), by K.
PAPER_SPEEDUP = {"qoda": {4: 1.28, 8: 1.83, 12: 2.50, 16: 2.47}, "qgenx": {4: 1.28, 8: 1.5, 12: 1.8, 16: 1.9}}
#: The collectives a compressed method can use: ring all-gather, compressed scatter-reduce-allgather.
COLLECTIVES = ("allgather", "sra")


def _positive(x, name: str, allow_zero: bool = False) -> float:
    return check_real(x, name, 0.0, lo_open=not allow_zero, type_error=TypeError)


@dataclass(frozen=True)
class Network:
    """A latency–bandwidth link model.

    Parameters
    ----------
    bandwidth : float
        ``β`` in bits per second (``2.5 * GBPS`` for 2.5 Gbps).
    latency : float
        ``α`` in seconds per message step (default 50 µs, an Ethernet round through the stack).
    """

    bandwidth: float
    latency: float = 50e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "bandwidth", _positive(self.bandwidth, "bandwidth"))
        object.__setattr__(self, "latency", _positive(self.latency, "latency", allow_zero=True))


def _workers(K) -> int:
    check_int(K, "K", 1)
    return int(K)


def allgather_time(bits, net: Network) -> float:
    """Ring all-gather of one message per worker (``bits``: their sizes): ``(K−1)(α + max b/β)``.

    Examples
    --------
    >>> from qodasim.netlab.model import Network, allgather_time
    >>> allgather_time([8e6] * 4, Network(1e9, latency=1e-4))  # 3 steps of 0.1 ms + 8 ms
    0.0243
    """
    b = _sizes(bits, "bits", 1)
    K = b.size
    return (K - 1) * (net.latency + float(b.max()) / net.bandwidth)


def _sizes(x, name: str, ndim: int) -> np.ndarray:
    b = np.asarray(x, float)
    if b.ndim != ndim or b.size < 1 or not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError(f"{name} must be a non-empty {ndim}-D array of finite non-negative message sizes")
    return b


def sra_time(chunk_bits, requant_bits, net: Network) -> float:
    """Compressed scatter-reduce-allgather (THEORY §8).

    Parameters
    ----------
    chunk_bits : array (K, K)
        ``[k, j]``: bits of worker ``k``'s chunk ``j`` (the diagonal is not sent).
    requant_bits : array (K,)
        Bits of worker ``j``'s re-quantized chunk sum.
    net : Network

    Returns
    -------
    float
        ``Σ_{s=1}^{K−1} (α + max_k c[k, (k+s) mod K]/β) + (K−1)(α + max_j r_j/β)``: the reduce-scatter's
        pairwise exchanges (step ``s``: every worker sends to the one ``s`` places on), then a ring
        all-gather of the re-quantized chunks.

    Examples
    --------
    >>> from qodasim.netlab.model import Network, sra_time
    >>> sra_time([[2e6] * 4] * 4, [2e6] * 4, Network(1e9, latency=1e-4))  # 6 steps of 0.1 ms + 2 ms
    0.0126
    """
    c = _sizes(chunk_bits, "chunk_bits", 2)
    K = c.shape[0]
    if c.shape != (K, K):
        raise ValueError(f"chunk_bits must be a square (K, K) array, got shape {c.shape}")
    r = _sizes(requant_bits, "requant_bits", 1)
    if r.size != K:
        raise ValueError(f"requant_bits must have K = {K} entries (one per worker), got {r.size}")
    k = np.arange(K)
    scatter = sum(net.latency + float(c[k, (k + s) % K].max()) / net.bandwidth for s in range(1, K))
    return scatter + allgather_time(r, net)


def traffic(collective: str, K: int, d: int, bits_per_coord: float,
            requant_bits_per_coord: float | None = None) -> float:  # fmt: skip
    """Bits one worker sends per message: ``(K−1)·b·d`` (all-gather: it forwards every other worker's
    message once), ``(K−1)/K·(b_1 + b_2)·d`` (SRA), ``2(K−1)/K·32d`` (``"allreduce"``, float32)."""
    K = _workers(K)
    d = _positive(d, "d")
    b1 = _positive(bits_per_coord, "bits_per_coord")
    b2 = b1 if requant_bits_per_coord is None else _positive(requant_bits_per_coord, "requant_bits_per_coord")
    if collective == "allgather":
        return (K - 1) * b1 * d
    if collective == "sra":
        return (K - 1) / K * (b1 + b2) * d
    if collective == "allreduce":
        return 2 * (K - 1) / K * 32 * d
    raise ValueError(f"collective must be one of {COLLECTIVES + ('allreduce',)}, got {collective!r}")


def allreduce_time(d: int, K: int, net: Network, bits_per_value: int = 32) -> float:
    """Ring all-reduce of ``d`` values: ``2(K−1)α + 2(K−1)/K · bits_per_value·d/β``."""
    K = _workers(K)
    d = _positive(d, "d")
    return 2 * (K - 1) * net.latency + 2 * (K - 1) / K * bits_per_value * d / net.bandwidth


@dataclass(frozen=True)
class Workload:
    """What one worker computes and sends per oracle call.

    Parameters
    ----------
    d : int
        Model size (coordinates).
    compute : float
        Seconds of one oracle evaluation on the whole minibatch at ``K = 1``.
    scaling : {"strong", "weak"}
        ``"strong"``: a fixed global minibatch split over the workers (compute ``/ K``); ``"weak"``:
        each worker keeps the whole minibatch.
    bits_per_coord : float
        Mean bits per coordinate of one compressed message (from a ledger: header, level tables,
        norms and payload).
    encode_per_coord, decode_per_coord : float
        Seconds per coordinate to quantize + encode one message, and to decode + dequantize one.
    requant_bits_per_coord : float, optional
        Bits per coordinate of SRA's re-quantized chunk sums (default: ``bits_per_coord``).
    reduce_per_coord : float
        Seconds to add one received coordinate into the sum (the reduction; default 0).
    bits_from_d : int, optional
        The size of the vectors the bits per coordinate were measured on (default: ``d``).  Headers,
        level tables and norms are a larger share at small ``d``, so bits measured at a small ``d``
        overstate a large model's; tables that use this workload say which ``d`` gave the bits.
    """

    d: int
    compute: float
    scaling: str = "strong"
    bits_per_coord: float = 3.0
    encode_per_coord: float = 0.0
    decode_per_coord: float = 0.0
    requant_bits_per_coord: float | None = None
    bits_from_d: int | None = None
    reduce_per_coord: float = 0.0

    def __post_init__(self) -> None:
        _positive(self.d, "d")
        for name in ("compute", "encode_per_coord", "decode_per_coord", "reduce_per_coord"):
            object.__setattr__(self, name, _positive(getattr(self, name), name, allow_zero=True))
        object.__setattr__(self, "bits_per_coord", _positive(self.bits_per_coord, "bits_per_coord"))
        if self.requant_bits_per_coord is not None:
            object.__setattr__(self, "requant_bits_per_coord",
                               _positive(self.requant_bits_per_coord, "requant_bits_per_coord"))  # fmt: skip
        if self.bits_from_d is not None:
            _positive(self.bits_from_d, "bits_from_d")
        if self.scaling not in ("strong", "weak"):
            raise ValueError(f"scaling must be 'strong' or 'weak', got {self.scaling!r}")

    def compute_at(self, K: int) -> float:
        """Seconds of one oracle evaluation per worker with ``K`` workers."""
        return self.compute / _workers(K) if self.scaling == "strong" else self.compute

    @property
    def requant_bits(self) -> float:
        """Bits per coordinate of SRA's re-quantized chunks."""
        return self.bits_per_coord if self.requant_bits_per_coord is None else self.requant_bits_per_coord

    def codec_at(self, K: int, collective: str = "allgather") -> float:
        """Seconds of the codec per message with ``K`` workers: all-gather — encode one ``d``-vector,
        decode ``K − 1``; SRA — encode ``d + d/K`` coordinates, decode ``2(K − 1)·d/K``."""
        K = _workers(K)
        if collective == "allgather":
            return self.d * (self.encode_per_coord + (K - 1) * self.decode_per_coord)
        if collective == "sra":
            return self.d * (self.encode_per_coord * (1 + 1 / K) + 2 * (K - 1) / K * self.decode_per_coord)
        raise ValueError(f"collective must be one of {COLLECTIVES}, got {collective!r}")

    def reduce_at(self, K: int, collective: str = "allgather") -> float:
        """Seconds of the reduction per message: ``(K − 1)·d`` coordinates added (all-gather),
        ``(K − 1)·d/K`` (SRA's owned chunk, and the float32 ring all-reduce, ``"allreduce"``)."""
        K = _workers(K)
        if collective == "allgather":
            return (K - 1) * self.d * self.reduce_per_coord
        if collective in ("sra", "allreduce"):
            return (K - 1) / K * self.d * self.reduce_per_coord
        raise ValueError(f"collective must be one of {COLLECTIVES + ('allreduce',)}, got {collective!r}")


MESSAGES = {"qoda": 1, "qgenx": 2, "da": 1, "eg": 2, "popov": 1, "gda": 1}


def collective_time(collective: str, K: int, work: Workload, net: Network) -> float:
    """Seconds of one compressed message's collective with equal messages (``b·d`` bits each; SRA
    chunks ``b_1·d/K`` and ``b_2·d/K``)."""
    K = _workers(K)
    if collective == "allgather":
        return allgather_time([work.bits_per_coord * work.d] * K, net)
    if collective == "sra":
        return sra_time(np.full((K, K), work.bits_per_coord * work.d / K), [work.requant_bits * work.d / K] * K, net)
    raise ValueError(f"collective must be one of {COLLECTIVES}, got {collective!r}")


def iteration_time(method: str, compressed: bool, K: int, work: Workload, net: Network,
                   collective: str = "allgather") -> dict:  # fmt: skip
    """Seconds per iteration of ``method`` with ``K`` workers, split into compute, codec, reduction and
    communication (``{"compute", "codec", "reduce", "comm", "total"}``); compressed messages travel by
    ``collective`` (:data:`COLLECTIVES`), uncompressed ones by a float32 all-reduce."""
    if method not in MESSAGES:
        raise ValueError(f"method must be one of {tuple(MESSAGES)}, got {method!r}")
    K = _workers(K)
    m = MESSAGES[method]
    compute = m * work.compute_at(K)
    if compressed:
        codec = m * work.codec_at(K, collective)
        reduce = m * work.reduce_at(K, collective)
        comm = m * collective_time(collective, K, work, net)
    else:
        codec, reduce, comm = 0.0, m * work.reduce_at(K, "allreduce"), m * allreduce_time(work.d, K, net)
    return {"compute": compute, "codec": codec, "reduce": reduce, "comm": comm,
            "total": compute + codec + reduce + comm}  # fmt: skip


def speedup(method: str, K: int, work: Workload, net: Network, baseline: str = "qoda",
            collective: str = "allgather") -> float:  # fmt: skip
    """Seconds per iteration of uncompressed ``baseline`` over compressed ``method`` (by ``collective``)."""
    base = iteration_time(baseline, False, K, work, net)["total"]
    return base / iteration_time(method, True, K, work, net, collective)["total"]


def run_time(ledger, K: int, d_run: int, work: Workload, net: Network, rounds_per_iteration: int = 1) -> np.ndarray:
    """Modelled cumulative seconds after each iteration of a recorded run, from its ledger's real bits.

    Each message is one all-gather: the ``j``-th message of every worker in a round travels in the
    round's ``j``-th all-gather, whose step is set by the largest of those messages (scaled from the
    run's ``d_run`` coordinates to ``work.d``), among ``K`` workers (the run's own ``K``, or more: the
    others are taken to send messages of that size).  Each all-gather also pays one oracle
    (``work.compute_at(K)``) and the codec.
    """
    table = ledger.table()
    if table.size == 0:
        raise ValueError("the ledger is empty (a run with bits = 'none'?)")
    K = _workers(K)
    if rounds_per_iteration not in (1, 2):
        raise ValueError(f"rounds_per_iteration must be 1 or 2, got {rounds_per_iteration!r}")
    rounds = table[:, 1].astype(np.int64)
    workers = table[:, 0].astype(np.int64)
    bits = table[:, 2:].sum(axis=1) * (work.d / d_run)
    n_rounds = int(rounds.max()) + 1
    order = np.lexsort((np.arange(rounds.size), workers, rounds))  # stable: a worker's messages in send order
    slot = np.zeros(rounds.size, np.int64)  # j: how many earlier messages this worker sent in this round
    seen: dict = {}
    for i in order:
        key = (rounds[i], workers[i])
        slot[i] = seen.get(key, 0)
        seen[key] = slot[i] + 1
    largest = np.zeros((n_rounds, int(slot.max()) + 1))
    np.maximum.at(largest, (rounds, slot), bits)
    sent = np.zeros_like(largest, bool)
    sent[rounds, slot] = True
    per_message = (K - 1) * (net.latency + largest / net.bandwidth)
    per_message += work.compute_at(K) + work.codec_at(K) + work.reduce_at(K)
    step = np.where(sent, per_message, 0.0).sum(axis=1)
    n_it = n_rounds // rounds_per_iteration
    return np.cumsum(step[: n_it * rounds_per_iteration].reshape(n_it, rounds_per_iteration).sum(axis=1))
