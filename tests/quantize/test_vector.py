"""QuantizedVector validates its contents, naming the field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qodasim import Key, Levels, Quantizer, coding


def _qv():
    v = np.random.default_rng(0).standard_normal(64)
    return Quantizer(Levels.uniform(4)).quantize(v, Key(1))


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("indices", np.full(64, 2**31, np.uint32), "past"),
        ("indices", np.full(64, 200, np.uint8), "past"),
        ("indices", np.zeros(10, np.uint8), "shape"),
        ("indices", np.zeros(64, np.int64), "unsigned"),
        ("signs", np.zeros(64, np.int8), "sign"),
        ("signs", np.ones(63, np.int8), "shape"),
        ("norms", np.array([np.nan], np.float32), "finite"),
        ("norms", np.array([1.0, 2.0], np.float32), "shape"),
        ("norms", np.array([1.0]), "float32"),
    ],
)
def test_quantized_vector_contents_are_validated(field, value, words):
    """These segfaulted (exit 139) or returned garbage read past the arrays."""
    bad = dataclasses.replace(_qv(), **{field: value})
    for use in (lambda: bad.dequantize(), lambda: coding.encode(bad), lambda: bad.dequantize(engine="numpy")):
        with pytest.raises((ValueError, TypeError), match=words):
            use()
    assert dataclasses.replace(_qv()).dequantize().shape == (64,)  # a valid copy still works
