"""Monotone variational inequalities with known solutions (THEORY §5).

A problem is an operator ``A: R^d → R^d`` evaluated on a batch ``X`` of shape ``(R, d)`` (a leading
replica axis), a projection onto its feasible set (identity when unconstrained), a starting point, a
known solution where one exists, and a :class:`~qodasim.quantize.LayerLayout` of its coordinates so
that layer-wise quantization can map blocks to types.

Affine problems ``A(x) = Mx + b`` store ``M`` as dense diagonal blocks (one block = a dense matrix),
so operators, solutions and the exact restricted gap scale to large ``d`` when the blocks are small.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..quantize import LayerLayout
from .gaps import RestrictedGap, restricted_gap_sampled

__all__ = [
    "Problem",
    "AffineProblem",
    "bilinear_game",
    "affine_monotone",
    "strongly_monotone_quadratic",
    "covariance_gan",
    "CovarianceGAN",
    "layered_problem",
    "MatrixGame",
    "KellyAuction",
]


def _as_batch(X, d: int) -> tuple[np.ndarray, bool]:
    X = np.asarray(X, np.float64)
    single = X.ndim == 1
    X = X[None, :] if single else X
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (d,) or (R, d) with d = {d}, got {np.shape(X)}")
    return X, single


class Problem:
    """Interface of a monotone VI problem."""

    d: int
    layout: LayerLayout
    name: str = "problem"

    def operator(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        """The operator ``A(X)`` row by row: ``X`` has shape ``(B, d)``, so does the result."""
        raise NotImplementedError

    def project(self, X: np.ndarray) -> np.ndarray:
        """Euclidean projection of each row onto the feasible set (the identity when unconstrained)."""
        return X

    def measures(self, X1: np.ndarray) -> dict | None:
        """The problem's own measures, ``{name: fn}`` with ``fn(X)`` → one value per row of ``X``, for
        problems where the restricted gap and the distance to a solution mean nothing (a non-monotone
        game); ``None`` (the default): the solver records ``gap``, ``opnorm`` and ``dist``."""
        return None

    def x0(self) -> np.ndarray:
        """The starting point ``X_1`` (zeros unless the problem says otherwise)."""
        return np.zeros(self.d)

    def gap_measure(self, center: np.ndarray, radius: float):
        """The restricted gap on the ball ``B(center, radius)`` as ``fn(X)`` → one value per row (the
        solver's ``gap``): by default a sampled lower estimate (:func:`~qodasim.vi.restricted_gap_sampled`);
        problems that know it exactly override this."""

        def gap(X):
            return restricted_gap_sampled(self, X, center, radius)

        return gap

    def sample_operator(self, X: np.ndarray, K: int, batch: int, rng: np.random.Generator) -> np.ndarray:
        """``K`` workers' unbiased minibatch estimates of ``A(X)`` (``(R, K, d)``) for problems with a
        finite-sum form; others raise ``ValueError``."""
        raise ValueError(f"{getattr(self, 'name', type(self).__name__)} has no finite-sum form")

    @property
    def solution(self) -> np.ndarray | None:
        """A solution ``x*`` when known in closed form, else ``None``."""
        return None

    def __call__(self, X):
        Xb, single = _as_batch(X, self.d)
        out = self.operator(Xb)
        return out[0] if single else out


@dataclass(frozen=True, eq=False)
class AffineProblem(Problem):
    """``A(x) = Mx + b`` with ``M = blockdiag(M_1, …, M_n)`` monotone (``M + Mᵀ ⪰ 0``).

    Attributes
    ----------
    blocks : tuple of (d_l, d_l) arrays
    b : (d,) array
    layout : LayerLayout
        One layer per block unless given.
    start : (d,) array
        Starting point (default 0).
    name : str
    """

    blocks: tuple
    b: np.ndarray
    layout: LayerLayout | None = None
    start: np.ndarray | None = None
    name: str = "affine"
    offsets: np.ndarray = field(init=False, repr=False)

    def gap_measure(self, center: np.ndarray, radius: float):
        """The exact restricted gap (:class:`~qodasim.vi.RestrictedGap`, a trust-region subproblem)."""
        return RestrictedGap(self, center, radius)

    def __post_init__(self) -> None:
        blocks = tuple(np.asarray(B, np.float64) for B in self.blocks)
        if not blocks or any(B.ndim != 2 or B.shape[0] != B.shape[1] for B in blocks):
            raise ValueError("blocks must be non-empty square matrices")
        sizes = [B.shape[0] for B in blocks]
        d = int(sum(sizes))
        b = np.asarray(self.b, np.float64).ravel()
        if b.size != d:
            raise ValueError(f"b has {b.size} entries but the blocks have d = {d}")
        if not all(np.all(np.isfinite(B)) for B in blocks) or not np.all(np.isfinite(b)):
            raise ValueError("blocks and b must be finite")
        for B in blocks:
            if np.linalg.eigvalsh((B + B.T) / 2).min() < -1e-9 * max(1.0, np.abs(B).max()):
                raise ValueError("the operator is not monotone: a block has M + Mᵀ with a negative eigenvalue")
        layout = self.layout or LayerLayout(sizes)
        if layout.d != d:
            raise ValueError(f"layout has d = {layout.d} but the problem has d = {d}")
        start = np.zeros(d) if self.start is None else np.asarray(self.start, np.float64).ravel()
        if start.size != d:
            raise ValueError("start has the wrong dimension")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "offsets", np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

    @property
    def d(self) -> int:
        """Dimension ``d`` (the sum of the block sizes)."""
        return int(self.offsets[-1])

    def operator(self, X: np.ndarray) -> np.ndarray:
        out = np.empty_like(X)
        for B, s, e in zip(self.blocks, self.offsets[:-1], self.offsets[1:]):
            out[:, s:e] = X[:, s:e] @ B.T
        out += self.b
        return out

    def x0(self) -> np.ndarray:
        return self.start.copy()

    @functools.cached_property
    def solution(self) -> np.ndarray:
        """``x* = −M^{-1} b`` (least squares for a singular block); computed once."""
        parts = []
        for B, s, e in zip(self.blocks, self.offsets[:-1], self.offsets[1:]):
            try:
                parts.append(np.linalg.solve(B, -self.b[s:e]))
            except np.linalg.LinAlgError:
                parts.append(np.linalg.lstsq(B, -self.b[s:e], rcond=None)[0])
        sol = np.concatenate(parts)
        sol.setflags(write=False)
        return sol

    @property
    def mu(self) -> float:
        """Strong monotonicity modulus ``λ_min((M + Mᵀ)/2)``."""
        return float(min(np.linalg.eigvalsh((B + B.T) / 2).min() for B in self.blocks))

    @property
    def L(self) -> float:
        """Lipschitz constant ``‖M‖₂``."""
        return float(max(np.linalg.norm(B, 2) for B in self.blocks))


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def bilinear_game(n: int, seed: int = 0, cond: float = 4.0, scale: float = 1.0) -> AffineProblem:
    """``min_x max_y xᵀBy + bᵀx − cᵀy`` with ``B ∈ R^{n×n}`` of condition number ``cond``.

    ``A(x, y) = (By + b, c − Bᵀx)``: skew, monotone, not strongly monotone (GDA diverges).
    Solution ``y* = −B^{-1}b``, ``x* = B^{-T}c``.
    """
    rng = _rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sv = np.geomspace(1.0, cond, n) * scale / cond
    B = U @ np.diag(sv) @ V.T
    M = np.block([[np.zeros((n, n)), B], [-B.T, np.zeros((n, n))]])
    b = np.concatenate([rng.standard_normal(n), rng.standard_normal(n)]) * scale
    return AffineProblem((M,), b, LayerLayout([n, n], names=("x", "y")), name=f"bilinear(n={n})")


def affine_monotone(d: int, mu: float = 0.0, L: float = 1.0, skew: float = 1.0, seed: int = 0) -> AffineProblem:
    """``A(z) = Mz + b`` with ``M = S + W``: ``S ⪰ 0`` with spectrum in ``[μ, L]`` and skew ``W``."""
    if not (0 <= mu <= L):
        raise ValueError(f"need 0 <= mu <= L, got mu={mu}, L={L}")
    rng = _rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    S = Q @ np.diag(np.linspace(mu, L, d)) @ Q.T
    G = rng.standard_normal((d, d))
    W = (G - G.T) / 2
    W *= skew * L / max(np.linalg.norm(W, 2), 1e-300)
    return AffineProblem((S + W,), rng.standard_normal(d), name=f"affine(d={d}, mu={mu:g})")


def strongly_monotone_quadratic(n: int, mu: float = 0.1, seed: int = 0) -> AffineProblem:
    """``min_x max_y ½xᵀPx + xᵀBy − ½yᵀQy + bᵀx − cᵀy`` with ``P, Q ⪰ μI``: strongly monotone."""
    rng = _rng(seed)

    def spd():
        G = rng.standard_normal((n, n)) / np.sqrt(n)
        return G @ G.T + mu * np.eye(n)

    B = rng.standard_normal((n, n)) / np.sqrt(n)
    M = np.block([[spd(), B], [-B.T, spd()]])
    b = rng.standard_normal(2 * n)
    return AffineProblem((M,), b, LayerLayout([n, n], names=("x", "y")), name=f"quadratic(n={n}, mu={mu:g})")


class CovarianceGAN(AffineProblem):
    """The covariance GAN with its finite-sum form over a dataset (see :func:`covariance_gan`)."""

    def sample_operator(self, X, K, batch, rng):
        """Each worker draws ``batch`` data points and uses their covariance ``Σ̂`` in place of the
        dataset's ``Σ`` (an unbiased estimate: ``Σ = (1/n)Σ_i z_i z_iᵀ``, the data are centred)."""
        data, iu, w = self.data, self.iu, self.w
        R, d = X.shape
        m = d // 2
        A = self.operator(X)
        out = np.broadcast_to(A[:, None, :], (R, K, d)).copy()
        pick = rng.integers(0, data.shape[0], size=(R, K, batch))
        Z = data[pick]  # (R, K, batch, p)
        S_hat = np.einsum("rkbi,rkbj->rkij", Z, Z) / batch
        # A's critic part is V − Σ + λΦ: replace −Σ by −Σ̂
        out[:, :, m:] += (self.Sigma[iu] * w) - S_hat[:, :, iu[0], iu[1]] * w
        return out


def covariance_gan(p: int, reg: float = 0.1, seed: int = 0, n_data: int = 2000) -> AffineProblem:
    """Linear covariance-learning GAN: ``min_V max_Φ tr(Φ(Σ − V)) − (λ/2)‖Φ‖²_F``.

    The generator's covariance ``V`` and a quadratic critic ``D(x) = xᵀΦx`` (both symmetric,
    vectorized over the upper triangle with off-diagonals scaled by √2 so inner products match).
    ``A(V, Φ) = (−Φ, V − Σ + λΦ)``: monotone; solution ``V* = Σ``, ``Φ* = 0``.  The stochastic
    version replaces ``Σ`` by a minibatch covariance (absolute noise).
    """
    rng = _rng(seed)
    G = rng.standard_normal((p, p))
    true = G @ G.T / p + 0.5 * np.eye(p)
    data = rng.multivariate_normal(np.zeros(p), true, size=n_data)
    Sigma = data.T @ data / n_data  # the dataset's covariance: the finite-sum problem's target
    iu = np.triu_indices(p)
    w = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))
    m = iu[0].size
    I = np.eye(m)
    M = np.block([[np.zeros((m, m)), -I], [I, reg * I]])
    b = np.concatenate([np.zeros(m), -(Sigma[iu] * w)])
    prob = CovarianceGAN((M,), b, LayerLayout([m, m], names=("generator", "critic")), name=f"covariance-gan(p={p})")
    for key, val in (("Sigma", Sigma), ("data", data), ("iu", iu), ("w", w)):
        object.__setattr__(prob, key, val)
    return prob


