"""The CLI's error paths: one line and exit code 2, output folders checked before computing, Ctrl-C quiet."""

from __future__ import annotations

import signal

import pytest

from qodasim.cli import main


def _cfg(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text('experiment = "variance"\n' + text)
    return str(path)


@pytest.mark.parametrize(
    "text, words",
    [
        ('levels = ["uniform:4"]\nd = [16]\n', "missing required key 'n_draws'"),
        ("levels = 5\nd = [16]\nn_draws = 10\n", "levels: must be a non-empty list"),
        ('levels = ["uniform:4"]\nd = [16]\nn_draws = 10\nfoo = 1\n', "unknown key"),
        ('levels = ["uniform:4"]\nd = [16]\nn_draws = 1\n', "n_draws: must be >= 2"),
        ('levels = ["uniform:1000000000"]\nd = [16]\nn_draws = 10\n', "at most"),
        ('levels = ["uniform:4"]\nd = [16]\nn_draws = 10\n[extra]\nx = 1\n', "unknown table"),
        ("levels = [\n", "cannot read"),
    ],
)
def test_cli_config_errors_are_one_line(tmp_path, capsys, text, words):
    assert main(["run", _cfg(tmp_path, text), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_replicas_one_is_rejected(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('experiment = "convergence"\nn = 3\nsigma = 1.0\nsigma_rel = 0.5\nT = 100\nreplicas = 1\nK = 2\n'
                    'K_scaling = [1, 2]\nT_scaling = 50\n')  # fmt: skip
    assert main(["run", str(path), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "replicas" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["bounds", "--levels", "uniform:4", "--d", str(10**30)], "at most 2^53"),
        (["bounds", "--levels", "uniform:1000000000", "--d", "4"], "at most"),
        (["bounds", "--levels", "uniform:4", "--d", "0"], ">= 1"),
        (["reproduce", "--quick", "--only", "nope"], "invalid choice"),
    ],
)
def test_cli_argument_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_output_folder_checked_before_computing(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    from qodasim.experiments import variance

    monkeypatch.setattr(variance, "run", lambda *a, **k: pytest.fail("computed before checking --out"))
    assert main(["reproduce", "--quick", "--only", "variance", "--out", str(afile)]) == 2
    assert "not a writable folder" in capsys.readouterr().err


def test_cli_ctrl_c_is_quiet(tmp_path, capsys, monkeypatch):
    from qodasim.experiments import variance

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(variance, "run", interrupted)
    assert main(["reproduce", "--quick", "--only", "variance", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert signal.SIGINT  # (a real SIGINT raises KeyboardInterrupt in the main thread: the same path)
