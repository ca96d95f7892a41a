"""Issue 11 — trust: degenerate statistics, transmitted norms, bad input, results files.

Each test names the failure it guards against; every one of them failed on 0eb06cd (the note of the
session that added them says how).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import tracemalloc

import numpy as np
import pytest

from qodasim import Key, LayerLayout, Levels, Quantizer, bounds, coding
from qodasim.cli import main
from qodasim.coding import DecodeError
from qodasim.coding.elias import omega_bits
from qodasim.coding.protocol import MAGIC, VERSION
from qodasim.experiments import Result, Verdict, get
from qodasim.experiments.base import atomic_write_text, strict_json
from qodasim.optimize import normalized_magnitudes
from qodasim.quantize import NormRangeError, vector_norm
from qodasim.quantize.check import error_moments, float_resolution, mc_mean_check
from qodasim.solvers import SolverConfig, SolverError, solve
from qodasim.vi import AffineProblem, NoiseModel, bilinear_game


# ----------------------------------------------------------------------------- part 1: statistics
def test_identical_samples_with_rounding_noise_std_are_checked_exactly():
    """300 identical errors of 0.7 have np.std = 1.1e-16 (the mean is not 0.7 exactly): a z-score over
    that 'standard error' read 58 on an AMD machine.  The deterministic case is now exact."""
    x = np.full(300, 0.7)
    assert x.std(ddof=1) > 0  # the trap
    exact = 0.7 + 2e-16
    z, note = mc_mean_check(x, exact, 0.0, float_resolution(16, 1.0))
    assert z == 0.0 and "exact" in note
    z, _ = mc_mean_check(x, exact, None, float_resolution(16, 1.0))  # variance unknown: same exact path
    assert z == 0.0
    # ... and it can fail: a deterministic case off by more than the float resolution, or varying draws
    assert mc_mean_check(x, 0.71, 0.0, 1e-12)[0] == np.inf
    assert mc_mean_check(np.r_[x[:-1], 0.8], 0.7, 0.0, 1e-12)[0] == np.inf
    # ρ = ½ on every coordinate: the draws differ, their errors agree up to rounding; exact zero variance
    q = Quantizer(Levels.uniform(7))
    v = np.full(4, 0.5)
    err = np.array([np.sum((q(v, Key(1, 0, t)) - v) ** 2) for t in range(200)])
    mean, var = error_moments(q, v)
    assert var == 0.0 and err.std() > 0
    assert mc_mean_check(err, mean, var, float_resolution(4, 1.0))[0] == 0.0


def test_exact_standard_error_is_floored_and_fails_when_biased():
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 0.1, 400)
    z, _ = mc_mean_check(samples, 1.0, 0.01, 1e-12)
    assert z < 4
    assert mc_mean_check(samples, 1.05, 0.01, 1e-12)[0] > 6  # 10 standard errors off
    # a variance that is rounding noise cannot shrink the SE below the float resolution
    assert mc_mean_check(samples * 0 + 1.0 + np.arange(400) * 1e-18, 1.0, 1e-40, 1e-12)[0] < 1


@pytest.mark.parametrize("seed", range(5))
def test_error_moments_match_monte_carlo(seed):
    """Var‖Q(v) − v‖² = Σ ρ(1−ρ)(1−2ρ)² w⁴: checked against 20 000 draws (4 sample-SEs of the variance)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(3, 40))
    q = Quantizer(Levels.from_interior(np.sort(rng.uniform(0, 1, 3))), q=[2.0, np.inf][seed % 2])
    v = rng.standard_normal(d)
    mean, var = error_moments(q, v)
    err = np.array([np.sum((q(v, Key(seed, 0, t)) - v) ** 2) for t in range(20000)])
    assert np.isclose(mean, q.exact_variance(v), rtol=1e-12)
    # SE of the sample variance ≈ sqrt((m4 - s^4)/n); 5 of those
    m4 = np.mean((err - err.mean()) ** 4)
    assert abs(err.var() - var) < 5 * np.sqrt(max(m4 - err.var() ** 2, 1e-300) / err.size) + 1e-12


