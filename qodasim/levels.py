"""Level sequences for unbiased stochastic rounding (THEORY §1).

A level sequence is ``ℓ = (ℓ_0 = 0 < ℓ_1 < … < ℓ_α < ℓ_{α+1} = 1)`` with ``α`` interior levels.
:class:`Levels` is immutable and validated on construction, so every quantizer, bound and coder can
take it as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .validate import check_int

__all__ = ["Levels", "MAX_INTERVALS"]

#: Most intervals a level sequence may have (``α + 1``): the families' constructors refuse more, so a
#: spec such as ``"uniform:1000000000"`` is a clear error rather than an 8 GB allocation.
MAX_INTERVALS = 2**20


@dataclass(frozen=True, eq=False)
class Levels:
    """A validated, immutable level sequence ``0 = ℓ_0 < ℓ_1 < … < ℓ_{α+1} = 1``.

    Parameters
    ----------
    values : array_like of float
        The full sequence including the end points 0 and 1.
    name : str, optional
        A human-readable label (``"uniform(s=15)"``); it does not take part in equality.

    Raises
    ------
    ValueError
        If ``values`` is not 1-D, has fewer than two entries, contains NaN/Inf, does not start at 0
        and end at 1, is not strictly increasing, or leaves ``[0, 1]``.

    Notes
    -----
    Families (THEORY §1): uniform ``ℓ_j = j/s`` (QSGD, ``s = α + 1``); exponential
    ``(0, p^α, …, p, 1)`` (NUQSGD uses ``p = 1/2``; AMQ optimizes ``p``); arbitrary arrays.

    Examples
    --------
    >>> from qodasim import Levels
    >>> Levels.uniform(4).values
    array([0.  , 0.25, 0.5 , 0.75, 1.  ])
    >>> Levels.exponential(3).values  # (0, p^3, p^2, p, 1) with p = 1/2
    array([0.   , 0.125, 0.25 , 0.5  , 1.   ])
    """

    values: np.ndarray
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        arr = np.array(self.values, dtype=np.float64, copy=True)
        if arr.size > MAX_INTERVALS + 1:
            raise ValueError(f"levels: at most {MAX_INTERVALS + 1} levels, got {arr.size}")
        if arr.ndim != 1:
            raise ValueError(f"levels: values must be 1-D, got shape {arr.shape}")
        if arr.size < 2:
            raise ValueError("levels: values must contain at least the end points 0 and 1")
        if not np.all(np.isfinite(arr)):
            raise ValueError("levels: values contain NaN or Inf")
        if np.any(arr < 0.0) or np.any(arr > 1.0):
            raise ValueError("levels: values must lie in [0, 1]")
        if arr[0] != 0.0:
            raise ValueError(f"levels: first level must be 0, got {arr[0]!r}")
        if arr[-1] != 1.0:
            raise ValueError(f"levels: last level must be 1, got {arr[-1]!r}")
        if np.any(np.diff(arr) <= 0.0):
            raise ValueError("levels: values must be strictly increasing")
        arr.setflags(write=False)
        object.__setattr__(self, "values", arr)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def uniform(cls, s: int) -> Levels:
        """QSGD levels ``ℓ_j = j/s``, ``j = 0..s``.

        Counts **intervals**: ``s`` intervals, ``s + 1`` levels, ``α = s − 1`` interior levels (QSGD's
        ``s``).  :meth:`exponential` counts interior levels instead; both are spelled out in
        :attr:`s` and :attr:`alpha` of the result.
        """
        s = _positive_int(s, "s")
        if s > MAX_INTERVALS:
            raise ValueError(f"s must be at most {MAX_INTERVALS} (one level table entry per level), got {s}")
        return cls(np.arange(s + 1, dtype=np.float64) / s, name=f"uniform(s={s})")

    @classmethod
    def exponential(cls, alpha: int, p: float = 0.5) -> Levels:
        """Exponential levels ``(0, p^α, …, p^2, p, 1)`` with ``α`` interior levels.

        Counts **interior levels** (``α``; ``α + 1`` intervals), unlike :meth:`uniform`, which counts
        intervals.  ``p = 1/2`` gives NUQSGD's / natural dithering's levels (natural dithering's
        ``s`` is ``α + 1``).
        """
        check_int(alpha, "alpha", 0)
        if alpha >= MAX_INTERVALS:
            raise ValueError(f"alpha must be below {MAX_INTERVALS}, got {alpha}")
        p = float(p)
        if not (0.0 < p < 1.0):
            raise ValueError(f"p must lie in (0, 1), got {p!r}")
        interior = p ** np.arange(int(alpha), 0, -1, dtype=np.float64)
        return cls(np.concatenate([[0.0], interior, [1.0]]), name=f"exponential(alpha={alpha}, p={p:g})")

    @classmethod
    def from_array(cls, values, name: str = "custom") -> Levels:
        """Levels from an explicit array (end points included)."""
        return cls(values, name=name)

    @classmethod
    def from_interior(cls, interior, name: str = "custom") -> Levels:
        """Levels from the ``α`` interior points; 0 and 1 are added."""
        inner = np.asarray(interior, dtype=np.float64).ravel()
        return cls(np.concatenate([[0.0], inner, [1.0]]), name=name)

    @classmethod
    def parse(cls, spec: str) -> Levels:
        """Levels from a short text spec: ``"uniform:S"``, ``"exponential:ALPHA[:P]"``, or
        ``"array:0,0.2,0.5,1"`` (used by configs and the command line)."""
        if not isinstance(spec, str):
            raise TypeError(f"levels spec must be a string, got {type(spec).__name__}")
        kind, _, rest = spec.partition(":")
        try:
            if kind == "uniform":
                return cls.uniform(int(rest))
            if kind == "exponential":
                parts = rest.split(":")
                return cls.exponential(int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.5)
            if kind == "array":
                return cls([float(x) for x in rest.split(",")])
        except (ValueError, IndexError) as exc:
            raise ValueError(f"bad levels spec {spec!r}: {exc}") from None
        raise ValueError(f"levels spec must start with uniform:, exponential: or array:, got {spec!r}")

    def to_spec(self) -> str:
        """The short text spec that :meth:`parse` reads back to equal levels (``"uniform:S"`` for QSGD
        levels, else ``"array:…"`` with every value written exactly)."""
        s = self.uniform_s
        return f"uniform:{s}" if s else "array:" + ",".join(repr(float(x)) for x in self.values)

    # ------------------------------------------------------------------ properties
    @property
    def alpha(self) -> int:
        """Number of interior levels ``α``."""
        return int(self.values.size - 2)

    @property
    def size(self) -> int:
        """Number of levels ``α + 2``."""
        return int(self.values.size)

    @property
    def s(self) -> int:
        """Number of intervals ``α + 1`` (QSGD's ``s`` for uniform levels)."""
        return int(self.values.size - 1)

    @property
    def uniform_s(self) -> int:
        """``s`` if the levels are exactly ``j/s`` (as :meth:`uniform` makes them), else 0.

        Kernels use a faster, equivalent rounding formula for uniform levels (``t = s·r``,
        ``j = ⌊t⌋``, ``ρ = t − j``).
        """
        s = self.s
        return s if np.array_equal(self.values, np.arange(s + 1, dtype=np.float64) / s) else 0

    @property
    def index_dtype(self) -> np.dtype:
        """Smallest unsigned integer dtype that holds every level index ``0..α+1``."""
        return smallest_index_dtype(self.size)

    def __len__(self) -> int:
        return self.size

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Levels):
            return NotImplemented
        return self.values.shape == other.values.shape and bool(np.array_equal(self.values, other.values))

    def __hash__(self) -> int:
        return hash(self.values.tobytes())

    def __repr__(self) -> str:
        vals = np.array2string(self.values, precision=4, separator=", ", threshold=12)
        return f"Levels({self.name}, alpha={self.alpha}, values={vals})"


def smallest_index_dtype(n_levels: int) -> np.dtype:
    """Smallest unsigned dtype able to hold indices ``0..n_levels-1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_levels - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _positive_int(x, name: str) -> int:
    return check_int(x, name, 1, what="a positive integer")
