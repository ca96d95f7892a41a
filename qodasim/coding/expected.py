"""Exact expected code lengths, the entropy floor, and bounds (THEORY §3).

The index of coordinate ``i`` is ``j_i`` or ``j_i + 1`` with probabilities ``1 − ρ_i, ρ_i``,
independently across coordinates, so expectations are exact sums — no sampling:

* dense: ``E[payload] = Σ_i (1−ρ_i)·c(j_i) + ρ_i·c(j_i+1)`` with ``c(j) = len(Elias(j+1)) + [j > 0]``;
* sparse: the index part is the same sum with ``c(j) = [j > 0](1 + len(Elias(j)))``; the gaps are
  handled exactly **[ours]**: Elias lengths depend only on the octave ``a = ⌊log2 g⌋``, so
  ``E[Σ len(gaps)] = Σ_a len(2^a)·(N_{≥2^a} − N_{≥2^{a+1}})`` where ``N_{≥L}``, the expected number of
  gaps ``≥ L``, is ``Σ_{i ≥ L−1} p_i Π_{m=i−L+1}^{i−1}(1 − p_m)`` (``p_i = P(index_i > 0)``; the
  terminator is a virtual nonzero at ``i = d`` with ``p = 1``).  The window products are summed in
  log space by doubling — additions of non-positive numbers only, so no cancellation — in
  ``O(d log d)``.
"""

from __future__ import annotations

import numpy as np

from ..bounds.closed_form import check_dimension
from ..bounds.envelope import Arcs, envelope
from ..levels import Levels
from ..quantize.core import BaseQuantizer
from ..validate import check_int
from . import _bits, _payload
from .elias import code_id
from .protocol import PROTOCOLS, fixed_bits

__all__ = [
    "expected_bits",
    "expected_bits_of_intervals",
    "entropy_floor",
    "entropy_bits_of_intervals",
    "fixed_width_bits",
    "qsgd_sparse_bound",
    "qsgd_dense_bound",
    "tight_expected_dense_bits",
    "expected_gap_bits",
]


def expected_gap_bits(p: np.ndarray, code: str = "gamma") -> float:
    """Exact ``E[Σ len(Elias(gap))]`` of sparse gap coding, terminator included.

    ``p[i]`` is the probability that coordinate ``i`` is sent (independent across ``i``).
    """
    p = np.asarray(p, np.float64)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p must be a 1-D array of probabilities")
    ext = np.concatenate([p, [1.0]])  # virtual terminator at position d
    n = ext.size
    with np.errstate(divide="ignore"):
        lq = np.log1p(-ext)  # log(1 − p), −inf where p = 1
    n_oct = int(_bits.bitlen(n)) + 1
    glen = _payload.gap_len_by_octave(code_id(code), n_oct + 1).astype(np.float64)
    counts = np.zeros(n_oct + 1)  # counts[a] = N_{≥ 2^a}
    counts[0] = ext.sum()
    # arrays indexed by k = t + 1 (t = −1..n−1):
    #   T_b[t] = Σ lq over [t − 2^b + 1, t]      U_a[t] = Σ lq over [t − 2^a + 2, t] (length 2^a − 1)
    #   U_a[t] = T_{a−1}[t] + U_{a−1}[t − 2^{a−1}],  T_a[t] = T_{a−1}[t] + T_{a−1}[t − 2^{a−1}]
    # only entries with full windows feed the counts (k ≥ 2^a − 1 for U_a, k ≥ 2^b for T_b).
    T = np.concatenate([[-np.inf], lq])
    U = np.zeros(n + 1)
    for a in range(1, n_oct + 1):
        h = 1 << (a - 1)
        if h > n:
            break
        U_new = np.full(n + 1, -np.inf)
        U_new[h:] = T[h:] + U[: n + 1 - h]
        U = U_new
        first = (1 << a) - 1  # gaps ≥ 2^a need i ≥ 2^a − 1
        if first < n:
            i = np.arange(first, n)
            counts[a] = float(np.sum(ext[i] * np.exp(U[i])))  # U index of t = i − 1 is i
        T_new = np.full(n + 1, -np.inf)
        T_new[h:] = T[h:] + T[: n + 1 - h]
        T = T_new
    counts[counts < 0] = 0.0
    per_octave = counts[:-1] - counts[1:]
    return float(np.sum(per_octave * glen[: per_octave.size]))