def test_variance_verdict_deterministic_case_and_bug():
    """A vector with every r_i on a level (zero variance) passes exactly; a 5% error in the exact
    formula turns the verdict red."""
    mod = get("variance")
    cfg = {"levels": ["uniform:4"], "d": [4, 16], "n_draws": 50, "seed": 0}
    res = mod.run(cfg, progress=False)
    assert res.passed, res.verdicts
    v = np.full(16, 0.25)  # on the levels of uniform:4, norm exactly 1
    mean, var = error_moments(Quantizer(Levels.uniform(4)), v)
    assert mean == 0.0 and var == 0.0


def test_variance_verdict_goes_red_under_a_wrong_exact_formula(monkeypatch):
    from qodasim.experiments import variance

    real = variance.error_moments
    monkeypatch.setattr(variance, "error_moments", lambda q, v: (real(q, v)[0] * 1.05, real(q, v)[1]))
    res = variance.run({"levels": ["uniform:4"], "d": [64, 256], "n_draws": 300}, progress=False)
    assert not next(v for v in res.verdicts if v.name == "mc_equals_exact").passed


# ------------------------------------------------------------------- part 2/3: norms and bounds
def test_vector_norm_is_deterministic_and_scaled():
    rng = np.random.default_rng(1)
    v = rng.standard_normal(1000)
    assert vector_norm(v) == vector_norm(v.copy()) == vector_norm(v, engine="numpy")
    assert np.isclose(vector_norm(v), np.linalg.norm(v), rtol=1e-14)
    assert np.isclose(vector_norm(np.array([1e308, 1e308])), np.sqrt(2) * 1e308, rtol=1e-15)
    assert np.isclose(vector_norm(np.array([1e-200, 3e-200])), np.sqrt(10) * 1e-200, rtol=1e-15)
    assert np.isclose(vector_norm(v, 3.0), np.sum(np.abs(v) ** 3) ** (1 / 3), rtol=1e-13)


def test_tight_bound_covers_the_transmitted_norm():
    """[3.7] with s = 1: the float32 norm is above 3.7, so r < 1 and the variance is 1.29e-8 > 0 = the
    true-norm tight bound.  The transmitted-norm bound covers it; so do the closed forms."""
    q = Quantizer(Levels.uniform(1))
    var = q.exact_variance(np.array([3.7]), normalized=True)
    assert var > 0
    assert bounds.tight_variance_bound(Levels.uniform(1), 1, transmitted=False).value == 0.0
    assert var <= bounds.tight_variance_bound(Levels.uniform(1), 1).value
    rng = np.random.default_rng(2)
    for _ in range(200):  # random small vectors and levels: exact variance never above any bound
        d = int(rng.integers(1, 6))
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(0, 4)))))
        v = rng.standard_normal(d) * 10.0 ** rng.uniform(-30, 30)
        var = Quantizer(lv).exact_variance(v, normalized=True)
        assert var <= bounds.tight_variance_bound(lv, d).value
        assert var <= bounds.simple_bound(lv, d)


def test_norms_outside_float32_normal_range_are_rejected():
    q = Quantizer(Levels.uniform(1))
    for v in ([1.5e-45, 0.0], [1e-200, 3e-200], [1e39]):
        with pytest.raises(NormRangeError, match="float32"):
            q.exact_variance(np.array(v), normalized=True)
        with pytest.raises(NormRangeError):
            q.quantize(np.array(v), Key(0))
    assert q.quantize(np.zeros(3), Key(0)).norms[0] == 0  # the zero vector is fine
    # normalized variance is scale-free: no ‖v‖² formed (tiny but normal norms)
    v = np.array([1.0, 3.0, -2.0])
    q4 = Quantizer(Levels.uniform(4))
    assert np.isclose(q4.exact_variance(v * 1e-36, normalized=True), q4.exact_variance(v, normalized=True), rtol=1e-6)


