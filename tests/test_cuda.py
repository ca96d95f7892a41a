"""CUDA kernels: under the simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported, in
its own pytest invocation: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim``) or on a GPU.

CPU and (simulated) GPU must produce the *same* quantized vector for the same key, and the CUDA
engine must pass the conformance suite (on small inputs: the simulator runs threads in Python)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import LAYOUT, LEVELS

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.quantize.check import (
    check_bad_input,
    check_output_format,
    check_reproducible,
    check_unbiased,
    check_variance_matches_exact,
    check_zero_vector,
    test_vector,
)
from qodasim.quantize.core import cuda_available

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # the simulator's uint64 arithmetic wraps loudly
    pytest.mark.skipif(not cuda_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1"),
]


def pair(**kw):
    lv = kw.pop("levels", None)
    if "layout" in kw:
        return LayerwiseQuantizer(levels=lv, **kw), LayerwiseQuantizer(levels=lv, engine="cuda", **kw)
    return Quantizer(lv, **kw), Quantizer(lv, engine="cuda", **kw)


CASES = {
    "uniform-L2": dict(levels=LEVELS["uniform15"]),
    "exp-Linf-bucket": dict(levels=LEVELS["exp3"], q=np.inf, bucket_size=16),
    "random-L3": dict(levels=LEVELS["random5"], q=3.0),
    "layerwise": dict(
        layout=LAYOUT, levels=(LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]), bucket_size=(None, 8, 16)
    ),  # fmt: skip
    "layerwise-global": dict(
        layout=LAYOUT, levels=(LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]), scope="global"
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_and_gpu_give_the_same_quantized_vector(name):
    cpu, gpu = pair(**CASES[name])
    d = cpu.dimension or 300
    for seed, dtype in ((0, np.float32), (1, np.float64)):
        v = test_vector(d, seed, dtype)
        a, b = cpu.quantize(v, Key(seed, 1, 2)), gpu.quantize(v, Key(seed, 1, 2))
        if np.all((a.plan.group_q == 2) | np.isinf(a.plan.group_q)):
            assert a.equals(b)
        else:  # q ∉ {2, ∞}: pow may differ in the last ulp; the rest must agree given equal norms
            assert np.allclose(a.norms, b.norms, rtol=1e-6)
        assert np.array_equal(a.dequantize(np.float64), b.dequantize(np.float64, engine="cuda")) or not a.equals(b)
        j1, r1, _, _ = cpu.intervals(v)
        j2, r2, _, _ = gpu.intervals(v)
        assert np.array_equal(j1, j2) and np.array_equal(r1, r2)
        assert np.isclose(cpu.exact_variance(v), gpu.exact_variance(v), rtol=1e-12)


CASES["layerwise-small"] = dict(layout=LayerLayout([20, 12], [0, 1]), levels=(LEVELS["uniform4"], LEVELS["exp3"]))


@pytest.mark.parametrize("name", ["uniform-L2", "layerwise-small"])
def test_conformance_suite_on_the_cuda_engine(name):
    """The same checks as on the CPU, with fewer draws (each simulated launch costs ~0.1 s): the
    rounding law is still tested exactly (binomial), the variance within 6 standard errors.  The
    layer-wise case is small (2 layers): the simulator runs every block's threads in Python."""
    _, gpu = pair(**CASES[name])
    check_output_format(gpu, d=40)
    check_zero_vector(gpu, d=20)
    check_reproducible(gpu, d=64)
    check_bad_input(gpu)
    check_unbiased(gpu, d=32, n=60)
    check_variance_matches_exact(gpu, d=32, n=60)


def test_expected_cost_kernel_matches_numpy():
    from qodasim.coding import _payload
    from qodasim.quantize import _cuda_engine

    quant = Quantizer(Levels.uniform(6), engine="cuda")
    v = test_vector(200, 3)
    j, rho, _, plan = quant.intervals(v)
    table = _payload.dense_cost_table(6, 0).astype(float)
    got = _cuda_engine.expected_costs(j, rho, plan.coord_type(), [table])
    assert np.allclose(got, (1 - rho) * table[j] + rho * table[j + 1], rtol=1e-15)
