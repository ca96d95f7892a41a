"""Counter-based randomness keyed by ``(seed, worker, round, layer, index)`` (THEORY §1).

Every uniform used for rounding is a pure function of its key, so results do not depend on the
thread count, the chunking, or the device.  The generator is SplitMix64 used as a hash:

* a *stream base* is derived from ``(seed, worker, round, layer)`` by chained ``mix64`` calls
  (:func:`stream_base`, plain Python integers, once per layer);
* coordinate ``index`` of that stream draws ``u = (mix64(base + (index + 1)·φ) >> 11) · 2^{-53}``
  where ``φ = 0x9E3779B97F4A7C15`` (the SplitMix64 increment) and ``mix64`` is the SplitMix64
  finalizer (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014).

``u`` takes values ``k·2^{-53}``, ``k ∈ {0..2^{53}-1}``, so ``P(u < ρ) = ⌈ρ·2^{53}⌉/2^{53}``: the
rounding bias is below ``2^{-53}``.

Three implementations share these constants: Python integers (stream bases), NumPy ``uint64`` arrays
(the reference, :func:`uniforms`), and the Numba device/host function ``mix64_nb`` used in kernels.
Tests check that they agree bit for bit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from .validate import check_int, is_int

__all__ = ["Key", "stream_base", "stream_bases", "uniforms", "MASK64", "GOLDEN", "MIX1", "MIX2"]

#: ``2^64 − 1``: arithmetic on SplitMix64 states is modulo ``2^64``.
MASK64 = (1 << 64) - 1
#: SplitMix64's increment ``⌊2^64/φ⌋`` (golden ratio): state of coordinate ``i`` is ``base + (i + 1)·GOLDEN``.
GOLDEN = 0x9E3779B97F4A7C15
#: First multiplier of the SplitMix64 output mix (Steele, Lea & Flood 2014).
MIX1 = 0xBF58476D1CE4E5B9
#: Second multiplier of the SplitMix64 output mix.
MIX2 = 0x94D049BB133111EB
_TWO_M53 = 2.0**-53


@dataclass(frozen=True)
class Key:
    """An explicit random key: ``(seed, worker, round)``; layer and index come from the layout.

    Parameters
    ----------
    seed : int
        Any integer in ``[0, 2^64)``.
    worker : int
        Worker id ``k`` (``0..K-1``) in a distributed run.
    round : int
        Communication round (a solver uses one round per message it sends).

    Examples
    --------
    >>> from qodasim import Key
    >>> Key(7, worker=1, round=2)
    Key(seed=7, worker=1, round=2)
    """

    seed: int
    worker: int = 0
    round: int = 0

    def __post_init__(self) -> None:
        for name in ("seed", "worker", "round"):
            val = getattr(self, name)
            check_int(val, f"Key.{name}", error=TypeError, show="type")
            if not 0 <= int(val) <= MASK64:
                raise ValueError(f"Key.{name} must lie in [0, 2^64), got {val!r}")
            object.__setattr__(self, name, int(val))

    @classmethod
    def _trusted(cls, seed: int, worker: int, round: int) -> Key:
        """A key from fields the caller guarantees (Python ints in ``[0, 2^64)``), without the checks
        (the solver makes R × K keys per round; the checks cost ~3 µs a key)."""
        key = object.__new__(cls)
        key.__dict__.update(seed=seed, worker=worker, round=round)
        return key

    @functools.cached_property
    def _words(self) -> tuple[np.uint64, np.uint64, np.uint64]:
        """``(seed, worker, round)`` as ``np.uint64``, the kernels' argument types (made once per key:
        three conversions cost ~0.8 µs, a tenth of a small vector's quantize call)."""
        return np.uint64(self.seed), np.uint64(self.worker), np.uint64(self.round)

    def with_round(self, round: int) -> Key:
        """The same key at another round."""
        return replace(self, round=round)

    def with_worker(self, worker: int) -> Key:
        """The same key for another worker."""
        return replace(self, worker=worker)


def as_key(key) -> Key:
    """Accept a :class:`Key`, an ``int`` seed, or a ``(seed, worker, round)`` tuple."""
    if isinstance(key, Key):
        return key
    if is_int(key):
        return Key(int(key))
    if isinstance(key, tuple) and 1 <= len(key) <= 3:
        return Key(*key)
    raise TypeError(f"key must be a qodasim.rng.Key, an int seed or a (seed, worker, round) tuple, got {key!r}")


def mix64(z: int) -> int:
    """SplitMix64 finalizer on Python integers (mod 2^64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def stream_base(key: Key, layer: int) -> int:
    """The 64-bit stream base of ``(seed, worker, round, layer)``."""
    h = mix64(key.seed + GOLDEN)
    h = mix64(h ^ ((key.worker + 2 * GOLDEN) & MASK64))
    h = mix64(h ^ ((key.round + 3 * GOLDEN) & MASK64))
    return mix64(h ^ ((int(layer) + 5 * GOLDEN) & MASK64))


def _mix64_np(z: np.ndarray) -> np.ndarray:
    """:func:`mix64` on ``uint64`` arrays (wrapping arithmetic is arithmetic mod 2^64: the same bits)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def stream_bases(key: Key, layers: np.ndarray) -> np.ndarray:
    """:func:`stream_base` for many layers at once (NumPy ``uint64``; bit-identical)."""
    h = mix64(key.seed + GOLDEN)
    h = mix64(h ^ ((key.worker + 2 * GOLDEN) & MASK64))
    h = mix64(h ^ ((key.round + 3 * GOLDEN) & MASK64))
    return _mix64_np(np.uint64(h) ^ (np.asarray(layers, np.uint64) + np.uint64((5 * GOLDEN) & MASK64)))


def stream_bases_of_keys(keys, layers: np.ndarray) -> np.ndarray:
    """``stream_bases(k, layers)`` for each key ``k`` of ``keys``, concatenated (one NumPy pass for a
    whole batch: the per-key Python hashing cost ~10 µs a key; bit-identical, tested)."""
    words = np.array([(k.seed, k.worker, k.round) for k in keys], np.uint64).reshape(-1, 3)
    with np.errstate(over="ignore"):
        h = _mix64_np(words[:, 0] + np.uint64(GOLDEN))
        h = _mix64_np(h ^ (words[:, 1] + np.uint64((2 * GOLDEN) & MASK64)))
        h = _mix64_np(h ^ (words[:, 2] + np.uint64((3 * GOLDEN) & MASK64)))
        z = h[:, None] ^ (np.asarray(layers, np.uint64)[None, :] + np.uint64((5 * GOLDEN) & MASK64))
        return _mix64_np(z).reshape(-1)


def uniforms(base: int, index: np.ndarray) -> np.ndarray:
    """NumPy reference: the uniforms of coordinates ``index`` (int array) of stream ``base``."""
    idx = np.asarray(index, dtype=np.uint64)
    z = _mix64_np(np.uint64(base) + (idx + np.uint64(1)) * np.uint64(GOLDEN))
    return (z >> np.uint64(11)).astype(np.float64) * _TWO_M53


def uniform_scalar_py(base: int, index: int) -> float:
    """Pure-Python uniform (for tests)."""
    z = mix64((base + (index + 1) * GOLDEN) & MASK64)
    return (z >> 11) * _TWO_M53
