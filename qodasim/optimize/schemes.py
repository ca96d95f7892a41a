"""Quantization schemes side by side at equal bits, under several codes, with exact statistics.

One comparison engine for "which scheme is best per bit on *this* vector" (THEORY §1–3, §7.3): every
number is exact — the variance is ``Σ_i n_g² ρ_i(1−ρ_i)(ℓ_{j+1}−ℓ_j)²``, the code lengths are exact
expectations over the rounding — so no sampling error enters a comparison.

Schemes (each a family of quantizers indexed by ``α``, the interior levels of each type):

=====================  ======================================================================
``qsgd``               one norm for the vector, uniform levels ``j/(α+1)`` (QSGD)
``qsgd-b<B>``          a norm per bucket of ``B`` coordinates, uniform levels (QSGD's practice: 512; CGX: 1024)
``global-opt``         one norm, variance-optimal levels of the vector's normalized magnitudes
``layer-uniform``      a norm per layer, uniform levels
``layer-opt``          a norm per layer, optimal levels per type (QODA's layer-wise quantizer)
``types-one-norm``     one norm for the vector, optimal levels per type
``lgreco``             a norm per layer, uniform levels with a width per layer chosen by the L-GreCo
                       DP (:func:`~qodasim.optimize.lgreco`) to minimize the squared error at the budget
=====================  ======================================================================

Codes (what a message costs; norms are 32 bits each in every code; headers and level tables, sent
once per change, are left out):

* ``gamma`` — the toolkit's dense Elias-γ stream (exact expected length, THEORY §3);
* ``entropy`` — a static entropy code per type fitted to the message's index distribution (its
  Shannon length, :func:`~qodasim.coding.entropy_floor`; a Huffman or arithmetic code comes within a
  fraction of a bit per symbol of it);
* ``fixed`` — packed signed indices of ``⌈log2(2|ℓ|−1)⌉`` bits (:func:`~qodasim.coding.fixed_width_bits`).

Metrics: the whole-vector normalized variance ``E‖Q(v)−v‖²/‖v‖²`` and each layer's relative error
``E‖Q(v_l)−v_l‖²/‖v_l‖²`` (what a per-layer adaptive optimizer such as Adam sees).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..coding import entropy_bits_of_intervals, expected_bits_of_intervals, fixed_width_bits
from ..levels import Levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from .allocation import lgreco
from .distributions import normalized_magnitudes
from .levels import optimize_levels

__all__ = [
    "BUCKETS",
    "CODES",
    "SCHEMES",
    "Point",
    "SchemeCurve",
    "alpha_grid",
    "magnitudes_by_type",
    "at_budget",
    "scheme_curve",
    "scheme_names",
    "stats",
]

#: The codes a comparison prices messages under (module docstring).
CODES = ("gamma", "entropy", "fixed")
#: Bucket sizes of the bucketed QSGD schemes (QSGD's experiments: 512; CGX: 1024).
BUCKETS = (128, 512, 1024, 4096)
#: Every scheme :func:`scheme_curve` knows (module docstring).
SCHEMES = ("qsgd", *(f"qsgd-b{b}" for b in BUCKETS), "global-opt", "layer-uniform", "layer-opt", "types-one-norm",
           "lgreco")  # fmt: skip


def alpha_grid(uniform: bool, max_alpha: int | None = None) -> list[int]:
    """The ``α`` tried: every ``α ≤ 31``, then steps of about 19% (uniform levels) up to ``2^16``;
    fitted levels stop at ``α = 62``.  ``max_alpha`` caps either."""
    top = (2**16 if uniform else 62) if max_alpha is None else int(max_alpha)
    if not uniform:
        return list(range(top + 1))
    grid, a = list(range(min(top, 31) + 1)), 31
    while uniform and a < top:
        a = min(top, int(np.ceil(a * 1.19)))
        grid.append(a)
    return grid


def scheme_names(layout: LayerLayout | None = None) -> tuple[str, ...]:
    """The schemes that apply: all of :data:`SCHEMES`, the layer-wise ones only with a layout of 2+ layers."""
    if layout is None or layout.n_layers < 2:
        return tuple(s for s in SCHEMES if not s.startswith(("layer", "types", "lgreco")))
    return SCHEMES


@dataclass(frozen=True)
class Point:
    """One quantizer of a scheme: its exact statistics.

    Attributes
    ----------
    alpha : int or tuple of int
        Interior levels (per layer for ``lgreco``); uniform levels are ``j/(α+1)``.
    bits : dict
        Code → expected bits per coordinate (payload + norms).
    variance : float
        ``E‖Q(v)−v‖²/‖v‖²``.
    layer_rel : ndarray
        ``E‖Q(v_l)−v_l‖²/‖v_l‖²`` per layer (``nan`` for an all-zero layer).
    quantizer : object
        The quantizer itself (for sampling and encoding).
    """

    alpha: int | tuple
    bits: dict
    variance: float
    layer_rel: np.ndarray
    quantizer: object = field(repr=False, compare=False)

    @property
    def mean_layer_rel(self) -> float:
        """The mean over non-zero layers of the per-layer relative error."""
        x = self.layer_rel[np.isfinite(self.layer_rel)]
        return float(x.mean()) if x.size else float("nan")


def stats(
    v: np.ndarray, quantizer, layout: LayerLayout, codes: Sequence[str] = CODES
) -> tuple[dict, float, np.ndarray]:
    """``(bits per coordinate by code, normalized variance, per-layer relative error)`` of
    ``quantizer`` at ``v``, exactly, from one pass over the intervals."""
    j, rho, n32, plan = quantizer.intervals(v, layout if isinstance(quantizer, Quantizer) else None)
    cvar = quantizer.coordinate_variance_of_intervals(j, rho, n32, plan)
    norms_bits = 32 * plan.n_groups
    d = v.size
    bits = {}
    for c in codes:
        if c == "gamma":
            payload = expected_bits_of_intervals(j, rho, plan, quantizer.type_levels, v.dtype, "dense", "gamma")[
                "payload"
            ]
        elif c == "entropy":
            payload = entropy_bits_of_intervals(j, rho, plan, quantizer.type_levels)
        elif c == "fixed":
            payload = fixed_width_bits(plan, quantizer.type_levels)
        else:
            raise ValueError(f"code must be one of {CODES}, got {c!r}")
        bits[c] = (float(payload) + norms_bits) / d
    total = float(np.dot(v, v))
    per_layer = np.add.reduceat(cvar, layout.offsets[:-1])
    energy = np.add.reduceat(v * v, layout.offsets[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(energy > 0, per_layer / energy, np.nan)
    return bits, float(cvar.sum() / total), rel


def _fitted(rs, alpha: int, method: str) -> Levels:
    """The variance-optimal ``alpha`` interior levels of the magnitudes ``rs``."""
    return optimize_levels(rs, alpha, method).levels


def magnitudes_by_type(v: np.ndarray, probe) -> list[np.ndarray]:
    """Per type of ``probe``'s plan, the normalized magnitudes ``min(|v_i| / n_g, 1)`` of its
    coordinates with ``n_g`` the transmitted float32 norm of coordinate ``i``'s group (layer, bucket or
    the whole vector, as ``probe`` normalizes); coordinates of all-zero groups are left out."""
    n32 = probe.norms(v).astype(np.float64)
    plan = probe.plan(v.size)
    per = np.repeat(n32, np.diff(plan.group_bounds))
    with np.errstate(invalid="ignore", divide="ignore"):
        rs = np.where(per > 0, np.minimum(np.abs(v) / per, 1.0), np.nan)
    ctype = plan.coord_type()
    return [rs[(ctype == m) & np.isfinite(rs)] for m in range(len(probe.type_levels))]


class _Builder:
    """Quantizers of one scheme on one vector, by ``α`` (magnitudes computed once)."""

    def __init__(self, scheme: str, v: np.ndarray, layout: LayerLayout, q: float, method: str) -> None:
        self.scheme, self.v, self.layout, self.q, self.method = scheme, v, layout, q, method
        self.bucket = int(scheme[len("qsgd-b") :]) if scheme.startswith("qsgd-b") else None
        if scheme == "global-opt":
            self.rs = normalized_magnitudes(v, q)
        elif scheme in ("layer-opt", "types-one-norm"):
            scope = "layer" if scheme == "layer-opt" else "global"
            self.rs_by_type = magnitudes_by_type(v, LayerwiseQuantizer(layout, Levels.uniform(1), scope=scope, q=q))
            self.scope = scope

    def __call__(self, alpha: int):
        s, q = self.scheme, self.q
        if s == "qsgd" or self.bucket:
            return Quantizer(Levels.uniform(alpha + 1), q=q, bucket_size=self.bucket)
        if s == "global-opt":
            return Quantizer(_fitted(self.rs, alpha, self.method), q=q)
        if s == "layer-uniform":
            return LayerwiseQuantizer(self.layout, Levels.uniform(alpha + 1), q=q)
        if s in ("layer-opt", "types-one-norm"):
            lvs = tuple(_fitted(r, alpha, self.method) if r.size else Levels.uniform(1)
                        for r in self.rs_by_type)  # fmt: skip
            return LayerwiseQuantizer(self.layout, lvs, scope=self.scope, q=q)
        raise ValueError(f"scheme must be one of {SCHEMES}, got {s!r}")


@dataclass(frozen=True)
class SchemeCurve:
    """A scheme's quantizers at ``α = 0, 1, …`` (for ``lgreco``: the per-layer options)."""

    scheme: str
    points: tuple[Point, ...]
    options: dict | None = None  # lgreco: per-layer bits by code, errors, energies


