"""CUDA kernels (numba-cuda) for quantization (private; use ``engine="cuda"``).

They reproduce the CPU kernels bit for bit: the same counter-based uniforms (SplitMix64 of the
coordinate's address), the same rounding formulas, and the same reduction order for norms —
coordinate ``a + p`` of a task into lane ``p mod 32`` (one thread per lane, sequential), then the
fixed fold 16, 8, 4, 2, 1 in shared memory.  Kernels are compiled without ``fastmath`` (IEEE
division), but that alone does not stop NVVM from contracting ``a·b + c`` into one FMA (its default
``-fma=1``): every product that feeds a sum is therefore written with the round-to-nearest intrinsics
``__nv_dmul_rn``/``__nv_dadd_rn`` (:func:`._scalar.rebind`), which compile to ``mul.rn``/``add.rn``
and are never fused.  ``tests/quantize/test_cuda_ptx.py`` compiles every kernel to PTX and checks that no
``fma`` is left in them.

Bit-exact with the CPU: every kernel for ``q ∈ {1, 2, ∞}``.  For other ``q`` the norm pass needs
``|y|^q``, which on the device is libdevice's ``pow`` (≤ 2 ulp, not the CPU's libm): that kernel,
:data:`task_scaled_powsum_pow`, is the one exception, and the norms — hence possibly the quantized
vectors — may then differ from the CPU's in the last bits.

This module imports ``numba.cuda``; it is only imported when ``engine="cuda"`` is requested.

"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.core import config

from . import _scalar

LANES = 32
THREADS = 256
MAX_GRID_X = 2**31 - 1  # CUDA's limits on the grid: blocks in x ...
MAX_GRID_Y = 65535  # ... and in y (replicas of mean_dequantize_kernel)

if config.ENABLE_CUDASIM:  # the simulator runs Python floats: one rounding per operation already
    _mul = cuda.jit(device=True)(_scalar.mul)
    _add = cuda.jit(device=True)(_scalar.add)
else:  # pragma: no cover - needs a GPU (the PTX is checked by tests/quantize/test_cuda_ptx.py)
    from numba.cuda import libdevice

    _mul, _add = libdevice.dmul_rn, libdevice.dadd_rn

_uniform_of = cuda.jit(device=True)(_scalar.rebind(_scalar.uniform_of, mul=_mul))
_first_state = cuda.jit(device=True)(_scalar.first_state)
_split = cuda.jit(device=True)(_scalar.rebind(_scalar.split, mul=_mul, add=_add))


@cuda.jit(device=True)
def _lane_max_sumsq(v, a, b, k):
    """Lane ``k``'s ``(Σ x², max |x|)`` over coordinates ``a + k, a + k + 32, …`` (the CPU's lane order)."""
    acc = 0.0
    mx = 0.0
    i = a + k
    while i < b:
        x = abs(np.float64(v[i]))
        acc = _add(acc, _mul(x, x))
        if x > mx:
            mx = x
        i += LANES
    return acc, mx


@cuda.jit(device=True)
def _fold(acc_sm, mx_sm, k):
    """The fixed fold 16, 8, 4, 2, 1 of the 32 lane values in shared memory (every thread calls it)."""
    step = LANES // 2
    while step >= 1:
        if k < step:
            acc_sm[k] += acc_sm[k + step]
            if mx_sm[k + step] > mx_sm[k]:
                mx_sm[k] = mx_sm[k + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(device=True)
def _fold_sum(sm, k):
    """The fixed fold 16, 8, 4, 2, 1 of 32 lane sums in shared memory (every thread calls it)."""
    step = LANES // 2
    while step >= 1:
        if k < step:
            sm[k] += sm[k + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit
def task_max_sumsq(v, task_start, task_end, out_max, out_sumsq):
    """One block of 32 threads per task: lane sums and maxima, folded in the CPU's order."""
    t = cuda.blockIdx.x
    k = cuda.threadIdx.x
    acc_sm = cuda.shared.array(LANES, dtype=np.float64)
    mx_sm = cuda.shared.array(LANES, dtype=np.float64)
    acc_sm[k], mx_sm[k] = _lane_max_sumsq(v, task_start[t], task_end[t], k)
    cuda.syncthreads()
    _fold(acc_sm, mx_sm, k)
    if k == 0:
        out_max[t] = mx_sm[0]
        out_sumsq[t] = acc_sm[0]


