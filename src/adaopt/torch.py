"""Drop-in ``torch.optim`` optimizers that run adaopt's rules.

``adaopt.torch.AdamW`` is a :class:`torch.optim.Optimizer` with torch's constructor
arguments and defaults, its ``state_dict`` layout (torch's own optimizers read it,
and it reads theirs), param groups, closures, hooks and every LR scheduler. The
update is adaopt's: on CPU the tensors are handed to the engine as zero-copy NumPy
views, where the fused multi-tensor kernel (or the reference rule) updates them in
place. Nothing here holds optimizer math.

What torch does not give:

* ``conventions=``, ``eps_in_sqrt=``, ``bias_correction=`` as in the NumPy frontend;
* ``state_dtype=``: bfloat16/float16 parameters keep float32 state by default;
* ``kahan=True`` (compensated summation: the rounding error of each bf16/fp16 update
  is kept in ``state["kahan_comp"]`` and added back) or ``stochastic_rounding=True``
  (bfloat16), for every optimizer, AdaGrad and RMSprop included;
* ``on_nonfinite="skip"`` (a step with a NaN/inf gradient changes nothing and is
  counted in ``skipped_steps``) or ``"raise"`` (names the parameter);
* ``load_state_dict`` keeps the saved state's dtypes (torch casts them to the
  parameter's dtype), matches parameters by name when both sides have names (torch
  matches by position), and never aliases the source's tensors.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
from types import ModuleType
from collections import defaultdict
from dataclasses import dataclass
from copy import deepcopy
from itertools import chain

import numpy as np
import torch

from . import dtypes, hyper, registry, rules
from .engine import Engine, StateWatch


_NONFINITE = (None, "skip", "raise")
_TORCH_KEYS = registry.TORCH_FLAGS  # group keys that do not change adaopt's math: kept for interchange


def _numpy_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy array sharing ``t``'s memory (bfloat16 via ml_dtypes)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(dtypes.as_dtype("bfloat16"))
    return t.numpy()


def _grad_view(g: torch.Tensor) -> np.ndarray:
    """A gradient as a NumPy view; gradients rarely require grad, so skip the detach."""
    if g.requires_grad or g.dtype == torch.bfloat16:
        return _numpy_view(g)
    return g.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


_TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32,
                "float16": torch.float16, "bfloat16": torch.bfloat16}


class Optimizer(torch.optim.Optimizer):
    """Base class of adaopt's torch optimizers: plumbing only, no math.

    Each class is made from its :class:`adaopt.registry.Family` (``entry``): torch.optim's
    positional and keyword arguments and defaults, adaopt's extras keyword-only.
    """

    entry: registry.Family
    family: str  # the entry's key ("adamw")
    rule: ModuleType  # the entry's rule module

    def __init__(self, params, *args, conventions="torch", state_dtype=None, on_nonfinite=None,
                 kahan=False, stochastic_rounding=False, backend="auto", **given):
        given = self.entry.bind(type(self).__name__, args, given, torch=True)
        base = self.entry.defaults_for(conventions)
        torch_only = {k: given.pop(k) for k in registry.TORCH_FLAGS if k in given}
        hyper.check_choice("on_nonfinite", on_nonfinite, _NONFINITE)
        _refuse_torch_only(torch_only, "")
        defaults = {**base, **{k: v for k, v in given.items() if v is not None}}
        defaults.update(state_dtype=state_dtype, kahan=kahan, stochastic_rounding=stochastic_rounding)
        if "eps" in base and given.get("eps") is None:
            defaults["eps"] = None
        self.entry.validate(defaults)
        if defaults.get("eps", 0) is None:
            # concrete, so torch.optim can read our state_dict: the preset's value unless that
            # underflows the state dtype (float16 state: 1e-4)
            defaults["eps"] = dtypes.default_eps(state_dtype or "float32", base["eps"])
        self.conventions = conventions
        self.on_nonfinite = on_nonfinite
        self.skipped_steps = 0
        # "tensor": the rule runs on torch tensors, one parameter at a time (any device; CUDA
        # tensors always take it). The other backends hand CPU tensors to the engine as arrays.
        hyper.check_choice("backend", backend, ("auto", "fused", "reference", "tensor"))
        self._tensor_path = backend == "tensor"
        self._engine = Engine(self.rule, base.get("eps"), "reference" if self._tensor_path else backend)
        self._hp_keys = tuple(defaults)
        self._plan = None
        super().__init__(params, defaults)

    _EXTRA = ("conventions", "on_nonfinite", "skipped_steps", "_engine", "_hp_keys", "_tensor_path")

    def __getstate__(self) -> dict:
        """torch keeps defaults, state and groups; adaopt's settings travel too (deepcopy, pickle)."""
        return {**super().__getstate__(), **{k: getattr(self, k) for k in self._EXTRA}}

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict) -> None:
        """torch's add_param_group, with adaopt's validation first (a bad group changes nothing)."""
        where = f"param group {len(self.param_groups)}"
        _refuse_torch_only(param_group, f" ({where})")
        trial = {**self.defaults, **{k: v for k, v in param_group.items()
                                     if k not in ("params", "param_names") and k not in _TORCH_KEYS}}
        unknown = set(trial) - set(self.defaults)
        if unknown:
            raise ValueError(f"{where} sets unknown hyperparameter(s) {sorted(unknown)}")
        self.entry.validate(trial, where)
        params = param_group["params"]
        params = [params] if torch.is_tensor(params) else list(params)
        if trial["stochastic_rounding"] and any(torch.is_tensor(p) and p.dtype == torch.float16 for p in params):
            raise ValueError(f"stochastic_rounding is for bfloat16 parameters; {where} holds float16 ones "
                             "(use kahan=True for float16)")
        super().add_param_group({**param_group, "params": params})
        self._plan = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for key in self._EXTRA:
            if key in state:
                setattr(self, key, state[key])
        for group in self.param_groups:  # a torch.optim state_dict lacks adaopt's keys
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        self._plan = None

    def _group_hp(self, gi: int, group: dict) -> dict:
        return hyper.validate_cached({k: group[k] for k in self._hp_keys}, f"param group {gi}", self.entry.validate)

    def _param_name(self, gi: int, i: int) -> str:
        group = self.param_groups[gi]
        names = group.get("param_names")
        return names[i] if names else f"param_groups[{gi}]['params'][{i}]"

    # ------------------------------------------------------------------ state

    def _init_state(self, p: torch.Tensor, state: dict, hp: dict, name: str) -> None:
        """torch-layout state for ``p``: a float32 ``step`` tensor and the rule's buffers."""
        cdtype = dtypes.compute_dtype(dtypes.dtype_name(_numpy_dtype(p.dtype)), hp["state_dtype"])
        self._engine.resolved(hp, cdtype, name)
        if "step" not in state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
        for key, fill in self.rule.buffers(hp).items():
            if state.get(key) is None:
                state[key] = torch.full_like(p, fill, dtype=_TORCH_DTYPE[dtypes.dtype_name(cdtype)],
                                             memory_format=torch.preserve_format)
        if hp["kahan"] and p.element_size() == 2 and "kahan_comp" not in state:
            state["kahan_comp"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        for key, start in rules.scalar_state(self.rule, hp).items():  # 0-d, as torch keeps mu_product
            if state.get(key) is None:
                state[key] = torch.tensor(float(start), dtype=_TORCH_DTYPE[np.dtype(type(start)).name])

    def _views(self, p, state) -> dict:
        st = {"step": int(state["step"].item()) if torch.is_tensor(state["step"]) else int(state["step"])}
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value):
                st[key] = _numpy_view(value)
        return st

    # ------------------------------------------------------------------ stepping

    def _patch_step_function(self) -> None:
        """Wrap ``step`` as torch does (step hooks, a profiler label), minus the label's cost
        when no profiler is running: ``record_function`` costs about 10 us a step."""
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", None):
            cls.step = _hooked(cls.step)
            cls.step.hooked = True

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries, others = [], False
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                entries.append((gi, i, p))
                others = others or g.is_sparse or self._tensor_path or not p.is_cpu
        if not entries:
            return loss
        if others or self.on_nonfinite is not None:
            with torch.no_grad():
                self._step_general(entries)
        else:
            self._step_arrays(entries)  # NumPy views only: no autograd to switch off
        return loss

    def _step_arrays(self, entries) -> None:
        """Dense CPU gradients: one engine call over zero-copy views."""
        plan, c, hps = self._plan_for(entries)
        grads = [p.grad for _, _, p in entries]
        # A fused kernel takes a gradient by its address when its memory holds exactly the
        # values it stands for: the parameter's shape (a kernel trusts sizes), contiguous, the
        # parameter's dtype (torch >= 2.9 allows another one: param.grad_dtype), no lazy
        # negation. Anything else becomes a NumPy array of them, or is refused.
        if (c.all_fused and list(map(_size, grads)) == c.shapes and list(map(_dtype, grads)) == c.dtypes
                and all(map(_contiguous, grads)) and not any(map(_is_neg, grads))):
            grads = list(map(_data_ptr, grads))
        else:
            grads = [self._grad_input(g, k, c, entries) for k, g in enumerate(grads)]
        self._engine.run(plan, grads, hps)
        c.steps += 1.0  # a NumPy view of the counter every parameter's state["step"] is a view of
        c.expected += 1.0

    def _grad_input(self, g: torch.Tensor, k: int, c, entries):
        """Gradient ``k`` as the engine takes it (an address, or a NumPy array of the
        parameter's dtype); refused, naming the parameter, if its shape or kind is wrong."""
        p = c.params[k]
        if g.shape != c.shapes[k] or not g.dtype.is_floating_point:
            gi, i, _ = entries[k]
            what = (f"shape {tuple(g.shape)}, the parameter {tuple(c.shapes[k])}" if g.shape != c.shapes[k]
                    else f"dtype {g.dtype}; a {p.dtype} parameter takes floating-point gradients")
            raise (ValueError if g.shape != c.shapes[k] else TypeError)(
                f"the gradient of {self._param_name(gi, i)} has {what}; nothing was changed")
        if c.fused[k] is g.dtype and g.is_contiguous() and not g.is_neg():
            return g.data_ptr()
        return _grad_view(g.resolve_neg().to(p.dtype))

    def _step_general(self, all_entries) -> None:
        entries, sparse, tensors = [], [], []
        for gi, i, p in all_entries:
            if p.grad.is_sparse:
                sparse.append((gi, i, p))
            elif self._tensor_path or not p.is_cpu:
                tensors.append((gi, i, p))
            else:
                entries.append((gi, i, p))
        if self.on_nonfinite is not None and not self._grads_finite(entries + sparse + tensors):
            return
        if sparse:
            self._check_sparse(sparse)
        prepared = [self._tensor_prepare(gi, i, p) for gi, i, p in tensors]  # may refuse: nothing changed yet
        if entries:
            self._step_arrays(entries)
        for gi, i, p in sparse:
            self._sparse_step(gi, i, p)
        for p, hp, compute in prepared:
            self._tensor_step(p, hp, compute)

    def _tensor_prepare(self, gi: int, i: int, p: torch.Tensor):
        hp, name = self._group_hp(gi, self.param_groups[gi]), self._param_name(gi, i)
        hp, cdtype = self._engine.prepare(np.empty(0, dtype=dtypes.as_dtype(_numpy_dtype(p.dtype))), hp, name)
        if p.element_size() == 2 and (hp["kahan"] or hp["stochastic_rounding"]):
            raise NotImplementedError(f"{name}: kahan and stochastic_rounding need the CPU array path "
                                      "(backend 'auto', 'fused' or 'reference') so far")
        return p, hp, _TORCH_DTYPE[dtypes.dtype_name(cdtype)]

    def _tensor_step(self, p: torch.Tensor, hp: dict, compute: torch.dtype) -> None:
        """The rule on torch tensors: the same function, tensors in place of arrays."""
        state = self.state[p]
        self._init_state(p, state, hp, "")
        s = rules.step_scalars(self.rule, int(state["step"]) + 1, hp, state)
        buffers = {k: state[k] for k in self.rule.buffers(hp)}
        new_p, new_buffers = self.rule.update(p.detach().to(compute), p.grad.to(compute), buffers, hp, s)
        p.detach().copy_(new_p)
        for k, v in new_buffers.items():
            state[k].copy_(v)
        for k in rules.scalar_state(self.rule, hp):
            state[k].fill_(float(s[k]))
        state["step"] += 1

    def _check_sparse(self, sparse) -> None:
        """Sparse gradients (``nn.Embedding(sparse=True)``): AdaGrad, and SGD without momentum."""
        for gi, i, p in sparse:
            group, name = self.param_groups[gi], self._param_name(gi, i)
            if self.entry.sparse is None or not self.entry.sparse(group):
                raise NotImplementedError(f"{name} has a sparse gradient; {type(self).__name__} with these "
                                          "options has no sparse step (AdaGrad and momentum-free SGD have)")
            if group["weight_decay"] != 0:
                raise ValueError(f"{name} has a sparse gradient: weight_decay must be 0 (it would "
                                 "touch every row)")
            if p.grad.sparse_dim() != 1:
                raise NotImplementedError(f"{name}: sparse gradients are supported over the first "
                                          "dimension only (as nn.Embedding makes them)")

    def _sparse_step(self, gi: int, i: int, p: torch.Tensor) -> None:
        """The rule on the touched rows only: untouched rows and their state do not change."""
        hp, name = self._group_hp(gi, self.param_groups[gi]), self._param_name(gi, i)
        state = self.state[p]
        self._init_state(p, state, hp, name)
        grad = p.grad.coalesce()
        rows = grad.indices()[0]
        hp, cdtype = self._engine.prepare(_numpy_view(p), hp, name)
        st = {"step": int(state["step"].item())}
        st.update({k: _numpy_view(v[rows]) for k, v in state.items() if k != "step" and torch.is_tensor(v)})
        width = p[0].numel() if p.dim() else 1
        index = (rows.numpy().astype(np.uint64)[:, None] * width + np.arange(width, dtype=np.uint64)).reshape(
            (len(rows), *p.shape[1:]))
        new_p, new_st = self._engine.advance(_numpy_view(p[rows]), _numpy_view(grad.values()), st, hp, cdtype,
                                             name=name, index=index)
        p.detach()[rows] = _from_numpy(new_p, p.dtype)
        for k, v in new_st.items():
            if k != "step":
                state[k][rows] = _from_numpy(v, state[k].dtype)
        state["step"] += 1

    def _grads_finite(self, entries) -> bool:
        # g * 0 is 0 where g is finite and NaN where it is not; a norm of g itself could
        # overflow to inf for large finite gradients (loss-scaled float16).
        grads = [p.grad._values() if p.grad.is_sparse else p.grad for _, _, p in entries]
        norms = torch._foreach_norm(torch._foreach_mul(grads, 0.0))
        bad = [k for k, n in enumerate(norms) if not torch.isfinite(n)]
        if not bad:
            return True
        gi, i, _ = entries[bad[0]]
        if self.on_nonfinite == "raise":
            raise FloatingPointError(f"non-finite gradient for {self._param_name(gi, i)}; nothing was changed")
        self.skipped_steps += 1
        return False

    def _plan_for(self, entries):
        """(plan, the cached plan's record, validated hps per group).

        The plan is cached while the same parameters with the same memory layout (``param.data
        = ...``, ``set_``, ``resize_`` change it), the same state tensors with the same layout
        (:class:`~adaopt.engine.StateWatch` and :func:`_extent`), the same step counts and the
        same options take part; new values (an LR scheduler) do not rebuild it. Each
        parameter's ``state["step"]`` is a 0-d view into one counter, so one in-place add
        advances them all, and a count set by hand (``state["step"].fill_(0)``) is seen.
        """
        hps = [self._group_hp(gi, g) for gi, g in enumerate(self.param_groups)]
        params = [p for _, _, p in entries]
        c = self._plan
        if (c is not None and len(c.params) == len(params) and all(map(operator.is_, c.params, params))
                and _layout(params) == c.layout and c.state.unchanged(self.state)
                and _extent(c.buffers) == c.buffer_extent and np.array_equal(c.steps, c.expected)):
            if len(hps) == len(c.hps) and all(map(operator.is_, hps, c.hps)):
                return c.plan, c, hps  # the very same validated groups
            if [self._engine.signature(h) for h in hps] == c.signatures:
                c.hps = hps  # new values (a scheduler), the same options
                return c.plan, c, hps
        items, states = [], []
        for gi, i, p in entries:
            state = self.state[p]
            self._init_state(p, state, hps[gi], self._param_name(gi, i))
            items.append((gi, self._param_name(gi, i), _numpy_view(p), self._views(p, state), hps[gi]))
            states.append(state)
        steps = torch.tensor([float(st["step"]) for st in states], dtype=torch.float32)
        for k, state in enumerate(states):
            state["step"] = steps[k]
        plan = self._engine.build_plan(items)
        in_bucket = {i for bucket in plan.buckets for i in bucket.index}
        buffers = [v for st in states for k, v in st.items() if k != "step" and torch.is_tensor(v)]
        self._plan = c = _CachedPlan(
            params=params, layout=_layout(params), shapes=[p.shape for p in params],
            signatures=[self._engine.signature(h) for h in hps], hps=hps, plan=plan,
            steps=_numpy_view(steps), expected=_numpy_view(steps).copy(),
            fused=tuple(p.dtype if i in in_bucket else None for i, p in enumerate(params)),
            all_fused=len(in_bucket) == len(params), dtypes=[p.dtype for p in params],
            state=StateWatch(self.state), buffers=buffers, buffer_extent=_extent(buffers))
        return plan, c, hps

    # ------------------------------------------------------------------ checkpoints

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state_dict from this class or from the matching ``torch.optim`` optimizer.

        Unlike torch: saved state keeps its dtype (moved to the parameter's device only),
        tensors are copied (never aliased), and when both sides name their parameters
        (``param_names``) they are matched by name rather than by position.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"the state_dict has {len(saved_groups)} param groups, this optimizer "
                             f"{len(groups)}")
        for k, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"param group {k} holds {len(sg['params'])} parameters in the "
                                 f"state_dict and {len(g['params'])} here")
        id_map = {}
        for g, sg in zip(groups, saved_groups):
            if g.get("param_names") and sg.get("param_names"):
                if sorted(g["param_names"]) != sorted(sg["param_names"]):
                    raise ValueError(f"parameter names differ: {sorted(sg['param_names'])} saved, "
                                     f"{sorted(g['param_names'])} here")
                by_name = dict(zip(g["param_names"], g["params"]))
                id_map.update({sid: by_name[n] for sid, n in zip(sg["params"], sg["param_names"])})
            else:
                id_map.update(zip(sg["params"], g["params"]))
        state = defaultdict(dict)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise ValueError(f"the state_dict's 'state' is a {type(saved_state).__name__}, not a dict")
        for sid, value in saved_state.items():
            if sid in id_map:
                p = id_map[sid]
                _check_saved_state(sid, value, p, rules.scalar_state(self.rule, self.defaults))
                state[p] = {k: (v.to(device=p.device, copy=True) if torch.is_tensor(v) else deepcopy(v))
                            for k, v in value.items()}
                if self.family == "sgd" and "step" not in state[p]:
                    has_buf = state[p].get("momentum_buffer") is not None
                    state[p]["step"] = torch.tensor(1.0 if has_buf else 0.0)
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            sg["params"] = g["params"]
            if "param_names" in g:
                sg["param_names"] = g["param_names"]
            for key in list(sg):
                if key not in self.defaults and key not in ("params", "param_names") + _TORCH_KEYS:
                    sg.pop(key)  # e.g. torch's decoupled_weight_decay: fixed by the class here
            new_groups.append(sg)
        self.__setstate__({"state": state, "param_groups": new_groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)


@dataclass
class _CachedPlan:
    """What :meth:`Optimizer._plan_for` built, and what it was built for."""

    params: list          # the tensors stepped, in order
    layout: tuple         # their memory (:func:`_layout`): ``param.data = ...`` changes it
    shapes: list          # their shapes: what each gradient must match
    signatures: list      # Engine.signature of each group's validated hps
    hps: list             # the validated hps of the last step (compared by identity)
    plan: object
    steps: np.ndarray     # the step counter every state["step"] is a view of
    expected: np.ndarray  # what the counter holds unless someone set it
    fused: tuple          # per tensor: its dtype if a fused bucket steps it, else None
    all_fused: bool       # every tensor is in a fused bucket
    dtypes: list          # the parameters' dtypes: what a gradient taken by address must have
    state: StateWatch     # the optimizer's state as the plan found it
    buffers: list         # the state tensors the plan points into
    buffer_extent: tuple  # and their memory (:func:`_extent`)


_data_ptr, _size, _numel = torch.Tensor.data_ptr, torch.Tensor.size, torch.Tensor.numel
_contiguous, _is_neg, _dtype = torch.Tensor.is_contiguous, torch.Tensor.is_neg, operator.attrgetter("dtype")


def _layout(tensors: list) -> tuple:
    """Where each parameter's elements are: address, shape, and whether they are contiguous
    (``.data =``, ``set_``, ``resize_``, ``t_()`` change it). A kernel's address table is
    valid while this is unchanged."""
    return list(map(_data_ptr, tensors)), list(map(_size, tensors)), list(map(_contiguous, tensors))


def _extent(tensors: list) -> tuple:
    """Address and size of each state tensor: what a kernel needs to stay inside it (state
    is made contiguous by adaopt, and another layout of the same size is harmless to it
    unless someone transposes a square buffer in place)."""
    return list(map(_data_ptr, tensors)), list(map(_numel, tensors))


def _hooked(step):
    """``step`` with torch's step pre/post hooks (global ones first before, last after) and,
    while a profiler runs, torch's ``Optimizer.step#<class>.step`` label."""
    from torch.optim import optimizer as torch_optimizer

    global_pre = getattr(torch_optimizer, "_global_optimizer_pre_hooks", {})
    global_post = getattr(torch_optimizer, "_global_optimizer_post_hooks", {})
    profiling = torch._C._autograd._profiler_enabled

    @functools.wraps(step)
    def hooked(*args, **kwargs):
        self = args[0]
        if profiling():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return _run_hooked(step, self, global_pre, global_post, args, kwargs)
        return _run_hooked(step, self, global_pre, global_post, args, kwargs)

    return hooked


def _run_hooked(step, self, global_pre, global_post, args, kwargs):
    if global_pre or self._optimizer_step_pre_hooks:
        for hook in chain(global_pre.values(), self._optimizer_step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"a step pre-hook must return None or (args, kwargs), got {result!r}")
                args, kwargs = result
    out = step(*args, **kwargs)
    self._optimizer_step_code()  # where torch's Python-tracing profiler looks
    if global_post or self._optimizer_step_post_hooks:
        for hook in chain(self._optimizer_step_post_hooks.values(), global_post.values()):
            hook(self, args, kwargs)
    return out


def _check_saved_state(sid, value, p: torch.Tensor, scalar_keys=()) -> None:
    """Refuse a saved state entry the optimizer could not step, naming it; nothing is loaded."""
    where = f"the state_dict's state of parameter {sid!r}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} is a {type(value).__name__}; it must be a dict of tensors")
    step = value.get("step", 0)
    if torch.is_tensor(step):
        if step.numel() != 1 or step.is_complex():
            raise ValueError(f"{where} has a 'step' of shape {tuple(step.shape)}; it must be one number")
        step = step.item()
    if not isinstance(step, numbers.Real) or isinstance(step, bool) or not math.isfinite(step) \
            or step < 0 or step != int(step):
        raise ValueError(f"{where} has step={step!r}; it must be a whole number >= 0")
    for key, buf in value.items():
        if key == "step" or buf is None:
            continue
        if not torch.is_tensor(buf):
            raise ValueError(f"{where} has {key!r} of type {type(buf).__name__}; state buffers are tensors")
        if buf.shape != (() if key in scalar_keys else p.shape) or not buf.dtype.is_floating_point:
            raise ValueError(f"{where} has {key!r} of shape {tuple(buf.shape)} and dtype {buf.dtype}; "
                             f"the parameter is {tuple(p.shape)} {p.dtype} (a state_dict of another model?)")


