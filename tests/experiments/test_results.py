"""Result files: strict JSON written atomically, the results table, result files of the wrong shape shown as failed
rows."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from qodasim.cli import main
from qodasim.experiments import Result, Verdict
from qodasim.experiments.base import atomic_write_text, strict_json


def test_results_json_is_strict_and_atomic(tmp_path, monkeypatch):
    res = Result("x", {"a": float("nan")}, {"v": np.array([1.0, np.inf]), "n": np.int64(3)}, [Verdict("c", True, "d")])
    path = res.save(tmp_path / "x.json")
    raw = path.read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert json.loads(raw, parse_constant=lambda c: pytest.fail(c))["data"] == {"v": [1.0, None], "n": 3}
    assert strict_json({"k": (np.float32(np.nan),)}) == {"k": [None]}
    # a crash in the middle of the write leaves the previous file intact and no temporary file behind
    import os

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, "half")
    monkeypatch.undo()
    assert path.read_text() == raw and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_results_table_keeps_every_experiment(tmp_path, monkeypatch):
    """--only used to rewrite results.md with only its rows; an interrupted run left results.md behind
    the JSON files."""
    from qodasim.experiments import codelength, variance

    def fake(name):
        def run(config, progress=True):
            return Result(name, config, {}, [Verdict("check", True, f"{name} ok")], {"date": "D", "seed": 0})

        return run

    monkeypatch.setattr(variance, "run", fake("variance"))
    monkeypatch.setattr(variance, "plot", lambda r, o: [])
    monkeypatch.setattr(codelength, "run", fake("codelength"))
    monkeypatch.setattr(codelength, "plot", lambda r, o: [])
    out = str(tmp_path)
    assert main(["reproduce", "--quick", "--only", "variance", "--out", out, "--no-progress"]) == 0
    assert main(["reproduce", "--quick", "--only", "codelength", "--out", out, "--no-progress"]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "variance ok" in table and "codelength ok" in table and "| quick |" in table

    def crash(config, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(codelength, "run", crash)  # variance finishes, then the run is interrupted
    assert main(["reproduce", "--quick", "--only", "variance", "codelength", "--out", out, "--no-progress"]) == 130
    table = (tmp_path / "results.md").read_text()
    assert table.count("| PASS |") == 2  # rebuilt after variance: agrees with the two JSON files


def test_result_files_of_the_wrong_shape_are_failed_rows_not_passes_or_hangs(tmp_path):
    """``"passed": "no"`` is not a PASS, a ``meta`` that is not a table, JSON nested 100k deep and a
    FIFO named ``*.json`` each become a failed row naming the file; a good file still loads."""
    import os

    from qodasim.experiments.base import load_results, results_table

    good = Result("variance", {}, {}, [Verdict("unbiased", True, "ok")], {"setting": "quick"})
    good.save(tmp_path / "variance.json")
    raw = json.loads((tmp_path / "variance.json").read_text())
    (tmp_path / "a_no.json").write_text(json.dumps({**raw, "verdicts": [{**raw["verdicts"][0], "passed": "no"}]}))
    (tmp_path / "b_meta.json").write_text(json.dumps({**raw, "meta": [1, 2]}))
    (tmp_path / "c_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(tmp_path / "d_fifo.json")
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hung")))
    signal.alarm(20)
    try:
        results = load_results(tmp_path)
    finally:
        signal.alarm(0)
    by = {r.experiment: r for r in results}
    assert by["variance"].passed and by["variance"].verdicts[0].name == "unbiased"
    for name, why in (("a_no", "passed: true/false"), ("b_meta", "'meta' must be a dict"),
                      ("c_deep", "nested too deeply"), ("d_fifo", "not a regular file")):  # fmt: skip
        assert not by[name].passed and why in by[name].verdicts[0].detail, (name, by[name].verdicts[0].detail)
    table = results_table(results)
    assert table.count("| PASS |") == 1
