"""Closed-form worst-case bounds on the normalized variance ``ε_Q = sup_{‖v‖=1} E‖Q(v) − v‖²``.

All bounds are for the Euclidean norm (``q = 2``) and one norm per ``d`` coordinates (with buckets of
size ``b``, use ``d = b``).  See THEORY §2.
"""

from __future__ import annotations

import numpy as np

from ..levels import Levels

__all__ = ["qsgd_bound", "natural_dithering_bound", "simple_bound", "check_dimension"]


def check_dimension(d) -> int:
    """Validate a dimension ``d ≥ 1`` (an integer)."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    return int(d)


def qsgd_bound(s: int, d: int) -> float:
    """QSGD (Alistarh et al. 2017, Lemma 3.1), uniform levels ``j/s``: ``ε_Q ≤ min(d/s², √d/s)``."""
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ValueError(f"s must be an integer >= 1, got {s!r}")
    d = check_dimension(d)
    return float(min(d / s**2, np.sqrt(d) / s))


def natural_dithering_bound(s: int, d: int) -> float:
    """Natural dithering (Horváth et al. 2019), levels ``0, 2^{1−s}, …, 1/2, 1``:
    ``ε_Q ≤ 1/8 + √d·2^{1−s}·min(1, √d·2^{1−s})``."""
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ValueError(f"s must be an integer >= 1, got {s!r}")
    d = check_dimension(d)
    a = np.sqrt(d) * 2.0 ** (1 - s)
    return float(0.125 + a * min(1.0, a))


def simple_bound(levels: Levels, d: int) -> float:
    """Simple bound for any sequence **[ours]** (THEORY §2).

    ``ε_Q ≤ κ + min(ℓ_1 √d, d ℓ_1²/4)`` with ``κ = max_{j≥1} (ℓ_{j+1} − ℓ_j)² / (4 ℓ_j ℓ_{j+1})``:
    on ``[ℓ_j, ℓ_{j+1}]`` (``j ≥ 1``) ``φ(r) ≤ κ r²`` and ``Σ r_i² = 1``; on ``[0, ℓ_1]``
    ``φ(r) ≤ min(ℓ_1 r, ℓ_1²/4)`` with ``Σ r_i ≤ √d``.
    """
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a qodasim.Levels, got {type(levels).__name__}")
    d = check_dimension(d)
    lv = levels.values
    l1 = lv[1]
    if lv.size > 2:
        lo, hi = lv[1:-1], lv[2:]
        kappa = float(np.max((hi - lo) ** 2 / (4.0 * lo * hi)))
    else:
        kappa = 0.0
    return kappa + float(min(l1 * np.sqrt(d), d * l1 * l1 / 4.0))
