"""A network-time model: seconds per iteration = compute + codec + communication (THEORY §8).

Latency–bandwidth (``α``, ``β``) costs of the two collectives a data-parallel VI solver uses:

* **ring all-gather** of one compressed message per worker, sizes ``b_1 … b_K`` bits: ``K − 1`` steps;
  in each, every worker forwards one message to its neighbour, and the step lasts as long as the
  largest message in flight — every message is in flight at some link in every step — so
  ``t = (K − 1)·(α + max_k b_k / β)``; with equal sizes THEORY §8's ``(K−1)α + (K−1)b/β``;
* **ring all-reduce** of ``d`` float32 values: ``t = 2(K − 1)α + 2(K − 1)/K · 32d/β``.

An iteration of a method that sends ``m`` messages per worker (QODA 1, Q-GenX 2) evaluates ``m``
oracles (``compute`` seconds each at ``K = 1``; divided by ``K`` under strong scaling, where a fixed
global minibatch is split over the workers), and per message pays the codec — quantize and encode one
``d``-vector, decode the ``K − 1`` others — and the collective.  Uncompressed methods all-reduce
instead and pay no codec.  Bits come from the solver's ledger (real streams), scaled to the model's
``d`` through bits per coordinate, or per round from a run's own ledger (:func:`run_time`).

Speed-up of a method ``M`` = seconds per iteration of the uncompressed baseline (default: uncompressed
QODA, one all-reduce per iteration) / seconds per iteration of compressed ``M``, at equal iterations
(THEORY §7.5: per iteration the methods' gaps are comparable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Network", "Workload", "allgather_time", "allreduce_time", "iteration_time", "run_time", "speedup",
           "GBPS", "PAPER_SPEEDUP"]  # fmt: skip

#: Bits per second in one Gbps.
GBPS = 1e9
#: The paper's end-to-end speed-ups over uncompressed training (THEORY §8; WGAN, CIFAR-10/100), by K.
PAPER_SPEEDUP = {"qoda": {4: 1.28, 8: 1.83, 12: 2.50, 16: 2.47}, "qgenx": {4: 1.28, 8: 1.5, 12: 1.8, 16: 1.9}}


def _positive(x, name: str, allow_zero: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {x!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {x!r}")
    return v


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
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    return int(K)


def allgather_time(bits, net: Network) -> float:
    """Ring all-gather of one message per worker (``bits``: their sizes): ``(K−1)(α + max b/β)``.

    Examples
    --------
    >>> from qodasim.solvers.network import Network, allgather_time
    >>> allgather_time([8e6] * 4, Network(1e9, latency=1e-4))  # 3 steps of 0.1 ms + 8 ms
    0.0243
    """
    b = np.asarray(bits, float)
    if b.ndim != 1 or b.size < 1 or not np.all(np.isfinite(b)) or np.any(b < 0):
        raise ValueError("bits must be a non-empty 1-D array of finite non-negative message sizes")
    K = b.size
    return (K - 1) * (net.latency + float(b.max()) / net.bandwidth)


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
    """

    d: int
    compute: float
    scaling: str = "strong"
    bits_per_coord: float = 3.0
    encode_per_coord: float = 0.0
    decode_per_coord: float = 0.0

    def __post_init__(self) -> None:
        _positive(self.d, "d")
        for name in ("compute", "encode_per_coord", "decode_per_coord"):
            object.__setattr__(self, name, _positive(getattr(self, name), name, allow_zero=True))
        object.__setattr__(self, "bits_per_coord", _positive(self.bits_per_coord, "bits_per_coord"))
        if self.scaling not in ("strong", "weak"):
            raise ValueError(f"scaling must be 'strong' or 'weak', got {self.scaling!r}")

    def compute_at(self, K: int) -> float:
        """Seconds of one oracle evaluation per worker with ``K`` workers."""
        return self.compute / _workers(K) if self.scaling == "strong" else self.compute

    def codec_at(self, K: int) -> float:
        """Seconds of the codec per message with ``K`` workers: encode one ``d``-vector, decode ``K − 1``."""
        return self.d * (self.encode_per_coord + (_workers(K) - 1) * self.decode_per_coord)


MESSAGES = {"qoda": 1, "qgenx": 2, "da": 1, "eg": 2, "popov": 1, "gda": 1}


def iteration_time(method: str, compressed: bool, K: int, work: Workload, net: Network) -> dict:
    """Seconds per iteration of ``method`` with ``K`` workers, split into compute, codec and
    communication (``{"compute", "codec", "comm", "total"}``)."""
    if method not in MESSAGES:
        raise ValueError(f"method must be one of {tuple(MESSAGES)}, got {method!r}")
    K = _workers(K)
    m = MESSAGES[method]
    compute = m * work.compute_at(K)
    if compressed:
        codec = m * work.codec_at(K)
        comm = m * allgather_time([work.bits_per_coord * work.d] * K, net)
    else:
        codec, comm = 0.0, m * allreduce_time(work.d, K, net)
    return {"compute": compute, "codec": codec, "comm": comm, "total": compute + codec + comm}


def speedup(method: str, K: int, work: Workload, net: Network, baseline: str = "qoda") -> float:
    """Seconds per iteration of uncompressed ``baseline`` over compressed ``method``."""
    base = iteration_time(baseline, False, K, work, net)["total"]
    return base / iteration_time(method, True, K, work, net)["total"]


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
    per_message += work.compute_at(K) + work.codec_at(K)
    step = np.where(sent, per_message, 0.0).sum(axis=1)
    n_it = n_rounds // rounds_per_iteration
    return np.cumsum(step[: n_it * rounds_per_iteration].reshape(n_it, rounds_per_iteration).sum(axis=1))
