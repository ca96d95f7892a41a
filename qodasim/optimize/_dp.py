"""Numba kernels for the optimal-levels dynamic program (private; THEORY §4, QUIVER).

Candidate levels ``x_0 = 0 < x_1 < … < x_N = 1`` carry prefix sums over the data they cover:
``W[i]``, ``B[i]``, ``G[i]`` = weight, ``Σ w r`` and ``Σ w r²`` of the data in ``(x_0, x_{i-1}]``
(index shifted by one; ``W[0] = 0``) — for exact optimization the candidates are the data values
themselves, for the histogram variant a grid with the data's exact per-bin sums.  The cost of one
interval ``(x_k, x_j]`` is then exact and O(1):

``C(k, j) = −x_j x_k (W_j − W_k) + (x_j + x_k)(B_j − B_k) − (G_j − G_k)``   (sums over ``(x_k, x_j]``).

``C`` satisfies the quadrangle inequality, so in each DP layer the optimal predecessor is monotone
in ``j``; the row minima are found by divide and conquer (monotone minima): ``O(N log N)`` per layer,
its top levels serially and the subtrees below them on all threads (the same rows, the same floats).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..quantize._numba import _serial_twin
from ._argmin import first_min8


@njit(cache=True)
def interval_cost(x, W, B, G, k, j):
    """``C(k, j)``: variance mass of the data in ``(x_k, x_j]`` rounded between ``x_k`` and ``x_j``."""
    uj, uk = np.uint64(j), np.uint64(k)  # unsigned: no wraparound checks, so a loop over k vectorizes
    j1, k1 = uj + np.uint64(1), uk + np.uint64(1)
    return -x[uj] * x[uk] * (W[j1] - W[k1]) + (x[uj] + x[uk]) * (B[j1] - B[k1]) - (G[j1] - G[k1])


@njit(cache=True)
def _finish(x, W, B, G, alpha, prev, klo, khi):
    """The last interval (to ``x[N] = 1``) over the last level's window ``[klo, khi]``: the total cost
    and ``chosen`` with its last entry set (the first minimum); the caller backtracks the rest
    through its stored arg-minima."""
    last = x.size - 1
    chosen = np.empty(alpha, np.int64)
    if alpha == 0:
        return interval_cost(x, W, B, G, 0, last), chosen
    best = np.inf
    bk = klo
    for k in range(klo, khi + 1):
        val = prev[k] + interval_cost(x, W, B, G, k, last)
        if val < best:
            best = val
            bk = k
    chosen[alpha - 1] = bk
    return best, chosen


_U0 = np.uint64(0)
_U1 = np.uint64(1)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, inline="always")
def _popcount(w):
    """Set bits of a uint64 (SWAR)."""
    w = w - ((w >> _U1) & _M1)
    w = (w & _M2) + ((w >> np.uint64(2)) & _M2)
    w = (w + (w >> np.uint64(4))) & _M4
    return np.int64((w * _H01) >> np.uint64(56))


@njit(cache=True)
def arg_words(lo, hi):
    """Word offsets of the packed arg-min store: layer ``t`` (rows ``[lo[t+1], hi[t+1]]``, candidates
    ``[lo[t], hi[t]]``) takes ``rows + (hi[t] − lo[t]) + 1`` bits — one per row, one per unit step of
    its (non-decreasing) arg-min — in words ``off[t − 1] … off[t] − 1``."""
    alpha = lo.size - 1
    off = np.zeros(alpha + 1, np.int64)
    for t in range(1, alpha + 1):
        bits = 0
        if t < alpha:
            bits = (hi[t + 1] - lo[t + 1] + 1) + (hi[t] - lo[t]) + 1
        off[t] = off[t - 1] + (bits + 63) // 64
    return off


@njit(cache=True)
def pack_args(arg_t, jlo, jhi, bits, w0):
    """Store the non-decreasing arg-minima ``arg_t[jlo … jhi]`` from word ``w0`` of ``bits`` (zeroed):
    row ``j``'s one-bit follows ``arg_t[j] − arg_t[j − 1]`` zero-bits (``arg_t[jlo]`` is returned as the
    layer's base).  2 bits per row at most, against 32 for an ``int32`` row: the ``α × N`` table of
    arg-minima was 16 GB for ``α = 254``, ``N = 2^24``."""
    base = np.int64(arg_t[jlo])
    p = base
    pos = np.int64(w0) * 64
    for j in range(jlo, jhi + 1):
        a = np.int64(arg_t[j])
        if a < p:
            raise RuntimeError("arg-minima not monotone")  # the divide and conquer makes them so
        pos += a - p
        bits[pos >> 6] |= _U1 << np.uint64(pos & 63)
        pos += 1
        p = a
    return base


@njit(cache=True)
def unpack_arg(bits, w0, base, jlo, j):
    """Row ``j``'s arg-min from the store :func:`pack_args` wrote at word ``w0``: the position of the
    ``(j − jlo)``-th one-bit minus ``j − jlo``, plus ``base``."""
    target = j - jlo
    w = w0
    seen = 0
    c = _popcount(bits[w])
    while seen + c <= target:
        seen += c
        w += 1
        c = _popcount(bits[w])
    word = bits[w]
    for _ in range(target - seen):
        word &= word - _U1  # drop the lowest one-bits before ours
    b = 0
    while ((word >> np.uint64(b)) & _U1) == _U0:
        b += 1
    return base + (w - w0) * 64 + b - target


#: Rows of at least this many candidates find their minimum in vector lanes (:func:`._argmin.first_min8`).
_VECTOR_ROW = 16

#: Subtrees of the monotone-minima recursion below this depth run in parallel (``2^6`` = 64 of them).
SPLIT_DEPTH = 6


@njit(cache=True, inline="always")
def _row_min(x, W, B, G, prev, vals, klo, top, j, out_v, out_k, slot):
    """``out_v[slot], out_k[slot]`` = min and first arg-min of ``prev[k] + C(k, j)`` over
    ``k ∈ [klo, top]``, ``top ≥ klo`` (the recursion never asks for an empty range): the candidates'
    values first (this loop vectorizes), then the first strict minimum — in 8 vector lanes
    (:func:`._argmin.first_min8`) for a long row, continued by a branch-free serial scan: the same
    index and value as the serial scan alone (tested)."""
    uk = np.uint64(klo)
    w = np.uint64(top + 1 - klo)
    for q in range(w):
        k = uk + q
        vals[q] = prev[k] + interval_cost(x, W, B, G, k, j)
    best = np.inf
    bq = _U0
    rest = _U0
    if w >= _VECTOR_ROW:
        first = first_min8(vals, np.int64(w))
        rest = w & ~np.uint64(7)
        if first >= 0:
            bq = np.uint64(first)
            best = vals[bq]
    for q in range(rest, w):
        v = vals[q]
        less = v < best
        best = v if less else best
        bq = q if less else bq
    out_v[slot] = best
    out_k[slot] = klo + np.int64(bq)


@njit(cache=True, inline="always")
def _bounds(arg_t, a, b, jlo, jhi, kmin, kmax):
    """The arg-min bounds ``(klo, khi)`` the recursion passes down to the node ``(a, b)`` of a layer
    with rows ``[jlo, jhi]`` and candidates ``[kmin, kmax]``: the arg-minima of the rows just outside
    it, ``arg[a − 1]`` and ``arg[b + 1]`` (``kmin`` and ``kmax`` at the layer's ends)."""
    klo = np.int64(arg_t[a - 1]) if a > jlo else kmin
    khi = np.int64(arg_t[b + 1]) if b < jhi else kmax
    return klo, khi


@njit(cache=True, inline="always")
def push_children(stack, sp, a, b, mid, klo, khi, bk):
    """Push the children ``(a, mid − 1)`` and ``(mid + 1, b)`` of a monotone-minima node whose row
    ``mid`` has its arg-min at ``bk``, with the bounds ``[klo, bk]`` and ``[bk, khi]``; returns the
    new stack size."""
    if a <= mid - 1:
        stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = a, mid - 1, klo, bk
        sp += 1
    if mid + 1 <= b:
        stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = mid + 1, b, bk, khi
        sp += 1
    return sp


@njit(cache=True)
def _monotone_rows(x, W, B, G, prev, cur, arg_t, vals, a0, b0, klo0, khi0):
    """Rows ``[a0, b0]`` of one layer by divide and conquer, given their argmin bounds ``[klo0, khi0]``.

    The node ``(a, b)`` computes row ``mid = ⌊(a + b)/2⌋`` over ``k ∈ [klo, min(khi, mid − 1)]``; its
    children ``(a, mid − 1)`` and ``(mid + 1, b)`` inherit the bounds ``[klo, bk]`` and ``[bk, khi]``.
    A node's bounds are fixed by the rows above it (:func:`_bounds`), so its subtree gives the same
    rows whether it is solved alone or inside a larger recursion, on any thread.
    """
    stack = np.empty((128, 4), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = a0, b0, klo0, khi0
    sp = 1
    while sp > 0:
        sp -= 1
        a, b, klo, khi = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        mid = (a + b) // 2
        _row_min(x, W, B, G, prev, vals, klo, min(khi, mid - 1), mid, cur, arg_t, mid)
        sp = push_children(stack, sp, a, b, mid, klo, khi, np.int64(arg_t[mid]))


#: Candidates per parallel chunk of one of the top levels' long rows.
CHUNK = 1 << 13


@njit(cache=True, parallel=True)
def _top_rows(x, W, B, G, prev, cur, arg_t, jlo, jhi, kmin, kmax, roots, chunk):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """The recursion's top :data:`SPLIT_DEPTH` levels of one layer, level by level, each long row split
    into chunks of ``chunk`` candidates on all threads; writes the subtrees below into ``roots``
    and returns how many.

    A node ``(a, b)``'s bounds are those the recursion passes down (:func:`_bounds`).  Chunks are
    combined in order, the first strict minimum winning, which is the whole row's first strict minimum.
    """
    m = 1 << SPLIT_DEPTH
    nodes = np.empty((m, 2), np.int64)
    nxt = np.empty((m, 2), np.int64)
    row = np.empty((m, 3), np.int64)  # mid, klo, top
    first = np.empty(m + 1, np.int64)  # the node's chunks are first[i] .. first[i + 1] − 1
    nodes[0, 0], nodes[0, 1] = jlo, jhi
    count = 1
    for _ in range(SPLIT_DEPTH):
        first[0] = 0
        for i in range(count):
            a, b = nodes[i, 0], nodes[i, 1]
            mid = (a + b) // 2
            klo, khi = _bounds(arg_t, a, b, jlo, jhi, kmin, kmax)
            top = min(khi, mid - 1)
            row[i, 0], row[i, 1], row[i, 2] = mid, klo, top
            first[i + 1] = first[i] + max(1, (top + 1 - klo + chunk - 1) // chunk)
        nch = first[count]
        owner = np.empty(nch, np.int64)
        for i in range(count):
            owner[first[i] : first[i + 1]] = i
        part_v = np.empty(nch)
        part_k = np.empty(nch, np.int64)
        for c in prange(nch):
            i = owner[c]
            k0 = row[i, 1] + (c - first[i]) * chunk
            k1 = min(row[i, 2], k0 + chunk - 1)
            scratch = np.empty(chunk)
            _row_min(x, W, B, G, prev, scratch, k0, k1, row[i, 0], part_v, part_k, c)
        nn = 0
        for i in range(count):
            best, bk = np.inf, row[i, 1]
            for c in range(first[i], first[i + 1]):
                if part_v[c] < best:
                    best, bk = part_v[c], part_k[c]
            mid = row[i, 0]
            cur[mid] = best
            arg_t[mid] = bk
            a, b = nodes[i, 0], nodes[i, 1]
            if a <= mid - 1:
                nxt[nn, 0], nxt[nn, 1] = a, mid - 1
                nn += 1
            if mid + 1 <= b:
                nxt[nn, 0], nxt[nn, 1] = mid + 1, b
                nn += 1
        nodes, nxt = nxt, nodes
        count = nn
    for i in range(count):
        a, b = nodes[i, 0], nodes[i, 1]
        roots[i, 0], roots[i, 1] = a, b
        roots[i, 2], roots[i, 3] = _bounds(arg_t, a, b, jlo, jhi, kmin, kmax)
    return count


@njit(cache=True)
def full_windows(n, alpha):
    """Every position each interior level can take: level ``i`` (1-based) at ``j ∈ [i, N − α + i − 1]``
    (``N = n − 1``), leaving room for the levels before and after it.  ``lo, hi`` have ``alpha + 1``
    entries; entry 0 (the fixed level ``x_0``) is ``[0, 0]``."""
    last = n - 1
    lo = np.zeros(alpha + 1, np.int64)
    hi = np.zeros(alpha + 1, np.int64)
    for i in range(1, alpha + 1):
        lo[i] = i
        hi[i] = last - alpha + i - 1
    return lo, hi


@njit(cache=True, parallel=True)
def _windowed_parallel(x, W, B, G, alpha, lo, hi, chunk=CHUNK):
    """:func:`dp_levels_windowed` on the thread pool (its serial twin: ``_windowed_serial``)."""
    n = x.size
    prev = np.empty(n)
    cur = np.empty(n)
    if alpha >= 1:
        for j in range(lo[1], hi[1] + 1):
            prev[j] = interval_cost(x, W, B, G, 0, j)  # one interval: level 0 then a level at j
    arg_t = np.empty(n, np.int32)  # the current layer's arg-minima, packed after the layer
    off = arg_words(lo, hi)
    bits = np.zeros(off[-1], np.uint64)
    base = np.zeros(max(alpha, 1), np.int64)
    roots = np.empty((1 << SPLIT_DEPTH, 4), np.int64)
    # layer t: the (t + 1)-th interior level at j ∈ [lo[t + 1], hi[t + 1]], its predecessor in [lo[t], hi[t]]
    for t in range(1, alpha):
        jlo, jhi = lo[t + 1], hi[t + 1]
        nroots = _top_rows(x, W, B, G, prev, cur, arg_t, jlo, jhi, lo[t], hi[t], roots, chunk)
        for r in prange(nroots):
            a, b, klo, khi = roots[r, 0], roots[r, 1], roots[r, 2], roots[r, 3]
            scratch = np.empty(khi - klo + 1)
            _monotone_rows(x, W, B, G, prev, cur, arg_t, scratch, a, b, klo, khi)
        base[t] = pack_args(arg_t, jlo, jhi, bits, off[t - 1])
        prev, cur = cur, prev
    best, chosen = _finish(x, W, B, G, alpha, prev, lo[alpha], hi[alpha])
    for t in range(alpha - 1, 0, -1):
        chosen[t - 1] = unpack_arg(bits, off[t - 1], base[t], lo[t + 1], chosen[t])
    return best, chosen


_top_rows_serial = _serial_twin(_top_rows)
_windowed_serial = _serial_twin(_windowed_parallel, _top_rows=_top_rows_serial)

#: Candidates (``x.size``) from which the DP runs on the thread pool; below, one thread: a layer of a
#: small DP launches dozens of parallel regions whose wake-ups cost more than their rows (and with
#: the fork-safe ``workqueue`` layer, ~1 ms each).
DP_PARALLEL_MIN = 1 << 15


def dp_levels_windowed(x, W, B, G, alpha, lo, hi, chunk=CHUNK):
    """The DP of :func:`dp_levels` over the paths whose level ``i`` lies in ``[lo[i], hi[i]]``.

    Windows must be nested like positions: ``lo[i] ≥ lo[i − 1] + 1``, ``hi[i] ≤ hi[i + 1] − 1``,
    inside :func:`full_windows` (then every row of a window has a candidate).  Layer ``i`` computes
    rows ``[lo[i], hi[i]]`` over candidates ``[lo[i − 1], hi[i − 1]]``; with the full windows this is
    exactly :func:`dp_levels`.  When every optimal path lies inside the windows (what
    :mod:`._prune` certifies), the rows on those paths see the same minima and the answer is the
    same, bit for bit.  Runs serially below :data:`DP_PARALLEL_MIN` candidates (the same answer).
    """
    kernel = _windowed_parallel if x.size >= DP_PARALLEL_MIN else _windowed_serial
    return kernel(x, W, B, G, alpha, lo, hi, chunk)


def dp_levels(x, W, B, G, alpha, chunk=CHUNK):
    """Optimal ``alpha`` interior levels among ``x[1..N-1]`` (``x[0] = 0``, ``x[N] = 1`` forced).

    Returns ``(cost, chosen indices)``.  Requires ``N − 1 ≥ alpha``.  Per layer, the recursion's top
    :data:`SPLIT_DEPTH` levels run level by level with their long rows in parallel chunks
    (:func:`_top_rows`), the subtrees below them in parallel: every row is computed over the same
    candidates with the same floats whatever the thread count and ``chunk`` (tested).
    """
    lo, hi = full_windows(x.size, alpha)
    return dp_levels_windowed(x, W, B, G, alpha, lo, hi, chunk)


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
    best, chosen = _finish(x, W, B, G, alpha, prev, alpha, n - 2)
    for t in range(alpha - 1, 0, -1):
        chosen[t - 1] = arg[t, chosen[t]]
    return best, chosen


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
