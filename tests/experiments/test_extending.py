"""The examples of docs/extending.md work: a user-defined problem and step rule plug into the solver."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from qodasim import LayerLayout
from qodasim.solvers import SolverConfig, solve
from qodasim.vi import NoiseModel, Problem


@dataclass(frozen=True, eq=False)
class Rotation(Problem):
    d: int = 2
    layout: LayerLayout = field(default_factory=lambda: LayerLayout([2]))
    name: str = "rotation"

    def operator(self, X):
        return np.stack([X[:, 1], -X[:, 0]], axis=1)

    def x0(self):
        return np.array([1.0, 0.5])

    @property
    def solution(self):
        return np.zeros(2)


@dataclass(frozen=True)
class InverseSqrt:
    c: float = 1.0

    def init(self, replicas):
        return np.zeros(replicas)

    def steps(self, t):
        g = self.c / np.sqrt(1.0 + t)
        return g, g

    def update(self, t, delta):
        return t + 1.0


def test_a_user_problem_and_step_rule_run_and_are_recorded(run_solver):
    cfg = SolverConfig(method="qoda", T=400, K=2, compression="global", levels="uniform:8",
                       noise=NoiseModel("none"), step=InverseSqrt(0.5), seed=3)  # fmt: skip
    res = solve(Rotation(), cfg)
    assert res.status == "ok"
    dist = res.measures["dist_avg"][0]
    assert dist[-1] < 0.2 * dist[0]  # the ergodic average approaches x* = 0
    assert res.config["step"] == {"rule": f"{__name__}.InverseSqrt", "c": 0.5}
    other = run_solver(Rotation(), **{**cfg.__dict__, "step": 0.5})
    assert not np.array_equal(other.x_avg, res.x_avg)  # the rule is really used


def test_an_object_without_the_three_methods_is_refused():
    with pytest.raises(ValueError, match="step"):
        SolverConfig(method="qoda", T=10, step=object())