def layered_problem(sizes, scales, types=None, mu: float = 0.0, seed: int = 0) -> AffineProblem:
    """A block-diagonal affine monotone problem whose blocks (layers) differ in size and scale.

    Block ``l`` is ``scale_l · (S_l + W_l)`` of size ``d_l``; ``b_l`` has the same scale, so the
    operator's coordinates are heterogeneous across layers — the case layer-wise quantization is for.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(scales):
        raise ValueError("sizes and scales must have equal length")
    rng = _rng(seed)
    blocks, bs = [], []
    for dl, sc in zip(sizes, scales):
        Q, _ = np.linalg.qr(rng.standard_normal((dl, dl)))
        S = Q @ np.diag(np.linspace(mu, 1.0, dl)) @ Q.T
        G = rng.standard_normal((dl, dl))
        W = (G - G.T) / 2
        W /= max(np.linalg.norm(W, 2), 1e-300)
        blocks.append(sc * (S + W))
        bs.append(sc * rng.standard_normal(dl))
    layout = LayerLayout(sizes, types if types is not None else np.zeros(len(sizes), np.int64))
    return AffineProblem(tuple(blocks), np.concatenate(bs), layout, name=f"layered({len(sizes)} blocks)")


# ------------------------------------------------------------------------------ constrained
def _project_simplex(Y: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto the probability simplex (sort-based)."""
    n = Y.shape[1]
    U = -np.sort(-Y, axis=1)
    css = np.cumsum(U, axis=1) - 1.0
    ind = np.arange(1, n + 1)
    cond = U - css / ind > 0
    rho = n - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = css[np.arange(Y.shape[0]), rho] / (rho + 1)
    return np.maximum(Y - theta[:, None], 0.0)


