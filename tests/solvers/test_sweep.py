"""Run files and sweeps: round trips, named errors, lazy expansion."""

from __future__ import annotations

import pytest

from qodasim.solvers import solve
from qodasim.solvers.runspec import load_run, run_key
from qodasim.solvers.sweep import expand_sweep
from qodasim.vi import NoiseModel


def test_run_file_round_trip(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[problem]\nname = "layered_problem"\nsizes = [4, 6]\nscales = [1.0, 0.1]\ntypes = [0, 1]\n'
                    '[solver]\nmethod = "qgenx"\nK = 2\nT = 15\ncompression = "layerwise"\n'
                    'levels = ["uniform:3", "uniform:5"]\nnoise = { kind = "mixed", sigma = 0.1, sigma_rel = 0.2 }\n'
                    'step = { rule = "adaptive", p_gamma = 0.4 }\n')  # fmt: skip
    run = load_run(path)
    cfg = run.make_config()
    assert cfg.levels == ("uniform:3", "uniform:5") and cfg.noise == NoiseModel("mixed", 0.1, 0.2)
    assert cfg.step_rule.p_gamma == 0.4
    assert run.make_problem().layout.n_types == 2
    assert solve(run.make_problem(), cfg).status == "ok"
    assert run_key(run) == run_key(load_run(path)) and len(run_key(run)) == 16


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"solver": {}}, "needs a name"),
        ({"problem": {"name": "resnet"}}, "unknown problem"),
        ({"problem": {"name": "bilinear_game", "n": 3, "depth": 2}}, "depth"),
        ({"problem": {"name": "bilinear_game", "n": 3}, "solver": {"lr": 0.1}}, "lr"),
        ({"problem": {"name": "bilinear_game", "n": 3}, "solver": {"noise": "gaussian"}}, "noise"),
        ({"problem": {"name": "bilinear_game", "n": 3}, "solver": {"method": "adam"}}, "method"),
        ({"problem": {"name": "bilinear_game", "n": 3}, "extra": {}}, "unknown tables"),
        ({"problem": {"name": "bilinear_game"}}, "n"),
    ],
)
def test_bad_run_files_name_the_key(spec, match):
    with pytest.raises(ValueError, match=match):
        load_run(spec)


def test_sweep_expansion_and_errors():
    base = {"problem": {"name": "bilinear_game", "n": 3}, "solver": {"T": 10}}
    pts = expand_sweep({**base, "sweep": {"problem.n": [2, 3], "solver.K": [1, 2, 4]}})
    assert len(pts) == 6 and len({p["key"] for p in pts}) == 6
    assert pts[-1]["spec"]["problem"]["n"] == 3 and pts[-1]["spec"]["solver"]["K"] == 4
    bad = [({"solver.seed": []}, "non-empty"), ({"seed": [1, 2]}, "problem.<arg>"),
           ({"solver.seed": [1, 1]}, "repeats"), ({"solver.method": ["qoda", "sgd"]}, "method")]  # fmt: skip
    for sweep, match in bad:
        with pytest.raises(ValueError, match=match):
            expand_sweep({**base, "sweep": sweep})


def test_a_large_sweep_says_its_size_before_expanding_it(tmp_path):
    """90,000 points: the count comes from the lists' lengths at once, and ``run_sweep`` reports it
    before it expands a single point or starts a pool."""
    import time

    from qodasim.solvers.sweep import iter_sweep, run_sweep, sweep_size

    big = {"problem": {"name": "bilinear_game", "n": 3}, "solver": {"T": 10},
           "sweep": {"solver.seed": list(range(300)), "problem.seed": list(range(300))}}  # fmt: skip
    t0 = time.perf_counter()
    assert sweep_size(big) == 90_000
    first = next(iter_sweep(big))
    assert time.perf_counter() - t0 < 2 and first["values"] == {"solver.seed": 0, "problem.seed": 0}
    said = []

    def report(line):
        said.append(line)
        raise KeyboardInterrupt  # stop at the first line

    with pytest.raises(KeyboardInterrupt):
        run_sweep(big, tmp_path / "out", pool="process", report=report)
    assert said == ["sweep: 90000 points"] and time.perf_counter() - t0 < 3
    with pytest.raises(ValueError, match="problem.<arg>"):
        sweep_size({**big, "sweep": {"seed": [1]}})


def test_sweep_rows_of_a_problem_without_a_gap(tmp_path):
    """A WGAN run records opnorm and energy, no gap: its sweep row says so instead of failing
    (``KeyError: 'gap_avg'`` before)."""
    pytest.importorskip("jax")
    from qodasim.solvers.sweep import run_point

    (tmp_path / "runs").mkdir()
    spec = {"problem": {"name": "wgan", "data": "gaussians8", "hidden": 8},
            "solver": {"T": 6, "K": 2, "noise": {"kind": "finite_sum", "batch": 8}, "record": 3}}  # fmt: skip
    row = run_point(spec, str(tmp_path))
    assert row["status"] == "ok" and row["final_gap"] is None
    assert set(row["final"]) == {f"{m}_{w}" for m in ("opnorm", "energy", "modes") for w in ("avg", "last")}
    assert (tmp_path / "runs" / f"{row['key']}.json").exists()
