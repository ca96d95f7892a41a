"""A calibrated quality measure for generated 8×8 digits: the Fréchet distance in a digit classifier's
features, class coverage, and the trivial generators every GAN must beat.

**Features.**  A small classifier trained on the real training digits only (never on generated
ones): an MLP ``64 → 64 → 32 → 10`` with tanh hidden units, full-batch Adam on the cross-entropy
plus an ``ℓ₂`` penalty, from a seeded start (:func:`train_classifier`).  An image's features are the
32 units of its last hidden layer — the quantities the classifier separates digits by.

**Fréchet distance** (Fréchet 1957; Dowson & Landau 1982; the FID of Heusel et al. 2017 computes it
in Inception features) between Gaussians fitted to two samples' features,

``FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}``

(:func:`frechet_distance`; the last trace from the eigenvalues of a symmetric matrix).  It is zero
for equal moments and grows with a shift of the mean, a wrong spread (a blurred mean image, mode
collapse) or a wrong shape.  Sample sizes bias it upward, so every row of a comparison uses the same
number of generated samples against the same held-out digits.

**Class coverage** (:func:`class_coverage`): the classifier's predicted class of each sample; a class
is covered when it receives at least ``min_share`` of the samples (real digits: all 10).

**Trivial generators** (:func:`trivial_generators`): samples a generator could produce without
learning the data's structure — a Gaussian fitted to the training digits (mean and covariance), the
``k``-means centroids of the training digits drawn uniformly (10 images, no variation), and real
training images of one class only.  A GAN that does not beat the Gaussian fit has learned no more
than the data's first two moments; the held-out reference (real training digits against held-out
ones) is the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validate import check_int, check_real

__all__ = ["DigitClassifier", "train_classifier", "frechet_distance", "class_coverage", "trivial_generators",
           "load_digits_split"]  # fmt: skip


def load_digits_split(seed: int = 0, held_share: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 bundled 8×8 digits, pixels scaled to ``[−1, 1]``, split at random
    (``seed``) into training and held-out parts: ``(X_train, y_train, X_held, y_held)``.  The split
    is the one :class:`qodasim.vi.wgan.WGANProblem` makes for the same seed."""
    from sklearn.datasets import load_digits

    check_int(seed, "seed", 0, what="an integer >= 0")
    digits = load_digits()
    X, y = digits.data.astype(np.float64) / 8.0 - 1.0, digits.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    n_held = int(X.shape[0] * held_share)
    return X[perm[n_held:]], y[perm[n_held:]], X[perm[:n_held]], y[perm[:n_held]]