def _term_exact(y, q):
    """``y^q`` for ``q ∈ {1, 2}`` (the only ``q`` of :data:`task_scaled_powsum`)."""
    return _mul(y, y) if q == 2.0 else y


def _term_pow(y, q):
    """``y^q`` for any ``q``: libdevice ``pow`` (≤ 2 ulp) unless ``q ∈ {1, 2}``."""
    if q == 2.0:
        return _mul(y, y)
    if q == 1.0:
        return y
    return y**q


_term = None  # rebound below to the ``y^q`` device function of each kernel


def _scaled_powsum(v, task_start, task_end, task_group, group_scale, group_q, need, out):
    """Per task: ``Σ (|v_i|/scale_g)^{q_g}`` in the lane order (``q ∈ {1, 2}`` bitwise equal to the CPU)."""
    t = cuda.blockIdx.x
    k = cuda.threadIdx.x
    sm = cuda.shared.array(LANES, dtype=np.float64)
    g = task_group[t]
    m = group_scale[g]
    q = group_q[g]
    b = task_end[t]
    acc = 0.0
    if need[g] and m > 0.0:
        i = task_start[t] + k
        while i < b:
            y = abs(np.float64(v[i])) / m
            acc = _add(acc, _term(y, q))
            i += LANES
    sm[k] = acc
    cuda.syncthreads()
    _fold_sum(sm, k)
    if k == 0:
        out[t] = sm[0]


#: The norm pass's power sums for groups with ``q ∈ {1, 2}``: no ``pow``, bit-exact with the CPU.
task_scaled_powsum = cuda.jit(_scalar.rebind(_scaled_powsum, _term=cuda.jit(device=True)(_term_exact)))
#: The same for any ``q`` (used when some group needs ``q ∉ {1, 2}``): libdevice ``pow``, not bit-exact.
task_scaled_powsum_pow = cuda.jit(_scalar.rebind(_scaled_powsum, _term=cuda.jit(device=True)(_term_pow)))


def powsum_kernel(q: np.ndarray, need: np.ndarray):
    """The power-sum kernel for groups' ``q`` (``need``: the groups summed): exact unless it must not be."""
    return task_scaled_powsum if exact_q(np.asarray(q)[np.asarray(need, bool)]) else task_scaled_powsum_pow


SHARED_LEVELS = 512  # a non-uniform type with at most this many levels is searched in shared memory
UNROLL = 4  # coordinates per thread per loop trip (independent loads in flight)


@cuda.jit(device=True)
def _round_one(v, i, c, su, tab, lo, nl, base, shift, out_idx, out_sign):
    x = np.float64(v[i])
    j, rho = _split(abs(x), c, su, tab, lo, nl)
    kk = j + (1 if _uniform_of(_first_state(base, i + shift)) < rho else 0)
    out_idx[i] = kk
    out_sign[i] = -1 if (x < 0.0 and kk > 0) else 1


@cuda.jit(device=True)
def _stage_levels(shared, lv, lo, nl):
    """Copy a type's ``nl`` levels to shared memory (all threads; the caller synchronizes)."""
    k = cuda.threadIdx.x
    while k < nl:
        shared[k] = lv[lo + k]
        k += cuda.blockDim.x


@cuda.jit(device=True)
def _round_range(v, a, b, c, su, tab, off, nl, base, shift, out_idx, out_sign):
    """Round coordinates ``[a, b)``: thread ``x`` takes ``a + x, a + x + blockDim, …``, :data:`UNROLL` per trip."""
    step = cuda.blockDim.x
    i = a + cuda.threadIdx.x
    while i + (UNROLL - 1) * step < b:
        for u in range(UNROLL):
            _round_one(v, i + u * step, c, su, tab, off, nl, base, shift, out_idx, out_sign)
        i += UNROLL * step
    while i < b:
        _round_one(v, i, c, su, tab, off, nl, base, shift, out_idx, out_sign)
        i += step


