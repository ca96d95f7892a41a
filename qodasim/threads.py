"""Threads: how many the kernels use, which threading layer runs them, and when a call is worth them.

Three rules keep the kernels fast on a busy machine and safe to fork:

* **No parallel region for small work.**  A parallel kernel wakes the thread pool and waits for every
  thread; on a machine whose cores are busy a sleeping thread may wait a whole scheduler slice
  (milliseconds) for a core.  Every Numba engine call therefore runs the kernel's serial twin when it
  touches fewer than :data:`PARALLEL_MIN` coordinates (all rows of a batch together), whatever the
  plan's task count.  The twins run the same tasks in the same order, so the bits do not change
  (tested at 1 and 2 threads against golden hashes).
* **A fork-safe threading layer.**  Numba's GNU OpenMP layer kills a ``fork()``-ed child that runs a
  parallel kernel after its parent did.  Unless ``NUMBA_THREADING_LAYER`` is set, qodasim selects
  Numba's ``workqueue`` layer (fork-safe; as fast here on large vectors, see BENCHMARKS.md).  It does not
  support concurrent parallel kernels from several Python threads of one process; set
  ``NUMBA_THREADING_LAYER=omp`` (or ``tbb``) for that.
* **A thread count you choose.**  ``QODASIM_THREADS=N`` (read when qodasim is imported), the CLI's
  ``--threads N`` or :func:`set_threads` cap the threads of the parallel kernels at ``N`` (at most
  Numba's pool size, ``NUMBA_NUM_THREADS``).  Results are the same at every count.
"""

from __future__ import annotations

import contextlib
import os
import warnings

from .validate import check_int

__all__ = ["PARALLEL_MIN", "set_threads", "get_threads", "threading_layer", "use_parallel", "apply_env", "serial"]

#: Coordinates (summed over a batch's rows) below which a kernel runs serially.  At 2^17 the serial
#: rounding pass takes ~0.1 ms on one core, the price of one thread-pool wake-up on a busy machine.
PARALLEL_MIN = 1 << 17

#: The threading layer chosen when the user has not chosen one (fork-safe, see the module docstring).
DEFAULT_LAYER = "workqueue"


_SERIAL = [False]


def use_parallel(coords: int) -> bool:
    """Whether a kernel call touching ``coords`` coordinates should run on the thread pool (never inside
    :func:`serial`)."""
    return coords >= PARALLEL_MIN and not _SERIAL[0]


@contextlib.contextmanager
def serial():
    """Every kernel called inside runs its serial twin on the calling thread: the same bits, one core,
    and no parallel kernel compiled on first use (e.g. to time one rank's codec, as each rank of a job
    that shares the machine's cores runs)."""
    old = _SERIAL[0]
    _SERIAL[0] = True
    try:
        yield
    finally:
        _SERIAL[0] = old


def _select_layer() -> None:
    """Select :data:`DEFAULT_LAYER` unless ``NUMBA_THREADING_LAYER`` names a layer (the layer is loaded
    at the first parallel launch, so this must run before any; it is called when qodasim is imported)."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    import numba

    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = DEFAULT_LAYER


def _check_count(n, name: str) -> int:
    import numba

    check_int(n, name, error=TypeError)
    top = int(numba.config.NUMBA_NUM_THREADS)
    if not 1 <= n <= top:
        raise ValueError(f"{name} must be in 1..{top} (NUMBA_NUM_THREADS, the pool's size), got {n}")
    return n


def set_threads(n: int) -> None:
    """Run parallel kernels on at most ``n`` threads (``1 ≤ n ≤ NUMBA_NUM_THREADS``) from now on.

    Raises
    ------
    TypeError
        ``n`` is not an integer.
    ValueError
        ``n`` is outside ``1..NUMBA_NUM_THREADS``.
    """
    import numba

    numba.set_num_threads(_check_count(n, "threads"))


def get_threads() -> int:
    """The number of threads the parallel kernels use now."""
    import numba

    return int(numba.get_num_threads())


def threading_layer() -> str:
    """The threading layer Numba uses (``"workqueue"``, ``"omp"``, ``"tbb"``), or the one it will
    select at the first parallel launch."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return str(numba.config.THREADING_LAYER)


def apply_env(strict: bool = False) -> None:
    """Apply ``QODASIM_THREADS`` if it is set.  A bad value is a ``ValueError`` naming the variable
    when ``strict`` (the CLI), else a warning (importing qodasim never fails on it)."""
    text = os.environ.get("QODASIM_THREADS", "").strip()
    if not text:
        return
    try:
        n = int(text)
        _check_count(n, "QODASIM_THREADS")
    except (TypeError, ValueError) as exc:
        msg = str(exc) if "QODASIM_THREADS" in str(exc) else f"QODASIM_THREADS must be an integer, got {text!r}"
        if strict:
            raise ValueError(msg) from None
        warnings.warn(msg + " (ignored)", RuntimeWarning, stacklevel=2)
        return
    import numba

    numba.set_num_threads(n)
