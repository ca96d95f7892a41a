"""Global and layer-wise unbiased stochastic quantizers (THEORY §1–2).

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
from dataclasses import dataclass, field, fields

import numpy as np

from ..levels import Levels, smallest_index_dtype
from ..rng import Key, as_key, stream_bases, stream_bases_of_keys
from . import _scalar
from .plan import LayerLayout, Plan, PlanSpec, build_plan, tile_plan

__all__ = [
    "QuantizedVector",
    "Quantizer",
    "LayerwiseQuantizer",
    "dequantize",
    "dequantize_batch",
    "dequantize_sum",
    "exact_variance",
    "get_engine",
    "vector_norm",
    "NormRangeError",
    "ENGINES",
]

#: Engine names: Numba kernels (default), the plain NumPy reference, CUDA (numba-cuda).
ENGINES = ("numba", "numpy", "cuda")
_F32_MAX = float(np.finfo(np.float32).max)
#: Smallest positive normal float32 (~1.18e-38): a transmitted norm below it loses relative precision.
F32_TINY = _scalar.F32_TINY


class NormRangeError(ValueError):
    """A nonzero norm outside the float32 normal range ``[~1.18e-38, ~3.4e38]`` (THEORY §1).

    Norms are sent as float32 rounded up; outside the normal range the transmitted norm ``n̂`` is
    no longer within a factor ``1 + 2^{-23}`` of the true one, so the variance bounds would not hold.
    Rescale the vector (or, in a solver, treat it as divergence).
    """


def check_norm_range(n32: np.ndarray, name: str = "v") -> None:
    """Raise :class:`NormRangeError` if a nonzero float32 norm is Inf or below the normal range."""
    if np.any(np.isinf(n32)):
        raise NormRangeError(f"{name}: a norm exceeds the float32 range ({_F32_MAX:.4g}; norms are sent as float32)")
    if np.any((n32 > 0) & (n32 < F32_TINY)):
        raise NormRangeError(
            f"{name}: a nonzero norm lies below the float32 normal range ({F32_TINY:.4g}); rescale the vector"
        )


# Outside this range of max|v_i|, Σ v_i² may overflow or lose precision in float64: rescale first.
_SAFE_LO, _SAFE_HI = _scalar.SAFE_LO, _scalar.SAFE_HI


def get_engine(name: str):
    """The engine module for ``name`` (``"numba"``, ``"numpy"`` or ``"cuda"``)."""
    if name == "numba":
        from . import _numba_engine

        return _numba_engine
    if name == "numpy":
        from . import _numpy

        return _numpy
    if name == "cuda":
        return _cuda_engine()
    raise ValueError(f"engine must be one of {ENGINES}, got {name!r}")


def cuda_available() -> bool:
    """Whether ``engine="cuda"`` can run here (a GPU with a driver, or the CUDA simulator)."""
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install must read as "not available"
        return False


def _cuda_engine():
    if not cuda_available():
        raise ValueError(
            "engine='cuda' needs an NVIDIA GPU with a working driver and numba-cuda "
            "(pip install 'qodasim[cuda]'), or the CUDA simulator (set NUMBA_ENABLE_CUDASIM=1 before "
            "importing numba); use engine='numba' on the CPU"
        )
    from . import _cuda_engine as eng

    return eng


def check_vector(v, name: str = "v") -> np.ndarray:
    """Validate a vector to quantize: non-empty, float32/float64 (lists become float64); an N-D array
    (a layer's weight-shaped gradient) is read in C order as its flat vector."""
    if not isinstance(v, np.ndarray):
        try:
            v = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a float32 or float64 array: {exc}") from None
    if v.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {v.dtype}")
    if v.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {v.shape}")
    return np.ascontiguousarray(v).reshape(-1)


_INT8 = np.dtype(np.int8)


def check_out(out, v: np.ndarray, index_dtype) -> tuple[np.ndarray, np.ndarray]:
    """Validate preallocated ``(indices, signs)`` output arrays for a vector ``v`` (``index_dtype``:
    the quantizer's, a ``numpy.dtype``)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a pair (indices, signs) of arrays, got {type(out).__name__}")
    for name, arr, dt in (("out[0] (indices)", out[0], index_dtype), ("out[1] (signs)", out[1], _INT8)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != dt:
            raise TypeError(f"{name} must have dtype {dt}, got {arr.dtype}")
        if arr.shape != v.shape:
            raise ValueError(f"{name} must have shape {v.shape}, got {arr.shape}")
        if not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError(f"{name} must be C-contiguous and writeable")
        if np.may_share_memory(arr, v):
            raise ValueError(f"{name} overlaps the input vector")
    if np.may_share_memory(out[0], out[1]):
        raise ValueError("out: the indices and signs arrays overlap")
    return out[0], out[1]


def _check_q(q) -> float:
    try:
        qf = float(q)
    except (TypeError, ValueError):
        raise TypeError(f"q must be a number >= 1 or inf, got {q!r}") from None
    if not (qf >= 1.0):  # also rejects NaN
        raise ValueError(f"q must be >= 1 (or inf), got {q!r}")
    return qf


def _check_bucket(b) -> int:
    if b is None:
        return 0
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"bucket_size must be a positive integer or None, got {b!r}")
    return int(b)


def stage(engine, v: np.ndarray):
    """``v`` as ``engine`` reads it: the CUDA engine's one device copy per call, else ``v`` itself."""
    return engine.stage(v) if hasattr(engine, "stage") else v


def round_up_to_float32(x: np.ndarray) -> np.ndarray:
    """Smallest float32 ``≥ x`` elementwise (float64 in, float32 out)."""
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    low = f.astype(np.float64) < x
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def compute_norms(v: np.ndarray, plan: Plan, engine, staged=None) -> np.ndarray:
    """Float64 ``q``-norms of the plan's groups, deterministic for a given engine family.

    ``q = ∞``: ``max |v_i|``.  ``q = 2`` with ``max|v_i|`` in ``[1e-150, 1e150]``: ``√Σ v_i²``.
    Otherwise ``m·(Σ (|v_i|/m)^q)^{1/q}`` with ``m = max |v_i|`` (no overflow, no underflow).
    Raises ``ValueError`` if ``v`` holds NaN or Inf.  ``staged``, optional, is ``v`` as the engine
    already holds it (the CUDA engine's device copy, see :func:`stage`); the kernels read it.
    """
    from ._numba import combine_max, combine_sum  # serial combiners, shared by every engine

    kv = v if staged is None else staged
    mx, ss = engine.task_stats(kv, plan)
    if not np.all(np.isfinite(ss)) and not np.all(np.isfinite(v)):
        raise ValueError("v contains NaN or Inf")
    tg = plan.seg_group[plan.task_seg]
    gmax = combine_max(tg, mx, plan.n_groups)
    gss = combine_sum(tg, ss, plan.n_groups)
    q = plan.group_q
    norms = np.where(np.isinf(q), gmax, np.sqrt(gss))
    need = ~np.isinf(q) & (gmax > 0.0) & ((q != 2.0) | (gmax < _SAFE_LO) | (gmax > _SAFE_HI))
    if need.any():
        part = engine.task_powsum(kv, plan, gmax, q, need)
        ps = combine_sum(tg, part, plan.n_groups)
        with np.errstate(divide="ignore"):
            scaled = gmax * np.where(q == 2.0, np.sqrt(ps), ps ** (1.0 / np.where(need, q, 1.0)))
        norms = np.where(need, scaled, norms)
    return norms


@dataclass(frozen=True, eq=False)
class QuantizedVector:
    """The compact result of a quantizer (what the coding layer sends).

    Attributes
    ----------
    indices : ndarray of uint8/uint16/uint32
        Level index ``j ∈ {0..α+1}`` of each coordinate, in the smallest dtype that holds them.
    signs : ndarray of int8
        ``±1`` per coordinate, canonical: ``+1`` wherever the level index is 0.
    norms : ndarray of float32
        One norm per group of ``plan`` (rounded up to float32; see the module docstring).
    plan : Plan
        Groups, segments and types.
    levels : tuple of Levels
        The level sequence of each type.
    dtype : numpy.dtype
        The dtype of the input vector, restored by :func:`dequantize`.
    key : Key
        The random key used.
    """

    indices: np.ndarray
    signs: np.ndarray
    norms: np.ndarray
    plan: Plan
    levels: tuple[Levels, ...]
    dtype: np.dtype
    key: Key
    #: Set by the quantizers and decoders, which produce valid contents; a vector built by hand (or by
    #: ``dataclasses.replace``) starts unchecked and is validated before any kernel reads it.
    _checked: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def _trusted(cls, *args) -> QuantizedVector:
        """A vector of valid contents (made by a quantizer or decoder), fields in ``__init__``'s order.

        Fills the instance's ``__dict__`` as the generated ``__init__`` would (the frozen dataclass's
        ``object.__setattr__`` per field costs ~1 µs of a small vector's ~10 µs call) and marks it checked.
        """
        qv = object.__new__(cls)
        qv.__dict__.update(zip(_QV_FIELDS, args), _checked=True)
        return qv

    @property
    def d(self) -> int:
        """Dimension of the quantized vector."""
        return self.plan.d

    def validate(self) -> QuantizedVector:
        """Check the contents before a kernel indexes with them; returns ``self``.

        Raises ``TypeError`` / ``ValueError`` naming the field: ``indices`` (unsigned integers, shape
        ``(d,)``, each below its type's number of levels), ``signs`` (int8 ``±1``, shape ``(d,)``),
        ``norms`` (float32, one per norm group, finite, ``≥ 0``), ``plan``, ``levels``, ``dtype``.
        Vectors made by the quantizers and decoders are valid by construction and skip the scan.
        """
        if self._checked:
            return self
        if not isinstance(self.plan, Plan):
            raise TypeError(f"plan must be a qodasim Plan, got {type(self.plan).__name__}")
        levels = self.levels
        if not isinstance(levels, tuple) or not all(isinstance(lv, Levels) for lv in levels):
            raise TypeError("levels must be a tuple of qodasim.Levels")
        n_types = self.plan.layout.n_types
        if len(levels) != n_types:
            raise ValueError(f"levels has {len(levels)} sequences but the plan has {n_types} types")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        d = self.plan.d
        for name, arr in (("indices", self.indices), ("signs", self.signs)):
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
            if arr.shape != (d,):
                raise ValueError(f"{name} must have shape ({d},), got {arr.shape}")
        if self.indices.dtype.kind != "u":
            raise TypeError(f"indices must have an unsigned integer dtype, got {self.indices.dtype}")
        if self.signs.dtype != np.int8:
            raise TypeError(f"signs must have dtype int8, got {self.signs.dtype}")
        if d and not np.all(np.abs(self.signs) == 1):
            raise ValueError("signs must be +1 or -1")
        norms = self.norms
        if not isinstance(norms, np.ndarray) or norms.dtype != np.float32:
            raise TypeError("norms must be a float32 array")
        if norms.shape != (self.plan.n_groups,):
            raise ValueError(f"norms must have shape ({self.plan.n_groups},), got {norms.shape}")
        if not (np.all(np.isfinite(norms)) and np.all(norms >= 0)):
            raise ValueError("norms must be finite and non-negative")
        top = np.array([lv.size - 1 for lv in levels], np.int64)
        seg_top = top[self.plan.seg_type]
        if seg_top.min() == seg_top.max():
            bad = d and int(self.indices.max()) > int(seg_top[0])
        else:
            bad = bool(np.any(self.indices > np.repeat(seg_top, np.diff(self.plan.seg_bounds))))
        if bad:
            raise ValueError("indices: a level index is past its type's level table")
        object.__setattr__(self, "_checked", True)
        return self

    def dequantize(self, dtype=None, engine: str = "numba") -> np.ndarray:
        """The quantized vector ``Q(v)`` as floats (see :func:`dequantize`)."""
        return dequantize(self, dtype=dtype, engine=engine)

    def equals(self, other: QuantizedVector) -> bool:
        """Bitwise equality of indices, signs, norms, plan segmentation and levels."""
        return (
            np.array_equal(self.indices, other.indices)
            and self.indices.dtype == other.indices.dtype
            and np.array_equal(self.signs, other.signs)
            and np.array_equal(self.norms.view(np.uint32), other.norms.view(np.uint32))
            and np.array_equal(self.plan.seg_bounds, other.plan.seg_bounds)
            and np.array_equal(self.plan.group_bounds, other.plan.group_bounds)
            and self.levels == other.levels
        )


def level_tables(levels: tuple[Levels, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated level tables, their start offsets (``lv_start[m]..lv_start[m+1]``), and per type
    ``s`` if its levels are uniform (else 0)."""
    lv = np.ascontiguousarray(np.concatenate([lv_.values for lv_ in levels]))
    lv_start = np.concatenate([[0], np.cumsum([lv_.size for lv_ in levels])]).astype(np.int64)
    type_uni = np.array([lv_.uniform_s for lv_ in levels], np.int64)
    return lv, lv_start, type_uni


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


def _float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64 (``TypeError`` otherwise)."""
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if out not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {out}")
    return out


def dequantize(qv: QuantizedVector, dtype=None, engine: str = "numba") -> np.ndarray:
    """``Q(v)_i = n_g · sign_i · ℓ^{m}_{j_i}`` in ``dtype`` (default: the input's dtype)."""
    if not isinstance(qv, QuantizedVector):
        raise TypeError(f"qv must be a QuantizedVector, got {type(qv).__name__}")
    qv.validate()
    eng = get_engine(engine)
    lv, lv_start, _ = level_tables(qv.levels)
    out_dtype = _float_dtype(qv.dtype if dtype is None else dtype)
    return eng.dequantize(qv.indices, qv.signs, qv.norms.astype(np.float64), qv.plan, lv, lv_start, out_dtype)


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

    @functools.cached_property
    def _bucket_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-uniform types' bucket tables for the Numba kernels (``_numba.bucket_tables``), built
        once: the levels are fixed."""
        from ._numba import bucket_tables

        return bucket_tables(*self._tables)

    def _engine_buckets(self, eng):
        return self._bucket_tables if eng.name == "numba" else None

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
        plan, q = entry
        v = np.ascontiguousarray(v)
        if out is not None:
            idx, sign = check_out(out, v, self.index_dtype)
        else:
            idx, sign = np.empty(v.size, self.index_dtype), np.empty(v.size, np.int8)
        lv, lv_start, type_uni = self._tables
        bt, bt_start, bt_G = self._bucket_tables
        n = _single_task_kernel()(v, plan.task_start, plan.task_end, plan.seg_type, plan.seg_shift, plan.task_seg,
                                 q, lv, lv_start, type_uni, bt, bt_start, bt_G, *key._words, idx, sign)  # fmt: skip
        if n < 0.0:
            return None
        return QuantizedVector._trusted(idx, sign, np.array([n], np.float32), plan, self.type_levels, v.dtype, key)

    def _fast_entry(self, d: int):
        """``(plan, q)`` if a vector of dimension ``d`` can take :meth:`_fast_quantize`, else ``False``."""
        if self.engine != "numba" or d == 0:
            return False
        plan = self.plan(d)
        if plan.task_start.size != 1 or plan.n_segments != 1 or plan.n_groups != 1 or plan.seg_layer[0] != 0:
            return False
        q = float(plan.group_q[0])
        return (plan, q) if (q == 2.0 or np.isinf(q)) else False

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
        tplan = _cached_tile(plan, B)
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


def vector_norm(v, q: float = 2.0, engine: str = "numba") -> float:
    """The float64 ``q``-norm of ``v``, computed exactly as the quantizers compute it.

    Deterministic: the summation order is fixed by the algorithm (32 lanes folded by a fixed tree,
    tasks combined in order; ``compute_norms``), not by the CPU's SIMD width, the BLAS library or
    the thread count — unlike ``np.linalg.norm``.  Vectors with tiny or huge entries are scaled by
    their maximum first, so no square underflows or overflows.  Raises ``ValueError`` on NaN/Inf.
    """
    v = check_vector(v)
    plan = cached_plan(PlanSpec(LayerLayout.single(v.size), "global", (_check_q(q),), (0,), 0))
    return float(compute_norms(v, plan, get_engine(engine))[0])


@functools.cache
def _single_task_kernel():
    """``_numba.quantize_single_task``, imported once (an import statement in the call costs ~0.7 µs)."""
    from ._numba import quantize_single_task

    return quantize_single_task


#: ``QuantizedVector.__init__``'s fields in order (:meth:`QuantizedVector._trusted` fills them).
_QV_FIELDS = tuple(f.name for f in fields(QuantizedVector) if f.init)


@functools.lru_cache(maxsize=64)
def _cached_tile(plan: Plan, rows: int) -> Plan:
    return tile_plan(plan, rows)


def _validate_all(qvs) -> None:
    """Each of ``qvs`` a :class:`QuantizedVector` with valid contents (:meth:`QuantizedVector.validate`),
    all of one dimension."""
    for q in qvs:
        if not isinstance(q, QuantizedVector):
            raise TypeError(f"qvs must hold QuantizedVectors, got {type(q).__name__}")
        q.validate()
    dims = {q.d for q in qvs}
    if len(dims) > 1:
        raise ValueError(f"qvs must all have one dimension d, got {sorted(dims)}")


def _one_plan(qvs: list[QuantizedVector]) -> bool:
    """Whether every one of ``qvs`` has the first one's plan and levels (identity first: the vectors
    of one batch share both objects, and comparing levels by value costs microseconds each)."""
    plan, levels = qvs[0].plan, qvs[0].levels
    return all(q.plan is plan and (q.levels is levels or q.levels == levels) for q in qvs)


def _stacked(qvs: list[QuantizedVector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The indices, signs and float64 norms of ``qvs``, concatenated in order."""
    idx = np.concatenate([q.indices for q in qvs])
    sign = np.concatenate([q.signs for q in qvs])
    return idx, sign, np.concatenate([q.norms for q in qvs]).astype(np.float64)


def dequantize_batch(qvs: list[QuantizedVector], dtype=np.float64, engine: str = "numba") -> np.ndarray:
    """Dequantize quantized vectors that share one plan and levels into a ``(B, d)`` array (one pass)."""
    if not qvs:
        raise ValueError("qvs must be non-empty")
    dtype = _float_dtype(dtype)
    _validate_all(qvs)
    plan, levels = qvs[0].plan, qvs[0].levels
    if not _one_plan(qvs):
        return np.stack([q.dequantize(dtype, engine) for q in qvs])
    tplan = _cached_tile(plan, len(qvs))
    out = get_engine(engine).dequantize(*_stacked(qvs), tplan, *level_tables(levels)[:2], dtype)
    return out.reshape(len(qvs), plan.d)


def worker_sums(D: np.ndarray) -> np.ndarray:
    """``S[r] = Σ_k D[r, k]`` summed in worker order (the reference of the device's fused kernel).

    Parameters
    ----------
    D : ndarray, shape (R, K, d)
        Dequantized worker vectors.
    """
    out = D[:, 0].astype(np.float64, copy=True)
    for k in range(1, D.shape[1]):
        out += D[:, k]
    return out


def dequantize_sum(qvs: list[QuantizedVector], workers: int, engine: str = "numba") -> np.ndarray:
    """Sums of dequantized vectors in worker order, without the dequantized vectors themselves.

    Parameters
    ----------
    qvs : list of QuantizedVector
        ``R·K`` quantized vectors of one dimension ``d``, row ``r``'s ``K`` workers consecutive
        (``qvs[r·K + k]``), e.g. the result of :meth:`BaseQuantizer.quantize_batch`.
    workers : int
        ``K``, the number of vectors added per row.
    engine : str
        Compute engine.

    Returns
    -------
    ndarray, shape (R, d), float64
        ``S[r] = ((Q_{rK} + Q_{rK+1}) + Q_{rK+2}) + …``, each ``Q`` as :meth:`QuantizedVector.dequantize`
        gives it: bit for bit ``worker_sums(dequantize_batch(qvs).reshape(R, K, d))`` (the server's
        sum in QODA's aggregation step), in one pass on the Numba engine.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers must be an integer, got {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not qvs or len(qvs) % workers:
        raise ValueError(f"qvs must hold a positive multiple of workers = {workers} vectors, got {len(qvs)}")
    _validate_all(qvs)
    plan, levels = qvs[0].plan, qvs[0].levels
    eng = get_engine(engine)
    if not hasattr(eng, "dequantize_sum") or not _one_plan(qvs):
        D = dequantize_batch(qvs, engine=engine)
        return worker_sums(D.reshape(len(qvs) // workers, workers, D.shape[-1]))
    return eng.dequantize_sum(*_stacked(qvs), plan, int(workers), *level_tables(levels)[:2])


def segment_bases(plan: Plan, key: Key) -> np.ndarray:
    """Stream base of every segment: ``stream_base(key, layer)`` (vectorized over segments)."""
    return stream_bases(key, plan.seg_layer)


def batch_segment_bases(plan: Plan, keys) -> np.ndarray:
    """``segment_bases(plan, k)`` for every key of ``keys``, concatenated (the rows of a batch)."""
    return stream_bases_of_keys(keys, plan.seg_layer)


@functools.lru_cache(maxsize=256)
def cached_plan(spec: PlanSpec) -> Plan:
    """The plan of ``spec`` (built once per distinct spec)."""
    return build_plan(spec)


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
        object.__setattr__(self, "q", _check_q(self.q))
        _check_bucket(self.bucket_size)
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
        plan = cached_plan(PlanSpec(flat, "global", (self.q,), (0,), _check_bucket(self.bucket_size)))
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
        qs = tuple(_check_q(x) for x in _per_type(self.q, m, "q"))
        buckets = tuple(_check_bucket(b) for b in _per_type(self.bucket_size, m, "bucket_size"))
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
