"""adaopt.torch and threads: it uses torch's thread count, never changes it, and never spins.

With GNU OpenMP (numba's default threading layer where torch's libgomp is loaded) the first
threaded step changed ``torch.get_num_threads()`` from 1 to 2 (the two share one pool), so
same-seed runs in one process differed, and the spinning threads made a 512x256 Linear's
step 8 ms on a busy machine. adaopt's kernels enter no numba parallel region at all: a
threaded kernel of adaopt.torch runs on torch's own OpenMP threads where torch has them
(adaopt.kernels.team, ``GOMP_parallel`` with a ``num_threads`` of its own, which leaves
torch's count as it is), else on a pool of adaopt's sleeping threads (adaopt.kernels.threads);
each is capped at ``torch.get_num_threads()``, and the serial kernel runs at 1. Each check
runs in a fresh interpreter.
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
    from adaopt.kernels import team, threads

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
                      "threaded": threads.max_threads() > 1, "team": team._STATE.get("calls", 0),
                      "has_team": team._gomp_parallel() is not None}))
    """, NUMBA_THREADING_LAYER="omp")
    assert result["counts"] == [1, 2, 1]
    assert result["same"], "the threaded and the serial kernel must give the same bits"
    assert result["layer"] is None
    assert result["after_one"] == 0
    if result["threaded"] and result["has_team"]:  # torch's OpenMP threads took the threaded steps
        assert result["team"] == 5 and result["workers"] == 0
    elif result["threaded"]:
        assert result["workers"] == 1


def test_linux_torch_has_an_openmp_team_for_the_kernels():
    """Where torch's parallel backend is OpenMP on Linux (the CI's CPU build), the threaded
    kernels find its libgomp: otherwise the fast path in a training loop is silently gone."""
    import torch

    from adaopt.kernels import team

    if not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch's parallel backend here is not GNU OpenMP on Linux")
    assert team._gomp_parallel() is not None


def test_a_forked_child_steps_on_adaopts_pool_not_on_the_parents_openmp_threads():
    """GNU OpenMP's threads are the parent's: a parallel region in a forked child hangs (torch's
    own matmul does). A child forked after threaded steps on torch's threads steps on adaopt's
    pool, with the parent's bits; it would hang, and time out here, on the team."""
    code = """
    import faulthandler, hashlib, json, os, torch, adaopt.torch as at
    from adaopt.kernels import team, threads
    torch.set_num_threads(2)
    torch.manual_seed(0)
    n = 1 << 21
    p0, g = torch.randn(n), [torch.sin(torch.linspace(-3, 3, n) * (t + 1)) for t in range(3)]
    pairs = []
    for _ in range(2):  # the state is made before the fork: torch's own fill hangs in the child
        p = torch.nn.Parameter(p0.clone())
        opt = at.AdamW([p], lr=1e-2)
        p.grad = g[0]
        opt.step()
        pairs.append((p, opt))

    def more(p, opt):  # no torch op of more than one thread here: each hangs in a forked child
        for t in (1, 2):
            p.grad = g[t]
            opt.step()
        return hashlib.sha1(p.detach().numpy().tobytes()).hexdigest()

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(60, exit=True)  # a hang ends the child, not the test run
        digest = more(*pairs[1])
        os.write(w, f"{digest} {threads.POOL.workers}".encode())
        os._exit(0)
    os.close(w)  # so that a child that ends without writing gives an empty read
    os.waitpid(pid, 0)
    child = os.read(r, 100).decode().split() or ["hung", "0"]
    print(json.dumps({"same": child[0] == more(*pairs[0]), "workers": int(child[1]),
                      "team": team._STATE.get("calls", 0), "threaded": threads.max_threads() > 1}))
    """
    result = _child(code)
    if not result["threaded"]:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1)")
    assert result["same"], "the forked child's steps hung or differ from the parent's"
    assert result["workers"] >= 1


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
