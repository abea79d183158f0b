"""The engine between the rules and the frontends: state, eps, and how a step runs.

A frontend (NumPy arrays, torch tensors viewed as arrays) hands the engine
``(group, name, param, state, hyperparameters)`` items; the engine resolves
epsilon for each parameter's compute dtype, creates missing state buffers, sorts
the parameters into fused multi-tensor buckets (:mod:`adaopt.kernels.fused`) or
reference steps (the rule on whole arrays), and runs the step in place. It holds
no parameters and no state of its own.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import chain
from types import ModuleType

import numpy as np

from . import dtypes, quant, rounding, rules

#: "auto": fused kernels when numba is installed, else the reference rule;
#: "fused": fused kernels or an error; "reference": the rule on whole arrays.
BACKENDS = ("auto", "fused", "reference")
#: A new state buffer of a parameter of at least this many bytes starts at the parameter's
#: offset within a memory page (:func:`full_like_page`).
PAGE_MATCH_MIN = 1 << 16
PAGE = 4096


def full_like_page(shape: tuple, fill: float, dtype, p: np.ndarray) -> np.ndarray:
    """``np.full(shape, fill, dtype)`` whose data starts at ``p``'s offset within a 4 KiB page,
    where the dtype's alignment allows (the same element size, a large parameter).

    The fused kernel loads and stores the parameter, the gradient and the state at the same
    index each iteration. When a load's address sits just below a store's in the low 12 bits
    (4K aliasing), the CPU holds the load for the store: NumPy places a large array 16 bytes
    into a page and torch 64. AdamW at 1e6 on float32 arrays from torch (``.numpy()``), in one
    interleaved run: 483 us a step with NumPy-allocated state, 332 us with the state at the
    parameters' offset, 348 us on NumPy's own arrays. The gradient usually comes from the
    parameter's allocator, at its offset too."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    offset = p.ctypes.data % PAGE
    if p.nbytes < PAGE_MATCH_MIN or dtype.itemsize != p.itemsize or offset % dtype.itemsize:
        return np.full(shape, fill, dtype=dtype)
    raw = np.empty(size * dtype.itemsize + PAGE, np.uint8)
    skip = (offset - raw.ctypes.data) % PAGE
    out = raw[skip:skip + size * dtype.itemsize].view(dtype).reshape(shape)
    out[...] = fill
    return out


class Plan:
    """How one step runs: the parameters in order, fused buckets, reference steps.

    ``states`` are the state dicts the plan steps, in parameter order; ``steps()`` reads
    their step counts, which a frontend compares with ``expected_steps`` (what the last
    run wrote) to notice a count edited by hand (``state["step"] = 0``).
    """

    def __init__(self, params, buckets, reference, states):
        self.params, self.buckets, self.reference = params, buckets, reference
        self.shapes = [p.shape for _, p in params]  # what each gradient must match
        self.dtypes = [p.dtype for _, p in params]
        self.arrays = [p for _, p in params]
        self.states = states
        self.expected_steps = self.steps()

    def steps(self) -> list:
        return [st["step"] for st in self.states]


