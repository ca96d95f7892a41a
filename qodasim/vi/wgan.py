"""A small Wasserstein GAN on real data as a variational inequality (the ``jax`` extra).

Generator ``G_θ: z ↦ x`` and critic ``D_φ: x ↦ ℝ`` are multilayer perceptrons (tanh hidden units;
for images a tanh output in ``[−1, 1]``).  The game is ``min_θ max_φ f(θ, φ)`` with

``f(θ, φ) = E_x D_φ(x) − E_z D_φ(G_θ(z)) − λ·E_x̂ (‖∇_x D_φ(x̂)‖ − 1)²``

(Arjovsky, Chintala & Bottou 2017; the gradient penalty of Gulrajani et al. 2017 when ``λ > 0``,
``x̂`` on segments between real and generated points), and the VI operator is the simultaneous
gradient ``A(θ, φ) = (∇_θ f, −∇_φ f)`` — differentiated by jax, in float64.  With weight clipping
(``clip > 0``) the critic's weights live in the box ``[−c, c]``: :meth:`WGANProblem.project` is the
Euclidean projection onto it.  The game is not monotone; the solvers run on it all the same.

The parameters are flattened into one vector, generator first; the :class:`~qodasim.quantize.LayerLayout`
has one layer per parameter array and types by role: ``"role"`` typing gives 4 types (generator /
critic × weight / bias), ``"position"`` 12 (… × first / hidden / last layer).

Data: ``"digits"`` — scikit-learn's bundled 8×8 digits (1,797 images, pixels scaled to ``[−1, 1]``)
— or ``"gaussians8"`` — a mixture of 8 Gaussians on a circle of radius 2 (std 0.05).  A fixed share
(20%) is held out for the quality measures.  Worker noise: each worker draws its own minibatch of
real points and latents from its counter-based generator (``NoiseModel("finite_sum", batch=B)``).

Measures (:meth:`WGANProblem.measures`): ``opnorm`` — ``‖A(x)‖`` on the whole training set and a fixed
latent sample; ``energy`` — the energy distance between generated samples (a fixed latent sample) and
the held-out data, ``2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖`` (Székely & Rizzo 2013; zero iff the
distributions agree; computed without any pretrained network).  Energy distance rewards a blurred
mean image (a Gaussian fit scores better than real digits of one class), so for digits the quality
measures are ``frechet`` — the Fréchet distance between generated and held-out digits in the features
of a digit classifier trained on the training split (:mod:`qodasim.vi.digitscore`, trained on first
use) — and ``coverage`` — how many of the 10 classes the classifier finds among the generated
samples.  For the mixture, ``modes`` — how many of the 8 modes have a generated point within 3
standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..quantize import LayerLayout
from ..validate import check_int
from .problems import Problem

__all__ = ["WGANProblem", "wgan", "energy_distance", "jax_available", "DATASETS"]

#: Datasets a :class:`WGANProblem` can use.
DATASETS = ("digits", "gaussians8")
#: Seed → (digit classifier, its features of the held-out digits), trained once per process.
_SCORERS: dict = {}


def jax_available() -> bool:
    """True when jax can be imported (the ``jax`` extra)."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise ImportError("the WGAN problem needs jax: pip install 'qodasim[jax]'") from exc
    return jax, jnp


def energy_distance(X: np.ndarray, Y: np.ndarray) -> float:
    """The (squared) energy distance ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖`` between two samples (rows).

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim.vi.wgan import energy_distance
    >>> rng = np.random.default_rng(0)
    >>> energy_distance(rng.normal(size=(400, 2)), rng.normal(size=(400, 2))) < 0.02
    True
    >>> energy_distance(rng.normal(size=(400, 2)), rng.normal(3.0, size=(400, 2))) > 2
    True
    """
    X, Y = np.asarray(X, float), np.asarray(Y, float)

    def mean_dist(A, B):
        sq = np.sum(A * A, 1)[:, None] + np.sum(B * B, 1)[None, :] - 2 * A @ B.T
        return float(np.mean(np.sqrt(np.maximum(sq, 0.0))))

    return 2 * mean_dist(X, Y) - mean_dist(X, X) - mean_dist(Y, Y)


