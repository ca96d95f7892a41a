"""qodasim — theory and simulation of communication-efficient distributed optimization.

Pipeline: levels → quantize → code → bound/optimize → solve → experiment → plot.
"""

from . import threads as _threads

_threads._select_layer()  # before any parallel kernel runs: the fork-safe layer unless the user chose one
_threads.apply_env()

from ._version import __version__  # noqa: E402
from .levels import Levels  # noqa: E402
from .quantize import LayerLayout, LayerwiseQuantizer, QuantizedVector, Quantizer, dequantize, exact_variance  # noqa: E402
from .rng import Key  # noqa: E402


def analyze(grads, **options):
    """Compare quantization schemes at equal bits on gradient snapshots: see
    :func:`qodasim.experiments.analyze.analyze` (imported on first use)."""
    from .experiments.analyze import analyze as _analyze

    return _analyze(grads, **options)


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
    "analyze",
]
