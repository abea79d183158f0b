"""Fused multi-tensor kernels, generated from the rules and compiled with numba.

For one bucket of tensors that share hyperparameters, step count and dtypes, the
rule is recorded (:mod:`adaopt.kernels.codegen`) as straight-line code, which is
wrapped in a loop over the bucket's work items and their elements::

    def kernel(A, S, GS, WJ, WA, WB):       # address table, scalars, work items
        s0 = S[0]; s1 = S[1]; ...
        for w in range(len(GS) - 1):        # claimed one at a time in the threaded kernel
            for it in range(GS[w], GS[w + 1]):
                j = WJ[it]; a = WA[it]; n = WB[it] - a
                p = carray(address(A[j, 0] + 4 * a), n, np.float32)   # g, exp_avg, ... alike
                for i in range(n):
                    p_ = p[i]; g_ = g[i]; exp_avg_ = b0[i]; exp_avg_sq_ = b1[i]
                    <the rule, one line per operation>
                    p[i] = ...; b0[i] = ...; b1[i] = ...

Every element is read once and written once: no temporaries, one pass over memory.
Row ``j`` of the address table ``A`` holds tensor j's parameter, gradient and state
buffers (:mod:`.memory`); only the gradient column changes from step to step. A work
item ``(j, a, z)`` is elements ``a:z`` of tensor j, and ``GS`` groups the items: the
serial kernel has one item per tensor; the threaded one cuts the bucket, as if its
tensors were laid end to end, into groups of ``BLOCK`` elements, which its threads
claim one at a time (:mod:`.threads`), so the work is shared out whatever the tensor
sizes and however late a thread starts. So one call steps a whole
bucket, 1 tensor or 1,000, and one compiled kernel serves every model.

How the numbers are stored and rounded is the bucket's :class:`~.source.Layout`: 16-bit
parameters and gradients as uint16 bits, state buffers in the state dtype (16-bit moments
of float32 parameters are widened on load and rounded on store), and for 16-bit
parameters Kahan summation (the compensation is one more column of the table) or
stochastic rounding (the column holds the hash's seed for the step), each
equal to :mod:`adaopt.rounding` bit for bit (:mod:`.source`).

The generated source is written to a cache folder (``$ADAOPT_CACHE_DIR``, default
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
from numba.core.errors import TypingError

from .. import dtypes, quant, rounding, rules
from .._io import atomic_write
from . import memory
from . import team
from . import threads as pool
from .codegen import Program, record
from .source import Layout, source

#: Tuple sizes :func:`.memory.gather` is compiled for, to read gradient addresses: 16 at
#: a time, and the rest in the smallest size that holds it.
CHUNKS = (1, 4, 16)
CHUNK = CHUNKS[-1]
#: Buckets of at least this many elements run the threaded kernel, smaller ones the serial
#: one. The kernel threads sleep between steps, and waking one costs tens of microseconds
#: (more on a busy machine), which a step of fewer elements does not repay. On 2 cores,
#: AdamW's threaded fp32 step took 1.05x the serial one's time at 520K elements, 0.78x at 1M.
PARALLEL_MIN = 1 << 19
#: The same for 8-bit state, whose kernel computes about three times as long per element
#: (decode, step, encode), so threads repay their wake-up on smaller buckets: 0.88x the
#: serial time at 260K elements, 1.56x at 65K.
PARALLEL_MIN_INT8 = 1 << 18
#: Elements per work group of the threaded kernel.
BLOCK = 1 << 15
#: Work groups per thread, at least: a bucket of G groups runs on at most 1 + G // 4 threads.
GROUPS_PER_THREAD = 4

_KERNELS: dict = {}
#: threaded kernel -> the address of its C entry point (:func:`.source._entry`)
ENTRIES: dict = {}
_INT = {int}
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


# ---------------------------------------------------------------------- compiling


def _compile(src: str):
    """Write ``src`` to the cache folder (once) and import its kernel."""
    digest = hashlib.sha1(src.encode()).hexdigest()[:20]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{digest}.py"
    if not path.exists() or path.read_text() != src:
        atomic_write(path, src, fsync=False)  # another process may be reading it: never half a file
    name = f"adaopt_kernel_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if hasattr(module, "entry"):  # the threaded kernel's C entry point (.team)
        ENTRIES[module.kernel] = module.entry.address
    return module.kernel


def kernel_for(program: Program, layout: Layout, parallel: bool):
    key = (program.key, layout, parallel)
    k = _KERNELS.get(key)
    if k is None:
        k = _KERNELS[key] = _compile(source(program, layout, parallel))
    return k


# ---------------------------------------------------------------------- running


def _storage(a: np.ndarray) -> np.ndarray:
    """A flat C-contiguous array numba can index (a copy only if ``a`` is not
    contiguous): float16/bfloat16 as their uint16 bits."""
    flat = a.ravel()
    return flat.view(np.uint16) if flat.dtype.itemsize == 2 else flat


def _empty(dtype) -> np.ndarray:
    e = _EMPTY.get(dtype)
    if e is None:
        e = _EMPTY[dtype] = np.empty(0, dtype)
    return e


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """How ``n`` tensors are split into tuples: ``(start, stop)`` of each chunk."""
    bounds, start = [], 0
    while n - start > CHUNK:
        bounds.append((start, start + CHUNK))
        start += CHUNK
    if n > start:
        bounds.append((start, n))
    return bounds


def _padded(n: int) -> int:
    """The smallest size in ``CHUNKS`` that holds ``n`` (n <= CHUNK)."""
    return next(c for c in CHUNKS if c >= n)


def eligible(p: np.ndarray, cdtype, state: dict, hp: dict | None = None) -> bool:
    """Whether the fused path can step ``p`` and its ``state`` in place: C-contiguous
    arrays in the machine's byte order (a big-endian array from another machine's file
    takes the reference rule), state buffers in the state dtype ``cdtype`` (8-bit codes
    and float32 scales under ``state_dtype="int8"``) and ``kahan_comp`` in the parameter's
    dtype, and 16-bit parameters or state only beside float32 arithmetic
    (:func:`adaopt.dtypes.arith_dtype`): a float64 result rounded to float32 and then to
    16 bits could differ from one rounded once."""
    if not (p.flags.c_contiguous and p.dtype.isnative and dtypes.is_supported(p.dtype)):
        return False
    compute = dtypes.dtype_name(dtypes.arith_dtype(p.dtype, cdtype))
    if compute != "float32" and 2 in (np.dtype(cdtype).itemsize, p.dtype.itemsize):
        return False  # 16-bit numbers are converted from and to float32 only
    hp = hp or {}
    kahan = layout_of(p.dtype, cdtype, hp).rounding == "kahan"
    q = quant.applies(hp, p.size)

    def want(k):
        if kahan and k == "kahan_comp":
            return p.dtype
        if q:
            return np.float32 if k.endswith(quant.SCALE) else quant.code_dtype(k)
        return cdtype

    return all(v.dtype == want(k) and v.dtype.isnative and v.flags.c_contiguous
               for k, v in state.items() if k != "step")


def layout_of(p_dtype, cdtype, hp: dict, buffers: tuple = (), g_dtype=None) -> Layout:
    """How a bucket of ``p_dtype`` parameters with ``cdtype`` state is stored and rounded;
    ``buffers`` names the rule's buffers when the state is 8-bit; ``g_dtype`` the gradients'
    dtype when it is float32 and the parameters 16-bit (read as they are, not rounded first)."""
    p_kind = dtypes.dtype_name(p_dtype)
    rounding = "nearest"
    if np.dtype(p_dtype).itemsize == 2:
        rounding = ("kahan" if hp.get("kahan") else
                    "stochastic" if hp.get("stochastic_rounding") and p_kind == "bfloat16" else "nearest")
    q = tuple(quant.signed(k) for k in buffers)
    s_kind = "float32" if q else dtypes.dtype_name(cdtype)
    g_kind = dtypes.dtype_name(g_dtype) if wide_grad(p_dtype, g_dtype) else ""
    return Layout(p_kind, s_kind, dtypes.dtype_name(dtypes.arith_dtype(p_dtype, cdtype)), rounding, q, g_kind)


def wide_grad(p_dtype, g_dtype) -> bool:
    """Whether the fused kernels read ``g_dtype`` gradients of ``p_dtype`` parameters as they are:
    float32 gradients of 16-bit parameters (torch's ``param.grad_dtype``). Any other dtype is
    converted to the parameter's first."""
    return g_dtype is not None and np.dtype(p_dtype).itemsize == 2 and np.dtype(g_dtype) == np.float32


def work_items(sizes: list[int], parallel: bool, align: int = 1) -> tuple[np.ndarray, ...]:
    """``(GS, WJ, WA, WB)``: work items ``(tensor WJ, elements WA:WB)`` and the groups
    ``GS[w]:GS[w + 1]`` of items one loop iteration takes.

    Serial: one item and one group per non-empty tensor. Threaded: the tensors, laid end
    to end, are cut into groups of about ``BLOCK`` elements (the last one shorter), an item
    being the part of one tensor inside one group; an item that does not reach its
    tensor's end stops at a multiple of ``align`` (8-bit state's blocks), so a group may
    end up to ``align - 1`` elements short.
    """
    items, starts, filled = [], [0], 0
    for j, n in enumerate(sizes):
        a = 0
        while a < n:
            take = n - a if not parallel else min(n - a, BLOCK - filled)
            if take < n - a:
                take -= take % align
            if take:
                items.append((j, a, a + take))
                a += take
                filled += take
            if not parallel or filled >= BLOCK - align + 1 or not take:
                starts.append(len(items))
                filled = 0
    if filled:
        starts.append(len(items))
    columns = [np.array([item[k] for item in items], dtype=np.int64) for k in range(3)]
    return (np.array(starts, dtype=np.int64), *columns)


class Bucket:
    """Tensors stepped by one kernel call: same hyperparameters, step count and dtypes.

    The address table (parameters, state buffers) and the work items are made once and
    the arrays they point into are held here; each step only writes the gradients'
    addresses. ``index[k]`` is the position of the bucket's k-th tensor in the
    gradient list that :meth:`run` receives.
    """

    def __init__(self, rule, hp: dict, params: list, states: list[dict], index: list[int],
                 keys: list[int] | None = None, g_dtype=None):
        self.rule, self.hp, self.states = rule, hp, states
        self.program = self.scalars = None
        self.kernels: dict = {}  # parallel (bool) -> compiled kernel for self.program
        self.t = states[0]["step"]
        self.buffers = tuple(rule.buffers(hp))
        self.carried = tuple(rules.scalar_state(rule, hp))
        q = bool(self.buffers) and quant.applies(hp, params[0].size)  # the bucket's are all 8-bit or none
        cdtype = (dtypes.compute_dtype(params[0].dtype, hp.get("state_dtype")) if q or not self.buffers
                  else states[0][self.buffers[0]].dtype)
        self.layout = layout_of(params[0].dtype, cdtype, hp, self.buffers if q else (), g_dtype)
        self.compute = self.layout.compute
        self.index = index
        sizes = [p.size for p in params]
        self.parallel = sum(sizes) >= (PARALLEL_MIN_INT8 if q else PARALLEL_MIN)
        self.work = work_items(sizes, self.parallel, quant.BLOCK if q else 1)
        # the arrays the table points into, held for as long as the bucket lives
        comp = ("kahan_comp",) if self.layout.rounding == "kahan" else ()
        scales = tuple(b + quant.SCALE for b in self.buffers) if q else ()
        self.arrays = [[_storage(p)] + [_storage(st[b]) for b in self.buffers + comp + scales]
                       for p, st in zip(params, states)]
        self.table = np.zeros((len(params), 2 + len(self.buffers) + self.layout.columns), dtype=np.int64)
        for j, (p, *bufs) in enumerate(self.arrays):
            self.table[j, 0] = p.ctypes.data
            self.table[j, 2:2 + len(self.buffers) + len(comp)] = [b.ctypes.data for b in bufs[:len(bufs) - len(scales)]]
            if scales:  # after the SR base's column when there is one
                self.table[j, 2 + len(self.buffers) + self.layout.extra:] = [b.ctypes.data for b in bufs[-len(scales):]]
        # stochastic rounding: the column after the buffers holds each tensor's seed for the step (rounding.py)
        self.sr_keys = (np.array(keys if keys is not None else [0] * len(params), dtype=np.uint64)
                        if self.layout.rounding == "stochastic" else None)
        self.p_dtype = params[0].dtype
        self.g_dtype = np.dtype(g_dtype) if self.layout.g_kind else self.p_dtype
        self.store = _storage(np.empty(0, self.g_dtype)).dtype  # how the kernel indexes the gradients
        self.mixed_flags = False  # set once gradients came read-only and writable together
        self.sizes = sizes
        # gradient addresses are read in tuples of a size from CHUNKS: (start, stop, padding)
        self.gathers = [(a, z, (_empty(self.store),) * (_padded(z - a) - (z - a)))
                        for a, z in chunk_bounds(len(params))]

    def run(self, grads: list, hp: dict | None = None) -> None:
        """One step: parameters and state in place, from ``grads`` (read only).

        ``grads[i]`` for i in ``index`` is an array of the parameter's shape and dtype, or
        the address (an int) of such an array's C-contiguous data, which the caller keeps
        alive. ``hp`` gives this step's hyperparameter values (an LR schedule); it must
        have the options the bucket was built with.
        """
        self.prepare(grads, hp)()

    def prepare(self, grads: list, hp: dict | None = None, threads: int | None = None):
        """Everything :meth:`run` does before writing: the step's scalars and the gradients'
        addresses, checked. Returns the call that writes (the kernel, then the step count);
        nothing has changed if this raises. ``threads`` caps the threads the kernel may use
        (adaopt.torch passes ``torch.get_num_threads()``); 1 runs the serial kernel."""
        t = self.t + 1
        hp = self.hp if hp is None else hp
        s = rules.step_scalars(self.rule, t, hp, self.states[0])
        program = self.program
        values = None if program is None else program.replay(hp, s)
        if values is None:  # first step, or the rule took another branch (SGD's first step): record it again
            program = record(self.rule, hp, s)
            values = program.scalars
        held = self._grad_addresses([grads[i] for i in self.index])  # alive until launch returns

        def launch():
            if program is not self.program:
                self.program, self.kernels = program, {}
                self.scalars = np.empty(len(values), dtype=self.compute)
            self.scalars[:] = values
            if self.sr_keys is not None:
                self.table[:, 2 + len(self.buffers)] = rounding.seeds(self.sr_keys, t)
            self._call(threads)
            self.t = t
            for st in self.states:
                st["step"] = t
                for key in self.carried:  # scalar state: 0-d arrays (or views of 0-d tensors)
                    st[key][...] = s[key]
            return held

        return launch

    def _kernel(self, parallel: bool):
        k = self.kernels.get(parallel)
        if k is None:
            k = self.kernels[parallel] = kernel_for(self.program, self.layout, parallel)
        return k

    def _call(self, threads: int | None) -> None:
        """The threaded kernel when it pays and may run (a big bucket, more than one thread
        allowed, no other Python thread inside a threaded kernel: a second caller takes the
        serial kernel rather than wait); else the serial one. Both give the same bits. Given
        ``threads`` (adaopt.torch) it runs on torch's OpenMP threads where it can
        (:mod:`.team`), else on adaopt's pool (:mod:`.threads`)."""
        n = pool.max_threads() if threads is None else min(int(threads), pool.max_threads())
        n = min(n, 1 + (len(self.work[0]) - 1) // GROUPS_PER_THREAD)  # the groups, shared out
        if self.parallel and n > 1:
            args = (self.table, self.scalars, *self.work)
            kernel = self._kernel(True)
            entry = ENTRIES.get(kernel)  # adaopt.torch gives threads: torch's OpenMP threads first
            if threads is not None and entry is not None and team.run(entry, args, n):
                return
            if pool.POOL.run(kernel, args, n):
                return
        self._kernel(False)(self.table, self.scalars, *self.work)

    def _grad_addresses(self, grads: list) -> list:
        """Write the gradients' addresses into the table; returns the arrays to keep alive."""
        kinds = set(map(type, grads))
        if kinds == _INT:
            self.table[:, 1] = grads  # addresses from the caller (adaopt.torch)
            return grads
        if int in kinds:  # a mix: rare, so address by address
            flat = [g if type(g) is int else self._flat(g, k) for k, g in enumerate(grads)]
            self.table[:, 1] = [g if type(g) is int else g.ctypes.data for g in flat]
            return flat
        flat = [g.ravel() for g in grads]
        # the kernel trusts the table: a short gradient would be read past its end
        if [g.size for g in flat] != self.sizes or {g.dtype for g in flat} != {self.g_dtype}:
            flat = [self._flat(g, k) for k, g in enumerate(grads)]  # raises, naming the culprit
        if self.store != self.g_dtype:
            flat = [g.view(self.store) for g in flat]
        table = self.table
        if not self.mixed_flags:
            try:
                for a, z, pad in self.gathers:
                    memory.gather(tuple(flat[a:z]) + pad, z - a, table, a, 1)
                return flat
            except TypingError:  # read-only and writable gradients in one tuple: numba types them apart
                self.mixed_flags = True
        table[:, 1] = [g.ctypes.data for g in flat]
        return flat

    def _flat(self, g: np.ndarray, k: int) -> np.ndarray:
        if g.size != self.sizes[k] or g.dtype != self.g_dtype:
            raise ValueError(f"gradient {k} of the bucket has {g.size} elements of {g.dtype}; "
                             f"the kernel needs {self.sizes[k]} of {self.g_dtype}")
        return _storage(g)
