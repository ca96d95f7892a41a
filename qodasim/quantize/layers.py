"""Named arrays and layouts: a model's parameters or gradients as one flat vector with a layout.

A model hands over its gradients as named N-D arrays: a ``state_dict``-like mapping, an ``.npz``
file, or a pytree (nested dicts, lists and tuples of arrays, as JAX and Flax keep parameters).
:func:`layout_of` turns them into a :class:`~qodasim.quantize.LayerLayout` that keeps every name
and shape, so a flat vector can be built from the arrays (:meth:`LayerLayout.flatten`) and cut back
into them (:meth:`LayerLayout.unflatten`); layers are read in C order.

Layer types (QODA's map ``m(l)``, THEORY §1) come from one of

* ``None`` — every layer type 0 (``M = 1``);
* ``"role"`` — the layer's role read from its shape and name (:func:`role_of`): ``conv`` kernels
  (3 or more dimensions), ``embedding`` tables (2-D, named ``*embed*`` or with a name part ``emb``,
  ``wte``, ``wpe``), other
  ``matrix`` weights (2-D) and ``vector`` parameters (biases, norms' scales; 0-D or 1-D), numbered in
  that order over the roles present;
* ``"auto"`` — :func:`qodasim.optimize.auto_types` on the arrays' values (layers of fewer than two
  coordinates join type 0);
* rules — ``[(pattern, type), ...]`` with ``fnmatch`` patterns on the names, the first match
  winning, or their text form ``"conv*=0,*.bias=1,*=2"``; every layer must match a rule;
* a mapping ``name → type``, a sequence of types, or a callable ``(name, shape) → type``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ROLES",
    "auto_types_of",
    "first_rule",
    "layout_of",
    "named_arrays",
    "parse_rules",
    "role_of",
    "roles_present",
    "types_of",
    "unflatten_tree",
]

#: Layer roles read from shapes and names, in the order :func:`types_of` numbers them.
ROLES = ("conv", "embedding", "matrix", "vector")
_EMBED_TOKENS = ("emb", "wte", "wpe", "tok_emb", "pos_emb", "tok_embeddings")


def role_of(name: str, shape: tuple) -> str:
    """The role of a layer: ``"conv"`` (3+ dimensions), ``"embedding"`` (2-D with an embedding's name),
    ``"matrix"`` (2-D) or ``"vector"`` (0-D or 1-D)."""
    ndim = len(shape)
    if ndim >= 3:
        return "conv"
    if ndim == 2:
        low = name.lower()
        tokens = low.replace("/", ".").split(".")
        return "embedding" if "embed" in low or any(t in _EMBED_TOKENS for t in tokens) else "matrix"
    return "vector"


def _path_name(parts: tuple) -> str:
    return ".".join(str(p) for p in parts)


def named_arrays(tree, name: str = "arrays") -> dict[str, np.ndarray]:
    """The arrays of ``tree`` by name, in order.

    ``tree`` is a mapping of names to arrays (a ``state_dict``, a loaded ``.npz``), or a pytree:
    nested mappings, lists and tuples whose leaves are arrays (NumPy, JAX or anything ``np.asarray``
    reads).  Nested names join their keys with dots (``"dense.0.kernel"``); mappings keep their
    order.  Raises ``TypeError``/``ValueError`` naming the offending entry for a non-numeric or
    empty leaf, a duplicate name, or an empty tree.
    """
    out: dict[str, np.ndarray] = {}

    def walk(node, parts: tuple) -> None:
        if isinstance(node, Mapping) or hasattr(node, "files"):  # dicts, state_dicts, np.load(.npz)
            keys = list(node.files) if hasattr(node, "files") and not isinstance(node, Mapping) else list(node)
            for k in keys:
                if not isinstance(k, (str, int, np.integer)):
                    raise TypeError(f"{name}: keys must be strings, got {type(k).__name__}")
                walk(node[k], (*parts, k))
            return
        if isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                walk(child, (*parts, i))
            return
        key = _path_name(parts) if parts else "0"
        if hasattr(node, "detach") and hasattr(node, "cpu"):  # a torch tensor, without importing torch
            node = node.detach().cpu()
            if str(getattr(node, "dtype", "")) == "torch.bfloat16":
                node = node.float()
            node = node.numpy()
        try:
            arr = np.asarray(node)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}[{key!r}] is not an array: {exc}") from None
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
            raise TypeError(f"{name}[{key!r}] must hold numbers, got dtype {arr.dtype}")
        if arr.size == 0:
            raise ValueError(f"{name}[{key!r}] is empty (shape {arr.shape}); leave it out")
        if key in out:
            raise ValueError(f"{name}: two entries are named {key!r}")
        out[key] = arr

    walk(tree, ())
    if not out:
        raise ValueError(f"{name} holds no arrays")
    return out


def parse_rules(text: str) -> list[tuple[str, int]]:
    """``"conv*=0,*.bias=1,*=2"`` → ``[("conv*", 0), ("*.bias", 1), ("*", 2)]``."""
    if not isinstance(text, str):
        raise TypeError(f"types: rules must be a string, got {type(text).__name__}")
    rules = []
    for part in text.split(","):
        pat, sep, t = part.strip().rpartition("=")
        if not sep or not pat:
            raise ValueError(f"types: rule {part.strip()!r} must read PATTERN=TYPE (e.g. '*.bias=1')")
        try:
            rules.append((pat, int(t)))
        except ValueError:
            raise ValueError(f"types: rule {part.strip()!r}: the type must be an integer, got {t!r}") from None
    return rules


def _check_type(t, where: str) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"types: {where} must be an integer >= 0, got {t!r}")
    return int(t)


def roles_present(arrays: Mapping[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """``(role of each array, the roles present in ROLES order)``: type ``m`` of ``types="role"`` is
    ``present[m]``."""
    roles = [role_of(n, tuple(np.shape(a))) for n, a in arrays.items()]
    return roles, [r for r in ROLES if r in roles]


def auto_types_of(arrays: Mapping[str, np.ndarray], auto_options: Mapping | None = None):
    """``(types, AutoTypes or None)``: :func:`~qodasim.optimize.auto_types` on the arrays of two or
    more coordinates; the others (and every array when none has two) join type 0."""
    from ..optimize.autotype import auto_types  # levels are fitted by the optimizer (one stage up)

    values = list(arrays.values())
    big = [i for i, a in enumerate(values) if np.size(a) >= 2]
    out = np.zeros(len(values), np.int64)
    if not big:
        return out, None
    found = auto_types([np.asarray(values[i], np.float64) for i in big], **dict(auto_options or {}))
    out[big] = found.types
    return out, found


def first_rule(name: str, rules) -> tuple[str, int]:
    """The first ``(pattern, type)`` of ``rules`` whose ``fnmatch`` pattern matches ``name``."""
    hit = next(((str(pat), t) for pat, t in rules if fnmatch.fnmatchcase(name, str(pat))), None)
    if hit is None:
        raise ValueError(f"types: no rule matches layer {name!r} (end the rules with a catch-all '*')")
    return hit


def types_of(arrays: Mapping[str, np.ndarray], types=None, *, auto_options: Mapping | None = None) -> np.ndarray:
    """The type of each named array under the rule ``types`` (see the module docstring)."""
    names = list(arrays)
    shapes = [tuple(np.shape(a)) for a in arrays.values()]
    if types is None:
        return np.zeros(len(names), np.int64)
    if isinstance(types, str) and types == "role":
        roles, present = roles_present(arrays)
        return np.array([present.index(r) for r in roles], np.int64)
    if isinstance(types, str) and types == "auto":
        return auto_types_of(arrays, auto_options)[0]
    if isinstance(types, str):
        types = parse_rules(types)
    if callable(types):
        return np.array([_check_type(types(n, s), f"the rule's type for {n!r}") for n, s in zip(names, shapes)],
                        np.int64)  # fmt: skip
    if isinstance(types, Mapping):
        missing = [n for n in names if n not in types]
        if missing:
            raise ValueError(f"types: no type for layer {missing[0]!r}")
        extra = [n for n in types if n not in arrays]
        if extra:
            raise ValueError(f"types: {extra[0]!r} is not a layer")
        return np.array([_check_type(types[n], f"types[{n!r}]") for n in names], np.int64)
    if isinstance(types, Sequence) and types and all(isinstance(r, (tuple, list)) and len(r) == 2 for r in types):
        return np.array([_check_type(first_rule(n, types)[1], f"the rule's type for {n!r}") for n in names], np.int64)
    seq = np.asarray(types)
    if seq.ndim != 1 or seq.size != len(names):
        raise ValueError(f"types must give one type per layer ({len(names)}), or be None, 'role', 'auto' or rules")
    return np.array([_check_type(t, "every type") for t in seq.tolist()], np.int64)


def layout_of(arrays, types=None, *, auto_options: Mapping | None = None):
    """The :class:`~qodasim.quantize.LayerLayout` of named arrays (a mapping or a pytree), keeping
    their names and shapes; ``types`` as in the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim import LayerLayout
    >>> grads = {"conv.weight": np.ones((4, 1, 3, 3)), "conv.bias": np.ones(4), "fc.weight": np.ones((2, 36))}
    >>> lay = LayerLayout.from_arrays(grads, types="role")
    >>> lay.sizes.tolist(), lay.types.tolist(), lay.shapes
    ([36, 4, 72], [0, 2, 1], ((4, 1, 3, 3), (4,), (2, 36)))
    >>> v = lay.flatten(grads)
    >>> lay.unflatten(v)["fc.weight"].shape
    (2, 36)
    """
    from .plan import LayerLayout

    named = named_arrays(arrays)
    t = types_of(named, types, auto_options=auto_options)
    shapes = tuple(tuple(int(x) for x in np.shape(a)) for a in named.values())
    return LayerLayout([int(np.size(a)) for a in named.values()], t, names=tuple(named), shapes=shapes)


def flatten(layout, arrays, dtype=None) -> np.ndarray:
    """The flat vector of ``arrays`` (a mapping or pytree with the layout's names and shapes)."""
    named = named_arrays(arrays)
    if tuple(named) != tuple(layout.names):
        extra = [n for n in named if n not in layout.names]
        missing = [n for n in layout.names if n not in named]
        what = (
            f"{extra[0]!r} is not a layer of the layout"
            if extra
            else (f"layer {missing[0]!r} is missing" if missing else "the layers are in another order")
        )
        raise ValueError(f"arrays: {what}")
    shapes = layout.shapes or tuple((int(s),) for s in layout.sizes)
    for (n, a), shp, size in zip(named.items(), shapes, layout.sizes):
        if a.size != int(size) or (layout.shapes is not None and tuple(a.shape) != tuple(shp)):
            raise ValueError(f"arrays[{n!r}] has shape {a.shape}, the layout expects {tuple(shp)}")
    if dtype is None:
        dtype = np.result_type(*[a.dtype for a in named.values()], np.float32)
        dtype = np.float32 if dtype == np.float32 else np.float64
    out = np.empty(layout.d, dtype)
    for a, lo, hi in zip(named.values(), layout.offsets[:-1], layout.offsets[1:]):
        out[int(lo) : int(hi)] = a.reshape(-1)
    return out


def unflatten(layout, v) -> dict[str, np.ndarray]:
    """``name → array`` views of the flat vector ``v`` in the layout's shapes."""
    v = np.asarray(v)
    if v.ndim != 1 or v.size != layout.d:
        raise ValueError(f"v must be a flat vector of {layout.d} coordinates, got shape {v.shape}")
    shapes = layout.shapes or tuple((int(s),) for s in layout.sizes)
    return {n: v[int(lo):int(hi)].reshape(shp)
            for n, shp, lo, hi in zip(layout.names, shapes, layout.offsets[:-1], layout.offsets[1:])}  # fmt: skip


def unflatten_tree(layout, v, like):
    """The flat vector ``v`` as a pytree with the nesting of ``like`` (mappings become dicts, lists
    and tuples keep their kind); the inverse of ``layout.flatten(like)``."""
    parts = unflatten(layout, v)

    def build(node, path: tuple):
        if isinstance(node, Mapping) or (hasattr(node, "files") and not isinstance(node, (list, tuple))):
            keys = list(node.files) if hasattr(node, "files") and not isinstance(node, Mapping) else list(node)
            return {k: build(node[k], (*path, k)) for k in keys}
        if isinstance(node, (list, tuple)):
            children = [build(c, (*path, i)) for i, c in enumerate(node)]
            return type(node)(*children) if hasattr(node, "_fields") else type(node)(children)  # namedtuples too
        return parts[_path_name(path) if path else "0"]

    return build(like, ())
