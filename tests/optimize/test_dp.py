"""The exact level DP's machinery: monotone minima, packed arg-minima, the chunked and parallel row minima."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.optimize import (
    Empirical,
    brute_force_levels,
    exact_levels,
    normalized_magnitudes,
    psi,
)


@pytest.mark.parametrize("alpha", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_dp_matches_brute_force(alpha, seed):
    rng = np.random.default_rng(seed)
    r = np.round(rng.random(14) ** 2, 6)
    bf = brute_force_levels(r, alpha)
    ex = exact_levels(r, alpha)
    quad = exact_levels(r, alpha, quadratic=True)
    assert np.isclose(ex.psi, bf.psi, rtol=1e-10, atol=1e-15)
    assert np.isclose(quad.psi, bf.psi, rtol=1e-10, atol=1e-15)
    assert np.isclose(psi(ex.levels, Empirical(r)), ex.psi, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("alpha", [1, 2, 5, 9])
@pytest.mark.parametrize("data", ["grid", "gaussian"])
def test_monotone_minima_dp_equals_the_quadratic_dp_exactly(alpha, data):
    """Same cost and the same chosen levels, ties included: both take the first (leftmost) minimum,
    which the divide and conquer keeps because leftmost arg-minima of a Monge array are monotone.
    A grid of equally weighted points makes many exact ties."""
    rng = np.random.default_rng(alpha)
    if data == "grid":
        r = np.repeat(np.arange(1, 64) / 64.0, 3)
    else:
        r = normalized_magnitudes(rng.standard_normal(400))
    ex, quad = exact_levels(r, alpha), exact_levels(r, alpha, quadratic=True)
    assert ex.psi == quad.psi and np.array_equal(ex.levels.values, quad.levels.values)


@pytest.mark.parametrize("parallel_min", [0, 1 << 62])
@pytest.mark.parametrize("alpha", [3, 12])
def test_parallel_monotone_minima_equals_the_quadratic_dp_at_every_thread_count(alpha, parallel_min, monkeypatch):
    """The DP solves the recursion's top levels serially and the 64 subtrees below them in parallel
    (``_dp.SPLIT_DEPTH``); each subtree's rows and candidate bounds are fixed by the rows above, so
    the answer is the quadratic DP's, bit for bit, with one thread or two — and so is its serial
    twin (``parallel_min``: the DP's work threshold forced both ways)."""
    import numba

    from qodasim.optimize import _dp

    monkeypatch.setattr(_dp, "DP_PARALLEL_MIN", parallel_min)
    r = normalized_magnitudes(np.random.default_rng(alpha).standard_normal(3000))
    quad = exact_levels(r, alpha, quadratic=True)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            ex = exact_levels(r, alpha)
            assert ex.psi == quad.psi and np.array_equal(ex.levels.values, quad.levels.values), threads
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_chunked_top_rows_keep_the_first_minimum(chunk, monkeypatch):
    """The top levels' long rows are split into chunks combined in order; on a grid of equally
    weighted points (many exact ties across chunk boundaries) any chunk size gives the quadratic
    DP's levels and cost exactly."""
    from qodasim.optimize import _dp
    from qodasim.optimize.levels import _empirical_candidates, _prefix

    monkeypatch.setattr(_dp, "DP_PARALLEL_MIN", 0)  # the parallel kernel, whose chunks are combined
    for r in (np.repeat(np.arange(1, 256) / 256.0, 2), normalized_magnitudes(np.random.default_rng(9).random(700))):
        _, pts, wts = _empirical_candidates(r)
        W, B, G = _prefix(pts, wts)
        for alpha in (1, 4, 9):
            cost, chosen = _dp.dp_levels(pts, W, B, G, alpha, chunk)
            qcost, qchosen = _dp.dp_levels_quadratic(pts, W, B, G, alpha)
            assert cost == qcost and np.array_equal(chosen, qchosen), alpha


def test_packed_arg_minima_round_trip():
    """The DP keeps each layer's non-decreasing arg-minima as bits (one per row, one per unit step):
    unpacking gives back every row's value — random sequences with repeats, long jumps (whole zero
    words), a single row, rows at word boundaries — and the store holds no more bits than
    ``arg_words`` reserved (the next layer's words stay zero)."""
    from qodasim.optimize import _dp

    rng = np.random.default_rng(21)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        jlo = int(rng.integers(0, 50))
        jhi = jlo + n - 1
        kmin = int(rng.integers(0, 10))
        steps = rng.choice([0, 0, 1, 2, 63, 64, 65, 500], size=n) * (rng.random(n) < 0.6)
        steps[0] = 0
        seq = kmin + np.cumsum(steps)
        kmax = int(seq[-1]) + int(rng.integers(0, 3))
        arg_t = np.zeros(jhi + 5, np.int32)
        arg_t[jlo : jhi + 1] = seq
        lo, hi = np.array([0, kmin, jlo]), np.array([0, kmax, jhi])
        off = _dp.arg_words(lo, hi)  # layer 1: rows [lo[2], hi[2]], candidates [lo[1], hi[1]]
        w0 = int(rng.integers(0, 3))
        bits = np.zeros(w0 + off[-1] + 2, np.uint64)
        base = _dp.pack_args(arg_t, jlo, jhi, bits, w0)
        assert base == seq[0]
        assert not bits[:w0].any() and not bits[w0 + off[-1] :].any(), trial
        assert sum(bin(int(b)).count("1") for b in bits) == n
        for j in range(jlo, jhi + 1):
            assert _dp.unpack_arg(bits, w0, base, jlo, j) == arg_t[j], (trial, j)


def test_packing_refuses_decreasing_arg_minima():
    from qodasim.optimize import _dp

    bits = np.zeros(4, np.uint64)
    with pytest.raises(RuntimeError, match="monotone"):
        _dp.pack_args(np.array([3, 5, 4], np.int32), 0, 2, bits, 0)


def test_vector_first_minimum_equals_the_serial_scan():
    """``_argmin.first_min8`` (8 lanes, then the lanes combined) continued serially over the tail gives
    the serial scan's index and value (its sign too) on every length 0..69 and on tie-heavy, ±0,
    NaN- and ∞-laden and all-∞ arrays (the DP's rows take it from 16 candidates on)."""
    from numba import njit

    from qodasim.optimize._argmin import first_min8

    @njit
    def serial(v):
        best, bq = np.inf, 0
        for q in range(v.size):
            if v[q] < best:
                best, bq = v[q], q
        return best, bq

    @njit
    def lanes(v):
        n = v.size
        q = first_min8(v, n)
        best, bq = np.inf, 0
        if q >= 0:
            best, bq = v[q], q
        for k in range(n - n % 8, n):
            if v[k] < best:
                best, bq = v[k], k
        return best, bq

    rng = np.random.default_rng(8)
    for trial in range(4000):
        n = trial % 70
        kind = trial % 5
        if kind == 0:
            v = rng.integers(0, 4, n).astype(float)
        elif kind == 1:
            v = rng.standard_normal(n)
        elif kind == 2:
            v = np.where(rng.random(n) < 0.3, np.inf, rng.integers(0, 3, n).astype(float))
        elif kind == 3:
            v = np.where(rng.random(n) < 0.3, np.nan, rng.integers(-1, 2, n) * 0.0)  # NaN, +0 and −0
        else:
            v = np.full(n, np.inf)
        (a, i), (b, k) = serial(v), lanes(v)
        assert i == k and np.array_equal(np.array([a]), np.array([b]), equal_nan=True), (trial, n)
        assert np.signbit(a) == np.signbit(b), (trial, n)


def test_dp_row_minimum_at_every_width_and_position():
    """One DP row (``_dp._row_min``) over ``w = 1..70`` candidates returns the serial scan's first
    minimum wherever it lies — the vector lanes' part, the serial tail, the boundary between them —
    and the first of tied minima."""
    from numba import njit

    from qodasim.optimize import _dp
    from qodasim.optimize.levels import _empirical_candidates, _prefix

    @njit
    def row(x, W, B, G, prev, klo, top, j):
        vals = np.empty(top + 1 - klo)
        out_v, out_k = np.empty(1), np.empty(1, np.int64)
        _dp._row_min(x, W, B, G, prev, vals, klo, top, j, out_v, out_k, 0)
        return out_v[0], out_k[0]

    _, x, wts = _empirical_candidates(normalized_magnitudes(np.random.default_rng(5).random(200)))
    W, B, G = _prefix(x, wts)
    klo, j = 3, x.size - 1
    for w in range(1, 71):
        for p in range(w):
            for tie in (None, p + 1 + (p + 1 < w) * ((w - p) // 2)):
                prev = np.zeros(x.size)
                prev[klo + p] = -1e6
                if tie is not None and tie < w:
                    prev[klo + tie] = -1e6 + (_dp.interval_cost(x, W, B, G, klo + p, j)
                                              - _dp.interval_cost(x, W, B, G, klo + tie, j))  # fmt: skip
                vals = prev[klo : klo + w] + np.array([_dp.interval_cost(x, W, B, G, k, j)
                                                       for k in range(klo, klo + w)])  # fmt: skip
                best, k = row(x, W, B, G, prev, klo, klo + w - 1, j)
                assert k == klo + int(np.argmin(vals)) and best == vals.min(), (w, p, tie)
