"""The plug-in conformance suites: every built-in step rule, level policy and problem passes each
check (one test id per check), and a broken object of each kind fails the check that concerns it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from qodasim import LayerLayout, Levels, Quantizer
from qodasim.quantize.check import QUANTIZER_CHECKS, check_quantizer
from qodasim.solvers import AdaptiveStep, ConstantStep, DQSchedule, FindTypes, LGreCo, Reoptimize
from qodasim.solvers.check import LEVEL_POLICY_CHECKS, STEP_RULE_CHECKS, check_level_policy, check_step_rule
from qodasim.suite import Check, parametrize_with_checks, run_checks
from qodasim.vi import (
    KellyAuction,
    MatrixGame,
    Problem,
    affine_monotone,
    bilinear_game,
    covariance_gan,
    layered_problem,
    strongly_monotone_quadratic,
)
from qodasim.vi.check import PROBLEM_CHECKS, check_problem

RULES = [AdaptiveStep(), AdaptiveStep(c=0.3, p_gamma=0.4, per_worker=True), ConstantStep(0.1, 0.05)]
POLICIES = [Reoptimize(every=5), LGreCo(every=5), DQSchedule(every=5), FindTypes(every=5)]
PROBLEMS = [bilinear_game(4), affine_monotone(6, mu=0.1), strongly_monotone_quadratic(3), covariance_gan(2),
            layered_problem([3, 4], [1.0, 10.0]), MatrixGame(np.array([[1.0, -2.0], [-1.0, 3.0]])),
            KellyAuction()]  # fmt: skip


@parametrize_with_checks(RULES, STEP_RULE_CHECKS)
def test_built_in_step_rules(obj, check):
    check(obj)


@parametrize_with_checks(POLICIES, LEVEL_POLICY_CHECKS)
def test_built_in_level_policies(obj, check):
    check(obj)


@parametrize_with_checks(PROBLEMS, PROBLEM_CHECKS)
def test_built_in_problems(obj, check):
    check(obj)


def _failing(run, obj) -> set[str]:
    """The names of the checks ``obj`` fails (parsed from the suite's one report)."""
    with pytest.raises(AssertionError) as err:
        run(obj)
    return {line.split(":")[0] for line in str(err.value).splitlines()[1:]}


@dataclass(frozen=True)
class Growing:  # steps grow with the state
    def init(self, replicas):
        return np.zeros(replicas)

    def steps(self, acc):
        return 0.1 * (1 + acc), 0.1 * (1 + acc)

    def update(self, acc, delta):
        return acc + 1.0


@dataclass(frozen=True)
class Mutating(Growing):  # writes its state in place; steps constant
    def steps(self, acc):
        return np.full(acc.shape, 0.1), np.full(acc.shape, 0.1)

    def update(self, acc, delta):
        acc += 1.0
        return acc


@dataclass(frozen=True)
class Negative(Mutating):
    def steps(self, acc):
        return np.full(acc.shape, -0.1), np.full(acc.shape, 0.1)

    def update(self, acc, delta):
        return acc


def test_broken_step_rules_fail_their_checks():
    assert _failing(check_step_rule, Growing()) == {"non_increasing"}
    assert _failing(check_step_rule, Mutating()) == {"pure"}
    assert "steps_positive" in _failing(check_step_rule, Negative())
    assert "interface" in _failing(check_step_rule, object())


@dataclass(frozen=True)
class Shrinks:  # returns a quantizer of another dimension
    every: int = 5

    def update(self, quant, v, t, T, start=None):
        from qodasim import LayerwiseQuantizer

        return LayerwiseQuantizer(LayerLayout([3]), (Levels.uniform(3),))


def test_broken_level_policies_fail_their_checks():
    class NoEvery:
        def update(self, quant, v, t, T, start=None):
            return None

    assert "interface" in _failing(check_level_policy, NoEvery())
    assert "update" in _failing(check_level_policy, Shrinks())
    assert "interface" in _failing(check_level_policy, Shrinks(every=0))


@dataclass(frozen=True, eq=False)
class Expanding(Problem):  # A(x) = −x: not monotone
    d: int = 3
    layout: LayerLayout = field(default_factory=lambda: LayerLayout([3]))
    name: str = "expanding"

    def operator(self, X):
        return -X


@dataclass(frozen=True, eq=False)
class Mixing(Expanding):  # each row depends on the batch; half-projection is not idempotent
    name: str = "mixing"

    def operator(self, X):
        return X + X.sum(axis=0)

    def project(self, X):
        return 0.5 * X


@dataclass(frozen=True, eq=False)
class WrongLayout(Expanding):
    layout: LayerLayout = field(default_factory=lambda: LayerLayout([2]))
    name: str = "wrong-layout"

    def operator(self, X):
        return X


@dataclass(frozen=True, eq=False)
class FloatDimension(WrongLayout):  # d = 3.0 covers the layout but is not an integer
    d: float = 3.0
    layout: LayerLayout = field(default_factory=lambda: LayerLayout([3]))
    name: str = "float-d"

    def x0(self):
        return np.zeros(3)


def test_broken_problems_fail_their_checks():
    assert _failing(check_problem, Expanding()) == {"monotone"}
    assert "interface" in _failing(check_problem, FloatDimension())
    assert {"operator", "project"} <= _failing(check_problem, Mixing())
    assert "interface" in _failing(check_problem, WrongLayout())


def test_a_suite_reports_every_failure_and_check_quantizer_too():
    checks = (Check("a", lambda o: None), Check("b", lambda o: 1 / 0), Check("c", lambda o: [][1]))
    with pytest.raises(AssertionError, match=r"2 of 3 checks failed") as err:
        run_checks("x", checks)
    assert "b: ZeroDivisionError" in str(err.value) and "c: IndexError" in str(err.value)

    class Biased(Quantizer):  # every draw rounds down: biased, and the variance formula no longer holds
        def quantize(self, v, key, layout=None, *, out=None):
            qv = super().quantize(v, key, layout, out=out)
            j, _, _, _ = self.intervals(v)
            qv.indices[:] = j
            qv.signs[j == 0] = 1
            return qv

    names = _failing(lambda q: check_quantizer(q, n=400), Biased(Levels.uniform(3)))
    assert {"unbiased", "variance_matches_exact"} <= names and "output_format" not in names
    assert [c.name for c in QUANTIZER_CHECKS][:2] == ["output_format", "zero_vector"]


def test_the_solver_records_the_gap_the_problem_declares(run_solver):
    """The solver asks the problem for its gap (``Problem.gap_measure``): the exact trust-region gap for
    an affine problem, the duality gap for a matrix game, and whatever a problem of one's own returns."""
    from qodasim.vi import RestrictedGap

    @dataclass(frozen=True, eq=False)
    class Flat(Expanding):
        name: str = "flat"

        def operator(self, X):
            return X

        def gap_measure(self, center, radius):
            return lambda X: np.full(np.atleast_2d(X).shape[0], 42.0)

    res = run_solver(Flat(), K=1, T=8, compression="none")
    assert np.all(res.measures["gap_avg"] == 42.0) and np.all(res.measures["gap_last"] == 42.0)
    game = MatrixGame(np.array([[1.0, -2.0], [-1.0, 3.0]]))
    assert game.gap_measure(game.x0(), 1.0) == game.duality_gap
    assert isinstance(bilinear_game(3).gap_measure(np.zeros(6), 2.0), RestrictedGap)
