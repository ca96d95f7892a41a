"""Real workers: the solver template over MPI, one rank per worker (THEORY §6).

Each rank ``k`` of a communicator of size ``K`` is worker ``k``: at every round it evaluates its own
oracle samples (its counter-based noise stream, ``qodasim.vi.noise``), quantizes them with its own
keys, encodes them into real bit streams, and the ranks exchange the encoded **bytes** with a
variable-length all-gather (the sizes first, ``Iallgather``; then the bytes, ``Iallgatherv``).  Every
rank decodes every stream, dequantizes, sums in worker order and takes the same step, so every rank
holds the same iterates — and, with the same config and seed, the same iterates as the in-process
simulation :func:`~qodasim.solvers.solve`, bit for bit (tested with ``mpiexec -n 4``).

Bytes on the wire: a compressed message of ``b`` bits travels as its ``⌈b/8⌉`` bytes, so the bytes
exchanged per message equal the ledger's bits rounded up to whole bytes (``MPIResult.wire_bytes``).
Uncompressed runs exchange the float64 oracle outputs (the simulation's arithmetic, so iterates stay
bit-identical); their ledger counts the 32 bits per coordinate a float32 system would send.

Faults: every collective is non-blocking and waited on with a deadline (``timeout`` seconds).  A rank
that dies, hangs or errors leaves the others waiting; at the deadline each prints one line to stderr
(``qodasim[rank k/K]: …``) and the job is aborted with ``MPI.Abort``.  A stream that does not decode
is seen by every rank (all decode every stream), each raises :class:`~qodasim.solvers.SolverError`
naming the worker and round, and the job ends with that message on every rank.  A flipped bit that
leaves a stream decodable is caught only with ``crc=True`` (``qodasim solve --mpi --crc``: a CRC-32 on
every stream).  Before the first step the ranks compare :func:`run_fingerprint` (their configuration
and problem): ranks started with different run files stop with one line each instead of a wrong answer.

Launch (``mpi`` extra: ``pip install 'qodasim[mpi]'``, which brings the MPICH wheel and its
``mpiexec``)::

    mpiexec -n 4 python -m qodasim solve run.toml --mpi --out result

or from Python, inside a script started by ``mpiexec``: ``solve_mpi(problem, config)``.  Across hosts,
give MPICH's ``mpiexec`` a hostfile (``mpiexec -f hosts -n 16 …``, one ``host:slots`` per line); every
host needs the same Python environment.  Results agree bit for bit across hosts only when their CPUs
give the same floating-point results for the problem's BLAS calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..coding import DecodeError, Decoder, Encoder
from ..errors import CollectiveTimeout
from ..quantize import NormRangeError
from ..rng import Key
from ..vi.problems import Problem
from .genx import (
    SolverConfig,
    SolverError,
    SolverResult,
    _checked_config,
    _Diverged,
    _Oracle,
    _run_template,
    _sum_messages,
)
from .sra import chunk_bounds, chunk_quantizers, stage1_key, stage2_key

__all__ = ["solve_mpi", "MPIResult", "CollectiveTimeout", "DEFAULT_TIMEOUT", "wait", "abort", "run_fingerprint"]

#: Seconds a rank waits for a collective before it declares the job broken.
DEFAULT_TIMEOUT = 30.0

_OK, _NONFINITE, _NORM_RANGE = 0, 1, 2
_CATS = ("header", "level_tables", "norms", "payload")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - the mpi extra is in dev
        raise SolverError("the MPI backend needs mpi4py: pip install 'qodasim[mpi]'") from exc
    return MPI


def wait(req, timeout: float, what: str) -> None:
    """Wait for a non-blocking MPI request, spinning briefly and then sleeping with a growing pause
    (ranks may share cores); raise :class:`CollectiveTimeout` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    spins, pause = 0, 1e-5
    while not req.Test():
        spins += 1
        if spins > 50:
            if time.monotonic() > deadline:
                raise CollectiveTimeout(f"no answer from the other workers within {timeout:g} s during {what}")
            time.sleep(pause)
            pause = min(pause * 1.5, 2e-3)


