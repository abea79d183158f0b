"""adaopt.torch's base class: torch.optim.Optimizer's plumbing around adaopt's engine.

Groups, state in torch's layout, the step (hooks, closures, the array path over zero-copy
views with its address checks, the other paths of :mod:`.paths`), the cached plan, and
state_dict loading (:mod:`.state_dict`). No optimizer math.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch.autograd.graph import increment_version

from .. import dtypes, hyper, quant, registry
from ..engine import CachedPlan, Engine, StateWatch
from . import backward, hooks, paths, views
from ._lowp import conform_int8, fold_compensation, refuse_int8, warn_unused_rounding
from . import state_dict as state_dict_io

_NONFINITE = (None, "skip", "raise")


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
        if isinstance(state_dtype, torch.dtype):  # torch.bfloat16 means "bfloat16"
            state_dtype = str(state_dtype).removeprefix("torch.")
        base = self.entry.defaults_for(conventions)
        torch_only = {k: given.pop(k) for k in registry.TORCH_FLAGS if k in given}
        hyper.check_choice("on_nonfinite", on_nonfinite, _NONFINITE)
        refuse_torch_only(torch_only, "")
        refuse_what_torch_refuses(given, torch_only)
        defaults = {**base, **{k: v for k, v in given.items() if v is not None}}
        defaults.update(state_dtype=state_dtype, kahan=kahan, stochastic_rounding=stochastic_rounding)
        if "eps" in base and given.get("eps") is None:
            defaults["eps"] = None
        self.entry.validate(dict(defaults))  # a tensor lr or beta stays a tensor in the groups, as in torch
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
        # kept, as torch keeps them; the family's flags not given hold torch's defaults, so code that
        # reads group["fused"] or group["foreach"] reads what it reads from torch.optim
        declared = (*self.entry.args, *self.entry.kwargs)
        defaults.update({k: _FLAG_DEFAULTS[k] for k in registry.TORCH_FLAGS if k in declared})
        defaults.update({k: v for k, v in torch_only.items() if v is not None})
        self._plan = None
        self._grad_release = None  # the hooks of step_in_backward, while registered
        super().__init__(params, defaults)
        refuse_int8(self, [], construction=True)  # the options 8-bit state cannot take, now
        warn_unused_rounding(self)
        self._built = True

    _EXTRA = ("conventions", "on_nonfinite", "skipped_steps", "_engine", "_hp_keys", "_tensor_path", "_built")
    _built = False  # True once __init__ has run (add_param_group warns itself from then on)

    def __getstate__(self) -> dict:
        """torch keeps defaults, state and groups; adaopt's settings travel too (deepcopy, pickle)."""
        return {**super().__getstate__(), **{k: getattr(self, k) for k in self._EXTRA}}

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict) -> None:
        """torch's add_param_group, with adaopt's validation first (a bad group changes nothing)."""
        where = f"param group {len(self.param_groups)}"
        refuse_torch_only(param_group, f" ({where})")
        # adaopt's hyperparameters are checked; any other key is the user's (timm's lr_scale, a
        # name) or a scheduler's (initial_lr), and torch keeps it, so does adaopt
        trial = {k: param_group.get(k, self.defaults[k]) for k in self._hp_keys}
        self.entry.validate(trial, where)
        params = param_group["params"]
        params = [params] if torch.is_tensor(params) else list(params)
        if trial["stochastic_rounding"] and any(torch.is_tensor(p) and p.dtype == torch.float16 for p in params):
            raise ValueError(f"stochastic_rounding is for bfloat16 parameters; {where} holds float16 ones "
                             "(use kahan=True for float16)")
        names = param_group.get("param_names")
        for i, p in enumerate(params):  # at construction, not on the first step after a forward and backward
            if torch.is_tensor(p):
                _no_sharded_int8(p, trial, names[i] if names and i < len(names) else
                                 f"param_groups[{len(self.param_groups)}]['params'][{i}]")
        super().add_param_group({**param_group, "params": params})
        self._plan = None
        if self._built:  # at construction, __init__ warns for every group at once
            warn_unused_rounding(self, [len(self.param_groups) - 1])

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
        """torch-layout state for ``p``: a float32 ``step`` and the engine's ``state_spec`` (buffers
        like ``p``, in its memory format, or 8-bit; scalar state 0-d, as torch keeps mu_product)."""
        _no_sharded_int8(p, hp, name)
        cdtype = dtypes.compute_dtype(views.numpy_dtype(p.dtype), hp["state_dtype"])
        self._engine.resolved(hp, cdtype, name)
        if "step" not in state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
        spec = self._engine.state_spec(dtypes.as_dtype(views.numpy_dtype(p.dtype)), p.shape, hp, cdtype)
        comp = state.get("kahan_comp")
        if comp is not None and ("kahan_comp" not in spec or comp.dtype != p.dtype or comp.shape != p.shape):
            fold_compensation(p, state)
        eight_bit = quant.applies(hp, p.numel()) and p.is_cpu and not p.is_complex()
        for key, (fill, dtype, shape) in spec.items():
            if state.get(key) is None and eight_bit and key in self.rule.buffers(hp):  # no float buffer first
                state[key], state[key + quant.SCALE] = map(torch.from_numpy, quant.full(tuple(p.shape), fill, key))
            elif state.get(key) is None:
                tdtype = views.TORCH_DTYPE[dtypes.dtype_name(dtype)]
                if p.is_complex() and shape != ():  # complex like p (torch's layout), stepped as its real view
                    tdtype = torch.complex128 if tdtype == torch.float64 else torch.complex64
                state[key] = (torch.tensor(fill, dtype=tdtype) if shape == () else
                              torch.full_like(p, fill, dtype=tdtype, memory_format=torch.preserve_format))
        conform_int8(p, state, self.rule.buffers(hp), quant.applies(hp, p.numel()), cdtype, name)

    def _conform_loaded(self) -> None:
        """After a load: 8-bit state where a group asks for it, float state where it does not, and
        moments in the group's 16- or 32-bit ``state_dtype`` where it names one."""
        for gi, group in enumerate(self.param_groups):
            hp = self._group_hp(gi, group)
            for i, p in enumerate(group["params"]):
                st = self.state.get(p)
                if not st:
                    continue
                cdtype = dtypes.compute_dtype(views.numpy_dtype(p.dtype), hp["state_dtype"])
                if hp["state_dtype"] == quant.NAME or any(k.endswith(quant.SCALE) for k in st):
                    _no_sharded_int8(p, hp, self._param_name(gi, i))
                    conform_int8(p, st, self.rule.buffers(hp), quant.applies(hp, p.numel()), cdtype,
                                  self._param_name(gi, i))
                if hp["state_dtype"] not in (None, quant.NAME):
                    want = views.TORCH_DTYPE[dtypes.dtype_name(cdtype)]
                    for key in self.rule.buffers(hp):
                        if torch.is_tensor(st.get(key)) and st[key].is_floating_point() and st[key].dtype != want:
                            st[key] = st[key].to(want)

    def _views(self, p, state) -> dict:
        st = {"step": int(state["step"].item()) if torch.is_tensor(state["step"]) else int(state["step"])}
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value):
                st[key] = views.numpy_view(value)
        return st

    # ------------------------------------------------------------------ stepping

    def _patch_step_function(self) -> None:
        """Wrap ``step`` as torch does (step hooks, a profiler label), minus the label's cost
        when no profiler is running: ``record_function`` costs about 10 us a step."""
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        cls = type(self)
        if not getattr(cls.step, "hooked", None):
            cls.step = hooks.hooked(cls.step)
            cls.step.hooked = True

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries = [(gi, i, p) for gi, group in enumerate(self.param_groups)
                   for i, p in enumerate(group["params"]) if p.grad is not None]
        if entries:
            self._step_entries(entries)
        return loss

    def step_in_backward(self, model_or_params, *, bucket_bytes: int = backward.BUCKET_BYTES,
                         accumulate: int = 1) -> backward.GradRelease:
        """Step inside ``loss.backward()`` (gradient release), bucket by bucket; returns the
        handle whose ``remove()`` takes the hooks off again.

        ``model_or_params`` is a module or parameters, all in this optimizer. They are cut
        into buckets of about ``bucket_bytes`` of gradient in the order their gradients
        become ready; a bucket is stepped by the fused kernels as soon as all of its
        gradients have accumulated, and its ``.grad`` are set to None, so the peak gradient
        memory is about one bucket rather than the whole model. Results are bit for bit
        those of ``loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)``.

        ``accumulate=N``: every N-th backward pass steps (the gradients of N micro-batches
        summed, as N ``backward()`` calls before one ``step()``); the others only accumulate.
        A parameter whose gradient never comes in a pass (unused) is stepped at the end of
        the pass if it has one. ``opt.step()``, ``zero_grad()``, schedulers,
        ``state_dict()``/``load_state_dict()`` and param groups work as usual; the step
        hooks run once per stepping pass (pre-hooks before its first bucket, post-hooks
        at its end). Not supported: DDP and FSDP (the hooks would step before the gradients
        are reduced; refused for a DDP module), sparse gradients, ``on_nonfinite``, and
        whatever needs every gradient before the step (``clip_grad_norm_``, GradScaler), and
        the Monitor (it reads the gradients this frees; refused).
        """
        return backward.register(self, model_or_params, bucket_bytes, accumulate)

    def _step_entries(self, entries, slot=None) -> None:
        """Step ``(group, position, parameter)`` entries that have gradients. ``slot`` holds
        the cached plan of a subset stepped on its own (:mod:`.backward`); None: the step's."""
        others = self._tensor_path or self.on_nonfinite is not None or any(
            p.grad.is_sparse or not p.is_cpu for _, _, p in entries)
        if others:
            with torch.no_grad():
                self._step_general(entries, slot)
        else:
            self._step_arrays(entries, slot)  # NumPy views only: no autograd to switch off

    def _step_arrays(self, entries, slot=None) -> None:
        """Dense CPU gradients: one engine call over zero-copy views."""
        plan, c, hps = self._plan_for(entries, slot)
        grads = [p.grad for _, _, p in entries]
        if c.sharded:  # DTensor parameters (FSDP2): each rank steps its local shard
            grads = list(map(views.local, grads))
        # A fused kernel takes a gradient by its address when its memory holds exactly the
        # values it stands for: the parameter's shape (a kernel trusts sizes), contiguous, the
        # parameter's dtype (torch >= 2.9 allows another one: param.grad_dtype), no lazy
        # negation. Anything else becomes a NumPy array of them, or is refused.
        if (c.all_fused and list(map(views.size, grads)) == c.shapes and list(map(views.dtype_of, grads)) == c.dtypes
                and all(map(views.contiguous, grads)) and not any(map(views.is_neg, grads))):
            grads = list(map(views.data_ptr, grads))
        else:
            grads = [self._grad_input(g, k, c, entries) for k, g in enumerate(grads)]
        self._engine.run(plan, grads, hps, threads=torch.get_num_threads())  # torch's count, never changed
        # the kernels wrote through addresses autograd cannot see: bump the versions as torch.optim's
        # in-place ops do, so a graph that saved a parameter refuses a second backward after the step
        increment_version(list(map(views.local, c.params)) if c.sharded else c.params)
        c.steps += 1.0  # a NumPy view of the counter every parameter's state["step"] is a view of
        c.expected += 1.0

    def _grad_input(self, g: torch.Tensor, k: int, c, entries):
        """Gradient ``k`` as the engine takes it (an address, or a NumPy array of the
        parameter's dtype); refused, naming the parameter, if its shape or kind is wrong."""
        p = c.params[k]
        if g.shape != c.shapes[k] or not (g.dtype.is_floating_point or g.is_complex() and p.is_complex()):
            gi, i, _ = entries[k]
            what = (f"shape {tuple(g.shape)}, the parameter {tuple(c.shapes[k])}" if g.shape != c.shapes[k]
                    else f"dtype {g.dtype}; a {p.dtype} parameter takes floating-point gradients")
            raise (ValueError if g.shape != c.shapes[k] else TypeError)(
                f"the gradient of {self._param_name(gi, i)} has {what}; nothing was changed")
        if c.fused[k] is g.dtype and g.is_contiguous() and not g.is_neg() and not g.is_conj():
            return g.data_ptr()
        if c.wide[k] is not None:  # the kernels (and the reference rule) read it in float32 as it is
            return views.grad_view(g.resolve_neg().resolve_conj().to(torch.float32))
        if p.element_size() == 2 and g.is_floating_point() and g.element_size() > 4:
            gi, i, _ = entries[k]
            warnings.warn(f"the {g.dtype} gradient of {self._param_name(gi, i)} is rounded to its {p.dtype} "
                          "before the step: adaopt reads a 16-bit parameter's gradient in its dtype or in "
                          "float32 (the moments and the arithmetic stay float32)", UserWarning, stacklevel=2)
        return views.grad_view(g.resolve_neg().resolve_conj().to(p.dtype))

    def _step_general(self, all_entries, slot=None) -> None:
        refuse_int8(self, all_entries)
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
            paths.check_sparse(self, sparse)
        prepared = [paths.tensor_prepare(self, gi, i, p) for gi, i, p in tensors]  # may refuse: nothing changed yet
        if entries:
            self._step_arrays(entries, slot)
        for gi, i, p in sparse:
            paths.sparse_step(self, gi, i, p)
        for p, hp, compute in prepared:
            paths.tensor_step(self, p, hp, compute)

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

    def _plan_for(self, entries, slot=None):
        """(plan, the cached plan's record, validated hps per group).

        The plan is cached while the same parameters with the same memory layout (``param.data
        = ...``, ``set_``, ``resize_`` change it), the same state tensors with the same layout
        (:class:`~adaopt.engine.StateWatch` and :func:`.views.extent`), the same step counts and the
        same options take part; new values (an LR scheduler) do not rebuild it. Each
        parameter's ``state["step"]`` is a 0-d view into one counter, so one in-place add
        advances them all, and a count set by hand (``state["step"].fill_(0)``) is seen.
        A ``slot`` (:class:`.backward.Slot`) keeps the plan of a subset of the parameters,
        watching only their state.
        """
        hps = [self._group_hp(gi, g) for gi, g in enumerate(self.param_groups)]
        params = [p for _, _, p in entries]
        c = self._plan if slot is None else slot.cached
        wide = [_wide_grad(p) for p in params]  # float32 gradients of 16-bit parameters: read as they are
        same = c is not None and len(c.params) == len(params) and all(map(operator.is_, c.params, params)) \
            and c.wide == wide
        sharded = c.sharded if same else any(map(views.is_sharded, params))
        shards = list(map(views.local, params)) if sharded else params
        if (same and views.layout(shards) == c.layout and views.extent(c.buffers) == c.buffer_extent
                and np.array_equal(c.steps, c.expected) and c.fits(self._engine, self.state, hps)):
            return c.plan, c, hps
        items, states = [], []
        for gi, i, p in entries:
            state = self.state[p]
            self._init_state(p, state, hps[gi], self._param_name(gi, i))
            items.append((gi, self._param_name(gi, i), views.numpy_view(p), self._views(p, state), hps[gi]))
            states.append(state)
        steps = torch.tensor([float(st["step"]) for st in states], dtype=torch.float32)
        for k, state in enumerate(states):
            state["step"] = steps[k]
        plan = self._engine.build_plan(items, grad_dtypes=[np.float32 if w else None for w in wide])
        in_bucket = {i for bucket in plan.buckets for i in bucket.index}
        grad_dtypes = [w or p.dtype for w, p in zip(wide, params)]
        buffers = [views.local(v) for st in states for k, v in st.items() if k != "step" and torch.is_tensor(v)]
        watch = StateWatch(self.state) if slot is None else slot.watch(self.state, params)
        c = _CachedPlan(
            plan=plan, hps=hps, signatures=[self._engine.signature(h) for h in hps], watch=watch,
            params=params, layout=views.layout(shards), shapes=[p.shape for p in shards], sharded=sharded,
            steps=views.numpy_view(steps), expected=views.numpy_view(steps).copy(),
            fused=tuple(d if i in in_bucket else None for i, d in enumerate(grad_dtypes)),
            all_fused=len(in_bucket) == len(params), dtypes=grad_dtypes, wide=wide,
            buffers=buffers, buffer_extent=views.extent(buffers))
        if slot is None:
            self._plan = c
        else:
            slot.cached = c
        return plan, c, hps

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """torch's state_dict; with 8-bit state, also the map version its codes are written in
        (``quant.MAP_KEY``: a later adaopt refuses codes of another map instead of misreading them)."""
        out = super().state_dict()
        if quant.holds_codes(out["state"].values()):
            out[quant.MAP_KEY] = quant.MAP_VERSION
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state_dict from this class or from the matching ``torch.optim`` optimizer
        (:func:`.state_dict.load`: dtypes kept, copies not aliases, names matched, every
        group key kept)."""
        state_dict_io.load(self, state_dict)


def _wide_grad(p: torch.Tensor):
    """torch.float32 when ``p`` is 16-bit and its gradient float32 (``param.grad_dtype``), else None."""
    g = p.grad
    return torch.float32 if (g is not None and g.dtype == torch.float32 and p.element_size() == 2
                             and p.is_floating_point()) else None


def _no_sharded_int8(p, hp: dict, name: str) -> None:
    """8-bit state is refused for a DTensor (FSDP2) parameter: each rank would quantize its own
    shard in blocks from the shard's start, and DCP, which reshards the codes by the parameter's
    placement, has no way to reshard the blocks' scales with them."""
    if views.is_sharded(p) and quant.applies(hp, p.numel()):
        raise ValueError(f"state_dtype='int8' for {name}: a sharded (DTensor, FSDP2's fully_shard) parameter "
                         "cannot keep 8-bit state yet (its per-block scales would not reshard with the codes); "
                         "use state_dtype='bfloat16' (2 bytes a moment, reshards through DCP) or float32")


