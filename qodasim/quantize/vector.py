"""The quantized vector and its dequantization: ``Q(v)_i = n_g · sign_i · ℓ^{m}_{j_i}`` (THEORY §1).

A :class:`QuantizedVector` is what a quantizer returns and the coding layer sends (indices, signs,
float32 norms, the plan and the levels); :func:`dequantize`, :func:`dequantize_batch` and
:func:`dequantize_sum` turn one, many, or many workers' sums of them back into floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..levels import Levels
from ..rng import Key
from ..validate import check_int
from .engine import get_engine
from .plan import Plan, cached_tile
from .validation import float_dtype

__all__ = ["QuantizedVector", "dequantize", "dequantize_batch", "dequantize_sum", "level_tables", "worker_sums"]


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
        self._check_structure()
        self._check_arrays()
        self._check_norms()
        self._check_index_range()
        object.__setattr__(self, "_checked", True)
        return self

    def _check_structure(self) -> None:
        """``plan`` a :class:`Plan`, ``levels`` one :class:`Levels` per type, ``dtype`` a float dtype."""
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

    def _check_arrays(self) -> None:
        """``indices`` unsigned and ``signs`` int8 ``±1``, both of shape ``(d,)``."""
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

    def _check_norms(self) -> None:
        """One finite, non-negative float32 norm per group."""
        norms = self.norms
        if not isinstance(norms, np.ndarray) or norms.dtype != np.float32:
            raise TypeError("norms must be a float32 array")
        if norms.shape != (self.plan.n_groups,):
            raise ValueError(f"norms must have shape ({self.plan.n_groups},), got {norms.shape}")
        if not (np.all(np.isfinite(norms)) and np.all(norms >= 0)):
            raise ValueError("norms must be finite and non-negative")

    def _check_index_range(self) -> None:
        """Every index below its type's number of levels."""
        top = np.array([lv.size - 1 for lv in self.levels], np.int64)
        seg_top = top[self.plan.seg_type]
        if seg_top.min() == seg_top.max():
            bad = self.plan.d and int(self.indices.max()) > int(seg_top[0])
        else:
            bad = bool(np.any(self.indices > np.repeat(seg_top, np.diff(self.plan.seg_bounds))))
        if bad:
            raise ValueError("indices: a level index is past its type's level table")

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


#: ``QuantizedVector.__init__``'s fields in order (:meth:`QuantizedVector._trusted` fills them).
_QV_FIELDS = tuple(f.name for f in fields(QuantizedVector) if f.init)


def level_tables(levels: tuple[Levels, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated level tables, their start offsets (``lv_start[m]..lv_start[m+1]``), and per type
    ``s`` if its levels are uniform (else 0)."""
    lv = np.ascontiguousarray(np.concatenate([lv_.values for lv_ in levels]))
    lv_start = np.concatenate([[0], np.cumsum([lv_.size for lv_ in levels])]).astype(np.int64)
    type_uni = np.array([lv_.uniform_s for lv_ in levels], np.int64)
    return lv, lv_start, type_uni


def dequantize(qv: QuantizedVector, dtype=None, engine: str = "numba") -> np.ndarray:
    """``Q(v)_i = n_g · sign_i · ℓ^{m}_{j_i}`` in ``dtype`` (default: the input's dtype)."""
    if not isinstance(qv, QuantizedVector):
        raise TypeError(f"qv must be a QuantizedVector, got {type(qv).__name__}")
    qv.validate()
    eng = get_engine(engine)
    lv, lv_start, _ = level_tables(qv.levels)
    out_dtype = float_dtype(qv.dtype if dtype is None else dtype)
    return eng.dequantize(qv.indices, qv.signs, qv.norms.astype(np.float64), qv.plan, lv, lv_start, out_dtype)


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
    dtype = float_dtype(dtype)
    _validate_all(qvs)
    plan, levels = qvs[0].plan, qvs[0].levels
    if not _one_plan(qvs):
        return np.stack([q.dequantize(dtype, engine) for q in qvs])
    tplan = cached_tile(plan, len(qvs))
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
    check_int(workers, "workers", error=TypeError, show="type")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not qvs or len(qvs) % workers:
        raise ValueError(f"qvs must hold a positive multiple of workers = {workers} vectors, got {len(qvs)}")
    _validate_all(qvs)
    plan, levels = qvs[0].plan, qvs[0].levels
    eng = get_engine(engine)
    if eng.dequantize_sum is None or not _one_plan(qvs):
        D = dequantize_batch(qvs, engine=engine)
        return worker_sums(D.reshape(len(qvs) // workers, workers, D.shape[-1]))
    return eng.dequantize_sum(*_stacked(qvs), plan, int(workers), *level_tables(levels)[:2])
