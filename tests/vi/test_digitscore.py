"""The calibrated digit measure: the Fréchet distance against an independent matrix square root and
its 1-D closed form, the classifier's hand-written gradient against finite differences, its held-out
accuracy, class coverage, and the ordering the measure must give the trivial generators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from qodasim.vi import digitscore as ds


@pytest.fixture(scope="module")
def split():
    return ds.load_digits_split(0)


@pytest.fixture(scope="module")
def classifier(split):
    Xt, yt, _, _ = split
    return ds.train_classifier(Xt, yt, seed=0)


@pytest.mark.parametrize("p, n, seed", [(1, 50, 0), (3, 200, 1), (12, 400, 2)])
def test_frechet_distance_against_scipy_sqrtm(p, n, seed):
    """``‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂)`` with scipy's general matrix square root, on
    samples with different means, scales and correlations."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + 0.5
    B = 2.0 * rng.standard_normal((n + 7, p)) @ rng.standard_normal((p, p))
    S1, S2 = np.atleast_2d(np.cov(A, rowvar=False)), np.atleast_2d(np.cov(B, rowvar=False))
    mu = A.mean(0) - B.mean(0)
    ref = mu @ mu + np.trace(S1) + np.trace(S2) - 2 * np.trace(scipy.linalg.sqrtm(S1 @ S2)).real
    assert ds.frechet_distance(A, B) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert ds.frechet_distance(B, A) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_frechet_distance_one_dimension_and_invariances():
    """In 1-D it is ``(m₁ − m₂)² + (s₁ − s₂)²``; zero for one sample against itself; unchanged by a
    rotation of the features."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(300), 3 * rng.standard_normal(200) + 1
    expect = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert ds.frechet_distance(a[:, None], b[:, None]) == pytest.approx(expect, rel=1e-12)
    A, B = rng.standard_normal((100, 5)), rng.standard_normal((120, 5)) + 0.3
    assert abs(ds.frechet_distance(A, A)) < 1e-10
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert ds.frechet_distance(A @ Q, B @ Q) == pytest.approx(ds.frechet_distance(A, B), rel=1e-10)


@pytest.mark.parametrize("A, B", [(np.zeros((5, 3)), np.zeros((5, 4))), (np.zeros(5), np.zeros(5)),
                                  (np.zeros((1, 3)), np.zeros((5, 3)))])  # fmt: skip
def test_frechet_distance_refuses_mismatched_samples(A, B):
    with pytest.raises(ValueError, match="A and B"):
        ds.frechet_distance(A, B)


def test_classifier_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((7, 5)), rng.integers(0, 3, 7)
    widths = (5, 4, 3, 3)
    params = []
    for a, b in zip(widths[:-1], widths[1:]):
        params += [rng.standard_normal((a, b)), rng.standard_normal(b)]
    _, grads = ds._grads(params, X, y, 0.1)
    h = 1e-6
    for i, p in enumerate(params):
        for j in range(p.size):
            up = [q.copy() for q in params]
            dn = [q.copy() for q in params]
            up[i].flat[j] += h
            dn[i].flat[j] -= h
            fd = (ds._grads(up, X, y, 0.1)[0] - ds._grads(dn, X, y, 0.1)[0]) / (2 * h)
            assert grads[i].flat[j] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_classifier_is_accurate_deterministic_and_checks_its_input(split, classifier):
    Xt, yt, Xh, yh = split
    assert np.mean(classifier.predict(Xh) == yh) >= 0.95
    again = ds.train_classifier(Xt, yt, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(classifier.params, again.params))
    assert classifier.features(Xh).shape == (Xh.shape[0], 32)
    with pytest.raises(ValueError, match="X must have shape"):
        classifier.features(Xh[:, :10])
    with pytest.raises(ValueError, match="steps"):
        ds.train_classifier(Xt, yt, steps=0)


def test_coverage_counts_classes(split, classifier):
    Xt, yt, Xh, _ = split
    covered, shares = ds.class_coverage(classifier, Xh)
    assert covered == 10 and shares.sum() == pytest.approx(1.0)
    covered, shares = ds.class_coverage(classifier, Xt[yt == 3])
    assert covered == 1 and np.argmax(shares) == 3
    mix = np.concatenate([Xt[yt == 3][:100], Xt[yt == 5][:4]])  # class 5: 3.8% ≥ 2.5%; 2 of them: 2.0%
    assert ds.class_coverage(classifier, mix)[0] == 2
    assert ds.class_coverage(classifier, mix[:-2])[0] == 1
    with pytest.raises(ValueError, match="min_share"):
        ds.class_coverage(classifier, Xh, min_share=2.0)


def test_trivial_generators_and_the_measure_ranks_them(split, classifier):
    """Real digits score far below a Gaussian fit, which scores far below one class; the k-means
    centroids are 10 distinct images; the Gaussian fit's mean is the data's (MC: ≤ 5 standard errors)."""
    Xt, yt, Xh, _ = split
    gen = ds.trivial_generators(Xt, yt, 512, seed=0)
    assert set(gen) == {"gaussian fit", "k-means centroids", "one class (8)"}
    assert all(S.shape == (512, 64) for S in gen.values())
    assert len(np.unique(gen["k-means centroids"], axis=0)) == 10
    se = Xt.std(0) / np.sqrt(512)
    assert np.all(np.abs(np.clip(Xt.mean(0), -1, 1) - gen["gaussian fit"].mean(0)) <= 5 * se + 0.05)
    Fh = classifier.features(Xh)
    real = ds.frechet_distance(classifier.features(Xt[:512]), Fh)
    fd = {k: ds.frechet_distance(classifier.features(S), Fh) for k, S in gen.items()}
    assert 3 * real < fd["gaussian fit"] < fd["one class (8)"] / 5
    with pytest.raises(ValueError, match="one_class"):
        ds.trivial_generators(Xt, yt, 5, one_class=11)


def test_the_split_is_the_wgan_problems():
    pytest.importorskip("jax")
    from qodasim.vi.wgan import wgan

    p = wgan("digits", hidden=4, seed=5)
    Xt, _, Xh, _ = ds.load_digits_split(5)
    assert np.array_equal(Xt, p.train) and np.array_equal(Xh, p.held_out)
