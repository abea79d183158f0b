"""The low-precision options in adaopt.torch: 8-bit state (``state_dtype="int8"``,
:mod:`adaopt.quant`) as tensors, what the 8-bit path cannot step (refused with the parameter
and the reason), and rounding options set where no parameter is 16-bit (a warning)."""

from __future__ import annotations

import warnings

import torch

from .. import dtypes, quant
from . import views


def warn_unused_rounding(opt, groups=None) -> None:
    """``kahan``/``stochastic_rounding`` act on 16-bit parameters only: say so when a group sets
    one and holds none (a float32 model: the option would silently do nothing). ``groups``:
    the indices to look at (all by default), from the user's call two frames up."""
    for gi in range(len(opt.param_groups)) if groups is None else groups:
        g = opt.param_groups[gi]
        opts = [k for k in ("kahan", "stochastic_rounding") if g.get(k)]
        if opts and not any(p.element_size() == 2 and p.is_floating_point() for p in g["params"]):
            warnings.warn(f"{opts[0]}=True in param group {gi}, which has no bfloat16/float16 parameter yet: it "
                          "applies to 16-bit parameters only, and does nothing unless they are cast to "
                          "bfloat16/float16 before they step (cast the model before building the optimizer)",
                          UserWarning, stacklevel=3)


def fold_compensation(p, state: dict) -> None:
    """A ``kahan_comp`` the parameter no longer takes (cast wider by ``model.float()``, to the
    other 16-bit dtype, or ``kahan`` switched off): the compensation is the part of the exact
    value its 16-bit storage lost, so it is added into the parameter (exactly, once it is
    float32) and dropped, instead of being kept unused and applied again, stale, should the
    parameter go back to 16 bits. A buffer of another shape (``p.data`` replaced) is dropped."""
    comp = state.pop("kahan_comp")
    if comp.shape == p.shape and comp.is_floating_point():
        with torch.no_grad():
            p.add_(comp.to(device=p.device))


def refuse_int8(opt, entries, construction: bool = False) -> None:
    """Raise ValueError naming why ``opt`` cannot step with 8-bit state: the optimizer's own
    options at construction, else the first parameter of ``entries`` ``(group, index, p)``
    the array path cannot take (only dense CPU gradients of real CPU parameters)."""
    if not any(g.get("state_dtype") == quant.NAME for g in opt.param_groups):
        return
    why = ("backend='tensor' is set (8-bit state runs on the array path: backend='auto')" if opt._tensor_path
           else None)
    if why is None and not construction:
        for gi, i, p in entries:
            if opt.param_groups[gi].get("state_dtype") != quant.NAME:
                continue
            kind = ("has a sparse gradient" if p.grad is not None and p.grad.is_sparse else
                    f"is on {p.device}" if not p.is_cpu else f"is {p.dtype}" if p.is_complex() else None)
            if kind is not None:
                why = f"{opt._param_name(gi, i)} {kind}"
                break
    if why is not None:
        raise ValueError(f"state_dtype='int8' steps dense gradients of real CPU parameters only: {why}")


def conform_int8(p, state: dict, keys, want: bool, cdtype, name: str) -> None:
    """8-bit state (``state_dtype="int8"``, :mod:`adaopt.quant`) as tensors: float moments (a
    torch.optim state_dict just loaded) become their codes and per-block scales, and 8-bit ones
    loaded into an optimizer without int8 become ``cdtype`` floats again."""
    for key in keys:
        buf = state.get(key)
        if buf is None or want == (key + quant.SCALE in state):
            continue
        if want and (not p.is_cpu or p.is_complex()):
            raise ValueError(f"state_dtype='int8' is for real CPU parameters; {name!r} is {p.dtype} on {p.device}")
        if want:
            codes, absmax = quant.quantize(views.numpy_view(buf.cpu()), key)
            state[key], state[key + quant.SCALE] = torch.from_numpy(codes), torch.from_numpy(absmax)
        else:
            floats = quant.dequantize(buf.cpu().numpy(), state.pop(key + quant.SCALE).cpu().numpy(), cdtype)
            state[key] = views.from_numpy(floats, views.TORCH_DTYPE[dtypes.dtype_name(cdtype)]).to(p.device)
