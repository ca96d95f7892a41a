"""The counter-based ziggurat normals of the oracle noise (``qodasim.vi._normal``).

Statistical checks use one fixed stream of n = 2^21 values; every tolerance is 5 Monte Carlo standard
errors of the statistic under an exact N(0, 1) (never a standard error that can be zero: the
probabilities are exact normal tails > 0), so a correct sampler fails with probability < 1e-6 per
check and a broken wedge, tail or layer table fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qodasim import threads
from qodasim.rng import GOLDEN, MASK64, mix64
from qodasim.vi import NoiseModel
from qodasim.vi import _normal as N

NSTAT = 1 << 21


def _reference(seed: int, worker: int, call: int, count: int) -> tuple[np.ndarray, dict]:
    """Plain-Python ziggurat on Python integers: the module docstring's words and algorithm, written
    out again; also counts which branch decided each value."""
    X, F = N.ZIG_X, N.ZIG_F
    g = lambda k: (k * GOLDEN) & MASK64  # noqa: E731
    h = mix64((seed + g(1)) & MASK64)
    h = mix64(h ^ ((worker + g(2)) & MASK64))
    h = mix64(h ^ ((call + g(3)) & MASK64))
    base = mix64(h ^ 0x6E6F697365C0FFEE)

    def word(a, n):
        return mix64((mix64((base + a * g(3)) & MASK64) + (n + 1) * GOLDEN) & MASK64)

    def unif(w):
        return (w >> 11) * 2.0**-53

    out, seen = np.empty(count), {"fast": 0, "wedge": 0, "tail": 0, "reject": 0}
    for n in range(count):
        a, w = 0, word(0, n)
        while True:
            i, neg = w & 255, (w >> 8) & 1
            x = unif(w) * X[i]
            if x < X[i + 1]:
                seen["fast" if a == 0 else "reject"] += 1
                break
            if i == 0:
                while True:
                    a += 1
                    u1 = 1.0 - unif(word(a, n))
                    a += 1
                    u2 = 1.0 - unif(word(a, n))
                    t = -math.log(u1) / X[1]
                    if -2.0 * math.log(u2) > t * t:
                        break
                x = X[1] + t
                seen["tail"] += 1
                break
            a += 1
            if F[i] + unif(word(a, n)) * (F[i + 1] - F[i]) < math.exp(-0.5 * x * x):
                seen["wedge"] += 1
                break
            a += 1
            w = word(a, n)
        out[n] = -x if neg else x
    return out, seen


def test_kernel_equals_the_plain_python_reference_bit_for_bit():
    """Fast path, wedges, tails and rejections: every branch is taken in 40 000 values."""
    want, seen = _reference(11, 3, 5, 40_000)
    assert min(seen.values()) > 0, seen
    got = N.normals(11, 3, 5, 40_000)
    assert np.array_equal(got, want)


def test_tables_are_the_ziggurat():
    """Every layer has the area v, the top layer closes at f(0) = 1, edges decrease to 0."""
    X, F = N.ZIG_X, N.ZIG_F
    areas = X[1:-2] * (F[2:-1] - F[1:-2])
    assert np.allclose(areas, N.V_AREA, rtol=1e-10, atol=0)
    assert abs(N.V_AREA / X[255] + F[255] - 1.0) < 1e-9
    assert np.all(np.diff(X) < 0) and X[-1] == 0.0
    # the base layer: rectangle [0, r]·f(r) plus the tail mass √(π/2)·erfc(r/√2) is v
    assert abs(N.R_EDGE * F[1] + math.sqrt(math.pi / 2) * math.erfc(N.R_EDGE / math.sqrt(2)) - N.V_AREA) < 1e-12


@pytest.fixture(scope="module")
def z():
    return N.normals(2024, 0, 1, NSTAT)


def test_moments_within_five_standard_errors(z):
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3.0) < 5 * math.sqrt(96 / n)  # Var(z⁴) = 105 − 9


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.0, N.R_EDGE, 4.0])
def test_tail_frequencies_within_five_standard_errors(z, t):
    """P(z > t) and P(z < −t) separately (the sign bit and the tail beyond the ziggurat's edge r)."""
    p = stats.norm.sf(t)
    se = math.sqrt(p * (1 - p) / z.size)
    assert abs(np.mean(z > t) - p) < 5 * se
    assert abs(np.mean(z < -t) - p) < 5 * se


def test_kolmogorov_smirnov(z):
    """√n·D below the Kolmogorov distribution's 1 − 1e-6 quantile (≈ 2.6)."""
    d = stats.kstest(z, "norm").statistic
    assert math.sqrt(z.size) * d < stats.kstwobign.ppf(1 - 1e-6)


def test_layer_frequencies_are_uniform(z):
    """Each of the 256 layers carries the same mass v: the values in |z| ∈ [X_{i+1}, X_i) of the
    rectangle part follow from the tables; checked as a chi-square over the bins of the edges."""
    X = N.ZIG_X[1:]  # r, X_2, …, 0
    edges = np.concatenate([[0.0], X[::-1][1:], [np.inf]])
    counts = np.histogram(np.abs(z), edges)[0]
    cdf = 2 * stats.norm.cdf(edges) - 1
    expect = np.diff(cdf) * z.size
    chi2 = float(np.sum((counts - expect) ** 2 / expect))
    assert chi2 < stats.chi2.ppf(1 - 1e-6, counts.size - 1)


def test_streams_are_pure_functions_of_seed_worker_call():
    """Different (seed, worker, call) give different values; the same give the same, in any batch."""
    a = N.normals(1, 2, 3, 1000)
    assert np.array_equal(a, N.normals(1, 2, 3, 1000))
    assert np.array_equal(a[:10], N.normals(1, 2, 3, 10))
    for other in ((2, 2, 3), (1, 3, 3), (1, 2, 4)):
        b = N.normals(*other, 1000)
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(1000)


def test_noise_streams_differ_from_the_quantizer_uniform_streams():
    """The noise words are not the rounding uniforms of the same (seed, worker, round)."""
    from qodasim.rng import Key, stream_base, uniforms

    base = stream_base(Key(5, 1, 2), 0)
    u = uniforms(base, np.arange(1000))
    z = N.normals(5, 1, 2, 1000)
    assert abs(np.corrcoef(u, stats.norm.cdf(z))[0, 1]) < 5 / math.sqrt(1000)


@pytest.mark.parametrize("kind", ["absolute", "relative", "mixed"])
def test_parallel_fill_equals_serial_and_workers_and_replicas_are_independent_of_k_and_r(monkeypatch, kind):
    """The thread-pool fill equals the serial one bit for bit; worker k's block equals its own draw
    (an MPI rank's); replica 0 is the same for R = 1 and R = 3."""
    noise = NoiseModel(kind, sigma=0.7, sigma_rel=0.3)
    A = np.random.default_rng(0).standard_normal((3, 700))
    serial = noise.sample(A, 5, 9, 4)
    monkeypatch.setattr(threads, "PARALLEL_MIN", 0)
    parallel = noise.sample(A, 5, 9, 4)
    assert np.array_equal(serial, parallel)

    class P:
        def operator(self, X):
            return X

    for k in range(5):
        assert np.array_equal(noise.sample_worker(P(), A, k, 9, 4), serial[:, k])
    assert np.array_equal(noise.sample(A[:1], 2, 9, 4)[0], serial[0, :2])


def test_absolute_noise_has_variance_sigma_squared():
    """E‖U‖² = σ² (THEORY §5): over 400 draws of d = 500, within 5 standard errors."""
    sigma, d, K = 0.8, 500, 400
    U = NoiseModel("absolute", sigma).sample(np.zeros((1, d)), K, 3, 0)[0]
    sq = (U**2).sum(axis=1)
    assert abs(sq.mean() - sigma**2) < 5 * sq.std(ddof=1) / math.sqrt(K)


@pytest.mark.parametrize("kind", ["relative", "mixed"])
def test_relative_and_mixed_noise_variances(kind):
    """E‖U‖² = σ_R‖A‖² (relative) and σ² + σ_R‖A‖² (mixed: two independent draws), per replica row,
    over 400 workers, within 5 standard errors; a zero row gets no relative noise."""
    sigma, sigma_rel, d, K = 0.6, 0.25, 300, 400
    A = np.random.default_rng(1).standard_normal((3, d))
    A[2] = 0.0
    U = NoiseModel(kind, sigma=sigma, sigma_rel=sigma_rel).sample(A, K, 5, 2) - A[:, None]
    for r in range(3):
        want = sigma_rel * float(A[r] @ A[r]) + (sigma**2 if kind == "mixed" else 0.0)
        sq = (U[r] ** 2).sum(axis=1)
        if want == 0.0:
            assert np.all(sq == 0.0)
        else:
            assert abs(sq.mean() - want) < 5 * sq.std(ddof=1) / math.sqrt(K)


def test_replica_rows_and_mixed_planes_draw_independent_values():
    """Mixed noise reads planes 0 (absolute) and 1 (relative) of each replica row; a plane index past
    P − 1 would reuse the next row's absolute draw (found by mutation testing).  With both parts of
    equal variance that correlates consecutive rows by 1/2: checked ≈ 0 within 5 standard errors."""
    d, K = 50, 400
    A = np.ones((2, d))
    noise = NoiseModel("mixed", sigma=math.sqrt(0.25 * d), sigma_rel=0.25)  # σ² = σ_R‖A‖²
    U = noise.sample(A, K, 3, 1) - A[:, None]
    c = np.corrcoef(U[0].ravel(), U[1].ravel())[0, 1]
    assert abs(c) < 5 / math.sqrt(K * d)


def test_each_kind_uses_only_its_own_level():
    """Absolute noise ignores ``sigma_rel`` and relative noise ignores ``sigma`` (found by mutation
    testing: an ``or`` for the ``and`` of the relative switch left the suite green)."""
    A = np.random.default_rng(2).standard_normal((2, 40))
    for kind, own, other in (("absolute", "sigma", "sigma_rel"), ("relative", "sigma_rel", "sigma")):
        plain = NoiseModel(kind, **{own: 0.5}).sample(A, 3, 1, 0)
        assert np.array_equal(NoiseModel(kind, **{own: 0.5, other: 0.9}).sample(A, 3, 1, 0), plain)
        assert not np.array_equal(plain, np.broadcast_to(A[:, None], plain.shape))