def _load(data: str, seed: int, n_mixture: int = 4000) -> np.ndarray:
    if data == "digits":
        from sklearn.datasets import load_digits

        return load_digits().data.astype(np.float64) / 8.0 - 1.0
    rng = np.random.default_rng(seed + 7)
    angles = 2 * np.pi * rng.integers(0, 8, n_mixture) / 8
    return np.column_stack([2 * np.cos(angles), 2 * np.sin(angles)]) + 0.05 * rng.standard_normal((n_mixture, 2))


@dataclass
class WGANProblem(Problem):
    """The simultaneous-gradient operator of a small WGAN (see the module docstring).

    Parameters
    ----------
    data : {"digits", "gaussians8"}
    latent, hidden : int
        Latent dimension and hidden width (two hidden layers in each network).
    clip : float
        Weight clipping of the critic (``0``: none).
    penalty : float
        Gradient-penalty coefficient ``λ`` (``0``: none).
    typing : {"role", "position"}
        Layer types by network × weight/bias (4 types) or also × first/hidden/last (12).
    n_fixed : int
        Latent points of the deterministic operator (with the whole training set) and of the measures.
    seed : int
        Initial parameters, data split, fixed latents.
    """

    data: str = "digits"
    latent: int = 8
    hidden: int = 32
    clip: float = 0.1
    penalty: float = 0.0
    typing: str = "role"
    n_fixed: int = 512
    seed: int = 0
    name: str = field(init=False)
    d: int = field(init=False)
    layout: LayerLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}, got {self.data!r}")
        if self.typing not in ("role", "position"):
            raise ValueError(f"typing must be 'role' or 'position', got {self.typing!r}")
        for name in ("latent", "hidden", "n_fixed"):
            val = getattr(self, name)
            check_int(val, name, 1, what="a positive integer")
        for name in ("clip", "penalty"):
            val = getattr(self, name)
            if not (np.isfinite(val) and val >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        self._jx = _jax()
        rng = np.random.default_rng(self.seed)
        full = _load(self.data, self.seed)
        perm = rng.permutation(full.shape[0])
        n_held = full.shape[0] // 5
        self.held_out, self.train = full[perm[:n_held]], full[perm[n_held:]]
        p = full.shape[1]
        self.data_dim = p
        h = self.hidden
        shapes = {"generator": [(self.latent, h), (h, h), (h, p)], "critic": [(p, h), (h, h), (h, 1)]}
        arrays, names, types, self._shapes = [], [], [], []
        for net_i, (net, layers) in enumerate(shapes.items()):
            for pos, (a, b) in enumerate(layers):
                where = ("first", "hidden", "last")[pos]
                for kind, shape in (("weight", (a, b)), ("bias", (b,))):
                    init = rng.standard_normal(shape) / np.sqrt(a) if kind == "weight" else np.zeros(shape)
                    arrays.append(init.ravel())
                    names.append(f"{net}.{where}.{kind}")
                    role = 2 * net_i + (kind == "bias")
                    types.append(role if self.typing == "role" else 3 * role + pos)
                    self._shapes.append(shape)
        self._start = np.concatenate(arrays)
        self.d = int(self._start.size)
        self.n_generator = int(sum(a.size for a, n in zip(arrays, names) if n.startswith("generator")))
        self.layout = LayerLayout([a.size for a in arrays], types, names=tuple(names))
        self.name = f"wgan({self.data}, d={self.d})"
        self._z_fixed = rng.standard_normal((self.n_fixed, self.latent))
        self._eps_fixed = rng.random(self.n_fixed)
        self._build()
        self._start = self.project(self._start[None])[0]

    # ---------------------------------------------------------------- networks (jax)
    def _build(self) -> None:
        jax, jnp = self._jx
        shapes, n_gen, image = self._shapes, self.n_generator, self.data == "digits"
        sizes = [int(np.prod(s)) for s in shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        lam = float(self.penalty)

        def unpack(w):
            return [w[offsets[i] : offsets[i + 1]].reshape(shapes[i]) for i in range(len(shapes))]

        def mlp(ps, x, last):
            for i in range(0, len(ps) - 2, 2):
                x = jnp.tanh(x @ ps[i] + ps[i + 1])
            return last(x @ ps[-2] + ps[-1])

        def gen(ps, z):
            return mlp(ps[:6], z, jnp.tanh if image else (lambda y: y))

        def critic(ps, x):
            return mlp(ps[6:], x, lambda y: y)[..., 0]

        def objective(w, x_real, z, eps):
            ps = unpack(w)
            fake = gen(ps, z)
            f = jnp.mean(critic(ps, x_real)) - jnp.mean(critic(ps, fake))
            if lam > 0:  # gradient penalty on points between real and generated samples
                m = min(x_real.shape[0], fake.shape[0])
                xh = eps[:m, None] * x_real[:m] + (1 - eps[:m, None]) * fake[:m]
                g = jax.vmap(jax.grad(lambda x: critic(ps, x)))(xh)
                f = f - lam * jnp.mean((jnp.sqrt(jnp.sum(g * g, axis=1) + 1e-12) - 1.0) ** 2)
            return f

        def field_(w, x_real, z, eps):
            g = jax.grad(objective)(w, x_real, z, eps)
            return jnp.concatenate([g[:n_gen], -g[n_gen:]])  # (∇_θ f, −∇_φ f)

        self._objective = jax.jit(objective)
        self._field = jax.jit(jax.vmap(field_, in_axes=(0, 0, 0, 0)))
        self._gen = jax.jit(lambda w, z: gen(unpack(w), z))

    def _call_field(self, X, x_real, z, eps) -> np.ndarray:
        jax, jnp = self._jx
        with jax.enable_x64(True):
            out = self._field(jnp.asarray(X, jnp.float64), jnp.asarray(x_real, jnp.float64),
                              jnp.asarray(z, jnp.float64), jnp.asarray(eps, jnp.float64))  # fmt: skip
            return np.array(out, np.float64)  # a writable copy (jax arrays are read-only views)

    # ---------------------------------------------------------------- Problem interface
    def operator(self, X: np.ndarray) -> np.ndarray:
        """The deterministic operator: the whole training set and the fixed latent sample."""
        X = np.atleast_2d(np.asarray(X, np.float64))
        R = X.shape[0]
        rep = lambda a: np.broadcast_to(a, (R, *a.shape))  # noqa: E731
        return self._call_field(X, rep(self.train), rep(self._z_fixed), rep(self._eps_fixed))

    def sample_operator(self, X, K, batch, rng):
        """Each of ``K`` workers' minibatch operator: ``batch`` training points and ``batch`` latents
        drawn from ``rng`` (``(R, K, d)``)."""
        X = np.atleast_2d(np.asarray(X, np.float64))
        R = X.shape[0]
        idx = rng.integers(0, self.train.shape[0], (R, K, batch))
        z = rng.standard_normal((R, K, batch, self.latent))
        eps = rng.random((R, K, batch))
        Xk = np.broadcast_to(X[:, None], (R, K, self.d)).reshape(R * K, self.d)
        out = self._call_field(Xk, self.train[idx].reshape(R * K, batch, -1), z.reshape(R * K, batch, -1),
                               eps.reshape(R * K, batch))  # fmt: skip
        return out.reshape(R, K, self.d)

    def project(self, X: np.ndarray) -> np.ndarray:
        """Weight clipping: the critic's coordinates clipped to ``[−clip, clip]`` (identity if ``clip = 0``)."""
        if not self.clip:
            return X
        X = np.array(X, np.float64, copy=True)
        X[..., self.n_generator :] = np.clip(X[..., self.n_generator :], -self.clip, self.clip)
        return X

    def x0(self) -> np.ndarray:
        """The initial parameters (scaled Gaussian weights, zero biases; critic clipped)."""
        return self._start.copy()

    def objective(self, x: np.ndarray) -> float:
        """``f(θ, φ)`` on the training set and the fixed latents (for derivative checks)."""
        jax, jnp = self._jx
        with jax.enable_x64(True):
            return float(self._objective(jnp.asarray(x, jnp.float64), jnp.asarray(self.train, jnp.float64),
                                         jnp.asarray(self._z_fixed, jnp.float64),
                                         jnp.asarray(self._eps_fixed, jnp.float64)))  # fmt: skip

    def samples(self, x: np.ndarray, n: int | None = None) -> np.ndarray:
        """Generated samples at parameters ``x`` from the fixed latents (the first ``n``)."""
        jax, jnp = self._jx
        z = self._z_fixed[: n or self.n_fixed]
        with jax.enable_x64(True):
            return np.asarray(self._gen(jnp.asarray(x, jnp.float64), jnp.asarray(z, jnp.float64)), np.float64)

    def generate(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The generator's outputs at parameters ``x`` for latents ``z`` (rows of length ``latent``)."""
        jax, jnp = self._jx
        z = np.asarray(z, np.float64)
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(f"z must have shape (n, {self.latent}), got {z.shape}")
        with jax.enable_x64(True):
            return np.asarray(self._gen(jnp.asarray(x, jnp.float64), jnp.asarray(z, jnp.float64)), np.float64)

    @property
    def scorer(self):
        """The digit classifier of the quality measures, trained on this problem's training split on
        first use (:func:`qodasim.vi.digitscore.train_classifier`, seed = the problem's seed; one per
        seed and process: the split depends on the seed only)."""
        if self.data != "digits":
            raise ValueError("the digit classifier exists only for data = 'digits'")
        if self.seed not in _SCORERS:
            from .digitscore import load_digits_split, train_classifier

            _, y_train, _, _ = load_digits_split(self.seed)  # this problem's split (the same permutation)
            clf = train_classifier(self.train, y_train, seed=self.seed)
            _SCORERS[self.seed] = (clf, clf.features(self.held_out))
        return _SCORERS[self.seed][0]

    def quality(self, samples: np.ndarray) -> tuple[float, int]:
        """``(frechet, coverage)`` of digit ``samples`` (rows) against the held-out digits, in the
        features of :attr:`scorer` (:func:`~qodasim.vi.digitscore.frechet_distance`,
        :func:`~qodasim.vi.digitscore.class_coverage`).  Compare only samples of equal size."""
        from .digitscore import class_coverage, frechet_distance

        clf = self.scorer
        return frechet_distance(clf.features(samples), _SCORERS[self.seed][1]), class_coverage(clf, samples)[0]

    def measures(self, X1: np.ndarray) -> dict:
        """``opnorm`` (‖A(x)‖), ``energy`` (energy distance of generated to held-out samples); for
        digits ``frechet`` and ``coverage`` (:meth:`quality` of the fixed latents' samples); for the
        mixture, ``modes`` (modes within 3σ of a generated point)."""

        def energy(X):
            return np.array([energy_distance(self.samples(x), self.held_out) for x in np.atleast_2d(X)])

        out = {"opnorm": lambda X: np.linalg.norm(self.operator(X), axis=1), "energy": energy}
        if self.data == "digits":
            out["frechet"] = lambda X: np.array([self.quality(self.samples(x))[0] for x in np.atleast_2d(X)])
            out["coverage"] = lambda X: np.array([float(self.quality(self.samples(x))[1]) for x in np.atleast_2d(X)])
        if self.data == "gaussians8":
            centres = 2 * np.column_stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)])

            def modes(X):
                res = []
                for x in np.atleast_2d(X):
                    s = self.samples(x)
                    dist = np.linalg.norm(s[:, None, :] - centres[None], axis=2)
                    res.append(float(np.sum(np.any(dist < 0.15, axis=0))))
                return np.array(res)

            out["modes"] = modes
        return out


def wgan(data: str = "digits", **kwargs) -> WGANProblem:
    """A :class:`WGANProblem` (needs the ``jax`` extra).

    Examples
    --------
    >>> from qodasim.vi.wgan import jax_available, wgan
    >>> if jax_available():
    ...     p = wgan("gaussians8", hidden=8)
    ...     print(p.d, p.layout.n_types, p.operator(p.x0()[None]).shape)
    ... else:
    ...     print(267, 4, (1, 267))
    267 4 (1, 267)
    """
    return WGANProblem(data=data, **kwargs)
