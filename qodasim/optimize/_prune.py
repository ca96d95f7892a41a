"""Certified windows for the exact-level DP: where each optimal level can be (private; THEORY §4).

The DP of :mod:`._dp` computes, for every interior level ``i`` and every candidate ``j``, the best
cost of the first ``i`` intervals ending at ``j`` — ``α`` layers of ``N`` rows.  Only rows near the
optimum matter.  This module finds, for each level, an index window that provably contains that level
in **every** optimal sequence, so the DP can run on the windows alone
(:func:`._dp.dp_levels_windowed`) and return the same answer.

**Lower bound.**  Split the interior candidates ``1 … N − 1`` into consecutive blocks
``[f_b, e_b]``.  If level ``i`` lies in block ``b`` and level ``i + 1`` in a later block ``c``, the
data in ``(x_{e_b}, x_{f_c}]`` lie between the two levels, and each point ``r`` there contributes
``w (ℓ_{i+1} − r)(r − ℓ_i) ≥ w (x_{f_c} − r)(r − x_{e_b})``; points elsewhere contribute ``≥ 0``.  So

``C(p_i, p_{i+1}) ≥ L(b, c) = C(e_b, f_c)`` (``c > b``),  ``L(b, b) = 0``,

the same interval cost :func:`._dp.interval_cost` on the same prefix sums.  A DP over blocks with
``L`` (forward from ``x_0``, backward from ``x_N``; ``L`` is Monge, so monotone minima apply) gives
for each level ``i`` and block ``b`` a lower bound ``LF_i(b) + LB_i(b)`` on every sequence with
level ``i`` in ``b``.

**Upper bound.**  ``U`` = the optimal cost with levels restricted to the blocks' first candidates
(the same DP on that subset): the cost of a feasible sequence, so ``U ≥ OPT``.

**Certificate.**  A block with ``LF_i(b) + LB_i(b) > U + δ`` holds level ``i`` of no sequence of
cost ``≤ U``, hence of no optimal one; level ``i``'s window is the hull of the other blocks.  ``δ``
covers floating point: the costs are evaluated on rounded prefix sums, so the inequalities above
hold up to the rounding of those sums — their largest errors are measured against exact
(double-double) sums, :func:`prefix_errors` — and of the formula (:func:`evaluation_noise`); ``δ``
allows both for every interval of a sequence and of its bound, and for minima the divide and conquer
can miss (:func:`tolerance`).  Where the costs themselves are at the rounding-noise level
(:data:`NOISE_FRACTION`) no windows are used.  Blocks are a union of equal-count and equal-value
splits, so that both dense and sparse stretches of the data get narrow blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._dp import dp_levels, full_windows, interval_cost, push_children

#: Below this many interior candidates the DP runs without windows (it is fast there anyway).
PRUNE_MIN = 1 << 14
#: Most blocks of the lower-bound DP (half split by count, half by value).
MAX_BLOCKS = 1 << 14
#: Windows are used only when ``(α + 2)`` evaluations' rounding is below this fraction of the optimal
#: cost (:func:`above_noise`): where it is not, the costs' differences are rounding noise, the divide
#: and conquer itself can miss the quadratic DP's minimum, and pruning can change which noisy answer
#: comes out.  Measured (~1900 random instances with the rule off): the pruned and full
#: DPs differed only where that ratio, taken with the optimal cost, was ≥ 9.3e-5 (two clusters of
#: width 1e-2 … 1e-12 away from 0: the cost formula cancels terms ~1/width² larger than the costs);
#: never below, over ~450 instances of eight other kinds up to 5e-6 (Gaussian magnitudes, α = 254).
#: 2^20 Gaussian magnitudes, 2-norm, α = 14: 5e-9.
NOISE_FRACTION = 1e-6


@njit(cache=True)
def _layer(x, W, B, G, src, dst, f, e, forward):
    """One layer of the block DP by monotone minima (divide and conquer over blocks).

    Forward: ``dst[c] = min(src[c], min_{b < c} src[b] + C(e_b, f_c))``; backward:
    ``dst[b] = min(src[b], min_{c > b} src[c] + C(e_b, f_c))``.  ``L`` is Monge, so the strict
    part's arg-minima are monotone in the row; the same block (``L = 0``) is taken afterwards."""
    nb = f.size
    stack = np.empty((64, 4), np.int64)
    if forward:  # rows c = 1..nb-1 over b = 0..c-1
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 1, nb - 1, 0, nb - 2
    else:  # rows b = 0..nb-2 over c = b+1..nb-1
        stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, nb - 2, 1, nb - 1
    sp = 1 if nb > 1 else 0
    while sp > 0:
        sp -= 1
        a, z, klo, khi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        mid = (a + z) // 2
        if forward:
            lo, hi = klo, min(khi, mid - 1)
        else:
            lo, hi = max(klo, mid + 1), khi
        best, bk = np.inf, lo
        for k in range(lo, hi + 1):
            if forward:
                v = src[k] + interval_cost(x, W, B, G, e[k], f[mid])
            else:
                v = src[k] + interval_cost(x, W, B, G, e[mid], f[k])
            if v < best:
                best, bk = v, k
        dst[mid] = best
        sp = push_children(stack, sp, a, z, mid, klo, khi, bk)
    if forward:
        dst[0] = np.inf
    else:
        dst[nb - 1] = np.inf
    for b in range(nb):
        dst[b] = min(dst[b], src[b])


