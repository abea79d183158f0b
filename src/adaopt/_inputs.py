"""The NumPy frontend's inputs, checked and named: parameter trees and groups, gradients,
and state given back (a state_dict, the pure API's state)."""

from __future__ import annotations

import numpy as np

from . import _tree, dtypes, quant


def is_groups(params) -> bool:
    return isinstance(params, (list, tuple)) and len(params) > 0 and all(
        isinstance(g, dict) and "params" in g for g in params
    )


def match(trees: list, grads) -> list:
    """Gradient leaves for params given as ``trees`` (one per group), in parameter order."""
    if len(trees) == 1:
        return _tree.flatten_like(trees[0], grads)
    if not isinstance(grads, (list, tuple)) or len(grads) != len(trees):
        raise ValueError(f"with {len(trees)} param groups, grads must be a list of "
                         f"{len(trees)} gradient trees, one per group")
    return [leaf for tree, g in zip(trees, grads) for leaf in _tree.flatten_like(tree, g)]


# ---------------------------------------------------------------------- input checks


def as_param(leaf, name: str, in_place: bool) -> np.ndarray:
    if in_place:
        if not isinstance(leaf, np.ndarray):
            raise TypeError(f"parameter {name!r} is a {type(leaf).__name__}; a stateful optimizer "
                            "updates arrays in place, so parameters must be NumPy arrays")
        if not leaf.flags.writeable:
            raise ValueError(f"parameter {name!r} is a read-only array")
        arr = leaf
    else:
        arr = np.asarray(leaf)
        if arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
    if not dtypes.is_supported(arr.dtype):
        raise TypeError(f"parameter {name!r} has dtype {arr.dtype.name}; "
                        f"supported: {', '.join(dtypes.SUPPORTED)}")
    return arr


ARRAYS_ONLY = frozenset((np.ndarray,))


def check_grad(g, p: np.ndarray, name: str) -> np.ndarray:
    """``g`` as an array of ``p``'s shape and dtype; a gradient in the other byte order (a file
    written on another machine) is converted to this machine's."""
    g = np.asarray(g)
    if g.shape != p.shape:
        raise ValueError(f"gradient for {name!r} has shape {g.shape}, the parameter has {p.shape}")
    if g.dtype != p.dtype:
        if g.dtype.newbyteorder("=") != p.dtype.newbyteorder("="):
            raise TypeError(f"gradient for {name!r} has dtype {g.dtype.name}, the parameter has {p.dtype.name}")
        g = g.astype(g.dtype.newbyteorder("="))
    elif not g.dtype.isnative:
        g = g.astype(g.dtype.newbyteorder("="))
    return g


def check_state(st, p: np.ndarray, name: str, copy_: bool = False, scalar_keys=()) -> dict:
    from .checkpoint import CheckpointError

    if not isinstance(st, dict) or "step" not in st:
        raise CheckpointError(f"state of {name!r} must be a dict with a 'step' entry")
    step = st["step"]
    if isinstance(step, np.ndarray) and step.ndim == 0:
        step = step.item()
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"state of {name!r} has step={step!r}; it must be an integer >= 0")
    out = {"step": int(step)}
    for key, value in st.items():
        if key == "step":
            continue
        arr = np.asarray(value)
        want = quant.expected_shape(key, p.shape, scalar_keys)
        if arr.shape != want:
            raise CheckpointError(f"state {key!r} of {name!r} has shape {arr.shape}, {want} is needed "
                                  f"(the parameter has {p.shape})")
        if not dtypes.is_stored(arr.dtype):
            raise CheckpointError(f"state {key!r} of {name!r} has dtype {arr.dtype.name}")
        out[key] = arr.copy() if copy_ else arr
    return out


def check_state_dict(opt, state_dict: dict) -> tuple[list, dict]:
    """``(param_groups, state)`` that ``opt.load_state_dict(state_dict)`` will set: the same
    optimizer, conventions, groups and parameter names, valid hyperparameters, and state of
    the right shapes, copied; a :class:`~adaopt.checkpoint.CheckpointError` naming the
    first problem otherwise."""
    from .checkpoint import CheckpointError

    try:
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError("not an adaopt state_dict: it needs 'state' and 'param_groups'") from exc
    mine = type(opt).__name__
    if isinstance(saved_state, dict):
        try:
            quant.check_map(state_dict, saved_state.values())
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    if state_dict.get("optimizer", mine) != mine:
        raise CheckpointError(f"this state_dict is from {state_dict.get('optimizer')}, not {mine}")
    saved_conv = state_dict.get("conventions", opt.conventions)
    if saved_conv != opt.conventions:
        raise CheckpointError(f"this state_dict uses conventions={saved_conv!r}, this optimizer {opt.conventions!r}")
    if len(saved_groups) != len(opt.param_groups):
        raise CheckpointError(f"the state_dict has {len(saved_groups)} param groups, "
                              f"this optimizer has {len(opt.param_groups)}")
    new_groups = []
    for i, (saved, group) in enumerate(zip(saved_groups, opt.param_groups)):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list) \
                or not all(isinstance(n, str) for n in saved["params"]):
            raise CheckpointError(f"param group {i} of the state_dict has no 'params' list of names")
        if sorted(saved["params"]) != sorted(group["params"]):
            raise CheckpointError(f"param group {i} holds {sorted(saved['params'])} in the state_dict "
                                  f"but {sorted(group['params'])} here")
        saved_hp = {k: v for k, v in saved.items() if k != "params"}
        if group.get("state_dtype") is not None or saved_hp.get("state_dtype") == quant.NAME:
            # a state_dtype the loading optimizer names (and 8-bit or not) is its choice: the state is
            # cast or (de)quantized to fit; built without one, it keeps the saved state's dtypes
            saved_hp["state_dtype"] = group.get("state_dtype")
        hp = opt._group_hp(saved_hp, f"param group {i}")
        new_groups.append({"params": list(group["params"]), **hp})
    new_state = {}
    for name, p in opt._arrays.items():
        if name not in saved_state:
            raise CheckpointError(f"the state_dict has no state for parameter {name!r}")
        new_state[name] = check_state(saved_state[name], p, name, copy_=True, scalar_keys=opt._scalar_keys)
    return new_groups, new_state
