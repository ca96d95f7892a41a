"""Variance and code-length bounds (THEORY §2–3)."""

from .closed_form import natural_dithering_bound, qsgd_bound, simple_bound

__all__ = ["natural_dithering_bound", "qsgd_bound", "simple_bound"]
