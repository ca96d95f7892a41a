"""Layer layouts and named arrays: a model's parameters or gradients as one flat vector with a layout.

A :class:`LayerLayout` names the layers of a flat vector (sizes, and shapes when known) and maps
each to one of ``M`` types (THEORY §1, layer-wise quantizer); ``qodasim.quantize.plan`` cuts a
vector into the kernels' segments from it.

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
* ``"auto"`` is not resolved here: fitting types to the values is the optimizer's job, one stage up —
  :func:`qodasim.optimize.auto_layout` (or :func:`qodasim.optimize.auto_types_of` for the types);
* rules — ``[(pattern, type), ...]`` with ``fnmatch`` patterns on the names, the first match
  winning, or their text form ``"conv*=0,*.bias=1,*=2"``; every layer must match a rule;
* a mapping ``name → type``, a sequence of types, or a callable ``(name, shape) → type``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..validate import check_int


def _as_int_array(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must contain integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _as_shape(s) -> tuple:
    try:
        shp = tuple(int(x) for x in s)
    except (TypeError, ValueError):
        raise TypeError(f"shapes: each shape must be a tuple of integers, got {s!r}") from None
    if any(x < 0 for x in shp):
        raise ValueError(f"shapes: negative dimension in {shp}")
    return shp


def _checked_sizes(sizes) -> np.ndarray:
    """Layer sizes: at least one, each ``≥ 1``, in total at most :data:`MAX_LAYOUT_D`."""
    sizes = _as_int_array(sizes, "sizes")
    if sizes.size == 0:
        raise ValueError("sizes: a layout needs at least one layer")
    if np.any(sizes < 1):
        raise ValueError("sizes: every layer size must be >= 1")
    if int(sizes.max()) * sizes.size > MAX_LAYOUT_D and sum(int(x) for x in sizes) > MAX_LAYOUT_D:  # no int64 wrap
        raise ValueError(f"sizes: the layout's dimension exceeds {MAX_LAYOUT_D} coordinates")
    return sizes


def _checked_types(types, n_types, sizes: np.ndarray) -> tuple[np.ndarray, int]:
    """``(types, n_types)``: one type ``≥ 0`` per layer (all 0 by default), ``n_types`` above each."""
    types = np.zeros(sizes.size, np.int64) if types is None else _as_int_array(types, "types")
    if types.shape != sizes.shape:
        raise ValueError(f"types has {types.size} entries but sizes has {sizes.size}")
    if np.any(types < 0):
        raise ValueError("types must be >= 0")
    n = int(types.max()) + 1 if n_types is None else int(n_types)
    if n < int(types.max()) + 1:
        raise ValueError(f"n_types={n} but a layer has type {int(types.max())}")
    return types, n


def _checked_shapes(shapes, names: tuple, sizes: np.ndarray) -> tuple:
    """One shape per layer whose product is the layer's size."""
    shapes = tuple(_as_shape(s) for s in shapes)
    if len(shapes) != sizes.size:
        raise ValueError(f"shapes has {len(shapes)} entries but sizes has {sizes.size}")
    for name, shp, size in zip(names, shapes, sizes.tolist()):
        if int(np.prod(shp, dtype=np.int64)) != size:
            raise ValueError(f"shapes: layer {name!r} has shape {shp} but size {size}")
    return shapes


#: Largest total dimension a layout may describe (offsets are int64; 2^48 coordinates is far beyond memory).
MAX_LAYOUT_D = 2**48


