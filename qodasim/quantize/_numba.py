"""Numba CPU kernels for quantization (private; use :mod:`qodasim.quantize`).

No ``fastmath``: rounding decisions must be bit-for-bit those of the NumPy reference.  All parallel
loops run over *tasks* (chunks of one segment, see :mod:`qodasim.quantize.plan`) whose boundaries do
not depend on the thread count; reductions combine task partials serially in task order.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

from ..rng import GOLDEN, MASK64
from . import _scalar, _simd

_GOLDEN = _scalar.GOLDEN_U64  # the per-coordinate increment of the SplitMix64 state
_MIX1, _MIX2 = _scalar.MIX1_U64, _scalar.MIX2_U64
_S30, _S27, _S31, _S11 = _scalar.S30, _scalar.S27, _scalar.S31, _scalar.S11
_S53 = np.uint64(53)
_U0 = np.uint64(0)
_LOW53 = np.uint64((1 << 53) - 1)
_TWO53 = 2.0**53
_TWOM53 = 2.0**-53
#: Largest ``s`` of uniform levels rounded by the integer path (needs ``⌈s·2^53⌉ + 2^53 < 2^64``).
INT_PATH_MAX_S = 1 << 10


uniform_of = njit(inline="always", cache=True)(_scalar.uniform_of)
first_state = njit(inline="always", cache=True)(_scalar.first_state)
split = njit(inline="always", cache=True)(_scalar.split)


LANES = 32
_ULANES = np.uint64(LANES)


@njit(inline="always", cache=True)
def fold_lanes(acc):
    """Fixed binary tree over the 32 lane sums: ``acc[k] += acc[k + step]`` for step 16, 8, 4, 2, 1."""
    step = LANES // 2
    while step >= 1:
        for k in range(step):
            acc[k] += acc[k + step]
        step //= 2
    return acc[0]


@njit(parallel=True, cache=True)
def task_max_sumsq(v, task_start, task_end, out_max, out_sumsq):
    """Per task: ``max |v_i|`` and ``Σ v_i²`` (a non-finite sum flags NaN/Inf or overflow).

    The sum is deterministic: coordinate ``a + p`` of a task ``[a, b)`` goes to lane ``p mod 32``,
    each lane sums sequentially in float64 from 0.0, and the lanes are folded by :func:`fold_lanes`.
    The NumPy reference and the CUDA kernels use the same order.  Indices are unsigned: with signed
    ones Numba checks each for negative wraparound and LLVM vectorized the block loop with gathers
    (2.4x slower, BENCHMARKS.md).
    """
    for t in prange(task_start.size):
        a = np.uint64(task_start[t])
        b = np.uint64(task_end[t])
        acc = np.zeros(LANES)
        mx = np.zeros(LANES)
        nfull = (b - a) // _ULANES
        for blk in range(nfull):
            base = a + np.uint64(blk) * _ULANES
            for k in range(LANES):
                uk = np.uint64(k)
                x = abs(np.float64(v[base + uk]))
                mx[uk] = max(mx[uk], x)
                acc[uk] += x * x
        base = a + nfull * _ULANES
        for k in range(b - base):
            uk = np.uint64(k)
            x = abs(np.float64(v[base + uk]))
            mx[uk] = max(mx[uk], x)
            acc[uk] += x * x
        out_max[t] = mx.max()
        out_sumsq[t] = fold_lanes(acc)


@njit(parallel=True, cache=True)
def task_scaled_powsum(v, task_start, task_end, task_group, group_scale, group_q, need, out):
    """Per task of a group with ``need[g]``: ``Σ (|v_i| / scale_g)^{q_g}`` in the lane order above."""
    for t in prange(task_start.size):
        g = task_group[t]
        out[t] = 0.0
        if not need[g]:
            continue
        m = group_scale[g]
        if m == 0.0:
            continue
        q = group_q[g]
        a = np.uint64(task_start[t])
        acc = np.zeros(LANES)
        for p in range(np.uint64(task_end[t]) - a):
            up = np.uint64(p)
            y = abs(np.float64(v[a + up])) / m
            k = up & (_ULANES - np.uint64(1))
            if q == 2.0:
                acc[k] += y * y
            elif q == 1.0:
                acc[k] += y
            else:
                acc[k] += y**q
        out[t] = fold_lanes(acc)


@njit(cache=True)
def combine_max(task_group, part, n_groups):
    out = np.zeros(n_groups)
    for t in range(part.size):
        g = task_group[t]
        if part[t] > out[g]:
            out[g] = part[t]
    return out


@njit(cache=True)
def combine_sum(task_group, part, n_groups):
    out = np.zeros(n_groups)
    for t in range(part.size):
        out[task_group[t]] += part[t]
    return out


@njit(inline="always", cache=True)
def mix_bits(z):
    """The 64 mixed bits ``mix64(z)`` of SplitMix64 state ``z`` (:func:`uniform_of` uses the top 53)."""
    h = (z ^ (z >> _S30)) * _MIX1
    h = (h ^ (h >> _S27)) * _MIX2
    return h ^ (h >> _S31)


@njit(inline="always", cache=True)
def round_int(t, h):
    """``⌊t⌋ + [u < t − ⌊t⌋]`` for ``0 ≤ t < 2^{10}`` and ``u = (h >> 11)·2^{-53}``, in integers.

    See :func:`_round_uniform_int` for the derivation; returns uint64.
    """
    big = np.uint64(np.ceil(t * _TWO53))
    return (big + ((h >> _S11) ^ _LOW53)) >> _S53


_MAGIC52 = np.uint64(0x4330000000000000)  # the bits of 2^52
_MAGIC84 = np.uint64(0x4530000000000000)  # the bits of 2^84
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@njit(inline="always", cache=True)
def double_of_53_bits(k):
    """``float64(k)`` for ``k < 2^53`` without an int → float conversion (AVX2 has no packed one).

    ``k = h·2^32 + l``: the double with bits ``0x453… | h`` is ``2^84 + h·2^32`` and with bits
    ``0x433… | l`` is ``2^52 + l``; subtracting ``2^84`` and ``2^52`` is exact, and so is the sum
    (``k < 2^53``).
    """
    hi = _simd.double_of_bits((k >> _S32) | _MAGIC84) - 2.0**84
    return hi + (_simd.double_of_bits((k & _LOW32) | _MAGIC52) - 2.0**52)


@njit(inline="always", cache=True)
def uniform_avx2(z):
    """:func:`uniform_of` ``(z)``, the same double, by :func:`double_of_53_bits`."""
    return double_of_53_bits(mix_bits(z) >> _S11) * _TWOM53


@njit(cache=True)
def _round_uniform_range(v, a, b, c, smax, z, out_idx, out_sign):
    """Uniform levels on ``[a, b)``: :func:`_round_uniform_int` on AVX-512DQ, else
    :func:`_round_uniform_avx2` (the same indices; the choice is made when the kernel is compiled)."""
    if _simd.target_has_avx512dq():
        _round_uniform_int(v, a, b, c, smax, z, out_idx, out_sign)
    else:
        _round_uniform_avx2(v, a, b, c, smax, z, out_idx, out_sign)


@njit(cache=True)
def _round_uniform_avx2(v, a, b, c, smax, z, out_idx, out_sign):
    """Uniform levels on ``[a, b)`` with 32-bit integer indices and the uniform as a double.

    ``t = min(|x|·c, s)``, ``j = ⌊t⌋`` (a 32-bit truncation: ``t < 2^{10}``), ``ρ = t − j`` (exact) and
    the index ``j + [u < ρ]`` with ``u = (h >> 11)·2^{-53}`` from :func:`double_of_53_bits` — the
    definition itself (THEORY §1).  Clamping ``t`` at ``s`` before rounding gives
    :func:`_round_uniform_int`'s ``min(k, s)``: for ``t ≥ s`` both give ``s``.  On AVX2 (no packed
    float64 → 64-bit integer conversion) this vectorizes without scalar conversions (BENCHMARKS.md).
    """
    fs = np.float64(smax)
    ua = np.uint64(a)
    for p in range(np.uint64(b) - ua):
        i = ua + np.uint64(p)
        x = np.float64(v[i])
        t = min(abs(x) * c, fs)
        j = np.int32(t)
        u = uniform_avx2(z)
        z += _GOLDEN
        k = j + np.int32(u < t - np.float64(j))
        out_idx[i] = k
        out_sign[i] = np.int8(1 - 2 * np.int32((x < 0.0) & (k > 0)))


@njit(cache=True)
def _round_uniform_int(v, a, b, c, smax, z, out_idx, out_sign):
    """Uniform levels on coordinates ``[a, b)`` in integer arithmetic (branch-free, vectorizes).

    With ``t = |x|·c``, ``j = ⌊t⌋``, ``ρ = t − j`` (exact, Sterbenz) and the uniform ``u = K·2^{-53}``,
    the rounding ``j + [u < ρ]`` equals ``⌈(T − K)/2^{53}⌉`` with ``T = t·2^{53}`` (exact: a power of
    two), because ``u < ρ ⇔ K < ρ·2^{53}``.  With ``C = ⌈T⌉`` and ``⌈(C − K)/2^{53}⌉ = ⌈(T − K)/2^{53}⌉``
    this is ``(C + (2^{53} − 1 − K)) >> 53`` where ``2^{53} − 1 − K`` is the complement of the 53
    uniform bits: no float compare, no int→float conversions.  Valid while ``C + 2^{53} < 2^{64}``,
    i.e. ``t < 2^{10}`` — the caller routes ``s ≥ 2^{10}`` to the float path.  Bit-identical to
    :func:`split` + ``u < ρ`` (tested); unsigned indices spare Numba's wraparound checks.
    """
    ua = np.uint64(a)
    for p in range(np.uint64(b) - ua):
        i = ua + np.uint64(p)
        x = np.float64(v[i])
        k = round_int(abs(x) * c, mix_bits(z))
        z += _GOLDEN
        k = k if k < smax else smax
        out_idx[i] = k
        out_sign[i] = np.int8(1 - 2 * np.int64((x < 0.0) & (k > _U0)))


_TABLE_MAX_G = 1 << 16
#: At most this many bucket-table entries over all types (16 MiB of ``uint16``): types past it search.
TABLES_MAX_ENTRIES = 1 << 23


@njit(cache=True)
def bucket_table(lv, lo, nl):
    """``(table, G)``: ``table[g]`` = the largest ``j ∈ [0, nl−2]`` with ``ℓ_j ≤ g/G`` for ``g = 0..G``.

    ``G`` is the smallest power of two with ``G·min_gap ≥ 2``, so a bucket ``[g/G, (g+1)/G)`` holds at
    most one level and the interval of ``r`` in it is ``table[g]`` or the next one: one comparison
    instead of a binary search, the same ``j`` (THEORY §1; tested against :func:`split`).  ``G = 0``
    (no table) when the levels are closer than ``2/2^16``.  The entries are ``uint16`` (a 64 KiB table
    at most, cache-resident): ``min_gap ≥ 2/G ≥ 2^{-15}`` bounds ``j ≤ nl − 2 < 2^{15}``.
    """
    gap = 1.0
    for k in range(nl - 1):
        w = lv[lo + k + 1] - lv[lo + k]
        if w < gap:
            gap = w
    G = 1
    while G * gap < 2.0 and G < _TABLE_MAX_G:
        G *= 2
    if G * gap < 2.0:
        return np.empty(0, np.uint16), 0
    table = np.empty(G + 1, np.uint16)
    inv = 1.0 / G  # a power of two: g·inv is exact
    j = 0
    for g in range(G + 1):
        x = g * inv
        while j < nl - 2 and lv[lo + j + 1] <= x:
            j += 1
        table[g] = j
    return table, G


@njit(cache=True)
def bucket_tables(lv, lv_start, type_uni, max_entries=TABLES_MAX_ENTRIES):
    """``(bt, bt_start, bt_G)``: :func:`bucket_table` of every non-uniform type, concatenated —
    type ``m``'s table is ``bt[bt_start[m] : bt_start[m + 1]]`` with ``G = bt_G[m]`` (``0``: no table,
    the type's intervals come from the binary search; always so for uniform types).

    Built once per quantizer (levels are fixed), not per task: a table of ``G + 1`` entries costs as
    much to build as rounding ``2G`` coordinates (BENCHMARKS.md).  At most ``max_entries`` entries in all;
    the types past that search (the same intervals, tested).
    """
    m_types = type_uni.size
    parts = []
    bt_G = np.zeros(m_types, np.int64)
    bt_start = np.zeros(m_types + 1, np.int64)
    total = 0
    for m in range(m_types):
        table, G = np.empty(0, np.uint16), 0
        if type_uni[m] == 0:
            lo = lv_start[m]
            table, G = bucket_table(lv, lo, lv_start[m + 1] - lo)
            if total + table.size > max_entries:
                table, G = np.empty(0, np.uint16), 0
        parts.append(table)
        bt_G[m] = G
        total += table.size
        bt_start[m + 1] = total
    bt = np.empty(total, np.uint16)
    for m in range(m_types):
        bt[bt_start[m] : bt_start[m + 1]] = parts[m]
    return bt, bt_start, bt_G


@njit(inline="always", cache=True)
def table_split(ax, c, lv, lo, nl, table, G):
    """:func:`split` for non-uniform levels with the interval from :func:`bucket_table`: same ``(j, ρ)``."""
    r = ax * c
    if r > 1.0:
        r = 1.0
    j = np.int64(table[np.int64(r * np.float64(G))])
    if j < nl - 2 and lv[lo + j + 1] <= r:
        j += 1
    l0 = lv[lo + j]
    return j, (r - l0) / (lv[lo + j + 1] - l0)


#: Coordinates per block of :func:`_round_table_range` (its five scratch arrays stay in L1; a multiple
#: of :data:`._simd.GROUP`, the coordinates :func:`._simd.search16` handles at once).
TABLE_BLOCK = 512
assert TABLE_BLOCK % _simd.GROUP == 0
_UBLOCK = np.uint64(TABLE_BLOCK)


@njit(cache=True, error_model="numpy")
def _round_table_range(v, a, b, c, lv, lo, nl, table, G, z, out_idx, out_sign):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """:func:`table_split` + rounding for non-uniform levels on ``[a, b)``, in blocks of three passes.

    Per block: (1) ``r = min(|x|·c, 1)`` and its bucket ``⌊r·G⌋`` (vectorized); (2) the interval ``j``
    and ``ℓ_j, ℓ_{j+1}``: with at most 16 levels by the vector binary search :func:`._simd.search16`
    (the table in two registers, 8 lookups per permute), else from the bucket table (one entry, one
    comparison; scalar: table lookups do not vectorize without gathers); (3)
    ``ρ = (r − ℓ_j)/(ℓ_{j+1} − ℓ_j)``, the uniform and the outputs (vectorized).  Without AVX-512DQ
    pass (1) also computes the block's uniforms by :func:`uniform_avx2` (LLVM would convert each lane
    of :func:`uniform_of` with a scalar instruction, and pass (3) alone runs short of registers).
    Every path finds :func:`split`'s interval and reads the same level floats, so the indices are bit
    for bit the same (tested).  ``error_model="numpy"`` drops Numba's zero-divisor check, which alone
    kept pass (3) scalar; the divisor is a gap between distinct levels, never 0.
    """
    small = nl <= _simd.MAX_LEVELS
    S = np.full(_simd.MAX_LEVELS, np.inf)  # ℓ_0..ℓ_{nl−2}, then +∞: the search's candidates
    V = np.zeros(_simd.MAX_LEVELS)  # ℓ_0..ℓ_{nl−1}: the levels it reads
    if small:
        for q in range(nl):
            V[q] = lv[lo + q]
            if q <= nl - 2:
                S[q] = lv[lo + q]
    rr = np.empty(TABLE_BLOCK)
    l0 = np.empty(TABLE_BLOCK)
    l1 = np.empty(TABLE_BLOCK)
    jj = np.empty(TABLE_BLOCK, np.uint64)
    gg = np.empty(TABLE_BLOCK, np.uint64)
    uu = np.empty(TABLE_BLOCK)
    early = not _simd.target_has_avx512dq()  # the uniforms in pass (1)
    ulo = np.uint64(lo)
    one = np.uint64(1)
    jmax = np.uint64(nl - 2)
    fG = np.float64(G)
    ub = np.uint64(b)
    s = np.uint64(a)
    while s < ub:
        n = min(_UBLOCK, ub - s)
        if early:
            zz = z
            for p in range(n):
                uu[np.uint64(p)] = uniform_avx2(zz)
                zz += _GOLDEN
        if small:
            for p in range(n):
                up = np.uint64(p)
                rr[up] = min(abs(np.float64(v[s + up])) * c, 1.0)
            _simd.search16(rr, S, V, jj, l0, l1, n)
        else:
            for p in range(n):
                up = np.uint64(p)
                r = min(abs(np.float64(v[s + up])) * c, 1.0)
                rr[up] = r
                gg[up] = np.uint64(np.int64(r * fG))
            for p in range(n):
                up = np.uint64(p)
                j = np.uint64(table[gg[up]])
                j += np.uint64((lv[ulo + j + one] <= rr[up]) & (j < jmax))
                jj[up] = j
                l0[up] = lv[ulo + j]
                l1[up] = lv[ulo + j + one]
        for p in range(n):
            up = np.uint64(p)
            i = s + up
            lj = l0[up]
            rho = (rr[up] - lj) / (l1[up] - lj)
            u = uu[up] if early else uniform_of(z)
            k = jj[up] + np.uint64(u < rho)
            z += _GOLDEN
            out_idx[i] = k
            out_sign[i] = np.int8(1 - 2 * np.int64((np.float64(v[i]) < 0.0) & (k > _U0)))
        s += n


@njit(parallel=True, cache=True)
def round_kernel(
    v, seg_scale, seg_type, seg_base, seg_shift, task_start, task_end, task_seg, lv, lv_start, type_uni, bt,
    bt_start, bt_G, out_idx, out_sign,
):  # fmt: skip
    """Unbiased stochastic rounding (THEORY §1): index ``j + [u < ρ]`` with ``(j, ρ)`` from :func:`split`.

    ``u`` is the uniform of address ``(layer, i + seg_shift[s])`` in stream ``seg_base[s]``.
    Signs are canonical: ``−1`` only where ``v_i < 0`` and the index is positive.
    ``seg_scale[s]`` is ``s/n`` for uniform types and ``1/n`` otherwise (0 when ``n = 0``).
    ``bt, bt_start, bt_G``: the non-uniform types' bucket tables (:func:`bucket_tables`).
    """
    for t in prange(task_start.size):
        s = task_seg[t]
        c = seg_scale[s]
        ty = seg_type[s]
        su = type_uni[ty]
        a = task_start[t]
        b = task_end[t]
        z = first_state(seg_base[s], a + seg_shift[s])
        lo = lv_start[ty]
        nl = lv_start[ty + 1] - lo
        G = bt_G[ty]
        table = bt[bt_start[ty] : bt_start[ty + 1]]
        if 0 < su < INT_PATH_MAX_S:
            _round_uniform_range(v, a, b, c, np.uint64(su), z, out_idx, out_sign)
        elif su == 0 and (G > 0 or nl <= _simd.MAX_LEVELS):
            _round_table_range(v, a, b, c, lv, lo, nl, table, G, z, out_idx, out_sign)
        else:
            ua = np.uint64(a)
            for p in range(np.uint64(b) - ua):
                i = ua + np.uint64(p)
                x = np.float64(v[i])
                j, rho = split(abs(x), c, su, lv, lo, nl)
                k = j + np.int64(uniform_of(z) < rho)
                z += _GOLDEN
                out_idx[i] = k
                out_sign[i] = np.int8(1 - 2 * np.int32((x < 0.0) & (k > 0)))


@njit(inline="always", cache=True)
def dequantized(n, sign, idx, lv, ulo, i):
    """``n · sign_i · ℓ_{idx_i}`` in float64 (``ulo``: the type's offset in ``lv``, uint64): the value
    :func:`dequantize_kernel` writes and :func:`sum_dequantize_kernel` adds."""
    return n * np.float64(sign[i]) * lv[ulo + np.uint64(idx[i])]


@njit(parallel=True, cache=True)
def dequantize_kernel(idx, sign, norms, seg_group, seg_type, task_start, task_end, task_seg, lv, lv_start, out):
    """``out_i = n_g · sign_i · ℓ^{type}_{idx_i}`` (computed in float64, cast to ``out``'s dtype)."""
    for t in prange(task_start.size):
        s = task_seg[t]
        n = norms[seg_group[s]]
        lo = lv_start[seg_type[s]]
        ulo = np.uint64(lo)
        a = np.uint64(task_start[t])
        for p in range(np.uint64(task_end[t]) - a):
            i = a + np.uint64(p)
            out[i] = dequantized(n, sign, idx, lv, ulo, i)


@njit(parallel=True, cache=True)
def sum_dequantize_kernel(idx, sign, norms, K, d, n_groups, seg_group, seg_type, task_start, task_end, task_seg, lv,
                          lv_start, out):  # fmt: skip
    """``out[r·d + i] = Σ_{k<K} n · sign_i · ℓ_{idx_i}`` over the rows ``rK, …, rK + K − 1`` of a batch of
    rows quantized on one plan of dimension ``d`` (``seg_*``, ``task_*``: that plan's, not tiled;
    row ``b``'s group ``g`` has norm ``norms[b·n_groups + g]``).

    Each term is :func:`dequantized`, the value :func:`dequantize_kernel` writes, and the terms are
    added in row order from row ``rK``'s own value, ``((x_0 + x_1) + x_2) + …``: bit for bit the sum of
    the dequantized rows in worker order (``device.worker_sums``), without the ``(R, K, d)`` array.
    """
    n_tasks = task_start.size
    R = out.size // d
    ud = np.uint64(d)
    for rt in prange(R * n_tasks):
        r = rt // n_tasks
        t = rt - r * n_tasks
        s = task_seg[t]
        g = seg_group[s]
        ulo = np.uint64(lv_start[seg_type[s]])
        a = np.uint64(task_start[t])
        m = np.uint64(task_end[t]) - a
        orow = np.uint64(r) * ud
        row = np.uint64(r * K) * ud
        n = norms[r * K * n_groups + g]
        for p in range(m):
            i = a + np.uint64(p)
            out[orow + i] = dequantized(n, sign, idx, lv, ulo, row + i)
        for k in range(1, K):
            row = np.uint64(r * K + k) * ud
            n = norms[(r * K + k) * n_groups + g]
            for p in range(m):
                i = a + np.uint64(p)
                out[orow + i] += dequantized(n, sign, idx, lv, ulo, row + i)


@njit(parallel=True, cache=True)
def interval_kernel(v, seg_scale, seg_type, task_start, task_end, task_seg, lv, lv_start, type_uni, out_j, out_rho):
    """Per coordinate: the interval ``j`` and the up-probability ``ρ`` of its rounding."""
    for t in prange(task_start.size):
        s = task_seg[t]
        c = seg_scale[s]
        ty = seg_type[s]
        su = type_uni[ty]
        lo = lv_start[ty]
        nl = lv_start[ty + 1] - lo
        for i in range(task_start[t], task_end[t]):
            j, rho = split(abs(np.float64(v[i])), c, su, lv, lo, nl)
            out_j[i] = j
            out_rho[i] = rho


@njit(parallel=True, cache=True)
def task_phi_sum(v, seg_scale, seg_type, task_start, task_end, task_seg, lv, lv_start, type_uni, out):
    """Per task: ``Σ_i φ_ℓ(r_i) = Σ_i ρ_i(1 − ρ_i)(ℓ_{j+1} − ℓ_j)²`` (THEORY §2)."""
    for t in prange(task_start.size):
        s = task_seg[t]
        c = seg_scale[s]
        ty = seg_type[s]
        su = type_uni[ty]
        lo = lv_start[ty]
        nl = lv_start[ty + 1] - lo
        acc = 0.0
        for i in range(task_start[t], task_end[t]):
            j, rho = split(abs(np.float64(v[i])), c, su, lv, lo, nl)
            w = lv[lo + j + 1] - lv[lo + j]
            acc += rho * (1.0 - rho) * w * w
        out[t] = acc


def _serial_twin(kernel, **calls):
    """The same kernel compiled without ``parallel`` (``prange`` runs as ``range``), cached under its
    own name, calling ``calls`` (name → dispatcher, e.g. serial twins) instead of the globals of those
    names.  Each task is computed by the same code in the same order either way, so the results are
    identical; only the thread pool is not woken (which, for small work, costs more than the work —
    up to milliseconds on a busy machine)."""
    fn = kernel.py_func
    glob = {**fn.__globals__, **calls} if calls else fn.__globals__
    twin = types.FunctionType(fn.__code__, glob, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    return njit(cache=True)(twin)


#: Serial twins of the parallel kernels, by name (used by the engine for single-task plans).
SERIAL = {
    k.py_func.__name__: _serial_twin(k)
    for k in (task_max_sumsq, task_scaled_powsum, round_kernel, dequantize_kernel, sum_dequantize_kernel,
              interval_kernel, task_phi_sum)
}  # fmt: skip

_task_max_sumsq_1 = SERIAL["task_max_sumsq"]
_round_kernel_1 = SERIAL["round_kernel"]
_SAFE_LO, _SAFE_HI, _F32_TINY = _scalar.SAFE_LO, _scalar.SAFE_HI, _scalar.F32_TINY


_G1, _G2, _G3, _G5 = (np.uint64((k * GOLDEN) & MASK64) for k in (1, 2, 3, 5))


@njit(cache=True)
def stream_base0(seed, worker, round_):
    """:func:`qodasim.rng.stream_base` of layer 0 in uint64 arithmetic (wraps mod 2^64, as the
    Python version's ``& MASK64``; tested equal)."""
    h = mix_bits(seed + _G1)
    h = mix_bits(h ^ (worker + _G2))
    h = mix_bits(h ^ (round_ + _G3))
    return mix_bits(h ^ _G5)


@njit(cache=True)
def quantize_single_task(v, task_start, task_end, seg_type, seg_shift, task_seg, q, lv, lv_start, type_uni, bt,
                         bt_start, bt_G, seed, worker, round_, out_idx, out_sign):  # fmt: skip
    """One call for a plan of one task, one segment and one group with ``q ∈ {2, ∞}``: the same
    kernels and the same host arithmetic as the general path (``core.compute_norms``,
    ``round_up_to_float32``, ``segment_scales``), fused to spare a small vector's ~15 Python steps.

    Returns the float32 norm (as float64), or ``-1.0`` when the general path must decide (the scaled
    power sum is needed, or the norm is not finite or outside the float32 normal range: its errors).
    """
    mx = np.empty(1)
    ss = np.empty(1)
    _task_max_sumsq_1(v, task_start, task_end, mx, ss)
    if not np.isfinite(ss[0]):  # NaN/Inf in v (an error) or Σv² overflow: the general path decides
        return -1.0
    m = 0.0
    if mx[0] > m:
        m = mx[0]
    if _scalar.needs_scaled_sum(m, q):
        return -1.0
    x = m if np.isinf(q) else np.sqrt(0.0 + ss[0])
    f = np.float32(x)
    if np.float64(f) < x:
        f = np.nextafter(f, np.float32(np.inf))
    n = np.float64(f)
    if not np.isfinite(n) or (n > 0.0 and n < _F32_TINY):
        return -1.0
    scale = np.empty(1)
    scale[0] = _scalar.segment_scale(n, type_uni[seg_type[0]])
    bases = np.empty(1, np.uint64)
    bases[0] = stream_base0(seed, worker, round_)  # the plan's one segment is layer 0
    _round_kernel_1(v, scale, seg_type, bases, seg_shift, task_start, task_end, task_seg, lv, lv_start, type_uni,
                    bt, bt_start, bt_G, out_idx, out_sign)  # fmt: skip
    return n