@njit(cache=True)
def block_bounds(x, W, B, G, f, e, alpha):
    """``LF[i, b] + LB[i, b]``: a lower bound on the cost of every sequence whose level ``i``
    (1-based, ``1 ≤ i ≤ alpha``) lies in block ``b = [f_b, e_b]`` (row 0 unused)."""
    nb = f.size
    last = x.size - 1
    LF = np.empty((alpha + 1, nb))
    LB = np.empty((alpha + 1, nb))
    for b in range(nb):
        LF[1, b] = interval_cost(x, W, B, G, 0, f[b])
        LB[alpha, b] = interval_cost(x, W, B, G, e[b], last)
    for i in range(2, alpha + 1):
        _layer(x, W, B, G, LF[i - 1], LF[i], f, e, True)
    for i in range(alpha - 1, 0, -1):
        _layer(x, W, B, G, LB[i + 1], LB[i], f, e, False)
    return LF + LB


def blocks(x: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last index ``f, e`` of consecutive blocks covering the interior candidates
    ``1 … N − 1``: ``n_blocks / 2`` splits of equal count united with ``n_blocks / 2`` of equal value
    (over ``[x_1, x_{N−1}]``)."""
    last = x.size - 1
    half = max(n_blocks // 2, 1)
    by_count = 1 + (np.arange(half) * (last - 1)) // half
    span = x[last - 1] - x[1]
    by_value = np.searchsorted(x, x[1] + span * (np.arange(1, half) / half), side="left")
    starts = np.unique(np.concatenate([by_count, np.clip(by_value, 1, last - 1)]))
    ends = np.append(starts[1:] - 1, last - 1)
    return starts.astype(np.int64), ends.astype(np.int64)


def upper_bound(x, W, B, G, alpha: int, f: np.ndarray) -> float:
    """``U``: the optimal cost with the interior levels restricted to the candidates ``f`` (the same
    DP and cost on that subset; a feasible sequence, so ``U ≥ OPT``).  Needs ``f.size ≥ alpha``."""
    sub = np.concatenate([[0], f, [x.size - 1]])
    pick = np.concatenate([[0], sub + 1])  # interval_cost reads W[j + 1]: the subset's prefix sums
    cost, _ = dp_levels(x[sub], W[pick], B[pick], G[pick], alpha)
    return float(cost)


@njit(cache=True, inline="always")
def _two_sum(a, b):
    """``a + b = s + err`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(cache=True, inline="always")
def _two_prod(a, b):
    """``a · b = p + err`` exactly for normal results (Dekker/Veltkamp split, no FMA needed)."""
    p = a * b
    c = 134217729.0 * a
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(cache=True)
def prefix_errors(x, w, W, B, G):
    """``max_i |W[i] − Σ_{m<i} w_m|`` and the same for ``B`` (``Σ w x``) and ``G`` (``Σ w x²``): how far
    the rounded prefix sums are from the exact ones, the exact sums kept in double-double."""
    eW = eB = eG = 0.0
    sw = lw = sb = lb = sg = lg = 0.0
    for i in range(x.size):
        p, pe = _two_prod(w[i], x[i])
        q, qe = _two_prod(p, x[i])
        qe += pe * x[i]
        s, e = _two_sum(sw, w[i])
        e += lw
        sw, lw = _two_sum(s, e)
        s, e = _two_sum(sb, p)
        e += lb + pe
        sb, lb = _two_sum(s, e)
        s, e = _two_sum(sg, q)
        e += lg + qe
        sg, lg = _two_sum(s, e)
        eW = max(eW, abs((W[i + 1] - sw) - lw))
        eB = max(eB, abs((B[i + 1] - sb) - lb))
        eG = max(eG, abs((G[i + 1] - sg) - lg))
    return eW, eB, eG


def tolerance(x, w, W, B, G, alpha: int) -> float:
    """``δ``: how far rounding can move a sequence's cost or its lower bound (see the module doc).

    With ``C*`` the cost formula on the rounded prefix sums and ``T`` the exact cost of the data,
    ``|C*(k, j) − T(k, j)| ≤ 2(e_W + 2 e_B + e_G)`` per interval (levels in ``[0, 1]``; ``e`` the
    prefix sums' largest errors, :func:`prefix_errors`); evaluating the formula adds at most
    :func:`evaluation_noise`.  ``δ`` allows that for every interval of a sequence and of its bound, for
    the minima that divide and conquer can miss when rounding breaks the Monge property (once per
    recursion level and layer), and a margin for subnormal products.
    """
    n = x.size
    eW, eB, eG = prefix_errors(x, w, W, B, G)
    per = 4.0 * (eW + 2.0 * eB + eG) + 2.0 * evaluation_noise(x, W, B, G)
    return 8.0 * (alpha + 2) * (np.log2(n) + 2.0) * per + 64.0 * n * np.finfo(np.float64).tiny


def evaluation_noise(x, W, B, G) -> float:
    """A bound on the rounding of one :func:`._dp.interval_cost` evaluation, ``4 ε (3B + G)``: its three
    terms are at most ``x_j x_k ΔW ≤ x_k (W − W_{k+1}) ≤ Σ_{m>k} w_m x_m ≤ B`` (every point above
    ``x_k`` exceeds it; ``x_j ≤ 1``), ``(x_j + x_k) ΔB ≤ 2B`` and ``ΔG ≤ G``."""
    eps = np.finfo(np.float64).eps
    return 4.0 * eps * (3.0 * abs(B[-1]) + abs(G[-1]))


def above_noise(x, W, B, G, alpha: int, cost: float) -> bool:
    """Whether ``(α + 2)`` cost evaluations' rounding (:func:`evaluation_noise`) is at most
    :data:`NOISE_FRACTION` of ``cost``.  Checked twice: with the upper bound ``U`` before the windows
    are built (``U ≥`` the optimum, so failing there means failing at the optimum) and with the cost
    the windows' DP returns — ``U`` can exceed the optimum by orders of magnitude (data in narrow
    clusters), which let noise-level problems through when only ``U`` was checked."""
    return (alpha + 2) * evaluation_noise(x, W, B, G) <= NOISE_FRACTION * cost


def windows(x, w, W, B, G, alpha: int, n_blocks: int | None = None):
    """Per interior level ``i`` an index window ``[lo[i], hi[i]]`` holding level ``i`` of every
    optimal sequence, nested for :func:`._dp.dp_levels_windowed`; ``None`` when the problem is too
    small for pruning to pay (fewer than :data:`PRUNE_MIN` interior candidates) or its upper bound
    is at the rounding-noise level (:func:`above_noise`; the caller checks the windows' optimum
    too)."""
    last = x.size - 1
    if alpha < 1 or last - 1 < PRUNE_MIN:
        return None
    if n_blocks is None:
        n_blocks = min(MAX_BLOCKS, (last - 1) // 32)
    f, e = blocks(x, max(n_blocks, 2 * alpha + 2))
    if f.size < alpha:
        return None
    upper = upper_bound(x, W, B, G, alpha, f)
    if not above_noise(x, W, B, G, alpha, upper):
        return None  # costs at the rounding-noise level: the full DP's own comparisons are noise there
    bound = block_bounds(x, W, B, G, f, e, alpha)
    limit = upper + tolerance(x, w, W, B, G, alpha)
    lo, hi = full_windows(x.size, alpha)
    for i in range(1, alpha + 1):
        keep = np.flatnonzero(bound[i] <= limit)
        if keep.size == 0:  # cannot happen (the optimum's blocks pass); stay exact regardless
            return full_windows(x.size, alpha)
        lo[i] = max(lo[i], f[keep[0]])
        hi[i] = min(hi[i], e[keep[-1]])
    for i in range(2, alpha + 1):  # positions increase: p_i ≥ p_{i−1} + 1 and p_{i−1} ≤ p_i − 1
        lo[i] = max(lo[i], lo[i - 1] + 1)
    for i in range(alpha - 1, 0, -1):
        hi[i] = min(hi[i], hi[i + 1] - 1)
    if np.any(lo[1:] > hi[1:]):  # cannot happen either (the optimum satisfies every window)
        return full_windows(x.size, alpha)
    return lo, hi
