#!/usr/bin/env python
"""Time one optimizer step: adaopt (NumPy frontend, fused and reference) against torch.optim.

Run ``python benchmarks/bench_step.py`` (``make bench``); ``--quick`` for a smoke test.

For every case (optimizer, layout, N) each implementation gets its own copy of the same
float32 parameters and reads the same gradients, created once. Every implementation is
warmed up (numba compiles on the first calls), then timed in blocks of K steps with
``time.perf_counter``; the blocks are interleaved, round-robin over the implementations
(the order shuffled each repetition), so a noisy neighbour on the shared VM hits them all
alike. The table shows the median step time over the repetitions.

The roofline is measured here, not assumed: a numba kernel with no arithmetic to speak of
streams the same bytes as the optimizer (AdamW: reads p, g, m, v and writes p, m, v, 28
bytes per parameter; RMSprop and AdaGrad: reads p, g, s and writes p, s, 20 bytes), with
the same thread count as adaopt's fused kernels. It runs as one more member of every
case's round-robin, on one contiguous array of N elements, and "of stream" is the
implementation's params/s over that stream's params/s at the same moment. Small calls
are dominated by thread wake-up, so read that column at large N; and whether N = 1e7
(112-160 MB of arrays) is a memory roofline depends on the last-level cache, which the
header prints along with a stream at N = 1e8 when 1e7 might fit in it.

The run watches the rest of the machine: on 2 cores, another busy process makes every
2-thread parallel region (numba's and torch's OpenMP alike) wait for time slices, and
the numbers become the scheduler's. The header, the progress lines and the targets say
when other processes used the CPUs during a case.

Before anything is timed, adaopt's fused and reference backends must agree (and torch is
compared too), so the table never times a wrong kernel.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np

import numba

import adaopt
from adaopt.kernels import fused as adaopt_fused

try:
    import torch
except ImportError:  # the table then shows adaopt and the stream only
    torch = None

try:
    import adaopt.torch as adaopt_torch
except ImportError:  # no torch, or a version of adaopt before its torch frontend (issue 3)
    adaopt_torch = None

DTYPE = np.float32
LAYOUTS = {"1 tensor": 1, "100 tensors": 100}
DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 1_000_000)

#: Both libraries at torch's defaults, with the same learning rate passed explicitly.
OPTIMIZERS = {
    "AdamW": {"adaopt": "AdamW", "torch": "AdamW", "hp": {"lr": 1e-3, "weight_decay": 1e-2},
              "bytes": 28, "stream": "4r3w"},
    "RMSprop": {"adaopt": "RMSprop", "torch": "RMSprop", "hp": {"lr": 1e-2}, "bytes": 20, "stream": "3r2w"},
    "AdaGrad": {"adaopt": "AdaGrad", "torch": "Adagrad", "hp": {"lr": 1e-2}, "bytes": 20, "stream": "3r2w"},
}
#: RMSprop and AdaGrad are timed at the selected sizes from this one up (or the largest
#: selected, if all are smaller), in both layouts.
OTHER_MIN_SIZE = 1_000_000

ADAOPT_IMPLS = ("adaopt fused", "adaopt reference")
ADAOPT_TORCH = "adaopt.torch fused"
TORCH_IMPLS = ("torch fused", "torch foreach", "torch for-loop")
STREAM = "stream (roofline)"
IMPL_ORDER = ADAOPT_IMPLS + (ADAOPT_TORCH,) + TORCH_IMPLS + (STREAM,)
#: implementations found wrong by check_correctness: shown, never timed
EXCLUDED: dict[str, str] = {}


# ---------------------------------------------------------------------- the stream kernels


#: A stream's arrays by their element size in bytes: (parameters, gradients, state buffers).
STREAM_SPECS = {"4r3w": (4, 4, (4, 4)), "3r2w": (4, 4, (4,))}


def stream_bytes(spec) -> int:
    """Bytes a step moves per parameter: parameters and state read and written, gradients read."""
    p, g, state = spec
    return 2 * p + g + 2 * sum(state)


@functools.lru_cache(maxsize=None)
def stream_kernel(spec):
    """A numba kernel (``parallel=True``) that reads the parameters, gradients and state of
    ``spec`` (element sizes, :data:`STREAM_SPECS`) and writes the parameters and state back,
    with no arithmetic to speak of: each word plus ``s`` times the gradient's (or its own),
    ``s`` 0 at run time. Its time is the memory roofline of a step that moves the same bytes.

    Every array is seen as float32 words, so that 16-bit and 8-bit arrays move at the
    machine's speed rather than at the speed of their conversions (a loop converting bf16
    elements one by one ran at 52-55 GB/s where the same bytes as words ran at 64-70 GB/s
    at 1e7): one loop per element size, over that size's words, the gradient in its own."""
    p, g, state = spec
    sizes = (g, p, *state)  # the gradient first: read only
    names = [f"a{k}" for k in range(len(sizes))]
    lines = [f"def k({', '.join(names)}, s):", "    t = s"]
    for size in dict.fromkeys(sizes):
        group = [k for k, z in enumerate(sizes) if z == size]
        lines.append(f"    for i in numba.prange(a{group[0]}.shape[0]):")
        if group == [0]:  # the gradient alone in its size: read (a sum)
            lines.append("        t += a0[i]")
        lines += [f"        a{k}[i] = a{k}[i] + s * a{0 if 0 in group else k}[i]" for k in group if k != 0]
    lines.append("    return t")
    scope = {"numba": numba}
    exec(compile("\n".join(lines), f"<stream {spec}>", "exec"), scope)
    return numba.njit(parallel=True, error_model="numpy")(scope["k"])


