"""qodasim — theory and simulation of communication-efficient distributed optimization.

Pipeline: levels → quantize → code → bound/optimize → solve → experiment → plot.
"""

from .levels import Levels
from .quantize import LayerLayout, LayerwiseQuantizer, QuantizedVector, Quantizer, dequantize, exact_variance
from .rng import Key

__version__ = "0.1.0"

__all__ = [
    "Key",
    "LayerLayout",
    "LayerwiseQuantizer",
    "Levels",
    "QuantizedVector",
    "Quantizer",
    "dequantize",
    "exact_variance",
    "__version__",
]
