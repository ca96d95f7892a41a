"""Conformance checks every quantizer must pass (scikit-learn ``check_*`` style).

:func:`check_quantizer` runs them all and reports every failure (:data:`QUANTIZER_CHECKS`, one
:class:`~qodasim.suite.Check` each); each ``check_*`` raises ``AssertionError`` naming what failed.
The statistical checks use fixed keys and thresholds derived from the Monte Carlo error.  The rounding
law is tested exactly (binomial up-counts, Bonferroni-adjusted p ≥ 1e-6).  The mean squared error
over ``N`` draws is compared with the exact variance in units of its **exact** standard error
``√(Var‖Q(v) − v‖² / N)`` (:func:`error_moments`; known in closed form, so it cannot be fooled by a
degenerate sample), floored at the float resolution of the quantity (:func:`float_resolution`).  A
threshold of ``Z = 6`` standard errors is a false-alarm probability of about ``2Φ(−6) ≈ 2e-9`` under
the normal approximation (``N ≥ 1000`` draws of a sum of ``d`` independent bounded terms).  A
deterministic case (zero variance: every ``ρ_i ∈ {0, ½, 1}``) is checked exactly instead: every draw
equal to the exact value within the float resolution (THEORY §7.1).
"""

from __future__ import annotations

import numpy as np

from ..rng import Key
from ..suite import Check, run_checks
from .core import BaseQuantizer, QuantizedVector

__all__ = [
    "QUANTIZER_CHECKS",
    "quantizer_checks",
    "rounding_test",
    "check_quantizer",
    "check_output_format",
    "check_unbiased",
    "check_variance_matches_exact",
    "check_reproducible",
    "check_zero_vector",
    "check_dimension_one",
    "check_bad_input",
    "test_vector",
    "error_moments",
    "float_resolution",
    "mc_mean_check",
]

Z = 6.0


def error_moments(quantizer: BaseQuantizer, v, layout=None) -> tuple[float, float]:
    """Exact mean and variance of ``E = ‖Q(v) − v‖²`` over the rounding randomness.

    Coordinates round independently; coordinate ``i`` (interval width ``w_i`` scaled by the transmitted
    norm ``n̂_g``) contributes ``(1 − ρ)² w²`` with probability ``ρ`` and ``ρ² w²`` otherwise, so
    ``E[E] = Σ ρ(1 − ρ) w²`` (THEORY §2) and ``Var[E] = Σ ρ(1 − ρ)(1 − 2ρ)² w⁴``.
    """
    j, rho, n32, plan = quantizer.intervals(v, layout)
    lv, lv_start, _ = quantizer._tables
    base = lv_start[plan.coord_type()]
    w = (lv[base + j + 1] - lv[base + j]) * n32.astype(np.float64)[plan.coord_group()]
    p = rho * (1.0 - rho)
    w2 = w * w
    return float(np.sum(p * w2)), float(np.sum(p * (1.0 - 2.0 * rho) ** 2 * w2 * w2))


def float_resolution(d: int, scale: float) -> float:
    """``64·2^{-52}·(d + 2)·scale``: a generous bound on the rounding error of a float64 sum of ``d``
    terms of total size ``scale`` (and of the exact formula's own ``ρ``) — the smallest difference a
    statistic of that sum can resolve.  Standard errors are floored at it."""
    return 64.0 * np.finfo(np.float64).eps * (int(d) + 2) * float(scale)


def mc_mean_check(samples, mean: float, var: float | None, resolution: float) -> tuple[float, str]:
    """``(z, note)`` for Monte Carlo ``samples`` of a quantity with exact ``mean`` (and variance ``var``).

    ``z = |mean(samples) − mean| / max(SE, resolution)`` with ``SE = √(var/N)`` when the exact variance
    is known, else the sample standard error.  A deterministic case — ``var == 0`` (e.g. every
    coordinate on a level, or every ``ρ_i ∈ {0, ½, 1}``: both roundings then err by the same amount),
    or, with ``var`` unknown, samples that spread by no more than ``resolution`` — is checked exactly
    instead: ``z`` is 0 when every sample lies within ``resolution`` of ``mean``, else ``inf``.  Never
    a division by a standard error of zero, nor by one that is only rounding noise.
    """
    x = np.asarray(samples, np.float64)
    n = x.size
    if n < 2:
        raise ValueError(f"samples: need at least 2, got {n}")
    mc = float(x.mean())
    if var == 0.0 or (var is None and float(x.max() - x.min()) <= resolution):
        ok = float(np.max(np.abs(x - mean))) <= resolution
        return (0.0 if ok else np.inf), ("deterministic case: exact" if ok else "deterministic case is off")
    se = float(np.sqrt(var / n)) if var is not None else float(x.std(ddof=1) / np.sqrt(n))
    se = max(se, resolution)
    return abs(mc - mean) / se, f"SE {se:.3g}"


