"""Automatic layer types: planted types recovered on synthetic layers, the pieces
(cost matrix, k-medoids, held-out variance, adjusted Rand index) checked by hand and against peers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qodasim.optimize import adjusted_rand_index, auto_types, normalized_magnitudes, optimize_levels
from qodasim.optimize.autotype import cost_matrix, heldout_mqv, kmedoids
from qodasim.optimize.distributions import Empirical, psi

FAMILIES = {
    "gauss": lambda rng, n: rng.standard_normal(n),
    "sparse": lambda rng, n: rng.standard_normal(n) * (rng.random(n) < 0.05),
    "heavy": lambda rng, n: rng.standard_t(2.5, n),
    "bimodal": lambda rng, n: np.sign(rng.standard_normal(n)) * (1 + 0.1 * rng.standard_normal(n)),
}


def planted(seed: int, kinds: int, n_layers: int = 24, spread: float = 0.25):
    """``n_layers`` layers of ``kinds`` families; each family has its own size (500–5000) and its
    layers vary by ±``spread`` around it; every layer has its own random scale."""
    rng = np.random.default_rng(seed)
    fams = list(FAMILIES)[:kinds]
    base = rng.integers(500, 5000, kinds)
    lab = np.arange(n_layers) % kinds
    rng.shuffle(lab)
    sizes = (base[lab] * rng.uniform(1 - spread, 1 + spread, n_layers)).astype(int)
    return [FAMILIES[fams[k]](rng, s) * np.exp(rng.uniform(-3, 3)) for k, s in zip(lab, sizes)], lab


def test_planted_types_are_recovered():
    """20 instances (2, 3 or 4 planted families, 24 layers): mean adjusted Rand index ≥ 0.9 (the
    issue's bar); measured 0.975, 16 of 20 exact, the worst 0.865 (one layer off, or one family split
    by its layers' sizes — which the variance criterion is right to prefer within ``tol``)."""
    aris = []
    for seed in range(20):
        layers, lab = planted(seed, 2 + seed % 3)
        aris.append(adjusted_rand_index(auto_types(layers, max_types=6).types, lab))
    assert np.mean(aris) >= 0.9, aris
    assert min(aris) >= 0.8, aris
    assert sum(a == 1.0 for a in aris) >= 14, aris


def test_one_family_gives_one_type_and_tables_cost_bits():
    layers, _ = planted(3, 1)
    found = auto_types(layers, max_types=5)
    assert found.n_types == 1 and not found.types.any()
    # the table penalty: a table of M·α·32 bits over n coordinates multiplies the variance by 4^(bits/n)
    for M, row in found.scores.items():
        n = sum(v.size for v in layers)
        assert row["score"] == pytest.approx(row["mqv"] * 4 ** (M * 3 * 32 / n), rel=1e-12)
        assert row["table_bits"] == M * 3 * 32


def test_heldout_variance_is_the_exact_variance_of_the_odd_coordinates():
    rng = np.random.default_rng(0)
    layers = [rng.standard_normal(300), rng.standard_t(3, 500)]
    rs = [normalized_magnitudes(v) for v in layers]
    mqv, levels = heldout_mqv(rs, [0, 0], 3)
    lv = optimize_levels(np.concatenate([r[0::2] for r in rs]), 3, "histogram").levels
    test = np.concatenate([r[1::2] for r in rs])
    assert levels[0] == lv
    assert mqv == pytest.approx(psi(lv, Empirical(test)), rel=1e-12)
    # and psi is the mean of the per-coordinate rounding variance (a − r)(r − b) between levels
    v = lv.values
    j = np.clip(np.searchsorted(v, test, side="right") - 1, 0, v.size - 2)
    assert mqv == pytest.approx(np.mean((test - v[j]) * (v[j + 1] - test)), rel=1e-10)


def test_kmedoids_recovers_blocks_of_a_cost_matrix():
    rng = np.random.default_rng(1)
    lab = np.repeat([0, 1, 2], 5)
    C = np.where(lab[:, None] == lab[None], 1.0, 5.0) + 0.1 * rng.random((15, 15))
    found = kmedoids(C, np.ones(15), 3, seed=0)
    assert adjusted_rand_index(found, lab) == 1.0
    assert found[0] == 0  # labels ordered by first appearance
    with pytest.raises(ValueError, match="k"):
        kmedoids(C, np.ones(15), 16)


def test_cost_matrix_is_each_layers_odd_half_under_every_layers_even_fit():
    rng = np.random.default_rng(2)
    rs = [normalized_magnitudes(rng.standard_normal(400)), normalized_magnitudes(rng.standard_t(2.5, 400))]
    C, w, levels = cost_matrix(rs, 3)
    assert C.shape == (2, 2) and np.all(w == 200)
    for i in range(2):
        assert levels[i] == optimize_levels(rs[i][0::2], 3, "histogram").levels
        for j in range(2):
            assert C[i, j] == psi(levels[j], Empirical(rs[i][1::2]))


def test_adjusted_rand_index_against_sklearn_and_by_hand():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(30):
        a, b = rng.integers(0, rng.integers(1, 6), 40), rng.integers(0, rng.integers(1, 6), 40)
        assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    assert adjusted_rand_index([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"max_types": 0}, "max_types"), ({"alpha": 0}, "alpha"), ({"every": 0}, "every"), ({"tol": -1}, "tol")],
)
def test_bad_arguments_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        auto_types([np.ones(4), np.arange(4.0)], **kw)


def test_layers_too_small_or_missing():
    with pytest.raises(ValueError, match="non-empty"):
        auto_types([])
    with pytest.raises(ValueError, match="2 coordinates"):
        auto_types([np.ones(1), np.ones(5)])
    assert auto_types([np.zeros(6), np.ones(6)], max_types=2).n_types in (1, 2)  # an all-zero layer is allowed


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
