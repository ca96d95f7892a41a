"""The CUDA kernels compiled to real PTX (sm_90), without a GPU: no FMA contraction where the CPU rounds twice.

NVVM contracts ``a·b + c`` into one ``fma`` by default (``-fma=1``), and numba-cuda turns that off
only together with ``fastmath``.  An FMA rounds once where the CPU rounds twice, so any ``fma`` in
a kernel whose result must equal the CPU's breaks the bit-for-bit promise on real hardware — the
simulator (Python floats) cannot see it.  These tests compile every kernel with numba-cuda's
``compile_ptx`` (NVVM from the ``cuda`` extra's ``nvidia-nvvm`` wheel; skipped with the reason where
it cannot load; ``QODASIM_REQUIRE_NVVM=1``, set by ``.ci/run``, turns that skip into a failure) and
read the PTX:

* no ``fma`` instruction in any bit-exact kernel (libdevice's ``pow`` — only in
  :data:`~qodasim.quantize._cuda.task_scaled_powsum_pow`, the documented exception — has its own);
* every double product or sum that feeds an accumulation is ``mul.rn``/``add.rn`` (an explicit
  rounding modifier forbids ``ptxas`` from fusing it later), checked on ``split``'s ``t = |x|·c``,
  ``ρ = t − j``;
* the exception kernel does call ``pow`` (so the test would notice if it stopped being needed).

Against the code before the fix, the first test failed on ``task_max_sumsq`` (5 ``fma.rn.f64``),
``mean_dequantize_kernel`` (7) and ``expected_cost_kernel``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":  # pragma: no cover - the simulator has no compiler
    pytest.skip("compile_ptx is not available under NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda", reason="numba-cuda (the cuda extra) is not installed")
from numba import types as nt  # noqa: E402

CC = (9, 0)  # H100; the contraction is decided by NVVM, the same for every architecture


def _compile(kernel, sig) -> str:
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
    except ImportError as exc:  # NvvmSupportError, NvrtcSupportError: the compiler cannot be loaded
        reason = f"NVVM cannot be loaded here ({str(exc).strip().splitlines()[0][:120]}); install the cuda extra"
        if os.environ.get("QODASIM_REQUIRE_NVVM") == "1":  # CI installs it: a skip there would hide a red test
            pytest.fail(reason)
        pytest.skip(reason)
    return ptx


def _signatures():
    from qodasim.quantize import _cuda as K

    i64, f64, u64 = nt.int64[::1], nt.float64[::1], nt.uint64[::1]
    out = {}
    for vt in (nt.float32[::1], nt.float64[::1]):
        tag = str(vt.dtype)
        out[f"task_max_sumsq[{tag}]"] = (K.task_max_sumsq, (vt, i64, i64, f64, f64))
        powsum = (vt, i64, i64, i64, f64, f64, nt.boolean[::1], f64)
        out[f"task_scaled_powsum[{tag}]"] = (K.task_scaled_powsum, powsum)
        out[f"task_scaled_powsum_pow[{tag}]"] = (K.task_scaled_powsum_pow, powsum)
        for it in (nt.uint8[::1], nt.uint16[::1]):
            out[f"round_kernel[{tag},{it.dtype}]"] = (
                K.round_kernel,
                (vt, f64, i64, u64, i64, i64, i64, i64, f64, i64, i64, it, nt.int8[::1]),
            )
        out[f"interval_kernel[{tag}]"] = (K.interval_kernel, (vt, f64, i64, i64, i64, i64, f64, i64, i64, i64, f64))
    for it in (nt.uint8[::1], nt.uint16[::1]):
        out[f"dequantize_kernel[{it.dtype}]"] = (
            K.dequantize_kernel, (it, nt.int8[::1], f64, i64, i64, i64, i64, i64, f64, i64, f64)
        )  # fmt: skip
        out[f"mean_dequantize_kernel[{it.dtype}]"] = (
            K.mean_dequantize_kernel,
            (it, nt.int8[::1], f64, i64, i64, i64, i64, i64, f64, i64, nt.int64, nt.int64, nt.float64[:, ::1]),
        )
    out["expected_cost_kernel"] = (K.expected_cost_kernel, (i64, f64, i64, f64, i64, f64))
    b1 = nt.boolean[::1]
    out["group_stats_kernel"] = (K.group_stats_kernel, (f64, f64, i64, i64, f64, f64, f64, b1))
    norms = (f64, f64, f64, i64, i64, f64, b1, nt.float32[::1], f64)
    out["group_norms_kernel"] = (K.group_norms_kernel, norms)
    out["group_norms_kernel_pow"] = (K.group_norms_kernel_pow, norms)
    out["segment_scales_kernel"] = (K.segment_scales_kernel, (f64, i64, i64, i64, f64))
    for vt in (nt.float32[::1], nt.float64[::1]):
        fused = (vt, i64, i64, i64, i64, u64, i64, f64, f64, i64, i64, nt.float32[::1], f64, f64, nt.uint8[::1],
                 nt.int8[::1])  # fmt: skip
        out[f"fused_group_round[{vt.dtype}]"] = (K.fused_group_round, fused)
        out[f"fused_group_round_pow[{vt.dtype}]"] = (K.fused_group_round_pow, fused)
    return out


SIGNATURES = _signatures()
POW_KERNELS = ("task_scaled_powsum_pow", "group_norms_kernel_pow", "fused_group_round_pow")  # documented exceptions
EXCEPTIONS = {name for name in SIGNATURES if name.startswith(POW_KERNELS)}
FMA = re.compile(r"^\s*fma\.\w+", re.MULTILINE)


class _Device:
    """Stands in for the GPU that numba-cuda asks for its compute capability when it compiles a
    device function called from a kernel (``compile_ptx`` itself needs none)."""

    compute_capability = CC


@pytest.fixture(scope="module")
def ptx():
    import numba.cuda.dispatcher as dispatcher

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dispatcher, "get_current_device", lambda: _Device())
        return {name: _compile(kernel, sig) for name, (kernel, sig) in SIGNATURES.items()}


def test_every_kernel_is_compiled(ptx):
    assert set(ptx) == set(SIGNATURES) and all(".entry" in text for text in ptx.values())


@pytest.mark.parametrize("name", sorted(set(SIGNATURES) - EXCEPTIONS))
def test_no_fma_in_the_bit_exact_kernels(ptx, name):
    found = FMA.findall(ptx[name])
    assert not found, f"{name}: {len(found)} fused multiply-adds ({sorted(set(f.strip() for f in found))})"


PLAIN_MUL = re.compile(r"^\s*mul\.f64", re.MULTILINE)
PLAIN_ADD = re.compile(r"^\s*(add|sub)\.f64", re.MULTILINE)


@pytest.mark.parametrize("name", sorted(set(SIGNATURES) - EXCEPTIONS))
def test_nothing_left_for_ptxas_to_fuse(ptx, name):
    """``ptxas`` (or the driver's JIT) may fuse a ``mul.f64`` into a later ``add/sub.f64`` only when
    neither has a rounding modifier (PTX ISA, ``add``: "mul/add sequences with no rounding modifiers
    may be optimized to use fused-multiply-add").  So no bit-exact kernel may hold both kinds."""
    text = ptx[name]
    assert not (PLAIN_MUL.search(text) and PLAIN_ADD.search(text)), f"{name}: unmodified mul.f64 and add/sub.f64"


def test_the_split_arithmetic_is_explicitly_rounded(ptx):
    """``t = |x|·c`` and ``ρ = t − j`` of the uniform path carry ``.rn``."""
    for name in ("round_kernel[float64,uint8]", "interval_kernel[float32]"):
        text = ptx[name]
        assert re.search(r"\bmul\.rn\.f64", text) and re.search(r"\badd\.rn\.f64", text), name


def test_the_pow_kernels_are_the_documented_exceptions(ptx):
    """The non-exact kernels exist because of ``pow`` (inlined: its FMAs show); the exact ones have none."""
    for name in ("task_scaled_powsum_pow[float64]", "group_norms_kernel_pow"):
        assert FMA.search(ptx[name]), f"expected libdevice pow in {name}"
    assert not FMA.search(ptx["task_scaled_powsum[float64]"]) and not FMA.search(ptx["group_norms_kernel"])


def test_round_kernel_stages_levels_in_shared_memory_and_unrolls(ptx):
    """The SASS read: a non-uniform type's levels are staged in shared memory (the
    search then reads them through generic addresses, ``ld.f64``), and a loop trip issues several
    global loads of ``v`` (the unrolled coordinates), not one."""
    text = ptx["round_kernel[float64,uint8]"]
    assert re.search(r"\bst\.shared\.f64", text) and re.search(r"\bld\.f64", text)
    assert len(re.findall(r"\bld\.global\.f64", text)) >= 4


def test_kernel_choice_by_q():
    from qodasim.quantize import _cuda as K

    need = np.array([True, True, False])
    assert K.powsum_kernel(np.array([2.0, 1.0, 3.0]), need) is K.task_scaled_powsum
    assert K.powsum_kernel(np.array([2.0, 3.0, 2.0]), need) is K.task_scaled_powsum_pow
    assert K.powsum_kernel(np.array([1.5]), np.array([False])) is K.task_scaled_powsum


def test_the_device_norm_constants_are_the_hosts():
    from qodasim.quantize import _cuda as K
    from qodasim.quantize import norms

    assert (K.SAFE_LO, K.SAFE_HI) == (norms._SAFE_LO, norms._SAFE_HI)
