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
``layer-opt``          a norm per layer, optimal levels per type (QODA's layer-wise quantizer), one ``α``
``layer-opt-energy``   as ``layer-opt`` with each type's levels fitted to the whole vector's squared error
                       (each coordinate weighted by its layer's squared norm) instead of the layers'
                       relative errors (every coordinate alike, the fit ``layer-opt`` and QODA use)
``layer-opt-alloc``    a norm per layer, levels per type fitted as ``layer-opt-energy``, an ``α`` per type
                       chosen by the L-GreCo DP over the types to minimize the squared error at the budget
``types-one-norm``     one norm for the vector, optimal levels per type
``lgreco``             a norm per layer, uniform levels with a width per layer chosen by the L-GreCo
                       DP (:func:`~qodasim.optimize.lgreco`) to minimize the squared error at the budget
``lgreco-b<B>``        as ``lgreco`` with a norm per bucket of ``B`` coordinates inside each layer
                       (CGX's buckets with L-GreCo's per-layer widths)
=====================  ======================================================================

Reading a family at a budget: :func:`at_budget` takes the best single quantizer that fits;
:func:`frontier_at` also mixes two quantizers by time-sharing (the lower convex hull of a family's
(bits, error) points), which is what each side of a comparison can reach with its level families.

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

from ..coding import _payload, entropy_bits_of_intervals, expected_bits_of_intervals, fixed_width_bits
from ..coding.elias import code_id
from ..levels import Levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from ..validate import check_choice
from .allocation import lgreco
from .distributions import Empirical, normalized_magnitudes
from .levels import optimize_levels

__all__ = [
    "ALLOCATED",
    "BUCKETS",
    "LGRECO_BUCKETS",
    "CODES",
    "SCHEMES",
    "Point",
    "SchemeCurve",
    "alpha_grid",
    "magnitudes_by_type",
    "per_type_stats",
    "allocation_hull",
    "at_budget",
    "frontier_at",
    "lower_frontier",
    "scheme_curve",
    "scheme_names",
    "stats",
]

#: The codes a comparison prices messages under (module docstring).
CODES = ("gamma", "entropy", "fixed")
#: Bucket sizes of the bucketed QSGD schemes (QSGD's experiments: 512; CGX: 1024).
BUCKETS = (128, 512, 1024, 4096)
#: Bucket sizes of the bucketed schemes with per-layer widths (CGX's 512 and 1024).
LGRECO_BUCKETS = (512, 1024)
#: Every scheme :func:`scheme_curve` knows (module docstring).
SCHEMES = ("qsgd", *(f"qsgd-b{b}" for b in BUCKETS), "global-opt", "layer-uniform", "layer-opt", "layer-opt-energy",
           "layer-opt-alloc", "types-one-norm", "lgreco", *(f"lgreco-b{b}" for b in LGRECO_BUCKETS))  # fmt: skip
#: Schemes read by a DP at each budget (their curve holds per-unit options, not points).
ALLOCATED = ("layer-opt-alloc", "lgreco", *(f"lgreco-b{b}" for b in LGRECO_BUCKETS))


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


def per_type_stats(v: np.ndarray, quantizer, codes: Sequence[str] = CODES) -> tuple[dict, np.ndarray]:
    """``(payload + norm bits per type by code, squared error per type)`` of ``quantizer`` at ``v``,
    exactly, from one pass over the intervals — what :func:`stats` gives for the whole vector, split by
    type (every type's code is its own: the γ tables and fixed widths of its levels, an entropy code
    fitted to its own indices)."""
    j, rho, n32, plan = quantizer.intervals(v)
    cvar = quantizer.coordinate_variance_of_intervals(j, rho, n32, plan)
    ctype = plan.coord_type()
    levels = quantizer.type_levels
    n_types = len(levels)
    counts = np.bincount(ctype, minlength=n_types)
    norms = 32.0 * np.bincount(ctype[plan.group_bounds[:-1]], minlength=n_types)
    signs = np.bincount(ctype, weights=np.where(j >= 1, 1.0, rho), minlength=n_types)
    bits = {}
    for c in codes:
        if c == "gamma":  # one cost table per level count, shared by the types that have it
            sizes = sorted({lv.size for lv in levels})
            tables = [_payload.dense_cost_table(n - 1, code_id("gamma")).astype(np.float64) for n in sizes]
            start = np.cumsum([0] + [t.size for t in tables])
            off = np.array([start[sizes.index(lv.size)] for lv in levels])[ctype] + j
            table = np.concatenate(tables)
            cost = (1.0 - rho) * table[off] + rho * table[off + 1]
            payload = np.bincount(ctype, weights=cost, minlength=n_types)
        elif c == "entropy":
            payload = counts * _index_entropy(ctype, j, rho, max(lv.size for lv in levels), counts) + signs
        elif c == "fixed":
            payload = counts * np.array([float(int(2 * lv.size - 2).bit_length()) for lv in levels])
        else:
            raise ValueError(f"code must be one of {CODES}, got {c!r}")
        bits[c] = payload + norms
    return bits, np.bincount(ctype, weights=cvar, minlength=n_types)


def _index_entropy(ctype, j, rho, k: int, counts) -> np.ndarray:
    """Per type, the entropy (bits) of the level index's marginal law: index ``j`` with probability
    ``1 − ρ`` and ``j + 1`` with ``ρ``, averaged over the type's coordinates.  Only the (type, index)
    pairs that occur are tabulated, so a large ``k`` costs no more than the coordinates."""
    keys, inv = np.unique(np.concatenate([ctype * k + j, ctype * k + j + 1]), return_inverse=True)
    mass = np.bincount(inv, np.concatenate([1.0 - rho, rho]), keys.size)
    p = mass / np.maximum(counts, 1)[keys // k]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return np.bincount(keys // k, terms, counts.size)


def _fitted(rs, alpha: int, method: str, weights=None) -> Levels:
    """The variance-optimal ``alpha`` interior levels of the magnitudes ``rs`` (each sample's rounding
    variance weighted by ``weights`` when given)."""
    if weights is None:
        return optimize_levels(rs, alpha, method).levels
    if method == "histogram":
        return optimize_levels(rs, alpha, method, weights=weights).levels
    return optimize_levels(Empirical(rs, weights=weights), alpha, method).levels


def magnitudes_by_type(v: np.ndarray, probe, weights: bool = False) -> list:
    """Per type of ``probe``'s plan, the normalized magnitudes ``min(|v_i| / n_g, 1)`` of its
    coordinates with ``n_g`` the transmitted float32 norm of coordinate ``i``'s group (layer, bucket or
    the whole vector, as ``probe`` normalizes); coordinates of all-zero groups are left out.  With
    ``weights``, pairs ``(magnitudes, n_g²)``: a coordinate's squared error is ``n_g²`` times its
    normalized one, so these weights make a level fit minimize the whole vector's squared error."""
    n32 = probe.norms(v).astype(np.float64)
    plan = probe.plan(v.size)
    per = np.repeat(n32, np.diff(plan.group_bounds))
    with np.errstate(invalid="ignore", divide="ignore"):
        rs = np.where(per > 0, np.minimum(np.abs(v) / per, 1.0), np.nan)
    ctype = plan.coord_type()
    keep = [(ctype == m) & np.isfinite(rs) for m in range(len(probe.type_levels))]
    return [(rs[k], per[k] ** 2) if weights else rs[k] for k in keep]


class _Builder:
    """Quantizers of one scheme on one vector, by ``α`` (magnitudes computed once)."""

    def __init__(self, scheme: str, v: np.ndarray, layout: LayerLayout, q: float, method: str) -> None:
        self.scheme, self.v, self.layout, self.q, self.method = scheme, v, layout, q, method
        self.bucket = int(scheme[len("qsgd-b") :]) if scheme.startswith("qsgd-b") else None
        if scheme == "global-opt":
            self.rs = normalized_magnitudes(v, q)
        elif scheme in ("layer-opt", "layer-opt-energy", "types-one-norm"):
            scope = "global" if scheme == "types-one-norm" else "layer"
            probe = LayerwiseQuantizer(layout, Levels.uniform(1), scope=scope, q=q)
            if scheme == "layer-opt-energy":
                self.rs_by_type, self.w_by_type = zip(*magnitudes_by_type(v, probe, weights=True))
            else:
                self.rs_by_type, self.w_by_type = magnitudes_by_type(v, probe), None
            self.scope = scope

    def __call__(self, alpha: int):
        s, q = self.scheme, self.q
        if s == "qsgd" or self.bucket:
            return Quantizer(Levels.uniform(alpha + 1), q=q, bucket_size=self.bucket)
        if s == "global-opt":
            return Quantizer(_fitted(self.rs, alpha, self.method), q=q)
        if s == "layer-uniform":
            return LayerwiseQuantizer(self.layout, Levels.uniform(alpha + 1), q=q)
        if s in ("layer-opt", "layer-opt-energy", "types-one-norm"):
            ws = self.w_by_type or (None,) * len(self.rs_by_type)
            lvs = tuple(_fitted(r, alpha, self.method, w) if r.size else Levels.uniform(1)
                        for r, w in zip(self.rs_by_type, ws))  # fmt: skip
            return LayerwiseQuantizer(self.layout, lvs, scope=self.scope, q=q)
        raise ValueError(f"scheme must be one of {SCHEMES}, got {s!r}")


@dataclass(frozen=True)
class SchemeCurve:
    """A scheme's quantizers at ``α = 0, 1, …`` (for the schemes of :data:`ALLOCATED`: the options per
    layer or type that :func:`at_budget` allocates)."""

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
    if scheme.startswith("lgreco"):
        bucket = int(scheme[len("lgreco-b") :]) if scheme.startswith("lgreco-b") else None
        return _lgreco_options(v, layout, max_bits, codes, q, max_alpha, tick, bucket, scheme)
    if scheme == "layer-opt-alloc":
        return _alloc_options(v, layout, max_bits, codes, q, method, max_alpha, tick)
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


def _type_per_layer(layout: LayerLayout) -> LayerLayout:
    """``layout`` with every layer its own type (per-layer widths: one level sequence per layer)."""
    return LayerLayout(layout.sizes, np.arange(layout.n_layers), names=layout.names, shapes=layout.shapes)


def _lgreco_options(v, layout, max_bits, codes, q, max_alpha, tick, bucket=None, name="lgreco") -> SchemeCurve:
    """Per layer, uniform levels at ``α = 0, 1, …`` (a norm per bucket of ``bucket`` coordinates inside
    the layer, or one per layer): each option's bits (by code) and squared error, every layer at once
    (:func:`per_type_stats` of a quantizer whose types are the layers).  The scan stops once every
    layer costs more, in every code, than the whole budget spent on it alone (twice in a row): the
    allocation may give a layer far more bits per coordinate than the budget."""
    per = _type_per_layer(layout)
    cap = max_bits * layout.d
    rows_bits, rows_err, al, over = {c: [] for c in codes}, [], [], 0
    for alpha in alpha_grid(True, max_alpha):
        lv = Levels.uniform(alpha + 1)
        qz = LayerwiseQuantizer(per, (lv,) * layout.n_layers, q=q, bucket_size=bucket)
        b, err = per_type_stats(v, qz, codes)
        for c in codes:
            rows_bits[c].append(b[c])
        rows_err.append(err)
        al.append(alpha)
        if tick is not None:
            tick()
        over = over + 1 if all(np.all(b[c] > cap) for c in codes) else 0
        if over >= 2:
            break
    bits = {c: list(np.array(rows_bits[c]).T) for c in codes}
    errors = list(np.array(rows_err).T)
    return SchemeCurve(name, (), {"bits": bits, "errors": errors, "energy": np.add.reduceat(v * v, layout.offsets[:-1]),
                                  "q": q, "alphas": [al] * layout.n_layers, "layout": layout,
                                  "norm2": float(np.dot(v, v)), "bucket": bucket})  # fmt: skip


def _type_part(v, layout: LayerLayout, m: int) -> tuple[np.ndarray, LayerLayout | None]:
    """Type ``m``'s coordinates and their layout (its layers, one type), or ``(empty, None)``."""
    layers = np.flatnonzero(layout.types == m)
    if layers.size == 0:
        return np.zeros(0), None
    idx = np.concatenate([np.arange(layout.offsets[l], layout.offsets[l + 1]) for l in layers])
    return v[idx], LayerLayout(layout.sizes[layers])


def _alloc_options(v, layout, max_bits, codes, q, method, max_alpha, tick) -> SchemeCurve:
    """Per type: its layers (a norm each) with the variance-optimal levels of its magnitudes at
    ``α = 0, 1, …``: each option's total bits (by code), squared error and levels.  A type's scan stops
    once every code costs more than the whole budget spent on the type alone (twice in a row)."""
    bits = {c: [] for c in codes}
    errors, alphas, levels, layer_errors = [], [], [], []
    for m in range(layout.n_types):
        x, sub = _type_part(v, layout, m)
        eb, er, al, lv, pl = {c: [] for c in codes}, [], [], [], []
        if sub is not None:
            energy = np.add.reduceat(x * x, sub.offsets[:-1])
            probe = LayerwiseQuantizer(sub, Levels.uniform(1), scope="layer", q=q)
            rs, w = magnitudes_by_type(x, probe, weights=True)[0]
            norm2, over = float(np.dot(x, x)), 0
            for alpha in alpha_grid(False, max_alpha) if rs.size else [0]:
                lvl = _fitted(rs, alpha, method, w) if rs.size else Levels.uniform(1)
                b, var, rel = stats(x, LayerwiseQuantizer(sub, (lvl,), scope="layer", q=q), sub, codes)
                for c in codes:
                    eb[c].append(b[c] * x.size)
                er.append(var * norm2 if norm2 > 0 else 0.0)
                pl.append(np.where(energy > 0, rel * energy, 0.0))
                al.append(alpha)
                lv.append(lvl)
                if tick is not None:
                    tick()
                over = over + 1 if min(b.values()) > max_bits * layout.d / x.size else 0
                if over >= 2:
                    break
        else:  # a type without layers: nothing to send
            eb, er, al, lv, pl = {c: [0.0] for c in codes}, [0.0], [0], [Levels.uniform(1)], [np.zeros(0)]
        for c in codes:
            bits[c].append(np.array(eb[c]))
        errors.append(np.array(er))
        alphas.append(al)
        levels.append(lv)
        layer_errors.append(np.array(pl).reshape(len(pl), -1))
    return SchemeCurve("layer-opt-alloc", (), {"bits": bits, "errors": errors, "alphas": alphas, "levels": levels,
                                               "layer_errors": layer_errors, "layout": layout, "q": q,
                                               "energy": np.add.reduceat(v * v, layout.offsets[:-1]),
                                               "norm2": float(np.dot(v, v))})  # fmt: skip


def at_budget(curve: SchemeCurve, v, layout: LayerLayout | None, budget: float, code: str) -> Point | None:
    """The scheme's best quantizer whose expected cost under ``code`` is at most ``budget`` bits per
    coordinate: the fitting ``α`` of least whole-vector variance (neither cost nor variance is exactly
    monotone in ``α`` for fitted levels, so every fitting ``α`` is compared), or for ``lgreco`` the
    per-layer widths of least squared error that fit; ``None`` if nothing fits.  The curve carries
    its vector's statistics: ``v`` and ``layout`` are those it was built from."""
    if curve.scheme.startswith("lgreco"):
        return _lgreco_at(curve, budget, code)
    if curve.scheme == "layer-opt-alloc":
        return _alloc_at(curve, v, budget, code)
    fits = [p for p in curve.points if p.bits[code] <= budget]
    return min(fits, key=lambda p: (p.variance, p.alpha)) if fits else None


def _allocate(bits: list, errors: list, budget_bits: float) -> np.ndarray | None:
    """One option per unit (layer or type) of least total error whose bits, rounded up to units of
    ``budget_bits/4000``, fit in ``budget_bits`` (L-GreCo's DP with bits and error swapped, as
    :class:`~qodasim.solvers.LGreCo` does under a bit budget); ``None`` if even the cheapest do not fit."""
    cheapest = np.array([int(np.argmin(b)) for b in bits])
    base = sum(float(b[i]) for b, i in zip(bits, cheapest))
    if base > budget_bits:
        return None
    return lgreco(errors, bits, cheapest, alpha=budget_bits / base, buckets=4000) if base > 0 else cheapest


def _lgreco_at(curve: SchemeCurve, budget: float, code: str) -> Point | None:
    """The per-layer widths of least total squared error that fit the budget (:func:`_allocate`)."""
    layout = curve.options["layout"]  # the curve's own vector and layout (checked when it was built)
    bits, errors = curve.options["bits"][code], curve.options["errors"]
    d = layout.d
    choice = _allocate(bits, errors, budget * d)
    if choice is None:
        return None
    alphas = tuple(curve.options["alphas"][l][int(i)] for l, i in enumerate(choice))
    qz = LayerwiseQuantizer(_type_per_layer(layout), tuple(Levels.uniform(a + 1) for a in alphas), q=curve.options["q"],
                            bucket_size=curve.options.get("bucket"))  # fmt: skip
    b = {code: sum(float(bb[i]) for bb, i in zip(bits, choice)) / d}
    err = np.array([float(e[i]) for e, i in zip(errors, choice)])
    energy = curve.options["energy"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(energy > 0, err / energy, np.nan)
    return Point(alphas, b, float(err.sum() / curve.options["norm2"]), rel, qz)


def _alloc_at(curve: SchemeCurve, v, budget: float, code: str) -> Point | None:
    """The ``α`` per type of least total squared error that fits the budget (:func:`_allocate`); the
    point's statistics are computed on the whole vector (bits under ``code`` only)."""
    o = curve.options
    layout = o["layout"]
    choice = _allocate(o["bits"][code], o["errors"], budget * layout.d)
    if choice is None:
        return None
    lvs = tuple(o["levels"][m][int(i)] for m, i in enumerate(choice))
    qz = LayerwiseQuantizer(layout, lvs, scope="layer", q=o["q"])
    b, var, rel = stats(np.asarray(v, np.float64).reshape(-1), qz, layout, (code,))
    return Point(tuple(o["alphas"][m][int(i)] for m, i in enumerate(choice)), b, var, rel, qz)


def _unit_layers(curve: SchemeCurve) -> list[np.ndarray]:
    """The layers of each unit an allocated scheme chooses for (a layer, or a type's layers)."""
    layout = curve.options["layout"]
    if curve.scheme == "layer-opt-alloc":
        return [np.flatnonzero(layout.types == m) for m in range(len(curve.options["errors"]))]
    return [np.array([l]) for l in range(layout.n_layers)]


def _unit_layer_errors(curve: SchemeCurve, u: int) -> np.ndarray:
    """``(options, layers of unit u)``: each option's squared error per layer of the unit."""
    o = curve.options
    return o["layer_errors"][u] if "layer_errors" in o else np.asarray(o["errors"][u], float)[:, None]


def _lower_hull(b: np.ndarray, e: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of the points ``(b, e)`` from the cheapest, error decreasing."""
    order = np.lexsort((e, b))
    hull: list[int] = []
    for i in order:
        if hull and e[i] >= e[hull[-1]]:
            continue  # dominated: costs no less and errs no less
        while len(hull) >= 2:
            i0, i1 = hull[-2], hull[-1]
            if (e[i1] - e[i0]) * (b[i] - b[i0]) >= (e[i] - e[i0]) * (b[i1] - b[i0]):
                hull.pop()  # i1 lies on or above the chord i0–i
            else:
                break
        hull.append(int(i))
    return hull


def allocation_hull(curve: SchemeCurve, code: str, metric: str = "variance") -> tuple[np.ndarray, np.ndarray]:
    """``(bits per coordinate, metric)`` at the vertices of the lower convex hull over every allocation
    of an allocated scheme (:data:`ALLOCATED`), cheapest first.  The cost is a sum over units (layers
    or types), so the hull is traced greedily: each unit starts at its cheapest hull option, then the
    units' hull segments are taken in order of error saved per bit (each vertex is optimal for a
    Lagrange multiplier).  Read between two vertices by :func:`lower_frontier` (time-sharing)."""
    check_choice(metric, "metric", ("variance", "mean_layer_rel"))
    o = curve.options
    energy, layers = o["energy"], _unit_layers(curve)
    finite = energy > 0
    per_layer = [_unit_layer_errors(curve, u) for u in range(len(layers))]
    if metric == "variance":
        costs = [pe.sum(axis=1) / o["norm2"] for pe in per_layer]
    else:
        n = max(int(finite.sum()), 1)
        costs = [pe @ np.where(finite[ls], 1.0 / np.where(finite[ls], energy[ls], 1.0), 0.0) / n
                 for pe, ls in zip(per_layer, layers)]  # fmt: skip
    bits = [np.asarray(b, float) / o["layout"].d for b in o["bits"][code]]
    hulls = [_lower_hull(b, c) for b, c in zip(bits, costs)]
    seg = [(u, h[k], h[k + 1]) for u, h in enumerate(hulls) for k in range(len(h) - 1)]
    db = np.array([bits[u][j] - bits[u][i] for u, i, j in seg])
    de = np.array([costs[u][j] - costs[u][i] for u, i, j in seg])
    order = np.argsort(de / db, kind="stable") if seg else np.zeros(0, np.int64)
    b0 = sum(float(b[h[0]]) for b, h in zip(bits, hulls))
    e0 = sum(float(c[h[0]]) for c, h in zip(costs, hulls))
    return np.concatenate([[b0], b0 + np.cumsum(db[order])]), np.concatenate([[e0], e0 + np.cumsum(de[order])])


def lower_frontier(b, e, budget: float) -> tuple[float, int, float, int] | None:
    """The least ``λ·e_i + (1−λ)·e_j`` over pairs with ``λ·b_i + (1−λ)·b_j ≤ budget`` (time-sharing
    points ``i`` and ``j``): ``(value, i, λ, j)`` — ``j = i`` and ``λ = 1`` when one point is best
    alone — or ``None`` if no point costs ``≤ budget``.  Non-finite points are skipped."""
    b, e = np.asarray(b, float), np.asarray(e, float)
    ok = np.isfinite(b) & np.isfinite(e)
    lo = np.flatnonzero(ok & (b <= budget))
    if lo.size == 0:
        return None
    i = int(lo[np.argmin(e[lo])])
    best = (float(e[i]), i, 1.0, i)
    hi = np.flatnonzero(ok & (b > budget))
    if hi.size:
        lam = (b[hi][None, :] - budget) / (b[hi][None, :] - b[lo][:, None])
        val = lam * e[lo][:, None] + (1.0 - lam) * e[hi][None, :]
        k = np.unravel_index(int(np.argmin(val)), val.shape)
        if val[k] < best[0]:
            best = (float(val[k]), int(lo[k[0]]), float(lam[k]), int(hi[k[1]]))
    return best


def frontier_at(points, budget: float, code: str, metric: str = "variance"):
    """The least ``metric`` (``"variance"`` or ``"mean_layer_rel"``) reachable at ``budget`` bits per
    coordinate under ``code`` by time-sharing two of ``points``.

    Using quantizer A for a fraction ``λ`` of the messages and B for the rest costs
    ``λ·b_A + (1−λ)·b_B`` bits per coordinate in expectation and has expected error
    ``λ·e_A + (1−λ)·e_B`` (both metrics are expectations, linear in the mixture), so every point of the
    lower convex hull of the ``(bits, error)`` pairs is reachable (:func:`lower_frontier`).  Returns
    ``(value, (A, λ, B))`` — ``λ = 1`` and ``B = A`` when one point is best alone — or ``None`` if no
    point costs ``≤ budget``.  Points without ``code`` in their bits are skipped.
    """
    check_choice(metric, "metric", ("variance", "mean_layer_rel"))
    pts = [p for p in points if p is not None and code in p.bits]
    got = lower_frontier([p.bits[code] for p in pts], [getattr(p, metric) for p in pts], budget)
    if got is None:
        return None
    value, i, lam, j = got
    return value, (pts[i], lam, pts[j])
