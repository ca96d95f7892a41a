"""Stochastic oracles: ``V_k(X) = A(X) + U_k(X)``, independent across workers (THEORY §5).

* absolute: ``U = σ ξ/√d`` with ``ξ ~ N(0, I)``, so ``E‖U‖² = σ²``;
* relative: ``U = √σ_R ‖A(X)‖ ξ/√d``, so ``E‖U‖² = σ_R ‖A(X)‖²``;
* mixed: the sum of both (independent draws);
* student_t: heavy tails with finite variance (no almost-sure bound, THEORY §7.6):
  ``U = σ √((ν−2)/ν) t_ν/√d`` with ``t_ν`` i.i.d. Student-t of ``ν = dof > 2`` degrees of freedom,
  so ``E‖U‖² = σ²`` as for absolute noise;
* finite_sum: each worker evaluates the problem's own stochastic operator on a minibatch of its
  finite-sum form (``problem.sample_operator``), e.g. minibatch covariances in the covariance GAN.

Counter-based noise streams: worker ``k``'s noise at call ``c`` is a pure function of
``(seed, k, c)`` — no seeding per call, no dependence on ``K``, on the other workers or on the process
that draws it.  That is what lets a real worker (an MPI rank) draw exactly the noise the in-process
simulation gives it (:mod:`qodasim.solvers.mpi`).  Gaussian noise (absolute, relative, mixed): value
``n`` of the worker's ``(R, P, d)`` draw (``P`` = 1, or 2 for mixed noise, absolute first) is a
ziggurat normal of the 64-bit words ``mix64(key + (n + 1)·φ)`` of the stream ``(seed, k, c)``
(:mod:`qodasim.vi._normal`; SplitMix64 as a hash, as the quantizer's uniforms), computed in one
compiled pass for all workers.  Student-t and finite-sum noise: a Philox-4×64 generator (Salmon et
al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) whose key is ``(mix64(seed), k)`` and
whose counter starts at ``(0, 0, c, 0)`` (:func:`worker_generator`).  Replica ``r`` is row ``r`` of
the worker's draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rng import GOLDEN, MASK64, mix64
from ..validate import check_int, check_real
from . import _normal

__all__ = ["NoiseModel", "worker_generator"]

KINDS = ("none", "absolute", "relative", "mixed", "finite_sum", "student_t")

_BUFFER = np.zeros(4, np.uint64)


def worker_generator(seed: int, worker: int, call: int) -> np.random.Generator:
    """The noise generator of ``(seed, worker, call)``: Philox with key ``(mix64(seed), worker)`` and
    counter ``(0, 0, call, 0)``.

    Streams of different calls never overlap (a call would need ``2^64`` blocks to reach the next),
    and workers differ in the key.

    Examples
    --------
    >>> from qodasim.vi.noise import worker_generator
    >>> a = worker_generator(3, 1, 7).standard_normal(2)
    >>> bool((a == worker_generator(3, 1, 7).standard_normal(2)).all())
    True
    """
    key = _key(seed, worker)
    return _at_call(np.random.Generator(np.random.Philox(key=key)), key, call)


def _key(seed: int, worker: int) -> np.ndarray:
    return np.array([mix64((int(seed) + GOLDEN) & MASK64), int(worker) & MASK64], np.uint64)


def _at_call(gen: np.random.Generator, key: np.ndarray, call: int) -> np.random.Generator:
    """``gen`` (a Philox generator of ``key``) moved to the start of call ``call``'s stream."""
    gen.bit_generator.state = {
        "bit_generator": "Philox",
        "state": {"counter": np.array([0, 0, int(call) & MASK64, 0], np.uint64), "key": key},
        "buffer": _BUFFER,
        "buffer_pos": 4,
        "has_uint32": 0,
        "uinteger": 0,
    }
    return gen


_CACHE: dict = {}


def _generator(seed: int, worker: int, call: int) -> np.random.Generator:
    """``worker_generator(seed, worker, call)`` without building a generator per call (one cached
    generator per ``(seed, worker)``, reset to the call's counter); use it at once."""
    ent = _CACHE.get((seed, worker))
    if ent is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        key = _key(seed, worker)
        ent = _CACHE[(seed, worker)] = (np.random.Generator(np.random.Philox(key=key)), key)
    return _at_call(ent[0], ent[1], call)