def expected_bits(v, quantizer: BaseQuantizer, protocol: str = "dense", code: str = "gamma", layout=None) -> dict:
    """Exact expected message length of ``quantizer`` at ``v`` (a fresh, self-describing message).

    Returns ``{"header", "level_tables", "norms", "payload", "total"}`` in bits; ``payload`` is the
    exact expectation over the rounding randomness, the other parts are deterministic.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    code_id(code)
    j, rho, n32, plan = quantizer.intervals(v, layout)
    dtype = np.float64 if np.asarray(v).dtype == np.float64 else np.float32
    return expected_bits_of_intervals(j, rho, plan, quantizer.type_levels, dtype, protocol, code)


def expected_bits_of_intervals(j, rho, plan, levels, dtype, protocol: str = "dense", code: str = "gamma") -> dict:
    """:func:`expected_bits` from the intervals ``(j, ρ)`` of every coordinate (one vector, its plan).

    The shared second half of :func:`expected_bits`, for callers that already hold ``(j, ρ)`` — e.g.
    the solver on the GPU, which computes them for all workers at once on the device
    (:meth:`~qodasim.quantize.device.DeviceWorkspace.intervals`).
    """
    cid = code_id(code)
    ctype = plan.coord_type()
    payload = 0.0
    p_send = np.zeros(plan.d)
    for m, lv in enumerate(levels):
        sel = ctype == m
        if not sel.any():
            continue
        jj, rr = j[sel], rho[sel]
        table = (_payload.dense_cost_table if protocol == "dense" else _payload.sparse_index_cost_table)(
            lv.size - 1, cid
        ).astype(np.float64)
        payload += float(np.sum((1.0 - rr) * table[jj] + rr * table[jj + 1]))
        p_send[sel] = np.where(jj >= 1, 1.0, rr)
    if protocol == "sparse":
        payload += expected_gap_bits(p_send, code)
    out = fixed_bits(plan.spec, levels, dtype, protocol, code)
    out["norms"] = 32 * plan.n_groups
    out["payload"] = payload
    out["total"] = out["header"] + out["level_tables"] + out["norms"] + payload
    return out


def entropy_floor(v, quantizer: BaseQuantizer, layout=None) -> float:
    """``Σ_m d_m·H(P_m) + E[#nonzero indices]`` bits (THEORY §3).

    ``P_m`` is the marginal distribution of the level index over the coordinates of type ``m``
    (averaged over coordinates and the rounding); one sign bit per nonzero index.  This is the
    floor for any code that treats indices as i.i.d. symbols from ``P_m``.
    """
    j, rho, _, plan = quantizer.intervals(v, layout)
    return entropy_bits_of_intervals(j, rho, plan, quantizer.type_levels)


def entropy_bits_of_intervals(j, rho, plan, levels) -> float:
    """:func:`entropy_floor` from the intervals ``(j, ρ)`` of every coordinate (one vector, its plan):
    the payload of a static entropy code per type fitted to this message's index distribution."""
    ctype = plan.coord_type()
    total = 0.0
    for m, lv in enumerate(levels):
        sel = ctype == m
        dm = int(sel.sum())
        if dm == 0:
            continue
        jj, rr = j[sel], rho[sel]
        prob = np.bincount(jj, weights=1.0 - rr, minlength=lv.size) + np.bincount(jj + 1, weights=rr, minlength=lv.size)
        prob = prob[: lv.size] / dm
        nz = prob[prob > 0]
        total += dm * float(-np.sum(nz * np.log2(nz)))
        total += float(np.sum(np.where(jj >= 1, 1.0, rr)))
    return total


def fixed_width_bits(plan, levels) -> int:
    """Payload bits of a fixed-width code: every coordinate of type ``m`` sends its signed index in
    ``⌈log2(2·|ℓ^m| − 1)⌉`` bits (``|ℓ^m|`` levels, ``0`` and ``±1 … ±(|ℓ^m|−1)``), as GPU systems
    send packed integers; exact, no expectation."""
    ctype = plan.coord_type()
    counts = np.bincount(ctype, minlength=len(levels))
    return int(sum(int(c) * int(2 * lv.size - 2).bit_length() for c, lv in zip(counts.tolist(), levels)))


def qsgd_sparse_bound(s: int, d: int) -> float:
    """QSGD Theorem 3.2 (Alistarh et al. 2017) without its ``o(1)`` term:
    ``(3 + (3/2)·log2(2(s² + d)/(s(s + √d))))·s(s + √d) + 32`` bits (uniform levels, sparse, ``s ≥ 2``).

    The theorem's ``o(1)`` is asymptotic in ``d``; this function is an asymptotic reference, not a
    guaranteed bound at every finite ``d``.
    """
    d = check_dimension(d)
    check_int(s, "s", 2)
    m = s * (s + np.sqrt(d))
    return float((3.0 + 1.5 * np.log2(2.0 * (s * s + d) / m)) * m + 32.0)


def qsgd_dense_bound(d: int) -> float:
    """QSGD's dense regime ``s = √d`` (Alistarh et al. 2017, Cor. 3.3): ``E[bits] ≤ 2.8 d + 32``.

    Our sparse Elias-ω stream meets it on Gaussian-like data, but not on every vector: the all-ones
    vector puts every coordinate exactly on level ``1/√d`` and costs ``3d + 1`` payload bits
    (ω(gap 1) + sign + ω(1) each).  Use it as the paper's reference figure, not a guarantee.
    """
    return 2.8 * check_dimension(d) + 32.0


def dense_length_arcs(levels: Levels, code: str = "gamma") -> Arcs:
    """``h(w) = E[bits of one coordinate | r = √w]`` (dense), affine in ``u`` on each level interval."""
    lv = levels.values
    cost = _payload.dense_cost_table(levels.size - 1, code_id(code)).astype(np.float64)
    lo, hi = lv[:-1], lv[1:]
    slope = (cost[1:] - cost[:-1]) / (hi - lo)
    return Arcs(cost[:-1] - slope * lo, slope, np.zeros_like(lo), lo, hi)


def tight_expected_dense_bits(levels: Levels, d: int, code: str = "gamma") -> float:
    """Tight worst-case expected dense payload over unit vectors **[ours]**: ``d·ĥ(1/d)``.

    The same envelope argument as the tight variance (THEORY §3), applied to ``h``; ``h`` is
    piecewise affine in ``u = √w`` with nondecreasing costs, hence concave in ``w`` on each piece.
    """
    d = check_dimension(d)
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a qodasim.Levels, got {type(levels).__name__}")
    return d * envelope(dense_length_arcs(levels, code), 1.0 / d).value
