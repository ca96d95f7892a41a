"""Scalar device functions shared by the CPU (``njit``) and GPU (``cuda.jit(device=True)``) kernels.

Written once as plain Python so both compilers see the same operations in the same order — the
basis of the CPU/GPU bit-for-bit agreement (private).
"""

from __future__ import annotations

import numpy as np

from ..rng import GOLDEN, MIX1, MIX2

GOLDEN_U64 = np.uint64(GOLDEN)
MIX1_U64 = np.uint64(MIX1)
MIX2_U64 = np.uint64(MIX2)
S30, S27, S31, S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
ONE_U64 = np.uint64(1)
TWO_M53 = 2.0**-53


def uniform_of(z):
    """``(mix64(z) >> 11) · 2^{-53}``: the uniform of SplitMix64 state ``z`` (uint64)."""
    z = (z ^ (z >> S30)) * MIX1_U64
    z = (z ^ (z >> S27)) * MIX2_U64
    z = z ^ (z >> S31)
    return np.float64(z >> S11) * TWO_M53


def first_state(base, index):
    """SplitMix64 state of coordinate ``index`` in stream ``base``: ``base + (index + 1)·φ``."""
    return base + (np.uint64(index) + ONE_U64) * GOLDEN_U64


def locate(lv, lo, n_levels, r):
    """Largest ``j ∈ [0, n_levels-2]`` with ``lv[lo + j] <= r`` (binary search; ``lv[lo] = 0 <= r``)."""
    j = 0
    n = n_levels - 1
    while n > 1:
        half = n >> 1
        if lv[lo + j + half] <= r:
            j += half
        n -= half
    return j