def _check_vector(v, layout: LayerLayout | None) -> tuple[np.ndarray, LayerLayout]:
    v = np.asarray(v, np.float64).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("v must be a non-empty finite vector")
    if not np.any(v):
        raise ValueError("v is the zero vector: nothing to compare")
    layout = LayerLayout.single(v.size) if layout is None else layout
    if not isinstance(layout, LayerLayout):
        raise TypeError(f"layout must be a LayerLayout, got {type(layout).__name__}")
    if layout.d != v.size:
        raise ValueError(f"layout has {layout.d} coordinates, v has {v.size}")
    return v, layout


def scheme_curve(v, layout: LayerLayout | None, scheme: str, max_bits: float, codes: Sequence[str] = CODES,
                 q: float = 2.0, method: str = "histogram", max_alpha: int | None = None,
                 tick: Callable[[], None] | None = None) -> SchemeCurve:  # fmt: skip
    """Exact statistics of ``scheme`` over :func:`alpha_grid` until every code costs more than
    ``max_bits`` per coordinate at two ``α`` in a row.  ``tick`` is called once per quantizer
    evaluated (a progress bar)."""
    v, layout = _check_vector(v, layout)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "lgreco":
        return _lgreco_options(v, layout, max_bits, codes, q, max_alpha, tick)
    build = _Builder(scheme, v, layout, q, method)
    points, over = [], 0
    for alpha in alpha_grid(scheme.startswith(("qsgd", "layer-uniform")), max_alpha):
        qz = build(alpha)
        bits, var, rel = stats(v, qz, layout, codes)
        points.append(Point(alpha, bits, var, rel, qz))
        if tick is not None:
            tick()
        over = over + 1 if min(bits.values()) > max_bits else 0
        if over >= 2:
            break
    return SchemeCurve(scheme, tuple(points))


