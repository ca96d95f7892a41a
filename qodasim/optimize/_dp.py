"""Numba kernels for the optimal-levels dynamic program (private; THEORY §4, QUIVER).

Candidate levels ``x_0 = 0 < x_1 < … < x_N = 1`` carry prefix sums over the data they cover:
``W[i]``, ``B[i]``, ``G[i]`` = weight, ``Σ w r`` and ``Σ w r²`` of the data in ``(x_0, x_{i-1}]``
(index shifted by one; ``W[0] = 0``) — for exact optimization the candidates are the data values
themselves, for the histogram variant a grid with the data's exact per-bin sums.  The cost of one
interval ``(x_k, x_j]`` is then exact and O(1):

``C(k, j) = −x_j x_k (W_j − W_k) + (x_j + x_k)(B_j − B_k) − (G_j − G_k)``   (sums over ``(x_k, x_j]``).

``C`` satisfies the quadrangle inequality, so in each DP layer the optimal predecessor is monotone
in ``j``; the row minima are found by divide and conquer (monotone minima): ``O(N log N)`` per layer.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def interval_cost(x, W, B, G, k, j):
    """``C(k, j)``: variance mass of the data in ``(x_k, x_j]`` rounded between ``x_k`` and ``x_j``."""
    uj, uk = np.uint64(j), np.uint64(k)  # unsigned: no wraparound checks, so a loop over k vectorizes
    j1, k1 = uj + np.uint64(1), uk + np.uint64(1)
    return -x[uj] * x[uk] * (W[j1] - W[k1]) + (x[uj] + x[uk]) * (B[j1] - B[k1]) - (G[j1] - G[k1])


@njit(cache=True)
def _finish(x, W, B, G, alpha, prev, arg):
    """Last interval (to ``x[N] = 1``) and backtracking through the stored arg-minima."""
    last = x.size - 1
    chosen = np.empty(alpha, np.int64)
    if alpha == 0:
        return interval_cost(x, W, B, G, 0, last), chosen
    best = np.inf
    bk = alpha
    for k in range(alpha, last):
        val = prev[k] + interval_cost(x, W, B, G, k, last)
        if val < best:
            best = val
            bk = k
    chosen[alpha - 1] = bk
    for t in range(alpha - 1, 0, -1):
        chosen[t - 1] = arg[t, chosen[t]]
    return best, chosen


@njit(cache=True)
def dp_levels(x, W, B, G, alpha):
    """Optimal ``alpha`` interior levels among ``x[1..N-1]`` (``x[0] = 0``, ``x[N] = 1`` forced).

    Returns ``(cost, chosen indices)``.  Requires ``N − 1 ≥ alpha``.
    """
    n = x.size
    last = n - 1
    prev = np.empty(n)
    cur = np.empty(n)
    for j in range(n):
        prev[j] = interval_cost(x, W, B, G, 0, j)  # one interval: level 0 then a level at j
    arg = np.zeros((max(alpha, 1), n), np.int32)
    # layer t: the t-th interior level at j ≥ t; j ≤ last − (alpha − t) leaves room for the rest
    stack = np.empty((128, 4), np.int64)
    vals = np.empty(n)
    for t in range(1, alpha):
        jlo, jhi = t + 1, last - (alpha - t - 1) - 1
        for j in range(n):
            cur[j] = np.inf
        if jlo <= jhi:
            sp = 0
            stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = jlo, jhi, t, jhi - 1
            sp = 1
            while sp > 0:
                sp -= 1
                a, b, klo, khi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
                mid = (a + b) // 2
                top = min(khi, mid - 1)
                # the candidates' values first (this loop vectorizes), then the first strict minimum
                uk = np.uint64(klo)
                for q in range(np.uint64(top + 1 - klo)):
                    k = uk + q
                    vals[q] = prev[k] + interval_cost(x, W, B, G, k, mid)
                best = np.inf
                bk = klo
                for q in range(top + 1 - klo):
                    if vals[q] < best:
                        best = vals[q]
                        bk = klo + q
                cur[mid] = best
                arg[t, mid] = bk
                if a <= mid - 1:
                    stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = a, mid - 1, klo, bk
                    sp += 1
                if mid + 1 <= b:
                    stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = mid + 1, b, bk, khi
                    sp += 1
        for j in range(n):
            prev[j] = cur[j]
    return _finish(x, W, B, G, alpha, prev, arg)


@njit(cache=True)
def dp_levels_quadratic(x, W, B, G, alpha):
    """The straightforward ``O(alpha · N²)`` DP (the baseline for the monotone-minima speed-up)."""
    n = x.size
    prev = np.empty(n)
    cur = np.empty(n)
    for j in range(n):
        prev[j] = interval_cost(x, W, B, G, 0, j)
    arg = np.zeros((max(alpha, 1), n), np.int32)
    for t in range(1, alpha):
        for j in range(n):
            cur[j] = np.inf
            for k in range(t, j):
                val = prev[k] + interval_cost(x, W, B, G, k, j)
                if val < cur[j]:
                    cur[j] = val
                    arg[t, j] = k
        for j in range(n):
            prev[j] = cur[j]
    return _finish(x, W, B, G, alpha, prev, arg)


@njit(parallel=False, cache=True)
def histogram_sums(r, m):
    """Per grid bin ``b`` (``(g_{b−1}, g_b]``, ``g_b = b/m``; bin 0 holds ``r = 0``): count, ``Σ r``,
    ``Σ r²`` — one pass, exact sums of the data in each bin."""
    cnt = np.zeros(m + 1)
    s1 = np.zeros(m + 1)
    s2 = np.zeros(m + 1)
    for i in range(r.size):
        x = r[i]
        b = np.int64(np.ceil(x * m))
        if b > m:
            b = m
        if b < 0:
            b = 0
        # guard the grid boundary against rounding of x·m: bin b must satisfy g_{b-1} < x ≤ g_b
        if b > 0 and x <= (b - 1) / m:
            b -= 1
        elif b < m and x > b / m:
            b += 1
        cnt[b] += 1.0
        s1[b] += x
        s2[b] += x * x
    return cnt, s1, s2
