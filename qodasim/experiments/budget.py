"""Equal-budget comparisons (THEORY §7.3, §7.5): quantizers and methods at equal bits, not equal levels.

Three pieces:

- :func:`levels_for_budget` — each quantizer's levels chosen to meet a budget in bits per coordinate,
  per type, with the **exact** expected code length (payload plus the norms' 32 bits each; level tables
  are sent once per change and left out): the largest number of interior levels ``α`` whose expected
  cost fits.
- :func:`variance_bits_curve` / :func:`at_bits` — exact normalized variance against exact expected
  bits over ``α``, and its log-linear interpolation at a budget (the quantizer-only comparison).
- :func:`compare` — solver runs on the same problem and seeds, each as gap against cumulative bits per
  replica, read at equal total bits, equal bits per iteration (the levels) and equal iterations, with
  bootstrap confidence bands over the replicas (:class:`Comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..coding import expected_bits
from ..levels import Levels
from ..optimize import normalized_magnitudes, optimize_levels
from ..optimize.schemes import magnitudes_by_type
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer, vector_norm
from ..solvers import SolverConfig, SolverResult, solve

__all__ = ["Comparison", "at_bits", "bits_per_coordinate", "compare", "gaps_at_bits", "levels_for_budget", "mean_ci",
           "variance_bits_curve"]  # fmt: skip

KINDS = ("uniform", "optimized")


def _levels(kind: str, rs: np.ndarray, alpha: int, method: str) -> Levels:
    if kind == "uniform":
        return Levels.uniform(alpha + 1)
    return optimize_levels(rs, alpha, method).levels


def bits_per_coordinate(v, quantizer, protocol: str = "dense", code: str = "gamma") -> float:
    """Exact expected payload plus norm bits of one message of ``quantizer`` at ``v``, per coordinate."""
    e = expected_bits(v, quantizer, protocol, code)
    return float((e["payload"] + e["norms"]) / np.size(v))


def _check_budget(bits: float) -> float:
    b = float(bits)
    if not (np.isfinite(b) and b > 0):
        raise ValueError(f"bits_per_coord must be a positive number, got {bits!r}")
    return b


def levels_for_budget(v, layout: LayerLayout | None, bits_per_coord: float, kind: str = "optimized",
                      protocol: str = "dense", code: str = "gamma", q: float = 2.0, max_alpha: int = 62,
                      method: str = "histogram", scope: str = "layer",
                      bucket_size: int | None = None) -> tuple[Levels, ...]:  # fmt: skip
    """Levels meeting ``bits_per_coord`` at the sample ``v``: one sequence for a global quantizer
    (``layout=None``: one norm for the whole vector), else one per type of ``layout`` (each fitted to
    its type's coordinates; ``scope`` as in :func:`variance_bits_curve`), all with the largest common
    ``α ≤ max_alpha`` whose exact expected cost per coordinate of the whole message (payload + norms)
    is at most the budget.

    ``kind="uniform"``: QSGD levels ``j/(α+1)``; ``"optimized"``: the variance-optimal levels of each
    type's pooled normalized magnitudes (``method``).  Every ``α`` is tried and the largest fitting one
    kept (the cost is not exactly monotone in ``α`` for optimized levels).  Raises ``ValueError`` when
    even ``α = 0`` (levels ``{0, 1}``) exceeds the budget.

    ``bucket_size``: every norm covers a bucket of this many consecutive coordinates (of the vector
    for a global quantizer, of each layer for a layer-wise one; bucketed QSGD with ``kind="uniform"``,
    the baseline of QSGD's experiments at 512 and of CGX at 1024); optimized levels are then fitted to
    ``|v_i|/‖bucket‖`` with the transmitted float32 norms.
    """
    budget = _check_budget(bits_per_coord)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    v = np.asarray(v, np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)) or not np.any(v):
        raise ValueError("v must be a finite, non-zero sample vector")
    if layout is not None and layout.d != v.size:
        raise ValueError(f"layout has {layout.d} coordinates, v has {v.size}")
    best = None
    for alpha in range(0, int(max_alpha) + 1):
        qz = _any_quantizer(v, layout, alpha, kind, q, method, scope, bucket_size)
        if bits_per_coordinate(v, qz, protocol, code) <= budget:
            best = qz
    if best is None:
        raise ValueError(f"bits_per_coord {budget:g} is below the cost of levels {{0, 1}} on this sample")
    return (best.levels,) if layout is None else tuple(best.levels)


def _quantizer(v, layout, alpha: int, kind: str, q: float, method: str, scope: str):
    """The quantizer of :func:`variance_bits_curve` at ``α``."""
    if layout is None:
        return Quantizer(_levels(kind, normalized_magnitudes(v, q), int(alpha), method), q=q)
    total = float(vector_norm(v, q)) if scope == "global" else None  # fixed-order norm: no BLAS
    lvs = []
    for m in range(layout.n_types):
        parts = [v[layout.layer_slice(l)] for l in range(layout.n_layers) if int(layout.types[l]) == m]
        parts = [x for x in parts if np.any(x)]
        rs = [np.minimum(np.abs(x) / total, 1.0) if total else normalized_magnitudes(x, q) for x in parts]
        lvs.append(_levels(kind, np.concatenate(rs), int(alpha), method) if rs else Levels.uniform(1))
    return LayerwiseQuantizer(layout, tuple(lvs), scope=scope, q=q)


def _any_quantizer(v, layout, alpha: int, kind: str, q: float, method: str, scope: str, bucket_size):
    """:func:`_quantizer`, or :func:`_bucketed_quantizer` when ``bucket_size`` is set."""
    if bucket_size is None:
        return _quantizer(v, layout, alpha, kind, q, method, scope)
    return _bucketed_quantizer(v, layout, alpha, kind, q, method, scope, bucket_size)


def _bucketed_quantizer(v, layout, alpha: int, kind: str, q: float, method: str, scope: str, bucket_size: int):
    """A bucketed quantizer at ``α``: global (``layout=None``) or layer-wise with buckets inside layers
    (optimized levels fitted to each type's ``|v_i|/‖bucket‖``)."""
    if layout is not None and scope != "layer":
        raise ValueError("bucket_size needs scope='layer' (buckets have their own norms)")
    if layout is None:
        probe = Quantizer(Levels.uniform(1), q=q, bucket_size=bucket_size)
    else:
        probe = LayerwiseQuantizer(layout, Levels.uniform(1), q=q, bucket_size=bucket_size)
    if kind == "uniform":
        lvs = (Levels.uniform(int(alpha) + 1),) * len(probe.type_levels)
    else:
        rs = magnitudes_by_type(v, probe)
        lvs = tuple(_levels(kind, r, int(alpha), method) if layout is None or r.size else Levels.uniform(1) for r in rs)
    if layout is None:
        return Quantizer(lvs[0], q=q, bucket_size=bucket_size)
    return LayerwiseQuantizer(layout, lvs, q=q, bucket_size=bucket_size)


def variance_bits_curve(v, layout: LayerLayout | None, alphas, kind: str = "optimized", protocol: str = "dense",
                        code: str = "gamma", q: float = 2.0, method: str = "histogram",
                        scope: str = "layer", bucket_size: int | None = None) -> np.ndarray:  # fmt: skip
    """``(len(alphas), 2)``: exact expected bits per coordinate (payload + norms) and exact normalized
    variance ``E‖Q(v) − v‖²/‖v‖²`` of one message, for a global quantizer (``layout=None``) or a
    layer-wise one (each type ``α`` interior levels fitted to its pooled normalized magnitudes; each
    layer its own norm with ``scope="layer"``, one norm for the vector with ``scope="global"``;
    ``bucket_size`` as in :func:`levels_for_budget`)."""
    v = np.asarray(v, np.float64).ravel()
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if layout is not None and layout.d != v.size:
        raise ValueError(f"layout has {layout.d} coordinates, v has {v.size}")
    rows = []
    for alpha in alphas:
        qz = _any_quantizer(v, layout, int(alpha), kind, q, method, scope, bucket_size)
        rows.append((bits_per_coordinate(v, qz, protocol, code), qz.exact_variance(v, normalized=True)))
    return np.array(rows)


def at_bits(curve: np.ndarray, bits: float) -> float:
    """The curve's normalized variance at ``bits`` per coordinate, interpolating log-variance linearly in
    bits between its points (``nan`` outside the curve's range: no extrapolation)."""
    curve = np.asarray(curve, float)
    order = np.argsort(curve[:, 0])
    b, lv = curve[order, 0], np.log(curve[order, 1])
    if not b[0] <= bits <= b[-1]:
        return float("nan")
    return float(np.exp(np.interp(bits, b, lv)))


def mean_ci(x, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of the replicas ``x`` and its percentile-bootstrap interval (fixed
    ``seed``; ``lo = hi = mean`` for identical replicas, so no division by a zero error ever happens)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, x.size, (int(n_boot), x.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(x.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1.0 - a))


def gaps_at_bits(B: np.ndarray, G: np.ndarray, bits: float) -> np.ndarray:
    """Each row's ``G`` where its cumulative bits ``B`` reach ``bits`` (``(R, n)`` each; log-log
    interpolation between the positive records; ``nan`` outside a row's range)."""
    out = np.full(B.shape[0], np.nan)
    for r in range(B.shape[0]):
        b, g = B[r], G[r]
        ok = (b > 0) & (g > 0)
        if ok.sum() >= 2 and b[ok][0] <= bits <= b[ok][-1]:
            out[r] = np.exp(np.interp(np.log(bits), np.log(b[ok]), np.log(g[ok])))
    return out


@dataclass
class Comparison:
    """Solver runs side by side; every reading is per replica, then summarized by :func:`mean_ci`."""

    d: int
    K: int
    results: dict  # name → SolverResult

    def bits_per_coord(self, name: str) -> np.ndarray:
        """Bits per coordinate per worker per iteration, averaged over the run, per replica ``(R,)``."""
        res: SolverResult = self.results[name]
        return res.bits_per_iteration.sum(axis=1) / (res.bits_per_iteration.shape[1] * self.d * self.K)

    def cumulative(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(bits, gap)``: cumulative bits per coordinate per worker and the ergodic gap at each record,
        ``(R, n)`` each."""
        res: SolverResult = self.results[name]
        return res.cumulative_bits() / (self.d * self.K), res.measures["gap_avg"]

    def gap_at_bits(self, name: str, bits: float) -> np.ndarray:
        """Each replica's gap when its cumulative bits per coordinate reach ``bits`` (log-log
        interpolation between records; ``nan`` outside the run)."""
        return gaps_at_bits(*self.cumulative(name), bits)

    def gap_at_iteration(self, name: str, t: int | None = None) -> np.ndarray:
        """Each replica's gap at the recorded iteration ``t`` (default: the last)."""
        res: SolverResult = self.results[name]
        i = -1 if t is None else int(np.flatnonzero(res.iterations == t)[0])
        return res.measures["gap_avg"][:, i]

    def common_bits(self, names=None) -> float:
        """The largest cumulative bits per coordinate every named run reaches in every replica."""
        names = list(self.results) if names is None else list(names)
        return float(min(self.cumulative(n)[0][:, -1].min() for n in names))


def compare(problem, configs: dict, **common) -> Comparison:
    """Run every ``SolverConfig`` in ``configs`` (name → config; ``common`` overrides applied to all,
    e.g. the same ``seed`` and ``replicas``, or ``bucket_size=512`` for bucketed quantizers) on
    ``problem``; returns a :class:`Comparison`."""
    if not configs:
        raise ValueError("configs must name at least one solver config")
    results = {}
    K = None
    for name, cfg in configs.items():
        if not isinstance(cfg, SolverConfig):
            raise TypeError(f"configs[{name!r}] must be a SolverConfig, got {type(cfg).__name__}")
        res = solve(problem, cfg, **common)
        if K is not None and res.config["K"] != K:
            raise ValueError("every config of a comparison needs the same number of workers K")
        K = res.config["K"]
        results[name] = res
    return Comparison(problem.d, int(K), results)
