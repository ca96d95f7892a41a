"""Compute engines of the quantizers: the declared :class:`Engine` interface and the registry.

An engine runs the quantizers' kernels on one kind of hardware.  Three are built in — ``"numba"``
(compiled CPU kernels, the default), ``"numpy"`` (the plain reference) and ``"cuda"`` (numba-cuda) —
and every one gives the same bits (tested).  An engine is any object with the members of
:class:`Engine` (the built-in ones are modules); :func:`register_engine` adds one under a name and
:func:`check_engine` lists what an object lacks.

The quantizers call only these members.  Every member is declared; the three optional capabilities
are explicit attributes that are ``None`` where an engine lacks them:

* ``dequantize_sum`` — the fused worker sum (else dequantize, then add in worker order);
* ``bucket_tables`` — per-quantizer lookup tables that ``round`` reads through ``buckets`` (else
  ``round`` gets ``buckets=None``);
* ``quantize_single_task`` — the one-call path for a vector that is one task (else the general path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ENGINES", "Engine", "NormEngine", "check_engine", "cuda_available", "engine_names", "get_engine",
           "register_engine", "stage"]  # fmt: skip

#: The built-in engine names: Numba kernels (default), the plain NumPy reference, CUDA (numba-cuda).
ENGINES = ("numba", "numpy", "cuda")


@runtime_checkable
class NormEngine(Protocol):
    """What the norm pass (``qodasim.quantize.norms.compute_norms``) reads: per-task partials and
    the serial combiners.  Every :class:`Engine` is one, and so is
    :class:`~qodasim.quantize.device.DeviceWorkspace` (its partials come from the resident vectors)."""

    def task_stats(self, v, plan) -> tuple[np.ndarray, np.ndarray]:
        """Per task: ``max |v_i|`` and the lane-ordered ``Σ v_i²`` (float64)."""

    def task_powsum(self, v, plan, scale: np.ndarray, q: np.ndarray, need: np.ndarray) -> np.ndarray:
        """Per task: ``Σ (|v_i|/m_g)^q`` for the groups where ``need`` (``m_g = scale[g]``)."""

    def combine_max(self, task_group: np.ndarray, part: np.ndarray, n_groups: int) -> np.ndarray:
        """Per group: the largest task partial (tasks in order; a NaN partial is skipped)."""

    def combine_sum(self, task_group: np.ndarray, part: np.ndarray, n_groups: int) -> np.ndarray:
        """Per group: the task partials added in task order from 0.0."""


@runtime_checkable
class Engine(NormEngine, Protocol):
    """What a quantization engine provides (``plan``: a :class:`~qodasim.quantize.plan.Plan`; level
    tables ``lv, lv_start, type_uni`` as ``qodasim.quantize.vector.level_tables`` builds them);
    the norm pass's members are :class:`NormEngine`'s.

    Attributes
    ----------
    name : str
        The engine's name.
    dequantize_sum, bucket_tables, quantize_single_task : callable or None
        The optional capabilities (module docstring); ``None`` where absent.
    """

    name: str
    dequantize_sum: Callable[..., np.ndarray] | None
    bucket_tables: Callable[..., tuple] | None
    quantize_single_task: Callable[..., float] | None

    def stage(self, v: np.ndarray) -> Any:
        """``v`` as the kernels read it (a device copy on a GPU; ``v`` itself on the CPU)."""

    def round(self, v, seg_scale, plan, seg_base, lv, lv_start, type_uni, idx_dtype, out=None, buckets=None):
        """``(indices, signs)``: the unbiased stochastic rounding (THEORY §1)."""

    def dequantize(self, idx, sign, norms, plan, lv, lv_start, dtype) -> np.ndarray:
        """``n_g · sign_i · ℓ_{idx_i}`` computed in float64, returned in ``dtype``."""

    def intervals(self, v, seg_scale, plan, lv, lv_start, type_uni) -> tuple[np.ndarray, np.ndarray]:
        """``(j, ρ)`` of every coordinate (no randomness)."""

    def task_phi(self, v, seg_scale, plan, lv, lv_start, type_uni) -> np.ndarray:
        """Per group: ``Σ φ_ℓ(r_i)``, the exact variance before the norm's square."""


_REQUIRED = ("name", "stage", "task_stats", "task_powsum", "combine_max", "combine_sum", "round", "dequantize",
             "intervals", "task_phi")  # fmt: skip
_OPTIONAL = ("dequantize_sum", "bucket_tables", "quantize_single_task")


def check_engine(engine) -> list[str]:
    """What ``engine`` lacks of :class:`Engine`, one line each (empty: it conforms)."""
    problems = []
    for member in _REQUIRED:
        value = getattr(engine, member, None)
        if member == "name":
            if not isinstance(value, str) or not value:
                problems.append("name: must be a non-empty str")
        elif not callable(value):
            problems.append(f"{member}: missing or not callable")
    for member in _OPTIONAL:
        if not hasattr(engine, member):
            problems.append(f"{member}: missing (set it to None when the engine lacks it)")
        elif getattr(engine, member) is not None and not callable(getattr(engine, member)):
            problems.append(f"{member}: must be callable or None")
    return problems


def cuda_available() -> bool:
    """Whether ``engine="cuda"`` can run here (a GPU with a driver, or the CUDA simulator)."""
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install must read as "not available"
        return False


def _numba():
    from . import _numba_engine

    return _numba_engine


def _numpy():
    from . import _numpy

    return _numpy


def _cuda():
    if not cuda_available():
        raise ValueError(
            "engine='cuda' needs an NVIDIA GPU with a working driver and numba-cuda "
            "(pip install 'qodasim[cuda]'), or the CUDA simulator (set NUMBA_ENABLE_CUDASIM=1 before "
            "importing numba); use engine='numba' on the CPU"
        )
    from . import _cuda_engine

    return _cuda_engine


#: name → loader (a function returning the engine; engines import their compilers only when used).
_LOADERS: dict[str, Callable[[], Engine]] = {"numba": _numba, "numpy": _numpy, "cuda": _cuda}


def engine_names() -> tuple[str, ...]:
    """The registered engine names (the built-in :data:`ENGINES` first)."""
    return tuple(_LOADERS)


def register_engine(name: str, loader: Callable[[], Engine]) -> None:
    """Register an engine under ``name``: ``loader()`` returns it (an :class:`Engine`), called at
    each :func:`get_engine` (cache it yourself if it is costly).  A built-in name cannot be taken."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if name in ENGINES:
        raise ValueError(f"name: {name!r} is a built-in engine")
    if not callable(loader):
        raise TypeError(f"loader must be callable, got {type(loader).__name__}")
    _LOADERS[name] = loader


def get_engine(name: str) -> Engine:
    """The engine registered as ``name`` (``"numba"``, ``"numpy"``, ``"cuda"`` or a registered one);
    a registered engine that does not conform to :class:`Engine` is refused with what it lacks."""
    loader = _LOADERS.get(name) if isinstance(name, str) else None
    if loader is None:
        raise ValueError(f"engine must be one of {engine_names()}, got {name!r}")
    engine = loader()
    if name not in ENGINES:
        problems = check_engine(engine)
        if problems:
            lacks = "; ".join(problems)
            raise TypeError(f"engine {name!r} does not implement qodasim.quantize.engine.Engine: {lacks}")
    return engine


def stage(engine: Engine, v: np.ndarray):
    """``v`` as ``engine`` reads it: the CUDA engine's one device copy per call, else ``v`` itself."""
    return engine.stage(v)