def _lgreco_options(v, layout, max_bits, codes, q, max_alpha, tick) -> SchemeCurve:
    """Per layer, uniform levels at ``α = 0, 1, …``: each option's bits (by code) and squared error
    (an all-zero layer has one option: its norm and zero indices, no error)."""
    bits = {c: [] for c in codes}
    errors, alphas = [], []
    for l in range(layout.n_layers):
        x = v[layout.layer_slice(l)]
        one = LayerLayout.single(x.size)
        eb, er, al = {c: [] for c in codes}, [], []
        if not np.any(x):
            zero = _zero_bits(x, Quantizer(Levels.uniform(1), q=q), codes)
            eb = {c: [zero[c] * x.size] for c in codes}
            er, al = [0.0], [0]
        else:
            over = 0
            for alpha in alpha_grid(True, max_alpha):
                b, var, _ = stats(x, Quantizer(Levels.uniform(alpha + 1), q=q), one, codes)
                for c in codes:
                    eb[c].append(b[c] * x.size)
                er.append(var * float(np.dot(x, x)))
                al.append(alpha)
                over = over + 1 if min(b.values()) > max_bits else 0
                if over >= 2:
                    break
        for c in codes:
            bits[c].append(np.array(eb[c]))
        errors.append(np.array(er))
        alphas.append(al)
        if tick is not None:
            tick()
    energy = np.add.reduceat(v * v, layout.offsets[:-1])
    return SchemeCurve(
        "lgreco",
        (),
        {
            "bits": bits,
            "errors": errors,
            "energy": energy,
            "q": q,
            "alphas": alphas,
            "layout": layout,
            "norm2": float(np.dot(v, v)),
        },
    )