@dataclass(frozen=True, eq=False)
class LayerLayout:
    """Named layers of a flat vector, each mapped to one of ``M`` types.

    Parameters
    ----------
    sizes : sequence of int
        Layer sizes ``d_l ≥ 1``; the vector has ``d = Σ d_l`` coordinates, layers in order.
    types : sequence of int, optional
        Type ``m(l) ∈ {0..M-1}`` of each layer (default: all 0, i.e. ``M = 1``).
    names : sequence of str, optional
        Layer names (default ``layer0, layer1, …``).
    n_types : int, optional
        ``M``; default ``max(types) + 1``.  Types with no layer are allowed.
    shapes : sequence of tuple of int, optional
        The array shape of each layer (``prod(shape) = d_l``), kept by :meth:`from_arrays` so that
        :meth:`unflatten` gives the arrays back; equality and hashing ignore names and shapes.
    """

    sizes: np.ndarray
    types: np.ndarray | None = None
    names: tuple[str, ...] | None = None
    n_types: int | None = None
    shapes: tuple | None = None
    offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sizes = _checked_sizes(self.sizes)
        types, n_types = _checked_types(self.types, self.n_types, sizes)
        names = tuple(f"layer{i}" for i in range(sizes.size)) if self.names is None else tuple(self.names)
        if len(names) != sizes.size:
            raise ValueError(f"names has {len(names)} entries but sizes has {sizes.size}")
        shapes = None if self.shapes is None else _checked_shapes(self.shapes, names, sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        for arr in (sizes, types, offsets):
            arr.setflags(write=False)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "n_types", n_types)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def single(cls, d: int) -> LayerLayout:
        """One layer of size ``d`` and type 0 (the global quantizer's layout)."""
        return cls(np.array([d], np.int64))

    @classmethod
    def from_arrays(cls, arrays, types=None) -> LayerLayout:
        """The layout of named N-D arrays — a ``state_dict``-like mapping, a loaded ``.npz`` or a
        pytree — keeping names and shapes; ``types``: ``None``, ``"role"``, name rules
        ``[(pattern, type), ...]`` / ``"conv*=0,*=1"``, a mapping, a sequence or a callable
        (this module's docstring).  Types fitted to the values: :func:`qodasim.optimize.auto_layout`."""
        return layout_of(arrays, types)

    def flatten(self, arrays, dtype=None) -> np.ndarray:
        """The flat vector of named arrays with this layout's names and shapes (C order per layer;
        float32 if every array is, else float64 unless ``dtype`` is given)."""
        return flatten(self, arrays, dtype)

    def unflatten(self, v) -> dict:
        """``name → array``: views of the flat vector ``v`` in this layout's shapes."""
        return unflatten(self, v)

    @property
    def d(self) -> int:
        """Total dimension."""
        return int(self.offsets[-1])

    @property
    def n_layers(self) -> int:
        """Number of layers ``L``."""
        return int(self.sizes.size)

    def layer_slice(self, layer: int) -> slice:
        """The coordinates ``[offset_l, offset_{l+1})`` of layer ``layer`` as a slice."""
        return slice(int(self.offsets[layer]), int(self.offsets[layer + 1]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerLayout):
            return NotImplemented
        return (
            np.array_equal(self.sizes, other.sizes)
            and np.array_equal(self.types, other.types)
            and self.n_types == other.n_types
        )

    def __hash__(self) -> int:
        return hash((self.sizes.tobytes(), self.types.tobytes(), self.n_types))


__all__ = [
    "LayerLayout",
    "ROLES",
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
        children = _children(node, name)
        if children is not None:
            for k, child in children:
                walk(child, (*parts, k))
            return
        key = _path_name(parts) if parts else "0"
        if key in out:
            raise ValueError(f"{name}: two entries are named {key!r}")
        out[key] = _leaf_array(node, f"{name}[{key!r}]")

    walk(tree, ())
    if not out:
        raise ValueError(f"{name} holds no arrays")
    return out


def _children(node, name: str):
    """``[(key, child), ...]`` of a mapping (dicts, state_dicts, a loaded ``.npz``) or a list/tuple, in
    order; ``None`` for a leaf."""
    if isinstance(node, Mapping) or hasattr(node, "files"):
        keys = list(node.files) if hasattr(node, "files") and not isinstance(node, Mapping) else list(node)
        bad = next((k for k in keys if not isinstance(k, (str, int, np.integer))), None)
        if bad is not None:
            raise TypeError(f"{name}: keys must be strings, got {type(bad).__name__}")
        return [(k, node[k]) for k in keys]
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    return None


def _leaf_array(node, where: str) -> np.ndarray:
    """A leaf as a non-empty numeric NumPy array (a torch tensor read without importing torch)."""
    if hasattr(node, "detach") and hasattr(node, "cpu"):
        node = node.detach().cpu()
        if str(getattr(node, "dtype", "")) == "torch.bfloat16":
            node = node.float()
        node = node.numpy()
    try:
        arr = np.asarray(node)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} is not an array: {exc}") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise TypeError(f"{where} must hold numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{where} is empty (shape {arr.shape}); leave it out")
    return arr


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
    check_int(t, f"types: {where}", 0)
    return int(t)


def roles_present(arrays: Mapping[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """``(role of each array, the roles present in ROLES order)``: type ``m`` of ``types="role"`` is
    ``present[m]``."""
    roles = [role_of(n, tuple(np.shape(a))) for n, a in arrays.items()]
    return roles, [r for r in ROLES if r in roles]


def first_rule(name: str, rules) -> tuple[str, int]:
    """The first ``(pattern, type)`` of ``rules`` whose ``fnmatch`` pattern matches ``name``."""
    hit = next(((str(pat), t) for pat, t in rules if fnmatch.fnmatchcase(name, str(pat))), None)
    if hit is None:
        raise ValueError(f"types: no rule matches layer {name!r} (end the rules with a catch-all '*')")
    return hit


def types_of(arrays: Mapping[str, np.ndarray], types=None) -> np.ndarray:
    """The type of each named array under the rule ``types`` (see the module docstring)."""
    names = list(arrays)
    shapes = [tuple(np.shape(a)) for a in arrays.values()]
    if types is None:
        return np.zeros(len(names), np.int64)
    if isinstance(types, str) and types == "role":
        roles, present = roles_present(arrays)
        return np.array([present.index(r) for r in roles], np.int64)
    if isinstance(types, str) and types == "auto":
        raise ValueError(
            "types='auto' fits the types to the values: use qodasim.optimize.auto_layout(arrays, ...) "
            "(or qodasim.optimize.auto_types_of for the types alone)"
        )
    if isinstance(types, str):
        types = parse_rules(types)
    if callable(types):
        return np.array([_check_type(types(n, s), f"the rule's type for {n!r}") for n, s in zip(names, shapes)],
                        np.int64)  # fmt: skip
    if isinstance(types, Mapping):
        return _types_of_mapping(names, types)
    if isinstance(types, Sequence) and types and all(isinstance(r, (tuple, list)) and len(r) == 2 for r in types):
        return np.array([_check_type(first_rule(n, types)[1], f"the rule's type for {n!r}") for n in names], np.int64)
    seq = np.asarray(types)
    if seq.ndim != 1 or seq.size != len(names):
        raise ValueError(f"types must give one type per layer ({len(names)}), or be None, 'role' or rules")
    return np.array([_check_type(t, "every type") for t in seq.tolist()], np.int64)


def _types_of_mapping(names: list, types: Mapping) -> np.ndarray:
    """``types[name]`` for every layer; each layer named, and every name a layer."""
    missing = [n for n in names if n not in types]
    if missing:
        raise ValueError(f"types: no type for layer {missing[0]!r}")
    extra = [n for n in types if n not in names]
    if extra:
        raise ValueError(f"types: {extra[0]!r} is not a layer")
    return np.array([_check_type(types[n], f"types[{n!r}]") for n in names], np.int64)


def layout_of(arrays, types=None):
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
    named = named_arrays(arrays)
    t = types_of(named, types)
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
