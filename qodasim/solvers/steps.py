"""Step rules for the solver template (THEORY §6), as small swappable objects (optax style).

A rule is a frozen dataclass with three pure functions over an explicit state (one running sum per
replica):

- ``init(replicas) -> state``
- ``steps(state) -> (γ, η)``: the extrapolation step ``γ_t`` and the update step ``η_t`` (arrays, one
  per replica);
- ``update(state, delta) -> state``: add the iteration's difference ``δ_t``.

The method decides ``δ_t``: the difference between the two vectors its iteration used,
``δ_t = V̂_{t+1/2} − lead_t`` where ``lead_t`` is ``0`` (dual averaging, GDA), the oracle at ``X_t``
(Q-GenX, extra-gradient) or the previous half-step's vector (QODA, Popov) — see
:data:`qodasim.solvers.genx.TEMPLATES`.  ``delta`` has shape ``(R, d)`` (the averaged vectors) or
``(R, K, d)`` (each worker's own vectors: the per-worker variant, summed over workers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..validate import check_real

__all__ = ["AdaptiveStep", "ConstantStep", "StepRule", "step_rule", "step_to_dict"]


def _positive(name: str, value) -> float:
    return check_real(value, name, 0.0, lo_open=True, what="a positive finite number")


def _inv_pow(base: np.ndarray, p: float) -> np.ndarray:
    """``base^{−p}``; ``1/√base`` for ``p = ½`` (correctly rounded square root, not ``pow``)."""
    if p == 0.5:
        return 1.0 / np.sqrt(base)
    return base**-p


@dataclass(frozen=True)
class AdaptiveStep:
    """``η_t = c·(1 + Σ_{s<t} ‖δ_s‖²)^{−p_η}``, ``γ_t = c·(1 + Σ_{s<t} ‖δ_s‖²)^{−p_γ}`` (THEORY §6).

    The Q-GenX / "Sifting through the noise" rule is ``p_η = p_γ = ½``, ``c = 1``.  Learning-rate
    separation (Hsieh, Antonakopoulos, Cevher, Mertikopoulos, NeurIPS 2022, "OptDA+") takes
    ``p_γ < p_η``: the extrapolation step decays more slowly than the update step.  None of the
    parameters needs ``L``, ``σ`` or the noise type.

    Parameters
    ----------
    c : float
        Scale (``> 0``).
    p_eta, p_gamma : float
        Exponents of the update and extrapolation steps (``0 ≤ p ≤ 1``).
    per_worker : bool
        Accumulate ``Σ_k ‖δ_{k,s}‖²`` over the workers' own quantized vectors instead of ``‖δ_s‖²`` of
        their average (each worker can compute its own term; the sum needs one scalar all-reduce).
    """

    c: float = 1.0
    p_eta: float = 0.5
    p_gamma: float = 0.5
    per_worker: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "c", _positive("step c", self.c))
        for name in ("p_eta", "p_gamma"):
            p = getattr(self, name)
            check_real(p, f"step {name}", 0.0, 1.0, what="a number in [0, 1]")
            object.__setattr__(self, name, float(p))
        if not isinstance(self.per_worker, (bool, np.bool_)):
            raise ValueError(f"step per_worker must be True or False, got {self.per_worker!r}")

    def init(self, replicas: int) -> np.ndarray:
        """The running sum ``Σ‖δ_s‖²`` before the first iteration: zeros, one per replica."""
        return np.zeros(int(replicas))

    def steps(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(γ_t, η_t) = c·(1 + Σ_{s<t}‖δ_s‖²)^{−(p_γ, p_η)}`` per replica (THEORY §6)."""
        base = 1.0 + acc
        return self.c * _inv_pow(base, self.p_gamma), self.c * _inv_pow(base, self.p_eta)

    def update(self, acc: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The running sum plus ``‖δ_t‖²`` (summed over workers when ``per_worker``)."""
        sq = delta * delta
        return acc + (np.sum(sq, axis=(1, 2)) if delta.ndim == 3 else np.sum(sq, axis=1))


@dataclass(frozen=True)
class ConstantStep:
    """``γ_t = gamma``, ``η_t = eta`` (default ``eta = gamma``)."""

    gamma: float
    eta: float | None = None
    per_worker: bool = False  # (unused: nothing is accumulated; kept so every rule has the field)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _positive("step", self.gamma))
        object.__setattr__(self, "eta", self.gamma if self.eta is None else _positive("step eta", self.eta))

    def init(self, replicas: int) -> np.ndarray:
        """No state: zeros, one per replica."""
        return np.zeros(int(replicas))

    def steps(self, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(γ, η)`` for every replica."""
        return np.full(acc.shape, self.gamma), np.full(acc.shape, self.eta)

    def update(self, acc: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The state unchanged (constant steps accumulate nothing)."""
        return acc


@runtime_checkable
class StepRule(Protocol):
    """What the solver calls on a step rule (THEORY §6); conformance: :func:`qodasim.solvers.check.check_step_rule`.

    A rule may also have ``per_worker`` (``bool``, default ``False``): ``update`` then receives each
    worker's own differences ``(R, K, d)`` instead of their average ``(R, d)``.
    """

    def init(self, replicas: int):
        """The state before the first iteration, one entry per replica."""

    def steps(self, state) -> tuple[np.ndarray, np.ndarray]:
        """``(γ_t, η_t)``: positive arrays, one entry per replica."""

    def update(self, state, delta: np.ndarray):
        """The state after an iteration with differences ``delta`` (``(R, d)`` or ``(R, K, d)``)."""


def step_rule(step) -> StepRule:
    """The rule for a :class:`~qodasim.solvers.SolverConfig` ``step``: ``"adaptive"`` (the default
    rule), a positive number (constant), a rule object, or a dict ``{"rule": "adaptive" | "constant",
    ...fields}`` (as saved in results and written in TOML configs)."""
    if isinstance(step, (AdaptiveStep, ConstantStep)):
        return step
    if isinstance(step, StepRule):
        return step  # a user-defined rule with the same three methods (docs: extending)
    if isinstance(step, str):
        if step == "adaptive":
            return AdaptiveStep()
        raise ValueError(f"step must be 'adaptive', a positive number, a step rule or a dict, got {step!r}")
    if isinstance(step, dict):
        fields = dict(step)
        kind = fields.pop("rule", "adaptive")
        cls = {"adaptive": AdaptiveStep, "constant": ConstantStep}.get(kind)
        if cls is None:
            raise ValueError(f"step rule must be 'adaptive' or 'constant', got {kind!r}")
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"step: {exc}") from None
    if isinstance(step, bool):
        raise ValueError(f"step must be 'adaptive' or a positive number, got {step!r}")
    return ConstantStep(_positive("step", step))


def step_to_dict(rule: StepRule) -> dict:
    """Plain data for saving (``step_rule`` reads it back for the built-in rules).

    A user-defined rule is saved as ``{"rule": "module.Class", ...}`` (its dataclass fields, if any):
    readable, though ``step_rule`` cannot rebuild it from the name.
    """
    if isinstance(rule, (AdaptiveStep, ConstantStep)):
        return {"rule": "adaptive" if isinstance(rule, AdaptiveStep) else "constant", **asdict(rule)}
    fields = asdict(rule) if is_dataclass(rule) else {}
    return {"rule": f"{type(rule).__module__}.{type(rule).__qualname__}", **fields}
