"""CUDA engine (private): host arrays in, host arrays out; kernels in :mod:`._cuda`.

Reductions across tasks and groups are combined on the host by the same serial combiners as the CPU
engines, so the float32 norms — and hence every quantized vector — are identical to the CPU's.

Transfers: the input vector goes up once per call (:func:`stage`; the norm and rounding passes read
the same device copy), and the plan arrays and level tables — immutable once built — go up once per
process and stay cached on the device (:func:`_const`, a bounded most-recently-used cache).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from numba import cuda

from . import _cuda as K
from ._numba import combine_max as combine_max  # the CPU engines' serial combiners, run on the host
from ._numba import combine_sum as combine_sum
from .plan import Plan

name = "cuda"
dequantize_sum = None  # dequantize, then add in worker order
bucket_tables = None
quantize_single_task = None
_CACHE_SIZE = 256  # device copies of plan arrays / level tables kept (a few per plan)
_cache: OrderedDict = OrderedDict()


def _is_device(a) -> bool:
    return cuda.devicearray.is_cuda_ndarray(a)


def _dev(a):
    """A device array for ``a``: ``a`` itself if already on the device, else a fresh upload."""
    return a if _is_device(a) else cuda.to_device(np.ascontiguousarray(a))


def _const(owner, tag: str = "", make=None):
    """The cached device copy of an array that is never written after it is built (plan, levels):
    ``owner`` itself, or ``make()`` derived from it (built only on a miss), under ``tag``.

    Keyed by ``id(owner)``; the owner is held so the id stays its own.
    """
    k = (id(owner), tag)
    hit = _cache.get(k)
    if hit is not None and hit[0] is owner:
        _cache.move_to_end(k)
        return hit[1]
    dev = cuda.to_device(np.ascontiguousarray(owner if make is None else make()))
    _cache[k] = (owner, dev)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return dev


def stage(v):
    """Upload ``v`` once for the norm and rounding passes of one call."""
    return _dev(v)


def _task_group(plan: Plan):
    return _const(plan, "task_group", lambda: plan.seg_group[plan.task_seg])


def _check_grid(n_blocks: int) -> int:
    if n_blocks > K.MAX_GRID_X:
        raise ValueError(f"engine='cuda': {n_blocks} tasks exceed the CUDA grid limit {K.MAX_GRID_X}; "
                         "use larger buckets or the CPU engine")  # fmt: skip
    return n_blocks


def task_stats(v, plan: Plan):
    n = _check_grid(plan.task_start.size)
    mx, ss = cuda.device_array(n), cuda.device_array(n)
    K.task_max_sumsq[n, K.LANES](_dev(v), _const(plan.task_start), _const(plan.task_end), mx, ss)
    return mx.copy_to_host(), ss.copy_to_host()


def task_powsum(v, plan, scale, q, need):
    n = _check_grid(plan.task_start.size)
    out = cuda.device_array(n)
    K.powsum_kernel(q, need)[n, K.LANES](_dev(v), _const(plan.task_start), _const(plan.task_end), _task_group(plan),
                                     _dev(scale), _dev(q), _dev(need), out)  # fmt: skip
    return out.copy_to_host()


def round(v, seg_scale, plan, seg_base, lv, lv_start, type_uni, idx_dtype, out=None, buckets=None):
    """``buckets`` (the Numba engine's bucket tables) is not used: levels are searched in shared memory."""
    n = _check_grid(plan.task_start.size)
    idx = cuda.device_array(plan.d, idx_dtype)
    sign = cuda.device_array(plan.d, np.int8)
    K.round_kernel[n, K.threads_for(plan)](
        _dev(v), _dev(seg_scale), _const(plan.seg_type), _dev(seg_base), _const(plan.seg_shift),
        _const(plan.task_start), _const(plan.task_end), _const(plan.task_seg), _const(lv), _const(lv_start),
        _const(type_uni), idx, sign,
    )  # fmt: skip
    if out is None:
        return idx.copy_to_host(), sign.copy_to_host()
    idx.copy_to_host(out[0])
    sign.copy_to_host(out[1])
    return out


def dequantize(idx, sign, norms, plan, lv, lv_start, dtype):
    out = cuda.device_array(plan.d, dtype)
    K.dequantize_kernel[_check_grid(plan.task_start.size), K.threads_for(plan)](
        _dev(idx), _dev(sign), _dev(norms), _const(plan.seg_group), _const(plan.seg_type), _const(plan.task_start),
        _const(plan.task_end), _const(plan.task_seg), _const(lv), _const(lv_start), out,
    )  # fmt: skip
    return out.copy_to_host()


def intervals(v, seg_scale, plan, lv, lv_start, type_uni):
    j = cuda.device_array(plan.d, np.int64)
    rho = cuda.device_array(plan.d)
    K.interval_kernel[_check_grid(plan.task_start.size), K.threads_for(plan)](
        _dev(v), _dev(seg_scale), _const(plan.seg_type), _const(plan.task_start), _const(plan.task_end),
        _const(plan.task_seg), _const(lv), _const(lv_start), _const(type_uni), j, rho,
    )  # fmt: skip
    return j.copy_to_host(), rho.copy_to_host()


def task_phi(v, seg_scale, plan, lv, lv_start, type_uni):
    """Per-group ``Σ ρ(1−ρ)w²`` from the device's ``(j, ρ)`` (summed on the host)."""
    j, rho = intervals(v, seg_scale, plan, lv, lv_start, type_uni)
    base = lv_start[plan.coord_type()]
    w = lv[base + j + 1] - lv[base + j]
    phi = rho * (1.0 - rho) * w * w
    group = plan.coord_group()
    return np.bincount(group, weights=phi, minlength=plan.n_groups)


def expected_costs(j, rho, ctype, tables) -> np.ndarray:
    """Per coordinate expected cost ``(1−ρ)c(j) + ρc(j+1)`` on the device (``tables``: one per type)."""
    cost = np.concatenate([np.asarray(t, np.float64) for t in tables])
    cost_start = np.concatenate([[0], np.cumsum([len(t) for t in tables])[:-1]]).astype(np.int64)
    out = cuda.device_array(j.size)
    threads = 128
    K.expected_cost_kernel[(j.size + threads - 1) // threads, threads](
        _dev(j), _dev(rho), _dev(ctype.astype(np.int64)), _dev(cost), _dev(cost_start), out
    )
    return out.copy_to_host()
