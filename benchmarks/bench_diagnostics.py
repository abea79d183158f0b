"""What the diagnostics and the lab cost, measured side by side.

1. Monitor overhead: an AdamW step on N = 1e6 float32 parameters with and without a
   Monitor (summary every K = 10 steps), for the NumPy frontend (fused kernels) and
   for adaopt.torch and torch.optim.AdamW (fused). Blocks of steps are interleaved
   round-robin so machine noise hits every variant alike; the table shows medians and
   the ratio monitored / plain (target: <= 1.10).
2. Batched sweeps: one lr-grid x seeds sweep as a single array computation against
   the same configurations run one by one (target: >= 10x), on every lab problem.
3. The live check's rise test (``Monitor.check``'s RiseWatch: one push and one rise() a
   logged loss) after 1e3, 1e4 and 5e4 logged losses of a flat run with 10% noise, where
   its cheap gate lets most calls through: what a check costs should not grow with the run.
4. ``Monitor.check()`` a call, on a run whose loss sits at 2x its first value (where check()
   asks ``diagnose()``: at once, then once the losses grew ``ALARM_REASK``) against the same
   run's check() asked at every loss (``ALARM_REASK = 0``, as before 2026-12-08) and a healthy
   run, after 1e3 and 1e4 steps; blocks interleaved, the ratio against the healthy run.

Run: python benchmarks/bench_diagnostics.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _blocks(variants: dict, steps: int, reps: int) -> dict:
    """Median seconds per step of each variant, interleaved blocks of ``steps`` steps."""
    times = {name: [] for name in variants}
    for fn in variants.values():  # warm up (kernels compiled, caches filled)
        fn(3)
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(steps)
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(v) for name, v in times.items()}


def monitor_overhead(n: int, steps: int, reps: int) -> list[tuple]:
    import adaopt
    from adaopt.diagnostics import Monitor

    rng = np.random.default_rng(0)
    rows = []

    def numpy_variant(monitored: bool, layout: str):
        sizes = [n] if layout == "1 tensor" else list(np.diff(np.linspace(0, n, 101).astype(int)))
        params = [rng.standard_normal(s).astype(np.float32) for s in sizes]
        grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in sizes]
        opt = adaopt.AdamW(params, lr=1e-3)
        mon = Monitor(opt, every=10) if monitored else None

        def run(k):
            for _ in range(k):
                if mon is not None:
                    mon.log(1.0)
                opt.step(grads)
        return run

    for layout in ("1 tensor", "100 tensors"):
        res = _blocks({"plain": numpy_variant(False, layout), "monitored": numpy_variant(True, layout)}, steps, reps)
        rows.append((f"adaopt.AdamW (NumPy, fused), {layout}", res["plain"], res["monitored"]))

    try:
        import torch

        import adaopt.torch as at
    except ImportError:
        return rows

    def torch_variant(cls, monitored: bool, **kw):
        p = torch.nn.Parameter(torch.randn(n))
        p.grad = torch.randn(n) * 1e-3
        opt = cls([p], lr=1e-3, **kw)
        mon = Monitor(opt, every=10) if monitored else None

        def run(k):
            for _ in range(k):
                if mon is not None:
                    mon.log(1.0)
                opt.step()
        return run

    res = _blocks({"plain": torch_variant(at.AdamW, False), "monitored": torch_variant(at.AdamW, True)}, steps, reps)
    rows.append(("adaopt.torch.AdamW, 1 tensor", res["plain"], res["monitored"]))
    res = _blocks({"plain": torch_variant(torch.optim.AdamW, False, fused=True),
                   "monitored": torch_variant(torch.optim.AdamW, True, fused=True)}, steps, reps)
    rows.append(("torch.optim.AdamW(fused=True), 1 tensor", res["plain"], res["monitored"]))
    return rows


def batched_sweeps(quick: bool) -> list[tuple]:
    """Every lab problem with Adam: 16 lrs x 3 seeds, batched and one by one (data loaded first)."""
    from adaopt.lab.problems import PROBLEMS
    from adaopt.lab.sweep import run_sweep, sweep_one_by_one

    lrs = tuple(np.logspace(-4, 1, 16))
    seeds = (0, 1, 2)
    steps = 50 if quick else 200
    rows = []
    for name, problem in PROBLEMS.items():
        problem.loss(problem.x0(0)[None])  # load the dataset outside the timing
        t0 = time.perf_counter()
        run_sweep(problem, "adam", lrs, seeds, steps)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweep_one_by_one(problem, "adam", lrs, seeds, steps)
        looped = time.perf_counter() - t0
        rows.append((f"{name} / adam, {len(lrs)} lrs x {len(seeds)} seeds x {steps} steps", batched, looped))
    return rows


def live_check_cost(lengths, calls: int, reps: int) -> list[tuple]:
    """Microseconds per push + rise() of a RiseWatch that has seen each of ``lengths`` values
    (median of ``reps`` blocks of ``calls``); the blocks interleaved across the lengths."""
    from adaopt.diagnostics.verdict_watch import RiseWatch

    rng = np.random.default_rng(0)
    watches, more = {}, (1 + 0.1 * rng.standard_normal(calls * (reps + 1))).tolist()
    for n in lengths:
        watch = RiseWatch()
        for x in (1 + 0.1 * rng.standard_normal(n)).tolist():
            watch.push(x)
        watches[n] = watch
    times = {n: [] for n in lengths}
    for r in range(reps):
        block = more[r * calls:(r + 1) * calls]
        for n, watch in watches.items():
            t0 = time.perf_counter()
            for x in block:
                watch.push(x)
                watch.rise()
            times[n].append((time.perf_counter() - t0) / calls)
    return [(n, statistics.median(v)) for n, v in times.items()]


def check_cost(lengths, calls: int, reps: int) -> list[tuple]:
    """Microseconds per ``Monitor.check()`` (the step and the log not counted) of a healthy run, of
    one whose loss sits at 2x its first value, and of that run asked at every loss, each after
    each of ``lengths`` steps; median of ``reps`` interleaved blocks of ``calls``."""
    import adaopt
    from adaopt.diagnostics import Monitor
    from adaopt.diagnostics import monitor as monitor_module

    rng = np.random.default_rng(0)

    def level(kind, i):
        return 1.0 + 0.05 * rng.standard_normal() if kind == "healthy" or i == 0 else 2.0 + 0.05 * rng.standard_normal()

    runs = {}
    for n in lengths:
        for kind, reask in (("healthy", None), ("at 2x its first loss", None), ("at 2x, asked at every loss", 0.0)):
            x = np.ones(64)
            opt = adaopt.SGD([x], lr=1e-3)
            mon = Monitor(opt)
            for i in range(n):
                opt.step([np.full(64, 0.1)])
                mon.log(level(kind, i))
            runs[(n, kind)] = (opt, mon, reask, kind)
    times = {key: [] for key in runs}
    default = monitor_module.ALARM_REASK
    try:
        for _ in range(reps):
            for key, (opt, mon, reask, kind) in runs.items():
                monitor_module.ALARM_REASK = default if reask is None else reask
                spent = 0.0
                for _ in range(calls):
                    opt.step([np.full(64, 0.1)])
                    mon.log(level(kind, 1))
                    t0 = time.perf_counter()
                    mon.check()
                    spent += time.perf_counter() - t0
                times[key].append(spent / calls)
    finally:
        monitor_module.ALARM_REASK = default
    return [(n, kind, statistics.median(times[(n, kind)]), statistics.median(times[(n, "healthy")]))
            for (n, kind) in runs]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    steps, reps = (10, 5) if args.quick else (20, 11)
    print("Monitor overhead, AdamW float32, N = 1e6, summary every 10 steps "
          f"(median of {reps} interleaved blocks of {steps} steps)")
    print(f"{'optimizer':<44}{'plain ms':>10}{'monitored ms':>14}{'ratio':>8}")
    for name, plain, monitored in monitor_overhead(10**6, steps, reps):
        print(f"{name:<44}{plain * 1e3:>10.3f}{monitored * 1e3:>14.3f}{monitored / plain:>8.3f}")
    print("\nBatched lab sweeps vs the same configurations one by one")
    print(f"{'sweep':<62}{'batched s':>10}{'one by one s':>14}{'speed-up':>10}")
    rows = batched_sweeps(args.quick)
    for name, batched, looped in rows:
        print(f"{name:<62}{batched:>10.2f}{looped:>14.2f}{looped / batched:>9.1f}x")
    batched, looped = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all eight problems':<62}{batched:>10.2f}{looped:>14.2f}{looped / batched:>9.1f}x")
    print("\nThe live check's rise test by run length (flat losses, 10% noise; push + rise() a logged loss)")
    print(f"{'logged losses before':<24}{'us per call':>12}{'vs 1e3':>8}")
    rows = live_check_cost((1000, 10000, 50000), 200 if args.quick else 500, 3 if args.quick else 7)
    for n, t in rows:
        print(f"{n:<24}{t * 1e6:>12.1f}{t / rows[0][1]:>7.2f}x")
    print("\nMonitor.check() a call (the step and the log not counted), by steps before and the run's loss")
    print(f"{'steps before':<14}{'loss':<30}{'us per call':>12}{'vs healthy':>12}")
    for n, kind, t, healthy in check_cost((1000, 10000), 20 if args.quick else 50, 3 if args.quick else 7):
        print(f"{n:<14}{kind:<30}{t * 1e6:>12.1f}{t / healthy:>11.2f}x")


if __name__ == "__main__":
    main()