def stream_step(spec, n: int):
    """A step function streaming ``spec``'s bytes (:func:`stream_kernel`) over n elements."""
    p, g, state = spec
    arrays = [np.ones(n * size // 4, DTYPE) for size in (g, p, *state)]  # float32 words
    kernel, zero = stream_kernel(spec), DTYPE(0.0)
    return lambda: kernel(*arrays, zero)


STREAM_BYTES = {kind: stream_bytes(spec) for kind, spec in STREAM_SPECS.items()}


def stream_impl(kind: str, n: int):
    """A step function streaming ``kind``'s bytes over n float32 elements."""
    return stream_step(STREAM_SPECS[kind], n)


# ---------------------------------------------------------------------- data and implementations


def layout_sizes(n: int, count: int, seed: int = 0) -> list[int]:
    """``count`` tensor sizes summing exactly to ``n``: log-uniform over three decades."""
    if count == 1:
        return [n]
    if n < count:
        raise ValueError(f"N={n} is smaller than {count} tensors")
    rng = np.random.default_rng(seed)
    w = 10.0 ** rng.uniform(0.0, 3.0, count)
    sizes = np.maximum(1, np.floor(w / w.sum() * n)).astype(np.int64)
    sizes[np.argmax(sizes)] += n - sizes.sum()
    assert sizes.sum() == n and sizes.min() >= 1
    return [int(s) for s in sizes]


def make_data(sizes: list[int], seed: int = 1):
    """Initial parameters and gradients (float32, standard normal), the same for everyone."""
    rng = np.random.default_rng(seed)
    params0 = [rng.standard_normal(s, dtype=DTYPE) for s in sizes]
    grads = [rng.standard_normal(s, dtype=DTYPE) for s in sizes]
    return params0, grads


def adaopt_impl(spec: dict, backend: str, params0, grads):
    """(step, params) for adaopt's stateful NumPy optimizer on copies of params0."""
    params = [p.copy() for p in params0]
    opt = getattr(adaopt, spec["adaopt"])(params, backend=backend, **spec["hp"])
    return (lambda: opt.step(grads)), (lambda: params)


_TORCH_FUSED: dict = {}


def torch_has_fused(name: str) -> bool:
    """Whether torch.optim.<name> accepts fused=True for float32 CPU tensors (found by trying)."""
    if name not in _TORCH_FUSED:
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.ones(4)
        try:
            getattr(torch.optim, name)([p], fused=True).step()
            _TORCH_FUSED[name] = True
        except (TypeError, RuntimeError, ValueError):
            _TORCH_FUSED[name] = False
    return _TORCH_FUSED[name]


#: The gradients the torch implementations read (torch's copies): (copy, original) pairs,
#: checked unchanged after timing as ``grads`` is.
TORCH_GRADS: list = []


def torch_tensor(a: np.ndarray):
    """A copy of ``a`` in memory torch allocated, as a training run's parameters, gradients
    and state are. Not ``torch.from_numpy(a)``: NumPy's large arrays start 16 bytes into a
    page and torch's 64, and a gradient just below the state's offset in the page (4K
    aliasing: its loads wait on stores to the state) made adaopt.torch's AdamW step on one
    tensor of 1e6 take 417-427 us instead of 308-322 us (offsets 32-1040 bytes)."""
    return torch.from_numpy(a).clone()


def torch_impl(spec: dict, mode: str, params0, grads):
    """(step, params) for torch.optim (or adaopt.torch) on torch's copies of params0 and
    grads (:func:`torch_tensor`); p.grad set once."""
    if mode == ADAOPT_TORCH:
        cls, kw = getattr(adaopt_torch, spec["adaopt"]), {"backend": "fused"}
    else:
        cls = getattr(torch.optim, spec["torch"])
        kw = {"torch fused": {"fused": True}, "torch foreach": {"foreach": True},
              "torch for-loop": {"foreach": False}}[mode]
    ps = [torch_tensor(p).requires_grad_() for p in params0]
    for p, g in zip(ps, grads):
        p.grad = torch_tensor(g)  # read only by these optimizers (checked after timing)
        TORCH_GRADS.append((p.grad, g))
    opt = cls(ps, **spec["hp"], **kw)
    return opt.step, (lambda: [p.detach().numpy() for p in ps])


def implementations(opt_name: str, params0, grads) -> dict:
    """name -> (step, params) for every implementation available to this optimizer."""
    spec = OPTIMIZERS[opt_name]
    out = {impl: adaopt_impl(spec, impl.split()[1], params0, grads) for impl in ADAOPT_IMPLS}
    if adaopt_torch is not None and ADAOPT_TORCH not in EXCLUDED:
        out[ADAOPT_TORCH] = torch_impl(spec, ADAOPT_TORCH, params0, grads)
    if torch is not None:
        for mode in TORCH_IMPLS:
            if mode == "torch fused" and not torch_has_fused(spec["torch"]):
                continue
            out[mode] = torch_impl(spec, mode, params0, grads)
    return out


def checksum(arrays) -> int:
    return zlib.crc32(b"".join(zlib.crc32(a.view(np.uint8)).to_bytes(4, "little") for a in arrays))


# ---------------------------------------------------------------------- correctness, before timing


def check_correctness(opt_names, n_small: int, steps: int = 5) -> list[str]:
    """Fused must equal reference (assert); torch is compared too (a warning if it differs).

    Runs the smallest case in both layouts, and one tensor large enough for the parallel
    fused kernel (``PARALLEL_MIN``), which the smallest case would not reach.
    """
    notes = []
    cases = [(lay, layout_sizes(n_small, count)) for lay, count in LAYOUTS.items() if n_small >= count]
    cases.append(("1 tensor (parallel kernel)", [2 * adaopt_fused.PARALLEL_MIN + 17]))
    for opt_name in opt_names:
        for layout, sizes in cases:
            params0, grads = make_data(sizes, seed=7)
            impls = implementations(opt_name, params0, grads)
            for step, _ in impls.values():
                for _ in range(steps):
                    step()
            fused = impls["adaopt fused"][1]()
            ref = impls["adaopt reference"][1]()
            where = f"{opt_name}, {layout}, N={sum(sizes)}"
            assert all(not np.array_equal(f, p) for f, p in zip(fused, params0)), f"{where}: no update"
            for f, r in zip(fused, ref):
                assert np.allclose(f, r, rtol=1e-5, atol=1e-7), (
                    f"{where}: adaopt fused and reference differ by {np.max(np.abs(f - r)):.3g}")
            for name in (ADAOPT_TORCH,) + TORCH_IMPLS:
                if name in impls:
                    t = impls[name][1]()
                    err = max(float(np.max(np.abs(f - x))) for f, x in zip(fused, t))
                    if not all(np.allclose(f, x, rtol=1e-5, atol=1e-6) for f, x in zip(fused, t)):
                        notes.append(f"WARNING {where}: adaopt fused and {name} differ by {err:.3g} "
                                     f"after {steps} steps")
                        if name == ADAOPT_TORCH:  # adaopt's own frontend must agree, or it is not timed
                            EXCLUDED[name] = f"wrong result ({err:.2g}): not timed"
    compiled = getattr(adaopt_fused, "_KERNELS", None)  # private; checked only while it exists
    assert compiled is None or compiled, "the fused backend compiled no kernel: it did not run"
    return notes


# ---------------------------------------------------------------------- timing


def time_block(step, k: int, limit_s: float = float("inf")) -> float:
    """Seconds per step over k consecutive steps, garbage collector paused.

    Stops early once ``limit_s`` has passed (a machine stalling mid-run would otherwise
    stretch a block of many short steps to minutes); divides by the steps actually run.
    """
    gc.disable()
    try:
        t0 = time.perf_counter()
        deadline = t0 + limit_s
        done = 0
        for _ in range(k):
            step()
            done += 1
            if time.perf_counter() > deadline:
                break
        return (time.perf_counter() - t0) / done
    finally:
        gc.enable()


def calibrate(step, target: float, kmax: int) -> tuple[int, float]:
    """(steps per block so a block lasts about ``target`` s, estimated seconds per step)."""
    k = 1
    while True:
        t = time_block(step, k)
        if t * k >= min(0.02, target / 2) or k >= kmax:
            break
        k = min(kmax, k * 8)
    return max(1, min(kmax, round(target / t))), t


def block_orders(names: list, reps: int, seed: int = 0) -> list[list]:
    """The order of the implementations in each round: a new shuffle each round (seeded), so
    that no implementation always follows the same one. A fixed rotation did: the one after
    torch's block always ran while torch's idle OpenMP threads still spun (they spin for
    milliseconds after a parallel region), and on 2 cores that made it up to 1.4x slower
    (``bench_wake.py``: 1.18-1.34x torch fused, 0.78x with ``OMP_WAIT_POLICY=PASSIVE``)."""
    rng = random.Random(seed)
    orders = []
    for _ in range(reps):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def measure(steps: dict, reps: int, target: float, warmup: int, kmax: int, max_impl_s: float):
    """Round-robin timing: name -> {"times": [s per step, one per repetition], "k": K}; the
    order shuffled each round (:func:`block_orders`)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    plan = {}
    for name, step in steps.items():
        k, t = calibrate(step, target, kmax)
        # a very slow implementation gets fewer repetitions (at least 3), never fewer steps
        n = max(3, min(reps, int(max_impl_s // max(t * k, 1e-9)))) if t * k * reps > max_impl_s else reps
        plan[name] = {"k": k, "reps": n, "times": []}
    for order in block_orders(list(steps), reps):
        gc.collect()  # cheap: everything made before the timing was frozen (main)
        for name in order:
            if len(plan[name]["times"]) < plan[name]["reps"]:
                plan[name]["times"].append(time_block(steps[name], plan[name]["k"], limit_s=10 * target))
    return plan


def run_case(opt_name: str, layout: str, n: int, args) -> list[dict]:
    spec = OPTIMIZERS[opt_name]
    sizes = layout_sizes(n, LAYOUTS[layout], seed=args.seed)
    params0, grads = make_data(sizes, seed=args.seed + 1)
    before = checksum(grads)
    impls = implementations(opt_name, params0, grads)
    if n > args.reference_max_n:
        impls.pop("adaopt reference")
    steps = {name: step for name, (step, _) in impls.items()}
    steps[STREAM] = stream_impl(spec["stream"], n)
    plan = measure(steps, args.reps, args.block_s, args.warmup, args.kmax, args.max_impl_s)
    assert checksum(grads) == before, f"{opt_name} {layout} N={n}: an implementation wrote to the gradients"
    assert all(np.array_equal(t.numpy(), g) for t, g in TORCH_GRADS), f"{opt_name} {layout} N={n}: " \
        "a torch implementation wrote to its gradients"
    TORCH_GRADS.clear()
    del impls, steps
    gc.collect()

    records = []
    for name in IMPL_ORDER:
        rec = {"optimizer": opt_name, "layout": layout, "n_tensors": len(sizes), "N": n,
               "implementation": name, "dtype": "float32", "bytes_per_param": spec["bytes"]}
        if name in plan:
            times = plan[name]["times"]
            med = statistics.median(times)
            rec.update(median_s=med, min_s=min(times), max_s=max(times), reps=len(times),
                       steps_per_rep=plan[name]["k"], times_s=times, mparams_per_s=n / med / 1e6,
                       gb_per_s=n * spec["bytes"] / med / 1e9)
        else:
            rec.update(median_s=None, mparams_per_s=None,
                       skipped=EXCLUDED.get(name) or (
                           "no fused=True in torch" if name == "torch fused" else
                           f"N > --reference-max-n={args.reference_max_n:g}" if name == "adaopt reference"
                           else "n/a (issue 3)" if name == ADAOPT_TORCH else "not available"))
        records.append(rec)

    by = {r["implementation"]: r for r in records}
    fused_torch = by["torch fused"].get("mparams_per_s")
    torch_rates = [by[t]["mparams_per_s"] for t in TORCH_IMPLS if by[t].get("mparams_per_s")]
    if fused_torch:
        base, base_name = fused_torch, "torch fused"
    elif torch_rates:
        base = max(torch_rates)
        base_name = "torch best (" + next(t for t in TORCH_IMPLS if by[t].get("mparams_per_s") == base) + ")"
    else:
        base, base_name = None, None
    stream_rate = by[STREAM]["mparams_per_s"]
    for r in records:
        rate = r.get("mparams_per_s")
        r["baseline"] = base_name
        r["vs_torch"] = rate / base if rate and base and r["implementation"] != STREAM else None
        r["of_stream"] = rate / stream_rate if rate and stream_rate else None
    return records


def parallel_latency(n: int = 10_000, calls: int = 300) -> float:
    """Median seconds of one parallel stream call on n elements: a few us on a healthy machine.

    On a shared VM whose vCPUs the host deschedules, every parallel region (numba's and
    torch's OpenMP alike) waits for the stalled thread, and such calls take multiples of
    the host's 4 ms tick; then every number in the table is meaningless.
    """
    step = stream_impl("4r3w", n)
    for _ in range(3):
        step()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


HEALTHY_LATENCY_S = 500e-6


def cpu_sample():
    """(machine busy s, machine total s, this process's cpu s) from /proc/stat and os.times."""
    own = os.times()
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / tick, sum(vals) / tick, own.user + own.system


def foreign_share(a, b) -> float | None:
    """The share of all CPUs' time between samples a and b that other processes used.

    Another process busy on one of two cores makes every 2-thread parallel region wait
    for a time slice (multiples of 4 ms): the timings are then the scheduler's, not ours.
    """
    if a is None or b is None or b[1] <= a[1]:
        return None
    return max(0.0, ((b[0] - a[0]) - (b[2] - a[2])) / (b[1] - a[1]))


FOREIGN_WARN = 0.05


def stream_roofline(n: int, kind: str, reps: int, target: float) -> dict:
    """The stream kernel alone at n elements: median GB/s and equivalent M params/s."""
    step = stream_impl(kind, n)
    plan = measure({kind: step}, reps, target, warmup=3, kmax=1 << 20, max_impl_s=60)
    med = statistics.median(plan[kind]["times"])
    nbytes = STREAM_BYTES[kind]
    return {"kind": kind, "N": n, "median_s": med, "gb_per_s": n * nbytes / med / 1e9,
            "mparams_per_s": n / med / 1e6, "bytes_per_param": nbytes}


# ---------------------------------------------------------------------- reporting


def fmt_n(n: int) -> str:
    e = int(round(np.log10(n)))
    return f"1e{e}" if 10**e == n else f"{n:,}"


def fmt_time(s) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def l3_bytes() -> int | None:
    """The last-level cache size the OS reports (as seen by this VM), or None."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        best = None
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/size") as f:
                text = f.read().strip()
            size = int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[text[-1]] if text[-1].isalpha() \
                else int(text)
            if best is None or level > best[0]:
                best = (level, size)
        return best[1] if best else None
    except (OSError, ValueError, KeyError):
        return None


def fmt_spread(x: float) -> str:
    return f"{x * 100:.0f}%" if x < 10 else ">999%"


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout
        commit = commit + ("+dirty" if dirty.strip() else "") if commit else "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    stream_impl("3r2w", 4)()  # start numba's pool
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu, "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.threading_layer(),
        "torch_threads": torch.get_num_threads() if torch else None,
        "torch_interop_threads": torch.get_num_interop_threads() if torch else None,
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "torch": torch.__version__ if torch else None,
        "adaopt": getattr(adaopt, "__version__", "?"), "commit": commit,
        "parallel_min": adaopt_fused.PARALLEL_MIN, "llc_bytes": l3_bytes(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS",
                                           "OPENBLAS_NUM_THREADS") if k in os.environ},
    }
    return info


def print_table(records: list[dict]) -> None:
    head = ["optimizer", "layout", "N", "implementation", "step (median)", "M params/s", "vs torch",
            "of stream", "spread", "reps x K"]
    rows, last = [], None
    for r in records:
        case = (r["optimizer"], r["layout"], r["N"])
        if last is not None and case != last:
            rows.append(None)
        last = case
        med = r.get("median_s")
        if med is None:
            cells = ["-", "-", "-", "-", "-", r.get("skipped", "")]
        else:
            vs = r.get("vs_torch")
            mark = "" if r["baseline"] == "torch fused" else "*"
            cells = [fmt_time(med), f"{r['mparams_per_s']:,.0f}",
                     f"{vs:.2f}x{mark}" if vs is not None else "-",
                     f"{r['of_stream']:.2f}" if r.get("of_stream") is not None else "-",
                     fmt_spread((r['max_s'] - r['min_s']) / med),
                     f"{r['reps']} x {r['steps_per_rep']}"]
        name = r["implementation"]
        if name == STREAM:
            name = f"{name} {STREAM_BYTES[OPTIMIZERS[r['optimizer']]['stream']]}B"
        rows.append([r["optimizer"], r["layout"], fmt_n(r["N"]), name] + cells)
    widths = [max(len(head[i]), *(len(row[i]) for row in rows if row)) for i in range(len(head))]
    right = {2, 4, 5, 6, 7, 8, 9}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(head))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("" if row is None else line(row))


def check_targets(records: list[dict]) -> list[str]:
    """The performance targets, each as a PASS/MISS line (nothing fails on a miss)."""
    by = {(r["optimizer"], r["layout"], r["N"], r["implementation"]): r for r in records}
    out = []
    n7 = 10_000_000

    def verdict(case, what, value, goal, unit="", impl="adaopt fused"):
        if value is None:
            return
        opt, lay, n = case
        busy = by[(opt, lay, n, impl)].get("foreign_cpu")
        flag = f"  (unreliable: other processes used {busy:.0%} of the CPUs)" if busy and busy > FOREIGN_WARN else ""
        out.append(f"  {'PASS' if value >= goal else 'MISS'}  {opt} {fmt_n(n)}, {lay}, {impl} {what}: "
                   f"{value:.3g}{unit} (target >= {goal}{unit}){flag}")

    def fused(case, key):
        r = by.get((*case, "adaopt fused"))
        return r.get(key) if r else None

    case = ("AdamW", "1 tensor", n7)
    verdict(case, "/ stream", fused(case, "of_stream"), 0.9)
    verdict(case, "vs torch fused", fused(case, "vs_torch"), 1.0, "x")
    for n in (100_000, 1_000_000):
        case = ("AdamW", "100 tensors", n)
        verdict(case, "vs torch fused", fused(case, "vs_torch"), 3.0, "x")
    for (opt, lay, n, impl), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if opt == "AdamW" and impl == ADAOPT_TORCH:  # adaopt.torch on CPU, every row
            verdict((opt, lay, n), "vs torch fused", r.get("vs_torch"), 1.0, "x", impl=ADAOPT_TORCH)
    for opt in ("RMSprop", "AdaGrad"):
        case = (opt, "1 tensor", n7)
        mine = fused(case, "mparams_per_s")
        if not mine:
            continue
        rates = {t: by[(*case, t)].get("mparams_per_s") for t in TORCH_IMPLS}
        best = max((x for x in rates.values() if x), default=None)
        if best:
            verdict(case, "vs torch's best", mine / best, 2.0, "x")
        if rates["torch fused"]:  # the target assumed torch had no fused kernel for this optimizer
            unfused = max((x for t, x in rates.items() if x and t != "torch fused"), default=None)
            if unfused:
                verdict(case, "vs torch's best without fused=True", mine / unfused, 2.0, "x")
    return out


# ---------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    try:
        return sorted({int(float(x)) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are numbers separated by commas, got {text!r}") from None


_COLD_START = """
import time
t = time.perf_counter()
import numpy as np, adaopt
x = np.ones(1000, np.float32)
adaopt.AdamW([x], lr=1e-3, backend="fused").step([x.copy()])
print(time.perf_counter() - t)
"""


def cold_start() -> float:
    """Seconds from a fresh interpreter to one fused AdamW step done (the check above
    has compiled and cached the kernel, so this measures loading it from disk)."""
    times = [float(subprocess.run([sys.executable, "-c", _COLD_START], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(3)]
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: sizes 1e4,1e6, 3 reps, short blocks (< 1 min)")
    ap.add_argument("--sizes", type=parse_sizes, help="total parameter counts, e.g. 1e4,1e5,1e6,1e7")
    ap.add_argument("--reps", type=int, help="timed blocks per implementation (default 7; --quick 3)")
    ap.add_argument("--block-s", type=float, help="seconds per timed block (default 0.08; --quick 0.02)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--optimizers", default="AdamW,RMSprop,AdaGrad",
                    help="comma-separated subset of AdamW,RMSprop,AdaGrad")
    ap.add_argument("--reference-max-n", type=float, default=float("inf"),
                    help="skip adaopt's reference backend above this N (default: never)")
    ap.add_argument("--max-impl-s", type=float, default=8.0,
                    help="an implementation whose blocks would take longer than this in all gets fewer reps (>= 3)")
    ap.add_argument("--kmax", type=int, default=100_000, help="most steps in one timed block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--hog", type=int, default=0, metavar="K",
                    help="run K busy processes beside the benchmark (a data loader's share of the machine)")
    args = ap.parse_args(argv)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.reps = args.reps or (3 if args.quick else 7)
    args.block_s = args.block_s or (0.02 if args.quick else 0.08)
    opts = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    lookup = {k.lower(): k for k in OPTIMIZERS}
    bad = [o for o in opts if o.lower() not in lookup]
    if bad:
        ap.error(f"unknown optimizer(s) {bad}; choose from {', '.join(OPTIMIZERS)}")
    opts = [lookup[o.lower()] for o in opts]
    if args.reps < 1 or args.warmup < 3:
        ap.error("--reps must be >= 1 and --warmup >= 3 (the first calls compile the kernels)")

    hogs = start_hogs(args.hog)
    try:
        return _run(args, sizes, opts)
    finally:
        for h in hogs:
            h.terminate()


def _spin() -> None:  # pragma: no cover - runs in the hog processes
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


def start_hogs(k: int) -> list:
    """``k`` processes that keep a CPU busy each, for timing under load."""
    import multiprocessing

    hogs = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(k)]
    for h in hogs:
        h.start()
    if hogs:
        time.sleep(0.5)
        print(f"LOAD: {k} busy process(es) beside this run, as a data loader would be")
    return hogs


def _run(args, sizes, opts) -> int:
    t_start, cpu_start = time.perf_counter(), cpu_sample()
    info = machine_info()
    print(f"adaopt step benchmark  {info['date']}  adaopt {info['adaopt']} ({info['commit']})")
    print(f"machine: {info['cpu']}; nproc {info['nproc']} (affinity {info['affinity']}); "
          f"numba threads {info['numba_threads']} ({info['numba_threading_layer']}); "
          f"torch threads {info['torch_threads']} (interop {info['torch_interop_threads']})")
    print(f"python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, torch {info['torch']}; "
          f"fused PARALLEL_MIN={info['parallel_min']}" + (f"; env {info['env']}" if info["env"] else ""))
    if torch is None:
        print("torch is not installed: no torch rows")
    print("adaopt.torch: " + ("timed (backend='fused'), as a drop-in torch.optim optimizer" if adaopt_torch
                              else "n/a (issue 3): that frontend cannot be imported here, its rows say so"))
    c0 = cpu_sample()
    time.sleep(1.0)
    idle_check = foreign_share(c0, cpu_sample())
    if idle_check is not None:
        print(f"other processes' CPU use over 1 s before starting: {idle_check:.0%} of the CPUs"
              + ("  WARNING: the machine is not idle; parallel timings will stall" if idle_check > FOREIGN_WARN
                 else ""))
    sys.stdout.flush()

    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()  # a full collection with torch loaded takes ~70 ms; later ones skip these objects
    notes = check_correctness(opts, min(sizes))
    print(f"check: adaopt fused == reference (rtol 1e-5) for {', '.join(opts)} at N={fmt_n(min(sizes))} "
          f"(both layouts) and one tensor of {2 * adaopt_fused.PARALLEL_MIN + 17}: ok "
          f"({time.perf_counter() - t0:.1f} s, includes compiling)")
    for note in notes:
        print(note)

    print(f"new process, kernels cached on disk: import adaopt + first AdamW step in "
          f"{cold_start():.2f} s (median of 3 fresh interpreters)")

    lat_start = parallel_latency()
    print(f"parallel-call latency (stream kernel, N=1e4, median of 300): {lat_start * 1e6:.1f} us")
    if lat_start > HEALTHY_LATENCY_S:
        print("WARNING: parallel calls are stalling (vCPUs descheduled by the host?); "
              "the timings below will be garbage: rerun later")
    llc = info["llc_bytes"]
    roof_sizes = [1_000_000, 10_000_000]
    if not args.quick and llc and 10_000_000 * 16 <= 2 * llc:
        roof_sizes.append(100_000_000)  # N = 1e7 may live in this cache: measure memory for real
    kinds = sorted({OPTIMIZERS[o]["stream"] for o in opts})
    roofs = [stream_roofline(n, kind, min(args.reps, 5) if n > 10_000_000 else args.reps, args.block_s)
             for kind in kinds for n in roof_sizes]
    gc.collect()
    print("stream (numba, parallel, "
          f"{info['numba_threads']} threads; 4r3w: reads 4 arrays writes 3, 28 B/param; 3r2w: 3/2, 20 B/param); "
          + (f"last-level cache {llc / 2**20:.0f} MiB" if llc else "last-level cache unknown"))
    for r in roofs:
        foot = r["N"] * 4 * (4 if r["kind"] == "4r3w" else 3)  # bytes of the arrays
        where = "" if not llc else ("  (fits in cache)" if foot <= llc else
                                    "  (exceeds the cache: memory)" if foot > 4 * llc else "  (about the cache size)")
        print(f"  {r['kind']} N={fmt_n(r['N'])}: {r['gb_per_s']:.1f} GB/s = {r['mparams_per_s']:,.0f} M params/s"
              f", arrays {foot / 1e6:,.0f} MB{where}")
    sys.stdout.flush()

    other_sizes = [n for n in sizes if n >= OTHER_MIN_SIZE] or [max(sizes)]
    cases = [(opt, layout, n) for opt in opts for layout in LAYOUTS
             for n in (sizes if opt == "AdamW" else other_sizes) if n >= LAYOUTS[layout]]
    records, busy_cases = [], []
    for i, (opt, layout, n) in enumerate(cases):
        tc, c0 = time.perf_counter(), cpu_sample()
        recs = run_case(opt, layout, n, args)
        other = foreign_share(c0, cpu_sample())
        for r in recs:
            r["foreign_cpu"] = other
        records += recs
        if other is not None and other > FOREIGN_WARN:
            busy_cases.append(f"{opt} {layout} {fmt_n(n)} ({other:.0%})")
        print(f"  [{i + 1}/{len(cases)}] {opt}, {layout}, N={fmt_n(n)}: {time.perf_counter() - tc:.1f} s"
              + (f", other processes used {other:.0%} of the CPUs" if other is not None else ""),
              file=sys.stderr, flush=True)

    roofs_end = [stream_roofline(n, kind, args.reps, args.block_s) for kind in kinds for n in (10_000_000,)]
    lat_end = parallel_latency()
    print()
    print("Median step time over the repetitions; M params/s = N / step time.")
    print("vs torch: M params/s over torch fused=True's in the same case; '*': torch has no fused kernel for")
    print("  this optimizer, so over the fastest of torch foreach=True / foreach=False.")
    print("of stream: M params/s over the stream kernel's (same bytes per param, same N, one contiguous array,")
    print("  timed in the same round-robin). spread: (max - min) / median of the repetitions.")
    print("torch for-loop = foreach=False, torch's CPU default. adaopt.torch fused: adaopt's torch.optim drop-in,")
    print("  backend='fused', stepping the same torch tensors layout as torch's rows.")
    print()
    print_table(records)
    print()
    print("stream at the end: " + "; ".join(f"{r['kind']} N={fmt_n(r['N'])} {r['gb_per_s']:.1f} GB/s"
                                          for r in roofs_end) + " (drift since the start shows the VM's noise)")
    print(f"parallel-call latency at the end: {lat_end * 1e6:.1f} us (start {lat_start * 1e6:.1f} us)")
    stalled = max(lat_start, lat_end) > HEALTHY_LATENCY_S
    if stalled:
        print("WARNING: parallel calls stalled during this run (see above): do not trust these numbers")
    other_total = foreign_share(cpu_start, cpu_sample())
    if other_total is not None:
        print(f"other processes used {other_total:.0%} of the CPUs over the whole run"
              + (f"; over {FOREIGN_WARN:.0%} during: " + ", ".join(busy_cases) +
                 " (those cases' timings are unreliable)" if busy_cases else ""))
    noisy = [r for r in records if r.get("median_s") and r["max_s"] > 2 * r["median_s"]]
    if noisy:
        print(f"{len(noisy)} of {sum(1 for r in records if r.get('median_s'))} rows had a repetition over 2x "
              "their median (the machine stalled now and then); medians shrug off a few such")
    targets = check_targets(records)
    if targets:
        print("targets:")
        print("\n".join(targets))
    wall = time.perf_counter() - t_start
    print(f"wall time {wall:.0f} s")

    if args.json:
        with open(args.json, "w") as f:
            shown = {k: (None if v == float("inf") else v) for k, v in vars(args).items() if k != "json"}
            json.dump({"machine": info, "args": shown,
                       "sizes": sizes, "check_notes": notes, "stream_start": roofs, "stream_end": roofs_end,
                       "parallel_latency_s": {"start": lat_start, "end": lat_end, "stalled": stalled},
                       "foreign_cpu": {"before": idle_check, "run": other_total, "busy_cases": busy_cases},
                       "records": records, "targets": targets, "wall_s": wall}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
