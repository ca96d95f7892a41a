"""One solver template for monotone VIs: DA, Q-GenX, QODA and baselines, with K simulated workers
(THEORY §6).

With ``V̂ = (1/K) Σ_k Q(V_k)`` at a point:

1. ``X_{t+1/2} = X_t − γ_t V̂_t`` where ``V̂_t`` is ``0`` (dual averaging, ``"da"``), the quantized
   oracle at ``X_t`` (dual extrapolation, ``"qgenx"`` — two communications per iteration), or the
   previous half-step's ``V̂_{t−1/2}`` (optimistic dual averaging, ``"qoda"`` — one communication);
2. ``Y_{t+1} = Y_t − V̂_{t+1/2}`` (oracle at ``X_{t+1/2}``);
3. ``X_{t+1} = Π(X_1 + η_{t+1} Y_{t+1})`` (``Π`` the projection onto the feasible set; identity when
   unconstrained).

Steps come from a step rule (:class:`AdaptiveStep`, :class:`ConstantStep`): adaptive (Q-GenX / "Sifting through the
noise"), ``η_t = c·(1 + Σ_{s<t} ‖δ_s‖²)^{−p_η}``, ``γ_t = c·(…)^{−p_γ}`` where ``δ_s`` is the
difference between the two vectors iteration ``s`` used — ``V̂_{s+1/2} − V̂_s`` for dual
extrapolation (Q-GenX, extra-gradient), ``V̂_{s+1/2} − V̂_{s−1/2}`` for optimistic methods (QODA,
Popov), ``V̂_{s+1/2}`` for dual averaging and GDA (THEORY §6) — or constant.  In every template
``δ_s = V̂_{s+1/2} − lead_s`` with the method's leading vector (:data:`TEMPLATES`).  Output: the ergodic
average of the ``X_{t+1/2}``.

Baselines (Euclidean, same steps): extra-gradient ``"eg"`` (two communications), Popov / optimistic
gradient ``"popov"`` (one), and ``"gda"`` (one); each runs uncompressed or quantized.

Workers are simulated in one process: the oracle is evaluated once per point on a batch of ``R``
replicas, the ``K`` workers' noise is one ``(R, K, d)`` draw, and each worker's vector is quantized
by the compiled kernels and encoded into a real bit stream (channel state per worker), so every bit
in the ledger comes from a stream that decodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..coding import BitLedger, Encoder, expected_bits, expected_bits_of_intervals
from ..errors import SolverError
from ..levels import Levels
from ..quantize import LayerwiseQuantizer, NormRangeError, Quantizer, dequantize_batch, dequantize_sum
from ..quantize.device import DeviceWorkspace, worker_sums
from ..rng import MASK64, Key, mix64
from ..validate import MAX_SEED, check_int, check_real
from ..vi.measures import distance_to_solution, operator_norm
from ..vi.noise import NoiseModel
from ..vi.problems import Problem
from .policies import FindTypes, LGreCo, Reoptimize, policy_from, policy_to_dict
from .sra import sra_aggregate
from .steps import StepRule, step_rule, step_to_dict

__all__ = ["SolverConfig", "SolverResult", "SolverError", "solve", "METHODS", "ONE_MESSAGE", "TWO_MESSAGES",
           "Template", "TEMPLATES"]  # fmt: skip


@dataclass(frozen=True)
class Template:
    """What a method contributes to the template (THEORY §6).

    Attributes
    ----------
    lead : {"zero", "oracle", "previous"}
        The vector of the half step ``X_{t+1/2} = X_t − γ_t·lead``: none, a fresh (quantized) oracle
        call at ``X_t`` (a second message per iteration), or the previous half-step's vector.  The
        step rule's difference is ``δ_t = V̂_{t+1/2} − lead``.
    dual : bool
        Dual averaging (``Y ← Y − V̂_{t+1/2}``, ``X_{t+1} = Π(X_1 + η_{t+1} Y)``) or a Euclidean step
        (``X_{t+1} = Π(X_t − η_t V̂_{t+1/2})``).
    """

    lead: str
    dual: bool

    @property
    def messages(self) -> int:
        """Messages per worker per iteration."""
        return 2 if self.lead == "oracle" else 1


#: Method name → :class:`Template` (leading vector and dual step) of the one-template solver (THEORY §6).
TEMPLATES = {
    "da": Template("zero", True),
    "qgenx": Template("oracle", True),
    "qoda": Template("previous", True),
    "eg": Template("oracle", False),
    "popov": Template("previous", False),
    "gda": Template("zero", False),
}
#: Every solver method name.
METHODS = tuple(TEMPLATES)
#: Methods that communicate twice per iteration (Q-GenX / extra-gradient family).
TWO_MESSAGES = tuple(m for m, t in TEMPLATES.items() if t.messages == 2)
#: Methods that communicate once per iteration (QODA / optimistic family, DA, GDA).
ONE_MESSAGE = tuple(m for m, t in TEMPLATES.items() if t.messages == 1)


class _Diverged(Exception):
    """Raised inside a run when it cannot go on because numbers overflowed (caught by :func:`solve`)."""


#: ``SolverConfig.levels``' default (a run without compression ignores it; any other value there is an error).
DEFAULT_LEVELS = "uniform:7"


def _check_levels(levels, compression: str) -> None:
    """``levels``: a level spec or a non-empty sequence of them, each parseable; one spec for global
    compression; given only with compression."""
    specs = (levels,) if isinstance(levels, str) else levels
    if not isinstance(specs, (tuple, list)) or not specs or not all(isinstance(x, str) for x in specs):
        raise SolverError(f"levels must be a level spec such as 'uniform:7' or a list of them, got {levels!r}")
    for spec in specs:
        try:
            Levels.parse(spec)
        except ValueError as exc:
            raise SolverError(f"levels: {exc}") from None
    if compression == "none" and levels != DEFAULT_LEVELS:
        raise SolverError(f"levels {levels!r} given but compression is 'none' (set compression to 'global' or "
                          f"'layerwise')")  # fmt: skip
    if compression == "global" and len(specs) > 1:
        raise SolverError(f"compression 'global' uses one level spec, got {len(specs)}: {list(specs)}")


@dataclass(frozen=True)
class SolverConfig:
    """Configuration of one solver run (all fields plain data; saved with every result).

    Parameters
    ----------
    method : {"da", "qgenx", "qoda", "eg", "popov", "gda"}
    K : int
        Number of workers.
    T : int
        Iterations.
    step : "adaptive", float, step rule or dict
        The step rule (:class:`AdaptiveStep`, :class:`ConstantStep`): ``"adaptive"`` (``AdaptiveStep()``), a constant
        ``γ = η``, an :class:`~qodasim.solvers.steps.AdaptiveStep` / ``ConstantStep``, or its dict form
        ``{"rule": "adaptive", "c": 1.0, "p_eta": 0.5, "p_gamma": 0.4, "per_worker": False}``.
    compression : {"none", "global", "layerwise"}
    levels : str or tuple of str
        Level spec (``"uniform:7"``); for ``"layerwise"`` one spec per layer type.
    scope : {"layer", "global"}
        Normalization scope of the layer-wise quantizer.
    q : float
        Norm order of the quantizers.
    protocol, code : str
        Message protocol and Elias code.
    bits : {"stream", "expected", "none"}
        Count bits from real encoded streams, from the exact expected length, or not at all.
    noise : NoiseModel
    engine : {"numba", "numpy", "cuda"}
        Quantization engine of the workers (``"cuda"`` needs a GPU or the CUDA simulator).
    seed : int
    replicas : int
        Independent runs in one batch (the leading replica axis).
    reoptimize_every : int
        Re-optimize the levels every this many iterations (0: never), from worker 0's latest
        oracle output, with ``reoptimize_method`` and the current number of interior levels
        (shorthand for ``policy=Reoptimize(reoptimize_every, reoptimize_method)``).
    policy : level policy, dict or None
        How the quantizer changes during the run (``qodasim.solvers.policies``):
        :class:`~qodasim.solvers.Reoptimize`, :class:`~qodasim.solvers.LGreCo`
        (per-layer level counts by the L-GreCo DP), :class:`~qodasim.solvers.DQSchedule`
        (levels across time, DQ-SGD), :class:`~qodasim.solvers.FindTypes`, or the dict form
        ``{"policy": "lgreco", "every": 100, ...}``.
    record : int
        Number of (log-spaced) iterations at which measures are recorded.
    gap_radius : float, optional
        Radius of the ball ``C`` of the restricted gap, centred at ``X_1`` (default
        ``‖X_1 − x*‖ + 1`` so that ``C`` holds a solution).
    divergence_threshold : float
        A run whose iterate norm exceeds this (times ``1 + ‖X_1‖``) stops as diverged (``> 0``;
        ``inf`` disables the threshold, and a run then stops as diverged only on overflow).
    bucket_size : int, optional
        A norm per bucket of this many consecutive coordinates (of the vector for ``"global"``, of each
        layer for ``"layerwise"`` with ``scope="layer"``): bucketed QSGD, the baseline of practice.
    collective : {"allgather", "sra"}
        How the workers' compressed messages meet: every worker receives every message and averages
        (``"allgather"``), or compressed scatter-reduce-allgather (``"sra"``, :mod:`qodasim.solvers.sra`:
        chunk messages, the owners' averages re-quantized; host engines, ``bits`` ``"stream"`` or
        ``"none"``; the ledger records per worker and round its ``K − 1`` chunks and its re-quantized
        chunk as one row; the MPI backend runs it over a non-blocking all-to-all and all-gather, bit for
        bit).
    """

    method: str = "qoda"
    K: int = 1
    T: int = 1000
    step: str | float | StepRule | dict = "adaptive"
    compression: str = "none"
    levels: str | tuple = "uniform:7"
    scope: str = "layer"
    q: float = 2.0
    protocol: str = "dense"
    code: str = "gamma"
    bits: str = "stream"
    noise: NoiseModel = field(default_factory=NoiseModel)
    seed: int = 0
    replicas: int = 1
    reoptimize_every: int = 0
    reoptimize_method: str = "histogram"
    policy: object = None
    engine: str = "numba"
    record: int = 40
    gap_radius: float | None = None
    divergence_threshold: float = 1e8
    bucket_size: int | None = None
    collective: str = "allgather"

    def __post_init__(self) -> None:
        rule = self._check_method_and_step()
        self._check_compression()
        self._check_policy()
        self._check_collective(rule)
        self._check_numbers()

    def _check_method_and_step(self):
        """The method, the counts and the step rule (returned)."""
        if self.method not in METHODS:
            raise SolverError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("K", "T", "replicas", "record"):
            val = getattr(self, name)
            check_int(val, name, 1, error=SolverError)
        try:
            rule = step_rule(self.step)
        except ValueError as exc:
            raise SolverError(str(exc)) from None
        if getattr(rule, "per_worker", False) and self.engine == "cuda":
            raise SolverError("step: per-worker differences need the workers' vectors on the host (engine numba/numpy)")
        return rule

    def _check_compression(self) -> None:
        """Compression, bit accounting, levels and the noise model."""
        if self.compression not in ("none", "global", "layerwise"):
            raise SolverError(f"compression must be 'none', 'global' or 'layerwise', got {self.compression!r}")
        if self.bits not in ("stream", "expected", "none"):
            raise SolverError(f"bits must be 'stream', 'expected' or 'none', got {self.bits!r}")
        _check_levels(self.levels, self.compression)
        if not isinstance(self.noise, NoiseModel):
            raise SolverError("noise must be a qodasim.vi.NoiseModel")

    def _check_policy(self) -> None:
        """The level policy (or ``reoptimize_every``) and the buckets it allows."""
        if self.reoptimize_every < 0:
            raise SolverError("reoptimize_every must be >= 0")
        try:
            pol = policy_from(self.policy)
        except ValueError as exc:
            raise SolverError(str(exc)) from None
        if pol is not None and self.reoptimize_every:
            raise SolverError("give either reoptimize_every or policy, not both")
        per_layer = isinstance(pol, (LGreCo, FindTypes))
        if per_layer and self.compression != "layerwise":
            raise SolverError(f"policy {policy_to_dict(pol)['policy']} needs compression 'layerwise'")
        if isinstance(pol, LGreCo) and self.scope != "layer":
            raise SolverError("policy lgreco needs scope 'layer' (one norm per layer)")
        if self.bucket_size is None:
            return
        b = self.bucket_size
        check_int(b, "bucket_size", 1, what="an integer >= 1 or None", error=SolverError)
        if self.compression == "layerwise" and self.scope != "layer":
            raise SolverError("bucket_size needs scope 'layer' (buckets have their own norms)")
        if per_layer:
            raise SolverError(f"policy {policy_to_dict(pol)['policy']} picks per-layer levels with a norm per "
                              "layer: leave bucket_size unset")  # fmt: skip

    def _check_numbers(self) -> None:
        """The divergence threshold, the engine, the seed and the gap radius."""
        try:
            thr = float(self.divergence_threshold)
        except (TypeError, ValueError):
            thr = float("nan")
        if not thr > 0:  # also rejects NaN
            raise SolverError(
                f"divergence_threshold must be a positive number (or inf), got {self.divergence_threshold!r}"
            )
        if self.engine not in ("numba", "numpy", "cuda"):
            raise SolverError(f"engine must be 'numba', 'numpy' or 'cuda', got {self.engine!r}")
        s = self.seed
        check_int(s, "seed", 0, MAX_SEED, what="an integer in [0, 2^64) (as a Key's)", error=SolverError)
        if self.gap_radius is not None:
            check_real(self.gap_radius, "gap_radius", 0.0, lo_open=True, what="a finite number > 0 (or None)",
                       error=SolverError)  # fmt: skip

    def _check_collective(self, rule) -> None:
        if self.collective not in ("allgather", "sra"):
            raise SolverError(f"collective must be 'allgather' or 'sra', got {self.collective!r}")
        if self.collective == "allgather":
            return
        if self.compression == "none":
            raise SolverError("collective 'sra' needs compression (uncompressed runs all-reduce)")
        if self.engine == "cuda":
            raise SolverError("collective 'sra' runs on the host engines (numba, numpy)")
        if self.bits == "expected":
            raise SolverError("collective 'sra' counts bits from its chunk streams: bits must be 'stream' or 'none'")
        if self.compression == "layerwise" and self.scope != "layer":
            raise SolverError("collective 'sra' needs scope 'layer': a chunk cannot be decoded without the "
                              "whole vector's norm")  # fmt: skip
        if getattr(rule, "per_worker", False):
            raise SolverError("collective 'sra': per-worker step differences need each worker's own vector, "
                              "which SRA does not deliver")  # fmt: skip

    @property
    def level_policy(self):
        """The level policy object (``None``: fixed levels)."""
        if self.reoptimize_every:
            return Reoptimize(int(self.reoptimize_every), self.reoptimize_method)
        return policy_from(self.policy)

    @property
    def step_rule(self) -> StepRule:
        """The step rule object of ``step``."""
        return step_rule(self.step)

    def to_dict(self) -> dict:
        """A JSON-able mapping of the configuration (noise model and step rule expanded)."""
        out = asdict(replace(self, step="adaptive", policy=None))
        out["noise"] = asdict(self.noise)
        out["policy"] = policy_to_dict(policy_from(self.policy))
        out["step"] = step_to_dict(self.step_rule)
        return out


def _same(a, b) -> bool:
    """Value equality of result fields: arrays (shape, dtype and elements, NaN equal to NaN), dicts,
    lists, ledgers (their tables), anything else by ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        nan = np.issubdtype(a.dtype, np.inexact) and np.issubdtype(b.dtype, np.inexact)
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=nan))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, BitLedger) and isinstance(b, BitLedger):
        return _same(a.table(), b.table())
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # objects holding arrays compare by identity
        return a is b


