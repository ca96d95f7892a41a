"""Numba CPU engine (private): thin wrappers giving the kernels the engine interface."""

from __future__ import annotations

import numpy as np

from ..threads import use_parallel
from . import _numba as K
from .plan import Plan

name = "numba"
#: The non-uniform types' bucket tables that :func:`round` reads (built once per quantizer).
bucket_tables = K.bucket_tables
#: The fused one-call path for a single-task vector (``BaseQuantizer._fast_quantize``).
quantize_single_task = K.quantize_single_task
#: Serial combiners of task partials (every CPU engine's order).
combine_max, combine_sum = K.combine_max, K.combine_sum


def stage(v):
    """The kernels read ``v`` itself."""
    return v


def _k(plan: Plan, name: str, rows: int = 1):
    """The kernel ``name`` for ``rows`` rows on ``plan``: its serial twin when the call touches fewer
    than :data:`~qodasim.threads.PARALLEL_MIN` coordinates or the plan has one task (a thread-pool
    wake-up costs more than such work, and on a busy machine up to a scheduler slice), else the
    parallel kernel.  Both run the same tasks: the same bits."""
    if plan.task_start.size * rows == 1 or not use_parallel(plan.d * rows):
        return K.SERIAL[name]
    return getattr(K, name)


def _task_group(plan: Plan) -> np.ndarray:
    return plan.seg_group[plan.task_seg]


def task_stats(v: np.ndarray, plan: Plan):
    n = plan.task_start.size
    mx = np.empty(n)
    ss = np.empty(n)
    _k(plan, "task_max_sumsq")(v, plan.task_start, plan.task_end, mx, ss)
    return mx, ss


def task_powsum(v, plan, scale, q, need):
    out = np.empty(plan.task_start.size)
    _k(plan, "task_scaled_powsum")(v, plan.task_start, plan.task_end, _task_group(plan), scale, q, need, out)
    return out


def round(v, seg_scale, plan, seg_base, lv, lv_start, type_uni, idx_dtype, out=None, buckets=None):
    """``buckets``: the types' bucket tables (:func:`K.bucket_tables`), built here when not given —
    a quantizer passes its own, built once."""
    idx, sign = (np.empty(plan.d, idx_dtype), np.empty(plan.d, np.int8)) if out is None else out
    bt, bt_start, bt_G = K.bucket_tables(lv, lv_start, type_uni) if buckets is None else buckets
    _k(plan, "round_kernel")(
        v, seg_scale, plan.seg_type, seg_base, plan.seg_shift, plan.task_start, plan.task_end, plan.task_seg,
        lv, lv_start, type_uni, bt, bt_start, bt_G, idx, sign,
    )  # fmt: skip
    return idx, sign


def dequantize(idx, sign, norms, plan, lv, lv_start, dtype):
    out = np.empty(plan.d, dtype)
    _k(plan, "dequantize_kernel")(
        idx,
        sign,
        norms,
        plan.seg_group,
        plan.seg_type,
        plan.task_start,
        plan.task_end,
        plan.task_seg,
        lv,
        lv_start,
        out,
    )
    return out


def dequantize_sum(idx, sign, norms, plan, workers, lv, lv_start):
    """``(R, d)`` float64: row ``r`` is the sum of the dequantized rows ``r·workers, …`` (``workers`` of
    them, in row order) of a batch quantized on ``plan`` (one row's plan; ``idx``, ``sign``, ``norms``
    concatenated over the rows)."""
    R = idx.size // (workers * plan.d)
    out = np.empty(R * plan.d)
    _k(plan, "sum_dequantize_kernel", R * workers)(
        idx, sign, norms, workers, plan.d, plan.n_groups, plan.seg_group, plan.seg_type, plan.task_start,
        plan.task_end, plan.task_seg, lv, lv_start, out,
    )  # fmt: skip
    return out.reshape(R, plan.d)


def intervals(v, seg_scale, plan, lv, lv_start, type_uni):
    j = np.empty(plan.d, np.int64)
    rho = np.empty(plan.d)
    _k(plan, "interval_kernel")(
        v, seg_scale, plan.seg_type, plan.task_start, plan.task_end, plan.task_seg, lv, lv_start, type_uni, j, rho
    )
    return j, rho


def task_phi(v, seg_scale, plan, lv, lv_start, type_uni):
    part = np.empty(plan.task_start.size)
    _k(plan, "task_phi_sum")(
        v, seg_scale, plan.seg_type, plan.task_start, plan.task_end, plan.task_seg, lv, lv_start, type_uni, part
    )
    return K.combine_sum(_task_group(plan), part, plan.n_groups)
