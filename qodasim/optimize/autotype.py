"""Automatic layer types: choose ``M`` and the layer → type map from per-layer statistics.

QODA maps each layer to one of ``M`` types, each with its own levels, and leaves the map to the user.
:func:`auto_types` chooses it:

1. **Cost matrix.** Each layer's normalized magnitudes ``r_i = |v_i| / ‖v‖_q`` get their own optimal
   ``α`` levels (fitted on the even coordinates), and ``C[i, j]`` is the exact mean variance per
   coordinate of layer ``i``'s odd coordinates quantized with layer ``j``'s levels
   (:func:`cost_matrix`): the distance between distributions that matters for sharing levels.
2. **Clusters.** For every ``M ≤ max_types``, k-medoids on ``C`` (each type's levels are one layer's,
   each layer joins the type whose levels cost it least; deterministic starts, fixed seed, several
   restarts) gives a candidate map (:func:`kmedoids`).
3. **Criterion.** Each candidate's per-type optimal levels are fitted on half of every layer's
   coordinates (the even ones) and its variance ``MQV(M)`` (mean normalized variance per coordinate)
   is measured on the other half, so that a type which only fits noise does not pay.  It is scored
   at *equal bits*: the level tables cost ``T_M = M·α·32`` bits, sent once every ``every`` messages,
   which a single type could have spent on the payload instead; under the high-rate rule of
   quantization (one more bit per coordinate divides the variance by 4; Gersho & Gray, *Vector
   Quantization and Signal Compression*, 1992)

   ``score(M) = MQV(M) · 4^{T_M / (n · every)}``

   with ``n`` the coordinates of one message.  The chosen ``M`` is the smallest whose score is within
   ``tol`` (relative) of the least score: a type must buy more than ``tol`` of variance at equal bits.

:func:`adjusted_rand_index` (Hubert & Arabie 1985) compares a found map with a planted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validate import check_int
from .distributions import Empirical, normalized_magnitudes, psi
from .levels import optimize_levels

__all__ = [
    "AutoTypes",
    "adjusted_rand_index",
    "auto_layout",
    "auto_types",
    "auto_types_of",
    "cost_matrix",
    "heldout_mqv",
    "kmedoids",
]


def cost_matrix(rs, alpha: int, method: str = "histogram") -> tuple[np.ndarray, np.ndarray, list]:
    """``C[i, j]``: mean normalized variance per coordinate of layer ``i``'s odd coordinates under the
    levels fitted to layer ``j``'s even ones; also each layer's odd-coordinate count (the weights) and
    the fitted levels."""
    levels = [optimize_levels(r[0::2] if np.any(r[0::2]) else np.ones(1), alpha, method).levels for r in rs]
    tests = [Empirical(r[1::2]) for r in rs]
    if len({lv.size for lv in levels}) == 1:  # every row at once: psi's sums for all level sets, O(L·α) a row
        V = np.stack([lv.values for lv in levels])
        a, b = V[:, :-1], V[:, 1:]
        C = np.array([_psi_rows(a, b, t) for t in tests])
    else:
        C = np.array([[psi(lv, t) for lv in levels] for t in tests])
    return C, np.array([r[1::2].size for r in rs], np.float64), levels


def _psi_rows(a: np.ndarray, b: np.ndarray, t: Empirical) -> np.ndarray:
    """``psi(levels_j, t)`` for every row ``j`` of the interval ends ``a``, ``b`` (``(L, α + 1)``), each
    the same floating-point operations as :func:`~qodasim.optimize.psi` (tested equal)."""
    ia, ib = np.searchsorted(t.x, a, side="right"), np.searchsorted(t.x, b, side="right")
    P, M1, M2 = t.W[ib] - t.W[ia], t.beta[ib] - t.beta[ia], t.gamma[ib] - t.gamma[ia]
    return np.sum(-a * b * P + (a + b) * M1 - M2, axis=1)


def _start_medoids(C: np.ndarray, w: np.ndarray, k: int, rng) -> list[int]:
    """``k`` starting medoids: without ``rng`` the cheapest single medoid, then the farthest-cost
    additions; with it a random first one, then additions drawn with probability ∝ their cost."""
    n = C.shape[0]
    med = [int(np.argmin(w @ C))] if rng is None else [int(rng.integers(n))]
    while len(med) < k:
        gain = w * C[:, med].min(axis=1)
        gain[med] = -1
        if rng is None:
            med.append(int(np.argmax(gain)))
            continue
        p = gain.clip(0)
        if not p.sum() > 0:  # every other layer already costs nothing: pick any non-medoid
            p = (gain >= 0).astype(np.float64)
        med.append(int(rng.choice(n, p=p / p.sum())))
    return med


def _refined_medoids(C: np.ndarray, w: np.ndarray, med: list[int]) -> np.ndarray:
    """Alternate assignment and medoid updates until stable (at most 100 rounds)."""
    med = np.array(med)
    for _ in range(100):
        lab = np.argmin(C[:, med], axis=1)
        new = med.copy()
        for j in range(med.size):
            members = np.flatnonzero(lab == j)
            if members.size:
                new[j] = members[np.argmin(w[members] @ C[np.ix_(members, members)])]
        if np.array_equal(new, med):
            break
        med = new
    return med


def kmedoids(C: np.ndarray, w: np.ndarray, k: int, seed: int = 0, n_init: int = 8) -> np.ndarray:
    """Labels of a ``k``-medoid clustering of the rows of the cost matrix ``C`` (row ``i`` costs
    ``w_i · C[i, medoid]``): greedy cost-weighted starts, alternate assignment and medoid updates
    until stable, best of ``n_init`` (first start deterministic: the cheapest single medoid, then
    farthest-cost additions).  Labels are ordered by first appearance."""
    C, w = np.asarray(C, np.float64), np.asarray(w, np.float64)
    n = C.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}], got {k}")
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for start in range(n_init):
        med = _refined_medoids(C, w, _start_medoids(C, w, k, rng if start else None))
        lab = np.argmin(C[:, med], axis=1)
        cost = float(w @ C[np.arange(n), med[lab]])
        if cost < best_cost * (1 - 1e-12):
            best, best_cost = lab, cost
    _, first = np.unique(best, return_index=True)
    order = np.unique(best)[np.argsort(first)]
    relabel = np.empty(best.max() + 1, np.int64)
    relabel[order] = np.arange(order.size)
    return relabel[best]


def adjusted_rand_index(a, b) -> float:
    """Adjusted Rand index of two labelings (1: the same partition; about 0: chance agreement;
    Hubert & Arabie, *Comparing partitions*, 1985).

    Examples
    --------
    >>> from qodasim.optimize.autotype import adjusted_rand_index
    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2])
    1.0
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError("labelings must have the same length >= 2")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)

    def c2(x):
        return float(np.sum(x * (x - 1) / 2))

    s_ij, s_a, s_b, tot = c2(table), c2(table.sum(1)), c2(table.sum(0)), a.size * (a.size - 1) / 2
    expected = s_a * s_b / tot
    top = (s_a + s_b) / 2
    return 1.0 if top == expected else float((s_ij - expected) / (top - expected))