@dataclass(eq=False)
class SolverResult:
    """Everything a run records; saves to ``.npz`` + ``.json`` and loads back for re-plotting."""

    config: dict
    problem: str
    iterations: np.ndarray
    measures: dict  # name → (R, n_records) array: gap_avg, gap_last, opnorm_avg, ..., dist_last
    bits_per_iteration: np.ndarray  # (R, T): bits sent by all workers in each iteration
    messages_per_worker: np.ndarray  # (K,): messages sent by each worker (per replica)
    status: str = "ok"
    message: str = ""
    wall_time: float = 0.0
    ledger: BitLedger | None = None
    x_avg: np.ndarray | None = None
    x_last: np.ndarray | None = None
    quantizer: object = None  # the workers' quantizer at the end (a level policy may have changed it)

    def __eq__(self, other) -> bool:
        """Equal when every field is (arrays element by element, NaN equal to NaN; ledgers row by row),
        except ``wall_time``: a measurement of the machine, not of the run."""
        if not isinstance(other, SolverResult):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self) if f.name != "wall_time")

    __hash__ = None  # mutable, compared by value

    @property
    def diverged(self) -> bool:
        """True when the run stopped because an iterate exceeded the divergence threshold."""
        return self.status == "diverged"

    def cumulative_bits(self) -> np.ndarray:
        """Cumulative bits at each recorded iteration, ``(R, n_records)``."""
        cum = np.cumsum(self.bits_per_iteration, axis=1)
        return cum[:, self.iterations - 1]

    def save(self, path) -> Path:
        """Write the arrays to ``path.npz`` and the rest to ``path.json``; returns the JSON path."""
        path = Path(path)
        arrays = {f"m_{k}": v for k, v in self.measures.items()}
        np.savez_compressed(path.with_suffix(".npz"), iterations=self.iterations,
                            bits_per_iteration=self.bits_per_iteration,
                            messages_per_worker=self.messages_per_worker, **arrays)  # fmt: skip
        meta = {"config": self.config, "problem": self.problem, "status": self.status, "message": self.message,
                "wall_time": self.wall_time, "ledger": self.ledger.to_dict() if self.ledger else None}  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(meta, default=float))
        return path.with_suffix(".json")

    @classmethod
    def load(cls, path) -> SolverResult:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        with np.load(path.with_suffix(".npz")) as z:
            measures = {k[2:]: z[k] for k in z.files if k.startswith("m_")}
            res = cls(meta["config"], meta["problem"], z["iterations"], measures, z["bits_per_iteration"],
                      z["messages_per_worker"], meta["status"], meta["message"], meta["wall_time"])  # fmt: skip
        if meta.get("ledger"):
            res.ledger = BitLedger.from_dict(meta["ledger"])
        return res


