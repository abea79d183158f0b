"""When the fused kernels use threads, and how many: a policy that shares the machine.

* numba's own thread pool (``workqueue``) unless the user chose a layer: GNU OpenMP, numba's
  default where torch's libgomp is loaded, shares its pool with torch (after adaopt's first
  threaded step ``torch.get_num_threads()`` went from 1 to 2) and its threads spin while they
  wait, so on a busy machine a 512x256 Linear's step took 8 ms instead of 0.05. The
  workqueue threads sleep instead, and leave torch's alone.
* At most the number of threads the caller allows (adaopt.torch: ``torch.get_num_threads()``).
* One threaded kernel at a time (the workqueue layer runs one parallel region at a time); a
  second caller takes the serial kernel rather than wait.
* A forked child (a data loader worker) takes the serial kernel: GNU OpenMP aborts a forked
  child's first parallel region.
"""

from __future__ import annotations

import os
import threading

FORKED = [False]


def _after_fork_in_child() -> None:
    """GNU OpenMP aborts a forked child's first parallel region ("fork() called from a
    process already using GNU OpenMP"), and data loader workers fork: a child runs the
    serial kernels (same results, one thread)."""
    FORKED[0] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

LAUNCH = threading.Lock()  # one threaded kernel at a time (numba's workqueue layer needs it)
_THREADS = threading.local()  # the thread count set for this Python thread's parallel regions


def _select_threading_layer() -> None:
    """numba's own thread pool (``workqueue``), unless the user chose a layer (see above)."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


def max_threads() -> int:
    """The most threads a kernel may use: numba's count (``NUMBA_NUM_THREADS``)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def use_threads(n: int) -> None:
    """Run this Python thread's next parallel regions on ``n`` threads."""
    if getattr(_THREADS, "n", None) != n:
        import numba

        numba.set_num_threads(n)
        _THREADS.n = n


_select_threading_layer()