@cuda.jit
def round_kernel(v, seg_scale, seg_type, seg_base, seg_shift, task_start, task_end, task_seg, lv, lv_start, type_uni,
                 out_idx, out_sign):  # fmt: skip
    """One block per task, threads striding over its coordinates; same law and uniforms as the CPU.

    A non-uniform type's levels (at most :data:`SHARED_LEVELS`) are first copied to shared memory,
    where the binary search of ``split`` reads them; each thread handles :data:`UNROLL` coordinates
    per trip.  Neither changes a result (tested against the CPU under the simulator).
    """
    t = cuda.blockIdx.x
    s = task_seg[t]
    ty = seg_type[s]
    su = type_uni[ty]
    lo = lv_start[ty]
    nl = lv_start[ty + 1] - lo
    shared = cuda.shared.array(SHARED_LEVELS, dtype=np.float64)
    if su == 0 and nl <= SHARED_LEVELS:  # the same branch for every thread of the block
        _stage_levels(shared, lv, lo, nl)
        cuda.syncthreads()
        tab, off = shared, 0
    else:
        tab, off = lv, lo
    # bounds in locals: the byte stores might alias task_end, so a loop reading it would reload it
    _round_range(v, task_start[t], task_end[t], seg_scale[s], su, tab, off, nl, seg_base[s], seg_shift[s], out_idx,
                 out_sign)  # fmt: skip


@cuda.jit
def dequantize_kernel(idx, sign, norms, seg_group, seg_type, task_start, task_end, task_seg, lv, lv_start, out):
    t = cuda.blockIdx.x
    s = task_seg[t]
    n = norms[seg_group[s]]
    lo = lv_start[seg_type[s]]
    b = task_end[t]
    i = task_start[t] + cuda.threadIdx.x
    while i < b:
        out[i] = n * np.float64(sign[i]) * lv[lo + np.int64(idx[i])]
        i += cuda.blockDim.x


@cuda.jit
def mean_dequantize_kernel(idx, sign, norms, seg_group, seg_type, task_start, task_end, task_seg, lv, lv_start,
                           n_workers, n_groups, out):  # fmt: skip
    """``out[r, i] = Σ_k n_{rk,g}·sign·ℓ`` over the ``K`` rows ``r·K + k`` (k in order, float64).

    Grid ``(row-plan tasks, R)``; the plan arrays are the *row* plan's, rows are ``d`` apart in
    ``idx``/``sign`` and ``n_groups`` apart in ``norms``.  The sum starts from worker 0's term and
    adds the others in order — the CPU's sequential sum over workers, bit for bit.
    """
    t = cuda.blockIdx.x
    r = cuda.blockIdx.y
    d = out.shape[1]
    s = task_seg[t]
    g = seg_group[s]
    lo = lv_start[seg_type[s]]
    end = task_end[t]
    i = task_start[t] + cuda.threadIdx.x
    while i < end:
        b = r * n_workers
        p = b * d + i
        acc = norms[b * n_groups + g] * np.float64(sign[p]) * lv[lo + np.int64(idx[p])]
        for k in range(1, n_workers):
            b = r * n_workers + k
            p = b * d + i
            acc = _add(acc, _mul(_mul(norms[b * n_groups + g], np.float64(sign[p])), lv[lo + np.int64(idx[p])]))
        out[r, i] = acc
        i += cuda.blockDim.x


@cuda.jit
def interval_kernel(v, seg_scale, seg_type, task_start, task_end, task_seg, lv, lv_start, type_uni, out_j, out_rho):
    """Per coordinate ``(j, ρ)`` exactly as the CPU's ``split`` (feeds exact variance and lengths)."""
    t = cuda.blockIdx.x
    s = task_seg[t]
    c = seg_scale[s]
    ty = seg_type[s]
    su = type_uni[ty]
    lo = lv_start[ty]
    nl = lv_start[ty + 1] - lo
    b = task_end[t]
    i = task_start[t] + cuda.threadIdx.x
    while i < b:
        j, rho = _split(abs(np.float64(v[i])), c, su, lv, lo, nl)
        out_j[i] = j
        out_rho[i] = rho
        i += cuda.blockDim.x


@cuda.jit
def expected_cost_kernel(j, rho, ctype, cost, cost_start, out):
    """Per coordinate ``(1−ρ)·c(j) + ρ·c(j+1)`` with the type's cost table (expected code length)."""
    i = cuda.grid(1)
    if i < j.size:
        base = cost_start[ctype[i]] + j[i]
        out[i] = _add(_mul(1.0 - rho[i], cost[base]), _mul(rho[i], cost[base + 1]))


def threads_for(plan) -> int:
    """Threads per block for the per-coordinate kernels (a multiple of 32, at most THREADS)."""
    longest = int((plan.task_end - plan.task_start).max()) if plan.task_start.size else 1
    return int(min(THREADS, max(32, 32 * math.ceil(longest / 32))))