@dataclass(frozen=True)
class AutoTypes:
    """What :func:`auto_types` chose.

    Attributes
    ----------
    types : ndarray of int
        Type of each layer (``0 … M−1``).
    n_types : int
        ``M``.
    scores : dict
        ``M`` → ``{"mqv", "table_bits", "score"}`` for every candidate.
    levels : tuple of Levels
        The chosen map's per-type optimal levels.
    """

    types: np.ndarray
    n_types: int
    scores: dict
    levels: tuple


def heldout_mqv(rs, types, alpha: int, method: str = "histogram") -> tuple[float, tuple]:
    """Levels fitted per type on the even coordinates of every layer's normalized magnitudes ``rs``;
    their mean normalized variance per coordinate (exact, :func:`~qodasim.optimize.psi`) on the odd
    ones.  Returns ``(mqv, levels per type)``."""
    types = np.asarray(types, np.int64)
    total, n, levels = 0.0, 0, []
    for m in range(int(types.max()) + 1):
        train = np.concatenate([r[0::2] for r, t in zip(rs, types) if t == m])
        test = np.concatenate([r[1::2] for r, t in zip(rs, types) if t == m])
        lv = optimize_levels(train if np.any(train) else np.ones(1), alpha, method).levels
        levels.append(lv)
        if test.size:
            total += test.size * psi(lv, Empirical(test))
            n += test.size
    return total / max(n, 1), tuple(levels)


