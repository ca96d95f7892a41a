from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from qodasim import Levels, bounds
from qodasim.cli import main
from qodasim.experiments import Result, get, load_config
from qodasim.solvers import SolverError


def test_closed_form_bounds_values():
    assert bounds.qsgd_bound(1, 16, transmitted=False) == 4.0 and bounds.qsgd_bound(8, 16, transmitted=False) == 0.25
    assert np.isclose(bounds.natural_dithering_bound(3, 4, transmitted=False), 0.125 + 0.5 * 0.5)
    # simple bound for uniform s=2: κ = (1/2)^2/(4·1/2·1) = 1/8; ℓ_1 = 1/2
    assert np.isclose(bounds.simple_bound(Levels.uniform(2), 4, transmitted=False), 0.125 + min(0.5 * 2, 4 * 0.25 / 4))
    # the transmitted-norm versions carry the factor (1 + 2^-22)^2 (THEORY §1)
    assert bounds.qsgd_bound(1, 16) == 4.0 * (1 + 2.0**-22) ** 2
    with pytest.raises(ValueError, match="d must"):
        bounds.qsgd_bound(2, 0)
    with pytest.raises(TypeError):
        bounds.simple_bound([0, 1], 4)


def test_variance_experiment_verdicts_and_roundtrip(tmp_path):
    mod = get("variance")
    cfg = {"levels": ["uniform:2", "exponential:3:0.5"], "d": [8, 64], "n_draws": 200, "seed": 3}
    res = mod.run(cfg, progress=False)
    assert res.passed, res.verdicts
    path = res.save(tmp_path / "r.json")
    back = Result.load(path)
    assert back.verdicts == res.verdicts and back.data == json.loads(path.read_text())["data"]
    paths = mod.plot(back, tmp_path)
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_config_loading_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = 1\n")
    with pytest.raises(ValueError, match="experiment"):
        load_config(bad)
    name, cfg = load_config("variance", "full")
    assert name == "variance" and cfg["n_draws"] >= 1000


def test_cli_bounds_and_run(tmp_path, capsys):
    assert main(["bounds", "--levels", "uniform:4", "--d", "16", "256"]) == 0
    out = capsys.readouterr().out
    assert "qsgd" in out and "256" in out
    cfg = tmp_path / "v.toml"
    cfg.write_text('experiment = "variance"\nlevels = ["uniform:3"]\nd = [8, 32]\nn_draws = 100\n')
    assert main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "variance.png").exists() and (tmp_path / "results" / "variance.json").exists()
    assert main(["bounds", "--levels", "bogus:3"]) == 2


def test_cli_run_writes_next_to_the_user_not_into_figures(tmp_path, monkeypatch, capsys):
    """``qodasim run my.toml`` writes ``./my/`` in the working directory (never the committed
    ``figures/``), with ordinary file modes; an unknown name lists the packaged configs."""
    import stat

    cfg = tmp_path / "my.toml"
    cfg.write_text('experiment = "variance"\nlevels = ["uniform:3"]\nd = [8, 32]\nn_draws = 100\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    old = os.umask(0o022)
    try:
        assert main(["run", str(cfg), "--no-progress"]) == 0
    finally:
        os.umask(old)
    result = work / "my" / "results" / "variance.json"
    assert result.exists() and (work / "my" / "variance.png").exists() and not (work / "figures").exists()
    assert stat.S_IMODE(result.stat().st_mode) == 0o644
    assert stat.S_IMODE((work / "my" / "results.md").stat().st_mode) == 0o644
    capsys.readouterr()
    assert main(["run", "variancee"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a packaged config" in err and "variance" in err and "wgan" in err


def test_cli_solve_checks_its_input_and_output_first(tmp_path, capsys):
    """Bad levels in a run file are one line (exit 2), and ``--out`` in a folder that cannot be made
    fails before the run; a good run shows its result line."""
    run = tmp_path / "run.toml"
    base = '[problem]\nname = "bilinear_game"\nn = 3\n[solver]\nmethod = "qoda"\nK = 2\nT = 20\n'
    for solver, msg in (('compression = "global"\nlevels = 7\n', "levels must be a level spec"),
                        ('levels = "uniform:2"\n', "compression is 'none'"),
                        ('compression = "global"\nlevels = ["uniform:3", "uniform:4"]\n', "one level spec, got 2"),
                        ('compression = "global"\nlevels = "bogus:3"\n', "levels:")):  # fmt: skip
        run.write_text(base + solver)
        capsys.readouterr()
        assert main(["solve", str(run), "--no-progress"]) == 2, solver
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, err
    run.write_text(base.replace("n = 3", "n = -3"))
    assert main(["solve", str(run)]) == 2
    assert "[problem] bilinear_game(n=-3)" in capsys.readouterr().err
    run.write_text(base + 'compression = "global"\nlevels = "uniform:3"\n')
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["solve", str(run), "--out", str(blocker / "sub" / "x"), "--no-progress"]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["solve", str(run), "--out", str(tmp_path / "runs" / "a"), "--no-progress"]) == 0
    assert "qoda: ok" in capsys.readouterr().out and (tmp_path / "runs" / "a.json").exists()


def test_solver_config_levels_contract():
    from qodasim.solvers import SolverConfig

    with pytest.raises(SolverError, match="compression is 'none'"):
        SolverConfig(levels="uniform:2")
    with pytest.raises(SolverError, match="one level spec"):
        SolverConfig(compression="global", levels=("uniform:3", "uniform:4"))
    with pytest.raises(SolverError, match="levels must be"):
        SolverConfig(compression="layerwise", levels=())
    assert SolverConfig(compression="layerwise", levels=("uniform:3", "uniform:4")).levels == ("uniform:3", "uniform:4")
    assert SolverConfig(compression="global", levels=("uniform:3",)).compression == "global"


def test_cli_solve_and_speedup(tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text('[problem]\nname = "bilinear_game"\nn = 3\n[solver]\nT = 30\nK = 2\ncompression = "global"\n')
    assert main(["solve", str(run), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "qoda: ok" in out and (tmp_path / "r.json").exists()
    assert main(["speedup", "--compute", "1", "--bits-per-coord", "1", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "paper's pattern" in out and "reproduced" in out and (tmp_path / "speedup.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["speedup", "--bandwidth", "0"],
        ["speedup", "--K", "0"],
        ["speedup", "--compute", "-1"],
        ["solve", "/nonexistent/run.toml"],
        ["solve", "RUN", "--timeout", "0"],
        ["sweep", "/nonexistent.toml", "--out", "x"],
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(argv, tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text('[problem]\nname = "bilinear_game"\nn = 3\n')
    argv = [str(run) if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qodasim") and len(err.splitlines()) == 1


@pytest.mark.integration
def test_cli_output_into_a_closed_pipe_is_quiet():
    """``qodasim bounds … | head -1``: the broken pipe is not reported as an error (exit 0)."""
    cmd = f"{sys.executable} -m qodasim bounds --levels uniform:3 --d $(seq 1 3000) | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
