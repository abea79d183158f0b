"""Fused multi-tensor kernels, generated from the rules and compiled with numba.

For one bucket of tensors that share hyperparameters, step count and dtypes, the
rule is traced (:mod:`adaopt.kernels.tracer`) into straight-line code, which is
wrapped in a loop over the bucket's tensors and their elements::

    def kernel(P, G, B0, B1, S):            # tuples of CHUNK flat arrays, scalars
        s0 = S[0]; s1 = S[1]; ...
        for j in range(len(P)):
            p = P[j]; g = G[j]; b0 = B0[j]; b1 = B1[j]
            for i in range(p.shape[0]):     # prange for large tensors
                p_ = p[i]; g_ = g[i]; exp_avg_ = b0[i]; exp_avg_sq_ = b1[i]
                <the rule, one line per operation>
                p[i] = ...; b0[i] = ...; b1[i] = ...

Every element is read once and written once: no temporaries, one pass over memory.
Tensors go in tuples of a size from ``CHUNKS`` (1, 4 or 16, padded with empty
arrays), so at most three compiled kernels serve every model whatever its number of
tensors, and a one-tensor step does not pay for unpacking fifteen empty arrays
(about 9 us a call). The generated
source is written to a cache folder (``$ADAOPT_CACHE_DIR``, default
``~/.cache/adaopt``) and compiled with ``cache=True``, so a new process loads the
machine code from disk instead of compiling it again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from .. import dtypes
from .tracer import Program, trace

#: Tuple sizes a kernel is compiled for: a bucket of n tensors goes in chunks of 16,
#: and the rest in one chunk of the smallest size that holds it.
CHUNKS = (1, 4, 16)
CHUNK = CHUNKS[-1]
#: Buckets of at least this many elements run the threaded kernel, smaller ones the serial
#: one: waking the threads costs ~5 us, which a step of fewer elements does not repay.
PARALLEL_MIN = 1 << 16
#: Elements per work item of the threaded kernel (large tensors are split into blocks).
BLOCK = 1 << 15

_KERNELS: dict = {}
_EMPTY: dict = {}


def available() -> bool:
    """True when numba can be imported (``pip install 'adaopt[fast]'``)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    root = os.environ.get("ADAOPT_CACHE_DIR") or Path.home() / ".cache" / "adaopt"
    return Path(root) / "kernels"


# ---------------------------------------------------------------------- code generation

_HALF = {"float16": ("f16_to_f32", "f32_to_f16"), "bfloat16": ("bf16_to_f32", "f32_to_bf16")}


def _load(kind: str, compute: str, expr: str) -> str:
    """An element of storage ``kind`` as a ``compute``-dtype number."""
    if kind in _HALF:
        return f"np.{compute}({_HALF[kind][0]}({expr}))"
    return f"np.{compute}({expr})"


def _store(kind: str, expr: str) -> str:
    """A compute-dtype number as an element of storage ``kind`` (round to nearest even)."""
    if kind in _HALF:
        return f"{_HALF[kind][1]}(np.float32({expr}))"
    return f"np.{kind}({expr})"


def source(program: Program, p_kind: str, compute: str, parallel: bool) -> str:
    """The Python source of the kernel for ``program`` and these dtypes.

    The serial kernel walks each tensor of the chunk in turn. The threaded kernel walks
    a list of work items, ``(tensor, start, stop)`` blocks of at most ``BLOCK`` elements,
    with ``prange``: small tensors and slices of large ones are shared out alike, and
    each block is sliced first so its loop starts at 0 and vectorises.
    """
    nb = len(program.buffers)
    bufs = [f"B{k}" for k in range(nb)]
    work = ", WJ, WA, WB" if parallel else ""
    lines = [
        "import numpy as np",
        "import numba",
        "from adaopt.kernels.lowp import f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16",
        "",
        f"@numba.njit(error_model='numpy', cache=True, parallel={parallel})",
        f"def kernel(P, G, {''.join(b + ', ' for b in bufs)}S{work}):",
    ]
    lines += [f"    s{k} = S[{k}]" for k in range(len(program.scalars))]
    if parallel:
        lines += ["    for w in numba.prange(WJ.shape[0]):",
                  "        j, a, z = WJ[w], WA[w], WB[w]",
                  "        p = P[j][a:z]",
                  "        g = G[j][a:z]"]
        lines += [f"        b{k} = B{k}[j][a:z]" for k in range(nb)]
    else:
        lines += ["    for j in range(len(P)):", "        p = P[j]", "        g = G[j]"]
        lines += [f"        b{k} = B{k}[j]" for k in range(nb)]
    lines.append("        for i in range(p.shape[0]):")
    body = [f"p_ = {_load(p_kind, compute, 'p[i]')}", f"g_ = {_load(p_kind, compute, 'g[i]')}"]
    body += [f"{name}_ = b{k}[i]" for k, name in enumerate(program.buffers)]
    body += list(program.body)
    body.append(f"p[i] = {_store(p_kind, program.p_out)}")
    body += [f"b{k}[i] = {out}" for k, out in enumerate(program.buffer_out)]
    lines += [f"            {line}" for line in body]
    return "\n".join(lines) + "\n"


