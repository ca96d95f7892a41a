"""Each experiment verdict passes on its small setting and goes red under the bug it exists to catch (hand-made
mutants of the real code)."""

from __future__ import annotations

import numpy as np
from cases import mutant

from qodasim import Levels, Quantizer, coding
from qodasim.experiments import budget as bd
from qodasim.experiments import get, load_config
from qodasim.quantize.check import error_moments
from qodasim.solvers import DQSchedule


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


EQ_SMALL = dict(ratios=[1.0, 10.0], shapes=["same"], size_factors=[1], budgets=[3.0], T=200, replicas=2,
                alphas=[0, 1, 2, 3, 4, 6, 8, 14, 20, 30, 46, 62], lgreco_every=40)  # fmt: skip


def _equalbits(**over):
    from qodasim.experiments import equalbits

    _, config = load_config("equalbits", "quick")
    result = equalbits.run(dict(config, **EQ_SMALL, **over), progress=False)
    return {v.name: v.passed for v in result.verdicts}, result


def test_equalbits_small_setting_passes_and_goes_red_when_lgreco_ignores_the_error_budget(monkeypatch):
    ok, _ = _equalbits()
    assert all(ok.values()), ok
    from qodasim.solvers import policies

    def greedy(bits, errors, default, alpha=1.0, buckets=1000):  # the plausible bug: budget never checked
        return np.array([int(np.argmin(b)) for b in bits])

    monkeypatch.setattr(policies, "lgreco", greedy)
    ok, _ = _equalbits()
    assert not ok["lgreco_fewer_bits"]


def test_equalbits_homogeneous_check_goes_red_when_the_single_norm_scope_is_dropped(monkeypatch):
    """The plausible bug: ``scope="global"`` not passed through, so 'levels only' silently uses per-layer
    norms — then identical types look like a large loss per bit."""
    real = bd._quantizer
    monkeypatch.setattr(bd, "_quantizer", lambda v, lay, a, k, q, m, scope: real(v, lay, a, k, q, m, "layer"))
    ok, _ = _equalbits()
    assert not ok["homogeneous_no_gain"]


def test_equalbits_per_type_fit_goes_red_when_every_type_gets_type_0s_levels(monkeypatch):
    """The plausible bug: the per-type fit hands every type type 0's levels. Every per-bit
    verdict still passes (the gains barely move); ``per_type_levels_fit`` goes red."""
    from qodasim import LayerwiseQuantizer

    real = bd._quantizer

    def type0_everywhere(v, lay, a, k, q, m, scope):
        quant = real(v, lay, a, k, q, m, scope)
        if lay is None:
            return quant
        return LayerwiseQuantizer(lay, (quant.type_levels[0],) * lay.n_types, scope=scope, q=q)

    monkeypatch.setattr(bd, "_quantizer", type0_everywhere)
    ok, result = _equalbits()
    assert not ok["per_type_levels_fit"]
    assert all(x["shared_over_own"] == 1.0 for x in result.data["per_type_fit"])


def test_equalbits_map_solver_agreement_goes_red_when_the_gain_is_inverted(monkeypatch):
    """The plausible bug: the gain written layer-wise/global instead of global/layer-wise — the map then
    names the wrong winner and disagrees with QODA at equal bits."""
    from qodasim.experiments import equalbits

    mutant(monkeypatch, equalbits, "regime_map", 'row[f"gain_{kind}"] = g / at_bits(c["layerwise"], B)',
           'row[f"gain_{kind}"] = at_bits(c["layerwise"], B) / g')  # fmt: skip
    ok, _ = _equalbits()
    assert not ok["solver_agrees_with_map"]


DQ_SMALL = dict(quad_T=100, replicas=16, bootstrap=100, quad_fixed_s=[1, 2, 4, 8, 16, 32], quad_dq_c=[3.0, 10.0],
                game_T=40, game_fixed_s=[1, 4], game_dq_c=[1.0])  # fmt: skip


def test_dqsgd_verdict_passes_and_goes_red_when_the_schedule_is_never_applied(monkeypatch):
    from qodasim.experiments import dqsgd

    _, config = load_config("dqsgd", "quick")
    res = dqsgd.run(dict(config, **DQ_SMALL), progress=False)
    assert res.passed, res.verdicts
    monkeypatch.setattr(DQSchedule, "update", lambda self, quant, v, t, T, start=None: None)
    res = dqsgd.run(dict(config, **DQ_SMALL), progress=False)
    assert not res.passed


