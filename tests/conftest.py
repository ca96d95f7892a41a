"""Shared fixtures: the quantizer matrix (data in ``cases.py``), every engine, a short solver run."""

from __future__ import annotations

import pytest
from cases import QUANTIZERS


@pytest.fixture(params=sorted(QUANTIZERS))
def quantizer(request):
    return QUANTIZERS[request.param]


def _engines() -> list[str]:
    from qodasim.quantize.engine import cuda_available

    return ["numba", "numpy"] + (["cuda"] if cuda_available() else [])


@pytest.fixture(params=_engines())
def engine(request) -> str:
    """Every quantization engine this machine runs (the CUDA one with a GPU or the simulator)."""
    return request.param


@pytest.fixture
def run_solver():
    """``run_solver(problem=None, **fields)`` is ``solve(problem, SolverConfig(**fields))`` (a bilinear game
    of dimension 8 when no problem is given): the one place the tests start a solver run."""
    from qodasim.solvers import SolverConfig, solve
    from qodasim.vi import bilinear_game

    def run(problem=None, **fields):
        return solve(bilinear_game(4) if problem is None else problem, SolverConfig(**fields))

    return run
