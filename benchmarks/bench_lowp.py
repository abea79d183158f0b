#!/usr/bin/env python
"""Time AdamW's 16-bit paths: Kahan and stochastic rounding of bf16 parameters, bf16 moments.

Run ``python benchmarks/bench_lowp.py`` (``make bench``, idle and with ``--hog 1``);
``--quick`` for a smoke test. It uses :mod:`bench_step`'s round-robin (``measure``: every
implementation warmed up, then timed in interleaved blocks, the order shuffled each round) and
prints the median step time and two ratios, both from the same rounds:

* ``vs torch``: step time over ``torch.optim.AdamW(fused=True)``'s on the same
  parameters (bf16 parameters: torch keeps bf16 moments; fp32: fp32 moments);
* ``vs plain``: step time over adaopt's own plain step on the same parameters
  (bf16, fp32 state, round to nearest; or fp32 with fp32 state);
* ``vs stream``: step time over a stream that moves the step's bytes (``B/step``:
  parameters and state read and written, gradients read) and computes nothing
  (:func:`bench_step.stream_kernel`), timed in the same rounds: 1.00x is the memory
  roofline, more is compute or overhead. Read it at 1e7, where the arrays are far larger
  than the last-level cache; at 1e6 and below they fit, and the stream is no roofline.

Each adaopt configuration is timed twice: the NumPy frontend (``adaopt``, its threaded
kernels on adaopt's own pool) and ``adaopt.torch`` (on torch's OpenMP threads where torch
has them, the PyTorch user's path).

Lower is faster. Before timing, each adaopt configuration's fused kernel must give the
reference path's bits (parameters and state), so the table never times a wrong kernel.
Cases: (a) bf16 parameters, one tensor of N; (b) fp32 parameters with bf16 or 8-bit
moments (``state_dtype="int8"``), one tensor and 100 tensors of N in all, with the bytes of
state per parameter. It also prints the 8-bit state's accuracy (the distance between the
int8 and float32 states' parameters after 100 steps, over the distance moved) and, unless
``--quick``, the final losses of real training runs with each state (:mod:`lowp_losses`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bs  # noqa: E402

import adaopt  # noqa: E402
from adaopt import dtypes  # noqa: E402

try:
    import torch
except ImportError:  # then only adaopt's rows
    torch = None

HP = {"lr": 1e-3, "weight_decay": 1e-2}
#: name -> (parameter dtype, adaopt options)
BF16_CASES = {
    "adaopt bf16 (fp32 state, nearest)": ("bfloat16", {}),
    "adaopt bf16 kahan": ("bfloat16", {"kahan": True}),
    "adaopt bf16 stochastic": ("bfloat16", {"stochastic_rounding": True}),
    "adaopt bf16, bf16 state": ("bfloat16", {"state_dtype": "bfloat16"}),
    "adaopt bf16 kahan, bf16 state": ("bfloat16", {"kahan": True, "state_dtype": "bfloat16"}),
    "adaopt bf16 stochastic, bf16 state": ("bfloat16", {"stochastic_rounding": True, "state_dtype": "bfloat16"}),
}
FP32_CASES = {
    "adaopt fp32 (fp32 state)": ("float32", {}),
    "adaopt fp32, bf16 state": ("float32", {"state_dtype": "bfloat16"}),
    "adaopt fp32, int8 state": ("float32", {"state_dtype": "int8"}),
}
TORCH = "torch fused"
#: Other libraries' 8-bit AdamW on CPU, timed beside adaopt's int8 state when installed
#: (``make bench-peers``; never in CI): name -> (module, class path).
PEERS = {"bitsandbytes AdamW8bit": ("bitsandbytes", "optim.AdamW8bit"),
         "torchao AdamW8bit": ("torchao.optim", "AdamW8bit")}


def state_bytes(opt, params) -> float:
    """Bytes of optimizer state per parameter element (buffers, not the step count)."""
    total = sum(v.nbytes for st in opt.state.values() for k, v in st.items() if k != "step" and np.ndim(v))
    return total / sum(p.size for p in params)


def adaopt_impl(kind: str, kw: dict, params0, grads, backend="fused"):
    dt = dtypes.as_dtype(kind)
    params = [p.astype(dt) for p in params0]
    gs = [g.astype(dt) for g in grads]
    opt = adaopt.AdamW(params, backend=backend, **HP, **kw)
    return (lambda: opt.step(gs)), params, opt


def adaopt_torch_impl(kind: str, kw: dict, params0, grads):
    """adaopt.torch's optimizer on torch tensors (its threaded kernels run on torch's OpenMP
    threads, :mod:`adaopt.kernels.team`): the step and its state's bytes per parameter."""
    import adaopt.torch as at

    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[kind]
    ps = [bs.torch_tensor(p).to(dt).requires_grad_() for p in params0]  # torch's memory, as in training
    for p, g in zip(ps, grads):
        p.grad = bs.torch_tensor(g).to(dt)
    opt = at.AdamW(ps, backend="fused", **HP, **kw)
    opt.step()
    held = sum(v.numel() * v.element_size() for st in opt.state.values() for k, v in st.items()
               if k != "step" and torch.is_tensor(v) and v.dim())
    return opt.step, held / sum(p.numel() for p in ps)


