"""Argument checks shared by every stage: refuse bad input with one error that names the argument.

A Python ``bool`` is not accepted as an integer or a number (``True`` is an ``int`` to Python, never
a count or a size here); NumPy integers and floats are.  Each check returns the value converted
(``int``, ``float``) so a caller stores what it checked.  Messages read
``"{name} must be {what}, got {value!r}"``; ``what`` is derived from the bounds unless given.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

__all__ = ["MAX_SEED", "check_choice", "check_int", "check_real", "check_seed", "is_int"]

#: Seeds are 64-bit words (:class:`~qodasim.rng.Key`): ``0 ≤ seed ≤ MAX_SEED``.
MAX_SEED = 2**64 - 1


def is_int(x) -> bool:
    """Whether ``x`` is an integer (Python or NumPy) and not a ``bool``."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_phrase(lo, hi) -> str:
    if lo is None and hi is None:
        return "an integer"
    if hi is None:
        return f"an integer >= {lo}"
    if lo is None:
        return f"an integer <= {hi}"
    return f"an integer in [{lo}, {hi}]"


def _fail(error, name: str, what: str, x, show: str):
    got = type(x).__name__ if show == "type" else repr(x)
    raise error(f"{name} must be {what}, got {got}")


def check_int(x, name: str, lo: int | None = None, hi: int | None = None, *, what: str | None = None,
              error: type[Exception] = ValueError, show: str = "repr") -> int:  # fmt: skip
    """``x`` as an ``int`` if it is an integer in ``[lo, hi]`` (either bound optional), else ``error``.

    ``what`` replaces the derived phrase (``"a positive integer"``); ``show="type"`` reports the
    value's type instead of its ``repr`` (for objects whose repr is long).
    """
    if not is_int(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        _fail(error, name, what or _int_phrase(lo, hi), x, show)
    return int(x)


def check_real(x, name: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
               hi_open: bool = False, finite: bool = True, what: str | None = None,
               error: type[Exception] = ValueError, type_error: type[Exception] | None = None) -> float:  # fmt: skip
    """``x`` as a ``float`` if it is a real number (not a ``bool`` or a string, not NaN; finite unless
    ``finite=False``) within the bounds (``lo_open``/``hi_open``: strict), else ``error`` (or
    ``type_error``, when given, for a value that is not a number at all)."""
    if type_error is not None and not _is_real(x):
        error = type_error
    if not _real_within(x, lo, hi, lo_open, hi_open, finite):
        if what is None:
            low = None if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
            high = None if hi is None else (f"< {hi:g}" if hi_open else f"<= {hi:g}")
            bounds = " and ".join(b for b in (low, high) if b)
            what = ("a finite number" if finite else "a number") + (f" {bounds}" if bounds else "")
        _fail(error, name, what, x, "repr")
    return float(x)


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _real_within(x, lo, hi, lo_open: bool, hi_open: bool, finite: bool) -> bool:
    if not _is_real(x):
        return False
    v = float(x)
    if math.isnan(v) or (finite and not math.isfinite(v)):
        return False
    above = lo is None or (v > lo if lo_open else v >= lo)
    below = hi is None or (v < hi if hi_open else v <= hi)
    return above and below


def check_choice(x, name: str, choices: Collection, *, error: type[Exception] = ValueError):
    """``x`` if it is one of ``choices`` (compared with ``==``; unhashable values refused too)."""
    try:
        ok = x in choices
    except TypeError:
        ok = False
    if not ok:
        raise error(f"{name} must be one of {tuple(choices)}, got {x!r}")
    return x


def check_seed(x, name: str = "seed", *, error: type[Exception] = ValueError) -> int:
    """A seed: an integer in ``[0, 2^64)``, as :class:`~qodasim.rng.Key` takes (never reduced mod 2^64)."""
    return check_int(x, name, 0, MAX_SEED, what="an integer in [0, 2^64)", error=error)