@dataclass
class _CachedPlan(CachedPlan):
    """The engine's cached plan, and the memory it points into (compared every step)."""

    params: list          # the tensors stepped, in order
    layout: tuple         # their memory (:func:`.views.layout`): ``param.data = ...`` changes it
    shapes: list          # their shapes: what each gradient must match
    steps: np.ndarray     # the step counter every state["step"] is a view of
    expected: np.ndarray  # what the counter holds unless someone set it
    fused: tuple          # per tensor: its dtype if a fused bucket steps it, else None
    all_fused: bool       # every tensor is in a fused bucket
    dtypes: list          # what a gradient taken by address must have: the parameter's dtype, or float32
    wide: list            # per tensor: torch.float32 where a 16-bit parameter's gradient is float32, else None
    buffers: list         # the state tensors the plan points into (local shards of DTensors)
    buffer_extent: tuple  # and their memory (:func:`.views.extent`)
    sharded: bool         # DTensor parameters (FSDP2): the kernels step their local shards


#: torch.optim's defaults for its implementation flags (None: torch chooses).
_FLAG_DEFAULTS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}


def refuse_torch_only(options: dict, where: str) -> None:
    """torch.optim's implementation flags: ``foreach`` and ``fused`` ask for speed, and
    adaopt's fused path is the fast one, so they are taken (and kept in the groups); what
    adaopt cannot honour is refused at construction, saying what to use instead."""
    if options.get("differentiable"):
        raise ValueError(f"differentiable=True{where}: adaopt.torch steps in place without autograd; "
                         "for a step that is differentiated through (meta-learning) use torch.optim with "
                         "differentiable=True")
    if options.get("capturable"):
        raise ValueError(f"capturable=True{where}: that is for CUDA graph capture, and adaopt.torch steps "
                         "CPU tensors; leave it False (under torch.compile adaopt's step is one opaque call)")


def refuse_what_torch_refuses(given: dict, flags: dict) -> None:
    """torch.optim's own rules for tensor hyperparameters, kept so that a configuration adaopt
    takes is one torch takes too (a state_dict moves both ways): ``betas`` both floats or
    both tensors; tensor ``lr`` or ``betas`` not with ``foreach=True``."""
    betas = given.get("betas")
    if isinstance(betas, (tuple, list)) and len(betas) == 2 and torch.is_tensor(betas[0]) != torch.is_tensor(betas[1]):
        raise ValueError("betas must be either both floats or both Tensors")
    if flags.get("foreach") and flags.get("fused"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")  # torch's words and type
    if flags.get("foreach"):
        if torch.is_tensor(given.get("lr")):
            raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
        if isinstance(betas, (tuple, list)) and betas and torch.is_tensor(betas[0]):
            raise ValueError("betas[0] as a Tensor is not supported for capturable=False and foreach=True")
