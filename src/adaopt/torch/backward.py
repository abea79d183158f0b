"""Gradient release: the optimizer step inside the backward pass, bucket by bucket.

``handle = opt.step_in_backward(model)`` registers a hook on each parameter's gradient
accumulation (``register_post_accumulate_grad_hook``). The parameters are cut into buckets
of about ``bucket_bytes`` of gradient, in the order their gradients become ready (reverse
registration order at first, as in DDP; after the first pass, the order observed). As soon
as every gradient of a bucket has accumulated, the bucket is stepped through the same fused
multi-tensor kernels and the same state as ``opt.step()``, and its gradients are set to
None. At most about one bucket of gradients is alive at a time instead of all of them:

    peak gradient bytes ~ bucket_bytes + the largest parameter's gradient, not sum_p |g_p|.

Each element sees the same arithmetic as in ``loss.backward(); opt.step();
opt.zero_grad(set_to_none=True)``: the parameters, the state and ``state_dict()`` are the
same bits. torch's recipe (one ``torch.optim`` optimizer per parameter, as in its tutorial
"How to save memory by fusing the optimizer step into the backward pass") steps one tensor
per call instead.
"""

from __future__ import annotations

import operator

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ..engine import StateWatch
from . import hooks

#: Default bucket size: 4 MiB of gradient, 1M float32 elements, twice the size at which the
#: fused kernels start to use threads (:data:`adaopt.kernels.fused.PARALLEL_MIN`).
BUCKET_BYTES = 4 << 20

_RELEASED = WeakIdKeyDictionary()  # parameter -> the GradRelease whose hook steps it


class Slot:
    """The cached plan of one bucket; it watches only its own parameters' state."""

    def __init__(self, params: list):
        self.params, self.cached = params, None

    @staticmethod
    def watch(state, params) -> StateWatch:
        return _KeyedWatch(state, params)


class _KeyedWatch(StateWatch):
    """:class:`~adaopt.engine.StateWatch` over some parameters' state only: another bucket
    creating or replacing its own state does not invalidate this bucket's plan."""

    def __init__(self, state, keys: list):
        self.state, self.keys, self.step_counts = state, keys, False
        self.dicts = [state.get(k, _NONE) for k in keys]
        self.values = self._values(self.dicts)

    def unchanged(self, state) -> bool:
        if state is not self.state:
            return False
        dicts = [state.get(k, _NONE) for k in self.keys]
        if not all(map(operator.is_, dicts, self.dicts)):
            return False
        values = self._values(dicts)
        return len(values) == len(self.values) and all(map(operator.is_, values, self.values))


_NONE: dict = {}


def buckets(params: list, bucket_bytes: int) -> list[list]:
    """``params`` (in ready order) cut into runs of at most ``bucket_bytes`` of gradient;
    a parameter larger than that is a bucket of its own."""
    out, size = [], 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        if not out or size + nbytes > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(p)
        size += nbytes
    return out


class GradRelease:
    """The hooks of :meth:`adaopt.torch.Optimizer.step_in_backward`; ``remove()`` takes them off.

    With ``accumulate=N`` the gradients of N backward passes are summed (as N backward
    calls before one ``opt.step()`` would) and the N-th pass steps and frees them; the passes
    between change nothing. ``passes`` counts the backward passes seen.
    """

    def __init__(self, opt, params: list, bucket_bytes: int, accumulate: int):
        self.opt, self.params, self.accumulate, self.bucket_bytes = opt, params, accumulate, bucket_bytes
        self.passes = 0
        self._task = None          # the backward pass (graph task) in progress
        self._order = []           # the ready order seen in the first stepping pass, then None
        self._positions = {}
        self._set_buckets(buckets(params[::-1], bucket_bytes))
        self._handles = []
        for p in params:
            _RELEASED[p] = self
            self._handles.append(p.register_post_accumulate_grad_hook(self._ready))

    def remove(self) -> None:
        """Take the hooks off: ``loss.backward(); opt.step()`` steps as before."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for p in self.params:
            if _RELEASED.get(p) is self:
                del _RELEASED[p]
        if self.opt._grad_release is self:
            self.opt._grad_release = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _set_buckets(self, groups: list[list]) -> None:
        self._slots = [Slot(b) for b in groups]
        self._bucket_of = {id(p): k for k, b in enumerate(groups) for p in b}
        self._begin()

    def _begin(self) -> None:
        self._left = [len(s.params) for s in self._slots]
        self._done = [False] * len(self._slots)
        self._stepped = False

    # ------------------------------------------------------------------ the hooks

    def _ready(self, p: torch.Tensor) -> None:
        """A gradient has accumulated into ``p.grad``: step its bucket if it is the last."""
        task = torch._C._current_graph_task_id()
        if task != self._task:  # the first hook of a backward pass: its end flushes the rest
            self._task = task
            self._begin()  # a pass that raised left no callback behind
            torch.autograd.Variable._execution_engine.queue_callback(self._end_pass)
        if (self.passes + 1) % self.accumulate:
            return  # accumulating: this pass only sums gradients
        if self._order is not None:
            self._order.append(p)
        k = self._bucket_of[id(p)]
        self._left[k] -= 1
        if self._left[k] == 0:
            self._step(k)

    def _end_pass(self) -> None:
        """End of a backward pass: step the buckets some of whose gradients never came (an
        unused parameter), run the step post-hooks, and count the pass."""
        try:
            if (self.passes + 1) % self.accumulate == 0:
                for k, slot in enumerate(self._slots):
                    if not self._done[k] and any(p.grad is not None for p in slot.params):
                        self._step(k)
                if self._stepped:
                    hooks.run_post(self.opt, hooks.global_hooks()[1], (), {})
                    self.opt._opt_called = True  # what an LR scheduler checks before its first step
                if self._order is not None:
                    self._reorder()
        finally:
            self.passes += 1
            self._task = None

    def _step(self, k: int) -> None:
        """Step bucket ``k``'s parameters that have gradients, as ``opt.step()`` would, and
        free their gradients."""
        opt, slot = self.opt, self._slots[k]
        if not self._stepped:
            self._stepped = True
            hooks.run_pre(opt, hooks.global_hooks()[0], (), {})
        entries = [(*self._position(p), p) for p in slot.params if p.grad is not None]
        if entries:
            opt._step_entries(entries, slot)
        for p in slot.params:
            p.grad = None
        self._done[k] = True

    def _position(self, p) -> tuple[int, int]:
        """(group, index) of ``p`` in the optimizer's param groups (looked up again if moved)."""
        where = self._positions.get(id(p))
        groups = self.opt.param_groups
        if where is None or where[0] >= len(groups) or len(groups[where[0]]["params"]) <= where[1] or (
                groups[where[0]]["params"][where[1]] is not p):
            self._positions = {id(q): (gi, i) for gi, g in enumerate(groups) for i, q in enumerate(g["params"])}
            where = self._positions.get(id(p))
            if where is None:
                raise RuntimeError("a parameter stepped in backward is no longer in the optimizer's param groups")
        return where

    def _reorder(self) -> None:
        """After the first stepping pass, bucket by the order the gradients really came in."""
        seen = {id(p) for p in self._order}
        order = self._order + [p for p in self.params[::-1] if id(p) not in seen]
        self._order = None
        new = buckets(order, self.bucket_bytes)
        if [list(map(id, b)) for b in new] != [list(map(id, s.params)) for s in self._slots]:
            self._set_buckets(new)