@dataclass(frozen=True)
class DigitClassifier:
    """An MLP ``x ↦ softmax(W₃ tanh(W₂ tanh(W₁ x + b₁) + b₂) + b₃)``; ``params = (W₁, b₁, W₂, b₂, W₃, b₃)``."""

    params: tuple

    def features(self, X: np.ndarray) -> np.ndarray:
        """The last hidden layer's units, ``tanh(W₂ tanh(W₁ x + b₁) + b₂)``, one row per image."""
        W1, b1, W2, b2, _, _ = self.params
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != W1.shape[0]:
            raise ValueError(f"X must have shape (n, {W1.shape[0]}), got {X.shape}")
        return np.tanh(np.tanh(X @ W1 + b1) @ W2 + b2)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """The class scores ``W₃ f(x) + b₃``."""
        return self.features(X) @ self.params[4] + self.params[5]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted class of each image."""
        return np.argmax(self.logits(X), axis=1)


def _grads(params, X, Y, l2):
    """Cross-entropy (mean over rows) + ``l2/2 ΣW²`` and its gradient, by hand."""
    W1, b1, W2, b2, W3, b3 = params
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    z = h2 @ W3 + b3
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = X.shape[0]
    loss = -np.mean(np.log(p[np.arange(n), Y] + 1e-300)) + 0.5 * l2 * sum(float(np.sum(W * W)) for W in (W1, W2, W3))
    g = p.copy()
    g[np.arange(n), Y] -= 1.0
    g /= n
    gW3, gb3 = h2.T @ g + l2 * W3, g.sum(0)
    d2 = (g @ W3.T) * (1 - h2 * h2)
    gW2, gb2 = h1.T @ d2 + l2 * W2, d2.sum(0)
    d1 = (d2 @ W2.T) * (1 - h1 * h1)
    gW1, gb1 = X.T @ d1 + l2 * W1, d1.sum(0)
    return loss, (gW1, gb1, gW2, gb2, gW3, gb3)


def train_classifier(X: np.ndarray, y: np.ndarray, seed: int = 0, steps: int = 800, lr: float = 0.01,
                     l2: float = 1e-4, hidden: tuple[int, int] = (64, 32)) -> DigitClassifier:  # fmt: skip
    """Train the feature classifier by full-batch Adam (Kingma & Ba 2015; ``β = (0.9, 0.999)``).

    Parameters
    ----------
    X, y : arrays
        Training images (rows, pixels in ``[−1, 1]``) and their classes ``0 … 9``.
    seed : int
        The initial weights (Gaussian, variance ``1/fan-in``; zero biases).
    steps, lr, l2 : int, float, float
        Adam steps, step size, ``ℓ₂`` penalty on the weights.
    hidden : (int, int)
        The two hidden widths (the features are the second).
    """
    check_int(seed, "seed", 0, what="an integer >= 0")
    check_int(steps, "steps", 1, what="a positive integer")
    check_real(lr, "lr", 0.0, lo_open=True, what="a positive finite number")
    check_real(l2, "l2", 0.0, what="a finite number >= 0")
    X, y = np.asarray(X, np.float64), np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, p) and y (n,), got {X.shape} and {y.shape}")
    n_cls = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    widths = (X.shape[1], *hidden, n_cls)
    params = []
    for a, b in zip(widths[:-1], widths[1:]):
        params += [rng.standard_normal((a, b)) / np.sqrt(a), np.zeros(b)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        _, grads = _grads(params, X, y, l2)
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            params[i] = params[i] - lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return DigitClassifier(tuple(params))


def frechet_distance(A: np.ndarray, B: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two samples (rows), see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim.vi.digitscore import frechet_distance
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((20000, 3))
    >>> round(frechet_distance(a, 2 * a + 1), 2)  # ‖1‖² + 3·(1 + 4 − 2·2) = 3 + 3
    6.0
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or min(A.shape[0], B.shape[0]) < 2:
        raise ValueError(f"A and B must be (n, p) samples with the same p and n >= 2, got {A.shape} and {B.shape}")
    mu = A.mean(0) - B.mean(0)
    S1, S2 = np.atleast_2d(np.cov(A, rowvar=False)), np.atleast_2d(np.cov(B, rowvar=False))
    w, U = np.linalg.eigh(S1)
    root1 = (U * np.sqrt(np.maximum(w, 0.0))) @ U.T
    middle = np.linalg.eigvalsh(root1 @ S2 @ root1)
    return float(mu @ mu + np.trace(S1) + np.trace(S2) - 2.0 * np.sum(np.sqrt(np.maximum(middle, 0.0))))


def class_coverage(classifier: DigitClassifier, X: np.ndarray, min_share: float = 0.025) -> tuple[int, np.ndarray]:
    """``(covered, shares)``: the share of samples the classifier assigns to each class, and how many
    classes receive at least ``min_share`` of them."""
    check_real(min_share, "min_share", 0.0, 1.0, what="a number in [0, 1]")
    pred = classifier.predict(X)
    shares = np.bincount(pred, minlength=classifier.params[5].size) / max(pred.size, 1)
    return int(np.sum(shares >= min_share)), shares


def _kmeans(X: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Lloyd's algorithm from ``k`` distinct training images drawn by ``rng``."""
    C = X[rng.choice(X.shape[0], k, replace=False)].copy()
    for _ in range(iters):
        lab = np.argmin(np.sum(X * X, 1)[:, None] - 2 * X @ C.T + np.sum(C * C, 1)[None], axis=1)
        C = np.array([X[lab == j].mean(0) if np.any(lab == j) else C[j] for j in range(k)])
    return C


def trivial_generators(X: np.ndarray, y: np.ndarray, n: int, seed: int = 0, k: int = 10,
                       one_class: int = 8) -> dict[str, np.ndarray]:  # fmt: skip
    """``n`` samples from each trivial generator fitted to the training digits ``(X, y)``:
    ``"gaussian fit"`` (``N(mean, cov)``, clipped to ``[−1, 1]``), ``"k-means centroids"`` (``k``
    centroids drawn uniformly) and ``f"one class ({one_class})"`` (training images of that class drawn
    with replacement), all from ``seed``."""
    check_int(n, "n", 1, what="a positive integer")
    check_int(k, "k", 1, X.shape[0], what=f"an integer in [1, {X.shape[0]}]")
    if not np.any(np.asarray(y) == one_class):
        raise ValueError(f"one_class must be a class present in y, got {one_class!r}")
    rng = np.random.default_rng(seed)
    gauss = rng.multivariate_normal(X.mean(0), np.cov(X, rowvar=False), size=n, method="eigh")
    centroids = _kmeans(X, k, rng)
    ones = X[np.asarray(y) == one_class]
    return {"gaussian fit": np.clip(gauss, -1.0, 1.0), "k-means centroids": centroids[rng.integers(0, k, n)],
            f"one class ({one_class})": ones[rng.integers(0, ones.shape[0], n)]}  # fmt: skip