def torch_impl(kind: str, params0, grads):
    dt = {"bfloat16": torch.bfloat16, "float32": torch.float32}[kind]
    ps = [bs.torch_tensor(p).to(dt).requires_grad_() for p in params0]  # torch's memory, as in training
    for p, g in zip(ps, grads):
        p.grad = bs.torch_tensor(g).to(dt)
    opt = torch.optim.AdamW(ps, fused=True, **HP)
    return opt.step


def peer_impls(params0, grads) -> dict:
    """``{name: step}`` of the peers that import (their first steps, which may compile, done)."""
    import importlib
    import warnings

    out = {}
    for name, (module, path) in PEERS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls = importlib.import_module(module)
                for part in path.split("."):
                    cls = getattr(cls, part)
                ps = [bs.torch_tensor(p).requires_grad_() for p in params0]
                for p, g in zip(ps, grads):
                    p.grad = bs.torch_tensor(g)
                opt = cls(ps, **HP)
                opt.step()
                opt.step()
        except Exception as e:  # not installed, or no CPU kernel: the row is left out
            print(f"peer {name}: not timed ({type(e).__name__}: {str(e)[:80]})")
            continue
        out[name] = opt.step
    return out


def check(cases: dict, steps: int = 4) -> None:
    """Each configuration's fused kernel gives the reference's bits (a bucket of two tensors,
    one of them large enough for the threaded kernel)."""
    sizes = [1000, 2 * bs.adaopt_fused.PARALLEL_MIN + 17]
    params0, grads = bs.make_data(sizes, seed=7)
    for name, (kind, kw) in cases.items():
        runs = []
        for backend in ("fused", "reference"):
            step, params, opt = adaopt_impl(kind, kw, params0, grads, backend)
            for _ in range(steps):
                step()
            runs.append((params, opt))
        (fp, fo), (rp, ro) = runs
        assert not fo._plan.plan.reference, f"{name}: not every tensor took the fused kernel"
        for a, b in zip(fp, rp):
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{name}: fused != reference"
        for key, st in fo.state.items():
            for k, v in st.items():
                assert k == "step" or np.array_equal(np.asarray(v).view(np.uint8),
                                                     np.asarray(ro.state[key][k]).view(np.uint8)), (name, k)


def stream_spec(opt, params) -> tuple:
    """The element sizes a step of ``opt`` moves (:func:`bench_step.stream_kernel`): the
    parameters', the gradients' (the parameters' dtype here) and each state buffer's of the
    parameter's size (8-bit state's per-block scales, 1/256 of the elements, left out), of
    the largest parameter (small ones keep float32 state in 8-bit mode)."""
    size = max(p.size for p in params)
    st = next(st for st in opt.state.values() if any(np.size(v) == size for k, v in st.items() if k != "step"))
    state = tuple(np.asarray(v).itemsize for k, v in st.items() if k != "step" and np.size(v) == size)
    return params[0].itemsize, params[0].itemsize, state