def test_numerics_at_the_edges():
    assert normalized_magnitudes([1e308, 1e308]) == pytest.approx([2**-0.5, 2**-0.5])
    assert np.isfinite(bounds.simple_bound(Levels([0, 5e-324, 1e-300, 1]), 16))
    with pytest.raises(ValueError, match="dimension"):
        LayerLayout([2**62, 2**62])
    for lv in (Levels.uniform(1), Levels.uniform(3), Levels.exponential(4)):
        assert bounds.tight_variance_bound(lv, 1).value >= 0.0
        assert bounds.tight_variance_bound(lv, 1, transmitted=False).value >= 0.0


def test_attained_is_attainable_for_small_d():
    """Levels 0.383, 0.600, 0.611, 0.964 at d = 2: 'attained' was 0.0645, the true maximum 0.0492."""
    lv = Levels([0, 0.383, 0.600, 0.611, 0.964, 1])
    b = bounds.tight_variance_bound(lv, 2)
    arcs = bounds.variance_arcs(lv)
    w = np.linspace(0.0, 1.0, 400001)
    brute = float(np.max(arcs(w) + arcs(1.0 - w)))
    assert b.attained <= brute + 1e-12 and b.attained >= brute - 1e-6
    v = bounds.adversarial_vector(lv, 2)
    assert np.isclose(np.sum(arcs(v * v)), b.attained, rtol=1e-9)
    rng = np.random.default_rng(3)
    for _ in range(20):  # attained never above the bound, and never above brute force for d = 2, 3
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(1, 5)))))
        for d in (2, 3):
            b = bounds.tight_variance_bound(lv, d, transmitted=False)
            assert b.attained <= b.value + 1e-12
            pts = rng.dirichlet(np.ones(d), 20000)
            assert np.max(np.sum(bounds.variance_arcs(lv)(pts), axis=1)) <= b.value + 1e-12


def test_adversarial_vector_is_the_best_two_valued_one():
    """exponential(6, 0.3) at d = 1000 reached 0.40007; the best two-valued vector reaches 0.40842."""
    lv = Levels.exponential(6, 0.3)
    b = bounds.tight_variance_bound(lv, 1000)
    v = bounds.adversarial_vector(lv, 1000)
    got = float(np.sum(bounds.variance_arcs(lv)(v * v)))
    assert got > 0.4084 and got <= b.value


# ----------------------------------------------------------------------------- part 4: bad input
def _qv():
    v = np.random.default_rng(0).standard_normal(64)
    return Quantizer(Levels.uniform(4)).quantize(v, Key(1))


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("indices", np.full(64, 2**31, np.uint32), "past"),
        ("indices", np.full(64, 200, np.uint8), "past"),
        ("indices", np.zeros(10, np.uint8), "shape"),
        ("indices", np.zeros(64, np.int64), "unsigned"),
        ("signs", np.zeros(64, np.int8), "sign"),
        ("signs", np.ones(63, np.int8), "shape"),
        ("norms", np.array([np.nan], np.float32), "finite"),
        ("norms", np.array([1.0, 2.0], np.float32), "shape"),
        ("norms", np.array([1.0]), "float32"),
    ],
)
def test_quantized_vector_contents_are_validated(field, value, words):
    """These segfaulted (exit 139) or returned garbage read past the arrays."""
    bad = dataclasses.replace(_qv(), **{field: value})
    for use in (lambda: bad.dequantize(), lambda: coding.encode(bad), lambda: bad.dequantize(engine="numpy")):
        with pytest.raises((ValueError, TypeError), match=words):
            use()
    assert dataclasses.replace(_qv()).dequantize().shape == (64,)  # a valid copy still works


