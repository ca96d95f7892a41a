"""Level policies: how the workers' quantizer changes during a run (THEORY §4), as swappable pieces.

A policy is a frozen dataclass with an ``every`` (iterations between updates) and one pure function

``update(quant, v, t, T, start) -> quantizer or None``

called after iteration ``t`` (of ``T``) when ``t % every == 0``, with the current quantizer, the
run's starting quantizer ``start`` (the config's) and
worker 0's latest raw oracle output ``v`` (the statistics every rank can be given: in an MPI run rank 0
computes and broadcasts the new quantizer).  ``None`` keeps the quantizer.  The built-in policies:

- :class:`Reoptimize` — optimal levels for the current level counts, every ``every`` iterations;
- :class:`LGreCo` — per-layer level counts by the L-GreCo knapsack DP (Markov et al. 2024): the fewest
  expected bits subject to a total quantization error at most ``alpha`` times the starting quantizer's,
  both exact at ``v``;
- :class:`DQSchedule` — levels across time (DQ-SGD, Yan et al.; THEORY §4):
  ``s_t = ⌈c·‖v‖·ρ^{(T−1−t)/2}⌉`` clipped to ``[s_min, s_max]``;
- :class:`FindTypes` — the layer → type map and per-type levels chosen from the layers' statistics
  (:func:`qodasim.optimize.auto_types`).

``policy_from`` reads the dict form (``{"policy": "lgreco", "every": 100, ...}``) that results save and
TOML run files use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np

from ..coding import expected_bits
from ..levels import Levels
from ..optimize import auto_types, lgreco, normalized_magnitudes, optimize_layerwise, optimize_levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer, vector_norm
from ..validate import check_int, check_real

__all__ = ["FindTypes", "DQSchedule", "LGreCo", "LevelPolicy", "Reoptimize", "policy_from", "policy_to_dict"]


def _every(value) -> int:
    check_int(value, "policy every", 1)
    return int(value)


def _layers(quant, v: np.ndarray) -> list[np.ndarray]:
    lay = quant.layout
    return [v[lay.layer_slice(l)] for l in range(lay.n_layers)]


@dataclass(frozen=True)
class Reoptimize:
    """Optimal levels for worker 0's latest output, keeping each type's number of levels.

    Global quantizer: :func:`~qodasim.optimize.optimize_levels` on the normalized magnitudes.
    Layer-wise: :func:`~qodasim.optimize.optimize_layerwise` (types keep their map; all types must
    share one level count, else the levels are kept).
    """

    every: int = 100
    method: str = "histogram"

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", _every(self.every))

    def update(self, quant, v: np.ndarray, t: int, T: int, start=None):
        """Optimal levels at ``v`` for the current level counts (``None`` for a zero ``v`` or, layer-wise,
        types with different level counts or an all-zero layer)."""
        if quant is None or not np.any(v):
            return None
        if isinstance(quant, Quantizer):
            lv = optimize_levels(normalized_magnitudes(v, quant.q), quant.levels.alpha, self.method).levels
            return replace(quant, levels=lv)
        alphas = {lv.alpha for lv in quant.levels}
        layers = _layers(quant, v)
        if len(alphas) != 1 or any(not np.any(x) for x in layers):
            return None
        res = optimize_layerwise(layers, quant.layout.types, alphas.pop(), self.method, q=quant.q, scope=quant.scope)
        return replace(quant, levels=res.levels)


@dataclass(frozen=True)
class LGreCo:
    """Per-layer level counts by the L-GreCo knapsack DP, re-solved every ``every`` iterations.

    At worker 0's output ``v``, for each layer ``l`` and each option (the layer's starting levels, or
    uniform levels with ``s`` intervals for ``s`` in ``options``): the exact expected payload bits of
    the layer (``protocol``, ``code``) and its exact quantization variance ``E‖Q(v_l) − v_l‖²`` (one
    norm per layer).  :func:`~qodasim.optimize.lgreco` picks one option per layer minimizing the total
    bits subject to ``Σ_l error_l ≤ alpha · Σ_l error_l(start)``.  Layers that chose the same option
    share a type (one level table).  Needs a layer-wise quantizer with ``scope="layer"``.

    With ``bits_per_coord`` the roles swap (a bit budget): the DP minimizes the total error subject to
    ``Σ_l bits_l + 32·L ≤ bits_per_coord · d`` (payload plus the ``L`` float32 norms, as
    :func:`~qodasim.experiments.budget.bits_per_coordinate` counts them); ``alpha`` is then unused.

    The starting quantizer (the config's) is the reference at every re-solve, so errors never drift
    upward across re-solves.
    """

    every: int = 100
    alpha: float = 1.0
    options: tuple = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
    protocol: str = "dense"
    code: str = "gamma"
    buckets: int = 1000
    bits_per_coord: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", _every(self.every))
        if self.bits_per_coord is not None:
            b = self.bits_per_coord
            check_real(b, "lgreco bits_per_coord", 0.0, lo_open=True, what="a positive number")
        if not (isinstance(self.alpha, (int, float, np.floating)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"lgreco alpha must be a positive number, got {self.alpha!r}")
        opts = tuple(int(s) for s in self.options)
        if not opts or any(s < 1 or s > 65535 for s in opts):
            raise ValueError(f"lgreco options must be level counts s in [1, 65535], got {self.options!r}")
        object.__setattr__(self, "options", tuple(sorted(set(opts))))

    def table(self, quant: LayerwiseQuantizer, v: np.ndarray, start: LayerwiseQuantizer | None = None):
        """``(bits, errors, candidates)``: per layer, each option's exact expected payload bits and exact
        variance at ``v``, and the option levels (index 0: the starting type's levels)."""
        start = quant if start is None else start
        bits, errors, cands = [], [], []
        for l, x in enumerate(_layers(start, v)):
            own = start.levels[int(start.layout.types[l])]
            lvs = [own] + [Levels.uniform(s) for s in self.options]
            b, e = [], []
            for lv in lvs:
                qz = Quantizer(lv, q=start.q, engine=start.engine)
                b.append(expected_bits(x, qz, self.protocol, self.code)["payload"] if np.any(x) else 0.0)
                e.append(qz.exact_variance(x) if np.any(x) else 0.0)
            bits.append(b)
            errors.append(e)
            cands.append(lvs)
        return bits, errors, cands

    def choose(self, quant: LayerwiseQuantizer, v: np.ndarray, start: LayerwiseQuantizer | None = None):
        """The quantizer the DP picks at ``v`` (layers choosing the same levels share a type)."""
        bits, errors, cands = self.table(quant, v, start)
        default = np.zeros(len(bits), np.int64)
        if self.bits_per_coord is None:
            pick = lgreco(bits, errors, default, self.alpha, self.buckets)
        else:  # a bit budget: the same DP with the roles of bits and error swapped
            payload = float(self.bits_per_coord) * v.size - 32.0 * len(bits)
            own = sum(b[0] for b in bits)
            if payload <= 0 or own <= 0:
                raise ValueError(f"lgreco bits_per_coord {self.bits_per_coord:g} leaves no payload bits")
            pick = lgreco(errors, bits, default, payload / own, self.buckets)
        chosen = [cands[l][int(o)] for l, o in enumerate(pick)]
        keys, types = {}, []
        for lv in chosen:
            types.append(keys.setdefault(tuple(lv.values.tolist()), len(keys)))
        levels = [None] * len(keys)
        for lv, m in zip(chosen, types):
            levels[m] = lv
        src = quant.layout
        layout = LayerLayout(src.sizes, types, names=src.names, shapes=src.shapes)
        return LayerwiseQuantizer(layout, tuple(levels), scope="layer", q=quant.q, engine=quant.engine)

    def update(self, quant, v: np.ndarray, t: int, T: int, start=None):
        """The quantizer :meth:`choose` picks at ``v`` against ``start`` (``None`` for a zero or
        non-finite ``v``)."""
        if not isinstance(quant, LayerwiseQuantizer) or quant.scope != "layer":
            raise ValueError("policy lgreco needs layer-wise compression with scope 'layer'")
        if not np.all(np.isfinite(v)) or not np.any(v):
            return None
        return self.choose(quant, v, start)


@dataclass(frozen=True)
class DQSchedule:
    """Uniform levels across time (DQ-SGD, Yan et al.; the schedule of THEORY §4 **[ours]**):
    ``s_{t+1} = clip(⌈c·‖v_t‖₂·ρ^{(T−1−t)/2}⌉, s_min, s_max)``, every type the same ``s`` (``‖v‖₂`` by
    :func:`~qodasim.quantize.vector_norm`, so the schedule does not depend on the CPU).

    ``ρ = 1 − μη`` is the contraction of the method (``ρ = 1``: ``s ∝ ‖v‖``); ``c`` sets the overall
    precision (the budget's multiplier).  Minimizing ``Σ_t bits_t`` subject to
    ``Σ_t ρ^{T−1−t} ε(s_t) ‖g_t‖² ≤ budget`` with ``ε(s) ≈ d/(4s²)`` gives this form
    (:func:`~qodasim.optimize.dq_sgd_schedule` solves it offline).
    """

    c: float = 1.0
    rho: float = 1.0
    every: int = 1
    s_min: int = 1
    s_max: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", _every(self.every))
        if not (math.isfinite(float(self.c)) and float(self.c) > 0):
            raise ValueError(f"dq c must be a positive number, got {self.c!r}")
        if not (0 < float(self.rho) <= 1):
            raise ValueError(f"dq rho must lie in (0, 1], got {self.rho!r}")
        if not (1 <= int(self.s_min) <= int(self.s_max) <= 65535):
            raise ValueError(f"dq needs 1 <= s_min <= s_max <= 65535, got {self.s_min!r}, {self.s_max!r}")

    def levels_at(self, norm: float, t: int, T: int) -> int:
        """``s`` for the next iterations after iteration ``t`` with gradient norm ``norm``."""
        x = float(self.c) * norm * float(self.rho) ** (max(T - 1 - t, 0) / 2.0)
        if not math.isfinite(x):
            return int(self.s_max)
        return int(min(max(math.ceil(x), int(self.s_min)), int(self.s_max)))

    def update(self, quant, v: np.ndarray, t: int, T: int, start=None):
        """Uniform levels with :meth:`levels_at` ``(‖v‖₂, t, T)`` intervals for every type (``None`` when
        they equal the current ones or ``v`` is not finite)."""
        if quant is None or not np.all(np.isfinite(v)):
            return None
        s = self.levels_at(float(vector_norm(v)), t, T)  # fixed-order norm: the same s on every CPU
        lv = Levels.uniform(s)
        if isinstance(quant, Quantizer):
            return None if quant.levels == lv else replace(quant, levels=lv)
        if all(x == lv for x in quant.levels):
            return None
        return replace(quant, levels=(lv,) * quant.layout.n_types)


@dataclass(frozen=True)
class FindTypes:
    """Layer types chosen from the layers' statistics (:func:`~qodasim.optimize.auto_types`): at the
    first update the layers of worker 0's output are clustered (``max_types``, ``alpha`` interior
    levels per type, ``method``); the quantizer takes the found types and their optimal levels.  Later
    updates re-optimize the levels of the found types (and re-cluster with ``retype``)."""

    every: int = 100
    max_types: int = 6
    alpha: int = 3
    method: str = "histogram"
    retype: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "every", _every(self.every))
        if int(self.max_types) < 1 or int(self.alpha) < 1:
            raise ValueError("findtypes max_types and alpha must be >= 1")

    def update(self, quant, v: np.ndarray, t: int, T: int, start=None):
        """At the first update: the types :func:`~qodasim.optimize.auto_types` finds in ``v``'s layers and
        their optimal levels; later: re-optimized levels of those types (re-clustered with ``retype``)."""
        if not isinstance(quant, LayerwiseQuantizer):
            raise ValueError("policy findtypes needs layer-wise compression")
        layers = _layers(quant, v)
        if not np.all(np.isfinite(v)) or any(not np.any(x) for x in layers):
            return None
        if t > self.every and not self.retype:  # the types were chosen at the first update
            return Reoptimize(self.every, self.method).update(quant, v, t, T, start)
        found = auto_types(layers, int(self.max_types), int(self.alpha), quant.q, self.method, every=self.every)
        src = quant.layout
        layout = LayerLayout(src.sizes, found.types, names=src.names, shapes=src.shapes)
        res = optimize_layerwise(layers, found.types, int(self.alpha), self.method, q=quant.q, scope=quant.scope)
        return LayerwiseQuantizer(layout, res.levels, scope=quant.scope, q=quant.q, engine=quant.engine)


@runtime_checkable
class LevelPolicy(Protocol):
    """What the solver calls on a level policy; conformance:
    :func:`qodasim.solvers.check.check_level_policy`.

    ``every`` (an integer ``≥ 1``): iterations between updates; ``update(quant, v, t, T, start)`` is
    called after iteration ``t`` of ``T`` when ``t % every == 0`` with the current quantizer, worker
    0's latest raw oracle output ``v`` and the run's first quantizer, and returns the new quantizer (of
    the same dimension) or ``None`` to keep the current one.
    """

    every: int

    def update(self, quant, v: np.ndarray, t: int, T: int, start=None):
        """The new quantizer, or ``None``."""


#: Each policy's name in a run file or a saved config (``{"policy": name, ...fields}``).
_NAMES = {"reoptimize": Reoptimize, "lgreco": LGreCo, "dq": DQSchedule, "findtypes": FindTypes}
#: Old names still read (for one release): FindTypes was registered as "autotypes".
_OLD_NAMES = {"autotypes": "findtypes"}


def policy_from(policy):
    """A policy object from ``None``, a policy, or its dict ``{"policy": name, ...fields}``."""
    if policy is None or isinstance(policy, LevelPolicy):
        return policy
    if isinstance(policy, dict):
        fields = dict(policy)
        name = fields.pop("policy", None)
        cls = _NAMES.get(_OLD_NAMES.get(name, name))
        if cls is None:
            raise ValueError(f"policy must be one of {tuple(_NAMES)}, got {name!r}")
        if "options" in fields:
            fields["options"] = tuple(fields["options"])
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"policy {name}: {exc}") from None
    raise ValueError(f"policy must be None, a level policy or a dict, got {type(policy).__name__}")


def policy_to_dict(policy) -> dict | None:
    """Plain data for saving (``policy_from`` reads it back for the built-in policies)."""
    if policy is None:
        return None
    own = f"{type(policy).__module__}.{type(policy).__name__}"
    name = next((n for n, c in _NAMES.items() if type(policy) is c), own)
    out = asdict(policy) if hasattr(policy, "__dataclass_fields__") else {"every": policy.every}
    if "options" in out:
        out["options"] = list(out["options"])
    return {"policy": name, **out}