class Engine:
    """Runs one optimizer family's rule for a frontend."""

    def __init__(self, rule: ModuleType, eps_base, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
        if backend == "fused":
            from .kernels.fused import available

            if not available():
                raise ImportError("backend='fused' needs numba: pip install 'adaopt[fast]'")
        self.rule, self.eps_base, self.backend = rule, eps_base, backend

    def __reduce__(self):  # picklable (deepcopy of an optimizer): the rule travels by module name
        return _engine_from, (self.rule.__name__, self.eps_base, self.backend)

    def resolved(self, hp: dict, cdtype, name: str) -> dict:
        """``hp`` with ``eps`` fixed for the state dtype; refuses an eps that rounds to 0 there."""
        if "eps" not in hp:
            return hp
        if hp["eps"] is None:
            return {**hp, "eps": dtypes.default_eps(cdtype, self.eps_base)}
        if dtypes.rounds_to_zero(hp["eps"], cdtype):
            wider = " or state_dtype='float32'" if dtypes.dtype_name(cdtype) == "float16" else ""
            raise ValueError(
                f"eps={hp['eps']!r} rounds to 0 in {dtypes.dtype_name(cdtype)}, the state dtype of "
                f"parameter {name!r}; use eps >= {dtypes.default_eps(cdtype, 0.0):g} "
                f"(or leave eps=None){wider}"
            )
        return hp

    def fresh_state(self, p: np.ndarray, hp: dict, name: str) -> dict:
        _, cdtype = self.prepare(p, hp, name)  # fail now, not at the first step
        st: dict = {"step": 0}
        self.add_missing_buffers(st, p, hp, cdtype)
        return st

    def state_spec(self, p_dtype, shape: tuple, hp: dict, cdtype) -> dict:
        """What a parameter's state holds beside its step count, for both frontends to make:
        ``{key: (starting value, dtype, shape)}``. The rule's buffers in the compute dtype,
        its scalar state (one number, in the dtype it declares) and, for ``kahan`` on a
        16-bit parameter, the compensation in the parameter's dtype."""
        spec = {key: (fill, np.dtype(cdtype), tuple(shape)) for key, fill in self.rule.buffers(hp).items()}
        spec.update({key: (float(start), np.dtype(type(start)), ())
                     for key, start in rules.scalar_state(self.rule, hp).items()})
        if hp.get("kahan") and np.dtype(p_dtype).itemsize == 2:
            spec["kahan_comp"] = (0.0, np.dtype(p_dtype), tuple(shape))
        return spec

    def add_missing_buffers(self, st: dict, p, hp, cdtype) -> None:
        eight_bit = quant.applies(hp, p.size)
        buffers = self.rule.buffers(hp)
        for key, (fill, dtype, shape) in self.state_spec(p.dtype, p.shape, hp, cdtype).items():
            if key not in st and eight_bit and key in buffers:  # 8-bit from the start: no float buffer
                st[key], st[key + quant.SCALE] = quant.full(shape, fill, key)
            elif key not in st:
                st[key] = full_like_page(shape, fill, dtype, p) if shape == p.shape else \
                    np.full(shape, fill, dtype=dtype)
        # 8-bit state (state_dtype="int8", large tensors): quantized here, also when loaded as floats
        quant.conform(st, buffers, eight_bit, cdtype)

    def prepare(self, p: np.ndarray, hp: dict, name: str):
        """(hyperparameters with eps resolved, compute dtype) for one parameter; may raise."""
        cdtype = dtypes.compute_dtype(p.dtype, hp["state_dtype"])
        if _low(p, hp, "stochastic_rounding") and dtypes.dtype_name(p.dtype) != "bfloat16":
            raise ValueError(f"stochastic_rounding is for bfloat16 parameters; {name!r} is "
                             f"{dtypes.dtype_name(p.dtype)}")
        return self.resolved(hp, cdtype, name), cdtype

    def advance(self, p: np.ndarray, g: np.ndarray, st: dict, hp: dict, cdtype, *, name: str = "",
                index: np.ndarray | None = None):
        """The rule applied once: new parameter (param dtype) and new state. Pure.

        ``hp`` and ``cdtype`` come from :meth:`prepare`. ``name`` keys stochastic rounding's
        bits (:mod:`adaopt.rounding`); ``index`` gives the elements' flat positions in
        the parameter when ``p`` is only some of its rows (sparse gradients).
        """
        st = dict(st)
        self.add_missing_buffers(st, p, hp, cdtype)
        t = st["step"] + 1
        s = rules.step_scalars(self.rule, t, hp, st)
        adtype = dtypes.arith_dtype(p.dtype, cdtype)  # a narrower state is only stored narrow
        buffers = quant.load(st, self.rule.buffers(hp), adtype)  # 8-bit ones dequantized
        new_p, new_buffers = self.rule.update(
            p.astype(adtype, copy=False), g.astype(adtype, copy=False), buffers, hp, s
        )
        out = {**st, "step": t}
        quant.store(out, new_buffers, st)  # in st's dtype, or quantized again
        for k in rules.scalar_state(self.rule, hp):
            out[k] = np.array(s[k], dtype=st[k].dtype)
        new_p = rounding.to_param_dtype(np.asarray(new_p), p, out, hp, adtype,
                                        key=rounding.param_key(name), step=t, index=index)
        return new_p, out

    def build_plan(self, items, grad_dtypes=None) -> Plan:
        """Sort ``(group, name, param, state, hp)`` into fused buckets and reference steps.

        Parameters that share a group, a step count and dtypes go through one fused kernel
        call per chunk when the fused backend is on; the rest take the reference rule.
        ``grad_dtypes`` (one per item, None: the parameter's) gives the gradients' dtypes
        where they differ: float32 gradients of 16-bit parameters are read as they are.
        """
        fused = self.fused()
        prepared = [(gi, name, p, st, *self.prepare(p, hp, name)) for gi, name, p, st, hp in items]
        shared = _sharing_memory([(name, p) for _, name, p, *_ in prepared])
        groups: dict = {}
        reference = []
        for i, (gi, name, p, st, hp, cdtype) in enumerate(prepared):
            self.add_missing_buffers(st, p, hp, cdtype)
            scalar_keys = rules.scalar_state(self.rule, hp)
            for key, value in st.items():  # a kernel trusts sizes: refuse state of another shape
                if key != "step" and np.shape(value) != quant.expected_shape(key, p.shape, scalar_keys):
                    raise ValueError(f"state {key!r} of {name!r} has shape {tuple(np.shape(value))}, "
                                     f"the parameter has {p.shape} (was the parameter replaced, or "
                                     "a state_dict of another model loaded?)")
            elementwise = {k: v for k, v in st.items() if k not in scalar_keys}
            if fused is not None and i not in shared and fused.eligible(p, cdtype, elementwise, hp):
                gd = grad_dtypes[i] if grad_dtypes is not None else None
                gd = np.dtype(gd) if gd is not None and fused.wide_grad(p.dtype, gd) else None
                key = (gi, st["step"], p.dtype, cdtype, quant.applies(hp, p.size), gd)  # 8-bit or not
                groups.setdefault(key, (hp, []))[1].append((i, p, st, name))
            else:
                reference.append((i, gi, name, p, st, hp, cdtype))
        buckets = []
        for (gi, _, _, cdtype, _, gd), (hp, m) in groups.items():
            bucket = fused.Bucket(self.rule, hp, [p for _, p, _, _ in m], [st for _, _, st, _ in m],
                                  [i for i, *_ in m], keys=[rounding.param_key(name) for *_, name in m],
                                  g_dtype=gd)
            bucket.group, bucket.name, bucket.cdtype = gi, f"param group {gi}", cdtype
            buckets.append(bucket)
        return Plan([(name, p) for _, name, p, *_ in prepared], buckets, reference,
                    [st for _, _, _, st, *_ in prepared])

    @staticmethod
    def signature(hp: dict) -> tuple:
        """What of ``hp`` shapes a plan: flags, choices, eps, and which numbers are zero.

        A plan stays valid while the signature does; new values (an LR schedule) are
        passed to :meth:`run` without rebuilding it.
        """
        return tuple((k, v if k == "eps" or not isinstance(v, (int, float)) or isinstance(v, bool)
                      else v == 0) for k, v in hp.items())

    def run(self, plan: Plan, grads: list, hps: list | None = None, threads: int | None = None) -> None:
        """One step in place. ``hps`` (one validated dict per group) overrides the values the
        plan was built with; its signature must be the same. ``threads`` caps the kernels'
        threads (None: numba's own count, on adaopt's pool); given, a threaded kernel runs on
        torch's OpenMP threads where it can (:mod:`adaopt.kernels.team`)."""
        # every bucket reads and checks its gradients before any kernel writes: a refused
        # gradient in the last group leaves the first one untouched too
        launches = [bucket.prepare(grads, bucket.hp if hps is None else
                                   self.resolved(hps[bucket.group], bucket.cdtype, bucket.name), threads)
                    for bucket in plan.buckets]
        for launch in launches:
            launch()
        for i, gi, name, p, st, hp, cdtype in plan.reference:
            if hps is not None:
                hp = self.resolved(hps[gi], cdtype, name)
            new_p, new_st = self.advance(p, grads[i], st, hp, cdtype, name=name)
            for k, v in new_st.items():
                if k == "step":
                    st[k] = v
                else:
                    st[k][...] = v
            p[...] = new_p
        plan.expected_steps = plan.steps()

    def fused(self):
        """The fused-kernel module when this optimizer's backend uses it, else None."""
        if self.backend == "reference":
            return None
        from .kernels import fused

        return fused if fused.available() else None


def _engine_from(rule_module: str, eps_base, backend: str) -> Engine:
    import importlib

    return Engine(importlib.import_module(rule_module), eps_base, backend)


def _sharing_memory(named: list) -> set:
    """Positions of parameters whose memory overlaps an earlier one's (``[a, a]``, two views of
    one buffer). A threaded kernel would race on them; they take the reference rule instead,
    after the buckets, one after the other, as torch.optim steps them (with a warning)."""
    clusters: list = []  # [end of the cluster's memory, positions in it], by start address
    for lo, hi, i in sorted((*_byte_bounds(p), i) for i, (_, p) in enumerate(named) if p.size):
        if clusters and lo < clusters[-1][0]:
            clusters[-1][0] = max(clusters[-1][0], hi)
            clusters[-1][1].append(i)
        else:
            clusters.append([hi, [i]])
    later = {i for _, members in clusters for i in sorted(members)[1:]}
    if later:
        import warnings

        names = [named[i][0] for i in sorted(later)]
        warnings.warn(f"parameters {names} share memory with another parameter; they are stepped "
                      "one after the other (as torch.optim does), not by the fused kernel",
                      RuntimeWarning, stacklevel=4)
    return later


def _byte_bounds(a: np.ndarray) -> tuple[int, int]:
    """The first and one-past-the-last byte address of ``a``'s elements."""
    lo = hi = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        if stride > 0:
            hi += (n - 1) * stride
        else:
            lo += (n - 1) * stride
    return lo, hi + a.itemsize


def _low(p, hp: dict, option: str) -> bool:
    """Whether ``option`` (kahan, stochastic_rounding) applies: set, and ``p`` is 16-bit."""
    return bool(hp.get(option)) and p.dtype.itemsize == 2


@dataclass
class CachedPlan:
    """A plan and what it was built for: the validated groups (compared by identity), their
    signatures, and the state as it found it. Both frontends keep one; adaopt.torch adds
    the tensors' memory layout."""

    plan: Plan
    hps: list
    signatures: list
    watch: "StateWatch"

    def fits(self, engine: Engine, state, hps: list) -> bool:
        """Whether the plan still serves this step: the same state objects and the same options;
        new values of the same options (an LR scheduler) are taken in without a rebuild."""
        if not self.watch.unchanged(state):
            return False
        if len(hps) == len(self.hps) and all(map(operator.is_, hps, self.hps)):
            return True
        if [engine.signature(h) for h in hps] == self.signatures:
            self.hps = hps
            return True
        return False


class StateWatch:
    """Whether an optimizer's ``state`` was replaced or edited since a plan was built.

    torch.optim reads its state every step, so code that resets it (``opt.state =
    defaultdict(dict)``, ``opt.state.clear()``, ``opt.state[p] = {}``,
    ``opt.state[p]["exp_avg"] = zeros``) works there; a plan holds addresses of the old
    arrays, so it must notice. The per-parameter dicts and their values are compared by
    identity (with ``step_counts``, not the "step" entries: the NumPy frontend's integer
    step counts, which the plan itself rewrites); in-place edits
    (``state["exp_avg"][...] = 0``) need no new plan.
    """

    def __init__(self, state, step_counts: bool = False):
        self.state, self.step_counts = state, step_counts
        self.dicts = list(state.values())
        self.values = self._values(self.dicts)

    def _values(self, dicts) -> list:
        if self.step_counts:
            return [v for d in dicts for k, v in d.items() if k != "step"]
        return list(chain.from_iterable(map(dict.values, dicts)))

    def unchanged(self, state) -> bool:
        if state is not self.state:
            return False
        dicts = list(state.values())
        if len(dicts) != len(self.dicts) or not all(map(operator.is_, dicts, self.dicts)):
            return False
        values = self._values(dicts)
        return len(values) == len(self.values) and all(map(operator.is_, values, self.values))
