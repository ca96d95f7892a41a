"""Deterministic group norms: the float64 ``q``-norms every engine computes the same way (THEORY §1).

The summation order is fixed by the algorithm — 32 lanes per task folded by a fixed tree, tasks
combined in task order by the engine's serial combiners — not by the CPU's SIMD width, a BLAS
library or the thread count.  The transmitted norm is the float64 norm rounded *up* to float32
(:func:`round_up_to_float32`).
"""

from __future__ import annotations

import numpy as np

from . import _scalar
from .engine import NormEngine, get_engine
from .layers import LayerLayout
from .plan import Plan, PlanSpec, cached_plan
from .validation import check_q, check_vector

__all__ = ["compute_norms", "round_up_to_float32", "vector_norm"]


# Outside this range of max|v_i|, Σ v_i² may overflow or lose precision in float64: rescale first.
_SAFE_LO, _SAFE_HI = _scalar.SAFE_LO, _scalar.SAFE_HI


def round_up_to_float32(x: np.ndarray) -> np.ndarray:
    """Smallest float32 ``≥ x`` elementwise (float64 in, float32 out)."""
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)
    low = f.astype(np.float64) < x
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def compute_norms(v: np.ndarray, plan: Plan, engine: NormEngine, staged=None) -> np.ndarray:
    """Float64 ``q``-norms of the plan's groups, deterministic for a given engine family.

    ``q = ∞``: ``max |v_i|``.  ``q = 2`` with ``max|v_i|`` in ``[1e-150, 1e150]``: ``√Σ v_i²``.
    Otherwise ``m·(Σ (|v_i|/m)^q)^{1/q}`` with ``m = max |v_i|`` (no overflow, no underflow).
    Raises ``ValueError`` if ``v`` holds NaN or Inf.  ``staged``, optional, is ``v`` as the engine
    already holds it (the CUDA engine's device copy, see :func:`stage`); the kernels read it.
    """
    kv = v if staged is None else staged
    mx, ss = engine.task_stats(kv, plan)
    if not np.all(np.isfinite(ss)) and not np.all(np.isfinite(v)):
        raise ValueError("v contains NaN or Inf")
    tg = plan.seg_group[plan.task_seg]
    gmax = engine.combine_max(tg, mx, plan.n_groups)
    gss = engine.combine_sum(tg, ss, plan.n_groups)
    q = plan.group_q
    norms = np.where(np.isinf(q), gmax, np.sqrt(gss))
    need = ~np.isinf(q) & (gmax > 0.0) & ((q != 2.0) | (gmax < _SAFE_LO) | (gmax > _SAFE_HI))
    if need.any():
        part = engine.task_powsum(kv, plan, gmax, q, need)
        ps = engine.combine_sum(tg, part, plan.n_groups)
        with np.errstate(divide="ignore", over="ignore"):  # an overflow is an inf norm: refused by the caller
            scaled = gmax * np.where(q == 2.0, np.sqrt(ps), ps ** (1.0 / np.where(need, q, 1.0)))
        norms = np.where(need, scaled, norms)
    return norms


def vector_norm(v, q: float = 2.0, engine: str = "numba") -> float:
    """The float64 ``q``-norm of ``v``, computed exactly as the quantizers compute it.

    Deterministic: the summation order is fixed by the algorithm (32 lanes folded by a fixed tree,
    tasks combined in order; ``compute_norms``), not by the CPU's SIMD width, the BLAS library or
    the thread count — unlike ``np.linalg.norm``.  Vectors with tiny or huge entries are scaled by
    their maximum first, so no square underflows or overflows.  Raises ``ValueError`` on NaN/Inf.
    """
    v = check_vector(v)
    plan = cached_plan(PlanSpec(LayerLayout.single(v.size), "global", (check_q(q),), (0,), 0))
    return float(compute_norms(v, plan, get_engine(engine))[0])
