"""adaopt.torch and threads: it uses torch's thread count, never changes it, and never spins.

With GNU OpenMP (numba's default threading layer where torch's libgomp is loaded) the first
threaded step changed ``torch.get_num_threads()`` from 1 to 2 (the two share one pool), so
same-seed runs in one process differed, and the spinning threads made a 512x256 Linear's
step 8 ms on a busy machine. adaopt's kernels now run on a pool of their own sleeping
threads (adaopt.kernels.threads), enter no numba parallel region at all, cap each threaded
kernel at ``torch.get_num_threads()``, and run the serial kernel at 1. Each check runs in a
fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("numba")


def _child(code: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


RUN = """
    import json, torch, numba, adaopt.torch as at
    from adaopt.kernels import threads

    def numba_layer():  # None: numba's thread pool was never started
        try:
            return numba.threading_layer()
        except ValueError:
            return None

    def run(threads, n=1 << 21):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        big = torch.nn.Parameter(torch.randn(n))
        lin = torch.nn.Linear(512, 256)
        opt = at.AdamW([big, *lin.parameters()], lr=1e-2)
        for t in range(5):
            for p in opt.param_groups[0]["params"]:
                p.grad = torch.sin(p.detach() * (t + 1))
            opt.step()
        return torch.get_num_threads(), big.detach().clone()
"""


def test_the_step_never_changes_torchs_thread_count_and_threads_do_not_change_bits():
    """Also with NUMBA_THREADING_LAYER=omp (GNU OpenMP, which shares torch's pool), a user's choice
    for their own numba code: adaopt's threaded steps leave every numba layer unstarted."""
    result = _child(RUN + """
    one, a = run(1)
    after_one = threads.POOL.workers  # torch at one thread: no kernel thread started at all
    two, b = run(2)
    again, c = run(1)
    print(json.dumps({"counts": [one, two, again], "same": bool(torch.equal(a, b) and torch.equal(a, c)),
                      "layer": numba_layer(), "workers": threads.POOL.workers, "after_one": after_one,
                      "expected": min(2, threads.max_threads()) - 1}))
    """, NUMBA_THREADING_LAYER="omp")
    assert result["counts"] == [1, 2, 1]
    assert result["same"], "the threaded and the serial kernel must give the same bits"
    assert result["layer"] is None
    assert result["after_one"] == 0 and result["workers"] == result["expected"]


def test_two_python_threads_stepping_at_once():
    """The kernel pool runs one threaded kernel at a time; a second caller takes the serial
    kernel instead of waiting."""
    import threading

    import torch

    import adaopt.torch as at

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def make():
            p = torch.nn.Parameter(torch.zeros(1 << 21))
            return p, at.Adam([p], lr=1e-2)

        def work(p, opt):
            for t in range(20):
                p.grad = torch.full_like(p, float(t + 1))
                opt.step()

        pairs = [make() for _ in range(2)]
        workers = [threading.Thread(target=work, args=pair) for pair in pairs]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        ref, opt = make()
        work(ref, opt)
        assert all(torch.equal(p, ref) for p, _ in pairs)
    finally:
        torch.set_num_threads(before)
