"""Every exception qodasim raises, in one place (each stage raises its own; catch them from here).

All derive from the built-in a caller would catch anyway — bad input is a :class:`ValueError`, a
failed collective or lab command a :class:`RuntimeError` — so ``except ValueError`` keeps working.

=============================  ====================================================================
:class:`NormRangeError`        a norm outside float32's normal range (quantize)
:class:`DecodeError`           a bit stream truncated, corrupt, or not a qodasim message (code)
:class:`ConvexSolverError`     a convex program not solved to a usable accuracy (optimize)
:class:`SolverError`           a solver configuration or run that cannot proceed (solve)
:class:`CollectiveTimeout`     an MPI collective past its deadline (solve, MPI workers)
:class:`NetlabError`           a network-lab command failed (netlab)
:class:`NetlabUnavailable`     this machine cannot make a network lab (netlab)
=============================  ====================================================================
"""

from __future__ import annotations

__all__ = ["CollectiveTimeout", "ConvexSolverError", "DecodeError", "NetlabError", "NetlabUnavailable",
           "NormRangeError", "SolverError"]  # fmt: skip


class NormRangeError(ValueError):
    """A nonzero norm outside the float32 normal range ``[~1.18e-38, ~3.4e38]`` (THEORY §1).

    Norms are sent as float32 rounded up; outside the normal range the transmitted norm ``n̂`` is
    no longer within a factor ``1 + 2^{-23}`` of the true one, so the variance bounds would not hold.
    Rescale the vector (or, in a solver, treat it as divergence).
    """


class DecodeError(ValueError):
    """A bit stream is truncated, corrupt, or not a qodasim message."""


class ConvexSolverError(ValueError):
    """A convex program could not be solved to a usable accuracy."""


class SolverError(ValueError):
    """A solver configuration or run that cannot proceed (bad config, non-finite oracle output)."""


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the deadline (a rank died or hung)."""


class NetlabError(RuntimeError):
    """A lab command failed (the command and its error output are in the message)."""


class NetlabUnavailable(NetlabError):
    """This machine cannot make a lab (not root, no ``ip``/``tc``, no namespaces or tbf)."""