@dataclass
class MPIResult(SolverResult):
    """A :class:`~qodasim.solvers.SolverResult` plus what crossed the wire.

    Attributes
    ----------
    wire_bytes : int
        Payload bytes this rank received in the all-gathers, all workers' messages included (its own
        too), summed over the run.
    rank, size : int
        This rank and the communicator size (``= K``).
    """

    wire_bytes: int = 0
    rank: int = 0
    size: int = 1


class _MPIOracle(_Oracle):
    """Worker ``comm.rank``'s oracle; exchanges real encoded bytes with the other ranks."""

    def __init__(self, problem: Problem, cfg: SolverConfig, comm, timeout: float, limit: float, keep_workers: bool,
                 crc: bool = False):  # fmt: skip
        super().__init__(problem, cfg, limit, keep_workers)
        self.comm, self.timeout, self.rank = comm, float(timeout), comm.rank
        R, K = cfg.replicas, cfg.K
        self.encoders = [Encoder(cfg.protocol, cfg.code, crc=crc) for _ in range(R)]  # this worker's channels
        self.decoders = [[Decoder(require_crc=crc) for _ in range(K)] for _ in range(R)]
        self.wire_bytes = 0
        self._meta = np.zeros((K, 1 + 5 * R), np.int64)
        # SRA channels: this worker's encoders to each receiver j and for its re-quantized chunk (index K);
        # decoders from each sender j and from each owner j (index K + j)
        self._sra_enc = [[Encoder(cfg.protocol, cfg.code, crc=crc) for _ in range(K + 1)] for _ in range(R)]
        self._sra_dec = [[Decoder(require_crc=crc) for _ in range(2 * K)] for _ in range(R)]

    def _gather(self, send: np.ndarray, recv: np.ndarray, counts=None, what: str = "") -> None:
        MPI = _mpi()
        if counts is None:
            req = self.comm.Iallgather(send, recv)
        else:
            displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            req = self.comm.Iallgatherv(send, [recv, (counts.tolist(), displs.tolist()), MPI.BYTE])
        wait(req, self.timeout, what)

    def __call__(self, X: np.ndarray, t: int, rnd: int):
        """This worker's oracle → its encoded message → every worker's message (sizes, then bytes) →
        the ledger from the exchanged bit counts → every message decoded and summed in worker order."""
        cfg, K = self.cfg, self.cfg.K
        with np.errstate(over="ignore", invalid="ignore"):
            V = cfg.noise.sample_worker(self.p, X, self.rank, cfg.seed, rnd)
        d = V.shape[1]
        if self.quant is not None and cfg.collective == "sra":
            return self._sra_round(V, X, t, rnd), None
        meta, payload = self._own_message(V, rnd)
        if self.rank == 0:
            self.last_raw = V[0]
        recv, sizes = self._exchange(meta, payload, X, t, rnd)
        if self.counter.counts:
            self._record(t, rnd)
        if self.quant is None:
            W = np.ascontiguousarray(recv.view(np.float64).reshape(K, cfg.replicas, d).transpose(1, 0, 2))
            return W.mean(axis=1), (W if self.keep_workers else None)
        out, workers = _sum_messages(self._decode_all(recv, sizes, t, rnd), cfg.replicas, K, d, self.quant.engine,
                                     self.keep_workers)  # fmt: skip
        return out / K, workers

    def _own_message(self, V: np.ndarray, rnd: int) -> tuple[np.ndarray, bytes]:
        """This worker's status and per-replica ``(bytes, bit counts by category)`` row, and its bytes:
        the encoded streams, or the raw float64 values of an uncompressed run."""
        R, d, k = self.cfg.replicas, V.shape[1], self.rank
        meta = np.zeros(1 + 5 * R, np.int64)
        if not np.all(np.isfinite(V)):
            meta[0] = _NONFINITE
            return meta, b""
        if self.quant is None:
            meta[1::5] = 8 * d
            meta[5::5] = 32 * d
            return meta, np.ascontiguousarray(V, np.float64).tobytes()
        try:
            qvs = self.quant.quantize_batch(V, [Key(self.seeds[r], k, rnd) for r in range(R)])
        except NormRangeError:
            meta[0] = _NORM_RANGE
            return meta, b""
        msgs = [self.encoders[r].encode(qvs[r]) for r in range(R)]
        for r, m in enumerate(msgs):
            meta[1 + 5 * r] = len(m.data)
            meta[2 + 5 * r : 6 + 5 * r] = [m.bits[c] for c in _CATS]
        return meta, b"".join(m.data for m in msgs)

    def _exchange(self, meta: np.ndarray, payload: bytes, X: np.ndarray, t: int, rnd: int):
        """Every worker's row (checked: any rank's failure raises on every rank), then every worker's
        bytes; returns them and the ``(K, R)`` message sizes."""
        self._gather(meta, self._meta, what=f"the size exchange of iteration {t} (round {rnd})")
        self._check_status(self._meta, X, t, rnd)
        sizes = self._meta[:, 1::5]  # (K, R) bytes
        counts = sizes.sum(axis=1)
        recv = np.empty(int(counts.sum()), np.uint8)
        self._gather(np.frombuffer(payload, np.uint8), recv, counts, f"the message exchange of iteration {t} "
                     f"(round {rnd})")  # fmt: skip
        self.wire_bytes += int(counts.sum())
        self.calls += 1
        self.messages += 1
        return recv, sizes

    def _record(self, t: int, rnd: int) -> None:
        """Every worker's bits of this round, from the exchanged counts (the same on every rank)."""
        for j in range(self.cfg.K):
            for r in range(self.cfg.replicas):
                bits = dict(zip(_CATS, self._meta[j, 2 + 5 * r : 6 + 5 * r].tolist(), strict=True))
                self.bits[r, t - 1] += sum(bits.values())
                if r == 0:
                    self.ledger.record(j, rnd, bits)

    def _decode_all(self, recv: np.ndarray, sizes: np.ndarray, t: int, rnd: int) -> list:
        """Every worker's quantized vector, replica-major (``[r·K + j]``), decoded on its channel."""
        R, K = self.cfg.replicas, self.cfg.K
        starts = np.concatenate([[0], np.cumsum(sizes.ravel())])  # worker-major: (j, r)
        qvs = []
        for r in range(R):
            for j in range(K):
                a = starts[j * R + r]
                data = recv[a : a + sizes[j, r]].tobytes()
                try:
                    qvs.append(self.decoders[r][j].decode(data, Key(self.seeds[r], j, rnd)))
                except DecodeError as exc:
                    raise SolverError(f"the message of worker {j} (replica {r}) in iteration {t} (round {rnd}) "
                                      f"does not decode: {exc}") from None  # fmt: skip
        return qvs

    def _check_status(self, meta: np.ndarray, X: np.ndarray, t: int, rnd: int) -> None:
        """Raise on every rank if any rank flagged a non-finite output or a norm outside float32."""
        bad = np.flatnonzero(meta[:, 0])
        if bad.size:
            j, why = int(bad[0]), int(meta[bad[0], 0])
            if why == _NONFINITE:
                self._nonfinite(X, t, rnd, worker=j)
            raise _Diverged(f"an oracle output of worker {j} at iteration {t} cannot be sent (norm outside float32)")

    def _decode(self, decoder: Decoder, data: bytes, key: Key, who: str, t: int, rnd: int):
        try:
            return decoder.decode(data, key).dequantize(np.float64, engine=self.quant.engine)
        except DecodeError as exc:
            raise SolverError(f"the message of {who} in iteration {t} (round {rnd}) does not decode: {exc}") from None

    def _sra_round(self, V: np.ndarray, X: np.ndarray, t: int, rnd: int) -> np.ndarray:
        """One SRA round over MPI (:mod:`qodasim.solvers.sra`): chunk messages by a non-blocking
        all-to-all, the owner's average re-quantized, the re-quantized chunks by an all-gather; the same
        keys, channel encoders and summation order as the simulation, so the same aggregate and ledger."""
        K, d = self.cfg.K, V.shape[1]
        subs, b = chunk_quantizers(self.quant, d, K), chunk_bounds(d, K)
        qv1, msgs, meta = self._sra_chunks(V, subs, b, rnd)
        if self.rank == 0:
            self.last_raw = V[0]
        sent = np.zeros((K, meta.size), np.int64)
        self._gather(meta, sent, what=f"the size exchange of iteration {t} (round {rnd})")
        self._check_status(sent, X, t, rnd)
        received = self._sra_exchange(msgs, sent[:, 1:].reshape(K, self.cfg.replicas, K + 4)[:, :, :K], t, rnd)
        mine, meta2 = self._sra_requantize(qv1, received, subs, t, rnd)
        gathered = np.zeros((K, meta2.size), np.int64)
        self._gather(meta2, gathered, what=f"the re-quantized sizes of iteration {t} (round {rnd})")
        counts = gathered[:, 1::5].sum(axis=1)
        recv = np.empty(int(counts.sum()), np.uint8)
        self._gather(np.frombuffer(b"".join(m.data for m, _ in mine), np.uint8), recv, counts,
                     f"the re-quantized chunks of iteration {t} (round {rnd})")  # fmt: skip
        self.wire_bytes += int(counts.sum())
        self.calls += 1
        self.messages += 1
        self._sra_ledger(sent, gathered, t, rnd)
        return self._sra_assemble(mine, gathered[:, 1::5], recv, b, t, rnd)

    def _sra_chunks(self, V: np.ndarray, subs, b: np.ndarray, rnd: int):
        """Stage 1 on this worker: each replica's chunks quantized, the ones for the other workers
        encoded by their channels; the metadata row ``[status, per replica: K sizes (bytes) and the four
        bit categories summed over the sent chunks]``."""
        R, K, k = self.cfg.replicas, self.cfg.K, self.rank
        meta = np.zeros(1 + R * (K + 4), np.int64)
        qv1, msgs = [], [[b""] * K for _ in range(R)]
        if not np.all(np.isfinite(V)):
            meta[0] = _NONFINITE
            return qv1, msgs, meta
        try:
            qv1 = [[subs[j].quantize(V[r, b[j] : b[j + 1]], stage1_key(self.seeds[r], k, j, K, rnd)) for j in range(K)]
                   for r in range(R)]  # fmt: skip
        except NormRangeError:
            meta[0] = _NORM_RANGE
            return qv1, msgs, meta
        for r in range(R):
            row = meta[1 + r * (K + 4) : 1 + (r + 1) * (K + 4)]
            for j in (j for j in range(K) if j != k):
                m = self._sra_enc[r][j].encode(qv1[r][j])
                msgs[r][j] = m.data
                row[j] = len(m.data)
                row[K:] += [m.bits[c] for c in _CATS]
        return qv1, msgs, meta

    def _sra_exchange(self, msgs, sizes: np.ndarray, t: int, rnd: int) -> list[dict]:
        """The all-to-all of the chunk messages (``sizes[sender, replica, receiver]`` bytes): per replica,
        the bytes each other worker sent this one."""
        MPI = _mpi()
        R, K, k = self.cfg.replicas, self.cfg.K, self.rank
        send = b"".join(msgs[r][j] for j in range(K) for r in range(R))  # receiver-major, replicas inside
        scounts, rcounts = sizes[k].T.sum(axis=1), sizes[:, :, k].sum(axis=1)
        recv = np.empty(int(rcounts.sum()), np.uint8)
        sd = np.concatenate([[0], np.cumsum(scounts)[:-1]]).astype(np.int64)
        rd = np.concatenate([[0], np.cumsum(rcounts)[:-1]]).astype(np.int64)
        req = self.comm.Ialltoallv([np.frombuffer(send, np.uint8), (scounts.tolist(), sd.tolist()), MPI.BYTE],
                                   [recv, (rcounts.tolist(), rd.tolist()), MPI.BYTE])  # fmt: skip
        wait(req, self.timeout, f"the chunk exchange of iteration {t} (round {rnd})")
        self.wire_bytes += int(rcounts.sum())
        out = [{} for _ in range(R)]
        for j in (j for j in range(K) if j != k):
            a = int(rd[j])
            for r in range(R):
                out[r][j] = recv[a : a + sizes[j, r, k]].tobytes()
                a += int(sizes[j, r, k])
        return out

    def _sra_requantize(self, qv1, received: list[dict], subs, t: int, rnd: int):
        """The owned chunk's average (senders in order, this worker's own chunk as quantized) re-quantized
        and encoded: per replica ``(message, quantized vector)``, and the metadata row ``[0, per replica:
        size (bytes) and the four bit categories]``."""
        R, K, k = self.cfg.replicas, self.cfg.K, self.rank
        meta = np.zeros(1 + R * 5, np.int64)
        mine = []
        for r in range(R):
            total = np.zeros(subs[k].layout.d)
            for j in range(K):
                if j == k:
                    total += qv1[r][k].dequantize(np.float64, engine=self.quant.engine)
                else:
                    total += self._decode(self._sra_dec[r][j], received[r][j], stage1_key(self.seeds[r], j, k, K, rnd),
                                          f"worker {j} (chunk {k}, replica {r})", t, rnd)  # fmt: skip
            q = subs[k].quantize(total / K, stage2_key(self.seeds[r], k, rnd))
            m = self._sra_enc[r][K].encode(q)
            mine.append((m, q))
            meta[1 + 5 * r] = len(m.data)
            meta[2 + 5 * r : 6 + 5 * r] = [m.bits[c] for c in _CATS]
        return mine, meta

    def _sra_ledger(self, sent: np.ndarray, gathered: np.ndarray, t: int, rnd: int) -> None:
        """The simulation's rows: per worker its ``K − 1`` chunks and its re-quantized chunk."""
        R, K = self.cfg.replicas, self.cfg.K
        for j in range(K if self.counter.counts else 0):
            for r in range(R):
                parts = sent[j, 1 + r * (K + 4) + K : 1 + (r + 1) * (K + 4)] + gathered[j, 2 + 5 * r : 6 + 5 * r]
                bits = dict(zip(_CATS, parts.tolist(), strict=True))
                self.bits[r, t - 1] += sum(bits.values())
                if r == 0:
                    self.ledger.record(j, rnd, {c: float(v) for c, v in bits.items()})

    def _sra_assemble(self, mine, sizes: np.ndarray, recv: np.ndarray, b: np.ndarray, t: int, rnd: int) -> np.ndarray:
        """Every replica's aggregate: the owners' re-quantized chunks (``sizes[owner, replica]`` bytes,
        owner-major in ``recv``) decoded, this worker's own as quantized."""
        R, K, k = self.cfg.replicas, self.cfg.K, self.rank
        out = np.empty((R, int(b[-1])))
        starts = np.concatenate([[0], np.cumsum(sizes.ravel())])
        for r in range(R):
            for j in range(K):
                if j == k:
                    part = mine[r][1].dequantize(np.float64, engine=self.quant.engine)
                else:
                    a = starts[j * R + r]
                    data = recv[a : a + sizes[j, r]].tobytes()
                    part = self._decode(self._sra_dec[r][K + j], data, stage2_key(self.seeds[r], j, rnd),
                                        f"owner {j} (replica {r})", t, rnd)  # fmt: skip
                out[r, b[j] : b[j + 1]] = part
        return out

    def update_levels(self, policy, t: int, T: int) -> None:
        """Rank 0 (worker 0, whose raw output the simulation uses) applies the level policy; the others
        take its quantizer (a broadcast), so every rank quantizes with the same levels."""
        if self.rank == 0:
            super().update_levels(policy, t, T)
        wait(self.comm.Ibarrier(), self.timeout, "the level re-optimization")  # all present: bcast cannot hang
        self.quant = self.comm.bcast(self.quant, root=0)