def _compile(src: str):
    """Write ``src`` to the cache folder (once) and import its kernel."""
    digest = hashlib.sha1(src.encode()).hexdigest()[:20]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{digest}.py"
    if not path.exists() or path.read_text() != src:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        os.replace(tmp, path)
    name = f"adaopt_kernel_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel


def kernel_for(program: Program, p_kind: str, compute: str, parallel: bool):
    key = (program.key, p_kind, compute, parallel)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = _compile(source(program, p_kind, compute, parallel))
    return k


# ---------------------------------------------------------------------- running


def _storage(a: np.ndarray) -> np.ndarray:
    """A flat view numba can index: float16/bfloat16 as their uint16 bits."""
    flat = a.reshape(-1)
    return flat.view(np.uint16) if flat.dtype.itemsize == 2 else flat


def _empty(dtype) -> np.ndarray:
    e = _EMPTY.get(dtype)
    if e is None:
        e = _EMPTY[dtype] = np.empty(0, dtype)
    return e


def chunk_bounds(n: int) -> list[int]:
    """How ``n`` tensors are split into kernel calls: ``(start, stop)`` bounds of each chunk."""
    bounds, start = [], 0
    while n - start > CHUNK:
        bounds.append((start, start + CHUNK))
        start += CHUNK
    if n > start:
        bounds.append((start, n))
    return bounds


def _pad(part: list, dtype) -> tuple:
    """``part`` as a tuple of the smallest size in ``CHUNKS`` that holds it."""
    size = next(c for c in CHUNKS if c >= len(part))
    return tuple(part) + (_empty(dtype),) * (size - len(part))


def eligible(p: np.ndarray, compute, state: dict) -> bool:
    """Whether the fused path can step ``p`` and its ``state`` in place: C-contiguous
    arrays, state in the compute dtype, and float32 or float64 arithmetic (numba has
    no float16 arithmetic on the CPU)."""
    return (p.flags.c_contiguous and dtypes.is_supported(p.dtype)
            and dtypes.dtype_name(compute) in ("float32", "float64")
            and all(v.dtype == compute and v.flags.c_contiguous
                    for k, v in state.items() if k != "step"))


class Bucket:
    """Tensors stepped by one kernel call per chunk: same hyperparameters, step count
    and dtypes. Flat views of the parameters and state, and their chunk tuples, are
    made once; each step only wraps the gradients.

    ``index[k]`` is the position of the bucket's k-th tensor in the gradient list
    that :meth:`run` receives.
    """

    def __init__(self, rule, hp: dict, params: list, states: list[dict], index: list[int]):
        self.rule, self.hp, self.states = rule, hp, states
        self.program = self.kernel = None
        self.t = states[0]["step"]
        self.buffers = tuple(rule.buffers(hp))
        self.p_kind = dtypes.dtype_name(params[0].dtype)
        self.compute = dtypes.dtype_name(states[0][self.buffers[0]].dtype) if self.buffers else (
            dtypes.dtype_name(dtypes.compute_dtype(params[0].dtype, hp.get("state_dtype"))))
        flat_p = [_storage(p) for p in params]
        store = flat_p[0].dtype
        self.parallel = sum(p.size for p in params) >= PARALLEL_MIN
        self.index = index
        self.bounds = chunk_bounds(len(params))
        cdt = np.dtype(self.compute)
        # per chunk: the fixed arguments before the gradients (parameters) and after them
        # (state buffers, then a slot for the scalars and the work items)
        self.calls = []
        for a, z in self.bounds:
            p_chunk = _pad(flat_p[a:z], store)
            b_chunks = [_pad([st[b].reshape(-1) for st in states[a:z]], cdt) for b in self.buffers]
            work = _work_items(p_chunk) if self.parallel else ()
            self.calls.append((p_chunk, index[a:z], len(p_chunk), b_chunks, work))
        self.store = store
        self.scalars = None

    def run(self, grads: list, hp: dict | None = None) -> None:
        """One step: parameters and state in place, from ``grads`` (read only).

        ``hp`` gives this step's hyperparameter values (an LR schedule); it must have
        the options the bucket was built with.
        """
        t = self.t + 1
        hp = self.hp if hp is None else hp
        s = self.rule.scalars(t, hp)
        values = None if self.program is None else self.program.replay(hp, s)
        if values is None:  # first step, or the rule took another branch (SGD's first step)
            self.program = trace(self.rule, hp, s)
            values = self.program.scalars
            self.kernel = kernel_for(self.program, self.p_kind, self.compute, self.parallel)
            self.scalars = np.empty(len(values), dtype=self.compute)
        scalars = self.scalars
        scalars[:] = values
        kernel, store = self.kernel, self.store
        for p_chunk, index, size, b_chunks, work in self.calls:
            g = [_storage(grads[i]) for i in index]
            if len(g) < size:
                g += [_empty(store)] * (size - len(g))
            kernel(p_chunk, tuple(g), *b_chunks, scalars, *work)
        self.t = t
        for st in self.states:
            st["step"] = t


def _work_items(chunk: tuple) -> tuple:
    """``(tensor, start, stop)`` blocks covering every element of a chunk's tensors."""
    items = [(j, start, min(start + BLOCK, x.size))
             for j, x in enumerate(chunk) for start in range(0, x.size, BLOCK)]
    return tuple(np.array([item[i] for item in items], dtype=np.int64) for i in range(3))
