"""The per-parameter paths of adaopt.torch: sparse gradients, and the rule on torch tensors.

The array path (fused kernels over zero-copy NumPy views) is in :mod:`.optimizer`; these
take what it cannot: a sparse gradient (``nn.Embedding(sparse=True)``), a tensor off the
CPU, or ``backend="tensor"``, where the rule runs on torch tensors themselves.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import dtypes, rules
from . import views
from .views import TORCH_DTYPE, from_numpy, numpy_dtype, numpy_view


def tensor_prepare(opt, gi: int, i: int, p: torch.Tensor):
    """(p, hp, compute dtype) for the tensor path; refuses before anything changes."""
    hp, name = opt._group_hp(gi, opt.param_groups[gi]), opt._param_name(gi, i)
    hp, cdtype = opt._engine.prepare(np.empty(0, dtype=dtypes.as_dtype(numpy_dtype(p.dtype))), hp, name)
    if p.element_size() == 2 and (hp["kahan"] or hp["stochastic_rounding"]):
        raise NotImplementedError(f"{name}: kahan and stochastic_rounding need the CPU array path "
                                  "(backend 'auto', 'fused' or 'reference') so far")
    return p, hp, TORCH_DTYPE[dtypes.dtype_name(dtypes.arith_dtype(numpy_dtype(p.dtype), cdtype))]


def tensor_step(opt, p: torch.Tensor, hp: dict, compute: torch.dtype) -> None:
    """The rule on torch tensors: the same function, tensors in place of arrays."""
    state = opt.state[p]
    opt._init_state(p, state, hp, "")
    s = rules.step_scalars(opt.rule, int(state["step"]) + 1, hp, state)
    buffers = {k: views.real(state[k]) for k in opt.rule.buffers(hp)}  # complex: stepped as real pairs
    grad = views.real(p.grad.to(p.dtype))
    new_p, new_buffers = opt.rule.update(views.real(p.detach()).to(compute), grad.to(compute), buffers, hp, s)
    views.real(p.detach()).copy_(new_p)
    for k, v in new_buffers.items():
        buffers[k].copy_(v)
    for k in rules.scalar_state(opt.rule, hp):
        state[k].fill_(float(s[k]))
    state["step"] += 1


def check_sparse(opt, sparse) -> None:
    """Sparse gradients (``nn.Embedding(sparse=True)``): AdaGrad, and SGD without momentum."""
    for gi, i, p in sparse:
        group, name = opt.param_groups[gi], opt._param_name(gi, i)
        if opt.entry.sparse is None or not opt.entry.sparse(group):
            raise NotImplementedError(f"{name} has a sparse gradient; {type(opt).__name__} with these "
                                      "options has no sparse step (AdaGrad and momentum-free SGD have)")
        if group["weight_decay"] != 0:
            raise ValueError(f"{name} has a sparse gradient: weight_decay must be 0 (it would "
                             "touch every row)")
        if p.grad.sparse_dim() != 1:
            raise NotImplementedError(f"{name}: sparse gradients are supported over the first "
                                      "dimension only (as nn.Embedding makes them)")


def sparse_step(opt, gi: int, i: int, p: torch.Tensor) -> None:
    """The rule on the touched rows only: untouched rows and their state do not change."""
    hp, name = opt._group_hp(gi, opt.param_groups[gi]), opt._param_name(gi, i)
    state = opt.state[p]
    opt._init_state(p, state, hp, name)
    grad = p.grad.coalesce()
    rows = grad.indices()[0]
    hp, cdtype = opt._engine.prepare(numpy_view(p), hp, name)
    st = {"step": int(state["step"].item())}
    st.update({k: numpy_view(v[rows]) for k, v in state.items() if k != "step" and torch.is_tensor(v)})
    width = p[0].numel() if p.dim() else 1
    index = (rows.numpy().astype(np.uint64)[:, None] * width + np.arange(width, dtype=np.uint64)).reshape(
        (len(rows), *p.shape[1:]))
    new_p, new_st = opt._engine.advance(numpy_view(p[rows]), numpy_view(grad.values()), st, hp, cdtype,
                                         name=name, index=index)
    p.detach()[rows] = from_numpy(new_p, p.dtype)
    for k, v in new_st.items():
        if k != "step":
            state[k][rows] = from_numpy(v, state[k].dtype)
    state["step"] += 1