def _header(proto: int, gb: int, d: int, pad: int = 64) -> bytes:
    bits = f"{MAGIC:08b}{VERSION:04b}{proto:02b}1000" + "0"  # γ/ω code 2, float32, spec, no CRC
    bits = bits[:-2] + "10"  # spec-present = 1, crc = 0
    bits += "0" + omega_bits(gb + 1) + omega_bits(1) + omega_bits(d) + omega_bits(1) + omega_bits(1) + "00"
    bits += omega_bits(1) + "1" + omega_bits(2) + "0" * pad
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize("proto, gb, d", [(0, 1, 2**24), (0, 0, 2**30), (1, 0, 2**26), (0, 0, 2**24), (1, 0, 2**40)])
def test_crafted_headers_fail_fast_without_allocating(proto, gb, d):
    """A 21-byte message claiming 2^24 one-coordinate buckets took 35 s and 2.6 GB; d ≥ 2^30 raised
    MemoryError; a 20-byte sparse message claiming d = 2^26 allocated 128 MiB."""
    data = _header(proto, gb, d)
    assert len(data) < 32
    # warm the decoder (JIT compilation on a cold Numba cache is not what this test times)
    coding.decode(coding.encode(Quantizer(Levels.uniform(3)).quantize(np.ones(4), Key(0)), "sparse", "omega"))
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(DecodeError):
        coding.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 2**20


def test_decoder_limit_is_adjustable():
    v = np.random.default_rng(0).standard_normal(300)
    qv = Quantizer(Levels.uniform(3)).quantize(v, Key(2))
    msg = coding.encode(qv, "sparse", "omega")
    assert coding.decode(msg, max_d=300).equals(qv)
    with pytest.raises(DecodeError, match="max_d"):
        coding.decode(msg, max_d=299)
    with pytest.raises(ValueError, match="max_d"):
        coding.Decoder(max_d=0)


@pytest.mark.parametrize("protocol, code", [("dense", "gamma"), ("sparse", "omega"), ("dense", "delta")])
def test_crc_catches_every_single_bit_flip(protocol, code):
    """Without a CRC, 66% of single-bit flips decoded silently to another valid vector."""
    rng = np.random.default_rng(4)
    qv = Quantizer(Levels.exponential(4)).quantize(rng.standard_normal(40), Key(3))
    msg = coding.encode(qv, protocol, code, crc=True)
    assert coding.decode(msg).equals(qv)
    plain = coding.encode(qv, protocol, code)
    assert msg.bits["header"] == plain.bits["header"] + 32 and msg.nbits == plain.nbits + 32
    assert sum(msg.bits.values()) == msg.nbits
    data = bytearray(msg.data)
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (7 - i % 8)
        with pytest.raises(DecodeError):
            coding.decode(bytes(bad))
    with pytest.raises(DecodeError, match="requires"):
        coding.decode(plain, require_crc=True)


def test_solver_overflow_ends_as_diverged():
    """A(x) = 1e200(x − 1) returned status 'ok' with x_last = x0; eg with step 1e200, noise 1e200 or no
    threshold ended in a quantizer ValueError; bilinear_game(3, scale=1e155) died in scipy."""
    p = AffineProblem((1e200 * np.eye(3),), -1e200 * np.ones(3))
    res = solve(p, SolverConfig(T=20))
    assert res.status == "diverged" and "overflow" in res.message
    for kw in (dict(step=1e200), dict(noise=NoiseModel("absolute", sigma=1e200)),
               dict(step=1e200, divergence_threshold=np.inf)):  # fmt: skip
        res = solve(bilinear_game(3), SolverConfig(method="eg", compression="global", T=30, **kw))
        assert res.status == "diverged" and res.message, kw
        assert np.all(np.isfinite(res.x_avg))
    res = solve(bilinear_game(3, scale=1e155), SolverConfig(T=30))
    assert res.status in ("ok", "diverged") and res.message if res.status == "diverged" else True
    res = solve(bilinear_game(3, scale=1e100), SolverConfig(T=30))
    assert res.status == "ok" and np.all(np.isfinite(res.measures["gap_avg"]))
    for thr in (np.nan, -1.0, 0.0, "big"):
        with pytest.raises(SolverError, match="divergence_threshold"):
            SolverConfig(divergence_threshold=thr)


