"""Bit allocation across layers (L-GreCo) and across time (DQ-SGD) (THEORY §4)."""

from __future__ import annotations

import itertools

import numpy as np

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


def lgreco(bits, errors, default, alpha: float = 1.0, buckets: int = 1000) -> np.ndarray:
    """L-GreCo knapsack DP (Markov et al. 2024): choose one option per layer minimizing total bits
    subject to total error ≤ ``alpha`` × the error of the ``default`` choice.

    Errors are discretized into ``buckets`` units of ``budget/buckets`` (rounded *up*, so the
    returned choice always meets the budget); ``O(L · options · buckets)``.  Returns the option
    index per layer.
    """
    bits, errors, default = _check_options(bits, errors, default)
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    budget = alpha * float(sum(e[d] for e, d in zip(errors, default)))
    if budget == 0.0:
        units = [np.where(e > 0, buckets + 1, 0) for e in errors]
    else:
        units = [np.ceil(e / budget * buckets - 1e-12).astype(np.int64) for e in errors]
    n_layers = len(bits)
    inf = np.inf
    dp = np.full(buckets + 1, inf)
    dp[0] = 0.0
    choice = np.zeros((n_layers, buckets + 1), np.int64)
    for l in range(n_layers):
        new = np.full(buckets + 1, inf)
        for o in range(bits[l].size):
            u = int(units[l][o])
            if u > buckets:
                continue
            cand = np.full(buckets + 1, inf)
            cand[u:] = dp[: buckets + 1 - u] + bits[l][o]
            better = cand < new
            new[better] = cand[better]
            choice[l, better] = o
        dp = new
    if not np.isfinite(dp).any():
        raise ValueError("no choice of options meets the error budget")
    e_end = int(np.argmin(dp))
    out = np.zeros(n_layers, np.int64)
    for l in range(n_layers - 1, -1, -1):
        o = choice[l, e_end]
        out[l] = o
        e_end -= int(units[l][o])
    return out


def lgreco_brute_force(bits, errors, default, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Exhaustive search (tests): minimum bits with total error ≤ alpha × default error."""
    bits, errors, default = _check_options(bits, errors, default)
    budget = alpha * float(sum(e[d] for e, d in zip(errors, default)))
    best, arg = np.inf, None
    for combo in itertools.product(*[range(b.size) for b in bits]):
        err = sum(e[o] for e, o in zip(errors, combo))
        if err <= budget * (1 + 1e-12):
            cost = sum(b[o] for b, o in zip(bits, combo))
            if cost < best:
                best, arg = cost, combo
    return np.array(arg), float(best)


def dq_sgd_schedule(grad_norms, rho: float, d: int, budget: float) -> np.ndarray:
    """Levels per step across time **[ours]** (THEORY §4, after DQ-SGD, Yan et al.).

    Minimizing ``Σ_t d log2 s_t`` subject to ``Σ_t ρ^{T−1−t} (d/(4 s_t²)) ‖g_t‖² ≤ budget`` gives
    ``s_t = c ‖g_t‖ ρ^{(T−1−t)/2}`` with ``c = √(T d / (4·budget))`` (the constraint then holds with
    equality).  Returns the real-valued ``s_t`` (round up to keep the budget).
    """
    g = np.asarray(grad_norms, np.float64).ravel()
    if g.size == 0 or np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("grad_norms must be positive and finite")
    if not (0 < rho <= 1):
        raise ValueError(f"rho must lie in (0, 1], got {rho!r}")
    if not (budget > 0 and np.isfinite(budget)) or d < 1:
        raise ValueError("budget must be positive and d >= 1")
    T = g.size
    c = np.sqrt(T * d / (4.0 * budget))
    return c * g * rho ** ((T - 1 - np.arange(T)) / 2.0)
