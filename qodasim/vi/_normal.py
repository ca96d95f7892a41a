"""Counter-based standard normals for the oracle noise (private; use :class:`qodasim.vi.NoiseModel`).

Every normal is a pure function of ``(base, n)``: the stream base of ``(seed, worker, call)`` and the
flat index ``n`` of the value in the worker's ``(R, P, d)`` draw — no generator state, no seeding per
call, the same values in any order, on any thread count, in one call for all workers or one per
worker (an MPI rank).  Attempt ``a`` of value ``n`` reads the 64-bit word
``mix64(key_a + (n + 1)·φ)`` with ``key_a = mix64(base + a·φ₃)`` (SplitMix64 as a hash, as the
quantizer's uniforms, :mod:`qodasim.rng`; ``φ₃`` a domain constant).

Sampler: the ziggurat method of Marsaglia & Tsang ("The Ziggurat Method for Generating Random
Variables", J. Stat. Softw. 5(8), 2000) with 256 layers of area ``v`` under ``f(x) = exp(−x²/2)``,
rightmost edge ``r``; the tail beyond ``r`` by Marsaglia's (1964) method: ``a = −ln(U₁)/r``,
``b = −ln(U₂)`` until ``2b > a²``, then ``r + a``.  From one word: bits 0–7 the layer, bit 8 the sign,
the top 53 bits the uniform ``U = (w >> 11)·2^{−53}``; ``x = U·X_i`` is accepted at once when
``x < X_{i+1}`` (≈ 99% of draws, no transcendental function).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..quantize._numba import _serial_twin
from ..rng import GOLDEN, MASK64, MIX1, MIX2
from ..threads import use_parallel

_N = 256
#: Ziggurat constants for 256 layers (Marsaglia & Tsang 2000): the rightmost edge ``r`` and the area
#: ``v`` of every layer (the base layer: the rectangle ``[0, r] × [0, f(r)]`` plus the tail).
R_EDGE = 3.6541528853610088
V_AREA = 4.92867323399e-3


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """``X[0..256]`` (``X[0] = v/f(r)``, ``X[1] = r``, ``X[i+1] = f^{−1}(v/X[i] + f(X[i]))``,
    ``X[256] = 0``) and ``F[i] = f(X[i])``."""
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    X = np.empty(_N + 1)
    X[0] = V_AREA / f(R_EDGE)
    X[1] = R_EDGE
    for i in range(1, _N - 1):
        X[i + 1] = math.sqrt(-2.0 * math.log(V_AREA / X[i] + f(X[i])))
    X[_N] = 0.0
    F = np.array([f(x) for x in X])
    return X, F


ZIG_X, ZIG_F = _tables()

_GOLD = np.uint64(GOLDEN)
_M1, _M2 = np.uint64(MIX1), np.uint64(MIX2)
_S30, _S27, _S31, _S11, _S8 = (np.uint64(k) for k in (30, 27, 31, 11, 8))
_LAYER = np.uint64(_N - 1)
_ONE = np.uint64(1)
#: Domain constants: the noise streams never coincide with the quantizer's rounding streams.
_G3 = np.uint64((3 * GOLDEN) & MASK64)
_NOISE = np.uint64(0x6E6F697365C0FFEE)
_G1, _G2, _G5 = (np.uint64((k * GOLDEN) & MASK64) for k in (1, 2, 5))
_TWO_M53 = 2.0**-53


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def noise_base(seed, worker, call):
    """Stream base of ``(seed, worker, call)``: chained ``mix64`` (uint64 arithmetic, wraps mod 2^64)."""
    h = _mix(np.uint64(seed) + _G1)
    h = _mix(h ^ (np.uint64(worker) + _G2))
    h = _mix(h ^ (np.uint64(call) + _G3))
    return _mix(h ^ _NOISE)


@njit(inline="always", cache=True)
def _word(key, n):
    return _mix(key + (n + _ONE) * _GOLD)


@njit(inline="always", cache=True)
def _uniform(w):
    return np.float64(w >> _S11) * _TWO_M53


@njit(inline="always", cache=True)
def _attempt(base, a, n):
    """Word ``a`` of value ``n``: ``mix64(key_a + (n + 1)·φ)``, ``key_a = mix64(base + a·φ₃)``."""
    return _word(_mix(base + a * _G3), n)


@njit(cache=True)
def _slow_normal(base, n, w, X, F):
    """The rare draws (≈ 1%): a wedge test, the tail, or a rejection — each further uniform is the
    next word ``a = 1, 2, …`` of value ``n``."""
    a = np.uint64(0)
    while True:
        i = np.int64(w & _LAYER)
        neg = (w >> _S8) & _ONE
        x = _uniform(w) * X[i]
        if x < X[i + 1]:
            return -x if neg else x
        if i == 0:  # the tail beyond r (Marsaglia 1964)
            while True:
                a += _ONE
                u1 = 1.0 - _uniform(_attempt(base, a, n))  # in (0, 1]: a finite logarithm
                a += _ONE
                u2 = 1.0 - _uniform(_attempt(base, a, n))
                t = -math.log(u1) / X[1]
                if -2.0 * math.log(u2) > t * t:
                    return -(X[1] + t) if neg else X[1] + t
        a += _ONE  # a wedge: y uniform over the layer's height, accept under the curve
        y = F[i] + _uniform(_attempt(base, a, n)) * (F[i + 1] - F[i])
        if y < math.exp(-0.5 * x * x):
            return -x if neg else x
        a += _ONE  # rejected: a fresh draw
        w = _attempt(base, a, n)


@njit(cache=True)
def _draw(base, off, z, X, F):
    """``z[i]`` = value ``off + i`` of the stream ``base``.  Each branch stores its own result: with
    one returned value merged from the fast and the slow path the loop ran 4x slower."""
    key0 = _mix(base)
    for p in range(z.size):
        n = off + np.uint64(p)
        w = _word(key0, n)
        i = np.int64(w & _LAYER)
        x = _uniform(w) * X[i]
        if x < X[i + 1]:  # the sign as an exact factor ±1 (a 50/50 branch is mispredicted half the time)
            z[p] = np.float64(1 - 2 * np.int64((w >> _S8) & _ONE)) * x
        else:
            z[p] = _slow_normal(base, n, w, X, F)


@njit(parallel=True, cache=True)
def _fill_rows_parallel(bases, A, scale, P, p, out, X, F):
    """``out[r, k] = A[r] + scale·z`` for every worker ``k`` (row ``k`` of ``bases``) and replica ``r``,
    ``z`` = draw ``p`` of ``P`` of that worker's stream; ``out`` is ``(R, K, d)``.  One task per worker,
    each with its own scratch row, so the values do not depend on the thread count."""
    R, K, d = out.shape
    for k in prange(K):
        z = np.empty(d)
        for r in range(R):
            _draw(bases[k], np.uint64((r * P + p) * d), z, X, F)
            for i in range(d):
                out[r, k, i] = A[r, i] + scale * z[i]


#: The same kernel without the thread pool (small fills; ``quantize._numba`` does the same).
_fill_rows = _serial_twin(_fill_rows_parallel)


@njit(cache=True)
def _add_rows(bases, scales, P, p, out, X, F):
    """``out[r, k] += scales[r]·z`` (draw ``p`` of ``P``), the relative noise of each replica row."""
    R, K, d = out.shape
    z = np.empty(d)
    for k in range(K):
        for r in range(R):
            _draw(bases[k], np.uint64((r * P + p) * d), z, X, F)
            for i in range(d):
                out[r, k, i] += scales[r] * z[i]


@njit(cache=True)
def _normals(base, count, X, F):
    """The first ``count`` values of the stream ``base`` (tests and the reference check)."""
    out = np.empty(count)
    _draw(base, np.uint64(0), out, X, F)
    return out


@njit(cache=True)
def _bases(seed, workers, call):
    out = np.empty(workers.size, np.uint64)
    for j in range(workers.size):
        out[j] = noise_base(seed, workers[j], call)
    return out


def stream_bases(seed: int, workers, call: int) -> np.ndarray:
    """uint64 stream bases of ``(seed, k, call)`` for each worker ``k`` in ``workers``."""
    w = np.array([int(k) & MASK64 for k in workers], np.uint64)
    return _bases(np.uint64(int(seed) & MASK64), w, np.uint64(int(call) & MASK64))


def fill(bases: np.ndarray, A: np.ndarray, scale: float, P: int, p: int, out: np.ndarray) -> None:
    """``out[r, k] = A[r] + scale·z_{k, r, p}`` (``out`` of shape ``(R, K, d)``, float64, C order)."""
    kernel = _fill_rows_parallel if use_parallel(out.size) and out.shape[1] > 1 else _fill_rows
    kernel(bases, A, float(scale), P, p, out, ZIG_X, ZIG_F)


def add(bases: np.ndarray, scales: np.ndarray, P: int, p: int, out: np.ndarray) -> None:
    """``out[r, k] += scales[r]·z_{k, r, p}``."""
    _add_rows(bases, np.ascontiguousarray(scales, np.float64), P, p, out, ZIG_X, ZIG_F)


def normals(seed: int, worker: int, call: int, count: int) -> np.ndarray:
    """The first ``count`` standard normals of the stream of ``(seed, worker, call)`` (flat order
    ``n = (r·P + p)·d + i``)."""
    return _normals(stream_bases(seed, [worker], call)[0], int(count), ZIG_X, ZIG_F)
