"""Read-only access to an optimizer's parameters, gradients, state and hyperparameters.

One probe class per frontend: :class:`NumpyProbe` for :class:`adaopt.Optimizer`,
:class:`TorchProbe` for any ``torch.optim.Optimizer`` (adaopt.torch's classes, and
torch's own SGD, Adagrad, RMSprop, Adam and AdamW, whose state layout they share).
A probe hands out flat 1-D NumPy arrays, views where it can, so the monitor
reads a fixed sample of coordinates without copying whole tensors.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, quant, registry


class NumpyProbe:
    """Probe of an :class:`adaopt.Optimizer`."""

    def __init__(self, opt):
        self.opt = opt
        self.family = opt.family
        self.names = [name for name, _ in opt.named_parameters()]
        self._params = [p for _, p in opt.named_parameters()]
        self.chosen = list(range(len(self._params)))
        self._flat = None

    def hook(self, pre, post):
        return [self.opt.register_step_pre_hook(lambda opt, grads: pre(grads)),
                self.opt.register_step_post_hook(lambda opt, grads: post(grads))]

    def sizes(self) -> list[int]:
        return [p.size for p in self._params]

    def added(self) -> bool:
        """Whether the optimizer holds parameters this probe does not know (add_param_group)."""
        return sum(len(g["params"]) for g in self.opt.param_groups) != len(self._params)

    def choose(self, chosen: list[int]) -> None:
        """Read only these parameters (indices into the optimizer's order) from now on."""
        self.chosen = chosen
        self._flat = None

    def params(self) -> list:
        if self._flat is None:  # the bound arrays are updated in place: their flat views stay valid
            self._flat = [self._params[i].reshape(-1) if self._params[i].flags.c_contiguous else None
                          for i in self.chosen]
        return [f if f is not None else self._params[i].reshape(-1) for f, i in zip(self._flat, self.chosen)]

    def flat(self, grads) -> list:
        return [np.asarray(grads[i]).reshape(-1) for i in self.chosen]

    def counter(self):
        """The optimizer's step count as its state holds it, or None (no state yet). Every
        parameter steps together: the first chosen one's count is the optimizer's."""
        st = self.opt.state.get(self.names[self.chosen[0]]) if self.chosen else None
        step = None if st is None else st.get("step")
        return None if step is None else int(step)

    def states(self):
        """``(hp with eps resolved, step, {buffer: flat array})`` per chosen parameter."""
        out = []
        for name in (self.names[i] for i in self.chosen):
            st = quant.floats(self.opt.state[name], lazy=True)  # 8-bit moments read where sampled
            p = self.opt._arrays[name]
            arrays = {k: v.reshape(-1) for k, v in st.items()
                      if isinstance(v, (np.ndarray, quant.Packed)) and v.shape == p.shape}
            cdtype = next((v.dtype for v in arrays.values()), np.dtype("float64"))
            hp = self.opt._engine.resolved(self.opt._hp_of(name), cdtype, name)
            out.append((hp, int(st["step"]), arrays))
        return out

    def meta(self) -> dict:
        first = self._params[0] if self._params else np.zeros(0)
        hp = self.states()[0][0] if self._params else dict(self.opt.defaults)
        state_dtype = self.opt.defaults.get("state_dtype")
        if state_dtype is not None:  # a name, however it was given (np.float32 is no JSON)
            state_dtype = dtypes.dtype_name(state_dtype)
        return _meta(self.family, hp, dtypes.dtype_name(first.dtype), state_dtype,
                     sum(p.size for p in self._params))


class TorchProbe:
    """Probe of a ``torch.optim.Optimizer`` (adaopt.torch or torch's own classes)."""

    def __init__(self, opt):
        import torch

        self.torch, self.opt = torch, opt
        self.refuse_released()
        entry = getattr(opt, "entry", None) or registry.of_torch_class(type(opt).__name__)
        self.family = entry.key if entry is not None else None
        self._params = [p for g in opt.param_groups for p in g["params"]]
        self._group_of = [gi for gi, g in enumerate(opt.param_groups) for _ in g["params"]]
        self.names = [f"{gi}.{i}" for gi, g in enumerate(opt.param_groups) for i, _ in enumerate(g["params"])]
        self.chosen = list(range(len(self._params)))
        self._views: dict = {}
        self._ref = None  # the parameter whose state's step count stands for the optimizer's

    def sizes(self) -> list[int]:
        return [p.numel() for p in self._params]

    def added(self) -> bool:
        """Whether the optimizer holds parameters this probe does not know (add_param_group)."""
        return sum(len(g["params"]) for g in self.opt.param_groups) != len(self._params)

    def choose(self, chosen: list[int]) -> None:
        self.chosen = chosen
        self._views = {}
        self._ref = None

    def counter(self):
        """The optimizer's step count as its state holds it, or None (no state, or a rule that
        keeps no count: SGD without momentum). One parameter's count is read: the chosen one
        stepped most when first asked (a parameter without a gradient is not stepped)."""
        if self._ref is not None:
            step = self._step_of(self._params[self._ref])
            if step is not None:
                return step
            self._ref = None  # its state is gone (cleared): choose again
        best = None
        for i in self.chosen:
            step = self._step_of(self._params[i])
            if step is not None and (best is None or step > best[0]):
                best = (step, i)
        if best is None:
            return None
        self._ref = best[1]
        return best[0]

    def _step_of(self, p):
        st = self.opt.state.get(p)  # .get: the state is a defaultdict, asking must not add to it
        step = None if not st else st.get("step")
        if step is None:
            return None
        return int(step.item()) if self.torch.is_tensor(step) else int(step)

    def hook(self, pre, post):
        return [self.opt.register_step_pre_hook(lambda opt, args, kwargs: pre(None)),
                self.opt.register_step_post_hook(lambda opt, args, kwargs: post(None))]

    def _flat(self, t):
        if t is None:
            return None
        t = t.detach()
        if t.is_sparse:  # the sample's coordinates only: an embedding's dense gradient is huge
            return _SparseRows(t)
        if t.is_cpu and t.dtype in (self.torch.float32, self.torch.float64, self.torch.float16):
            return t.reshape(-1).numpy()
        return t.reshape(-1).float().cpu().numpy()  # bfloat16 or a device tensor: a float32 copy

    def _cached(self, t, key):
        """``_flat(t)`` of a parameter, reusing the view made for the same storage last time
        (a CPU tensor's NumPy view stays valid until its storage is replaced)."""
        if t is None:
            return None
        ptr = t.data_ptr()
        hit = self._views.get(key)
        if hit is not None and hit[0] == ptr and hit[1] is t:
            return hit[2]
        view = self._flat(t)
        # keep it only if it is the parameter's own memory (a contiguous float32/64/16 CPU tensor):
        # a copy (bfloat16 as float32, a non-contiguous tensor reshaped) would go stale
        if t.is_cpu and view.size and view.__array_interface__["data"][0] == ptr:
            self._views[key] = (ptr, t, view)
        return view

    def params(self) -> list:
        return [self._cached(self._params[i], ("p", i)) for i in self.chosen]

    def refuse_released(self) -> None:
        """The monitor reads each step's gradients, which gradient release
        (``opt.step_in_backward``) steps and frees inside backward: they would read as zero."""
        if getattr(self.opt, "_grad_release", None) is not None:
            raise RuntimeError(
                "Monitor cannot watch an optimizer stepped by opt.step_in_backward(): the gradients are "
                "freed inside backward before the monitor reads them (they would read as 0); monitor a run "
                "without gradient release, or call remove() on the handle step_in_backward returned")

    def flat(self, grads) -> list:  # torch's hooks pass no gradients: read p.grad
        self.refuse_released()  # registered after the monitor
        # not cached: a kept view would keep last step's gradient alive after zero_grad()
        return [self._flat(self._params[i].grad) for i in self.chosen]

    def states(self):
        out = []
        hps = {}
        for i in self.chosen:
            p, gi = self._params[i], self._group_of[i]
            hp = hps.get(gi) or hps.setdefault(gi, self._hp(self.opt.param_groups[gi]))
            st = self.opt.state.get(p, {})
            st = _dequantized(self.torch, st)
            step = st.get("step", 0)
            step = int(step.item()) if self.torch.is_tensor(step) else int(step)
            read = (quant.Packed, np.ndarray)  # 8-bit moments, as _dequantized gives them
            arrays = {k: (v.reshape(-1) if isinstance(v, read) else self._flat(v)) for k, v in st.items()
                      if k != "step" and (self.torch.is_tensor(v) or isinstance(v, read))
                      and tuple(v.shape) == tuple(p.shape)}
            if "eps" in hp and hp["eps"] is None:
                cdtype = next((v.dtype for v in arrays.values()), np.dtype("float32"))
                hp = {**hp, "eps": dtypes.default_eps(cdtype, registry.FAMILIES[self.family].defaults["eps"])}
            out.append((hp, step, arrays))
        return out

    def _hp(self, group) -> dict:
        """The group's hyperparameters, a tensor's (``lr=torch.tensor(1e-3)``, betas of tensors)
        as a number now: a tensor kept would be read later, after a scheduler changed it in place,
        and JSON cannot write it."""
        if self.family is None:
            return {"lr": self._number(group.get("lr"))}
        base = registry.FAMILIES[self.family].defaults_for(getattr(self.opt, "conventions", "torch"))
        hp = {**base, **{k: self._number(v) for k, v in group.items() if k in base}}
        if self.family == "adam" and group.get("decoupled_weight_decay"):
            hp["decoupled_weight_decay"] = True
        return hp

    def _number(self, value):
        """A one-element tensor as a Python number (a tuple of them, each); anything else as it is."""
        if self.torch.is_tensor(value) and value.numel() == 1:
            return value.item()
        if isinstance(value, tuple) and any(self.torch.is_tensor(v) for v in value):
            return tuple(self._number(v) for v in value)
        return value

    def meta(self) -> dict:
        first = self._params[0]
        hp = self._hp(self.opt.param_groups[0])
        name = str(first.dtype).replace("torch.", "")
        state = next((v for v in self.opt.state.get(first, {}).values()
                      if self.torch.is_tensor(v) and v.shape == first.shape), None)
        state_dtype = str(state.dtype).replace("torch.", "") if state is not None else None
        asked = self.opt.param_groups[0].get("state_dtype")  # adaopt.torch: "int8" however small the first is
        if asked is not None:
            state_dtype = asked if isinstance(asked, str) else str(asked).replace("torch.", "")
        out = _meta(self.family, hp, name, state_dtype, sum(p.numel() for p in self._params))
        on_nonfinite = getattr(self.opt, "on_nonfinite", None)  # adaopt.torch: skip/raise steps with a NaN
        if on_nonfinite is not None:
            out["on_nonfinite"] = on_nonfinite
            out["skipped_steps"] = int(getattr(self.opt, "skipped_steps", 0))
        return out


class _SparseRows:
    """A sparse (row-wise, as ``nn.Embedding(sparse=True)`` makes) gradient, indexed like the
    flat dense array it stands for: ``rows[index]`` reads only the coordinates asked for."""

    def __init__(self, t):
        t = t.coalesce()
        self.rows = t.indices()[0].numpy()  # sorted by coalesce()
        values = t.values()
        self.width = int(np.prod(t.shape[1:], dtype=np.int64))
        self.values = values.reshape(len(self.rows), self.width).double().numpy()
        self.size = int(np.prod(t.shape, dtype=np.int64))

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        row, col = np.divmod(index, self.width)
        at = np.minimum(np.searchsorted(self.rows, row), max(len(self.rows) - 1, 0))
        hit = (self.rows[at] == row) if len(self.rows) else np.zeros(len(index), bool)
        out = np.zeros(len(index))
        out[hit] = self.values[at[hit], col[hit]]
        return out


def probe(opt):
    """The probe for ``opt``: an adaopt NumPy optimizer or any torch.optim.Optimizer."""
    from ..optim import Optimizer

    if isinstance(opt, Optimizer):
        return NumpyProbe(opt)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(opt, torch.optim.Optimizer):
        return TorchProbe(opt)
    raise TypeError(f"Monitor watches an adaopt optimizer or a torch.optim.Optimizer, not {type(opt).__name__}")


def _meta(family, hp, dtype, state_dtype, n_params) -> dict:
    keep = ("lr", "betas", "alpha", "rho", "eps", "eps_in_sqrt", "momentum", "nesterov", "weight_decay",
            "lr_decay", "initial_accumulator_value", "amsgrad", "bias_correction", "centered", "kahan",
            "stochastic_rounding")
    out = {"optimizer": family, "dtype": dtype, "state_dtype": state_dtype or dtype, "n_params": int(n_params)}
    for key in keep:
        if key in hp and hp[key] is not None:
            value = hp[key]
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _dequantized(torch, st: dict) -> dict:
    """A torch optimizer's state with its 8-bit moments (``state_dtype="int8"``) as
    :class:`~adaopt.quant.Packed` buffers (read as float32 where the summary samples them); other
    state as it is."""
    if not any(isinstance(k, str) and k.endswith(quant.SCALE) for k in st):
        return st
    arrays = {k: (v.cpu().numpy() if torch.is_tensor(v) and k != "step" else v) for k, v in st.items()}
    return quant.floats(arrays, lazy=True)