def record_points(T: int, n: int) -> np.ndarray:
    """``n`` log-spaced iterations in ``[1, T]`` (always including ``T``; at most ``T`` of them)."""
    pts = np.unique(np.round(np.geomspace(1, T, min(n, T))).astype(np.int64))
    return np.unique(np.concatenate([pts, [T]]))


def _make_quantizer(problem: Problem, cfg: SolverConfig, levels=None):
    if cfg.compression == "none":
        return None
    if cfg.compression == "global":
        lv = (
            levels if levels is not None else Levels.parse(cfg.levels if isinstance(cfg.levels, str) else cfg.levels[0])
        )
        return Quantizer(lv, q=cfg.q, bucket_size=cfg.bucket_size, engine=cfg.engine)
    layout = problem.layout
    if levels is None:
        specs = (cfg.levels,) * layout.n_types if isinstance(cfg.levels, str) else tuple(cfg.levels)
        if len(specs) != layout.n_types:
            raise SolverError(f"levels: {len(specs)} specs for a layout with {layout.n_types} types")
        levels = tuple(Levels.parse(s) for s in specs)
    return LayerwiseQuantizer(layout, levels, scope=cfg.scope, q=cfg.q, bucket_size=cfg.bucket_size, engine=cfg.engine)


def _replica_seed(seed: int, r: int) -> int:
    return mix64((int(seed) * 0x9E3779B97F4A7C15 + r) & MASK64)


