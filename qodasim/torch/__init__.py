"""PyTorch integration (the ``torch`` extra): a DDP communication hook with real Elias bit streams,
its ledger, and a recorder of per-layer gradients for ``qodasim analyze``.

The core of qodasim never imports torch; importing this package does.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "qodasim.torch needs PyTorch: pip install torch==2.13.0 (the CPU build), or pip install 'qodasim[torch]'"
    ) from exc

from .hook import COLLECTIVES, SCHEMES, HookLedger, QuantizeState, hook, replay_bucket
from .recorder import GradientRecorder

__all__ = ["COLLECTIVES", "SCHEMES", "GradientRecorder", "HookLedger", "QuantizeState", "hook", "replay_bucket"]