@dataclass(frozen=True, eq=False)
class MatrixGame(Problem):
    """``min_{x∈Δ_n} max_{y∈Δ_m} xᵀGy``: ``A(x, y) = (Gy, −Gᵀx)`` with simplex projections."""

    G: np.ndarray
    name: str = "matrix-game"

    def __post_init__(self) -> None:
        G = np.asarray(self.G, np.float64)
        if G.ndim != 2 or not np.all(np.isfinite(G)):
            raise ValueError("G must be a finite matrix")
        object.__setattr__(self, "G", G)
        object.__setattr__(self, "layout", LayerLayout([G.shape[0], G.shape[1]], names=("x", "y")))

    @classmethod
    def random(cls, n: int, m: int | None = None, seed: int = 0) -> MatrixGame:
        """A game with payoffs uniform on ``[−1, 1]`` (``n × m``, square by default), seeded."""
        return cls(_rng(seed).uniform(-1, 1, (n, m or n)))

    @property
    def d(self) -> int:
        """Dimension ``n + m`` (both players' mixed strategies)."""
        return int(sum(self.G.shape))

    def operator(self, X):
        n = self.G.shape[0]
        return np.concatenate([X[:, n:] @ self.G.T, -X[:, :n] @ self.G], axis=1)

    def project(self, X):
        n = self.G.shape[0]
        return np.concatenate([_project_simplex(X[:, :n]), _project_simplex(X[:, n:])], axis=1)

    def x0(self):
        n, m = self.G.shape
        return np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])

    def gap_measure(self, center: np.ndarray, radius: float):
        """The duality gap (exact on the simplices; the ball plays no part)."""
        return self.duality_gap

    def duality_gap(self, X) -> np.ndarray:
        """``max_j (Gᵀx)_j − min_i (Gy)_i`` (0 exactly at a Nash equilibrium)."""
        Xb, _ = _as_batch(X, self.d)
        n = self.G.shape[0]
        return (Xb[:, :n] @ self.G).max(axis=1) - (Xb[:, n:] @ self.G.T).min(axis=1)