# -- the norm pass finished on the device (DeviceWorkspace): one host sync per call -----------------
# The host engines combine task partials with serial loops in task order (``_numba.combine_max`` /
# ``combine_sum``: ``out[g] = 0; out[g] += part[t]`` for t = 0, 1, …) and then form the norms in
# ``core.compute_norms``.  When each group's tasks are contiguous (true of every plan: layers,
# buckets and rows are consecutive), one thread per group walks its tasks in the same order, so the
# sums — and every norm — are the host's bit for bit.

SAFE_LO, SAFE_HI = _scalar.SAFE_LO, _scalar.SAFE_HI
_needs_scaled_sum = cuda.jit(device=True)(_scalar.needs_scaled_sum)
_segment_scale = cuda.jit(device=True)(_scalar.segment_scale)

if config.ENABLE_CUDASIM:

    @cuda.jit(device=True)
    def _next_up32(f):
        return np.nextafter(np.float32(f), np.float32(np.inf))

else:  # pragma: no cover - needs a GPU

    @cuda.jit(device=True)
    def _next_up32(f):
        return libdevice.nextafterf(f, np.float32(np.inf))


@cuda.jit
def group_stats_kernel(mx, ss, g_task_start, g_task_end, group_q, gmax, gss, need):
    """Per group: ``max`` and ``Σ`` of its tasks' partials in task order, and whether it needs the
    scaled power-sum pass (``q ≠ ∞``, ``max > 0`` and ``q ≠ 2`` or ``max`` outside the safe range)."""
    g = cuda.grid(1)
    if g < gmax.size:
        m = 0.0
        s = 0.0
        for t in range(g_task_start[g], g_task_end[g]):
            if mx[t] > m:
                m = mx[t]
            s += ss[t]
        gmax[g] = m
        gss[g] = s
        need[g] = _needs_scaled_sum(m, group_q[g])


def _root_exact(ps, q):
    """``ps^{1/q}`` for ``q ∈ {1, 2}`` (IEEE ``sqrt``; exact)."""
    return math.sqrt(ps) if q == 2.0 else ps


def _root_pow(ps, q):
    """``ps^{1/q}`` for any ``q``: libdevice ``pow`` unless ``q ∈ {1, 2}`` (not bit-exact otherwise)."""
    if q == 2.0:
        return math.sqrt(ps)
    if q == 1.0:
        return ps
    return ps ** (1.0 / q)


_root = None  # rebound below to the root of each kernel


@cuda.jit(device=True)
def _norm32(m, ss, root, q, need):
    """The group norm as ``core.compute_norms`` forms it from ``max = m``, ``Σx² = ss`` and, when the
    scaled pass was ``need``-ed, ``root = (Σ(|x|/m)^q)^{1/q}``; rounded up to float32."""
    if need:
        x = _mul(m, root)
    elif math.isinf(q):
        x = m
    else:
        x = math.sqrt(ss)
    f = np.float32(x)
    if np.float64(f) < x:
        f = _next_up32(f)
    return f


def _group_norms(gmax, gss, pw, g_task_start, g_task_end, group_q, need, out_n32, out_n64):
    """Per group: the float64 norm as ``core.compute_norms`` forms it, then rounded up to float32."""
    g = cuda.grid(1)
    if g < gmax.size:
        q = group_q[g]
        root = 0.0
        if need[g]:
            ps = 0.0
            for t in range(g_task_start[g], g_task_end[g]):
                ps += pw[t]
            root = _root(ps, q)
        f = _norm32(gmax[g], gss[g], root, q, need[g])
        out_n32[g] = f
        out_n64[g] = np.float64(f)


#: Group norms for ``q ∈ {1, 2, ∞}``: bit-exact with the host's ``compute_norms``.
group_norms_kernel = cuda.jit(_scalar.rebind(_group_norms, _root=cuda.jit(device=True)(_root_exact)))
#: The same for any ``q`` (libdevice ``pow`` for ``q ∉ {1, 2, ∞}``: not bit-exact).
group_norms_kernel_pow = cuda.jit(_scalar.rebind(_group_norms, _root=cuda.jit(device=True)(_root_pow)))


def exact_q(q: np.ndarray) -> bool:
    """Whether every group's ``q`` is one of ``1, 2, ∞`` (the bit-exact kernels suffice)."""
    q = np.asarray(q)
    return bool(np.all((q == 1.0) | (q == 2.0) | np.isinf(q)))


