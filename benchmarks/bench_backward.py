#!/usr/bin/env python
"""Gradient release: the optimizer step inside backward, time and memory of whole training steps.

Four ways to train bench_train.py's transformer LM (two param groups, tied embeddings) with
AdamW: torch fused (``backward(); step(); zero_grad()``), adaopt.torch the same way,
adaopt.torch ``opt.step_in_backward(model)`` (one optimizer, fused buckets stepped as
their gradients are ready), and torch's recipe from its tutorial "How to save memory by
fusing the optimizer step into the backward pass" (one ``torch.optim.AdamW(fused=True)`` per
parameter, stepped in ``register_post_accumulate_grad_hook``).

* time: whole training steps, in blocks, interleaved round-robin (the order shuffled each
  repetition); the median step and the ratio to torch fused (above 1: faster);
* gradient memory: the most gradient bytes alive at once during a backward pass, counted by
  a hook that runs before any step frees a gradient (exact, the same on every run), for the
  LM and a wider one (vocab 8192, d 256: about 3.7M parameters, 15 MB of gradients);
* peak RSS (``--rss``, not in ``make bench``): the high-water mark (``VmHWM``, reset after
  warm-up) of a fresh process per variant over 4 training steps of a wider LM (about 3.7M
  parameters, 15 MB of gradients), and how far it rose above the RSS before those steps;
  medians of interleaved runs. On the shared VM (with the kernel reclaiming pages) the rise
  of one unchanged variant ranged 16-107 MiB between runs, far more than the 15 MB of
  gradients, so the gradient count above is the measure that holds.

step_in_backward runs with its default buckets (4 MiB: the whole 0.5 MB LM is one bucket, so
its gradients are all alive at the end, as in a plain step) and with 64 KiB buckets.

Run ``python benchmarks/bench_backward.py`` (``--quick`` for a smoke test, ``--hog K`` for K
busy processes beside it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import adaopt.torch as at
from bench_step import block_orders, start_hogs
from bench_train import TinyLM, lm

VARIANTS = ("torch AdamW fused=True", "adaopt.torch AdamW", "adaopt step_in_backward", "adaopt in backward, 64 KiB",
            "torch per-param in backward")
#: bucket_bytes of the step_in_backward variants (the default: 4 MiB)
BUCKETS = {"adaopt step_in_backward": at.backward.BUCKET_BYTES, "adaopt in backward, 64 KiB": 64 << 10}


def wide_lm():
    """bench_train's LM, wider: vocab 8192, d 256 (about 3.7M parameters)."""
    torch.manual_seed(0)
    model = TinyLM(vocab=8192, d=256, heads=4, layers=2)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 8192, (16, 33), generator=g) for _ in range(4)]
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return model, [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], batches, lm_loss