def stream_name(spec) -> str:
    return f"stream, {bs.stream_bytes(spec)} B/param (roofline)"


def run_case(title: str, cases: dict, kind: str, sizes: list[int], args) -> list[dict]:
    """Every configuration of ``cases`` through both frontends, torch fused, and a stream of
    each one's bytes (its memory roofline, :func:`bench_step.stream_kernel`), interleaved."""
    params0, grads = bs.make_data(sizes, seed=args.seed + 1)
    steps, bytes_of, spec_of = {}, {}, {}
    for name, (k, kw) in cases.items():
        step, params, opt = adaopt_impl(k, kw, params0, grads, "fused")
        step()
        steps[name], bytes_of[name], spec_of[name] = step, state_bytes(opt, params), stream_spec(opt, params)
    if torch is not None:
        for name, (k, kw) in cases.items():
            tname = name.replace("adaopt ", "adaopt.torch ", 1)
            steps[tname], bytes_of[tname] = adaopt_torch_impl(k, kw, params0, grads)
            spec_of[tname] = spec_of[name]
        steps[TORCH] = torch_impl(kind, params0, grads)
        bytes_of[TORCH] = 4.0 if kind == "bfloat16" else 8.0
        spec_of[TORCH] = (2, 2, (2, 2)) if kind == "bfloat16" else (4, 4, (4, 4))  # torch keeps the params' dtype
    for spec in dict.fromkeys(spec_of.values()):  # one contiguous array of all the elements, as bench_step
        steps[stream_name(spec)] = bs.stream_step(spec, sum(sizes))
        if args.peers and kind == "float32":
            for name, step in peer_impls(params0, grads).items():
                steps[name], bytes_of[name] = step, float("nan")  # their state layouts: not counted
    plan = bs.measure(steps, args.reps, args.block_s, args.warmup, args.kmax, args.max_impl_s)
    med = {name: statistics.median(p["times"]) for name, p in plan.items()}
    plain = med[next(iter(cases))]
    out = []
    for name in steps:
        spec, stream = spec_of.get(name), name not in bytes_of  # peers: no spec; streams: no state
        out.append({"case": title, "N": sum(sizes), "n_tensors": len(sizes), "implementation": name,
                    "median_s": med[name], "times_s": plan[name]["times"],
                    "vs_torch": med[name] / med[TORCH] if TORCH in med and not stream else None,
                    "vs_plain": None if stream else med[name] / plain,
                    "vs_stream": med[name] / med[stream_name(spec)] if spec else None,
                    "bytes_per_param": bs.stream_bytes(spec) if spec else int(name.split()[1]) if stream else None,
                    "state_bytes_per_param": bytes_of.get(name, float("nan"))})
    return out