@cuda.jit
def segment_scales_kernel(norms64, seg_group, seg_type, type_uni, out):
    """Per segment ``c = s/n`` (uniform type) or ``1/n``, 0 where ``n = 0`` (``core.segment_scales``)."""
    s = cuda.grid(1)
    if s < out.size:
        out[s] = _segment_scale(norms64[seg_group[s]], type_uni[seg_type[s]])


# -- fused norm + rounding, when every group is a single task (buckets, small layers) --------------


def _fused_group_round(v, task_start, task_end, task_seg, seg_type, seg_base, seg_shift, group_q, lv, lv_start,
                       type_uni, out_n32, out_n64, out_scale, out_idx, out_sign):  # fmt: skip
    """One block per group of a single task: the norm pass (lanes, fold), the group norm, its float32
    rounding and the segment scale, then the rounding — one launch instead of six, no host round trip.

    Every step is the separate kernels' (hence the CPU's) arithmetic in the same order: lanes
    ``k < 32`` sum as :func:`task_max_sumsq` / the power-sum kernel, the group combine starts from
    ``0.0`` as the host's, and the rest is :func:`_group_norms` and :func:`segment_scales_kernel`.
    """
    g = cuda.blockIdx.x
    k = cuda.threadIdx.x
    a = task_start[g]
    b = task_end[g]
    acc_sm = cuda.shared.array(LANES, dtype=np.float64)
    mx_sm = cuda.shared.array(LANES, dtype=np.float64)
    res_sm = cuda.shared.array(2, dtype=np.float64)  # (max, need as 0/1), then (scale, -)
    if k < LANES:
        acc_sm[k], mx_sm[k] = _lane_max_sumsq(v, a, b, k)
    cuda.syncthreads()
    _fold(acc_sm, mx_sm, k)
    q = group_q[g]
    if k == 0:
        m = 0.0
        if mx_sm[0] > m:
            m = mx_sm[0]
        res_sm[0] = m
        res_sm[1] = 1.0 if _needs_scaled_sum(m, q) else 0.0
        mx_sm[0] = 0.0 + acc_sm[0]  # the host's combine: out = 0; out += part
    cuda.syncthreads()
    m = res_sm[0]
    ss = mx_sm[0]
    need = res_sm[1] > 0.0
    cuda.syncthreads()
    if need:  # the scaled power sum, lane by lane as task_scaled_powsum
        if k < LANES:
            acc = 0.0
            i = a + k
            while i < b:
                acc = _add(acc, _term(abs(np.float64(v[i])) / m, q))
                i += LANES
            acc_sm[k] = acc
        cuda.syncthreads()
        _fold_sum(acc_sm, k)
    s = task_seg[g]
    ty = seg_type[s]
    su = type_uni[ty]
    if k == 0:
        f = _norm32(m, ss, _root(0.0 + acc_sm[0], q) if need else 0.0, q, need)
        out_n32[g] = f
        n = np.float64(f)
        out_n64[g] = n
        c = _segment_scale(n, su)
        out_scale[s] = c
        res_sm[0] = c
    lo = lv_start[ty]
    nl = lv_start[ty + 1] - lo
    shared = cuda.shared.array(SHARED_LEVELS, dtype=np.float64)
    if su == 0 and nl <= SHARED_LEVELS:
        _stage_levels(shared, lv, lo, nl)
        cuda.syncthreads()
        tab, off = shared, 0
    else:
        cuda.syncthreads()
        tab, off = lv, lo
    _round_range(v, a, b, res_sm[0], su, tab, off, nl, seg_base[s], seg_shift[s], out_idx, out_sign)


#: Fused kernel for ``q ∈ {1, 2, ∞}`` (bit-exact).
fused_group_round = cuda.jit(_scalar.rebind(_fused_group_round, _term=cuda.jit(device=True)(_term_exact),
                                            _root=cuda.jit(device=True)(_root_exact)))  # fmt: skip
#: The same for any ``q`` (libdevice ``pow``; not bit-exact for ``q ∉ {1, 2, ∞}``).
fused_group_round_pow = cuda.jit(_scalar.rebind(_fused_group_round, _term=cuda.jit(device=True)(_term_pow),
                                                _root=cuda.jit(device=True)(_root_pow)))  # fmt: skip
