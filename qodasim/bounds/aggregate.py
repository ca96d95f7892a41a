"""Variance bounds of the workers' aggregate under each collective (THEORY §8; docs: theory/solvers).

With unbiased, independent quantizers and ``ε``-bounded variances ``E‖Q(v) − v‖² ≤ ε‖v‖²``:

* **all-gather** — ``Â = (1/K) Σ_k Q_1(g_k)``:
  ``E‖Â − ḡ‖² ≤ A := (1/K²) Σ_k ε_1 ‖g_k‖²``;
* **scatter-reduce-allgather** — ``Â = Q_2(s)``, ``s = (1/K) Σ_k Q_1(g_k)``:
  ``E‖Â − ḡ‖² = E‖s − ḡ‖² + E‖Q_2(s) − s‖² ≤ A + ε_2 E‖s‖² = A + ε_2 (‖ḡ‖² + E‖s − ḡ‖²) ≤ A + ε_2(‖ḡ‖² + A)``.

The re-quantization's term ``ε_2(‖ḡ‖² + A)`` is not divided by ``K``.  For SRA, ``ε_1 = ε_2`` is the
bound of the piece-wise quantizer (:func:`qodasim.solvers.sra.piece_quantizer`: a norm per layer ∩
chunk), e.g. :func:`~qodasim.bounds.layerwise_tight_bound` of its pieces (transmitted norms included).
"""

from __future__ import annotations

import numpy as np

from ..validate import check_real

__all__ = ["aggregate_variance_bound"]


def _nonneg(x, name: str) -> float:
    return check_real(x, name, 0.0, type_error=TypeError)


def aggregate_variance_bound(eps, sq_norms, mean_sq_norm: float = 0.0, collective: str = "allgather",
                             eps2=None) -> float:  # fmt: skip
    """Upper bound on ``E‖Â − ḡ‖²`` for the workers' aggregate (module docstring).

    Parameters
    ----------
    eps : float
        ``ε_1``: the workers' quantizer's variance bound (normalized, ``E‖Q(v) − v‖² ≤ ε‖v‖²``).
    sq_norms : array (K,)
        ``‖g_k‖²`` of the workers' vectors.
    mean_sq_norm : float
        ``‖ḡ‖²`` of their mean (SRA only).
    collective : {"allgather", "sra"}
    eps2 : float, optional
        ``ε_2`` of the re-quantizer (default ``eps``).

    Examples
    --------
    >>> aggregate_variance_bound(0.5, [4.0, 4.0])  # (1/4)(0.5·4 + 0.5·4)
    1.0
    >>> aggregate_variance_bound(0.5, [4.0, 4.0], mean_sq_norm=3.0, collective="sra")  # 1 + 0.5(3 + 1)
    3.0
    """
    e1 = _nonneg(eps, "eps")
    e2 = e1 if eps2 is None else _nonneg(eps2, "eps2")
    n = np.asarray(sq_norms, float)
    if n.ndim != 1 or n.size < 1 or not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError("sq_norms must be a non-empty 1-D array of finite squared norms >= 0")
    K = n.size
    first = e1 * float(n.sum()) / K**2
    if collective == "allgather":
        return first
    if collective == "sra":
        return first + e2 * (_nonneg(mean_sq_norm, "mean_sq_norm") + first)
    raise ValueError(f"collective must be 'allgather' or 'sra', got {collective!r}")
