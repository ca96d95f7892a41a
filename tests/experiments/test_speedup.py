"""The speedup experiment: its verdicts green on the small setting and red under model bugs, the codec's measurement."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.netlab import model as network
from qodasim.netlab.model import (
    Workload,
)
from qodasim.solvers import sra


@pytest.fixture(scope="module")
def small_speedup_config():
    """The quick speedup config made small (T = 20, 40 SRA draws, d_model = 4·10^4, a fixed codec)."""
    from qodasim.experiments import load_config

    _, config = load_config("speedup", "quick")
    return dict(config, T=20, sra_draws=40, d_model=40_000, cpu_encode_ns=1.0, cpu_decode_ns=2.0, cpu_reduce_ns=0.5)


def _mutant_allreduce_times_K(monkeypatch):
    real = network.allreduce_time
    monkeypatch.setattr(network, "allreduce_time", lambda d, K, net, b=32: K * real(d, K, net, b))


def _mutant_allgather_without_K_minus_1(monkeypatch):
    monkeypatch.setattr(network, "allgather_time", lambda bits, net: net.latency + float(np.max(bits)) / net.bandwidth)


def _mutant_allgather_counted_twice(monkeypatch):
    real = network.collective_time

    def twice(collective, K, work, net):
        return (2 if collective == "allgather" else 1) * real(collective, K, work, net)

    monkeypatch.setattr(network, "collective_time", twice)


def _mutant_sra_codec_without_requantization(monkeypatch):
    real = network.Workload.codec_at

    def no_reencode(self, K, collective="allgather"):  # SRA's re-quantized chunk never encoded
        if collective == "sra":
            return self.d * (self.encode_per_coord + 2 * (K - 1) / K * self.decode_per_coord)
        return real(self, K, collective)

    monkeypatch.setattr(network.Workload, "codec_at", no_reencode)


def _mutant_sra_time_without_requantized_chunks(monkeypatch):
    real = network.sra_time
    monkeypatch.setattr(network, "sra_time", lambda c, r, net: real(c, np.zeros(len(r)), net))


def _mutant_sra_aggregate_without_requantization(monkeypatch):
    from qodasim.experiments import speedup as sp

    real = sp.sra_aggregate

    def skip(V, quant, seed, round=0):
        r = real(V, quant, seed, round)
        return sra.SRAResult(r.mean, r.mean, r.stage1, r.stage2, r.bounds)

    monkeypatch.setattr(sp, "sra_aggregate", skip)


@pytest.mark.parametrize(
    ("mutant", "red"),
    [
        (_mutant_allreduce_times_K, "collective_formulas"),
        (_mutant_allgather_without_K_minus_1, "collective_formulas"),
        (_mutant_allgather_counted_twice, "collective_formulas"),
        (_mutant_sra_codec_without_requantization, "collective_formulas"),
        (_mutant_sra_time_without_requantized_chunks, "collective_formulas"),
        (_mutant_sra_aggregate_without_requantization, "sra_variance"),
    ],
)
def test_speedup_verdicts_go_red_under_model_bugs(monkeypatch, mutant, red, small_speedup_config):
    """Each plausible bug of the model or of SRA turns its verdict red (the unmutated run of the same
    setting is green: the next test)."""
    from qodasim.experiments import speedup

    mutant(monkeypatch)
    result = speedup.run(small_speedup_config, progress=False)
    assert red in {v.name for v in result.verdicts if not v.passed}


def test_the_small_speedup_setting_is_green(small_speedup_config):
    from qodasim.experiments import speedup

    assert all(v.passed for v in speedup.run(small_speedup_config, progress=False).verdicts)


def test_speedup_experiment_states_its_codec_and_sizes():
    from qodasim.experiments import load_config, speedup

    _, config = load_config("speedup", "quick")
    result = speedup.run(dict(config, T=20, sra_draws=30, d_model=40_000), progress=False)
    codec, ms = result.data["codec"], result.data["model_size"]
    assert codec["source"] == "measured on this machine" and codec["encode"] > 0 and codec["decode"] > 0
    assert ms["d"] == 40_000 and ms["var_sra"] > ms["var_allgather"] > 0
    detail = {v.name: v.detail for v in result.verdicts}["paper_pattern"]
    assert "measured on this machine" in detail and "d = 4e+04" in detail
    fixed = speedup.run(dict(config, T=20, sra_draws=30, d_model=40_000, cpu_encode_ns=3.0, cpu_decode_ns=5.0),
                        progress=False)  # fmt: skip
    assert fixed.data["codec"] == {
        "encode": pytest.approx(3e-9),
        "decode": pytest.approx(5e-9),
        "reduce": 0.0,
        "source": "config",
    }


def test_a_noisy_codec_measurement_warns(monkeypatch):
    from qodasim.experiments import speedup

    noisy = {"encode": 1e-9, "decode": 2e-9, "reduce": 1e-10, "spread": 1.5, "noisy": True}
    monkeypatch.setattr(speedup, "measure_codec", lambda: dict(noisy))
    with pytest.warns(UserWarning, match="noisy"):
        codec = speedup._codec({"cpu_encode_ns": None, "cpu_decode_ns": None, "cpu_reduce_ns": None})
    assert codec["source"] == "measured on this machine"
    quiet = dict(noisy, spread=0.1, noisy=False)
    monkeypatch.setattr(speedup, "measure_codec", lambda: dict(quiet))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        speedup._codec({"cpu_encode_ns": None, "cpu_decode_ns": None, "cpu_reduce_ns": None})


def test_measure_codec_reports_its_spread():
    from qodasim.experiments.speedup import NOISY, measure_codec

    c = measure_codec(d=2**14, repeats=3)
    assert 0 < c["encode"] <= c["encode_median"] and 0 < c["decode"] <= c["decode_median"] and c["reduce"] > 0
    assert c["spread"] >= 0 and c["noisy"] == (c["spread"] > NOISY)


def test_the_gpu_codec_is_timed_only_on_a_gpu(monkeypatch):
    """``codec_gpu``: measured with the GPU engine where numba-cuda finds a device, else why not (the
    CUDA simulator is not timed); ``measure_codec`` takes the engine and says which it timed."""
    from qodasim.experiments import speedup
    from qodasim.quantize import core

    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr(core, "cuda_available", lambda: False)
    assert "no GPU" in speedup._gpu_codec()["unavailable"]
    monkeypatch.setattr(core, "cuda_available", lambda: True)
    seen = {}
    monkeypatch.setattr(speedup, "measure_codec", lambda **kw: seen.update(kw) or {"encode": 1e-9})
    assert speedup._gpu_codec()["source"].endswith("GPU engine") and seen == {"engine": "cuda"}
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert "simulator" in speedup._gpu_codec()["unavailable"]
    monkeypatch.undo()
    assert speedup.measure_codec(d=2**12, repeats=1)["engine"] == "numba"


@pytest.mark.cudasim
def test_measure_codec_runs_on_the_cuda_engine():
    from qodasim.experiments.speedup import measure_codec
    from qodasim.quantize.core import cuda_available

    if not cuda_available():
        pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1")
    c = measure_codec(d=2**10, repeats=1, engine="cuda")
    assert c["engine"] == "cuda" and c["encode"] > 0 and c["decode"] > 0


def test_pattern_region_is_where_the_speedup_table_shows_the_pattern():
    from qodasim.experiments.speedup import pattern, pattern_region, speedup_table

    Ks, bws = [4, 8, 12, 16], [1.0, 2.5, 5.0]
    region = pattern_region(Ks, bws, 5e-5, 4_000_000)
    grid = np.array(region["holds"]["strong"])
    assert grid.any() and not grid.all()
    for i in (0, 8, 16):
        for j in (0, 3, 7):
            work = Workload(4_000_000, region["compute"][i], "strong", region["bits_per_coord"][j])
            assert pattern(speedup_table(work, Ks, bws, 5e-5), Ks, bws)[0] == grid[i, j]


def test_the_lab_part_of_the_speedup_experiment_says_why_it_is_missing(monkeypatch):
    from qodasim import netlab
    from qodasim.experiments import speedup

    assert speedup._lab({"lab_Ks": None}) is None
    monkeypatch.setattr(netlab, "unavailable", lambda: "network namespaces need root")
    assert speedup._lab({"lab_Ks": [2], "lab_rate": 1.0}) == {"unavailable": "network namespaces need root"}