@dataclass(frozen=True, eq=False)
class KellyAuction(Problem):
    """Kelly mechanism: player ``i`` bids ``x_i ≥ 0`` for a share ``x_i/(Z + Σx)`` of a resource ``Q``.

    Utility ``u_i = G_i Q x_i/(Z + Σx) − x_i``; the game's operator ``A_i = −∂u_i/∂x_i`` is monotone on
    ``x ≥ 0``.  With ``G = (2, 3)``, ``Q = Z = 1`` the equilibrium is ≈ (0.1396, 0.7094) (THEORY §5).
    """

    G: tuple = (2.0, 3.0)
    Q: float = 1.0
    Z: float = 1.0
    name: str = "kelly"

    def __post_init__(self) -> None:
        g = np.asarray(self.G, np.float64)
        if g.ndim != 1 or np.any(g <= 0) or self.Q <= 0 or self.Z <= 0:
            raise ValueError("Kelly auction needs positive G, Q and Z")
        object.__setattr__(self, "layout", LayerLayout([g.size]))

    @property
    def d(self) -> int:
        """Number of players."""
        return len(self.G)

    def operator(self, X):
        g = np.asarray(self.G)
        s = self.Z + X.sum(axis=1, keepdims=True)
        return -(g * self.Q * (s - X) / s**2 - 1.0)

    def project(self, X):
        return np.maximum(X, 0.0)

    def x0(self):
        return np.full(self.d, 0.5)

    @property
    def solution(self) -> np.ndarray:
        """The equilibrium from the KKT conditions with the active set (1-D root in ``s = Z + Σx``).

        With ``g_i = G_i Q``: ``A_i(x) = 1 − g_i (s − x_i)/s²``.  A bidder with ``x_i > 0`` has
        ``A_i = 0``, i.e. ``x_i = s − s²/g_i`` (possible only while ``s < g_i``); one with ``x_i = 0``
        needs ``A_i = 1 − g_i/s ≥ 0``, i.e. ``g_i ≤ s``.  So ``x_i(s) = max(0, s − s²/g_i)`` and ``s``
        solves ``Σ_i x_i(s) = s − Z``; the left side minus the right is positive at ``s = Z`` (unless
        nobody bids: every ``g_i ≤ Z`` gives ``x = 0``) and negative for ``s ≥ max g_i``.
        """
        from scipy.optimize import brentq

        g = np.asarray(self.G, np.float64) * self.Q

        def f(s):
            return np.sum(np.maximum(0.0, s - s * s / g)) - (s - self.Z)

        if f(self.Z) <= 0.0:
            return np.zeros(g.size)
        hi = max(float(g.max()), self.Z) * 2.0 + 1.0
        s = brentq(f, self.Z, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=1000)
        return np.maximum(s - s * s / g, 0.0)