# ------------------------------------------------------------------------------------- CLI
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


# ------------------------------------------------------------------------ part 5: results files
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


def test_silent_acceptances_are_clear_errors():
    """Inputs that were accepted silently (issue 34's audit): each is now an error naming its argument."""
    from qodasim import Key, Levels, Quantizer
    from qodasim.optimize import optimize_layerwise
    from qodasim.quantize import dequantize_batch
    from qodasim.solvers import SolverConfig, SolverError

    for seed in (2**64 + 5, -1, 1.5, True):
        with pytest.raises(SolverError, match="seed"):
            SolverConfig(seed=seed)
    SolverConfig(seed=2**64 - 1)  # the largest Key seed
    for r in (0, -1.0, float("inf"), "x", True):
        with pytest.raises(SolverError, match="gap_radius"):
            SolverConfig(gap_radius=r)
    qv = Quantizer(Levels.uniform(3)).quantize(np.array([1.0, -2.0]), Key(0))
    for dt in (int, np.int8, "complex128", "nonsense"):
        with pytest.raises(TypeError, match="dtype"):
            qv.dequantize(dtype=dt)
        with pytest.raises(TypeError, match="dtype"):
            dequantize_batch([qv, qv], dtype=dt)
    assert qv.dequantize(np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="overflows"):
        optimize_layerwise([np.full(10, 1e308)], [0], 2)


def test_a_run_too_large_for_memory_is_refused_at_once(monkeypatch):
    """T, K or replicas of 10^9 are refused in one line before anything is allocated (not a
    MemoryError after minutes); the estimate names what drives it; ``record`` above T is capped."""
    from qodasim import _memory
    from qodasim.solvers import genx

    est = genx.memory_estimate(8, SolverConfig(method="qgenx", K=4, T=100, replicas=3))
    assert est["ledger"] == 4 * 100 * 2 * genx.LEDGER_ROW_BYTES  # Q-GenX: two messages per iteration
    assert est["arrays"] == 8 * (3 * 3 * 4 * 8 + 8 * 3 * 8 + 3 * 100)
    with monkeypatch.context() as m:  # a machine just too small for this run
        m.setattr(_memory, "available_memory", lambda: est["total"] - 1)
        with pytest.raises(SolverError, match="lower T, K or replicas"):
            solve(bilinear_game(8, seed=0), SolverConfig(method="qgenx", K=4, T=100, replicas=3))
        m.setattr(_memory, "available_memory", lambda: None)  # unknown: not checked
        assert solve(bilinear_game(8, seed=0), SolverConfig(method="qgenx", K=4, T=100, replicas=3)).status == "ok"
    p = bilinear_game(4, seed=0)
    for kw, what in (({"T": 10**9}, "ledger"), ({"K": 10**9, "T": 10}, "ledger"),
                     ({"replicas": 10**9, "T": 10}, "channels")):  # fmt: skip
        t0 = time.perf_counter()
        with pytest.raises(SolverError, match="GiB available") as err:
            solve(p, SolverConfig(**{"K": 2, **kw}))
        assert time.perf_counter() - t0 < 5 and ("ledger" in str(err.value)) == (what == "ledger")
    assert solve(p, SolverConfig(K=2, T=10, record=10**9)).status == "ok"
    pts = genx.record_points(10, 10**9)
    assert pts[-1] == 10 and pts.size <= 10 and np.all(np.diff(pts) > 0)


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


