"""Conformance checks for the solver's plug-ins: step rules and level policies.

Each suite is a tuple of named :class:`~qodasim.suite.Check` s; :func:`check_step_rule` and
:func:`check_level_policy` run one whole and report every failure, and
:func:`qodasim.suite.parametrize_with_checks` gives pytest one id per check.  The last check of each
runs the object inside a short solve (a bilinear game, ``T = 20``), so what the solver needs of it is
exercised, not only its shape.
"""

from __future__ import annotations

import numpy as np

from ..suite import Check, run_checks
from ..validate import is_int
from .policies import LevelPolicy
from .steps import StepRule, step_rule

__all__ = ["LEVEL_POLICY_CHECKS", "STEP_RULE_CHECKS", "check_level_policy", "check_step_rule"]

_R, _K, _D = 3, 2, 5


def _deltas(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((_R, _D)), rng.standard_normal((_R, _K, _D))


def _rule_interface(rule) -> None:
    assert isinstance(rule, StepRule), "a step rule needs init(replicas), steps(state) and update(state, delta)"
    per_worker = getattr(rule, "per_worker", False)
    assert isinstance(per_worker, (bool, np.bool_)), f"per_worker must be a bool, got {per_worker!r}"
    assert step_rule(rule) is rule, "step_rule() must accept the rule as it is"


def _rule_steps_positive(rule) -> None:
    state = rule.init(_R)
    for _ in range(4):
        gamma, eta = (np.asarray(x, np.float64) for x in rule.steps(state))
        assert gamma.shape == (_R,) and eta.shape == (_R,), f"steps must give one (γ, η) per replica, got {gamma.shape}"
        assert np.all(np.isfinite(gamma) & (gamma > 0)) and np.all(np.isfinite(eta) & (eta > 0)), "steps must be > 0"
        state = rule.update(state, _deltas()[1] if getattr(rule, "per_worker", False) else _deltas()[0])


def _rule_pure(rule) -> None:
    """The same state and delta give the same state; the inputs are not written to."""
    delta = _deltas(1)[1] if getattr(rule, "per_worker", False) else _deltas(1)[0]
    state = rule.init(_R)
    before, d_before = np.copy(state), delta.copy()
    a, b = rule.update(state, delta), rule.update(state, delta)
    assert np.array_equal(np.asarray(state), before) and np.array_equal(delta, d_before), "update wrote its inputs"
    assert np.array_equal(np.asarray(a), np.asarray(b)), "update is not a function of (state, delta)"
    assert all(np.array_equal(x, y) for x, y in zip(rule.steps(a), rule.steps(b))), "steps is not a function of state"


def _rule_non_increasing(rule) -> None:
    """The steps never grow from one iteration to the next (THEORY §6's rules and their proofs)."""
    state = rule.init(_R)
    last = None
    for t in range(6):
        now = np.stack([np.asarray(x, np.float64) for x in rule.steps(state)])
        assert last is None or np.all(now <= last * (1 + 1e-12)), f"a step grew at iteration {t}"
        last = now
        state = rule.update(state, _deltas(t)[1] if getattr(rule, "per_worker", False) else _deltas(t)[0])


def _short_solve(**config):
    from ..vi import NoiseModel, bilinear_game
    from .genx import SolverConfig, solve

    cfg = SolverConfig(method="qoda", K=2, T=20, replicas=2, noise=NoiseModel("absolute", 0.5), **config)
    return solve(bilinear_game(4), cfg)


def _rule_in_a_solve(rule) -> None:
    res = _short_solve(step=rule, compression="global", levels="uniform:3")
    assert res.status == "ok", f"a solve with this rule ended {res.status!r}: {res.message}"
    assert all(np.all(np.isfinite(m)) for m in res.measures.values()), "a solve with this rule gave non-finite measures"


#: The step-rule suite (:class:`~qodasim.solvers.steps.StepRule`).
STEP_RULE_CHECKS = (
    Check("interface", _rule_interface),
    Check("steps_positive", _rule_steps_positive),
    Check("pure", _rule_pure),
    Check("non_increasing", _rule_non_increasing),
    Check("in_a_solve", _rule_in_a_solve),
)


def check_step_rule(rule) -> None:
    """Run :data:`STEP_RULE_CHECKS` on ``rule``; ``AssertionError`` listing every failure."""
    run_checks(rule, STEP_RULE_CHECKS)


def _policy_case():
    from ..levels import Levels
    from ..quantize import LayerLayout, LayerwiseQuantizer

    layout = LayerLayout([40, 40, 24], [0, 1, 0])
    quant = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.uniform(5)))
    v = np.random.default_rng(7).standard_normal(layout.d) * np.repeat([1.0, 10.0, 0.1], layout.sizes)
    return quant, v


def _policy_interface(policy) -> None:
    assert isinstance(policy, LevelPolicy), "a level policy needs every and update(quant, v, t, T, start)"
    every = policy.every
    assert is_int(every) and every >= 1, f"every must be an integer >= 1, got {every!r}"


def _policy_update(policy) -> None:
    """``update`` returns ``None`` or a quantizer of the same dimension, and the same both times."""
    quant, v = _policy_case()
    outs = [policy.update(quant, v, policy.every, 10 * policy.every, quant) for _ in range(2)]
    for out in outs:
        if out is not None:
            assert hasattr(out, "quantize") and hasattr(out, "type_levels"), "update must return a quantizer"
            assert out.plan(v.size).d == v.size, "the new quantizer must take vectors of the same dimension"
    same = (
        outs[0] is None
        and outs[1] is None
        or (outs[0] is not None and outs[1] is not None and outs[0].type_levels == outs[1].type_levels)
    )
    assert same, "update is not a function of its arguments"


def _policy_in_a_solve(policy) -> None:
    res = _short_solve(compression="layerwise", levels="uniform:3", policy=policy)
    assert res.status == "ok", f"a solve with this policy ended {res.status!r}: {res.message}"


#: The level-policy suite (:class:`~qodasim.solvers.policies.LevelPolicy`).
LEVEL_POLICY_CHECKS = (
    Check("interface", _policy_interface),
    Check("update", _policy_update),
    Check("in_a_solve", _policy_in_a_solve),
)


def check_level_policy(policy) -> None:
    """Run :data:`LEVEL_POLICY_CHECKS` on ``policy``; ``AssertionError`` listing every failure."""
    run_checks(policy, LEVEL_POLICY_CHECKS)
