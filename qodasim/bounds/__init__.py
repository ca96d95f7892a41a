"""Variance and code-length bounds (THEORY §2–3)."""

from .aggregate import aggregate_variance_bound
from .closed_form import TRANSMIT_FACTOR, natural_dithering_bound, qsgd_bound, simple_bound
from .envelope import Arcs, envelope
from .tight import (
    TightBound,
    adversarial_vector,
    layerwise_tight_bound,
    layerwise_tight_bound_lp,
    tight_variance_bound,
    variance_arcs,
)

__all__ = [
    "TRANSMIT_FACTOR",
    "Arcs",
    "TightBound",
    "adversarial_vector",
    "aggregate_variance_bound",
    "envelope",
    "layerwise_tight_bound",
    "layerwise_tight_bound_lp",
    "natural_dithering_bound",
    "qsgd_bound",
    "simple_bound",
    "tight_variance_bound",
    "variance_arcs",
]
