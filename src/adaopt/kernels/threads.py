"""The fused kernels' threads: a small pool of adaopt's own, which shares the machine.

(adaopt.torch's threaded kernels run on torch's own OpenMP threads where torch has them,
:mod:`.team`; this pool takes the NumPy frontend's, and theirs where that cannot run.)

A threaded step runs one kernel on several threads at once, each with the same arguments:
every thread claims the bucket's next work group (32K elements) with an atomic add on a
shared counter, steps it, counts it done, and claims again until none is left
(:func:`.source._head`). The calling thread posts the call to the pool's sleeping workers
and starts claiming at once, so a worker that wakes late (tens of microseconds; on a busy
machine, whenever it gets a core) finds fewer groups or none: a step never waits for a
thread that has not started, only for a group another thread has begun. Every element is
stepped by the same code whichever thread takes it, so the bits do not depend on the
thread count.

Why not numba's own ``parallel=True``:

* its ``workqueue`` pool splits the loop into one share per thread up front, and the calling
  thread waits for all of them, so a thread that starts late holds the whole step back: at 1e7 elements on 2 cores, AdamW's
  fp32 step took 1.27x torch fused's time, this pool's 0.94x (bf16 Kahan 1.13x -> 0.94x,
  int8 state on 100 tensors 1.07x -> 0.88x; ``benchmarks/bench_lowp.py``);
* GNU OpenMP, numba's default layer where torch's libgomp is loaded, shares its pool with
  torch (the first threaded step changed ``torch.get_num_threads()`` from 1 to 2), its
  threads spin while they wait (a 512x256 Linear's step took 8 ms on a busy machine), and
  it aborts a forked child's first parallel region.

The rules:

* at most the number of threads the caller allows (adaopt.torch: ``torch.get_num_threads()``),
  at most :func:`max_threads`, and one per 4 work groups (128K elements) of the bucket: each
  worker takes the GIL to join (a few microseconds), so 63 of them on a bucket of 1M elements
  took 2.1 ms a step where 7 take 0.5; workers are started on first use and sleep between steps;
* one threaded kernel at a time: a second Python thread that steps meanwhile takes the serial
  kernel rather than wait;
* a forked child (a data loader worker) starts with no workers and makes its own.
"""

from __future__ import annotations

import os
import threading

import numpy as np


def max_threads() -> int:
    """The most threads a kernel may use: numba's count (``NUMBA_NUM_THREADS``, by default
    the number of CPUs)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


class _Call:
    """One threaded kernel call: the kernel, its arguments, its counters (next group to
    claim, groups done) and how many workers join the calling thread."""

    __slots__ = ("kernel", "args", "helpers", "joined", "done", "error")

    def __init__(self, kernel, args: tuple, helpers: int):
        self.kernel, self.helpers, self.joined = kernel, helpers, 0
        self.args = (*args, np.zeros(2, dtype=np.int64))
        self.done = threading.Event()  # set by the thread that sees the last group done
        self.error: BaseException | None = None


class Pool:
    """Sleeping worker threads that join the calling thread's kernel calls."""

    def __init__(self) -> None:
        self.busy = threading.Lock()  # held by the Python thread inside a threaded kernel
        self.wake = threading.Condition(threading.Lock())
        self.call: _Call | None = None
        self.posted = 0  # calls posted so far: a worker runs each one it has not seen
        self.workers = 0

    def run(self, kernel, args: tuple, threads: int) -> bool:
        """Run ``kernel(*args, counters)`` on the calling thread and ``threads - 1`` workers
        (``args[2]``: the work groups' starts, as the kernel takes them); False (nothing run) when
        another Python thread is inside a threaded kernel."""
        if not self.busy.acquire(blocking=False):
            return False
        try:
            call = _Call(kernel, args, threads - 1)
            with self.wake:
                while self.workers < call.helpers:
                    threading.Thread(target=self._work, args=(self.workers, self.posted),
                                     name=f"adaopt-kernel-{self.workers + 1}", daemon=True).start()
                    self.workers += 1
                self.call = call
                self.posted += 1
                self.wake.notify(call.helpers)  # only as many as join: each woken one takes the GIL
            counts, groups = call.args[-1], len(args[2]) - 1  # (args[2]: the kernel's work groups)
            try:
                if not kernel(*call.args):  # False: another thread still steps its last group
                    call.done.wait()
            except BaseException:  # Ctrl-C: the other threads still write this step's arrays and read
                while counts[1] < groups and call.error is None:  # its gradients, which the caller
                    call.done.wait(0.01)  # frees once this returns: they finish first
                raise
            if call.error is not None:
                raise call.error
        finally:
            self.busy.release()
        return True

    def _work(self, index: int, seen: int) -> None:
        while True:
            with self.wake:
                while self.posted == seen:
                    self.wake.wait()
                seen, call = self.posted, self.call
                if call.joined >= call.helpers:  # enough have joined (a worker that was not waiting saw
                    continue  # this call too)
                call.joined += 1
            try:
                finished = call.kernel(*call.args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it
                call.error, finished = e, True
            if finished:
                call.done.set()


POOL = Pool()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads, and its copies of the locks may be
    held: it starts a pool of its own."""
    POOL.__init__()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
