"""Real networks' layer layouts and synthetic gradients on them, in documented magnitude families.

Layouts (every tensor a layer, in parameter order):

* :func:`resnet18_layout` — ResNet-18 for ImageNet (He et al. 2016): 62 tensors, 11,689,512
  coordinates — 20 convolution kernels (64 … 2,359,296 coordinates), 20 batch-norm weight/bias
  pairs, the classifier's weight and bias.
* :func:`transformer_layout` — a GPT-2-style decoder (Radford et al. 2019) with 4 blocks, width 384,
  a 8,192-token vocabulary and 512 positions: 52 tensors, 10,440,960 coordinates — token and position
  embeddings, per block two layer norms, the attention's ``qkv`` and output projections and the MLP's
  two matrices with their biases, and the final layer norm.

``scale`` divides every layer's size (at least one coordinate each), keeping the tensor list: the
quick settings of ``qodasim.experiments.realnets`` use it.

Magnitude families (:data:`FAMILIES`; ``gradient(layout, family, seed)`` draws one vector; every
layer ``l`` gets a scale ``s_l`` and a distribution, independently per coordinate unless said):

==================  ==================================================================================
``homogeneous``     identical layers: standard Gaussian, ``s_l = 1`` (the control: no heterogeneity)
``mild``            Gaussian, ``s_l`` log-uniform over ``[1, 3]``
``gaussian``        Gaussian, ``s_l`` log-uniform over ``[1, 1000]``
``student``         Student-t with 3 degrees of freedom, ``s_l`` log-uniform over ``[1, 1000]``
``sparse``          Gaussian on a random fraction ``p_l`` (log-uniform over ``[0.01, 0.5]``) of the
                    coordinates, zero elsewhere, ``s_l`` log-uniform over ``[1, 100]``
``channels``        Gaussian with a scale per output channel (first axis of the tensor) log-uniform
                    over ``[1, 100]``, times ``s_l`` log-uniform over ``[1, 100]``
``typed``           by role (:func:`qodasim.quantize.layers.role_of`): kernels and matrices Gaussian,
                    vectors (biases, norms) Laplace ×10, embeddings Student-t (ν = 3) on 10% of the rows
                    (the tokens of a batch), ``s_l`` log-uniform over ``[1, 10]``
==================  ==================================================================================
"""

from __future__ import annotations

import numpy as np

from ..quantize import LayerLayout
from ..quantize.layers import role_of
from ..validate import check_choice, check_int, check_seed

__all__ = ["FAMILIES", "LAYOUTS", "gradient", "layout_named", "resnet18_layout", "transformer_layout"]

#: The magnitude families (module docstring).
FAMILIES = ("homogeneous", "mild", "gaussian", "student", "sparse", "channels", "typed")


def _resnet18_shapes() -> list[tuple[str, tuple]]:
    out = [("conv1.weight", (64, 3, 7, 7)), ("bn1.weight", (64,)), ("bn1.bias", (64,))]
    c_in = 64
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            pre = f"layer{stage}.{block}"
            first_in = c_in if block == 0 else c
            out += [(f"{pre}.conv1.weight", (c, first_in, 3, 3)), (f"{pre}.bn1.weight", (c,)),
                    (f"{pre}.bn1.bias", (c,)), (f"{pre}.conv2.weight", (c, c, 3, 3)),
                    (f"{pre}.bn2.weight", (c,)), (f"{pre}.bn2.bias", (c,))]  # fmt: skip
            if block == 0 and stage > 1:
                out += [(f"{pre}.downsample.0.weight", (c, c_in, 1, 1)), (f"{pre}.downsample.1.weight", (c,)),
                        (f"{pre}.downsample.1.bias", (c,))]  # fmt: skip
        c_in = c
    return out + [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]