def _sum_messages(qvs, R: int, K: int, d: int, engine: str, keep: bool):
    """``(S, W)``: the sums ``S[r] = Σ_k Q(v_{r,k})`` in worker order, shape ``(R, d)``, and the dequantized
    workers ``W`` (``(R, K, d)``) when ``keep``, else ``None`` — then the sum takes one pass without
    them (:func:`~qodasim.quantize.dequantize_sum`, bit for bit the same sums)."""
    if not keep:
        return dequantize_sum(qvs, K, engine=engine), None
    workers = dequantize_batch(qvs, engine=engine).reshape(R, K, d)
    return worker_sums(workers), workers


class _NoBits:
    """``bits = "none"``: nothing is counted."""

    counts = streams = intervals = False

    def count(self, oracle: _Oracle, V: np.ndarray, t: int, rnd: int) -> None:
        return None


class _StreamBits(_NoBits):
    """``bits = "stream"``: every worker's quantized vector encoded on its own channel; bits read from
    the streams."""

    counts = streams = True

    def count(self, oracle: _Oracle, V: np.ndarray, t: int, rnd: int) -> None:
        R, K = oracle.cfg.replicas, oracle.cfg.K
        for r in range(R):
            for k in range(K):
                msg = oracle.encoders[r][k].encode(oracle._qvs[r * K + k])
                oracle.bits[r, t - 1] += msg.nbits
                if r == 0:
                    oracle.ledger.record(k, rnd, msg)


