"""Certified windows for the exact-level DP (``qodasim.optimize._prune``): the block lower bounds are
lower bounds, the rounding tolerance measures the prefix sums' real errors, and the DP on the
windows returns the full DP's levels and cost bit for bit while computing only a few per cent of
its rows."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from qodasim.optimize import _dp, _prune, exact_levels, normalized_magnitudes
from qodasim.optimize.levels import _empirical_candidates, _prefix


def _problem(r):
    _, pts, wts = _empirical_candidates(r)
    W, B, G = _prefix(pts, wts)
    return pts, wts, W, B, G


def _data(kind, n, rng):
    if kind == "gauss":  # 2-norm normalized: every value far below 1
        return normalized_magnitudes(rng.standard_normal(n))
    if kind == "uniform":
        return rng.random(n)
    if kind == "exponential":
        return normalized_magnitudes(rng.exponential(size=n), "inf")
    if kind == "duplicates":  # few distinct values, unequal weights
        return np.round(rng.random(n) ** 2, 3)
    if kind == "subnormal":  # half the data below 1e-310
        return np.concatenate([rng.random(n // 2) * 1e-310, rng.random(n - n // 2)])
    if kind == "cauchy":  # heavy tails: most values tiny, a few near 1
        return normalized_magnitudes(rng.standard_cauchy(n), "inf")
    if kind == "ends":  # many exact 0s and 1s
        return np.concatenate([np.zeros(n // 3), np.ones(n // 3), rng.random(n - 2 * (n // 3))])
    if kind == "two_scales":  # two clusters of width 1e-12: costs at the rounding-noise level
        return np.concatenate([rng.random(n // 2) * 1e-12, 0.5 + rng.random(n - n // 2) * 1e-12])
    return np.repeat(np.arange(1, 400) / 400.0, 3)  # "grid": equal weights, many exact ties


def _exact_through(pts, W, B, G, alpha):
    """``F[i, j] + R[i, j]``: the exact best cost of a sequence with level ``i`` at ``j`` (quadratic
    DP forward and backward, NumPy)."""
    n = pts.size
    last = n - 1
    C = np.full((n, n), np.inf)
    for k in range(n):
        for j in range(k + 1, n):
            C[k, j] = _dp.interval_cost(pts, W, B, G, k, j)
    F = np.full((alpha + 2, n), np.inf)
    F[0, 0] = 0.0
    for i in range(1, alpha + 1):
        F[i, 1:last] = np.min(F[i - 1][:, None] + C, axis=0)[1:last]
    R = np.full((alpha + 2, n), np.inf)
    R[alpha + 1, last] = 0.0
    for i in range(alpha, 0, -1):
        R[i, 1:last] = np.min(C + R[i + 1][None, :], axis=1)[1:last]
    return F + R


@pytest.mark.parametrize("kind", ["gauss", "uniform", "duplicates", "grid"])
def test_block_bounds_are_lower_bounds_of_every_sequence_through_the_block(kind):
    """For every level ``i`` and every candidate ``j``, the bound of ``j``'s block is at most the exact
    best cost of a sequence with level ``i`` at ``j`` (quadratic DP, small instances, several block
    counts).  A bound built from the blocks' first instead of last candidates on the left fails."""
    rng = np.random.default_rng(3)
    for n_blocks in (4, 9, 40):
        pts, wts, W, B, G = _problem(_data(kind, 240, rng))
        alpha = 5
        f, e = _prune.blocks(pts, n_blocks)
        assert f[0] == 1 and e[-1] == pts.size - 2 and np.all(f[1:] == e[:-1] + 1) and np.all(e >= f)
        bound = _prune.block_bounds(pts, W, B, G, f, e, alpha)
        exact = _exact_through(pts, W, B, G, alpha)
        tol = _prune.tolerance(pts, wts, W, B, G, alpha)
        for i in range(1, alpha + 1):
            for b in range(f.size):
                assert bound[i, b] <= exact[i, f[b] : e[b] + 1].min() + tol, (n_blocks, i, b)