def lm_loss(m, batch):
    logits = m(batch[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def setup(variant: str, make):
    """A training step for ``variant``: a function of no arguments."""
    model, groups, batches, loss = make()
    k = [0]
    if variant == "torch per-param in backward":
        opts = {p: torch.optim.AdamW([p], lr=1e-3, weight_decay=g["weight_decay"], fused=True)
                for g in groups for p in g["params"]}

        def hook(p):
            opts[p].step()
            p.grad = None

        for p in opts:
            p.register_post_accumulate_grad_hook(hook)
        opt = None
    elif variant == "torch AdamW fused=True":
        opt = torch.optim.AdamW(groups, lr=1e-3, fused=True)
    else:
        opt = at.AdamW(groups, lr=1e-3)
        if variant in BUCKETS:
            opt.step_in_backward(model, bucket_bytes=BUCKETS[variant])
            opt = None

    def step():
        batch = batches[k[0] % len(batches)]
        k[0] += 1
        loss(model, batch).backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    return model, step


def grad_peak(variant: str, make) -> int:
    """The most gradient bytes alive at once in one training step (hooks count them first)."""
    torch.manual_seed(0)
    model, groups, batches, loss = make()
    params = list(model.parameters())
    peak = [0]

    def count(_):
        peak[0] = max(peak[0], sum(p.grad.nbytes for p in params if p.grad is not None))

    for p in params:
        p.register_post_accumulate_grad_hook(count)  # before the variant's own hooks

    def made():
        return model, groups, batches, loss

    _, step = setup(variant, made)
    step()
    peak[0] = 0
    step()
    return peak[0]


def rss_child(variant: str) -> tuple[int, int]:
    """(peak RSS during 4 training steps, RSS before them), KiB: after 2 warm-up steps (numba
    loads its kernels, torch allocates) the peak is reset (``/proc/self/clear_refs``), so
    what is left is the training steps' own high-water mark."""
    _, step = setup(variant, wide_lm)
    for _ in range(2):
        step()
    rest = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    for _ in range(4):
        step()
    return _status("VmHWM"), rest


def _status(key: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key + ":"))
    return int(line.split()[1])


def timed(make, reps: int, block_s: float) -> dict:
    steps = {v: setup(v, make)[1] for v in VARIANTS}
    for fn in steps.values():
        for _ in range(3):  # warm up: numba compiles, torch allocates
            fn()
    per = {}
    for v, fn in steps.items():
        t = time.perf_counter()
        fn()
        per[v] = max(1, int(block_s / max(time.perf_counter() - t, 1e-6)))
    times = {v: [] for v in VARIANTS}
    for order in block_orders(list(VARIANTS), reps):
        for v in order:
            t = time.perf_counter()
            for _ in range(per[v]):
                steps[v]()
            times[v].append((time.perf_counter() - t) / per[v])
    return {v: statistics.median(ts) for v, ts in times.items()}


def peak_rss(reps: int) -> dict:
    rss = {v: [] for v in VARIANTS}
    for order in block_orders(list(VARIANTS), reps):
        for v in order:
            out = subprocess.run([sys.executable, __file__, "--rss-child", v], capture_output=True, text=True,
                                 check=True, cwd=Path(__file__).parent)
            peak, rest = map(int, out.stdout.split()[-2:])
            rss[v].append((peak, peak - rest))
    return {v: tuple(statistics.median(x[k] for x in runs) for k in range(2)) for v, runs in rss.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hog", type=int, default=0, metavar="K", help="K busy processes beside the run")
    ap.add_argument("--rss", action="store_true", help="also the peak RSS of a wider LM, a fresh process per variant")
    ap.add_argument("--rss-child", metavar="VARIANT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        print(*rss_child(args.rss_child))
        return 0
    hogs = start_hogs(args.hog)
    try:
        print(f"gradient release, LM training steps, torch {torch.__version__}, {torch.get_num_threads()} torch "
              f"threads" + (f", {args.hog} busy process(es) beside" if args.hog else ", idle"))
        reps, block_s = (3, 0.1) if args.quick else (9, 0.5)
        med = timed(lm, reps, block_s)
        grads = {v: grad_peak(v, lm) for v in VARIANTS}
        wide = {v: grad_peak(v, wide_lm) for v in VARIANTS}
        rss = peak_rss(1 if args.quick else 3) if args.rss else {}
        ref = med[VARIANTS[0]]
        print(f"  {'variant':<28} {'step ms':>8} {'speed':>8} {'grad peak KiB':>14} {'wide LM: grad peak MiB':>23}"
              + (f"{'peak RSS MiB, above rest':>26}" if rss else ""))
        for v in VARIANTS:
            r = f"{rss[v][0] / 1024:13.1f} {rss[v][1] / 1024:12.1f}" if v in rss else ""
            print(f"  {v:<28} {med[v] * 1e3:8.3f} {ref / med[v]:7.2f}x {grads[v] / 1024:14.1f} "
                  f"{wide[v] / 2**20:23.2f} {r}")
    finally:
        for h in hogs:
            h.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
