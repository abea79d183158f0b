"""The threaded kernel's pool (adaopt.kernels.threads): threads claim work groups one at a
time, so a worker that starts late, or never, changes neither the result nor the time a
step waits for it; its errors reach the caller; a forked child makes its own pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

pytest.importorskip("numba")

import adaopt  # noqa: E402
from adaopt.kernels import fused  # noqa: E402
from adaopt.kernels import threads as pool  # noqa: E402

SHAPES = [(1000,), (37,), (3000,), (5, 7)]


def _steps(backend="fused", steps=8, **kw):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    opt = adaopt.AdamW(params, lr=1e-2, weight_decay=0.1, backend=backend, **kw)
    grads = np.random.default_rng(1)
    for _ in range(steps):
        opt.step([grads.normal(size=s).astype(np.float32) for s in SHAPES])
    return params, opt


class _LateWorkers(pool.Pool):
    """Workers that wake ``delay`` seconds after each call is posted, and keep what they
    saw: the counters once they ran (next group to claim, groups done)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay, self.seen = delay, []

    def _work(self, index, seen):
        while True:
            with self.wake:
                while self.posted == seen:
                    self.wake.wait()
                seen, call = self.posted, self.call
            time.sleep(self.delay)
            call.kernel(*call.args)
            self.seen.append(call.args[-1].copy())


@pytest.fixture
def threaded(monkeypatch):
    """Every bucket takes the threaded kernel, in groups of 64 elements (65 groups here)."""
    if pool.max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1)")
    monkeypatch.setattr(fused, "PARALLEL_MIN", 16)
    monkeypatch.setattr(fused, "BLOCK", 64)


def test_threaded_steps_equal_the_reference(threaded):
    fast, _ = _steps()
    ref, _ = _steps("reference")
    for x, y in zip(fast, ref):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_a_late_worker_is_not_waited_for_and_changes_nothing(threaded, monkeypatch):
    """The workers wake 0.2 s after each call: the calling thread claims every group and the
    step returns without them; when they run the call at last they find nothing to claim,
    and the parameters stay as the step left them."""
    _steps(steps=1)  # compiled before the clock starts
    late = _LateWorkers(0.2)
    monkeypatch.setattr(pool, "POOL", late)
    t0 = time.perf_counter()
    params, _ = _steps(steps=3)
    took = time.perf_counter() - t0
    after = [p.copy() for p in params]
    time.sleep(0.7)  # the late workers run each call they were woken for
    assert late.seen, "the workers never ran"
    for claims, done in late.seen:
        assert claims > done > 0  # every group was claimed before they came, and done
    for p, q in zip(params, after):
        assert np.array_equal(p, q)
    serial, _ = _steps("reference", steps=3)
    for x, y in zip(params, serial):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert took < 3 * 0.2, f"3 steps took {took:.2f} s: they waited for the late workers"


def test_workers_sleep_between_steps(threaded):
    """The README's promise: kernel threads sleep rather than spin between steps. Half a second
    after threaded steps the process uses next to no CPU (a worker that kept spinning, as
    GNU OpenMP's do, would use about the whole half second)."""
    _steps(steps=20)
    assert pool.POOL.workers >= 1
    time.sleep(0.05)
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(0.5)
    used, waited = time.process_time() - c0, time.perf_counter() - t0
    assert used < 0.2 * waited, f"{used:.3f} s of CPU in {waited:.3f} s idle: a kernel thread did not sleep"


def test_an_error_on_a_worker_is_raised_by_the_caller():
    """The caller's share is done and returns False (a group still running elsewhere); the
    worker raises: the caller gets the error, and does not hang."""
    if pool.max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1)")
    p = pool.Pool()

    def kernel(*args):
        if threading.current_thread().name.startswith("adaopt-kernel"):
            raise RuntimeError("worker failed")
        return False

    result = {}

    def call():
        try:
            p.run(kernel, (None, None, np.zeros(3)), 2)
        except RuntimeError as e:
            result["error"] = str(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the caller hung"
    assert result == {"error": "worker failed"}
    assert p.busy.acquire(blocking=False), "the pool stayed busy after the error"


def test_an_interrupt_on_the_caller_waits_for_the_groups_still_running():
    """Ctrl-C reaches the caller after its share: the worker still writes the step's arrays (and
    reads gradients the caller frees once it returns), so the interrupt waits for it."""
    if pool.max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1)")
    p = pool.Pool()
    seen = {}

    def kernel(*args):
        counts = args[-1]
        if threading.current_thread().name.startswith("adaopt-kernel"):
            time.sleep(0.3)  # the last group, still running
            counts[1] = 2
            return True
        raise KeyboardInterrupt

    try:
        p.run(kernel, (None, None, np.zeros(3)), 2)
    except KeyboardInterrupt:
        seen["done"] = int(p.call.args[-1][1])
    assert seen == {"done": 2}, "the interrupt left before the worker's group was done"


def test_a_second_caller_takes_the_serial_kernel():
    p = pool.Pool()
    assert p.busy.acquire(blocking=False)
    try:
        assert p.run(lambda *a: True, (None, None, np.zeros(3)), 2) is False
    finally:
        p.busy.release()
    assert p.run(lambda *a: True, (None, None, np.zeros(3)), 2) is True


def test_a_forked_child_steps_on_threads_of_its_own():
    """The parent's workers do not exist in a forked child (and a lock of theirs may have
    been held at the fork): the child starts its own and gets the parent's bits."""
    code = textwrap.dedent("""
        import os, sys
        import numpy as np
        import adaopt
        from adaopt.kernels import fused, threads
        fused.PARALLEL_MIN, fused.BLOCK = 16, 64

        def run():
            p = [np.linspace(-1, 1, 5000, dtype=np.float32)]
            opt = adaopt.Adam(p, lr=1e-2)
            for t in range(5):
                opt.step([np.sin(p[0] * (t + 1))])
            return p[0]

        parent = run()
        assert threads.POOL.workers >= 1
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            child = run()
            os.write(w, b"same" if np.array_equal(child, parent) and threads.POOL.workers >= 1 else b"diff")
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 4).decode())
    """)
    if pool.max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "same"


def test_a_bucket_takes_one_thread_per_four_groups_at_most(threaded, monkeypatch):
    """Each worker takes the GIL to join: 63 of them on a 1M-element bucket made a step 2.1 ms
    where 7 made it 0.5. A bucket of G groups runs on at most 1 + G // 4 threads."""
    asked = []
    real = pool.POOL.run

    def run(kernel, args, threads):
        asked.append((len(args[2]) - 1, threads))
        return real(kernel, args, threads)

    monkeypatch.setattr(pool.POOL, "run", run)
    monkeypatch.setattr(pool, "max_threads", lambda: 16)
    rng = np.random.default_rng(0)
    for n in (64 * 9, 64 * 40, 64 * 200):  # 9, 40 and 200 groups of 64 elements
        x = [rng.normal(size=n).astype(np.float32)]
        adaopt.Adam(x, lr=1e-2).step([rng.normal(size=n).astype(np.float32)])
    assert asked == [(9, 3), (40, 11), (200, 16)]  # 1 + G // 4, and no more than allowed
