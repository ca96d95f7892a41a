"""Argument checks of the quantizers (one job: refuse bad input with an error naming the argument).

Vectors (:func:`check_vector`), preallocated outputs (:func:`check_out`), norm orders, bucket sizes,
float dtypes, and the float32 range of the transmitted norms (:class:`NormRangeError`, THEORY §1).
"""

from __future__ import annotations

import numpy as np

from ..errors import NormRangeError
from ..validate import check_int
from . import _scalar

__all__ = ["F32_TINY", "NormRangeError", "check_bucket", "check_norm_range", "check_out", "check_q", "check_vector",
           "float_dtype"]  # fmt: skip


_F32_MAX = float(np.finfo(np.float32).max)


#: Smallest positive normal float32 (~1.18e-38): a transmitted norm below it loses relative precision.
F32_TINY = _scalar.F32_TINY


def check_norm_range(n32: np.ndarray, name: str = "v") -> None:
    """Raise :class:`NormRangeError` if a nonzero float32 norm is Inf or below the normal range."""
    if np.any(np.isinf(n32)):
        raise NormRangeError(f"{name}: a norm exceeds the float32 range ({_F32_MAX:.4g}; norms are sent as float32)")
    if np.any((n32 > 0) & (n32 < F32_TINY)):
        raise NormRangeError(
            f"{name}: a nonzero norm lies below the float32 normal range ({F32_TINY:.4g}); rescale the vector"
        )


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
    return check_int(b, "bucket_size", 1, what="a positive integer or None")


def _float_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64 (``TypeError`` otherwise)."""
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if out not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {out}")
    return out


check_q, check_bucket, float_dtype = _check_q, _check_bucket, _float_dtype