def test_solver_results_compare_by_value(tmp_path):
    """``SolverResult == SolverResult`` compares the runs (arrays element-wise, NaN equal to NaN, ledgers
    row by row, the wall time left out), never raises; another seed is another run."""
    from qodasim.solvers.genx import SolverResult

    cfg = SolverConfig(K=2, T=6, compression="global", levels="uniform:3")
    a, b = solve(bilinear_game(4, seed=0), cfg), solve(bilinear_game(4, seed=0), cfg)
    assert a == b and not (a != b)
    assert a != solve(bilinear_game(4, seed=0), dataclasses.replace(cfg, seed=1))
    assert (a == 1) is False and a != "x"
    a2, b2 = SolverResult.load(a.save(tmp_path / "a")), SolverResult.load(b.save(tmp_path / "b"))
    assert a2 == b2  # loaded runs (their x_avg, x_last and quantizer are not saved)
    b2.measures["gap_avg"][0, 0] += 1e-12
    assert a2 != b2
    with pytest.raises(TypeError):
        hash(a)


def test_a_header_declaring_too_many_types_is_refused_and_uniform_tables_are_shared():
    """A header declaring more layer types than ``max_types`` (a hostile one: 10^6 types fit in 750 kB,
    each one a level table) is a DecodeError before any table is read; uniform level tables are one
    shared object per ``s``, so an honest message with many types costs one table."""
    from qodasim import LayerwiseQuantizer
    from qodasim.coding import MAX_TYPES, Decoder, Encoder
    from qodasim.coding import protocol as P
    from qodasim.quantize.plan import PlanSpec

    m = MAX_TYPES + 1
    spec = PlanSpec(LayerLayout(np.array([8]), np.array([0]), n_types=m), "layer", (2.0,) * m, (0,) * m, 0)
    bits = P._header(0, 0, np.float32, spec, (Levels.uniform(3),) * m, [True] * m)[0]
    data = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big")
    with pytest.raises(DecodeError, match="max_types"):
        Decoder().decode(data)
    with pytest.raises(DecodeError, match="truncated"):  # allowed: read to the end of the tables
        Decoder(max_types=m).decode(data)
    with pytest.raises(ValueError, match="max_types"):
        Decoder(max_types=0)
    layout = LayerLayout(np.array([5, 3]), np.array([0, 299]), n_types=300)
    q = LayerwiseQuantizer(layout, (Levels.uniform(3),) * 299 + (Levels.uniform(7),))
    qv = q.quantize(np.arange(8.0) - 3.5, Key(1))
    back = Decoder(max_types=300).decode(Encoder().encode(qv))
    assert back.equals(qv) and len({id(lv) for lv in back.levels}) == 2
    with pytest.raises(DecodeError, match="max_types"):
        Decoder(max_types=299).decode(Encoder().encode(qv))


@pytest.mark.parametrize("sigma", ["x", None, [1.0], True, float("nan"), -1.0])
def test_a_noise_level_that_is_not_a_number_is_named(sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        NoiseModel("absolute", sigma)


def _fill_reference(points, alpha):
    """The quadratic filling: split the widest gap (the first of equal ones) at its midpoint, re-sort."""
    inner = list(np.unique(points[(points > 0) & (points < 1)]))
    while len(inner) < alpha:
        grid = np.concatenate([[0.0], inner, [1.0]])
        k = int(np.argmax(np.diff(grid)))
        inner.append(0.5 * (grid[k] + grid[k + 1]))
        inner.sort()
    return Levels.from_interior(inner)


def test_level_filling_is_the_widest_gap_rule_and_fast_for_large_alpha():
    """Fewer distinct samples than levels: the filled levels equal the widest-gap-midpoint rule (ties to
    the left) on random and tie-heavy points; α = 10^5 takes well under a second (was > 60 s);
    α at the level table's limit is refused."""
    from qodasim.optimize import exact_levels
    from qodasim.optimize.levels import _fill_levels

    rng = np.random.default_rng(3)
    for case in range(40):
        pts = rng.random(rng.integers(0, 12)) if case % 2 else rng.integers(0, 5, 6) / 4  # ties: equal gaps
        alpha = int(rng.integers(pts.size, 60))
        assert np.array_equal(_fill_levels(pts, alpha).values, _fill_reference(pts, alpha).values), case
    t0 = time.perf_counter()
    res = exact_levels(np.array([0.1, 0.5, 0.9]), 10**5)
    assert res.levels.alpha == 10**5 and time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="alpha must be below"):
        exact_levels(np.array([0.1, 0.5]), 2**20)


