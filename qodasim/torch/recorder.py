"""Record a model's per-layer gradients during training, as ``.npz`` snapshots for ``qodasim analyze``."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np

from ..validate import check_int

__all__ = ["GradientRecorder"]


class GradientRecorder:
    """Snapshots of ``model``'s gradients every ``every`` steps.

    Call :meth:`step` once per training step, after ``backward()`` and before the gradients are
    cleared.  Each snapshot maps parameter names to float32 arrays of the parameters' shapes (a
    parameter without a gradient at that step is recorded as zeros, so every snapshot holds the same
    names).  With ``folder`` each snapshot is written at once to ``folder/grads_step{t:06d}.npz``;
    otherwise they are kept in ``snapshots`` until :meth:`save`.

    Parameters
    ----------
    model : torch.nn.Module
        The model (or its DDP wrapper).
    every : int
        Steps between snapshots (the first is at step 0).
    include : sequence of str, optional
        ``fnmatch`` patterns of the parameter names to record (default: all).
    folder : path, optional
        Write each snapshot here as it is taken.

    Examples
    --------
    >>> import torch
    >>> from qodasim.torch import GradientRecorder
    >>> model = torch.nn.Linear(3, 2)
    >>> rec = GradientRecorder(model, every=2)
    >>> for t in range(4):
    ...     model(torch.ones(1, 3)).sum().backward()
    ...     _ = rec.step()
    ...     model.zero_grad()
    >>> [s for s, _ in rec.snapshots], sorted(rec.snapshots[0][1])
    ([0, 2], ['bias', 'weight'])
    """

    def __init__(self, model, every: int = 1, include=None, folder=None) -> None:
        if not hasattr(model, "named_parameters"):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_int(every, "every", 1, what="a positive integer")
        module = getattr(model, "module", model)
        pats = None if include is None else ([include] if isinstance(include, str) else list(include))

        def wanted(n: str) -> bool:
            return pats is None or any(fnmatch.fnmatchcase(n, x) for x in pats)

        self.params = [(n, p) for n, p in module.named_parameters() if p.requires_grad and wanted(n)]
        if not self.params:
            raise ValueError("include: no parameter of the model matches")
        self.every = int(every)
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.t = 0
        self.snapshots: list[tuple[int, dict]] = []
        self.paths: list[Path] = []

    def capture(self) -> dict[str, np.ndarray]:
        """The current gradients by name (float32 copies on the host)."""
        out = {}
        for n, p in self.params:
            g = p.grad
            out[n] = (np.zeros(tuple(p.shape), np.float32) if g is None else
                      g.detach().to("cpu").float().numpy().astype(np.float32, copy=True))  # fmt: skip
        return out

    def step(self) -> bool:
        """Count one training step; take a snapshot if it is due.  Returns whether one was taken."""
        due = self.t % self.every == 0
        if due:
            snap = self.capture()
            if self.folder is not None:
                self.paths.append(self._write(self.folder, self.t, snap))
            else:
                self.snapshots.append((self.t, snap))
        self.t += 1
        return due

    @staticmethod
    def _write(folder: Path, t: int, snap: dict) -> Path:
        path = folder / f"grads_step{t:06d}.npz"
        tmp = folder / f".grads_step{t:06d}.tmp.npz"
        np.savez(tmp, **snap)
        tmp.replace(path)
        return path

    def save(self, folder) -> list[Path]:
        """Write the kept snapshots to ``folder/grads_step{t:06d}.npz``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return [self._write(folder, t, snap) for t, snap in self.snapshots]
