"""Elias γ, δ and ω codes for integers ``1 ≤ k ≤ 2^62`` (THEORY §3).

With ``N = ⌊log2 k⌋`` (integer operations):

* γ: ``N`` zeros, then the ``N+1`` binary digits of ``k``; length ``2N + 1``.
* δ: γ(``N+1``), then the low ``N`` bits of ``k``; length ``N + 2⌊log2(N+1)⌋ + 1``.
* ω: write ``0``; while ``k > 1``: prepend binary(k), set ``k ←`` (digits just written) − 1.

Zero is never coded directly: protocols code ``j + 1``.  References: P. Elias, "Universal codeword
sets and representations of the integers", IEEE Trans. Inf. Theory 21(2), 1975.

:func:`encode` / :func:`decode` run the Numba kernels; ``*_bits`` are plain-Python references that
return the code word as a string of '0'/'1' (used for test vectors and headers).
"""

from __future__ import annotations

import numpy as np

from ..validate import check_int
from . import _bits
from .errors import DecodeError

__all__ = [
    "CODES",
    "code_id",
    "code_length",
    "encode",
    "decode",
    "gamma_bits",
    "delta_bits",
    "omega_bits",
    "code_bits",
    "MAX_INT",
]

#: The Elias codes for positive integers (THEORY §3).
CODES = ("gamma", "delta", "omega")
MAX_INT = 2**62


def code_id(code: str) -> int:
    """Numeric id of a code name (``"gamma"`` → 0, ``"delta"`` → 1, ``"omega"`` → 2)."""
    if code not in _bits.CODE_NAMES:
        raise ValueError(f"code must be one of {CODES}, got {code!r}")
    return _bits.CODE_NAMES[code]


def _check_ints(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"values must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64) if arr.dtype != np.uint64 else arr
    if arr.size and (arr.min() < 1 or int(arr.max()) > MAX_INT):
        raise ValueError("values: Elias codes take integers 1 <= k <= 2^62 (code j+1 for j >= 0)")
    return np.ascontiguousarray(arr.astype(np.int64))


def code_length(values, code: str = "gamma") -> np.ndarray:
    """Exact code lengths in bits (integer arithmetic)."""
    return _bits.code_lengths(_check_ints(values), code_id(code))


def encode(values, code: str = "gamma") -> tuple[bytes, int]:
    """Encode integers back to back; returns ``(data, nbits)`` (data zero-padded to whole bytes)."""
    buf, nbits = _bits.encode_ints(_check_ints(values), code_id(code))
    return buf.tobytes(), int(nbits)


SLACK = 16


def slack_buffer(data) -> np.ndarray:
    """A copy of ``data`` as uint8 with :data:`SLACK` zero bytes after it for the readers."""
    if isinstance(data, np.ndarray):
        ints = np.issubdtype(data.dtype, np.integer)
        if data.dtype != np.uint8 and (not ints or (data.size and (data.min() < 0 or data.max() > 255))):
            why = " with values outside 0…255" if ints else ""  # an integer array's would wrap silently
            raise TypeError(f"data must be bytes or a uint8 array (values 0…255), got a {data.dtype} array{why}")
        raw = data.astype(np.uint8, copy=False).ravel()
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(data), np.uint8)
    else:
        raise TypeError(f"data must be bytes or a uint8 array, got {type(data).__name__}")
    out = np.zeros(raw.size + SLACK, np.uint8)
    out[: raw.size] = raw
    return out


def decode(data, count: int, code: str = "gamma", nbits: int | None = None) -> np.ndarray:
    """Decode ``count`` integers; raises :class:`DecodeError` on truncated or corrupt input.

    ``nbits`` (default ``8·len(data)``) is the number of meaningful bits.
    """
    buf = slack_buffer(data)
    total = (buf.size - SLACK) * 8 if nbits is None else int(nbits)
    if total < 0 or total > (buf.size - SLACK) * 8:
        raise DecodeError(f"nbits={nbits} does not fit in {buf.size - SLACK} bytes")
    check_int(count, "count", 0, what="a non-negative integer")
    if count > total:  # every code word has at least one bit
        raise DecodeError(f"count={count} code words cannot fit in {total} bits")
    out, _, err = _bits.decode_ints(buf, total, int(count), code_id(code))
    if err:
        raise DecodeError(_bits.ERROR_TEXT[err])
    return out


# ---------------------------------------------------------------------------- Python references
def _check_one(k: int) -> int:
    return check_int(k, "k", 1, MAX_INT, what="an integer 1 <= k <= 2^62 (what Elias codes take)")


def gamma_bits(k: int) -> str:
    """γ code word of ``k`` as a bit string (reference implementation)."""
    k = _check_one(k)
    b = format(k, "b")
    return "0" * (len(b) - 1) + b


def delta_bits(k: int) -> str:
    """δ code word of ``k`` as a bit string (reference implementation)."""
    k = _check_one(k)
    n = k.bit_length() - 1
    return gamma_bits(n + 1) + (format(k, "b")[1:] if n else "")


def omega_bits(k: int) -> str:
    """ω code word of ``k`` as a bit string (reference implementation)."""
    k = _check_one(k)
    out = "0"
    while k > 1:
        b = format(k, "b")
        out = b + out
        k = len(b) - 1
    return out


def code_bits(k: int, code: str) -> str:
    return {"gamma": gamma_bits, "delta": delta_bits, "omega": omega_bits}[code](k) if code in CODES else _bad(code)


def _bad(code):
    raise ValueError(f"code must be one of {CODES}, got {code!r}")