COMM_SMALL = dict(T=200, replicas=2, K=2, stable_T=200)


def _communication(**over):
    from qodasim.experiments import communication

    _, config = load_config("communication", "quick")
    res = communication.run(dict(config, **COMM_SMALL, **over), progress=False)
    return {v.name: v.passed for v in res.verdicts}


def test_communication_small_setting_passes():
    ok = _communication()
    assert all(ok.values()), ok


def test_communication_verdicts_go_red_when_qgenx_wastes_its_first_message(monkeypatch):
    """The bug the old verdict let through: Q-GenX sends its first message but extrapolates with the
    previous vector (QODA's).  Messages and bits are unchanged; what the second message buys is gone."""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._Loop, "lead", "return self.oracle(it.X, t, rnd)",
           "self.oracle(it.X, t, rnd)\n        return it.Vprev, it.Wprev")  # fmt: skip
    ok = _communication()
    assert ok["messages"] and not ok["second_message_buys_stability"]


def test_communication_equal_bits_verdict_goes_red_when_a_round_s_bits_overwrite_the_iteration_s(monkeypatch):
    """``=`` for ``+=``: Q-GenX's two messages of an iteration count as one in the bits (the ledger still
    shows two) — at equal bits the two methods then look alike."""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._StreamBits, "count", "oracle.bits[r, t - 1] += msg.nbits",
           "oracle.bits[r, t - 1] = msg.nbits")  # fmt: skip
    ok = _communication()
    assert ok["messages"] and not ok["qoda_wins_at_equal_bits"]


def test_communication_messages_verdict_goes_red_when_qoda_calls_a_fresh_oracle(monkeypatch):
    """QODA built with Q-GenX's template (a fresh oracle call to extrapolate from): two messages per
    iteration, and the one-message claim goes red."""
    from qodasim.solvers import genx

    monkeypatch.setitem(genx.TEMPLATES, "qoda", genx.Template("oracle", True))
    ok = _communication()
    assert not ok["messages"]


def test_communication_per_iteration_verdict_goes_red_when_qgenx_extrapolates_from_the_start(monkeypatch):
    """Q-GenX's first message computed at the starting point instead of ``X_t``: its gap per iteration
    is no longer comparable to QODA's.  (The check is coarse on this problem: with ``Y -= lead`` — plain
    dual averaging at ``X_t``, no extrapolation — the ratio stays at 0.99 for T ≤ 1000; that bug is
    caught by ``second_message_buys_stability`` instead.)"""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._Loop, "lead", "return self.oracle(it.X, t, rnd)", "return self.oracle(it.X1b, t, rnd)")
    ok = _communication()
    assert not ok["per_iteration_comparable"]


def test_k_exponent_verdict_goes_red_when_workers_share_one_noise_stream(monkeypatch):
    """Workers drawing the same noise: averaging over K removes nothing, the exponent of K is ≈ 0."""
    from qodasim.experiments import convergence
    from qodasim.vi.noise import NoiseModel as NM

    real = NM._add_noise

    def shared(self, A, seed, workers, call, out):
        real(self, A, seed, [0] * len(workers), call, out)

    monkeypatch.setattr(NM, "_add_noise", shared)
    _, config = load_config("convergence", "quick")
    config = dict(config, T=200, replicas=4, K_scaling=[1, 4, 16], T_scaling=1000, bootstrap=50)
    res = convergence.run(config, progress=False)
    v = next(v for v in res.verdicts if v.name == "noise_K_exponent")
    assert not v.passed and abs(res.data["K_exponent"]) < 0.2


def test_sparse_slope_verdict_goes_red_when_sparse_bits_are_counted_as_dense(monkeypatch):
    from qodasim.experiments import codelength

    real = coding.expected_bits
    _, config = load_config("codelength", "quick")
    config = dict(config, d=[64, 4096], n_draws=20, slope_d=[2**12, 2**14, 2**16, 2**18], slope_levels=[2])
    ok = {v.name: v.passed for v in codelength.run(config, progress=False).verdicts}
    assert ok["sparse_slope_to_half"]
    monkeypatch.setattr(
        coding, "expected_bits", lambda v, q, protocol="dense", code="gamma", **kw: real(v, q, "dense", code, **kw)
    )
    ok = {v.name: v.passed for v in codelength.run(config, progress=False).verdicts}
    assert not ok["sparse_slope_to_half"]