def _digest(*parts) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\x00")
    return h.digest()[:16]


def _problem_values(problem: Problem):
    """What identifies a problem: its class, dimension and data fields (arrays as float32, so hosts
    whose BLAS round the last bits differently still agree), else its start point."""
    yield type(problem).__qualname__
    yield problem.d
    if dataclasses.is_dataclass(problem):
        for f in dataclasses.fields(problem):
            v = getattr(problem, f.name)
            if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.number):
                yield f.name
                yield np.ascontiguousarray(v, np.float32).tobytes()
            elif isinstance(v, (int, float, str, bool, type(None))):
                yield f"{f.name}={v!r}"
    yield np.ascontiguousarray(problem.x0(), np.float32).tobytes()


def run_fingerprint(problem: Problem, cfg: SolverConfig) -> tuple[bytes, bytes]:
    """16-byte digests of a run's configuration (its JSON) and of its problem (class, dimension, data):
    the ranks of one job compare them before the first step, so a rank started with another run
    file (another noise level or seed, another problem) stops the job instead of a wrong answer."""
    conf = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return _digest(conf), _digest(*_problem_values(problem))


def _check_same_run(problem: Problem, cfg: SolverConfig, comm, timeout: float) -> None:
    """Every rank's :func:`run_fingerprint` against rank 0's (one all-gather); a mismatch is the same
    :class:`~qodasim.solvers.SolverError` on every rank, naming the ranks and what differs."""
    conf, prob = run_fingerprint(problem, cfg)
    mine = np.frombuffer(conf + prob, np.uint8)
    every = np.empty((comm.size, mine.size), np.uint8)
    wait(comm.Iallgather(mine, every), timeout, "the check that every rank runs the same run")
    for what, cols in (("configuration", slice(0, 16)), ("problem", slice(16, 32))):
        bad = [r for r in range(comm.size) if not np.array_equal(every[r, cols], every[0, cols])]
        if bad:
            raise SolverError(f"rank(s) {bad} were started with another {what} than rank 0: every rank must run "
                              f"the same run (same file, noise, seed and problem)")  # fmt: skip