def test_prefix_errors_are_the_exact_errors():
    """``prefix_errors`` returns the largest distance of the rounded prefix sums from the exact sums
    (``Σ w``, ``Σ w x``, ``Σ w x²`` in rational arithmetic), to a relative 1e-9."""
    rng = np.random.default_rng(5)
    cases = [_problem(r) for r in (rng.random(3000), normalized_magnitudes(rng.standard_normal(3000)),
                                   np.round(rng.random(3000), 2))]  # fmt: skip
    x, w = np.sort(rng.random(3000)), rng.random(3000)  # weights whose running sum rounds
    cases.append((x, w, *_prefix(x, w)))
    for pts, wts, W, B, G in cases:
        got = _prune.prefix_errors(pts, wts, W, B, G)
        sw = sb = sg = Fraction(0)
        want = [Fraction(0)] * 3
        for i in range(pts.size):
            w, x = Fraction(float(wts[i])), Fraction(float(pts[i]))
            sw, sb, sg = sw + w, sb + w * x, sg + w * x * x
            for q, (arr, s) in enumerate(((W, sw), (B, sb), (G, sg))):
                want[q] = max(want[q], abs(Fraction(float(arr[i + 1])) - s))
        assert max(want) > 0  # the test sees rounding at all
        for g, w in zip(got, want, strict=True):
            assert abs(Fraction(g) - w) <= Fraction(1, 10**9) * w + Fraction(1, 10**300), (g, float(w))


@pytest.mark.parametrize(
    "kind", ["gauss", "uniform", "exponential", "duplicates", "grid", "subnormal", "cauchy", "ends"]
)
def test_windowed_dp_equals_the_full_dp_bit_for_bit(kind, monkeypatch):
    """On random instances (eight kinds of data, ``alpha`` from 1 to 31, block counts from 8 to the
    default) the DP on the certified windows gives the full DP's levels and cost exactly — and the
    windows are narrower than the full ones (pruning happened, so the comparison tests something)."""
    monkeypatch.setattr(_prune, "PRUNE_MIN", 64)
    rng = np.random.default_rng(11)
    kept = []
    for trial in range(12):
        n = int(rng.integers(300, 6000))
        pts, wts, W, B, G = _problem(_data(kind, n, rng))
        alpha = int((1, 2, 5, 14, 31, 3)[trial % 6])
        if pts.size - 2 <= alpha:
            continue
        nb = (8, 64, None)[trial % 3]
        win = _prune.windows(pts, wts, W, B, G, alpha, nb)
        assert win is not None
        lo, hi = win
        cost, chosen = _dp.dp_levels_windowed(pts, W, B, G, alpha, lo, hi)
        full_cost, full_chosen = _dp.dp_levels(pts, W, B, G, alpha)
        assert cost == full_cost and np.array_equal(chosen, full_chosen), (trial, n, alpha, nb)
        assert np.all(lo[1:] <= chosen) and np.all(chosen <= hi[1:])
        # nested like positions (every row of a window has a candidate): p_i ≥ p_{i−1} + 1
        assert np.all(lo[2:] >= lo[1:-1] + 1) and np.all(hi[1:-1] <= hi[2:] - 1), (trial, lo, hi)
        kept.append((hi[1:] - lo[1:] + 1).sum() / (alpha * (pts.size - 2 - alpha + 1)))
    if kind not in ("grid", "cauchy"):  # many optimal sequences (grid), costs near noise (cauchy)
        assert np.median(kept) < 0.75, kept


def test_no_windows_where_costs_are_rounding_noise(monkeypatch):
    """Two clusters of width 1e-12 make every cost ~1e-14, at the level of the formula's rounding: the
    divide and conquer itself can miss the quadratic DP's minimum there (it does on this instance), so
    windows — which would change which noisy answer comes out — are not used, and ``exact_levels``
    returns the full DP's answer."""
    monkeypatch.setattr(_prune, "PRUNE_MIN", 64)
    r = _data("two_scales", 4000, np.random.default_rng(1))
    pts, wts, W, B, G = _problem(r)
    for alpha in (2, 3):
        assert _prune.windows(pts, wts, W, B, G, alpha) is None
        fast, full = exact_levels(r, alpha), exact_levels(r, alpha, prune=False)
        assert "rows_kept" not in fast.info
        assert fast.psi == full.psi and np.array_equal(fast.levels.values, full.levels.values)
    assert exact_levels(r, 3, quadratic=True).psi < exact_levels(r, 3).psi  # the noise is real


