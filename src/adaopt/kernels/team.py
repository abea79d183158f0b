"""adaopt.torch's threaded kernels on torch's own OpenMP threads.

In a training loop the optimizer step comes right after the backward pass, whose OpenMP
threads (torch's intra-op pool, GNU OpenMP) keep spinning for milliseconds once their work
is done. A worker of adaopt's own pool (:mod:`.threads`) then shares a core with one of
them and runs at half speed. On the 1.9M-parameter MLP of ``benchmarks/bench_train.py``, on
2 vCPUs, in one run: adaopt.torch's step took 5103 us in the loop on adaopt's pool (its "own
pool" row) and 2545 us on those same threads, with the same bits, against torch fused's 2584 us;
whole training steps 0.79x and 0.99x torch fused's speed.

So where torch's parallel backend is OpenMP and its ``libgomp`` is loaded, a threaded kernel
of adaopt.torch is handed to it with ``GOMP_parallel(entry, box, threads, 0)``: the calling
thread and ``threads - 1`` of torch's threads each run the kernel's C entry point
(:func:`.source._entry`), claiming work groups as on adaopt's pool, and the call returns
when all of them are done. ``threads`` works as OpenMP's ``num_threads`` clause: torch's
thread count is not changed. Elsewhere, and where this cannot run, the kernel goes to
adaopt's pool:

* a forked child (a data loader worker): GNU OpenMP's threads are the parent's, and a
  parallel region there hangs (torch's own matmul does);
* a second Python thread stepping meanwhile;
* no libgomp among the loaded libraries (torch built with another OpenMP, or on macOS).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numpy as np

#: False sends every threaded kernel to adaopt's pool (``benchmarks/bench_train.py`` times both)
ENABLED = True
_LOCK = threading.Lock()  # one Python thread inside GOMP_parallel at a time
#: "parallel": GOMP_parallel or None, once looked for; "forked": in a forked child; "calls": kernels run
_STATE: dict = {}


def _gomp_parallel():
    """torch's ``GOMP_parallel`` (looked for once), or None; always None in a forked child."""
    if _STATE.get("forked"):
        return None
    if "parallel" in _STATE:
        return _STATE["parallel"]
    fn = None
    torch = sys.modules.get("torch")
    if torch is not None and sys.platform.startswith("linux"):
        try:
            if "parallel backend: OpenMP" in torch.__config__.parallel_info():
                lib = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # only the loaded one
                fn = lib.GOMP_parallel
                fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                fn.restype = None
        except (OSError, AttributeError):
            fn = None
    _STATE["parallel"] = fn
    return fn


def run(entry: int, args: tuple, threads: int) -> bool:
    """Run the threaded kernel whose C entry point is at ``entry`` on ``args`` (``A, S, GS, WJ,
    WA, WB``) with torch's OpenMP threads, ``threads`` in all; False (nothing run) where it
    cannot (see the module's docstring)."""
    fn = _gomp_parallel() if ENABLED else None
    if fn is None or not _LOCK.acquire(blocking=False):
        return False
    try:
        counts = np.zeros(2, dtype=np.int64)
        table, scalars, gs, wj, wa, wb = args
        box = np.array([table.ctypes.data, *table.shape, scalars.ctypes.data, scalars.size,
                        gs.ctypes.data, gs.size, wj.ctypes.data, wj.size, wa.ctypes.data, wa.size,
                        wb.ctypes.data, wb.size, counts.ctypes.data], dtype=np.int64)
        fn(entry, box.ctypes.data, threads, 0)  # ctypes lets go of the GIL meanwhile
        _STATE["calls"] = _STATE.get("calls", 0) + 1
        if counts[1] != gs.size - 1:
            raise RuntimeError(f"torch's OpenMP threads did {counts[1]} of {gs.size - 1} work groups")
    finally:
        _LOCK.release()
    return True


def _after_fork_in_child() -> None:
    _STATE["forked"] = True
    global _LOCK
    _LOCK = threading.Lock()  # the parent's may have been held at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