def solve_mpi(problem: Problem, config: SolverConfig | None = None, comm=None, timeout: float = DEFAULT_TIMEOUT,
              crc: bool = False, **overrides) -> MPIResult:  # fmt: skip
    """Run the configured method with this process as worker ``comm.rank`` of ``comm.size`` (= ``K``).

    Every rank must call it with the same problem and config; every rank returns the same
    :class:`MPIResult` (iterates, measures, ledger), which equals :func:`~qodasim.solvers.solve`'s
    result for that config bit for bit, plus the bytes it received.

    Parameters
    ----------
    problem : Problem
    config : SolverConfig
        ``K`` must equal the communicator's size; ``engine`` ``"numba"`` or ``"numpy"``; compressed
        runs count bits from the streams they send (``bits = "stream"``).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    timeout : float
        Seconds to wait for any collective before the job is declared broken (printed on every rank
        that waits, then ``MPI.Abort``).
    crc : bool
        Send every stream with a CRC-32 (32 more header bits, counted in the ledger) and refuse any
        stream without a valid one (a flipped bit on the wire is a :class:`~qodasim.solvers.SolverError`,
        not a wrong iterate).

    Raises
    ------
    SolverError
        Bad config (on every rank, before any communication), ranks started with different runs
        (:func:`run_fingerprint`, compared before the first step), or a stream that does not decode.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    cfg = _checked_config(problem, config, overrides)
    if cfg.K != comm.size:
        raise SolverError(f"K = {cfg.K} but the communicator has {comm.size} ranks (launch with mpiexec -n {cfg.K})")
    if cfg.engine == "cuda":
        raise SolverError("engine 'cuda' is not supported by the MPI backend (use 'numba' or 'numpy')")
    if cfg.compression != "none" and cfg.bits != "stream":
        raise SolverError("the MPI backend sends real streams: bits must be 'stream' for compressed runs")
    if not (np.isfinite(timeout) and timeout > 0):
        raise SolverError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(crc, (bool, np.bool_)):
        raise SolverError(f"crc must be True or False, got {crc!r}")
    holder: list[_MPIOracle] = []

    def make(limit, keep):
        holder.append(_MPIOracle(problem, cfg, comm, timeout, limit, keep, bool(crc)))
        return holder[0]

    try:
        _check_same_run(problem, cfg, comm, timeout)
        res = _run_template(problem, cfg, make)
    except CollectiveTimeout as exc:
        abort(comm, str(exc))
        raise  # pragma: no cover - Abort does not return
    out = MPIResult(**vars(res))
    out.wire_bytes, out.rank, out.size = holder[0].wire_bytes, comm.rank, comm.size
    return out


def abort(comm, message: str, code: int = 3, grace: float = 1.0) -> None:
    """Print ``qodasim[rank k/K]: message`` to stderr, give the other ranks ``grace`` seconds to print
    theirs, then end the whole job with ``MPI.Abort``; where ``MPI.Abort`` returns (some MPICH builds),
    the process exits at once with ``code``, so nothing else is printed after the message."""
    print(f"qodasim[rank {comm.rank}/{comm.size}]: {message}; aborting the job", file=sys.stderr, flush=True)
    time.sleep(grace)
    comm.Abort(code)
    sys.stdout.flush()
    os._exit(code)
