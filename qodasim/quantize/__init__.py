"""Quantizers: unbiased stochastic rounding, global and layer-wise (THEORY §1–2).

Engines: ``"numba"`` (compiled CPU kernels, default) and ``"numpy"`` (the plain reference).
"""

from .core import (
    ENGINES,
    LayerwiseQuantizer,
    QuantizedVector,
    Quantizer,
    dequantize,
    dequantize_batch,
    exact_variance,
    get_engine,
)
from .plan import LayerLayout, Plan, PlanSpec

__all__ = [
    "ENGINES",
    "LayerLayout",
    "LayerwiseQuantizer",
    "Plan",
    "PlanSpec",
    "QuantizedVector",
    "Quantizer",
    "dequantize",
    "dequantize_batch",
    "exact_variance",
    "get_engine",
]