def _zero_bits(x, qz, codes) -> dict:
    """Bits of an all-zero layer: its norm and one zero index per coordinate."""
    plan = qz.plan(x.size)
    out = {}
    for c in codes:
        if c == "gamma":
            payload = x.size  # γ(1) = "1" per coordinate, no sign
        elif c == "entropy":
            payload = 0.0
        else:
            payload = fixed_width_bits(plan, qz.type_levels)
        out[c] = (payload + 32.0) / x.size
    return out


def at_budget(curve: SchemeCurve, v, layout: LayerLayout | None, budget: float, code: str) -> Point | None:
    """The scheme's best quantizer whose expected cost under ``code`` is at most ``budget`` bits per
    coordinate: the fitting ``α`` of least whole-vector variance (neither cost nor variance is exactly
    monotone in ``α`` for fitted levels, so every fitting ``α`` is compared), or for ``lgreco`` the
    per-layer widths of least squared error that fit; ``None`` if nothing fits.  The curve carries
    its vector's statistics: ``v`` and ``layout`` are those it was built from."""
    if curve.scheme == "lgreco":
        return _lgreco_at(curve, budget, code)
    fits = [p for p in curve.points if p.bits[code] <= budget]
    return min(fits, key=lambda p: (p.variance, p.alpha)) if fits else None


def _lgreco_at(curve: SchemeCurve, budget: float, code: str) -> Point | None:
    """L-GreCo's DP with the roles of bits and error swapped (as :class:`~qodasim.solvers.LGreCo` does
    under a bit budget): the per-layer widths of least total squared error whose bits, rounded up to
    units of ``budget·d/buckets``, fit in ``budget·d`` — so the choice always fits."""
    layout = curve.options["layout"]  # the curve's own vector and layout (checked when it was built)
    bits, errors = curve.options["bits"][code], curve.options["errors"]
    d = layout.d
    cheapest = np.array([int(np.argmin(b)) for b in bits])
    base = sum(float(b[i]) for b, i in zip(bits, cheapest))
    if base > budget * d:
        return None
    choice = lgreco(errors, bits, cheapest, alpha=budget * d / base, buckets=4000) if base > 0 else cheapest
    alphas = tuple(curve.options["alphas"][l][int(i)] for l, i in enumerate(choice))
    lay = LayerLayout(layout.sizes, np.arange(layout.n_layers), names=layout.names, shapes=layout.shapes)
    qz = LayerwiseQuantizer(lay, tuple(Levels.uniform(a + 1) for a in alphas), q=curve.options["q"])
    b = {code: sum(float(bb[i]) for bb, i in zip(bits, choice)) / d}
    err = np.array([float(e[i]) for e, i in zip(errors, choice)])
    energy = curve.options["energy"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(energy > 0, err / energy, np.nan)
    return Point(alphas, b, float(err.sum() / curve.options["norm2"]), rel, qz)
