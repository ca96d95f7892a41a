"""A DDP communication hook that sends real Elias bit streams of quantized gradients.

Register it like PyTorch's own hooks::

    state = qodasim.torch.QuantizeState(model, scheme="layerwise", levels=("uniform:3", "uniform:7"),
                                        types="role", seed=0)
    ddp_model.register_comm_hook(state, qodasim.torch.hook)

For every gradient bucket DDP hands over, each rank

1. quantizes the bucket's gradients — ``scheme="global"`` (one norm for the bucket), ``"bucketed"``
   (a norm per ``bucket_size`` coordinates: QSGD's practice), ``"layerwise"`` (QODA: a norm per
   layer, the levels of each layer's type, types from name rules or roles), or ``"fp32"`` (the raw
   float32 values: a pass-through that must match DDP's all-reduce) — with the key
   ``Key(seed, rank, step·2^16 + bucket)``; layers matching ``exclude`` travel as raw float32;
2. encodes them to one message (:class:`qodasim.coding.Encoder`: spec and level tables only when
   they change), the excluded layers' bytes appended;
3. exchanges the messages by a variable-length all-gather: the sizes first, then the messages, each
   padded only to the longest (what a fixed-size all-gather needs);
4. decodes every rank's message, and averages the ``K`` vectors in rank order in float64 (the same
   bits on every rank), written back in the bucket's dtype.

With ``collective="sra"`` steps 2–4 are the compressed scatter-reduce-allgather of the paper's system
instead (:mod:`qodasim.torch.sra`): chunks to their owners by an all-to-all, the owners' means
re-quantized and all-gathered — ``2(K−1)/K`` of a message per rank instead of ``K − 1``, at the price
of a second quantization (THEORY §8).

The rounding draws are counter-based (THEORY §5), so the run can be replayed in one process bit for
bit (:func:`replay_bucket`).  Each rank's :class:`HookLedger` records the bits of its messages, read
from the streams, per step, bucket and layer.  Gradients in fp16/bf16 are quantized from their
float32 values; gradients on a GPU are quantized by the toolkit's CUDA kernels where numba-cuda runs
(``engine="auto"``; the same bits as the CPU kernels, tested under the CUDA simulator) and their
streams are encoded and decoded on the host; a world of one rank works.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from ..coding import CODES, Decoder
from ..levels import Levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from ..quantize.layers import types_of
from ..rng import Key
from ..validate import check_int, check_seed
from . import sra as _sra
from ._parts import _assemble, _pack, _split

__all__ = ["COLLECTIVES", "SCHEMES", "HookLedger", "QuantizeState", "hook", "replay_bucket"]

#: The hook's quantization schemes (module docstring).
SCHEMES = ("fp32", "global", "bucketed", "layerwise")
#: How the hook moves the messages (module docstring; :mod:`qodasim.torch.sra`).
COLLECTIVES = ("allgather", "sra")
#: Buckets per step a key can tell apart (the key's round is ``step · 2^16 + bucket``).
MAX_BUCKETS = 2**16


def _as_levels(x, what: str) -> Levels:
    if isinstance(x, Levels):
        return x
    if isinstance(x, str):
        return Levels.parse(x)
    raise TypeError(f"{what} must be a qodasim.Levels or a spec like 'uniform:7', got {type(x).__name__}")


@dataclass
class HookLedger:
    """Bits this rank sent, from its streams: one row per (step, bucket) and one per (step, bucket, layer).

    The compression ratio is defined once: uncompressed bits (32 per coordinate) over the bits sent.
    """

    messages: list = field(default_factory=list)  # dicts: step, bucket, collective, coords, bits, bytes, ...
    layers: list = field(default_factory=list)  # dicts: step, bucket, layer, coords, bits

    def total_bits(self) -> int:
        """Bits of every message this rank sent."""
        return int(sum(m["bits"] for m in self.messages))

    def total_bytes(self) -> int:
        """Bytes of every message this rank sent (each message rounded up to a whole byte)."""
        return int(sum(m["bytes"] for m in self.messages))

    def ratio(self) -> float:
        """Compression ratio: ``32 · coordinates / bits sent`` over every message (``> 1``: smaller)."""
        bits = self.total_bits()
        return 32.0 * sum(m["coords"] for m in self.messages) / bits if bits else float("nan")

    def bits_per_coord(self) -> float:
        """Bits sent per coordinate over every message."""
        n = sum(m["coords"] for m in self.messages)
        return self.total_bits() / n if n else float("nan")

    def state_dict(self) -> dict:
        """The rows, as plain dicts (JSON- and ``torch.save``-able)."""
        return {"messages": [dict(m) for m in self.messages], "layers": [dict(r) for r in self.layers]}

    def load_state_dict(self, state: dict) -> None:
        """Restore the rows of :meth:`state_dict`."""
        self.messages = [dict(m) for m in state["messages"]]
        self.layers = [dict(r) for r in state["layers"]]


def _check_options(model, scheme, types, seed, bucket_size, engine, collective, code) -> None:
    """:class:`QuantizeState`'s options, each refused with an error naming it."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if types == "auto":
        raise ValueError("types='auto' fits types to gradients: run `qodasim analyze` offline and pass its "
                         "types as rules or a mapping")  # fmt: skip
    check_seed(seed)
    check_int(bucket_size, "bucket_size", 1, what="a positive integer")
    if engine not in ("auto", "numba", "cuda"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'cuda', got {engine!r}")
    if collective not in COLLECTIVES:
        raise ValueError(f"collective must be one of {COLLECTIVES}, got {collective!r}")
    if code not in CODES:
        raise ValueError(f"code must be one of {CODES}, got {code!r}")


def _levels_of(levels, scheme: str, n_types: int) -> tuple:
    """The level sequences: one (default ``uniform:7``), or one per type for ``layerwise``."""
    if levels is None:
        levels = "uniform:7"
    out = tuple(_as_levels(x, "levels") for x in levels) if isinstance(levels, (list, tuple)) else (
        _as_levels(levels, "levels"),)  # fmt: skip
    if scheme == "layerwise" and len(out) not in (1, n_types):
        raise ValueError(f"levels: {len(out)} sequences for {n_types} types")
    if scheme in ("global", "bucketed") and len(out) != 1:
        raise ValueError(f"levels: the {scheme} scheme takes one level sequence")
    return out


class QuantizeState:
    """Configuration and state of :func:`hook` (one per rank).

    Parameters
    ----------
    model : torch.nn.Module
        The model (its ``named_parameters`` name the bucket's gradients).
    scheme : {"fp32", "global", "bucketed", "layerwise"}
    levels : Levels, spec or sequence of them
        One level sequence (``global``, ``bucketed``) or one per type (``layerwise``); default
        ``"uniform:7"``.
    types : None, "role", rules, mapping or callable
        The layer → type map for ``layerwise`` (:mod:`qodasim.quantize.layers`; ``"auto"`` is not
        available inside training: fit it offline with ``qodasim analyze``).
    bucket_size : int
        Coordinates per norm for ``bucketed`` (default 512).
    exclude : sequence of str
        ``fnmatch`` patterns of parameter names sent as raw float32 (e.g. ``["*.bias", "*norm*"]``).
    seed : int
        Key seed, the same on every rank.
    process_group : ProcessGroup, optional
        Default: the world.
    code : {"gamma", "delta", "omega"}
    record_inputs : bool
        Keep every bucket's local gradient (float32) in ``inputs``, for :func:`replay_bucket`.
    engine : {"auto", "numba", "cuda"}
        Quantization engine: ``"auto"`` uses the toolkit's CUDA kernels for gradients on a GPU when
        numba-cuda can run there, else the CPU kernels; every engine gives the same bits.
    collective : {"allgather", "sra"}
        How the messages travel: every rank's whole message to every rank, or the compressed
        scatter-reduce-allgather (:mod:`qodasim.torch.sra`; a bucket whose quantized part has fewer
        coordinates than ranks goes by the all-gather).  A ledger row per (step, bucket) either way:
        for SRA the bits of the ``K − 1`` chunks this rank sent and of its re-quantized chunk.
    """

    def __init__(self, model, scheme: str = "layerwise", levels=None, types=None, bucket_size: int = 512,
                 exclude=(), seed: int = 0, process_group=None, code: str = "gamma",
                 record_inputs: bool = False, engine: str = "auto", collective: str = "allgather") -> None:  # fmt: skip
        _check_options(model, scheme, types, seed, bucket_size, engine, collective, code)
        self.engine, self.collective = engine, collective
        if isinstance(exclude, str):
            exclude = (exclude,)
        self.scheme, self.seed, self.code, self.bucket_size = scheme, int(seed), code, int(bucket_size)
        self.exclude = tuple(str(p) for p in exclude)
        self.process_group = process_group
        self.record_inputs = bool(record_inputs)
        module = getattr(model, "module", model)  # a DDP wrapper or the model itself
        params = list(module.named_parameters())
        self._names = {id(p): n for n, p in params}
        shapes = {n: tuple(p.shape) for n, p in params}
        stand_ins = {n: np.broadcast_to(np.float32(0), s or (1,)) for n, s in shapes.items()}  # shapes, no memory
        self.type_of = dict(zip(shapes, types_of(stand_ins, types)))
        n_types = max(self.type_of.values(), default=0) + 1
        self.levels = _levels_of(levels, scheme, n_types)
        self.n_types = n_types if scheme == "layerwise" else 1
        self.step = 0
        self.ledger = HookLedger()
        self.inputs: list = []  # (step, bucket, float32 array) when record_inputs
        self._encoders: dict = {}
        self._decoders: dict = {}
        self._layouts: dict = {}
        self._splits: dict = {}
        self._quantizers: dict = {}
        self._sra_plans: dict = {}
        self.bucket_names: dict[int, tuple] = {}  # bucket index -> its parameters' names, as first seen

    # -- what a bucket is -------------------------------------------------------------------------
    def bucket_layout(self, params, d: int | None = None) -> tuple[LayerLayout, np.ndarray]:
        """The bucket's layout (its parameters, in order, with their types) and the mask of layers
        sent as raw float32; a bucket of ``d`` coordinates that its parameters do not fill exactly is
        one layer of type 0."""
        key = (tuple(id(p) for p in params), d)
        hit = self._layouts.get(key)
        if hit is None and d is not None and d != sum(max(1, int(p.numel())) for p in params):
            hit = self._layouts[key] = (LayerLayout([d], names=("bucket",), n_types=self.n_types), np.zeros(1, bool))
        if hit is None:
            names = tuple(self._names.get(id(p), f"param{i}") for i, p in enumerate(params))
            sizes = [max(1, int(p.numel())) for p in params]
            t = [self.type_of.get(n, 0) for n in names]
            raw = np.array([any(fnmatch.fnmatchcase(n, pat) for pat in self.exclude) for n in names], bool)
            lay = LayerLayout(sizes, t if self.scheme == "layerwise" else None, names=names, n_types=self.n_types)
            hit = self._layouts[key] = (lay, raw)
        return hit

    def quantizer(self, layout: LayerLayout, engine: str = "numba"):
        """The quantizer of a bucket's quantized part (``None`` for ``fp32``); one per layout and engine."""
        if self.scheme == "fp32":
            return None
        hit = self._quantizers.get((id(layout), engine))
        if hit is not None and hit[0] is layout:
            return hit[1]
        if self.scheme == "global":
            qz = Quantizer(self.levels[0], engine=engine)
        elif self.scheme == "bucketed":
            qz = Quantizer(self.levels[0], bucket_size=self.bucket_size, engine=engine)
        else:
            lv = self.levels if len(self.levels) == layout.n_types else self.levels * layout.n_types
            qz = LayerwiseQuantizer(layout, tuple(lv[: layout.n_types]), engine=engine)
        self._quantizers[id(layout), engine] = (layout, qz)
        return qz

    def engine_for(self, on_gpu: bool) -> str:
        """The engine for a bucket on the GPU (``on_gpu``) or the host."""
        if self.engine != "auto":
            return self.engine
        if on_gpu:
            from ..quantize.core import cuda_available

            return "cuda" if cuda_available() else "numba"
        return "numba"

    def key(self, rank: int, bucket: int, step: int | None = None) -> Key:
        """The key of ``rank``'s message for ``bucket`` at ``step`` (default: the current step)."""
        step = self.step if step is None else step
        if not 0 <= bucket < MAX_BUCKETS:
            raise ValueError(f"bucket index {bucket} exceeds {MAX_BUCKETS - 1}")
        return Key(self.seed, rank, step * MAX_BUCKETS + bucket)

    # -- saving -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a restart needs: the step and the ledger (the channels restart self-describing)."""
        return {"step": self.step, "seed": self.seed, "scheme": self.scheme, "collective": self.collective,
                "ledger": self.ledger.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the same scheme and seed); the channels restart self-describing."""
        if (state.get("scheme"), state.get("seed"), state.get("collective", "allgather")) != (
                self.scheme, self.seed, self.collective):  # fmt: skip
            raise ValueError("state: saved with another scheme, seed or collective")
        self.step = int(state["step"])
        self.ledger.load_state_dict(state["ledger"])
        self._encoders.clear()
        self._decoders.clear()


def _encode(state: QuantizeState, flat: np.ndarray, layout: LayerLayout, raw: np.ndarray, rank: int,
            bucket: int, engine: str = "numba") -> tuple[bytes, dict, list, np.ndarray]:  # fmt: skip
    """This rank's message for one bucket — the stream of the quantized layers, then the raw float32
    bytes of the excluded ones (all of them for ``fp32``) — its bit counts, and the float64 vector
    every receiver decodes from it."""
    sub, idx, raw_idx = _split(state, layout, raw)
    per_layer = []
    x = qv = None
    if sub is not None:
        v = flat if idx is None else flat[idx]
        qv = state.quantizer(sub, engine).quantize(v, state.key(rank, bucket))
        x = qv.dequantize(np.float64)  # what decoding the stream gives (the decoder is exact)
    part = np.ascontiguousarray(flat[raw_idx], "<f4") if raw_idx.size else None
    data, nbits, head, q_bits = _pack(state, bucket, qv, part)
    if sub is not None:
        per = np.add.reduceat(q_bits, sub.offsets[:-1])
        per_layer += [(sub.names[l], int(sub.sizes[l]), int(per[l])) for l in range(sub.n_layers)]
    if raw_idx.size:
        for l in np.flatnonzero(raw) if sub is not None else range(layout.n_layers):
            per_layer.append((layout.names[l], int(layout.sizes[l]), 32 * int(layout.sizes[l])))
    head["bits"] = nbits
    return data, head, per_layer, _assemble(layout.d, idx, x, raw_idx, part)


def _decode(state: QuantizeState, data: bytes, layout: LayerLayout, raw: np.ndarray, sender: int,
            bucket: int) -> np.ndarray:  # fmt: skip
    """One sender's bucket as float64 (the inverse of :func:`_encode`)."""
    sub, idx, raw_idx = _split(state, layout, raw)
    n_raw = 4 * int(raw_idx.size)
    x = None
    if sub is not None:
        dec = state._decoders.setdefault((bucket, sender), Decoder(max_d=max(layout.d, 1)))
        x = dec.decode(data[: len(data) - n_raw], state.key(sender, bucket)).dequantize(np.float64)
    return _assemble(layout.d, idx, x, raw_idx, np.frombuffer(data[len(data) - n_raw :], "<f4"))


def _all_gather_bytes(data: bytes, group, world: int) -> list[bytes]:
    """Every rank's bytes: the sizes first, then the messages padded to the longest."""
    if world == 1:
        return [data]
    size = torch.tensor([len(data)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    n = [int(s.item()) for s in sizes]
    longest = max(n)
    mine = torch.zeros(longest, dtype=torch.uint8)
    if data:
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    got = [torch.empty(longest, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(got, mine, group=group)
    return [bytes(g[:k].numpy().tobytes()) for g, k in zip(got, n)]


def _all_to_all_bytes(msgs: list[bytes], group, world: int) -> list[bytes]:
    """``msgs[j]`` to rank ``j``; returns what every rank sent this one (the sizes first, then the bytes
    of every pair exactly, by ``all_to_all_single``)."""
    if world == 1:
        return list(msgs)
    sizes = torch.tensor([len(m) for m in msgs], dtype=torch.int64)
    got = torch.empty(world, dtype=torch.int64)
    dist.all_to_all_single(got, sizes, group=group)
    n = [int(k) for k in got.tolist()]
    send = torch.frombuffer(bytearray(b"".join(msgs)), dtype=torch.uint8) if sum(sizes.tolist()) else \
        torch.empty(0, dtype=torch.uint8)  # fmt: skip
    recv = torch.empty(sum(n), dtype=torch.uint8)
    dist.all_to_all_single(recv, send, output_split_sizes=n, input_split_sizes=sizes.tolist(), group=group)
    data = recv.numpy().tobytes()
    at = np.concatenate([[0], np.cumsum(n)])
    return [data[at[k] : at[k + 1]] for k in range(world)]


def _bucket_vector(bucket) -> np.ndarray:
    """The bucket's gradients as float32 on the host (a view of a float32 CPU buffer)."""
    buf = bucket.buffer().detach()
    if buf.is_cuda:
        buf = buf.cpu()
    if buf.dtype != torch.float32:
        return buf.to(torch.float32).numpy()
    return buf.numpy()


def _allgather_round(state: QuantizeState, flat, layout, raw, rank: int, world: int, b: int, engine: str):
    """One bucket by the all-gather: the average and this rank's ledger rows."""
    data, head, per_layer, mine = _encode(state, flat, layout, raw, rank, b, engine)
    msgs = _all_gather_bytes(data, state.process_group, world)
    acc = np.zeros(flat.size, np.float64)
    for sender, m in enumerate(msgs):  # rank order: the same sum on every rank
        acc += mine if sender == rank else _decode(state, m, layout, raw, sender, b)
    acc /= world
    row = {"collective": "allgather", "bytes": len(data), **{k: int(v) for k, v in head.items()},
           "collective_bytes": (max(len(m) for m in msgs) * world + 8 * world) if world > 1 else 0}  # fmt: skip
    return acc, row, per_layer


def _sra_round(state: QuantizeState, plan, flat, rank: int, world: int, b: int):
    """One bucket by the compressed scatter-reduce-allgather (:mod:`qodasim.torch.sra`): the average
    and this rank's ledger rows."""
    group, rnd = state.process_group, state.step * MAX_BUCKETS + b
    out, own, sent = _sra.stage1(state, plan, flat, rank, b, rnd)
    received = _all_to_all_bytes(out, group, world)
    msg2, own2 = _sra.reduce_stage(state, plan, received, own, rank, b, rnd, sent)
    gathered = _all_gather_bytes(msg2, group, world)
    acc = _sra.assemble(state, plan, gathered, own2, rank, b, rnd)
    moved = sum(len(m) for m in received) + max(len(m) for m in gathered) * world + 16 * world if world > 1 else 0
    row = {"collective": "sra", "bytes": sent.nbytes, "bits": sent.bits, **sent.fields,
           "stage1_bytes": [len(m) for m in out], "stage2_bytes": len(msg2), "collective_bytes": moved}  # fmt: skip
    per_layer = [(plan.names[l], int(sent.layer_coords[l]), int(sent.layer_bits[l]))
                 for l in np.flatnonzero(sent.layer_coords)]  # fmt: skip
    return acc, row, per_layer


def hook(state: QuantizeState, bucket):
    """The DDP communication hook (see the module docstring); returns a completed future holding the
    averaged bucket."""
    group = state.process_group
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    rank = dist.get_rank(group) if dist.is_initialized() else 0
    buf = bucket.buffer()
    b = int(bucket.index())
    if buf.numel() == 0:  # nothing to send: every rank has the same (empty) bucket
        if bucket.is_last():
            state.step += 1
        fut = torch.futures.Future()
        fut.set_result(buf)
        return fut
    flat = _bucket_vector(bucket)  # read before the buffer is overwritten below
    layout, raw = state.bucket_layout(bucket.parameters(), flat.size)
    state.bucket_names.setdefault(b, layout.names)
    if state.record_inputs:
        state.inputs.append((state.step, b, flat.copy()))
    engine = state.engine_for(buf.is_cuda)
    plan = _sra.sra_plan(state, layout, raw, world, engine) if state.collective == "sra" else None
    if plan is not None:
        acc, row, per_layer = _sra_round(state, plan, flat, rank, world, b)
    else:
        acc, row, per_layer = _allgather_round(state, flat, layout, raw, rank, world, b, engine)
    state.ledger.messages.append({"step": state.step, "bucket": b, "coords": int(flat.size), **row})
    for name, n, bits in per_layer:
        state.ledger.layers.append({"step": state.step, "bucket": b, "layer": name, "coords": n, "bits": bits})
    buf.copy_(torch.from_numpy(acc))  # rounds to the bucket's dtype (to nearest), on its device
    if bucket.is_last():
        state.step += 1
    fut = torch.futures.Future()
    fut.set_result(buf)
    return fut


def replay_bucket(state: QuantizeState, layout: LayerLayout, raw: np.ndarray, grads_by_rank, bucket: int,
                  step: int) -> np.ndarray:  # fmt: skip
    """The averaged bucket the hook computes from every rank's local gradient, in one process and
    without streams: each rank's vector quantized with its key and dequantized, summed in rank order
    in float64 and divided by ``K`` — the hook's result bit for bit (tested).  With
    ``collective="sra"`` the hook's SRA (:func:`qodasim.torch.sra.replay_sra`) for buckets it sends so."""
    K = len(grads_by_rank)
    plan = _sra.sra_plan(state, layout, raw, K) if state.collective == "sra" else None
    if plan is not None:
        return _sra.replay_sra(state, plan, grads_by_rank, step * MAX_BUCKETS + bucket)
    acc = np.zeros(layout.d, np.float64)
    sub, idx, raw_idx = _split(state, layout, np.asarray(raw, bool))
    for r, g in enumerate(grads_by_rank):
        g = np.asarray(g, np.float32)
        x = None
        if sub is not None:
            v = g if idx is None else g[idx]
            x = state.quantizer(sub).quantize(v, state.key(r, bucket, step)).dequantize(np.float64)
        acc += _assemble(layout.d, idx, x, raw_idx, g[raw_idx])
    return acc / K