def test_noise_is_judged_at_the_optimum_not_only_at_the_upper_bound(monkeypatch):
    """Two clusters of width ~5e-5 at 0 and 0.5 (found by a search over 400 seeds): the upper bound
    ``U`` is far above the optimum, so ``windows`` accepts the problem, but the optimum is within
    1e6 of the cost formula's rounding — and there the windows' divide and conquer returns another
    noisy minimum than the full one.  ``exact_levels`` checks the noise again at the windows' optimum
    and returns the full DP's answer."""
    monkeypatch.setattr(_prune, "PRUNE_MIN", 64)
    rng = np.random.default_rng(375)
    n = int(rng.integers(1000, 6000))
    alpha = int(rng.choice([3, 7, 14]))
    wd = 10.0 ** -rng.uniform(2, 4.5)
    r = np.concatenate([rng.random(n // 2) * wd, 0.5 + rng.random(n - n // 2) * wd])
    pts, wts, W, B, G = _problem(r)
    win = _prune.windows(pts, wts, W, B, G, alpha)
    assert win is not None  # the upper bound passes the noise rule
    cost, chosen = _dp.dp_levels_windowed(pts, W, B, G, alpha, *win)
    full_cost, full_chosen = _dp.dp_levels(pts, W, B, G, alpha)
    assert cost != full_cost and not _prune.above_noise(pts, W, B, G, alpha, full_cost)
    fast, full = exact_levels(r, alpha), exact_levels(r, alpha, prune=False)
    assert "rows_kept" not in fast.info
    assert fast.psi == full.psi == full_cost and np.array_equal(fast.levels.values, full.levels.values)


def test_exact_levels_prune_by_default_with_the_same_answer():
    """``exact_levels`` on 2^16 Gaussian magnitudes (above ``PRUNE_MIN``) computes under 20% of the DP
    rows and returns what ``prune=False`` returns, levels and Ψ."""
    r = normalized_magnitudes(np.random.default_rng(2).standard_normal(1 << 16))
    for alpha in (3, 14):
        fast, full = exact_levels(r, alpha), exact_levels(r, alpha, prune=False)
        assert fast.info["rows_kept"] < 0.2 and "rows_kept" not in full.info
        assert fast.psi == full.psi and np.array_equal(fast.levels.values, full.levels.values)


def test_adjacent_levels_at_the_windows_left_ends(monkeypatch):
    """Two heavy clusters at the two smallest values: the optimum puts levels 1 and 2 on the adjacent
    candidates ``x_1, x_2`` (the windows' tightest corner: ``lo[2] = lo[1] + 1``, and the layer's
    leftmost row has one candidate); mirrored, the last two levels on ``x_{N−2}, x_{N−1}``.  The
    pruned DP equals the quadratic DP there, also with windows from four coarse blocks."""
    monkeypatch.setattr(_prune, "PRUNE_MIN", 64)
    rng = np.random.default_rng(6)
    r = np.concatenate([np.full(2000, 0.3), np.full(2000, 0.4), 0.45 + 0.55 * rng.random(1500)])
    for alpha in (4, 5):
        fast, quad = exact_levels(r, alpha), exact_levels(r, alpha, quadratic=True)
        assert "rows_kept" in fast.info
        assert fast.psi == quad.psi and np.array_equal(fast.levels.values, quad.levels.values)
        assert fast.levels.values[1] == 0.3 and fast.levels.values[2] == 0.4
        pts, wts, W, B, G = _problem(r)
        lo, hi = _prune.windows(pts, wts, W, B, G, alpha, 4)  # coarse blocks: levels 1, 2 share one
        assert lo[1] == 1 and lo[2] == 2
        assert _dp.dp_levels_windowed(pts, W, B, G, alpha, lo, hi)[0] == quad.psi
        # mirrored: the last two levels on the two largest values (the windows' right ends)
        fast, quad = exact_levels(1.0 - r, alpha), exact_levels(1.0 - r, alpha, quadratic=True)
        assert fast.psi == quad.psi and np.array_equal(fast.levels.values, quad.levels.values)
        assert fast.levels.values[-3] == 0.6 and fast.levels.values[-2] == 0.7
        pts, wts, W, B, G = _problem(1.0 - r)
        lo, hi = _prune.windows(pts, wts, W, B, G, alpha, 4)
        assert hi[alpha] == pts.size - 2 and hi[alpha - 1] == pts.size - 3
        assert _dp.dp_levels_windowed(pts, W, B, G, alpha, lo, hi)[0] == quad.psi


def test_windows_are_enforced():
    """Windows that exclude the optimum's first level give a strictly worse cost (the windowed DP
    really restricts the paths)."""
    pts, wts, W, B, G = _problem(normalized_magnitudes(np.random.default_rng(4).standard_normal(2000)))
    alpha = 4
    cost, chosen = _dp.dp_levels(pts, W, B, G, alpha)
    lo, hi = _dp.full_windows(pts.size, alpha)
    hi[1] = chosen[0] - 1
    worse, other = _dp.dp_levels_windowed(pts, W, B, G, alpha, lo, hi)
    assert worse > cost and other[0] < chosen[0]


def _block_bounds_reference(pts, W, B, G, f, e, alpha):
    """The block DP of ``block_bounds`` as a plain quadratic NumPy loop over blocks."""
    nb, last = f.size, pts.size - 1
    C = np.full((nb, nb), np.inf)  # C[b, c] = C(e_b, f_c) for b < c
    for b in range(nb):
        for c in range(b + 1, nb):
            C[b, c] = _dp.interval_cost(pts, W, B, G, e[b], f[c])
    LF = np.empty((alpha + 1, nb))
    LB = np.empty((alpha + 1, nb))
    LF[1] = [_dp.interval_cost(pts, W, B, G, 0, f[b]) for b in range(nb)]
    LB[alpha] = [_dp.interval_cost(pts, W, B, G, e[b], last) for b in range(nb)]
    for i in range(2, alpha + 1):
        LF[i] = np.minimum(LF[i - 1], np.min(LF[i - 1][:, None] + C, axis=0))
    for i in range(alpha - 1, 0, -1):
        LB[i] = np.minimum(LB[i + 1], np.min(C + LB[i + 1][None, :], axis=1))
    return LF[1:] + LB[1:]


@pytest.mark.parametrize("kind", ["gauss", "uniform", "duplicates", "ends"])
def test_block_bounds_equal_the_quadratic_block_dp(kind):
    """The block DP by monotone minima returns the bounds of a plain quadratic loop over blocks (to
    1e-12 of the largest bound: the same terms, minima found by another route) — the bounds are not
    only valid but as tight as defined (a weaker bound, e.g. a block paired with itself through a
    reversed interval, which is ≤ 0, would still be valid)."""
    rng = np.random.default_rng(8)
    for nb in (6, 17, 60):
        pts, wts, W, B, G = _problem(_data(kind, int(rng.integers(400, 2000)), rng))
        f, e = _prune.blocks(pts, nb)
        for alpha in (1, 3, 7):
            got = _prune.block_bounds(pts, W, B, G, f, e, alpha)[1:]
            want = _block_bounds_reference(pts, W, B, G, f, e, alpha)
            scale = np.abs(want[np.isfinite(want)]).max()
            assert np.allclose(got, want, rtol=0, atol=1e-12 * scale), (kind, nb, alpha)


def test_blocks_are_narrow_in_count_and_in_value():
    """Each block lies inside one of ``n_blocks / 2`` equal-count splits of ``1 … N − 1`` and inside
    one of ``n_blocks / 2`` equal-value splits of ``[x_1, x_{N−1}]``; together they cover every
    interior candidate once."""
    rng = np.random.default_rng(12)
    for r in (normalized_magnitudes(rng.standard_normal(5000)), rng.random(3000) ** 4, _data("ends", 3000, rng)):
        pts = _problem(r)[0]
        last = pts.size - 1
        for nb in (2, 8, 64, 500):
            f, e = _prune.blocks(pts, nb)
            half = max(nb // 2, 1)
            assert f[0] == 1 and e[-1] == last - 1 and np.all(f[1:] == e[:-1] + 1) and np.all(e >= f)
            assert np.all(e - f + 1 <= -(-(last - 1) // half)), nb
            span = pts[last - 1] - pts[1]
            assert np.all(pts[e] - pts[f] <= span / half * (1 + 1e-12)), nb


def test_windows_only_from_prune_min_interior_candidates(monkeypatch):
    """``windows`` returns ``None`` below ``PRUNE_MIN`` interior candidates and windows from there on."""
    r = normalized_magnitudes(np.random.default_rng(13).standard_normal(3000))
    pts, wts, W, B, G = _problem(r)
    interior = pts.size - 2
    monkeypatch.setattr(_prune, "PRUNE_MIN", interior + 1)
    assert _prune.windows(pts, wts, W, B, G, 5) is None
    monkeypatch.setattr(_prune, "PRUNE_MIN", interior)
    assert _prune.windows(pts, wts, W, B, G, 5) is not None
    assert _prune.windows(pts, wts, W, B, G, 0) is None


def test_noise_terms_are_the_documented_formulas():
    """``evaluation_noise = 4ε(3B + G)`` and ``δ = 8(α + 2)(log2 N + 2)·(4(e_W + 2e_B + e_G) + 2·noise)
    + 64 N·tiny`` (the module's derivation), on one instance; and ``above_noise`` compares
    ``(α + 2)·noise`` with ``NOISE_FRACTION·cost``, inclusive."""
    g = np.random.default_rng(14).standard_normal(4000)
    eps, tiny = np.finfo(np.float64).eps, np.finfo(np.float64).tiny
    for norm in (2.0, "inf"):  # ∞-norm: the last candidate (1) carries data, so B[-1] ≠ B[-2]
        pts, wts, W, B, G = _problem(normalized_magnitudes(g, norm))
        noise = _prune.evaluation_noise(pts, W, B, G)
        assert noise == 4.0 * eps * (3.0 * B[-1] + G[-1])
        eW, eB, eG = _prune.prefix_errors(pts, wts, W, B, G)
        per = 4.0 * (eW + 2.0 * eB + eG) + 2.0 * noise
        for alpha in (1, 14):
            want = 8.0 * (alpha + 2) * (np.log2(pts.size) + 2.0) * per + 64.0 * pts.size * tiny
            assert _prune.tolerance(pts, wts, W, B, G, alpha) == want
            edge = (alpha + 2) * noise / _prune.NOISE_FRACTION
            assert _prune.above_noise(pts, W, B, G, alpha, edge * (1 + 1e-12))
            assert not _prune.above_noise(pts, W, B, G, alpha, edge * (1 - 1e-12))


def test_window_hulls_are_nested_like_positions(monkeypatch):
    """Where every level's feasible blocks are the same two middle blocks (bounds forced: the raw hulls
    then coincide, which the real bounds rarely produce), the windows are those hulls made nested:
    ``lo[i] = max(lo[i − 1] + 1, f_b)`` from the left, ``hi[i] = min(hi[i + 1] − 1, e_c)`` from the
    right — each level keeps room for the levels before and after it."""
    pts, wts, W, B, G = _problem(normalized_magnitudes(np.random.default_rng(15).standard_normal(3000)))
    monkeypatch.setattr(_prune, "PRUNE_MIN", 64)
    f, e = _prune.blocks(pts, 64)
    b, c = 20, 21
    alpha = 6

    def forced(x, W_, B_, G_, f_, e_, alpha_):
        out = np.full((alpha_ + 1, f_.size), np.inf)
        out[:, [b, c]] = 0.0
        return out

    monkeypatch.setattr(_prune, "block_bounds", forced)
    lo, hi = _prune.windows(pts, wts, W, B, G, alpha, 64)
    assert list(lo[1:]) == [f[b] + k for k in range(alpha)]
    assert list(hi[1:]) == [e[c] - alpha + 1 + k for k in range(alpha)]