def _transformer_shapes(n_layer: int = 4, width: int = 384, vocab: int = 8192, context: int = 512):
    out = [("wte.weight", (vocab, width)), ("wpe.weight", (context, width))]
    for i in range(n_layer):
        pre = f"h.{i}"
        out += [(f"{pre}.ln_1.weight", (width,)), (f"{pre}.ln_1.bias", (width,)),
                (f"{pre}.attn.c_attn.weight", (3 * width, width)), (f"{pre}.attn.c_attn.bias", (3 * width,)),
                (f"{pre}.attn.c_proj.weight", (width, width)), (f"{pre}.attn.c_proj.bias", (width,)),
                (f"{pre}.ln_2.weight", (width,)), (f"{pre}.ln_2.bias", (width,)),
                (f"{pre}.mlp.c_fc.weight", (4 * width, width)), (f"{pre}.mlp.c_fc.bias", (4 * width,)),
                (f"{pre}.mlp.c_proj.weight", (width, 4 * width)), (f"{pre}.mlp.c_proj.bias", (width,))]  # fmt: skip
    return out + [("ln_f.weight", (width,)), ("ln_f.bias", (width,))]


def _scaled(shape: tuple, scale: int) -> tuple:
    """The shape with its first axis divided by ``scale`` (at least 1)."""
    return (max(1, shape[0] // scale), *shape[1:])


def _layout(shapes: list[tuple[str, tuple]], scale: int) -> LayerLayout:
    """The layout of the named tensors (sizes ÷ ``scale``), typed by role: read from zero-stride
    stand-ins, so no tensor is allocated."""
    check_int(scale, "scale", 1, 2**20)
    return LayerLayout.from_arrays({n: np.broadcast_to(np.float32(0), _scaled(s, scale)) for n, s in shapes},
                                   types="role")  # fmt: skip


def resnet18_layout(scale: int = 1) -> LayerLayout:
    """ResNet-18's 62 tensors (11,689,512 coordinates at ``scale = 1``), typed by role (kernels,
    matrices, vectors)."""
    return _layout(_resnet18_shapes(), scale)


def transformer_layout(scale: int = 1) -> LayerLayout:
    """A GPT-2-style decoder's 52 tensors (10,440,960 coordinates at ``scale = 1``), typed by role
    (embeddings, matrices, vectors)."""
    return _layout(_transformer_shapes(), scale)


#: Layout constructors by name.
LAYOUTS = {"resnet18": resnet18_layout, "transformer": transformer_layout}


def layout_named(name: str, scale: int = 1) -> LayerLayout:
    """The layout ``name`` (a key of :data:`LAYOUTS`) at ``scale``."""
    check_choice(name, "layout", tuple(LAYOUTS))
    return LAYOUTS[name](scale)


def _log_uniform(rng, lo: float, hi: float, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _layer(rng, family: str, name: str, shape: tuple) -> np.ndarray:
    n = int(np.prod(shape))
    if family == "homogeneous":
        return rng.standard_normal(n)
    if family in ("mild", "gaussian"):
        return rng.standard_normal(n) * _log_uniform(rng, 1.0, 3.0 if family == "mild" else 1000.0)
    if family == "student":
        return rng.standard_t(3, n) * _log_uniform(rng, 1.0, 1000.0)
    if family == "sparse":
        x = rng.standard_normal(n) * (rng.random(n) < _log_uniform(rng, 0.01, 0.5))
        return x * _log_uniform(rng, 1.0, 100.0)
    if family == "channels":
        rows = shape[0]
        per = np.repeat(_log_uniform(rng, 1.0, 100.0, rows), n // rows)
        return rng.standard_normal(n) * per * _log_uniform(rng, 1.0, 100.0)
    role = role_of(name, shape)
    s = _log_uniform(rng, 1.0, 10.0)
    if role == "vector":
        return rng.laplace(size=n) * 10.0 * s
    if role == "embedding":
        hit = np.repeat(rng.random(shape[0]) < 0.1, n // shape[0])
        return rng.standard_t(3, n) * hit * s
    return rng.standard_normal(n) * s


def gradient(layout: LayerLayout, family: str, seed: int) -> np.ndarray:
    """One synthetic gradient on ``layout`` (with its names and shapes) in magnitude ``family``
    (module docstring), float64; layer ``l`` is drawn from ``default_rng((seed, l))``."""
    check_choice(family, "family", FAMILIES)
    check_seed(seed, "seed")
    if layout.shapes is None:
        raise ValueError("layout must carry the tensors' shapes (resnet18_layout, transformer_layout)")
    out = np.empty(layout.d)
    for l, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        x = _layer(np.random.default_rng((seed, l)), family, name, tuple(shape))
        if not np.any(x):
            x[0] = 1.0  # a layer of the sparse family drew no nonzero: keep one
        out[layout.layer_slice(l)] = x
    return out
