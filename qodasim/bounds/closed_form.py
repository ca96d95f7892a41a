"""Closed-form worst-case bounds on the normalized variance ``ε_Q = sup_{‖v‖=1} E‖Q(v) − v‖²``.

All bounds are for the Euclidean norm (``q = 2``) and one norm per ``d`` coordinates (with buckets of
size ``b``, use ``d = b``).  See THEORY §2.

**Transmitted norm** (THEORY §1).  The quantizers send ``n̂ = fl32↑(‖v‖) ≥ ‖v‖``, so
``E‖Q(v) − v‖²/‖v‖² = c⁻¹ Σ_i φ(r_i)`` with ``r_i = |v_i|/n̂``, ``Σ r_i² = c`` and
``c⁻¹ = (n̂/‖v‖)² ≤`` :data:`TRANSMIT_FACTOR`.  Each closed form below bounds ``Σ φ(r_i)`` for any
``Σ r_i² ≤ 1``, so with ``transmitted=True`` (the default: the quantizer as implemented) it is
multiplied by that factor; ``transmitted=False`` gives the published value for the true norm.
"""

from __future__ import annotations

import numpy as np

from ..levels import Levels
from ..validate import check_int

__all__ = ["qsgd_bound", "natural_dithering_bound", "simple_bound", "check_dimension", "TRANSMIT_FACTOR"]

#: ``(1 + 2^{-22})²`` ≥ ``(n̂/‖v‖)²``: rounding up to float32 costs a relative ``2^{-23}`` at most, and
#: the float64 norm's own relative error (lane sums, THEORY §1) stays below another ``2^{-23}`` for
#: ``d < 2^{35}``.  Norms outside the float32 normal range are rejected by the quantizers.
#: Safe factor (1 + 2^-22)^2 ≥ (n̂/‖v‖)^2 for a norm rounded up to float32 (THEORY §1), applied by the bounds.
TRANSMIT_FACTOR = (1.0 + 2.0**-22) ** 2


def _factor(transmitted: bool) -> float:
    return TRANSMIT_FACTOR if transmitted else 1.0


#: Largest dimension the bounds accept: ``2^53``, below which every integer is exact in float64.
MAX_BOUND_D = 2**53


def check_dimension(d) -> int:
    """Validate a dimension ``1 ≤ d ≤ 2^53`` (an integer)."""
    check_int(d, "d", 1)
    if d > MAX_BOUND_D:
        raise ValueError(f"d must be at most 2^53 = {MAX_BOUND_D}, got {d}")
    return int(d)


def qsgd_bound(s: int, d: int, *, transmitted: bool = True) -> float:
    """QSGD (Alistarh et al. 2017, Lemma 3.1), uniform levels ``j/s``: ``ε_Q ≤ min(d/s², √d/s)``
    (times :data:`TRANSMIT_FACTOR` with ``transmitted=True``).

    Argument order: the level parameter first, then the dimension — like every bound here
    (``simple_bound(levels, d)``, ``tight_variance_bound(levels, d)``); the paper writes ``(d, s)``.
    Pass them by keyword (``qsgd_bound(s=4, d=1024)``) to be explicit.
    """
    check_int(s, "s", 1)
    d = check_dimension(d)
    return float(min(d / s**2, np.sqrt(d) / s)) * _factor(transmitted)


def natural_dithering_bound(s: int, d: int, *, transmitted: bool = True) -> float:
    """Natural dithering (Horváth et al. 2019), levels ``0, 2^{1−s}, …, 1/2, 1``:
    ``ε_Q ≤ 1/8 + √d·2^{1−s}·min(1, √d·2^{1−s})`` (times :data:`TRANSMIT_FACTOR` with
    ``transmitted=True``)."""
    check_int(s, "s", 1)
    d = check_dimension(d)
    a = np.sqrt(d) * 2.0 ** (1 - s)
    return float(0.125 + a * min(1.0, a)) * _factor(transmitted)


def simple_bound(levels: Levels, d: int, *, transmitted: bool = True) -> float:
    """Simple bound for any sequence **[ours]** (THEORY §2).

    ``ε_Q ≤ κ + min(ℓ_1 √d, d ℓ_1²/4)`` with ``κ = max_{j≥1} (ℓ_{j+1} − ℓ_j)² / (4 ℓ_j ℓ_{j+1})``:
    on ``[ℓ_j, ℓ_{j+1}]`` (``j ≥ 1``) ``φ(r) ≤ κ r²`` and ``Σ r_i² ≤ 1``; on ``[0, ℓ_1]``
    ``φ(r) ≤ min(ℓ_1 r, ℓ_1²/4)`` with ``Σ r_i ≤ √d``.  ``κ`` is computed as ``(τ − 2 + 1/τ)/4``
    with ``τ = ℓ_{j+1}/ℓ_j`` (no underflow for tiny levels; ``+inf`` when ``τ`` overflows).
    Times :data:`TRANSMIT_FACTOR` with ``transmitted=True``.
    """
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a qodasim.Levels, got {type(levels).__name__}")
    d = check_dimension(d)
    lv = levels.values
    l1 = lv[1]
    if lv.size > 2:
        with np.errstate(over="ignore"):
            tau = lv[2:] / lv[1:-1]
            kappa = float(np.max((tau - 2.0 + 1.0 / tau) / 4.0))
    else:
        kappa = 0.0
    return (kappa + float(min(l1 * np.sqrt(d), d * l1 * l1 / 4.0))) * _factor(transmitted)
