import json

import numpy as np
import pytest

from qodasim import Levels, bounds
from qodasim.cli import main
from qodasim.experiments import Result, get, load_config


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
