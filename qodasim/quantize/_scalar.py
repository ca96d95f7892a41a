"""Scalar device functions shared by the CPU (``njit``) and GPU (``cuda.jit(device=True)``) kernels.

Written once as plain Python so both compilers see the same operations in the same order — the
basis of the CPU/GPU bit-for-bit agreement (private).
"""

from __future__ import annotations

import math
import types

import numpy as np
from numba.extending import register_jitable

from ..rng import GOLDEN, MIX1, MIX2

GOLDEN_U64 = np.uint64(GOLDEN)
MIX1_U64 = np.uint64(MIX1)
MIX2_U64 = np.uint64(MIX2)
S30, S27, S31, S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
ONE_U64 = np.uint64(1)
TWO_M53 = 2.0**-53
#: Outside ``[SAFE_LO, SAFE_HI]`` of ``max|v_i|``, ``Σ v_i²`` may overflow or lose precision in float64:
#: the norm is then formed from the scaled power sum (``core.compute_norms``).
SAFE_LO, SAFE_HI = 1e-150, 1e150
#: Smallest positive normal float32 (~1.18e-38): a transmitted norm below it loses relative precision.
F32_TINY = float(np.finfo(np.float32).tiny)


@register_jitable(inline="always")
def mul(a, b):
    """``a·b`` rounded once.  On the GPU it is rebound to ``__nv_dmul_rn`` (see :func:`rebind`)."""
    return a * b


@register_jitable(inline="always")
def add(a, b):
    """``a + b`` rounded once.  On the GPU it is rebound to ``__nv_dadd_rn`` (see :func:`rebind`)."""
    return a + b


def rebind(fn, **names):
    """A copy of ``fn`` whose global ``names`` are replaced (e.g. ``mul``/``add`` by ``.rn`` intrinsics).

    NVVM contracts a product followed by a sum into an FMA (its default ``-fma=1``; numba-cuda passes
    no option to turn it off without ``fastmath``), and an FMA rounds once where the CPU rounds twice.
    The intrinsics ``__nv_dmul_rn``/``__nv_dadd_rn`` become ``mul.rn.f64``/``add.rn.f64``, which
    neither NVVM nor ``ptxas`` may fuse (PTX ISA: an explicit rounding modifier forbids contraction).
    """
    g = dict(fn.__globals__)
    g.update(names)
    return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)


@register_jitable(inline="always")
def needs_scaled_sum(m, q):
    """Whether a group with ``max|v_i| = m`` and norm order ``q`` needs the scaled power-sum pass:
    ``q ≠ ∞``, ``m > 0`` and ``q ≠ 2`` or ``m`` outside ``[SAFE_LO, SAFE_HI]`` (``core.compute_norms``)."""
    return (not math.isinf(q)) and m > 0.0 and (q != 2.0 or m < SAFE_LO or m > SAFE_HI)


@register_jitable(inline="always")
def segment_scale(n, su):
    """``c = s/n`` for a uniform type (``su = s > 0``) or ``1/n``; 0 where ``n = 0`` (``core.segment_scales``)."""
    num = np.float64(su) if su > 0 else 1.0
    return num / n if n > 0.0 else 0.0


def uniform_of(z):
    """``(mix64(z) >> 11) · 2^{-53}``: the uniform of SplitMix64 state ``z`` (uint64)."""
    z = (z ^ (z >> S30)) * MIX1_U64
    z = (z ^ (z >> S27)) * MIX2_U64
    z = z ^ (z >> S31)
    return mul(np.float64(z >> S11), TWO_M53)


def first_state(base, index):
    """SplitMix64 state of coordinate ``index`` in stream ``base``: ``base + (index + 1)·φ``."""
    return base + (np.uint64(index) + ONE_U64) * GOLDEN_U64


def split(ax, c, su, lv, lo, nl):
    """Interval ``j ∈ [0, α]`` and up-probability ``ρ ∈ [0, 1]`` of magnitude ``ax`` (scale ``c``).

    Uniform levels (``su = s > 0``, ``c = s/n``): ``t = ax·c``, ``j = ⌊t⌋``, ``ρ = t − j``
    (``j = s`` is folded to ``j = s−1, ρ = 1``).  Other levels (``c = 1/n``): ``r = min(ax·c, 1)``,
    ``j`` the largest index in ``[0, nl−2]`` with ``ℓ_j ≤ r`` (binary search over the type's ``nl``
    levels ``lv[lo : lo + nl]``; ``ℓ_0 = 0 ≤ r``), ``ρ = (r − ℓ_j)/(ℓ_{j+1} − ℓ_j)``.
    """
    if su > 0:
        t = mul(ax, c)
        j = np.int64(np.int32(t))
        if j >= su:
            return su - 1, 1.0
        return j, add(t, -np.float64(j))
    r = mul(ax, c)
    if r > 1.0:
        r = 1.0
    j = 0
    n = nl - 1
    while n > 1:
        half = n >> 1
        if lv[lo + j + half] <= r:
            j += half
        n -= half
    l0 = lv[lo + j]
    return j, (r - l0) / (lv[lo + j + 1] - l0)