def int8_accuracy(n: int = 1_000_000, steps: int = 100, seeds=(0, 1, 2)) -> list[float]:
    """Per seed: |p_int8 - p_fp32| / |p_fp32 - p_0| after ``steps`` AdamW steps on the noisy
    quadratic ``g = p + noise`` (the same gradients for both)."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        p0 = rng.standard_normal(n).astype(np.float32)
        runs = []
        for sd in (None, "int8"):
            p = p0.copy()
            opt = adaopt.AdamW([p], lr=1e-2, state_dtype=sd)
            noise = np.random.default_rng(seed + 100)
            for _ in range(steps):
                opt.step([p + noise.standard_normal(n).astype(np.float32)])
            runs.append(p)
        out.append(float(np.linalg.norm(runs[1] - runs[0]) / np.linalg.norm(runs[0] - p0)))
    return out


def print_rows(rows: list[dict]) -> None:
    """The table; ``vs stream`` is the step's time over the stream of its bytes (1.00x: at the
    memory roofline; above: compute or overhead). Stream rows show their bytes only."""
    print(f"{'case':34s} {'N':>5s} {'implementation':42s} {'step':>9s} {'vs torch':>9s} {'vs plain':>9s} "
          f"{'vs stream':>9s} {'B/step':>6s} {'state B/param':>13s}")

    def ratio(r, key):
        return f"{r[key]:.2f}x" if r.get(key) is not None else "-"

    for r in rows:
        state, moved = r["state_bytes_per_param"], r["bytes_per_param"]
        print(f"{r['case']:34s} {bs.fmt_n(r['N']):>5s} {r['implementation']:42s} {bs.fmt_time(r['median_s']):>9s} "
              f"{ratio(r, 'vs_torch'):>9s} {ratio(r, 'vs_plain'):>9s} {ratio(r, 'vs_stream'):>9s} "
              f"{moved if moved else '-':>6} " + (f"{state:13.2f}" if state == state else f"{'-':>13s}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: N=1e5 and 1e6, 3 short reps")
    ap.add_argument("--sizes", type=bs.parse_sizes, help="total parameter counts (default 1e4,1e5,1e6,1e7)")
    ap.add_argument("--reps", type=int, help="timed blocks per implementation (default 7; --quick 3)")
    ap.add_argument("--block-s", type=float, help="seconds per timed block (default 0.1; --quick 0.02)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--kmax", type=int, default=100_000)
    ap.add_argument("--max-impl-s", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hog", type=int, default=0, metavar="K", help="K busy processes beside the benchmark")
    ap.add_argument("--threads", type=int, help="threads for adaopt's kernels and torch (default: numba's "
                    "and torch's own counts); 1 holds up best on a busy machine")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("--peers", action="store_true", help="also time bitsandbytes' and torchao's AdamW8bit "
                    "on the float32 rows, where they import (make bench-peers installs them)")
    args = ap.parse_args(argv)
    if args.threads:
        from adaopt.kernels import threads as pool

        pool.max_threads = lambda: args.threads  # the fused kernels' cap (the NumPy frontend's count)
        bs.numba.set_num_threads(args.threads)  # the stream's
        if torch is not None:
            torch.set_num_threads(args.threads)
    sizes = args.sizes or ([100_000, 1_000_000] if args.quick else [10_000, 100_000, 1_000_000, 10_000_000])
    args.reps = args.reps or (3 if args.quick else 7)
    args.block_s = args.block_s or (0.02 if args.quick else 0.1)
    hogs = bs.start_hogs(args.hog)
    try:
        t0, c0 = time.perf_counter(), bs.cpu_sample()
        check({**BF16_CASES, **FP32_CASES})
        print(f"check: every configuration's fused kernel == reference, bit for bit ({time.perf_counter() - t0:.1f} s)")
        rows = []
        big = max(sizes)
        rows += run_case("bf16 params, 1 tensor", BF16_CASES, "bfloat16", [big], args)
        for n in sizes:
            rows += run_case("fp32 params, 16/8-bit moments, 1 tensor", FP32_CASES, "float32", [n], args)
            if n >= 100:
                rows += run_case("fp32 params, 16/8-bit moments, 100 t.", FP32_CASES, "float32",
                                 bs.layout_sizes(n, 100, seed=args.seed), args)
        accuracy = int8_accuracy(100_000 if args.quick else 1_000_000)
        other = bs.foreign_share(c0, bs.cpu_sample())
    finally:
        for h in hogs:
            h.terminate()
    print(f"threads: adaopt {bs.adaopt_fused.pool.max_threads()}, torch {torch.get_num_threads() if torch else '-'}")
    print(f"Median step time of {args.reps} interleaved blocks; ratios from the same rounds (lower is faster)."
          + (f" Other processes used {other:.0%} of the CPUs." if other is not None else ""))
    print_rows(rows)
    print("int8 state, 100 AdamW steps: distance to the float32 state's run / distance moved, seeds 0-2: "
          + ", ".join(f"{a:.2%}" for a in accuracy))
    if torch is not None and not args.quick and not args.hog:
        import lowp_losses

        lowp_losses.print_losses(lowp_losses.losses())
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "foreign_cpu": other, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
