"""Numba CPU kernels for quantization (private; use :mod:`qodasim.quantize`).

No ``fastmath``: rounding decisions must be bit-for-bit those of the NumPy reference.  All parallel
loops run over *tasks* (chunks of one segment, see :mod:`qodasim.quantize.plan`) whose boundaries do
not depend on the thread count; reductions combine task partials serially in task order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _scalar

_GOLDEN = _scalar.GOLDEN_U64  # the per-coordinate increment of the SplitMix64 state
ROUND_BLOCK = 2048  # coordinates per scratch block of the uniform-level rounding loop (16 KB, L1)


uniform_of = njit(inline="always", cache=True)(_scalar.uniform_of)
first_state = njit(inline="always", cache=True)(_scalar.first_state)
locate = njit(inline="always", cache=True)(_scalar.locate)


@njit(inline="always", cache=True)
def split(ax, c, su, lv, lo, nl):
    """Interval ``j ∈ [0, α]`` and up-probability ``ρ ∈ [0, 1]`` of magnitude ``ax`` (scale ``c``).

    Uniform levels (``su = s > 0``, ``c = s/n``): ``t = ax·c``, ``j = ⌊t⌋``, ``ρ = t − j``
    (``j = s`` is folded to ``j = s−1, ρ = 1``).  Other levels (``c = 1/n``): ``r = min(ax·c, 1)``,
    ``ℓ_j ≤ r < ℓ_{j+1}``, ``ρ = (r − ℓ_j)/(ℓ_{j+1} − ℓ_j)``.
    """
    if su > 0:
        t = ax * c
        j = np.int64(np.int32(t))
        if j >= su:
            return su - 1, 1.0
        return j, t - np.float64(j)
    r = ax * c
    if r > 1.0:
        r = 1.0
    j = locate(lv, lo, nl, r)
    l0 = lv[lo + j]
    return j, (r - l0) / (lv[lo + j + 1] - l0)


LANES = 32


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
    The NumPy reference and the CUDA kernels use the same order.
    """
    for t in prange(task_start.size):
        a = task_start[t]
        b = task_end[t]
        acc = np.zeros(LANES)
        mx = np.zeros(LANES)
        nfull = (b - a) // LANES
        for blk in range(nfull):
            base = a + blk * LANES
            for k in range(LANES):
                x = abs(np.float64(v[base + k]))
                mx[k] = max(mx[k], x)
                acc[k] += x * x
        base = a + nfull * LANES
        for k in range(b - base):
            x = abs(np.float64(v[base + k]))
            mx[k] = max(mx[k], x)
            acc[k] += x * x
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
        a = task_start[t]
        acc = np.zeros(LANES)
        for i in range(a, task_end[t]):
            y = abs(np.float64(v[i])) / m
            k = (i - a) & (LANES - 1)
            if q == 2.0:
                acc[k] += y * y
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


@njit(cache=True)
def _round_uniform_range(v, a, b, c, smax, z, out_idx, out_sign):
    """Uniform levels on coordinates ``[a, b)``: branch-free and vectorizable.

    Blocks of ROUND_BLOCK coordinates go through an int64 scratch holding ±index (the sign folded
    in, so index 0 keeps sign +1): Numba vectorizes the wide store far better than two narrow ones;
    unsigned indices spare the negative-index wraparound checks; and a function of its own keeps
    the general-levels branch out of this loop's code generation (together ~2x, BENCHMARKS.md).
    """
    buf = np.empty(ROUND_BLOCK, np.int64)
    for a0 in range(a, b, ROUND_BLOCK):
        m = min(ROUND_BLOCK, b - a0)
        ua = np.uint64(a0)
        for k in range(m):
            uk = np.uint64(k)
            x = np.float64(v[ua + uk])
            tt = abs(x) * c
            j = np.int64(tt)
            rho = tt - np.float64(j)
            kk = j + np.int64(uniform_of(z) < rho)
            z += _GOLDEN
            kk = kk if kk < smax else smax
            buf[uk] = kk if x >= 0.0 else -kk
        for k in range(m):
            uk = np.uint64(k)
            sv = buf[uk]
            out_idx[ua + uk] = sv if sv >= 0 else -sv
            out_sign[ua + uk] = np.int8(1 - 2 * np.int64(sv < 0))


@njit(parallel=True, cache=True)
def round_kernel(
    v, seg_scale, seg_type, seg_base, seg_shift, task_start, task_end, task_seg, lv, lv_start, type_uni, out_idx,
    out_sign,
):  # fmt: skip
    """Unbiased stochastic rounding (THEORY §1): index ``j + [u < ρ]`` with ``(j, ρ)`` from :func:`split`.

    ``u`` is the uniform of address ``(layer, i + seg_shift[s])`` in stream ``seg_base[s]``.
    Signs are canonical: ``−1`` only where ``v_i < 0`` and the index is positive.
    ``seg_scale[s]`` is ``s/n`` for uniform types and ``1/n`` otherwise (0 when ``n = 0``).
    """
    for t in prange(task_start.size):
        s = task_seg[t]
        c = seg_scale[s]
        ty = seg_type[s]
        su = type_uni[ty]
        a = task_start[t]
        b = task_end[t]
        z = first_state(seg_base[s], a + seg_shift[s])
        if su > 0:
            _round_uniform_range(v, a, b, c, np.int64(su), z, out_idx, out_sign)
        else:
            lo = lv_start[ty]
            nl = lv_start[ty + 1] - lo
            for i in range(a, b):
                x = np.float64(v[i])
                j, rho = split(abs(x), c, 0, lv, lo, nl)
                k = j + np.int64(uniform_of(z) < rho)
                z += _GOLDEN
                out_idx[i] = k
                out_sign[i] = np.int8(1 - 2 * np.int32((x < 0.0) & (k > 0)))


@njit(parallel=True, cache=True)
def dequantize_kernel(idx, sign, norms, seg_group, seg_type, task_start, task_end, task_seg, lv, lv_start, out):
    """``out_i = n_g · sign_i · ℓ^{type}_{idx_i}`` (computed in float64, cast to ``out``'s dtype)."""
    for t in prange(task_start.size):
        s = task_seg[t]
        n = norms[seg_group[s]]
        lo = lv_start[seg_type[s]]
        for i in range(task_start[t], task_end[t]):
            out[i] = n * np.float64(sign[i]) * lv[lo + np.int64(idx[i])]


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
