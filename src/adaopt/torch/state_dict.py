"""Loading a state_dict into an adaopt.torch optimizer, from adaopt or from torch.optim."""

from __future__ import annotations

import math
import numbers
import warnings
from collections import defaultdict
from copy import deepcopy

import torch

from .. import quant, rules


def load(opt, state_dict: dict) -> None:
    """``opt.load_state_dict``: a state_dict from this class or from the matching ``torch.optim`` optimizer.

    Unlike torch: saved state keeps its dtype (moved to the parameter's device only),
    tensors are copied (never aliased), and when both sides name their parameters
    (``param_names``) they are matched by name rather than by position. Every group key
    is kept, as torch keeps it: a scheduler's ``initial_lr``, ``max_lr``, ``swa_lr``, and
    keys of the user's own (``lr_scale``, ``name``).
    """
    state_dict = state_dict.copy()
    for pre_hook in opt._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(opt, state_dict)
        if result is not None:
            state_dict = result
    if isinstance(state_dict.get("state"), dict):
        quant.check_map(state_dict, state_dict["state"].values())  # codes mean something only under their map
    groups = opt.param_groups
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
            check_saved_state(sid, value, p, rules.scalar_state(opt.rule, opt.defaults))
            state[p] = {k: (v.to(device=p.device, copy=True) if torch.is_tensor(v) else deepcopy(v))
                        for k, v in value.items()}
            if opt.family == "sgd" and "step" not in state[p]:
                has_buf = state[p].get("momentum_buffer") is not None
                state[p]["step"] = torch.tensor(1.0 if has_buf else 0.0)
    for k, (g, sg) in enumerate(zip(groups, saved_groups)):
        # saved by name and loaded by position, the group takes the saved names (below) and its bits
        # stay as they were; saved by position and loaded by name, it takes new names: other bits
        if (g.get("stochastic_rounding") or sg.get("stochastic_rounding")) and saved_state \
                and g.get("param_names") and not sg.get("param_names"):
            how = "by position, and this optimizer names its parameters"
            warnings.warn(f"param group {k} uses stochastic_rounding, whose random bits are keyed by the "
                          f"parameters' names: the state_dict was saved {how}, so the run goes on with other "
                          "bits than an uninterrupted one (build both optimizers the same way, e.g. from "
                          "model.named_parameters(), to resume bit for bit)", UserWarning, stacklevel=3)
    new_groups = []
    for g, sg in zip(groups, saved_groups):
        sg["params"] = g["params"]
        if g.get("state_dtype") is not None or sg.get("state_dtype") == quant.NAME:
            sg["state_dtype"] = g.get("state_dtype")  # a state_dtype it names (and 8-bit or not) is the loader's
        if "param_names" in g:
            sg["param_names"] = g["param_names"]
        new_groups.append(sg)
    opt.__setstate__({"state": state, "param_groups": new_groups})
    opt._conform_loaded()  # state_dtype="int8": float moments quantized now (and back); "bfloat16": cast
    for post_hook in opt._optimizer_load_state_dict_post_hooks.values():
        post_hook(opt)


def check_saved_state(sid, value, p: torch.Tensor, scalar_keys=()) -> None:
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
        codes = buf.dtype in (torch.int8, torch.uint8) and key + quant.SCALE in value  # 8-bit state
        if buf.dtype in (torch.int8, torch.uint8) and not codes and not key.endswith(quant.SCALE):
            raise ValueError(f"{where} has {key!r} as {buf.dtype} codes of 8-bit state but no {key + quant.SCALE!r} "
                             "(their per-block scales) beside them: a truncated or edited state_dict")
        if buf.shape != quant.expected_shape(key, p.shape, scalar_keys) \
                or not (buf.dtype.is_floating_point or codes):
            raise ValueError(f"{where} has {key!r} of shape {tuple(buf.shape)} and dtype {buf.dtype}; "
                             f"the parameter is {tuple(p.shape)} {p.dtype} (a state_dict of another model?)")
