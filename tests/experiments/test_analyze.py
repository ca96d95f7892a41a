"""``qodasim analyze``: exact statistics against Monte Carlo and the encoder, the report, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cases import check_analysis_by_monte_carlo, grads

from qodasim.cli import main
from qodasim.experiments.analyze import analyze
from qodasim.optimize import schemes as S


def test_analyze_matches_monte_carlo_and_the_encoder():
    """Every scheme's exact variance against a Monte Carlo of the quantizer (4 exact standard errors,
    fixed keys), its expected bits against the mean of real encoded streams (4 sample standard errors)."""
    g = grads(1)
    res = analyze(g, bits=[3], types="role", codes=["gamma"])
    assert {r["scheme"] for r in res.rows} == set(S.scheme_names(res.layout))
    check_analysis_by_monte_carlo(res, res.layout.flatten(g, np.float64), 3.0)


def test_analyze_report_and_references(tmp_path):
    snaps = [grads(0), grads(1)]
    res = analyze(snaps, bits=[2, 3], types="conv*=0,*=1", K=4, gbps=1.0, schemes=["qsgd", "qsgd-b512", "layer-opt"])
    assert res.snapshots == ["snapshot0", "snapshot1"] and res.layout.n_types == 2
    fp16 = res.references[0]["fp16"]
    v = res.layout.flatten(snaps[0], np.float64)
    assert fp16["variance"] == pytest.approx(np.sum((v.astype(np.float16) - v) ** 2) / np.dot(v, v))
    bf = res.references[0]["bf16"]["variance"]
    assert 1e-7 < bf < 1e-4 and bf > fp16["variance"]  # 8 mantissa bits against 11
    r = res.best(0, 3.0, "gamma")
    assert r["comm_s"] < res.network["fp32_allreduce_s"]
    paths = res.save(tmp_path)
    assert [p.name for p in paths] == ["analysis.md", "analysis.json", "analysis.png", "analysis.pdf"]
    data = json.loads((tmp_path / "analysis.json").read_text())
    assert len(data["rows"]) == len(res.rows) and data["types"] == res.layout.types.tolist()
    text = (tmp_path / "analysis.md").read_text()
    assert "| qsgd-b512 |" in text and "fp16 (reference)" in text
    with pytest.raises(ValueError, match="same named arrays"):
        analyze([grads(0), {"x": np.ones(3)}])
    with pytest.raises(ValueError, match="non-finite"):
        analyze(dict(grads(0), **{"fc.weight": np.full((10, 64), np.nan)}))
    with pytest.raises(ValueError, match="bits"):
        analyze(grads(0), bits=[0])
    with pytest.raises(ValueError, match="schemes"):
        analyze(grads(0), schemes=["topk"])


def test_cli_analyze(tmp_path, capsys):
    f = tmp_path / "g.npz"
    np.savez(f, **grads())
    assert main(["analyze", str(f), "--bits", "3", "--types", "role", "--codes", "gamma", "--out",
                 str(tmp_path / "rep"), "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "3 bits/coord" in out and (tmp_path / "rep" / "analysis.md").is_file()
    (tmp_path / "bad.npz").write_text("not a zip")
    np.savez(tmp_path / "nan.npz", a=np.array([1.0, np.nan]))
    for args, msg in (([str(tmp_path / "missing.npz")], "is not a file"), ([str(tmp_path / "bad.npz")], "not an .npz"),
                      ([str(tmp_path / "nan.npz")], "non-finite"),
                      ([str(f), "--types", "x*=0"], "no rule matches")):  # fmt: skip
        assert main(["analyze", *args, "--out", str(tmp_path / "rep2"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