def _refuse_torch_only(options: dict, where: str) -> None:
    bad = [k for k in ("fused", "capturable", "differentiable") if options.get(k)]
    if bad:
        raise ValueError(f"{', '.join(f'{k}=True' for k in bad)}{where}: not supported by adaopt.torch "
                         "(adaopt fuses on CPU by itself; leave them False)")


def _numpy_dtype(torch_dtype) -> str:
    for name, t in _TORCH_DTYPE.items():
        if t == torch_dtype:
            return name
    raise TypeError(f"parameters of dtype {torch_dtype} are not supported; use one of "
                    f"{', '.join(_TORCH_DTYPE)}")


def _optimizer_class(entry: registry.Family) -> type[Optimizer]:
    """adaopt.torch's class for a registry entry: torch.optim's name, arguments and defaults."""
    P = inspect.Parameter
    options = [P(n, P.KEYWORD_ONLY, default=d) for n, d in (
        ("conventions", "torch"), ("state_dtype", None), ("on_nonfinite", None), ("kahan", False),
        ("stochastic_rounding", False), ("backend", "auto"))]
    torch_name = entry.torch_name or entry.name
    cls = type(entry.name, (Optimizer,), {
        "entry": entry, "family": entry.key, "rule": entry.rule, "__module__": __name__, "__qualname__": entry.name,
        "__doc__": f"torch.optim.{torch_name}'s arguments and defaults, adaopt's rule "
                   f"(:mod:`{entry.rule.__name__}`).\n\n{entry.summary}",
    })
    cls.__signature__ = registry.signature(entry, torch=True, options=options)
    return cls


#: The optimizer classes, by registry key.
CLASSES: dict[str, type[Optimizer]] = {key: _optimizer_class(entry) for key, entry in registry.FAMILIES.items()}
globals().update({cls.__name__: cls for cls in CLASSES.values()})
globals().update({alias: CLASSES[e.key] for e in registry.FAMILIES.values() for alias in e.aliases})
__all__ = ["Optimizer", *(e.name for e in registry.FAMILIES.values()),
           *(a for e in registry.FAMILIES.values() for a in e.aliases)]
