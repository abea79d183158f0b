#!/usr/bin/env python
"""Time the threaded kernel's wake-up: a worker that watches for the next call, or one that sleeps.

Run ``python benchmarks/bench_wake.py`` (``make bench``). AdamW on one float32 tensor of N
(default 1e6, where a step is a few hundred microseconds and waking a sleeping thread, 20-60 us
on a VM, is a tenth of it), fp32 and bf16 state, each with the pool's watch (a worker that has
finished a call reads the count of calls begun for about ``threads.WATCH_S`` before it sleeps)
and without it (a fiftieth of the reads, about 2 us, as the caller's wait was before the watch), beside ``torch.optim.AdamW(fused=True)``;
all in one process, interleaved in blocks whose order is shuffled each round. Two settings:

* back to back: steps one after another (as a benchmark, or the buckets of one step);
* with a pause: ``--pause-ms`` (default 2) of sleep before each step, untimed, as the forward
  and backward passes of a training loop make (torch's OpenMP threads go to sleep too).

Prints the median step time and the ratio to torch fused's in the same rounds (lower is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bs  # noqa: E402

import adaopt  # noqa: E402
from adaopt.kernels import threads  # noqa: E402


def _impls(n: int):
    import torch

    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    cal = threads._watch_reads()
    out = {}
    for label, sd in (("fp32 state", None), ("bf16 state", "bfloat16")):
        p = p0.copy()
        opt = adaopt.AdamW([p], lr=1e-3, weight_decay=1e-2, backend="fused", state_dtype=sd)
        for wlabel, reads in (("watch", cal), ("no watch", max(1, cal // 50))):
            def step(opt=opt, reads=reads):
                threads.POOL.watch = reads
                opt.step([g])
            out[f"adaopt {label}, {wlabel}"] = step
    tp = torch.from_numpy(p0.copy()).requires_grad_()
    tp.grad = torch.from_numpy(g.copy())
    out["torch fused"] = torch.optim.AdamW([tp], lr=1e-3, weight_decay=1e-2, fused=True).step
    return out, cal


def measure(impls: dict, rounds: int, steps: int, pause_s: float) -> dict:
    """Median seconds a step, per implementation: ``rounds`` blocks of ``steps`` timed steps
    each (each step timed alone when there is a pause), the order shuffled every round."""
    times = {k: [] for k in impls}
    for f in impls.values():
        for _ in range(10):
            f()
    for order in bs.block_orders(list(impls), rounds):
        for k in order:
            f = impls[k]
            f()  # the implementation's own first step after another's block: untimed
            if pause_s:
                for _ in range(steps):
                    time.sleep(pause_s)
                    t = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t)
            else:
                t = time.perf_counter()
                for _ in range(steps):
                    f()
                times[k].append((time.perf_counter() - t) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float, default=1e6, help="elements of the tensor (default 1e6)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=50, help="steps a block")
    ap.add_argument("--pause-ms", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 rounds of 5 steps")
    args = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_wake: torch is not installed; nothing to compare with")
        return 0
    if threads.max_threads() < 2:
        print("bench_wake: numba has one thread here; the kernel is serial")
        return 0
    rounds, steps = (3, 5) if args.quick else (args.rounds, args.steps)
    impls, cal = _impls(int(args.n))
    print(f"AdamW, one float32 tensor of {args.n:.0e}; the watch: {cal} reads (about "
          f"{threads.WATCH_S * 1e6:.0f} us); medians of {rounds} interleaved rounds; lower is faster")
    for title, pause in (("back to back", 0.0), (f"{args.pause_ms:g} ms pause before each step", args.pause_ms / 1e3)):
        med = measure(impls, rounds, steps, pause)
        print(f"\n{title}:")
        for k, v in med.items():
            print(f"  {k:32s} {v * 1e6:8.1f} us  {v / med['torch fused']:.2f}x torch fused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
