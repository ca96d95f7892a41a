"""Bit allocation across layers (L-GreCo) and across time (DQ-SGD) (THEORY §4)."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import optimize as sopt

from ..validate import check_int

__all__ = ["lgreco", "lgreco_brute_force", "dq_sgd_schedule"]


def _check_options(bits, errors, default):
    bits = [np.asarray(b, np.float64) for b in bits]
    errors = [np.asarray(e, np.float64) for e in errors]
    if len(bits) == 0 or len(bits) != len(errors):
        raise ValueError("bits and errors need one option list per layer")
    for b, e in zip(bits, errors):
        if b.ndim != 1 or b.size == 0 or b.shape != e.shape:
            raise ValueError("each layer needs equal, non-empty lists of option bits and errors")
        if np.any(~np.isfinite(b)) or np.any(~np.isfinite(e)) or np.any(b < 0) or np.any(e < 0):
            raise ValueError("option bits and errors must be finite and non-negative")
    default = np.asarray(default, np.int64)
    if default.shape != (len(bits),) or np.any(default < 0) or any(d >= b.size for d, b in zip(default, bits)):
        raise ValueError("default must give one valid option index per layer")
    return bits, errors, default


def _units(errors, budget: float, buckets: int) -> list[np.ndarray]:
    """Each option's error in units of ``budget/buckets``, rounded up (a choice whose units fit in
    ``buckets`` meets the budget); infeasible options get ``buckets + 1``."""
    if budget == 0.0:
        return [np.where(e > 0, buckets + 1, 0).astype(np.int64) for e in errors]
    return [np.minimum(np.ceil(e / budget * buckets - 1e-12), buckets + 1).astype(np.int64) for e in errors]


def _check_table(n_layers: int, buckets: int, itemsize: int) -> None:
    """Refuse a DP whose choice table (``L × (buckets + 1)`` entries) cannot fit in the memory available."""
    from .._memory import available_memory

    need, avail = n_layers * (buckets + 1) * itemsize, available_memory()
    if avail is not None and need > avail:
        gib, have = need / 2**30, avail / 2**30
        raise ValueError(f"buckets: {n_layers} layers × {buckets + 1} buckets need {gib:.3g} GiB for the DP's "
                         f"choice table, more than the {have:.3g} GiB available: lower buckets")  # fmt: skip


def lgreco(bits, errors, default, alpha: float = 1.0, buckets: int = 1000) -> np.ndarray:
    """L-GreCo knapsack DP (Markov et al. 2024): choose one option per layer minimizing total bits
    subject to total error ≤ ``alpha`` × the error of the ``default`` choice.

    Errors are discretized into ``buckets`` units of ``budget/buckets``, each rounded *up*, so every
    choice the DP returns meets the budget; the DP is exact on this discretized problem,
    ``O(L · options · buckets)``.  The default choice is then compared with it: when the default meets
    the budget (always for ``alpha ≥ 1``) and costs no more, it is returned — so the result is never
    worse than the default, even when rounding up made the default look infeasible.

    Guarantee: with ``L`` layers, any choice whose error is at most ``budget·(1 − L/buckets)`` fits
    the discretized problem (``Σ ⌈x_l⌉ ≤ Σ x_l + L``), so the bits returned are at most the optimum
    of the exact problem at that slightly tighter budget (and at most the default's).  Returns the
    option index per layer; raises ``ValueError`` if nothing meets the budget.
    """
    bits, errors, default = _check_options(bits, errors, default)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    check_int(buckets, "buckets", 1, 10**7, what="an integer in [1, 10^7]")
    budget = alpha * float(sum(e[d] for e, d in zip(errors, default)))
    units = _units(errors, budget, buckets)
    n_layers = len(bits)
    n_opts = max(b.size for b in bits)
    dtype = np.uint8 if n_opts <= 2**8 else np.uint16 if n_opts <= 2**16 else np.int64
    _check_table(n_layers, buckets, np.dtype(dtype).itemsize)
    dp = np.full(buckets + 1, np.inf)
    dp[0] = 0.0
    choice = np.zeros((n_layers, buckets + 1), dtype)
    for l in range(n_layers):
        new = np.full(buckets + 1, np.inf)
        for o in range(bits[l].size):
            u = int(units[l][o])
            if u > buckets:
                continue
            cand = np.full(buckets + 1, np.inf)
            cand[u:] = dp[: buckets + 1 - u] + bits[l][o]
            better = cand < new
            new[better] = cand[better]
            choice[l, better] = o
        dp = new
    default_ok = float(sum(e[d] for e, d in zip(errors, default))) <= budget * (1 + 1e-12)
    default_bits = float(sum(b[d] for b, d in zip(bits, default)))
    if not np.isfinite(dp).any():
        if default_ok:
            return default.copy()
        raise ValueError("no choice of options meets the error budget")
    e_end = int(np.argmin(dp))
    if default_ok and default_bits <= dp[e_end]:
        return default.copy()
    out = np.zeros(n_layers, np.int64)
    for l in range(n_layers - 1, -1, -1):
        o = choice[l, e_end]
        out[l] = o
        e_end -= int(units[l][o])
    return out


def lgreco_brute_force(
    bits, errors, default, alpha: float = 1.0, buckets: int | None = None
) -> tuple[np.ndarray, float]:
    """Exhaustive search (tests): minimum bits with total error ≤ alpha × default error.

    With ``buckets``, the same search on :func:`lgreco`'s discretized problem (errors rounded up to
    units of ``budget/buckets``, at most ``buckets`` units), with the same fallback to the default.
    """
    bits, errors, default = _check_options(bits, errors, default)
    budget = alpha * float(sum(e[d] for e, d in zip(errors, default)))
    units = _units(errors, budget, buckets) if buckets else None
    best, arg = np.inf, None
    for combo in itertools.product(*[range(b.size) for b in bits]):
        if units is None:
            ok = sum(e[o] for e, o in zip(errors, combo)) <= budget * (1 + 1e-12)
        else:
            ok = sum(int(u[o]) for u, o in zip(units, combo)) <= buckets
        cost = sum(b[o] for b, o in zip(bits, combo))
        if ok and cost < best:
            best, arg = cost, combo
    if buckets:
        default_ok = float(sum(e[d] for e, d in zip(errors, default))) <= budget * (1 + 1e-12)
        default_bits = float(sum(b[d] for b, d in zip(bits, default)))
        if default_ok and default_bits <= best:
            return default.copy(), default_bits
    if arg is None:
        raise ValueError("no choice of options meets the error budget")
    return np.array(arg), float(best)


def dq_sgd_schedule(grad_norms, rho: float, d: int, budget: float) -> np.ndarray:
    """Levels per step across time **[ours]** (THEORY §4, after DQ-SGD, Yan et al.).

    Minimizes ``Σ_t d log2 s_t`` subject to ``Σ_t a_t / s_t² ≤ budget`` and ``s_t ≥ 1`` (at least one
    interval), with ``a_t = ρ^{T−1−t} (d/4) ‖g_t‖²``.  The KKT conditions give
    ``s_t = max(1, c·√a_t)`` — i.e. ``s_t ∝ ‖g_t‖ ρ^{(T−1−t)/2}`` where not clipped — with ``c`` set
    so that the constraint holds with equality (a monotone 1-D root); if ``Σ a_t ≤ budget`` every
    ``s_t = 1``.  Returns the real-valued ``s_t ≥ 1`` (round up to keep the budget).
    """
    g = np.asarray(grad_norms, np.float64).ravel()
    if g.size == 0 or np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("grad_norms must be positive and finite")
    if not (0 < rho <= 1):
        raise ValueError(f"rho must lie in (0, 1], got {rho!r}")
    if not (budget > 0 and np.isfinite(budget)) or d < 1:
        raise ValueError("budget must be positive and d >= 1")
    T = g.size
    a = rho ** (T - 1 - np.arange(T)) * (d / 4.0) * g * g
    if a.sum() <= budget:
        return np.ones(T)
    sa = np.sqrt(a)

    def excess(log_c):  # Σ a_t / max(1, c√a_t)² − budget, decreasing in c
        s = np.maximum(1.0, np.exp(log_c) * sa)
        return float(np.sum(a / (s * s))) - budget

    lo = -float(np.log(sa.max()))  # c·√a_t ≤ 1 for all t: excess = Σ a − budget > 0
    hi = lo + 1.0
    while excess(hi) > 0:
        hi += 2.0 * (hi - lo)
    log_c = sopt.brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return np.maximum(1.0, np.exp(log_c) * sa)