class _ExpectedBits(_NoBits):
    """``bits = "expected"``: each worker's message in exact expectation (header and tables as its
    channel sends them, norms and payload expected)."""

    counts = intervals = True

    def count(self, oracle: _Oracle, V: np.ndarray, t: int, rnd: int) -> None:
        cfg, quant, (R, K, d) = oracle.cfg, oracle.quant, V.shape
        plan = quant.plan(d)
        vdtype = np.float64 if V.dtype == np.float64 else np.float32
        for r in range(R):
            for k in range(K):
                if oracle._intervals is not None:  # (j, ρ) of all workers from one device pass
                    J, RHO = oracle._intervals
                    e = expected_bits_of_intervals(J[r * K + k], RHO[r * K + k], plan, quant.type_levels, vdtype,
                                                   cfg.protocol, cfg.code)  # fmt: skip
                else:
                    e = expected_bits(V[r, k], quant, cfg.protocol, cfg.code)
                parts = oracle.encoders[r][k].account(plan.spec, quant.type_levels, V.dtype)
                parts.update(norms=e["norms"], payload=e["payload"])
                oracle.bits[r, t - 1] += sum(parts.values())
                if r == 0:
                    oracle.ledger.record(k, rnd, parts)


#: The bit accounting of each ``SolverConfig.bits``, chosen once per run.
_BIT_COUNTERS = {"none": _NoBits, "stream": _StreamBits, "expected": _ExpectedBits}


