"""Plain NumPy reference engine (private).

Vectorized, readable, and bit-for-bit identical to the Numba kernels for ``q ∈ {2, ∞}``: the norm
reductions follow the same lane order (coordinate ``a + p`` of a task into lane ``p mod 32``,
sequential per lane — ``np.add.at`` is unbuffered and applies its updates in index order — then the
fixed fold 16, 8, 4, 2, 1), and rounding uses the same formulas and the same counter-based uniforms.
For other ``q`` the power function of NumPy and of the compiled kernels may differ in the last ulp.
"""

from __future__ import annotations

import numpy as np

from ..rng import uniforms
from .plan import Plan

LANES = 32
name = "numpy"
dequantize_sum = None  # dequantize, then add in worker order
bucket_tables = None
quantize_single_task = None


def stage(v):
    """The reference reads ``v`` itself."""
    return v


def combine_max(task_group: np.ndarray, part: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group the largest partial (``fmax``: a NaN partial is skipped, as the kernels' ``>`` does)."""
    out = np.zeros(n_groups)
    np.fmax.at(out, task_group, part)
    return out


def combine_sum(task_group: np.ndarray, part: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group the partials added in task order from 0.0 (``np.add.at`` applies them in order)."""
    out = np.zeros(n_groups)
    np.add.at(out, task_group, part)
    return out


def _task_of_coord(plan: Plan) -> np.ndarray:
    return np.repeat(np.arange(plan.task_start.size), plan.task_end - plan.task_start)


def _lane_sums(values: np.ndarray, plan: Plan) -> np.ndarray:
    task = _task_of_coord(plan)
    lane = (np.arange(plan.d) - plan.task_start[task]) % LANES
    acc = np.zeros((plan.task_start.size, LANES))
    np.add.at(acc, (task, lane), values)
    step = LANES // 2
    while step >= 1:
        acc[:, :step] += acc[:, step : 2 * step]
        step //= 2
    return acc[:, 0].copy()


def task_stats(v: np.ndarray, plan: Plan):
    x = np.abs(v.astype(np.float64))
    task = _task_of_coord(plan)
    mx = np.zeros(plan.task_start.size)
    np.maximum.at(mx, task, np.where(np.isnan(x), 0.0, x))
    return mx, _lane_sums(x * x, plan)


def task_powsum(v: np.ndarray, plan: Plan, scale: np.ndarray, q: np.ndarray, need: np.ndarray) -> np.ndarray:
    group = plan.coord_group()
    sc = scale[group]
    safe = np.where(sc > 0.0, sc, 1.0)
    y = np.abs(v.astype(np.float64)) / safe
    qq = q[group]
    with np.errstate(over="ignore", invalid="ignore"):
        vals = np.where(qq == 2.0, y * y, y**qq)
    vals = np.where(need[group] & (sc > 0.0), vals, 0.0)
    return _lane_sums(vals, plan)


def _coord_seg(plan: Plan) -> np.ndarray:
    return np.repeat(np.arange(plan.n_segments), np.diff(plan.seg_bounds))


def _split(v, seg_scale, plan, lv, lv_start, type_uni, fold: bool):
    """``(j, ρ)`` per coordinate, as the kernels' ``split`` (``fold=False``: round_kernel's raw j)."""
    c = seg_scale[_coord_seg(plan)]
    ctype = plan.coord_type()
    ax = np.abs(v.astype(np.float64))
    j = np.zeros(plan.d, np.int64)
    rho = np.zeros(plan.d)
    for ty in np.unique(ctype):
        m = ctype == ty
        su = int(type_uni[ty])
        if su > 0:
            t = ax[m] * c[m]
            jj = t.astype(np.int32).astype(np.int64)
            rr = t - jj
            if fold:
                top = jj >= su
                jj = np.where(top, su - 1, jj)
                rr = np.where(top, 1.0, rr)
        else:
            table = lv[lv_start[ty] : lv_start[ty + 1]]
            r = np.minimum(ax[m] * c[m], 1.0)
            jj = np.clip(np.searchsorted(table, r, side="right") - 1, 0, table.size - 2)
            rr = (r - table[jj]) / (table[jj + 1] - table[jj])
        j[m] = jj
        rho[m] = rr
    return j, rho


def intervals(v, seg_scale, plan, lv, lv_start, type_uni):
    """Interval ``j`` and up-probability ``ρ`` of every coordinate."""
    return _split(v, seg_scale, plan, lv, lv_start, type_uni, fold=True)


def coordinate_uniforms(plan: Plan, seg_base: np.ndarray) -> np.ndarray:
    """The uniform of every coordinate, from its stream address ``(layer, index-in-layer)``."""
    base = np.repeat(seg_base, np.diff(plan.seg_bounds))
    _, idx = plan.coord_address()
    out = np.empty(plan.d)
    for b in np.unique(base):
        m = base == b
        out[m] = uniforms(int(b), idx[m])
    return out


def round_given_uniforms(v, seg_scale, plan, lv, lv_start, type_uni, u, idx_dtype):
    """Stochastic rounding fed explicit uniforms ``u`` (one per coordinate)."""
    j, rho = _split(v, seg_scale, plan, lv, lv_start, type_uni, fold=False)
    k = j + (u < rho)
    su = type_uni[plan.coord_type()]
    k = np.where(su > 0, np.minimum(k, su), k)
    sign = np.where((v < 0) & (k > 0), -1, 1).astype(np.int8)
    return k.astype(idx_dtype), sign


def round(v, seg_scale, plan, seg_base, lv, lv_start, type_uni, idx_dtype, out=None, buckets=None):
    """``buckets`` (the Numba engine's bucket tables) is not used here."""
    u = coordinate_uniforms(plan, seg_base)
    idx, sign = round_given_uniforms(v, seg_scale, plan, lv, lv_start, type_uni, u, idx_dtype)
    if out is None:
        return idx, sign
    out[0][...] = idx
    out[1][...] = sign
    return out


def dequantize(idx, sign, norms, plan, lv, lv_start, dtype):
    n = norms[plan.coord_group()]
    level = lv[lv_start[plan.coord_type()] + idx.astype(np.int64)]
    return (n * sign.astype(np.float64) * level).astype(dtype)


def task_phi(v, seg_scale, plan, lv, lv_start, type_uni) -> np.ndarray:
    """Per-group ``Σ φ_ℓ(r_i) = Σ ρ_i(1 − ρ_i)(ℓ_{j+1} − ℓ_j)²`` (used for the exact variance)."""
    j, rho = intervals(v, seg_scale, plan, lv, lv_start, type_uni)
    base = lv_start[plan.coord_type()]
    w = lv[base + j + 1] - lv[base + j]
    return np.bincount(plan.coord_group(), weights=rho * (1.0 - rho) * w * w, minlength=plan.n_groups)
