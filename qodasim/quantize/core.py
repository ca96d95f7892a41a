"""Global and layer-wise unbiased stochastic quantizers (THEORY §1–2).

The quantizers' own job; the rest of the pipeline stage lives beside it — argument checks
(:mod:`.validation`), engines (:mod:`.engine`), norms (:mod:`.norms`), the quantized vector and its
dequantization (:mod:`.vector`), layouts (:mod:`.layers`) and plans (:mod:`.plan`); the names this
module used to define are imported here and listed in ``__all__``.

``Q(v)_i = n_g · sign(v_i) · ξ_i`` where ``n_g`` is the ``q``-norm of the group holding ``i`` (the
whole vector, a layer, or a bucket), ``r_i = |v_i|/n_g`` and ``ξ_i`` is the unbiased stochastic
rounding of ``r_i`` onto the levels of the coordinate's type.

**The norm that is sent is the norm that is used.**  Norms travel as float32 (THEORY §3), so each
``n_g`` is the float64 norm rounded *up* to the next float32.  Then ``|v_i| ≤ n_g`` still holds, every
``r_i ∈ [0, 1]``, and ``E[Q(v)] = v`` exactly — with no bias from the float32 cast.  The exact variance
(:func:`exact_variance`) uses the same ``n_g``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..levels import Levels, smallest_index_dtype
from ..rng import Key, as_key, stream_bases, stream_bases_of_keys
from .engine import ENGINES, cuda_available, get_engine, stage
from .layers import LayerLayout
from .norms import compute_norms, round_up_to_float32, vector_norm
from .plan import Plan, PlanSpec, cached_plan, cached_tile
from .validation import NormRangeError, check_bucket, check_norm_range, check_out, check_q, check_vector
from .vector import QuantizedVector, dequantize, dequantize_batch, dequantize_sum, level_tables, worker_sums

__all__ = [
    "ENGINES",
    "BaseQuantizer",
    "LayerwiseQuantizer",
    "NormRangeError",
    "QuantizedVector",
    "Quantizer",
    "cached_plan",
    "compute_norms",
    "cuda_available",
    "dequantize",
    "dequantize_batch",
    "dequantize_sum",
    "exact_variance",
    "get_engine",
    "round_up_to_float32",
    "segment_bases",
    "segment_scales",
    "vector_norm",
    "worker_sums",
]


def segment_scales(plan: Plan, norms32: np.ndarray, type_uni: np.ndarray) -> np.ndarray:
    """Per segment ``c = s/n`` (uniform type) or ``1/n`` (other types); 0 where ``n = 0``.

    Kernels compute ``r = |v_i|·c`` (or ``t = s·r`` directly), so ``r`` carries one extra rounding
    compared with ``|v_i|/n`` (relative ``2^{-52}``), and is clamped to 1 for general levels.
    """
    n = norms32.astype(np.float64)[plan.seg_group]
    su = type_uni[plan.seg_type]
    num = np.where(su > 0, su, 1).astype(np.float64)
    safe = np.where(n > 0.0, n, 1.0)
    return np.where(n > 0.0, num / safe, 0.0)


class BaseQuantizer:
    """Shared machinery of the global and layer-wise quantizers.

    Subclasses define ``type_levels`` and :meth:`plan`.  Every quantizer has ``engine``.
    """

    engine: str
    type_levels: tuple[Levels, ...]

    def plan(self, d: int, layout: LayerLayout | None = None) -> Plan:  # pragma: no cover - abstract
        """The kernel plan for dimension ``d`` (tasks, segments, norm groups, stream addresses)."""
        raise NotImplementedError

    @property
    def dimension(self) -> int | None:
        """The fixed dimension this quantizer accepts, or ``None`` for any."""
        return None

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return level_tables(self.type_levels)

    def _engine_buckets(self, eng):
        """The engine's lookup tables for these levels (``Engine.bucket_tables``), built once per engine
        (the levels are fixed); ``None`` for an engine without them."""
        if eng.bucket_tables is None:
            return None
        cache = self.__dict__.setdefault("_engine_tables", {})
        tables = cache.get(eng.name)
        if tables is None:
            tables = cache[eng.name] = eng.bucket_tables(*self._tables)
        return tables

    @property
    def index_dtype(self) -> np.dtype:
        """The smallest unsigned integer dtype that holds every level index (``uint8`` up to 256 levels)."""
        return smallest_index_dtype(max(lv.size for lv in self.type_levels))

    def _prepare(self, v, layout):
        """``(v, staged v, plan, engine, float32 norms)``: the norm pass, ``v`` staged once for the engine."""
        v = check_vector(v)
        plan = self.plan(v.size, layout)
        eng = get_engine(self.engine)
        sv = stage(eng, v)
        norms = compute_norms(v, plan, eng, staged=sv)
        n32 = round_up_to_float32(norms)
        check_norm_range(n32)
        return v, sv, plan, eng, n32

    def norms(self, v, layout: LayerLayout | None = None) -> np.ndarray:
        """The float32 norms ``n_g`` this quantizer would use for ``v``."""
        return self._prepare(v, layout)[4]

    def quantize(self, v, key, layout: LayerLayout | None = None, *, out=None) -> QuantizedVector:
        """Quantize ``v`` with the random key ``key`` (a :class:`~qodasim.rng.Key` or an int seed).

        ``layout`` (global quantizer only) sets the random-stream addresses ``(layer, index)`` of the
        coordinates; by default the vector is one layer.

        ``out``, optional, is a pair ``(indices, signs)`` of preallocated arrays to write into
        (C-contiguous, writeable, shape ``(d,)``, dtypes :attr:`index_dtype` and ``int8``, not
        overlapping ``v``) — for instance the arrays of a result that is no longer needed.  For large
        ``d`` this saves the page faults of fresh memory, which cost as much as the rounding itself
        (BENCHMARKS.md).  The returned :class:`QuantizedVector` then holds these arrays.
        """
        key = as_key(key)
        if layout is None:
            fast = self._fast_quantize(v, key, out)
            if fast is not None:
                return fast
        v, sv, plan, eng, n32 = self._prepare(v, layout)
        if out is not None:
            out = check_out(out, v, self.index_dtype)
        lv, lv_start, type_uni = self._tables
        seg_base = segment_bases(plan, key)
        scale = segment_scales(plan, n32, type_uni)
        idx, sign = eng.round(sv, scale, plan, seg_base, lv, lv_start, type_uni, self.index_dtype, out,
                              self._engine_buckets(eng))  # fmt: skip
        return QuantizedVector._trusted(idx, sign, n32, plan, self.type_levels, v.dtype, key)

    def _fast_quantize(self, v, key: Key, out) -> QuantizedVector | None:
        """The one-call path for a small vector (one task, one segment, one norm, ``q ∈ {2, ∞}``, the
        Numba engine): bit for bit the general path (tested), or ``None`` to take the general path."""
        if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype.char not in "fd":
            return None
        cache = self.__dict__.setdefault("_fast", {})  # d -> (plan, q) when eligible, else False
        entry = cache.get(v.size)
        if entry is None:
            entry = self._fast_entry(v.size)
            if len(cache) >= 64:
                cache.clear()
            cache[v.size] = entry
        if entry is False:
            return None
        plan, q, eng, (bt, bt_start, bt_G) = entry
        v = np.ascontiguousarray(v)
        if out is not None:
            idx, sign = check_out(out, v, self.index_dtype)
        else:
            idx, sign = np.empty(v.size, self.index_dtype), np.empty(v.size, np.int8)
        lv, lv_start, type_uni = self._tables
        n = eng.quantize_single_task(v, plan.task_start, plan.task_end, plan.seg_type, plan.seg_shift, plan.task_seg,
                                 q, lv, lv_start, type_uni, bt, bt_start, bt_G, *key._words, idx, sign)  # fmt: skip
        if n < 0.0:
            return None
        return QuantizedVector._trusted(idx, sign, np.array([n], np.float32), plan, self.type_levels, v.dtype, key)

    def _fast_entry(self, d: int):
        """``(plan, q, engine, its bucket tables)`` if a vector of dimension ``d`` can take
        :meth:`_fast_quantize`, else ``False`` (also for an engine without ``quantize_single_task``)."""
        eng = get_engine(self.engine)
        if eng.quantize_single_task is None or d == 0:
            return False
        plan = self.plan(d)
        if plan.task_start.size != 1 or plan.n_segments != 1 or plan.n_groups != 1 or plan.seg_layer[0] != 0:
            return False
        q = float(plan.group_q[0])
        return (plan, q, eng, self._engine_buckets(eng)) if (q == 2.0 or np.isinf(q)) else False

    def quantize_batch(self, V, keys, layout: LayerLayout | None = None) -> list[QuantizedVector]:
        """Quantize the rows of ``V`` (shape ``(B, d)``) with one key each, in one kernel pass.

        Bit-for-bit the same as ``[quantize(V[b], keys[b]) for b in range(B)]``: the batch runs on
        the row plan tiled ``B`` times (``qodasim.quantize.plan.tile_plan``).
        """
        V = np.asarray(V) if not isinstance(V, np.ndarray) else V
        if V.ndim != 2 or V.shape[0] == 0:
            raise ValueError(f"V must be 2-D with at least one row, got shape {V.shape}")
        keys = [as_key(k) for k in keys]
        if len(keys) != V.shape[0]:
            raise ValueError(f"keys has {len(keys)} entries but V has {V.shape[0]} rows")
        B, d = V.shape
        flat = check_vector(np.ascontiguousarray(V).reshape(-1), "V")
        plan = self.plan(d, layout)
        tplan = cached_tile(plan, B)
        eng = get_engine(self.engine)
        sflat = stage(eng, flat)
        n32 = round_up_to_float32(compute_norms(flat, tplan, eng, staged=sflat))
        check_norm_range(n32, "V")
        lv, lv_start, type_uni = self._tables
        seg_base = batch_segment_bases(plan, keys)
        idx, sign = eng.round(sflat, segment_scales(tplan, n32, type_uni), tplan, seg_base, lv, lv_start, type_uni,
                              self.index_dtype, None, self._engine_buckets(eng))  # fmt: skip
        G = plan.n_groups
        return [
            QuantizedVector._trusted(idx[b * d : (b + 1) * d], sign[b * d : (b + 1) * d], n32[b * G : (b + 1) * G],
                                     plan, self.type_levels, flat.dtype, keys[b])
            for b in range(B)
        ]  # fmt: skip

    def __call__(self, v, key, layout: LayerLayout | None = None) -> np.ndarray:
        """``Q(v)`` as a float vector (quantize, then dequantize)."""
        return self.quantize(v, key, layout).dequantize()

    def intervals(self, v, layout: LayerLayout | None = None):
        """``(j, ρ, norms32, plan)``: interval and up-probability of every coordinate (no randomness)."""
        _, sv, plan, eng, n32 = self._prepare(v, layout)
        lv, lv_start, type_uni = self._tables
        j, rho = eng.intervals(sv, segment_scales(plan, n32, type_uni), plan, lv, lv_start, type_uni)
        return j, rho, n32, plan

    def exact_variance(self, v, layout: LayerLayout | None = None, normalized: bool = False) -> float:
        """``E‖Q(v) − v‖² = Σ_g n̂_g² Σ_{i∈g} φ_ℓ(r_i)`` exactly, with ``r_i = |v_i|/n̂_g`` (THEORY §1–2).

        ``n̂_g`` is the **transmitted** norm (the float64 norm rounded up to float32), the one the
        receiver multiplies by; so this is the exact variance of what is sent, not of an idealized
        quantizer with the true norm.  Relative to the true norm it carries the factor
        ``(n̂_g/‖v_g‖)² ≤ (1 + 2^{-23})²`` (THEORY §1).

        With ``normalized=True`` the result is divided by ``‖v‖_2²`` (the normalized variance; 0 for
        the zero vector), computed as ``Σ_g (n̂_g/‖v‖_2)² Σ φ`` so that ``‖v‖²`` is never formed (it
        would underflow or overflow for tiny or huge vectors).  The norms are the deterministic
        ones of :func:`vector_norm`.
        """
        v, sv, plan, eng, n32 = self._prepare(v, layout)
        lv, lv_start, type_uni = self._tables
        n64 = n32.astype(np.float64)
        phi = eng.task_phi(sv, segment_scales(plan, n32, type_uni), plan, lv, lv_start, type_uni)
        if normalized:
            nv = vector_norm(v, engine=self.engine)
            if nv == 0.0:
                return 0.0
            ratio = n64 / nv
            return float(np.sum(ratio * ratio * phi))
        return float(np.sum(n64 * n64 * phi))

    def coordinate_variance(self, v, layout: LayerLayout | None = None) -> np.ndarray:
        """Per-coordinate exact variance ``n_g² φ_ℓ(r_i) = n_g² ρ_i(1 − ρ_i)(ℓ_{j+1} − ℓ_j)²``."""
        return self.coordinate_variance_of_intervals(*self.intervals(v, layout))

    def coordinate_variance_of_intervals(self, j, rho, n32, plan) -> np.ndarray:
        """:meth:`coordinate_variance` from :meth:`intervals`' ``(j, ρ, norms32, plan)`` (for callers
        that also need the intervals, e.g. for the code lengths)."""
        lv, lv_start, _ = self._tables
        base = lv_start[plan.coord_type()]
        width = lv[base + j + 1] - lv[base + j]
        n = n32.astype(np.float64)[plan.coord_group()]
        return n * n * rho * (1.0 - rho) * width * width


def segment_bases(plan: Plan, key: Key) -> np.ndarray:
    """Stream base of every segment: ``stream_base(key, layer)`` (vectorized over segments)."""
    return stream_bases(key, plan.seg_layer)


def batch_segment_bases(plan: Plan, keys) -> np.ndarray:
    """``segment_bases(plan, k)`` for every key of ``keys``, concatenated (the rows of a batch)."""
    return stream_bases_of_keys(keys, plan.seg_layer)


@dataclass(frozen=True)
class Quantizer(BaseQuantizer):
    """Global quantizer: one level sequence, one norm (or one per bucket) — QSGD, NUQSGD, ALQ, Q-GenX.

    Parameters
    ----------
    levels : Levels
        The level sequence ``ℓ``.
    q : float
        Norm order, ``q ≥ 1`` or ``np.inf`` (THEORY §1; ``q = 2`` is the theory's default).
    bucket_size : int, optional
        Quantize consecutive blocks of this size with their own norms (every bound then holds with
        ``b`` for ``d``).
    engine : {"numba", "numpy"}
        Compiled kernels or the NumPy reference.

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim import Key, Levels, Quantizer
    >>> Q = Quantizer(Levels.uniform(4))
    >>> v = np.array([0.3, -0.4, 0.0, 1.2])
    >>> qv = Q.quantize(v, Key(0))
    >>> qv.indices, qv.signs, qv.norms  # level indices, signs, the transmitted float32 norm
    (array([1, 1, 0, 3], dtype=uint8), array([ 1, -1,  1,  1], dtype=int8), array([1.3000001], dtype=float32))
    >>> qv.dequantize()
    array([ 0.32500002, -0.32500002,  0.        ,  0.97500005])
    >>> round(Q.exact_variance(v), 6)  # E‖Q(v) − v‖², exactly (n̂² Σ φ(r_i))
    0.04875
    """

    levels: Levels
    q: float = 2.0
    bucket_size: int | None = None
    engine: str = "numba"

    def __post_init__(self) -> None:
        if not isinstance(self.levels, Levels):
            raise TypeError(f"levels must be a qodasim.Levels, got {type(self.levels).__name__}")
        object.__setattr__(self, "q", check_q(self.q))
        check_bucket(self.bucket_size)
        get_engine(self.engine)
        object.__setattr__(self, "_plans", {})  # ("d", d) / ("id", id(layout)) -> plan: no rebuild per call

    @property
    def type_levels(self) -> tuple[Levels, ...]:
        """The level sequence of each type: ``(levels,)`` (a global quantizer has one type)."""
        return (self.levels,)

    def plan(self, d: int, layout: LayerLayout | None = None) -> Plan:
        """The kernel plan for dimension ``d``: tasks, segments, norm groups and stream addresses.

        ``layout`` only sets the random-stream addresses ``(layer, index)``; every coordinate uses
        ``levels``.  Raises ``ValueError`` if ``layout.d != d``."""
        if layout is None:
            hit = self._plans.get(("d", d))
            if hit is not None:
                return hit
            if len(self._plans) >= 64:
                self._plans.clear()
            plan = self._plans["d", d] = self.plan(d, LayerLayout.single(d))
            return plan
        elif not isinstance(layout, LayerLayout):
            raise TypeError(f"layout must be a LayerLayout, got {type(layout).__name__}")
        elif layout.d != d:
            raise ValueError(f"v has length {d} but layout has d = {layout.d}")
        hit = self._plans.get(("id", id(layout)))  # the same layout object again: its plan (layouts are immutable)
        if hit is not None and hit[0] is layout:
            return hit[1]
        flat = LayerLayout(layout.sizes)  # the global quantizer uses one type everywhere
        plan = cached_plan(PlanSpec(flat, "global", (self.q,), (0,), check_bucket(self.bucket_size)))
        if len(self._plans) >= 64:
            self._plans.clear()
        self._plans["id", id(layout)] = (layout, plan)
        return plan


def _per_type(value, n_types: int, name: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != n_types:
            raise ValueError(f"{name} has {len(value)} entries but there are {n_types} types")
        return tuple(value)
    return (value,) * n_types


@dataclass(frozen=True)
class LayerwiseQuantizer(BaseQuantizer):
    """Layer-wise quantizer (QODA): layer ``l`` uses the levels of its type ``m(l)``.

    Parameters
    ----------
    layout : LayerLayout
        Layers (sizes) and their types ``m(l) ∈ {0..M-1}``.
    levels : Levels or sequence of Levels
        One level sequence per type (a single ``Levels`` is used for every type).
    scope : {"layer", "global"}
        Normalization scope: one norm per layer (or per bucket inside a layer), or one global norm
        for the whole vector (THEORY §1).  ``M = 1`` with ``scope="global"`` is the global quantizer.
    q : float or sequence of float
        Norm order per type (with ``scope="global"`` all types must share it).
    bucket_size : int or sequence of (int or None), optional
        Bucket size per type (``scope="layer"`` only).
    engine : {"numba", "numpy"}

    Examples
    --------
    Two layers of two types, each type with its own levels and each layer with its own norm:

    >>> import numpy as np
    >>> from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels
    >>> layout = LayerLayout([3, 2], types=[0, 1])
    >>> Q = LayerwiseQuantizer(layout, (Levels.uniform(4), Levels.exponential(2)))
    >>> Q.quantize(np.array([1.0, -2.0, 0.5, 0.01, 0.02]), Key(1, 2, 3)).norms
    array([2.291288  , 0.02236068], dtype=float32)
    """

    layout: LayerLayout
    levels: tuple[Levels, ...]
    scope: str = "layer"
    q: float | tuple = 2.0
    bucket_size: int | None | tuple = None
    engine: str = "numba"

    def __post_init__(self) -> None:
        if not isinstance(self.layout, LayerLayout):
            raise TypeError(f"layout must be a LayerLayout, got {type(self.layout).__name__}")
        m = self.layout.n_types
        levels = self.levels
        if isinstance(levels, Levels):
            levels = (levels,) * m
        levels = tuple(levels)
        if len(levels) != m:
            raise ValueError(f"levels has {len(levels)} sequences but the layout has {m} types")
        for lv in levels:
            if not isinstance(lv, Levels):
                raise TypeError(f"levels must hold qodasim.Levels, got {type(lv).__name__}")
        object.__setattr__(self, "levels", levels)
        qs = tuple(check_q(x) for x in _per_type(self.q, m, "q"))
        buckets = tuple(check_bucket(b) for b in _per_type(self.bucket_size, m, "bucket_size"))
        if self.scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if self.scope == "global" and any(buckets):
            raise ValueError("bucket_size needs scope='layer' (buckets have their own norms)")
        if self.scope == "global" and len(set(qs)) > 1:
            raise ValueError("q: with scope='global' every type must use the same norm order")
        object.__setattr__(self, "_qs", qs)
        object.__setattr__(self, "_buckets", buckets)
        get_engine(self.engine)

    @property
    def type_levels(self) -> tuple[Levels, ...]:
        """The level sequence ``ℓ^m`` of each type ``m`` (QODA's layer-wise quantization)."""
        return self.levels

    @property
    def dimension(self) -> int:
        """The dimension ``d`` fixed by the layout."""
        return self.layout.d

    def plan(self, d: int, layout: LayerLayout | None = None) -> Plan:
        """The kernel plan of the layout (``d`` must equal the layout's; ``layout`` may only be the quantizer's own)."""
        if layout is not None and layout is not self.layout and layout != self.layout:
            raise ValueError("layout: a LayerwiseQuantizer uses its own layout")
        if d != self.layout.d:
            raise ValueError(f"v has length {d} but the layout has d = {self.layout.d}")
        plan = self.__dict__.get("_plan")
        if plan is None:  # one layout, one plan: built once per quantizer
            plan = cached_plan(PlanSpec(self.layout, self.scope, self._qs, self._buckets, 0))
            object.__setattr__(self, "_plan", plan)
        return plan


def exact_variance(v, quantizer: BaseQuantizer, layout: LayerLayout | None = None, normalized: bool = False) -> float:
    """Exact ``E‖Q(v) − v‖²`` of one draw of ``quantizer`` at ``v`` (THEORY §2).

    See :meth:`~qodasim.quantize.BaseQuantizer.exact_variance`.
    """
    if not isinstance(quantizer, BaseQuantizer):
        raise TypeError(f"quantizer must be a qodasim quantizer, got {type(quantizer).__name__}")
    return quantizer.exact_variance(v, layout=layout, normalized=normalized)
