"""Named arrays and layer layouts: names, shapes, pytrees, .npz, layer types by role or rules."""

from __future__ import annotations

import numpy as np
import pytest
from cases import grads

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.quantize.layers import named_arrays, types_of, unflatten_tree


def test_from_arrays_keeps_names_and_shapes_and_round_trips():
    g = grads()
    lay = LayerLayout.from_arrays(g)
    assert lay.names == tuple(g) and lay.shapes == tuple(a.shape for a in g.values())
    assert lay.sizes.tolist() == [a.size for a in g.values()] and lay.n_types == 1
    v = lay.flatten(g)
    assert v.dtype == np.float32 and v.size == lay.d
    back = lay.unflatten(v)
    for n, a in g.items():
        assert np.array_equal(back[n], a) and back[n].shape == a.shape
    assert np.array_equal(v[lay.layer_slice(2)], g["conv1.weight"].ravel())  # C order, layers in order
    with pytest.raises(ValueError, match="missing"):
        lay.flatten({k: a for k, a in list(g.items())[1:]})
    bad = dict(g, **{"fc.weight": g["fc.weight"].T})
    with pytest.raises(ValueError, match="fc.weight"):
        lay.flatten(bad)
    with pytest.raises(ValueError, match="shapes"):
        LayerLayout([4, 3], shapes=[(2, 2), (2, 2)])


def test_pytrees_and_npz_become_named_arrays(tmp_path):
    tree = {"dense": [{"kernel": np.ones((3, 2)), "bias": np.zeros(2)}], "out": (np.ones(4),)}
    lay = LayerLayout.from_arrays(tree)
    assert lay.names == ("dense.0.kernel", "dense.0.bias", "out.0")
    v = np.arange(lay.d, dtype=np.float64)
    rebuilt = unflatten_tree(lay, v, tree)
    assert isinstance(rebuilt["out"], tuple) and rebuilt["dense"][0]["kernel"].shape == (3, 2)
    assert np.array_equal(lay.flatten(rebuilt), v)
    from collections import namedtuple

    Pair = namedtuple("Pair", "w b")
    nt = {"p": Pair(np.ones((2, 2)), np.zeros(2))}
    lay2 = LayerLayout.from_arrays(nt)
    back = unflatten_tree(lay2, np.arange(6.0), nt)
    assert isinstance(back["p"], Pair) and back["p"].b.tolist() == [4.0, 5.0]
    np.savez(tmp_path / "g.npz", **grads())
    with np.load(tmp_path / "g.npz") as z:
        assert list(named_arrays(z)) == list(grads())
    for bad, err in (({"a": np.zeros((0, 3))}, ValueError), ({"a": np.array(["x"])}, TypeError), ({}, ValueError)):
        with pytest.raises(err, match="a|no arrays"):
            LayerLayout.from_arrays(bad)


def test_a_jax_pytree_is_named_arrays():
    jnp = pytest.importorskip("jax.numpy")
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}, "head": [jnp.arange(4.0)]}
    lay = LayerLayout.from_arrays(params, types="role")
    assert lay.names == ("dense.kernel", "dense.bias", "head.0") and lay.types.tolist() == [0, 1, 1]
    v = lay.flatten(params)
    assert v.dtype == np.float32 and v[-4:].tolist() == [0.0, 1.0, 2.0, 3.0]
    back = unflatten_tree(lay, v, params)
    assert back["dense"]["kernel"].shape == (3, 2) and isinstance(back["head"], list)


def test_types_by_role_rules_mapping_and_auto():
    g = grads()
    role = types_of(g, "role")  # conv 0, embedding 1, matrix 2, vector 3 (numbered over the roles present)
    assert role.tolist() == [0, 3, 0, 3, 0, 3, 0, 3, 1, 2]
    rules = types_of(g, "conv*.weight=0,*.bias=1,*=2")
    assert rules.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 2, 2]
    assert types_of(g, [("*.bias", 1), ("*", 0)]).tolist() == [0, 1] * 4 + [0, 0]  # the first match wins
    assert types_of(g, lambda n, s: len(s) % 2).tolist() == [0, 1] * 4 + [0, 0]
    assert types_of(g, {n: i % 2 for i, n in enumerate(g)}).tolist() == [0, 1] * 5
    assert types_of({"w": np.ones((3, 3)), "b": np.ones(3)}, "role").tolist() == [0, 1]  # roles present only
    with pytest.raises(ValueError, match="no rule matches layer 'embed.weight'"):
        types_of(g, "conv*=0,*.bias=1")
    with pytest.raises(ValueError, match="PATTERN=TYPE"):
        types_of(g, "conv*")
    with pytest.raises(ValueError, match="no type for layer"):
        types_of(g, {"fc.weight": 0})
    with pytest.raises(ValueError, match="one type per layer"):
        types_of(g, [0, 1])
    rng = np.random.default_rng(0)  # planted: dense Gaussian layers and sparse spiky ones
    planted = {f"g{i}": rng.standard_normal(2000) for i in range(3)}
    planted.update({f"s{i}": rng.standard_normal(2000) * (rng.random(2000) < 0.05) for i in range(3)})
    from qodasim.optimize import auto_layout

    auto = auto_layout(planted, max_types=3)
    assert auto.n_types == 2 and len(set(auto.types[:3])) == 1 and len(set(auto.types[3:])) == 1
    assert auto.names == tuple(planted) and auto.shapes == ((2000,),) * 6
    with pytest.raises(ValueError, match="auto_layout"):  # fitting types is the optimizer's, one stage up
        LayerLayout.from_arrays(planted, types="auto")


def test_nd_arrays_quantize_as_their_flat_vector():
    g = grads()["conv0.weight"].astype(np.float64)
    lay = LayerLayout([144, 144], [0, 1])
    for Q in (Quantizer(Levels.uniform(5)), Quantizer(Levels.exponential(3), bucket_size=16),
              LayerwiseQuantizer(lay, (Levels.uniform(3), Levels.uniform(9)))):  # fmt: skip
        assert Q.quantize(g, Key(1)).equals(Q.quantize(g.ravel(), Key(1)))
        assert Q.exact_variance(g) == Q.exact_variance(g.ravel())
    with pytest.raises(ValueError, match="non-empty"):
        Quantizer(Levels.uniform(3)).quantize(np.zeros((0, 4)), Key(0))