def test_auto_types_cost_matrix_is_psi_exactly_and_a_thousand_layers_are_quick(monkeypatch):
    """The cost matrix's rows computed at once equal ``psi`` pair by pair bit for bit (zero and tiny
    layers included); 1,000 layers take seconds (was 21 s: one ``psi`` call per pair)."""
    from qodasim.optimize import auto_types, normalized_magnitudes, psi
    from qodasim.optimize.autotype import cost_matrix
    from qodasim.optimize.distributions import Empirical

    rng = np.random.default_rng(5)
    layers = [rng.standard_normal(int(rng.integers(2, 200))) * (rng.random() < 0.3 or rng.random()) for _ in range(60)]
    layers[3] = np.zeros(7)
    rs = [normalized_magnitudes(v, 2.0) if np.any(v) else np.zeros(v.size) for v in layers]
    for alpha in (1, 3, 6):
        C, _, levels = cost_matrix(rs, alpha)
        ref = np.array([[psi(lv, Empirical(r[1::2])) for lv in levels] for r in rs])
        assert np.array_equal(C, ref), alpha
    from qodasim.optimize import autotype

    calls = []
    monkeypatch.setattr(autotype, "psi", lambda lv, t: calls.append(1) or psi(lv, t))
    cost_matrix(rs, 3)
    assert len(calls) == 0  # not one call per pair (L² Python calls: 21 s at L = 1,000)
    t0 = time.perf_counter()
    found = auto_types([rng.standard_normal(50) * rng.random() for _ in range(1000)], 3)
    assert found.types.size == 1000 and time.perf_counter() - t0 < 10


def test_lgreco_refuses_a_table_that_cannot_fit_and_stores_choices_small(monkeypatch):
    """1,000 layers × 10^7 buckets: one line naming ``buckets`` (was a MemoryError asking 74.5 GiB); the
    choice table takes one byte per entry for up to 256 options, with the same allocation."""
    from qodasim import _memory
    from qodasim.optimize import lgreco

    rng = np.random.default_rng(2)
    bits = [np.sort(rng.random(4))[::-1] * 10 for _ in range(1000)]
    errors = [np.sort(rng.random(4)) for _ in range(1000)]
    default = np.full(1000, 1)
    monkeypatch.setattr(_memory, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match="lower buckets"):
        lgreco(bits, errors, default, buckets=10**7)
    small = lgreco(bits[:30], errors[:30], default[:30], buckets=2000)
    monkeypatch.setattr(_memory, "available_memory", lambda: 30 * 2001)  # fits only at one byte per entry
    assert np.array_equal(lgreco(bits[:30], errors[:30], default[:30], buckets=2000), small)


def test_a_stream_given_as_an_integer_array_must_hold_bytes():
    """An int64 array holding a message decodes; one value above 255 is refused (it wrapped to the same
    byte and decoded silently); float arrays are refused."""
    from qodasim.coding import decode, encode

    qv = Quantizer(Levels.uniform(3)).quantize(np.arange(8.0), Key(0))
    arr = np.frombuffer(encode(qv).data, np.uint8).astype(np.int64)
    assert decode(arr).equals(qv)
    arr[-1] += 256
    with pytest.raises(TypeError, match="values outside 0…255"):
        decode(arr)
    with pytest.raises(TypeError, match="float64 array"):
        decode(arr.astype(np.float64))