def test_vector(d: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """A heterogeneous test vector: Gaussian entries with log-uniform scales, some exact zeros."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(d) * np.exp(rng.uniform(-3.0, 1.0, d))
    if d >= 4:
        v[rng.choice(d, size=max(1, d // 8), replace=False)] = 0.0
        v[rng.integers(d)] = 0.0
    return v.astype(dtype)


test_vector.__test__ = False  # not a pytest test


def _dim(quantizer: BaseQuantizer, default: int) -> int:
    return quantizer.dimension or default


def _draws(quantizer, v, n, seed):
    return np.stack([quantizer.quantize(v, Key(seed, 0, t)).dequantize(np.float64) for t in range(n)])


def check_output_format(quantizer: BaseQuantizer, d: int = 97, seed: int = 0) -> None:
    """Indices in the smallest dtype and in range; int8 signs; float32 norms; dtype round trip."""
    d = _dim(quantizer, d)
    for dtype in (np.float32, np.float64):
        v = test_vector(d, seed, dtype)
        qv = quantizer.quantize(v, Key(seed))
        assert isinstance(qv, QuantizedVector), "quantize must return a QuantizedVector"
        assert qv.indices.dtype == quantizer.index_dtype, f"index dtype {qv.indices.dtype}"
        assert qv.indices.shape == (d,) and qv.signs.shape == (d,), "wrong output shapes"
        assert qv.signs.dtype == np.int8 and set(np.unique(qv.signs)) <= {-1, 1}, "signs must be ±1 int8"
        assert qv.norms.dtype == np.float32 and qv.norms.size == qv.plan.n_groups, "norms: one float32 per group"
        top = np.array([qv.levels[t].size - 1 for t in qv.plan.coord_type()])
        assert np.all(qv.indices.astype(np.int64) <= top), "level index out of range"
        out = qv.dequantize()
        assert out.dtype == dtype, f"dequantize must return the input dtype {dtype}, got {out.dtype}"
        assert np.all(np.sign(out) * np.sign(v) >= 0), "Q(v) must keep the signs of v"
        assert np.all(qv.signs[qv.indices == 0] == 1), "signs must be canonical (+1 where the index is 0)"


def rounding_test(quantizer: BaseQuantizer, v: np.ndarray, n: int, seed: int) -> dict:
    """Exact test of the rounding law on ``n`` draws at ``v``.

    For each coordinate, the number ``K_i`` of draws rounded up (index ``j_i + 1``) must be
    ``Binomial(n, ρ_i)``; the two-sided exact p-value is ``min(1, 2·min(P(K ≤ k), P(K ≥ k)))``.
    Returns the Bonferroni-adjusted minimum p-value ``min_i p_i · m`` (``m`` = number of coordinates
    with ``0 < ρ_i < 1``), whether every draw landed on ``j_i`` or ``j_i + 1``, and the largest relative
    gap between ``n_g·sign_i·(ℓ_j + ρ_i w_i)`` and ``v_i`` (the algebraic unbiasedness identity) and
    between the dequantized mean and ``n_g·sign_i·(ℓ_j + (K_i/n) w_i)``.
    """
    from scipy.stats import binom

    j, rho, n32, plan = quantizer.intervals(v)
    lv, lv_start, _ = quantizer._tables
    base = lv_start[plan.coord_type()]
    lo, width = lv[base + j], lv[base + j + 1] - lv[base + j]
    norm = n32.astype(np.float64)[plan.coord_group()]
    ups = np.zeros(v.size, np.int64)
    on_grid = True
    total = np.zeros(v.size)
    for t in range(n):
        qv = quantizer.quantize(v, Key(seed, 0, t))
        step = qv.indices.astype(np.int64) - j
        on_grid &= bool(np.all((step == 0) | (step == 1)))
        ups += step == 1
        total += qv.dequantize(np.float64)
    sign = np.where(v < 0, -1.0, 1.0)
    scale = np.maximum(np.abs(v).max(), 1e-300)
    identity = float(np.max(np.abs(norm * sign * (lo + rho * width) - v)) / scale)
    mean_gap = float(np.max(np.abs(total / n - norm * sign * (lo + ups / n * width))) / scale)
    live = (rho > 0.0) & (rho < 1.0)
    # deterministic coordinates (ρ ∈ {0, 1}) must never move
    frozen_ok = bool(np.all(ups[rho == 0.0] == 0) and np.all(ups[rho == 1.0] == n))
    k, p = ups[live], rho[live]
    pv = np.minimum(1.0, 2.0 * np.minimum(binom.cdf(k, n, p), binom.sf(k - 1, n, p)))
    adj = float(pv.min() * pv.size) if pv.size else 1.0
    return {"adjusted_p": adj, "on_grid": on_grid and frozen_ok, "identity": identity, "mean_gap": mean_gap}


def check_unbiased(quantizer: BaseQuantizer, d: int = 64, n: int = 4000, seed: int = 1) -> None:
    """``E[Q(v)] = v``, checked exactly rather than by a normal approximation.

    Every draw rounds coordinate ``i`` to ``j_i`` or ``j_i + 1``; the up-count is ``Binomial(n, ρ_i)``
    (exact binomial test, Bonferroni-adjusted p ≥ 1e-6); ``n_g·sign·(ℓ_j + ρ w) = v_i`` to 1e-12
    (relative to ``max|v|``; float32 norms round up, so ``r_i`` carries a 2^{-52} rounding); and the
    dequantized values are ``n_g·sign·ℓ_{idx}`` (mean over draws, 1e-12).  Together: ``E Q(v) = v``.
    """
    d = _dim(quantizer, d)
    v = test_vector(d, seed)
    res = rounding_test(quantizer, v, n, seed)
    assert res["on_grid"], "unbiasedness: a draw left the two levels around r_i"
    assert res["identity"] < 1e-12, f"unbiasedness: n·(ℓ_j + ρ·w) differs from |v_i| by {res['identity']:.3g}"
    assert res["mean_gap"] < 1e-12, f"unbiasedness: dequantized mean inconsistent ({res['mean_gap']:.3g})"
    assert res["adjusted_p"] >= 1e-6, f"unbiasedness: up-counts reject Binomial(n, ρ) (p = {res['adjusted_p']:.3g})"


def check_variance_matches_exact(quantizer: BaseQuantizer, d: int = 64, n: int = 4000, seed: int = 2) -> None:
    """Monte Carlo ``E‖Q(v) − v‖²`` equals :meth:`~qodasim.quantize.Quantizer.exact_variance` within ``Z``
    standard errors."""
    d = _dim(quantizer, d)
    v = test_vector(d, seed)
    exact = quantizer.exact_variance(v)
    assert np.isclose(exact, quantizer.coordinate_variance(v).sum(), rtol=1e-9), "exact variance: two formulas"
    err = ((_draws(quantizer, v, n, seed) - v) ** 2).sum(axis=1)
    mean, var = error_moments(quantizer, v)
    assert np.isclose(mean, exact, rtol=1e-9, atol=0), "exact variance: error_moments disagrees"
    z, note = mc_mean_check(err, exact, var, float_resolution(d, float(np.sum(v * v)) + exact))
    assert z < Z, f"variance: Monte Carlo {err.mean():.6g} vs exact {exact:.6g} ({z:.2f} standard errors; {note})"


def check_reproducible(quantizer: BaseQuantizer, d: int = 257, seed: int = 3) -> None:
    """The same key gives the same output; another round or worker gives another one."""
    d = _dim(quantizer, d)
    v = test_vector(d, seed)
    a = quantizer.quantize(v, Key(seed, 1, 5))
    b = quantizer.quantize(v.copy(), Key(seed, 1, 5))
    assert a.equals(b), "same key must give bitwise identical output"
    if quantizer.exact_variance(v) > 0.0:
        # P(two independent draws agree) is tiny for d ≥ 64 random coordinates
        c = quantizer.quantize(v, Key(seed, 1, 6))
        w = quantizer.quantize(v, Key(seed, 2, 5))
        assert not a.equals(c), "another round must give another draw"
        assert not a.equals(w), "another worker must give another draw"


def check_zero_vector(quantizer: BaseQuantizer, d: int = 33) -> None:
    """``Q(0) = 0`` with zero norms, zero indices and zero exact variance."""
    d = _dim(quantizer, d)
    qv = quantizer.quantize(np.zeros(d), Key(0))
    assert np.all(qv.norms == 0) and np.all(qv.indices == 0), "Q(0) must have zero norms and indices"
    assert np.all(qv.dequantize() == 0.0), "Q(0) must be 0"
    assert quantizer.exact_variance(np.zeros(d)) == 0.0, "exact variance of 0 must be 0"


def check_dimension_one(quantizer: BaseQuantizer) -> None:
    """``d = 1``: a float32 input is reproduced exactly (its norm is itself)."""
    if quantizer.dimension not in (None, 1):
        return
    for x in (np.float32(-2.5), np.float32(3e-8), np.float32(7.0)):
        v = np.array([x], np.float32)
        out = quantizer.quantize(v, Key(4)).dequantize()
        assert out[0] == x, f"d=1: Q({x}) = {out[0]}"


def check_bad_input(quantizer: BaseQuantizer, d: int = 16) -> None:
    """NaN/Inf, empty, integer dtype, wrong length and bad keys raise clear errors; an N-D array
    (a weight-shaped gradient) quantizes exactly as its C-order flat vector."""
    d = _dim(quantizer, d)
    good = test_vector(d, 5)
    cases = []
    for bad_val in (np.nan, np.inf, -np.inf):
        v = good.copy()
        v[d // 2] = bad_val
        cases.append((v, ValueError, "NaN or Inf"))
    nd = good.reshape(1, -1) if d % 2 else good.reshape(2, -1)
    assert quantizer.quantize(nd, Key(3)).equals(quantizer.quantize(good, Key(3))), (
        "an N-D array must quantize as its flat vector"
    )
    cases += [
        (good.astype(np.int64), TypeError, "dtype"),
        (np.array([], np.float64), ValueError, "non-empty"),
    ]
    if quantizer.dimension is not None:
        cases.append((np.ones(d + 1), ValueError, "length"))
    for v, exc, words in cases:
        try:
            quantizer.quantize(v, Key(0))
        except exc as e:
            assert words in str(e), f"error for bad input should mention {words!r}: {e}"
        else:
            raise AssertionError(f"bad input ({words}) was accepted")
    for bad_key in ("seed", -1, 1.5):
        try:
            quantizer.quantize(good, bad_key)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"bad key {bad_key!r} was accepted")


def quantizer_checks(n: int = 4000) -> tuple[Check, ...]:
    """The quantizer suite with ``n`` draws for the statistical checks (:data:`QUANTIZER_CHECKS`: 4000)."""
    return (
        Check("output_format", check_output_format),
        Check("zero_vector", check_zero_vector),
        Check("dimension_one", check_dimension_one),
        Check("reproducible", check_reproducible),
        Check("bad_input", check_bad_input),
        Check("unbiased", lambda q: check_unbiased(q, n=n)),
        Check("variance_matches_exact", lambda q: check_variance_matches_exact(q, n=n)),
    )


#: Every conformance check of a quantizer, by name (for :func:`qodasim.suite.parametrize_with_checks`).
QUANTIZER_CHECKS = quantizer_checks()


def check_quantizer(quantizer: BaseQuantizer, n: int = 4000) -> None:
    """Run every conformance check on ``quantizer``; one ``AssertionError`` lists every failure."""
    run_checks(quantizer, quantizer_checks(n))