def register(opt, model_or_params, bucket_bytes: int = BUCKET_BYTES, accumulate: int = 1) -> GradRelease:
    """Check what :meth:`adaopt.torch.Optimizer.step_in_backward` is given, then hook it."""
    for name, value in (("bucket_bytes", bucket_bytes), ("accumulate", accumulate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if getattr(opt, "_grad_release", None) is not None:
        raise RuntimeError(f"this {type(opt).__name__} already steps in backward; call .remove() on the "
                           "handle step_in_backward returned before registering again")
    if opt.on_nonfinite is not None:
        raise ValueError(f"on_nonfinite={opt.on_nonfinite!r} needs every gradient before any parameter "
                         "changes, and step_in_backward steps bucket by bucket; use loss.backward(); opt.step()")
    named = _named(model_or_params)
    member = {id(p) for g in opt.param_groups for p in g["params"]}
    params, seen = [], set()
    for name, p in named:
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if id(p) not in member:
            raise ValueError(f"parameter {name} (shape {tuple(p.shape)}) is not in this optimizer's param "
                             "groups; add it (add_param_group) or leave it out of step_in_backward")
        other = _RELEASED.get(p)
        if other is not None or getattr(p, "_in_backward_optimizers", None):
            by = "another step_in_backward" if other else "torch _apply_optimizer_in_backward"
            raise RuntimeError(f"parameter {name} is already stepped in backward (by {by}); "
                               "each parameter may have one such hook")
        params.append(p)
    if not params:
        raise ValueError("step_in_backward was given no parameter that requires a gradient")
    opt._grad_release = GradRelease(opt, params, bucket_bytes, accumulate)
    return opt._grad_release


def _named(model_or_params) -> list:
    """``(name, parameter)`` pairs of a module (refusing DDP and sparse embeddings) or of an
    iterable of parameters (or of param groups)."""
    if isinstance(model_or_params, torch.nn.Module):
        module = model_or_params
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            raise TypeError("step_in_backward on a DistributedDataParallel module: its hooks would step "
                            "before DDP's all-reduce averages the gradients; use loss.backward(); opt.step() "
                            "under DDP (FSDP2's reduce-scatter has the same order problem)")
        for mname, m in module.named_modules():
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse:
                raise NotImplementedError(f"{mname or 'the module'} makes sparse gradients (sparse=True); "
                                          "step_in_backward steps dense gradients only: use opt.step() for it")
        return list(module.named_parameters())
    if torch.is_tensor(model_or_params):
        model_or_params = [model_or_params]
    items = []
    for k, p in enumerate(model_or_params):
        if isinstance(p, dict):  # param groups, as the optimizer was given
            items += [(f"params[{k}]['params'][{j}]", q) for j, q in enumerate(_listed(p["params"]))]
        elif torch.is_tensor(p):
            items.append((f"params[{k}]", p))
        else:
            raise TypeError(f"step_in_backward takes a module or parameters; params[{k}] is a {type(p).__name__}")
    return items


def _listed(params) -> list:
    return [params] if torch.is_tensor(params) else list(params)