def auto_types(layers, max_types: int = 6, alpha: int = 3, q: float = 2.0, method: str = "histogram",
               every: int = 1, tol: float = 0.05, seed: int = 0) -> AutoTypes:  # fmt: skip
    """Choose the number of types and the layer → type map (see the module docstring).

    Parameters
    ----------
    layers : sequence of arrays
        One sample of each layer (e.g. one worker's oracle output split by the layout); each needs
        at least 2 coordinates.
    max_types : int
        Largest ``M`` tried (at most the number of layers).
    alpha : int
        Interior levels per type.
    q : float
        Norm order of the quantizer (normalization of each layer).
    method : str
        Level optimizer for the fits (:func:`~qodasim.optimize.optimize_levels`).
    every : int
        Messages per level-table update (the tables' bits are amortized over them).
    tol : float
        Relative score a further type must gain to be kept (``≥ 0``).
    seed : int
        k-means seed.

    Examples
    --------
    Two planted kinds of layer, Gaussian and sparse spiky:

    >>> import numpy as np
    >>> from qodasim.optimize import auto_types
    >>> rng = np.random.default_rng(0)
    >>> gauss = [rng.standard_normal(2000) for _ in range(4)]
    >>> spiky = [rng.standard_normal(2000) * (rng.random(2000) < 0.05) for _ in range(4)]
    >>> found = auto_types(gauss + spiky, max_types=4)
    >>> found.n_types, found.types.tolist()
    (2, [0, 0, 0, 0, 1, 1, 1, 1])
    """
    L = len(layers)
    if L < 1:
        raise ValueError("layers must be non-empty")
    for name, val, lo in (("max_types", max_types, 1), ("alpha", alpha, 1), ("every", every, 1)):
        check_int(val, name, lo)
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if any(np.size(v) < 2 for v in layers):
        raise ValueError("every layer needs at least 2 coordinates (half fit the levels, half score them)")
    rs = [normalized_magnitudes(np.asarray(v, np.float64).ravel(), q) if np.any(v) else np.zeros(np.size(v))
          for v in layers]  # fmt: skip
    C, w, _ = cost_matrix(rs, alpha, method)
    n = int(sum(r.size for r in rs))
    cands = {}
    for M in range(1, min(int(max_types), L) + 1):
        types = np.zeros(L, np.int64) if M == 1 else kmedoids(C, w, M, seed)
        M_eff = int(types.max()) + 1
        if M_eff in cands:
            continue
        mqv, levels = heldout_mqv(rs, types, alpha, method)
        table = M_eff * alpha * 32
        cands[M_eff] = (mqv * 4.0 ** (table / (n * every)), mqv, table, types, levels)
    least = min(c[0] for c in cands.values())
    M = min(m for m, c in cands.items() if c[0] <= least * (1 + tol))
    scores = {m: {"mqv": float(c[1]), "table_bits": c[2], "score": float(c[0])} for m, c in sorted(cands.items())}
    return AutoTypes(cands[M][3], M, scores, cands[M][4])


def auto_types_of(arrays, auto_options=None):
    """``(types, AutoTypes or None)`` of named arrays: :func:`auto_types` on the arrays of two or more
    coordinates; the others (and every array when none has two) join type 0.

    ``arrays``: a mapping or a pytree (:func:`qodasim.quantize.layers.named_arrays`), in its order;
    ``auto_options``: :func:`auto_types`'s keywords.
    """
    from ..quantize.layers import named_arrays

    values = list(named_arrays(arrays).values())
    big = [i for i, a in enumerate(values) if np.size(a) >= 2]
    out = np.zeros(len(values), np.int64)
    if not big:
        return out, None
    found = auto_types([np.asarray(values[i], np.float64) for i in big], **dict(auto_options or {}))
    out[big] = found.types
    return out, found


def auto_layout(arrays, **auto_options):
    """The :class:`~qodasim.quantize.LayerLayout` of named arrays (names and shapes kept, as
    :meth:`LayerLayout.from_arrays <qodasim.quantize.LayerLayout.from_arrays>`) with types fitted to
    their values by :func:`auto_types` (``auto_options``: its keywords; layers of fewer than two
    coordinates join type 0).

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim.optimize import auto_layout
    >>> rng = np.random.default_rng(0)
    >>> grads = {"a": rng.standard_normal(400), "b": rng.standard_normal(400), "c": rng.laplace(size=400) * 40}
    >>> auto_layout(grads, max_types=2).n_layers
    3
    """
    types, _ = auto_types_of(arrays, auto_options)
    from ..quantize.layers import layout_of

    return layout_of(arrays, types)