class _Oracle:
    """``K`` workers' (quantized, encoded) oracle outputs, averaged; counts bits per iteration."""

    def __init__(self, problem: Problem, cfg: SolverConfig, limit: float = np.inf, keep_workers: bool = False):
        self.p, self.cfg, self.limit, self.keep_workers = problem, cfg, limit, keep_workers
        self.quant = _make_quantizer(problem, cfg)
        self.start = self.quant
        R, K = cfg.replicas, cfg.K
        self.encoders = [[Encoder(cfg.protocol, cfg.code) for _ in range(K)] for _ in range(R)]
        self.ledger = BitLedger()
        self.counter = _BIT_COUNTERS[cfg.bits]()
        self.bits = np.zeros((R, cfg.T))
        self.seeds = [_replica_seed(cfg.seed, r) for r in range(R)]
        self.last_raw = None
        self.calls = 0
        self.messages = np.zeros(K, np.int64)
        self.device: DeviceWorkspace | None = None
        self._sra_encoders: list | None = None  # [replica][sender][receiver or K: the re-quantized chunk]

    def __call__(self, X: np.ndarray, t: int, rnd: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(V̂, W)``: the workers' average ``(R, d)`` and, with ``keep_workers``, each worker's own
        (quantized) vector ``(R, K, d)`` (else ``None``): the noisy oracle → quantization (on the host
        or the device) → the bits counted (streams, exact expectations, or none)."""
        V = self._sample(X, t, rnd)
        K = V.shape[1]
        if self.quant is None:
            return self._uncompressed(V, t, rnd)
        if self.cfg.collective == "sra":
            return self._sra(V, t, rnd), None
        if self.quant.engine == "cuda":
            out, workers = self._quantize_device(V, t, rnd)
        else:
            out, workers = self._quantize_host(V, t, rnd)
        self.counter.count(self, V, t, rnd)
        return out / K, (workers if self.keep_workers else None)

    def _sample(self, X: np.ndarray, t: int, rnd: int) -> np.ndarray:
        """The ``K`` workers' oracle outputs at ``X`` ``(R, K, d)``, checked finite."""
        cfg = self.cfg
        with np.errstate(over="ignore", invalid="ignore"):
            V = cfg.noise.sample_at(self.p, X, cfg.K, cfg.seed, rnd)
        if not np.all(np.isfinite(V)):
            self._nonfinite(X, t, rnd)
        self.last_raw = V[0, 0]
        self.calls += 1
        self.messages += 1
        return V

    def _uncompressed(self, V: np.ndarray, t: int, rnd: int):
        """The plain mean; 32 bits per coordinate and worker in the ledger (a float32 system's)."""
        R, K, d = V.shape
        if self.counter.counts:
            self.bits[:, t - 1] += 32.0 * d * K
            self.ledger.record_all(K, rnd, {"payload": 32.0 * d})
        return V.mean(axis=1), (V if self.keep_workers else None)

    def _keys(self, R: int, K: int, rnd: int) -> list:
        return [Key._trusted(self.seeds[r], k, rnd) for r in range(R) for k in range(K)]

    def _quantize_host(self, V: np.ndarray, t: int, rnd: int):
        """Quantize every worker's vector on the host: the sum over workers and the workers' vectors;
        the quantized vectors kept for the count (``self._qvs``)."""
        R, K, d = V.shape
        try:
            qvs = self.quant.quantize_batch(V.reshape(R * K, d), self._keys(R, K, rnd))
        except NormRangeError as exc:
            raise _Diverged(f"an oracle output at iteration {t} cannot be sent: {exc}") from None
        self._qvs, self._intervals = qvs, None
        return _sum_messages(qvs, R, K, d, self.quant.engine, self.keep_workers)

    def _quantize_device(self, V: np.ndarray, t: int, rnd: int):
        """Quantize on the device (:class:`DeviceWorkspace`: the workers' vectors stay there); only what
        the count needs comes back (streams' quantized vectors, or the intervals of the expected bits)."""
        R, K, d = V.shape
        if self.device is None or self.device.dtype != V.dtype:
            self.device = DeviceWorkspace(self.quant, d, K, R, dtype=V.dtype)
        try:
            self.device.quantize(V.reshape(R * K, d), self._keys(R, K, rnd))
        except NormRangeError as exc:
            raise _Diverged(f"an oracle output at iteration {t} cannot be sent: {exc}") from None
        self._qvs = self.device.quantized() if self.counter.streams else None
        self._intervals = self.device.intervals() if self.counter.intervals else None
        return self.device.worker_sums(), None

    def _sra(self, V: np.ndarray, t: int, rnd: int) -> np.ndarray:
        """Each replica's SRA aggregate (:func:`~qodasim.solvers.sra.sra_aggregate`, the replica's
        seed); with ``bits = "stream"`` every chunk message is encoded by its own channel's encoder
        (sender, receiver) and the re-quantized one by the owner's, and each worker's round is one
        ledger row (its ``K − 1`` chunks + its re-quantized chunk)."""
        R, K, d = V.shape
        out = np.empty((R, d))
        if self._sra_encoders is None:
            self._sra_encoders = [[[Encoder(self.cfg.protocol, self.cfg.code) for _ in range(K + 1)] for _ in range(K)]
                                  for _ in range(R)]  # fmt: skip
        for r in range(R):
            try:
                res = sra_aggregate(V[r], self.quant, self.seeds[r], rnd)
            except NormRangeError as exc:
                raise _Diverged(f"an oracle output at iteration {t} cannot be sent: {exc}") from None
            out[r] = res.aggregate
            if not self.counter.counts:
                continue
            for k in range(K):
                enc = self._sra_encoders[r][k]
                msgs = [enc[j].encode(res.stage1[k][j]) for j in range(K) if j != k] + [enc[K].encode(res.stage2[k])]
                parts = {c: float(sum(m.bits.get(c, 0) for m in msgs)) for c in msgs[0].bits}
                self.bits[r, t - 1] += sum(m.nbits for m in msgs)
                if r == 0:
                    self.ledger.record(k, rnd, parts)
        return out

    def _nonfinite(self, X: np.ndarray, t: int, rnd: int, worker: int | None = None):
        """Raise for a non-finite oracle output: a :class:`SolverError` at a finite point within the
        divergence threshold (a broken oracle), else :class:`_Diverged` (the run overflowed)."""
        if np.all(np.isfinite(X)) and np.max(np.abs(X)) <= self.limit:
            who = "the oracle" if worker is None else f"the oracle of worker {worker}"
            raise SolverError(f"{who} returned non-finite values at iteration {t} (round {rnd})")
        raise _Diverged(f"the oracle overflowed at iteration {t} (the iterate left the divergence threshold)")

    def update_levels(self, policy, t: int, T: int) -> None:
        """Apply the level ``policy`` after iteration ``t`` at worker 0's latest oracle output."""
        if self.quant is None or self.last_raw is None:
            return
        new = policy.update(self.quant, self.last_raw, t, T, self.start)
        if new is not None:
            self.quant = new
            if self.device is not None:
                self.device.set_quantizer(self.quant)


def _measure_fns(problem: Problem, cfg: SolverConfig, X1: np.ndarray):
    own = problem.measures(X1)
    if own is not None:
        return dict(own)
    sol = problem.solution
    radius = cfg.gap_radius or (float(np.linalg.norm(X1 - sol)) + 1.0 if sol is not None else 1.0)
    return {
        "gap": problem.gap_measure(X1, radius),
        "opnorm": lambda X: operator_norm(problem, X),
        "dist": lambda X: distance_to_solution(problem, X),
    }


def solve(problem: Problem, config: SolverConfig | None = None, *, progress=None, **overrides) -> SolverResult:
    """Run the configured method on ``problem`` and return a :class:`SolverResult`.

    ``progress``, if given, is called as ``progress(t)`` after each iteration ``t`` (e.g. a progress
    bar's ``update``-like callback; the CLI's ``qodasim solve`` shows one).

    Raises :class:`SolverError` for bad configurations or non-finite oracle output at a finite point
    within the divergence threshold.  A run whose numbers blow up — an iterate beyond the threshold or
    non-finite, an oracle output whose norm cannot be sent as float32, an overflowing step
    accumulator — stops early with ``status = "diverged"`` and a message saying which (measures after
    that iteration are not recorded, never reported as NaN values; ``x_avg`` averages the iterations
    completed).

    Examples
    --------
    QODA with four workers on a bilinear game, each worker's vector quantized with 4 uniform levels:

    >>> from qodasim.solvers import SolverConfig, solve
    >>> from qodasim.vi import NoiseModel, bilinear_game
    >>> cfg = SolverConfig(method="qoda", T=200, K=4, compression="global", levels="uniform:4",
    ...                    noise=NoiseModel("absolute", 0.1), seed=0)
    >>> res = solve(bilinear_game(8, seed=0), cfg)
    >>> res.status, res.ledger.messages()  # one message per worker and iteration
    ('ok', 800)
    """
    cfg = _checked_config(problem, config, overrides)
    if progress is not None and not callable(progress):
        raise SolverError(f"progress must be callable, got {type(progress).__name__}")
    return _run_template(problem, cfg, lambda limit, keep: _Oracle(problem, cfg, limit, keep_workers=keep), progress)


def _checked_config(problem, config, overrides) -> SolverConfig:
    if not isinstance(problem, Problem):
        raise SolverError(f"problem must be a qodasim.vi.Problem, got {type(problem).__name__}")
    if config is not None and not isinstance(config, SolverConfig):
        raise SolverError(f"config must be a SolverConfig, got {type(config).__name__}")
    return replace(config or SolverConfig(), **overrides) if overrides else (config or SolverConfig())


#: Bytes one ledger row takes in memory (a tuple of two ints and four floats, and its list slot).
LEDGER_ROW_BYTES = 200
#: Bytes each worker's encoder and decoder state takes at least (objects, tables).
CHANNEL_BYTES = 1000


def memory_estimate(d: int, cfg: SolverConfig) -> dict:
    """A lower estimate of the bytes a run of ``cfg`` on a ``d``-coordinate problem holds at once:
    ``{"ledger", "channels", "arrays", "total"}`` — the bit ledger (a row per worker and message:
    ``K · T · messages`` rows), the ``R · K`` workers' channels, and the float64 arrays (the ``(R, K, d)``
    worker draws, a few ``(R, d)`` iterates, the ``(R, T)`` bits per iteration)."""
    R, K, T = cfg.replicas, cfg.K, cfg.T
    msgs = TEMPLATES[cfg.method].messages
    ledger = K * T * msgs * LEDGER_ROW_BYTES
    channels = R * K * CHANNEL_BYTES
    arrays = 8 * (3 * R * K * d + 8 * R * d + R * T)
    return {"ledger": ledger, "channels": channels, "arrays": arrays, "total": ledger + channels + arrays}


def _check_memory(d: int, cfg: SolverConfig) -> None:
    """Refuse, before allocating anything, a run whose :func:`memory_estimate` exceeds the memory
    available (a one-line :class:`SolverError` naming what drives it), instead of a ``MemoryError``
    after minutes."""
    from .. import _memory

    avail = _memory.available_memory()
    est = memory_estimate(d, cfg)
    if avail is None or est["total"] <= avail:
        return
    part = max(("ledger", "channels", "arrays"), key=est.get)
    why = {"ledger": f"its bit ledger: K·T·messages = {cfg.K}·{cfg.T}·{TEMPLATES[cfg.method].messages} rows",
           "channels": f"the R·K = {cfg.replicas}·{cfg.K} workers' channels",
           "arrays": f"(R, K, d) = ({cfg.replicas}, {cfg.K}, {d}) worker draws and (R, T) bits"}[part]  # fmt: skip
    raise SolverError(f"this run needs at least {est['total'] / 2**30:.3g} GiB, more than the "
                      f"{avail / 2**30:.3g} GiB available (mostly {why}): lower T, K or replicas")  # fmt: skip


@dataclass
class _Iterates:
    """The state the template carries from one iteration to the next (every array ``(R, …)``)."""

    X1b: np.ndarray  # the start point, per replica
    X: np.ndarray
    Y: np.ndarray  # dual averaging's sum of oracle outputs
    Vprev: np.ndarray
    Wprev: np.ndarray | None  # each worker's previous vector (per-worker step rules)
    acc: np.ndarray  # the step rule's accumulator
    xsum: np.ndarray
    n_sum: int = 0


@dataclass
class _Loop:
    """What one iteration needs besides the state: the problem, the method's template, the step rule,
    the oracle and the divergence threshold."""

    problem: Problem
    method: str
    tmpl: object
    rule: object
    oracle: object
    limit: float
    per_worker: bool

    def lead(self, it: _Iterates, t: int, rnd: int):
        """The extrapolation direction: a fresh oracle call, the previous output, or none."""
        if self.tmpl.lead == "oracle":
            return self.oracle(it.X, t, rnd)
        if self.tmpl.lead == "previous":
            return it.Vprev, it.Wprev
        return 0.0, 0.0

    def step(self, it: _Iterates, t: int) -> None:
        """Iteration ``t`` of the template (THEORY §6), in place; raises :class:`_Diverged` when the run
        blows up."""
        p, rule, tmpl = self.problem, self.rule, self.tmpl
        gamma, eta = rule.steps(it.acc)
        rnd_a, rnd_b = (2 * t - 2, 2 * t - 1) if tmpl.messages == 2 else (t - 1, t - 1)
        lead, lead_w = self.lead(it, t, rnd_a)
        Xh = _checked(p.project(it.X - gamma[:, None] * lead), self.limit, t, self.method)
        Vh, Wh = self.oracle(Xh, t, rnd_b)
        it.acc = rule.update(it.acc, Wh - lead_w if self.per_worker else Vh - lead)  # δ_t (THEORY §6)
        if not np.all(np.isfinite(it.acc)):
            raise _Diverged(f"the adaptive step's accumulator overflowed at iteration {t} (operator values "
                            f"too large to square in float64; rescale the problem)")  # fmt: skip
        if tmpl.dual:
            it.Y -= Vh
            it.X = p.project(it.X1b + rule.steps(it.acc)[1][:, None] * it.Y)
        else:
            it.X = p.project(it.X - eta[:, None] * Vh)
        it.Vprev, it.Wprev = Vh, Wh
        _checked(it.X, self.limit, t, self.method)
        it.xsum += Xh
        if not np.isfinite(np.max(np.abs(it.xsum))):
            raise _Diverged(f"the iterate sum overflowed at iteration {t}")
        it.n_sum = t


class _Recorder:
    """The measures at the recorded iterations (of the average and of the last iterate)."""

    def __init__(self, fns: dict, rec: np.ndarray, R: int):
        self.fns, self.rec, self.k = fns, rec, 0
        self.measures = {f"{m}_{w}": np.full((R, rec.size), np.nan) for m in fns for w in ("avg", "last")}

    def after(self, t: int, it: _Iterates) -> None:
        if self.k < self.rec.size and t == self.rec[self.k]:
            xavg = it.xsum / t
            for m, fn in self.fns.items():
                self.measures[f"{m}_avg"][:, self.k] = fn(xavg)
                self.measures[f"{m}_last"][:, self.k] = fn(it.X)
            self.k += 1

    def done(self) -> tuple[np.ndarray, dict]:
        """The iterations recorded so far and their measures (a diverged run stops early)."""
        return self.rec[: self.k], {k: v[:, : self.k] for k, v in self.measures.items()}


def _start(problem: Problem, cfg: SolverConfig, per_worker: bool) -> _Iterates:
    X1 = np.asarray(problem.x0(), np.float64)
    if X1.shape != (problem.d,):
        raise SolverError(f"problem.x0() has shape {X1.shape}, expected ({problem.d},)")
    R = cfg.replicas
    X1b = np.broadcast_to(X1, (R, problem.d)).copy()
    return _Iterates(X1b, X1b.copy(), np.zeros_like(X1b), np.zeros_like(X1b),
                     np.zeros((R, cfg.K, problem.d)) if per_worker else None, cfg.step_rule.init(R),
                     np.zeros_like(X1b))  # fmt: skip


def _run_template(problem: Problem, cfg: SolverConfig, make_oracle, progress=None) -> SolverResult:
    """The template loop of :func:`solve` with the oracle built by ``make_oracle(limit, keep_workers)``
    (the in-process :class:`_Oracle`, or the MPI one of :mod:`qodasim.solvers.mpi`); ``progress(t)``
    after each iteration when given."""
    _check_memory(problem.d, cfg)
    rule, policy = cfg.step_rule, cfg.level_policy
    per_worker = bool(getattr(rule, "per_worker", False))  # a user rule without the field: δ of the mean
    it = _start(problem, cfg, per_worker)
    X1 = it.X1b[0]
    limit = cfg.divergence_threshold * (1.0 + float(np.linalg.norm(X1)))
    oracle = make_oracle(limit, per_worker)
    loop = _Loop(problem, cfg.method, TEMPLATES[cfg.method], rule, oracle, limit, per_worker)
    recorder = _Recorder(_measure_fns(problem, cfg, X1), record_points(cfg.T, cfg.record), cfg.replicas)
    status, message = "ok", ""
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            for t in range(1, cfg.T + 1):
                loop.step(it, t)
                if policy is not None and t % policy.every == 0:
                    oracle.update_levels(policy, t, cfg.T)
                recorder.after(t, it)
                if progress is not None:
                    progress(t)
        except _Diverged as exc:
            status, message = "diverged", f"{cfg.method} diverged: {exc}"
    rec, measures = recorder.done()
    return SolverResult(
        cfg.to_dict(), getattr(problem, "name", type(problem).__name__), rec, measures, oracle.bits,
        oracle.messages.copy(), status, message, time.perf_counter() - t0, oracle.ledger,
        it.xsum / max(it.n_sum, 1), it.X, oracle.quant,
    )  # fmt: skip


def _checked(X: np.ndarray, limit: float, t: int, method: str) -> np.ndarray:
    """``X`` if finite and within the divergence threshold, else raise :class:`_Diverged` (one pass:
    ``max |x|`` is NaN or ∞ exactly when some entry is)."""
    m = float(np.max(np.abs(X)))
    if not np.isfinite(m):
        raise _Diverged(f"a non-finite iterate at iteration {t}")
    if m > limit:
        raise _Diverged(f"iteration {t}: iterate norm above {limit:.3g}")
    return X
