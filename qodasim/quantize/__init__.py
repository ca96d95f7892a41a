"""Quantizers: unbiased stochastic rounding, global and layer-wise (THEORY §1–2).

Engines: ``"numba"`` (compiled CPU kernels, default), ``"numpy"`` (the plain reference) and ``"cuda"``
(GPU kernels, bit-identical output).  :mod:`qodasim.quantize.device` keeps many workers' vectors on
the GPU across calls (its workspace needs numba-cuda and a GPU, or the CUDA simulator).
"""

from .core import (
    ENGINES,
    BaseQuantizer,
    LayerwiseQuantizer,
    NormRangeError,
    QuantizedVector,
    Quantizer,
    dequantize,
    dequantize_batch,
    dequantize_sum,
    exact_variance,
    get_engine,
    vector_norm,
)
from .plan import LayerLayout, Plan, PlanSpec

__all__ = [
    "ENGINES",
    "BaseQuantizer",
    "LayerLayout",
    "LayerwiseQuantizer",
    "NormRangeError",
    "Plan",
    "PlanSpec",
    "QuantizedVector",
    "Quantizer",
    "dequantize",
    "dequantize_batch",
    "dequantize_sum",
    "exact_variance",
    "get_engine",
    "vector_norm",
]
