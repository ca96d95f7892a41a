"""CUDA engine (private): host arrays in, host arrays out; kernels in :mod:`._cuda`.

Reductions across tasks and groups are combined on the host by the same serial combiners as the CPU
engines, so the float32 norms — and hence every quantized vector — are identical to the CPU's.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import _cuda as K
from .plan import Plan

name = "cuda"


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def _task_group(plan: Plan) -> np.ndarray:
    return plan.seg_group[plan.task_seg]


def task_stats(v, plan: Plan):
    n = plan.task_start.size
    mx, ss = cuda.device_array(n), cuda.device_array(n)
    K.task_max_sumsq[n, K.LANES](_dev(v), _dev(plan.task_start), _dev(plan.task_end), mx, ss)
    return mx.copy_to_host(), ss.copy_to_host()


def task_powsum(v, plan, scale, q, need):
    n = plan.task_start.size
    out = cuda.device_array(n)
    K.task_scaled_powsum[n, K.LANES](_dev(v), _dev(plan.task_start), _dev(plan.task_end), _dev(_task_group(plan)),
                                     _dev(scale), _dev(q), _dev(need), out)  # fmt: skip
    return out.copy_to_host()


def round(v, seg_scale, plan, seg_base, lv, lv_start, type_uni, idx_dtype, out=None):
    n = plan.task_start.size
    idx = cuda.device_array(plan.d, idx_dtype)
    sign = cuda.device_array(plan.d, np.int8)
    K.round_kernel[n, K.threads_for(plan)](
        _dev(v), _dev(seg_scale), _dev(plan.seg_type), _dev(seg_base), _dev(plan.seg_shift), _dev(plan.task_start),
        _dev(plan.task_end), _dev(plan.task_seg), _dev(lv), _dev(lv_start), _dev(type_uni), idx, sign,
    )  # fmt: skip
    if out is None:
        return idx.copy_to_host(), sign.copy_to_host()
    idx.copy_to_host(out[0])
    sign.copy_to_host(out[1])
    return out


def dequantize(idx, sign, norms, plan, lv, lv_start, dtype):
    out = cuda.device_array(plan.d, dtype)
    K.dequantize_kernel[plan.task_start.size, K.threads_for(plan)](
        _dev(idx), _dev(sign), _dev(norms), _dev(plan.seg_group), _dev(plan.seg_type), _dev(plan.task_start),
        _dev(plan.task_end), _dev(plan.task_seg), _dev(lv), _dev(lv_start), out,
    )  # fmt: skip
    return out.copy_to_host()


def intervals(v, seg_scale, plan, lv, lv_start, type_uni):
    j = cuda.device_array(plan.d, np.int64)
    rho = cuda.device_array(plan.d)
    K.interval_kernel[plan.task_start.size, K.threads_for(plan)](
        _dev(v), _dev(seg_scale), _dev(plan.seg_type), _dev(plan.task_start), _dev(plan.task_end),
        _dev(plan.task_seg), _dev(lv), _dev(lv_start), _dev(type_uni), j, rho,
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