@dataclass(frozen=True)
class NoiseModel:
    """Noise profile of the oracle.

    Parameters
    ----------
    kind : {"none", "absolute", "relative", "mixed", "finite_sum", "student_t"}
    sigma : float
        Absolute level ``σ`` (``E‖U‖² = σ²``; also of ``student_t`` noise).
    sigma_rel : float
        Relative level ``σ_R`` (``E‖U‖² = σ_R ‖A(X)‖²``).
    batch : int
        Minibatch size of ``finite_sum`` noise.
    dof : float
        Degrees of freedom ``ν > 2`` of ``student_t`` noise (finite variance, heavier tails as ``ν → 2``).
    """

    kind: str = "none"
    sigma: float = 0.0
    sigma_rel: float = 0.0
    batch: int = 1
    dof: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"noise kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("sigma", "sigma_rel"):
            val = getattr(self, name)
            check_real(val, name, 0.0, what="a finite number >= 0")
        check_int(self.batch, "batch", 1)
        check_real(self.dof, "dof", 2.0, lo_open=True, what="a finite number > 2 (finite variance)")

    def sample_at(self, problem, X: np.ndarray, K: int, seed: int, call: int) -> np.ndarray:
        """Oracle outputs of ``K`` workers at the points ``X`` (``(R, d)``) → ``(R, K, d)``; worker
        ``k``'s slice equals :meth:`sample_worker` ``(…, k, …)``."""
        if self.kind == "finite_sum":
            return np.stack([self.sample_worker(problem, X, k, seed, call) for k in range(K)], axis=1)
        return self.sample(problem.operator(X), K, seed, call)

    def sample_worker(self, problem, X: np.ndarray, worker: int, seed: int, call: int, A=None) -> np.ndarray:
        """Worker ``worker``'s oracle output at the points ``X`` (``(R, d)``) → ``(R, d)``; ``A`` is
        ``problem.operator(X)`` when the caller has it."""
        if self.kind == "finite_sum":
            return problem.sample_operator(X, 1, self.batch, worker_generator(seed, worker, call))[:, 0]
        A = np.ascontiguousarray(problem.operator(X) if A is None else A, dtype=np.float64)
        out = np.empty((A.shape[0], 1, A.shape[1]))
        self._add_noise(A, seed, [worker], call, out)
        return out[:, 0]

    def sample(self, A: np.ndarray, K: int, seed: int, call: int) -> np.ndarray:
        """Oracle outputs of ``K`` workers at the batch ``A = A(X)`` (shape ``(R, d)``) → ``(R, K, d)``."""
        if self.kind == "finite_sum":
            raise ValueError("finite_sum noise needs the problem: use sample_at(problem, X, ...)")
        A = np.ascontiguousarray(A, dtype=np.float64)
        R, d = A.shape
        out = np.empty((R, K, d))
        self._add_noise(A, seed, list(range(K)), call, out)
        return out

    def _add_noise(self, A: np.ndarray, seed: int, workers: list, call: int, out: np.ndarray) -> None:
        """``out[:, j] = A + U_{workers[j]}`` (``out`` is ``(R, len(workers), d)``): the absolute draw
        first, then the relative one, replica ``r``'s from row ``r`` of the worker's draw only."""
        R, d = A.shape
        if self.kind == "student_t":
            c = self.sigma * np.sqrt((self.dof - 2) / self.dof) / np.sqrt(d)
            for j, k in enumerate(workers):
                t = _generator(seed, k, call).standard_t(self.dof, (R, 1, d))[:, 0]
                np.multiply(t, c, out=out[:, j])
                out[:, j] += A
            return
        absolute = self.kind in ("absolute", "mixed") and self.sigma > 0
        relative = self.kind in ("relative", "mixed") and self.sigma_rel > 0
        if not (absolute or relative):
            out[...] = A[:, None]
            return
        P = int(absolute) + int(relative)
        bases = _normal.stream_bases(seed, workers, call)
        if absolute:
            _normal.fill(bases, A, self.sigma / np.sqrt(d), P, 0, out)
        else:
            out[...] = A[:, None]
        if relative:
            scale = np.sqrt(self.sigma_rel) * np.linalg.norm(A, axis=1) / np.sqrt(d)
            _normal.add(bases, scale, P, P - 1, out)
