"""Norms: the deterministic vector norm and the float32 normal range of transmitted norms."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim import Key, Levels, Quantizer
from qodasim.quantize import NormRangeError, vector_norm


def test_vector_norm_is_deterministic_and_scaled():
    rng = np.random.default_rng(1)
    v = rng.standard_normal(1000)
    assert vector_norm(v) == vector_norm(v.copy()) == vector_norm(v, engine="numpy")
    assert np.isclose(vector_norm(v), np.linalg.norm(v), rtol=1e-14)
    assert np.isclose(vector_norm(np.array([1e308, 1e308])), np.sqrt(2) * 1e308, rtol=1e-15)
    assert np.isclose(vector_norm(np.array([1e-200, 3e-200])), np.sqrt(10) * 1e-200, rtol=1e-15)
    assert np.isclose(vector_norm(v, 3.0), np.sum(np.abs(v) ** 3) ** (1 / 3), rtol=1e-13)


def test_norms_outside_float32_normal_range_are_rejected():
    q = Quantizer(Levels.uniform(1))
    for v in ([1.5e-45, 0.0], [1e-200, 3e-200], [1e39]):
        with pytest.raises(NormRangeError, match="float32"):
            q.exact_variance(np.array(v), normalized=True)
        with pytest.raises(NormRangeError):
            q.quantize(np.array(v), Key(0))
    assert q.quantize(np.zeros(3), Key(0)).norms[0] == 0  # the zero vector is fine
    # normalized variance is scale-free: no ‖v‖² formed (tiny but normal norms)
    v = np.array([1.0, 3.0, -2.0])
    q4 = Quantizer(Levels.uniform(4))
    assert np.isclose(q4.exact_variance(v * 1e-36, normalized=True), q4.exact_variance(v, normalized=True), rtol=1e-6)
