"""Issue 14 — the network-time model (THEORY §8), run files, sweeps' expansion, and the CLI around them
(no MPI needed: tests/integration/test_mpi.py has the real ranks)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qodasim.cli import main
from qodasim.coding import BitLedger
from qodasim.netlab import model as network
from qodasim.netlab.model import (
    GBPS,
    Network,
    Workload,
    allgather_time,
    allreduce_time,
    iteration_time,
    run_time,
    speedup,
    sra_time,
    traffic,
)
from qodasim.solvers import SolverError, solve, sra
from qodasim.solvers.runspec import load_run, run_key
from qodasim.solvers.sweep import expand_sweep
from qodasim.vi import NoiseModel, bilinear_game


# ------------------------------------------------------------------------------ the model
def test_collectives_by_hand():
    net = Network(2 * GBPS, latency=1e-4)
    # 4 workers, 1e6-bit messages: 3 steps of (0.1 ms + 0.5 ms)
    assert allgather_time([1e6] * 4, net) == pytest.approx(3 * (1e-4 + 5e-4), rel=1e-14)
    # unequal messages: every step is as long as the largest message in flight
    assert allgather_time([1e6, 4e6, 0, 2e6], net) == pytest.approx(3 * (1e-4 + 2e-3), rel=1e-14)
    # all-reduce of d = 1e6 float32 over 4 workers: 6 latencies + 2·3/4·32e6 bits / 2e9
    assert allreduce_time(10**6, 4, net) == pytest.approx(6e-4 + 1.5 * 32e6 / 2e9, rel=1e-14)
    assert allgather_time([5e6], net) == 0.0 and allreduce_time(10, 1, net) == 0.0


def test_sra_by_hand():
    net = Network(2 * GBPS, latency=1e-4)
    # 4 workers, 4e6-bit messages: chunks of 1e6 bits, re-quantized chunks of 0.5e6 bits
    t = sra_time(np.full((4, 4), 1e6), [0.5e6] * 4, net)
    assert t == pytest.approx(3 * (1e-4 + 5e-4) + 3 * (1e-4 + 2.5e-4), rel=1e-14)
    # unequal chunks: step s is set by the largest chunk sent s places on; the diagonal is never sent
    c = np.zeros((3, 3))
    c[0, 1], c[2, 0], c[1, 0] = 4e6, 2e6, 8e6  # steps: s = 1 sends c01, c12, c20; s = 2 sends c02, c10, c21
    c[np.diag_indices(3)] = 1e9
    assert sra_time(c, [0, 0, 0], net) == pytest.approx(4 * 1e-4 + (4e6 + 8e6) / 2e9, rel=1e-14)
    assert sra_time([[5.0]], [5.0], net) == 0.0
    # traffic per worker: all-gather grows with K, SRA and all-reduce do not
    assert traffic("allgather", 8, 1000, 2.0) == 7 * 2000
    assert traffic("sra", 8, 1000, 2.0, 1.0) == pytest.approx(7 / 8 * 3000)
    assert traffic("allreduce", 8, 1000, 2.0) == pytest.approx(2 * 7 / 8 * 32000)
    # THEORY §8: with b_1 = b_2 = b the speed-up ceiling of SRA is 32/b as bandwidth vanishes
    work = Workload(d=10**6, compute=0.0, bits_per_coord=2.0)
    assert speedup("qoda", 8, work, Network(1e3, 0.0), collective="sra") == pytest.approx(16.0, rel=1e-12)


def test_iteration_time_counts_messages_compute_and_codec():
    work = Workload(d=1000, compute=0.8, scaling="strong", bits_per_coord=2.0, encode_per_coord=1e-9,
                    decode_per_coord=3e-9)  # fmt: skip
    net = Network(1 * GBPS, latency=0.0)
    q = iteration_time("qoda", True, 4, work, net)
    assert q["compute"] == pytest.approx(0.2)
    assert q["codec"] == pytest.approx(1000 * (1e-9 + 3 * 3e-9))
    assert q["comm"] == pytest.approx(3 * 2000 / 1e9)
    g = iteration_time("qgenx", True, 4, work, net)
    for part in ("compute", "codec", "reduce", "comm", "total"):
        assert g[part] == pytest.approx(2 * q[part])
    u = iteration_time("qoda", False, 4, work, net)
    assert u["codec"] == 0 and u["comm"] == pytest.approx(2 * 3 / 4 * 32000 / 1e9)
    weak = Workload(1000, 0.8, "weak", 2.0)
    assert iteration_time("qoda", True, 4, weak, net)["compute"] == 0.8
    assert speedup("qoda", 4, work, net) == pytest.approx(u["total"] / q["total"])
    s = iteration_time("qoda", True, 4, work, net, "sra")  # encode d + d/4, decode 2·3/4·d
    assert s["codec"] == pytest.approx(1000 * (1.25e-9 + 1.5 * 3e-9))
    assert s["comm"] == pytest.approx(6 * 500 / 1e9)
    req = Workload(1000, 0.8, "strong", 2.0, requant_bits_per_coord=1.0)
    assert iteration_time("qoda", True, 4, req, net, "sra")["comm"] == pytest.approx(3 * (500 + 250) / 1e9)
    assert req.requant_bits == 1.0 and work.requant_bits == 2.0
    # the reduction: (K−1)·d additions by all-gather, (K−1)·d/K by SRA and by the all-reduce
    red = Workload(1000, 0.0, "strong", 2.0, reduce_per_coord=1e-9)
    assert iteration_time("qoda", True, 4, red, net)["reduce"] == pytest.approx(3000e-9)
    assert iteration_time("qoda", True, 4, red, net, "sra")["reduce"] == pytest.approx(750e-9)
    assert iteration_time("qgenx", False, 4, red, net)["reduce"] == pytest.approx(2 * 750e-9)


def test_speedup_grows_as_bandwidth_falls_when_communication_matters():
    work = Workload(d=4_000_000, compute=0.5, bits_per_coord=1.5)
    s = [speedup("qoda", 8, work, Network(bw * GBPS)) for bw in (5.0, 2.5, 1.0)]
    assert s[0] < s[1] < s[2]
    assert speedup("qgenx", 8, work, Network(GBPS)) < s[2]  # two messages against the same baseline


def test_run_time_from_a_ledger_by_hand():
    led = BitLedger()
    for rnd, sizes in enumerate(([100, 300], [200, 50], [10, 10], [0, 40])):
        for k, b in enumerate(sizes):
            led.record(k, rnd, {"payload": b})
    work = Workload(d=10, compute=1.0, scaling="weak", bits_per_coord=1.0)
    net = Network(100.0, latency=0.5)
    # rounds cost (K−1)(α + max/β) + compute: 0.5+3+1, 0.5+2+1, 0.5+0.1+1, 0.5+0.4+1 → two per iteration
    t = run_time(led, 2, 10, work, net, rounds_per_iteration=2)
    assert np.allclose(t, [4.5 + 3.5, 8.0 + 1.6 + 1.9])
    scaled = run_time(led, 2, 5, work, net)  # the model's d is twice the run's: bits double
    assert scaled[0] == pytest.approx(0.5 + 6 + 1)


def test_run_time_of_a_real_qgenx_run_charges_two_rounds_per_iteration(run_solver):
    res = run_solver(bilinear_game(4, seed=0), method="qgenx", K=3, T=20, compression="global", levels="uniform:3")
    work = Workload(d=8, compute=0.0, bits_per_coord=1.0)
    net = Network(1e6, latency=0.0)
    t = run_time(res.ledger, 3, 8, work, net, rounds_per_iteration=2)
    assert t.shape == (20,)
    rows = res.ledger.table()
    assert t[-1] == pytest.approx(2 * sum(rows[rows[:, 1] == r][:, 2:].sum(axis=1).max() for r in range(40)) / 1e6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Network(0.0), "bandwidth"),
        (lambda: Network(1e9, latency=-1), "latency"),
        (lambda: Network(float("nan")), "bandwidth"),
        (lambda: Network("fast"), "bandwidth"),
        (lambda: Workload(0, 1.0), "d"),
        (lambda: Workload(10, -1.0), "compute"),
        (lambda: Workload(10, 1.0, scaling="linear"), "scaling"),
        (lambda: Workload(10, 1.0, bits_per_coord=0), "bits_per_coord"),
        (lambda: Workload(10, 1.0, requant_bits_per_coord=-1), "requant_bits_per_coord"),
        (lambda: Workload(10, 1.0, bits_from_d=0), "bits_from_d"),
        (lambda: Workload(10, 1.0, reduce_per_coord=-1.0), "reduce_per_coord"),
        (lambda: Workload(10, 1.0).reduce_at(2, "ring"), "collective"),
        (lambda: Workload(10, 1.0).codec_at(2, "ring"), "collective"),
        (lambda: iteration_time("qoda", True, 2, Workload(10, 1.0), Network(1e9), "tree"), "collective"),
        (lambda: sra_time(np.ones((2, 3)), [1, 1], Network(1e9)), "chunk_bits"),
        (lambda: sra_time(np.ones((2, 2)), [1, 1, 1], Network(1e9)), "requant_bits"),
        (lambda: sra_time(np.ones((2, 2)), [1, -1], Network(1e9)), "requant_bits"),
        (lambda: traffic("bcast", 2, 10, 1.0), "collective"),
        (lambda: allgather_time([], Network(1e9)), "bits"),
        (lambda: allgather_time([1.0, float("inf")], Network(1e9)), "bits"),
        (lambda: allreduce_time(10, 0, Network(1e9)), "K"),
        (lambda: iteration_time("adam", True, 2, Workload(10, 1.0), Network(1e9)), "method"),
        (lambda: run_time(BitLedger(), 2, 10, Workload(10, 1.0), Network(1e9)), "ledger"),
    ],
)
def test_model_inputs_are_checked(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


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


# ------------------------------------------------------------------------------ run files and sweeps
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


# ------------------------------------------------------------------------------ CLI
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


def test_solver_config_must_be_a_config():
    with pytest.raises(SolverError, match="config"):
        solve(bilinear_game(2), {"method": "qoda"})


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


def test_the_lab_part_of_the_speedup_experiment_says_why_it_is_missing(monkeypatch):
    from qodasim import netlab
    from qodasim.experiments import speedup

    assert speedup._lab({"lab_Ks": None}) is None
    monkeypatch.setattr(netlab, "unavailable", lambda: "network namespaces need root")
    assert speedup._lab({"lab_Ks": [2], "lab_rate": 1.0}) == {"unavailable": "network namespaces need root"}
