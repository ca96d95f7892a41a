"""One solver run as plain data: a problem and a :class:`SolverConfig` read from a TOML file or a dict.

The format used by ``qodasim solve`` and ``qodasim sweep``::

    [problem]
    name = "bilinear_game"     # a factory of qodasim.vi (see PROBLEMS)
    n = 8                      # its keyword arguments
    seed = 1

    [solver]                   # SolverConfig fields
    method = "qoda"
    K = 4
    T = 1000
    compression = "layerwise"
    levels = "uniform:7"       # or a list, one spec per layer type
    noise = { kind = "absolute", sigma = 1.0 }
    step = { rule = "adaptive", p_gamma = 0.3 }
    seed = 0

Every key is checked: an unknown problem, factory argument or solver field is a ``ValueError`` naming it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, fields
from pathlib import Path

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..vi import NoiseModel, affine_monotone, bilinear_game, covariance_gan, layered_problem
from ..vi import strongly_monotone_quadratic as _quadratic
from ..vi.wgan import WGANProblem
from .genx import SolverConfig

__all__ = ["PROBLEMS", "RunSpec", "load_run", "run_key"]

#: Problem name → factory (keyword arguments come from the ``[problem]`` table).
PROBLEMS = {
    "bilinear_game": bilinear_game,
    "affine_monotone": affine_monotone,
    "strongly_monotone_quadratic": _quadratic,
    "covariance_gan": covariance_gan,
    "layered_problem": layered_problem,
    "wgan": WGANProblem,  # needs the jax extra when built
}
_SOLVER_FIELDS = {f.name for f in fields(SolverConfig)}


@dataclass(frozen=True)
class RunSpec:
    """A checked run description: the ``[problem]`` and ``[solver]`` tables, and what they build.

    ``run["problem"]`` and ``run["solver"]`` read the tables (plain dicts, JSON-able).
    """

    problem: dict
    solver: dict

    def __getitem__(self, table: str) -> dict:
        return {"problem": self.problem, "solver": self.solver}[table]

    def to_dict(self) -> dict:
        """``{"problem": …, "solver": …}`` (copies)."""
        return {"problem": dict(self.problem), "solver": dict(self.solver)}

    def make_problem(self):
        """The problem instance."""
        spec = dict(self.problem)
        name = spec.pop("name")
        return PROBLEMS[name](**spec)

    def make_config(self, **overrides) -> SolverConfig:
        """The :class:`~qodasim.solvers.SolverConfig` (``overrides`` replace fields, e.g. ``K``)."""
        sol = {**self.solver, **overrides}
        if "noise" in sol:
            sol["noise"] = NoiseModel(**sol["noise"])
        if isinstance(sol.get("levels"), list):
            sol["levels"] = tuple(sol["levels"])
        return SolverConfig(**sol)


def _check_problem_table(prob, where: str) -> None:
    """``[problem]``: a known name and only that problem's arguments."""
    if not isinstance(prob, dict) or "name" not in prob:
        raise ValueError(f"{where}: [problem] needs a name (one of {', '.join(PROBLEMS)})")
    if prob["name"] not in PROBLEMS:
        raise ValueError(f"{where}: unknown problem {prob['name']!r}; known: {', '.join(PROBLEMS)}")
    params = inspect.signature(PROBLEMS[prob["name"]]).parameters
    bad = set(prob) - {"name"} - set(params)
    if bad:
        raise ValueError(f"{where}: {prob['name']} takes no argument(s) {sorted(bad)}; it takes {sorted(params)}")


def _check_solver_table(sol, where: str) -> None:
    """``[solver]``: a table of :class:`SolverConfig` fields, ``noise`` a table itself."""
    if not isinstance(sol, dict):
        raise ValueError(f"{where}: [solver] must be a table")
    bad = set(sol) - _SOLVER_FIELDS
    if bad:
        raise ValueError(f"{where}: unknown solver field(s) {sorted(bad)}")
    if "noise" in sol and not isinstance(sol["noise"], dict):
        raise ValueError(f"{where}: solver.noise must be a table such as {{ kind = 'absolute', sigma = 1.0 }}")


def _check(spec: dict, where: str) -> RunSpec:
    if not isinstance(spec, dict):
        raise TypeError(f"{where}: a run must be a mapping with [problem] and [solver] tables")
    unknown = set(spec) - {"problem", "solver", "sweep"}
    if unknown:
        raise ValueError(f"{where}: unknown tables {sorted(unknown)} (expected [problem], [solver])")
    prob, sol = spec.get("problem"), spec.get("solver", {})
    _check_problem_table(prob, where)
    _check_solver_table(sol, where)
    out = RunSpec(problem=dict(prob), solver=dict(sol))
    try:
        out.make_config()
    except TypeError as exc:
        raise ValueError(f"{where}: [solver]: {exc}") from None
    try:
        out.make_problem()
    except (TypeError, ValueError, OverflowError) as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in prob.items() if k != "name")
        raise ValueError(f"{where}: [problem] {prob['name']}({args}): {exc}") from None
    return out


def load_run(source) -> RunSpec:
    """A checked :class:`RunSpec` from a TOML file path or a dict.

    Examples
    --------
    >>> from qodasim.solvers.runspec import load_run
    >>> run = load_run({"problem": {"name": "bilinear_game", "n": 4}, "solver": {"method": "qoda", "T": 10}})
    >>> run.make_config().method, run.make_problem().d
    ('qoda', 8)
    """
    if isinstance(source, dict):
        return _check(source, "run")
    path = Path(source)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return _check(data, str(path))


def run_key(spec: dict) -> str:
    """A short stable name of a run (SHA-256 of its canonical JSON, 16 hex digits)."""
    text = json.dumps({"problem": spec["problem"], "solver": spec["solver"]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
